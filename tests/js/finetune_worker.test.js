// Gate fine-tuning through doze-lm/worker: onStep events streamed back equal
// the main thread's, the gates' file equals the main-thread run's bytes (and
// `doze finetune`'s), `init` passed as a WorkerGates, and a cancel forwarded
// (AbortError, the worker's heap back to its baseline, the model usable).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as direct from '../../js/src/index.js';
import * as worker from '../../js/src/worker.js';
import { run, scratch, trainText } from './helpers.js';

const dir = scratch();
const initPath = join(dir, 'ftw-init.gguf');
{
  const r = run('native', ['init', '--dim', '64', '--hidden', '160', '--layers', '3', '--heads', '4', '--kv-heads', '4',
    '--vocab', '300', '--ctx', '256', '--seed', '3', '-o', initPath]);
  if (r.status !== 0) throw new Error(`doze init failed: ${r.stderr}`);
}
const TEXT = trainText;
const O = { budget: 0.6, steps: 8, contextLength: 64, batch: 4, seed: 5 };
const plain = (s) => ({ step: s.step, loss: s.loss, kl: s.kl, compute: s.compute, expectedCompute: s.expectedCompute, tau: s.tau });

test('worker: finetuneGates streams onStep and its gates save to the main-thread run\'s bytes (= the CLI\'s)', async () => {
  const d = await direct.loadModel(initPath);
  const w = await worker.loadModel(initPath);
  try {
    const ds = [];
    const dg = await d.finetuneGates(TEXT, { ...O, onStep: (s) => ds.push(s) });
    const ws = [];
    const wg = await w.finetuneGates(TEXT, { ...O, onStep: (s) => ws.push(s) });
    assert.ok(wg instanceof worker.WorkerGates);
    assert.equal(wg.kind, 'trained');
    assert.equal(w.gates, wg, 'activated');
    assert.equal(w.gates, wg);
    assert.equal(ws.length, O.steps, 'one streamed onStep per step');
    assert.deepEqual(ws.map(plain), ds.map(plain), 'the same step stats as the main thread');
    assert.ok(ws.every((s) => s.tokensPerSecond > 0 && Number.isFinite(s.ms)));
    const bytes = await w.saveGates();
    assert.deepEqual(bytes, dg.save(), 'worker = main thread, byte for byte');
    assert.deepEqual(await wg.save(), bytes);
    const file = join(dir, 'ftw-text.txt');
    writeFileSync(file, TEXT);
    const out = join(dir, 'ftw-cli.gguf');
    const r = run('native', ['finetune', initPath, file, '--budget', '0.6', '--steps', '8', '--ctx', '64', '--batch', '4',
      '--seed', '5', '-o', out]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(bytes, new Uint8Array(readFileSync(out)), 'and = doze finetune');

    // init as a WorkerGates; without onStep nothing is streamed; activate: false
    const cal = await w.calibrateGates({ text: TEXT, activate: false });
    const dcal = await d.calibrateGates({ text: TEXT, activate: false });
    const g2 = await w.finetuneGates(TEXT, { ...O, steps: 3, init: cal, activate: false });
    const d2 = await d.finetuneGates(TEXT, { ...O, steps: 3, init: dcal, activate: false });
    assert.equal(w.gates, wg);
    assert.deepEqual(await g2.save(), d2.save());
    await assert.rejects(w.finetuneGates(TEXT, { init: dg }), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(w.finetuneGates(TEXT, { ...O, budget: 2 }), { code: 'INVALID_ARGUMENT' });

    // trained gates in use in the worker
    w.budget = O.budget;
    const p = await w.perplexity(TEXT.slice(0, 1500), { budget: O.budget });
    assert.ok(Math.abs(p.compute - O.budget) <= 0.05, `compute ${p.compute}`);
  } finally {
    d.dispose();
    await w.dispose();
  }
});

test('worker: a cancel after 2 steps rejects with ABORTED, frees the run in the worker, the model still generates', async () => {
  const w = await worker.loadModel(initPath);
  try {
    const before = await w.complete('Once upon a time', { maxTokens: 20, temperature: 0, ignoreEos: true });
    const base = await w.heapUsed();
    const ac = new AbortController();
    const seen = [];
    await assert.rejects(
      w.finetuneGates(TEXT, { ...O, steps: 400, signal: ac.signal, onStep: (s) => {
        seen.push(s);
        if (s.step === 2) ac.abort();
      } }),
      (e) => e instanceof direct.DozeError && e.code === 'ABORTED' && e.name === 'AbortError',
    );
    // the worker runs ahead of the messages: it stops at the first step boundary after the cancel arrives
    assert.ok(seen.length >= 2 && seen.length < 400, `${seen.length} steps streamed`);
    assert.equal(await w.heapUsed(), base, 'the worker heap is back to its baseline');
    console.log(`# worker cancel at step 2: ${seen.length} steps streamed before the rejection`);
    assert.equal(w.gates, null);
    assert.equal(await w.complete('Once upon a time', { maxTokens: 20, temperature: 0, ignoreEos: true }), before);
    const pre = new AbortController();
    pre.abort();
    await assert.rejects(w.finetuneGates(TEXT, { ...O, signal: pre.signal }), { code: 'ABORTED' });
  } finally {
    await w.dispose();
  }
});

// A callback that throws: on the main thread the call rejects with that error
// and the run is freed. Through the worker it used to escape as an uncaught
// exception in the main thread (which ends a Node process) while the worker
// trained on to the last step and activated the gates; now the run is
// aborted in the worker and the call rejects with the callback's error.
test('worker: an onStep / onProgress that throws rejects the call with its error and stops the run in the worker', async () => {
  const w = await worker.loadModel(initPath);
  const uncaught = [];
  const onUncaught = (e) => uncaught.push(e);
  process.on('uncaughtException', onUncaught);
  try {
    const base = await w.heapUsed();
    const boom = new Error('boom');
    let calls = 0;
    await assert.rejects(w.finetuneGates(TEXT, { ...O, steps: 400, onStep: (s) => {
      calls++;
      if (s.step === 2) throw boom;
    } }), (e) => e === boom);
    assert.equal(calls, 2, 'no onStep after the one that threw');
    assert.equal(w.gates, null, 'the run did not finish: no gates made or activated');
    assert.equal(await w.heapUsed(), base, 'the run is freed in the worker');
    const source = new Uint8Array(readFileSync(initPath));
    await assert.rejects(w.finetune(TEXT, { ...O, steps: 400, source, onProgress: () => {
      throw new RangeError('stop');
    } }), RangeError);
    assert.equal(await w.heapUsed(), base);
    assert.ok(await w.complete('Once upon a time', { maxTokens: 5, temperature: 0 }), 'the model still generates');
    assert.deepEqual(uncaught, [], 'nothing escaped as an uncaught exception');
  } finally {
    process.off('uncaughtException', onUncaught);
    await w.dispose();
  }
});
