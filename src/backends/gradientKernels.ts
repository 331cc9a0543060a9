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
import { add, backend_util, getGradient, getKernel, mul, registerGradient, registerKernel, reshape, rsqrt, scalar, slice_util, sub, sum, unregisterKernel, util } from '@tensorflow/tfjs-core';
import type { GradConfig, KernelBackend, KernelConfig, KernelFunc, NamedAttrMap, Tensor, TensorInfo } from '@tensorflow/tfjs-core';

const KERNEL = 'Conv2DBackpropFilter';
const BP_INPUT = 'Conv2DBackpropInput';
const SLICE = 'Slice';
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
    const reduce = (t: Tensor) => reshape(mean.rank === 1 ? sum(t, backend_util.getReductionAxes(mean.shape, x.shape)) : t, mean.shape);
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
 * Registers infogeo's exact, fast convolution gradient kernels for the `cpu` and `wasm` backends
 * (or the ones named): `Conv2DBackpropFilter` (missing on `wasm`, ~20× too slow on `cpu`) and, on
 * `wasm` only, `Conv2DBackpropInput` for stride-1 convolutions (strided ones keep the backend's
 * kernel), both as forward convolutions, and a `Slice` that copies only the slice (tfjs-wasm's
 * copies its whole input first); and a BatchNorm gradient without tfjs's wasted full-size
 * `tile` (gradients are shared by all backends). With them, models
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
  const previousGrad = getGradient('FusedBatchNorm') as (GradConfig & { [MARK]?: true }) | undefined;
  if (!previousGrad?.[MARK]) {
    registerGradient({ ...batchNormGradConfig, [MARK]: true } as GradConfig);
    restores.push(() => {
      if (previousGrad) registerGradient(previousGrad);
    });
  }
  return () => restores.reverse().forEach((r) => r());
}
