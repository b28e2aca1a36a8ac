// The demo's chat mode: when the loaded model's GGUF has a chat template
// (tokenizer.chat_template), a "Chat" panel appears under Generate. Each
// message renders the conversation with the template (doze-lm/chat, i.e.
// @huggingface/jinja) and streams the reply through model.generate in the
// worker, stopping at EOS and the template's end-of-turn text; the budget
// slider applies as it does to Generate.
//
// The page's app.js announces each loaded model with a 'doze-model' event
// ({ model, source, name }); the template and the BOS/EOS texts are read
// here from the start of the file itself (the worker's model exposes no
// metadata), streaming only as far as the metadata goes.

import { renderChat, endOfTurnStrings } from 'doze-lm/chat';

// ---- the GGUF metadata a chat needs -----------------------------------------

const SCALAR = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
const MAX_TOKENS_KEPT = 1 << 19; // vocabularies larger than this give no BOS/EOS texts

/** The model's copy in doze-lm's browser cache (the `cache` option keeps it under this documented name), or null. */
async function cachedCopy(url) {
  try {
    if (typeof caches === 'undefined') return null;
    const c = await caches.open('doze-lm-models');
    return (await c.match(new URL(url, location.href).href)) || null;
  } catch {
    return null;
  }
}

/** A byte source read in order: pull(n) resolves to n more bytes (fewer at the end). */
function byteReader(source) {
  let reader;
  if (typeof Blob !== 'undefined' && source instanceof Blob) reader = source.stream().getReader();
  let buf = new Uint8Array(0);
  let pos = 0;
  let done = false;
  return {
    async need(n) {
      if (!reader) {
        const res = (await cachedCopy(source)) || (await fetch(source));
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        reader = res.body.getReader();
      }
      while (buf.length - pos < n && !done) {
        const r = await reader.read();
        if (r.done) done = true;
        else {
          const rest = buf.subarray(pos);
          const next = new Uint8Array(rest.length + r.value.length);
          next.set(rest);
          next.set(r.value, rest.length);
          buf = next;
          pos = 0;
        }
      }
      if (buf.length - pos < n) throw new Error('the file ended inside its metadata');
    },
    async take(n) {
      await this.need(n);
      const out = buf.subarray(pos, pos + n);
      pos += n;
      return out;
    },
    cancel() {
      if (reader) reader.cancel().catch(() => {});
    },
  };
}

/**
 * Reads a GGUF file's metadata up to the tensor table: the chat template,
 * BOS/EOS ids and (for vocabularies up to MAX_TOKENS_KEPT) the token texts.
 * @returns {Promise<{template: string|null, bosToken: string, eosToken: string}>}
 */
export async function readChatMetadata(source) {
  const r = byteReader(source);
  const dec = new TextDecoder();
  const u32 = async () => new DataView((await r.take(4)).slice().buffer).getUint32(0, true);
  const u64 = async () => Number(new DataView((await r.take(8)).slice().buffer).getBigUint64(0, true));
  const str = async () => dec.decode(await r.take(await u64()));
  const found = { template: null, bos: -1, eos: -1, tokens: null };
  const int = async (type) => {
    const b = (await r.take(SCALAR[type])).slice();
    const dv = new DataView(b.buffer);
    return [dv.getUint8(0), dv.getInt8(0), dv.getUint16(0, true), dv.getInt16(0, true), dv.getUint32(0, true),
      dv.getInt32(0, true)][type] ?? (type === 10 || type === 11 ? Number(dv.getBigUint64(0, true)) : -1);
  };
  const skip = async (type) => {
    if (type === 8) await r.take(await u64());
    else if (type === 9) {
      const et = await u32();
      const n = await u64();
      if (SCALAR[et]) await r.take(SCALAR[et] * n);
      else for (let i = 0; i < n; i++) await skip(et);
    } else if (SCALAR[type]) await r.take(SCALAR[type]);
    else throw new Error(`unknown metadata type ${type}`);
  };
  try {
    if (dec.decode(await r.take(4)) !== 'GGUF') throw new Error('not a GGUF file');
    await u32(); // version
    await u64(); // tensors
    const nKv = await u64();
    for (let i = 0; i < nKv; i++) {
      const key = await str();
      const type = await u32();
      if (key === 'tokenizer.chat_template' && type === 8) found.template = await str();
      else if (key === 'tokenizer.ggml.bos_token_id' && SCALAR[type]) found.bos = await int(type);
      else if (key === 'tokenizer.ggml.eos_token_id' && SCALAR[type]) found.eos = await int(type);
      else if (key === 'tokenizer.ggml.tokens' && type === 9) {
        const et = await u32();
        const n = await u64();
        if (et === 8 && n <= MAX_TOKENS_KEPT) {
          found.tokens = new Array(n);
          for (let k = 0; k < n; k++) found.tokens[k] = await str();
        } else for (let k = 0; k < n; k++) await skip(et);
      } else await skip(type);
    }
  } finally {
    r.cancel();
  }
  const text = (id) => (found.tokens && id >= 0 && id < found.tokens.length ? found.tokens[id] : '');
  return { template: found.template, bosToken: text(found.bos), eosToken: text(found.eos) };
}

// ---- the panel ---------------------------------------------------------------

