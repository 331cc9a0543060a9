/**
 * splitAt: a text classifier measured from its Embedding's output. The head is a copy of the layers
 * after the split; at features(ids) it is the model at ids, and every function of infogeo runs on
 * it (here: Jacobians on the graph against tf.grad through the copy, G(x) against its closed form
 * from the per-class gradients, the pullback metric and its curvature through an LSTM).
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';
import {
  inputJacobian,
  LayerNotFoundError,
  localDataMatrix,
  pullbackMetric,
  scalarCurvature,
  ShapeError,
  splitAt,
  UnsupportedModelError,
  ValueError,
  wrapClassifier,
} from '../src/index.js';
import { expectClose } from './helpers.js';

const seed = (s: number) => tfl.initializers.glorotNormal({ seed: s });

/** Token ids [B, 6] → Embedding(30, 4) → LSTM(5) → Dense(3, softmax). */
function textModel(): tfl.LayersModel {
  const m = tfl.sequential({ name: 'text' });
  m.add(tfl.layers.embedding({ name: 'embed', inputDim: 30, outputDim: 4, inputLength: 6, embeddingsInitializer: seed(1) }));
  // (orthogonal, the default recurrent initializer, needs a chained op that tfjs-core alone lacks in Node)
  m.add(tfl.layers.lstm({ name: 'lstm', units: 5, kernelInitializer: seed(2), recurrentInitializer: seed(3) }));
  m.add(tfl.layers.dense({ name: 'out', units: 3, activation: 'softmax', kernelInitializer: seed(4) }));
  return m;
}

const ids = () => tf.tensor2d([[1, 5, 9, 2, 0, 7], [3, 3, 12, 29, 8, 4]], [2, 6], 'float32');

describe('splitAt: a text classifier from its Embedding', () => {
  it('the head at features(ids) is the model at ids; its weights are copies; nothing leaks', () => {
    const m = textModel();
    const x = ids();
    const before = tf.memory().numTensors;
    const { features, head } = splitAt(m, 'embed');
    const e = features(x);
    expect(e.shape).toEqual([2, 6, 4]);
    expect(head.inputs[0]!.shape).toEqual([null, 6, 4]);
    expect(head.layers.map((l) => l.name)).toEqual(['embed_output', 'lstm', 'out']);
    const [y, yh] = [m.predict(x) as tf.Tensor, head.predict(e) as tf.Tensor];
    expectClose(yh, y, { atol: 1e-6, label: 'head(features(ids)) vs model(ids)' });
    // A copy: changing the model's output layer leaves the head as it was split.
    const out = m.getLayer('out');
    const saved = out.getWeights().map((w) => w.clone());
    const doubled = saved.map((w) => tf.mul(w, 2));
    out.setWeights(doubled);
    const after = head.predict(e) as tf.Tensor;
    expectClose(after, yh, { atol: 0, label: 'head after the model changed' });
    out.setWeights(saved);
    tf.dispose([e, y, yh, after, ...saved, ...doubled]);
    head.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect((m.predict(x) as tf.Tensor).shape).toEqual([2, 3]); // the model still works
    x.dispose();
    m.dispose();
  });

  it('geometry in embedding space: the graph Jacobian equals tf.grad through the copy, G equals Σ p_c ∇log p_c ∇log p_cᵀ, and the LSTM has a curvature', async () => {
    const m = textModel();
    const x = ids();
    const { features, head } = splitAt(m, 'embed');
    const e = features(x);
    const Jg = await inputJacobian(head, e, { strategy: 'graph', flatten: true });
    const Jl = await inputJacobian(head, e, { strategy: 'loop', flatten: true });
    expectClose(Jg, Jl, { rtol: 1e-4, atol: 1e-6, label: 'graph vs tf.grad rows' });
    // tr G(x) = Σ_c p_c ‖∇ log p_c‖² (the closed form of G's trace), from the rows and p in float64.
    const { G, probs } = await localDataMatrix(head, e);
    const trace = await G.trace();
    const [rows, p] = [await Jg.data(), await probs.data()];
    const n = 24;
    for (let b = 0; b < 2; b++) {
      let expected = 0;
      for (let c = 0; c < 3; c++) {
        let sq = 0;
        for (let i = 0; i < n; i++) sq += (rows[(b * 3 + c) * n + i] as number) ** 2;
        expected += (p[b * 3 + c] as number) * sq;
      }
      // float32 rows of size ~0.1–1: relative agreement to 1e-4
      expect(Math.abs((trace[b] as number) - expected)).toBeLessThan(1e-4 * expected + 1e-7);
    }
    const g = await pullbackMetric(head, e, { target: { layer: 'lstm' } });
    expect(g.dim).toBe(n);
    // On a plane of the embedding space (the metric of 3 log-probabilities has rank ≤ 3 < 24).
    const plane = tf.randomNormal([2, 6, 4], 0, 1, 'float32', 5);
    const R = await scalarCurvature(head, e, { target: 'logProbs', subspace: plane });
    expect(Array.from(R.scalar).every(Number.isFinite)).toBe(true);
    plane.dispose();
    tf.dispose([e, Jg, Jl, probs]);
    G.dispose();
    g.dispose();
    head.dispose();
    x.dispose();
    m.dispose();
  });

  it('refuses what it cannot split: an unknown layer, the output layer, a path around the split layer; features takes a tensor', () => {
    const m = textModel();
    expect(() => splitAt(m, 'nope')).toThrow(LayerNotFoundError);
    expect(() => splitAt(m, 'nope')).toThrow(/^splitAt: the model has no layer named 'nope' \(in layerName\)/);
    expect(() => splitAt(m, 'out')).toThrow(ValueError);
    expect(() => splitAt(m, 'out')).toThrow(/output layer: no layer is left after it/);
    expect(() => splitAt(m, 42 as never)).toThrow(LayerNotFoundError);
    const { features, head } = splitAt(m, 'embed');
    expect(() => features([1, 2] as never)).toThrow(ShapeError);
    head.dispose();
    m.dispose();
    // x → dense 'a' → dense 'b'; the output adds b and x itself: a path around 'a'.
    const input = tfl.input({ shape: [4] });
    const a = tfl.layers.dense({ name: 'a', units: 4 }).apply(input) as tfl.SymbolicTensor;
    const b = tfl.layers.dense({ name: 'b', units: 4, activation: 'tanh' }).apply(a) as tfl.SymbolicTensor;
    const sum = tfl.layers.add({ name: 'sum' }).apply([b, input]) as tfl.SymbolicTensor;
    const out = tfl.layers.dense({ name: 'logits', units: 3 }).apply(sum) as tfl.SymbolicTensor;
    const skip = tfl.model({ inputs: input, outputs: out });
    const before = tf.memory().numTensors;
    expect(() => splitAt(skip, 'a')).toThrow(UnsupportedModelError);
    expect(() => splitAt(skip, 'a')).toThrow(/reaches its input without passing through layer 'a'/);
    expect(tf.memory().numTensors).toBe(before); // the copies built before the refusal are freed
    // Split after the skip's join: fine, and the head is a classifier.
    const { head: h2, features: f2 } = splitAt(skip, 'sum');
    const x = tf.randomNormal([2, 4], 0, 1, 'float32', 1);
    const s = f2(x);
    expectClose(h2.predict(s) as tf.Tensor, skip.predict(x) as tf.Tensor, { atol: 1e-6, label: 'split after the join' });
    expect(wrapClassifier(h2).numClasses).toBe(3);
    tf.dispose([x, s]);
    h2.dispose();
    skip.dispose();
  });
});
