/**
 * Batched vector products with the input Jacobian: VJP (output cotangent → input) and JVP (input
 * tangent → output). They cost one (VJP) or about two (JVP) backward passes, where a full Jacobian
 * costs one per output row.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { fmtShape, ShapeError, UnsupportedModelError, ValueError } from '../errors.js';
import { assertFinite, checkBatch, wrapClassifier } from '../model/classifier.js';
import type { ClassifierOptions, Target } from '../model/classifier.js';
import { assertDifferentiable, firstOrderOnlyLayer, rethrowKernelError } from '../model/support.js';
import { budgetBytes, bytesPerSamplePass, runChunks } from './chunks.js';
import type { RunOptions } from './chunks.js';

/** Options of {@link vjp}. */
export interface VjpOptions extends ClassifierOptions, RunOptions {
  /** What to differentiate (see {@link InputJacobianOptions.target}). @defaultValue `'logProbs'` */
  target?: Target;
}

/**
 * Vector-Jacobian products, one per sample: out[b] = Σⱼ u[b, j] ∂f_j(x_b)/∂x_b.
 *
 * @param model - a classifier `LayersModel`.
 * @param x - input batch `[B, ...inputShape]`, float32.
 * @param cotangent - `[B, m]`, with m = C for log-probabilities and logits, or the layer's width.
 * @returns `[B, ...inputShape]`, owned by the caller.
 * @throws {@link ShapeError} if `cotangent` is not `[B, m]`; otherwise as {@link inputJacobian}.
 *
 * @example
 * ```ts
 * const u = tf.oneHot(labels, 10).toFloat();   // ∇ log p_label for each sample
 * const g = await vjp(model, x, u);             // [B, 28, 28, 1]
 * ```
 */
export async function vjp(model: LayersModel, x: tf.Tensor, cotangent: tf.Tensor, options: VjpOptions = {}): Promise<tf.Tensor> {
  const fn = 'vjp';
  const clf = wrapClassifier(model, options, fn);
  checkBatch(clf, x, fn);
  const { fn: f, width } = clf.target(options.target ?? 'logProbs');
  const B = x.shape[0] as number;
  if (!(cotangent instanceof tf.Tensor) || cotangent.rank !== 2 || cotangent.shape[0] !== B || cotangent.shape[1] !== width) {
    throw new ShapeError(
      `${fn}: argument 'cotangent' must have shape [${B},${width}], got ${cotangent instanceof tf.Tensor ? fmtShape(cotangent.shape) : typeof cotangent}.`,
    );
  }
  assertFinite(cotangent, fn, 'cotangent');
  const chunk = Math.max(1, Math.floor(budgetBytes(options, fn) / bytesPerSamplePass(model)));
  assertDifferentiable(model, 'input', fn);
  const grad = tf.grad((z: tf.Tensor) => f(z));
  try {
    const [g] = await runChunks(x, chunk, options, (xc, start) =>
      tf.tidy(() => [grad(xc, tf.slice(cotangent, [start, 0], [xc.shape[0] as number, width]))]),
    );
    return g as tf.Tensor;
  } catch (e) {
    return rethrowKernelError(e, fn);
  }
}

/** How {@link jvp} computes J·v. */
export type JvpMethod = 'auto' | 'double-vjp' | 'central';

/** Options of {@link jvp}. */
export interface JvpOptions extends VjpOptions {
  /**
   * - `'double-vjp'`: exact. tfjs has no forward mode, so J v is computed as the gradient with
   *   respect to u of ⟨Jᵀu, v⟩ (a backward pass differentiated once more). Needs second-order
   *   gradients of every op; tfjs 4.22 has none for `MaxPoolGrad` and `AvgPoolGrad`.
   * - `'central'`: (f(x + h v̂) − f(x − h v̂)) ‖v‖ / 2h with v̂ = v/‖v‖ and
   *   h = `eps`·max(1, ‖x_b‖), per sample. Two forward passes. In float32 the error is about
   *   0.1 % of ‖J‖ (ReLU kinks within h cost O(h), rounding O(ε/h); the default step is where
   *   the two meet on MNIST-scale inputs), more for directions that J barely sees.
   * - `'auto'`: `'double-vjp'`, or `'central'` for models with max- or average-pooling layers.
   * @defaultValue `'auto'`
   */
  method?: JvpMethod;
  /** Relative step of `'central'`. @defaultValue 1e-4 */
  eps?: number;
}

function jvpDoubleVjp(f: (x: tf.Tensor) => tf.Tensor2D, x: tf.Tensor, v: tf.Tensor, width: number): tf.Tensor2D {
  const b = x.shape[0] as number;
  const inner = tf.grad((z: tf.Tensor) => f(z));
  const outer = tf.grad((u: tf.Tensor) => tf.sum(tf.mul(inner(x, u), v)));
  return outer(tf.zeros([b, width])) as tf.Tensor2D;
}

