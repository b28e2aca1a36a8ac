// The host side of a model's thread pool (src/runtime/pool.c): one worker
// per extra thread, each running doze-mt.wasm on the runtime's shared memory.
// Threads need SharedArrayBuffer: in a page that is not cross-origin isolated
// (COOP/COEP headers) loadModel falls back to one thread with one warning.

import { DozeError } from './errors.js';
import { yieldToEventLoop } from './runtime.js';
import { newNodeWorker, nodeModule } from './node.js';

const isNode = typeof process !== 'undefined' && process.versions != null && process.versions.node != null;
const START_TIMEOUT_MS = 30000;
export const MAX_THREADS = 64;
const DEFAULT_CAP = 8;

/** The default thread count: the machine's cores, capped at 8. */
export async function defaultThreads() {
  let n = 1;
  if (isNode) {
    const os = await nodeModule('node:os');
    n = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  } else if (typeof navigator !== 'undefined' && navigator.hardwareConcurrency) {
    n = navigator.hardwareConcurrency;
  }
  return Math.max(1, Math.min(DEFAULT_CAP, n | 0));
}

/** Why threads cannot run here (null when they can). */
export function threadsUnavailable() {
  if (!isNode && globalThis.crossOriginIsolated === false) {
    return 'the page is not cross-origin isolated (serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)';
  }
  if (typeof SharedArrayBuffer === 'undefined') return 'SharedArrayBuffer is not available';
  return null;
}

let live = 0;
/** Node: pool workers whose thread is still running (tests check dispose ends them). */
export function liveWorkers() {
  return live;
}

let warned = false;
let warnVia = null;
/** One console warning per process/page for a fallback to one thread. */
export function warnFallback(reason) {
  if (warnVia) return warnVia(reason);
  if (warned) return;
  warned = true;
  console.warn(`doze-lm: running on 1 thread: ${reason}`);
}
/**
 * Inside doze-lm/worker's worker: fallback warnings go to fn (which hands
 * them to the page), so that the page warns once however many workers.
 */
export function sendFallbackWarnings(fn) {
  warnVia = fn;
}

/** A worker running url, its messages to onMessage(data), its errors to onError(e). */
async function spawn(url, onMessage, onError) {
  if (isNode) {
    const { Worker } = await nodeModule('node:worker_threads');
    const w = newNodeWorker(Worker, url);
    live++;
    w.once('exit', () => live--);
    w.on('message', onMessage);
    w.on('error', onError);
    // After the listeners: a 'message' listener takes a reference on the
    // worker again, and a pool must never keep the process alive (a model
    // left undisposed at the end of a script).
    w.unref();
    return { post: (m) => w.postMessage(m), terminate: () => w.terminate() };
  }
  const w = new Worker(url, { type: 'module' });
  w.addEventListener('message', (e) => onMessage(e.data));
  w.addEventListener('error', (e) => onError(e.error || new Error(e.message)));
  return { post: (m) => w.postMessage(m), terminate: () => w.terminate() };
}

/**
 * Gives model m (already loaded in rt, a doze-mt.wasm runtime) n threads:
 * the pool, then n - 1 workers; resolves once every worker is inside the
 * pool's loop. Returns { threads, stop() }: stop() after doze_model_free
 * (which waits for the workers to leave the loop) terminates them.
 */
export async function startPool(rt, m, n) {
  const x = rt.x;
  rt.check(x.doze_wasm_set_threads(m, n, rt.err), 'loadModel: threads');
  const pool = x.doze_wasm_model_pool(m);
  const workers = [];
  let failure = null;
  const stop = () => {
    for (const w of workers) w.terminate();
    workers.length = 0;
  };
  try {
    const url = new URL('./pool-worker.js', import.meta.url);
    for (let i = 1; i < n; i++) {
      const w = await spawn(
        url,
        (msg) => {
          if (msg && msg.type === 'error') failure ||= new DozeError('IO', `thread ${msg.index}: ${msg.message}`);
        },
        (e) => (failure ||= new DozeError('IO', `thread ${i}: ${(e && e.message) || e}`)),
      );
      workers.push(w);
      w.post({ module: rt.doze.module, memory: rt.x.memory, pool, index: i, stackTop: x.doze_wasm_pool_stack_top(pool, i) });
    }
    const t0 = performance.now();
    while (x.doze_wasm_pool_started(pool) < n - 1) {
      if (failure) throw failure;
      if (performance.now() - t0 > START_TIMEOUT_MS) throw new DozeError('IO', `the ${n - 1} pool workers did not start`);
      await new Promise((r) => setTimeout(r, 1));
    }
    await yieldToEventLoop();
  } catch (e) {
    // A worker may be anywhere in its start: terminating one inside the
    // pool's loop would leave the pool waiting for it, and freeing the pool
    // under one about to enter would hand it freed memory. So the workers are
    // terminated and the model is left allocated (e.leakModel): a failed start
    // leaks one model rather than hanging or corrupting the heap.
    stop();
    e.leakModel = true;
    throw e;
  }
  return { threads: n, stop };
}
