// The public surface of Model, Session and Gates as one table. The
// main-thread classes implement it (tests/js/package_surface.test.js checks
// that their public members are exactly these), and doze-lm/worker builds its
// proxies and its worker side from it, so both entries have the same API.
//
//   value   a getter whose value never changes (sent once with the object)
//   get     a getter whose value changes; in the worker's proxy it is cached
//           (see worker.js: exact after any awaited call, updated by every
//           streamed item)
//   getset  the same, settable; `check(value, self, GatesClass)` validates a
//           value on the caller's side (so a bad value throws synchronously
//           in both entries)
//   call    a method (in the worker's proxy it returns a Promise)
//   stream  a method returning an async generator (items streamed back)

import { checkBudget } from './budget.js';
import { invalid } from './options.js';

const value = { kind: 'value' };
const get = { kind: 'get' };
const call = { kind: 'call' };
const stream = { kind: 'stream' };
const getset = (check) => ({ kind: 'getset', check });

/** model.gates = g: null, or gates of this model. */
function checkGates(g, self, GatesClass) {
  if (g == null) return null;
  if (!(g instanceof GatesClass)) throw invalid('model.gates: expected a Gates object or null');
  if (g.model !== self) {
    throw invalid('model.gates: these gates belong to another model object (save them and loadGates the bytes)');
  }
  return g;
}

export const API = {
  Model: {
    info: value,
    disposed: get,
    budget: getset((b) => checkBudget(b)),
    autoBudgetOptions: get,
    gates: getset(checkGates),
    autoBudget: call,
    calibrateGates: call,
    loadGates: call,
    saveGates: call,
    finetuneGates: call,
    finetune: call,
    tokenize: call,
    detokenize: call,
    metadata: call,
    tokenText: call,
    createSession: call,
    generate: stream,
    chat: stream,
    // internal: chat()'s run over the kept KV cache (model.js), so that
    // doze-lm/worker's chat, rendered in the page, keeps it in the worker too
    _chatRun: stream,
    complete: call,
    perplexity: call,
    heapUsed: call,
    dispose: call,
  },
  Session: {
    model: value,
    disposed: get,
    position: get,
    budget: getset((b) => (b == null ? null : checkBudget(b))),
    autoBudget: call,
    reset: call,
    truncate: call,
    generate: stream,
    complete: call,
    step: call,
    perplexity: call,
    dispose: call,
  },
  Gates: {
    model: value,
    kind: value,
    protectLayers: value,
    protectTokens: value,
    layers: value,
    heads: value,
    disposed: get,
    save: call,
    dispose: call,
  },
};

/** Module exports of doze-lm that doze-lm/worker has too (the worker entry's loadModel takes two more options). */
export const MODULE_EXPORTS = ['loadModel', 'default', 'DozeError', 'hasWasmSimd', 'hasRelaxedSimd', 'Model', 'Session', 'Gates',
  'listCachedModels', 'deleteCachedModel'];
/** Module exports only the main entry has: they concern the calling thread's own wasm instance (in the worker entry: model.heapUsed()). */
export const MAIN_ONLY_EXPORTS = ['getRuntime', 'heapUsed'];
