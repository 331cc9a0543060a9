/**
 * Pure float64 (no tensors): tests of the independent curvature oracle in ./oracles/curvature64.ts
 * itself — special functions, the MLP jet against finite differences, the finite-difference scalar
 * curvature on metrics of known curvature — and then the library's closed-form shallow curvature
 * against the oracle.
 */
import { describe, expect, it } from 'vitest';
import { shallowScalarCurvature } from '../src/index.js';
import {
  activation64,
  erf64,
  erfc64,
  mlpForward64,
  mlpJacobian64,
  mlpSecond64,
  pullbackMetric64,
  randomMlp64,
  scalarCurvatureFD64,
} from './oracles/curvature64.js';
import type { Act64, Dense64 } from './oracles/curvature64.js';

const ALL_ACTS: Act64[] = ['linear', 'tanh', 'sigmoid', 'softplus', 'gelu', 'swish', 'elu', 'erf'];
const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - (b[i] as number))), 0);
const unit = (d: number, i: number) => Float64Array.from({ length: d }, (_, k) => (k === i ? 1 : 0));
const diag = (d: number, c: number) => Float64Array.from({ length: d * d }, (_, e) => (e % (d + 1) === 0 ? c : 0));

/** The round unit sphere in stereographic coordinates: g = 4/(1 + |x|²)² δ, R = d(d − 1). */
const sphere = (x: Float64Array) => diag(x.length, 4 / (1 + x.reduce((s, v) => s + v * v, 0)) ** 2);
/** The hyperbolic half-plane, x₂ > 0: g = δ/x₂², R = −2. */
const halfPlane = (x: Float64Array) => diag(2, 1 / (x[1] as number) ** 2);
/** The Euclidean plane in polar coordinates (r, θ): g = diag(1, r²), R = 0. */
const polar = (x: Float64Array) => Float64Array.of(1, 0, 0, (x[0] as number) ** 2);

describe('curvature64 special functions', () => {
  it('erf and erfc match 30-digit values to ~1e-15 relative', () => {
    // [x, erf x, erfc x] from mpmath at 30 digits.
    const ref: [number, number, number][] = [
      [0.1, 0.1124629160182848984, 0.8875370839817151016],
      [0.5, 0.52049987781304653768, 0.47950012218695346232],
      [1, 0.84270079294971486934, 0.15729920705028513066],
      [1.5, 0.96610514647531072707, 0.033894853524689272933],
      [2, 0.99532226501895273416, 0.0046777349810472658379],
      [2.9, 0.99995890212190054114, 4.1097878099458857996e-5],
      [3, 0.99997790950300141456, 2.2090496998585441373e-5],
      [4, 0.99999998458274209972, 1.5417257900280018852e-8],
      [6, 0.99999999999999997848, 2.1519736712498913117e-17],
    ];
    for (const [x, e, c] of ref) {
      expect(Math.abs(erf64(x) - e) / e, `erf(${x})`).toBeLessThan(2e-15);
      expect(Math.abs(erf64(-x) + e) / e, `erf(${-x})`).toBeLessThan(2e-15);
      expect(Math.abs(erfc64(x) - c) / c, `erfc(${x})`).toBeLessThan(3e-15);
      expect(Math.abs(erfc64(-x) - (2 - c)) / (2 - c), `erfc(${-x})`).toBeLessThan(2e-15);
    }
  });

  it("φ' and φ'' of every activation match central differences of φ and φ'", () => {
    // Central differences, h = 1e-5: truncation h²|φ'''|/6 ≲ 1e-10, rounding ε/h ≈ 1e-11.
    const h = 1e-5;
    for (const act of ALL_ACTS) {
      for (const z of [-3.1, -1.2, -0.3, 0.4, 1.7, 2.9]) {
        const [, d1, d2] = activation64(act, z);
        const [fp, d1p] = activation64(act, z + h);
        const [fm, d1m] = activation64(act, z - h);
        expect(Math.abs(d1 - (fp - fm) / (2 * h)), `${act}' at ${z}`).toBeLessThan(1e-9);
        expect(Math.abs(d2 - (d1p - d1m) / (2 * h)), `${act}'' at ${z}`).toBeLessThan(1e-9);
      }
    }
    // Values at known points.
    expect(activation64('gelu', 1)[0]).toBeCloseTo(0.8413447460685429, 15); // Φ(1)
    expect(activation64('erf', 1)[0]).toBeCloseTo(0.6826894921370859, 15); // erf(1/√2)
    expect(activation64('softplus', 0)[0]).toBeCloseTo(Math.LN2, 15);
    expect(activation64('swish', -800)[0]).toBe(-0); // no overflow
    expect(activation64('softplus', 800)[0]).toBe(800);
  });
});

