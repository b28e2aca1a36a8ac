// Head/layer skipping from doze-lm: masks and compute in token objects,
// budget (also changed mid-generation), forced masks, gates made / saved /
// loaded in JS equal to the CLI's gate files and generations, perplexity
// under a budget, and the errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadModel, heapUsed, DozeError, Gates } from '../../js/src/index.js';
import { sharedSkip } from './helpers.js';
import { continuation, initModel } from './package_fixtures.js';
import {
  calibText, cliGates, cliGenerateMasked, collect, dir, maskString, mean, skipInitModel, storiesModel,
} from './skip_fixtures.js';

const initPath = skipInitModel(3);
const otherPath = skipInitModel(4); // same shape, other weights
const storiesPath = storiesModel(dir);
const PROMPT = 'Once upon a time';
const TEXT = calibText();

/** Every byte is 1. */
const allOnes = (a) => a.every((x) => x === 1);

test('budget 1: every token is dense (compute 1, all-ones masks) and equals the dense generation', async () => {
  const m = await loadModel(initPath);
  try {
    const opts = { temperature: 1, seed: 11, maxTokens: 60, ignoreEos: true };
    const dense = await collect(m.generate(PROMPT, opts)); // no gates at all
    assert.equal(m.gates, null);
    for (const t of dense.tokens) {
      assert.equal(t.compute, 1);
      assert.equal(t.budget, 1);
      assert.ok(allOnes(t.mask.layers) && t.mask.layers.length === m.info.layers);
      assert.ok(allOnes(t.mask.heads) && t.mask.heads.length === m.info.layers * m.info.heads);
      assert.ok(t.ms >= 0);
    }
    await m.calibrateGates({ text: TEXT });
    assert.ok(m.gates instanceof Gates);
    m.budget = 1;
    const gated = await collect(m.generate(PROMPT, opts));
    assert.deepEqual(gated.ids, dense.ids, 'gates at b = 1 change nothing');
    assert.equal(gated.text, dense.text);
    assert.ok(gated.tokens.every((t) => t.compute === 1 && allOnes(t.mask.layers) && allOnes(t.mask.heads)));
    // the prompt steps too
    const steps = [];
    await collect(m.generate(PROMPT, { ...opts, maxTokens: 3, onPromptStep: (s) => steps.push(s) }));
    assert.equal(steps.length, m.tokenize(PROMPT).length);
    assert.deepEqual(steps.map((s) => s.position), steps.map((_, i) => i));
    assert.ok(steps.every((s) => s.compute === 1 && allOnes(s.mask.layers)));
    console.log(`# b = 1: ${dense.ids.length} tokens, all dense, same ids with and without gates`);
  } finally {
    m.dispose();
  }
});

