// Session: one KV cache over a model (a conversation), its budget, forced
// and gated single steps, and perplexity. The generation loop is generate.js.

import { DozeError, abortError } from './errors.js';
import { now, yieldToEventLoop } from './runtime.js';
import { BudgetState } from './budget.js';
import { API } from './api.js';
import { checkOptions, any, budget as budgetOption, signal as signalOption, invalid, isInt32 } from './options.js';
import { checkGenerateOptions, fitPrompt, generateTokens } from './generate.js';
import { collect } from './text.js';

// perplexity(): tokens per doze_session_score call (the event loop and abort
// are checked between calls); steps under a budget take longer per token
const SCORE_PASS = 64;
const SCORE_PASS_GATED = 16;

/** A step's mask: which layers ran, which heads of each (row-major (layers, heads)), which FFN blocks of each (row-major (layers, ffnBlocks)) and, on a mixture of experts, which experts of each (row-major (layers, experts)). */
function readMask(rt, s, info) {
  const L = info.layers;
  const H = info.heads;
  const NB = info.ffnBlocks;
  const lp = rt.x.doze_session_layer_mask(s);
  const hp = rt.x.doze_session_head_mask(s);
  const fp = rt.x.doze_session_ffn_mask(s);
  const u8 = rt.u8;
  const m = { layers: u8.slice(lp, lp + L), heads: u8.slice(hp, hp + L * H), ffn: u8.slice(fp, fp + L * NB) };
  if (info.experts) {
    const ep = rt.x.doze_session_expert_mask(s);
    m.experts = u8.slice(ep, ep + L * info.experts);
  }
  return m;
}

/** 0/1 bytes from an array-like (or, for heads and ffn, an array of per-layer arrays). */
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
    throw invalid(`step: ${what} must have ${n} entries, got ${a ? a.length : typeof v}`);
  }
  return Uint8Array.from(a, (x) => (x ? 1 : 0));
}

/**
 * The state behind a Session: the C session, the token sampled but not run
 * yet, the gates and budget last set on the C side, the last step's time and
 * budget, and the wasm memory of generations in flight.
 */
