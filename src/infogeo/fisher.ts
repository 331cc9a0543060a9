/**
 * The local Fisher information F(x) in weight space, per sample and over a data set.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { checkNumber, checkOptions, checkRunOptions, checkTensor, describe } from '../checks.js';
import { ShapeError, ValueError } from '../errors.js';
import type { ClassifierOptions } from '../model/classifier.js';
import { CLASSIFIER_OPTIONS, classifierOf } from '../model/classifier.js';
import type { Progress, RunOptions } from '../jacobian/chunks.js';
import { pause, RUN_OPTIONS } from '../jacobian/chunks.js';
import type { WeightJacobianStrategy, WeightSlice } from '../jacobian/weight.js';
import { referenceClasses } from '../jacobian/rows.js';
import { selectWeights, weightRows } from '../jacobian/weight.js';
import type { RowsTarget } from '../jacobian/weight.js';
import type { RowsAssembler } from '../jacobian/assemble.js';
import { rowsAssembler } from '../jacobian/assemble.js';
import { LowRankPSD, ownedPSD } from '../linalg/lowRankPSD.js';
import { multinomialRowsOf, probabilities64 } from './dataMatrix.js';
import type { OptionNames } from '../checks.js';

/** Options of {@link localFisher}. */
export interface LocalFisherOptions extends ClassifierOptions, RunOptions {
  /** Only the trainable weights of these layers. @defaultValue all layers */
  layers?: string[];
  /** How the weight-space rows are computed (see {@link WeightJacobianStrategy}). @defaultValue `'auto'` */
  strategy?: WeightJacobianStrategy;
  /** Called after each chunk of samples (after each sample on the `tf.variableGrads` fallback). */
  onProgress?: (progress: Progress) => void;
  /** Cancels the call between chunks (between samples on the fallback). */
  signal?: AbortSignal;
  /**
   * Upper bound, in MiB, on what one chunk of samples holds besides its share of the factor (the
   * weights' blocks of its rows until they are copied into the factor, and the forward pass); the
   * factor itself is `B·(C−1)·d·4` bytes. On `cpu` and `wasm` the factor is written in place and a
   * chunk holds at most half the batch (one sample whose rows alone exceed the budget: its rows in
   * as many backward passes as fit), so for B ≥ 2 the peak stays below 1.5 × the factor plus the
   * forward pass; on the GPU backends the blocks are joined with `tf.concat` (2 ×).
   * @defaultValue 256
   */
  memoryBudgetMB?: number;
}

/** The option names of {@link LocalFisherOptions}. @internal */
export const LOCAL_FISHER_OPTIONS: OptionNames<LocalFisherOptions> = { ...CLASSIFIER_OPTIONS, ...RUN_OPTIONS, layers: true, strategy: true };

/** Result of {@link localFisher}. Dispose `F` and `probs`. */
export interface LocalFisherResult {
  /** F(x_b) for each sample, as a factor with C − 1 rows, `[B, C−1, d]` (as G in {@link localDataMatrix}). */
  F: LowRankPSD;
  /** p(x_b), `[B, C]`. */
  probs: tf.Tensor2D;
  /** Where each weight tensor sits among the d columns. */
  slices: WeightSlice[];
}

/**
 * The factor S_b D_b of each sample's Fisher (D the logit-difference rows against its arg-max
 * class, S the covariance square root, as G's): one pass of weight-space rows with the cotangents
 * S_b (e_c − e_k), so that S is applied on the C logits, never on the d-wide rows.
 */
async function fisherFactor(model: LayersModel, x: tf.Tensor, options: LocalFisherOptions, fn: string, scale = 1, into?: RowsTarget) {
  // The rows are linear in the cotangents: a scale of the factor is applied to these C numbers.
  const cotangents = async (logits: tf.Tensor2D) => {
    const [B, C] = logits.shape;
    const values = await logits.data();
    const reference = referenceClasses(values, B, C);
    return tf.tidy(() => {
      const U = multinomialRowsOf(C)(reference, values, 0)(0, C - 1);
      return (scale === 1 ? U : tf.mul(U, scale)) as tf.Tensor3D;
    });
  };
  const { jacobian: factor, slices, logits } = await weightRows(model, x, options, (C) => C - 1, cotangents, fn, into);
  const [B, C] = logits.shape;
  try {
    const probs = tf.tensor2d(Float32Array.from(probabilities64(await logits.data(), B, C)), [B, C]);
    return { factor, probs, slices };
  } catch (e) {
    factor?.dispose();
    throw e;
  } finally {
    logits.dispose();
  }
}

