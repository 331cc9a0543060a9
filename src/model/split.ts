/**
 * A model split at one of its layers: the geometry of the part after it. A text classifier's input
 * is integer token ids, which have no geometry; the output of its Embedding does.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { input as symbolicInput, model as functionalModel } from '@tensorflow/tfjs-layers';
import type { LayersModel, SymbolicTensor } from '@tensorflow/tfjs-layers';

/** A layer of a model (the class tfjs-layers does not export as a type of its own). */
type Layer = SymbolicTensor['sourceLayer'];
import { checkModel, checkTensor } from '../checks.js';
import { LayerNotFoundError, UnsupportedModelError, ValueError } from '../errors.js';

/** The two parts of {@link splitAt}. */
export interface SplitModel {
  /**
   * The model's input → the layer's output, run in inference mode on the model's own layers and
   * weights: `features(ids)` is the x to measure `head` at. Returns a new tensor (yours to dispose).
   */
  features(x: tf.Tensor): tf.Tensor;
  /**
   * A `LayersModel` from the layer's output (its input, named `'<layer>_output'`) to the model's
   * output: copies of the layers after the split, with the same names, configurations and weights.
   * The weights are copied when `splitAt` is called: split again after training the model. Yours
   * to dispose (`head.dispose()`), which leaves the model as it is.
   */
  head: LayersModel;
}

/** A copy of a layer, not yet built: what tfjs-layers' serialization map makes of its configuration. */
interface LayerCopy {
  apply(x: SymbolicTensor | SymbolicTensor[], kwargs?: unknown): SymbolicTensor | SymbolicTensor[];
  setWeights(w: tf.Tensor[]): void;
  dispose(): void;
}

function copyOf(layer: Layer, fn: string): LayerCopy {
  const className = layer.getClassName();
  const entry = tf.serialization.SerializationMap.getMap().classNameMap[className];
  if (entry === undefined) {
    throw new UnsupportedModelError(
      `${fn}: layer '${layer.name}' (${className}) cannot be copied into the head: its class is not registered with tf.serialization.registerClass.`,
    );
  }
  const [cls, fromConfig] = entry;
  return fromConfig(cls, layer.getConfig() as tf.serialization.ConfigDict) as unknown as LayerCopy;
}

/**
 * Splits a classifier at one of its layers, so that infogeo measures the geometry from that layer's
 * output instead of the model's input. The way to measure a text classifier, whose input (token
 * ids) has none: split at its Embedding, and call any function of infogeo on `head` at
 * `features(ids)`, the embedded sequence — G(x) and paths in embedding space, the pullback metric,
 * its curvature.
 *
 * Every layer after the split must reach the model's input only through the split layer (a skip
 * connection around it is refused), and the split layer must be called once in the model.
 *
 * @param model - a classifier `LayersModel` (one input, one output).
 * @param layerName - the layer whose output is the head's input: a layer of `model` (not a layer of
 *   a nested model), not its output layer.
 * @returns the two parts; `head` is a new model that you own (see {@link SplitModel}).
 * @throws {@link LayerNotFoundError} for a name that is not a layer of `model`; {@link ValueError}
 *   for the output layer; {@link UnsupportedModelError} for a layer after the split that also reads
 *   the model's input another way, a split layer called more than once, or a layer class that
 *   cannot be rebuilt from its configuration.
 *
 * @example
 * ```ts
 * const { features, head } = splitAt(textModel, 'embed');
 * const x = features(ids);                      // [B, T, d] float32: the embedded tokens
 * const { G } = await localDataMatrix(head, x); // G(x) in embedding space
 * ```
 */
export function splitAt(model: LayersModel, layerName: string): SplitModel {
  const fn = 'splitAt';
  checkModel(model, fn);
  const names = model.layers.map((l) => l.name);
  if (typeof layerName !== 'string' || !names.includes(layerName)) throw new LayerNotFoundError(fn, String(layerName), names, 'layerName');
  if (model.inputs.length !== 1 || model.outputs.length !== 1) {
    throw new UnsupportedModelError(`${fn}: the model has ${model.inputs.length} inputs and ${model.outputs.length} outputs; infogeo needs exactly one of each.`);
  }
  const split = model.getLayer(layerName);
  const output = model.outputs[0] as SymbolicTensor;
  if (output.sourceLayer === split) throw new ValueError(`${fn}: '${layerName}' is the model's output layer: no layer is left after it to measure.`);
  if (split.inboundNodes.length !== 1) {
    throw new UnsupportedModelError(`${fn}: layer '${layerName}' is called ${split.inboundNodes.length} times in the model; its output is ambiguous.`);
  }
  const splitOutputs = split.inboundNodes[0]!.outputTensors;
  if (splitOutputs.length !== 1) throw new UnsupportedModelError(`${fn}: layer '${layerName}' has ${splitOutputs.length} outputs; the head needs one.`);
  const splitOutput = splitOutputs[0] as SymbolicTensor;

  // The head's graph, built from the model's output back to the split (as the model was built):
  // each layer rebuilt once from its configuration and applied to the rebuilt inputs of each of its
  // calls; its weights copied once it is built.
  const inputName = names.includes(`${layerName}_output`) ? `${layerName}_output_${names.length}` : `${layerName}_output`;
  const headInput = symbolicInput({ shape: splitOutput.shape.slice(1) as number[], name: inputName, dtype: 'float32' });
  const rebuilt = new Map<number, SymbolicTensor>([[splitOutput.id, headInput]]);
  const copies = new Map<Layer, LayerCopy>();
  const visit = (t: SymbolicTensor): SymbolicTensor => {
    const known = rebuilt.get(t.id);
    if (known !== undefined) return known;
    const layer = t.sourceLayer;
    const node = layer.inboundNodes[t.nodeIndex];
    // (an InputLayer's node lists its own output as its input, and no inbound layer)
    if (node === undefined || node.inboundLayers.length === 0 || layer.getClassName() === 'InputLayer') {
      throw new UnsupportedModelError(
        `${fn}: the model's output reaches its input without passing through layer '${layerName}' (through '${layer.name}'): split at a layer every path goes through.`,
      );
    }
    const inputs = node.inputTensors.map(visit);
    const made = copies.get(layer);
    const copy = made ?? copyOf(layer, fn);
    copies.set(layer, copy); // (before its call builds it: a failure frees what it made)
    const out = copy.apply(inputs.length === 1 ? (inputs[0] as SymbolicTensor) : inputs, node.callArgs);
    if (made === undefined) copy.setWeights(layer.getWeights()); // built by its first call: its weights exist now
    const outs = Array.isArray(out) ? out : [out];
    node.outputTensors.forEach((o, i) => rebuilt.set(o.id, outs[i] as SymbolicTensor));
    return rebuilt.get(t.id) as SymbolicTensor;
  };
  let head: LayersModel;
  try {
    head = functionalModel({ inputs: headInput, outputs: visit(output), name: `${model.name}_from_${layerName}` });
  } catch (e) {
    // The copies built so far hold weights: free them before the error leaves.
    for (const copy of copies.values()) {
      try {
        copy.dispose();
      } catch {
        // not built: nothing to free
      }
    }
    throw e;
  }
  const lower = functionalModel({ inputs: model.inputs, outputs: splitOutput });
  return {
    features: (x) => {
      checkTensor(x, `${fn}(…).features`, 'x');
      const y = lower.apply(x, { training: false });
      return Array.isArray(y) ? (y[0] as tf.Tensor) : (y as tf.Tensor);
    },
    head,
  };
}
