/**
 * The curvature of the pullback metric g = J_Φᵀ J_Φ of any layer Φ (Zavatone-Veth, Yang, Rubinfien,
 * Pehlevan): its Riemann tensor by the Gauss equation of the immersion Φ, then the Ricci tensor and
 * the scalar curvature, on the whole input or on a subspace (the plane through three images).
 *
 * Φ is an isometric immersion of (input, g) into the feature space ℝᵐ. With the tangent vectors
 * eᵢ = ∂ᵢΦ and the second fundamental form II(eᵢ, eⱼ) = (∂ᵢ∂ⱼΦ)^⊥, the part of the second
 * derivative normal to the tangent space, the Gauss equation of a submanifold of flat ℝᵐ gives
 *
 *   R_{ijkl} = ⟨II_ik, II_jl⟩ − ⟨II_il, II_jk⟩,   Ric_{jl} = g^{ik} R_{ijkl},   R = g^{jl} Ric_{jl},
 *
 * so R = ‖g^{ij} II_ij‖² − g^{ik} g^{jl} ⟨II_ij, II_kl⟩: no Christoffel symbols, no third
 * derivatives. The second derivatives ∂ᵢ∂ⱼΦ come from the linearisation core's second-order
 * forward mode (exact, one pass for all pairs); the rest is float64.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { checkChoice, checkOptions } from '../checks.js';
import { UnsupportedModelError, ValueError } from '../errors.js';
import { RUN_OPTIONS, runChunks } from '../jacobian/chunks.js';
import type { RunOptions } from '../jacobian/chunks.js';
import { graphFor, linearChunk, linearize } from '../jacobian/linearize.js';
import { inverseSPD } from '../linalg/special.js';
import { checkBatch, CLASSIFIER_OPTIONS, classifierOf } from '../model/classifier.js';
import type { Classifier, ClassifierOptions, Target } from '../model/classifier.js';
import { rethrowKernelError } from '../model/support.js';
import { featureTarget, subspaceBasis } from './metric.js';
import type { MetricNormalization } from './metric.js';
import type { OptionNames } from '../checks.js';

/** The most directions (input dimensions or subspace axes) whose curvature is computed. */
export const MAX_CURVATURE_DIM = 32;

/** Options of {@link scalarCurvature}. */
export interface ScalarCurvatureOptions extends ClassifierOptions, RunOptions {
  /** The feature map Φ (see {@link PullbackMetricOptions.target}); the layer that feeds the head by default. */
  target?: Target;
  /**
   * `'none'` for g = J_Φᵀ J_Φ, `'width'` for g/m as the reference code (and
   * {@link shallowScalarCurvature}) normalise it. The curvature of g/m is m times that of g.
   * @defaultValue `'none'`
   */
  normalization?: MetricNormalization;
  /**
   * The curvature of the metric restricted to the affine subspace x = x₀ + E u, for k ≥ 2 directions
   * E, `[k, ...inputShape]` (shared) or `[B, k, ...inputShape]`: the intrinsic curvature of the
   * k-dimensional surface Φ(x₀ + E u). Two directions (the axes of {@link planeThroughPoints}) give
   * the Gaussian curvature K = R/2 of the plane's induced metric. Needed when the input has more
   * than 32 dimensions.
   */
  subspace?: tf.Tensor;
  /**
   * `'standard'`: the unit sphere has R = +2. `'reference'`: R and Ric 3× that, the values the
   * paper's reference code returns for one-hidden-layer networks (see {@link shallowScalarCurvature}); for
   * deeper networks the reference differs from the standard value by a factor that is not constant,
   * which infogeo does not reproduce.
   * @defaultValue `'standard'`
   */
  convention?: 'standard' | 'reference';
}

/** The option names of {@link ScalarCurvatureOptions}. @internal */
export const SCALAR_CURVATURE_OPTIONS: OptionNames<ScalarCurvatureOptions> = { ...CLASSIFIER_OPTIONS, ...RUN_OPTIONS, target: true, normalization: true, subspace: true, convention: true };

