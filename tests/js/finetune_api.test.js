// Gate fine-tuning from doze-lm: model.finetuneGates(text, options) gives the
// same gate file, byte for byte, as `doze finetune` (native and wasm CLI) with
// the same options, and the same per-step losses; onStep, abort (heap back to
// baseline, the model still usable), dispose mid-run, `init`, the trained
// gates holding their budget on held-out text, and the argument errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, heapUsed, DozeError, Gates } from '../../js/src/index.js';
import { hasShared, run, scratch, shared } from './helpers.js';
import { storiesModel } from './package_fixtures.js';

const dir = scratch();
const INIT_ARGS = ['--dim', '64', '--hidden', '160', '--layers', '3', '--heads', '4', '--kv-heads', '4',
  '--vocab', '300', '--ctx', '256', '--seed', '3'];

function cli(which, args) {
  const r = run(which, args);
  if (r.status !== 0) throw new Error(`doze ${args[0]} (${which}) failed: ${r.stderr}`);
  return r;
}

const initPath = join(dir, 'ft-init.gguf');
cli('native', ['init', ...INIT_ARGS, '-o', initPath]);
const storiesPath = storiesModel(dir);

/** Stories separated by "<|endoftext|>" lines: TinyStories where present, else generated. */
function storyText(bytes, offset = 0) {
  if (hasShared) {
    const all = readFileSync(join(shared, 'text', 'tinystories-train.txt'));
    return all.subarray(offset, offset + bytes).toString('utf8').replace(/\uFFFD+$/, '');
  }
  const names = ['Tom', 'Lily', 'Ben', 'Mia', 'Sam', 'Anna'];
  const things = ['ball', 'kite', 'cake', 'boat', 'tree', 'dog'];
  let seed = 17 + offset;
  const rnd = (n) => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
  let s = '';
  while (s.length < bytes) {
    const who = names[rnd(names.length)];
    const what = things[rnd(things.length)];
    s += `Once upon a time, there was a child named ${who}. ${who} had a big ${what}. ` +
      `One day ${who} took the ${what} to the park and played with a friend. They were very happy.\n<|endoftext|>\n`;
  }
  return s;
}
const TEXT = storyText(20000);
const HELD_OUT = storyText(4000, 600000); // stories the gates were not trained on
const textFile = join(dir, 'ft-text.txt');
writeFileSync(textFile, TEXT);

/** `doze finetune ... -o F` on `which` CLI: the file's bytes and the printed step lines. */
function cliFinetune(which, model, o, extra = []) {
  const out = join(dir, `ft-${which}-${o.budget}-${o.seed}-${extra.length}.gguf`);
  const r = cli(which, ['finetune', model, textFile, '--budget', String(o.budget), '--steps', String(o.steps),
    '--ctx', String(o.contextLength), '--batch', String(o.batch), '--seed', String(o.seed), ...extra, '-o', out]);
  const steps = r.stdout.toString().split('\n').filter((l) => l.startsWith('step')).map((l) => {
    const m = /^step\s+(\d+)\s+loss (\S+)\s+kl (\S+)\s+compute (\S+) \(expected (\S+)\)\s+tau (\S+)/.exec(l);
    assert.ok(m, `a step line: ${l}`);
    return { step: Number(m[1]), loss: m[2], kl: m[3], compute: m[4], expectedCompute: m[5], tau: m[6] };
  });
  return { bytes: new Uint8Array(readFileSync(out)), steps };
}

/** x printed with `decimals` decimals (printf %.Nf, correctly rounded) is `printed`. */
function printsAs(x, printed, decimals) {
  const ulp = 10 ** -decimals;
  return Math.abs(x - Number(printed)) <= ulp / 2 + 1e-12 && (printed.split('.')[1] || '').length === decimals;
}

function checkSteps(js, printed, what) {
  assert.equal(js.length, printed.length, `${what}: one onStep per printed step`);
  js.forEach((s, i) => {
    const p = printed[i];
    assert.equal(s.step, p.step, `${what}: step number`);
    assert.ok(printsAs(s.loss, p.loss, 4), `${what} step ${p.step}: loss ${s.loss} vs printed ${p.loss}`);
    assert.ok(printsAs(s.kl, p.kl, 4), `${what} step ${p.step}: kl ${s.kl} vs printed ${p.kl}`);
    assert.ok(printsAs(s.compute, p.compute, 3), `${what} step ${p.step}: compute ${s.compute} vs ${p.compute}`);
    assert.ok(printsAs(s.expectedCompute, p.expectedCompute, 3), `${what} step ${p.step}: expected compute`);
    assert.ok(printsAs(s.tau, p.tau, 3), `${what} step ${p.step}: tau`);
  });
}

