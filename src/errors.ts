/**
 * Typed errors thrown by infogeo. Every error names the function that threw it, so a message
 * read out of context still says where it came from.
 *
 * Catch the base class {@link InfogeoError} to handle all of them; catch a subclass to handle one
 * kind. Aborts are not infogeo errors: a cancelled call rejects with the `AbortSignal`'s own
 * `reason` (a `DOMException` named `AbortError` by default), as `fetch` does.
 *
 * @module
 */

/**
 * The key of the brand every infogeo error carries: the list of its kinds (its class and the
 * infogeo classes above it, e.g. `['LayerNotFoundError', 'ValueError', 'InfogeoError']`). A
 * registry-wide symbol, so that every copy of the classes (each entry bundle has one) reads it.
 *
 * @internal
 */
const KINDS: unique symbol = Symbol.for('infogeo.error.kinds');

/** The `kind` that `ctor` declares itself (an infogeo class), or undefined (a user's subclass, not a class). */
function ownKind(ctor: unknown): string | undefined {
  if (typeof ctor !== 'function' || !Object.prototype.hasOwnProperty.call(ctor, 'kind')) return undefined;
  const kind = (ctor as { kind?: unknown }).kind;
  return typeof kind === 'string' ? kind : undefined;
}

/**
 * Base class of every error infogeo throws on purpose.
 *
 * `instanceof` works across copies of infogeo's classes: the entry points (`infogeo`,
 * `infogeo/node`, `infogeo/wasm`) are separate bundles, each with its own copy, and an error thrown
 * by one is still `instanceof` the classes exported by another (each error carries the list of
 * its kinds under a registry-wide symbol).
 */
export class InfogeoError extends Error {
  /** The kind of this class, `'InfogeoError'`: what `instanceof` checks in errors from another copy of the classes. */
  static readonly kind: string = 'InfogeoError';

  /**
   * `value instanceof InfogeoError` (or a subclass): true when `value` was made by this class or a
   * subclass (the ordinary prototype check), or by another copy of the same infogeo class (another
   * entry bundle, another install of infogeo), recognised by the kinds it carries.
   *
   * @param value - anything.
   * @returns whether `value` is an error of this kind.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true;
    // A user's subclass (no kind of its own) keeps the ordinary check only.
    const kind = ownKind(this);
    if (kind === undefined || typeof value !== 'object' || value === null) return false;
    const kinds = (value as { [KINDS]?: unknown })[KINDS];
    return Array.isArray(kinds) && kinds.includes(kind);
  }

  /** `'InfogeoError'`, so that `e.name` tells the kind after bundling. */
  override name = 'InfogeoError';

  /**
   * @param message - what went wrong, starting with the name of the function that threw.
   */
  constructor(message?: string) {
    super(message);
    const kinds: string[] = [];
    for (let c: unknown = new.target; typeof c === 'function'; c = Object.getPrototypeOf(c)) {
      const kind = ownKind(c);
      if (kind !== undefined) kinds.push(kind);
      if (c === InfogeoError) break;
    }
    Object.defineProperty(this, KINDS, { value: Object.freeze(kinds), enumerable: false, writable: false, configurable: false });
  }
}

/** A tensor has the wrong rank, shape or dtype for the call (the message prints both shapes). */
export class ShapeError extends InfogeoError {
  /** The kind of this class, `'ShapeError'`: what `instanceof` checks in errors from another copy of the classes. */
  static override readonly kind: string = 'ShapeError';
  /** `'ShapeError'`, so that `e.name` tells the kind after bundling. */
  override name = 'ShapeError';
}

/** An argument has a valid shape but an invalid value (non-finite inputs, a bad option...). */
export class ValueError extends InfogeoError {
  /** The kind of this class, `'ValueError'`: what `instanceof` checks in errors from another copy of the classes. */
  static override readonly kind: string = 'ValueError';
  /** `'ValueError'`, so that `e.name` tells the kind after bundling. */
  override name = 'ValueError';
}

/** A layer name that the model does not have. `validNames` lists the ones it does have. */
export class LayerNotFoundError extends ValueError {
  /** The kind of this class, `'LayerNotFoundError'`: what `instanceof` checks in errors from another copy of the classes. */
  static override readonly kind: string = 'LayerNotFoundError';
  /** `'LayerNotFoundError'`, so that `e.name` tells the kind after bundling. */
  override name = 'LayerNotFoundError';
  /** The layer names of the model, in order. */
  readonly validNames: readonly string[];
  /**
   * @param fn - the public function, for the message.
   * @param layerName - the name that matched no layer.
   * @param validNames - the model's layer names, in order.
   * @param option - the option or argument that named the layer (`target`, `layers`), for the
   *   message.
   */
  constructor(fn: string, layerName: string, validNames: readonly string[], option?: string) {
    super(
      `${fn}: the model has no layer named '${layerName}'${option === undefined ? '' : ` (in ${option})`}. Its layers are: ` +
        validNames.map((n) => `'${n}'`).join(', '),
    );
    this.validNames = validNames;
  }
}

/**
 * The model cannot be used as it is: several inputs or outputs, an output that is not `[B, C]`,
 * fewer than two classes, a layer whose gradient kernel is missing on the active backend
 * (the message names the layer and the kernel, and says how to fix it), or a custom layer whose
 * `call()` leaves the tensor graph, so that tfjs finds no gradient path through it (named too).
 */
export class UnsupportedModelError extends InfogeoError {
  /** The kind of this class, `'UnsupportedModelError'`: what `instanceof` checks in errors from another copy of the classes. */
  static override readonly kind: string = 'UnsupportedModelError';
  /** `'UnsupportedModelError'`, so that `e.name` tells the kind after bundling. */
  override name = 'UnsupportedModelError';
}

/**
 * A data set is missing, incomplete or broken on disk, or could not be downloaded (every mirror
 * failed, or a file's checksum did not match). Thrown by `infogeo/data`; the message names the
 * file and the command that fetches it (`npx infogeo-data NAME`).
 */
export class DataError extends InfogeoError {
  /** The kind of this class, `'DataError'`: what `instanceof` checks in errors from another copy of the classes. */
  static override readonly kind: string = 'DataError';
  /** `'DataError'`, so that `e.name` tells the kind after bundling. */
  override name = 'DataError';
}

/** @internal Formats a shape the way tfjs error messages do. */
export function fmtShape(shape: readonly (number | null)[]): string {
  return `[${shape.map((d) => (d === null ? 'null' : String(d))).join(',')}]`;
}
