/**
 * The models used by the examples, the benchmarks and the tests. Every initializer is seeded, so a
 * model built twice with the same seed has the same weights on any backend.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { uniformGenerator } from '../src/linalg/random.js';

const glorot = (seed: number) => tfl.initializers.glorotUniform({ seed });

/**
 * The CNN of Grementieri & Fioresi (and of the Keras MNIST example): conv32-conv64 (3×3, ReLU),
 * 2×2 max-pool, dense128 (ReLU), dense10 with softmax. 1,199,882 weights on 28×28×1 inputs.
 */
export function mnistCnn(seed = 1, { filters = [32, 64], hidden = 128, inputShape = [28, 28, 1] } = {}): tfl.LayersModel {
  const m = tfl.sequential({ name: 'mnist_cnn' });
  m.add(tfl.layers.conv2d({ name: 'conv1', inputShape, filters: filters[0] as number, kernelSize: 3, activation: 'relu', kernelInitializer: glorot(seed) }));
  m.add(tfl.layers.conv2d({ name: 'conv2', filters: filters[1] as number, kernelSize: 3, activation: 'relu', kernelInitializer: glorot(seed + 1) }));
  m.add(tfl.layers.maxPooling2d({ name: 'pool', poolSize: 2 }));
  m.add(tfl.layers.flatten({ name: 'flatten' }));
  m.add(tfl.layers.dense({ name: 'fc1', units: hidden, activation: 'relu', kernelInitializer: glorot(seed + 2) }));
  m.add(tfl.layers.dense({ name: 'fc2', units: 10, activation: 'softmax', kernelInitializer: glorot(seed + 3) }));
  return m;
}

function convBn(x: tfl.SymbolicTensor, filters: number, kernelSize: number, strides: number, name: string, seed: number): tfl.SymbolicTensor {
  const c = tfl.layers
    .conv2d({ name: `${name}_conv`, filters, kernelSize, strides, padding: 'same', useBias: false, kernelInitializer: tfl.initializers.heNormal({ seed }) })
    .apply(x) as tfl.SymbolicTensor;
  return tfl.layers.batchNormalization({ name: `${name}_bn` }).apply(c) as tfl.SymbolicTensor;
}

/**
 * A small CIFAR ResNet (functional API): a 3×3 conv-BN-ReLU stem, then one residual block per
 * width (conv-BN-ReLU-conv-BN plus a 1×1 conv-BN shortcut when the shape changes, add, ReLU),
 * global average pooling and a dense logits layer (no softmax: the model outputs logits).
 * `widths = [16, 32, 64]` is the ResNet-8-sized model of the benchmarks.
 */
export function cifarResnet(seed = 1, { widths = [16, 32, 64], inputShape = [32, 32, 3] } = {}): tfl.LayersModel {
  const input = tfl.input({ shape: inputShape, name: 'image' });
  let s = seed;
  let x = tfl.layers.reLU({ name: 'stem_relu' }).apply(convBn(input, widths[0] as number, 3, 1, 'stem', s++)) as tfl.SymbolicTensor;
  let channels = widths[0] as number;
  widths.forEach((w, i) => {
    const stride = i === 0 ? 1 : 2;
    const name = `block${i + 1}`;
    let h = tfl.layers.reLU({ name: `${name}_relu1` }).apply(convBn(x, w, 3, stride, `${name}_a`, s++)) as tfl.SymbolicTensor;
    h = convBn(h, w, 3, 1, `${name}_b`, s++);
    const shortcut = stride !== 1 || w !== channels ? convBn(x, w, 1, stride, `${name}_short`, s++) : x;
    x = tfl.layers.reLU({ name: `${name}_relu2` }).apply(tfl.layers.add({ name: `${name}_add` }).apply([h, shortcut])) as tfl.SymbolicTensor;
    channels = w;
  });
  const pooled = tfl.layers.globalAveragePooling2d({ name: 'gap' }).apply(x) as tfl.SymbolicTensor;
  const logits = tfl.layers.dense({ name: 'logits', units: 10, kernelInitializer: glorot(s++) }).apply(pooled) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: logits, name: 'cifar_resnet' });
}

/**
 * A fully connected ReLU net on images: flatten, `depth` hidden layers of `width` units, dense
 * logits (no softmax). `depth` 2 and 4 at width 64 are the relative-stability reference code's
 * DenseNetL2 and DenseNetL4 (Petrini et al.).
 */
