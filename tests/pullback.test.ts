/**
 * pullbackMetric, volumeElement and the plane helpers: autodiff against the shallow closed form,
 * rows against columns (VJP vs JVP), the subspace metric against Eᵀ g E, effective volume against
 * ½ log det g, rank deficiency, leaks and typed errors.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { describe, expect, it } from 'vitest';
import {
  defaultFeatureLayer,
  LayerNotFoundError,
  planePoints,
  planeThroughPoints,
  pullbackMetric,
  scanPlane,
  shallowAnalyticDetG,
  ShapeError,
  ValueError,
  volumeElement,
  wrapClassifier,
} from '../src/index.js';
import { logDetPSD } from '../src/linalg/special.js';
import { denseNet } from '../examples/models.js';
import { expectClose, expectNoLeak, randn } from './helpers.js';

/** d → N units of `activation` ('hidden') → 3 logits, seeded. */
function shallow(d: number, N: number, activation: 'sigmoid' | 'tanh' | 'relu', seed = 1) {
  const model = tfl.sequential();
  model.add(tfl.layers.dense({ name: 'hidden', inputShape: [d], units: N, activation, kernelInitializer: tfl.initializers.randomNormal({ seed }), biasInitializer: tfl.initializers.randomNormal({ seed: seed + 1 }) }));
  model.add(tfl.layers.dense({ name: 'logits', units: 3, kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + 2 }) }));
  const [kernel, bias] = model.getLayer('hidden').getWeights();
  const k = kernel!.arraySync() as number[][]; // [d, N]
  const W = Array.from({ length: N }, (_, j) => k.map((row) => row[j] as number));
  return { model, W, b: Array.from(bias!.dataSync()) };
}

/** A small CNN on 6×6×2 inputs: conv(4, 3×3, tanh) → flatten → dense 12 (tanh, 'features') → 3 logits. */
function smallCnn(pool: boolean, seed = 3) {
  const m = tfl.sequential();
  m.add(tfl.layers.conv2d({ inputShape: [6, 6, 2], filters: 4, kernelSize: 3, activation: 'tanh', kernelInitializer: tfl.initializers.glorotNormal({ seed }) }));
  if (pool) m.add(tfl.layers.maxPooling2d({ poolSize: 2 }));
  m.add(tfl.layers.flatten());
  m.add(tfl.layers.dense({ name: 'features', units: 12, activation: 'tanh', kernelInitializer: tfl.initializers.glorotNormal({ seed: seed + 1 }) }));
  m.add(tfl.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: tfl.initializers.glorotNormal({ seed: seed + 2 }) }));
  return m;
}

describe('pullbackMetric on a one-hidden-layer net equals the closed form', () => {
  it('g = (1/N) Wᵀ diag(φ′²) W from both rows (VJP) and columns (JVP)', async () => {
    for (const activation of ['sigmoid', 'tanh'] as const) {
      const { model, W, b } = shallow(2, 7, activation);
      const x = randn([5, 2], 4);
      const analytic = shallowAnalyticDetG({ W, b, activation, x: x.arraySync() as number[][] });
      for (const method of ['rows', 'columns'] as const) {
        const g = await expectNoLeak(() => pullbackMetric(model, x, { normalization: 'width', strategy: method }), (r) => [r.factor]);
        expect(g.factor.shape).toEqual([5, 7, 2]);
        const dense = g.toDense();
        // float32 Jacobians (rounding ~1e-7 of each entry) against float64: 1e-5 of the largest entry.
        expectClose(dense, analytic.metric.flatMap((m) => Array.from(m)), { rtol: 1e-5, label: `${activation} ${method}` });
        tf.dispose([dense]);
        g.dispose();
      }
      const v = await volumeElement(model, x, { normalization: 'width' });
      expect(v.terms).toBe(2);
      expect(v.target).toEqual({ layer: 'hidden' });
      // log √det g of a well-conditioned 2 × 2 metric: absolute 1e-5 (relative error of det ~1e-6).
      expectClose(v.logVolume, analytic.logVolume, { atol: 1e-5, rtol: 0 });
      const v10 = await volumeElement(model, x, { normalization: 'width', base: 10 });
      expectClose(v10.logVolume, analytic.logVolume.map((l) => l / Math.LN10), { atol: 1e-5, rtol: 0 });
      tf.dispose([x]);
    }
  });

  it("normalization 'none' is m times 'width'", async () => {
    const { model } = shallow(2, 7, 'tanh');
    const x = randn([3, 2], 5);
    const [a, b] = [await pullbackMetric(model, x), await pullbackMetric(model, x, { normalization: 'width' })];
    expectClose(await a.trace(), Array.from(await b.trace(), (t) => 7 * t), { rtol: 1e-6 });
    a.dispose();
    b.dispose();
    x.dispose();
  });
});

