/**
 * The real data sets for the tests that need them: found where the examples look
 * (`../shared/datasets`, then the cache folder of `npm run data -- NAME`). Without them those tests
 * are skipped, and their names say how to get the data (tests/setup/dataNote.ts says it once per
 * run); with INFOGEO_REQUIRE_DATA set (CI sets it where `../shared/datasets` exists) a missing data
 * set fails the test file instead.
 */
import { DATASETS, type DatasetName } from '../src/data/index.js';
import { findDataset, SHARED_DATASETS } from '../examples/data.js';

export function realDataset(name: DatasetName): string | undefined {
  const dir = findDataset(name);
  if (dir === undefined && process.env['INFOGEO_REQUIRE_DATA']) {
    throw new Error(`INFOGEO_REQUIRE_DATA is set, but ${DATASETS[name].title} is neither in ${SHARED_DATASETS}/${name} nor in the cache folder.`);
  }
  return dir;
}

/** A suffix for the name of a test block that needs a data set and is skipped without it. */
export function needs(name: DatasetName, dir: string | undefined): string {
  return dir === undefined ? ` (skipped: needs ${DATASETS[name].title}; run \`npm run data -- ${name}\`)` : '';
}

export const MNIST_DIR = realDataset('mnist');
