/**
 * Per-sample weight cotangents (reverse mode in weight space) as batched products of a layer's
 * saved input with its output cotangents: all K rows of all B samples at once, never one backward
 * pass per (sample, row) as `tf.variableGrads` needs.
 *
 * Layout: output cotangents come row-major, `dy: [K·B, ...]` (see `rule.ts`); a weight's
 * cotangents leave samples first, `[B, K, size]`, flattened in the weight's own row-major order, so
 * that the weights' blocks concatenate along the last axis into rows of the weight Jacobian.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { samplesFirst } from '../rows.js';

/** The per-sample cotangents of a layer's weights, by weight name ('kernel', 'bias', 'gamma', …), each computed only when asked. */
export type WeightGrads = Record<string, () => tf.Tensor3D>;

/** `[K·B, ...]` row-major → `[B, K, size]`. */
export function perSample(t: tf.Tensor, B: number): tf.Tensor3D {
  return samplesFirst(t, (t.shape[0] as number) / B, B);
}

/** The sum over every axis but the first and the last: `[K·B, ..., c]` → `[B, K, c]` (a bias, a BatchNorm β). */
export function channelSums(dy: tf.Tensor, B: number): tf.Tensor3D {
  const c = dy.shape[dy.rank - 1] as number;
  const summed = dy.rank === 2 ? dy : tf.sum(tf.reshape(dy, [dy.shape[0] as number, -1, c]), 1);
  return perSample(summed, B);
}

/**
 * `out[b, k] = L_b R_{k·B+b}` flattened, for `L: [B, p, q]` and row-major `R: [K·B, q, r]`:
 * `[B, K, p·r]`, as 2-D matMuls in a loop (tfjs-wasm's batched matMul runs ~10× slower per flop
 * than its 2-D one, which XNNPACK runs; B and K are small).
 */
function rowProducts(L: tf.Tensor3D, R: tf.Tensor, B: number): tf.Tensor3D {
  const [, p, q] = L.shape;
  const N = R.shape[0] as number;
  const r = R.size / N / q;
  const K = N / B;
  const out: tf.Tensor[] = [];
  for (let b = 0; b < B; b++) {
    const Lb = tf.reshape(tf.slice(L, b, 1), [p, q]) as tf.Tensor2D;
    for (let k = 0; k < K; k++) out.push(tf.reshape(tf.matMul(Lb, tf.reshape(tf.slice(R, k * B + b, 1), [q, r]) as tf.Tensor2D), [1, p * r]));
  }
  return tf.reshape(out.length === 1 ? (out[0] as tf.Tensor) : tf.concat(out), [B, K, p * r]) as tf.Tensor3D;
}

/**
 * A Dense kernel `[n, u]` on input `x: [B, ..., n]` with output cotangents `dz: [K·B, ..., u]`:
 * dW = xᵀ dz per sample and row: for a flat input an outer product, one broadcast multiplication
 * `[B, 1, n, 1] ⊙ [B, K, 1, u]` written in the rows' layout; else a product per (sample, row).
 */
export function denseKernelGrad(x: tf.Tensor, dz: tf.Tensor, B: number): tf.Tensor3D {
  const n = x.shape[x.rank - 1] as number;
  const u = dz.shape[dz.rank - 1] as number;
  const K = (dz.shape[0] as number) / B;
  const T = (x.size / B / n) | 0; // positions the kernel is applied at (1 for a flat input)
  if (T === 1) {
    const g = tf.reshape(perSample(tf.reshape(dz, [K * B, u]), B), [B, K, 1, u]);
    return tf.reshape(tf.mul(tf.reshape(x, [B, 1, n, 1]), g), [B, K, n * u]) as tf.Tensor3D;
  }
  return rowProducts(tf.transpose(tf.reshape(x, [B, T, n]), [0, 2, 1]) as tf.Tensor3D, tf.reshape(dz, [K * B, T, u]), B);
}

/** Where a 2-D convolution reads its input: the geometry of its patches. */
export interface PatchGeometry {
  filter: [number, number];
  strides: [number, number];
  dilations: [number, number];
  padding: 'same' | 'valid';
}

/** One-hot filters `[fh, fw, c, fh·fw·c]` by shape (a few per model, built once). */
const selectors = new Map<string, Float32Array>();

