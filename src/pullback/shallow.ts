/**
 * Closed forms for one-hidden-layer feature maps Φⱼ(x) = φ(wⱼ·x + bⱼ)/√N (Zavatone-Veth, Yang,
 * Rubinfien, Pehlevan, "Neural networks learn to magnify areas near decision boundaries"): the
 * metric, √det g and the scalar curvature at finite width, and the infinite-width limit for
 * Gaussian weights. Plain float64 arithmetic, no tensors.
 *
 * @module
 */
import { checkOptions } from '../checks.js';
import { ValueError } from '../errors.js';
import { inverseSPD, logDetPSD, normalCdf, normalPdf } from '../linalg/special.js';
import type { OptionNames } from '../checks.js';

/**
 * The hidden activation φ. `'erf'` is φ(z) = erf(a·z) with a = {@link ShallowNet.erfScale}
 * (default 1/√2, the reference code's "Erf"); `'gelu'` is the exact z·Φ(z) (tfjs-layers' `gelu`).
 */
export type ShallowActivation = 'sigmoid' | 'tanh' | 'erf' | 'relu' | 'gelu' | 'linear';

/** A one-hidden-layer feature map Φⱼ(x) = φ(wⱼ·x + bⱼ)/√N, j < N. */
export interface ShallowNet {
  /** N rows wⱼ of length d (for a tfjs `Dense` layer: the transpose of its `[d, N]` kernel). */
  W: ArrayLike<ArrayLike<number>>;
  /** N biases bⱼ. */
  b: ArrayLike<number>;
  /** The hidden activation φ. */
  activation: ShallowActivation;
  /** a in φ(z) = erf(a·z). @defaultValue 1/√2 */
  erfScale?: number;
}

/** The option names of {@link ShallowNet}. @internal */
const SHALLOW_NET: OptionNames<ShallowNet> = { W: true, b: true, activation: true, erfScale: true };

/** Options of {@link shallowAnalyticDetG}. */
export interface ShallowMetricOptions extends ShallowNet {
  /** The points x, each of length d. */
  x: ArrayLike<ArrayLike<number>>;
  /**
   * How det g is computed:
   * - `'direct'`: Cholesky of the d × d metric in float64;
   * - `'cauchy-binet'`: det g = N^{−d} Σ_{|S|=d} Π_{j∈S} φ'(zⱼ)² det(W_S)² over the d-subsets of
   *   hidden units, an independent cross-check for small N and d (refused above 10⁶ subsets).
   * @defaultValue `'direct'`
   */
  method?: 'direct' | 'cauchy-binet';
}

/** The option names of {@link ShallowMetricOptions}. @internal */
const SHALLOW_METRIC_OPTIONS: OptionNames<ShallowMetricOptions> = { ...SHALLOW_NET, x: true, method: true };

/** Per-point results of {@link shallowAnalyticDetG} and {@link infiniteWidthMetric}. */
export interface ShallowMetricResult {
  /** The metric g at each point, d × d row-major. */
  metric: Float64Array[];
  /** det g. */
  det: Float64Array;
  /** log det g (natural log; −Infinity where g is singular). */
  logDet: Float64Array;
  /** The volume element √det g. */
  volume: Float64Array;
  /** log √det g = ½ log det g. */
  logVolume: Float64Array;
}

/** φ' and φ'' at z. @internal */
export type Derivs = (z: number) => [number, number];

/** φ' and φ'' of the network's activation. @internal */
export function derivatives(net: Pick<ShallowNet, 'activation' | 'erfScale'>, fn: string): Derivs {
  switch (net.activation) {
    case 'sigmoid':
      return (z) => {
        const s = 1 / (1 + Math.exp(-z));
        const d1 = s * (1 - s);
        return [d1, d1 * (1 - 2 * s)];
      };
    case 'tanh':
      return (z) => {
        const t = Math.tanh(z);
        const d1 = 1 - t * t;
        return [d1, -2 * t * d1];
      };
    case 'erf': {
      const a = erfScaleOf(net, fn);
      return (z) => {
        const d1 = ((2 * a) / Math.sqrt(Math.PI)) * Math.exp(-a * a * z * z);
        return [d1, -2 * a * a * z * d1];
      };
    }
    case 'relu':
      return (z) => [z > 0 ? 1 : 0, 0];
    case 'gelu':
      return (z) => [normalCdf(z) + z * normalPdf(z), normalPdf(z) * (2 - z * z)];
    case 'linear':
      return () => [1, 0];
    default:
      throw new ValueError(`${fn}: activation must be one of sigmoid, tanh, erf, relu, gelu, linear; got '${String(net.activation)}'.`);
  }
}

