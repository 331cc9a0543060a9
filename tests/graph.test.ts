/**
 * infogeo's own reverse mode (strategy 'graph') against tf.grad ('loop'), layer by layer: the
 * transposed convolution by phases against tfjs's Conv2DBackpropInput, every covered layer kind in
 * small models, the max-pool tie rule, the fallback for layers it does not cover, weights that
 * change between calls, and leaks.
 */
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';
import { inputJacobian, jvp, UnsupportedModelError, vjp, wrapClassifier } from '../src/index.js';
import type { Target } from '../src/index.js';
import { convBackpropInput, phaseFilters } from '../src/jacobian/graph/phases.js';
import { planInputJacobian } from '../src/jacobian/input.js';
import { FAMILIES, RULES } from '../src/jacobian/graph/registry.js';
import { LAYER_CLASSES } from '../src/jacobian/graph/rule.js';
import { randomizeBatchNorm } from '../examples/models.js';
import { GUIDE, withCoverage } from '../scripts/layers-doc.js';
import { ZOO } from './zoo/models.js';
import { CustomTanh, expectClose, expectNoLeak, onCpu, randn } from './helpers.js';

const init = (s: number) => tfl.initializers.glorotNormal({ seed: s });

describe('convBackpropInput (the backward pass of a conv as stride-1 convs, one per phase)', () => {
  // Every combination of size parity, kernel size (smaller than, equal to and larger than the
  // stride), stride and padding; tf.grad of tf.conv2d (tfjs's Conv2DBackpropInput) is the oracle.
  // One input channel (a grayscale first layer) takes a depthwise path.
  const cases: [number, number, number, 'same' | 'valid', number][] = [];
  for (const H of [7, 8]) for (const f of [1, 2, 3, 5]) for (const s of [1, 2, 3]) for (const pad of ['same', 'valid'] as const) if (f <= H) cases.push([H, f, s, pad, 1 + ((H + f + s) % 2)]);
  it(`equals tf.grad of conv2d in ${cases.length} configurations`, () => {
    expect(new Set(cases.map((c) => c[4]))).toEqual(new Set([1, 2]));
    cases.forEach(([H, f, s, pad, ci], i) => {
      tf.tidy(() => {
        const x = randn([2, H, H + 1, ci], 100 + i) as tf.Tensor4D;
        const w = randn([f, f + (f > 1 ? -1 : 0), ci, 3], 200 + i) as tf.Tensor4D;
        const y = tf.conv2d(x, w, s, pad);
        const dy = randn(y.shape, 300 + i) as tf.Tensor4D;
        const want = tf.grad((z: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(z as tf.Tensor4D, w, s, pad), dy)))(x);
        const info = tf.backend_util.computeConv2DInfo(x.shape, w.shape, s, 1, pad);
        const phases = phaseFilters(w.dataSync() as Float32Array, w.shape, [s, s]);
        // Exactly the filter's taps, split between the phases.
        expect(phases.reduce((a, p) => a + p.filter.shape[0] * p.filter.shape[1], 0)).toBe(w.shape[0] * w.shape[1]);
        const got = convBackpropInput(dy, phases, [H, H + 1, ci], [s, s], { top: info.padInfo.top, left: info.padInfo.left });
        expect(got.shape).toEqual(x.shape);
        // Sums of ≤ 5·4·3 products of N(0, 1) numbers in another order: float32 rounding, ~1e-6.
        expectClose(got, want, { rtol: 1e-5, label: `H=${H} f=${f} s=${s} ${pad} ci=${ci}` });
      });
    });
  });
});

