/**
 * Random smooth diffeomorphisms of square images (Petrini, Favero, Geiger, Wyart, "Relative
 * stability toward diffeomorphisms indicates performance in deep nets", NeurIPS 2021; reference
 * code pcsl-epfl/diffeomorphism): maximum-entropy sine-series displacement fields at temperature T,
 * their application to NHWC image batches, and the matched isotropic noise.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { checkChoice, checkFloatTensor, checkNested, checkNumber, checkOptions, requireNumber } from '../checks.js';
import { fmtShape, ShapeError, ValueError } from '../errors.js';
import { betaGenerator, normalGenerator, streamSeed } from '../linalg/random.js';
import { assertFiniteSync } from '../model/classifier.js';
import type { OptionNames } from '../checks.js';

/** Checks the cutoff: c ≥ 2 (ln c = 0 at c = 1) and, with n, c < 2n/π (else T_min ≥ T_max). @internal */
export function checkCut(n: number, c: number, fn: string): void {
  if (!(Number.isInteger(n) && n >= 2)) throw new ValueError(`${fn}: the image side n must be an integer >= 2, got ${String(n)}.`);
  if (!(Number.isInteger(c) && c >= 2)) throw new ValueError(`${fn}: the cutoff c must be an integer >= 2 (ln c = 0 at c = 1), got ${String(c)}.`);
  if (c >= (2 * n) / Math.PI) {
    throw new ValueError(`${fn}: the cutoff c = ${c} must be below 2n/π = ${((2 * n) / Math.PI).toFixed(2)} for n = ${n} (else T_min >= T_max).`);
  }
}

/**
 * The temperature range of the reference code for n × n images and cutoff c:
 * T_min = 1/(π n² ln c) (typical displacement ½ pixel at the centre) and T_max = 4/(π³ c² ln c)
 * (the highest T without overhangs, typical displacement n/(πc)).
 *
 * @throws {@link ValueError} unless c is an integer with 2 ≤ c < 2n/π.
 */
export function temperatureRange(
  n: number,
  c: number,
): {
  /** T_min = 1/(π n² ln c). */
  tMin: number;
  /** T_max = 4/(π³ c² ln c). */
  tMax: number;
} {
  checkCut(n, c, 'temperatureRange');
  const lnc = Math.log(c);
  return { tMin: 1 / (Math.PI * n * n * lnc), tMax: 4 / (Math.PI ** 3 * c * c * lnc) };
}

/**
 * The reference's sweep of temperatures: `count` log-spaced values from T_min·`low` to T_max·`high`
 * (defaults 30, 1/15, 2, as in diffeo-sota's `stability_measures.py`).
 */
export function temperatureGrid(n: number, c: number, options?: { count?: number; low?: number; high?: number }): number[] {
  const fn = 'temperatureGrid';
  checkCut(n, c, fn);
  const { tMin, tMax } = temperatureRange(n, c);
  const o = checkOptions(options, fn, { count: true, low: true, high: true });
  const count = checkNumber(o.count, fn, 'count', { integer: true, min: 2 }, 30);
  const low = checkNumber(o.low, fn, 'low', { above: 0 }, 1 / 15);
  const high = checkNumber(o.high, fn, 'high', { above: 0 }, 2);
  const [a, b] = [Math.log(tMin * low), Math.log(tMax * high)];
  return Array.from({ length: count }, (_, i) => Math.exp(a + ((b - a) * i) / (count - 1)));
}

/**
 * The typical displacement δ = (n/2)·√(π T ln c) in pixels (the reference's continuum estimate;
 * the rms displacement of sampled fields at the image centre is 10–30 % larger).
 */
export function typicalDisplacement(T: number, c: number, n: number): number {
  checkCut(n, c, 'typicalDisplacement');
  if (!(Number.isFinite(T) && T >= 0)) throw new ValueError(`typicalDisplacement: T must be a number >= 0, got ${String(T)}.`);
  return (n / 2) * Math.sqrt(Math.PI * T * Math.log(c));
}

