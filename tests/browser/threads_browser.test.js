// Threads in Chromium: a page that is not cross-origin isolated asks for 2
// threads and gets 1, with one console warning (also when doze-lm/worker
// models ask too) and the same tokens; the same
// page served with COOP/COEP runs on 2 threads (workers on
// doze-mt-relaxed.wasm: Chromium has relaxed SIMD) with the same tokens as 1
// thread (doze-relaxed.wasm) and as the strict threaded build, and dispose
// leaves it working.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { root, scratch } from '../js/helpers.js';
import { initModel, serve } from '../js/package_fixtures.js';
import { ARGS, CHROMIUM, playwright, skipReason } from './chromium.js';

const page = `<!doctype html><meta charset="utf-8"><title>doze-lm threads</title>
<script type="module">
window.runDoze = async (modelUrl) => {
  const M = await import('/js/src/index.js');
  const gen = async (threads, simd = 'auto') => {
    const m = await M.loadModel(modelUrl, { threads, simd });
    const ids = [];
    for await (const t of m.generate('Once upon a time', { temperature: 0, maxTokens: 24 })) ids.push(t.id);
    const info = { threads: m.info.threads, simd: m.info.simd };
    m.dispose();
    return { ids, ...info };
  };
  const one = await gen(1);
  const two = await gen(2);
  const twoAgain = await gen(2);
  const twoStrict = await gen(2, 'strict');
  // doze-lm/worker on 2 threads, twice: an abort after the 3rd token hands
  // out no more (the worker runs ahead), and the fallback warns once per page
  const W = await import('/js/src/worker.js');
  const inWorker = async () => {
    const m = await W.loadModel(modelUrl, { threads: 2 });
    const threads = (await m.info).threads;
    const ac = new AbortController();
    const ids = [];
    let code = null;
    try {
      for await (const t of m.generate('Once upon a time', { temperature: 0, maxTokens: 200, ignoreEos: true, signal: ac.signal })) {
        ids.push(t.id);
        if (ids.length === 3) ac.abort();
      }
    } catch (e) {
      code = e.code;
    }
    await m.dispose();
    return { threads, ids, code };
  };
  const worker = [await inWorker(), await inWorker()];
  return { one, two, twoAgain, twoStrict, worker, isolated: globalThis.crossOriginIsolated };
};
window.dozeReady = true;
</script>`;

const COI = { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' };

// [isolated, a server without doze-mt-relaxed.wasm (the threaded strict build then runs)]
for (const [isolated, noRelaxedMt] of [[false, false], [true, false], [true, true]]) {
  const what = !isolated ? 'fall back to 1 with a warning' : noRelaxedMt ? 'run the strict build when the relaxed one is missing' : 'run';
  test(`Chromium ${isolated ? 'with' : 'without'} COOP/COEP: threads ${what}, same tokens`,
    { skip: skipReason, timeout: 180000 }, async () => {
      const dir = scratch();
      const model = initModel('q8_0', dir);
      const profile = mkdtempSync(join(tmpdir(), 'doze-chromium-'));
      writeFileSync(join(dir, 'index.html'), page);
      const routes = { '/': join(dir, 'index.html'), '/model.gguf': model };
      if (noRelaxedMt) routes['/js/dist/doze-mt-relaxed.wasm'] = join(dir, 'absent.wasm'); // a 404
      const srv = await serve({ routes, roots: { '/js/': join(root, 'js') }, headers: isolated ? COI : {} });
      let context;
      try {
        context = await playwright.chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS });
        const tab = context.pages()[0] || (await context.newPage());
        const errors = [];
        const warnings = [];
        tab.on('pageerror', (e) => errors.push(String(e)));
        tab.on('console', (m) => { if (m.type() === 'warning') warnings.push(m.text()); });
        await tab.goto(`${srv.url}/`);
        await tab.waitForFunction(() => window.dozeReady === true);
        const r = await tab.evaluate((u) => window.runDoze(u), `${srv.url}/model.gguf`);
        assert.deepEqual(errors, []);
        assert.equal(r.isolated, isolated);
        assert.equal(r.one.threads, 1);
        assert.deepEqual(r.two.ids, r.one.ids, 'the same tokens on 2 threads');
        assert.deepEqual(r.twoAgain.ids, r.one.ids);
        assert.deepEqual(r.twoStrict.ids, r.one.ids, 'the same tokens from the strict build');
        assert.equal(r.one.simd, 'relaxed');
        assert.equal(r.two.simd, noRelaxedMt ? 'strict' : 'relaxed');
        assert.equal(r.twoStrict.simd, 'strict');
        for (const w of r.worker) {
          assert.equal(w.threads, isolated ? 2 : 1);
          assert.deepEqual(w.ids, r.one.ids.slice(0, 3), 'the worker stops at the abort');
          assert.equal(w.code, 'ABORTED');
        }
        const fallbacks = warnings.filter((w) => w.includes('running on 1 thread'));
        if (isolated) {
          assert.equal(r.two.threads, 2);
          assert.equal(r.twoStrict.threads, 2);
          assert.equal(fallbacks.length, 0);
          assert.ok(srv.requests.includes('/js/dist/doze-mt-relaxed.wasm'));
          assert.ok(srv.requests.includes('/js/dist/doze-mt.wasm'));
        } else {
          assert.equal(r.two.threads, 1);
          assert.equal(fallbacks.length, 1, `one warning: ${JSON.stringify(warnings)}`);
          assert.ok(!srv.requests.some((q) => q.includes('doze-mt')), 'no threaded build fetched');
          assert.match(fallbacks[0], /cross-origin isolated/);
        }
      } finally {
        if (context) await context.close();
        await srv.close();
        rmSync(profile, { recursive: true, force: true });
      }
    });
}
