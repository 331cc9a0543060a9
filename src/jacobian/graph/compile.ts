/**
 * infogeo's own graph: a model compiled from its input to one target tensor, run forward once per
 * batch (the tape), then linear maps at that point through the rules of `registry.ts`:
 * reverse mode (all cotangent rows of all samples in one backward pass) and forward mode (all
 * tangents in one pass), both made of plain forward kernels.
 *
 * Why not `tf.grad`: tfjs re-runs the forward pass for every backward pass, computes the weight
 * gradients of fused convolutions and dense layers even when only ∂/∂x is wanted, has no forward
 * mode (a JVP would be a gradient of a gradient, which tfjs cannot take through max pools, ELUs or
 * dilated convs), and on `wasm` runs strided transposed convolutions and max-pool gradients as
 * plain loops.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { SymbolicTensor } from '@tensorflow/tfjs-layers';
import { samplesFirst, tileRows } from '../rows.js';
import { accumulate, isPhased, materialize, tensorsOf } from './phases.js';
import type { Cotangent } from './phases.js';
import { ruleFor } from './registry.js';
import { config, NotCompilable, product, tail } from './rule.js';
import type { Layer, Rule, Shape } from './rule.js';
import { channelAxis } from './layout.js';
import { batchNormRule } from './structure.js';
import { linearLayerRule } from './conv.js';

interface GraphOp {
  layer: Layer;
  inShapes: Shape[];
  inputs: number[];
  output: number;
  rule: Rule;
}

/** The compiled path from one input to one target: ops in topological order over value slots. */
interface Program {
  ops: GraphOp[];
  shapes: Shape[];
  outSlot: number;
  /** Floats of one sample's largest activation, nested models' included. */
  largest: number;
  /** Floats of all of one sample's activations, nested models' included. */
  total: number;
}

/** A rule made from a nested model's program (its sizes count in the outer program's). */
type NestedRule = Rule & { program?: Program };

/** Whether some op of the program has a second derivative (a smooth nonlinearity), nested ones included. */
function curvedProgram(p: Program): boolean {
  return p.ops.some((op) => op.rule.jet !== undefined);
}

const INPUT_SLOT = 0;

function compileProgram(input: SymbolicTensor, target: SymbolicTensor, linearHead: boolean, fold = true): Program {
  const ops: GraphOp[] = [];
  const slots = new Map<number, number>([[input.id, INPUT_SLOT]]); // symbolic tensor id → slot
  const shapes: Shape[] = [input.shape];
  const visit = (t: SymbolicTensor): number => {
    const known = slots.get(t.id);
    if (known !== undefined) return known;
    const layer = t.sourceLayer;
    const node = layer.inboundNodes[t.nodeIndex];
    if (node === undefined || node.outputTensors.length !== 1) throw new NotCompilable(`layer '${layer.name}' with several outputs`);
    if (node.inputTensors.length === 0) throw new NotCompilable(`a second input '${layer.name}'`);
    const inputs = node.inputTensors.map(visit);
    const inShapes = node.inputTensors.map((s) => s.shape);
    if ([...inShapes, t.shape].some((s) => s.slice(1).some((d) => d == null))) throw new NotCompilable(`layer '${layer.name}' with a dimension unknown before the call`);
    const rule = ruleFor({ layer, inShapes, outShape: t.shape, linearHead: linearHead && t === target }, nestedRule);
    const slot = shapes.length;
    shapes.push(t.shape);
    slots.set(t.id, slot);
    ops.push({ layer, inShapes, inputs, output: slot, rule });
    return slot;
  };
  const outSlot = visit(target);
  if (fold) foldBatchNorms(ops);
  const sizes = shapes.map((sh) => product(sh.slice(1)));
  const nested = ops.map((op) => (op.rule as NestedRule).program).filter((q): q is Program => q !== undefined);
  return {
    ops,
    shapes,
    outSlot,
    largest: Math.max(...sizes, ...nested.map((q) => q.largest)),
    total: sizes.reduce((a, v) => a + v, 0) + nested.reduce((a, q) => a + q.total, 0),
  };
}

