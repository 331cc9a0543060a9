/** The benchmarked models; bench/torch_jacobian.py builds the same architectures in PyTorch. */
import * as tfl from '@tensorflow/tfjs-layers';
import { cifarResnet, mnistCnn, randomizeBatchNorm } from '../examples/models.js';

export const BENCH_MODELS: Record<string, { build: () => tfl.LayersModel; inputShape: number[]; label: string }> = {
  'mnist-cnn': { build: () => mnistCnn(1), inputShape: [28, 28, 1], label: 'MNIST CNN (conv32-conv64-maxpool-dense128-dense10), 28×28×1' },
  'cifar-resnet': {
    build: () => {
      const m = cifarResnet(1);
      randomizeBatchNorm(m);
      return m;
    },
    inputShape: [32, 32, 3],
    label: 'CIFAR ResNet-8 (16-32-64, BatchNorm, 1×1 shortcuts), 32×32×3',
  },
  'imagenet-small': {
    build: () => {
      const input = tfl.input({ shape: [224, 224, 3] });
      const c = tfl.layers.conv2d({ filters: 16, kernelSize: 7, strides: 4, activation: 'relu', kernelInitializer: tfl.initializers.heNormal({ seed: 1 }) }).apply(input) as tfl.SymbolicTensor;
      const g = tfl.layers.globalAveragePooling2d({}).apply(c) as tfl.SymbolicTensor;
      const out = tfl.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) }).apply(g) as tfl.SymbolicTensor;
      return tfl.model({ inputs: input, outputs: out });
    },
    inputShape: [224, 224, 3],
    label: 'ImageNet-sized input, small model (conv16 7×7/4, global pooling, dense10), 224×224×3',
  },
};
