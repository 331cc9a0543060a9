/**
 * The model zoo of tests/zoo.test.ts: small seeded models (none of them one of the examples') that
 * between them use every activation of tfjs-layers 4.22 and most of the layers a classifier on
 * images, sequences or vectors contains; and `gradTwin`, which rebuilds a model with the layers that
 * tf.grad cannot differentiate (or that infogeo patches) replaced by equivalent ones, for the oracle.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { randomizeBatchNorm } from '../../examples/models.js';

type ST = tfl.SymbolicTensor;
type Layer = tfl.layers.Layer;

const init = (seed: number) => tfl.initializers.glorotNormal({ seed });
const biasInit = (seed: number) => tfl.initializers.randomNormal({ mean: 0, stddev: 0.3, seed });
const on = (layer: Layer, x: ST | ST[]): ST => layer.apply(x) as ST;

/** One zoo entry. */
export interface ZooEntry {
  name: string;
  build: () => tfl.LayersModel;
  /** One sample's shape. */
  inputShape: number[];
  /** A hidden layer, the `{ layer }` target (and the feature map of the pullback metric). */
  hidden: string;
}

/**
 * 1. Two branches on a 9×9×2 image: conv → BatchNorm (random statistics) → 2×2 average pool, and a
 * strided 3×3 ELU conv; Concatenate; a 1×1 conv added back (Add); global average pooling of the sum
 * and global max pooling of the strided branch, concatenated ('merge', the hidden target); a tanh
 * Dense; a linear Dense; a separate Softmax layer.
 */
export function twoBranchCnn(): tfl.LayersModel {
  const input = tfl.input({ shape: [9, 9, 2] });
  let a = on(tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', useBias: false, kernelInitializer: init(101) }), input);
  a = on(tfl.layers.batchNormalization({}), a);
  a = on(tfl.layers.averagePooling2d({ poolSize: 2 }), a); // 9 → 4
  const b = on(tfl.layers.conv2d({ filters: 4, kernelSize: 3, strides: 2, activation: 'elu', kernelInitializer: init(102), biasInitializer: biasInit(103) }), input); // 9 → 4
  const cat = on(tfl.layers.concatenate(), [a, b]); // [4, 4, 8]
  const mixed = on(tfl.layers.conv2d({ filters: 8, kernelSize: 1, activation: 'tanh', kernelInitializer: init(104) }), cat);
  const sum = on(tfl.layers.add(), [cat, mixed]);
  const gap = on(tfl.layers.globalAveragePooling2d({}), sum); // [8]
  const gmp = on(tfl.layers.globalMaxPooling2d({}), b); // [4]
  const merge = on(tfl.layers.concatenate({ name: 'merge' }), [gap, gmp]); // [12]
  const h = on(tfl.layers.dense({ units: 6, activation: 'tanh', kernelInitializer: init(105) }), merge);
  const logits = on(tfl.layers.dense({ units: 4, kernelInitializer: init(106), biasInitializer: biasInit(107) }), h);
  const m = tfl.model({ inputs: input, outputs: on(tfl.layers.softmax(), logits) });
  randomizeBatchNorm(m, 108);
  return m;
}

/** 2. An MLP on 5-vectors: tanh Dense → LayerNormalization → ELU Dense ('hidden') → Dropout → logits. */
export function mlp(): tfl.LayersModel {
  const m = tfl.sequential();
  m.add(tfl.layers.dense({ inputShape: [5], units: 8, activation: 'tanh', kernelInitializer: init(201), biasInitializer: biasInit(202) }));
  m.add(
    tfl.layers.layerNormalization({
      gammaInitializer: tfl.initializers.randomUniform({ minval: 0.5, maxval: 1.5, seed: 203 }),
      betaInitializer: tfl.initializers.randomUniform({ minval: -0.3, maxval: 0.3, seed: 204 }),
    }),
  );
  m.add(tfl.layers.dense({ name: 'hidden', units: 7, activation: 'elu', kernelInitializer: init(205), biasInitializer: biasInit(206) }));
  m.add(tfl.layers.dropout({ rate: 0.4 }));
  m.add(tfl.layers.dense({ units: 4, kernelInitializer: init(207) }));
  return m;
}

/**
 * 3. Depthwise 3×3 conv (depth multiplier 2, ReLU) → 3×3 conv with dilation rate 2 ('same', ELU) →
 * overlapping 3×3 max pool with stride 2 → Dense ('hidden', tanh) → Dense with softmax.
 */
export function dilatedCnn(): tfl.LayersModel {
  const m = tfl.sequential();
  m.add(tfl.layers.depthwiseConv2d({ inputShape: [9, 9, 2], kernelSize: 3, depthMultiplier: 2, padding: 'same', activation: 'relu', depthwiseInitializer: init(301), biasInitializer: biasInit(302) }));
  m.add(tfl.layers.conv2d({ filters: 4, kernelSize: 3, dilationRate: 2, padding: 'same', activation: 'elu', kernelInitializer: init(303), biasInitializer: biasInit(304) }));
  m.add(tfl.layers.maxPooling2d({ poolSize: 3, strides: 2 })); // 9 → 4, windows overlap by one row/column
  m.add(tfl.layers.flatten());
  m.add(tfl.layers.dense({ name: 'hidden', units: 6, activation: 'tanh', kernelInitializer: init(305) }));
  m.add(tfl.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: init(306) }));
  return m;
}

