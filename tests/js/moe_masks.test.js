// Experts in masks from doze-lm, on a seeded `doze init` mixture of experts
// (llama, 8 experts, top-2): info.experts / expertsUsed; mask.experts on
// every generated token and step (the model's top-2 at budget 1); a forced
// mask naming the model's own experts gives the dense step's bits, other
// expert sets come back exactly as forced; under a budget with the CLI's
// gate file the experts doze and every step's mask (experts included) and
// compute are the CLI's --masks lines; a dense model refuses expert masks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, DozeError } from '../../js/src/index.js';
import { run } from './helpers.js';
import { continuation } from './package_fixtures.js';
import { cliGates, cliGenerateMasked, collect, dir, maskString, mean, skipInitModel } from './skip_fixtures.js';

const E = 8;
const K = 2;
const moePath = join(dir, 'moe-masks.gguf');
{
  const r = run('native', ['init', '-o', moePath, '--dim', '64', '--hidden', '128', '--layers', '4', '--heads', '4',
    '--vocab', '512', '--ctx', '256', '--seed', '5', '--experts', String(E), '--top-k', String(K), '--embd-scale', '0.3']);
  if (r.status !== 0) throw new Error(`doze init failed: ${r.stderr}`);
}
const PROMPT = 'the cat sat on the mat';

/** Experts on in layer l of a mask. */
const onIn = (mask, l) => mask.experts.subarray(l * E, (l + 1) * E).reduce((s, x) => s + x, 0);

test('mask.experts: the model\'s top-k at budget 1; forced expert masks', async () => {
  const m = await loadModel(moePath);
  try {
    assert.equal(m.info.experts, E);
    assert.equal(m.info.expertsUsed, K);
    assert.equal(m.info.ffnBlocks, 1);
    const L = m.info.layers;
    const r = await collect(m.generate(PROMPT, { temperature: 0, maxTokens: 20, ignoreEos: true }));
    for (const t of r.tokens) {
      assert.equal(t.mask.experts.length, L * E);
      for (let l = 0; l < L; l++) assert.equal(onIn(t.mask, l), K, 'the model\'s top-k in every layer');
    }
    // forced: the model's own experts give the dense step; others come back as forced
    const ids = m.tokenize(PROMPT, { bos: true });
    const dense = m.createSession();
    const forced = m.createSession();
    const other = m.createSession();
    try {
      let same = true;
      let differ = false;
      for (let i = 0; i < ids.length; i++) {
        const d = await dense.step(ids[i]);
        const f = await forced.step(ids[i], { experts: d.mask.experts });
        same &&= f.logits.every((v, j) => Object.is(v, d.logits[j]));
        assert.deepEqual(f.mask.experts, d.mask.experts);
        // one expert per layer, the one the model ranks last among its top k
        // or beyond, as per-layer arrays; layer 1 runs none
        const mine = Array.from({ length: L }, (_, l) => Array.from({ length: E }, (_, e) => (l === 1 ? 0 : e === (i + l) % E ? 1 : 0)));
        const o = await other.step(ids[i], { experts: mine });
        assert.deepEqual(Array.from(o.mask.experts), mine.flat(), 'forced experts come back exactly');
        assert.ok(o.compute < 1, `one expert per layer computes less than dense (${o.compute})`);
        differ ||= o.logits.some((v, j) => v !== d.logits[j]);
      }
      assert.ok(same, 'the model\'s own experts forced back: the dense bits');
      assert.ok(differ, 'other experts change the logits');
      await assert.rejects(() => other.step(5, { experts: [1, 0, 1] }), (e) => e instanceof DozeError && e.code === 'INVALID_ARGUMENT' && /experts/.test(e.message));
    } finally {
      dense.dispose();
      forced.dispose();
      other.dispose();
    }
  } finally {
    m.dispose();
  }
  // a dense model has no experts to force
  const d = await loadModel(skipInitModel(3));
  try {
    assert.equal(d.info.experts, 0);
    const r = await collect(d.generate(PROMPT, { maxTokens: 2 }));
    assert.equal(r.tokens[0].mask.experts, undefined);
    const s = d.createSession();
    await assert.rejects(() => s.step(1, { experts: [1] }), (e) => e instanceof DozeError && e.code === 'INVALID_ARGUMENT' && /dense/.test(e.message));
    s.dispose();
  } finally {
    d.dispose();
  }
});

test('under a budget the experts doze; masks and compute are the CLI\'s --masks lines', async () => {
  const cliFile = cliGates(moePath, { name: 'moe-gates' });
  const m = await loadModel(moePath);
  try {
    const L = m.info.layers;
    m.loadGates(readFileSync(cliFile));
    m.budget = 0.6;
    const steps = 100;
    const nPrompt = m.tokenize(PROMPT, { bos: true }).length;
    const ref = cliGenerateMasked(moePath, PROMPT, steps, ['--budget', '0.6', '--gates', cliFile, '--temp', '0', '--no-stop']);
    const want = continuation(ref.pairs, nPrompt, -1);
    const prompt = [];
    const r = await collect(m.generate(PROMPT, { temperature: 0, maxTokens: steps - nPrompt + 1, ignoreEos: true, onPromptStep: (s) => prompt.push(s) }));
    assert.deepEqual(r.ids, want, 'the CLI\'s token ids');
    let ffns = 0;
    let experts = 0;
    const all = [...prompt.map((s) => ({ pos: s.position, ...s })), ...r.tokens.map((t) => ({ pos: t.position - 1, ...t }))];
    for (const s of all) {
      const line = ref.masks[s.pos];
      if (!line) continue;
      const ms = maskString(s.mask, L, m.info.heads, 1, E);
      assert.equal(ms.layers, line.layers, `pos ${s.pos} layers`);
      assert.equal(ms.ffn, line.ffn, `pos ${s.pos} FFN`);
      assert.equal(ms.experts, line.experts, `pos ${s.pos} experts`);
      assert.ok(Math.abs(s.compute - line.compute) < 6e-5, `pos ${s.pos} compute`);
      for (let l = 0; l < L; l++) {
        const n = onIn(s.mask, l);
        if (s.mask.layers[l] && s.mask.ffn[l]) {
          assert.ok(n >= 1 && n <= K, `pos ${s.pos} layer ${l}: ${n} experts`);
          ffns++;
          experts += n;
        } else {
          assert.equal(n, 0);
        }
      }
    }
    const c = mean(r.tokens.map((t) => t.compute));
    console.log(`# MoE b = 0.6: compute ${c.toFixed(3)}, ${(experts / ffns).toFixed(2)} experts per running FFN`);
    assert.ok(experts / ffns < K, 'the budget moves the experts');
  } finally {
    m.dispose();
  }
});
