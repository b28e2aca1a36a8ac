// doze-lm through a bundler, as a web developer's app uses it: a tiny app
// that imports 'doze-lm' and 'doze-lm/worker' (the package linked into the
// app's node_modules, as `npm install ../js` or a file: dependency does),
// built by Vite for production with the one setting js/README.md asks for
// (worker.format 'es': the worker lazily imports chat.js, a chunk), served
// from dist/ and run in Chromium. The wasm and the worker must be found in
// the bundle (their `new URL(..., import.meta.url)` survive bundling), no
// Node built-in may reach the bundle, and both entries must generate Node's
// tokens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../../js/src/index.js';
import { root, scratch } from '../js/helpers.js';
import { initModel, serve, storiesModel } from '../js/package_fixtures.js';
import { ARGS, CHROMIUM, playwright, skipReason } from './chromium.js';

let vite = null;
try {
  vite = await import('vite');
} catch {
  /* reported below */
}
const skip = skipReason || (vite ? false : 'vite is not installed (npm run setup)');
if (!vite && !skipReason) throw new Error('the Vite test cannot run: vite is not installed (npm run setup)');

const PROMPT = 'Once upon a time';
const OPTS = { temperature: 0, maxTokens: 24 };

const app = {
  'index.html': `<!doctype html><meta charset="utf-8"><title>vite app</title><link rel="icon" href="data:,">
<script type="module" src="/main.js"></script>`,
  'main.js': `import { loadModel } from 'doze-lm';
import { loadModel as loadInWorker } from 'doze-lm/worker';
const text = async (m, prompt, opts) => { let s = ''; for await (const t of m.generate(prompt, opts)) s += t.text; return s; };
window.run = async (url, prompt, opts) => {
  const w = await loadInWorker(url);
  const worker = await text(w, prompt, opts);
  await w.dispose();
  const m = await loadModel(url);
  const main = await text(m, prompt, opts);
  m.dispose();
  return { worker, main };
};
window.ready = true;
`,
};

test('Vite production build of an app importing doze-lm and doze-lm/worker generates in Chromium', { skip, timeout: 240000 }, async () => {
  const dir = scratch();
  const model = storiesModel(dir) || initModel('f32', dir);
  const node = await loadModel(model);
  let want = '';
  for await (const t of node.generate(PROMPT, OPTS)) want += t.text;
  node.dispose();

  const appDir = mkdtempSync(join(tmpdir(), 'doze-vite-app-'));
  const profile = mkdtempSync(join(tmpdir(), 'doze-vite-chromium-'));
  let srv;
  let context;
  try {
    for (const [name, body] of Object.entries(app)) writeFileSync(join(appDir, name), body);
    writeFileSync(join(appDir, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module', dependencies: { 'doze-lm': `file:${join(root, 'js')}` } }));
    mkdirSync(join(appDir, 'node_modules'));
    symlinkSync(join(root, 'js'), join(appDir, 'node_modules', 'doze-lm'), 'dir');
    const outDir = join(appDir, 'dist');
    const warnings = [];
    const logger = vite.createLogger('warn');
    logger.warn = (msg) => warnings.push(msg);
    await vite.build({ root: appDir, configFile: false, customLogger: logger, worker: { format: 'es' }, build: { outDir, emptyOutDir: true } });
    assert.deepEqual(warnings, [], 'Vite has nothing to warn about (no Node built-ins externalized, no unresolved URL)');
    const assets = readdirSync(join(outDir, 'assets'));
    assert.ok(assets.some((f) => /^doze-.*\.wasm$/.test(f)), `doze.wasm is emitted as an asset: ${assets.join(', ')}`);
    assert.ok(assets.some((f) => /^worker-thread-.*\.js$/.test(f)), `the worker is bundled: ${assets.join(', ')}`);

    srv = await serve({ routes: { '/': join(outDir, 'index.html'), '/model.gguf': model }, roots: { '/': outDir } });
    context = await playwright.chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS });
    const tab = context.pages()[0] || (await context.newPage());
    const errors = [];
    tab.on('pageerror', (e) => errors.push(String(e)));
    tab.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    await tab.goto(`${srv.url}/`);
    await tab.waitForFunction(() => window.ready === true);
    const r = await tab.evaluate(([u, p, o]) => window.run(u, p, o), [`${srv.url}/model.gguf`, PROMPT, OPTS]);
    assert.deepEqual(errors, []);
    assert.equal(r.worker, want, 'the bundled worker entry generates what Node does');
    assert.equal(r.main, want, 'the bundled main entry generates what Node does');
    assert.ok(srv.requests.some((p) => /^\/assets\/doze-.*\.wasm$/.test(p)), 'the bundled wasm was fetched');
    console.log(`# vite ${vite.version}: ${assets.length} assets; both entries: ${JSON.stringify(want.slice(0, 50))}...`);
  } finally {
    if (context) await context.close();
    if (srv) await srv.close();
    rmSync(appDir, { recursive: true, force: true });
    rmSync(profile, { recursive: true, force: true });
  }
});
