// Decode speed of doze.wasm (strict SIMD) and doze-relaxed.wasm (Q8_0/Q4_0/Q5_0 on
// the relaxed-SIMD int8 dot) in Chromium (playwright-core, Debian's
// /usr/bin/chromium), one page, both builds loaded: rounds interleaved
// (strict, relaxed, strict, relaxed...) so both see the same machine load.
// Prints per model the median tok/s (min-max) of each build and of the
// per-round ratio relaxed / strict; a ratio whose rounds spread more than 2x
// is marked UNRELIABLE. Several models are timed round by round in turn too,
// so their ratios (e.g. Q8_0 vs F32) are meaningful.
//   node bench/relaxed-chromium.mjs MODEL.gguf [MODEL.gguf ...] [--rounds N] [--steps N]
import { createServer } from 'node:http';
import { createReadStream, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args.splice(i, 2)[1]) : dflt;
};
const rounds = opt('--rounds', 5), steps = opt('--steps', 32);
const models = args.map((p) => resolve(p));
if (!models.length) {
  console.error('usage: node bench/relaxed-chromium.mjs MODEL.gguf [...] [--rounds N] [--steps N]');
  process.exit(2);
}

const page = `<!doctype html><meta charset="utf-8"><script type="module">
const M = await import('/js/src/index.js');
const loaded = {};
window.load = async (url, simd) => { const m = await M.loadModel(url, { simd }); loaded[url + simd] = m; return { simd: m.info.simd, type: m.info.weightType }; };
window.decode = async (url, simd, steps) => {
  const m = loaded[url + simd], s = m.createSession();
  await s.step(1); await s.step(2); // untimed
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) await s.step((i * 31 + 7) % m.info.vocabSize);
  const ms = performance.now() - t0;
  s.dispose?.();
  return steps * 1000 / ms;
};
window.ready = true;
</script>`;
const server = createServer((req, res) => {
  const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  let file = null;
  if (path === '/') { res.writeHead(200, { 'content-type': 'text/html' }); res.end(page); return; }
  if (path.startsWith('/js/')) file = join(root, path);
  const mi = /^\/model(\d+)\.gguf$/.exec(path);
  if (mi) file = models[Number(mi[1])];
  let size = 0;
  try { size = file ? statSync(file).size : 0; } catch { file = null; }
  if (!file) { res.writeHead(404); res.end(); return; }
  const type = file.endsWith('.js') ? 'text/javascript' : file.endsWith('.wasm') ? 'application/wasm' : 'application/octet-stream';
  res.writeHead(200, { 'content-type': type, 'content-length': size });
  createReadStream(file).pipe(res);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${server.address().port}`;
const browser = await chromium.launch({ executablePath: process.env.DOZE_CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox', '--headless'] });
try {
  const tab = await browser.newPage();
  await tab.goto(`${base}/`);
  await tab.waitForFunction(() => window.ready === true);
  const version = browser.version();
  const runs = [];
  for (let i = 0; i < models.length; i++) {
    for (const simd of ['strict', 'relaxed']) {
      const info = await tab.evaluate(([u, s]) => window.load(u, s), [`${base}/model${i}.gguf`, simd]);
      if (info.simd !== simd) throw new Error(`asked for ${simd}, got ${info.simd}`);
      runs.push({ i, simd, type: info.type, name: basename(models[i]), tps: [] });
    }
  }
  for (const r of runs) await tab.evaluate(([u, s, n]) => window.decode(u, s, n), [`${base}/model${r.i}.gguf`, r.simd, 4]); // warm-up
  for (let k = 0; k < rounds; k++)
    for (const r of runs) r.tps.push(await tab.evaluate(([u, s, n]) => window.decode(u, s, n), [`${base}/model${r.i}.gguf`, r.simd, steps]));
  const med = (v) => { const s = [...v].sort((a, b) => a - b), h = s.length >> 1; return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2; };
  const fmt = (v, d = 1) => `${med(v).toFixed(d)} (${Math.min(...v).toFixed(d)}-${Math.max(...v).toFixed(d)})`;
  const flag = (v) => (Math.max(...v) / Math.min(...v) > 2 ? '  UNRELIABLE (rounds spread > 2x)' : '');
  console.log(`Chromium ${version}, decode tok/s: median (min-max) of ${rounds} interleaved rounds of ${steps} tokens`);
  for (let i = 0; i < models.length; i++) {
    const [s, x] = runs.filter((r) => r.i === i);
    const ratio = s.tps.map((v, k) => x.tps[k] / v);
    console.log(`${s.name.padEnd(20)} ${s.type.padEnd(5)} strict ${fmt(s.tps)}${flag(s.tps)}  relaxed ${fmt(x.tps)}${flag(x.tps)}  relaxed/strict ${fmt(ratio, 2)}${flag(ratio)}`);
  }
  // every model against the first, per build, per round
  for (let i = 1; i < models.length; i++)
    for (const simd of ['strict', 'relaxed']) {
      const a = runs.find((r) => r.i === 0 && r.simd === simd), b = runs.find((r) => r.i === i && r.simd === simd);
      const ratio = a.tps.map((v, k) => v / b.tps[k]);
      console.log(`${a.name} / ${b.name} (${simd}): ${fmt(ratio, 2)}${flag(ratio)}`);
    }
} finally {
  await browser.close();
  server.close();
}
