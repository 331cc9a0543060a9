/**
 * Recurrent layers (SimpleRNN, GRU, LSTM) in inference mode, unrolled over their T steps.
 *
 * One step of a cell is a small program of nodes, each a map with its own derivative (a product by
 * a weight matrix, a sum, a bias, an elementwise activation, a product of two nodes, 1 − a node, a
 * slice of the gates); the three modes run it step by step:
 *
 * - forward: x_t and the previous state give the new state, and each node saves what its linear
 *   maps need (an activation's φ′, and φ″ for a forward pass with `second`; a product's operands; a
 *   weight product's operand, for the weights' cotangents);
 * - forward mode (tangents, and the jets of second order): t = 0 … T−1, the state's tangent carried
 *   from step to step (zero at t = 0: the initial state is zeros);
 * - reverse mode: backpropagation through time, t = T−1 … 0, the state's cotangent carried back.
 *
 * Conventions as tfjs-layers' `rnn()`: the initial state is zeros; `goBackwards` reverses the
 * input along time and the output sequence is in the order of processing; `returnSequences`
 * stacks h_t, else the output is the last h. Not covered: masks (no Masking or masking Embedding
 * before the layer), `returnState`, `stateful`, GRU with `resetAfter` (tfjs-layers 4.22 refuses it
 * too).
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { elementwise } from './activation.js';
import type { Elementwise } from './activation.js';
import { materialize } from './phases.js';
import { config, jetBlocks, mulPerSample, NotCompilable, stackJet, tail, weight } from './rule.js';
import type { FamilyRules, Layer, Rule, RuleContext } from './rule.js';
import { channelSums, denseKernelGrad } from './weights.js';
import type { WeightGrads } from './weights.js';

/** A weight matrix used by a product node: which variable, and which columns of it. */
interface WeightPiece {
  variable: string;
  /** Columns [from, from + size) of the variable's `[in, cols]` matrix. */
  from: number;
  size: number;
}

type Node =
  | { op: 'input' }
  | { op: 'matmul'; a: number; w: WeightPiece }
  | { op: 'bias'; a: number; w: WeightPiece }
  | { op: 'add'; args: number[] }
  | { op: 'act'; a: number; name: string; fn: (z: tf.Tensor) => tf.Tensor }
  | { op: 'mul'; a: number; b: number }
  | { op: 'oneMinus'; a: number }
  | { op: 'slice'; a: number; from: number; size: number };

/** A cell: its nodes (the first `inputs` are x_t and the state parts), and which nodes are the new state. */
interface Cell {
  nodes: Node[];
  /** x_t, then the state parts (h, or h and c). */
  inputs: number;
  /** The nodes of the new state, in the order of the inputs' state parts; the first is h_t. */
  state: number[];
  units: number;
}

/** Builds a cell program step by step. */
class Program {
  readonly nodes: Node[] = [];
  constructor(inputs: number) {
    for (let i = 0; i < inputs; i++) this.nodes.push({ op: 'input' });
  }
  private push(n: Node): number {
    this.nodes.push(n);
    return this.nodes.length - 1;
  }
  matmul(a: number, w: WeightPiece) {
    return this.push({ op: 'matmul', a, w });
  }
  bias(a: number, w: WeightPiece) {
    return this.push({ op: 'bias', a, w });
  }
  add(...args: number[]) {
    return this.push({ op: 'add', args });
  }
  act(a: number, name: string, fn: (z: tf.Tensor) => tf.Tensor) {
    return this.push({ op: 'act', a, name, fn });
  }
  mul(a: number, b: number) {
    return this.push({ op: 'mul', a, b });
  }
  oneMinus(a: number) {
    return this.push({ op: 'oneMinus', a });
  }
  slice(a: number, from: number, size: number) {
    return this.push({ op: 'slice', a, from, size });
  }
}

interface Activation {
  name: string;
  fn: (z: tf.Tensor) => tf.Tensor;
}

