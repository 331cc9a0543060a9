/**
 * The local data matrix G(x) and the distribution (leaf tangent) D_x of Grementieri & Fioresi.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { checkKeys, checkNumber, checkOptions, describe } from '../checks.js';
import { ValueError } from '../errors.js';
import type { Classifier, ClassifierOptions } from '../model/classifier.js';
import { checkBatch, CLASSIFIER_OPTIONS, classifierOf } from '../model/classifier.js';
import type { RunOptions } from '../jacobian/chunks.js';
import { logitDifferences } from '../jacobian/input.js';
import type { CotangentRows } from '../jacobian/input.js';
import { checkRtol, LowRankPSD, ownedPSD, RANK_OPTIONS, RowSpaceProjector } from '../linalg/lowRankPSD.js';
import type { RankOptions } from '../linalg/lowRankPSD.js';
import { uniformGenerator } from '../linalg/random.js';
import { dot, multinomialCotangents, orthonormalRows, otherClass } from '../linalg/rows.js';
import type { RowBasis64 } from '../linalg/rows.js';
import type { OptionNames } from '../checks.js';
import { RUN_OPTIONS } from '../jacobian/chunks.js';

/** Options of {@link localDataMatrix}. */
export interface LocalDataMatrixOptions extends ClassifierOptions, RunOptions {
  /**
   * Which rows factor G. `'exact'` (the default): C − 1 rows, G itself. `{ topK: k }` (1 ≤ k < C),
   * for a head too large for the exact factor ((C − 1)·n floats a sample): the k rows
   * √p_c ∇ₓ log p_c of the k most probable classes K (ties to the lower class), whose
   * G_K = Σ_{c∈K} p_c ∇log p_c ∇log p_cᵀ is a lower bound of G in the order of PSD matrices:
   * G − G_K = Σ_{c∉K} p_c ∇log p_c ∇log p_cᵀ ⪰ 0, of trace at most ε · max_{c∉K} ‖∇log p_c‖², with ε
   * the probability left out ({@link LocalDataMatrixResult.droppedMass}). `{ samples: S, seed }`:
   * S rows ∇ₓ log p_y/√S for labels drawn y ∼ p, an unbiased estimate of G (the sampled Fisher).
   * @defaultValue `'exact'`
   */
  rows?: 'exact' | TopKRows | SampledRows;
}

/** The option names of {@link LocalDataMatrixOptions}. @internal */
export const LOCAL_DATA_MATRIX_OPTIONS: OptionNames<LocalDataMatrixOptions> = { ...CLASSIFIER_OPTIONS, ...RUN_OPTIONS, rows: true };

/** The rows of the k most probable classes (see {@link LocalDataMatrixOptions.rows}). */
export interface TopKRows {
  /** How many classes: an integer, 1 ≤ k < C. */
  topK: number;
}

/**
 * Rows of labels drawn from the model, y ∼ p(x) (see {@link LocalDataMatrixOptions.rows}): the
 * Monte Carlo estimate Ĝ = (1/S) Σ_s ∇log p_{y_s} ∇log p_{y_s}ᵀ, unbiased (E Ĝ = G), with the
 * standard error of its trace in {@link LocalDataMatrixResult.traceStandardError}.
 */
export interface SampledRows {
  /** Labels drawn per sample (the factor's rows): an integer S ≥ 2. */
  samples: number;
  /**
   * Seed of the draws: sample b of the call draws from a stream of its own, seed + 104729·b, so
   * that chunking and the pool's split do not change them. @defaultValue 0
   */
  seed?: number;
  /** The index in the whole call of this batch's first sample (the pool's shares). @internal */
  first?: number;
}

