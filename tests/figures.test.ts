/** The examples' figures: every SVG gets a PNG twin of the same picture and size. No tensors: cpu only. */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { afterEach, describe, expect, it } from 'vitest';
import { imageStrip, lineChart, pngDataUri } from '../examples/svg.js';

let dir = '';
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the examples write PNG next to SVG', () => {
  it('a line chart and an image strip: the PNG has the size of the SVG, and ink where the SVG draws', () => {
    dir = mkdtempSync(join(tmpdir(), 'infogeo-fig-'));
    lineChart(join(dir, 'line.svg'), 'title', [0, 1, 2], [1, 3, 2], 'x', 'y');
    const black = pngDataUri(new Array(784).fill(0), 28, 28);
    imageStrip(join(dir, 'strip.svg'), 'title', [{ uri: black, caption: ['a'] }, { uri: black, caption: ['b'] }]);
    for (const name of ['line', 'strip']) {
      expect(existsSync(join(dir, `${name}.svg`))).toBe(true);
      const svg = readFileSync(join(dir, `${name}.svg`), 'utf8');
      const [w, h] = [Number(/width="(\d+)"/.exec(svg)![1]), Number(/height="(\d+)"/.exec(svg)![1])];
      const png = PNG.sync.read(readFileSync(join(dir, `${name}.png`)));
      expect([png.width, png.height]).toEqual([w, h]);
      let dark = 0;
      for (let i = 0; i < png.data.length; i += 4) if (png.data[i]! < 64) dark++;
      expect(dark).toBeGreaterThan(100); // the embedded black frames, the line and the text
    }
  });
});
