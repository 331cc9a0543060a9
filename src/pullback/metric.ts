/**
 * The pullback metric g = J_Φᵀ J_Φ of a feature map Φ (any layer of the model) and its volume
 * element √det g (Zavatone-Veth, Yang, Rubinfien, Pehlevan, "Neural networks learn to magnify areas
 * near decision boundaries").
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel, SymbolicTensor } from '@tensorflow/tfjs-layers';
import { checkChoice, checkFloatTensor, checkNumber, checkOptions } from '../checks.js';
import { fmtShape, ShapeError, ValueError } from '../errors.js';
import { RUN_OPTIONS, runChunks } from '../jacobian/chunks.js';
import type { RunOptions } from '../jacobian/chunks.js';
import { linearChunk, linearize } from '../jacobian/linearize.js';
import { checkRtol, LowRankPSD, ownedPSD, RANK_OPTIONS } from '../linalg/lowRankPSD.js';
import type { RankOptions } from '../linalg/lowRankPSD.js';
import { singularValues } from '../linalg/special.js';
import { assertFinite, checkBatch, CLASSIFIER_OPTIONS, classifierOf } from '../model/classifier.js';
import type { Classifier, ClassifierOptions, Target } from '../model/classifier.js';
import { rethrowKernelError } from '../model/support.js';
import type { OptionNames } from '../checks.js';

/**
 * The metric's normalisation: `'none'` for g = J_Φᵀ J_Φ, `'width'` for g = J_Φᵀ J_Φ / m (m = the
 * feature width), as the reference code does, so that the metric of a layer of N units has a
 * finite N → ∞ limit.
 */
export type MetricNormalization = 'none' | 'width';

/** Options of {@link pullbackMetric}. */
export interface PullbackMetricOptions extends ClassifierOptions, RunOptions {
  /**
   * The feature map Φ: `{ layer: name }` (that layer's output, flattened per sample), `'logits'` or
   * `'logProbs'`. Defaults to the layer that feeds the classifier head: the input of the last
   * `Dense` (or of the layer before a trailing softmax layer), e.g. the 128 ReLU units of the
   * MNIST CNN.
   */
  target?: Target;
  /** @defaultValue `'none'` */
  normalization?: MetricNormalization;
  /**
   * Restricts the metric to the affine subspace x = x₀ + E u: g_E = (J_Φ E)ᵀ (J_Φ E), k × k, for a
   * basis E of k directions, `[k, ...inputShape]` (the same for every sample, e.g. the axes of a
   * plane) or `[B, k, ...inputShape]`. The directions need not be orthonormal: g_E is the metric
   * in the coordinates u.
   */
  subspace?: tf.Tensor;
  /**
   * How J_Φ (or J_Φ E) is computed, from one linearisation of Φ per chunk; both exact:
   * - `'rows'`: m rows in reverse mode (one backward pass of m cotangent rows);
   * - `'columns'`: one tangent per input coordinate, or per direction of E, in forward mode;
   * - `'auto'`: `'columns'` when there are fewer columns (k) than rows (m), else `'rows'`.
   * @defaultValue `'auto'`
   */
  strategy?: 'auto' | 'rows' | 'columns';
}

/** The option names of {@link PullbackMetricOptions}. @internal */
export const PULLBACK_METRIC_OPTIONS: OptionNames<PullbackMetricOptions> = { ...CLASSIFIER_OPTIONS, ...RUN_OPTIONS, target: true, normalization: true, subspace: true, strategy: true };

/**
 * The name of the layer that feeds the classifier head (the default feature map Φ): the input of
 * the model's last layer, or of the one before a trailing `Softmax`/`Activation` layer.
 *
 * @throws {@link ValueError} if the head reads the model input directly (a linear model has no
 *   hidden feature map).
 */
export function defaultFeatureLayer(model: LayersModel, fn = 'defaultFeatureLayer'): string {
  classifierOf(model, {}, fn); // a built model with one input and one [B, C] output
  const layerNames = new Set(model.layers.map((l) => l.name));
  const source = (t: SymbolicTensor | SymbolicTensor[]) => (Array.isArray(t) ? (t[0] as SymbolicTensor) : t).sourceLayer;
  let head = source(model.outputs);
  const cls = head.getClassName();
  const cfg = head.getConfig() as Record<string, unknown>;
  if (cls === 'Softmax' || (cls === 'Activation' && cfg['activation'] === 'softmax')) head = source(head.input);
  const feature = source(head.input);
  if (feature.getClassName() === 'InputLayer' || !layerNames.has(feature.name)) {
    throw new ValueError(`${fn}: the output layer '${head.name}' reads the model input directly; there is no hidden feature map. Pass options.target.`);
  }
  return feature.name;
}

