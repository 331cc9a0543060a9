/**
 * Activations: every built-in elementwise activation of tfjs-layers with its exact derivative,
 * the activation layers (Activation, ReLU, LeakyReLU, PReLU, ELU, ThresholdedReLU, Softmax), and
 * the rule of a layer made of a linear part followed by an activation (Dense, the convolutions).
 *
 * An elementwise φ contributes the same factor φ'(z) to both linear maps: the backward pass
 * multiplies the cotangent by it, the forward mode the tangent. It is computed once per forward
 * pass, from the output y where that is exact and cheap (so that the layer's own fused kernel can
 * run), else from the pre-activation z. Second-order forward mode adds φ''(z)·ż_u·ż_v to the second
 * derivative's block; φ'' comes from the same argument as φ', and only where it is not zero (a
 * ReLU, a hard sigmoid, a leaky or thresholded ReLU are piecewise linear: no jet).
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Cotangent } from './phases.js';
import { apply, config, jetBlocks, mulPerSample, NotCompilable, stackJet, weight } from './rule.js';
import type { FamilyRules, Layer, Rule } from './rule.js';
import { sharedSum } from './weights.js';
import type { WeightGrads } from './weights.js';

type Derivative = (t: tf.Tensor) => tf.Tensor;

/**
 * φ' of an elementwise activation, as a function of its output y or of its input z, and φ'' where
 * it is not zero almost everywhere, as a function of the same argument as φ' (y when `fromY` is
 * given, else z).
 */
export interface Elementwise {
  fromY?: Derivative;
  fromZ?: Derivative;
  second?: Derivative;
}

const SELU_ALPHA = 1.6732632423543772;
const SELU_SCALE = 1.0507009873554805;

const ones = (t: tf.Tensor) => tf.onesLike(t);