export class SessionCore {
  constructor(model, ptr) {
    this.model = model;
    this.rt = model._rt;
    this.ptr = ptr;
    this.pending = -1; // last sampled token, not yet run through the model
    this.last = -1; // last token run (for detokenizing what follows)
    this.tokens = []; // the tokens in the KV cache, in order (what truncate() goes back to; the sampler's penalties look back over them)
    this.busy = false;
    this.own = null; // a BudgetState of its own, or null: follow the model's
    this.cGates = null; // the Gates object set on the C session
    this.cBudget = 1; // the budget set on the C session
    this.stepMs = 0; // time of the last step
    this.stepBudget = 1; // budget of the last step
    // Frees of generations started and not finished: an abandoned generator
    // never runs its finally, so dispose() runs these.
    this.inflight = new Set();
  }
  alive() {
    this.model._alive();
    if (!this.ptr) throw new DozeError('STATE', 'the session has been disposed');
    return this.ptr;
  }
  get position() {
    return this.rt.x.doze_session_pos(this.alive());
  }
  state() {
    return this.own ?? this.model._budgetState;
  }
  // The gates and budget of the next step, on the C session.
  apply(budget) {
    const rt = this.rt;
    const s = this.alive();
    const g = this.model.gates;
    if (g !== this.cGates) {
      rt.check(rt.x.doze_session_set_gates(s, g ? g._ptr() : 0, rt.err), 'gates');
      this.cGates = g;
    }
    if (budget !== this.cBudget) {
      rt.check(rt.x.doze_session_set_budget(s, budget, rt.err), 'budget');
      this.cBudget = budget;
    }
  }
  // Gates g are about to be freed: the C session lets go of them (dense).
  dropGates(g) {
    if (this.cGates !== g || !this.ptr) return;
    const rt = this.rt;
    rt.check(rt.x.doze_session_set_budget(this.ptr, 1, rt.err), 'budget');
    this.cBudget = 1;
    rt.check(rt.x.doze_session_set_gates(this.ptr, 0, rt.err), 'gates');
    this.cGates = null;
  }
  // Before a normal step: calibrates first when the budget needs gates the
  // model does not have yet; returns the budget the step will use.
  async prepare(budget = this.state().current) {
    if (this.model._needsGates(budget)) {
      await this.model._autoCalibrate();
      this.alive();
    }
    this.apply(budget);
    return budget;
  }
  ready(budget = this.state().current) {
    return !this.model._needsGates(budget);
  }
  // mask: 0, or a doze_mask in wasm memory (a forced step)
  step(token, mask = 0) {
    const rt = this.rt;
    const s = this.alive();
    const t0 = now();
    if (mask) rt.check(rt.x.doze_session_step_masked(s, token, mask, rt.err));
    else rt.check(rt.x.doze_session_step(s, token, rt.err));
    const hook = this.model._testAfterStep;
    if (hook) hook(rt.x.doze_session_compute(s)); // inside the timed region
    this.stepMs = now() - t0;
    this.stepBudget = this.cBudget;
    this.ran(token);
  }
  /** Records tokens the C session now holds (after a step, a prefill or a speculative step). */
  ran(...ids) {
    for (const id of ids) this.tokens.push(id);
    if (ids.length) this.last = ids[ids.length - 1];
  }
  /** Forgets positions >= pos (the C session's cache and its record here). */
  truncate(pos) {
    const rt = this.rt;
    rt.check(rt.x.doze_session_truncate(this.alive(), pos, rt.err), 'truncate');
    this.tokens.length = Math.min(this.tokens.length, pos);
    this.last = pos > 0 && this.tokens.length === pos ? this.tokens[pos - 1] : -1;
  }
  logits() {
    const p = this.rt.x.doze_session_logits(this.alive());
    return new Float32Array(this.rt.x.memory.buffer, p, this.model.info.vocabSize);
  }
  /** Mask, compute ratio and budget of the last step. */
  report() {
    const s = this.alive();
    return {
      mask: readMask(this.rt, s, this.model.info),
      compute: this.rt.x.doze_session_compute(s),
      budget: this.stepBudget,
    };
  }
  lock() {
    this.alive();
    if (this.busy) throw new DozeError('STATE', 'this session is already generating; use another session');
    this.busy = true;
  }
  reset() {
    this.rt.x.doze_session_reset(this.alive());
    this.pending = -1;
    this.last = -1;
    this.tokens = [];
  }
  free() {
    for (const f of [...this.inflight]) f();
    this.inflight.clear();
    if (this.ptr) this.rt.x.doze_session_free(this.ptr);
    this.ptr = 0;
  }
}

const PERPLEXITY_OPTIONS = { signal: signalOption, budget: budgetOption };
const STEP_MASK = { layers: any, heads: any, ffn: any, experts: any };

/**
 * An independent KV cache over a model: a conversation. Each generate()
 * continues where the previous one stopped.
 */
export class Session {
  #core;
  #onDispose;

  /** @internal */
  constructor(model, ptr, onDispose) {
    this.#core = new SessionCore(model, ptr);
    this.#onDispose = onDispose;
  }

  /** @internal Gates g are about to be freed (Gates#dispose). */
  _dropGates(g) {
    this.#core.dropGates(g);
  }

  /** Positions used so far (tokens in the KV cache). */
  get position() {
    return this.#core.position;
  }

  /** The model this session runs. */
  get model() {
    return this.#core.model;
  }

  /**
   * This session's budget (see Model#budget). Until set, the session follows
   * the model's budget (and autoBudget); `null` makes it follow again.
   */
  get budget() {
    return this.#core.state().current;
  }
  set budget(b) {
    this.#core.alive();
    b = API.Session.budget.check(b);
    this.#core.own = b == null ? null : new BudgetState(b);
  }

  /** True after dispose() (or the model's). */
  get disposed() {
    return !this.#core.ptr || this.#core.model.disposed;
  }

  /**
   * autoBudget for this session alone (see Model#autoBudget); `null` turns
   * it off for this session (which then keeps a fixed budget of its own).
   */
  autoBudget(options) {
    const c = this.#core;
    c.alive();
    const st = new BudgetState(c.own ? c.own.fixed : c.model._budgetState.fixed);
    st.setAuto(options);
    c.own = st;
  }

  /** Empties the context. */
  reset() {
    this.#core.reset();
  }

