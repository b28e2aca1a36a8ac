// Speculative generation (generate's `speculative` option): the session's
// gates at a low budget draft k tokens, one batched dense forward verifies
// them, and the cache is rolled back past what the whole model refused
// (doze_speculative_step in src/runtime/speculate.c). The output is the
// dense model's: greedy, the same tokens and logits; sampled, the dense
// distribution; with the penalties too (each drafted and emitted token's
// distribution sees the tokens before it).

import { DozeError, abortError } from './errors.js';
import { now, yieldToEventLoop } from './runtime.js';
import { DENSE_BUDGET } from './budget.js';
import { bool, checkOptions, int, invalid, num } from './options.js';

const MAX_K = 8; // DOZE_SPEC_MAX_K
const DRAFTED = 1; // DOZE_SPEC_DRAFTED
const ACCEPTED = 2; // DOZE_SPEC_ACCEPTED
// what an adaptive run's first step assumes the gates need (a budget < 1)
const SOME_DRAFT_BUDGET = 0.5;

const SPECULATIVE_OPTIONS = {
  k: int(1, MAX_K),
  draftBudget: num(0, 1, { loOpen: true, hiOpen: true }),
  timed: bool,
};

/** generate's `speculative`: true / false, or { k, draftBudget, timed } (each fixed when given, else adaptive). */
export function speculativeOption(v, where) {
  if (v === false) return false;
  if (v === true) return {};
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) return checkOptions(where, v, SPECULATIVE_OPTIONS);
  throw invalid(`${where} must be true, false or an object { k, draftBudget, timed }, got ${typeof v}`);
}

/** All-on mask bytes: the whole model ran for the logits every emitted token was drawn from. */
function denseMask(info) {
  return {
    layers: new Uint8Array(info.layers).fill(1),
    heads: new Uint8Array(info.layers * info.heads).fill(1),
    ffn: new Uint8Array(info.layers * info.ffnBlocks).fill(1),
  };
}

/**
 * The speculative loop of generateTokens (generate.js): the prompt but its
 * last token as dense prefill, then speculative steps, each emitting 1..k+1
 * tokens, streamed one item each. `ctx` holds generate's prompt ids, sampler,
 * piece decoder, stops, signal, prefill and `own` (registers a free for an
 * abandoned generator). Returns the GenerateResult.
 */