describe('pullbackMetric on a CNN', () => {
  const x = randn([3, 6, 6, 2], 11);

  it('defaults to the layer that feeds the classifier head', () => {
    expect(defaultFeatureLayer(smallCnn(false))).toBe('features');
    expect(() => defaultFeatureLayer(denseNet(4, [], 3))).toThrow(ValueError);
  });

  it('restricted to a subspace via JVPs equals Eᵀ g E from the full Jacobian', async () => {
    const model = smallCnn(false);
    const E = randn([2, 6, 6, 2], 12); // shared by all samples
    const Eb = randn([3, 4, 6, 6, 2], 13); // one basis of 4 directions per sample
    const full = await pullbackMetric(model, x, { strategy: 'rows' }); // [3, 12, 72]
    for (const [basis, k] of [[E, 2], [Eb, 4]] as const) {
      const viaJvp = await expectNoLeak(() => pullbackMetric(model, x, { subspace: basis, strategy: 'columns' }), (r) => [r.factor]);
      expect(viaJvp.factor.shape).toEqual([3, 12, k]);
      const expected = tf.tidy(() => {
        const Ef = tf.reshape(basis.rank === 4 ? tf.tile(tf.expandDims(basis, 0), [3, 1, 1, 1, 1]) : basis, [3, k, 72]);
        const JE = tf.matMul(full.factor, Ef, false, true);
        return tf.matMul(JE, JE, true);
      });
      const got = viaJvp.toDense();
      // Forward mode is exact: float32 rounding of sums over 72 inputs, 1e-5 of the largest entry.
      expectClose(got, expected, { rtol: 1e-5, label: `k = ${k}` });
      tf.dispose([got, expected]);
      viaJvp.dispose();
    }
    full.dispose();
    tf.dispose([E, Eb]);
  });

  it('is exact past a max-pool: forward mode (columns) equals reverse mode (rows)', async () => {
    const model = smallCnn(true);
    const E = randn([2, 6, 6, 2], 14);
    const rows = await pullbackMetric(model, x, { subspace: E, strategy: 'rows' });
    const cols = await pullbackMetric(model, x, { subspace: E, strategy: 'columns' });
    // Both exact (the max pool's mask from the forward pass, no central differences): float32
    // rounding of sums over 72 inputs, 1e-5 of the largest entry.
    const [a, b] = [rows.toDense(), cols.toDense()];
    expectClose(b, a, { rtol: 1e-5 });
    tf.dispose([a, b, E]);
    rows.dispose();
    cols.dispose();
  });

  it("'effective' volume with k = n equals ½ log det g, and sums the top k singular values", async () => {
    // n = 4 inputs, m = 9 features: g is 4 × 4 and full rank.
    const model = denseNet(4, [9], 3, 5);
    const xs = randn([4, 4], 15);
    const full = await volumeElement(model, xs);
    const eff = await volumeElement(model, xs, { mode: 'effective', k: 4 });
    expectClose(eff.logVolume, full.logVolume, { atol: 1e-9, rtol: 0 });
    // ½ log det g from the dense metric in float64.
    const g = await pullbackMetric(model, xs);
    const dense = g.toDense().arraySync() as number[][][];
    g.dispose();
    dense.forEach((gb, i) => expect(full.logVolume[i]).toBeCloseTo(logDetPSD(gb.flat(), 4) / 2, 4)); // Cholesky, not singular values
    const top2 = await volumeElement(model, xs, { mode: 'effective', k: 2 });
    top2.logSingularValues.forEach((s, i) => expect(top2.logVolume[i]).toBeCloseTo((s[0] as number) + (s[1] as number), 12));
    xs.dispose();
  });

  it('reports rank deficiency instead of a meaningless number', async () => {
    // ReLU units with biases −10 except one: at small x only one unit is active, so rank g = 1 < n = 2.
    const { model } = shallow(2, 5, 'relu');
    const layer = model.getLayer('hidden');
    const [kernel] = layer.getWeights();
    tf.tidy(() => layer.setWeights([kernel!, tf.tensor1d([1, -10, -10, -10, -10])]));
    const xs = tf.tensor2d([[0.1, -0.2], [0.05, 0.1]]);
    const v = await volumeElement(model, xs);
    expect(v.rank).toEqual([1, 1]);
    expect(Array.from(v.logVolume)).toEqual([-Infinity, -Infinity]);
    expect(Number.isFinite(v.logSingularValues[0]![0])).toBe(true);
    const top1 = await volumeElement(model, xs, { mode: 'effective', k: 1 });
    expect(top1.logVolume.every(Number.isFinite)).toBe(true);
    xs.dispose();
  });

  it('leaks nothing and throws typed errors', async () => {
    const model = smallCnn(false);
    await expectNoLeak(() => volumeElement(model, x, { mode: 'effective', k: 3 }), () => []);
    await expect(pullbackMetric(model, x, { target: { layer: 'nope' } })).rejects.toThrow(LayerNotFoundError);
    await expect(pullbackMetric(model, x, { subspace: randn([2, 6, 6], 1) })).rejects.toThrow(ShapeError);
    await expect(pullbackMetric(model, x, { subspace: randn([2, 2, 6, 6, 2], 1) })).rejects.toThrow(ShapeError); // wrong B
    await expect(pullbackMetric(model, x, { normalization: 'sqrt' as 'none' })).rejects.toThrow(ValueError);
    await expect(volumeElement(model, x)).rejects.toThrow(/rank g ≤ 12 < n/); // 'full' with n = 72 > m = 12
    await expect(volumeElement(model, x, { mode: 'effective', k: 13 })).rejects.toThrow(/k must be an integer in \[1, min\(m, n\) = 12\]/);
    await expect(volumeElement(model, x, { mode: 'subspace' })).rejects.toThrow(/needs options.subspace/);
    await expect(volumeElement(model, x, { base: 1 })).rejects.toThrow(/base/);
    await expect(volumeElement(model, x, { subspace: randn([13, 6, 6, 2], 1) })).rejects.toThrow(/13 directions/);
  });
});

