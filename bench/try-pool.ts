import * as tf from '@tensorflow/tfjs-core';
import { setupWorker } from './setup.js';
import { inputJacobian } from '../src/index.js';
import { createJacobianPool } from '../src/node/pool.js';
const [modelName = 'mnist-cnn', bArg = '8'] = process.argv.slice(2);
const B = Number(bArg);
const { model, x } = await setupWorker('wasm', modelName, B);
let t0 = performance.now();
const pool = await createJacobianPool(model, { threads: 2 });
console.log('pool start', (performance.now() - t0).toFixed(0), 'ms');
const ref = await inputJacobian(model, x);
const J = await pool.inputJacobian(x);
console.log('maxdiff', tf.tidy(() => tf.max(tf.abs(tf.sub(J, ref))).dataSync()[0]));
for (const which of ['pool', 'single', 'pool', 'single']) {
  const ts: number[] = [];
  for (let i = 0; i < 4; i++) {
    t0 = performance.now();
    const Jr = which === 'pool' ? await pool.inputJacobian(x) : await inputJacobian(model, x);
    await Jr.data(); Jr.dispose();
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  console.log(which, (B * 10 / ts[1]! * 1000).toFixed(0), 'rows/s');
}
await pool.close();
