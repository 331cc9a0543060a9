/**
 * The model adapter: a `LayersModel` classifier seen as pure differentiable functions of its input.
 *
 * Every function runs the model in inference mode (`training: false`), so BatchNorm uses its moving
 * statistics and samples stay independent (a per-sample Jacobian is only meaningful then), and
 * Dropout is off.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { model as functionalModel } from '@tensorflow/tfjs-layers';
import type { LayersModel, SymbolicTensor } from '@tensorflow/tfjs-layers';
import { allFinite, allFiniteSync, checkChoice, checkFloatTensor, checkKeys, checkModel, checkOptions, checkRunOptions } from '../checks.js';
import type { OptionNames } from '../checks.js';
import { fmtShape, LayerNotFoundError, ShapeError, UnsupportedModelError, ValueError } from '../errors.js';
import type { RunOptions } from '../jacobian/chunks.js';
import { embeddingLayer } from './support.js';

/** What the model's output is. */
export type ModelOutput = 'auto' | 'logits' | 'probabilities';

/** Options that say how to read a model. */
export interface ClassifierOptions {
  /**
   * What the model outputs.
   * - `'auto'` (default): if the model ends in a softmax (a `Dense` layer with
   *   `activation: 'softmax'`, a `Softmax` layer or an `Activation('softmax')` layer), that softmax
   *   is skipped and its input is used as the logits; if it ends in another kind of layer with
   *   `activation: 'softmax'`, the output is read as probabilities (as `'probabilities'` below);
   *   otherwise the output is taken as logits.
   * - `'logits'`: the output is used as logits as it is, even if it ends in a softmax.
   * - `'probabilities'`: the output is a probability vector; a trailing softmax is skipped as in
   *   `'auto'`, and if none can be found, `log(max(p, 1e-30))` is used as logits (less accurate for
   *   saturated outputs, where float32 probabilities round to 0 or 1).
   * @defaultValue `'auto'`
   */
  modelOutput?: ModelOutput;
}

/** How the logits were obtained from the model. */
export type LogitsSource = 'output' | 'pre-softmax' | 'log-probabilities';

/** What an input Jacobian or a vector product differentiates. */
export type Target =
  | 'logProbs'
  | 'logits'
  | {
      /** The name of a layer of the model: its output, flattened per sample. */
      layer: string;
    };

/**
 * A classifier `LayersModel` as differentiable functions of a batch `x` of shape
 * `[B, ...inputShape]`. All functions return new tensors (owned by the caller) and are safe inside
 * `tf.grad` and `tf.tidy`.
 */
export interface Classifier {
  /** The wrapped model (not copied). */
  readonly model: LayersModel;
  /** Shape of one input sample, without the batch dimension. */
  readonly inputShape: readonly number[];
  /** Number of scalars in one input sample, the product of `inputShape`. */
  readonly inputSize: number;
  /** Number of classes C. */
  readonly numClasses: number;
  /** Where the logits come from (see {@link ClassifierOptions.modelOutput}). */
  readonly logitsSource: LogitsSource;
  /** Logits s(x), shape `[B, C]`. */
  logits(x: tf.Tensor): tf.Tensor2D;
  /** Log-probabilities log softmax(s(x)), shape `[B, C]`, computed stably with `logSoftmax`. */
  logProbs(x: tf.Tensor): tf.Tensor2D;
  /** Probabilities softmax(s(x)), shape `[B, C]`. */
  probs(x: tf.Tensor): tf.Tensor2D;
  /** The output of a named layer, flattened per sample: shape `[B, m]`. */
  features(layerName: string): (x: tf.Tensor) => tf.Tensor2D;
  /**
   * The symbolic tensor of the model that a target differentiates, for infogeo's own reverse mode
   * (`linearHead`: it is the output of a Dense layer whose softmax is left out), or null when the
   * logits are not a tensor of the model (`logitsSource: 'log-probabilities'`). @internal
   */
  symbolicTarget(target: Target): { tensor: SymbolicTensor; linearHead: boolean } | null;
  /** The function for a target and its output width m (C for logits and log-probabilities). */
  target(target: Target): {
    /** The function, `[B, ...inputShape]` → `[B, width]`. */
    fn: (x: tf.Tensor) => tf.Tensor2D;
    /** Its output width m. */
    width: number;
    /** A name for messages. */
    name: string;
  };
}

