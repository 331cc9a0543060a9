/**
 * inputJacobian against independent oracles: central finite differences (every coordinate on a
 * small dense net, random directions on the conv nets), a per-sample loop, a sub-model, and the
 * identity Σ_c p_c ∇log p_c = 0.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { inputJacobian, wrapClassifier } from '../src/index.js';
import type { JacobianStrategy, Target } from '../src/index.js';
import { cifarResnet, denseNet, mnistCnn, randomizeBatchNorm } from '../examples/models.js';
import { expectClose, expectNoLeak, smallestBudget, randn } from './helpers.js';

/** J·v for J [B, R, n] and v [B, n], in float64. */
function contract(J: tf.Tensor, v: tf.Tensor): Float64Array {
  const [B, R] = J.shape as [number, number];
  const n = J.size / (B * R);
  const Jd = J.dataSync();
  const vd = v.dataSync();
  const out = new Float64Array(B * R);
  for (let b = 0; b < B; b++)
    for (let r = 0; r < R; r++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += (Jd[(b * R + r) * n + i] as number) * (vd[b * n + i] as number);
      out[b * R + r] = s;
    }
  return out;
}

/** Central difference (f(x + h v) − f(x − h v)) / 2h per sample, f: [B, ...] → [B, R]. */
function centralDiff(f: (x: tf.Tensor) => tf.Tensor, x: tf.Tensor, v: tf.Tensor, h: number): Float64Array {
  const [plus, minus] = tf.tidy(() => {
    const step = tf.mul(tf.reshape(v, x.shape), h);
    return [f(tf.add(x, step)), f(tf.sub(x, step))];
  });
  const pd = plus.dataSync();
  const md = minus.dataSync();
  tf.dispose([plus, minus]);
  return Float64Array.from(pd, (p, i) => (p - (md[i] as number)) / (2 * h));
}

/**
 * Unit directions in the row space of each J[b] (a random combination of its rows): [B, n]. A
 * random direction in R^n picks up only ~1/√n of the gradient, so against the float32 rounding of
 * log p (|log p| ≈ 2) its finite difference has 1–2 % error; inside the row space the signal is
 * √n times larger and the same rounding costs ~0.1 %. J·v is still checked against the model
 * itself: a wrong row, sign, scale or chain rule gives O(1) mismatches.
 */
function rowSpaceDirections(J: tf.Tensor, seed: number): tf.Tensor2D {
  return tf.tidy(() => {
    const [B, R] = J.shape as [number, number];
    const w = randn([B, 1, R], seed) as tf.Tensor3D;
    const v = tf.squeeze(tf.matMul(w, tf.reshape(J, [B, R, -1]) as tf.Tensor3D), [1]);
    return tf.div(v, tf.norm(v, 'euclidean', 1, true)) as tf.Tensor2D;
  });
}

describe('inputJacobian on a dense tanh net (every coordinate by finite differences)', () => {
  const model = denseNet(6, [8, 7], 4, 3);
  const clf = wrapClassifier(model);
  const x = randn([3, 6], 21);
  const targets: [Target, (z: tf.Tensor) => tf.Tensor][] = [
    ['logProbs', clf.logProbs],
    ['logits', clf.logits],
    [{ layer: 'hidden2' }, clf.features('hidden2')],
  ];

  for (const [target, f] of targets) {
    it(`matches central differences: ${JSON.stringify(target)}`, async () => {
      const J = await inputJacobian(model, x, { target });
      const R = target === 'logProbs' || target === 'logits' ? 4 : 7;
      expect(J.shape).toEqual([3, R, 6]);
      const Jd = J.dataSync();
      // h = 1e-2 on inputs of size ~1: the truncation error h²·f'''/6 is ~1e-5 for this smooth
      // net, and the float32 rounding error ε·|f|/h ≈ 6e-8·3/1e-2 ≈ 2e-5. Both are below 1e-3 of
      // the largest entry (~0.5), which is the bound asserted.
      const h = 1e-2;
      const fd = new Float64Array(J.size);
      for (let i = 0; i < 6; i++) {
        const e = tf.tidy(() => tf.tile(tf.cast(tf.oneHot([i], 6), 'float32'), [3, 1]));
        const col = centralDiff(f, x, e, h);
        e.dispose();
        for (let b = 0; b < 3; b++) for (let r = 0; r < R; r++) fd[(b * R + r) * 6 + i] = col[b * R + r] as number;
      }
      expectClose(Jd, fd, { rtol: 1e-3, label: 'J vs FD' });
      J.dispose();
    });
  }
});

