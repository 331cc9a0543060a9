/** What every benchmark worker does first: start the backend, register the kernels, build the model and a batch. */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { registerGradientKernels } from '../src/index.js';
import { useWasmBackend } from '../src/backends/wasm.js';
import { BENCH_MODELS } from './models.js';

export async function setupWorker(backend: string, modelName: string, B: number) {
  tf.env().set('PROD', true); // no "install tfjs-node" banner
  if (backend === 'wasm') await useWasmBackend();
  else await tf.setBackend(backend);
  registerGradientKernels();
  const spec = BENCH_MODELS[modelName];
  if (!spec) throw new Error(`unknown model ${modelName}; known: ${Object.keys(BENCH_MODELS).join(', ')}`);
  const model = spec.build();
  const x = tf.randomNormal([B, ...spec.inputShape], 0, 1, 'float32', 1);
  return { model, x, spec };
}