const SOFTMAX_LAYER_CLASSES = new Set(['Softmax', 'Activation']);

function layerActivation(config: Record<string, unknown>): string | undefined {
  const a = config['activation'];
  return typeof a === 'string' ? a : undefined;
}

function symbolicShape(t: SymbolicTensor | SymbolicTensor[], fn: string, what: string): (number | null)[] {
  if (Array.isArray(t)) {
    if (t.length !== 1) {
      throw new UnsupportedModelError(`${fn}: ${what} has ${t.length} outputs; infogeo needs exactly one.`);
    }
    return (t[0] as SymbolicTensor).shape;
  }
  return t.shape;
}

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function subModel(model: LayersModel, output: SymbolicTensor): LayersModel {
  return functionalModel({ inputs: model.inputs, outputs: output });
}

function applyOne(m: LayersModel, x: tf.Tensor): tf.Tensor {
  const y = m.apply(x, { training: false });
  if (Array.isArray(y)) throw new UnsupportedModelError('model.apply returned several tensors');
  return y as tf.Tensor;
}

/**
 * Wraps a classifier `LayersModel` as differentiable functions (logits, log-probabilities, the
 * features of any layer), checking that it has one input and one `[B, C]` output with C ≥ 2.
 *
 * @param model - a built `LayersModel` (Sequential or functional) with one input and one output
 *   of shape `[B, C]`.
 * @param options - see {@link ClassifierOptions}.
 * @returns the functions; creating them allocates no tensors.
 * @throws {@link UnsupportedModelError} for several inputs or outputs, an output that is not
 *   `[B, C]`, or C < 2; {@link ValueError} for an unknown option.
 *
 * @example
 * ```ts
 * const clf = wrapClassifier(model);
 * const logp = tf.tidy(() => clf.logProbs(x)); // [B, C], yours to dispose
 * ```
 */
export function wrapClassifier(model: LayersModel, options: ClassifierOptions = {}): Classifier {
  return classifierOf(model, checkOptions(options as ClassifierOptions | null, 'wrapClassifier', CLASSIFIER_OPTIONS), 'wrapClassifier');
}

/** The option names of {@link ClassifierOptions}. @internal */
export const CLASSIFIER_OPTIONS: OptionNames<ClassifierOptions> = { modelOutput: true };

/**
 * {@link wrapClassifier} for a public function `fn`, which has checked its options' names; reads the
 * options every such function shares (the model's output, the run options).
 * @internal
 */
