/**
 * What every layer family of infogeo's graph provides, and the helpers they share.
 *
 * A rule holds one layer's three maps side by side: its forward pass (which records what the other
 * two need: a ReLU's mask, a max pool's argmax, a BatchNorm's scale), its transpose (reverse mode:
 * output cotangents → input cotangents) and its linearisation (forward mode: input tangents →
 * output tangent). Both linear maps are made of plain forward kernels and take many rows at once.
 *
 * Layout: a batch of B samples goes forward; cotangents and tangents are row-major over K rows,
 * `t[r·B + b]` is row r of sample b, so that a per-sample factor `[B, ...]` multiplies `[K·B, ...]`
 * by broadcasting over the first axis (see {@link mulPerSample}).
 *
 * Second-order forward mode pushes jets: for tangent pairs (u, v), the first derivatives ż_u, ż_v
 * and the second ∂²z[u, v], stacked as three blocks of K·B rows, `[ż_u; ż_v; z̈_uv]` (see
 * {@link jetBlocks}). A layer that is linear, or linear once its forward pass has chosen (ReLU's
 * mask, a max pool's argmax), maps the three blocks with its tangent map; only a layer with a
 * non-zero second derivative (a smooth activation, softmax, LayerNorm, Multiply) has a `jet`.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { SymbolicTensor } from '@tensorflow/tfjs-layers';
import type { Cotangent } from './phases.js';
import type { WeightGrads } from './weights.js';

/** A layer of a model, as tfjs-layers types it. */
export type Layer = SymbolicTensor['sourceLayer'];

/** A static shape with the batch dimension first (null). */
export type Shape = (number | null)[];

/** The three maps of one layer. */
export interface Rule {
  /**
   * Forward pass for a batch of B samples: the output, and what the linear maps need; with
   * `second`, also what {@link Rule.jet} needs (where in `saved` is the rule's own business: its
   * other maps must find their tensors in both layouts).
   */
  forward(inputs: tf.Tensor[], second?: boolean): { y: tf.Tensor; saved: tf.Tensor[] };
  /** Input cotangents from the output cotangent `dy: [K·B, ...outShape]` (reverse mode). */
  backward(dy: tf.Tensor, saved: tf.Tensor[]): Cotangent[];
  /** The output tangent from the input tangents `dx[i]: [K·B, ...inShape[i]]` (forward mode). */
  tangent(dx: tf.Tensor[], saved: tf.Tensor[]): tf.Tensor;
  /**
   * Second-order forward mode, for a layer whose second derivative is not zero: the output jets
   * `[3·K·B, ...outShape]` from the input jets `dx[i]: [3·K·B, ...inShape[i]]`, blocks
   * `[ż_u; ż_v; z̈_uv]`, with what a forward pass run with `second` saved. Absent where the tangent
   * map applied to the stacked blocks is exact (a linear or piecewise-linear layer).
   */
  jet?(dx: tf.Tensor[], saved: tf.Tensor[]): tf.Tensor;
  /**
   * The cotangents of the layer's trainable weights, per sample (`[B, K, size]` each, see
   * `weights.ts`), from the output cotangent `dy: [K·B, ...outShape]` and the layer's forward
   * inputs `[B, ...]`. Absent where the graph does not cover the layer's weights.
   */
  weightGrads?(dy: tf.Tensor, inputs: tf.Tensor[], saved: tf.Tensor[]): WeightGrads;
}

/** What a rule is made from: the layer, the static shapes around it, and the model's head. */
export interface RuleContext {
  layer: Layer;
  inShapes: Shape[];
  outShape: Shape;
  /** The layer is the classifier's Dense head whose softmax is left out (the logits). */
  linearHead: boolean;
}

/**
 * Every layer class that tfjs-layers 4.22 registers (its serialization map, checked by
 * tests/graph.test.ts): the keys of the rule table in `registry.ts`, which must name each of them.
 */
export const LAYER_CLASSES = [
  'Activation', 'Add', 'AlphaDropout', 'Average', 'AveragePooling1D', 'AveragePooling2D', 'AveragePooling3D', 'BatchNormalization',
  'Bidirectional', 'CategoryEncoding', 'CenterCrop', 'Concatenate', 'Conv1D', 'Conv2D', 'Conv2DTranspose', 'Conv3D', 'Conv3DTranspose',
  'ConvLSTM2D', 'ConvLSTM2DCell', 'Cropping2D', 'Dense', 'DepthwiseConv2D', 'Dot', 'Dropout', 'ELU', 'Embedding', 'Flatten', 'Functional',
  'GRU', 'GRUCell', 'GaussianDropout', 'GaussianNoise', 'GlobalAveragePooling1D', 'GlobalAveragePooling2D', 'GlobalMaxPooling1D',
  'GlobalMaxPooling2D', 'InputLayer', 'LSTM', 'LSTMCell', 'LayerNormalization', 'LeakyReLU', 'Masking', 'MaxPooling1D', 'MaxPooling2D',
  'MaxPooling3D', 'Maximum', 'Minimum', 'Model', 'Multiply', 'PReLU', 'Permute', 'RNN', 'RandomWidth', 'ReLU', 'RepeatVector', 'Rescaling',
  'Reshape', 'Resizing', 'SeparableConv2D', 'Sequential', 'SimpleRNN', 'SimpleRNNCell', 'Softmax', 'SpatialDropout1D', 'StackedRNNCells',
  'ThresholdedReLU', 'TimeDistributed', 'UpSampling2D', 'ZeroPadding2D',
] as const;

