import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { expect } from 'vitest';

/**
 * Asserts max|a − b| ≤ atol + rtol·max|b| (a norm-wise relative test: float32 Jacobian entries span
 * many orders of magnitude, so an element-wise relative test would be dominated by entries that
 * are pure rounding noise).
 */
export function expectClose(
  a: ArrayLike<number> | tf.Tensor,
  b: ArrayLike<number> | tf.Tensor,
  { rtol = 1e-5, atol = 0, label = '' }: { rtol?: number; atol?: number; label?: string } = {},
): number {
  const av = a instanceof tf.Tensor ? a.dataSync() : a;
  const bv = b instanceof tf.Tensor ? b.dataSync() : b;
  expect(av.length, `${label} length`).toBe(bv.length);
  let maxErr = 0;
  let maxRef = 0;
  for (let i = 0; i < av.length; i++) {
    maxErr = Math.max(maxErr, Math.abs((av[i] as number) - (bv[i] as number)));
    maxRef = Math.max(maxRef, Math.abs(bv[i] as number));
  }
  expect(Number.isFinite(maxErr), `${label} finite`).toBe(true);
  expect(maxErr, `${label}: max error ${maxErr} vs scale ${maxRef}`).toBeLessThanOrEqual(atol + rtol * maxRef);
  return maxErr / (maxRef || 1);
}

/** Runs `fn` and asserts that it leaves exactly `returned(result)` new tensors behind. */
export async function expectNoLeak<T>(fn: () => Promise<T> | T, returned: (r: T) => tf.Tensor[]): Promise<T> {
  const before = tf.memory().numTensors;
  const result = await fn();
  const out = returned(result);
  expect(tf.memory().numTensors, 'tensors left behind').toBe(before + out.length);
  return result;
}

/** Seeded standard-normal batch. */
export function randn(shape: number[], seed: number, scale = 1): tf.Tensor {
  return tf.randomNormal(shape, 0, scale, 'float32', seed);
}

/** Runs fn with one kernel removed from the active backend, then puts it back. */
export async function withoutKernel<T>(kernelName: string, fn: () => Promise<T>): Promise<T> {
  const backend = tf.getBackend();
  const saved = tf.getKernel(kernelName, backend);
  if (saved) tf.unregisterKernel(kernelName, backend);
  try {
    return await fn();
  } finally {
    if (saved) tf.registerKernel(saved);
  }
}

/** Runs `fn` on the cpu backend (tfjs's stock kernels, for oracles), then returns to the active one. */
export async function onCpu<T>(fn: () => T | Promise<T>): Promise<T> {
  const backend = tf.getBackend();
  await tf.setBackend('cpu');
  try {
    return await fn();
  } finally {
    await tf.setBackend(backend);
  }
}

/**
 * Runs fn and measures the peak of live tensor bytes it added, by data buffer: tfjs's own count
 * (`tf.memory().numBytes`, `tf.profile`) adds each tensor's bytes, so an aliasing reshape counts
 * its buffer twice, which no memory holds. Bytes alive before fn are not in `peak`.
 */
export async function peakBufferBytes<T>(fn: () => Promise<T>): Promise<{ result: T; peak: number }> {
  const engine = tf.engine() as unknown as { trackTensor(t: tf.Tensor, b: unknown): void; disposeTensor(t: tf.Tensor): void };
  const [track, untrack] = [engine.trackTensor, engine.disposeTensor];
  const live = new Map<object, { refs: number; bytes: number }>();
  let bytes = 0;
  let peak = 0;
  engine.trackTensor = function (t, b) {
    const e = live.get(t.dataId);
    if (e) e.refs++;
    else {
      live.set(t.dataId, { refs: 1, bytes: t.size * 4 });
      peak = Math.max(peak, (bytes += t.size * 4));
    }
    return track.call(this, t, b);
  };
  engine.disposeTensor = function (t) {
    const e = live.get(t.dataId);
    if (e && !t.isDisposed && --e.refs === 0) {
      live.delete(t.dataId);
      bytes -= e.bytes;
    }
    return untrack.call(this, t);
  };
  try {
    return { result: await fn(), peak };
  } finally {
    engine.trackTensor = track;
    engine.disposeTensor = untrack;
  }
}

/**
 * A custom layer, y = 2·tanh(x), that infogeo's graph does not know (as every user-defined layer):
 * the plan falls back to tf.grad, which differentiates it.
 */
export class CustomTanh extends tfl.layers.Layer {
  static className = 'InfogeoTestCustomTanh';
  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => tf.mul(2, tf.tanh(Array.isArray(inputs) ? (inputs[0] as tf.Tensor) : inputs)));
  }
}

/**
 * A custom layer that leaves the tensor graph: its call() reads its input back to JS with
 * `dataSync` and returns a new tensor of the same values (the identity in value, with no gradient
 * path on tfjs's tape), as a layer written with JS loops does.
 */
export class ReadBackLayer extends tfl.layers.Layer {
  static className = 'InfogeoTestReadBack';
  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const x = Array.isArray(inputs) ? (inputs[0] as tf.Tensor) : inputs;
    return tf.tensor(x.dataSync(), x.shape, 'float32');
  }
}

/**
 * The smallest `memoryBudgetMB` a call accepts, read from its refusal of a tiny one (refused before
 * any work): with it, a chunk holds one sample and a pass one row, the most a call can be cut.
 */
export async function smallestBudget(call: (memoryBudgetMB: number) => Promise<unknown>): Promise<number> {
  try {
    await call(1e-9);
  } catch (e) {
    const m = /give at least ([0-9.e+-]+), or leave it out/.exec((e as Error).message);
    if (m) return Number(m[1]);
    throw e;
  }
  throw new Error('the call took a memory budget of 1e-9 MiB');
}
