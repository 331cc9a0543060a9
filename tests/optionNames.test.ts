/**
 * Unknown option names: every public function that takes options refuses a key it does not know
 * with a ValueError that names the function, the key, and the nearest valid name (or, for 0.1's
 * names, what 0.2 renamed them to), instead of ignoring it and answering another question (0.1's
 * `pullbackMetric(m, x, { layer: 'h1' })` measured the default layer).
 *
 * The functions and their good arguments are the hostile-input table's (tests/hostile/table.ts):
 * one property per function over random unknown keys, added to its good options; then the cases
 * the issue found, named one by one; then the functions outside src/index.ts (infogeo/data,
 * infogeo/wasm, the pool's constructor; the pool's calls are in tests/pool.test.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { downloadDataset, loadCifar10, loadMnist } from '../src/data/index.js';
import { localDataMatrix, pullbackMetric, randomDeform, relativeStability, ValueError } from '../src/index.js';
import { useWasmBackend } from '../src/backends/wasm.js';
import { createJacobianPool } from '../src/node/pool.js';
import { disposeDeep, Owner } from './hostile/arbitraries.js';
import { buildCtx, disposeCtx, ENTRIES } from './hostile/table.js';
import type { Entry, HostileCtx } from './hostile/table.js';

const RUNS = Math.max(1, Number(process.env['INFOGEO_FUZZ_RUNS'] ?? 10) || 1);

let ctx: HostileCtx;
beforeAll(() => {
  ctx = buildCtx();
});
afterAll(() => {
  disposeCtx(ctx);
});

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype;

/** The entries whose last good argument is an options object (trace takes none: it ignores one). */
const WITH_OPTIONS = ENTRIES.filter((e) => e.title !== 'LowRankPSD.trace');

/** The outcome of one call with `change` applied to the options (the last argument). */
async function callWith(entry: Entry, change: (o: Record<string, unknown>) => Record<string, unknown>): Promise<{ error?: unknown; leaked: number }> {
  const own = new Owner();
  try {
    const args = await entry.good(ctx, own);
    const i = args.length - 1;
    args[i] = change(args[i] as Record<string, unknown>);
    const before = tf.memory().numTensors;
    try {
      disposeDeep(await entry.call(args));
      return { leaked: tf.memory().numTensors - before };
    } catch (error) {
      return { error, leaked: tf.memory().numTensors - before };
    }
  } finally {
    own.dispose();
  }
}

/** The parts of an unknown-option message: the suggestion and the list of valid names. */
function parse(message: string): { suggested?: string; renamed?: string; valid: string[] } {
  const valid = /Valid: (.*)\.$/.exec(message)?.[1]?.match(/'[^']+'/g)?.map((q) => q.slice(1, -1)) ?? [];
  return { suggested: /did you mean '([^']+)'\?/.exec(message)?.[1], renamed: /renamed to (\w+)/.exec(message)?.[1], valid };
}

