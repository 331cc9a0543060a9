/**
 * The model zoo (tests/zoo/models.ts: branches, BatchNorm, LayerNorm, depthwise, dilated, separable
 * and transposed convs, pooling of every kind, every activation of tfjs-layers, nested models,
 * resampling and merge layers) against an independent reference: inputJacobian, vjp, jvp (one and
 * two directions), the dot-product identity, pullbackMetric (trace, matvec; strategies auto, rows,
 * columns) and volumeElement (full and subspace), each without leaks, for log-probabilities and a
 * hidden layer.
 *
 * Why the reference is independent of infogeo's Jacobian core: J_ref is tf.grad (tfjs's own reverse
 * mode) of the target function `wrapClassifier(model).target(T).fn`, one backward pass per sample
 * and output row, always on the `cpu` backend with tfjs's stock kernels, and every product (Jᵀu,
 * J v, Jᵀ J w, log det) is formed here in float64. Two things keep infogeo out of it: on `wasm` the
 * stride-1 Conv2DBackpropInput is infogeo's kernel (and wasm's MaxPoolGrad misplaces the gradient
 * of windows of negative values, see graph.test.ts), hence cpu; and BatchNorm's gradient is the one
 * registerGradientKernels installs, hence a twin model (`gradTwin`) with each BatchNorm written as
 * a diagonal Dense. The twin also replaces what tf.grad cannot differentiate: a dilated Conv2D
 * ("dilation rates greater than 1 are not yet supported in gradients") by an undilated one with
 * zeros between the taps, and ThresholdedReLU ("gradient function not found for Greater") by
 * x·step(x − θ). The twin's target outputs are checked equal to the model's before it is used.
 * (infogeo's Conv2DBackpropFilter, registered on cpu too, runs inside tf.grad of a linear conv, but
 * only for the filter gradient, which the reference discards.)
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { SingularValueDecomposition } from 'ml-matrix';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inputJacobian, jvp, pullbackMetric, volumeElement, vjp, wrapClassifier } from '../src/index.js';
import type { Target } from '../src/index.js';
import { graphFor, linearize } from '../src/jacobian/linearize.js';
import { gradTwin, ZOO } from './zoo/models.js';
import { expectClose, expectNoLeak, onCpu, randn } from './helpers.js';

const B = 2;

/** A float64 copy of a tensor's values, the tensor disposed. */
function take(t: tf.Tensor): Float64Array {
  const out = Float64Array.from(t.dataSync());
  t.dispose();
  return out;
}

/** The reference Jacobian of one target: [B, m, n] in float64 (float32 values from tf.grad). */
interface Reference {
  target: Target;
  m: number;
  J: Float64Array;
}

/**
 * J_ref[b] from tf.grad of the twin's target function on cpu: one backward pass per sample and output
 * row, on x_b alone, so that no kernel can mix samples into the reference (tfjs 4.22's cpu
 * ResizeNearestNeighborGrad, the backward pass of UpSampling2D, reads dy at the input's batch stride:
 * for B > 1 every sample but the first gets another sample's gradient).
 */
async function referenceJacobian(model: tfl.LayersModel, twin: tfl.LayersModel, x: tf.Tensor, target: Target): Promise<Reference> {
  return onCpu(() => {
    const { fn, width: m } = wrapClassifier(twin).target(target);
    if (twin !== model) {
      // The twin is a valid oracle only if it computes the same function: float32 rounding apart.
      const want = tf.tidy(() => wrapClassifier(model).target(target).fn(x));
      const got = tf.tidy(() => fn(x));
      expectClose(got, want, { rtol: 1e-5, label: `twin of ${JSON.stringify(target)}` });
      tf.dispose([want, got]);
    }
    const n = x.size / B;
    const J = new Float64Array(B * m * n);
    const grad = tf.grad((z: tf.Tensor) => fn(z));
    for (let b = 0; b < B; b++) {
      const xb = tf.slice(x, b, 1);
      for (let i = 0; i < m; i++) J.set(take(tf.tidy(() => grad(xb, tf.cast(tf.oneHot([i], m), 'float32')))), (b * m + i) * n);
      xb.dispose();
    }
    return { target, m, J };
  });
}

/** out[b, i] = Σⱼ A[b, i, j] v[b, j] for A [B, r, c], v [B, c]; with `transpose`, Aᵀ: out[b, j] = Σᵢ A[b, i, j] v[b, i]. */
function batchMatVec(A: Float64Array, v: ArrayLike<number>, r: number, c: number, transpose = false): Float64Array {
  const out = new Float64Array(B * (transpose ? c : r));
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < r; i++) {
      for (let j = 0; j < c; j++) {
        const a = A[(b * r + i) * c + j] as number;
        if (transpose) out[b * c + j]! += a * (v[b * r + i] as number);
        else out[b * r + i]! += a * (v[b * c + j] as number);
      }
    }
  }
  return out;
}

