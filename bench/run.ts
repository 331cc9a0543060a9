/**
 * `npm run bench`: input-Jacobian throughput and peak memory of the Jacobian core, per backend,
 * model, batch size and strategy, with PyTorch on the same machine side by side when Debian's
 * python3-torch is installed. Writes bench/results/jacobian.json and bench/results/jacobian.md.
 *
 * Then the geometry built on it (issue 3): localDataMatrix + eig and distributionProjector at
 * n = 784, 3072 and 150,528, and per-sample Fisher rows of the MNIST CNN → bench/results/geometry.*.
 *
 * Options: --only jacobian|geometry, --quick (B ∈ {1, 8}, wasm only, strategy auto), --backends wasm,cpu, --models a,b,
 * --batches 1,8,32 (cpu, ~20× slower than wasm, defaults to 1,8), --strategies
 * auto,pool,graph,loop,tiled,softmax-chain (pool: auto on one worker thread per core; cpu runs only
 * auto and loop unless given), --seconds N (time per configuration), --pairs N (paired runs), --tasks a,b (geometry tasks to run; the table then holds only those).
 *
 * With PyTorch installed, the ratio that counts is measured in pairs: infogeo's recommended
 * configuration (wasm, a pool for B > 1) and then PyTorch, right after each other, N times per
 * (model, B). The rates of this shared machine drift by up to ±40 % over minutes, and the main
 * tables measure PyTorch minutes after infogeo; a pair is seconds apart.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BENCH_MODELS } from './models.js';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const opt = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? (args[i + 1] as string) : fallback;
};
const backends = opt('backends', quick ? 'wasm' : 'wasm,cpu').split(',');
const only = opt('only', 'all');
const models = opt('models', 'mnist-cnn,cifar-resnet').split(',');
const batches = opt('batches', quick ? '1,8' : '1,8,32').split(',').map(Number);
const batchesFor = (backend: string) => (backend === 'cpu' && !args.includes('--batches') ? batches.filter((b) => b <= 8) : batches);
const strategies = opt('strategies', quick ? 'auto,pool' : 'auto,pool,loop,tiled,softmax-chain').split(',');
// The cpu backend is ~20× slower than wasm: its tf.grad strategies would take most of the run.
const strategiesFor = (backend: string) => (backend === 'cpu' && !args.includes('--strategies') ? strategies.filter((s) => s === 'auto' || s === 'loop') : strategies);
const seconds = opt('seconds', quick ? '1' : '3');
const pairCount = Number(opt('pairs', quick ? '1' : '3'));
const TORCH_PYTHON = '/usr/bin/python3';
const TORCH_THREADS = 2;

type Row = { backend: string; model: string; B: number; strategy: string; medianMs: number; rowsPerSec: number; peakRssMB: number; reps: number };
type TorchRow = { model: string; B: number; strategy: string; rowsPerSec: number; medianMs: number; peakRssMB: number; torch: string; error?: string };

function runWorker(backend: string, model: string, B: number, strategy: string): Row | undefined {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(here, 'jacobian-worker.ts'), backend, model, String(B), strategy, seconds], {
    encoding: 'utf8',
    timeout: 20 * 60 * 1000,
  });
  const line = r.stdout.trim().split('\n').pop();
  if (r.status !== 0 || !line?.startsWith('{')) {
    console.error(`  failed: ${backend} ${model} B=${B} ${strategy}\n${r.stderr.slice(-2000)}`);
    return undefined;
  }
  return JSON.parse(line) as Row;
}

function torchAvailable(): string | undefined {
  const r = spawnSync(TORCH_PYTHON, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

function runTorch(model: string, bs: number[] = batches): TorchRow[] {
  const r = spawnSync(TORCH_PYTHON, [join(here, 'torch_jacobian.py'), model, String(TORCH_THREADS), ...bs.map(String)], {
    encoding: 'utf8',
    timeout: 20 * 60 * 1000,
  });
  if (r.status !== 0) {
    console.error(`  PyTorch failed on ${model}:\n${r.stderr.slice(-2000)}`);
    return [];
  }
  return r.stdout
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as TorchRow);
}

const machine = {
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  node: process.version,
  tfjs: '4.22.0',
  date: new Date().toISOString().slice(0, 10),
};
console.log(`infogeo bench: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}`);


function jacobianBench(): void {
const rows: Row[] = [];
for (const model of models) {
  for (const backend of backends) {
    for (const B of batchesFor(backend)) {
      for (const strategy of strategiesFor(backend)) {
        process.stdout.write(`  ${model} ${backend} B=${B} ${strategy} ... `);
        const row = runWorker(backend, model, B, strategy);
        if (row) {
          rows.push(row);
          console.log(`${row.rowsPerSec} rows/s, ${row.peakRssMB} MB`);
        }
      }
    }
  }
}

const torchVersion = torchAvailable();
const torchRows: TorchRow[] = [];
if (torchVersion) {
  console.log(`PyTorch ${torchVersion} (${TORCH_PYTHON}, ${TORCH_THREADS} threads):`);
  for (const model of models) {
    for (const r of runTorch(model)) {
      torchRows.push(r);
      console.log(`  ${model} B=${r.B} ${r.strategy}: ${r.error ?? `${r.rowsPerSec} rows/s`}`);
    }
  }
} else {
  console.log(`PyTorch: not found (${TORCH_PYTHON} cannot import torch); skipped. Install it with: apt-get install -y python3-torch`);
}

const bestTorch = (model: string, B: number) =>
  torchRows.filter((r) => r.model === model && r.B === B && !r.error).sort((a, b) => b.rowsPerSec - a.rowsPerSec)[0];

// Paired: infogeo (wasm, a pool for B > 1, as recommended) then PyTorch, seconds apart.
type Pair = { infogeo: number; torch: number; torchStrategy: string; ratio: number };
const paired: { model: string; B: number; strategy: string; pairs: Pair[]; medianRatio: number }[] = [];
if (torchVersion && pairCount > 0) {
  console.log(`Paired runs (${pairCount} per model and B):`);
  for (const model of models) {
    for (const B of batches) {
      const strategy = B > 1 ? 'pool' : 'auto';
      const pairs: Pair[] = [];
      for (let k = 0; k < pairCount; k++) {
        const ours = runWorker('wasm', model, B, strategy);
        const theirs = runTorch(model, [B]).filter((r) => !r.error).sort((a, b) => b.rowsPerSec - a.rowsPerSec)[0];
        if (ours && theirs) pairs.push({ infogeo: ours.rowsPerSec, torch: theirs.rowsPerSec, torchStrategy: theirs.strategy, ratio: theirs.rowsPerSec / ours.rowsPerSec });
      }
      const sorted = pairs.map((p) => p.ratio).sort((a, b) => a - b);
      const medianRatio = sorted.length % 2 ? (sorted[(sorted.length - 1) / 2] as number) : ((sorted[sorted.length / 2 - 1] as number) + (sorted[sorted.length / 2] as number)) / 2;
      paired.push({ model, B, strategy, pairs, medianRatio });
      console.log(`  ${model} B=${B} ${strategy}: ratios ${pairs.map((p) => p.ratio.toFixed(2)).join(', ')} (median ${medianRatio.toFixed(2)})`);
    }
  }
}

const lines: string[] = [];
lines.push('# Jacobian core benchmark', '');
lines.push(
  `Input Jacobian of the log-probabilities (10 rows per image), float32. Machine: ${machine.cpu}, ` +
    `${machine.cores} cores, ${machine.memoryGiB} GiB, Node ${machine.node}, tfjs ${machine.tfjs}, ${machine.date}. ` +
    `wasm runs one thread (SIMD, no threads in Node); 'pool' is 'auto' on a pool of one worker thread per core ` +
    `(\`createJacobianPool\` from \`infogeo/node\`), each with its own backend; 'auto' is infogeo's own reverse mode ('graph') ` +
    `for both models; infogeo's gradient kernels registered (the tf.grad strategies use them). ` +
    `Median of up to 5 runs (at least one, ${seconds} s per configuration) after a warm-up call on the same batch (on both sides); ` +
    `each configuration in a fresh process, so peak RSS is its own. On this shared 2-core machine the rates vary by ` +
    `about ±15 % from run to run, PyTorch's by up to ±40 % (see the paired table). Command: \`npm run bench${quick ? ':quick' : ''}\`.`,
  '',
);
if (torchVersion) {
  lines.push(
    `PyTorch ${torchVersion} (Debian python3-torch) on the same machine in the same run, ${TORCH_THREADS} threads, eval mode; ` +
      `best of a retain-graph loop (one forward, 10 backward passes) and functorch vmap(jacrev). ` +
      `"× slower" = PyTorch rows/s ÷ infogeo rows/s.`,
    '',
  );
} else {
  lines.push('PyTorch was not installed when this ran (`apt-get install -y python3-torch`), so there is no ratio.', '');
}
if (paired.length > 0) {
  lines.push(
    '## infogeo and PyTorch, paired',
    '',
    `The time ratio (infogeo time ÷ PyTorch time = PyTorch rows/s ÷ infogeo rows/s) from ${pairCount} pairs per row: infogeo ` +
      "(wasm; 'pool' on both cores for B > 1, 'auto' on one thread for B = 1) and then PyTorch (best of its two strategies), each " +
      'in a fresh process, seconds apart. Both sides drift together on a shared machine; the tables below measure PyTorch minutes ' +
      'after infogeo, so their ratios carry that drift.',
    '',
    '| model | B | infogeo | infogeo rows/s | PyTorch rows/s | time ratio per pair | median ratio |',
    '| --- | ---: | --- | ---: | ---: | ---: | ---: |',
    ...paired.map(
      (p) =>
        `| ${p.model} | ${p.B} | ${p.strategy} | ${p.pairs.map((x) => x.infogeo).join(', ')} | ${p.pairs.map((x) => x.torch).join(', ')} | ` +
        `${p.pairs.map((x) => x.ratio.toFixed(2)).join(', ')} | ${p.medianRatio.toFixed(2)} |`,
    ),
    '',
  );
}
for (const model of models) {
  lines.push(`## ${BENCH_MODELS[model]?.label ?? model}`, '');
  lines.push('| backend | strategy | B | rows/s | images/s | peak RSS (MB) | PyTorch rows/s | × slower than PyTorch |');
  lines.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows.filter((x) => x.model === model)) {
    const t = bestTorch(model, r.B);
    lines.push(
      `| ${r.backend} | ${r.strategy} | ${r.B} | ${r.rowsPerSec} | ${(r.rowsPerSec / 10).toFixed(1)} | ${r.peakRssMB} | ` +
        `${t ? `${t.rowsPerSec} (${t.strategy})` : '—'} | ${t ? (t.rowsPerSec / r.rowsPerSec).toFixed(1) : '—'} |`,
    );
  }
  lines.push('');
}

const out = join(here, 'results');
mkdirSync(out, { recursive: true });
const suffix = quick ? '-quick' : '';
writeFileSync(join(out, `jacobian${suffix}.json`), JSON.stringify({ machine, seconds, infogeo: rows, torch: { version: torchVersion ?? null, threads: TORCH_THREADS, rows: torchRows }, paired }, null, 2) + '\n');
writeFileSync(join(out, `jacobian${suffix}.md`), lines.join('\n'));
console.log(`\nwrote bench/results/jacobian${suffix}.json and .md`);
}

type GeoRow = { backend: string; task: string; model: string; n: number; B: number; totalMs: number; perSampleMs: number; peakRssMB: number; eigMs?: number; jacobianMs?: number; projectMs?: number };

const TASK_LABEL: Record<string, string> = {
  'data-matrix': 'localDataMatrix + eig',
  projector: 'distributionProjector',
  fisher: 'localFisher',
  'path-step': 'horizontalPath, one step (B pairs)',
  'volume-effective': 'volumeElement, effective (top 10)',
  'volume-plane': 'volumeElement on a plane (2 JVPs)',
  jvp: 'jvp, 2 directions per sample',
  jacobian: 'inputJacobian (to compare a path step with)',
  stability: 'relativeStability, one T (B images)',
};

/** The geometry tasks that bench/torch_geometry.py computes too, with the input Jacobian as each model's reference. */
const PAIRED_GEOMETRY: [string, string, number, 'one' | 'pool'][] = [
  ['jacobian', 'mnist-cnn', 4, 'one'],
  ['fisher', 'mnist-cnn', 4, 'one'],
  ['data-matrix', 'mnist-cnn', 8, 'one'],
  ['path-step', 'mnist-cnn', 1, 'one'],
  ['path-step', 'mnist-cnn', 8, 'one'],
  ['volume-effective', 'mnist-cnn', 8, 'one'],
  ['jacobian', 'cifar-resnet', 4, 'one'],
  ['fisher', 'cifar-resnet', 4, 'one'],
  ['data-matrix', 'cifar-resnet', 8, 'one'],
  ['volume-effective', 'cifar-resnet', 8, 'one'],
  ['stability', 'mnist-cnn', 64, 'one'],
  ['stability', 'cifar-resnet', 64, 'one'],
  // A pool of one thread per core against PyTorch on as many threads.
  ['jacobian', 'mnist-cnn', 8, 'pool'],
  ['fisher', 'mnist-cnn', 8, 'pool'],
  ['data-matrix', 'mnist-cnn', 8, 'pool'],
  ['path-step', 'mnist-cnn', 8, 'pool'],
  ['volume-effective', 'mnist-cnn', 8, 'pool'],
  ['jacobian', 'cifar-resnet', 8, 'pool'],
  ['fisher', 'cifar-resnet', 8, 'pool'],
  ['data-matrix', 'cifar-resnet', 8, 'pool'],
  ['volume-effective', 'cifar-resnet', 8, 'pool'],
  ['stability', 'mnist-cnn', 64, 'pool'],
  ['stability', 'cifar-resnet', 64, 'pool'],
];

