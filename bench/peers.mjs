// Doze against a peer: the same GGUF through @wllama/wllama (llama.cpp in
// wasm, a dev dependency) and through Doze, in one Chromium page
// (playwright-core, Debian's /usr/bin/chromium), served by a local http
// server (no network: wllama's wasm and the models come from here).
//   npm run bench:peers [-- options] [MODEL.gguf ...]
// Without model files it writes random-weight models with `build/doze init`
// (the stories15M and stories110M shapes) in F32, Q8_0, Q4_0 and Q4_K_M into
// a temp dir. Per model the engines take turns round by round (Doze, wllama
// 1 thread, wllama N threads, Doze, ...), so all of them see the same machine
// load; each round times
//   decode:  greedy tokens after a short prompt (tokens/s from the first
//            token's arrival to the last one's: steps - 1 intervals);
//   prefill: a --prompt-token prompt and one sampled token (prompt tokens
//            over the time from the call to its end).
// Both are wall-clock in the page, what a caller of either library sees;
// wllama's own llama-server timings (which leave out its worker round trips)
// are printed beside them. Both engines get the same prompt text, chosen so
// that Doze tokenizes it to exactly the wanted number of ids; wllama's prompt
// token count is checked against it (its token-id prompts crash wllama
// 3.13's worker, so the ids themselves cannot be handed over).
// The table: per model and metric, tok/s of each engine and the per-round
// ratio Doze / wllama, as median (min-max) over the rounds; UNRELIABLE when
// the rounds spread more than 2x (the rule of `doze bench`, src/base/rounds.c).
// Options:
//   --rounds N          rounds per model (default 5)
//   --steps N           decode tokens (default 64)
//   --prompt N          prefill prompt tokens (default 128)
//   --shapes 15M,110M   shapes to generate (default both)
//   --types f32,q8_0,q4_0,q4_k_m   types to generate (default these four)
//   --doze-threads N[,M...]  Doze's thread counts (default 1; more needs
//                       doze-mt.wasm, which the isolated page allows); each
//                       count is its own run in the rounds, and the table
//                       gives Doze's N threads against its first count's too
//   --doze-simd S       auto (default: relaxed where the browser has it, at
//                       one thread), strict or relaxed (loadModel's simd)
//   --wllama-threads N  threads of the multi-thread wllama run (default 2;
//                       0 skips it); it needs cross-origin isolation, which
//                       the page has (COOP/COEP headers on every response)
//   --json FILE         also write every round's figures to FILE
import { createServer } from 'node:http';
import { createReadStream, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir, cpus } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const wllamaDir = join(root, 'node_modules', '@wllama', 'wllama', 'esm');
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args.splice(i, 2)[1] : dflt;
};
const rounds = Number(opt('--rounds', 5));
const steps = Number(opt('--steps', 64));
const promptLen = Number(opt('--prompt', 128));
const shapes = opt('--shapes', '15M,110M').split(',').filter(Boolean);
const types = opt('--types', 'f32,q8_0,q4_0,q4_k_m').split(',').filter(Boolean);
const dozeThreads = String(opt('--doze-threads', '1')).split(',').map(Number);
const wllamaThreads = Number(opt('--wllama-threads', 2));
const dozeSimd = opt('--doze-simd', 'auto');
const jsonOut = opt('--json', null);
const bad = args.find((a) => a.startsWith('--'));
if (bad || !(rounds >= 1) || !(steps >= 2) || !(promptLen >= 2) || !dozeThreads.every((n) => Number.isInteger(n) && n >= 1) ||
    !['auto', 'strict', 'relaxed'].includes(dozeSimd)) {
  console.error(`usage: node bench/peers.mjs [MODEL.gguf ...] [--rounds N] [--steps N] [--prompt N]
  [--shapes 15M,110M] [--types f32,q8_0,q4_0,q4_k_m] [--doze-threads N[,M]] [--doze-simd auto|strict|relaxed] [--wllama-threads N] [--json FILE]`);
  process.exit(2);
}
if (!existsSync(join(wllamaDir, 'index.js'))) {
  console.error('bench:peers: @wllama/wllama is missing (npm ci: it is a dev dependency)');
  process.exit(1);
}