/** The inverse of {@link typicalDisplacement}: T(δ) = 4δ²/(π n² ln c). */
export function temperatureForDisplacement(delta: number, c: number, n: number): number {
  checkCut(n, c, 'temperatureForDisplacement');
  if (!(Number.isFinite(delta) && delta >= 0)) throw new ValueError(`temperatureForDisplacement: delta must be a number >= 0, got ${String(delta)}.`);
  return (4 * delta * delta) / (Math.PI * n * n * Math.log(c));
}

/** The active modes (i, j), 1 ≤ i, j ≤ c, with √(i² + j²) < c + ½ (the reference's circular cutoff). */
export function activeModes(c: number): [number, number][] {
  if (!(Number.isInteger(c) && c >= 1)) throw new ValueError(`activeModes: c must be a positive integer, got ${String(c)}.`);
  const modes: [number, number][] = [];
  for (let i = 1; i <= c; i++) for (let j = 1; j <= c; j++) if (Math.sqrt(i * i + j * j) < c + 0.5) modes.push([i, j]);
  return modes;
}

/** Options of {@link sampleDisplacementField}. */
export interface DisplacementFieldOptions {
  /** Number of fields (one per image). */
  batch: number;
  /** Image side n (square images). */
  n: number;
  /** Cutoff c, an integer with 2 ≤ c < 2n/π. @defaultValue 3 */
  c?: number;
  /** Temperature T ≥ 0 (0 gives the identity). */
  T: number;
  /** Seed of the coefficients. @defaultValue 0 */
  seed?: number;
}

/** The option names of {@link DisplacementFieldOptions}. @internal */
const DISPLACEMENT_FIELD_OPTIONS: OptionNames<DisplacementFieldOptions> = { batch: true, n: true, c: true, T: true, seed: true };

/**
 * Samples displacement fields τ = (dx, dy) in pixels, one per image: each component is
 * √T·n·Σ C_ij sin(iπx/(n−1)) sin(jπy/(n−1)) over the active modes, with independent
 * C_ij ~ N(0, 1/(i² + j²)) (x the column, y the row, pixel p at p/(n−1), so the field vanishes on
 * the borders).
 *
 * @returns `[batch, n, n, 2]` float32 (channel 0: dx, 1: dy), owned by the caller.
 * @throws {@link ValueError} for bad n, c, T or batch.
 */
export function sampleDisplacementField(options: DisplacementFieldOptions): tf.Tensor4D {
  const fn = 'sampleDisplacementField';
  const { batch, n, T, c: cut, seed: s } = checkOptions(options, fn, DISPLACEMENT_FIELD_OPTIONS, true);
  const c = cut ?? 3;
  checkCut(n, c, fn);
  requireNumber(batch, fn, 'batch', { integer: true, min: 1 });
  requireNumber(T, fn, 'T', { min: 0 });
  const rand = normalGenerator(checkNumber(s, fn, 'seed', {}, 0));
  return fields(n, Array.from({ length: batch }, () => ({ c, T, rand })));
}

/**
 * One field per image, image b's coefficients drawn from its own seed `seeds[b]`: a field that
 * depends on the image's index only, not on how the images are batched (relativeStability's
 * chunks, a pool's shares). Arguments checked by the caller. @internal
 */
export function imageFields(n: number, c: number, T: number, seeds: readonly number[]): tf.Tensor4D {
  return fields(n, seeds.map((seed) => ({ c, T, rand: normalGenerator(seed) })));
}

/**
 * Fields for images b = 0…, image b's at cutoff `c` and temperature `T` with its coefficients drawn
 * from `rand` (one generator for all images: one stream).
 */
