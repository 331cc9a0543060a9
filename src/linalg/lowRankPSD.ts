/**
 * Batched low-rank positive semi-definite matrices M_b = A_bᵀ A_b, kept as their factors, and the
 * projectors onto their row spaces.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { allFinite, allFiniteSync, checkFloatTensor, checkNumber, checkOptions, describe } from '../checks.js';
import { fmtShape, ShapeError, ValueError } from '../errors.js';
import { DEFAULT_RTOL, eigFromBasis, orthonormalRows } from './rows.js';
import type { RowBasis64 } from './rows.js';
import type { OptionNames } from '../checks.js';

/** Options of the rank-revealing methods. */
export interface RankOptions {
  /**
   * Relative rank cut: a direction counts if it carries more than `rtol` times the largest row norm
   * of the factor (so an eigenvalue counts above about rtol² times the largest). The default suits
   * factors computed in float32.
   * @defaultValue 1e-5
   */
  rtol?: number;
}

/** The option names of {@link RankOptions}. @internal */
export const RANK_OPTIONS: OptionNames<RankOptions> = { rtol: true };

function checkRtol(rtol: unknown, fn: string): number {
  return checkNumber(rtol, fn, 'rtol', { min: 0, below: 1 }, DEFAULT_RTOL);
}

/** The rank options of a method (an object or nothing). */
function rtolOf(options: RankOptions | undefined, fn: string): number {
  return checkRtol(checkOptions(options, fn, RANK_OPTIONS).rtol, fn);
}

/** `v` as columns `[B, n, 1]`, checked (a float32, finite batch of B vectors of n numbers). Call inside a tidy. */
function asColumns(v: tf.Tensor, B: number, n: number, fn: string): tf.Tensor3D {
  checkFloatTensor(v, fn, 'v');
  if (v.rank < 2 || v.shape[0] !== B || v.size !== B * n) {
    throw new ShapeError(
      `${fn}: argument 'v' must be a batch of ${B} vectors of ${n} numbers ([${B}, ${n}] or [${B}, ...inputShape]), ` +
        `got ${fmtShape(v.shape)}.`,
    );
  }
  if (!allFiniteSync(v)) throw new ValueError(`${fn}: argument 'v' contains NaN or Infinity.`);
  return tf.reshape(v, [B, n, 1]);
}

/** What a method of a disposed factor or projector says: whose method, what happened, what to do. */
function disposedMessage(method: string, what: string): string {
  return `${method}: this ${what} has been disposed (dispose() was called on it, or on the result that owns it); compute it again, and dispose it after its last use.`;
}

/**
 * Orthonormal bases of one subspace of ℝⁿ per sample, with the orthogonal projections onto each
 * subspace and onto its orthogonal complement. Owns its `basis` tensor: call {@link dispose}.
 */
export class RowSpaceProjector {
  /**
   * `[B, k, n]`, float32: row i of sample b is the i-th orthonormal basis vector of subspace b for
   * i < rank[b], and zero after (k = the largest rank).
   */
  readonly basis: tf.Tensor3D;
  /** The dimension of each subspace. */
  readonly rank: readonly number[];
  /** The float64 bases the float32 `basis` was rounded from. */
  readonly basis64: readonly RowBasis64[];
  /** n, the dimension of the ambient space. */
  readonly dim: number;

  /** @internal Use {@link distributionProjector} or {@link LowRankPSD.basis}. */
  constructor(bases: RowBasis64[], dim: number) {
    this.basis64 = bases;
    this.rank = bases.map((b) => b.rank);
    this.dim = dim;
    const k = Math.max(1, ...this.rank);
    const data = new Float32Array(bases.length * k * dim);
    bases.forEach((b, i) => data.set(b.q, i * k * dim));
    this.basis = tf.tensor3d(data, [bases.length, k, dim]);
  }

  /** P v: the component of each v[b] inside subspace b. Same shape as `v`; the caller owns it. */
  project(v: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.projectAs(v, 'project'));
  }

  /** v − P v: the component of each v[b] orthogonal to subspace b. Same shape as `v`. */
  projectKernel(v: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.sub(v, this.projectAs(v, 'projectKernel')));
  }

  /**
   * P v (or v − P v with `kernel`) of a `v` infogeo made itself, of the right shape and finite: no
   * checks, so no synchronous read (a path's steps). @internal
   */
  projectTrusted(v: tf.Tensor, kernel = false): tf.Tensor {
    return tf.tidy(() => {
      const p = this.projectColumns(v, tf.reshape(v, [this.rank.length, this.dim, 1]));
      return kernel ? tf.sub(v, p) : p;
    });
  }

  /** P v, checked with the public method's name. Call inside a tidy. */
  private projectAs(v: tf.Tensor, fn: string): tf.Tensor {
    this.assertLive(fn);
    return this.projectColumns(v, asColumns(v, this.rank.length, this.dim, fn));
  }

  /** P v from v as columns `[B, n, 1]`, in the shape of `v`. */
  private projectColumns(v: tf.Tensor, col: tf.Tensor): tf.Tensor {
    const coeff = tf.matMul(this.basis, col); // [B, k, 1]
    return tf.reshape(tf.matMul(this.basis, coeff, true), v.shape);
  }

  /** Frees the basis tensor. */
  dispose(): void {
    this.basis.dispose();
  }

  private assertLive(fn: string): void {
    if (this.basis.isDisposed) throw new ValueError(disposedMessage(`RowSpaceProjector.${fn}`, 'projector'));
  }
}

