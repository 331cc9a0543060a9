/**
 * Paths along and across the leaves of the data foliation (Grementieri & Fioresi, Algorithm 4.1 and
 * the kernel path).
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { checkFloatTensor, checkNumber, checkOptions, describe } from '../checks.js';
import { fmtShape, ShapeError, ValueError } from '../errors.js';
import type { Classifier, ClassifierOptions } from '../model/classifier.js';
import { assertFinite, checkBatch, checkBatchShape, CLASSIFIER_OPTIONS, classifierOf } from '../model/classifier.js';
import { pause } from '../jacobian/chunks.js';
import { leafGeometry } from '../infogeo/dataMatrix.js';
import { RowSpaceProjector } from '../linalg/lowRankPSD.js';
import { seededNormal } from '../linalg/random.js';
import type { OptionNames } from '../checks.js';

/** Why a path stopped. */
export type StopReason = 'reached' | 'maxSteps' | 'stalled' | 'aborted';

/** Reported after every step. */
export interface PathStep {
  /** Steps taken so far. */
  step: number;
  /** Pairs still moving. */
  active: number;
  /**
   * Distance per pair at the start of this step (to the target for horizontal paths, from the
   * source otherwise); `LeafPath.distances` has the whole series.
   */
  distances: Float64Array;
}

/** Options shared by {@link horizontalPath} and {@link orthogonalPath}. */
export interface PathOptions extends ClassifierOptions {
  /** α, the length of each step (in input units, e.g. normalised pixels). @defaultValue 0.1 */
  stepSize?: number;
  /** @defaultValue 5000 for horizontal paths, 1000 for orthogonal paths (the reference's) */
  maxSteps?: number;
  /**
   * Box `[lo, hi]` every coordinate is clamped to after each step: the valid pixel range after
   * normalisation, e.g. `[-0.1307 / 0.3081, (1 - 0.1307) / 0.3081]` for MNIST. @defaultValue none
   */
  clamp?: [number, number];
  /** Record a frame every this many steps (the first and last states are always recorded). @defaultValue 1 + ⌊maxSteps/100⌋ */
  recordEvery?: number;
  /** Relative rank cut of the leaf bases (see {@link RankOptions}). @defaultValue 1e-5 */
  rtol?: number;
  /** Called after every step that moved at least one path (`step` = 1, 2, …). */
  onStep?: (step: PathStep) => void;
  /**
   * Stops every path before its next step; they end with reason `'aborted'` and the promise
   * resolves (it does not reject): an already aborted signal gives paths of 0 steps whose one frame
   * is the source.
   */
  signal?: AbortSignal;
}

/** The option names of {@link PathOptions}. @internal */
export const PATH_OPTIONS: OptionNames<PathOptions> = { ...CLASSIFIER_OPTIONS, stepSize: true, maxSteps: true, clamp: true, recordEvery: true, rtol: true, onStep: true, signal: true };

/** Options of {@link horizontalPath}. */
export interface HorizontalPathOptions extends PathOptions {
  /** Stop when ‖target − x‖ ≤ threshold. @defaultValue 1.0 */
  threshold?: number;
  /**
   * Stop as `'stalled'` when the part of (target − x) inside the leaf is shorter than this: the
   * rest of the way lies across the leaves, and further steps would only oscillate around the
   * closest point. @defaultValue stepSize / 2
   */
  stallTolerance?: number;
}

/** The option names of {@link HorizontalPathOptions}. @internal */
export const HORIZONTAL_PATH_OPTIONS: OptionNames<HorizontalPathOptions> = { ...PATH_OPTIONS, threshold: true, stallTolerance: true };

/** Options of {@link orthogonalPath}. */
export interface OrthogonalPathOptions extends PathOptions {
  /** The fixed direction r, `[B, ...inputShape]`; drawn from N(0, I) with `seed` when absent. */
  direction?: tf.Tensor;
  /** Seed of the random direction. @defaultValue 0 */
  seed?: number;
}

/** The option names of {@link OrthogonalPathOptions}. @internal */
export const ORTHOGONAL_PATH_OPTIONS: OptionNames<OrthogonalPathOptions> = { ...PATH_OPTIONS, direction: true, seed: true };

