/**
 * Gradient kernels that tfjs lacks or runs slowly, registered on request (never at import time).
 *
 * `Conv2DBackpropFilter` — the filter gradient of a convolution — is missing on `wasm` and runs
 * ~20× slower than a convolution on `cpu`. tfjs needs it even for input Jacobians whenever a conv
 * has a linear activation (every conv before a BatchNorm), because its fused conv always computes
 * the filter gradient. infogeo's kernel rewrites it as one forward convolution over transposed
 * tensors, run by the backend's own (XNNPACK on wasm) `Conv2D` kernel:
 *
 *   dW[a, b, ci, co] = Σ_{n,i,j} x[n, i·s_h + a − p_t, j·s_w + b − p_l, ci] · dy[n, i, j, co]
 *
 * is a stride-1 convolution of xᵀ = x transposed to `[Ci, H, W, N]` (input channels as the batch,
 * samples as channels) with the filter dyᵀ = dy transposed to `[oh, ow, N, Co]`, dilated by the
 * stride, with explicit padding chosen so that the output is `[Ci, fh, fw, Co]`; one more transpose
 * gives `[fh, fw, Ci, Co]`.
 *
 * @module
 */
import { add, backend_util, conv2dTranspose, engine, getGradient, getKernel, mul, pad as tfPad, registerGradient, registerKernel, reshape, rsqrt, scalar, slice, slice_util, step, stridedSlice, sub, sum, unregisterKernel, util, zerosLike } from '@tensorflow/tfjs-core';
import type { GradConfig, KernelBackend, KernelConfig, KernelFunc, NamedAttrMap, Tensor, Tensor4D, TensorInfo } from '@tensorflow/tfjs-core';

const KERNEL = 'Conv2DBackpropFilter';
const BP_INPUT = 'Conv2DBackpropInput';
const SLICE = 'Slice';
const BATCH_NORM = 'FusedBatchNorm';
const RESIZE_GRAD = 'ResizeNearestNeighborGrad';
const MAX_POOL_GRAD = 'MaxPoolGrad';
const AVG_POOL_GRAD = 'AvgPoolGrad';
const DW_INPUT = 'DepthwiseConv2dNativeBackpropInput';
const DW_FILTER = 'DepthwiseConv2dNativeBackpropFilter';
const MARK = Symbol.for('infogeo.kernel');

/** The backends {@link registerGradientKernels} patches by default. */
export const PATCHED_BACKENDS = ['cpu', 'wasm'] as const;

function runKernel(backendName: string, name: string, backend: KernelBackend, inputs: Record<string, TensorInfo>, attrs: NamedAttrMap): TensorInfo {
  const config = getKernel(name, backendName);
  if (config === undefined) throw new Error(`Kernel '${name}' not registered for backend '${backendName}'`);
  const out = config.kernelFunc({ inputs, backend, attrs });
  return (Array.isArray(out) ? out[0] : out) as TensorInfo;
}

/** The attributes of tfjs's two convolution backprop kernels. */
interface ConvBackpropAttrs {
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number | backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  filterShape: [number, number, number, number];
  inputShape: [number, number, number, number];
}

type Run = (name: string, inputs: Record<string, TensorInfo>, attrs: NamedAttrMap) => TensorInfo;

/**
 * Calls `body` with a `run` that executes the backend's own kernels; the outputs of `run` are
 * scratch, freed when `body` returns. `body` returns its result through `keep` (a kernel call
 * whose output is not freed).
 */
function withScratch(backendName: string, backend: KernelBackend, body: (run: Run, keep: Run) => TensorInfo): TensorInfo {
  const temps: TensorInfo[] = [];
  const keep: Run = (name, inputs, attrs) => runKernel(backendName, name, backend, inputs, attrs);
  const run: Run = (name, inputs, attrs) => {
    const t = keep(name, inputs, attrs);
    temps.push(t);
    return t;
  };
  try {
    return body(run, keep);
  } finally {
    for (const t of temps) backend.disposeData(t.dataId);
  }
}

/** Attributes of a stride-1 NHWC `Conv2D` with explicit padding. */
function conv2DAttrs(top: number, bottom: number, left: number, right: number, dilations: [number, number]): NamedAttrMap {
  return {
    strides: [1, 1],
    pad: [[0, 0], [top, bottom], [left, right], [0, 0]],
    dataFormat: 'NHWC',
    dilations,
    dimRoundingMode: undefined,
  } as unknown as NamedAttrMap;
}

