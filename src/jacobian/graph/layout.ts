/**
 * Two changes of layout around the rules of the other families, which are written for
 * channels-last tensors of equal shapes:
 *
 * - **channels first** (`dataFormat: 'channelsFirst'`, a BatchNormalization over axis 1): the
 *   channels-last rule of the same layer, seen through a transpose. A tensor `[N, C, d₁, …, d_k]`
 *   becomes `[N, d₁, …, d_k, C]` on the way in, and back on the way out; both linear maps of the
 *   layer commute with the transposes, so reverse mode, forward mode and the jets transpose their
 *   rows the same way, and the weights' cotangents are unchanged (tfjs-layers stores a kernel in
 *   one shape whatever the data format).
 * - **broadcasting merges** (`Add`, `Average`, `Multiply`, `Maximum`, `Minimum` of a squeeze-
 *   excitation's `[B, 1, 1, C]` gate and a `[B, H, W, C]` map, or of a `[B, C]` bias and a
 *   `[B, T, C]` sequence): each input is expanded as tfjs-layers' `Merge.call` does (new axes at
 *   position 1 until the ranks agree) and broadcast to the output's shape; the merge's rule on
 *   equal shapes then applies, and each input's cotangent is summed back over the axes it was
 *   broadcast along.
 * - **time distributed** (`TimeDistributed` of any covered layer): the T steps of each sample are
 *   B·T samples of the inner layer's rule, `[N, T, ...]` folded into `[N·T, ...]`; row r of sample b
 *   at step t is row r of inner sample b·T + t, the layout every rule expects, and the weights'
 *   cotangents are summed over the steps.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { materialize } from './phases.js';
import type { Cotangent } from './phases.js';
import { config, NotCompilable, weight } from './rule.js';
import type { Layer, Rule, RuleContext, Shape } from './rule.js';
import type { WeightGrads } from './weights.js';

/** `axis` moved last: the permutation of a rank-`r` tensor, and its inverse. */
function moveLast(r: number, axis: number): { perm: number[]; inverse: number[] } {
  const perm = [...Array.from({ length: r }, (_, i) => i).filter((i) => i !== axis), axis];
  const inverse = perm.map((_, i) => perm.indexOf(i));
  return { perm, inverse };
}

function permuteShape(s: Shape, perm: number[]): Shape {
  return perm.map((i) => s[i] as number | null);
}

/**
 * The axis that a channels-first layer keeps its channels on (1), or a BatchNormalization's axis
 * when it is not the last; undefined for a layer laid out channels last.
 */
export function channelAxis(layer: Layer, inShape: Shape): number | undefined {
  const c = config(layer);
  const rank = inShape.length;
  if (layer.getClassName() === 'BatchNormalization') {
    const a = Number(c['axis'] ?? -1);
    const axis = a < 0 ? rank + a : a;
    return axis === rank - 1 || rank < 3 ? undefined : axis;
  }
  return c['dataFormat'] === 'channelsFirst' && rank >= 3 ? 1 : undefined;
}

/**
 * The rule of a channels-first layer (channels on `axis`): `build` makes the channels-last rule of a
 * view of the layer whose config says channels last (a BatchNormalization's axis: −1) and whose
 * `apply` transposes its inputs to the real layer's layout and its output back.
 */
