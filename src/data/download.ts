/**
 * Downloading a data set into its folder: resumable, checked against the published MD5s,
 * with progress and abort. Nothing unverified is ever left under a data set's final file names.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { DataError, ValueError } from '../errors.js';
import { DATASETS, DATASET_NAMES, type DatasetName, type DatasetSpec, type PublishedFile } from './catalog.js';
import { datasetDir, isComplete } from './store.js';
import { checkDataOptions } from '../optionNames.js';

/** What {@link downloadDataset} reports as it goes. */
export interface DownloadProgress {
  /** The data set. */
  dataset: DatasetName;
  /** The file being worked on. */
  file: string;
  /** `'download'`: bytes arriving; `'verify'`: checking the MD5; `'extract'`: unpacking an archive. */
  phase: 'download' | 'verify' | 'extract';
  /** Bytes of `file` done so far (for `'download'`, including what an earlier, interrupted run left). */
  received: number;
  /** The file's size in bytes. */
  total: number;
}

/** Options of {@link downloadDataset}. */
export interface DownloadOptions {
  /**
   * The folder to put the data set's files in. Default: `NAME` inside the cache folder
   * ({@link dataRoot}: `INFOGEO_DATA`, or the user's cache directory).
   */
  dir?: string;
  /**
   * Folder URLs (ending in `/`) to fetch the files from instead of the publishers', e.g. a mirror
   * on your network. The files must have the published names and checksums. Default: the
   * environment variable `INFOGEO_DATA_MIRROR` followed by `NAME/` if it is set, else the
   * publishers' URLs.
   */
  mirrors?: string[];
  /** Called as bytes arrive (at most every 64 KiB), and at each verification and extraction. */
  onProgress?: (p: DownloadProgress) => void;
  /** Cancels the download; the call rejects with the signal's reason. What arrived is kept, and the next call resumes from it. */
  signal?: AbortSignal;
  /** How many times a dropped connection or a server error is retried (each time resuming where it stopped). Default 5. */
  retries?: number;
}

/** What {@link downloadDataset} did. */
export interface DownloadResult {
  /** The data set's folder: pass it as `dir` to the loaders, or leave `dir` out if it is the default. */
  dir: string;
  /** False when a complete copy was already there and nothing was fetched. */
  downloaded: boolean;
}

const FN = 'downloadDataset';

/**
 * Downloads a data set (MNIST, Fashion-MNIST or CIFAR-10) from its publisher into a folder, unless
 * a complete copy is already there. This is what `npx infogeo-data NAME` runs.
 *
 * Each file goes to `FILE.part` first, and is renamed only after its size and MD5 match the
 * published ones; an interrupted download (dropped connection, abort, a killed process) resumes
 * from its `.part` file with an HTTP range request. A file whose checksum does not match is
 * deleted and the next mirror tried. CIFAR-10's archive is unpacked into the batch files
 * (`data_batch_1.bin` … `data_batch_5.bin`, `test_batch.bin`) and then deleted.
 *
 * Node only (it uses `node:fs` and `fetch`).
 *
 * @param name - `'mnist'`, `'fashion-mnist'` or `'cifar10'`.
 * @param options - see {@link DownloadOptions}.
 * @returns the folder and whether anything was fetched.
 * @throws {@link DataError} when every mirror failed (each one's reason is in the message) — nothing is
 *   left under a final file name; `ValueError` for an unknown name or bad options; the signal's
 *   reason when aborted.
 *
 * @example
 * ```ts
 * import { downloadDataset, loadMnist } from 'infogeo/data';
 * await downloadDataset('mnist', { onProgress: (p) => console.log(p.file, p.received, p.total) });
 * const test = loadMnist('test');   // from the same cache folder
 * ```
 */
