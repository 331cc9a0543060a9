/** LowRankPSD and RowSpaceProjector against dense float64 oracles (ml-matrix) on small n. */
import * as tf from '@tensorflow/tfjs-core';
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { describe, expect, it } from 'vitest';
import { LowRankPSD, RowSpaceProjector, ShapeError, ValueError } from '../src/index.js';
import { multinomialCotangents, multinomialCovSqrt, orthonormalRows, otherClass } from '../src/linalg/rows.js';
import { expectClose, expectNoLeak, randn } from './helpers.js';

/** Rows with prescribed singular values: U diag(s) Vᵀ with random orthonormal U (r×r), V (n×r). */
function rowsWithSingularValues(s: number[], n: number, seed: number): Float64Array {
  const r = s.length;
  const orth = (rows: number, cols: number, sd: number) => {
    const g = Matrix.from1DArray(rows, cols, Array.from(randn([rows, cols], sd).dataSync()));
    const b = orthonormalRows(g.to1DArray(), rows, cols, 0);
    return Matrix.from1DArray(rows, cols, Array.from(b.q));
  };
  const U = orth(r, r, seed);
  const Vt = orth(r, n, seed + 1);
  return Float64Array.from(U.mmul(Matrix.diag(s)).mmul(Vt).to1DArray());
}

describe('orthonormalRows (MGS2, float64)', () => {
  it('finds the rank of ill-conditioned and exactly dependent rows, with an orthonormal basis', () => {
    const n = 50;
    const ill = rowsWithSingularValues([1, 1e-2, 1e-4, 1e-6, 1e-8], n, 3);
    const b = orthonormalRows(ill, 5, n, 1e-12);
    expect(b.rank).toBe(5);
    const Q = Matrix.from1DArray(5, n, Array.from(b.q));
    expectClose(Q.mmul(Q.transpose()).to1DArray(), Matrix.eye(5).to1DArray(), { atol: 1e-13 });
    // A relative cut of 1e-5 drops the directions below it.
    expect(orthonormalRows(ill, 5, n, 1e-5).rank).toBe(3);
    // Rows 0..3 and a combination of them: rank 4, whatever the order.
    const dep = new Float64Array(5 * n);
    dep.set(ill.subarray(0, 4 * n));
    for (let t = 0; t < n; t++) dep[4 * n + t] = 0.3 * (ill[t] as number) - 2 * (ill[2 * n + t] as number);
    expect(orthonormalRows(dep, 5, n, 1e-12).rank).toBe(4);
    expect(orthonormalRows(new Float64Array(3 * n), 3, n).rank).toBe(0);
  });
});

