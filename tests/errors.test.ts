/**
 * infogeo's typed errors: `instanceof` by kind, also for errors made by another copy of the classes
 * (each entry bundle, `infogeo`, `infogeo/node`, `infogeo/wasm`, carries its own copy of them).
 */
import { describe, expect, it, vi } from 'vitest';
import { InfogeoError, LayerNotFoundError, ShapeError, UnsupportedModelError, ValueError } from '../src/index.js';

const KINDS = Symbol.for('infogeo.error.kinds');

/** An error as another copy of the classes makes it: other prototypes, the same brand. */
function foreign(name: string, kinds: string[]): Error {
  const e = new Error(`foreign ${name}`);
  e.name = name;
  Object.defineProperty(e, KINDS, { value: kinds });
  return e;
}

describe('typed errors', () => {
  it('keep their names and messages, and the ordinary instanceof', () => {
    const l = new LayerNotFoundError('fn', 'x', ['a', 'b']);
    expect(l.name).toBe('LayerNotFoundError');
    expect(l.message).toBe("fn: the model has no layer named 'x'. Its layers are: 'a', 'b'");
    expect(l.validNames).toEqual(['a', 'b']);
    expect(l).toBeInstanceOf(LayerNotFoundError);
    expect(l).toBeInstanceOf(ValueError);
    expect(l).toBeInstanceOf(InfogeoError);
    expect(l).toBeInstanceOf(Error);
    expect(l).not.toBeInstanceOf(ShapeError);
    expect(l).not.toBeInstanceOf(UnsupportedModelError);
    const s = new ShapeError('m');
    expect([s.name, s.message]).toEqual(['ShapeError', 'm']);
    expect(s instanceof InfogeoError && !(s instanceof ValueError)).toBe(true);
    expect(new InfogeoError('m')).not.toBeInstanceOf(ValueError);
    expect(new UnsupportedModelError('m').name).toBe('UnsupportedModelError');
    expect(new ValueError('m').stack).toContain('ValueError');
  });

  it('record their kinds: the class and its infogeo ancestors, not enumerable', () => {
    const l = new LayerNotFoundError('fn', 'x', []);
    expect((l as unknown as Record<symbol, unknown>)[KINDS]).toEqual(['LayerNotFoundError', 'ValueError', 'InfogeoError']);
    expect((new ShapeError('m') as unknown as Record<symbol, unknown>)[KINDS]).toEqual(['ShapeError', 'InfogeoError']);
    expect(Object.keys(l)).not.toContain(KINDS);
    expect(Object.getOwnPropertyDescriptor(l, KINDS)?.enumerable).toBe(false);
    // The kinds are explicit strings, not constructor names (which bundlers may minify).
    expect([InfogeoError.kind, ValueError.kind, LayerNotFoundError.kind, ShapeError.kind, UnsupportedModelError.kind]).toEqual([
      'InfogeoError',
      'ValueError',
      'LayerNotFoundError',
      'ShapeError',
      'UnsupportedModelError',
    ]);
  });

  it('recognise an error of another copy of the classes by its brand', () => {
    const v = foreign('ValueError', ['ValueError', 'InfogeoError']);
    expect(v instanceof ValueError).toBe(true);
    expect(v instanceof InfogeoError).toBe(true);
    expect(v instanceof ShapeError).toBe(false);
    expect(v instanceof LayerNotFoundError).toBe(false);
    const l = foreign('LayerNotFoundError', ['LayerNotFoundError', 'ValueError', 'InfogeoError']);
    expect(l instanceof LayerNotFoundError && l instanceof ValueError && l instanceof InfogeoError).toBe(true);
    // No brand, or a malformed one: only the ordinary prototype check.
    const plain = new Error('x');
    plain.name = 'ValueError';
    expect(plain instanceof ValueError).toBe(false);
    expect(Object.assign(Object.create(null) as object, { [KINDS]: 'ValueError' }) instanceof ValueError).toBe(false);
    expect((null as unknown) instanceof InfogeoError).toBe(false);
    expect(('ValueError' as unknown) instanceof InfogeoError).toBe(false);
  });

  it('recognise the errors of a second, separately loaded copy of the module', async () => {
    vi.resetModules();
    const other = await import('../src/errors.js');
    expect(other.ValueError).not.toBe(ValueError);
    const e = new other.LayerNotFoundError('fn', 'x', ['a']);
    expect(Object.getPrototypeOf(e)).not.toBe(LayerNotFoundError.prototype);
    expect(e instanceof LayerNotFoundError && e instanceof ValueError && e instanceof InfogeoError).toBe(true);
    expect(e instanceof ShapeError).toBe(false);
    expect(new ValueError('m') instanceof other.InfogeoError).toBe(true);
    expect(new ValueError('m') instanceof other.LayerNotFoundError).toBe(false);
    expect(() => {
      throw new other.ShapeError('m');
    }).toThrow(ShapeError);
  });

  it("a user's subclass keeps the ordinary check for itself and inherits the brand of its parents", () => {
    class MyError extends ValueError {}
    const mine = new MyError('m');
    expect(mine instanceof MyError && mine instanceof ValueError && mine instanceof InfogeoError).toBe(true);
    expect((mine as unknown as Record<symbol, unknown>)[KINDS]).toEqual(['ValueError', 'InfogeoError']);
    expect(new ValueError('m') instanceof MyError).toBe(false);
    expect(foreign('ValueError', ['ValueError', 'InfogeoError']) instanceof MyError).toBe(false);
  });
});