/** Builds the kernel function for one backend. Exported for the tests. @internal */
export function conv2DBackpropFilterViaConv(backendName: string): KernelFunc {
  return ({ inputs, backend: anyBackend, attrs }) => {
    const backend = anyBackend as KernelBackend;
    const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
    const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as ConvBackpropAttrs;
    if (dataFormat === 'NCHW') {
      throw new Error(`infogeo ${KERNEL}: only NHWC (channelsLast) is supported, got NCHW.`);
    }
    const [, H, W] = x.shape as [number, number, number, number];
    const info = backend_util.computeConv2DInfo([x.shape[0] as number, H, W, x.shape[3] as number], filterShape, strides, 1, pad, dimRoundingMode, false, 'channelsLast');
    const { strideHeight: sh, strideWidth: sw, filterHeight: fh, filterWidth: fw, outHeight: oh, outWidth: ow } = info;
    const top = info.padInfo.top;
    const left = info.padInfo.left;
    // Padding after the input so that the dilated filter slides exactly fh (fw) times; negative
    // means trailing input rows (columns) that no output reads: crop them instead.
    const bottom = fh + (oh - 1) * sh - H - top;
    const right = fw + (ow - 1) * sw - W - left;
    return withScratch(backendName, backend, (run, keep) => {
      let xT = run('Transpose', { x }, { perm: [3, 1, 2, 0] }); // [Ci, H, W, N]
      if (bottom < 0 || right < 0) {
        const [ci, , , n] = xT.shape as number[];
        xT = run('Slice', { x: xT }, { begin: [0, 0, 0, 0], size: [ci as number, H + Math.min(bottom, 0), W + Math.min(right, 0), n as number] });
      }
      const dyT = run('Transpose', { x: dy }, { perm: [1, 2, 0, 3] }); // [oh, ow, N, Co]
      const conv = run('Conv2D', { x: xT, filter: dyT }, conv2DAttrs(top, Math.max(bottom, 0), left, Math.max(right, 0), [sh, sw])); // [Ci, fh, fw, Co]
      return keep('Transpose', { x: conv }, { perm: [1, 2, 0, 3] });
    });
  };
}

/**
 * Builds a `Conv2DBackpropInput` for stride-1 convolutions (every 3×3 "same" or "valid" conv of a
 * LeNet or a ResNet block) as one forward convolution: for stride 1,
 *
 *   dx[n, r, c, ci] = Σ_{a,b,co} dy[n, r + p_t − a, c + p_l − b, co] · W[a, b, ci, co]
 *
 * is the convolution of dy with W rotated by 180° and its channel axes swapped, padded by
 * fh − 1 − p_t on top (fw − 1 − p_l on the left). On `wasm` this runs on XNNPACK instead of the
 * backend's plain loop (~10× faster). Strided convolutions go to `fallback`, the kernel that was
 * registered before. @internal
 */
export function conv2DBackpropInputViaConv(backendName: string, fallback: KernelConfig | undefined): KernelFunc {
  return (args) => {
    const { inputs, backend: anyBackend, attrs } = args;
    const backend = anyBackend as KernelBackend;
    const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
    const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs as unknown as ConvBackpropAttrs;
    const [sh, sw] = typeof strides === 'number' ? [strides, strides] : strides;
    const filterShape = filter.shape as [number, number, number, number];
    const info = backend_util.computeConv2DInfo(inputShape, filterShape, 1, 1, pad, dimRoundingMode, false, 'channelsLast');
    const { filterHeight: fh, filterWidth: fw, outHeight: oh, outWidth: ow } = info;
    const [, H, W] = inputShape;
    const top = fh - 1 - info.padInfo.top;
    const left = fw - 1 - info.padInfo.left;
    const bottom = H - oh + fh - 1 - top;
    const right = W - ow + fw - 1 - left;
    if (sh !== 1 || sw !== 1 || dataFormat === 'NCHW' || Math.min(top, left, bottom, right) < 0) {
      if (fallback === undefined) throw new Error(`Kernel '${BP_INPUT}' not registered for backend '${backendName}'`);
      return fallback.kernelFunc(args);
    }
    return withScratch(backendName, backend, (run, keep) => {
      const rotated = run('Reverse', { x: filter }, { dims: [0, 1] });
      const swapped = run('Transpose', { x: rotated }, { perm: [0, 1, 3, 2] }); // [fh, fw, Co, Ci]
      return keep('Conv2D', { x: dy, filter: swapped }, conv2DAttrs(top, bottom, left, right, [1, 1]));
    });
  };
}

/** What a contiguous slice needs of the wasm backend: an output, and views of its heap. */
interface HeapBackend {
  makeOutput(shape: number[], dtype: string): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array | Int32Array | Uint8Array;
}

/**
 * `Slice` on `wasm`, copied from a view of the heap: a contiguous slice (a run of whole rows, as any
 * slice along the first axis) in one copy, another one run of its last axis at a time. tfjs-wasm
 * 4.22 first copies the *whole* input out of the heap (`readSync`), so taking the K·B rows of a
 * cotangent one by one cost K·B copies of all of them (2 ms per row of a [18, 24, 24, 64] tensor,
 * against 0.1 ms). Strings run the backend's own kernel.
 */
