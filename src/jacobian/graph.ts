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
  backward(dy: tf.Tensor, saved: tf.Tensor[]): Cotangent[];
}

/**
 * The input cotangent of a strided conv before its phases are interleaved: convs that read the
 * same tensor with the same phase grid (a ResNet block's 3×3/2 conv and its 1×1/2 shortcut) add
 * their phases and interleave once. `phases[rh·sw + rw]`, null where no filter tap falls.
 */
interface Phased {
  phased: true;
  /** Equal keys: the same grid, so the phases add. */
  key: string;
  phases: (tf.Tensor4D | null)[];
  grid: { N: number; Qh: number; Qw: number; ci: number; sh: number; sw: number; top: number; left: number; H: number; W: number };
}

type Cotangent = tf.Tensor | Phased;

function isPhased(g: Cotangent): g is Phased {
  return (g as Partial<Phased>).phased === true;
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
  inner?: (dy: tf.Tensor, prepared: tf.Tensor[]) => Cotangent,
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

/** One phase of a conv's backward pass: the input positions t ≡ (rh, rw) modulo the strides. */
export interface Phase {
  rh: number;
  rw: number;
  /** The flipped sub-filter `[kh, kw, co, ci]` of this phase (its taps only). */
  filter: tf.Tensor4D;
}

/**
 * The filters that turn the backward pass of a conv (filter `W: [fh, fw, ci, co]`, strides s) into
 * stride-1 forward convs, one per phase. With t = i + p (p the top/left padding), phase
 * r = t mod s and q = ⌊t/s⌋, the input cotangent is, per axis,
 *
 *   dx[i] = Σ_j dy[q − j] · W[s·j + r]   (j < k_r = ⌈(f − r)/s⌉),
 *
 * a "full" stride-1 correlation of dy with the flipped sub-filter of the taps s·j + r. Each phase
 * gets exactly its own taps (a 3×3 filter with stride 2: 2×2, 2×1, 1×2 and 1×1, 9 taps in all);
 * phases r ≥ f (a 1×1 conv with stride 2) have none and are left out. Built in float32 on the CPU
 * (filters are small).
 */
export function phaseFilters(W: Float32Array, shape: readonly number[], strides: [number, number]): Phase[] {
  return phaseFilterData(W, shape, strides).map(({ rh, rw, kh, kw, data }) => ({ rh, rw, filter: tf.tensor4d(data, [kh, kw, shape[3] as number, shape[2] as number]) }));
}

/** {@link phaseFilters} as plain arrays. */
function phaseFilterData(W: Float32Array, shape: readonly number[], strides: [number, number]) {
  const [, fw, ci, co] = shape as [number, number, number, number];
  const [sh, sw] = strides;
  return livePhases(shape, strides).map(({ rh, rw, kh, kw }) => {
    const data = new Float32Array(kh * kw * co * ci);
    for (let a = 0; a < kh; a++) {
      const u = sh * (kh - 1 - a) + rh; // filter row, flipped
      for (let b = 0; b < kw; b++) {
        const v = sw * (kw - 1 - b) + rw;
        for (let c = 0; c < ci; c++) {
          const src = ((u * fw + v) * ci + c) * co;
          for (let o = 0; o < co; o++) data[((a * kw + b) * co + o) * ci + c] = W[src + o] as number;
        }
      }
    }
    return { rh, rw, kh, kw, data };
  });
}

/** The phases with filter taps, and their tap counts k_r = ⌈(f − r)/s⌉ per axis. */
function livePhases([fh, fw]: readonly number[], [sh, sw]: [number, number]) {
  const phases: { rh: number; rw: number; kh: number; kw: number }[] = [];
  for (let rh = 0; rh < Math.min(sh, fh as number); rh++) {
    for (let rw = 0; rw < Math.min(sw, fw as number); rw++) {
      phases.push({ rh, rw, kh: Math.ceil(((fh as number) - rh) / sh), kw: Math.ceil(((fw as number) - rw) / sw) });
    }
  }
  return phases;
}

/**
 * The outputs q ∈ [q0, q1] of one axis that the input positions need, and how to pad dy (negative:
 * crop) for a phase with k taps.
 */
function phaseAxis(H: number, out: number, k: number, s: number, p: number) {
  const q0 = Math.floor(p / s);
  const q1 = Math.floor((H - 1 + p) / s);
  const before = k - 1 - q0;
  const after = q1 - q0 + k - out - before;
  return { q0, q1, before, after, start: p - s * q0 };
}

/** A stride-1 "valid" conv of dy padded by (before, after) per axis; negative padding crops. */
function paddedConv(dy: tf.Tensor4D, filter: tf.Tensor4D, [bh, ah]: [number, number], [bw, aw]: [number, number]): tf.Tensor4D {
  const [N, oh, ow] = dy.shape;
  let d = dy;
  if (bh < 0 || ah < 0 || bw < 0 || aw < 0) {
    const t = Math.max(0, -bh);
    const l = Math.max(0, -bw);
    d = tf.slice(dy, [0, t, l, 0], [N, oh - t - Math.max(0, -ah), ow - l - Math.max(0, -aw), -1]);
  }
  const pads = [[0, 0], [Math.max(0, bh), Math.max(0, ah)], [Math.max(0, bw), Math.max(0, aw)], [0, 0]] as unknown as 'valid';
  // One output channel (a grayscale input): a depthwise conv and a sum over the channels, ~2× faster
  // on wasm than a conv that fills one of XNNPACK's 8 output lanes. [kh, kw, co, 1] is a depthwise filter.
  if (filter.shape[3] === 1) return tf.sum(tf.depthwiseConv2d(d, filter, 1, pads), -1, true);
  return tf.conv2d(d, filter, 1, pads);
}

/**
 * The input cotangent of a 2-D convolution (NHWC, no dilation): one stride-1 forward convolution
 * per phase (see {@link phaseFilters}); with strides > 1, phased (not yet interleaved).
 */
function convPhases(
  dy: tf.Tensor4D,
  phases: Phase[],
  inShape: [number, number, number],
  strides: [number, number],
  pad: { top: number; left: number },
): Cotangent {
  const [H, W, ci] = inShape;
  const [N, oh, ow] = dy.shape;
  const [sh, sw] = strides;
  const rows = (k: number) => phaseAxis(H, oh, k, sh, pad.top);
  const cols = (k: number) => phaseAxis(W, ow, k, sw, pad.left);
  const ax = rows(1);
  const ay = cols(1);
  const out: (tf.Tensor4D | null)[] = new Array<tf.Tensor4D | null>(sh * sw).fill(null);
  for (const { rh, rw, filter } of phases) {
    const h = rows(filter.shape[0]);
    const w = cols(filter.shape[1]);
    out[rh * sw + rw] = paddedConv(dy, filter, [h.before, h.after], [w.before, w.after]); // [N, Qh, Qw, ci]
  }
  const grid = { N, Qh: ax.q1 - ax.q0 + 1, Qw: ay.q1 - ay.q0 + 1, ci, sh, sw, top: ax.start, left: ay.start, H, W };
  const phased: Phased = { phased: true, key: JSON.stringify(grid), phases: out, grid };
  return sh === 1 && sw === 1 ? interleave(phased) : phased;
}

/** Interleaves the phases of a conv's input cotangent: `[N, H, W, ci]`. */
function interleave({ phases, grid }: Phased): tf.Tensor4D {
  const { N, Qh, Qw, ci, sh, sw, top, left, H, W } = grid;
  let u: tf.Tensor4D;
  if (sh === 1 && sw === 1) {
    u = phases[0] as tf.Tensor4D;
  } else {
    // Phases stacked along a leading axis (whole-tensor copies), phases without taps as zeros,
    // then interleaved by two transposes of rank ≤ 4 (wasm's rank-5 transpose is ~100× slower):
    // [sh, sw, N·Qh·Qw, ci] → [sh, N·Qh·Qw, sw, ci] = [sh, N·Qh, Qw·sw·ci] → [N·Qh, sh, Qw·sw·ci].
    const zeros = phases.includes(null) ? tf.zeros([N, Qh, Qw, ci]) : undefined;
    const stacked = tf.reshape(tf.concat(phases.map((p) => p ?? (zeros as tf.Tensor)), 0), [sh, sw, N * Qh * Qw, ci]);
    const columns = tf.reshape(tf.transpose(stacked, [0, 2, 1, 3]), [sh, N * Qh, Qw * sw * ci]);
    u = tf.reshape(tf.transpose(columns, [1, 0, 2]), [N, Qh * sh, Qw * sw, ci]);
  }
  if (top === 0 && left === 0 && Qh * sh === H && Qw * sw === W) return u;
  return tf.slice(u, [0, top, left, 0], [N, H, W, ci]);
}

/** A cotangent as a tensor (interleaving a phased one). */
function materialize(g: Cotangent): tf.Tensor {
  return isPhased(g) ? interleave(g) : g;
}

/** The sum of two cotangents of one tensor: phase by phase where they share a grid. */
function accumulate(a: Cotangent, b: Cotangent): Cotangent {
  if (isPhased(a) && isPhased(b) && a.key === b.key) {
    const phases = a.phases.map((p, k) => {
      const q = b.phases[k] ?? null;
      return p === null ? q : q === null ? p : tf.add<tf.Tensor4D>(p, q);
    });
    return { ...a, phases };
  }
  return tf.add(materialize(a), materialize(b));
}

/** The tensors a cotangent holds. */
function tensorsOf(g: Cotangent): tf.Tensor[] {
  return isPhased(g) ? g.phases.filter((p): p is tf.Tensor4D => p !== null) : [g];
}

/**
 * The input cotangent of a 2-D convolution (NHWC, no dilation) from its phase filters.
 * @internal (tested directly)
 */
export function convBackpropInput(
  dy: tf.Tensor4D,
  phases: Phase[],
  inShape: [number, number, number],
  strides: [number, number],
  pad: { top: number; left: number },
): tf.Tensor4D {
  return tf.tidy(() => materialize(convPhases(dy, phases, inShape, strides, pad)) as tf.Tensor4D);
}

/**
 * Tensors derived from a layer's weights (a conv's phase filters, a dense layer's transposed
 * kernel), made for each forward pass from float32 arrays that are rebuilt only when the weight
 * tensors they come from were replaced (training and `setWeights` write new tensors, with new
 * dataIds). Nothing is held between calls but the arrays.
 */
function derivedFromWeights(sources: () => (tf.Tensor | undefined)[], build: () => { data: Float32Array; shape: number[] }[]): () => tf.Tensor[] {
  let cache: { stamp: unknown[]; arrays: { data: Float32Array; shape: number[] }[] } | undefined;
  return () => {
    const stamp = sources().map((t) => (t as unknown as { dataId?: unknown } | undefined)?.dataId);
    if (cache === undefined || stamp.some((d, i) => d !== cache?.stamp[i])) cache = { stamp, arrays: build() };
    return cache.arrays.map(({ data, shape }) => tf.tensor(data, shape, 'float32'));
  };
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
  const prepare = derivedFromWeights(
    () => [weight(layer, 'kernel'), ...(foldedScale ? [weight(foldedScale, 'gamma'), weight(foldedScale, 'moving_variance')] : [])],
    () => {
      const k = weight(layer, 'kernel') as tf.Tensor;
      const co = k.shape[3] as number;
      let w = k.dataSync() as Float32Array;
      if (foldedScale !== undefined) {
        const scale = tf.tidy(() => batchNormScale(foldedScale).dataSync());
        w = Float32Array.from(w);
        for (let i = 0; i < w.length; i++) w[i] = (w[i] as number) * (scale[i % co] as number);
      }
      return phaseFilterData(w, k.shape, strides).map(({ kh, kw, data }) => ({ data, shape: [kh, kw, co, ci] }));
    },
  );
  const live = livePhases(kernel.shape, strides); // in the order of the filters `prepare` makes
  const inner = (dy: tf.Tensor, prepared: tf.Tensor[]) =>
    convPhases(dy as tf.Tensor4D, live.map((p, i) => ({ ...p, filter: prepared[i] as tf.Tensor4D })), [H, W, ci], strides, pad);
  return activationRule(layer, String(c['activation'] ?? 'linear'), {}, inner, prepare);
}

function denseRule(layer: Layer, inShape: (number | null)[], linearHead: boolean): Rule {
  const c = config(layer);
  const units = Number(c['units']);
  // The transposed kernel: a matMul with transposeB is ~50× slower on wasm, and a transpose per
  // call costs 7 ms for the MNIST CNN's 9216×128 kernel.
  const prepare = derivedFromWeights(
    () => [weight(layer, 'kernel')],
    () => {
      const k = weight(layer, 'kernel') as tf.Tensor;
      const [n, m] = k.shape as [number, number];
      const w = k.dataSync() as Float32Array;
      const data = new Float32Array(n * m);
      for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) data[j * n + i] = w[i * m + j] as number;
      return [{ data, shape: [m, n] }];
    },
  );
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
      // d = x − max ≤ 0, and 0 exactly at the maxima: hit = 1 − step(−d); the first of them is
      // where the running count of hits is 1: step(1.5 − count). (Subtractions and steps: wasm's
      // broadcast comparisons are ~25× slower.)
      const d = tf.sub(windows, tf.reshape(y, [B * oh * ow, 1, C]));
      const hit = tf.sub(1, tf.step(tf.neg(d)));
      const first = tf.mul(hit, tf.step(tf.sub(1.5, tf.cumsum(hit, 1))));
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
 * Returns `{ reason }` instead when some layer on the path is not covered.
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
            const grads: (Cotangent | undefined)[] = new Array(nSlots);
            grads[outSlot] = tf.reshape(tileRows(U, B), [R * B, ...(shapes[outSlot]?.slice(1) as number[])]);
            // Each layer's backward pass in its own scope, and each cotangent released as soon as it
            // is consumed: what stays alive is the cotangents not yet consumed (bytesPerRow).
            const scoped = (f: () => Cotangent | Cotangent[]) => tf.tidy(f as () => tf.TensorContainer) as unknown as Cotangent & Cotangent[];
            const release = (spent: Cotangent[], live: Cotangent[]) => {
              const keep = new Set(live.flatMap(tensorsOf));
              for (const t of spent.flatMap(tensorsOf)) if (!keep.has(t)) t.dispose();
            };
            for (let k = ops.length - 1; k >= 0; k--) {
              const op = ops[k] as GraphOp;
              const dy = grads[op.output];
              if (dy === undefined) continue;
              grads[op.output] = undefined;
              const dxs = scoped(() => op.rule.backward(materialize(dy), saved[k] as tf.Tensor[]));
              // One tensor handed to two inputs (Add): each input gets its own handle on the same
              // data (a reshape shares it; tf.clone copies on wasm), taken before any of them is
              // added to a cotangent already there and released.
              const seen = new Set<tf.Tensor>();
              const incoming = dxs.map((dx) => {
                if (isPhased(dx)) return dx;
                const handle = seen.has(dx) ? tf.reshape(dx, dx.shape) : dx;
                seen.add(dx);
                return handle;
              });
              op.inputs.forEach((slot, i) => {
                const dx = incoming[i] as Cotangent;
                const prev = grads[slot];
                if (prev === undefined) {
                  grads[slot] = dx;
                } else {
                  const sum = scoped(() => accumulate(prev, dx));
                  release([prev, dx], [sum]);
                  grads[slot] = sum;
                }
              });
              release([dy], grads.filter((g): g is Cotangent => g !== undefined));
            }
            const dx = grads[inputSlot];
            return samplesFirst(dx === undefined ? tf.zeros([R * B, n]) : materialize(dx), R, B);
          });
        },
        dispose() {
          tf.dispose(kept);
        },
      };
    },
  };
}
