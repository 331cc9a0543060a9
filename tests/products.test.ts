/** vjp and jvp against the full Jacobian from inputJacobian (itself checked against FD). */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { inputJacobian, jvp, ShapeError, ValueError, vjp } from '../src/index.js';
import type { Target } from '../src/index.js';
import { cifarResnet, denseNet, mnistCnn, randomizeBatchNorm } from '../examples/models.js';
import { expectClose, expectNoLeak, randn } from './helpers.js';

const B = 2;

type Case = {
  name: string;
  build: () => tfl.LayersModel;
  shape: number[];
  target: Target;
  m: number;
  /** Whether every op of the model has a second-order gradient in tfjs 4.22 (max-pool has none). */
};
const CASES: Case[] = [
  { name: 'dense tanh net, hidden layer', build: () => denseNet(6, [5, 4], 3, 4), shape: [6], target: { layer: 'hidden2' }, m: 4 },
  {
    name: 'ResNet with BatchNorm, log-probabilities',
    build: () => {
      const r = cifarResnet(4, { widths: [4, 8], inputShape: [16, 16, 3] });
      randomizeBatchNorm(r);
      return r;
    },
    shape: [16, 16, 3],
    target: 'logProbs',
    m: 10,
  },
  { name: 'MNIST CNN (max-pool), logits', build: () => mnistCnn(5, { filters: [4, 8], hidden: 16 }), shape: [28, 28, 1], target: 'logits', m: 10 },
];

for (const c of CASES) {
  describe(`vjp / jvp on the ${c.name}`, () => {
    let model: tfl.LayersModel;
    let x: tf.Tensor;
    let J: tf.Tensor; // [B, m, n]
    const n = c.shape.reduce((a, d) => a * d, 1);
    beforeAll(async () => {
      model = c.build();
      x = randn([B, ...c.shape], 51);
      J = await inputJacobian(model, x, { target: c.target, flatten: true, strategy: 'loop' });
    });

    it('vjp(u) = uᵀJ per sample, without leaks', async () => {
      const u = randn([B, c.m], 52);
      const g = await expectNoLeak(() => vjp(model, x, u, { target: c.target }), (t) => [t]);
      expect(g.shape).toEqual([B, ...c.shape]);
      const ref = tf.tidy(() => tf.squeeze(tf.matMul(tf.reshape(u, [B, 1, c.m]) as tf.Tensor3D, J as tf.Tensor3D), [1]));
      // The same backward pass with a summed cotangent: float32 rounding only.
      expectClose(g, ref, { rtol: 1e-5 });
      tf.dispose([u, g, ref]);
    });

    it('jvp(v) = J v, one direction and k = 2 directions per sample, without leaks', async () => {
      // Directions inside J's row space carry the full gradient signal (see inputJacobian.test.ts).
      const v = tf.tidy(() => {
        const w = randn([B, 2, c.m], 53) as tf.Tensor3D;
        const d = tf.matMul(w, J as tf.Tensor3D); // [B, 2, n]
        return tf.reshape(tf.div(d, tf.norm(d, 'euclidean', 2, true)), [B, 2, ...c.shape]);
      });
      const ref = tf.tidy(() => tf.matMul(J as tf.Tensor3D, tf.reshape(v, [B, 2, n]) as tf.Tensor3D, false, true)); // [B, m, 2]
      const ref0 = tf.tidy(() => tf.squeeze(tf.slice(ref, [0, 0, 0], [-1, -1, 1]), [2]));
      const refK = tf.tidy(() => tf.transpose(ref, [0, 2, 1]));
      const v0 = tf.tidy(() => tf.reshape(tf.slice(v, [0, 0], [B, 1]), [B, ...c.shape]));
      const one = await expectNoLeak(() => jvp(model, x, v0, { target: c.target }), (t) => [t]);
      const two = await expectNoLeak(() => jvp(model, x, v, { target: c.target }), (t) => [t]);
      expect(one.shape).toEqual([B, c.m]);
      expect(two.shape).toEqual([B, 2, c.m]);
      // 'auto' is exact forward mode through infogeo's graph (no second-order gradient needed, so
      // max-pooling models too): float32 rounding, 1e-5.
      expectClose(one, ref0, { rtol: 1e-5, label: 'one direction' });
      expectClose(two, refK, { rtol: 1e-5, label: 'two directions' });
      // Central differences: float32 error ~0.1–0.2 % of |J v| on these ReLU/max-pool nets
      // (inputJacobian.test.ts): bound 1 %.
      const central = await jvp(model, x, v, { target: c.target, strategy: 'central' });
      expectClose(central, refK, { rtol: 1e-2, label: 'central' });
      tf.dispose([v, ref, ref0, refK, v0, one, two, central]);
    });
  });
}

describe('vjp / jvp typed errors', () => {
  const model = denseNet(4, [3], 2, 1);
  const x = randn([2, 4], 1);
  it('shapes and options', async () => {
    await expect(vjp(model, x, tf.zeros([2, 3]))).rejects.toThrow(ShapeError);
    await expect(vjp(model, x, tf.zeros([1, 2]))).rejects.toThrow(/\[2,2\]/);
    await expect(vjp(model, x, tf.zeros([2, 2], 'int32'))).rejects.toThrow(/float32/);
    await expect(jvp(model, x, tf.zeros([2, 5]))).rejects.toThrow(ShapeError);
    await expect(jvp(model, x, tf.zeros([3, 4]))).rejects.toThrow(ShapeError);
    await expect(jvp(model, x, tf.zeros([2, 4], 'int32'))).rejects.toThrow(/float32/);
    await expect(jvp(model, x, tf.zeros([2, 4]), { eps: 0 })).rejects.toThrow(ValueError);
    await expect(jvp(model, x, tf.fill([2, 4], NaN))).rejects.toThrow(/'tangent' contains NaN/);
    await expect(vjp(model, x, tf.fill([2, 2], Infinity))).rejects.toThrow(/'cotangent' contains NaN/);
    await expect(jvp(model, x, tf.zeros([2, 4]), { strategy: 'double-vjp' as never })).rejects.toThrow(ValueError);
  });
});
