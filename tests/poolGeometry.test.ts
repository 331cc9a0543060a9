/**
 * Every batched call of the pool (infogeo/node) against the same call in this thread: the same
 * numbers (the threads run the same code on shares of the batch: float32 rounding of batched
 * kernels at most), in batch order, no tensors left behind here, progress per share, aborts that
 * reject with the reason, and typed errors that name the pool's call.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  datasetFisher,
  distributionProjector,
  horizontalPath,
  kernelPath,
  LayerNotFoundError,
  localDataMatrix,
  localFisher,
  orthogonalPath,
  planeThroughPoints,
  pullbackMetric,
  relativeStability,
  scalarCurvature,
  scanPlane,
  ShapeError,
  tangentPath,
  ValueError,
  volumeElement,
  weightJacobian,
} from '../src/index.js';
import { createJacobianPool } from '../src/node/pool.js';
import { decode, Outbox } from '../src/node/protocol.js';
import type { JacobianPool } from '../src/node/pool.js';
import { mnistCnn } from '../examples/models.js';
import { expectClose, expectNoLeak, randn } from './helpers.js';

const B = 5; // split 2 + 3 between the two threads

describe('the pool runs every batched call (2 threads, on the backend of this thread)', () => {
  let model: tfl.LayersModel;
  let pool: JacobianPool;
  let x: tf.Tensor;
  beforeAll(async () => {
    model = mnistCnn(5, { filters: [3, 4], hidden: 12 });
    // The threads on this thread's backend: the same kernels, so only the batch composition differs.
    pool = await createJacobianPool(model, { threads: 2, backend: tf.getBackend() as 'wasm' | 'cpu' });
    x = randn([B, 28, 28, 1], 41);
  }, 60_000);
  afterAll(async () => {
    await pool?.close();
    x?.dispose();
    model?.dispose();
  });

  /** Runs the pool's call with progress recorded and no tensors left behind but `returned`. */
  async function pooled<T>(call: (onProgress: (p: { done: number; total: number }) => void) => Promise<T>, returned: (r: T) => tf.Tensor[], total = B): Promise<T> {
    const seen: number[] = [];
    const r = await expectNoLeak(() => call((p) => (expect(p.total).toBe(total), seen.push(p.done))), returned);
    // One report per share (2 and 3 samples, in either order), ending with all of them.
    expect(seen.length).toBe(2);
    expect(seen[1]).toBe(total);
    return r;
  }

  it('weightJacobian and localFisher', async () => {
    const one = await weightJacobian(model, x, { layers: ['fc1', 'fc2'] });
    const two = await pooled((onProgress) => pool.weightJacobian(x, { layers: ['fc1', 'fc2'], onProgress }), (r) => [r.jacobian]);
    expect(two.slices).toEqual(one.slices);
    expectClose(two.jacobian, one.jacobian, { rtol: 1e-5, label: 'weight rows' });
    const F1 = await localFisher(model, x);
    const F2 = await pooled((onProgress) => pool.localFisher(x, { onProgress }), (r) => [r.F.factor, r.probs]);
    expectClose(F2.F.factor, F1.F.factor, { rtol: 1e-5, label: 'Fisher factor' });
    expectClose(F2.probs, F1.probs, { rtol: 1e-6, label: 'p' });
    tf.dispose([one.jacobian, two.jacobian, F1.probs, F2.probs]);
    F1.F.dispose();
    F2.F.dispose();
  }, 60_000);

  it('datasetFisher: the shares joined into the mean Fisher of all N samples', async () => {
    const data = randn([6, 28, 28, 1], 42);
    const one = await datasetFisher(model, data, { layers: ['fc2'], batchSize: 2 });
    const two = await pooled((onProgress) => pool.datasetFisher(data, { layers: ['fc2'], batchSize: 2, onProgress }), (r) => [r.F.factor], 6);
    expect(two.count).toBe(6);
    // The same rows in the same order, each scaled by 1/√N.
    expectClose(two.F.factor, one.F.factor, { rtol: 1e-5, label: 'stacked factor' });
    await expect(pool.datasetFisher([data] as never)).rejects.toThrow(ShapeError);
    // Each share fits maxFactorMB; the joined factor does not (6 samples × 9 rows × 130 weights).
    const limit = (4 * 9 * 130 * 4) / 2 ** 20;
    await expect(pool.datasetFisher(data, { layers: ['fc2'], maxFactorMB: limit })).rejects.toThrow(/^JacobianPool\.datasetFisher: the stacked factor passed maxFactorMB/);
    one.F.dispose();
    two.F.dispose();
    data.dispose();
  }, 60_000);

  it('localDataMatrix and distributionProjector', async () => {
    const G1 = await localDataMatrix(model, x);
    const G2 = await pooled((onProgress) => pool.localDataMatrix(x, { onProgress }), (r) => [r.G.factor, r.probs]);
    expectClose(G2.G.factor, G1.G.factor, { rtol: 1e-5, label: 'G factor' });
    const K1 = await localDataMatrix(model, x, { rows: { topK: 3 } });
    const K2 = await pooled((onProgress) => pool.localDataMatrix(x, { onProgress, rows: { topK: 3 } }), (r) => [r.G.factor, r.probs]);
    expectClose(K2.G.factor, K1.G.factor, { rtol: 1e-5, label: 'top-3 factor' });
    expect(Array.from(K2.droppedMass)).toEqual(Array.from(K1.droppedMass));
    const S1 = await localDataMatrix(model, x, { rows: { samples: 6, seed: 2 } });
    const S2 = await pooled((onProgress) => pool.localDataMatrix(x, { onProgress, rows: { samples: 6, seed: 2 } }), (r) => [r.G.factor, r.probs]);
    expectClose(S2.G.factor, S1.G.factor, { rtol: 1e-5, label: 'sampled factor (the same draws in each share)' });
    expectClose(S2.traceStandardError, S1.traceStandardError, { rtol: 1e-5, label: 'standard errors' });
    tf.dispose([K1.probs, K2.probs, S1.probs, S2.probs]);
    [K1.G, K2.G, S1.G, S2.G].forEach((t) => t.dispose());
    const P1 = await distributionProjector(model, x);
    const P2 = await pooled((onProgress) => pool.distributionProjector(x, { onProgress }), (r) => [r.basis]);
    expect(P2.rank).toEqual(P1.rank);
    expectClose(P2.basis, P1.basis, { rtol: 1e-5, label: 'basis' });
    tf.dispose([G1.probs, G2.probs]);
    [G1.G, G2.G, P1, P2].forEach((t) => t.dispose());
  }, 60_000);

  it('pullbackMetric and volumeElement, with a per-sample subspace split and a shared one not', async () => {
    const g1 = await pullbackMetric(model, x);
    const g2 = await pooled((onProgress) => pool.pullbackMetric(x, { onProgress }), (r) => [r.factor]);
    expectClose(g2.factor, g1.factor, { rtol: 1e-5, label: 'metric factor' });
    const onCpu = tf.getBackend() === 'wasm' ? await (async () => {
      // A shared subspace that lives on another backend than the active one: sent as a copy, the
      // caller's tensor intact (its cpu array must not be transferred away).
      await tf.setBackend('cpu');
      const t = randn([2, 28, 28, 1], 47);
      await tf.setBackend('wasm');
      return t;
    })() : undefined;
    if (onCpu) {
      const before = Array.from(onCpu.dataSync());
      const v = await pool.volumeElement(x, { subspace: onCpu });
      expect(v.logVolume.length).toBe(B);
      expect(Array.from(onCpu.dataSync())).toEqual(before);
      onCpu.dispose();
    }
    for (const subspace of [randn([B, 2, 28, 28, 1], 43), randn([2, 28, 28, 1], 44)]) {
      const v1 = await volumeElement(model, x, { subspace });
      const v2 = await pooled((onProgress) => pool.volumeElement(x, { subspace, onProgress }), () => []);
      expect(v2.rank).toEqual(v1.rank);
      expect(v2.terms).toBe(v1.terms);
      expectClose(v2.logVolume, v1.logVolume, { rtol: 1e-5, label: `log volume, subspace ${subspace.shape}` });
      subspace.dispose();
    }
    g1.dispose();
    g2.dispose();
  }, 60_000);

  it('scalarCurvature on a per-sample plane: the batch split, the values of one thread', async () => {
    const subspace = randn([B, 2, 28, 28, 1], 48, 1 / 28);
    const opts = { target: 'logProbs' as const, subspace };
    const r1 = await scalarCurvature(model, x, opts);
    const r2 = await pooled((onProgress) => pool.scalarCurvature(x, { ...opts, onProgress }), () => []);
    expect(r2.dim).toBe(2);
    expectClose(r2.scalar, r1.scalar, { rtol: 1e-5, label: 'scalar curvature' });
    expectClose(r2.ricci.flatMap((r) => Array.from(r)), r1.ricci.flatMap((r) => Array.from(r)), { rtol: 1e-5, label: 'Ricci' });
    await expect(pool.scalarCurvature(x)).rejects.toThrow(/^JacobianPool\.scalarCurvature: the input has n = 784 dimensions/);
    subspace.dispose();
  }, 60_000);

  it('horizontalPath and orthogonalPath: the B pairs split, the paths in order (the random direction drawn once)', async () => {
    const target = randn([B, 28, 28, 1], 45);
    const opts = { maxSteps: 3, threshold: 0, stallTolerance: 0 };
    const along = { maxSteps: 3 }; // the paths along a direction have no target to reach or stall on
    const h1 = await horizontalPath(model, x, target, opts);
    const h2 = await pooled((onProgress) => pool.horizontalPath(x, target, { ...opts, onProgress }), (r) => r.map((p) => p.frames));
    const o1 = await orthogonalPath(model, x, { ...along, seed: 3 });
    const o2 = await pooled((onProgress) => pool.orthogonalPath(x, { ...along, seed: 3, onProgress }), (r) => r.map((p) => p.frames));
    const k1 = await kernelPath(model, x, target, opts);
    const k2 = await pooled((onProgress) => pool.kernelPath(x, target, { ...opts, onProgress }), (r) => r.map((p) => p.frames));
    const t1 = await tangentPath(model, x, { ...along, seed: 5 });
    const t2 = await pooled((onProgress) => pool.tangentPath(x, { ...along, seed: 5, onProgress }), (r) => r.map((p) => p.frames));
    for (const [a, b] of [[h1, h2], [o1, o2], [k1, k2], [t1, t2]] as const) {
      expect(b.length).toBe(B);
      b.forEach((p, i) => {
        expect(p.steps).toBe(a[i]!.steps);
        expect(p.stopReason).toBe(a[i]!.stopReason);
        expectClose(p.frames, a[i]!.frames, { rtol: 1e-5, label: `frames of path ${i}` });
        expectClose(p.distances, a[i]!.distances, { rtol: 1e-5, label: `distances of path ${i}` });
      });
    }
    await expect(pool.horizontalPath(x, target, { onStep: () => undefined } as never)).rejects.toThrow(/^JacobianPool\.horizontalPath: onStep cannot run/);
    tf.dispose([target, ...[h1, h2, o1, o2, k1, k2, t1, t2].flat().map((p) => p.frames)]);
  }, 60_000);

  it('scanPlane and relativeStability: exactly the values of one thread', async () => {
    const three = tf.slice(x, 0, 3);
    const plane = planeThroughPoints(three);
    // 16 grid points in batches of 5: shares of 10 and 6 points.
    for (const volume of ['plane', 'effective'] as const) {
      const opts = { steps: 4, batchSize: 5, volume, k: 3 };
      const s1 = await scanPlane(model, plane, opts);
      const s2 = await pooled((onProgress) => pool.scanPlane(plane, { ...opts, onProgress }), () => [], 16);
      expect(s2).toEqual(s1);
    }
    // The curvature channel (on the log-probabilities: this CNN is ReLU up to its logits).
    const curved = { steps: 4, batchSize: 5, volume: 'plane' as const, target: 'logProbs' as const, curvature: true };
    const c1 = await scanPlane(model, plane, curved);
    const c2 = await pooled((onProgress) => pool.scanPlane(plane, { ...curved, onProgress }), () => [], 16);
    expect(c2).toEqual(c1);
    expect(c1.curvature?.length).toBe(16);
    expect(c1.curvature?.every(Number.isFinite)).toBe(true);
    // 5 images: shares of 2 and 3, in batches of 2 (one thread: 2, 2, 1), each image deformed with
    // the field of its index.
    for (const interpolation of ['bilinear', 'gaussian'] as const) {
      const opts = { delta: [0.5, 1.5], draws: 2, batchSize: 2, seed: 4, interpolation, aggregation: 'median' as const };
      const r1 = await relativeStability(model, x, opts);
      const r2 = await pooled((onProgress) => pool.relativeStability(x, { ...opts, onProgress }), () => []);
      expect(r2).toEqual(r1);
      expect(r1.points[1]!.D).toBeGreaterThan(0);
    }
    const one = tf.slice(x, 0, 1);
    await expect(pool.relativeStability(one)).rejects.toThrow(ValueError);
    await expect(pool.relativeStability(one)).rejects.toThrow(/^JacobianPool\.relativeStability: at least 2 probing images/);
    await expect(pool.scanPlane(plane, { steps: 1 })).rejects.toThrow(/^JacobianPool\.scanPlane: steps/);
    plane.dispose();
    tf.dispose([three, one]);
  }, 120_000);

  it("typed errors name the pool's call; an abort rejects with its reason and leaves nothing behind", async () => {
    await expect(pool.localFisher(randn([2, 27, 28, 1], 46))).rejects.toThrow(/^JacobianPool\.localFisher: /);
    await expect(pool.localFisher(randn([2, 27, 28, 1], 46))).rejects.toThrow(ShapeError);
    const missing = pool.weightJacobian(x, { layers: ['nope'] });
    await expect(missing).rejects.toThrow(LayerNotFoundError);
    await expect(missing).rejects.toThrow(/^JacobianPool\.weightJacobian: the model has no layer named 'nope'/);
    await expect(pool.volumeElement(x, { k: -1, mode: 'effective' } as never)).rejects.toThrow(/^JacobianPool\.volumeElement: /);
    // Every call: aborted while the threads work, it rejects with the reason; aborted before, at once.
    const target = randn([B, 28, 28, 1], 48);
    const three = tf.slice(x, 0, 3);
    const plane = planeThroughPoints(three);
    const calls: [string, (signal: AbortSignal) => Promise<unknown>][] = [
      ['inputJacobian', (signal) => pool.inputJacobian(x, { signal })],
      ['weightJacobian', (signal) => pool.weightJacobian(x, { signal })],
      ['localFisher', (signal) => pool.localFisher(x, { signal })],
      ['datasetFisher', (signal) => pool.datasetFisher(x, { signal })],
      ['localDataMatrix', (signal) => pool.localDataMatrix(x, { signal })],
      ['distributionProjector', (signal) => pool.distributionProjector(x, { signal })],
      ['pullbackMetric', (signal) => pool.pullbackMetric(x, { signal })],
      ['volumeElement', (signal) => pool.volumeElement(x, { signal })],
      ['horizontalPath', (signal) => pool.horizontalPath(x, target, { maxSteps: 2, signal })],
      ['orthogonalPath', (signal) => pool.orthogonalPath(x, { maxSteps: 2, signal })],
      ['kernelPath', (signal) => pool.kernelPath(x, target, { maxSteps: 2, signal })],
      ['tangentPath', (signal) => pool.tangentPath(x, { maxSteps: 2, signal })],
      ['scanPlane', (signal) => pool.scanPlane(plane, { steps: 3, volume: 'plane', batchSize: 4, signal })],
      ['relativeStability', (signal) => pool.relativeStability(x, { delta: 1, batchSize: 2, signal })],
    ];
    const before = tf.memory().numTensors;
    for (const [name, call] of calls) {
      const ctrl = new AbortController();
      const running = call(ctrl.signal);
      ctrl.abort(new Error(`stop ${name}`));
      await expect(running, name).rejects.toThrow(`stop ${name}`);
      const early = new AbortController();
      early.abort(new Error(`before ${name}`));
      await expect(call(early.signal), name).rejects.toThrow(`before ${name}`);
    }
    await new Promise((r) => setTimeout(r, 1500)); // the threads' answers arrive and are dropped
    expect(tf.memory().numTensors).toBe(before);
    // The pool works on after the dropped shares.
    const after = await pool.localFisher(x);
    expect(after.F.factor.shape[0]).toBe(B);
    after.F.dispose();
    after.probs.dispose();
    target.dispose();
    plane.dispose();
    three.dispose();
  }, 60_000);
});