function jvpCentral(f: (x: tf.Tensor) => tf.Tensor2D, x: tf.Tensor, v: tf.Tensor, eps: number): tf.Tensor2D {
  const b = x.shape[0] as number;
  const bcast = [b, ...x.shape.slice(1).map(() => 1)];
  const flat = (t: tf.Tensor) => tf.reshape(t, [b, -1]);
  const vNorm = tf.norm(flat(v), 'euclidean', 1); // [b]
  const h = tf.mul(eps, tf.maximum(tf.norm(flat(x), 'euclidean', 1), 1)); // [b]
  const safe = tf.maximum(vNorm, 1e-30);
  const step = tf.mul(v, tf.reshape(tf.div(h, safe), bcast));
  const diff = tf.sub(f(tf.add(x, step)), f(tf.sub(x, step))); // [b, m]
  return tf.mul(diff, tf.expandDims(tf.div(vNorm, tf.mul(2, h)), 1)) as tf.Tensor2D;
}

/**
 * Jacobian-vector products, one or k per sample: out[b] = ∂f(x_b)/∂x_b · v[b].
 *
 * @param model - a classifier `LayersModel`.
 * @param x - input batch `[B, ...inputShape]`, float32.
 * @param tangent - `[B, ...inputShape]` (one direction per sample) or `[B, k, ...inputShape]`
 *   (k directions per sample, e.g. the two axes of a plane).
 * @returns `[B, m]` or `[B, k, m]`, owned by the caller (m = C, or the layer's width).
 * @throws {@link ShapeError} for a tangent of the wrong shape; {@link ValueError} for a bad `eps`
 *   or `method`; otherwise as {@link inputJacobian}.
 *
 * @example
 * ```ts
 * const dir = tf.randomNormal(x.shape);
 * const Jv = await jvp(model, x, dir, { target: { layer: 'dense_1' } }); // [B, 128]
 * ```
 */
export async function jvp(model: LayersModel, x: tf.Tensor, tangent: tf.Tensor, options: JvpOptions = {}): Promise<tf.Tensor> {
  const fn = 'jvp';
  const clf = wrapClassifier(model, options, fn);
  checkBatch(clf, x, fn);
  const { fn: f, width } = clf.target(options.target ?? 'logProbs');
  const B = x.shape[0] as number;
  const inShape = clf.inputShape;
  const ok = (extra: number[]) =>
    tangent instanceof tf.Tensor &&
    tangent.rank === inShape.length + 1 + extra.length &&
    tangent.shape[0] === B &&
    tangent.shape.slice(1 + extra.length).every((d, i) => d === inShape[i]);
  const k = tangent instanceof tf.Tensor && tangent.rank === inShape.length + 2 ? (tangent.shape[1] as number) : 0;
  if (!(ok([]) || (k > 0 && ok([k])))) {
    throw new ShapeError(
      `${fn}: argument 'tangent' must have shape ${fmtShape([B, ...inShape])} or ${fmtShape([B, null, ...inShape])}, ` +
        `got ${tangent instanceof tf.Tensor ? fmtShape(tangent.shape) : typeof tangent}.`,
    );
  }
  if (tangent.dtype !== 'float32') throw new ShapeError(`${fn}: argument 'tangent' must be float32, got ${tangent.dtype}.`);
  assertFinite(tangent, fn, 'tangent');
  const method = options.method ?? 'auto';
  if (!['auto', 'double-vjp', 'central'].includes(method)) {
    throw new ValueError(`${fn}: method must be 'auto', 'double-vjp' or 'central'; got '${String(method)}'.`);
  }
  const eps = options.eps ?? 1e-4;
  if (!(Number.isFinite(eps) && eps > 0)) throw new ValueError(`${fn}: eps must be a positive number, got ${String(eps)}.`);
  const reps = Math.max(k, 1);
  const chunk = Math.max(1, Math.floor(budgetBytes(options, fn) / (3 * reps * bytesPerSamplePass(model))));
  assertDifferentiable(model, 'input', fn);

  const blocker = firstOrderOnlyLayer(model);
  if (method === 'double-vjp' && blocker !== undefined) {
    throw new UnsupportedModelError(
      `${fn}: method 'double-vjp' differentiates the backward pass, and tfjs has no gradient for ${blocker.op}, ` +
        `which layer '${blocker.name}' (${blocker.className}) runs in it. Use method 'central' or 'auto'.`,
    );
  }
  const resolved = method === 'auto' ? (blocker === undefined ? 'double-vjp' : 'central') : method;
  try {
    const [out] = await runChunks(x, chunk, options, (xc, start) => tf.tidy(() => {
      const b = xc.shape[0] as number;
      // Tile the k directions into the batch: [k·b, ...], direction-major.
      const tc = tf.slice(tangent, start, b);
      const v = k > 0 ? tf.reshape(tf.transpose(tc, [1, 0, ...inShape.map((_, i) => i + 2)]), [k * b, ...inShape]) : tc;
      const xt = k > 0 ? tf.tile(xc, [k, ...inShape.map(() => 1)]) : xc;
      const jv = resolved === 'double-vjp' ? jvpDoubleVjp(f, xt, v, width) : jvpCentral(f, xt, v, eps);
      return [k > 0 ? tf.transpose(tf.reshape(jv, [k, b, width]), [1, 0, 2]) : jv];
    }));
    return out as tf.Tensor;
  } catch (e) {
    return rethrowKernelError(e, fn);
  }
}