export function classifierOf(model: LayersModel, options: ClassifierOptions, fn: string): Classifier {
  checkModel(model, fn);
  // Every public function wraps its model once: the options every call shares are checked here.
  const opts = checkOptions(options as ClassifierOptions | null, fn, null);
  checkRunOptions(opts as RunOptions, fn);
  const modelOutput = checkChoice(opts.modelOutput, fn, 'modelOutput', ['auto', 'logits', 'probabilities'] as const, 'auto');
  if (model.inputs.length !== 1) {
    throw new UnsupportedModelError(`${fn}: the model has ${model.inputs.length} inputs; infogeo needs exactly one.`);
  }
  if (model.outputs.length !== 1) {
    throw new UnsupportedModelError(`${fn}: the model has ${model.outputs.length} outputs; infogeo needs exactly one.`);
  }
  const input = model.inputs[0] as SymbolicTensor;
  const output = model.outputs[0] as SymbolicTensor;
  const inShape = input.shape.slice(1);
  if (inShape.some((d) => d == null)) {
    throw new UnsupportedModelError(
      `${fn}: the model's input shape ${fmtShape(input.shape)} has unknown dimensions besides the batch; ` +
        `infogeo needs a fixed input shape.`,
    );
  }
  const inputShape = inShape as number[];
  if (output.shape.length !== 2 || output.shape[1] == null) {
    throw new UnsupportedModelError(
      `${fn}: the model's output has shape ${fmtShape(output.shape)}; a classifier output must be [B, C].`,
    );
  }
  const numClasses = output.shape[1];
  if (numClasses < 2) {
    throw new UnsupportedModelError(`${fn}: the model has ${numClasses} output class; infogeo needs C >= 2.`);
  }

  // Find the logits.
  const last = output.sourceLayer;
  const lastClass = last.getClassName();
  const lastConfig = last.getConfig() as Record<string, unknown>;
  let trailingSoftmax: 'dense' | 'layer' | 'other' | null = null;
  if (lastClass === 'Dense' && layerActivation(lastConfig) === 'softmax') trailingSoftmax = 'dense';
  else if (!SOFTMAX_LAYER_CLASSES.has(lastClass) && layerActivation(lastConfig) === 'softmax') trailingSoftmax = 'other';
  else if (
    SOFTMAX_LAYER_CLASSES.has(lastClass) &&
    (lastClass === 'Softmax' ? [-1, 1, undefined].includes(lastConfig['axis'] as number | undefined) : layerActivation(lastConfig) === 'softmax')
  ) {
    trailingSoftmax = 'layer';
  }

  let logitsSource: LogitsSource;
  let logitsTensor: { tensor: SymbolicTensor; linearHead: boolean } | null = null;
  let logits: (x: tf.Tensor) => tf.Tensor2D;
  const full = (x: tf.Tensor) => applyOne(model, x) as tf.Tensor2D;
  if (modelOutput === 'logits' || trailingSoftmax === null || trailingSoftmax === 'other') {
    if (modelOutput === 'probabilities' || (modelOutput === 'auto' && trailingSoftmax === 'other')) {
      logitsSource = 'log-probabilities';
      logits = (x) => tf.log(tf.maximum(full(x), 1e-30)) as tf.Tensor2D;
    } else {
      logitsSource = 'output';
      logits = full;
      logitsTensor = { tensor: output, linearHead: false };
    }
  } else {
    logitsSource = 'pre-softmax';
    const lastInput = last.input;
    if (Array.isArray(lastInput)) {
      throw new UnsupportedModelError(`${fn}: the final softmax layer '${last.name}' has several inputs.`);
    }
    const before = subModel(model, lastInput);
    if (trailingSoftmax === 'layer') {
      logits = (x) => applyOne(before, x) as tf.Tensor2D;
      logitsTensor = { tensor: lastInput, linearHead: false };
    } else {
      logitsTensor = { tensor: output, linearHead: true };
      const vars = last.weights;
      const kernel = vars.find((v) => v.originalName.endsWith('kernel'));
      const bias = vars.find((v) => v.originalName.endsWith('bias'));
      if (kernel === undefined) {
        throw new UnsupportedModelError(`${fn}: cannot find the kernel of the final Dense layer '${last.name}'.`);
      }
      logits = (x) => {
        const h = applyOne(before, x);
        const z = tf.matMul(tf.reshape(h, [h.shape[0] as number, -1]), kernel.read() as tf.Tensor2D);
        return (bias ? tf.add(z, bias.read()) : z) as tf.Tensor2D;
      };
    }
  }

  const layerNames = model.layers.map((l) => l.name);
  const layerOutput = (layerName: string, option = 'target'): SymbolicTensor => {
    if (typeof layerName !== 'string' || !layerNames.includes(layerName)) {
      throw new LayerNotFoundError(fn, String(layerName), layerNames, option);
    }
    let out: SymbolicTensor | SymbolicTensor[];
    try {
      out = model.getLayer(layerName).output;
    } catch (e) {
      throw new UnsupportedModelError(`${fn}: layer '${layerName}' is used more than once; its output is ambiguous (${(e as Error).message}).`);
    }
    symbolicShape(out, fn, `layer '${layerName}'`);
    return Array.isArray(out) ? (out[0] as SymbolicTensor) : out;
  };
  const features = (layerName: string, option = 'layerName') => {
    const out = layerOutput(layerName, option);
    const sub = layerName === last.name ? model : subModel(model, out);
    return (x: tf.Tensor): tf.Tensor2D => {
      const y = applyOne(sub, x);
      return tf.reshape(y, [y.shape[0] as number, -1]) as tf.Tensor2D;
    };
  };

  const clf: Classifier = {
    model,
    inputShape,
    inputSize: product(inputShape),
    numClasses,
    logitsSource,
    logits,
    logProbs: (x) => tf.logSoftmax(logits(x)),
    probs: (x) => tf.softmax(logits(x)),
    features: (layerName: string) => features(layerName),
    symbolicTarget(target: Target) {
      if (target === 'logProbs' || target === 'logits') return logitsTensor;
      return { tensor: layerOutput(target.layer), linearHead: false };
    },
    target(target: Target) {
      if (target === 'logProbs') return { fn: clf.logProbs, width: numClasses, name: 'logProbs' };
      if (target === 'logits') return { fn: clf.logits, width: numClasses, name: 'logits' };
      if (target != null && typeof target === 'object' && typeof target.layer === 'string') {
        checkKeys(target, fn, { layer: true }, 'target');
        const f = features(target.layer, 'target');
        const shape = symbolicShape(model.getLayer(target.layer).output, fn, `layer '${target.layer}'`);
        return { fn: f, width: product(shape.slice(1) as number[]), name: `layer '${target.layer}'` };
      }
      throw new ValueError(`${fn}: target must be 'logProbs', 'logits' or { layer: name }, got ${JSON.stringify(target)}.`);
    },
  };
  return clf;
}

