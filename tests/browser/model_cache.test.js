// loadModel's browser model cache in Chromium: the first load downloads and
// stores, the second comes from the cache (the server sees one request), a
// cached copy whose size or sha256 is wrong is refused and downloaded again,
// a download that is interrupted, aborted or fails its sha256 is never
// stored, deleteCachedModel removes the copy; the worker entry shares it.
// In Node (no Cache API) the option is an INVALID_ARGUMENT error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { loadModel, listCachedModels, deleteCachedModel } from '../../js/src/index.js';
import * as W from '../../js/src/worker.js';
import { root, scratch } from '../js/helpers.js';
import { initModel, storiesModel } from '../js/package_fixtures.js';
import { ARGS, CHROMIUM, playwright, skipReason } from './chromium.js';

const page = `<!doctype html><meta charset="utf-8"><title>doze-lm cache test</title>
<script type="module">
import * as M from '/js/src/index.js';
import * as W from '/js/src/worker.js';
const collect = async (m) => { let text = ''; for await (const t of m.generate('Once upon a time', { temperature: 0, maxTokens: 12 })) text += t.text; return text; };
window.load = async (url, opts, worker = false) => {
  const progress = [];
  const ac = new AbortController();
  const o = { ...opts, onProgress: (p) => { progress.push(p); if (opts.abortAt && p.loaded >= opts.abortAt) ac.abort('stop'); } };
  if (opts.abortAt) { delete o.abortAt; o.signal = ac.signal; }
  try {
    const m = await (worker ? W : M).loadModel(url, o);
    const text = await collect(m);
    const cache = m.info.cache;
    await m.dispose();
    return { ok: true, cache, text, fromCache: [...new Set(progress.map((p) => p.fromCache))] };
  } catch (e) {
    return { ok: false, code: e.code, name: e.name, message: e.message };
  }
};
window.list = () => M.listCachedModels();
window.listW = () => W.listCachedModels();
window.del = (url) => M.deleteCachedModel(url);
// what a damaged or stale entry looks like: the body changed under the same key
window.tamper = async (url, how) => {
  const c = await caches.open('doze-lm-models');
  const res = await c.match(url);
  const headers = Object.fromEntries(res.headers);
  const buf = new Uint8Array(await res.arrayBuffer());
  const body = how === 'truncate' ? buf.slice(0, buf.length >> 1) : (buf[buf.length - 1] ^= 1, buf);
  await c.put(url, new Response(body, { headers }));
};
window.ready = true;
</script>`;

const types = { '.js': 'text/javascript', '.html': 'text/html', '.wasm': 'application/wasm' };

/** The page, js/ and /model.gguf, whose delivery `mode` the test sets: 'ok', 'cut' (closes mid-body) or 'stall'. */
function server(model) {
  const bytes = readFileSync(model);
  const state = { hits: 0, mode: 'ok' };
  const srv = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html' });
      return res.end(page);
    }
    if (path === '/model.gguf') {
      state.hits++;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length, 'cache-control': 'no-store' });
      if (state.mode === 'ok') return res.end(bytes);
      res.write(bytes.subarray(0, bytes.length >> 1));
      if (state.mode === 'cut') setTimeout(() => res.destroy(), 50);
      return undefined; // 'stall': the rest never comes
    }
    if (path.startsWith('/js/')) {
      const file = join(root, 'js', normalize(path.slice(4)).replace(/^(\.\.[/\\])+/, ''));
      try {
        const body = readFileSync(file);
        res.writeHead(200, { 'content-type': types[extname(file)] || 'application/octet-stream', 'cache-control': 'no-store' });
        return res.end(body);
      } catch {
        /* 404 below */
      }
    }
    res.writeHead(404);
    return res.end();
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve({
    url: `http://127.0.0.1:${srv.address().port}`,
    state,
    close: () => new Promise((r) => { srv.closeAllConnections(); srv.close(() => r()); }),
  })));
}

test('Node: the cache option and the cache calls need the Cache API', async () => {
  const model = initModel('f32');
  await assert.rejects(loadModel(model, { cache: true }), (e) => e.code === 'INVALID_ARGUMENT' && /Cache API/.test(e.message));
  await assert.rejects(loadModel(model, { cache: { sha256: 'xyz' } }), (e) => e.code === 'INVALID_ARGUMENT' && /cache\.sha256 must be 64 hex/.test(e.message));
  await assert.rejects(loadModel(model, { cache: { sha: 'x' } }), (e) => e.code === 'INVALID_ARGUMENT' && /unknown option 'sha'/.test(e.message));
  await assert.rejects(loadModel(model, { cache: 1 }), (e) => e.code === 'INVALID_ARGUMENT');
  await assert.rejects(listCachedModels(), (e) => e.code === 'INVALID_ARGUMENT' && /Cache API/.test(e.message));
  await assert.rejects(deleteCachedModel('http://x/m.gguf'), (e) => e.code === 'INVALID_ARGUMENT');
  // the worker entry refuses it before starting a worker
  await assert.rejects(W.loadModel(model, { cache: true }), (e) => e.code === 'INVALID_ARGUMENT' && /Cache API/.test(e.message));
  await assert.rejects(W.listCachedModels(), (e) => e.code === 'INVALID_ARGUMENT');
  const m = await loadModel(model, { cache: false }); // false: no cache, anywhere
  assert.equal(m.info.cache, undefined);
  m.dispose();
});

