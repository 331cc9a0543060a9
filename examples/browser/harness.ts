/**
 * What the explorer's end-to-end test (e2e.ts) and its timing script (measure.ts) share: build the
 * site with its assets, serve it with `vite preview` on 127.0.0.1, start Debian's headless Chromium
 * through playwright-core, and wait for the page's actions (it mirrors its state on <body data-*>).
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { build, preview } from 'vite';
import { prepareBrowserAssets } from './prepare.js';

export const here = dirname(fileURLToPath(import.meta.url));

export const fail = (msg: string): never => {
  console.error(`browser e2e: FAILED: ${msg}`);
  process.exit(1);
};

/**
 * Headless Chromium's flags: software WebGL (SwiftShader) with `--disable-gpu`. WebGPU needs
 * `--enable-unsafe-webgpu`, no `--disable-gpu`, and SwiftShader's Vulkan (the three flags of
 * tests/browser/run.ts): tfjs reads tensors synchronously on webgpu through a WebGPU canvas, which
 * headless Chromium composites only with them.
 */
export function chromiumArgs(webgpu = false): string[] {
  const gpu = webgpu ? ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-angle=swiftshader'] : ['--disable-gpu'];
  return ['--headless', '--no-sandbox', ...gpu, '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
}

/** Writes public/, builds dist/ and serves it; returns the URL and a function that stops the server. */
export async function serveSite(): Promise<{ url: string; trained: boolean; close: () => void }> {
  const { trained } = await prepareBrowserAssets();
  await build({ configFile: join(here, 'vite.config.ts'), logLevel: 'warn' });
  const server = await preview({ configFile: join(here, 'vite.config.ts'), logLevel: 'warn', preview: { port: 0, host: '127.0.0.1' } });
  const url = server.resolvedUrls?.local[0] ?? fail('the preview server has no URL');
  return { url, trained, close: () => server.httpServer.close() };
}

export async function launch(webgpu = false): Promise<Browser> {
  const executablePath = process.env['CHROMIUM'] ?? '/usr/bin/chromium';
  if (!existsSync(executablePath)) fail(`Chromium not found at ${executablePath}: apt-get install chromium, or set CHROMIUM=/path/to/it.`);
  return chromium.launch({ executablePath, args: chromiumArgs(webgpu) });
}

/** The page's finished actions so far (body[data-jobs]). */
export async function jobs(page: Page): Promise<number> {
  return Number((await page.getAttribute('body', 'data-jobs')) ?? 0);
}

/**
 * Waits until the page has finished more than `after` actions and is idle, printing its status
 * line every few seconds. Fails after `timeoutMs`.
 */
export async function waitIdle(page: Page, after: number, timeoutMs: number, what: string): Promise<void> {
  const t0 = Date.now();
  let last = 0;
  for (;;) {
    const [n, busy] = [await jobs(page), await page.getAttribute('body', 'data-busy')];
    if (n > after && busy === null) return;
    if (Date.now() - t0 > timeoutMs) fail(`${what} did not finish in ${timeoutMs / 1000} s; status: ${await page.textContent('#status')}`);
    if (Date.now() - last > 10_000) {
      last = Date.now();
      console.log(`  … ${await page.textContent('#status')}`);
    }
    await page.waitForTimeout(250);
  }
}

/** The RGBA bytes of a canvas on the page. */
export async function canvasBytes(page: Page, id: string): Promise<number[]> {
  return page.evaluate((id) => {
    const c = document.getElementById(id) as HTMLCanvasElement;
    return Array.from(c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data);
  }, id);
}

/** The number of distinct colours in a canvas. */
export async function colours(page: Page, id: string): Promise<number> {
  const bytes = await canvasBytes(page, id);
  const seen = new Set<number>();
  for (let i = 0; i < bytes.length; i += 4) seen.add((bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!);
  return seen.size;
}