/**
 * The local Fisher information in weight space for each sample of a batch,
 *
 *   F(x) = Σ_c p_c(x) ∇_w log p_c(x) ∇_w log p_c(x)ᵀ = ∂s/∂wᵀ (diag p − ppᵀ) ∂s/∂w,
 *
 * with the expectation over the model's own predictive distribution (not the labels). PSD, rank
 * ≤ C − 1, and KL(p(x; w + δw) ‖ p(x; w)) = ½ δwᵀ F δw + O(‖δw‖³). Kept as the factor S D with
 * C − 1 rows (D the logit-difference rows in weight space, S as in {@link localDataMatrix}). Cost:
 * one forward and one backward pass per chunk of samples, with S applied to the cotangents on
 * the logits (see {@link weightJacobian}); F is never formed as d × d.
 *
 * @param model - a classifier `LayersModel` (on the `tf.variableGrads` fallback on `wasm`, conv layers need `registerGradientKernels()`).
 * @param x - input batch `[B, ...inputShape]`, float32.
 * @returns F as a {@link LowRankPSD}, p and the weight slices; dispose `F` and `probs`.
 * @throws as {@link weightJacobian}.
 *
 * @example
 * ```ts
 * const { F, probs } = await localFisher(model, x, { layers: ['fc2'] });
 * console.log(await F.trace());
 * F.dispose(); probs.dispose();
 * ```
 */
export async function localFisher(model: LayersModel, x: tf.Tensor, options: LocalFisherOptions = {}): Promise<LocalFisherResult> {
  const { factor, probs, slices } = await fisherFactor(model, x, checkOptions(options, 'localFisher', LOCAL_FISHER_OPTIONS), 'localFisher');
  try {
    return { F: await ownedPSD(factor as tf.Tensor3D, 'localFisher'), probs, slices };
  } catch (e) {
    probs.dispose();
    throw e;
  }
}

/** Options of {@link datasetFisher}. */
export interface DatasetFisherOptions extends LocalFisherOptions {
  /** Samples per weight-Jacobian call when `data` is one tensor. @defaultValue 32 */
  batchSize?: number;
  /**
   * Upper bound on the stacked factor (N·(C−1)·d float32 numbers), in MiB; past it the call throws
   * instead of exhausting memory (for a tensor, before anything is computed; a tensor's factor is
   * written in place on `cpu` and `wasm`, so the peak is the factor and the rows of half a batch).
   * Choose fewer samples or `layers` for large models.
   * @defaultValue 1024
   */
  maxFactorMB?: number;
}

/** The option names of {@link DatasetFisherOptions}. @internal */
export const DATASET_FISHER_OPTIONS: OptionNames<DatasetFisherOptions> = { ...LOCAL_FISHER_OPTIONS, batchSize: true, maxFactorMB: true };

/** Result of {@link datasetFisher}. Dispose `F`. */
export interface DatasetFisherResult {
  /** The mean Fisher as one matrix (B = 1), factor `[1, N·(C−1), d]`. */
  F: LowRankPSD;
  /** N, the number of samples. */
  count: number;
  /** Where each weight tensor sits among the d columns. */
  slices: WeightSlice[];
}

/**
 * The Fisher information of a data set, the mean of the local Fishers,
 *
 *   F = (1/N) Σ_x F(x) = Σ_x (B_x/√N)ᵀ (B_x/√N),
 *
 * kept as the stacked factor of N·(C−1) rows (trace, matvec and the top eigenpairs through
 * {@link LowRankPSD}; eigenpairs cost about 2·(N·(C−1))²·d flops). The data are streamed: `data` is a
 * tensor `[N, ...inputShape]` (cut into `batchSize` chunks) or an iterable / async iterable of
 * batches (each disposed by you after the call, not by infogeo).
 *
 * @returns the mean Fisher as a {@link LowRankPSD} with one matrix; dispose `F`.
 * @throws {@link ValueError} when the stacked factor would exceed `maxFactorMB`, or for no data;
 *   otherwise as {@link weightJacobian}.
 *
 * @example
 * ```ts
 * const { F, count } = await datasetFisher(model, xTrain, { layers: ['fc2'] });
 * const { values, vectors } = await F.eig();   // the Fisher spectrum of the last layer
 * F.dispose(); vectors.dispose();
 * ```
 */