function fields(n: number, images: { c: number; T: number; rand: () => number }[]): tf.Tensor4D {
  const batch = images.length;
  const maxCut = Math.max(...images.map((i) => i.c));
  // sines[k][p] = sin(kπ p/(n−1)), k = 1..c
  const sines = Array.from({ length: maxCut + 1 }, (_, k) => Float64Array.from({ length: n }, (_, p) => Math.sin((k * Math.PI * p) / (n - 1))));
  const out = new Float32Array(batch * n * n * 2);
  const inner = new Float64Array(n); // Σ_i C_ij sin(iπx) for one j
  for (let b = 0; b < batch; b++) {
    const { c, T, rand } = images[b] as { c: number; T: number; rand: () => number };
    const modes = activeModes(c);
    const scale = Math.sqrt(T) * n;
    for (let comp = 0; comp < 2; comp++) {
      const coef = modes.map(([i, j]) => rand() / Math.sqrt(i * i + j * j));
      const field = new Float64Array(n * n);
      for (let j = 1; j <= c; j++) {
        inner.fill(0);
        let any = false;
        modes.forEach(([i, jj], k) => {
          if (jj !== j) return;
          any = true;
          const s = sines[i] as Float64Array;
          const ck = coef[k] as number;
          for (let x = 0; x < n; x++) inner[x] = (inner[x] as number) + ck * (s[x] as number);
        });
        if (!any) continue;
        const sy = sines[j] as Float64Array;
        for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) field[y * n + x] = (field[y * n + x] as number) + (sy[y] as number) * (inner[x] as number);
      }
      for (let p = 0; p < n * n; p++) out[((b * n * n + p) * 2) + comp] = scale * (field[p] as number);
    }
  }
  return tf.tensor4d(out, [batch, n, n, 2]);
}

/** Options of {@link randomDeform}. */
export interface RandomDeformOptions {
  /**
   * The temperature's distribution for each image: T = T_min + (scale·T_max − T_min)·u (at least
   * T_min), u ~ Beta(α, β) with α = s − s/(r + 1), β = s/(r + 1) (the reference augmentation's
   * parametrisation: s the concentration, r = α/β), T_min and T_max those of the image's cutoff
   * ({@link temperatureRange}). Defaults s = 2, r = 1 (u uniform on [0, 1]), scale 1.
   */
  temperature?: {
    /** s. @defaultValue 2 */
    concentration?: number;
    /** r = α/β. @defaultValue 1 */
    ratio?: number;
    /** The upper end as a multiple of T_max. @defaultValue 1 */
    scale?: number;
  };
  /**
   * The cutoff's distribution for each image: c = ⌊min + (max + 1 − min)·u⌋ (at most max),
   * u ~ Beta as for the temperature. Defaults: min 2 (c = 1 has ln c = 0, the reference's cutmin 1
   * divides by it), max the reference's 15, lowered to the largest c below 2n/π; s = 2, r = 1.
   */
  cutoff?: {
    /** The smallest cutoff, at least 2. @defaultValue 2 */
    min?: number;
    /** The largest cutoff, below 2n/π. @defaultValue min(15, ⌈2n/π⌉ − 1) */
    max?: number;
    /** s. @defaultValue 2 */
    concentration?: number;
    /** r = α/β. @defaultValue 1 */
    ratio?: number;
  };
  /** @defaultValue `'bilinear'` */
  interpolation?: Interpolation;
  /**
   * Seed of the draws (cutoffs, temperatures, fields). Default: one seed per call from a counter,
   * so successive batches (epochs of a tf.data pipeline included) get new deformations, the same
   * ones in every run of the program.
   */
  seed?: number;
}

/** The option names of {@link RandomDeformOptions} and of its nested objects. @internal */
const RANDOM_DEFORM_OPTIONS: OptionNames<RandomDeformOptions> = { temperature: true, cutoff: true, interpolation: true, seed: true };
const TEMPERATURE_OPTIONS: OptionNames<NonNullable<RandomDeformOptions['temperature']>> = { concentration: true, ratio: true, scale: true };
const CUTOFF_OPTIONS: OptionNames<NonNullable<RandomDeformOptions['cutoff']>> = { min: true, max: true, concentration: true, ratio: true };

