// loadModel: streams a GGUF file's bytes into doze.wasm, chunk by chunk
// through a bounded staging area, to a Model.

import { abortError, toDozeError } from './errors.js';
import { getRuntime, yieldToEventLoop } from './runtime.js';
import { openSource } from './sources.js';
import { cacheOption, openCachedSource } from './cache.js';
import { Model } from './model.js';
import { checkOptions, func, int, invalid, num, oneOf, signal } from './options.js';
import { MAX_THREADS, defaultThreads, startPool, threadsUnavailable, warnFallback } from './pool.js';

const STAGING_BYTES = 1 << 18; // bounded copy area in wasm memory for loading
const IN_MEMORY_YIELD_BYTES = 16 << 20;
const MAX_CONTEXT = 1 << 20; // the largest context the format allows

const wasmOption = (v, where) => {
  const ok = typeof v === 'string' || v instanceof URL || v instanceof ArrayBuffer || ArrayBuffer.isView(v)
    || (typeof WebAssembly === 'object' && v instanceof WebAssembly.Module);
  if (!ok) throw invalid(`${where} must be a URL, a path, the bytes of doze.wasm or a WebAssembly.Module`);
  return v;
};

export const LOAD_OPTIONS = {
  onProgress: func,
  signal,
  contextLength: int(1, MAX_CONTEXT),
  maxMemory: num(0),
  totalBytes: num(0),
  wasm: wasmOption,
  threads: int(1, MAX_THREADS),
  ffnBlock: int(16, 256),
  cache: cacheOption,
  simd: oneOf('auto', 'relaxed', 'strict'),
};
export const RUNTIME_OPTIONS = { wasm: wasmOption, simd: oneOf('auto', 'relaxed', 'strict') };

/** Checked options of loadModel (`extra`: more accepted names, e.g. the worker entry's). */
export function checkLoadOptions(options, extra = {}) {
  return checkOptions('loadModel', options, { ...LOAD_OPTIONS, ...extra });
}

/** Stores a completed download (cache option) and says in model.info.cache where the bytes came from. */
async function withCacheInfo(model, src) {
  let r;
  try {
    r = await src.commit();
  } catch (e) {
    model.dispose();
    throw e;
  }
  model.info = Object.freeze({ ...model.info, cache: Object.freeze({ fromCache: src.fromCache, ...r }) });
  return model;
}

/** Loads a GGUF model, streaming its bytes into wasm memory. */
export async function loadModel(source, options) {
  const o = checkLoadOptions(options);
  const { onProgress, signal: sig, contextLength = 0, maxMemory = 0, ffnBlock = 0, totalBytes, wasm, cache, simd } = o;
  if (source == null) throw invalid('loadModel: no source (a URL, a path, bytes, a Blob, a Response or a stream)');
  if (sig && sig.aborted) throw abortError('loading the model', sig);
  // Threads and relaxed SIMD combine: more than 1 thread loads doze-mt.wasm
  // or its relaxed twin doze-mt-relaxed.wasm (by `simd`, as for 1 thread:
  // doze.wasm or doze-relaxed.wasm); without SharedArrayBuffer, or with a
  // custom single-thread `wasm`, it falls back to 1 thread.
  let threads = o.threads ?? (await defaultThreads());
  if (threads > 1) {
    const why = threadsUnavailable();
    if (why) {
      warnFallback(why);
      threads = 1;
    }
  }
  const rt = await getRuntime({ wasm, simd, threaded: threads > 1 });
  if (threads > 1 && !rt.doze.threaded) {
    warnFallback('the wasm option gave a module without threads (build doze-mt.wasm)');
    threads = 1;
  }
  const x = rt.x;
  let src = null;
  let ld = 0;
  let stage = 0;
  try {
    src = cache
      ? await openCachedSource(source, cache, { signal: sig, totalBytes })
      : await openSource(source, { signal: sig, totalBytes });
    ld = x.doze_wasm_loader_new(contextLength, maxMemory, ffnBlock, rt.err);
    if (!ld) throw rt.error('loadModel');
    stage = rt.doze.malloc(STAGING_BYTES);
    let loaded = 0;
    let sinceYield = 0;
    let total = src.total;
    const report = (phase) => {
      if (!onProgress) return;
      if (!total) total = x.doze_wasm_loader_total_bytes(ld);
      onProgress(cache ? { loaded, total: total || 0, phase, fromCache: src.fromCache } : { loaded, total: total || 0, phase });
    };
    report('download');
    for (;;) {
      if (sig && sig.aborted) throw abortError('loading the model', sig);
      let chunk;
      try {
        chunk = await src.next();
      } catch (e) {
        if (sig && sig.aborted) throw abortError('loading the model', sig);
        throw toDozeError(e, 'IO', 'reading the model failed');
      }
      if (sig && sig.aborted) throw abortError('loading the model', sig);
      if (chunk === null) break;
      for (let off = 0; off < chunk.byteLength; off += STAGING_BYTES) {
        const part = chunk.subarray(off, Math.min(chunk.byteLength, off + STAGING_BYTES));
        rt.u8.set(part, stage); // fresh view: feeding may have grown memory
        rt.check(x.doze_loader_feed(ld, stage, part.byteLength, rt.err));
        loaded += part.byteLength;
      }
      report('download');
      if (src.inMemory && (sinceYield += chunk.byteLength) >= IN_MEMORY_YIELD_BYTES) {
        sinceYield = 0;
        await yieldToEventLoop();
      }
    }
    const m = x.doze_wasm_loader_finish(ld, rt.err);
    if (!m) throw rt.error();
    let pool = null;
    if (threads > 1) {
      try {
        pool = await startPool(rt, m, threads);
      } catch (e) {
        if (!e.leakModel) x.doze_model_free(m);
        throw e;
      }
    }
    let model = new Model(rt, m, pool);
    if (sig && sig.aborted) {
      model.dispose();
      throw abortError('loading the model', sig);
    }
    if (contextLength > model.info.contextLength) {
      // the loader caps the context at the model's own; asking for more is a mistake
      const own = model.info.contextLength;
      model.dispose();
      throw invalid(`loadModel: contextLength ${contextLength} is above the model's own context of ${own} positions`);
    }
    if (cache) model = await withCacheInfo(model, src);
    total = loaded;
    report('done');
    return model;
  } finally {
    if (stage) rt.doze.free(stage);
    if (ld) x.doze_loader_free(ld);
    if (src) await src.close().catch(() => {});
  }
}
