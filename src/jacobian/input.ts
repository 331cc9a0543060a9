/**
 * The batched input Jacobian.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { ValueError } from '../errors.js';
import { checkBatch, wrapClassifier } from '../model/classifier.js';
import type { Classifier, ClassifierOptions, Target } from '../model/classifier.js';
import { assertDifferentiable, rethrowKernelError } from '../model/support.js';
import { budgetBytes, bytesPerSamplePass, runChunks, tidySteps } from './chunks.js';
import type { RunOptions } from './chunks.js';
import { logitDifferenceRows, softmaxChain, vjpRows } from './rows.js';

/**
 * How the Jacobian rows are computed. All give the same numbers (up to float32 rounding); they
 * differ in speed and memory.
 * - `'loop'`: one backward pass per output row over the whole chunk (least memory).
 * - `'tiled'`: all rows in one backward pass over the chunk tiled R times (R× the memory of a pass).
 * - `'softmax-chain'` (log-probabilities only): C−1 backward passes on the logits, with cotangents
 *   e_c − e_{C−1}, then the exact softmax chain rule ∇log p_i = ∇s_i − Σ_k p_k ∇s_k. One backward
 *   pass fewer than `'loop'`, for the price of one forward pass.
 * - `'auto'` (default): the rows of `'softmax-chain'` for log-probabilities (plain rows
 *   otherwise), tiled into each backward pass until it holds about 8 samples: small batches leave
 *   the kernels idle (measured on wasm, MNIST CNN: B = 1, 129 rows/s tiled vs 74 one row per
 *   pass; B ≥ 8, one row per pass is fastest and lightest).
 */
export type JacobianStrategy = 'auto' | 'loop' | 'tiled' | 'softmax-chain';

/** Options of {@link inputJacobian}. */
export interface InputJacobianOptions extends ClassifierOptions, RunOptions {
  /**
   * What to differentiate: `'logProbs'` (log softmax, C rows), `'logits'` (C rows) or
   * `{ layer: name }` (the flattened output of that layer, m rows).
   * @defaultValue `'logProbs'`
   */
  target?: Target;
  /** @defaultValue `'auto'` */
  strategy?: JacobianStrategy;
  /**
   * Return `[B, R, n]` (n = the product of the input shape) instead of `[B, R, ...inputShape]`.
   * @defaultValue false
   */
  flatten?: boolean;
}

/** A resolved plan: what one chunk does (the benchmark records it). */
export interface JacobianPlan {
  strategy: Exclude<JacobianStrategy, 'auto'>;
  /** Output rows R. */
  rows: number;
  /** Rows per backward pass (tiled into the batch). */
  rowsPerPass: number;
  /** Samples per chunk. */
  samplesPerChunk: number;
}

const STRATEGIES = ['auto', 'loop', 'tiled', 'softmax-chain'] as const;
/** Samples per backward pass that `'auto'` tiles rows up to. */
const AUTO_PASS_SAMPLES = 8;

/** Resolves the strategy and the chunk sizes for a batch of `B` samples. */
export function planInputJacobian(clf: Classifier, B: number, options: InputJacobianOptions, fn = 'inputJacobian'): JacobianPlan {
  const target = options.target ?? 'logProbs';
  const { width } = clf.target(target);
  const requested = options.strategy ?? 'auto';
  if (!(STRATEGIES as readonly string[]).includes(requested)) {
    throw new ValueError(`${fn}: strategy must be one of ${STRATEGIES.join(', ')}; got '${String(requested)}'.`);
  }
  if (requested === 'softmax-chain' && target !== 'logProbs') {
    throw new ValueError(`${fn}: strategy 'softmax-chain' only applies to target 'logProbs'.`);
  }
  const strategy: JacobianPlan['strategy'] = requested === 'auto' ? (target === 'logProbs' ? 'softmax-chain' : 'loop') : requested;
  const passRows = strategy === 'softmax-chain' ? width - 1 : width;
  const perSample = bytesPerSamplePass(clf.model);
  const budget = budgetBytes(options, fn);
  const maxSampleRows = Math.max(1, Math.floor(budget / perSample));
  let rowsPerPass = strategy === 'tiled' ? passRows : 1;
  if (requested === 'auto') {
    const wanted = Math.min(passRows, Math.ceil(AUTO_PASS_SAMPLES / Math.min(B, maxSampleRows)));
    rowsPerPass = Math.ceil(passRows / Math.ceil(passRows / wanted)); // balanced passes
  }
  rowsPerPass = Math.min(rowsPerPass, maxSampleRows);
  const samplesPerChunk = Math.max(1, Math.min(B, Math.floor(maxSampleRows / rowsPerPass)));
  return { strategy, rows: width, rowsPerPass, samplesPerChunk };
}

/** The function differentiated and its cotangent rows for a plan. */
function rowsOf(clf: Classifier, target: Target, plan: JacobianPlan) {
  if (plan.strategy === 'softmax-chain') return { f: clf.logits, U: logitDifferenceRows(clf.numClasses), chain: true };
  const { fn, width } = clf.target(target);
  return { f: fn, U: tf.eye(width) as tf.Tensor2D, chain: false };
}

