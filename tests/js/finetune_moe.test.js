// Gate fine-tuning of a mixture of experts from doze-lm, on a seeded `doze
// init` mixture (llama, 8 experts, top-2): model.finetuneGates gives the
// native `doze finetune` gate file byte for byte (the init gates' expert
// constants kept, so the experts still doze under the budget: fewer than 2
// per running FFN at b = 0.6); joint fine-tuning of a mixture (model.finetune)
// gives the native `doze finetune --joint` model and gate files byte for
// byte, and adapters (lora) on a mixture are UNSUPPORTED_TYPE, naming the
// mixture, in JS as in the CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, DozeError } from '../../js/src/index.js';
import { run, scratch, trainText } from './helpers.js';

const dir = scratch();
const moePath = join(dir, 'ft-moe.gguf');
{
  const r = run('native', ['init', '-o', moePath, '--dim', '64', '--hidden', '64', '--layers', '3', '--heads', '4',
    '--vocab', '300', '--ctx', '256', '--seed', '7', '--experts', '8', '--top-k', '2', '--embd-scale', '0.3']);
  if (r.status !== 0) throw new Error(`doze init failed: ${r.stderr}`);
}
const TEXT = trainText;
const textFile = join(dir, 'ft-moe-text.txt');
writeFileSync(textFile, TEXT);
const O = { budget: 0.6, steps: 6, contextLength: 64, batch: 2, seed: 5 };

test('finetuneGates on a mixture of experts = `doze finetune`; its experts still doze', async () => {
  const g0File = join(dir, 'ft-moe-g0.gguf');
  const outFile = join(dir, 'ft-moe-gt.gguf');
  let r = run('native', ['gates', moePath, '-o', g0File]);
  assert.equal(r.status, 0, r.stderr);
  r = run('native', ['finetune', moePath, textFile, '--gates', g0File, '--budget', String(O.budget), '--steps',
    String(O.steps), '--ctx', String(O.contextLength), '--batch', String(O.batch), '--seed', String(O.seed), '-o', outFile]);
  assert.equal(r.status, 0, r.stderr);
  const native = new Uint8Array(readFileSync(outFile));
  const m = await loadModel(moePath);
  try {
    assert.equal(m.info.experts, 8);
    const init = m.loadGates(readFileSync(g0File), { activate: false });
    const steps = [];
    const g = await m.finetuneGates(TEXT, { ...O, init, onStep: (s) => steps.push(s) });
    assert.equal(g.kind, 'trained');
    assert.equal(steps.length, O.steps);
    for (const s of steps) assert.ok(Number.isFinite(s.loss) && s.compute > 0 && s.compute <= 1);
    assert.deepEqual(m.saveGates(), native, 'JS saveGates() = the CLI gate file');
    // the experts doze under the trained gates
    m.budget = O.budget;
    const out = [];
    for await (const t of m.generate('Once upon a time', { maxTokens: 24, temperature: 0, ignoreEos: true })) if (t.id >= 0) out.push(t);
    let experts = 0;
    let ffns = 0;
    const L = m.info.layers;
    for (const t of out) {
      for (let l = 0; l < L; l++) {
        if (!t.mask.layers[l] || !t.mask.ffn[l]) continue;
        ffns++;
        for (let e = 0; e < 8; e++) experts += t.mask.experts[l * 8 + e];
      }
    }
    assert.ok(ffns > 0 && experts / ffns < 2, `experts per running FFN ${experts / ffns}`);
    console.log(`# MoE finetuneGates: losses ${steps.map((s) => s.loss.toFixed(4)).join(' ')}; ${(experts / ffns).toFixed(3)} experts per running FFN at b ${O.budget}`);
  } finally {
    m.dispose();
  }
});

test('joint fine-tuning of a mixture = `doze finetune --joint` byte for byte; --lora on a mixture: UNSUPPORTED_TYPE (JS and CLI)', async () => {
  const nm = join(dir, 'ft-moe-joint.gguf');
  const ng = join(dir, 'ft-moe-joint.gates.gguf');
  let r = run('native', ['finetune', moePath, textFile, '--joint', '--model-out', nm, '--budget', String(O.budget), '--steps',
    String(O.steps), '--ctx', String(O.contextLength), '--batch', String(O.batch), '--seed', String(O.seed), '-o', ng]);
  assert.equal(r.status, 0, r.stderr);
  const source = new Uint8Array(readFileSync(moePath));
  const m = await loadModel(moePath);
  try {
    const steps = [];
    const out = await m.finetune(TEXT, { ...O, source, onProgress: (s) => steps.push(s) });
    assert.equal(steps.length, O.steps);
    assert.deepEqual(out.model, new Uint8Array(readFileSync(nm)), 'JS model file = the CLI\'s');
    assert.deepEqual(out.gates, new Uint8Array(readFileSync(ng)), 'JS gate file = the CLI\'s');
    assert.notDeepEqual(out.model, source, 'the weights moved');
    const t = await loadModel(out.model);
    try {
      assert.equal(t.info.experts, 8);
      t.loadGates(out.gates);
    } finally {
      t.dispose();
    }
    await assert.rejects(m.finetune(TEXT, { ...O, source, lora: 2 }),
      (e) => e instanceof DozeError && e.code === 'UNSUPPORTED_TYPE' && /mixture/.test(e.message));
  } finally {
    m.dispose();
  }
  r = run('native', ['finetune', moePath, textFile, '--joint', '--lora', '2', '--model-out', join(dir, 'x.gguf'), '--steps', '1',
    '-o', join(dir, 'x.gates.gguf')]);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr.toString(), /mixture/);
});
