/**
 * The browser demo: load the MNIST CNN checkpoint and draw a horizontal path step by step, on the
 * webgl backend (cpu when WebGL is unavailable). `?backend=cpu` forces the cpu backend, `?steps=N`
 * sets the length of the walk (default 200).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgl';
import * as tfl from '@tensorflow/tfjs-layers';
import { horizontalPath, registerGradientKernels } from '../../src/index.js';

interface Digits {
  mean: number;
  std: number;
  source: number[];
  target: number[];
  labels: [number, number];
  trained: boolean;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const status = (text: string) => ($('status').textContent = text);

/** Draws a normalised 28 × 28 image (values (p − mean)/std) in greyscale. */
function draw(canvas: HTMLCanvasElement, values: ArrayLike<number>, d: Digits): void {
  const ctx = canvas.getContext('2d')!;
  const img = ctx.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    const g = Math.round(255 * Math.min(1, Math.max(0, (values[i] as number) * d.std + d.mean)));
    img.data.set([g, g, g, 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
}

async function start(): Promise<void> {
  const params = new URLSearchParams(location.search);
  const wanted = params.get('backend') ?? 'webgl';
  const steps = Math.max(10, Math.round(Number(params.get('steps') ?? 200) / 10) * 10);
  const ok = await tf.setBackend(wanted).catch(() => false);
  if (!ok) await tf.setBackend('cpu');
  await tf.ready();
  registerGradientKernels();
  const [model, digits] = await Promise.all([tfl.loadLayersModel('./model/model.json'), fetch('./digits.json').then((r) => r.json() as Promise<Digits>)]);
  draw($('source'), digits.source, digits);
  draw($('current'), digits.source, digits);
  draw($('target'), digits.target, digits);
  const backend = tf.getBackend();
  document.body.dataset['backend'] = backend;
  status(`ready on the ${backend} backend${digits.trained ? '' : ' (untrained model: run `npm run demo` first for the trained one)'}`);
  const button = $<HTMLButtonElement>('walk');
  button.textContent = `Walk ${steps} steps`;
  button.disabled = false;
  button.onclick = async () => {
    button.disabled = true;
    const target = tf.tensor4d(digits.target, [1, 28, 28, 1]);
    const lo = -digits.mean / digits.std;
    const hi = (1 - digits.mean) / digits.std;
    let x = tf.tensor4d(digits.source, [1, 28, 28, 1]);
    let total = 0;
    const t0 = performance.now();
    try {
      // Calls of 10 steps: the page redraws between them.
      for (let chunk = 0; chunk < steps / 10; chunk++) {
        const [path] = await horizontalPath(model, x, target, { maxSteps: 10, clamp: [lo, hi], recordEvery: 10 });
        const last = path!.frames.shape[0] - 1;
        const next = tf.slice(path!.frames, last, 1);
        draw($('current'), await next.data(), digits);
        tf.dispose([x, path!.frames]);
        x = next as tf.Tensor4D;
        total += path!.steps;
        $('label').textContent = `step ${total}: label ${path!.predicted.at(-1)}, p = ${(path!.probability.at(-1) as number).toFixed(3)}`;
        status(`distance to the target ${path!.distances.at(-1)!.toFixed(2)} · ${((performance.now() - t0) / total).toFixed(0)} ms per step on ${backend}`);
        document.body.dataset['steps'] = String(total);
        if (path!.stopReason !== 'maxSteps') {
          status(`stopped (${path!.stopReason}) after ${total} steps, distance ${path!.distances.at(-1)!.toFixed(2)}`);
          break;
        }
      }
    } finally {
      tf.dispose([x, target]);
      document.body.dataset['done'] = 'true';
      button.disabled = false;
    }
  };
}

start().catch((e: unknown) => {
  status(`error: ${(e as Error).message}`);
  document.body.dataset['error'] = (e as Error).message;
});
