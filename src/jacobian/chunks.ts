/**
 * Chunked execution shared by every batched public function: a memory budget that decides how many
 * samples go through one backward pass, progress reports and cancellation between chunks.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { checkNumber } from '../checks.js';
import { ValueError } from '../errors.js';
import type { OptionNames } from '../checks.js';

/** Progress of a long call, reported after each chunk. */
export interface Progress {
  /** Samples finished so far. */
  done: number;
  /** Samples in the call. */
  total: number;
}

/** Options every long-running function takes. */
export interface RunOptions {
  /**
   * Upper bound, in MiB, on the transient memory of one backward pass (activations and their
   * gradients, estimated from the layers' output sizes). The batch is cut into chunks that fit, down
   * to one sample per chunk and one row per backward pass. A budget you give that cannot hold that
   * much is refused with a `ValueError` (naming the least it takes) before any work; the default
   * budget lets such a pass go ahead.
   * The returned tensors are not counted: their size is what you asked for. On `wasm` the heap
   * grows to its high-water mark and never shrinks, so this is also the heap you keep.
   * @defaultValue 256
   */
  memoryBudgetMB?: number;
  /** Called after each chunk with the number of samples done. */
  onProgress?: (progress: Progress) => void;
  /** Cancels the call between chunks; the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
}

/** The option names of {@link RunOptions}. @internal */
export const RUN_OPTIONS: OptionNames<RunOptions> = { memoryBudgetMB: true, onProgress: true, signal: true };

export const DEFAULT_BUDGET_MB = 256;

/**
 * Bytes that one sample costs in one backward pass: every layer's output is kept for the backward
 * pass and has a gradient of the same size, so twice the float32 size of all activations, plus the
 * input and its gradient.
 */
export function bytesPerSamplePass(model: LayersModel): number {
  let floats = 0;
  const visit = (m: LayersModel) => {
    for (const layer of m.layers) {
      const nested = layer as unknown as Partial<LayersModel>;
      if (Array.isArray(nested.layers)) {
        visit(layer as unknown as LayersModel);
        continue;
      }
      const shapes = layer.outputShape;
      const list = Array.isArray(shapes[0]) || shapes.length === 0 ? (shapes as (number | null)[][]) : [shapes as (number | null)[]];
      for (const s of list) floats += s.slice(1).reduce<number>((a, d) => a * (d ?? 1), 1);
    }
  };
  visit(model);
  const inputFloats = (model.inputs[0]?.shape ?? []).slice(1).reduce<number>((a, d) => a * (d ?? 1), 1);
  return 4 * 2 * (floats + inputFloats);
}

/** Reads and checks the budget option, in bytes. */
export function budgetBytes(options: RunOptions, fn: string): number {
  return checkNumber(options.memoryBudgetMB, fn, 'memoryBudgetMB', { above: 0 }, DEFAULT_BUDGET_MB) * 1024 * 1024;
}

/**
 * The budget in bytes, for a call whose smallest pass (`what`) needs `minimum` bytes. A
 * `memoryBudgetMB` you gave that is below it is refused before any work (you asked for a bound the
 * call cannot keep); the default budget lets that one pass go ahead (a large model's first call
 * should not fail for a number you did not choose).
 * @throws {@link ValueError} naming the budget, what it must hold and how much that takes.
 */
export function budgetFor(options: RunOptions, fn: string, minimum: number, what: string): number {
  const budget = budgetBytes(options, fn);
  if (options.memoryBudgetMB !== undefined && budget < minimum) {
    // Rounded up, so that the number it names is enough.
    const mb = (bytes: number) => {
      const v = bytes / 2 ** 20;
      const step = 10 ** (Math.floor(Math.log10(v)) - 2);
      return Number((Math.ceil(v / step) * step).toPrecision(3)).toString();
    };
    throw new ValueError(
      `${fn}: memoryBudgetMB = ${options.memoryBudgetMB} cannot hold ${what} (${mb(minimum)} MiB, the least the call can do at once); ` +
        `give at least ${mb(minimum)}, or leave it out.`,
    );
  }
  return budget;
}

/** Lets the event loop run (so an abort or a progress redraw can happen) between chunks. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/**
 * Runs `work` on consecutive slices of `x` (at most `chunk` samples each) and concatenates each of
 * its outputs along axis 0. `work` may be async (to yield between the backward passes of a chunk)
 * and owns nothing: the slice is disposed here, and on abort or error every partial result too.
 * Returns one tensor per output of `work`, owned by the caller.
 */
export async function runChunks(
  x: tf.Tensor,
  chunk: number,
  options: RunOptions,
  work: (xc: tf.Tensor, start: number) => tf.Tensor[] | Promise<tf.Tensor[]>,
): Promise<tf.Tensor[]> {
  const B = x.shape[0] as number;
  const parts: tf.Tensor[][] = [];
  try {
    options.signal?.throwIfAborted();
    for (let start = 0; start < B; start += chunk) {
      const size = Math.min(chunk, B - start);
      const xc = size === B ? x : tf.slice(x, start, size);
      try {
        parts.push(await work(xc, start));
      } finally {
        if (xc !== x) xc.dispose();
      }
      options.onProgress?.({ done: start + size, total: B });
      if (start + size < B) await pause(options.signal);
    }
  } catch (e) {
    parts.forEach((p) => tf.dispose(p));
    throw e;
  }
  const first = parts[0] as tf.Tensor[];
  if (parts.length === 1) return first;
  const joined = first.map((_, k) => tf.concat(parts.map((p) => p[k] as tf.Tensor), 0));
  parts.forEach((p) => tf.dispose(p));
  return joined;
}

/** Yields to the event loop, then throws `signal.reason` if the call was aborted meanwhile. */
export async function pause(signal: AbortSignal | undefined): Promise<void> {
  await yieldToEventLoop();
  signal?.throwIfAborted();
}

/**
 * Runs `step(i)` for i = 0..count−1, each inside `tf.tidy`, yielding to the event loop between
 * steps (so that a long chunk can be aborted), and returns the kept results. On abort or error the
 * results so far are disposed.
 */
export async function tidySteps(count: number, signal: AbortSignal | undefined, step: (i: number) => tf.Tensor): Promise<tf.Tensor[]> {
  const out: tf.Tensor[] = [];
  try {
    for (let i = 0; i < count; i++) {
      if (i > 0) await pause(signal);
      out.push(tf.tidy(() => step(i)));
    }
    return out;
  } catch (e) {
    tf.dispose(out);
    throw e;
  }
}
