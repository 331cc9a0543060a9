/**
 * Pooling, 1-D and 2-D, max and average, with or without overlap or padding, and global pooling.
 *
 * A max pool is linear once its forward pass has chosen each window's maximum (the first one in
 * row-major order, see `firstMax`): both linear maps are a
 * multiplication by that one-hot mask. Non-overlapping 'valid' windows (the common case) regroup
 * each window's entries as `[B·oh·ow, ph·pw, C]`; any other window goes through one strided slice
 * per window offset (forward mode) and its transpose, a zero-inserting upsample (reverse mode).
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { apply, channelsLast, config, firstMax, linearRule, NotCompilable, pair, single, tail } from './rule.js';
import type { FamilyRules, Layer, Rule, RuleContext } from './rule.js';

/** Pooling windows of a 2-D pool (a 1-D pool as one of height 1). */
interface Windows {
  H: number;
  W: number;
  C: number;
  pool: [number, number];
  strides: [number, number];
  oh: number;
  ow: number;
  /** Padding before and after, per axis. */
  pads: [[number, number], [number, number]];
}

function windowsOf(layer: Layer, inShape: number[], oneD: boolean): Windows {
  const c = config(layer);
  channelsLast(layer);
  const pool: [number, number] = oneD ? [1, single(c['poolSize'], 2)] : pair(c['poolSize'], 2);
  const strides: [number, number] = oneD ? [1, single(c['strides'] ?? c['poolSize'], pool[1])] : pair(c['strides'] ?? c['poolSize'], pool[0]);
  const [H, W, C] = (oneD ? [1, ...inShape] : inShape) as [number, number, number];
  const padding = c['padding'];
  if (padding !== 'same' && padding !== 'valid') throw new NotCompilable(`padding '${String(padding)}' of '${layer.name}'`);
  const info = tf.backend_util.computePool2DInfo([1, H, W, C], pool, strides, 1, padding);
  const { top, bottom, left, right } = info.padInfo;
  return { H, W, C, pool, strides, oh: info.outHeight, ow: info.outWidth, pads: [[top, bottom], [left, right]] };
}

/** Non-overlapping 'valid' windows: regrouped as `[N·oh·ow, ph·pw, C]` (the fast path). */
function tiles(w: Windows): boolean {
  return w.strides[0] === w.pool[0] && w.strides[1] === w.pool[1] && w.pads.flat().every((p) => p === 0);
}

function regroup(x: tf.Tensor, w: Windows): tf.Tensor {
  const N = x.shape[0] as number;
  const { oh, ow, C, pool: [ph, pw] } = w;
  const crop = oh * ph === w.H && ow * pw === w.W ? x : tf.slice(x, [0, 0, 0, 0], [N, oh * ph, ow * pw, C]);
  // [N·oh, ph, ow, pw·C] → [N·oh, ow, ph, pw·C] → [N·oh·ow, ph·pw, C]
  return tf.reshape(tf.transpose(tf.reshape(crop, [N * oh, ph, ow, pw * C]), [0, 2, 1, 3]), [N * oh * ow, ph * pw, C]);
}

function ungroup(g: tf.Tensor, N: number, w: Windows): tf.Tensor {
  const { oh, ow, C, H, W, pool: [ph, pw] } = w;
  const t = tf.transpose(tf.reshape(g, [N * oh, ow, ph, pw * C]), [0, 2, 1, 3]);
  const dx = tf.reshape(t, [N, oh * ph, ow * pw, C]);
  return oh * ph === H && ow * pw === W ? dx : tf.pad(dx, [[0, 0], [0, H - oh * ph], [0, W - ow * pw], [0, 0]]);
}

/** The entries at window offset (a, b) of every window of a padded input: `[N, oh, ow, C]`. */
function offsetSlice(xp: tf.Tensor, a: number, b: number, w: Windows): tf.Tensor {
  const [sh, sw] = w.strides;
  const N = xp.shape[0] as number;
  return tf.stridedSlice(xp, [0, a, b, 0], [N, a + sh * (w.oh - 1) + 1, b + sw * (w.ow - 1) + 1, w.C], [1, sh, sw, 1]);
}

