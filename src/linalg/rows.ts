/**
 * Float64 helpers for a few long rows (a C × n Jacobian, a factor of rank ≤ C): orthonormal bases
 * by twice-iterated modified Gram–Schmidt with a relative rank cut, and the small symmetric
 * eigenproblem behind the nonzero eigenpairs of AᵀA. Nothing here forms an n × n matrix.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';

/**
 * Default relative rank cut for factors computed in float32: a row whose component outside the
 * span of the earlier rows is at most `rtol` times the largest row norm counts as dependent.
 * float32 rounding perturbs computed rows by ~1e-7 of their norm; 1e-5 keeps two orders of
 * magnitude of margin, and directions that small are indistinguishable from rounding anyway.
 * (Factors should not contain rows that are dependent only up to rounding with large
 * coefficients; see localDataMatrix for why its factor has C − 1 rows.)
 */
export const DEFAULT_RTOL = 1e-5;

/** An orthonormal basis (rows, float64) of the span of some rows. */
export interface RowBasis64 {
  /** `rank × n`, row-major; row i is unit-norm and orthogonal to the others. */
  q: Float64Array;
  /** The dimension of the span. */
  rank: number;
  /** The length of each row. */
  n: number;
}

export function dot(a: ArrayLike<number>, aOff: number, b: ArrayLike<number>, bOff: number, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += (a[aOff + i] as number) * (b[bOff + i] as number);
  return s;
}

/**
 * An orthonormal basis of the span of `r` rows of length `n` (row-major in `rows`): modified
 * Gram–Schmidt run twice per row ("twice is enough": orthogonality to ~1e-15 whatever the
 * conditioning), in float64, keeping a row only if what is left of it exceeds `rtol` times the
 * largest row norm. Never assumes full rank; costs about 2·r²·n flops.
 */
export function orthonormalRows(rows: ArrayLike<number>, r: number, n: number, rtol = DEFAULT_RTOL): RowBasis64 {
  let maxNorm = 0;
  for (let i = 0; i < r; i++) maxNorm = Math.max(maxNorm, Math.sqrt(dot(rows, i * n, rows, i * n, n)));
  const q = new Float64Array(r * n);
  let rank = 0;
  if (maxNorm === 0) return { q: q.subarray(0, 0), rank, n };
  const cut = rtol * maxNorm;
  const v = new Float64Array(n);
  for (let i = 0; i < r; i++) {
    for (let t = 0; t < n; t++) v[t] = rows[i * n + t] as number;
    for (let pass = 0; pass < 2; pass++) {
      for (let j = 0; j < rank; j++) {
        const d = dot(q, j * n, v, 0, n);
        for (let t = 0; t < n; t++) v[t] = (v[t] as number) - d * (q[j * n + t] as number);
      }
    }
    const norm = Math.sqrt(dot(v, 0, v, 0, n));
    if (norm > cut) {
      for (let t = 0; t < n; t++) q[rank * n + t] = (v[t] as number) / norm;
      rank++;
    }
  }
  return { q: q.slice(0, rank * n), rank, n };
}

/**
 * Nonzero eigenpairs of M = AᵀA for A (`r × n`, row-major) whose row space has the orthonormal
 * basis `basis`: with R = A Qᵀ (r × k), M = Qᵀ (RᵀR) Q, so the eigenvalues are those of the k × k
 * matrix RᵀR (float64, symmetric EVD) and the eigenvectors are Qᵀ U. Returns the eigenvalues in
 * descending order and the eigenvectors as rows (`k × n`).
 */
export function eigFromBasis(a: ArrayLike<number>, r: number, basis: RowBasis64): { values: Float64Array; vectors: Float64Array } {
  const { q, rank: k, n } = basis;
  if (k === 0) return { values: new Float64Array(0), vectors: new Float64Array(0) };
  const R = new Float64Array(r * k);
  for (let i = 0; i < r; i++) for (let j = 0; j < k; j++) R[i * k + j] = dot(a, i * n, q, j * n, n);
  const small = new Matrix(k, k);
  for (let i = 0; i < k; i++)
    for (let j = i; j < k; j++) {
      let s = 0;
      for (let t = 0; t < r; t++) s += (R[t * k + i] as number) * (R[t * k + j] as number);
      small.set(i, j, s);
      small.set(j, i, s);
    }
  const evd = new EigenvalueDecomposition(small, { assumeSymmetric: true });
  const order = evd.realEigenvalues.map((v, i) => [v, i] as const).sort((x, y) => y[0] - x[0]);
  const values = Float64Array.from(order, ([v]) => Math.max(v, 0));
  const U = evd.eigenvectorMatrix;
  const vectors = new Float64Array(k * n);
  order.forEach(([, col], m) => {
    for (let j = 0; j < k; j++) {
      const u = U.get(j, col);
      for (let t = 0; t < n; t++) vectors[m * n + t] = (vectors[m * n + t] as number) + u * (q[j * n + t] as number);
    }
  });
  return { values, vectors };
}

