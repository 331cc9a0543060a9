/**
 * The one linearisation core: a target of a classifier (log-probabilities, logits or any layer's
 * output) at a batch x, as one object that holds the forward output and the linear maps there —
 * many cotangent rows in one backward pass, per-sample vector-Jacobian products, and forward-mode
 * Jacobian-vector products — shaped like JAX's `linearize`/`vjp`. Every feature asks for it once
 * per chunk and never runs the model again.
 *
 * It runs on infogeo's own graph (`graph/`), exact in both modes and made of forward kernels only.
 * A model with a layer the graph does not cover falls back to `tf.grad` (a JVP is then a gradient of
 * a gradient, or central differences where tfjs has no second-order gradient), and says why.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { SymbolicTensor } from '@tensorflow/tfjs-layers';
import type { Classifier, Target } from '../model/classifier.js';
import { assertDifferentiable, firstOrderOnlyLayer } from '../model/support.js';
import { budgetFor, bytesPerSamplePass } from './chunks.js';
import type { RunOptions } from './chunks.js';
import { softmaxJet } from './graph/activation.js';
import { compileGraph } from './graph/compile.js';
import { jetBlocks, stackJet } from './graph/rule.js';
import type { CompiledGraph } from './graph/compile.js';
import { rowMajor, samplesFirst, tileRows, vjpRows } from './rows.js';

/** A target linearised at a batch x of B samples, `f: ℝⁿ → ℝᵐ` per sample. */
export interface Linearization {
  /** The target's value f(x), `[B, m]`; owned by the linearisation. */
  readonly output: tf.Tensor2D;
  /** Which engine computes the linear maps: infogeo's graph, or the `tf.grad` fallback. */
  readonly engine: 'graph' | 'tf.grad';
  /** Rows shared by all samples, `U: [R, m]` → `[B, R, n]` with `out[b, r] = U[r] · ∂f(x_b)`. */
  rows(U: tf.Tensor2D): tf.Tensor3D;
  /** Per-sample cotangents `[B, m]` → `[B, n]`, or `[B, k, m]` → `[B, k, n]`: uᵀ ∂f(x_b). */
  vjp(u: tf.Tensor): tf.Tensor;
  /** Per-sample tangents `[B, n]` → `[B, m]`, or `[B, k, n]` → `[B, k, m]`: ∂f(x_b) v (forward mode). */
  jvp(v: tf.Tensor): tf.Tensor;
  /**
   * Second-order forward mode (a linearisation made with `second`, on the graph engine): for
   * per-sample tangent pairs `[B, k, n]` each, ∂f[u] and ∂f[v] and the second directional
   * derivative ∂²f[u, v], `[B, k, m]` each.
   */
  jet(u: tf.Tensor3D, v: tf.Tensor3D): { u: tf.Tensor3D; v: tf.Tensor3D; uv: tf.Tensor3D };
  /** Frees the tape. */
  dispose(): void;
}

/** Compiled graphs by target tensor (a model's topology is fixed; its weights are read per call). */
const compiled = new WeakMap<SymbolicTensor, Map<boolean, CompiledGraph | { reason: string }>>();

/**
 * The compiled graph for a target of the classifier (compiled on first use, then cached on the
 * model's symbolic tensor), or why there is none. For log-probabilities, the graph of the logits.
 */
export function graphFor(clf: Classifier, target: Target): CompiledGraph | { reason: string } {
  const sym = clf.symbolicTarget(target === 'logProbs' ? 'logits' : target);
  if (sym === null) return { reason: "the logits are log-probabilities read from the model's output" };
  const byHead = compiled.get(sym.tensor) ?? new Map<boolean, CompiledGraph | { reason: string }>();
  compiled.set(sym.tensor, byHead);
  let graph = byHead.get(sym.linearHead);
  if (graph === undefined) {
    graph = compileGraph(clf.model.inputs[0] as SymbolicTensor, sym.tensor, sym.linearHead);
    byHead.set(sym.linearHead, graph);
  }
  return graph;
}

/** Compiled graphs of the logits for weight space (no BatchNorm folded into its conv), by target tensor and head. */
const weightGraphs = new WeakMap<SymbolicTensor, Map<boolean, CompiledGraph | { reason: string }>>();

/**
 * The compiled graph of the classifier's logits for derivatives in weight space, or why there is
 * none: the same graph as {@link graphFor}'s, except that a BatchNorm stays a layer of its own
 * (folded into the conv before it, the conv's kernel would get the BatchNorm's cotangent).
 */
