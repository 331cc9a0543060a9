import { defineConfig } from 'tsup';

// Two entries: the library itself (imports no backend, registers nothing) and the opt-in
// `infogeo/wasm` helper, the only module that imports @tensorflow/tfjs-backend-wasm.
export default defineConfig({
  entry: { index: 'src/index.ts', wasm: 'src/backends/wasm.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'es2020',
  treeshake: true,
  shims: true,
  splitting: false,
});