let deformCalls = 0;

/** The Beta(α, β) of a concentration s and a ratio r = α/β, checked (errors name `fn` and `what`). */
function betaOf(o: { concentration?: number; ratio?: number } | undefined, fn: string, what: string): [number, number] {
  const x = o ?? {};
  const s = checkNumber(x.concentration, fn, `${what}.concentration`, { above: 0 }, 2);
  const r = checkNumber(x.ratio, fn, `${what}.ratio`, { above: 0 }, 1);
  return [s - s / (r + 1), s / (r + 1)];
}

/**
 * Each image's cutoff and temperature for {@link randomDeform}: `count` draws for n × n images.
 * @internal
 */
export function drawDeformations(n: number, count: number, options: RandomDeformOptions, seed: number, fn = 'randomDeform'): { c: number[]; T: number[] } {
  const o = checkOptions(options, fn, RANDOM_DEFORM_OPTIONS);
  const cut = checkNested(o.cutoff, fn, 'cutoff', CUTOFF_OPTIONS);
  const largest = Math.ceil((2 * n) / Math.PI) - 1;
  if (largest < 2) throw new ValueError(`${fn}: ${n} × ${n} images admit no cutoff (c must be at least 2 and below 2n/π = ${((2 * n) / Math.PI).toFixed(2)}).`);
  const min = checkNumber(cut.min, fn, 'cutoff.min', { integer: true, min: 2 }, 2);
  const max = checkNumber(cut.max, fn, 'cutoff.max', { integer: true, min: 2 }, Math.min(15, largest));
  if (min > max) throw new ValueError(`${fn}: cutoff.min (${min}) must not exceed cutoff.max (${max}).`);
  checkCut(n, max, fn);
  const scale = checkNumber(checkNested(o.temperature, fn, 'temperature', TEMPERATURE_OPTIONS).scale, fn, 'temperature.scale', { above: 0 }, 1);
  const [ca, cb] = betaOf(o.cutoff, fn, 'cutoff');
  const [ta, tb] = betaOf(o.temperature, fn, 'temperature');
  const cutDraw = betaGenerator(ca, cb, streamSeed(seed, 0));
  const tempDraw = betaGenerator(ta, tb, streamSeed(seed, 1));
  const c: number[] = [];
  const T: number[] = [];
  for (let i = 0; i < count; i++) {
    const ci = Math.min(max, Math.floor(min + (max + 1 - min) * cutDraw()));
    const { tMin, tMax } = temperatureRange(n, ci);
    const hi = Math.max(tMin, scale * tMax);
    c.push(ci);
    T.push(tMin + (hi - tMin) * tempDraw());
  }
  return { c, T };
}

/**
 * Deforms each image of a batch with its own random diffeomorphism, for training with deformations
 * as augmentation (the reference's `transform.py::Diffeo`, per image): a cutoff c and a
 * temperature T drawn from Beta distributions ({@link RandomDeformOptions}), then a field from
 * {@link sampleDisplacementField}'s distribution at (c, T), applied by {@link deform}. Synchronous
 * and made of tfjs ops and CPU draws, so it runs in a `tf.data` `map` or between the steps of a
 * `model.fit` loop.
 *
 * @param images - `[B, n, n, channels]` float32 (NHWC, square).
 * @param options - see {@link RandomDeformOptions}.
 * @returns the deformed images `[B, n, n, channels]`, owned by the caller.
 * @throws {@link ShapeError} for non-square or non-NHWC images; {@link ValueError} for bad options.
 *
 * @example
 * ```ts
 * const augmented = randomDeform(xBatch, { seed: step });   // before model.trainOnBatch(augmented, yBatch)
 * ```
 */
