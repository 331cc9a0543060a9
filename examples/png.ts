/** Small helpers to draw image grids into PNG files (pngjs). */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { PNG } from 'pngjs';

export class Canvas {
  readonly png: PNG;
  constructor(
    readonly width: number,
    readonly height: number,
    background: [number, number, number] = [255, 255, 255],
  ) {
    this.png = new PNG({ width, height });
    for (let i = 0; i < width * height; i++) this.png.data.set([...background, 255], 4 * i);
  }

  set(x: number, y: number, [r, g, b]: [number, number, number]): void {
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    this.png.data.set([r, g, b, 255], 4 * (y * this.width + x));
  }

  /** Draws an h×w map of values at (x0, y0), each value a `scale`×`scale` block coloured by `color`. */
  image(values: ArrayLike<number>, h: number, w: number, x0: number, y0: number, scale: number, color: (v: number) => [number, number, number]): void {
    for (let i = 0; i < h; i++)
      for (let j = 0; j < w; j++) {
        const c = color(values[i * w + j] as number);
        for (let a = 0; a < scale; a++) for (let b = 0; b < scale; b++) this.set(x0 + j * scale + b, y0 + i * scale + a, c);
      }
  }

  /** A rectangle outline `t` pixels thick. */
  frame(x0: number, y0: number, w: number, h: number, color: [number, number, number], t = 2): void {
    for (let k = 0; k < t; k++)
      for (let x = x0 - k; x < x0 + w + k; x++) {
        this.set(x, y0 - 1 - k, color);
        this.set(x, y0 + h + k, color);
      }
    for (let k = 0; k < t; k++)
      for (let y = y0 - k - 1; y <= y0 + h + k; y++) {
        this.set(x0 - 1 - k, y, color);
        this.set(x0 + w + k, y, color);
      }
  }

  save(path: string): void {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, PNG.sync.write(this.png));
  }
}

/** Greyscale for values in [0, 1]. */
export const grey = (v: number): [number, number, number] => {
  const g = Math.round(255 * Math.min(1, Math.max(0, v)));
  return [g, g, g];
};

/** Diverging blue–white–red for values in [−1, 1]. */
export const diverging = (v: number): [number, number, number] => {
  const t = Math.min(1, Math.max(-1, v));
  return t >= 0
    ? [255, Math.round(255 * (1 - t)), Math.round(255 * (1 - t))]
    : [Math.round(255 * (1 + t)), Math.round(255 * (1 + t)), 255];
};
