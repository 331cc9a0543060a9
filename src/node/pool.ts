/**
 * `infogeo/node`: input Jacobians on every core of a Node machine. tfjs's `wasm` backend runs one
 * thread in Node; a pool runs one backend per worker thread, each with a copy of the model, and
 * splits every batch between them.
 *
 * @module infogeo/node
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { InfogeoError, ShapeError, UnsupportedModelError, ValueError } from '../errors.js';
import { planInputJacobian } from '../jacobian/input.js';
import type { InputJacobianOptions } from '../jacobian/input.js';
import { checkBatch, wrapClassifier } from '../model/classifier.js';
import type { PoolRequest, PoolResponse, PoolWorkerData, PortableJacobianOptions } from './protocol.js';

/** Options of {@link createJacobianPool}. */
export interface JacobianPoolOptions {
  /**
   * Worker threads. Each holds a copy of the model's weights and its own backend.
   * @defaultValue the number of cores (`os.availableParallelism()`)
   */
  threads?: number;
  /**
   * The tfjs backend of every worker: `'wasm'` (XNNPACK, SIMD) or `'cpu'`.
   * @defaultValue `'wasm'`
   */
  backend?: 'wasm' | 'cpu';
}

/** A pool of worker threads that compute input Jacobians of one model. */
export interface JacobianPool {
  /** The number of worker threads. */
  readonly threads: number;
  /**
   * {@link infogeo!inputJacobian | inputJacobian} with the batch split between the threads (a batch of B samples uses
   * min(B, threads) of them). Same arguments and result; the result is a new tensor on the
   * calling thread's active backend, owned by the caller. The model's current weights are used:
   * when they changed since the last call (training), they are copied to the workers first.
   * `onProgress` fires as each thread's share completes; `signal` rejects the call at once (the
   * threads finish their share and it is dropped).
   */
  inputJacobian(x: tf.Tensor, options?: InputJacobianOptions): Promise<tf.Tensor>;
  /** Stops the threads. Calls after `close` reject. */
  close(): Promise<void>;
}

interface Thread {
  worker: Worker;
  pending: Map<number, { resolve: (r: PoolResponse) => void; reject: (e: unknown) => void }>;
}

const ERRORS: Record<string, new (message: string) => Error> = { ShapeError, ValueError, UnsupportedModelError, LayerNotFoundError: ValueError, InfogeoError };

/** The model's topology and weights, as `model.save` writes them. */
async function artifactsOf(model: LayersModel): Promise<tf.io.ModelArtifacts> {
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  if (saved === undefined) throw new UnsupportedModelError('createJacobianPool: the model could not be serialized.');
  return saved;
}

/** Identities of the weights' current values: a `write` (training, setWeights) replaces them. */
function weightStamp(model: LayersModel): unknown[] {
  return model.weights.map((w) => (w.read() as unknown as { dataId: unknown }).dataId);
}

/**
 * Starts a pool of worker threads for input Jacobians of `model` (Node only). Each thread loads
 * its own copy of the model from `model.save` artifacts (so custom layers must be registered in a
 * module the thread can load: they are not supported yet) and starts its own backend, which takes
 * about a second. Create it once and reuse it; call `close()` when done (idle threads do not keep
 * the process alive).
 *
 * Measured on a 2-core machine (wasm, MNIST CNN, B = 32): see the benchmark table in the README.
 *
 * @param model - a classifier `LayersModel` (see {@link infogeo!inputJacobian | inputJacobian}).
 * @param options - see {@link JacobianPoolOptions}.
 * @returns the pool, once every thread is ready.
 * @throws {@link infogeo!ValueError | ValueError} for a bad `threads` or `backend`.
 * @throws {@link infogeo!UnsupportedModelError | UnsupportedModelError} for a model infogeo cannot use.
 *
 * @example
 * ```ts
 * import { createJacobianPool } from 'infogeo/node';
 * const pool = await createJacobianPool(model);        // one thread per core
 * const J = await pool.inputJacobian(x);                // as inputJacobian(model, x)
 * J.dispose();
 * await pool.close();
 * ```
 */
