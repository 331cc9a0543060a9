/**
 * The backward pass of a 2-D convolution as stride-1 forward convolutions, one per stride phase,
 * and the cotangent type that carries a strided conv's phases until they are interleaved.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';

/**
 * The input cotangent of a strided conv before its phases are interleaved: convs that read the
 * same tensor with the same phase grid (a ResNet block's 3×3/2 conv and its 1×1/2 shortcut) add
 * their phases and interleave once. `phases[rh·sw + rw]`, null where no filter tap falls.
 */
export interface Phased {
  phased: true;
  /** Equal keys: the same grid, so the phases add. */
  key: string;
  phases: (tf.Tensor4D | null)[];
  grid: { N: number; Qh: number; Qw: number; ci: number; sh: number; sw: number; top: number; left: number; H: number; W: number };
}

export type Cotangent = tf.Tensor | Phased;

export function isPhased(g: Cotangent): g is Phased {
  return (g as Partial<Phased>).phased === true;
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
export function phaseFilterData(W: Float32Array, shape: readonly number[], strides: [number, number]) {
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
export function livePhases([fh, fw]: readonly number[], [sh, sw]: [number, number]) {
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

/**
 * A stride-1 "valid" conv of dy padded by (before, after) per axis; negative padding crops. With a
 * depthwise multiplier, `filter` is a depthwise filter `[kh, kw, ci·multiplier, 1]` and the
 * multiplier's channels of each input channel are summed.
 */
function paddedConv(dy: tf.Tensor4D, filter: tf.Tensor4D, [bh, ah]: [number, number], [bw, aw]: [number, number], multiplier?: number): tf.Tensor4D {
  const [N, oh, ow] = dy.shape;
  let d = dy;
  if (bh < 0 || ah < 0 || bw < 0 || aw < 0) {
    const t = Math.max(0, -bh);
    const l = Math.max(0, -bw);
    d = tf.slice(dy, [0, t, l, 0], [N, oh - t - Math.max(0, -ah), ow - l - Math.max(0, -aw), -1]);
  }
  const pads = [[0, 0], [Math.max(0, bh), Math.max(0, ah)], [Math.max(0, bw), Math.max(0, aw)], [0, 0]] as unknown as 'valid';
  if (multiplier !== undefined) {
    const out = tf.depthwiseConv2d(d, filter, 1, pads);
    if (multiplier === 1) return out;
    const [n, h, w, c] = out.shape;
    return tf.sum(tf.reshape(out, [n, h, w, c / multiplier, multiplier]), -1);
  }
  // One output channel (a grayscale input): a depthwise conv and a sum over the channels, ~2× faster
  // on wasm than a conv that fills one of XNNPACK's 8 output lanes. [kh, kw, co, 1] is a depthwise filter.
  if (filter.shape[3] === 1) return tf.sum(tf.depthwiseConv2d(d, filter, 1, pads), -1, true);
  return tf.conv2d(d, filter, 1, pads);
}

/**
 * The input cotangent of a 2-D convolution (NHWC): one stride-1 forward convolution per phase (see
 * {@link phaseFilters}); with strides > 1, phased (not yet interleaved). A dilated conv comes here
 * with its filter dilated (zeros between the taps). `multiplier`: the conv is depthwise with that
 * channel multiplier, and the phase filters are depthwise filters.
 */
export function convPhases(
  dy: tf.Tensor4D,
  phases: Phase[],
  inShape: [number, number, number],
  strides: [number, number],
  pad: { top: number; left: number },
  multiplier?: number,
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
    out[rh * sw + rw] = paddedConv(dy, filter, [h.before, h.after], [w.before, w.after], multiplier); // [N, Qh, Qw, ci]
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
export function materialize(g: Cotangent): tf.Tensor {
  return isPhased(g) ? interleave(g) : g;
}

/** The sum of two cotangents of one tensor: phase by phase where they share a grid. */
export function accumulate(a: Cotangent, b: Cotangent): Cotangent {
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
export function tensorsOf(g: Cotangent): tf.Tensor[] {
  return isPhased(g) ? g.phases.filter((p): p is tf.Tensor4D => p !== null) : [g];
}

/**
 * The input cotangent of a 2-D convolution (NHWC) from its phase filters.
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

