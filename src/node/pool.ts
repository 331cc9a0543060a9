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
   *
   * A thread that exited (killed, out of memory...) is replaced by a fresh one, with the current
   * weights, before a call uses it. A call in progress when its thread exits, or when `close` is
   * called, rejects with an {@link infogeo!InfogeoError | InfogeoError} that says so, as does a call
   * whose thread could not be replaced; a call after `close` rejects with a
   * {@link infogeo!ValueError | ValueError}. No call is left pending.
   */
  inputJacobian(x: tf.Tensor, options?: InputJacobianOptions): Promise<tf.Tensor>;
  /** Stops the threads. Calls in progress reject (the pool was closed); calls after `close` reject. */
  close(): Promise<void>;
}

/**
 * The key of a pool's worker threads: a non-enumerable property of every pool, under this
 * registry-wide symbol, returns its `Worker` objects (one per thread; one that has exited stays
 * there until a call replaces it).
 *
 * @internal For tests (to make a thread exit); not part of the API.
 */
const WORKERS = Symbol.for('infogeo.pool.workers');

interface Pending {
  /** The public call the request belongs to, for error messages. */
  call: string;
  resolve: (r: PoolResponse) => void;
  reject: (e: unknown) => void;
}

interface Thread {
  worker: Worker;
  pending: Map<number, Pending>;
  /** The weights the thread holds (see {@link weightStamp}). */
  stamp: unknown[];
  /** Set when the thread has exited: it takes no more requests and is replaced before the next use. */
  exitCode?: number;
  /** The uncaught error it exited with, if any. */
  error?: unknown;
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
function weightStamp(values: readonly tf.Tensor[]): unknown[] {
  return values.map((v) => (v as unknown as { dataId: unknown }).dataId);
}

function sameStamp(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function reasonOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The names of the layers of class `className` in `model`, nested models included. */
function layersOfClass(model: LayersModel, className: string): string[] {
  type Named = { name: string; getClassName(): string; layers?: unknown };
  const names: string[] = [];
  const walk = (layers: readonly Named[]) => {
    for (const l of layers) {
      if (l.getClassName() === className) names.push(l.name);
      if (Array.isArray(l.layers)) walk(l.layers as Named[]);
    }
  };
  walk(model.layers as unknown as Named[]);
  return names;
}

/**
 * Starts a pool of worker threads for input Jacobians of `model` (Node only). Each thread loads
 * its own copy of the model from `model.save` artifacts and starts its own backend, which takes
 * about a second. Custom layers (classes registered with `tf.serialization.registerClass` in this
 * thread) are not supported in the pool yet: the threads only know tfjs-layers' own classes. Create
 * the pool once and reuse it; call `close()` when done (idle threads do not keep the process alive).
 *
 * Measured on a 2-core machine (wasm, MNIST CNN, B = 32): see the benchmark table in the README.
 *
 * @param model - a classifier `LayersModel` (see {@link infogeo!inputJacobian | inputJacobian}).
 * @param options - see {@link JacobianPoolOptions}.
 * @returns the pool, once every thread is ready.
 * @throws {@link infogeo!ValueError | ValueError} for a bad `threads` or `backend`.
 * @throws {@link infogeo!UnsupportedModelError | UnsupportedModelError} for a model infogeo cannot use,
 * or one with a custom layer (the message names it).
 * @throws {@link infogeo!InfogeoError | InfogeoError} when a thread cannot start.
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
  // Stamped before the save: weights written meanwhile are copied again at the first call.
  const savedStamp = weightStamp(model.weights.map((w) => w.read()));
  const workerData: PoolWorkerData = { backend, artifacts: await artifactsOf(model) };

  // From the TypeScript sources (tests, tsx) the worker needs tsx's loader; the built package
  // ships the worker next to this module as JavaScript.
  const here = import.meta.url;
  const fromSource = here.endsWith('.ts');
  const script = new URL(fromSource ? './poolWorker.ts' : './poolWorker.js', here);
  let nextId = 0;
  let closed = false;
  /** Every worker that has not exited yet, those still starting included: what `close` stops. */
  const live = new Set<Worker>();
  /** The calls in progress, told when the pool closes. */
  const onClose = new Set<() => void>();
  const closedError = (call: string) => new InfogeoError(`${call}: the pool was closed during the call.`);
  const exitDetail = (t: Thread) => `a worker thread exited with code ${String(t.exitCode)}${t.error === undefined ? '' : ` (${reasonOf(t.error)})`}`;

  /** The typed error of a worker that could not load the model. */
  const failedError = (call: string, msg: Extract<PoolResponse, { type: 'failed' }>): InfogeoError => {
    if (msg.unknown !== undefined) {
      const { kind, className } = msg.unknown;
      const names = kind === 'layer' ? layersOfClass(model, className) : [];
      const what = names.length > 0 ? `layer ${names.map((n) => `'${n}'`).join(', ')} (class '${className}') is a custom layer` : `the model uses a custom ${kind} '${className}'`;
      return new UnsupportedModelError(
        `${call}: ${what}, registered in this thread only: custom ${kind === 'layer' ? 'layers' : 'classes'} are not supported in the pool yet ` +
          `(its worker threads build the model from tfjs-layers' own classes). Use inputJacobian in this thread for this model.`,
      );
    }
    return new InfogeoError(`${call}: a worker thread could not start: ${msg.message}`);
  };

  /** A new worker thread, with the model as it was saved; resolves once it is ready. */
  const start = (call: string): Promise<Thread> =>
    new Promise((resolve, reject) => {
      if (closed) {
        reject(closedError(call));
        return;
      }
      const worker = fromSource
        ? new Worker(`import('tsx/esm/api').then((api) => { api.register(); return import(${JSON.stringify(script.href)}); })`, { eval: true, workerData })
        : new Worker(script, { workerData });
      live.add(worker);
      const thread: Thread = { worker, pending: new Map(), stamp: savedStamp };
      let ready = false;
      worker.on('message', (msg: PoolResponse) => {
        if (msg.type === 'ready') {
          ready = true;
          worker.unref();
          resolve(thread);
          return;
        }
        if (msg.type === 'failed') {
          reject(failedError(call, msg));
          void worker.terminate();
          return;
        }
        const p = thread.pending.get(msg.id);
        if (p === undefined) return;
        thread.pending.delete(msg.id);
        if (thread.pending.size === 0) worker.unref();
        p.resolve(msg);
      });
      worker.on('error', (e) => {
        thread.error = e;
      });
      worker.on('exit', (code) => {
        thread.exitCode = code;
        live.delete(worker);
        if (!ready) reject(closed ? closedError(call) : new InfogeoError(`${call}: ${exitDetail(thread)} before it was ready.`));
        for (const p of thread.pending.values()) p.reject(new InfogeoError(`${p.call}: ${exitDetail(thread)}.`));
        thread.pending.clear();
      });
    });

  const slots: Thread[] = [];
  try {
    slots.push(...(await Promise.all(Array.from({ length: threads }, () => start(fn)))));
  } catch (e) {
    closed = true;
    await Promise.all([...live].map((w) => w.terminate()));
    throw e;
  }

  /** The live thread of slot `k`: the one there, or a fresh one in place of one that exited. */
  const restarts: (Promise<Thread> | undefined)[] = [];
  const ensure = async (k: number, call: string): Promise<Thread> => {
    const old = slots[k] as Thread;
    if (old.exitCode === undefined) return old;
    let fresh = restarts[k];
    if (fresh === undefined) {
      const started = start(call).then((t) => {
        slots[k] = t;
        return t;
      });
      const clear = () => {
        if (restarts[k] === started) restarts[k] = undefined;
      };
      started.then(clear, clear);
      restarts[k] = fresh = started;
    }
    try {
      return await fresh;
    } catch (e) {
      if (closed) throw closedError(call);
      const why = reasonOf(e);
      throw new InfogeoError(`${call}: ${exitDetail(old)} and could not be restarted (${why.startsWith(`${call}: `) ? why.slice(call.length + 2) : why})`);
    }
  };

  const send = (thread: Thread, req: PoolRequest, call: string, transfer: ArrayBuffer[] = []): Promise<PoolResponse> =>
    new Promise((resolve, reject) => {
      if (thread.exitCode !== undefined) {
        reject(new InfogeoError(`${call}: ${exitDetail(thread)}.`));
        return;
      }
      thread.pending.set(req.id, { call, resolve, reject });
      thread.worker.ref(); // a pending request keeps the process alive
      try {
        thread.worker.postMessage(req, transfer);
      } catch (e) {
        thread.pending.delete(req.id);
        reject(new InfogeoError(`${call}: a worker thread could not be sent the request (${reasonOf(e)}).`));
      }
    });

  /** Copies the model's current weights to those of `threads` that hold others. */
  const syncWeights = async (threads: Thread[], call: string) => {
    const values = model.weights.map((w) => w.read());
    const now = weightStamp(values);
    const stale = threads.filter((t) => !sameStamp(t.stamp, now));
    if (stale.length === 0) return;
    const weights = await Promise.all(values.map(async (v) => ({ data: (await v.data()) as Float32Array, shape: v.shape })));
    await Promise.all(
      stale.map(async (t) => {
        const r = await send(t, { type: 'weights', id: nextId++, weights }, call);
        if (r.type === 'error') throw new InfogeoError(`${call}: a worker thread could not take the new weights: ${r.message}`);
        t.stamp = now;
      }),
    );
  };

  const result: JacobianPool = {
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
      // Rejects when the call must stop: an abort (with its reason), even while the weights or the
      // batch are read, or `close` (with a typed error). The threads' work is then dropped.
      let stop!: (e: unknown) => void;
      const stopped = new Promise<never>((_, reject) => {
        stop = reject;
      });
      stopped.catch(() => undefined); // rejected before a race below subscribes: not unhandled
      const onAbort = () => stop(signal?.reason);
      const onClosed = () => stop(closedError(call));
      signal?.addEventListener('abort', onAbort, { once: true });
      onClose.add(onClosed);
      const guard = <T>(p: Promise<T>): Promise<T> => Promise.race([p, stopped]);
      let over = false;
      try {
        const used = Math.min(B, slots.length);
        const threadsUsed = await guard(Promise.all(Array.from({ length: used }, (_, k) => ensure(k, call))));
        await guard(syncWeights(threadsUsed, call));
        const all = (await guard(x.data())) as Float32Array;
        const per = x.size / B;
        let done = 0;
        const parts = threadsUsed.map(async (thread, k) => {
          const b0 = Math.floor((k * B) / used);
          const b1 = Math.floor(((k + 1) * B) / used);
          const data = all.slice(b0 * per, b1 * per);
          const msg: PoolRequest = { type: 'jacobian', id: nextId++, data, shape: [b1 - b0, ...x.shape.slice(1)], options: portable as PortableJacobianOptions };
          const r = await send(thread, msg, call, [data.buffer]);
          if (r.type === 'error') throw new (ERRORS[r.name] ?? Error)(r.message);
          if (r.type !== 'jacobian') throw new InfogeoError(`${call}: unexpected reply '${r.type}' from a worker thread.`);
          done += b1 - b0;
          if (!over) onProgress?.({ done, total: B });
          return r;
        });
        const results = await guard(Promise.all(parts));
        const shape = [B, ...(results[0]?.shape.slice(1) ?? [])];
        const out = new Float32Array(results.reduce((a, r) => a + r.data.length, 0));
        let offset = 0;
        for (const r of results) {
          out.set(r.data, offset);
          offset += r.data.length;
        }
        return tf.tensor(out, shape, 'float32');
      } finally {
        over = true;
        signal?.removeEventListener('abort', onAbort);
        onClose.delete(onClosed);
      }
    },
    async close() {
      if (!closed) {
        closed = true;
        for (const f of [...onClose]) f();
        for (const t of slots) {
          for (const p of t.pending.values()) p.reject(closedError(p.call));
          t.pending.clear();
        }
      }
      await Promise.all([...live].map((w) => w.terminate()));
    },
  };
  Object.defineProperty(result, WORKERS, { get: (): readonly Worker[] => slots.map((t) => t.worker), enumerable: false });
  return result;
}
