/**
 * infogeo's own reverse mode for the layers classifiers are made of: one forward pass records what
 * each layer's backward pass needs (a ReLU's mask, a max-pool's argmax, a BatchNorm's scale), then
 * every cotangent row goes backward through plain forward kernels, all rows of all samples in one
 * batch.
 *
 * Why not `tf.grad`: tfjs re-runs the forward pass for every backward pass, computes the weight
 * gradients of fused convolutions and dense layers even when only ∂/∂x is wanted, and on `wasm`
 * runs strided transposed convolutions and max-pool gradients as plain loops. Here the backward pass
 * of a convolution is itself a convolution (XNNPACK on `wasm`), also for strides > 1 (split into
 * stride² phases), and a max-pool's backward pass is a multiplication by a mask.
 *
 * Cotangents are laid out row-major over the rows: `dy[r·B + b]` is row r of sample b, so that a
 * per-sample factor `[B, ...]` multiplies `[R, B·…]` by broadcasting over the first axis.
 *
 * A model with a layer not covered here (or a configuration not covered, such as dilated or
 * channels-first convolutions) is not compiled, and the callers fall back to `tf.grad`.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { SymbolicTensor } from '@tensorflow/tfjs-layers';
import { samplesFirst, tileRows } from './rows.js';

type Layer = SymbolicTensor['sourceLayer'];

/** The backward rule of one layer. */
interface Rule {
  /** Forward pass for a batch of B samples: the output, and what `backward` needs. */
  forward(inputs: tf.Tensor[]): { y: tf.Tensor; saved: tf.Tensor[] };
  /**
   * Cotangents of the inputs from the cotangent `dy: [R·B, ...outShape]` of the output, with the
   * tensors its forward pass saved for a batch of B samples.
   */
  backward(dy: tf.Tensor, saved: tf.Tensor[]): tf.Tensor[];
}

interface GraphOp {
  layer: Layer;
  inShapes: (number | null)[][];
  inputs: number[];
  output: number;
  rule: Rule;
}

/** A model compiled for reverse mode, from its input to one target tensor. */
export interface CompiledGraph {
  /**
   * Bytes one cotangent row of one sample costs in a backward pass: a few tensors of the largest
   * activation alive at once (dy, dx and a conv's phase output), and the input-sized result.
   */
  readonly bytesPerRow: number;
  /** Runs the forward pass on `x: [B, ...inputShape]`; the tape holds what the backward pass needs. */
  forward(x: tf.Tensor): Tape;
}

/** One forward pass. Dispose it when done (it owns its tensors). */
export interface Tape {
  /** The target's value `[B, m]` (flattened per sample); owned by the tape. */
  readonly output: tf.Tensor2D;
  /**
   * Vector-Jacobian products for R cotangent rows `U: [R, m]`: returns `[B, R, n]` (n = input
   * size) with `out[b, r] = U[r] · ∂output[b]/∂x[b]`. The caller owns the result.
   */
  vjpRows(U: tf.Tensor2D): tf.Tensor3D;
  dispose(): void;
}

/** Why a model could not be compiled. */
export class NotCompilable extends Error {}

function product(shape: readonly (number | null)[]): number {
  return shape.reduce<number>((a, d) => a * (d ?? 1), 1);
}

function config(layer: Layer): Record<string, unknown> {
  return layer.getConfig() as Record<string, unknown>;
}

function weight(layer: Layer, suffix: string): tf.Tensor | undefined {
  return layer.weights.find((v) => v.originalName.endsWith(suffix))?.read();
}

function pair(v: unknown, fallback: number): [number, number] {
  if (Array.isArray(v)) return [Number(v[0]), Number(v[1] ?? v[0])];
  if (typeof v === 'number') return [v, v];
  return [fallback, fallback];
}

/** Multiplies `dy: [R·B, ...]` by a per-sample factor `f: [B, ...]` (same trailing shape). */
function mulPerSample(dy: tf.Tensor, f: tf.Tensor): tf.Tensor {
  const M = f.size;
  return tf.reshape(tf.mul(tf.reshape(dy, [-1, M]), tf.reshape(f, [1, M])), dy.shape);
}

