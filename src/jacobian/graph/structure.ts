/**
 * Layers that move, combine or normalise values: reshapes, padding and cropping, upsampling,
 * merges, normalisation in inference mode, and the layers that are the identity at inference.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { batchNormScale } from './conv.js';
import { apply, channelsLast, config, firstMax, jetBlocks, linearRule, mulPerSample, NotCompilable, pair, stackJet, tail, weight } from './rule.js';
import type { FamilyRules, Layer, Rule, RuleBuilder, Shape } from './rule.js';
import { channelSums, sharedSum } from './weights.js';
import type { WeightGrads } from './weights.js';

/**
 * γ and β of a normalisation y = γ x̂ + β over the last axis: Σ dy ⊙ x̂ and Σ dy over the other
 * axes, per sample and row (x̂: `[B, ...]`, made only when γ is asked for).
 */
function affineGrads(dy: tf.Tensor, xhat: () => tf.Tensor, B: number): WeightGrads {
  const c = dy.shape[dy.rank - 1] as number;
  return { gamma: () => sharedSum(dy, xhat(), [c], B), beta: () => channelSums(dy, B) };
}

/** BatchNorm in inference mode, over the last axis; `folded`: its scale is in the conv before it. */
export function batchNormRule(layer: Layer, inShape: (number | null)[], folded = false): Rule {
  const axis = Number(config(layer)['axis'] ?? -1);
  if (axis !== -1 && axis !== inShape.length - 1) throw new NotCompilable(`BatchNormalization '${layer.name}' over axis ${axis}`);
  if (weight(layer, 'moving_variance') === undefined) throw new NotCompilable(`moving variance of '${layer.name}'`);
  const scale = (t: tf.Tensor, saved: tf.Tensor[]) => (folded ? t : tf.mul(t, saved[0] as tf.Tensor));
  const eps = Number(config(layer)['epsilon'] ?? 1e-3);
  // x̂ = (x − moving mean)/√(moving variance + ε), from the layer's input.
  const normalised = (x: tf.Tensor) => {
    const mean = weight(layer, 'moving_mean');
    return tf.mul(mean ? tf.sub(x, mean) : x, tf.rsqrt(tf.add(weight(layer, 'moving_variance') as tf.Tensor, eps)));
  };
  return {
    forward: (inputs) => ({ y: apply(layer, inputs), saved: folded ? [] : [batchNormScale(layer)] }),
    backward: (dy, saved) => [scale(dy, saved)],
    tangent: ([dx], saved) => scale(dx as tf.Tensor, saved),
    weightGrads: (dy, [x]) => affineGrads(dy, () => normalised(x as tf.Tensor), (x as tf.Tensor).shape[0] as number),
  };
}

/**
 * LayerNormalization over the last axis: y = γ x̂ + β, x̂ = (x − μ)/σ. Both linear maps are
 * γ ⊙ (t − mean t − x̂ mean(x̂ t))/σ, the transpose with γ applied first (the map in the middle is
 * symmetric).
 */