/**
 * A batch of positive semi-definite matrices M_b = A_bᵀ A_b ∈ ℝ^{n×n}, kept as their factors
 * A_b ∈ ℝ^{r×n} (r ≪ n): a local data matrix G(x) (r = C), a local Fisher F(x) (n = the number of
 * weights), or a dataset Fisher (one sample, r = N·C).
 *
 * Products stay on the tfjs backend in float32; decompositions (rank, basis, eigenpairs) and
 * scalars (trace, quadratic forms) run in float64 on the CPU. No method forms an n × n matrix
 * except {@link toDense}, which refuses large n unless forced. Owns its factor: call
 * {@link dispose}.
 */
export class LowRankPSD {
  /** `[B, r, n]`, float32. */
  readonly factor: tf.Tensor3D;
  /** Largest n for which {@link toDense} works without `force`. */
  static readonly MAX_DENSE_DIM = 4096;
  private cache = new Map<number, Promise<RowBasis64[]>>();

  /** Takes ownership of `factor` (`[B, r, n]`, float32). */
  constructor(factor: tf.Tensor3D) {
    checkFloatTensor(factor, 'LowRankPSD', 'factor');
    if (factor.rank !== 3 || factor.shape.some((d) => d < 1)) {
      throw new ShapeError(`LowRankPSD: the factor must be a float32 [B, r, n] tensor with B, r, n >= 1, got ${fmtShape(factor.shape)}.`);
    }
    if (!trusted && !allFiniteSync(factor)) throw new ValueError('LowRankPSD: argument \'factor\' contains NaN or Infinity.');
    this.factor = factor;
  }

  /** B, the number of matrices. */
  get batchSize(): number {
    return this.factor.shape[0];
  }
  /** r, the number of factor rows (an upper bound on the rank). */
  get rows(): number {
    return this.factor.shape[1];
  }
  /** n, the size of each matrix. */
  get dim(): number {
    return this.factor.shape[2];
  }

  /** tr M_b = ‖A_b‖²_F for each b, summed in float64. */
  async trace(): Promise<Float64Array> {
    this.assertLive('trace');
    const a = await this.factor.data();
    const per = this.rows * this.dim;
    const out = new Float64Array(this.batchSize);
    for (let b = 0; b < this.batchSize; b++) {
      let s = 0;
      for (let i = b * per; i < (b + 1) * per; i++) s += (a[i] as number) * (a[i] as number);
      out[b] = s;
    }
    return out;
  }

  /** M_b v_b = A_bᵀ (A_b v_b), float32 on the backend. `v`: `[B, n]` or `[B, ...]`; same shape out. */
  matvec(v: tf.Tensor): tf.Tensor {
    this.assertLive('matvec');
    return tf.tidy(() => {
      const col = asColumns(v, this.batchSize, this.dim, 'matvec');
      return tf.reshape(tf.matMul(this.factor, tf.matMul(this.factor, col), true), v.shape);
    });
  }

  /** v_bᵀ M_b v_b = ‖A_b v_b‖², per sample (A v in float32, the sum of squares in float64). */
  async quadForm(v: tf.Tensor): Promise<Float64Array> {
    this.assertLive('quadForm');
    const av = tf.tidy(() => tf.matMul(this.factor, asColumns(v, this.batchSize, this.dim, 'quadForm')));
    const d = await av.data();
    av.dispose();
    const out = new Float64Array(this.batchSize);
    for (let b = 0; b < this.batchSize; b++) out[b] = dotSelf(d, b * this.rows, this.rows);
    return out;
  }

  /** The rank of each M_b (the dimension of the row space of A_b, with the relative cut `rtol`). */
  async rank(options?: RankOptions): Promise<number[]> {
    return (await this.bases(options, 'rank')).map((b) => b.rank);
  }