/** Folds each BatchNorm that is the only consumer of a linear Conv2D into that conv's rule. */
function foldBatchNorms(ops: GraphOp[]): void {
  const consumers = new Map<number, number>();
  for (const op of ops) for (const i of op.inputs) consumers.set(i, (consumers.get(i) ?? 0) + 1);
  for (const bn of ops) {
    if (bn.layer.getClassName() !== 'BatchNormalization' || bn.inputs.length !== 1) continue;
    const slot = bn.inputs[0] as number;
    const conv = ops.find((op) => op.output === slot);
    if (conv === undefined || conv.layer.getClassName() !== 'Conv2D' || consumers.get(slot) !== 1) continue;
    if ((config(conv.layer)['activation'] ?? 'linear') !== 'linear') continue;
    // Channels first: each keeps its own rule, through transposes (layout.ts).
    if (channelAxis(conv.layer, conv.inShapes[0] as Shape) !== undefined || channelAxis(bn.layer, bn.inShapes[0] as Shape) !== undefined) continue;
    conv.rule = linearLayerRule({ layer: conv.layer, inShapes: conv.inShapes, outShape: [], linearHead: false }, bn.layer);
    bn.rule = batchNormRule(bn.layer, bn.inShapes[0] as Shape, true);
  }
}

/**
 * Runs the program forward (inside the caller's tidy): the output, each op's saved tensors and
 * every slot's value.
 */
function runForward(p: Program, x: tf.Tensor, second = false): { y: tf.Tensor; saved: tf.Tensor[][]; values: tf.Tensor[] } {
  const values: tf.Tensor[] = new Array(p.shapes.length);
  values[INPUT_SLOT] = x;
  const saved = p.ops.map((op) => {
    const r = op.rule.forward(op.inputs.map((i) => values[i] as tf.Tensor), second);
    values[op.output] = r.y;
    return r.saved;
  });
  return { y: values[p.outSlot] as tf.Tensor, saved, values };
}

/** What a backward pass in weight space does besides the input pass. */
interface WeightVisit {
  /** `need[slot]`: some weight wanted lies before this slot, so its cotangent is needed. */
  need: boolean[];
  /** Called with each op's output cotangent, before the op's backward pass. */
  visit(k: number, dy: Cotangent): void;
}

/**
 * Reverse mode: the input cotangent `[K·B, ...inShape]` from the output cotangent `dy`. Each layer's
 * backward pass runs in its own scope and each cotangent is released as soon as it is consumed: what
 * stays alive is the cotangents not yet consumed. Call inside a tidy.
 */
function runBackward(p: Program, saved: tf.Tensor[][], dy: tf.Tensor, weights?: WeightVisit): Cotangent | undefined {
  const grads: (Cotangent | undefined)[] = new Array(p.shapes.length);
  grads[p.outSlot] = dy;
  const scoped = (f: () => Cotangent | Cotangent[]) => tf.tidy(f as () => tf.TensorContainer) as unknown as Cotangent & Cotangent[];
  const release = (spent: Cotangent[], live: Cotangent[]) => {
    const keep = new Set(live.flatMap(tensorsOf));
    for (const t of spent.flatMap(tensorsOf)) if (!keep.has(t) && t !== dy) t.dispose();
  };
  for (let k = p.ops.length - 1; k >= 0; k--) {
    const op = p.ops[k] as GraphOp;
    const g = grads[op.output];
    if (g === undefined) continue;
    grads[op.output] = undefined;
    if (weights !== undefined) {
      weights.visit(k, g);
      if (!op.inputs.some((slot) => weights.need[slot])) {
        release([g], grads.filter((c): c is Cotangent => c !== undefined));
        continue;
      }
    }
    const dxs = scoped(() => op.rule.backward(materialize(g), saved[k] as tf.Tensor[]));
    // One tensor handed to two inputs (Add): each input gets its own handle on the same data (a
    // reshape shares it; tf.clone copies on wasm), taken before any of them is added to a
    // cotangent already there and released.
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
    release([g], grads.filter((c): c is Cotangent => c !== undefined));
  }
  return grads[INPUT_SLOT];
}

/**
 * Forward mode: the output tangent `[K·B, ...outShape]` from the input tangent `t`. Each tangent is
 * released once every op that reads it has run. Call inside a tidy. With `second`, `t` is a stacked
 * jet `[ż_u; ż_v; z̈_uv]` (see rule.ts) and the saved tensors are those of a forward pass with
 * `second`: each op with a second derivative maps it with its `jet`, the others with `tangent`.
 */