function layerNormRule(layer: Layer, inShape: number[]): Rule {
  const c = config(layer);
  const axis = c['axis'];
  const last = inShape.length; // the last axis, counting the batch
  const axes = Array.isArray(axis) ? axis : [axis ?? -1];
  if (axes.length !== 1 || (axes[0] !== -1 && axes[0] !== last)) throw new NotCompilable(`LayerNormalization '${layer.name}' over axis ${JSON.stringify(axis)}`);
  const eps = Number(c['epsilon'] ?? 1e-3);
  const gamma = () => weight(layer, 'gamma');
  const center = (t: tf.Tensor, xhat: tf.Tensor, rstd: tf.Tensor) => {
    const u = tf.reshape(t, [-1, ...xhat.shape.slice(1)]); // [K, B, ..., D]
    const centred = tf.sub(tf.sub(u, tf.mean(u, -1, true)), tf.mul(xhat, tf.mean(tf.mul(u, xhat), -1, true)));
    return tf.reshape(tf.mul(centred, rstd), t.shape);
  };
  const scaled = (t: tf.Tensor) => (gamma() ? tf.mul(t, gamma() as tf.Tensor) : t);
  return {
    forward(inputs) {
      const x = inputs[0] as tf.Tensor;
      const { mean, variance } = tf.moments(x, -1, true);
      const rstd = tf.rsqrt(tf.add(variance, eps));
      return { y: apply(layer, inputs), saved: [tf.expandDims(tf.mul(tf.sub(x, mean), rstd), 0), tf.expandDims(rstd, 0)] };
    },
    backward: (dy, [xhat, rstd]) => [center(scaled(dy), xhat as tf.Tensor, rstd as tf.Tensor)],
    tangent: ([dx], [xhat, rstd]) => scaled(center(dx as tf.Tensor, xhat as tf.Tensor, rstd as tf.Tensor)),
    // With c_t = t − mean t, m_t = mean(x̂ t) and x̂_t = r (c_t − x̂ m_t) (r = 1/σ), the derivative of
    // x̂_u along v adds −r (m_u x̂_v + m_v x̂_u + x̂ mean(x̂_u c_v)) to x̂_uv's linear part.
    jet([dx], [xhat, rstd]) {
      const X = xhat as tf.Tensor;
      const r = rstd as tf.Tensor;
      const blocks = jetBlocks(dx as tf.Tensor).map((t) => tf.reshape(t, [-1, ...X.shape.slice(1)])); // [K, B, ..., D]
      const [u, v, uv] = blocks as [tf.Tensor, tf.Tensor, tf.Tensor];
      const mean = (t: tf.Tensor) => tf.mean(t, -1, true);
      const m = (t: tf.Tensor) => mean(tf.mul(X, t));
      const hat = (t: tf.Tensor) => tf.mul(tf.sub(tf.sub(t, mean(t)), tf.mul(X, m(t))), r);
      const hu = hat(u);
      const hv = hat(v);
      const extra = tf.mul(tf.add(tf.add(tf.mul(m(u), hv), tf.mul(m(v), hu)), tf.mul(X, mean(tf.mul(hu, tf.sub(v, mean(v)))))), r);
      const shape = (dx as tf.Tensor).shape.slice(1);
      const out = [hu, hv, tf.sub(hat(uv), extra)].map((t) => scaled(tf.reshape(t, [-1, ...shape])));
      return stackJet(out[0] as tf.Tensor, out[1] as tf.Tensor, out[2] as tf.Tensor);
    },
    weightGrads: (dy, [x], [xhat]) => affineGrads(dy, () => tf.squeeze(xhat as tf.Tensor, [0]), (x as tf.Tensor).shape[0] as number),
  };
}

/**
 * A merge whose derivative is a per-sample factor for each input: Multiply (the product of the
 * other inputs), Maximum and Minimum (a one-hot mask, the first extreme input winning ties).
 */
function factorRule(layer: Layer, factors: (inputs: tf.Tensor[], y: tf.Tensor) => tf.Tensor[]): Rule {
  return {
    forward(inputs) {
      const y = apply(layer, inputs);
      return { y, saved: factors(inputs, y) };
    },
    backward: (dy, saved) => saved.map((f) => mulPerSample(dy, f)),
    tangent: (dx, saved) => tf.addN(dx.map((t, i) => mulPerSample(t, saved[i] as tf.Tensor))),
  };
}

/**
 * Multiply: y = Π xᵢ, whose second derivative adds Σ_{i≠j} ẋ_{i,u} ẋ_{j,v} Π_{k∉{i,j}} x_k to the
 * first-order map of the second-derivative block (a forward pass with `second` also saves the inputs).
 */
function multiplyRule(layer: Layer, n: number): Rule {
  const base = factorRule(layer, productOfOthers);
  return {
    ...base,
    backward: (dy, saved) => base.backward(dy, saved.slice(0, n)),
    forward(inputs, second) {
      const r = base.forward(inputs);
      return second ? { y: r.y, saved: [...r.saved, ...inputs.map((x) => tf.reshape(x, x.shape))] } : r;
    },
    jet(dx, saved) {
      const xs = saved.slice(n);
      const blocks = dx.map(jetBlocks);
      // The first-order map of all three blocks at once: the tangent map of the stacked jets.
      const [yu, yv, yuv] = jetBlocks(base.tangent(dx, saved));
      const cross: tf.Tensor[] = [];
      for (let i = 0; i < n; i++)
        for (let j = 0; j < n; j++) {
          if (i === j) continue;
          const uv = tf.mul((blocks[i] as tf.Tensor[])[0] as tf.Tensor, (blocks[j] as tf.Tensor[])[1] as tf.Tensor);
          const others = xs.filter((_, k) => k !== i && k !== j);
          cross.push(others.length === 0 ? uv : mulPerSample(uv, others.reduce((a, b) => tf.mul(a, b))));
        }
      return stackJet(yu, yv, tf.addN([yuv, ...cross]));
    },
  };
}

const productOfOthers = (inputs: tf.Tensor[]) => inputs.map((_, i) => inputs.filter((__, j) => j !== i).reduce((a, b) => tf.mul(a, b)));

/** The first extreme input (one-hot per input): a maximum of x, or a maximum of −x. */
function firstExtreme(kind: 'max' | 'min') {
  return (inputs: tf.Tensor[], y: tf.Tensor) => {
    const stacked = tf.stack(inputs, 0); // [n, B, ...]
    return tf.unstack(kind === 'max' ? firstMax(stacked, y, 0) : firstMax(tf.neg(stacked), tf.neg(y), 0), 0);
  };
}