describe('multinomialCovSqrt and multinomialRows (the covariance square root of G and F, in closed form)', () => {
  /**
   * max |SᵀS − Σ′| over the entries, Σ′ = diag(q) − qqᵀ (q = p without p_k), relative to what float64
   * rounding allows: each entry of SᵀS sums m products of entries of size ≤ √q_max · √q_max, so its
   * rounding is below m·ε·q_max. A ratio ≤ 1 is exact to rounding.
   */
  function errorInUlps(p: number[], k: number): number {
    const C = p.length;
    const m = C - 1;
    const S = multinomialCovSqrt(p, C, k);
    const q = p.filter((_, c) => c !== k);
    let err = 0;
    for (let i = 0; i < m; i++)
      for (let j = 0; j < m; j++) {
        let sts = 0;
        for (let r = 0; r < m; r++) sts += (S[r * m + i] as number) * (S[r * m + j] as number);
        err = Math.max(err, Math.abs(sts - ((i === j ? (q[i] as number) : 0) - (q[i] as number) * (q[j] as number))));
      }
    return err / (m * Number.EPSILON * Math.max(...q));
  }

  it('SᵀS = diag(q) − qqᵀ to float64 rounding: random, saturated (1 − p_k = 1e-12), with zeros, and 300 classes', () => {
    const random = (C: number, seed: number) => {
      let s = seed;
      const w = Array.from({ length: C }, () => Math.exp(4 * (((s = (s * 16807) % 2147483647) / 2147483647) - 0.5)));
      const z = w.reduce((a, v) => a + v, 0);
      return w.map((v) => v / z);
    };
    const p = random(10, 3);
    expect(errorInUlps(p, p.indexOf(Math.max(...p)))).toBeLessThan(1);
    expect(errorInUlps(p, 0)).toBeLessThan(1); // any reference class
    expect(errorInUlps([1 - 1e-12, 4e-13, 6e-13], 0)).toBeLessThan(1);
    expect(errorInUlps([0.5, 0, 0.5, 0], 0)).toBeLessThan(1);
    const big = random(300, 7); // (SᵀS in float64 here is O(C³): 300 classes, not 1,000)
    expect(errorInUlps(big, big.indexOf(Math.max(...big)))).toBeLessThan(1);
  });

  it('multinomialCotangents are S (e_c − e_k), S formed, for two reference classes and row ranges; each sums to 0', () => {
    const C = 6;
    const p64 = Float64Array.from([0.1, 0.3, 0.05, 0.25, 0.2, 0.1, 0.02, 0.08, 0.5, 0.1, 0.2, 0.1]);
    const reference = Int32Array.from([1, 2]);
    for (const [from, count] of [[0, C - 1], [2, 2], [4, 1]] as const) {
      const U = multinomialCotangents(p64, reference, C, from, count);
      expect(U.shape).toEqual([2, count, C]);
      const got = U.dataSync();
      const want = new Float64Array(2 * count * C);
      for (let b = 0; b < 2; b++) {
        const k = reference[b] as number;
        const S = multinomialCovSqrt(p64.subarray(b * C, (b + 1) * C), C, k);
        for (let r = 0; r < count; r++)
          for (let j = 0; j < C - 1; j++) {
            const s = S[(from + r) * (C - 1) + j] as number;
            const [at, atK] = [(b * count + r) * C + otherClass(j, k), (b * count + r) * C + k];
            want[at] = (want[at] as number) + s;
            want[atK] = (want[atK] as number) - s;
          }
      }
      expectClose(got, want, { rtol: 1e-6, label: `rows ${from}…${from + count - 1}` });
      for (let r = 0; r < 2 * count; r++) expect(Math.abs(Array.from(got.subarray(r * C, (r + 1) * C)).reduce((a, v) => a + v, 0))).toBeLessThan(1e-7);
      U.dispose();
    }
  });
});

