/**
 * Batched vector products with the input Jacobian: VJP (output cotangent → input, reverse mode) and
 * JVP (input tangent → output, forward mode), from one linearisation of the target per chunk.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { checkChoice, checkNumber, checkOptions, checkTensor } from '../checks.js';
import { fmtShape, ShapeError, UnsupportedModelError } from '../errors.js';
import { assertFinite, checkBatch, CLASSIFIER_OPTIONS, classifierOf } from '../model/classifier.js';
import type { ClassifierOptions, Target } from '../model/classifier.js';
import { rethrowKernelError } from '../model/support.js';
import { budgetFor, bytesPerSamplePass, RUN_OPTIONS, runChunks } from './chunks.js';
import type { RunOptions } from './chunks.js';
import { centralDifference, graphFor, linearChunk, linearize } from './linearize.js';
import type { OptionNames } from '../checks.js';

/** Options of {@link vjp}. */
export interface VjpOptions extends ClassifierOptions, RunOptions {
  /** What to differentiate (see {@link InputJacobianOptions.target}). @defaultValue `'logProbs'` */
  target?: Target;
}

/** The option names of {@link VjpOptions}. @internal */
export const VJP_OPTIONS: OptionNames<VjpOptions> = { ...CLASSIFIER_OPTIONS, ...RUN_OPTIONS, target: true };

/**
 * Vector-Jacobian products, one per sample: out[b] = Σⱼ u[b, j] ∂f_j(x_b)/∂x_b (reverse mode: one
 * backward pass per chunk).
 *
 * @param model - a classifier `LayersModel`.
 * @param x - input batch `[B, ...inputShape]`, float32.
 * @param cotangent - `[B, m]`, float32, with m = C for log-probabilities and logits, or the layer's width.
 * @returns `[B, ...inputShape]`, owned by the caller.
 * @throws {@link ShapeError} if `cotangent` is not a float32 `[B, m]`; otherwise as {@link inputJacobian}.
 *
 * @example
 * ```ts
 * const u = tf.cast(tf.oneHot(labels, 10), 'float32'); // ∇ log p_label for each sample
 * const g = await vjp(model, x, u);                    // [B, 28, 28, 1]
 * ```
 */
export async function vjp(model: LayersModel, x: tf.Tensor, cotangent: tf.Tensor, options: VjpOptions = {}): Promise<tf.Tensor> {
  const fn = 'vjp';
  const clf = classifierOf(model, checkOptions(options, fn, VJP_OPTIONS), fn);
  await checkBatch(clf, x, fn);
  const target = options.target ?? 'logProbs';
  const { width } = clf.target(target);
  const B = x.shape[0] as number;
  checkTensor(cotangent, fn, 'cotangent');
  if (cotangent.rank !== 2 || cotangent.shape[0] !== B || cotangent.shape[1] !== width) {
    throw new ShapeError(
      `${fn}: argument 'cotangent' must have shape [${B},${width}], got ${cotangent instanceof tf.Tensor ? fmtShape(cotangent.shape) : typeof cotangent}.`,
    );
  }
  if (cotangent.dtype !== 'float32') throw new ShapeError(`${fn}: argument 'cotangent' must be float32, got ${cotangent.dtype}.`);
  await assertFinite(cotangent, fn, 'cotangent');
  const chunk = linearChunk(clf, target, 1, options, fn);
  try {
    const [g] = await runChunks(x, chunk, options, (xc, start) => {
      const lin = linearize(clf, xc, target);
      try {
        return [tf.tidy(() => tf.reshape(lin.vjp(tf.slice(cotangent, [start, 0], [xc.shape[0] as number, width])), xc.shape))];
      } finally {
        lin.dispose();
      }
    });
    return g as tf.Tensor;
  } catch (e) {
    return rethrowKernelError(e, fn, clf.model);
  }
}

/**
 * Checks tangents for `B` samples: `[B, ...inputShape]` (one per sample) or `[B, k, ...inputShape]`
 * (k per sample), float32 and finite. Returns k (0 for one per sample).
 */
async function checkTangents(t: unknown, B: number, inShape: readonly number[], fn: string, name: string): Promise<number> {
  checkTensor(t, fn, name);
  const k = t.rank === inShape.length + 2 ? (t.shape[1] as number) : 0;
  const extra = t.rank - 1 - inShape.length;
  const fits = t.shape[0] === B && (extra === 0 || (extra === 1 && k > 0)) && t.shape.slice(1 + extra).every((d, i) => d === inShape[i]);
  if (!fits) throw new ShapeError(`${fn}: argument '${name}' must have shape ${fmtShape([B, ...inShape])} or ${fmtShape([B, null, ...inShape])}, got ${fmtShape(t.shape)}.`);
  if (t.dtype !== 'float32') throw new ShapeError(`${fn}: argument '${name}' must be float32, got ${t.dtype}.`);
  await assertFinite(t, fn, name);
  return k;
}