describe("large results cross through the workers' shared buffers (reused once copied out)", () => {
  it('an outbox buffer is reused only after the pool copied the result out of it', () => {
    const box = new Outbox();
    const a = box.take(1000, 'float32');
    const b = box.take(1000, 'float32');
    expect(b.buffer).not.toBe(a.buffer); // a is not copied out yet
    a.set(Float32Array.from({ length: 1000 }, (_, i) => i));
    const t = decode({ __tensor: { data: a, shape: [10, 100], dtype: 'float32' } }) as tf.Tensor;
    const c = box.take(600, 'float32'); // a is free again: the smallest idle buffer that fits
    expect(c.buffer).toBe(a.buffer);
    c.fill(-1);
    expect(Array.from(t.dataSync()).slice(0, 3).concat(t.dataSync()[999] as number)).toEqual([0, 1, 2, 999]); // the tensor is a copy
    t.dispose();
    // A larger result while b is busy and c idle again: a new buffer; the idle smaller one (c's)
    // is forgotten, the busy one (b's) kept until the pool copies it out.
    (decode({ __tensor: { data: c, shape: [600], dtype: 'float32' } }) as tf.Tensor).dispose();
    const big = box.take(5000, 'float32');
    expect([a.buffer, b.buffer]).not.toContain(big.buffer);
    (decode({ __tensor: { data: big, shape: [5000], dtype: 'float32' } }) as tf.Tensor).dispose();
    expect(box.take(800, 'float32').buffer).toBe(big.buffer); // the smallest idle one that fits: a's is gone
  });

  it('results of several MB: equal to one thread; every shared buffer released once, also for a call aborted with a share in flight; no tensors left behind', async () => {
    // d = 22,538 weights: 2 samples' rows of 10 logits are 1.8 MB, past the 1 MiB threshold.
    const model = tfl.sequential();
    model.add(tfl.layers.dense({ inputShape: [32], units: 512, activation: 'tanh', kernelInitializer: tfl.initializers.glorotNormal({ seed: 51 }) }));
    model.add(tfl.layers.dense({ units: 10, kernelInitializer: tfl.initializers.glorotNormal({ seed: 52 }) }));
    const pool = await createJacobianPool(model, { threads: 2, backend: tf.getBackend() as 'wasm' | 'cpu' });
    try {
      const xs = [0, 1, 2, 3].map((k) => randn([4, 32], 60 + k));
      const before = tf.memory().numTensors;
      // Every result's shared buffers go back to their thread: once copied out, or when the call
      // drops the result. Counted as the pool thread's stores of 0 into a shared buffer's flag.
      const store = vi.spyOn(Atomics, 'store');
      const releases = () => store.mock.calls.filter(([flag, , value]) => flag.buffer instanceof SharedArrayBuffer && Number(value) === 0).length;
      const pooledRows: tf.Tensor[] = [];
      try {
        // Aborted once the first share is back: that result is dropped when the call ends, the
        // other when it arrives.
        const ctrl = new AbortController();
        const dropped = pool.weightJacobian(xs[0] as tf.Tensor, { signal: ctrl.signal, onProgress: () => ctrl.abort(new Error('stop')) });
        await expect(dropped).rejects.toThrow('stop');
        for (let wait = 0; wait < 100 && releases() < 2; wait++) await new Promise((r) => setTimeout(r, 50));
        expect(releases()).toBe(2);
        for (const x of xs) pooledRows.push((await pool.weightJacobian(x)).jacobian);
        expect(releases()).toBe(2 + 2 * xs.length); // one buffer per thread and call, released once
      } finally {
        store.mockRestore();
      }
      for (const [k, x] of xs.entries()) {
        const one = await weightJacobian(model, x);
        expectClose(pooledRows[k] as tf.Tensor, one.jacobian, { rtol: 1e-5, label: `call ${k}` });
        one.jacobian.dispose();
      }
      tf.dispose(pooledRows);
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose(xs);
    } finally {
      await pool.close();
      model.dispose();
    }
  }, 60_000);
});