export async function* speculativeTokens(core, o, ctx) {
  const { feed, sampler, penalties, piece, stopText, stopIds, sig, promptT0 } = ctx;
  const spec = o.speculative;
  const model = core.model;
  const rt = model._rt;
  const info = model.info;
  const { maxTokens = Infinity, ignoreEos = false } = o;

  // The draft needs gates: calibrated as a budget < 1 would (unless set to null).
  if (model._needsGates(spec.draftBudget ?? SOME_DRAFT_BUDGET)) {
    await model._autoCalibrate();
    core.alive();
  }
  if (!model.gates) {
    throw new DozeError('STATE', 'generate: speculative drafts with the gates, and the model has none (model.gates is null)');
  }
  core.apply(DENSE_BUDGET);
  await ctx.prefill(core, feed.slice(0, -1), sig);
  core.pending = -1;

  const sp = rt.x.doze_wasm_speculator_new(core.alive(), spec.k ?? 0, spec.draftBudget ?? 0, spec.timed === false ? 0 : 1, rt.err);
  if (!sp) throw rt.error('generate');
  // tokens (9 int32), flags (9 bytes), then out (8 doubles, 8-aligned)
  const buf = rt.doze.malloc(48 + 64);
  let freed = false;
  const free = () => {
    if (freed) return;
    freed = true;
    rt.x.doze_speculator_free(sp);
    rt.doze.free(buf);
  };
  ctx.own(free);

  const promptMs = now() - promptT0;
  let token = feed[feed.length - 1];
  let count = 0;
  let emitted = '';
  let reason = 'length';
  let endToken = false; // ended by a token not output (EOS, BOS, a stop id)
  let keep = -1; // the position of the last token handed out: the session keeps what precedes it
  const totals = { steps: 0, drafted: 0, accepted: 0, draftMs: 0, verifyMs: 0 };
  try {
    outer: while (count < maxTokens) {
      const P = core.position; // where `token` goes
      const t0 = now();
      rt.check(rt.x.doze_wasm_speculative_step(sp, sampler, token, buf, buf + 36, buf + 48, rt.err), 'generate');
      const ms = now() - t0;
      const out = Array.from(new Float64Array(rt.x.memory.buffer, buf + 48, 8));
      const n = out[0];
      const ids = Array.from(new Int32Array(rt.x.memory.buffer, buf, n));
      const flags = Array.from(new Uint8Array(rt.x.memory.buffer, buf + 36, n));
      core.ran(token, ...ids.slice(0, n - 1)); // the session holds token and the accepted drafts
      core.stepMs = ms;
      core.stepBudget = DENSE_BUDGET;
      const hook = model._testSpecLogits; // tests: the dense logits each emitted token was drawn from
      if (hook) {
        for (let j = 0; j < n; j++) {
          const p = rt.x.doze_speculator_logits(sp, j);
          hook(j, new Float32Array(rt.x.memory.buffer, p, info.vocabSize).slice());
        }
      }
      const step = {
        k: out[1],
        accepted: out[2],
        draftBudget: out[3],
        draftCompute: out[4],
        acceptance: out[5],
        draftMs: out[6],
        verifyMs: out[7],
        ms,
      };
      totals.steps++;
      totals.drafted += step.k;
      totals.accepted += step.accepted;
      totals.draftMs += step.draftMs;
      totals.verifyMs += step.verifyMs;
      for (let j = 0; j < n; j++) {
        const next = ids[j];
        const position = P + 1 + j; // where `next` would go
        // the penalties' history, as after a plain step's sample (the step
        // itself leaves it as it found it)
        if (penalties) rt.check(rt.x.doze_wasm_sampler_accept(sampler, next, rt.err), 'generate');
        core.pending = next;
        keep = position;
        if (stopIds.has(next) || (!ignoreEos && (next === info.bosId || rt.x.doze_token_is_eog(model._alive(), next)))) {
          reason = stopIds.has(next) ? 'stop' : 'eos';
          endToken = true;
          break outer;
        }
        count++;
        const prev = j === 0 ? token : ids[j - 1];
        const last = count >= maxTokens || position >= info.contextLength;
        let { text, stopped } = stopText.push(piece.text(prev, next), last);
        if (last && !stopped) text += piece.flush();
        emitted += text;
        yield {
          id: next,
          text,
          position,
          mask: denseMask(info),
          compute: 1,
          budget: DENSE_BUDGET,
          ms: ms / n,
          drafted: (flags[j] & DRAFTED) !== 0,
          accepted: (flags[j] & ACCEPTED) !== 0,
          speculation: { ...step },
        };
        if (stopped) {
          reason = 'stop';
          break outer;
        }
        if (position >= info.contextLength) {
          reason = 'context';
          break outer;
        }
        if (count >= maxTokens) break outer;
      }
      token = ids[n - 1];
      await yieldToEventLoop();
      core.alive();
      if (sig && sig.aborted) throw abortError('generation', sig);
    }
    if (endToken) {
      // as generate.js: what was held back is the text's
      const tail = stopText.held + piece.flush();
      if (tail) {
        emitted += tail;
        yield {
          id: -1, text: tail, position: -1, mask: denseMask(info), compute: 1, budget: DENSE_BUDGET, ms: 0,
          drafted: false, accepted: false, speculation: null,
        };
      }
    }
    const speculation = { ...totals, acceptance: totals.drafted ? totals.accepted / totals.drafted : 0 };
    return { reason, tokens: count, text: emitted, promptTokens: feed.length, promptMs, speculation };
  } finally {
    // The session keeps what precedes the last token handed out (that one
    // is pending, as after a normal generation), not the drafts past it.
    if (core.ptr && !model.disposed && keep >= 0 && core.position > keep) core.truncate(keep);
    free();
  }
}