/**
 * The derivative of an activation, as a function of its output y (so that only the output is
 * kept), or null when it cannot be written that way.
 */
function activationDerivative(name: string, options: { alpha?: number; maxValue?: number } = {}): ((y: tf.Tensor) => tf.Tensor) | null | 'identity' {
  switch (name) {
    case 'linear':
      return 'identity';
    case 'relu': {
      const max = options.maxValue;
      return max != null ? (y) => tf.cast(tf.logicalAnd(tf.greater(y, 0), tf.less(y, max)), 'float32') : (y) => tf.step(y);
    }
    case 'relu6':
      return activationDerivative('relu', { maxValue: 6 });
    case 'sigmoid':
      return (y) => tf.mul(y, tf.sub(1, y));
    case 'tanh':
      return (y) => tf.sub(1, tf.square(y));
    case 'softplus':
      return (y) => tf.sub(1, tf.exp(tf.neg(y)));
    case 'elu':
      return (y) => tf.where(tf.greater(y, 0), tf.onesLike(y), tf.add(y, 1));
    case 'leakyRelu':
      return (y) => tf.where(tf.greater(y, 0), tf.onesLike(y), tf.fill(y.shape, options.alpha ?? 0.3));
    default:
      return null;
  }
}

/**
 * Wraps a layer's forward pass (`layer.apply`, inference mode) with its activation's derivative.
 * `prepare` makes tensors the linear part's backward pass `inner` needs (once per forward pass).
 */
function activationRule(
  layer: Layer,
  name: string,
  options: { alpha?: number; maxValue?: number } = {},
  inner?: (dy: tf.Tensor, prepared: tf.Tensor[]) => tf.Tensor,
  prepare: () => tf.Tensor[] = () => [],
): Rule {
  const d = activationDerivative(name, options);
  if (d === null) throw new NotCompilable(`activation '${name}' of layer '${layer.name}'`);
  return {
    forward(inputs) {
      const y = apply(layer, inputs);
      const prepared = prepare();
      return { y, saved: d === 'identity' ? prepared : [...prepared, d(y)] };
    },
    backward(dy, saved) {
      const g = d === 'identity' ? dy : mulPerSample(dy, saved[saved.length - 1] as tf.Tensor);
      return [inner ? inner(g, saved) : g];
    },
  };
}

function apply(layer: Layer, inputs: tf.Tensor[]): tf.Tensor {
  const y = layer.apply(inputs.length === 1 ? (inputs[0] as tf.Tensor) : inputs, { training: false });
  if (Array.isArray(y)) throw new NotCompilable(`layer '${layer.name}' has several outputs`);
  return y as tf.Tensor;
}

/**
 * The filter that turns the backward pass of a conv (input `[H, W]`, filter `W: [fh, fw, ci, co]`,
 * strides s, top/left padding p) into one stride-1 forward conv. With t = i + p, phase
 * r = t mod s and q = ⌊t/s⌋, the input cotangent is
 *
 *   dx[i] = Σ_j dy[q − j] · W[s·j + r]   (j < ⌈f/s⌉, zero where s·j + r ≥ f),
 *
 * per axis: for each phase a "full" stride-1 correlation of dy with a flipped sub-filter. Phases
 * r ≥ f (a 1×1 conv with stride 2) have no filter taps and are left out. The live phases go into
 * one filter `[kh, kw, co, P_h·P_w·ci]` (P = min(s, f); output channels ordered phase-row,
 * phase-column, ci), built here in float32 on the CPU (the filter is small).
 */
