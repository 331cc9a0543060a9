/**
 * weightJacobian against a closed form (linear softmax model), finite differences in weight space
 * (dense tanh net), and tf.variableGrads of one sample and one class (the CNN and the ResNet).
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';
import { LayerNotFoundError, ValueError, weightJacobian, wrapClassifier } from '../src/index.js';
import { cifarResnet, denseNet, mnistCnn, randomizeBatchNorm } from '../examples/models.js';
import { expectClose, expectNoLeak, smallestBudget, randn } from './helpers.js';

describe('weightJacobian', () => {
  it('linear softmax model: ∂log p_c/∂W = x (e_c − p)ᵀ and ∂log p_c/∂b = e_c − p (closed form)', async () => {
    const model = denseNet(4, [], 3, 5); // logits = xW + b
    tf.tidy(() => model.layers[0]!.setWeights([randn([4, 3], 1), randn([3], 2)]));
    const x = randn([2, 4], 3);
    const { jacobian, slices, numWeights } = await weightJacobian(model, x);
    expect(jacobian.shape).toEqual([2, 3, 15]);
    expect(numWeights).toBe(15);
    expect(slices.map((s) => [s.offset, s.size, s.shape])).toEqual([
      [0, 12, [4, 3]],
      [12, 3, [3]],
    ]);
    const p = tf.tidy(() => tf.softmax(tf.add(tf.matMul(x as tf.Tensor2D, model.layers[0]!.getWeights()[0] as tf.Tensor2D), model.layers[0]!.getWeights()[1]!)));
    const pv = p.arraySync() as number[][];
    const xv = x.arraySync() as number[][];
    const expected = new Float64Array(2 * 3 * 15);
    for (let b = 0; b < 2; b++)
      for (let c = 0; c < 3; c++) {
        const row = (b * 3 + c) * 15;
        for (let j = 0; j < 3; j++) {
          const g = (j === c ? 1 : 0) - (pv[b]![j] as number);
          for (let i = 0; i < 4; i++) expected[row + i * 3 + j] = (xv[b]![i] as number) * g; // W is [in, out], row-major
          expected[row + 12 + j] = g;
        }
      }
    // Closed form in float64 vs float32 autodiff of O(1) numbers: 1e-6 relative.
    expectClose(jacobian, expected, { rtol: 1e-6 });
    tf.dispose([jacobian, p, x]);
  });

  it('dense tanh net: J·δw matches central differences in weight space', async () => {
    const model = denseNet(5, [6], 3, 9);
    const x = randn([2, 5], 4);
    const { jacobian, numWeights } = await weightJacobian(model, x, { target: 'logProbs' });
    const clf = wrapClassifier(model);
    const w0 = model.getWeights().map((w) => tf.clone(w));
    const delta = w0.map((w, i) => randn(w.shape, 100 + i));
    const norm = Math.sqrt(delta.reduce((a, d) => a + (tf.tidy(() => tf.sum(tf.square(d)).dataSync()[0]) as number), 0));
    const h = 1e-2 / norm; // a step of 1e-2 in weight space: smooth net, FD error ~1e-5, rounding ~2e-5
    const at = (sign: number) => {
      tf.tidy(() => model.setWeights(w0.map((w, i) => tf.add(w, tf.mul(delta[i]!, sign * h)))));
      return tf.tidy(() => clf.logProbs(x)).dataSync();
    };
    const plus = at(1);
    const minus = at(-1);
    model.setWeights(w0);
    const flatDelta = tf.tidy(() => tf.concat(delta.map((d) => tf.reshape(d, [-1]))));
    const Jd = tf.tidy(() => tf.squeeze(tf.matMul(jacobian, tf.tile(tf.reshape(flatDelta, [1, numWeights, 1]), [2, 1, 1]) as tf.Tensor3D), [2]));
    const fd = Float64Array.from(plus, (p, i) => (p - (minus[i] as number)) / (2 * h));
    expectClose(Jd, fd, { rtol: 1e-3 });
    tf.dispose([jacobian, x, ...w0, ...delta, flatDelta, Jd]);
  });

  const convModels: [string, () => tfl.LayersModel, number[]][] = [
    ['MNIST CNN', () => mnistCnn(3), [28, 28, 1]],
    [
      'ResNet with BatchNorm',
      () => {
        const m = cifarResnet(3, { widths: [4, 8], inputShape: [16, 16, 3] });
        randomizeBatchNorm(m);
        return m;
      },
      [16, 16, 3],
    ],
  ];
  for (const [name, build, shape] of convModels) {
    it(`${name}: rows (graph) equal tf.variableGrads of one sample and one class, and the loop strategy; no leaks`, async () => {
      const model = build();
      const x = randn([2, ...shape], 6);
      const result = await expectNoLeak(() => weightJacobian(model, x), (r) => [r.jacobian]);
      const { jacobian, slices, numWeights } = result;
      const trainable = model.trainableWeights;
      expect(slices.map((s) => s.name)).toEqual(trainable.map((w) => w.name));
      expect(numWeights).toBe(trainable.reduce((a, w) => a + w.shape.reduce<number>((p, d) => p * (d as number), 1), 0));
      expect(jacobian.shape).toEqual([2, 10, numWeights]);
      const clf = wrapClassifier(model);
      const vars = trainable.map((w) => w.read() as tf.Variable);
      for (const [b, c] of [[0, 3], [1, 7]] as const) {
        const ref = tf.tidy(() => {
          const xb = tf.slice(x, b, 1);
          const { grads } = tf.variableGrads(() => tf.squeeze(tf.slice(clf.logProbs(xb), [0, c], [1, 1])) as tf.Scalar, vars);
          return tf.concat(vars.map((v) => tf.reshape(grads[v.name]!, [-1])));
        });
        const row = tf.tidy(() => tf.reshape(tf.slice(jacobian, [b, c, 0], [1, 1, -1]), [-1]));
        // Same gradient, different summation order (batched products, e_c − p on the logits): float32 rounding.
        expectClose(row, ref, { rtol: 1e-5, label: `row (${b}, ${c})` });
        tf.dispose([ref, row]);
      }
      const loop = await weightJacobian(model, x, { strategy: 'loop' });
      expectClose(loop.jacobian, jacobian, { rtol: 1e-5, label: 'loop vs graph' });
      tf.dispose([jacobian, loop.jacobian, x]);
    });
  }

  it('a subset of layers, chunking, progress and abort', async () => {
    const model = denseNet(5, [6, 4], 3, 2);
    const x = randn([3, 5], 8);
    const full = await weightJacobian(model, x);
    const sub = await weightJacobian(model, x, { layers: ['logits'] });
    expect(sub.slices.map((s) => s.layer)).toEqual(['logits', 'logits']);
    expect(sub.numWeights).toBe(4 * 3 + 3);
    const offset = full.slices.find((s) => s.layer === 'logits')!.offset;
    expectClose(sub.jacobian, tf.slice(full.jacobian, [0, 0, offset], [-1, -1, sub.numWeights]), { rtol: 0 });
    const progress: number[] = [];
    const least = await smallestBudget((mb) => weightJacobian(model, x, { memoryBudgetMB: mb })); // one sample per chunk
    const chunked = await weightJacobian(model, x, { memoryBudgetMB: least, onProgress: (p) => progress.push(p.done) });
    expect(progress).toEqual([1, 2, 3]);
    expectClose(chunked.jacobian, full.jacobian, { rtol: 0 });
    const ctrl = new AbortController();
    const before = tf.memory().numTensors;
    await expect(weightJacobian(model, x, { memoryBudgetMB: least, signal: ctrl.signal, onProgress: () => ctrl.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([full.jacobian, sub.jacobian, chunked.jacobian, x]);
  });

  it("a Dense(softmax) head: the graph of the logits ('auto') and of the model's output as logits are two graphs, in either order", async () => {
    for (const first of ['auto', 'logits'] as const) {
      const model = tfl.sequential({
        layers: [
          tfl.layers.dense({ inputShape: [4], units: 5, activation: 'tanh', kernelInitializer: tfl.initializers.glorotNormal({ seed: 61 }) }),
          tfl.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: tfl.initializers.glorotNormal({ seed: 62 }) }),
        ],
      });
      const x = randn([2, 4], 63);
      for (const modelOutput of first === 'auto' ? (['auto', 'logits'] as const) : (['logits', 'auto'] as const)) {
        // 'auto' is the graph without the softmax; 'logits' reads the output as it is, softmax
        // included, which the graph does not cover as a Dense activation: tf.variableGrads.
        const graph = await weightJacobian(model, x, { modelOutput, strategy: 'auto' });
        const loop = await weightJacobian(model, x, { modelOutput, strategy: 'loop' });
        // The same rows by two engines (or the same one): float32 rounding.
        expectClose(graph.jacobian, loop.jacobian, { rtol: 1e-5, label: `${modelOutput} after ${first}` });
        tf.dispose([graph.jacobian, loop.jacobian]);
      }
      x.dispose();
      model.dispose();
    }
  });

  it('typed errors: unknown layer, layers without weights, bad target or strategy', async () => {
    const model = denseNet(5, [6], 3, 2);
    model.add(tfl.layers.activation({ name: 'act', activation: 'linear' }));
    const x = randn([1, 5], 8);
    await expect(weightJacobian(model, x, { layers: ['nope'] })).rejects.toThrow(LayerNotFoundError);
    await expect(weightJacobian(model, x, { layers: ['act'] })).rejects.toThrow(/no trainable weights/);
    await expect(weightJacobian(model, x, { target: { layer: 'act' } as never })).rejects.toThrow(ValueError);
    await expect(weightJacobian(model, x, { strategy: 'tiled' as never })).rejects.toThrow(ValueError);
    await expect(weightJacobian(model, x, { strategy: 'softmax-chain' as never })).rejects.toThrow(ValueError);
    x.dispose();
  });
});
