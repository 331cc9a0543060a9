/**
 * The batched input Jacobian.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { checkOptions, describe } from '../checks.js';
import { UnsupportedModelError, ValueError } from '../errors.js';
import { checkBatch, CLASSIFIER_OPTIONS, classifierOf } from '../model/classifier.js';
import type { Classifier, ClassifierOptions, Target } from '../model/classifier.js';
import { assertDifferentiable, rethrowKernelError } from '../model/support.js';
import { rowsAssembler } from './assemble.js';
import { budgetFor, bytesPerSamplePass, pause, RUN_OPTIONS, runChunks, tidySteps } from './chunks.js';
import type { RunOptions } from './chunks.js';
import type { CompiledGraph } from './graph/compile.js';
import { graphFor, linearChunk, linearize } from './linearize.js';
import type { Linearization } from './linearize.js';
import { logitDifferenceRows, referenceClasses, referenceDifferenceRows, softmaxChain, vjpRows } from './rows.js';
import type { OptionNames } from '../checks.js';

/**
 * How the Jacobian rows are computed. All give the same numbers (up to float32 rounding); they
 * differ in speed and memory.
 * - `'graph'`: infogeo's own reverse mode (see the backends guide): one forward pass, then all rows
 *   of all samples in one backward pass made of forward kernels (a conv's backward pass is a conv).
 *   For log-probabilities it goes backward from the C−1 logit differences and applies the softmax
 *   chain rule (as `'softmax-chain'`). Covers the layers classifiers are made of (the Jacobians
 *   guide lists them): dense and convolutional layers of every kind, pooling, normalisation,
 *   merges, reshapes, every built-in activation and nested models; recurrent and custom layers
 *   fall back.
 *   Measured on wasm: 3.7–9.5× faster than `tf.grad` (the numbers are in the README).
 * - `'loop'`: `tf.grad`, one backward pass per output row over the whole chunk (least memory).
 * - `'tiled'`: `tf.grad`, all rows in one backward pass over the chunk tiled R times.
 * - `'softmax-chain'` (log-probabilities only): `tf.grad`, C−1 backward passes on the logits, with
 *   cotangents e_c − e_{C−1}, then the exact softmax chain rule ∇log p_i = ∇s_i − Σ_k p_k ∇s_k.
 * - `'auto'` (default): `'graph'` when it covers every layer between the input and the target;
 *   otherwise `tf.grad` with the rows of `'softmax-chain'` for log-probabilities (plain rows
 *   otherwise), tiled into each backward pass until it holds about 8 samples.
 */
export type JacobianStrategy = 'auto' | 'graph' | 'loop' | 'tiled' | 'softmax-chain';

/** Options of {@link inputJacobian}. */
export interface InputJacobianOptions extends ClassifierOptions, RunOptions {
  /**
   * What to differentiate: `'logProbs'` (log softmax, C rows), `'logits'` (C rows) or
   * `{ layer: name }` (the flattened output of that layer, m rows).
   * @defaultValue `'logProbs'`
   */
  target?: Target;
  /** How the rows are computed (see {@link JacobianStrategy}); all give the same Jacobian. @defaultValue `'auto'` */
  strategy?: JacobianStrategy;
  /**
   * Return `[B, R, n]` (n = the product of the input shape) instead of `[B, R, ...inputShape]`.
   * @defaultValue false
   */
  flatten?: boolean;
}

/** The option names of {@link InputJacobianOptions}. @internal */
export const INPUT_JACOBIAN_OPTIONS: OptionNames<InputJacobianOptions> = { ...CLASSIFIER_OPTIONS, ...RUN_OPTIONS, target: true, strategy: true, flatten: true };

/** A resolved plan: what one chunk does (the benchmark records it). */
export interface JacobianPlan {
  strategy: Exclude<JacobianStrategy, 'auto'>;
  /** Output rows R. */
  rows: number;
  /** Rows per backward pass (tiled into the batch). */
  rowsPerPass: number;
  /** Samples per chunk. */
  samplesPerChunk: number;
  /** Why `'auto'` could not use `'graph'` (the first layer it does not cover). */
  graphUnavailable?: string;
}

const STRATEGIES = ['auto', 'graph', 'loop', 'tiled', 'softmax-chain'] as const;
/** Samples per backward pass that `'auto'` tiles rows up to. */
const AUTO_PASS_SAMPLES = 8;

/**
 * Resolves the strategy and the chunk sizes for a batch of `B` samples, with the compiled graph
 * when the strategy is `'graph'`.
 */
