/**
 * Where data sets live on disk: the cache folder and each data set's folder in it.
 *
 * @module
 */
import { stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import type { DatasetName, DatasetSpec } from './catalog.js';

/**
 * The cache folder that holds one folder per data set: the environment variable `INFOGEO_DATA` if
 * it is set, else `infogeo` in the user's cache directory (`$XDG_CACHE_HOME` or `~/.cache` on
 * Linux, `~/Library/Caches` on macOS, `%LOCALAPPDATA%` on Windows).
 *
 * @returns an absolute path (the folder may not exist yet).
 */
export function dataRoot(): string {
  const env = process.env;
  if (env['INFOGEO_DATA']) return resolve(env['INFOGEO_DATA']);
  if (process.platform === 'win32') return join(env['LOCALAPPDATA'] ?? join(homedir(), 'AppData', 'Local'), 'infogeo', 'Cache');
  if (process.platform === 'darwin') return join(homedir(), 'Library', 'Caches', 'infogeo');
  return join(env['XDG_CACHE_HOME'] || join(homedir(), '.cache'), 'infogeo');
}

/**
 * The folder of one data set: `dir` if given, else `NAME` inside {@link dataRoot}.
 *
 * @param name - the data set.
 * @param dir - a folder that holds the data set's files directly, e.g.
 *   `/usr/share/datasets/fashion-mnist` (Debian's `dataset-fashion-mnist`).
 * @returns an absolute path.
 */
export function datasetDir(name: DatasetName, dir?: string): string {
  return resolve(dir ?? join(dataRoot(), name));
}

/** Whether `dir` holds every file of a complete copy, with the expected sizes. @internal */
export async function isComplete(spec: DatasetSpec, dir: string): Promise<boolean> {
  for (const [file, bytes] of Object.entries(spec.complete)) {
    try {
      if ((await stat(join(dir, file))).size !== bytes) return false;
    } catch {
      return false;
    }
  }
  return true;
}
