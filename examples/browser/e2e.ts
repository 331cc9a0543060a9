/**
 * End-to-end test of the browser demo in headless Chromium (Debian's `chromium`, driven by
 * playwright-core): build the page with Vite, serve it, press "Walk", and check that the current
 * image changed, that a predicted label is shown and that no error was reported. Saves a screenshot
 * to examples/browser/out/screenshot.png. Exits non-zero on failure.
 *
 *   npm run test:browser        (CHROMIUM=/path/to/chromium to use another binary)
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { build, preview } from 'vite';
import { prepareBrowserAssets } from './prepare.js';

const here = dirname(fileURLToPath(import.meta.url));
const executablePath = process.env['CHROMIUM'] ?? '/usr/bin/chromium';
if (!existsSync(executablePath)) {
  console.error(`Chromium not found at ${executablePath}: apt-get install chromium, or set CHROMIUM=/path/to/it.`);
  process.exit(1);
}
const fail = (msg: string): never => {
  console.error(`browser e2e: FAILED: ${msg}`);
  process.exit(1);
};

await prepareBrowserAssets();
await build({ configFile: join(here, 'vite.config.ts'), logLevel: 'warn' });
const server = await preview({ configFile: join(here, 'vite.config.ts'), logLevel: 'warn', preview: { port: 0, host: '127.0.0.1' } });
const url = server.resolvedUrls?.local[0] ?? fail('the preview server has no URL');
const browser = await chromium.launch({
  executablePath,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
});
try {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.goto(`${url}?steps=20`); // headless Chromium renders WebGL in software: ~1 s per step
  await page.waitForSelector('#walk:not([disabled])', { timeout: 120_000 });
  const backend = await page.getAttribute('body', 'data-backend');
  const pixels = () => page.evaluate(() => Array.from((document.getElementById('current') as HTMLCanvasElement).getContext('2d')!.getImageData(0, 0, 28, 28).data));
  const before = await pixels();
  await page.click('#walk');
  const t0 = Date.now();
  while ((await page.getAttribute('body', 'data-done')) !== 'true') {
    if (Date.now() - t0 > 300_000) fail(`the walk did not finish in 5 minutes; status: ${await page.textContent('#status')}`);
    await page.waitForTimeout(2000);
    console.log(`  … ${await page.textContent('#status')}`);
  }
  const after = await pixels();
  const changed = after.filter((v, i) => v !== before[i]).length;
  const label = (await page.textContent('#label')) ?? '';
  const steps = Number(await page.getAttribute('body', 'data-steps'));
  const status = (await page.textContent('#status')) ?? '';
  mkdirSync(join(here, 'out'), { recursive: true });
  await page.screenshot({ path: join(here, 'out', 'screenshot.png'), fullPage: true });
  console.log(`browser e2e: backend ${backend}, ${steps} steps, ${changed} canvas bytes changed, "${label}", "${status}"`);
  if (errors.length > 0) fail(`page errors: ${errors.join('; ')}`);
  if ((await page.getAttribute('body', 'data-error')) !== null) fail('the page reported an error');
  if (!(steps >= 10)) fail(`expected at least 10 steps, got ${steps}`);
  if (changed === 0) fail('the current image did not change');
  if (!/label \d, p = \d\.\d{3}/.test(label)) fail(`no predicted label shown (got "${label}")`);
  console.log('browser e2e: passed');
} finally {
  await browser.close();
  server.httpServer.close();
}
