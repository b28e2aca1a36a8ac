// Gates: the per-layer routers that decide, per token, which layers, heads
// and FFN blocks run under a budget; made training-free (calibrated on a
// token sequence) or trained by backprop (finetune), saved as small GGUF
// gate files.

import { DozeError, abortError } from './errors.js';
import { now, yieldToEventLoop } from './runtime.js';
import { truncateUtf8 } from './text.js';
import {
  any, bool, budget, checkOptions, func, int, invalid, nullable, num, seed, seedHalves, signal, string, tokenIds,
} from './options.js';

const CALIB_MAX_TOKENS = 512; // as `doze gates`: calibration sequences are capped here
const CALIB_MAX_TEXT_BYTES = 32768; // and calibration text is cut here (at a UTF-8 boundary)
const CALIB_SEED = 1234; // the seed of the self-generated calibration text (as the CLI)

/**
 * Gates of one model. They belong to the model that made or loaded them and
 * are freed with it (or by dispose()).
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
      this.kind = kind;
      this.protectLayers = v[0];
      this.protectTokens = v[1];
      this.layers = v[3];
      this.heads = v[4];
    } finally {
      rt.doze.free(p);
    }
  }
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
  /** The gate file (a small GGUF; `doze generate --gates` and loadGates read it). */
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

export const CALIBRATE_OPTIONS = {
  text: string,
  tokens: tokenIds,
  protectLayers: int(0),
  protectTokens: int(0),
  ridge: num(0),
  random: seed,
  signal,
  activate: bool,
};

/**
 * Training-free gates for `model` (a doze_gates pointer): see
 * Model#calibrateGates. `o` holds checked options.
 */
export async function calibrate(model, rt, o) {
  const { text, tokens, protectLayers, protectTokens, ridge, random, signal: sig } = o;
  if (sig && sig.aborted) throw abortError('calibration', sig);
  let ids;
  if (tokens != null) {
    ids = Int32Array.from(tokens);
  } else if (text != null) {
    const bytes = truncateUtf8(new TextEncoder().encode(text), CALIB_MAX_TEXT_BYTES);
    ids = model.tokenize(new TextDecoder('utf-8', { ignoreBOM: true }).decode(bytes), { bos: true });
    ids = ids.subarray(0, Math.min(ids.length, model.info.contextLength, CALIB_MAX_TOKENS));
  } else {
    ids = await selfGenerated(model, rt, sig);
  }
  const [lo, hi] = random ? seedHalves(random) : [0, 0];
  const p = rt.doze.malloc(Math.max(1, ids.length) * 4);
  try {
    new Int32Array(rt.x.memory.buffer, p, ids.length).set(ids);
    const g = rt.x.doze_wasm_gates_calibrate(model._alive(), p, ids.length, protectLayers ?? -1, protectTokens ?? -1,
      ridge ?? -1, lo >>> 0, hi >>> 0, rt.err);
    if (!g) throw rt.error('calibrateGates');
    return g;
  } finally {
    rt.doze.free(p);
  }
}

// The CLI's calibration text: dense, seeded sampling at temperature 1 from BOS.
async function selfGenerated(model, rt, sig) {
  const info = model.info;
  const cap = Math.min(info.contextLength, CALIB_MAX_TOKENS);
  const ids = new Int32Array(Math.max(1, cap));
  ids[0] = info.bosId >= 0 ? info.bosId : 0;
  let s = 0;
  let smp = 0;
  try {
    s = rt.x.doze_session_new(model._alive(), rt.err);
    if (!s) throw rt.error('calibrateGates');
    smp = rt.x.doze_wasm_sampler_new(1, 0, 1, CALIB_SEED, 0, info.vocabSize, rt.err);
    if (!smp) throw rt.error('calibrateGates');
    for (let i = 0; i + 1 < cap; i++) {
      rt.check(rt.x.doze_session_step(s, ids[i], rt.err), 'calibrateGates');
      ids[i + 1] = rt.x.doze_sampler_sample(smp, rt.x.doze_session_logits(s));
      if (i % 32 === 31) {
        await yieldToEventLoop();
        model._alive();
        if (sig && sig.aborted) throw abortError('calibration', sig);
      }
    }
    return ids.subarray(0, cap);
  } finally {
    if (smp) rt.x.doze_sampler_free(smp);
    if (s) rt.x.doze_session_free(s);
  }
}

