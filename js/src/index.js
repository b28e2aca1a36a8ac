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
  'layerBytes', 'bosId', 'eosId', 'unkId', 'ffnBlock', 'ffnOrder',
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
      // issue 8: channels per FFN block (16 for small f32/f16 FFNs, else 32) and blocks per layer
      ffnBlock: raw.ffnBlock || 32,
      ffnBlocks: Math.ceil(raw.hiddenDim / (raw.ffnBlock || 32)),
      // issue 8: 0, or the doze.ffn_order key of a model `doze order-ffn` rewrote
      ffnOrder: raw.ffnOrder || 0,
    });
  } finally {
    rt.doze.free(p);
  }
}

// ---- skipping: budget, gates, auto budget ------------------------------------------

const CALIB_MAX_TOKENS = 512; // as `doze gates`: calibration sequences are capped here
const CALIB_MAX_TEXT_BYTES = 32768; // and calibration text is cut here (at a UTF-8 boundary)
const CALIB_SEED = 1234; // the seed of the self-generated calibration text (as the CLI)

const now = () => performance.now();
const DENSE_BUDGET = 0.9995; // session.c: a budget at or above this runs dense
const PREFILL_PASS = 64; // prompt tokens per doze_session_prefill call (abort checked between)

function clamp(x, lo, hi) {
  return x < lo ? lo : x > hi ? hi : x;
}

function checkBudget(b, what = 'budget') {
  if (typeof b !== 'number' || !(b > 0 && b <= 1)) {
    throw new DozeError('INVALID_ARGUMENT', `${what} must be a number in (0, 1], got ${String(b)}`);
  }
  return b;
}

/**
 * The controller behind autoBudget(): after each generated token, the
 * token's measured time t (its forward step + sampling) moves the budget b:
 *   e <- exponential average (weight `smoothing`) of t / target - 1, each
 *        sample clamped to [-0.8, 1.5] (one stall moves b only so far)
 *   b <- clamp(b * exp(-gain * e), min, max)
 * an integral controller, so b settles where the mean token time equals the
 * target (or at min / max when the target is out of reach).
 */
class AutoBudget {
  constructor(options) {
    if (options == null || typeof options !== 'object') {
      throw new DozeError('INVALID_ARGUMENT', 'autoBudget: pass { targetMsPerToken, min?, max? } or null');
    }
    const { targetMsPerToken, min = 0.2, max = 1, gain = 0.3, smoothing = 0.3 } = options;
    if (typeof targetMsPerToken !== 'number' || !(targetMsPerToken > 0) || !Number.isFinite(targetMsPerToken)) {
      throw new DozeError('INVALID_ARGUMENT', `autoBudget: targetMsPerToken must be a positive number, got ${String(targetMsPerToken)}`);
    }
    checkBudget(min, 'autoBudget: min');
    checkBudget(max, 'autoBudget: max');
    if (min > max) throw new DozeError('INVALID_ARGUMENT', `autoBudget: min ${min} is above max ${max}`);
    if (typeof gain !== 'number' || !(gain > 0 && gain <= 2)) throw new DozeError('INVALID_ARGUMENT', 'autoBudget: gain must be in (0, 2]');
    if (typeof smoothing !== 'number' || !(smoothing > 0 && smoothing <= 1)) throw new DozeError('INVALID_ARGUMENT', 'autoBudget: smoothing must be in (0, 1]');
    const first = options.start ?? max;
    checkBudget(first, 'autoBudget: start');
    this.options = Object.freeze({ targetMsPerToken, min, max, gain, smoothing });
    this.budget = clamp(first, min, max);
    this.error = 0;
    this.samples = 0;
  }
  /** One token took `ms`: returns the budget for the next one. */
  observe(ms) {
    if (!(ms > 0) || !Number.isFinite(ms)) return this.budget;
    const { targetMsPerToken, min, max, gain, smoothing } = this.options;
    const e = clamp(ms / targetMsPerToken - 1, -0.8, 1.5);
    this.error = this.samples++ === 0 ? e : this.error + smoothing * (e - this.error);
    this.budget = clamp(this.budget * Math.exp(-gain * this.error), min, max);
    return this.budget;
  }
}

/** What sets a budget: a fixed value, or an AutoBudget controller while one is on. */
class BudgetState {
  constructor(budget = 1) {
    this.fixed = budget;
    this.auto = null;
  }
  get current() {
    return this.auto ? this.auto.budget : this.fixed;
  }
  set(b) {
    this.fixed = checkBudget(b);
    this.auto = null;
  }
  setAuto(options) {
    this.auto = options == null ? null : new AutoBudget(options);
  }
  get autoOptions() {
    return this.auto ? this.auto.options : null;
  }
}

/** FFN blocks per layer: the FFN intermediate channels in blocks of info.ffnBlock (issue 8). */
const ffnBlocks = (info) => info.ffnBlocks;