/**
 * The activation functions of tfjs-layers 4.22 (`ActivationIdentifier`; its activations.js registers
 * exactly these, plus 'softmax' and 'logSoftmax', tested as layers and as a Dense layer's activation
 * in the middle of a network).
 */
export const ACTIVATIONS = ['linear', 'relu', 'relu6', 'elu', 'selu', 'softplus', 'softsign', 'tanh', 'sigmoid', 'hardSigmoid', 'swish', 'mish', 'gelu', 'gelu_new'] as const;
export type ActivationName = (typeof ACTIVATIONS)[number];

const VEC = 4; // input size of the activation models
const WIDTH = 12; // width of their hidden layer: ≥ VEC, and wide enough that ≥ VEC ReLU-like units are active at each sample (full rank)

/** 4a. 4-vector → Dense(8, `activation`) ('act') → 3 linear logits. */
export function activationNet(activation: ActivationName, seed: number): tfl.LayersModel {
  const m = tfl.sequential();
  m.add(tfl.layers.dense({ name: 'act', inputShape: [VEC], units: WIDTH, activation, kernelInitializer: init(seed), biasInitializer: biasInit(seed + 1) }));
  m.add(tfl.layers.dense({ units: 3, kernelInitializer: init(seed + 2) }));
  return m;
}

/** 4b. 4-vector → linear Dense(8) → `layer` ('act') → tanh Dense(5) → 3 linear logits. */
export function activationLayerNet(layer: () => Layer, seed: number): tfl.LayersModel {
  const m = tfl.sequential();
  m.add(tfl.layers.dense({ inputShape: [VEC], units: WIDTH, kernelInitializer: init(seed), biasInitializer: biasInit(seed + 1) }));
  m.add(layer());
  m.add(tfl.layers.dense({ units: 5, activation: 'tanh', kernelInitializer: init(seed + 2) }));
  m.add(tfl.layers.dense({ units: 3, kernelInitializer: init(seed + 3) }));
  return m;
}

/**
 * The activation layers. `tfl.layers.elu({ alpha: 0.7 })` is not among them: tfjs-layers 4.22's ELU
 * layer throws NotImplementedError for any alpha but 1 (and the 'elu' activation has alpha 1).
 */
export const ACTIVATION_LAYERS: [string, () => Layer][] = [
  ['reLU({ maxValue: 1 })', () => tfl.layers.reLU({ name: 'act', maxValue: 1 })],
  ['leakyReLU({ alpha: 0.2 })', () => tfl.layers.leakyReLU({ name: 'act', alpha: 0.2 })],
  ['prelu', () => tfl.layers.prelu({ name: 'act', alphaInitializer: tfl.initializers.randomUniform({ minval: 0.05, maxval: 0.5, seed: 401 }) })],
  ['elu()', () => tfl.layers.elu({ name: 'act' })],
  ['thresholdedReLU({ theta: 0.1 })', () => tfl.layers.thresholdedReLU({ name: 'act', theta: 0.1 })],
  ["activation('softmax')", () => tfl.layers.activation({ name: 'act', activation: 'softmax' })],
  ["activation('logSoftmax')", () => tfl.layers.activation({ name: 'act', activation: 'logSoftmax' as 'softmax' })], // not in ActivationIdentifier's type, but registered
];

/**
 * 5. Models nested in a model: 5-vector → sigmoid Dense → a Sequential sub-model (tanh, softsign)
 * → a functional sub-model (two Dense branches, Add) → tanh Dense ('hidden') → softmax Dense.
 * The hidden target is not a sub-model itself: a sub-model has two inbound nodes (its own and its
 * call in the outer model), so tfjs calls its `output` ambiguous and wrapClassifier rejects it.
 */
export function nestedNet(): tfl.LayersModel {
  const inner = tfl.sequential({ name: 'inner' });
  inner.add(tfl.layers.dense({ inputShape: [6], units: 7, activation: 'tanh', kernelInitializer: init(501), biasInitializer: biasInit(502) }));
  inner.add(tfl.layers.dense({ units: 6, activation: 'softsign', kernelInitializer: init(503) }));
  const subIn = tfl.input({ shape: [6] });
  const p = on(tfl.layers.dense({ units: 5, activation: 'sigmoid', kernelInitializer: init(504) }), subIn);
  const q = on(tfl.layers.dense({ units: 5, activation: 'tanh', kernelInitializer: init(505) }), subIn);
  const branchy = tfl.model({ name: 'branchy', inputs: subIn, outputs: on(tfl.layers.add(), [p, q]) });
  const input = tfl.input({ shape: [5] });
  const h = on(tfl.layers.dense({ units: 6, activation: 'sigmoid', kernelInitializer: init(506), biasInitializer: biasInit(507) }), input);
  const g = on(tfl.layers.dense({ name: 'hidden', units: 6, activation: 'tanh', kernelInitializer: init(508) }), on(branchy, on(inner, h)));
  const out = on(tfl.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: init(509) }), g);
  return tfl.model({ inputs: input, outputs: out });
}

/**
 * 6a. Spatial layers on a 7×7×2 image: ZeroPadding2D → conv → Cropping2D → SeparableConv2D
 * (stride 2, depth multiplier 2) → UpSampling2D and, in parallel, Conv2DTranspose (stride 2) →
 * Minimum → Dense ('hidden') → softmax Dense. (tfjs-layers 4.22 has no Subtract layer: its merge
 * layers are add, average, concatenate, maximum, minimum, multiply and dot.)
 */
