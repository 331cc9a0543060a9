/**
 * CIFAR-10 loader for the examples and tests, binary version (each record: 1 label byte, then
 * 3,072 bytes: the red, green and blue 32 × 32 planes, row-major).
 *
 * Where the files are, in order: an explicit `dir`, the environment variable `INFOGEO_CIFAR10_DIR`,
 * then `../shared/datasets/cifar10` next to the repository, which holds `data_batch_1.bin` (10,000
 * training images) and `test_batch_first1000.bin` (the first 1,000 test images).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CIFAR10_FILES = { train: 'data_batch_1.bin', test: 'test_batch_first1000.bin' } as const;
export const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'] as const;
/** The usual per-channel normalisation (the diffeo-sota scripts'): (pixel/255 − mean) / std. */
export const CIFAR10_MEAN = [0.4914, 0.4822, 0.4465] as const;
export const CIFAR10_STD = [0.2023, 0.1994, 0.201] as const;

/** The folder to read CIFAR-10 from (see the module comment). */
export function cifar10Dir(dir?: string): string {
  return resolve(dir ?? process.env['INFOGEO_CIFAR10_DIR'] ?? resolve(REPO, '..', 'shared', 'datasets', 'cifar10'));
}

export interface Cifar10Split {
  /** Pixels scaled to [0, 1], NHWC (`count × 32 × 32 × 3`). */
  images: Float32Array;
  labels: Uint8Array;
  count: number;
}

/** Reads one split (the first `limit` records, or all), with a clear error when the file is missing. */
export function loadCifar10(split: 'train' | 'test', { dir, limit }: { dir?: string; limit?: number } = {}): Cifar10Split {
  const root = cifar10Dir(dir);
  const path = resolve(root, CIFAR10_FILES[split]);
  if (!existsSync(path)) {
    throw new Error(`CIFAR-10 ${split} file not found: ${path}.\nPoint the examples at a folder with ${CIFAR10_FILES[split]} with --data DIR or INFOGEO_CIFAR10_DIR=DIR.`);
  }
  const buf = readFileSync(path);
  if (buf.length % 3073 !== 0) throw new Error(`${path}: ${buf.length} bytes is not a whole number of 3,073-byte CIFAR-10 records.`);
  const count = Math.min(buf.length / 3073, limit ?? Infinity);
  const images = new Float32Array(count * 3072);
  const labels = new Uint8Array(count);
  for (let r = 0; r < count; r++) {
    const off = r * 3073;
    labels[r] = buf[off] as number;
    for (let ch = 0; ch < 3; ch++)
      for (let p = 0; p < 1024; p++) images[r * 3072 + p * 3 + ch] = (buf[off + 1 + ch * 1024 + p] as number) / 255;
  }
  return { images, labels, count };
}