/**
 * Checks that `x` is a float32 batch `[B, ...inputShape]` of finite numbers for this classifier.
 * Reads the data once, asynchronously (for the finiteness check).
 *
 * @throws {@link ShapeError} for a wrong rank, shape or dtype; {@link ValueError} for NaN or ±Infinity.
 */
export async function checkBatch(clf: Classifier, x: tf.Tensor, fn: string, argName = 'x'): Promise<void> {
  checkBatchShape(clf, x, fn, argName);
  await assertFinite(x, fn, argName);
}

/** The shape and dtype checks of {@link checkBatch}, without reading the data. */
export function checkBatchShape(clf: Classifier, x: tf.Tensor, fn: string, argName = 'x'): void {
  if (x instanceof tf.Tensor && x.dtype === 'int32' && embeddingLayer(clf.model) !== undefined) {
    throw new ShapeError(`${fn}: argument '${argName}' is int32 and the model's ${embeddingLayer(clf.model) as string}`);
  }
  checkFloatTensor(x, fn, argName);
  const want = [null, ...clf.inputShape];
  if (x.rank !== want.length) {
    throw new ShapeError(
      `${fn}: argument '${argName}' must have rank ${want.length}, shape ${fmtShape(want)}, but got shape ${fmtShape(x.shape)}.`,
    );
  }
  if (x.shape.slice(1).some((d, i) => d !== clf.inputShape[i]) || (x.shape[0] as number) < 1) {
    throw new ShapeError(`${fn}: argument '${argName}' must have shape ${fmtShape(want)} with B >= 1, but got ${fmtShape(x.shape)}.`);
  }
}

/** @throws {@link ValueError} if `t` contains NaN or ±Infinity (reads the data once, asynchronously). */
export async function assertFinite(t: tf.Tensor, fn: string, argName: string): Promise<void> {
  if (!(await allFinite(t))) throw new ValueError(`${fn}: argument '${argName}' contains NaN or Infinity.`);
}

/** {@link assertFinite} for the synchronous functions (reads with `dataSync`). */
export function assertFiniteSync(t: tf.Tensor, fn: string, argName: string): void {
  if (!allFiniteSync(t)) throw new ValueError(`${fn}: argument '${argName}' contains NaN or Infinity.`);
}
