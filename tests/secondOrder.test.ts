/**
 * Second-order forward mode of the linearisation core (`linearize(…, second).jet`): exact second
 * directional derivatives ∂²f[u, v] through every layer of the model zoo, for log-probabilities,
 * logits and a hidden layer, against two references:
 *
 * - on the zoo, a Richardson-extrapolated central difference of the first-order forward mode along
 *   v, (4 D(h/2) − D(h))/3 with D(h) = (J(x + h v)u − J(x − h v)u)/2h; the first-order forward mode
 *   is checked against tf.grad in zoo.test.ts. Its tolerance is set by float32 rounding (below).
 * - on MLPs, the float64 oracle of tests/oracles (jets through each layer with φ' and φ'' in
 *   float64, checked itself against finite differences in oracles.test.ts), to 1e-5.
 *
 * Why not tf.grad of a tf.grad: tfjs's second-order gradients are wrong for several ops — a
 * gradient written with customGrad (logSoftmax) treats its saved output as a constant, so
 * ∂²(log-softmax) comes out as 0 — and on this zoo they disagreed with both references above for
 * log-probabilities, swish, mish, gelu_new, LeakyReLU and LayerNormalization.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tflayers from '@tensorflow/tfjs-layers';
import type * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { secondDerivative, UnsupportedModelError, wrapClassifier } from '../src/index.js';
import type { Target } from '../src/index.js';
import { graphFor, linearize } from '../src/jacobian/linearize.js';
import { curvatureSupport } from '../src/pullback/curvature.js';
import { mlpSecond64, randomMlp64 } from './oracles/curvature64.js';
import type { Act64, Dense64 } from './oracles/curvature64.js';
import { ZOO } from './zoo/models.js';
import { CustomTanh, expectClose, expectNoLeak, smallestBudget, randn } from './helpers.js';

const B = 2;
const K = 2; // tangent pairs per sample
const H = 1e-2;

/** (J(x + h v) u − J(x − h v) u)/2h per pair with the exact first-order forward mode, `[B, K, m]`. */
function jvpDifference(model: tfl.LayersModel, x: tf.Tensor, u: tf.Tensor, v: tf.Tensor, target: Target, h: number): Float64Array {
  const clf = wrapClassifier(model);
  const n = x.size / B;
  const at = (sign: number) =>
    tf.tidy(() => {
      const parts: tf.Tensor[] = [];
      for (let k = 0; k < K; k++) {
        const vk = tf.reshape(tf.slice(v, [0, k], [B, 1]), x.shape);
        const lin = linearize(clf, tf.add(x, tf.mul(sign * h, vk)), target);
        parts.push(lin.jvp(tf.reshape(tf.slice(u, [0, k], [B, 1]), [B, n])));
        lin.dispose();
      }
      return tf.stack(parts, 1); // [B, K, m]
    });
  const plus = at(1);
  const minus = at(-1);
  const d = tf.tidy(() => tf.div(tf.sub(plus, minus), 2 * h));
  const out = Float64Array.from(d.dataSync());
  tf.dispose([plus, minus, d]);
  return out;
}