  /** Orthonormal bases of range(M_b) = rowspace(A_b), with projections onto it and its complement. */
  async basis(options?: RankOptions): Promise<RowSpaceProjector> {
    return new RowSpaceProjector(await this.bases(options, 'basis'), this.dim);
  }

  /**
   * The nonzero eigenpairs of each M_b (those above the rank cut), eigenvalues in descending order.
   * `vectors` is `[B, k, n]` (k = the largest rank; rows past a sample's rank are zero), owned by
   * the caller. Cost: about 2·r²·n flops per sample in float64 (no n × n matrix).
   */
  async eig(options?: RankOptions): Promise<{
    /** Per matrix, the nonzero eigenvalues in descending order (float64). */
    values: Float64Array[];
    /** `[B, k, n]` eigenvectors as rows, owned by the caller. */
    vectors: tf.Tensor3D;
  }> {
    const bases = await this.bases(options, 'eig');
    this.assertLive('eig'); // disposed while the bases were computed
    const a = await this.factor.data();
    const per = this.rows * this.dim;
    const k = Math.max(1, ...bases.map((b) => b.rank));
    const vec = new Float32Array(this.batchSize * k * this.dim);
    const values = bases.map((basis, b) => {
      const e = eigFromBasis(a.subarray(b * per, (b + 1) * per), this.rows, basis);
      vec.set(e.vectors, b * k * this.dim);
      return e.values;
    });
    return { values, vectors: tf.tensor3d(vec, [this.batchSize, k, this.dim]) };
  }

  /**
   * The dense matrices `[B, n, n]` (caller owns). Refuses n > {@link LowRankPSD.MAX_DENSE_DIM}
   * (4096: 64 MiB per sample) unless `force` is set.
   */
  toDense(options?: { force?: boolean }): tf.Tensor3D {
    this.assertLive('toDense');
    const force = checkOptions(options, 'toDense', { force: true }).force ?? false;
    if (typeof force !== 'boolean') throw new ValueError(`toDense: force must be a boolean, got ${describe(force)}.`);
    if (this.dim > LowRankPSD.MAX_DENSE_DIM && !force) {
      throw new ValueError(
        `toDense: n = ${this.dim} would need ${this.batchSize} × ${this.dim}² floats ` +
          `(${((4 * this.batchSize * this.dim * this.dim) / 2 ** 30).toFixed(1)} GiB); pass { force: true } if you mean it.`,
      );
    }
    return tf.matMul(this.factor, this.factor, true, false);
  }

  /** Frees the factor. */
  dispose(): void {
    this.factor.dispose();
    this.cache.clear();
  }

  /** Whether {@link dispose} has been called. */
  get isDisposed(): boolean {
    return this.factor.isDisposed;
  }

  private bases(options: RankOptions | undefined, fn: string): Promise<RowBasis64[]> {
    this.assertLive(fn);
    const rtol = rtolOf(options, fn);
    let p = this.cache.get(rtol);
    if (!p) {
      p = this.factor.data().then((a) => {
        const per = this.rows * this.dim;
        return Array.from({ length: this.batchSize }, (_, b) => orthonormalRows(a.subarray(b * per, (b + 1) * per), this.rows, this.dim, rtol));
      });
      this.cache.set(rtol, p);
    }
    return p;
  }

  private assertLive(fn: string): void {
    if (this.factor.isDisposed) throw new ValueError(disposedMessage(`LowRankPSD.${fn}`, 'factor'));
  }
}

/**
 * A {@link LowRankPSD} of a factor infogeo computed for `fn`, which it takes over: a factor that is
 * not finite (a model whose outputs overflow) is released and reported in `fn`'s name. @internal
 */
export async function ownedPSD(factor: tf.Tensor3D, fn: string): Promise<LowRankPSD> {
  if (!(await allFinite(factor))) {
    factor.dispose();
    throw new ValueError(`${fn}: the result contains NaN or Infinity (does the model overflow at these inputs?).`);
  }
  return trustedPSD(factor); // checked just now: the constructor need not read the factor again
}

/**
 * A LowRankPSD of a factor whose entries are known to be finite (the pool's join of factors its
 * threads checked), without reading it again. @internal
 */
export function trustedPSD(factor: tf.Tensor3D): LowRankPSD {
  trusted = true;
  try {
    return new LowRankPSD(factor);
  } finally {
    trusted = false;
  }
}

/** Set by {@link ownedPSD} and {@link trustedPSD} around the constructor of a factor known to be finite. */
let trusted = false;

function dotSelf(a: ArrayLike<number>, off: number, n: number): number {
  let s = 0;
  for (let i = off; i < off + n; i++) s += (a[i] as number) * (a[i] as number);
  return s;
}

export { checkRtol };