/** A step's mask: which layers ran, which heads of each (row-major (layers, heads)) and which FFN blocks of each (row-major (layers, ffnBlocks)). */
function readMask(rt, s, info) {
  const L = info.layers;
  const H = info.heads;
  const NB = ffnBlocks(info);
  const lp = rt.x.doze_session_layer_mask(s);
  const hp = rt.x.doze_session_head_mask(s);
  const fp = rt.x.doze_session_ffn_mask(s);
  const u8 = rt.u8;
  return { layers: u8.slice(lp, lp + L), heads: u8.slice(hp, hp + L * H), ffn: u8.slice(fp, fp + L * NB) };
}

/** 0/1 bytes from an array-like (or, for heads, an array of per-layer arrays). */
function maskBytes(v, n, what) {
  let flat = v;
  if (Array.isArray(v) && v.length && typeof v[0] === 'object' && v[0] !== null) flat = v.flatMap((r) => Array.from(r));
  let a;
  try {
    a = Array.from(flat);
  } catch {
    a = null;
  }
  if (!a || a.length !== n) {
    throw new DozeError('INVALID_ARGUMENT', `step: ${what} must have ${n} entries, got ${a ? a.length : typeof v}`);
  }
  return Uint8Array.from(a, (x) => (x ? 1 : 0));
}

function truncateUtf8(bytes, max) {
  if (bytes.length <= max) return bytes;
  let len = max;
  while (len > 0 && (bytes[len] & 0xc0) === 0x80) len--;
  return bytes.subarray(0, len);
}

/**
 * Gates: the per-layer routers that decide, per token, which layers and
 * heads run under a budget. They belong to the model that made or loaded
 * them and are freed with it (or by dispose()).
 */
export class Gates {
  #model;
  #ptr;
  #onDispose;