/** The scale a of an erf(a z) activation, checked. @internal */
export function erfScaleOf(net: Pick<ShallowNet, 'erfScale'>, fn: string): number {
  const a = net.erfScale ?? Math.SQRT1_2;
  if (!(Number.isFinite(a) && a > 0)) throw new ValueError(`${fn}: erfScale must be a positive number, got ${String(a)}.`);
  return a;
}

/** Validated float64 copies: W (N × d row-major), b, and the points. */
function readNet(opts: ShallowNet & { x: ArrayLike<ArrayLike<number>> }, fn: string, names: OptionNames<ShallowMetricOptions> | OptionNames<ShallowCurvatureOptions>) {
  checkOptions(opts, fn, names as OptionNames<typeof opts>, true);
  const N = opts.W?.length ?? 0;
  if (N < 1) throw new ValueError(`${fn}: W must have at least one row (one per hidden unit).`);
  const d = (opts.W[0] as ArrayLike<number>).length;
  if (d < 1) throw new ValueError(`${fn}: the rows of W must not be empty.`);
  const W = new Float64Array(N * d);
  for (let j = 0; j < N; j++) {
    const row = opts.W[j] as ArrayLike<number>;
    if (row.length !== d) throw new ValueError(`${fn}: row ${j} of W has length ${row.length}; row 0 has ${d}.`);
    for (let i = 0; i < d; i++) W[j * d + i] = row[i] as number;
  }
  if (opts.b?.length !== N) throw new ValueError(`${fn}: b must have one entry per row of W (${N}), got ${opts.b?.length ?? 'none'}.`);
  const b = Float64Array.from(opts.b);
  const points = readPoints(opts.x, d, fn);
  if (![W, b, ...points].every((a) => a.every(Number.isFinite))) throw new ValueError(`${fn}: W, b and x must be finite.`);
  return { N, d, W, b, points };
}

/** The points as float64 rows of length d, checked. @internal */
export function readPoints(x: ArrayLike<ArrayLike<number>>, d: number, fn: string, dimension = "the length of W's rows"): Float64Array[] {
  if (x == null || typeof x.length !== 'number') throw new ValueError(`${fn}: x must be a list of points.`);
  return Array.from({ length: x.length }, (_, p) => {
    const pt = x[p] as ArrayLike<number>;
    if (pt?.length !== d) throw new ValueError(`${fn}: point ${p} of x has length ${pt?.length}; the input dimension (${dimension}) is ${d}.`);
    return Float64Array.from(pt);
  });
}

function preactivations(W: Float64Array, b: Float64Array, x: Float64Array, N: number, d: number): Float64Array {
  return Float64Array.from({ length: N }, (_, j) => {
    let z = b[j] as number;
    for (let i = 0; i < d; i++) z += (W[j * d + i] as number) * (x[i] as number);
    return z;
  });
}

/** Per-point metrics and their log-volumes as a {@link ShallowMetricResult}. @internal */
export function results(metric: Float64Array[], logDet: Float64Array): ShallowMetricResult {
  return {
    metric,
    det: logDet.map(Math.exp),
    logDet,
    volume: logDet.map((l) => Math.exp(l / 2)),
    logVolume: logDet.map((l) => l / 2),
  };
}

/** det of a small d × d matrix by LU with partial pivoting (float64). */
function det(m: Float64Array, d: number): number {
  const a = Float64Array.from(m);
  let out = 1;
  for (let c = 0; c < d; c++) {
    let p = c;
    for (let r = c + 1; r < d; r++) if (Math.abs(a[r * d + c] as number) > Math.abs(a[p * d + c] as number)) p = r;
    if (a[p * d + c] === 0) return 0;
    if (p !== c) {
      for (let k = 0; k < d; k++) [a[c * d + k], a[p * d + k]] = [a[p * d + k] as number, a[c * d + k] as number];
      out = -out;
    }
    const piv = a[c * d + c] as number;
    out *= piv;
    for (let r = c + 1; r < d; r++) {
      const f = (a[r * d + c] as number) / piv;
      for (let k = c; k < d; k++) a[r * d + k] = (a[r * d + k] as number) - f * (a[c * d + k] as number);
    }
  }
  return out;
}

function binomial(n: number, k: number): number {
  let c = 1;
  for (let i = 0; i < k; i++) c = (c * (n - i)) / (i + 1);
  return c;
}