/** Sequential: strided/valid convs, tanh, max-pool over an odd size, BatchNorm, average pool, sigmoid, Dropout, softmax head. */
function sequentialZoo(): tfl.LayersModel {
  const m = tfl.sequential();
  m.add(tfl.layers.conv2d({ inputShape: [11, 11, 2], filters: 4, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu', kernelInitializer: init(1) }));
  m.add(tfl.layers.conv2d({ filters: 5, kernelSize: 2, activation: 'tanh', kernelInitializer: init(2) })); // 6 → 5
  m.add(tfl.layers.maxPooling2d({ poolSize: 2 })); // 5 → 2, the last row and column dropped
  m.add(tfl.layers.batchNormalization({}));
  m.add(tfl.layers.averagePooling2d({ poolSize: 2 })); // 2 → 1
  m.add(tfl.layers.flatten());
  m.add(tfl.layers.dense({ units: 6, activation: 'sigmoid', kernelInitializer: init(3) }));
  m.add(tfl.layers.dropout({ rate: 0.5 }));
  m.add(tfl.layers.dense({ units: 4, activation: 'softplus', kernelInitializer: init(4) }));
  m.add(tfl.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: init(5) }));
  randomizeBatchNorm(m, 3);
  return m;
}

/** Functional: BatchNorm, ReLU(maxValue), branches with strides 2 (3×3 ELU and 1×1), Add, LeakyReLU, Concatenate, GAP, Reshape, Dense on rank 3, a Softmax layer head. */
function functionalZoo(): tfl.LayersModel {
  const input = tfl.input({ shape: [8, 8, 3] });
  const apply = (l: tfl.layers.Layer, x: tfl.SymbolicTensor | tfl.SymbolicTensor[]) => l.apply(x) as tfl.SymbolicTensor;
  let h = apply(tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', useBias: false, kernelInitializer: init(6) }), input);
  h = apply(tfl.layers.batchNormalization({}), h);
  h = apply(tfl.layers.reLU({ maxValue: 6 }), h);
  const a = apply(tfl.layers.conv2d({ filters: 4, kernelSize: 3, strides: 2, padding: 'same', activation: 'elu', kernelInitializer: init(7) }), h);
  const b = apply(tfl.layers.conv2d({ filters: 4, kernelSize: 1, strides: 2, kernelInitializer: init(8) }), h);
  let s = apply(tfl.layers.leakyReLU({ alpha: 0.2 }), apply(tfl.layers.add(), [a, b]));
  s = apply(tfl.layers.concatenate(), [s, apply(tfl.layers.conv2d({ filters: 2, kernelSize: 2, strides: 2, activation: 'relu6', kernelInitializer: init(9) }), h)]);
  const g = apply(tfl.layers.globalAveragePooling2d({}), s); // [6]
  const r = apply(tfl.layers.reshape({ targetShape: [2, 3] }), g);
  const d = apply(tfl.layers.dense({ units: 4, activation: 'linear', kernelInitializer: init(10) }), r); // [2, 4]
  const f = apply(tfl.layers.flatten(), d);
  const logits = apply(tfl.layers.dense({ units: 5, kernelInitializer: init(11), name: 'logits' }), f);
  const out = apply(tfl.layers.softmax(), logits);
  const m = tfl.model({ inputs: input, outputs: out });
  randomizeBatchNorm(m, 4);
  return m;
}

/** Strided convs reading one tensor on an odd grid: phase grids that add (1×1/2 and 2×2/2) and one that does not (3×3/2 'same' pads a row first). */
function siblingConvs(): tfl.LayersModel {
  const input = tfl.input({ shape: [7, 7, 2] });
  const conv = (kernelSize: number, padding: 'same' | 'valid', seed: number) =>
    tfl.layers.conv2d({ filters: 3, kernelSize, strides: 2, padding, kernelInitializer: init(seed) }).apply(input) as tfl.SymbolicTensor;
  const sum = tfl.layers.add().apply([conv(3, 'same', 15), conv(1, 'valid', 16), conv(2, 'same', 17)]) as tfl.SymbolicTensor; // 4×4
  const flat = tfl.layers.flatten().apply(tfl.layers.activation({ activation: 'tanh' }).apply(sum));
  const h = tfl.layers.dense({ units: 5, activation: 'tanh', kernelInitializer: init(18) }).apply(flat);
  return tfl.model({ inputs: input, outputs: tfl.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: init(19) }).apply(h) as tfl.SymbolicTensor });
}

/** A tensor read by an Add and by a later layer, so that the Add's cotangent meets one already there. */
function sharedByAddAndLater(): tfl.LayersModel {
  const input = tfl.input({ shape: [6] });
  const dense = (units: number, activation: 'tanh' | 'softmax', seed: number) => tfl.layers.dense({ units, activation, kernelInitializer: init(seed) });
  const h = dense(5, 'tanh', 30).apply(input) as tfl.SymbolicTensor;
  const s = tfl.layers.add().apply([h, dense(5, 'tanh', 31).apply(h) as tfl.SymbolicTensor]) as tfl.SymbolicTensor;
  const c = tfl.layers.concatenate().apply([s, h]) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: dense(3, 'softmax', 32).apply(c) as tfl.SymbolicTensor });
}

// The oracle is tf.grad with tfjs's cpu kernels (onCpu), because wasm's MaxPoolGrad puts the
// gradient of a window whose values are all negative on the wrong element (see the test below).

