// The Web Worker / worker_threads side of doze-lm/worker: runs the main API
// (./index.js) and answers the messages js/src/worker.js sends.
//
// Protocol (main -> worker): { id, op, args } and { op: 'abort', target: id }.
// Worker -> main: { id, type: 'progress' | 'item' | 'result' | 'error', value | error }.

import { loadModel } from './index.js';
import { serializeError, DozeError } from './errors.js';

const isNode =
  typeof process !== 'undefined' && process.versions != null && process.versions.node != null;

let port;
if (isNode) {
  const { parentPort } = await import('node:worker_threads');
  port = { post: (m, t) => parentPort.postMessage(m, t), listen: (fn) => parentPort.on('message', fn) };
} else {
  port = { post: (m, t) => self.postMessage(m, t), listen: (fn) => self.addEventListener('message', (e) => fn(e.data)) };
}

let model = null;
const sessions = new Map(); // id -> Session
let nextSession = 1;
const controllers = new Map(); // request id -> AbortController
const gatesById = new Map(); // id -> Gates
const gatesIds = new WeakMap(); // Gates -> id
let nextGates = 1;

/** The postMessage form of a Gates object (registered under an id). */
function describe(g) {
  if (!g) return null;
  let id = gatesIds.get(g);
  if (!id) {
    id = nextGates++;
    gatesIds.set(g, id);
    gatesById.set(id, g);
  }
  return { id, kind: g.kind, protectLayers: g.protectLayers, protectTokens: g.protectTokens, layers: g.layers, heads: g.heads };
}

function gatesOf(id) {
  if (id == null) return null;
  const g = gatesById.get(id);
  if (!g || g.disposed) throw new DozeError('STATE', 'these gates have been disposed');
  return g;
}

/** Buffers worth moving rather than copying in a reply. */
function transferables(value) {
  if (ArrayBuffer.isView(value)) return [value.buffer];
  if (value && value.logits instanceof Float32Array) return [value.logits.buffer];
  return [];
}

function target(sessionId) {
  if (sessionId == null) {
    if (!model) throw new DozeError('STATE', 'no model loaded in this worker');
    return model;
  }
  const s = sessions.get(sessionId);
  if (!s) throw new DozeError('STATE', `no session ${sessionId} (disposed?)`);
  return s;
}

const ops = {
  async load({ source, options }, { id, signal }) {
    if (model) throw new DozeError('STATE', 'this worker already holds a model');
    const { progress, ...rest } = options;
    model = await loadModel(source, {
      ...rest,
      signal,
      onProgress: progress ? (p) => port.post({ id, type: 'progress', value: p }) : undefined,
    });
    return model.info;
  },
  tokenize({ text, options }) {
    return target(null).tokenize(text, options);
  },
  detokenize({ ids }) {
    return target(null).detokenize(ids);
  },
  async generate({ session, prompt, options }, { id, signal }) {
    const { promptSteps, ...rest } = options || {};
    const onPromptStep = promptSteps ? (v) => port.post({ id, type: 'prompt', value: v }) : undefined;
    const it = target(session).generate(prompt, { ...rest, signal, onPromptStep });
    let r;
    while (!(r = await it.next()).done) port.post({ id, type: 'item', value: r.value });
    return r.value;
  },
  perplexity({ session, text, options }, { signal }) {
    return target(session).perplexity(text, { ...options, signal });
  },
  step({ session, token, mask }) {
    return target(session).step(token, mask || {});
  },
  setBudget({ session, budget }) {
    target(session).budget = budget;
    return target(session).budget;
  },
  getBudget({ session }) {
    return target(session).budget;
  },
  autoBudget({ session, options }) {
    target(session).autoBudget(options);
  },
  async calibrateGates({ options }, { signal }) {
    return describe(await target(null).calibrateGates({ ...options, signal }));
  },
  async finetuneGates({ text, options }, { id, signal }) {
    const { init, stream, ...rest } = options || {};
    const onStep = stream ? (v) => port.post({ id, type: 'item', value: v }) : undefined;
    const g = await target(null).finetuneGates(text, { ...rest, init: gatesOf(init), onStep, signal });
    return describe(g);
  },
  loadGates({ bytes, options }) {
    return describe(target(null).loadGates(bytes, options));
  },
  saveGates({ gates }) {
    const m = target(null);
    return m.saveGates(gates == null ? undefined : gatesOf(gates));
  },
  setGates({ gates }) {
    target(null).gates = gatesOf(gates);
    return describe(target(null).gates);
  },
  getGates() {
    return describe(target(null).gates);
  },
  gatesDispose({ gates }) {
    const g = gatesById.get(gates);
    if (g) g.dispose();
    gatesById.delete(gates);
  },
  createSession() {
    const id = nextSession++;
    sessions.set(id, target(null).createSession());
    return id;
  },
  sessionReset({ session }) {
    target(session).reset();
  },
  sessionPosition({ session }) {
    return target(session).position;
  },
  sessionDispose({ session }) {
    const s = sessions.get(session);
    if (s) s.dispose();
    sessions.delete(session);
  },
  dispose() {
    sessions.clear();
    gatesById.clear();
    if (model) model.dispose();
    model = null;
  },
  async heapUsed() {
    const { heapUsed } = await import('./index.js');
    return heapUsed();
  },
};

port.listen(async (msg) => {
  if (!msg || typeof msg !== 'object') return;
  if (msg.op === 'abort') {
    const c = controllers.get(msg.target);
    if (c) c.abort(msg.reason);
    return;
  }
  const { id, op, args } = msg;
  const controller = new AbortController();
  controllers.set(id, controller);
  try {
    const fn = ops[op];
    if (!fn) throw new DozeError('INVALID_ARGUMENT', `unknown worker operation ${op}`);
    const value = await fn(args || {}, { id, signal: controller.signal });
    const transfer = transferables(value);
    port.post({ id, type: 'result', value }, transfer);
  } catch (e) {
    port.post({ id, type: 'error', error: serializeError(e) });
  } finally {
    controllers.delete(id);
  }
});

port.post({ type: 'ready' });