describe('curvature64 networks', () => {
  const nets: [string, Dense64[]][] = [
    ['tanh/softplus/gelu', randomMlp64([3, 6, 5, 4], ['tanh', 'softplus', 'gelu'], 7, 1.5)],
    ['sigmoid/swish/erf/elu/linear', randomMlp64([4, 6, 6, 5, 5, 3], ['sigmoid', 'swish', 'erf', 'elu', 'linear'], 8, 1.5)],
  ];
  const point = (d: number, s: number) => Float64Array.from({ length: d }, (_, i) => Math.sin(1.3 * i + s));

  it('randomMlp64 is deterministic and has the requested shapes and scale', () => {
    const a = randomMlp64([40, 300, 2], ['tanh', 'linear'], 3, 2);
    const b = randomMlp64([40, 300, 2], ['tanh', 'linear'], 3, 2);
    expect(a[0]!.kernel).toEqual(b[0]!.kernel);
    expect(randomMlp64([40, 300, 2], ['tanh', 'linear'], 4, 2)[0]!.kernel).not.toEqual(a[0]!.kernel);
    expect([a[0]!.inSize, a[0]!.outSize, a[0]!.kernel.length, a[1]!.bias.length]).toEqual([40, 300, 12000, 2]);
    // std 2/√40 from 12000 draws: the sample std is within ~1% (3σ ≈ 2%).
    const k = a[0]!.kernel;
    const std = Math.sqrt(k.reduce((s, v) => s + v * v, 0) / k.length);
    expect(std / (2 / Math.sqrt(40))).toBeCloseTo(1, 1);
  });

  it('mlpJacobian64 matches central differences of mlpForward64', () => {
    // h = 1e-5: truncation h²|f'''|/6 ~ 1e-11, rounding ε|f|/h ~ 1e-11. Measured ≤ ~1e-10.
    const h = 1e-5;
    for (const [name, net] of nets) {
      const d = net[0]!.inSize;
      for (const s of [0, 1, 2]) {
        const x = point(d, s);
        const J = mlpJacobian64(net, x);
        const m = J.length / d;
        const fd = new Float64Array(m * d);
        for (let c = 0; c < d; c++) {
          const fp = mlpForward64(net, x.map((v, i) => (i === c ? v + h : v)));
          const fm = mlpForward64(net, x.map((v, i) => (i === c ? v - h : v)));
          for (let r = 0; r < m; r++) fd[r * d + c] = ((fp[r] as number) - (fm[r] as number)) / (2 * h);
        }
        expect(maxDiff(J, fd), name).toBeLessThan(1e-9 * Math.max(1, maxAbs(J)));
      }
    }
  });

  it('mlpSecond64 matches (J(x+hv)u − J(x−hv)u)/2h and is symmetric in u, v', () => {
    // Same error budget as the Jacobian test, one derivative higher. Measured ≤ ~1e-10.
    const h = 1e-5;
    for (const [name, net] of nets) {
      const d = net[0]!.inSize;
      for (const s of [0, 1, 2]) {
        const x = point(d, s);
        const u = point(d, s + 5);
        const v = point(d, s + 11);
        const Ju = (y: Float64Array) => {
          const J = mlpJacobian64(net, y);
          const m = J.length / d;
          return Float64Array.from({ length: m }, (_, r) => u.reduce((acc, ui, c) => acc + (J[r * d + c] as number) * ui, 0));
        };
        const a = Ju(x.map((xi, i) => xi + h * (v[i] as number)));
        const b = Ju(x.map((xi, i) => xi - h * (v[i] as number)));
        const fd = a.map((ai, r) => (ai - (b[r] as number)) / (2 * h));
        const exact = mlpSecond64(net, x, u, v);
        expect(maxAbs(exact), name).toBeGreaterThan(1e-3); // not trivially zero
        expect(maxDiff(exact, fd), name).toBeLessThan(1e-8 * Math.max(1, maxAbs(exact)));
        expect(maxDiff(exact, mlpSecond64(net, x, v, u)), name).toBeLessThan(1e-14 * Math.max(1, maxAbs(exact)));
      }
    }
  });
});

