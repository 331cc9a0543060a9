/** Messages between a Jacobian pool and its worker threads. @internal @module */
import type { io } from '@tensorflow/tfjs-core';
import type { InputJacobianOptions } from '../jacobian/input.js';

/** What a worker starts from. */
export interface PoolWorkerData {
  backend: 'wasm' | 'cpu';
  artifacts: io.ModelArtifacts;
}

/** The options a worker can receive (no callbacks, no signal). */
export type PortableJacobianOptions = Omit<InputJacobianOptions, 'onProgress' | 'signal'>;

/** What the pool sends: a share of a batch, or the model's current weights. */
export type PoolRequest =
  | { type: 'jacobian'; id: number; data: Float32Array; shape: number[]; options: PortableJacobianOptions }
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
  | { type: 'jacobian'; id: number; data: Float32Array; shape: number[] }
  | { type: 'error'; id: number; name: string; message: string };
