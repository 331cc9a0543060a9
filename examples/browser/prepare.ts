/**
 * Writes the explorer's assets into examples/browser/public/ (git-ignored), which Vite serves and
 * copies into the built site:
 *
 * - `model/`: the MNIST CNN (the checkpoint of `npm run demo` when there is one, else a fresh
 *   seeded model, which the page says);
 * - `digits.json`: 30 MNIST test digits, the first three of each class, as 8-bit pixels with their
 *   labels, and the normalisation the CNN was trained with (the page normalises them itself, so
 *   that the mean and std it shows are the ones it uses);
 * - `wasm/`: the `.wasm` binaries of `@tensorflow/tfjs-backend-wasm`, which the page points
 *   `setWasmPaths('./wasm/')` at.
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hasModel, saveModel } from '../checkpoint.js';
import { loadMnist } from '../../src/data/index.js';
import { exampleDataset, MNIST_MEAN, MNIST_STD } from '../data.js';
import { mnistCnn } from '../models.js';

/** The format of public/digits.json, read by the page (images.ts). */
export interface DigitsFile {
  /** The normalisation the bundled model expects: x = (pixel − mean)/std, pixels in [0, 1]. */
  mean: number;
  std: number;
  height: number;
  width: number;
  /** One entry per digit: its label, its index in the MNIST test set, and its pixels 0…255 (row-major). */
  digits: { label: number; index: number; pixels: number[] }[];
  /** Whether the model is the trained checkpoint (else a seeded untrained CNN). */
  trained: boolean;
}

const PER_CLASS = 3;

export async function prepareBrowserAssets(): Promise<{ trained: boolean }> {
  const here = dirname(fileURLToPath(import.meta.url));
  const pub = join(here, 'public');
  const ckpt = join(here, '..', 'mnist-cnn', 'checkpoints', 'medium_cnn');
  mkdirSync(join(pub, 'model'), { recursive: true });
  const trained = hasModel(ckpt);
  if (trained) for (const f of ['model.json', 'weights.bin']) copyFileSync(join(ckpt, f), join(pub, 'model', f));
  else {
    tf.env().set('PROD', true);
    await tf.setBackend('cpu');
    await saveModel(mnistCnn(42), join(pub, 'model'));
  }

  const test = loadMnist('test', { dir: exampleDataset('mnist'), limit: 1000 });
  const digits: DigitsFile['digits'] = [];
  for (let label = 0; label < 10; label++) {
    let found = 0;
    for (let i = 0; i < test.labels.length && found < PER_CLASS; i++) {
      if (test.labels[i] !== label) continue;
      digits.push({ label, index: i, pixels: Array.from(test.images.subarray(i * 784, (i + 1) * 784), (p) => Math.round(p * 255)) });
      found++;
    }
  }
  const file: DigitsFile = { mean: MNIST_MEAN, std: MNIST_STD, height: 28, width: 28, digits, trained };
  writeFileSync(join(pub, 'digits.json'), JSON.stringify(file));

  // The wasm backend fetches its binary at run time from the prefix given to setWasmPaths.
  const wasmDist = dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm'));
  mkdirSync(join(pub, 'wasm'), { recursive: true });
  for (const f of readdirSync(wasmDist).filter((f) => f.endsWith('.wasm'))) copyFileSync(join(wasmDist, f), join(pub, 'wasm', f));
  return { trained };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { trained } = await prepareBrowserAssets();
  console.log(`wrote examples/browser/public/ (${trained ? 'the trained checkpoint of npm run demo' : 'an untrained model: run npm run demo first for the trained one'}, 30 test digits, the wasm binaries)`);
}