export function resamplingCnn(): tfl.LayersModel {
  const input = tfl.input({ shape: [7, 7, 2] });
  let h = on(tfl.layers.zeroPadding2d({ padding: 1 }), input); // 9×9
  h = on(tfl.layers.conv2d({ filters: 3, kernelSize: 3, activation: 'tanh', kernelInitializer: init(601), biasInitializer: biasInit(602) }), h); // 7×7
  h = on(tfl.layers.cropping2D({ cropping: [[1, 0], [0, 1]] }), h); // 6×6
  const s = on(
    tfl.layers.separableConv2d({ filters: 4, kernelSize: 3, strides: 2, padding: 'same', depthMultiplier: 2, activation: 'elu', depthwiseInitializer: init(603), pointwiseInitializer: init(604), biasInitializer: biasInit(605) }),
    h,
  ); // 3×3×4
  const up = on(tfl.layers.upSampling2d({ size: [2, 2] }), s); // 6×6×4
  const tr = on(tfl.layers.conv2dTranspose({ filters: 4, kernelSize: 3, strides: 2, padding: 'same', activation: 'tanh', kernelInitializer: init(606), biasInitializer: biasInit(607) }), s); // 6×6×4
  const d = on(tfl.layers.flatten(), on(tfl.layers.minimum(), [up, tr]));
  const f = on(tfl.layers.dense({ name: 'hidden', units: 6, activation: 'tanh', kernelInitializer: init(608) }), d);
  return tfl.model({ inputs: input, outputs: on(tfl.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: init(609) }), f) });
}

/**
 * 6b. Sequence layers on [10, 3]: Conv1D → Permute and Reshape (a reshuffle of the same numbers) →
 * Multiply with the conv output; a 1×1 Conv1D → Average with the product → Maximum with the
 * reshuffle ('mix', the hidden target) → Flatten → tanh Dense → logits.
 */
export function sequenceNet(): tfl.LayersModel {
  const input = tfl.input({ shape: [10, 3] });
  const c = on(tfl.layers.conv1d({ filters: 4, kernelSize: 3, activation: 'tanh', kernelInitializer: init(701), biasInitializer: biasInit(702) }), input); // [8, 4]
  const r = on(tfl.layers.reshape({ targetShape: [8, 4] }), on(tfl.layers.permute({ dims: [2, 1] }), c)); // [4, 8] → [8, 4]
  const prod = on(tfl.layers.multiply(), [c, r]);
  const c1 = on(tfl.layers.conv1d({ filters: 4, kernelSize: 1, activation: 'sigmoid', kernelInitializer: init(703) }), c);
  const avg = on(tfl.layers.average(), [prod, c1]);
  const mix = on(tfl.layers.maximum({ name: 'mix' }), [avg, r]); // [8, 4]
  const h = on(tfl.layers.dense({ units: 5, activation: 'tanh', kernelInitializer: init(704) }), on(tfl.layers.flatten(), mix));
  return tfl.model({ inputs: input, outputs: on(tfl.layers.dense({ units: 3, kernelInitializer: init(705) }), h) });
}

/**
 * 7a. Squeeze-excitation and hard-swish blocks (MobileNetV3, EfficientNet) on a 6×6×3 image: a swish
 * conv; a depthwise conv with hard swish h·ReLU6(h + 3)/6 (Rescaling, ReLU(6), Multiply, Rescaling);
 * the SE gate, global average pool → ReLU Dense → sigmoid Dense → Reshape [1, 1, C], multiplying the
 * map (a broadcasting Multiply, 'excite'); a per-channel [1, 1, C] shift added (a broadcasting Add)
 * and a broadcasting Maximum against a hard-sigmoid [1, 1, C] floor; Flatten → tanh Dense → logits.
 */
export function squeezeExciteCnn(): tfl.LayersModel {
  const input = tfl.input({ shape: [6, 6, 3] });
  const c = on(tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'swish', kernelInitializer: init(1101), biasInitializer: biasInit(1102) }), input);
  const d = on(tfl.layers.depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'same', depthwiseInitializer: init(1103), biasInitializer: biasInit(1104) }), c); // 3×3×4
  const relu6 = on(tfl.layers.reLU({ maxValue: 6 }), on(tfl.layers.rescaling({ scale: 1, offset: 3 }), d));
  const hswish = on(tfl.layers.rescaling({ scale: 1 / 6 }), on(tfl.layers.multiply(), [d, relu6]));
  const squeeze = on(tfl.layers.globalAveragePooling2d({}), hswish); // [4]
  const reduced = on(tfl.layers.dense({ units: 2, activation: 'relu', kernelInitializer: init(1105), biasInitializer: biasInit(1106) }), squeeze);
  const gate = on(tfl.layers.reshape({ targetShape: [1, 1, 4] }), on(tfl.layers.dense({ units: 4, activation: 'sigmoid', kernelInitializer: init(1107), biasInitializer: biasInit(1108) }), reduced));
  const excite = on(tfl.layers.multiply({ name: 'excite' }), [hswish, gate]); // [3, 3, 4]
  const shift = on(tfl.layers.reshape({ targetShape: [1, 1, 4] }), on(tfl.layers.dense({ units: 4, activation: 'tanh', kernelInitializer: init(1109) }), squeeze));
  const shifted = on(tfl.layers.add(), [excite, shift]);
  const floor = on(tfl.layers.reshape({ targetShape: [1, 1, 4] }), on(tfl.layers.dense({ units: 4, activation: 'hardSigmoid', kernelInitializer: init(1110), biasInitializer: biasInit(1111) }), reduced));
  const top = on(tfl.layers.maximum(), [shifted, floor]);
  const h = on(tfl.layers.dense({ name: 'hidden', units: 5, activation: 'tanh', kernelInitializer: init(1112) }), on(tfl.layers.flatten(), top));
  return tfl.model({ inputs: input, outputs: on(tfl.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: init(1113) }), h) });
}

