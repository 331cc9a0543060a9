/**
 * Experiment: relative stability to diffeomorphisms against test error (Petrini, Favero, Geiger,
 * Wyart, "Relative stability toward diffeomorphisms indicates performance in deep nets", NeurIPS
 * 2021).
 *
 * Five architectures — fully connected ReLU nets with 2 and 4 hidden layers of width 64 (the
 * reference's DenseNetL2 and DenseNetL4), LeNet-5, the MNIST example's CNN and a ResNet-8 — on
 * MNIST, Fashion-MNIST and CIFAR-10, each at its seeded initialisation and after training; and a
 * training-set-size sweep (P = 512, 2,048, 8,192 and all 60,000 MNIST digits) for FC2 and LeNet.
 * For every network: the test error, and R_f = D_f/G_f, D_f and G_f of the logits at a typical
 * displacement δ = 1 pixel (c = 3, the reference's median aggregation, 200 probing test images,
 * 100 deformations and noise draws per image), with a bootstrap interval for R_f over the draws.
 *
 *   npm run experiment:stability              # about an hour on 2 cores (training and measuring)
 *   npm run experiment:stability -- --quick   # a few minutes: short training, 40 images, 10 draws
 *
 * Writes summary.json next to the README (out/quick/summary.json with --quick), out/error-vs-rf.svg
 * (and .png), out/sweep.svg (and .png). Resumable: trained networks are kept in ../checkpoints/stability/, finished measurements in
 * out/partial.json; --retrain starts over.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { registerGradientKernels } from '../../../src/index.js';
import { useWasmBackend } from '../../../src/backends/wasm.js';
import { createJacobianPool } from '../../../src/node/pool.js';
import { loadCifar10, loadFashionMnist, loadMnist } from '../../../src/data/index.js';
import type { DatasetName } from '../../../src/data/index.js';
import { uniformGenerator } from '../../../src/linalg/random.js';
import { hasModel, loadModel, saveModel } from '../../checkpoint.js';
import { exitOnError } from '../../cli.js';
import { exampleDataset, normaliseCifar10, normaliseMnist } from '../../data.js';
import { cifarResnet, fullyConnected, lenet, mnistCnn, shuffled } from '../../models.js';
import { progressBar } from '../../progress.js';
import { mean, quantile, spearman } from '../../stats.js';
import { logLogScatter, seriesChart } from '../../svg.js';
import type { Marker } from '../../svg.js';
import { accuracy, experimentArgs, readJson, writeSummary } from '../common.js';

exitOnError();
const { quick, retrain, dataDir, out, summary: summaryPath } = experimentArgs(import.meta.url);

const DATASETS = ['mnist', 'fashion-mnist', 'cifar10'] as const satisfies readonly DatasetName[];
type Dataset = (typeof DATASETS)[number];
const ARCHS = ['fc2', 'fc4', 'lenet', 'cnn', 'resnet8'] as const;
type Arch = (typeof ARCHS)[number];

const TRAIN = quick ? 1024 : 10000; // training images of the grid (CIFAR-10's batch 1 has 10,000)
const TEST = quick ? 200 : 1000; // test images for the error (the shared CIFAR-10 test file has 1,000)
const PROBE = quick ? 40 : 200; // probing images for R_f: the first test images
const GROUPS = quick ? 2 : 20; // calls of relativeStability, each with DRAWS draws, for the bootstrap
const DRAWS = 5; // draws per call: GROUPS × DRAWS deformations (and noise draws) per image
const SWEEP = quick ? [512, 2048] : [512, 2048, 8192, 60000]; // MNIST training-set sizes
const SWEEP_ARCHS: Arch[] = ['fc2', 'lenet'];
const BATCH = 64;
const DELTA = 1; // typical displacement, pixels
const C = 3; // cutoff of the displacement fields
/**
 * Adam steps (batch 64, lr 1e-3): the cheap networks train for 1,500 steps (9.6 epochs of 10,000
 * images); the CNN and the ResNet-8, whose steps take about a second each on wasm, for 200 (1.3
 * epochs), to fit the hour.
 */
const STEPS: Record<Arch, number> = quick ? { fc2: 40, fc4: 40, lenet: 40, cnn: 10, resnet8: 10 } : { fc2: 1500, fc4: 1500, lenet: 1500, cnn: 200, resnet8: 200 };

const CHECKPOINTS = join(dirname(fileURLToPath(import.meta.url)), '..', 'checkpoints', quick ? 'stability_quick' : 'stability');

tf.env().set('PROD', true);
await useWasmBackend();
registerGradientKernels();