export function phaseFilter(W: Float32Array, shape: readonly number[], [sh, sw]: [number, number]): tf.Tensor4D {
  const [fh, fw, ci, co] = shape as [number, number, number, number];
  const kh = Math.ceil(fh / sh);
  const kw = Math.ceil(fw / sw);
  const ph = Math.min(sh, fh);
  const pw = Math.min(sw, fw);
  const cout = ph * pw * ci;
  const out = new Float32Array(kh * kw * co * cout);
  for (let a = 0; a < kh; a++) {
    for (let b = 0; b < kw; b++) {
      for (let rh = 0; rh < ph; rh++) {
        const u = sh * (kh - 1 - a) + rh; // filter row, flipped
        if (u >= fh) continue;
        for (let rw = 0; rw < pw; rw++) {
          const v = sw * (kw - 1 - b) + rw;
          if (v >= fw) continue;
          for (let c = 0; c < ci; c++) {
            const src = ((u * fw + v) * ci + c) * co;
            const dstChannel = (rh * pw + rw) * ci + c;
            for (let o = 0; o < co; o++) out[((a * kw + b) * co + o) * cout + dstChannel] = W[src + o] as number;
          }
        }
      }
    }
  }
  return tf.tensor4d(out, [kh, kw, co, cout]);
}

/** Cotangent rows of the needed outputs q ∈ [q0, q1] of one axis, and how to pad dy for them. */
function phaseAxis(H: number, out: number, f: number, s: number, p: number) {
  const k = Math.ceil(f / s);
  const q0 = Math.floor(p / s);
  const q1 = Math.floor((H - 1 + p) / s);
  const before = k - 1 - q0;
  const after = q1 - q0 + k - out - before;
  return { k, q0, q1, before, after, start: p - s * q0 };
}

/**
 * The input cotangent of a 2-D convolution (NHWC, no dilation) as one stride-1 forward
 * convolution with the phase filter, then an interleave of the phases. @internal (tested directly)
 */
export function convBackpropInput(
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  filterShape: number[],
  inShape: [number, number, number],
  strides: [number, number],
  pad: { top: number; left: number },
): tf.Tensor4D {
  return tf.tidy(() => {
    const [H, W, ci] = inShape;
    const [N, oh, ow] = dy.shape;
    const [sh, sw] = strides;
    const ax = phaseAxis(H, oh, filterShape[0] as number, sh, pad.top);
    const ay = phaseAxis(W, ow, filterShape[1] as number, sw, pad.left);
    // Negative padding means rows of dy that no needed output reads: crop them.
    let d: tf.Tensor4D = dy;
    if (ax.before < 0 || ax.after < 0 || ay.before < 0 || ay.after < 0) {
      const t = Math.max(0, -ax.before);
      const l = Math.max(0, -ay.before);
      d = tf.slice(dy, [0, t, l, 0], [N, oh - t - Math.max(0, -ax.after), ow - l - Math.max(0, -ay.after), -1]);
    }
    const pads: [[number, number], [number, number], [number, number], [number, number]] = [
      [0, 0],
      [Math.max(0, ax.before), Math.max(0, ax.after)],
      [Math.max(0, ay.before), Math.max(0, ay.after)],
      [0, 0],
    ];
    let z = tf.conv2d(d, filter, 1, pads as unknown as 'valid'); // [N, Qh, Qw, Ph·Pw·ci]
    const Qh = ax.q1 - ax.q0 + 1;
    const Qw = ay.q1 - ay.q0 + 1;
    const ph = Math.min(sh, filterShape[0] as number);
    const pw = Math.min(sw, filterShape[1] as number);
    if (ph < sh || pw < sw) {
      // The phases without filter taps are zeros: [N·Qh·Qw, Ph, Pw, ci] → [N·Qh·Qw, sh, sw, ci].
      const live = tf.reshape(z, [N * Qh * Qw, ph, pw, ci]);
      z = tf.reshape(tf.pad(live, [[0, 0], [0, sh - ph], [0, sw - pw], [0, 0]]), [N, Qh, Qw, sh * sw * ci]);
    }
    let u: tf.Tensor4D = z;
    if (sh !== 1 || sw !== 1) {
      // [N·Qh, Qw, sh, sw·ci] → [N·Qh, sh, Qw, sw·ci] → [N, Qh·sh, Qw·sw, ci]
      const t = tf.transpose(tf.reshape(z, [N * Qh, Qw, sh, sw * ci]), [0, 2, 1, 3]);
      u = tf.reshape(t, [N, Qh * sh, Qw * sw, ci]);
    }
    if (ax.start === 0 && ay.start === 0 && Qh * sh === H && Qw * sw === W) return u;
    return tf.slice(u, [0, ax.start, ay.start, 0], [N, H, W, ci]);
  });
}