/** One path. `frames` belongs to the caller. */
export interface LeafPath {
  /** Recorded states `[K, ...inputShape]`: the source, every `recordEvery`-th step, the last state. */
  frames: tf.Tensor;
  /** The step index of each frame. */
  frameSteps: number[];
  /** Predicted class at each frame. */
  predicted: Int32Array;
  /** Its probability at each frame. */
  probability: Float64Array;
  /** tr G(x) at each frame (NaN for the last frame of an aborted path). */
  traceG: Float64Array;
  /** Distance at every step 0…steps: to the target (horizontal) or from the source (orthogonal). */
  distances: Float64Array;
  /** Steps taken. */
  steps: number;
  /** Why the walk ended (see {@link StopReason}). */
  stopReason: StopReason;
}

interface Track {
  x: tf.Tensor; // [1, ...inputShape]
  frames: tf.Tensor[];
  frameSteps: number[];
  predicted: number[];
  probability: number[];
  traceG: number[];
  distances: number[];
  stop?: StopReason;
}

function positive(v: number, name: string, fn: string, integer = false): number {
  if (!(Number.isFinite(v) && v > 0 && (!integer || Number.isInteger(v)))) {
    throw new ValueError(`${fn}: ${name} must be a positive ${integer ? 'integer' : 'number'}, got ${String(v)}.`);
  }
  return v;
}

/** ‖a_b − b_b‖ per sample, in float64 (disposes nothing it was given). */
async function distances64(a: tf.Tensor, b: tf.Tensor): Promise<Float64Array> {
  const d = tf.sub(a, b);
  try {
    return await norm64(d);
  } finally {
    d.dispose();
  }
}

/** ‖t_b‖ per sample, in float64. */
async function norm64(t: tf.Tensor): Promise<Float64Array> {
  const d = await t.data();
  const per = d.length / (t.shape[0] as number);
  return Float64Array.from({ length: t.shape[0] as number }, (_, b) => {
    let s = 0;
    for (let i = b * per; i < (b + 1) * per; i++) s += (d[i] as number) * (d[i] as number);
    return Math.sqrt(s);
  });
}

/**
 * The shared walk: at each step, the leaf geometry at the active states, a displacement from
 * `displace` (a tensor `[a, ...]`), a unit step of length α, an optional clamp.
 */
