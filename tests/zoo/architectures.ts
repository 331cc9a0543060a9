/**
 * Full architectures people load, written with tfjs-layers from their papers and Keras'
 * definitions, with seeded random weights (nothing downloaded) and 10 classes: MobileNetV2,
 * MobileNetV3-Small (hard swish, squeeze-excitation), EfficientNet-B0 (swish, SE), ResNet-50,
 * DenseNet-121, VGG-16, Xception and a Conv1D audio classifier. Every block and layer count is the
 * original's; the input size is a parameter (the tests run them small, the benches at 224×224).
 * Where Keras pads explicitly before a strided conv, these use 'same' padding (the same layer kinds).
 * Used by tests and benches only: not shipped.
 */
import * as tfl from '@tensorflow/tfjs-layers';
import { splitAt } from '../../src/index.js';

type ST = tfl.SymbolicTensor;
type Layer = tfl.layers.Layer;

const on = (layer: Layer, x: ST | ST[]): ST => layer.apply(x) as ST;

/** Seeded initialisers: each call of `next()` a new seed. */
function seeds(start: number) {
  let s = start;
  return {
    kernel: () => tfl.initializers.heNormal({ seed: s++ }),
    dense: () => tfl.initializers.glorotNormal({ seed: s++ }),
  };
}

/** A conv → BatchNorm → activation unit ('linear': none). */
function convUnit(s: ReturnType<typeof seeds>) {
  return (x: ST, filters: number, kernelSize: number, strides = 1, act: (t: ST) => ST = (t) => t, padding: 'same' | 'valid' = 'same'): ST =>
    act(on(tfl.layers.batchNormalization({}), on(tfl.layers.conv2d({ filters, kernelSize, strides, padding, useBias: false, kernelInitializer: s.kernel() }), x)));
}

const relu = (t: ST) => on(tfl.layers.reLU({}), t);
const relu6 = (t: ST) => on(tfl.layers.reLU({ maxValue: 6 }), t);
const swish = (t: ST) => on(tfl.layers.activation({ activation: 'swish' }), t);
/** relu6(x + 3)/6, MobileNetV3's hard sigmoid. */
const hardSigmoid = (t: ST) => on(tfl.layers.rescaling({ scale: 1 / 6 }), on(tfl.layers.reLU({ maxValue: 6 }), on(tfl.layers.rescaling({ scale: 1, offset: 3 }), t)));
/** x · relu6(x + 3)/6. */
const hardSwish = (t: ST) => on(tfl.layers.multiply(), [t, hardSigmoid(t)]);

/** A channel count rounded to a multiple of 8, as Keras' MobileNets do. */
function divisible(v: number, d = 8): number {
  const r = Math.max(d, Math.floor((v + d / 2) / d) * d);
  return r < 0.9 * v ? r + d : r;
}

/** Squeeze-excitation: global average pool → reduce (1×1 conv) → expand (1×1 conv) → gate, multiplied in (a broadcasting Multiply). */
function squeezeExcite(s: ReturnType<typeof seeds>, x: ST, channels: number, reduced: number, inner: (t: ST) => ST, gate: (t: ST) => ST): ST {
  let g = on(tfl.layers.reshape({ targetShape: [1, 1, channels] }), on(tfl.layers.globalAveragePooling2d({}), x));
  g = inner(on(tfl.layers.conv2d({ filters: reduced, kernelSize: 1, kernelInitializer: s.kernel() }), g));
  g = gate(on(tfl.layers.conv2d({ filters: channels, kernelSize: 1, kernelInitializer: s.kernel() }), g));
  return on(tfl.layers.multiply(), [x, g]);
}

function depthwise(s: ReturnType<typeof seeds>, x: ST, kernelSize: number, strides: number): ST {
  return on(tfl.layers.batchNormalization({}), on(tfl.layers.depthwiseConv2d({ kernelSize, strides, padding: 'same', useBias: false, depthwiseInitializer: s.kernel() }), x));
}

function head(s: ReturnType<typeof seeds>, x: ST, classes: number): ST {
  const features = on(tfl.layers.globalAveragePooling2d({ name: 'features' }), x);
  return on(tfl.layers.dense({ units: classes, activation: 'softmax', kernelInitializer: s.dense() }), features);
}

