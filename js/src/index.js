// doze-lm: load a GGUF model into doze.wasm and run it.
//
//   import { loadModel } from 'doze-lm';
//   const model = await loadModel('https://example.com/model.gguf', { onProgress });
//   for await (const t of model.generate('Once upon a time', { maxTokens: 50 })) write(t.text);
//   model.dispose();
//
// Everything numeric happens in C (src/) through the thin exports of
// wasm/exports.c; this file does streaming, bookkeeping and text decoding.

import { instantiateDoze, hasWasmSimd } from './wasm.js';
import { DozeError, abortError, toDozeError } from './errors.js';
import { openSource } from './sources.js';

export { DozeError, hasWasmSimd };

const STAGING_BYTES = 1 << 18; // bounded copy area in wasm memory for loading
const MAX_PIECE = 256; // DOZE_MAX_PIECE
const WEIGHT_TYPES = { 0: 'f32', 1: 'f16', 2: 'q4_0', 8: 'q8_0' };
const IN_MEMORY_YIELD_BYTES = 16 << 20;

// ---- yielding to the event loop ------------------------------------------------

let channel = null;
const waiting = [];
/** Resolves after pending macrotasks (timers, messages, abort events) ran. */
function yieldToEventLoop() {
  if (typeof setImmediate === 'function') return new Promise((r) => setImmediate(r));
  if (typeof MessageChannel === 'function') {
    if (!channel) {
      channel = new MessageChannel();
      channel.port1.onmessage = () => waiting.shift()?.();
    }
    return new Promise((r) => {
      waiting.push(r);
      channel.port2.postMessage(0);
    });
  }
  return new Promise((r) => setTimeout(r, 0));
}

// ---- runtime: one instance of doze.wasm ------------------------------------------

/**
 * One instantiated doze.wasm. Models loaded with the same `wasm` option share
 * it (and its memory).
 */
class Runtime {
  constructor(doze) {
    this.doze = doze;
    this.x = doze.exports;
    this.err = doze.malloc(this.x.doze_wasm_error_size());
    this.x.doze_wasm_error_clear(this.err);
  }
  get u8() {
    return new Uint8Array(this.x.memory.buffer);
  }
  /** The DozeError for the status in the shared doze_error. */
  error(context) {
    const code = this.x.doze_wasm_error_code(this.err);
    const name = this.doze.readString(this.x.doze_status_name(code));
    const msg = this.doze.readString(this.x.doze_wasm_error_message(this.err)) || name;
    this.x.doze_wasm_error_clear(this.err);
    return new DozeError(name, context ? `${context}: ${msg}` : msg);
  }
  check(status, context) {
    if (status !== 0) throw this.error(context);
  }
  /** Bytes malloc'd in wasm memory right now. */
  heapUsed() {
    return this.x.doze_wasm_heap_used();
  }
  /** Size of the wasm memory (it grows, never shrinks). */
  memoryBytes() {
    return this.x.memory.buffer.byteLength;
  }
  version() {
    return this.doze.readString(this.x.doze_wasm_version());
  }
}

const runtimes = new Map(); // key -> Promise<Runtime>
const moduleRuntimes = new WeakMap(); // WebAssembly.Module -> Promise<Runtime>

/**
 * The runtime for a `wasm` option (default: dist/doze.wasm next to this
 * package), instantiated once and shared.
 * @param {{wasm?: string|URL|ArrayBuffer|ArrayBufferView|WebAssembly.Module}} [options]
 */
export function getRuntime({ wasm } = {}) {
  const make = async () => {
    try {
      return new Runtime(await instantiateDoze({ wasm }));
    } catch (e) {
      throw toDozeError(e, 'NO_WASM_FILE');
    }
  };
  let p;
  if (wasm instanceof WebAssembly.Module) {
    p = moduleRuntimes.get(wasm);
    if (!p) moduleRuntimes.set(wasm, (p = make()));
  } else if (wasm == null || typeof wasm === 'string' || wasm instanceof URL) {
    const key = wasm == null ? '' : String(wasm);
    p = runtimes.get(key);
    if (!p) runtimes.set(key, (p = make()));
  } else {
    p = make(); // bytes: a fresh instance each time
  }
  p.catch(() => {
    // do not cache failures
    if (wasm instanceof WebAssembly.Module) moduleRuntimes.delete(wasm);
    else if (wasm == null || typeof wasm === 'string' || wasm instanceof URL) runtimes.delete(wasm == null ? '' : String(wasm));
  });
  return p;
}

