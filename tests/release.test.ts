/**
 * One version everywhere a user or a citation reads it: package.json (and its lock), CITATION.cff,
 * the CHANGELOG's newest section and the README's status line. 0.2 broke 0.1.0's calls (the
 * renames), so it cannot ship as 0.1.0.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const read = (path: string) => readFileSync(new URL(`../${path}`, import.meta.url), 'utf8');

describe('the release version', () => {
  it('is the same in package.json, the lock, CITATION.cff, the CHANGELOG and the README', () => {
    const version = (JSON.parse(read('package.json')) as { version: string }).version;
    const lock = JSON.parse(read('package-lock.json')) as { version: string; packages: Record<string, { version?: string }> };
    expect(lock.version).toBe(version);
    expect(lock.packages['']?.version).toBe(version);
    expect(/^version: (.+)$/m.exec(read('CITATION.cff'))?.[1]).toBe(version);
    expect(/^## \[(\d+\.\d+\.\d+)\]/m.exec(read('CHANGELOG.md'))?.[1]).toBe(version);
    expect(/^> Status: (\d+\.\d+\.\d+)/m.exec(read('README.md'))?.[1]).toBe(version);
  });

  it("is above 0.1.0, whose calls the 0.2 renames break (semantic versioning's minor version before 1.0)", () => {
    const [major, minor] = (JSON.parse(read('package.json')) as { version: string }).version.split('.').map(Number);
    expect(major === 0 ? (minor as number) >= 2 : (major as number) >= 1).toBe(true);
  });
});
