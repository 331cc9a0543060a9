/**
 * Zavatone-Veth, Yang, Rubinfien & Pehlevan's 2-D toy experiment with infogeo: a one-hidden-layer
 * network (250 sigmoid units) learns a sinusoidal boundary, and the volume element √det g of its
 * hidden-layer metric grows along that boundary during training; its scalar curvature R is drawn
 * next to it.
 *
 *   npm run example:toy-2d             # under a minute on 2 cores
 *   npm run example:toy-2d -- --quick  # 1,000 training steps instead of 10,000
 *
 * Writes examples/toy-2d/out/volume-during-training.svg and curvature-during-training.svg (and
 * .png) and summary.json.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { scalarCurvature, shallowAnalyticDetG, shallowScalarCurvature, volumeElement } from '../../src/index.js';
import { useWasmBackend } from '../../src/backends/wasm.js';
import { exitOnError } from '../cli.js';
import { progressBar } from '../progress.js';
import { diverging } from '../png.js';
import { lowerMedian, mean } from '../stats.js';
import { heatmapPanels, rgbDataUri, viridis } from '../svg.js';

const quick = process.argv.includes('--quick');
exitOnError();
const OUT = join(dirname(fileURLToPath(import.meta.url)), 'out');
const WIDTH = 250;
const STEPS = quick ? 1000 : 10000;
const SNAPSHOTS = [0, STEPS / 10, STEPS]; // start, early, end
const GRID = 120; // grid points per axis over [−1.5, 1.5]² (the reference: 80)
const LIM = 1.5;

tf.env().set('PROD', true);
await useWasmBackend();

// The reference's "sindata": 400 uniform points in [−1, 1]², label 1 iff y > 0.6 sin(7x − 1).
let seed = 401;
const uniform = () => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed / 2 ** 31;
};
const points = Array.from({ length: 400 }, () => [2 * uniform() - 1, 2 * uniform() - 1] as [number, number]);
const labels = points.map(([x, y]) => (y > 0.6 * Math.sin(7 * x - 1) ? 1 : 0));

// φ(Wx + b)/√N then a linear readout, all parameters N(0, 1) as in the reference code (which scales
// the readout by 1/√N in forward(): here a Rescaling layer, which also makes it the feature map Φ).
const normal = (s: number) => tfl.initializers.randomNormal({ mean: 0, stddev: 1, seed: s });
const model = tfl.sequential({
  layers: [
    tfl.layers.dense({ name: 'hidden', inputShape: [2], units: WIDTH, activation: 'sigmoid', kernelInitializer: normal(1), biasInitializer: normal(2) }),
    tfl.layers.rescaling({ name: 'phi', scale: 1 / Math.sqrt(WIDTH) }),
    tfl.layers.dense({ name: 'readout', units: 2, kernelInitializer: normal(3), biasInitializer: normal(4) }),
  ],
});

// The grid, row 0 at the top (y = +1.5).
const grid = Array.from({ length: GRID * GRID }, (_, k) => {
  const [i, j] = [Math.floor(k / GRID), k % GRID];
  return [-LIM + (2 * LIM * j) / (GRID - 1), LIM - (2 * LIM * i) / (GRID - 1)];
});
const gridTensor = tf.tensor2d(grid);

interface Snapshot { step: number; logVolume: Float64Array; curvature: Float64Array; predicted: Int32Array; accuracy: number }
function snapshot(step: number): Snapshot {
  const [kernel, bias] = model.getLayer('hidden').getWeights();
  const k = kernel!.arraySync() as number[][]; // [2, N]
  const W = Array.from({ length: WIDTH }, (_, j) => [k[0]![j]!, k[1]![j]!]);
  const net = { W, b: Array.from(bias!.dataSync()), activation: 'sigmoid' as const, x: grid };
  const { logVolume } = shallowAnalyticDetG(net);
  const curvature = shallowScalarCurvature(net);
  const predicted = tf.tidy(() => tf.argMax(model.predict(gridTensor) as tf.Tensor, 1).dataSync()) as Int32Array;
  const accuracy = tf.tidy(() => {
    const p = tf.argMax(model.predict(tf.tensor2d(points)) as tf.Tensor, 1).dataSync();
    return labels.filter((l, i) => l === p[i]).length / labels.length;
  });
  return { step, logVolume: logVolume.map((v) => v / Math.LN10), curvature, predicted: Int32Array.from(predicted), accuracy };
}

// Train: full-batch SGD with momentum 0.9 and cross-entropy, as the reference's README config, but
// lr 1.0 instead of 0.1: with full batches 10,000 steps at lr 0.1 stop at 86 % training accuracy,
// before the boundary bends (the reference's 10,000 epochs are more steps than that).
const xs = tf.tensor2d(points);
const ys = tf.oneHot(tf.tensor1d(labels, 'int32'), 2);
const optimizer = tf.train.momentum(1.0, 0.9);
const snapshots: Snapshot[] = [snapshot(0)];
const bar = progressBar('training', STEPS);
const t0 = performance.now();
for (let step = 1; step <= STEPS; step++) {
  const loss = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(ys, model.apply(xs) as tf.Tensor) as tf.Scalar, true);
  if (step % 100 === 0) bar.update(step, `loss ${(loss!.dataSync()[0] as number).toFixed(4)}`);
  loss!.dispose();
  if (SNAPSHOTS.includes(step)) snapshots.push(snapshot(step));
}
const trainSeconds = (performance.now() - t0) / 1000;

// Cross-check: infogeo's autodiff volume element (JVPs through the tfjs model) against the closed form.
const check = await volumeElement(model, gridTensor, { target: { layer: 'phi' }, base: 10 });
const last = snapshots.at(-1)!;
let maxDiff = 0;
check.logVolume.forEach((v, i) => (maxDiff = Math.max(maxDiff, Math.abs(v - (last.logVolume[i] as number)))));
console.log(`autodiff vs closed form, log10 √det g on ${grid.length} grid points: max |difference| ${maxDiff.toExponential(2)}`);
// The same for the curvature: the Gauss equation on infogeo's exact second derivatives (float32
// through the tfjs model) against the float64 closed form, relative to the largest |R| on the grid.
const curved = await scalarCurvature(model, gridTensor, { target: { layer: 'phi' } });
const rMax = Math.max(...Array.from(last.curvature, Math.abs));
let maxCurvatureDiff = 0;
curved.scalar.forEach((v, i) => (maxCurvatureDiff = Math.max(maxCurvatureDiff, Math.abs(v - (last.curvature[i] as number)) / rMax)));
console.log(`autodiff vs closed form, scalar curvature on ${grid.length} grid points: max |difference| ${maxCurvatureDiff.toExponential(2)} of max |R| = ${rMax.toFixed(1)}`);

// Pictures: log10 √det g, the decision boundary (white) and the training points.
const all = snapshots.flatMap((s) => Array.from(s.logVolume));
const [lo, hi] = [Math.min(...all), Math.max(...all)];
const SCALE = 2;
function panel(s: Snapshot, values: Float64Array = s.logVolume, color: (v: number) => [number, number, number] = (v) => viridis((v - lo) / (hi - lo)), edgeColor: [number, number, number] = [255, 255, 255]): string {
  const size = GRID * SCALE;
  const rgb = new Uint8Array(size * size * 3);
  const put = (x: number, y: number, c: [number, number, number]) => {
    if (x >= 0 && y >= 0 && x < size && y < size) rgb.set(c, 3 * (y * size + x));
  };
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      const k = Math.floor(y / SCALE) * GRID + Math.floor(x / SCALE);
      put(x, y, color(values[k] as number));
    }
  for (let i = 0; i < GRID; i++)
    for (let j = 0; j < GRID; j++) {
      const k = i * GRID + j;
      const edge = (j + 1 < GRID && s.predicted[k] !== s.predicted[k + 1]) || (i + 1 < GRID && s.predicted[k] !== s.predicted[k + GRID]);
      if (edge) for (let a = 0; a < SCALE; a++) for (let b = 0; b < SCALE; b++) put(j * SCALE + b + 1, i * SCALE + a + 1, edgeColor);
    }
  points.forEach(([px, py], n) => {
    const cx = Math.round(((px + LIM) / (2 * LIM)) * (size - 1));
    const cy = Math.round(((LIM - py) / (2 * LIM)) * (size - 1));
    const c: [number, number, number] = labels[n] ? [255, 127, 14] : [214, 39, 40];
    for (let a = -1; a <= 1; a++) for (let b = -1; b <= 1; b++) put(cx + b, cy + a, c);
  });
  return rgbDataUri(rgb, size, size);
}
heatmapPanels(
  join(OUT, 'volume-during-training.svg'),
  `log10 √det g of the hidden layer (${WIDTH} sigmoid units); white: decision boundary; dots: training data`,
  snapshots.map((s, i) => ({
    uri: panel(s),
    caption: [`step ${s.step}`, `train accuracy ${(100 * s.accuracy).toFixed(1)} %`],
    key: i === snapshots.length - 1 ? { min: lo, max: hi, label: 'log10 √det g', color: viridis } : undefined,
  })),
);

// The scalar curvature R of the same metric (standard sign: a sphere has R > 0), each panel on its
// own symmetric colour scale, clipped at the 99th percentile of its |R| (R grows by a factor ~40
// during training, and a few points far from the data reach much larger values).
const clipOf = (s: Snapshot) => {
  const absR = Array.from(s.curvature, Math.abs).filter(Number.isFinite).sort((a, b) => a - b);
  return absR[Math.floor(0.99 * (absR.length - 1))] as number;
};
heatmapPanels(
  join(OUT, 'curvature-during-training.svg'),
  `scalar curvature R of the hidden layer's metric; black: decision boundary`,
  snapshots.map((s) => {
    const clip = clipOf(s);
    return {
      uri: panel(s, s.curvature, (v) => diverging(v / clip), [0, 0, 0]),
      caption: [`step ${s.step}`, `train accuracy ${(100 * s.accuracy).toFixed(1)} %`],
      key: { min: -clip, max: clip, label: 'R', color: (t: number) => diverging(2 * t - 1) },
    };
  }),
);

// How much larger is the volume near the boundary than far from it, at each snapshot?
const nearBoundary = (s: Snapshot, k: number) => {
  const [i, j] = [Math.floor(k / GRID), k % GRID];
  for (let a = -2; a <= 2; a++)
    for (let b = -2; b <= 2; b++) {
      const [ii, jj] = [i + a, j + b];
      if (ii >= 0 && jj >= 0 && ii < GRID && jj < GRID && s.predicted[ii * GRID + jj] !== s.predicted[k]) return true;
    }
  return false;
};
const summary = {
  quick,
  width: WIDTH,
  steps: STEPS,
  trainSeconds: Math.round(trainSeconds),
  autodiffVsClosedFormMaxAbsLog10: maxDiff,
  autodiffVsClosedFormCurvatureMaxRelative: maxCurvatureDiff,
  snapshots: snapshots.map((s) => {
    const near: number[] = [];
    const far: number[] = [];
    const rNear: number[] = [];
    const rFar: number[] = [];
    s.logVolume.forEach((v, k) => (nearBoundary(s, k) ? near : far).push(v));
    s.curvature.forEach((v, k) => (nearBoundary(s, k) ? rNear : rFar).push(v));
    return {
      step: s.step,
      trainAccuracy: s.accuracy,
      pointsNearBoundary: near.length,
      meanLog10VolumeNearBoundary: mean(near),
      meanLog10VolumeElsewhere: mean(far),
      medianCurvatureNearBoundary: lowerMedian(rNear),
      medianCurvatureElsewhere: lowerMedian(rFar),
      curvatureRange: [Math.min(...s.curvature), Math.max(...s.curvature)],
    };
  }),
};
writeFileSync(join(OUT, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
for (const s of summary.snapshots) {
  const accuracy = `step ${s.step}: train accuracy ${(100 * s.trainAccuracy).toFixed(1)} %`;
  if (s.pointsNearBoundary === 0) {
    // One class over the whole grid (at initialisation, typically): there is no boundary to be near.
    console.log(`${accuracy}, no points near the boundary yet (one class on the whole grid); mean log10 √det g ${s.meanLog10VolumeElsewhere.toFixed(3)}, median R ${s.medianCurvatureElsewhere.toFixed(2)}`);
  } else {
    console.log(`${accuracy}, mean log10 √det g near the boundary ${s.meanLog10VolumeNearBoundary.toFixed(3)}, elsewhere ${s.meanLog10VolumeElsewhere.toFixed(3)}; median R near the boundary ${s.medianCurvatureNearBoundary.toFixed(2)}, elsewhere ${s.medianCurvatureElsewhere.toFixed(2)}`);
  }
}
console.log(`training took ${trainSeconds.toFixed(0)} s; wrote ${join(OUT, 'volume-during-training.svg')} and curvature-during-training.svg (and .png) and summary.json`);
tf.dispose([xs, ys, gridTensor]);