/** Cauchy–Binet: det(Wᵀ diag(c) W) = Σ_{|S|=d} Π_{j∈S} c_j det(W_S)², by enumerating S. */
function cauchyBinet(W: Float64Array, c: Float64Array, N: number, d: number): number {
  const S = Array.from({ length: d }, (_, i) => i);
  const sub = new Float64Array(d * d);
  let sum = 0;
  for (;;) {
    let weight = 1;
    S.forEach((j, r) => {
      weight *= c[j] as number;
      for (let i = 0; i < d; i++) sub[r * d + i] = W[j * d + i] as number;
    });
    if (weight !== 0) sum += weight * det(sub, d) ** 2;
    // next d-subset in lexicographic order
    let i = d - 1;
    while (i >= 0 && S[i] === N - d + i) i--;
    if (i < 0) return sum;
    S[i] = (S[i] as number) + 1;
    for (let k = i + 1; k < d; k++) S[k] = (S[k - 1] as number) + 1;
  }
}

/**
 * The pullback metric of a one-hidden-layer feature map Φⱼ(x) = φ(wⱼ·x + bⱼ)/√N, its determinant
 * and its volume element, in closed form (float64):
 *
 *   g(x) = (1/N) Wᵀ diag(φ'(z)²) W,   z = W x + b,
 *
 * with φ' **squared** (the paper's poster drops the square). This is {@link pullbackMetric} with
 * `normalization: 'width'` on the hidden layer of a tfjs `Dense(N, activation)` model, without
 * autodiff or float32.
 *
 * @param options - the network, the points and the method (see {@link ShallowMetricOptions}).
 * @returns per point: g, det g, log det g, √det g and log √det g (see {@link ShallowMetricResult});
 *   log det g is −Infinity where g is singular (e.g. fewer than d active ReLU units).
 * @throws {@link ValueError} for ragged or non-finite W, b, x, an unknown activation, or a
 *   Cauchy–Binet sum over more than 10⁶ subsets.
 *
 * @example
 * ```ts
 * const { volume } = shallowAnalyticDetG({
 *   W: [[0.35, -1.2], [1.1, 0.4], [-0.7, 0.9]], b: [0.2, -0.5, 0.1],
 *   activation: 'sigmoid', x: [[0.3, -0.2]],
 * }); // volume[0] ≈ 0.0390409
 * ```
 */
export function shallowAnalyticDetG(options: ShallowMetricOptions): ShallowMetricResult {
  const fn = 'shallowAnalyticDetG';
  const { N, d, W, b, points } = readNet(options, fn, SHALLOW_METRIC_OPTIONS);
  const dphi = derivatives(options, fn);
  const method = options.method ?? 'direct';
  if (method !== 'direct' && method !== 'cauchy-binet') throw new ValueError(`${fn}: method must be 'direct' or 'cauchy-binet', got '${String(method)}'.`);
  if (method === 'cauchy-binet' && binomial(N, d) > 1e6) {
    throw new ValueError(`${fn}: Cauchy–Binet would sum C(${N}, ${d}) = ${binomial(N, d).toExponential(2)} subsets; use method 'direct'.`);
  }
  const logDet = new Float64Array(points.length);
  const metric = points.map((x, p) => {
    const c = Float64Array.from(preactivations(W, b, x, N, d), (z) => dphi(z)[0] ** 2);
    const g = new Float64Array(d * d);
    for (let j = 0; j < N; j++) {
      const cj = (c[j] as number) / N;
      if (cj === 0) continue;
      for (let r = 0; r < d; r++) for (let s = 0; s < d; s++) g[r * d + s] = (g[r * d + s] as number) + cj * (W[j * d + r] as number) * (W[j * d + s] as number);
    }
    if (method === 'direct') logDet[p] = logDetPSD(g, d);
    else logDet[p] = Math.log(cauchyBinet(W, c, N, d)) - d * Math.log(N);
    return g;
  });
  return results(metric, logDet);
}

/** Options of {@link shallowScalarCurvature}. */
export interface ShallowCurvatureOptions extends ShallowNet {
  /** The points x, each of length d ≥ 2. */
  x: ArrayLike<ArrayLike<number>>;
  /**
   * `'standard'`: the usual scalar curvature (the unit sphere has R = 2). `'reference'`: 3× that,
   * which is what the paper's reference code (nn_curvature) returns for shallow nets; only for
   * comparing with its numbers.
   * @defaultValue `'standard'`
   */
  convention?: 'standard' | 'reference';
}