/**
 * Dot without `normalize`: the batched product of two inputs of rank 2 (`[B, d]·[B, d] → [B, 1]`)
 * or rank 3 (`[B, T, d]·[B, S, d] → [B, T, S]`, each contracted over the axis `axes` names, as
 * tfjs-layers' `batchDot`). Bilinear: ẏ = D(ȧ, b) + D(a, ḃ), the cotangents are D's partial
 * adjoints, and the second-order block adds the cross terms D(ȧ_u, ḃ_v) + D(ȧ_v, ḃ_u).
 * Tangents and cotangents are `[K·B, ...]` (K blocks of the B samples); a and b are tiled to match.
 */
function dotRule(layer: Layer, inShapes: Shape[]): Rule {
  const c = config(layer);
  if (c['normalize'] === true) throw new NotCompilable(`Dot '${layer.name}' with normalize`);
  const ranks = inShapes.map((s) => s.length);
  if (inShapes.length !== 2 || ranks[0] !== ranks[1] || (ranks[0] !== 2 && ranks[0] !== 3)) {
    throw new NotCompilable(`Dot '${layer.name}' of inputs of rank ${ranks.join(' and ')}`);
  }
  const rank = ranks[0] as number;
  const axes = (typeof c['axes'] === 'number' ? [c['axes'], c['axes']] : (c['axes'] as number[])).map((a) => (a < 0 ? a + rank : a));
  // The contracted axis moved last: a' = [B, T, d], b' = [B, S, d] (a transpose is its own inverse).
  const last = (t: tf.Tensor, axis: number) => (rank === 3 && axis === 1 ? tf.transpose(t, [0, 2, 1]) : t);
  const [la, lb] = [(t: tf.Tensor) => last(t, axes[0] as number), (t: tf.Tensor) => last(t, axes[1] as number)];
  const dot = (a: tf.Tensor, b: tf.Tensor): tf.Tensor =>
    rank === 2 ? tf.sum(tf.mul(a, b), 1, true) : tf.matMul(la(a) as tf.Tensor3D, lb(b) as tf.Tensor3D, false, true);
  const tiled = (t: tf.Tensor, N: number) => (t.shape[0] === N ? t : tf.tile(t, [N / (t.shape[0] as number), ...t.shape.slice(1).map(() => 1)]));
  const tangent = ([da, db]: tf.Tensor[], [a, b]: tf.Tensor[]): tf.Tensor => {
    const N = (da as tf.Tensor).shape[0] as number;
    return tf.add(dot(da as tf.Tensor, tiled(b as tf.Tensor, N)), dot(tiled(a as tf.Tensor, N), db as tf.Tensor));
  };
  return {
    forward(inputs) {
      const [a, b] = inputs as [tf.Tensor, tf.Tensor];
      // (copies: the tape disposes what a rule saves, and these are other ops' outputs)
      return { y: apply(layer, inputs), saved: [tf.reshape(a, a.shape), tf.reshape(b, b.shape)] };
    },
    backward(dy, [a, b]) {
      const N = dy.shape[0] as number;
      const [A, Bt] = [tiled(a as tf.Tensor, N), tiled(b as tf.Tensor, N)];
      if (rank === 2) return [tf.mul(dy, Bt), tf.mul(dy, A)];
      const g = dy as tf.Tensor3D;
      return [la(tf.matMul(g, lb(Bt) as tf.Tensor3D)), lb(tf.matMul(g, la(A) as tf.Tensor3D, true, false))];
    },
    tangent,
    jet(dx, saved) {
      const [au, av] = jetBlocks(dx[0] as tf.Tensor);
      const [bu, bv] = jetBlocks(dx[1] as tf.Tensor);
      const [yu, yv, yuv] = jetBlocks(tangent(dx, saved));
      return stackJet(yu, yv, tf.add(yuv, tf.add(dot(au, bv), dot(av, bu))));
    },
  };
}

/** Nearest-neighbour UpSampling2D: the transpose sums each block. */
function upSamplingRule(layer: Layer, inShape: number[]): Rule {
  const c = config(layer);
  if ((c['interpolation'] ?? 'nearest') !== 'nearest') throw new NotCompilable(`${String(c['interpolation'])} UpSampling2D '${layer.name}'`);
  channelsLast(layer);
  const [sh, sw] = pair(c['size'], 2);
  const [H, W, C] = inShape as [number, number, number];
  return linearRule(layer, (dy) => {
    const N = dy.shape[0] as number;
    const rows = tf.sum(tf.reshape(dy, [N * H, sh, W * sw * C]), 1); // [N·H, W·sw·C]
    return [tf.reshape(tf.sum(tf.reshape(rows, [N * H * W, sw, C]), 1), [N, H, W, C])];
  });
}