describe('unknown option names are refused, never ignored', () => {
  it('the table has every function that takes options', async () => {
    // Each entry's last good argument is its options object, unless the function takes none.
    const NO_OPTIONS = ['planeThroughPoints', 'planePoints', 'matchedNoise', 'temperatureRange', 'typicalDisplacement', 'temperatureForDisplacement', 'activeModes', 'Classifier.features', 'Classifier.target', 'defaultFeatureLayer', 'splitAt', 'new LowRankPSD', 'LowRankPSD.trace', 'LowRankPSD.matvec', 'LowRankPSD.quadForm', 'RowSpaceProjector.project', 'RowSpaceProjector.projectKernel'];
    const without: string[] = [];
    for (const e of ENTRIES) {
      const own = new Owner();
      const last = (await e.good(ctx, own)).at(-1);
      own.dispose();
      if (!isPlainObject(last)) without.push(e.title);
    }
    expect(without.sort()).toEqual([...NO_OPTIONS].filter((t) => t !== 'LowRankPSD.trace').sort());
  });

  for (const entry of WITH_OPTIONS) {
    it(`${entry.title}: a random unknown key, added to good options, is a ValueError naming it and a valid name`, async () => {
      const own = new Owner();
      const good = await entry.good(ctx, own);
      own.dispose();
      const last = good.at(-1);
      if (!isPlainObject(last)) return; // a function without options (the test above lists them)
      // Every valid name, present with the value undefined (or its good value), is accepted as a name.
      const { error: knownError } = await callWith(entry, (o) => o);
      expect(knownError, `${entry.title}'s good call`).toBeUndefined();
      const probe = await callWith(entry, (o) => ({ ...o, zzzNotAnOption: 1 }));
      expect(probe.error).toBeInstanceOf(ValueError);
      const { valid } = parse((probe.error as Error).message);
      expect(valid.length, (probe.error as Error).message).toBeGreaterThan(0);
      const all = await callWith(entry, (o) => ({ ...Object.fromEntries(valid.map((k) => [k, undefined])), ...o }));
      expect(String((all.error as Error | undefined)?.message ?? ''), 'a valid name refused').not.toMatch(/unknown (option|key)/);
      disposeDeep(all);

      await fc.assert(
        fc.asyncProperty(
          fc.string({ minLength: 1, maxLength: 16 }).filter((k) => !valid.includes(k) && !(k in last)),
          fc.oneof(fc.integer(), fc.string(), fc.constant(undefined), fc.constant(null)),
          async (key, value) => {
            const { error, leaked } = await callWith(entry, (o) => ({ ...o, [key]: value }));
            expect(error).toBeInstanceOf(ValueError);
            const message = (error as Error).message;
            expect(message).toContain(`${entry.fn}:`);
            expect(message).toContain(`'${key}'`);
            const { suggested, renamed } = parse(message);
            expect(suggested !== undefined || renamed !== undefined, message).toBe(true);
            if (suggested !== undefined) expect(valid).toContain(suggested);
            expect(leaked).toBe(0);
          },
        ),
        { numRuns: RUNS, examples: [['__proto__', 1], ['constructor', 1], ['toString', 'x']] },
      );
    });
  }

  it('names the nearest valid name: a typo, a wrong case, a missing letter', async () => {
    const at = (title: string) => ENTRIES.find((e) => e.title === title) as Entry;
    const cases: [string, string, string][] = [
      ['inputJacobian', 'memoryBudgetMb', 'memoryBudgetMB'],
      ['inputJacobian', 'flaten', 'flatten'],
      ['horizontalPath', 'maxstep', 'maxSteps'],
      ['horizontalPath', 'stepsize', 'stepSize'],
      ['orthogonalPath', 'seeds', 'seed'],
      ['scanPlane', 'step', 'steps'],
      ['volumeElement', 'nomalization', 'normalization'],
      ['relativeStability', 'temperature', 'temperatures'],
      ['localDataMatrix', 'row', 'rows'],
      ['shallowAnalyticDetG', 'erfscale', 'erfScale'],
      ['LowRankPSD.eig', 'rTol', 'rtol'],
    ];
    for (const [title, key, nearest] of cases) {
      const { error } = await callWith(at(title), (o) => ({ ...o, [key]: 1 }));
      expect(error, `${title} { ${key} }`).toBeInstanceOf(ValueError);
      expect(parse((error as Error).message).suggested, (error as Error).message).toBe(nearest);
    }
  });

  it("0.1's names say what 0.2 renamed them to", async () => {
    const at = (title: string) => ENTRIES.find((e) => e.title === title) as Entry;
    const cases: [string, string, unknown, string][] = [
      ['pullbackMetric', 'layer', 'conv', 'target'],
      ['volumeElement', 'layer', 'conv', 'target'],
      ['scanPlane', 'layer', 'conv', 'target'],
      ['relativeStability', 'output', 'logits', 'target'],
      ['jvp', 'method', 'forward', 'strategy'],
      ['pullbackMetric', 'method', 'rows', 'strategy'],
    ];
    for (const [title, key, value, now] of cases) {
      const { error } = await callWith(at(title), (o) => ({ ...o, [key]: value }));
      expect(error, `${title} { ${key} }`).toBeInstanceOf(ValueError);
      const message = (error as Error).message;
      expect(message).toContain(`'${key}'`);
      expect(message).toContain(`renamed to ${now} in 0.2`);
    }
  });

  it('nested objects too: target, rows, cutoff, temperature', async () => {
    const x = tf.randomUniform([2, 6, 6, 1], 0, 1, 'float32', 3);
    const images = tf.randomUniform([2, 8, 8, 1], 0, 1, 'float32', 4);
    try {
      const before = tf.memory().numTensors;
      await expect(pullbackMetric(ctx.model, x, { target: { layer: 'conv', name: 'conv' } as never })).rejects.toThrow(/pullbackMetric: unknown key of target 'name' \(did you mean 'layer'\?\)/);
      await expect(localDataMatrix(ctx.model, x, { rows: { topK: 2, topk: 3 } as never })).rejects.toThrow(ValueError);
      await expect(relativeStability(ctx.model, x, { target: { layer: 'conv', flatten: true } as never, temperatures: [1e-3] })).rejects.toThrow(/relativeStability: unknown key of target 'flatten'/);
      expect(() => randomDeform(images, { cutoff: { minimum: 2 } as never })).toThrow(/randomDeform: unknown key of cutoff 'minimum' \(did you mean 'min'\?\)/);
      expect(() => randomDeform(images, { temperature: { scal: 1 } as never })).toThrow(/randomDeform: unknown key of temperature 'scal' \(did you mean 'scale'\?\)/);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      x.dispose();
      images.dispose();
    }
  });
});

describe('unknown option names outside the core: infogeo/data and infogeo/wasm', () => {
  it('the loaders and the downloader refuse them before reading or fetching anything', async () => {
    expect(() => loadMnist('test', { limt: 5 } as never)).toThrow(/loadMnist: unknown option 'limt' \(did you mean 'limit'\?\)/);
    expect(() => loadCifar10('test', { directory: '/nowhere' } as never)).toThrow(/loadCifar10: unknown option 'directory'/);
    await expect(downloadDataset('mnist', { mirror: 'http://127.0.0.1:9/' } as never)).rejects.toThrow(/downloadDataset: unknown option 'mirror' \(did you mean 'mirrors'\?\)/);
  });

  it('useWasmBackend and createJacobianPool refuse them before starting anything', async () => {
    await expect(useWasmBackend({ wasmPath: '/nowhere/' } as never)).rejects.toThrow(/useWasmBackend: unknown option 'wasmPath' \(did you mean 'wasmPaths'\?\)/);
    await expect(createJacobianPool(ctx.model, { thread: 2 } as never)).rejects.toThrow(/createJacobianPool: unknown option 'thread' \(did you mean 'threads'\?\)/);
  });
});