/** The option names of {@link ShallowCurvatureOptions}. @internal */
const SHALLOW_CURVATURE_OPTIONS: OptionNames<ShallowCurvatureOptions> = { ...SHALLOW_NET, x: true, convention: true };

/**
 * The scalar curvature R of the metric g = (1/N) Wᵀ diag(φ'(z)²) W of a one-hidden-layer feature
 * map, any input dimension d ≥ 2, in float64. The derivative ∂_a g_{mr} = (2/N) Σⱼ φ'φ''(zⱼ)
 * W_{ja}W_{jm}W_{jr} is totally symmetric, so the second-derivative terms of the Riemann tensor
 * cancel and
 *
 *   R = −¼ g^{ma} g^{nb} g^{rl} (∂_a g_{mr} ∂_b g_{nl} − ∂_b g_{mr} ∂_a g_{nl}).
 *
 * Convention: the unit sphere has R = +2 (R = 2K in two dimensions). The reference code returns
 * 3× this value (a factor-3 error in its prefactor and Christoffel signs); `convention: 'reference'`
 * reproduces it. R = 0 for ReLU and linear φ (φ'' = 0).
 *
 * @returns R at each point; NaN where g is singular.
 * @throws {@link ValueError} as {@link shallowAnalyticDetG}, or for d < 2.
 */
export function shallowScalarCurvature(options: ShallowCurvatureOptions): Float64Array {
  const fn = 'shallowScalarCurvature';
  const { N, d, W, b, points } = readNet(options, fn, SHALLOW_CURVATURE_OPTIONS);
  if (d < 2) throw new ValueError(`${fn}: curvature needs input dimension d >= 2, got ${d}.`);
  const convention = options.convention ?? 'standard';
  if (convention !== 'standard' && convention !== 'reference') throw new ValueError(`${fn}: convention must be 'standard' or 'reference'.`);
  const dphi = derivatives(options, fn);
  return Float64Array.from(points, (x) => {
    const z = preactivations(W, b, x, N, d);
    const g = new Float64Array(d * d);
    const T = new Float64Array(d * d * d); // ∂_a g_{mr}
    for (let j = 0; j < N; j++) {
      const [d1, d2] = dphi(z[j] as number);
      const cg = (d1 * d1) / N;
      const ct = (2 * d1 * d2) / N;
      for (let a = 0; a < d; a++) {
        const wa = W[j * d + a] as number;
        for (let m = 0; m < d; m++) {
          const wam = wa * (W[j * d + m] as number);
          g[a * d + m] = (g[a * d + m] as number) + cg * wam;
          for (let r = 0; r < d; r++) T[(a * d + m) * d + r] = (T[(a * d + m) * d + r] as number) + ct * wam * (W[j * d + r] as number);
        }
      }
    }
    if (logDetPSD(g, d) === -Infinity) return NaN;
    const gi = inverseSPD(g, d);
    // Raise all three indices: U^{abc} = g^{aa'} g^{bb'} g^{cc'} T_{a'b'c'}.
    let U = T;
    for (let axis = 0; axis < 3; axis++) {
      const V = new Float64Array(d * d * d);
      for (let i = 0; i < d; i++)
        for (let j = 0; j < d; j++)
          for (let k = 0; k < d; k++) {
            let s = 0;
            for (let t = 0; t < d; t++) {
              const idx = axis === 0 ? (t * d + j) * d + k : axis === 1 ? (i * d + t) * d + k : (i * d + j) * d + t;
              const gIdx = axis === 0 ? i * d + t : axis === 1 ? j * d + t : k * d + t;
              s += (gi[gIdx] as number) * (U[idx] as number);
            }
            V[(i * d + j) * d + k] = s;
          }
      U = V;
    }
    // First term: v_r g^{rl} v_l with v_r = g^{ma} T_{amr}; second: the full contraction ⟨T, T⟩.
    const v = new Float64Array(d);
    for (let r = 0; r < d; r++) {
      let s = 0;
      for (let m = 0; m < d; m++) for (let a = 0; a < d; a++) s += (gi[m * d + a] as number) * (T[(a * d + m) * d + r] as number);
      v[r] = s;
    }
    let vv = 0;
    for (let r = 0; r < d; r++) for (let l = 0; l < d; l++) vv += (v[r] as number) * (gi[r * d + l] as number) * (v[l] as number);
    let tt = 0;
    for (let i = 0; i < T.length; i++) tt += (T[i] as number) * (U[i] as number);
    const R = -0.25 * (vv - tt);
    return convention === 'reference' ? 3 * R : R;
  });
}
