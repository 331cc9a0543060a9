/**
 * The experiments' READMEs against their committed summaries (scripts/experiments-doc.ts): the
 * generated tables, the numbers the prose quotes and the summaries' own arithmetic. No tensors: cpu
 * only. When a rerun changes a summary, `npm run experiments:doc` rewrites the tables and lists the
 * prose that no longer matches.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { experimentArgs, summaryJson } from '../examples/experiments/common.js';
import { check, EXPERIMENTS, inconsistencies, readmeFile, readSummary, regions, summaryFile, withRegions } from '../scripts/experiments-doc.js';
import type { Experiment, Reader } from '../scripts/experiments-doc.js';

const disk: Reader = (file) => (existsSync(file) ? readFileSync(file, 'utf8') : undefined);

/** The positions of the JSON text's number tokens (outside strings). */
function numberTokens(text: string): { at: number; token: string }[] {
  const found: { at: number; token: string }[] = [];
  const re = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) if (!m[0].startsWith('"')) found.push({ at: m.index, token: m[0] });
  return found;
}

/** The text with one number token changed as a hand edit would: the last digit up by one. */
function edit(text: string, { at, token }: { at: number; token: string }): string {
  const mantissa = token.replace(/[eE].*$/, '');
  const last = mantissa.length - 1;
  const digit = Number(mantissa[last]);
  const changed = `${mantissa.slice(0, last)}${(digit + 1) % 10}${token.slice(mantissa.length)}`;
  return text.slice(0, at) + changed + text.slice(at + token.length);
}

/** A reader that sees `replaced` in place of one file's text. */
const replacing = (file: string, replaced: string): Reader => (f) => (f === file ? replaced : disk(f));

describe("the experiments' READMEs and their committed summaries", () => {
  it('every experiment has a committed summary (a full run), and its README agrees with it: tables, quoted numbers, arithmetic', () => {
    const { problems, skipped } = check();
    expect(skipped).toEqual([]);
    expect(problems).toEqual([]);
  });

  it.each(EXPERIMENTS.map((e) => [e]))('%s: any number of the summary changed by hand fails the check', (name: Experiment) => {
    const file = summaryFile(name);
    const text = disk(file) as string;
    const tokens = numberTokens(text);
    expect(tokens.length).toBeGreaterThan(50);
    // 25 numbers spread over the file: table numbers, per-plane and per-path values, the set-up.
    const picks = Array.from({ length: 25 }, (_, k) => tokens[Math.floor((k * (tokens.length - 1)) / 24)]!);
    for (const pick of picks) {
      const { problems } = check(replacing(file, edit(text, pick)));
      expect(problems.length, `${name}/summary.json with ${pick.token} at ${pick.at} changed`).toBeGreaterThan(0);
    }
  });

  it.each(EXPERIMENTS.map((e) => [e]))('%s: a derived number that disagrees with its parts is found without the hash', (name: Experiment) => {
    const { summary } = readSummary(name)!;
    expect(inconsistencies(name, summary)).toEqual([]);
    const copy = structuredClone(summary) as any; // a summary with one number changed, whatever its shape
    if (name === 'magnification') copy.rows[0].medianRho += 0.01;
    if (name === 'leaves') copy.horizontal.fractionReachingTargetLabel += 0.01;
    if (name === 'stability') copy.spearman.pooled.rhoR += 0.01;
    expect(inconsistencies(name, copy as never).length).toBe(1);
  });

  it.each(EXPERIMENTS.map((e) => [e]))('%s: a README whose table or prose was edited by hand fails the check', (name: Experiment) => {
    const file = readmeFile(name);
    const text = disk(file) as string;
    // A table cell: the first "… %" of the first generated table.
    const table = text.indexOf('|', text.indexOf('<!-- summary:start', text.indexOf('<!-- summary:start') + 1));
    const cell = text.indexOf(' %', table);
    const tableEdit = text.slice(0, cell - 1) + String((Number(text[cell - 1]) + 1) % 10) + text.slice(cell);
    expect(check(replacing(file, tableEdit)).problems.join('\n')).toMatch(/generated region differs/);
    // The prose: the first number after the last generated region.
    const after = text.lastIndexOf('<!-- summary:end -->') + '<!-- summary:end -->'.length;
    const digit = after + text.slice(after).search(/\d/);
    const proseEdit = text.slice(0, digit) + String((Number(text[digit]) + 1) % 10) + text.slice(digit + 1);
    expect(check(replacing(file, proseEdit)).problems.join('\n')).toMatch(/README\.md lacks/);
  });

  it('regions are rewritten between their markers, and broken or missing markers are refused', () => {
    const text = 'a\n<!-- summary:start t -->\nold\n<!-- summary:end -->\nb\n';
    expect(withRegions(text, { t: 'new' }, 'x.md')).toBe('a\n<!-- summary:start t -->\nnew\n<!-- summary:end -->\nb\n');
    expect(withRegions(withRegions(text, { t: 'new' }, 'x.md'), { t: 'new' }, 'x.md')).toBe(withRegions(text, { t: 'new' }, 'x.md'));
    expect(() => withRegions(text, { t: 'new', u: 'more' }, 'x.md')).toThrow(/no <!-- summary:start u -->/);
    expect(() => withRegions(text, {}, 'x.md')).toThrow(/marks a region that the summary does not generate/);
    const { summary, text: json } = readSummary('magnification')!;
    expect(Object.keys(regions('magnification', summary, json))).toEqual(['provenance', 'table']);
  });

  it("a full run writes the committed summary next to its README, a --quick run only out/quick/", () => {
    const argv = process.argv;
    const main = new URL('../examples/experiments/magnification/main.ts', import.meta.url).href;
    try {
      process.argv = [argv[0] as string, 'main.ts'];
      expect(experimentArgs(main).summary).toBe(summaryFile('magnification'));
      process.argv = [argv[0] as string, 'main.ts', '--quick'];
      expect(experimentArgs(main).summary).toMatch(/examples\/experiments\/magnification\/out\/quick\/summary\.json$/);
    } finally {
      process.argv = argv;
    }
  });

  it('summaries are written small: 6 significant digits, each innermost row on one line', () => {
    const text = summaryJson({ quick: false, rows: [{ id: 'a/b', R: 1.23456789, n: 3, xs: [0.1234567, -2.5e-7, NaN] }], s: 'x]{' });
    expect(text).toBe('{\n  "quick": false,\n  "rows": [\n    {\n      "id": "a/b",\n      "R": 1.23457,\n      "n": 3,\n      "xs": [0.123457, -2.5e-7, null]\n    }\n  ],\n  "s": "x]{"\n}\n');
    expect(JSON.parse(summaryJson({ a: [{ b: 1 / 3 }] }))).toEqual({ a: [{ b: 0.333333 }] });
  });
});