/** Result of {@link localDataMatrix}. Dispose `G` and `probs`. */
export interface LocalDataMatrixResult {
  /**
   * G(x_b) for each sample, as a factor `[B, R, n]`: R = C − 1 rows (see {@link localDataMatrix}),
   * or the k rows of `rows: { topK: k }`.
   */
  G: LowRankPSD;
  /** p(x_b), `[B, C]`. */
  probs: tf.Tensor2D;
  /**
   * Per sample, the probability of the classes whose rows were left out, ε_b = Σ_{c∉K} p_c (float64):
   * 0 for the exact G; with `rows: { topK }`, G_b − G_K,b ⪰ 0 has a trace of at most
   * ε_b · max_{c∉K} ‖∇log p_c‖².
   */
  droppedMass: Float64Array;
  /**
   * Per sample, the standard error of tr G's estimate (float64): with `rows: { samples: S }`,
   * sd(‖∇log p_y‖²)/√S from the S draws; 0 for the exact G and the top k rows (nothing random).
   */
  traceStandardError: Float64Array;
}

/**
 * The local data matrix of Grementieri & Fioresi for each sample of a batch,
 *
 *   G(x) = Σ_c p_c(x) ∇ₓ log p_c(x) ∇ₓ log p_c(x)ᵀ = Jᵀ diag(p) J,   J = ∂ log p/∂x ∈ ℝ^{C×n},
 *
 * the Fisher information of the model's predictive distribution with respect to the input
 * (equivalently J_sᵀ (diag p − ppᵀ) J_s with J_s the logit Jacobian). It is PSD with rank ≤ C − 1
 * (Σ_c p_c ∇log p_c = 0), tr G = Σ_c p_c ‖∇log p_c‖², and KL(p(x + δ) ‖ p(x)) = ½ δᵀ G δ + O(‖δ‖³)
 * (the papers print it without the ½).
 *
 * The factor has C − 1 rows: A = S D, with D_c = ∇ₓ s_c − ∇ₓ s_k for the classes c ≠ k, k the
 * predicted class, and S a square root of the covariance diag p′ − p′p′ᵀ of the other classes (in
 * closed form from float64 p, applied on the logits: the backward pass of the per-sample cotangents
 * S (e_c − e_k) gives A itself): with k the predicted class no p(1 − p) cancels however saturated
 * the prediction. The rows go backward in as many passes as `memoryBudgetMB` allows (a 1,000-class
 * head at 224 × 224: a 574 MB factor, 40 s on wasm); the factor itself is (C − 1)·n floats a sample. The other choice, diag(√p) ∂log p/∂x with C rows, carries a row that is
 * a combination of the others only up to float32 rounding, and that residue is amplified by
 * 1/√p_c for an improbable class (measured on a 4-class linear model: Gram–Schmidt on the C rows
 * ∂log p/∂x found a 4th direction in the 3-dimensional D_x of one sample). With C − 1 rows, the
 * rank and the small eigenvalues are not polluted by it. G is never
 * formed as n × n.
 *
 * @param model - a classifier `LayersModel` (see {@link inputJacobian}).
 * @param x - input batch `[B, ...inputShape]`, float32.
 * @returns G as a {@link LowRankPSD} and p; the caller owns both (dispose them).
 * @throws as {@link inputJacobian}.
 *
 * @example
 * ```ts
 * const { G, probs } = await localDataMatrix(model, x);
 * console.log(await G.trace(), await G.rank());   // tr G(x_b), rank ≤ C − 1
 * const { values, vectors } = await G.eig();      // nonzero eigenvalues (float64), eigenvectors
 * G.dispose(); probs.dispose(); vectors.dispose();
 * ```
 */