function runTangent(p: Program, saved: tf.Tensor[][], t: tf.Tensor, second = false): tf.Tensor {
  const readers = new Map<number, number>();
  for (const op of p.ops) for (const i of op.inputs) readers.set(i, (readers.get(i) ?? 0) + 1);
  const tangents: (tf.Tensor | undefined)[] = new Array(p.shapes.length);
  tangents[INPUT_SLOT] = t;
  p.ops.forEach((op, k) => {
    const ins = op.inputs.map((i) => tangents[i] as tf.Tensor);
    // A layer that passes its tangent through (Dropout, a folded BatchNorm) gets its own handle on
    // the data, so that releasing its input does not release its output.
    tangents[op.output] = tf.tidy(() => {
      const jet = second ? op.rule.jet : undefined;
      const out = jet !== undefined ? jet(ins, saved[k] as tf.Tensor[]) : op.rule.tangent(ins, saved[k] as tf.Tensor[]);
      return ins.includes(out) ? tf.reshape(out, out.shape) : out;
    });
    for (const i of op.inputs) {
      const left = (readers.get(i) as number) - 1;
      readers.set(i, left);
      if (left === 0 && i !== INPUT_SLOT && i !== p.outSlot) tangents[i]?.dispose();
    }
  });
  return tangents[p.outSlot] as tf.Tensor;
}

/** A model used as a layer of another model: its own program, run inside the outer one's. */
function nestedRule(layer: Layer): NestedRule {
  const inner = layer as unknown as { inputs: SymbolicTensor[]; outputs: SymbolicTensor[] };
  if (inner.inputs.length !== 1 || inner.outputs.length !== 1) throw new NotCompilable(`nested model '${layer.name}' with several inputs or outputs`);
  const p = compileProgram(inner.inputs[0] as SymbolicTensor, inner.outputs[0] as SymbolicTensor, false);
  // The saved tensors of all inner ops, flattened. The counts per op are the same on every pass of
  // one kind; a pass with `second` saves more (φ'', a Multiply's inputs). Tapes of both kinds may be
  // alive at once (the graph is shared), so each kind keeps its counts, told apart by the total
  // (a second-order pass that saves nothing more has the same counts).
  const counts = new Map<boolean, number[]>();
  const unflatten = (flat: tf.Tensor[]) => {
    const sum = (c: number[] | undefined) => (c ?? []).reduce((a, v) => a + v, 0);
    const per = sum(counts.get(true)) === flat.length ? counts.get(true) : counts.get(false);
    let at = 0;
    return (per ?? []).map((c) => flat.slice(at, (at += c)));
  };
  return {
    program: p,
    forward([x], second = false) {
      const { y, saved } = runForward(p, x as tf.Tensor, second);
      counts.set(second, saved.map((s) => s.length));
      return { y, saved: saved.flat() };
    },
    backward(dy, saved) {
      const dx = runBackward(p, unflatten(saved), dy);
      return [dx ?? tf.zeros([dy.shape[0] as number, ...tail(p.shapes[INPUT_SLOT] as Shape)])];
    },
    tangent: ([dx], saved) => runTangent(p, unflatten(saved), dx as tf.Tensor),
    ...(curvedProgram(p) ? { jet: ([dx]: tf.Tensor[], saved: tf.Tensor[]) => runTangent(p, unflatten(saved), dx as tf.Tensor, true) } : {}),
  };
}

/** A trainable weight of the model, as `layer.trainableWeights` holds it. */
interface WeightVariable {
  name: string;
  originalName: string;
}

/**
 * Which ops differentiate which weights, and how far back the pass must go: made by
 * {@link CompiledGraph.weightPlan} for a list of weights, used by {@link Tape.weightBlocks}.
 */
export interface WeightPlan {
  /** Per weight, in the caller's order: the ops that use it (a shared layer: several) and its name there. */
  readonly entries: { ops: number[]; key: string; size: number }[];
  /** `need[slot]`: the cotangent of this slot is needed (a wanted weight lies before it). */
  readonly need: boolean[];
  /** The ops whose inputs the tape keeps. */
  readonly ops: ReadonlySet<number>;
}