export const FINETUNE_OPTIONS = {
  budget,
  steps: int(1),
  contextLength: int(2),
  batch: int(1),
  lr: num(0, Infinity, { loOpen: true }),
  weightDecay: num(0),
  computeWeight: num(0),
  tauStart: num(0, Infinity, { loOpen: true }),
  tauEnd: num(0, Infinity, { loOpen: true }),
  seed,
  init: nullable(any),
  onStep: func,
  signal,
  activate: bool,
};

/** doze_train_default_params(), read from the wasm once per runtime. */
const trainDefaultsCache = new WeakMap();
export function trainDefaults(rt) {
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

/** The parameters both trainers take from checked options `o` and the C defaults `d`. */
export function gateRunParams(o, d) {
  return {
    budget: o.budget ?? d.budget,
    steps: o.steps ?? d.steps,
    contextLength: o.contextLength ?? d.contextLength,
    batch: o.batch ?? d.batch,
    lr: o.lr ?? d.lr,
    weightDecay: o.weightDecay ?? d.weightDecay,
    computeWeight: o.computeWeight ?? d.computeWeight,
    tauStart: o.tauStart ?? d.tauStart,
    tauEnd: o.tauEnd ?? d.tauEnd,
  };
}

/** A run's starting gates: null, or live Gates of this very model object. */
export function checkInit(model, init, call) {
  if (init == null) return;
  if (!(init instanceof Gates)) throw invalid(`${call}: init must be a Gates object or null`);
  if (init.model !== model) throw invalid(`${call}: init belongs to another model object (save it and loadGates the bytes)`);
  init._ptr();
}

/**
 * Runs the `p.steps` optimizer steps of the run `getRun()` (a doze_finetune
 * pointer, 0 once the model's dispose() freed it), reporting each to
 * `onStep`; yields to the event loop between steps so that aborts and
 * dispose() are served.
 */
export async function runSteps(model, rt, getRun, p, call, onStep, sig) {
  const tokensPerStep = p.batch * p.contextLength;
  const out = rt.doze.malloc(8 * 8);
  try {
    for (let i = 0; i < p.steps; i++) {
      const t0 = now();
      rt.check(rt.x.doze_wasm_finetune_step(getRun(), out, rt.err), call);
      const ms = now() - t0;
      const v = new Float64Array(rt.x.memory.buffer, out, 6);
      const stats = {
        step: v[0], steps: p.steps, loss: v[1], kl: v[2], compute: v[4], expectedCompute: v[3], tau: v[5],
        tokensPerSecond: (tokensPerStep * 1000) / Math.max(ms, 1e-6), ms,
      };
      if (onStep) onStep(stats);
      await yieldToEventLoop();
      if (!getRun()) model._alive(); // disposed meanwhile
      if (sig && sig.aborted) throw abortError('fine-tuning', sig);
    }
  } finally {
    rt.doze.free(out);
  }
}

/**
 * Trains gates for `model` on `text` (see Model#finetuneGates); returns the
 * doze_gates pointer. `o` holds checked options (`init` a Gates of this
 * model or null). `track(run)` / `untrack(run)` let the model free a run
 * in flight at its dispose().
 */
export async function finetune(model, rt, text, o, track, untrack) {
  const d = trainDefaults(rt);
  const p = gateRunParams(o, d);
  const { init = null, onStep, signal: sig } = o;
  checkInit(model, init, 'finetuneGates');
  if (sig && sig.aborted) throw abortError('fine-tuning', sig);
  const [lo, hi] = seedHalves(o.seed ?? d.seed);
  let f = 0;
  const run = { free: () => {} };
  try {
    const bytes = new TextEncoder().encode(text);
    const tp = rt.doze.writeBytes(bytes);
    try {
      f = rt.x.doze_wasm_finetune_new(
        model._alive(), init ? init._ptr() : 0, p.budget, p.contextLength, p.batch, p.lr, p.weightDecay,
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
    track(run);
    await runSteps(model, rt, () => f, p, 'finetuneGates', onStep, sig);
    rt.check(rt.x.doze_finetune_finish(f, rt.err), 'finetuneGates');
    const g = rt.x.doze_finetune_take_gates(f);
    if (!g) throw new DozeError('STATE', 'finetuneGates: the run has no gates');
    return g;
  } finally {
    untrack(run);
    run.free();
  }
}

export function checkCalibrateOptions(options) {
  return checkOptions('calibrateGates', options, CALIBRATE_OPTIONS);
}
export function checkFinetuneOptions(options) {
  return checkOptions('finetuneGates', options, FINETUNE_OPTIONS);
}