export function heapSliceKernel(fallback: KernelConfig): KernelFunc {
  return function heapSlice(args) {
    const { inputs, attrs, backend } = args;
    const x = inputs['x'] as TensorInfo;
    const { begin, size } = attrs as unknown as { begin: number | number[]; size: number | number[] };
    const [b, s] = slice_util.parseSliceParams(x as unknown as Tensor, begin, size) as [number[], number[]];
    if (x.dtype === 'string') return fallback.kernelFunc(args);
    const heap = backend as unknown as HeapBackend;
    const out = heap.makeOutput(s, x.dtype);
    // The views are taken after the output's allocation, which may grow (and detach) the heap.
    const xv = heap.typedArrayFromHeap(x);
    const ov = heap.typedArrayFromHeap(out);
    const strides = util.computeStrides(x.shape);
    if (slice_util.isSliceContinous(x.shape, b, s)) {
      const offset = slice_util.computeFlatOffset(b, strides);
      ov.set(xv.subarray(offset, offset + util.sizeFromShape(s)));
      return out;
    }
    const rank = s.length;
    const run = s[rank - 1] as number;
    const idx = new Array<number>(rank - 1).fill(0);
    const runs = util.sizeFromShape(s) / run;
    for (let r = 0, o = 0; r < runs; r++, o += run) {
      let from = b[rank - 1] as number;
      for (let i = 0; i < rank - 1; i++) from += ((b[i] as number) + (idx[i] as number)) * (strides[i] as number);
      ov.set(xv.subarray(from, from + run), o);
      for (let i = rank - 2; i >= 0; i--) {
        idx[i] = (idx[i] as number) + 1;
        if ((idx[i] as number) < (s[i] as number)) break;
        idx[i] = 0;
      }
    }
    return out;
  };
}

/**
 * Whether `FusedBatchNorm`'s statistics of shape `s` are laid along the last axes of `x` (leading
 * ones apart), the only layout tfjs-backend-cpu and -wasm 4.22 compute right: they read statistic
 * `i mod size` for entry i of the flattened x.
 */
function statsOnLastAxes(s: readonly number[], x: readonly number[]): boolean {
  const core = s.slice(s.findIndex((d) => d !== 1) < 0 ? s.length : s.findIndex((d) => d !== 1));
  return core.every((d, k) => d === x[x.length - core.length + k]);
}

/**
 * `FusedBatchNorm` with statistics that broadcast along any axes (a channels-first BatchNormalization
 * reshapes them to `[1, C, 1, 1]`): y = (x − μ)·γ/√(σ² + ε) + β, each statistic read at the entry's
 * own coordinates. tfjs-backend-cpu and -wasm 4.22 read them cyclically along the flattened tensor,
 * which is right only when they lie on the last axis (those calls go to the backend's own kernel).
 * @internal
 */
export function broadcastBatchNormKernel(fallback: KernelConfig): KernelFunc {
  return function broadcastBatchNorm(args) {
    const { inputs, attrs, backend } = args;
    const x = inputs['x'] as TensorInfo;
    const names = ['mean', 'variance', 'offset', 'scale'] as const;
    const stats = names.map((n) => inputs[n] as TensorInfo | undefined);
    if (stats.every((t) => t === undefined || statsOnLastAxes(t.shape, x.shape))) return fallback.kernelFunc(args);
    const { varianceEpsilon } = attrs as unknown as { varianceEpsilon: number };
    const rank = x.shape.length;
    // Per statistic: its values and, per axis of x, its stride there (0 along a broadcast axis).
    const views = stats.map((t) => {
      if (t === undefined) return undefined;
      const shape = [...new Array<number>(rank - t.shape.length).fill(1), ...t.shape];
      const strides = util.computeStrides(shape);
      return { values: readFloats(backend, t), strides: shape.map((d, k) => (d === 1 ? 0 : k < rank - 1 ? (strides[k] as number) : 1)) };
    });
    const xv = readFloats(backend, x);
    const out = new Float32Array(xv.length);
    const idx = new Array<number>(rank).fill(0);
    const at = (v: (typeof views)[number], fallbackValue: number) => {
      if (v === undefined) return fallbackValue;
      let j = 0;
      for (let k = 0; k < rank; k++) j += (idx[k] as number) * (v.strides[k] as number);
      return v.values[j] as number;
    };
    const [mean, variance, offset, scale] = views;
    for (let i = 0; i < xv.length; i++) {
      out[i] = ((xv[i] as number) - at(mean, 0)) * (at(scale, 1) / Math.sqrt(at(variance, 1) + varianceEpsilon)) + at(offset, 0);
      for (let k = rank - 1; k >= 0; k--) {
        idx[k] = (idx[k] as number) + 1;
        if ((idx[k] as number) < (x.shape[k] as number)) break;
        idx[k] = 0;
      }
    }
    return floatResult(backend, x.shape, out);
  };
}

