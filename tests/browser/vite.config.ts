import { defineConfig } from 'vite';

// The page of the browser tests, built into tests/browser/dist (ignored by git).
export default defineConfig({
  root: __dirname,
  base: './',
  logLevel: 'warn',
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', chunkSizeWarningLimit: 8192 },
  esbuild: { target: 'es2022' },
  optimizeDeps: { esbuildOptions: { target: 'es2022' } },
});