/** The derivative of a built-in activation by name, 'identity' for linear, null if unknown. */
export function elementwise(name: string, options: { alpha?: number; maxValue?: number; theta?: number } = {}): Elementwise | 'identity' | null {
  const alpha = options.alpha;
  switch (name) {
    case 'linear':
      return 'identity';
    case 'relu': {
      const max = options.maxValue;
      if (max == null) return { fromY: (y) => tf.step(y), fromZ: (z) => tf.step(z) };
      const inside = (t: tf.Tensor) => tf.mul(tf.step(t), tf.step(tf.sub(max, t)));
      return { fromY: inside, fromZ: inside };
    }
    case 'relu6':
      return elementwise('relu', { maxValue: 6 });
    case 'sigmoid':
      return { fromY: (y) => tf.mul(y, tf.sub(1, y)), second: (y) => tf.mul(tf.mul(y, tf.sub(1, y)), tf.sub(1, tf.mul(2, y))) };
    case 'tanh':
      return { fromY: (y) => tf.sub(1, tf.square(y)), second: (y) => tf.mul(-2, tf.mul(y, tf.sub(1, tf.square(y)))) };
    case 'softplus':
      return {
        fromZ: (z) => tf.sigmoid(z),
        second: (z) => {
          const s = tf.sigmoid(z);
          return tf.mul(s, tf.sub(1, s));
        },
      };
    case 'elu': {
      const a = alpha ?? 1;
      // y = a(eᶻ − 1) for z ≤ 0, so a·eᶻ = y + a.
      // φ'' = a·eᶻ = y + a for z < 0, 0 for z > 0 (the left one at the kink).
      return {
        fromY: (y) => tf.where(tf.greater(y, 0), ones(y), tf.add(y, a)),
        fromZ: (z) => tf.where(tf.greater(z, 0), ones(z), tf.mul(a, tf.exp(z))),
        second: (y) => tf.where(tf.greater(y, 0), tf.zerosLike(y), tf.add(y, a)),
      };
    }
    case 'selu':
      return {
        fromZ: (z) => tf.where(tf.greater(z, 0), tf.fill(z.shape, SELU_SCALE), tf.mul(SELU_SCALE * SELU_ALPHA, tf.exp(z))),
        second: (z) => tf.where(tf.greater(z, 0), tf.zerosLike(z), tf.mul(SELU_SCALE * SELU_ALPHA, tf.exp(z))),
      };
    case 'softsign':
      // φ'' = −2 sign(z)/(1 + |z|)³
      return { fromZ: (z) => tf.reciprocal(tf.square(tf.add(1, tf.abs(z)))), second: (z) => tf.div(tf.mul(-2, tf.sign(z)), tf.pow(tf.add(1, tf.abs(z)), 3)) };
    case 'hardSigmoid':
      // clip(0.2 z + 0.5, 0, 1)
      return { fromZ: (z) => tf.mul(0.2, tf.mul(tf.step(tf.add(z, 2.5)), tf.step(tf.sub(2.5, z)))) };
    case 'swish':
      // z·σ(z): φ' = σ + z σ (1 − σ), φ'' = σ (1 − σ) (2 + z (1 − 2σ))
      return {
        fromZ: (z) => {
          const s = tf.sigmoid(z);
          return tf.add(s, tf.mul(z, tf.mul(s, tf.sub(1, s))));
        },
        second: (z) => {
          const s = tf.sigmoid(z);
          return tf.mul(tf.mul(s, tf.sub(1, s)), tf.add(2, tf.mul(z, tf.sub(1, tf.mul(2, s)))));
        },
      };
    case 'mish':
      // z·t with t = tanh(softplus z), t' = (1 − t²) σ(z): φ' = t + z t',
      // φ'' = 2t' + z t'' with t'' = −2 t t' σ + (1 − t²) σ (1 − σ)
      return {
        fromZ: (z) => {
          const t = tf.tanh(tf.softplus(z));
          return tf.add(t, tf.mul(z, tf.mul(tf.sub(1, tf.square(t)), tf.sigmoid(z))));
        },
        second: (z) => {
          const t = tf.tanh(tf.softplus(z));
          const s = tf.sigmoid(z);
          const sech2 = tf.sub(1, tf.square(t));
          const t1 = tf.mul(sech2, s);
          const t2 = tf.add(tf.mul(-2, tf.mul(t, tf.mul(t1, s))), tf.mul(sech2, tf.mul(s, tf.sub(1, s))));
          return tf.add(tf.mul(2, t1), tf.mul(z, t2));
        },
      };
    case 'gelu':
      // z Φ(z): φ' = Φ(z) + z φ(z), φ'' = φ(z) (2 − z²)
      return {
        fromZ: (z) => {
          const cdf = tf.mul(0.5, tf.add(1, tf.erf(tf.div(z, Math.SQRT2))));
          const pdf = tf.mul(1 / Math.sqrt(2 * Math.PI), tf.exp(tf.mul(-0.5, tf.square(z))));
          return tf.add(cdf, tf.mul(z, pdf));
        },
        second: (z) => tf.mul(tf.mul(1 / Math.sqrt(2 * Math.PI), tf.exp(tf.mul(-0.5, tf.square(z)))), tf.sub(2, tf.square(z))),
      };
    case 'gelu_new': {
      // ½ z (1 + tanh u), u = c (z + 0.044715 z³)
      const c = Math.sqrt(2 / Math.PI);
      return {
        fromZ: (z) => {
          const t = tf.tanh(tf.mul(c, tf.add(z, tf.mul(0.044715, tf.pow(z, 3)))));
          const du = tf.mul(c, tf.add(1, tf.mul(3 * 0.044715, tf.square(z))));
          return tf.add(tf.mul(0.5, tf.add(1, t)), tf.mul(tf.mul(0.5, z), tf.mul(tf.sub(1, tf.square(t)), du)));
        },
        // φ'' = (1 − t²) u' + ½ z (1 − t²)(u'' − 2 t u'²), u'' = 6c·0.044715 z
        second: (z) => {
          const t = tf.tanh(tf.mul(c, tf.add(z, tf.mul(0.044715, tf.pow(z, 3)))));
          const sech2 = tf.sub(1, tf.square(t));
          const du = tf.mul(c, tf.add(1, tf.mul(3 * 0.044715, tf.square(z))));
          const ddu = tf.mul(6 * c * 0.044715, z);
          return tf.add(tf.mul(sech2, du), tf.mul(tf.mul(0.5, z), tf.mul(sech2, tf.sub(ddu, tf.mul(2, tf.mul(t, tf.square(du)))))));
        },
      };
    }
    case 'leakyRelu': {
      const a = alpha ?? 0.3;
      return { fromZ: (z) => tf.where(tf.greater(z, 0), ones(z), tf.fill(z.shape, a)) };
    }
    case 'thresholdedRelu': {
      const theta = options.theta ?? 1;
      return { fromZ: (z) => tf.step(tf.sub(z, theta)) };
    }
    default:
      return null;
  }
}

