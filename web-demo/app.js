// The Doze web demo: loads a GGUF model into doze-lm's Web Worker, streams
// tokens with their masks (which layers / heads / FFN blocks ran), lets the
// budget change between tokens, and fine-tunes the gates with a live chart.
// Plain modules, no framework; the package comes from ./js/ (import map).
import { loadModel, hasWasmSimd } from 'doze-lm/worker';

const $ = (id) => document.getElementById(id);
const el = {
  supportNote: $('support-note'),
  progress: $('load-progress'),
  progressLabel: $('progress-label'),
  progressText: $('progress-text'),
  modelStatus: $('model-status'),
  modelInfo: $('model-info'),
  defaultRow: $('default-row'),
  loadDefault: $('load-default'),
  defaultName: $('default-name'),
  modelFile: $('model-file'),
  urlForm: $('url-form'),
  modelUrl: $('model-url'),
  ctxLen: $('ctx-len'),
  threads: $('threads'),
  cancelLoad: $('cancel-load'),
  gatesStatus: $('gates-status'),
  gatesFile: $('gates-file'),
  genForm: $('gen-form'),
  prompt: $('prompt'),
  temperature: $('temperature'),
  topK: $('top-k'),
  topP: $('top-p'),
  seed: $('seed'),
  maxTokens: $('max-tokens'),
  ignoreEos: $('ignore-eos'),
  budget: $('budget'),
  budgetValue: $('budget-value'),
  budgetCost: $('budget-cost'),
  autoBudget: $('auto-budget'),
  autoTarget: $('auto-target'),
  speculative: $('speculative'),
  statAccept: $('stat-accept'),
  generate: $('generate'),
  stop: $('stop'),
  statTokens: $('stat-tokens'),
  statRate: $('stat-rate'),
  statMs: $('stat-ms'),
  statCompute: $('stat-compute'),
  statBudget: $('stat-budget'),
  genStatus: $('gen-status'),
  output: $('output'),
  strip: $('strip'),
  stripSummary: $('strip-summary'),
  ffnNote: document.querySelector('.ffn-note'),
  maskTitle: $('mask-title'),
  maskGrid: $('mask-grid'),
  ftSupport: $('ft-support'),
  ftForm: $('ft-form'),
  ftText: $('ft-text'),
  ftDefault: $('ft-default'),
  ftTextInfo: $('ft-text-info'),
  ftBudget: $('ft-budget'),
  ftSteps: $('ft-steps'),
  ftCtx: $('ft-ctx'),
  ftBatch: $('ft-batch'),
  ftLr: $('ft-lr'),
  ftSeed: $('ft-seed'),
  ftInit: $('ft-init'),
  finetune: $('finetune'),
  ftStop: $('ft-stop'),
  ftDownload: $('ft-download'),
  ftStatus: $('ft-status'),
  ftChart: $('ft-chart'),
};

// ---------------------------------------------------------------- state
const state = {
  model: null,
  info: null,
  modelName: '',
  loading: null, // { ac }
  generating: null, // { ac, t0, tFirst, tLast }
  finetuning: null, // { ac }
  tokens: [], // { id, text, compute, budget, ms, mask, el }
  selected: -1, // -1: follow the newest token
  hover: -1,
  gates: null, // { kind, source } as shown
  defaultText: '',
  ft: { steps: [], total: 0, budget: 0.7 },
  autoTargetEdited: false,
  costs: null, // measured { budget, compute, ppl }[] for the active model + gates, or null
  defaultCosts: null, // { gates: URL, points } from config.json
};

// ---------------------------------------------------------------- helpers
function setStatus(node, text, kind = '') {
  node.textContent = text;
  node.classList.toggle('error', kind === 'error');
}

function describeError(e) {
  if (!e) return 'unknown error';
  const code = e.code ? `${e.code}: ` : '';
  return `${code}${e.message || String(e)}`;
}

function isAbort(e) {
  return e && (e.name === 'AbortError' || e.code === 'ABORTED');
}

function fmtBytes(n) {
  if (!(n > 0)) return '0 B';
  const u = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : n < 10 ? 2 : 1)} ${u[i]}`;
}

function fmtCount(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} K`;
  return String(n);
}

function num(input, { min = -Infinity, max = Infinity, int = false, fallback } = {}) {
  const raw = input.value.trim();
  if (raw === '') return fallback;
  let v = Number(raw);
  if (!Number.isFinite(v)) return fallback;
  if (int) v = Math.round(v);
  return Math.min(max, Math.max(min, v));
}

/** Colour of a compute ratio (the same formula as .tok in style.css). */
function computeColour(c, light = true) {
  const hue = 205 - c * 180;
  return light ? `hsl(${hue} 75% ${93 - c * 12}%)` : `hsl(${hue} 60% 35%)`;
}

/** FFN blocks per layer in a mask (0 when the runtime reports none). */
function ffnBlocks(mask, layers) {
  if (!mask || !mask.ffn || !layers) return 0;
  const n = mask.ffn.length / layers;
  return Number.isInteger(n) && n > 0 ? n : 0;
}

function busy() {
  return !!(state.loading || state.generating || state.finetuning);
}

function canFinetune() {
  return !!state.model && typeof state.model.finetuneGates === 'function';
}

function updateButtons() {
  const m = state.model;
  el.generate.disabled = !m || busy();
  el.stop.disabled = !state.generating;
  el.finetune.disabled = !canFinetune() || busy();
  el.ftStop.disabled = !state.finetuning;
  el.ftDownload.disabled = !m || !m.gates || !!state.finetuning || !!state.loading;
  el.gatesFile.disabled = !m || busy();
  el.cancelLoad.hidden = !state.loading;
  el.autoTarget.disabled = !el.autoBudget.checked;
  el.budget.disabled = el.autoBudget.checked;
}

// ---------------------------------------------------------------- loading
function resetProgress(label) {
  el.progress.max = 100;
  el.progress.value = 0;
  el.progressLabel.textContent = label;
  el.progressText.textContent = 'Starting…';
}

