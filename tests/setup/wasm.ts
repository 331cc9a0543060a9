import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu'; // the kernel tests run tfjs's stock cpu kernels as an oracle
import { registerGradientKernels } from '../../src/index.js';
import { useWasmBackend } from '../../src/backends/wasm.js';

tf.env().set('PROD', true); // silences tfjs's "install tfjs-node" banner (IS_TEST would turn on tfjs's own kernel leak checks, which stock wasm ops fail)
await useWasmBackend();
registerGradientKernels();
if (tf.getBackend() !== 'wasm') throw new Error('wasm backend did not start');
