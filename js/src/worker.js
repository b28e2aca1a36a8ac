// doze-lm/worker: the same API as doze-lm, with the model in a Web Worker (or
// a Node worker_threads Worker), so inference never blocks the page.
//
//   import { loadModel } from 'doze-lm/worker';
//   const model = await loadModel(url, { onProgress, signal });
//   for await (const t of model.generate('Once', { maxTokens: 50, signal })) ...
//   model.dispose(); // also ends the worker
//
// One worker per loaded model. The proxies Model, Session and Gates are
// built from the table in api.js, member for member:
//   - methods return Promises (generate: an async iterator), with callbacks
//     (onProgress, onPromptStep, onStep, onToken) called back from the worker
//     and abort signals forwarded;
//   - getters are cached: every reply and every streamed item from the worker
//     carries the current getter values of its objects, so after any awaited
//     call they are exact, and during a stream they follow the worker (which
//     may be a few tokens ahead of the item in hand);
//   - setters check the value here (a bad value throws at once, as on the
//     main thread), show it at once, and apply in the worker from its next
//     step.

import { DozeError, deserializeError, abortError } from './errors.js';
import { hasRelaxedSimd, hasWasmSimd } from './wasm.js';
import { API } from './api.js';
import { checkOptions, bool, any } from './options.js';
import { LOAD_OPTIONS } from './load.js';
import { newNodeWorker, nodeModule } from './node.js';
import { warnFallback } from './pool.js';

// The cache is the origin's, the same from any thread: these run here.
export { listCachedModels, deleteCachedModel } from './cache.js';
export { DozeError, hasRelaxedSimd, hasWasmSimd };

const isNode =
  typeof process !== 'undefined' && process.versions != null && process.versions.node != null;