/** The Jacobian of one chunk, yielding to the event loop between backward passes. */
async function jacobianOfChunk(clf: Classifier, x: tf.Tensor, target: Target, plan: JacobianPlan, signal?: AbortSignal, applyChain = true): Promise<tf.Tensor> {
  const rows = rowsOf(clf, target, plan); // rows.U is one new tensor, disposed below
  const { f, U } = rows;
  const chain = rows.chain && applyChain;
  const R = U.shape[0];
  const blocks = await tidySteps(Math.ceil(R / plan.rowsPerPass), signal, (i) => {
    const r0 = i * plan.rowsPerPass;
    const k = Math.min(plan.rowsPerPass, R - r0);
    return vjpRows(f, x, tf.slice(U, [r0, 0], [k, -1]), k);
  }).finally(() => U.dispose());
  return tf.tidy(() => {
    const D = blocks.length === 1 ? (blocks[0] as tf.Tensor) : tf.concat(blocks, 1);
    const J = chain ? softmaxChain(D, clf.probs(x)) : D;
    tf.dispose(blocks.filter((b) => b !== J));
    return J;
  });
}

/**
 * The Jacobian of the log-probabilities (default), the logits or a layer's features with respect to
 * the input, for every sample of a batch:
 *
 *   J[b, i] = ∂ f_i(x_b) / ∂x_b,   e.g. ∇ₓ log p_i(x_b) for the default target.
 *
 * For log-probabilities, Σᵢ p_i J[b, i] = 0, so each J[b] has rank ≤ C − 1.
 *
 * Cost: about R backward passes of the model per sample (R = C rows, or the layer's width), chunked
 * so that one pass stays under `memoryBudgetMB`.
 *
 * @param model - a classifier `LayersModel` with one input and one `[B, C]` output. A trailing
 *   softmax is detected and skipped (see {@link ClassifierOptions.modelOutput}).
 * @param x - input batch, float32, shape `[B, ...inputShape]`, finite.
 * @param options - see {@link InputJacobianOptions}.
 * @returns a new tensor of shape `[B, R, ...inputShape]` (or `[B, R, n]` with `flatten`); the
 *   caller owns it and must dispose it.
 * @throws {@link ShapeError} if `x` has the wrong rank, shape or dtype.
 * @throws {@link ValueError} for non-finite inputs or bad options.
 * @throws {@link LayerNotFoundError} for an unknown layer name (it lists the valid ones).
 * @throws {@link UnsupportedModelError} for multi-input/-output models, outputs that are not
 *   `[B, C]`, or a layer the active backend cannot differentiate.
 *
 * @example
 * ```ts
 * import { inputJacobian } from 'infogeo';
 * const J = await inputJacobian(model, x);          // [B, 10, 28, 28, 1] for an MNIST CNN
 * const Jf = await inputJacobian(model, x, { target: { layer: 'dense_1' }, flatten: true });
 * J.dispose(); Jf.dispose();
 * ```
 */
export async function inputJacobian(model: LayersModel, x: tf.Tensor, options: InputJacobianOptions = {}): Promise<tf.Tensor> {
  const fn = 'inputJacobian';
  const clf = wrapClassifier(model, options, fn);
  checkBatch(clf, x, fn);
  const target = options.target ?? 'logProbs';
  const plan = planInputJacobian(clf, x.shape[0] as number, options, fn);
  assertDifferentiable(model, 'input', fn);
  try {
    const [J] = await runChunks(x, plan.samplesPerChunk, options, async (xc) => {
      const Jc = await jacobianOfChunk(clf, xc, target, plan, options.signal);
      if (!options.flatten) return [Jc];
      const flat = tf.reshape(Jc, [xc.shape[0] as number, plan.rows, clf.inputSize]);
      Jc.dispose();
      return [flat];
    });
    return J as tf.Tensor;
  } catch (e) {
    return rethrowKernelError(e, fn);
  }
}

/**
 * The logit-difference rows D[b, c] = ∇ₓ s_c(x_b) − ∇ₓ s_{C−1}(x_b), c < C − 1: `[B, C−1, n]`
 * (caller owns). Their span is exactly D_x = span{∇ₓ log p_c}, since ∇log p_c − ∇log p_{C−1} = D_c,
 * and, unlike the C rows ∇log p_c, they carry no dependent row whose float32 residue could pass
 * for a direction. @internal
 */
export async function logitDifferenceJacobian(model: LayersModel, x: tf.Tensor, options: ClassifierOptions & RunOptions, fn: string): Promise<tf.Tensor3D> {
  const clf = wrapClassifier(model, options, fn);
  checkBatch(clf, x, fn);
  const plan = planInputJacobian(clf, x.shape[0] as number, { ...options, target: 'logProbs', strategy: 'auto' }, fn);
  assertDifferentiable(model, 'input', fn);
  try {
    const [D] = await runChunks(x, plan.samplesPerChunk, options, async (xc) => {
      const Dc = await jacobianOfChunk(clf, xc, 'logProbs', plan, options.signal, false);
      const flat = tf.reshape(Dc, [xc.shape[0] as number, clf.numClasses - 1, clf.inputSize]);
      Dc.dispose();
      return [flat];
    });
    return D as tf.Tensor3D;
  } catch (e) {
    return rethrowKernelError(e, fn);
  }
}