/** MobileNetV2 (Sandler et al. 2018), width 1: 17 inverted residual blocks, ReLU6. */
export function mobileNetV2(size: number, classes = 10): tfl.LayersModel {
  const s = seeds(10_000);
  const unit = convUnit(s);
  const input = tfl.input({ shape: [size, size, 3] });
  let x = unit(input, 32, 3, 2, relu6);
  let channels = 32;
  const settings: [number, number, number, number][] = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]];
  for (const [t, c, n, stride] of settings) {
    for (let i = 0; i < n; i++) {
      const strides = i === 0 ? stride : 1;
      let h = t === 1 ? x : unit(x, channels * t, 1, 1, relu6);
      h = relu6(depthwise(s, h, 3, strides));
      h = unit(h, c, 1);
      x = strides === 1 && channels === c ? on(tfl.layers.add(), [x, h]) : h;
      channels = c;
    }
  }
  x = unit(x, 1280, 1, 1, relu6);
  return tfl.model({ inputs: input, outputs: head(s, x, classes) });
}

/** MobileNetV3-Small (Howard et al. 2019): hard swish, squeeze-excitation with a hard-sigmoid gate. */
export function mobileNetV3Small(size: number, classes = 10): tfl.LayersModel {
  const s = seeds(20_000);
  const unit = convUnit(s);
  const input = tfl.input({ shape: [size, size, 3] });
  let x = unit(input, 16, 3, 2, hardSwish);
  let channels = 16;
  // kernel, expansion, output, SE, activation, stride
  const blocks: [number, number, number, boolean, 'RE' | 'HS', number][] = [
    [3, 16, 16, true, 'RE', 2], [3, 72, 24, false, 'RE', 2], [3, 88, 24, false, 'RE', 1], [5, 96, 40, true, 'HS', 2],
    [5, 240, 40, true, 'HS', 1], [5, 240, 40, true, 'HS', 1], [5, 120, 48, true, 'HS', 1], [5, 144, 48, true, 'HS', 1],
    [5, 288, 96, true, 'HS', 2], [5, 576, 96, true, 'HS', 1], [5, 576, 96, true, 'HS', 1],
  ];
  for (const [k, expansion, out, se, a, strides] of blocks) {
    const act = a === 'RE' ? relu : hardSwish;
    let h = expansion === channels ? x : unit(x, expansion, 1, 1, act);
    h = act(depthwise(s, h, k, strides));
    if (se) h = squeezeExcite(s, h, expansion, divisible(expansion / 4), relu, hardSigmoid);
    h = unit(h, out, 1);
    x = strides === 1 && channels === out ? on(tfl.layers.add(), [x, h]) : h;
    channels = out;
  }
  x = unit(x, 576, 1, 1, hardSwish);
  let f = on(tfl.layers.reshape({ targetShape: [1, 1, 576] }), on(tfl.layers.globalAveragePooling2d({}), x));
  f = hardSwish(on(tfl.layers.conv2d({ filters: 1024, kernelSize: 1, kernelInitializer: s.kernel(), name: 'features' }), f));
  f = on(tfl.layers.dropout({ rate: 0.2 }), f);
  const logits = on(tfl.layers.flatten(), on(tfl.layers.conv2d({ filters: classes, kernelSize: 1, kernelInitializer: s.dense() }), f));
  return tfl.model({ inputs: input, outputs: on(tfl.layers.softmax(), logits) });
}

/** EfficientNet-B0 (Tan & Le 2019): 16 MBConv blocks, swish, squeeze-excitation. */
export function efficientNetB0(size: number, classes = 10): tfl.LayersModel {
  const s = seeds(30_000);
  const unit = convUnit(s);
  const input = tfl.input({ shape: [size, size, 3] });
  let x = unit(on(tfl.layers.rescaling({ scale: 1 / 255 }), input), 32, 3, 2, swish);
  // expansion, kernel, stride, input, output, repeats
  const blocks: [number, number, number, number, number, number][] = [[1, 3, 1, 32, 16, 1], [6, 3, 2, 16, 24, 2], [6, 5, 2, 24, 40, 2], [6, 3, 2, 40, 80, 3], [6, 5, 1, 80, 112, 3], [6, 5, 2, 112, 192, 4], [6, 3, 1, 192, 320, 1]];
  for (const [t, k, stride, cin, cout, repeats] of blocks) {
    for (let i = 0; i < repeats; i++) {
      const [inputs, strides] = i === 0 ? [cin, stride] : [cout, 1];
      let h = t === 1 ? x : unit(x, inputs * t, 1, 1, swish);
      h = swish(depthwise(s, h, k, strides));
      h = squeezeExcite(s, h, inputs * t, Math.max(1, Math.floor(inputs * 0.25)), swish, (g) => on(tfl.layers.activation({ activation: 'sigmoid' }), g));
      h = unit(h, cout, 1);
      x = strides === 1 && inputs === cout ? on(tfl.layers.add(), [on(tfl.layers.dropout({ rate: 0.2 }), h), x]) : h;
    }
  }
  x = unit(x, 1280, 1, 1, swish);
  return tfl.model({ inputs: input, outputs: head(s, on(tfl.layers.dropout({ rate: 0.2 }), x), classes) });
}

