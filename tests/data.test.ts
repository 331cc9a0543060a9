/**
 * `infogeo/data`: the loaders on real files (when the data sets are here) and on small generated
 * ones, and the downloader and its command against a local HTTP server on 127.0.0.1 — a dropped
 * connection (resume), an abort (resume on the next call), a wrong checksum (nothing cached), a 404
 * (the next mirror), a .tar.gz unpacked. No tensors: the cpu project only.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  DataError,
  dataRoot,
  datasetDir,
  downloadDataset,
  loadCifar10,
  loadFashionMnist,
  loadMnist,
  type DatasetSpec,
  type DownloadProgress,
} from '../src/data/index.js';
import { downloadSpec } from '../src/data/download.js';
import { ValueError } from '../src/errors.js';
import { SHARED_DATASETS } from '../examples/data.js';
import { needs, realDataset } from './realData.js';

const MNIST = realDataset('mnist');
const CIFAR = realDataset('cifar10');
/** A fresh folder under the system's temporary one, removed after the test that made it. */
const made: string[] = [];
const tmp = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), `infogeo-${prefix}-`));
  made.push(dir);
  return dir;
};
afterEach(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

// ---- small generated files in the official formats ----

function idx(magic: number, dims: number[], data: Uint8Array): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header.writeUInt32BE(magic, 0);
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return gzipSync(Buffer.concat([header, data]));
}

/** n images whose pixel p of image i is (7i + p) mod 256, and labels 9 − i. */
function writeIdxSet(dir: string, split: 'train' | 't10k', n: number): void {
  mkdirSync(dir, { recursive: true });
  const px = Uint8Array.from({ length: n * 784 }, (_, k) => (7 * Math.floor(k / 784) + (k % 784)) % 256);
  writeFileSync(join(dir, `${split}-images-idx3-ubyte.gz`), idx(2051, [n, 28, 28], px));
  writeFileSync(join(dir, `${split}-labels-idx1-ubyte.gz`), idx(2049, [n], Uint8Array.from({ length: n }, (_, i) => 9 - i)));
}

/** n CIFAR-10 records: label (3 + r) mod 10, plane ch of record r filled with byte 10r + 100ch + (p mod 7). */
function cifarRecords(n: number): Buffer {
  const buf = Buffer.alloc(n * 3073);
  for (let r = 0; r < n; r++) {
    buf[r * 3073] = (3 + r) % 10;
    for (let ch = 0; ch < 3; ch++) for (let p = 0; p < 1024; p++) buf[r * 3073 + 1 + ch * 1024 + p] = 10 * r + 100 * ch + (p % 7);
  }
  return buf;
}