describe('scalarCurvatureFD64 on metrics of known curvature', () => {
  // With the default h = 4e-3 (6th-order stencils) the measured errors are ≤ 1e-10 relative;
  // the tolerances leave 10–100× headroom.
  it('round sphere: R = d(d − 1) and Ric = (d − 1) g, d = 2, 3, 4', () => {
    const pts = [[0.3, -0.2, 0.4, 0.1], [1.1, 0.7, -0.3, 0.2], [-0.5, 0.05, 0.9, -0.6], [0, 0, 0, 0]];
    for (const d of [2, 3, 4]) {
      for (const p of pts) {
        const x = Float64Array.from(p.slice(0, d));
        const { scalar, ricci } = scalarCurvatureFD64(sphere, x);
        expect(Math.abs(scalar / (d * (d - 1)) - 1), `d=${d} at ${p}`).toBeLessThan(1e-8);
        const g = sphere(x);
        expect(maxDiff(ricci, g.map((v) => (d - 1) * v)), `d=${d}`).toBeLessThan(1e-8 * maxAbs(g));
      }
    }
  });

  it('hyperbolic half-plane: R = −2 and Ric = −g', () => {
    for (const p of [[0.3, 1.2], [-2, 0.5], [1, 3]]) {
      const x = Float64Array.from(p);
      const { scalar, ricci } = scalarCurvatureFD64(halfPlane, x);
      expect(Math.abs(scalar + 2), `at ${p}`).toBeLessThan(2e-8);
      expect(maxDiff(ricci, halfPlane(x).map((v) => -v))).toBeLessThan(1e-8 * maxAbs(halfPlane(x)));
    }
  });

  it('flat plane in polar coordinates: R = 0 and Ric = 0', () => {
    for (const p of [[0.5, 0.3], [2, -1], [1, 2]]) {
      const { scalar, ricci } = scalarCurvatureFD64(polar, Float64Array.from(p));
      expect(Math.abs(scalar), `at ${p}`).toBeLessThan(1e-9);
      expect(maxAbs(ricci)).toBeLessThan(1e-9);
    }
  });

  it('graph surface z = f(x, y) (non-diagonal g = I + ∇f∇fᵀ): R = 2K = 2 det ∇²f / (1 + |∇f|²)²', () => {
    // f = sin(x) cos(1.5y) + 0.3xy.
    const grad = (x: number, y: number) => [Math.cos(x) * Math.cos(1.5 * y) + 0.3 * y, -1.5 * Math.sin(x) * Math.sin(1.5 * y) + 0.3 * x];
    const metric = (p: Float64Array) => {
      const [fx, fy] = grad(p[0] as number, p[1] as number) as [number, number];
      return Float64Array.of(1 + fx * fx, fx * fy, fx * fy, 1 + fy * fy);
    };
    for (const [x, y] of [[0.3, -0.4], [1.2, 0.8], [-0.7, 2.1]] as const) {
      const fxx = -Math.sin(x) * Math.cos(1.5 * y);
      const fyy = -2.25 * Math.sin(x) * Math.cos(1.5 * y);
      const fxy = -1.5 * Math.cos(x) * Math.sin(1.5 * y) + 0.3;
      const [fx, fy] = grad(x, y) as [number, number];
      const R = (2 * (fxx * fyy - fxy * fxy)) / (1 + fx * fx + fy * fy) ** 2;
      expect(Math.abs(scalarCurvatureFD64(metric, Float64Array.of(x, y)).scalar - R), `at ${x}, ${y}`).toBeLessThan(1e-8);
    }
  });

  it('S² × H² (d = 4, block metric): R = 2 − 2 = 0, Ric = diag(g_S², −g_H²)', () => {
    const metric = (x: Float64Array) => {
      const s = 4 / (1 + (x[0] as number) ** 2 + (x[1] as number) ** 2) ** 2;
      const t = 1 / (x[3] as number) ** 2;
      return Float64Array.from([s, 0, 0, 0, 0, s, 0, 0, 0, 0, t, 0, 0, 0, 0, t]);
    };
    const x = Float64Array.of(0.4, -0.3, 0.2, 1.5);
    const { scalar, ricci } = scalarCurvatureFD64(metric, x);
    const g = metric(x);
    expect(Math.abs(scalar)).toBeLessThan(1e-8);
    expect(maxDiff(ricci, g.map((v, e) => (e < 8 ? v : -v)))).toBeLessThan(1e-8);
  });

  it('deep pullback metrics: the FD curvature equals the Gauss equation R = |H|² − |II|² built from mlpSecond64', () => {
    // An independent route for nets of any depth: II_ij = P⊥ ∂²f[e_i, e_j], P⊥ = I − J g⁻¹ Jᵀ, and
    // R = g^{ik} g^{jl} (⟨II_ik, II_jl⟩ − ⟨II_il, II_jk⟩). Measured agreement ≤ ~1e-8 relative.
    for (const [d, seed] of [[2, 21], [3, 22]] as const) {
      const net = randomMlp64([d, 8, 8, 6], ['tanh', 'gelu', 'softplus'], seed, 1.5);
      const x = Float64Array.from({ length: d }, (_, i) => 0.2 - 0.3 * i);
      const J = mlpJacobian64(net, x);
      const m = J.length / d;
      const g = pullbackMetric64(net)(x);
      const gi = inverse(g, d);
      const II: Float64Array[] = [];
      for (let i = 0; i < d; i++) {
        for (let j = 0; j < d; j++) {
          const S = mlpSecond64(net, x, unit(d, i), unit(d, j));
          // P⊥S = S − J g⁻¹ (Jᵀ S)
          const JtS = Float64Array.from({ length: d }, (_, a) => Array.from({ length: m }, (_, r) => (J[r * d + a] as number) * (S[r] as number)).reduce((p, q) => p + q, 0));
          const c = Float64Array.from({ length: d }, (_, a) => Array.from({ length: d }, (_, b) => (gi[a * d + b] as number) * (JtS[b] as number)).reduce((p, q) => p + q, 0));
          II.push(S.map((sv, r) => sv - Array.from({ length: d }, (_, a) => (J[r * d + a] as number) * (c[a] as number)).reduce((p, q) => p + q, 0)));
        }
      }
      const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, v, r) => s + v * (b[r] as number), 0);
      let R = 0;
      for (let i = 0; i < d; i++)
        for (let j = 0; j < d; j++)
          for (let k = 0; k < d; k++)
            for (let l = 0; l < d; l++) {
              const w = (gi[i * d + k] as number) * (gi[j * d + l] as number);
              R += w * (dot(II[i * d + k]!, II[j * d + l]!) - dot(II[i * d + l]!, II[j * d + k]!));
            }
      const fd = scalarCurvatureFD64(pullbackMetric64(net), x).scalar;
      expect(Math.abs(R)).toBeGreaterThan(1e-2);
      expect(Math.abs(fd - R) / Math.abs(R), `d=${d}`).toBeLessThan(1e-6);
    }
  });
});