const PANEL_HTML = `
  <h2 id="chat-h">Chat</h2>
  <p class="help" id="chat-help"></p>
  <ol id="chat-log" class="chat-log" aria-live="polite"></ol>
  <form id="chat-form" class="row">
    <label for="chat-input" class="visually-hidden">Message</label>
    <textarea id="chat-input" rows="2" placeholder="Say something"></textarea>
    <button type="submit" id="chat-send" class="primary">Send</button>
    <button type="button" id="chat-stop" disabled>Stop</button>
    <button type="button" id="chat-clear">Clear</button>
  </form>`;

const STYLE = `
  .chat-log { list-style: none; padding: 0; margin: 0.5em 0; display: flex; flex-direction: column; gap: 0.4em; }
  .chat-log li { white-space: pre-wrap; overflow-wrap: anywhere; padding: 0.4em 0.6em; border-radius: 0.5em; max-width: 85%; }
  .chat-log .chat-user { align-self: flex-end; background: rgba(80, 120, 220, 0.15); }
  .chat-log .chat-assistant { align-self: flex-start; background: rgba(128, 128, 128, 0.15); }
  .chat-log .error { outline: 1px solid #c33; }
  #chat-form textarea { flex: 1 1 16em; min-width: 0; }`;

function field(id, fallback) {
  const v = Number(document.getElementById(id)?.value);
  return Number.isFinite(v) && document.getElementById(id)?.value !== '' ? v : fallback;
}

/** Shows the chat panel for `model` when its file has a chat template; removes it otherwise. */
export async function mountChat({ model, source }) {
  document.getElementById('chat-section')?.remove();
  if (!model || !source) return null;
  let meta;
  try {
    meta = await readChatMetadata(source);
  } catch {
    return null; // no chat mode for a file whose metadata cannot be read again
  }
  if (!meta.template) return null;
  if (!document.getElementById('chat-style')) {
    const style = document.createElement('style');
    style.id = 'chat-style';
    style.textContent = STYLE;
    document.head.append(style);
  }
  const section = document.createElement('section');
  section.className = 'panel wide';
  section.id = 'chat-section';
  section.setAttribute('aria-labelledby', 'chat-h');
  section.innerHTML = PANEL_HTML;
  const anchor = document.getElementById('generate-section');
  if (anchor) anchor.after(section);
  else document.querySelector('main')?.append(section);
  const $ = (id) => section.querySelector(`#${id}`);
  const stops = endOfTurnStrings(meta.template);
  $('chat-help').textContent =
    `This model has a chat template; turns end at ${stops.length ? stops.join(' ') : 'EOS'}. ` +
    'The sampling fields and the budget of Generate apply.';
  const messages = [];
  let ac = null;

  const bubble = (role, text) => {
    const li = document.createElement('li');
    li.className = `chat-${role}`;
    li.dataset.role = role;
    li.textContent = text;
    $('chat-log').append(li);
    return li;
  };

  $('chat-clear').addEventListener('click', () => {
    if (ac) return;
    messages.length = 0;
    $('chat-log').replaceChildren();
  });
  $('chat-stop').addEventListener('click', () => ac?.abort());
  $('chat-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = $('chat-input').value.trim();
    if (!text || ac) return;
    $('chat-input').value = '';
    messages.push({ role: 'user', content: text });
    const asked = bubble('user', text);
    const out = bubble('assistant', '');
    out.setAttribute('aria-busy', 'true');
    ac = new AbortController();
    $('chat-send').disabled = true;
    $('chat-stop').disabled = false;
    let reply = '';
    let failed = false;
    try {
      let prompt = renderChat(meta.template, messages, {
        addGenerationPrompt: true, bosToken: meta.bosToken, eosToken: meta.eosToken,
      });
      // where the tokenizer adds BOS itself, not twice (SmolLM2's adds none: its
      // BOS text <|im_start|> stays)
      const addsBos = (await model.tokenize('', { bos: true })).length > 0;
      if (addsBos && meta.bosToken && prompt.startsWith(meta.bosToken)) prompt = prompt.slice(meta.bosToken.length);
      const seed = field('seed', undefined);
      const it = model.generate(prompt, {
        maxTokens: field('max-tokens', 120),
        temperature: field('temperature', 0.8),
        topK: field('top-k', 0),
        topP: field('top-p', 1),
        ...(seed === undefined ? {} : { seed }),
        stop: stops,
        parseSpecial: true,
        signal: ac.signal,
      });
      for await (const t of it) {
        reply += t.text;
        out.textContent = reply;
      }
    } catch (err) {
      if (err?.name !== 'AbortError') {
        // A turn that failed (the conversation outgrew the context, the
        // template raised) leaves the conversation: kept, it failed every
        // later message the same way until Clear.
        failed = true;
        asked.classList.add('error');
        out.classList.add('error');
        const why = err?.code === 'CONTEXT_FULL'
          ? `the conversation no longer fits the model's context (${model.info?.contextLength ?? '?'} positions); `
            + 'this message was left out: send a shorter one, or Clear to start over'
          : `${err?.message ?? err}; this message was left out of the conversation`;
        out.textContent = `${reply}${reply ? '\n' : ''}[${why}]`;
      }
    } finally {
      if (failed) messages.pop();
      else messages.push({ role: 'assistant', content: reply });
      out.removeAttribute('aria-busy');
      ac = null;
      $('chat-send').disabled = false;
      $('chat-stop').disabled = true;
      section.dataset.turns = String(messages.filter((m) => m.role === 'assistant').length);
    }
  });
  section.dataset.turns = '0';
  return section;
}

window.addEventListener('doze-model', (e) => {
  mountChat(e.detail || {}).catch(() => {});
});
