// Peak memory of streaming a large model into doze.wasm in Chromium
// (playwright-core, Debian's /usr/bin/chromium): the browser half of
// docs/models.md's "Memory: a 1 B model in wasm", whose Node half reads the
// Node process's VmHWM.
//   node bench/memory-chromium.mjs [MODEL.gguf ...] [--tmp DIR] [--steps N]
// Without model files it writes `doze init` models of Llama-3.2-1B's shape
// (--arch llama3 --dim 2048 --hidden 8192 --layers 16 --heads 32 --kv-heads 8
// --vocab 128256) in Q4_K_M and F16 (~0.8 GB and ~2.5 GB) into a temp dir
// under --tmp (default the OS temp dir), removed at the end.
//
// Per model a fresh browser, so that no renderer holds a previous model and
// the peaks do not mix. The page (served by a local http server, not
// cross-origin isolated, so Doze runs on one thread, doze.wasm or
// doze-relaxed.wasm)
// calls loadModel(url, { contextLength: 64 }) (fetch's body streamed
// through the bounded staging area, js/src/load.js), then generates N greedy
// tokens (default 4). Reported:
//   - the result, or the DozeError's code and message (a renderer crash or
//     any other error is reported as it is, not as a DozeError);
//   - the load time (performance.now() around loadModel, in the page; the
//     runtime is instantiated before, so wasm compilation is not in it);
//   - the bytes loadModel had fed into wasm when it finished or failed
//     (its onProgress), and the wasm memory's size (Runtime.memoryBytes():
//     the module's linear memory, which grows and never shrinks);
//   - the renderer's resident memory from /proc/PID/status: VmRSS (now) and
//     VmHWM (the kernel's high-water mark of RSS since the process started,
//     so a peak reached between two samples is not missed), at three points:
//     baseline (page ready, runtime instantiated, no model), after the load,
//     after generating. peak - baseline is what the model cost the process.
// Which renderer is the page's: Chromium runs several (3 here), and neither
// /proc nor anything this script asks of CDP ties a pid to a page, so it is
// the renderer whose VmHWM grew most over the run; the other
// processes' largest peak growth is printed too (the network service, which
// buffers the download, and the browser process), so memory that moved
// elsewhere is not hidden.
import { createServer } from 'node:http';
import { createReadStream, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, statfsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args.splice(i, 2)[1] : dflt;
};
const tmpRoot = resolve(opt('--tmp', tmpdir()));
const steps = Number(opt('--steps', 4));
const CONTEXT = 64;
const bad = args.find((a) => a.startsWith('--'));
if (bad || !(Number.isInteger(steps) && steps >= 1 && steps < CONTEXT - 8)) {
  console.error('usage: node bench/memory-chromium.mjs [MODEL.gguf ...] [--tmp DIR] [--steps N (1..55)]');
  process.exit(2);
}
const MiB = 1 << 20;
const mb = (bytes) => `${Math.round(bytes / MiB)} MB`;

// Llama-3.2-1B's shape (docs/models.md)
const SHAPE = ['--arch', 'llama3', '--dim', '2048', '--hidden', '8192', '--layers', '16', '--heads', '32', '--kv-heads', '8', '--vocab', '128256'];
const TYPES = ['q4_k_m', 'f16'];
let tmp = null;
let models = args.map((p) => ({ path: resolve(p), label: basename(p) }));
for (const m of models) if (!existsSync(m.path)) { console.error(`memory-chromium: no such file: ${m.path}`); process.exit(1); }

const cleanup = () => { if (tmp) rmSync(tmp, { recursive: true, force: true }); tmp = null; };
// An interrupted run must not leave 3 GB behind.
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { cleanup(); process.exit(130); });

if (!models.length) {
  const doze = join(root, 'build', 'doze');
  if (!existsSync(doze)) {
    console.error('memory-chromium: build/doze not found (npm run build:native), or pass GGUF files');
    process.exit(1);
  }
  // Both files take ~3.3 GB (bytes); refuse up front rather than fill the disk halfway.
  const need = 3.5e9, fs = statfsSync(tmpRoot), free = fs.bavail * fs.bsize;
  if (free < need) {
    console.error(`memory-chromium: ${tmpRoot} has ${(free / 1e9).toFixed(1)} GB free, the two models need ~3.5 GB: pass --tmp DIR`);
    process.exit(1);
  }
  tmp = mkdtempSync(join(tmpRoot, 'doze-memory-'));
  for (const type of TYPES) {
    const path = join(tmp, `llama3-1b-shape-${type}.gguf`);
    console.error(`writing ${path} (doze init ... --type ${type})`);
    execFileSync(doze, ['init', ...SHAPE, '--type', type, '-o', path], { stdio: ['ignore', 'ignore', 'inherit'] });
    models.push({ path, label: `1B shape ${type.toUpperCase()}` });
  }
}

