/**
 * Full architectures (tests/zoo/architectures.ts: MobileNetV2, MobileNetV3-Small, EfficientNet-B0,
 * ResNet-50, DenseNet-121, VGG-16, Xception, a Conv1D audio classifier, a BiLSTM/GRU text classifier
 * from its embedding) at small input sizes, with
 * random weights: every one runs on infogeo's graph (no tf.grad fallback, for the logits, the
 * log-probabilities and the penultimate features), and its logit Jacobian equals tf.grad's — one
 * backward pass of all rows ('tiled') through the zoo's twin, whose BatchNorms are diagonal Dense
 * layers and dilated convs undilated ones, so that nothing of infogeo's enters the reference.
 * On wasm only (vitest.config.ts): on cpu's JavaScript kernels the file takes ~160 s.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { inputJacobian, wrapClassifier } from '../src/index.js';
import type { Target } from '../src/index.js';
import { graphFor } from '../src/jacobian/linearize.js';
import { ARCHITECTURES } from './zoo/architectures.js';
import { gradTwin } from './zoo/models.js';
import { expectClose, expectNoLeak, randn } from './helpers.js';

describe.each(ARCHITECTURES)('$name', ({ build, inputShape }) => {
  it("runs on infogeo's graph, and its logit Jacobian equals tf.grad's through the twin; no leaks", async () => {
    const model = build();
    const clf = wrapClassifier(model);
    for (const target of ['logits', 'logProbs', { layer: 'features' }] as Target[]) {
      const graph = graphFor(clf, target);
      expect('reason' in graph ? graph.reason : 'graph', JSON.stringify(target)).toBe('graph');
    }
    const x = randn([1, ...inputShape], 5);
    const J = await expectNoLeak(() => inputJacobian(model, x, { target: 'logits', strategy: 'graph', flatten: true }), (r) => [r]);
    const twin = gradTwin(model);
    const ref = await inputJacobian(twin, x, { target: 'logits', strategy: 'tiled', flatten: true });
    // The same derivatives summed in another order through up to 121 layers: float32 rounding,
    // measured 2.8e-7 (the audio net) to 2.3e-6 (VGG-16) of the largest entry on wasm.
    expectClose(J, ref, { rtol: 1e-5, label: 'logits' });
    tf.dispose([x, J, ref]);
    if (twin !== model) twin.dispose();
    model.dispose();
  });
});