describe.each([
  { name: 'a Sequential model with every covered single-input layer', build: sequentialZoo, shape: [11, 11, 2] },
  { name: 'a functional model with branches, Add, Concatenate and a Softmax layer', build: functionalZoo, shape: [8, 8, 3] },
  { name: 'strided convs that read one tensor, on an odd grid', build: siblingConvs, shape: [7, 7, 2] },
  { name: 'a tensor read by an Add and by a later layer', build: sharedByAddAndLater, shape: [6] },
])('strategy graph on $name', ({ build, shape }) => {
  it('compiles (auto picks it) and equals tf.grad for log-probabilities, logits and a layer', async () => {
    const model = build();
    const x = randn([3, ...shape], 7);
    const clf = wrapClassifier(model);
    expect(planInputJacobian(clf, 3, {}).strategy).toBe('graph');
    const hidden = model.layers.find((l) => l.getClassName() === 'Dense')?.name as string;
    for (const target of ['logProbs', 'logits', { layer: hidden }] as Target[]) {
      const J = await expectNoLeak(() => inputJacobian(model, x, { target, strategy: 'graph' }), (t) => [t]);
      const ref = await onCpu(() => inputJacobian(model, x, { target, strategy: 'loop' }));
      // Same derivatives, summed in another order: float32 rounding, ≤ ~1e-6 of the largest.
      expectClose(J, ref, { rtol: 1e-5, label: JSON.stringify(target) });
      tf.dispose([J, ref]);
    }
    x.dispose();
  });
});