describe('shallowScalarCurvature against the FD oracle', () => {
  it('agrees with scalarCurvatureFD64(pullbackMetric64(net, "width")) for sigmoid, tanh, gelu, d = 2, 3', () => {
    // Φ(x) = φ(Wx + b)/√N is one Dense layer with kernel Wᵀ, and g = JᵀJ/N. The FD error is set by
    // the conditioning of g (cond up to ~100 here) and the cancellation in R: measured ≤ 4e-8
    // relative at h = 4e-3, so 1e-6 relative (plus 1e-8 absolute for small R) has 25× headroom.
    const N = 7;
    for (const activation of ['sigmoid', 'tanh', 'gelu'] as const) {
      for (const d of [2, 3]) {
        const net = randomMlp64([d, N], [activation], 11 * d, 2);
        const { kernel, bias } = net[0]!;
        const W = Array.from({ length: N }, (_, j) => Array.from({ length: d }, (_, i) => kernel[i * N + j] as number));
        const pts = [Array.from({ length: d }, (_, i) => 0.3 - 0.25 * i), Array.from({ length: d }, (_, i) => -0.6 + 0.5 * i)];
        const closed = shallowScalarCurvature({ W, b: bias, activation, x: pts });
        pts.forEach((p, k) => {
          const fd = scalarCurvatureFD64(pullbackMetric64(net, 'width'), Float64Array.from(p)).scalar;
          const R = closed[k] as number;
          expect(Math.abs(fd - R), `${activation} d=${d} point ${k}: closed ${R}, FD ${fd}`).toBeLessThan(1e-6 * Math.abs(R) + 1e-8);
        });
      }
    }
  });
});

/** Inverse of a small matrix by Gauss–Jordan (test helper for the Gauss-equation check). */
function inverse(m: Float64Array, d: number): Float64Array {
  const a = Float64Array.from(m);
  const inv = diag(d, 1);
  for (let c = 0; c < d; c++) {
    const piv = a[c * d + c] as number;
    for (let k = 0; k < d; k++) {
      a[c * d + k] = (a[c * d + k] as number) / piv;
      inv[c * d + k] = (inv[c * d + k] as number) / piv;
    }
    for (let r = 0; r < d; r++) {
      if (r === c) continue;
      const f = a[r * d + c] as number;
      for (let k = 0; k < d; k++) {
        a[r * d + k] = (a[r * d + k] as number) - f * (a[c * d + k] as number);
        inv[r * d + k] = (inv[r * d + k] as number) - f * (inv[c * d + k] as number);
      }
    }
  }
  return inv;
}
