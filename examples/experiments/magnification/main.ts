/**
 * Experiment: does training magnify areas near the decision boundaries? (Zavatone-Veth, Yang,
 * Rubinfien, Pehlevan, "Neural networks learn to magnify areas near decision boundaries".)
 *
 * For the MNIST CNN and a 2-hidden-layer tanh MLP, at 6 checkpoints over 800 SGD steps, on 12
 * planes through three test digits of three different classes: the volume element of the
 * penultimate layer's metric restricted to the plane (log10 √det g, width-normalised), the
 * predictive entropy, and per plane Spearman's ρ between them and the gap between the mean log
 * volume on the 10 % highest-entropy grid points and on the rest.
 *
 *   npm run experiment:magnification              # ~12 min on 2 cores (9 of them training, shared with experiment:leaves)
 *   npm run experiment:magnification -- --quick   # 3 checkpoints over 40 steps, 3 small planes
 *
 * Writes summary.json next to the README (out/quick/summary.json with --quick),
 * out/magnification.svg (and .png) and out/plane-<network>.svg (the last checkpoint's first plane). Resumable: the checkpoints are kept, and so are the finished
 * (network, checkpoint) results (out/partial.json).
 */
import * as tf from '@tensorflow/tfjs-core';
import { join } from 'node:path';
import { planeThroughPoints, registerGradientKernels } from '../../../src/index.js';
import type { PlaneScan } from '../../../src/index.js';
import { useWasmBackend } from '../../../src/backends/wasm.js';
import { createJacobianPool } from '../../../src/node/pool.js';
import { exitOnError } from '../../cli.js';
import { planeFigure } from '../../plane-figure.js';
import { progressBar } from '../../progress.js';
import { seriesChart } from '../../svg.js';
import { accuracy, experimentArgs, loadCheckpoint, PENULTIMATE, randomInts, readJson, testSet, trainedCheckpoints, writeSummary } from '../common.js';
import { mean, quantile, spearman } from '../../stats.js';
import type { Network } from '../common.js';
import { mkdirSync, writeFileSync } from 'node:fs';

exitOnError();
const { quick, retrain, dataDir, out, summary: summaryPath } = experimentArgs(import.meta.url);
const PLANES = quick ? 3 : 12;
const GRID = quick ? 8 : 24; // grid points per axis
const NETWORKS: Network[] = ['cnn', 'mlp'];

tf.env().set('PROD', true);
await useWasmBackend();
registerGradientKernels();

const test = testSet(1000, dataDir);
// The planes: seeded triples of test digits of three different classes.
const draw = randomInts(2024);
const triples: number[][] = [];
while (triples.length < PLANES) {
  const t = [draw(1000), draw(1000), draw(1000)];
  if (new Set(t.map((i) => test.labels[i])).size === 3) triples.push(t);
}

/** Per plane: ρ(log volume, entropy) and the log-volume gap between the 10 % most uncertain points and the rest. */
function planeStats(scan: PlaneScan) {
  const idx = Array.from(scan.logVolume.keys()).filter((k) => Number.isFinite(scan.logVolume[k] as number));
  const v = idx.map((k) => scan.logVolume[k] as number);
  const h = idx.map((k) => scan.entropy[k] as number);
  const cut = quantile(h, 0.9);
  const top = v.filter((_, i) => (h[i] as number) >= cut);
  const rest = v.filter((_, i) => (h[i] as number) < cut);
  return { rho: spearman(v, h), gap: mean(top) - mean(rest), finite: idx.length, classes: new Set(scan.predicted).size };
}

interface Row { network: Network; step: number; testAccuracy: number; rho: number[]; gap: number[]; medianRho: number; medianGap: number; seconds: number }
const partialPath = join(out, 'partial.json');
const rows: Row[] = (!retrain && readJson<{ quick: boolean; rows: Row[] }>(partialPath)?.quick === quick ? readJson<{ rows: Row[] }>(partialPath)?.rows : undefined) ?? [];

