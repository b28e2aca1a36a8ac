// Joint fine-tuning from doze-lm: model.finetune(text, { source, ... }) gives
// the same model file and gate file, byte for byte, as `doze finetune
// --joint --model-out` (full fine-tuning, and rank-R adapters), one
// onProgress per step; the result loads and its gates hold the budget; an
// abort frees the run (heap back to baseline) and leaves the model as it was;
// the same through doze-lm/worker; the argument errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, heapUsed } from '../../js/src/index.js';
import * as worker from '../../js/src/worker.js';
import { run, scratch, trainText } from './helpers.js';

const dir = scratch();
const initPath = join(dir, 'fj-init.gguf');
{
  const r = run('native', ['init', '--dim', '64', '--hidden', '160', '--layers', '3', '--heads', '4', '--kv-heads', '4',
    '--vocab', '300', '--ctx', '256', '--seed', '3', '-o', initPath]);
  if (r.status !== 0) throw new Error(`doze init failed: ${r.stderr}`);
}
const source = new Uint8Array(readFileSync(initPath));
const TEXT = trainText;
const textFile = join(dir, 'fj-text.txt');
writeFileSync(textFile, TEXT);
const O = { budget: 0.6, steps: 6, contextLength: 64, batch: 2, seed: 5, weightLr: 2e-3 };

/** `doze finetune --joint` on the `which` CLI: the model and gate files' bytes. */
function cliJoint(which, extra = [], o = O) {
  const tag = `${which}-${extra.join('_')}`;
  const model = join(dir, `fj-${tag}.gguf`);
  const gates = join(dir, `fj-${tag}.gates.gguf`);
  const r = run(which, ['finetune', initPath, textFile, '--budget', String(o.budget), '--steps', String(o.steps),
    '--ctx', String(o.contextLength), '--batch', String(o.batch), '--seed', String(o.seed), '--weight-lr', String(o.weightLr),
    '--joint', '--model-out', model, ...extra, '-o', gates]);
  if (r.status !== 0) throw new Error(`doze finetune --joint (${which}) failed: ${r.stderr}`);
  return { model: new Uint8Array(readFileSync(model)), gates: new Uint8Array(readFileSync(gates)) };
}

test('finetune (joint) = `doze finetune --joint` byte for byte, full and --lora; onProgress per step; the result loads and holds its budget', async () => {
  const m = await loadModel(initPath);
  try {
    const before = await m.perplexity(TEXT.slice(0, 2000));
    for (const [opts, extra] of [[{}, []], [{ lora: 4 }, ['--lora', '4']], [{ loss: 'ce' }, ['--loss', 'ce']]]) {
      const native = cliJoint('native', extra);
      const steps = [];
      const r = await m.finetune(TEXT, { ...O, ...opts, source, onProgress: (s) => steps.push(s) });
      assert.ok(r.model instanceof Uint8Array && r.gates instanceof Uint8Array);
      assert.deepEqual(r.model, native.model, `JS model file = the CLI's (${extra.join(' ') || 'full'})`);
      assert.deepEqual(r.gates, native.gates, `JS gate file = the CLI's (${extra.join(' ') || 'full'})`);
      assert.notDeepEqual(r.model, source, 'the weights moved');
      assert.equal(steps.length, O.steps);
      steps.forEach((s, i) => {
        assert.equal(s.step, i + 1);
        assert.equal(s.steps, O.steps);
        for (const k of ['loss', 'kl', 'compute', 'expectedCompute', 'tau', 'tokensPerSecond', 'ms']) {
          assert.ok(Number.isFinite(s[k]), `${k} ${s[k]}`);
        }
        assert.ok(s.compute > 0 && s.compute <= 1);
      });
      // the new model with its gates, on text
      const m2 = await loadModel(r.model);
      try {
        const g = m2.loadGates(r.gates);
        assert.equal(g.kind, 'trained');
        const p = await m2.perplexity(TEXT.slice(0, 3000), { budget: O.budget });
        assert.ok(Number.isFinite(p.perplexity));
        assert.ok(Math.abs(p.compute - O.budget) <= 0.05, `compute ${p.compute} at b ${O.budget}`);
        console.log(`# joint ${extra.join(' ') || 'full'}: ${r.model.length}-byte model = CLI's; ppl at b ${O.budget} ${p.perplexity.toFixed(3)}, compute ${p.compute.toFixed(3)}`);
      } finally {
        m2.dispose();
      }
    }
    const after = await m.perplexity(TEXT.slice(0, 2000));
    assert.equal(after.perplexity, before.perplexity, 'the model fine-tuned from is unchanged');
  } finally {
    m.dispose();
  }
});

// `source` is checked before the steps: a wrong file used to be found only
// when the model was written, after the whole run (400 steps by default).
test('finetune: a source that is not this model\'s file fails before the first step', async () => {
  const m = await loadModel(initPath);
  const otherPath = join(dir, 'fj-other.gguf');
  const r = run('native', ['init', '--dim', '32', '--hidden', '64', '--layers', '2', '--heads', '2', '--vocab', '300',
    '--ctx', '64', '--seed', '4', '-o', otherPath]);
  assert.equal(r.status, 0, r.stderr);
  try {
    const base = await heapUsed();
    const cases = [
      ['another model', new Uint8Array(readFileSync(otherPath)), 'BAD_SHAPE'],
      ['not a GGUF', new Uint8Array(4096), 'BAD_MAGIC'],
      ['a detached buffer', (() => { const b = source.slice().buffer; structuredClone(b, { transfer: [b] }); return b; })(), 'INVALID_ARGUMENT'],
      ['no bytes', new Uint8Array(0), 'INVALID_ARGUMENT'],
      ['this model cut short', source.subarray(0, source.length - 100), 'TRUNCATED'],
    ];
    for (const [what, bad, code] of cases) {
      let steps = 0;
      await assert.rejects(m.finetune(TEXT, { ...O, steps: 400, source: bad, onProgress: () => steps++ }),
        (e) => e.code === code, what);
      assert.equal(steps, 0, `${what}: refused before any step`);
    }
    assert.equal(await heapUsed(), base, 'nothing left behind');
  } finally {
    m.dispose();
  }
});

