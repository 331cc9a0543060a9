/** horizontalPath, orthogonalPath, kernelPath and tangentPath: linear-model oracles, a trained CNN, determinism, abort, leaks. */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { distributionProjector, horizontalPath, kernelPath, localDataMatrix, orthogonalPath, ShapeError, tangentPath, ValueError, wrapClassifier } from '../src/index.js';
import { denseNet } from '../examples/models.js';
import { expectClose, expectNoLeak, randn } from './helpers.js';
import { MNIST_DIR, needs } from './realData.js';
import { trainSmallCnn } from './trainedCnn.js';

/** A linear softmax model on ℝ⁶ with 4 classes: D_x = span{W_i − W_j} (3-dim) everywhere. */
function linear() {
  const model = denseNet(6, [], 4, 21);
  tf.tidy(() => model.layers[0]!.setWeights([randn([6, 4], 22), randn([4], 23)]));
  return model;
}

function rows(t: tf.Tensor): number[][] {
  return tf.tidy(() => tf.reshape(t, [t.shape[0] as number, -1])).arraySync() as number[][];
}
const dot = (a: number[], b: number[]) => a.reduce((s, v, i) => s + v * (b[i] as number), 0);
const norm = (a: number[]) => Math.sqrt(dot(a, a));

describe('horizontalPath on a linear model (oracle 5)', () => {
  const model = linear();
  const x0 = randn([1, 6], 1);

  /** A target whose displacement has in-leaf part `along` and across-leaf part `across`. */
  async function target(along: number, across: number) {
    const P = await distributionProjector(model, x0);
    const r = randn([1, 6], 2);
    const t = tf.tidy(() => {
      const a = P.project(r);
      const k = P.projectKernel(r);
      return tf.add(x0, tf.add(tf.mul(a, along / tf.norm(a).dataSync()[0]!), tf.mul(k, across / tf.norm(k).dataSync()[0]!)));
    });
    P.dispose();
    r.dispose();
    return t;
  }

  it('is a straight segment that stalls at the floor ‖(I − P)(target − x₀)‖ when the floor exceeds the threshold', async () => {
    const t = await target(2.0, 1.5); // floor 1.5 > threshold 1.0
    const [path] = await horizontalPath(model, x0, t, { recordEvery: 1 });
    expect(path!.stopReason).toBe('stalled');
    const f = rows(path!.frames);
    const start = f[0]!;
    const u = f[1]!.map((v, i) => v - (start[i] as number));
    for (const frame of f.slice(2)) {
      const w = frame.map((v, i) => v - (start[i] as number));
      // collinear with the first step: cos = 1 up to float32 rounding
      expect(dot(u, w) / (norm(u) * norm(w))).toBeGreaterThan(1 - 1e-6);
    }
    // ~2.0 / 0.1 = 20 steps along the leaf; distances fall monotonically towards the floor.
    expect(path!.steps).toBeGreaterThanOrEqual(19);
    expect(path!.steps).toBeLessThanOrEqual(21);
    const d = Array.from(path!.distances);
    d.slice(1).forEach((v, i) => expect(v).toBeLessThan(d[i] as number));
    // It stops within half a step of the closest point: floor ≤ final ≤ √(floor² + (α/2)²).
    expect(d.at(-1)!).toBeGreaterThanOrEqual(1.5 - 1e-4);
    expect(d.at(-1)!).toBeLessThanOrEqual(Math.hypot(1.5, 0.05) + 1e-4);
    tf.dispose([t, path!.frames]);
  });

  it('reaches the target iff the floor is within the threshold', async () => {
    const t = await target(2.0, 0.8); // floor 0.8 ≤ 1.0
    const [path] = await horizontalPath(model, x0, t);
    expect(path!.stopReason).toBe('reached');
    expect(path!.distances.at(-1)!).toBeLessThanOrEqual(1.0);
    expect(path!.distances.at(-2)!).toBeGreaterThan(1.0);
    tf.dispose([t, path!.frames]);
  });

  it('the orthogonal path keeps p exactly (oracle 3) while moving α per step', async () => {
    const [path] = await orthogonalPath(model, x0, { maxSteps: 30, seed: 3, recordEvery: 5 });
    expect(path!.stopReason).toBe('maxSteps');
    expect(path!.steps).toBe(30);
    // A straight line in ker G: the distance from the source is 0.1 × steps.
    expectClose(path!.distances, Array.from({ length: 31 }, (_, k) => 0.1 * k), { atol: 1e-5 });
    const clf = wrapClassifier(model);
    const p = tf.tidy(() => clf.probs(path!.frames));
    const p0 = tf.tidy(() => tf.tile(tf.slice(p, 0, 1), [p.shape[0], 1]));
    expectClose(p, p0, { atol: 1e-6, label: 'p along the kernel path' });
    expect(path!.frameSteps).toEqual([0, 5, 10, 15, 20, 25, 30]);
    tf.dispose([p, p0, path!.frames]);
  });
  it('the kernel path is the straight segment across the leaves: p stays, it stalls at the in-leaf part or reaches the target', async () => {
    const t = await target(1.5, 2.0); // in-leaf part 1.5 > threshold 1.0: stalls there
    const [path] = await kernelPath(model, x0, t, { recordEvery: 1 });
    expect(path!.stopReason).toBe('stalled');
    // ~2.0 / 0.1 = 20 steps across, then stuck at distance ≈ 1.5 (what lies inside the leaf).
    expect(path!.steps).toBeGreaterThanOrEqual(19);
    expect(path!.steps).toBeLessThanOrEqual(21);
    expect(path!.distances.at(-1)!).toBeGreaterThanOrEqual(1.5 - 1e-4);
    expect(path!.distances.at(-1)!).toBeLessThanOrEqual(Math.hypot(1.5, 0.05) + 1e-4);
    const clf = wrapClassifier(model);
    const p = tf.tidy(() => clf.probs(path!.frames));
    const p0 = tf.tidy(() => tf.tile(tf.slice(p, 0, 1), [p.shape[0], 1]));
    expectClose(p, p0, { atol: 1e-6, label: 'p along the kernel path' });
    const near = await target(0.8, 2.0); // in-leaf part within the threshold: reached
    const [reached] = await kernelPath(model, x0, near);
    expect(reached!.stopReason).toBe('reached');
    tf.dispose([t, near, p, p0, path!.frames, reached!.frames]);
  });

  it('the tangent path moves α per step along P r, the leaf part of the direction, which the kernel path never uses', async () => {
    const r = randn([1, 6], 7);
    const [path] = await tangentPath(model, x0, { direction: r, maxSteps: 12, recordEvery: 1 });
    expect(path!.stopReason).toBe('maxSteps');
    expectClose(path!.distances, Array.from({ length: 13 }, (_, k) => 0.1 * k), { atol: 1e-5 });
    const P = await distributionProjector(model, x0);
    const pt = P.project(r);
    const pr = rows(pt)[0]!;
    pt.dispose();
    const f = rows(path!.frames);
    const step = f[12]!.map((v, i) => v - (f[0]![i] as number));
    expect(dot(step, pr) / (norm(step) * norm(pr))).toBeGreaterThan(1 - 1e-6); // along P r
    // The orthogonal path with the same r moves along (I − P) r: perpendicular to this one.
    const [o] = await orthogonalPath(model, x0, { direction: r, maxSteps: 3, recordEvery: 1 });
    const g = rows(o!.frames);
    const ostep = g[3]!.map((v, i) => v - (g[0]![i] as number));
    expect(Math.abs(dot(step, ostep)) / (norm(step) * norm(ostep))).toBeLessThan(1e-5);
    await expect(tangentPath(model, x0, { direction: randn([1, 5], 1) })).rejects.toThrow(/^tangentPath: argument 'direction' must have the shape/);
    await expect(kernelPath(model, x0, x0, { threshold: -1 })).rejects.toThrow(/^kernelPath: threshold must be/);
    P.dispose();
    tf.dispose([r, path!.frames, o!.frames]);
  });
});