  /** @internal */
  constructor(model, ptr, onDispose) {
    this.#model = model;
    this.#ptr = ptr;
    this.#onDispose = onDispose;
    const rt = model._rt;
    const p = rt.doze.malloc(8 * 8);
    try {
      const kind = rt.doze.readString(rt.x.doze_wasm_gates_info(ptr, p));
      const v = new Float64Array(rt.x.memory.buffer, p, 5);
      /** 'training-free' (calibrated), 'trained', or 'random' (the floor real gates must beat). */
      this.kind = kind;
      /** The first N layers are never skipped whole. */
      this.protectLayers = v[0];
      /** The first N positions run dense. */
      this.protectTokens = v[1];
      this.layers = v[3];
      this.heads = v[4];
    } finally {
      rt.doze.free(p);
    }
  }
  /** The model these gates belong to. */
  get model() {
    return this.#model;
  }
  get disposed() {
    return !this.#ptr;
  }
  /** @internal */
  _ptr() {
    this.#model._alive();
    if (!this.#ptr) throw new DozeError('STATE', 'these gates have been disposed');
    return this.#ptr;
  }
  /**
   * The gate file (a small GGUF; `doze generate --gates` and loadGates read it).
   * @returns {Uint8Array}
   */
  save() {
    const g = this._ptr();
    const rt = this.#model._rt;
    const out = rt.doze.malloc(8);
    try {
      rt.check(rt.x.doze_wasm_gates_save(g, out, rt.err), 'saveGates');
      const p = rt.doze.view.getUint32(out, true);
      const n = rt.doze.view.getUint32(out + 4, true);
      const bytes = rt.doze.readBytes(p, n);
      rt.doze.free(p);
      return bytes;
    } finally {
      rt.doze.free(out);
    }
  }
  /** Frees the gates (the model drops them if they were active: dense again). */
  dispose() {
    if (!this.#ptr) return;
    this.#onDispose(this);
    this.#model._rt.x.doze_gates_free(this.#ptr);
    this.#ptr = 0;
  }
}


/** A loaded model. Free its wasm memory with dispose(). */
export class Model {
  #rt;
  #ptr;
  #sessions = new Set();
  #shared = null; // the session behind model.generate / complete / perplexity
  #sharedBusy = false;
  #budget = new BudgetState();
  #gates = null; // the active Gates (null: none)
  #gatesChosen = false; // gates set explicitly (a Gates object or null): no auto calibration
  #allGates = new Set();
  #calibrating = null; // the in-flight automatic calibration
  #finetunes = new Set(); // in-flight finetuneGates runs ({ free })

  /** @internal test hook: called after each step with its compute ratio, inside the timed region (a slower machine). */
  _testAfterStep = null;

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
  /** @internal */
  get _budgetState() {
    return this.#budget;
  }
  /** True until dispose(). */
  get disposed() {
    return !this.#ptr;
  }

  // ---- budget and gates ----

  /**
   * The compute budget b in (0, 1] of model.generate / complete / perplexity
   * and of the sessions that follow the model: the fraction of the dense
   * per-token layer compute the gates may spend (1 = dense). May be set at
   * any time, also while generating (it applies from the next token); setting
   * it turns autoBudget off. While autoBudget is on, this reads the
   * controller's current value.
   * @type {number}
   */
  get budget() {
    return this.#budget.current;
  }
  set budget(b) {
    this._alive();
    this.#budget.set(b);
  }

  /**
   * Adjusts the budget between tokens so that a token takes about
   * `targetMsPerToken` (forward step + sampling, measured with
   * performance.now()), within [min, max]. `null` turns it off (back to the
   * fixed budget).
   * @param {{targetMsPerToken: number, min?: number, max?: number, start?: number, gain?: number, smoothing?: number} | null} options
   */
  autoBudget(options) {
    this._alive();
    this.#budget.setAuto(options);
  }
  /** The autoBudget settings in force, or null. */
  get autoBudgetOptions() {
    return this.#budget.autoOptions;
  }

  /**
   * The gates in use (null: none). Set a Gates object of this model, or null
   * for dense steps whatever the budget. Until gates are set, a budget < 1
   * calibrates training-free gates on first use (see calibrateGates).
   * @type {Gates | null}
   */
  get gates() {
    return this.#gates;
  }
  set gates(g) {
    this._alive();
    if (g != null) {
      if (!(g instanceof Gates)) throw new DozeError('INVALID_ARGUMENT', 'model.gates: expected a Gates object or null');
      if (g.model !== this) {
        throw new DozeError('INVALID_ARGUMENT', 'model.gates: these gates belong to another model object (save them and loadGates the bytes)');
      }
      g._ptr();
    }
    this.#gates = g ?? null;
    this.#gatesChosen = true;
  }

  /** @internal true when a step at `budget` needs gates that have not been made yet. */
  _needsGates(budget) {
    return budget < 1 && !this.#gates && !this.#gatesChosen;
  }
  /** @internal calibrates once (self-generated text) for the steps that need gates. */
  _autoCalibrate() {
    if (!this.#calibrating) {
      this.#calibrating = this.calibrateGates({ activate: false })
        .then((g) => {
          if (!this.#gatesChosen && !this.#gates) this.gates = g;
          return g;
        })
        .finally(() => (this.#calibrating = null));
    }
    return this.#calibrating;
  }

  #adopt(ptr) {
    const g = new Gates(this, ptr, (x) => {
      this.#allGates.delete(x);
      if (this.#gates === x) this.#gates = null;
    });
    this.#allGates.add(g);
    return g;
  }

  /**
   * Makes training-free gates: runs the dense model over a token sequence
   * (BOS first) and fits the routers to it, then the budget -> threshold
   * table. The sequence: `tokens` as given, else `text` (encoded with BOS, cut
   * to 512 tokens and the context), else 512 tokens (capped by the context)
   * the model writes itself from BOS, sampling at temperature 1 with seed
   * 1234 — exactly what `doze gates MODEL [--calib FILE]` does, so the gates
   * (and their file) are the same. The new gates become the model's
   * (`activate: false` to only return them).
   * @param {CalibrateOptions} [options]
   * @returns {Promise<Gates>}
   */
  async calibrateGates(options = {}) {
    const { text, tokens, protectLayers, protectTokens, ridge, random, signal, activate = true } = options ?? {};
    this._alive();
    const rt = this.#rt;
    const intOpt = (v, name) => {
      if (v != null && !(Number.isInteger(v) && v >= 0)) {
        throw new DozeError('INVALID_ARGUMENT', `calibrateGates: ${name} must be an integer >= 0`);
      }
      return v ?? -1;
    };
    const pl = intOpt(protectLayers, 'protectLayers');
    const pt = intOpt(protectTokens, 'protectTokens');
    if (ridge != null && !(typeof ridge === 'number' && ridge >= 0)) {
      throw new DozeError('INVALID_ARGUMENT', 'calibrateGates: ridge must be a number >= 0');
    }
    if (signal && signal.aborted) throw abortError('calibration', signal);
    let ids;
    if (tokens != null) {
      ids = Int32Array.from(tokens);
    } else if (text != null) {
      const bytes = truncateUtf8(new TextEncoder().encode(String(text)), CALIB_MAX_TEXT_BYTES);
      ids = this.tokenize(new TextDecoder().decode(bytes), { bos: true });
      ids = ids.subarray(0, Math.min(ids.length, this.info.contextLength, CALIB_MAX_TOKENS));
    } else {
      ids = await this.#selfGenerated(signal);
    }
    const [lo, hi] = random ? seedHalves(random) : [0, 0];
    const p = rt.doze.malloc(Math.max(1, ids.length) * 4);
    try {
      new Int32Array(rt.x.memory.buffer, p, ids.length).set(ids);
      const g = rt.x.doze_wasm_gates_calibrate(this._alive(), p, ids.length, pl, pt, ridge ?? -1, lo >>> 0, hi >>> 0, rt.err);
      if (!g) throw rt.error('calibrateGates');
      const gates = this.#adopt(g);
      if (activate) this.gates = gates;
      return gates;
    } finally {
      rt.doze.free(p);
    }
  }

  // The CLI's calibration text: dense, seeded sampling at temperature 1 from BOS.
  async #selfGenerated(signal) {
    const rt = this.#rt;
    const info = this.info;
    const cap = Math.min(info.contextLength, CALIB_MAX_TOKENS);
    const ids = new Int32Array(Math.max(1, cap));
    ids[0] = info.bosId >= 0 ? info.bosId : 0;
    let s = 0;
    let smp = 0;
    try {
      s = rt.x.doze_session_new(this._alive(), rt.err);
      if (!s) throw rt.error('calibrateGates');
      smp = rt.x.doze_wasm_sampler_new(1, 0, 1, CALIB_SEED, 0, info.vocabSize, rt.err);
      if (!smp) throw rt.error('calibrateGates');
      for (let i = 0; i + 1 < cap; i++) {
        rt.check(rt.x.doze_session_step(s, ids[i], rt.err), 'calibrateGates');
        ids[i + 1] = rt.x.doze_sampler_sample(smp, rt.x.doze_session_logits(s));
        if (i % 32 === 31) {
          await yieldToEventLoop();
          this._alive();
          if (signal && signal.aborted) throw abortError('calibration', signal);
        }
      }
      return ids.subarray(0, cap);
    } finally {
      if (smp) rt.x.doze_sampler_free(smp);
      if (s) rt.x.doze_session_free(s);
    }
  }

  /**
   * Gates from a gate file (`doze gates ... -o F`, or saveGates()). Files made
   * for another model are refused (BAD_SHAPE for another shape, BAD_FORMAT for
   * other weights, UNSUPPORTED_TYPE for a GGUF that is no gate file). The
   * gates become the model's unless `activate: false`.
   * @param {ArrayBuffer|ArrayBufferView} bytes
   * @param {{activate?: boolean}} [options]
   * @returns {Gates}
   */
  loadGates(bytes, { activate = true } = {}) {
    const m = this._alive();
    if (!(bytes instanceof ArrayBuffer || ArrayBuffer.isView(bytes))) {
      throw new DozeError('INVALID_ARGUMENT', 'loadGates: expected the gate file as a Uint8Array or ArrayBuffer');
    }
    const rt = this.#rt;
    const p = rt.doze.writeBytes(bytes);
    try {
      const g = rt.x.doze_wasm_gates_load(m, p, bytes.byteLength, rt.err);
      if (!g) throw rt.error('loadGates');
      const gates = this.#adopt(g);
      if (activate) this.gates = gates;
      return gates;
    } finally {
      rt.doze.free(p);
    }
  }

  /**
   * The gate file (GGUF bytes) of the active gates, or of `gates`.
   * @param {Gates} [gates]
   * @returns {Uint8Array}
   */
  saveGates(gates = this.#gates) {
    this._alive();
    if (!gates) throw new DozeError('STATE', 'saveGates: the model has no gates (calibrateGates() or loadGates() first)');
    return gates.save();
  }

  /**
   * Trains gates on `text` by backprop (the base weights stay frozen; only
   * the routers learn): the text is split into stories at lines
   * "<|endoftext|>", each encoded with BOS; every step draws `batch` stories
   * (seeded) and trains on the first `contextLength` tokens of each, the loss
   * being the KL divergence from the dense model plus a term pulling the
   * expected compute to `budget`. After the last step the budget table is
   * retuned on the text, so every budget keeps its meaning. The same code
   * and seed as `doze finetune MODEL TEXTFILE --budget B --steps N --ctx T
   * --batch B --seed S -o F`: saveGates() then gives F's bytes. Between
   * steps the event loop runs (the page stays responsive, `signal` is
   * seen); an abort frees the run and rejects with an AbortError (code
   * ABORTED). The new gates become the model's unless `activate: false`.
   * @param {string} text
   * @param {FinetuneOptions} [options]
   * @returns {Promise<Gates>}
   */
  async finetuneGates(text, options = {}) {
    const {
      budget, steps, contextLength, batch, lr, weightDecay, computeWeight, tauStart, tauEnd, seed,
      init = null, onStep, signal, activate = true,
    } = options ?? {};
    this._alive();
    const rt = this.#rt;
    const bad = (msg) => new DozeError('INVALID_ARGUMENT', `finetuneGates: ${msg}`);
    if (typeof text !== 'string') throw bad('the text must be a string');
    const d = trainDefaults(rt);
    const int = (v, name, lo, def) => {
      if (v == null) return def;
      if (!Number.isInteger(v) || v < lo) throw bad(`${name} must be an integer >= ${lo}, got ${String(v)}`);
      return v;
    };
    const num = (v, name, def, positive = true) => {
      if (v == null) return def;
      if (typeof v !== 'number' || !Number.isFinite(v) || (positive ? !(v > 0) : !(v >= 0))) {
        throw bad(`${name} must be a number ${positive ? '> 0' : '>= 0'}, got ${String(v)}`);
      }
      return v;
    };
    const p = {
      budget: budget == null ? d.budget : checkBudget(budget, 'finetuneGates: budget'),
      steps: int(steps, 'steps', 1, d.steps),
      contextLength: int(contextLength, 'contextLength', 2, d.contextLength),
      batch: int(batch, 'batch', 1, d.batch),
      lr: num(lr, 'lr', d.lr),
      weightDecay: num(weightDecay, 'weightDecay', d.weightDecay, false),
      computeWeight: num(computeWeight, 'computeWeight', d.computeWeight, false),
      tauStart: num(tauStart, 'tauStart', d.tauStart),
      tauEnd: num(tauEnd, 'tauEnd', d.tauEnd),
    };
    if (init != null) {
      if (!(init instanceof Gates)) throw bad('init must be a Gates object or null');
      if (init.model !== this) throw bad('init belongs to another model object (save it and loadGates the bytes)');
      init._ptr();
    }
    if (onStep != null && typeof onStep !== 'function') throw bad('onStep must be a function');
    if (signal && signal.aborted) throw abortError('fine-tuning', signal);
    const [lo, hi] = seedHalves(seed ?? d.seed);
    let f = 0;
    const run = { free: () => {} };
    try {
      const bytes = new TextEncoder().encode(text);
      const tp = rt.doze.writeBytes(bytes);
      try {
        f = rt.x.doze_wasm_finetune_new(
          this._alive(), init ? init._ptr() : 0, p.budget, p.contextLength, p.batch, p.lr, p.weightDecay,
          p.computeWeight, p.tauStart, p.tauEnd, p.steps, lo >>> 0, hi >>> 0, tp, bytes.length, rt.err);
      } finally {
        rt.doze.free(tp);
      }
      if (!f) throw rt.error('finetuneGates');
      // dispose() while a step is awaited frees the run first
      run.free = () => {
        if (f) rt.x.doze_finetune_free(f);
        f = 0;
      };
      this.#finetunes.add(run);
      const tokensPerStep = p.batch * p.contextLength;
      const out = rt.doze.malloc(8 * 8);
      try {
        for (let i = 0; i < p.steps; i++) {
          const t0 = now();
          rt.check(rt.x.doze_wasm_finetune_step(f, out, rt.err), 'finetuneGates');
          const ms = now() - t0;
          const v = new Float64Array(rt.x.memory.buffer, out, 6);
          const stats = {
            step: v[0], loss: v[1], kl: v[2], compute: v[4], expectedCompute: v[3], tau: v[5],
            tokensPerSecond: (tokensPerStep * 1000) / Math.max(ms, 1e-6), ms,
          };
          if (onStep) onStep(stats);
          await yieldToEventLoop();
          if (!f) this._alive(); // disposed meanwhile
          if (signal && signal.aborted) throw abortError('fine-tuning', signal);
        }
      } finally {
        rt.doze.free(out);
      }
      rt.check(rt.x.doze_finetune_finish(f, rt.err), 'finetuneGates');
      const g = rt.x.doze_finetune_take_gates(f);
      if (!g) throw new DozeError('STATE', 'finetuneGates: the run has no gates');
      const gates = this.#adopt(g);
      if (activate) this.gates = gates;
      return gates;
    } finally {
      this.#finetunes.delete(run);
      run.free();
    }
  }

  // ---- text ----

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
   * A string-valued key of the model's GGUF metadata ('general.name',
   * 'tokenizer.chat_template', ...), or null when absent or not a string.
   * @param {string} key
   * @returns {string|null}
   */
  metadata(key) {
    const m = this._alive();
    const rt = this.#rt;
    const kp = rt.doze.writeString(key);
    try {
      const p = rt.x.doze_model_meta_string(m, kp) >>> 0;
      return p ? rt.doze.readString(p) : null;
    } finally {
      rt.doze.free(kp);
    }
  }

  /**
   * A token's text as the vocabulary stores it, control tokens included
   * ('<s>', '<|im_end|>'); null for an id out of range.
   * @param {number} id
   * @returns {string|null}
   */
  tokenText(id) {
    const m = this._alive();
    const p = this.#rt.x.doze_wasm_token_text(m, id | 0) >>> 0;
    return p ? this.#rt.doze.readString(p) : null;
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
   * Streams the assistant's reply to `messages` rendered with the model's
   * chat template (see chat.js, loaded on first use: it needs @huggingface/jinja).
   * @param {Array<{role: string, content: string}>} messages
   * @param {object} [options]
   * @returns {AsyncGenerator<Token, GenerateResult, void>}
   */
  async *chat(messages, options) {
    const { chat } = await import('./chat.js');
    return yield* chat(this, messages, options);
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
   * @returns {Promise<Perplexity>}
   */
  async perplexity(text, options = {}) {
    const { session, release } = this.#acquire();
    try {
      return await session.perplexity(text, options);
    } finally {
      release();
    }
  }

  /** Frees the model, its sessions and its gates; the object is unusable afterwards. */
  dispose() {
    if (!this.#ptr) return;
    for (const s of [...this.#sessions]) s.dispose();
    for (const r of [...this.#finetunes]) r.free();
    for (const g of [...this.#allGates]) g.dispose();
    this.#shared = null;
    this.#rt.x.doze_model_free(this.#ptr);
    this.#ptr = 0;
  }
}

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

/** doze_train_default_params(), read from the wasm once per runtime. */
const trainDefaultsCache = new WeakMap();
function trainDefaults(rt) {
  let d = trainDefaultsCache.get(rt);
  if (d) return d;
  const p = rt.doze.malloc(8 * 16);
  try {
    rt.x.doze_wasm_train_default_params(p);
    const v = new Float64Array(rt.x.memory.buffer, p, 10);
    d = Object.freeze({
      budget: v[0], contextLength: v[1], batch: v[2], lr: v[3], weightDecay: v[4], computeWeight: v[5],
      tauStart: v[6], tauEnd: v[7], steps: v[8], seed: v[9],
    });
  } finally {
    rt.doze.free(p);
  }
  trainDefaultsCache.set(rt, d);
  return d;
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
  #own = null; // a BudgetState of its own, or null: follow the model's
  #cGates = null; // the Gates object set on the C session
  #cBudget = 1; // the budget set on the C session
  #stepMs = 0; // time of the last step
  #stepBudget = 1; // budget of the last step

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

  #state() {
    return this.#own ?? this.#model._budgetState;
  }

  /**
   * This session's budget (see Model#budget). Until set, the session follows
   * the model's budget (and autoBudget); `null` makes it follow again.
   * @type {number}
   */
  get budget() {
    return this.#state().current;
  }
  set budget(b) {
    this.#alive();
    if (b == null) {
      this.#own = null;
      return;
    }
    checkBudget(b);
    this.#own = new BudgetState(b);
  }

  /**
   * autoBudget for this session alone (see Model#autoBudget); `null` turns
   * it off for this session (which then keeps a fixed budget of its own).
   */
  autoBudget(options) {
    this.#alive();
    const st = new BudgetState(this.#own ? this.#own.fixed : this.#model._budgetState.fixed);
    st.setAuto(options);
    this.#own = st;
  }

  /** Empties the context. */
  reset() {
    this.#model._rt.x.doze_session_reset(this.#alive());
    this.#pending = -1;
    this.#last = -1;
  }

  // The gates and budget of the next step, on the C session.
  #apply(budget) {
    const rt = this.#model._rt;
    const s = this.#alive();
    const g = this.#model.gates;
    if (g !== this.#cGates) {
      rt.check(rt.x.doze_session_set_gates(s, g ? g._ptr() : 0, rt.err), 'gates');
      this.#cGates = g;
    }
    if (budget !== this.#cBudget) {
      rt.check(rt.x.doze_session_set_budget(s, budget, rt.err), 'budget');
      this.#cBudget = budget;
    }
  }

  // Before a normal step: calibrates first when the budget needs gates the
  // model does not have yet; returns the budget the step will use.
  async #prepare(budget = this.#state().current) {
    if (this.#model._needsGates(budget)) {
      await this.#model._autoCalibrate();
      this.#alive();
    }
    this.#apply(budget);
    return budget;
  }
  #ready(budget = this.#state().current) {
    return !this.#model._needsGates(budget);
  }

  #step(token, mask = 0) {
    const rt = this.#model._rt;
    const s = this.#alive();
    const t0 = now();
    if (mask) rt.check(rt.x.doze_session_step_masked(s, token, mask, rt.err));
    else rt.check(rt.x.doze_session_step(s, token, rt.err));
    const hook = this.#model._testAfterStep;
    if (hook) hook(rt.x.doze_session_compute(s)); // inside the timed region
    this.#stepMs = now() - t0;
    this.#stepBudget = this.#cBudget;
    this.#last = token;
  }

  #logits() {
    const rt = this.#model._rt;
    const p = rt.x.doze_session_logits(this.#alive());
    return new Float32Array(rt.x.memory.buffer, p, this.#model.info.vocabSize);
  }

  /** Mask, compute ratio and budget of the last step. */
  #report() {
    const rt = this.#model._rt;
    const s = this.#alive();
    return {
      mask: readMask(rt, s, this.#model.info),
      compute: rt.x.doze_session_compute(s),
      budget: this.#stepBudget,
    };
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
      onPromptStep,
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

      const promptT0 = now();
      // The prompt. Dense and unobserved (no budget below 1, no
      // onPromptStep): all but its last token in batched prefill passes
      // (matrix-matrix products; the same KV cache bits as token by token),
      // PREFILL_PASS tokens per call, checking for abort between passes.
      let first = 0;
      if (!onPromptStep && feed.length > 1 && this.#state().current >= DENSE_BUDGET && this.#ready()) {
        this.#apply(this.#state().current);
        const n = feed.length - 1;
        const ids = rt.doze.malloc(Math.min(n, PREFILL_PASS) * 4);
        try {
          for (let i = 0; i < n; i += PREFILL_PASS) {
            const k = Math.min(PREFILL_PASS, n - i);
            new Int32Array(rt.x.memory.buffer, ids, k).set(feed.slice(i, i + k));
            rt.check(rt.x.doze_session_prefill(this.#alive(), ids, k, rt.err), 'prefill');
            this.#last = feed[i + k - 1];
            if (i + k < n) {
              await yieldToEventLoop();
              this.#alive();
              if (signal && signal.aborted) throw abortError('generation', signal);
            }
          }
        } finally {
          rt.doze.free(ids);
        }
        this.#pending = -1;
        first = n;
      }
      // The rest of the prompt: one forward step per token.
      for (let i = first; i < feed.length; i++) {
        if (this.#ready()) this.#apply(this.#state().current);
        else await this.#prepare();
        this.#step(feed[i]);
        this.#pending = -1;
        if (onPromptStep) onPromptStep({ id: feed[i], position: this.position - 1, ...this.#report(), ms: this.#stepMs });
        if (i % 16 === 15 && i + 1 < feed.length) {
          await yieldToEventLoop();
          this.#alive();
          if (signal && signal.aborted) throw abortError('generation', signal);
        }
      }

      const promptMs = now() - promptT0;
      let count = 0;
      let held = ''; // text held back while it may be the start of a stop string
      let emitted = '';
      let reason = 'length';
      const limit = Math.max(0, Number(maxTokens));
      while (count < limit) {
        const t0 = now();
        const next = rt.x.doze_sampler_sample(sampler, this.#logits().byteOffset);
        const ms = this.#stepMs + (now() - t0);
        this.#pending = next;
        const position = this.position; // where `next` would go
        if (stopIds.has(next) || (!ignoreEos && (next === info.eosId || next === info.bosId))) {
          reason = stopIds.has(next) ? 'stop' : 'eos';
          break;
        }
        count++;
        const report = this.#report();
        const auto = this.#state().auto;
        if (auto) auto.observe(ms);
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
        yield { id: next, text, position, ...report, ms };
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
        if (this.#ready()) this.#apply(this.#state().current);
        else await this.#prepare();
        if (signal && signal.aborted) throw abortError('generation', signal);
        this.#step(next);
        this.#pending = -1;
      }
      if (reason === 'eos' || (reason === 'stop' && held)) {
        const tail = (reason === 'eos' ? held : '') + piece.flush();
        if (tail) {
          emitted += tail;
          yield { id: -1, text: tail, position: -1, mask: null, compute: null, budget: this.#stepBudget, ms: 0 };
        }
      }
      return { reason, tokens: count, text: emitted, promptTokens: feed.length, promptMs };
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
   * Runs one token at the next position and returns its logits, mask and
   * compute ratio. With `layers` (n_layers 0/1 values) and optionally `heads`
   * (n_layers * n_heads values, row-major, or one array per layer) the step
   * runs exactly that mask (a forced mask, for analysis; `ffn`: n_layers *
   * info.ffnBlocks FFN-block values, default all on); without, it runs
   * under the session's budget and the model's gates like generate() does. A
   * skipped layer reports all its heads as 0. Drops a token generate()
   * sampled but had not run yet.
   * @param {number} token
   * @param {{layers?: ArrayLike<number|boolean>, heads?: ArrayLike<number|boolean> | ArrayLike<number|boolean>[], ffn?: ArrayLike<number|boolean> | ArrayLike<number|boolean>[]}} [mask]
   * @returns {Promise<StepResult>}
   */
  async step(token, { layers, heads, ffn } = {}) {
    this.#lock();
    const rt = this.#model._rt;
    const info = this.#model.info;
    let p = 0;
    try {
      if (!Number.isInteger(token)) throw new DozeError('INVALID_ARGUMENT', 'step: the token must be an integer id');
      if (layers == null && heads == null && ffn == null) {
        await this.#prepare();
        this.#step(token);
      } else {
        const L = info.layers;
        const H = info.heads;
        const NB = ffnBlocks(info);
        const lb = layers == null ? new Uint8Array(L).fill(1) : maskBytes(layers, L, 'layers');
        const hb = heads == null ? null : maskBytes(heads, L * H, 'heads');
        const fb = ffn == null ? null : maskBytes(ffn, L * NB, 'ffn');
        // a doze_mask (three wasm32 pointers: layers, heads, ffn), then the bytes
        p = rt.doze.malloc(12 + L + L * H + L * NB);
        const at = p + 12;
        rt.u8.set(lb, at);
        if (hb) rt.u8.set(hb, at + L);
        if (fb) rt.u8.set(fb, at + L + L * H);
        new Uint32Array(rt.u8.buffer, p, 3).set([at, hb ? at + L : 0, fb ? at + L + L * H : 0]);
        this.#step(token, p);
      }
      this.#pending = -1;
      const { mask, compute, budget } = this.#report();
      const r = { position: this.position - 1, logits: this.#logits().slice(), mask, compute, ms: this.#stepMs };
      if (layers == null && heads == null) r.budget = budget;
      return r;
    } finally {
      if (p) rt.doze.free(p);
      this.#busy = false;
    }
  }

  /**
   * Perplexity of `text` from an empty context (this resets the session),
   * under `budget` (default: the session's budget; autoBudget does not adjust
   * it here). `compute` is the mean achieved compute ratio of the steps.
   * @param {string} text
   * @param {{signal?: AbortSignal, budget?: number}} [options]
   * @returns {Promise<Perplexity>}
   */
  async perplexity(text, { signal, budget } = {}) {
    if (signal && signal.aborted) throw abortError('perplexity', signal);
    if (budget != null) checkBudget(budget, 'perplexity: budget');
    this.#lock();
    try {
      const b = budget ?? this.#state().current;
      if (!this.#ready(b)) await this.#prepare(b);
      this.reset();
      const info = this.#model.info;
      const rt = this.#model._rt;
      let ids = this.#model.tokenize(text, { bos: true });
      if (ids.length > info.contextLength) ids = ids.subarray(0, info.contextLength);
      let sum = 0;
      let computeSum = 0;
      const n = info.vocabSize;
      for (let i = 0; i + 1 < ids.length; i++) {
        this.#apply(b);
        this.#step(ids[i]);
        computeSum += rt.x.doze_session_compute(this.#ptr);
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
      return { perplexity: Math.exp(nll), nll, tokens, compute: computeSum / tokens, budget: b };
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
 * @property {(s: PromptStep) => void} [onPromptStep] called after each prompt token's step
 */
/**
 * @typedef {object} StepMask
 * @property {Uint8Array} layers (n_layers) 1 = the layer ran
 * @property {Uint8Array} heads (n_layers * n_heads) row-major: heads[l * n_heads + h] = 1 when head h of layer l ran
 */
/**
 * @typedef {object} Token
 * @property {number} id token id (-1 for a last item carrying only held-back text)
 * @property {string} text its text; the texts concatenate to the output
 * @property {number} position its position in the context
 * @property {StepMask|null} mask the mask of the step whose logits this token was sampled from
 * @property {number|null} compute that step's achieved compute ratio (1 = dense)
 * @property {number} budget the budget that step ran under
 * @property {number} ms milliseconds that step and the sampling took
 */
/**
 * @typedef {object} PromptStep
 * @property {number} id the prompt token run
 * @property {number} position its position
 * @property {StepMask} mask
 * @property {number} compute
 * @property {number} budget
 * @property {number} ms
 */
/**
 * @typedef {object} StepResult
 * @property {number} position the position the token went to
 * @property {Float32Array} logits (vocab_size) a copy
 * @property {StepMask} mask
 * @property {number} compute
 * @property {number} [budget] the budget (unforced steps only)
 * @property {number} ms
 */
/**
 * @typedef {object} Perplexity
 * @property {number} perplexity
 * @property {number} nll mean negative log-likelihood (nats)
 * @property {number} tokens tokens scored
 * @property {number} compute mean achieved compute ratio of the steps
 * @property {number} budget the budget they ran under
 */
/**
 * @typedef {object} CalibrateOptions
 * @property {string} [text] calibration text (encoded with BOS, cut to 512 tokens)
 * @property {ArrayLike<number>} [tokens] calibration token ids, BOS first (used as given)
 * @property {number} [protectLayers] the first N layers are never skipped whole (default 1)
 * @property {number} [protectTokens] the first N positions run dense (default 1: BOS)
 * @property {number} [ridge] regularization of the fit (default 0.01)
 * @property {number|bigint} [random] nonzero: random routers with this seed (a baseline), still calibrated to the budget
 * @property {AbortSignal} [signal] aborts writing the self-generated text
 * @property {boolean} [activate] make them the model's gates (default true)
 */
/**
 * @typedef {object} FinetuneOptions
 * @property {number} [budget] the compute budget b to train for (default 0.7)
 * @property {number} [steps] training steps (default 400); also the length of the temperature schedule
 * @property {number} [contextLength] tokens per window T (default 128; at most the model's context)
 * @property {number} [batch] windows per step (default 8)
 * @property {number} [lr] AdamW learning rate (default 2e-2)
 * @property {number} [weightDecay] AdamW decay (default 1e-4)
 * @property {number} [computeWeight] weight of (E[compute] - b)^2 in the loss (default 20)
 * @property {number} [tauStart] Gumbel-sigmoid temperature at the first step (default 1)
 * @property {number} [tauEnd] ... at the last step (default 0.2)
 * @property {number|bigint} [seed] the run's seed: story choice and noise (default 1)
 * @property {Gates|null} [init] start from (a copy of) these gates instead of training-free ones calibrated on the text
 * @property {(s: FinetuneStep) => void} [onStep] called after each step
 * @property {AbortSignal} [signal] aborts between steps (rejects with an AbortError, code ABORTED)
 * @property {boolean} [activate] make the trained gates the model's (default true)
 */
/**
 * @typedef {object} FinetuneStep
 * @property {number} step 1, 2, ... steps
 * @property {number} loss kl + the compute term
 * @property {number} kl mean KL(dense || gated) per token, nats
 * @property {number} compute achieved compute ratio under this step's hard decisions
 * @property {number} expectedCompute expected compute ratio under the relaxed gates
 * @property {number} tau the Gumbel-sigmoid temperature of the step
 * @property {number} tokensPerSecond batch * contextLength tokens over the step's time
 * @property {number} ms milliseconds the step took
 */
/**
 * @typedef {object} GenerateResult
 * @property {'length'|'eos'|'stop'|'context'} reason why generation ended
 * @property {number} tokens tokens generated
 * @property {string} text the whole output
 * @property {number} promptTokens prompt tokens fed (BOS and a pending token included)
 * @property {number} promptMs milliseconds spent on the prompt (batched prefill when dense and unobserved)
 */

export default loadModel;
