/**
 * Petrini, Favero, Geiger & Wyart on real CIFAR-10 with infogeo: a small ResNet (BatchNorm,
 * shortcuts) trained on the wasm backend, its relative stability to diffeomorphisms R_f = D_f/G_f
 * at initialisation and after training, a gallery of deformations, the plane through three test
 * images (class, entropy, volume element) and a horizontal path between two test images.
 *
 *   npm run example:cifar                  # ~12 min of training the first time, then reuses the checkpoint
 *   npm run example:cifar -- --quick       # a 2-minute smoke run
 *   npm run example:cifar -- --data DIR    # CIFAR-10 from DIR; --retrain ignores the checkpoint
 *
 * Writes SVG and PNG figures and summary.json to examples/cifar-resnet/out/.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  deform,
  horizontalPath,
  matchedNoise,
  planeThroughPoints,
  registerGradientKernels,
  relativeStability,
  sampleDisplacementField,
  scanPlane,
  temperatureForDisplacement,
  temperatureGrid,
} from '../../src/index.js';
import type { RelativeStabilityResult } from '../../src/index.js';
import { useWasmBackend } from '../../src/backends/wasm.js';
import { hasModel, loadModel, saveModel } from '../checkpoint.js';
import { CIFAR10_CLASSES, loadCifar10 } from '../../src/data/index.js';
import { CIFAR10_MEAN, CIFAR10_STD, exampleDataset, normaliseCifar10 } from '../data.js';
import { cifarResnet, shuffled } from '../models.js';
import { exampleArgs } from '../cli.js';
import { planeFigure } from '../plane-figure.js';
import { progressBar } from '../progress.js';
import { imageStrip, logLogChart, rgbDataUri } from '../svg.js';

const { quick, retrain, dataDir, out: OUT, checkpoint: CKPT } = exampleArgs(import.meta.url, 'resnet8');

// Training: Adam (lr 1e-3), batch 64, random horizontal flips, on the 10,000 images of training
// batch 1: 4 epochs (~12 min on 2 cores). The paper's nets: SGD with cosine schedule, 250 epochs on
// 50,000 images; this is a far shorter run on a fifth of the data.
const EPOCHS = quick ? 1 : 4;
const TRAIN = quick ? 640 : 10000;
const BATCH = 64;
const PROBE = quick ? 50 : 200; // probing images for R_f (the reference: 500)
const TEMPS = quick ? 4 : 12; // temperatures in the sweep (the reference: 30)
const PLANE_STEPS = quick ? 10 : 40;
const PATH_STEPS = quick ? 30 : 400;

tf.env().set('PROD', true);
await useWasmBackend();
registerGradientKernels();

const cifar = exampleDataset('cifar10', dataDir);
const train = loadCifar10('train', { dir: cifar, limit: TRAIN });
const test = loadCifar10('test', { dir: cifar, limit: 1000 });
const xTest = normaliseCifar10(test.images, test.count);
const probe = tf.slice(xTest, 0, PROBE);
const c = 3;
const temperatures = temperatureGrid(32, c, { count: TEMPS });

async function stability(model: tfl.LayersModel, label: string): Promise<RelativeStabilityResult> {
  const bar = progressBar(`R_f ${label}`, TEMPS);
  return relativeStability(model, probe, { c, temperatures, onProgress: (p) => bar.update(p.done, '') });
}
const accuracy = (model: tfl.LayersModel) =>
  tf.tidy(() => {
    const pred = tf.argMax(model.predict(xTest) as tf.Tensor, 1);
    return tf.mean(tf.cast(tf.equal(pred, tf.tensor1d(Array.from(test.labels), 'int32')), 'float32')).dataSync()[0] as number;
  });

// 1. R_f at initialisation, then train (or reuse the checkpoint), then R_f again.
let model = cifarResnet(1);
const atInit = await stability(model, 'at initialisation');
const summary: Record<string, unknown> = { quick, epochs: EPOCHS, trainImages: TRAIN, testAccuracyAtInit: accuracy(model) };
let trainSeconds: number;
if (hasModel(CKPT) && !retrain) {
  model = await loadModel(CKPT);
  trainSeconds = JSON.parse(readFileSync(join(CKPT, 'train.json'), 'utf8')).trainSeconds;
  console.log(`reusing the checkpoint in ${CKPT} (--retrain to train again)`);
} else {
  const t0 = performance.now();
  const optimizer = tf.train.adam(1e-3);
  const xs = normaliseCifar10(train.images, train.count);
  const ys = tf.oneHot(tf.tensor1d(Array.from(train.labels), 'int32'), 10);
  const steps = Math.floor(train.count / BATCH);
  const bar = progressBar('training', EPOCHS * steps);
  let seed = 1;
  for (let epoch = 0; epoch < EPOCHS; epoch++) {
    const order = shuffled(train.count, 1000 + epoch); // seeded: a rerun trains the same network
    let [lossSum, accSum] = [0, 0];
    for (let s = 0; s < steps; s++) {
      const idx = tf.tensor1d(Int32Array.from(order.subarray(s * BATCH, (s + 1) * BATCH)), 'int32');
      const [xb, yb] = tf.tidy(() => {
        const x = tf.gather(xs, idx);
        const flip = tf.less(tf.randomUniform([BATCH, 1, 1, 1], 0, 1, 'float32', seed++), 0.5);
        return [tf.where(tf.broadcastTo(flip, x.shape), tf.reverse(x, 2), x), tf.gather(ys, idx)];
      });
      let logits: tf.Tensor | undefined;
      const loss = optimizer.minimize(() => {
        const out = model.apply(xb!, { training: true }) as tf.Tensor;
        logits = tf.keep(out);
        return tf.losses.softmaxCrossEntropy(yb!, out) as tf.Scalar;
      }, true);
      lossSum += (await loss!.data())[0] as number;
      accSum += tf.tidy(() => tf.mean(tf.cast(tf.equal(tf.argMax(logits!, 1), tf.argMax(yb!, 1)), 'float32')).dataSync()[0] as number);
      tf.dispose([idx, xb!, yb!, loss!, logits!]);
      bar.update(epoch * steps + s + 1, `epoch ${epoch + 1} loss ${(lossSum / (s + 1)).toFixed(3)} acc ${(accSum / (s + 1)).toFixed(3)}`);
    }
  }
  tf.dispose([xs, ys]);
  trainSeconds = (performance.now() - t0) / 1000;
  await saveModel(model, CKPT);
  writeFileSync(join(CKPT, 'train.json'), JSON.stringify({ trainSeconds }));
}
const testAccuracy = accuracy(model);
console.log(`test accuracy on ${test.count} images: ${(100 * testAccuracy).toFixed(1)} % (training ${trainSeconds.toFixed(0)} s)`);
const trained = await stability(model, 'after training');
Object.assign(summary, { trainSeconds: Math.round(trainSeconds), testAccuracy });
const curve = (r: RelativeStabilityResult) => r.points.map(({ T, delta, D, G, R }) => ({ T, delta, D, G, R }));
summary['stability'] = { c, probingImages: PROBE, aggregation: 'mean', atInit: curve(atInit), trained: curve(trained) };

logLogChart(
  join(OUT, 'relative-stability.svg'),
  `R_f, D_f and G_f against T (ResNet-8, ${PROBE} test images, c = ${c})`,
  [
    { name: 'R_f trained', xs: temperatures, ys: trained.points.map((p) => p.R), color: '#d62728' },
    { name: 'R_f at init', xs: temperatures, ys: atInit.points.map((p) => p.R), color: '#d62728', dashed: true },
    { name: 'D_f trained', xs: temperatures, ys: trained.points.map((p) => p.D), color: '#1f77b4' },
    { name: 'D_f at init', xs: temperatures, ys: atInit.points.map((p) => p.D), color: '#1f77b4', dashed: true },
    { name: 'G_f trained', xs: temperatures, ys: trained.points.map((p) => p.G), color: '#2ca02c' },
    { name: 'G_f at init', xs: temperatures, ys: atInit.points.map((p) => p.G), color: '#2ca02c', dashed: true },
  ],
  'temperature T',
  'D_f, G_f, R_f',
);
for (const [name, r] of [['at init', atInit], ['trained', trained]] as const) {
  const mid = r.points[Math.floor(r.points.length / 2)]!;
  console.log(`R_f ${name}: ${r.points.map((p) => p.R.toFixed(2)).join(' ')} (T = ${mid.T.toExponential(2)}, δ = ${mid.delta.toFixed(2)} px: R = ${mid.R.toFixed(3)})`);
}

// 2. A gallery: one test image deformed at typical displacements 0.5–4 px, and noise of the same norm.
const toRgb = (t: tf.Tensor): Uint8Array =>
  tf.tidy(() => {
    const px = tf.clipByValue(tf.add(tf.mul(t, tf.tensor1d([...CIFAR10_STD])), tf.tensor1d([...CIFAR10_MEAN])), 0, 1);
    return Uint8Array.from(tf.mul(px, 255).dataSync(), (v) => Math.round(v));
  });
const one = tf.slice(xTest, 3, 1);
const gallery: { uri: string; caption: string[] }[] = [{ uri: rgbDataUri(toRgb(one), 32, 32), caption: ['original', CIFAR10_CLASSES[test.labels[3] as number]!] }];
const noiseRow: { uri: string; caption: string[] }[] = [];
for (const delta of [0.5, 1, 2, 4]) {
  const T = temperatureForDisplacement(delta, c, 32);
  const field = sampleDisplacementField({ batch: 1, n: 32, c, T, seed: 5 });
  const tx = deform(one, field);
  const eta = matchedNoise(one, tx, 6);
  const noisy = tf.add(one, eta);
  gallery.push({ uri: rgbDataUri(toRgb(tx), 32, 32), caption: [`δ = ${delta} px`, `T = ${T.toExponential(1)}`] });
  noiseRow.push({ uri: rgbDataUri(toRgb(noisy), 32, 32), caption: ['noise, same norm', `as δ = ${delta} px`] });
  tf.dispose([field, tx, eta, noisy]);
}
imageStrip(join(OUT, 'deformations.svg'), `Random diffeomorphisms (c = ${c}) of a test image, and isotropic noise of the same norm`, [...gallery, ...noiseRow], 96);

// 3. The plane through three test images of different classes: class, entropy, volume element.
const picks = [0, 1, 2].map((k) => test.labels.indexOf([3, 5, 8][k]!)); // a cat, a dog, a ship
const anchors = tf.concat(picks.map((i) => tf.slice(xTest, i, 1)));
const plane = planeThroughPoints(anchors);
const planeBar = progressBar('plane through a cat, a dog and a ship', PLANE_STEPS * PLANE_STEPS);
const scan = await scanPlane(model, plane, { steps: PLANE_STEPS, volume: 'plane', onProgress: (p) => planeBar.update(p.done, '') });
const [vLo, vHi] = planeFigure(
  join(OUT, 'plane.svg'),
  'The plane through a cat, a dog and a ship (white crosses): class, entropy and volume element',
  plane,
  scan,
  CIFAR10_CLASSES,
  'log10 √det g on the plane (pooled 64 features, ÷ m)',
  6,
);
summary['plane'] = { anchors: picks.map((i) => CIFAR10_CLASSES[test.labels[i] as number]), steps: PLANE_STEPS, classesSeen: Array.from(new Set(scan.predicted)).sort().map((k) => CIFAR10_CLASSES[k]), log10VolumeRange: [vLo, vHi] };
plane.dispose();

// 4. A horizontal path from the cat towards the ship.
const lo = Math.min(...CIFAR10_MEAN.map((m, i) => -m / CIFAR10_STD[i]!));
const hi = Math.max(...CIFAR10_MEAN.map((m, i) => (1 - m) / CIFAR10_STD[i]!));
const [source, target] = [tf.slice(anchors, 0, 1), tf.slice(anchors, 2, 1)];
const pathBar = progressBar('cat → ship along the leaf', PATH_STEPS);
const [path] = await horizontalPath(model, source, target, { clamp: [lo, hi], maxSteps: PATH_STEPS, onStep: ({ step, distances }) => pathBar.update(step, `distance ${distances[0]?.toFixed(2)}`) });
const K = path!.frameSteps.length;
const frames = Array.from(new Set(Array.from({ length: 8 }, (_, i) => Math.round((i * (K - 1)) / 7))));
imageStrip(join(OUT, 'horizontal-path.svg'), 'Horizontal path from a cat towards a ship (Algorithm 4.1)', [
  ...frames.map((k) => ({
    uri: rgbDataUri(toRgb(tf.slice(path!.frames, k, 1)), 32, 32),
    caption: [`step ${path!.frameSteps[k]}`, `${CIFAR10_CLASSES[path!.predicted[k] as number]}, p = ${(path!.probability[k] as number).toFixed(2)}`],
  })),
  { uri: rgbDataUri(toRgb(target), 32, 32), caption: ['target', CIFAR10_CLASSES[test.labels[picks[2]!] as number]!] },
], 96);
summary['path'] = { stopReason: path!.stopReason, steps: path!.steps, firstDistance: path!.distances[0], lastDistance: path!.distances.at(-1), labels: [path!.predicted[0], path!.predicted.at(-1)].map((k) => CIFAR10_CLASSES[k as number]) };
console.log(`path: ${path!.stopReason} after ${path!.steps} steps, distance ${path!.distances[0]?.toFixed(2)} → ${path!.distances.at(-1)?.toFixed(2)}`);

writeFileSync(join(OUT, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
console.log(`wrote the figures and summary.json to ${OUT}`);
tf.dispose([xTest, probe, one, anchors, source, target, path!.frames]);