/** How {@link jvp} computes J·v. */
export type JvpStrategy = 'auto' | 'central';

/** Options of {@link jvp}. */
export interface JvpOptions extends VjpOptions {
  /**
   * - `'auto'`: exact forward mode — the tangents go through the same forward kernels as x (a conv
   *   of the tangent, the ReLU's mask, a max pool's forward argmax, φ'(z)·ż). For a model with a
   *   layer infogeo's graph does not cover, `tf.grad` of a `tf.grad` (exact), or central
   *   differences where tfjs has no second-order gradient (max and average pooling).
   * - `'central'`: (f(x + h v̂) − f(x − h v̂)) ‖v‖ / 2h with v̂ = v/‖v‖ and
   *   h = `eps`·max(1, ‖x_b‖), per sample: two forward passes, an independent check of the exact
   *   answer. In float32 the error is about 0.1–1 % of ‖J‖ (ReLU kinks and pooling ties within h
   *   cost O(h), rounding O(ε/h)), more for directions that J barely sees.
   * @defaultValue `'auto'`
   */
  strategy?: JvpStrategy;
  /** Relative step of `'central'`. @defaultValue 1e-4 */
  eps?: number;
}

/** The option names of {@link JvpOptions}. @internal */
export const JVP_OPTIONS: OptionNames<JvpOptions> = { ...VJP_OPTIONS, strategy: true, eps: true };

/**
 * Jacobian-vector products, one or k per sample: out[b] = ∂f(x_b)/∂x_b · v[b] (forward mode: one
 * pass of all k tangents per chunk, after the forward pass).
 *
 * @param model - a classifier `LayersModel`.
 * @param x - input batch `[B, ...inputShape]`, float32.
 * @param tangent - `[B, ...inputShape]` (one direction per sample) or `[B, k, ...inputShape]`
 *   (k directions per sample, e.g. the two axes of a plane).
 * @returns `[B, m]` or `[B, k, m]`, owned by the caller (m = C, or the layer's width).
 * @throws {@link ShapeError} for a tangent of the wrong shape; {@link ValueError} for a bad `eps`
 *   or `strategy`; otherwise as {@link inputJacobian}.
 *
 * @example
 * ```ts
 * const dir = tf.randomNormal(x.shape);
 * const Jv = await jvp(model, x, dir, { target: { layer: 'dense_1' } }); // [B, 128]
 * ```
 */
export async function jvp(model: LayersModel, x: tf.Tensor, tangent: tf.Tensor, options: JvpOptions = {}): Promise<tf.Tensor> {
  const fn = 'jvp';
  const clf = classifierOf(model, checkOptions(options, fn, JVP_OPTIONS), fn);
  await checkBatch(clf, x, fn);
  const target = options.target ?? 'logProbs';
  const { fn: f, width } = clf.target(target);
  const B = x.shape[0] as number;
  const inShape = clf.inputShape;
  const k = await checkTangents(tangent, B, inShape, fn, 'tangent');
  const strategy = checkChoice(options.strategy, fn, 'strategy', ['auto', 'central'] as const, 'auto');
  const eps = checkNumber(options.eps, fn, 'eps', { above: 0 }, 1e-4);
  const reps = Math.max(k, 1);
  const n = clf.inputSize;
  // Central differences need no gradient: two forward passes of the k directions tiled in.
  const centralUnit = 2 * reps * bytesPerSamplePass(model);
  const chunk = strategy === 'central' ? Math.max(1, Math.floor(budgetFor(options, fn, centralUnit, "one sample's forward passes of the central differences") / centralUnit)) : linearChunk(clf, target, reps, options, fn, 2);
  try {
    const [out] = await runChunks(x, chunk, options, (xc, start) => {
      const b = xc.shape[0] as number;
      const tc = tf.slice(tangent, start, b);
      try {
        if (strategy === 'central') {
          return [tf.tidy(() => {
            // The k directions tiled into the batch: [k·b, ...], direction-major.
            const v = k > 0 ? tf.reshape(tf.transpose(tc, [1, 0, ...inShape.map((_, i) => i + 2)]), [k * b, ...inShape]) : tc;
            const xt = k > 0 ? tf.tile(xc, [k, ...inShape.map(() => 1)]) : xc;
            const jv = centralDifference(f, xt, v, eps);
            return k > 0 ? tf.transpose(tf.reshape(jv, [k, b, width]), [1, 0, 2]) : jv;
          })];
        }
        const lin = linearize(clf, xc, target);
        try {
          return [tf.tidy(() => lin.jvp(tf.reshape(tc, k > 0 ? [b, k, n] : [b, n])))];
        } finally {
          lin.dispose();
        }
      } finally {
        tc.dispose();
      }
    });
    return out as tf.Tensor;
  } catch (e) {
    return rethrowKernelError(e, fn, clf.model);
  }
}

