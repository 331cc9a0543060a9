/**
 * The model zoo (tests/zoo/models.ts) in weight space: weightJacobian's rows, computed by infogeo's
 * graph (batched products of each layer's saved input with its output cotangents), against
 * `tf.variableGrads` of one sample and one logit at a time.
 *
 * Why the reference is independent of infogeo: it runs on the `cpu` backend with tfjs's stock
 * kernels (the filter gradient that `registerGradientKernels` replaces is swapped back for the
 * stock one while it runs), on the zoo's twin model (`gradTwin`), where each BatchNorm is a
 * diagonal Dense — so a BatchNorm's γ and β cotangents come from the chain rule through that
 * Dense's kernel and bias, dγ = (dK_cc − μ_c db_c)/√(σ²_c + ε) and dβ = db, not from any BatchNorm
 * gradient — and a dilated conv (2-D or 1-D) is an undilated one with zeros between the taps (its kernel's
 * cotangent is read at the taps). One backward pass per (sample, logit), on x_b alone.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// The stock cpu filter gradient, as shipped by tfjs (deep import: it is replaced in the registry).
import { conv2DBackpropFilterConfig } from '@tensorflow/tfjs-backend-cpu/dist/kernels/Conv2DBackpropFilter.js';
import { localFisher, UnsupportedModelError, weightJacobian, wrapClassifier } from '../src/index.js';
import { weightGraphFor } from '../src/jacobian/linearize.js';
import { gradTwin, ZOO } from './zoo/models.js';
import { expectClose, expectNoLeak, onCpu, randn } from './helpers.js';

const B = 2;

/** Runs fn on cpu with tfjs's stock Conv2DBackpropFilter, then restores infogeo's. */
async function onStockCpu<T>(fn: () => T): Promise<T> {
  return onCpu(() => {
    const patched = tf.getKernel('Conv2DBackpropFilter', 'cpu');
    if (patched) tf.unregisterKernel('Conv2DBackpropFilter', 'cpu');
    tf.registerKernel(conv2DBackpropFilterConfig);
    try {
      return fn();
    } finally {
      tf.unregisterKernel('Conv2DBackpropFilter', 'cpu');
      if (patched) tf.registerKernel(patched);
    }
  });
}

/** The values of a layer's weight whose name ends in `suffix`. */
function valueOf(layer: tfl.layers.Layer, suffix: string): Float32Array | undefined {
  const i = layer.weights.findIndex((w) => w.originalName.split('/').pop() === suffix);
  return i < 0 ? undefined : (layer.weights[i]!.read().dataSync() as Float32Array);
}

/**
 * The reference rows `[B, C, d]` (float64) in the model's column order, from the twin's variable
 * gradients mapped back to the model's weights.
 */
function referenceRows(model: tfl.LayersModel, twin: tfl.LayersModel, x: tf.Tensor, C: number, d: number): Float64Array {
  const vars = twin.trainableWeights.map((w) => w.read() as tf.Variable);
  const logits = wrapClassifier(twin).logits;
  const out = new Float64Array(B * C * d);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      const grads = tf.tidy(() => {
        const xb = tf.slice(x, b, 1);
        const { value, grads: g } = tf.variableGrads(() => tf.sum(tf.mul(logits(xb), tf.oneHot([c], C))) as tf.Scalar, vars);
        value.dispose();
        return g;
      });
      const byName = new Map(twin.trainableWeights.map((w) => [w.name, grads[(w.read() as tf.Variable).name]!.dataSync() as Float32Array]));
      const twinGrad = (layer: string, suffix: string) => {
        const w = twin.getLayer(layer).trainableWeights.find((v) => v.originalName.split('/').pop() === suffix);
        return byName.get(w!.name)!;
      };
      let offset = (b * C + c) * d;
      for (const layer of model.layers) {
        for (const w of layer.trainableWeights) {
          const suffix = w.originalName.split('/').pop()!;
          const size = w.shape.reduce<number>((a, s) => a * (s as number), 1);
          const cls = layer.getClassName();
          const dilation = (layer.getConfig() as { dilationRate?: number[] }).dilationRate;
          let g: ArrayLike<number>;
          if (cls === 'BatchNormalization') {
            // y_c = x_c s_c + β_c − μ_c s_c with s = γ/√(σ² + ε), the twin's diagonal kernel.
            const dK = twinGrad(layer.name, 'kernel');
            const db = twinGrad(layer.name, 'bias');
            const mu = valueOf(layer, 'moving_mean')!;
            const variance = valueOf(layer, 'moving_variance')!;
            const eps = (layer.getConfig() as { epsilon: number }).epsilon;
            const Cn = mu.length;
            g = suffix === 'beta' ? db : Float64Array.from({ length: Cn }, (_, k) => ((dK[k * Cn + k] as number) - (mu[k] as number) * (db[k] as number)) / Math.sqrt((variance[k] as number) + eps));
          } else if ((cls === 'Conv2D' || cls === 'Conv1D') && suffix === 'kernel' && dilation?.some((v) => v !== 1)) {
            // A Conv1D's kernel [k, ci, co] read as a 2-D one of height 1.
            const [kh, kw, ci, co] = (cls === 'Conv1D' ? [1, ...w.shape] : w.shape) as number[];
            const [dh, dw] = (cls === 'Conv1D' ? [1, dilation[0]] : dilation) as [number, number];
            const ew = (kw! - 1) * dw + 1;
            const full = twinGrad(layer.name, 'kernel');
            const taps = new Float64Array(size);
            for (let i = 0; i < kh!; i++) for (let j = 0; j < kw!; j++) for (let k = 0; k < ci! * co!; k++) taps[(i * kw! + j) * ci! * co! + k] = full[(i * dh * ew + j * dw) * ci! * co! + k] as number;
            g = taps;
          } else {
            g = twin === model ? byName.get(w.name)! : twinGrad(layer.name, suffix);
          }
          for (let i = 0; i < size; i++) out[offset + i] = g[i] as number;
          offset += size;
        }
      }
      tf.dispose(Object.values(grads));
    }
  }
  return out;
}

