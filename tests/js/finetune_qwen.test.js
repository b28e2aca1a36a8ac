// Gate fine-tuning of qwen2 (Q/K/V biases, NeoX RoPE) and qwen3 (q/k norms,
// NeoX RoPE, heads of their own size) models from doze-lm, on seeded `doze
// init` models: model.finetuneGates in wasm gives the native `doze finetune`
// gate file byte for byte and the trained gates hold the budget; joint
// fine-tuning (model.finetune) gives the native `doze finetune --joint`
// model and gate files byte for byte, and the model written loads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../js/src/index.js';
import { run, scratch, trainText } from './helpers.js';

const dir = scratch();
const TEXT = trainText;
const textFile = join(dir, 'ftq-text.txt');
writeFileSync(textFile, TEXT);
const O = { budget: 0.6, steps: 5, contextLength: 64, batch: 2, seed: 5 };
const opts = (o) => ['--budget', String(o.budget), '--steps', String(o.steps), '--ctx', String(o.contextLength),
  '--batch', String(o.batch), '--seed', String(o.seed)];

for (const [arch, extra] of [['qwen2', []], ['qwen3', ['--head-dim', '24']]]) {
  test(`finetuneGates and finetune (joint) on ${arch} = \`doze finetune [--joint]\``, async () => {
    const path = join(dir, `ftq-${arch}.gguf`);
    let r = run('native', ['init', '--arch', arch, '-o', path, '--dim', '64', '--hidden', '96', '--layers', '3', '--heads', '4',
      '--kv-heads', '2', '--vocab', '300', '--ctx', '256', '--seed', '9', '--embd-scale', '0.4', ...extra]);
    assert.equal(r.status, 0, r.stderr);
    const outFile = join(dir, `ftq-${arch}.gates.gguf`);
    r = run('native', ['finetune', path, textFile, ...opts(O), '-o', outFile]);
    assert.equal(r.status, 0, r.stderr);
    const native = new Uint8Array(readFileSync(outFile));
    const m = await loadModel(path);
    try {
      const steps = [];
      const g = await m.finetuneGates(TEXT, { ...O, onStep: (s) => steps.push(s) });
      assert.equal(g.kind, 'trained');
      assert.equal(steps.length, O.steps);
      assert.ok(steps[O.steps - 1].loss < steps[0].loss, `loss ${steps[0].loss} -> ${steps[O.steps - 1].loss}`);
      assert.deepEqual(m.saveGates(), native, 'JS saveGates() = the CLI gate file');
      m.budget = O.budget;
      let compute = 0, n = 0;
      for await (const t of m.generate('Once upon a time there was', { maxTokens: 40, temperature: 0, ignoreEos: true })) {
        if (t.id >= 0) compute += t.compute, n++;
      }
      assert.ok(Math.abs(compute / n - O.budget) < 0.1, `compute ${compute / n} at b ${O.budget}`);
      const source = new Uint8Array(readFileSync(path));
      const fresh = await loadModel(path); // from the training-free gates, as the CLI starts
      const joint = await fresh.finetune(TEXT, { ...O, source, weightLr: 2e-3 }).finally(() => fresh.dispose());
      const nm = join(dir, `ftq-${arch}-joint.gguf`), ng = join(dir, `ftq-${arch}-joint.gates.gguf`);
      r = run('native', ['finetune', path, textFile, ...opts(O), '--joint', '--weight-lr', '2e-3', '--model-out', nm, '-o', ng]);
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(joint.model, new Uint8Array(readFileSync(nm)), 'JS joint model file = the CLI\'s');
      assert.deepEqual(joint.gates, new Uint8Array(readFileSync(ng)), 'JS joint gate file = the CLI\'s');
      const m2 = await loadModel(joint.model);
      try {
        assert.equal(m2.info.architecture, arch);
        const ids = [];
        for await (const t of m2.generate('Once upon a time', { maxTokens: 8, temperature: 0, ignoreEos: true })) ids.push(t.id);
        assert.equal(ids.length, 8);
      } finally {
        m2.dispose();
      }
      console.log(`# ${arch} finetuneGates: losses ${steps.map((s) => s.loss.toFixed(4)).join(' ')}; compute ${(compute / n).toFixed(3)} at b ${O.budget}`);
    } finally {
      m.dispose();
    }
  });
}