/**
 * The linear part of a layer (a Dense layer's or a convolution's weights): how it maps a batch
 * (with its bias, for activations that need z), its transpose and its action on tangents (no
 * bias). `prepare` makes tensors the linear maps need, once per forward pass.
 */
export interface LinearPart {
  prepare(): tf.Tensor[];
  pre(x: tf.Tensor): tf.Tensor;
  transpose(dz: tf.Tensor, prepared: tf.Tensor[]): Cotangent;
  map(dx: tf.Tensor, prepared: tf.Tensor[]): tf.Tensor;
  /** Its weights' cotangents per sample, from the cotangent `dz: [K·B, ...]` of its output and its input `x: [B, ...]`. */
  weightGrads?(dz: tf.Tensor, x: tf.Tensor, prepared: tf.Tensor[]): WeightGrads;
}

/** The layer's activation object (tfjs-layers keeps it on Dense and the convolutions). */
function activationOf(layer: Layer): (z: tf.Tensor) => tf.Tensor {
  const act = (layer as unknown as { activation?: { apply?: (z: tf.Tensor) => tf.Tensor } }).activation;
  if (act == null || typeof act.apply !== 'function') throw new NotCompilable(`the activation of layer '${layer.name}'`);
  return (z) => (act.apply as (z: tf.Tensor) => tf.Tensor).call(act, z);
}

/**
 * A layer y = φ(linear(x)) (or y = φ(x) without a linear part): φ'(z) is saved by the forward
 * pass and multiplies the cotangent (before the transpose) and the tangent (after the map).
 * `logits`: the output is the linear part's z, the layer's own activation (the classifier's
 * softmax) left out.
 */
export function activationRule(
  layer: Layer,
  name: string,
  options: { alpha?: number; maxValue?: number; theta?: number } = {},
  linear?: LinearPart,
  logits = false,
): Rule {
  const d = elementwise(name, options);
  if (d === null) throw new NotCompilable(`activation '${name}' of layer '${layer.name}'`);
  const fused = d === 'identity' || d.fromY !== undefined;
  const phi = fused || linear === undefined ? undefined : activationOf(layer);
  const outerGrad = (dy: tf.Tensor, saved: tf.Tensor[]) => (d === 'identity' ? dy : mulPerSample(dy, saved[saved.length - 1] as tf.Tensor));
  const linearGrads = linear?.weightGrads;
  const curved = !logits && d !== 'identity' && d.second !== undefined;
  return {
    ...(linearGrads ? { weightGrads: (dy: tf.Tensor, inputs: tf.Tensor[], saved: tf.Tensor[]) => linearGrads(outerGrad(dy, saved), inputs[0] as tf.Tensor, saved) } : {}),
    // saved: the linear part's tensors, then φ'' (a forward pass with `second`), then φ'.
    forward(inputs, second) {
      const prepared = linear?.prepare() ?? [];
      if (logits && linear) return { y: linear.pre(inputs[0] as tf.Tensor), saved: prepared };
      if (d === 'identity') return { y: apply(layer, inputs), saved: prepared };
      const curvature = (arg: tf.Tensor) => (second && d.second !== undefined ? [d.second(arg)] : []);
      if (d.fromY !== undefined) {
        const y = apply(layer, inputs);
        return { y, saved: [...prepared, ...curvature(y), d.fromY(y)] };
      }
      const z = linear ? linear.pre(inputs[0] as tf.Tensor) : (inputs[0] as tf.Tensor);
      const y = phi ? phi(z) : apply(layer, inputs);
      return { y, saved: [...prepared, ...curvature(z), (d.fromZ as Derivative)(z)] };
    },
    backward(dy, saved) {
      const g = outerGrad(dy, saved);
      return [linear ? linear.transpose(g, saved) : g];
    },
    tangent([dx], saved) {
      const t = linear ? linear.map(dx as tf.Tensor, saved) : (dx as tf.Tensor);
      return d === 'identity' ? t : mulPerSample(t, saved[saved.length - 1] as tf.Tensor);
    },
    ...(curved
      ? {
          // y_u = φ'·t_u, y_v = φ'·t_v, y_uv = φ'·t_uv + φ''·t_u·t_v, with t = the linear part's map.
          jet([dx], saved) {
            const t = linear ? linear.map(dx as tf.Tensor, saved) : (dx as tf.Tensor);
            const [tu, tv] = jetBlocks(t);
            const [yu, yv, yuv] = jetBlocks(mulPerSample(t, saved[saved.length - 1] as tf.Tensor));
            return stackJet(yu, yv, tf.add(yuv, mulPerSample(tf.mul(tu, tv), saved[saved.length - 2] as tf.Tensor)));
          },
        }
      : {}),
  };
}

