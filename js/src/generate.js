// The generation loop of a session: the prompt (batched prefill unless each
// prompt step is observed, then token by token), then sample, emit,
// step until EOS, a stop, maxTokens, the end of the context or an abort.

import { DozeError, abortError } from './errors.js';
import { now, yieldToEventLoop } from './runtime.js';
import { PieceDecoder, StopText } from './text.js';
import { speculativeOption, speculativeTokens } from './speculate.js';
import { bool, checkOptions, func, int, invalid, isInt32, literalRanges, num, oneOf, seed, seedHalves, signal } from './options.js';

const PREFILL_PASS = 64; // prompt tokens per doze_session_prefill call (abort checked between)

const stopValue = (v, where) => {
  const ok = (x) => typeof x === 'string' || (isInt32(x) && x >= 0);
  if (!(ok(v) || (Array.isArray(v) && v.every(ok)))) {
    throw invalid(`${where} must be a string, a token id, or an array of them`);
  }
  return v;
};

export const GENERATE_OPTIONS = {
  maxTokens: int(0, Infinity, { infinite: true }),
  temperature: num(0),
  topK: int(0),
  topP: num(0, 1),
  minP: num(0, 1),
  repeatPenalty: num(0, Infinity, { loOpen: true }),
  repeatLastN: int(-1),
  frequencyPenalty: num(),
  presencePenalty: num(),
  seed,
  stop: stopValue,
  signal,
  bos: bool,
  parseSpecial: bool,
  literal: literalRanges,
  ignoreEos: bool,
  onPromptStep: func,
  truncate: oneOf('start'),
  keepLast: int(1),
  speculative: speculativeOption,
};
const COMPLETE_OPTIONS = { ...GENERATE_OPTIONS, onToken: func };

/** Checked options of generate() / complete() (`withOnToken`: complete's). */
export function checkGenerateOptions(call, prompt, options, withOnToken = false) {
  if (typeof prompt !== 'string' && prompt != null) throw invalid(`${call}: the prompt must be a string`);
  const o = checkOptions(call, options, withOnToken ? COMPLETE_OPTIONS : GENERATE_OPTIONS);
  if (o.truncate != null && o.keepLast != null) throw invalid(`${call}: give truncate or keepLast, not both`);
  if (o.speculative && o.onPromptStep) {
    throw invalid(`${call}: onPromptStep is not available with speculative (the prompt runs densely in batches)`);
  }
  return o;
}

/**
 * The prompt ids to feed, after the context check (`call` names the method
 * in its message): a prompt that does not
 * fit the free positions is an error naming both numbers, unless `keepLast`
 * (keep its last N tokens) or `truncate: 'start'` (drop its start so that it
 * fits with room for min(maxTokens, half the free positions) tokens) says
 * what to drop. A BOS in front stays in front.
 */
export function fitPrompt(feed, free, context, hasBos, o, call = 'generate') {
  let keep = feed.length;
  if (o.keepLast != null) keep = Math.min(keep, o.keepLast);
  else if (o.truncate === 'start' && feed.length > free) {
    const room = Math.min(o.maxTokens ?? Infinity, Math.floor(free / 2));
    keep = Math.max(1, free - room);
  }
  if (keep < feed.length) {
    const head = hasBos && keep > 1 ? [feed[0]] : [];
    feed = [...head, ...feed.slice(feed.length - (keep - head.length))];
  }
  if (feed.length > free) {
    const used = hasBos ? ' (BOS included)' : '';
    throw new DozeError('CONTEXT_FULL',
      `${call}: the prompt is ${feed.length} tokens${used} but the context has ${free} of ${context} positions free` +
      " (use truncate: 'start' or keepLast to keep the prompt's end)");
  }
  return feed;
}

/**
 * Runs `ids` through the session as batched prefill passes under its
 * current budget and gates, PREFILL_PASS tokens per call, checking for abort
 * between passes.
 */
export async function prefill(core, ids, sig) {
  const rt = core.rt;
  const n = ids.length;
  if (n === 0) return;
  const buf = rt.doze.malloc(Math.min(n, PREFILL_PASS) * 4);
  try {
    for (let i = 0; i < n; i += PREFILL_PASS) {
      const k = Math.min(PREFILL_PASS, n - i);
      const part = ids.slice(i, i + k);
      new Int32Array(rt.x.memory.buffer, buf, k).set(part);
      rt.check(rt.x.doze_session_prefill(core.alive(), buf, k, rt.err), 'prefill');
      core.ran(...part);
      if (i + k < n) {
        await yieldToEventLoop();
        core.alive();
        if (sig && sig.aborted) throw abortError('generation', sig);
      }
    }
  } finally {
    rt.doze.free(buf);
  }
}

/**
 * Streams one item per generated token from `core` (a SessionCore);
 * returns the GenerateResult. `o` holds checked options.
 */