/**
 * 7b. Merges of a sequence [5, 4] with a vector [4] (tfjs-layers expands the vector at axis 1): a
 * tanh Conv1D; a global average pool → Dense, averaged with the sequence (Average of ranks 3 and 2)
 * and its minimum with a RepeatVector of another Dense (Minimum, equal shapes); a Multiply of the
 * sequence by a sigmoid vector ('gated'); Flatten → tanh Dense → logits.
 */
export function broadcastSequenceNet(): tfl.LayersModel {
  const input = tfl.input({ shape: [5, 3] });
  const seq = on(tfl.layers.conv1d({ filters: 4, kernelSize: 2, padding: 'same', activation: 'tanh', kernelInitializer: init(1201), biasInitializer: biasInit(1202) }), input); // [5, 4]
  const pooled = on(tfl.layers.globalAveragePooling1d({}), seq); // [4]
  const vec = on(tfl.layers.dense({ units: 4, kernelInitializer: init(1203), biasInitializer: biasInit(1204) }), pooled);
  const avg = on(tfl.layers.average(), [seq, vec]); // [5, 4]
  const rep = on(tfl.layers.repeatVector({ n: 5 }), on(tfl.layers.dense({ units: 4, activation: 'elu', kernelInitializer: init(1205) }), pooled));
  const low = on(tfl.layers.minimum(), [avg, rep]);
  const gate = on(tfl.layers.dense({ units: 4, activation: 'sigmoid', kernelInitializer: init(1206), biasInitializer: biasInit(1207) }), pooled);
  const gated = on(tfl.layers.multiply({ name: 'gated' }), [gate, low]); // [5, 4]
  const h = on(tfl.layers.dense({ units: 5, activation: 'tanh', kernelInitializer: init(1208) }), on(tfl.layers.flatten(), gated));
  return tfl.model({ inputs: input, outputs: on(tfl.layers.dense({ units: 3, kernelInitializer: init(1209) }), h) });
}

/**
 * 7b'. Dot merges on a [4, 3] sequence: queries (tanh Dense) against keys (linear Dense), scores
 * [4, 4] = Dot(axes 2); those scores applied to the keys, [4, 3] = Dot(axes [2, 1]); the keys'
 * Gram matrix over time, [3, 3] = Dot(axes 1); both flattened into two tanh Dense vectors whose
 * similarity [1] = Dot(axes 1) joins one of them ('joined', the hidden target) → softmax Dense.
 */
export function dotNet(): tfl.LayersModel {
  const input = tfl.input({ shape: [4, 3] });
  const q = on(tfl.layers.dense({ units: 3, activation: 'tanh', kernelInitializer: init(1701), biasInitializer: biasInit(1702) }), input);
  const k = on(tfl.layers.dense({ units: 3, kernelInitializer: init(1703), biasInitializer: biasInit(1704) }), input);
  const scores = on(tfl.layers.dot({ axes: 2 }), [q, k]); // [4, 4]
  const mixed = on(tfl.layers.dot({ axes: [2, 1] }), [scores, k]); // [4, 3]
  const gram = on(tfl.layers.dot({ axes: 1 }), [k, q]); // [3, 3]
  const flat = on(tfl.layers.concatenate(), [on(tfl.layers.flatten(), mixed), on(tfl.layers.flatten(), gram)]); // [21]
  const a = on(tfl.layers.dense({ units: 4, activation: 'tanh', kernelInitializer: init(1705) }), flat);
  const b = on(tfl.layers.dense({ units: 4, activation: 'tanh', kernelInitializer: init(1706) }), flat);
  const sim = on(tfl.layers.dot({ axes: 1 }), [a, b]); // [1]
  const joined = on(tfl.layers.concatenate({ name: 'joined' }), [a, sim]); // [5]
  return tfl.model({ inputs: input, outputs: on(tfl.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: init(1707) }), joined) });
}

/**
 * 7c. Channels first, as models converted from PyTorch are, on a [2, 8, 8] image: ZeroPadding2D →
 * tanh Conv2D → BatchNorm (axis 1, random statistics) → 2×2 max pool → linear Conv2D → BatchNorm
 * (axis 1) → ELU Conv2D with stride 2 and 'same' padding → UpSampling2D → Cropping2D →
 * DepthwiseConv2D; a global average pool and a channels-first Flatten, concatenated ('merge') →
 * tanh Dense → softmax Dense.
 */
