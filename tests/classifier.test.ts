/** The model adapter: softmax detection, logits, features, and every typed error. */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';
import {
  datasetFisher,
  distributionProjector,
  horizontalPath,
  inputJacobian,
  InfogeoError,
  jvp,
  kernelPath,
  LayerNotFoundError,
  localDataMatrix,
  localFisher,
  orthogonalPath,
  planeThroughPoints,
  pullbackMetric,
  scalarCurvature,
  scanPlane,
  secondDerivative,
  ShapeError,
  tangentPath,
  UnsupportedModelError,
  ValueError,
  vjp,
  volumeElement,
  weightJacobian,
  wrapClassifier,
} from '../src/index.js';
import { cifarResnet, denseNet } from '../examples/models.js';
import { expectClose, randn, ReadBackLayer, withoutKernel } from './helpers.js';

const seed = (s: number) => tfl.initializers.glorotUniform({ seed: s });

function denseSoftmax(): tfl.Sequential {
  const m = tfl.sequential();
  m.add(tfl.layers.dense({ inputShape: [5], units: 8, activation: 'tanh', kernelInitializer: seed(1) }));
  m.add(tfl.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: seed(2), biasInitializer: 'ones' }));
  return m;
}

function headThen(layer: tfl.layers.Layer): tfl.LayersModel {
  const input = tfl.input({ shape: [5] });
  const h = tfl.layers.dense({ units: 4, kernelInitializer: seed(3) }).apply(input) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: layer.apply(h) as tfl.SymbolicTensor });
}