export async function* generateTokens(core, prompt, o) {
  const {
    maxTokens = Infinity,
    temperature = 1,
    topK = 0,
    topP = 1,
    minP = 0,
    repeatPenalty = 1,
    repeatLastN = 64,
    frequencyPenalty = 0,
    presencePenalty = 0,
    stop = [],
    signal: sig,
    bos,
    parseSpecial = false,
    literal,
    ignoreEos = false,
    onPromptStep,
  } = o;
  const model = core.model;
  const rt = model._rt;
  const info = model.info;
  if (sig && sig.aborted) throw abortError('generation', sig);
  core.lock();
  let sampler = 0;
  let piece = null;
  const owned = []; // frees of what the speculative loop allocates
  // An abandoned generator never reaches its finally: the session's
  // dispose() frees through this instead.
  const release = () => {
    if (sampler) rt.x.doze_sampler_free(sampler);
    sampler = 0;
    if (piece) piece.free();
    piece = null;
    while (owned.length) owned.pop()();
    core.inflight.delete(release);
  };
  core.inflight.add(release);
  try {
    const stops = (Array.isArray(stop) ? stop : [stop]).filter((s) => s != null);
    const stopText = new StopText(stops.filter((s) => typeof s === 'string' && s.length > 0));
    const stopIds = new Set(stops.filter((s) => typeof s === 'number'));
    const position0 = core.position;
    const empty = position0 === 0 && core.pending < 0;
    const withBos = bos ?? empty;
    // o.promptIds: the prompt already as ids (model.chat's run over a kept cache)
    const promptIds = o.promptIds ?? model.tokenize(prompt ?? '', { bos: withBos, parseSpecial, literal });
    let feed = core.pending >= 0 ? [core.pending, ...promptIds] : [...promptIds];
    if (feed.length === 0) {
      throw invalid(`generate: the prompt is empty and ${info.bosId < 0 ? 'the model has no BOS token' : 'this vocabulary adds no BOS token'}: there is nothing to continue from`);
    }
    const hasBos = withBos && core.pending < 0 && info.bosId >= 0 && feed[0] === info.bosId;
    feed = fitPrompt(feed, info.contextLength - position0, info.contextLength, hasBos, o);
    const [lo, hi] = seedHalves(o.seed);
    const lastN = repeatLastN === -1 ? info.contextLength : repeatLastN;
    sampler = rt.x.doze_wasm_sampler_new_full(temperature, topK, topP, minP, repeatPenalty, lastN,
      frequencyPenalty, presencePenalty, lo >>> 0, hi >>> 0, info.vocabSize, rt.err);
    if (!sampler) throw rt.error('generate');
    // The penalties look back over the context (the session's earlier
    // tokens, then this prompt), as llama.cpp's sampler and the CLI do.
    const penalties = lastN > 0 && (repeatPenalty !== 1 || frequencyPenalty !== 0 || presencePenalty !== 0);
    if (penalties) {
      const context = [...core.tokens, ...feed];
      for (const id of context.slice(Math.max(0, context.length - lastN))) {
        rt.check(rt.x.doze_wasm_sampler_accept(sampler, id, rt.err), 'generate');
      }
    }
    piece = new PieceDecoder(rt, model._alive());

    const promptT0 = now();
    if (o.speculative) {
      const ctx = { feed, sampler, penalties, piece, stopText, stopIds, sig, promptT0, prefill, own: (f) => owned.push(f) };
      return yield* speculativeTokens(core, o, ctx);
    }
    // The prompt, unobserved (no onPromptStep): all but its last token in
    // batched prefill passes (prefill()). Dense, these are matrix-matrix
    // products with the same KV cache bits as token by token; under a budget
    // the gates decide per token inside each batch (a dozing layer or head is
    // left out of the batch's products) and the budget's feedback runs token
    // by token.
    let first = 0;
    if (!onPromptStep && feed.length > 1) {
      if (core.ready()) core.apply(core.state().current);
      else await core.prepare();
      await prefill(core, feed.slice(0, -1), sig);
      core.pending = -1;
      first = feed.length - 1;
    }
    // The rest of the prompt: one forward step per token.
    for (let i = first; i < feed.length; i++) {
      if (core.ready()) core.apply(core.state().current);
      else await core.prepare();
      core.step(feed[i]);
      core.pending = -1;
      if (onPromptStep) onPromptStep({ id: feed[i], position: core.position - 1, ...core.report(), ms: core.stepMs });
      if (i % 16 === 15 && i + 1 < feed.length) {
        await yieldToEventLoop();
        core.alive();
        if (sig && sig.aborted) throw abortError('generation', sig);
      }
    }

    const promptMs = now() - promptT0;
    let count = 0;
    let emitted = '';
    let reason = 'length';
    let endToken = false; // ended by a token not output (EOS, BOS, a stop id)
    const limit = maxTokens;
    while (count < limit) {
      const t0 = now();
      const next = rt.x.doze_sampler_sample(sampler, core.logits().byteOffset);
      if (penalties) rt.check(rt.x.doze_wasm_sampler_accept(sampler, next, rt.err), 'generate');
      const ms = core.stepMs + (now() - t0);
      core.pending = next;
      const position = core.position; // where `next` would go
      if (stopIds.has(next) || (!ignoreEos && (next === info.bosId || rt.x.doze_token_is_eog(model._alive(), next)))) {
        reason = stopIds.has(next) ? 'stop' : 'eos';
        endToken = true;
        break;
      }
      count++;
      const report = { ...core.report(), drafted: false, accepted: false, speculation: null };
      const auto = core.state().auto;
      if (auto) auto.observe(ms);
      const last = count >= limit || position >= info.contextLength;
      let { text, stopped } = stopText.push(piece.text(core.last, next), last);
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
      core.alive();
      if (sig && sig.aborted) throw abortError('generation', sig);
      if (core.ready()) core.apply(core.state().current);
      else await core.prepare();
      if (sig && sig.aborted) throw abortError('generation', sig);
      core.step(next);
      core.pending = -1;
    }
    if (endToken) {
      // Text held back (a possible start of a stop string, the start of a
      // character) is the text's: nothing more comes to complete it. A stop
      // string that matched instead ends the text where it starts.
      const tail = stopText.held + piece.flush();
      if (tail) {
        emitted += tail;
        // Text held back until the end: it comes with the step that ended
        // the generation (whose logits gave EOS or the stop id).
        yield { id: -1, text: tail, position: -1, ...core.report(), ms: 0, drafted: false, accepted: false, speculation: null };
      }
    }
    return { reason, tokens: count, text: emitted, promptTokens: feed.length, promptMs, speculation: null };
  } finally {
    release();
    core.busy = false;
  }
}