/** The cell's activation `key` ('activation' or 'recurrentActivation'), as the cell itself applies it. */
function activationOf(layer: Layer, key: 'activation' | 'recurrentActivation'): Activation {
  const cell = (layer as unknown as { cell: Record<string, { apply(t: tf.Tensor): tf.Tensor } | undefined> }).cell;
  const serialized = config(layer)[key];
  const name = typeof serialized === 'string' ? serialized : String((serialized as { className?: string } | undefined)?.className ?? 'linear');
  const a = cell[key];
  if (a === undefined) throw new NotCompilable(`${key} of '${layer.name}'`);
  return { name, fn: (z) => a.apply(z) };
}

/** The program of one step of the layer's cell. */
function cellOf(layer: Layer, inSize: number): Cell {
  const cls = layer.getClassName();
  const c = config(layer);
  const units = Number(c['units']);
  const useBias = c['useBias'] !== false;
  const act = activationOf(layer, 'activation');
  const k = (from: number, size: number): WeightPiece => ({ variable: 'kernel', from, size });
  const r = (from: number, size: number): WeightPiece => ({ variable: 'recurrent_kernel', from, size });
  const b = (from: number, size: number): WeightPiece => ({ variable: 'bias', from, size });
  if (cls === 'SimpleRNN') {
    const p = new Program(2); // x, h
    let z = p.add(p.matmul(0, k(0, units)), p.matmul(1, r(0, units)));
    if (useBias) z = p.bias(z, b(0, units));
    return { nodes: p.nodes, inputs: 2, state: [p.act(z, act.name, act.fn)], units };
  }
  const rec = activationOf(layer, 'recurrentActivation');
  if (cls === 'GRU') {
    if (c['resetAfter'] === true) throw new NotCompilable(`GRU '${layer.name}' with resetAfter`);
    const p = new Program(2); // x, h
    let mx = p.matmul(0, k(0, 3 * units));
    if (useBias) mx = p.bias(mx, b(0, 3 * units));
    const inner = p.matmul(1, r(0, 2 * units));
    const z = p.act(p.add(p.slice(mx, 0, units), p.slice(inner, 0, units)), rec.name, rec.fn);
    const rr = p.act(p.add(p.slice(mx, units, units), p.slice(inner, units, units)), rec.name, rec.fn);
    const hh = p.act(p.add(p.slice(mx, 2 * units, units), p.matmul(p.mul(rr, 1), r(2 * units, units))), act.name, act.fn);
    const h = p.add(p.mul(z, 1), p.mul(p.oneMinus(z), hh));
    return { nodes: p.nodes, inputs: 2, state: [h], units };
  }
  if (cls === 'LSTM') {
    const p = new Program(3); // x, h, c
    let z = p.add(p.matmul(0, k(0, 4 * units)), p.matmul(1, r(0, 4 * units)));
    if (useBias) z = p.bias(z, b(0, 4 * units));
    const gate = (i: number, a: Activation) => p.act(p.slice(z, i * units, units), a.name, a.fn);
    const [i, f, g, o] = [gate(0, rec), gate(1, rec), gate(2, act), gate(3, rec)];
    const cNew = p.add(p.mul(f, 2), p.mul(i, g));
    const h = p.mul(o, p.act(cNew, act.name, act.fn));
    return { nodes: p.nodes, inputs: 3, state: [h, cNew], units };
  }
  throw new NotCompilable(`layer '${layer.name}' (${cls}) with inputs of size ${inSize}`);
}

/** φ′ and φ″ of an activation node, from its input z and output y. */
function derivatives(d: Elementwise | 'identity', z: tf.Tensor, y: tf.Tensor, second: boolean): { d1: tf.Tensor; d2?: tf.Tensor } {
  if (d === 'identity') return { d1: tf.onesLike(z) };
  const arg = d.fromY !== undefined ? y : z;
  const d1 = d.fromY !== undefined ? d.fromY(y) : (d.fromZ as (t: tf.Tensor) => tf.Tensor)(z);
  return second && d.second !== undefined ? { d1, d2: d.second(arg) } : { d1 };
}

