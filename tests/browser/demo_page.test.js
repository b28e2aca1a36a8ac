// The web demo (web-demo/) in Debian's Chromium, driven by playwright-core:
// served by web-demo/serve.js, it loads the default model with progress,
// streams tokens with masks, changes the budget mid-generation, stops,
// fine-tunes the gates with a live chart and downloads a gate file; a
// phone-sized viewport must not scroll sideways; at 1280×800 Generate is in
// view and the slider says what each budget costs (measured, shipped beside
// the default gates); a failed load (404, truncated file) leaves the working
// model, its info and gates as they were; the next visit loads the model
// from the browser cache; no console errors anywhere.
// Screenshots: /tmp/doze-demo-desktop.png, /tmp/doze-demo-phone.png,
// /tmp/doze-demo-failed-load.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../js/src/index.js';
import { root, run, scratch } from '../js/helpers.js';
import { initModel, storiesModel } from '../js/package_fixtures.js';
import { startServer } from '../../web-demo/serve.js';
import { ARGS, CHROMIUM, playwright, skipReason } from './chromium.js';

// a missing build fails here (npm test builds first); only a knowingly absent browser skips
const skip = skipReason;
for (const f of [join(root, 'build', 'doze'), join(root, 'js', 'dist', 'doze.wasm')]) {
  if (!existsSync(f)) throw new Error(`${f} is missing: run npm run build (npm test builds first)`);
}

let dir;
let browser;
let withDefault; // server whose models/ holds doze-stories.gguf (+ gates)
let noDefault; // server with an empty models/
let shipped; // server on the repository's models/: the real default model, its gates and measured costs
let small; // { file, layers, heads }
let slow; // a bigger init model (slow enough to act on mid-generation) and its gates
const errors = [];

function sh(args) {
  const r = run('native', args);
  if (r.status !== 0) throw new Error(`doze ${args[0]} failed: ${r.stderr}`);
}

before(async () => {
  if (skip) return;
  dir = scratch();
  const models = join(dir, 'models');
  mkdirSync(models);
  mkdirSync(join(dir, 'empty'));
  const stories = storiesModel(dir) || initModel('f32', dir);
  const calib = join(dir, 'calib.txt');
  writeFileSync(calib, 'Once upon a time there was a little dog. He liked to run in the park with his friend.\n');
  copyFileSync(stories, join(models, 'doze-stories.gguf'));
  sh(['gates', join(models, 'doze-stories.gguf'), '--calib', calib, '-o', join(models, 'doze-stories.gates.gguf')]);
  const m = await loadModel(stories);
  small = { file: stories, layers: m.info.layers, heads: m.info.heads, ffnBlocks: m.info.ffnBlocks };
  m.dispose();
  // ~5 ms per dense token in wasm: a few hundred tokens give time to move the slider
  slow = { file: join(dir, 'slow.gguf'), gates: join(dir, 'slow.gates.gguf') };
  sh(['init', '--dim', '512', '--hidden', '1376', '--layers', '6', '--heads', '8', '--kv-heads', '8', '--vocab', '512',
    '--ctx', '512', '--seed', '3', '--type', 'f32', '-o', slow.file]);
  sh(['gates', slow.file, '--calib', calib, '-o', slow.gates]);
  withDefault = await startServer({ port: 0, modelsDir: models });
  noDefault = await startServer({ port: 0, modelsDir: join(dir, 'empty') });
  shipped = await startServer({ port: 0, modelsDir: join(root, 'models') });
  browser = await playwright.chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
});