  /**
   * Rolls the KV cache back to its first `position` tokens (0 <= position <=
   * this.position): continuing from there is exactly what a session that
   * never ran the later tokens does. A token generate() sampled but had not
   * run yet is dropped too.
   */
  truncate(position) {
    const c = this.#core;
    const pos = c.position;
    if (!Number.isInteger(position) || position < 0 || position > pos) {
      throw invalid(`truncate: the position must be an integer in [0, ${pos}], got ${position}`);
    }
    if (c.busy) throw new DozeError('STATE', 'truncate: this session is generating');
    c.truncate(position);
    c.pending = -1;
  }

  /**
   * Adds `prompt` to this session's context (with BOS when the context is
   * empty) and generates from there. See Model#generate for the options.
   */
  async *generate(prompt, options) {
    const o = checkGenerateOptions('generate', prompt, options);
    return yield* generateTokens(this.#core, prompt, o);
  }

  /**
   * @internal model.chat's run: `prompt` tokenized as a generation from an
   * empty context would be, then only what this session does not hold
   * already runs: the positions after the longest common prefix with the
   * tokens it holds (a conversation that extends the last one re-runs
   * nothing of it). Dense, the reply is the one from an empty context (a
   * batch gives the bits of its tokens run one by one).
   */
  async *_continue(prompt, options) {
    const o = checkGenerateOptions('chat', prompt, options);
    const c = this.#core;
    c.model._alive();
    if (c.busy) throw new DozeError('STATE', 'chat: this session is generating');
    const info = c.model.info;
    const bos = o.bos ?? true;
    // The whole rendered conversation is fitted to the whole context first,
    // as generate() fits it from an empty context (truncate / keepLast cut
    // its start; CONTEXT_FULL counts all of it); only then is the cache
    // matched. Fitting only the part after the cached prefix would keep the
    // prefix and cut the new turn instead, or refuse a keepLast that fits.
    let ids = c.model.tokenize(prompt, { bos, parseSpecial: o.parseSpecial ?? false, literal: o.literal });
    const hasBos = bos && info.bosId >= 0 && ids[0] === info.bosId;
    ids = fitPrompt(Array.from(ids), info.contextLength, info.contextLength, hasBos, o, 'chat');
    const rest = { ...o }; // applied: not again to the part after the prefix
    delete rest.truncate;
    delete rest.keepLast;
    const held = c.pending >= 0 ? [...c.tokens, c.pending] : c.tokens;
    let keep = 0;
    const most = Math.min(held.length, ids.length - 1); // at least one token runs
    while (keep < most && held[keep] === ids[keep]) keep++;
    // keep > tokens.length: the pending token matched too, and generateTokens
    // feeds it first; otherwise the cache goes back to the common prefix
    if (keep <= c.tokens.length) {
      if (keep < c.tokens.length) c.truncate(keep);
      c.pending = -1;
    }
    return yield* generateTokens(c, null, { ...rest, promptIds: ids.slice(keep), bos: keep === 0 ? o.bos : false });
  }

  /** The whole continuation as one string (see generate()). */
  async complete(prompt, options) {
    const { onToken, ...rest } = checkGenerateOptions('complete', prompt, options, true);
    return collect(generateTokens(this.#core, prompt, rest), onToken);
  }

  /**
   * Runs one token at the next position and returns its logits, mask and
   * compute ratio: under the given mask (forced: `layers`, `heads`, `ffn`,
   * `experts`),
   * else under the session's budget and the model's gates like generate().
   * Drops a token generate() sampled but had not run yet.
   */
  async step(token, mask) {
    const { layers, heads, ffn, experts } = checkOptions('step: mask', mask, STEP_MASK);
    const forced = layers != null || heads != null || ffn != null || experts != null;
    const c = this.#core;
    c.lock();
    const rt = c.rt;
    const info = c.model.info;
    let p = 0;
    try {
      if (!isInt32(token)) throw invalid('step: the token must be an integer id');
      if (experts != null && !info.experts) throw invalid('step: experts are for a mixture of experts; this model is dense');
      if (!forced) {
        await c.prepare();
        c.step(token);
      } else {
        const L = info.layers;
        const H = info.heads;
        const NB = info.ffnBlocks;
        const lb = layers == null ? new Uint8Array(L).fill(1) : maskBytes(layers, L, 'layers');
        const hb = heads == null ? null : maskBytes(heads, L * H, 'heads');
        const fb = ffn == null ? null : maskBytes(ffn, L * NB, 'ffn');
        const NE = L * info.experts;
        const eb = experts == null ? null : maskBytes(experts, NE, 'experts');
        // a doze_mask (four wasm32 pointers: layers, heads, ffn, experts), then the bytes
        p = rt.doze.malloc(16 + L + L * H + L * NB + NE);
        const at = p + 16;
        const eAt = at + L + L * H + L * NB;
        rt.u8.set(lb, at);
        if (hb) rt.u8.set(hb, at + L);
        if (fb) rt.u8.set(fb, at + L + L * H);
        if (eb) rt.u8.set(eb, eAt);
        new Uint32Array(rt.u8.buffer, p, 4).set([at, hb ? at + L : 0, fb ? at + L + L * H : 0, eb ? eAt : 0]);
        c.step(token, p);
      }
      c.pending = -1;
      const { mask: m, compute, budget } = c.report();
      const r = { position: c.position - 1, logits: c.logits().slice(), mask: m, compute, ms: c.stepMs };
      if (!forced) r.budget = budget;
      return r;
    } finally {
      if (p) rt.doze.free(p);
      c.busy = false;
    }
  }

  /**
   * Perplexity of `text` from an empty context (this resets the session),
   * under `budget` (default: the session's budget; autoBudget does not adjust
   * it here). `compute` is the mean achieved compute ratio of the steps.
   */
  async perplexity(text, options) {
    const { signal, budget } = checkOptions('perplexity', options, PERPLEXITY_OPTIONS);
    if (typeof text !== 'string') throw invalid('perplexity: the text must be a string');
    if (signal && signal.aborted) throw abortError('perplexity', signal);
    const c = this.#core;
    c.lock();
    try {
      const b = budget ?? c.state().current;
      if (!c.ready(b)) await c.prepare(b);
      c.reset();
      const info = c.model.info;
      const rt = c.rt;
      let ids = c.model.tokenize(text, { bos: true });
      if (ids.length > info.contextLength) ids = ids.subarray(0, info.contextLength);
      const tokens = Math.max(0, ids.length - 1);
      if (tokens === 0) throw invalid('perplexity: the text gives no token to score');
      // doze_session_score: dense, batched passes with the logits of single
      // steps; under a budget, steps, so the budget's feedback follows each token
      const pass = Math.min(c.model.gates && b < 1 ? SCORE_PASS_GATED : SCORE_PASS, tokens);
      const buf = rt.doze.malloc(pass * 20); // nll (pass) f64, compute (pass) f32, tokens, next (pass) i32
      try {
        let sum = 0;
        let computeSum = 0;
        for (let i = 0; i < tokens; i += pass) {
          const k = Math.min(pass, tokens - i);
          const mem = rt.x.memory.buffer;
          new Int32Array(mem, buf + pass * 12, k).set(ids.subarray(i, i + k));
          new Int32Array(mem, buf + pass * 16, k).set(ids.subarray(i + 1, i + k + 1));
          c.apply(b);
          const scored = rt.x.doze_session_score(c.ptr, buf + pass * 12, buf + pass * 16, k, buf, buf + pass * 8, rt.err);
          rt.check(scored, 'perplexity');
          c.ran(...ids.subarray(i, i + k));
          const nlls = new Float64Array(rt.x.memory.buffer, buf, k);
          const comp = new Float32Array(rt.x.memory.buffer, buf + pass * 8, k);
          for (let j = 0; j < k; j++) {
            sum += nlls[j];
            computeSum += comp[j];
          }
          if (i + k < tokens) {
            await yieldToEventLoop();
            c.alive();
            if (signal && signal.aborted) throw abortError('perplexity', signal);
          }
        }
        const nll = sum / tokens;
        return { perplexity: Math.exp(nll), nll, tokens, compute: computeSum / tokens, budget: b };
      } finally {
        rt.doze.free(buf);
      }
    } finally {
      c.busy = false;
    }
  }

  /** Frees the KV cache (and what an unfinished generate() holds). */
  dispose() {
    if (!this.#core.ptr) return;
    this.#core.free();
    this.#onDispose(this);
  }
}
