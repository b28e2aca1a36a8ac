// The Web Worker / worker_threads side of doze-lm/worker: runs the main API
// (./index.js) and answers the messages js/src/worker.js sends, for every
// member of the table in api.js.
//
// Protocol (main -> worker):
//   { id, op: 'load', source, options }        loads the worker's one model
//   { id, op: 'call', ref, name, args }        a method of a registered object
//   { id, op: 'set', ref, name, value }        a setter
//   { op: 'abort', target: id }                aborts a request's signal
//   { op: 'shutdown' }                         frees the model (its thread pool's
//                                              workers end), then answers 'shutdown'
// Worker -> main: { id, type: 'result' | 'error' | 'item' | 'event', value |
// error, cb, states }; { type: 'warn', reason } (a fallback to one thread:
// the page warns once). Objects (Model, Session, Gates) travel as
// { $ref, cls, values } and are registered here under their id; `states`
// carries the current getter values of every registered object.
// In arguments: { $ref } is a registered object, { $cb: name } a callback
// (its calls come back as 'event' messages), { $signal: true } the request's
// AbortSignal.

import { loadModel, Model, Session, Gates } from './index.js';
import { serializeError, DozeError } from './errors.js';
import { API } from './api.js';
import { nodeModule } from './node.js';
import { sendFallbackWarnings } from './pool.js';

const isNode =
  typeof process !== 'undefined' && process.versions != null && process.versions.node != null;

// No top-level await: not every bundler's worker output format has it.
let port;
const portReady = isNode
  ? nodeModule('node:worker_threads').then(({ parentPort }) => ({
    post: (m, t) => parentPort.postMessage(m, t),
    listen: (fn) => parentPort.on('message', fn),
  }))
  : Promise.resolve({ post: (m, t) => self.postMessage(m, t), listen: (fn) => self.addEventListener('message', (e) => fn(e.data)) });

const CLASSES = [['Model', Model], ['Session', Session], ['Gates', Gates]];
const classOf = (o) => CLASSES.find(([, C]) => o instanceof C)?.[0];

const objects = new Map(); // id -> object
const ids = new WeakMap(); // object -> id
let nextId = 1;
let model = null;
const controllers = new Map(); // request id -> AbortController

/** A value for postMessage: registered objects as references. */
function encode(v) {
  const cls = v != null && typeof v === 'object' ? classOf(v) : undefined;
  if (!cls) return v;
  let id = ids.get(v);
  if (id) return { $ref: id };
  id = nextId++;
  ids.set(v, id);
  objects.set(id, v);
  const values = {};
  for (const [name, d] of Object.entries(API[cls])) if (d.kind === 'value') values[name] = encode(v[name]);
  return { $ref: id, cls, values };
}

/** Getter values of every registered object; disposed objects are reported once more, then dropped. */
function states() {
  const out = {};
  for (const [id, o] of objects) {
    const cls = classOf(o);
    const s = {};
    for (const [name, d] of Object.entries(API[cls])) {
      if (d.kind !== 'get' && d.kind !== 'getset') continue;
      try {
        s[name] = { value: encode(o[name]) };
      } catch (e) {
        s[name] = { error: serializeError(e) };
      }
    }
    out[id] = s;
    if (o.disposed && o !== model) objects.delete(id);
  }
  return out;
}

function lookup(ref) {
  const o = objects.get(ref);
  if (!o) throw new DozeError('STATE', 'this object has been disposed');
  return o;
}

/** Arguments from the main thread: references, callbacks and the signal restored (one level into option objects). */
function decode(v, id, signal) {
  if (v == null || typeof v !== 'object') return v;
  if (v.$ref) return lookup(v.$ref);
  if (v.$cb) return (x) => port.post({ id, type: 'event', cb: v.$cb, value: encode(x), states: states() });
  if (v.$signal) return signal;
  if (Object.getPrototypeOf(v) === Object.prototype) {
    const o = {};
    for (const [k, x] of Object.entries(v)) {
      o[k] = x != null && typeof x === 'object' && (x.$ref || x.$cb || x.$signal) ? decode(x, id, signal) : x;
    }
    return o;
  }
  return v;
}

/** Buffers worth moving rather than copying in a reply. */
function transferables(value) {
  if (ArrayBuffer.isView(value)) return [value.buffer];
  if (value && value.logits instanceof Float32Array) return [value.logits.buffer];
  return [];
}

const ops = {
  async load({ source, options }, id, signal) {
    if (model) throw new DozeError('STATE', 'this worker already holds a model');
    model = await loadModel(source, decode(options, id, signal));
    return model;
  },
  async call({ ref, name, args }, id, signal) {
    const target = lookup(ref);
    const d = API[classOf(target)][name];
    if (!d || (d.kind !== 'call' && d.kind !== 'stream')) throw new DozeError('INVALID_ARGUMENT', `no method ${name}`);
    const a = (args || []).map((x) => decode(x, id, signal));
    if (d.kind === 'stream') {
      const it = target[name](...a);
      let r;
      while (!(r = await it.next()).done) port.post({ id, type: 'item', value: r.value, states: states() });
      return r.value;
    }
    return target[name](...a);
  },
  set({ ref, name, value }, id, signal) {
    const target = lookup(ref);
    if (API[classOf(target)][name]?.kind !== 'getset') throw new DozeError('INVALID_ARGUMENT', `no setter ${name}`);
    target[name] = decode(value, id, signal);
  },
};

function listen() {
  port.listen(async (msg) => {
    if (!msg || typeof msg !== 'object') return;
    if (msg.op === 'abort') {
      const c = controllers.get(msg.target);
      if (c) c.abort(msg.reason);
      return;
    }
    if (msg.op === 'shutdown') {
      // terminating this worker alone would leave the model's pool workers
      // (nested workers) running in a browser, each holding the memory
      try {
        model?.dispose();
      } finally {
        port.post({ type: 'shutdown' });
      }
      return;
    }
    const { id, op } = msg;
    const controller = new AbortController();
    controllers.set(id, controller);
    try {
      const fn = ops[op];
      if (!fn) throw new DozeError('INVALID_ARGUMENT', `unknown worker operation ${op}`);
      const value = encode(await fn(msg, id, controller.signal));
      port.post({ id, type: 'result', value, states: states() }, transferables(value));
    } catch (e) {
      port.post({ id, type: 'error', error: serializeError(e), states: states() });
    } finally {
      controllers.delete(id);
    }
  });

  port.post({ type: 'ready' });
}

portReady.then((p) => {
  port = p;
  sendFallbackWarnings((reason) => port.post({ type: 'warn', reason }));
  listen();
});