/** `subspace` checked: `[k, ...inputShape]` (shared) or `[B, k, ...inputShape]`, float32, finite. Returns k. @internal */
export async function checkSubspace(E: unknown, B: number, inputShape: readonly number[], fn: string): Promise<number> {
  checkFloatTensor(E, fn, 'options.subspace');
  const shared = E.rank === inputShape.length + 1;
  const batched = E.rank === inputShape.length + 2 && E.shape[0] === B;
  const tail = E.shape.slice(shared ? 1 : 2);
  if (!(shared || batched) || tail.some((d, i) => d !== inputShape[i]) || (E.shape[shared ? 0 : 1] as number) < 1) {
    throw new ShapeError(`${fn}: options.subspace must have shape ${fmtShape([null, ...inputShape])} or ${fmtShape([B, null, ...inputShape])}, got ${fmtShape(E.shape)}.`);
  }
  await assertFinite(E, fn, 'options.subspace');
  return E.shape[shared ? 0 : 1] as number;
}

/** `subspace` as `[B, k, ...inputShape]` (a new tensor), checked. @internal */
export async function subspaceBasis(E: tf.Tensor, B: number, inputShape: readonly number[], fn: string): Promise<tf.Tensor> {
  await checkSubspace(E, B, inputShape, fn);
  const shared = E.rank === inputShape.length + 1;
  return tf.tidy(() => (shared ? tf.tile(tf.expandDims(E, 0), [B, ...E.shape.map(() => 1)]) : tf.clone(E)));
}

/**
 * The pullback metric of the feature map Φ (a layer's output, flattened) at each sample,
 *
 *   g(x) = J_Φ(x)ᵀ J_Φ(x)   (÷ m with `normalization: 'width'`),   J_Φ = ∂Φ/∂x ∈ ℝ^{m×n},
 *
 * or its restriction g_E = (J_Φ E)ᵀ(J_Φ E) to a subspace. It is returned as a {@link LowRankPSD}
 * whose factor is J_Φ (scaled by 1/√m for `'width'`): `[B, m, n]`, or `[B, m, k]` with a subspace.
 * g itself (n × n) is never formed; call `toDense()` for small n (2-D toy data), `trace()`,
 * `eig()`, or {@link volumeElement} for √det g.
 *
 * @param model - a classifier `LayersModel` (the feature layer must lie on the path to the output).
 * @param x - input batch `[B, ...inputShape]`, float32.
 * @param options - see {@link PullbackMetricOptions}.
 * @returns a new {@link LowRankPSD}; the caller owns it and must `dispose()` it.
 * @throws {@link LayerNotFoundError} for an unknown layer; {@link ShapeError} for a bad `x` or
 *   subspace; {@link ValueError} for bad options; otherwise as {@link inputJacobian}.
 *
 * @example
 * ```ts
 * const g = await pullbackMetric(model, x, { normalization: 'width' }); // Φ = the penultimate layer
 * const tr = await g.trace();                                             // tr g per sample
 * g.dispose();
 * ```
 */
export async function pullbackMetric(model: LayersModel, x: tf.Tensor, options: PullbackMetricOptions = {}): Promise<LowRankPSD> {
  const fn = 'pullbackMetric';
  return (await computeMetric(classifierOf(model, checkOptions(options, fn, PULLBACK_METRIC_OPTIONS), fn), x, options, fn)).metric;
}

/** The feature map of the options (default: the layer that feeds the head) and its width. @internal */
export function featureTarget(clf: Classifier, options: PullbackMetricOptions, fn: string): { target: Target; width: number } {
  const target = options.target ?? { layer: defaultFeatureLayer(clf.model, fn) };
  return { target, width: clf.target(target).width };
}