function onProgress({ loaded, total, phase, fromCache }) {
  const from = fromCache ? ' from cache' : '';
  if (phase === 'done' || (total > 0 && loaded >= total)) {
    el.progress.value = 100;
    el.progressText.textContent = `100% — ${fmtBytes(total || loaded)}${from}`;
    return;
  }
  if (total > 0) {
    const pct = Math.min(100, (loaded / total) * 100);
    el.progress.value = pct;
    el.progressText.textContent = `${pct.toFixed(0)}% — ${fmtBytes(loaded)} of ${fmtBytes(total)}${from}`;
  } else {
    el.progress.removeAttribute('value'); // indeterminate until the size is known
    el.progressText.textContent = `${fmtBytes(loaded)}`;
  }
}

async function stopEverything() {
  window.dispatchEvent(new Event('doze-stop')); // chat.js: a streaming reply stops too
  if (state.generating) state.generating.ac.abort();
  if (state.finetuning) state.finetuning.ac.abort();
  if (state.loading) state.loading.ac.abort();
  // let the loops notice
  for (let i = 0; i < 50 && busy(); i++) await new Promise((r) => setTimeout(r, 20));
}

function showInfo(info) {
  const rows = [
    ['Model', state.modelName],
    ['Architecture', info.architecture],
    ['Layers × heads', `${info.layers} × ${info.heads} (KV heads ${info.kvHeads})`],
    ['Width', `dim ${info.dim}, FFN ${info.hiddenDim}${info.ffnBlocks ? ` (${info.ffnBlocks} blocks of ${info.ffnBlock})` : ''}`],
    ['Parameters', `${fmtCount(info.params)} (${info.weightType})`],
    ['Size', fmtBytes(info.bytes)],
    ['Context', `${info.contextLength} positions`],
    ['Threads', `${info.threads}${info.threads === 1 && !globalThis.crossOriginIsolated ? ' (the page is not cross-origin isolated)' : ''}`],
    ['SIMD', info.simd === 'relaxed' ? 'relaxed (int8 dot products)' : 'strict'],
  ];
  if (info.cache) rows.push(['Source', info.cache.fromCache ? 'browser cache' : info.cache.stored ? 'network (now cached)' : 'network']);
  el.modelInfo.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    el.modelInfo.append(dt, dd);
  }
  el.modelInfo.hidden = false;
}

/**
 * Loads a model (a URL string or a File) into a new worker; gatesUrl: a gate
 * file to fetch afterwards. The previous model keeps working until the new
 * one has loaded: a failed load (bad file, 404, cancel) leaves it, its info
 * and its gates as they were.
 */
async function load(source, name, { gatesUrl = null } = {}) {
  await stopEverything();
  const shown = {
    label: el.progressLabel.textContent,
    text: el.progressText.textContent,
    value: el.progress.value,
  };
  resetProgress(`Loading ${name}`);
  setStatus(el.modelStatus, `Loading ${name}…`);
  const ac = new AbortController();
  state.loading = { ac };
  updateButtons();
  const contextLength = num(el.ctxLen, { min: 2, int: true, fallback: undefined });
  const threads = num(el.threads, { min: 1, max: 64, int: true, fallback: undefined });
  let model;
  try {
    // a model URL is kept in the browser cache (where the page has the Cache API)
    const cache = typeof source === 'string' && typeof caches !== 'undefined' && window.isSecureContext;
    model = await loadModel(source, { onProgress, signal: ac.signal, contextLength, threads, ...(cache ? { cache: true } : {}) });
  } catch (e) {
    state.loading = null;
    const why = isAbort(e) ? 'Loading cancelled' : `Could not load ${name}: ${describeError(e)}`;
    if (state.model) {
      // the working model stays: show its progress line again
      el.progressLabel.textContent = shown.label;
      el.progress.value = shown.value;
      el.progressText.textContent = shown.text;
      setStatus(el.modelStatus, `${why}. Still using ${state.modelName}.`, isAbort(e) ? '' : 'error');
    } else {
      el.progressLabel.textContent = 'No model';
      el.progress.value = 0;
      el.progressText.textContent = isAbort(e) ? 'Cancelled' : 'Failed';
      setStatus(el.modelStatus, `${why}.`, isAbort(e) ? '' : 'error');
    }
    el.modelStatus.dataset.failed = isAbort(e) ? 'cancelled' : 'error';
    updateButtons();
    return false;
  }
  if (state.model) {
    const old = state.model;
    state.model = null;
    await old.dispose().catch(() => {});
  }
  clearTokens();
  setGates(null);
  state.model = model;
  state.info = model.info;
  state.modelName = name;
  state.loading = null;
  delete el.modelStatus.dataset.failed;
  el.progress.value = 100;
  if (!/^100%/.test(el.progressText.textContent)) el.progressText.textContent = `100% — ${fmtBytes(state.info.bytes)}`;
  el.progressLabel.textContent = 'Loaded';
  showInfo(state.info);
  setStatus(el.modelStatus, `Ready: ${name}${model.info.cache?.fromCache ? ' (from cache)' : ''}.`);
  el.ftCtx.max = String(state.info.contextLength);
  applyBudgetToModel();
  updateFinetuneSupport();
  updateButtons();
  drawStrip();
  renderMask();
  if (gatesUrl) await loadGatesFrom(gatesUrl, gatesUrl.split('/').pop());
  updateButtons();
  window.dispatchEvent(new CustomEvent('doze-model', { detail: { model: state.model, source, name } })); // chat.js
  return true;
}

async function loadGatesFrom(src, name) {
  const m = state.model;
  if (!m) return;
  setStatus(el.gatesStatus, `Loading gate file ${name}…`);
  try {
    let bytes;
    if (typeof src === 'string') {
      const res = await fetch(src);
      if (!res.ok) throw new Error(`HTTP ${res.status} fetching ${src}`);
      bytes = await res.arrayBuffer();
    } else {
      bytes = await src.arrayBuffer();
    }
    if (m !== state.model) return;
    const g = await m.loadGates(bytes);
    const measured = typeof src === 'string' && state.defaultCosts && src === state.defaultCosts.gates ? state.defaultCosts.points : null;
    setGates({ kind: g.kind, source: `from ${name}` }, measured);
  } catch (e) {
    setStatus(el.gatesStatus, `Could not use the gate file ${name}: ${describeError(e)}`, 'error');
  }
  updateButtons();
}

/** g: the active gates as shown, or null; costs: what each budget costs with them, when measured. */
function setGates(g, costs = null) {
  state.gates = g;
  state.costs = g ? costs : null;
  showBudgetCost(Number(el.budget.value));
  if (!g) {
    setStatus(el.gatesStatus, 'None yet: a budget below 1 calibrates training-free gates on first use.');
  } else {
    setStatus(el.gatesStatus, `Active: ${g.kind} gates ${g.source}.`);
  }
}

