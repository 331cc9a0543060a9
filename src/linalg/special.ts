/**
 * Float64 special functions and small dense helpers for the closed-form geometry: erf, Gauss–Hermite
 * quadrature, the log-determinant of a small symmetric matrix, and singular values of a few long
 * rows.
 *
 * @module
 */
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { dot } from './rows.js';

const TWO_OVER_SQRT_PI = 2 / Math.sqrt(Math.PI);

/**
 * The error function to about 1e-15 relative: its Maclaurin series for |x| < 2.5 (terms alternate
 * and peak near e^{6.25}, so about 3 digits are lost to cancellation), and the continued fraction of
 * erfc beyond (modified Lentz, converged to double precision).
 */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const ax = Math.abs(x);
  if (ax < 2.5) {
    // erf x = 2/√π Σ (−1)ⁿ x^{2n+1} / (n! (2n+1))
    const x2 = x * x;
    let term = x;
    let sum = x;
    for (let n = 1; n < 200; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return TWO_OVER_SQRT_PI * sum;
  }
  return Math.sign(x) * (1 - erfcLarge(ax));
}

/** erfc(x) for x ≥ 2.5: e^{−x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))). */
function erfcLarge(x: number): number {
  if (x > 27) return 0;
  // Lentz on the fraction K = x + a₁/(x + a₂/(x + …)), aₖ = k/2.
  const tiny = 1e-300;
  let f = x;
  let C = x;
  let D = 0;
  for (let k = 1; k < 500; k++) {
    const a = k / 2;
    D = x + a * D;
    D = Math.abs(D) < tiny ? tiny : D;
    C = x + a / C;
    C = Math.abs(C) < tiny ? tiny : C;
    D = 1 / D;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(-x * x) / (Math.sqrt(Math.PI) * f);
}

/** The standard normal density. */
export function normalPdf(z: number): number {
  return Math.exp(-0.5 * z * z) / Math.sqrt(2 * Math.PI);
}

/** The standard normal distribution function Φ(z). */
export function normalCdf(z: number): number {
  return 0.5 * (1 + erf(z / Math.SQRT2));
}

/**
 * Gauss–Hermite nodes and weights for E[f(Z)], Z ~ N(0, 1): E f(Z) ≈ Σᵢ wᵢ f(zᵢ), exact for
 * polynomials of degree < 2·order. Golub–Welsch on the Jacobi matrix of the probabilists' Hermite
 * polynomials (off-diagonal √k), float64 symmetric EVD.
 */
export function gaussHermite(order: number): { nodes: Float64Array; weights: Float64Array } {
  const J = new Matrix(order, order);
  for (let k = 1; k < order; k++) {
    J.set(k - 1, k, Math.sqrt(k));
    J.set(k, k - 1, Math.sqrt(k));
  }
  const evd = new EigenvalueDecomposition(J, { assumeSymmetric: true });
  const V = evd.eigenvectorMatrix;
  const nodes = Float64Array.from(evd.realEigenvalues);
  const weights = Float64Array.from(nodes, (_, i) => V.get(0, i) ** 2);
  return { nodes, weights };
}

/**
 * log det M for a small symmetric positive semi-definite d × d matrix (row-major), by Cholesky in
 * float64; −Infinity when a pivot is not positive (M singular to working precision).
 */
export function logDetPSD(m: ArrayLike<number>, d: number): number {
  const L = new Float64Array(d * d);
  let logDet = 0;
  for (let j = 0; j < d; j++) {
    let s = m[j * d + j] as number;
    for (let k = 0; k < j; k++) s -= (L[j * d + k] as number) ** 2;
    if (!(s > 0)) return -Infinity;
    const ljj = Math.sqrt(s);
    L[j * d + j] = ljj;
    logDet += 2 * Math.log(ljj);
    for (let i = j + 1; i < d; i++) {
      let t = m[i * d + j] as number;
      for (let k = 0; k < j; k++) t -= (L[i * d + k] as number) * (L[j * d + k] as number);
      L[i * d + j] = t / ljj;
    }
  }
  return logDet;
}

/** The inverse of a small symmetric positive definite d × d matrix (row-major), float64. */
export function inverseSPD(m: ArrayLike<number>, d: number): Float64Array {
  const inv = new Matrix(d, d);
  const a = new Matrix(d, d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) a.set(i, j, m[i * d + j] as number);
  const evd = new EigenvalueDecomposition(a, { assumeSymmetric: true });
  const V = evd.eigenvectorMatrix;
  const lambda = evd.realEigenvalues;
  for (let i = 0; i < d; i++)
    for (let j = 0; j < d; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += (V.get(i, k) * V.get(j, k)) / (lambda[k] as number);
      inv.set(i, j, s);
    }
  return Float64Array.from(inv.to1DArray());
}

/**
 * The singular values (descending, min(r, n) of them) of an r × n matrix (row-major), in float64:
 * square roots of the eigenvalues of the smaller Gram matrix (A Aᵀ or AᵀA), formed in float64.
 * Squaring costs half the digits of the smallest values: σ is resolved down to about 1e-8·σ_max,
 * below the ~1e-7 relative rounding of a float32 factor anyway.
 */
export function singularValues(a: ArrayLike<number>, r: number, n: number): Float64Array {
  const k = Math.min(r, n);
  if (k === 0) return new Float64Array(0);
  const gram = new Matrix(k, k);
  if (r <= n) {
    for (let i = 0; i < r; i++)
      for (let j = i; j < r; j++) {
        const s = dot(a, i * n, a, j * n, n);
        gram.set(i, j, s);
        gram.set(j, i, s);
      }
  } else {
    const col = new Float64Array(r * n); // columns as rows: Aᵀ, row-major n × r
    for (let i = 0; i < r; i++) for (let j = 0; j < n; j++) col[j * r + i] = a[i * n + j] as number;
    for (let i = 0; i < n; i++)
      for (let j = i; j < n; j++) {
        const s = dot(col, i * r, col, j * r, r);
        gram.set(i, j, s);
        gram.set(j, i, s);
      }
  }
  const evd = new EigenvalueDecomposition(gram, { assumeSymmetric: true });
  return Float64Array.from(evd.realEigenvalues, (v) => Math.sqrt(Math.max(v, 0))).sort().reverse();
}
