/**
 * What the experiments share: the two MNIST networks, trained with checkpoints along the way
 * (resumable: a rerun loads the checkpoints it has and trains only the steps it lacks), the test
 * images and seeded draws (the statistics are in ../stats.ts).
 *
 * Training is the MNIST example's recipe (SGD, lr 0.01, batch 60, the training set in its file
 * order, every initialiser seeded), so a rerun on the same backend gives the same weights. Plain
 * SGD has no optimiser state: training from a checkpoint on is exactly the run that did not stop.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadMnist } from '../../src/data/index.js';
import { uniformGenerator } from '../../src/linalg/random.js';
import { hasModel, loadModel, saveModel } from '../checkpoint.js';
import { exampleDataset, normaliseMnist } from '../data.js';
import { fitInOrder, mnistCnn } from '../models.js';
import { progressBar } from '../progress.js';

/** The two networks of the experiments. */
export type Network = 'cnn' | 'mlp';

/** The steps (SGD, batch 60) at which a checkpoint is kept: 6 over 800 steps, 3 in --quick runs. */
export function checkpointSteps(quick: boolean): number[] {
  return quick ? [0, 20, 40] : [0, 50, 100, 200, 400, 800];
}

/**
 * The networks: the MNIST example's CNN (conv32-conv64-maxpool-dense128-dense10, ReLU; penultimate
 * layer 'fc1') and a 2-hidden-layer MLP of width 128 with tanh units (smooth: its metric has
 * curvature; penultimate layer 'hidden2').
 */
export function buildNetwork(network: Network): tfl.LayersModel {
  if (network === 'cnn') return mnistCnn(42);
  const glorot = (seed: number) => tfl.initializers.glorotUniform({ seed });
  return tfl.sequential({
    name: 'mnist_mlp',
    layers: [
      tfl.layers.flatten({ inputShape: [28, 28, 1] }),
      tfl.layers.dense({ name: 'hidden1', units: 128, activation: 'tanh', kernelInitializer: glorot(42) }),
      tfl.layers.dense({ name: 'hidden2', units: 128, activation: 'tanh', kernelInitializer: glorot(43) }),
      tfl.layers.dense({ name: 'fc2', units: 10, activation: 'softmax', kernelInitializer: glorot(44) }),
    ],
  });
}

/** The penultimate layer of each network (the feature map of the volume element). */
export const PENULTIMATE: Record<Network, string> = { cnn: 'fc1', mlp: 'hidden2' };

/** The first `count` MNIST test images (normalised) and their labels. */
export function testSet(count: number, dataDir?: string): { x: tf.Tensor4D; labels: Int32Array } {
  const test = loadMnist('test', { dir: exampleDataset('mnist', dataDir), limit: count });
  return { x: normaliseMnist(test.images, test.count), labels: Int32Array.from(test.labels) };
}

/** Test accuracy of a model on `x`. */
export function accuracy(model: tfl.LayersModel, x: tf.Tensor, labels: Int32Array): number {
  return tf.tidy(() => {
    const pred = tf.argMax(model.predict(x) as tf.Tensor, 1).dataSync();
    return labels.filter((l, i) => l === pred[i]).length / labels.length;
  });
}

/**
 * The command line of the experiments: --quick, --retrain, --data DIR. `out` is the folder of the
 * figures and partial results (ignored by git); `summary` is where the summary goes: a full run's
 * next to the experiment's README, where it is committed (the README's tables are generated from it
 * by scripts/experiments-doc.ts), a --quick run's in out/quick/.
 */
export function experimentArgs(moduleUrl: string) {
  const args = process.argv.slice(2);
  const here = dirname(fileURLToPath(moduleUrl));
  const quick = args.includes('--quick');
  commitAtStart ??= gitCommit();
  return {
    quick,
    retrain: args.includes('--retrain'),
    dataDir: args.includes('--data') ? args[args.indexOf('--data') + 1] : undefined,
    // A --quick run writes apart: its partial results must never stand in for a full run's.
    out: quick ? join(here, 'out', 'quick') : join(here, 'out'),
    summary: quick ? join(here, 'out', 'quick', 'summary.json') : join(here, 'summary.json'),
  };
}

/** The commit of the code when the run started (read by {@link experimentArgs}). */
let commitAtStart: { commit: string; modified: boolean } | undefined;

/**
 * HEAD, and whether the code that makes the numbers (src/, examples/ but their READMEs and
 * summaries) differs from it; 'unknown' outside a git work tree.
 */