// The page: the package's main entry, its runtime instantiated up front (the
// same one loadModel picks: getRuntime() without options, as loadModel
// without wasm/simd/threads > 1 asks for), then load and generate on demand.
const page = `<!doctype html><meta charset="utf-8"><script type="module">
import * as Doze from '/js/src/index.js';
let rt = null, model = null;
const err = (e) => ({ code: e && e.code || null, name: e && e.name || typeof e, message: String(e && e.message || e) });
window.prepare = async () => {
  rt = await Doze.getRuntime();
  return { memory: rt.memoryBytes(), heap: rt.heapUsed() };
};
window.load = async (url) => {
  let fed = 0, total = 0;
  const t0 = performance.now();
  try {
    model = await Doze.loadModel(url, { contextLength: ${CONTEXT}, onProgress: (p) => { fed = p.loaded; total = p.total; } });
  } catch (e) {
    return { ok: false, ms: performance.now() - t0, fed, total, memory: rt.memoryBytes(), heap: rt.heapUsed(), error: err(e) };
  }
  const i = model.info;
  return { ok: true, ms: performance.now() - t0, fed, total, memory: rt.memoryBytes(), heap: rt.heapUsed(),
    info: { type: i.weightType, bytes: i.bytes, params: i.params, threads: i.threads, simd: i.simd, ctx: i.contextLength } };
};
window.generate = async (steps) => {
  const s = model.createSession(), ids = [];
  const t0 = performance.now();
  try {
    for await (const t of s.generate('Once upon a time', { maxTokens: steps, temperature: 0, ignoreEos: true })) if (t.id >= 0) ids.push(t.id);
  } catch (e) {
    return { ok: false, error: err(e), ids };
  } finally {
    s.dispose();
  }
  return { ok: true, ms: performance.now() - t0, ids, memory: rt.memoryBytes() };
};
window.ready = true;
</script>`;

const server = createServer((req, res) => {
  const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  if (path === '/') { res.writeHead(200, { 'content-type': 'text/html' }); res.end(page); return; }
  if (path === '/favicon.ico') { res.writeHead(204); res.end(); return; } // not a 404 in the page's console
  let file = null;
  if (path.startsWith('/js/') && !path.includes('..')) file = join(root, path);
  const mi = /^\/model(\d+)\.gguf$/.exec(path);
  if (mi) file = models[Number(mi[1])]?.path;
  let size = 0;
  try { size = file ? statSync(file).size : 0; } catch { file = null; }
  if (!file) { res.writeHead(404); res.end(); return; }
  const type = file.endsWith('.js') ? 'text/javascript' : file.endsWith('.wasm') ? 'application/wasm' : 'application/octet-stream';
  res.writeHead(200, { 'content-type': type, 'content-length': size });
  // A load that fails early cancels the download: stop reading the file.
  const stream = createReadStream(file);
  res.on('close', () => stream.destroy());
  stream.on('error', () => res.destroy());
  stream.pipe(res);
});

// Chromium's processes: every descendant of this Node process (one browser
// runs at a time), with its --type (renderer, utility, gpu-process, zygote;
// none for the browser process) and its VmRSS/VmHWM in bytes.
function chromiumProcesses() {
  const all = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0/g, ' ');
      const status = readFileSync(`/proc/${d}/status`, 'utf8');
      const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
      const type = /--type=(\S+)/.exec(cmd)?.[1] ?? 'browser';
      const sub = /--utility-sub-type=(\S+)/.exec(cmd)?.[1];
      all.push({ pid: Number(d), ppid, type: sub ? `${type} ${sub}` : type, rss: kb('VmRSS'), hwm: kb('VmHWM') });
    } catch {
      // the process ended while being read
    }
  }
  const out = [], queue = [process.pid];
  while (queue.length) {
    const p = queue.shift();
    for (const c of all.filter((x) => x.ppid === p)) { out.push(c); queue.push(c.pid); }
  }
  return new Map(out.map((p) => [p.pid, p]));
}