export function weightGraphFor(clf: Classifier): CompiledGraph | { reason: string } {
  const sym = clf.symbolicTarget('logits');
  if (sym === null) return { reason: "the logits are log-probabilities read from the model's output" };
  // The same tensor is the logits with its softmax left out ('auto' on a Dense(softmax) head) or
  // as it is (modelOutput 'logits'): two graphs.
  const byHead = weightGraphs.get(sym.tensor) ?? new Map<boolean, CompiledGraph | { reason: string }>();
  weightGraphs.set(sym.tensor, byHead);
  let graph = byHead.get(sym.linearHead);
  if (graph === undefined) {
    graph = compileGraph(clf.model.inputs[0] as SymbolicTensor, sym.tensor, sym.linearHead, false);
    byHead.set(sym.linearHead, graph);
  }
  return graph;
}

/**
 * Samples per chunk for a linear map with `rows` rows (or tangents) per sample: the graph's cost
 * per row, or the tf.grad fallback's per backward pass (`passes` per row: a JVP through tf.grad
 * is two; a tape for second-order forward mode, `second`, holds more). Checks the
 * differentiability of the fallback on the active backend.
 */
export function linearChunk(clf: Classifier, target: Target, rows: number, options: RunOptions, fn: string, passes = 1, second = false): number {
  const graph = graphFor(clf, target);
  const what = `one sample's ${rows} ${rows === 1 ? 'row' : 'rows'} at once`;
  if ('reason' in graph) {
    assertDifferentiable(clf.model, 'input', fn);
    const unit = passes * rows * bytesPerSamplePass(clf.model);
    return Math.max(1, Math.floor(budgetFor(options, fn, unit, what) / unit));
  }
  const unit = rows * graph.bytesPerRow + (second ? graph.jetTapeBytesPerSample : graph.tapeBytesPerSample);
  return Math.max(1, Math.floor(budgetFor(options, fn, unit, what) / unit));
}

/** The linear maps of the logits as plain functions on row-major `[K·B, ·]` tensors. */
interface LogitMaps {
  output: tf.Tensor2D;
  rows(U: tf.Tensor2D): tf.Tensor3D;
  pullback(dy: tf.Tensor2D): tf.Tensor2D;
  pushforward(t: tf.Tensor2D): tf.Tensor2D;
  jet?(u: tf.Tensor2D, v: tf.Tensor2D): { u: tf.Tensor2D; v: tf.Tensor2D; uv: tf.Tensor2D };
  dispose(): void;
}

/** The `tf.grad` fallback: the same maps from `tf.grad` on the target's function. */
function gradMaps(clf: Classifier, f: (x: tf.Tensor) => tf.Tensor2D, x: tf.Tensor): LogitMaps {
  const B = x.shape[0] as number;
  const inShape = x.shape.slice(1);
  const output = tf.tidy(() => f(x));
  const m = output.shape[1];
  const tiled = (K: number) => (K === 1 ? x : tf.tile(x, [K, ...inShape.map(() => 1)]));
  const grad = tf.grad((z: tf.Tensor) => f(z));
  const pullback = (dy: tf.Tensor2D) => tf.reshape(grad(tiled((dy.shape[0] as number) / B), dy), [dy.shape[0] as number, -1]) as tf.Tensor2D;
  // Forward mode from reverse mode: J v = ∂/∂u ⟨Jᵀu, v⟩, unless tfjs cannot differentiate the
  // backward pass (max and average pooling), where central differences take over.
  const blocker = firstOrderOnlyLayer(clf.model);
  const pushforward = (t: tf.Tensor2D): tf.Tensor2D => {
    const K = (t.shape[0] as number) / B;
    const xt = tiled(K);
    const v = tf.reshape(t, xt.shape);
    if (blocker === undefined) {
      const outer = tf.grad((u: tf.Tensor) => tf.sum(tf.mul(grad(xt, u), v)));
      return outer(tf.zeros([K * B, m])) as tf.Tensor2D;
    }
    return centralDifference(f, xt, v);
  };
  return {
    output,
    rows: (U) => tf.tidy(() => tf.reshape(vjpRows(f, x, U, 1), [B, U.shape[0], -1]) as tf.Tensor3D),
    pullback,
    pushforward,
    dispose: () => output.dispose(),
  };
}

/**
 * (f(x + h v̂) − f(x − h v̂)) ‖v‖ / 2h with v̂ = v/‖v‖ and h = `eps`·max(1, ‖x_b‖), per sample: two
 * forward passes. In float32 the error is about 0.1–1 % of ‖J‖ (ReLU kinks and pooling ties within
 * h cost O(h), rounding O(ε/h)).
 */
