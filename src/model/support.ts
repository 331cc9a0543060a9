/**
 * Which gradient kernels a model needs on the active backend, checked before any work starts, so
 * that a missing kernel is reported with the layer that needs it instead of deep inside `tf.grad`.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { UnsupportedModelError } from '../errors.js';
import { LAYER_CLASSES } from '../jacobian/graph/rule.js';

/** What is differentiated: the input (input Jacobians, VJPs) or the trainable weights. */
export type DiffMode = 'input' | 'weights';

const BP_INPUT = 'Conv2DBackpropInput';
const BP_FILTER = 'Conv2DBackpropFilter';
const DW_INPUT = 'DepthwiseConv2dNativeBackpropInput';
const DW_FILTER = 'DepthwiseConv2dNativeBackpropFilter';

/**
 * Kernels the backward pass of a layer runs. A `Conv2D` with a linear activation (every conv before
 * a BatchNorm) goes through tfjs's fused conv, whose gradient always computes the filter gradient,
 * even when only d/dx is asked for; a conv with a non-linear activation does not.
 */
function kernelsFor(className: string, config: Record<string, unknown>, mode: DiffMode): string[] {
  const linear = config['activation'] === 'linear' || config['activation'] == null;
  switch (className) {
    case 'Conv2D':
      return mode === 'weights' || linear ? [BP_INPUT, BP_FILTER] : [BP_INPUT];
    case 'Conv1D':
      return mode === 'weights' ? [BP_INPUT, BP_FILTER] : [BP_INPUT];
    case 'Conv2DTranspose':
      return mode === 'weights' ? ['Conv2D', BP_FILTER] : ['Conv2D'];
    case 'DepthwiseConv2D':
      return mode === 'weights' ? [DW_INPUT, DW_FILTER] : [DW_INPUT];
    case 'SeparableConv2D':
      return mode === 'weights' ? [DW_INPUT, DW_FILTER, BP_INPUT, BP_FILTER] : [DW_INPUT, BP_INPUT];
    default:
      return [];
  }
}

function collectLayers(model: LayersModel): { name: string; className: string; config: Record<string, unknown> }[] {
  const out: { name: string; className: string; config: Record<string, unknown> }[] = [];
  for (const layer of model.layers) {
    const nested = layer as unknown as Partial<LayersModel>;
    if (Array.isArray(nested.layers)) {
      out.push(...collectLayers(layer as unknown as LayersModel));
    } else {
      out.push({ name: layer.name, className: layer.getClassName(), config: layer.getConfig() as Record<string, unknown> });
    }
  }
  return out;
}

/**
 * Throws an {@link UnsupportedModelError} naming the first layer whose backward pass needs a
 * kernel that the active backend lacks (for example `Conv2DBackpropFilter` on `wasm`).
 */
export function assertDifferentiable(model: LayersModel, mode: DiffMode, fn: string): void {
  const backend = tf.getBackend();
  if (mode === 'input') {
    const embedding = embeddingLayer(model);
    if (embedding !== undefined) throw new UnsupportedModelError(`${fn}: ${embedding}`);
  }
  for (const layer of collectLayers(model)) {
    for (const kernel of kernelsFor(layer.className, layer.config, mode)) {
      if (tf.getKernel(kernel, backend) === undefined) {
        // registerGradientKernels adds the filter gradient everywhere and the depthwise backprops
        // where tfjs lacks them (wasm).
        const hint = [BP_FILTER, DW_INPUT, DW_FILTER].includes(kernel)
          ? ` Call registerGradientKernels() from 'infogeo' once after setting the backend: it adds a fast, exact ${kernel}.`
          : ` No infogeo kernel covers it yet; use the 'cpu' backend for this model.`;
        throw new UnsupportedModelError(
          `${fn}: layer '${layer.name}' (${layer.className}) cannot be differentiated with respect to the ` +
            `${mode === 'input' ? 'input' : 'weights'} on the '${backend}' backend: kernel '${kernel}' is not registered.${hint}`,
        );
      }
    }
  }
}

/**
 * Why a model with an Embedding has no input geometry (its first Embedding named), or undefined:
 * its input is integer token ids, which tf.grad cannot differentiate either.
 */
export function embeddingLayer(model: LayersModel): string | undefined {
  const layer = collectLayers(model).find((l) => l.className === 'Embedding');
  if (layer === undefined) return undefined;
  return (
    `layer '${layer.name}' (Embedding) reads integer token ids, which have no input geometry to differentiate. ` +
    `Measure from the embedding's output: const { features, head } = splitAt(model, '${layer.name}'), then call this function on head at features(ids). The weight-space functions (weightJacobian, localFisher) take the ids as float32 (on cpu: wasm has no kernel for the Embedding's gradient, UnsortedSegmentSum).`
  );
}

