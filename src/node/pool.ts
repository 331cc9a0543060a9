/**
 * `infogeo/node`: infogeo's batched calls on every core of a Node machine. tfjs's `wasm` backend
 * runs one thread in Node; a pool runs one backend per worker thread, each with a copy of the
 * model, and splits every batch between them: input and weight Jacobians, the local Fisher (and a
 * data set's), G(x) and the leaf projector, the pullback metric and volume element, and both paths.
 *
 * @module infogeo/node
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { InfogeoError, LayerNotFoundError, ShapeError, UnsupportedModelError, ValueError } from '../errors.js';
import { checkNumber, checkOptions, checkTensor } from '../checks.js';
import { seededNormal } from '../linalg/random.js';
import { INPUT_JACOBIAN_OPTIONS, planInputJacobian } from '../jacobian/input.js';
import type { InputJacobianOptions } from '../jacobian/input.js';
import type { Progress } from '../jacobian/chunks.js';
import type { WeightJacobianOptions, WeightJacobianResult } from '../jacobian/weight.js';
import type { DatasetFisherOptions, DatasetFisherResult, LocalFisherOptions, LocalFisherResult } from '../infogeo/fisher.js';
import type { DistributionProjectorOptions, LocalDataMatrixOptions, LocalDataMatrixResult } from '../infogeo/dataMatrix.js';
import type { PullbackMetricOptions, VolumeElementOptions, VolumeElementResult } from '../pullback/metric.js';
import type { HorizontalPathOptions, LeafPath, OrthogonalPathOptions } from '../paths/paths.js';
import { planScan, SCAN_PLANE_OPTIONS } from '../pullback/plane.js';
import type { ScalarCurvatureOptions, ScalarCurvatureResult } from '../pullback/curvature.js';
import type { Plane, PlaneScan, ScanPlaneOptions } from '../pullback/plane.js';
import { planStability, RELATIVE_STABILITY_OPTIONS, stabilityFromOutputs } from '../stability/stability.js';
import type { RelativeStabilityOptions, RelativeStabilityResult } from '../stability/stability.js';
import { LowRankPSD, RowSpaceProjector } from '../linalg/lowRankPSD.js';
import { assertFiniteSync, checkBatchShape, classifierOf } from '../model/classifier.js';
import type { ClassifierOptions } from '../model/classifier.js';
import { concatPortable, decode, encode, releasePortable } from './protocol.js';
import type { PoolFunction, PoolRequest, PoolResponse, PoolWorkerData, Portable } from './protocol.js';
import { WEIGHT_JACOBIAN_OPTIONS } from '../jacobian/weight.js';
import { DATASET_FISHER_OPTIONS, LOCAL_FISHER_OPTIONS } from '../infogeo/fisher.js';
import { DISTRIBUTION_PROJECTOR_OPTIONS, LOCAL_DATA_MATRIX_OPTIONS } from '../infogeo/dataMatrix.js';
import { PULLBACK_METRIC_OPTIONS, VOLUME_ELEMENT_OPTIONS } from '../pullback/metric.js';
import { SCALAR_CURVATURE_OPTIONS } from '../pullback/curvature.js';
import { HORIZONTAL_PATH_OPTIONS, ORTHOGONAL_PATH_OPTIONS } from '../paths/paths.js';

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

/**
 * A pool of worker threads, each with a copy of one model. Every call has the arguments and the
 * result of the function of the same name (without the model): the batch is split between the
 * threads (a batch of B samples uses min(B, threads) of them), each runs the function on its share,
 * and the parts are joined in batch order into a result on the calling thread's active backend,
 * owned by the caller. The model's current weights are used: when they changed since the last call
 * (training), they are copied to the threads first. `onProgress` fires as each thread's share
 * completes; `signal` rejects the call at once (the threads finish their share and it is dropped).
 * Errors are the single-thread function's, named after the pool's call
 * (`JacobianPool.localFisher: ...`). Results of 1 MiB and more (weight Jacobians, Fisher factors)
 * come back through a shared buffer that each thread keeps for its next result: besides its heap,
 * a thread holds about its share of the largest result it has returned.
 *
 * A thread that exited (killed, out of memory...) is replaced by a fresh one, with the current
 * weights, before a call uses it. A call in progress when its thread exits, or when `close` is
 * called, rejects with an {@link infogeo!InfogeoError | InfogeoError} that says so, as does a call
 * whose thread could not be replaced; a call after `close` rejects with a
 * {@link infogeo!ValueError | ValueError}. No call is left pending.
 */