export function randomDeform(images: tf.Tensor, options: RandomDeformOptions = {}): tf.Tensor4D {
  const fn = 'randomDeform';
  const [B, n] = checkImages(images, fn);
  const o = checkOptions(options, fn, RANDOM_DEFORM_OPTIONS);
  const interpolation = checkChoice(o.interpolation, fn, 'interpolation', ['bilinear', 'nearest', 'gaussian'] as const, 'bilinear');
  const seed = checkNumber(o.seed, fn, 'seed', {}, 0x1f123bb5 + 7919 * deformCalls++);
  const { c, T } = drawDeformations(n, B, o, seed, fn);
  const rand = normalGenerator(streamSeed(seed, 2));
  const field = fields(n, c.map((ci, i) => ({ c: ci, T: T[i] as number, rand })));
  try {
    return deform(images, field, { interpolation });
  } finally {
    field.dispose();
  }
}

/** How {@link deform} reads the input between pixels. */
export type Interpolation = 'bilinear' | 'nearest' | 'gaussian';

/** σ of the reference's Gaussian interpolation, in pixels. */
export const GAUSSIAN_SIGMA = 0.4715;
/** Half-width of the Gaussian window: weights at 3 px are e^{−20} ≈ 2e-9 of the centre's. */
const GAUSSIAN_RADIUS = 3;

function checkImages(images: tf.Tensor, fn: string): [number, number, number] {
  checkFloatTensor(images, fn, 'images');
  if (images.rank !== 4 || images.shape.some((d) => d < 1)) {
    throw new ShapeError(`${fn}: images must be an NHWC batch [B, n, n, channels] (each >= 1), got ${fmtShape(images.shape)}.`);
  }
  const [B, h, w, C] = images.shape as [number, number, number, number];
  if (h !== w) throw new ShapeError(`${fn}: images must be square (n × n), got ${h} × ${w} (shape ${fmtShape(images.shape)}; NHWC layout expected).`);
  assertFiniteSync(images, fn, 'images');
  return [B, h, C];
}

/**
 * Applies displacement fields: out[b, y, x] = in[b, y − dy, x − dx] with source coordinates
 * clamped to [0, n − 1] (edge replication), the same field for all channels of an image.
 * - `'bilinear'` (default, the reference's `'linear'`): exact at integer source coordinates, so a
 *   zero field returns the images bit for bit, and exact on affine images;
 * - `'nearest'`: the source coordinates rounded half to even;
 * - `'gaussian'`: weights exp(−d²/2σ²), σ = 0.4715 px, normalised to sum 1 (the reference sums
 *   over all pixels; here over a 7 × 7 window, which drops weights below 2e-9 of the largest).
 *
 * @param images - `[B, n, n, channels]` float32 (NHWC).
 * @param field - `[B, n, n, 2]` displacements (dx, dy) in pixels, e.g. from
 *   {@link sampleDisplacementField}.
 * @returns `[B, n, n, channels]`, owned by the caller.
 * @throws {@link ShapeError} for non-square or non-NHWC images, or a field of the wrong shape.
 */
export function deform(images: tf.Tensor, field: tf.Tensor, options?: { interpolation?: Interpolation }): tf.Tensor4D {
  const fn = 'deform';
  const [B, n] = checkImages(images, fn);
  checkFloatTensor(field, fn, 'field');
  if (field.rank !== 4 || field.shape[0] !== B || field.shape[1] !== n || field.shape[2] !== n || field.shape[3] !== 2) {
    throw new ShapeError(`${fn}: field must have shape [${B},${n},${n},2] (dx, dy per pixel), got ${fmtShape(field.shape)}.`);
  }
  assertFiniteSync(field, fn, 'field');
  const interpolation = checkChoice(checkOptions(options, fn, { interpolation: true }).interpolation, fn, 'interpolation', ['bilinear', 'nearest', 'gaussian'] as const, 'bilinear');
  return remap(images, field, interpolation);
}

/**
 * {@link deform} of checked arguments; a batch whose pixel indices reach `indexLimit` (2²⁴, the
 * float32 integers) goes in parts. @internal
 */
