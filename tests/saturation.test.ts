/**
 * G(x) and F(x) of saturated predictions. A linear 2 → 3 softmax with logits (4t, 0, 0), the
 * predicted class moved to every position by permuting the kernel's columns, down to
 * 1 − p_ŷ ≈ 1e-30. The oracle is the pairwise form of the multinomial covariance,
 * diag p − ppᵀ = Σ_{i<j} p_i p_j (e_i − e_j)(e_i − e_j)ᵀ, a sum of non-negative terms in float64
 * with nothing to cancel: G = Σ_{i<j} p_i p_j (g_i − g_j)(g_i − g_j)ᵀ with g_i = ∇ₓ s_i, the
 * columns of the kernel. (The old factor, with the last class as reference, lost every digit of
 * p_ŷ(1 − p_ŷ) once 1 − p_ŷ < 1e-16: tr G was 5× off at t = 10 for ŷ = 0, and the rank fell to 1.)
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';
import { localDataMatrix, localFisher } from '../src/index.js';

const BASE = [
  [4, 0, 0],
  [0, 1, -1],
];

function linearSoftmax(perm: number[]): tfl.LayersModel {
  const m = tfl.sequential();
  m.add(tfl.layers.dense({ inputShape: [2], units: 3, activation: 'softmax' }));
  const W = BASE.map((row) => perm.map((c) => row[c] as number));
  m.setWeights([tf.tensor2d(W), tf.zeros([3])]);
  return m;
}

/** Probabilities of logits s in float64 (log-sum-exp). */
function softmax64(s: number[]): number[] {
  const max = Math.max(...s);
  const e = s.map((v) => Math.exp(v - max));
  const z = e.reduce((a, v) => a + v, 0);
  return e.map((v) => v / z);
}

/** Σ_{i<j} p_i p_j (g_i − g_j)(g_i − g_j)ᵀ for vectors g_i (float64, no cancellation). */
function pairwise(p: number[], g: number[][]): number[][] {
  const n = (g[0] as number[]).length;
  const M = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let i = 0; i < p.length; i++)
    for (let j = i + 1; j < p.length; j++) {
      const d = (g[i] as number[]).map((v, a) => v - ((g[j] as number[])[a] as number));
      const w = (p[i] as number) * (p[j] as number);
      for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) (M[a] as number[])[b] = ((M[a] as number[])[b] as number) + w * (d[a] as number) * (d[b] as number);
    }
  return M;
}

const PERMUTATIONS = [
  [0, 1, 2],
  [1, 0, 2],
  [1, 2, 0],
];

describe('saturated predictions: G and F exact to 1e-6 relative for every predicted class', () => {
  for (const perm of PERMUTATIONS) {
    const yhat = perm.indexOf(0);
    it(`predicted class ${yhat}, 1 − p_ŷ from 0.04 down to 1e-30`, async () => {
      const model = linearSoftmax(perm);
      const ts = [1, 5, 10, 17.5];
      const x = tf.tensor2d(ts.map((t) => [t, 0]));
      const { G, probs } = await localDataMatrix(model, x);
      const [trace, rank, { values, vectors }, Fres] = await Promise.all([G.trace(), G.rank(), G.eig(), localFisher(model, x)]);
      const trF = await Fres.F.trace();
      ts.forEach((t, b) => {
        const s = perm.map((c) => (c === 0 ? 4 * t : 0));
        const p = softmax64(s);
        const g = perm.map((c) => BASE.map((row) => row[c] as number)); // g_i = column i of the kernel
        const Gref = pairwise(p, g);
        const [a, off, c] = [Gref[0]?.[0] as number, Gref[0]?.[1] as number, Gref[1]?.[1] as number];
        const mid = (a + c) / 2;
        const rad = Math.hypot((a - c) / 2, off);
        const eig = [mid + rad, mid - rad];
        expect(Math.abs((trace[b] as number) - (a + c)) / (a + c), `tr G at t = ${t}`).toBeLessThan(1e-6);
        expect(rank[b], `rank at t = ${t}`).toBe(2);
        const got = values[b] as Float64Array;
        eig.forEach((l, i) => expect(Math.abs((got[i] as number) - l) / l, `eigenvalue ${i} at t = ${t}`).toBeLessThan(1e-6));
        // F over the kernel and bias: ∇_w s_i = (x ⊗ e_i, e_i), so ‖h_i − h_j‖² = 2(‖x‖² + 1).
        let trFref = 0;
        for (let i = 0; i < 3; i++) for (let j = i + 1; j < 3; j++) trFref += (p[i] as number) * (p[j] as number) * 2 * (t * t + 1);
        expect(Math.abs((trF[b] as number) - trFref) / trFref, `tr F at t = ${t}`).toBeLessThan(1e-6);
      });
      tf.dispose([x, probs, vectors, Fres.probs]);
      G.dispose();
      Fres.F.dispose();
      model.dispose();
    });
  }
});
