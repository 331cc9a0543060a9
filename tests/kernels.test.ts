/**
 * infogeo's convolution gradient kernels against two oracles: a brute-force float64 loop written
 * from the definition, and the stock `cpu` kernels of tfjs (run directly on the cpu backend).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelBackend, TensorInfo } from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
// The stock cpu kernels, as shipped by tfjs (deep import: they are replaced in the registry).
import { conv2DBackpropFilterConfig } from '@tensorflow/tfjs-backend-cpu/dist/kernels/Conv2DBackpropFilter.js';
import { conv2DBackpropInputConfig } from '@tensorflow/tfjs-backend-cpu/dist/kernels/Conv2DBackpropInput.js';
// tfjs's own BatchNorm gradient, the oracle for infogeo's replacement.
import { fusedBatchNormGradConfig } from '@tensorflow/tfjs-core/dist/gradients/FusedBatchNorm_grad.js';
import { registerGradientKernels } from '../src/index.js';
import { expectClose, randn } from './helpers.js';

type Case = { name: string; x: [number, number, number, number]; f: [number, number]; co: number; s: number | [number, number]; pad: 'valid' | 'same' };
const CASES: Case[] = [
  { name: '3x3 valid s1', x: [2, 9, 9, 3], f: [3, 3], co: 4, s: 1, pad: 'valid' },
  { name: '3x3 same s1', x: [2, 8, 8, 2], f: [3, 3], co: 5, s: 1, pad: 'same' },
  { name: '3x3 same s2 (even H)', x: [2, 8, 8, 3], f: [3, 3], co: 4, s: 2, pad: 'same' },
  { name: '3x3 valid s2 (trailing row unused)', x: [3, 10, 10, 2], f: [3, 3], co: 3, s: 2, pad: 'valid' },
  { name: '1x1 same s2 (ResNet shortcut)', x: [2, 8, 8, 4], f: [1, 1], co: 3, s: 2, pad: 'same' },
  { name: '5x3 same s(3,1) non-square', x: [1, 7, 9, 2], f: [5, 3], co: 2, s: [3, 1], pad: 'same' },
  { name: '2x4 valid s1 non-square', x: [2, 6, 7, 2], f: [2, 4], co: 3, s: 1, pad: 'valid' },
];

/** The convolution's geometry, computed independently of tfjs (TensorFlow's SAME/VALID rules). */
function geometry(c: Case) {
  const [sh, sw] = typeof c.s === 'number' ? [c.s, c.s] : c.s;
  const [, H, W] = c.x;
  const [fh, fw] = c.f;
  const oh = c.pad === 'same' ? Math.ceil(H / sh) : Math.floor((H - fh) / sh) + 1;
  const ow = c.pad === 'same' ? Math.ceil(W / sw) : Math.floor((W - fw) / sw) + 1;
  const pt = c.pad === 'same' ? Math.floor(Math.max(0, (oh - 1) * sh + fh - H) / 2) : 0;
  const pl = c.pad === 'same' ? Math.floor(Math.max(0, (ow - 1) * sw + fw - W) / 2) : 0;
  return { sh, sw, oh, ow, pt, pl };
}

/** dW and dx of sum(conv(x, w) · dy) by the definition, in float64. */
function bruteForce(c: Case, x: Float32Array, w: Float32Array, dy: Float32Array) {
  const [N, H, W, Ci] = c.x;
  const [fh, fw] = c.f;
  const Co = c.co;
  const { sh, sw, oh, ow, pt, pl } = geometry(c);
  const dW = new Float64Array(fh * fw * Ci * Co);
  const dx = new Float64Array(N * H * W * Ci);
  for (let n = 0; n < N; n++)
    for (let i = 0; i < oh; i++)
      for (let j = 0; j < ow; j++)
        for (let a = 0; a < fh; a++)
          for (let b = 0; b < fw; b++) {
            const r = i * sh + a - pt;
            const q = j * sw + b - pl;
            if (r < 0 || r >= H || q < 0 || q >= W) continue;
            for (let ci = 0; ci < Ci; ci++)
              for (let co = 0; co < Co; co++) {
                const g = dy[((n * oh + i) * ow + j) * Co + co] as number;
                const xi = ((n * H + r) * W + q) * Ci + ci;
                const wi = ((a * fw + b) * Ci + ci) * Co + co;
                dW[wi] = (dW[wi] as number) + (x[xi] as number) * g;
                dx[xi] = (dx[xi] as number) + (w[wi] as number) * g;
              }
          }
  return { dW, dx, oh, ow };
}

