/**
 * Planes through three inputs and scans of class, entropy and volume over them (the reference
 * code's `run_mnist_plane.py` / `compute_plane_resnet.py`).
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { checkChoice, checkFloatTensor, checkNumber, checkOptions, describe } from '../checks.js';
import { fmtShape, ShapeError, ValueError } from '../errors.js';
import { pause, RUN_OPTIONS } from '../jacobian/chunks.js';
import type { Progress } from '../jacobian/chunks.js';
import { dot } from '../linalg/rows.js';
import { assertFinite, assertFiniteSync, checkBatch, CLASSIFIER_OPTIONS, classifierOf } from '../model/classifier.js';
import type { Classifier, ClassifierOptions, Target } from '../model/classifier.js';
import { curvatureOf, curvatureSupport } from './curvature.js';
import { featureTarget, volumeOf } from './metric.js';
import type { MetricNormalization } from './metric.js';
import type { OptionNames } from '../checks.js';

/**
 * The affine plane o + a·r + b·u through three inputs x₁, x₂, x₃, parametrised as the reference
 * code does: origin o = (x₁+x₂+x₃)/3, r = x₂ − x₁, u = 2√3((x₁+x₂)/2 − o). The three inputs sit at
 * (a, b) = (−½, 1/(2√3)), (½, 1/(2√3)), (0, −1/√3): a unit equilateral triangle centred at 0. The
 * axes are not orthonormal. Owns its tensors: call {@link Plane.dispose}.
 */
export interface Plane {
  /** o, `[1, ...inputShape]`. */
  readonly origin: tf.Tensor;
  /** r and u, `[2, ...inputShape]`. */
  readonly axes: tf.Tensor;
  /** (a, b) of x₁, x₂, x₃. */
  readonly anchors: readonly [number, number][];
  /** Frees `origin` and `axes`. */
  dispose(): void;
}

/** The anchors' plane coordinates (a unit equilateral triangle centred at 0). */
const ANCHORS: [number, number][] = [
  [-0.5, 1 / (2 * Math.sqrt(3))],
  [0.5, 1 / (2 * Math.sqrt(3))],
  [0, -1 / Math.sqrt(3)],
];

/**
 * The plane through three inputs (see {@link Plane}).
 *
 * @param points - `[3, ...inputShape]`, float32, finite.
 * @returns a {@link Plane} whose tensors the caller owns (`plane.dispose()`).
 * @throws {@link ShapeError} unless `points` is a float32 `[3, ...]` tensor; {@link ValueError} if
 *   the three points are collinear (the plane is degenerate) or not finite.
 */
export function planeThroughPoints(points: tf.Tensor): Plane {
  const fn = 'planeThroughPoints';
  checkFloatTensor(points, fn, 'points');
  if (points.rank < 2 || points.shape[0] !== 3 || points.size === 0) {
    throw new ShapeError(`${fn}: points must have shape [3, ...inputShape], got ${fmtShape(points.shape)}.`);
  }
  assertFiniteSync(points, fn, 'points');
  const [origin, axes] = tf.tidy(() => {
    const [x1, x2] = tf.split(points, [1, 1, 1], 0) as [tf.Tensor, tf.Tensor, tf.Tensor];
    const o = tf.mean(points, 0, true);
    const r = tf.sub(x2, x1);
    const u = tf.mul(tf.sub(tf.div(tf.add(x1, x2), 2), o), 2 * Math.sqrt(3));
    return [o, tf.concat([r, u], 0)];
  });
  // Degenerate if r and u are parallel: |cos| = 1 (Gram determinant 0).
  // In float64: for collinear inputs r and u are parallel up to float32 rounding (sin² ~ 1e-14).
  const ax = axes!.dataSync();
  const half = ax.length / 2;
  const [rr, ru, uu] = [dot(ax, 0, ax, 0, half), dot(ax, 0, ax, half, half), dot(ax, half, ax, half, half)];
  if (!(rr * uu - ru * ru > 1e-10 * rr * uu)) {
    tf.dispose([origin!, axes!]);
    throw new ValueError(`${fn}: the three points are collinear (or coincide); they do not span a plane.`);
  }
  return {
    origin: origin!,
    axes: axes!,
    anchors: ANCHORS,
    dispose: () => tf.dispose([origin!, axes!]),
  };
}