describe('wrapClassifier: finding the logits', () => {
  const x = randn([3, 5], 11);

  it('a Dense layer with a softmax activation: uses its pre-activation', () => {
    const m = denseSoftmax();
    const clf = wrapClassifier(m);
    expect(clf.logitsSource).toBe('pre-softmax');
    expect(clf.numClasses).toBe(4);
    expect(clf.inputShape).toEqual([5]);
    const p = m.predict(x) as tf.Tensor;
    expectClose(tf.softmax(clf.logits(x)), p, { rtol: 1e-6 });
    expectClose(clf.logProbs(x), tf.log(p), { rtol: 1e-6 });
    // the logits are not the probabilities
    expect(tf.max(tf.abs(tf.sub(clf.logits(x), p))).dataSync()[0]).toBeGreaterThan(0.1);
  });

  it('a final Softmax layer and a final Activation("softmax") layer are skipped', () => {
    for (const last of [tfl.layers.softmax(), tfl.layers.activation({ activation: 'softmax' })]) {
      const m = headThen(last);
      const clf = wrapClassifier(m);
      expect(clf.logitsSource).toBe('pre-softmax');
      expectClose(clf.probs(x), m.predict(x) as tf.Tensor, { rtol: 1e-6 });
    }
  });

  it('a logits model is used as it is, and modelOutput "logits" keeps a softmax output', () => {
    const m = denseNet(5, [6], 3);
    const clf = wrapClassifier(m);
    expect(clf.logitsSource).toBe('output');
    expectClose(clf.logits(x), m.predict(x) as tf.Tensor, { rtol: 0 });
    const forced = wrapClassifier(denseSoftmax(), { modelOutput: 'logits' });
    expect(forced.logitsSource).toBe('output');
  });

  it('modelOutput "probabilities" without a detectable softmax uses log p', () => {
    const m = denseSoftmax();
    m.add(tfl.layers.reshape({ targetShape: [4] })); // hides the softmax behind another layer
    expect(wrapClassifier(m).logitsSource).toBe('output');
    const clf = wrapClassifier(m, { modelOutput: 'probabilities' });
    expect(clf.logitsSource).toBe('log-probabilities');
    expectClose(clf.logProbs(x), tf.log(m.predict(x) as tf.Tensor), { rtol: 1e-5 });
  });

  it('another layer with a softmax activation (here a SimpleRNN) is read as probabilities under "auto"', () => {
    const input = tfl.input({ shape: [4, 2] });
    const rnn = tfl.layers.simpleRNN({ units: 3, activation: 'softmax', kernelInitializer: seed(5), recurrentInitializer: 'glorotUniform' });
    const m = tfl.model({ inputs: input, outputs: rnn.apply(input) as tfl.SymbolicTensor });
    const clf = wrapClassifier(m);
    expect(clf.logitsSource).toBe('log-probabilities');
    const xs = randn([2, 4, 2], 13);
    expectClose(clf.logProbs(xs), tf.log(m.predict(xs) as tf.Tensor), { rtol: 1e-5 });
    expect(wrapClassifier(m, { modelOutput: 'logits' }).logitsSource).toBe('output');
  });

  it('features(layer) is the flattened output of that layer', () => {
    const m = denseSoftmax();
    const clf = wrapClassifier(m);
    const name = m.layers[0]!.name;
    const sub = tfl.model({ inputs: m.inputs, outputs: m.layers[0]!.output as tfl.SymbolicTensor });
    expectClose(clf.features(name)(x), sub.predict(x) as tf.Tensor, { rtol: 0 });
    expect(clf.target({ layer: name }).width).toBe(8);
  });

  it('creating the functions allocates no tensors', () => {
    const m = denseSoftmax();
    m.predict(x); // build everything first
    const before = tf.memory().numTensors;
    const clf = wrapClassifier(m);
    clf.features(m.layers[0]!.name);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('typed errors', () => {
  const x = randn([2, 5], 12);

  it('several inputs, several outputs, a non-[B, C] output, C < 2', () => {
    const a = tfl.input({ shape: [5] });
    const b = tfl.input({ shape: [5] });
    const twoIn = tfl.model({ inputs: [a, b], outputs: tfl.layers.dense({ units: 3 }).apply(tfl.layers.concatenate().apply([a, b])) as tfl.SymbolicTensor });
    const twoOut = tfl.model({ inputs: a, outputs: [tfl.layers.dense({ units: 3 }).apply(a), tfl.layers.dense({ units: 3 }).apply(a)] as tfl.SymbolicTensor[] });
    const img = tfl.input({ shape: [6, 6, 1] });
    const spatial = tfl.model({ inputs: img, outputs: tfl.layers.conv2d({ filters: 3, kernelSize: 3 }).apply(img) as tfl.SymbolicTensor });
    const one = denseNet(5, [], 1);
    expect(() => wrapClassifier(twoIn)).toThrow(/2 inputs/);
    expect(() => wrapClassifier(twoOut)).toThrow(/2 outputs/);
    expect(() => wrapClassifier(spatial)).toThrow(/must be \[B, C\]/);
    expect(() => wrapClassifier(one)).toThrow(/C >= 2/);
    for (const m of [twoIn, twoOut, spatial, one]) expect(() => wrapClassifier(m)).toThrow(UnsupportedModelError);
  });

  it('input batch of the wrong rank, shape or dtype, or not a tensor', async () => {
    const m = denseNet(5, [4], 3);
    await expect(inputJacobian(m, randn([5], 1))).rejects.toThrow(ShapeError);
    await expect(inputJacobian(m, randn([2, 6], 1))).rejects.toThrow(/shape \[null,5\]/);
    await expect(inputJacobian(m, tf.zeros([0, 5]))).rejects.toThrow(ShapeError);
    await expect(inputJacobian(m, tf.ones([2, 5], 'int32'))).rejects.toThrow(/float32/);
    await expect(inputJacobian(m, [[1, 2, 3, 4, 5]] as unknown as tf.Tensor)).rejects.toThrow(ShapeError);
  });

  it('non-finite inputs', async () => {
    const m = denseNet(5, [4], 3);
    await expect(inputJacobian(m, tf.tensor2d([[1, 2, NaN, 4, 5]]))).rejects.toThrow(ValueError);
    await expect(inputJacobian(m, tf.tensor2d([[1, 2, Infinity, 4, 5]]))).rejects.toThrow(/NaN or Infinity/);
  });

  it('an unknown layer name lists the valid ones', async () => {
    const m = denseNet(5, [4], 3);
    const err = await inputJacobian(m, x, { target: { layer: 'nope' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LayerNotFoundError);
    expect(err).toBeInstanceOf(ValueError);
    expect((err as LayerNotFoundError).validNames).toEqual(['hidden1', 'logits']);
    expect((err as Error).message).toContain("'hidden1', 'logits'");
  });

  it('bad options', async () => {
    const m = denseNet(5, [4], 3);
    await expect(inputJacobian(m, x, { strategy: 'magic' as never })).rejects.toThrow(ValueError);
    await expect(inputJacobian(m, x, { strategy: 'softmax-chain', target: 'logits' })).rejects.toThrow(/only applies/);
    await expect(inputJacobian(m, x, { memoryBudgetMB: 0 })).rejects.toThrow(/memoryBudgetMB/);
    await expect(inputJacobian(m, x, { modelOutput: 'softmax' as never })).rejects.toThrow(ValueError);
    await expect(inputJacobian(m, x, { target: 'probs' as never })).rejects.toThrow(ValueError);
  });

  it('a layer that the backend cannot differentiate is named, with the fix', async () => {
    const m = cifarResnet(1, { widths: [4], inputShape: [8, 8, 3] });
    const xi = randn([1, 8, 8, 3], 3);
    const err = await withoutKernel('Conv2DBackpropFilter', () => inputJacobian(m, xi, { strategy: 'loop' }).catch((e: unknown) => e));
    expect(err).toBeInstanceOf(UnsupportedModelError);
    expect(err).toBeInstanceOf(InfogeoError);
    expect((err as Error).message).toMatch(/layer 'stem_conv' \(Conv2D\).*Conv2DBackpropFilter.*registerGradientKernels/);
    // infogeo's own reverse mode (the default) needs no gradient kernel at all.
    const J = await withoutKernel('Conv2DBackpropFilter', () => withoutKernel('Conv2DBackpropInput', () => inputJacobian(m, xi)));
    expect(J.shape).toEqual([1, 10, 8, 8, 3]);
    tf.dispose([J, xi]);
  });

  it('a kernel that fails inside the backward pass is reported as unsupported, without leaks', async () => {
    const input = tfl.input({ shape: [6, 6, 1] });
    const pooled = tfl.layers.maxPooling2d({ poolSize: 2 }).apply(input) as tfl.SymbolicTensor;
    const m = tfl.model({ inputs: input, outputs: tfl.layers.dense({ units: 3 }).apply(tfl.layers.flatten().apply(pooled)) as tfl.SymbolicTensor });
    const xi = randn([2, 6, 6, 1], 4);
    (await inputJacobian(m, xi)).dispose(); // builds the model's weights first
    const before = tf.memory().numTensors;
    const err = await withoutKernel('MaxPoolGrad', () => inputJacobian(m, xi, { strategy: 'loop' }).catch((e: unknown) => e));
    expect(err).toBeInstanceOf(UnsupportedModelError);
    expect((err as Error).message).toMatch(/needs kernel 'MaxPoolGrad'/);
    expect(tf.memory().numTensors).toBe(before);
    xi.dispose();
  });

  it("depthwise convolutions without backprop kernels are refused by layer name under tf.grad (the graph needs none)", async () => {
    const input = tfl.input({ shape: [6, 6, 2] });
    const h = tfl.layers.depthwiseConv2d({ name: 'dw', kernelSize: 3 }).apply(input) as tfl.SymbolicTensor;
    const out = tfl.layers.dense({ units: 3 }).apply(tfl.layers.flatten().apply(h)) as tfl.SymbolicTensor;
    const m = tfl.model({ inputs: input, outputs: out });
    const x = randn([1, 6, 6, 2], 1);
    const err = await withoutKernel('DepthwiseConv2dNativeBackpropInput', () => inputJacobian(m, x, { strategy: 'loop' }).catch((e: unknown) => e));
    expect((err as Error).message).toMatch(/layer 'dw' \(DepthwiseConv2D\).*DepthwiseConv2dNativeBackpropInput/);
    // The way out is infogeo's own kernel (registerGradientKernels adds it where tfjs has none), not another backend.
    expect((err as Error).message).toMatch(/Call registerGradientKernels\(\) .* it adds a fast, exact DepthwiseConv2dNativeBackpropInput/);
    const J = await withoutKernel('DepthwiseConv2dNativeBackpropInput', () => inputJacobian(m, x));
    expect(J.shape).toEqual([1, 3, 6, 6, 2]);
    tf.dispose([x, J]);
  });
});

describe('a model that reads token ids through an Embedding', () => {
  const textModel = () => {
    const m = tfl.sequential();
    m.add(tfl.layers.embedding({ inputDim: 20, outputDim: 4, inputLength: 5, embeddingsInitializer: tfl.initializers.glorotNormal({ seed: 1 }) }));
    m.add(tfl.layers.flatten());
    m.add(tfl.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: tfl.initializers.glorotNormal({ seed: 2 }) }));
    return m;
  };

  it('input-space functions refuse it with an UnsupportedModelError naming the Embedding (tfjs threw a GatherV2 error); int32 ids get a ShapeError that says why', async () => {
    const m = textModel();
    const ids = tf.tensor2d([[1, 2, 3, 4, 5], [6, 7, 8, 9, 0]], [2, 5], 'float32');
    const calls: [string, () => Promise<unknown>][] = [
      ['inputJacobian', () => inputJacobian(m, ids)],
      ['localDataMatrix', () => localDataMatrix(m, ids)],
    ];
    for (const [fn, call] of calls) {
      const err = await call().then(() => undefined, (e: unknown) => e);
      expect(err, fn).toBeInstanceOf(UnsupportedModelError);
      expect((err as Error).message).toMatch(new RegExp(`^${fn}: layer '.*' \\(Embedding\\) reads integer token ids.*splitAt\\(model, '.*'\\)`));
    }
    const int = tf.cast(ids, 'int32');
    const err = await inputJacobian(m, int).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ShapeError);
    expect((err as Error).message).toMatch(/^inputJacobian: argument 'x' is int32 and the model's layer .* \(Embedding\) reads integer token ids/);
    // Weight space needs no input geometry: the ids as float32 go through on cpu (tf.variableGrads);
    // wasm has no UnsortedSegmentSum, the Embedding's gradient, and says so.
    if (tf.getBackend() === 'wasm') await expect(weightJacobian(m, ids, { target: 'logits' })).rejects.toThrow(/UnsortedSegmentSum/);
    else {
      const { jacobian } = await weightJacobian(m, ids, { target: 'logits' });
      expect(jacobian.shape[0]).toBe(2);
      jacobian.dispose();
    }
    tf.dispose([ids, int]);
    m.dispose();
  });
});

describe('a custom layer that leaves the tensor graph (reads its input back with dataSync)', () => {
  // conv → flatten → dense → ReadBack → dense(softmax): the weights and the input sit before the
  // layer, so no gradient path reaches them through tfjs's tape (the tf.grad fallback: infogeo's
  // graph covers no custom layer).
  const model = () => {
    const m = tfl.sequential();
    m.add(tfl.layers.conv2d({ inputShape: [6, 6, 1], filters: 2, kernelSize: 3, activation: 'tanh', kernelInitializer: seed(4), name: 'conv' }));
    m.add(tfl.layers.flatten({ name: 'flat' }));
    m.add(tfl.layers.dense({ units: 5, activation: 'tanh', kernelInitializer: seed(5), name: 'h1' }));
    m.add(new ReadBackLayer({ name: 'readback' }));
    m.add(tfl.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: seed(6), name: 'out' }));
    return m;
  };

  it('every function that differentiates the model refuses it with an UnsupportedModelError naming the layer and why (tfjs threw an untyped Error), and leaks nothing', async () => {
    const m = model();
    const x = randn([2, 6, 6, 1], 1);
    const u = randn([2, 6, 6, 1], 2);
    const v = randn([2, 6, 6, 1], 3);
    const cot = randn([2, 3], 4);
    const pts = randn([3, 6, 6, 1], 5);
    const plane = planeThroughPoints(pts);
    // The tf.grad fallback says why; the second-order functions need infogeo's graph, which covers no custom layer.
    const why = /: tfjs found no gradient path from the output back to the (input|weights\b.*) through layer 'readback' \(InfogeoTestReadBack, a custom layer\): its call\(\) leaves the tensor graph .*dataSync.* rewrite its call\(\) with tf ops only, or give it a gradient with tf.customGrad/;
    const uncovered = /: .*second derivatives .*infogeo's own graph, which does not cover layer 'readback' \(InfogeoTestReadBack, a custom layer\)/;
    const calls: [string, RegExp, () => Promise<unknown>][] = [
      ['inputJacobian', why, () => inputJacobian(m, x)],
      ['inputJacobian', why, () => inputJacobian(m, x, { strategy: 'loop' })],
      ['inputJacobian', why, () => inputJacobian(m, x, { strategy: 'tiled', target: 'logits' })],
      ['inputJacobian', why, () => inputJacobian(m, x, { strategy: 'softmax-chain' })],
      ['weightJacobian', why, () => weightJacobian(m, x)],
      ['vjp', why, () => vjp(m, x, cot)],
      ['jvp', why, () => jvp(m, x, u)],
      ['secondDerivative', uncovered, () => secondDerivative(m, x, u, v)],
      ['localDataMatrix', why, () => localDataMatrix(m, x)],
      ['distributionProjector', why, () => distributionProjector(m, x)],
      ['localFisher', why, () => localFisher(m, x)],
      ['datasetFisher', why, () => datasetFisher(m, x)],
      ['horizontalPath', why, () => horizontalPath(m, x, u, { maxSteps: 2 })],
      ['orthogonalPath', why, () => orthogonalPath(m, x, { maxSteps: 2 })],
      ['kernelPath', why, () => kernelPath(m, x, u, { maxSteps: 2 })],
      ['tangentPath', why, () => tangentPath(m, x, { maxSteps: 2 })],
      ['pullbackMetric', why, () => pullbackMetric(m, x, { target: 'logits' })],
      ['volumeElement', why, () => volumeElement(m, x, { mode: 'effective', k: 2 })],
      ['scalarCurvature', uncovered, () => scalarCurvature(m, x, { target: 'logProbs', subspace: u })],
      ['scanPlane', why, () => scanPlane(m, plane, { steps: 2, volume: 'plane' })],
    ];
    for (const [fn, message, call] of calls) {
      const before = tf.memory().numTensors;
      const err = await call().then(() => undefined, (e: unknown) => e);
      expect(err, fn).toBeInstanceOf(UnsupportedModelError);
      expect((err as Error).message, fn).toMatch(new RegExp(`^${fn}${message.source}`));
      expect(tf.memory().numTensors, `${fn}: tensors left behind`).toBe(before);
    }
    // What needs no gradient through the layer still runs: the weights after it (tf.variableGrads
    // reaches them), central differences (no backward pass).
    const { jacobian } = await weightJacobian(m, x, { layers: ['out'] });
    expect(jacobian.shape).toEqual([2, 3, 5 * 3 + 3]);
    const Jv = await jvp(m, x, u, { strategy: 'central' });
    expect(Jv.shape).toEqual([2, 3]);
    tf.dispose([x, u, v, cot, pts, jacobian, Jv]);
    plane.dispose();
    m.dispose();
  });
});