/** Fashion-MNIST images normalised with its pixel mean and standard deviation (training set). */
const fashion = (px: Float32Array, n: number) => tf.tidy(() => tf.div(tf.sub(tf.tensor4d(px, [n, 28, 28, 1]), 0.286), 0.353) as tf.Tensor4D);
const TITLE: Record<Dataset, string> = { mnist: 'MNIST', 'fashion-mnist': 'Fashion-MNIST', cifar10: 'CIFAR-10' };

/** Normalised images `[n, h, w, c]` and labels of a split. */
function load(dataset: Dataset, split: 'train' | 'test', limit: number): { x: tf.Tensor4D; labels: Int32Array } {
  const dir = exampleDataset(dataset, dataset === 'mnist' ? dataDir : undefined);
  const set = dataset === 'mnist' ? loadMnist(split, { dir, limit }) : dataset === 'fashion-mnist' ? loadFashionMnist(split, { dir, limit }) : loadCifar10(split, { dir, limit });
  const x = dataset === 'cifar10' ? normaliseCifar10(set.images, set.count) : dataset === 'mnist' ? normaliseMnist(set.images, set.count) : fashion(set.images, set.count);
  return { x, labels: Int32Array.from(set.labels) };
}

/** The network, seeded (the same seed for every data set: only the input shape differs). */
function build(arch: Arch, dataset: Dataset): tfl.LayersModel {
  const shape = dataset === 'cifar10' ? [32, 32, 3] : [28, 28, 1];
  if (arch === 'fc2' || arch === 'fc4') return fullyConnected(shape, arch === 'fc2' ? 2 : 4, 64, 11);
  if (arch === 'lenet') return lenet(shape, 21);
  if (arch === 'cnn') return mnistCnn(31, { inputShape: shape });
  return cifarResnet(41, { inputShape: shape });
}

/** Trains with Adam (lr 1e-3, batch 64) for `steps` steps over the images in seeded epoch orders. */
async function train(model: tfl.LayersModel, x: tf.Tensor4D, labels: Int32Array, steps: number, label: string): Promise<void> {
  const optimizer = tf.train.adam(1e-3);
  const n = x.shape[0];
  const perEpoch = Math.floor(n / BATCH) || 1;
  const bar = progressBar(`training ${label}`, steps);
  let order = shuffled(n, 1000);
  let lossSum = 0;
  const ys = tf.tensor1d(labels, 'int32');
  for (let s = 0; s < steps; s++) {
    const e = Math.floor(s / perEpoch);
    if (s % perEpoch === 0 && s > 0) order = shuffled(n, 1000 + e);
    const at = (s % perEpoch) * BATCH;
    const idx = tf.tensor1d(Int32Array.from(order.subarray(at, Math.min(at + BATCH, n))), 'int32');
    const loss = optimizer.minimize(() => {
      const out = model.apply(tf.gather(x, idx), { training: true }) as tf.Tensor;
      const y = tf.oneHot(tf.gather(ys, idx), 10);
      // The CNN ends in softmax (the MNIST example's): its cross-entropy takes the log of the probabilities.
      if (model.name === 'mnist_cnn') return tf.neg(tf.mean(tf.sum(tf.mul(y, tf.log(tf.add(out, 1e-7))), 1))) as tf.Scalar;
      return tf.losses.softmaxCrossEntropy(y, out) as tf.Scalar;
    }, true);
    lossSum += (await loss!.data())[0] as number;
    tf.dispose([idx, loss!]);
    if ((s + 1) % 20 === 0 || s + 1 === steps) {
      bar.update(s + 1, `loss ${(lossSum / ((s % 20) + 1)).toFixed(3)}`);
      lossSum = 0;
    }
  }
  optimizer.dispose();
  ys.dispose();
}

/** One measured network. */
interface Row {
  id: string;
  dataset: Dataset;
  arch: Arch;
  /** Training images (0 at initialisation). */
  P: number;
  steps: number;
  trained: boolean;
  testError: number;
  R: number;
  /** 95 % bootstrap interval of R over the draws. */
  Rlo: number;
  Rhi: number;
  D: number;
  G: number;
  /** The typical displacement measured, in pixels. */
  delta: number;
  seconds: number;
}

/**
 * R_f, D_f and G_f at δ = 1 px: GROUPS calls of DRAWS draws each, whose seeds continue one
 * another (call g's draw k is draw 5g + k of a single call with GROUPS × DRAWS draws, so R_f is
 * that call's mean over draws); the interval is a bootstrap of the mean over the GROUPS calls.
 */