type GeoPair = { infogeo: number; torch: number; ratio: number; impl: string; torchVersion: string; infogeoRssMB: number; torchRssMB: number };

/** infogeo (wasm, one thread) then PyTorch (one thread) on the same task, seconds apart, `pairCount` times. */
function pairedGeometry(tasks: string): { task: string; model: string; B: number; mode: string; threads: number; pairs: GeoPair[]; medianRatio: number }[] {
  const out: { task: string; model: string; B: number; mode: string; threads: number; pairs: GeoPair[]; medianRatio: number }[] = [];
  console.log(`Paired with PyTorch (${pairCount} per task; one thread each, or a pool against as many PyTorch threads):`);
  for (const [task, model, B, mode] of PAIRED_GEOMETRY.filter(([t]) => tasks === '' || tasks.split(',').includes(t))) {
    const threads = mode === 'pool' ? machine.cores : 1;
    const pairs: GeoPair[] = [];
    for (let k = 0; k < pairCount; k++) {
      const r = spawnSync(process.execPath, ['--import', 'tsx', join(here, 'geometry-worker.ts'), 'wasm', task, model, String(B), mode], { encoding: 'utf8', timeout: 20 * 60 * 1000 });
      const t = spawnSync(TORCH_PYTHON, [join(here, 'torch_geometry.py'), task, model, String(B), String(threads)], { encoding: 'utf8', cwd: here, timeout: 20 * 60 * 1000 });
      const ours = r.stdout.trim().split('\n').pop();
      const theirs = t.stdout.trim().split('\n').pop();
      if (r.status !== 0 || t.status !== 0 || !ours?.startsWith('{') || !theirs?.startsWith('{')) {
        console.error(`  ${task} ${model} B=${B}: failed\n${r.stderr.slice(-1000)}${t.stderr.slice(-1000)}`);
        continue;
      }
      const a = JSON.parse(ours) as GeoRow;
      const b = JSON.parse(theirs) as { perSampleMs: number; impl: string; torch: string; peakRssMB: number };
      pairs.push({ infogeo: a.perSampleMs, torch: b.perSampleMs, ratio: a.perSampleMs / b.perSampleMs, impl: b.impl, torchVersion: b.torch, infogeoRssMB: a.peakRssMB, torchRssMB: b.peakRssMB });
    }
    if (pairs.length === 0) continue;
    const sorted = pairs.map((p) => p.ratio).sort((x, y) => x - y);
    const medianRatio = sorted.length % 2 ? (sorted[(sorted.length - 1) / 2] as number) : ((sorted[sorted.length / 2 - 1] as number) + (sorted[sorted.length / 2] as number)) / 2;
    out.push({ task, model, B, mode, threads, pairs, medianRatio });
    console.log(`  ${task} ${model} B=${B} ${mode}: ratios ${pairs.map((p) => p.ratio.toFixed(2)).join(', ')} (median ${medianRatio.toFixed(2)})`);
  }
  return out;
}