/** A layer class of tfjs-layers (see {@link LAYER_CLASSES}). */
export type LayerClass = (typeof LAYER_CLASSES)[number];

/** Makes the rule of one layer. @throws NotCompilable where this layer's configuration is not covered */
export type RuleBuilder = (ctx: RuleContext) => Rule;

/** A family's rules by layer class: a typo or an unknown class is a compile error. */
export type FamilyRules = Partial<Record<LayerClass, RuleBuilder>>;

/** Why a layer could not be compiled (the callers fall back to `tf.grad`). */
export class NotCompilable extends Error {}

/** The product of a shape's known dimensions. */
export function product(shape: readonly (number | null)[]): number {
  return shape.reduce<number>((a, d) => a * (d ?? 1), 1);
}

/** A shape without its batch dimension, as numbers. */
export function tail(shape: Shape): number[] {
  return shape.slice(1) as number[];
}

export function config(layer: Layer): Record<string, unknown> {
  return layer.getConfig() as Record<string, unknown>;
}

/** The current value of the layer's weight whose name ends in `suffix`. */
export function weight(layer: Layer, suffix: string): tf.Tensor | undefined {
  return layer.weights.find((v) => v.originalName.endsWith(suffix))?.read();
}

/** A 2-D size option (`3` or `[3, 2]`). */
export function pair(v: unknown, fallback: number): [number, number] {
  if (Array.isArray(v)) return [Number(v[0]), Number(v[1] ?? v[0])];
  if (typeof v === 'number') return [v, v];
  return [fallback, fallback];
}

/** The first entry of a 1-D size option (`3` or `[3]`). */
export function single(v: unknown, fallback: number): number {
  return Number(Array.isArray(v) ? v[0] : v ?? fallback);
}

/** @throws NotCompilable for a channels-first layer (the graph is channels last). */
export function channelsLast(layer: Layer): void {
  if (config(layer)['dataFormat'] === 'channelsFirst') throw new NotCompilable(`channels-first layer '${layer.name}'`);
}

/**
 * 1 at the first maximum along `axis` of `x` (whose maximum is `y`, broadcastable), 0 elsewhere.
 * d = x − max ≤ 0, and 0 exactly at the maxima: hit = 1 − step(−d); the first of them is where the
 * running count of hits is 1 (subtractions and steps: wasm's broadcast comparisons are ~25×
 * slower). A max pool, a global max pool and a Maximum merge choose with it, as tfjs's cpu kernel,
 * TensorFlow and PyTorch do (the first of equal maxima).
 */
export function firstMax(x: tf.Tensor, y: tf.Tensor, axis: number): tf.Tensor {
  const hit = tf.sub(1, tf.step(tf.neg(tf.sub(x, y))));
  return tf.mul(hit, tf.step(tf.sub(1.5, tf.cumsum(hit, axis))));
}

/** Multiplies `t: [K·B, ...]` by a per-sample factor `f: [B, ...]` (same trailing shape). */
export function mulPerSample(t: tf.Tensor, f: tf.Tensor): tf.Tensor {
  const M = f.size;
  return tf.reshape(tf.mul(tf.reshape(t, [-1, M]), tf.reshape(f, [1, M])), t.shape);
}

/** The three blocks `[ż_u; ż_v; z̈_uv]` of a stacked jet `[3·K·B, ...]`. */
export function jetBlocks(t: tf.Tensor): [tf.Tensor, tf.Tensor, tf.Tensor] {
  return tf.split(t, 3, 0) as [tf.Tensor, tf.Tensor, tf.Tensor];
}

/** Stacks three blocks into one jet (see {@link jetBlocks}). */
export function stackJet(u: tf.Tensor, v: tf.Tensor, uv: tf.Tensor): tf.Tensor {
  return tf.concat([u, v, uv], 0);
}

/** The layer's own forward pass in inference mode. */
export function apply(layer: Layer, inputs: tf.Tensor[]): tf.Tensor {
  const y = layer.apply(inputs.length === 1 ? (inputs[0] as tf.Tensor) : inputs, { training: false });
  if (Array.isArray(y)) throw new NotCompilable(`layer '${layer.name}' has several outputs`);
  return y as tf.Tensor;
}

/**
 * A rule for a layer that is linear and parameter-free in its inputs (reshapes, padding, pooling
 * averages, sums, concatenation): the tangent is the layer itself applied to the tangents.
 */
export function linearRule(layer: Layer, backward: (dy: tf.Tensor) => Cotangent[]): Rule {
  return {
    forward: (inputs) => ({ y: apply(layer, inputs), saved: [] }),
    backward: (dy) => backward(dy),
    tangent: (dx) => apply(layer, dx),
  };
}

/**
 * Tensors derived from a layer's weights (a conv's phase filters, a dense layer's transposed
 * kernel), made for each forward pass from float32 arrays that are rebuilt only when the weight
 * tensors they come from were replaced (training and `setWeights` write new tensors, with new
 * dataIds). Nothing is held between calls but the arrays.
 */
export function derivedFromWeights(sources: () => (tf.Tensor | undefined)[], build: () => { data: Float32Array; shape: number[] }[]): () => tf.Tensor[] {
  let cache: { stamp: unknown[]; arrays: { data: Float32Array; shape: number[] }[] } | undefined;
  return () => {
    const stamp = sources().map((t) => (t as unknown as { dataId?: unknown } | undefined)?.dataId);
    if (cache === undefined || stamp.some((d, i) => d !== cache?.stamp[i])) cache = { stamp, arrays: build() };
    return cache.arrays.map(({ data, shape }) => tf.tensor(data, shape, 'float32'));
  };
}
