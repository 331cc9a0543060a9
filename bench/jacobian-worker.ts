/**
 * One benchmark configuration, in its own process (peak RSS is per process, and the wasm heap never
 * shrinks): `tsx bench/jacobian-worker.ts <backend> <model> <B> <strategy> <minSeconds>`.
 * Prints one JSON line.
 */
import * as tf from '@tensorflow/tfjs-core';
import { inputJacobian } from '../src/index.js';
import type { JacobianStrategy } from '../src/index.js';
import { planInputJacobian } from '../src/jacobian/input.js';
import { wrapClassifier } from '../src/model/classifier.js';
import { setupWorker } from './setup.js';

const [backend = 'wasm', modelName = 'mnist-cnn', bArg = '8', strategy = 'auto', minSecondsArg = '3'] = process.argv.slice(2);
const B = Number(bArg);
const { model, x } = await setupWorker(backend, modelName, B);
const opts = { strategy: strategy as JacobianStrategy };
const plan = planInputJacobian(wrapClassifier(model), B, opts);

// Warm-up on one sample: kernel set-up and the first-call costs of tfjs.
const x1 = tf.slice(x, 0, 1);
(await inputJacobian(model, x1, opts)).dispose();
x1.dispose();

const times: number[] = [];
const start = performance.now();
while (times.length < 5 && (times.length === 0 || performance.now() - start < Number(minSecondsArg) * 1000)) {
  const t0 = performance.now();
  const J = await inputJacobian(model, x, opts);
  await J.data(); // make sure the work is done (async backends)
  times.push(performance.now() - t0);
  J.dispose();
}
times.sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)] as number;
const rows = B * 10;
console.log(
  JSON.stringify({
    backend,
    model: modelName,
    B,
    strategy,
    plan: (({ graph: _graph, ...rest }) => rest)(plan),
    kernels:
      plan.strategy === 'graph'
        ? 'infogeo graph: forward kernels only (Conv2D for conv backward passes, a mask for max-pools)'
        : { Conv2DBackpropFilter: 'infogeo', Conv2DBackpropInput: backend === 'wasm' ? 'infogeo (stride 1)' : 'tfjs', FusedBatchNormGrad: 'infogeo' },
    reps: times.length,
    medianMs: Math.round(median * 10) / 10,
    rowsPerSec: Math.round((rows / median) * 1000 * 10) / 10,
    peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024),
  }),
);
