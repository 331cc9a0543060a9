/**
 * Times the explorer on each backend in headless Chromium: G(x) of the bundled CNN and a
 * horizontal path step (the mean over the steps after the first call of 5, which compiles the
 * backend's kernels). webgl is SwiftShader's software rendering (`--disable-gpu`); webgpu runs on a
 * separate Chromium with `--enable-unsafe-webgpu` (SwiftShader's software adapter), and is reported
 * as failing where it fails.
 *
 *   npx tsx examples/browser/measure.ts [backend ...] [--steps N]     (default: webgl wasm cpu webgpu, 20 steps)
 */
import { cpus } from 'node:os';
import { jobs, launch, serveSite, waitIdle } from './harness.js';

const args = process.argv.slice(2);
const at = args.indexOf('--steps');
const steps = at >= 0 ? Number(args[at + 1]) : 20;
const backends = args.filter((a, i) => !a.startsWith('--') && args[i - 1] !== '--steps');
const site = await serveSite();
console.log(`${new Date().toISOString().slice(0, 10)}, ${cpus()[0]?.model} × ${cpus().length}, headless Chromium, ${steps} steps`);
for (const backend of backends.length > 0 ? backends : ['webgl', 'wasm', 'cpu', 'webgpu']) {
  const browser = await launch(backend === 'webgpu');
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${site.url}?backend=${backend}&steps=${steps}`);
    await waitIdle(page, 0, 300_000, `loading on ${backend}`);
    const attr = async (name: string) => (await page.getAttribute('body', `data-${name}`)) ?? '';
    const problem = async () => (await attr('error')) ? `${await attr('error')}: ${await page.textContent('#error-message')}` : errors[0];
    if ((await attr('backend')) !== backend || (await problem())) {
      console.log(`${backend}: did not run (${(await problem()) ?? `fell back to ${await attr('backend')}`})`);
      continue;
    }
    const msG = await attr('ms-g');
    const n = await jobs(page);
    await page.click('#horizontal');
    await waitIdle(page, n, 600_000, `the path on ${backend}`);
    const p = await problem();
    if (p) console.log(`${backend}: G(x) ${msG} ms, the path failed: ${p}`);
    else console.log(`${backend}: G(x) ${msG} ms (first call), ${await attr('ms-per-step')} ms per path step (${await attr('steps')} steps)`);
  } finally {
    await browser.close();
  }
}
site.close();
