/**
 * Experiment: leaves and paths at scale (Grementieri & Fioresi, "Model-centric data manifold").
 * On the MNIST CNN after 800 SGD steps:
 * - horizontal paths (Algorithm 4.1) between 100 seeded pairs of test digits of different classes:
 *   how many end with the target's label, in how many steps, and how much of the distance is left;
 * - orthogonal paths from 100 test digits: how many keep their prediction, and how far they go;
 * and, for the CNN and a tanh MLP, tr G(x) over 1,000 test digits at 6 checkpoints of training.
 *
 *   npm run experiment:leaves              # ~22 min on 2 cores (training included, shared with experiment:magnification)
 *   npm run experiment:leaves -- --quick   # 10 pairs, short paths, 100 digits, 3 checkpoints
 *
 * Writes summary.json next to the README (out/quick/summary.json with --quick), out/trace.svg,
 * out/horizontal-examples.svg and out/orthogonal-examples.svg (and .png).
 */
import * as tf from '@tensorflow/tfjs-core';
import { join } from 'node:path';
import { registerGradientKernels } from '../../../src/index.js';
import type { LeafPath } from '../../../src/index.js';
import { useWasmBackend } from '../../../src/backends/wasm.js';
import { createJacobianPool } from '../../../src/node/pool.js';
import { exitOnError } from '../../cli.js';
import { MNIST_BOX, mnistPixels } from '../../data.js';
import { progressBar } from '../../progress.js';
import { imageStrip, pngDataUri, seriesChart } from '../../svg.js';
import { accuracy, experimentArgs, loadCheckpoint, randomInts, testSet, trainedCheckpoints, writeSummary } from '../common.js';
import { mean, quantile } from '../../stats.js';
import type { Network } from '../common.js';

exitOnError();
const { quick, retrain, dataDir, out, summary: summaryPath } = experimentArgs(import.meta.url);
const PAIRS = quick ? 10 : 100;
const HORIZONTAL_STEPS = quick ? 40 : 600;
const ORTHOGONAL_STEPS = quick ? 30 : 250;
const TRACE_IMAGES = quick ? 100 : 1000;

tf.env().set('PROD', true);
await useWasmBackend();
registerGradientKernels();

const test = testSet(1000, dataDir);
const draw = randomInts(7);
const pairs: [number, number][] = [];
while (pairs.length < PAIRS) {
  const [a, b] = [draw(1000), draw(1000)];
  if (test.labels[a] !== test.labels[b]) pairs.push([a, b]);
}
const starts = Array.from({ length: PAIRS }, () => draw(1000));

// 1. tr G over the test digits at each checkpoint, for both networks.
const traceRows: { network: Network; step: number; testAccuracy: number; mean: number; q10: number; median: number; q90: number }[] = [];
const xTrace = tf.slice(test.x, 0, TRACE_IMAGES);
let finalCnn: { step: number; dir: string } | undefined;
for (const network of ['cnn', 'mlp'] as Network[]) {
  const checkpoints = await trainedCheckpoints(network, { quick, retrain, dataDir });
  if (network === 'cnn') finalCnn = checkpoints[checkpoints.length - 1];
  for (const { step, dir } of checkpoints) {
    const model = await loadCheckpoint(dir);
    const pool = await createJacobianPool(model, { threads: 2 });
    try {
      const { G, probs } = await pool.localDataMatrix(xTrace);
      const tr = await G.trace();
      G.dispose();
      probs.dispose();
      const row = { network, step, testAccuracy: accuracy(model, test.x, test.labels), mean: mean(tr), q10: quantile(tr, 0.1), median: quantile(tr, 0.5), q90: quantile(tr, 0.9) };
      traceRows.push(row);
      console.log(`${network} step ${step}: test accuracy ${(100 * row.testAccuracy).toFixed(1)} %, tr G mean ${row.mean.toFixed(4)}, quantiles 10/50/90 % ${row.q10.toExponential(2)} / ${row.median.toExponential(2)} / ${row.q90.toExponential(2)}`);
    } finally {
      await pool.close();
      model.dispose();
    }
  }
}
xTrace.dispose();
const colors: Record<Network, string> = { cnn: '#1f77b4', mlp: '#d62728' };
seriesChart(
  join(out, 'trace.svg'),
  `tr G(x) over ${TRACE_IMAGES} test digits during training`,
  (['cnn', 'mlp'] as Network[]).flatMap((network) => {
    const rs = traceRows.filter((r) => r.network === network);
    const xs = rs.map((r) => Math.max(r.step, 1));
    return [
      { name: `${network.toUpperCase()} mean`, xs, ys: rs.map((r) => r.mean), color: colors[network] },
      { name: `${network.toUpperCase()} median`, xs, ys: rs.map((r) => r.median), color: colors[network], dashed: true },
    ];
  }),
  'SGD step (batch 60; step 0 drawn at 1)',
  'tr G',
  { logX: true },
);

