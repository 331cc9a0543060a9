/** The benchmarked models; bench/torch_jacobian.py builds the same architectures in PyTorch. */
import type * as tfl from '@tensorflow/tfjs-layers';
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
};