export interface JacobianPool {
  /** The number of worker threads. */
  readonly threads: number;
  /** {@link infogeo!inputJacobian | inputJacobian}, the batch split between the threads. */
  inputJacobian(x: tf.Tensor, options?: InputJacobianOptions): Promise<tf.Tensor>;
  /** {@link infogeo!weightJacobian | weightJacobian}, the batch split between the threads . */
  weightJacobian(x: tf.Tensor, options?: WeightJacobianOptions): Promise<WeightJacobianResult>;
  /** {@link infogeo!localFisher | localFisher}, the batch split between the threads. */
  localFisher(x: tf.Tensor, options?: LocalFisherOptions): Promise<LocalFisherResult>;
  /**
   * {@link infogeo!datasetFisher | datasetFisher} of a data tensor `[N, ...inputShape]`: each thread
   * takes a share of the samples, and their factors are joined (each scaled by √(N_k/N)). An
   * iterable of batches is refused: pass one tensor, or call `datasetFisher` in this thread.
   */
  datasetFisher(data: tf.Tensor, options?: DatasetFisherOptions): Promise<DatasetFisherResult>;
  /** {@link infogeo!localDataMatrix | localDataMatrix}, the batch split between the threads. */
  localDataMatrix(x: tf.Tensor, options?: LocalDataMatrixOptions): Promise<LocalDataMatrixResult>;
  /** {@link infogeo!distributionProjector | distributionProjector}, the batch split between the threads. */
  distributionProjector(x: tf.Tensor, options?: DistributionProjectorOptions): Promise<RowSpaceProjector>;
  /** {@link infogeo!pullbackMetric | pullbackMetric}, the batch (and a per-sample `subspace`) split between the threads. */
  pullbackMetric(x: tf.Tensor, options?: PullbackMetricOptions): Promise<LowRankPSD>;
  /** {@link infogeo!scalarCurvature | scalarCurvature}, the batch (and a per-sample `subspace`) split between the threads. */
  scalarCurvature(x: tf.Tensor, options?: ScalarCurvatureOptions): Promise<ScalarCurvatureResult>;
  /** {@link infogeo!volumeElement | volumeElement}, the batch (and a per-sample `subspace`) split between the threads. */
  volumeElement(x: tf.Tensor, options?: VolumeElementOptions): Promise<VolumeElementResult>;
  /**
   * {@link infogeo!horizontalPath | horizontalPath}: the B pairs split between the threads. The
   * steps run in the threads: instead of `onStep`, `onProgress` reports each share's paths as they
   * finish, and an abort rejects the call (in one thread the paths resolve, cut short).
   */
  horizontalPath(source: tf.Tensor, target: tf.Tensor, options?: PooledPathOptions<HorizontalPathOptions>): Promise<LeafPath[]>;
  /** {@link infogeo!orthogonalPath | orthogonalPath}: the B sources (and a per-sample `direction`) split between the threads, as {@link horizontalPath}. */
  orthogonalPath(source: tf.Tensor, options?: PooledPathOptions<OrthogonalPathOptions>): Promise<LeafPath[]>;
  /** {@link infogeo!kernelPath | kernelPath}: the B pairs split between the threads, as {@link horizontalPath}. */
  kernelPath(source: tf.Tensor, target: tf.Tensor, options?: PooledPathOptions<HorizontalPathOptions>): Promise<LeafPath[]>;
  /** {@link infogeo!tangentPath | tangentPath}: the B sources (and a per-sample `direction`) split between the threads, as {@link horizontalPath}. */
  tangentPath(source: tf.Tensor, options?: PooledPathOptions<OrthogonalPathOptions>): Promise<LeafPath[]>;
  /**
   * {@link infogeo!scanPlane | scanPlane}: the grid points split between the threads, in whole
   * batches of `batchSize` (so the values are one thread's); `onProgress` counts grid points as each
   * thread's share finishes. The plane stays the caller's.
   */
  scanPlane(plane: Plane, options?: ScanPlaneOptions): Promise<PlaneScan>;
  /**
   * {@link infogeo!relativeStability | relativeStability}: the probing images split between the
   * threads, each thread deforming its share with the fields one thread would draw (each image's
   * seeds depend on its index only), and D_f, G_f and R_f aggregated here from all the outputs:
   * the result of one thread, to float32 rounding of batched kernels. The threads return f of
   * every image for every temperature and draw (temperatures × draws × P × m floats), which this
   * thread then holds at once, where one thread holds one draw: for a wide `target` layer and many
   * temperatures, prefer `relativeStability` in this thread. `onProgress` counts images as each
   * thread's share finishes (in one thread it counts (temperature, draw) steps).
   */
  relativeStability(images: tf.Tensor, options?: RelativeStabilityOptions): Promise<RelativeStabilityResult>;
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

const ERRORS: Record<string, new (message: string) => Error> = { ShapeError, ValueError, UnsupportedModelError, InfogeoError };

/** A worker's error as the calling thread's class, named after the pool's call instead of the worker's function. */
function rethrown(r: { name: string; message: string }, fn: string, call: string, layerNames: readonly string[]): Error {
  const missing = r.name === 'LayerNotFoundError' ? /no layer named '(.*?)'(?: \(in (\w+)\))?\./.exec(r.message) : null;
  if (missing !== null) return new LayerNotFoundError(call, missing[1] as string, layerNames, missing[2]);
  const message = r.message.startsWith(`${fn}:`) ? `${call}:${r.message.slice(fn.length + 1)}` : r.message;
  return new (ERRORS[r.name] ?? Error)(message);
}

/** A path's options in the pool: `onProgress` (per share of paths) instead of `onStep`. */
export type PooledPathOptions<O> = Omit<O, 'onStep'> & {
  /** Called as each thread's share of the paths finishes. */
  onProgress?: (progress: Progress) => void;
};

/**
 * The option names each of the pool's calls takes: its function's, and for a path `onProgress`
 * (its `onStep` is named so that the call can say why it is refused).
 */
const POOL_OPTIONS: Record<PoolFunction, Readonly<Record<string, true>>> = {
  inputJacobian: INPUT_JACOBIAN_OPTIONS,
  weightJacobian: WEIGHT_JACOBIAN_OPTIONS,
  localFisher: LOCAL_FISHER_OPTIONS,
  datasetFisher: DATASET_FISHER_OPTIONS,
  localDataMatrix: LOCAL_DATA_MATRIX_OPTIONS,
  distributionProjector: DISTRIBUTION_PROJECTOR_OPTIONS,
  pullbackMetric: PULLBACK_METRIC_OPTIONS,
  volumeElement: VOLUME_ELEMENT_OPTIONS,
  scalarCurvature: SCALAR_CURVATURE_OPTIONS,
  horizontalPath: { ...HORIZONTAL_PATH_OPTIONS, onProgress: true },
  orthogonalPath: { ...ORTHOGONAL_PATH_OPTIONS, onProgress: true },
  kernelPath: { ...HORIZONTAL_PATH_OPTIONS, onProgress: true },
  tangentPath: { ...ORTHOGONAL_PATH_OPTIONS, onProgress: true },
  scanPlane: SCAN_PLANE_OPTIONS,
  relativeStability: RELATIVE_STABILITY_OPTIONS,
};

/** A share of a split call: its arguments (after the model) and the tensors made for it (released once sent). */
type Share = (b0: number, b1: number) => { args: unknown[]; owned: tf.Tensor[] };

/** How the parts of a split call are joined (in batch order). */
type Join = 'concat' | 'first' | { [key: string]: Join };

/** Share boundaries 0 = b₀ < b₁ < … = B: B samples split as evenly as the threads allow. */
function evenShares(B: number, threads: number): number[] {
  const used = Math.min(B, threads);
  return Array.from({ length: used + 1 }, (_, k) => Math.floor((k * B) / used));
}

/**
 * Share boundaries at multiples of `batch` (the last one B): each thread runs whole batches of the
 * one-thread computation, so its values, to the float32 rounding of batched kernels, are one
 * thread's.
 */
function batchShares(B: number, threads: number, batch: number): number[] {
  const chunks = Math.ceil(B / batch);
  const used = Math.min(threads, chunks);
  return Array.from({ length: used + 1 }, (_, k) => Math.min(B, Math.floor((k * chunks) / used) * batch));
}

/**
 * Joins the portable parts of a call (see `concatPortable`): `'concat'` along the batch,
 * `'first'` from the first part, objects field by field.
 */
function join(parts: Portable[], how: Join, call: string): Portable {
  if (how === 'first') return parts[0] as Portable;
  if (how === 'concat') return concatPortable(parts, call);
  const out: Record<string, Portable> = {};
  for (const [key, h] of Object.entries(how)) out[key] = join(parts.map((p) => (p as Record<string, Portable>)[key] as Portable), h, call);
  return out;
}

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
 * Starts a pool of worker threads for infogeo's batched calls on `model` (Node only; see
 * {@link JacobianPool} for what it runs). Each thread loads
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
  checkOptions(options, fn, { threads: true, backend: true });
  const threads = options.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1) throw new ValueError(`${fn}: threads must be a positive integer, got ${String(threads)}.`);
  const backend = options.backend ?? 'wasm';
  if (backend !== 'wasm' && backend !== 'cpu') throw new ValueError(`${fn}: backend must be 'wasm' or 'cpu', got '${String(backend)}'.`);
  classifierOf(model, {}, fn);
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

  const layerNames = model.layers.map((l) => l.name);

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

  /**
   * Runs `fn` in the threads on shares of a batch of B samples: `share(b0, b1)` gives a share's
   * arguments (after the model), the parts are joined with `how`. Progress after each share, abort
   * and `close` at once (the threads' work is dropped); the calling thread's tensors untouched.
   */
  const run = async (
    fn: PoolFunction,
    call: string,
    B: number,
    onProgress: InputJacobianOptions['onProgress'],
    signal: AbortSignal | undefined,
    share: Share,
    how: Join | ((parts: Portable[]) => Portable),
    bounds: number[] = evenShares(B, slots.length),
  ): Promise<unknown> => {
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
    // The threads' results so far: their shared buffers are released when they are decoded, and
    // otherwise (the call stopped or failed) when the call ends, or on arrival after it.
    const arrived: Portable[] = [];
    try {
      const used = bounds.length - 1;
      const threadsUsed = await guard(Promise.all(Array.from({ length: used }, (_, k) => ensure(k, call))));
      await guard(syncWeights(threadsUsed, call));
      let done = 0;
      const parts = threadsUsed.map(async (thread, k) => {
        const b0 = bounds[k] as number;
        const b1 = bounds[k + 1] as number;
        const transfer: ArrayBuffer[] = [];
        const { args: shared, owned } = share(b0, b1);
        let args: Portable[];
        try {
          args = shared.map((a) => encode(a, transfer));
        } finally {
          tf.dispose(owned);
        }
        const r = await send(thread, { type: 'call', id: nextId++, fn, args }, call, transfer);
        if (r.type === 'error') throw rethrown(r, fn, call, layerNames);
        if (r.type !== 'result') throw new InfogeoError(`${call}: unexpected reply '${r.type}' from a worker thread.`);
        if (over) releasePortable(r.value);
        else arrived.push(r.value);
        done += b1 - b0;
        if (!over) onProgress?.({ done, total: B });
        return r.value;
      });
      // The parts stay plain arrays until they are joined: one tensor per result, no tensor to
      // release when the call stops early.
      const results = await guard(Promise.all(parts));
      return decode(typeof how === 'function' ? how(results) : join(results, how, call));
    } finally {
      over = true;
      arrived.forEach(releasePortable);
      signal?.removeEventListener('abort', onAbort);
      onClose.delete(onClosed);
    }
  };

  /** Refuses a call on a closed pool, and options that are not an object or have an unknown key (errors name `call`). */
  const accept = (fn: PoolFunction, opts: object) => {
    const call = `JacobianPool.${fn}`;
    if (closed) throw new ValueError(`${call}: the pool is closed.`);
    checkOptions(opts, call, POOL_OPTIONS[fn]);
  };

  /** The shares of a per-sample call `fn(x, options)`: x, and the options' per-sample tensors, sliced. */
  const perSample = <O extends { onProgress?: unknown; signal?: AbortSignal }>(fn: PoolFunction, x: tf.Tensor, opts: O, how: Join, batchedOption: (key: string, v: tf.Tensor) => boolean = () => false) => {
    const call = `JacobianPool.${fn}`;
    accept(fn, opts);
    if ((opts as { onStep?: unknown }).onStep !== undefined) throw new ValueError(`${call}: onStep cannot run in the pool's threads; pass onProgress (per share of paths), or call ${fn} in this thread.`);
    const clf = classifierOf(model, opts as ClassifierOptions, call);
    checkBatchShape(clf, x, call);
    assertFiniteSync(x, call, 'x');
    const B = x.shape[0] as number;
    const { onProgress, signal, ...rest } = opts;
    const share: Share = (b0, b1) => {
      const owned = [tf.slice(x, b0, b1 - b0)];
      const options: Record<string, unknown> = {};
      for (const [key, v] of Object.entries(rest)) {
        if (v instanceof tf.Tensor && batchedOption(key, v)) owned.push((options[key] = tf.slice(v, b0, b1 - b0)));
        else options[key] = v;
      }
      return { args: [owned[0], options], owned };
    };
    return { call, clf, B, onProgress: onProgress as InputJacobianOptions['onProgress'], signal, share, how };
  };
  const go = <T>(fn: PoolFunction, p: ReturnType<typeof perSample>): Promise<T> => run(fn, p.call, p.B, p.onProgress, p.signal, p.share, p.how) as Promise<T>;
  /** A `subspace` `[B, k, ...inputShape]` (not a shared `[k, ...inputShape]`) is per sample. */
  const subspaceOf = (x: tf.Tensor) => (key: string, v: tf.Tensor) => key === 'subspace' && v.rank === x.rank + 1;

  /** A path along a fixed direction, the B sources (and a per-sample direction) split. */
  const directionPath = async (fn: 'orthogonalPath' | 'tangentPath', source: tf.Tensor, opts: PooledPathOptions<OrthogonalPathOptions>): Promise<LeafPath[]> => {
    // Without a direction, the one the function would draw (same seed, same shape), drawn here
    // and split: each thread drawing its own would give other paths than one thread does.
    accept(fn, opts);
    const seed = checkNumber(opts.seed, `JacobianPool.${fn}`, 'seed', {}, 0);
    const drawn = opts.direction === undefined && source instanceof tf.Tensor && !source.isDisposed ? seededNormal(source.shape, seed) : undefined;
    try {
      const o = drawn ? { ...opts, direction: drawn } : opts;
      return await go(fn, perSample(fn, source, o, 'concat', (key, v) => key === 'direction' && v.rank === source.rank));
    } finally {
      drawn?.dispose();
    }
  };
  /** A path towards a target, the B pairs split. */
  const targetPath = async (fn: 'horizontalPath' | 'kernelPath', source: tf.Tensor, target: tf.Tensor, opts: PooledPathOptions<HorizontalPathOptions>): Promise<LeafPath[]> => {
    const p = perSample(fn, source, opts, 'concat');
    checkTensor(target, p.call, 'target');
    if (target.shape.length !== source.shape.length || target.shape.some((d, i) => d !== source.shape[i])) {
      throw new ShapeError(`${p.call}: target must have the shape of source [${source.shape.join(', ')}], got [${target.shape.join(', ')}].`);
    }
    const share: Share = (b0, b1) => {
      const { args, owned } = p.share(b0, b1);
      const t = tf.slice(target, b0, b1 - b0);
      return { args: [args[0], t, args[1]], owned: [...owned, t] };
    };
    return run(fn, p.call, p.B, p.onProgress, p.signal, share, 'concat') as Promise<LeafPath[]>;
  };

  const result: JacobianPool = {
    threads,
    async inputJacobian(x, opts = {}) {
      const p = perSample('inputJacobian', x, opts, 'concat');
      planInputJacobian(p.clf, p.B, opts, p.call); // validates the options here, with this call's name
      return go('inputJacobian', p);
    },
    async weightJacobian(x, opts = {}) {
      return go('weightJacobian', perSample('weightJacobian', x, opts, { jacobian: 'concat', slices: 'first', numWeights: 'first' }));
    },
    async localFisher(x, opts = {}) {
      return go('localFisher', perSample('localFisher', x, opts, { F: 'concat', probs: 'concat', slices: 'first' }));
    },
    async localDataMatrix(x, opts = {}) {
      const p = perSample('localDataMatrix', x, opts, { G: 'concat', probs: 'concat', droppedMass: 'concat', traceStandardError: 'concat' });
      const rows = opts.rows;
      if (typeof rows !== 'object' || rows === null || !('samples' in rows)) return go('localDataMatrix', p);
      // Sampled rows: each share's samples draw from their index in the whole batch, as in one thread.
      const share: Share = (b0, b1) => {
        const s = p.share(b0, b1);
        return { ...s, args: [s.args[0], { ...(s.args[1] as object), rows: { ...rows, first: (rows.first ?? 0) + b0 } }] };
      };
      return go('localDataMatrix', { ...p, share });
    },
    async distributionProjector(x, opts = {}) {
      return go('distributionProjector', perSample('distributionProjector', x, opts, 'concat'));
    },
    async pullbackMetric(x, opts = {}) {
      return go('pullbackMetric', perSample('pullbackMetric', x, opts, 'concat', subspaceOf(x)));
    },
    async scalarCurvature(x, opts = {}) {
      return go('scalarCurvature', perSample('scalarCurvature', x, opts, { scalar: 'concat', ricci: 'concat', dim: 'first', target: 'first', width: 'first' }, subspaceOf(x)));
    },
    async volumeElement(x, opts = {}) {
      return go('volumeElement', perSample('volumeElement', x, opts, { logVolume: 'concat', rank: 'concat', terms: 'first', logSingularValues: 'concat', target: 'first', width: 'first' }, subspaceOf(x)));
    },
    orthogonalPath: (source, opts = {}) => directionPath('orthogonalPath', source, opts),
    tangentPath: (source, opts = {}) => directionPath('tangentPath', source, opts),
    horizontalPath: (source, target, opts = {}) => targetPath('horizontalPath', source, target, opts),
    kernelPath: (source, target, opts = {}) => targetPath('kernelPath', source, target, opts),
    async scanPlane(plane, opts = {}) {
      const call = 'JacobianPool.scanPlane';
      accept('scanPlane', opts);
      const scan = await planScan(model, plane, opts, call);
      const { onProgress, signal, ...rest } = opts;
      const share: Share = (b0, b1) => ({ args: [{ origin: plane.origin, axes: plane.axes, anchors: plane.anchors }, rest, b0, b1], owned: [] });
      const merge = (parts: Portable[]): Portable => {
        const values = join(parts, { predicted: 'concat', probability: 'concat', entropy: 'concat', logVolume: 'concat', rank: 'concat', ...(scan.curvature ? { curvature: 'concat' as const } : {}) }, call) as Record<string, Portable>;
        return { steps: scan.steps, coords: scan.coords, ...values };
      };
      return run('scanPlane', call, scan.P, onProgress, signal, share, merge, batchShares(scan.P, slots.length, scan.batchSize)) as Promise<PlaneScan>;
    },
    async relativeStability(images, opts = {}) {
      const call = 'JacobianPool.relativeStability';
      accept('relativeStability', opts);
      const plan = await planStability(model, images, opts, call);
      const { onProgress, signal, ...rest } = opts;
      const share: Share = (b0, b1) => {
        const x = tf.slice(images, b0, b1 - b0);
        return { args: [x, rest, b0], owned: [x] };
      };
      const merge = (parts: Portable[]): Portable => {
        const shares = parts as unknown as { f0: Float32Array; ft: Float32Array[]; fNoise: Float32Array[] }[];
        const joined = (pick: (s: (typeof shares)[number]) => Float32Array) => concatPortable(shares.map(pick), call) as Float32Array;
        const draws = plan.temps.length * plan.draws;
        const ft = Array.from({ length: draws }, (_, k) => joined((s) => s.ft[k] as Float32Array));
        const fNoise = Array.from({ length: draws }, (_, k) => joined((s) => s.fNoise[k] as Float32Array));
        return stabilityFromOutputs(plan, joined((s) => s.f0), ft, fNoise) as unknown as Portable;
      };
      return run('relativeStability', call, plan.P, onProgress, signal, share, merge) as Promise<RelativeStabilityResult>;
    },
    async datasetFisher(data, opts = {}) {
      const call = 'JacobianPool.datasetFisher';
      if (!(data instanceof tf.Tensor)) throw new ShapeError(`${call}: argument 'data' must be a tf.Tensor [N, ...inputShape] (an iterable of batches runs in this thread: call datasetFisher).`);
      const p = perSample('datasetFisher', data, opts, 'first');
      const N = p.B;
      const maxBytes = checkNumber(opts.maxFactorMB, call, 'maxFactorMB', { above: 0 }, 1024) * 2 ** 20;
      // Each share's factor is its mean Fisher's, scaled by 1/√N_k: rescaled by √(N_k/N), the
      // stacked rows ([1, N_k·(C−1), d] each) are the mean over all N samples.
      const merge = (parts: Portable[]): Portable => {
        const results = parts as unknown as { F: { __psd: { __tensor: { data: Float32Array; shape: number[] } } }; count: number; slices: Portable }[];
        const rows = results.map((r) => {
          const t = r.F.__psd.__tensor;
          const scale = Math.sqrt(r.count / N);
          for (let i = 0; i < t.data.length; i++) t.data[i] = (t.data[i] as number) * scale;
          return t.data;
        });
        const d = (results[0] as { F: { __psd: { __tensor: { shape: number[] } } } }).F.__psd.__tensor.shape[2] as number;
        const total = rows.reduce((a, q) => a + q.length, 0) / d;
        // Each thread checked its own share against maxFactorMB; the joined factor is checked here.
        if (total * d * 4 > maxBytes) {
          throw new ValueError(`${call}: the stacked factor passed maxFactorMB = ${opts.maxFactorMB ?? 1024} (${total} rows × ${d} weights); use fewer samples or the 'layers' option.`);
        }
        return { F: { __psd: { __tensor: { parts: rows, shape: [1, total, d], dtype: 'float32' } } }, count: N, slices: (results[0] as { slices: Portable }).slices } as Portable;
      };
      return run('datasetFisher', call, N, p.onProgress, p.signal, p.share, merge) as Promise<DatasetFisherResult>;
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