export async function localDataMatrix(model: LayersModel, x: tf.Tensor, options: LocalDataMatrixOptions = {}): Promise<LocalDataMatrixResult> {
  const fn = 'localDataMatrix';
  const clf = classifierOf(model, checkOptions(options, fn, LOCAL_DATA_MATRIX_OPTIONS), fn);
  await checkBatch(clf, x, fn);
  const C = clf.numClasses;
  const rows = rowsOption(options.rows, C, fn);
  const topK = 'topK' in rows ? rows.topK : undefined;
  // The backward passes take the cotangents S (e_c − e_k), whose rows are G's factor S D itself, or
  // those of the top k classes, √p_c (e_c − p), or of the labels drawn, (e_y − p)/√S.
  const cotangents = 'samples' in rows ? sampledRowsOf(C, rows) : topK === undefined ? multinomialRowsOf(C) : topRowsOf(C, topK);
  const R = 'samples' in rows ? rows.samples : (topK ?? C - 1);
  const { D: factor, logits } = await logitDifferences(clf, x, options, fn, cotangents, R);
  try {
    const B = logits.shape[0];
    const p64 = probabilities64(await logits.data(), B, C);
    const probs = tf.tensor2d(Float32Array.from(p64), logits.shape);
    const droppedMass = new Float64Array(B);
    if (topK !== undefined) {
      for (let b = 0; b < B; b++) {
        const p = p64.subarray(b * C, (b + 1) * C);
        droppedMass[b] = Math.max(0, 1 - topClasses(p, topK).reduce((a, c) => a + (p[c] as number), 0));
      }
    }
    const traceStandardError = new Float64Array(B);
    if ('samples' in rows) {
      // Row s is ∇log p_{y_s}/√S: S‖row‖² are the S draws of ‖∇log p_y‖², whose mean is tr Ĝ.
      const S = rows.samples;
      const squares = tf.tidy(() => tf.sum(tf.square(factor), 2));
      const norms = await squares.data().finally(() => squares.dispose());
      for (let b = 0; b < B; b++) {
        const draws = Array.from(norms.subarray(b * S, (b + 1) * S), (v) => S * v);
        const mean = draws.reduce((a, v) => a + v, 0) / S;
        const variance = draws.reduce((a, v) => a + (v - mean) ** 2, 0) / (S - 1);
        traceStandardError[b] = Math.sqrt(variance / S);
      }
    }
    try {
      return { G: await ownedPSD(factor, fn), probs, droppedMass, traceStandardError };
    } catch (e) {
      probs.dispose();
      throw e;
    }
  } catch (e) {
    factor.dispose();
    throw e;
  } finally {
    logits.dispose();
  }
}

/** Reads the `rows` option. */
function rowsOption(rows: LocalDataMatrixOptions['rows'], C: number, fn: string): { exact: true } | TopKRows | Required<SampledRows> {
  if (rows === undefined || rows === 'exact') return { exact: true };
  if (typeof rows === 'object' && rows !== null && 'topK' in rows) {
    checkKeys(rows, fn, { topK: true }, 'rows');
    return { topK: checkNumber(rows.topK, fn, 'rows.topK', { min: 1, max: C - 1, integer: true }, 1) };
  }
  if (typeof rows === 'object' && rows !== null && 'samples' in rows) {
    // `first` is the pool's, not named to the user.
    const { first: _first, ...named } = rows;
    checkKeys(named, fn, { samples: true, seed: true }, 'rows');
    return {
      samples: checkNumber(rows.samples, fn, 'rows.samples', { min: 2, integer: true }, 2),
      seed: checkNumber(rows.seed, fn, 'rows.seed', { integer: true }, 0),
      first: checkNumber(rows.first, fn, 'rows.first', { min: 0, integer: true }, 0),
    };
  }
  throw new ValueError(`${fn}: rows must be 'exact', { topK: k } or { samples: S, seed }; got ${describe(rows)}.`);
}

/**
 * Cotangents w (e_c − p) on the logits, whose backward pass is the row w ∇ₓ log p_c: `[B, count, C]`
 * for the rows `from …` of each sample, row r being `pick(b, r)` = [c, w].
 */
function logProbRows(p64: Float64Array, B: number, C: number, from: number, count: number, pick: (b: number, r: number) => [number, number]): tf.Tensor3D {
  const U = new Float32Array(B * count * C);
  for (let b = 0; b < B; b++) {
    for (let r = 0; r < count; r++) {
      const [c, w] = pick(b, from + r);
      const row = (b * count + r) * C;
      for (let j = 0; j < C; j++) U[row + j] = -w * (p64[b * C + j] as number);
      U[row + c] = (U[row + c] as number) + w;
    }
  }
  return tf.tensor3d(U, [B, count, C]);
}

