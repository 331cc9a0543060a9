/**
 * Writes the Jacobians guide's list of covered layers from the rule table itself (between the
 * `layers:start` and `layers:end` markers of docs/guide/jacobians.md), so that the list cannot drift
 * from the code; tests/graph.test.ts fails when the committed guide differs. Run by `npm run docs`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { coverageMarkdown } from '../src/jacobian/graph/registry.js';

export const GUIDE = new URL('../docs/guide/jacobians.md', import.meta.url);
const START = '<!-- layers:start -->';
const END = '<!-- layers:end -->';

/** The guide's text with the generated list between the markers. */
export function withCoverage(text: string): string {
  const a = text.indexOf(START);
  const b = text.indexOf(END);
  if (a < 0 || b < a) throw new Error(`docs/guide/jacobians.md: the markers ${START} and ${END} are missing`);
  return `${text.slice(0, a + START.length)}\n${coverageMarkdown()}\n${text.slice(b)}`;
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].split('/').pop() as string)) {
  const text = readFileSync(GUIDE, 'utf8');
  const next = withCoverage(text);
  if (next !== text) writeFileSync(GUIDE, next);
}