/** The result of {@link scalarCurvature}: plain arrays, one entry per sample. */
export interface ScalarCurvatureResult {
  /**
   * The scalar curvature R per sample (in the `convention` asked for); NaN where g is singular
   * (J_Φ of rank below the dimension: fewer active units than directions, or m < k).
   */
  scalar: Float64Array;
  /** The Ricci tensor per sample, `dim × dim` row-major, in the coordinates of the input or of E. */
  ricci: Float64Array[];
  /** The dimension of the manifold: n, or the number of subspace directions k. */
  dim: number;
  /** The feature map Φ. */
  target: Target;
  /** Its width m. */
  width: number;
}

/**
 * The scalar curvature and the Ricci tensor of the pullback metric g = J_Φᵀ J_Φ of a layer Φ (or
 * of the logits, or the log-probabilities), at each sample, on the whole input (n ≤ 32) or on a
 * subspace: the curvature the paper computes with Christoffel symbols, here exact from the second
 * derivatives of Φ by the Gauss equation (see the module notes), with the standard sign (the unit
 * sphere has R = +2, a saddle R < 0).
 *
 * Φ must be smooth: a network whose layers up to Φ are all linear or piecewise linear (ReLU, max
 * pooling) is piecewise affine, its metric is flat on each linear region, and the curvature is zero
 * almost everywhere (concentrated on the region boundaries): that is refused. Log-probabilities are
 * smooth in the logits, so `target: 'logProbs'` has curvature on any network.
 *
 * Cost: one forward pass and one second-order forward pass of k(k+1)/2 tangent pairs per chunk
 * (k = n or the subspace's k), then O(k²·m) float64 work per sample.
 *
 * @param model - a classifier `LayersModel` covered by infogeo's graph (second derivatives need it).
 * @param x - input batch `[B, ...inputShape]`, float32.
 * @param options - see {@link ScalarCurvatureOptions}.
 * @returns plain arrays (no tensors); see {@link ScalarCurvatureResult}.
 * @throws {@link UnsupportedModelError} when Φ is piecewise affine (ReLU networks), or a layer on the
 *   way to Φ is not covered by infogeo's graph; {@link ValueError} for more than 32 input dimensions
 *   without a subspace, a subspace of fewer than 2 or more than 32 directions, or bad options;
 *   otherwise as {@link pullbackMetric}.
 *
 * @example
 * ```ts
 * const { scalar } = await scalarCurvature(model, x, { target: { layer: 'hidden' }, normalization: 'width' });
 * // on a plane through three images: K = R/2 of the plane's induced metric
 * const plane = planeThroughPoints(tf.stack([x1, x2, x3]));
 * const K = (await scalarCurvature(model, plane.origin, { target: 'logProbs', subspace: plane.axes })).scalar[0]! / 2;
 * plane.dispose();
 * ```
 */
export async function scalarCurvature(model: LayersModel, x: tf.Tensor, options: ScalarCurvatureOptions = {}): Promise<ScalarCurvatureResult> {
  const fn = 'scalarCurvature';
  return curvatureOf(classifierOf(model, checkOptions(options, fn, SCALAR_CURVATURE_OPTIONS), fn), x, options, fn);
}

/** Why the graph cannot give second derivatives of `target`, as the error to throw, or undefined. @internal */
export function curvatureSupport(clf: Classifier, target: Target, fn: string): UnsupportedModelError | undefined {
  const graph = graphFor(clf, target);
  const name = clf.target(target).name;
  if ('reason' in graph) {
    return new UnsupportedModelError(`${fn}: curvature needs second derivatives from infogeo's own graph, which does not cover ${graph.reason}.`);
  }
  if (target !== 'logProbs' && !graph.curved) {
    return new UnsupportedModelError(
      `${fn}: every layer up to ${name} is linear or piecewise linear (ReLU, max pooling…), so Φ is piecewise affine: ` +
        `its second derivatives vanish inside each linear region and the curvature of its metric is zero almost everywhere ` +
        `(concentrated on the regions' boundaries, where it is not defined). Use a smooth activation (tanh, softplus, gelu…) ` +
        `or target 'logProbs', which is smooth in the logits.`,
    );
  }
  return undefined;
}

