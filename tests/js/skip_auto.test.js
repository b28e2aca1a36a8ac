// autoBudget: the budget follows measured token times. Behaviour, not
// absolute speed: a generous target keeps b at max; on a "slow machine" (a
// test hook that busy-waits in proportion to each step's compute, inside the
// timed region) with a target of 60% of the dense time, b drops below 1 and
// the mean token time over the last tokens comes within 35% of the target.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel, DozeError } from '../../js/src/index.js';
import { calibText, collect, mean, skipInitModel } from './skip_fixtures.js';

const path = skipInitModel(3);
const PROMPT = 'Once upon a time';
const gen = (m, n, seed = 3) => m.generate(PROMPT, { temperature: 1, seed, maxTokens: n, ignoreEos: true });

test('autoBudget with a generous target stays at max', async () => {
  const m = await loadModel(path);
  try {
    await m.calibrateGates({ text: calibText() });
    m.autoBudget({ targetMsPerToken: 1000 });
    assert.deepEqual(m.autoBudgetOptions, { targetMsPerToken: 1000, min: 0.2, max: 1, gain: 0.3, smoothing: 0.3 });
    const r = await collect(gen(m, 80));
    assert.ok(r.tokens.every((t) => t.budget === 1 && t.compute === 1), 'dense throughout');
    assert.equal(m.budget, 1);
    m.autoBudget({ targetMsPerToken: 1000, max: 0.9 });
    const r2 = await collect(gen(m, 60));
    assert.ok(r2.tokens.every((t) => t.budget === 0.9), 'held at max');
    assert.ok(Math.abs(mean(r2.tokens.map((t) => t.compute)) - 0.9) < 0.04);
    console.log(`# generous target: b = 1 for ${r.tokens.length} tokens (${mean(r.tokens.map((t) => t.ms)).toFixed(3)} ms/token); max 0.9: b = 0.9`);
  } finally {
    m.dispose();
  }
});

test('autoBudget on a throttled run holds the target with b < 1', async () => {
  const m = await loadModel(path);
  try {
    await m.calibrateGates({ text: calibText() });
    // The slow machine: each step also burns 3 ms x its compute ratio.
    const SLOW_MS = 3;
    m._testAfterStep = (compute) => {
      const until = performance.now() + SLOW_MS * compute;
      while (performance.now() < until);
    };
    const dense = await collect(gen(m, 60));
    const denseMs = mean(dense.tokens.slice(10).map((t) => t.ms));
    assert.ok(dense.tokens.every((t) => t.budget === 1));
    const target = 0.6 * denseMs;
    m.autoBudget({ targetMsPerToken: target });
    const t0 = performance.now();
    const r = await collect(gen(m, 250, 4));
    const wall = (performance.now() - t0) / r.tokens.length;
    const last = r.tokens.slice(-100);
    const lastMs = mean(last.map((t) => t.ms));
    const lastB = mean(last.map((t) => t.budget));
    const lastC = mean(last.map((t) => t.compute));
    const trail = r.tokens.filter((_, i) => i % 25 === 0).map((t) => t.budget.toFixed(2)).join(' ');
    console.log(`# dense ${denseMs.toFixed(3)} ms/token; target ${target.toFixed(3)}; last 100 tokens: ${lastMs.toFixed(3)} ms/token ` +
      `(${((lastMs / target - 1) * 100).toFixed(1)}%), mean b ${lastB.toFixed(3)}, compute ${lastC.toFixed(3)}; ` +
      `wall ${wall.toFixed(3)} ms/token; b every 25 tokens: ${trail}`);
    assert.ok(m.budget < 1, `budget ${m.budget}`);
    assert.ok(lastB < 0.95, `mean budget ${lastB}`);
    assert.ok(Math.abs(lastMs / target - 1) <= 0.35, `last 100 tokens ${lastMs} ms vs target ${target}`);
    assert.ok(new Set(r.tokens.map((t) => t.budget)).size > 10, 'the budget moved token by token');
    // setting the budget turns the controller off
    m.budget = 0.7;
    assert.equal(m.autoBudgetOptions, null);
    assert.ok((await collect(gen(m, 20))).tokens.every((t) => t.budget === 0.7));
  } finally {
    m.dispose();
  }
});

test('autoBudget: an unreachable target pins b at min; off restores the fixed budget; per session; validation', async () => {
  const m = await loadModel(path);
  try {
    await m.calibrateGates({ text: calibText() });
    m.budget = 0.9;
    m.autoBudget({ targetMsPerToken: 1e-6, min: 0.3 });
    const r = await collect(gen(m, 60));
    assert.ok(r.tokens.slice(-20).every((t) => t.budget === 0.3), 'pinned at min');
    assert.equal(m.budget, 0.3);
    m.autoBudget(null);
    assert.equal(m.budget, 0.9, 'back to the fixed budget');
    // a session's own controller
    const s = m.createSession();
    s.autoBudget({ targetMsPerToken: 1e-6, min: 0.25 });
    const rs = await collect(s.generate(PROMPT, { temperature: 1, seed: 1, maxTokens: 60, ignoreEos: true }));
    assert.equal(rs.tokens.at(-1).budget, 0.25);
    assert.equal(m.budget, 0.9, 'the model is unaffected');
    s.autoBudget(null);
    assert.equal(s.budget, 0.9);
    for (const bad of [{}, { targetMsPerToken: 0 }, { targetMsPerToken: -1 }, { targetMsPerToken: 10, min: 0 },
      { targetMsPerToken: 10, min: 0.8, max: 0.5 }, { targetMsPerToken: 10, max: 1.2 }, 5]) {
      assert.throws(() => m.autoBudget(bad), (e) => e instanceof DozeError && e.code === 'INVALID_ARGUMENT', JSON.stringify(bad));
    }
    assert.equal(m.budget, 0.9);
  } finally {
    m.dispose();
  }
});