export function planInputJacobian(clf: Classifier, B: number, options: InputJacobianOptions, fn = 'inputJacobian'): JacobianPlan & { graph?: CompiledGraph } {
  const target = options.target ?? 'logProbs';
  const { width } = clf.target(target);
  const requested = options.strategy ?? 'auto';
  if (!(STRATEGIES as readonly string[]).includes(requested)) {
    throw new ValueError(`${fn}: strategy must be one of ${STRATEGIES.join(', ')}; got '${String(requested)}'.`);
  }
  if (requested === 'softmax-chain' && target !== 'logProbs') {
    throw new ValueError(`${fn}: strategy 'softmax-chain' only applies to target 'logProbs'.`);
  }
  let graphUnavailable: string | undefined;
  if (requested === 'auto' || requested === 'graph') {
    const graph = graphFor(clf, target);
    if (!('reason' in graph)) {
      const budget = budgetFor(options, fn, graph.tapeBytesPerSample + graph.bytesPerRow, "one sample's forward tape and one row's backward pass");
      const R = target === 'logProbs' ? width - 1 : width;
      // The tape is held for the whole chunk; the rows go backward `rowsPerPass` at a time.
      const samplesPerChunk = Math.max(1, Math.min(B, Math.floor(budget / (R * graph.bytesPerRow + graph.tapeBytesPerSample))));
      const rowsLeft = Math.max(graph.bytesPerRow, budget - samplesPerChunk * graph.tapeBytesPerSample);
      const rowsPerPass = Math.max(1, Math.min(R, Math.floor(rowsLeft / (samplesPerChunk * graph.bytesPerRow))));
      return { strategy: 'graph', rows: width, rowsPerPass, samplesPerChunk, graph };
    }
    if (requested === 'graph') {
      throw new UnsupportedModelError(`${fn}: strategy 'graph' does not cover ${graph.reason}; use strategy 'auto' to fall back to tf.grad.`);
    }
    graphUnavailable = graph.reason;
  }
  const strategy: JacobianPlan['strategy'] = requested === 'auto' ? (target === 'logProbs' ? 'softmax-chain' : 'loop') : requested;
  const passRows = strategy === 'softmax-chain' ? width - 1 : width;
  const budget = budgetFor(options, fn, bytesPerSamplePass(clf.model), "one sample's backward pass for one row");
  const maxSampleRows = Math.max(1, Math.floor(budget / bytesPerSamplePass(clf.model)));
  let rowsPerPass = strategy === 'tiled' ? passRows : 1;
  if (requested === 'auto') {
    const wanted = Math.min(passRows, Math.ceil(AUTO_PASS_SAMPLES / Math.min(B, maxSampleRows)));
    rowsPerPass = Math.ceil(passRows / Math.ceil(passRows / wanted)); // balanced passes
  }
  rowsPerPass = Math.min(rowsPerPass, maxSampleRows);
  const samplesPerChunk = Math.max(1, Math.min(B, Math.floor(maxSampleRows / rowsPerPass)));
  return { strategy, rows: width, rowsPerPass, samplesPerChunk, ...(graphUnavailable ? { graphUnavailable } : {}) };
}