/**
 * `convRule` with `foldedScale`: the conv feeds only a BatchNorm, whose backward pass (a
 * per-output-channel scale) is folded into the conv's phase filter, saving one pass over the
 * largest cotangents.
 */
function convRule(layer: Layer, inShape: (number | null)[], foldedScale?: Layer): Rule {
  const c = config(layer);
  if (c['dataFormat'] === 'channelsFirst') throw new NotCompilable(`channels-first conv '${layer.name}'`);
  const dil = pair(c['dilationRate'], 1);
  if (dil[0] !== 1 || dil[1] !== 1) throw new NotCompilable(`dilated conv '${layer.name}'`);
  const padding = c['padding'];
  if (padding !== 'same' && padding !== 'valid') throw new NotCompilable(`padding '${String(padding)}' of '${layer.name}'`);
  const strides = pair(c['strides'], 1);
  const kernel = weight(layer, 'kernel');
  if (kernel === undefined || kernel.rank !== 4) throw new NotCompilable(`kernel of '${layer.name}'`);
  const [H, W, ci] = inShape.slice(1) as [number, number, number];
  const info = tf.backend_util.computeConv2DInfo([1, H, W, ci], kernel.shape as [number, number, number, number], strides, 1, padding);
  const pad = { top: info.padInfo.top, left: info.padInfo.left };
  // The weights can change between calls (training): the phase filter is built in each forward pass.
  const prepare = () => {
    const k = weight(layer, 'kernel') as tf.Tensor;
    let w = k.dataSync() as Float32Array;
    if (foldedScale !== undefined) {
      const scale = tf.tidy(() => batchNormScale(foldedScale).dataSync());
      const co = k.shape[3] as number;
      w = w.map((v, i) => v * (scale[i % co] as number));
    }
    return [phaseFilter(w, k.shape, strides)];
  };
  const inner = (dy: tf.Tensor, prepared: tf.Tensor[]) =>
    convBackpropInput(dy as tf.Tensor4D, prepared[0] as tf.Tensor4D, kernel.shape, [H, W, ci], strides, pad);
  return activationRule(layer, String(c['activation'] ?? 'linear'), {}, inner, prepare);
}

function denseRule(layer: Layer, inShape: (number | null)[], linearHead: boolean): Rule {
  const c = config(layer);
  const units = Number(c['units']);
  // The transposed kernel, made once per forward pass: a matMul with transposeB is ~50× slower on wasm.
  const prepare = () => [tf.transpose(weight(layer, 'kernel') as tf.Tensor2D)];
  const inner = (dy: tf.Tensor, prepared: tf.Tensor[]) => {
    const flat = tf.reshape(dy, [-1, units]);
    return tf.reshape(tf.matMul(flat, prepared[0] as tf.Tensor2D), [dy.shape[0] as number, ...(inShape.slice(1) as number[])]);
  };
  if (!linearHead) return activationRule(layer, String(c['activation'] ?? 'linear'), {}, inner, prepare);
  // The classifier's trailing softmax: differentiate the logits, the Dense layer without it.
  return {
    forward([x]) {
      const k = weight(layer, 'kernel') as tf.Tensor2D;
      const b = weight(layer, 'bias');
      const h = x as tf.Tensor;
      const z = tf.matMul(tf.reshape(h, [-1, k.shape[0]]), k);
      const y = b ? tf.add(z, b) : z;
      return { y: tf.reshape(y, [...h.shape.slice(0, -1), units]), saved: prepare() };
    },
    backward: (dy, saved) => [inner(dy, saved)],
  };
}

/**
 * Non-overlapping pooling (pool = strides, 'valid'). The forward pass regroups each window's
 * entries as `[B·oh·ow, ph·pw, C]`; the backward pass spreads dy over the window (a max-pool: to its
 * first maximum, as tfjs's cpu kernel, TensorFlow and PyTorch do) and interleaves it back.
 */
