/**
 * Per-sample Jacobians with respect to the trainable weights.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel, LayerVariable } from '@tensorflow/tfjs-layers';
import { LayerNotFoundError, UnsupportedModelError, ValueError } from '../errors.js';
import { checkBatch, CLASSIFIER_OPTIONS, classifierOf } from '../model/classifier.js';
import type { Classifier, ClassifierOptions } from '../model/classifier.js';
import { assertDifferentiable, NoWeightGradient, rethrowKernelError } from '../model/support.js';
import { checkChoice, checkOptions, checkRunOptions, describe } from '../checks.js';
import { budgetFor, bytesPerSamplePass, RUN_OPTIONS, runChunks, tidySteps } from './chunks.js';
import type { RunOptions } from './chunks.js';
import type { CompiledGraph, WeightPlan } from './graph/compile.js';
import { weightGraphFor } from './linearize.js';
import { rowMajor } from './rows.js';
import { rowsAssembler } from './assemble.js';
import type { RowsAssembler } from './assemble.js';
import type { OptionNames } from '../checks.js';

/** Where one weight tensor sits in a row of the weight Jacobian. */
export interface WeightSlice {
  /** The weight's unique name, as in `model.trainableWeights[i].name`. */
  name: string;
  /** The layer that owns it. */
  layer: string;
  /** Its shape. */
  shape: number[];
  /** First column of the weight in a row. */
  offset: number;
  /** Number of columns (the product of `shape`). */
  size: number;
}

/**
 * How the weight Jacobian's rows are computed (the same numbers up to float32 rounding):
 * - `'graph'`: infogeo's own reverse mode in weight space: one forward pass, then all rows of all
 *   samples in one backward pass, each layer's weight cotangents as batched products of its saved
 *   input with its output cotangents (a Dense kernel: outer products; a conv: patches × cotangents).
 *   Covers Dense, Conv1D, Conv2D (any stride or dilation, padding), DepthwiseConv2D,
 *   SeparableConv2D, Conv2DTranspose, BatchNormalization, LayerNormalization and PReLU weights, on
 *   every model the input-space graph covers (weights inside nested models fall back).
 * - `'loop'`: `tf.variableGrads`, one backward pass per (sample, row).
 * - `'auto'` (default): `'graph'` where it covers the chosen weights, else `'loop'`.
 */
export type WeightJacobianStrategy = 'auto' | 'graph' | 'loop';

/** Options of {@link weightJacobian}. */
export interface WeightJacobianOptions extends ClassifierOptions, RunOptions {
  /** Rows of log-probabilities (default) or of logits. @defaultValue `'logProbs'` */
  target?: 'logProbs' | 'logits';
  /** Only the trainable weights of these layers (in model order). @defaultValue all layers */
  layers?: string[];
  /** @defaultValue `'auto'` */
  strategy?: WeightJacobianStrategy;
  /**
   * Upper bound, in MiB, on what one chunk of samples holds besides its share of the result (the
   * weights' blocks of its rows until they are copied into the result, and the forward pass); the
   * result itself is `B·R·d·4` bytes. On `cpu` and `wasm` the result is written in place and a
   * chunk holds at most half the batch (one sample whose rows alone exceed the budget: its rows in
   * as many backward passes as fit), so for B ≥ 2 the peak stays below 1.5 × the result plus the
   * forward pass; on the GPU backends the blocks are joined with `tf.concat` (2 ×).
   * @defaultValue 256
   */
  memoryBudgetMB?: number;
}

/** The option names of {@link WeightJacobianOptions}. @internal */
export const WEIGHT_JACOBIAN_OPTIONS: OptionNames<WeightJacobianOptions> = { ...CLASSIFIER_OPTIONS, ...RUN_OPTIONS, target: true, layers: true, strategy: true };

/** Result of {@link weightJacobian}. */
export interface WeightJacobianResult {
  /** `[B, R, d]`: row `[b, c]` is ∂f_c(x_b)/∂w, flattened weight by weight. Owned by the caller. */
  jacobian: tf.Tensor3D;
  /** Where each weight tensor sits in a row, in column order. */
  slices: WeightSlice[];
  /** The total number of weights d. */
  numWeights: number;
}

