/**
 * Hostile inputs, property-based (fast-check): every public function of src/index.ts, given one
 * bad argument or option at a time (the others good), must
 *
 * 1. throw (or reject with) a typed error: `ShapeError`, `ValueError` (incl. `LayerNotFoundError`)
 *    or `UnsupportedModelError`, whose message contains the function's name;
 * 2. leave no tensor behind and dispose none of the caller's (`tf.memory().numTensors` unchanged);
 * 3. leave the model's weights bit for bit as they were.
 *
 * The table is in tests/hostile/table.ts: per function, its good arguments and one case per
 * argument (tensor arguments split into: not a tensor, disposed, wrong rank or shape, int32/bool,
 * NaN/Infinity) or option (every documented option, with wrong types and out-of-range values). Each
 * case is one property; all its canonical bad values run first (fast-check `examples`), then
 * `INFOGEO_FUZZ_RUNS` generated ones (default 10; `INFOGEO_FUZZ_RUNS=500` for a long run,
 * `INFOGEO_FUZZ_SEED` to replay). A failure prints the shrunk counterexample and what went wrong.
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { disposeDeep, Owner } from './hostile/arbitraries.js';
import type { Case } from './hostile/arbitraries.js';
import { buildCtx, contractProblems, disposeCtx, ENTRIES } from './hostile/table.js';
import type { Entry, HostileCtx } from './hostile/table.js';

const RUNS = Math.max(0, Number(process.env['INFOGEO_FUZZ_RUNS'] ?? 10) || 0);
const SEED = process.env['INFOGEO_FUZZ_SEED'] === undefined ? undefined : Number(process.env['INFOGEO_FUZZ_SEED']);

let ctx: HostileCtx;
beforeAll(() => {
  ctx = buildCtx();
});
afterAll(() => {
  disposeCtx(ctx);
});

/** Runs one call with one bad value; throws an Error listing every broken clause of the contract. */
async function check(entry: Entry, c: Case, badValue: unknown): Promise<void> {
  const problems = await contractProblems(ctx, entry, c, badValue);
  if (problems.length > 0) throw new Error(`${entry.title}(${c.label}): ${problems.join('; ')}`);
}

describe('hostile inputs: typed errors, no leaks, weights intact', () => {
  it('covers every public function', async () => {
    const index = await import('../src/index.js');
    const fns = Object.entries(index)
      .filter(([name, v]) => typeof v === 'function' && !/Error$/.test(name) && name !== 'registerGradientKernels')
      .map(([name]) => name);
    const covered = new Set(ENTRIES.map((e) => e.title.replace(/^new /, '').replace(/\..*$/, '')));
    expect(fns.filter((f) => !covered.has(f))).toEqual([]);
  });

  for (const entry of ENTRIES) {
    describe(entry.title, () => {
      it('accepts its good arguments (the baseline every case changes one thing of), and prints nothing', async () => {
        const before = tf.memory().numTensors;
        const own = new Owner();
        // A library logs nothing unasked: its progress goes to onProgress, its problems to errors.
        const printed: string[] = [];
        const spies = (['log', 'info', 'warn', 'error', 'debug'] as const).map((level) => vi.spyOn(console, level).mockImplementation((...a: unknown[]) => void printed.push(`console.${level}: ${a.join(' ')}`)));
        try {
          disposeDeep(await entry.call(await entry.good(ctx, own)));
        } finally {
          spies.forEach((s) => s.mockRestore());
          own.dispose();
        }
        expect(printed).toEqual([]);
        // (a constructor takes its factor: counted once the arguments and the result are freed)
        expect(tf.memory().numTensors, 'tensors left behind by a good call').toBe(before);
      });

      for (const c of entry.cases) {
        it(`refuses a bad ${c.label}`, async () => {
          await fc.assert(
            fc.asyncProperty(c.arb, (badValue) => check(entry, c, badValue)),
            // fast-check counts the examples in numRuns: every canonical value, then RUNS generated ones.
            { numRuns: c.canon.length + RUNS, examples: c.canon.map((v) => [v] as [unknown]), ...(SEED === undefined ? {} : { seed: SEED }) },
          );
        });
      }
    });
  }
});