for (const network of NETWORKS) {
  const checkpoints = await trainedCheckpoints(network, { quick, retrain, dataDir });
  for (const { step, dir } of checkpoints) {
    const final = step === checkpoints[checkpoints.length - 1]?.step;
    if (rows.some((r) => r.network === network && r.step === step) && !final) continue;
    const model = await loadCheckpoint(dir);
    const pool = await createJacobianPool(model, { threads: 2 });
    const t0 = performance.now();
    const bar = progressBar(`${network} at step ${step}: ${PLANES} planes`, PLANES * GRID * GRID);
    const stats = [];
    try {
      for (const [p, triple] of triples.entries()) {
        const anchors = tf.gather(test.x, triple);
        const plane = planeThroughPoints(anchors);
        const scan = await pool.scanPlane(plane, { steps: GRID, volume: 'plane', target: { layer: PENULTIMATE[network] }, onProgress: (q) => bar.update(p * GRID * GRID + q.done) });
        if (final && p === 0) {
          planeFigure(join(out, `plane-${network}.svg`), `${network.toUpperCase()} after ${step} steps: the plane through test digits ${triple.map((i) => test.labels[i]).join(', ')}`, plane, scan, Array.from({ length: 10 }, (_, i) => String(i)), `log10 √det g (${PENULTIMATE[network]}, ÷ m)`, 6);
        }
        stats.push(planeStats(scan));
        plane.dispose();
        anchors.dispose();
      }
    } finally {
      await pool.close();
    }
    const row: Row = {
      network,
      step,
      testAccuracy: accuracy(model, test.x, test.labels),
      rho: stats.map((s) => s.rho),
      gap: stats.map((s) => s.gap),
      medianRho: quantile(stats.map((s) => s.rho), 0.5),
      medianGap: quantile(stats.map((s) => s.gap), 0.5),
      seconds: Math.round((performance.now() - t0) / 1000),
    };
    model.dispose();
    const at = rows.findIndex((r) => r.network === network && r.step === step);
    if (at >= 0) rows[at] = row;
    else rows.push(row);
    mkdirSync(out, { recursive: true });
    writeFileSync(partialPath, JSON.stringify({ quick, rows }));
    console.log(`${network} step ${step}: test accuracy ${(100 * row.testAccuracy).toFixed(1)} %, median ρ(log volume, entropy) ${row.medianRho.toFixed(3)}, median gap ${row.medianGap.toFixed(3)} (log10)`);
  }
}

const colors: Record<Network, string> = { cnn: '#1f77b4', mlp: '#d62728' };
const series = (key: 'medianRho' | 'medianGap', dashed = false) =>
  NETWORKS.map((network) => {
    const rs = rows.filter((r) => r.network === network).sort((a, b) => a.step - b.step);
    return { name: `${network.toUpperCase()}${key === 'medianGap' ? ' gap' : ' ρ'}`, xs: rs.map((r) => Math.max(r.step, 1)), ys: rs.map((r) => r[key]), color: colors[network], dashed };
  });
seriesChart(
  join(out, 'magnification.svg'),
  `Volume element vs predictive entropy on ${PLANES} planes (medians)`,
  [...series('medianRho'), ...series('medianGap', true)],
  'SGD step (batch 60; step 0 drawn at 1)',
  'ρ (solid), log10 volume gap (dashed)',
  { logX: true },
);

writeSummary(summaryPath, {
  quick,
  planes: triples.map((t) => ({ indices: t, labels: t.map((i) => test.labels[i]) })),
  grid: GRID,
  target: PENULTIMATE,
  normalization: 'width',
  rows: rows
    .sort((a, b) => (a.network === b.network ? a.step - b.step : a.network < b.network ? -1 : 1))
    .map((r) => ({ ...r, planesWithPositiveRho: r.rho.filter((v) => v > 0).length, planesWithPositiveGap: r.gap.filter((v) => v > 0).length })),
});
console.log(`wrote ${summaryPath}, ${join(out, 'magnification.svg')} and the plane figures`);
test.x.dispose();
