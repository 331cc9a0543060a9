/**
 * Dense layers and convolutions (Conv1D, Conv2D, DepthwiseConv2D, SeparableConv2D,
 * Conv2DTranspose) as linear parts for {@link activationRule}: the map is the layer's own kernel
 * without its bias, the transpose a forward kernel too (a conv's transpose is a conv per stride
 * phase, see `phases.ts`; a transposed conv's transpose is a conv).
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { activationRule, softmaxRule } from './activation.js';
import type { LinearPart } from './activation.js';
import { convPhases, livePhases, materialize, phaseFilterData } from './phases.js';
import { channelsLast, config, derivedFromWeights, NotCompilable, pair, single, tail, weight } from './rule.js';
import type { FamilyRules, Layer, Rule, RuleContext } from './rule.js';
import { channelSums, convKernelGrad, denseKernelGrad, depthwiseKernelGrad, transposedConvKernelGrad } from './weights.js';
import type { WeightGrads } from './weights.js';

/** A BatchNorm's derivative in inference mode, per channel: γ/√(σ² + ε). */
export function batchNormScale(layer: Layer): tf.Tensor {
  const eps = Number(config(layer)['epsilon'] ?? 1e-3);
  const gamma = weight(layer, 'gamma');
  const s = tf.rsqrt(tf.add(weight(layer, 'moving_variance') as tf.Tensor, eps));
  return gamma ? tf.mul(s, gamma) : s;
}

function addBias(z: tf.Tensor, layer: Layer): tf.Tensor {
  const b = weight(layer, 'bias');
  return b ? tf.add(z, b) : z;
}

function kernelOf(layer: Layer, rank: number, name = 'kernel'): tf.Tensor {
  const k = weight(layer, name);
  if (k === undefined || k.rank !== rank) throw new NotCompilable(`kernel of '${layer.name}'`);
  return k;
}

function denseLinear(layer: Layer, inShape: number[], units: number): LinearPart {
  const kernel = () => weight(layer, 'kernel') as tf.Tensor2D;
  const n = kernelOf(layer, 2).shape[0] as number;
  if (inShape[inShape.length - 1] !== n) throw new NotCompilable(`Dense '${layer.name}' on its input`);
  const map = (x: tf.Tensor) => tf.reshape(tf.matMul(tf.reshape(x, [-1, n]), kernel()), [...x.shape.slice(0, -1), units]);
  return {
    prepare: () => [],
    pre: (x) => addBias(map(x), layer),
    // dx = dz Kᵀ as (K dzᵀ)ᵀ: the kernel itself is the matMul's stable operand, whose packing
    // XNNPACK (wasm) keeps between calls; a transposed copy made per call is packed again every
    // time (8 ms for the MNIST CNN's 9216×128 kernel, against 1.9 ms for 9 rows), and a matMul
    // with transposeB is slower still (11 ms).
    transpose: (dz) => {
      const rows = tf.reshape(dz, [-1, units]) as tf.Tensor2D;
      return tf.reshape(tf.transpose(tf.matMul(kernel(), tf.transpose(rows))), [dz.shape[0] as number, ...inShape]);
    },
    map,
    weightGrads: (dz, x) => ({ kernel: () => denseKernelGrad(x, dz, x.shape[0] as number), bias: () => channelSums(dz, x.shape[0] as number) }),
  };
}

/** A filter `[fh, fw, a, b]` dilated by (dh, dw): zeros between the taps. */
function dilate(W: Float32Array, [fh, fw, a, b]: number[], [dh, dw]: [number, number]): { data: Float32Array; shape: number[] } {
  if (dh === 1 && dw === 1) return { data: W, shape: [fh as number, fw as number, a as number, b as number] };
  const eh = dh * ((fh as number) - 1) + 1;
  const ew = dw * ((fw as number) - 1) + 1;
  const inner = (a as number) * (b as number);
  const data = new Float32Array(eh * ew * inner);
  for (let i = 0; i < (fh as number); i++) {
    for (let j = 0; j < (fw as number); j++) data.set(W.subarray((i * (fw as number) + j) * inner, (i * (fw as number) + j + 1) * inner), (i * dh * ew + j * dw) * inner);
  }
  return { data, shape: [eh, ew, a as number, b as number] };
}