/** A PReLU layer: φ'(z) = 1 for z > 0, else its learned slope α (per position or channel). */
function preluRule(layer: Layer): Rule {
  if (weight(layer, 'alpha') === undefined) throw new NotCompilable(`the slopes of PReLU '${layer.name}'`);
  const slope = (z: tf.Tensor) => tf.where(tf.greater(z, 0), tf.onesLike(z), tf.mul(tf.onesLike(z), weight(layer, 'alpha') as tf.Tensor));
  return {
    forward: (inputs) => ({ y: apply(layer, inputs), saved: [slope(inputs[0] as tf.Tensor)] }),
    backward: (dy, [s]) => [mulPerSample(dy, s as tf.Tensor)],
    tangent: ([dx], [s]) => mulPerSample(dx as tf.Tensor, s as tf.Tensor),
    // y = max(z, 0) + α min(z, 0): ∂y/∂α = min(z, 0), summed over the axes α is shared by.
    weightGrads: (dy, [z]) => ({
      alpha: () => sharedSum(dy, tf.minimum(z as tf.Tensor, 0), (weight(layer, 'alpha') as tf.Tensor).shape, (z as tf.Tensor).shape[0] as number),
    }),
  };
}

/**
 * Softmax and log-softmax over the last axis, of the input or (a Dense layer with this activation)
 * of its linear part. Their Jacobians per position are diag(p) − ppᵀ (symmetric: the same map both
 * ways) and I − 1pᵀ (transpose: I − p1ᵀ).
 */
