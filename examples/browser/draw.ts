/**
 * Drawing for the explorer: model inputs as images, signed vectors (eigenvectors of G) on a
 * blue–white–red map, and plane scans as heat maps. Every function draws plain arrays (read from
 * tensors by the caller) into a canvas; none touches tfjs.
 */

/** An input laid out as the model sees it: height × width × channels, row-major (HWC). */
export interface Layout {
  height: number;
  width: number;
  channels: number;
}

/** The normalisation x = (pixel − mean)/std, one value or one per channel. */
export interface Normalisation {
  mean: number[];
  std: number[];
}

const clamp01 = (v: number) => Math.min(1, Math.max(0, v));

function sized(canvas: HTMLCanvasElement, width: number, height: number): CanvasRenderingContext2D {
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
  return canvas.getContext('2d')!;
}

/**
 * Draws a normalised model input back as an image: pixel = x·std + mean, clipped to [0, 1]; one
 * channel as grey, three as RGB (other channel counts: the first channel as grey).
 */
export function drawInput(canvas: HTMLCanvasElement, x: ArrayLike<number>, layout: Layout, norm: Normalisation): void {
  const { height, width, channels } = layout;
  const ctx = sized(canvas, width, height);
  const img = ctx.createImageData(width, height);
  const px = (i: number, c: number) => {
    const k = c % norm.mean.length;
    return Math.round(255 * clamp01((x[i * channels + c] as number) * (norm.std[k] as number) + (norm.mean[k] as number)));
  };
  for (let i = 0; i < width * height; i++) {
    const rgb = channels === 3 ? [px(i, 0), px(i, 1), px(i, 2)] : [px(i, 0), px(i, 0), px(i, 0)];
    img.data.set([...rgb, 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
}

/**
 * Draws a signed vector (an eigenvector of G, a direction in input space) as an image: blue for
 * negative, white for 0, red for positive, scaled by its largest |value|. With several channels,
 * each pixel shows the sum over its channels.
 */
export function drawSigned(canvas: HTMLCanvasElement, v: ArrayLike<number>, layout: Layout): void {
  const { height, width, channels } = layout;
  const ctx = sized(canvas, width, height);
  const img = ctx.createImageData(width, height);
  const summed = new Float64Array(width * height);
  for (let i = 0; i < summed.length; i++) for (let c = 0; c < channels; c++) summed[i] = (summed[i] as number) + (v[i * channels + c] as number);
  let max = 0;
  for (const s of summed) max = Math.max(max, Math.abs(s));
  for (let i = 0; i < summed.length; i++) img.data.set([...signedColour(max > 0 ? (summed[i] as number) / max : 0), 255], 4 * i);
  ctx.putImageData(img, 0, 0);
}

/** t ∈ [−1, 1] on a blue–white–red map. */
export function signedColour(t: number): [number, number, number] {
  const a = clamp01(Math.abs(t));
  const fade = Math.round(255 * (1 - a));
  return t >= 0 ? [255, fade, fade] : [fade, fade, 255];
}

/** Control points of the viridis colour map (matplotlib's), at t = 0, 0.25, 0.5, 0.75, 1. */
const VIRIDIS: [number, number, number][] = [
  [68, 1, 84],
  [59, 82, 139],
  [33, 145, 140],
  [94, 201, 98],
  [253, 231, 37],
];

/** t ∈ [0, 1] on viridis (linear between its control points). */
export function viridis(t: number): [number, number, number] {
  const s = clamp01(t) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(s), VIRIDIS.length - 2);
  const f = s - i;
  const [a, b] = [VIRIDIS[i]!, VIRIDIS[i + 1]!];
  return [0, 1, 2].map((k) => Math.round(a[k]! + f * (b[k]! - a[k]!))) as [number, number, number];
}

/** matplotlib's tab10, one colour per class (classes ≥ 10 reuse them). */
export const CLASS_COLOURS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

/** A plane scan's grid (row-major, b slowest) and where its three anchors lie, in plane coordinates. */
export interface Grid {
  steps: number;
  range: [number, number];
  anchors: readonly (readonly [number, number])[];
}

/** The side of the heat maps' canvases, in pixels (their CSS size). */
const MAP_SIZE = 180;

/**
 * Draws a steps × steps grid as a heat map, b increasing upwards (as in the papers' plane figures),
 * with the three anchor images marked 1, 2, 3. `colour` maps a grid index to a CSS colour.
 */
export function drawHeatMap(canvas: HTMLCanvasElement, grid: Grid, colour: (index: number) => string): void {
  const { steps, range, anchors } = grid;
  const ctx = sized(canvas, MAP_SIZE, MAP_SIZE);
  const cell = MAP_SIZE / steps;
  const edge = (k: number) => Math.round(k * cell);
  for (let j = 0; j < steps; j++)
    for (let i = 0; i < steps; i++) {
      ctx.fillStyle = colour(j * steps + i);
      const row = steps - 1 - j;
      ctx.fillRect(edge(i), edge(row), edge(i + 1) - edge(i), edge(row + 1) - edge(row));
    }
  // Anchors: grid index (v − lo)/(hi − lo)·(steps − 1) is the centre of a cell.
  const [lo, hi] = range;
  const at = (v: number) => ((v - lo) / (hi - lo)) * (steps - 1) * cell + cell / 2;
  ctx.font = 'bold 11px system-ui, sans-serif';
  ctx.textAlign = 'center';
  ctx.textBaseline = 'middle';
  anchors.forEach(([a, b], k) => {
    const [x, y] = [at(a), MAP_SIZE - at(b)];
    ctx.fillStyle = 'white';
    ctx.beginPath();
    ctx.arc(x, y, 7, 0, 2 * Math.PI);
    ctx.fill();
    ctx.strokeStyle = 'black';
    ctx.stroke();
    ctx.fillStyle = 'black';
    ctx.fillText(String(k + 1), x, y + 1);
  });
}

/** CSS colour of an RGB triple. */
export const rgb = ([r, g, b]: [number, number, number]) => `rgb(${r},${g},${b})`;

/** The range of the finite values of an array ([0, 1] if there are none; widened if flat). */
export function finiteRange(values: ArrayLike<number>): [number, number] {
  let [lo, hi] = [Infinity, -Infinity];
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (Number.isFinite(v)) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  }
  if (lo > hi) return [0, 1];
  return lo === hi ? [lo - 0.5, hi + 0.5] : [lo, hi];
}

/** Draws a horizontal colour bar of viridis from lo to hi into `element` (a canvas and two labels). */
export function colourBar(element: HTMLElement, lo: number, hi: number, digits = 2): void {
  const canvas = document.createElement('canvas');
  const ctx = sized(canvas, 120, 8);
  for (let x = 0; x < 120; x++) {
    ctx.fillStyle = rgb(viridis(x / 119));
    ctx.fillRect(x, 0, 1, 8);
  }
  const label = (v: number) => Object.assign(document.createElement('span'), { textContent: v.toFixed(digits) });
  element.replaceChildren(label(lo), canvas, label(hi));
}

/** A legend of class colours for the classes that occur, `names[c]` naming class c. */
export function classLegend(element: HTMLElement, classes: number[], names: (c: number) => string): void {
  element.replaceChildren(
    ...classes.map((c) => {
      const chip = document.createElement('span');
      chip.className = 'chip';
      chip.style.background = CLASS_COLOURS[c % CLASS_COLOURS.length]!;
      chip.textContent = names(c);
      return chip;
    }),
  );
}
