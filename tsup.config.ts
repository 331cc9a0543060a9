import { defineConfig } from 'tsup';

// Entries: the library itself (imports no backend, registers nothing); the opt-in `infogeo/wasm`
// helper, the only module that imports @tensorflow/tfjs-backend-wasm; `infogeo/node`, the worker
// pool (Node only), and the script its worker threads run (loaded by URL next to it, not an export).
export default defineConfig({
  entry: { index: 'src/index.ts', wasm: 'src/backends/wasm.ts', node: 'src/node/pool.ts', poolWorker: 'src/node/poolWorker.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'es2020',
  treeshake: true,
  shims: true,
  splitting: false,
});
