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

/** Base class of every error infogeo throws on purpose. */
export class InfogeoError extends Error {
  /** `'InfogeoError'`, so that `e.name` tells the kind after bundling. */
  override name = 'InfogeoError';
}

/** A tensor has the wrong rank, shape or dtype for the call (the message prints both shapes). */
export class ShapeError extends InfogeoError {
  /** `'ShapeError'`, so that `e.name` tells the kind after bundling. */
  override name = 'ShapeError';
}

/** An argument has a valid shape but an invalid value (non-finite inputs, a bad option...). */
export class ValueError extends InfogeoError {
  /** `'ValueError'`, so that `e.name` tells the kind after bundling. */
  override name = 'ValueError';
}

/** A layer name that the model does not have. `validNames` lists the ones it does have. */
export class LayerNotFoundError extends ValueError {
  /** `'LayerNotFoundError'`, so that `e.name` tells the kind after bundling. */
  override name = 'LayerNotFoundError';
  /** The layer names of the model, in order. */
  readonly validNames: readonly string[];
  constructor(fn: string, layerName: string, validNames: readonly string[]) {
    super(
      `${fn}: the model has no layer named '${layerName}'. Its layers are: ` +
        validNames.map((n) => `'${n}'`).join(', '),
    );
    this.validNames = validNames;
  }
}

/**
 * The model cannot be used as it is: several inputs or outputs, an output that is not `[B, C]`,
 * fewer than two classes, or a layer whose gradient kernel is missing on the active backend
 * (the message names the layer and the kernel, and says how to fix it).
 */
export class UnsupportedModelError extends InfogeoError {
  /** `'UnsupportedModelError'`, so that `e.name` tells the kind after bundling. */
  override name = 'UnsupportedModelError';
}

/** @internal Formats a shape the way tfjs error messages do. */
export function fmtShape(shape: readonly (number | null)[]): string {
  return `[${shape.map((d) => (d === null ? 'null' : String(d))).join(',')}]`;
}
