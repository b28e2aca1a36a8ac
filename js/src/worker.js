// doze-lm/worker: the same API as doze-lm, with the model in a Web Worker (or
// a Node worker_threads Worker), so inference never blocks the page.
//
//   import { loadModel } from 'doze-lm/worker';
//   const model = await loadModel(url, { onProgress, signal });
//   for await (const t of model.generate('Once', { maxTokens: 50, signal })) ...
//   model.dispose(); // also ends the worker
//
// One worker per loaded model. Abort signals on this side become messages.

import { DozeError, deserializeError, abortError } from './errors.js';
import { hasWasmSimd } from './wasm.js';

export { DozeError, hasWasmSimd };

const isNode =
  typeof process !== 'undefined' && process.versions != null && process.versions.node != null;

async function spawn(workerUrl) {
  if (isNode) {
    const { Worker } = await import('node:worker_threads');
    const w = workerUrl ? new Worker(new URL(workerUrl)) : new Worker(new URL('./worker-thread.js', import.meta.url));
    return {
      post: (m, t) => w.postMessage(m, t),
      onMessage: (fn) => w.on('message', fn),
      onError: (fn) => {
        w.on('error', fn);
        w.on('exit', (code) => fn(new Error(`the worker exited (code ${code})`)));
      },
      terminate: () => w.terminate(),
      ref: () => w.ref(),
      unref: () => w.unref(),
    };
  }
  // Written out literally so that bundlers (Vite, webpack) see and bundle it.
  const w = workerUrl
    ? new Worker(workerUrl, { type: 'module' })
    : new Worker(new URL('./worker-thread.js', import.meta.url), { type: 'module' });
  return {
    post: (m, t) => w.postMessage(m, t),
    onMessage: (fn) => w.addEventListener('message', (e) => fn(e.data)),
    onError: (fn) => {
      w.addEventListener('error', (e) => fn(new Error(e.message || 'the worker failed to start')));
      w.addEventListener('messageerror', () => fn(new Error('a message from the worker could not be read')));
    },
    terminate: () => w.terminate(),
    ref: () => {},
    unref: () => {},
  };
}

/** Request/response over a worker; streams for generate. */
class Rpc {
  constructor(w) {
    this.w = w;
    this.next = 1;
    this.pending = new Map(); // id -> { resolve, reject, onItem, onProgress }
    this.dead = null;
    this.ready = new Promise((resolve, reject) => {
      this.readyResolve = resolve;
      this.readyReject = reject;
    });
    w.onMessage((m) => this.#onMessage(m));
    w.onError((e) => this.#fail(e));
  }
  #onMessage(m) {
    if (m && m.type === 'ready') {
      if (this.pending.size === 0) this.w.unref(); // idle: do not keep Node alive
      return this.readyResolve();
    }
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.type === 'progress') p.onProgress?.(m.value);
    else if (m.type === 'item') p.onItem?.(m.value);
    else {
      this.#settle(m.id);
      if (m.type === 'result') p.resolve(m.value);
      else p.reject(deserializeError(m.error));
    }
  }
  #settle(id) {
    this.pending.delete(id);
    if (this.pending.size === 0) this.w.unref();
  }
  #fail(e) {
    if (this.dead) return;
    this.dead = new DozeError('WORKER', `doze worker: ${e && e.message ? e.message : e}`, { cause: e });
    this.readyReject(this.dead);
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.reject(this.dead);
    }
  }
  /** Sends a request; returns { id, promise }. */
  start(op, args, { transfer = [], onItem, onProgress, signal } = {}) {
    const id = this.next++;
    const promise = new Promise((resolve, reject) => {
      if (this.dead) return reject(this.dead);
      this.pending.set(id, { resolve, reject, onItem, onProgress });
      this.w.ref();
      try {
        this.w.post({ id, op, args }, transfer);
      } catch (e) {
        this.#settle(id);
        reject(new DozeError('INVALID_ARGUMENT', `cannot send ${op} to the worker: ${e.message}`, { cause: e }));
      }
    });
    if (signal && !this.dead) {
      const onAbort = () => this.abort(id, signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      const done = () => signal.removeEventListener('abort', onAbort);
      promise.then(done, done);
    }
    return { id, promise };
  }
  call(op, args, opts) {
    return this.start(op, args, opts).promise;
  }
  abort(id, reason) {
    if (this.dead) return;
    try {
      this.w.post({ op: 'abort', target: id, reason: typeof reason === 'string' ? reason : undefined });
    } catch {
      this.w.post({ op: 'abort', target: id });
    }
  }
  terminate() {
    this.pending.clear();
    this.dead = this.dead || new DozeError('STATE', 'the model has been disposed');
    return this.w.terminate();
  }
}

