// Two builds of doze.wasm side by side on the same model, in one process
// (Node) or one page (Chromium, --chromium): decode tokens/s and prefill
// tokens/s, rounds interleaved (A, B, A, B...) so that both see the same
// machine load; prints the median and range of each and of the ratio B / A,
// UNRELIABLE where the ratio's rounds spread more than 2x.
//   node bench/compare-builds.mjs OLD.wasm NEW.wasm MODEL.gguf [--rounds N] [--steps N] [--prompt N]
//        [--threads N] [--chromium]
// --threads: for two threaded builds (doze-mt.wasm, doze-mt-relaxed.wasm;
// default the package's default, in Chromium one thread; the page is
// cross-origin isolated). --chromium: Debian's /usr/bin/chromium (or
// DOZE_CHROMIUM) through playwright-core, where relaxed-SIMD builds run
// without flags; Node needs --experimental-wasm-relaxed-simd for them.
import { createServer } from 'node:http';
import { createReadStream, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args.splice(i, 2)[1]) : dflt;
};
const flag = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? (args.splice(i, 1), true) : false;
};
const rounds = opt('--rounds', 5), steps = opt('--steps', 64), promptLen = opt('--prompt', 128);
const threads = opt('--threads', 0);
const chromium = flag('--chromium');
if (!(Number.isInteger(threads) && threads >= 0)) throw new Error('--threads takes a whole number of threads');
const [wa, wb, modelPath] = args;
if (!modelPath) {
  console.error('usage: node bench/compare-builds.mjs OLD.wasm NEW.wasm MODEL.gguf [--rounds N] [--steps N] [--prompt N] [--threads N] [--chromium]');
  process.exit(2);
}

// The measurements, the same source in Node and in the page: `M` is the
// package's module, `wasm` the build's path or URL.
async function bench(M, builds, modelSrc, o) {
  const models = [];
  for (const wasm of builds) models.push(await M.loadModel(modelSrc, o.threads ? { wasm, threads: o.threads } : { wasm }));
  const vocab = models[0].info.vocabSize;
  // a text prompt of about promptLen tokens (the batched prefill path)
  let prompt = '';
  while (models[0].tokenize(prompt).length < o.promptLen) prompt += 'Once upon a time there was a little dog. ';
  async function decode(model, steps) {
    const s = model.createSession();
    const t0 = performance.now();
    let token = 1;
    for (let i = 0; i < steps; i++) {
      await s.step(token);
      token = (i * 31 + 7) % vocab;
    }
    const ms = performance.now() - t0;
    s.dispose?.();
    return (steps / ms) * 1000;
  }
  async function prefill(model) {
    const s = model.createSession();
    const it = s.generate(prompt, { maxTokens: 1 });
    let r;
    while (!(r = await it.next()).done);
    s.dispose?.();
    return (r.value.promptTokens / r.value.promptMs) * 1000;
  }
  const out = { simd: models.map((m) => m.info.simd), threads: models.map((m) => m.info.threads) };
  for (const [name, fn] of [['decode', decode], ['prefill', prefill]]) {
    const a = [], b = [];
    await fn(models[0], 4), await fn(models[1], 4); // warm-up
    for (let r = 0; r < o.rounds; r++) {
      a.push(await fn(models[0], o.steps));
      b.push(await fn(models[1], o.steps));
    }
    out[name] = { a, b };
  }
  for (const m of models) m.dispose();
  return out;
}

const o = { rounds, steps, promptLen, threads };
let res;
if (!chromium) {
  const M = await import('../js/src/index.js');
  res = await bench(M, [resolve(wa), resolve(wb)], resolve(modelPath), o);
} else {
  const { chromium: browserType } = await import('playwright-core');
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
  const files = { '/a.wasm': resolve(wa), '/b.wasm': resolve(wb), '/model.gguf': resolve(modelPath) };
  const page = `<!doctype html><meta charset="utf-8"><script type="module">
window.M = await import('/js/src/index.js');
window.bench = ${bench.toString()};
window.ready = true;
</script>`;
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    // cross-origin isolated, so that the threaded builds get their threads
    const coi = { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' };
    if (path === '/') { res.writeHead(200, { 'content-type': 'text/html', ...coi }); res.end(page); return; }
    let file = files[path] ?? (path.startsWith('/js/') && !path.includes('..') ? join(root, path) : null);
    let size = 0;
    try { size = file ? statSync(file).size : 0; } catch { file = null; }
    if (!file) { res.writeHead(404); res.end(); return; }
    const type = file.endsWith('.js') ? 'text/javascript' : file.endsWith('.wasm') ? 'application/wasm' : 'application/octet-stream';
    res.writeHead(200, { 'content-type': type, 'content-length': size, ...coi });
    createReadStream(file).pipe(res);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const browser = await browserType.launch({
    executablePath: process.env.DOZE_CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox', '--headless'],
  });
  try {
    const tab = await browser.newPage();
    await tab.goto(`http://127.0.0.1:${server.address().port}/`);
    await tab.waitForFunction(() => window.ready === true);
    console.log(`Chromium ${browser.version()}`);
    res = await tab.evaluate((o) => window.bench(window.M, ['/a.wasm', '/b.wasm'], '/model.gguf', o), { ...o, threads: o.threads || 1 });
  } finally {
    await browser.close();
    server.close();
  }
}

const med = (v) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)];
const fmt = (v, d = 1) => `${med(v).toFixed(d)} (${Math.min(...v).toFixed(d)}-${Math.max(...v).toFixed(d)})`;
const build = (k) => `${res.simd[k]} SIMD, ${res.threads[k]} thread${res.threads[k] > 1 ? 's' : ''}`;
console.log(`A: ${wa} (${build(0)}), B: ${wb} (${build(1)}); median (min-max) of ${rounds} interleaved rounds`);
for (const name of ['decode', 'prefill']) {
  const { a, b } = res[name];
  const ratio = a.map((x, k) => b[k] / x);
  const spread = Math.max(...ratio) / Math.min(...ratio);
  console.log(`${(name + ' tok/s').padEnd(14)} A ${fmt(a)}  B ${fmt(b)}  B/A ${fmt(ratio, 2)}${spread > 2 ? '  UNRELIABLE (rounds spread > 2x)' : ''}`);
}