/** ResNet-50 (He et al. 2016): 16 bottleneck blocks in stages of 3, 4, 6, 3. */
export function resNet50(size: number, classes = 10): tfl.LayersModel {
  const s = seeds(40_000);
  const unit = convUnit(s);
  const input = tfl.input({ shape: [size, size, 3] });
  let x = unit(on(tfl.layers.zeroPadding2d({ padding: 3 }), input), 64, 7, 2, relu, 'valid');
  x = on(tfl.layers.maxPooling2d({ poolSize: 3, strides: 2 }), on(tfl.layers.zeroPadding2d({ padding: 1 }), x));
  const stages: [number, number][] = [[64, 3], [128, 4], [256, 6], [512, 3]];
  stages.forEach(([filters, blocks], stage) => {
    for (let i = 0; i < blocks; i++) {
      const strides = i === 0 && stage > 0 ? 2 : 1;
      const shortcut = i === 0 ? unit(x, 4 * filters, 1, strides) : x;
      let h = unit(x, filters, 1, strides, relu);
      h = unit(h, filters, 3, 1, relu);
      h = unit(h, 4 * filters, 1);
      x = relu(on(tfl.layers.add(), [shortcut, h]));
    }
  });
  return tfl.model({ inputs: input, outputs: head(s, x, classes) });
}

/** DenseNet-121 (Huang et al. 2017): dense blocks of 6, 12, 24, 16 layers, growth 32, compression ½. */
export function denseNet121(size: number, classes = 10): tfl.LayersModel {
  const s = seeds(50_000);
  const input = tfl.input({ shape: [size, size, 3] });
  const bnRelu = (t: ST) => relu(on(tfl.layers.batchNormalization({}), t));
  const conv = (t: ST, filters: number, kernelSize: number) => on(tfl.layers.conv2d({ filters, kernelSize, padding: 'same', useBias: false, kernelInitializer: s.kernel() }), t);
  let x = bnRelu(on(tfl.layers.conv2d({ filters: 64, kernelSize: 7, strides: 2, useBias: false, kernelInitializer: s.kernel() }), on(tfl.layers.zeroPadding2d({ padding: 3 }), input)));
  x = on(tfl.layers.maxPooling2d({ poolSize: 3, strides: 2 }), on(tfl.layers.zeroPadding2d({ padding: 1 }), x));
  let channels = 64;
  [6, 12, 24, 16].forEach((layers, b) => {
    for (let i = 0; i < layers; i++) {
      const h = conv(bnRelu(conv(bnRelu(x), 128, 1)), 32, 3);
      x = on(tfl.layers.concatenate(), [x, h]);
      channels += 32;
    }
    if (b < 3) {
      channels = Math.floor(channels / 2);
      x = on(tfl.layers.averagePooling2d({ poolSize: 2, strides: 2 }), conv(bnRelu(x), channels, 1));
    }
  });
  return tfl.model({ inputs: input, outputs: head(s, bnRelu(x), classes) });
}

/** VGG-16 (Simonyan & Zisserman 2015): 13 convs in 5 blocks; the classifier's widths are a parameter (4,096 in the paper). */
export function vgg16(size: number, classes = 10, width = 4096): tfl.LayersModel {
  const s = seeds(60_000);
  const input = tfl.input({ shape: [size, size, 3] });
  let x = input;
  for (const [filters, convs] of [[64, 2], [128, 2], [256, 3], [512, 3], [512, 3]] as const) {
    for (let i = 0; i < convs; i++) x = on(tfl.layers.conv2d({ filters, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: s.kernel() }), x);
    x = on(tfl.layers.maxPooling2d({ poolSize: 2 }), x);
  }
  x = on(tfl.layers.flatten(), x);
  x = on(tfl.layers.dense({ units: width, activation: 'relu', kernelInitializer: s.dense() }), x);
  x = on(tfl.layers.dense({ units: width, activation: 'relu', kernelInitializer: s.dense(), name: 'features' }), x);
  return tfl.model({ inputs: input, outputs: on(tfl.layers.dense({ units: classes, activation: 'softmax', kernelInitializer: s.dense() }), x) });
}

