/**
 * `infogeo/wasm`: an opt-in helper that starts the tfjs WebAssembly backend, the fastest backend
 * available in Node without native binaries. This is the only module of infogeo that imports a
 * backend; the main entry `infogeo` imports none.
 *
 * @module infogeo/wasm
 */
import * as tf from '@tensorflow/tfjs-core';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { checkOptions } from '../checks.js';

/** Options of {@link useWasmBackend}. */
export interface WasmBackendOptions {
  /**
   * Folder (or URL prefix, ending in `/`) that serves the `.wasm` files of
   * `@tensorflow/tfjs-backend-wasm`. In Node it defaults to that package's own `dist/` folder; in a
   * browser pass the URL where your bundler or server puts them.
   */
  wasmPaths?: string;
}

async function nodeWasmDir(): Promise<string | undefined> {
  const proc = (globalThis as { process?: { versions?: { node?: string } } }).process;
  if (!proc?.versions?.node) return undefined;
  const { createRequire } = await import('node:module');
  const { dirname } = await import('node:path');
  const require = createRequire(import.meta.url);
  return dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + '/';
}

/**
 * Makes `wasm` the active tfjs backend and waits until it is ready. In Node it points the backend
 * at the package's own `.wasm` files. Pair it with `registerGradientKernels()` to differentiate
 * models with BatchNorm (ResNets) and to get weight gradients of conv nets.
 *
 * @param options - see {@link WasmBackendOptions}.
 * @returns the backend name, `'wasm'`.
 * @throws Error if the backend cannot start (for example the `.wasm` files are not found).
 *
 * @example
 * ```ts
 * import { registerGradientKernels } from 'infogeo';
 * import { useWasmBackend } from 'infogeo/wasm';
 * await useWasmBackend();
 * registerGradientKernels();
 * ```
 */
export async function useWasmBackend(options: WasmBackendOptions = {}): Promise<string> {
  checkOptions(options, 'useWasmBackend', { wasmPaths: true });
  const dir = options.wasmPaths ?? (await nodeWasmDir());
  if (dir !== undefined) setWasmPaths(dir);
  const restore = keepProcessHandlers();
  try {
    const ok = await tf.setBackend('wasm');
    if (!ok) throw new Error("useWasmBackend: tf.setBackend('wasm') failed; check that the .wasm files are reachable.");
    await tf.ready();
  } finally {
    restore();
  }
  return tf.getBackend();
}

const PROCESS_EVENTS = ['uncaughtException', 'unhandledRejection'] as const;

/** Emscripten's rethrowing handlers: `function(ex) { if (!(ex instanceof ExitStatus)) throw ex; }` and `function(reason) { throw reason; }`. */
function emscripten(listener: (...args: unknown[]) => void): boolean {
  const code = Function.prototype.toString.call(listener).replace(/\s+/g, ' ');
  return /ExitStatus/.test(code) || /^function ?\((\w+)\) ?\{ ?throw \1;? ?\}$/.test(code);
}

/**
 * In Node, the wasm module's Emscripten start-up adds `uncaughtException` and `unhandledRejection`
 * handlers that rethrow every error from inside its 40 KB one-line script: Node then prints that
 * line of minified source instead of the error, and exits with code 7. This records the handlers
 * before the backend starts and returns a function that removes those added since that are
 * Emscripten's (recognised by their code: a rethrow, or the ExitStatus check), not anyone else's
 * registered meanwhile.
 */
function keepProcessHandlers(): () => void {
  type Listener = (...args: unknown[]) => void;
  const proc = (globalThis as { process?: { listeners?: (e: string) => Listener[]; removeListener?: (e: string, l: Listener) => unknown } }).process;
  if (typeof proc?.listeners !== 'function' || typeof proc.removeListener !== 'function') return () => undefined;
  const { listeners, removeListener } = { listeners: proc.listeners.bind(proc), removeListener: proc.removeListener.bind(proc) };
  const before = new Map(PROCESS_EVENTS.map((e) => [e, new Set(listeners(e))]));
  return () => {
    for (const event of PROCESS_EVENTS) {
      for (const listener of listeners(event)) {
        if (!before.get(event)?.has(listener) && emscripten(listener)) removeListener(event, listener);
      }
    }
  };
}