/** {@link scalarCurvature} for a wrapped classifier, its errors named after `fn` (a plane scan's too). @internal */
export async function curvatureOf(clf: Classifier, x: tf.Tensor, options: ScalarCurvatureOptions, fn: string): Promise<ScalarCurvatureResult> {
  await checkBatch(clf, x, fn);
  const { target, width: m } = featureTarget(clf, options, fn);
  const normalization = checkChoice(options.normalization, fn, 'normalization', ['none', 'width'] as const, 'none');
  const convention = checkChoice(options.convention, fn, 'convention', ['standard', 'reference'] as const, 'standard');
  const B = x.shape[0] as number;
  const n = clf.inputSize;
  if (options.subspace === undefined && n > MAX_CURVATURE_DIM) {
    throw new ValueError(`${fn}: the input has n = ${n} dimensions (at most ${MAX_CURVATURE_DIM} without a subspace); pass options.subspace, e.g. the axes of planeThroughPoints.`);
  }
  const E = options.subspace === undefined ? undefined : await subspaceBasis(options.subspace, B, clf.inputShape, fn);
  try {
    const k = E === undefined ? n : (E.shape[1] as number);
    if (k < 2 || k > MAX_CURVATURE_DIM) {
      throw new ValueError(`${fn}: curvature needs 2 to ${MAX_CURVATURE_DIM} directions, got ${k} (${E === undefined ? 'the input dimension' : 'options.subspace'}).`);
    }
    const unsupported = curvatureSupport(clf, target, fn);
    if (unsupported) throw unsupported;
    // The pairs i ≤ j, and where each (i, i) is: its first-order block is J eᵢ.
    const I: number[] = [];
    const J: number[] = [];
    for (let i = 0; i < k; i++) for (let j = i; j < k; j++) (I.push(i), J.push(j));
    const P = I.length;
    const diagonal = Array.from({ length: k }, (_, i) => pairIndex(i, i, k));
    const scale = normalization === 'width' ? 1 / Math.sqrt(m) : 1;
    const scalar = new Float64Array(B);
    const ricci: Float64Array[] = [];
    const chunk = linearChunk(clf, target, 3 * P, options, fn, 1, true);
    const done = await runChunks(x, chunk, options, async (xc, start) => {
      const b = xc.shape[0] as number;
      const lin = linearize(clf, xc, target, true);
      let jet: { u: tf.Tensor3D; uv: tf.Tensor3D } | undefined;
      try {
        jet = tf.tidy(() => {
          const dirs = (E === undefined ? tf.tile(tf.expandDims(tf.eye(n), 0), [b, 1, 1]) : tf.reshape(tf.slice(E, start, b), [b, k, n])) as tf.Tensor3D;
          const r = lin.jet(tf.gather(dirs, I, 1) as tf.Tensor3D, tf.gather(dirs, J, 1) as tf.Tensor3D);
          return { u: tf.gather(r.u, diagonal, 1) as tf.Tensor3D, uv: r.uv };
        });
        const [cols, second] = await Promise.all([jet.u.data(), jet.uv.data()]);
        for (let s = 0; s < b; s++) {
          const c = gaussCurvature(cols.subarray(s * k * m, (s + 1) * k * m), second.subarray(s * P * m, (s + 1) * P * m), k, m, scale);
          const factor = convention === 'reference' ? 3 : 1;
          scalar[start + s] = factor * c.scalar;
          ricci.push(c.ricci.map((v) => factor * v));
        }
      } finally {
        lin.dispose();
        if (jet) tf.dispose([jet.u, jet.uv]);
      }
      return [];
    });
    tf.dispose(done);
    return { scalar, ricci, dim: k, target, width: m };
  } catch (e) {
    return rethrowKernelError(e, fn, clf.model);
  } finally {
    E?.dispose();
  }
}

