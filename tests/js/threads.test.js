// Threads change nothing: the same init models loaded with 1, 2 and 3
// threads (doze-mt.wasm and its worker pool; 1 thread is doze.wasm) give
// bit-identical logits for a prompt stepped token by token and for a step
// after a prefilled prompt, and the same
// tokens, masks and compute for a generation (prompt prefilled) under the
// gates at budget 0.5; gate fine-tuning on the model's threads gives the same
// gate file; dispose ends every worker; the option is validated.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { hasRelaxedSimd, loadModel } from '../../js/src/index.js';
import { liveWorkers } from '../../js/src/pool.js';
import { run, scratch } from './helpers.js';

const dir = scratch();
const SENTENCE = 'Once upon a time there was a little fox who loved to run in the green woods. ';
function initModel(type) {
  const out = join(dir, `threads-${type}.gguf`);
  const r = run('native', ['init', '--dim', '256', '--hidden', '768', '--layers', '2', '--heads', '4',
    '--vocab', '500', '--ctx', '256', '--seed', '5', '--type', type, '-o', out]);
  if (r.status !== 0) throw new Error(r.stderr);
  return out;
}

async function runAll(path, threads) {
  const model = await loadModel(path, { threads });
  assert.equal(model.info.threads, threads);
  const s = model.createSession();
  const logits = [];
  for (const t of [1, 7, 42, 99, 300, 12, 5, 77]) logits.push(Buffer.from((await s.step(t)).logits.buffer).toString('base64'));
  s.dispose();
  // a prompt prefilled in one batch (the tiled products, two tokens at a
  // time), then a step that attends to the keys and values it wrote
  const p = model.createSession();
  await p.complete(SENTENCE.repeat(3),
    { maxTokens: 1, temperature: 0 });
  logits.push(Buffer.from((await p.step(9)).logits.buffer).toString('base64'));
  p.dispose();
  const gen = [];
  model.budget = 0.5; // training-free gates calibrated now, on this model's threads
  for await (const t of model.generate('Once upon a time there was a', { maxTokens: 12, temperature: 0 }))
    gen.push(JSON.stringify({ id: t.id, mask: t.mask, compute: t.compute }));
  model.dispose();
  return { logits, gen };
}

// q3_k: its product keeps a small table in its stack frame, which workers'
// stacks once misaligned (8 mod 16) turned to garbage (src/runtime/pool.c)
for (const type of ['f32', 'q8_0', 'q4_0', 'q3_k']) {
  test(`${type}: 1, 2 and 3 threads give the same bits`, async () => {
    const path = initModel(type);
    const one = await runAll(path, 1);
    for (const threads of [2, 3]) {
      const r = await runAll(path, threads);
      assert.deepEqual(r.logits, one.logits, `${threads} threads: stepped logits differ`);
      assert.deepEqual(r.gen, one.gen, `${threads} threads: the gated generation differs`);
    }
    assert.ok(one.gen.some((g) => JSON.parse(g).compute < 1), 'the budget skipped something');
  });
}

test('gate fine-tuning on 1 and 2 threads writes the same gates', async () => {
  const path = initModel('f32');
  const story = SENTENCE.repeat(6);
  const text = Array.from({ length: 8 }, (_, i) => `${story} Story ${i}.`).join('\n<|endoftext|>\n');
  const files = [];
  for (const threads of [1, 2]) {
    const model = await loadModel(path, { threads, contextLength: 128 });
    const losses = [];
    const gates = await model.finetuneGates(text, { steps: 3, batch: 2, contextLength: 128, budget: 0.6,
      onStep: (st) => losses.push(st.loss) });
    files.push({ bytes: Buffer.from(model.saveGates(gates)).toString('base64'), losses });
    model.dispose();
  }
  assert.equal(files[0].losses.length, 3);
  assert.deepEqual(files[1].losses, files[0].losses, 'the step losses differ');
  assert.equal(files[1].bytes, files[0].bytes, 'the gate files differ');
});

test('dispose ends the workers; the option is validated', async () => {
  const path = initModel('f32');
  // the earlier tests' workers end asynchronously after their dispose
  for (let i = 0; i < 500 && liveWorkers() !== 0; i++) await sleep(10);
  const before = liveWorkers();
  assert.equal(before, 0, 'the earlier models left workers running');
  const model = await loadModel(path, { threads: 3 });
  assert.equal(liveWorkers(), before + 2);
  model.dispose();
  for (let i = 0; i < 200 && liveWorkers() !== before; i++) await sleep(10);
  assert.equal(liveWorkers(), before);
  await assert.rejects(loadModel(path, { threads: 0 }), /threads/);
  await assert.rejects(loadModel(path, { threads: 65 }), /threads/);
  await assert.rejects(loadModel(path, { threads: 1.5 }), /threads/);
});

// A script that ends without dispose() must still end: the pool's workers
// hold no reference on the process (a 'message' listener added after unref()
// took one back, and Node waited forever).
test('a model left undisposed does not keep Node running', () => {
  const path = initModel('q8_0');
  const index = new URL('../../js/src/index.js', import.meta.url).href;
  const script = `import { loadModel } from ${JSON.stringify(index)};
const m = await loadModel(${JSON.stringify(path)}, { threads: 3 });
let n = 0;
for await (const t of m.generate('Once upon a time', { maxTokens: 4, temperature: 0 })) n++;
console.log('threads', m.info.threads, 'tokens', n);`;
  // as a script file, and as -e text (whose --input-type a worker must not
  // get), with options Node refuses in a worker's explicit list
  const file = join(dir, 'undisposed.mjs');
  writeFileSync(file, script);
  for (const argv of [['--max-old-space-size=512', file], ['--expose-gc', '--input-type=module', '-e', script]]) {
    const t0 = Date.now();
    const r = spawnSync(process.execPath, argv, { encoding: 'utf8', timeout: 60000 });
    assert.equal(r.signal, null, `${argv[0]}: still running after ${Date.now() - t0} ms: the workers kept it alive`);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /threads 3 tokens 4/);
  }
});

// More than 1 thread runs doze-mt.wasm or, by simd, its relaxed twin
// doze-mt-relaxed.wasm, chosen as for 1 thread.
test('threads and simd: the threaded build follows simd as the single-thread one does', async () => {
  const path = initModel('q8_0');
  const strict = await loadModel(path, { threads: 2, simd: 'strict' });
  assert.equal(strict.info.threads, 2);
  assert.equal(strict.info.simd, 'strict');
  strict.dispose();
  const auto = await loadModel(path, { threads: 2 });
  assert.equal(auto.info.threads, 2);
  assert.equal(auto.info.simd, hasRelaxedSimd() ? 'relaxed' : 'strict');
  auto.dispose();
  if (hasRelaxedSimd()) {
    const relaxed = await loadModel(path, { threads: 2, simd: 'relaxed' });
    assert.equal(relaxed.info.threads, 2);
    assert.equal(relaxed.info.simd, 'relaxed');
    relaxed.dispose();
  } else {
    await assert.rejects(loadModel(path, { threads: 2, simd: 'relaxed' }), (e) => e.code === 'NO_RELAXED_SIMD');
    await assert.rejects(loadModel(path, { simd: 'relaxed' }), (e) => e.code === 'NO_RELAXED_SIMD');
  }
});
