// Chat: a conversation rendered with the model's own chat template
// (tokenizer.chat_template, a Jinja template) by @huggingface/jinja, then
// generated like Model#generate until the end of the assistant's turn.
//
// Kept out of index.js's static imports: the bare '@huggingface/jinja'
// specifier needs a bundler or an import map in a browser, so the Model
// loads this module on first use of chat() and pages that never chat never
// need it.

import { Template } from '@huggingface/jinja';
import { DozeError } from './errors.js';
import { bool, string } from './options.js';

/**
 * The texts that end an assistant turn in the common template families.
 * A template that writes one of them is stopped there; the vocabulary's
 * end-of-generation tokens (EOS/EOT) stop generation as well.
 */
export const END_OF_TURN = Object.freeze(['<|im_end|>', '<|eot_id|>', '<end_of_turn>', '<|end|>', '<|eom_id|>']);

// The prompt holds the template's control tokens (<|im_start|>, <|eot_id|>,
// ...): it must be tokenized with control tokens matched as single tokens.
// This is the one place that asks for it, as the option the tokenizer and
// generate take (a vocabulary without those tokens reads them as text). The
// messages' contents are `literal` ranges (promptOf): a user who types
// <|im_start|> gets text, not a turn of their own.
const PARSE_SPECIAL = Object.freeze({ parseSpecial: true });

/**
 * Where each message's content sits in the rendered prompt, in order: the
 * content as it is, else trimmed (Llama 3's and Gemma's templates trim).
 * Contents a template rewrites otherwise are not found, and a content
 * holding no control-token text needs no range.
 */
function contentRanges(prompt, messages) {
  const ranges = [];
  let from = 0;
  for (const { content } of messages) {
    if (typeof content !== 'string' || content.length === 0) continue;
    for (const c of [content, content.trim()]) {
      const at = c.length ? prompt.indexOf(c, from) : -1;
      if (at >= 0) {
        ranges.push([at, at + c.length]);
        from = at + c.length;
        break;
      }
    }
  }
  return ranges;
}

const invalid = (msg) => new DozeError('INVALID_ARGUMENT', msg);

function checkMessages(call, messages) {
  if (!Array.isArray(messages)) throw invalid(`${call}: messages must be an array of { role, content }`);
  messages.forEach((m, i) => {
    if (m === null || typeof m !== 'object') throw invalid(`${call}: messages[${i}] is not an object`);
    if (typeof m.role !== 'string' || !m.role) throw invalid(`${call}: messages[${i}].role must be a non-empty string`);
    if (typeof m.content !== 'string') throw invalid(`${call}: messages[${i}].content must be a string`);
  });
}

/**
 * Renders a chat template as transformers' apply_chat_template and llama.cpp
 * do: the template sees `messages`, `add_generation_prompt`, `bos_token`,
 * `eos_token` and any extra variables given (e.g. `enable_thinking: false`
 * for Qwen3).
 * @param {string} template a Jinja chat template (tokenizer.chat_template)
 * @param {Array<{role: string, content: string}>} messages
 * @param {{addGenerationPrompt?: boolean, bosToken?: string, eosToken?: string, [extra: string]: unknown}} [options]
 * @returns {string}
 */
export function renderChat(template, messages, options = {}) {
  if (typeof template !== 'string' || !template) throw invalid('renderChat: the template must be a non-empty string');
  checkMessages('renderChat', messages);
  const { addGenerationPrompt = false, bosToken = '', eosToken = '', ...extra } = options ?? {};
  let compiled;
  try {
    compiled = new Template(template);
  } catch (e) {
    throw new DozeError('BAD_FORMAT', `renderChat: the template does not parse: ${e.message}`, { cause: e });
  }
  try {
    return compiled.render({
      ...extra,
      messages,
      add_generation_prompt: !!addGenerationPrompt,
      bos_token: String(bosToken),
      eos_token: String(eosToken),
    });
  } catch (e) {
    throw new DozeError('BAD_FORMAT', `renderChat: the template failed: ${e.message}`, { cause: e });
  }
}

/** The END_OF_TURN texts a template writes. */
export function endOfTurnStrings(template) {
  return END_OF_TURN.filter((s) => template.includes(s));
}

/**
 * What a chat prompt needs of the model, as steps that yield each of the
 * model's answers: the model itself answers at once (runSync), doze-lm/
 * worker's proxy with promises (runAsync); one reading for both.
 */