/**
 * Past this many taps (fh·fw·c) the one-hot conv's F² multiply-adds per position (and its F²
 * filter) cost more than slicing: a 3×3 conv over 128 channels and more is sliced.
 */
const MAX_SELECTOR = 1024;

/** {@link patches} by one (strided) slice of the padded input per tap, concatenated. */
function slicedPatches(x: tf.Tensor4D, g: PatchGeometry): tf.Tensor3D {
  const [B, H, W, c] = x.shape;
  const [fh, fw] = g.filter;
  const [sh, sw] = g.strides;
  const [dh, dw] = g.dilations;
  const info = tf.backend_util.computeConv2DInfo([B, H, W, c], [fh, fw, c, 1], g.strides, g.dilations, g.padding);
  const { top, bottom, left, right } = info.padInfo;
  const xp = top + bottom + left + right > 0 ? tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]]) : x;
  const { outHeight: Ho, outWidth: Wo } = info;
  const taps: tf.Tensor[] = [];
  for (let i = 0; i < fh; i++) {
    for (let j = 0; j < fw; j++) {
      const begin = [0, i * dh, j * dw, 0];
      const end = [B, i * dh + (Ho - 1) * sh + 1, j * dw + (Wo - 1) * sw + 1, c];
      taps.push(sh === 1 && sw === 1 ? tf.slice(xp, begin, [B, Ho, Wo, c]) : tf.stridedSlice(xp, begin, end, [1, sh, sw, 1]));
    }
  }
  return tf.reshape(taps.length === 1 ? (taps[0] as tf.Tensor) : tf.concat(taps, 3), [B, Ho * Wo, fh * fw * c]) as tf.Tensor3D;
}

/**
 * The patches a conv reads, `x: [B, H, W, c]` → `[B, Ho·Wo, fh·fw·c]`, the last axis in the
 * filter's row-major order (tap (i, j), then channel): one convolution with the layer's own
 * geometry and a one-hot filter that copies tap (i, j) of channel k to output channel
 * (i·fw + j)·c + k. Exact (each output is one input times 1, plus zeros). On wasm it is faster than
 * a slice per tap and their concatenation (measured on the ResNet-8's 16-channel convs: 6 against
 * 23 ms for 4 samples), since XNNPACK runs the conv and tfjs-wasm's slices and concatenations are
 * plain loops.
 */
export function patches(x: tf.Tensor4D, g: PatchGeometry): tf.Tensor3D {
  const [B, , , c] = x.shape;
  const [fh, fw] = g.filter;
  const F = fh * fw * c;
  if (F > MAX_SELECTOR) return slicedPatches(x, g);
  const key = `${fh},${fw},${c}`;
  let one = selectors.get(key);
  if (one === undefined) {
    one = new Float32Array(F * F);
    for (let t = 0; t < F; t++) one[t * F + t] = 1; // [fh, fw, c] flattened is t, the output channel too
    selectors.set(key, one);
  }
  const P = tf.conv2d(x, tf.tensor4d(one, [fh, fw, c, F]), g.strides, g.padding, 'NHWC', g.dilations);
  return tf.reshape(P, [B, -1, F]) as tf.Tensor3D;
}

/** `[K·B, Ho, Wo, c]` → `[B, Ho·Wo, K, c]` (a sample's rows side by side at each position). */
function positionsFirst(dz: tf.Tensor, B: number): tf.Tensor4D {
  const [N, Ho, Wo, c] = dz.shape as [number, number, number, number];
  return tf.transpose(tf.reshape(dz, [N / B, B, Ho * Wo, c]), [1, 2, 0, 3]) as tf.Tensor4D;
}

/**
 * A Conv2D kernel `[fh, fw, ci, co]` on `x: [B, H, W, ci]` with output cotangents
 * `dz: [K·B, Ho, Wo, co]`: dW_{b,k} = P_bᵀ dz_{k·B+b}, P_b the sample's patches `[Ho·Wo, F]`: a
 * matMul `[F, Ho·Wo] × [Ho·Wo, co]` per sample and row, in the kernel's row-major order.
 */