function sides(v: unknown): [[number, number], [number, number]] {
  if (typeof v === 'number') return [[v, v], [v, v]];
  const [h, w] = v as unknown[];
  const side = (s: unknown): [number, number] => (Array.isArray(s) ? [Number(s[0]), Number(s[1])] : [Number(s), Number(s)]);
  return [side(h), side(w)];
}

const identity: RuleBuilder = ({ layer }) => ({ forward: (inputs) => ({ y: apply(layer, inputs), saved: [] }), backward: (dy) => [dy], tangent: ([dx]) => dx as tf.Tensor });

const rows = (dy: tf.Tensor) => dy.shape[0] as number;

/**
 * The rules of the structural layers, by class name. The elementwise merges (Add, Average,
 * Multiply, Maximum, Minimum) are written for inputs of the output's shape; the registry runs them
 * through `broadcastingMergeRule` when the inputs broadcast.
 */
export const STRUCTURE_RULES = {
  // The identity at inference.
  Dropout: identity,
  SpatialDropout1D: identity,
  GaussianNoise: identity,
  GaussianDropout: identity,
  AlphaDropout: identity,
  BatchNormalization: ({ layer, inShapes }) => batchNormRule(layer, inShapes[0] as (number | null)[]),
  LayerNormalization: ({ layer, inShapes }) => layerNormRule(layer, tail(inShapes[0] as Shape)),
  Flatten: ({ layer, inShapes }) => linearRule(layer, (dy) => [tf.reshape(dy, [rows(dy), ...tail(inShapes[0] as Shape)])]),
  Reshape: ({ layer, inShapes }) => linearRule(layer, (dy) => [tf.reshape(dy, [rows(dy), ...tail(inShapes[0] as Shape)])]),
  Permute: ({ layer }) => {
    const dims = (config(layer)['dims'] as number[]).map(Number);
    const inverse = dims.map((_, i) => dims.indexOf(i + 1) + 1);
    return linearRule(layer, (dy) => [tf.transpose(dy, [0, ...inverse])]);
  },
  // [B, C] → [B, n, C]: the transpose sums over the copies.
  RepeatVector: ({ layer }) => linearRule(layer, (dy) => [tf.sum(dy, 1)]),
  ZeroPadding2D: ({ layer, inShapes }) => {
    channelsLast(layer);
    const [[t], [l]] = sides(config(layer)['padding']);
    return linearRule(layer, (dy) => [tf.slice(dy, [0, t, l, 0], [rows(dy), ...tail(inShapes[0] as Shape)])]);
  },
  Cropping2D: ({ layer }) => {
    channelsLast(layer);
    const [[t, b], [l, r]] = sides(config(layer)['cropping']);
    return linearRule(layer, (dy) => [tf.pad(dy, [[0, 0], [t, b], [l, r], [0, 0]])]);
  },
  UpSampling2D: ({ layer, inShapes }) => upSamplingRule(layer, tail(inShapes[0] as Shape)),
  Dot: ({ layer, inShapes }) => dotRule(layer, inShapes),
  Rescaling: ({ layer }) => {
    const scale = Number(config(layer)['scale'] ?? 1);
    return { forward: (inputs) => ({ y: apply(layer, inputs), saved: [] }), backward: (dy) => [tf.mul(dy, scale)], tangent: ([dx]) => tf.mul(dx as tf.Tensor, scale) };
  },
  Add: ({ layer, inShapes }) => linearRule(layer, (dy) => inShapes.map(() => dy)),
  Average: ({ layer, inShapes }) =>
    linearRule(layer, (dy) => {
      const share = tf.div(dy, inShapes.length);
      return inShapes.map(() => share);
    }),
  Concatenate: ({ layer, inShapes, outShape }) => {
    const rank = outShape.length;
    const axis = Number(config(layer)['axis'] ?? -1);
    const ax = axis < 0 ? rank + axis : axis;
    const sizes = inShapes.map((s) => s[ax] as number);
    return linearRule(layer, (dy) => tf.split(dy, sizes, ax));
  },
  Multiply: ({ layer, inShapes }) => multiplyRule(layer, inShapes.length),
  Maximum: ({ layer }) => factorRule(layer, firstExtreme('max')),
  Minimum: ({ layer }) => factorRule(layer, firstExtreme('min')),
} satisfies FamilyRules;

/** The elementwise merges, whose inputs may broadcast. */
export const MERGES: ReadonlySet<string> = new Set(['Add', 'Average', 'Multiply', 'Maximum', 'Minimum']);
