/**
 * The core's correctness in the browser: tests/browser/suite.ts runs in Node on `cpu` (the
 * reference), then in headless Chromium (Debian's `chromium`, driven by playwright-core) on `webgl`
 * and on `webgpu` (SwiftShader's software adapters: WebGPU needs `--enable-unsafe-webgpu` and a
 * secure context, hence a page served from 127.0.0.1), and every number is compared.
 *
 * Tolerance: max|browser − cpu| ≤ 1e-4 · max|cpu| per array (norm-wise, as tests/helpers.ts). Both
 * sides are float32, but WebGL and WebGPU run other kernels: shaders sum in other orders, and
 * their exp, log and tanh are approximations a few ulps apart from JavaScript's Math. Measured on
 * webgl (Chromium's SwiftShader, 2026-12-01): 4e-8 to 7.2e-6, the largest on a projection (an
 * orthonormal basis made from rows that differ by rounding); 1e-4 leaves a margin of 14. The projector's own identity,
 * ‖P(Pw) − Pw‖, must be below 1e-3·‖Pw‖ on every backend, and nothing may leak. A backend that
 * does not start fails the run; a missing kernel shows as the typed error the suite caught.
 *
 * Both must pass. Chromium's flags matter for `webgpu`: tfjs reads a tensor synchronously
 * (`dataSync`, which infogeo's synchronous calls such as `RowSpaceProjector.project` need) by
 * drawing the GPU buffer into a WebGPU canvas; headless Chromium without Vulkan cannot composite
 * that canvas, so the read returns zeros and loses the device ("A valid external Instance reference
 * no longer exists"). With SwiftShader's Vulkan (`--enable-features=Vulkan --use-vulkan=swiftshader
 * --use-angle=swiftshader`, all three) the read works. Measured on webgpu the same day: 3.6e-8 to
 * 1.7e-5 (again a projection), a margin of 6.
 *
 *   npm run test:browser-core        (CHROMIUM=/path/to/chromium to use another binary)
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { build, preview } from 'vite';
import { registerGradientKernels } from '../../src/index.js';
import { runSuite } from './suite.js';
import type { SuiteResult } from './suite.js';

const here = dirname(fileURLToPath(import.meta.url));
const executablePath = process.env['CHROMIUM'] ?? '/usr/bin/chromium';
const RTOL = 1e-4;
const failures: string[] = [];
const fail = (msg: string) => failures.push(msg);

tf.env().set('PROD', true);
await tf.setBackend('cpu');
registerGradientKernels();
const reference = await runSuite();
if (Object.keys(reference.errors).length > 0) throw new Error(`the cpu reference failed: ${JSON.stringify(reference.errors)}`);

if (!existsSync(executablePath)) {
  console.error(`Chromium not found at ${executablePath}: apt-get install chromium, or set CHROMIUM=/path/to/it.`);
  process.exit(1);
}
await build({ configFile: join(here, 'vite.config.ts') });
const server = await preview({ configFile: join(here, 'vite.config.ts'), preview: { port: 0, host: '127.0.0.1' } });
const url = server.resolvedUrls?.local[0];
const browser = await chromium.launch({
  executablePath,
  args: ['--headless', '--no-sandbox', '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-angle=swiftshader', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
});

/** max|a − b| / max|b| (norm-wise relative error). */
function relError(a: number[], b: number[]): number {
  let err = 0;
  let scale = 0;
  b.forEach((v, i) => {
    err = Math.max(err, Math.abs((a[i] as number) - v));
    scale = Math.max(scale, Math.abs(v));
  });
  return err / (scale || 1);
}

try {
  for (const backend of ['webgl', 'webgpu']) {
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    const t0 = Date.now();
    await page.goto(`${url}?backend=${backend}`);
    await page.waitForFunction(() => document.body.dataset['result'] !== undefined, undefined, { timeout: 600_000, polling: 1000 });
    const got = JSON.parse((await page.evaluate(() => document.body.dataset['result'])) as string) as SuiteResult & { unavailable?: string; failed?: string };
    await page.close();
    const seconds = ((Date.now() - t0) / 1000).toFixed(1);
    if (got.unavailable || got.failed) {
      fail(`${backend}: ${got.unavailable ?? got.failed}`);
      console.log(`${backend}: ${got.unavailable ?? got.failed}`);
      continue;
    }
    console.log(`${backend} (${seconds} s):`);
    for (const [key, want] of Object.entries(reference.values)) {
      const have = got.values[key];
      if (have === undefined) {
        fail(`${backend} ${key}: ${got.errors[key] ?? 'missing'}`);
        console.log(`  ${key.padEnd(26)} ERROR ${got.errors[key]}`);
        continue;
      }
      let ok = have.length === want.length && have.every(Number.isFinite);
      let detail = '';
      if (key.endsWith('/projector')) {
        // [‖P(Pw) − Pw‖ per sample (2), then Pw]: the identity on this backend, and Pw against cpu.
        const pw = have.slice(2);
        const norm = Math.sqrt(pw.reduce((s, v) => s + v * v, 0) / 2);
        const identity = Math.max(have[0] as number, have[1] as number) / norm;
        const e = relError(pw, want.slice(2));
        ok &&= identity < 1e-3 && e <= RTOL;
        detail = `P² = P to ${identity.toExponential(1)}, Pw to ${e.toExponential(1)}`;
      } else {
        const e = relError(have, want);
        ok &&= e <= RTOL;
        detail = `relative error ${e.toExponential(1)}`;
      }
      console.log(`  ${key.padEnd(26)} ${ok ? 'ok' : 'FAILED'}  ${detail}`);
      if (!ok) fail(`${backend} ${key}: ${detail}`);
    }
    console.log(`  tensors left behind: ${got.leaked}${pageErrors.length ? `; page errors: ${pageErrors.join('; ')}` : ''}`);
    if (got.leaked !== 0) fail(`${backend}: ${got.leaked} tensors left behind`);
    if (pageErrors.length > 0) fail(`${backend}: page errors: ${pageErrors.join('; ')}`);
  }
} finally {
  await browser.close();
  server.httpServer.close();
}
if (failures.length > 0) {
  console.error(`browser core tests: FAILED\n  ${failures.join('\n  ')}`);
  process.exit(1);
}
console.log('browser core tests: passed on webgl and webgpu');