/** After generation: pick up gates the worker calibrated by itself. */
async function refreshGates() {
  const m = state.model;
  if (!m || state.gates) return;
  try {
    const g = m.gates; // cached: exact once the generation's last reply arrived
    if (g && m === state.model && !state.gates) setGates({ kind: g.kind, source: '(calibrated automatically on first use)' });
  } catch {
    /* the model went away */
  }
  updateButtons();
}

// ---------------------------------------------------------------- budget
function showBudget(b) {
  el.budgetValue.textContent = b.toFixed(2);
  el.statBudget.textContent = b.toFixed(2);
  showBudgetCost(b);
}

/**
 * What budget b costs in quality, from measured perplexities (held-out text,
 * these gates): exact at a measured budget, else interpolated in log ppl
 * between the two nearest (marked ≈).
 */
function budgetCost(points, b) {
  if (!points || !points.length) return null;
  const pts = [...points].sort((x, y) => x.budget - y.budget);
  const dense = pts.find((p) => p.budget === 1) || pts[pts.length - 1];
  const exact = pts.find((p) => Math.abs(p.budget - b) < 1e-6);
  if (exact) return { ppl: exact.ppl, compute: exact.compute, dense: dense.ppl, approx: false };
  const hi = pts.findIndex((p) => p.budget > b);
  if (hi <= 0) return null; // outside what was measured
  const a = pts[hi - 1], c = pts[hi];
  const t = (b - a.budget) / (c.budget - a.budget);
  const ppl = Math.exp(Math.log(a.ppl) + t * (Math.log(c.ppl) - Math.log(a.ppl)));
  return { ppl, compute: a.compute + t * (c.compute - a.compute), dense: dense.ppl, approx: true };
}

function fmtPpl(p) {
  return p >= 1000 ? p.toExponential(1) : p >= 100 ? p.toFixed(0) : p.toFixed(1);
}

function showBudgetCost(b) {
  if (!el.budgetCost) return;
  const c = budgetCost(state.costs, b);
  if (!c) {
    el.budgetCost.textContent = state.model
      ? 'Quality cost: not measured for this model and gates.'
      : '';
    el.budgetCost.dataset.ppl = '';
    return;
  }
  const ratio = c.ppl / c.dense;
  el.budgetCost.textContent = `Quality cost at b = ${b.toFixed(2)}: perplexity ${c.approx ? '≈ ' : ''}${fmtPpl(c.ppl)}`
    + ` (dense ${fmtPpl(c.dense)}, ${ratio < 10 ? ratio.toFixed(2) : ratio.toFixed(0)}×) on held-out text, measured with these gates.`;
  el.budgetCost.dataset.ppl = String(c.ppl);
  el.budgetCost.classList.toggle('warn', ratio >= 2);
}

function applyBudgetToModel() {
  const m = state.model;
  if (!m) return;
  try {
    if (el.autoBudget.checked) {
      const target = num(el.autoTarget, { min: 0.01, fallback: 2 });
      m.autoBudget({ targetMsPerToken: target, min: 0.1, max: 1 }).catch((e) => setStatus(el.genStatus, describeError(e), 'error'));
    } else {
      m.budget = Number(el.budget.value);
    }
  } catch (e) {
    setStatus(el.genStatus, describeError(e), 'error');
  }
}

el.budget.addEventListener('input', () => {
  const b = Number(el.budget.value);
  showBudget(b);
  if (state.model && !el.autoBudget.checked) {
    try {
      state.model.budget = b; // sent to the worker: the next token runs under it
    } catch (e) {
      setStatus(el.genStatus, describeError(e), 'error');
    }
  }
});

el.autoBudget.addEventListener('change', () => {
  if (el.autoBudget.checked && !state.autoTargetEdited && state.tokens.length) {
    // a first guess: 60% of the last run's time per token
    const ms = state.tokens.reduce((a, t) => a + t.ms, 0) / state.tokens.length;
    if (ms > 0) el.autoTarget.value = String(Math.max(0.05, Math.round(ms * 0.6 * 100) / 100));
  }
  if (state.model) {
    if (el.autoBudget.checked) applyBudgetToModel();
    else {
      showBudget(Number(el.budget.value));
      state.model.autoBudget(null).then(() => applyBudgetToModel(), () => {});
    }
  }
  updateButtons();
});

el.autoTarget.addEventListener('change', () => {
  state.autoTargetEdited = true;
  if (el.autoBudget.checked) applyBudgetToModel();
});

// ---------------------------------------------------------------- tokens
let flushQueued = false;
let pending = [];

function clearTokens() {
  state.tokens = [];
  state.selected = -1;
  state.hover = -1;
  pending = [];
  el.output.replaceChildren();
  updateStats();
  drawStrip();
  renderMask();
}

function addPrompt(text) {
  const span = document.createElement('span');
  span.className = 'prompt';
  span.textContent = text;
  el.output.append(span);
}

function onToken(t) {
  if (t.id < 0) {
    // text held back until the end (no token of its own)
    if (t.text) pending.push({ tail: t.text });
  } else {
    const tok = {
      id: t.id, text: t.text, compute: t.compute ?? 1, budget: t.budget, ms: t.ms, mask: t.mask, position: t.position,
      drafted: !!t.drafted, accepted: !!t.accepted, speculation: t.speculation ?? null, el: null,
    };
    state.tokens.push(tok);
    pending.push(tok);
    const g = state.generating;
    if (g) {
      const now = performance.now();
      if (g.tFirst == null) g.tFirst = now;
      g.tLast = now;
    }
  }
  if (!flushQueued) {
    flushQueued = true;
    requestAnimationFrame(flush);
  }
}

function tokenTitle(t, i) {
  const base = `token ${i + 1} · id ${t.id} · compute ${t.compute.toFixed(3)} · budget ${t.budget.toFixed(2)} · ${t.ms.toFixed(2)} ms`;
  const sp = t.speculation;
  if (!sp) return base;
  const how = t.accepted ? 'drafted and accepted' : 'the whole model\'s own token';
  return `${base} · ${how} (step: ${sp.accepted} of ${sp.k} drafts accepted at draft budget ${sp.draftBudget.toFixed(2)})`;
}

