/**
 * The pullback metric of a one-hidden-layer network at infinite width, with Gaussian weights: the
 * closed forms of Zavatone-Veth et al. (and a Gauss–Hermite quadrature where none exists).
 *
 * @module
 */
import { checkOptions } from '../checks.js';
import { ValueError } from '../errors.js';
import { gaussHermite } from '../linalg/special.js';
import { derivatives, erfScaleOf, readPoints, results } from './shallow.js';
import type { ShallowActivation, ShallowMetricResult } from './shallow.js';
import type { OptionNames } from '../checks.js';

/** Options of {@link infiniteWidthMetric}. */
export interface InfiniteWidthOptions {
  /** The hidden activation φ (`'linear'` has no interesting limit: g = σ² I). */
  activation: Exclude<ShallowActivation, 'linear'>;
  /** a in φ(z) = erf(a·z). @defaultValue 1/√2 */
  erfScale?: number;
  /** Standard deviation of the weights, w ~ N(0, σ² I). @defaultValue 1 (the reference code's init) */
  sigma?: number;
  /** Standard deviation of the biases, b ~ N(0, ζ²). @defaultValue 1 */
  zeta?: number;
  /** The points x, each of length d. */
  x: ArrayLike<ArrayLike<number>>;
  /** Gauss–Hermite nodes for the activations without a closed form. @defaultValue 64 */
  quadratureOrder?: number;
}

/** The option names of {@link InfiniteWidthOptions}. @internal */
const INFINITE_WIDTH_OPTIONS: OptionNames<InfiniteWidthOptions> = { activation: true, erfScale: true, sigma: true, zeta: true, x: true, quadratureOrder: true };

/** {@link ShallowMetricResult} plus the scalar curvature where a closed form exists. */
export interface InfiniteWidthResult extends ShallowMetricResult {
  /** R (standard convention) for `'erf'` and `'relu'` (0); undefined for the other activations. */
  scalarCurvature?: Float64Array;
}

/**
 * The N → ∞ limit of the shallow metric for Gaussian parameters wⱼ ~ N(0, σ²I), bⱼ ~ N(0, ζ²):
 * with q = σ²‖x‖² + ζ² and z ~ N(0, q),
 *
 *   g(x) = σ² E[φ'(z)²] I + (σ⁴/q²)(E[φ'(z)² z²] − q E[φ'(z)²]) x xᵀ.
 *
 * Closed forms for erf(a·z) (Q = 1 + 4a²q):
 * g = (4a²σ²/π) Q^{−1/2} [I − (4a²σ²/Q) x xᵀ], √det g = (4a²σ²/π)^{d/2} (1+4a²ζ²)^{1/2}
 * (1+4a²ζ²+4a²σ²‖x‖²)^{−(d+2)/4}, R = −(d−1)(d+2) a²πσ²‖x‖² / ((1+4a²ζ²)√(1+4a²ζ²+4a²σ²‖x‖²));
 * for ReLU g = (σ²/2) I (flat). Sigmoid, tanh and GELU use Gauss–Hermite quadrature of the 1-D
 * expectations.
 *
 * @throws {@link ValueError} for bad σ, ζ, points or activation.
 */
export function infiniteWidthMetric(options: InfiniteWidthOptions): InfiniteWidthResult {
  const fn = 'infiniteWidthMetric';
  checkOptions(options, fn, INFINITE_WIDTH_OPTIONS, true);
  const sigma = options.sigma ?? 1;
  const zeta = options.zeta ?? 1;
  if (!(Number.isFinite(sigma) && sigma > 0)) throw new ValueError(`${fn}: sigma must be a positive number, got ${String(sigma)}.`);
  if (!(Number.isFinite(zeta) && zeta >= 0)) throw new ValueError(`${fn}: zeta must be a non-negative number, got ${String(zeta)}.`);
  const d = (options.x?.[0] as ArrayLike<number> | undefined)?.length ?? 0;
  if (d < 1) throw new ValueError(`${fn}: x must be a non-empty list of points of length d >= 1.`);
  const points = readPoints(options.x, d, fn, "the length of x's first point");
  if (!points.every((p) => p.every(Number.isFinite))) throw new ValueError(`${fn}: x must be finite.`);
  const dphi = derivatives(options, fn);
  const s2 = sigma * sigma;
  const a = options.activation === 'erf' ? erfScaleOf(options, fn) : 0;
  const order = options.quadratureOrder ?? 64;
  if (!(Number.isInteger(order) && order >= 2 && order <= 512)) throw new ValueError(`${fn}: quadratureOrder must be an integer in [2, 512].`);
  const gh = options.activation === 'erf' || options.activation === 'relu' ? undefined : gaussHermite(order);

  const logDet = new Float64Array(points.length);
  const metric = points.map((x, p) => {
    const r2 = x.reduce((s, v) => s + v * v, 0);
    const q = s2 * r2 + zeta * zeta;
    let iso: number; // coefficient of I
    let radial: number; // coefficient of x xᵀ
    if (options.activation === 'relu') {
      iso = s2 / 2;
      radial = 0;
    } else if (options.activation === 'erf') {
      const Q = 1 + 4 * a * a * q;
      iso = ((4 * a * a * s2) / Math.PI) / Math.sqrt(Q);
      radial = (-iso * 4 * a * a * s2) / Q;
    } else {
      let e0 = 0;
      let e2 = 0;
      const sd = Math.sqrt(q);
      gh!.nodes.forEach((t, i) => {
        const z = sd * t;
        const w = (gh!.weights[i] as number) * dphi(z)[0] ** 2;
        e0 += w;
        e2 += w * z * z;
      });
      iso = s2 * e0;
      radial = q > 0 ? ((s2 * s2) / (q * q)) * (e2 - q * e0) : 0;
    }
    const g = new Float64Array(d * d);
    for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) g[i * d + j] = (i === j ? iso : 0) + radial * (x[i] as number) * (x[j] as number);
    // det(c I + r x xᵀ) = c^{d−1} (c + r‖x‖²)
    logDet[p] = (d - 1) * Math.log(iso) + Math.log(iso + radial * r2);
    return g;
  });
  const out: InfiniteWidthResult = results(metric, logDet);
  if (options.activation === 'relu') out.scalarCurvature = new Float64Array(points.length);
  if (options.activation === 'erf') {
    const k = 1 + 4 * a * a * zeta * zeta;
    out.scalarCurvature = Float64Array.from(points, (x) => {
      const r2 = x.reduce((s, v) => s + v * v, 0);
      return (-(d - 1) * (d + 2) * a * a * Math.PI * s2 * r2) / (k * Math.sqrt(k + 4 * a * a * s2 * r2));
    });
  }
  return out;
}

