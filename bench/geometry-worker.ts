/**
 * One geometry benchmark, in its own process: `tsx bench/geometry-worker.ts <backend> <task> <model> <B>`
 * with task `data-matrix` (localDataMatrix, then G.eig() timed apart), `projector`
 * (distributionProjector), `fisher` (localFisher over all weights), `path-step` (20 steps of
 * horizontalPath, per step), `volume-effective` (volumeElement, top 10 singular values of the
 * penultimate layer's Jacobian), `volume-plane` (volumeElement on a 2-D subspace) or `stability`
 * (relativeStability at δ = 1 px, one draw), `jvp` (two forward-mode JVPs of the log-probabilities
 * per sample) or `jacobian` (one inputJacobian, to compare a path step with). With a fifth
 * argument `pool`, the tasks the pool runs (`jacobian`, `fisher`, `data-matrix`, `path-step`,
 * `volume-effective`, `stability`) go through a pool of one worker thread per core, started before the timing.
 * Prints one JSON line.
 */
import * as tf from '@tensorflow/tfjs-core';
import { distributionProjector, horizontalPath, inputJacobian, jvp, localDataMatrix, localFisher, relativeStability, volumeElement } from '../src/index.js';
import { createJacobianPool } from '../src/node/pool.js';
import { setupWorker } from './setup.js';

const [backend = 'wasm', task = 'data-matrix', modelName = 'mnist-cnn', bArg = '8', mode = 'one'] = process.argv.slice(2);
const B = Number(bArg);
const { model, x, spec } = await setupWorker(backend, modelName, B);
const pool = mode === 'pool' ? await createJacobianPool(model, { backend: backend as 'wasm' | 'cpu' }) : undefined;

async function once(): Promise<Record<string, number>> {
  const t0 = performance.now();
  if (task === 'data-matrix') {
    const { G, probs } = pool ? await pool.localDataMatrix(x) : await localDataMatrix(model, x);
    const t1 = performance.now();
    const { vectors } = await G.eig();
    const t2 = performance.now();
    tf.dispose([probs, vectors]);
    G.dispose();
    return { totalMs: t2 - t0, jacobianMs: t1 - t0, eigMs: t2 - t1 };
  }
  if (task === 'projector') {
    const P = await distributionProjector(model, x);
    const t1 = performance.now();
    const v = tf.randomNormal(x.shape);
    const t2 = performance.now();
    tf.dispose([P.project(v), v]);
    const t3 = performance.now();
    P.dispose();
    return { totalMs: t1 - t0, projectMs: t3 - t2 };
  }
  if (task === 'path-step') {
    const target = tf.randomNormal(x.shape, 0, 1, 'float32', 2);
    const opts = { maxSteps: 20, threshold: 0, stallTolerance: 0 };
    const paths = pool ? await pool.horizontalPath(x, target, opts) : await horizontalPath(model, x, target, opts);
    const t1 = performance.now();
    tf.dispose([target, ...paths.map((p) => p.frames)]);
    return { totalMs: (t1 - t0) / 20 };
  }
  if (task === 'volume-effective') {
    await (pool ? pool.volumeElement(x, { mode: 'effective', k: 10 }) : volumeElement(model, x, { mode: 'effective', k: 10 }));
    return { totalMs: performance.now() - t0 };
  }
  if (task === 'volume-plane') {
    const E = tf.randomNormal([2, ...x.shape.slice(1)], 0, 1, 'float32', 3);
    const t1 = performance.now();
    await volumeElement(model, x, { subspace: E });
    const t2 = performance.now();
    E.dispose();
    return { totalMs: t2 - t1 };
  }
  if (task === 'jvp' || task === 'jacobian') {
    const V = tf.randomNormal([B, 2, ...x.shape.slice(1)], 0, 1, 'float32', 4);
    const t1 = performance.now();
    const out = task === 'jvp' ? await jvp(model, x, V) : pool ? await pool.inputJacobian(x) : await inputJacobian(model, x);
    const t2 = performance.now();
    tf.dispose([V, out]);
    return { totalMs: t2 - t1 };
  }
  if (task === 'stability') {
    await (pool ? pool.relativeStability(x, { delta: 1 }) : relativeStability(model, x, { delta: 1 }));
    return { totalMs: performance.now() - t0 };
  }
  const { F, probs } = pool ? await pool.localFisher(x) : await localFisher(model, x);
  const t1 = performance.now();
  F.dispose();
  probs.dispose();
  return { totalMs: t1 - t0 };
}

await once(); // warm-up
const runs = [await once(), await once()].sort((a, b) => (a.totalMs as number) - (b.totalMs as number));
const best = runs[0] as Record<string, number>;
await pool?.close();
console.log(
  JSON.stringify({
    backend,
    mode,
    task,
    model: modelName,
    n: spec.inputShape.reduce((a, d) => a * d, 1),
    B,
    ...Object.fromEntries(Object.entries(best).map(([k, v]) => [k, Math.round(v * 10) / 10])),
    perSampleMs: Math.round(((best.totalMs as number) / B) * 10) / 10,
    peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024),
  }),
);