test('forced masks: all-on equals the dense logits; masks come back exactly', async () => {
  const m = await loadModel(initPath);
  try {
    const { layers: L, heads: H } = m.info;
    const ids = m.tokenize('The cat sat on the mat and looked at the dog');
    const a = m.createSession();
    const b = m.createSession();
    for (const id of ids) {
      const dense = await a.step(id);
      const forced = await b.step(id, { layers: new Array(L).fill(1), heads: new Array(L * H).fill(1) });
      assert.deepEqual(forced.logits, dense.logits, 'all-on forced mask = dense, bit for bit');
      assert.equal(forced.compute, 1);
      assert.equal(dense.compute, 1);
      assert.equal(forced.position, dense.position);
    }
    assert.equal(a.position, ids.length);
    // random masks (heads of a skipped layer off: that is how a skipped layer reports them)
    let seed = 99;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 1;
    const s = m.createSession();
    const computes = [];
    for (let i = 0; i < 24; i++) {
      const layers = Array.from({ length: L }, (_, l) => (l === 0 ? 1 : rnd()));
      const heads = Array.from({ length: L }, (_, l) => Array.from({ length: H }, () => (layers[l] ? rnd() : 0)));
      const r = await s.step(ids[i % ids.length], { layers, heads }); // nested heads form
      assert.deepEqual(Array.from(r.mask.layers), layers);
      assert.deepEqual(Array.from(r.mask.heads), heads.flat());
      assert.ok(r.compute > 0 && r.compute <= 1);
      computes.push(r.compute);
    }
    assert.ok(Math.min(...computes) < 0.8, 'masks that skip spend less');
    // layers only: every head of a running layer; booleans accepted
    const r = await s.step(ids[0], { layers: Array.from({ length: L }, (_, l) => l % 2 === 0) });
    assert.deepEqual(Array.from(r.mask.layers), Array.from({ length: L }, (_, l) => (l % 2 === 0 ? 1 : 0)));
    assert.deepEqual(Array.from(r.mask.heads), Array.from({ length: L * H }, (_, i) => (Math.floor(i / H) % 2 === 0 ? 1 : 0)));
    // bad masks
    await assert.rejects(s.step(ids[0], { layers: [1, 0] }), (e) => e instanceof DozeError && e.code === 'INVALID_ARGUMENT');
    await assert.rejects(s.step(ids[0], { layers: new Array(L).fill(1), heads: [1] }), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(s.step(-1), { code: 'TOKEN_RANGE' });
    console.log(`# forced masks: ${ids.length} all-on steps = dense; 24 random masks reported back; compute ${Math.min(...computes).toFixed(3)}..${Math.max(...computes).toFixed(3)}`);
  } finally {
    m.dispose();
  }
});

test('gates hold the budget: mean compute within 0.03 of b = 0.5 and 0.8; a new budget applies from the next token', async () => {
  const m = await loadModel(initPath);
  try {
    await m.calibrateGates({ text: TEXT });
    const figures = [];
    for (const b of [0.5, 0.8]) {
      m.budget = b;
      const r = await collect(m.generate(PROMPT, { temperature: 1, seed: 5, maxTokens: 200, ignoreEos: true }));
      assert.equal(r.tokens.length, 200);
      assert.ok(r.tokens.every((t) => t.budget === b));
      const c = mean(r.tokens.map((t) => t.compute));
      figures.push(`b ${b}: mean compute ${c.toFixed(4)}`);
      assert.ok(Math.abs(c - b) <= 0.03, `b ${b}: mean compute ${c}`);
      assert.ok(r.tokens.some((t) => !allOnes(t.mask.layers) || !allOnes(t.mask.heads) || !allOnes(t.mask.ffn)), 'something was skipped');
    }
    // mid-generation: b = 1 for 40 tokens, then 0.5
    m.budget = 1;
    const seen = [];
    for await (const t of m.generate(PROMPT, { temperature: 1, seed: 6, maxTokens: 160, ignoreEos: true })) {
      seen.push(t);
      if (seen.length === 40) m.budget = 0.5;
    }
    assert.ok(seen.slice(0, 40).every((t) => t.budget === 1 && t.compute === 1), 'dense before the change');
    assert.ok(seen.slice(40).every((t) => t.budget === 0.5), 'the next token on runs at the new budget');
    assert.ok(seen[40].compute < 1, 'the very next token skips');
    const after = mean(seen.slice(40).map((t) => t.compute));
    assert.ok(Math.abs(after - 0.5) <= 0.04, `mean compute after the change ${after}`);
    console.log(`# ${figures.join('; ')}; after a mid-generation change to 0.5: ${after.toFixed(4)}`);
  } finally {
    m.dispose();
  }
});

test('budget validation, sessions follow the model until set', async () => {
  const m = await loadModel(initPath);
  try {
    for (const bad of [0, -0.5, 1.5, NaN, '0.5', null, undefined]) {
      assert.throws(() => (m.budget = bad), (e) => e instanceof DozeError && e.code === 'INVALID_ARGUMENT', String(bad));
    }
    assert.equal(m.budget, 1);
    const s = m.createSession();
    m.budget = 0.7;
    assert.equal(s.budget, 0.7, 'a session follows the model');
    s.budget = 0.4;
    assert.equal(s.budget, 0.4);
    assert.equal(m.budget, 0.7);
    assert.throws(() => (s.budget = 2), { code: 'INVALID_ARGUMENT' });
    s.budget = null;
    assert.equal(s.budget, 0.7, 'null: follow the model again');
    await assert.rejects(m.perplexity('hello there', { budget: 0 }), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => m.saveGates(), { code: 'STATE' });
    assert.throws(() => (m.gates = {}), { code: 'INVALID_ARGUMENT' });
  } finally {
    m.dispose();
  }
});

test('a budget < 1 without gates calibrates on first use (= `doze gates MODEL`); gates = null is dense', async () => {
  const base = await heapUsed();
  const cliFile = readFileSync(cliGates(initPath, { name: 'self' }));
  const m = await loadModel(initPath);
  try {
    m.budget = 0.5;
    assert.equal(m.gates, null);
    const r = await collect(m.generate(PROMPT, { temperature: 0, maxTokens: 30, ignoreEos: true }));
    assert.ok(m.gates instanceof Gates, 'calibrated on first use');
    assert.equal(m.gates.kind, 'training-free');
    assert.deepEqual(m.saveGates(), new Uint8Array(cliFile), 'the same gate file as `doze gates MODEL -o F`');
    assert.ok(mean(r.tokens.map((t) => t.compute)) < 0.7);
    // explicitly none: dense whatever the budget
    m.gates = null;
    const d = await collect(m.generate(PROMPT, { temperature: 0, maxTokens: 10 }));
    assert.ok(d.tokens.every((t) => t.compute === 1 && t.budget === 0.5));
  } finally {
    m.dispose();
  }
  assert.equal(await heapUsed(), base, 'gates are freed with the model');
});

for (const [name, getPath, skip] of [['init', () => initPath, false], ['stories260K', () => storiesPath, sharedSkip]]) {
  test(`gate files: JS = CLI bytes, save/load round trip, JS generation at b = 0.6 = doze generate (${name})`, { skip }, async () => {
    const path = getPath();
    const cliFile = cliGates(path, { calib: TEXT, name: `calib-${name}` });
    const cliBytes = readFileSync(cliFile);
    const m = await loadModel(path);
    try {
      // The init model's FFN (344 channels) has blocks of 32, stories260K's (172, f32) of 16
      assert.equal(m.info.ffnBlock, name === 'init' ? 32 : 16);
      assert.equal(m.info.ffnBlocks, Math.ceil(m.info.hiddenDim / m.info.ffnBlock));
      const g = await m.calibrateGates({ text: TEXT });
      const bytes = m.saveGates();
      assert.ok(bytes instanceof Uint8Array);
      assert.deepEqual(bytes, new Uint8Array(cliBytes), 'calibrateGates({ text }) writes the file `doze gates --calib` does');
      assert.deepEqual(g.save(), bytes);
      m.budget = 0.6;
      const opts = { temperature: 0, maxTokens: 80, ignoreEos: true };
      const a = await collect(m.generate(PROMPT, opts));
      // a round trip through bytes (an ArrayBuffer) decides the same
      const copy = m.loadGates(bytes.slice().buffer);
      assert.equal(m.gates, copy);
      assert.notEqual(copy, g);
      const b = await collect(m.generate(PROMPT, opts));
      assert.deepEqual(b.ids, a.ids);
      assert.deepEqual(b.tokens.map((t) => t.mask), a.tokens.map((t) => t.mask));
      // the CLI's file, loaded
      m.loadGates(cliBytes);
      const c = await collect(m.generate(PROMPT, opts));
      assert.deepEqual(c.ids, a.ids);
      // doze generate --budget 0.6 --gates F --temp 0 (and with a seed): same ids, text and masks
      const nPrompt = m.tokenize(PROMPT).length;
      const steps = 120;
      for (const [cliOpts, jsOpts] of [[['--temp', '0'], { temperature: 0 }],
        [['--temp', '1', '--seed', '21'], { temperature: 1, seed: 21 }]]) {
        const ref = cliGenerateMasked(path, PROMPT, steps, ['--budget', '0.6', '--gates', cliFile, ...cliOpts]);
        let want = continuation(ref.pairs, nPrompt, m.info.bosId);
        if (want.includes(m.info.eosId)) want = want.slice(0, want.indexOf(m.info.eosId));
        const prompt = [];
        const r = await collect(m.generate(PROMPT, { ...jsOpts, maxTokens: steps - nPrompt + 1, onPromptStep: (s) => prompt.push(s) }));
        assert.deepEqual(r.ids, want, `${name} ${cliOpts.join(' ')}: the CLI's token ids`);
        if (want.length === ref.pairs.length - nPrompt + 1) assert.equal(m.detokenize(m.tokenize(PROMPT)) + r.text + '\n', ref.stdout);
        // every step's mask and compute are the CLI's (--masks)
        const steps_ = [...prompt.map((s) => ({ pos: s.position, ...s })), ...r.tokens.map((t) => ({ pos: t.position - 1, ...t }))];
        for (const s of steps_) {
          const line = ref.masks[s.pos];
          if (!line) continue;
          const ms = maskString(s.mask, m.info.layers, m.info.heads, m.info.ffnBlocks);
          assert.equal(s.mask.ffn.length, m.info.layers * m.info.ffnBlocks);
          assert.equal(ms.layers, line.layers, `pos ${s.pos} layers`);
          assert.equal(ms.heads, line.heads, `pos ${s.pos} heads`);
          assert.equal(ms.ffn, line.ffn, `pos ${s.pos} FFN blocks`);
          assert.ok(Math.abs(s.compute - line.compute) < 6e-5, `pos ${s.pos} compute ${s.compute} vs ${line.compute}`);
        }
        if (cliOpts[1] === '0') console.log(`# ${name} b = 0.6 greedy = CLI: ${JSON.stringify(r.text.slice(0, 60))} (compute ${mean(r.tokens.map((t) => t.compute)).toFixed(3)})`);
      }
    } finally {
      m.dispose();
    }
  });
}

test('gate files for another model are refused with the C code (and free what they took)', async () => {
  const base = await heapUsed();
  const m = await loadModel(initPath);
  const other = await loadModel(otherPath);
  const small = await loadModel(initModel('f32', dir)); // another shape
  try {
    const bytes = (await other.calibrateGates({ text: TEXT })).save();
    assert.throws(() => m.loadGates(bytes), (e) => e instanceof DozeError && e.code === 'BAD_FORMAT' && /another model/.test(e.message));
    assert.throws(() => small.loadGates(bytes), { code: 'BAD_SHAPE' });
    assert.throws(() => m.loadGates(readFileSync(initPath)), { code: 'UNSUPPORTED_TYPE' }, 'a model file is no gate file');
    assert.throws(() => m.loadGates(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])), { code: 'BAD_MAGIC' });
    assert.throws(() => m.loadGates(bytes.subarray(0, 100)), { code: 'TRUNCATED' });
    assert.throws(() => m.loadGates('gates.gguf'), { code: 'INVALID_ARGUMENT' });
    assert.equal(m.gates, null, 'nothing was set');
    assert.throws(() => (m.gates = other.gates), { code: 'INVALID_ARGUMENT' }, 'Gates of another Model object');
    // disposed gates: dropped by the model
    const g = m.loadGates((await m.calibrateGates({ text: TEXT, activate: false })).save());
    assert.equal(m.gates, g);
    g.dispose();
    assert.equal(m.gates, null);
    assert.throws(() => g.save(), { code: 'STATE' });
    assert.throws(() => (m.gates = g), { code: 'STATE' });
  } finally {
    m.dispose();
    other.dispose();
    small.dispose();
  }
  assert.equal(await heapUsed(), base, 'heap back at baseline');
});

