import { defineConfig } from 'vite';

// The explorer, its generated assets (public/: the model, 30 test digits and the wasm binaries,
// written by prepare.ts) and the build output (dist/: a static site that runs from any folder, hence
// base './') all live in examples/browser.
export default defineConfig({
  root: __dirname,
  base: './',
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', chunkSizeWarningLimit: 4096 }, // tfjs is large
  esbuild: { target: 'es2022' },
  optimizeDeps: { esbuildOptions: { target: 'es2022' } },
});
