/**
 * Float64 helpers for a few long rows (a C × n Jacobian, a factor of rank ≤ C): orthonormal bases
 * by twice-iterated modified Gram–Schmidt with a relative rank cut, and the small symmetric
 * eigenproblem behind the nonzero eigenpairs of AᵀA. Nothing here forms an n × n matrix.
 *
 * @module
 */
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
 * than a reference class k, Σ′ = diag(p′) − p′p′ᵀ with p′ = p without p_k (in increasing class
 * order): SᵀS = Σ′. Together with the logit-difference rows D_c = ∇s_c − ∇s_k it factors
 * G = Dᵀ Σ′ D = (S D)ᵀ (S D), because (diag p − ppᵀ) 1 = 0 lets any class serve as reference.
 * With k the arg-max class, no entry of p′ exceeds ½, so Σ′ = p′(1 − p′)… has nothing to cancel
 * however saturated the prediction (with k fixed, p_ŷ(1 − p_ŷ) lost every digit once
 * 1 − p_ŷ < 1e-16). Computed as Λ^{1/2} Vᵀ from the symmetric EVD (float64), so it exists even
 * when some p_c are 0 (Σ′ only semi-definite).
 */
export function multinomialCovSqrt(p: ArrayLike<number>, C: number, k = C - 1): Float64Array {
  const m = C - 1;
  const q = Array.from({ length: m }, (_, j) => p[otherClass(j, k)] as number);
  const cov = new Matrix(m, m);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < m; j++) cov.set(i, j, (i === j ? (q[i] as number) : 0) - (q[i] as number) * (q[j] as number));
  const evd = new EigenvalueDecomposition(cov, { assumeSymmetric: true });
  const V = evd.eigenvectorMatrix;
  const S = new Float64Array(m * m);
  evd.realEigenvalues.forEach((lambda, r) => {
    const root = Math.sqrt(Math.max(lambda, 0));
    for (let j = 0; j < m; j++) S[r * m + j] = root * V.get(j, r);
  });
  return S;
}