function planWeights(p: Program, variables: WeightVariable[]): WeightPlan | { reason: string } {
  const entries: WeightPlan['entries'] = [];
  const ops = new Set<number>();
  for (const v of variables) {
    const users = p.ops.flatMap((op, k) => (op.layer.trainableWeights.some((w) => w.name === v.name) ? [k] : []));
    if (users.length === 0) return { reason: `weight '${v.name}' is not on the compiled path (it is after the output)` };
    for (const k of users) {
      const op = p.ops[k] as GraphOp;
      if (op.rule.weightGrads === undefined) return { reason: `the weights of layer '${op.layer.name}' (${op.layer.getClassName()})` };
      ops.add(k);
    }
    const layer = (p.ops[users[0] as number] as GraphOp).layer;
    const w = layer.trainableWeights.find((u) => u.name === v.name);
    // The weight's name inside its layer: 'kernel', or 'forward_lstm/kernel' in a Bidirectional.
    const prefix = `${layer.name}/`;
    const key = v.originalName.startsWith(prefix) ? v.originalName.slice(prefix.length) : (v.originalName.split('/').pop() as string);
    entries.push({ ops: users, key, size: product(w?.shape ?? []) });
  }
  const need = new Array<boolean>(p.shapes.length).fill(false);
  p.ops.forEach((op, k) => {
    need[op.output] = ops.has(k) || op.inputs.some((i) => need[i]);
  });
  return { entries, need, ops };
}

/** A model compiled from its input to one target tensor. */
export interface CompiledGraph {
  /**
   * Bytes one cotangent (or tangent) row of one sample costs in a pass: a few tensors of the
   * largest activation alive at once (dy, dx and a conv's phase output), and the input-sized result.
   */
  readonly bytesPerRow: number;
  /**
   * Bytes the tape holds per sample, whatever the rows: what the forward pass saves (masks,
   * derivatives, a pool's window masks), bounded by twice all activations.
   */
  readonly tapeBytesPerSample: number;
  /** The same for a tape made with `second`: also φ'' and a Multiply's inputs (bounded by 4× all activations). */
  readonly jetTapeBytesPerSample: number;
  /**
   * Whether some layer has a second derivative that is not zero (a smooth activation, softmax,
   * LayerNorm, Multiply). Without one the target is piecewise affine in x: its second derivatives
   * are zero wherever they exist.
   */
  readonly curved: boolean;
  /**
   * Runs the forward pass on `x: [B, ...inputShape]`; the tape holds what the linear maps need,
   * with a weight plan the inputs of the layers whose weights it differentiates, and with `second`
   * what second-order forward mode ({@link Tape.jet}) needs.
   */
  forward(x: tf.Tensor, plan?: WeightPlan, second?: boolean): Tape;
  /** How the graph differentiates these trainable weights, or why it cannot. */
  weightPlan(variables: WeightVariable[]): WeightPlan | { reason: string };
}

/**
 * One forward pass and the linear maps of the target at that point. Dispose it when done (it owns
 * its tensors). Every method returns a new tensor the caller owns.
 */
export interface Tape {
  /** The target's value `[B, m]` (flattened per sample); owned by the tape. */
  readonly output: tf.Tensor2D;
  /** Reverse mode for R rows shared by all samples, `U: [R, m]` → `[B, R, n]`. */
  vjpRows(U: tf.Tensor2D): tf.Tensor3D;
  /** Reverse mode for per-sample cotangents, row-major `[K·B, m]` → `[K·B, n]`. */
  pullback(dy: tf.Tensor2D): tf.Tensor2D;
  /** Forward mode for per-sample tangents, row-major `[K·B, n]` → `[K·B, m]`. */
  pushforward(t: tf.Tensor2D): tf.Tensor2D;
  /**
   * Second-order forward mode (a tape made with `second`): for tangent pairs, row-major `[K·B, n]`
   * each, the first derivatives ∂f[u], ∂f[v] and the second ∂²f[u, v], `[K·B, m]` each.
   */
  jet(u: tf.Tensor2D, v: tf.Tensor2D): { u: tf.Tensor2D; v: tf.Tensor2D; uv: tf.Tensor2D };
  /**
   * Reverse mode in weight space (a tape made with a plan): per-sample cotangents, row-major
   * `[K·B, m]` → one block `[B, K, size]` per weight of the plan, in its order, each flattened
   * row-major (joined along the last axis, the rows of the weight Jacobian).
   */
  weightBlocks(dy: tf.Tensor2D): tf.Tensor3D[];
  dispose(): void;
}

/**
 * Compiles the path from the model's input to `target` (a symbolic tensor of the model). With
 * `linearHead`, the target's own layer is a Dense layer whose activation (a softmax) is left out.
 * Returns `{ reason }` instead when some layer on the path is not covered.
 */
