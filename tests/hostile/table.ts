/**
 * The table of hostile-input properties: every public function of src/index.ts, its good
 * arguments, and one case per argument or option that it must refuse with a typed error.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import fc from 'fast-check';
import {
  activeModes,
  datasetFisher,
  defaultFeatureLayer,
  deform,
  distributionProjector,
  horizontalPath,
  kernelPath,
  infiniteWidthMetric,
  inputJacobian,
  jvp,
  localDataMatrix,
  localFisher,
  LowRankPSD,
  matchedNoise,
  orthogonalPath,
  randomDeform,
  planePoints,
  planeThroughPoints,
  pullbackMetric,
  relativeStability,
  tangentPath,
  RowSpaceProjector,
  sampleDisplacementField,
  scalarCurvature,
  secondDerivative,
  scanPlane,
  shallowAnalyticDetG,
  shallowScalarCurvature,
  splitAt,
  temperatureForDisplacement,
  temperatureGrid,
  temperatureRange,
  typicalDisplacement,
  volumeElement,
  vjp,
  weightJacobian,
  wrapClassifier,
} from '../../src/index.js';
import type { Classifier, Plane } from '../../src/index.js';
import {
  anyBatch,
  describeError,
  describeValue,
  disposeDeep,
  isTyped,
  Owner,
  sameBits,
  weightBits,
  bad,
  badTargets,
  combo,
  exactly,
  goodTensor,
  materialize,
  named,
  opt,
  plainArg,
  stringNotIn,
  tensorArg,
  tensorOpt,
} from './arbitraries.js';
import type { Case, Ctx, ShapeRule, TensorSpec } from './arbitraries.js';

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

const glorot = (seed: number) => tfl.initializers.glorotUniform({ seed });

/** The shared good model: [6,6,1] → conv 3×3 (2 filters, relu) → flatten (32) → dense(3, softmax). */
export function buildModel(name = 'hostile_cnn'): tfl.LayersModel {
  const m = tfl.sequential({ name });
  m.add(tfl.layers.conv2d({ name: 'conv', inputShape: [6, 6, 1], filters: 2, kernelSize: 3, activation: 'relu', kernelInitializer: glorot(1), biasInitializer: tfl.initializers.randomUniform({ minval: -0.1, maxval: 0.1, seed: 2 }) }));
  m.add(tfl.layers.flatten({ name: 'flat' }));
  m.add(tfl.layers.dense({ name: 'out', units: 3, activation: 'softmax', kernelInitializer: glorot(3) }));
  return m;
}
export const LAYERS = ['conv', 'flat', 'out'] as const;

/** Models that no function may accept, by name (the counterexample prints the name). */
export function buildBadModels(): Record<string, unknown> {
  const disposed = buildModel('hostile_disposed');
  disposed.dispose();

  const a = tfl.input({ shape: [6, 6, 1], name: 'two_in_a' });
  const b = tfl.input({ shape: [6, 6, 1], name: 'two_in_b' });
  const cat = tfl.layers.concatenate({ name: 'two_in_cat' }).apply([a, b]) as tfl.SymbolicTensor;
  const flatA = tfl.layers.flatten({ name: 'two_in_flat' }).apply(cat) as tfl.SymbolicTensor;
  const twoInputs = tfl.model({ inputs: [a, b], outputs: tfl.layers.dense({ name: 'two_in_out', units: 3, kernelInitializer: glorot(4) }).apply(flatA) as tfl.SymbolicTensor });

  const i2 = tfl.input({ shape: [6, 6, 1], name: 'two_out_in' });
  const f2 = tfl.layers.flatten({ name: 'two_out_flat' }).apply(i2) as tfl.SymbolicTensor;
  const twoOutputs = tfl.model({
    inputs: i2,
    outputs: [
      tfl.layers.dense({ name: 'two_out_a', units: 3, kernelInitializer: glorot(5) }).apply(f2) as tfl.SymbolicTensor,
      tfl.layers.dense({ name: 'two_out_b', units: 3, kernelInitializer: glorot(6) }).apply(f2) as tfl.SymbolicTensor,
    ],
  });

  const notBC = tfl.sequential({ name: 'hostile_not_bc' });
  notBC.add(tfl.layers.conv2d({ name: 'nbc_conv', inputShape: [6, 6, 1], filters: 2, kernelSize: 3, kernelInitializer: glorot(7) }));

  const oneClass = tfl.sequential({ name: 'hostile_one_class' });
  oneClass.add(tfl.layers.flatten({ name: 'one_flat', inputShape: [6, 6, 1] }));
  oneClass.add(tfl.layers.dense({ name: 'one_out', units: 1, activation: 'sigmoid', kernelInitializer: glorot(8) }));

  return {
    '<null>': null,
    '<undefined>': undefined,
    '<{}>': {},
    '<42>': 42,
    "<'model'>": 'model',
    '<disposed model>': disposed,
    '<two inputs>': twoInputs,
    '<two outputs>': twoOutputs,
    '<output [B,4,4,2]>': notBC,
    '<C = 1>': oneClass,
  };
}

/** A linear classifier (the head reads the input): it has no hidden feature map. */
export function buildLinearModel(): tfl.LayersModel {
  const m = tfl.sequential({ name: 'hostile_linear' });
  m.add(tfl.layers.dense({ name: 'lin_out', inputShape: [4], units: 3, kernelInitializer: glorot(9) }));
  return m;
}

export interface HostileCtx extends Ctx {
  model: tfl.LayersModel;
  badModels: Record<string, unknown>;
  linearModel: tfl.LayersModel;
}

export function buildCtx(): HostileCtx {
  return { model: buildModel(), badModels: buildBadModels(), linearModel: buildLinearModel() };
}