/** Checks that `plane` is a live {@link Plane}: origin `[1, ...]`, axes `[2, ...]` of the same input shape (the callers check that they are finite). */
function checkPlane(plane: unknown, fn: string): asserts plane is Plane {
  const p = plane as Partial<Plane> | null;
  if (p === null || typeof p !== 'object' || !(p.origin instanceof tf.Tensor) || !(p.axes instanceof tf.Tensor)) {
    throw new ValueError(`${fn}: plane must be a Plane from planeThroughPoints, got ${describe(plane)}.`);
  }
  if (p.axes.isDisposed || p.origin.isDisposed) throw new ValueError(`${fn}: the plane has been disposed.`);
  const inner = p.origin.shape.slice(1);
  if (p.origin.shape[0] !== 1 || p.axes.shape[0] !== 2 || !tf.util.arraysEqual(p.axes.shape.slice(1), inner) || p.axes.dtype !== 'float32' || p.origin.dtype !== 'float32') {
    throw new ShapeError(`${fn}: a plane's origin must be float32 [1, ...inputShape] and its axes [2, ...inputShape], got ${fmtShape(p.origin.shape)} and ${fmtShape(p.axes.shape)}.`);
  }
}

/** The inputs o + a·r + b·u at the given plane coordinates `[[a, b], …]`: `[P, ...inputShape]`, caller owns. */
export function planePoints(plane: Plane, coords: readonly (readonly [number, number])[]): tf.Tensor {
  const fn = 'planePoints';
  checkPlane(plane, fn);
  assertFiniteSync(plane.axes, fn, 'plane.axes');
  assertFiniteSync(plane.origin, fn, 'plane.origin');
  const pair = (c: unknown) => Array.isArray(c) && c.length === 2 && c.every((v) => typeof v === 'number' && Number.isFinite(v));
  if (!Array.isArray(coords) || coords.length === 0 || !coords.every(pair)) {
    throw new ValueError(`${fn}: coords must be a non-empty array of [a, b] pairs of finite numbers, got ${describe(coords)}.`);
  }
  return pointsOn(plane, coords);
}

/** {@link planePoints} of a plane and coordinates already checked (a scan's grid). */
function pointsOn(plane: Plane, coords: readonly (readonly [number, number])[]): tf.Tensor {
  return tf.tidy(() => {
    const ab = tf.tensor2d(coords.map(([a, b]) => [a, b]), [coords.length, 2]);
    const flat = tf.reshape(plane.axes, [2, -1]);
    const pts = tf.add(tf.reshape(plane.origin, [1, -1]), tf.matMul(ab, flat));
    return tf.reshape(pts, [coords.length, ...plane.origin.shape.slice(1)]);
  });
}

