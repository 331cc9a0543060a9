/**
 * Writes the browser demo's assets into examples/browser/public/ (git-ignored): the MNIST CNN
 * (the checkpoint of `npm run demo` when there is one, else a fresh seeded model, which the page
 * says) and two normalised test digits, a 7 and a 1, from the MNIST loader.
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hasModel, saveModel } from '../checkpoint.js';
import { loadMnist } from '../../src/data/index.js';
import { exampleDataset, MNIST_MEAN, MNIST_STD } from '../data.js';
import { mnistCnn } from '../models.js';

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
  const digit = (label: number) => {
    const i = test.labels.indexOf(label);
    return Array.from(test.images.subarray(i * 784, (i + 1) * 784), (p) => Math.fround((p - MNIST_MEAN) / MNIST_STD));
  };
  writeFileSync(join(pub, 'digits.json'), JSON.stringify({ mean: MNIST_MEAN, std: MNIST_STD, source: digit(7), target: digit(1), labels: [7, 1], trained }));
  return { trained };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { trained } = await prepareBrowserAssets();
  console.log(`wrote examples/browser/public/ (${trained ? 'the trained checkpoint of npm run demo' : 'an untrained model: run npm run demo first for the trained one'})`);
}