function gitCommit(): { commit: string; modified: boolean } {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
  try {
    const git = (...a: string[]) => execFileSync('git', ['-C', root, ...a], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const commit = git('rev-parse', 'HEAD');
    const changes = git('status', '--porcelain', '--untracked-files=no', '--', 'src', 'examples', ':(exclude,glob)examples/**/*.md', ':(exclude,glob)examples/**/summary.json');
    return { commit, modified: changes !== '' };
  } catch {
    return { commit: 'unknown', modified: false };
  }
}

/** What made a summary's numbers: the commit, the day, the machine and the backend. */
function provenance() {
  const { commit, modified } = commitAtStart ?? gitCommit();
  return {
    commit,
    modified,
    date: new Date().toISOString().slice(0, 10),
    machine: `${cpus()[0]?.model.trim() ?? 'unknown CPU'}, ${availableParallelism()} cores`,
    node: process.version,
    tfjs: tf.version_core,
    backend: tf.getBackend(),
  };
}

/**
 * A summary as committed: non-integers rounded to 6 significant digits (the READMEs print 3 or 4),
 * and every innermost array or object (one row, one path, one list of per-plane values) on one line,
 * so that the file stays small and a rerun's diff reads row by row.
 */
export function summaryJson(summary: object): string {
  const text = JSON.stringify(summary, (_, v: unknown) => (typeof v === 'number' && Number.isFinite(v) && !Number.isInteger(v) ? Number(v.toPrecision(6)) : v), 2);
  return `${text.replace(/([[{])\n\s*([^[\]{}]*?)\n\s*([\]}])/g, (_, open: string, body: string, close: string) => `${open}${body.replace(/\n\s*/g, ' ')}${close}`)}\n`;
}

const CHECKPOINTS = join(dirname(fileURLToPath(import.meta.url)), 'checkpoints');

/** The folder of one checkpoint. */
function checkpointDir(network: Network, step: number, quick: boolean): string {
  return join(CHECKPOINTS, quick ? `${network}_quick` : network, `step-${step}`);
}

/**
 * The network's checkpoints at {@link checkpointSteps}, training what is missing. Returns each
 * step's folder; load one with {@link loadCheckpoint}. Shared by the experiments: the first one run
 * trains, the others reuse.
 */
export async function trainedCheckpoints(network: Network, { quick, retrain, dataDir }: { quick: boolean; retrain: boolean; dataDir?: string }): Promise<{ step: number; dir: string }[]> {
  const steps = checkpointSteps(quick);
  const all = steps.map((step) => ({ step, dir: checkpointDir(network, step, quick) }));
  const have = retrain ? [] : all.filter((c) => hasModel(c.dir));
  if (have.length === all.length) return all;
  // Resume from the last checkpoint of an unbroken prefix (or from the seeded initialisation).
  let from = -1;
  for (const c of all) {
    if (!have.includes(c)) break;
    from = c.step;
  }
  const last = steps[steps.length - 1] as number;
  const model = from >= 0 ? await loadModel(checkpointDir(network, from, quick)) : buildNetwork(network);
  if (from < 0) {
    await saveModel(model, checkpointDir(network, 0, quick));
    from = 0;
  }
  model.compile({ optimizer: tf.train.sgd(0.01), loss: 'sparseCategoricalCrossentropy' });
  const train = loadMnist('train', { dir: exampleDataset('mnist', dataDir), limit: last * 60 });
  const xs = normaliseMnist(train.images.subarray(from * 60 * 784), last * 60 - from * 60);
  const ys = tf.tensor1d(Array.from(train.labels.subarray(from * 60)), 'float32');
  const bar = progressBar(`training the ${network.toUpperCase()} (steps ${from}–${last})`, last - from);
  await fitInOrder(model, xs, ys, async (done, logs) => {
    const step = from + done;
    if (steps.includes(step)) await saveModel(model, checkpointDir(network, step, quick));
    bar.update(done, `loss ${logs?.['loss']?.toFixed(3)}`);
  });
  tf.dispose([xs, ys]);
  model.dispose();
  return all;
}

/** A checkpoint as a model. */
export function loadCheckpoint(dir: string): Promise<tfl.LayersModel> {
  return loadModel(dir);
}

/** Seeded integers in [0, n). */
export function randomInts(seed: number): (n: number) => number {
  const u = uniformGenerator(seed);
  return (n) => Math.min(n - 1, Math.floor(u() * n));
}

/** Writes the summary (see {@link experimentArgs}'s `summary`), with the run's {@link provenance} first. */
export function writeSummary(path: string, summary: object): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, summaryJson({ provenance: provenance(), ...summary }));
}

/** A JSON file if it exists (an experiment's partial results, for resuming). */
export function readJson<T>(path: string): T | undefined {
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as T) : undefined;
}