export function fullyConnected(inputShape: number[], depth: number, width = 64, seed = 1): tfl.Sequential {
  const m = tfl.sequential({ name: `fc${depth}` });
  m.add(tfl.layers.flatten({ name: 'flatten', inputShape }));
  for (let i = 0; i < depth; i++) m.add(tfl.layers.dense({ name: `hidden${i + 1}`, units: width, activation: 'relu', kernelInitializer: glorot(seed + i) }));
  m.add(tfl.layers.dense({ name: 'logits', units: 10, kernelInitializer: glorot(seed + depth) }));
  return m;
}

/**
 * LeNet-5 (LeCun et al. 1998) with ReLU and max pooling, as in the reference code: conv6 5×5
 * ('same' padding on 28×28 inputs, 'valid' on 32×32, so both reach 5×5×16), 2×2 max pool,
 * conv16 5×5, 2×2 max pool, dense 120, dense 84, dense logits (no softmax).
 */
export function lenet(inputShape: number[], seed = 1): tfl.Sequential {
  const m = tfl.sequential({ name: 'lenet' });
  const padding = inputShape[0] === 28 ? 'same' : 'valid';
  m.add(tfl.layers.conv2d({ name: 'conv1', inputShape, filters: 6, kernelSize: 5, padding, activation: 'relu', kernelInitializer: glorot(seed) }));
  m.add(tfl.layers.maxPooling2d({ name: 'pool1', poolSize: 2 }));
  m.add(tfl.layers.conv2d({ name: 'conv2', filters: 16, kernelSize: 5, activation: 'relu', kernelInitializer: glorot(seed + 1) }));
  m.add(tfl.layers.maxPooling2d({ name: 'pool2', poolSize: 2 }));
  m.add(tfl.layers.flatten({ name: 'flatten' }));
  m.add(tfl.layers.dense({ name: 'fc1', units: 120, activation: 'relu', kernelInitializer: glorot(seed + 2) }));
  m.add(tfl.layers.dense({ name: 'fc2', units: 84, activation: 'relu', kernelInitializer: glorot(seed + 3) }));
  m.add(tfl.layers.dense({ name: 'logits', units: 10, kernelInitializer: glorot(seed + 4) }));
  return m;
}

/** A dense net on vectors: `inputDim` → tanh hidden layers → `classes` logits (no softmax). */
export function denseNet(inputDim: number, hidden: number[], classes: number, seed = 1): tfl.Sequential {
  const m = tfl.sequential({ name: 'dense_net' });
  hidden.forEach((units, i) =>
    m.add(tfl.layers.dense({ name: `hidden${i + 1}`, units, activation: 'tanh', kernelInitializer: glorot(seed + i), ...(i === 0 ? { inputShape: [inputDim] } : {}) })),
  );
  m.add(tfl.layers.dense({ name: 'logits', units: classes, kernelInitializer: glorot(seed + hidden.length), ...(hidden.length === 0 ? { inputShape: [inputDim] } : {}) }));
  return m;
}

/** Gives a model's BatchNorm layers non-trivial moving statistics, as after training (seeded). */
export function randomizeBatchNorm(model: tfl.LayersModel, seed = 7): void {
  let s = seed;
  for (const layer of model.layers) {
    if (layer.getClassName() !== 'BatchNormalization') continue;
    const values = layer.getWeights().map((w, i) =>
      tf.tidy(() => {
        // gamma, beta, moving mean, moving variance
        const r = tf.randomUniform(w.shape, 0, 1, 'float32', s++);
        return i === 3 ? tf.add(0.5, r) : i === 0 ? tf.add(0.75, tf.mul(0.5, r)) : tf.sub(tf.mul(0.4, r), 0.2);
      }),
    );
    layer.setWeights(values);
    tf.dispose(values);
  }
}

/**
 * The MNIST examples' training recipe (the model compiled with SGD, lr 0.01, by the caller): one
 * pass over `xs` in its order, in batches of 60 (no shuffling: tfjs shuffles with Math.random, and
 * the runs must be reproducible). `onBatchEnd(step, logs)` runs after each step (1-based) and is
 * awaited, so it may save or measure the model.
 */
export async function fitInOrder(model: tfl.LayersModel, xs: tf.Tensor, ys: tf.Tensor, onBatchEnd: (step: number, logs?: tfl.Logs) => Promise<void> | void): Promise<void> {
  await model.fit(xs, ys, {
    batchSize: 60,
    epochs: 1,
    shuffle: false,
    callbacks: [new tfl.CustomCallback({ onBatchEnd: async (batch, logs) => onBatchEnd(batch + 1, logs) })],
  });
}

/** 0 … n − 1 in a seeded random order (Fisher–Yates): the epoch orders of reproducible training. */
export function shuffled(n: number, seed: number): Int32Array {
  const u = uniformGenerator(seed);
  const order = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.min(i, Math.floor(u() * (i + 1)));
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  return order;
}