async function computeMetric(clf: Classifier, x: tf.Tensor, options: PullbackMetricOptions, fn: string) {
  await checkBatch(clf, x, fn);
  const { target, width: m } = featureTarget(clf, options, fn);
  const normalization = checkChoice(options.normalization, fn, 'normalization', ['none', 'width'] as const, 'none');
  const strategy = checkChoice(options.strategy, fn, 'strategy', ['auto', 'rows', 'columns'] as const, 'auto');
  const B = x.shape[0] as number;
  const n = clf.inputSize;
  const E = options.subspace === undefined ? undefined : await subspaceBasis(options.subspace, B, clf.inputShape, fn);
  try {
    const k = E === undefined ? n : (E.shape[1] as number);
    const columns = strategy === 'columns' || (strategy === 'auto' && k < m);
    const chunk = linearChunk(clf, target, columns ? k : m, options, fn, columns ? 2 : 1);
    const [factor] = await runChunks(x, chunk, options, (xc, start) => {
      const b = xc.shape[0] as number;
      const lin = linearize(clf, xc, target);
      try {
        return [tf.tidy(() => {
          const Ec = E === undefined ? undefined : tf.reshape(tf.slice(E, start, b), [b, k, n]);
          let A: tf.Tensor;
          if (columns) {
            const dirs = Ec ?? tf.tile(tf.expandDims(tf.eye(n), 0), [b, 1, 1]);
            A = tf.transpose(lin.jvp(dirs), [0, 2, 1]); // [b, m, k]
          } else {
            const J = lin.rows(tf.eye(m) as tf.Tensor2D); // [b, m, n]
            A = Ec === undefined ? J : tf.matMul(J, Ec as tf.Tensor3D, false, true);
          }
          return normalization === 'width' ? tf.mul(A, 1 / Math.sqrt(m)) : A;
        })];
      } finally {
        lin.dispose();
      }
    });
    return { metric: await ownedPSD(factor as tf.Tensor3D, fn), dim: k, target, width: m };
  } catch (e) {
    return rethrowKernelError(e, fn, clf.model);
  } finally {
    E?.dispose();
  }
}

/** What {@link volumeElement} measures. */
export type VolumeMode = 'full' | 'subspace' | 'effective';

/** Options of {@link volumeElement}. */
export interface VolumeElementOptions extends PullbackMetricOptions, RankOptions {
  /**
   * - `'full'`: log √det g of the n × n metric; needs n ≤ m (else g is singular everywhere).
   * - `'subspace'`: log √det g_E of the metric restricted to `subspace` (k ≤ m directions), in the
   *   coordinates u of x = x₀ + E u.
   * - `'effective'`: the reference code's "effective volume element" for high-dimensional inputs,
   *   Σ_{i<k} log σᵢ(J_Φ), the sum over the k largest singular values (½ log of the product of the
   *   top k eigenvalues of g).
   * @defaultValue `'subspace'` when `subspace` is given, else `'full'`
   */
  mode?: VolumeMode;
  /** The number of singular values in `'effective'` mode, 1 ≤ k ≤ min(m, n). @defaultValue min(m, n) */
  k?: number;
  /** The logarithm's base (e, 10, 2…). @defaultValue Math.E */
  base?: number;
}

/** The option names of {@link VolumeElementOptions}. @internal */
export const VOLUME_ELEMENT_OPTIONS: OptionNames<VolumeElementOptions> = { ...PULLBACK_METRIC_OPTIONS, ...RANK_OPTIONS, mode: true, k: true, base: true };

/** The result of {@link volumeElement}. */
export interface VolumeElementResult {
  /**
   * log √det g per sample (in `base`), the sum of the `terms` largest log singular values of the
   * factor. −Infinity where `rank[b] < terms`: g is singular there (to the rank cut `rtol`), and the
   * sum of the singular values below the cut would only measure float32 rounding.
   */
  logVolume: Float64Array;
  /** The numerical rank of g (or g_E) per sample: singular values above `rtol`·σ_max. */
  rank: number[];
  /** The number of singular values summed: n (`'full'`), the subspace dimension, or k. */
  terms: number;
  /** log σᵢ (in `base`) of the factor per sample, descending, all min(m, dim) of them. */
  logSingularValues: Float64Array[];
  /** The feature map Φ. */
  target: Target;
  /** Its width m. */
  width: number;
}

