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
    this.pending = new Map(); // id -> { resolve, reject, onItem, onProgress, onPrompt }
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
    else if (m.type === 'prompt') p.onPrompt?.(m.value);
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
  start(op, args, { transfer = [], onItem, onProgress, onPrompt, signal } = {}) {
    const id = this.next++;
    const promise = new Promise((resolve, reject) => {
      if (this.dead) return reject(this.dead);
      this.pending.set(id, { resolve, reject, onItem, onProgress, onPrompt });
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
async function* stream(rpc, args, signal, onPromptStep, onItem) {
  if (signal && signal.aborted) throw abortError('generation', signal);
  const queue = [];
  let wake = null;
  let finished = false;
  let failure = null;
  let result;
  const { id, promise } = rpc.start('generate', args, {
    signal,
    onItem: (item) => {
      onItem?.(item);
      queue.push(item);
      wake?.();
    },
    onPrompt: onPromptStep,
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
  const { signal, onToken, onPromptStep, ...rest } = options;
  void onToken;
  if (onPromptStep) rest.promptSteps = true;
  return { rest, signal, onPromptStep };
}

function checkBudget(b, what = 'budget') {
  if (typeof b !== 'number' || !(b > 0 && b <= 1)) {
    throw new DozeError('INVALID_ARGUMENT', `${what} must be a number in (0, 1], got ${String(b)}`);
  }
  return b;
}

function bytesOf(bytes) {
  if (bytes instanceof ArrayBuffer) return new Uint8Array(bytes.slice(0));
  if (ArrayBuffer.isView(bytes)) return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength).slice();
  throw new DozeError('INVALID_ARGUMENT', 'loadGates: expected the gate file as a Uint8Array or ArrayBuffer');
}

/** Gates living in the worker (see Gates in doze-lm). */
export class WorkerGates {
  #rpc;
  /** @internal */
  constructor(rpc, d, model) {
    this.#rpc = rpc;
    /** @internal */
    this._id = d.id;
    this.model = model;
    this.kind = d.kind;
    this.protectLayers = d.protectLayers;
    this.protectTokens = d.protectTokens;
    this.layers = d.layers;
    this.heads = d.heads;
  }
  /** @returns {Promise<Uint8Array>} the gate file */
  save() {
    return this.#rpc.call('saveGates', { gates: this._id });
  }
  /** Frees them in the worker (the model drops them if they were active). */
  dispose() {
    this.model._dropGates(this);
    return this.#rpc.call('gatesDispose', { gates: this._id }).catch(() => {});
  }
}

/** Budget plumbing shared by WorkerModel and WorkerSession. */
function budgetApi(rpc, session, cache) {
  return {
    set(b) {
      if (b == null && session != null) {
        cache.value = undefined;
      } else {
        checkBudget(b);
        cache.value = b;
      }
      rpc.call('setBudget', { session, budget: b ?? null }).then((v) => {
        if (b != null) cache.value = v;
      }, () => {});
    },
    get: () => rpc.call('getBudget', { session }).then((v) => (cache.value = v)),
    auto: (options) => rpc.call('autoBudget', { session, options: options ?? null }),
  };
}

/** A session in the worker (see Session in doze-lm). */
export class WorkerSession {
  #rpc;
  #id;
  #budget = { value: undefined };
  #api;
  #model;
  constructor(rpc, id, model) {
    this.#rpc = rpc;
    this.#id = id;
    this.#model = model;
    this.#api = budgetApi(rpc, id, this.#budget);
  }
  generate(prompt, options = {}) {
    const { rest, signal, onPromptStep } = strip(options);
    return stream(this.#rpc, { session: this.#id, prompt, options: rest }, signal, onPromptStep, (t) => {
      if (t.id >= 0 && this.#budget.value !== undefined) this.#budget.value = t.budget;
    });
  }
  complete(prompt, options = {}) {
    return collect(this.generate(prompt, options), options.onToken);
  }
  perplexity(text, { signal, budget } = {}) {
    if (budget != null) checkBudget(budget, 'perplexity: budget');
    return this.#rpc.call('perplexity', { session: this.#id, text, options: { budget } }, { signal });
  }
  /**
   * The session's budget as last set here or reported by its tokens (the
   * model's while the session follows it); set it any time (null: follow
   * the model again). getBudget() asks the worker.
   */
  get budget() {
    return this.#budget.value ?? this.#model.budget;
  }
  set budget(b) {
    this.#api.set(b);
  }
  /** @returns {Promise<number>} */
  getBudget() {
    return this.#api.get();
  }
  /** @returns {Promise<void>} */
  autoBudget(options) {
    if (this.#budget.value === undefined) this.#budget.value = this.#model.budget;
    return this.#api.auto(options);
  }
  /** One step, optionally under a forced mask (see Session#step). */
  step(token, mask = {}) {
    return this.#rpc.call('step', { session: this.#id, token, mask });
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
  #budget = { value: 1 };
  #api;
  #gates = null;
  #known = new Map(); // gates id -> WorkerGates
  constructor(rpc, info) {
    this.#rpc = rpc;
    this.#api = budgetApi(rpc, null, this.#budget);
    /** Same fields as Model#info. */
    this.info = info;
  }
  #wrap(d) {
    if (!d) return null;
    let g = this.#known.get(d.id);
    if (!g) this.#known.set(d.id, (g = new WorkerGates(this.#rpc, d, this)));
    return g;
  }
  /** @internal */
  _dropGates(g) {
    this.#known.delete(g._id);
    if (this.#gates === g) this.#gates = null;
  }
  /**
   * The budget (see Model#budget) as last set here or reported by the last
   * token of model.generate (autoBudget moves it in the worker); setting it
   * is sent to the worker and applies from its next token. getBudget() asks
   * the worker.
   */
  get budget() {
    return this.#budget.value;
  }
  set budget(b) {
    this.#api.set(b);
  }
  /** @returns {Promise<number>} */
  getBudget() {
    return this.#api.get();
  }
  /** @returns {Promise<void>} */
  autoBudget(options) {
    return this.#api.auto(options);
  }
  /** The gates in use as known here (getGates() asks the worker, e.g. after an automatic calibration). */
  get gates() {
    return this.#gates;
  }
  set gates(g) {
    this.#checkGates(g);
    this.setGates(g).catch(() => {});
  }
  #checkGates(g) {
    if (g != null && (!(g instanceof WorkerGates) || g.model !== this)) {
      throw new DozeError('INVALID_ARGUMENT', 'model.gates: expected null or a WorkerGates object of this model');
    }
  }
  /** Sets the gates in the worker (null: dense whatever the budget). @returns {Promise<WorkerGates|null>} */
  async setGates(g) {
    this.#checkGates(g);
    this.#gates = g ?? null;
    return this.#wrap(await this.#rpc.call('setGates', { gates: g ? g._id : null }));
  }
  /** @returns {Promise<WorkerGates|null>} */
  async getGates() {
    this.#gates = this.#wrap(await this.#rpc.call('getGates', {}));
    return this.#gates;
  }
  /** @returns {Promise<WorkerGates>} */
  async calibrateGates(options = {}) {
    const { signal, ...rest } = options ?? {};
    if (rest.tokens != null) rest.tokens = Array.from(rest.tokens);
    const g = this.#wrap(await this.#rpc.call('calibrateGates', { options: rest }, { signal }));
    if (rest.activate !== false) this.#gates = g;
    return g;
  }
  /**
   * Model#finetuneGates in the worker: `onStep` events are streamed back,
   * `signal` is forwarded (the worker stops between steps and frees the run),
   * `init` is a WorkerGates of this model or null.
   * @returns {Promise<WorkerGates>}
   */
  async finetuneGates(text, options = {}) {
    const { signal, onStep, init, ...rest } = options ?? {};
    if (signal && signal.aborted) throw abortError('fine-tuning', signal);
    if (init != null && (!(init instanceof WorkerGates) || init.model !== this)) {
      throw new DozeError('INVALID_ARGUMENT', 'finetuneGates: init must be null or a WorkerGates object of this model');
    }
    if (onStep != null && typeof onStep !== 'function') {
      throw new DozeError('INVALID_ARGUMENT', 'finetuneGates: onStep must be a function');
    }
    const opts = { ...rest, init: init ? init._id : null, stream: !!onStep };
    const g = this.#wrap(await this.#rpc.call('finetuneGates', { text, options: opts }, { signal, onItem: onStep }));
    if (rest.activate !== false) this.#gates = g;
    return g;
  }
  /** @returns {Promise<WorkerGates>} */
  async loadGates(bytes, options = {}) {
    const copy = bytesOf(bytes);
    const g = this.#wrap(await this.#rpc.call('loadGates', { bytes: copy, options }, { transfer: [copy.buffer] }));
    if (options.activate !== false) this.#gates = g;
    return g;
  }
  /** @returns {Promise<Uint8Array>} the gate file of the active gates (or of `gates`) */
  saveGates(gates) {
    return this.#rpc.call('saveGates', { gates: gates ? gates._id : null });
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
    const { rest, signal, onPromptStep } = strip(options);
    return stream(this.#rpc, { session: null, prompt, options: rest }, signal, onPromptStep, (t) => {
      if (t.id >= 0) this.#budget.value = t.budget;
    });
  }
  complete(prompt, options = {}) {
    return collect(this.generate(prompt, options), options.onToken);
  }
  perplexity(text, { signal, budget } = {}) {
    if (budget != null) checkBudget(budget, 'perplexity: budget');
    return this.#rpc.call('perplexity', { session: null, text, options: { budget } }, { signal });
  }
  /** @returns {Promise<WorkerSession>} */
  async createSession() {
    return new WorkerSession(this.#rpc, await this.#rpc.call('createSession', {}), this);
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