/** What a 2-D conv (or a 1-D conv seen as one with height 1) is, read from its layer. */
interface ConvSpec {
  /** The rank of the layer's tensors: 4 (2-D convs) or 3 (Conv1D). */
  rank: 3 | 4;
  /** Input `[H, W, ci]` in the 2-D view. */
  inShape: [number, number, number];
  strides: [number, number];
  dilations: [number, number];
  padding: 'same' | 'valid';
  /** The kernel's shape as a 2-D conv's `[fh, fw, ci, co]` (depthwise: `[fh, fw, ci, mult]`). */
  kshape: [number, number, number, number];
  /** Depthwise: the channel multiplier. */
  multiplier?: number;
  /** The layer's kernel (its weight, in the layer's own shape). */
  kernel(): tf.Tensor;
  /** The forward kernel, without bias, in the layer's own rank. */
  run(x: tf.Tensor, kernel: tf.Tensor): tf.Tensor;
}

/**
 * The linear part of a convolution. Its transpose runs one stride-1 conv per stride phase with the
 * flipped (dilated) filter, optionally scaled per output channel by a BatchNorm folded into it.
 */
function convLinear(layer: Layer, spec: ConvSpec, foldedScale?: Layer): LinearPart {
  const { inShape, strides, dilations, padding, multiplier, kshape } = spec;
  if (dilations.some((d) => d > 1) && strides.some((s) => s > 1)) throw new NotCompilable(`dilated and strided conv '${layer.name}'`);
  // A depthwise kernel [fh, fw, ci, mult] is laid out as [fh, fw, 1, ci·mult]: its phase filters
  // come out as depthwise filters [kh, kw, ci·mult, 1].
  const asConv = multiplier === undefined ? kshape : [kshape[0], kshape[1], 1, kshape[2] * kshape[3]];
  const [dh, dw] = dilations;
  const dilated = [dh * (kshape[0] - 1) + 1, dw * (kshape[1] - 1) + 1];
  const info = tf.backend_util.computeConv2DInfo([1, ...inShape], kshape, strides, dilations, padding);
  const pad = { top: info.padInfo.top, left: info.padInfo.left };
  const co = asConv[3] as number;
  const phaseFilters = derivedFromWeights(
    () => [spec.kernel(), ...(foldedScale ? [weight(foldedScale, 'gamma'), weight(foldedScale, 'moving_variance')] : [])],
    () => {
      let w = spec.kernel().dataSync() as Float32Array;
      if (foldedScale !== undefined) {
        const scale = tf.tidy(() => batchNormScale(foldedScale).dataSync());
        w = Float32Array.from(w);
        for (let i = 0; i < w.length; i++) w[i] = (w[i] as number) * (scale[i % co] as number);
      }
      const d = dilate(w, asConv, dilations);
      return phaseFilterData(d.data, d.shape, strides).map(({ kh, kw, data }) => ({ data, shape: [kh, kw, co, asConv[2] as number] }));
    },
  );
  const live = livePhases(dilated, strides); // in the order of the filters `phaseFilters` makes
  return {
    prepare: () => [...phaseFilters(), ...(foldedScale ? [batchNormScale(foldedScale)] : [])],
    pre: (x) => addBias(spec.run(x, spec.kernel()), layer),
    transpose(dz, prepared) {
      const N = dz.shape[0] as number;
      const dz4 = (spec.rank === 3 ? tf.reshape(dz, [N, 1, dz.shape[1] as number, dz.shape[2] as number]) : dz) as tf.Tensor4D;
      const phases = live.map((p, i) => ({ ...p, filter: prepared[i] as tf.Tensor4D }));
      const g = convPhases(dz4, phases, inShape, strides, pad, multiplier);
      return spec.rank === 4 ? g : tf.reshape(materialize(g), [N, inShape[1], inShape[2]]);
    },
    map(dx, prepared) {
      const y = spec.run(dx, spec.kernel());
      return foldedScale ? tf.mul(y, prepared[live.length] as tf.Tensor) : y; // the scale, after the phase filters
    },
    // A folded BatchNorm's scale would sit between dz and the kernel: the weights' graph never folds.
    ...(foldedScale ? {} : { weightGrads: (dz: tf.Tensor, x: tf.Tensor) => convWeightGrads(spec, dz, x) }),
  };
}