function checkStepObjects(steps, n, o, complete = true) {
  assert.equal(steps.length, n, 'onStep called once per step');
  steps.forEach((s, i) => {
    assert.equal(s.step, i + 1);
    for (const k of ['loss', 'kl', 'compute', 'expectedCompute', 'tau', 'tokensPerSecond', 'ms']) {
      assert.equal(typeof s[k], 'number', k);
      assert.ok(Number.isFinite(s[k]), `${k} is finite: ${s[k]}`);
    }
    assert.ok(s.compute > 0 && s.compute <= 1, `compute ${s.compute} in (0, 1]`);
    assert.ok(s.expectedCompute > 0 && s.expectedCompute <= 1, `expected compute ${s.expectedCompute}`);
    assert.ok(s.loss >= 0 && s.kl >= -1e-6 && s.loss >= s.kl - 1e-6);
    assert.ok(s.tokensPerSecond > 0 && s.ms >= 0);
    if (s.ms > 0) assert.ok(Math.abs(s.tokensPerSecond * s.ms - o.batch * o.contextLength * 1000) < 1e-3 * s.tokensPerSecond * s.ms);
  });
  assert.equal(steps[0].tau, 1, 'tau starts at 1');
  if (complete) assert.ok(Math.abs(steps[n - 1].tau - 0.2) < 1e-6, 'and ends at 0.2');
}

const O = { budget: 0.6, steps: 8, contextLength: 64, batch: 4, seed: 5 };

test('finetuneGates = `doze finetune` (native and wasm CLI): the same gate file byte for byte, the same losses per step', async () => {
  const native = cliFinetune('native', initPath, O);
  const wasm = cliFinetune('wasm', initPath, O);
  assert.deepEqual(wasm.bytes, native.bytes, 'wasm CLI = native CLI');
  assert.deepEqual(wasm.steps, native.steps);
  const m = await loadModel(initPath);
  try {
    const steps = [];
    const g = await m.finetuneGates(TEXT, { ...O, onStep: (s) => steps.push(s) });
    assert.ok(g instanceof Gates);
    assert.equal(g.kind, 'trained');
    assert.equal(m.gates, g, 'activated');
    assert.deepEqual([g.layers, g.heads], [3, 4]);
    const bytes = m.saveGates();
    assert.equal(bytes.length, native.bytes.length);
    assert.deepEqual(bytes, native.bytes, 'JS saveGates() = the CLI gate file');
    checkStepObjects(steps, O.steps, O);
    checkSteps(steps, native.steps, 'init model');
    // loadGates restores them (another model object of the same file)
    const m2 = await loadModel(initPath);
    try {
      const g2 = m2.loadGates(bytes);
      assert.equal(g2.kind, 'trained');
      assert.deepEqual(m2.saveGates(), bytes);
      m2.budget = O.budget;
      m.budget = O.budget;
      const a = await m.complete('Once upon a time', { maxTokens: 30, temperature: 0, ignoreEos: true });
      const b = await m2.complete('Once upon a time', { maxTokens: 30, temperature: 0, ignoreEos: true });
      assert.equal(b, a);
    } finally {
      m2.dispose();
    }
    // activate: false leaves the active gates alone; another seed, other gates
    const other = await m.finetuneGates(TEXT, { ...O, seed: 6, activate: false });
    assert.equal(m.gates, g);
    assert.notDeepEqual(other.save(), bytes);
    console.log(`# init model: ${O.steps} steps, ${bytes.length}-byte gate file = CLI's; losses ${steps.map((s) => s.loss.toFixed(4)).join(' ')}`);
  } finally {
    m.dispose();
  }
});

test('stories260K from given gates (init): bytes and losses (nonzero KL) equal `doze finetune --gates`; held-out perplexity at b holds compute within 0.05', { skip: !storiesPath && 'stories260K not present' }, async () => {
  const o = { budget: 0.5, steps: 6, contextLength: 64, batch: 4, seed: 9 };
  const m = await loadModel(storiesPath);
  try {
    // the initial gates: training-free on a calibration text, from JS and from the CLI
    const calib = storyText(3000, 300000);
    const calibFile = join(dir, 'calib.txt');
    writeFileSync(calibFile, calib);
    const initFile = join(dir, 'stories-init-gates.gguf');
    cli('native', ['gates', storiesPath, '--calib', calibFile, '-o', initFile]);
    const init = await m.calibrateGates({ text: calib, activate: false });
    assert.deepEqual(init.save(), new Uint8Array(readFileSync(initFile)));
    const native = cliFinetune('native', storiesPath, o, ['--gates', initFile]);
    const steps = [];
    const g = await m.finetuneGates(TEXT, { ...o, init, onStep: (s) => steps.push(s) });
    assert.deepEqual(g.save(), native.bytes, 'JS = CLI from the given gates');
    assert.ok(!init.disposed && init.save().length > 0, 'init is copied, not consumed');
    assert.notDeepEqual(g.save(), init.save());
    checkStepObjects(steps, o.steps, o);
    checkSteps(steps, native.steps, 'stories260K');
    assert.ok(steps.some((s) => s.kl > 1e-3), 'a real KL');
    // training-free start: also equal
    const fresh = cliFinetune('native', storiesPath, o);
    const g0 = await m.finetuneGates(TEXT, { ...o, activate: false });
    assert.deepEqual(g0.save(), fresh.bytes);

    // the trained gates at the trained budget, on stories they were not trained on
    const r = await m.perplexity(HELD_OUT, { budget: o.budget });
    const dense = await m.perplexity(HELD_OUT, { budget: 1 });
    assert.ok(Math.abs(r.compute - o.budget) <= 0.05, `held-out compute ${r.compute} at b ${o.budget}`);
    assert.ok(Number.isFinite(r.perplexity) && r.perplexity >= dense.perplexity * 0.99);
    console.log(`# stories260K: losses ${steps.map((s) => s.loss.toFixed(4)).join(' ')}, kl ${steps.map((s) => s.kl.toFixed(4)).join(' ')}; ` +
      `held-out ppl ${r.perplexity.toFixed(3)} at compute ${r.compute.toFixed(4)} (b ${o.budget}) vs dense ${dense.perplexity.toFixed(3)}`);
  } finally {
    m.dispose();
  }
});

