/**
 * The infogeo explorer: load a classifier (the bundled MNIST CNN or your own tfjs LayersModel) and
 * images (the bundled MNIST test digits or your own), then, for a chosen image:
 *
 * - G(x), the local data matrix (`localDataMatrix`): the prediction, tr G and the top eigenvectors;
 * - a horizontal path towards a target (`horizontalPath`) and an orthogonal path (`orthogonalPath`),
 *   a few steps per call so that the page redraws in between, with a Stop button (an AbortSignal);
 * - the plane through three images (`planeThroughPoints`, `scanPlane`): class, entropy and
 *   log-volume maps.
 *
 * Every action runs through `job()`: one at a time, buttons disabled meanwhile, errors (infogeo's
 * typed ones by name) shown in the error panel, buttons enabled again whatever happens. Every
 * tensor the page makes or receives from infogeo is disposed (infogeo's results belong to the
 * caller); the count in the top bar (`tf.memory().numTensors`) shows leaks.
 *
 * Query parameters: `?backend=webgl|webgpu|wasm|cpu` (default webgl), `?steps=N` (path length,
 * default 100), `?grid=N` (plane resolution, default 15), `?image=i&target=j&third=k` (gallery
 * indices). State for tests is mirrored on <body> as data-* attributes (see `mark`).
 */
import * as tf from '@tensorflow/tfjs-core';
import { horizontalPath, InfogeoError, localDataMatrix, orthogonalPath, planeThroughPoints, scanPlane } from '../../src/index.js';
import type { LeafPath, Target } from '../../src/index.js';
import { BACKENDS, backendStarting, offered, useBackend } from './backend.js';
import type { BackendName } from './backend.js';
import { CLASS_COLOURS, classLegend, colourBar, drawHeatMap, drawInput, drawSigned, finiteRange, rgb, viridis } from './draw.js';
import type { Normalisation } from './draw.js';
import { loadDigits, normalised, parseNormalisation, pictureFromFile, pixelBox } from './images.js';
import type { Picture } from './images.js';
import { loadModel, sortFiles } from './model.js';
import type { LoadedModel, ModelSource } from './model.js';

// ---------------------------------------------------------------------------------------------
// Page elements and state

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const canvas = (id: string) => $<HTMLCanvasElement>(id);
const params = new URLSearchParams(location.search);

/** Steps per call of a path function: the page redraws the current image after each call. */
const CHUNK = 5;
/** Eigenvectors of G drawn. */
const EIGENVECTORS = 4;
/** The bundled model and digits, written into public/ by prepare.ts. */
const BUNDLED: ModelSource = { kind: 'bundled', url: './model/model.json' };

const state = {
  loaded: undefined as LoadedModel | undefined,
  pictures: [] as Picture[],
  /** Gallery indices of the image, the target and the plane's third point. */
  chosen: { image: 0, target: 0, third: 0 },
  norm: { mean: [0], std: [1] } as Normalisation,
  /** The bundled digits' normalisation (the user's model starts with 0/1). */
  bundledNorm: { mean: [0], std: [1] } as Normalisation,
  trained: true,
  /** The running action's controller (the Stop button aborts it); undefined when idle. */
  running: undefined as AbortController | undefined,
  jobs: 0,
};

/** Mirrors state on <body data-*> for the end-to-end test (and for anyone curious in devtools). */
function mark(values: Record<string, string | number | undefined>): void {
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined) delete document.body.dataset[k];
    else document.body.dataset[k] = String(v);
  }
}

const status = (text: string) => ($('status').textContent = text);
function progress(done: number, total: number): void {
  const bar = $<HTMLProgressElement>('progress');
  bar.max = Math.max(total, 1);
  bar.value = done;
}
function showTensors(): void {
  if (backendStarting()) return; // tf.memory() throws until the new backend is ready
  $('tensors').textContent = `tensors: ${tf.memory().numTensors}`;
  mark({ tensors: tf.memory().numTensors });
}

/** The name of class c: the digit for the bundled model, else its index. */
const className = (c: number) => String(c);

// ---------------------------------------------------------------------------------------------
// Errors and jobs

