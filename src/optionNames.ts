/**
 * Option names: the records that list every option of a public function, checked against its
 * options type by the compiler, and the check that refuses a key they do not list. Free of tfjs,
 * so that `infogeo/data` can use it.
 *
 * @module
 */
import { ValueError } from './errors.js';

/**
 * Every option name of an options type, each mapped to `true`. Written as a record typed
 * `OptionNames<SomeOptions>`, the compiler checks it against the interface both ways: a name the
 * interface gains and the record lacks, or a name the interface does not have, is a compile error.
 * So the list {@link checkOptions} refuses unknown names against cannot fall behind the types.
 */
export type OptionNames<T> = { readonly [K in keyof Required<T>]: true };

/** 0.1.0's option names that 0.2 renamed: the new name, and how an 0.1 call reads in 0.2. */
const RENAMED_IN_0_2 = new Map<string, string>([
  ['layer', "target in 0.2: 0.1's { layer: 'h1' } is { target: { layer: 'h1' } }"],
  ['output', "target in 0.2: 0.1's { output: 'logits' } is { target: 'logits' }"],
  ['method', "strategy in 0.2"],
]);

/** Edit distance, letters compared case-insensitively (a wrong case costs ¼ of an edit). */
function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const ca = a[i - 1] as string;
      const cb = b[j - 1] as string;
      const cost = ca === cb ? 0 : ca.toLowerCase() === cb.toLowerCase() ? 0.25 : 1;
      const next = Math.min((row[j] as number) + 1, (row[j - 1] as number) + 1, diagonal + cost);
      diagonal = row[j] as number;
      row[j] = next;
    }
  }
  return row[b.length] as number;
}

/** The valid name closest to `name` (ties: the first in `valid`). */
export function nearestName(name: string, valid: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const v of valid) {
    const d = editDistance(name, v);
    if (d < bestDistance) [best, bestDistance] = [v, d];
  }
  return best;
}

/**
 * Refuses a key of `options` that `names` does not list: a misspelt or renamed option would
 * otherwise be ignored silently, and the call would answer a different question (0.1's
 * `pullbackMetric(m, x, { layer: 'h1' })` measured the default layer).
 * @param what - how messages name the object: `'option'` for a function's options, or the
 *   option that holds a nested object (`'rows'`, `'target'`, `'cutoff'`).
 * @throws {@link ValueError} naming the function, the key, what 0.2 renamed it to or the nearest
 *   valid name, and every valid name.
 */
export function checkKeys(options: object, fn: string, names: Readonly<Record<string, true>>, what = 'option'): void {
  const valid = Object.keys(names);
  for (const key of Object.keys(options)) {
    if (Object.prototype.hasOwnProperty.call(names, key)) continue;
    const where = what === 'option' ? 'option' : `key of ${what}`;
    const list = valid.map((v) => `'${v}'`).join(', ');
    const renamed = what === 'option' ? RENAMED_IN_0_2.get(key) : undefined;
    const hint = renamed !== undefined ? `renamed to ${renamed}` : valid.length > 0 ? `did you mean '${nearestName(key, valid)}'?` : 'it takes none';
    throw new ValueError(`${fn}: unknown ${where} '${key}' (${hint}). Valid: ${list || 'none'}.`);
  }
}

/**
 * The options of a function without tensors (`infogeo/data`): an object, or undefined, with no key
 * that `names` does not list.
 * @throws {@link ValueError} otherwise.
 */
export function checkDataOptions<T extends object>(options: T | undefined | null, fn: string, names: OptionNames<T>): void {
  if (options === undefined) return;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) throw new ValueError(`${fn}: options must be an object, got ${options === null ? 'null' : typeof options}.`);
  checkKeys(options, fn, names);
}
