import { defineConfig } from 'tsup';

// Entries: the library itself (imports no backend, registers nothing); the opt-in `infogeo/wasm`
// helper, the only module that imports @tensorflow/tfjs-backend-wasm; `infogeo/node`, the worker
// pool (Node only), and the script its worker threads run (loaded by URL next to it, not an export);
// `infogeo/data` (Node only), the data sets; and the `infogeo-data` command (ESM, with a shebang).
// No source maps: they would point at sources the package does not ship.
const common = { target: 'es2020', treeshake: true, shims: true, splitting: false, sourcemap: false } as const;
export default defineConfig([
  {
    ...common,
    entry: { index: 'src/index.ts', wasm: 'src/backends/wasm.ts', node: 'src/node/pool.ts', poolWorker: 'src/node/poolWorker.ts', data: 'src/data/index.ts' },
    format: ['esm', 'cjs'],
    dts: true,
    clean: false,
  },
  {
    ...common,
    entry: { cli: 'src/data/cli.ts' },
    format: ['esm'],
    dts: false,
    clean: false,
    banner: { js: '#!/usr/bin/env node' },
  },
]);