/** The Jacobian of one chunk, yielding to the event loop between backward passes. */
async function jacobianOfChunk(
  clf: Classifier,
  x: tf.Tensor,
  target: Target,
  plan: JacobianPlan & { graph?: CompiledGraph },
  signal?: AbortSignal,
  applyChain = true,
): Promise<tf.Tensor> {
  const logProbs = target === 'logProbs' && (plan.strategy === 'softmax-chain' || plan.strategy === 'graph');
  const { fn, width } = logProbs ? { fn: clf.logits, width: clf.numClasses } : clf.target(target);
  const U = logProbs ? logitDifferenceRows(clf.numClasses) : (tf.eye(width) as tf.Tensor2D);
  const R = U.shape[0];
  const passes = Math.ceil(R / plan.rowsPerPass);
  const rowsOf = (i: number) => tf.slice(U, [i * plan.rowsPerPass, 0], [Math.min(plan.rowsPerPass, R - i * plan.rowsPerPass), -1]);
  const inShape = x.shape.slice(1);
  let blocks: tf.Tensor[];
  let p: tf.Tensor2D | undefined;
  try {
    if (plan.graph !== undefined) {
      const tape = plan.graph.forward(x);
      try {
        blocks = await tidySteps(passes, signal, (i) => tape.vjpRows(rowsOf(i)));
        if (logProbs && applyChain) p = tf.softmax(tape.output);
      } finally {
        tape.dispose();
      }
    } else {
      blocks = await tidySteps(passes, signal, (i) => vjpRows(fn, x, rowsOf(i), plan.rowsPerPass));
      if (logProbs && applyChain) p = tf.tidy(() => clf.probs(x));
    }
  } finally {
    U.dispose();
  }
  return tf.tidy(() => {
    const D = blocks.length === 1 ? (blocks[0] as tf.Tensor) : tf.concat(blocks, 1);
    const J = tf.reshape(p ? softmaxChain(D, p) : D, [x.shape[0] as number, -1, ...inShape]);
    tf.dispose(blocks.filter((b) => b !== J));
    p?.dispose();
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
 * Cost: with the default `'graph'` strategy, one forward pass and one backward pass of all R rows
 * per chunk (R = C − 1 logit differences for log-probabilities, C for logits, the layer's width for
 * a layer); through `tf.grad` (the fallback), about R backward passes. Chunks keep one pass under
 * `memoryBudgetMB`.
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
  const clf = classifierOf(model, checkOptions(options, fn, INPUT_JACOBIAN_OPTIONS), fn);
  await checkBatch(clf, x, fn);
  const target = options.target ?? 'logProbs';
  if (options.flatten !== undefined && typeof options.flatten !== 'boolean') throw new ValueError(`${fn}: flatten must be a boolean, got ${describe(options.flatten)}.`);
  const plan = planInputJacobian(clf, x.shape[0] as number, options, fn);
  if (plan.graph === undefined) assertDifferentiable(model, 'input', fn);
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
    return rethrowKernelError(e, fn, clf.model);
  }
}

/**
 * The cotangent rows on the logits of one chunk, made from its reference classes, its logits and
 * the index of its first sample in the call: a function of the rows wanted,
 * `(from, count) → [b, count, C]`. @internal
 */
export type CotangentRows = (reference: Int32Array, logits: ArrayLike<number>, start: number) => (from: number, count: number) => tf.Tensor3D;

/**
 * The R rows `[b, R, n]` of a chunk in backward passes of `perPass` rows, each pass making only its
 * own cotangents; written in place on wasm and cpu (the result and one pass alive, not every pass
 * and their join), joined on the GPU backends.
 */
async function rowsInPasses(lin: Linearization, rows: (from: number, count: number) => tf.Tensor3D, b: number, R: number, perPass: number, n: number, signal?: AbortSignal): Promise<tf.Tensor3D> {
  const passes = Math.ceil(R / perPass);
  const pass = (i: number) => tf.tidy(() => lin.vjp(rows(i * perPass, Math.min(perPass, R - i * perPass))) as tf.Tensor3D);
  const out = await rowsAssembler([b, R, n]);
  if (out === undefined) {
    const blocks = await tidySteps(passes, signal, pass);
    try {
      return tf.concat(blocks, 1) as tf.Tensor3D;
    } finally {
      tf.dispose(blocks);
    }
  }
  try {
    for (let i = 0; i < passes; i++) {
      if (i > 0) await pause(signal);
      const block = pass(i); // [b, r, n]
      try {
        for (let s = 0; s < b; s++) {
          const mine = b === 1 ? block : tf.slice(block, [s, 0, 0], [1, -1, -1]);
          await out.write(mine, s * R + i * perPass, 0);
          if (mine !== block) mine.dispose();
        }
      } finally {
        block.dispose();
      }
    }
    return out.finish();
  } catch (e) {
    out.dispose();
    throw e;
  }
}

/**
 * The logits `[B, C]` and, for each sample, the logit-difference rows against its reference class
 * k_b (its arg-max, see {@link referenceClasses}): D[b, j] = ∇ₓ s_c(x_b) − ∇ₓ s_{k_b}(x_b) for the
 * C − 1 classes c ≠ k_b in increasing order, `[B, C−1, n]` (caller owns both tensors), from one
 * linearisation of the logits per chunk (the logits are its forward output). Their span is exactly
 * D_x = span{∇ₓ log p_c}, and, unlike the C rows ∇ₓ log p_c, they carry no dependent row whose
 * float32 residue could pass for a direction. With `cotangents` (and their count R), other rows on
 * the logits go backward instead: G's factor (see `multinomialRowsOf`), or the top classes'. @internal
 */
export async function logitDifferences(
  clf: Classifier,
  x: tf.Tensor,
  options: RunOptions,
  fn: string,
  cotangents: CotangentRows = (k) => (from, count) => referenceDifferenceRows(k, clf.numClasses, from, count),
  R = clf.numClasses - 1,
): Promise<{ D: tf.Tensor3D; logits: tf.Tensor2D; reference: Int32Array }> {
  const C = clf.numClasses;
  const B = x.shape[0] as number;
  const reference = new Int32Array(B);
  // As many samples per chunk and rows per backward pass as the budget holds: a 1,000-class head's
  // 999 rows of one 224×224 image do not fit one pass (MobileNetV2: ~20 MB a row).
  const graph = graphFor(clf, 'logits');
  const plan = 'reason' in graph ? undefined : planInputJacobian(clf, B, { target: 'logits', strategy: 'graph', memoryBudgetMB: options.memoryBudgetMB }, fn);
  const chunk = plan?.samplesPerChunk ?? linearChunk(clf, 'logits', R, options, fn);
  const rowsPerPass = Math.min(plan?.rowsPerPass ?? R, R);
  try {
    const [D, logits] = await runChunks(x, chunk, options, async (xc, start) => {
      const b = xc.shape[0] as number;
      const lin = linearize(clf, xc, 'logits');
      try {
        const values = await lin.output.data();
        const k = referenceClasses(values, b, C);
        reference.set(k, start);
        const rows = cotangents(k, values, start);
        if (rowsPerPass >= R) return tf.tidy(() => [lin.vjp(rows(0, R)), tf.clone(lin.output)]); // [b, R, n], [b, C]
        return [await rowsInPasses(lin, rows, b, R, rowsPerPass, clf.inputSize, options.signal), tf.clone(lin.output)];
      } finally {
        lin.dispose();
      }
    });
    return { D: D as tf.Tensor3D, logits: logits as tf.Tensor2D, reference };
  } catch (e) {
    return rethrowKernelError(e, fn, clf.model);
  }
}