/** Layer classes whose backward pass has no gradient of its own in tfjs 4.22 (no second order). */
const FIRST_ORDER_ONLY: Record<string, string> = {
  MaxPooling1D: 'MaxPoolGrad',
  MaxPooling2D: 'MaxPoolGrad',
  MaxPooling3D: 'MaxPool3DGrad',
  AveragePooling1D: 'AvgPoolGrad',
  AveragePooling2D: 'AvgPoolGrad',
  AveragePooling3D: 'AvgPool3DGrad',
};

/** The first layer whose backward pass cannot be differentiated again, or undefined. */
export function firstOrderOnlyLayer(model: LayersModel): { name: string; className: string; op: string } | undefined {
  for (const layer of collectLayers(model)) {
    const op = FIRST_ORDER_ONLY[layer.className];
    if (op !== undefined) return { name: layer.name, className: layer.className, op };
  }
  return undefined;
}

/**
 * Frees what a failed `tf.grad` left behind. tfjs keeps the tensors saved for the backward pass
 * on its tape and frees them only when the backward pass succeeds; after an error inside it
 * (a missing kernel, a missing gradient) they would leak.
 */
export function releaseFailedTape(): void {
  const state = (tf.engine() as unknown as { state?: { gradientDepth?: number; activeTape?: { saved?: tf.Tensor[] }[] | null } }).state;
  if (!state || state.gradientDepth !== 0 || !Array.isArray(state.activeTape)) return;
  for (const node of state.activeTape) for (const t of node.saved ?? []) t.dispose();
  state.activeTape = null;
}

/**
 * A backward pass through `tf.variableGrads` that reached none of these weights (their gradients
 * came back null): the weights before a layer that leaves the tensor graph. @internal
 */
export class NoWeightGradient extends Error {}

/** The layers of classes tfjs-layers does not register (a user's own classes), nested models searched. */
export function customLayers(model: LayersModel): { name: string; className: string }[] {
  const known = new Set<string>(LAYER_CLASSES);
  return collectLayers(model).filter((l) => !known.has(l.className));
}

/**
 * Why the `tf.grad` fallback found no gradient path (`what`: from the output back to the input, or
 * to some weights): the model's custom layers named, with what to do about them.
 */
function noGradientPath(model: LayersModel, what: string): string {
  const custom = customLayers(model).map((l) => `'${l.name}' (${l.className}, a custom layer)`);
  const fix =
    "its call() leaves the tensor graph (it reads values back with dataSync, arraySync or data() and makes a new tensor of them, say), so tfjs cannot differentiate through it; rewrite its call() with tf ops only, or give it a gradient with tf.customGrad.";
  if (custom.length === 1) return `tfjs found no gradient path ${what} through layer ${custom[0] as string}: ${fix}`;
  if (custom.length > 1) return `tfjs found no gradient path ${what} through the model's custom layers ${custom.join(', ')}: one of them cuts it, as a layer does when ${fix}`;
  return `tfjs found no gradient path ${what} in this model: one of its layers leaves the tensor graph (reads values back with dataSync or arraySync, say), which tfjs cannot differentiate.`;
}

/**
 * Rethrows tfjs's "Kernel 'X' not registered for backend 'Y'", its missing gradients and a
 * gradient path cut by a custom layer (`model`'s custom layers named) as an
 * {@link UnsupportedModelError} (other errors as they are), after freeing what a failed backward
 * pass left behind.
 */
export function rethrowKernelError(e: unknown, fn: string, model: LayersModel): never {
  releaseFailedTape();
  const msg = e instanceof Error ? e.message : String(e);
  // tf.grad: the output does not depend on the input on tfjs's tape; tf.variableGrads: on no
  // weight (tfjs) or not on some (NoWeightGradient).
  if (/Cannot compute gradient of y=f\(x\) with respect to x/.test(msg)) {
    throw new UnsupportedModelError(`${fn}: ${noGradientPath(model, 'from the output back to the input')}`);
  }
  if (e instanceof NoWeightGradient || /Cannot find a connection between any variable and the result/.test(msg)) {
    const which = e instanceof NoWeightGradient ? ` (${msg})` : '';
    throw new UnsupportedModelError(`${fn}: ${noGradientPath(model, `from the output back to the weights${which}`)}`);
  }
  const m = /Kernel '(\w+)' not registered for backend '(\w+)'/.exec(msg);
  if (m) {
    throw new UnsupportedModelError(
      `${fn}: the backward pass needs kernel '${m[1]}', which the '${m[2]}' backend does not have (${msg}).`,
    );
  }
  // The tf.grad fallback (a layer infogeo's graph does not cover) met an op tfjs cannot differentiate.
  if (/gradient function not found|not yet supported in gradients/.test(msg)) {
    throw new UnsupportedModelError(`${fn}: tfjs cannot differentiate this model here (${msg}); see the backends guide for the layers infogeo's own graph covers.`);
  }
  throw e;
}