describe.each(ZOO.map((z, i) => ({ ...z, seed: 3000 + 11 * i })))('second order: $name', ({ build, inputShape, hidden, seed }) => {
  const n = inputShape.reduce((a, d) => a * d, 1);
  let model: tfl.LayersModel;
  let x: tf.Tensor;
  let u: tf.Tensor;
  let v: tf.Tensor;
  beforeAll(() => {
    model = build();
    x = randn([B, ...inputShape], seed);
    // Directions of norm ~1, so that the differences' steps h·v stay clear of ReLU and pooling kinks.
    u = randn([B, K, ...inputShape], seed + 1, 1 / Math.sqrt(n));
    v = randn([B, K, ...inputShape], seed + 2, 1 / Math.sqrt(n));
  });
  afterAll(() => {
    tf.dispose([x, u, v]);
    model.dispose();
  });

  it.each<[string, Target]>([
    ['log-probabilities', 'logProbs'],
    ['logits', 'logits'],
    ['hidden layer', { layer: hidden }],
  ])('%s: ∂²f[u, v] equals the reference', async (_, target) => {
    const clf = wrapClassifier(model);
    if ('reason' in graphFor(clf, target)) throw new Error('the zoo is covered by the graph');
    const uu = tf.reshape(u, [B, K, n]) as tf.Tensor3D;
    const vv = tf.reshape(v, [B, K, n]) as tf.Tensor3D;
    let firstOrder = new Float64Array(0);
    const got = await expectNoLeak(
      () => {
        const lin = linearize(clf, x, target, true);
        try {
          const r = lin.jet(uu, vv);
          // The first-order blocks are the plain forward mode's.
          const ju = lin.jvp(uu);
          expectClose(r.u, ju, { rtol: 1e-6, label: 'first-order block' });
          firstOrder = Float64Array.from(ju.dataSync());
          ju.dispose();
          tf.dispose([r.u, r.v]);
          return r.uv;
        } finally {
          lin.dispose();
        }
      },
      (t) => [t],
    );
    tf.dispose([uu, vv]);
    const d1 = jvpDifference(model, x, u, v, target, H);
    const d2 = jvpDifference(model, x, u, v, target, H / 2);
    const m = d1.length / (B * K);
    const values = got.dataSync();
    let trusted = 0;
    for (let j = 0; j < B * K; j++) {
      const block = (a: ArrayLike<number>) => Array.from(a).slice(j * m, (j + 1) * m);
      const [a, b, g] = [block(d1), block(d2), block(values)];
      const ref = b.map((bi, i) => (4 * bi - (a[i] as number)) / 3); // Richardson: the h² term cancels
      const scale = Math.max(...ref.map(Math.abs), ...g.map(Math.abs));
      // Rounding: each J(x ± h v)u carries ~1e-7 of float32 error relative to its terms (more than
      // ‖J u‖ where they cancel), divided by 2h (h for D(h/2)) and tripled by the extrapolation:
      // ~3e-5·‖J u‖ at h = 0.01 without cancellation; allowed 3e-4·‖J u‖.
      const noise = 3e-4 * Math.max(...block(firstOrder).map(Math.abs));
      // D(h) and D(h/2) differ by ¾h²·f⁗ ≲ 1e-4 of the scale on smooth functions, and by far more
      // where a kink (ReLU, a pool's argmax, the jump of an ELU's or softsign's φ'' at 0) lies
      // within the step: no reference there.
      if (Math.max(...a.map((ai, i) => Math.abs(ai - (b[i] as number)))) > 1e-3 * scale + noise) continue;
      trusted++;
      expectClose(g, ref, { rtol: 1e-3, atol: noise, label: `pair ${j}: Richardson difference of the exact JVP` });
    }
    expect(trusted, 'pairs with a usable reference (at least one sample)').toBeGreaterThanOrEqual(K);
    got.dispose();
  });
});

describe('second order: what has no curvature', () => {
  it('a network of linear and piecewise-linear layers is not curved; log-probabilities always are', () => {
    const relu = ZOO.find((z) => z.name === "Dense(activation: 'relu')")?.build() as tfl.LayersModel;
    const tanh = ZOO.find((z) => z.name === "Dense(activation: 'tanh')")?.build() as tfl.LayersModel;
    // What scalarCurvature refuses: a target without a layer that has a second derivative.
    const curved = (m: tfl.LayersModel, t: Target) => curvatureSupport(wrapClassifier(m), t, 'test') === undefined;
    expect(curved(relu, 'logits')).toBe(false);
    expect(curved(relu, { layer: 'act' })).toBe(false);
    expect(curved(relu, 'logProbs')).toBe(true);
    expect(curved(tanh, 'logits')).toBe(true);
    relu.dispose();
    tanh.dispose();
  });
});

/** A tfjs model of an oracle MLP, and the oracle on its float32-rounded weights. */
function modelOf64(layers: Dense64[]): { model: tfl.LayersModel; exact: Dense64[] } {
  const exact = layers.map((l) => ({ ...l, kernel: Float64Array.from(Float32Array.from(l.kernel)), bias: Float64Array.from(Float32Array.from(l.bias)) }));
  const model = tflayers.sequential();
  exact.forEach((l, i) => {
    if (l.act === 'erf') throw new Error('tfjs-layers has no erf activation');
    model.add(tflayers.layers.dense({ ...(i === 0 ? { inputShape: [l.inSize] } : {}), name: `d${i}`, units: l.outSize, activation: l.act }));
  });
  exact.forEach((l, i) => model.getLayer(`d${i}`).setWeights([tf.tensor2d(Float32Array.from(l.kernel), [l.inSize, l.outSize]), tf.tensor1d(Float32Array.from(l.bias))]));
  return { model, exact };
}

describe('second order: against the float64 oracle (exact jets of MLPs)', () => {
  const nets: [string, Act64[]][] = [
    ['tanh, tanh, linear', ['tanh', 'tanh', 'linear']],
    ['sigmoid, softplus, gelu, linear', ['sigmoid', 'softplus', 'gelu', 'linear']],
    ['swish, elu, tanh', ['swish', 'elu', 'tanh']],
  ];
  it.each(nets)('%s: ∂²f[u, v] to 1e-5 of the largest entry', (_, acts) => {
    const sizes = [5, ...acts.map((__, i) => (i === acts.length - 1 ? 4 : 9))];
    const { model, exact } = modelOf64(randomMlp64(sizes, acts, 17 + acts.length, 1.5));
    const clf = wrapClassifier(model, { modelOutput: 'logits' });
    const x = randn([B, 5], 71);
    const u = randn([B, K, 5], 72);
    const v = randn([B, K, 5], 73);
    const lin = linearize(clf, x, 'logits', true);
    const r = lin.jet(u as tf.Tensor3D, v as tf.Tensor3D);
    const [xs, us, vs] = [x, u, v].map((t) => Float64Array.from(t.dataSync()));
    const ref = new Float64Array(B * K * 4);
    for (let b = 0; b < B; b++)
      for (let k = 0; k < K; k++) {
        const at = (a: Float64Array, j: number) => a.slice(j * 5, (j + 1) * 5);
        ref.set(mlpSecond64(exact, at(xs as Float64Array, b), at(us as Float64Array, b * K + k), at(vs as Float64Array, b * K + k)), (b * K + k) * 4);
      }
    // float32 weights and activations: rounding of ~1e-7 per operation over three layers.
    expectClose(r.uv, ref, { rtol: 1e-5, label: 'float64 oracle' });
    lin.dispose();
    tf.dispose([x, u, v, r.u, r.v, r.uv]);
    model.dispose();
  });
});

