/**
 * Where the time of one call goes, kernel by kernel:
 * `tsx bench/profile.ts <backend> <model> <B> [strategy] [jacobian|fisher|data-matrix|stability]`
 * (`data-matrix`: localDataMatrix and G's eigenpairs; `stability`: relativeStability at one
 * temperature, δ = 1). Prints a table of kernels sorted by total time (tf.profile's per-kernel wall
 * times; with GROUP=name, by kernel name across shapes) and the wall time outside kernels (the
 * float64 eigenpairs, bookkeeping).
 */
import * as tf from '@tensorflow/tfjs-core';
import { inputJacobian, localDataMatrix, localFisher, relativeStability } from '../src/index.js';
import type { JacobianStrategy } from '../src/index.js';
import { setupWorker } from './setup.js';

const [backend = 'wasm', modelName = 'mnist-cnn', bArg = '8', strategy = 'auto', what = 'jacobian'] = process.argv.slice(2);
const { model, x } = await setupWorker(backend, modelName, Number(bArg));
const once = async () => {
  if (what === 'fisher') {
    const { F, probs } = await localFisher(model, x, { strategy: strategy as 'auto' | 'graph' | 'loop' });
    F.dispose();
    probs.dispose();
  } else if (what === 'data-matrix') {
    const { G, probs } = await localDataMatrix(model, x);
    const { vectors } = await G.eig();
    tf.dispose([probs, vectors]);
    G.dispose();
  } else if (what === 'stability') {
    await relativeStability(model, x, { delta: 1 });
  } else {
    (await inputJacobian(model, x, { strategy: strategy as JacobianStrategy })).dispose();
  }
};
await once(); // warm-up
const t0 = performance.now();
const info = await tf.profile(once);
const wall = performance.now() - t0;
const byKernel = new Map<string, { ms: number; calls: number }>();
for (const k of info.kernels) {
  const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
  const key = process.env.GROUP === 'name' ? k.name : `${k.name} ${JSON.stringify(k.inputShapes)}`;
  const e = byKernel.get(key) ?? { ms: 0, calls: 0 };
  e.ms += ms;
  e.calls += 1;
  byKernel.set(key, e);
}
const rows = [...byKernel.entries()].sort((a, b) => b[1].ms - a[1].ms);
const total = rows.reduce((a, [, e]) => a + e.ms, 0);
console.log(`${backend} ${modelName} B=${bArg} ${strategy} ${what}: wall ${wall.toFixed(0)} ms, kernels ${total.toFixed(0)} ms (outside them ${(wall - total).toFixed(0)} ms), ${info.kernels.length} calls`);
for (const [key, e] of rows.slice(0, Number(process.env.TOP ?? 25))) console.log(`${e.ms.toFixed(1).padStart(8)} ms ${String(e.calls).padStart(4)}×  ${key}`);
