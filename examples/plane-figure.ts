/**
 * The panels of a plane scan (class, entropy, volume element, and the Gaussian curvature when the
 * scan measured it), as in Zavatone-Veth et al.'s plane figures.
 */
import type { Plane, PlaneScan } from '../src/index.js';
import { diverging } from './png.js';
import { heatmapPanels, rgbDataUri, viridis } from './svg.js';

type Rgb = [number, number, number];
const TAB10: Rgb[] = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]];

/**
 * Writes the SVG; `classNames` label the class colours, `volumeLabel` captions the volume panel.
 * With a curvature channel, a fourth panel draws K on a symmetric scale clipped at the 99th
 * percentile of |K| (points where the metric is nearly singular reach far larger values). Returns
 * the log-volume range.
 */
export function planeFigure(path: string, title: string, plane: Plane, scan: PlaneScan, classNames: readonly string[], volumeLabel: string, pixelsPerPoint = 4): [number, number] {
  const steps = scan.steps;
  const finite = Array.from(scan.logVolume).filter(Number.isFinite);
  const [lo, hi] = [Math.min(...finite), Math.max(...finite)];
  const image = (color: (k: number) => Rgb): string => {
    const size = steps * pixelsPerPoint;
    const rgb = new Uint8Array(size * size * 3);
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const k = (steps - 1 - Math.floor(y / pixelsPerPoint)) * steps + Math.floor(x / pixelsPerPoint); // b grows upwards
        rgb.set(color(k), 3 * (y * size + x));
      }
    for (const [a, b] of plane.anchors) {
      const [cx, cy] = [Math.round(((a + 1) / 2) * (size - 1)), Math.round(((1 - b) / 2) * (size - 1))];
      for (let t = -5; t <= 5; t++) for (const [x, y] of [[cx + t, cy], [cx, cy + t]] as const) if (x >= 0 && y >= 0 && x < size && y < size) rgb.set([255, 255, 255], 3 * (y * size + x));
    }
    return rgbDataUri(rgb, size, size);
  };
  const panels = [
    { uri: image((k) => TAB10[(scan.predicted[k] as number) % 10] as Rgb), caption: ['predicted class'], key: { legend: classNames.map((name, i) => [name, TAB10[i % 10] as Rgb] as [string, Rgb]) } },
    { uri: image((k) => viridis(scan.entropy[k] as number)), caption: ['log10 predictive entropy'], key: { min: 0, max: 1, label: 'entropy (base 10)', color: viridis } },
    { uri: image((k) => viridis(((scan.logVolume[k] as number) - lo) / (hi - lo))), caption: [volumeLabel], key: { min: lo, max: hi, label: 'log10 √det g', color: viridis } },
  ];
  const K = scan.curvature;
  if (K) {
    const clip = curvatureClip(K);
    panels.push({ uri: image((k) => diverging((K[k] as number) / clip)), caption: ['Gaussian curvature K of the plane'], key: { min: -clip, max: clip, label: 'K', color: (t: number) => diverging(2 * t - 1) } });
  }
  heatmapPanels(path, title, panels);
  return [lo, hi];
}

/** The 99th percentile of |K| over the finite values: the colour scale of the curvature panel. */
export function curvatureClip(K: ArrayLike<number>): number {
  const abs = Array.from(K, Math.abs).filter(Number.isFinite).sort((a, b) => a - b);
  return abs[Math.floor(0.99 * (abs.length - 1))] ?? 1;
}
