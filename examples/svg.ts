/** Tiny SVG figures: image strips with captions (frames embedded as PNG) and line charts. */
import { Resvg } from '@resvg/resvg-js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { PNG } from 'pngjs';
import { grey } from './png.js';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

type Rgb = [number, number, number];

/** An h × w image as a PNG data URI: greyscale for values in [0, 1], or coloured by `color`. */
export function pngDataUri(values: ArrayLike<number>, h: number, w: number, color: (v: number) => Rgb = grey): string {
  const png = new PNG({ width: w, height: h });
  for (let i = 0; i < h * w; i++) png.data.set([...color(values[i] as number), 255], 4 * i);
  return `data:image/png;base64,${PNG.sync.write(png).toString('base64')}`;
}

/** An RGB image (`width·height·3` bytes, row-major) as a PNG data URI. */
export function rgbDataUri(rgb: Uint8Array, width: number, height: number): string {
  const png = new PNG({ width, height });
  for (let i = 0; i < width * height; i++) png.data.set([rgb[3 * i] as number, rgb[3 * i + 1] as number, rgb[3 * i + 2] as number, 255], 4 * i);
  return `data:image/png;base64,${PNG.sync.write(png).toString('base64')}`;
}

const VIRIDIS: Rgb[] = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];

/** The viridis colour map for t in [0, 1] (clamped), interpolated between 10 anchors. */
export function viridis(t: number): Rgb {
  const u = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(u), VIRIDIS.length - 2);
  const f = u - i;
  const [a, b] = [VIRIDIS[i] as Rgb, VIRIDIS[i + 1] as Rgb];
  return [0, 1, 2].map((k) => Math.round((a[k] as number) + f * ((b[k] as number) - (a[k] as number)))) as Rgb;
}

/** A colour bar from `min` to `max`, or a legend of labelled colours. */
export type PanelKey = { min: number; max: number; label: string; color: (t: number) => Rgb } | { legend: [string, Rgb][] };

/** Panels of images (e.g. heatmaps) side by side, each with a caption and optionally its colour key. */
export function heatmapPanels(path: string, title: string, panels: { uri: string; caption: string[]; key?: PanelKey }[], size = 240): void {
  const pad = 16;
  let x = pad;
  const parts = panels.map((im) => {
    const lines = im.caption.map((c, k) => `<text x="${x + size / 2}" y="${40 + size + 18 + 14 * k}" text-anchor="middle" font-size="12">${esc(c)}</text>`).join('');
    let svg = `<image x="${x}" y="40" width="${size}" height="${size}" href="${im.uri}" preserveAspectRatio="none"/>${lines}`;
    x += size + 8;
    const key = im.key;
    if (key && 'legend' in key) {
      svg += key.legend
        .map(([label, [r, g, b]], i) => `<rect x="${x}" y="${44 + 18 * i}" width="12" height="12" fill="rgb(${r},${g},${b})"/><text x="${x + 16}" y="${54 + 18 * i}" font-size="11">${esc(label)}</text>`)
        .join('');
      x += 24 + 7 * Math.max(...key.legend.map(([label]) => label.length));
    } else if (key) {
      const barUri = pngDataUri(Float64Array.from({ length: 64 }, (_, i) => 1 - i / 63), 64, 1, key.color);
      svg +=
        `<image x="${x}" y="40" width="14" height="${size}" href="${barUri}" preserveAspectRatio="none"/>` +
        [0, 0.5, 1].map((f) => `<text x="${x + 18}" y="${40 + (1 - f) * size + 4}" font-size="11">${(key.min + f * (key.max - key.min)).toFixed(2)}</text>`).join('') +
        `<text transform="translate(${x + 66} ${40 + size / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(key.label)}</text>`;
      x += 76;
    }
    x += pad;
    return svg;
  });
  write(path, x, 40 + size + 50, `<text x="${pad}" y="24" font-size="14" font-weight="bold">${esc(title)}</text>${parts.join('')}`);
}

/** A row of images, each with a caption of one or two lines, under a title. */
export function imageStrip(path: string, title: string, images: { uri: string; caption: string[] }[], size = 112): void {
  const pad = 12;
  const w = pad + images.length * (size + pad);
  const h = 40 + size + 44;
  const parts = images.map((im, i) => {
    const x = pad + i * (size + pad);
    const lines = im.caption.map((c, k) => `<text x="${x + size / 2}" y="${40 + size + 16 + 14 * k}" text-anchor="middle" font-size="11">${esc(c)}</text>`).join('');
    return `<image x="${x}" y="40" width="${size}" height="${size}" href="${im.uri}" style="image-rendering:pixelated"/>${lines}`;
  });
  write(path, w, h, `<text x="${pad}" y="24" font-size="14" font-weight="bold">${esc(title)}</text>${parts.join('')}`);
}

