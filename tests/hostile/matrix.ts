/**
 * The whole failure matrix of the hostile-input properties, for fixing them: every canonical bad
 * value of every case of tests/hostile/table.ts (where `fc.assert` stops at the first failing
 * value of each property), one line per value that breaks the contract.
 *
 *   npx tsx tests/hostile/matrix.ts [cpu|wasm] [title-filter]
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import fc from 'fast-check';
import { registerGradientKernels } from '../../src/index.js';
import { useWasmBackend } from '../../src/backends/wasm.js';
import { buildCtx, contractProblems, disposeCtx, ENTRIES } from './table.js';

const backend = process.argv[2] ?? 'cpu';
const filter = process.argv[3];
tf.env().set('PROD', true);
if (backend === 'wasm') await useWasmBackend();
else await tf.setBackend('cpu');
await tf.ready();
registerGradientKernels();

const ctx = buildCtx();
let failing = 0;
let total = 0;
for (const entry of ENTRIES) {
  if (filter && !entry.title.includes(filter)) continue;
  for (const c of entry.cases) {
    for (const value of c.canon) {
      total++;
      const problems = await contractProblems(ctx, entry, c, value);
      if (problems.length === 0) continue;
      failing++;
      console.log(`${entry.title} | ${c.label} | ${fc.stringify(value)} | ${problems.join('; ')}`);
    }
  }
}
disposeCtx(ctx);
console.log(`\n${failing} of ${total} canonical bad values break the contract on ${tf.getBackend()}.`);
