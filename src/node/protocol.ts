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

export type PoolRequest =
  | { type: 'jacobian'; id: number; data: Float32Array; shape: number[]; options: PortableJacobianOptions }
  | { type: 'weights'; id: number; weights: { data: Float32Array; shape: number[] }[] };

export type PoolResponse =
  | { type: 'ready'; id: number }
  | { type: 'done'; id: number }
  | { type: 'jacobian'; id: number; data: Float32Array; shape: number[] }
  | { type: 'error'; id: number; name: string; message: string };