/** The rule of a SimpleRNN, GRU or LSTM layer. */
function recurrentRule({ layer, inShapes }: RuleContext): Rule {
  const c = config(layer);
  if (c['stateful'] === true) throw new NotCompilable(`stateful '${layer.name}'`);
  if (c['returnState'] === true) throw new NotCompilable(`'${layer.name}' with returnState`);
  const [T, d] = tail(inShapes[0] as (number | null)[]) as [number, number];
  const sequences = c['returnSequences'] === true;
  const backwards = c['goBackwards'] === true;
  const cell = cellOf(layer, d);
  const { nodes, units } = cell;
  // Each activation node's derivatives, looked up once.
  const derivativeOf = new Map<Node, Elementwise | 'identity'>();
  for (const n of nodes) {
    if (n.op !== 'act') continue;
    const e = elementwise(n.name);
    if (e === null) throw new NotCompilable(`activation '${n.name}' of '${layer.name}'`);
    derivativeOf.set(n, e);
  }
  const stateParts = cell.inputs - 1;
  // Each node's width (its last axis), for the transpose of a slice.
  const widths: number[] = [];
  nodes.forEach((n, i) => {
    if (n.op === 'input') widths.push(i === 0 ? d : units);
    else if (n.op === 'matmul') widths.push(n.w.size);
    else if (n.op === 'slice') widths.push(n.size);
    else widths.push(widths[n.op === 'add' ? (n.args[0] as number) : n.a] as number);
  });
  // Curved where a product or a smooth activation is: a ReLU SimpleRNN is piecewise linear.
  const curved = nodes.some((n) => n.op === 'mul') || [...derivativeOf.values()].some((e) => e !== 'identity' && e.second !== undefined);
  // The weight pieces, read once per call (the variables' current values).
  const pieces = () => {
    const out = new Map<Node, tf.Tensor>();
    for (const n of nodes) {
      if (n.op !== 'matmul' && n.op !== 'bias') continue;
      const v = weight(layer, `/${n.w.variable}`); // not '…/recurrent_kernel' for '…/kernel'
      if (v === undefined) throw new Error(`weight '${n.w.variable}' of '${layer.name}'`);
      const cols = v.shape[v.rank - 1] as number;
      out.set(n, n.w.from === 0 && n.w.size === cols ? v : tf.slice(v, v.rank === 1 ? [n.w.from] : [0, n.w.from], v.rank === 1 ? [n.w.size] : [-1, n.w.size]));
    }
    return out;
  };
  // Per step, in `saved`: for each node, its entries (act: φ′; mul: its two operands; matmul: its
  // operand), in node order; after all T steps' first-order entries, the φ″ of the act nodes of a
  // forward pass with `second`.
  const firstCounts = nodes.map((n): number => (n.op === 'act' ? 1 : n.op === 'mul' ? 2 : n.op === 'matmul' ? 1 : 0));
  const perStep = firstCounts.reduce((a, v) => a + v, 0);
  const offsets = firstCounts.map((_, i) => firstCounts.slice(0, i).reduce((a, v) => a + v, 0));
  const actNodes = nodes.flatMap((n, i) => (n.op === 'act' ? [i] : []));
  const timeOrder = (x: tf.Tensor) => (backwards ? tf.reverse(x, 1) : x);
  const stepOf = (x: tf.Tensor, t: number) => tf.squeeze(tf.slice(x, [0, t, 0], [-1, 1, -1]), [1]);
  const output = (hs: tf.Tensor[]) => (sequences ? tf.stack(hs, 1) : (hs[hs.length - 1] as tf.Tensor));

  /** Runs the nodes of one step forward on values [B, ·]; returns the node values. */
  function stepForward(inputs: tf.Tensor[], w: Map<Node, tf.Tensor>): tf.Tensor[] {
    const v: tf.Tensor[] = [...inputs];
    for (let i = inputs.length; i < nodes.length; i++) {
      const n = nodes[i] as Node;
      switch (n.op) {
        case 'matmul':
          v.push(tf.matMul(v[n.a] as tf.Tensor2D, w.get(n) as tf.Tensor2D));
          break;
        case 'bias':
          v.push(tf.add(v[n.a] as tf.Tensor, w.get(n) as tf.Tensor));
          break;
        case 'add':
          v.push(tf.addN(n.args.map((a) => v[a] as tf.Tensor)));
          break;
        case 'act':
          v.push(n.fn(v[n.a] as tf.Tensor));
          break;
        case 'mul':
          v.push(tf.mul(v[n.a] as tf.Tensor, v[n.b] as tf.Tensor));
          break;
        case 'oneMinus':
          v.push(tf.sub(1, v[n.a] as tf.Tensor));
          break;
        case 'slice':
          v.push(tf.slice(v[n.a] as tf.Tensor, [0, n.from], [-1, n.size]));
          break;
        default:
          throw new Error('input node after the inputs');
      }
    }
    return v;
  }

  /**
   * One step's tangents (or, with `jet`, stacked jets [3N, ·]) of every node from the inputs'
   * (x_t's and the state's); `s`: the step's saved first-order entries, `s2`: its φ″.
   */
  function stepTangent(inputs: tf.Tensor[], w: Map<Node, tf.Tensor>, s: tf.Tensor[], s2: tf.Tensor[] | undefined): tf.Tensor[] {
    const t: tf.Tensor[] = [...inputs];
    let act = 0;
    for (let i = inputs.length; i < nodes.length; i++) {
      const n = nodes[i] as Node;
      const o = offsets[i] as number;
      switch (n.op) {
        case 'matmul':
          t.push(tf.matMul(t[n.a] as tf.Tensor2D, w.get(n) as tf.Tensor2D));
          break;
        case 'bias':
          t.push(t[n.a] as tf.Tensor);
          break;
        case 'add':
          t.push(tf.addN(n.args.map((a) => t[a] as tf.Tensor)));
          break;
        case 'act': {
          const lin = mulPerSample(t[n.a] as tf.Tensor, s[o] as tf.Tensor);
          if (s2 === undefined || s2[act] === undefined) t.push(lin);
          else {
            // y_uv = φ′ z_uv + φ″ z_u z_v
            const [zu, zv] = jetBlocks(t[n.a] as tf.Tensor);
            const [yu, yv, yuv] = jetBlocks(lin);
            t.push(stackJet(yu, yv, tf.add(yuv, mulPerSample(tf.mul(zu, zv), s2[act] as tf.Tensor))));
          }
          act++;
          break;
        }
        case 'mul': {
          const lin = tf.add(mulPerSample(t[n.a] as tf.Tensor, s[o + 1] as tf.Tensor), mulPerSample(t[n.b] as tf.Tensor, s[o] as tf.Tensor));
          if (s2 === undefined) t.push(lin);
          else {
            // c_uv = a_uv b + a b_uv + a_u b_v + a_v b_u
            const [au, av] = jetBlocks(t[n.a] as tf.Tensor);
            const [bu, bv] = jetBlocks(t[n.b] as tf.Tensor);
            const [cu, cv, cuv] = jetBlocks(lin);
            t.push(stackJet(cu, cv, tf.addN([cuv, tf.mul(au, bv), tf.mul(av, bu)])));
          }
          break;
        }
        case 'oneMinus':
          t.push(tf.neg(t[n.a] as tf.Tensor));
          break;
        case 'slice':
          t.push(tf.slice(t[n.a] as tf.Tensor, [0, n.from], [-1, n.size]));
          break;
        default:
          throw new Error('input node after the inputs');
      }
    }
    return t;
  }

  /**
   * One step of reverse mode: from the cotangents of the new state's parts `[N, units]`, the
   * cotangents of every node (the inputs' first: x_t, then the previous state's parts).
   */
  function stepBackward(stateGrads: tf.Tensor[], w: Map<Node, tf.Tensor>, s: tf.Tensor[]): (tf.Tensor | undefined)[] {
    const g: (tf.Tensor | undefined)[] = new Array(nodes.length);
    const add = (i: number, t: tf.Tensor) => {
      const prev = g[i];
      g[i] = prev === undefined ? t : tf.add(prev, t);
    };
    cell.state.forEach((node, j) => add(node, stateGrads[j] as tf.Tensor));
    for (let i = nodes.length - 1; i >= cell.inputs; i--) {
      const n = nodes[i] as Node;
      const gi = g[i];
      if (gi === undefined) continue;
      const o = offsets[i] as number;
      switch (n.op) {
        case 'matmul':
          add(n.a, tf.matMul(gi as tf.Tensor2D, w.get(n) as tf.Tensor2D, false, true));
          break;
        case 'bias':
          add(n.a, gi);
          break;
        case 'add':
          for (const a of n.args) add(a, gi);
          break;
        case 'act':
          add(n.a, mulPerSample(gi, s[o] as tf.Tensor));
          break;
        case 'mul':
          add(n.a, mulPerSample(gi, s[o + 1] as tf.Tensor));
          add(n.b, mulPerSample(gi, s[o] as tf.Tensor));
          break;
        case 'oneMinus':
          add(n.a, tf.neg(gi));
          break;
        case 'slice':
          add(n.a, tf.pad(gi, [[0, 0], [n.from, (widths[n.a] as number) - n.from - n.size]]));
          break;
        default:
          break;
      }
    }
    return g;
  }

  /** Backpropagation through time: every step's node cotangents (for the weights), and x's. */
  function throughTime(dy: tf.Tensor, saved: tf.Tensor[], w: Map<Node, tf.Tensor>, visit?: (t: number, g: (tf.Tensor | undefined)[]) => void): tf.Tensor {
    const N = dy.shape[0] as number;
    const zeros = () => tf.zeros([N, units]);
    let state: tf.Tensor[] = Array.from({ length: stateParts }, zeros);
    const dxs: tf.Tensor[] = new Array(T);
    for (let t = T - 1; t >= 0; t--) {
      const fromOutput = sequences ? stepOf(dy, t) : t === T - 1 ? dy : undefined;
      const grads = state.map((s, j) => (j === 0 && fromOutput !== undefined ? tf.add(s, fromOutput) : s));
      const g = stepBackward(grads, w, saved.slice(t * perStep, (t + 1) * perStep));
      visit?.(t, g);
      dxs[t] = g[0] ?? tf.zeros([N, d]);
      state = Array.from({ length: stateParts }, (_, j) => g[j + 1] ?? zeros());
    }
    return timeOrder(tf.stack(dxs, 1));
  }

  /** Forward mode through time, of tangents `[N, T, d]` or (with `jet`) stacked jets `[3N, T, d]`. */
  function tangentThroughTime(dx: tf.Tensor, saved: tf.Tensor[], second: boolean): tf.Tensor {
    const w = pieces();
    const N = dx.shape[0] as number;
    const x = timeOrder(dx);
    let state: tf.Tensor[] = Array.from({ length: stateParts }, () => tf.zeros([N, units]));
    const hs: tf.Tensor[] = [];
    for (let t = 0; t < T; t++) {
      const s2 = second ? saved.slice(T * perStep + t * actNodes.length, T * perStep + (t + 1) * actNodes.length) : undefined;
      const v = stepTangent([stepOf(x, t), ...state], w, saved.slice(t * perStep, (t + 1) * perStep), s2);
      state = cell.state.map((i) => v[i] as tf.Tensor);
      hs.push(state[0] as tf.Tensor);
    }
    return output(hs);
  }

  return {
    forward([input], second = false) {
      const w = pieces();
      const x = timeOrder(input as tf.Tensor);
      const B = x.shape[0] as number;
      let state: tf.Tensor[] = Array.from({ length: stateParts }, () => tf.zeros([B, units]));
      const hs: tf.Tensor[] = [];
      const first: tf.Tensor[] = [];
      const seconds: tf.Tensor[] = [];
      for (let t = 0; t < T; t++) {
        const v = stepForward([stepOf(x, t), ...state], w);
        nodes.forEach((n, i) => {
          if (n.op === 'act') {
            const { d1, d2 } = derivatives(derivativeOf.get(n) as Elementwise | 'identity', v[n.a] as tf.Tensor, v[i] as tf.Tensor, second);
            first.push(d1);
            if (second) seconds.push(d2 ?? tf.zerosLike(d1));
          } else if (n.op === 'mul') first.push(v[n.a] as tf.Tensor, v[n.b] as tf.Tensor);
          else if (n.op === 'matmul') first.push(v[n.a] as tf.Tensor);
        });
        state = cell.state.map((i) => v[i] as tf.Tensor);
        hs.push(state[0] as tf.Tensor);
      }
      return { y: output(hs), saved: [...first, ...seconds] };
    },
    backward: (dy, saved) => [throughTime(materialize(dy), saved, pieces())],
    tangent: ([dx], saved) => tangentThroughTime(dx as tf.Tensor, saved, false),
    ...(curved ? { jet: ([dx]: tf.Tensor[], saved: tf.Tensor[]) => tangentThroughTime(dx as tf.Tensor, saved, true) } : {}),
    weightGrads(dy, [input], saved): WeightGrads {
      // One more pass through time, keeping each weight node's per-step cotangents and operands.
      const B = (input as tf.Tensor).shape[0] as number;
      const w = pieces();
      const cot = new Map<number, tf.Tensor[]>();
      throughTime(dy, saved, w, (t, g) => {
        nodes.forEach((n, i) => {
          if (n.op !== 'matmul' && n.op !== 'bias') return;
          const list = cot.get(i) ?? new Array<tf.Tensor>(T);
          list[t] = g[i] ?? tf.zeros([dy.shape[0] as number, n.w.size]);
          cot.set(i, list);
        });
      });
      const block = (i: number): tf.Tensor => {
        const n = nodes[i] as Node & { w: WeightPiece };
        const dz = tf.stack(cot.get(i) as tf.Tensor[], 1); // [K·B, T, size]
        if (n.op === 'bias') return channelSums(dz, B); // [B, K, size]
        const operand = tf.stack(Array.from({ length: T }, (_, t) => saved[t * perStep + (offsets[i] as number)] as tf.Tensor), 1); // [B, T, in]
        const inSize = operand.shape[2] as number;
        return tf.reshape(denseKernelGrad(operand, dz, B), [B, -1, inSize, n.w.size]); // [B, K, in, size]
      };
      const variable = (name: string) => () => {
        const parts = nodes.flatMap((n, i) => ((n.op === 'matmul' || n.op === 'bias') && n.w.variable === name ? [[n.w.from, i] as const] : [])).sort((a, b) => a[0] - b[0]);
        const blocks = parts.map(([, i]) => block(i));
        const joined = blocks.length === 1 ? (blocks[0] as tf.Tensor) : tf.concat(blocks, -1);
        return tf.reshape(joined, [B, joined.shape[1] as number, -1]) as tf.Tensor3D;
      };
      return { kernel: variable('kernel'), recurrent_kernel: variable('recurrent_kernel'), bias: variable('bias') };
    },
  };
}