function* promptFacts(q, template) {
  const tmpl = template ?? (yield q.metadata('tokenizer.chat_template'));
  if (typeof tmpl !== 'string' || !tmpl) {
    throw new DozeError('MISSING', 'chat: the model has no chat template (tokenizer.chat_template); pass { template }');
  }
  const { bosId, eosId } = q.info;
  const bosToken = bosId >= 0 ? ((yield q.tokenText(bosId)) ?? '') : '';
  const eosToken = eosId >= 0 ? ((yield q.tokenText(eosId)) ?? '') : '';
  // where the tokenizer adds BOS itself, a leading BOS text would double it
  const addsBos = (yield q.tokenize('', { bos: true })).length > 0;
  const eot = endOfTurnStrings(tmpl);
  const eotIds = [];
  for (const s of eot) {
    // the id of a text that the vocabulary has as one control token
    const ids = yield q.tokenize(s, { bos: false, ...PARSE_SPECIAL });
    if (ids.length === 1) eotIds.push(ids[0]);
  }
  return { tmpl, bosToken, eosToken, addsBos, eot, eotIds };
}

function runSync(steps) {
  let r = steps.next();
  while (!r.done) r = steps.next(r.value);
  return r.value;
}

async function runAsync(steps) {
  let r = steps.next();
  while (!r.done) r = steps.next(await r.value);
  return r.value;
}

function promptOf(f, messages, { addGenerationPrompt = true, templateContext = {} }) {
  const { tmpl, bosToken, eosToken } = f;
  let prompt = renderChat(tmpl, messages, { ...templateContext, addGenerationPrompt, bosToken, eosToken });
  if (f.addsBos && bosToken && prompt.startsWith(bosToken)) prompt = prompt.slice(bosToken.length);
  return { prompt, template: tmpl, stop: [...f.eot, ...f.eotIds], literal: contentRanges(prompt, messages) };
}

/**
 * The prompt model.chat() feeds for `messages`: the model's template
 * rendered with add_generation_prompt, without a leading BOS text where the
 * tokenizer adds BOS itself (so it is not doubled), as llama.cpp does; a
 * vocabulary that adds none (SmolLM2, whose BOS is `<|im_start|>`) keeps it.
 * `literal`: the messages' contents in the prompt, to tokenize with control
 * tokens matched only outside them (tokenize's / generate's `literal`).
 * @returns {{prompt: string, template: string, stop: Array<string|number>, literal: Array<[number, number]>}}
 */
export function chatPrompt(model, messages, options = {}) {
  checkMessages('chat', messages);
  return promptOf(runSync(promptFacts(model, options.template)), messages, options);
}

/** The same as chatPrompt for a model whose methods return promises (doze-lm/worker). */
export async function chatPromptAsync(model, messages, options = {}) {
  checkMessages('chat', messages);
  return promptOf(await runAsync(promptFacts(model, options.template)), messages, options);
}

/**
 * Streams the assistant's reply to `messages`, like Model#generate (same
 * items, same result), as from an empty context (on the model's shared
 * session left as the last chat left it: Model#_chatRun). Stops at the vocabulary's
 * EOS, at the template family's end-of-turn text or token, at `stop`, or at
 * maxTokens. Options: those of generate, plus `template` (instead of the
 * model's tokenizer.chat_template), `addGenerationPrompt` (default true) and
 * `templateContext` (extra template variables, e.g. { enable_thinking: false }).
 * @param {import('../index.js').Model} model  or doze-lm/worker's model
 * @param {Array<{role: string, content: string}>} messages
 * @param {object} [options]
 */
export async function* chat(model, messages, options = {}) {
  if (options != null && (typeof options !== 'object' || Array.isArray(options))) throw invalid('chat: options must be an object');
  const { template, addGenerationPrompt, templateContext, stop, ...generateOptions } = options ?? {};
  // the chat's own options; generate checks the rest
  if (template != null) string(template, 'chat: template');
  if (addGenerationPrompt != null) bool(addGenerationPrompt, 'chat: addGenerationPrompt');
  if (templateContext != null && (typeof templateContext !== 'object' || Array.isArray(templateContext))) {
    throw invalid('chat: templateContext must be an object of template variables');
  }
  // rendered where this module runs: for doze-lm/worker's proxy that is the
  // page, whose import map resolves @huggingface/jinja (a worker has none)
  // a reply to no message at all is a caller's slip: the template renders
  // little or nothing, and the model ran on from it to maxTokens (by
  // default to the end of the context)
  if (Array.isArray(messages) && messages.length === 0) throw invalid('chat: messages is empty (give at least one { role, content })');
  const p = await chatPromptAsync(model, messages, { template, addGenerationPrompt, templateContext });
  const extra = stop == null ? [] : Array.isArray(stop) ? stop : [stop];
  const o = { ...generateOptions, ...PARSE_SPECIAL, literal: p.literal, stop: [...p.stop, ...extra] };
  // the model's shared session keeps its KV cache from the last chat; a
  // worker's proxy generates afresh
  if (typeof model._chatRun === 'function') return yield* model._chatRun(p.prompt, o);
  return yield* model.generate(p.prompt, o);
}
