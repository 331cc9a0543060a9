/**
 * Building blocks of the hostile-input properties (tests/hostile.test.ts): descriptions of bad
 * tensors that fast-check generates and shrinks as plain data (so a counterexample prints as
 * `{ kind: 'shape', shape: [2,7,6,1] }`, not as a tensor), their materialisation, the cases
 * ("one bad argument at a time") that the table is made of, and the checks of the contract.
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { InfogeoError, ShapeError, UnsupportedModelError, ValueError } from '../../src/index.js';

// ---------------------------------------------------------------------------------------------
// Ownership
// ---------------------------------------------------------------------------------------------

/** Collects what a run creates (tensors, planes, LowRankPSDs...) and frees it after the call. */
export class Owner {
  private items: { dispose(): void }[] = [];
  add<T extends { dispose(): void }>(item: T): T {
    this.items.push(item);
    return item;
  }
  dispose(): void {
    for (const item of this.items.splice(0)) {
      try {
        item.dispose();
      } catch {
        // already gone (a disposed plane or model): nothing to free
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Bad tensors, as data
// ---------------------------------------------------------------------------------------------

/** A bad value for a tensor argument, as plain data. */
export type TensorSpec =
  | { kind: 'null' }
  | { kind: 'undefined' }
  | { kind: 'number'; value: number }
  | { kind: 'nestedArray' }
  | { kind: 'string'; value: string }
  | { kind: 'emptyObject' }
  | { kind: 'disposed' }
  | { kind: 'shape'; shape: number[] }
  | { kind: 'dtype'; dtype: 'int32' | 'bool' }
  | { kind: 'nonFinite'; value: number; index: number }
  | { kind: 'iterable'; of: TensorSpec[] };

const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/** The validity rule of a tensor argument: which shapes the function must accept. */
export type ShapeRule = (shape: readonly number[]) => boolean;
/** Exactly this shape. */
export const exactly =
  (good: readonly number[]): ShapeRule =>
  (s) =>
    sameShape(s, good);
/** A batch `[B ≥ minBatch, ...good.slice(1)]`. */
export const anyBatch =
  (good: readonly number[], minBatch = 1): ShapeRule =>
  (s) =>
    s.length === good.length && (s[0] as number) >= minBatch && sameShape(s.slice(1), good.slice(1));

/**
 * Wrong shapes derived from a good one: one axis fewer or more, flattened, a scalar, each axis off
 * by one either way, a zero batch; minus those that `valid` accepts (a free batch size...).
 */
export function badShapes(good: readonly number[], valid: ShapeRule, extra: number[][] = []): number[][] {
  const cands: number[][] = [good.slice(0, -1), [...good, 1], [1, ...good], [prod(good)], []];
  good.forEach((d, i) => {
    for (const v of [d + 1, d - 1]) cands.push(good.map((g, j) => (j === i ? Math.max(v, 0) : g)));
  });
  cands.push(good.map((g, j) => (j === 0 ? 0 : g)));
  cands.push(...extra);
  const out: number[][] = [];
  for (const c of cands) if (!valid(c) && !out.some((o) => sameShape(o, c))) out.push(c);
  return out;
}

/** A group of bad values with the canonical ones every run checks first (fast-check `examples`). */
export interface BadGroup {
  /** What the values are, for the test title. */
  what: string;
  canon: unknown[];
  arb: fc.Arbitrary<unknown>;
}

const notFiniteValues = [NaN, Infinity, -Infinity];

/** The groups of bad values of one tensor argument (see the brief: not a tensor ... NaN). */
export function tensorGroups(good: readonly number[], valid: ShapeRule, extraShapes: number[][] = [], { optional = false } = {}): BadGroup[] {
  // An optional tensor (an option) may be undefined or null: both read as "absent" (`??`).
  const absent: TensorSpec[] = optional ? [] : [{ kind: 'null' }, { kind: 'undefined' }];
  const notTensor: TensorSpec[] = [
    ...absent,
    { kind: 'number', value: 42 },
    { kind: 'number', value: 0 }, // falsy: `x || default` reads it as absent
    { kind: 'number', value: NaN }, // NaN !== NaN: `x !== given` thinks it made it
    { kind: 'nestedArray' },
    { kind: 'string', value: 'x' },
    { kind: 'emptyObject' },
  ];
  const shapes = badShapes(good, valid, extraShapes).map((shape): TensorSpec => ({ kind: 'shape', shape }));
  const dtypes: TensorSpec[] = [
    { kind: 'dtype', dtype: 'int32' },
    { kind: 'dtype', dtype: 'bool' },
  ];
  const nonFinite: TensorSpec[] = notFiniteValues.map((value) => ({ kind: 'nonFinite', value, index: 0 }));
  return [
    {
      what: 'not a tensor',
      canon: notTensor,
      arb: fc.oneof(
        fc.constantFrom(...notTensor),
        fc.double().map((value): TensorSpec => ({ kind: 'number', value })),
        fc.string().map((value): TensorSpec => ({ kind: 'string', value })),
      ),
    },
    { what: 'disposed tensor', canon: [{ kind: 'disposed' }], arb: fc.constant<TensorSpec>({ kind: 'disposed' }) },
    { what: 'wrong rank or shape', canon: shapes, arb: fc.constantFrom(...shapes) },
    { what: 'int32 or bool dtype', canon: dtypes, arb: fc.constantFrom(...dtypes) },
    {
      what: 'NaN or Infinity entries',
      canon: nonFinite,
      arb: fc
        .record({ value: fc.constantFrom(...notFiniteValues), index: fc.nat({ max: 10_000 }) })
        .map(({ value, index }): TensorSpec => ({ kind: 'nonFinite', value, index })),
    },
  ];
}

/** A seeded standard-normal tensor of this shape (the good values). */
export function goodTensor(shape: readonly number[], seed = 17): tf.Tensor {
  return tf.randomNormal(shape as number[], 0, 1, 'float32', seed);
}

/** Turns a description into the value passed to the function; tensors are registered in `own`. */
export function materialize(spec: TensorSpec, good: readonly number[], own: Owner, seed = 17): unknown {
  switch (spec.kind) {
    case 'null':
      return null;
    case 'undefined':
      return undefined;
    case 'number':
    case 'string':
      return spec.value;
    case 'emptyObject':
      return {};
    case 'nestedArray': {
      const t = goodTensor(good, seed);
      const a = t.arraySync();
      t.dispose();
      return a;
    }
    case 'disposed': {
      const t = goodTensor(good, seed);
      t.dispose();
      return t;
    }
    case 'shape':
      return own.add(goodTensor(spec.shape, seed));
    case 'dtype':
      return own.add(tf.tidy(() => (spec.dtype === 'int32' ? tf.cast(tf.mul(goodTensor(good, seed), 3), 'int32') : tf.greater(goodTensor(good, seed), 0))));
    case 'nonFinite': {
      const t = goodTensor(good, seed);
      const data = Float32Array.from(t.dataSync());
      t.dispose();
      if (data.length > 0) data[spec.index % data.length] = spec.value;
      return own.add(tf.tensor(data, good as number[], 'float32'));
    }
    case 'iterable':
      return spec.of.map((s) => materialize(s, good, own, seed));
  }
}

// ---------------------------------------------------------------------------------------------
// Cases: one bad argument (or option) at a time
// ---------------------------------------------------------------------------------------------

/** The shared fixtures a case may need (the good model, the bad models...). */
export interface Ctx {
  [key: string]: unknown;
}

/** One property: a bad value for one argument, put into otherwise good arguments. */
export interface Case {
  /** e.g. `x: wrong rank or shape`, `options.memoryBudgetMB`. */
  label: string;
  /** For one option's case: its name, which the error message must contain. */
  option?: string;
  canon: unknown[];
  arb: fc.Arbitrary<unknown>;
  /** Puts `bad` into a fresh copy of the good arguments (in place). */
  apply(args: unknown[], bad: unknown, own: Owner, ctx: Ctx): void | Promise<void>;
}

/** The five cases of a positional tensor argument. */
export function tensorArg(index: number, name: string, good: readonly number[], valid: ShapeRule = exactly(good), extraShapes: number[][] = []): Case[] {
  return tensorGroups(good, valid, extraShapes).map((g) => ({
    label: `${name}: ${g.what}`,
    canon: g.canon,
    arb: g.arb,
    apply: (args, bad, own) => {
      args[index] = materialize(bad as TensorSpec, good, own);
    },
  }));
}

/** The five cases of a tensor-valued option (`subspace`, `direction`), with `base` merged in. */
export function tensorOpt(index: number, key: string, good: readonly number[], valid: ShapeRule = exactly(good), base: Record<string, unknown> = {}): Case[] {
  return tensorGroups(good, valid, [], { optional: true }).map((g) => ({
    label: `options.${key}: ${g.what}`,
    canon: g.canon,
    arb: g.arb,
    apply: (args, bad, own) => {
      args[index] = { ...(args[index] as object), ...base, [key]: materialize(bad as TensorSpec, good, own) };
    },
  }));
}

/** A plain positional argument (a number, an options object, coordinates...). */
export function plainArg(index: number, name: string, canon: unknown[], extra?: fc.Arbitrary<unknown>): Case {
  return {
    label: name,
    canon,
    arb: extra ? fc.oneof(fc.constantFrom(...canon), extra) : fc.constantFrom(...canon),
    apply: (args, bad) => {
      args[index] = bad;
    },
  };
}

/** One option with a bad value (`base` is merged in first: e.g. the mode the option belongs to). */
export function opt(index: number, key: string, canon: unknown[], extra?: fc.Arbitrary<unknown>, base: Record<string, unknown> = {}): Case {
  return {
    label: `options.${key}`,
    option: key,
    canon,
    arb: extra ? fc.oneof(fc.constantFrom(...canon), extra) : fc.constantFrom(...canon),
    apply: (args, bad) => {
      args[index] = { ...(args[index] as object), ...base, [key]: bad };
    },
  };
}

/** Options that are bad together (each one valid alone), merged into the good options. */
export function combo(index: number, label: string, canon: Record<string, unknown>[]): Case {
  return {
    label: `options: ${label}`,
    canon,
    arb: fc.constantFrom(...canon),
    apply: (args, bad) => {
      args[index] = { ...(args[index] as object), ...(bad as object) };
    },
  };
}

/** A bad value chosen by name among fixtures built once (`ctx[name]` or a builder). */
export function named(index: number, label: string, values: Record<string, (ctx: Ctx, own: Owner) => unknown>): Case {
  const names = Object.keys(values);
  return {
    label,
    canon: names,
    arb: fc.constantFrom(...names),
    apply: async (args, bad, own, ctx) => {
      args[index] = await (values[bad as string] as (ctx: Ctx, own: Owner) => unknown)(ctx, own);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Bad option values
// ---------------------------------------------------------------------------------------------

/** Arbitrary strings outside a set of valid ones. */
export const stringNotIn = (valid: readonly string[]) => fc.string().filter((s) => !valid.includes(s));

export const bad = {
  /** A positive number option (memoryBudgetMB, stepSize, eps...). */
  positive: ['256', -1, 0, -0, NaN, Infinity, -Infinity, {}, [256], true] as unknown[],
  positiveExtra: fc.oneof(fc.double({ max: 0 }), fc.string()),
  /** A positive integer option (batchSize, steps, maxSteps...). */
  positiveInt: [0, -1, 1.5, NaN, Infinity, '32', {}, [2], true] as unknown[],
  positiveIntExtra: fc.oneof(fc.integer({ max: 0 }), fc.double().filter((v) => !Number.isInteger(v))),
  /** A number ≥ 0 (threshold, stallTolerance, T, delta...). */
  nonNegative: [-1, -1e-9, NaN, Infinity, -Infinity, '1', {}, [1]] as unknown[],
  nonNegativeExtra: fc.oneof(fc.double({ max: -Number.MIN_VALUE }), fc.constant(NaN)),
  /** rtol in [0, 1). */
  rtol: [1, 2, -1, NaN, Infinity, '1e-5', {}] as unknown[],
  rtolExtra: fc.oneof(fc.double({ min: 1 }), fc.double({ max: -Number.MIN_VALUE })),
  /** A callback. */
  callback: [42, 'x', {}, true, [() => {}]] as unknown[],
  /** An AbortSignal. */
  signal: [{}, 42, 'abort', true, { aborted: false }] as unknown[],
  /** A seed. */
  seed: [NaN, Infinity, -Infinity, '0', {}, [1]] as unknown[],
  /** A boolean flag. */
  flag: ['yes', 'false', 1, {}, [true]] as unknown[],
  /** options as a whole. */
  options: [null, 42, 'logits', true] as unknown[],
  /** ClassifierOptions.modelOutput. */
  modelOutput: ['softmax', 'Logits', 'probs', '', 42, {}, true] as unknown[],
  modelOutputExtra: stringNotIn(['auto', 'logits', 'probabilities']),
};

/** Bad `Target` values for a model whose layers are `layerNames`. */
export function badTargets(layerNames: readonly string[]): { canon: unknown[]; extra: fc.Arbitrary<unknown> } {
  return {
    canon: [42, 'nope', 'probs', 'logprobs', '', {}, [], true, { layer: 'nope' }, { layer: 42 }, { layer: null }, { name: layerNames[0] }],
    extra: fc.oneof(
      stringNotIn(['logProbs', 'logits']),
      fc.record({ layer: fc.string() }).filter((t) => !layerNames.includes(t.layer)),
    ),
  };
}

// ---------------------------------------------------------------------------------------------
// The contract
// ---------------------------------------------------------------------------------------------

/** One line about any thrown value. */
export function describeError(e: unknown): string {
  if (e instanceof Error) return `${e.constructor.name}(${e.name}): ${e.message.replace(/\s+/g, ' ').slice(0, 400)}`;
  return `${typeof e}: ${String(e).slice(0, 200)}`;
}

/** Whether `e` is one of the typed errors of the contract. */
export function isTyped(e: unknown): boolean {
  return e instanceof InfogeoError && (e instanceof ShapeError || e instanceof ValueError || e instanceof UnsupportedModelError);
}

/** Frees whatever a call returned by mistake: tensors, LowRankPSDs, projectors, planes, paths. Never a model. */
export function disposeDeep(value: unknown, seen = new Set<unknown>()): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if (value instanceof tf.Tensor) {
    value.dispose();
    return;
  }
  const v = value as Record<string, unknown>;
  if (typeof v['getWeights'] === 'function') return; // a LayersModel: not ours
  if (typeof v['dispose'] === 'function' && !('model' in v)) {
    (v['dispose'] as () => void)();
    return;
  }
  if (Array.isArray(value)) value.forEach((x) => disposeDeep(x, seen));
  else if (Object.getPrototypeOf(value) === Object.prototype) Object.values(v).forEach((x) => disposeDeep(x, seen));
}

/** A short description of what a call returned (for "returned instead of throwing"). */
export function describeValue(value: unknown): string {
  if (value instanceof tf.Tensor) return `a ${value.dtype} tensor ${JSON.stringify(value.shape)}`;
  if (value === null || typeof value !== 'object') return String(value);
  if (Array.isArray(value)) return `an array of ${value.length}`;
  return `an object {${Object.keys(value).slice(0, 8).join(', ')}}`;
}

/** Bit patterns of every weight of a model (throws if a weight was disposed). */
export function weightBits(model: { getWeights(): tf.Tensor[] }): Uint32Array[] {
  return model.getWeights().map((w) => new Uint32Array(Float32Array.from(w.dataSync() as Float32Array).buffer));
}

export function sameBits(a: Uint32Array[], b: Uint32Array[]): boolean {
  return a.length === b.length && a.every((x, i) => x.length === (b[i] as Uint32Array).length && x.every((v, j) => v === (b[i] as Uint32Array)[j]));
}