describe('strategy graph: conventions and limits', () => {
  it('gives a max-pool window’s gradient to its first maximum on every backend (as tfjs cpu, TF and PyTorch)', async () => {
    const m = tfl.sequential();
    m.add(tfl.layers.maxPooling2d({ inputShape: [2, 2, 1], poolSize: 2 }));
    m.add(tfl.layers.flatten());
    m.add(tfl.layers.dense({ units: 2, kernelInitializer: 'ones', biasInitializer: 'zeros' }));
    const x = tf.ones([1, 2, 2, 1]); // all four tie
    const J = await inputJacobian(m, x, { target: 'logits', strategy: 'graph', flatten: true });
    expect(Array.from(J.dataSync())).toEqual([1, 0, 0, 0, 1, 0, 0, 0]);
    tf.dispose([J, x]);
  });

  it('gives a max-pool window of negative values’ gradient to its maximum (tfjs wasm’s MaxPoolGrad does not)', async () => {
    const m = tfl.sequential();
    m.add(tfl.layers.maxPooling2d({ inputShape: [2, 4, 1], poolSize: 2 }));
    m.add(tfl.layers.flatten());
    // Two windows: {−1.6, −1.5, −0.5, −0.9} with its maximum at index 4, {0.3, 0.1, 0.2, 0.4} at 7.
    const x = tf.tensor4d([-1.6, -1.5, 0.3, 0.1, -0.5, -0.9, 0.2, 0.4], [1, 2, 4, 1]);
    const J = await inputJacobian(m, x, { target: 'logits', strategy: 'graph', flatten: true });
    expect(Array.from(J.dataSync())).toEqual([0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    tf.dispose([J, x]);
  });

  it('keeps only the cotangents not yet consumed: peak memory does not grow by a cotangent per layer', async () => {
    // A chain of same-size convs: each layer adds its saved ReLU mask (B·16·16·8 floats, a ninth of
    // one 9-row cotangent) to the tape, but its cotangents must be released once consumed.
    const chain = (depth: number) => {
      const m = tfl.sequential();
      for (let i = 0; i < depth; i++) {
        m.add(tfl.layers.conv2d({ ...(i === 0 ? { inputShape: [16, 16, 8] } : {}), filters: 8, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(20 + i) }));
      }
      m.add(tfl.layers.globalAveragePooling2d({}));
      m.add(tfl.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: init(40) }));
      return m;
    };
    const x = randn([4, 16, 16, 8], 12);
    const cotangent = 9 * 4 * 16 * 16 * 8 * 4; // bytes of the 9 rows of 4 samples at one layer
    const peak = async (depth: number) => (await tf.profile(async () => (await inputJacobian(chain(depth), x, { strategy: 'graph' })).dispose())).peakBytes;
    const shallow = await peak(2);
    const deep = await peak(10);
    // Measured: 41 kB per layer (was 1.25 MB, i.e. ~4 cotangents, before the cotangents were released).
    expect((deep - shallow) / 8).toBeLessThan(cotangent / 2);
    x.dispose();
  });

  it('uses the current weights: after setWeights it still equals tf.grad', async () => {
    const m = functionalZoo();
    const x = randn([2, 8, 8, 3], 9);
    (await inputJacobian(m, x)).dispose();
    const conv = m.layers.find((l) => l.getClassName() === 'Conv2D') as tfl.layers.Layer;
    const w = randn(conv.getWeights()[0]!.shape, 10);
    conv.setWeights([w]);
    const J = await inputJacobian(m, x, { strategy: 'graph' });
    const ref = await onCpu(() => inputJacobian(m, x, { strategy: 'loop' }));
    expectClose(J, ref, { rtol: 1e-5, label: 'after setWeights' });
    // The BatchNorm folded into that conv's backward pass: new γ and moving variance.
    const bn = m.layers.find((l) => l.getClassName() === 'BatchNormalization') as tfl.layers.Layer;
    const [gamma, beta, mean, variance] = bn.getWeights() as tf.Tensor[];
    const newGamma = tf.mul(gamma as tf.Tensor, 3);
    const newVariance = tf.add(variance as tf.Tensor, 2);
    bn.setWeights([newGamma, beta as tf.Tensor, mean as tf.Tensor, newVariance]);
    const J2 = await inputJacobian(m, x, { strategy: 'graph' });
    const ref2 = await onCpu(() => inputJacobian(m, x, { strategy: 'loop' }));
    expectClose(J2, ref2, { rtol: 1e-5, label: 'after setWeights of the BatchNorm' });
    expect(tf.max(tf.abs(tf.sub(J2, J))).dataSync()[0]).toBeGreaterThan(1e-3); // it did change
    tf.dispose([x, w, J, ref, J2, ref2, newGamma, newVariance]);
  });

  it("falls back to tf.grad for a layer it does not cover, and 'graph' says which", async () => {
    const m = tfl.sequential();
    // A custom layer (not covered by the graph; tf.grad differentiates it).
    m.add(tfl.layers.dense({ inputShape: [5], units: 4, activation: 'tanh', kernelInitializer: init(12) }));
    m.add(new CustomTanh({ name: 'custom' }));
    m.add(tfl.layers.dense({ units: 3, kernelInitializer: init(13) }));
    const x = randn([2, 5], 11);
    const plan = planInputJacobian(wrapClassifier(m), 2, {});
    expect(plan.strategy).toBe('softmax-chain');
    expect(plan.graphUnavailable).toMatch(/'custom' \(InfogeoTestCustomTanh, a custom layer\)/);
    await expect(inputJacobian(m, x, { strategy: 'graph' })).rejects.toThrow(UnsupportedModelError);
    await expect(inputJacobian(m, x, { strategy: 'graph' })).rejects.toThrow(/InfogeoTestCustomTanh/);
    const J = await inputJacobian(m, x); // auto: tf.grad
    expect(J.shape).toEqual([2, 3, 5]);
    tf.dispose([x, J]);
  });

  it('does not cover logits read as log-probabilities; a softmax taken as logits is differentiated as it is', async () => {
    const linear = tfl.sequential();
    linear.add(tfl.layers.dense({ inputShape: [4], units: 3, kernelInitializer: init(14) }));
    // modelOutput 'probabilities' without a softmax to skip: the logits are log(max(p, 1e-30)).
    const asProbs = planInputJacobian(wrapClassifier(linear, { modelOutput: 'probabilities' }), 1, { modelOutput: 'probabilities' });
    expect(asProbs.strategy).toBe('softmax-chain');
    expect(asProbs.graphUnavailable).toMatch(/log-probabilities/);
    const soft = tfl.sequential();
    soft.add(tfl.layers.dense({ inputShape: [4], units: 3, activation: 'softmax', kernelInitializer: init(15) }));
    // modelOutput 'logits' on a softmax output: the softmax is part of the function, and the graph
    // differentiates it as it is (the rule of a softmax inside a network), as tf.grad does.
    const asLogits = planInputJacobian(wrapClassifier(soft, { modelOutput: 'logits' }), 1, {});
    expect(asLogits.strategy).toBe('graph');
    const x = randn([2, 4], 16);
    const J = await inputJacobian(soft, x, { modelOutput: 'logits' });
    const ref = await inputJacobian(soft, x, { modelOutput: 'logits', strategy: 'loop' });
    expectClose(J, ref, { rtol: 1e-5, label: 'softmax taken as logits' });
    tf.dispose([x, J, ref]);
  });

  it("never disposes the caller's x, even when a layer saves the model input (a Multiply reading it)", async () => {
    const inp = tfl.input({ shape: [4] });
    const h = tfl.layers.dense({ units: 4, kernelInitializer: init(16) }).apply(inp) as tfl.SymbolicTensor;
    const prod = tfl.layers.multiply().apply([inp, h]) as tfl.SymbolicTensor;
    const out = tfl.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: init(17) }).apply(prod) as tfl.SymbolicTensor;
    const m = tfl.model({ inputs: inp, outputs: out });
    const x = randn([2, 4], 18);
    const u = randn([2, 3], 19);
    const g = await expectNoLeak(() => vjp(m, x, u), (r) => [r]);
    const Jv = await expectNoLeak(() => jvp(m, x, x), (r) => [r]);
    expect(x.isDisposed).toBe(false);
    tf.dispose([x, u, g, Jv]);
  });

  it('covers a broadcasting merge (a squeeze-excitation scale): the graph equals tf.grad per sample on cpu', async () => {
    const inp = tfl.input({ shape: [4, 4, 2] });
    const c = tfl.layers.conv2d({ filters: 2, kernelSize: 3, padding: 'same', activation: 'tanh', kernelInitializer: init(20) }).apply(inp) as tfl.SymbolicTensor;
    const squeeze = tfl.layers.globalAveragePooling2d({}).apply(c) as tfl.SymbolicTensor;
    const scale = tfl.layers.reshape({ targetShape: [1, 1, 2] }).apply(tfl.layers.dense({ units: 2, activation: 'sigmoid', kernelInitializer: init(21) }).apply(squeeze)) as tfl.SymbolicTensor;
    const excited = tfl.layers.multiply().apply([c, scale]) as tfl.SymbolicTensor;
    const out = tfl.layers.dense({ units: 3, kernelInitializer: init(22) }).apply(tfl.layers.flatten().apply(excited)) as tfl.SymbolicTensor;
    const m = tfl.model({ inputs: inp, outputs: out });
    expect(planInputJacobian(wrapClassifier(m), 2, {}).strategy).toBe('graph');
    const x = randn([2, 4, 4, 2], 23);
    const J = await inputJacobian(m, x, { flatten: true, strategy: 'graph' });
    const ref = await onCpu(() => inputJacobian(m, x, { strategy: 'loop', flatten: true }));
    expectClose(J, ref, { rtol: 1e-5 });
    tf.dispose([x, J, ref]);
  });
});

