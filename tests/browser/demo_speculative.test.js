// The web demo's speculative toggle, in Debian's Chromium: on the shipped
// default model and gates, a greedy speculative run outlines the tokens the
// draft proposed and the whole model accepted, shows the live acceptance
// rate, and writes the same text as the dense run.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { root } from '../js/helpers.js';
import { startServer } from '../../web-demo/serve.js';
import { ARGS, CHROMIUM, playwright, skipReason } from './chromium.js';

const skip = skipReason;
let browser;
let server;
const errors = [];

before(async () => {
  if (skip) return;
  server = await startServer({ port: 0, modelsDir: join(root, 'models') });
  browser = await playwright.chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.close();
});

async function run(page, speculative) {
  await page.fill('#max-tokens', '60');
  await page.fill('#temperature', '0');
  await page.fill('#seed', '1');
  await page.setChecked('#ignore-eos', true);
  await page.selectOption('#speculative', speculative);
  await page.$eval('#gen-status', (s) => delete s.dataset.reason);
  await page.click('[data-testid=generate]');
  await page.waitForFunction(() => !!document.getElementById('gen-status').dataset.reason, null, { timeout: 60000 });
  return {
    reason: await page.$eval('#gen-status', (s) => s.dataset.reason),
    text: await page.$eval('#output', (o) => o.textContent),
    status: await page.textContent('#gen-status'),
    tokens: await page.$$eval('[data-testid=token]', (a) => a.map((t) => ({
      accepted: t.dataset.accepted, outlined: t.classList.contains('accepted'),
      ring: getComputedStyle(t).boxShadow,
    }))),
    accept: await page.textContent('[data-testid=stat-accept]'),
  };
}

test('demo: the speculative toggle outlines accepted drafts and shows the acceptance rate; same text as dense', { skip, timeout: 120000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e}`));
  try {
    await page.goto(server.url);
    await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 30000 });
    await page.waitForFunction(() => !document.getElementById('generate').disabled, null, { timeout: 30000 });
    const dense = await run(page, 'off');
    assert.equal(dense.reason, 'length');
    assert.equal(dense.accept, '–');
    assert.ok(dense.tokens.every((t) => t.accepted === undefined && !t.outlined));

    const spec = await run(page, '4,0.5'); // fixed k and draft budget: greedy, so the same drafts every run
    assert.equal(spec.reason, 'length');
    assert.equal(spec.text, dense.text, 'the speculative text is the dense text');
    assert.equal(spec.tokens.length, 60);
    const accepted = spec.tokens.filter((t) => t.accepted === 'true');
    assert.ok(accepted.length > 5, `accepted tokens ${accepted.length}`);
    assert.ok(spec.tokens.some((t) => t.accepted === 'false'), 'the whole model chose some tokens itself');
    for (const t of spec.tokens) {
      assert.equal(t.outlined, t.accepted === 'true');
      if (t.outlined) assert.notEqual(t.ring, 'none');
    }
    const pct = /^(\d+)%$/.exec(spec.accept);
    assert.ok(pct && Number(pct[1]) > 0 && Number(pct[1]) <= 100, `acceptance shown: ${spec.accept}`);
    assert.match(spec.status, /Speculative: \d+ of \d+ drafted tokens accepted/);
    // adaptive: the same text again (how many drafts it makes depends on measured times)
    const adaptive = await run(page, 'adaptive');
    assert.equal(adaptive.text, dense.text);
    assert.match(adaptive.status, /Speculative: \d+ of \d+ drafted tokens accepted/);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});