async function walk(
  clf: Classifier,
  x0: tf.Tensor,
  fn: string,
  options: PathOptions,
  maxStepsDefault: number,
  distance: (x: tf.Tensor, idx: number[]) => Promise<Float64Array>,
  displace: (x: tf.Tensor, idx: number[], P: RowSpaceProjector) => tf.Tensor,
  stopBefore: (dist: number) => StopReason | undefined,
  stallTolerance: number,
): Promise<LeafPath[]> {
  const stepSize = positive(options.stepSize ?? 0.1, 'stepSize', fn);
  const maxSteps = positive(options.maxSteps ?? maxStepsDefault, 'maxSteps', fn, true);
  const recordEvery = positive(options.recordEvery ?? 1 + Math.floor(maxSteps / 100), 'recordEvery', fn, true);
  const clamp = options.clamp;
  if (clamp !== undefined && !(Array.isArray(clamp) && clamp.length === 2 && clamp.every((v) => typeof v === 'number' && !Number.isNaN(v)) && clamp[0] < clamp[1])) {
    throw new ValueError(`${fn}: clamp must be [lo, hi] (numbers) with lo < hi, got ${describe(clamp)}.`);
  }
  if (options.onStep !== undefined && typeof options.onStep !== 'function') throw new ValueError(`${fn}: onStep must be a function, got ${describe(options.onStep)}.`);
  const B = x0.shape[0] as number;
  const tracks: Track[] = Array.from({ length: B }, (_, b) => ({
    x: tf.slice(x0, b, 1),
    frames: [],
    frameSteps: [],
    predicted: [],
    probability: [],
    traceG: [],
    distances: [],
  }));
  const record = (t: Track, step: number, p: ArrayLike<number>, trace: number) => {
    let best = 0;
    for (let c = 1; c < p.length; c++) if ((p[c] as number) > (p[best] as number)) best = c;
    t.frames.push(tf.clone(t.x));
    t.frameSteps.push(step);
    t.predicted.push(best);
    t.probability.push(p[best] as number);
    t.traceG.push(trace);
  };
  try {
    for (let step = 0; ; step++) {
      const idx = tracks.map((t, b) => (t.stop ? -1 : b)).filter((b) => b >= 0);
      if (idx.length === 0) break;
      if (options.signal?.aborted) {
        // Aborted (before the first step too): the current states are the last frames, without G.
        const xa = tf.concat(idx.map((b) => (tracks[b] as Track).x));
        const p = tf.tidy(() => clf.probs(xa));
        try {
          const dist = await distance(xa, idx);
          const pd = (await p.data()) as Float32Array;
          const C = clf.numClasses;
          idx.forEach((b, i) => {
            const t = tracks[b] as Track;
            t.distances.push(dist[i] as number);
            t.stop = 'aborted';
            record(t, step, pd.subarray(i * C, (i + 1) * C), NaN);
          });
        } finally {
          tf.dispose([xa, p]);
        }
        break;
      }
      const xa = tf.concat(idx.map((b) => (tracks[b] as Track).x));
      try {
        const dist = await distance(xa, idx);
        // The walk answers an abort itself, between steps (the geometry of a step is not cut short).
        const geo = await leafGeometry(clf, xa, { ...options, signal: undefined }, fn);
        const C = geo.numClasses;
        const P = new RowSpaceProjector(geo.bases, geo.dim);
        let moved: tf.Tensor | undefined;
        try {
          const d = displace(xa, idx, P);
          const dn = await norm64(d);
          const live: number[] = [];
          idx.forEach((b, i) => {
            const t = tracks[b] as Track;
            t.distances.push(dist[i] as number);
            const p = geo.probs.subarray(i * C, (i + 1) * C);
            t.stop = stopBefore(dist[i] as number) ?? ((dn[i] as number) <= stallTolerance ? 'stalled' : step >= maxSteps ? 'maxSteps' : undefined);
            if (t.stop || step % recordEvery === 0) record(t, step, p, geo.traces[i] as number);
            if (!t.stop) live.push(i);
          });
          if (live.length > 0) {
            moved = tf.tidy(() => {
              const scale = tf.tensor1d(Float32Array.from(idx, (_, i) => (live.includes(i) ? stepSize / Math.max(dn[i] as number, 1e-30) : 0)));
              const next = tf.add(xa, tf.mul(d, tf.reshape(scale, [idx.length, ...xa.shape.slice(1).map(() => 1)])));
              return clamp ? tf.clipByValue(next, clamp[0], clamp[1]) : next;
            });
            live.forEach((i) => {
              const t = tracks[idx[i] as number] as Track;
              t.x.dispose();
              t.x = tf.slice(moved as tf.Tensor, i, 1);
            });
          }
          d.dispose();
        } finally {
          P.dispose();
          moved?.dispose();
        }
      } finally {
        xa.dispose();
      }
      const active = tracks.filter((t) => !t.stop).length;
      if (active === 0) break; // this iteration only recorded the final states
      options.onStep?.({ step: step + 1, active, distances: Float64Array.from(tracks, (t) => t.distances.at(-1) as number) });
      await pause(undefined);
    }
    return tracks.map((t) => ({
      frames: tf.concat(t.frames),
      frameSteps: t.frameSteps,
      predicted: Int32Array.from(t.predicted),
      probability: Float64Array.from(t.probability),
      traceG: Float64Array.from(t.traceG),
      distances: Float64Array.from(t.distances),
      steps: t.distances.length - 1,
      stopReason: t.stop as StopReason,
    }));
  } finally {
    for (const t of tracks) tf.dispose([t.x, ...t.frames]);
  }
}

/** Checks the source and its partner tensor (a target or a direction) for the classifier. */
async function checkPair(clf: Classifier, source: tf.Tensor, other: tf.Tensor, otherName: string, fn: string): Promise<void> {
  await checkBatch(clf, source, fn, 'source');
  checkFloatTensor(other, fn, otherName);
  if (other.shape.length !== source.shape.length || other.shape.some((d, i) => d !== source.shape[i])) {
    throw new ShapeError(`${fn}: argument '${otherName}' must have the shape of 'source', ${fmtShape(source.shape)}, got ${fmtShape(other.shape)}.`);
  }
  await assertFinite(other, fn, otherName);
}

/** The stopping distances of a path towards a target: `threshold` and `stallTolerance`, checked. */
function targetStops(options: HorizontalPathOptions, fn: string): { threshold: number; stall: number } {
  const threshold = checkNumber(options.threshold, fn, 'threshold', { min: 0 }, 1.0);
  // The default tolerance derives from stepSize: a bad stepSize is named as such, before it.
  const stepSize = checkNumber(options.stepSize, fn, 'stepSize', { above: 0 }, 0.1);
  const stall = checkNumber(options.stallTolerance, fn, 'stallTolerance', { min: 0 }, stepSize / 2);
  return { threshold, stall };
}

