/**
 * One thread of a {@link createJacobianPool} pool: its own tfjs engine and backend, a copy of the
 * model, and infogeo's calls on a share of a batch on request. Not a public module.
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
import { weightJacobian } from '../jacobian/weight.js';
import { datasetFisher, localFisher } from '../infogeo/fisher.js';
import { distributionProjector, localDataMatrix } from '../infogeo/dataMatrix.js';
import { scalarCurvature } from '../pullback/curvature.js';
import { pullbackMetric, volumeElement } from '../pullback/metric.js';
import { horizontalPath, kernelPath, orthogonalPath, tangentPath } from '../paths/paths.js';
import { planScan, scanPoints } from '../pullback/plane.js';
import type { Plane, ScanPlaneOptions } from '../pullback/plane.js';
import { planStability, stabilityOutputs } from '../stability/stability.js';
import type { RelativeStabilityOptions } from '../stability/stability.js';
import { decode, encode, Outbox, tensorsIn } from './protocol.js';
import type { PoolFunction, PoolRequest, PoolResponse, PoolWorkerData } from './protocol.js';

/** The functions a pool calls, each with the model first. */
const FUNCTIONS: Record<PoolFunction, (model: LayersModel, ...args: never[]) => Promise<unknown>> = {
  inputJacobian,
  weightJacobian,
  localFisher,
  datasetFisher,
  localDataMatrix,
  distributionProjector,
  pullbackMetric,
  volumeElement,
  horizontalPath,
  orthogonalPath,
  kernelPath,
  tangentPath,
  scalarCurvature,
  // A share of the grid, points first … end − 1: the value arrays of a PlaneScan.
  async scanPlane(model: LayersModel, plane: Plane, options: ScanPlaneOptions, first: number, end: number) {
    const scan = await scanPoints(await planScan(model, plane, options, 'scanPlane'), plane, options, first, end);
    const { predicted, probability, entropy, logVolume, rank, curvature } = scan;
    return { predicted, probability, entropy, logVolume, rank, ...(curvature ? { curvature } : {}) };
  },
  // A share of the probing images, from image `offset` on: f of the images, then of the deformed and
  // the noisy images for each (temperature, draw). The calling thread aggregates.
  async relativeStability(model: LayersModel, images: tf.Tensor, options: RelativeStabilityOptions, offset: number) {
    const plan = await planStability(model, images, options, 'relativeStability', 1);
    const out: { f0?: Float32Array; ft: Float32Array[]; fNoise: Float32Array[] } = { ft: [], fNoise: [] };
    await stabilityOutputs(plan, images, offset, undefined, {
      reference: (f0) => (out.f0 = f0),
      draw: (_, ft, fNoise) => (out.ft.push(ft), out.fNoise.push(fNoise)),
    });
    return out;
  },
};

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

/** Shared buffers for large results, reused from call to call (see Outbox). */
const outbox = new Outbox();

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
  const args = msg.args.map(decode);
  let result: unknown;
  try {
    result = await (FUNCTIONS[msg.fn] as (model: LayersModel, ...a: unknown[]) => Promise<unknown>)(model, ...args);
    const transfer: ArrayBuffer[] = [];
    const value = encode(result, transfer, outbox);
    reply({ type: 'result', id: msg.id, value }, transfer);
  } finally {
    tf.dispose([...tensorsIn(args), ...tensorsIn(result)]);
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