/** Options of {@link secondDerivative}. */
export interface SecondDerivativeOptions extends ClassifierOptions, RunOptions {
  /** What to differentiate (see {@link InputJacobianOptions.target}). @defaultValue `'logProbs'` */
  target?: Target;
}

/** The option names of {@link SecondDerivativeOptions}. @internal */
export const SECOND_DERIVATIVE_OPTIONS: OptionNames<SecondDerivativeOptions> = { ...CLASSIFIER_OPTIONS, ...RUN_OPTIONS, target: true };

/**
 * Second directional derivatives, one or k per sample: out[b] = ∂²f(x_b)[u_b, v_b] =
 * Σᵢⱼ ∂²f/∂xᵢ∂xⱼ u_i v_j (the Hessian of each output on the pair, without forming a Hessian). Exact
 * second-order forward mode: one pass of the jets (f', f'', per layer: φ'(z)·ż and
 * φ''(z)·ż_u·ż_v + φ'(z)·z̈) after the forward pass. Zero through layers that are linear or
 * piecewise linear (ReLU, max pooling), except at their kinks, where it is not defined.
 *
 * @param model - a classifier `LayersModel` covered by infogeo's graph.
 * @param x - input batch `[B, ...inputShape]`, float32.
 * @param u - `[B, ...inputShape]` or `[B, k, ...inputShape]`.
 * @param v - the same shape as `u`.
 * @returns `[B, m]` or `[B, k, m]`, owned by the caller (m = C, or the layer's width).
 * @throws {@link ShapeError} for tangents of the wrong shapes; {@link UnsupportedModelError} for a
 *   layer infogeo's graph does not cover (tfjs's own second-order gradients are wrong for several
 *   ops, so there is no fallback); otherwise as {@link inputJacobian}.
 *
 * @example
 * ```ts
 * const u = tf.randomNormal(x.shape);
 * const d2 = await secondDerivative(model, x, u, u, { target: { layer: 'hidden' } }); // ∂²Φ[u, u], [B, width]
 * ```
 */
export async function secondDerivative(model: LayersModel, x: tf.Tensor, u: tf.Tensor, v: tf.Tensor, options: SecondDerivativeOptions = {}): Promise<tf.Tensor> {
  const fn = 'secondDerivative';
  const clf = classifierOf(model, checkOptions(options, fn, SECOND_DERIVATIVE_OPTIONS), fn);
  await checkBatch(clf, x, fn);
  const target = options.target ?? 'logProbs';
  const { width } = clf.target(target);
  const B = x.shape[0] as number;
  const inShape = clf.inputShape;
  const k = await checkTangents(u, B, inShape, fn, 'u');
  checkTensor(v, fn, 'v');
  if (v.rank !== u.rank || v.shape.some((d, i) => d !== u.shape[i])) throw new ShapeError(`${fn}: argument 'v' must have the shape of 'u', ${fmtShape(u.shape)}, got ${fmtShape(v.shape)}.`);
  await checkTangents(v, B, inShape, fn, 'v');
  const graph = graphFor(clf, target);
  if ('reason' in graph) throw new UnsupportedModelError(`${fn}: second derivatives come from infogeo's own graph, which does not cover ${graph.reason}.`);
  const reps = Math.max(k, 1);
  const n = clf.inputSize;
  const chunk = linearChunk(clf, target, 3 * reps, options, fn, 1, true);
  try {
    const [out] = await runChunks(x, chunk, options, (xc, start) => {
      const b = xc.shape[0] as number;
      const lin = linearize(clf, xc, target, true);
      try {
        return [tf.tidy(() => {
          const pair = (t: tf.Tensor) => tf.reshape(tf.slice(t, start, b), [b, reps, n]) as tf.Tensor3D;
          const r = lin.jet(pair(u), pair(v));
          return k > 0 ? r.uv : tf.reshape(r.uv, [b, width]);
        })];
      } finally {
        lin.dispose();
      }
    });
    return out as tf.Tensor;
  } catch (e) {
    return rethrowKernelError(e, fn, clf.model);
  }
}