/** Options of {@link scanPlane}. */
export interface ScanPlaneOptions extends ClassifierOptions {
  /** Grid points per axis (the reference: 60 for MNIST, 80 for CIFAR). @defaultValue 60 */
  steps?: number;
  /** The range of both coordinates a, b. @defaultValue [-1, 1] */
  range?: [number, number];
  /**
   * The volume measured at each grid point:
   * - `'effective'` (the reference code's choice): the effective volume of the full input metric,
   *   the sum of the top `k` log singular values of J_Φ (m backward passes per point);
   * - `'plane'`: log √det of the metric restricted to the plane, in the coordinates (a, b) (two
   *   Jacobian-vector products per point: much cheaper).
   * @defaultValue `'effective'`
   */
  volume?: 'effective' | 'plane';
  /**
   * Singular values in `'effective'` mode, 1 ≤ k ≤ min(m, n) (the reference plane scripts use 10).
   * @defaultValue min(10, m, n)
   */
  k?: number;
  /** The feature map Φ (see {@link PullbackMetricOptions.target}). */
  target?: Target;
  /**
   * Also measure the Gaussian curvature K of the plane's induced metric under Φ at each grid point
   * (K = R/2 of {@link scalarCurvature} on the plane's axes): three second directional derivatives
   * per point. Φ must be smooth (for a ReLU network, use `target: 'logProbs'`).
   * @defaultValue false
   */
  curvature?: boolean;
  /** @defaultValue `'width'` (the reference code's) */
  normalization?: MetricNormalization;
  /** The base of the logarithms (log-volume and entropy). @defaultValue 10 (the reference's plots) */
  base?: number;
  /** Grid points per call of the model. @defaultValue 32 */
  batchSize?: number;
  /** Memory budget of each Jacobian (see {@link RunOptions.memoryBudgetMB}). */
  memoryBudgetMB?: number;
  /** Called after each batch of grid points. */
  onProgress?: (progress: Progress) => void;
  /** Cancels the scan between batches; the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
}

/** The option names of {@link ScanPlaneOptions}. @internal */
export const SCAN_PLANE_OPTIONS: OptionNames<ScanPlaneOptions> = { ...CLASSIFIER_OPTIONS, ...RUN_OPTIONS, steps: true, range: true, volume: true, k: true, target: true, curvature: true, normalization: true, base: true, batchSize: true };

/** The result of {@link scanPlane}: row-major grids of `steps × steps` values (b varies slowest). */
export interface PlaneScan {
  /** Grid points per axis. */
  steps: number;
  /** The coordinates of each grid point, `[a₀, b₀, a₁, b₁, …]`. */
  coords: Float64Array;
  /** The predicted class. */
  predicted: Int32Array;
  /** The predicted class's probability. */
  probability: Float64Array;
  /** The predictive entropy −Σ p log p (in `base`; base 10 with 10 classes puts it in [0, 1]). */
  entropy: Float64Array;
  /** log √det of the metric (in `base`), as {@link VolumeElementResult.logVolume}. */
  logVolume: Float64Array;
  /** The rank behind each log-volume. */
  rank: Int32Array;
  /**
   * With `curvature: true`: the Gaussian curvature K of the plane's metric under Φ (in the
   * `normalization` asked for; NaN where that metric is singular).
   */
  curvature?: Float64Array;
}

/**
 * Evaluates the predicted class, its probability, the predictive entropy and the log volume element
 * on a `steps × steps` grid over a plane (see {@link planeThroughPoints}), in batches: the panels of
 * the paper's plane figures. Costly with its defaults, the reference's: 3,600 points, each m
 * backward passes for the `'effective'` volume (m the width of Φ), about 100 s for a
 * 784-128-128-10 MLP on 2 cores (wasm) where `volume: 'plane'` takes 1 s; start with
 * `volume: 'plane'` or fewer `steps`, and watch `onProgress`.
 *
 * With `curvature: true`, also the Gaussian curvature of the plane's metric under Φ at each grid
 * point (see {@link scalarCurvature}).
 *
 * @param model - a classifier `LayersModel`.
 * @param plane - from {@link planeThroughPoints}.
 * @param options - see {@link ScanPlaneOptions}.
 * @returns plain arrays (no tensors).
 * @throws {@link ValueError} for bad options (steps, range, k, batchSize, curvature);
 *   {@link ShapeError} if the plane does not match the model's input; {@link UnsupportedModelError}
 *   for `curvature` of a piecewise-affine Φ (see {@link scalarCurvature}); otherwise as
 *   {@link volumeElement}.
 *
 * @example
 * ```ts
 * const plane = planeThroughPoints(tf.stack([x1, x2, x3]));
 * const scan = await scanPlane(model, plane, { steps: 40, volume: 'plane' });
 * plane.dispose();
 * ```
 */
export async function scanPlane(model: LayersModel, plane: Plane, options: ScanPlaneOptions = {}): Promise<PlaneScan> {
  const scan = await planScan(model, plane, checkOptions(options, 'scanPlane', SCAN_PLANE_OPTIONS), 'scanPlane');
  return scanPoints(scan, plane, options, 0, scan.P, options.onProgress);
}

/** A checked scan: the classifier, the grid and the options that shape each batch. @internal */
export interface ScanPlan {
  clf: Classifier;
  steps: number;
  /** steps², the grid points. */
  P: number;
  coords: Float64Array;
  batchSize: number;
  volume: 'effective' | 'plane';
  /** Singular values of the effective volume. */
  k: number;
  base: number;
  curvature: boolean;
  fn: string;
}

/** Checks a scan's arguments (errors name `fn`) and lays out its grid. @internal */
export async function planScan(model: LayersModel, plane: Plane, options: ScanPlaneOptions, fn: string): Promise<ScanPlan> {
  const clf = classifierOf(model, options, fn);
  const steps = checkNumber(options.steps, fn, 'steps', { integer: true, min: 2 }, 60);
  const range = options.range ?? [-1, 1];
  if (!(Array.isArray(range) && range.length === 2 && range.every((v) => typeof v === 'number' && Number.isFinite(v)) && range[0] < range[1])) {
    throw new ValueError(`${fn}: range must be [lo, hi] (finite numbers) with lo < hi, got ${describe(range)}.`);
  }
  const [lo, hi] = range;
  const batchSize = checkNumber(options.batchSize, fn, 'batchSize', { integer: true, min: 1 }, 32);
  const volume = checkChoice(options.volume, fn, 'volume', ['effective', 'plane'] as const, 'effective');
  const base = options.base ?? 10;
  if (options.curvature !== undefined && typeof options.curvature !== 'boolean') throw new ValueError(`${fn}: curvature must be true or false, got ${describe(options.curvature)}.`);
  const curvature = options.curvature ?? false;
  checkPlane(plane, fn);
  await assertFinite(plane.axes, fn, 'plane.axes');
  await checkBatch(clf, plane.origin, fn, 'plane.origin');
  if (curvature) {
    const unsupported = curvatureSupport(clf, featureTarget(clf, options, fn).target, fn);
    if (unsupported) throw unsupported;
  }
  // The default k is the reference's 10, or every singular value where there are fewer (a plane
  // through 2-D inputs has n = 2): a first call with the defaults must not be refused.
  const kMax = Math.min(featureTarget(clf, options, fn).width, clf.inputSize);
  const k = checkNumber(options.k, fn, 'k', { integer: true, min: 1, max: kMax }, Math.min(10, kMax));
  const P = steps * steps;
  const coords = new Float64Array(2 * P);
  for (let j = 0; j < steps; j++)
    for (let i = 0; i < steps; i++) {
      coords[2 * (j * steps + i)] = lo + ((hi - lo) * i) / (steps - 1);
      coords[2 * (j * steps + i) + 1] = lo + ((hi - lo) * j) / (steps - 1);
    }
  return { clf, steps, P, coords, batchSize, volume, k, base, curvature, fn };
}

/**
 * The scan's values at grid points `first … end − 1` (the whole grid for {@link scanPlane}; a
 * share for a pool's thread, which starts at a multiple of the batch size so that the batches,
 * and so the float32 rounding, are those of one thread). Progress counts the points done.
 * @internal
 */
export async function scanPoints(scan: ScanPlan, plane: Plane, options: ScanPlaneOptions, first: number, end: number, onProgress?: (p: Progress) => void): Promise<PlaneScan> {
  const { clf, batchSize, volume, base, coords, fn } = scan;
  const P = end - first;
  const out: PlaneScan = {
    steps: scan.steps,
    coords,
    predicted: new Int32Array(P),
    probability: new Float64Array(P),
    entropy: new Float64Array(P),
    logVolume: new Float64Array(P),
    rank: new Int32Array(P),
    ...(scan.curvature ? { curvature: new Float64Array(P) } : {}),
  };
  const C = clf.numClasses;
  const lnBase = Math.log(base);
  for (let start = 0; start < P; start += batchSize) {
    await pause(options.signal);
    const count = Math.min(batchSize, P - start);
    const at = first + start;
    const pairs = Array.from({ length: count }, (_, i) => [coords[2 * (at + i)], coords[2 * (at + i) + 1]] as [number, number]);
    const x = pointsOn(plane, pairs); // the plane was checked once, in planScan
    try {
      const lp = tf.tidy(() => clf.logProbs(x));
      let logp: Float32Array;
      try {
        logp = (await lp.data()) as Float32Array;
      } finally {
        lp.dispose();
      }
      for (let i = 0; i < count; i++) {
        let best = 0;
        let h = 0;
        for (let c = 0; c < C; c++) {
          const l = logp[i * C + c] as number;
          if (l > (logp[i * C + best] as number)) best = c;
          if (l > -Infinity) h -= Math.exp(l) * l;
        }
        out.predicted[start + i] = best;
        out.probability[start + i] = Math.exp(logp[i * C + best] as number);
        out.entropy[start + i] = Math.max(h, 0) / lnBase;
      }
      const v = await volumeOf(clf, x, {
        modelOutput: options.modelOutput,
        target: options.target,
        normalization: options.normalization ?? 'width',
        base,
        memoryBudgetMB: options.memoryBudgetMB,
        signal: options.signal,
        ...(volume === 'plane' ? { mode: 'subspace' as const, subspace: plane.axes } : { mode: 'effective' as const, k: scan.k }),
      }, fn);
      out.logVolume.set(v.logVolume, start);
      out.rank.set(v.rank, start);
      if (out.curvature) {
        const c = await curvatureOf(clf, x, {
          modelOutput: options.modelOutput,
          target: options.target,
          normalization: options.normalization ?? 'width',
          memoryBudgetMB: options.memoryBudgetMB,
          signal: options.signal,
          subspace: plane.axes,
        }, fn);
        out.curvature.set(c.scalar.map((R) => R / 2), start);
      }
    } finally {
      x.dispose();
    }
    onProgress?.({ done: start + count, total: P });
  }
  return out;
}
