/**
 * The documentation's code, checked against the packed package:
 * - every ```ts block of the README and the guides is written to its own ES module, type-checked
 *   (strict) and run with Node in a project that has only the packed tarball and its peers
 *   installed; after it, `tf.memory().numTensors` must be 0 (a block disposes what it creates);
 *   where a ```text block follows it, its output must be that text, exactly;
 * - the README's `npx infogeo-data NAME` lines run first (against a local mirror of
 *   ../shared/datasets, as the machine has no internet);
 * - every `@example` in the sources is type-checked against the same install (with its free
 *   names declared), so that it uses only what the README's install set has.
 *
 *   tsx .ci/docs-code.ts ROOT PROJECT   (smoke.sh calls it with the project it installed)
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, relative } from 'node:path';

const [root, project] = process.argv.slice(2) as [string, string];
if (!root || !project) throw new Error('usage: tsx .ci/docs-code.ts ROOT PROJECT');
const shared = join(root, '..', 'shared', 'datasets');

interface Block { file: string; line: number; code: string; expected?: string }

/** The ```ts blocks of a markdown file, each with the ```text block that follows it, if any. */
function markdownBlocks(file: string): { ts: Block[]; sh: string[] } {
  const lines = readFileSync(file, 'utf8').split('\n');
  const ts: Block[] = [];
  const sh: string[] = [];
  let lastTsEnd = -1; // the closing fence of the last ts block
  for (let i = 0; i < lines.length; i++) {
    const fence = /^```(\w*)/.exec(lines[i]!);
    if (!fence) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !lines[i]!.startsWith('```'); i++) body.push(lines[i]!);
    if (fence[1] === 'ts') {
      ts.push({ file, line: start + 1, code: body.join('\n') });
      lastTsEnd = i;
    } else if (fence[1] === 'sh') sh.push(...body);
    else if (fence[1] === 'text' && lastTsEnd >= 0 && lines.slice(lastTsEnd + 1, start).every((l) => l.trim() === '')) {
      ts.at(-1)!.expected = body.join('\n'); // a text block right after a ts block: its output
    }
  }
  return { ts, sh };
}

/** The files below `dir` whose names end in `ext`. */
function filesUnder(dir: string, ext: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith(ext))
    .map((e) => join(e.parentPath ?? (e as unknown as { path: string }).path, e.name));
}

/** The ```ts blocks inside `@example` tags of the sources. */
function exampleBlocks(dir: string): Block[] {
  const out: Block[] = [];
  for (const file of filesUnder(dir, '.ts')) {
    const lines = readFileSync(file, 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      if (!/@example/.test(lines[i]!) || !/```ts/.test(lines[i + 1] ?? '')) continue;
      const body: string[] = [];
      let j = i + 2;
      for (; j < lines.length && !/```/.test(lines[j]!); j++) body.push(lines[j]!.replace(/^\s*\* ?/, ''));
      out.push({ file, line: i + 2, code: body.join('\n') });
      i = j;
    }
  }
  return out;
}

const slug = (b: Block) => `${relative(root, b.file).replace(/[^\w]+/g, '_')}_L${b.line}`;

// Free names the @examples use, and what they are in the reader's program.
const EXAMPLE_PRELUDE: Record<string, string> = {
  model: 'tfl.LayersModel',
  x: 'tf.Tensor4D',
  target: 'tf.Tensor4D',
  noise: 'tf.Tensor4D',
  xTrain: 'tf.Tensor4D',
  seven: 'tf.Tensor4D',
  one: 'tf.Tensor4D',
  digit: 'tf.Tensor4D',
  testImages: 'tf.Tensor4D',
  x1: 'tf.Tensor3D',
  x2: 'tf.Tensor3D',
  x3: 'tf.Tensor3D',
  labels: 'tf.Tensor1D',
  xBatch: 'tf.Tensor4D',
  step: 'number',
  textModel: 'tfl.LayersModel',
  ids: 'tf.Tensor2D',
};