export function channelsFirstRule(ctx: RuleContext, axis: number, build: (ctx: RuleContext) => Rule): Rule {
  const { layer, inShapes, outShape } = ctx;
  const inLayout = inShapes.map((s) => moveLast(s.length, axis));
  // An output of rank 2 (a Flatten, a global pool) has no spatial axes to move.
  const outLayout = outShape.length >= 3 ? moveLast(outShape.length, axis) : undefined;
  const toLast = (t: tf.Tensor, i = 0) => tf.transpose(t, (inLayout[i] as { perm: number[] }).perm);
  const toFirst = (t: tf.Tensor, i = 0) => tf.transpose(t, (inLayout[i] as { inverse: number[] }).inverse);
  const outToLast = (t: tf.Tensor) => (outLayout ? tf.transpose(t, outLayout.perm) : t);
  const outToFirst = (t: tf.Tensor) => (outLayout ? tf.transpose(t, outLayout.inverse) : t);
  const view = Object.create(layer) as Layer & { getConfig(): Record<string, unknown> };
  view.getConfig = () => {
    const c = { ...(layer.getConfig() as Record<string, unknown>) };
    if (layer.getClassName() === 'BatchNormalization') c['axis'] = -1;
    else c['dataFormat'] = 'channelsLast';
    return c as never;
  };
  // tfjs-backend-cpu and -wasm 4.22 index a BatchNorm's statistics cyclically along the flattened
  // tensor (right only when they lie on the last axis): the view normalises channels last itself.
  if (layer.getClassName() === 'BatchNormalization') view.apply = ((inputs: tf.Tensor | tf.Tensor[]) => batchNormLast(layer, Array.isArray(inputs) ? (inputs[0] as tf.Tensor) : inputs)) as Layer['apply'];
  else view.apply = ((inputs: tf.Tensor | tf.Tensor[], kwargs?: unknown) => {
    const xs = Array.isArray(inputs) ? inputs.map((x, i) => toFirst(x, i)) : toFirst(inputs);
    const y = layer.apply(xs, kwargs as never);
    if (Array.isArray(y)) throw new NotCompilable(`layer '${layer.name}' has several outputs`);
    return outToLast(y as tf.Tensor);
  }) as Layer['apply'];
  const inner = build({ ...ctx, layer: view, inShapes: inShapes.map((s, i) => permuteShape(s, (inLayout[i] as { perm: number[] }).perm)), outShape: outLayout ? permuteShape(outShape, outLayout.perm) : outShape });
  const { jet, weightGrads } = inner;
  return {
    forward(inputs, second) {
      const r = inner.forward(inputs.map(toLast), second);
      return { y: outToFirst(r.y), saved: r.saved };
    },
    backward: (dy, saved) => inner.backward(outToLast(dy), saved).map((g, i) => toFirst(materialize(g), i)),
    tangent: (dx, saved) => outToFirst(inner.tangent(dx.map(toLast), saved)),
    ...(jet ? { jet: (dx: tf.Tensor[], saved: tf.Tensor[]) => outToFirst(jet(dx.map(toLast), saved)) } : {}),
    ...(weightGrads ? { weightGrads: (dy: tf.Tensor, inputs: tf.Tensor[], saved: tf.Tensor[]): WeightGrads => weightGrads(outToLast(dy), inputs.map(toLast), saved) } : {}),
  };
}

/** A BatchNormalization in inference mode over the last axis of `x`, from the layer's weights. */
function batchNormLast(layer: Layer, x: tf.Tensor): tf.Tensor {
  const eps = Number(config(layer)['epsilon'] ?? 1e-3);
  const w = (suffix: string) => weight(layer, suffix) as tf.Tensor1D | undefined;
  return tf.batchNorm(x, w('moving_mean') as tf.Tensor1D, w('moving_variance') as tf.Tensor1D, w('beta'), w('gamma'), eps);
}

/** Whether some input of a merge has another shape than its output (it broadcasts). */
export function broadcasts(inShapes: Shape[], outShape: Shape): boolean {
  return inShapes.some((s) => s.length !== outShape.length || s.some((d, i) => d !== outShape[i]));
}

/**
 * The rule of an elementwise merge whose inputs broadcast: `build` makes the merge's rule on inputs
 * of the output's shape. Input i, of rank rᵢ, is expanded at axis 1 to the output's rank (as
 * tfjs-layers' Merge does) and broadcast; its cotangent is summed over the axes where it has size 1
 * and the output does not.
 */