after(async () => {
  if (browser) await browser.close();
  if (withDefault) await withDefault.close();
  if (noDefault) await noDefault.close();
  if (shipped) await shipped.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function open(url, viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1, acceptDownloads: true });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`${url} console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`${url} pageerror: ${e}`));
  await page.goto(url);
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 30000 });
  return { context, page };
}

/** Fills the sampling fields and clicks Generate; resolves when the run has ended. */
async function generate(page, { maxTokens, temperature = 0.8, seed = 7, ignoreEos = false, wait = true }) {
  await page.fill('#max-tokens', String(maxTokens));
  await page.fill('#temperature', String(temperature));
  await page.fill('#seed', String(seed));
  await page.setChecked('#ignore-eos', ignoreEos);
  await page.$eval('#gen-status', (s) => delete s.dataset.reason);
  await page.click('[data-testid=generate]');
  if (wait) await waitDone(page);
}

async function waitDone(page) {
  await page.waitForFunction(() => !!document.getElementById('gen-status').dataset.reason, null, { timeout: 30000 });
  return page.$eval('#gen-status', (s) => s.dataset.reason);
}

const tokenData = (page) =>
  page.$$eval('[data-testid=token]', (a) => a.map((t) => ({ compute: Number(t.dataset.compute), budget: Number(t.dataset.budget) })));

test('demo: default model with progress, streaming, masks, fine-tuning and download', { skip, timeout: 60000 }, async () => {
  const { context, page } = await open(withDefault.url);
  try {
    // loaded from models/ with the progress bar at 100%, default gates in use
    assert.equal(await page.$eval('[data-testid=progress]', (p) => p.value), 100);
    assert.match(await page.textContent('#progress-text'), /^100%/);
    assert.match(await page.textContent('#gates-status'), /doze-stories\.gates\.gguf/);

    // generate: the requested number of tokens, or fewer when EOS came
    await generate(page, { maxTokens: 24 });
    const reason = await page.$eval('#gen-status', (s) => s.dataset.reason);
    const n = await page.locator('[data-testid=token]').count();
    if (reason === 'length') assert.equal(n, 24);
    else assert.ok(reason === 'eos' && n <= 24 && n > 0, `reason ${reason}, ${n} tokens`);
    assert.equal(Number(await page.textContent('#stat-tokens')), n);

    // hover a token: a layers × heads grid
    await page.hover('[data-testid=token] >> nth=2');
    const grid = page.locator('[data-testid=mask-grid]');
    assert.equal(await grid.getAttribute('data-token'), '2');
    assert.equal(await grid.locator('td.cell.head').count(), small.layers * small.heads);
    assert.equal(await grid.locator('tbody tr').count(), small.layers);
    const blocks = Number(await grid.getAttribute('data-ffn-blocks'));
    assert.equal(blocks, small.ffnBlocks, 'the grid has the model\'s FFN blocks per layer');
    assert.equal(await grid.locator('.fcell.ffn').count(), small.layers * blocks);
    // click selects; the keyboard moves the selection
    await page.click('[data-testid=token] >> nth=1');
    await page.mouse.move(5, 5);
    assert.equal(await grid.getAttribute('data-token'), '1');
    await page.keyboard.press('ArrowRight');
    assert.equal(await grid.getAttribute('data-token'), '2');
    assert.equal(await page.evaluate(() => document.activeElement.dataset.i), '2');

    // fine-tune a few small steps: the chart follows, the gates can be downloaded
    assert.equal(await page.isEnabled('[data-testid=finetune]'), true, 'finetuneGates is available');
    await page.fill('#ft-steps', '3');
    await page.fill('#ft-ctx', '32');
    await page.fill('#ft-batch', '2');
    await page.fill('#ft-budget', '0.6');
    await page.click('[data-testid=finetune]');
    await page.waitForFunction(() => document.getElementById('ft-status').dataset.done === 'true', null, { timeout: 30000 });
    assert.equal(await page.$eval('[data-testid=finetune-chart]', (c) => c.dataset.steps), '3');
    assert.match(await page.textContent('#gates-status'), /trained/);
    assert.equal(await page.$eval('#budget-value', (o) => o.textContent), '0.60');
    assert.equal(await page.textContent('#stat-budget'), '0.60', '"budget now" follows the slider fine-tuning moved');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#ft-download')]);
    const saved = join(dir, download.suggestedFilename());
    await download.saveAs(saved);
    const bytes = readFileSync(saved);
    assert.equal(bytes.subarray(0, 4).toString('latin1'), 'GGUF');
    assert.match(download.suggestedFilename(), /\.gates\.gguf$/);
    // ... and loaded back through the gate file picker
    await page.setInputFiles('#gates-file', saved);
    await page.waitForFunction(() => /from .*\.gates\.gguf/.test(document.getElementById('gates-status').textContent));
    assert.match(await page.textContent('#gates-status'), /Active: trained gates/);

    // generation under the trained gates at b = 0.6 reports less compute
    await generate(page, { maxTokens: 16 });
    const toks = await tokenData(page);
    assert.ok(toks.length > 0);
    const mean = toks.reduce((a, t) => a + t.compute, 0) / toks.length;
    assert.ok(mean < 0.95, `mean compute ${mean}`);
    assert.ok(toks.every((t) => t.budget === 0.6));
    assert.equal(await page.textContent('#stat-budget'), '0.60');
    await page.screenshot({ path: '/tmp/doze-demo-desktop.png', fullPage: true });
  } finally {
    await context.close();
  }
});

test('demo: phone-sized viewport has no horizontal scrolling', { skip, timeout: 30000 }, async () => {
  const { context, page } = await open(withDefault.url, { width: 390, height: 844 });
  try {
    await generate(page, { maxTokens: 40 });
    await page.click('[data-testid=token] >> nth=3');
    assert.equal(await page.locator('[data-testid=mask-grid] td.cell.head').count(), small.layers * small.heads);
    const [sw, cw] = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
    assert.ok(sw <= cw, `page scrolls sideways: scrollWidth ${sw} > ${cw}`);
    // nothing sticks out of the viewport either
    const wide = await page.evaluate(() => [...document.querySelectorAll('main *')]
      .filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1 && e.getClientRects().length)
      .filter((e) => !e.closest('.mask-grid, .output, .visually-hidden'))
      .map((e) => e.id || e.className || e.tagName));
    assert.deepEqual(wide, []);
    await page.screenshot({ path: '/tmp/doze-demo-phone.png', fullPage: true });
  } finally {
    await context.close();
  }
});

test('demo: no default model -> file pickers; the budget slider acts mid-generation; stop', { skip, timeout: 60000 }, async () => {
  const { context, page } = await open(noDefault.url);
  try {
    assert.equal(await page.$eval('#model-status', (s) => s.dataset.fallback), 'true');
    assert.equal(await page.isDisabled('[data-testid=generate]'), true);
    await page.setInputFiles('#model-file', slow.file);
    await page.waitForFunction(() => /^Ready/.test(document.getElementById('model-status').textContent), null, { timeout: 30000 });
    assert.equal(await page.$eval('[data-testid=progress]', (p) => p.value), 100);
    await page.setInputFiles('#gates-file', slow.gates);
    await page.waitForFunction(() => /Active:/.test(document.getElementById('gates-status').textContent));

    // dense at first; after a few tokens the slider goes to 0.3
    await generate(page, { maxTokens: 300, temperature: 0, ignoreEos: true, wait: false });
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=token]').length >= 8, null, { timeout: 20000 });
    await page.$eval('[data-testid=budget]', (s) => {
      s.value = '0.3';
      s.dispatchEvent(new Event('input', { bubbles: true }));
    });
    const reason = await waitDone(page);
    assert.equal(reason, 'length');
    const toks = await tokenData(page);
    assert.equal(toks.length, 300);
    assert.equal(toks[0].budget, 1);
    assert.equal(toks[0].compute, 1);
    const k = toks.findIndex((t) => t.budget === 0.3);
    assert.ok(k >= 8 && k < 250, `the budget changed at token ${k}`);
    assert.ok(toks.slice(k).every((t) => t.budget === 0.3), 'every later token ran under the new budget');
    assert.ok(toks.slice(0, k).every((t) => t.compute === 1), 'dense before');
    const later = toks.slice(k);
    const mean = later.reduce((a, t) => a + t.compute, 0) / later.length;
    assert.ok(mean < 0.5, `mean compute after the change ${mean}`);
    console.log(`# budget 1 -> 0.3 at token ${k} of 300: mean compute after ${mean.toFixed(3)}`);

    // stop
    await page.$eval('[data-testid=budget]', (s) => {
      s.value = '1';
      s.dispatchEvent(new Event('input', { bubbles: true }));
    });
    await generate(page, { maxTokens: 480, temperature: 1, ignoreEos: true, wait: false });
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=token]').length >= 5, null, { timeout: 20000 });
    await page.click('[data-testid=stop]');
    assert.equal(await waitDone(page), 'stopped');
    const stopped = await page.locator('[data-testid=token]').count();
    assert.ok(stopped >= 5 && stopped < 480, `${stopped} tokens`);
    assert.match(await page.textContent('#gen-status'), /Stopped after/);
    assert.equal(await page.isEnabled('[data-testid=generate]'), true);
  } finally {
    await context.close();
  }
});