test('init model: the trained gates hold the trained budget on held-out text (compute within 0.05)', async () => {
  const m = await loadModel(initPath);
  try {
    for (const budget of [0.5, 0.8]) {
      await m.finetuneGates(TEXT, { ...O, budget, steps: 6 });
      const r = await m.perplexity(HELD_OUT, { budget });
      assert.ok(Math.abs(r.compute - budget) <= 0.05, `b ${budget}: compute ${r.compute}`);
      console.log(`# init model b ${budget}: held-out compute ${r.compute.toFixed(4)} over ${r.tokens} tokens`);
    }
  } finally {
    m.dispose();
  }
});

test('abort after 2 steps: AbortError (ABORTED), the run freed (heap back to baseline), the model still generates', async () => {
  const m = await loadModel(initPath);
  try {
    const before = await m.complete('Once upon a time', { maxTokens: 20, temperature: 0, ignoreEos: true });
    const base = await heapUsed();
    const ac = new AbortController();
    const seen = [];
    await assert.rejects(
      m.finetuneGates(TEXT, { ...O, steps: 50, signal: ac.signal, onStep: (s) => {
        seen.push(s);
        if (s.step === 2) ac.abort();
      } }),
      (e) => e instanceof DozeError && e.code === 'ABORTED' && e.name === 'AbortError',
    );
    assert.equal(seen.length, 2, 'stopped right after the step that aborted');
    checkStepObjects(seen, 2, O, false);
    assert.equal(await heapUsed(), base, 'heap back to its baseline');
    assert.equal(m.gates, null, 'no gates were made');
    const after = await m.complete('Once upon a time', { maxTokens: 20, temperature: 0, ignoreEos: true });
    assert.equal(after, before, 'the model generates as before');
    assert.ok(after.length > 0);
    // an abort reason is kept; a signal aborted up front rejects at once
    const pre = new AbortController();
    pre.abort('stop');
    await assert.rejects(m.finetuneGates(TEXT, { ...O, signal: pre.signal }), { code: 'ABORTED' });
    assert.equal(await heapUsed(), base);
    // a run after the abort still equals the uninterrupted one
    const g = await m.finetuneGates(TEXT, O);
    assert.deepEqual(g.save(), cliFinetune('native', initPath, O).bytes);
    g.dispose();
    assert.equal(await heapUsed(), base);
  } finally {
    m.dispose();
  }
});

test('dispose() during a run: the run is freed with the model and rejects with STATE', async () => {
  const base = await heapUsed();
  const m = await loadModel(initPath);
  const p = m.finetuneGates(TEXT, { ...O, steps: 50, onStep: (s) => s.step === 3 && m.dispose() });
  await assert.rejects(p, { code: 'STATE' });
  assert.equal(await heapUsed(), base);
});

test('finetuneGates: invalid arguments', async () => {
  const m = await loadModel(initPath);
  const other = await loadModel(initPath);
  try {
    const foreign = await other.calibrateGates({ text: TEXT });
    const base = await heapUsed();
    const bad = { code: 'INVALID_ARGUMENT' };
    await assert.rejects(m.finetuneGates(TEXT, { budget: 0 }), bad);
    await assert.rejects(m.finetuneGates(TEXT, { budget: 1.5 }), bad);
    await assert.rejects(m.finetuneGates(TEXT, { steps: 0 }), bad);
    await assert.rejects(m.finetuneGates(TEXT, { batch: 2.5 }), bad);
    await assert.rejects(m.finetuneGates(TEXT, { lr: -1 }), bad);
    await assert.rejects(m.finetuneGates(42), bad);
    await assert.rejects(m.finetuneGates(TEXT, { init: {} }), bad);
    await assert.rejects(m.finetuneGates(TEXT, { init: foreign }), bad);
    await assert.rejects(m.finetuneGates(TEXT, { ...O, contextLength: 512 }), (e) => e.code === 'INVALID_ARGUMENT' && /context/.test(e.message),
      'a window longer than the context (C check)');
    await assert.rejects(m.finetuneGates('Once upon a time.', O), (e) => e.code === 'INVALID_ARGUMENT' && /fewer than one window/.test(e.message));
    assert.equal(await heapUsed(), base, 'failed runs leave nothing behind');
  } finally {
    m.dispose();
    other.dispose();
  }
  await assert.rejects(m.finetuneGates(TEXT, O), { code: 'STATE' });
});
