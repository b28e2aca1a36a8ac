// The web demo's chat mode (web-demo/chat.js) in Debian's Chromium: a model
// whose GGUF has a chat template gets a Chat panel that answers two turns
// (rendered with the template in the page, generated in the worker); a
// model without one gets no panel; no console errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer } from '../../web-demo/serve.js';
import { ARGS, CHROMIUM, playwright, skipReason } from '../browser/chromium.js';
import { CHATML, withStringKey } from './chat_fixtures.js';
import { root, scratch } from './helpers.js';


let dir;
let server;
let browser;
const errors = [];

before(async () => {
  if (skipReason) return;
  dir = scratch();
  const models = join(dir, 'models');
  mkdirSync(models);
  const plain = readFileSync(join(root, 'models', 'doze-stories.gguf'));
  writeFileSync(join(models, 'chat.gguf'), withStringKey(plain, 'tokenizer.chat_template', CHATML));
  writeFileSync(join(models, 'plain.gguf'), plain);
  server = await startServer({ port: 0, modelsDir: models });
  browser = await playwright.chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function open(query) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e}`));
  await page.goto(new URL(query, server.url).href);
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 30000 });
  return page;
}

test('a model with a chat template gets a chat panel that answers two turns', { skip: skipReason }, async () => {
  const page = await open('?model=models/chat.gguf');
  await page.waitForSelector('#chat-section', { timeout: 15000 });
  assert.match(await page.textContent('#chat-help'), /<\|im_end\|>/);
  await page.fill('#max-tokens', '12');
  await page.fill('#temperature', '0');
  for (const [i, text] of ['Tell me a story about a bird.', 'What happened then?'].entries()) {
    await page.fill('#chat-input', text);
    await page.click('#chat-send');
    await page.waitForFunction((n) => document.getElementById('chat-section').dataset.turns === String(n), i + 1, { timeout: 30000 });
  }
  const log = await page.$$eval('#chat-log li', (lis) => lis.map((li) => ({ role: li.dataset.role, text: li.textContent, reason: li.dataset.reason, prompt: Number(li.dataset.promptTokens) })));
  assert.deepEqual(log.map((l) => l.role), ['user', 'assistant', 'user', 'assistant']);
  // each reply says how it ended: 12 tokens reach Max tokens unless EOS came first
  for (const a of [log[1], log[3]]) {
    assert.ok(a.reason === 'eos' || a.reason === 'stop' || (a.reason === 'length' && a.text.endsWith('[the reply reached Max tokens]')), JSON.stringify(a));
  }
  // the second turn runs on the worker's kept cache: fewer tokens than the
  // first turn's prompt and reply together (the rendering of both turns is more)
  assert.ok(log[3].prompt > 0 && log[3].prompt < log[1].prompt + 12, JSON.stringify(log));
  assert.equal(log[0].text, 'Tell me a story about a bird.');
  assert.ok(log[1].text.trim().length > 0 && log[3].text.trim().length > 0, JSON.stringify(log));
  assert.equal(await page.$$eval('#chat-log .error', (x) => x.length), 0);
  await (await page.$('#chat-section')).screenshot({ path: '/tmp/doze-demo-chat.png' });
  // Clear empties the conversation
  await page.click('#chat-clear');
  assert.equal(await page.$$eval('#chat-log li', (x) => x.length), 0);
  await page.close();
});

// A turn that fails (here: the conversation outgrows a 64-position context)
// shows why and leaves the conversation: it stayed in it, with an empty
// reply, and failed every later message the same way until Clear.
test('a chat turn past the context fails with a reason and the next message is answered', { skip: skipReason }, async () => {
  const page = await open('?model=models/chat.gguf');
  await page.waitForSelector('#chat-section', { timeout: 15000 });
  await page.evaluate(() => { document.getElementById('ctx-len').value = '64'; });
  await page.fill('#model-url', 'models/chat.gguf');
  await page.click('#load-url');
  await page.waitForFunction(() => /64 positions/.test(document.getElementById('model-info').textContent), null, { timeout: 30000 });
  await page.waitForSelector('#chat-section', { timeout: 15000 });
  await page.fill('#max-tokens', '8');
  await page.fill('#temperature', '0');
  const long = 'Tell me a long story about a little bird who flew over the hills and the rivers and the big green trees to find her friends.';
  await page.fill('#chat-input', long);
  await page.click('#chat-send');
  await page.waitForFunction(() => document.querySelectorAll('#chat-log li.error').length === 2 && !document.getElementById('chat-send').disabled, null, { timeout: 30000 });
  assert.match(await page.textContent('#chat-log li.chat-assistant'), /no longer fits the model's context \(64 positions\)/);
  await page.fill('#chat-input', 'Hi.');
  await page.click('#chat-send');
  await page.waitForFunction(() => document.getElementById('chat-section').dataset.turns === '1', null, { timeout: 30000 });
  const log = await page.$$eval('#chat-log li', (lis) => lis.map((li) => ({ role: li.dataset.role, error: li.classList.contains('error'), text: li.textContent })));
  assert.deepEqual(log.map((l) => [l.role, l.error]), [['user', true], ['assistant', true], ['user', false], ['assistant', false]]);
  assert.ok(log[3].text.trim().length > 0, JSON.stringify(log));
  await page.close();
});

test('a model without a chat template gets no chat panel', { skip: skipReason }, async () => {
  const page = await open('?model=models/plain.gguf');
  await page.waitForFunction(() => /^Ready/.test(document.getElementById('model-status').textContent), null, { timeout: 30000 });
  await page.waitForTimeout(500); // the metadata read that finds no template
  assert.equal(await page.$('#chat-section'), null);
  await page.close();
  assert.deepEqual(errors, []);
});