/** Runs a stock cpu kernel on plain arrays, on the cpu backend, whatever backend is active. */
function stockCpu(config: typeof conv2DBackpropFilterConfig, inputs: Record<string, { shape: number[]; values: Float32Array }>, attrs: object) {
  const backend = tf.findBackend('cpu') as KernelBackend & {
    makeTensorInfo(shape: number[], dtype: string, values: Float32Array): TensorInfo;
    readSync(dataId: object): Float32Array;
    disposeData(dataId: object): boolean;
  };
  const infos: Record<string, TensorInfo> = {};
  for (const [k, v] of Object.entries(inputs)) infos[k] = backend.makeTensorInfo(v.shape, 'float32', v.values);
  const out = config.kernelFunc({ inputs: infos, backend, attrs: attrs as never }) as TensorInfo;
  const values = Float32Array.from(backend.readSync(out.dataId) as Float32Array);
  for (const t of [...Object.values(infos), out]) backend.disposeData(t.dataId);
  return values;
}

describe('registered convolution gradient kernels', () => {
  for (const c of CASES) {
    it(`dW and dx match a float64 loop and tfjs's cpu kernels: ${c.name}`, () => {
      const x = randn(c.x, 1) as tf.Tensor4D;
      const w = randn([...c.f, c.x[3], c.co], 2) as tf.Tensor4D;
      const y = tf.conv2d(x, w, c.s, c.pad);
      const { oh, ow } = geometry(c);
      expect(y.shape).toEqual([c.x[0], oh, ow, c.co]);
      const dy = randn(y.shape, 3) as tf.Tensor4D;
      const loss = (xx: tf.Tensor, ww: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(xx as tf.Tensor4D, ww as tf.Tensor4D, c.s, c.pad), dy));
      const [dx, dW] = tf.grads(loss)([x, w]);
      expect(dW!.shape).toEqual(w.shape);
      expect(dx!.shape).toEqual(x.shape);
      const ref = bruteForce(c, x.dataSync() as Float32Array, w.dataSync() as Float32Array, dy.dataSync() as Float32Array);
      // Each entry is a sum of up to N·oh·ow (dW) or fh·fw·Co (dx) products of N(0,1) numbers;
      // float32 accumulation error is ~1e-7 relative per term, so 1e-5 of the largest entry is ample.
      expectClose(dW!, ref.dW, { rtol: 1e-5, label: 'dW vs loop' });
      expectClose(dx!, ref.dx, { rtol: 1e-5, label: 'dx vs loop' });
      const attrs = { strides: c.s, pad: c.pad, dataFormat: 'NHWC', dimRoundingMode: undefined };
      const stockDW = stockCpu(
        conv2DBackpropFilterConfig,
        { x: { shape: c.x, values: x.dataSync() as Float32Array }, dy: { shape: dy.shape, values: dy.dataSync() as Float32Array } },
        { ...attrs, filterShape: w.shape },
      );
      const stockDx = stockCpu(
        conv2DBackpropInputConfig,
        { dy: { shape: dy.shape, values: dy.dataSync() as Float32Array }, filter: { shape: w.shape, values: w.dataSync() as Float32Array } },
        { ...attrs, inputShape: x.shape },
      );
      expectClose(dW!, stockDW, { rtol: 1e-5, label: 'dW vs stock cpu' });
      expectClose(dx!, stockDx, { rtol: 1e-5, label: 'dx vs stock cpu' });
      tf.dispose([x, w, y, dy, dx!, dW!]);
    });
  }

  it('registration is idempotent and leaks no tensors', () => {
    const before = tf.memory().numTensors;
    const restore = registerGradientKernels(); // already registered by the test setup: a no-op
    expect(tf.getKernel('Conv2DBackpropFilter', tf.getBackend())).toBeDefined();
    restore();
    expect(tf.getKernel('Conv2DBackpropFilter', tf.getBackend())).toBeDefined();
    const x = randn([2, 8, 8, 3], 4) as tf.Tensor4D;
    const w = randn([3, 3, 3, 4], 5) as tf.Tensor4D;
    const g = tf.grad((ww: tf.Tensor) => tf.sum(tf.conv2d(x, ww as tf.Tensor4D, 2, 'same')))(w);
    tf.dispose([x, w, g]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('restore() puts back the kernels that were registered before', () => {
    const backend = 'infogeo-test-backend';
    const stock = { kernelName: 'Conv2DBackpropFilter', backendName: backend, kernelFunc: () => ({ dataId: {}, shape: [], dtype: 'float32' as const }) };
    tf.registerKernel(stock);
    const restore = registerGradientKernels([backend]);
    expect(tf.getKernel('Conv2DBackpropFilter', backend)).not.toBe(stock);
    restore();
    expect(tf.getKernel('Conv2DBackpropFilter', backend)).toBe(stock);
    tf.unregisterKernel('Conv2DBackpropFilter', backend);
  });
});

describe('BatchNorm gradient', () => {
  /** Gradients of Σ dy·batchNorm(x, μ, σ², β, γ) with respect to all five inputs. */
  function grads(xShape: number[], paramShape: number[]) {
    return tf.tidy(() => {
      const x = randn(xShape, 1);
      const mean = randn(paramShape, 2, 0.3);
      const variance = tf.add(0.5, tf.abs(randn(paramShape, 3)));
      const offset = randn(paramShape, 4);
      const scale = randn(paramShape, 5);
      const dy = randn(xShape, 6);
      // (Without a scale, tfjs 4.22 cannot differentiate batchNorm at all: its engine clones every
      // input named in inputsToSave, and 'scale' is then undefined.)
      const f = (a: tf.Tensor, m: tf.Tensor, v: tf.Tensor, o: tf.Tensor, s: tf.Tensor) => tf.sum(tf.mul(tf.batchNorm(a, m, v, o, s, 1e-3), dy));
      return tf.grads(f)([x, mean, variance, offset, scale]);
    });
  }

  for (const [label, xShape, paramShape] of [
    ['per-channel statistics, NHWC', [2, 5, 4, 3], [3]],
    ['per-channel statistics, odd sizes', [3, 4, 5, 2], [2]],
    ['full-shape statistics', [2, 6], [2, 6]],
  ] as const) {
    it(`equals tfjs's own gradient for x, mean, variance, offset and scale: ${label}`, () => {
      const ours = grads([...xShape], [...paramShape]);
      tf.registerGradient(fusedBatchNormGradConfig);
      let theirs: tf.Tensor[];
      try {
        theirs = grads([...xShape], [...paramShape]);
      } finally {
        registerGradientKernels(); // puts infogeo's gradient back
      }
      expect(tf.getGradient('FusedBatchNorm')).not.toBe(fusedBatchNormGradConfig);
      ours.forEach((g, i) => {
        expect(g.shape).toEqual(theirs[i]!.shape);
        // Same formulas, different association of the products: float32 rounding.
        expectClose(g, theirs[i]!, { rtol: 1e-5, label: ['x', 'mean', 'variance', 'offset', 'scale'][i] });
      });
      tf.dispose([...ours, ...theirs!]);
    });
  }
});

describe('Slice on wasm (copied from a view of the heap)', () => {
  /** The slice by its definition, on the values read back. */
  function sliceByHand(values: ArrayLike<number>, shape: number[], begin: number[], size: number[]): number[] {
    const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, d) => a * d, 1));
    const out: number[] = [];
    const visit = (axis: number, offset: number) => {
      if (axis === shape.length) return void out.push(values[offset] as number);
      for (let i = 0; i < (size[axis] as number); i++) visit(axis + 1, offset + ((begin[axis] as number) + i) * (strides[axis] as number));
    };
    visit(0, 0);
    return out;
  }

  it('is installed on wasm only, and every slice (contiguous or not, float32 or int32) equals the definition', () => {
    const installed = tf.getKernel('Slice', tf.getBackend())?.kernelFunc.name === 'heapSlice';
    expect(installed).toBe(tf.getBackend() === 'wasm');
    const x = randn([5, 4, 3, 6], 77);
    const xi = tf.cast(tf.mul(x, 100), 'int32');
    const cases: [number[], number[]][] = [
      [[2, 0, 0, 0], [1, 4, 3, 6]], // one row: contiguous
      [[1, 0, 0, 0], [3, 4, 3, 6]], // rows: contiguous
      [[2, 1, 0, 0], [1, 2, 3, 6]], // inside a row: contiguous
      [[0, 1, 0, 0], [5, 2, 3, 6]], // across rows: not contiguous
      [[1, 1, 1, 2], [2, 2, 2, 3]], // not contiguous
      [[0, 0, 0, 5], [5, 4, 3, 1]], // runs of one
    ];
    for (const t of [x, xi]) {
      const values = t.dataSync();
      for (const [begin, size] of cases) {
        const got = tf.slice(t, begin, size);
        expect(got.dtype).toBe(t.dtype);
        expect(Array.from(got.dataSync())).toEqual(sliceByHand(values, t.shape, begin, size));
        got.dispose();
      }
    }
    tf.dispose([x, xi]);
  });
});