// The llama2.c stories shapes (their vocabulary size, random weights: speed
// depends on the shape and the weight type, not on the values).
const SHAPES = {
  '15M': ['--dim', '288', '--hidden', '768', '--layers', '6', '--heads', '6', '--vocab', '32000'],
  '110M': ['--dim', '768', '--hidden', '2048', '--layers', '12', '--heads', '12', '--vocab', '32000'],
};
let tmp = null;
let models = args.map((p) => ({ path: resolve(p), name: basename(p) }));
if (!models.length) {
  const doze = join(root, 'build', 'doze');
  if (!existsSync(doze)) {
    console.error('bench:peers: build/doze not found (npm run build), or pass GGUF files');
    process.exit(1);
  }
  tmp = mkdtempSync(join(tmpdir(), 'doze-peers-'));
  // A context with room for the prompt, the decode run and a margin.
  const ctx = String(Math.max(512, promptLen + steps + 16));
  for (const shape of shapes) {
    if (!SHAPES[shape]) { console.error(`bench:peers: unknown shape ${shape} (${Object.keys(SHAPES)})`); process.exit(2); }
    for (const type of types) {
      const path = join(tmp, `stories${shape}-${type}.gguf`);
      execFileSync(doze, ['init', '-o', path, ...SHAPES[shape], '--ctx', ctx, '--type', type], { stdio: 'ignore' });
      models.push({ path, name: `stories${shape} shape`, type });
    }
  }
}

