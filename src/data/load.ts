/**
 * Loaders for the official file formats: gzip IDX (MNIST, Fashion-MNIST) and CIFAR-10's binary
 * batches. They return plain arrays (pixels in [0, 1]), not tensors: make tensors of what you need.
 *
 * @module
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { DataError, ValueError } from '../errors.js';
import type { DatasetName } from './catalog.js';
import { datasetDir } from './store.js';
import { checkDataOptions } from '../optionNames.js';
import type { OptionNames } from '../optionNames.js';

/** A split of an image data set, in memory. */
export interface ImageSet {
  /** Pixels scaled to [0, 1], NHWC, row-major: `count × height × width × channels` numbers. */
  images: Float32Array;
  /** One class index per image. */
  labels: Uint8Array;
  /** How many images. */
  count: number;
  /** `[height, width, channels]` of one image (`[28, 28, 1]` or `[32, 32, 3]`). */
  shape: [number, number, number];
  /** The class names, by index. */
  classes: readonly string[];
}

/** Options of the loaders. */
export interface LoadOptions {
  /**
   * The folder that holds the data set's files. Default: the cache folder's (`INFOGEO_DATA`, see
   * `dataRoot`), where `npx infogeo-data NAME` puts them.
   */
  dir?: string;
  /** Read only the first `limit` images (default: all). */
  limit?: number;
}

/** The option names of {@link LoadOptions}. */
const LOAD_OPTIONS: OptionNames<LoadOptions> = { dir: true, limit: true };

/** The digits' names, for MNIST. */
export const MNIST_CLASSES = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'] as const;
/** Fashion-MNIST's classes, by index. */
export const FASHION_MNIST_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'] as const;
/** CIFAR-10's classes, by index. */
export const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'] as const;

function checkLimit(fn: string, limit: number | undefined): void {
  if (limit !== undefined && !(Number.isInteger(limit) && limit >= 0)) throw new ValueError(`${fn}: limit must be a whole number ≥ 0, got ${limit}.`);
}

function checkSplit(fn: string, split: unknown): asserts split is 'train' | 'test' {
  if (split !== 'train' && split !== 'test') throw new ValueError(`${fn}: split must be 'train' or 'test', got ${JSON.stringify(split)}.`);
}

function missing(fn: string, title: string, name: DatasetName, dir: string, files: string[], explicit: boolean): DataError {
  const how = explicit
    ? `pass the folder that holds them as { dir }`
    : `run \`npx infogeo-data ${name}\` to download ${title} into it, or pass the folder that holds the files as { dir }`;
  return new DataError(`${fn}: ${title}'s ${files.join(', ')} ${files.length > 1 ? 'are' : 'is'} not in ${dir}; ${how}.`);
}

const IDX_FILES = {
  train: { images: 'train-images-idx3-ubyte.gz', labels: 'train-labels-idx1-ubyte.gz' },
  test: { images: 't10k-images-idx3-ubyte.gz', labels: 't10k-labels-idx1-ubyte.gz' },
} as const;

function readIdx(fn: string, path: string, magic: number): { dims: number[]; data: Uint8Array } {
  let buf: Buffer;
  try {
    buf = gunzipSync(readFileSync(path));
  } catch (e) {
    throw new DataError(`${fn}: ${path} is not a readable gzip file (${e instanceof Error ? e.message : String(e)}); delete it and download it again.`);
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const got = buf.length >= 4 ? view.getUint32(0) : -1;
  if (got !== magic) throw new DataError(`${fn}: ${path} is not an IDX file with magic ${magic} (got ${got}).`);
  const rank = magic & 0xff;
  if (buf.length < 4 + 4 * rank) throw new DataError(`${fn}: ${path} is truncated: its header is cut short.`);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i));
  const data = buf.subarray(4 + 4 * rank);
  if (data.length < dims.reduce((a, b) => a * b, 1)) throw new DataError(`${fn}: ${path} is truncated: its header says ${dims.join(' × ')} bytes.`);
  return { dims, data };
}

function loadIdx(fn: string, name: DatasetName, title: string, classes: readonly string[], split: 'train' | 'test', options: LoadOptions): ImageSet {
  checkDataOptions(options, fn, LOAD_OPTIONS);
  checkSplit(fn, split);
  checkLimit(fn, options.limit);
  const root = datasetDir(name, options.dir);
  const files = IDX_FILES[split];
  const absent = Object.values(files).filter((f) => !existsSync(join(root, f)));
  if (absent.length > 0) throw missing(fn, title, name, root, absent, options.dir !== undefined);
  const img = readIdx(fn, join(root, files.images), 2051);
  const lab = readIdx(fn, join(root, files.labels), 2049);
  const [n, rows, cols] = img.dims as [number, number, number];
  if (rows !== 28 || cols !== 28 || lab.dims[0] !== n) throw new DataError(`${fn}: ${root}: unexpected shapes ${img.dims.join('×')} (images) and ${lab.dims.join('×')} (labels).`);
  const count = Math.min(n, options.limit ?? n);
  const images = new Float32Array(count * 784);
  for (let i = 0; i < images.length; i++) images[i] = (img.data[i] as number) / 255;
  return { images, labels: lab.data.slice(0, count), count, shape: [28, 28, 1], classes };
}

