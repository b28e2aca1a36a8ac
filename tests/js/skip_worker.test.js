// Skipping through doze-lm/worker: masks, compute and budget in the token
// objects (equal to the main thread's), budget settable (also mid-generation),
// gates calibrated / loaded / saved in the worker, forced-mask steps,
// perplexity under a budget, autoBudget forwarded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as direct from '../../js/src/index.js';
import * as worker from '../../js/src/worker.js';
import { calibText, collect, mean, skipInitModel } from './skip_fixtures.js';

const path = skipInitModel(3);
const PROMPT = 'Once upon a time';
const TEXT = calibText();
const opts = { temperature: 1, seed: 8, maxTokens: 80, ignoreEos: true };
const strip = (t) => ({ id: t.id, text: t.text, position: t.position, mask: t.mask, compute: t.compute, budget: t.budget });

test('worker: gates, budget and masks/compute in the token objects as on the main thread', async () => {
  const d = await direct.loadModel(path);
  const w = await worker.loadModel(path);
  try {
    const dg = await d.calibrateGates({ text: TEXT });
    const wg = await w.calibrateGates({ text: TEXT });
    assert.ok(wg instanceof worker.WorkerGates);
    assert.equal(w.gates, wg);
    assert.equal(wg.kind, 'training-free');
    assert.deepEqual([wg.layers, wg.heads, wg.protectLayers, wg.protectTokens], [dg.layers, dg.heads, dg.protectLayers, dg.protectTokens]);
    const bytes = await w.saveGates();
    assert.deepEqual(bytes, d.saveGates(), 'the same gate file');
    assert.deepEqual(await wg.save(), bytes);

    assert.equal(w.budget, 1);
    d.budget = 0.5;
    w.budget = 0.5;
    assert.equal(w.budget, 0.5);
    assert.equal(await w.complete('', { maxTokens: 0 }), '');
    assert.equal(w.budget, 0.5, 'as the worker reports it');
    assert.throws(() => (w.budget = 0), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => (w.budget = 1.01), { code: 'INVALID_ARGUMENT' });
    const promptD = [];
    const promptW = [];
    const a = await collect(d.generate(PROMPT, { ...opts, onPromptStep: (s) => promptD.push(s.mask) }));
    const b = await collect(w.generate(PROMPT, { ...opts, onPromptStep: (s) => promptW.push(s.mask) }));
    assert.deepEqual(b.tokens.map(strip), a.tokens.map(strip), 'same ids, masks, compute and budget');
    assert.ok(b.tokens[0].mask.layers instanceof Uint8Array && b.tokens[0].mask.heads.length === w.info.layers * w.info.heads);
    assert.ok(b.tokens.every((t) => typeof t.ms === 'number'));
    assert.deepEqual(promptW, promptD);
    assert.equal(promptW.length, d.tokenize(PROMPT).length);
    const c = mean(b.tokens.map((t) => t.compute));
    assert.ok(Math.abs(c - 0.5) < 0.04, `mean compute ${c}`);

    // mid-generation change
    w.budget = 1;
    const seen = [];
    // (the worker runs ahead of the consumer: the change applies from the
    // next token the worker computes, a few tokens in flight keep the old one)
    for await (const t of w.generate(PROMPT, { ...opts, maxTokens: 300 })) {
      seen.push(t);
      if (seen.length === 20) w.budget = 0.6;
    }
    const switched = seen.findIndex((t) => t.budget === 0.6);
    assert.ok(switched >= 20, `the new budget arrived at token ${switched}`);
    assert.ok(seen.slice(0, 20).every((t) => t.budget === 1 && t.compute === 1));
    assert.ok(seen.slice(switched).every((t) => t.budget === 0.6));
    assert.equal(w.budget, 0.6);

    // loadGates / setGates / forced-mask steps / perplexity
    const g2 = await w.loadGates(bytes);
    assert.equal(w.gates, g2);
    assert.notEqual(g2, wg);
    w.gates = null;
    assert.equal(w.gates, null);
    assert.equal(await w.complete('', { maxTokens: 0 }), '');
    assert.equal(w.gates, null, 'as the worker reports it');
    await assert.rejects(w.loadGates(new Uint8Array(16)), { code: 'BAD_MAGIC' });
    w.gates = wg;
    const s = await w.createSession();
    const L = w.info.layers;
    const r = await s.step(1, { layers: Array.from({ length: L }, (_, l) => (l < 2 ? 1 : 0)) });
    assert.deepEqual(Array.from(r.mask.layers), Array.from({ length: L }, (_, l) => (l < 2 ? 1 : 0)));
    assert.ok(r.logits instanceof Float32Array && r.logits.length === w.info.vocabSize);
    assert.ok(r.compute < 0.5);
    s.budget = 0.8;
    assert.equal(s.budget, 0.8);
    assert.equal(s.position, 1);
    await s.reset();
    assert.equal(s.budget, 0.8, 'as the worker reports it');
    assert.equal(s.position, 0);
    const text = TEXT.slice(0, 800);
    const pw = await w.perplexity(text, { budget: 0.5 });
    assert.deepEqual(pw, await d.perplexity(text, { budget: 0.5 }));
    assert.ok(Math.abs(pw.compute - 0.5) < 0.05);
    const ps = await s.perplexity(text);
    assert.equal(ps.budget, 0.8);

    // autoBudget forwarded
    await w.autoBudget({ targetMsPerToken: 1000 });
    const au = await collect(w.generate(PROMPT, { ...opts, maxTokens: 30 }));
    assert.ok(au.tokens.every((t) => t.budget === 1));
    await w.autoBudget({ targetMsPerToken: 1e-6, min: 0.3 });
    const lo = await collect(w.generate(PROMPT, { ...opts, maxTokens: 60 }));
    assert.equal(lo.tokens.at(-1).budget, 0.3);
    assert.equal(w.budget, 0.3, 'what autoBudget chose, reported by the worker');
    await assert.rejects(w.autoBudget({ targetMsPerToken: -1 }), { code: 'INVALID_ARGUMENT' });
    await w.autoBudget(null);
    console.log(`# worker: b 0.5 mean compute ${c.toFixed(4)} (= main thread); budget change applied at token ${switched}; ppl at 0.5: ${pw.perplexity.toPrecision(4)}`);
  } finally {
    d.dispose();
    await w.dispose();
  }
});