function windowRule(layer: Layer, inShape: (number | null)[], kind: 'max' | 'avg'): Rule {
  const c = config(layer);
  const pool = pair(c['poolSize'], 2);
  const strides = pair(c['strides'] ?? c['poolSize'], pool[0]);
  if (c['dataFormat'] === 'channelsFirst' || c['padding'] !== 'valid' || strides[0] !== pool[0] || strides[1] !== pool[1]) {
    throw new NotCompilable(`overlapping or padded pooling '${layer.name}'`);
  }
  const [H, W, C] = inShape.slice(1) as [number, number, number];
  const [ph, pw] = pool;
  const oh = Math.floor(H / ph);
  const ow = Math.floor(W / pw);
  const area = ph * pw;
  return {
    forward(inputs) {
      const y = apply(layer, inputs);
      if (kind === 'avg') return { y, saved: [tf.fill([1, 1, area, 1], 1 / area)] };
      const x = inputs[0] as tf.Tensor4D;
      const B = x.shape[0];
      const crop = oh * ph === H && ow * pw === W ? x : tf.slice(x, [0, 0, 0, 0], [B, oh * ph, ow * pw, C]);
      // [B·oh, ph, ow, pw·C] → [B·oh, ow, ph, pw·C] → [B·oh·ow, ph·pw, C]
      const windows = tf.reshape(tf.transpose(tf.reshape(crop, [B * oh, ph, ow, pw * C]), [0, 2, 1, 3]), [B * oh * ow, area, C]);
      // x − max = 0 exactly where x = max; a broadcast subtraction is ~25× faster than a broadcast
      // comparison on wasm.
      const hit = tf.cast(tf.equal(tf.sub(windows, tf.reshape(y, [B * oh * ow, 1, C])), 0), 'float32');
      const first = tf.mul(hit, tf.cast(tf.equal(tf.cumsum(hit, 1), 1), 'float32'));
      return { y, saved: [tf.reshape(first, [1, B * oh * ow, area, C])] };
    },
    backward(dy, saved) {
      const N = dy.shape[0] as number;
      const mask = saved[0] as tf.Tensor;
      // Rows × windows: the mask has the windows of B samples (R rows each), the average none.
      const windows = kind === 'max' ? (mask.shape[1] as number) : N * oh * ow;
      const g = tf.mul(tf.reshape(dy, [(N * oh * ow) / windows, windows, 1, C]), mask); // [R, B·oh·ow, ph·pw, C]
      // [N·oh, ow, ph, pw·C] → [N·oh, ph, ow, pw·C] → [N, oh·ph, ow·pw, C]
      const t = tf.transpose(tf.reshape(g, [N * oh, ow, ph, pw * C]), [0, 2, 1, 3]);
      const dx = tf.reshape(t, [N, oh * ph, ow * pw, C]);
      return [oh * ph === H && ow * pw === W ? dx : tf.pad(dx, [[0, 0], [0, H - oh * ph], [0, W - ow * pw], [0, 0]])];
    },
  };
}

/** A BatchNorm's derivative in inference mode, per channel: γ/√(σ² + ε). */
function batchNormScale(layer: Layer): tf.Tensor {
  const eps = Number(config(layer)['epsilon'] ?? 1e-3);
  const gamma = weight(layer, 'gamma');
  const s = tf.rsqrt(tf.add(weight(layer, 'moving_variance') as tf.Tensor, eps));
  return gamma ? tf.mul(s, gamma) : s;
}

/** BatchNorm in inference mode; `folded`: its scale is applied by the conv before it. */
function batchNormRule(layer: Layer, inShape: (number | null)[], folded = false): Rule {
  const c = config(layer);
  const axis = Number(c['axis'] ?? -1);
  if (axis !== -1 && axis !== inShape.length - 1) throw new NotCompilable(`BatchNormalization '${layer.name}' over axis ${axis}`);
  if (weight(layer, 'moving_variance') === undefined) throw new NotCompilable(`moving variance of '${layer.name}'`);
  return {
    forward: (inputs) => ({ y: apply(layer, inputs), saved: folded ? [] : [batchNormScale(layer)] }),
    backward: (dy, saved) => [folded ? dy : tf.mul(dy, saved[0] as tf.Tensor)],
  };
}