/** A conv's kernel and bias cotangents per sample (a Conv1D as a 2-D conv of height 1). */
function convWeightGrads(spec: ConvSpec, dz: tf.Tensor, x: tf.Tensor): WeightGrads {
  const B = x.shape[0] as number;
  const geometry = { filter: [spec.kshape[0], spec.kshape[1]] as [number, number], strides: spec.strides, dilations: spec.dilations, padding: spec.padding };
  const as4d = (t: tf.Tensor) => (spec.rank === 4 ? t : tf.expandDims(t, 1)) as tf.Tensor4D;
  const kernel = () =>
    spec.multiplier === undefined ? convKernelGrad(as4d(x), as4d(dz), geometry, B) : depthwiseKernelGrad(as4d(x), as4d(dz), geometry, spec.multiplier, B);
  return { [spec.multiplier === undefined ? 'kernel' : 'depthwise_kernel']: kernel, bias: () => channelSums(dz, B) };
}

function padding(layer: Layer): 'same' | 'valid' {
  const p = config(layer)['padding'];
  if (p !== 'same' && p !== 'valid') throw new NotCompilable(`padding '${String(p)}' of '${layer.name}'`);
  return p;
}

/** The linear part of a Conv2D, Conv1D or DepthwiseConv2D layer (or a SeparableConv2D's depthwise half). */
function convPart(layer: Layer, inShape: number[], foldedScale?: Layer, depthwise = layer.getClassName() === 'DepthwiseConv2D'): LinearPart {
  channelsLast(layer);
  const c = config(layer);
  const pad = padding(layer);
  if (layer.getClassName() === 'Conv1D') {
    const [L, ci] = inShape as [number, number];
    const s = single(c['strides'], 1);
    const d = single(c['dilationRate'], 1);
    const [f, , co] = kernelOf(layer, 3, 'kernel').shape as [number, number, number];
    return convLinear(layer, {
      rank: 3, inShape: [1, L, ci], strides: [1, s], dilations: [1, d], padding: pad, kshape: [1, f, ci, co],
      kernel: () => weight(layer, 'kernel') as tf.Tensor,
      run: (x, k) => tf.conv1d(x as tf.Tensor3D, k as tf.Tensor3D, s, pad, 'NWC', d),
    }, foldedScale);
  }
  const [H, W] = inShape as [number, number, number];
  const strides = pair(c['strides'], 1);
  const dilations = pair(c['dilationRate'], 1);
  const name = depthwise ? 'depthwise_kernel' : 'kernel';
  const kshape = kernelOf(layer, 4, name).shape as [number, number, number, number];
  const kernel = () => weight(layer, name) as tf.Tensor;
  const common = { rank: 4 as const, inShape: [H, W, kshape[2]] as [number, number, number], strides, dilations, padding: pad, kshape, kernel };
  if (depthwise) {
    return convLinear(layer, {
      ...common, multiplier: kshape[3],
      run: (x, k) => tf.depthwiseConv2d(x as tf.Tensor4D, k as tf.Tensor4D, strides, pad, 'NHWC', dilations),
    });
  }
  return convLinear(layer, { ...common, run: (x, k) => tf.conv2d(x as tf.Tensor4D, k as tf.Tensor4D, strides, pad, 'NHWC', dilations) }, foldedScale);
}

