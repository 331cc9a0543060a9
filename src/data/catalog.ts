/**
 * The data sets `infogeo/data` knows: where their official files are published, and the
 * checksums their authors published for them.
 *
 * @module
 */

/** The data sets that {@link downloadDataset} fetches and the loaders read. */
export type DatasetName = 'mnist' | 'fashion-mnist' | 'cifar10';

/** One file as its publisher distributes it, with the published size and MD5. */
export interface PublishedFile {
  /** The file name, appended to a mirror's URL. */
  name: string;
  /** Its size in bytes. */
  bytes: number;
  /** Its MD5, as the publisher (or torchvision's resource list, for MNIST) gives it, lowercase hex. */
  md5: string;
}

/** Where a data set comes from and what a complete copy on disk holds. */
export interface DatasetSpec {
  /** The name on the command line and in the cache folder. */
  name: DatasetName;
  /** A human name for messages. */
  title: string;
  /** The publisher's page, with the licence. */
  homepage: string;
  /** Folder URLs (ending in `/`) that serve {@link DatasetSpec.files}, tried in order. */
  mirrors: string[];
  /** The files to download. */
  files: PublishedFile[];
  /**
   * For a data set published as a `.tar.gz`: the archive members to keep, by their path in the
   * archive, and the name each gets in the data set's folder. The archive is deleted afterwards.
   */
  extract?: Record<string, string>;
  /** The files (with their sizes) a complete copy has in its folder once downloaded. */
  complete: Record<string, number>;
}

const IDX = ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz', 't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'] as const;
const CIFAR10_BATCHES = ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin', 'test_batch.bin'];

function idxSpec(name: DatasetName, title: string, homepage: string, mirrors: string[], sizes: number[], md5s: string[]): DatasetSpec {
  const files = IDX.map((file, i) => ({ name: file, bytes: sizes[i] as number, md5: md5s[i] as string }));
  return { name, title, homepage, mirrors, files, complete: Object.fromEntries(files.map((f) => [f.name, f.bytes])) };
}

/** Every data set's spec, by name. */
export const DATASETS: Readonly<Record<DatasetName, DatasetSpec>> = {
  mnist: idxSpec(
    'mnist',
    'MNIST',
    'http://yann.lecun.com/exdb/mnist/',
    // LeCun's own folder first; it often refuses scripted downloads, so torchvision's mirror of
    // the same files (same bytes, same MD5s) next.
    ['http://yann.lecun.com/exdb/mnist/', 'https://ossci-datasets.s3.amazonaws.com/mnist/'],
    [9912422, 28881, 1648877, 4542],
    ['f68b3c2dcbeaaa9fbdd348bbdeb94873', 'd53e105ee54ea40749a09fcbcd1e9432', '9fb629c4189551a2d022fa330f9573f3', 'ec29112dd5afa0611ce80d1b7f02629c'],
  ),
  'fashion-mnist': idxSpec(
    'fashion-mnist',
    'Fashion-MNIST',
    'https://github.com/zalandoresearch/fashion-mnist',
    ['http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/', 'https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/'],
    [26421880, 29515, 4422102, 5148],
    ['8d4fb7e6c68d591d4c3dfef9ec88bf0d', '25c81989df183df01b3e8a0aad5dffbe', 'bef4ecab320f06d8554ea6380940ec79', 'bb300cfdad3c16e7a12a480ee83cd310'],
  ),
  cifar10: {
    name: 'cifar10',
    title: 'CIFAR-10',
    homepage: 'https://www.cs.toronto.edu/~kriz/cifar.html',
    mirrors: ['https://www.cs.toronto.edu/~kriz/'],
    files: [{ name: 'cifar-10-binary.tar.gz', bytes: 170052171, md5: 'c32a1d4ab5d03f1284b67883e8d87530' }],
    extract: Object.fromEntries(
      [...CIFAR10_BATCHES, 'batches.meta.txt'].map((f) => [`cifar-10-batches-bin/${f}`, f]),
    ),
    complete: Object.fromEntries(CIFAR10_BATCHES.map((f) => [f, 30730000])),
  },
};

/** The names {@link DATASETS} has, for messages. */
export const DATASET_NAMES = Object.keys(DATASETS) as DatasetName[];