/** A tensor's values on `cpu` or `wasm`, read inside a kernel (a copy on wasm, the array on cpu). */
function readFloats(backend: unknown, t: TensorInfo): Float32Array {
  return (backend as KernelBackend).readSync(t.dataId) as Float32Array;
}

/** A float32 result of a kernel from its values, on `cpu` or `wasm` (in the heap there). */
function floatResult(backend: unknown, shape: number[], values: Float32Array): TensorInfo {
  if ('typedArrayFromHeap' in (backend as object)) {
    // The view is taken after the allocation, which may grow the heap.
    const heap = backend as HeapBackend;
    const result = heap.makeOutput(shape, 'float32');
    heap.typedArrayFromHeap(result).set(values);
    return result;
  }
  return (backend as { makeTensorInfo(shape: number[], dtype: string, values: Float32Array): TensorInfo }).makeTensorInfo(shape, 'float32', values);
}

/** What the two depthwise backprop kernels share: the geometry of the forward conv. */
interface DepthwiseBackpropAttrs {
  strides: [number, number] | number;
  dilations: [number, number] | number;
  pad: 'valid' | 'same' | number | backend_util.ExplicitPadding;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

/**
 * Calls `visit(yOffset, xOffset, fOffset)` for every (sample, output position, filter tap) of a
 * depthwise conv whose tap falls inside the input, with the flat offsets of channel 0 there
 * (y: `[B, oh, ow, C·m]`, x: `[B, H, W, C]`, filter: `[fh, fw, C, m]`).
 */
function depthwiseTaps(info: backend_util.Conv2DInfo, visit: (y: number, x: number, f: number) => void): void {
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: oh, outWidth: ow, outChannels: Cm, strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw, filterHeight: fh, filterWidth: fw } = info;
  const { top, left } = info.padInfo;
  const m = Cm / C;
  for (let b = 0; b < B; b++)
    for (let i = 0; i < oh; i++)
      for (let a = 0; a < fh; a++) {
        const r = i * sh + a * dh - top;
        if (r < 0 || r >= H) continue;
        for (let j = 0; j < ow; j++)
          for (let e = 0; e < fw; e++) {
            const c = j * sw + e * dw - left;
            if (c < 0 || c >= W) continue;
            visit(((b * oh + i) * ow + j) * Cm, ((b * H + r) * W + c) * C, (a * fw + e) * C * m);
          }
      }
}

/**
 * `DepthwiseConv2dNativeBackpropInput` and `…Filter`, which tfjs-backend-wasm 4.22 does not have
 * (every depthwise or separable conv then fails under tf.grad there): plain loops over the forward
 * conv's taps, with
 *
 *   dx[b, r, s, c] = Σ dy[b, i, j, c·m + q] W[a, e, c, q],  dW[a, e, c, q] = Σ x[b, r, s, c] dy[b, i, j, c·m + q]
 *
 * over the (i, j, a, e) with r = i·s_h + a·d_h − p_t, s = j·s_w + e·d_w − p_l. @internal
 */
export function depthwiseBackpropKernel(which: 'input' | 'filter'): KernelFunc {
  return function depthwiseBackprop(args) {
    const { inputs, attrs, backend } = args;
    const a = attrs as unknown as DepthwiseBackpropAttrs & { inputShape?: [number, number, number, number]; filterShape?: [number, number, number, number] };
    const dy = inputs['dy'] as TensorInfo;
    const other = (which === 'input' ? inputs['filter'] : inputs['x']) as TensorInfo;
    const xShape = (which === 'input' ? a.inputShape : other.shape) as [number, number, number, number];
    const fShape = (which === 'input' ? other.shape : a.filterShape) as [number, number, number, number];
    const info = backend_util.computeConv2DInfo(xShape, fShape, a.strides, a.dilations, a.pad, a.dimRoundingMode, true);
    const g = readFloats(backend, dy);
    const v = readFloats(backend, other);
    const C = info.inChannels;
    const m = info.outChannels / C;
    const out = new Float32Array(util.sizeFromShape(which === 'input' ? xShape : fShape));
    depthwiseTaps(info, (y, x, f) => {
      for (let c = 0; c < C; c++)
        for (let q = 0; q < m; q++) {
          const k = c * m + q;
          if (which === 'input') out[x + c] = (out[x + c] as number) + (g[y + k] as number) * (v[f + k] as number);
          else out[f + k] = (out[f + k] as number) + (v[x + c] as number) * (g[y + k] as number);
        }
    });
    return floatResult(backend, which === 'input' ? xShape : fShape, out);
  };
}