const setBudget = (page, b) => page.$eval('[data-testid=budget]', (s, v) => {
  s.value = v;
  s.dispatchEvent(new Event('input', { bubbles: true }));
}, String(b));

test('demo at 1280×800: Generate in view, fields in line, the slider shows measured costs', { skip, timeout: 30000 }, async () => {
  const { context, page } = await open(shipped.url, { width: 1280, height: 800 });
  try {
    const box = (sel) => page.$eval(sel, (e) => {
      const r = e.getBoundingClientRect();
      return { top: r.top, bottom: r.bottom, height: r.height };
    });
    const gen = await box('[data-testid=generate]');
    assert.ok(gen.bottom <= 800, `Generate ends at y = ${gen.bottom}, below the fold`);
    assert.ok((await box('[data-testid=budget]')).bottom <= 800, 'the budget slider is in view');
    // the fine-tuning fields: one line of label each, inputs on one line
    const labels = await Promise.all(['ft-budget', 'ft-steps', 'ft-ctx', 'ft-batch'].map((id) => box(`label[for=${id}]`)));
    const inputs = await Promise.all(['#ft-budget', '#ft-steps', '#ft-ctx', '#ft-batch'].map((id) => box(id)));
    assert.ok(labels.every((l) => Math.abs(l.height - labels[1].height) < 1), `label heights ${labels.map((l) => l.height)}`);
    assert.ok(inputs.every((i) => Math.abs(i.top - inputs[0].top) < 1), `input tops ${inputs.map((i) => i.top)}`);

    // the shipped gates come with measured perplexities (models/doze-stories.gates.ppl.json)
    assert.match(await page.textContent('#gates-status'), /doze-stories\.gates\.gguf/);
    const costs = JSON.parse(readFileSync(join(root, 'models', 'doze-stories.gates.ppl.json'), 'utf8')).points;
    const at = (b) => costs.find((p) => p.budget === b).ppl;
    for (const b of [1, 0.7, 0.5]) {
      await setBudget(page, b);
      const shown = Number(await page.$eval('[data-testid=budget-cost]', (e) => e.dataset.ppl));
      assert.equal(shown, at(b), `b = ${b}`);
      assert.match(await page.textContent('[data-testid=budget-cost]'), new RegExp(`perplexity ${at(b).toFixed(1).replace('.', '\\.')}`));
    }
    // between measured budgets: interpolated, marked ≈, between its neighbours
    await setBudget(page, 0.65);
    const mid = Number(await page.$eval('[data-testid=budget-cost]', (e) => e.dataset.ppl));
    assert.ok(mid > at(0.7) && mid < at(0.6), `b = 0.65: ${mid}`);
    assert.match(await page.textContent('[data-testid=budget-cost]'), /≈/);
    // other gates: no measured cost is claimed
    await page.setInputFiles('#gates-file', join(dir, 'models', 'doze-stories.gates.gguf'));
    await page.waitForFunction(() => /Could not use|Active:/.test(document.getElementById('gates-status').textContent));
    if (/Active:/.test(await page.textContent('#gates-status'))) {
      assert.match(await page.textContent('[data-testid=budget-cost]'), /not measured/);
    }
  } finally {
    await context.close();
  }
});

