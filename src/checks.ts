/**
 * The one argument-checking module: every public function checks its tensors, its model and its
 * options here, so that every bad input gets a {@link ShapeError}, {@link ValueError} or
 * {@link UnsupportedModelError} that names the public function and says what to do, and never a
 * `TypeError` from deep inside.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { ShapeError, UnsupportedModelError, ValueError } from './errors.js';
import { checkKeys } from './optionNames.js';
import type { OptionNames } from './optionNames.js';

export { checkKeys } from './optionNames.js';
export type { OptionNames } from './optionNames.js';

/** A value as an error message shows it: its type where that says more than its text. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'string') return `'${v}' (a string)`;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (typeof v === 'function') return 'a function';
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  if (v instanceof tf.Tensor) return `a ${v.dtype} tensor of shape [${v.shape.join(',')}]`;
  return `an object (${Object.prototype.toString.call(v).slice(8, -1)})`;
}

/** @throws {@link ShapeError} unless `t` is a tf.Tensor; {@link ValueError} if it is disposed. */
export function checkTensor(t: unknown, fn: string, name: string): asserts t is tf.Tensor {
  if (!(t instanceof tf.Tensor)) throw new ShapeError(`${fn}: argument '${name}' must be a tf.Tensor, got ${describe(t)}.`);
  if (t.isDisposed) throw new ValueError(`${fn}: argument '${name}' is a disposed tensor.`);
}

/** {@link checkTensor}, and float32. */
export function checkFloatTensor(t: unknown, fn: string, name: string): asserts t is tf.Tensor {
  checkTensor(t, fn, name);
  if (t.dtype !== 'float32') throw new ShapeError(`${fn}: argument '${name}' must be float32, got ${t.dtype}.`);
}

/**
 * @throws {@link UnsupportedModelError} unless `model` is a built, not disposed `LayersModel`.
 */
export function checkModel(model: unknown, fn: string): asserts model is LayersModel {
  const m = model as Partial<LayersModel> | null | undefined;
  if (m == null || typeof m !== 'object' || !Array.isArray(m.inputs) || !Array.isArray(m.outputs) || !Array.isArray(m.layers)) {
    throw new UnsupportedModelError(`${fn}: expected a built tf.LayersModel (call model.build or give an inputShape), got ${describe(model)}.`);
  }
  const disposed = (l: unknown) => (l as { _refCount?: number | null })._refCount === 0;
  if (disposed(m) || m.layers.some(disposed)) throw new UnsupportedModelError(`${fn}: the model (or one of its layers) has been disposed.`);
}

/**
 * Checks a function's options: an object (or undefined, read as `{}`) with no key that `names`
 * does not list (see {@link checkKeys}). Every public function that takes options calls it
 * first, with the {@link OptionNames} record of its options type.
 * @throws {@link ValueError} unless `options` is an object, or for an unknown key.
 */
export function checkOptions<T extends object>(options: T | undefined | null, fn: string, names: OptionNames<T> | null, required = false): T {
  if (options === undefined && !required) return {} as T;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new ValueError(`${fn}: ${required ? 'the options object is required' : 'options must be an object'}, got ${describe(options)}.`);
  }
  if (names !== null) checkKeys(options, fn, names);
  return options;
}

/**
 * A nested options object (`rows: { topK }`, `cutoff: { min, max }`): undefined, or an object whose
 * keys `names` lists. Messages name it `what`.
 * @throws {@link ValueError} unless it is an object, or for an unknown key.
 */
export function checkNested<T extends object>(value: T | undefined | null, fn: string, what: string, names: OptionNames<T>): T {
  if (value === undefined) return {} as T;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ValueError(`${fn}: ${what} must be an object, got ${describe(value)}.`);
  checkKeys(value, fn, names, what);
  return value;
}

/** Bounds of {@link checkNumber}. */
export interface NumberBounds {
  /** Inclusive lower bound. */
  min?: number;
  /** Exclusive lower bound. */
  above?: number;
  /** Inclusive upper bound. */
  max?: number;
  /** Exclusive upper bound. */
  below?: number;
  integer?: boolean;
}

/**
 * An option that must be a finite number within bounds, or undefined (then `fallback`).
 * @throws {@link ValueError} naming the option and the bounds.
 */
