/**
 * Errors after `useWasmBackend()` are Node's ordinary ones: the wasm module's start-up installs
 * process handlers that rethrow every error from its one-line minified script (Node then prints
 * ~40 KB of that line and exits with code 7); useWasmBackend removes them. Runs child processes.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const made: string[] = [];
afterEach(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function runScript(body: string) {
  const dir = mkdtempSync(join(tmpdir(), 'infogeo-clean-'));
  made.push(dir);
  const file = join(dir, 'script.mts');
  writeFileSync(file, `import { useWasmBackend } from ${JSON.stringify(resolve('src/backends/wasm.ts'))};\n${body}\n`);
  return spawnSync(process.execPath, ['--import', 'tsx', file], { encoding: 'utf8', timeout: 60_000 });
}

describe('useWasmBackend leaves error handling to Node', () => {
  it('an error thrown after it prints the error, not minified source, and exits with code 1', () => {
    const r = runScript(`await useWasmBackend();\nthrow new Error('the message a user must read');`);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('Error: the message a user must read');
    expect(r.stderr).not.toContain('WasmBackendModule');
    expect(r.stderr.length).toBeLessThan(2000);
  });

  it('a rejected promise after it too, and handlers the user installed before are kept', () => {
    const r = runScript(
      `process.on('unhandledRejection', (e) => { console.error('mine: ' + (e as Error).message); process.exit(3); });\n` +
        `await useWasmBackend();\nPromise.reject(new Error('late'));`,
    );
    expect(r.status).toBe(3);
    expect(r.stderr.trim()).toBe('mine: late');
  });

  it('keeps a handler someone registers while the backend starts', () => {
    const r = runScript(
      `const starting = useWasmBackend();\n` +
        `process.on('uncaughtException', (e) => { console.error('reporter: ' + (e as Error).message); process.exit(4); });\n` +
        `await starting;\nsetTimeout(() => { throw new Error('later'); }, 0);`,
    );
    expect(r.status).toBe(4);
    expect(r.stderr.trim()).toBe('reporter: later');
  });
});