export async function createJacobianPool(model: LayersModel, options: JacobianPoolOptions = {}): Promise<JacobianPool> {
  const fn = 'createJacobianPool';
  const threads = options.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1) throw new ValueError(`${fn}: threads must be a positive integer, got ${String(threads)}.`);
  const backend = options.backend ?? 'wasm';
  if (backend !== 'wasm' && backend !== 'cpu') throw new ValueError(`${fn}: backend must be 'wasm' or 'cpu', got '${String(backend)}'.`);
  wrapClassifier(model, {}, fn);
  const workerData: PoolWorkerData = { backend, artifacts: await artifactsOf(model) };
  let stamp = weightStamp(model);

  // From the TypeScript sources (tests, tsx) the worker needs tsx's loader; the built package
  // ships the worker next to this module as JavaScript.
  const here = import.meta.url;
  const fromSource = here.endsWith('.ts');
  const script = new URL(fromSource ? './poolWorker.ts' : './poolWorker.js', here);
  let nextId = 0;
  let closed = false;

  const start = (): Promise<Thread> =>
    new Promise((resolve, reject) => {
      const worker = fromSource
        ? new Worker(`import('tsx/esm/api').then((api) => { api.register(); return import(${JSON.stringify(script.href)}); })`, { eval: true, workerData })
        : new Worker(script, { workerData });
      const thread: Thread = { worker, pending: new Map() };
      const failAll = (e: unknown) => {
        for (const p of thread.pending.values()) p.reject(e);
        thread.pending.clear();
      };
      worker.on('message', (msg: PoolResponse) => {
        if (msg.type === 'ready') {
          worker.unref();
          resolve(thread);
          return;
        }
        const p = thread.pending.get(msg.id);
        if (p === undefined) return;
        thread.pending.delete(msg.id);
        if (thread.pending.size === 0) worker.unref();
        p.resolve(msg);
      });
      worker.on('error', (e) => {
        reject(e);
        failAll(e);
      });
      worker.on('exit', (code) => {
        const e = new Error(`${fn}: a worker thread exited (code ${code}).`);
        reject(e);
        failAll(e);
      });
    });

  const pool: Thread[] = [];
  try {
    pool.push(...(await Promise.all(Array.from({ length: threads }, start))));
  } catch (e) {
    await Promise.all(pool.map((t) => t.worker.terminate()));
    throw e;
  }

  const send = (thread: Thread, req: PoolRequest, transfer: ArrayBuffer[] = []): Promise<PoolResponse> =>
    new Promise((resolve, reject) => {
      thread.pending.set(req.id, { resolve, reject });
      thread.worker.ref(); // a pending request keeps the process alive
      thread.worker.postMessage(req, transfer);
    });

  const syncWeights = async () => {
    const now = weightStamp(model);
    if (now.every((d, i) => d === stamp[i])) return;
    const weights = await Promise.all(model.weights.map(async (w) => ({ data: (await w.read().data()) as Float32Array, shape: w.shape as number[] })));
    await Promise.all(pool.map((t) => send(t, { type: 'weights', id: nextId++, weights })));
    stamp = now;
  };

  return {
    threads,
    async inputJacobian(x, opts = {}) {
      const call = 'JacobianPool.inputJacobian';
      if (closed) throw new ValueError(`${call}: the pool is closed.`);
      const clf = wrapClassifier(model, opts, call);
      checkBatch(clf, x, call);
      const B = x.shape[0] as number;
      planInputJacobian(clf, B, opts, call); // validates the options here, with this call's name
      const { onProgress, signal, ...portable } = opts;
      signal?.throwIfAborted();
      // Listening from here on: an abort while the weights or the batch are read counts too.
      let onAbort: (() => void) | undefined;
      const aborted = new Promise<never>((_, reject) => {
        onAbort = () => reject(signal?.reason);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
      aborted.catch(() => undefined); // rejected before the race below subscribes: not unhandled
      await Promise.race([syncWeights(), aborted]);
      const all = (await x.data()) as Float32Array;
      const per = x.size / B;
      const used = Math.min(B, pool.length);
      let done = 0;
      const parts = pool.slice(0, used).map(async (thread, k) => {
        const b0 = Math.floor((k * B) / used);
        const b1 = Math.floor(((k + 1) * B) / used);
        const data = all.slice(b0 * per, b1 * per);
        const msg: PoolRequest = { type: 'jacobian', id: nextId++, data, shape: [b1 - b0, ...x.shape.slice(1)], options: portable as PortableJacobianOptions };
        const r = await send(thread, msg, [data.buffer]);
        if (r.type === 'error') throw new (ERRORS[r.name] ?? Error)(r.message);
        if (r.type !== 'jacobian') throw new Error(`${call}: unexpected reply '${r.type}' from a worker thread.`);
        done += b1 - b0;
        onProgress?.({ done, total: B });
        return r;
      });
      const results = await Promise.race([Promise.all(parts), aborted]).finally(() => {
        if (onAbort) signal?.removeEventListener('abort', onAbort);
      });
      const shape = [B, ...(results[0]?.shape.slice(1) ?? [])];
      const out = new Float32Array(results.reduce((a, r) => a + r.data.length, 0));
      let offset = 0;
      for (const r of results) {
        out.set(r.data, offset);
        offset += r.data.length;
      }
      return tf.tensor(out, shape, 'float32');
    },
    async close() {
      if (closed) return;
      closed = true;
      await Promise.all(pool.map((t) => t.worker.terminate()));
    },
  };
}