export function remap(images: tf.Tensor, field: tf.Tensor, interpolation: Interpolation, indexLimit = 2 ** 24): tf.Tensor4D {
  const [B, n, , C] = images.shape as [number, number, number, number];
  const most = Math.max(1, Math.floor(indexLimit / (n * n)));
  if (B > most) {
    return tf.tidy(() => {
      const parts: tf.Tensor4D[] = [];
      for (let b = 0; b < B; b += most) {
        const k = Math.min(most, B - b);
        parts.push(remap(tf.slice(images, b, k), tf.slice(field, b, k), interpolation, indexLimit));
      }
      return tf.concat(parts) as tf.Tensor4D;
    });
  }
  return tf.tidy(() => {
    // Index arithmetic in float32, exact for the integers below 2²⁴ (larger batches go in parts,
    // below): int32 arithmetic and slices along the last axis have no fast kernels on wasm, where
    // they took three quarters of the time. (tfjs 4.22's wasm gather with batchDims is wrong, so
    // the batch offset stays in the index.)
    const flat = tf.reshape(images, [B * n * n, C]);
    const grid = tf.range(0, n, 1, 'float32');
    const xs = tf.reshape(grid, [1, 1, n]);
    const ys = tf.reshape(grid, [1, n, 1]);
    // dx and dy as matrix products with (1, 0) and (0, 1): exact, as the field is finite.
    const pairs = tf.reshape(field, [B * n * n, 2]);
    const [dx, dy] = [[1, 0], [0, 1]].map((e) => tf.reshape(tf.matMul(pairs, tf.tensor2d(e, [2, 1])), [B, n, n])) as [tf.Tensor3D, tf.Tensor3D];
    const sx = tf.clipByValue(tf.sub(xs, dx), 0, n - 1); // [B, n, n]
    const sy = tf.clipByValue(tf.sub(ys, dy), 0, n - 1);
    const base = tf.reshape(tf.range(0, B * n * n, n * n, 'float32'), [B, 1, 1]);
    /** The pixels at integer-valued (float32) rows yi and columns xi, [B, n, n, C]. */
    const read = (yi: tf.Tensor, xi: tf.Tensor) => {
      const idx = tf.cast(tf.reshape(tf.add(base, tf.add(tf.mul(yi, n), xi)), [-1]), 'int32');
      return tf.reshape(tf.gather(flat, idx), [B, n, n, C]);
    };
    const col = (t: tf.Tensor) => tf.expandDims(t, 3);
    if (interpolation === 'nearest') return read(tf.round(sy), tf.round(sx)) as tf.Tensor4D;
    if (interpolation === 'bilinear') {
      const [xf, xc, yf, yc] = [tf.floor(sx), tf.ceil(sx), tf.floor(sy), tf.ceil(sy)];
      const wx = col(tf.sub(sx, xf));
      const wy = col(tf.sub(sy, yf));
      const top = tf.add(tf.mul(tf.sub(1, wx), read(yf, xf)), tf.mul(wx, read(yf, xc)));
      const bottom = tf.add(tf.mul(tf.sub(1, wx), read(yc, xf)), tf.mul(wx, read(yc, xc)));
      return tf.add(tf.mul(tf.sub(1, wy), top), tf.mul(wy, bottom)) as tf.Tensor4D;
    }
    // Gaussian: a (2R+1)² window around the rounded source point, weights normalised to sum 1.
    const [rx, ry] = [tf.round(sx), tf.round(sy)];
    let acc: tf.Tensor = tf.zeros([B, n, n, C]);
    let total: tf.Tensor = tf.zeros([B, n, n, 1]);
    for (let oy = -GAUSSIAN_RADIUS; oy <= GAUSSIAN_RADIUS; oy++)
      for (let ox = -GAUSSIAN_RADIUS; ox <= GAUSSIAN_RADIUS; ox++) {
        const px = tf.add(rx, ox);
        const py = tf.add(ry, oy);
        const inside = tf.logicalAnd(tf.logicalAnd(tf.greaterEqual(px, 0), tf.lessEqual(px, n - 1)), tf.logicalAnd(tf.greaterEqual(py, 0), tf.lessEqual(py, n - 1)));
        const d2 = tf.add(tf.square(tf.sub(px, sx)), tf.square(tf.sub(py, sy)));
        const w = col(tf.where(inside, tf.exp(tf.div(tf.neg(d2), 2 * GAUSSIAN_SIGMA * GAUSSIAN_SIGMA)), tf.zerosLike(d2)));
        const v = read(tf.clipByValue(py, 0, n - 1), tf.clipByValue(px, 0, n - 1));
        acc = tf.add(acc, tf.mul(w, v));
        total = tf.add(total, w);
      }
    return tf.div(acc, total) as tf.Tensor4D;
  });
}

