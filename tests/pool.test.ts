/**
 * The worker-thread pool of `infogeo/node`: the same Jacobians as inputJacobian in this thread, in
 * batch order, with the model's current weights, typed errors, aborts and no leaks here; worker
 * threads that exit are replaced, and no call hangs.
 */
import type { TransferListItem, Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { InfogeoError, inputJacobian, ShapeError, UnsupportedModelError, ValueError } from '../src/index.js';
import { createJacobianPool } from '../src/node/pool.js';
import type { JacobianPool } from '../src/node/pool.js';
import { denseNet, mnistCnn } from '../examples/models.js';
import { expectClose, expectNoLeak, randn } from './helpers.js';

// Lets a test make the next worker threads fail at start (a replacement that cannot start).
const starts = vi.hoisted(() => ({ fail: 0 }));
vi.mock('node:worker_threads', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:worker_threads')>();
  class FailingWorker extends real.Worker {
    constructor(...args: ConstructorParameters<typeof real.Worker>) {
      if (starts.fail > 0) {
        starts.fail--;
        super('process.exit(3)', { eval: true });
      } else {
        super(...args);
      }
    }
  }
  return { ...real, default: { ...real, Worker: FailingWorker }, Worker: FailingWorker };
});

/** The pool's live worker threads (an internal, for tests). */
function workersOf(pool: JacobianPool): readonly Worker[] {
  const workers = (pool as unknown as Record<symbol, readonly Worker[] | undefined>)[Symbol.for('infogeo.pool.workers')];
  if (workers === undefined) throw new Error('the pool does not expose its workers');
  return workers;
}

/** `p`, or a rejection after `ms` milliseconds: a hang fails the test instead of stalling it. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The error `p` rejects with (within `ms`), or a failure if it resolves. */
async function rejection(p: Promise<unknown>, ms: number, what: string): Promise<Error> {
  const settled = await within(
    p.then(
      (r) => ({ ok: true as const, r }),
      (e: unknown) => ({ ok: false as const, e }),
    ),
    ms,
    what,
  );
  if (settled.ok) {
    if (settled.r instanceof tf.Tensor) settled.r.dispose();
    throw new Error(`${what}: resolved, expected a rejection`);
  }
  return settled.e as Error;
}