export function broadcastingMergeRule(ctx: RuleContext, build: (ctx: RuleContext) => Rule): Rule {
  const { layer, inShapes, outShape } = ctx;
  const out = outShape.slice(1) as number[];
  const aligned = inShapes.map((s) => {
    const t = s.slice(1) as number[];
    return [...new Array<number>(out.length - t.length).fill(1), ...t];
  });
  aligned.forEach((a) => {
    if (a.length !== out.length || a.some((d, k) => d !== 1 && d !== out[k])) throw new NotCompilable(`merge '${layer.name}' of shapes ${JSON.stringify(inShapes)}`);
  });
  // Per input: the axes (counting the rows' axis) its cotangent is summed over.
  const sumAxes = aligned.map((a) => a.flatMap((d, k) => (d === 1 && out[k] !== 1 ? [k + 1] : [])));
  const expand = (t: tf.Tensor, i: number) => {
    const N = t.shape[0] as number;
    const full = [N, ...out];
    const x = tf.reshape(t, [N, ...(aligned[i] as number[])]);
    return (sumAxes[i] as number[]).length === 0 ? x : tf.broadcastTo(x, full);
  };
  const reduce = (g: Cotangent, i: number) => {
    const t = materialize(g);
    const axes = sumAxes[i] as number[];
    const N = t.shape[0] as number;
    return tf.reshape(axes.length === 0 ? t : tf.sum(t, axes, true), [N, ...(inShapes[i] as number[]).slice(1)]);
  };
  const inner = build({ ...ctx, inShapes: inShapes.map(() => outShape) });
  const { jet } = inner;
  return {
    forward: (inputs, second) => inner.forward(inputs.map(expand), second),
    backward: (dy, saved) => inner.backward(dy, saved).map(reduce),
    tangent: (dx, saved) => inner.tangent(dx.map(expand), saved),
    ...(jet ? { jet: (dx: tf.Tensor[], saved: tf.Tensor[]) => jet(dx.map(expand), saved) } : {}),
  };
}

/**
 * The rule of a `TimeDistributed` wrapper: `inner` makes the rule of the wrapped layer for inputs
 * `[B·T, ...]` (its context has the time axis folded into the batch).
 */
export function timeDistributedRule(ctx: RuleContext, inner: (ctx: RuleContext) => Rule): Rule {
  const { layer, inShapes, outShape } = ctx;
  const wrapped = (layer as unknown as { layer?: Layer }).layer;
  const T = (inShapes[0] as Shape)[1];
  if (wrapped === undefined || inShapes.length !== 1 || typeof T !== 'number') throw new NotCompilable(`TimeDistributed '${layer.name}'`);
  const rule = inner({ layer: wrapped, inShapes: [[null, ...(inShapes[0] as Shape).slice(2)]], outShape: [null, ...outShape.slice(2)], linearHead: false });
  const fold = (t: tf.Tensor) => tf.reshape(t, [(t.shape[0] as number) * T, ...t.shape.slice(2)]);
  const unfold = (t: tf.Tensor) => tf.reshape(t, [(t.shape[0] as number) / T, T, ...t.shape.slice(1)]);
  const { jet, weightGrads } = rule;
  return {
    forward(inputs, second) {
      const r = rule.forward(inputs.map(fold), second);
      return { y: unfold(r.y), saved: r.saved };
    },
    backward: (dy, saved) => rule.backward(fold(dy), saved).map((g) => unfold(materialize(g))),
    tangent: (dx, saved) => unfold(rule.tangent(dx.map(fold), saved)),
    ...(jet ? { jet: (dx: tf.Tensor[], saved: tf.Tensor[]) => unfold(jet(dx.map(fold), saved)) } : {}),
    ...(weightGrads
      ? {
          // Per inner sample [B·T, K, size] → per sample, summed over the steps.
          weightGrads(dy: tf.Tensor, inputs: tf.Tensor[], saved: tf.Tensor[]): WeightGrads {
            const grads = weightGrads(fold(dy), inputs.map(fold), saved);
            return Object.fromEntries(
              Object.entries(grads).map(([key, g]) => [
                key,
                () => {
                  const t = g();
                  return tf.sum(tf.reshape(t, [(t.shape[0] as number) / T, T, ...t.shape.slice(1)]), 1) as tf.Tensor3D;
                },
              ]),
            );
          },
        }
      : {}),
  };
}
