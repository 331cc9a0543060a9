/** The statistics the examples and experiments report (plain numbers, float64). */

/** Spearman's rank correlation (average ranks for ties). */
export function spearman(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const rank = (v: ArrayLike<number>) => {
    const idx = Array.from({ length: v.length }, (_, i) => i).sort((i, j) => (v[i] as number) - (v[j] as number));
    const r = new Float64Array(v.length);
    for (let s = 0; s < idx.length; ) {
      let e = s;
      while (e + 1 < idx.length && v[idx[e + 1] as number] === v[idx[s] as number]) e++;
      for (let k = s; k <= e; k++) r[idx[k] as number] = (s + e) / 2;
      s = e + 1;
    }
    return r;
  };
  const [ra, rb] = [rank(a), rank(b)];
  const n = ra.length;
  const mean = (n - 1) / 2;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    const [x, y] = [(ra[i] as number) - mean, (rb[i] as number) - mean];
    sab += x * y;
    saa += x * x;
    sbb += y * y;
  }
  return sab / Math.sqrt(saa * sbb);
}

/** The q-quantile of values (linear interpolation between order statistics). */
export function quantile(values: ArrayLike<number>, q: number): number {
  const s = Array.from(values).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const at = q * (s.length - 1);
  const lo = Math.floor(at);
  const hi = Math.min(s.length - 1, lo + 1);
  return (s[lo] as number) + (at - lo) * ((s[hi] as number) - (s[lo] as number));
}

/** The mean of values. */
export function mean(values: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i] as number;
  return values.length ? s / values.length : NaN;
}

/** The lower middle value (the reference's `torch.median` convention; NaN for no values). */
export function lowerMedian(values: ArrayLike<number>): number {
  const s = Array.from(values).sort((a, b) => a - b);
  return s.length ? (s[Math.floor((s.length - 1) / 2)] as number) : NaN;
}