/**
 * A Bidirectional wrapper of a covered recurrent layer: the forward layer's output y and the
 * backward layer's y′ (reversed along time when they are sequences, as tfjs-layers does), merged
 * by 'concat', 'sum', 'ave' or 'mul' (whose derivative takes the other operand, and whose second
 * derivative adds ẏ_u ẏ′_v + ẏ_v ẏ′_u). The weights' cotangents are each layer's, keyed by the
 * layer's name ('forward_lstm/kernel').
 */
function bidirectionalRule(ctx: RuleContext): Rule {
  const { layer, inShapes, outShape } = ctx;
  const w = layer as unknown as { forwardLayer?: Layer; backwardLayer?: Layer; mergeMode?: string | null; returnSequences?: boolean };
  const mode = w.mergeMode;
  if (w.forwardLayer === undefined || w.backwardLayer === undefined || (mode !== 'concat' && mode !== 'sum' && mode !== 'ave' && mode !== 'mul')) throw new NotCompilable(`Bidirectional '${layer.name}' with mergeMode ${String(mode)}`);
  const units = Number(config(w.forwardLayer)['units']);
  const innerOut = [...outShape.slice(0, -1), units];
  const [fwd, bwd] = [w.forwardLayer, w.backwardLayer].map((l) => recurrentRule({ layer: l, inShapes, outShape: innerOut, linearHead: false })) as [Rule, Rule];
  const flip = (t: tf.Tensor) => (w.returnSequences ? tf.reverse(t, 1) : t);
  // The forward layer's share of `saved`, by the length of the whole (a pass with `second` saves more).
  const split = new Map<number, number>();
  const parts = (saved: tf.Tensor[]) => {
    const n = split.get(saved.length) as number;
    const extra = mode === 'mul' ? 2 : 0;
    return { f: saved.slice(0, n), b: saved.slice(n, saved.length - extra), y: saved.slice(saved.length - extra) };
  };
  const merge = (a: tf.Tensor, b: tf.Tensor, ys: tf.Tensor[]) => {
    switch (mode) {
      case 'concat':
        return tf.concat([a, b], -1);
      case 'sum':
        return tf.add(a, b);
      case 'ave':
        return tf.mul(0.5, tf.add(a, b));
      default:
        return tf.add(mulPerSample(a, ys[1] as tf.Tensor), mulPerSample(b, ys[0] as tf.Tensor));
    }
  };
  // The two layers' output cotangents from the merged one (the backward layer's in its own time order).
  const unmerge = (g: tf.Tensor, ys: tf.Tensor[]): [tf.Tensor, tf.Tensor] => {
    let [ga, gb] = [g, g];
    if (mode === 'concat') [ga, gb] = tf.split(g, 2, -1) as [tf.Tensor, tf.Tensor];
    else if (mode === 'ave') ga = gb = tf.mul(0.5, g);
    else if (mode === 'mul') [ga, gb] = [mulPerSample(g, ys[1] as tf.Tensor), mulPerSample(g, ys[0] as tf.Tensor)];
    return [ga, flip(gb)];
  };
  const tangents = (dx: tf.Tensor, saved: tf.Tensor[], second: boolean) => {
    const p = parts(saved);
    const run = (r: Rule, s: tf.Tensor[]) => (second && r.jet ? r.jet([dx], s) : r.tangent([dx], s));
    const a = run(fwd, p.f);
    const b = flip(run(bwd, p.b));
    const out = merge(a, b, p.y);
    if (!second || mode !== 'mul') return out;
    const [au, av] = jetBlocks(a);
    const [bu, bv] = jetBlocks(b);
    const [ou, ov, ouv] = jetBlocks(out);
    return stackJet(ou, ov, tf.addN([ouv, tf.mul(au, bv), tf.mul(av, bu)]));
  };
  return {
    forward(inputs, second) {
      const a = fwd.forward(inputs, second);
      const b = bwd.forward(inputs, second);
      const yb = flip(b.y);
      const ys = mode === 'mul' ? [a.y, yb] : [];
      const saved = [...a.saved, ...b.saved, ...ys];
      split.set(saved.length, a.saved.length);
      const y = mode === 'mul' ? tf.mul(a.y, yb) : merge(a.y, yb, ys);
      return { y, saved };
    },
    backward(dy, saved) {
      const p = parts(saved);
      const [ga, gb] = unmerge(materialize(dy), p.y);
      const [da] = fwd.backward(ga, p.f);
      const [db] = bwd.backward(gb, p.b);
      return [tf.add(materialize(da as tf.Tensor), materialize(db as tf.Tensor))];
    },
    // Keyed as the weight plan names them: '<forward layer>/kernel', '<backward layer>/bias', …
    weightGrads(dy, inputs, saved): WeightGrads {
      const p = parts(saved);
      const [ga, gb] = unmerge(dy, p.y);
      const named = (l: Layer, g: WeightGrads) => Object.fromEntries(Object.entries(g).map(([k, v]) => [`${l.name}/${k}`, v]));
      return {
        ...named(w.forwardLayer as Layer, (fwd.weightGrads as NonNullable<Rule['weightGrads']>)(ga, inputs, p.f)),
        ...named(w.backwardLayer as Layer, (bwd.weightGrads as NonNullable<Rule['weightGrads']>)(gb, inputs, p.b)),
      };
    },
    tangent: ([dx], saved) => tangents(dx as tf.Tensor, saved, false),
    ...(fwd.jet || bwd.jet || mode === 'mul' ? { jet: ([dx]: tf.Tensor[], saved: tf.Tensor[]) => tangents(dx as tf.Tensor, saved, true) } : {}),
  };
}

/** The rules of the recurrent layers, by class name. */
export const RECURRENT_RULES = {
  SimpleRNN: recurrentRule,
  GRU: recurrentRule,
  LSTM: recurrentRule,
  Bidirectional: bidirectionalRule,
} satisfies FamilyRules;