/**
 * Bytes malloc'd inside a runtime's wasm memory (for leak checks).
 * @param {{wasm?: any}} [options]
 */
export async function heapUsed(options) {
  return (await getRuntime(options)).heapUsed();
}

// ---- loading ------------------------------------------------------------------------

/**
 * Loads a GGUF model, streaming its bytes into wasm memory.
 *
 * @param {string|URL|ArrayBuffer|ArrayBufferView|Blob|Response|ReadableStream<Uint8Array>} source
 *   a URL (fetched), a file path (Node), the bytes, a Blob/File, a Response or a byte stream
 * @param {object} [options]
 * @param {(p: {loaded: number, total: number, phase: 'download'|'done'}) => void} [options.onProgress]
 * @param {AbortSignal} [options.signal] aborts the load (rejects with an AbortError, code ABORTED)
 * @param {number} [options.contextLength] positions per session (default: the model's own)
 * @param {number} [options.maxMemory] refuse models needing more than this many bytes
 * @param {number} [options.totalBytes] size hint for streams without a known length
 * @param {string|URL|ArrayBuffer|ArrayBufferView|WebAssembly.Module} [options.wasm] where doze.wasm is
 * @returns {Promise<Model>}
 */
export async function loadModel(source, options = {}) {
  const { onProgress, signal, contextLength = 0, maxMemory = 0, totalBytes, wasm } = options;
  if (signal && signal.aborted) throw abortError('loading the model', signal);
  const rt = await getRuntime({ wasm });
  const x = rt.x;
  let src = null;
  let ld = 0;
  let stage = 0;
  try {
    src = await openSource(source, { signal, totalBytes });
    ld = x.doze_wasm_loader_new(contextLength | 0, Number(maxMemory) || 0, rt.err);
    if (!ld) throw rt.error('loadModel');
    stage = rt.doze.malloc(STAGING_BYTES);
    let loaded = 0;
    let sinceYield = 0;
    let total = src.total;
    const report = (phase) => {
      if (!onProgress) return;
      if (!total) total = x.doze_wasm_loader_total_bytes(ld);
      onProgress({ loaded, total: total || 0, phase });
    };
    report('download');
    for (;;) {
      if (signal && signal.aborted) throw abortError('loading the model', signal);
      let chunk;
      try {
        chunk = await src.next();
      } catch (e) {
        if (signal && signal.aborted) throw abortError('loading the model', signal);
        throw toDozeError(e, 'IO', 'reading the model failed');
      }
      if (signal && signal.aborted) throw abortError('loading the model', signal);
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
    total = loaded;
    report('done');
    return new Model(rt, m);
  } finally {
    if (stage) rt.doze.free(stage);
    if (ld) x.doze_loader_free(ld);
    if (src) await src.close().catch(() => {});
  }
}

// ---- model ---------------------------------------------------------------------------

const INFO_FIELDS = [
  'dim', 'hiddenDim', 'layers', 'heads', 'kvHeads', 'headDim', 'ropeDim', 'vocabSize',
  'contextLength', 'normEps', 'ropeTheta', 'weightTypeId', 'tiedOutput', 'params', 'bytes',
  'layerBytes', 'bosId', 'eosId', 'unkId',
];

function readInfo(rt, m) {
  const p = rt.doze.malloc(8 * 32);
  try {
    const n = Math.min(32, rt.x.doze_wasm_model_info(m, p, 32));
    const v = new Float64Array(rt.x.memory.buffer, p, n);
    const raw = {};
    INFO_FIELDS.forEach((k, i) => (raw[k] = v[i]));
    return Object.freeze({
      architecture: rt.doze.readString(rt.x.doze_wasm_model_architecture(m)),
      layers: raw.layers,
      heads: raw.heads,
      kvHeads: raw.kvHeads,
      dim: raw.dim,
      hiddenDim: raw.hiddenDim,
      headDim: raw.headDim,
      ropeDim: raw.ropeDim,
      vocabSize: raw.vocabSize,
      contextLength: raw.contextLength,
      normEps: raw.normEps,
      ropeTheta: raw.ropeTheta,
      weightType: WEIGHT_TYPES[raw.weightTypeId] ?? `type${raw.weightTypeId}`,
      tiedOutput: raw.tiedOutput === 1,
      params: raw.params,
      bytes: raw.bytes,
      layerBytes: raw.layerBytes,
      bosId: raw.bosId,
      eosId: raw.eosId,
      unkId: raw.unkId,
    });
  } finally {
    rt.doze.free(p);
  }
}

/** A loaded model. Free its wasm memory with dispose(). */
export class Model {
  #rt;
  #ptr;
  #sessions = new Set();
  #shared = null; // the session behind model.generate / complete / perplexity
  #sharedBusy = false;

  /** @internal */
  constructor(rt, ptr) {
    this.#rt = rt;
    this.#ptr = ptr;
    /** Shape, sizes and special ids of the model. */
    this.info = readInfo(rt, ptr);
  }

  /** @internal */
  _alive() {
    if (!this.#ptr) throw new DozeError('STATE', 'the model has been disposed');
    return this.#ptr;
  }
  /** @internal */
  get _rt() {
    return this.#rt;
  }
  /** True until dispose(). */
  get disposed() {
    return !this.#ptr;
  }

  /**
   * Token ids of `text` (SentencePiece-style: dummy leading space, BPE merges,
   * byte fallback), with BOS first unless `bos: false`.
   * @param {string} text
   * @param {{bos?: boolean}} [options]
   * @returns {Int32Array}
   */
  tokenize(text, { bos = true } = {}) {
    const m = this._alive();
    const rt = this.#rt;
    const bytes = new TextEncoder().encode(String(text));
    const tp = rt.doze.writeBytes(bytes);
    const nOut = rt.doze.malloc(4);
    let ids = 0;
    try {
      let cap = bytes.length + 2;
      ids = rt.doze.malloc(cap * 4);
      rt.check(rt.x.doze_tokenize(m, tp, bytes.length, bos ? 1 : 0, ids, cap, nOut, rt.err), 'tokenize');
      let n = rt.doze.view.getInt32(nOut, true);
      if (n > cap) {
        rt.doze.free(ids);
        cap = n;
        ids = rt.doze.malloc(cap * 4);
        rt.check(rt.x.doze_tokenize(m, tp, bytes.length, bos ? 1 : 0, ids, cap, nOut, rt.err), 'tokenize');
        n = rt.doze.view.getInt32(nOut, true);
      }
      return new Int32Array(rt.x.memory.buffer, ids, n).slice();
    } finally {
      rt.doze.free(ids);
      rt.doze.free(nOut);
      rt.doze.free(tp);
    }
  }

  /**
   * The text of a sequence of token ids (as the CLI prints them: a piece after
   * BOS loses its leading space, control tokens print nothing).
   * @param {ArrayLike<number>} ids
   * @returns {string}
   */
  detokenize(ids) {
    const m = this._alive();
    const piece = new PieceDecoder(this.#rt, m);
    try {
      let prev = -1;
      const parts = [];
      for (const id of Array.from(ids)) {
        parts.push(piece.text(prev, id));
        prev = id;
      }
      parts.push(piece.flush());
      return parts.join('');
    } finally {
      piece.free();
    }
  }

  /**
   * A new independent KV cache over this model. Dispose it when done (the
   * model's dispose() frees the ones still open).
   * @returns {Session}
   */
  createSession() {
    const m = this._alive();
    const s = this.#rt.x.doze_session_new(m, this.#rt.err);
    if (!s) throw this.#rt.error('createSession');
    const session = new Session(this, s, (x) => this.#sessions.delete(x));
    this.#sessions.add(session);
    return session;
  }

  // The model-level calls run from a fresh context each time, on a cached
  // session (or a temporary one while that is busy).
  #acquire() {
    this._alive();
    if (!this.#sharedBusy) {
      if (!this.#shared) this.#shared = this.createSession();
      this.#sharedBusy = true;
      this.#shared.reset();
      return { session: this.#shared, release: () => (this.#sharedBusy = false) };
    }
    const s = this.createSession();
    return { session: s, release: () => s.dispose() };
  }

  /**
   * Generates a continuation of `prompt` (encoded with BOS), streaming one
   * item per token. Stops at EOS or BOS, a `stop` string or id, `maxTokens`,
   * the end of the context, or on abort (the iterator then throws an
   * AbortError). Each call starts from an empty context.
   * @param {string} prompt
   * @param {GenerateOptions} [options]
   * @returns {AsyncGenerator<Token, GenerateResult, void>}
   */
  async *generate(prompt, options = {}) {
    const { session, release } = this.#acquire();
    try {
      return yield* session.generate(prompt, options);
    } finally {
      release();
    }
  }

  /**
   * The whole continuation of `prompt` as one string (see generate()).
   * @param {string} prompt
   * @param {GenerateOptions & {onToken?: (t: Token) => void}} [options]
   * @returns {Promise<string>}
   */
  async complete(prompt, options = {}) {
    return collect(this.generate(prompt, options), options.onToken);
  }

  /**
   * Perplexity of `text`: encoded with BOS (truncated to the context), the
   * mean negative log-likelihood of every token after the first, computed in
   * double precision from the logits (as `doze ppl` does per story).
   * @param {string} text
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<{perplexity: number, nll: number, tokens: number}>}
   */
  async perplexity(text, options = {}) {
    const { session, release } = this.#acquire();
    try {
      return await session.perplexity(text, options);
    } finally {
      release();
    }
  }

  /** Frees the model and its sessions; the object is unusable afterwards. */
  dispose() {
    if (!this.#ptr) return;
    for (const s of [...this.#sessions]) s.dispose();
    this.#shared = null;
    this.#rt.x.doze_model_free(this.#ptr);
    this.#ptr = 0;
  }
}

/** Piece bytes -> text, with a streaming UTF-8 decoder (characters may span tokens). */
class PieceDecoder {
  constructor(rt, model) {
    this.rt = rt;
    this.model = model;
    this.buf = rt.doze.malloc(MAX_PIECE + 8);
    this.len = this.buf + MAX_PIECE;
    this.decoder = new TextDecoder('utf-8');
  }
  bytes(prev, id) {
    const { rt } = this;
    rt.check(rt.x.doze_token_to_piece(this.model, prev, id, this.buf, MAX_PIECE, this.len, rt.err), 'detokenize');
    const n = rt.doze.view.getUint32(this.len, true);
    return rt.doze.readBytes(this.buf, n);
  }
  text(prev, id) {
    return this.decoder.decode(this.bytes(prev, id), { stream: true });
  }
  flush() {
    return this.decoder.decode();
  }
  free() {
    if (this.buf) this.rt.doze.free(this.buf);
    this.buf = 0;
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

/** Longest suffix of s that is a proper prefix of one of the stop strings. */
function heldSuffix(s, stops) {
  let best = 0;
  for (const stop of stops) {
    for (let k = Math.min(stop.length - 1, s.length); k > best; k--) {
      if (s.endsWith(stop.slice(0, k))) {
        best = k;
        break;
      }
    }
  }
  return best;
}

function seedHalves(seed) {
  let s;
  if (seed == null) {
    const r = new Uint32Array(2);
    globalThis.crypto.getRandomValues(r);
    return [r[0], r[1]];
  }
  s = BigInt.asUintN(64, BigInt(typeof seed === 'number' ? Math.trunc(seed) : seed));
  return [Number(s & 0xffffffffn), Number(s >> 32n)];
}

/**
 * An independent KV cache over a model: a conversation. Each generate()
 * continues where the previous one stopped.
 */
export class Session {
  #model;
  #ptr;
  #onDispose;
  #pending = -1; // last sampled token, not yet run through the model
  #last = -1; // last token run (for detokenizing what follows)
  #busy = false;

  /** @internal */
  constructor(model, ptr, onDispose) {
    this.#model = model;
    this.#ptr = ptr;
    this.#onDispose = onDispose;
  }

  #alive() {
    this.#model._alive();
    if (!this.#ptr) throw new DozeError('STATE', 'the session has been disposed');
    return this.#ptr;
  }

  /** Positions used so far (tokens in the KV cache). */
  get position() {
    return this.#model._rt.x.doze_session_pos(this.#alive());
  }

  /** The model this session runs. */
  get model() {
    return this.#model;
  }

  /** Empties the context. */
  reset() {
    this.#model._rt.x.doze_session_reset(this.#alive());
    this.#pending = -1;
    this.#last = -1;
  }

  #step(token) {
    const rt = this.#model._rt;
    rt.check(rt.x.doze_session_step(this.#alive(), token, rt.err));
    this.#last = token;
  }

  #logits() {
    const rt = this.#model._rt;
    const p = rt.x.doze_session_logits(this.#alive());
    return new Float32Array(rt.x.memory.buffer, p, this.#model.info.vocabSize);
  }

  #lock() {
    this.#alive();
    if (this.#busy) throw new DozeError('STATE', 'this session is already generating; use another session');
    this.#busy = true;
  }

  /**
   * Adds `prompt` to this session's context (with BOS when the context is
   * empty) and generates from there. See Model#generate for the options.
   * @param {string} prompt
   * @param {GenerateOptions} [options]
   * @returns {AsyncGenerator<Token, GenerateResult, void>}
   */
  async *generate(prompt, options = {}) {
    const {
      maxTokens = Infinity,
      temperature = 1,
      topK = 0,
      topP = 1,
      seed,
      stop = [],
      signal,
      bos,
      ignoreEos = false,
    } = options;
    const model = this.#model;
    const rt = model._rt;
    const info = model.info;
    if (signal && signal.aborted) throw abortError('generation', signal);
    this.#lock();
    let sampler = 0;
    let piece = null;
    try {
      const stops = (Array.isArray(stop) ? stop : [stop]).filter((s) => s != null);
      const stopStrings = stops.filter((s) => typeof s === 'string' && s.length > 0);
      const stopIds = new Set(stops.filter((s) => typeof s === 'number'));
      const empty = this.position === 0 && this.#pending < 0;
      const promptIds = model.tokenize(prompt ?? '', { bos: bos ?? empty });
      const feed = this.#pending >= 0 ? [this.#pending, ...promptIds] : [...promptIds];
      if (feed.length === 0) {
        throw new DozeError('INVALID_ARGUMENT', 'generate: empty prompt and the model has no BOS token');
      }
      const [lo, hi] = seedHalves(seed);
      sampler = rt.x.doze_wasm_sampler_new(+temperature, topK | 0, +topP, lo >>> 0, hi >>> 0, info.vocabSize, rt.err);
      if (!sampler) throw rt.error('generate');
      piece = new PieceDecoder(rt, model._alive());

      // The prompt: one forward step per token, checking for abort now and then.
      for (let i = 0; i < feed.length; i++) {
        this.#step(feed[i]);
        this.#pending = -1;
        if (i % 16 === 15 && i + 1 < feed.length) {
          await yieldToEventLoop();
          this.#alive();
          if (signal && signal.aborted) throw abortError('generation', signal);
        }
      }

      let count = 0;
      let held = ''; // text held back while it may be the start of a stop string
      let emitted = '';
      let reason = 'length';
      const limit = Math.max(0, Number(maxTokens));
      while (count < limit) {
        const next = rt.x.doze_sampler_sample(sampler, this.#logits().byteOffset);
        this.#pending = next;
        const position = this.position; // where `next` would go
        if (stopIds.has(next) || (!ignoreEos && (next === info.eosId || next === info.bosId))) {
          reason = stopIds.has(next) ? 'stop' : 'eos';
          break;
        }
        count++;
        let text = piece.text(this.#last, next);
        const last = count >= limit || position >= info.contextLength;
        let stopped = false;
        if (stopStrings.length) {
          held += text;
          let at = -1;
          for (const s of stopStrings) {
            const i = held.indexOf(s);
            if (i >= 0 && (at < 0 || i < at)) at = i;
          }
          if (at >= 0) {
            text = held.slice(0, at);
            held = '';
            stopped = true;
          } else {
            const keep = last ? 0 : heldSuffix(held, stopStrings);
            text = held.slice(0, held.length - keep);
            held = held.slice(held.length - keep);
          }
        }
        if (last && !stopped) text += piece.flush();
        emitted += text;
        yield { id: next, text, position };
        if (stopped) {
          reason = 'stop';
          break;
        }
        if (position >= info.contextLength) {
          reason = 'context';
          break;
        }
        if (count >= limit) break;
        await yieldToEventLoop();
        this.#alive();
        if (signal && signal.aborted) throw abortError('generation', signal);
        this.#step(next);
        this.#pending = -1;
      }
      if (reason === 'eos' || (reason === 'stop' && held)) {
        const tail = (reason === 'eos' ? held : '') + piece.flush();
        if (tail) {
          emitted += tail;
          yield { id: -1, text: tail, position: -1 };
        }
      }
      return { reason, tokens: count, text: emitted };
    } finally {
      if (sampler) rt.x.doze_sampler_free(sampler);
      if (piece) piece.free();
      this.#busy = false;
    }
  }

  /**
   * The whole continuation as one string (see generate()).
   * @param {string} prompt
   * @param {GenerateOptions & {onToken?: (t: Token) => void}} [options]
   * @returns {Promise<string>}
   */
  async complete(prompt, options = {}) {
    return collect(this.generate(prompt, options), options.onToken);
  }

  /**
   * Perplexity of `text` from an empty context (this resets the session).
   * @param {string} text
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<{perplexity: number, nll: number, tokens: number}>}
   */
  async perplexity(text, { signal } = {}) {
    if (signal && signal.aborted) throw abortError('perplexity', signal);
    this.#lock();
    try {
      this.reset();
      const info = this.#model.info;
      let ids = this.#model.tokenize(text, { bos: true });
      if (ids.length > info.contextLength) ids = ids.subarray(0, info.contextLength);
      let sum = 0;
      const n = info.vocabSize;
      for (let i = 0; i + 1 < ids.length; i++) {
        this.#step(ids[i]);
        const l = this.#logits();
        // -log softmax(l)[target] in double, as src/cli/cmd_ppl.c does it
        let max = l[0];
        for (let j = 1; j < n; j++) if (l[j] > max) max = l[j];
        let s = 0;
        for (let j = 0; j < n; j++) s += Math.exp(Math.fround(l[j] - max));
        sum += Math.log(s) - Math.fround(l[ids[i + 1]] - max);
        if (i % 16 === 15) {
          await yieldToEventLoop();
          this.#alive();
          if (signal && signal.aborted) throw abortError('perplexity', signal);
        }
      }
      const tokens = Math.max(0, ids.length - 1);
      if (tokens === 0) throw new DozeError('INVALID_ARGUMENT', 'perplexity: the text gives no token to score');
      const nll = sum / tokens;
      return { perplexity: Math.exp(nll), nll, tokens };
    } finally {
      this.#busy = false;
    }
  }

  /** Frees the KV cache. */
  dispose() {
    if (!this.#ptr) return;
    this.#model._rt.x.doze_session_free(this.#ptr);
    this.#ptr = 0;
    this.#onDispose(this);
  }
}

/**
 * @typedef {object} GenerateOptions
 * @property {number} [maxTokens] tokens to generate at most (default: until the context is full)
 * @property {number} [temperature] 0 = greedy; default 1
 * @property {number} [topK] keep the k most probable (0 = off)
 * @property {number} [topP] nucleus sampling mass (1 = off)
 * @property {number|bigint} [seed] sampler seed (default: random); same seed = same tokens as the CLI
 * @property {string|number|Array<string|number>} [stop] stop strings (not included in the output) or token ids
 * @property {AbortSignal} [signal] aborts the generation
 * @property {boolean} [bos] prepend BOS (default: when the session is empty)
 * @property {boolean} [ignoreEos] do not stop at EOS / BOS (the CLI's --no-stop)
 */
/**
 * @typedef {object} Token
 * @property {number} id token id (-1 for a last item carrying only held-back text)
 * @property {string} text its text; the texts concatenate to the output
 * @property {number} position its position in the context
 */
/**
 * @typedef {object} GenerateResult
 * @property {'length'|'eos'|'stop'|'context'} reason why generation ended
 * @property {number} tokens tokens generated
 * @property {string} text the whole output
 */

export default loadModel;
