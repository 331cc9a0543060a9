/**
 * Where the time of one input Jacobian (or one local Fisher) goes, kernel by kernel:
 * `tsx bench/profile.ts <backend> <model> <B> [strategy] [jacobian|fisher]`. Prints a table of
 * kernels sorted by total time (tf.profile's per-kernel wall times).
 */
import * as tf from '@tensorflow/tfjs-core';
import { inputJacobian, localFisher } from '../src/index.js';
import type { JacobianStrategy } from '../src/index.js';
import { setupWorker } from './setup.js';

const [backend = 'wasm', modelName = 'mnist-cnn', bArg = '8', strategy = 'auto', what = 'jacobian'] = process.argv.slice(2);
const { model, x } = await setupWorker(backend, modelName, Number(bArg));
const once = async () => {
  if (what === 'fisher') {
    const { F, probs } = await localFisher(model, x, { strategy: strategy as 'auto' | 'graph' | 'loop' });
    F.dispose();
    probs.dispose();
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
  const key = `${k.name} ${JSON.stringify(k.inputShapes)}`;
  const e = byKernel.get(key) ?? { ms: 0, calls: 0 };
  e.ms += ms;
  e.calls += 1;
  byKernel.set(key, e);
}
const rows = [...byKernel.entries()].sort((a, b) => b[1].ms - a[1].ms);
const total = rows.reduce((a, [, e]) => a + e.ms, 0);
console.log(`${backend} ${modelName} B=${bArg} ${strategy}: wall ${wall.toFixed(0)} ms, kernels ${total.toFixed(0)} ms, ${info.kernels.length} calls`);
for (const [key, e] of rows.slice(0, Number(process.env.TOP ?? 25))) console.log(`${e.ms.toFixed(1).padStart(8)} ms ${String(e.calls).padStart(4)}×  ${key}`);
