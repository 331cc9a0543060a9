/**
 * Where the examples find their data sets, and how they normalise them. A data set is read from,
 * in order: the folder given with `--data DIR`; `../shared/datasets/NAME` next to the repository;
 * the cache folder where `npm run data -- NAME` (in this repository; `npx infogeo-data NAME` for
 * users of the package) puts it; for Fashion-MNIST, Debian's `dataset-fashion-mnist` package
 * (`/usr/share/datasets/fashion-mnist`). When none has it, the example prints one line that says so and
 * exits with code 1.
 */
import * as tf from '@tensorflow/tfjs-core';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DATASETS, datasetDir, type DatasetName } from '../src/data/index.js';

/** MNIST normalisation used by the paper's CNN: (pixel − mean) / std, pixels in [0, 1]. */
export const MNIST_MEAN = 0.1307;
export const MNIST_STD = 0.3081;

/** MNIST pixels in [0, 1] (n images of 28 × 28) as the normalised batch `[n, 28, 28, 1]`. */
export function normaliseMnist(px: Float32Array, n: number): tf.Tensor4D {
  return tf.tidy(() => tf.div(tf.sub(tf.tensor4d(px, [n, 28, 28, 1]), MNIST_MEAN), MNIST_STD));
}

/** Normalised MNIST images back to pixels in [0, 1] (clipped), as one flat array. */
export function mnistPixels(t: tf.Tensor): Float32Array {
  return tf.tidy(() => tf.clipByValue(tf.add(tf.mul(t, MNIST_STD), MNIST_MEAN), 0, 1).dataSync() as Float32Array);
}

/** The box of normalised MNIST pixels, [(0 − mean)/std, (1 − mean)/std]: what the paths clamp to. */
export const MNIST_BOX: [number, number] = [-MNIST_MEAN / MNIST_STD, (1 - MNIST_MEAN) / MNIST_STD];
/** The usual CIFAR-10 per-channel normalisation (the diffeo-sota scripts'). */
export const CIFAR10_MEAN = [0.4914, 0.4822, 0.4465] as const;
export const CIFAR10_STD = [0.2023, 0.1994, 0.201] as const;

/** `n` CIFAR-10 images (pixels in [0, 1], NHWC) normalised per channel, `[n, 32, 32, 3]`. */
export function normaliseCifar10(px: Float32Array, n: number): tf.Tensor4D {
  return tf.tidy(() => tf.div(tf.sub(tf.tensor4d(px, [n, 32, 32, 3]), tf.tensor1d([...CIFAR10_MEAN])), tf.tensor1d([...CIFAR10_STD])));
}

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The data sets' folder that the repository's tests and examples share (never committed). */
export const SHARED_DATASETS = resolve(REPO, '..', 'shared', 'datasets');

/** Where Debian's `dataset-fashion-mnist` package puts Fashion-MNIST's four files. */
const DEBIAN_FASHION_MNIST = '/usr/share/datasets/fashion-mnist';

/** The files an example needs from a data set's folder (the CIFAR-10 examples use batch 1 and the test batch). */
function has(name: DatasetName, dir: string): boolean {
  if (name === 'cifar10') return existsSync(join(dir, 'data_batch_1.bin')) && (existsSync(join(dir, 'test_batch.bin')) || existsSync(join(dir, 'test_batch_first1000.bin')));
  return DATASETS[name].files.every((f) => existsSync(join(dir, f.name)));
}

/** The first folder that holds the data set (see the module comment), or undefined. */
export function findDataset(name: DatasetName, override?: string): string | undefined {
  const candidates = override !== undefined ? [resolve(override)] : [join(SHARED_DATASETS, name), datasetDir(name), ...(name === 'fashion-mnist' ? [DEBIAN_FASHION_MNIST] : [])];
  return candidates.find((dir) => has(name, dir));
}

/** {@link findDataset}, or one line on stderr with the command that fetches the data set, and exit code 1. */
export function exampleDataset(name: DatasetName, override?: string): string {
  const dir = findDataset(name, override);
  if (dir !== undefined) return dir;
  const where = override !== undefined ? resolve(override) : `${join(SHARED_DATASETS, name)} or ${datasetDir(name)}`;
  console.error(`${DATASETS[name].title} not found in ${where}: run \`npm run data -- ${name}\` to download it (or pass --data DIR).`);
  process.exit(1);
}