/** What the two pooling gradient kernels share: the input, dy's values and the pool's geometry. */
function poolGradArgs(args: Parameters<KernelFunc>[0]) {
  const { inputs, attrs, backend } = args;
  const x = inputs['input'] as TensorInfo;
  const a = attrs as unknown as { filterSize: [number, number] | number; strides: [number, number] | number; pad: 'valid' | 'same' | number; dimRoundingMode?: 'floor' | 'round' | 'ceil' };
  const info = backend_util.computePool2DInfo(x.shape as [number, number, number, number], a.filterSize, a.strides, 1, a.pad, a.dimRoundingMode);
  return { x, backend, g: readFloats(backend, inputs['dy'] as TensorInfo), info, ...info, top: info.padInfo.top, left: info.padInfo.left };
}

/**
 * `MaxPoolGrad` for `wasm`: each window's dy goes to the first maximum of the window (row-major, as
 * tfjs's cpu kernel, TensorFlow and PyTorch choose). tfjs-backend-wasm 4.22's misplaces the
 * gradient of a window whose values are all negative. @internal
 */
export function maxPoolGradKernel(args: Parameters<KernelFunc>[0]): TensorInfo {
  const { x, backend, g, batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw, effectiveFilterHeight: fh, effectiveFilterWidth: fw, top, left } = poolGradArgs(args);
  const xv = readFloats(backend, x);
  const out = new Float32Array(xv.length);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < oh; i++)
      for (let j = 0; j < ow; j++)
        for (let c = 0; c < C; c++) {
          let best = -1;
          let max = -Infinity;
          for (let u = 0; u < fh; u++) {
            const r = i * sh + u - top;
            if (r < 0 || r >= H) continue;
            for (let v = 0; v < fw; v++) {
              const q = j * sw + v - left;
              if (q < 0 || q >= W) continue;
              const k = ((b * H + r) * W + q) * C + c;
              if (best < 0 || (xv[k] as number) > max) {
                best = k;
                max = xv[k] as number;
              }
            }
          }
          if (best >= 0) out[best] = (out[best] as number) + (g[((b * oh + i) * ow + j) * C + c] as number);
        }
  return floatResult(backend, x.shape, out);
}

/**
 * `AvgPoolGrad` as the exact transpose of the forward average pool, which divides each window by
 * the number of its entries inside the input: tfjs 4.22's gradient kernels (cpu and wasm) divide by
 * the whole window's area, wrong along the border of a `'same'`-padded pool. @internal
 */
export function avgPoolGradKernel(args: Parameters<KernelFunc>[0]): TensorInfo {
  const { x, backend, g, batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw, effectiveFilterHeight: fh, effectiveFilterWidth: fw, top, left } = poolGradArgs(args);
  const out = new Float32Array(B * H * W * C);
  for (let i = 0; i < oh; i++) {
    const r0 = Math.max(0, i * sh - top);
    const r1 = Math.min(H, i * sh - top + fh);
    for (let j = 0; j < ow; j++) {
      const q0 = Math.max(0, j * sw - left);
      const q1 = Math.min(W, j * sw - left + fw);
      const share = 1 / ((r1 - r0) * (q1 - q0));
      for (let b = 0; b < B; b++) {
        const from = ((b * oh + i) * ow + j) * C;
        for (let r = r0; r < r1; r++)
          for (let q = q0; q < q1; q++) {
            const to = ((b * H + r) * W + q) * C;
            for (let c = 0; c < C; c++) out[to + c] = (out[to + c] as number) + (g[from + c] as number) * share;
          }
      }
    }
  }
  return floatResult(backend, x.shape, out);
}

/**
 * `ResizeNearestNeighborGrad` (the backward pass of UpSampling2D and of
 * `tf.image.resizeNearestNeighbor`) as the exact transpose of the forward kernel: each entry of dy
 * added to the input pixel the forward pass read it from (same rounding, `alignCorners` and
 * `halfPixelCenters` as tfjs's cpu forward kernel). tfjs-backend-cpu 4.22's reads dy at the
 * *input's* batch stride, so every sample after the first gets another part of dy. @internal
 */