/** A SeparableConv2D: a depthwise conv, then a 1 × 1 conv with the bias. */
function separablePart(layer: Layer, inShape: number[]): LinearPart {
  channelsLast(layer);
  const dw = convPart(layer, inShape, undefined, true);
  const pw = () => weight(layer, 'pointwise_kernel') as tf.Tensor4D;
  if (pw() === undefined) throw new NotCompilable(`pointwise kernel of '${layer.name}'`);
  const [ci, co] = (pw().shape as number[]).slice(2) as [number, number];
  // Prepared: the transposed pointwise kernel, then the depthwise half's tensors.
  return {
    prepare: () => [tf.transpose(tf.reshape(pw(), [ci, co])), ...dw.prepare()],
    pre: (x) => addBias(tf.conv2d(dw.map(x, []) as tf.Tensor4D, pw(), 1, 'valid'), layer),
    transpose(dz, prepared) {
      const dmid = tf.reshape(tf.matMul(tf.reshape(dz, [-1, co]), prepared[0] as tf.Tensor2D), [...dz.shape.slice(0, -1), ci]);
      return dw.transpose(dmid, prepared.slice(1));
    },
    map: (dx, prepared) => tf.conv2d(dw.map(dx, prepared.slice(1)) as tf.Tensor4D, pw(), 1, 'valid'),
    weightGrads(dz, x, prepared) {
      const B = x.shape[0] as number;
      const pointwise = { filter: [1, 1] as [number, number], strides: [1, 1] as [number, number], dilations: [1, 1] as [number, number], padding: 'valid' as const };
      const dmid = tf.reshape(tf.matMul(tf.reshape(dz, [-1, co]), prepared[0] as tf.Tensor2D), [...dz.shape.slice(0, -1), ci]);
      return {
        depthwise_kernel: (dw.weightGrads as NonNullable<LinearPart['weightGrads']>)(dmid, x, prepared.slice(1))['depthwise_kernel'] as () => tf.Tensor3D,
        pointwise_kernel: () => convKernelGrad(dw.map(x, []) as tf.Tensor4D, dz, pointwise, B),
        bias: () => channelSums(dz, B),
      };
    },
  };
}

/** A Conv2DTranspose: its transpose is the conv it is the transpose of. */
function transposedConvPart(layer: Layer, outShape: number[]): LinearPart {
  channelsLast(layer);
  const c = config(layer);
  const pad = padding(layer);
  const strides = pair(c['strides'], 1);
  if (pair(c['dilationRate'], 1).some((d) => d !== 1)) throw new NotCompilable(`dilated Conv2DTranspose '${layer.name}'`);
  const kernel = () => weight(layer, 'kernel') as tf.Tensor4D;
  kernelOf(layer, 4, 'kernel');
  const run = (x: tf.Tensor) => tf.conv2dTranspose(x as tf.Tensor4D, kernel(), [x.shape[0] as number, ...outShape] as [number, number, number, number], strides, pad);
  return {
    prepare: () => [],
    pre: (x) => addBias(run(x), layer),
    transpose: (dz) => tf.conv2d(dz as tf.Tensor4D, kernel(), strides, pad),
    map: (dx) => run(dx),
    weightGrads: (dz, x) => {
      const B = x.shape[0] as number;
      const [fh, fw] = kernel().shape;
      const geometry = { filter: [fh, fw] as [number, number], strides, dilations: [1, 1] as [number, number], padding: pad };
      return { kernel: () => transposedConvKernelGrad(x as tf.Tensor4D, dz as tf.Tensor4D, geometry, B), bias: () => channelSums(dz, B) };
    },
  };
}

/** The rule of a Dense layer or a convolution (its activation included). */
export function linearLayerRule({ layer, inShapes, outShape, linearHead }: RuleContext, foldedScale?: Layer): Rule {
  const inShape = tail(inShapes[0] as (number | null)[]);
  const c = config(layer);
  let part: LinearPart;
  switch (layer.getClassName()) {
    case 'Dense':
      part = denseLinear(layer, inShape, Number(c['units']));
      break;
    case 'SeparableConv2D':
      part = separablePart(layer, inShape);
      break;
    case 'Conv2DTranspose':
      part = transposedConvPart(layer, tail(outShape));
      break;
    default:
      part = convPart(layer, inShape, foldedScale);
  }
  // The classifier's trailing softmax: differentiate the logits, the Dense layer without it.
  if (linearHead) return activationRule(layer, 'linear', {}, part, true);
  const activation = String(c['activation'] ?? 'linear');
  // A softmax inside the network (over a Dense layer's units or a convolution's channels): not elementwise.
  if (activation === 'softmax' || activation === 'logSoftmax') return softmaxRule(layer, activation, -1, outShape.length, part);
  return activationRule(layer, activation, {}, part);
}

/** The rules of the Dense layer and the convolutions, by class name (their activation included). */
export const LINEAR_LAYER_RULES = {
  Dense: (ctx) => linearLayerRule(ctx),
  Conv1D: (ctx) => linearLayerRule(ctx),
  Conv2D: (ctx) => linearLayerRule(ctx),
  DepthwiseConv2D: (ctx) => linearLayerRule(ctx),
  SeparableConv2D: (ctx) => linearLayerRule(ctx),
  Conv2DTranspose: (ctx) => linearLayerRule(ctx),
} satisfies FamilyRules;
