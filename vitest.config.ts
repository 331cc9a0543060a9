import { defineConfig } from 'vitest/config';

// Every test file runs twice: once on the pure-JS `cpu` backend and once on `wasm` (with infogeo's
// gradient kernels registered). The backend is chosen by the project's setup file.
const shared = {
  include: ['tests/**/*.test.ts'],
  testTimeout: 180_000,
  hookTimeout: 180_000,
  // Once per run, which data sets are missing (their tests are skipped).
  globalSetup: ['tests/setup/dataNote.ts'],
};

export default defineConfig({
  test: {
    pool: 'forks',
    // The JSON report feeds the closing "N passed, N failed" line of .ci/run.
    reporters: ['default', 'json'],
    outputFile: { json: 'test-results.json' },
    projects: [
      // The full architectures run on wasm only: on cpu's JavaScript kernels they take ~160 s.
      { test: { ...shared, name: 'cpu', setupFiles: ['tests/setup/cpu.ts'], exclude: ['tests/architectures.test.ts'] } },
      // Files without tensors need no second backend; the pool's threads choose their own.
      { test: { ...shared, name: 'wasm', setupFiles: ['tests/setup/wasm.ts'], exclude: ['tests/shallow.test.ts', 'tests/oracles.test.ts', 'tests/experiments.test.ts', 'tests/experiments-doc.test.ts', 'tests/release.test.ts', 'tests/data.test.ts', 'tests/cleanFailures.test.ts', 'tests/figures.test.ts', 'tests/pool.test.ts'] } },
    ],
  },
});