export function resizeNearestNeighborGradKernel(args: Parameters<KernelFunc>[0]): TensorInfo {
  const { inputs, attrs, backend } = args;
  const images = inputs['images'] as TensorInfo;
  const dy = inputs['dy'] as TensorInfo;
  const { alignCorners, halfPixelCenters } = attrs as unknown as { alignCorners: boolean; halfPixelCenters?: boolean };
  const [B, H, W, C] = images.shape as [number, number, number, number];
  const [, h, w] = dy.shape as [number, number, number, number];
  const g = readFloats(backend, dy);
  const out = new Float32Array(B * H * W * C);
  // The forward kernel's source index of output index i along an axis of sizes (old, size).
  const sources = (old: number, size: number) => {
    const ratio = (alignCorners && size > 1 ? old - 1 : old) / (alignCorners && size > 1 ? size - 1 : size);
    return Array.from({ length: size }, (_, i) => {
      const frac = halfPixelCenters ? ratio * (i + 0.5) : ratio * i;
      const nearest = Math.min(old - 1, alignCorners ? Math.round(frac) : Math.floor(frac));
      return halfPixelCenters ? Math.max(0, nearest) : nearest;
    });
  };
  const rows = sources(H, h);
  const cols = sources(W, w);
  for (let b = 0; b < B; b++) {
    for (let r = 0; r < h; r++) {
      for (let c = 0; c < w; c++) {
        const from = ((b * h + r) * w + c) * C;
        const to = ((b * H + (rows[r] as number)) * W + (cols[c] as number)) * C;
        for (let k = 0; k < C; k++) out[to + k] = (out[to + k] as number) + (g[from + k] as number);
      }
    }
  }
  return floatResult(backend, images.shape, out);
}

/** `t` summed over the axes along which a tensor of shape `shape` was broadcast to `t`'s shape. */
function unbroadcast(t: Tensor, shape: number[]): Tensor {
  const axes = backend_util.getReductionAxes(shape, t.shape);
  return axes.length > 0 ? reshape(sum(t, axes), shape) : t;
}

/**
 * The gradient of `FusedBatchNorm` (every BatchNorm layer), the same math as tfjs's but with
 * broadcasting where tfjs's materialises `tile(1/√(var + ε))` to the full activation shape, and
 * with every term computed only when asked for (tfjs computes `x − mean` and `dy·scale`, two full
 * activations, on every backward pass, even when only ∂/∂x is wanted). On a ResNet-8 on wasm the
 * `Tile` alone was 40 % of the backward pass.
 *
 *   ∂/∂x = dy·γ/√(σ² + ε),  ∂/∂μ = −Σ dy·γ/√(σ² + ε),  ∂/∂σ² = Σ −½ (σ² + ε)^{−3/2} (x − μ) dy·γ,
 *   ∂/∂γ = Σ dy (x − μ)/√(σ² + ε),  ∂/∂β = Σ dy,
 *
 * sums over the broadcast (batch and spatial) axes when the statistics are per channel. @internal
 */
export const batchNormGradConfig: GradConfig = {
  kernelName: 'FusedBatchNorm',
  inputsToSave: ['x', 'mean', 'variance', 'scale'],
  gradFunc: (dy, saved, attrs) => {
    const g = dy as Tensor;
    const { varianceEpsilon } = attrs as unknown as { varianceEpsilon: number };
    const [x, mean, variance, scale] = saved as [Tensor, Tensor, Tensor, Tensor | undefined];
    const gamma = scale ?? scalar(1);
    // Summed over the axes the statistics broadcast along (all but the channels').
    const reduce = (t: Tensor) => unbroadcast(t, mean.shape);
    const invStd = () => rsqrt(add(variance, scalar(varianceEpsilon)));
    return {
      x: () => reshape(mul(g, mul(invStd(), gamma)), x.shape),
      mean: () => reduce(mul(g, mul(invStd(), mul(gamma, scalar(-1))))),
      variance: () => {
        const s = invStd();
        return reduce(mul(mul(sub(x, mean), g), mul(mul(mul(s, mul(s, s)), scalar(-0.5)), gamma)));
      },
      scale: () => reduce(mul(g, mul(sub(x, mean), invStd()))),
      offset: () => reduce(g),
    };
  },
};

/**
 * The gradients of `Maximum` and `Minimum` with broadcasting: tfjs 4.22's return dy masked to the
 * output's shape for both inputs, so that a broadcast input (a `[B, 1, 1, C]` floor) fails with "the
 * gradient of input 'b' has shape …". The same masks (ties to a), summed back over the broadcast
 * axes. @internal
 */
export const extremeGradConfigs: GradConfig[] = (['Maximum', 'Minimum'] as const).map((kernelName) => ({
  kernelName,
  inputsToSave: ['a', 'b'],
  gradFunc: (dy: Tensor | Tensor[], saved: Tensor[]) => {
    const [a, b] = saved as [Tensor, Tensor];
    const g = dy as Tensor;
    // 1 where b wins strictly (b > a for the maximum, b < a for the minimum): step(x) is 1 for x > 0.
    const bWins = () => step(kernelName === 'Maximum' ? sub(b, a) : sub(a, b));
    return {
      a: () => unbroadcast(mul(g, sub(scalar(1), bWins())), a.shape),
      b: () => unbroadcast(mul(g, bWins()), b.shape),
    };
  },
}));