describe('planeThroughPoints and scanPlane', () => {
  const model = smallCnn(false, 21);
  const anchors = randn([3, 6, 6, 2], 22);

  it('puts the three inputs at the corners of a unit equilateral triangle', async () => {
    const plane = await expectNoLeak(() => planeThroughPoints(anchors), (p) => [p.origin, p.axes]);
    const at = planePoints(plane, plane.anchors);
    expectClose(at, anchors, { rtol: 1e-6 });
    const [p1, p2, p3] = plane.anchors as [[number, number], [number, number], [number, number]];
    const pairs: [number, number][][] = [[p1, p2], [p2, p3], [p1, p3]];
    for (const [p, q] of pairs) expect(Math.hypot(p![0] - q![0], p![1] - q![1])).toBeCloseTo(1, 14);
    at.dispose();
    plane.dispose();
    // Any non-collinear triple spans a plane, whatever the sign of r·u (x₂ = 0 between x₁ = e₁ and x₃ = e₂ makes it negative).
    for (const corners of [[[1, 0, 0], [0, 0, 0], [0, 1, 0]], [[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 0, 5], [3, 0, 0], [0, -2, 0]]]) {
      const pts = tf.tensor2d(corners);
      const pl = planeThroughPoints(pts);
      expectClose(planePoints(pl, pl.anchors), pts, { rtol: 1e-6 });
      pl.dispose();
      pts.dispose();
    }
    expect(() => planeThroughPoints(tf.stack([anchors, anchors]) as tf.Tensor)).toThrow(ShapeError);
    const line = tf.tidy(() => tf.stack([tf.zeros([6, 6, 2]), tf.ones([6, 6, 2]), tf.fill([6, 6, 2], 2)]));
    expect(() => planeThroughPoints(line)).toThrow(/collinear/);
    line.dispose();
  });

  it('scans class, entropy and log-volume on a grid, with progress and abort', async () => {
    const plane = planeThroughPoints(anchors);
    const seen: number[] = [];
    const scan = await expectNoLeak(
      () => scanPlane(model, plane, { steps: 4, volume: 'plane', batchSize: 5, onProgress: (p) => seen.push(p.done) }),
      () => [],
    );
    expect(seen).toEqual([5, 10, 15, 16]);
    expectClose(scan.coords.slice(0, 4), [-1, -1, -1 / 3, -1], { atol: 1e-15 });
    // Direct evaluation at grid point 6 = (i = 2, j = 1).
    const [a, b] = [scan.coords[12]!, scan.coords[13]!];
    const xp = planePoints(plane, [[a, b]]);
    const clf = wrapClassifier(model);
    const p = tf.tidy(() => clf.probs(xp).dataSync());
    const h = -Array.from(p).reduce((s, v) => s + v * Math.log10(v), 0);
    expect(scan.entropy[6]).toBeCloseTo(h, 5);
    expect(scan.predicted[6]).toBe(Array.from(p).indexOf(Math.max(...p)));
    const v = await volumeElement(model, xp, { subspace: plane.axes, normalization: 'width', base: 10 });
    expect(scan.logVolume[6]).toBeCloseTo(v.logVolume[0]!, 5);
    const eff = await scanPlane(model, plane, { steps: 2, k: 3 });
    const corner = planePoints(plane, [[1, 1]]);
    const ve = await volumeElement(model, corner, { mode: 'effective', k: 3, normalization: 'width', base: 10 });
    expect(eff.logVolume[3]).toBeCloseTo(ve.logVolume[0]!, 5);
    corner.dispose();
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    await expect(scanPlane(model, plane, { steps: 3, signal: ac.signal })).rejects.toThrow('stop');
    await expect(scanPlane(model, plane, { steps: 1 })).rejects.toThrow(ValueError);
    await expect(scanPlane(model, plane, { range: [1, -1] })).rejects.toThrow(/lo < hi/);
    await expect(scanPlane(model, plane, { volume: 'full' as 'plane' })).rejects.toThrow(/'effective' or 'plane'/);
    await expect(scanPlane(model, plane, { batchSize: 0 })).rejects.toThrow(/batchSize/);
    const other = planeThroughPoints(randn([3, 4, 4, 1], 1));
    await expect(scanPlane(model, other, { steps: 2 })).rejects.toThrow(ShapeError); // plane of another input shape
    other.dispose();
    expect(() => planePoints(other, [[0, 0]])).toThrow(/disposed/);
    xp.dispose();
    plane.dispose();
  });

  it("works with its defaults on 2-D inputs: k is min(10, m, n), every singular value of a 2-D plane's metric", async () => {
    // A 2-16-3 tanh MLP: n = 2, so the reference's k = 10 cannot apply (it was refused: 'k must be
    // an integer in [1, 2]'). The effective volume with k = 2 is then ½ log det g, the full volume.
    const mlp = tfl.sequential({
      layers: [
        tfl.layers.dense({ inputShape: [2], units: 16, activation: 'tanh', name: 'h', kernelInitializer: tfl.initializers.glorotNormal({ seed: 3 }) }),
        tfl.layers.dense({ units: 3, kernelInitializer: tfl.initializers.glorotNormal({ seed: 4 }) }),
      ],
    });
    const pts = tf.tensor2d([[0, 0], [1, 0], [0, 1]]);
    const plane = planeThroughPoints(pts);
    const scan = await expectNoLeak(() => scanPlane(mlp, plane, { steps: 3 }), () => []);
    expect(scan.rank.every((r) => r === 2)).toBe(true);
    const corner = planePoints(plane, [[1, 1]]);
    const full = await volumeElement(mlp, corner, { normalization: 'width', base: 10 });
    expect(scan.logVolume[8]).toBeCloseTo(full.logVolume[0]!, 5);
    await expect(scanPlane(mlp, plane, { steps: 2, k: 3 })).rejects.toThrow(/scanPlane: k must be an integer >= 1 and <= 2, got 3/);
    tf.dispose([pts, corner]);
    plane.dispose();
    mlp.dispose();
  });
});