/**
 * Isotropic Gaussian noise with the same norm as each image's deformation: η_b = ξ_b ‖τx_b − x_b‖/‖ξ_b‖,
 * ξ_b ~ N(0, I) (seeded), computed in float64; η_b = 0 where τx_b = x_b.
 *
 * @param images - x, `[B, ...]` float32.
 * @param deformed - τx, the same shape.
 * @returns η, the same shape, owned by the caller.
 * @throws {@link ShapeError} if the shapes differ.
 */
export function matchedNoise(images: tf.Tensor, deformed: tf.Tensor, seed = 0): tf.Tensor {
  const fn = 'matchedNoise';
  checkFloatTensor(images, fn, 'images');
  checkFloatTensor(deformed, fn, 'deformed');
  if (images.rank < 2 || images.shape[0] === 0 || !tf.util.arraysEqual(images.shape, deformed.shape)) {
    throw new ShapeError(`${fn}: images and deformed must be tensors of the same shape [B, ...] (B >= 1), got ${fmtShape(images.shape)} and ${fmtShape(deformed.shape)}.`);
  }
  assertFiniteSync(images, fn, 'images');
  assertFiniteSync(deformed, fn, 'deformed');
  checkNumber(seed, fn, 'seed', {});
  const rand = normalGenerator(seed);
  return noise(images.dataSync(), deformed.dataSync(), images.shape, Array.from({ length: images.shape[0] as number }, () => rand));
}

/**
 * {@link matchedNoise} with image b's noise drawn from its own seed `seeds[b]` (see
 * {@link imageFields}); with a number instead of `deformed`, noise of that norm per image. @internal
 */
export async function imageNoise(images: tf.Tensor, deformed: tf.Tensor | number, seeds: readonly number[]): Promise<tf.Tensor> {
  const rands = seeds.map((seed) => normalGenerator(seed));
  if (typeof deformed === 'number') return noise(undefined, deformed, images.shape, rands);
  return noise(await images.data(), await deformed.data(), images.shape, rands);
}

/**
 * Gaussian noise per image (`shape` `[B, ...]`), of the norm of `tx − x` per image (their data), or
 * of the given norm.
 */
function noise(x: ArrayLike<number> | undefined, tx: ArrayLike<number> | number, shape: number[], rands: (() => number)[]): tf.Tensor {
  const B = shape[0] as number;
  const size = shape.reduce((a, b) => a * b, 1);
  const per = size / B;
  const fixed = typeof tx === 'number' ? tx * tx : undefined;
  const eta = new Float32Array(size);
  const xi = new Float64Array(per);
  for (let b = 0; b < B; b++) {
    const rand = rands[b] as () => number;
    let target = fixed ?? 0;
    let norm = 0;
    for (let i = 0; i < per; i++) {
      if (typeof tx !== 'number' && x !== undefined) {
        const d = (tx[b * per + i] as number) - (x[b * per + i] as number);
        target += d * d;
      }
      const r = rand();
      xi[i] = r;
      norm += r * r;
    }
    const s = target > 0 ? Math.sqrt(target / norm) : 0;
    for (let i = 0; i < per; i++) eta[b * per + i] = s * (xi[i] as number);
  }
  return tf.tensor(eta, shape);
}
