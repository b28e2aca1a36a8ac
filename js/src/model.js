// Model: a loaded model's weights in wasm memory, its info, budget and gates,
// tokenizer, sessions, and the model-level generate / complete / perplexity
// (each from an empty context, on a cached session).

import { DozeError } from './errors.js';
import { BudgetState } from './budget.js';
import { Gates, calibrate, finetune, checkCalibrateOptions, checkFinetuneOptions } from './gates.js';
import { checkJointOptions, finetuneJoint } from './joint.js';
import { Session } from './session.js';
import { PieceDecoder } from './text.js';
import { bool, checkOptions, invalid, isInt32, literalBytes, literalRanges, tokenIds } from './options.js';
import { API } from './api.js';

/** The C type table's name of a ggml type id ('q4_k', 'bf16', ...). */
function typeName(rt, id) {
  const p = rt.x.doze_type_name(id);
  return p ? rt.doze.readString(p) : `type${id}`;
}

const INFO_FIELDS = [
  'dim', 'hiddenDim', 'layers', 'heads', 'kvHeads', 'headDim', 'ropeDim', 'vocabSize',
  'contextLength', 'normEps', 'ropeTheta', 'weightTypeId', 'tiedOutput', 'params', 'bytes',
  'layerBytes', 'bosId', 'eosId', 'unkId', 'ffnBlock', 'ffnOrder', 'experts', 'expertsUsed',
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
      weightType: typeName(rt, raw.weightTypeId),
      tiedOutput: raw.tiedOutput === 1,
      params: raw.params,
      bytes: raw.bytes,
      layerBytes: raw.layerBytes,
      bosId: raw.bosId,
      eosId: raw.eosId,
      unkId: raw.unkId,
      // channels per FFN block (16 for small f32/f16 FFNs, else 32) and blocks per layer
      ffnBlock: raw.ffnBlock || 32,
      ffnBlocks: Math.ceil(raw.hiddenDim / (raw.ffnBlock || 32)),
      // 0, or the doze.ffn_order key of a model `doze order-ffn` rewrote
      ffnOrder: raw.ffnOrder || 0,
      // a mixture of experts: experts per layer and the model's top k (0 when dense)
      experts: raw.experts || 0,
      expertsUsed: raw.expertsUsed || 0,
      // which build runs it: 'relaxed' (doze-relaxed.wasm) or 'strict'
      simd: rt.simd,
    });
  } finally {
    rt.doze.free(p);
  }
}