/** Runs `then` on `worker` right after it is sent its next Jacobian request (or just before). */
function onNextJacobian(worker: Worker, then: () => void, before = false): void {
  const post = worker.postMessage.bind(worker);
  worker.postMessage = (msg: { type?: string }, transfer?: readonly TransferListItem[]) => {
    if (msg.type !== 'call') return post(msg, transfer);
    worker.postMessage = post;
    if (before) then();
    post(msg, transfer);
    if (!before) then();
  };
}

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
    // Unknown option names, refused here with the pool's call named (a path's onProgress is known).
    const x0 = randn([2, 28, 28, 1], 4);
    await expect(pool.inputJacobian(x0, { memoryBudgetMb: 64 } as never)).rejects.toThrow(/JacobianPool.inputJacobian: unknown option 'memoryBudgetMb' \(did you mean 'memoryBudgetMB'\?\)/);
    await expect(pool.pullbackMetric(x0, { layer: 'dense' } as never)).rejects.toThrow(/JacobianPool.pullbackMetric: unknown option 'layer' \(renamed to target in 0.2/);
    await expect(pool.orthogonalPath(x0, { maxStep: 2 } as never)).rejects.toThrow(/JacobianPool.orthogonalPath: unknown option 'maxStep' \(did you mean 'maxSteps'\?\)/);
    await expect(pool.orthogonalPath(x0, null as never)).rejects.toThrow(ValueError);
    await expect(pool.relativeStability(x0, { output: 'logits' } as never)).rejects.toThrow(/JacobianPool.relativeStability: unknown option 'output' \(renamed to target in 0.2/);
    x0.dispose();
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

describe('createJacobianPool: worker threads that exit, close during a call (2 threads, cpu)', () => {
  const model = denseNet(6, [8], 4, 21);
  let pool: JacobianPool;
  beforeAll(async () => {
    pool = await createJacobianPool(model, { threads: 2, backend: 'cpu' });
  });
  afterAll(async () => {
    await pool.close();
  });

  it('replaces a worker that exited while idle, with the current weights (B = 4 resolves)', async () => {
    const x = randn([4, 6], 22);
    // New weights, copied to both threads by a first call: the replacement must get them too.
    const layer = model.getLayer('hidden1');
    const w = randn(layer.getWeights()[0]!.shape, 23);
    layer.setWeights([w, layer.getWeights()[1]!]);
    tf.dispose([w, await pool.inputJacobian(x)]);
    const ref = await inputJacobian(model, x);
    const old = workersOf(pool);
    expect(old.length).toBe(2);
    expect(await old[1]!.terminate()).toBe(1);
    const before = tf.memory().numTensors;
    const J = await within(pool.inputJacobian(x), 15_000, 'B = 4 after an idle exit');
    expect(tf.memory().numTensors).toBe(before + 1);
    expect(J.shape).toEqual([4, 4, 6]);
    expectClose(J, ref, { rtol: 1e-5, label: 'after a replacement' });
    const now = workersOf(pool);
    expect(now[0]).toBe(old[0]);
    expect(now[1]).not.toBe(old[1]);
    // Both gone: both replaced.
    await Promise.all(now.map((t) => t.terminate()));
    const J2 = await within(pool.inputJacobian(x), 15_000, 'B = 4 after two idle exits');
    expectClose(J2, ref, { rtol: 1e-5, label: 'after two replacements' });
    expect(tf.memory().numTensors).toBe(before + 2);
    tf.dispose([x, ref, J, J2]);
  }, 30_000);

  it('rejects a call whose worker exits during it with an InfogeoError, and the next call works', async () => {
    const x = randn([4, 6], 24);
    const ref = await inputJacobian(model, x);
    const worker = workersOf(pool)[0]!;
    // The worker is stopped as the request leaves: it cannot answer it.
    onNextJacobian(worker, () => void worker.terminate(), true);
    const before = tf.memory().numTensors;
    const err = await rejection(pool.inputJacobian(x), 15_000, 'a call whose worker exits');
    expect(err).toBeInstanceOf(InfogeoError);
    expect(err.message).toMatch(/^JacobianPool\.inputJacobian: a worker thread exited with code 1\b/);
    expect(tf.memory().numTensors).toBe(before);
    const J = await within(pool.inputJacobian(x), 15_000, 'the call after');
    expectClose(J, ref, { rtol: 1e-5, label: 'after an exit during a call' });
    expect(workersOf(pool)[0]).not.toBe(worker);
    tf.dispose([x, ref, J]);
  }, 30_000);

  it('rejects the call with a typed error when a replacement cannot start, and tries again next time', async () => {
    const x = randn([2, 6], 25);
    await workersOf(pool)[1]!.terminate();
    starts.fail = 1;
    const before = tf.memory().numTensors;
    const err = await rejection(pool.inputJacobian(x), 15_000, 'a call whose replacement fails');
    expect(starts.fail).toBe(0);
    expect(err).toBeInstanceOf(InfogeoError);
    expect(err.message).toMatch(/^JacobianPool\.inputJacobian: a worker thread exited with code 1 and could not be restarted/);
    expect(err.message).toMatch(/code 3/);
    expect(tf.memory().numTensors).toBe(before);
    const J = await within(pool.inputJacobian(x), 15_000, 'the call after');
    expect(J.shape).toEqual([2, 4, 6]);
    tf.dispose([x, J]);
  }, 30_000);

  it('close() during a call rejects it: the pool was closed (also before the request left)', async () => {
    const x = randn([3, 6], 26);
    const before = tf.memory().numTensors;
    const other = await createJacobianPool(model, { threads: 2, backend: 'cpu' });
    onNextJacobian(workersOf(other)[1]!, () => void other.close());
    const err = await rejection(other.inputJacobian(x), 15_000, 'a call closed under it');
    expect(err).toBeInstanceOf(InfogeoError);
    expect(err.message).toBe('JacobianPool.inputJacobian: the pool was closed during the call.');
    await expect(other.inputJacobian(x)).rejects.toThrow(ValueError);
    await expect(other.inputJacobian(x)).rejects.toThrow('JacobianPool.inputJacobian: the pool is closed.');
    await other.close();
    // Closed as the call starts, before any request left.
    const third = await createJacobianPool(model, { threads: 1, backend: 'cpu' });
    const running = third.inputJacobian(x);
    const closing = third.close();
    const err2 = await rejection(running, 15_000, 'a call closed as it starts');
    expect(err2).toBeInstanceOf(InfogeoError);
    expect(err2.message).toMatch(/the pool was closed during the call/);
    await closing;
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  }, 30_000);
});

describe('createJacobianPool: custom layers', () => {
  class TimesTwo extends tfl.layers.Layer {
    static className = 'InfogeoTestTimesTwo';
    override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
      return tf.mul(Array.isArray(inputs) ? inputs[0]! : inputs, 2);
    }
  }
  tf.serialization.registerClass(TimesTwo);

  it('rejects a model with a layer registered in this thread only: UnsupportedModelError naming it', async () => {
    const model = tfl.sequential({
      layers: [tfl.layers.dense({ inputShape: [4], units: 5 }), new TimesTwo({ name: 'times_two' }), tfl.layers.dense({ units: 3 })],
    });
    const err = await rejection(createJacobianPool(model, { threads: 2, backend: 'cpu' }), 15_000, 'a pool on a custom layer');
    expect(err).toBeInstanceOf(UnsupportedModelError);
    expect(err.message).toMatch(/^createJacobianPool: /);
    expect(err.message).toMatch(/'times_two'/);
    expect(err.message).toMatch(/InfogeoTestTimesTwo/);
    expect(err.message).toMatch(/custom layers are not supported in the pool yet/);
  }, 30_000);
});