function declaredNames(code: string): Set<string> {
  const names = new Set<string>();
  for (const m of code.matchAll(/\b(?:const|let|var)\s+(\{[^}]*\}|\[[^\]]*\]|\w+)/g)) {
    for (const n of m[1]!.replace(/[{}[\]]/g, '').split(',')) {
      const name = n.split(':').at(-1)!.split('=')[0]!.trim();
      if (name) names.add(name);
    }
  }
  for (const m of code.matchAll(/import\s*(?:\*\s*as\s+(\w+)|\{([^}]*)\})/g)) {
    if (m[1]) names.add(m[1]);
    for (const n of (m[2] ?? '').split(',')) if (n.trim()) names.add(n.trim().split(/\s+as\s+/).at(-1)!);
  }
  return names;
}

const infogeoExports = (entry: string) => {
  const dts = readFileSync(join(project, 'node_modules', 'infogeo', 'dist', `${entry}.d.ts`), 'utf8');
  const names = new Set<string>();
  for (const m of dts.matchAll(/export\s*\{([^}]*)\}/g)) {
    for (const n of m[1]!.split(',')) {
      const name = n.trim().split(/\s+as\s+/).at(-1)!.replace(/^type\s+/, '');
      if (name && !n.trim().startsWith('type ')) names.add(name);
    }
  }
  return names;
};

const LEAK_CHECK = `
{
  const { memory } = await import('@tensorflow/tfjs-core');
  const left = memory().numTensors;
  if (left !== 0) {
    console.error(\`docs-code: this block leaves \${left} tensor(s) undisposed\`);
    process.exit(1);
  }
}
`;