/**
 * Reads MNIST (LeCun, Cortes, Burges): 60,000 training and 10,000 test digits, 28 × 28 × 1, from
 * the four official gzip IDX files.
 *
 * @param split - `'train'` or `'test'`.
 * @param options - the folder and how many images; see {@link LoadOptions}.
 * @returns pixels in [0, 1] and labels; see {@link ImageSet}.
 * @throws {@link DataError} when the files are missing (the message says which, and the command
 *   that downloads them) or broken; `ValueError` for a bad split or limit.
 */
export function loadMnist(split: 'train' | 'test', options: LoadOptions = {}): ImageSet {
  return loadIdx('loadMnist', 'mnist', 'MNIST', MNIST_CLASSES, split, options);
}

/**
 * Reads Fashion-MNIST (Xiao, Rasul, Vollgraf): 60,000 training and 10,000 test images of
 * clothing, 28 × 28 × 1, same format as MNIST. Debian's `dataset-fashion-mnist` package has the
 * same files in `/usr/share/datasets/fashion-mnist` (pass it as `dir`).
 *
 * @param split - `'train'` or `'test'`.
 * @param options - the folder and how many images; see {@link LoadOptions}.
 * @returns pixels in [0, 1] and labels; see {@link ImageSet}.
 * @throws {@link DataError} when the files are missing or broken; `ValueError` for a bad split or limit.
 */
export function loadFashionMnist(split: 'train' | 'test', options: LoadOptions = {}): ImageSet {
  return loadIdx('loadFashionMnist', 'fashion-mnist', 'Fashion-MNIST', FASHION_MNIST_CLASSES, split, options);
}

const RECORD = 3073;

/**
 * Reads CIFAR-10 (Krizhevsky): 50,000 training images in five batches and 10,000 test images,
 * 32 × 32 × 3, from the official binary files (`data_batch_1.bin` … `data_batch_5.bin`,
 * `test_batch.bin`; each record one label byte and the red, green and blue 32 × 32 planes).
 *
 * The training split reads the batches in order, only as many as `limit` needs (so a folder
 * with `data_batch_1.bin` alone serves `limit ≤ 10,000`). A folder whose test file is a prefix of
 * the official one named `test_batch_first1000.bin` is read when `test_batch.bin` is absent.
 *
 * @param split - `'train'` or `'test'`.
 * @param options - the folder and how many images; see {@link LoadOptions}.
 * @returns pixels in [0, 1], NHWC (converted from the files' planes), and labels; see {@link ImageSet}.
 * @throws {@link DataError} when a needed file is missing or is not whole records; `ValueError` for a bad split or limit.
 */
export function loadCifar10(split: 'train' | 'test', options: LoadOptions = {}): ImageSet {
  const fn = 'loadCifar10';
  checkDataOptions(options, fn, LOAD_OPTIONS);
  checkSplit(fn, split);
  checkLimit(fn, options.limit);
  const root = datasetDir('cifar10', options.dir);
  let files: string[];
  if (split === 'train') {
    const batches = Math.min(5, Math.max(1, Math.ceil((options.limit ?? 50000) / 10000)));
    files = Array.from({ length: batches }, (_, i) => `data_batch_${i + 1}.bin`);
  } else {
    files = [existsSync(join(root, 'test_batch.bin')) || !existsSync(join(root, 'test_batch_first1000.bin')) ? 'test_batch.bin' : 'test_batch_first1000.bin'];
  }
  const absent = files.filter((f) => !existsSync(join(root, f)));
  if (absent.length > 0) throw missing(fn, 'CIFAR-10', 'cifar10', root, absent, options.dir !== undefined);
  const bufs = files.map((f) => {
    const buf = readFileSync(join(root, f));
    if (buf.length % RECORD !== 0) throw new DataError(`${fn}: ${join(root, f)}: ${buf.length} bytes is not a whole number of 3,073-byte CIFAR-10 records.`);
    return buf;
  });
  const available = bufs.reduce((a, b) => a + b.length / RECORD, 0);
  const count = Math.min(available, options.limit ?? available);
  const images = new Float32Array(count * 3072);
  const labels = new Uint8Array(count);
  let r = 0;
  for (const buf of bufs) {
    for (let off = 0; off < buf.length && r < count; off += RECORD, r++) {
      labels[r] = buf[off] as number;
      const base = r * 3072;
      for (let ch = 0; ch < 3; ch++) {
        const plane = off + 1 + ch * 1024;
        for (let p = 0; p < 1024; p++) images[base + p * 3 + ch] = (buf[plane + p] as number) / 255;
      }
    }
  }
  return { images, labels, count, shape: [32, 32, 3], classes: CIFAR10_CLASSES };
}