/** The chosen layers' trainable weights, their column slices and their count d (errors name `fn`). @internal */
export function selectWeights(model: LayersModel, layers: string[] | undefined, fn: string) {
  const names = model.layers.map((l) => l.name);
  if (layers !== undefined && !(Array.isArray(layers) && layers.every((n) => typeof n === 'string'))) {
    throw new ValueError(`${fn}: layers must be an array of layer names, got ${describe(layers)}.`);
  }
  const chosen = layers === undefined ? model.layers : layers.map((n) => {
    if (!names.includes(n)) throw new LayerNotFoundError(fn, n, names, 'layers');
    return model.getLayer(n);
  });
  const slices: WeightSlice[] = [];
  const variables: LayerVariable[] = [];
  let offset = 0;
  for (const layer of chosen) {
    for (const w of layer.trainableWeights) {
      const shape = w.shape.map((d) => d as number);
      const size = shape.reduce((a, d) => a * d, 1);
      slices.push({ name: w.name, layer: layer.name, shape, offset, size });
      variables.push(w);
      offset += size;
    }
  }
  if (variables.length === 0) throw new ValueError(`${fn}: the selected layers have no trainable weights.`);
  return { slices, variables, numWeights: offset };
}

/**
 * The cotangents on the logits whose rows a weight-space function wants, per sample, from the
 * chunk's logits: `[b, R, C]` (rows of log-probabilities: e_c − p; of a Fisher factor: S(e_c − e_k)).
 */
export type LogitCotangents = (logits: tf.Tensor2D) => tf.Tensor3D | Promise<tf.Tensor3D>;

/** Rows [R, d] of one sample with tf.variableGrads: one backward pass per cotangent row of U [R, C]. */
function variableGradRows(clf: Classifier, xi: tf.Tensor, U: tf.Tensor2D, vars: tf.Variable[]): tf.Tensor2D {
  return tf.tidy(() => {
    const rows: tf.Tensor[] = [];
    for (let r = 0; r < U.shape[0]; r++) {
      rows.push(
        tf.tidy(() => {
          const u = tf.slice(U, [r, 0], [1, -1]);
          const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(clf.logits(xi), u)), vars);
          value.dispose();
          // tfjs leaves out (null) the weights it found no path to: those before a custom layer that leaves the tensor graph.
          const cut = vars.filter((v) => grads[v.name] == null);
          if (cut.length > 0) throw new NoWeightGradient(`no gradient reached ${cut.map((v) => `'${v.name}'`).join(', ')}`);
          return tf.concat(vars.map((v) => tf.reshape(grads[v.name] as tf.Tensor, [-1])));
        }),
      );
    }
    return tf.stack(rows) as tf.Tensor2D;
  });
}

/**
 * The rows of one chunk, handed to `consume` as column blocks `[b, r, size]` (end to end they make
 * `[b, r, d]`; rows `firstRow … firstRow + r − 1` of each sample) and released after it returns;
 * returns the chunk's logits `[b, C]`. Through the graph, one block per weight, the rows in
 * `rowParts` backward passes of one forward pass (a chunk of one sample only); through
 * tf.variableGrads, per sample, one block of all rows.
 */
async function rowsOfChunk(
  clf: Classifier,
  x: tf.Tensor,
  engine: Engine,
  cotangents: LogitCotangents,
  signal: AbortSignal | undefined,
  sampleDone: (i: number) => void,
  consume: (blocks: tf.Tensor3D[], firstRow: number) => Promise<void>,
  rowParts = 1,
): Promise<tf.Tensor2D> {
  const pass = async (make: () => tf.Tensor3D[], firstRow: number) => {
    const blocks = make();
    try {
      await consume(blocks, firstRow);
    } finally {
      tf.dispose(blocks);
    }
  };
  if (engine.graph !== undefined) {
    const tape = engine.graph.forward(x, engine.plan);
    try {
      const U = await cotangents(tape.output);
      try {
        const R = U.shape[1];
        const step = Math.ceil(R / rowParts);
        for (let r0 = 0; r0 < R; r0 += step) {
          const part = (): tf.Tensor3D => (step === R ? U : (tf.slice(U, [0, r0, 0], [-1, Math.min(step, R - r0), -1]) as tf.Tensor3D));
          await pass(() => tf.tidy(() => tape.weightBlocks(rowMajor(part()))), r0);
        }
      } finally {
        U.dispose();
      }
      return tf.clone(tape.output) as tf.Tensor2D;
    } finally {
      tape.dispose();
    }
  }
  const logits = tf.tidy(() => clf.logits(x)) as tf.Tensor2D;
  const vars = engine.variables.map((w) => w.read() as tf.Variable);
  let U: tf.Tensor3D | undefined;
  let per: tf.Tensor[] = [];
  try {
    U = await cotangents(logits);
    const Us = U;
    per = await tidySteps(x.shape[0] as number, signal, (i) => {
      if (i > 0) sampleDone(i - 1);
      return variableGradRows(clf, tf.slice(x, i, 1), tf.squeeze(tf.slice(Us, i, 1), [0]) as tf.Tensor2D, vars);
    });
    sampleDone((x.shape[0] as number) - 1);
    const stacked = per;
    await pass(() => [tf.stack(stacked) as tf.Tensor3D], 0);
    return logits;
  } catch (e) {
    logits.dispose();
    throw e;
  } finally {
    U?.dispose();
    tf.dispose(per);
  }
}