const ACTIVATE_OPTIONS = { activate: bool };
const TOKENIZE_OPTIONS = { bos: bool, parseSpecial: bool, literal: literalRanges };

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
  #pool = null; // the thread pool's workers (js/src/pool.js), or null

  /** @internal test hook: called after each step with its compute ratio, inside the timed region (a slower machine). */
  _testAfterStep = null;

  /** @internal */
  constructor(rt, ptr, pool = null) {
    this.#rt = rt;
    this.#ptr = ptr;
    this.#pool = pool;
    this.info = Object.freeze({ ...readInfo(rt, ptr), threads: pool ? pool.threads : 1 });
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
  get disposed() {
    return !this.#ptr;
  }

  // ---- budget and gates ----

  get budget() {
    return this.#budget.current;
  }
  set budget(b) {
    this._alive();
    this.#budget.set(API.Model.budget.check(b));
  }
  autoBudget(options) {
    this._alive();
    this.#budget.setAuto(options);
  }
  get autoBudgetOptions() {
    return this.#budget.autoOptions;
  }

  get gates() {
    return this.#gates;
  }
  set gates(g) {
    this._alive();
    g = API.Model.gates.check(g, this, Gates);
    if (g) g._ptr();
    this.#gates = g;
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

  #adopt(ptr, activate) {
    const g = new Gates(this, ptr, (x) => {
      this.#allGates.delete(x);
      if (this.#gates === x) this.#gates = null;
      // before they are freed: no C session may keep them, also one in the
      // middle of a prefill or a speculative step (it goes on dense)
      for (const s of this.#sessions) s._dropGates(x);
    });
    this.#allGates.add(g);
    if (activate) this.gates = g;
    return g;
  }

  /**
   * Training-free gates: the dense model over a token sequence (BOS first),
   * routers fitted to it, then the budget -> threshold table; the same file
   * as `doze gates MODEL [--calib FILE]`.
   */
  async calibrateGates(options) {
    const o = checkCalibrateOptions(options);
    this._alive();
    return this.#adopt(await calibrate(this, this.#rt, o), o.activate ?? true);
  }

  /** Gates from a gate file; files made for another model are refused. */
  loadGates(bytes, options) {
    const { activate = true } = checkOptions('loadGates', options, ACTIVATE_OPTIONS);
    const m = this._alive();
    if (!(bytes instanceof ArrayBuffer || ArrayBuffer.isView(bytes))) {
      throw invalid('loadGates: expected the gate file as a Uint8Array or ArrayBuffer');
    }
    const rt = this.#rt;
    const p = rt.doze.writeBytes(bytes);
    try {
      const g = rt.x.doze_wasm_gates_load(m, p, bytes.byteLength, rt.err);
      if (!g) throw rt.error('loadGates');
      return this.#adopt(g, activate);
    } finally {
      rt.doze.free(p);
    }
  }

  /** The gate file (GGUF bytes) of the active gates, or of `gates`. */
  saveGates(gates = this.#gates) {
    this._alive();
    if (!gates) throw new DozeError('STATE', 'saveGates: the model has no gates (calibrateGates() or loadGates() first)');
    if (!(gates instanceof Gates)) throw invalid('saveGates: expected a Gates object');
    return gates.save();
  }

  /**
   * Trains gates on `text` by backprop (the base weights frozen, only the
   * routers learn); the same run as `doze finetune`.
   */
  async finetuneGates(text, options) {
    const o = checkFinetuneOptions(options);
    this._alive();
    if (typeof text !== 'string') throw invalid('finetuneGates: the text must be a string');
    const g = await finetune(this, this.#rt, text, o, (r) => this.#finetunes.add(r), (r) => this.#finetunes.delete(r));
    return this.#adopt(g, o.activate ?? true);
  }

  /**
   * Fine-tunes the model's weights together with its gates on `text` (joint
   * training; every weight, or rank-`lora` adapters merged when written);
   * the same run as `doze finetune MODEL TEXT --joint`. This model is left
   * as it was: returns { model, gates }, the new model's GGUF bytes (written
   * from `options.source`, this model's own file) and its gate file.
   */
  async finetune(text, options) {
    const o = checkJointOptions(options);
    this._alive();
    if (typeof text !== 'string') throw invalid('finetune: the text must be a string');
    return finetuneJoint(this, this.#rt, text, o, (r) => this.#finetunes.add(r), (r) => this.#finetunes.delete(r));
  }

  // ---- text ----

  /** Token ids of `text`, BOS first unless `bos: false`. */
  tokenize(text, options) {
    const { bos = true, parseSpecial = false, literal = [] } = checkOptions('tokenize', options, TOKENIZE_OPTIONS);
    const flags = (bos ? 1 : 0) | (parseSpecial ? 2 : 0); // DOZE_TOKENIZE_ADD_SPECIAL | _PARSE_SPECIAL
    if (typeof text !== 'string') throw invalid(`tokenize: the text must be a string, got ${typeof text}`);
    const lit = literalBytes(text, literal, 'tokenize: literal'); // (ranges, 2) byte offsets
    const m = this._alive();
    const rt = this.#rt;
    const bytes = new TextEncoder().encode(text);
    const tp = rt.doze.writeBytes(bytes);
    const nOut = rt.doze.malloc(4);
    const lp = lit.length ? rt.doze.malloc(lit.length * 4) : 0;
    let ids = 0;
    try {
      if (lp) new Uint32Array(rt.x.memory.buffer, lp, lit.length).set(lit);
      const encode = (cap) => rt.check(
        rt.x.doze_tokenize_literal(m, tp, bytes.length, flags, lp, lit.length / 2, ids, cap, nOut, rt.err), 'tokenize');
      let cap = bytes.length + 2;
      ids = rt.doze.malloc(cap * 4);
      encode(cap);
      let n = rt.doze.view.getInt32(nOut, true);
      if (n > cap) {
        rt.doze.free(ids);
        cap = n;
        ids = rt.doze.malloc(cap * 4);
        encode(cap);
        n = rt.doze.view.getInt32(nOut, true);
      }
      return new Int32Array(rt.x.memory.buffer, ids, n).slice();
    } finally {
      rt.doze.free(ids);
      rt.doze.free(nOut);
      rt.doze.free(tp);
      if (lp) rt.doze.free(lp);
    }
  }

  /** A string-valued key of the model's GGUF metadata, or null. */
  metadata(key) {
    if (typeof key !== 'string') throw invalid('metadata: the key must be a string');
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

  /** A token's text as the vocabulary stores it (control tokens included), or null. */
  tokenText(id) {
    const m = this._alive();
    if (!isInt32(id)) return null; // not a token id (id | 0 would wrap 2^32 + 5 to 5)
    const p = this.#rt.x.doze_wasm_token_text(m, id) >>> 0;
    return p ? this.#rt.doze.readString(p) : null;
  }

  /** The assistant's reply to `messages`, rendered with the model's chat template (chat.js). */
  async *chat(messages, options) {
    const { chat } = await import('./chat.js');
    return yield* chat(this, messages, options);
  }

  /**
   * @internal chat()'s generation of its rendered prompt, on the model's
   * shared session as it was left (not reset): a conversation that extends
   * the previous chat runs only its new tokens. No second KV cache: a
   * generate() in between resets it, and the next chat runs whole.
   */
  async *_chatRun(prompt, options) {
    const { session, release } = this.#acquire({ keep: true });
    try {
      return yield* session._continue(prompt, options);
    } finally {
      release();
    }
  }

  /**
   * The text of token ids, as the CLI prints them: the first id opens the
   * text (SentencePiece's dummy leading space goes, as after BOS).
   */
  detokenize(ids) {
    tokenIds(ids, 'detokenize: ids');
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

  /** A new independent KV cache over this model. */
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
  #acquire({ keep = false } = {}) {
    this._alive();
    if (!this.#sharedBusy) {
      if (!this.#shared) this.#shared = this.createSession();
      this.#sharedBusy = true;
      if (!keep) this.#shared.reset();
      return { session: this.#shared, release: () => (this.#sharedBusy = false) };
    }
    const s = this.createSession();
    return { session: s, release: () => s.dispose() };
  }

  /** Streams a continuation of `prompt` from an empty context. */
  async *generate(prompt, options) {
    const { session, release } = this.#acquire();
    try {
      return yield* session.generate(prompt, options);
    } finally {
      release();
    }
  }

  /** The whole continuation of `prompt` as one string (see generate()). */
  async complete(prompt, options) {
    const { session, release } = this.#acquire();
    try {
      return await session.complete(prompt, options);
    } finally {
      release();
    }
  }

  /** Perplexity of `text` (encoded with BOS, truncated to the context). */
  async perplexity(text, options) {
    const { session, release } = this.#acquire();
    try {
      return await session.perplexity(text, options);
    } finally {
      release();
    }
  }

  /** Bytes malloc'd in this model's wasm memory (shared with the models of the same runtime). */
  async heapUsed() {
    return this.#rt.heapUsed();
  }

  /** Frees the model, its sessions (and their unfinished generations) and its gates. */
  dispose() {
    if (!this.#ptr) return;
    for (const s of [...this.#sessions]) s.dispose();
    for (const r of [...this.#finetunes]) r.free();
    for (const g of [...this.#allGates]) g.dispose();
    this.#shared = null;
    this.#rt.x.doze_model_free(this.#ptr); // stops the pool: its workers leave their loop
    this.#ptr = 0;
    if (this.#pool) this.#pool.stop();
    this.#pool = null;
  }
}