async function stability(model: tfl.LayersModel, probe: tf.Tensor, label: string) {
  const pool = await createJacobianPool(model, { threads: 2 });
  const bar = progressBar(`R_f ${label}`, GROUPS);
  const groups: { R: number; D: number; G: number; delta: number }[] = [];
  try {
    for (let g = 0; g < GROUPS; g++) {
      const r = await pool.relativeStability(probe, { c: C, delta: DELTA, aggregation: 'median', draws: DRAWS, seed: 7919 * DRAWS * g });
      groups.push(r.points[0] as (typeof groups)[number]);
      bar.update(g + 1, `R_f ${mean(groups.map((p) => p.R)).toFixed(3)}`);
    }
  } finally {
    await pool.close();
  }
  const Rs = groups.map((p) => p.R);
  const u = uniformGenerator(99);
  const boot = Array.from({ length: 2000 }, () => mean(Rs.map(() => Rs[Math.min(Rs.length - 1, Math.floor(u() * Rs.length))] as number)));
  return { R: mean(Rs), Rlo: quantile(boot, 0.025), Rhi: quantile(boot, 0.975), D: mean(groups.map((p) => p.D)), G: mean(groups.map((p) => p.G)), delta: groups[0]!.delta };
}

// The networks to measure: the grid (each at initialisation and trained), then the sweep.
interface Job {
  id: string;
  dataset: Dataset;
  arch: Arch;
  P: number;
  trained: boolean;
}
const jobs: Job[] = [];
for (const dataset of DATASETS)
  for (const arch of ARCHS) {
    jobs.push({ id: `${dataset}/${arch}/init`, dataset, arch, P: 0, trained: false });
    jobs.push({ id: `${dataset}/${arch}/P${TRAIN}`, dataset, arch, P: TRAIN, trained: true });
  }
for (const arch of SWEEP_ARCHS) for (const P of SWEEP) jobs.push({ id: `mnist/${arch}/P${P}`, dataset: 'mnist', arch, P, trained: true });

const partialPath = join(out, 'partial.json');
if (retrain) rmSync(partialPath, { force: true });
const rows: Row[] = readJson<Row[]>(partialPath) ?? [];
for (const dataset of DATASETS) {
  const todo = jobs.filter((j) => j.dataset === dataset && !rows.some((r) => r.id === j.id));
  if (todo.length === 0) continue;
  const test = load(dataset, 'test', TEST);
  const probe = tf.slice(test.x, 0, PROBE);
  const maxP = Math.max(...todo.map((j) => j.P));
  const trainSet = maxP > 0 ? load(dataset, 'train', maxP) : undefined;
  for (const job of todo) {
    const started = performance.now();
    const dir = join(CHECKPOINTS, job.id.replaceAll('/', '-'));
    let model: tfl.LayersModel;
    if (!job.trained) model = build(job.arch, dataset);
    else if (hasModel(dir) && !retrain) model = await loadModel(dir);
    else {
      model = build(job.arch, dataset);
      const x = job.P === trainSet!.x.shape[0] ? trainSet!.x : tf.slice(trainSet!.x, 0, job.P);
      await train(model, x, trainSet!.labels.subarray(0, job.P), STEPS[job.arch], `${job.id} (${STEPS[job.arch]} steps)`);
      if (x !== trainSet!.x) x.dispose();
      await saveModel(model, dir);
    }
    const row: Row = { ...job, steps: job.trained ? STEPS[job.arch] : 0, testError: 1 - accuracy(model, test.x, test.labels), ...(await stability(model, probe, job.id)), seconds: 0 };
    row.seconds = Math.round((performance.now() - started) / 1000);
    model.dispose();
    rows.push(row);
    mkdirSync(out, { recursive: true });
    writeFileSync(partialPath, JSON.stringify(rows, null, 1));
    console.log(`${job.id}: test error ${(100 * row.testError).toFixed(1)} %, R_f ${row.R.toFixed(3)} [${row.Rlo.toFixed(3)}, ${row.Rhi.toFixed(3)}], D_f ${row.D.toExponential(2)}, G_f ${row.G.toExponential(2)} (${row.seconds} s)`);
  }
  tf.dispose([test.x, probe, trainSet?.x]);
}