/** Which engine computes the rows: the compiled graph with its plan, or tf.variableGrads. */
interface Engine {
  graph?: CompiledGraph;
  plan?: WeightPlan;
  variables: LayerVariable[];
}

function chooseEngine(clf: Classifier, variables: LayerVariable[], strategy: WeightJacobianStrategy, fn: string): Engine {
  if (strategy !== 'loop') {
    const graph = weightGraphFor(clf);
    const plan = 'reason' in graph ? graph : graph.weightPlan(variables);
    if (!('reason' in plan)) return { graph: graph as CompiledGraph, plan, variables };
    if (strategy === 'graph') throw new UnsupportedModelError(`${fn}: strategy 'graph' does not cover ${plan.reason}; use strategy 'auto' to fall back to tf.variableGrads.`);
  }
  assertDifferentiable(clf.model, 'weights', fn);
  return { variables };
}

/** Where {@link weightRows} writes its rows instead of a result of its own: a larger result, from a row on. @internal */
export interface RowsTarget {
  out: RowsAssembler;
  /** The result's row (seen as `[B·R, d]`) of the first sample's first row. */
  row: number;
}

/**
 * The weight-space rows of `cotangents` for each sample of `x`, in chunks that fit the memory
 * budget: `{ jacobian: [B, R, d], logits: [B, C] }` (both the caller's) and the weight slices; with
 * `into`, the rows are written there and `jacobian` is undefined. The one path of
 * {@link weightJacobian}, {@link localFisher} and {@link datasetFisher}. @internal
 */
export async function weightRows(
  model: LayersModel,
  x: tf.Tensor,
  options: WeightJacobianOptions,
  rows: (C: number) => number,
  cotangents: LogitCotangents,
  fn: string,
  into?: RowsTarget,
): Promise<Omit<WeightJacobianResult, 'jacobian'> & { jacobian: tf.Tensor3D | undefined; logits: tf.Tensor2D }> {
  const clf = classifierOf(model, options, fn);
  await checkBatch(clf, x, fn);
  checkRunOptions(options, fn);
  const strategy = checkChoice(options.strategy, fn, 'strategy', ['auto', 'graph', 'loop'] as const, 'auto');
  const { slices, variables, numWeights } = selectWeights(model, options.layers, fn);
  const engine = chooseEngine(clf, variables, strategy, fn);
  // Transient per sample: the weights' blocks of its rows until they are written (or joined) into
  // its share of the result (which, as every result, is not counted), and the forward pass's tape.
  const R = rows(clf.numClasses);
  const B = x.shape[0] as number;
  const perSample = R * numWeights * 4 + (engine.graph ? engine.graph.tapeBytesPerSample + R * engine.graph.bytesPerRow : bytesPerSamplePass(model));
  // (one sample's rows may go in several passes: the least a pass can hold is one row and the tape)
  const oneRow = numWeights * 4 + (engine.graph ? engine.graph.tapeBytesPerSample + engine.graph.bytesPerRow : bytesPerSamplePass(model));
  const budget = budgetFor(options, fn, oneRow, `one row over ${numWeights} weights and its backward pass`);
  let chunk = Math.max(1, Math.floor(budget / perSample));
  // Progress after each chunk of the graph, after each sample of the loop (C backward passes each).
  const { onProgress, ...rest } = options;
  const sampleDone = (start: number) => (i: number) => {
    if (!engine.graph) onProgress?.({ done: start + i + 1, total: B });
  };
  try {
    const target = into ?? (await rowsAssembler([B, R, numWeights]).then((out) => (out === undefined ? undefined : { out, row: 0 })));
    if (target === undefined) {
      // GPU backends: each chunk's blocks joined once the tape is released, then the chunks (the
      // result and its parts at once).
      const [J, logits] = await runChunks(x, chunk, engine.graph ? options : rest, async (xc, start) => {
        let blocks: tf.Tensor3D[] = [];
        let logits: tf.Tensor2D;
        try {
          logits = await rowsOfChunk(clf, xc, engine, cotangents, options.signal, sampleDone(start), async (b) => {
            blocks = b.map((t) => tf.clone(t)); // the same data, kept past the pass
          });
        } catch (e) {
          tf.dispose(blocks);
          throw e;
        }
        try {
          return [blocks.length === 1 ? (blocks[0] as tf.Tensor3D) : tf.concat(blocks, 2), logits];
        } catch (e) {
          logits.dispose();
          throw e;
        } finally {
          if (blocks.length > 1) tf.dispose(blocks);
        }
      });
      return { jacobian: J as tf.Tensor3D, slices, numWeights, logits: logits as tf.Tensor2D };
    }
    // Written in place: a chunk's blocks are the only transient copy of its rows, so chunks of at
    // most half the batch keep the peak at 1.5 × the result (plus the tape), not 2 ×. A chunk of
    // one sample whose rows alone exceed the budget takes them in as many passes as fit.
    if (B > 1) chunk = Math.min(chunk, Math.floor(B / 2));
    const rowParts = chunk === 1 ? Math.min(R, Math.ceil((R * numWeights * 4) / budget)) : 1;
    try {
      const [L] = await runChunks(x, chunk, engine.graph ? options : rest, async (xc, start) => [
        await rowsOfChunk(clf, xc, engine, cotangents, options.signal, sampleDone(start), async (blocks, firstRow) => {
          let column = 0;
          for (const block of blocks) {
            await target.out.write(block, target.row + start * R + firstRow, column);
            column += block.shape[2];
            block.dispose();
          }
        }, rowParts),
      ]);
      return { jacobian: into === undefined ? target.out.finish() : undefined, slices, numWeights, logits: L as tf.Tensor2D };
    } finally {
      if (into === undefined) target.out.dispose();
    }
  } catch (e) {
    return rethrowKernelError(e, fn, clf.model);
  }
}