export function channelsFirstCnn(): tfl.LayersModel {
  const cf = 'channelsFirst' as const;
  const input = tfl.input({ shape: [2, 8, 8] });
  let h = on(tfl.layers.zeroPadding2d({ padding: [[1, 0], [0, 1]], dataFormat: cf }), input); // [2, 9, 9]
  h = on(tfl.layers.conv2d({ filters: 3, kernelSize: 3, dataFormat: cf, activation: 'tanh', kernelInitializer: init(1301), biasInitializer: biasInit(1302) }), h); // [3, 7, 7]
  h = on(tfl.layers.batchNormalization({ axis: 1 }), h);
  h = on(tfl.layers.maxPooling2d({ poolSize: 2, dataFormat: cf }), h); // [3, 3, 3]
  h = on(tfl.layers.conv2d({ filters: 4, kernelSize: 2, padding: 'same', dataFormat: cf, useBias: false, kernelInitializer: init(1303) }), h);
  h = on(tfl.layers.batchNormalization({ axis: 1 }), h);
  h = on(tfl.layers.conv2d({ filters: 4, kernelSize: 3, strides: 2, padding: 'same', dataFormat: cf, activation: 'elu', kernelInitializer: init(1304), biasInitializer: biasInit(1305) }), h); // [4, 2, 2]
  h = on(tfl.layers.upSampling2d({ size: [2, 2], dataFormat: cf }), h); // [4, 4, 4]
  h = on(tfl.layers.cropping2D({ cropping: [[1, 0], [0, 1]], dataFormat: cf }), h); // [4, 3, 3]
  h = on(tfl.layers.depthwiseConv2d({ kernelSize: 2, dataFormat: cf, activation: 'tanh', depthwiseInitializer: init(1306), biasInitializer: biasInit(1307) }), h); // [4, 2, 2]
  const gap = on(tfl.layers.globalAveragePooling2d({ dataFormat: cf }), h); // [4]
  const flat = on(tfl.layers.flatten({ dataFormat: cf }), h); // [16], channels moved last first
  const merge = on(tfl.layers.concatenate({ name: 'merge' }), [gap, flat]);
  const f = on(tfl.layers.dense({ units: 6, activation: 'tanh', kernelInitializer: init(1308) }), merge);
  const m = tfl.model({ inputs: input, outputs: on(tfl.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: init(1309) }), f) });
  randomizeBatchNorm(m, 1310);
  return m;
}

/**
 * 7d. TimeDistributed over 3 frames of 5×5×2: a strided tanh Conv2D, a global average pool and a
 * dilated Conv1D over the frames' features, TimeDistributed of an ELU Dense ('hidden') → Flatten →
 * logits.
 */
export function timeDistributedNet(): tfl.LayersModel {
  const m = tfl.sequential();
  m.add(tfl.layers.timeDistributed({ inputShape: [3, 5, 5, 2], layer: tfl.layers.conv2d({ filters: 3, kernelSize: 3, strides: 2, padding: 'same', activation: 'tanh', kernelInitializer: init(1401), biasInitializer: biasInit(1402) }) }));
  m.add(tfl.layers.timeDistributed({ layer: tfl.layers.globalAveragePooling2d({}) })); // [3, 3]
  m.add(tfl.layers.conv1d({ filters: 4, kernelSize: 2, dilationRate: 2, padding: 'same', activation: 'sigmoid', kernelInitializer: init(1403), biasInitializer: biasInit(1404) }));
  m.add(tfl.layers.timeDistributed({ name: 'hidden', layer: tfl.layers.dense({ units: 4, activation: 'elu', kernelInitializer: init(1405), biasInitializer: biasInit(1406) }) }));
  m.add(tfl.layers.flatten());
  m.add(tfl.layers.dense({ units: 3, kernelInitializer: init(1407) }));
  return m;
}

/**
 * 8a. Recurrent layers on a sequence [6, 3]: an LSTM (sigmoid gates) returning its sequence → a GRU
 * going backwards, returning its sequence ('hidden') → a SimpleRNN (tanh) returning its last state
 * → logits.
 */
export function recurrentNet(): tfl.LayersModel {
  const rec = (seed: number) => ({ kernelInitializer: init(seed), recurrentInitializer: init(seed + 1), biasInitializer: biasInit(seed + 2) });
  const m = tfl.sequential();
  m.add(tfl.layers.lstm({ inputShape: [6, 3], units: 4, returnSequences: true, recurrentActivation: 'sigmoid', ...rec(1501) }));
  m.add(tfl.layers.gru({ name: 'hidden', units: 3, returnSequences: true, goBackwards: true, recurrentActivation: 'sigmoid', ...rec(1504) }));
  m.add(tfl.layers.simpleRNN({ units: 5, ...rec(1507) }));
  m.add(tfl.layers.dense({ units: 3, kernelInitializer: init(1510) }));
  return m;
}

/**
 * 8b. tfjs-layers' default gates (hard sigmoid, piecewise linear): an LSTM going backwards and
 * returning its last state ('hidden'), without bias, and a GRU over a Conv1D's sequence, in two
 * branches concatenated → softmax.
 */
export function defaultGatesNet(): tfl.LayersModel {
  const input = tfl.input({ shape: [5, 2] });
  const a = on(tfl.layers.lstm({ name: 'hidden', units: 4, goBackwards: true, useBias: false, kernelInitializer: init(1601), recurrentInitializer: init(1602) }), input);
  const conv = on(tfl.layers.conv1d({ filters: 3, kernelSize: 2, activation: 'tanh', kernelInitializer: init(1603) }), input);
  const b = on(tfl.layers.gru({ units: 3, kernelInitializer: init(1604), recurrentInitializer: init(1605), biasInitializer: biasInit(1606) }), conv);
  const out = on(tfl.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: init(1607) }), on(tfl.layers.concatenate(), [a, b]));
  return tfl.model({ inputs: input, outputs: out });
}

/**
 * 8c. Bidirectional layers on a sequence [5, 2], every merge mode: LSTM 'concat' and GRU 'sum'
 * returning sequences, a SimpleRNN 'mul' ('hidden') and a GRU 'ave' returning their last states,
 * concatenated → logits. (tfjs-layers copies the wrapped layer's configuration, seeds included, to
 * the backward layer: its weights are drawn again.)
 */