function geometryBench(): void {
  const configs: [string, string, number][] = [
    ['data-matrix', 'mnist-cnn', 8],
    ['data-matrix', 'cifar-resnet', 8],
    ['data-matrix', 'imagenet-small', 1],
    ['projector', 'mnist-cnn', 8],
    ['projector', 'cifar-resnet', 8],
    ['projector', 'imagenet-small', 1],
    ['fisher', 'mnist-cnn', 1],
    ['fisher', 'mnist-cnn', 4],
    ['jacobian', 'mnist-cnn', 1],
    ['path-step', 'mnist-cnn', 1],
    ['path-step', 'mnist-cnn', 8],
    ['jvp', 'mnist-cnn', 32],
    ['jvp', 'cifar-resnet', 32],
    ['volume-effective', 'mnist-cnn', 8],
    ['volume-effective', 'cifar-resnet', 8],
    ['volume-plane', 'mnist-cnn', 32],
    ['volume-plane', 'cifar-resnet', 32],
    ['stability', 'mnist-cnn', 64],
    ['stability', 'cifar-resnet', 64],
  ];
  const geo: GeoRow[] = [];
  const tasks = opt('tasks', '');
  for (const [task, model, B] of configs.filter(([t]) => tasks === '' || tasks.split(',').includes(t))) {
    process.stdout.write(`  ${task} ${model} B=${B} ... `);
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(here, 'geometry-worker.ts'), 'wasm', task, model, String(B)], { encoding: 'utf8', timeout: 20 * 60 * 1000 });
    const line = r.stdout.trim().split('\n').pop();
    if (r.status !== 0 || !line?.startsWith('{')) {
      console.error(`failed\n${r.stderr.slice(-2000)}`);
      continue;
    }
    const row = JSON.parse(line) as GeoRow;
    geo.push(row);
    console.log(`${row.perSampleMs} ms per sample, ${row.peakRssMB} MB`);
  }
  const pairedGeo = torchAvailable() && pairCount > 0 ? pairedGeometry(tasks) : [];
  const md = [
    '# Geometry benchmark (local data matrix, leaf projector, local Fisher, volume element, relative stability)',
    '',
    `wasm backend, infogeo's gradient kernels registered. Machine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.date}. ` +
      'Best of two runs after a warm-up, each configuration in a fresh process (peak RSS is its own). ' +
      '`localDataMatrix` is the input Jacobian (C − 1 logit-difference rows) and the (C−1)-row factor; `eig` its nonzero eigenpairs in float64 ' +
      '(MGS2 basis, no n × n matrix); the projector is the same Jacobian plus the float64 basis; `localFisher` covers every trainable weight ' +
      '(1,199,882 for the MNIST CNN); a horizontal-path step is timed over 20 steps. The volume element uses the penultimate layer ' +
      '(128 features for the MNIST CNN, 64 for the ResNet): `effective` needs its full Jacobian (one row per feature, all in one backward pass of the graph), the plane ' +
      'two Jacobian-vector products in forward mode (exact, one pass of both tangents after the forward pass). `relativeStability` ' +
      'at one temperature evaluates the model on the clean, deformed and noisy images. Command: `npm run bench -- --only geometry`.',
    '',
    '| task | model | n | B | total (ms) | per sample (ms) | of which eig / project (ms) | peak RSS (MB) |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...geo.map(
      (g) =>
        `| ${TASK_LABEL[g.task] ?? g.task} | ${g.model} | ${g.n} | ${g.B} | ` +
        `${g.totalMs} | ${g.perSampleMs} | ${g.eigMs ?? g.projectMs ?? '—'} | ${g.peakRssMB} |`,
    ),
    '',
    ...(pairedGeo.length === 0
      ? []
      : [
          '## infogeo and PyTorch, paired',
          '',
          `infogeo on wasm (one thread, or a pool of one worker thread per core) and PyTorch ${pairedGeo[0]?.pairs[0]?.torchVersion ?? ''} (Debian python3-torch, \`torch.set_num_threads\` of as many threads) on the same quantity, ` +
            `run right after each other ${pairCount} times (\`bench/torch_geometry.py\`: the best of an autograd loop and functorch's \`vmap(jacrev)\`; ` +
            'the Fisher with S applied to the cotangents on the logits in both). Ratio = infogeo\'s time ÷ PyTorch\'s (below 1: infogeo is faster), ' +
            'median of the pairs; the input Jacobian row is the reference ratio of the same model in the same run.',
          '',
          '| task | model | B | threads | infogeo (ms per sample) | PyTorch (ms per sample) | PyTorch implementation | ratios | median ratio | peak RSS infogeo / PyTorch (MB) |',
          '| --- | --- | ---: | --- | ---: | ---: | --- | --- | ---: | ---: |',
          ...pairedGeo.map((p) => {
            const last = p.pairs[p.pairs.length - 1];
            return (
              `| ${TASK_LABEL[p.task] ?? p.task} | ${p.model} | ${p.B} | ${p.mode === 'pool' ? `pool of ${p.threads} / ${p.threads}` : '1 / 1'} | ${p.pairs.map((q) => q.infogeo).join(', ')} | ${p.pairs.map((q) => q.torch).join(', ')} | ` +
              `${last?.impl ?? '—'} | ${p.pairs.map((q) => q.ratio.toFixed(2)).join(', ')} | ${p.medianRatio.toFixed(2)} | ${last ? `${last.infogeoRssMB} / ${last.torchRssMB}` : '—'} |`
            );
          }),
          '',
        ]),
  ];
  const out = join(here, 'results');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'geometry.json'), JSON.stringify({ machine, rows: geo, paired: pairedGeo }, null, 2) + '\n');
  writeFileSync(join(out, 'geometry.md'), md.join('\n'));
  console.log('wrote bench/results/geometry.json and .md');
}

if (only === 'all' || only === 'jacobian') jacobianBench();
if (only === 'all' || only === 'geometry') geometryBench();
