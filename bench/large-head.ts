/**
 * `npx tsx bench/large-head.ts [size] [classes]`: G(x) of MobileNetV2 (tests/zoo/architectures.ts,
 * random weights) with a 1,000-class head at 224×224, one image, on wasm with the default memory
 * budget: wall time, the wasm heap's size and the process's peak RSS (sampled every 50 ms), tr G,
 * and that nothing leaked. Writes bench/results/large-head.json and .md.
 *
 * The heap of a wasm instance never shrinks: its size after the call is the peak of the call (plus
 * the model and the input, which were there before).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { localDataMatrix, registerGradientKernels } from '../src/index.js';
import { useWasmBackend } from '../src/backends/wasm.js';
import { mobileNetV2 } from '../tests/zoo/architectures.js';

const size = Number(process.argv[2] ?? 224);
const classes = Number(process.argv[3] ?? 1000);
tf.env().set('PROD', true);
await useWasmBackend();
registerGradientKernels();
const heap = () => (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.length;
const MB = 1024 * 1024;

const model = mobileNetV2(size, classes);
const x = tf.randomNormal([1, size, size, 3], 0, 1, 'float32', 1);
const before = { tensors: tf.memory().numTensors, heap: heap(), rss: process.memoryUsage().rss };
let peakRss = before.rss;
const timer = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
const t0 = performance.now();
const { G, probs } = await localDataMatrix(model, x);
const seconds = (performance.now() - t0) / 1000;
clearInterval(timer);
peakRss = Math.max(peakRss, process.memoryUsage().rss);
const trace = (await G.trace())[0] as number;
const factorMB = (G.factor.size * 4) / MB;
G.dispose();
probs.dispose();
const leaked = tf.memory().numTensors - before.tensors;
const result = {
  cpu: cpus()[0]?.model ?? 'unknown',
  node: process.version,
  backend: 'wasm',
  model: `MobileNetV2 ${size}×${size}×3, ${classes} classes (random weights)`,
  memoryBudgetMB: 256,
  seconds: Number(seconds.toFixed(1)),
  factorMB: Number(factorMB.toFixed(1)),
  heapBeforeMB: Number((before.heap / MB).toFixed(0)),
  heapAfterMB: Number((heap() / MB).toFixed(0)),
  peakRssMB: Number((peakRss / MB).toFixed(0)),
  rssBeforeMB: Number((before.rss / MB).toFixed(0)),
  traceG: trace,
  leakedTensors: leaked,
};
console.log(result);
const here = dirname(fileURLToPath(import.meta.url));
mkdirSync(join(here, 'results'), { recursive: true });
writeFileSync(join(here, 'results', 'large-head.json'), `${JSON.stringify(result, null, 2)}\n`);
writeFileSync(
  join(here, 'results', 'large-head.md'),
  [
    `# G(x) with a ${classes}-class head (\`npx tsx bench/large-head.ts ${size} ${classes}\`)`,
    '',
    `${result.model}, one image, wasm, default memory budget (256 MB), ${result.cpu}, Node ${result.node}.`,
    '',
    '| time | G\'s factor | wasm heap before → after | peak RSS (before) | leaked tensors |',
    '| ---: | ---: | ---: | ---: | ---: |',
    `| ${result.seconds} s | ${result.factorMB} MB | ${result.heapBeforeMB} → ${result.heapAfterMB} MB | ${result.peakRssMB} MB (${result.rssBeforeMB}) | ${leaked} |`,
    '',
  ].join('\n'),
);
process.exit(leaked === 0 ? 0 : 1);
