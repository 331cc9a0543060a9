import { defineConfig } from 'vite';

// The page, its generated assets (public/: the model and two digits, written by prepare.ts) and the
// build output (dist/) all live in examples/browser.
export default defineConfig({
  root: __dirname,
  base: './',
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', chunkSizeWarningLimit: 4096 }, // tfjs is large
  esbuild: { target: 'es2022' },
  optimizeDeps: { esbuildOptions: { target: 'es2022' } },
});
