/**
 * Messages between a pool and its worker threads, and how the values of infogeo's calls cross
 * between them: tensors as their float32 (or int32) data, a {@link LowRankPSD} as its factor, a
 * {@link RowSpaceProjector} as its float64 bases; typed arrays, arrays and plain objects as they
 * are. @internal @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { io } from '@tensorflow/tfjs-core';
import { LowRankPSD, RowSpaceProjector, trustedPSD } from '../linalg/lowRankPSD.js';
import type { RowBasis64 } from '../linalg/rows.js';
import type { HeapBackend } from '../jacobian/assemble.js';

/** What a worker starts from. */
export interface PoolWorkerData {
  backend: 'wasm' | 'cpu';
  artifacts: io.ModelArtifacts;
}

/** The public functions a pool runs in its worker threads, each on a share of the batch. */
export const POOL_FUNCTIONS = [
  'inputJacobian',
  'weightJacobian',
  'localFisher',
  'datasetFisher',
  'localDataMatrix',
  'distributionProjector',
  'pullbackMetric',
  'volumeElement',
  'scalarCurvature',
  'horizontalPath',
  'orthogonalPath',
  'kernelPath',
  'tangentPath',
  'scanPlane',
  'relativeStability',
] as const;
export type PoolFunction = (typeof POOL_FUNCTIONS)[number];

/** A value that crosses to or from a worker thread (see {@link encode}). */
export type Portable =
  | null
  | undefined
  | boolean
  | number
  | string
  | ArrayBufferView
  | Portable[]
  | { [key: string]: Portable }
  | { __tensor: { data?: Float32Array | Int32Array; parts?: (Float32Array | Int32Array)[]; shape: number[]; dtype: 'float32' | 'int32' } }
  | { __psd: Portable }
  | { __projector: { bases: RowBasis64[]; dim: number } };

/** What the pool sends: one call on a share of the batch, or the model's current weights. */
export type PoolRequest =
  | { type: 'call'; id: number; fn: PoolFunction; args: Portable[] }
  | { type: 'weights'; id: number; weights: { data: Float32Array; shape: number[] }[] };

/**
 * What a worker answers: `ready` once its backend and model are loaded, or `failed` when they could
 * not be (then the pool terminates it), with the kind (`'layer'`, `'activation'`...) and class name
 * of an object tfjs-layers does not know: a custom class registered only in the pool's thread. Then
 * one answer per request, with the request's `id`.
 */
export type PoolResponse =
  | { type: 'ready'; id: number }
  | { type: 'failed'; id: number; name: string; message: string; unknown?: { kind: string; className: string } }
  | { type: 'done'; id: number }
  | { type: 'result'; id: number; value: Portable }
  | { type: 'error'; id: number; name: string; message: string };

/** Results at least this large cross through a worker's {@link Outbox}, smaller ones by transfer. */
const OUTBOX_MIN_BYTES = 1 << 20;
/** Shared buffers an outbox keeps for reuse. */
const OUTBOX_SLOTS = 4;

/**
 * A worker's reusable shared buffers for its large results. A result transferred as a fresh
 * ArrayBuffer costs a page fault per 4 KiB on first touch (measured: ~150 ms for the 165 MB
 * Fisher factor of the MNIST CNN at B = 4, about half the time of computing it); a buffer written
 * before costs only the copy (~30 ms). Each buffer starts with an int32 flag: 1 while the pool
 * has not yet copied the result out (see {@link decode}), so a buffer is reused only once it is
 * released — after the copy, or when the pool drops the result (an aborted or failed call, a
 * reply after the call stopped: {@link releasePortable}). A worker keeps at most
 * {@link OUTBOX_SLOTS} buffers between calls.
 */
export class Outbox {
  private slots: SharedArrayBuffer[] = [];

  /** A view of `length` entries in an idle buffer (or a new one), marked busy. */
  take(length: number, dtype: 'float32' | 'int32'): Float32Array | Int32Array {
    const bytes = 8 + 4 * length;
    const idle = this.slots.filter((b) => b.byteLength >= bytes && !busy(b));
    let buffer = idle.sort((a, b) => a.byteLength - b.byteLength)[0];
    if (buffer === undefined) {
      buffer = new SharedArrayBuffer(bytes);
      // Idle buffers too small for this result are forgotten (this one serves their sizes too), so
      // what a thread keeps is its largest result and the buffers the pool has not copied out yet.
      this.slots = this.slots.filter((b) => busy(b) || b.byteLength > bytes);
      this.slots.push(buffer);
      if (this.slots.length > OUTBOX_SLOTS) this.slots.shift();
    }
    setBusy(buffer, true);
    return dtype === 'int32' ? new Int32Array(buffer, 8, length) : new Float32Array(buffer, 8, length);
  }
}