/** A ustar archive (what `tar -czf` writes), gzipped. */
function tarGz(entries: Record<string, Buffer>): Buffer {
  const blocks: Buffer[] = [];
  for (const [name, data] of Object.entries(entries)) {
    const h = Buffer.alloc(512);
    h.write(name, 0, 'latin1');
    h.write('0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(data.length.toString(8).padStart(11, '0') + '\0', 124);
    h.write('00000000000\0', 136);
    h.write('        ', 148);
    h.write('0', 156);
    h.write('ustar\0', 257);
    h.write('00', 263);
    const sum = h.reduce((a, b) => a + b, 0);
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    blocks.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}

function specOf(files: Record<string, Buffer>, mirrors: string[], complete?: Record<string, number>, extract?: Record<string, string>): DatasetSpec {
  const list = Object.entries(files).map(([name, b]) => ({ name, bytes: b.length, md5: md5(b) }));
  return {
    name: 'mnist',
    title: 'Test set',
    homepage: 'http://127.0.0.1/',
    mirrors,
    files: list,
    complete: complete ?? Object.fromEntries(list.map((f) => [f.name, f.bytes])),
    ...(extract ? { extract } : {}),
  };
}

// ---- a local HTTP server with range requests and scripted misbehaviour ----

/**
 * What a route serves; `misrange` answers a range request from byte `asked` with a 206 whose
 * Content-Range starts at `misrange(asked)` instead (a server or proxy that misreads the range),
 * without a Content-Length with `noLength`.
 */
type Behaviour = { body: Buffer; status?: number; dropAfter?: number; stallAfter?: number; misrange?: (asked: number) => number; noLength?: boolean };
const routes = new Map<string, Behaviour>();
const requests: { path: string; range: string | undefined }[] = [];
let base = '';
const server = createServer((req: IncomingMessage, res: ServerResponse) => {
  const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
  requests.push({ path, range: req.headers.range });
  const route = routes.get(path);
  if (route === undefined || route.status === 404) {
    res.writeHead(404).end('not found');
    return;
  }
  const buf = route.body;
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  const asked = m ? Number(m[1]) : 0;
  if (asked >= buf.length) {
    res.writeHead(416).end();
    return;
  }
  const start = m && route.misrange ? route.misrange(asked) : asked;
  const body = buf.subarray(start);
  res.writeHead(m ? 206 : 200, { ...(route.noLength ? {} : { 'content-length': body.length }), ...(m ? { 'content-range': `bytes ${start}-${buf.length - 1}/${buf.length}` } : {}) });
  const cut = route.dropAfter ?? route.stallAfter;
  if (cut !== undefined && cut < body.length) {
    if (route.dropAfter !== undefined) delete route.dropAfter; // drop once
    const stall = route.stallAfter !== undefined;
    if (stall) delete route.stallAfter;
    res.write(body.subarray(0, cut), () => {
      if (!stall) setTimeout(() => res.socket?.destroy(), 10);
    });
    return;
  }
  res.end(body);
});

beforeAll(async () => {
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((ok) => server.close(ok));
});
afterEach(() => {
  routes.clear();
  requests.length = 0;
});

const savedEnv = { ...process.env };
afterEach(() => {
  for (const k of ['INFOGEO_DATA', 'INFOGEO_DATA_MIRROR', 'XDG_CACHE_HOME']) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
});

// ---- the loaders ----

describe.skipIf(MNIST === undefined)(`loadMnist on the real files${needs('mnist', MNIST)}`, () => {
  it('reads the IDX files: counts, pixel range, and the well-known first labels', () => {
    const test = loadMnist('test', { dir: MNIST });
    expect(test.count).toBe(10000);
    expect(test.images.length).toBe(10000 * 784);
    expect(test.shape).toEqual([28, 28, 1]);
    expect(test.labels[0]).toBe(7); // the first MNIST test digit is a 7
    const train = loadMnist('train', { dir: MNIST, limit: 3 });
    expect(Array.from(train.labels)).toEqual([5, 0, 4]); // the first three training digits
    expect(train.images.every((v) => v >= 0 && v <= 1)).toBe(true);
    expect(Math.max(...train.images)).toBe(1);
  });
});

describe.skipIf(CIFAR === undefined)(`loadCifar10 on the real files${needs('cifar10', CIFAR)}`, () => {
  it('reads the binary records into NHWC pixels in [0, 1], the first labels, only the batches it needs', () => {
    const train = loadCifar10('train', { dir: CIFAR, limit: 10000 });
    const test = loadCifar10('test', { dir: CIFAR, limit: 1000 });
    expect([train.count, test.count]).toEqual([10000, 1000]);
    expect(train.labels[0]).toBe(6); // the first image of data_batch_1 is a frog
    expect(test.labels[0]).toBe(3); // the first test image is a cat
    expect(test.classes[3]).toBe('cat');
    const file = existsSync(join(CIFAR!, 'test_batch.bin')) ? 'test_batch.bin' : 'test_batch_first1000.bin';
    const raw = readFileSync(join(CIFAR!, file));
    // pixel (row 0, col 1): R, G, B are bytes 1 + 1, 1 + 1024 + 1, 1 + 2048 + 1 of record 0
    expect([0, 1, 2].map((ch) => Math.round(test.images[3 + ch]! * 255))).toEqual([raw[2], raw[1026], raw[2050]]);
    if (!existsSync(join(CIFAR!, 'data_batch_2.bin'))) {
      expect(() => loadCifar10('train', { dir: CIFAR, limit: 10001 })).toThrow(/data_batch_2\.bin is not in/);
    }
  });
});

describe('the loaders on generated files', () => {
  it('loadMnist and loadFashionMnist: pixels / 255 in NHWC order, labels, limit, classes', () => {
    const dir = tmp('idx');
    writeIdxSet(dir, 't10k', 3);
    const all = loadMnist('test', { dir });
    expect(all.count).toBe(3);
    expect(Array.from(all.labels)).toEqual([9, 8, 7]);
    expect(all.images[784 + 5]).toBeCloseTo(((7 + 5) % 256) / 255, 7); // image 1, pixel 5
    expect(all.images[2 * 784 + 300]).toBeCloseTo(((14 + 300) % 256) / 255, 7);
    const two = loadFashionMnist('test', { dir, limit: 2 });
    expect(two.count).toBe(2);
    expect(two.images.length).toBe(2 * 784);
    expect(two.classes[9]).toBe('Ankle boot');
  });

  it('loadCifar10: planes to NHWC, the batches in order, the test prefix file', () => {
    const dir = tmp('cifar');
    writeFileSync(join(dir, 'data_batch_1.bin'), cifarRecords(2));
    writeFileSync(join(dir, 'test_batch_first1000.bin'), cifarRecords(1));
    // Only data_batch_1 is needed for ≤ 10,000 images, but all 50,000 need the other four.
    expect(() => loadCifar10('train', { dir })).toThrow(/data_batch_2\.bin, data_batch_3\.bin, data_batch_4\.bin, data_batch_5\.bin are not in/);
    const train = loadCifar10('train', { dir, limit: 10000 });
    expect(train.count).toBe(2);
    expect(Array.from(train.labels)).toEqual([3, 4]);
    // record 1, pixel p = 9: (R, G, B) = (10 + 2, 110 + 2, 210 + 2) / 255 with 9 mod 7 = 2
    expect(Array.from(train.images.subarray(3072 + 27, 3072 + 30), (v) => Math.round(v * 255))).toEqual([12, 112, 212]);
    expect(loadCifar10('test', { dir }).count).toBe(1);
    writeFileSync(join(dir, 'test_batch.bin'), cifarRecords(3));
    expect(loadCifar10('test', { dir }).count).toBe(3); // the official file wins
  });

  it('typed errors: missing files (with the command), broken files, bad arguments', () => {
    const empty = tmp('empty');
    process.env['INFOGEO_DATA'] = empty;
    expect(() => loadMnist('test')).toThrow(DataError);
    expect(() => loadMnist('test')).toThrow(/t10k-images-idx3-ubyte\.gz, t10k-labels-idx1-ubyte\.gz are not in .*mnist; run `npx infogeo-data mnist`/);
    expect(() => loadFashionMnist('train')).toThrow(/npx infogeo-data fashion-mnist/);
    expect(() => loadCifar10('test', { dir: empty })).toThrow(/test_batch\.bin is not in .*; pass the folder that holds them as \{ dir \}/);
    const bad = tmp('bad');
    writeFileSync(join(bad, 't10k-images-idx3-ubyte.gz'), Buffer.from('not gzip'));
    writeFileSync(join(bad, 't10k-labels-idx1-ubyte.gz'), idx(2049, [1], Uint8Array.of(1)));
    expect(() => loadMnist('test', { dir: bad })).toThrow(/not a readable gzip file/);
    writeFileSync(join(bad, 't10k-images-idx3-ubyte.gz'), idx(2049, [1], Uint8Array.of(1)));
    expect(() => loadMnist('test', { dir: bad })).toThrow(/not an IDX file with magic 2051/);
    writeFileSync(join(bad, 't10k-images-idx3-ubyte.gz'), idx(2051, [2, 28, 28], new Uint8Array(784)));
    writeFileSync(join(bad, 't10k-labels-idx1-ubyte.gz'), idx(2049, [2], Uint8Array.of(1, 2)));
    expect(() => loadMnist('test', { dir: bad })).toThrow(/truncated/);
    writeFileSync(join(bad, 't10k-images-idx3-ubyte.gz'), gzipSync(Buffer.from([0, 0, 8, 3, 0, 0])));
    expect(() => loadMnist('test', { dir: bad })).toThrow(/header is cut short/);
    writeFileSync(join(bad, 'test_batch.bin'), Buffer.alloc(3073 + 10));
    expect(() => loadCifar10('test', { dir: bad })).toThrow(/not a whole number of 3,073-byte/);
    expect(() => loadMnist('validation' as 'test', { dir: bad })).toThrow(ValueError);
    expect(() => loadMnist('test', { dir: bad, limit: -1 })).toThrow(/limit must be a whole number/);
  });

  it('dataRoot: INFOGEO_DATA, else the user cache directory', () => {
    process.env['INFOGEO_DATA'] = '/tmp/somewhere';
    expect(dataRoot()).toBe('/tmp/somewhere');
    expect(datasetDir('cifar10')).toBe('/tmp/somewhere/cifar10');
    expect(datasetDir('mnist', 'rel')).toBe(resolve('rel'));
    delete process.env['INFOGEO_DATA'];
    if (process.platform === 'linux') {
      process.env['XDG_CACHE_HOME'] = '/tmp/xdg';
      expect(dataRoot()).toBe('/tmp/xdg/infogeo');
    }
  });
});

// ---- the downloader ----

describe('downloadDataset against a local server', () => {
  const a = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 31) % 251));
  const b = Buffer.from('small file');

  it('fetches, checks and renames every file; reports progress; a second call fetches nothing', async () => {
    routes.set('/m/a.bin', { body: a });
    routes.set('/m/b.bin', { body: b });
    const dir = tmp('dl');
    const seen: DownloadProgress[] = [];
    const r = await downloadSpec(specOf({ 'a.bin': a, 'b.bin': b }, [`${base}/m/`]), dir, { onProgress: (p) => seen.push(p) });
    expect(r).toEqual({ dir, downloaded: true });
    expect(readFileSync(join(dir, 'a.bin')).equals(a)).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(['a.bin', 'b.bin']); // no .part left
    const got = seen.filter((p) => p.file === 'a.bin' && p.phase === 'download').map((p) => p.received);
    expect(got.at(-1)).toBe(a.length);
    expect(got.every((v, i) => i === 0 || v > got[i - 1]!)).toBe(true);
    expect(seen.some((p) => p.phase === 'verify')).toBe(true);
    requests.length = 0;
    expect(await downloadSpec(specOf({ 'a.bin': a, 'b.bin': b }, [`${base}/m/`]), dir)).toEqual({ dir, downloaded: false });
    expect(requests).toEqual([]);
  });

  it('resumes after a dropped connection with a range request', async () => {
    routes.set('/m/a.bin', { body: a, dropAfter: 100_000 });
    const dir = tmp('drop');
    await downloadSpec(specOf({ 'a.bin': a }, [`${base}/m/`]), dir);
    expect(readFileSync(join(dir, 'a.bin')).equals(a)).toBe(true);
    expect(requests.map((q) => q.range)).toEqual([undefined, expect.stringMatching(/^bytes=\d+-$/)]);
    expect(Number(/\d+/.exec(requests[1]!.range!)![0])).toBeGreaterThan(0);
  });

  it('a resume answered with a 206 from another byte than asked is not appended: it starts over (from byte 0 it is the file again)', async () => {
    const cases: [string, Partial<Behaviour>, boolean][] = [
      ['before the part file ends', { misrange: (asked) => asked - 1000 }, true],
      ['past it (a gap)', { misrange: (asked) => asked + 5000 }, true],
      ['before it, without a Content-Length', { misrange: (asked) => asked - 1000, noLength: true }, true],
      ['at byte 0: the whole file', { misrange: () => 0 }, false],
    ];
    for (const [label, behaviour, restarts] of cases) {
      routes.set('/m/a.bin', { body: a, dropAfter: 100_000, ...behaviour });
      requests.length = 0;
      const dir = tmp('misrange');
      await downloadSpec(specOf({ 'a.bin': a }, [`${base}/m/`]), dir);
      expect(md5(readFileSync(join(dir, 'a.bin'))), label).toBe(md5(a));
      expect(readdirSync(dir), label).toEqual(['a.bin']);
      // The first request dropped, the resume misanswered, then a plain request from the start.
      expect(requests.map((q) => q.range), label).toEqual([undefined, expect.stringMatching(/^bytes=[1-9]\d*-$/), ...(restarts ? [undefined] : [])]);
    }
    // No retry left to start over: a DataError that says what the server sent.
    routes.set('/m/a.bin', { body: a, dropAfter: 100_000, misrange: (asked) => asked - 1000 });
    const err = await downloadSpec(specOf({ 'a.bin': a }, [`${base}/m/`]), tmp('misrange0'), { retries: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DataError);
    expect((err as Error).message).toMatch(/HTTP 206 with Content-Range 'bytes \d+-299999\/300000' for a resume from byte \d+ \(started over\); gave up after 1 retries/);
  });

  it('abort: rejects with the reason, keeps what arrived, and the next call resumes from it', async () => {
    routes.set('/m/a.bin', { body: a, stallAfter: 150_000 });
    const dir = tmp('abort');
    const ctl = new AbortController();
    const reason = new Error('stop');
    const spec = specOf({ 'a.bin': a }, [`${base}/m/`]);
    const run = downloadSpec(spec, dir, { signal: ctl.signal, onProgress: (p) => p.received >= 100_000 && ctl.abort(reason) });
    await expect(run).rejects.toBe(reason);
    const kept = readFileSync(join(dir, 'a.bin.part')).length;
    expect(kept).toBeGreaterThan(0);
    expect(existsSync(join(dir, 'a.bin'))).toBe(false);
    requests.length = 0;
    await downloadSpec(spec, dir);
    expect(requests.map((q) => q.range)).toEqual([`bytes=${kept}-`]);
    expect(readFileSync(join(dir, 'a.bin')).equals(a)).toBe(true);
    await expect(downloadSpec(spec, tmp('pre'), { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
  });

  it('a wrong checksum: a DataError naming both MD5s, and nothing cached', async () => {
    const corrupt = Buffer.from(a);
    corrupt[1234] = (corrupt[1234]! + 1) % 256;
    routes.set('/m/a.bin', { body: corrupt });
    const dir = tmp('md5');
    const err = await downloadSpec(specOf({ 'a.bin': a }, [`${base}/m/`]), dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DataError);
    expect((err as Error).message).toContain(`its MD5 is ${md5(corrupt)}, not the published ${md5(a)}`);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a 404 falls through to the next mirror; 404 everywhere is a DataError with each mirror', async () => {
    routes.set('/good/a.bin', { body: a });
    const dir = tmp('404');
    await downloadSpec(specOf({ 'a.bin': a }, [`${base}/gone/`, `${base}/good/`]), dir);
    expect(readFileSync(join(dir, 'a.bin')).equals(a)).toBe(true);
    const err = await downloadSpec(specOf({ 'a.bin': a }, [`${base}/gone/`, `${base}/also-gone/`]), tmp('404b')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DataError);
    expect((err as Error).message).toMatch(/gone\/a\.bin: HTTP 404\n.*also-gone\/a\.bin: HTTP 404/s);
    // What to do offline: a mirror of the same files, or the files by hand in a folder of one's own.
    expect((err as Error).message).toMatch(/Set INFOGEO_DATA_MIRROR to a URL that serves the same files \(as URL\/mnist\/a\.bin\), or put the files into a folder yourself and pass it with --dir/);
    // Not retried: a 404 will not change.
    expect(requests.filter((q) => q.path.endsWith('gone/a.bin')).length).toBe(3);
  });

  it('unpacks a .tar.gz into the members it names, and deletes the archive', async () => {
    const batch = cifarRecords(2);
    const test = cifarRecords(1);
    const archive = tarGz({ 'cifar-10-batches-bin/readme.html': Buffer.from('<p>hi</p>'), 'cifar-10-batches-bin/data_batch_1.bin': batch, 'cifar-10-batches-bin/test_batch.bin': test });
    routes.set('/c/cifar.tar.gz', { body: archive });
    const dir = tmp('tar');
    const spec = specOf(
      { 'cifar.tar.gz': archive },
      [`${base}/c/`],
      { 'data_batch_1.bin': batch.length, 'test_batch.bin': test.length },
      { 'cifar-10-batches-bin/data_batch_1.bin': 'data_batch_1.bin', 'cifar-10-batches-bin/test_batch.bin': 'test_batch.bin' },
    );
    await downloadSpec(spec, dir);
    expect(readdirSync(dir).sort()).toEqual(['data_batch_1.bin', 'test_batch.bin']);
    expect(loadCifar10('train', { dir, limit: 2 }).labels).toEqual(Uint8Array.of(3, 4));
    expect(loadCifar10('test', { dir }).count).toBe(1);
    // An unpacking cut short leaves the verified archive under its name: the next call unpacks it
    // without fetching it again.
    const again = tmp('tar2');
    writeFileSync(join(again, 'cifar.tar.gz'), archive);
    requests.length = 0;
    await downloadSpec(spec, again);
    expect(requests).toEqual([]);
    expect(readdirSync(again).sort()).toEqual(['data_batch_1.bin', 'test_batch.bin']);
  });

  it('bad arguments are ValueErrors', async () => {
    await expect(downloadDataset('imagenet' as 'mnist')).rejects.toThrow(/unknown data set 'imagenet'; the data sets are 'mnist', 'fashion-mnist', 'cifar10'/);
    await expect(downloadDataset('constructor' as 'mnist')).rejects.toThrow(ValueError);
    await expect(downloadSpec(specOf({ 'b.bin': b }, [`${base}/m/`]), tmp('r'), { retries: -1 })).rejects.toThrow(ValueError);
  });

  it.skipIf(MNIST === undefined)(`MNIST from a mirror of the real files matches the catalog's published sizes and MD5s${needs('mnist', MNIST)}`, async () => {
    for (const f of readdirSync(MNIST!)) routes.set(`/mirror/mnist/${f}`, { body: readFileSync(join(MNIST!, f)) });
    process.env['INFOGEO_DATA'] = tmp('cache');
    process.env['INFOGEO_DATA_MIRROR'] = `${base}/mirror`;
    const r = await downloadDataset('mnist');
    expect(r.dir).toBe(join(process.env['INFOGEO_DATA'], 'mnist'));
    expect(loadMnist('test', { limit: 1 }).labels[0]).toBe(7); // from the cache folder, no dir
  });
});

describe('the infogeo-data command', () => {
  it('downloads into --dir, says where; a bad name prints the usage (exit 2); a failure one message (exit 1)', async () => {
    // The command runs in another process: serve with this one's event loop free (spawn, not spawnSync).
    const run = (args: string[], env: Record<string, string>) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((ok) => {
        const p = spawn(process.execPath, ['--import', 'tsx', 'src/data/cli.ts', ...args], { env: { ...process.env, ...env } });
        let stdout = '';
        let stderr = '';
        p.stdout.on('data', (d: Buffer) => (stdout += d));
        p.stderr.on('data', (d: Buffer) => (stderr += d));
        p.on('close', (status) => ok({ status, stdout, stderr }));
      });
    const img = idx(2051, [1, 28, 28], new Uint8Array(784));
    for (const f of ['train-images-idx3-ubyte.gz', 't10k-images-idx3-ubyte.gz']) routes.set(`/mirror/fashion-mnist/${f}`, { body: img });
    const dir = tmp('cli');
    const failed = await run(['fashion-mnist', '--dir', dir], { INFOGEO_DATA_MIRROR: `${base}/mirror` });
    expect(failed.status).toBe(1);
    // The generated image file is not the published one: refused by its size, and nothing is kept.
    expect(failed.stderr).toMatch(/could not download Fashion-MNIST's train-images-idx3-ubyte\.gz\.\n.*it serves \d+ bytes, the published size is 26421880/);
    expect(failed.stderr).not.toMatch(/^\s+at /m); // no stack
    expect(failed.stderr).toContain(`INFOGEO_DATA_MIRROR is ${base}/mirror: check that it serves fashion-mnist/train-images-idx3-ubyte.gz there`);
    expect(readdirSync(dir)).toEqual([]);
    const usage = await run(['imagenet'], {});
    expect(usage.status).toBe(2);
    expect(usage.stderr).toMatch(/^usage: infogeo-data mnist\|fashion-mnist\|cifar10 \[--dir D\]/);
    if (MNIST !== undefined) {
      for (const f of readdirSync(MNIST)) routes.set(`/mirror/mnist/${f}`, { body: readFileSync(join(MNIST, f)) });
      const ok = await run(['mnist', '--dir', dir], { INFOGEO_DATA_MIRROR: `${base}/mirror` });
      expect(ok.status).toBe(0);
      expect(ok.stdout).toBe(`MNIST is in ${dir}\n`);
      const again = await run(['mnist', '--dir', dir], { INFOGEO_DATA_MIRROR: `${base}/mirror` });
      expect(again.stdout).toBe(`MNIST is already in ${dir}\n`);
    }
  });
});

describe('the examples without their data', () => {
  it('print one line with the command to run, and exit with code 1', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'examples/quickstart/main.ts', '--data', join(SHARED_DATASETS, 'nowhere')], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^MNIST not found in .*nowhere: run `npm run data -- mnist` to download it/)]);
  });
});