/**
 * Algorithm 4.1 of Grementieri & Fioresi: walk from `source` towards `target` inside the leaf of
 * the data foliation. Up to 5,000 steps by default (the reference's `maxSteps`), each an input
 * Jacobian of the active pairs: pass a smaller `maxSteps` for a first look.
 *
 * At each step the displacement target − x is projected on the leaf tangent
 * D_x (see {@link distributionProjector}) and x moves by `stepSize` along it:
 *
 *   x ← clamp(x + α P_{D_x}(target − x) / ‖P_{D_x}(target − x)‖).
 *
 * A path stops when ‖target − x‖ ≤ `threshold` (`'reached'`), when the part of target − x inside
 * the leaf falls below `stallTolerance` (`'stalled'`: the rest lies across the leaves), after
 * `maxSteps` (`'maxSteps'`), or on abort (`'aborted'`). Many (source, target) pairs advance
 * together; each step costs one input Jacobian (C − 1 backward passes) of the active pairs.
 *
 * @param model - a classifier `LayersModel`.
 * @param source - start points `[B, ...inputShape]`, float32.
 * @param target - end points, same shape.
 * @param options - see {@link HorizontalPathOptions}.
 * @returns one {@link LeafPath} per pair; dispose each `frames`.
 * @throws {@link ShapeError} for mismatched shapes; {@link ValueError} for bad options; otherwise
 *   as {@link inputJacobian}.
 *
 * @example
 * ```ts
 * const [path] = await horizontalPath(model, seven, one, { clamp: [-0.4242, 2.8215], maxSteps: 2000 });
 * console.log(path.stopReason, path.steps, path.distances.at(-1), path.predicted);
 * path.frames.dispose();
 * ```
 */
export async function horizontalPath(model: LayersModel, source: tf.Tensor, target: tf.Tensor, options: HorizontalPathOptions = {}): Promise<LeafPath[]> {
  return targetPath(model, source, target, options, 'horizontalPath', (P, d) => P.projectTrusted(d));
}

/** A walk towards `target`, of whose displacement target − x `part` keeps a projection at each step. */
async function targetPath(
  model: LayersModel,
  source: tf.Tensor,
  target: tf.Tensor,
  options: HorizontalPathOptions,
  fn: string,
  part: (P: RowSpaceProjector, d: tf.Tensor) => tf.Tensor,
): Promise<LeafPath[]> {
  const clf = classifierOf(model, checkOptions(options, fn, HORIZONTAL_PATH_OPTIONS), fn);
  await checkPair(clf, source, target, 'target', fn);
  const { threshold, stall } = targetStops(options, fn);
  const targets = (idx: number[]) => tf.gather(target, idx);
  return walk(
    clf,
    source,
    fn,
    options,
    5000,
    async (x, idx) => {
      const t = targets(idx);
      try {
        return await distances64(t, x);
      } finally {
        t.dispose();
      }
    },
    (x, idx, P) => tf.tidy(() => part(P, tf.sub(targets(idx), x))),
    (dist) => (dist <= threshold ? 'reached' : undefined),
    stall,
  );
}

/**
 * The kernel path of Grementieri & Fioresi: from `source`, move across the leaves along one fixed
 * direction. Up to 1,000 steps by default (the reference's `maxSteps`), each an input Jacobian
 * (C − 1 backward passes): pass a smaller `maxSteps` for a first look.
 *
 * The direction r is projected on ker G(x) at every step,
 *
 *   x ← clamp(x + α (r − P_{D_x} r) / ‖r − P_{D_x} r‖),
 *
 * so that p(x) stays the same to first order while x drifts away from the data (images get
 * noisier). r is drawn once from N(0, I) with `seed`, or given. Stops after `maxSteps`, on
 * abort, or if r − P r vanishes (`'stalled'`).
 *
 * @param model - a classifier `LayersModel`.
 * @param source - start points `[B, ...inputShape]`, float32.
 * @param options - see {@link OrthogonalPathOptions}.
 * @returns one {@link LeafPath} per start point (`distances` from the source); dispose `frames`.
 * @throws {@link ShapeError} for a direction of the wrong shape; {@link ValueError} for bad options.
 *
 * @example
 * ```ts
 * const [path] = await orthogonalPath(model, digit, { seed: 1, maxSteps: 250 });
 * console.log(path.predicted, path.probability); // the label stays while the image gets noisy
 * path.frames.dispose();
 * ```
 */
export async function orthogonalPath(model: LayersModel, source: tf.Tensor, options: OrthogonalPathOptions = {}): Promise<LeafPath[]> {
  return directionPath(model, source, options, 'orthogonalPath', (P, r) => P.projectTrusted(r, true));
}