async function main(): Promise<number> {
  const work = join(project, 'docs-code');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(join(work, 'run'), { recursive: true });
  mkdirSync(join(work, 'types'), { recursive: true });

  const docs = [join(root, 'README.md'), ...readdirSync(join(root, 'docs', 'guide')).filter((f) => f.endsWith('.md')).map((f) => join(root, 'docs', 'guide', f))];
  const runnable: Block[] = [];
  const commands: string[] = [];
  for (const file of docs) {
    const { ts, sh } = markdownBlocks(file);
    runnable.push(...ts);
    commands.push(...sh.map((l) => l.replace(/\s+#.*$/, '').trim()).filter((l) => l.startsWith('npx infogeo-data ')));
  }
  for (const b of runnable) writeFileSync(join(work, 'run', `${slug(b)}.mts`), `${b.code}\n${LEAK_CHECK}`);

  const examples = exampleBlocks(join(root, 'src'));
  const exported = { infogeo: infogeoExports('index'), 'infogeo/data': infogeoExports('data'), 'infogeo/node': infogeoExports('node'), 'infogeo/wasm': infogeoExports('wasm') };
  for (const b of examples) {
    const own = declaredNames(b.code);
    const imports = Object.entries(exported)
      .map(([mod, names]) => [mod, [...names].filter((n) => !own.has(n) && new RegExp(`\\b${n}\\b`).test(b.code))] as const)
      .filter(([, names]) => names.length > 0)
      .map(([mod, names]) => `import { ${names.join(', ')} } from '${mod}';`);
    const decls = Object.entries(EXAMPLE_PRELUDE).filter(([n]) => !own.has(n)).map(([n, t]) => `declare const ${n}: ${t};`);
    const prelude = [
      ...(own.has('tf') ? [] : [`import * as tf from '@tensorflow/tfjs-core';`]),
      ...(own.has('tfl') ? [] : [`import type * as tfl from '@tensorflow/tfjs-layers';`]),
      ...imports,
      ...decls,
    ];
    writeFileSync(join(work, 'types', `${slug(b)}.mts`), `${prelude.join('\n')}\n${b.code}\nexport {};\n`);
  }
  writeFileSync(
    join(work, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext', strict: true, skipLibCheck: true,
        lib: ['es2022', 'dom'], types: ['node'], typeRoots: [join(root, 'node_modules', '@types')], outDir: 'out', rootDir: '.',
      },
      include: ['run/*.mts', 'types/*.mts'],
    }, null, 2),
  );
  console.log(`docs-code: ${runnable.length} blocks from the README and the guides, ${examples.length} @examples; type-checking`);
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', work], { encoding: 'utf8' });
  if (tsc.status !== 0) {
    // Name the documentation line behind each error.
    const where = new Map([...runnable, ...examples].map((b) => [slug(b), `${relative(root, b.file)}:${b.line}`]));
    console.error(tsc.stdout.replace(/(?:run|types)\/(\w+)\.mts/g, (m, s: string) => `${m} [${where.get(s) ?? '?'}]`));
    return 1;
  }

  // The data sets the README tells users to download, from a local mirror of ../shared/datasets.
  const env: Record<string, string> = { ...process.env as Record<string, string>, INFOGEO_DATA: join(work, 'cache') };
  const needsData = runnable.some((b) => b.code.includes("'infogeo/data'"));
  let dataReady = !needsData;
  if (needsData) {
    if (existsSync(shared)) {
      const server = createServer((req, res) => {
        const path = join(shared, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname));
        if (!path.startsWith(shared) || !existsSync(path)) return void res.writeHead(404).end();
        const body = readFileSync(path);
        res.writeHead(200, { 'content-length': body.length }).end(body);
      });
      await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
      env['INFOGEO_DATA_MIRROR'] = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      for (const cmd of commands) {
        console.log(`docs-code: ${cmd}   (INFOGEO_DATA_MIRROR=${env['INFOGEO_DATA_MIRROR']})`);
        const code = await run('sh', ['-c', cmd], env, project, undefined);
        if (code.status !== 0) {
          console.error(code.stderr + code.stdout);
          server.close();
          return 1;
        }
      }
      server.close();
      dataReady = true;
    } else if (process.env['INFOGEO_REQUIRE_DATA']) {
      console.error(`docs-code: INFOGEO_REQUIRE_DATA is set but ${shared} does not exist`);
      return 1;
    }
  }

  let failed = 0;
  for (const b of runnable) {
    const name = `${relative(root, b.file)}:${b.line}`;
    if (!dataReady && b.code.includes("'infogeo/data'")) {
      console.log(`  skipped ${name} (needs a data set: no ${shared} to mirror)`);
      continue;
    }
    const t0 = Date.now();
    const r = await run(process.execPath, [join(work, 'out', 'run', `${slug(b)}.mjs`)], env, project, 600_000);
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    const clean = (s: string) => s.split('\n').map((l) => l.trimEnd()).join('\n').trim();
    let problem = '';
    if (r.status !== 0) problem = `exit code ${r.status}\n${r.stderr}${r.stdout}`;
    else if (b.expected !== undefined && clean(r.stdout) !== clean(b.expected)) problem = `its output differs from the text block below it:\n--- printed\n${clean(r.stdout)}\n--- the documentation says\n${clean(b.expected)}`;
    if (problem) {
      failed++;
      console.error(`  FAILED ${name} (${secs} s): ${problem}`);
    } else console.log(`  ok ${name} (${secs} s${b.expected !== undefined ? ', output as documented' : ''})`);
  }
  console.log(`docs-code: ${runnable.length - failed} of ${runnable.length} blocks ran cleanly; ${examples.length} @examples type-check`);
  return failed > 0 ? 1 : 0;
}

function run(cmd: string, args: string[], env: Record<string, string>, cwd: string, timeout: number | undefined) {
  return new Promise<{ status: number | null; stdout: string; stderr: string }>((ok) => {
    const p = spawn(cmd, args, { env, cwd, ...(timeout ? { timeout } : {}) });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d));
    p.stderr.on('data', (d: Buffer) => (stderr += d));
    p.on('close', (status) => ok({ status, stdout, stderr }));
  });
}

main().then((code) => process.exit(code), (e: unknown) => {
  console.error(e);
  process.exit(1);
});