/** Shows an error in the panel: infogeo's typed errors by class name, others by their name. */
function showError(e: unknown): void {
  const err = e instanceof Error ? e : new Error(String(e));
  const kind = e instanceof InfogeoError ? `infogeo ${err.name}` : err.name || 'Error';
  $('error-name').textContent = `${kind}:`;
  $('error-message').textContent = err.message;
  $('error').classList.add('shown');
  mark({ error: err.name || 'Error' });
  console.warn(err); // not console.error: the e2e test fails on console errors it did not cause on purpose
}
function clearError(): void {
  $('error').classList.remove('shown');
  mark({ error: undefined });
}

const isAbort = (e: unknown) => e instanceof DOMException && e.name === 'AbortError';

/**
 * Runs one action: nothing else can start meanwhile (the action controls are disabled), Stop
 * aborts its signal, and whatever happens the controls come back and the tensor count is updated.
 */
async function job(name: string, work: (signal: AbortSignal) => Promise<void>): Promise<void> {
  if (state.running) return;
  const controller = new AbortController();
  state.running = controller;
  setBusy(true);
  clearError();
  mark({ job: name });
  try {
    await work(controller.signal);
  } catch (e) {
    if (isAbort(e)) status(`${name}: stopped`);
    else {
      status(`${name}: failed (see the error above)`);
      showError(e);
    }
  } finally {
    state.running = undefined;
    setBusy(false);
    mark({ jobs: ++state.jobs });
    showTensors();
  }
}

function setBusy(busy: boolean): void {
  document.querySelectorAll<HTMLButtonElement | HTMLInputElement | HTMLSelectElement>('.action, #gallery button').forEach((el) => (el.disabled = busy));
  $<HTMLButtonElement>('stop').disabled = !busy;
  mark({ busy: busy ? 'true' : undefined });
}

// ---------------------------------------------------------------------------------------------
// Model, images, normalisation

function model(): LoadedModel {
  if (!state.loaded) throw new Error('no model is loaded');
  return state.loaded;
}

/** The chosen picture `which`, resized and normalised for the model (HWC). */
function chosenPixels(which: keyof typeof state.chosen): Float32Array {
  const picture = state.pictures[state.chosen[which]];
  if (!picture) throw new Error(`no ${which} image is chosen`);
  return normalised(picture, model().layout, state.norm);
}

/** The chosen picture `which` as a model input `[1, ...inputShape]` (the caller disposes it). */
function input(which: keyof typeof state.chosen): tf.Tensor {
  return tf.tensor(chosenPixels(which), [1, ...model().inputShape], 'float32');
}

/** Loads a model (disposing the previous one), shows what it is, and analyses the image. */
async function useModel(source: ModelSource, signal: AbortSignal): Promise<void> {
  status('loading the model…');
  const loaded = await loadModel(source);
  state.loaded?.model.dispose();
  state.loaded = loaded;
  const { model: m, inputShape, classes } = loaded;
  $('model-name').textContent = loaded.name;
  $('model-info').textContent = `input [${inputShape.join(', ')}], ${classes ?? '?'} classes, ${m.countParams().toLocaleString('en')} weights, ${m.layers.length} layers${source.kind === 'bundled' && !state.trained ? ' — untrained: run `npm run demo` for the trained checkpoint' : ''}`;
  mark({ model: source.kind === 'bundled' ? 'bundled' : 'user' });
  clearResults();
  $('layers').replaceChildren(...['logits', 'logProbs', ...m.layers.map((l) => l.name)].map((value) => Object.assign(document.createElement('option'), { value })));
  $<HTMLInputElement>('phi').value = '';
  setNormalisation(source.kind === 'bundled' ? state.bundledNorm : { mean: [0], std: [1] });
  drawChosen();
  await analyse(signal);
}

/** Empties every result panel (a new model makes them stale). */
function clearResults(): void {
  for (const id of ['prediction', 'trace', 'path-label', 'path-stats']) $(id).textContent = '–';
  for (const id of ['eigenvalues', 'eigenvectors', 'strip']) $(id).replaceChildren();
  mark({ prediction: undefined, probability: undefined, trace: undefined, msG: undefined, steps: undefined, pathDone: undefined });
  clearPlane();
}