export function softmaxRule(layer: Layer, kind: 'softmax' | 'logSoftmax', axis: unknown, rank: number, linear?: LinearPart): Rule {
  if (axis != null && axis !== -1 && axis !== rank - 1) throw new NotCompilable(`${kind} over axis ${String(axis)} in layer '${layer.name}'`);
  const sumLast = (t: tf.Tensor) => tf.sum(t, -1, true);
  const phi = linear === undefined ? undefined : activationOf(layer);
  // saved: the linear part's tensors, then p.
  const pOf = (saved: tf.Tensor[]) => saved[saved.length - 1] as tf.Tensor;
  const outerGrad = (dy: tf.Tensor, P: tf.Tensor) =>
    kind === 'softmax' ? mulPerSample(tf.sub(dy, sumLast(mulPerSample(dy, P))), P) : tf.sub(dy, mulPerSample(tf.mul(sumLast(dy), tf.onesLike(dy)), P));
  const inner = (dx: tf.Tensor, saved: tf.Tensor[]) => (linear ? linear.map(dx, saved) : dx);
  const linearGrads = linear?.weightGrads;
  return {
    ...(linearGrads ? { weightGrads: (dy: tf.Tensor, inputs: tf.Tensor[], saved: tf.Tensor[]) => linearGrads(outerGrad(dy, pOf(saved)), inputs[0] as tf.Tensor, saved) } : {}),
    forward(inputs) {
      const prepared = linear?.prepare() ?? [];
      const y = linear && phi ? phi(linear.pre(inputs[0] as tf.Tensor)) : apply(layer, inputs);
      return { y, saved: [...prepared, kind === 'softmax' ? y : tf.exp(y)] };
    },
    backward(dy, saved) {
      const g = outerGrad(dy, pOf(saved));
      return [linear ? linear.transpose(g, saved) : g];
    },
    tangent([dx], saved) {
      const t = inner(dx as tf.Tensor, saved);
      const P = pOf(saved);
      const mean = sumLast(mulPerSample(t, P));
      return kind === 'softmax' ? mulPerSample(tf.sub(t, mean), P) : tf.sub(t, mean);
    },
    jet: ([dx], saved) => softmaxJet(kind, inner(dx as tf.Tensor, saved), pOf(saved)),
  };
}

/**
 * Second-order forward mode of softmax or log-softmax over the last axis, from the stacked jets of
 * its input `[3·K·B, ..., C]` and p = softmax `[B, ..., C]`. With c(t) = t − ⟨p, t⟩ and
 * ṗ_v = p ⊙ c(t_v): softmax's second derivative is p ⊙ c(t_uv) + ṗ_v ⊙ c(t_u) − p ⟨ṗ_v, t_u⟩,
 * log-softmax's c(t_uv) − ⟨ṗ_v, t_u⟩ (the Hessian of log-sum-exp, diag p − ppᵀ, on t_u and t_v).
 */
export function softmaxJet(kind: 'softmax' | 'logSoftmax', t: tf.Tensor, p: tf.Tensor): tf.Tensor {
  const [tu, tv, tuv] = jetBlocks(t);
  const sumLast = (a: tf.Tensor) => tf.sum(a, -1, true);
  const centred = (a: tf.Tensor) => tf.sub(a, sumLast(mulPerSample(a, p)));
  const cu = centred(tu);
  const cv = centred(tv);
  const pv = mulPerSample(cv, p);
  const cross = sumLast(tf.mul(pv, tu));
  if (kind === 'logSoftmax') return stackJet(cu, cv, tf.sub(centred(tuv), cross));
  const pdot = (a: tf.Tensor) => mulPerSample(a, p);
  return stackJet(pdot(cu), pv, tf.sub(tf.add(pdot(centred(tuv)), tf.mul(pv, cu)), pdot(tf.mul(cross, tf.onesLike(tu)))));
}

/** The rules of the activation layers, by class name. */
export const ACTIVATION_LAYER_RULES = {
  Activation: ({ layer, outShape }) => {
    const name = String(config(layer)['activation']);
    if (name === 'softmax' || name === 'logSoftmax') return softmaxRule(layer, name, -1, outShape.length);
    return activationRule(layer, name);
  },
  Softmax: ({ layer, outShape }) => softmaxRule(layer, 'softmax', config(layer)['axis'], outShape.length),
  ReLU: ({ layer }) => activationRule(layer, 'relu', { maxValue: (config(layer)['maxValue'] as number | null | undefined) ?? undefined }),
  LeakyReLU: ({ layer }) => activationRule(layer, 'leakyRelu', { alpha: Number(config(layer)['alpha'] ?? 0.3) }),
  ELU: ({ layer }) => activationRule(layer, 'elu', { alpha: Number(config(layer)['alpha'] ?? 1) }),
  ThresholdedReLU: ({ layer }) => activationRule(layer, 'thresholdedRelu', { theta: Number(config(layer)['theta'] ?? 1) }),
  PReLU: ({ layer }) => preluRule(layer),
} satisfies FamilyRules;
