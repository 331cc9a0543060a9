/**
 * The images the explorer works on: the bundled MNIST test digits (public/digits.json) and the
 * user's own pictures, each kept at its own size, and their conversion to a model input: resized
 * (a canvas) to the model's height × width, reduced to its channels (grey for one), normalised as
 * (pixel − mean)/std with pixels in [0, 1].
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Layout, Normalisation } from './draw.js';
import type { DigitsFile } from './prepare.js';

/** An image of the gallery, at its own size. */
export interface Picture {
  /** What the gallery calls it: "7 (test #0)" or the file name. */
  name: string;
  /** The true class, when known (the bundled digits). */
  label?: number;
  canvas: HTMLCanvasElement;
}

/** Reads public/digits.json: the digits as pictures and the normalisation of the bundled model. */
export async function loadDigits(url: string): Promise<{ pictures: Picture[]; norm: Normalisation; trained: boolean }> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status} (run \`npm run browser\`, which writes public/ with prepare.ts)`);
  const file = (await response.json()) as DigitsFile;
  const pictures = file.digits.map((d) => {
    const canvas = document.createElement('canvas');
    [canvas.width, canvas.height] = [file.width, file.height];
    const ctx = canvas.getContext('2d')!;
    const img = ctx.createImageData(file.width, file.height);
    d.pixels.forEach((g, i) => img.data.set([g, g, g, 255], 4 * i));
    ctx.putImageData(img, 0, 0);
    return { name: `${d.label} (test #${d.index})`, label: d.label, canvas };
  });
  return { pictures, norm: { mean: [file.mean], std: [file.std] }, trained: file.trained };
}

/** Reads an image file (PNG, JPEG, …) at its own size, composited on black. */
export async function pictureFromFile(file: File): Promise<Picture> {
  const bitmap = await createImageBitmap(file).catch(() => {
    throw new Error(`${file.name}: not an image the browser can decode`);
  });
  const canvas = document.createElement('canvas');
  [canvas.width, canvas.height] = [bitmap.width, bitmap.height];
  const ctx = canvas.getContext('2d')!;
  ctx.fillStyle = 'black';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  return { name: file.name, canvas };
}

/**
 * Pixels in [0, 1] of a picture resized to `layout` (height × width × channels, row-major): RGB for
 * three channels, grey (the luma 0.299 R + 0.587 G + 0.114 B) for one.
 */
export function pixelsOf(picture: Picture, layout: Layout): Float32Array {
  const { height, width, channels } = layout;
  if (channels !== 1 && channels !== 3) throw new Error(`the model's input has ${channels} channels; the explorer draws images with 1 (grey) or 3 (RGB)`);
  const canvas = document.createElement('canvas');
  [canvas.width, canvas.height] = [width, height];
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(picture.canvas, 0, 0, width, height);
  const rgba = ctx.getImageData(0, 0, width, height).data;
  const out = new Float32Array(height * width * channels);
  for (let i = 0; i < height * width; i++) {
    const [r, g, b] = [rgba[4 * i]!, rgba[4 * i + 1]!, rgba[4 * i + 2]!];
    if (channels === 3) out.set([r / 255, g / 255, b / 255], 3 * i);
    else out[i] = r === g && g === b ? r / 255 : (0.299 * r + 0.587 * g + 0.114 * b) / 255;
  }
  return out;
}

/** A picture's pixels resized to `layout` and normalised, (pixel − mean)/std (HWC, row-major). */
export function normalised(picture: Picture, layout: Layout, norm: Normalisation): Float32Array {
  const px = pixelsOf(picture, layout);
  const k = norm.mean.length;
  for (let i = 0; i < px.length; i++) px[i] = ((px[i] as number) - (norm.mean[i % k] as number)) / (norm.std[i % k] as number);
  return px;
}

/** A picture as a model input `[1, ...inputShape]`, normalised; the caller owns (disposes) it. */
export function toInput(picture: Picture, layout: Layout, inputShape: number[], norm: Normalisation): tf.Tensor {
  return tf.tensor(normalised(picture, layout, norm), [1, ...inputShape], 'float32');
}

/**
 * Parses the mean and std fields: one number each, or one per channel separated by commas.
 * Throws an Error that says what is wrong.
 */
export function parseNormalisation(meanText: string, stdText: string, channels: number): Normalisation {
  const parse = (text: string, what: string) => {
    const values = text.split(',').map((s) => Number(s.trim()));
    if (values.length === 0 || values.some((v) => !Number.isFinite(v) || Number.isNaN(v)) || text.trim() === '') throw new Error(`${what} must be a number${channels > 1 ? ` or ${channels} numbers (one per channel) separated by commas` : ''}, got "${text}"`);
    if (values.length !== 1 && values.length !== channels) throw new Error(`${what} has ${values.length} values; the model's input has ${channels} channel(s)`);
    return values;
  };
  const mean = parse(meanText, 'the mean');
  const std = parse(stdText, 'the std');
  if (std.some((s) => s <= 0)) throw new Error(`the std must be positive, got "${stdText}"`);
  return { mean, std };
}

/**
 * The box every normalised pixel lies in, [(0 − mean)/std, (1 − mean)/std], which the paths clamp
 * to. infogeo clamps to one interval for all coordinates: with per-channel values, the union.
 */
export function pixelBox(norm: Normalisation): [number, number] {
  const lo = Math.min(...norm.mean.map((m, k) => -m / (norm.std[k] as number)));
  const hi = Math.max(...norm.mean.map((m, k) => (1 - m) / (norm.std[k] as number)));
  return [lo, hi];
}