export async function downloadDataset(name: DatasetName, options: DownloadOptions = {}): Promise<DownloadResult> {
  checkDataOptions(options, FN, { dir: true, mirrors: true, onProgress: true, signal: true, retries: true });
  const spec = Object.prototype.hasOwnProperty.call(DATASETS, name) ? DATASETS[name] : undefined;
  if (spec === undefined) {
    throw new ValueError(`${FN}: unknown data set '${String(name)}'; the data sets are ${DATASET_NAMES.map((n) => `'${n}'`).join(', ')}.`);
  }
  const envMirror = process.env['INFOGEO_DATA_MIRROR'];
  const mirrors = options.mirrors ?? (envMirror ? [`${envMirror.replace(/\/?$/, '/')}${name}/`] : spec.mirrors);
  return downloadSpec({ ...spec, mirrors }, datasetDir(name, options.dir), options);
}

/**
 * {@link downloadDataset} for any spec (the tests' small generated data sets).
 *
 * @internal
 */
export async function downloadSpec(spec: DatasetSpec, dir: string, options: DownloadOptions = {}): Promise<DownloadResult> {
  const { signal, onProgress } = options;
  const retries = options.retries ?? 5;
  if (!Number.isInteger(retries) || retries < 0) {
    throw new ValueError(`${FN}: retries must be a whole number ≥ 0, got ${retries}.`);
  }
  signal?.throwIfAborted();
  if (await isComplete(spec, dir)) return { dir, downloaded: false };
  await mkdir(dir, { recursive: true });
  for (const file of spec.files) {
    const dest = join(dir, file.name);
    // A file gets its final name only once its MD5 matched: one of the published size was fetched by
    // an earlier run (an archive whose unpacking was interrupted included).
    if ((await sizeOf(dest)) !== file.bytes) await fetchVerified(spec, file, dest, retries, options);
    if (spec.extract !== undefined) {
      await extractTarGz(spec, file, dest, dir, signal, onProgress);
      await rm(dest, { force: true });
    }
  }
  if (!(await isComplete(spec, dir))) {
    throw new DataError(`${FN}: ${spec.title} was fetched into ${dir}, but the folder does not hold the expected files (${Object.keys(spec.complete).join(', ')}).`);
  }
  return { dir, downloaded: true };
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}

/** A mirror answered in a way that retrying will not change (404, 403, a wrong checksum...). */
class MirrorFailed extends Error {}

