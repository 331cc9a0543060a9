/**
 * The core's computations that tests/browser/run.ts repeats inside headless Chromium on `webgl` and
 * `webgpu` and compares with Node on `cpu`: the same seeded models and inputs (tfjs draws seeded
 * tensors in JavaScript, so they are the same on every backend), then input Jacobians, JVPs, tr G,
 * the projector's identity, the first steps of a horizontal path, second derivatives, the refusal
 * of a NaN input, and the tensors left behind. Plain numbers out, so that the page can hand them to the runner as JSON.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { distributionProjector, horizontalPath, inputJacobian, jvp, localDataMatrix, secondDerivative, ValueError, weightJacobian } from '../../src/index.js';
import { mnistCnn } from '../../examples/models.js';
import { activationNet, twoBranchCnn } from '../zoo/models.js';

/** Named arrays of numbers, and what went wrong where a computation threw (a missing kernel). */
export interface SuiteResult {
  backend: string;
  values: Record<string, number[]>;
  errors: Record<string, string>;
  /** Tensors alive after the suite minus before it (0: nothing leaked). */
  leaked: number;
}

const take = async (t: tf.Tensor) => {
  const v = Array.from(await t.data());
  t.dispose();
  return v;
};

/** The models of the suite: a small MNIST-shaped CNN (convs, max pool, ReLU), the zoo's two-branch CNN (BatchNorm, pools, Concatenate, Add, Softmax layer), a tanh MLP. */
function models(): { name: string; model: tfl.LayersModel; shape: number[] }[] {
  return [
    { name: 'cnn', model: mnistCnn(5, { filters: [3, 4], hidden: 12 }), shape: [28, 28, 1] },
    { name: 'branches', model: twoBranchCnn(), shape: [9, 9, 2] },
    { name: 'tanh', model: activationNet('tanh', 850), shape: [4] },
  ];
}

export async function runSuite(): Promise<SuiteResult> {
  const before = tf.memory().numTensors;
  const values: Record<string, number[]> = {};
  const errors: Record<string, string> = {};
  const record = async (key: string, f: () => Promise<number[]>) => {
    try {
      values[key] = await f();
    } catch (e) {
      errors[key] = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    }
  };
  const built = models();
  for (const { name, model, shape } of built) {
    const B = 2;
    const x = tf.randomNormal([B, ...shape], 0, 1, 'float32', 11);
    const v = tf.randomNormal([B, 2, ...shape], 0, 1, 'float32', 12);
    const w = tf.randomNormal([B, ...shape], 0, 1, 'float32', 13);
    await record(`${name}/inputJacobian`, async () => take(await inputJacobian(model, x)));
    await record(`${name}/jvp`, async () => take(await jvp(model, x, v)));
    // Weight space: on the GPU backends the weights' blocks are joined by tf.concat (cpu and wasm
    // write them in place), so this compares the two ways of assembling the rows.
    await record(`${name}/weightJacobian`, async () => take((await weightJacobian(model, x)).jacobian));
    await record(`${name}/trG`, async () => {
      const { G, probs } = await localDataMatrix(model, x);
      const tr = Array.from(await G.trace());
      G.dispose();
      probs.dispose();
      return tr;
    });
    await record(`${name}/projector`, async () => {
      // P w, and ‖P(P w) − P w‖ per sample (0 for a projector).
      const P = await distributionProjector(model, x);
      try {
        const pw = P.project(w);
        const ppw = P.project(pw);
        const gap = tf.tidy(() => tf.norm(tf.reshape(tf.sub(ppw, pw), [B, -1]), 'euclidean', 1));
        const out = [...(await take(gap)), ...(await take(pw))];
        ppw.dispose();
        return out;
      } finally {
        P.dispose();
      }
    });
    await record(`${name}/path`, async () => {
      const [source, target] = [tf.slice(x, 0, 1), tf.slice(w, 0, 1)];
      try {
        const [p] = await horizontalPath(model, source, target, { maxSteps: 3, threshold: 0, stallTolerance: 0 });
        const d = Array.from((p as { distances: Float64Array }).distances);
        (p as { frames: tf.Tensor }).frames.dispose();
        return d;
      } finally {
        tf.dispose([source, target]);
      }
    });
    // An input with a NaN is refused (1), as on cpu: the finiteness check must work on the backend.
    await record(`${name}/rejectsNaN`, async () => {
      const bad = tf.tidy(() => tf.concat([tf.slice(x, 0, 1), tf.fill([1, ...shape], NaN)]));
      try {
        (await inputJacobian(model, bad)).dispose();
        return [0];
      } catch (e) {
        return [e instanceof ValueError ? 1 : 0];
      } finally {
        bad.dispose();
      }
    });
    if (name === 'tanh') {
      await record(`${name}/secondDerivative`, async () => take(await secondDerivative(model, x, v, v, { target: { layer: 'act' } })));
    }
    tf.dispose([x, v, w]);
  }
  built.forEach((b) => b.model.dispose());
  return { backend: tf.getBackend(), values, errors, leaked: tf.memory().numTensors - before };
}