export function disposeCtx(ctx: HostileCtx): void {
  ctx.model.dispose();
  ctx.linearModel.dispose();
  for (const m of Object.values(ctx.badModels)) {
    const lm = m as { dispose?: () => void; isDisposed?: boolean } | null;
    try {
      if (lm && typeof lm === 'object' && typeof lm.dispose === 'function') lm.dispose();
    } catch {
      // the disposed model
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Shared cases
// ---------------------------------------------------------------------------------------------

const X = [2, 6, 6, 1];
const xValid = anyBatch(X);
const N_IN = 36;

/** The names of the bad models of {@link buildBadModels}. */
const BAD_MODEL_NAMES = ['<null>', '<undefined>', '<{}>', '<42>', "<'model'>", '<disposed model>', '<two inputs>', '<two outputs>', '<output [B,4,4,2]>', '<C = 1>'];
const modelCase = (index: number): Case =>
  named(index, 'model', Object.fromEntries(BAD_MODEL_NAMES.map((k) => [k, (ctx: Ctx) => (ctx as HostileCtx).badModels[k]])));

const targets = badTargets(LAYERS);
const wholeOptions = (index: number) => plainArg(index, 'options (not an object)', bad.options);
const modelOutput = (index: number) => opt(index, 'modelOutput', bad.modelOutput, bad.modelOutputExtra);
const budget = (index: number) => opt(index, 'memoryBudgetMB', bad.positive, bad.positiveExtra);
const onProgress = (index: number) => opt(index, 'onProgress', bad.callback);
const signal = (index: number) => opt(index, 'signal', bad.signal);
const target = (index: number, base: Record<string, unknown> = {}) => opt(index, 'target', targets.canon, targets.extra, base);
const strategy = (index: number, valid: string[], more: unknown[] = []) => opt(index, 'strategy', ['fast', 'GRAPH', '', 42, {}, ...more], stringNotIn(valid));
const rtol = (index: number) => opt(index, 'rtol', bad.rtol, bad.rtolExtra);
const layers = (index: number) => opt(index, 'layers', ['h1', 'conv', 42, {}, ['nope'], [42], [null], ['conv', 'nope'], [], ['flat']]);
/** The run options of the batched functions. */
const runOptions = (index: number) => [budget(index), onProgress(index), signal(index)];

/** Path options (stepSize ... onStep, signal) shared by both paths. */
const pathOptions = (index: number): Case[] => [
  modelOutput(index),
  opt(index, 'stepSize', bad.positive, bad.positiveExtra),
  opt(index, 'maxSteps', bad.positiveInt, bad.positiveIntExtra),
  opt(index, 'clamp', [[1, 0], [0, 0], 'x', [0], 42, [NaN, 1], [0, NaN], [0, 1, 2], {}, ['0', '1']]),
  opt(index, 'recordEvery', bad.positiveInt, bad.positiveIntExtra),
  rtol(index),
  opt(index, 'onStep', bad.callback),
  signal(index),
];

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

export interface Entry {
  /** The test title (the function, or Class.method). */
  title: string;
  /** The name every error message must contain. */
  fn: string;
  /** Fresh good arguments (tensors registered in `own`). */
  good(ctx: HostileCtx, own: Owner): unknown[] | Promise<unknown[]>;
  /** The call; may be sync or async. */
  call(args: unknown[]): unknown;
  cases: Case[];
}

type Args<F extends (...a: never[]) => unknown> = Parameters<F>;
const t = (own: Owner, shape: number[], seed = 17) => own.add(goodTensor(shape, seed));

// Pieces of the analytic functions.
const SHALLOW = { W: [[0.35, -1.2], [1.1, 0.4], [-0.7, 0.9]], b: [0.2, -0.5, 0.1], activation: 'sigmoid', x: [[0.3, -0.2]] };
const shallowCases = (): Case[] => [
  plainArg(0, 'options (missing or not an object)', [undefined, null, 42, 'x', []]),
  opt(0, 'W', [null, undefined, [], [[]], [[1, 2], [3]], 'abc', 42, {}, [1, 2, 3], [[NaN, 1], [0, 1], [1, 1]], [[Infinity, 0], [0, 1], [1, 1]], [[1, 2], [3, 4], [5, 6, 7]]]),
  opt(0, 'b', [null, undefined, [0.2], [1, 2, 3, 4], [NaN, 0, 0], [0, Infinity, 0], 'abc', 42, {}]),
  opt(0, 'activation', ['softmax', 'ReLU', '', 42, null, undefined, {}], stringNotIn(['sigmoid', 'tanh', 'erf', 'relu', 'gelu', 'linear'])),
  opt(0, 'erfScale', [0, -1, NaN, Infinity, '1', {}], fc.double({ max: 0 }), { activation: 'erf' }),
  opt(0, 'x', [null, undefined, [[1]], [[1, 2, 3]], 'ab', 42, [1, 2], {}, [[NaN, 0]], [[0, Infinity]], [[0.3, -0.2], [1]], [null]]),
];

const tempN = [1, 0, -8, 2.5, NaN, Infinity, '8', null, undefined, {}];
const tempC = [1, 0, -3, 2.5, 6, 100, NaN, Infinity, '3', null, undefined, {}]; // with n = 8: c < 2n/π = 5.09

/** Planes by name for the plane arguments of planePoints and scanPlane. */
const badPlanes = (own: Owner): Record<string, () => unknown> => ({
  '<null>': () => null,
  '<undefined>': () => undefined,
  '<{}>': () => ({}),
  '<42>': () => 42,
  '<a tensor>': () => t(own, [3, 6, 6, 1]),
  '<disposed plane>': () => {
    const p = planeThroughPoints(goodTensor([3, 6, 6, 1], 5));
    p.dispose();
    return p;
  },
  '<axes missing>': () => ({ origin: t(own, [1, 6, 6, 1]), anchors: [] }),
  '<origin disposed>': () => {
    const p = own.add(planeThroughPoints(goodTensor([3, 6, 6, 1], 5)));
    p.origin.dispose();
    return p;
  },
  '<axes of the wrong shape>': () => ({ origin: t(own, [1, 6, 6, 1]), axes: t(own, [3, 6, 6, 1]), anchors: [], dispose() {} }),
  '<plane for [5,5,1] inputs>': () => own.add(planeThroughPoints(goodTensor([3, 5, 5, 1], 5))),
  '<plane with NaN axes>': () => ({ origin: t(own, [1, 6, 6, 1]), axes: own.add(tf.fill([2, 6, 6, 1], NaN)), anchors: [], dispose() {} }),
});
const planeCase = (index: number, { forModel = true } = {}): Case => {
  // A plane for [5,5,1] inputs is a good plane for planePoints, a bad one for scanPlane's model.
  const names = Object.keys(badPlanes(null as unknown as Owner)).filter((k) => forModel || k !== '<plane for [5,5,1] inputs>');
  return {
    label: 'plane',
    canon: names,
    arb: fc.constantFrom(...names),
    apply: (args, badName, own) => {
      args[index] = (badPlanes(own)[badName as string] as () => unknown)();
    },
  };
};
const goodPlane = (own: Owner): Plane => {
  const pts = goodTensor([3, 6, 6, 1], 5);
  try {
    return own.add(planeThroughPoints(pts));
  } finally {
    pts.dispose();
  }
};

/** A LowRankPSD [2, 3, 36] with its own factor. */
const goodPSD = (own: Owner) => own.add(new LowRankPSD(goodTensor([2, 3, N_IN], 3) as tf.Tensor3D));
const disposedPSD = (): LowRankPSD => {
  const p = new LowRankPSD(goodTensor([2, 3, N_IN], 3) as tf.Tensor3D);
  p.dispose();
  return p;
};
const goodProjector = async (own: Owner): Promise<RowSpaceProjector> => {
  const p = new LowRankPSD(goodTensor([2, 3, N_IN], 3) as tf.Tensor3D);
  try {
    return own.add(await p.basis());
  } finally {
    p.dispose();
  }
};
const vValid: ShapeRule = (s) => s.length >= 2 && s[0] === 2 && s.reduce((a, b) => a * b, 1) === 2 * N_IN;
const psdOptions = [null, 42, 'x'];

export const ENTRIES: Entry[] = [
  // ---------------- Jacobians ----------------
  {
    title: 'inputJacobian',
    fn: 'inputJacobian',
    good: (ctx, own) => [ctx.model, t(own, X), {}],
    call: (a) => inputJacobian(...(a as Args<typeof inputJacobian>)),
    cases: [
      modelCase(0),
      ...tensorArg(1, 'x', X, xValid),
      wholeOptions(2),
      modelOutput(2),
      target(2),
      strategy(2, ['auto', 'graph', 'loop', 'tiled', 'softmax-chain']),
      combo(2, "strategy 'softmax-chain' with another target", [{ strategy: 'softmax-chain', target: 'logits' }, { strategy: 'softmax-chain', target: { layer: 'flat' } }]),
      opt(2, 'flatten', bad.flag),
      ...runOptions(2),
    ],
  },
  {
    title: 'weightJacobian',
    fn: 'weightJacobian',
    good: (ctx, own) => [ctx.model, t(own, X), {}],
    call: (a) => weightJacobian(...(a as Args<typeof weightJacobian>)),
    cases: [
      modelCase(0),
      ...tensorArg(1, 'x', X, xValid),
      wholeOptions(2),
      modelOutput(2),
      opt(2, 'target', [{ layer: 'out' }, { layer: 'nope' }, 42, 'probs', '', {}, [], true], stringNotIn(['logProbs', 'logits'])),
      opt(2, 'layers', ['h1', 'conv', 42, {}, ['nope'], [42], [null], ['conv', 'nope'], [], ['flat']]),
      strategy(2, ['auto', 'graph', 'loop'], ['softmax-chain', 'tiled']),
      ...runOptions(2),
    ],
  },
  {
    title: 'vjp',
    fn: 'vjp',
    good: (ctx, own) => [ctx.model, t(own, X), t(own, [2, 3], 4), {}],
    call: (a) => vjp(...(a as Args<typeof vjp>)),
    cases: [
      modelCase(0),
      ...tensorArg(1, 'x', X, xValid),
      ...tensorArg(2, 'cotangent', [2, 3]),
      wholeOptions(3),
      modelOutput(3),
      target(3),
      combo(3, 'a layer target of another width than the cotangent', [{ target: { layer: 'flat' } }, { target: { layer: 'conv' } }]),
      ...runOptions(3),
    ],
  },
  {
    title: 'jvp',
    fn: 'jvp',
    good: (ctx, own) => [ctx.model, t(own, X), t(own, X, 4), {}],
    call: (a) => jvp(...(a as Args<typeof jvp>)),
    cases: [
      modelCase(0),
      ...tensorArg(1, 'x', X, xValid),
      ...tensorArg(2, 'tangent', X, (s) => exactly(X)(s) || (s.length === 5 && s[0] === 2 && (s[1] as number) >= 1 && exactly([6, 6, 1])(s.slice(2))), [[2, 0, 6, 6, 1]]),
      wholeOptions(3),
      modelOutput(3),
      target(3),
      strategy(3, ['auto', 'central'], ['rows', 'graph']),
      opt(3, 'eps', bad.positive, bad.positiveExtra),
      ...runOptions(3),
    ],
  },
  {
    title: 'secondDerivative',
    fn: 'secondDerivative',
    good: (ctx, own) => [ctx.model, t(own, X), t(own, X, 4), t(own, X, 5), {}],
    call: (a) => secondDerivative(...(a as Args<typeof secondDerivative>)),
    cases: [
      modelCase(0),
      ...tensorArg(1, 'x', X, xValid),
      // v stays [2, 6, 6, 1]: u of any other shape (one or k pairs per sample) is refused too.
      ...tensorArg(2, 'u', X, exactly(X), [[2, 0, 6, 6, 1], [2, 1, 6, 6, 1]]),
      ...tensorArg(3, 'v', X, exactly(X), [[2, 0, 6, 6, 1], [2, 1, 6, 6, 1]]),
      wholeOptions(4),
      modelOutput(4),
      target(4),
      ...runOptions(4),
    ],
  },

  // ---------------- The data manifold ----------------
  {
    title: 'localDataMatrix',
    fn: 'localDataMatrix',
    good: (ctx, own) => [ctx.model, t(own, X), {}],
    call: (a) => localDataMatrix(...(a as Args<typeof localDataMatrix>)),
    cases: [modelCase(0), ...tensorArg(1, 'x', X, xValid), wholeOptions(2), modelOutput(2), ...runOptions(2)],
  },
  {
    title: 'distributionProjector',
    fn: 'distributionProjector',
    good: (ctx, own) => [ctx.model, t(own, X), {}],
    call: (a) => distributionProjector(...(a as Args<typeof distributionProjector>)),
    cases: [modelCase(0), ...tensorArg(1, 'x', X, xValid), wholeOptions(2), modelOutput(2), rtol(2), ...runOptions(2)],
  },
  {
    title: 'localFisher',
    fn: 'localFisher',
    good: (ctx, own) => [ctx.model, t(own, X), {}],
    call: (a) => localFisher(...(a as Args<typeof localFisher>)),
    cases: [modelCase(0), ...tensorArg(1, 'x', X, xValid), wholeOptions(2), modelOutput(2), layers(2), strategy(2, ['auto', 'graph', 'loop'], ['softmax-chain']), ...runOptions(2)],
  },
  {
    title: 'datasetFisher',
    fn: 'datasetFisher',
    good: (ctx, own) => [ctx.model, t(own, [3, 6, 6, 1]), { batchSize: 2 }],
    call: (a) => datasetFisher(...(a as Args<typeof datasetFisher>)),
    cases: [
      modelCase(0),
      ...tensorArg(1, 'data', [3, 6, 6, 1], anyBatch([3, 6, 6, 1])),
      {
        label: 'data: an iterable with a bad batch',
        canon: [
          { kind: 'iterable', of: [{ kind: 'null' }] },
          { kind: 'iterable', of: [{ kind: 'shape', shape: [2, 6, 5, 1] }] },
          { kind: 'iterable', of: [{ kind: 'shape', shape: [2, 6, 6, 1] }, { kind: 'disposed' }] },
          { kind: 'iterable', of: [{ kind: 'dtype', dtype: 'int32' }] },
          { kind: 'iterable', of: [{ kind: 'nonFinite', value: NaN, index: 3 }] },
          { kind: 'iterable', of: [] },
        ],
        arb: fc.constant({ kind: 'iterable', of: [{ kind: 'number', value: 1 }] }),
        apply: (args, spec, own) => {
          args[1] = materialize(spec as TensorSpec, [2, 6, 6, 1], own);
        },
      },
      wholeOptions(2),
      modelOutput(2),
      layers(2),
      opt(2, 'batchSize', bad.positiveInt, bad.positiveIntExtra),
      opt(2, 'maxFactorMB', [-1, NaN, -Infinity, '1024', {}, [1]], fc.double({ max: -Number.MIN_VALUE })),
      ...runOptions(2),
    ],
  },
  ...(['horizontalPath', 'kernelPath'] as const).map((name): Entry => ({
    title: name,
    fn: name,
    good: (ctx, own) => [ctx.model, t(own, X), t(own, X, 4), { maxSteps: 2 }],
    call: (a) => (name === 'horizontalPath' ? horizontalPath : kernelPath)(...(a as Args<typeof horizontalPath>)),
    cases: [
      modelCase(0),
      ...tensorArg(1, 'source', X, exactly(X)),
      ...tensorArg(2, 'target', X),
      wholeOptions(3),
      ...pathOptions(3),
      opt(3, 'threshold', bad.nonNegative, bad.nonNegativeExtra),
      opt(3, 'stallTolerance', bad.nonNegative, bad.nonNegativeExtra),
    ],
  })),

  ...(['orthogonalPath', 'tangentPath'] as const).map((name): Entry => ({
    title: name,
    fn: name,
    good: (ctx, own) => [ctx.model, t(own, X), { maxSteps: 2 }],
    call: (a) => (name === 'orthogonalPath' ? orthogonalPath : tangentPath)(...(a as Args<typeof orthogonalPath>)),
    cases: [
      modelCase(0),
      ...tensorArg(1, 'source', X, xValid),
      ...tensorOpt(2, 'direction', X),
      opt(2, 'seed', bad.seed),
      wholeOptions(2),
      ...pathOptions(2),
    ],
  })),





  // ---------------- The pullback metric ----------------
  {
    title: 'pullbackMetric',
    fn: 'pullbackMetric',
    good: (ctx, own) => [ctx.model, t(own, X), {}],
    call: (a) => pullbackMetric(...(a as Args<typeof pullbackMetric>)),
    cases: [
      modelCase(0),
      named(0, 'model without a hidden layer (default target)', { '<linear model>': (ctx) => (ctx as HostileCtx).linearModel }),
      ...tensorArg(1, 'x', X, xValid),
      wholeOptions(2),
      modelOutput(2),
      target(2),
      opt(2, 'normalization', ['l2', 'Width', '', 42, {}, true], stringNotIn(['none', 'width'])),
      ...tensorOpt(2, 'subspace', [2, 6, 6, 1], (s) => (s.length === 4 && (s[0] as number) >= 1 && exactly([6, 6, 1])(s.slice(1))) || (s.length === 5 && s[0] === 2 && (s[1] as number) >= 1 && exactly([6, 6, 1])(s.slice(2)))),
      strategy(2, ['auto', 'rows', 'columns'], ['loop', 'graph']),
      ...runOptions(2),
    ],
  },
  {
    title: 'volumeElement',
    fn: 'volumeElement',
    good: (ctx, own) => [ctx.model, t(own, X), { mode: 'effective', k: 2 }],
    call: (a) => volumeElement(...(a as Args<typeof volumeElement>)),
    cases: [
      modelCase(0),
      ...tensorArg(1, 'x', X, xValid),
      wholeOptions(2),
      modelOutput(2),
      opt(2, 'mode', ['fast', 'Full', '', 42, {}, true], stringNotIn(['full', 'subspace', 'effective'])),
      combo(2, 'a mode this model cannot have, or without its subspace', [{ mode: 'full' }, { mode: 'subspace' }, { mode: 'subspace', subspace: undefined }, { mode: 'subspace', subspace: null }]),
      opt(2, 'k', [0, -1, 1.5, NaN, Infinity, '2', {}, 33, 1000], fc.integer({ min: 33 }), { mode: 'effective' }),
      opt(2, 'base', [1, 0, -1, NaN, Infinity, '10', {}], fc.double({ max: 0 })),
      rtol(2),
      opt(2, 'normalization', ['l2', 'Width', '', 42, {}]),
      target(2),
      ...tensorOpt(2, 'subspace', [2, 6, 6, 1], (s) => (s.length === 4 && (s[0] as number) >= 1 && (s[0] as number) <= 32 && exactly([6, 6, 1])(s.slice(1))) || (s.length === 5 && s[0] === 2 && (s[1] as number) >= 1 && exactly([6, 6, 1])(s.slice(2))), { mode: 'subspace', k: undefined }),
      strategy(2, ['auto', 'rows', 'columns'], ['loop']),
      ...runOptions(2),
    ],
  },
  {
    title: 'scalarCurvature',
    fn: 'scalarCurvature',
    good: (ctx, own) => [ctx.model, t(own, X), { target: 'logProbs', subspace: t(own, [2, 6, 6, 1], 7) }],
    call: (a) => scalarCurvature(...(a as Args<typeof scalarCurvature>)),
    cases: [
      modelCase(0),
      ...tensorArg(1, 'x', X, xValid),
      wholeOptions(2),
      modelOutput(2),
      combo(2, 'a piecewise-affine target (ReLU layers), or the whole 36-dimensional input', [{ target: undefined }, { target: 'logits' }, { target: { layer: 'flat' } }, { subspace: undefined }]),
      opt(2, 'normalization', ['l2', 'Width', '', 42, {}]),
      opt(2, 'convention', ['Standard', 'ref', '', 42, {}, true], stringNotIn(['standard', 'reference'])),
      target(2),
      ...tensorOpt(2, 'subspace', [2, 6, 6, 1], (s) => (s.length === 4 && (s[0] as number) >= 2 && (s[0] as number) <= 32 && exactly([6, 6, 1])(s.slice(1))) || (s.length === 5 && s[0] === 2 && (s[1] as number) >= 2 && (s[1] as number) <= 32 && exactly([6, 6, 1])(s.slice(2)))),
      ...runOptions(2),
    ],
  },
  {
    title: 'planeThroughPoints',
    fn: 'planeThroughPoints',
    good: (_ctx, own) => [t(own, [3, 6, 6, 1], 5)],
    call: (a) => planeThroughPoints(...(a as Args<typeof planeThroughPoints>)),
    cases: [
      ...tensorArg(0, 'points', [3, 6, 6, 1], (s) => s.length >= 2 && s[0] === 3),
      named(0, 'points: collinear or equal', {
        '<three equal points>': (_c, own) => own.add(tf.tidy(() => tf.tile(goodTensor([1, 6, 6, 1], 2), [3, 1, 1, 1]))),
        '<three collinear points>': (_c, own) => own.add(tf.tidy(() => tf.mul(tf.reshape(tf.tensor1d([0, 1, 2]), [3, 1, 1, 1]), goodTensor([1, 6, 6, 1], 2)))),
        '<all zero>': (_c, own) => own.add(tf.zeros([3, 6, 6, 1])),
      }),
    ],
  },
  {
    title: 'planePoints',
    fn: 'planePoints',
    good: (_ctx, own) => [goodPlane(own), [[0, 0], [0.5, -0.5]]],
    call: (a) => planePoints(...(a as Args<typeof planePoints>)),
    cases: [
      planeCase(0, { forModel: false }),
      plainArg(1, 'coords', [null, undefined, 'x', 42, {}, [1, 2], [[0]], [[0, 0, 0]], [[NaN, 0]], [[0, Infinity]], [[0, 'a']], [null], [[0, 0], 'ab']]),
    ],
  },
  {
    title: 'scanPlane',
    fn: 'scanPlane',
    good: (ctx, own) => [ctx.model, goodPlane(own), { steps: 2, volume: 'plane' }],
    call: (a) => scanPlane(...(a as Args<typeof scanPlane>)),
    cases: [
      modelCase(0),
      planeCase(1),
      wholeOptions(2),
      modelOutput(2),
      opt(2, 'steps', [1, 0, -1, 2.5, NaN, Infinity, '60', {}], fc.integer({ max: 1 })),
      opt(2, 'range', [[1, -1], [0, 0], 'x', [0], 42, [NaN, 1], [0, Infinity], {}, ['-1', '1']]),
      opt(2, 'volume', ['full', 'subspace', '', 42, {}], stringNotIn(['effective', 'plane'])),
      opt(2, 'k', [0, -1, 1.5, NaN, Infinity, '10', {}, 33, 1000], undefined, { volume: 'effective' }),
      target(2),
      opt(2, 'normalization', ['l2', 'Width', '', 42, {}]),
      opt(2, 'base', [1, 0, -1, NaN, Infinity, '10', {}], fc.double({ max: 0 })),
      opt(2, 'batchSize', bad.positiveInt, bad.positiveIntExtra),
      opt(2, 'curvature', ['yes', 1, 0, {}, 'true']),
      combo(2, 'curvature of a piecewise-affine target (ReLU layers)', [{ curvature: true }, { curvature: true, target: 'logits' }]),
      ...runOptions(2),
    ],
  },
  {
    title: 'shallowAnalyticDetG',
    fn: 'shallowAnalyticDetG',
    good: () => [{ ...SHALLOW }],
    call: (a) => shallowAnalyticDetG(...(a as Args<typeof shallowAnalyticDetG>)),
    cases: [...shallowCases(), opt(0, 'method', ['lu', 'Direct', '', 42, {}], stringNotIn(['direct', 'cauchy-binet']))],
  },
  {
    title: 'shallowScalarCurvature',
    fn: 'shallowScalarCurvature',
    good: () => [{ ...SHALLOW }],
    call: (a) => shallowScalarCurvature(...(a as Args<typeof shallowScalarCurvature>)),
    cases: [
      ...shallowCases(),
      opt(0, 'convention', ['paper', 'Standard', '', 42, {}], stringNotIn(['standard', 'reference'])),
      combo(0, 'input dimension d = 1', [{ W: [[1], [2], [3]], x: [[0.5]] }]),
    ],
  },
  {
    title: 'infiniteWidthMetric',
    fn: 'infiniteWidthMetric',
    good: () => [{ activation: 'erf', x: [[0.3, -0.2]] }],
    call: (a) => infiniteWidthMetric(...(a as Args<typeof infiniteWidthMetric>)),
    cases: [
      plainArg(0, 'options (missing or not an object)', [undefined, null, 42, 'x', []]),
      opt(0, 'activation', ['softmax', 'ReLU', '', 42, null, undefined, {}], stringNotIn(['sigmoid', 'tanh', 'erf', 'relu', 'gelu', 'linear'])),
      opt(0, 'erfScale', [0, -1, NaN, Infinity, '1', {}], fc.double({ max: 0 })),
      opt(0, 'sigma', [0, -1, NaN, Infinity, '1', {}], fc.double({ max: 0 })),
      opt(0, 'zeta', [-1, NaN, Infinity, '1', {}], fc.double({ max: -Number.MIN_VALUE })),
      opt(0, 'x', [null, undefined, [], [[]], [[1, 2], [3]], 'ab', 42, [1, 2], {}, [[NaN, 0]], [[0, Infinity]], [null]]),
      opt(0, 'quadratureOrder', [1, 0, 513, 2.5, NaN, Infinity, '64', {}], fc.integer({ min: 513 }), { activation: 'tanh' }),
    ],
  },

  // ---------------- Relative stability ----------------
  {
    title: 'relativeStability',
    fn: 'relativeStability',
    good: (ctx, own) => [ctx.model, t(own, [3, 6, 6, 1]), { temperatures: [1e-3] }],
    call: (a) => relativeStability(...(a as Args<typeof relativeStability>)),
    cases: [
      modelCase(0),
      ...tensorArg(1, 'images', [3, 6, 6, 1], anyBatch([3, 6, 6, 1], 2), [[1, 6, 6, 1]]),
      wholeOptions(2),
      modelOutput(2),
      opt(2, 'target', ['probs', 'logProbs', '', 42, {}, [], { layer: 'nope' }, { layer: 42 }, { layer: null }, true], stringNotIn(['logits'])),
      opt(2, 'c', [1, 0, -1, 2.5, 4, 5, NaN, Infinity, '3', {}]),
      opt(2, 'temperatures', [0.01, 'abc', [], [-1], [NaN], [Infinity], ['0.01'], [0.01, -1], {}, [null]]),
      opt(2, 'delta', [-1, NaN, Infinity, '1', [-1], [NaN], [], ['1'], {}, [1, -1]], fc.double({ max: -Number.MIN_VALUE }), { temperatures: undefined }),
      combo(2, 'both temperatures and delta', [{ temperatures: [1e-3], delta: 1 }]),
      opt(2, 'interpolation', ['cubic', 'Bilinear', '', 42, {}], stringNotIn(['bilinear', 'nearest', 'gaussian'])),
      opt(2, 'aggregation', ['max', 'Mean', '', 42, {}], stringNotIn(['mean', 'median'])),
      opt(2, 'draws', bad.positiveInt, bad.positiveIntExtra),
      opt(2, 'seed', bad.seed),
      opt(2, 'batchSize', bad.positiveInt, bad.positiveIntExtra),
      opt(2, 'noiseMagnitude', bad.nonNegative, bad.nonNegativeExtra),
      opt(2, 'normalize', ['true', 0, 1, null, {}, []]),
      ...runOptions(2),
    ],
  },
  {
    title: 'randomDeform',
    fn: 'randomDeform',
    good: (_ctx, own) => [t(own, [2, 8, 8, 1]), { seed: 1 }],
    call: (a) => randomDeform(...(a as Args<typeof randomDeform>)),
    cases: [
      ...tensorArg(0, 'images', [2, 8, 8, 1], (s) => s.length === 4 && (s[0] as number) >= 1 && s[1] === 8 && s[2] === 8 && (s[3] as number) >= 1),
      wholeOptions(1),
      opt(1, 'seed', bad.seed),
      opt(1, 'interpolation', ['cubic', 'Bilinear', '', 42, {}], stringNotIn(['bilinear', 'nearest', 'gaussian'])),
      // n = 8: the cutoff must lie in [2, 5] (below 2n/π = 5.09)
      opt(1, 'cutoff', [null, 42, 'x', [], { min: 1 }, { max: 6 }, { min: 5, max: 4 }, { min: 2.5 }, { max: NaN }, { concentration: 0 }, { ratio: -1 }, { ratio: '1' }]),
      opt(1, 'temperature', [null, 42, 'x', [], { scale: 0 }, { scale: -1 }, { concentration: NaN }, { ratio: 0 }, { ratio: Infinity }]),
    ],
  },
  {
    title: 'sampleDisplacementField',
    fn: 'sampleDisplacementField',
    good: () => [{ batch: 2, n: 8, T: 0.01 }],
    call: (a) => sampleDisplacementField(...(a as Args<typeof sampleDisplacementField>)),
    cases: [
      plainArg(0, 'options (missing or not an object)', [undefined, null, 42, 'x', []]),
      opt(0, 'batch', [0, -1, 1.5, NaN, Infinity, '2', undefined, null, {}], bad.positiveIntExtra),
      opt(0, 'n', [1, 0, -8, 2.5, NaN, Infinity, '8', undefined, null, {}]),
      opt(0, 'c', [1, 0, -3, 2.5, 6, 100, NaN, Infinity, '3', {}]),
      opt(0, 'T', [-1, NaN, Infinity, '0.01', undefined, null, {}], fc.double({ max: -Number.MIN_VALUE })),
      opt(0, 'seed', bad.seed),
    ],
  },
  {
    title: 'deform',
    fn: 'deform',
    good: (_ctx, own) => [t(own, [2, 8, 8, 1]), own.add(sampleDisplacementField({ batch: 2, n: 8, T: 0.01 })), {}],
    call: (a) => deform(...(a as Args<typeof deform>)),
    cases: [
      ...tensorArg(0, 'images', [2, 8, 8, 1], (s) => s.length === 4 && s[0] === 2 && s[1] === 8 && s[2] === 8 && (s[3] as number) >= 1),
      ...tensorArg(1, 'field', [2, 8, 8, 2]),
      plainArg(2, 'options (not an object)', [null, 42, 'bilinear']),
      opt(2, 'interpolation', ['cubic', 'Bilinear', '', 42, {}], stringNotIn(['bilinear', 'nearest', 'gaussian'])),
    ],
  },
  {
    title: 'matchedNoise',
    fn: 'matchedNoise',
    good: (_ctx, own) => [t(own, [2, 8, 8, 1]), t(own, [2, 8, 8, 1], 4), 0],
    call: (a) => matchedNoise(...(a as Args<typeof matchedNoise>)),
    cases: [...tensorArg(0, 'images', [2, 8, 8, 1]), ...tensorArg(1, 'deformed', [2, 8, 8, 1]), plainArg(2, 'seed', bad.seed)],
  },
  {
    title: 'temperatureRange',
    fn: 'temperatureRange',
    good: () => [8, 3],
    call: (a) => temperatureRange(...(a as Args<typeof temperatureRange>)),
    cases: [plainArg(0, 'n', tempN), plainArg(1, 'c', tempC)],
  },
  {
    title: 'temperatureGrid',
    fn: 'temperatureGrid',
    good: () => [8, 3, {}],
    call: (a) => temperatureGrid(...(a as Args<typeof temperatureGrid>)),
    cases: [
      plainArg(0, 'n', tempN),
      plainArg(1, 'c', tempC),
      plainArg(2, 'options (not an object)', [null, 42, 'x']),
      opt(2, 'count', bad.positiveInt.concat([1]), bad.positiveIntExtra),
      opt(2, 'low', [0, -1, NaN, Infinity, '1', {}], fc.double({ max: 0 })),
      opt(2, 'high', [0, -1, NaN, Infinity, '1', {}], fc.double({ max: 0 })),
    ],
  },
  {
    title: 'typicalDisplacement',
    fn: 'typicalDisplacement',
    good: () => [0.01, 3, 8],
    call: (a) => typicalDisplacement(...(a as Args<typeof typicalDisplacement>)),
    cases: [plainArg(0, 'T', [-1, NaN, Infinity, '0.01', null, undefined, {}], fc.double({ max: -Number.MIN_VALUE })), plainArg(1, 'c', tempC), plainArg(2, 'n', tempN)],
  },
  {
    title: 'temperatureForDisplacement',
    fn: 'temperatureForDisplacement',
    good: () => [1, 3, 8],
    call: (a) => temperatureForDisplacement(...(a as Args<typeof temperatureForDisplacement>)),
    cases: [plainArg(0, 'delta', [-1, NaN, Infinity, '1', null, undefined, {}], fc.double({ max: -Number.MIN_VALUE })), plainArg(1, 'c', tempC), plainArg(2, 'n', tempN)],
  },
  {
    title: 'activeModes',
    fn: 'activeModes',
    good: () => [3],
    call: (a) => activeModes(...(a as Args<typeof activeModes>)),
    cases: [plainArg(0, 'c', [0, -1, 1.5, NaN, Infinity, '3', null, undefined, {}], fc.oneof(fc.integer({ max: 0 }), fc.double({ min: 0.01, max: 50 }).filter((v) => !Number.isInteger(v))))],
  },

  // ---------------- The model adapter ----------------
  {
    title: 'wrapClassifier',
    fn: 'wrapClassifier',
    good: (ctx) => [ctx.model, {}],
    call: (a) => wrapClassifier(...(a as Args<typeof wrapClassifier>)),
    cases: [modelCase(0), wholeOptions(1), modelOutput(1)],
  },
  {
    title: 'Classifier.features',
    fn: 'wrapClassifier',
    good: (ctx) => [wrapClassifier(ctx.model), 'conv'],
    call: (a) => (a[0] as Classifier).features(a[1] as string),
    cases: [plainArg(1, 'layerName', ['nope', '', 42, null, undefined, {}, ['conv'], 'hostile_cnn'], stringNotIn([...LAYERS]))],
  },
  {
    title: 'Classifier.target',
    fn: 'wrapClassifier',
    good: (ctx) => [wrapClassifier(ctx.model), 'logits'],
    call: (a) => (a[0] as Classifier).target(a[1] as never),
    cases: [plainArg(1, 'target', [...targets.canon, null, undefined], targets.extra)],
  },
  {
    title: 'defaultFeatureLayer',
    fn: 'defaultFeatureLayer',
    good: (ctx) => [ctx.model],
    call: (a) => defaultFeatureLayer(...(a as Args<typeof defaultFeatureLayer>)),
    cases: [modelCase(0), named(0, 'model without a hidden layer', { '<linear model>': (ctx) => (ctx as HostileCtx).linearModel })],
  },

  {
    title: 'splitAt',
    fn: 'splitAt',
    good: (ctx) => [ctx.model, 'conv'],
    // The head is a new model, the caller's: freed here so that the call leaves nothing behind.
    call: (a) => void splitAt(...(a as Args<typeof splitAt>)).head.dispose(),
    cases: [modelCase(0), plainArg(1, 'layerName', ['nope', '', 42, null, undefined, {}, ['conv'], 'out', 'hostile_cnn'], stringNotIn(['conv', 'flat']))],
  },

  // ---------------- LowRankPSD and RowSpaceProjector ----------------
  {
    title: 'new LowRankPSD',
    fn: 'LowRankPSD',
    good: (_ctx, own) => [t(own, [2, 3, N_IN], 3)],
    call: (a) => new LowRankPSD(a[0] as tf.Tensor3D),
    cases: tensorArg(0, 'factor', [2, 3, N_IN], (s) => s.length === 3 && s.every((d) => d >= 1)),
  },
  ...(['trace', 'rank', 'basis', 'eig', 'toDense'] as const).map(
    (method): Entry => ({
      title: `LowRankPSD.${method}`,
      fn: method,
      good: (_ctx, own) => [goodPSD(own), {}],
      call: (a) => (a[0] as unknown as Record<string, (o?: unknown) => unknown>)[method]!(a[1]),
      cases: [
        named(0, 'this', { '<disposed LowRankPSD>': () => disposedPSD() }),
        ...(method === 'trace' ? [] : [plainArg(1, 'options (not an object)', psdOptions)]),
        ...(method === 'rank' || method === 'basis' || method === 'eig' ? [rtol(1)] : []),
      ],
    }),
  ),
  ...(['matvec', 'quadForm'] as const).map(
    (method): Entry => ({
      title: `LowRankPSD.${method}`,
      fn: method,
      good: (_ctx, own) => [goodPSD(own), t(own, [2, N_IN], 4)],
      call: (a) => (a[0] as LowRankPSD)[method](a[1] as tf.Tensor),
      cases: [named(0, 'this', { '<disposed LowRankPSD>': () => disposedPSD() }), ...tensorArg(1, 'v', [2, N_IN], vValid)],
    }),
  ),
  ...(['project', 'projectKernel'] as const).map(
    (method): Entry => ({
      title: `RowSpaceProjector.${method}`,
      fn: method,
      good: async (_ctx, own) => [await goodProjector(own), t(own, [2, N_IN], 4)],
      call: (a) => (a[0] as RowSpaceProjector)[method](a[1] as tf.Tensor),
      cases: [
        named(0, 'this', {
          '<disposed RowSpaceProjector>': async () => {
            const p = await goodProjector({ add: <T>(x: T) => x } as unknown as Owner);
            p.dispose();
            return p;
          },
        }),
        ...tensorArg(1, 'v', [2, N_IN], vValid),
      ],
    }),
  ),
];

// ---------------------------------------------------------------------------------------------
// The contract, checked for one bad value
// ---------------------------------------------------------------------------------------------

/** The shared model's weights, or the reason they cannot be read. */
function readWeights(ctx: HostileCtx): Uint32Array[] | string {
  try {
    return weightBits(ctx.model);
  } catch (e) {
    return `the model's weights cannot be read any more (${describeError(e)})`;
  }
}

/**
 * Calls `entry` with its good arguments and `badValue` put in by `c`, and lists every clause of the
 * contract it breaks: no typed error (or none at all), a message without the function's name,
 * tensors left behind or disposed, weights changed. Frees everything it created; if the model's
 * weights changed, rebuilds `ctx.model` so that later calls start from a good model.
 */
export async function contractProblems(ctx: HostileCtx, entry: Entry, c: Case, badValue: unknown): Promise<string[]> {
  const own = new Owner();
  const problems: string[] = [];
  try {
    const args = await entry.good(ctx, own);
    await c.apply(args, badValue, own, ctx);
    const weightsBefore = readWeights(ctx);
    const before = tf.memory().numTensors;
    let outcome: { threw: false; value: unknown } | { threw: true; error: unknown };
    try {
      outcome = { threw: false, value: await entry.call(args) };
    } catch (error) {
      outcome = { threw: true, error };
    }
    const delta = tf.memory().numTensors - before;
    if (!outcome.threw) {
      problems.push(`returned ${describeValue(outcome.value)} instead of throwing`);
      disposeDeep(outcome.value);
    } else {
      if (!isTyped(outcome.error)) problems.push(`untyped error: ${describeError(outcome.error)}`);
      else if (!(outcome.error as Error).message.includes(entry.fn)) problems.push(`the message does not name '${entry.fn}': ${describeError(outcome.error)}`);
      else if (c.option !== undefined && !(outcome.error as Error).message.includes(c.option)) problems.push(`the message does not name the option '${c.option}': ${describeError(outcome.error)}`);
      if (delta > 0) problems.push(`left ${delta} tensor(s) behind`);
    }
    if (delta < 0) problems.push(`disposed ${-delta} tensor(s) it did not own`);
    const weightsAfter = readWeights(ctx);
    if (typeof weightsAfter === 'string' || typeof weightsBefore === 'string' || !sameBits(weightsBefore, weightsAfter)) {
      problems.push(typeof weightsAfter === 'string' ? weightsAfter : "changed the model's weights");
      try {
        ctx.model.dispose();
      } catch {
        // a weight already disposed by the call
      }
      ctx.model = buildModel();
    }
  } finally {
    own.dispose();
  }
  return problems;
}