/** Empties the plane's maps, legends and numbers (a new model, or a scan that failed or was stopped: they would show another scan's). */
function clearPlane(): void {
  $('plane-stats').textContent = '–';
  for (const id of ['legend-class', 'legend-entropy', 'legend-volume']) $(id).replaceChildren();
  for (const id of ['map-class', 'map-entropy', 'map-volume']) canvas(id).getContext('2d')!.clearRect(0, 0, canvas(id).width, canvas(id).height);
  mark({ planeDone: undefined, planeClasses: undefined });
}

function setNormalisation(norm: Normalisation): void {
  state.norm = norm;
  $<HTMLInputElement>('mean').value = norm.mean.join(', ');
  $<HTMLInputElement>('std').value = norm.std.join(', ');
}

/** Draws the gallery: one thumbnail per picture, framed in the colour of its role. */
function drawGallery(): void {
  const gallery = $('gallery');
  gallery.replaceChildren(
    ...state.pictures.map((p, i) => {
      const button = document.createElement('button');
      button.title = p.name;
      button.dataset['index'] = String(i);
      for (const role of ['image', 'target', 'third'] as const) if (state.chosen[role] === i) button.classList.add(role);
      const thumb = document.createElement('canvas');
      [thumb.width, thumb.height] = [p.canvas.width, p.canvas.height];
      thumb.getContext('2d')!.drawImage(p.canvas, 0, 0);
      button.append(thumb);
      button.onclick = () => choose(i);
      return button;
    }),
  );
}

/** A click on thumbnail i: sets the role picked with the radio buttons; a new image is analysed. */
function choose(i: number): void {
  const role = (document.querySelector<HTMLInputElement>('input[name=pick]:checked')?.value ?? 'image') as keyof typeof state.chosen;
  state.chosen[role] = i;
  drawGallery();
  if (!state.loaded) return;
  void job(role === 'image' ? 'G(x)' : 'choose', async (signal) => {
    drawChosen();
    if (role === 'image') await analyse(signal);
  });
}

/** Draws the chosen pictures as the model sees them (resized, normalised and drawn back). */
function drawChosen(): void {
  const { layout } = model();
  const show = (which: keyof typeof state.chosen, ids: string[]) => {
    const values = chosenPixels(which);
    for (const id of ids) drawInput(canvas(id), values, layout, state.norm);
  };
  show('image', ['image', 'path-source', 'path-current', 'plane-1']);
  show('target', ['path-target', 'plane-2']);
  show('third', ['plane-3']);
}

// ---------------------------------------------------------------------------------------------
// G(x): prediction, trace, eigenvectors

