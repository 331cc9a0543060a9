/**
 * MNIST loader for the examples and tests: the four gzip IDX files of LeCun, Cortes and Burges.
 *
 * Where the files are, in order: an explicit `dir`, the environment variable `INFOGEO_MNIST_DIR`,
 * then `../shared/datasets/mnist` next to the repository.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const MNIST_FILES = {
  train: { images: 'train-images-idx3-ubyte.gz', labels: 'train-labels-idx1-ubyte.gz' },
  test: { images: 't10k-images-idx3-ubyte.gz', labels: 't10k-labels-idx1-ubyte.gz' },
} as const;

/** MNIST normalisation used by the paper's CNN: (pixel/255 − mean) / std. */
export const MNIST_MEAN = 0.1307;
export const MNIST_STD = 0.3081;

/** The folder to read MNIST from (see the module comment). */
export function mnistDir(dir?: string): string {
  return resolve(dir ?? process.env['INFOGEO_MNIST_DIR'] ?? resolve(REPO, '..', 'shared', 'datasets', 'mnist'));
}

export interface MnistSplit {
  /** Pixels scaled to [0, 1], row-major, `count × 784`. */
  images: Float32Array;
  labels: Uint8Array;
  count: number;
}

function readIdx(path: string, magic: number): { dims: number[]; data: Uint8Array } {
  const buf = gunzipSync(readFileSync(path));
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const got = view.getUint32(0);
  if (got !== magic) throw new Error(`${path}: not an IDX file with magic ${magic} (got ${got}).`);
  const rank = magic & 0xff;
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i));
  return { dims, data: new Uint8Array(buf.buffer, buf.byteOffset + 4 + 4 * rank) };
}

/**
 * Reads one split (the first `limit` examples, or all). Throws an error that says which files are
 * missing and how to point the loader elsewhere.
 */
export function loadMnist(split: 'train' | 'test', { dir, limit }: { dir?: string; limit?: number } = {}): MnistSplit {
  const root = mnistDir(dir);
  const files = MNIST_FILES[split];
  const missing = Object.values(files).filter((f) => !existsSync(resolve(root, f)));
  if (missing.length > 0) {
    throw new Error(
      `MNIST ${split} files not found in ${root}: ${missing.join(', ')}.\n` +
        `Point the examples at a folder with the four gzip IDX files with --data DIR or INFOGEO_MNIST_DIR=DIR.`,
    );
  }
  const img = readIdx(resolve(root, files.images), 2051);
  const lab = readIdx(resolve(root, files.labels), 2049);
  const [n, rows, cols] = img.dims as [number, number, number];
  if (rows !== 28 || cols !== 28 || lab.dims[0] !== n) throw new Error(`${root}: unexpected MNIST shapes ${img.dims} / ${lab.dims}.`);
  const count = Math.min(n, limit ?? n);
  const images = new Float32Array(count * 784);
  for (let i = 0; i < images.length; i++) images[i] = (img.data[i] as number) / 255;
  return { images, labels: lab.data.slice(0, count), count };
}