// 2. Paths on the trained CNN.
const model = await loadCheckpoint((finalCnn as { dir: string }).dir);
const pool = await createJacobianPool(model, { threads: 2 });
function strip(file: string, title: string, path: LeafPath): void {
  const K = path.frameSteps.length;
  const picks = Array.from(new Set(Array.from({ length: 8 }, (_, i) => Math.round((i * (K - 1)) / 7))));
  const px = mnistPixels(path.frames);
  imageStrip(join(out, file), title, picks.map((k) => ({ uri: pngDataUri(px.subarray(k * 784, (k + 1) * 784), 28, 28), caption: [`step ${path.frameSteps[k]}`, `${path.predicted[k]}, p = ${(path.probability[k] as number).toFixed(2)}`] })));
}
let horizontal: LeafPath[] = [];
let orthogonal: LeafPath[] = [];
try {
  const src = tf.gather(test.x, pairs.map(([a]) => a));
  const dst = tf.gather(test.x, pairs.map(([, b]) => b));
  const hBar = progressBar(`${PAIRS} horizontal paths`, PAIRS);
  horizontal = await pool.horizontalPath(src, dst, { clamp: MNIST_BOX, maxSteps: HORIZONTAL_STEPS, recordEvery: Math.max(1, Math.floor(HORIZONTAL_STEPS / 8)), onProgress: (p) => hBar.update(p.done) });
  const o = tf.gather(test.x, starts);
  const oBar = progressBar(`${PAIRS} orthogonal paths`, PAIRS);
  orthogonal = await pool.orthogonalPath(o, { clamp: MNIST_BOX, maxSteps: ORTHOGONAL_STEPS, seed: 3, recordEvery: Math.max(1, Math.floor(ORTHOGONAL_STEPS / 8)), onProgress: (p) => oBar.update(p.done) });
  tf.dispose([src, dst, o]);
} finally {
  await pool.close();
}
const h = horizontal.map((p, i) => {
  const target = test.labels[(pairs[i] as [number, number])[1]] as number;
  const last = p.predicted[p.predicted.length - 1] as number;
  return { source: test.labels[(pairs[i] as [number, number])[0]], target, finalLabel: last, reached: last === target, steps: p.steps, stopReason: p.stopReason, first: p.distances[0] as number, last: p.distances[p.distances.length - 1] as number };
});
const o = orthogonal.map((p, i) => {
  const first = p.predicted[0] as number;
  return { label: test.labels[starts[i] as number], predicted: first, kept: Array.from(p.predicted).every((c) => c === first), finalProbability: p.probability[p.probability.length - 1] as number, travelled: p.distances[p.distances.length - 1] as number, steps: p.steps };
});
const firstReached = horizontal.find((_, i) => h[i]?.reached);
const firstFailed = horizontal.find((_, i) => !h[i]?.reached);
if (firstReached) strip('horizontal-examples.svg', 'A horizontal path that ends with the target label', firstReached);
if (firstFailed) strip('horizontal-failed-example.svg', 'A horizontal path that does not end with the target label', firstFailed);
if (orthogonal[0]) strip('orthogonal-examples.svg', 'An orthogonal path: the image drifts, the prediction stays', orthogonal[0]);
const ratio = h.map((r) => r.last / r.first);
const summary = {
  quick,
  network: 'cnn',
  step: finalCnn?.step,
  testAccuracy: accuracy(model, test.x, test.labels),
  horizontal: {
    pairs: PAIRS,
    maxSteps: HORIZONTAL_STEPS,
    fractionReachingTargetLabel: h.filter((r) => r.reached).length / PAIRS,
    stopReasons: Object.fromEntries(['reached', 'stalled', 'maxSteps'].map((s) => [s, h.filter((r) => r.stopReason === s).length])),
    steps: { median: quantile(h.map((r) => r.steps), 0.5), q10: quantile(h.map((r) => r.steps), 0.1), q90: quantile(h.map((r) => r.steps), 0.9) },
    distanceLeftFraction: { median: quantile(ratio, 0.5), q10: quantile(ratio, 0.1), q90: quantile(ratio, 0.9) },
    firstDistance: { median: quantile(h.map((r) => r.first), 0.5) },
    paths: h,
  },
  orthogonal: {
    count: PAIRS,
    steps: ORTHOGONAL_STEPS,
    fractionKeepingPrediction: o.filter((r) => r.kept).length / PAIRS,
    travelled: { median: quantile(o.map((r) => r.travelled), 0.5), q10: quantile(o.map((r) => r.travelled), 0.1), q90: quantile(o.map((r) => r.travelled), 0.9) },
    finalProbability: { median: quantile(o.map((r) => r.finalProbability), 0.5), min: Math.min(...o.map((r) => r.finalProbability)) },
    paths: o,
  },
  traceG: traceRows,
};
writeSummary(summaryPath, summary);
console.log(
  `horizontal: ${(100 * summary.horizontal.fractionReachingTargetLabel).toFixed(0)} % end with the target's label; median ${summary.horizontal.steps.median} steps; ` +
    `median distance left ${(100 * summary.horizontal.distanceLeftFraction.median).toFixed(0)} % of the first`,
);
console.log(`orthogonal: ${(100 * summary.orthogonal.fractionKeepingPrediction).toFixed(0)} % keep their prediction at every recorded frame; median distance travelled ${summary.orthogonal.travelled.median.toFixed(2)}`);
tf.dispose([test.x, ...horizontal.map((p) => p.frames), ...orthogonal.map((p) => p.frames)]);
model.dispose();
