/**
 * Per-sample Jacobians with respect to the trainable weights.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { LayerNotFoundError, ValueError } from '../errors.js';
import { checkBatch, wrapClassifier } from '../model/classifier.js';
import type { Classifier, ClassifierOptions } from '../model/classifier.js';
import { assertDifferentiable, rethrowKernelError } from '../model/support.js';
import { runChunks } from './chunks.js';
import type { RunOptions } from './chunks.js';
import { logitDifferenceRows, softmaxChain } from './rows.js';

/** Where one weight tensor sits in a row of the weight Jacobian. */
export interface WeightSlice {
  /** The weight's unique name, as in `model.trainableWeights[i].name`. */
  name: string;
  /** The layer that owns it. */
  layer: string;
  /** Its shape. */
  shape: number[];
  /** First column of the weight in a row. */
  offset: number;
  /** Number of columns (the product of `shape`). */
  size: number;
}

/** Options of {@link weightJacobian}. */
export interface WeightJacobianOptions extends ClassifierOptions, Omit<RunOptions, 'memoryBudgetMB'> {
  /** Rows of log-probabilities (default) or of logits. @defaultValue `'logProbs'` */
  target?: 'logProbs' | 'logits';
  /** Only the trainable weights of these layers (in model order). @defaultValue all layers */
  layers?: string[];
  /**
   * `'loop'`: one backward pass per (sample, row). `'softmax-chain'` (log-probabilities only): C−1
   * backward passes on the logits and the exact softmax chain rule. `'auto'` picks
   * `'softmax-chain'` for log-probabilities.
   * @defaultValue `'auto'`
   */
  strategy?: 'auto' | 'loop' | 'softmax-chain';
  /**
   * Upper bound, in MiB, on the rows held at once before they are concatenated; the result itself
   * is `B·R·d·4` bytes. @defaultValue 256
   */
  memoryBudgetMB?: number;
}

/** Result of {@link weightJacobian}. */
export interface WeightJacobianResult {
  /** `[B, R, d]`: row `[b, c]` is ∂f_c(x_b)/∂w, flattened weight by weight. Owned by the caller. */
  jacobian: tf.Tensor3D;
  /** Where each weight tensor sits in a row, in column order. */
  slices: WeightSlice[];
  /** The total number of weights d. */
  numWeights: number;
}

function selectWeights(model: LayersModel, layers: string[] | undefined, fn: string) {
  const names = model.layers.map((l) => l.name);
  const chosen = layers === undefined ? model.layers : layers.map((n) => {
    if (!names.includes(n)) throw new LayerNotFoundError(fn, n, names);
    return model.getLayer(n);
  });
  const slices: WeightSlice[] = [];
  const vars: tf.Variable[] = [];
  let offset = 0;
  for (const layer of chosen) {
    for (const w of layer.trainableWeights) {
      const shape = w.shape.map((d) => d as number);
      const size = shape.reduce((a, d) => a * d, 1);
      slices.push({ name: w.name, layer: layer.name, shape, offset, size });
      vars.push(w.read() as tf.Variable);
      offset += size;
    }
  }
  if (vars.length === 0) throw new ValueError(`${fn}: the selected layers have no trainable weights.`);
  return { slices, vars, numWeights: offset };
}

/** Rows of one sample: [R, d] for cotangents U [R, m] of f. */
function weightRows(f: (x: tf.Tensor) => tf.Tensor2D, xi: tf.Tensor, U: tf.Tensor2D, vars: tf.Variable[]): tf.Tensor2D {
  return tf.tidy(() => {
    const R = U.shape[0];
    const rows: tf.Tensor[] = [];
    for (let r = 0; r < R; r++) {
      rows.push(
        tf.tidy(() => {
          const u = tf.slice(U, [r, 0], [1, -1]);
          const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(f(xi), u)), vars);
          value.dispose();
          return tf.concat(vars.map((v) => tf.reshape(grads[v.name] as tf.Tensor, [-1])));
        }),
      );
    }
    return tf.stack(rows) as tf.Tensor2D;
  });
}