export function centralDifference(f: (x: tf.Tensor) => tf.Tensor2D, x: tf.Tensor, v: tf.Tensor, eps = 1e-4): tf.Tensor2D {
  return tf.tidy(() => {
    const b = x.shape[0] as number;
    const bcast = [b, ...x.shape.slice(1).map(() => 1)];
    const flat = (t: tf.Tensor) => tf.reshape(t, [b, -1]);
    const vNorm = tf.norm(flat(v), 'euclidean', 1);
    const h = tf.mul(eps, tf.maximum(tf.norm(flat(x), 'euclidean', 1), 1));
    const step = tf.mul(v, tf.reshape(tf.div(h, tf.maximum(vNorm, 1e-30)), bcast));
    const diff = tf.sub(f(tf.add(x, step)), f(tf.sub(x, step)));
    return tf.mul(diff, tf.expandDims(tf.div(vNorm, tf.mul(2, h)), 1)) as tf.Tensor2D;
  });
}

/**
 * Linearises a target of the classifier at the batch `x: [B, ...inputShape]` (checked by the
 * caller): one forward pass, on infogeo's graph where it covers the model, else through `tf.grad`.
 * With `second` (graph only: the caller checks {@link graphFor} first), the forward pass also keeps
 * what second-order forward mode needs. The caller owns the result and must `dispose()` it; every
 * tensor its methods return is the caller's too. Synchronous: run it on chunks that fit the memory
 * budget.
 */
export function linearize(clf: Classifier, x: tf.Tensor, target: Target, second = false): Linearization {
  const B = x.shape[0] as number;
  const graph = graphFor(clf, target);
  const logProbs = target === 'logProbs';
  let maps: LogitMaps;
  if ('reason' in graph) {
    maps = gradMaps(clf, logProbs ? clf.logits : clf.target(target).fn, x);
  } else {
    const tape = graph.forward(x, undefined, second);
    maps = {
      output: tape.output,
      rows: (U) => tape.vjpRows(U),
      pullback: (dy) => tape.pullback(dy),
      pushforward: (t) => tape.pushforward(t),
      ...(second ? { jet: (u: tf.Tensor2D, v: tf.Tensor2D) => tape.jet(u, v) } : {}),
      dispose: () => tape.dispose(),
    };
  }
  // log p = s − logsumexp(s): J = (I − 1pᵀ) J_s, Jᵀu = J_sᵀ(u − p Σu).
  const p = logProbs ? tf.softmax(maps.output) : undefined;
  const output = logProbs ? tf.logSoftmax(maps.output) : maps.output;
  const perSample = (t: tf.Tensor, K: number) => tf.tile(t, [K, 1]); // [B, C] → row-major [K·B, C]
  const centre = (u: tf.Tensor2D): tf.Tensor2D => {
    if (p === undefined) return u;
    const K = (u.shape[0] as number) / B;
    return tf.sub(u, tf.mul(tf.sum(u, 1, true), perSample(p, K))) as tf.Tensor2D;
  };
  const lin: Linearization = {
    output,
    engine: 'reason' in graph ? 'tf.grad' : 'graph',
    rows(U) {
      if (p === undefined) return maps.rows(U);
      return tf.tidy(() => samplesFirst(maps.pullback(centre(tileRows(U, B))), U.shape[0], B));
    },
    vjp(u) {
      return tf.tidy(() => {
        const k = u.rank === 3 ? (u.shape[1] as number) : undefined;
        const g = maps.pullback(centre(rowMajor(u)));
        return k === undefined ? g : samplesFirst(g, k, B);
      });
    },
    jvp(v) {
      return tf.tidy(() => {
        const k = v.rank === 3 ? (v.shape[1] as number) : undefined;
        const jv = maps.pushforward(rowMajor(v));
        const out = p === undefined ? jv : tf.sub(jv, tf.sum(tf.mul(jv, perSample(p, k ?? 1)), 1, true));
        return k === undefined ? out : samplesFirst(out, k, B);
      });
    },
    jet(u, v) {
      const jet = maps.jet;
      if (jet === undefined) throw new Error('jet: the linearisation was made without second-order forward mode');
      return tf.tidy(() => {
        const k = u.shape[1] as number;
        const r = jet(rowMajor(u) as tf.Tensor2D, rowMajor(v) as tf.Tensor2D);
        // log p = s − logsumexp(s): the second derivative adds −(diag p − ppᵀ)[s_u, s_v].
        const [du, dv, duv] = p === undefined ? [r.u, r.v, r.uv] : jetBlocks(softmaxJet('logSoftmax', stackJet(r.u, r.v, r.uv), p));
        const back = (t: tf.Tensor) => samplesFirst(t as tf.Tensor2D, k, B) as tf.Tensor3D;
        return { u: back(du), v: back(dv), uv: back(duv) };
      });
    },
    dispose() {
      if (output !== maps.output) output.dispose();
      p?.dispose();
      maps.dispose();
    },
  };
  return lin;
}