export function bidirectionalNet(): tfl.LayersModel {
  const rec = (seed: number) => ({ kernelInitializer: init(seed), recurrentInitializer: init(seed + 1), biasInitializer: biasInit(seed + 2) });
  const bi = (layer: Layer, mergeMode: 'concat' | 'sum' | 'mul' | 'ave', name?: string) => tfl.layers.bidirectional({ layer: layer as never, mergeMode, ...(name ? { name } : {}) });
  const input = tfl.input({ shape: [5, 2] });
  const a = on(bi(tfl.layers.lstm({ units: 3, returnSequences: true, recurrentActivation: 'sigmoid', ...rec(1701) }), 'concat'), input); // [5, 6]
  const b = on(bi(tfl.layers.gru({ units: 3, returnSequences: true, recurrentActivation: 'sigmoid', ...rec(1704) }), 'sum'), a); // [5, 3]
  const c = on(bi(tfl.layers.simpleRNN({ units: 4, ...rec(1707) }), 'mul', 'hidden'), b); // [4]
  const d = on(bi(tfl.layers.gru({ units: 2, ...rec(1710) }), 'ave'), b); // [2]
  const m = tfl.model({ inputs: input, outputs: on(tfl.layers.dense({ units: 3, kernelInitializer: init(1713) }), on(tfl.layers.concatenate(), [c, d])) });
  let seed = 1720;
  for (const layer of m.layers) {
    const backward = (layer as unknown as { backwardLayer?: Layer }).backwardLayer;
    if (backward === undefined) continue;
    const fresh = backward.getWeights().map((w) => tf.randomNormal(w.shape, 0, 0.4, 'float32', seed++));
    backward.setWeights(fresh);
    tf.dispose(fresh);
  }
  return m;
}

/** Every model of the zoo. */
export const ZOO: ZooEntry[] = [
  { name: 'two-branch CNN (BatchNorm, avg/global pools, Concatenate, Add, Softmax layer)', build: twoBranchCnn, inputShape: [9, 9, 2], hidden: 'merge' },
  { name: 'MLP (tanh, LayerNormalization, ELU, Dropout, logits)', build: mlp, inputShape: [5], hidden: 'hidden' },
  { name: 'CNN (depthwise, dilated conv, overlapping max pool)', build: dilatedCnn, inputShape: [9, 9, 2], hidden: 'hidden' },
  ...ACTIVATIONS.map((a, i): ZooEntry => ({ name: `Dense(activation: '${a}')`, build: () => activationNet(a, 800 + 10 * i), inputShape: [VEC], hidden: 'act' })),
  ...ACTIVATION_LAYERS.map(([name, layer], i): ZooEntry => ({ name: `layer ${name}`, build: () => activationLayerNet(layer, 900 + 10 * i), inputShape: [VEC], hidden: 'act' })),
  { name: 'nested Sequential and functional sub-models', build: nestedNet, inputShape: [5], hidden: 'hidden' },
  { name: 'resampling CNN (ZeroPadding2D, Cropping2D, SeparableConv2D, UpSampling2D, Conv2DTranspose, Minimum)', build: resamplingCnn, inputShape: [7, 7, 2], hidden: 'hidden' },
  { name: 'sequence net (Conv1D, Permute, Reshape, Multiply, Average, Maximum)', build: sequenceNet, inputShape: [10, 3], hidden: 'mix' },
  // A softmax as a Dense layer's own activation inside the network (not elementwise: its own rule).
  ...(['softmax', 'logSoftmax'] as const).map((a, i): ZooEntry => ({
    name: `Dense(activation: '${a}') inside the network`,
    build: () => activationNet(a as unknown as ActivationName, 980 + 10 * i),
    inputShape: [VEC],
    hidden: 'act',
  })),
  { name: "Conv2D(activation: 'softmax') inside the network (over the channels)", build: softmaxConvNet, inputShape: [6, 6, 2], hidden: 'act' },
  { name: 'squeeze-excitation and hard-swish CNN (broadcasting Multiply, Add, Maximum)', build: squeezeExciteCnn, inputShape: [6, 6, 3], hidden: 'excite' },
  { name: 'sequence and vector merges (Average, Multiply across ranks; RepeatVector, Minimum)', build: broadcastSequenceNet, inputShape: [5, 3], hidden: 'gated' },
  { name: 'TimeDistributed (Conv2D, global pool, Dense) and a dilated Conv1D over frames', build: timeDistributedNet, inputShape: [3, 5, 5, 2], hidden: 'hidden' },
  { name: 'recurrent net (LSTM, GRU backwards, SimpleRNN; sigmoid gates)', build: recurrentNet, inputShape: [6, 3], hidden: 'hidden' },
  { name: 'recurrent net with hard-sigmoid gates (LSTM backwards without bias, GRU after a Conv1D)', build: defaultGatesNet, inputShape: [5, 2], hidden: 'hidden' },
  { name: 'bidirectional LSTM, GRU and SimpleRNN (merge modes concat, sum, mul, ave)', build: bidirectionalNet, inputShape: [5, 2], hidden: 'hidden' },
  { name: 'Dot merges (scores, scores × keys, a Gram matrix over time, a vector similarity)', build: dotNet, inputShape: [4, 3], hidden: 'joined' },
  { name: 'channels-first CNN (conv, BatchNorm axis 1, pools, padding, cropping, upsampling, depthwise, Flatten)', build: channelsFirstCnn, inputShape: [2, 8, 8], hidden: 'merge' },
];