/** An outbox buffer's flag (its first int32): 1 while the result in it is not copied out. */
const busy = (b: SharedArrayBuffer) => Atomics.load(new Int32Array(b, 0, 1), 0) !== 0;
const setBusy = (b: SharedArrayBuffer, on: boolean) => Atomics.store(new Int32Array(b, 0, 1), 0, on ? 1 : 0);

/** The outbox views already released: a view is released once, or a worker's next result in the same buffer could be marked free before it is copied. */
const released = new WeakSet<object>();

/** Marks a result's outbox buffers as copied out or dropped (the worker may write them again). */
function release(pieces: (Float32Array | Int32Array)[]): void {
  for (const p of pieces) {
    if (!(p.buffer instanceof SharedArrayBuffer) || released.has(p)) continue;
    released.add(p);
    setBusy(p.buffer, false);
  }
}

/**
 * Releases the outbox buffers of a worker's result that will not be decoded (an aborted or failed
 * call, a reply after the call stopped); a no-op for those {@link decode} already released.
 */
export function releasePortable(p: Portable): void {
  if (p === null || typeof p !== 'object' || ArrayBuffer.isView(p)) return;
  if (Array.isArray(p)) return p.forEach(releasePortable);
  if ('__tensor' in p) {
    const t = p.__tensor as PortableTensor;
    return release(t.parts ?? (t.data === undefined ? [] : [t.data]));
  }
  Object.values(p).forEach((e) => releasePortable(e as Portable));
}

/**
 * A value made portable: tensors read back (synchronously: call it on values whose kernels have
 * run), functions and AbortSignals left out (progress and abort stay with the calling thread).
 * The buffers to transfer are pushed to `transfer`; with an `outbox` (a worker's results), large
 * tensors are copied into its shared buffers instead.
 */
export function encode(v: unknown, transfer: ArrayBuffer[] = [], outbox?: Outbox): Portable {
  if (v instanceof tf.Tensor) {
    // Where the tensor lives decides how it is read, not the active backend: a cpu tensor read
    // while wasm is active is the cpu backend's array.
    const engine = tf.engine() as unknown as { registry: Record<string, unknown>; state: { tensorInfo: Map<unknown, { backend: unknown }> } };
    const wasm = engine.registry['wasm'];
    const onWasm = wasm !== undefined && engine.state.tensorInfo.get(v.dataId)?.backend === wasm;
    const dtype = v.dtype === 'int32' ? 'int32' : 'float32';
    if (outbox !== undefined && v.size * 4 >= OUTBOX_MIN_BYTES) {
      const data = outbox.take(v.size, dtype);
      // A view of the heap on wasm (no copy out first), the cpu backend's own array otherwise.
      data.set(onWasm ? (wasm as HeapBackend).typedArrayFromHeap(v) : (v.dataSync() as Float32Array | Int32Array));
      return { __tensor: { data, shape: v.shape, dtype } };
    }
    // A tensor on wasm reads back as a copy out of the heap (ours to transfer); other backends
    // (cpu) hand out their own array, which is copied.
    const values = v.dataSync() as Float32Array | Int32Array;
    const own = onWasm && values.byteOffset === 0 && values.byteLength === values.buffer.byteLength;
    const data = own ? values : dtype === 'int32' ? Int32Array.from(values) : Float32Array.from(values);
    transfer.push(data.buffer as ArrayBuffer);
    return { __tensor: { data, shape: v.shape, dtype } };
  }
  if (v instanceof LowRankPSD) return { __psd: encode(v.factor, transfer, outbox) };
  if (v instanceof RowSpaceProjector) return { __projector: { bases: [...v.basis64], dim: v.dim } };
  if (typeof v === 'function' || (typeof AbortSignal !== 'undefined' && v instanceof AbortSignal)) return undefined;
  if (ArrayBuffer.isView(v) || v === null || typeof v !== 'object') return v as Portable;
  if (Array.isArray(v)) return v.map((e) => encode(e, transfer, outbox));
  const out: Record<string, Portable> = {};
  for (const [k, e] of Object.entries(v)) {
    const p = encode(e, transfer, outbox);
    if (p !== undefined) out[k] = p;
  }
  return out;
}

