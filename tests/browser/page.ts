/**
 * The page of tests/browser/run.ts: `?backend=webgl|webgpu|cpu` starts that backend (or says why it
 * cannot), runs the suite and puts its JSON in `document.body.dataset.result`.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgl';
import '@tensorflow/tfjs-backend-webgpu';
import { registerGradientKernels } from '../../src/index.js';
import { runSuite } from './suite.js';

const wanted = new URLSearchParams(location.search).get('backend') ?? 'webgl';
const done = (result: unknown) => {
  document.body.dataset['result'] = JSON.stringify(result);
  (document.getElementById('status') as HTMLElement).textContent = 'done';
};
try {
  const ok = await tf.setBackend(wanted).catch(() => false);
  if (!ok || tf.getBackend() !== wanted) {
    done({ backend: tf.getBackend(), unavailable: `backend '${wanted}' did not start${wanted === 'webgpu' ? ` (navigator.gpu: ${'gpu' in navigator})` : ''}` });
  } else {
    await tf.ready();
    registerGradientKernels();
    done(await runSuite());
  }
} catch (e) {
  done({ backend: tf.getBackend(), failed: e instanceof Error ? `${e.name}: ${e.message}\n${e.stack}` : String(e) });
}
