/**
 * tfjs 4.22's computations that are wrong, as `registerGradientKernels` (called by the setup files)
 * corrects them, each against an exact reference that is not tf.grad:
 *
 * - the gradients of linear maps (average pooling, nearest-neighbour resizing, a depthwise conv in
 *   its input and in its filter) against the transpose of the map itself, Jᵀ dy with column k of J
 *   the map applied to the k-th basis tensor (forward kernels only, exact up to float32 sums);
 * - the piecewise-linear and affine ones (max pooling, broadcasting Maximum/Minimum, a channels-first
 *   BatchNorm's outputs and gradients) against float64 loops written from their definitions.
 *
 * What each test catches (measured on the stock kernels): AvgPoolGrad with 'same' padding divides a
 * border window by its full area; cpu's ResizeNearestNeighborGrad reads dy at the input's batch
 * stride (sample 1 wrong); wasm has no depthwise backprop kernels and its MaxPoolGrad misplaces a
 * negative window's gradient; Maximum/Minimum's gradients fail on a broadcast input; and the cpu and
 * wasm FusedBatchNorm read [1, C, 1, 1] statistics cyclically.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { expectClose, randn } from './helpers.js';

/** Jᵀ dy for a linear map f, from f applied to every basis tensor of x's shape (float64 sums). */
function transposeByBasis(f: (x: tf.Tensor) => tf.Tensor, xShape: number[], dy: tf.Tensor): Float64Array {
  const n = xShape.reduce((a, d) => a * d, 1);
  // Copies: on wasm dataSync may return a view of the heap, which a later kernel can move.
  const g = Float32Array.from(dy.dataSync());
  const out = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    const e = new Float32Array(n);
    e[k] = 1;
    const t = tf.tidy(() => f(tf.tensor(e, xShape)));
    const column = Float32Array.from(t.dataSync());
    t.dispose();
    let s = 0;
    for (let i = 0; i < column.length; i++) s += (column[i] as number) * (g[i] as number);
    out[k] = s;
  }
  return out;
}

/** tf.grad of Σ f(x)·dy, and the same from the transpose of f; f must be linear in x. */
function checkLinear(f: (x: tf.Tensor) => tf.Tensor, xShape: number[], seed: number, label: string): void {
  const x = randn(xShape, seed);
  const y = tf.tidy(() => f(x));
  const dy = randn(y.shape, seed + 1);
  const got = tf.tidy(() => tf.grad((z: tf.Tensor) => tf.sum(tf.mul(f(z), dy)))(x));
  expect(got.shape, label).toEqual(xShape);
  const want = transposeByBasis(f, xShape, dy);
  // Sums of a few float32 products in another order: rounding, ~1e-7 relative.
  expectClose(Float32Array.from(got.dataSync()), want, { rtol: 1e-5, label });
  tf.dispose([x, y, dy, got]);
}

describe('gradients of linear maps, against the transpose of the map', () => {
  it('average pooling (valid and same padding, overlapping and not): each window divided by its entries inside the input', () => {
    for (const [i, [pool, strides, pad]] of ([[3, 2, 'same'], [2, 1, 'same'], [3, 1, 'same'], [2, 2, 'valid'], [3, 2, 'valid']] as const).entries()) {
      checkLinear((x) => tf.avgPool(x as tf.Tensor4D, pool, strides, pad), [2, 5, 6, 2], 10 + 2 * i, `avgPool ${pool}/${strides} ${pad}`);
    }
  });

  it('nearest-neighbour resizing (UpSampling2D and other sizes), every sample of a batch', () => {
    const cases: [[number, number], boolean, boolean][] = [[[6, 6], false, false], [[5, 7], false, false], [[2, 5], false, false], [[6, 5], true, false], [[7, 4], false, true]];
    for (const [i, [size, alignCorners, halfPixelCenters]] of cases.entries()) {
      checkLinear((x) => tf.image.resizeNearestNeighbor(x as tf.Tensor4D, size, alignCorners, halfPixelCenters), [2, 3, 3, 2], 30 + 2 * i, `resize to ${size} align ${alignCorners} half ${halfPixelCenters}`);
    }
  });

  it('depthwise convolutions, in the input and in the filter (strided, channel multiplier 2): the kernels wasm lacks', () => {
    // (tfjs's depthwise gradient refuses dilations > 1 itself.)
    const geometries: [[number, number], 'same' | 'valid'][] = [[[2, 2], 'same'], [[1, 1], 'valid'], [[1, 1], 'same'], [[2, 1], 'valid']];
    for (const [i, [strides, pad]] of geometries.entries()) {
      const w = randn([3, 2, 2, 2], 50 + i) as tf.Tensor4D;
      const x = randn([2, 5, 6, 2], 60 + i) as tf.Tensor4D;
      checkLinear((k) => tf.depthwiseConv2d(x, k as tf.Tensor4D, strides, pad), [3, 2, 2, 2], 70 + i, `filter, strides ${strides} ${pad}`);
      checkLinear((z) => tf.depthwiseConv2d(z as tf.Tensor4D, w, strides, pad), [2, 5, 6, 2], 80 + i, `input, strides ${strides} ${pad}`);
      tf.dispose([w, x]);
    }
  });
});