async function measure(url, model) {
  const browser = await chromium.launch({ executablePath: process.env.DOZE_CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox', '--headless'] });
  const r = { label: model.label, file: statSync(model.path).size, chromium: browser.version() };
  try {
    const tab = await browser.newPage();
    let crashed = false;
    tab.on('crash', () => { crashed = true; });
    tab.on('pageerror', (e) => console.error('page error:', e.message));
    tab.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') console.error(`page ${m.type()}: ${m.text()}`); });
    await tab.goto(url);
    await tab.waitForFunction(() => window.ready === true, null, { timeout: 60000 });
    r.runtime = await tab.evaluate(() => window.prepare());
    const base = chromiumProcesses();
    const call = async (what, fn, arg) => {
      try {
        return await tab.evaluate(fn, arg);
      } catch (e) {
        // not a DozeError: the renderer died (OOM kill, crash) or the page broke
        return { ok: false, error: { code: null, name: crashed ? 'renderer crash' : 'page failure', message: `${what}: ${e.message.split('\n')[0]}` } };
      }
    };
    r.load = await call('loadModel', (u) => window.load(u), `${url}model${model.index}.gguf`);
    const afterLoad = chromiumProcesses();
    if (r.load.ok) r.gen = await call('generate', (n) => window.generate(n), steps);
    const end = chromiumProcesses();
    // the page's renderer: the one whose peak grew most (see the top)
    const growth = (p) => (end.get(p.pid)?.hwm ?? afterLoad.get(p.pid)?.hwm ?? p.hwm) - (base.get(p.pid)?.hwm ?? 0);
    const seen = new Map([...base, ...afterLoad, ...end]);
    const renderers = [...seen.values()].filter((p) => p.type === 'renderer').sort((a, b) => growth(b) - growth(a));
    const me = renderers[0];
    if (!me) throw new Error('no renderer process found under this process');
    r.renderer = {
      pid: me.pid,
      count: renderers.length,
      base: base.get(me.pid) ?? { rss: 0, hwm: 0 },
      load: afterLoad.get(me.pid) ?? null,
      end: end.get(me.pid) ?? null,
    };
    const others = [...seen.values()].filter((p) => p.pid !== me.pid).sort((a, b) => growth(b) - growth(a));
    r.other = others[0] ? { type: others[0].type, growth: growth(others[0]), hwm: (end.get(others[0].pid) ?? others[0]).hwm } : null;
  } finally {
    await browser.close();
  }
  return r;
}

await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const url = `http://127.0.0.1:${server.address().port}/`;
const results = [];
try {
  for (let i = 0; i < models.length; i++) {
    models[i].index = i;
    console.error(`${models[i].label}: loading in a fresh Chromium...`);
    const r = await measure(url, models[i]);
    results.push(r);
    const rr = r.renderer;
    const res = r.load.ok
      ? `${r.load.info.type} (layer 0) loaded in ${(r.load.ms / 1000).toFixed(1)} s, ${r.load.info.threads} thread, ${r.load.info.simd} SIMD; ` +
        (r.gen?.ok ? `${r.gen.ids.length} greedy tokens in ${(r.gen.ms / 1000).toFixed(1)} s [${r.gen.ids.join(' ')}]` : `generate failed: ${r.gen.error.code ?? r.gen.error.name}: ${r.gen.error.message}`)
      : `FAILED${r.load.ms != null ? ` after ${(r.load.ms / 1000).toFixed(2)} s` : ''}: ${r.load.error.code ?? r.load.error.name}: ${r.load.error.message}`;
    console.log(`${r.label} (${mb(r.file)}, ${r.file} bytes), Chromium ${r.chromium}`);
    console.log(`  result: ${res}`);
    // fed: what loadModel's onProgress last reported (whole chunks fed without error)
    console.log(`  fed into wasm: ${((r.load.fed ?? 0) / MiB).toFixed(1)} MB of ${((r.load.total || r.file) / MiB).toFixed(1)} MB; wasm memory ${mb(r.runtime.memory)} before, ${r.load.memory != null ? mb(r.load.memory) : '?'} after the load` +
      (r.load.ok ? ` (weights ${mb(r.load.info.bytes)}), ${r.gen?.memory != null ? mb(r.gen.memory) : '?'} after generating` : ''));
    const at = (s) => (s ? `VmRSS ${mb(s.rss)}, VmHWM ${mb(s.hwm)}` : 'gone');
    console.log(`  renderer pid ${rr.pid} (of ${rr.count} renderers): baseline ${at(rr.base)}; after load ${at(rr.load)}; after generate ${at(rr.end)}`);
    const peak = (rr.end ?? rr.load)?.hwm;
    if (peak != null) console.log(`  peak VmHWM - baseline VmRSS: ${mb(peak - rr.base.rss)} (file ${mb(r.file)}, wasm memory grew ${mb((r.gen?.memory ?? r.load.memory ?? r.runtime.memory) - r.runtime.memory)})`);
    if (r.other) console.log(`  largest peak growth elsewhere: ${r.other.type} +${mb(r.other.growth)} (VmHWM ${mb(r.other.hwm)})`);
  }
} finally {
  server.close();
  cleanup();
}
