/**
 * Pure float64 (no tensors), so this file runs in the cpu project only (vitest.config.ts).
 *
 * The closed forms for one-hidden-layer feature maps (no tensors): Cauchy–Binet, the reference spot
 * values (science.md oracles 8–14), an independent Gauss-equation curvature, and Monte Carlo over
 * wide random networks against the infinite-width limit.
 */
import { describe, expect, it } from 'vitest';
import { infiniteWidthMetric, shallowAnalyticDetG, shallowScalarCurvature, ValueError } from '../src/index.js';
import type { ShallowActivation } from '../src/index.js';
import { normalGenerator } from '../src/linalg/random.js';
import { erf } from '../src/linalg/special.js';

function randomNet(N: number, d: number, seed: number, sigma = 1, zeta = 1) {
  const normal = normalGenerator(seed);
  return {
    W: Array.from({ length: N }, () => Array.from({ length: d }, () => sigma * normal())),
    b: Array.from({ length: N }, () => zeta * normal()),
  };
}

const relErr = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

// The reference point of science.md oracle 13.
const W13 = [[0.35, -1.2], [1.1, 0.4], [-0.7, 0.9]];
const b13 = [0.2, -0.5, 0.1];
const x13 = [[0.3, -0.2]];

describe('shallowAnalyticDetG', () => {
  it('matches Cauchy–Binet for d = 2 and 3 (oracle 8)', () => {
    for (const d of [2, 3]) {
      for (const activation of ['sigmoid', 'tanh', 'erf', 'gelu'] as const) {
        const { W, b } = randomNet(6, d, 10 * d);
        const x = [Array.from({ length: d }, (_, i) => 0.3 - 0.2 * i), Array.from({ length: d }, (_, i) => -0.5 + 0.4 * i)];
        const direct = shallowAnalyticDetG({ W, b, activation, x });
        const cb = shallowAnalyticDetG({ W, b, activation, x, method: 'cauchy-binet' });
        // Both are float64 with O(d³) and O(C(6,d)·d³) operations: agreement to ~1e-15, 1e-12 allows for the condition of g.
        direct.det.forEach((v, p) => expect(relErr(v, cb.det[p] as number), `${activation} d=${d}`).toBeLessThan(1e-12));
      }
    }
  });

  it('gives the reference spot values (oracle 13)', () => {
    // Printed with 9 decimals in science.md: agreement to half a unit of the last printed digit.
    expect(shallowAnalyticDetG({ W: W13, b: b13, activation: 'sigmoid', x: x13 }).volume[0]).toBeCloseTo(0.039040876, 9);
    expect(shallowAnalyticDetG({ W: W13, b: b13, activation: 'erf', x: x13 }).volume[0]).toBeCloseTo(0.371762372, 9);
  });

  it('is g = WᵀW/N with √det g = |det W|·N^{−d/2} for linear φ (oracle 10)', () => {
    const W = [[2, 1], [0.5, -3]];
    const r = shallowAnalyticDetG({ W, b: [0.1, 0.2], activation: 'linear', x: [[5, -7]] });
    expect(Array.from(r.metric[0]!)).toEqual([(4 + 0.25) / 2, (2 - 1.5) / 2, (2 - 1.5) / 2, (1 + 9) / 2].map((v) => expect.closeTo(v, 14)));
    expect(r.volume[0]).toBeCloseTo(Math.abs(2 * -3 - 1 * 0.5) / 2, 14);
    expect(shallowScalarCurvature({ W, b: [0.1, 0.2], activation: 'linear', x: [[5, -7]] })[0]).toBeCloseTo(0, 15);
  });

  it('reports a singular metric as log det = −Infinity, not as a tiny number', () => {
    // Two ReLU units, only one active at x: g has rank 1.
    const r = shallowAnalyticDetG({ W: [[1, 0], [0, 1]], b: [1, -5], activation: 'relu', x: [[0.5, 0.5]] });
    expect(r.logDet[0]).toBe(-Infinity);
    expect(r.det[0]).toBe(0);
    expect(shallowScalarCurvature({ W: [[1, 0], [0, 1]], b: [1, -5], activation: 'relu', x: [[0.5, 0.5]] })[0]).toBeNaN();
  });

  it('throws typed errors on bad input', () => {
    expect(() => shallowAnalyticDetG({ W: [[1, 2], [3]], b: [0, 0], activation: 'tanh', x: [[0, 0]] })).toThrow(ValueError);
    expect(() => shallowAnalyticDetG({ W: [[1, 2]], b: [0, 0], activation: 'tanh', x: [[0, 0]] })).toThrow(/one entry per row/);
    expect(() => shallowAnalyticDetG({ W: [[1, 2]], b: [0], activation: 'tanh', x: [[0, 0, 0]] })).toThrow(/point 0 of x has length 3; the input dimension \(the length of W's rows\) is 2/);
    expect(() => shallowAnalyticDetG({ W: [[1, 2]], b: [0], activation: 'swish' as ShallowActivation, x: [[0, 0]] })).toThrow(/activation/);
    expect(() => shallowAnalyticDetG({ W: [[NaN, 2]], b: [0], activation: 'tanh', x: [[0, 0]] })).toThrow(/finite/);
    const big = randomNet(200, 4, 1);
    expect(() => shallowAnalyticDetG({ ...big, activation: 'tanh', x: [[0, 0, 0, 0]], method: 'cauchy-binet' })).toThrow(/subsets/);
    expect(() => shallowScalarCurvature({ W: [[1]], b: [0], activation: 'tanh', x: [[0]] })).toThrow(/d >= 2/);
  });
});

/**
 * The scalar curvature of the surface Φ(ℝ²) ⊂ ℝᴺ by the Gauss equation, independently of the
 * Riemann-tensor formula: R = 2(⟨NΦ₁₁, NΦ₂₂⟩ − ‖NΦ₁₂‖²)/det g, N the projector onto the normal space.
 */
function gaussCurvatureR(W: number[][], b: number[], x: number[], d1: (z: number) => number, d2: (z: number) => number): number {
  const N = W.length;
  const s = 1 / Math.sqrt(N);
  const z = W.map((w, j) => w[0]! * x[0]! + w[1]! * x[1]! + b[j]!);
  const J = z.map((zj, j) => [d1(zj) * W[j]![0]! * s, d1(zj) * W[j]![1]! * s]);
  const H = (a: number, c: number) => z.map((zj, j) => d2(zj) * W[j]![a]! * W[j]![c]! * s);
  const g = [0, 1].map((a) => [0, 1].map((c) => J.reduce((t, r) => t + r[a]! * r[c]!, 0)));
  const det = g[0]![0]! * g[1]![1]! - g[0]![1]! * g[1]![0]!;
  const gi = [[g[1]![1]! / det, -g[0]![1]! / det], [-g[1]![0]! / det, g[0]![0]! / det]];
  const normal = (v: number[]) => {
    const c = [0, 1].map((a) => J.reduce((t, r, j) => t + r[a]! * v[j]!, 0)); // Jᵀv
    const k = [0, 1].map((a) => gi[a]![0]! * c[0]! + gi[a]![1]! * c[1]!); // g⁻¹Jᵀv
    return v.map((vj, j) => vj - J[j]![0]! * k[0]! - J[j]![1]! * k[1]!);
  };
  const [n11, n22, n12] = [normal(H(0, 0)), normal(H(1, 1)), normal(H(0, 1))];
  const dot = (u: number[], v: number[]) => u.reduce((t, ui, j) => t + ui * v[j]!, 0);
  return (2 * (dot(n11!, n22!) - dot(n12!, n12!))) / det;
}

describe('shallowScalarCurvature', () => {
  it('gives the reference spot values in both conventions (oracle 13)', () => {
    const R = (activation: 'sigmoid' | 'erf', convention: 'standard' | 'reference') =>
      shallowScalarCurvature({ W: W13, b: b13, activation, x: x13, convention })[0]!;
    // Printed with 9 decimals: half a unit of the last digit.
    expect(R('sigmoid', 'standard')).toBeCloseTo(-0.27766633, 9);
    expect(R('sigmoid', 'reference')).toBeCloseTo(-0.832998991, 9);
    expect(R('erf', 'standard')).toBeCloseTo(-0.118646011, 9);
    expect(R('erf', 'reference')).toBeCloseTo(-0.355938032, 9);
  });

  it('agrees with the Gauss equation for the embedded surface (d = 2, four activations)', () => {
    const s = (z: number) => 1 / (1 + Math.exp(-z));
    const phi: Record<string, [(z: number) => number, (z: number) => number]> = {
      sigmoid: [(z) => s(z) * (1 - s(z)), (z) => s(z) * (1 - s(z)) * (1 - 2 * s(z))],
      tanh: [(z) => 1 - Math.tanh(z) ** 2, (z) => -2 * Math.tanh(z) * (1 - Math.tanh(z) ** 2)],
      erf: [(z) => Math.sqrt(2 / Math.PI) * Math.exp(-z * z / 2), (z) => -z * Math.sqrt(2 / Math.PI) * Math.exp(-z * z / 2)],
      // GELU by central differences of z·Φ(z), an independent route to φ' and φ''.
      gelu: [
        (z) => (gelu(z + 1e-5) - gelu(z - 1e-5)) / 2e-5,
        (z) => (gelu(z + 1e-4) - 2 * gelu(z) + gelu(z - 1e-4)) / 1e-8,
      ],
    };
    for (const [activation, [d1, d2]] of Object.entries(phi)) {
      for (const seed of [1, 2, 3]) {
        const { W, b } = randomNet(5, 2, seed);
        const x = [0.4 * seed - 0.5, 0.3 - 0.2 * seed];
        const R = shallowScalarCurvature({ W, b, activation: activation as ShallowActivation, x: [x] })[0]!;
        const ref = gaussCurvatureR(W, b, x, d1, d2);
        // float64 throughout, except GELU's second difference (error ~1e-6 relative to φ'').
        expect(relErr(R, ref), `${activation} seed ${seed}: ${R} vs ${ref}`).toBeLessThan(activation === 'gelu' ? 1e-4 : 1e-9);
      }
    }
  });
});

function gelu(z: number): number {
  return 0.5 * z * (1 + erf(z / Math.SQRT2));
}

describe('infiniteWidthMetric', () => {
  it('gives the closed-form spot values for erf(z/√2), σ = ζ = 1, d = 2 (oracle 12)', () => {
    const r = infiniteWidthMetric({ activation: 'erf', x: [[0, 0], [1, 0], [0.6, -0.8]] });
    // science.md prints 6 decimals: half a unit of the last digit.
    expect(r.volume[0]).toBeCloseTo(0.367553, 6);
    expect(r.volume[1]).toBeCloseTo(0.220532, 6);
    expect(r.volume[2]).toBeCloseTo(r.volume[1]!, 14); // rotation symmetry (oracle 14)
    expect(r.scalarCurvature![0]).toBeCloseTo(0, 15);
    expect(r.scalarCurvature![1]).toBeCloseTo(-0.936642, 6);
  });

  it('is ReLU-flat: g = (σ²/2) I, R = 0 (oracle 11)', () => {
    const r = infiniteWidthMetric({ activation: 'relu', sigma: 1.5, x: [[0.3, 2]] });
    expect(Array.from(r.metric[0]!)).toEqual([1.125, 0, 0, 1.125]);
    expect(r.scalarCurvature![0]).toBe(0);
  });

  it('is the N → ∞ limit of wide random networks (Monte Carlo, N = 10⁶)', () => {
    // With N units, √det g is a smooth function of averages of N i.i.d. terms: relative error
    // ~ c/√N. Measured over 8 seeds at N = 2·10⁵: standard deviation 0.3–0.45 % for the four
    // activations, so about 0.2 % at 10⁶; 1 % is 5 σ.
    const N = 1_000_000;
    const cases: { activation: ShallowActivation; sigma: number; zeta: number; x: number[] }[] = [
      { activation: 'erf', sigma: 1, zeta: 1, x: [0.7, -0.4] },
      { activation: 'erf', sigma: 0.8, zeta: 0.5, x: [0.2, 0.5, -1] },
      { activation: 'sigmoid', sigma: 1, zeta: 1, x: [0.7, -0.4] }, // Gauss–Hermite quadrature
      { activation: 'gelu', sigma: 1.2, zeta: 0.3, x: [-0.5, 0.9] },
      { activation: 'relu', sigma: 1, zeta: 1, x: [1.5, 0.5] },
    ];
    cases.forEach(({ activation, sigma, zeta, x }, i) => {
      const net = randomNet(N, x.length, 100 + i, sigma, zeta);
      const finite = shallowAnalyticDetG({ ...net, activation, x: [x] });
      const limit = infiniteWidthMetric({ activation: activation as 'erf', sigma, zeta, x: [x] });
      expect(relErr(finite.volume[0]!, limit.volume[0]!), `${activation}: ${finite.volume[0]} vs ${limit.volume[0]}`).toBeLessThan(0.01);
    });
  });

  it('gives the curvature of wide erf networks (Monte Carlo, N = 10⁶, d = 2 and 3)', () => {
    // R involves third-order averages φ'φ''W³, noisier than g: measured standard deviation 1.3 % over
    // 8 seeds at N = 2·10⁵, so about 0.6 % at 10⁶; 3 % is 5 σ.
    for (const x of [[0.6, 0.8], [0.5, -0.5, 0.5]]) {
      const net = randomNet(1_000_000, x.length, 7 + x.length);
      const R = shallowScalarCurvature({ ...net, activation: 'erf', x: [x] })[0]!;
      const limit = infiniteWidthMetric({ activation: 'erf', x: [x] }).scalarCurvature![0]!;
      expect(relErr(R, limit), `d=${x.length}: ${R} vs ${limit}`).toBeLessThan(0.03);
    }
  });

  it('throws typed errors on bad parameters', () => {
    expect(() => infiniteWidthMetric({ activation: 'erf', sigma: 0, x: [[0, 0]] })).toThrow(ValueError);
    expect(() => infiniteWidthMetric({ activation: 'erf', x: [] })).toThrow(/non-empty/);
    expect(() => infiniteWidthMetric({ activation: 'erf', x: [[0, 0], [1]] })).toThrow(/length 1/);
    expect(() => infiniteWidthMetric({ activation: 'sigmoid', quadratureOrder: 1, x: [[0, 0]] })).toThrow(/quadratureOrder/);
  });
});

describe('erf', () => {
  it('matches reference values to 1e-15', () => {
    // Values from mpmath 1.3, 30 digits, rounded to 17).
    const table: [number, number][] = [
      [1e-3, 0.0011283787909692364],
      [0.5, 0.5204998778130465],
      [1, 0.8427007929497149],
      [2.4, 0.9993114861033549],
      [2.6, 0.9997639655834707],
      [3, 0.9999779095030014],
      [5, 0.9999999999984626],
    ];
    for (const [x, v] of table) {
      expect(relErr(erf(x), v), `erf(${x})`).toBeLessThan(1e-15);
      expect(erf(-x)).toBe(-erf(x));
    }
  });
});
