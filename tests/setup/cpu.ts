import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { registerGradientKernels } from '../../src/index.js';

tf.env().set('PROD', true); // silences tfjs's "install tfjs-node" banner (IS_TEST would turn on tfjs's own kernel leak checks, which stock wasm ops fail)

await tf.setBackend('cpu');
await tf.ready();
registerGradientKernels();
