/**
 * `infogeo/data` (Node only): the image data sets the examples and the papers use — MNIST,
 * Fashion-MNIST and CIFAR-10 — downloaded from their publishers, checked against the published
 * checksums, cached, and read from their official formats.
 *
 * From a shell, `npx infogeo-data mnist` (or `fashion-mnist`, `cifar10`; `--dir D` for another
 * folder) downloads a data set into the cache folder: `INFOGEO_DATA`, or `infogeo` in the user's
 * cache directory (`~/.cache/infogeo` on Linux). The loaders read from the same folder by default.
 *
 * Offline, or where the publishers' sites are blocked: set `INFOGEO_DATA_MIRROR` to a URL that
 * serves the same files under each data set's name, and the command (and {@link downloadDataset})
 * fetches `URL/mnist/train-images-idx3-ubyte.gz` and so on from it instead, checking the same MD5s;
 * or copy the files into a folder yourself and pass it (`--dir D` to the command, `{ dir: D }` to
 * the loaders).
 *
 * ```ts
 * import { loadMnist } from 'infogeo/data';
 * const test = loadMnist('test', { limit: 100 });   // after `npx infogeo-data mnist`
 * // test.images: Float32Array of 100 × 28 × 28 × 1 pixels in [0, 1]; test.labels: Uint8Array
 * ```
 *
 * @module infogeo/data
 */
export { DATASETS, DATASET_NAMES } from './catalog.js';
export type { DatasetName, DatasetSpec, PublishedFile } from './catalog.js';
export { dataRoot, datasetDir } from './store.js';
export { downloadDataset } from './download.js';
export type { DownloadOptions, DownloadProgress, DownloadResult } from './download.js';
export { CIFAR10_CLASSES, FASHION_MNIST_CLASSES, loadCifar10, loadFashionMnist, loadMnist, MNIST_CLASSES } from './load.js';
export type { ImageSet, LoadOptions } from './load.js';
export { DataError } from '../errors.js';
