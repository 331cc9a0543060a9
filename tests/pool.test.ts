/**
 * The worker-thread pool of `infogeo/node`: the same Jacobians as inputJacobian in this thread, in
 * batch order, with the model's current weights, typed errors, aborts and no leaks here.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inputJacobian, ShapeError, ValueError } from '../src/index.js';
import { createJacobianPool } from '../src/node/pool.js';
import type { JacobianPool } from '../src/node/pool.js';
import { mnistCnn } from '../examples/models.js';
import { expectClose, expectNoLeak, randn } from './helpers.js';

describe('createJacobianPool (2 threads, wasm in each)', () => {
  let model: tfl.LayersModel;
  let pool: JacobianPool;
  beforeAll(async () => {
    model = mnistCnn(3, { filters: [4, 8], hidden: 16 });
    pool = await createJacobianPool(model, { threads: 2 });
  });
  afterAll(async () => {
    await pool.close();
  });

  it('equals inputJacobian in this thread, in batch order, with progress per thread', async () => {
    expect(pool.threads).toBe(2);
    const x = randn([5, 28, 28, 1], 1);
    const progress: number[] = [];
    const J = await expectNoLeak(() => pool.inputJacobian(x, { onProgress: (p) => progress.push(p.done) }), (t) => [t]);
    const ref = await inputJacobian(model, x);
    expect(J.shape).toEqual([5, 10, 28, 28, 1]);
    // The threads run wasm, this thread its own backend (cpu or wasm): float32 rounding only.
    expectClose(J, ref, { rtol: 1e-5, label: 'pool vs in-thread' });
    expect(progress.sort((a, b) => a - b).at(-1)).toBe(5);
    expect(progress.length).toBe(2);
    // Options travel: a layer target, flattened.
    const Jf = await pool.inputJacobian(x, { target: { layer: 'fc1' }, flatten: true });
    const refF = await inputJacobian(model, x, { target: { layer: 'fc1' }, flatten: true });
    expect(Jf.shape).toEqual([5, 16, 784]);
    expectClose(Jf, refF, { rtol: 1e-5, label: 'layer target' });
    tf.dispose([x, J, ref, Jf, refF]);
  });

  it("follows the model's weights when they change (training, setWeights)", async () => {
    const x = randn([2, 28, 28, 1], 2);
    const before = await pool.inputJacobian(x);
    const layer = model.getLayer('conv1');
    const w = randn(layer.getWeights()[0]!.shape, 3);
    layer.setWeights([w, layer.getWeights()[1]!]);
    const after = await pool.inputJacobian(x);
    const ref = await inputJacobian(model, x);
    expectClose(after, ref, { rtol: 1e-5, label: 'after setWeights' });
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(after, before))).dataSync()[0])).toBeGreaterThan(1e-3);
    tf.dispose([x, before, after, ref, w]);
  });

  it('typed errors, checked in this thread; aborts reject with the reason', async () => {
    await expect(pool.inputJacobian(randn([2, 27, 28, 1], 4))).rejects.toThrow(ShapeError);
    await expect(pool.inputJacobian(randn([2, 28, 28, 1], 4), { strategy: 'magic' as never })).rejects.toThrow(ValueError);
    const ctrl = new AbortController();
    ctrl.abort();
    const x = randn([2, 28, 28, 1], 5);
    await expect(pool.inputJacobian(x, { signal: ctrl.signal })).rejects.toMatchObject({ name: 'AbortError' });
    // Aborted while the threads work: rejects at once, leaves nothing here, and the pool still works.
    const later = new AbortController();
    const before = tf.memory().numTensors;
    const running = pool.inputJacobian(x, { signal: later.signal });
    later.abort();
    await expect(running).rejects.toMatchObject({ name: 'AbortError' });
    expect(tf.memory().numTensors).toBe(before);
    const J = await pool.inputJacobian(x);
    expect(J.shape).toEqual([2, 10, 28, 28, 1]);
    tf.dispose([x, J]);
    await expect(createJacobianPool(model, { threads: 0 })).rejects.toThrow(ValueError);
    await expect(createJacobianPool(model, { backend: 'webgl' as never })).rejects.toThrow(ValueError);
  });

  it('refuses calls after close', async () => {
    const small = await createJacobianPool(model, { threads: 1, backend: 'cpu' });
    await small.close();
    const x = randn([1, 28, 28, 1], 6);
    await expect(small.inputJacobian(x)).rejects.toThrow(/closed/);
    x.dispose();
  });
});