test('perplexity under a budget reports the mean compute, close to b', async () => {
  for (const path of [initPath, storiesPath].filter(Boolean)) {
    const m = await loadModel(path);
    try {
      await m.calibrateGates({ text: TEXT });
      const text = TEXT.slice(0, 1500);
      const dense = await m.perplexity(text);
      assert.equal(dense.compute, 1);
      assert.equal(dense.budget, 1);
      const figures = [];
      for (const b of [0.5, 0.8]) {
        const r = await m.perplexity(text, { budget: b });
        assert.equal(r.tokens, dense.tokens);
        assert.equal(r.budget, b);
        assert.ok(Math.abs(r.compute - b) <= 0.05, `compute ${r.compute} at b ${b}`);
        figures.push(`b ${b}: ppl ${r.perplexity.toPrecision(4)} compute ${r.compute.toFixed(3)}`);
      }
      // the model's budget is the default
      m.budget = 0.8;
      assert.equal((await m.perplexity(text)).budget, 0.8);
      const s = m.createSession();
      assert.ok(Math.abs((await s.perplexity(text, { budget: 0.5 })).compute - 0.5) <= 0.05);
      console.log(`# ${path.endsWith('stories260K.gguf') ? 'stories260K' : 'init'} ppl over ${dense.tokens} tokens: dense ${dense.perplexity.toPrecision(4)}; ${figures.join('; ')}`);
    } finally {
      m.dispose();
    }
  }
});