export function convKernelGrad(x: tf.Tensor4D, dz: tf.Tensor, g: PatchGeometry, B: number): tf.Tensor3D {
  const P = patches(x, g); // [B, HoWo, F]
  return rowProducts(tf.transpose(P, [0, 2, 1]) as tf.Tensor3D, dz, B);
}

/**
 * A DepthwiseConv2D kernel `[fh, fw, ci, m]` (output channel c·m + j) with output cotangents
 * `dz: [K·B, Ho, Wo, ci·m]`: per sample and channel, `[fh·fw, Ho·Wo] × [Ho·Wo, K·m]`.
 */
export function depthwiseKernelGrad(x: tf.Tensor4D, dz: tf.Tensor, g: PatchGeometry, multiplier: number, B: number): tf.Tensor3D {
  const ci = x.shape[3];
  const K = (dz.shape[0] as number) / B;
  const taps = g.filter[0] * g.filter[1];
  const P = patches(x, g); // [B, HoWo, taps·ci]
  const HoWo = P.shape[1];
  const pt = tf.reshape(tf.transpose(tf.reshape(P, [B, HoWo, taps, ci]), [0, 3, 2, 1]), [B * ci, taps, HoWo]);
  // [B, HoWo, K, ci·m] → [B, ci, HoWo, K, m]
  const G = tf.transpose(tf.reshape(positionsFirst(dz, B), [B, HoWo, K, ci, multiplier]), [0, 3, 1, 2, 4]);
  const dW = tf.reshape(tf.matMul(pt, tf.reshape(G, [B * ci, HoWo, K * multiplier]) as tf.Tensor3D), [B, ci, taps, K, multiplier]);
  return tf.reshape(tf.transpose(dW, [0, 3, 2, 1, 4]), [B, K, taps * ci * multiplier]) as tf.Tensor3D;
}

/**
 * A per-sample factor's weight cotangent summed over the positions a weight is shared by: for
 * `dy: [K·B, ...s]` and `f: [B, ...s]`, Σ dy ⊙ f over the axes where the weight's shape `w` is 1
 * and s is not (a BatchNorm's γ: all but the channels; a PReLU's α: its shared axes).
 */
export function sharedSum(dy: tf.Tensor, f: tf.Tensor, w: readonly number[], B: number): tf.Tensor3D {
  const N = dy.shape[0] as number;
  const s = dy.shape.slice(1);
  const prod = tf.mul(tf.reshape(dy, [N / B, B, ...s]), tf.reshape(f, [1, B, ...s]));
  const lead = s.length - w.length; // a γ of shape [c] on [H, W, c]: the leading axes are shared
  const axes = s.map((d, i) => i).filter((i) => i < lead || (w[i - lead] === 1 && s[i] !== 1)).map((i) => i + 2);
  const summed = axes.length > 0 ? tf.sum(prod, axes) : prod;
  return tf.transpose(tf.reshape(summed, [N / B, B, -1]), [1, 0, 2]) as tf.Tensor3D;
}

/**
 * A Conv2DTranspose kernel `[fh, fw, co, ci]` on `x: [B, H, W, ci]` with output cotangents
 * `dz: [K·B, Ho, Wo, co]`: the layer is the transpose of the conv `dz ↦ conv2d(dz, W)`, so
 * ⟨dz, convᵀ(x, W)⟩ = ⟨conv2d(dz, W), x⟩ and dW is that conv's kernel cotangent with the roles
 * swapped, P(dz_kb)ᵀ x_b: patches of each row's cotangent against the sample's input.
 */
export function transposedConvKernelGrad(x: tf.Tensor4D, dz: tf.Tensor4D, g: PatchGeometry, B: number): tf.Tensor3D {
  const N = dz.shape[0];
  const K = N / B;
  const ci = x.shape[3];
  const P = patches(dz, g); // [K·B, H·W, F]
  const F = P.shape[2];
  const xs = tf.reshape(K === 1 ? x : tf.tile(x, [K, 1, 1, 1]), [N, -1, ci]); // row-major like dz
  const dW = tf.matMul(tf.transpose(P, [0, 2, 1]), xs as tf.Tensor3D); // [K·B, F, ci]
  return perSample(tf.reshape(dW, [N, F * ci]), B);
}