describe('secondDerivative (the public function)', () => {
  it('returns the jets of the core, [B, m] or [B, k, m], without leaks; typed errors', async () => {
    const model = ZOO.find((z) => z.name === "Dense(activation: 'gelu')")?.build() as tfl.LayersModel;
    const x = randn([3, 4], 91);
    const u = randn([3, 2, 4], 92);
    const v = randn([3, 2, 4], 93);
    const both = await expectNoLeak(() => secondDerivative(model, x, u, v, { target: { layer: 'act' } }), (r) => [r]);
    expect(both.shape).toEqual([3, 2, 12]);
    const lin = linearize(wrapClassifier(model), x, { layer: 'act' }, true);
    const r = lin.jet(u as tf.Tensor3D, v as tf.Tensor3D);
    expectClose(both, r.uv, { rtol: 1e-6, label: 'the core' });
    // Chunks of one sample give the same values; one pair per sample gives [B, m].
    const u0 = tf.reshape(tf.slice(u, [0, 0], [3, 1]), [3, 4]);
    const v0 = tf.reshape(tf.slice(v, [0, 0], [3, 1]), [3, 4]);
    const least = await smallestBudget((mb) => secondDerivative(model, x, u0, v0, { memoryBudgetMB: mb }));
    const one = await secondDerivative(model, x, u0, v0, { memoryBudgetMB: least });
    expect(one.shape).toEqual([3, 3]);
    const lp = linearize(wrapClassifier(model), x, 'logProbs', true);
    const rp = lp.jet(tf.reshape(u0, [3, 1, 4]) as tf.Tensor3D, tf.reshape(v0, [3, 1, 4]) as tf.Tensor3D);
    expectClose(one, tf.reshape(rp.uv, [3, 3]), { rtol: 1e-6, label: 'log-probabilities, chunked' });
    await expect(secondDerivative(model, x, u, u0)).rejects.toThrow(/^secondDerivative: argument 'v' must have the shape of 'u'/);
    await expect(secondDerivative(model, x, tf.zeros([3, 5]), tf.zeros([3, 5]))).rejects.toThrow(/^secondDerivative: argument 'u' must have shape/);
    // A layer the graph does not cover (a custom layer): no fallback.
    const soft = tflayers.sequential();
    soft.add(tflayers.layers.dense({ inputShape: [4], units: 4, activation: 'tanh' }));
    soft.add(new CustomTanh({}));
    soft.add(tflayers.layers.dense({ units: 3 }));
    await expect(secondDerivative(soft, x, u, v)).rejects.toThrow(UnsupportedModelError);
    lin.dispose();
    lp.dispose();
    tf.dispose([x, u, v, both, r.u, r.v, r.uv, u0, v0, one, rp.u, rp.v, rp.uv]);
    model.dispose();
    soft.dispose();
  });
});

describe('second order: tapes of both kinds alive at once', () => {
  it('a nested model keeps the saved tensors of a first-order tape apart from a second-order one', () => {
    const model = ZOO.find((z) => z.name.startsWith('nested'))?.build() as tfl.LayersModel;
    const clf = wrapClassifier(model);
    const x = randn([2, 5], 95);
    const v = randn([2, 5], 96);
    const first = linearize(clf, x, { layer: 'hidden' });
    const before = first.jvp(v);
    // A second-order tape of the same (cached) graph in between: its nested program saves more.
    const second = linearize(clf, x, { layer: 'hidden' }, true);
    const after = first.jvp(v);
    const rows = first.rows(tf.eye(6) as tf.Tensor2D);
    const fresh = linearize(clf, x, { layer: 'hidden' });
    expectClose(after, before, { rtol: 1e-7, label: 'jvp of the first tape' });
    expectClose(rows, fresh.rows(tf.eye(6) as tf.Tensor2D), { rtol: 1e-7, label: 'rows of the first tape' });
    [first, second, fresh].forEach((l) => l.dispose());
    tf.dispose([x, v, before, after, rows]);
    model.dispose();
  });
});