/**
 * The gradient of a dilated `Conv2D` (tfjs 4.22 asserts dilation 1 in its gradient, so `tf.grad`,
 * and with it `strategy: 'loop'`, failed on every dilated Conv2D and Conv1D with a non-linear
 * activation): a convolution with dilations (dh, dw) is the undilated convolution with the
 * filter spread out, W_d[dh·i, dw·j] = W[i, j] and zeros between, of the same effective size (so
 * the same padding). ∂/∂x is W_d's transposed convolution; ∂/∂W is W_d's filter gradient read at
 * the taps. Undilated convolutions keep tfjs's gradient. NHWC only (tfjs-layers transposes a
 * channels-first input before its conv). @internal
 */
export function dilatedConvGradConfig(previous: GradConfig | undefined): GradConfig {
  return {
    kernelName: 'Conv2D',
    inputsToSave: ['x', 'filter'],
    gradFunc: (dy, saved, attrs) => {
      const { dilations, strides, pad, dataFormat, dimRoundingMode } = attrs as unknown as {
        dilations: number | [number, number];
        strides: number | [number, number];
        pad: 'valid' | 'same' | number | backend_util.ExplicitPadding;
        dataFormat: 'NHWC' | 'NCHW';
        dimRoundingMode?: 'floor' | 'round' | 'ceil';
      };
      const [dh, dw] = typeof dilations === 'number' ? [dilations, dilations] : dilations;
      if ((dh === 1 && dw === 1) || dataFormat === 'NCHW') {
        if (previous === undefined) throw new Error("infogeo: tfjs's Conv2D gradient is not registered");
        return previous.gradFunc(dy, saved, attrs);
      }
      const [x, filter] = saved as [Tensor4D, Tensor4D];
      const [kh, kw, ci, co] = filter.shape;
      const spread = (): Tensor4D => {
        const gaps = tfPad(reshape(filter, [kh, 1, kw, 1, ci, co]), [[0, 0], [0, dh - 1], [0, 0], [0, dw - 1], [0, 0], [0, 0]]);
        return slice(reshape(gaps, [kh * dh, kw * dw, ci, co]), [0, 0, 0, 0], [(kh - 1) * dh + 1, (kw - 1) * dw + 1, ci, co]) as Tensor4D;
      };
      return {
        x: () => conv2dTranspose(dy as Tensor4D, spread(), x.shape, strides, pad as 'valid' | 'same' | number, dimRoundingMode),
        filter: () => {
          const spreadShape = [(kh - 1) * dh + 1, (kw - 1) * dw + 1, ci, co];
          const full = engine().runKernel('Conv2DBackpropFilter', { x, dy: dy as Tensor }, { strides, pad, dataFormat, dimRoundingMode, filterShape: spreadShape } as unknown as NamedAttrMap) as unknown as Tensor4D;
          return stridedSlice(full, [0, 0, 0, 0], spreadShape, [dh, dw, 1, 1]);
        },
      };
    },
  };
}

/**
 * The gradients of the comparisons, which tfjs 4.22 does not register: zero almost everywhere
 * (a step), so that a layer built from one (`ThresholdedReLU`: x·[x > θ]) can be differentiated by
 * `tf.grad` as it is by infogeo's graph. Registered only where tfjs has none. @internal
 */
export const COMPARISONS = ['Greater', 'GreaterEqual', 'Less', 'LessEqual', 'Equal', 'NotEqual'] as const;
const comparisonGradConfig = (kernelName: string): GradConfig => ({
  kernelName,
  inputsToSave: ['a', 'b'],
  gradFunc: (_dy, saved) => {
    const [a, b] = saved as [Tensor, Tensor];
    return { a: () => zerosLike(a), b: () => zerosLike(b) };
  },
});