/** A walk along one fixed direction r (given, or drawn with `seed`), of which `part` keeps a projection at each step. */
async function directionPath(
  model: LayersModel,
  source: tf.Tensor,
  options: OrthogonalPathOptions,
  fn: string,
  part: (P: RowSpaceProjector, r: tf.Tensor) => tf.Tensor,
): Promise<LeafPath[]> {
  const clf = classifierOf(model, checkOptions(options, fn, ORTHOGONAL_PATH_OPTIONS), fn);
  checkBatchShape(clf, source, fn, 'source'); // its data is checked with the direction's
  const seed = checkNumber(options.seed, fn, 'seed', {}, 0);
  const direction = options.direction ?? seededNormal(source.shape, seed);
  try {
    await checkPair(clf, source, direction, 'direction', fn);
    return await walk(
      clf,
      source,
      fn,
      options,
      1000,
      async (x, idx) => {
        const s0 = tf.gather(source, idx);
        try {
          return await distances64(x, s0);
        } finally {
          s0.dispose();
        }
      },
      (_x, idx, P) => tf.tidy(() => part(P, tf.gather(direction, idx))),
      () => undefined,
      0,
    );
  } finally {
    if (options.direction === undefined) direction.dispose();
  }
}

/** Options of {@link kernelPath}: those of {@link horizontalPath}. */
export type KernelPathOptions = HorizontalPathOptions;

/**
 * Walk from `source` towards `target` across the leaves, up to 5,000 steps by default (as
 * {@link horizontalPath}; pass a smaller `maxSteps` for a first look). At each step the displacement
 * target − x is projected on ker G(x), the complement of the leaf tangent D_x,
 *
 *   x ← clamp(x + α (I − P_{D_x})(target − x) / ‖(I − P_{D_x})(target − x)‖),
 *
 * so that p(x) stays the same to first order while x approaches the target along every direction
 * the model does not see (the reference code's `path_kernel`; {@link horizontalPath} is its
 * complement). Stops as {@link horizontalPath} does: `'reached'` at ‖target − x‖ ≤ `threshold`,
 * `'stalled'` when the part of target − x across the leaves is shorter than `stallTolerance` (what
 * is left lies inside the leaf: the model would have to change its prediction), `'maxSteps'`,
 * `'aborted'`.
 *
 * @param model - a classifier `LayersModel`.
 * @param source - start points `[B, ...inputShape]`, float32.
 * @param target - end points, same shape.
 * @param options - see {@link HorizontalPathOptions}.
 * @returns one {@link LeafPath} per pair (`distances` to the target); dispose each `frames`.
 * @throws {@link ShapeError} for mismatched shapes; {@link ValueError} for bad options; otherwise
 *   as {@link inputJacobian}.
 *
 * @example
 * ```ts
 * const [path] = await kernelPath(model, seven, one, { maxSteps: 500 });
 * console.log(path.predicted, path.distances.at(-1)); // the 7 stays a 7 while it moves towards the 1
 * path.frames.dispose();
 * ```
 */
export async function kernelPath(model: LayersModel, source: tf.Tensor, target: tf.Tensor, options: KernelPathOptions = {}): Promise<LeafPath[]> {
  return targetPath(model, source, target, options, 'kernelPath', (P, d) => P.projectTrusted(d, true));
}

/**
 * Walk from `source` inside the leaf along one fixed direction r, up to 1,000 steps by default (as
 * {@link orthogonalPath}; pass a smaller `maxSteps` for a first look). At each step r is projected
 * on the leaf tangent D_x,
 *
 *   x ← clamp(x + α P_{D_x} r / ‖P_{D_x} r‖),
 *
 * the leaf-tangent part of a constant direction (the reference code's `constant_direction_tangent`;
 * {@link orthogonalPath} takes the other part). The prediction changes as fast as r allows inside
 * the leaf. r is drawn once from N(0, I) with `seed`, or given. Stops after `maxSteps`, on abort,
 * or when P r vanishes (`'stalled'`).
 *
 * @param model - a classifier `LayersModel`.
 * @param source - start points `[B, ...inputShape]`, float32.
 * @param options - see {@link OrthogonalPathOptions}.
 * @returns one {@link LeafPath} per start point (`distances` from the source); dispose `frames`.
 * @throws {@link ShapeError} for a direction of the wrong shape; {@link ValueError} for bad options.
 */
export async function tangentPath(model: LayersModel, source: tf.Tensor, options: OrthogonalPathOptions = {}): Promise<LeafPath[]> {
  return directionPath(model, source, options, 'tangentPath', (P, r) => P.projectTrusted(r));
}