async function spawn(workerUrl) {
  if (isNode) {
    const { Worker } = await nodeModule('node:worker_threads');
    const w = newNodeWorker(Worker, workerUrl ? new URL(workerUrl) : new URL('./worker-thread.js', import.meta.url));
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

const SHUTDOWN_WAIT_MS = 2000; // how long dispose() waits for the worker to free its model

/** One worker: requests and replies, the proxies of its objects and their cached getter values. */
class Rpc {
  constructor(w) {
    this.w = w;
    this.next = 1;
    this.pending = new Map(); // id -> { resolve, reject, onItem, callbacks }
    this.proxies = new Map(); // ref -> proxy
    this.writes = new Map(); // `${ref}.${name}` -> setter messages not yet answered
    this.dead = null;
    this.ready = new Promise((resolve, reject) => {
      this.readyResolve = resolve;
      this.readyReject = reject;
    });
    w.onMessage((m) => this.#onMessage(m));
    w.onError((e) => this.#fail(e));
  }
  #onMessage(m) {
    if (m && m.type === 'warn') return warnFallback(m.reason);
    if (m && m.type === 'shutdown') return this.shutdownDone?.();
    if (m && m.type === 'ready') {
      if (this.pending.size === 0) this.w.unref(); // idle: do not keep Node alive
      return this.readyResolve();
    }
    const p = this.pending.get(m.id);
    if (p && p.write && (m.type === 'result' || m.type === 'error')) this.#written(p.write);
    const value = this.decode(m.value); // first: it may introduce the objects the states are about
    this.#apply(m.states);
    if (!p) return;
    if (m.type === 'item') {
      if (!p.thrown) p.onItem?.(value);
    } else if (m.type === 'event') {
      // A callback that throws ends its call as on the main thread (where
      // the error rejects the call and the run is freed): the request is
      // aborted in the worker and rejects with that error once the worker
      // has let go of it; later events are not delivered. Thrown here, it
      // would escape as an uncaught exception while the worker ran on.
      const cb = p.callbacks?.[m.cb];
      if (cb && !p.thrown) {
        try {
          cb(value);
        } catch (e) {
          p.thrown = { error: e };
          this.abort(m.id, `${m.cb} threw`);
        }
      }
    } else {
      this.#settle(m.id);
      if (p.thrown) p.reject(p.thrown.error);
      else if (m.type === 'result') p.resolve(value);
      else p.reject(deserializeError(m.error));
    }
  }
  #written(key) {
    const n = (this.writes.get(key) || 1) - 1;
    if (n) this.writes.set(key, n);
    else this.writes.delete(key);
  }
  /** The worker's getter values into the proxies' caches (a value set here and not yet answered wins). */
  #apply(states) {
    if (!states) return;
    for (const [ref, s] of Object.entries(states)) {
      const proxy = this.proxies.get(Number(ref));
      if (!proxy) continue;
      const cache = proxy[STATE];
      for (const [name, v] of Object.entries(s)) {
        const fresh = v.error ? { error: v.error } : { value: this.decode(v.value) };
        if (!this.writes.has(`${ref}.${name}`)) cache[name] = fresh;
      }
      if (cache.disposed?.value === true && !(proxy instanceof WorkerModel)) this.proxies.delete(Number(ref));
    }
  }
  /** A value from the worker: { $ref } becomes the object's proxy. */
  decode(v) {
    if (v == null || typeof v !== 'object' || !v.$ref) return v;
    let p = this.proxies.get(v.$ref);
    if (!p) {
      const C = PROXY_CLASSES[v.cls];
      p = Object.create(C.prototype);
      p[RPC] = this;
      p[REF] = v.$ref;
      p[STATE] = {};
      this.proxies.set(v.$ref, p);
      for (const [name, x] of Object.entries(v.values || {})) p[STATE][name] = { value: this.decode(x) };
    }
    return p;
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
  start(msg, { transfer = [], onItem, callbacks, signal, write } = {}) {
    const id = this.next++;
    const promise = new Promise((resolve, reject) => {
      if (this.dead) return reject(this.dead);
      this.pending.set(id, { resolve, reject, onItem, callbacks, write });
      if (write) this.writes.set(write, (this.writes.get(write) || 0) + 1);
      this.w.ref();
      try {
        this.w.post({ ...msg, id }, transfer);
      } catch (e) {
        this.#settle(id);
        if (write) this.#written(write);
        reject(new DozeError('INVALID_ARGUMENT', `cannot send ${msg.name || msg.op} to the worker: ${e.message}`, { cause: e }));
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
  abort(id, reason) {
    if (this.dead) return;
    try {
      this.w.post({ op: 'abort', target: id, reason: typeof reason === 'string' ? reason : undefined });
    } catch {
      this.w.post({ op: 'abort', target: id });
    }
  }
  async terminate() {
    const wasDead = this.dead;
    this.dead = this.dead || new DozeError('STATE', 'the model has been disposed');
    // what was in flight rejects as a main-thread model's calls do at dispose()
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.reject(this.dead);
    }
    if (!wasDead) {
      // the model freed in the worker first (its pool's workers end), then the worker
      const done = new Promise((resolve) => (this.shutdownDone = resolve));
      try {
        this.w.post({ op: 'shutdown' });
        await Promise.race([done, new Promise((r) => setTimeout(r, SHUTDOWN_WAIT_MS))]);
      } catch {
        /* the worker is gone already */
      }
    }
    return this.w.terminate();
  }
}

const RPC = Symbol('rpc');
const REF = Symbol('ref');
const STATE = Symbol('state');

/**
 * Arguments for postMessage: proxies as references; in option objects,
 * functions as callbacks and the AbortSignal as the request's own.
 */
function marshal(args) {
  const callbacks = {};
  let signal;
  const one = (v) => {
    if (v != null && typeof v === 'object' && v[REF]) return { $ref: v[REF] };
    return v;
  };
  const out = args.map((a) => {
    if (a == null || typeof a !== 'object' || a[REF] || Object.getPrototypeOf(a) !== Object.prototype) return one(a);
    const o = {};
    let hasCallback = false;
    for (const [k, v] of Object.entries(a)) {
      if (typeof v === 'function') {
        callbacks[k] = v;
        o[k] = { $cb: k };
        hasCallback = true;
      } else if (k === 'signal' && v != null) {
        signal = v;
        o[k] = { $signal: true };
      } else {
        o[k] = one(v);
      }
    }
    // the request's own signal, so that a callback that throws can stop the
    // call in the worker (every call taking callbacks takes a signal)
    if (hasCallback && o.signal == null) o.signal = { $signal: true };
    return o;
  });
  return { args: out, callbacks, signal };
}

/** Streams a request's items as an async iterator; closing it early aborts the request in the worker. */
async function* stream(rpc, msg, callbacks, signal) {
  if (signal && signal.aborted) throw abortError('generation', signal);
  const queue = [];
  let wake = null;
  let finished = false;
  let failure = null;
  let result;
  const { id, promise } = rpc.start(msg, {
    signal,
    callbacks,
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
      // the worker runs ahead of the consumer: once aborted, what it sent
      // since is not handed out (the main-thread entry stops at once too)
      if (signal && signal.aborted) throw abortError('generation', signal);
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

/** A proxy class for one row of the API table. */
function proxyClass(name, after = {}) {
  const C = { [name]: class {} }[name];
  for (const [member, d] of Object.entries(API[name])) {
    if (d.kind === 'value' || d.kind === 'get' || d.kind === 'getset') {
      const desc = {
        get() {
          const c = this[STATE][member];
          if (!c) return undefined;
          if (c.error) throw deserializeError(c.error);
          return c.value;
        },
      };
      if (d.kind === 'getset') {
        desc.set = function (v) {
          const rpc = this[RPC];
          if (rpc.dead) throw rpc.dead;
          const checked = d.check(v, this, PROXY_CLASSES.Gates);
          const key = `${this[REF]}.${member}`;
          rpc.start({ op: 'set', ref: this[REF], name: member, value: marshal([checked]).args[0] }, { write: key })
            .promise.catch(() => {});
          // shown at once; a session's budget set to null follows the model's
          this[STATE][member] = { value: member === 'budget' && checked == null ? this.model.budget : checked };
        };
      }
      Object.defineProperty(C.prototype, member, desc);
    } else if (d.kind === 'stream') {
      C.prototype[member] = function (...a) {
        const { args, callbacks, signal } = marshal(a);
        return stream(this[RPC], { op: 'call', ref: this[REF], name: member, args }, callbacks, signal);
      };
    } else {
      const hook = after[member];
      C.prototype[member] = async function (...a) {
        const rpc = this[RPC];
        if (hook && rpc.dead) return undefined;
        const { args, callbacks, signal } = marshal(a);
        if (signal && signal.aborted) throw abortError(member, signal);
        const r = rpc.start({ op: 'call', ref: this[REF], name: member, args }, { callbacks, signal });
        if (!hook) return r.promise;
        try {
          return await r.promise;
        } finally {
          await hook(this);
        }
      };
    }
  }
  return C;
}

/** A model living in a worker: the members of Model (see api.js for getters and setters). */
export const WorkerModel = proxyClass('Model', { dispose: (m) => m[RPC].terminate() });
// chat() renders its template here, in the page (where an import map or a
// bundler resolves @huggingface/jinja; a worker sees no import map), and
// generates in the worker.
WorkerModel.prototype.chat = async function* chat(messages, options) {
  const { chat: chatOn } = await import('./chat.js');
  return yield* chatOn(this, messages, options);
};
/** A session in the worker: the members of Session. */
export const WorkerSession = proxyClass('Session');
/** Gates held by the worker: the members of Gates. */
export const WorkerGates = proxyClass('Gates');
const PROXY_CLASSES = { Model: WorkerModel, Session: WorkerSession, Gates: WorkerGates };
export { WorkerModel as Model, WorkerSession as Session, WorkerGates as Gates };

function responseTotal(res) {
  const enc = res.headers.get('content-encoding');
  if (enc && enc !== 'identity') return 0;
  const n = Number(res.headers.get('content-length'));
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/** Turns a source into something postMessage can carry (and what to transfer). */
function portable(source, transfer) {
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
    return { source, transfer: transfer ? [source] : [] };
  }
  if (source != null && typeof source[Symbol.asyncIterator] === 'function' && typeof ReadableStream !== 'undefined' &&
      !ArrayBuffer.isView(source)) {
    // an async iterable (a generator, a Node Readable) cannot be posted: its
    // chunks go over as a stream, read on demand
    const it = source[Symbol.asyncIterator]();
    const stream = new ReadableStream({
      async pull(c) {
        const { done, value } = await it.next();
        if (done) c.close();
        else c.enqueue(value);
      },
      cancel() {
        if (typeof it.return === 'function') Promise.resolve(it.return()).catch(() => {});
      },
    });
    return { source: stream, transfer: [stream] };
  }
  if (ArrayBuffer.isView(source)) {
    const whole = source.byteOffset === 0 && source.byteLength === source.buffer.byteLength;
    return { source, transfer: transfer && whole ? [source.buffer] : [] };
  }
  return { source, transfer: [] }; // Blob / File: cloned by reference
}

const WORKER_LOAD_OPTIONS = { ...LOAD_OPTIONS, transfer: bool, workerUrl: any };

/**
 * Loads a model in a new worker. Same options as doze-lm's loadModel, plus
 * `transfer: true` to move (not copy) an ArrayBuffer source into the worker
 * and `workerUrl` to use another copy of worker-thread.js.
 */
export async function loadModel(source, options) {
  const o = checkOptions('loadModel', options, WORKER_LOAD_OPTIONS);
  const { signal, workerUrl, transfer, wasm, ...rest } = o;
  if (signal && signal.aborted) throw abortError('loading the model', signal);
  const rpc = new Rpc(await spawn(workerUrl));
  try {
    await rpc.ready;
    const p = portable(source, transfer);
    const opts = { ...rest, signal, wasm: wasm instanceof URL ? wasm.href : wasm, totalBytes: rest.totalBytes ?? p.totalBytes };
    for (const k of Object.keys(opts)) if (opts[k] === undefined) delete opts[k];
    const m = marshal([opts]);
    return await rpc.start({ op: 'load', source: p.source, options: m.args[0] },
      { transfer: p.transfer, callbacks: m.callbacks, signal }).promise;
  } catch (e) {
    rpc.terminate();
    if (signal && signal.aborted && !(e instanceof DozeError && e.code === 'ABORTED')) {
      throw abortError('loading the model', signal);
    }
    throw e;
  }
}

export default loadModel;
