/**
 * Loading the model: the bundled MNIST CNN (public/model/, written by prepare.ts) or the user's own
 * `model.json` and weight files (a tfjs LayersModel, as `model.save('downloads://...')` or the
 * Keras converter writes it), and what the page needs to know about its input.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { Layout } from './draw.js';

/** Where a model comes from: kept, so that the page can load it again on another backend. */
export type ModelSource = { kind: 'bundled'; url: string } | { kind: 'files'; json: File; weights: File[] };

export interface LoadedModel {
  model: tfl.LayersModel;
  source: ModelSource;
  /** A short description: its name and file(s). */
  name: string;
  /** One sample's shape as the model takes it, e.g. [28, 28, 1] or [784]. */
  inputShape: number[];
  /** The same input as an image: height × width × channels. */
  layout: Layout;
  /** Entries of the model's first output (its classes), when known. */
  classes: number | undefined;
}

/** Splits dropped or picked files into a model (the .json and the rest) and images. */
export function sortFiles(files: File[]): { json?: File; weights: File[]; images: File[] } {
  const json = files.find((f) => f.name.endsWith('.json'));
  const images = files.filter((f) => f.type.startsWith('image/'));
  const weights = files.filter((f) => f !== json && !images.includes(f));
  return { ...(json ? { json } : {}), weights, images };
}

/**
 * Loads a model. The page refuses only what it cannot draw (an input that is not an image of known
 * size); everything infogeo refuses (several inputs, an unsupported layer) is left to infogeo, so
 * that its typed errors reach the error panel.
 */
export async function loadModel(source: ModelSource): Promise<LoadedModel> {
  const handler = source.kind === 'bundled' ? source.url : tf.io.browserFiles([source.json, ...source.weights]);
  const model = await tfl.loadLayersModel(handler);
  try {
    const inputShape = model.inputs[0]!.shape.slice(1);
    const layout = imageLayout(inputShape);
    const classes = model.outputs[0]!.shape[1] ?? undefined;
    const name = source.kind === 'bundled' ? `${model.name} (bundled)` : `${model.name} (${source.json.name})`;
    return { model, source, name, inputShape: inputShape as number[], layout, classes };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/**
 * The image layout of an input shape: [H, W, C]; [H, W] (one channel); or [n] with n = s² (a
 * flattened greyscale s × s image) or 3s² (RGB).
 */
export function imageLayout(shape: (number | null)[]): Layout {
  const known = shape.every((d): d is number => typeof d === 'number' && d > 0);
  const bad = (why: string) => new Error(`the model's input shape [${shape.map(String).join(', ')}] ${why}; the explorer needs images of a fixed height × width × channels`);
  if (!known) throw bad('has unknown dimensions');
  if (shape.length === 3) return { height: shape[0]!, width: shape[1]!, channels: shape[2]! };
  if (shape.length === 2) return { height: shape[0]!, width: shape[1]!, channels: 1 };
  if (shape.length === 1) {
    const n = shape[0]!;
    for (const channels of [1, 3]) {
      const side = Math.round(Math.sqrt(n / channels));
      if (side * side * channels === n) return { height: side, width: side, channels };
    }
    throw bad(`is a vector of ${n}, neither s² nor 3s²`);
  }
  throw bad(`has rank ${shape.length}`);
}
