/**
 * Rows of vector-Jacobian products over a batch with `tf.grad` (the strategies that infogeo's own
 * reverse mode, `graph.ts`, falls back to), the row-major layout both use, and the exact softmax
 * chain rule that turns C−1 logit rows into the C log-probability rows.
 *
 * tfjs has no vmap, no forward mode and no tape reuse: each `tf.grad` call runs the forward pass
 * again, so a Jacobian with R rows costs R backward passes (or fewer, larger ones when rows are
 * tiled into the batch). Everything here is synchronous and meant to run inside `tf.tidy`.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { otherClass } from '../linalg/rows.js';

/**
 * Cotangent rows `U: [R, m]` for a batch of b samples, laid out row-major: `[R·b, m]`, with row
 * r·b + i equal to U[r]. A backward pass over them gives `[R·b, ...]`, which
 * {@link samplesFirst} turns back into `[b, R, n]`.
 */
export function tileRows(U: tf.Tensor2D, b: number): tf.Tensor2D {
  const [R, m] = U.shape;
  return tf.reshape(tf.tile(tf.expandDims(U, 1), [1, b, 1]), [R * b, m]);
}

/** Per-sample vectors `[b, R, n]` as row-major rows `[R·b, n]` (`[b, n]` as they are): the inverse of {@link samplesFirst}. */
export function rowMajor(t: tf.Tensor): tf.Tensor2D {
  return t.rank === 2 ? (t as tf.Tensor2D) : (tf.reshape(tf.transpose(t, [1, 0, 2]), [-1, t.shape[2] as number]) as tf.Tensor2D);
}

/** `[R·b, ...]` (row-major, as {@link tileRows}) → `[b, R, n]`, n the per-row size. */
export function samplesFirst(t: tf.Tensor, R: number, b: number): tf.Tensor3D {
  return tf.transpose(tf.reshape(t, [R, b, -1]), [1, 0, 2]) as tf.Tensor3D;
}

/**
 * Rows of vector-Jacobian products. For `f: [b, ...in] → [b, m]` and cotangent rows `U: [R, m]`,
 * returns `J: [b, R, ...in]` with `J[i, r] = Σⱼ U[r, j] ∂f(x)[i, j]/∂x[i]`.
 *
 * Rows are processed `rowsPerPass` at a time: each group is one backward pass over the batch tiled
 * `rowsPerPass` times (1 = a plain loop over rows; R = the whole Jacobian in one pass).
 */
export function vjpRows(f: (x: tf.Tensor) => tf.Tensor2D, x: tf.Tensor, U: tf.Tensor2D, rowsPerPass: number): tf.Tensor {
  return tf.tidy(() => {
    const b = x.shape[0] as number;
    const inShape = x.shape.slice(1);
    const n = inShape.reduce((a, d) => a * d, 1);
    const [R, m] = U.shape;
    const grad = tf.grad((z: tf.Tensor) => f(z));
    const blocks: tf.Tensor[] = [];
    for (let r0 = 0; r0 < R; r0 += rowsPerPass) {
      const k = Math.min(rowsPerPass, R - r0);
      blocks.push(
        tf.tidy(() => {
          const dy = tileRows(tf.slice(U, [r0, 0], [k, m]), b);
          const xt = k === 1 ? x : tf.tile(x, [k, ...inShape.map(() => 1)]);
          return tf.reshape(grad(xt, dy), [k, b, n]);
        }),
      );
    }
    const all = blocks.length === 1 ? (blocks[0] as tf.Tensor) : tf.concat(blocks, 0); // [R, b, n]
    return tf.reshape(samplesFirst(all, R, b), [b, R, ...inShape]);
  });
}

/** Cotangent rows e_c − e_{C−1}, c = 0..C−2: shape `[C−1, C]`. */
export function logitDifferenceRows(C: number): tf.Tensor2D {
  return tf.tidy(() => {
    const eye = tf.eye(C - 1, C);
    const lastCol = tf.concat([tf.zeros([C - 1, C - 1]), tf.fill([C - 1, 1], -1)], 1);
    return tf.add(eye, lastCol) as tf.Tensor2D;
  });
}

/**
 * Each sample's reference class for logit differences: its arg-max class (the first of equal
 * maxima). Against it, the probabilities of the other classes never approach 1, so the covariance
 * diag p′ − p′p′ᵀ of the differences has no p(1 − p) to cancel when the prediction saturates.
 */
export function referenceClasses(logits: ArrayLike<number>, B: number, C: number): Int32Array {
  const k = new Int32Array(B);
  for (let b = 0; b < B; b++) {
    let best = 0;
    for (let c = 1; c < C; c++) if ((logits[b * C + c] as number) > (logits[b * C + best] as number)) best = c;
    k[b] = best;
  }
  return k;
}

/**
 * Per-sample cotangent rows e_c − e_{k_b} for the C − 1 classes c ≠ k_b (in the order of
 * {@link otherClass}): `[B, C−1, C]`, or only rows `from` to `from + count − 1` of them.
 */
export function referenceDifferenceRows(reference: Int32Array, C: number, from = 0, count = C - 1): tf.Tensor3D {
  const B = reference.length;
  const U = new Float32Array(B * count * C);
  for (let b = 0; b < B; b++) {
    const k = reference[b] as number;
    for (let j = 0; j < count; j++) {
      const row = (b * count + j) * C;
      U[row + otherClass(from + j, k)] = 1;
      U[row + k] = -1;
    }
  }
  return tf.tensor3d(U, [B, count, C]);
}

/**
 * The exact softmax chain rule. Given `D: [b, C−1, ...rest]` with `D[i, c] = ∇s_c − ∇s_{C−1}`
 * (rows for the cotangents of {@link logitDifferenceRows}) and probabilities `p: [b, C]`, returns
 * the log-probability Jacobian `[b, C, ...rest]`:
 *
 *   ∇log p_i = ∇s_i − Σ_k p_k ∇s_k = D_i − Σ_{k<C−1} p_k D_k   (with D_{C−1} = 0),
 *
 * exact because Σ_k p_k = 1 (the ∇s_{C−1} terms cancel).
 */
export function softmaxChain(D: tf.Tensor, p: tf.Tensor2D): tf.Tensor {
  return tf.tidy(() => {
    const b = D.shape[0] as number;
    const Cm1 = D.shape[1] as number;
    const rest = D.shape.slice(2);
    const n = rest.reduce((a, d) => a * d, 1);
    const Df = tf.reshape(D, [b, Cm1, n]) as tf.Tensor3D;
    const pHead = tf.reshape(tf.slice(p, [0, 0], [b, Cm1]), [b, 1, Cm1]) as tf.Tensor3D;
    const mean = tf.matMul(pHead, Df); // [b, 1, n]
    const full = tf.concat([Df, tf.zeros([b, 1, n])], 1); // [b, C, n]
    return tf.reshape(tf.sub(full, mean), [b, Cm1 + 1, ...rest]);
  });
}