test('Chromium: loadModel caches a completed download and trusts only a copy that checks', { skip: skipReason, timeout: 180000 }, async () => {
  const dir = scratch();
  const model = storiesModel(dir) || initModel('f32', dir);
  const size = statSync(model).size;
  const sha = createHash('sha256').update(readFileSync(model)).digest('hex');
  const srv = await server(model);
  const url = `${srv.url}/model.gguf`;
  const profile = mkdtempSync(join(tmpdir(), 'doze-cache-'));
  let context;
  try {
    context = await playwright.chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS });
    const tab = context.pages()[0] || (await context.newPage());
    const errors = [];
    tab.on('pageerror', (e) => errors.push(String(e)));
    await tab.goto(`${srv.url}/`);
    await tab.waitForFunction(() => window.ready === true);
    const load = (opts, worker = false) => tab.evaluate(([u, o, w]) => window.load(u, o, w), [url, opts, worker]);
    const list = () => tab.evaluate(() => window.list());

    assert.deepEqual(await list(), []);
    // first load: downloaded and stored
    const first = await load({ cache: true });
    assert.equal(first.ok, true, first.message);
    assert.deepEqual(first.cache, { fromCache: false, stored: true });
    assert.deepEqual(first.fromCache, [false]);
    assert.equal(srv.state.hits, 1);
    const entries = await list();
    assert.equal(entries.length, 1);
    assert.equal(entries[0].url, url);
    assert.equal(entries[0].bytes, size);
    assert.equal(entries[0].sha256, null);

    // second load (main thread, then the worker entry): from the cache, no request, same text
    const second = await load({ cache: true });
    assert.deepEqual(second.cache, { fromCache: true, stored: false });
    assert.deepEqual(second.fromCache, [true]);
    assert.equal(second.text, first.text);
    const inWorker = await load({ cache: true }, true);
    assert.equal(inWorker.ok, true, inWorker.message);
    assert.deepEqual(inWorker.cache, { fromCache: true, stored: false });
    assert.equal(inWorker.text, first.text);
    assert.equal(srv.state.hits, 1, 'the server saw one download');
    assert.deepEqual(await tab.evaluate(() => window.listW()), entries);
    // the right sha256: the cached copy is trusted
    const shaOk = await load({ cache: { sha256: sha } });
    assert.deepEqual(shaOk.cache, { fromCache: true, stored: false });
    assert.equal(srv.state.hits, 1);

    // a cached copy whose bytes changed (same size): its sha256 refuses it, the model is downloaded again
    await tab.evaluate((u) => window.tamper(u, 'flip'), url);
    const refetched = await load({ cache: { sha256: sha.toUpperCase() } });
    assert.deepEqual(refetched.cache, { fromCache: false, stored: true });
    assert.equal(refetched.text, first.text);
    assert.equal(srv.state.hits, 2);
    assert.equal((await list())[0].sha256, sha);
    // a cached copy cut short: its size refuses it (no sha256 needed)
    await tab.evaluate((u) => window.tamper(u, 'truncate'), url);
    const resized = await load({ cache: true });
    assert.deepEqual(resized.cache, { fromCache: false, stored: true });
    assert.equal(srv.state.hits, 3);

    // a download that does not have the given sha256: refused, and not stored
    const wrong = await load({ cache: { sha256: '0'.repeat(64) } });
    assert.equal(wrong.ok, false);
    assert.equal(wrong.code, 'IO');
    assert.match(wrong.message, new RegExp(`SHA-256 of ${url} is ${sha}, not the expected 0{64}`));
    assert.equal(srv.state.hits, 4);
    assert.deepEqual(await list(), [], 'the refused copy is gone and the download not stored');

    // the server closes the connection mid-body: an error, nothing stored
    srv.state.mode = 'cut';
    const cut = await load({ cache: true });
    assert.equal(cut.ok, false);
    assert.equal(cut.code, 'IO', cut.message);
    assert.deepEqual(await list(), []);
    // the download stalls and the caller aborts: nothing stored
    srv.state.mode = 'stall';
    const aborted = await load({ cache: true, abortAt: 1 });
    assert.equal(aborted.code, 'ABORTED', aborted.message);
    assert.deepEqual(await list(), []);
    assert.equal(srv.state.hits, 6);

    // a complete download again, then deleteCachedModel
    srv.state.mode = 'ok';
    assert.deepEqual((await load({ cache: true })).cache, { fromCache: false, stored: true });
    assert.equal(srv.state.hits, 7);
    assert.equal(await tab.evaluate((u) => window.del(u), url), true);
    assert.equal(await tab.evaluate((u) => window.del(u), url), false);
    assert.deepEqual(await list(), []);
    assert.deepEqual((await load({ cache: true })).cache, { fromCache: false, stored: true });
    assert.equal(srv.state.hits, 8, 'after the delete the model is downloaded again');

    // sources without a URL cannot be cached
    const bad = await tab.evaluate(() => import('/js/src/index.js').then((M) => M.loadModel(new Uint8Array(8), { cache: true }).then(() => 'loaded', (e) => e.code + ': ' + e.message)));
    assert.match(bad, /^INVALID_ARGUMENT: loadModel: cache works with http\(s\) URLs only/);
    assert.deepEqual(errors, []);
    console.log(`# ${size} bytes: 1 download for 4 loads; tampered, truncated, interrupted, aborted and wrong-sha256 downloads handled`);
  } finally {
    if (context) await context.close();
    await srv.close();
    rmSync(profile, { recursive: true, force: true });
  }
});