/** The transpose of {@link offsetSlice}: u `[N, oh, ow, C]` placed back in the padded input. */
function offsetScatter(u: tf.Tensor, a: number, b: number, w: Windows, Hp: number, Wp: number): tf.Tensor {
  const N = u.shape[0] as number;
  const { oh, ow, C, strides: [sh, sw] } = w;
  // Zeros inserted after each entry, along w then h (tensors of rank ≤ 4).
  const cols = tf.reshape(tf.pad(tf.reshape(u, [N * oh, ow, 1, C]), [[0, 0], [0, 0], [0, sw - 1], [0, 0]]), [N, oh, 1, ow * sw * C]);
  const rows = tf.reshape(tf.pad(cols, [[0, 0], [0, 0], [0, sh - 1], [0, 0]]), [N, oh * sh, ow * sw, C]);
  const fit = tf.slice(rows, [0, 0, 0, 0], [N, Math.min(oh * sh, Hp - a), Math.min(ow * sw, Wp - b), C]);
  return tf.pad(fit, [[0, 0], [a, Hp - a - (fit.shape[1] as number)], [b, Wp - b - (fit.shape[2] as number)], [0, 0]]);
}

function poolRule({ layer, inShapes }: RuleContext, kind: 'max' | 'avg', oneD: boolean): Rule {
  const w = windowsOf(layer, tail(inShapes[0] as (number | null)[]), oneD);
  const { H, W, C, oh, ow, pool: [ph, pw], pads: [[pt, pb], [pl, pr]] } = w;
  const area = ph * pw;
  const Hp = H + pt + pb;
  const Wp = W + pl + pr;
  const to4 = (t: tf.Tensor) => (oneD ? tf.reshape(t, [t.shape[0] as number, 1, ...(t.shape.slice(1) as number[])]) : t);
  const from4 = (t: tf.Tensor) => (oneD ? tf.reshape(t, [t.shape[0] as number, ...(t.shape.slice(2) as number[])]) : t);
  const padded = (t: tf.Tensor, value = 0) => (Hp === H && Wp === W ? t : tf.pad(t, [[0, 0], [pt, pb], [pl, pr], [0, 0]], value));
  const crop = (t: tf.Tensor) => (Hp === H && Wp === W ? t : tf.slice(t, [0, pt, pl, 0], [t.shape[0] as number, H, W, C]));
  const offsets: [number, number][] = [];
  for (let a = 0; a < ph; a++) for (let b = 0; b < pw; b++) offsets.push([a, b]);
  // Each output's divisor: tfjs averages over the window's entries inside the input only.
  const counts = () => tf.tidy(() => {
    const inside = padded(tf.ones([1, H, W, 1]));
    return offsets.reduce<tf.Tensor>((acc, [a, b]) => tf.add(acc, offsetSlice(inside, a, b, { ...w, C: 1 })), tf.zeros([1, oh, ow, 1]));
  });
  const scatterAll = (parts: (tf.Tensor | null)[], N: number) =>
    crop(offsets.reduce<tf.Tensor>((acc, [a, b], i) => (parts[i] ? tf.add(acc, offsetScatter(parts[i] as tf.Tensor, a, b, w, Hp, Wp)) : acc), tf.zeros([N, Hp, Wp, C])));
  if (kind === 'avg') {
    return linearRule(layer, (dy) => {
      const g = to4(dy);
      const N = g.shape[0] as number;
      if (tiles(w)) return [from4(ungroup(tf.mul(tf.reshape(g, [N * oh * ow, 1, C]), tf.fill([1, area, 1], 1 / area)), N, w))];
      const share = tf.div(g, counts());
      return [from4(scatterAll(offsets.map(() => share), N))];
    });
  }
  return {
    forward(inputs) {
      const y = apply(layer, inputs);
      const x = to4(inputs[0] as tf.Tensor);
      const y4 = to4(y);
      const B = x.shape[0] as number;
      if (tiles(w)) return { y, saved: [tf.reshape(firstMax(regroup(x, w), tf.reshape(y4, [B * oh * ow, 1, C]), 1), [1, B * oh * ow, area, C])] };
      const xp = padded(x, -Infinity);
      const stacked = tf.stack(offsets.map(([a, b]) => offsetSlice(xp, a, b, w)), 1); // [B, area, oh, ow, C]
      const mask = firstMax(stacked, tf.expandDims(y4, 1), 1);
      return { y, saved: tf.unstack(mask, 1).map((m) => tf.expandDims(m, 0)) }; // area × [1, B, oh, ow, C]
    },
    backward(dy, saved) {
      const g = to4(dy);
      const N = g.shape[0] as number;
      if (tiles(w)) {
        const mask = saved[0] as tf.Tensor;
        const windows = mask.shape[1] as number; // B·oh·ow: the rows of g times these
        return [from4(ungroup(tf.mul(tf.reshape(g, [(N * oh * ow) / windows, windows, 1, C]), mask), N, w))];
      }
      const B = saved[0]?.shape[1] as number;
      const g5 = tf.reshape(g, [N / B, B, oh, ow, C]);
      return [from4(scatterAll(saved.map((m) => tf.reshape(tf.mul(g5, m), [N, oh, ow, C])), N))];
    },
    tangent([dx], saved) {
      const t = to4(dx as tf.Tensor);
      const N = t.shape[0] as number;
      if (tiles(w)) {
        const mask = saved[0] as tf.Tensor;
        const win = tf.reshape(regroup(t, w), [-1, mask.shape[1] as number, area, C]);
        return from4(tf.reshape(tf.sum(tf.mul(win, mask), 2), [N, oh, ow, C]));
      }
      const B = saved[0]?.shape[1] as number;
      const tp = padded(t);
      const parts = offsets.map(([a, b], i) => tf.mul(tf.reshape(offsetSlice(tp, a, b, w), [N / B, B, oh, ow, C]), saved[i] as tf.Tensor));
      return from4(tf.reshape(tf.addN(parts), [N, oh, ow, C]));
    },
  };
}