describe.skipIf(MNIST_DIR === undefined)(`paths on a CNN trained on real MNIST${needs('mnist', MNIST_DIR)}`, () => {
  let model: tfl.LayersModel;
  let x: tf.Tensor;
  let labels: Uint8Array;
  beforeAll(async () => {
    ({ model, x, labels } = await trainSmallCnn(8));
  });

  it('a horizontal path between digits of different classes gets closer to the target', async () => {
    const j = Array.from(labels).findIndex((l) => l !== labels[0]);
    const [src, dst] = [tf.slice(x, 0, 1), tf.slice(x, j, 1)];
    const steps: number[] = [];
    const [path] = await horizontalPath(model, src, dst, { maxSteps: 40, onStep: (s) => steps.push(s.step) });
    expect(steps).toEqual(Array.from({ length: 40 }, (_, k) => k + 1)); // once per step taken
    expect(path!.stopReason).toBe('maxSteps');
    const d = path!.distances;
    // Each step moves 0.1 along the leaf, so the distance falls by at most 0.1 and in total by a
    // clear amount (the leaf is curved: not all of each step is towards the target).
    expect(d[0]! - d.at(-1)!).toBeGreaterThan(1.0);
    for (let k = 1; k < d.length; k++) expect(d[k - 1]! - d[k]!).toBeLessThanOrEqual(0.1 + 1e-5);
    // The trace recorded at each frame is tr G(x) there: localDataMatrix at the recorded frames is
    // the oracle (a trace that dropped the −p_i p_j terms of the covariance would be larger).
    const { G, probs } = await localDataMatrix(model, path!.frames);
    const trG = await G.trace();
    // Both from float32 Jacobians of the same frames (one batched, one per step): 1e-5 relative.
    expectClose(path!.traceG, trG, { rtol: 1e-5, label: 'traceG vs localDataMatrix' });
    G.dispose();
    tf.dispose([src, dst, path!.frames, probs]);
  });

  it('an orthogonal path keeps the prediction while x moves away; the same seed gives the same path', async () => {
    const src = tf.slice(x, 1, 2);
    const [a, b] = await orthogonalPath(model, src, { maxSteps: 30, seed: 5, recordEvery: 10 });
    for (const path of [a!, b!]) {
      expect(new Set(path.predicted).size).toBe(1);
      const dp = Math.max(...path.probability) - Math.min(...path.probability);
      // First-order invariance: p changes only through the curvature of the leaves over 3 units.
      expect(dp).toBeLessThan(0.05);
      expect(path.distances.at(-1)!).toBeGreaterThan(2.5);
    }
    const one = tf.slice(x, 1, 1);
    const [again] = await orthogonalPath(model, one, { maxSteps: 30, seed: 5, recordEvery: 10 });
    const [other] = await orthogonalPath(model, one, { maxSteps: 30, seed: 6, recordEvery: 10 });
    // The random direction is drawn for the whole batch: the first sample of the batch of two and a
    // batch of one with the same seed take the same path; another seed does not.
    expectClose(again!.frames, a!.frames, { rtol: 1e-6, label: 'same seed' });
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(other!.frames, a!.frames))).dataSync()[0])).toBeGreaterThan(0.01);
    // The default seed (0) is a seed too: tfjs draws from Math.random for a falsy seed.
    const [d1] = await orthogonalPath(model, one, { maxSteps: 3 });
    const [d2] = await orthogonalPath(model, one, { maxSteps: 3 });
    expect(Array.from(d2!.frames.dataSync())).toEqual(Array.from(d1!.frames.dataSync()));
    tf.dispose([src, one, a!.frames, b!.frames, again!.frames, other!.frames, d1!.frames, d2!.frames]);
  });

  it('abort ends every path with reason "aborted"', async () => {
    const ctrl = new AbortController();
    const src = tf.slice(x, 0, 2);
    const before = tf.memory().numTensors;
    const paths = await orthogonalPath(model, src, { seed: 1, signal: ctrl.signal, onStep: (s) => s.step === 3 && ctrl.abort() });
    for (const p of paths) {
      expect(p.stopReason).toBe('aborted');
      expect(p.steps).toBe(3);
      expect(Number.isNaN(p.traceG.at(-1))).toBe(true);
    }
    tf.dispose(paths.map((p) => p.frames));
    // Already aborted: resolves with paths of 0 steps (as documented), not a rejection.
    const zeros = tf.zerosLike(src);
    const none = await horizontalPath(model, src, zeros, { signal: AbortSignal.abort() });
    for (const p of none) {
      expect([p.stopReason, p.steps, p.frames.shape[0]]).toEqual(['aborted', 0, 1]);
      expect(Number.isNaN(p.traceG[0])).toBe(true);
    }
    tf.dispose([zeros, ...none.map((p) => p.frames)]);
    expect(tf.memory().numTensors).toBe(before);
    src.dispose();
  });
});