describe('LowRankPSD', () => {
  const B = 2;
  const r = 4;
  const n = 12;

  function make(seed: number) {
    // Sample 0: four independent rows; sample 1: rank 2 (rows 2, 3 combine rows 0, 1).
    const factor = tf.tidy(() => {
      const a0 = randn([1, r, n], seed);
      const base = randn([1, 2, n], seed + 1);
      const mix = tf.tensor3d([[[1, 0], [0, 1], [2, -1], [0.5, 0.5]]]);
      return tf.concat([a0, tf.matMul(mix, base)], 0) as tf.Tensor3D;
    });
    return new LowRankPSD(factor);
  }

  function dense64(A: Float32Array, b: number): Matrix {
    const a = Matrix.from1DArray(r, n, Array.from(A.subarray(b * r * n, (b + 1) * r * n)));
    return a.transpose().mmul(a);
  }

  it('trace, matvec, quadForm and toDense agree with the dense float64 matrix', async () => {
    const M = make(1);
    const A = M.factor.dataSync() as Float32Array;
    const v = randn([B, n], 9);
    const tr = await M.trace();
    const Mv = M.matvec(v);
    const q = await M.quadForm(v);
    const D = M.toDense();
    for (let b = 0; b < B; b++) {
      const G = dense64(A, b);
      expect(tr[b]).toBeCloseTo(G.trace(), 10);
      const vb = Matrix.columnVector(Array.from(v.dataSync().subarray(b * n, (b + 1) * n)));
      const ref = G.mmul(vb);
      // float32 products of N(0,1) entries: ~1e-6 relative.
      expectClose(Mv.dataSync().subarray(b * n, (b + 1) * n), ref.to1DArray(), { rtol: 1e-5 });
      expect(Math.abs((q[b] as number) - vb.transpose().mmul(ref).get(0, 0))).toBeLessThan(1e-5 * Math.abs(q[b] as number));
      expectClose(D.dataSync().subarray(b * n * n, (b + 1) * n * n), G.to1DArray(), { rtol: 1e-5 });
    }
    tf.dispose([v, Mv, D]);
    M.dispose();
  });

  it('eig and rank: the nonzero eigenpairs of the dense matrix, in float64, rank-deficient samples included', async () => {
    const M = make(2);
    const A = M.factor.dataSync() as Float32Array;
    expect(await M.rank()).toEqual([4, 2]);
    const { values, vectors } = await M.eig();
    expect(vectors.shape).toEqual([B, 4, n]);
    for (let b = 0; b < B; b++) {
      const G = dense64(A, b);
      const ref = new EigenvalueDecomposition(G, { assumeSymmetric: true }).realEigenvalues.sort((x, y) => y - x);
      const k = b === 0 ? 4 : 2;
      expect(values[b]!.length).toBe(k);
      // The same float32 factor in float64 on both sides: agreement to ~1e-12 relative.
      expectClose(values[b]!, ref.slice(0, k), { rtol: 1e-10 });
      const V = Matrix.from1DArray(4, n, Array.from(vectors.dataSync().subarray(b * 4 * n, (b + 1) * 4 * n)));
      for (let m = 0; m < k; m++) {
        const vm = V.getRowVector(m).transpose();
        // G v = λ v, with the vectors rounded to float32.
        expectClose(G.mmul(vm).to1DArray(), Matrix.mul(vm, values[b]![m] as number).to1DArray(), { rtol: 1e-5 }); // (mul() is in place)
        expect(vm.norm()).toBeCloseTo(1, 6);
      }
      for (let m = k; m < 4; m++) expect(V.getRowVector(m).norm()).toBe(0);
    }
    vectors.dispose();
    M.dispose();
  });

  it('basis(): projections onto the range and the kernel are complementary, idempotent and orthogonal', async () => {
    const M = make(3);
    const P = await M.basis();
    expect(P.rank).toEqual([4, 2]);
    const v = randn([B, 3, 4], 5); // any shape with n numbers per sample
    const t = P.project(v);
    const k = P.projectKernel(v);
    expect(t.shape).toEqual(v.shape);
    expectClose(tf.add(t, k), v, { rtol: 1e-6, label: 'P + (I − P) = I' });
    expectClose(P.project(t), t, { rtol: 1e-6, label: 'idempotent' });
    expect(Math.abs(tf.sum(tf.mul(t, k)).dataSync()[0] as number)).toBeLessThan(1e-5 * (tf.sum(tf.square(v)).dataSync()[0] as number));
    // The kernel component is annihilated by M.
    const Mk = M.matvec(k);
    expect(tf.max(tf.abs(Mk)).dataSync()[0]).toBeLessThan(1e-4 * (tf.max(tf.abs(M.matvec(v))).dataSync()[0] as number));
    tf.dispose([v, t, k, Mk]);
    P.dispose();
    M.dispose();
  });

  it('leaks nothing beyond what it returns, and frees its factor on dispose', async () => {
    const before = tf.memory().numTensors;
    const M = make(4);
    const v = randn([B, n], 1);
    await expectNoLeak(() => M.trace(), () => []);
    await expectNoLeak(() => M.quadForm(v), () => []);
    await expectNoLeak(() => M.rank(), () => []);
    (await expectNoLeak(() => M.matvec(v), (t) => [t])).dispose();
    (await expectNoLeak(() => M.toDense(), (t) => [t])).dispose();
    const e = await expectNoLeak(() => M.eig(), (r) => [r.vectors]);
    e.vectors.dispose();
    const P = await expectNoLeak(() => M.basis(), (p) => [p.basis]);
    (await expectNoLeak(() => P.project(v), (t) => [t])).dispose();
    (await expectNoLeak(() => P.projectKernel(v), (t) => [t])).dispose();
    P.dispose();
    M.dispose();
    v.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('typed errors: bad factor, bad vectors, rtol, toDense past the size limit, use after dispose', async () => {
    expect(() => new LowRankPSD(tf.zeros([2, 3]) as unknown as tf.Tensor3D)).toThrow(ShapeError);
    const M = make(5);
    expect(() => M.matvec(tf.zeros([B, n + 1]))).toThrow(ShapeError);
    expect(() => M.matvec(tf.zeros([B + 1, n]))).toThrow(/batch of 2 vectors of 12 numbers/);
    await expect(M.quadForm(tf.zeros([B, n], 'int32'))).rejects.toThrow(ShapeError);
    await expect(M.rank({ rtol: 1 })).rejects.toThrow(ValueError);
    const big = new LowRankPSD(tf.zeros([1, 1, LowRankPSD.MAX_DENSE_DIM + 1]) as tf.Tensor3D);
    expect(() => big.toDense()).toThrow(/force/);
    big.dispose();
    M.dispose();
    expect(M.isDisposed).toBe(true);
    await expect(M.trace()).rejects.toThrow(/disposed/);
    expect(() => M.matvec(tf.zeros([B, n]))).toThrow(/disposed/);
  });

  it('every method of a disposed factor or projector says whose method it is, what happened and what to do, and leaks nothing', async () => {
    const M = make(6);
    const P = await M.basis();
    const v = randn([B, n], 2);
    const calls: Record<string, Record<string, () => unknown>> = {
      LowRankPSD: {
        trace: () => M.trace(),
        matvec: () => M.matvec(v),
        quadForm: () => M.quadForm(v),
        rank: () => M.rank(),
        basis: () => M.basis(),
        eig: () => M.eig(),
        toDense: () => M.toDense(),
      },
      RowSpaceProjector: { project: () => P.project(v), projectKernel: () => P.projectKernel(v) },
    };
    // Every public method is in the table (the internal and private ones, and dispose, aside).
    const methods = (proto: object, aside: string[]) =>
      Object.getOwnPropertyNames(proto).filter((k) => typeof Object.getOwnPropertyDescriptor(proto, k)?.value === 'function' && !['constructor', 'dispose', ...aside].includes(k));
    expect(methods(LowRankPSD.prototype, ['bases', 'assertLive']).sort()).toEqual(Object.keys(calls['LowRankPSD'] as object).sort());
    expect(methods(RowSpaceProjector.prototype, ['projectTrusted', 'projectAs', 'projectColumns', 'assertLive']).sort()).toEqual(Object.keys(calls['RowSpaceProjector'] as object).sort());
    M.dispose();
    P.dispose();
    for (const [cls, byMethod] of Object.entries(calls)) {
      const what = cls === 'LowRankPSD' ? 'factor' : 'projector';
      for (const [method, call] of Object.entries(byMethod)) {
        const before = tf.memory().numTensors;
        let err: unknown;
        try {
          await call();
        } catch (e) {
          err = e;
        }
        expect(err, `${cls}.${method}`).toBeInstanceOf(ValueError);
        expect((err as Error).message).toBe(
          `${cls}.${method}: this ${what} has been disposed (dispose() was called on it, or on the result that owns it); compute it again, and dispose it after its last use.`,
        );
        expect(tf.memory().numTensors, `${cls}.${method}: tensors left behind`).toBe(before);
      }
    }
    // eig reads the factor again once the bases are ready: disposed in between, it says so too.
    const M2 = make(7);
    const pending = M2.eig();
    M2.dispose();
    await expect(pending).rejects.toThrow(/^LowRankPSD\.eig: this factor has been disposed/);
    v.dispose();
  });
});