// One page holds both libraries. Every timed call returns wall-clock figures
// measured here with performance.now(), plus each library's own.
const page = `<!doctype html><meta charset="utf-8"><script type="module">
import * as Doze from '/js/src/index.js';
import { Wllama } from '/wllama/index.js';
const engines = {};
const quiet = { debug() {}, log() {}, info() {}, warn() {}, error: (...a) => console.error(...a) };
// The prompts: text Doze tokenizes to n ids (BOS first) and back to the
// same text; SentencePiece puts a space in front of the detokenized text,
// which tokenizing adds back.
const promptFor = (m, text, n) => {
  let long = text;
  while (m.tokenize(long, { bos: true }).length < n) long += ' ' + text;
  const ids = Array.from(m.tokenize(long, { bos: true })).slice(0, n);
  for (const cut of [1, 0]) {
    const t = m.detokenize(ids.slice(1)).slice(cut && 1);
    const back = Array.from(m.tokenize(t, { bos: true }));
    if (back.length === ids.length && back.every((v, i) => v === ids[i])) return { text: t, ids };
  }
  throw new Error('no text tokenizes to the prompt ids');
};
const STORY = 'Once upon a time, there was a little girl named Lily. She liked to play in the park with her dog. ' +
  'One day the sun was hot and the sky was blue, so they went to the lake to swim and look for fish.';
window.loadDoze = async (key, url, threads, promptLen, simd) => {
  const model = await Doze.loadModel(url, { threads, simd });
  const long = promptFor(model, STORY, promptLen);
  const short = { text: 'Once upon a time', ids: Array.from(model.tokenize('Once upon a time', { bos: true })) };
  engines[key] = { model, long, short };
  const i = model.info;
  return { type: i.weightType, threads: i.threads, simd: i.simd, long, short };
};
window.loadWllama = async (key, url, threads, ctx) => {
  const blob = await (await fetch(url)).blob();
  const w = new Wllama({ default: '/wllama/wasm/wllama.wasm' }, { logger: quiet, suppressNativeLog: true });
  w.setCompat(null); // never the CDN build (Chromium runs the main one)
  await w.loadModel([blob], { n_threads: threads, n_ctx: ctx, n_gpu_layers: 0 });
  engines[key] = { w };
  return { threads: w.getNumThreads(), multithread: w.isMultithread() };
};
window.dispose = async (key) => {
  const e = engines[key];
  delete engines[key];
  if (e.model) e.model.dispose();
  if (e.w) await e.w.exit();
};
window.dozeDecode = async (key, steps) => {
  const e = engines[key], s = e.model.createSession(), times = [];
  let text = '';
  for await (const t of s.generate(e.short.text, { maxTokens: steps, temperature: 0, ignoreEos: true })) {
    if (t.id < 0) continue; // held-back text, not a token
    times.push(performance.now());
    text += t.text;
  }
  s.dispose();
  return { tps: (times.length - 1) * 1000 / (times.at(-1) - times[0]), n: times.length, text };
};
window.dozePrefill = async (key) => {
  const e = engines[key], s = e.model.createSession();
  const t0 = performance.now();
  const it = s.generate(e.long.text, { maxTokens: 1, temperature: 0, ignoreEos: true });
  let r;
  while (!(r = await it.next()).done);
  const ms = performance.now() - t0;
  s.dispose();
  return { tps: r.value.promptTokens * 1000 / ms, own: r.value.promptTokens * 1000 / r.value.promptMs, n: r.value.promptTokens };
};
// wllama: raw completion, greedy (temperature 0), EOS ignored,
// no prompt cache (every round prefills the whole prompt), streamed so that
// each token's arrival is seen.
const complete = async (w, text, maxTokens, onData) => w.createCompletion({
  prompt: text, max_tokens: maxTokens, temperature: 0, ignore_eos: true, cache_prompt: false,
  stream: true, onData,
});
window.wllamaDecode = async (key, prompt, steps) => {
  const e = engines[key], times = [];
  let text = '', last = null;
  const fin = await complete(e.w, prompt.text, steps, (c) => {
    last = c;
    const t = c.choices?.[0]?.text;
    // one chunk per token while generating; the last carries the timings
    if (!c.timings || t) times.push(performance.now());
    if (t) text += t;
  });
  const tm = (fin ?? last)?.timings;
  return {
    tps: (times.length - 1) * 1000 / (times.at(-1) - times[0]), n: times.length, text,
    own: tm ? tm.predicted_per_second : NaN, promptN: tm?.prompt_n,
  };
};
window.wllamaPrefill = async (key, prompt) => {
  const e = engines[key];
  let last = null;
  const t0 = performance.now();
  const fin = await complete(e.w, prompt.text, 1, (c) => { last = c; });
  const ms = performance.now() - t0;
  const tm = (fin ?? last)?.timings;
  return { tps: prompt.ids.length * 1000 / ms, own: tm ? tm.prompt_per_second : NaN, n: tm?.prompt_n };
};
window.isolated = crossOriginIsolated;
window.ready = true;
</script>`;