function flush() {
  flushQueued = false;
  if (!pending.length) return;
  const out = el.output;
  const atBottom = out.scrollHeight - out.scrollTop - out.clientHeight < 40;
  const frag = document.createDocumentFragment();
  for (const p of pending) {
    if (p.tail != null) {
      frag.append(document.createTextNode(p.tail));
      continue;
    }
    const i = state.tokens.indexOf(p);
    const span = document.createElement('span');
    span.className = (p.text ? 'tok' : 'tok empty') + (p.accepted ? ' accepted' : '');
    if (p.speculation) span.dataset.accepted = String(p.accepted);
    span.dataset.testid = 'token';
    span.dataset.i = String(i);
    span.dataset.compute = p.compute.toFixed(4);
    span.dataset.budget = p.budget.toFixed(4);
    span.style.setProperty('--c', p.compute.toFixed(3));
    span.title = tokenTitle(p, i);
    span.tabIndex = i === 0 && state.selected < 0 ? 0 : -1;
    span.textContent = p.text;
    p.el = span;
    frag.append(span);
  }
  pending = [];
  out.append(frag);
  if (atBottom) out.scrollTop = out.scrollHeight;
  updateStats();
  if (el.autoBudget.checked && state.tokens.length) {
    const b = state.tokens[state.tokens.length - 1].budget;
    el.budget.value = String(b);
    showBudget(b);
  }
  drawStrip();
  if (state.selected < 0 && state.hover < 0) renderMask();
}

function updateStats() {
  const n = state.tokens.length;
  el.statTokens.textContent = String(n);
  if (!n) {
    el.statRate.textContent = '–';
    el.statMs.textContent = '–';
    el.statCompute.textContent = '–';
    el.statAccept.textContent = '–';
    return;
  }
  // speculative: the running rate of drafted tokens the whole model accepted
  const sp = state.tokens[n - 1].speculation;
  el.statAccept.textContent = sp ? `${Math.round(100 * sp.acceptance)}%` : '–';
  let c = 0;
  let ms = 0;
  for (const t of state.tokens) {
    c += t.compute;
    ms += t.ms;
  }
  el.statCompute.textContent = (c / n).toFixed(3);
  el.statMs.textContent = (ms / n).toFixed(2);
  const g = state.generating || state.lastRun;
  // wall-clock rate since Generate was pressed (prompt included): what the reader sees
  if (g && g.tLast != null && g.tLast > g.t0) {
    const rate = n / ((g.tLast - g.t0) / 1000);
    el.statRate.textContent = rate >= 100 ? rate.toFixed(0) : rate.toFixed(1);
  }
}

function readSampling() {
  const o = {
    temperature: num(el.temperature, { min: 0, max: 100, fallback: 1 }),
    topK: num(el.topK, { min: 0, int: true, fallback: 0 }),
    topP: num(el.topP, { min: 0.0001, max: 1, fallback: 1 }),
    maxTokens: num(el.maxTokens, { min: 1, int: true, fallback: 100 }),
    ignoreEos: el.ignoreEos.checked,
  };
  const seed = num(el.seed, { min: 0, int: true, fallback: undefined });
  if (seed !== undefined) o.seed = seed;
  return o;
}

const REASONS = {
  eos: 'stopped at the end of the text (EOS)',
  length: 'reached the maximum number of tokens',
  stop: 'hit a stop sequence',
  context: 'the context is full',
};

async function generate() {
  const m = state.model;
  if (!m || busy()) return;
  clearTokens();
  const prompt = el.prompt.value;
  addPrompt(prompt);
  const opts = readSampling();
  const ac = new AbortController();
  const run = { ac, t0: performance.now(), tFirst: null, tLast: null };
  state.generating = run;
  el.maskTitle.setAttribute('aria-live', 'off'); // no announcement per streamed token
  updateButtons();
  // speculative: off, adaptive (k and the draft budget chosen as it runs) or "k,budget" fixed
  const spec = el.speculative.value;
  const speculative = spec !== 'off';
  if (spec === 'adaptive') opts.speculative = true;
  else if (speculative) {
    const [k, draftBudget] = spec.split(',').map(Number);
    opts.speculative = { k, draftBudget };
  }
  const needsGates = (speculative || el.autoBudget.checked || Number(el.budget.value) < 1) && !m.gates;
  setStatus(el.genStatus, needsGates ? 'Generating… (calibrating training-free gates first: the first token takes a moment)' : 'Generating…');
  let message;
  let kind = '';
  try {
    const it = m.generate(prompt, { ...opts, signal: ac.signal });
    for (;;) {
      const r = await it.next();
      if (r.done) {
        const res = r.value || {};
        message = `Done: ${state.tokens.length} tokens — ${REASONS[res.reason] || res.reason || 'finished'}.`;
        const sp = res.speculation;
        if (sp) message += ` Speculative: ${sp.accepted} of ${sp.drafted} drafted tokens accepted (${Math.round(100 * sp.acceptance)}%) in ${sp.steps} steps.`;
        el.genStatus.dataset.reason = res.reason || '';
        break;
      }
      onToken(r.value);
    }
  } catch (e) {
    if (isAbort(e)) {
      message = `Stopped after ${state.tokens.length} tokens.`;
      el.genStatus.dataset.reason = 'stopped';
    } else {
      message = `Generation failed: ${describeError(e)}`;
      kind = 'error';
      el.genStatus.dataset.reason = 'error';
    }
  }
  state.lastRun = run;
  state.generating = null;
  el.maskTitle.setAttribute('aria-live', 'polite');
  flush();
  updateStats();
  setStatus(el.genStatus, message, kind);
  await refreshGates();
  updateButtons();
}

el.genForm.addEventListener('submit', (e) => {
  e.preventDefault();
  generate();
});
el.stop.addEventListener('click', () => state.generating?.ac.abort());
el.prompt.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    generate();
  }
});

// ---------------------------------------------------------------- selection
function current() {
  if (state.hover >= 0) return state.hover;
  if (state.selected >= 0) return state.selected;
  return state.tokens.length - 1;
}

