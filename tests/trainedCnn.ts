/** A small CNN trained (deterministically) on 512 real MNIST images, and a few test images. */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { MNIST_MEAN, MNIST_STD } from '../examples/data.js';
import { mnistCnn } from '../examples/models.js';
import { loadMnist } from '../src/data/index.js';
import { MNIST_DIR } from './realData.js';

export async function trainSmallCnn(testCount: number): Promise<{ model: tfl.LayersModel; x: tf.Tensor; labels: Uint8Array; trainAcc: number }> {
  if (MNIST_DIR === undefined) throw new Error('trainSmallCnn needs MNIST (npm run data -- mnist)');
  const train = loadMnist('train', { dir: MNIST_DIR, limit: 512 });
  const test = loadMnist('test', { dir: MNIST_DIR, limit: testCount });
  const norm = (px: Float32Array, k: number) => tf.tidy(() => tf.div(tf.sub(tf.tensor4d(px, [k, 28, 28, 1]), MNIST_MEAN), MNIST_STD));
  const model = mnistCnn(7, { filters: [8, 16], hidden: 32 });
  model.compile({ optimizer: tf.train.adam(2e-3), loss: 'sparseCategoricalCrossentropy', metrics: ['accuracy'] });
  const xs = norm(train.images, train.count);
  const ys = tf.tensor1d(Array.from(train.labels), 'float32');
  const h = await model.fit(xs, ys, { epochs: 4, batchSize: 64, verbose: 0, shuffle: false }); // deterministic
  tf.dispose([xs, ys]);
  return { model, x: norm(test.images, test.count), labels: test.labels, trainAcc: h.history['acc']!.at(-1) as number };
}