/**
 * The volume element of the pullback metric, as a logarithm: log √det g = Σᵢ log σᵢ(J_Φ) (÷ m^{n/2}
 * with `normalization: 'width'`), never a raw determinant that would under- or overflow. Three
 * modes (see {@link VolumeElementOptions.mode}): the full metric for low-dimensional inputs, the
 * metric restricted to a subspace (e.g. a plane through three images), and the reference code's
 * effective volume (top-k singular values) for images. Singular values are computed in float64
 * from the float32 factor.
 *
 * @param model - a classifier `LayersModel`.
 * @param x - input batch `[B, ...inputShape]`, float32.
 * @param options - see {@link VolumeElementOptions}.
 * @returns plain arrays (no tensors).
 * @throws {@link ValueError} when the mode asks for more singular values than g can have
 *   (n > m in `'full'` mode, k > min(m, n), a subspace of more than m directions), for a
 *   non-positive or unit `base`, or a mode without its subspace; otherwise as {@link pullbackMetric}.
 *
 * @example
 * ```ts
 * const { logVolume, rank } = await volumeElement(model, x, { mode: 'effective', k: 10, base: 10 });
 * ```
 */
export async function volumeElement(model: LayersModel, x: tf.Tensor, options: VolumeElementOptions = {}): Promise<VolumeElementResult> {
  const fn = 'volumeElement';
  return volumeOf(classifierOf(model, checkOptions(options, fn, VOLUME_ELEMENT_OPTIONS), fn), x, options, fn);
}

/** {@link volumeElement} for a wrapped classifier, its errors named after `fn` (a plane scan's too). @internal */
export async function volumeOf(clf: Classifier, x: tf.Tensor, options: VolumeElementOptions, fn: string): Promise<VolumeElementResult> {
  const mode = checkChoice(options.mode, fn, 'mode', ['full', 'subspace', 'effective'] as const, options.subspace === undefined ? 'full' : 'subspace');
  if ((mode === 'subspace') !== (options.subspace !== undefined)) {
    throw new ValueError(mode === 'subspace' ? `${fn}: mode 'subspace' needs options.subspace.` : `${fn}: options.subspace is only used by mode 'subspace'.`);
  }
  const base = checkNumber(options.base, fn, 'base', { above: 0 }, Math.E);
  if (base === 1) throw new ValueError(`${fn}: base must be a positive number other than 1, got 1.`);
  const rtol = checkRtol(options.rtol, fn);
  // Validate what can be validated before any backward pass.
  const { target, width: m } = featureTarget(clf, options, fn);
  const name = clf.target(target).name;
  const n = clf.inputSize;
  if (mode === 'full' && n > m) {
    throw new ValueError(
      `${fn}: the input has n = ${n} dimensions but ${name} only m = ${m} features, so rank g ≤ ${m} < n and ` +
        `√det g = 0 everywhere. Use mode 'effective' (the top k ≤ ${m} singular values) or a subspace.`,
    );
  }
  if (mode === 'subspace') {
    await checkBatch(clf, x, fn);
    const k = await checkSubspace(options.subspace, x.shape[0] as number, clf.inputShape, fn);
    if (k > m) throw new ValueError(`${fn}: the subspace has ${k} directions but ${name} only m = ${m} features; g_E is singular.`);
  }
  let k = n;
  if (mode === 'effective') {
    k = options.k ?? Math.min(m, n);
    if (!(Number.isInteger(k) && k >= 1 && k <= Math.min(m, n))) {
      throw new ValueError(`${fn}: k must be an integer in [1, min(m, n) = ${Math.min(m, n)}], got ${String(options.k)}.`);
    }
  }
  const { metric, dim } = await computeMetric(clf, x, { ...options, target }, fn);
  try {
    const terms = mode === 'effective' ? k : dim;
    const a = await metric.factor.data();
    const per = m * dim;
    const lnBase = Math.log(base);
    const B = metric.batchSize;
    const logVolume = new Float64Array(B);
    const rank: number[] = [];
    const logSingularValues = Array.from({ length: B }, (_, b) => {
      const s = singularValues(a.subarray(b * per, (b + 1) * per), m, dim);
      const cut = rtol * (s[0] ?? 0);
      rank.push(s.filter((v) => v > cut && v > 0).length);
      let sum = 0;
      for (let i = 0; i < terms; i++) sum += Math.log(s[i] as number);
      logVolume[b] = (rank[b] as number) < terms ? -Infinity : sum / lnBase;
      return s.map((v) => Math.log(v) / lnBase);
    });
    return { logVolume, rank, terms, logSingularValues, target, width: m };
  } finally {
    metric.dispose();
  }
}