function select(i, { focus = false } = {}) {
  const n = state.tokens.length;
  if (!n) return;
  i = Math.max(0, Math.min(n - 1, i));
  const prev = state.tokens[state.selected];
  if (prev && prev.el) {
    prev.el.classList.remove('selected');
    prev.el.tabIndex = -1;
    prev.el.removeAttribute('aria-current');
  }
  const first = state.tokens[0];
  if (first && first.el) first.el.tabIndex = -1;
  state.selected = i;
  const t = state.tokens[i];
  if (t.el) {
    t.el.classList.add('selected');
    t.el.tabIndex = 0;
    t.el.setAttribute('aria-current', 'true');
    if (focus) t.el.focus();
    t.el.scrollIntoView({ block: 'nearest' });
  }
  renderMask();
  drawStrip();
}

function tokenIndexOf(target) {
  const span = target && target.closest ? target.closest('.tok') : null;
  return span ? Number(span.dataset.i) : -1;
}

el.output.addEventListener('click', (e) => {
  const i = tokenIndexOf(e.target);
  if (i >= 0) select(i, { focus: true });
});
el.output.addEventListener('mouseover', (e) => {
  const i = tokenIndexOf(e.target);
  if (i >= 0 && i !== state.hover) {
    state.hover = i;
    renderMask();
    drawStrip();
  }
});
el.output.addEventListener('mouseleave', () => {
  if (state.hover >= 0) {
    state.hover = -1;
    renderMask();
    drawStrip();
  }
});
el.output.addEventListener('focusin', (e) => {
  const i = tokenIndexOf(e.target);
  if (i >= 0 && i !== state.selected) select(i);
});
el.output.addEventListener('keydown', (e) => {
  const n = state.tokens.length;
  if (!n) return;
  const at = state.selected >= 0 ? state.selected : n - 1;
  let to = null;
  if (e.key === 'ArrowRight' || e.key === 'ArrowDown') to = at + 1;
  else if (e.key === 'ArrowLeft' || e.key === 'ArrowUp') to = at - 1;
  else if (e.key === 'Home') to = 0;
  else if (e.key === 'End') to = n - 1;
  else if (e.key === 'Escape') {
    const t = state.tokens[state.selected];
    if (t && t.el) t.el.classList.remove('selected');
    state.selected = -1;
    renderMask();
    drawStrip();
    return;
  }
  if (to != null) {
    e.preventDefault();
    select(to, { focus: true });
  }
});

// ---------------------------------------------------------------- mask grid
function cellContent(td, symbol, text) {
  const vis = document.createElement('span');
  vis.setAttribute('aria-hidden', 'true');
  vis.textContent = symbol;
  const sr = document.createElement('span');
  sr.className = 'visually-hidden';
  sr.textContent = text;
  td.append(vis, sr);
}

function renderMask() {
  const grid = el.maskGrid;
  const info = state.info;
  const i = current();
  const t = state.tokens[i];
  if (!info || !t || !t.mask) {
    grid.replaceChildren();
    grid.dataset.layers = '0';
    grid.dataset.heads = '0';
    el.maskTitle.textContent = info ? 'Generate some text, then hover or select a token.' : 'No model loaded.';
    return;
  }
  const L = info.layers;
  const H = info.heads;
  const { layers, heads } = t.mask;
  const B = ffnBlocks(t.mask, L);
  let layersRan = 0;
  let headsRan = 0;
  for (let l = 0; l < L; l++) layersRan += layers[l] ? 1 : 0;
  for (let k = 0; k < L * H; k++) headsRan += heads[k] ? 1 : 0;
  const which = state.hover >= 0 ? 'hovered' : state.selected >= 0 ? 'selected' : 'newest';
  const shown = JSON.stringify(t.text);
  el.maskTitle.textContent = `Token ${i + 1} (${which}) ${shown}: compute ${t.compute.toFixed(3)} under budget ${t.budget.toFixed(2)}; ${layersRan} of ${L} layers and ${headsRan} of ${L * H} heads ran.`;

  const table = document.createElement('table');
  const cap = document.createElement('caption');
  cap.textContent = `Layers × heads for token ${i + 1}`;
  table.append(cap);
  const thead = document.createElement('thead');
  const hr = document.createElement('tr');
  const corner = document.createElement('th');
  corner.scope = 'col';
  corner.textContent = 'layer';
  const stateTh = document.createElement('th');
  stateTh.scope = 'col';
  stateTh.textContent = 'state';
  hr.append(corner, stateTh);
  for (let h = 0; h < H; h++) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = `h${h}`;
    th.title = `head ${h}`;
    hr.append(th);
  }
  thead.append(hr);
  table.append(thead);
  const tbody = document.createElement('tbody');
  for (let l = 0; l < L; l++) {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = `L${l}`;
    const ran = !!layers[l];
    const st = document.createElement('td');
    st.className = 'layer-state';
    let n = 0;
    for (let h = 0; h < H; h++) n += heads[l * H + h] ? 1 : 0;
    st.textContent = ran ? `${n}/${H}` : 'dozed';
    tr.append(th, st);
    tr.dataset.layer = String(l);
    tr.dataset.state = ran ? 'ran' : 'skipped';
    for (let h = 0; h < H; h++) {
      const td = document.createElement('td');
      const on = ran && !!heads[l * H + h];
      const s = !ran ? 'layer-skipped' : on ? 'ran' : 'skipped';
      td.className = `cell head ${!ran ? 'layer-off' : on ? 'ran' : 'off'}`;
      td.dataset.layer = String(l);
      td.dataset.head = String(h);
      td.dataset.state = s;
      td.title = `layer ${l}, head ${h}: ${!ran ? 'layer skipped' : on ? 'ran' : 'skipped'}`;
      cellContent(td, !ran ? '×' : on ? '●' : '○', !ran ? 'layer skipped' : on ? 'ran' : 'skipped');
      tr.append(td);
    }
    tbody.append(tr);
  }
  table.append(tbody);
  const parts = [table];

  if (B) {
    parts.push(unitRows(t.mask.ffn, layers, B, 'ffn', 'FFN', 'FFN blocks',
      `FFN blocks (${B} per layer)`));
  }
  // a mixture of experts: which of each layer's experts ran
  const E = t.mask.experts ? t.mask.experts.length / L : 0;
  if (E) parts.push(unitRows(t.mask.experts, layers, E, 'expert', 'experts', 'experts', `Experts (${E} per layer)`));
  grid.replaceChildren(...parts);
  grid.dataset.layers = String(L);
  grid.dataset.heads = String(H);
  grid.dataset.token = String(i);
  grid.dataset.ffnBlocks = String(B);
  grid.dataset.experts = String(E);
}