/** 6×6×2 → Conv2D(3 channels, softmax over them) ('act') → tanh Dense(5) → 3 linear logits. */
function softmaxConvNet(): tfl.LayersModel {
  const m = tfl.sequential();
  m.add(tfl.layers.conv2d({ name: 'act', inputShape: [6, 6, 2], filters: 3, kernelSize: 3, activation: 'softmax', kernelInitializer: init(1001), biasInitializer: biasInit(1002) }));
  m.add(tfl.layers.flatten());
  m.add(tfl.layers.dense({ units: 5, activation: 'tanh', kernelInitializer: init(1003) }));
  m.add(tfl.layers.dense({ units: 3, kernelInitializer: init(1004) }));
  return m;
}

// ---------------------------------------------------------------------------------------------
// The twin: the same function, with layers tf.grad can differentiate on tfjs's stock cpu kernels.
// ---------------------------------------------------------------------------------------------

/** x·1[x > θ] with tf.step, whose gradient is registered (ThresholdedReLU uses tf.greater, whose gradient is not). */
class StepThreshold extends tfl.layers.Layer {
  static className = 'ZooStepThreshold';
  constructor(private readonly theta: number, name: string) {
    super({ name });
  }
  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const x = Array.isArray(inputs) ? (inputs[0] as tf.Tensor) : inputs;
    return tf.tidy(() => tf.mul(x, tf.step(tf.sub(x, this.theta))));
  }
}

/**
 * A BatchNormalization's twin over a channel axis that is not the last (channels first): y = x·s + b
 * per channel, with s the diagonal of a `[C, C]` kernel (as the diagonal Dense of the last-axis twin,
 * so that the weight-space reference reads the same cotangents: the kernel's diagonal and the bias).
 */
class ChannelAffine extends tfl.layers.Layer {
  static className = 'ZooChannelAffine';
  constructor(private readonly axis: number, private readonly channels: number, name: string) {
    super({ name });
  }
  override build(): void {
    this.addWeight('kernel', [this.channels, this.channels], 'float32', tfl.initializers.zeros());
    this.addWeight('bias', [this.channels], 'float32', tfl.initializers.zeros());
    this.built = true;
  }
  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const x = Array.isArray(inputs) ? (inputs[0] as tf.Tensor) : inputs;
    return tf.tidy(() => {
      const [kernel, bias] = this.weights.map((w) => w.read());
      const C = this.channels;
      const s = tf.sum(tf.mul(kernel as tf.Tensor, tf.eye(C)), 1);
      const shape = x.shape.map((_, i) => (i === this.axis ? C : 1));
      return tf.add(tf.mul(x, tf.reshape(s, shape)), tf.reshape(bias as tf.Tensor, shape));
    });
  }
}

/**
 * A Maximum or Minimum whose inputs broadcast, each input first broadcast to the output's shape
 * (tfjs 4.22's own Maximum and Minimum gradients do not sum over broadcast axes).
 */
class BroadcastExtreme extends tfl.layers.Layer {
  static className = 'ZooBroadcastExtreme';
  constructor(private readonly kind: 'Maximum' | 'Minimum', name: string) {
    super({ name });
  }
  override computeOutputShape(shapes: tfl.Shape | tfl.Shape[]): tfl.Shape {
    const all = shapes as tfl.Shape[];
    return (all[0] as tfl.Shape).map((_, k) => Math.max(...all.map((sh) => (sh[k] ?? 1) as number)));
  }
  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const xs = inputs as tf.Tensor[];
    return tf.tidy(() => {
      const shape = (xs[0] as tf.Tensor).shape.map((_, k) => Math.max(...xs.map((x) => x.shape[k] as number)));
      const full = xs.map((x) => tf.broadcastTo(x, shape));
      return full.reduce((a, b) => (this.kind === 'Maximum' ? tf.maximum(a, b) : tf.minimum(a, b)));
    });
  }
}

type Replacement = { layer: Layer; weights: (original: Layer) => tf.Tensor[] };

/** The values of a layer's weights by the end of their names (gamma, beta, moving_mean…). */
function weightsByName(layer: Layer): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  layer.weights.forEach((w, i) => out.set(w.originalName.split('/').pop() as string, layer.getWeights()[i]!.dataSync() as Float32Array));
  return out;
}

/** A dilated kernel [kh, kw, ci, co] written out with zeros between its taps (dilation 1). */
function undilate(kernel: tf.Tensor, [dh, dw]: [number, number]): tf.Tensor {
  const [kh, kw, ci, co] = kernel.shape as [number, number, number, number];
  const [eh, ew] = [(kh - 1) * dh + 1, (kw - 1) * dw + 1];
  const src = kernel.dataSync();
  const out = new Float32Array(eh * ew * ci * co);
  for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) for (let c = 0; c < ci * co; c++) out[((i * dh) * ew + j * dw) * ci * co + c] = src[(i * kw + j) * ci * co + c] as number;
  return tf.tensor4d(out, [eh, ew, ci, co]);
}