const isolation = {
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
};
const server = createServer((req, res) => {
  const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  if (path === '/') { res.writeHead(200, { 'content-type': 'text/html', ...isolation }); res.end(page); return; }
  let file = null;
  if (path.startsWith('/js/') && !path.includes('..')) file = join(root, path);
  if (path.startsWith('/wllama/') && !path.includes('..')) file = join(wllamaDir, path.slice('/wllama/'.length));
  const mi = /^\/model(\d+)\.gguf$/.exec(path);
  if (mi) file = models[Number(mi[1])]?.path;
  let size = 0;
  try { size = file ? statSync(file).size : 0; } catch { file = null; }
  if (!file) { res.writeHead(404, isolation); res.end(); return; }
  const type = file.endsWith('.js') ? 'text/javascript' : file.endsWith('.wasm') ? 'application/wasm' : 'application/octet-stream';
  res.writeHead(200, { 'content-type': type, 'content-length': size, ...isolation });
  createReadStream(file).pipe(res);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${server.address().port}`;

// rounds.c's rule: fewer than 2 rounds, a non-positive or non-finite value,
// or max > 2 min is UNRELIABLE.
const med = (v) => { const s = [...v].sort((a, b) => a - b), h = s.length >> 1; return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2; };
const unreliable = (v) => v.length < 2 || v.some((x) => !(x > 0) || !Number.isFinite(x)) || Math.max(...v) > 2 * Math.min(...v);
const fmt = (v, d = 1) => v.length ? `${med(v).toFixed(d)} (${Math.min(...v).toFixed(d)}-${Math.max(...v).toFixed(d)})${unreliable(v) ? ' UNRELIABLE' : ''}` : '-';

const browser = await chromium.launch({ executablePath: process.env.DOZE_CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox', '--headless'] });
const results = [];
try {
  const tab = await browser.newPage();
  tab.on('pageerror', (e) => console.error('page error:', e.message));
  await tab.goto(`${base}/`);
  await tab.waitForFunction(() => window.ready === true, null, { timeout: 60000 });
  const isolated = await tab.evaluate(() => window.isolated);
  const ev = (fn, ...a) => tab.evaluate(([f, a]) => window[f](...a), [fn, a]);
  console.error(`Chromium ${browser.version()}, cross-origin isolated: ${isolated}, ${cpus().length} cores (${cpus()[0]?.model})`);
  const ctx = Math.max(512, promptLen + steps + 16);
  for (let i = 0; i < models.length; i++) {
    const url = `${base}/model${i}.gguf`, m = models[i];
    const runs = [];
    let d = null;
    for (const n of dozeThreads) {
      const key = `doze${n}`, di = await ev('loadDoze', key, url, n, promptLen, dozeSimd);
      d ??= di;
      runs.push({ key, doze: true, threads: di.threads, label: `Doze ${di.threads}t${dozeThreads.length > 1 ? ` ${di.simd}` : ''}`, dec: [], pre: [], own: [], ownPre: [] });
    }
    const w1 = await ev('loadWllama', 'w1', url, 1, ctx);
    runs.push({ key: 'w1', threads: w1.threads, label: `wllama ${w1.threads}t`, dec: [], pre: [], own: [], ownPre: [] });
    if (wllamaThreads > 1) {
      const wn = await ev('loadWllama', 'wn', url, wllamaThreads, ctx);
      if (!wn.multithread) console.error(`wllama ${wllamaThreads} threads: fell back to ${wn.threads} (page not cross-origin isolated?)`);
      runs.push({ key: 'wn', threads: wn.threads, label: `wllama ${wn.threads}t`, dec: [], pre: [], own: [], ownPre: [] });
    }
    console.error(`${m.name} ${d.type}: Doze ${runs.filter((r) => r.doze).map((r) => r.threads).join(', ')} thread(s), ${d.simd} SIMD; prompt ${d.long.ids.length} tokens, short prompt ${d.short.ids.length}`);
    const texts = {};
    // untimed warm-up: compiles, grows memories, fills caches
    for (const r of runs) {
      if (r.doze) { texts[r.key] = (await ev('dozeDecode', r.key, steps)).text; await ev('dozePrefill', r.key); }
      else { texts[r.key] = (await ev('wllamaDecode', r.key, d.short, steps)).text; await ev('wllamaPrefill', r.key, d.long); }
    }
    for (let k = 0; k < rounds; k++) {
      for (const r of runs) {
        const dec = r.doze ? await ev('dozeDecode', r.key, steps) : await ev('wllamaDecode', r.key, d.short, steps);
        const pre = r.doze ? await ev('dozePrefill', r.key) : await ev('wllamaPrefill', r.key, d.long);
        if (dec.n !== steps) throw new Error(`${r.label}: ${dec.n} tokens generated, not ${steps}`);
        if (dec.promptN != null && dec.promptN !== d.short.ids.length) throw new Error(`${r.label}: short prompt of ${dec.promptN} tokens, not ${d.short.ids.length}`);
        if (pre.n !== promptLen) throw new Error(`${r.label}: ${pre.n} prompt tokens, not ${promptLen}`);
        r.dec.push(dec.tps); r.pre.push(pre.tps); r.own.push(dec.own ?? NaN); r.ownPre.push(pre.own);
      }
      console.error(`  round ${k + 1}/${rounds}: ` + runs.map((r) => `${r.label} ${r.dec.at(-1).toFixed(1)} / ${r.pre.at(-1).toFixed(1)}`).join(', '));
    }
    for (const r of runs) await ev('dispose', r.key);
    const same = runs.slice(1).map((r) => `${r.label} ${texts[r.key] === texts[runs[0].key] ? 'same' : 'differs'}`).join(', ');
    // A generated model is labelled with the type asked of `doze init`; a
    // mixed type (Q4_K_M) or a fallback (K-quants need rows of 256: the
    // stories15M shape's dim 288 gets Q5_0) shows what layer 0 holds.
    const asked = m.type ? m.type.toUpperCase() : d.type.toUpperCase();
    const type = m.type && m.type !== d.type ? `${asked} (layer 0: ${d.type.toUpperCase()})` : asked;
    results.push({ name: m.name, file: basename(m.path), type, simd: d.simd, shortN: d.short.ids.length, greedy: same, runs });
  }

  const out = [];
  out.push(`Chromium ${browser.version()}; ${rounds} interleaved rounds; decode: ${steps} greedy tokens after a ${results[0]?.shortN}-token prompt; prefill: ${promptLen}-token prompt; Doze's build: ${[...new Set(results.map((r) => r.simd))].join(', ')} SIMD`);
  out.push('tok/s and Doze/wllama as median (min-max) over the rounds; UNRELIABLE: the rounds spread more than 2x');
  out.push('');
  // tok/s of every run, then the ratios that compare like with like: Doze
  // against wllama at the same thread count (or against wllama 1t when the
  // counts differ), and Doze's later thread counts against its first.
  const labels = results[0]?.runs.map((r) => r.label) ?? [];
  out.push(`| model | type | metric | ${labels.map((l) => `${l} tok/s`).join(' | ')} |`);
  out.push(`|---|---|---|${labels.map(() => '---|').join('')}`);
  for (const res of results)
    for (const [metric, key] of [['decode', 'dec'], ['prefill', 'pre']])
      out.push(`| ${res.name} | ${res.type} | ${metric} | ${res.runs.map((r) => fmt(r[key])).join(' | ')} |`);
  const pairs = (runs) => {
    const dz = runs.filter((r) => r.doze), ws = runs.filter((r) => !r.doze), list = [];
    for (const x of dz) {
      const same = ws.filter((w) => w.threads === x.threads);
      for (const w of same.length ? same : ws.slice(0, 1)) list.push([x, w]);
      if (x !== dz[0]) list.push([x, dz[0]]);
    }
    return list;
  };
  const ratioNames = results[0] ? pairs(results[0].runs).map(([x, y]) => `${x.label} / ${y.label}`) : [];
  out.push('');
  out.push(`| model | type | metric | ${ratioNames.join(' | ')} |`);
  out.push(`|---|---|---|${ratioNames.map(() => '---|').join('')}`);
  for (const res of results)
    for (const [metric, key] of [['decode', 'dec'], ['prefill', 'pre']])
      out.push(`| ${res.name} | ${res.type} | ${metric} | ${pairs(res.runs).map(([x, y]) => fmt(x[key].map((v, k) => v / y[key][k]), 2)).join(' | ')} |`);
  out.push('');
  out.push("wllama's own timings (llama-server's, without its worker round trips), median tok/s decode / prefill:");
  for (const res of results) {
    out.push(`  ${res.name} ${res.type}: ` + res.runs.filter((r) => !r.doze).map((w) => `${w.label} ${med(w.own).toFixed(1)} / ${med(w.ownPre).toFixed(1)}`).join(', ') +
      `; Doze's own prefill ${res.runs.filter((r) => r.doze).map((r) => `${r.label} ${med(r.ownPre).toFixed(1)}`).join(', ')}; greedy text vs ${res.runs[0].label}: ${res.greedy}`);
  }
  console.log(out.join('\n'));
  if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ chromium: browser.version(), rounds, steps, promptLen, results }, null, 2));
} finally {
  await browser.close();
  server.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}