/** Rows of a per-layer unit (FFN blocks, experts): `on` (layers * per) 0/1, solid where it ran. */
function unitRows(on, layers, per, kind, rowLabel, noun, title) {
  const L = layers.length;
  const wrap = document.createElement('div');
  wrap.className = `ffn-wrap ${kind}-wrap`;
  const h = document.createElement('p');
  h.className = 'help';
  let ran = 0;
  for (let k = 0; k < L * per; k++) ran += on[k] ? 1 : 0;
  h.textContent = `${title}: ${ran} of ${L * per} ran. Solid: ran; outlined: skipped; hatched: layer skipped.`;
  wrap.append(h);
  for (let l = 0; l < L; l++) {
    const row = document.createElement('div');
    row.className = 'ffn-row';
    const lab = document.createElement('span');
    lab.className = 'lab';
    lab.textContent = `L${l} ${rowLabel}`;
    const cells = document.createElement('div');
    cells.className = 'ffn-cells';
    cells.setAttribute('role', 'img');
    let n = 0;
    for (let j = 0; j < per; j++) {
      const ok = !!layers[l] && !!on[l * per + j];
      n += ok ? 1 : 0;
      const c = document.createElement('span');
      c.className = `fcell ${kind} ${!layers[l] ? 'layer-off' : ok ? 'ran' : 'off'}`;
      c.dataset.state = !layers[l] ? 'layer-skipped' : ok ? 'ran' : 'skipped';
      cells.append(c);
    }
    cells.setAttribute('aria-label', `layer ${l}: ${layers[l] ? `${n} of ${per} ${noun} ran` : 'layer skipped'}`);
    const cnt = document.createElement('span');
    cnt.textContent = layers[l] ? `${n}/${per}` : 'dozed';
    row.append(lab, cells, cnt);
    wrap.append(row);
  }
  return wrap;
}

// ---------------------------------------------------------------- sequence strip
const MAX_COL = 14; // widest strip column, css px
let hatch = null;
function hatchPattern(ctx) {
  if (hatch) return hatch;
  const c = document.createElement('canvas');
  c.width = 4;
  c.height = 4;
  const g = c.getContext('2d');
  g.fillStyle = '#e6e9ec';
  g.fillRect(0, 0, 4, 4);
  g.fillStyle = '#57606a';
  for (let k = 0; k < 4; k++) g.fillRect(k, 3 - k, 1, 1);
  hatch = ctx.createPattern(c, 'repeat');
  return hatch;
}

function stripGeometry() {
  const info = state.info;
  const L = info ? info.layers : 1;
  const H = info ? info.heads : 1;
  const t0 = state.tokens.find((t) => t.mask);
  const B = info && t0 ? ffnBlocks(t0.mask, L) : 0;
  const rowsPerLayer = H + (B ? 1 : 0);
  const totalRows = L * rowsPerLayer;
  const gap = 2;
  const top = 8; // compute row + gap
  const rowH = Math.max(1, Math.min(6, Math.floor((200 - top - L * gap) / Math.max(1, totalRows))));
  const height = top + L * (rowsPerLayer * rowH + gap);
  return { L, H, B, rowsPerLayer, rowH, gap, top, height };
}

function drawStrip() {
  const canvas = el.strip;
  const geo = stripGeometry();
  el.ffnNote.hidden = !geo.B;
  const cssW = canvas.clientWidth || 300;
  const dpr = window.devicePixelRatio || 1;
  if (canvas.style.height !== `${geo.height}px`) canvas.style.height = `${geo.height}px`;
  const W = Math.round(cssW * dpr);
  const Hh = Math.round(geo.height * dpr);
  if (canvas.width !== W) canvas.width = W;
  if (canvas.height !== Hh) canvas.height = Hh;
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, geo.height);
  const toks = state.tokens;
  const n = toks.length;
  if (!n || !state.info) {
    ctx.fillStyle = '#57606a';
    ctx.font = '13px system-ui, sans-serif';
    ctx.fillText(state.info ? 'Masks appear here as tokens stream.' : 'Load a model to begin.', 8, Math.min(geo.height - 6, 24));
    el.stripSummary.textContent = 'No tokens yet.';
    return;
  }
  const cw = Math.min(MAX_COL, cssW / n);
  const { L, H, B, rowsPerLayer, rowH, gap, top } = geo;
  const pat = hatchPattern(ctx);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const t = toks[i];
    const x = i * cw;
    const w = Math.max(cw - (cw > 3 ? 1 : 0), 0.5);
    sum += t.compute;
    ctx.fillStyle = computeColour(t.compute, false);
    ctx.globalAlpha = 0.25 + 0.75 * t.compute;
    ctx.fillRect(x, 0, w, top - 2);
    ctx.globalAlpha = 1;
    if (!t.mask) continue;
    const { layers, heads } = t.mask;
    for (let l = 0; l < L; l++) {
      const y0 = top + l * (rowsPerLayer * rowH + gap);
      if (!layers[l]) {
        ctx.fillStyle = pat;
        ctx.fillRect(x, y0, w, rowsPerLayer * rowH);
        continue;
      }
      for (let h = 0; h < H; h++) {
        ctx.fillStyle = heads[l * H + h] ? '#0b6e66' : '#e6e9ec';
        ctx.fillRect(x, y0 + h * rowH, w, rowH);
      }
      if (B && t.mask.ffn) {
        let on = 0;
        for (let j = 0; j < B; j++) on += t.mask.ffn[l * B + j] ? 1 : 0;
        ctx.fillStyle = '#7a3e9d';
        ctx.globalAlpha = 0.15 + 0.85 * (on / B);
        ctx.fillRect(x, y0 + H * rowH, w, rowH);
        ctx.globalAlpha = 1;
      }
    }
  }
  const mark = (i, colour, lw) => {
    if (i < 0 || i >= n) return;
    ctx.strokeStyle = colour;
    ctx.lineWidth = lw;
    ctx.strokeRect(i * cw + 0.5, 0.5, Math.max(cw, 2) - 1, geo.height - 1);
  };
  mark(state.selected, '#1f6feb', 2);
  mark(state.hover, '#24292f', 1);
  el.stripSummary.textContent = `${n} tokens, mean compute ${(sum / n).toFixed(3)}.`;
  canvas.dataset.tokens = String(n);
}

