/**
 * A `[B, R, d]` result written in place, block by block: the weight Jacobian and the Fisher's
 * factor are hundreds of MB for a model with a large Dense layer, and joining their blocks with
 * `tf.concat` holds every block and the joined copy at once (twice the result). On `wasm` (the
 * result allocated in the heap, each block copied from a view of the heap) and `cpu` (the result's
 * own array) each block is copied once into its place and can be released at once; on the GPU
 * backends, whose tensors cannot be written in part, the blocks are joined as before.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';

/** What writing into and reading from the wasm heap needs of the backend (tfjs-backend-wasm's own methods). @internal */
export interface HeapBackend {
  makeOutput(shape: number[], dtype: string): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array;
}

/** A result being written in place. Dispose it if the work fails; `finish` hands the tensor over. */
export interface RowsAssembler {
  /**
   * Copies `block` (`[..., size]`, float32, already computed; its rows in order) to rows `row …` of
   * the result seen as `[B·R, d]`, columns `column … column+size−1`. The block stays the caller's.
   */
  write(block: tf.Tensor, row: number, column: number): Promise<void>;
  /** The result, owned by the caller from here on. */
  finish(): tf.Tensor3D;
  /** Releases the result (on failure). */
  dispose(): void;
}

/**
 * Allocates a `[B, R, d]` float32 result to be written in place on the active backend, or returns
 * `undefined` where the backend cannot (the GPU backends: join the blocks with `tf.concat`).
 */
export async function rowsAssembler(shape: [number, number, number]): Promise<RowsAssembler | undefined> {
  const [B, R, d] = shape;
  const name = tf.getBackend();
  let out: tf.Tensor3D;
  let target: () => Float32Array;
  // Where a block's values are read: a view of the heap (taken just before the copy), or its array.
  let view: ((block: tf.Tensor) => Float32Array) | undefined;
  if (name === 'wasm') {
    const heap = tf.backend() as unknown as HeapBackend;
    out = tf.engine().makeTensorFromTensorInfo(heap.makeOutput(shape, 'float32')) as tf.Tensor3D;
    // Views are taken at each write, with no allocation in between: growing the heap detaches them.
    target = () => heap.typedArrayFromHeap(out) as Float32Array;
    view = (block) => heap.typedArrayFromHeap(block) as Float32Array;
  } else if (name === 'cpu') {
    // The cpu backend hands out its own array of a tensor (not a copy); checked, not assumed.
    out = tf.zeros(shape);
    const own = (await out.data()) as Float32Array;
    if ((await out.data()) !== own) {
      out.dispose();
      return undefined;
    }
    target = () => own;
  } else {
    return undefined;
  }
  let released = false;
  return {
    async write(block, row, column) {
      const size = block.shape[block.rank - 1] as number;
      const rows = block.size / size;
      if (column + size > d || row + rows > B * R) throw new Error(`rowsAssembler: block ${block.shape} at (${row}, ${column}) does not fit ${shape}`);
      // Both views taken together, after the last await: nothing can grow the heap in between.
      const data = view === undefined ? ((await block.data()) as Float32Array) : undefined;
      const from = data ?? (view as (block: tf.Tensor) => Float32Array)(block);
      const to = target();
      for (let i = 0; i < rows; i++) to.set(from.subarray(i * size, (i + 1) * size), (row + i) * d + column);
    },
    finish() {
      released = true;
      return out;
    },
    dispose() {
      if (!released) out.dispose();
      released = true;
    },
  };
}