/** Fetches `file` into `dest` from the first mirror that serves it with the published MD5. */
async function fetchVerified(spec: DatasetSpec, file: PublishedFile, dest: string, retries: number, options: DownloadOptions): Promise<void> {
  const failures: string[] = [];
  for (const mirror of spec.mirrors) {
    const url = mirror + file.name;
    try {
      await fetchResuming(spec, file, url, dest + '.part', retries, options);
      options.onProgress?.({ dataset: spec.name, file: file.name, phase: 'verify', received: 0, total: file.bytes });
      const md5 = await md5Of(dest + '.part');
      if (md5 !== file.md5) {
        await rm(dest + '.part', { force: true });
        throw new MirrorFailed(`its MD5 is ${md5}, not the published ${file.md5} (the file was deleted)`);
      }
      await rename(dest + '.part', dest);
      return;
    } catch (e) {
      if (options.signal?.aborted) throw options.signal.reason;
      failures.push(`${url}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  const folder = dest.slice(0, dest.length - file.name.length);
  const envMirror = process.env['INFOGEO_DATA_MIRROR'];
  const mirrorHint =
    options.mirrors === undefined && envMirror
      ? `INFOGEO_DATA_MIRROR is ${envMirror}: check that it serves ${spec.name}/${file.name} there`
      : `No network, or these hosts blocked? Set INFOGEO_DATA_MIRROR to a URL that serves the same files (as URL/${spec.name}/${file.name})`;
  throw new DataError(
    `${FN}: could not download ${spec.title}'s ${file.name}.\n` +
      failures.map((f) => `  ${f}`).join('\n') +
      `\n${mirrorHint}, or put the files into a folder yourself and pass it with --dir (the \`dir\` option); ` +
      `this one is ${folder} (${file.name}: MD5 ${file.md5}). A rerun resumes what arrived.`,
  );
}

/** Downloads `url` into `part`, resuming from what `part` already has; returns once it has `file.bytes` bytes. */
async function fetchResuming(spec: DatasetSpec, file: PublishedFile, url: string, part: string, retries: number, options: DownloadOptions): Promise<void> {
  const { signal, onProgress } = options;
  let lastError = '';
  for (let attempt = 0; attempt <= retries; attempt++) {
    if (attempt > 0) await sleep(Math.min(200 * attempt, 2000), signal);
    let have = (await sizeOf(part)) ?? 0;
    if (have > file.bytes) {
      await rm(part, { force: true });
      have = 0;
    }
    if (have === file.bytes) return;
    let res: Response;
    try {
      // identity: the published bytes, never a transfer encoding the server chose (a .gz unpacked on the way)
      res = await fetch(url, { signal, headers: { 'Accept-Encoding': 'identity', ...(have > 0 ? { Range: `bytes=${have}-` } : {}) } });
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      lastError = `no connection (${describe(e)})`;
      continue;
    }
    if (res.status === 416 && have > 0) {
      // The server has no bytes past what we have: a stale or foreign part file. Start over (the
      // full response's length then tells whether the mirror's file is the published one).
      await res.body?.cancel();
      await rm(part, { force: true });
      lastError = 'HTTP 416 on resume';
      continue;
    }
    if (res.status >= 500) {
      await res.body?.cancel();
      lastError = `HTTP ${res.status}`;
      continue;
    }
    if (res.status !== 200 && res.status !== 206) {
      await res.body?.cancel();
      throw new MirrorFailed(`HTTP ${res.status}`);
    }
    const range = /^bytes (\d+)-\d+\/(\d+)$/.exec(res.headers.get('content-range') ?? '');
    // A 206 holds the bytes its Content-Range names: from `have` (the resume asked for), from 0 (the
    // file again), or from elsewhere, which the part file cannot take (a server or proxy that
    // misread the range): appended, it would corrupt the file. Start over with a plain request.
    const from = res.status === 206 ? (range === null ? undefined : Number(range[1])) : 0;
    if (from !== have && from !== 0) {
      await res.body?.cancel();
      await rm(part, { force: true });
      lastError = `HTTP 206 with Content-Range '${res.headers.get('content-range') ?? ''}' for a resume from byte ${have} (started over)`;
      continue;
    }
    const resumed = have > 0 && from === have;
    if (!resumed) have = 0;
    const length = res.headers.get('content-length');
    const served = res.status === 206 ? Number((range as RegExpExecArray)[2]) : length !== null ? Number(length) : file.bytes;
    if (served !== file.bytes) {
      await res.body?.cancel();
      throw new MirrorFailed(`it serves ${served} bytes, the published size is ${file.bytes}`);
    }
    const handle = await open(part, resumed ? 'a' : 'w');
    let received = have;
    let reported = received;
    try {
      if (res.body === null) throw new Error('empty response');
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        await handle.write(chunk);
        received += chunk.length;
        if (received > file.bytes) throw new MirrorFailed(`it sent more than the published ${file.bytes} bytes`);
        if (received - reported >= 65536 || received === file.bytes) {
          reported = received;
          onProgress?.({ dataset: spec.name, file: file.name, phase: 'download', received, total: file.bytes });
        }
      }
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      if (e instanceof MirrorFailed) {
        await handle.close();
        await rm(part, { force: true });
        throw e;
      }
      lastError = `the connection dropped at ${received} of ${file.bytes} bytes (${describe(e)})`;
      continue;
    } finally {
      await handle.close().catch(() => undefined);
    }
    if (received === file.bytes) return;
    lastError = `the response ended at ${received} of ${file.bytes} bytes`;
  }
  throw new Error(`${lastError}; gave up after ${retries} retries`);
}

function describe(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const cause = (e as { cause?: unknown }).cause;
  return cause instanceof Error ? `${e.message}: ${cause.message}` : e.message;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = () => {
      signal?.removeEventListener('abort', stop);
      resolve();
    };
    const timer = setTimeout(done, ms);
    const stop = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', stop, { once: true });
  });
}

