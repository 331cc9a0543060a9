/** The statistics behind the examples' and experiments' published numbers (examples/stats.ts). No tensors: cpu only. */
import { describe, expect, it } from 'vitest';
import { lowerMedian, quantile, spearman } from '../examples/stats.js';

describe("the experiments' statistics", () => {
  it("Spearman's ρ: ±1 for monotone data, the textbook value with ties, invariant to monotone maps", () => {
    expect(spearman([1, 2, 3, 4], [10, 20, 30, 40])).toBeCloseTo(1, 12);
    expect(spearman([1, 2, 3, 4], [4, 3, 2, 1])).toBeCloseTo(-1, 12);
    // Ranks (1, 2, 3, 4, 5) and (2, 1, 4, 3, 5): ρ = 1 − 6·4/(5·24) = 0.8.
    expect(spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])).toBeCloseTo(0.8, 12);
    // With ties: average ranks, then Pearson's r of the ranks. x ranks (1.5, 1.5, 3, 4), y (1, 2, 3, 4):
    // r = 4.5/√(4.5·5) = 0.9486832980505138.
    expect(spearman([7, 7, 8, 9], [1, 2, 3, 4])).toBeCloseTo(0.9486832980505138, 12);
    const a = [0.3, -1.2, 2.5, 0.9, 1.7, -0.4];
    const b = [1.1, 0.2, 0.5, 3.0, -2.0, 0.7];
    expect(spearman(a.map(Math.exp), b.map((v) => v ** 3))).toBeCloseTo(spearman(a, b), 12);
  });

  it('quantiles interpolate between order statistics', () => {
    expect(quantile([5, 1, 3], 0.5)).toBe(3);
    expect(quantile([1, 2, 3, 4], 0.5)).toBe(2.5);
    expect(quantile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 0.9)).toBe(10);
    expect(quantile([], 0.5)).toBeNaN();
  });

  it('the lower median takes the lower middle value of an even count', () => {
    expect(lowerMedian([4, 1, 3, 2])).toBe(2);
    expect(lowerMedian([5, 1, 3])).toBe(3);
    expect(lowerMedian([])).toBeNaN();
  });
});
