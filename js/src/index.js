// doze-lm: load a GGUF model into doze.wasm and run it.
//
//   import { loadModel } from 'doze-lm';
//   const model = await loadModel('https://example.com/model.gguf', { onProgress });
//   for await (const t of model.generate('Once upon a time', { maxTokens: 50 })) write(t.text);
//   model.dispose();
//
// Everything numeric happens in C (src/) through the thin exports of
// wasm/exports.c; the modules here do streaming, bookkeeping and text:
//   runtime.js   one doze.wasm instance (shared), heapUsed, event-loop yield
//   load.js      loadModel: the byte stream into the C loader
//   cache.js     the browser model cache (loadModel's cache option)
//   model.js     Model: info, tokenizer, sessions, budget and gates
//   session.js   Session: a KV cache, single steps, perplexity
//   generate.js  the generation loop (prompt, sampling, stops, context)
//   gates.js     Gates, calibration and fine-tuning
//   budget.js    budget values and the autoBudget controller
//   text.js      piece decoding, stop strings
//   options.js   option checking
// The types are in ../index.d.ts (the one source of them).

import { hasRelaxedSimd, hasWasmSimd } from './wasm.js';
import { DozeError } from './errors.js';
import { getRuntime as runtimeFor, heapUsed as heapUsedOf } from './runtime.js';
import { RUNTIME_OPTIONS, loadModel } from './load.js';
import { checkOptions } from './options.js';

export { DozeError, hasRelaxedSimd, hasWasmSimd, loadModel };
export { listCachedModels, deleteCachedModel } from './cache.js';
export { Model } from './model.js';
export { Session } from './session.js';
export { Gates } from './gates.js';

/** The shared doze.wasm instance for a `wasm` option (created on first use). */
export function getRuntime(options) {
  try {
    return runtimeFor(checkOptions('getRuntime', options, RUNTIME_OPTIONS));
  } catch (e) {
    return Promise.reject(e);
  }
}

/** Bytes malloc'd in the (shared) wasm memory of a runtime: for leak checks. */
export async function heapUsed(options) {
  return heapUsedOf(checkOptions('heapUsed', options, RUNTIME_OPTIONS));
}

export default loadModel;
