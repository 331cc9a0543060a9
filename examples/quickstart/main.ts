/**
 * Quick start: train the paper's MNIST CNN for one short epoch on the wasm backend, then compute
 * the input Jacobian of log p for one test digit of each class and draw it.
 *
 *   npm run example:jacobians                # MNIST from ../shared/datasets or `npm run data -- mnist`
 *   npm run example:jacobians -- --data DIR  # MNIST from DIR
 *
 * Writes examples/quickstart/out/jacobian-grid.png: one row per digit; the first column is the
 * digit, then ∇ₓ log p_c for c = 0…9 (red: increasing the pixel raises log p_c, blue: lowers it);
 * the predicted class is framed in green.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inputJacobian, registerGradientKernels } from '../../src/index.js';
import { useWasmBackend } from '../../src/backends/wasm.js';
import { loadMnist } from '../../src/data/index.js';
import { exitOnError } from '../cli.js';
import { exampleDataset, normaliseMnist } from '../data.js';
import { mnistCnn } from '../models.js';
import { Canvas, diverging, grey } from '../png.js';
import { progressBar } from '../progress.js';

exitOnError();
const args = process.argv.slice(2);
const dataDir = args.includes('--data') ? args[args.indexOf('--data') + 1] : undefined;
const TRAIN = 6000;
const BATCH = 64;
const out = join(dirname(fileURLToPath(import.meta.url)), 'out', 'jacobian-grid.png');

tf.env().set('PROD', true); // no "install tfjs-node" banner
await useWasmBackend();
registerGradientKernels();
console.log(`backend: ${tf.getBackend()}`);

const mnist = exampleDataset('mnist', dataDir);
const train = loadMnist('train', { dir: mnist, limit: TRAIN });
const test = loadMnist('test', { dir: mnist, limit: 1000 });

// 1. Train (one epoch over 6,000 images; Adam, so that a minute is enough for ~93 % accuracy).
const model = mnistCnn(1);
model.compile({ optimizer: tf.train.adam(1e-3), loss: 'sparseCategoricalCrossentropy', metrics: ['accuracy'] });
const xs = normaliseMnist(train.images, train.count);
const ys = tf.tensor1d(Array.from(train.labels), 'float32');
const bar = progressBar('training', Math.ceil(TRAIN / BATCH));
const t0 = performance.now();
await model.fit(xs, ys, {
  batchSize: BATCH,
  epochs: 1,
  shuffle: false, // MNIST's training order is already mixed; tfjs shuffles with Math.random, and the figure should be reproducible
  callbacks: [
    new tfl.CustomCallback({
      onBatchEnd: async (batch, logs) => bar.update(batch + 1, `loss ${logs?.['loss']?.toFixed(3)} acc ${logs?.['acc']?.toFixed(3)}`),
    }),
  ],
});
tf.dispose([xs, ys]);
const xt = normaliseMnist(test.images, test.count);
const acc = tf.tidy(() => {
  const pred = tf.argMax(model.predict(xt) as tf.Tensor, 1);
  return tf.mean(tf.cast(tf.equal(pred, tf.tensor1d(Array.from(test.labels), 'int32')), 'float32')).dataSync()[0] as number;
});
console.log(`trained in ${((performance.now() - t0) / 1000).toFixed(1)} s; test accuracy on 1,000 images: ${(100 * acc).toFixed(1)} %`);

// 2. One test digit per class, and the Jacobian of log p with respect to the input.
const picks = Array.from({ length: 10 }, (_, c) => test.labels.indexOf(c));
const x = tf.gather(xt, picks);
const t1 = performance.now();
const J = await inputJacobian(model, x); // [10, 10, 28, 28, 1]: yours to dispose
const secs = (performance.now() - t1) / 1000;
console.log(`inputJacobian: ${J.shape.join('×')} in ${secs.toFixed(2)} s (${(100 / secs).toFixed(0)} rows/s)`);

const p = tf.tidy(() => model.predict(x) as tf.Tensor).arraySync() as number[][];
const Jv = J.dataSync();
// Σ_c p_c ∇log p_c = 0 for every image: the Jacobian has rank ≤ C − 1.
let maxResidual = 0;
let maxEntry = 0;
for (let i = 0; i < 10; i++)
  for (let k = 0; k < 784; k++) {
    let s = 0;
    for (let c = 0; c < 10; c++) s += (p[i]![c] as number) * (Jv[(i * 10 + c) * 784 + k] as number);
    maxResidual = Math.max(maxResidual, Math.abs(s));
  }
for (const v of Jv) maxEntry = Math.max(maxEntry, Math.abs(v));
console.log(`check: max |Σ_c p_c ∇log p_c| = ${maxResidual.toExponential(1)} (largest entry ${maxEntry.toExponential(1)})`);

// 3. The picture.
const S = 3;
const cell = 28 * S + 8;
const canvas = new Canvas(11 * cell + 8, 10 * cell + 8);
for (let i = 0; i < 10; i++) {
  const y0 = 8 + i * cell;
  canvas.image(test.images.subarray(picks[i]! * 784, (picks[i]! + 1) * 784), 28, 28, 8, y0, S, grey);
  const row = Jv.subarray(i * 7840, (i + 1) * 7840);
  let m = 0;
  for (const v of row) m = Math.max(m, Math.abs(v));
  const pred = p[i]!.indexOf(Math.max(...p[i]!));
  for (let c = 0; c < 10; c++) {
    const x0 = 8 + (c + 1) * cell;
    canvas.image(row.subarray(c * 784, (c + 1) * 784), 28, 28, x0, y0, S, (v) => diverging(v / m));
    if (c === pred) canvas.frame(x0, y0, 28 * S, 28 * S, [0, 170, 0]);
  }
  console.log(`digit ${i}: predicted ${pred} with p = ${(p[i]![pred] as number).toFixed(3)}`);
}
canvas.save(out);
console.log(`wrote ${out}`);
tf.dispose([x, xt, J]);