/** Global average or max pooling over the spatial axes (channels last). */
function globalRule({ layer, inShapes }: RuleContext, kind: 'max' | 'avg'): Rule {
  channelsLast(layer);
  const inShape = tail(inShapes[0] as (number | null)[]);
  const C = inShape[inShape.length - 1] as number;
  const S = inShape.slice(0, -1).reduce((a, d) => a * d, 1);
  const spread = (dy: tf.Tensor, weights: tf.Tensor, B: number) =>
    tf.reshape(tf.mul(tf.reshape(dy, [-1, B, 1, C]), weights), [dy.shape[0] as number, ...inShape]);
  if (kind === 'avg') return linearRule(layer, (dy) => [spread(dy, tf.fill([1, 1, S, 1], 1 / S), 1)]);
  return {
    forward(inputs) {
      const y = apply(layer, inputs);
      const B = y.shape[0] as number;
      return { y, saved: [tf.expandDims(firstMax(tf.reshape(inputs[0] as tf.Tensor, [B, S, C]), tf.reshape(y, [B, 1, C]), 1), 0)] }; // [1, B, S, C]
    },
    backward: (dy, [m]) => [spread(dy, m as tf.Tensor, m?.shape[1] as number)],
    tangent([dx], [m]) {
      const B = m?.shape[1] as number;
      const t = dx as tf.Tensor;
      return tf.reshape(tf.sum(tf.mul(tf.reshape(t, [-1, B, S, C]), m as tf.Tensor), 2), [t.shape[0] as number, C]);
    },
  };
}

/** The rules of the pooling layers, by class name. */
export const POOLING_RULES = {
  MaxPooling2D: (ctx) => poolRule(ctx, 'max', false),
  AveragePooling2D: (ctx) => poolRule(ctx, 'avg', false),
  MaxPooling1D: (ctx) => poolRule(ctx, 'max', true),
  AveragePooling1D: (ctx) => poolRule(ctx, 'avg', true),
  GlobalAveragePooling1D: (ctx) => globalRule(ctx, 'avg'),
  GlobalAveragePooling2D: (ctx) => globalRule(ctx, 'avg'),
  GlobalMaxPooling1D: (ctx) => globalRule(ctx, 'max'),
  GlobalMaxPooling2D: (ctx) => globalRule(ctx, 'max'),
} satisfies FamilyRules;