/** @internal Weight Jacobian of one chunk, synchronously: [b, R, d]. */
export function weightJacobianChunk(
  clf: Classifier,
  x: tf.Tensor,
  target: 'logProbs' | 'logits',
  chain: boolean,
  vars: tf.Variable[],
): tf.Tensor3D {
  return tf.tidy(() => {
    const b = x.shape[0] as number;
    const C = clf.numClasses;
    const per: tf.Tensor[] = [];
    for (let i = 0; i < b; i++) {
      const xi = tf.slice(x, i, 1);
      per.push(
        chain
          ? weightRows(clf.logits, xi, logitDifferenceRows(C), vars)
          : weightRows(target === 'logProbs' ? clf.logProbs : clf.logits, xi, tf.eye(C) as tf.Tensor2D, vars),
      );
    }
    const D = tf.stack(per) as tf.Tensor3D;
    return (chain ? softmaxChain(D, clf.probs(x)) : D) as tf.Tensor3D;
  });
}

/**
 * Per-sample Jacobians of the log-probabilities (default) or logits with respect to the trainable
 * weights w of the model (all of them, or those of the chosen layers):
 *
 *   J[b, c] = ∂ log p_c(x_b) / ∂w  ∈ R^d.
 *
 * tfjs has no vmap and the weights are shared across a batch, so this costs one backward pass per
 * (sample, row): about B·C passes. The local Fisher F(x_b) = Σ_c p_c J[b,c] J[b,c]ᵀ is built on it.
 *
 * @param model - a classifier `LayersModel` (see {@link inputJacobian}).
 * @param x - input batch, float32, `[B, ...inputShape]`.
 * @param options - see {@link WeightJacobianOptions}.
 * @returns the Jacobian `[B, C, d]` (owned by the caller: dispose `result.jacobian`) and the map from
 *   weight names to column slices.
 * @throws {@link ShapeError}, {@link ValueError}, {@link LayerNotFoundError},
 *   {@link UnsupportedModelError} as {@link inputJacobian}; on `wasm`, conv layers need
 *   `registerGradientKernels()`.
 *
 * @example
 * ```ts
 * const { jacobian, slices } = await weightJacobian(model, x.slice(0, 4));
 * console.log(jacobian.shape, slices.map((s) => s.name)); // [4, 10, d]
 * jacobian.dispose();
 * ```
 */
export async function weightJacobian(
  model: LayersModel,
  x: tf.Tensor,
  options: WeightJacobianOptions = {},
): Promise<WeightJacobianResult> {
  const fn = 'weightJacobian';
  const clf = wrapClassifier(model, options, fn);
  checkBatch(clf, x, fn);
  const target = options.target ?? 'logProbs';
  if (target !== 'logProbs' && target !== 'logits') {
    throw new ValueError(`${fn}: target must be 'logProbs' or 'logits', got ${JSON.stringify(target)}.`);
  }
  const strategy = options.strategy ?? 'auto';
  if (!['auto', 'loop', 'softmax-chain'].includes(strategy)) {
    throw new ValueError(`${fn}: strategy must be 'auto', 'loop' or 'softmax-chain'; got '${String(strategy)}'.`);
  }
  if (strategy === 'softmax-chain' && target !== 'logProbs') {
    throw new ValueError(`${fn}: strategy 'softmax-chain' only applies to target 'logProbs'.`);
  }
  const chain = target === 'logProbs' && strategy !== 'loop';
  const { slices, vars, numWeights } = selectWeights(model, options.layers, fn);
  const mb = options.memoryBudgetMB ?? 256;
  if (!(Number.isFinite(mb) && mb > 0)) throw new ValueError(`${fn}: memoryBudgetMB must be a positive number, got ${String(mb)}.`);
  const chunk = Math.max(1, Math.floor((mb * 1024 * 1024) / (clf.numClasses * numWeights * 4)));
  assertDifferentiable(model, 'weights', fn);
  try {
    const [J] = await runChunks(x, chunk, options, (xc) => [weightJacobianChunk(clf, xc, target, chain, vars)]);
    return { jacobian: J as tf.Tensor3D, slices, numWeights };
  } catch (e) {
    return rethrowKernelError(e, fn);
  }
}
