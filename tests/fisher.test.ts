/** localFisher and datasetFisher: closed form, KL in weight space, means, streaming, errors, leaks. */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { describe, expect, it } from 'vitest';
import { datasetFisher, localFisher, ValueError, weightJacobian, wrapClassifier } from '../src/index.js';
import { denseNet, mnistCnn } from '../examples/models.js';
import { expectClose, expectNoLeak, smallestBudget, peakBufferBytes, randn } from './helpers.js';

function linearNoBias(n: number, C: number, seed: number): tfl.Sequential {
  const m = tfl.sequential();
  m.add(tfl.layers.dense({ inputShape: [n], units: C, useBias: false, kernelInitializer: tfl.initializers.randomNormal({ stddev: 1, seed }) }));
  return m;
}

describe('localFisher', () => {
  it('linear softmax model: F = xxᵀ ⊗ (diag p − ppᵀ) (W stored [in, out]) and tr F = ‖x‖²(1 − ‖p‖²)', async () => {
    const n = 5;
    const C = 4;
    const model = linearNoBias(n, C, 3);
    const x = randn([2, n], 4);
    const { F, probs, slices } = await localFisher(model, x);
    expect(slices).toHaveLength(1);
    expect(F.factor.shape).toEqual([2, C - 1, n * C]);
    const dense = F.toDense().arraySync() as number[][][];
    const tr = await F.trace();
    const P = probs.arraySync() as number[][];
    const X = x.arraySync() as number[][];
    for (let b = 0; b < 2; b++) {
      const p = P[b]!;
      const xb = Matrix.columnVector(X[b]!);
      const cov = Matrix.diag(p).sub(Matrix.columnVector(p).mmul(Matrix.rowVector(p)));
      const ref = xb.mmul(xb.transpose()).kroneckerProduct(cov);
      expectClose(dense[b]!.flat(), ref.to1DArray(), { rtol: 1e-5, label: 'F' });
      const expected = xb.norm() ** 2 * (1 - p.reduce((a, v) => a + v * v, 0));
      expect(Math.abs((tr[b] as number) - expected)).toBeLessThan(1e-5 * expected);
    }
    expect(await F.rank()).toEqual([C - 1, C - 1]);
    F.dispose();
    tf.dispose([probs, x]);
  });

  it('KL(p(x; w + δw) ‖ p(x; w)) = ½ δwᵀ F δw + O(‖δw‖³)', async () => {
    const model = denseNet(4, [6], 3, 8);
    const x = randn([3, 4], 5);
    const clf = wrapClassifier(model);
    const { F, probs } = await localFisher(model, x);
    const w0 = model.getWeights().map((w) => tf.clone(w));
    const dirs = w0.map((w, i) => randn(w.shape, 60 + i));
    const norm = Math.sqrt(dirs.reduce((a, d) => a + (tf.sum(tf.square(d)).dataSync()[0] as number), 0));
    const errors: number[] = [];
    for (const h of [4e-2, 2e-2, 1e-2]) {
      const s0 = tf.tidy(() => clf.logits(x)).dataSync();
      tf.tidy(() => model.setWeights(w0.map((w, i) => tf.add(w, tf.mul(dirs[i]!, h / norm)))));
      const s1 = tf.tidy(() => clf.logits(x)).dataSync();
      model.setWeights(w0);
      const flat = tf.tidy(() => tf.tile(tf.mul(tf.reshape(tf.concat(dirs.map((d) => tf.reshape(d, [-1]))), [1, -1]), h / norm), [3, 1]));
      const quad = await F.quadForm(flat);
      flat.dispose();
      const ratios = [0, 1, 2].map((b) => {
        const l = (s: ArrayLike<number>) => {
          const v = [0, 1, 2].map((c) => s[b * 3 + c] as number);
          const m = Math.max(...v);
          const z = Math.log(v.reduce((a, t) => a + Math.exp(t - m), 0));
          return v.map((t) => t - m - z);
        };
        const l0 = l(s0);
        const l1 = l(s1);
        const kl = l1.reduce((a, t, c) => a + Math.exp(t) * (t - (l0[c] as number)), 0);
        return kl / (0.5 * (quad[b] as number));
      });
      errors.push(Math.max(...ratios.map((r) => Math.abs(r - 1))));
    }
    // The ratio is 1 + O(h): the error halves with h asymptotically (measured 7.0, 4.2, 2.3 %: factors
    // 0.60 and 0.54, the O(h²) term still showing at the largest step; bound 0.7). Without the ½ the
    // ratio would be 0.5.
    expect(errors[1]!).toBeLessThan(0.7 * errors[0]!);
    expect(errors[2]!).toBeLessThan(0.7 * errors[1]!);
    expect(errors[2]).toBeLessThan(0.05);
    F.dispose();
    tf.dispose([probs, x, ...w0, ...dirs]);
  });

  it('on a conv net: the (C−1)-row factor gives Σ_c p_c ∇_w log p_c ∇_w log p_cᵀ, checked on vectors; no leaks', async () => {
    const model = mnistCnn(4, { filters: [4, 8], hidden: 16 });
    const x = randn([2, 28, 28, 1], 6);
    const layers = ['conv2', 'fc2'];
    const { F, probs } = await expectNoLeak(() => localFisher(model, x, { layers }), (r) => [r.F.factor, r.probs]);
    const { jacobian } = await weightJacobian(model, x, { layers, strategy: 'loop' });
    const d = jacobian.shape[2];
    const v = randn([2, d], 7);
    // F v from the definition: Σ_c p_c J_c (J_c · v).
    const ref = tf.tidy(() => {
      const Jv = tf.matMul(jacobian, tf.reshape(v, [2, d, 1])); // [2, C, 1]
      return tf.reshape(tf.matMul(jacobian, tf.mul(Jv, tf.reshape(probs, [2, 10, 1])), true), [2, d]);
    });
    const Fv = F.matvec(v);
    // Two float32 factorisations of the same matrix: ~1e-5 relative to the largest entry.
    expectClose(Fv, ref, { rtol: 1e-4 });
    (await F.rank()).forEach((r) => expect(r).toBeLessThanOrEqual(9));
    F.dispose();
    tf.dispose([probs, jacobian, v, ref, Fv, x]);
  });

  it('memory: the factor is written in place, so the peak stays below 1.6 × the factor besides the model (the issue asked for 2 ×), for B = 3 and 4, and B = 1 past the budget; the same rows as one sample at a time', async () => {
    // A model whose first Dense kernel is 97 % of its weights, as the MNIST CNN's fc1 (98 %): a
    // join of the weights' blocks by tf.concat holds them and the joined copy, 2 × the factor.
    const model = tfl.sequential();
    model.add(tfl.layers.dense({ inputShape: [96], units: 384, activation: 'relu', kernelInitializer: tfl.initializers.glorotNormal({ seed: 8 }) }));
    model.add(tfl.layers.dense({ units: 10, kernelInitializer: tfl.initializers.glorotNormal({ seed: 9 }) }));
    const x = randn([4, 96], 10);
    const one = await Promise.all([0, 1, 2, 3].map(async (b) => {
      const xb = tf.slice(x, b, 1);
      const r = await localFisher(model, xb);
      xb.dispose();
      return r;
    }));
    for (const B of [1, 3, 4]) {
      const xs = tf.slice(x, 0, B);
      // One sample's rows (1.5 MB) past a budget of 1 MiB: in two backward passes.
      const { result, peak } = await peakBufferBytes(() => localFisher(model, xs, B === 1 ? { memoryBudgetMB: 1 } : {}));
      const factorBytes = result.F.factor.size * 4;
      expect(factorBytes).toBe(B * 9 * (96 * 384 + 384 + 384 * 10 + 10) * 4);
      // 1 × the factor (the result) + the blocks of one chunk of ⌊B/2⌋ samples (B = 1: of half its
      // rows, as the budget asks) + the forward pass and the cotangents (small here). Bytes alive before the call (the
      // weights) are not in `peak`.
      expect(peak / factorBytes, `B = ${B}`).toBeGreaterThan(1.3);
      expect(peak / factorBytes, `B = ${B}`).toBeLessThan(1.6);
      // Written in place chunk by chunk (and row half by row half) = the rows of each sample alone.
      const joined = tf.concat(one.slice(0, B).map((r) => r.F.factor));
      expectClose(result.F.factor, joined, { rtol: 1e-6, label: `factor, B = ${B}` });
      joined.dispose();
      result.F.dispose();
      result.probs.dispose();
      xs.dispose();
    }
    one.forEach((r) => (r.F.dispose(), r.probs.dispose()));
    x.dispose();
  });
});