// Summary: the claims, each as numbers.
const get = (id: string) => rows.find((r) => r.id === id) as Row;
const trainedGrid = rows.filter((r) => r.trained && r.P === TRAIN);
const rho = (rs: Row[], key: 'R' | 'D' | 'G') => spearman(rs.map((r) => r[key]), rs.map((r) => r.testError));
const byDataset = Object.fromEntries(
  DATASETS.map((d) => {
    const rs = trainedGrid.filter((r) => r.dataset === d);
    return [d, { rhoR: rho(rs, 'R'), rhoD: rho(rs, 'D'), rhoG: rho(rs, 'G') }];
  }),
);
const change = Object.fromEntries(
  DATASETS.flatMap((d) => ARCHS.map((a) => [`${d}/${a}`, { init: get(`${d}/${a}/init`).R, trained: get(`${d}/${a}/P${TRAIN}`).R }])),
);
const summary = {
  quick,
  setup: { trainImages: TRAIN, testImages: TEST, probingImages: PROBE, deformationsPerImage: GROUPS * DRAWS, delta: DELTA, c: C, aggregation: 'median', steps: STEPS, batch: BATCH, optimizer: 'adam 1e-3', sweep: { dataset: 'mnist', archs: SWEEP_ARCHS, P: SWEEP } },
  rows,
  spearman: { pooled: { rhoR: rho(trainedGrid, 'R'), rhoD: rho(trainedGrid, 'D'), rhoG: rho(trainedGrid, 'G') }, byDataset },
  /** ε/√R_f per trained network: the paper's line is ε = 0.2·√R_f. */
  errorOverSqrtR: Object.fromEntries(trainedGrid.map((r) => [r.id, r.testError / Math.sqrt(r.R)])),
  initToTrained: change,
  /** Training and measuring, summed over the rows (a resumed run's rows included). */
  minutes: Math.round(rows.reduce((a, r) => a + r.seconds, 0) / 60),
};
writeSummary(summaryPath, summary);

// Figure 1: test error against R_f (log–log), the trained grid filled, the initialisations hollow.
const COLOR: Record<Dataset, string> = { mnist: '#1f77b4', 'fashion-mnist': '#2ca02c', cifar10: '#d62728' };
const MARK: Record<Arch, [Marker, string]> = { fc2: ['circle', 'FC2'], fc4: ['diamond', 'FC4'], lenet: ['triangle', 'LeNet'], cnn: ['square', 'CNN'], resnet8: ['down', 'ResNet-8'] };
/** The grid's rows in the order data set, network, initialisation then trained. */
const grid = DATASETS.flatMap((d) => ARCHS.flatMap((a) => [get(`${d}/${a}/init`), get(`${d}/${a}/P${TRAIN}`)]));
const Rs = grid.map((r) => r.R).filter((v) => v > 0);
const line = Array.from({ length: 50 }, (_, i) => (Math.min(...Rs) / 2) * ((4 * Math.max(...Rs)) / Math.min(...Rs)) ** (i / 49));
logLogScatter(
  join(out, 'error-vs-rf.svg'),
  `Test error against R_f at δ = ${DELTA} px (c = ${C}, ${PROBE} images × ${GROUPS * DRAWS} deformations)`,
  grid.map((r) => ({ x: r.R, y: r.testError, xLo: r.Rlo, xHi: r.Rhi, color: COLOR[r.dataset], marker: MARK[r.arch][0], hollow: !r.trained })),
  [{ name: 'ε = 0.2 √R_f', xs: line, ys: line.map((R) => 0.2 * Math.sqrt(R)), color: '#555', dashed: true }],
  [
    ...DATASETS.map((d) => ({ name: TITLE[d], color: COLOR[d] })),
    ...ARCHS.map((a) => ({ name: MARK[a][1], color: '#333', marker: MARK[a][0] })),
    { name: 'hollow: at initialisation', color: '#333', marker: 'circle' as Marker, hollow: true },
  ],
  'R_f (relative stability, logits)',
  'test error',
);

// Figure 2: the sweep, R_f and the test error against P.
seriesChart(
  join(out, 'sweep.svg'),
  `MNIST: R_f and test error against the training-set size P (δ = ${DELTA} px)`,
  SWEEP_ARCHS.flatMap((a, k) => {
    const rs = SWEEP.map((P) => get(`mnist/${a}/P${P}`));
    const color = ['#1f77b4', '#ff7f0e'][k] as string;
    return [
      { name: `R_f ${MARK[a][1]}`, xs: SWEEP, ys: rs.map((r) => r.R), color },
      { name: `error % ${MARK[a][1]}`, xs: SWEEP, ys: rs.map((r) => 100 * r.testError), color, dashed: true },
    ];
  }),
  'training images P',
  'R_f; test error in %',
  { logX: true, zero: false },
);

console.log(`\nSpearman ρ(R_f, error) over the ${trainedGrid.length} trained networks: ${summary.spearman.pooled.rhoR.toFixed(2)}; ρ(D_f, error): ${summary.spearman.pooled.rhoD.toFixed(2)}`);
for (const d of DATASETS) console.log(`  ${TITLE[d]}: ρ(R_f) ${byDataset[d]!.rhoR.toFixed(2)}, ρ(D_f) ${byDataset[d]!.rhoD.toFixed(2)}`);
console.log(`wrote ${summaryPath} (npm run experiments:doc writes the README's tables from it), ${join(out, 'error-vs-rf.svg')}/.png and sweep.svg/.png (${summary.minutes} min)`);