/**
 * Decade-aligned log–log axes for the log10 values `lx`, `ly` in a W × H figure with margins L, R,
 * T, Bm: the maps from data to pixels and the grid with its labels.
 */
function logAxes(lx: number[], ly: number[], [W, H, L, R, T, Bm]: [number, number, number, number, number, number]): { px: (x: number) => number; py: (y: number) => number; grid: string } {
  const [x0, x1] = [Math.floor(Math.min(...lx)), Math.ceil(Math.max(...lx))];
  const [y0, y1] = [Math.floor(Math.min(...ly)), Math.ceil(Math.max(...ly))];
  const px = (x: number) => L + ((Math.log10(x) - x0) / (x1 - x0 || 1)) * (W - L - R);
  const py = (y: number) => H - Bm - ((Math.log10(y) - y0) / (y1 - y0 || 1)) * (H - T - Bm);
  const grid = [
    ...Array.from({ length: x1 - x0 + 1 }, (_, k) => `<line x1="${px(10 ** (x0 + k))}" x2="${px(10 ** (x0 + k))}" y1="${T}" y2="${H - Bm}" stroke="#eee"/><text x="${px(10 ** (x0 + k))}" y="${H - Bm + 18}" text-anchor="middle" font-size="11">1e${x0 + k}</text>`),
    ...Array.from({ length: y1 - y0 + 1 }, (_, k) => `<line x1="${L}" x2="${W - R}" y1="${py(10 ** (y0 + k))}" y2="${py(10 ** (y0 + k))}" stroke="#eee"/><text x="${L - 8}" y="${py(10 ** (y0 + k)) + 4}" text-anchor="end" font-size="11">1e${y0 + k}</text>`),
  ].join('');
  return { px, py, grid };
}

/** Several series on log–log axes (positive values only), with a legend. */
export function logLogChart(path: string, title: string, series: { name: string; xs: number[]; ys: number[]; color: string; dashed?: boolean }[], xLabel: string, yLabel: string): void {
  const [W, H, L, R, T, Bm] = [680, 400, 70, 170, 40, 50];
  const pts = series.flatMap((s) => s.xs.map((x, i) => [x, s.ys[i] as number] as const)).filter(([x, y]) => x > 0 && y > 0 && Number.isFinite(y));
  const lx = pts.map(([x]) => Math.log10(x));
  const ly = pts.map(([, y]) => Math.log10(y));
  const { px, py, grid } = logAxes(lx, ly, [W, H, L, R, T, Bm]);
  const lines = series
    .map((s, k) => {
      const p = s.xs.map((x, i) => [x, s.ys[i] as number] as const).filter(([x, y]) => x > 0 && y > 0 && Number.isFinite(y));
      const poly = `<polyline points="${p.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ')}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`;
      const legend = `<line x1="${W - R + 12}" x2="${W - R + 36}" y1="${T + 10 + 18 * k}" y2="${T + 10 + 18 * k}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/><text x="${W - R + 42}" y="${T + 14 + 18 * k}" font-size="11">${esc(s.name)}</text>`;
      return poly + legend;
    })
    .join('');
  write(
    path,
    W,
    H,
    `<text x="${L}" y="24" font-size="14" font-weight="bold">${esc(title)}</text>${grid}${lines}` +
      `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle" font-size="12">${esc(xLabel)}</text>` +
      `<text transform="translate(16 ${(T + H - Bm) / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(yLabel)}</text>`,
  );
}

/** A marker of {@link logLogScatter}, filled or hollow. */
export type Marker = 'circle' | 'square' | 'triangle' | 'diamond' | 'down';

function marker(shape: Marker, x: number, y: number, color: string, hollow: boolean): string {
  const paint = hollow ? `fill="white" stroke="${color}" stroke-width="1.5"` : `fill="${color}"`;
  if (shape === 'square') return `<rect x="${(x - 4).toFixed(1)}" y="${(y - 4).toFixed(1)}" width="8" height="8" ${paint}/>`;
  if (shape === 'diamond') return `<polygon points="${x.toFixed(1)},${(y - 5.5).toFixed(1)} ${(x + 5.5).toFixed(1)},${y.toFixed(1)} ${x.toFixed(1)},${(y + 5.5).toFixed(1)} ${(x - 5.5).toFixed(1)},${y.toFixed(1)}" ${paint}/>`;
  if (shape === 'down') return `<polygon points="${x.toFixed(1)},${(y + 5).toFixed(1)} ${(x - 5).toFixed(1)},${(y - 4).toFixed(1)} ${(x + 5).toFixed(1)},${(y - 4).toFixed(1)}" ${paint}/>`;
  if (shape === 'triangle') return `<polygon points="${x.toFixed(1)},${(y - 5).toFixed(1)} ${(x - 5).toFixed(1)},${(y + 4).toFixed(1)} ${(x + 5).toFixed(1)},${(y + 4).toFixed(1)}" ${paint}/>`;
  return `<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="4.5" ${paint}/>`;
}