/**
 * Registers infogeo's exact, fast convolution gradient kernels for the `cpu` and `wasm` backends
 * (or the ones named): `Conv2DBackpropFilter` (missing on `wasm`, ~20× too slow on `cpu`) and, on
 * `wasm` only, `Conv2DBackpropInput` for stride-1 convolutions (strided ones keep the backend's
 * kernel), both as forward convolutions, and a `Slice` that copies only the slice (tfjs-wasm's
 * copies its whole input first); a `FusedBatchNorm` that reads statistics broadcast along any
 * axes at each entry's own coordinates (tfjs's cpu and wasm kernels read them cyclically, which is
 * wrong for a channels-first BatchNormalization); a `ResizeNearestNeighborGrad` (UpSampling2D's
 * backward pass) that reads each sample's own dy (tfjs's cpu kernel offsets every sample after the
 * first); an `AvgPoolGrad` that divides each window by its entries inside the input, as the forward
 * pool does (tfjs's divide by the whole window, wrong along a `'same'` pool's border); on `wasm`, the depthwise conv's two backprop kernels, which it lacks, and a `MaxPoolGrad`
 * that gives a window of negative values' gradient to its maximum; a BatchNorm gradient without tfjs's wasted
 * full-size `tile`, `Maximum`/`Minimum` gradients that sum over broadcast axes (tfjs's fail on
 * a broadcast input), a dilated `Conv2D`'s gradient (tfjs's refuses dilation > 1) and the
 * comparisons' zero gradients (tfjs has none, so `ThresholdedReLU` failed); gradients are shared by
 * all backends (tfjs cannot unregister a gradient: the restore function leaves the comparisons'). With them, models
 * with BatchNorm (ResNets) can be differentiated on `wasm`, input Jacobians of conv nets run
 * several times faster there, and weight gradients of conv nets are fast on both.
 *
 * Call it once, after importing the backend packages and before differentiating. It is idempotent.
 * It changes tfjs's global kernel registry (which is why importing infogeo does not do it).
 *
 * @param backends - backend names to patch. @defaultValue `['cpu', 'wasm']`
 * @returns a function that restores the kernels that were registered before.
 *
 * @example
 * ```ts
 * import '@tensorflow/tfjs-backend-wasm';
 * import { registerGradientKernels } from 'infogeo';
 * registerGradientKernels();
 * ```
 */
export function registerGradientKernels(backends: readonly string[] = PATCHED_BACKENDS): () => void {
  const restores: (() => void)[] = [];
  for (const backendName of backends) {
    const builders: [string, (previous: KernelConfig | undefined) => KernelFunc][] = [[KERNEL, () => conv2DBackpropFilterViaConv(backendName)]];
    // Measured: ~10× faster than wasm's own loop; on cpu no faster than cpu's kernel, so not there.
    if (backendName === 'wasm') builders.push([BP_INPUT, (previous) => conv2DBackpropInputViaConv(backendName, previous)]);
    if (backendName === 'wasm' && getKernel(SLICE, backendName)) builders.push([SLICE, (previous) => heapSliceKernel(previous as KernelConfig)]);
    // Missing on wasm: registered where the backend has none (once ours is there, the loop below skips it).
    for (const [name, which] of [[DW_INPUT, 'input'], [DW_FILTER, 'filter']] as const) {
      if (backendName === 'wasm' && getKernel(name, backendName) === undefined) builders.push([name, () => depthwiseBackpropKernel(which)]);
    }
    if (backendName === 'wasm' && getKernel(MAX_POOL_GRAD, backendName)) builders.push([MAX_POOL_GRAD, () => maxPoolGradKernel]);
    if (getKernel(AVG_POOL_GRAD, backendName)) builders.push([AVG_POOL_GRAD, () => avgPoolGradKernel]);
    if (getKernel(RESIZE_GRAD, backendName)) builders.push([RESIZE_GRAD, () => resizeNearestNeighborGradKernel]);
    if (getKernel(BATCH_NORM, backendName)) builders.push([BATCH_NORM, (previous) => broadcastBatchNormKernel(previous as KernelConfig)]);
    for (const [kernelName, build] of builders) {
      const previous = getKernel(kernelName, backendName) as (KernelConfig & { [MARK]?: true }) | undefined;
      if (previous?.[MARK]) continue;
      if (previous) unregisterKernel(kernelName, backendName);
      const config = { kernelName, backendName, kernelFunc: build(previous), [MARK]: true as const };
      registerKernel(config);
      restores.push(() => {
        if (getKernel(kernelName, backendName) === config) unregisterKernel(kernelName, backendName);
        if (previous) registerKernel(previous);
      });
    }
  }
  const tfjsConvGrad = getGradient('Conv2D') as (GradConfig & { [MARK]?: true }) | undefined;
  const convGrads = tfjsConvGrad?.[MARK] ? [] : [dilatedConvGradConfig(tfjsConvGrad)];
  const comparisonGrads = COMPARISONS.filter((k) => getGradient(k) === undefined).map(comparisonGradConfig);
  for (const grad of [batchNormGradConfig, ...extremeGradConfigs, ...convGrads, ...comparisonGrads]) {
    const previousGrad = getGradient(grad.kernelName) as (GradConfig & { [MARK]?: true }) | undefined;
    if (previousGrad?.[MARK]) continue;
    registerGradient({ ...grad, [MARK]: true } as GradConfig);
    restores.push(() => {
      if (previousGrad) registerGradient(previousGrad);
    });
  }
  return () => restores.reverse().forEach((r) => r());
}