async function analyse(signal: AbortSignal): Promise<void> {
  const { model: m, layout } = model();
  status('computing G(x)…');
  const x = input('image');
  try {
    const t0 = performance.now();
    const { G, probs } = await localDataMatrix(m, x, { signal });
    try {
      const p = await probs.data();
      const best = p.indexOf(Math.max(...p));
      const [trace] = await G.trace();
      const { values, vectors } = await G.eig();
      try {
        const v = await vectors.data();
        const n = vectors.shape[2];
        const ev = values[0] ?? new Float64Array(0);
        const boxes = Array.from({ length: Math.min(EIGENVECTORS, ev.length) }, (_, k) => {
          const fig = document.createElement('figure');
          const c = Object.assign(document.createElement('canvas'), { className: 'small' });
          drawSigned(c, v.subarray(k * n, (k + 1) * n), layout);
          const cap = Object.assign(document.createElement('figcaption'), { textContent: `v${k + 1}, λ = ${(ev[k] as number).toExponential(2)}` });
          fig.append(c, cap);
          return fig;
        });
        $('eigenvectors').replaceChildren(...boxes);
        $('eigenvalues').textContent = `rank ${ev.length}; eigenvalues ${Array.from(ev, (l) => l.toExponential(1)).join(', ')}`;
      } finally {
        vectors.dispose();
      }
      const ms = performance.now() - t0;
      $('prediction').textContent = `label ${className(best)}, p = ${(p[best] as number).toFixed(3)}`;
      $('trace').textContent = (trace as number).toPrecision(4);
      mark({ prediction: best, probability: (p[best] as number).toFixed(4), trace: trace as number, msG: ms.toFixed(0) });
      status(`G(x) in ${ms.toFixed(0)} ms on ${tf.getBackend()}`);
    } finally {
      G.dispose();
      probs.dispose();
    }
  } finally {
    x.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// Paths

/**
 * Walks `steps` steps of a horizontal path (towards the target) or an orthogonal path (along one
 * random direction drawn once, projected on ker G at every step), CHUNK steps per call: after each
 * call the last frame becomes the next call's start and is drawn.
 */
async function walk(kind: 'horizontal' | 'orthogonal', signal: AbortSignal): Promise<void> {
  const { model: m, layout } = model();
  const total = Math.max(1, Math.round(Number($<HTMLInputElement>('steps').value)));
  const stepSize = Number($<HTMLInputElement>('step-size').value);
  const source = input('image');
  const target = kind === 'horizontal' ? input('target') : undefined;
  const direction = kind === 'orthogonal' ? tf.randomNormal(source.shape, 0, 1, 'float32', 1) : undefined;
  let x = tf.clone(source);
  let done = 0;
  let firstChunkMs = 0;
  const t0 = performance.now();
  $('strip').replaceChildren();
  mark({ path: kind, steps: 0, pathDone: undefined, msPerStep: undefined });
  progress(0, total);
  status(`${kind} path: starting on ${tf.getBackend()}…`);
  try {
    while (done < total && !signal.aborted) {
      const options = {
        maxSteps: Math.min(CHUNK, total - done),
        stepSize,
        clamp: pixelBox(state.norm),
        recordEvery: CHUNK,
        signal,
        onStep: (s: { step: number }) => progress(done + s.step, total),
      };
      const tc = performance.now();
      const [path] = kind === 'horizontal' ? await horizontalPath(m, x, target!, options) : await orthogonalPath(m, x, { ...options, direction: direction! });
      const p = path as LeafPath;
      const next = tf.slice(p.frames, p.frames.shape[0] - 1, 1);
      p.frames.dispose();
      x.dispose();
      x = next;
      if (done === 0) firstChunkMs = performance.now() - tc;
      done += p.steps;
      const values = await x.data();
      drawInput(canvas('path-current'), values, layout, state.norm);
      addToStrip(values);
      // Distance to the target (horizontal) or from the start of the whole walk (orthogonal).
      const distance = kind === 'horizontal' ? (p.distances.at(-1) as number) : await distanceBetween(x, source);
      const label = p.predicted.at(-1) as number;
      const prob = p.probability.at(-1) as number;
      const trace = p.traceG.at(-1) as number;
      // The first call compiles the backend's shaders/kernels: the time per step leaves it out when it can.
      const steady = done > CHUNK ? (performance.now() - t0 - firstChunkMs) / (done - CHUNK) : (performance.now() - t0) / Math.max(done, 1);
      $('path-label').textContent = `step ${done}: label ${className(label)}, p = ${prob.toFixed(3)}`;
      $('path-stats').textContent = `tr G = ${Number.isNaN(trace) ? '–' : trace.toPrecision(3)} · ${kind === 'horizontal' ? 'distance to the target' : 'distance from the image'} ${distance.toFixed(2)} · ${steady.toFixed(0)} ms per step on ${tf.getBackend()}`;
      status(`${kind} path: ${done} of ${total} steps, ${steady.toFixed(0)} ms per step on ${tf.getBackend()}`);
      mark({ steps: done, msPerStep: steady.toFixed(1), pathLabel: label });
      if (p.stopReason !== 'maxSteps') {
        status(`${kind} path: ${p.stopReason === 'aborted' ? 'stopped' : p.stopReason} after ${done} steps (distance ${distance.toFixed(2)})`);
        break;
      }
    }
    if (signal.aborted) status(`${kind} path: stopped after ${done} steps`);
  } finally {
    tf.dispose([x, source, ...(target ? [target] : []), ...(direction ? [direction] : [])]);
    mark({ pathDone: 'true' });
  }
}

async function distanceBetween(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const d = tf.tidy(() => tf.norm(tf.sub(a, b)));
  const [v] = await d.data();
  d.dispose();
  return v as number;
}

/** Adds a frame to the film strip under the path (at most 40 kept). */
function addToStrip(values: ArrayLike<number>): void {
  const strip = $('strip');
  const c = document.createElement('canvas');
  drawInput(c, values, model().layout, state.norm);
  strip.append(c);
  while (strip.children.length > 40) strip.firstElementChild!.remove();
}

// ---------------------------------------------------------------------------------------------
// The plane through three images

async function scan(signal: AbortSignal): Promise<void> {
  const { model: m } = model();
  const steps = Math.max(2, Math.round(Number($<HTMLInputElement>('grid').value)));
  const volume = $<HTMLSelectElement>('volume').value as 'plane' | 'effective';
  const range: [number, number] = [-1, 1];
  // Φ: blank for infogeo's default (the layer that feeds the last one), 'logits', 'logProbs' or a layer's name.
  const phi = $<HTMLInputElement>('phi').value.trim();
  const target: Target | undefined = phi === '' ? undefined : phi === 'logits' || phi === 'logProbs' ? phi : { layer: phi };
  const points = tf.tidy(() => {
    const [a, b, c] = [input('image'), input('target'), input('third')];
    return tf.concat([a, b, c], 0);
  });
  let plane: ReturnType<typeof planeThroughPoints> | undefined;
  mark({ planeDone: undefined, planeClasses: undefined });
  try {
    plane = planeThroughPoints(points);
    const t0 = performance.now();
    progress(0, steps * steps);
    status(`scanning the plane: ${steps} × ${steps} points…`);
    const result = await scanPlane(m, plane, {
      steps,
      range,
      volume,
      ...(target ? { target } : {}),
      signal,
      onProgress: ({ done, total }) => {
        progress(done, total);
        status(`scanning the plane: ${done} of ${total} points, ${((performance.now() - t0) / done).toFixed(0)} ms per point on ${tf.getBackend()}`);
      },
    });
    const grid = { steps, range, anchors: plane.anchors };
    const classes = [...new Set(result.predicted)].sort((a, b) => a - b);
    drawHeatMap(canvas('map-class'), grid, (i) => CLASS_COLOURS[(result.predicted[i] as number) % CLASS_COLOURS.length]!);
    classLegend($('legend-class'), classes, className);
    const [h0, h1] = finiteRange(result.entropy);
    drawHeatMap(canvas('map-entropy'), grid, (i) => rgb(viridis(((result.entropy[i] as number) - h0) / (h1 - h0))));
    colourBar($('legend-entropy'), h0, h1);
    const [v0, v1] = finiteRange(result.logVolume);
    drawHeatMap(canvas('map-volume'), grid, (i) => (Number.isFinite(result.logVolume[i]) ? rgb(viridis(((result.logVolume[i] as number) - v0) / (v1 - v0))) : '#ccc'));
    colourBar($('legend-volume'), v0, v1);
    const ms = (performance.now() - t0) / (steps * steps);
    $('plane-stats').textContent = `${steps * steps} points, ${classes.length} classes, ${ms.toFixed(0)} ms per point on ${tf.getBackend()}`;
    status(`plane scanned in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    mark({ planeDone: 'true', planeClasses: classes.length, msPerPoint: ms.toFixed(1) });
  } catch (e) {
    clearPlane(); // the previous scan's maps are not this one's
    throw e;
  } finally {
    points.dispose();
    plane?.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// Wiring

/** Loads files picked or dropped: a model (a .json and its weights) and/or images. */
async function useFiles(files: File[], signal: AbortSignal): Promise<void> {
  const { json, weights, images } = sortFiles(files);
  if (!json && images.length === 0) throw new Error(`no model.json and no image among ${files.map((f) => f.name).join(', ')}`);
  if (images.length > 0) {
    const added = await Promise.all(images.map(pictureFromFile));
    const first = state.pictures.length;
    state.pictures.push(...added);
    state.chosen.image = first;
    drawGallery();
  }
  if (json) await useModel({ kind: 'files', json, weights }, signal);
  else {
    drawChosen();
    await analyse(signal);
  }
}

async function switchBackend(name: BackendName, signal: AbortSignal): Promise<void> {
  status(`starting ${name}…`);
  try {
    await useBackend(name);
  } finally {
    $<HTMLSelectElement>('backend').value = tf.getBackend();
    mark({ backend: tf.getBackend() });
  }
  // Reload the model so that its weights live on the new backend.
  await useModel(model().source, signal);
}

function wire(): void {
  const select = $<HTMLSelectElement>('backend');
  select.replaceChildren(...BACKENDS.filter(offered).map((b) => Object.assign(document.createElement('option'), { value: b, textContent: b })));
  select.value = tf.getBackend();
  select.onchange = () => void job('backend', (s) => switchBackend(select.value as BackendName, s));
  $('stop').onclick = () => state.running?.abort();
  $('error-close').onclick = clearError;
  $('bundled').onclick = () => void job('load', (s) => useModel(BUNDLED, s));
  const modelFiles = $<HTMLInputElement>('model-files');
  modelFiles.onchange = () => {
    const files = Array.from(modelFiles.files ?? []);
    modelFiles.value = '';
    void job('load', (s) => useFiles(files, s));
  };
  const imageFiles = $<HTMLInputElement>('image-files');
  imageFiles.onchange = () => {
    const files = Array.from(imageFiles.files ?? []);
    imageFiles.value = '';
    void job('images', (s) => useFiles(files, s));
  };
  $('apply-norm').onclick = () =>
    void job('normalisation', async (s) => {
      setNormalisation(parseNormalisation($<HTMLInputElement>('mean').value, $<HTMLInputElement>('std').value, model().layout.channels));
      drawChosen();
      await analyse(s);
    });
  $('horizontal').onclick = () => void job('horizontal path', (s) => walk('horizontal', s));
  $('orthogonal').onclick = () => void job('orthogonal path', (s) => walk('orthogonal', s));
  $('scan').onclick = () => void job('plane', scan);
  // Drop anywhere: a model's files and/or images.
  document.addEventListener('dragover', (e) => {
    e.preventDefault();
    document.body.classList.add('dragging');
  });
  document.addEventListener('dragleave', () => document.body.classList.remove('dragging'));
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    document.body.classList.remove('dragging');
    const files = Array.from(e.dataTransfer?.files ?? []);
    if (files.length > 0) void job('load', (s) => useFiles(files, s));
  });
  setInterval(showTensors, 1000);
}

async function start(): Promise<void> {
  const wanted = (params.get('backend') ?? 'webgl') as BackendName;
  $<HTMLInputElement>('steps').value = params.get('steps') ?? '100';
  $<HTMLInputElement>('grid').value = params.get('grid') ?? '15';
  // The backend asked for, else webgl, else cpu (which always starts); a fallback is reported below.
  let fallback: Error | undefined;
  for (const name of [...new Set([BACKENDS.includes(wanted) ? wanted : 'webgl', 'webgl', 'cpu'] as BackendName[])]) {
    try {
      await useBackend(name);
      break;
    } catch (e) {
      fallback ??= e as Error;
    }
  }
  mark({ backend: tf.getBackend() });
  const digits = await loadDigits('./digits.json');
  state.pictures = digits.pictures;
  state.bundledNorm = digits.norm;
  state.trained = digits.trained;
  // Defaults: a 7, a 1 and a 0 (the digits are sorted by class, three of each), or the query's.
  const first = (label: number) => Math.max(0, state.pictures.findIndex((p) => p.label === label));
  const index = (name: string, fallback: number) => {
    const i = Number(params.get(name));
    return params.has(name) && Number.isInteger(i) && i >= 0 && i < state.pictures.length ? i : fallback;
  };
  state.chosen = { image: index('image', first(7)), target: index('target', first(1)), third: index('third', first(0)) };
  drawGallery();
  wire();
  await job('load', (s) => useModel(BUNDLED, s));
  if (fallback && !document.body.dataset['error']) showError(new Error(`${fallback.message}: the page runs on ${tf.getBackend()}`));
  mark({ ready: 'true' });
}

start().catch((e: unknown) => {
  status('the page could not start');
  showError(e);
});