/** Counts pixels of a PNG near an RGB colour, decoded by the page itself. */
async function countColour(page, png, [r, g, b], tol = 40) {
  return page.evaluate(async ({ data, r, g, b, tol }) => {
    const img = new Image();
    img.src = `data:image/png;base64,${data}`;
    await img.decode();
    const c = document.createElement('canvas');
    c.width = img.width;
    c.height = img.height;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const px = ctx.getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < px.length; i += 4) {
      if (Math.abs(px[i] - r) <= tol && Math.abs(px[i + 1] - g) <= tol && Math.abs(px[i + 2] - b) <= tol) n++;
    }
    return n;
  }, { data: png.toString('base64'), r, g, b, tol });
}

test('demo: a failed load (404, truncated file) keeps the working model, its info and gates', { skip, timeout: 60000 }, async () => {
  const { context, page } = await open(shipped.url, { width: 1280, height: 800 });
  try {
    const info = await page.textContent('#model-info');
    const gates = await page.textContent('#gates-status');
    assert.match(info, /doze-stories\.gguf/);
    const fails = async () => {
      await page.waitForFunction(() => !!document.getElementById('model-status').dataset.failed, null, { timeout: 30000 });
      const status = await page.textContent('#model-status');
      assert.match(status, /Still using doze-stories\.gguf/);
      assert.equal(await page.textContent('#progress-label'), 'Loaded', 'no "Loading ..." label left behind');
      assert.equal(await page.$eval('[data-testid=progress]', (p) => p.value), 100);
      assert.equal(await page.textContent('#model-info'), info, 'the working model\'s info is intact');
      assert.equal(await page.isVisible('#model-info'), true);
      assert.equal(await page.textContent('#gates-status'), gates);
      return status;
    };

    // a 404
    await page.fill('#model-url', 'models/missing.gguf');
    await page.click('#load-url');
    assert.match(await fails(), /Could not load missing\.gguf/);
    await page.$eval('#model-status', (s) => delete s.dataset.failed);

    // half a model file
    const whole = readFileSync(join(root, 'models', 'doze-stories.gguf'));
    const half = join(dir, 'half.gguf');
    writeFileSync(half, whole.subarray(0, whole.length >> 1));
    await page.setInputFiles('#model-file', half);
    assert.match(await fails(), /Could not load half\.gguf: TRUNCATED/);

    // the screenshot shows it: the error in red, the progress bar still full
    const shot = await page.locator('#model-section').screenshot({ path: '/tmp/doze-demo-failed-load.png' });
    const red = await countColour(page, shot, [164, 14, 38], 50);
    const blue = await countColour(page, shot, [0, 117, 255], 60);
    assert.ok(red > 100, `error text pixels: ${red}`);
    const barWidth = await page.$eval('[data-testid=progress]', (p) => p.getBoundingClientRect().width);
    assert.ok(blue > barWidth * 4, `progress bar pixels: ${blue} (bar ${barWidth} px wide)`);

    // ... and the model still generates
    await generate(page, { maxTokens: 8, temperature: 0 });
    assert.ok(await page.locator('[data-testid=token]').count() > 0);
  } finally {
    await context.close();
  }
});

test('demo: the default model comes from the browser cache on the next visit', { skip, timeout: 60000 }, async () => {
  const { context, page } = await open(withDefault.url);
  const fetched = () => withDefault.requests.filter((p) => p === '/models/doze-stories.gguf').length;
  try {
    const before = fetched();
    assert.match(await page.textContent('#model-info'), /Sourcenetwork \(now cached\)/);
    assert.doesNotMatch(await page.textContent('#model-status'), /from cache/);
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 30000 });
    assert.match(await page.textContent('#model-status'), /^Ready: doze-stories\.gguf \(from cache\)\./);
    assert.match(await page.textContent('#progress-text'), /^100% — .* from cache$/);
    assert.match(await page.textContent('#model-info'), /Sourcebrowser cache/);
    assert.equal(fetched(), before, `the model was not downloaded again: ${JSON.stringify(withDefault.requests.slice(-30))}`);
    await generate(page, { maxTokens: 6, temperature: 0 });
    assert.ok(await page.locator('[data-testid=token]').count() > 0);
  } finally {
    await context.close();
  }
});

test('demo: no console errors', { skip }, () => {
  assert.deepEqual(errors, []);
});