/**
 * Points on log–log axes (positive values only), each with an optional horizontal interval
 * [xLo, xHi], reference lines, and a legend of markers and lines.
 */
export function logLogScatter(
  path: string,
  title: string,
  points: { x: number; y: number; xLo?: number; xHi?: number; color: string; marker: Marker; hollow?: boolean }[],
  lines: { name: string; xs: number[]; ys: number[]; color: string; dashed?: boolean }[],
  legend: { name: string; color: string; marker?: Marker; hollow?: boolean }[],
  xLabel: string,
  yLabel: string,
): void {
  const [W, H, L, R, T, Bm] = [720, 440, 70, 190, 40, 50];
  const ok = (v: number | undefined) => v !== undefined && v > 0 && Number.isFinite(v);
  const shown = points.filter((p) => ok(p.x) && ok(p.y));
  const lx = shown.flatMap((p) => [p.x, ...(ok(p.xLo) ? [p.xLo as number] : []), ...(ok(p.xHi) ? [p.xHi as number] : [])]).map(Math.log10);
  const ly = shown.map((p) => Math.log10(p.y));
  const { px, py, grid } = logAxes(lx, ly, [W, H, L, R, T, Bm]);
  // Reference lines, clipped to the plotting area.
  const clip = `<clipPath id="area"><rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - Bm}"/></clipPath>`;
  const refs = lines
    .map((s) => {
      const p = s.xs.map((x, i) => [x, s.ys[i] as number] as const).filter(([x, y]) => x > 0 && y > 0);
      return `<polyline clip-path="url(#area)" points="${p.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ')}" fill="none" stroke="${s.color}" stroke-width="1.5"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`;
    })
    .join('');
  const bars = shown
    .filter((p) => ok(p.xLo) && ok(p.xHi))
    .map((p) => `<line x1="${px(p.xLo as number).toFixed(1)}" x2="${px(p.xHi as number).toFixed(1)}" y1="${py(p.y).toFixed(1)}" y2="${py(p.y).toFixed(1)}" stroke="${p.color}" stroke-width="1.2"/>`)
    .join('');
  const marks = shown.map((p) => marker(p.marker, px(p.x), py(p.y), p.color, p.hollow ?? false)).join('');
  const entries = [...legend.map((e) => ({ ...e, line: false, dashed: false })), ...lines.map((l) => ({ name: l.name, color: l.color, marker: undefined, hollow: false, line: true, dashed: l.dashed ?? false }))];
  const key = entries
    .map((e, k) => {
      const y = T + 10 + 18 * k;
      const sym = e.line
        ? `<line x1="${W - R + 12}" x2="${W - R + 36}" y1="${y}" y2="${y}" stroke="${e.color}" stroke-width="1.5"${e.dashed ? ' stroke-dasharray="6 4"' : ''}/>`
        : marker(e.marker ?? 'circle', W - R + 24, y, e.color, e.hollow ?? false);
      return `${sym}<text x="${W - R + 42}" y="${y + 4}" font-size="11">${esc(e.name)}</text>`;
    })
    .join('');
  write(
    path,
    W,
    H,
    `<defs>${clip}</defs><text x="${L}" y="24" font-size="14" font-weight="bold">${esc(title)}</text>${grid}${refs}${bars}${marks}${key}` +
      `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle" font-size="12">${esc(xLabel)}</text>` +
      `<text transform="translate(16 ${(T + H - Bm) / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(yLabel)}</text>`,
  );
}

/** A line chart of y against x with axis labels. */
export function lineChart(path: string, title: string, xs: number[], ys: number[], xLabel: string, yLabel: string): void {
  const [W, H, L, R, T, Bm] = [640, 360, 70, 20, 40, 50];
  const xMin = Math.min(...xs);
  const xMax = Math.max(...xs);
  const yMax = Math.max(...ys) * 1.1 || 1;
  const px = (x: number) => L + ((x - xMin) / (xMax - xMin || 1)) * (W - L - R);
  const py = (y: number) => H - Bm - (y / yMax) * (H - T - Bm);
  const pts = xs.map((x, i) => `${px(x).toFixed(1)},${py(ys[i] as number).toFixed(1)}`).join(' ');
  const ticks = [0, 0.25, 0.5, 0.75, 1]
    .map((f) => `<text x="${L - 8}" y="${py(f * yMax) + 4}" text-anchor="end" font-size="11">${(f * yMax).toPrecision(3)}</text><line x1="${L}" x2="${W - R}" y1="${py(f * yMax)}" y2="${py(f * yMax)}" stroke="#ddd"/>`)
    .join('');
  const xt = [0, 0.5, 1].map((f) => `<text x="${px(xMin + f * (xMax - xMin))}" y="${H - Bm + 18}" text-anchor="middle" font-size="11">${Math.round(xMin + f * (xMax - xMin))}</text>`).join('');
  write(
    path,
    W,
    H,
    `<text x="${L}" y="24" font-size="14" font-weight="bold">${esc(title)}</text>${ticks}${xt}` +
      `<polyline points="${pts}" fill="none" stroke="#1f77b4" stroke-width="2"/>` +
      xs.map((x, i) => `<circle cx="${px(x)}" cy="${py(ys[i] as number)}" r="3" fill="#1f77b4"/>`).join('') +
      `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle" font-size="12">${esc(xLabel)}</text>` +
      `<text transform="translate(16 ${(T + H - Bm) / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(yLabel)}</text>`,
  );
}