describe('the rule table (registry.ts)', () => {
  it('names exactly the layer classes tfjs-layers registers, each in one family, with a rule or a reason', () => {
    const map = tf.serialization.SerializationMap.getMap().classNameMap as Record<string, [new (...a: never[]) => unknown, unknown]>;
    const registered = Object.keys(map).filter((k) => map[k]![0].prototype instanceof tfl.layers.Layer).sort();
    // A class tfjs-layers adds (a new version) fails here until the table says what to do with it.
    expect([...LAYER_CLASSES].sort()).toEqual(registered);
    const all = Object.values(FAMILIES).flat();
    expect(all.length, 'a class in two families').toBe(new Set(all).size);
    expect(new Set(all)).toEqual(new Set(LAYER_CLASSES));
    for (const c of LAYER_CLASSES) expect(['function', 'string'], c).toContain(typeof RULES[c]);
  });

  it('the Jacobians guide lists the covered layers as the table says (npm run docs writes it)', () => {
    const text = readFileSync(GUIDE, 'utf8');
    expect(withCoverage(text), 'docs/guide/jacobians.md is stale: run npm run docs').toBe(text);
    expect(text).toContain('`RepeatVector`');
  });
});

describe("strategies 'graph', 'loop' and 'tiled' agree on broadcasting merges and channels-first models", () => {
  // 'loop' and 'tiled' are tf.grad of the model as tfjs runs it: with registerGradientKernels (the
  // setup files call it) a channels-first BatchNorm's outputs and a broadcasting Maximum's gradient
  // are right, so the three agree; the zoo checks the graph against an independent twin.
  // (The time-distributed model is not here: its dilated Conv1D is one tfjs cannot differentiate,
  // 'dilation rates greater than 1 are not yet supported in gradients'; the graph can.)
  it.each(ZOO.filter((z) => /squeeze|sequence and vector|channels-first/.test(z.name)).map((z) => [z.name, z] as const))('%s', async (_, z) => {
    const model = z.build();
    const x = randn([2, ...z.inputShape], 77);
    const J = await expectNoLeak(() => inputJacobian(model, x, { strategy: 'graph', flatten: true }), (r) => [r]);
    for (const strategy of ['loop', 'tiled'] as const) {
      const ref = await inputJacobian(model, x, { strategy, flatten: true });
      expectClose(J, ref, { rtol: 1e-5, label: strategy });
      ref.dispose();
    }
    tf.dispose([x, J]);
    model.dispose();
  });
});