export function checkNumber(v: unknown, fn: string, name: string, bounds: NumberBounds, fallback: number): number;
export function checkNumber(v: unknown, fn: string, name: string, bounds: NumberBounds): number | undefined;
export function checkNumber(v: unknown, fn: string, name: string, bounds: NumberBounds, fallback?: number): number | undefined {
  if (v === undefined) return fallback;
  const { min, above, max, below, integer } = bounds;
  const ok =
    typeof v === 'number' &&
    Number.isFinite(v) &&
    (!integer || Number.isInteger(v)) &&
    (min === undefined || v >= min) &&
    (above === undefined || v > above) &&
    (max === undefined || v <= max) &&
    (below === undefined || v < below);
  if (!ok) {
    const parts = [min !== undefined && `>= ${min}`, above !== undefined && `> ${above}`, max !== undefined && `<= ${max}`, below !== undefined && `< ${below}`].filter(Boolean);
    throw new ValueError(`${fn}: ${name} must be ${integer ? 'an integer' : 'a finite number'}${parts.length ? ` ${parts.join(' and ')}` : ''}, got ${describe(v)}.`);
  }
  return v;
}

/** A required number within bounds. @throws {@link ValueError} naming it, also when it is missing. */
export function requireNumber(v: unknown, fn: string, name: string, bounds: NumberBounds): number {
  if (v === undefined) throw new ValueError(`${fn}: ${name} is required${bounds.integer ? ' (an integer)' : ''}.`);
  return checkNumber(v, fn, name, bounds) as number;
}

/** An option that must be one of `choices` (or undefined, then `fallback`). */
export function checkChoice<T extends string>(v: unknown, fn: string, name: string, choices: readonly T[], fallback: T): T {
  if (v === undefined) return fallback;
  if (typeof v !== 'string' || !(choices as readonly string[]).includes(v)) {
    const quoted = choices.map((c) => `'${c}'`);
    const list = quoted.length > 1 ? `${quoted.slice(0, -1).join(', ')} or ${quoted.at(-1)}` : quoted.join('');
    throw new ValueError(`${fn}: ${name} must be ${list}; got ${describe(v)}.`);
  }
  return v as T;
}

/** The options every long call takes: `onProgress` a function, `signal` an AbortSignal. */
export function checkRunOptions(options: { onProgress?: unknown; signal?: unknown; memoryBudgetMB?: unknown }, fn: string): void {
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
    throw new ValueError(`${fn}: onProgress must be a function, got ${describe(options.onProgress)}.`);
  }
  const s = options.signal as Partial<AbortSignal> | undefined;
  if (s !== undefined && (s === null || typeof s !== 'object' || typeof s.aborted !== 'boolean' || typeof s.addEventListener !== 'function' || typeof s.throwIfAborted !== 'function')) {
    throw new ValueError(`${fn}: signal must be an AbortSignal (e.g. new AbortController().signal), got ${describe(s)}.`);
  }
  checkNumber(options.memoryBudgetMB, fn, 'memoryBudgetMB', { above: 0 });
}

/**
 * Whether every entry of `t` is finite: the one check behind every "contains NaN or Infinity"
 * error. A finite sum proves it (a NaN or an infinity makes the sum NaN or infinite) in one pass on
 * the device, half the time of `isFinite` then `all` on a weight-space factor; only a sum that is
 * not finite (which finite entries can also give, by overflow) is checked entry by entry, in
 * JavaScript.
 */
export async function allFinite(t: tf.Tensor): Promise<boolean> {
  const sum = tf.sum(t);
  try {
    if (Number.isFinite((await sum.data())[0])) return true;
  } finally {
    sum.dispose();
  }
  return everyFinite(await t.data());
}

/**
 * {@link allFinite}, read synchronously (`dataSync`): for the synchronous functions only
 * (`deform`, `matchedNoise`, `planeThroughPoints`, a projector's `project`, `LowRankPSD`'s
 * `matvec`). The asynchronous ones read asynchronously, which a GPU backend does without blocking.
 */
export function allFiniteSync(t: tf.Tensor): boolean {
  if (Number.isFinite(tf.tidy(() => tf.sum(t).dataSync()[0]))) return true;
  return everyFinite(t.dataSync());
}

/** The entry-by-entry check of {@link allFinite} and {@link allFiniteSync}, on a tensor's data. */
function everyFinite(values: ArrayLike<number>): boolean {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) return false;
  return true;
}