/**
 * Several series over a shared x axis (linear scales, any sign; `logX` for a log x axis), with a
 * legend; a dashed grey line at `zero` when it is inside the range.
 */
export function seriesChart(
  path: string,
  title: string,
  series: { name: string; xs: number[]; ys: number[]; color: string; dashed?: boolean }[],
  xLabel: string,
  yLabel: string,
  { logX = false, zero = true }: { logX?: boolean; zero?: boolean } = {},
): void {
  const [W, H, L, R, T, Bm] = [640, 360, 70, 150, 40, 50];
  const fx = (x: number) => (logX ? Math.log10(x) : x);
  const xsAll = series.flatMap((s) => s.xs.map(fx));
  const ysAll = series.flatMap((s) => s.ys).filter(Number.isFinite);
  const [x0, x1] = [Math.min(...xsAll), Math.max(...xsAll)];
  let [y0, y1] = [Math.min(...ysAll), Math.max(...ysAll)];
  if (zero) [y0, y1] = [Math.min(y0, 0), Math.max(y1, 0)];
  const pad = (y1 - y0) * 0.08 || 1;
  [y0, y1] = [y0 - pad, y1 + pad];
  const px = (x: number) => L + ((fx(x) - x0) / (x1 - x0 || 1)) * (W - L - R);
  const py = (y: number) => H - Bm - ((y - y0) / (y1 - y0)) * (H - T - Bm);
  const yt = [0, 0.25, 0.5, 0.75, 1]
    .map((f) => y0 + f * (y1 - y0))
    .map((y) => `<text x="${L - 8}" y="${py(y) + 4}" text-anchor="end" font-size="11">${y.toPrecision(2)}</text><line x1="${L}" x2="${W - R}" y1="${py(y)}" y2="${py(y)}" stroke="#eee"/>`)
    .join('');
  const ticks = Array.from(new Set(series.flatMap((s) => s.xs))).sort((a, b) => a - b);
  const xt = ticks.map((x) => `<text x="${px(x)}" y="${H - Bm + 18}" text-anchor="middle" font-size="11">${x}</text>`).join('');
  const zeroLine = zero && y0 < 0 && y1 > 0 ? `<line x1="${L}" x2="${W - R}" y1="${py(0)}" y2="${py(0)}" stroke="#999" stroke-dasharray="4 3"/>` : '';
  const lines = series
    .map((s, k) => {
      const pts = s.xs.map((x, i) => [x, s.ys[i] as number] as const).filter(([, y]) => Number.isFinite(y));
      const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
      return (
        `<polyline points="${pts.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ')}" fill="none" stroke="${s.color}" stroke-width="2"${dash}/>` +
        pts.map(([x, y]) => `<circle cx="${px(x)}" cy="${py(y)}" r="3" fill="${s.color}"/>`).join('') +
        `<line x1="${W - R + 12}" x2="${W - R + 36}" y1="${T + 10 + 18 * k}" y2="${T + 10 + 18 * k}" stroke="${s.color}" stroke-width="2"${dash}/>` +
        `<text x="${W - R + 42}" y="${T + 14 + 18 * k}" font-size="11">${esc(s.name)}</text>`
      );
    })
    .join('');
  write(
    path,
    W,
    H,
    `<text x="${L}" y="24" font-size="14" font-weight="bold">${esc(title)}</text>${yt}${xt}${zeroLine}${lines}` +
      `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle" font-size="12">${esc(xLabel)}</text>` +
      `<text transform="translate(16 ${(T + H - Bm) / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(yLabel)}</text>`,
  );
}

/** Writes the figure as SVG, and next to it the same figure as PNG (same size, rendered by resvg). */
function write(path: string, w: number, h: number, body: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>${body}</svg>\n`;
  writeFileSync(path, svg);
  const png = new Resvg(svg, { fitTo: { mode: 'zoom', value: 1 }, font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans', sansSerifFamily: 'DejaVu Sans' } }).render().asPng();
  writeFileSync(path.replace(/\.svg$/, '') + '.png', png);
}