describe.each(ZOO.map((z, i) => ({ ...z, seed: 3000 + 7 * i })))('weight-space zoo: $name', ({ build, inputShape, seed }) => {
  let model: tfl.LayersModel;
  let twin: tfl.LayersModel;
  let x: tf.Tensor;

  beforeAll(() => {
    model = build();
    twin = gradTwin(model);
    x = randn([B, ...inputShape], seed);
  });
  afterAll(() => {
    x?.dispose();
    if (twin !== model) twin?.dispose();
    model?.dispose();
  });

  it("weightJacobian's rows equal tf.variableGrads per sample and logit, weight by weight; no leaks", async () => {
    const clf = wrapClassifier(model);
    const graph = weightGraphFor(clf);
    const plan = 'reason' in graph ? graph : graph.weightPlan(model.trainableWeights);
    const nested = model.layers.some((l) => Array.isArray((l as unknown as { layers?: unknown }).layers));
    // Weights inside nested models are the one thing the graph leaves to tf.variableGrads.
    expect('reason' in plan ? 'fallback' : 'graph').toBe(nested ? 'fallback' : 'graph');
    if (nested) await expect(weightJacobian(model, x, { strategy: 'graph' })).rejects.toThrow(UnsupportedModelError);

    const { jacobian, slices, numWeights } = await expectNoLeak(() => weightJacobian(model, x, { target: 'logits' }), (r) => [r.jacobian]);
    const C = clf.numClasses;
    expect(jacobian.shape).toEqual([B, C, numWeights]);
    // tf.variableGrads on the model itself (with infogeo's gradient kernels): the same rows.
    const loop = await expectNoLeak(() => weightJacobian(model, x, { target: 'logits', strategy: 'loop' }), (r) => [r.jacobian]);
    expectClose(loop.jacobian, jacobian, { rtol: 1e-5, label: "strategy 'loop'" });
    loop.jacobian.dispose();
    const ref = await onStockCpu(() => referenceRows(model, twin, x, C, numWeights));
    const got = jacobian.dataSync();
    jacobian.dispose();
    for (const s of slices) {
      // Norm-wise per weight (see expectClose): the same sums in another order, float32 rounding.
      const pick = (v: ArrayLike<number>) => Float64Array.from({ length: B * C * s.size }, (_, i) => v[Math.floor(i / s.size) * numWeights + s.offset + (i % s.size)] as number);
      expectClose(pick(got), pick(ref), { rtol: 1e-5, label: s.name });
    }
  });

  it('localFisher: F v equals J_refᵀ (diag p − ppᵀ) J_ref v per sample (float64 from the reference rows); no leaks', async () => {
    const { F, probs, slices } = await expectNoLeak(() => localFisher(model, x), (r) => [r.F.factor, r.probs]);
    const d = slices.reduce((a, s) => a + s.size, 0);
    const C = probs.shape[1];
    const ref = await onStockCpu(() => referenceRows(model, twin, x, C, d));
    const p = probs.dataSync();
    const A = F.factor.dataSync() as Float32Array; // [B, C−1, d]
    const v = randn([d], seed + 1).dataSync();
    for (let b = 0; b < B; b++) {
      const Jv = Float64Array.from({ length: C }, (_, c) => ref.subarray((b * C + c) * d, (b * C + c + 1) * d).reduce((a, w, j) => a + w * (v[j] as number), 0));
      const pJv = Jv.reduce((a, t, c) => a + (p[b * C + c] as number) * t, 0);
      const want = new Float64Array(d);
      for (let c = 0; c < C; c++) {
        const coef = (p[b * C + c] as number) * ((Jv[c] as number) - pJv);
        for (let j = 0; j < d; j++) want[j]! += coef * (ref[(b * C + c) * d + j] as number);
      }
      const got = new Float64Array(d);
      for (let r = 0; r < C - 1; r++) {
        const row = A.subarray((b * (C - 1) + r) * d, (b * (C - 1) + r + 1) * d);
        let Av = 0;
        for (let j = 0; j < d; j++) Av += (row[j] as number) * (v[j] as number);
        for (let j = 0; j < d; j++) got[j]! += Av * (row[j] as number);
      }
      // Norm-wise: the rows agree to float32 rounding, S is float64 rounded to float32.
      expectClose(got, want, { rtol: 1e-5, label: `F v, sample ${b}` });
    }
    F.dispose();
    probs.dispose();
  });
});