const IDENTITY_LAYERS = new Set(['Dropout', 'SpatialDropout1D', 'SpatialDropout2D', 'GaussianNoise', 'GaussianDropout', 'AlphaDropout']);

function ruleFor(layer: Layer, inShapes: (number | null)[][], outShape: (number | null)[], linearHead: boolean): Rule {
  const cls = layer.getClassName();
  const c = config(layer);
  const inShape = inShapes[0] as (number | null)[];
  const passThrough = (backward: Rule['backward']): Rule => ({ forward: (inputs) => ({ y: apply(layer, inputs), saved: [] }), backward });
  switch (cls) {
    case 'Conv2D':
      return convRule(layer, inShape);
    case 'Dense':
      return denseRule(layer, inShape, linearHead);
    case 'Activation':
      return activationRule(layer, String(c['activation']));
    case 'ReLU':
      if (c['threshold'] != null && c['threshold'] !== 0) throw new NotCompilable(`ReLU threshold of '${layer.name}'`);
      return activationRule(layer, 'relu', { maxValue: c['maxValue'] as number | undefined });
    case 'LeakyReLU':
      if (!(Number(c['alpha'] ?? 0.3) > 0)) throw new NotCompilable(`LeakyReLU alpha of '${layer.name}'`);
      return activationRule(layer, 'leakyRelu', { alpha: Number(c['alpha'] ?? 0.3) });
    case 'ELU':
      if (Number(c['alpha'] ?? 1) !== 1) throw new NotCompilable(`ELU alpha of '${layer.name}'`);
      return activationRule(layer, 'elu');
    case 'MaxPooling2D':
      return windowRule(layer, inShape, 'max');
    case 'AveragePooling2D':
      return windowRule(layer, inShape, 'avg');
    case 'GlobalAveragePooling2D': {
      if (c['dataFormat'] === 'channelsFirst') throw new NotCompilable(`channels-first pooling '${layer.name}'`);
      const [H, W, C] = inShape.slice(1) as [number, number, number];
      return passThrough((dy) => [tf.mul(tf.reshape(dy, [-1, 1, 1, C]), tf.fill([1, H, W, 1], 1 / (H * W)))]);
    }
    case 'BatchNormalization':
      return batchNormRule(layer, inShape);
    case 'Add':
      return passThrough((dy) => inShapes.map(() => dy));
    case 'Concatenate': {
      const axis = Number(c['axis'] ?? -1);
      const rank = outShape.length;
      const ax = axis < 0 ? rank + axis : axis;
      const sizes = inShapes.map((s) => s[ax] as number);
      return passThrough((dy) => tf.split(dy, sizes, ax));
    }
    case 'Flatten':
    case 'Reshape':
      return passThrough((dy) => [tf.reshape(dy, [dy.shape[0] as number, ...(inShape.slice(1) as number[])])]);
    default:
      if (IDENTITY_LAYERS.has(cls)) return passThrough((dy) => [dy]);
      throw new NotCompilable(`layer '${layer.name}' (${cls})`);
  }
}

/** Folds each BatchNorm that is the only consumer of a linear Conv2D into that conv's backward pass. */
function foldBatchNorms(ops: GraphOp[]): void {
  const consumers = new Map<number, number>();
  for (const op of ops) for (const i of op.inputs) consumers.set(i, (consumers.get(i) ?? 0) + 1);
  for (const bn of ops) {
    if (bn.layer.getClassName() !== 'BatchNormalization' || bn.inputs.length !== 1) continue;
    const slot = bn.inputs[0] as number;
    const conv = ops.find((op) => op.output === slot);
    if (conv === undefined || conv.layer.getClassName() !== 'Conv2D' || consumers.get(slot) !== 1) continue;
    if ((config(conv.layer)['activation'] ?? 'linear') !== 'linear') continue;
    conv.rule = convRule(conv.layer, conv.inShapes[0] as (number | null)[], bn.layer);
    bn.rule = batchNormRule(bn.layer, bn.inShapes[0] as (number | null)[], true);
  }
}