/** Xception (Chollet 2017): separable convolutions, entry, 8 middle and exit blocks (input ≥ 71×71). */
export function xception(size: number, classes = 10): tfl.LayersModel {
  const s = seeds(70_000);
  const unit = convUnit(s);
  const sep = (t: ST, filters: number) => on(tfl.layers.batchNormalization({}), on(tfl.layers.separableConv2d({ filters, kernelSize: 3, padding: 'same', useBias: false, depthwiseInitializer: s.kernel(), pointwiseInitializer: s.kernel() }), t));
  const input = tfl.input({ shape: [size, size, 3] });
  let x = unit(input, 32, 3, 2, relu, 'valid');
  x = unit(x, 64, 3, 1, relu, 'valid');
  const down = (t: ST, a: number, b: number, first: boolean) => {
    const shortcut = unit(t, b, 1, 2);
    let h = sep(first ? t : relu(t), a);
    h = sep(relu(h), b);
    return on(tfl.layers.add(), [on(tfl.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }), h), shortcut]);
  };
  x = down(x, 128, 128, true);
  x = down(x, 256, 256, false);
  x = down(x, 728, 728, false);
  for (let i = 0; i < 8; i++) x = on(tfl.layers.add(), [sep(relu(sep(relu(sep(relu(x), 728)), 728)), 728), x]);
  x = down(x, 728, 1024, false);
  x = relu(sep(relu(sep(x, 1536)), 2048));
  return tfl.model({ inputs: input, outputs: head(s, x, classes) });
}

/** A Conv1D audio classifier on a mono waveform: strided and dilated Conv1D stacks, max pools, global pool. */
export function audioConv1d(samples: number, classes = 10): tfl.LayersModel {
  const s = seeds(80_000);
  const input = tfl.input({ shape: [samples, 1] });
  let x = on(tfl.layers.conv1d({ filters: 16, kernelSize: 9, strides: 4, activation: 'relu', kernelInitializer: s.kernel() }), input);
  for (const [filters, dilationRate] of [[16, 2], [32, 4], [32, 8]] as const) {
    x = on(tfl.layers.conv1d({ filters, kernelSize: 3, dilationRate, padding: 'same', useBias: false, kernelInitializer: s.kernel() }), x);
    x = relu(on(tfl.layers.batchNormalization({}), x));
    x = on(tfl.layers.maxPooling1d({ poolSize: 2 }), x);
  }
  const features = on(tfl.layers.globalAveragePooling1d({ name: 'features' }), x);
  return tfl.model({ inputs: input, outputs: on(tfl.layers.dense({ units: classes, activation: 'softmax', kernelInitializer: s.dense() }), features) });
}

/**
 * A text classifier measured from its embedding: token ids [T] → Embedding(vocab, d) → a
 * bidirectional LSTM over the sequence (concat) → a GRU → Dense ('features', tanh) → Dense with
 * softmax. Returns the head after the Embedding ({@link splitAt}), whose input is the embedded
 * sequence [T, d]: token ids have no geometry.
 */
export function textClassifierHead(T: number, vocab = 5000, d = 32, classes = 4): tfl.LayersModel {
  const s = seeds(90_000);
  const rnn = () => ({ kernelInitializer: s.dense(), recurrentInitializer: s.dense() }); // (orthogonal needs a chained op in Node)
  const m = tfl.sequential({ name: 'text' });
  m.add(tfl.layers.embedding({ name: 'embed', inputDim: vocab, outputDim: d, inputLength: T, embeddingsInitializer: s.dense() }));
  m.add(tfl.layers.bidirectional({ layer: tfl.layers.lstm({ units: 32, returnSequences: true, ...rnn() }) as tfl.RNN, mergeMode: 'concat' }));
  m.add(tfl.layers.gru({ units: 32, ...rnn() }));
  m.add(tfl.layers.dense({ name: 'features', units: 16, activation: 'tanh', kernelInitializer: s.dense() }));
  m.add(tfl.layers.dense({ units: classes, activation: 'softmax', kernelInitializer: s.dense() }));
  const { head } = splitAt(m, 'embed');
  m.dispose();
  return head;
}

/** The architectures, each at the small input size the tests run it at. */
export const ARCHITECTURES: { name: string; build: () => tfl.LayersModel; inputShape: number[] }[] = [
  { name: 'MobileNetV2', build: () => mobileNetV2(32), inputShape: [32, 32, 3] },
  { name: 'MobileNetV3-Small', build: () => mobileNetV3Small(32), inputShape: [32, 32, 3] },
  { name: 'EfficientNet-B0', build: () => efficientNetB0(32), inputShape: [32, 32, 3] },
  { name: 'ResNet-50', build: () => resNet50(32), inputShape: [32, 32, 3] },
  { name: 'DenseNet-121', build: () => denseNet121(32), inputShape: [32, 32, 3] },
  { name: 'VGG-16 (classifier width 256)', build: () => vgg16(32, 10, 256), inputShape: [32, 32, 3] },
  { name: 'Xception', build: () => xception(71), inputShape: [71, 71, 3] },
  { name: 'Conv1D audio classifier', build: () => audioConv1d(1600), inputShape: [1600, 1] },
  { name: 'text classifier from its embedding (BiLSTM, GRU)', build: () => textClassifierHead(40), inputShape: [40, 32] },
];
