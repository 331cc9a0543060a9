/**
 * The asynchronous functions read tensors asynchronously only. On a GPU backend a synchronous read
 * (`dataSync`) blocks the page until the GPU is done, and tfjs's `webgpu` backend does it through a
 * canvas, slowly (headless Chromium without Vulkan cannot do it at all). Here `dataSync`,
 * `arraySync` and `bufferSync` throw while each asynchronous public function runs, on models with
 * convolutions, BatchNorm, branches and a smooth activation; every call must still succeed, with
 * the numbers of an unrestricted run, and a NaN input must still be refused with a ValueError.
 *
 * One synchronous read remains by design: building a conv's transposed (phase) filters reads its
 * kernel once per version of the weights, when the graph is first used after the weights change.
 * Each call therefore runs once unrestricted first (which also gives the reference numbers).
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';
import {
  datasetFisher,
  distributionProjector,
  horizontalPath,
  inputJacobian,
  jvp,
  kernelPath,
  localDataMatrix,
  localFisher,
  orthogonalPath,
  planeThroughPoints,
  pullbackMetric,
  relativeStability,
  scalarCurvature,
  scanPlane,
  secondDerivative,
  tangentPath,
  ValueError,
  vjp,
  volumeElement,
  weightJacobian,
} from '../src/index.js';
import { mnistCnn } from '../examples/models.js';
import { activationNet, twoBranchCnn } from './zoo/models.js';
import { randn } from './helpers.js';

const SYNC = ['dataSync', 'arraySync', 'bufferSync'] as const;

/** Runs `f` with the synchronous reads of every tensor throwing. */
async function withoutSyncReads<T>(f: () => Promise<T>): Promise<T> {
  const proto = tf.Tensor.prototype as unknown as Record<string, unknown>;
  const saved = SYNC.map((k) => proto[k]);
  for (const k of SYNC) {
    proto[k] = () => {
      throw new Error(`a synchronous read (${k})`);
    };
  }
  try {
    return await f();
  } finally {
    SYNC.forEach((k, i) => (proto[k] = saved[i]));
  }
}

/** Every number a call gave, read asynchronously, its tensors disposed. */
async function numbers(result: unknown): Promise<number[]> {
  let out: number[] = [];
  const add = (values: ArrayLike<number>) => (out = out.concat(Array.from(values)));
  const visit = async (v: unknown): Promise<void> => {
    if (v instanceof tf.Tensor) {
      add(await v.data());
      v.dispose();
    } else if (typeof v === 'number') out.push(v);
    else if (ArrayBuffer.isView(v)) add(v as unknown as ArrayLike<number>);
    else if (Array.isArray(v)) for (const e of v) await visit(e);
    else if (v !== null && typeof v === 'object') {
      const o = v as { dispose?: () => void; trace?: () => Promise<Float64Array> };
      if (typeof o.trace === 'function') add(await o.trace()); // a LowRankPSD
      for (const e of Object.values(v)) await visit(e);
      o.dispose?.();
    }
  };
  await visit(result);
  return out;
}

type Call = [string, () => Promise<unknown>];

function calls(model: tfl.LayersModel, shape: number[], smooth: boolean): { list: Call[]; dispose: () => void } {
  const B = 2;
  const x = randn([B, ...shape], 1);
  const v = randn([B, ...shape], 2);
  const cot = randn([B, model.outputs[0]!.shape[1] as number], 3);
  const [s, t] = [tf.slice(x, 0, 1), tf.slice(v, 0, 1)];
  const plane = planeThroughPoints(randn([3, ...shape], 4));
  const path = { maxSteps: 2, threshold: 0, stallTolerance: 0 };
  const list: Call[] = [
    ['inputJacobian', () => inputJacobian(model, x)],
    ['jvp', () => jvp(model, x, v)],
    ['vjp', () => vjp(model, x, cot)],
    ['localDataMatrix', async () => {
      const { G, probs } = await localDataMatrix(model, x);
      const { values, vectors } = await G.eig();
      return [G, probs, values, vectors];
    }],
    ['distributionProjector', async () => {
      const P = await distributionProjector(model, x);
      const basis = P.basis.clone();
      P.dispose();
      return basis;
    }],
    ['horizontalPath', () => horizontalPath(model, s, t, path)],
    ['kernelPath', () => kernelPath(model, s, t, path)],
    ['orthogonalPath', () => orthogonalPath(model, s, { maxSteps: 2 })],
    ['tangentPath', () => tangentPath(model, s, { maxSteps: 2 })],
    ['pullbackMetric', () => pullbackMetric(model, x)],
    ['volumeElement', () => volumeElement(model, x, { mode: 'effective', k: 2 })],
    ['scanPlane', () => scanPlane(model, plane, { steps: 3, volume: 'plane' })],
    ['localFisher', () => localFisher(model, x)],
    ['weightJacobian', () => weightJacobian(model, x)],
    ['datasetFisher', () => datasetFisher(model, x)],
  ];
  if (shape.length === 3 && shape[0] === shape[1]) list.push(['relativeStability', () => relativeStability(model, x, { delta: 1, draws: 2 })]);
  if (smooth) {
    list.push(['secondDerivative', () => secondDerivative(model, x, v, v)]);
    list.push(['scalarCurvature', () => scalarCurvature(model, x, { target: { layer: 'act' } })]);
  }
  return { list, dispose: () => tf.dispose([x, v, cot, s, t, plane.origin, plane.axes]) };
}

describe('the asynchronous functions read no tensor synchronously', () => {
  const cases: [string, () => tfl.LayersModel, number[], boolean][] = [
    ['a CNN (convs, max pool, ReLU)', () => mnistCnn(5, { filters: [3, 4], hidden: 12 }), [28, 28, 1], false],
    ['a two-branch CNN (BatchNorm, pools, Concatenate, Add, Softmax layer)', twoBranchCnn, [9, 9, 2], false],
    ['a tanh MLP', () => activationNet('tanh', 850), [4], true],
  ];
  for (const [name, build, shape, smooth] of cases) {
    it(`on ${name}, with the numbers of an unrestricted run`, async () => {
      const model = build();
      const { list, dispose } = calls(model, shape, smooth);
      const before = tf.memory().numTensors;
      for (const [fn, call] of list) {
        const want = await numbers(await call());
        const got = await numbers(await withoutSyncReads(call).catch((e: Error) => Promise.reject(new Error(`${fn}: ${e.message}`))));
        expect(got, fn).toEqual(want);
      }
      // A NaN input is still refused, by the asynchronous finiteness check.
      const bad = tf.fill([1, ...shape], NaN);
      await expect(withoutSyncReads(() => inputJacobian(model, bad))).rejects.toThrow(ValueError);
      bad.dispose();
      expect(tf.memory().numTensors, 'tensors left behind').toBe(before);
      dispose();
      model.dispose();
    });
  }
});
