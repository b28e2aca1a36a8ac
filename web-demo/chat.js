// The demo's chat mode: when the loaded model's GGUF has a chat template
// (tokenizer.chat_template), a "Chat" panel appears under Generate. Each
// message streams the reply through model.chat: the template renders in the
// page (doze-lm/chat, i.e. @huggingface/jinja), the model runs in the worker
// and keeps the last conversation's KV cache, so a turn runs only its new
// tokens; replies stop at EOS and the template's end-of-turn text, and the
// budget slider applies as it does to Generate.
//
// The page's app.js announces each loaded model with a 'doze-model' event
// ({ model, source, name }).

import { endOfTurnStrings } from 'doze-lm/chat';

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
export async function mountChat({ model }) {
  document.getElementById('chat-section')?.remove();
  if (!model) return null;
  let template;
  try {
    template = await model.metadata('tokenizer.chat_template');
  } catch {
    return null; // the model went away meanwhile
  }
  if (!template) return null;
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
  const stops = endOfTurnStrings(template);
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
    streaming = ac;
    $('chat-send').disabled = true;
    $('chat-stop').disabled = false;
    let reply = '';
    let failed = false;
    try {
      // model.chat renders the file's template here in the page and keeps the
      // last conversation's KV cache in the worker: a turn runs only its new tokens
      const seed = field('seed', undefined);
      const it = model.chat(messages, {
        maxTokens: field('max-tokens', 120),
        temperature: field('temperature', 0.8),
        topK: field('top-k', 0),
        topP: field('top-p', 1),
        ...(seed === undefined ? {} : { seed }),
        signal: ac.signal,
      });
      let r;
      while (!(r = await it.next()).done) {
        reply += r.value.text;
        out.textContent = reply;
      }
      const cut = { length: 'the reply reached Max tokens', context: 'the conversation filled the context' }[r.value.reason];
      out.dataset.reason = r.value.reason;
      out.dataset.promptTokens = String(r.value.promptTokens);
      if (cut) out.textContent = `${reply}${reply ? '\n' : ''}[${cut}]`;
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

// the reply streaming in the panel: a new model loading (app.js's
// stopEverything) ends it with the rest
let streaming = null;
window.addEventListener('doze-stop', () => streaming?.abort());

window.addEventListener('doze-model', (e) => {
  mountChat(e.detail || {}).catch(() => {});
});
