/**
 * Seeded random numbers for the parts of infogeo that sample on the CPU (displacement fields, matched
 * noise): reproducible on every backend, unlike tfjs's backend-specific generators.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';

/**
 * `tf.randomNormal(shape)` (float32, N(0, 1)) from `seed`, 0 included: tfjs draws from
 * `Math.random` for a falsy seed, and reads any other seed as its string, so 0 goes as `'0'`.
 * A path's default direction comes from here (its default seed is 0).
 */
export function seededNormal(shape: number[], seed: number): tf.Tensor {
  return tf.randomNormal(shape, 0, 1, 'float32', (seed === 0 ? '0' : seed) as number);
}

/**
 * The seed of stream `stream` of a call seeded `seed`: MurmurHash3's 32-bit finaliser of both, so
 * that the streams of consecutive seeds share nothing. (Streams `seed`, `seed + 1`, `seed + 2` made
 * the second stream of `seed` the first of `seed + 1`: `randomDeform` with `seed: step` drew each
 * step's cutoffs from the previous step's temperature stream, ρ ≈ 0.997.)
 */
export function streamSeed(seed: number, stream: number): number {
  let h = (Math.floor(seed) ^ Math.imul(stream + 1, 0x9e3779b9)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** mulberry32: a seeded generator of uniform numbers in [0, 1). */
export function uniformGenerator(seed: number): () => number {
  let a = (Math.floor(seed) ^ 0x9e3779b9) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seeded generator of standard normal numbers (mulberry32 and Box–Muller), float64. */
export function normalGenerator(seed: number): () => number {
  return normalFrom(uniformGenerator(seed));
}

/** Standard normal numbers from a uniform generator (Box–Muller, the second value kept for the next call). */
function normalFrom(uniform: () => number): () => number {
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    const r = Math.sqrt(-2 * Math.log(1 - uniform()));
    const th = 2 * Math.PI * uniform();
    spare = r * Math.sin(th);
    return r * Math.cos(th);
  };
}

/**
 * A seeded generator of Beta(a, b) numbers in [0, 1]: X/(X + Y) with X ~ Gamma(a), Y ~ Gamma(b)
 * by Marsaglia and Tsang's method (for a shape below 1, Gamma(shape + 1)·U^(1/shape)).
 */
export function betaGenerator(a: number, b: number, seed: number): () => number {
  const uniform = uniformGenerator(seed);
  const normal = normalFrom(uniformGenerator(seed ^ 0x5bd1e995));
  const gamma = (shape: number): number => {
    if (shape < 1) return gamma(shape + 1) * Math.pow(1 - uniform(), 1 / shape);
    const d = shape - 1 / 3;
    const c = 1 / Math.sqrt(9 * d);
    for (;;) {
      let x: number;
      let v: number;
      do {
        x = normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const u = 1 - uniform();
      if (u < 1 - 0.0331 * x ** 4 || Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
    }
  };
  return () => {
    const x = gamma(a);
    const y = gamma(b);
    // Both can underflow to 0 for tiny shapes: the Beta is then (almost) Bernoulli(a/(a+b)).
    return x + y > 0 ? x / (x + y) : uniform() < a / (a + b) ? 1 : 0;
  };
}