describe('datasetFisher', () => {
  const model = denseNet(4, [5], 3, 2);
  const x = randn([6, 4], 9);

  it("memory: a tensor's factor is scaled as its rows are made and written straight into it (peak below 1.25 × the factor in batches of a quarter, below 1.6 × in one batch; was 3 ×); equal to the joined iterable's", async () => {
    const model = tfl.sequential();
    model.add(tfl.layers.dense({ inputShape: [64], units: 256, activation: 'tanh', kernelInitializer: tfl.initializers.glorotNormal({ seed: 11 }) }));
    model.add(tfl.layers.dense({ units: 10, kernelInitializer: tfl.initializers.glorotNormal({ seed: 12 }) }));
    const x = randn([8, 64], 13);
    const { result, peak } = await peakBufferBytes(() => datasetFisher(model, x, { batchSize: 2 }));
    const factorBytes = result.F.factor.size * 4;
    expect(result.F.factor.shape).toEqual([1, 8 * 9, 64 * 256 + 256 + 2570]);
    // The factor + the blocks of half a batch (an eighth) + small.
    expect(peak / factorBytes).toBeLessThan(1.25);
    // All in one batch: the blocks of half of it.
    const whole = await peakBufferBytes(() => datasetFisher(model, x));
    expect(whole.peak / factorBytes).toBeLessThan(1.6);
    expectClose(whole.result.F.factor, result.F.factor, { rtol: 1e-6, label: 'one batch vs four' });
    whole.result.F.dispose();
    const batches = [0, 2, 4, 6].map((s) => tf.slice(x, s, 2));
    const joined = await datasetFisher(model, batches);
    expectClose(result.F.factor, joined.F.factor, { rtol: 1e-6, label: 'in place vs joined' });
    tf.dispose([...batches, x]);
    result.F.dispose();
    joined.F.dispose();
  });

  it('is the mean of the local Fishers: trace, matvec, eigenvalues; a tensor and an iterable agree', async () => {
    const { F, count, slices } = await expectNoLeak(() => datasetFisher(model, x, { batchSize: 4 }), (r) => [r.F.factor]);
    expect(count).toBe(6);
    const d = slices.reduce((a, s) => a + s.size, 0);
    expect(F.factor.shape).toEqual([1, 6 * 2, d]);
    const local = await localFisher(model, x);
    const tr = await F.trace();
    const localTr = await local.F.trace();
    expect(Math.abs((tr[0] as number) - localTr.reduce((a, t) => a + t, 0) / 6)).toBeLessThan(1e-5 * (tr[0] as number));
    const v = randn([1, d], 3);
    const Fv = F.matvec(v);
    const mean = tf.tidy(() => tf.mean(local.F.matvec(tf.tile(v, [6, 1])), 0, true));
    expectClose(Fv, mean, { rtol: 1e-5, label: 'matvec' });
    // Top eigenvalues against the dense mean in float64.
    const dense = local.F.toDense().arraySync() as number[][][];
    const avg = new Matrix(d, d);
    dense.forEach((m) => avg.add(new Matrix(m).div(6)));
    const ref = new EigenvalueDecomposition(avg, { assumeSymmetric: true }).realEigenvalues.sort((a, b) => b - a);
    const { values, vectors } = await F.eig();
    expectClose(values[0]!.slice(0, 3), ref.slice(0, 3), { rtol: 1e-5, label: 'top eigenvalues' });
    // The same data as an iterable of batches.
    const parts = [tf.slice(x, 0, 2), tf.slice(x, 2, 4)];
    const it2 = await datasetFisher(model, parts);
    expectClose(it2.F.factor, F.factor, { rtol: 1e-6 });
    tf.dispose([v, Fv, mean, vectors, ...parts, local.probs]);
    F.dispose();
    it2.F.dispose();
    local.F.dispose();
  });

  it('progress, abort, and typed errors (too large a factor, no data, bad batch size)', async () => {
    const seen: number[] = [];
    const r = await datasetFisher(model, x, { batchSize: 2, onProgress: (p) => seen.push(p.done) });
    expect(seen).toEqual([2, 4, 6]);
    r.F.dispose();
    const ctrl = new AbortController();
    const before = tf.memory().numTensors;
    await expect(datasetFisher(model, x, { batchSize: 2, signal: ctrl.signal, onProgress: () => ctrl.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    await expect(datasetFisher(model, x, { maxFactorMB: 1e-4 })).rejects.toThrow(/maxFactorMB/);
    await expect(datasetFisher(model, [])).rejects.toThrow(/no samples/);
    await expect(datasetFisher(model, x, { batchSize: 0 })).rejects.toThrow(ValueError);
    await expect(datasetFisher(model, null as never)).rejects.toThrow(/datasetFisher: argument 'data' must be a tf.Tensor or an iterable/);
    await expect(datasetFisher(model, x, { layers: 'h1' as never })).rejects.toThrow(/layers must be an array/);
    expect(tf.memory().numTensors).toBe(before);
    // localFisher reports after each chunk: two at the default budget (the factor is written in
    // place by halves of the batch), one per sample at a tiny budget; the tf.variableGrads loop
    // after each sample whatever the chunking.
    for (const [options, want] of [
      [{}, [3, 6]],
      [{ memoryBudgetMB: await smallestBudget((mb) => localFisher(model, x, { memoryBudgetMB: mb })) }, [1, 2, 3, 4, 5, 6]],
      [{ strategy: 'loop' as const }, [1, 2, 3, 4, 5, 6]],
    ] as const) {
      const seen: number[] = [];
      const local = await localFisher(model, x, { ...options, onProgress: (p) => seen.push(p.done) });
      expect(seen).toEqual(want);
      local.F.dispose();
      local.probs.dispose();
    }
  });
});