/** The index of the pair (i, j) among the k(k+1)/2 pairs a ≤ b of k directions, in row-major order. */
function pairIndex(i: number, j: number, k: number): number {
  const [a, b] = i <= j ? [i, j] : [j, i];
  return a * k - (a * (a - 1)) / 2 + (b - a);
}

/**
 * The Ricci tensor and scalar curvature (standard sign) of the metric induced by an immersion with
 * tangent vectors `cols` (k rows of length m, eᵢ = ∂ᵢΦ) and second derivatives `second` (the
 * k(k+1)/2 pairs i ≤ j in row-major order, each of length m), both scaled by `scale` first; float64.
 * NaN where the tangent vectors are (numerically) dependent. @internal
 */
export function gaussCurvature(cols: ArrayLike<number>, second: ArrayLike<number>, k: number, m: number, scale = 1): { scalar: number; ricci: Float64Array } {
  const e = Array.from({ length: k }, (_, i) => Float64Array.from({ length: m }, (__, a) => scale * (cols[i * m + a] as number)));
  const P = (k * (k + 1)) / 2;
  const H = Array.from({ length: P }, (_, p) => Float64Array.from({ length: m }, (__, a) => scale * (second[p * m + a] as number)));
  const dot = (a: Float64Array, b: Float64Array) => {
    let s = 0;
    for (let i = 0; i < m; i++) s += (a[i] as number) * (b[i] as number);
    return s;
  };
  const g = new Float64Array(k * k);
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) g[i * k + j] = dot(e[i] as Float64Array, e[j] as Float64Array);
  const nan = { scalar: NaN, ricci: new Float64Array(k * k).fill(NaN) };
  // An orthonormal basis of the tangent space: Gram–Schmidt twice, in float64. A tangent vector
  // whose part outside the others' span is below 1e-5 of the longest (the rank cut of
  // volumeElement's rtol: float32 entries carry ~1e-7 relative rounding, more after cancellation)
  // is a combination of the others: g is singular.
  const basis: Float64Array[] = [];
  /** v without its part in the span of `basis` (a copy). */
  const normalPart = (v: Float64Array) => {
    const q = Float64Array.from(v);
    for (let pass = 0; pass < 2; pass++)
      for (const b of basis) {
        const c = dot(q, b);
        for (let a = 0; a < m; a++) q[a] = (q[a] as number) - c * (b[a] as number);
      }
    return q;
  };
  const largest = Math.sqrt(Math.max(...Array.from({ length: k }, (_, i) => g[i * k + i] as number)));
  for (const v of e) {
    const q = normalPart(v);
    const norm = Math.sqrt(dot(q, q));
    if (!(norm > 1e-5 * largest)) return nan;
    basis.push(q.map((a) => a / norm));
  }
  // II = the normal parts of the second derivatives.
  const II = H.map(normalPart);
  const pair = (i: number, j: number) => pairIndex(i, j, k);
  const S = new Float64Array(P * P);
  for (let p = 0; p < P; p++)
    for (let q = p; q < P; q++) {
      const v = dot(II[p] as Float64Array, II[q] as Float64Array);
      S[p * P + q] = v;
      S[q * P + p] = v;
    }
  const gi = inverseSPD(g, k);
  if (!gi.every(Number.isFinite)) return nan;
  const riem = (i: number, j: number, a: number, b: number) => (S[pair(i, a) * P + pair(j, b)] as number) - (S[pair(i, b) * P + pair(j, a)] as number);
  const ricci = new Float64Array(k * k);
  for (let j = 0; j < k; j++)
    for (let l = 0; l < k; l++) {
      let s = 0;
      for (let i = 0; i < k; i++) for (let a = 0; a < k; a++) s += (gi[i * k + a] as number) * riem(i, j, a, l);
      ricci[j * k + l] = s;
    }
  let scalar = 0;
  for (let j = 0; j < k; j++) for (let l = 0; l < k; l++) scalar += (gi[j * k + l] as number) * (ricci[j * k + l] as number);
  return { scalar, ricci };
}