function stripIndex(e) {
  const n = state.tokens.length;
  if (!n) return -1;
  const rect = el.strip.getBoundingClientRect();
  const cw = Math.min(MAX_COL, rect.width / n);
  const i = Math.floor((e.clientX - rect.left) / cw);
  return i >= 0 && i < n ? i : -1;
}
el.strip.addEventListener('click', (e) => {
  const i = stripIndex(e);
  if (i >= 0) select(i);
});
el.strip.addEventListener('mousemove', (e) => {
  const i = stripIndex(e);
  if (i !== state.hover) {
    state.hover = i;
    renderMask();
    drawStrip();
  }
});
el.strip.addEventListener('mouseleave', () => {
  state.hover = -1;
  renderMask();
  drawStrip();
});

// ---------------------------------------------------------------- gates file
el.gatesFile.addEventListener('change', async () => {
  const f = el.gatesFile.files && el.gatesFile.files[0];
  if (!f || !state.model) return;
  await loadGatesFrom(f, f.name);
  el.gatesFile.value = '';
});

// ---------------------------------------------------------------- fine-tuning
function updateFinetuneSupport() {
  if (!state.model) return;
  if (canFinetune()) {
    el.ftSupport.hidden = true;
  } else {
    el.ftSupport.hidden = false;
    el.ftSupport.textContent = 'This build of doze-lm has no finetuneGates(): fine-tuning is not available here. You can still load a trained gate file in the Model panel.';
  }
}

function textInfo() {
  const t = el.ftText.value;
  const stories = t.split(/^\s*<\|endoftext\|>\s*$/m).filter((s) => s.trim()).length;
  el.ftTextInfo.textContent = `${t.length.toLocaleString()} characters, ${stories} ${stories === 1 ? 'story' : 'stories'}`;
}
el.ftText.addEventListener('input', textInfo);
el.ftDefault.addEventListener('click', () => {
  el.ftText.value = state.defaultText;
  textInfo();
});

function drawChart() {
  const canvas = el.ftChart;
  const cssW = canvas.clientWidth || 300;
  const cssH = 180;
  const dpr = window.devicePixelRatio || 1;
  const W = Math.round(cssW * dpr);
  const H = Math.round(cssH * dpr);
  if (canvas.width !== W) canvas.width = W;
  if (canvas.height !== H) canvas.height = H;
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  const steps = state.ft.steps;
  const total = Math.max(state.ft.total, steps.length, 1);
  canvas.dataset.steps = String(steps.length);
  if (!state.finetuning && !steps.length) {
    ctx.fillStyle = '#57606a';
    ctx.font = '13px system-ui, sans-serif';
    ctx.fillText('Loss and compute appear here, step by step, while the gates train.', 12, 28, cssW - 24);
    return;
  }
  const pad = { l: 44, r: 40, t: 10, b: 24 };
  const pw = Math.max(10, cssW - pad.l - pad.r);
  const ph = cssH - pad.t - pad.b;
  ctx.font = '11px system-ui, sans-serif';
  ctx.lineWidth = 1;
  ctx.strokeStyle = '#d0d7de';
  ctx.strokeRect(pad.l, pad.t, pw, ph);
  let maxLoss = 0;
  for (const s of steps) if (Number.isFinite(s.loss)) maxLoss = Math.max(maxLoss, s.loss);
  maxLoss = maxLoss > 0 ? maxLoss * 1.1 : 1;
  const xOf = (k) => pad.l + (total <= 1 ? pw / 2 : ((k - 1) / (total - 1)) * pw);
  const yLoss = (v) => pad.t + ph - (Math.max(0, v) / maxLoss) * ph;
  const yC = (v) => pad.t + ph - Math.max(0, Math.min(1, v)) * ph;
  // axes labels
  ctx.fillStyle = '#57606a';
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (let k = 0; k <= 4; k++) {
    const v = (maxLoss * k) / 4;
    const y = yLoss(v);
    ctx.fillText(v < 10 ? v.toFixed(2) : v.toFixed(0), pad.l - 4, y);
    ctx.strokeStyle = '#eef0f2';
    ctx.beginPath();
    ctx.moveTo(pad.l, y);
    ctx.lineTo(pad.l + pw, y);
    ctx.stroke();
  }
  ctx.textAlign = 'left';
  for (let k = 0; k <= 4; k++) ctx.fillText((k / 4).toFixed(2), pad.l + pw + 4, yC(k / 4));
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  ctx.fillText('step 1', pad.l + 16, pad.t + ph + 6);
  ctx.fillText(`step ${total}`, pad.l + pw - 20, pad.t + ph + 6);
  // budget
  ctx.setLineDash([6, 4]);
  ctx.strokeStyle = '#6e7781';
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  ctx.moveTo(pad.l, yC(state.ft.budget));
  ctx.lineTo(pad.l + pw, yC(state.ft.budget));
  ctx.stroke();
  const line = (get, y, colour, dash, lw) => {
    if (!steps.length) return;
    ctx.setLineDash(dash);
    ctx.strokeStyle = colour;
    ctx.lineWidth = lw;
    ctx.beginPath();
    steps.forEach((s, k) => {
      const px = xOf(k + 1);
      const py = y(get(s));
      if (k === 0) ctx.moveTo(px, py);
      else ctx.lineTo(px, py);
    });
    ctx.stroke();
    if (steps.length === 1) {
      ctx.fillStyle = colour;
      ctx.fillRect(xOf(1) - 2, y(get(steps[0])) - 2, 4, 4);
    }
  };
  line((s) => s.compute, yC, '#0b6e66', [2, 3], 2.5);
  line((s) => s.loss, yLoss, '#b35900', [], 2);
  ctx.setLineDash([]);
}

let chartQueued = false;
function queueChart() {
  if (chartQueued) return;
  chartQueued = true;
  requestAnimationFrame(() => {
    chartQueued = false;
    drawChart();
  });
}