/** The cotangents (e_y − p)/√S of S labels y ∼ p per sample, each sample drawing from its own seeded stream. */
function sampledRowsOf(C: number, { samples: S, seed, first }: Required<SampledRows>): CotangentRows {
  return (reference, logits, start) => {
    const B = reference.length;
    const p64 = probabilities64(logits, B, C);
    const labels = Array.from({ length: B }, (_, b) => {
      const uniform = uniformGenerator(seed + 104729 * (first + start + b));
      const p = p64.subarray(b * C, (b + 1) * C);
      return Array.from({ length: S }, () => {
        let u = uniform();
        for (let c = 0; c < C - 1; c++) if ((u -= p[c] as number) < 0) return c;
        return C - 1;
      });
    });
    const w = 1 / Math.sqrt(S);
    return (from, count) => logProbRows(p64, B, C, from, count, (b, r) => [(labels[b] as number[])[r] as number, w]);
  };
}

/** The k most probable classes of p, most probable first (ties to the lower class). */
function topClasses(p: ArrayLike<number>, k: number): number[] {
  return Array.from({ length: p.length }, (_, c) => c)
    .sort((a, b) => (p[b] as number) - (p[a] as number) || a - b)
    .slice(0, k);
}

/** The cotangents √p_c (e_c − p) of each sample's k most probable classes: rows √p_c ∇log p_c. */
function topRowsOf(C: number, k: number): CotangentRows {
  return (reference, logits) => {
    const B = reference.length;
    const p64 = probabilities64(logits, B, C);
    const classes = Array.from({ length: B }, (_, b) => topClasses(p64.subarray(b * C, (b + 1) * C), k));
    return (from, count) =>
      logProbRows(p64, B, C, from, count, (b, r) => {
        const c = (classes[b] as number[])[r] as number;
        return [c, Math.sqrt(p64[b * C + c] as number)];
      });
  };
}

/**
 * The cotangents S_b (e_c − e_{k_b}) of a chunk, with S_b the square root of the covariance of the
 * classes other than its reference class k_b (see `multinomialCotangents`), p the softmax of the
 * logits taken in float64 (for a confident prediction, a float32 p would round the small p_c): the
 * backward pass of these rows is the factor of G = Dᵀ Σ′ D with C − 1 rows. @internal
 */
export function multinomialRowsOf(C: number): CotangentRows {
  return (reference, logits) => {
    const p64 = probabilities64(logits, reference.length, C);
    return (from, count) => multinomialCotangents(p64, reference, C, from, count);
  };
}

/**
 * The softmax of each row of float32 logits `[B, C]` (row-major values), taken in float64: for a
 * confident prediction, a float32 p would round the small p_c. @internal
 */
export function probabilities64(s: ArrayLike<number>, B: number, C: number): Float64Array {
  const p = new Float64Array(B * C);
  for (let b = 0; b < B; b++) {
    let max = -Infinity;
    for (let i = 0; i < C; i++) max = Math.max(max, s[b * C + i] as number);
    let z = 0;
    for (let i = 0; i < C; i++) z += p[b * C + i] = Math.exp((s[b * C + i] as number) - max);
    for (let i = 0; i < C; i++) p[b * C + i] = (p[b * C + i] as number) / z;
  }
  return p;
}

/** Options of {@link distributionProjector}. */
export interface DistributionProjectorOptions extends ClassifierOptions, RunOptions, RankOptions {}

/** The option names of {@link DistributionProjectorOptions}. @internal */
export const DISTRIBUTION_PROJECTOR_OPTIONS: OptionNames<DistributionProjectorOptions> = { ...CLASSIFIER_OPTIONS, ...RUN_OPTIONS, ...RANK_OPTIONS };

