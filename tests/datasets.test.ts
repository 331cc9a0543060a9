/**
 * The example data loaders (no tensors, so cpu project only): real MNIST and CIFAR-10 from
 * ../shared/datasets, the layouts, the well-known first labels, and the errors for missing or
 * broken files.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cifar10Dir, loadCifar10 } from '../examples/data/cifar10.js';
import { loadMnist } from '../examples/data/mnist.js';

describe('loadMnist', () => {
  it('reads the IDX files: counts, pixel range, and the well-known first labels', () => {
    const test = loadMnist('test');
    expect(test.count).toBe(10000);
    expect(test.images.length).toBe(10000 * 784);
    expect(test.labels[0]).toBe(7); // the first MNIST test digit is a 7
    const train = loadMnist('train', { limit: 3 });
    expect(Array.from(train.labels)).toEqual([5, 0, 4]); // 5, 0, 4: the first three training digits
    expect(train.images.every((v) => v >= 0 && v <= 1)).toBe(true);
    expect(Math.max(...train.images)).toBe(1);
  });

  it('says which files are missing and how to point elsewhere', () => {
    expect(() => loadMnist('test', { dir: mkdtempSync(join(tmpdir(), 'mnist-')) })).toThrow(/t10k-images-idx3-ubyte.gz.*\n.*INFOGEO_MNIST_DIR/s);
  });
});

describe('loadCifar10', () => {
  it('reads the binary records into NHWC pixels in [0, 1]', () => {
    const train = loadCifar10('train');
    const test = loadCifar10('test');
    expect([train.count, test.count]).toEqual([10000, 1000]);
    expect(train.labels[0]).toBe(6); // the first image of data_batch_1 is a frog
    expect(test.labels[0]).toBe(3); // the first test image is a cat
    expect(train.labels.every((l) => l < 10)).toBe(true);
    // NHWC: pixel (row 0, col 1), channels R, G, B come from bytes 1 + 1, 1 + 1024 + 1, 1 + 2048 + 1 of record 0.
    const raw = readFileSync(join(cifar10Dir(), 'test_batch_first1000.bin'));
    expect([0, 1, 2].map((ch) => Math.round(test.images[3 + ch]! * 255))).toEqual([raw[2], raw[1026], raw[2050]]);
  });

  it('reports a missing or truncated file clearly', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cifar-'));
    expect(() => loadCifar10('test', { dir })).toThrow(/test_batch_first1000.bin.*\n.*INFOGEO_CIFAR10_DIR/s);
    writeFileSync(join(dir, 'test_batch_first1000.bin'), Buffer.alloc(3073 + 10));
    expect(() => loadCifar10('test', { dir })).toThrow(/not a whole number of 3,073-byte/);
  });
});