test('finetune: abort after 2 steps rejects with ABORTED, frees the run (heap back to baseline), the model as it was', async () => {
  const m = await loadModel(initPath);
  try {
    const before = await m.complete('Once upon a time', { maxTokens: 20, temperature: 0, ignoreEos: true });
    const base = await heapUsed();
    const ac = new AbortController();
    let seen = 0;
    await assert.rejects(
      m.finetune(TEXT, { ...O, steps: 400, source, signal: ac.signal, onProgress: (s) => { seen = s.step; if (s.step === 2) ac.abort(); } }),
      (e) => e.code === 'ABORTED' && e.name === 'AbortError',
    );
    assert.equal(seen, 2);
    assert.equal(await heapUsed(), base, 'heap back to its baseline');
    assert.equal(await m.complete('Once upon a time', { maxTokens: 20, temperature: 0, ignoreEos: true }), before);
    const pre = new AbortController();
    pre.abort();
    await assert.rejects(m.finetune(TEXT, { ...O, source, signal: pre.signal }), { code: 'ABORTED' });
    // argument errors
    await assert.rejects(m.finetune(TEXT, { ...O }), { code: 'INVALID_ARGUMENT' }, 'no source');
    await assert.rejects(m.finetune(TEXT, { ...O, source, joint: false }), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(m.finetune(TEXT, { ...O, source, loss: 'mse' }), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(m.finetune(TEXT, { ...O, source, budgetRange: [0.8, 0.4] }), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(m.finetune(TEXT, { ...O, source, lora: 0 }), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(m.finetune(TEXT, { ...O, source, noiseEnd: 2 }), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(m.finetune(TEXT, { ...O, source, lora: 65 }), { code: 'INVALID_ARGUMENT' }, 'rank above the smallest side');
    await assert.rejects(m.finetune(TEXT, { ...O, source: source.subarray(0, 1000) }), (e) => e.code !== undefined, 'a truncated file');
    assert.equal(await heapUsed(), base, 'nothing left behind by the refusals');
  } finally {
    m.dispose();
  }
});

test('worker: finetune streams onProgress and returns the main thread\'s bytes; a budget range runs', async () => {
  const w = await worker.loadModel(initPath);
  try {
    const ws = [];
    const r = await w.finetune(TEXT, { ...O, source, onProgress: (s) => ws.push(s.step) });
    assert.deepEqual(ws, [1, 2, 3, 4, 5, 6]);
    const native = cliJoint('native', []);
    assert.deepEqual(r.model, native.model);
    assert.deepEqual(r.gates, native.gates);
    const ranged = await w.finetune(TEXT, { ...O, source, budgetRange: [0.4, 0.9], denseFraction: 0.25 });
    const nr = cliJoint('native', ['--budget-range', '0.4:0.9', '--dense-fraction', '0.25']);
    assert.deepEqual(ranged.model, nr.model, 'a budget range: = the CLI');
    // a dense fraction needs a range, in the CLI as in JS (it used to be ignored there)
    await assert.rejects(w.finetune(TEXT, { ...O, source, denseFraction: 0.25 }), { code: 'INVALID_ARGUMENT' });
    const lone = run('native', ['finetune', initPath, textFile, '--steps', '1', '--joint', '--model-out', join(dir, 'x.gguf'),
      '--dense-fraction', '0.25', '-o', join(dir, 'x.gates.gguf')]);
    assert.equal(lone.status, 2);
    assert.match(lone.stderr, /--dense-fraction goes with --budget-range/);
    const fixed = cliJoint('native', ['--budget-range', '0.6:0.6', '--dense-fraction', '0.25']);
    assert.notDeepEqual(fixed.model, native.model, 'B:B with dense windows trains differently from B alone');
    const sched = { weightLrMin: 1e-4, weightWarmup: 2, noiseEnd: 0 };
    const rs = await w.finetune(TEXT, { ...O, ...sched, source });
    const ns = cliJoint('native', ['--weight-lr-min', '1e-4', '--weight-warmup', '2', '--noise-end', '0']);
    assert.deepEqual(rs.model, ns.model, 'the weights\' schedule and the noise: = the CLI');
    assert.deepEqual(rs.gates, ns.gates);
    const ra = await w.finetune(TEXT, { ...O, weightAnchor: 5, source });
    const na = cliJoint('native', ['--weight-anchor', '5']);
    assert.deepEqual(ra.model, na.model, 'the anchor: = the CLI');
    assert.notDeepEqual(ra.model, native.model, 'the anchor changes the weights trained');
    await assert.rejects(w.finetune(TEXT, { ...O, source, weightAnchor: 1, lora: 2 }), { code: 'INVALID_ARGUMENT' });
    const re = await w.finetune(TEXT, { ...O, weightEma: 0.9, source });
    const ne = cliJoint('native', ['--weight-ema', '0.9']);
    assert.deepEqual(re.model, ne.model, 'the moving average: = the CLI');
    assert.notDeepEqual(re.model, native.model, 'the average is not the last step\'s weights');
    await assert.rejects(w.finetune(TEXT, { ...O, source, weightEma: 0.9, lora: 2 }), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(w.finetune(TEXT, { ...O, source, weightEma: 1 }), { code: 'INVALID_ARGUMENT' });
  } finally {
    await w.dispose();
  }
});