describe('piecewise-linear and affine maps, against float64 loops', () => {
  it("max pooling gives each window's gradient to its first maximum, windows of negative values too", () => {
    const x = tf.sub(randn([2, 5, 6, 3], 90), 2); // most windows all negative
    const dy = randn([2, 3, 3, 3], 91);
    const got = tf.grad((z: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(z as tf.Tensor4D, 3, 2, 'same'), dy)))(x).dataSync();
    const xv = x.dataSync();
    const g = dy.dataSync();
    const want = new Float64Array(xv.length);
    // 'same' with a 3×3 window and stride 2 on 5×6: output 3×3, top padding 1, left padding 1 (TensorFlow's rule).
    for (let b = 0; b < 2; b++)
      for (let i = 0; i < 3; i++)
        for (let j = 0; j < 3; j++)
          for (let c = 0; c < 3; c++) {
            let best = -1;
            for (let u = 0; u < 3; u++)
              for (let v = 0; v < 3; v++) {
                const [r, q] = [2 * i + u - 1, 2 * j + v - 0];
                if (r < 0 || r >= 5 || q < 0 || q >= 6) continue;
                const k = ((b * 5 + r) * 6 + q) * 3 + c;
                if (best < 0 || (xv[k] as number) > (xv[best] as number)) best = k;
              }
            want[best] = (want[best] as number) + (g[((b * 3 + i) * 3 + j) * 3 + c] as number);
          }
    expectClose(got, want, { rtol: 1e-6, label: 'maxPool' });
    tf.dispose([x, dy]);
  });

  it('Maximum and Minimum of a broadcast input: its gradient summed over the broadcast axes (ties to the first)', () => {
    const a = randn([2, 3, 3, 4], 100);
    const b = tf.concat([randn([2, 1, 1, 3], 101), tf.reshape(tf.slice(a, [0, 0, 0, 3], [2, 1, 1, 1]), [2, 1, 1, 1])], 3); // a tie in channel 3
    const dy = randn([2, 3, 3, 4], 102);
    for (const kind of ['maximum', 'minimum'] as const) {
      const op = kind === 'maximum' ? tf.maximum : tf.minimum;
      const [ga, gb] = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(op(p, q), dy)))([a, b]);
      const [av, bv, g] = [a.dataSync(), b.dataSync(), dy.dataSync()];
      const wantA = new Float64Array(av.length);
      const wantB = new Float64Array(bv.length);
      for (let k = 0; k < av.length; k++) {
        const c = k % 4;
        const n = Math.floor(k / 36);
        const kb = n * 4 + c;
        const bWins = kind === 'maximum' ? (bv[kb] as number) > (av[k] as number) : (bv[kb] as number) < (av[k] as number);
        if (bWins) wantB[kb] = (wantB[kb] as number) + (g[k] as number);
        else wantA[k] = g[k] as number;
      }
      expect(gb?.shape).toEqual([2, 1, 1, 4]);
      expectClose(ga!.dataSync(), wantA, { rtol: 1e-6, label: `${kind} a` });
      expectClose(gb!.dataSync(), wantB, { rtol: 1e-6, label: `${kind} b` });
      tf.dispose([ga!, gb!]);
    }
    tf.dispose([a, b, dy]);
  });

  it('a BatchNorm with [1, C, 1, 1] statistics (channels first): outputs and gradients per channel', () => {
    const [N, C, H, W] = [2, 3, 4, 5];
    const x = randn([N, C, H, W], 110);
    const stat = (seed: number, shift = 0) => tf.reshape(tf.add(shift, tf.abs(randn([C], seed))), [1, C, 1, 1]);
    const [mean, variance, offset, scale] = [stat(111), stat(112, 0.5), stat(113), stat(114)];
    const dy = randn([N, C, H, W], 115);
    const eps = 1e-3;
    const f = (z: tf.Tensor, o: tf.Tensor, s: tf.Tensor) => tf.batchNorm(z, mean, variance, o, s, eps);
    const y = f(x, offset, scale);
    const [gx, go, gs] = tf.grads((z: tf.Tensor, o: tf.Tensor, s: tf.Tensor) => tf.sum(tf.mul(f(z, o, s), dy)))([x, offset, scale]);
    const [xv, mv, vv, ov, sv, g] = [x, mean, variance, offset, scale, dy].map((t) => t.dataSync()) as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];
    const want = { y: new Float64Array(xv.length), x: new Float64Array(xv.length), offset: new Float64Array(C), scale: new Float64Array(C) };
    for (let k = 0; k < xv.length; k++) {
      const c = Math.floor(k / (H * W)) % C;
      const inv = 1 / Math.sqrt((vv[c] as number) + eps);
      want.y[k] = ((xv[k] as number) - (mv[c] as number)) * (sv[c] as number) * inv + (ov[c] as number);
      want.x[k] = (g[k] as number) * (sv[c] as number) * inv;
      want.offset[c] = (want.offset[c] as number) + (g[k] as number);
      want.scale[c] = (want.scale[c] as number) + (g[k] as number) * ((xv[k] as number) - (mv[c] as number)) * inv;
    }
    expectClose(y.dataSync(), want.y, { rtol: 1e-6, label: 'outputs' });
    expectClose(gx!.dataSync(), want.x, { rtol: 1e-6, label: 'x' });
    expect(go?.shape).toEqual([1, C, 1, 1]);
    expectClose(go!.dataSync(), want.offset, { rtol: 1e-6, label: 'offset' });
    expectClose(gs!.dataSync(), want.scale, { rtol: 1e-5, label: 'scale' });
    tf.dispose([x, mean, variance, offset, scale, dy, y, gx!, go!, gs!]);
  });
});