async function md5Of(path: string): Promise<string> {
  const hash = createHash('md5');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

/**
 * Unpacks the members of a `.tar.gz` that `spec.extract` names into `dir`, streaming (the archive is
 * never in memory whole). Each member is written to `NAME.part` and renamed when complete.
 */
async function extractTarGz(
  spec: DatasetSpec,
  file: PublishedFile,
  archive: string,
  dir: string,
  signal: AbortSignal | undefined,
  onProgress: DownloadOptions['onProgress'],
): Promise<void> {
  const wanted = spec.extract ?? {};
  const found = new Set<string>();
  let pending = Buffer.alloc(0); // bytes of a header not yet complete
  let remaining = 0; // bytes left in the current member's data
  let padding = 0; // bytes of zero padding after it
  let out: Awaited<ReturnType<typeof open>> | undefined;
  let outName = '';
  let consumed = 0;
  let reported = 0;
  let ended = false;

  const finishMember = async () => {
    if (out === undefined) return;
    await out.close();
    out = undefined;
    await rename(join(dir, outName + '.part'), join(dir, outName));
  };

  const source = createReadStream(archive);
  const gunzip = createGunzip();
  source.on('error', (e) => gunzip.destroy(e)); // .pipe forwards data, not errors
  source.pipe(gunzip);
  try {
    for await (const raw of gunzip as AsyncIterable<Buffer>) {
      signal?.throwIfAborted();
      let chunk = raw;
      consumed += chunk.length;
      while (chunk.length > 0 && !ended) {
        if (remaining > 0) {
          const take = Math.min(remaining, chunk.length);
          if (out !== undefined) await out.write(chunk.subarray(0, take));
          remaining -= take;
          chunk = chunk.subarray(take);
          if (remaining === 0) await finishMember();
          continue;
        }
        if (padding > 0) {
          const take = Math.min(padding, chunk.length);
          padding -= take;
          chunk = chunk.subarray(take);
          continue;
        }
        const need = 512 - pending.length;
        pending = Buffer.concat([pending, chunk.subarray(0, need)]);
        chunk = chunk.subarray(need);
        if (pending.length < 512) break;
        const header = pending;
        pending = Buffer.alloc(0);
        if (header.every((b) => b === 0)) {
          ended = true; // the end-of-archive marker
          break;
        }
        const field = (from: number, len: number) => header.subarray(from, from + len).toString('latin1').replace(/\0.*$/s, '');
        const prefix = field(345, 155);
        const path = (prefix ? prefix + '/' : '') + field(0, 100);
        const size = parseInt(field(124, 12).trim() || '0', 8);
        const type = field(156, 1);
        if (!Number.isFinite(size)) throw new DataError(`${FN}: ${file.name} is not a valid tar archive (bad size field for '${path}').`);
        remaining = size;
        padding = (512 - (size % 512)) % 512;
        const target = (type === '0' || type === '') ? wanted[path] : undefined;
        if (target !== undefined) {
          found.add(path);
          outName = target;
          out = await open(join(dir, target + '.part'), 'w');
          if (size === 0) await finishMember();
        }
      }
      if (consumed - reported >= 1 << 22) {
        reported = consumed;
        onProgress?.({ dataset: spec.name, file: file.name, phase: 'extract', received: consumed, total: 0 });
      }
    }
  } catch (e) {
    if (out !== undefined) await out.close().catch(() => undefined);
    if (signal?.aborted) throw signal.reason;
    if (e instanceof DataError) throw e;
    throw new DataError(`${FN}: could not unpack ${file.name} (${describe(e)}); delete it and run again.`);
  } finally {
    source.destroy(); // leaving the loop early destroys the gunzip stream only
  }
  if (out !== undefined || remaining > 0) {
    await out?.close();
    throw new DataError(`${FN}: ${file.name} ends in the middle of a member; delete it and run again.`);
  }
  const missing = Object.keys(wanted).filter((m) => !found.has(m));
  if (missing.length > 0) throw new DataError(`${FN}: ${file.name} has no ${missing.join(', ')}.`);
}