/** J v for k directions per sample: v [B, k, n] → [B, k, m]. */
function jvpRef(J: Float64Array, v: ArrayLike<number>, m: number, n: number, k: number): Float64Array {
  const out = new Float64Array(B * k * m);
  for (let b = 0; b < B; b++) {
    for (let d = 0; d < k; d++) {
      for (let i = 0; i < m; i++) {
        let s = 0;
        for (let j = 0; j < n; j++) s += (J[(b * m + i) * n + j] as number) * (v[(b * k + d) * n + j] as number);
        out[(b * k + d) * m + i] = s;
      }
    }
  }
  return out;
}

/** ½ log det(AᵀA) = Σᵢ log σᵢ(A) for one A (m × k, row-major), from its singular values in float64. */
function halfLogDetGram(A: Float64Array, m: number, k: number): number {
  const rows = Array.from({ length: m }, (_, i) => Array.from(A.subarray(i * k, (i + 1) * k)));
  const s = new SingularValueDecomposition(rows, { computeLeftSingularVectors: false, computeRightSingularVectors: false, autoTranspose: true }).diagonal;
  // On a (numerically) singular metric the reference would only measure rounding.
  expect(s[k - 1]! / s[0]!, 'the reference metric is singular').toBeGreaterThan(1e-6);
  return s.reduce((a, v) => a + Math.log(v), 0);
}

