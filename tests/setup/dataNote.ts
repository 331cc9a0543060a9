/**
 * Says once per `vitest run` which data sets are missing, so that the tests that need them are
 * skipped. A global setup runs in vitest's own process, once per project; the test files run in
 * forks, where a note printed on import (as `realData.ts` did) came once per file and project.
 * With INFOGEO_REQUIRE_DATA set, a missing data set fails the test files instead (realData.ts).
 */
import { DATASETS, type DatasetName } from '../../src/data/index.js';
import { findDataset, SHARED_DATASETS } from '../../examples/data.js';

/** The data sets some tests need (tests/realData.ts). */
const NEEDED: DatasetName[] = ['mnist', 'cifar10'];

export default function setup(): void {
  // Both projects (cpu, wasm) run this in the same process: the first one says it.
  const run = globalThis as { infogeoDataNoteSaid?: boolean };
  if (run.infogeoDataNoteSaid || process.env['INFOGEO_REQUIRE_DATA']) return;
  run.infogeoDataNoteSaid = true;
  for (const name of NEEDED) {
    if (findDataset(name) === undefined) {
      console.warn(`Skipping the tests that need ${DATASETS[name].title}: it is neither in ${SHARED_DATASETS}/${name} nor in the cache folder (npm run data -- ${name}).`);
    }
  }
}
