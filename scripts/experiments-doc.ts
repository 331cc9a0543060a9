/**
 * Writes the experiments' README tables from their committed summaries (examples/experiments/<name>/
 * summary.json, written by a full run of `npm run experiment:<name>`), between the
 * `<!-- summary:start NAME -->` and `<!-- summary:end -->` markers of each README, so that the
 * tables cannot drift from the numbers; tests/experiments-doc.test.ts fails when a committed README
 * differs from what this writes.
 *
 * The prose quotes numbers too, here, in the experiments' index (its "held here?" column) and in the
 * project's README. Those are not generated (a number can change a verdict, which is for a person to
 * write): {@link quotes} lists each quoted phrase as the summary makes it, and the check fails on any
 * that its README does not contain. {@link inconsistencies} recomputes
 * each summary's derived numbers (medians, counts, correlations) from its raw ones, and each README
 * carries the SHA-256 of its summary, so a number changed by hand in a summary fails the check
 * whether or not a README prints it.
 *
 *   npm run experiments:doc            # rewrite the generated regions, then check the quotes
 *   npm run experiments:doc -- --check # only check (what the test does)
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { quantile, spearman } from '../examples/stats.js';

/** The experiments whose READMEs are generated from a committed summary. */
export const EXPERIMENTS = ['magnification', 'leaves', 'stability'] as const;
export type Experiment = (typeof EXPERIMENTS)[number];

const ROOT = new URL('../examples/experiments/', import.meta.url);
/** The committed summary of an experiment. */
export const summaryFile = (name: Experiment): string => fileURLToPath(new URL(`${name}/summary.json`, ROOT));
/** Where a README's prose quotes an experiment's numbers: its own README, the experiments' index, the project's README. */
export type Readme = Experiment | 'index' | 'root';
/** A README's file. */
export const readmeFile = (name: Readme): string => fileURLToPath(new URL(name === 'root' ? '../../README.md' : name === 'index' ? 'README.md' : `${name}/README.md`, ROOT));
/** A README's path in the repository, for messages. */
const readmePath = (name: Readme): string => (name === 'root' ? 'README.md' : name === 'index' ? 'examples/experiments/README.md' : `examples/experiments/${name}/README.md`);

// ---------------------------------------------------------------------------------------------
// The summaries' shapes (what the experiments' main.ts write; only the fields read here).

interface Provenance { commit: string; modified: boolean; date: string; machine: string; node: string; tfjs: string; backend: string }
type Network = 'cnn' | 'mlp';
interface MagnificationSummary {
  provenance: Provenance;
  quick: boolean;
  planes: { indices: number[]; labels: number[] }[];
  grid: number;
  rows: { network: Network; step: number; testAccuracy: number; rho: number[]; gap: number[]; medianRho: number; medianGap: number; planesWithPositiveRho: number; planesWithPositiveGap: number }[];
}
interface LeavesSummary {
  provenance: Provenance;
  quick: boolean;
  step: number;
  testAccuracy: number;
  horizontal: {
    pairs: number;
    maxSteps: number;
    fractionReachingTargetLabel: number;
    stopReasons: { reached: number; stalled: number; maxSteps: number };
    steps: { median: number; q10: number; q90: number };
    distanceLeftFraction: { median: number; q10: number; q90: number };
    firstDistance: { median: number };
    paths: { source: number; target: number; finalLabel: number; reached: boolean; steps: number; stopReason: string; first: number; last: number }[];
  };
  orthogonal: {
    count: number;
    steps: number;
    fractionKeepingPrediction: number;
    travelled: { median: number; q10: number; q90: number };
    finalProbability: { median: number; min: number };
    paths: { label: number; predicted: number; kept: boolean; finalProbability: number; travelled: number; steps: number }[];
  };
  traceG: { network: Network; step: number; testAccuracy: number; mean: number; q10: number; median: number; q90: number }[];
}
type Dataset = 'mnist' | 'fashion-mnist' | 'cifar10';
type Arch = 'fc2' | 'fc4' | 'lenet' | 'cnn' | 'resnet8';
interface StabilityRow { id: string; dataset: Dataset; arch: Arch; P: number; steps: number; trained: boolean; testError: number; R: number; Rlo: number; Rhi: number; D: number; G: number; delta: number; seconds: number }
interface StabilitySummary {
  provenance: Provenance;
  quick: boolean;
  setup: { trainImages: number; sweep: { archs: Arch[]; P: number[] } };
  rows: StabilityRow[];
  spearman: { pooled: { rhoR: number; rhoD: number; rhoG: number }; byDataset: Record<Dataset, { rhoR: number; rhoD: number; rhoG: number }> };
  errorOverSqrtR: Record<string, number>;
  initToTrained: Record<string, { init: number; trained: number }>;
  minutes: number;
}
interface Summaries { magnification: MagnificationSummary; leaves: LeavesSummary; stability: StabilitySummary }