/** The twin of one layer, or undefined to keep a copy of the layer. */
function replacement(layer: Layer): Replacement | undefined {
  const cls = layer.getClassName();
  const cfg = layer.getConfig() as Record<string, unknown>;
  if (cls === 'BatchNormalization') {
    // Inference BN is the affine map x ↦ x·s + (β − μ·s), s = γ/√(σ² + ε), per channel: a Dense with a
    // diagonal kernel. (tf.grad of BN would run infogeo's registered FusedBatchNorm gradient.)
    const axis = cfg['axis'] as number;
    const rank = layer.inputSpec?.[0]?.ndim ?? 0;
    const w = weightsByName(layer);
    const mean = w.get('moving_mean') as Float32Array;
    const C = mean.length;
    const eps = cfg['epsilon'] as number;
    const kernel = new Float32Array(C * C);
    const bias = new Float32Array(C);
    for (let c = 0; c < C; c++) {
      const s = (w.get('gamma')?.[c] ?? 1) / Math.sqrt((w.get('moving_variance') as Float32Array)[c]! + eps);
      kernel[c * C + c] = s;
      bias[c] = (w.get('beta')?.[c] ?? 0) - mean[c]! * s;
    }
    const twin = axis === -1 || axis === rank - 1 ? tfl.layers.dense({ name: layer.name, units: C }) : new ChannelAffine(axis, C, layer.name);
    return { layer: twin, weights: () => [tf.tensor2d(kernel, [C, C]), tf.tensor1d(bias)] };
  }
  const dilation = cfg['dilationRate'];
  if (cls === 'Conv2D' && Array.isArray(dilation) && dilation.some((d) => d !== 1)) {
    // tfjs's Conv2D gradient asserts dilation 1: the same taps, spread out, with zeros between.
    const [dh, dw] = dilation as [number, number];
    const [kh, kw] = cfg['kernelSize'] as [number, number];
    const twin = tfl.layers.conv2d({ ...(cfg as unknown as Parameters<typeof tfl.layers.conv2d>[0]), kernelSize: [(kh - 1) * dh + 1, (kw - 1) * dw + 1], dilationRate: 1 });
    return { layer: twin, weights: (l) => l.getWeights().map((t, i) => (i === 0 ? undilate(t, [dh, dw]) : t.clone())) };
  }
  if (cls === 'Maximum' || cls === 'Minimum') {
    const shapes = layer.inboundNodes[0]?.inputTensors.map((t) => JSON.stringify(t.shape)) ?? [];
    if (new Set(shapes).size > 1) return { layer: new BroadcastExtreme(cls, layer.name), weights: () => [] };
  }
  if (cls === 'Conv1D' && Array.isArray(dilation) && dilation.some((d) => d !== 1)) {
    // The same for a Conv1D: its kernel [k, ci, co] as a 2-D one of height 1.
    const [d] = dilation as [number];
    const [k] = cfg['kernelSize'] as [number];
    const twin = tfl.layers.conv1d({ ...(cfg as unknown as Parameters<typeof tfl.layers.conv1d>[0]), kernelSize: (k - 1) * d + 1, dilationRate: 1 });
    const spread = (t: tf.Tensor) => tf.tidy(() => tf.squeeze(undilate(tf.expandDims(t, 0), [1, d]), [0]));
    return { layer: twin, weights: (l) => l.getWeights().map((t, i) => (i === 0 ? spread(t) : t.clone())) };
  }
  if (cls === 'ThresholdedReLU') return { layer: new StepThreshold(cfg['theta'] as number, layer.name), weights: () => [] };
  return undefined;
}

/** A new layer with the same configuration (a wrapper with a copy of the layer it wraps). */
function copyLayer(layer: Layer): Layer {
  const Cls = layer.constructor as unknown as new (config: unknown) => Layer;
  const inner = (layer as unknown as { layer?: Layer }).layer;
  return new Cls(inner ? { ...layer.getConfig(), layer: copyLayer(inner) } : layer.getConfig());
}

/**
 * Rebuilds a model with the layers tf.grad cannot differentiate, or that infogeo patches, replaced by
 * equivalent ones (same names): BatchNormalization by a diagonal Dense (by a {@link ChannelAffine}
 * over a channels-first axis), a Maximum or Minimum whose inputs broadcast by a {@link BroadcastExtreme}, a dilated Conv2D by an
 * undilated one with zeros between the taps, ThresholdedReLU by x·step(x − θ). Returns the model
 * itself when it has no such layer. Nested models are not rebuilt (the zoo's have no such layer).
 */
export function gradTwin(model: tfl.LayersModel): tfl.LayersModel {
  const nested = (l: Layer) => Array.isArray((l as unknown as { layers?: unknown }).layers);
  if (!model.layers.some((l) => !nested(l) && replacement(l) !== undefined)) return model;
  const input = model.inputs[0] as ST;
  const newInput = tfl.input({ shape: input.shape.slice(1) as number[] });
  const map = new Map<number, ST>([[input.id, newInput]]);
  const settle: (() => void)[] = [];
  for (const layer of model.layers) {
    if (layer.getClassName() === 'InputLayer') continue;
    if (nested(layer)) throw new Error(`gradTwin: nested model '${layer.name}' is not rebuilt`);
    const node = layer.inboundNodes[0]!;
    const inputs = node.inputTensors.map((t) => map.get(t.id) as ST);
    const rep = replacement(layer);
    const twin = rep?.layer ?? copyLayer(layer);
    const out = twin.apply(inputs.length === 1 ? (inputs[0] as ST) : inputs);
    map.set(node.outputTensors[0]!.id, Array.isArray(out) ? (out[0] as ST) : (out as ST));
    settle.push(() => {
      const w = rep ? rep.weights(layer) : layer.getWeights();
      if (w.length > 0) twin.setWeights(w);
      if (rep) tf.dispose(w);
    });
  }
  const out = tfl.model({ inputs: newInput, outputs: map.get((model.outputs[0] as ST).id) as ST });
  settle.forEach((s) => s());
  return out;
}
