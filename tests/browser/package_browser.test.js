// doze-lm in Debian's Chromium (driven by playwright-core, no downloaded
// browsers): a page served from a local http server imports the package from
// js/, fetches a GGUF model with progress, generates in the Web Worker entry
// and on the main thread, and must get the same token ids as Node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../../js/src/index.js';
import { root, scratch } from '../js/helpers.js';
import { initModel, serve, storiesModel } from '../js/package_fixtures.js';
import { ARGS, CHROMIUM, playwright, skipReason } from './chromium.js';

const skip = skipReason;

const PROMPT = 'Once upon a time';
const OPTS = { temperature: 0, maxTokens: 40 };
const SAMPLED = { temperature: 0.9, topP: 0.9, seed: 123, maxTokens: 40 };

const page = `<!doctype html><meta charset="utf-8"><title>doze-lm browser test</title>
<script type="module">
window.runDoze = async (modelUrl, prompt, opts, sampled) => {
  const W = await import('/js/src/worker.js');
  const M = await import('/js/src/index.js');
  const progress = [];
  const wm = await W.loadModel(modelUrl, { onProgress: (p) => progress.push(p) });
  const collect = async (gen) => { const ids = []; let text = ''; for await (const t of gen) { ids.push(t.id); text += t.text; } return { ids, text }; };
  const worker = await collect(wm.generate(prompt, opts));
  const workerSampled = await collect(wm.generate(prompt, sampled));
  // cancel from the page
  const ac = new AbortController();
  let n = 0, abortName = null;
  try { for await (const t of wm.generate(prompt, { temperature: 1, seed: 1, ignoreEos: true, signal: ac.signal })) { if (++n === 3) ac.abort(); } }
  catch (e) { abortName = e.name + '/' + e.code; }
  await wm.dispose();
  const mm = await M.loadModel(await fetch(modelUrl));
  const main = await collect(mm.generate(prompt, opts));
  const badCode = await M.loadModel(new Blob([new Uint8Array(64)])).then(() => null, (e) => e.code);
  mm.dispose();
  return { progress, worker, workerSampled, main, abortName, badCode, simd: M.hasWasmSimd(), ua: navigator.userAgent };
};
window.dozeReady = true;
</script>`;

test('Chromium: fetch with progress, generate in the Worker, same tokens as Node', { skip, timeout: 120000 }, async () => {
  const dir = scratch();
  const stories = storiesModel(dir);
  const model = stories || initModel('f32', dir);
  if (!stories) console.log('# ../shared absent: using an init model');
  const node = await loadModel(model);
  const collect = async (gen) => { const ids = []; let text = ''; for await (const t of gen) { ids.push(t.id); text += t.text; } return { ids, text }; };
  const want = await collect(node.generate(PROMPT, OPTS));
  const wantSampled = await collect(node.generate(PROMPT, SAMPLED));
  node.dispose();

  const profile = mkdtempSync(join(tmpdir(), 'doze-chromium-'));
  writeFileSync(join(dir, 'index.html'), page);
  const srv2 = await serve({ routes: { '/': join(dir, 'index.html'), '/model.gguf': model }, roots: { '/js/': join(root, 'js') } });
  let context;
  try {
    context = await playwright.chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
    });
    const tab = context.pages()[0] || (await context.newPage());
    const errors = [];
    tab.on('pageerror', (e) => errors.push(String(e)));
    await tab.goto(`${srv2.url}/`);
    await tab.waitForFunction(() => window.dozeReady === true);
    const r = await tab.evaluate(([u, p, o, s]) => window.runDoze(u, p, o, s), [`${srv2.url}/model.gguf`, PROMPT, OPTS, SAMPLED]);
    assert.deepEqual(errors, []);
    assert.equal(r.simd, true);
    const size = statSync(model).size;
    assert.ok(r.progress.length >= 2);
    for (let i = 1; i < r.progress.length; i++) assert.ok(r.progress[i].loaded >= r.progress[i - 1].loaded);
    assert.deepEqual(r.progress.at(-1), { loaded: size, total: size, phase: 'done' });
    assert.deepEqual(r.worker, want, 'worker in Chromium = Node (greedy)');
    assert.deepEqual(r.workerSampled, wantSampled, 'worker in Chromium = Node (sampled, seed 123)');
    assert.deepEqual(r.main, want, 'main thread in Chromium = Node');
    assert.equal(r.abortName, 'AbortError/ABORTED');
    assert.equal(r.badCode, 'BAD_MAGIC');
    // Chromium has relaxed SIMD: simd 'auto' loads the relaxed build (same tokens as Node's strict one)
    assert.ok(srv2.requests.includes('/js/dist/doze-relaxed.wasm'), 'the relaxed wasm was found next to the package');
    console.log(`# ${r.ua.match(/Chrome\/[\d.]+/)?.[0]}: ${want.ids.length} greedy tokens equal to Node's: ${JSON.stringify(want.text.slice(0, 60))}...; ${r.progress.length} progress events`);
  } finally {
    if (context) await context.close();
    await srv2.close();
    rmSync(profile, { recursive: true, force: true });
  }
});