export async function datasetFisher(
  model: LayersModel,
  data: tf.Tensor | Iterable<tf.Tensor> | AsyncIterable<tf.Tensor>,
  options: DatasetFisherOptions = {},
): Promise<DatasetFisherResult> {
  const fn = 'datasetFisher';
  checkOptions(options, fn, DATASET_FISHER_OPTIONS);
  checkRunOptions(options, fn);
  const batchSize = checkNumber(options.batchSize, fn, 'batchSize', { integer: true, min: 1 }, 32);
  const maxBytes = checkNumber(options.maxFactorMB, fn, 'maxFactorMB', { above: 0 }, 1024) * 2 ** 20;
  const iterable = (v: unknown) => v != null && typeof v === 'object' && (Symbol.iterator in v || Symbol.asyncIterator in v);
  if (!(data instanceof tf.Tensor) && !iterable(data)) {
    throw new ShapeError(`${fn}: argument 'data' must be a tf.Tensor or an iterable of tf.Tensor batches, got ${describe(data)}.`);
  }
  if (data instanceof tf.Tensor) checkTensor(data, fn, 'data');
  const parts: tf.Tensor3D[] = [];
  let slices: WeightSlice[] = [];
  let count = 0;
  let bytes = 0;
  const total = data instanceof tf.Tensor ? (data.shape[0] as number) : undefined;
  const batches = async function* () {
    if (data instanceof tf.Tensor) {
      for (let s = 0; s < (total as number); s += batchSize) {
        const b = tf.slice(data, s, Math.min(batchSize, (total as number) - s));
        try {
          yield b;
        } finally {
          b.dispose();
        }
      }
    } else {
      yield* data as AsyncIterable<tf.Tensor>;
    }
  };
  // A tensor's size is known: the factor is refused before anything large is allocated, each
  // batch's rows are scaled by 1/√N as they are made (on the cotangents) and, on cpu and wasm,
  // written straight into it, so the peak is the factor and the blocks of half a batch, not the
  // parts and their joined copy.
  const scale = total === undefined ? 1 : 1 / Math.sqrt(total);
  let out: RowsAssembler | undefined;
  let R = 0;
  if (total !== undefined && total > 0) {
    R = classifierOf(model, options, fn).numClasses - 1;
    const d = selectWeights(model, options.layers, fn).numWeights;
    if (total * R * d * 4 > maxBytes) {
      throw new ValueError(`${fn}: the stacked factor of ${total} samples would pass maxFactorMB = ${options.maxFactorMB ?? 1024} (${R} rows × ${d} weights each); use fewer samples or the 'layers' option.`);
    }
    out = await rowsAssembler([1, total * R, d]);
  }
  try {
    for await (const batch of batches()) {
      const into = out === undefined ? undefined : { out, row: count * R };
      const { factor, probs, slices: s } = await fisherFactor(model, batch, { ...options, onProgress: undefined }, fn, scale, into);
      probs.dispose();
      slices = s;
      count += batch.shape[0] as number;
      if (factor !== undefined) {
        parts.push(factor);
        bytes += factor.size * 4;
        if (bytes > maxBytes) {
          throw new ValueError(
            `${fn}: the stacked factor passed maxFactorMB = ${options.maxFactorMB ?? 1024} after ${count} samples ` +
              `(${factor.shape[1]} rows × ${factor.shape[2]} weights each); use fewer samples or the 'layers' option.`,
          );
        }
      }
      options.onProgress?.({ done: count, total: total ?? count });
      await pause(options.signal);
    }
    if (count === 0) throw new ValueError(`${fn}: no samples in 'data'.`);
    const factor =
      out?.finish() ??
      tf.tidy(() => {
        const stacked = tf.concat(parts.map((p) => tf.reshape(p, [-1, p.shape[2]])));
        return tf.expandDims(scale === 1 ? tf.mul(stacked, 1 / Math.sqrt(count)) : stacked, 0) as tf.Tensor3D;
      });
    return { F: await ownedPSD(factor, fn), count, slices };
  } finally {
    out?.dispose();
    tf.dispose(parts);
  }
}
