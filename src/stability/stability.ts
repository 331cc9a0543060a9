/**
 * Relative stability to diffeomorphisms R_f = D_f / G_f (Petrini, Favero, Geiger, Wyart, NeurIPS
 * 2021; reference code leonardopetrini/diffeo-sota `results/utils.py::relative_distance`).
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { ValueError } from '../errors.js';
import { checkChoice, checkNumber, checkOptions, describe } from '../checks.js';
import { budgetFor, bytesPerSamplePass, pause, RUN_OPTIONS } from '../jacobian/chunks.js';
import type { Progress, RunOptions } from '../jacobian/chunks.js';
import { checkBatch, CLASSIFIER_OPTIONS, classifierOf } from '../model/classifier.js';
import type { ClassifierOptions } from '../model/classifier.js';
import { checkCut, imageFields, imageNoise, remap, temperatureForDisplacement, temperatureGrid, typicalDisplacement } from './diffeo.js';
import type { Interpolation } from './diffeo.js';
import type { OptionNames } from '../checks.js';

/** Options of {@link relativeStability}. */
export interface RelativeStabilityOptions extends ClassifierOptions, RunOptions {
  /** f: `'logits'` (the reference's choice: the raw network output) or `{ layer }`. @defaultValue `'logits'` */
  target?:
    | 'logits'
    | {
        /** A layer's output, flattened per sample. */
        layer: string;
      };
  /** Cutoff c of the displacement fields. @defaultValue 3 */
  c?: number;
  /**
   * The temperatures. Default: the reference's sweep, 30 log-spaced values from T_min/15 to
   * 2·T_max ({@link temperatureGrid}). Exclusive with `delta`.
   */
  temperatures?: number[];
  /** Typical displacements in pixels instead of temperatures (T = 4δ²/(π n² ln c)). */
  delta?: number | number[];
  /** @defaultValue `'bilinear'` */
  interpolation?: Interpolation;
  /**
   * How the squared differences are averaged:
   * - `'mean'`: the mean over images (and over all P² pairs for the denominator), then the sum over
   *   the coordinates of f; with f = identity, R_f = 1 exactly;
   * - `'median'`: the published code's: per coordinate the median over images, then the sum; the
   *   denominator is the median of all P² squared pairwise distances, diagonal zeros included.
   *   For an even count the median is the lower of the two middle values, as `torch.median` takes
   *   it (not their mean): published numbers are reproduced.
   * @defaultValue `'mean'`
   */
  aggregation?: 'mean' | 'median';
  /**
   * The norm of the noise η per image for G_f. Default: matched, ‖η‖ = ‖τx − x‖ for each image
   * and draw (the paper's); a number fixes it (the follow-up code's `--noise_magnitude`), so that
   * G_f no longer depends on the temperature.
   */
  noiseMagnitude?: number;
  /**
   * Divide D_f and G_f by ⟨‖f(x) − f(z)‖²⟩ over pairs of probing images (the paper's). With false,
   * D_f = ⟨‖f(τx) − f(x)‖²⟩ and G_f = ⟨‖f(x + η) − f(x)‖²⟩ in the units of f; R_f is the same.
   * @defaultValue true
   */
  normalize?: boolean;
  /** Independent draws of diffeomorphisms and noise per temperature (for the spread). @defaultValue 1 */
  draws?: number;
  /**
   * Seed of the fields and the noise: image i of draw k at temperature t (indices from 0) takes its
   * field from s = seed + 7919·(t·draws + k) + 104729·i (`sampleDisplacementField({ batch: 1, n, c,
   * T, seed: s })`, applied with `deform`) and its noise from s + 1 (`matchedNoise(x_i, τx_i, s + 1)`).
   * @defaultValue 0
   */
  seed?: number;
  /**
   * Images per forward pass, at most (fewer when `memoryBudgetMB` asks for it). Each image's field
   * and noise come from seeds of its index (and the seed, temperature and draw), so the batch size
   * (and a pool's split) changes the speed and the memory, not the deformations.
   * @defaultValue 64
   */
  batchSize?: number;
  /** Called after each (temperature, draw). */
  onProgress?: (progress: Progress) => void;
  /** Cancels the measurement between draws; the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
}

/** The option names of {@link RelativeStabilityOptions}. @internal */
export const RELATIVE_STABILITY_OPTIONS: OptionNames<RelativeStabilityOptions> = {
  ...CLASSIFIER_OPTIONS,
  ...RUN_OPTIONS,
  target: true,
  c: true,
  temperatures: true,
  delta: true,
  interpolation: true,
  aggregation: true,
  noiseMagnitude: true,
  normalize: true,
  draws: true,
  seed: true,
  batchSize: true,
};

/** Values at one temperature: the mean over the draws, and their standard deviation. */
export interface StabilityPoint {
  /** The temperature. */
  T: number;
  /** The typical displacement (n/2)√(πT ln c) in pixels. */
  delta: number;
  /** D_f = ⟨‖f(τx) − f(x)‖²⟩ / ⟨‖f(x) − f(z)‖²⟩. */
  D: number;
  /** G_f = ⟨‖f(x + η) − f(x)‖²⟩ / ⟨‖f(x) − f(z)‖²⟩, ‖η‖ = ‖τx − x‖ per image. */
  G: number;
  /** R_f = D_f/G_f, the mean over draws of the per-draw ratios (NaN where G_f = 0). */
  R: number;
  /** Standard deviations over the draws (0 for one draw). */
  spread: {
    /** Of D_f. */
    D: number;
    /** Of G_f. */
    G: number;
    /** Of R_f. */
    R: number;
  };
}

/** The result of {@link relativeStability}. */
export interface RelativeStabilityResult {
  /** One per temperature, in the order given. */
  points: StabilityPoint[];
  /** ⟨‖f(x) − f(z)‖²⟩ over pairs of images (before the 1e-10 the reference adds). */
  denominator: number;
  /** The cutoff used. */
  c: number;
  /** The image side. */
  n: number;
  /** The aggregation used. */
  aggregation: 'mean' | 'median';
}

/**
 * The lower median, as the reference code's `torch.median` takes it: for an even count, the lower
 * of the two middle values (not their mean), so published numbers are reproduced.
 */
export function lowerMedian(values: Float64Array): number {
  const s = Float64Array.from(values).sort();
  return s[(s.length - 1) >> 1] as number;
}

/** Σ over coordinates of the mean or median over images of (a − b)², in float64. `[P, m]` row-major. */
function numerator(a: ArrayLike<number>, b: ArrayLike<number>, P: number, m: number, aggregation: 'mean' | 'median'): number {
  let total = 0;
  const col = new Float64Array(P);
  for (let j = 0; j < m; j++) {
    for (let i = 0; i < P; i++) col[i] = ((a[i * m + j] as number) - (b[i * m + j] as number)) ** 2;
    total += aggregation === 'mean' ? col.reduce((s, v) => s + v, 0) / P : lowerMedian(col);
  }
  return total;
}

/** The mean or median of ‖f_i − f_j‖² over all P² ordered pairs (diagonal included). */
function pairwise(f: ArrayLike<number>, P: number, m: number, aggregation: 'mean' | 'median'): number {
  const d = new Float64Array(P * P);
  for (let i = 0; i < P; i++)
    for (let j = i + 1; j < P; j++) {
      let s = 0;
      for (let k = 0; k < m; k++) s += ((f[i * m + k] as number) - (f[j * m + k] as number)) ** 2;
      d[i * P + j] = s;
      d[j * P + i] = s;
    }
  return aggregation === 'mean' ? d.reduce((s, v) => s + v, 0) / (P * P) : lowerMedian(d);
}

const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
const std = (a: number[]) => {
  const mu = mean(a);
  return a.length > 1 ? Math.sqrt(a.reduce((s, v) => s + (v - mu) ** 2, 0) / (a.length - 1)) : 0;
};

/**
 * The relative stability of f (the logits by default) to smooth deformations, against isotropic
 * noise of the same norm (Petrini et al.): for each temperature T,
 *
 *   D_f = ⟨‖f(τx) − f(x)‖²⟩ / ⟨‖f(x) − f(z)‖²⟩,   G_f = ⟨‖f(x + η) − f(x)‖²⟩ / ⟨‖f(x) − f(z)‖²⟩,
 *   R_f = D_f / G_f,
 *
 * with τ a random diffeomorphism at temperature T and cutoff c (a new field per image), and η
 * Gaussian noise with ‖η‖ = ‖τx − x‖ per image. R_f ≈ 1 for a network that sees deformations as
 * noise (at initialisation); trained convolutional networks reach R_f ≪ 1. The denominator gets
 * the reference's +1e-10, so a constant f gives D_f = G_f = 0 (and R_f = NaN, 0/0).
 *
 * @param model - a classifier `LayersModel` on square NHWC images `[n, n, channels]`.
 * @param images - the probing images `[P, n, n, channels]` (P ≥ 2; the reference uses 500),
 *   normalised as the model expects.
 * @param options - see {@link RelativeStabilityOptions}.
 * @returns plain numbers (no tensors).
 * @throws {@link ShapeError} for non-square or non-NHWC images; {@link ValueError} for bad
 *   options (c outside [2, 2n/π), both `temperatures` and `delta`, P < 2…).
 *
 * @example
 * ```ts
 * const { points } = await relativeStability(model, testImages, { c: 3, delta: 1 });
 * console.log(points[0].R); // R_f at a typical displacement of 1 pixel
 * ```
 */
export async function relativeStability(model: LayersModel, images: tf.Tensor, options: RelativeStabilityOptions = {}): Promise<RelativeStabilityResult> {
  const plan = await planStability(model, images, checkOptions(options, 'relativeStability', RELATIVE_STABILITY_OPTIONS), 'relativeStability');
  const total = plan.temps.length * plan.draws;
  let acc: ReturnType<typeof aggregate> | undefined;
  await stabilityOutputs(plan, images, 0, options.signal, {
    reference: (f0) => (acc = aggregate(plan, f0)),
    draw: (k, ft, fNoise) => {
      acc!.draw(ft, fNoise);
      options.onProgress?.({ done: k + 1, total });
    },
  });
  return acc!.result();
}

/** A checked measurement: what f is, the temperatures, draws, chunks and seeds. @internal */
export interface StabilityPlan {
  f: (x: tf.Tensor) => tf.Tensor;
  /** The probing images. */
  P: number;
  n: number;
  c: number;
  temps: number[];
  draws: number;
  batchSize: number;
  interpolation: Interpolation;
  aggregation: 'mean' | 'median';
  seed: number;
  /** A fixed norm of the noise, or undefined for the matched one. */
  noiseMagnitude: number | undefined;
  normalize: boolean;
}

/** Checks relativeStability's arguments (errors name `fn`); a pool's thread takes shares of one image. @internal */
export async function planStability(model: LayersModel, images: tf.Tensor, options: RelativeStabilityOptions, fn: string, minImages = 2): Promise<StabilityPlan> {
  const clf = classifierOf(model, options, fn);
  await checkBatch(clf, images, fn, 'images');
  if (clf.inputShape.length !== 3 || clf.inputShape[0] !== clf.inputShape[1]) {
    throw new ValueError(`${fn}: the model must take square NHWC images [n, n, channels]; its input shape is [${clf.inputShape.join(', ')}].`);
  }
  const P = images.shape[0] as number;
  if (P < minImages) throw new ValueError(`${fn}: at least 2 probing images are needed (pairwise distances); got ${P}.`);
  const n = clf.inputShape[0] as number;
  const c = checkNumber(options.c, fn, 'c', { integer: true, min: 2 }, 3);
  const aggregation = checkChoice(options.aggregation, fn, 'aggregation', ['mean', 'median'] as const, 'mean');
  if (options.temperatures !== undefined && options.delta !== undefined) throw new ValueError(`${fn}: give either temperatures or delta, not both.`);
  checkCut(n, c, fn);
  const list = (v: unknown, name: string): number[] => {
    const a = Array.isArray(v) ? v : typeof v === 'number' && name === 'delta' ? [v] : undefined;
    if (a === undefined || a.length === 0 || !a.every((t) => typeof t === 'number' && Number.isFinite(t) && t >= 0)) {
      throw new ValueError(`${fn}: ${name} must be ${name === 'delta' ? 'a number or ' : ''}a non-empty array of numbers >= 0, got ${describe(v)}.`);
    }
    return a as number[];
  };
  let temps: number[];
  if (options.delta !== undefined) temps = list(options.delta, 'delta').map((d) => temperatureForDisplacement(d, c, n));
  else temps = options.temperatures === undefined ? temperatureGrid(n, c) : list(options.temperatures, 'temperatures');
  const draws = checkNumber(options.draws, fn, 'draws', { integer: true, min: 1 }, 1);
  // Images per pass: at most batchSize, and the forward activations of a pass within the budget.
  const perImage = bytesPerSamplePass(model) / 2;
  const batchSize = Math.max(1, Math.min(checkNumber(options.batchSize, fn, 'batchSize', { integer: true, min: 1 }, 64), Math.floor(budgetFor(options, fn, perImage, "one image's forward pass") / perImage)));
  const interpolation = checkChoice(options.interpolation, fn, 'interpolation', ['bilinear', 'nearest', 'gaussian'] as const, 'bilinear');
  const target = options.target ?? 'logits';
  if (target !== 'logits' && (target === null || typeof target !== 'object' || typeof target.layer !== 'string')) {
    throw new ValueError(`${fn}: target must be 'logits' or { layer: name }, got ${describe(target)}.`);
  }
  const f = target === 'logits' ? clf.logits : clf.target(target).fn;
  const seed = checkNumber(options.seed, fn, 'seed', {}, 0);
  const noiseMagnitude = options.noiseMagnitude === undefined ? undefined : checkNumber(options.noiseMagnitude, fn, 'noiseMagnitude', { min: 0 });
  if (options.normalize !== undefined && typeof options.normalize !== 'boolean') throw new ValueError(`${fn}: normalize must be true or false, got ${describe(options.normalize)}.`);
  return { f, P, n, c, temps, draws, batchSize, interpolation, aggregation, seed, noiseMagnitude, normalize: options.normalize ?? true };
}

/**
 * f of the probing images `images` (the images `offset …` of the measurement: a pool's thread
 * has a share, and each image's field and noise are drawn from seeds of its index), then, for each temperature and draw in
 * order (k = temperature · draws + draw), f of the deformed images and of the images plus matched
 * noise: float32 `[images, m]` row-major each. @internal
 */
export async function stabilityOutputs(
  plan: StabilityPlan,
  images: tf.Tensor,
  offset: number,
  signal: AbortSignal | undefined,
  on: { reference: (f0: Float32Array) => void; draw: (k: number, ft: Float32Array, fNoise: Float32Array) => void },
): Promise<void> {
  const { f, n, c, temps, draws, batchSize, interpolation, seed, noiseMagnitude } = plan;
  const P = images.shape[0] as number;

  /**
   * f over the images in chunks of `batchSize`, as float32 data [P, m] per output; `inputs` maps
   * each chunk (and its start index among all the probing images) to the inputs evaluated
   * (default: the chunk itself). Chunking bounds the memory of the deformations (ImageNet-sized
   * probes).
   */
  const evaluate = async (x: tf.Tensor, inputs: (xc: tf.Tensor, start: number) => Promise<tf.Tensor[]> = async (xc) => [xc]): Promise<Float32Array[]> => {
    const parts: Float32Array[][] = [];
    for (let s = 0; s < P; s += batchSize) {
      // Everything but the outputs is released here, also when a layer throws (`inputs` releases
      // what it made when it throws itself).
      const xc = tf.slice(x, s, Math.min(batchSize, P - s));
      let ys: tf.Tensor[];
      try {
        const made = await inputs(xc, offset + s);
        try {
          ys = tf.tidy(() => made.map((t) => f(t)));
        } finally {
          tf.dispose(made.filter((t) => t !== xc));
        }
      } finally {
        xc.dispose();
      }
      try {
        parts.push(await Promise.all(ys.map(async (y) => (await y.data()) as Float32Array)));
      } finally {
        tf.dispose(ys);
      }
    }
    return parts[0]!.map((_, o) => {
      const out = new Float32Array(parts.reduce((a, p) => a + p[o]!.length, 0));
      let off = 0;
      for (const p of parts) {
        out.set(p[o]!, off);
        off += p[o]!.length;
      }
      return out;
    });
  };

  // With Gaussian interpolation the reference compares against clean images smoothed the same way
  // (deformed at T = 0), so that both arms are blurred once: τx is the Gaussian remap of x, while
  // f(x) and x + η use the smoothed x. A zero field then gives D_f = 0. Smoothed once, in chunks.
  const reference =
    interpolation === 'gaussian'
      ? tf.tidy(() => {
          const parts: tf.Tensor[] = [];
          for (let s = 0; s < P; s += batchSize) {
            const xc = tf.slice(images, s, Math.min(batchSize, P - s));
            parts.push(remap(xc, tf.zeros([xc.shape[0] as number, n, n, 2]), interpolation));
          }
          return tf.concat(parts);
        })
      : images;
  try {
    const [f0] = (await evaluate(reference)) as [Float32Array];
    on.reference(f0);
    for (const [ti, T] of temps.entries()) {
      for (let d = 0; d < draws; d++) {
        await pause(signal);
        // One field and one noise draw per image, each from its own seed, which depends on the
        // (temperature, draw) and the image's index only: not on the chunks or a pool's shares.
        const s = seed + 7919 * (ti * draws + d);
        const [ft, fNoise] = await evaluate(images, async (xc, start) => {
          const b = xc.shape[0] as number;
          const at = Array.from({ length: b }, (_, i) => s + 104729 * (start + i));
          // The images were checked once, and the fields are finite: remap, not deform, which checks (and reads) both.
          const tx = tf.tidy(() => remap(xc, imageFields(n, c, T, at), interpolation));
          const ref = reference === images ? xc : tf.slice(reference, start - offset, b);
          try {
            const eta = await imageNoise(ref, noiseMagnitude ?? tx, at.map((v) => v + 1));
            const noisy = tf.add(ref, eta);
            eta.dispose();
            return [tx, noisy];
          } catch (e) {
            tx.dispose();
            throw e;
          } finally {
            if (ref !== xc) ref.dispose();
          }
        });
        on.draw(ti * draws + d, ft!, fNoise!);
      }
    }
  } finally {
    if (reference !== images) reference.dispose();
  }
}

/**
 * R_f, D_f and G_f from f of all P probing images: the reference outputs `f0` and each (temperature,
 * draw)'s outputs, `[P, m]` each (a pool joins its threads' shares into these). @internal
 */
export function stabilityFromOutputs(plan: StabilityPlan, f0: Float32Array, ft: Float32Array[], fNoise: Float32Array[]): RelativeStabilityResult {
  const acc = aggregate(plan, f0);
  ft.forEach((t, k) => acc.draw(t, fNoise[k]!));
  return acc.result();
}

/**
 * D_f and G_f draw by draw against the reference outputs `f0` (`[P, m]`), then the points: the
 * means and spreads over the draws of each temperature.
 */
function aggregate(plan: StabilityPlan, f0: Float32Array) {
  const { P, aggregation, temps, draws, c, n } = plan;
  const m = f0.length / P;
  const denominator = pairwise(f0, P, m, aggregation);
  const deno = plan.normalize ? denominator + 1e-10 : 1;
  const perDraw: { D: number; G: number }[] = [];
  return {
    draw(ft: Float32Array, fNoise: Float32Array): void {
      perDraw.push({ D: numerator(ft, f0, P, m, aggregation) / deno, G: numerator(fNoise, f0, P, m, aggregation) / deno });
    },
    result(): RelativeStabilityResult {
      const points: StabilityPoint[] = temps.map((T, ti) => {
        const mine = perDraw.slice(ti * draws, (ti + 1) * draws);
        const Ds = mine.map((p) => p.D);
        const Gs = mine.map((p) => p.G);
        const Rs = mine.map((p) => (p.G > 0 ? p.D / p.G : NaN));
        return { T, delta: typicalDisplacement(T, c, n), D: mean(Ds), G: mean(Gs), R: mean(Rs), spread: { D: std(Ds), G: std(Gs), R: std(Rs) } };
      });
      return { points, denominator, c, n, aggregation };
    },
  };
}
