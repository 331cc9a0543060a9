/**
 * Choosing the tfjs backend in the browser. All four are imported here, so that their kernels are
 * registered before infogeo's `registerGradientKernels()` patches those of `cpu` and `wasm`.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgl';
import '@tensorflow/tfjs-backend-webgpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { registerGradientKernels } from '../../src/index.js';

/** The backends the page offers, fastest first on a machine with a GPU. */
export const BACKENDS = ['webgl', 'webgpu', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];

/** Whether `name` can be tried here: webgpu needs `navigator.gpu` (a secure context: https or localhost). */
export function offered(name: BackendName): boolean {
  return name !== 'webgpu' || 'gpu' in navigator;
}

// The wasm backend fetches its .wasm binary at run time: prepare.ts copies them into public/wasm/,
// which the site serves next to index.html.
setWasmPaths(new URL('./wasm/', document.baseURI).href);

let starting = 0;

/**
 * Whether a backend is starting: until it is ready, tfjs throws on `tf.memory()` and on every op
 * ("Backend 'wasm' has not yet been initialized"), so the page's periodic tensor count waits.
 */
export function backendStarting(): boolean {
  return starting > 0;
}

/**
 * Makes `name` the active backend and waits until it is ready; throws (and leaves the previous
 * backend active) if it cannot start. Then registers infogeo's gradient kernels: idempotent, and it
 * patches only `cpu` and `wasm` (webgl and webgpu have fast kernels of their own), but a backend's
 * kernels registered after the first call would replace the patched ones, so calling it on every
 * switch keeps it right.
 */
export async function useBackend(name: BackendName): Promise<string> {
  const previous = tf.getBackend();
  starting++;
  try {
    const ok = await tf.setBackend(name).catch(() => false);
    if (!ok) {
      if (previous) await tf.setBackend(previous);
      throw new Error(`the ${name} backend did not start${name === 'webgpu' ? ` (navigator.gpu: ${'gpu' in navigator ? 'present' : 'absent: WebGPU needs a recent browser and a secure context, https or localhost'})` : ''}`);
    }
    await tf.ready();
  } finally {
    starting--;
  }
  registerGradientKernels();
  return tf.getBackend();
}