/**
 * For each sample, an orthonormal basis of the distribution
 *
 *   D_x = span{∇ₓ log p_c(x)} = rowspace(∂ log p/∂x)   (= range G(x) where every p_c > 0),
 *
 * the tangent space of the data leaf through x. The basis comes from the C − 1 logit differences
 * ∇ₓ s_c − ∇ₓ s_k against the predicted class k, which span exactly D_x
 * (∇log p_c − ∇log p_k = ∇s_c − ∇s_k), by
 * twice-iterated modified Gram–Schmidt in float64 with a relative rank cut: rank ≤ C − 1, never
 * assumed to be C − 1 (and not inflated by the float32 residue of the dependent row of
 * ∂log p/∂x). `project(v)` moves along the leaf, `projectKernel(v)` across leaves (onto ker G).
 * Rescaling the class gradients (the reference code normalises them) spans the same space.
 *
 * @param model - a classifier `LayersModel`.
 * @param x - input batch `[B, ...inputShape]`, float32.
 * @param options - see {@link DistributionProjectorOptions}.
 * @returns the projector; the caller owns it (`dispose()`).
 * @throws as {@link inputJacobian}; {@link ValueError} for `rtol` outside [0, 1).
 *
 * @example
 * ```ts
 * const P = await distributionProjector(model, x);
 * const along = P.project(tf.sub(target, x));   // the horizontal direction of Algorithm 4.1
 * const across = P.projectKernel(noise);        // a direction that keeps p to first order
 * console.log(P.rank);                          // e.g. [9, 9, ...]
 * P.dispose();
 * ```
 */
export async function distributionProjector(model: LayersModel, x: tf.Tensor, options: DistributionProjectorOptions = {}): Promise<RowSpaceProjector> {
  const fn = 'distributionProjector';
  const clf = classifierOf(model, checkOptions(options, fn, DISTRIBUTION_PROJECTOR_OPTIONS), fn);
  await checkBatch(clf, x, fn);
  const { bases, dim } = await leafGeometry(clf, x, options, fn);
  return new RowSpaceProjector(bases, dim);
}

/** The geometry at each x_b that a path step needs, from one logit-difference Jacobian. @internal */
export interface LeafGeometry {
  /** Orthonormal bases (float64) of D_x, one per sample. */
  bases: RowBasis64[];
  /** tr G(x_b) = Σ_ij Σ′_ij ⟨D_i, D_j⟩ (rows and Σ′ against the arg-max class), float64. */
  traces: Float64Array;
  /** p(x_b), float64 softmax of the logits, `[B·C]` row-major. */
  probs: Float64Array;
  numClasses: number;
  dim: number;
}

/** @internal See {@link LeafGeometry}. */
export async function leafGeometry(clf: Classifier, x: tf.Tensor, options: DistributionProjectorOptions, fn: string): Promise<LeafGeometry> {
  const rtol = checkRtol(options.rtol, fn);
  const { D, logits, reference } = await logitDifferences(clf, x, options, fn);
  const [B, m, n] = D.shape as [number, number, number];
  const C = m + 1;
  const [data, s] = await Promise.all([D.data(), logits.data()]);
  tf.dispose([D, logits]);
  const probs = probabilities64(s, B, C);
  const traces = new Float64Array(B);
  const bases = Array.from({ length: B }, (_, b) => {
    const rows = data.subarray(b * m * n, (b + 1) * m * n);
    const p = probs.subarray(b * C, (b + 1) * C);
    const k = reference[b] as number;
    const q = (j: number) => p[otherClass(j, k)] as number; // p without the reference class, as D's rows
    let tr = 0;
    for (let i = 0; i < m; i++)
      for (let j = 0; j < m; j++) {
        const cov = (i === j ? q(i) : 0) - q(i) * q(j);
        if (cov !== 0) tr += cov * dot(rows, i * n, rows, j * n, n);
      }
    traces[b] = tr;
    return orthonormalRows(rows, m, n, rtol);
  });
  return { bases, traces, probs, numClasses: C, dim: n };
}