/**
 * Per-sample Jacobians of the log-probabilities (default) or logits with respect to the trainable
 * weights w of the model (all of them, or those of the chosen layers):
 *
 *   J[b, c] = ∂ log p_c(x_b) / ∂w  ∈ R^d.
 *
 * tfjs has no vmap, and `tf.variableGrads` sums over the batch, so it would take one backward pass
 * per (sample, row). infogeo's graph instead runs one forward pass per chunk and one backward pass
 * that keeps the samples apart: each layer's weight cotangents are batched products of its saved
 * input with its output cotangents (see {@link WeightJacobianStrategy}). The local Fisher
 * F(x_b) = Σ_c p_c J[b,c] J[b,c]ᵀ is built on the same pass.
 *
 * @param model - a classifier `LayersModel` (see {@link inputJacobian}).
 * @param x - input batch, float32, `[B, ...inputShape]`.
 * @param options - see {@link WeightJacobianOptions}.
 * @returns the Jacobian `[B, C, d]` (owned by the caller: dispose `result.jacobian`) and the map from
 *   weight names to column slices.
 * @throws {@link ShapeError}, {@link ValueError}, {@link LayerNotFoundError},
 *   {@link UnsupportedModelError} as {@link inputJacobian} (and for strategy `'graph'` on weights it
 *   does not cover); on the `tf.variableGrads` fallback on `wasm`, conv layers need
 *   `registerGradientKernels()`.
 *
 * @example
 * ```ts
 * const { jacobian, slices } = await weightJacobian(model, x);
 * console.log(jacobian.shape, slices.map((s) => s.name)); // [4, 10, d]
 * jacobian.dispose();
 * ```
 */
export async function weightJacobian(
  model: LayersModel,
  x: tf.Tensor,
  options: WeightJacobianOptions = {},
): Promise<WeightJacobianResult> {
  const fn = 'weightJacobian';
  checkOptions(options, fn, WEIGHT_JACOBIAN_OPTIONS);
  const target = checkChoice(options.target, fn, 'target', ['logProbs', 'logits'] as const, 'logProbs');
  // log p_c = s_c − logsumexp(s): the row of log p_c is the logits' row of e_c − p.
  const cotangents: LogitCotangents = (logits) =>
    tf.tidy(() => {
      const [B, C] = logits.shape;
      const eye = tf.tile(tf.expandDims(tf.eye(C), 0), [B, 1, 1]) as tf.Tensor3D;
      return target === 'logits' ? eye : (tf.sub(eye, tf.expandDims(tf.softmax(logits), 1)) as tf.Tensor3D);
    });
  const { jacobian, slices, numWeights, logits } = await weightRows(model, x, options, (C) => C, cotangents, fn);
  logits.dispose();
  return { jacobian: jacobian as tf.Tensor3D, slices, numWeights };
}