function responseTotal(res) {
  const enc = res.headers.get('content-encoding');
  if (enc && enc !== 'identity') return 0;
  const n = Number(res.headers.get('content-length'));
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/** Turns a source into something postMessage can carry (and what to transfer). */
function portable(source, options) {
  if (typeof source === 'string') {
    if (!isNode && globalThis.location && !/^[a-z][a-z0-9+.-]*:/i.test(source)) {
      return { source: new URL(source, globalThis.location.href).href, transfer: [] };
    }
    return { source, transfer: [] };
  }
  if (source instanceof URL) return { source: source.href, transfer: [] };
  if (typeof Response !== 'undefined' && source instanceof Response) {
    if (!source.ok) throw new DozeError('IO', `fetching ${source.url || 'the response'}: HTTP ${source.status}`);
    return { source: source.body, transfer: [source.body], totalBytes: responseTotal(source) };
  }
  if (typeof ReadableStream !== 'undefined' && source instanceof ReadableStream) {
    return { source, transfer: [source] };
  }
  if (source instanceof ArrayBuffer) {
    return { source, transfer: options.transfer ? [source] : [] };
  }
  if (ArrayBuffer.isView(source)) {
    const whole = source.byteOffset === 0 && source.byteLength === source.buffer.byteLength;
    return { source, transfer: options.transfer && whole ? [source.buffer] : [] };
  }
  return { source, transfer: [] }; // Blob / File: cloned by reference
}

/**
 * Loads a model in a new worker. Same options as doze-lm's loadModel, plus
 * `transfer: true` to move (not copy) an ArrayBuffer source into the worker
 * and `workerUrl` to use another copy of worker-thread.js.
 * @returns {Promise<WorkerModel>}
 */
export async function loadModel(source, options = {}) {
  const { onProgress, signal, contextLength, maxMemory, totalBytes, wasm, workerUrl } = options;
  if (signal && signal.aborted) throw abortError('loading the model', signal);
  const rpc = new Rpc(await spawn(workerUrl));
  try {
    await rpc.ready;
    const p = portable(source, options);
    const wasmOpt = wasm instanceof URL ? wasm.href : wasm;
    const info = await rpc.call(
      'load',
      {
        source: p.source,
        options: {
          contextLength,
          maxMemory,
          totalBytes: totalBytes ?? p.totalBytes,
          wasm: wasmOpt,
          progress: !!onProgress,
        },
      },
      { transfer: p.transfer, onProgress, signal },
    );
    return new WorkerModel(rpc, info);
  } catch (e) {
    rpc.terminate();
    if (signal && signal.aborted && !(e instanceof DozeError && e.code === 'ABORTED')) {
      throw abortError('loading the model', signal);
    }
    throw e;
  }
}

/** Streams a generate request's items as an async iterator. */
async function* stream(rpc, args, signal) {
  if (signal && signal.aborted) throw abortError('generation', signal);
  const queue = [];
  let wake = null;
  let finished = false;
  let failure = null;
  let result;
  const { id, promise } = rpc.start('generate', args, {
    signal,
    onItem: (item) => {
      queue.push(item);
      wake?.();
    },
  });
  promise.then(
    (r) => {
      result = r;
      finished = true;
      wake?.();
    },
    (e) => {
      failure = e;
      finished = true;
      wake?.();
    },
  );
  try {
    for (;;) {
      if (queue.length) {
        yield queue.shift();
        continue;
      }
      if (finished) break;
      await new Promise((r) => (wake = r));
      wake = null;
    }
    if (failure) throw failure;
    return result;
  } finally {
    if (!finished) {
      rpc.abort(id, 'the iterator was closed'); // the consumer stopped early
      await promise.catch(() => {});
    }
  }
}

async function collect(gen, onToken) {
  let text = '';
  for await (const t of gen) {
    text += t.text;
    if (onToken) onToken(t);
  }
  return text;
}

function strip(options = {}) {
  const { signal, onToken, ...rest } = options;
  void onToken;
  return { rest, signal };
}

/** A session in the worker (see Session in doze-lm). */
export class WorkerSession {
  #rpc;
  #id;
  constructor(rpc, id) {
    this.#rpc = rpc;
    this.#id = id;
  }
  generate(prompt, options = {}) {
    const { rest, signal } = strip(options);
    return stream(this.#rpc, { session: this.#id, prompt, options: rest }, signal);
  }
  complete(prompt, options = {}) {
    return collect(this.generate(prompt, options), options.onToken);
  }
  perplexity(text, { signal } = {}) {
    return this.#rpc.call('perplexity', { session: this.#id, text }, { signal });
  }
  /** @returns {Promise<number>} */
  position() {
    return this.#rpc.call('sessionPosition', { session: this.#id });
  }
  reset() {
    return this.#rpc.call('sessionReset', { session: this.#id });
  }
  dispose() {
    return this.#rpc.call('sessionDispose', { session: this.#id }).catch(() => {});
  }
}

/** A model living in a worker. Methods return promises (generate: an async iterator). */
export class WorkerModel {
  #rpc;
  constructor(rpc, info) {
    this.#rpc = rpc;
    /** Same fields as Model#info. */
    this.info = info;
  }
  /** @returns {Promise<Int32Array>} */
  tokenize(text, options = {}) {
    return this.#rpc.call('tokenize', { text, options });
  }
  /** @returns {Promise<string>} */
  detokenize(ids) {
    return this.#rpc.call('detokenize', { ids: Array.from(ids) });
  }
  generate(prompt, options = {}) {
    const { rest, signal } = strip(options);
    return stream(this.#rpc, { session: null, prompt, options: rest }, signal);
  }
  complete(prompt, options = {}) {
    return collect(this.generate(prompt, options), options.onToken);
  }
  perplexity(text, { signal } = {}) {
    return this.#rpc.call('perplexity', { session: null, text }, { signal });
  }
  /** @returns {Promise<WorkerSession>} */
  async createSession() {
    return new WorkerSession(this.#rpc, await this.#rpc.call('createSession', {}));
  }
  /** Bytes malloc'd in the worker's wasm memory. */
  heapUsed() {
    return this.#rpc.call('heapUsed', {});
  }
  /** Frees the model and ends the worker. */
  async dispose() {
    if (this.#rpc.dead) return;
    try {
      await this.#rpc.call('dispose', {});
    } finally {
      await this.#rpc.terminate();
    }
  }
}

export default loadModel;