describe('paths: leaks and errors', () => {
  const model = linear();
  it('no tensor leaks over a 100-step path', async () => {
    const x0 = randn([2, 6], 4);
    const t = randn([2, 6], 5, 30);
    const paths = await expectNoLeak(() => horizontalPath(model, x0, t, { maxSteps: 100, threshold: 0, stallTolerance: 0 }), (r) => r.map((p) => p.frames));
    paths.forEach((p) => expect(p.steps).toBe(100));
    tf.dispose([x0, t, ...paths.map((p) => p.frames)]);
  });

  it('typed errors', async () => {
    const x0 = randn([2, 6], 4);
    await expect(horizontalPath(model, x0, randn([2, 5], 1))).rejects.toThrow(ShapeError);
    await expect(horizontalPath(model, x0, tf.fill([2, 6], NaN))).rejects.toThrow(/NaN/);
    await expect(horizontalPath(model, x0, x0, { stepSize: 0 })).rejects.toThrow(ValueError);
    await expect(horizontalPath(model, x0, x0, { clamp: [1, 0] })).rejects.toThrow(/clamp/);
    await expect(horizontalPath(model, x0, x0, { maxSteps: 2.5 })).rejects.toThrow(/integer/);
    await expect(orthogonalPath(model, x0, { direction: randn([1, 6], 2) })).rejects.toThrow(ShapeError);
    x0.dispose();
  });
});