async function finetune() {
  const m = state.model;
  if (!m || busy() || !canFinetune()) return;
  const text = el.ftText.value.trim() ? el.ftText.value : state.defaultText;
  const ctxMax = state.info.contextLength;
  const opts = {
    budget: num(el.ftBudget, { min: 0.05, max: 1, fallback: 0.7 }),
    steps: num(el.ftSteps, { min: 1, max: 100000, int: true, fallback: 40 }),
    contextLength: num(el.ftCtx, { min: 2, max: ctxMax, int: true, fallback: Math.min(64, ctxMax) }),
    batch: num(el.ftBatch, { min: 1, max: 256, int: true, fallback: 4 }),
    lr: num(el.ftLr, { min: 1e-7, max: 1, fallback: 2e-2 }),
    seed: num(el.ftSeed, { min: 0, int: true, fallback: 1 }),
  };
  const ac = new AbortController();
  state.finetuning = { ac };
  state.ft = { steps: [], total: opts.steps, budget: opts.budget };
  drawChart();
  updateButtons();
  setStatus(el.ftStatus, `Preparing: encoding the text and calibrating starting gates…`);
  el.ftChart.setAttribute('aria-label', 'Fine-tuning chart: starting');
  const t0 = performance.now();
  if (el.ftInit.checked && m.gates) opts.init = m.gates;
  try {
    await m.finetuneGates(text, {
      ...opts,
      signal: ac.signal,
      onStep: (s) => {
        state.ft.steps.push(s);
        const msg = `Step ${s.step} of ${opts.steps}: loss ${s.loss.toFixed(4)} (KL ${s.kl.toFixed(4)}), compute ${s.compute.toFixed(3)} for b = ${opts.budget.toFixed(2)} · ${Math.round(s.tokensPerSecond)} tokens/s`;
        setStatus(el.ftStatus, msg);
        el.ftChart.setAttribute('aria-label', `Fine-tuning chart. ${msg}`);
        queueChart();
      },
    });
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    setGates({ kind: 'trained', source: `(fine-tuned here for b = ${opts.budget.toFixed(2)})` });
    setStatus(el.ftStatus, `Done in ${secs} s: trained gates are active. Budget set to ${opts.budget.toFixed(2)}; download them below or generate to see the new masks.`);
    el.ftStatus.dataset.done = 'true';
    if (!el.autoBudget.checked) {
      el.budget.value = String(opts.budget);
      showBudget(Number(el.budget.value));
      applyBudgetToModel();
    }
  } catch (e) {
    setStatus(el.ftStatus, isAbort(e) ? `Stopped after ${state.ft.steps.length} steps; the previous gates stay active.` : `Fine-tuning failed: ${describeError(e)}`, isAbort(e) ? '' : 'error');
  }
  state.finetuning = null;
  drawChart();
  updateButtons();
}

el.ftForm.addEventListener('submit', (e) => {
  e.preventDefault();
  finetune();
});
el.ftStop.addEventListener('click', () => state.finetuning?.ac.abort());

el.ftDownload.addEventListener('click', async () => {
  const m = state.model;
  if (!m) return;
  try {
    const bytes = await m.saveGates();
    const blob = new Blob([bytes], { type: 'application/octet-stream' });
    const url = URL.createObjectURL(blob);
    const a = document.createElement('a');
    const kind = (state.gates && state.gates.kind) || 'gates';
    const base = state.modelName.replace(/\.gguf$/i, '').replace(/[^\w.-]+/g, '_') || 'model';
    a.href = url;
    a.download = `${base}.${kind}.b${Number(el.budget.value).toFixed(2)}.gates.gguf`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30000);
    setStatus(el.ftStatus, `Saved the gate file (${fmtBytes(bytes.byteLength)}).`);
  } catch (e) {
    setStatus(el.ftStatus, `Could not save the gates: ${describeError(e)}`, 'error');
  }
});

// ---------------------------------------------------------------- model sources
el.modelFile.addEventListener('change', () => {
  const f = el.modelFile.files && el.modelFile.files[0];
  if (f) load(f, f.name);
});
el.urlForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const u = el.modelUrl.value.trim();
  if (!u) {
    setStatus(el.modelStatus, 'Enter the URL of a .gguf file.', 'error');
    el.modelUrl.focus();
    return;
  }
  let name = u;
  try {
    name = decodeURIComponent(new URL(u, location.href).pathname.split('/').pop()) || u;
  } catch {
    /* keep the text */
  }
  load(u, name);
});
el.cancelLoad.addEventListener('click', () => state.loading?.ac.abort());

// ---------------------------------------------------------------- resize
let resizeQueued = false;
window.addEventListener('resize', () => {
  if (resizeQueued) return;
  resizeQueued = true;
  requestAnimationFrame(() => {
    resizeQueued = false;
    drawStrip();
    drawChart();
  });
});

// ---------------------------------------------------------------- start
async function start() {
  showBudget(Number(el.budget.value));
  drawStrip();
  drawChart();
  renderMask();
  updateButtons();
  if (!hasWasmSimd()) {
    el.supportNote.hidden = false;
    el.supportNote.textContent = 'This browser does not support WebAssembly SIMD, which Doze needs (Chrome ≥ 91, Firefox ≥ 89, Safari ≥ 16.4).';
    el.supportNote.classList.add('error');
    return;
  }
  // the default fine-tuning text
  fetch('default-text.txt').then((r) => (r.ok ? r.text() : '')).then((t) => {
    state.defaultText = t;
    if (!el.ftText.value) el.ftText.value = t;
    textInfo();
  }, () => {});

  const params = new URLSearchParams(location.search);
  let cfg = null;
  try {
    const r = await fetch('config.json', { cache: 'no-store' });
    if (r.ok) cfg = await r.json();
  } catch {
    /* a static host without the demo server */
  }
  if (cfg && cfg.defaultCosts && cfg.defaultGates) {
    try {
      const r = await fetch(cfg.defaultCosts);
      if (r.ok) state.defaultCosts = { gates: cfg.defaultGates, points: (await r.json()).points };
    } catch {
      /* no costs: the slider says so */
    }
  }
  const modelUrl = params.get('model') || (cfg && cfg.defaultModel) || null;
  const gatesUrl = params.get('gates') || (params.get('model') ? null : cfg && cfg.defaultGates) || null;
  if (modelUrl) {
    const name = modelUrl.split('/').pop();
    el.defaultRow.hidden = false;
    el.defaultName.textContent = name;
    el.loadDefault.addEventListener('click', () => load(modelUrl, name, { gatesUrl }));
    await load(modelUrl, name, { gatesUrl });
  } else {
    el.progressText.textContent = 'No model loaded';
    setStatus(el.modelStatus, 'No default model on this server: open a GGUF file or enter a URL below.');
    el.modelStatus.dataset.fallback = 'true';
  }
  document.body.dataset.ready = 'true';
}

// for debugging from the console (and tests): read-only views of the state
window.dozeDemo = { state, renderMask, drawStrip, onToken };

start();