/**
 * Compiles the path from the model's input to `target` (a symbolic tensor of the model). With
 * `linearHead`, the target's own layer is a Dense layer whose activation (a softmax) is left out.
 * Returns null (and the reason) when some layer on the path is not covered.
 */
export function compileGraph(input: SymbolicTensor, target: SymbolicTensor, linearHead = false): CompiledGraph | { reason: string } {
  const ops: GraphOp[] = [];
  const slots = new Map<number, number>(); // symbolic tensor id → slot
  const shapes: (number | null)[][] = [];
  const inputSlot = 0;
  slots.set(input.id, inputSlot);
  shapes.push(input.shape);
  try {
    const visit = (t: SymbolicTensor): number => {
      const known = slots.get(t.id);
      if (known !== undefined) return known;
      const layer = t.sourceLayer;
      const node = layer.inboundNodes[t.nodeIndex];
      if (node === undefined || node.outputTensors.length !== 1) throw new NotCompilable(`layer '${layer.name}' with several outputs`);
      if (Array.isArray((layer as unknown as { layers?: unknown }).layers)) throw new NotCompilable(`nested model '${layer.name}'`);
      if (node.inputTensors.length === 0) throw new NotCompilable(`a second input '${layer.name}'`);
      const inputs = node.inputTensors.map(visit);
      const inShapes = node.inputTensors.map((s) => s.shape);
      const rule = ruleFor(layer, inShapes, t.shape, linearHead && t === target);
      const slot = shapes.length;
      shapes.push(t.shape);
      slots.set(t.id, slot);
      ops.push({ layer, inShapes, inputs, output: slot, rule });
      return slot;
    };
    visit(target);
  } catch (e) {
    if (e instanceof NotCompilable) return { reason: e.message };
    throw e;
  }
  foldBatchNorms(ops);
  const outSlot = slots.get(target.id) as number;
  const nSlots = shapes.length;
  const largest = Math.max(...shapes.map((s) => product(s.slice(1))));
  const n = product(input.shape.slice(1));
  return {
    bytesPerRow: 4 * (4 * largest + 2 * n),
    forward(x) {
      const B = x.shape[0] as number;
      const values: (tf.Tensor | undefined)[] = new Array(nSlots);
      const saved: tf.Tensor[][] = [];
      values[inputSlot] = x;
      const kept = tf.tidy(() => {
        for (const op of ops) {
          const r = op.rule.forward(op.inputs.map((i) => values[i] as tf.Tensor));
          values[op.output] = r.y;
          saved.push(r.saved);
        }
        const out = values[outSlot] as tf.Tensor;
        return [tf.reshape(out, [B, -1]), ...saved.flat()];
      });
      const output = kept[0] as tf.Tensor2D;
      return {
        output,
        vjpRows(U) {
          return tf.tidy(() => {
            const R = U.shape[0];
            const grads: (tf.Tensor | undefined)[] = new Array(nSlots);
            grads[outSlot] = tf.reshape(tileRows(U, B), [R * B, ...(shapes[outSlot]?.slice(1) as number[])]);
            for (let k = ops.length - 1; k >= 0; k--) {
              const op = ops[k] as GraphOp;
              const dy = grads[op.output];
              if (dy === undefined) continue;
              grads[op.output] = undefined;
              const dxs = op.rule.backward(dy, saved[k] as tf.Tensor[]);
              op.inputs.forEach((slot, i) => {
                const dx = dxs[i] as tf.Tensor;
                const prev = grads[slot];
                grads[slot] = prev === undefined ? dx : tf.add(prev, dx);
              });
            }
            return samplesFirst(grads[inputSlot] ?? tf.zeros([R * B, n]), R, B);
          });
        },
        dispose() {
          tf.dispose(kept);
        },
      };
    },
  };
}
