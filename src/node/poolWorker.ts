/**
 * One thread of a {@link createJacobianPool} pool: its own tfjs engine and backend, a copy of the
 * model, and input Jacobians on request. Not a public module.
 *
 * @internal
 * @module
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { registerGradientKernels } from '../backends/gradientKernels.js';
import { useWasmBackend } from '../backends/wasm.js';
import { inputJacobian } from '../jacobian/input.js';
import type { PoolRequest, PoolResponse, PoolWorkerData } from './protocol.js';

const port = parentPort;
if (port === null) throw new Error('infogeo pool worker: not started as a worker thread');
const init = workerData as PoolWorkerData;

async function start(): Promise<LayersModel> {
  tf.env().set('PROD', true);
  if (init.backend === 'wasm') {
    await useWasmBackend();
  } else {
    await import('@tensorflow/tfjs-backend-cpu');
    await tf.setBackend('cpu');
  }
  registerGradientKernels([tf.getBackend()]);
  return tfl.loadLayersModel(tf.io.fromMemory(init.artifacts));
}

function reply(msg: PoolResponse, transfer: ArrayBuffer[] = []): void {
  port?.postMessage(msg, transfer);
}

async function handle(model: LayersModel, msg: PoolRequest): Promise<void> {
  if (msg.type === 'weights') {
    const values = msg.weights.map((w) => tf.tensor(w.data, w.shape, 'float32'));
    try {
      model.setWeights(values);
    } finally {
      tf.dispose(values);
    }
    reply({ type: 'done', id: msg.id });
    return;
  }
  const x = tf.tensor(msg.data, msg.shape, 'float32');
  try {
    const J = await inputJacobian(model, x, msg.options);
    const data = (await J.data()) as Float32Array;
    const shape = J.shape;
    J.dispose();
    reply({ type: 'jacobian', id: msg.id, data, shape }, [data.buffer as ArrayBuffer]);
  } finally {
    x.dispose();
  }
}

function replyError(id: number, e: unknown): void {
  const err = e as Error;
  reply({ type: 'error', id, name: err?.name ?? 'Error', message: err?.message ?? String(e) });
}

// One request at a time, in order: new weights never land in the middle of a Jacobian.
let queue: Promise<void> = Promise.resolve();

// No top-level await: the package targets ES2020.
void start().then(
  (model) => {
    port.on('message', (msg: PoolRequest) => {
      queue = queue.then(() => handle(model, msg)).catch((e: unknown) => replyError(msg.id, e));
    });
    reply({ type: 'ready', id: -1 });
  },
  (e: unknown) => {
    // tfjs-layers' words for a class it has no registration for ("Unknown layer: MyLayer. This may
    // be due to..."): a custom class registered only in the pool's thread. The pool turns this
    // into an UnsupportedModelError that names the layer.
    const err = e as Error;
    const message = err?.message ?? String(e);
    const m = /^Unknown ([a-z ]+): (.+?)\. /.exec(message);
    const unknown = m === null ? {} : { unknown: { kind: m[1] as string, className: m[2] as string } };
    reply({ type: 'failed', id: -1, name: err?.name ?? 'Error', message, ...unknown });
  },
);