/** How the check reads a file: the file system, or (in the tests) a summary changed in memory. */
export type Reader = (file: string) => string | undefined;
const fromDisk: Reader = (file) => (existsSync(file) ? readFileSync(file, 'utf8') : undefined);

/**
 * A committed summary and its text (line endings normalised, so that a checkout with CRLF hashes the
 * same), or undefined where none is committed yet.
 */
export function readSummary<E extends Experiment>(name: E, read: Reader = fromDisk): { summary: Summaries[E]; text: string } | undefined {
  const text = read(summaryFile(name))?.replace(/\r\n/g, '\n');
  return text === undefined ? undefined : { summary: JSON.parse(text) as Summaries[E], text };
}

// ---------------------------------------------------------------------------------------------
// Formatting, as the READMEs print numbers.

/** A minus sign, not a hyphen, before negative numbers. */
const signed = (s: string): string => s.replace(/^-/, '−');
/** `toFixed` with a minus sign, and without one where the value rounds to zero. */
const fixed = (v: number, digits: number): string => {
  const s = v.toFixed(digits);
  return /^-0\.?0*$/.test(s) ? s.slice(1) : signed(s);
};
const percent = (v: number, digits = 1): string => `${(100 * v).toFixed(digits)} %`;
const thousands = (v: number): string => v.toLocaleString('en-US');
const NETWORK: Record<Network, string> = { cnn: 'CNN', mlp: 'MLP' };
const DATASET: Record<Dataset, string> = { mnist: 'MNIST', 'fashion-mnist': 'Fashion-MNIST', cifar10: 'CIFAR-10' };
const ARCH: Record<Arch, string> = { fc2: 'FC2', fc4: 'FC4', lenet: 'LeNet', cnn: 'CNN', resnet8: 'ResNet-8' };
const DATASETS: Dataset[] = ['mnist', 'fashion-mnist', 'cifar10'];
const ARCHS: Arch[] = ['fc2', 'fc4', 'lenet', 'cnn', 'resnet8'];
/** Small counts in words, as prose writes them. */
const count = (n: number): string => ['none', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten'][n] ?? String(n);
/** "a 4", "an 8". */
const aDigit = (d: number): string => `${d === 8 ? 'an' : 'a'} ${d}`;
/** A range "lo–hi" of already formatted ends, or one value when they agree. */
const range = (lo: string, hi: string): string => (lo === hi ? lo : `${lo}–${hi}`);
const minOf = (v: number[]): number => Math.min(...v);
const maxOf = (v: number[]): number => Math.max(...v);

// ---------------------------------------------------------------------------------------------
// The generated regions.

/** The line under each README's "Results" heading: which run made the numbers, and the summary's hash. */
function provenanceLine(p: Provenance, text: string): string {
  const sha = createHash('sha256').update(text).digest('hex');
  return (
    `Every number below comes from [\`summary.json\`](summary.json), written by a full run on ${p.date} ` +
    `at commit \`${p.commit.slice(0, 10)}\`${p.modified ? ' (with uncommitted changes to the code)' : ''}: ` +
    `${p.machine}, Node ${p.node}, tfjs ${p.tfjs} \`${p.backend}\`. The tables are generated from it ` +
    `(\`npm run experiments:doc\`; summary SHA-256 \`${sha.slice(0, 16)}\`).`
  );
}

function magnificationRegions(s: MagnificationSummary, text: string): Record<string, string> {
  const planes = s.planes.length;
  const table = [
    '| network | step | test accuracy | median ρ | planes with ρ > 0 | median gap (log10) | planes with gap > 0 |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...s.rows.map((r) => `| ${NETWORK[r.network]} | ${r.step} | ${percent(r.testAccuracy)} | ${fixed(r.medianRho, 3)} | ${r.planesWithPositiveRho} / ${planes} | ${fixed(r.medianGap, 3)} | ${r.planesWithPositiveGap} / ${planes} |`),
  ].join('\n');
  return { provenance: provenanceLine(s.provenance, text), table };
}

/** tr G as the leaves README prints it: 3 significant digits, 4 decimals below 0.01. */
const trace = (v: number): string => (v >= 0.01 ? v.toPrecision(3) : v.toFixed(4));

function leavesRegions(s: LeavesSummary, text: string): Record<string, string> {
  const table = [
    '| network | step | test accuracy | mean tr G | 10 % | median | 90 % |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...s.traceG.map((r) => `| ${NETWORK[r.network]} | ${r.step} | ${percent(r.testAccuracy)} | ${trace(r.mean)} | ${trace(r.q10)} | ${trace(r.median)} | ${trace(r.q90)} |`),
  ].join('\n');
  return { provenance: provenanceLine(s.provenance, text), table };
}

/** R_f as the stability README prints it. */
const rf = (v: number): string => (v >= 0.1 ? v.toFixed(2) : v.toPrecision(2));

function stabilityRegions(s: StabilitySummary, text: string): Record<string, string> {
  const head = '| data | network | trained on | test error | R_f [95 % interval] | D_f | G_f |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |';
  const row = (r: StabilityRow) => `| ${DATASET[r.dataset]} | ${ARCH[r.arch]} | ${r.trained ? thousands(r.P) : 'init'} | ${percent(r.testError)} | ${rf(r.R)} [${rf(r.Rlo)}, ${rf(r.Rhi)}] | ${r.D.toExponential(2)} | ${r.G.toExponential(2)} |`;
  const get = (id: string) => stabilityRow(s, id);
  const P = s.setup.trainImages;
  const grid = DATASETS.flatMap((d) => ARCHS.flatMap((a) => [get(`${d}/${a}/init`), get(`${d}/${a}/P${P}`)]));
  const sweep = s.setup.sweep.archs.flatMap((a) => s.setup.sweep.P.map((p) => get(`mnist/${a}/P${p}`)));
  return { provenance: provenanceLine(s.provenance, text), grid: `${head}\n${grid.map(row).join('\n')}`, sweep: `${head}\n${sweep.map(row).join('\n')}` };
}

function stabilityRow(s: StabilitySummary, id: string): StabilityRow {
  const r = s.rows.find((x) => x.id === id);
  if (r === undefined) throw new Error(`stability/summary.json has no row ${id}`);
  return r;
}

/** The generated regions of an experiment's README, by marker name, from its summary and the summary's text. */
export function regions(name: Experiment, summary: Summaries[Experiment], text: string): Record<string, string> {
  if (name === 'magnification') return magnificationRegions(summary as MagnificationSummary, text);
  if (name === 'leaves') return leavesRegions(summary as LeavesSummary, text);
  return stabilityRegions(summary as StabilitySummary, text);
}

const START = /<!-- summary:start ([\w-]+) -->\n[\s\S]*?<!-- summary:end -->/g;

/**
 * The README's text with each marked region rewritten. Throws when a region of `generated` has no
 * markers in the text or the text marks a region that `generated` lacks.
 */
export function withRegions(text: string, generated: Record<string, string>, file: string): string {
  const seen = new Set<string>();
  const next = text.replace(START, (_, key: string) => {
    const body = generated[key];
    if (body === undefined) throw new Error(`${file}: <!-- summary:start ${key} --> marks a region that the summary does not generate`);
    seen.add(key);
    return `<!-- summary:start ${key} -->\n${body}\n<!-- summary:end -->`;
  });
  const missing = Object.keys(generated).filter((k) => !seen.has(k));
  if (missing.length > 0) throw new Error(`${file}: no <!-- summary:start ${missing[0]} --> … <!-- summary:end --> region`);
  return next;
}

// ---------------------------------------------------------------------------------------------
// The prose's numbers: each phrase as the summary makes it.

/** A phrase that a README's prose must contain (compared with runs of white space made one space). */
export interface Quote { readme: Readme; text: string }

function magnificationQuotes(s: MagnificationSummary): Quote[] {
  const row = (n: Network, step: number) => {
    const r = s.rows.find((x) => x.network === n && x.step === step);
    if (r === undefined) throw new Error(`magnification/summary.json has no row ${n} ${step}`);
    return r;
  };
  const steps = (n: Network) => s.rows.filter((r) => r.network === n).map((r) => r.step);
  const last = maxOf(steps('cnn'));
  const planes = s.planes.length;
  const trained = (n: Network) => s.rows.filter((r) => r.network === n && r.step > 0);
  const cnn0 = row('cnn', 0);
  const cnnPeak = trained('cnn').reduce((a, b) => (b.medianRho > a.medianRho ? b : a));
  const mlp0 = row('mlp', 0);
  const mlpGaps = trained('mlp').map((r) => r.medianGap);
  const mlpPeak = trained('mlp').reduce((a, b) => (b.medianRho > a.medianRho ? b : a));
  const negative = (r: { rho: number[] }) => r.rho.filter((v) => v < 0).length;
  const everyOr = (k: number) => (k === planes ? `all ${planes}` : `${k} of ${planes}`);
  const labels = (s.planes[0]?.labels ?? []).map(aDigit);
  return [
    { readme: 'magnification', text: `(ρ = ${fixed(cnn0.medianRho, 2)}, ${negative(cnn0)} of ${planes} planes negative)` },
    { readme: 'magnification', text: `after ${cnnPeak.step} steps it is larger there on ${everyOr(cnnPeak.planesWithPositiveRho)} planes (ρ = ${fixed(cnnPeak.medianRho, 2)})` },
    { readme: 'magnification', text: `have a geometric-mean volume 10^${fixed(cnnPeak.medianGap, 2)} ≈ ${(10 ** cnnPeak.medianGap).toFixed(2)} times that of the rest` },
    { readme: 'magnification', text: `(ρ = ${fixed(mlp0.medianRho, 2)}, a gap of ${fixed(mlp0.medianGap, 2)})` },
    { readme: 'magnification', text: `raises the gap to ${range(fixed(minOf(mlpGaps), 2), fixed(maxOf(mlpGaps), 2))} (volumes ${range((10 ** minOf(mlpGaps)).toFixed(1), (10 ** maxOf(mlpGaps)).toFixed(1))}× larger near the boundaries)` },
    { readme: 'magnification', text: `ρ rises to ${fixed(mlpPeak.medianRho, 2)} (step ${mlpPeak.step}), and is ${fixed(row('mlp', last).medianRho, 2)} after ${last} steps` },
    { readme: 'magnification', text: `The CNN's plane through ${labels.slice(0, -1).join(', ')} and ${labels[labels.length - 1]} after training` },
    { readme: 'magnification', text: `(the CNN reaches ${percent(row('cnn', last).testAccuracy)})` },
    {
      readme: 'index',
      text:
        `goes from ${fixed(cnn0.medianRho, 2)} to ${fixed(row('cnn', last).medianRho, 2)} (CNN) and from ${fixed(mlp0.medianRho, 2)} to ${fixed(row('mlp', last).medianRho, 2)} ` +
        `(tanh MLP) over ${last} steps, positive on ${row('cnn', last).planesWithPositiveRho} and ${row('mlp', last).planesWithPositiveRho} of ${planes} planes after training`,
    },
    { readme: 'root', text: `on ${row('cnn', last).planesWithPositiveRho} (CNN) and ${row('mlp', last).planesWithPositiveRho} (MLP) of ${planes} planes after training` },
  ];
}

function leavesQuotes(s: LeavesSummary): Quote[] {
  const h = s.horizontal;
  const o = s.orthogonal;
  const pct = (v: number) => `${Math.round(100 * v)} %`;
  const reached = h.paths.filter((p) => p.reached).length;
  const missed = h.paths.filter((p) => !p.reached);
  const third = missed.filter((p) => p.finalLabel !== p.source).length;
  const lost = o.paths.filter((p) => !p.kept);
  const kept = o.paths.length - lost.length;
  const list = (v: string[]) => (v.length <= 1 ? v.join('') : `${v.slice(0, -1).join(', ')} and ${v[v.length - 1]}`);
  const row = (n: Network, step: number) => {
    const r = s.traceG.find((x) => x.network === n && x.step === step);
    if (r === undefined) throw new Error(`leaves/summary.json has no tr G row ${n} ${step}`);
    return r;
  };
  const last = maxOf(s.traceG.map((r) => r.step));
  const fall = (n: Network) => row(n, 0).q10 / row(n, last).q10;
  const cnnPeak = s.traceG.filter((r) => r.network === 'cnn').reduce((a, b) => (b.mean > a.mean ? b : a));
  const reachedImage = h.stopReasons.reached === 0 ? 'None reaches' : `${h.stopReasons.reached} reach`;
  return [
    { readme: 'leaves', text: `${percent(s.testAccuracy)} test accuracy after ${s.step} SGD steps` },
    { readme: 'leaves', text: `${reached} of the ${h.pairs} paths end with the target's label. ${reachedImage} the target image itself` },
    { readme: 'leaves', text: `${h.stopReasons.stalled} stall, having gone as far as the leaf allows, ${h.stopReasons.maxSteps} use all ${h.maxSteps} steps (median over the ${h.pairs}: ${h.steps.median} steps)` },
    { readme: 'leaves', text: `The distance left is a median ${pct(h.distanceLeftFraction.median)} of the first one (10–90 %: ${Math.round(100 * h.distanceLeftFraction.q10)}–${pct(h.distanceLeftFraction.q90)}; median first distance ${h.firstDistance.median.toFixed(1)})` },
    { readme: 'leaves', text: `Of the ${missed.length} that do not end with the target's label, ${count(third)} end in a third class, ${count(missed.length - third)} keep the source's.` },
    { readme: 'leaves', text: `which here happens at a median ${pct(h.distanceLeftFraction.median)} of the distance` },
    { readme: 'leaves', text: `${kept} of the ${o.count} keep their predicted class at every recorded frame` },
    { readme: 'leaves', text: `(in the ${count(lost.length)} that do not, the prediction changes at some frame, and the last frame's predicted class has p = ${list(lost.map((p) => p.finalProbability.toFixed(2)))}` },
    { readme: 'leaves', text: `travels a median ${o.travelled.median.toFixed(1)} (10–90 %: ${o.travelled.q10.toFixed(1)}–${o.travelled.q90.toFixed(1)}) from where it started; the final probability of the predicted class has median ${o.finalProbability.median.toFixed(3)}` },
    { readme: 'leaves', text: `the 10 % quantile falls ${fall('cnn').toFixed(0)}-fold (CNN) and ${fall('mlp').toFixed(0)}-fold (MLP) from step 0 to step ${last}` },
    { readme: 'leaves', text: `The mean of the CNN rises ${(row('cnn', last).mean / row('cnn', 0).mean).toFixed(1)}-fold (${(cnnPeak.mean / row('cnn', 0).mean).toFixed(1)}-fold at its peak, step ${cnnPeak.step})` },
    { readme: 'leaves', text: `its mean falls from ${trace(row('mlp', 0).mean)} to ${trace(row('mlp', last).mean)}` },
    {
      readme: 'index',
      text:
        `${reached} of ${h.pairs} horizontal paths end with the target's label (${reachedImage.toLowerCase()} the target image: the leaf passes by it at a median ${pct(h.distanceLeftFraction.median)} of the distance); ` +
        `${kept} of ${o.count} orthogonal paths keep their prediction; tr G spreads out over training (its 10 % quantile falls ${fall('cnn').toFixed(0)}-fold (CNN) and ${fall('mlp').toFixed(0)}-fold (MLP), its 90 % quantile rises)`,
    },
    { readme: 'root', text: `${reached} of ${h.pairs} horizontal paths end with the target's label (${reachedImage.toLowerCase()} the target image itself), ${kept} of ${o.count} orthogonal paths keep their prediction` },
  ];
}

function stabilityQuotes(s: StabilitySummary): Quote[] {
  const P = s.setup.trainImages;
  const get = (id: string) => stabilityRow(s, id);
  const init = (d: Dataset, a: Arch) => get(`${d}/${a}/init`);
  const trained = (d: Dataset, a: Arch) => get(`${d}/${a}/P${P}`);
  const over = (archs: Arch[], pick: (d: Dataset, a: Arch) => StabilityRow) => DATASETS.flatMap((d) => archs.map((a) => pick(d, a).R));
  const rRange = (v: number[]) => range(rf(minOf(v)), rf(maxOf(v)));
  const arrow = (d: Dataset, a: Arch) => `${rf(init(d, a).R)} → ${rf(trained(d, a).R)}`;
  const sweep = (a: Arch) => s.setup.sweep.P.map((p) => get(`mnist/${a}/P${p}`));
  const fc2 = sweep('fc2');
  const lenet = sweep('lenet');
  const cifarTrained = ARCHS.map((a) => trained('cifar10', a));
  const ratio = cifarTrained.map((r) => s.errorOverSqrtR[r.id] as number);
  const lenetRho = spearman(lenet.map((r) => r.R), lenet.map((r) => r.testError));
  const perDataset = (key: 'rhoR' | 'rhoD') => DATASETS.map((d) => fixed(s.spearman.byDataset[d][key], 1));
  const bySet = (key: 'rhoR' | 'rhoD') => perDataset(key).map((v, i) => `${v} (${DATASET[DATASETS[i] as Dataset]})`);
  const fc = (['fc2', 'fc4'] as Arch[]);
  const cifarError = (archs: Arch[]) => archs.map((a) => trained('cifar10', a).testError);
  const errors = cifarTrained.map((r) => r.testError);
  return [
    { readme: 'stability', text: `Spearman's ρ between the test error and R_f over the ${DATASETS.length * ARCHS.length} trained networks is **${fixed(s.spearman.pooled.rhoR, 2)}**, and between the test error and D_f ${fixed(s.spearman.pooled.rhoD, 2)}` },
    { readme: 'stability', text: `per data set (5 networks each) ρ(R_f) is ${list3(bySet('rhoR'))}, ρ(D_f) ${list3(perDataset('rhoD'))}` },
    { readme: 'stability', text: `The whole run took ${s.minutes} minutes of training and measuring, summed over its rows` },
    { readme: 'stability', text: `(${rRange(over(['fc2', 'fc4', 'lenet'], init))} on the three data sets). The CNN (${rRange(over(['cnn'], init))}) and the ResNet-8 (${rRange(over(['resnet8'], init))}) start` },
    { readme: 'stability', text: `Training raises their R_f to ${range(fixed(minOf(over(fc, trained)), 1), fixed(maxOf(over(fc, trained)), 1))} on every data set` },
    { readme: 'stability', text: `FC2's R_f stays at ${rRange(fc2.map((r) => r.R))} while its error falls from ${percent(fc2[0]!.testError)} to ${percent(fc2[fc2.length - 1]!.testError)}` },
    { readme: 'stability', text: `(${arrow('mnist', 'resnet8')} on MNIST, ${arrow('fashion-mnist', 'resnet8')} on Fashion-MNIST, ${arrow('cifar10', 'resnet8')} on CIFAR-10)` },
    { readme: 'stability', text: `the CNN on Fashion-MNIST (${arrow('fashion-mnist', 'cnn')})` },
    { readme: 'stability', text: `(MNIST, Fashion-MNIST and CIFAR-10: ${arrow('mnist', 'lenet')}, ${arrow('fashion-mnist', 'lenet')}, ${arrow('cifar10', 'lenet')}) and the CNN's on MNIST (${arrow('mnist', 'cnn')}) and CIFAR-10 (${arrow('cifar10', 'cnn')})` },
    { readme: 'stability', text: `The ResNet-8's R_f is ${rf(trained('cifar10', 'resnet8').R)} at an error of ${percent(trained('cifar10', 'resnet8').testError)} (after 1.3 epochs); the fully connected nets' R_f is ${rf(trained('cifar10', 'fc2').R)} and ${rf(trained('cifar10', 'fc4').R)} at ${range(percent(minOf(cifarError(fc)), 0).replace(' %', ''), percent(maxOf(cifarError(fc)), 0))}` },
    { readme: 'stability', text: `ε/√R_f runs from ${minOf(ratio).toFixed(2)} to ${maxOf(ratio).toFixed(2)}` },
    { readme: 'stability', text: `The CIFAR-10 errors (${range(percent(minOf(errors), 0).replace(' %', ''), percent(maxOf(errors), 0))})` },
    { readme: 'stability', text: `LeNet's R_f goes from ${rf(lenet[0]!.R)} to ${rf(lenet[lenet.length - 1]!.R)} while its error falls from ${percent(lenet[0]!.testError)} to ${percent(lenet[lenet.length - 1]!.testError)} (ρ = ${fixed(lenetRho, 1)} over the ${lenet.length} sizes)` },
    { readme: 'stability', text: `its ρ with the error runs from ${fixed(minOf(DATASETS.map((d) => s.spearman.byDataset[d].rhoD)), 1)} to ${fixed(maxOf(DATASETS.map((d) => s.spearman.byDataset[d].rhoD)), 1)} between data sets` },
    { readme: 'index', text: `FC nets stay above 1 (${range(fixed(minOf(over(fc, trained)), 1), fixed(maxOf(over(fc, trained)), 1))} trained) and R_f starts near 1 for FC and LeNet (${rRange(over(['fc2', 'fc4', 'lenet'], init))})` },
    { readme: 'index', text: `across architectures ρ(R_f, error) = ${fixed(s.spearman.pooled.rhoR, 2)}` },
    { readme: 'root', text: `(R_f ${range(fixed(minOf(over(fc, trained)), 1), fixed(maxOf(over(fc, trained)), 1))} after training)` },
    { readme: 'root', text: `across architectures (Spearman's ρ = ${fixed(s.spearman.pooled.rhoR, 2)})` },
    { readme: 'index', text: `within LeNet, R_f goes from ${rf(lenet[0]!.R)} to ${rf(lenet[lenet.length - 1]!.R)} as the training set grows and the error falls` },
  ];
}

/** "a, b and c". */
function list3(v: string[]): string {
  return v.length <= 1 ? v.join('') : `${v.slice(0, -1).join(', ')} and ${v[v.length - 1]}`;
}

/** The numbers an experiment's READMEs quote in prose, as the summary makes them. */
export function quotes(name: Experiment, summary: Summaries[Experiment]): Quote[] {
  if (name === 'magnification') return magnificationQuotes(summary as MagnificationSummary);
  if (name === 'leaves') return leavesQuotes(summary as LeavesSummary);
  return stabilityQuotes(summary as StabilitySummary);
}

// ---------------------------------------------------------------------------------------------
// The summaries' own arithmetic.

/** Equal to the summary's rounding (6 significant digits), or both non-finite (JSON null). */
function same(a: number | null, b: number): boolean {
  if (a === null || !Number.isFinite(b)) return a === null && !Number.isFinite(b);
  return Math.abs(a - b) <= 2e-5 * Math.max(Math.abs(a), Math.abs(b)) + 1e-12;
}

/**
 * The derived numbers of a summary that differ from what its raw numbers give (medians, counts,
 * fractions, correlations), each as one line; empty when the summary is consistent.
 */
export function inconsistencies(name: Experiment, summary: Summaries[Experiment]): string[] {
  const bad: string[] = [];
  const expect = (what: string, stored: number | null, computed: number) => {
    if (!same(stored, computed)) bad.push(`${name}: ${what} is ${stored}, its parts give ${computed}`);
  };
  if (summary.quick) bad.push(`${name}: summary.json is a --quick run's`);
  if (name === 'magnification') {
    const s = summary as MagnificationSummary;
    for (const r of s.rows) {
      const at = `${r.network} step ${r.step}`;
      if (r.rho.length !== s.planes.length || r.gap.length !== s.planes.length) bad.push(`${name}: ${at} has ${r.rho.length} ρ and ${r.gap.length} gaps for ${s.planes.length} planes`);
      expect(`${at} medianRho`, r.medianRho, quantile(r.rho, 0.5));
      expect(`${at} medianGap`, r.medianGap, quantile(r.gap, 0.5));
      expect(`${at} planesWithPositiveRho`, r.planesWithPositiveRho, r.rho.filter((v) => v > 0).length);
      expect(`${at} planesWithPositiveGap`, r.planesWithPositiveGap, r.gap.filter((v) => v > 0).length);
    }
  } else if (name === 'leaves') {
    const s = summary as LeavesSummary;
    const h = s.horizontal;
    const o = s.orthogonal;
    expect('horizontal.pairs', h.pairs, h.paths.length);
    for (const [i, p] of h.paths.entries()) if (p.reached !== (p.finalLabel === p.target)) bad.push(`${name}: horizontal path ${i} says reached: ${p.reached}, ending as ${p.finalLabel} for target ${p.target}`);
    expect('horizontal.fractionReachingTargetLabel', h.fractionReachingTargetLabel, h.paths.filter((p) => p.reached).length / h.paths.length);
    for (const reason of ['reached', 'stalled', 'maxSteps'] as const) expect(`horizontal.stopReasons.${reason}`, h.stopReasons[reason], h.paths.filter((p) => p.stopReason === reason).length);
    const steps = h.paths.map((p) => p.steps);
    const ratio = h.paths.map((p) => p.last / p.first);
    for (const q of ['q10', 'median', 'q90'] as const) {
      const at = q === 'median' ? 0.5 : q === 'q10' ? 0.1 : 0.9;
      expect(`horizontal.steps.${q}`, h.steps[q], quantile(steps, at));
      // Each path's distances are rounded before their ratio: 1e-5 of slack on top of the rounding.
      if (Math.abs(h.distanceLeftFraction[q] - quantile(ratio, at)) > 1e-5) bad.push(`${name}: horizontal.distanceLeftFraction.${q} is ${h.distanceLeftFraction[q]}, the paths give ${quantile(ratio, at)}`);
      expect(`orthogonal.travelled.${q}`, o.travelled[q], quantile(o.paths.map((p) => p.travelled), at));
    }
    expect('horizontal.firstDistance.median', h.firstDistance.median, quantile(h.paths.map((p) => p.first), 0.5));
    expect('orthogonal.count', o.count, o.paths.length);
    expect('orthogonal.fractionKeepingPrediction', o.fractionKeepingPrediction, o.paths.filter((p) => p.kept).length / o.paths.length);
    expect('orthogonal.finalProbability.median', o.finalProbability.median, quantile(o.paths.map((p) => p.finalProbability), 0.5));
    expect('orthogonal.finalProbability.min', o.finalProbability.min, minOf(o.paths.map((p) => p.finalProbability)));
    for (const r of s.traceG) if (!(r.q10 <= r.median && r.median <= r.q90)) bad.push(`${name}: tr G quantiles of ${r.network} step ${r.step} are out of order`);
  } else {
    const s = summary as StabilitySummary;
    const P = s.setup.trainImages;
    const grid = s.rows.filter((r) => r.trained && r.P === P);
    const rho = (rs: StabilityRow[], key: 'R' | 'D' | 'G') => spearman(rs.map((r) => r[key]), rs.map((r) => r.testError));
    for (const key of ['R', 'D', 'G'] as const) {
      expect(`spearman.pooled.rho${key}`, s.spearman.pooled[`rho${key}`], rho(grid, key));
      for (const d of DATASETS) expect(`spearman.byDataset.${d}.rho${key}`, s.spearman.byDataset[d][`rho${key}`], rho(grid.filter((r) => r.dataset === d), key));
    }
    for (const r of grid) expect(`errorOverSqrtR.${r.id}`, s.errorOverSqrtR[r.id] ?? null, r.testError / Math.sqrt(r.R));
    for (const [k, v] of Object.entries(s.initToTrained)) {
      expect(`initToTrained.${k}.init`, v.init, stabilityRow(s, `${k}/init`).R);
      expect(`initToTrained.${k}.trained`, v.trained, stabilityRow(s, `${k}/P${P}`).R);
    }
    expect('minutes', s.minutes, Math.round(s.rows.reduce((a, r) => a + r.seconds, 0) / 60));
    for (const r of s.rows) if (!(r.Rlo <= r.R && r.R <= r.Rhi)) bad.push(`${name}: ${r.id}'s R_f ${r.R} is outside its interval [${r.Rlo}, ${r.Rhi}]`);
    expect('rows', s.rows.length, new Set(s.rows.map((r) => r.id)).size);
  }
  return bad;
}

// ---------------------------------------------------------------------------------------------
// The check, and the command.

const squash = (t: string): string => t.replace(/\s+/g, ' ');

/**
 * Every disagreement between the committed summaries and READMEs: a generated region that differs
 * from what the summary makes (or a README whose markers are broken), a quoted phrase that a README
 * lacks, or a summary whose derived numbers disagree with its raw ones. Empty when they agree.
 * Experiments without a committed summary are skipped (and listed in `skipped`).
 */
export function check(read: Reader = fromDisk): { problems: string[]; skipped: Experiment[] } {
  const problems: string[] = [];
  const skipped: Experiment[] = [];
  const readme = (name: Readme) => read(readmeFile(name)) ?? '';
  for (const name of EXPERIMENTS) {
    const committed = readSummary(name, read);
    if (committed === undefined) {
      skipped.push(name);
      continue;
    }
    // A summary changed so that a row or a field is missing makes the generators throw: a problem too.
    try {
      const { summary } = committed;
      problems.push(...inconsistencies(name, summary));
      const file = readmePath(name);
      const text = readme(name);
      if (withRegions(text, regions(name, summary, committed.text), file) !== text) problems.push(`${file}: a generated region differs from what summary.json makes (npm run experiments:doc rewrites it)`);
      for (const q of quotes(name, summary)) {
        if (!squash(readme(q.readme)).includes(squash(q.text))) problems.push(`${readmePath(q.readme)} lacks, from ${name}/summary.json: “${q.text}”`);
      }
    } catch (e) {
      problems.push(`${name}: ${(e as Error).message}`);
    }
  }
  return { problems, skipped };
}

/** Rewrites the generated regions of every README whose summary is committed; returns the files changed. */
export function write(): string[] {
  const changed: string[] = [];
  for (const name of EXPERIMENTS) {
    const committed = readSummary(name);
    if (committed === undefined) continue;
    const file = readmeFile(name);
    const text = readFileSync(file, 'utf8');
    const next = withRegions(text, regions(name, committed.summary, committed.text), `examples/experiments/${name}/README.md`);
    if (next !== text) {
      writeFileSync(file, next);
      changed.push(file);
    }
  }
  return changed;
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].split('/').pop() as string)) {
  if (!process.argv.includes('--check')) for (const file of write()) console.log(`wrote ${file}`);
  const { problems, skipped } = check();
  if (skipped.length > 0) console.log(`no committed summary (README not generated): ${skipped.join(', ')}`);
  for (const p of problems) console.error(p);
  if (problems.length > 0) process.exitCode = 1;
}