export function compileGraph(input: SymbolicTensor, target: SymbolicTensor, linearHead = false, fold = true): CompiledGraph | { reason: string } {
  let p: Program;
  try {
    p = compileProgram(input, target, linearHead, fold);
  } catch (e) {
    if (e instanceof NotCompilable) return { reason: e.message };
    throw e;
  }
  const inShape = tail(input.shape);
  const outShape = tail(p.shapes[p.outSlot] as Shape);
  const n = product(inShape);
  return {
    bytesPerRow: 4 * (4 * p.largest + 2 * n),
    tapeBytesPerSample: 4 * 2 * p.total,
    jetTapeBytesPerSample: 4 * 4 * p.total,
    curved: curvedProgram(p),
    weightPlan: (variables) => planWeights(p, variables),
    forward(x, plan, second = false) {
      const B = x.shape[0] as number;
      let saved: tf.Tensor[][] = [];
      let inputs: tf.Tensor[][] = [];
      const kept = tf.tidy(() => {
        // A handle of x (the same data) runs forward: a rule may save its input as it is (a
        // Multiply's other operand), and the tape must not dispose the caller's tensor.
        const r = runForward(p, tf.reshape(x, x.shape), second);
        saved = r.saved;
        inputs = p.ops.map((op, k) => (plan?.ops.has(k) ? op.inputs.map((i) => r.values[i] as tf.Tensor) : []));
        return [tf.reshape(r.y, [B, -1]), ...r.saved.flat(), ...inputs.flat()];
      });
      const output = kept[0] as tf.Tensor2D;
      const pullback = (dy: tf.Tensor) => {
        const K = (dy.shape[0] as number) / B;
        const g = runBackward(p, saved, tf.reshape(dy, [K * B, ...outShape]));
        return tf.reshape(g === undefined ? tf.zeros([K * B, n]) : materialize(g), [K * B, n]);
      };
      return {
        output,
        vjpRows: (U) => tf.tidy(() => samplesFirst(pullback(tileRows(U, B)), U.shape[0], B)),
        pullback: (dy) => tf.tidy(() => pullback(dy) as tf.Tensor2D),
        pushforward: (t) =>
          tf.tidy(() => {
            const K = (t.shape[0] as number) / B;
            return tf.reshape(runTangent(p, saved, tf.reshape(t, [K * B, ...inShape])), [K * B, -1]) as tf.Tensor2D;
          }),
        jet(u, v) {
          if (!second) throw new Error('jet: the tape was made without second-order forward mode');
          return tf.tidy(() => {
            const N = u.shape[0] as number;
            const t = tf.concat([u, v, tf.zerosLike(u)], 0); // x is linear in (u, v): ẍ = 0
            const out = tf.reshape(runTangent(p, saved, tf.reshape(t, [3 * N, ...inShape]), true), [3, N, -1]);
            const [du, dv, duv] = tf.unstack(out, 0) as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
            return { u: du, v: dv, uv: duv };
          });
        },
        weightBlocks(dy) {
          if (plan === undefined) throw new Error('weightBlocks: the tape was made without a weight plan');
          const K = (dy.shape[0] as number) / B;
          // Kept across the backward pass's scopes and handed to the caller as they are (an
          // aliasing reshape would do, but tfjs counts bytes per tensor, not per buffer, so the
          // largest block would count twice); released here on failure.
          const blocks: (tf.Tensor3D | undefined)[] = plan.entries.map(() => undefined);
          try {
            tf.tidy(() => {
              runBackward(p, saved, tf.reshape(dy, [K * B, ...outShape]), {
                need: plan.need,
                visit(k, g) {
                  if (!plan.ops.has(k)) return;
                  const op = p.ops[k] as GraphOp;
                  tf.tidy(() => {
                    const grads = (op.rule.weightGrads as NonNullable<Rule['weightGrads']>)(materialize(g), inputs[k] as tf.Tensor[], saved[k] as tf.Tensor[]);
                    plan.entries.forEach((e, i) => {
                      if (!e.ops.includes(k)) return;
                      const grad = grads[e.key];
                      if (grad === undefined) throw new Error(`no cotangent '${e.key}' for layer '${op.layer.name}'`);
                      const prev = blocks[i];
                      blocks[i] = tf.keep(prev === undefined ? grad() : (tf.add(prev, grad()) as tf.Tensor3D));
                      prev?.dispose();
                    });
                  });
                },
              });
            });
            return blocks as tf.Tensor3D[];
          } catch (e) {
            tf.dispose(blocks.filter((t): t is tf.Tensor3D => t !== undefined));
            throw e;
          }
        },
        dispose() {
          tf.dispose(kept);
        },
      };
    },
  };
}