// Gates freed while a generation runs on them (between two prefill passes,
// between speculative steps): the C session lets go of them first, so the
// run goes on dense (or, speculative, stops with STATE) and reads no freed
// memory; everything freed leaves the heap as it was.
test('gates disposed in the middle of a prefill or a speculative run', async () => {
  const h0 = await heapUsed();
  const m = await loadModel(initPath, { threads: 1 });
  const gates = await m.calibrateGates({ text: TEXT });
  m.budget = 0.5;
  setImmediate(() => gates.dispose()); // the prompt is prefilled in several passes: it lands between two
  const text = await m.complete(TEXT.slice(0, 400), { maxTokens: 8, temperature: 0 });
  assert.equal(typeof text, 'string');
  assert.equal(m.gates, null);
  const g2 = await m.calibrateGates({ text: TEXT });
  let n = 0;
  await assert.rejects(
    (async () => {
      for await (const t of m.generate(PROMPT, { maxTokens: 40, speculative: true, temperature: 0, ignoreEos: true }))
        if (++n === 2) g2.dispose();
    })(),
    (e) => e instanceof DozeError && e.code === 'STATE',
  );
  assert.equal(await m.complete(PROMPT, { maxTokens: 4, temperature: 0 }).then((s) => typeof s), 'string');
  m.dispose();
  assert.equal(await heapUsed(), h0);
});
