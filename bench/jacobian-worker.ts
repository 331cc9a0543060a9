/**
 * One benchmark configuration, in its own process (peak RSS is per process, and the wasm heap never
 * shrinks): `tsx bench/jacobian-worker.ts <backend> <model> <B> <strategy> <minSeconds>`.
 * Strategy `pool` is `auto` on a pool of one worker thread per core (`infogeo/node`), each running
 * `<backend>`. Prints one JSON line.
 */
import * as tf from '@tensorflow/tfjs-core';
import { inputJacobian } from '../src/index.js';
import type { JacobianStrategy } from '../src/index.js';
import { planInputJacobian } from '../src/jacobian/input.js';
import { wrapClassifier } from '../src/model/classifier.js';
import { createJacobianPool } from '../src/node/pool.js';
import { availableParallelism } from 'node:os';
import { setupWorker } from './setup.js';

const [backend = 'wasm', modelName = 'mnist-cnn', bArg = '8', strategy = 'auto', minSecondsArg = '3'] = process.argv.slice(2);
const B = Number(bArg);
const { model, x } = await setupWorker(backend, modelName, B);
const usePool = strategy === 'pool';
const opts = { strategy: (usePool ? 'auto' : strategy) as JacobianStrategy };
const plan = planInputJacobian(wrapClassifier(model), usePool ? Math.ceil(B / availableParallelism()) : B, opts);
const pool = usePool ? await createJacobianPool(model, { backend: backend as 'wasm' | 'cpu' }) : undefined;
const jacobian = (xs: tf.Tensor) => (pool ? pool.inputJacobian(xs, opts) : inputJacobian(model, xs, opts));

// Warm-up on the same batch (as the PyTorch side does): kernel set-up, the first-call costs of
// tfjs and the growth of the wasm heaps (measured: the first call of a pool is half as fast).
(await jacobian(x)).dispose();

const times: number[] = [];
const start = performance.now();
while (times.length < 5 && (times.length === 0 || performance.now() - start < Number(minSecondsArg) * 1000)) {
  const t0 = performance.now();
  const J = await jacobian(x);
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
    threads: pool?.threads ?? 1,
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
await pool?.close();