describe.each(ZOO.map((z, i) => ({ ...z, seed: 1000 + 7 * i })))('zoo: $name', ({ build, inputShape, hidden, seed }) => {
  const n = inputShape.reduce((a, d) => a * d, 1);
  const layer: Target = { layer: hidden };
  let model: tfl.LayersModel;
  let twin: tfl.LayersModel;
  let x: tf.Tensor;
  let refs: Reference[]; // logProbs, then the hidden layer

  beforeAll(async () => {
    model = build();
    twin = gradTwin(model);
    x = randn([B, ...inputShape], seed);
    refs = [await referenceJacobian(model, twin, x, 'logProbs'), await referenceJacobian(model, twin, x, layer)];
  });
  afterAll(() => {
    x?.dispose();
    if (twin !== model) twin?.dispose();
    model?.dispose();
  });

  it("is covered by infogeo's graph: the default plan uses no tf.grad and no central differences", () => {
    const clf = wrapClassifier(model);
    for (const target of ['logProbs', 'logits', layer] as Target[]) {
      const graph = graphFor(clf, target);
      expect('reason' in graph ? graph.reason : 'graph').toBe('graph');
      const lin = linearize(clf, x, target);
      expect(lin.engine).toBe('graph');
      lin.dispose();
    }
  });

  it('inputJacobian equals J_ref', async () => {
    for (const { target, m, J } of refs) {
      const got = await expectNoLeak(() => inputJacobian(model, x, { target, flatten: true }), (t) => [t]);
      expect(got.shape).toEqual([B, m, n]);
      // Same derivatives, summed in another order (or on another backend): float32 rounding.
      expectClose(take(got), J, { rtol: 1e-5, label: JSON.stringify(target) });
    }
  });

  it("'loop', 'tiled' and 'softmax-chain' (tf.grad, with infogeo's gradient kernels) give the graph's rows; no strategy is refused", async () => {
    const graphRows = await inputJacobian(model, x, { strategy: 'graph', flatten: true });
    for (const strategy of ['loop', 'tiled', 'softmax-chain'] as const) {
      const got = await expectNoLeak(() => inputJacobian(model, x, { strategy, flatten: true }), (t) => [t]);
      // The same derivatives through tfjs's kernels and gradients: float32 rounding.
      expectClose(got, graphRows, { rtol: 1e-5, label: strategy });
      got.dispose();
    }
    graphRows.dispose();
  });

  it('vjp(u) equals J_refᵀ u', async () => {
    for (const [t, { target, m, J }] of refs.entries()) {
      const u = randn([B, m], seed + 10 + t);
      const got = await expectNoLeak(() => vjp(model, x, u, { target }), (r) => [r]);
      expect(got.shape).toEqual([B, ...inputShape]);
      expectClose(take(got), batchMatVec(J, u.dataSync(), m, n, true), { rtol: 1e-5, label: JSON.stringify(target) });
      u.dispose();
    }
  });

  it('jvp(v) equals J_ref v, for one direction and for k = 2 directions', async () => {
    for (const [t, { target, m, J }] of refs.entries()) {
      for (const k of [1, 2]) {
        const v = randn(k === 1 ? [B, ...inputShape] : [B, k, ...inputShape], seed + 20 + 2 * t + k);
        const got = await expectNoLeak(() => jvp(model, x, v, { target }), (r) => [r]);
        expect(got.shape).toEqual(k === 1 ? [B, m] : [B, k, m]);
        expectClose(take(got), jvpRef(J, v.dataSync(), m, n, k), { rtol: 1e-5, label: `${JSON.stringify(target)}, k = ${k}` });
        v.dispose();
      }
    }
  });

  it('satisfies the dot-product identity uᵀ(J v) = (Jᵀu)ᵀ v per sample', async () => {
    for (const [t, { target, m }] of refs.entries()) {
      const u = randn([B, m], seed + 30 + t);
      const v = randn([B, ...inputShape], seed + 40 + t);
      const [uv, vv] = [u.dataSync(), v.dataSync()];
      const Jv = take(await expectNoLeak(() => jvp(model, x, v, { target }), (r) => [r]));
      const JTu = take(await expectNoLeak(() => vjp(model, x, u, { target }), (r) => [r]));
      for (let b = 0; b < B; b++) {
        let [left, right, uNorm, vNorm, JvNorm, JTuNorm] = [0, 0, 0, 0, 0, 0];
        for (let i = 0; i < m; i++) {
          left += (uv[b * m + i] as number) * (Jv[b * m + i] as number);
          uNorm += (uv[b * m + i] as number) ** 2;
          JvNorm += (Jv[b * m + i] as number) ** 2;
        }
        for (let j = 0; j < n; j++) {
          right += (JTu[b * n + j] as number) * (vv[b * n + j] as number);
          vNorm += (vv[b * n + j] as number) ** 2;
          JTuNorm += (JTu[b * n + j] as number) ** 2;
        }
        // Norm-wise, as expectClose: a relative error δ of J v (or Jᵀu) moves uᵀ(J v) by at most
        // δ‖u‖‖J v‖ (Cauchy–Schwarz), while the two sides may cancel down to far less than that.
        const scale = Math.max(Math.sqrt(uNorm * JvNorm), Math.sqrt(vNorm * JTuNorm));
        expect(Math.abs(left - right), `${JSON.stringify(target)}, sample ${b}: ${left} vs ${right}`).toBeLessThanOrEqual(1e-5 * scale);
      }
      tf.dispose([u, v]);
    }
  });

  it("pullbackMetric of the hidden layer: trace = ‖J_ref‖²_F and matvec(w) = J_refᵀ J_ref w, for strategies auto, 'rows' and 'columns'", async () => {
    const { m, J } = refs[1] as Reference;
    const trace = Array.from({ length: B }, (_, b) => J.subarray(b * m * n, (b + 1) * m * n).reduce((s, a) => s + a * a, 0));
    const w = randn([B, ...inputShape], seed + 50);
    const JTJw = batchMatVec(J, batchMatVec(J, w.dataSync(), m, n), m, n, true);
    for (const strategy of [undefined, 'rows', 'columns'] as const) {
      const label = strategy ?? 'auto';
      const g = await expectNoLeak(() => pullbackMetric(model, x, { target: layer, ...(strategy ? { strategy } : {}) }), (r) => [r.factor]);
      expect(g.factor.shape, label).toEqual([B, m, n]);
      expectClose(await g.trace(), trace, { rtol: 1e-5, label: `trace, ${label}` });
      const gw = await expectNoLeak(() => g.matvec(w), (r) => [r]);
      expectClose(take(gw), JTJw, { rtol: 1e-5, label: `matvec, ${label}` });
      g.dispose();
    }
    w.dispose();
  });

  it("volumeElement of the hidden layer, 'full' (vector inputs) and on a 2-direction 'subspace', equals ½ log det from J_ref", async () => {
    const { m, J } = refs[1] as Reference;
    // logVolume is a logarithm: an absolute 1e-5 on it is a relative 1e-5 on the volume element.
    // 'full' on vector inputs only: the sequence net's layer 'mix' (n = 30 ≤ m = 32) has σ_min/σ_max
    // ≈ 2e-5 at these samples, so float32 rounding of J (1 ulp, as between cpu and wasm) moves its
    // ½ log det by ~2e-5 (measured 1.4e-5 on wasm): the float32 Jacobian does not determine it to 1e-5.
    if (inputShape.length === 1 && n <= m) {
      const want = Array.from({ length: B }, (_, b) => halfLogDetGram(J.subarray(b * m * n, (b + 1) * m * n), m, n));
      const got = await expectNoLeak(() => volumeElement(model, x, { target: layer, mode: 'full' }), () => []);
      expect(got.terms).toBe(n);
      expectClose(got.logVolume, want, { rtol: 0, atol: 1e-5, label: 'full' });
    }
    const E = randn([2, ...inputShape], seed + 60);
    const JE = jvpRef(J, Array.from({ length: B }, () => Array.from(E.dataSync())).flat(), m, n, 2); // [B, 2, m] = (J E)ᵀ per sample
    const want = Array.from({ length: B }, (_, b) => {
      const A = new Float64Array(m * 2); // J E, m × 2
      for (let i = 0; i < m; i++) for (let d = 0; d < 2; d++) A[i * 2 + d] = JE[(b * 2 + d) * m + i] as number;
      return halfLogDetGram(A, m, 2);
    });
    const got = await expectNoLeak(() => volumeElement(model, x, { target: layer, mode: 'subspace', subspace: E }), () => []);
    expect(got.terms).toBe(2);
    expectClose(got.logVolume, want, { rtol: 0, atol: 1e-5, label: 'subspace' });
    E.dispose();
  });
});
