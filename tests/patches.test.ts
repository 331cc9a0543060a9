/**
 * The patches behind the conv layers' weight cotangents (src/jacobian/graph/weights.ts), on both of
 * their paths — the one-hot convolution (fh·fw·c ≤ 1024) and a slice per tap (more taps) — against
 * the definition: patch (b, p, q)[(i·fw + j)·c + k] = x_pad[b, p·s_h + i·d_h, q·s_w + j·d_w, k],
 * with TensorFlow's SAME/VALID padding computed here.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { patches } from '../src/jacobian/graph/weights.js';
import type { PatchGeometry } from '../src/jacobian/graph/weights.js';
import { randn } from './helpers.js';

function byDefinition(x: tf.Tensor4D, g: PatchGeometry): { values: Float64Array; shape: number[] } {
  const [B, H, W, c] = x.shape;
  const [fh, fw] = g.filter;
  const [sh, sw] = g.strides;
  const [dh, dw] = g.dilations;
  const eh = (fh - 1) * dh + 1;
  const ew = (fw - 1) * dw + 1;
  const Ho = g.padding === 'same' ? Math.ceil(H / sh) : Math.floor((H - eh) / sh) + 1;
  const Wo = g.padding === 'same' ? Math.ceil(W / sw) : Math.floor((W - ew) / sw) + 1;
  const top = g.padding === 'same' ? Math.floor(Math.max(0, (Ho - 1) * sh + eh - H) / 2) : 0;
  const left = g.padding === 'same' ? Math.floor(Math.max(0, (Wo - 1) * sw + ew - W) / 2) : 0;
  const xv = x.dataSync();
  const F = fh * fw * c;
  const values = new Float64Array(B * Ho * Wo * F);
  for (let b = 0; b < B; b++)
    for (let p = 0; p < Ho; p++)
      for (let q = 0; q < Wo; q++)
        for (let i = 0; i < fh; i++)
          for (let j = 0; j < fw; j++)
            for (let k = 0; k < c; k++) {
              const r = p * sh + i * dh - top;
              const s = q * sw + j * dw - left;
              const v = r >= 0 && r < H && s >= 0 && s < W ? (xv[((b * H + r) * W + s) * c + k] as number) : 0;
              values[((b * Ho + p) * Wo + q) * F + (i * fw + j) * c + k] = v;
            }
  return { values, shape: [B, Ho * Wo, F] };
}

const GEOMETRIES: [string, PatchGeometry][] = [
  ['3×3 same', { filter: [3, 3], strides: [1, 1], dilations: [1, 1], padding: 'same' }],
  ['3×3 stride 2 same', { filter: [3, 3], strides: [2, 2], dilations: [1, 1], padding: 'same' }],
  ['3×3 dilation 2 valid', { filter: [3, 3], strides: [1, 1], dilations: [2, 2], padding: 'valid' }],
  ['1×1 stride 2 same', { filter: [1, 1], strides: [2, 2], dilations: [1, 1], padding: 'same' }],
  ['5×3 strides (3, 1) valid', { filter: [5, 3], strides: [3, 1], dilations: [1, 1], padding: 'valid' }],
];

describe('patches (the conv weight cotangents read them)', () => {
  for (const [name, g] of GEOMETRIES) {
    for (const c of [3, 120]) {
      const path = g.filter[0] * g.filter[1] * c > 1024 ? 'slices' : 'one-hot conv';
      it(`${name}, ${c} channels (${path}): equal the definition exactly`, () => {
        const x = randn([2, 9, 8, c], 11) as tf.Tensor4D;
        const want = byDefinition(x, g);
        const got = patches(x, g);
        expect(got.shape).toEqual(want.shape);
        // Copies (times 1, plus zeros): exact.
        expect(Array.from(got.dataSync())).toEqual(Array.from(want.values));
        tf.dispose([x, got]);
      });
    }
  }
});