/**
 * The class of row j of the logit differences against reference class k: the classes other than k
 * in increasing order. The rows, their covariance and every trace built on them use this order.
 */
export function otherClass(j: number, k: number): number {
  return j < k ? j : j + 1;
}

/**
 * A square root S (m × m, m = C − 1, row-major) of the multinomial covariance of the classes other
 * than a reference class k, Σ′ = diag(q) − qqᵀ with q = p without p_k (in increasing class order):
 * SᵀS = Σ′. Together with the logit-difference rows D_c = ∇s_c − ∇s_k it factors
 * G = Dᵀ Σ′ D = (S D)ᵀ (S D), because (diag p − ppᵀ) 1 = 0 lets any class serve as reference.
 *
 * In closed form: Σ′ = diag(√q) (I − uuᵀ) diag(√q) with u = √q, ‖u‖² = 1 − p_k, and
 * M = I − c uuᵀ with c = 1/(1 + √p_k) is the symmetric square root of I − uuᵀ
 * (M² = I − (2c − c²(1 − p_k)) uuᵀ, and 2c − c²(1 − p_k) = 1), so S = M diag(√q):
 *
 *   S_ij = δ_ij √q_j − c √q_i q_j,
 *
 * O(m²) to write and nothing to cancel (c ∈ [½, 1]), however saturated the prediction; with k the
 * arg-max class no q_c exceeds ½. Exact where some p_c are 0 (Σ′ only semi-definite). It replaces a
 * float64 symmetric EVD of Σ′, O(m³): 999³ per sample for a 1,000-class head.
 * {@link multinomialCotangents} applies it on the logits, before the backward pass.
 */
export function multinomialCovSqrt(p: ArrayLike<number>, C: number, k = C - 1): Float64Array {
  const m = C - 1;
  const q = Float64Array.from({ length: m }, (_, j) => p[otherClass(j, k)] as number);
  const c = 1 / (1 + Math.sqrt(Math.max(0, p[k] as number)));
  const S = new Float64Array(m * m);
  for (let i = 0; i < m; i++) {
    const ri = Math.sqrt(q[i] as number);
    for (let j = 0; j < m; j++) S[i * m + j] = (i === j ? ri : 0) - c * ri * (q[j] as number);
  }
  return S;
}

/**
 * The cotangents on the logits whose backward pass gives the rows of S D directly (S from
 * {@link multinomialCovSqrt}, D the logit differences against each sample's class k): row i is
 * Σ_j S_ij (e_{c_j} − e_k), in closed form
 *
 *   √q_i e_{c_i} − c √q_i Σ_j q_j e_{c_j} − √q_i √p_k e_k   (c = 1/(1 + √p_k); its entries sum to 0),
 *
 * so that G's factor needs no product with S on the n-wide rows and no copy of D. Rows `from` to
 * `from + count − 1` of the C − 1, per sample: `[B, count, C]`, float32 from float64 p.
 */
export function multinomialCotangents(p64: Float64Array, reference: Int32Array, C: number, from = 0, count = C - 1): tf.Tensor3D {
  const B = reference.length;
  const m = C - 1;
  const U = new Float32Array(B * count * C);
  for (let b = 0; b < B; b++) {
    const k = reference[b] as number;
    const p = p64.subarray(b * C, (b + 1) * C);
    const rootPk = Math.sqrt(Math.max(0, p[k] as number));
    const c = 1 / (1 + rootPk);
    for (let r = 0; r < count; r++) {
      const i = from + r;
      if (i >= m) break;
      const rootQi = Math.sqrt(p[otherClass(i, k)] as number);
      const row = (b * count + r) * C;
      for (let j = 0; j < m; j++) {
        const cj = otherClass(j, k);
        U[row + cj] = (j === i ? rootQi : 0) - c * rootQi * (p[cj] as number);
      }
      U[row + k] = -rootQi * rootPk;
    }
  }
  return tf.tensor3d(U, [B, count, C]);
}