describe("average pooling with 'same' padding: the exact Jacobian of a linear model", () => {
  // A model of linear layers only (AveragePooling, Flatten, Dense without activation or bias) has
  // logits f(x) = J x, so f of the n basis tensors gives the columns of J — forward kernels only, an
  // oracle independent of any gradient code (tfjs's own AvgPoolGrad divides a border window by the
  // full window area, wrong with 'same' padding). Windows and strides are chosen so that the border
  // windows are partial and the windows do not tile the input (the rule's other path).
  const cases: { label: string; inputShape: number[]; pool: () => tfl.layers.Layer }[] = [
    { label: '2D 3×3 stride 2 on 5×6', inputShape: [5, 6, 2], pool: () => tfl.layers.averagePooling2d({ poolSize: 3, strides: 2, padding: 'same' }) },
    { label: '2D 2×2 stride 1 on 4×5', inputShape: [4, 5, 1], pool: () => tfl.layers.averagePooling2d({ poolSize: 2, strides: 1, padding: 'same' }) },
    { label: '2D 3×2 strides 1×2 on 5×5', inputShape: [5, 5, 2], pool: () => tfl.layers.averagePooling2d({ poolSize: [3, 2], strides: [1, 2], padding: 'same' }) },
    { label: '1D 3 stride 2 on 7', inputShape: [7, 2], pool: () => tfl.layers.averagePooling1d({ poolSize: 3, strides: 2, padding: 'same' }) },
  ];
  it.each(cases.map((c, i) => [c.label, c, i] as const))('%s: reverse rows (graph and tf.grad with the corrected AvgPoolGrad) and forward mode', async (_label, { inputShape, pool }, i) => {
    const m = tfl.sequential();
    m.add(tfl.layers.inputLayer({ inputShape }));
    m.add(pool());
    m.add(tfl.layers.flatten());
    m.add(tfl.layers.dense({ units: 3, useBias: false, kernelInitializer: init(400 + i) }));
    const n = inputShape.reduce((a, d) => a * d, 1);
    // Column k of J: f(e_k), all n basis tensors in one batch; the model computes them in float32.
    const columns = tf.tidy(() => (m.predict(tf.reshape(tf.eye(n), [n, ...inputShape])) as tf.Tensor).dataSync());
    const J = new Float64Array(3 * n);
    for (let k = 0; k < n; k++) for (let c = 0; c < 3; c++) J[c * n + k] = columns[k * 3 + c] as number;
    const x = randn([2, ...inputShape], 410 + i);
    const v = randn([2, ...inputShape], 420 + i);
    // Sums of at most 9 window entries and a few dozen products: float32 rounding, ~1e-7 relative;
    // the bug (a border window divided by its full area) is off by a factor of up to 9/4 on them.
    for (const strategy of ['graph', 'loop'] as const) {
      const got = await inputJacobian(m, x, { target: 'logits', strategy, flatten: true });
      expect(got.shape).toEqual([2, 3, n]);
      const rows = got.dataSync();
      // The same J at every sample (f is linear).
      expectClose(rows.subarray(0, 3 * n), J, { rtol: 1e-5, label: `${strategy}, sample 0` });
      expectClose(rows.subarray(3 * n), J, { rtol: 1e-5, label: `${strategy}, sample 1` });
      got.dispose();
    }
    // Forward mode: J v = f(v).
    const Jv = await jvp(m, x, v, { target: 'logits' });
    const fv = tf.tidy(() => m.predict(v) as tf.Tensor);
    expectClose(Jv, fv, { rtol: 1e-5, label: 'jvp' });
    expect(planInputJacobian(wrapClassifier(m), 2, { target: 'logits' }).strategy).toBe('graph');
    tf.dispose([x, v, Jv, fv]);
    m.dispose();
  });
});