type Case = {
  name: string;
  build: () => tfl.LayersModel;
  shape: number[];
  /** A narrow layer (its Jacobian costs one backward pass per unit). */
  featureLayer: string;
};
const CASES: Case[] = [
  {
    name: 'MNIST CNN (conv32-conv64-maxpool-dense128-dense10, softmax)',
    build: () => mnistCnn(1),
    shape: [28, 28, 1],
    featureLayer: 'fc1',
  },
  {
    name: 'ResNet with BatchNorm and shortcuts (logits)',
    build: () => {
      const m = cifarResnet(2, { widths: [8, 16] });
      randomizeBatchNorm(m);
      return m;
    },
    shape: [32, 32, 3],
    featureLayer: 'gap',
  },
];

for (const c of CASES) {
  describe(`inputJacobian on the ${c.name}`, () => {
    let model: tfl.LayersModel;
    let x: tf.Tensor;
    let J: tf.Tensor; // reference: loop strategy, whole batch
    const B = 3;
    const n = c.shape.reduce((a, d) => a * d, 1);

    beforeAll(async () => {
      model = c.build();
      x = randn([B, ...c.shape], 31);
      J = await inputJacobian(model, x, { strategy: 'loop' });
    });

    it('has shape [B, C, ...inputShape] and agrees with central differences along random directions', () => {
      expect(J.shape).toEqual([B, 10, ...c.shape]);
      const clf = wrapClassifier(model);
      for (const s of [41, 42]) {
        const v = rowSpaceDirections(J, s);
        // h = 3e-3 against ‖x‖ ≈ √n ≥ 28. These nets are piecewise linear (ReLU, max-pool) and
        // smooth elsewhere (softmax, BatchNorm in inference): kinks within h give an O(h) error,
        // float32 rounding an O(ε/h) one. Measured error / max|J·v| over h ∈ {0.1, 0.03, 0.01,
        // 3e-3, 1e-3}: CNN 1.5, 0.44, 0.20, 0.13, 0.15 %; ResNet 0.19–0.36, 0.19–0.21,
        // 0.09–0.16, 0.08, 0.14–0.25 %. Bound: 0.5 %, ~4× the measured floor.
        expectClose(contract(J, v), centralDiff(clf.logProbs, x, v, 3e-3), { rtol: 5e-3, label: 'J·v vs FD' });
        v.dispose();
      }
    });

    it('satisfies Σ_c p_c ∇log p_c = 0 (rank ≤ C − 1)', () => {
      const clf = wrapClassifier(model);
      const p = tf.tidy(() => clf.probs(x));
      const weighted = tf.tidy(() => tf.sum(tf.mul(tf.reshape(J, [B, 10, n]), tf.reshape(p, [B, 10, 1])), 1));
      // Each entry is a sum of 10 terms of size ≤ max|J|; float32 cancellation leaves ~1e-6 of it.
      const scale = tf.tidy(() => tf.max(tf.abs(J)).dataSync()[0] as number);
      expect(tf.tidy(() => tf.max(tf.abs(weighted)).dataSync()[0] as number)).toBeLessThan(1e-5 * scale);
      tf.dispose([p, weighted]);
    });

    for (const strategy of ['graph', 'tiled', 'softmax-chain', 'auto'] as JacobianStrategy[]) {
      it(`strategy '${strategy}' gives the same Jacobian as 'loop'`, async () => {
        const Js = await inputJacobian(model, x, { strategy });
        // Same math, different summation order (and for softmax-chain an exact algebraic
        // rearrangement): float32 rounding only, ~1e-6 of the largest entry.
        expectClose(Js, J, { rtol: 2e-5, label: strategy });
        Js.dispose();
      });
    }

    it('batched == per-sample loop, whatever the chunking', async () => {
      const rows: tf.Tensor[] = [];
      for (let b = 0; b < B; b++) {
        const xb = tf.slice(x, b, 1);
        rows.push(await inputJacobian(model, xb));
        xb.dispose();
      }
      const perSample = tf.concat(rows);
      expectClose(perSample, J, { rtol: 2e-5, label: 'per-sample' });
      // The smallest budget a call takes (one sample's pass) forces chunks of one sample and one row
      // per pass; a smaller one is refused before any work.
      const progress: number[] = [];
      const tiled = await smallestBudget((mb) => inputJacobian(model, x, { memoryBudgetMB: mb, strategy: 'tiled' }));
      const chunked = await inputJacobian(model, x, { memoryBudgetMB: tiled, strategy: 'tiled', onProgress: (p) => progress.push(p.done) });
      expect(progress).toEqual([1, 2, 3]);
      expectClose(chunked, J, { rtol: 2e-5, label: 'chunked' });
      await expect(inputJacobian(model, x, { memoryBudgetMB: tiled / 2, strategy: 'tiled' })).rejects.toThrow(/^inputJacobian: memoryBudgetMB = .* cannot hold one sample's backward pass/);
      // The same for infogeo's graph: one sample per chunk, one row per backward pass.
      const least = await smallestBudget((mb) => inputJacobian(model, x, { memoryBudgetMB: mb, strategy: 'graph' }));
      const graphChunked = await inputJacobian(model, x, { memoryBudgetMB: least, strategy: 'graph' });
      expectClose(graphChunked, J, { rtol: 2e-5, label: 'graph, chunked' });
      tf.dispose([...rows, perSample, chunked, graphChunked]);
    });

    it('a layer target equals the Jacobian of the sub-model ending at that layer', async () => {
      const layer = model.getLayer(c.featureLayer);
      const sub = tfl.model({ inputs: model.inputs, outputs: layer.output as tfl.SymbolicTensor });
      const m = (layer.outputShape as number[])[1] as number;
      const x1 = tf.slice(x, 0, 1); // one sample: m backward passes each
      const Jf = await inputJacobian(model, x1, { target: { layer: c.featureLayer }, flatten: true });
      expect(Jf.shape).toEqual([1, m, n]);
      const Jsub = await inputJacobian(sub, x1, { target: 'logits', flatten: true });
      expectClose(Jf, Jsub, { rtol: 1e-6, label: 'layer vs sub-model' });
      tf.dispose([x1, Jf, Jsub]);
    });

    it('leaks no tensors (every strategy, chunked, and on abort)', async () => {
      for (const strategy of ['graph', 'loop', 'tiled', 'softmax-chain'] as JacobianStrategy[]) {
        const least = await smallestBudget((mb) => inputJacobian(model, x, { strategy, memoryBudgetMB: mb }));
        const out = await expectNoLeak(() => inputJacobian(model, x, { strategy, memoryBudgetMB: least }), (t) => [t]);
        out.dispose();
      }
      const ctrl = new AbortController();
      const before = tf.memory().numTensors;
      const least = await smallestBudget((mb) => inputJacobian(model, x, { memoryBudgetMB: mb }));
      const p = inputJacobian(model, x, { memoryBudgetMB: least, onProgress: (pr) => pr.done === 1 && ctrl.abort(), signal: ctrl.signal });
      await expect(p).rejects.toMatchObject({ name: 'AbortError' });
      expect(tf.memory().numTensors).toBe(before);
    });
  });
}
