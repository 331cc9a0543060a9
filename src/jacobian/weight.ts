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
import { checkOptions, describe } from '../checks.js';
import { budgetBytes, runChunks, tidySteps } from './chunks.js';
import type { Progress, RunOptions } from './chunks.js';
import { logitDifferenceRows, referenceClasses, referenceDifferenceRows, softmaxChain } from './rows.js';

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
export interface WeightJacobianOptions extends ClassifierOptions, Omit<RunOptions, 'memoryBudgetMB' | 'onProgress'> {
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
  /** Called after each sample. */
  onProgress?: (progress: Progress) => void;
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
  if (layers !== undefined && !(Array.isArray(layers) && layers.every((n) => typeof n === 'string'))) {
    throw new ValueError(`${fn}: layers must be an array of layer names, got ${describe(layers)}.`);
  }
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

/** Which rows a weight Jacobian holds: plain rows, the softmax chain, or unchained logit differences. */
type RowsMode = 'logProbs' | 'logits' | 'chain' | 'differences';

/**
 * Rows of one chunk, [b, R, d], yielding to the event loop between samples; in 'differences' mode
 * also the chunk's logits, whose arg-max per sample is the reference class of its rows.
 */
async function weightRowsOfChunk(clf: Classifier, x: tf.Tensor, mode: RowsMode, vars: tf.Variable[], signal: AbortSignal | undefined, sampleDone: (i: number) => void): Promise<tf.Tensor[]> {
  const C = clf.numClasses;
  const logits = mode === 'differences' ? tf.tidy(() => clf.logits(x)) : undefined;
  const reference = logits ? referenceClasses(logits.dataSync(), x.shape[0] as number, C) : undefined;
  let per: tf.Tensor[] = [];
  try {
    per = await tidySteps(x.shape[0] as number, signal, (i) => {
      if (i > 0) sampleDone(i - 1);
      const xi = tf.slice(x, i, 1);
      if (reference) return weightRows(clf.logits, xi, tf.reshape(referenceDifferenceRows(reference.subarray(i, i + 1), C), [C - 1, C]) as tf.Tensor2D, vars);
      if (mode === 'chain') return weightRows(clf.logits, xi, logitDifferenceRows(C), vars); // softmaxChain's layout
      return weightRows(mode === 'logProbs' ? clf.logProbs : clf.logits, xi, tf.eye(C) as tf.Tensor2D, vars);
    });
    sampleDone((x.shape[0] as number) - 1);
    const D = tf.tidy(() => {
      const stacked = tf.stack(per) as tf.Tensor3D;
      return (mode === 'chain' ? softmaxChain(stacked, clf.probs(x)) : stacked) as tf.Tensor3D;
    });
    return logits ? [D, logits] : [D];
  } catch (e) {
    logits?.dispose();
    throw e;
  } finally {
    tf.dispose(per);
  }
}

/** Validation and set-up shared by the weight-space functions. */
function prepare(model: LayersModel, x: tf.Tensor, options: WeightJacobianOptions, rowsPerSample: (C: number) => number, fn: string) {
  const clf = wrapClassifier(model, options, fn);
  checkBatch(clf, x, fn);
  const { slices, vars, numWeights } = selectWeights(model, options.layers, fn);
  const chunk = Math.max(1, Math.floor(budgetBytes(options, fn) / (rowsPerSample(clf.numClasses) * numWeights * 4)));
  assertDifferentiable(model, 'weights', fn);
  return { clf, slices, vars, numWeights, chunk };
}

async function run(model: LayersModel, x: tf.Tensor, options: WeightJacobianOptions, mode: RowsMode, fn: string): Promise<WeightJacobianResult & { logits?: tf.Tensor2D }> {
  const rows = (C: number) => (mode === 'differences' ? C - 1 : C);
  const { clf, slices, vars, numWeights, chunk } = prepare(model, x, options, rows, fn);
  try {
    // Progress after each sample (a weight Jacobian takes about C backward passes per sample).
    const B = x.shape[0] as number;
    const { onProgress, ...rest } = options;
    const [J, logits] = await runChunks(x, chunk, rest, (xc, start) =>
      weightRowsOfChunk(clf, xc, mode, vars, options.signal, (i) => onProgress?.({ done: start + i + 1, total: B })),
    );
    return { jacobian: J as tf.Tensor3D, slices, numWeights, ...(logits ? { logits: logits as tf.Tensor2D } : {}) };
  } catch (e) {
    return rethrowKernelError(e, fn);
  }
}

/**
 * The logit-difference rows ∂(s_c − s_k)/∂w per sample, against its arg-max class k, for the
 * C − 1 classes c ≠ k in increasing order: `[B, C−1, d]`, and the logits `[B, C]` (the caller owns
 * both). The local Fisher is built on them. @internal
 */
export async function logitDifferenceWeightJacobian(model: LayersModel, x: tf.Tensor, options: WeightJacobianOptions, fn: string): Promise<WeightJacobianResult & { logits: tf.Tensor2D }> {
  return (await run(model, x, options, 'differences', fn)) as WeightJacobianResult & { logits: tf.Tensor2D };
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
  checkOptions(options, fn);
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
  return run(model, x, options, target === 'logProbs' && strategy !== 'loop' ? 'chain' : target, fn);
}