/** The value back, with new tensors (owned by whoever decodes). */
export function decode(p: Portable): unknown {
  if (p === null || typeof p !== 'object' || ArrayBuffer.isView(p)) return p;
  if (Array.isArray(p)) return p.map(decode);
  if ('__tensor' in p) {
    const t = p.__tensor as PortableTensor;
    const pieces = t.parts ?? [t.data as Float32Array | Int32Array];
    // A worker's shared buffer is copied out (tf.tensor would keep it as the cpu tensor's array).
    if (pieces.length === 1 && !((pieces[0] as Float32Array).buffer instanceof SharedArrayBuffer)) return tf.tensor(pieces[0] as Float32Array, t.shape, t.dtype);
    try {
      return tensorFromParts(pieces, t.shape, t.dtype);
    } finally {
      release(pieces);
    }
  }
  // The worker checked its factor's entries (finite); a join only moves them.
  if ('__psd' in p) return trustedPSD(decode(p.__psd as Portable) as tf.Tensor3D);
  if ('__projector' in p) {
    const { bases, dim } = p.__projector as { bases: RowBasis64[]; dim: number };
    return new RowSpaceProjector(bases, dim);
  }
  const out: Record<string, unknown> = {};
  for (const [k, e] of Object.entries(p)) out[k] = decode(e as Portable);
  return out;
}

/** Every tensor in a decoded value (a LowRankPSD's factor, a projector's basis included). */
export function tensorsIn(v: unknown): tf.Tensor[] {
  if (v instanceof tf.Tensor) return [v];
  if (v instanceof LowRankPSD) return [v.factor];
  if (v instanceof RowSpaceProjector) return [v.basis];
  if (v === null || typeof v !== 'object' || ArrayBuffer.isView(v)) return [];
  return (Array.isArray(v) ? v : Object.values(v)).flatMap(tensorsIn);
}

/** A tensor's values: one array, or (joined parts) several, end to end. */
type PortableTensor = { data?: Float32Array | Int32Array; parts?: (Float32Array | Int32Array)[]; shape: number[]; dtype: 'float32' | 'int32' };

/**
 * One tensor from its parts: on wasm written straight into the heap (one copy of each part), on
 * other backends joined here first.
 */
function tensorFromParts(parts: (Float32Array | Int32Array)[], shape: number[], dtype: 'float32' | 'int32'): tf.Tensor {
  const size = parts.reduce((a, q) => a + q.length, 0);
  if (tf.getBackend() === 'wasm') {
    const backend = tf.backend() as unknown as HeapBackend;
    const info = backend.makeOutput(shape, dtype);
    const view = backend.typedArrayFromHeap(info); // after the allocation, which may grow the heap
    parts.reduce((at, q) => (view.set(q, at), at + q.length), 0);
    return tf.engine().makeTensorFromTensorInfo(info);
  }
  const out = dtype === 'int32' ? new Int32Array(size) : new Float32Array(size);
  parts.reduce((at, q) => (out.set(q, at), at + q.length), 0);
  return tf.tensor(out, shape, dtype);
}

/**
 * Joins portable values of the parts of a batch, in order, before any of them is a tensor:
 * tensors (and factors) along their first axis, projectors' bases, typed arrays and arrays end to
 * end. Each byte is copied once, here, instead of into tensors and again by a concatenation.
 */
export function concatPortable(parts: Portable[], what: string): Portable {
  const first = parts[0] as Portable;
  if (parts.length === 1) return first;
  if (ArrayBuffer.isView(first) && !(first instanceof DataView)) {
    // Typed arrays of one kind (Float64Array, Int32Array...), end to end.
    const all = parts as unknown as Float64Array[];
    const Kind = (first as Float64Array).constructor as new (n: number) => Float64Array;
    const out = new Kind(all.reduce((a, p) => a + p.length, 0));
    all.reduce((at, p) => (out.set(p, at), at + p.length), 0);
    return out;
  }
  if (Array.isArray(first)) return (parts as Portable[][]).flat();
  if (first !== null && typeof first === 'object' && !ArrayBuffer.isView(first)) {
    if ('__tensor' in first) {
      // Kept as parts: the tensor is made from them in one copy (see decode).
      const all = parts.map((p) => (p as { __tensor: PortableTensor }).__tensor);
      const t0 = all[0] as PortableTensor;
      const pieces = all.flatMap((t) => t.parts ?? [t.data as Float32Array | Int32Array]);
      return { __tensor: { parts: pieces, shape: [all.reduce((a, t) => a + (t.shape[0] as number), 0), ...t0.shape.slice(1)], dtype: t0.dtype } } as Portable;
    }
    if ('__psd' in first) return { __psd: concatPortable(parts.map((p) => (p as { __psd: Portable }).__psd), what) };
    if ('__projector' in first) {
      const all = parts.map((p) => (p as { __projector: { bases: RowBasis64[]; dim: number } }).__projector);
      return { __projector: { bases: all.flatMap((a) => a.bases), dim: (all[0] as { dim: number }).dim } };
    }
  }
  throw new Error(`${what}: cannot join the threads' results (${typeof first}).`);
}
