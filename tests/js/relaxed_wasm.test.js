// doze-relaxed.wasm in Node. Node 20 has relaxed SIMD only behind
// --experimental-wasm-relaxed-simd, and there its baseline compiler (Liftoff)
// returns twice the int8 dot on x64: hasRelaxedSimd()'s probe refuses such an
// engine, so simd 'auto' stays strict and 'relaxed' is an error. Its
// optimizing compiler is right: run alone (--no-liftoff) the relaxed build
// must give the strict build's bits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hasRelaxedSimd, loadModel } from '../../js/src/index.js';
import { root, scratch } from './helpers.js';
import { initModel, kquantModel } from './package_fixtures.js';

const strictWasm = join(root, 'js', 'dist', 'doze.wasm');
const relaxedWasm = join(root, 'js', 'dist', 'doze-relaxed.wasm');
const threadedRelaxedWasm = join(root, 'js', 'dist', 'doze-mt-relaxed.wasm');

test('relaxed build present, selection and errors in an engine without (working) relaxed SIMD', async () => {
  assert.ok(existsSync(relaxedWasm), 'npm run build makes js/dist/doze-relaxed.wasm');
  assert.ok(existsSync(threadedRelaxedWasm), 'npm run build makes js/dist/doze-mt-relaxed.wasm');
  const m = await loadModel(initModel('q8_0'), { simd: 'strict' });
  assert.equal(m.info.simd, 'strict');
  m.dispose();
  if (hasRelaxedSimd()) return; // an engine that has it: the browser test covers that side
  const a = await loadModel(initModel('q8_0'));
  assert.equal(a.info.simd, 'strict', "simd 'auto' falls back to the strict build");
  a.dispose();
  await assert.rejects(loadModel(initModel('q8_0'), { simd: 'relaxed' }), (e) => e.code === 'NO_RELAXED_SIMD');
  await assert.rejects(loadModel(initModel('q8_0'), { simd: 'yes' }), (e) => e.code === 'INVALID_ARGUMENT');
});

const child = `
import { loadModel } from ${JSON.stringify(join(root, 'js', 'src', 'index.js'))};
const PROMPT = 'Once upon a time there was a little dog who liked to run';
const out = {};
for (const path of process.argv.slice(2)) {
  const res = [];
  for (const [wasm, threads] of [[${JSON.stringify(strictWasm)}, 1], [${JSON.stringify(relaxedWasm)}, 1],
      [${JSON.stringify(threadedRelaxedWasm)}, 2]]) {
    const m = await loadModel(path, { wasm, threads });
    // the prompt as one prefill (the matmuls), then the same prompt token by
    // token (the matvecs): each token must get the same bits either way
    const runs = [];
    for (const batched of [true, false]) {
      const s = m.createSession();
      if (batched) for await (const t of s.generate(PROMPT, { maxTokens: 1, temperature: 0 })) void t;
      else for (const id of m.tokenize(PROMPT, { bos: true })) await s.step(id);
      const logits = [];
      for (let i = 0; i < 6; i++) logits.push(...(await s.step((i * 37 + 5) % m.info.vocabSize)).logits);
      runs.push(logits);
      s.dispose();
    }
    const stepwise = runs[1].filter((v, i) => !Object.is(v, runs[0][i])).length;
    res.push({ simd: m.info.simd, threads: m.info.threads, logits: runs[0], stepwise });
    m.dispose();
  }
  const differ = res.slice(1).map((r) => r.logits.filter((v, i) => !Object.is(v, res[0].logits[i])).length);
  const maxDiff = res.slice(1).map((r) => Math.max(...r.logits.map((v, i) => Math.abs(v - res[0].logits[i]))));
  const relaxedPair = res[2].logits.filter((v, i) => !Object.is(v, res[1].logits[i])).length;
  out[path] = { simd: res.map((r) => r.simd), threads: res.map((r) => r.threads), n: res[0].logits.length, differ,
    maxDiff, relaxedPair, stepwise: res.map((r) => r.stepwise),
    range: Math.max(...res[0].logits) - Math.min(...res[0].logits),
    mag: res[0].logits.reduce((a, v) => a + Math.abs(v), 0) };
}
console.log(JSON.stringify(out));
`;

test('Node --experimental-wasm-relaxed-simd --no-liftoff: the relaxed builds (1 thread, and threaded on 2) give the strict bits (f16, q8_0, q4_0, q5_0, K-quants)', () => {
  const models = [initModel('f16'), initModel('q8_0'), initModel('q4_0'), initModel('q5_0'), kquantModel('q4_k_m'), kquantModel('q5_k'),
    kquantModel('q6_k'), kquantModel('q3_k'), kquantModel('q2_k')];
  // a file, not -e: the thread pool's workers inherit the flags, and
  // --input-type would stop them
  const script = join(scratch(), 'relaxed-child.mjs');
  writeFileSync(script, child);
  const r = spawnSync(process.execPath, ['--experimental-wasm-relaxed-simd', '--no-liftoff', script, ...models],
    { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1));
  for (const p of models) {
    assert.deepEqual(out[p].simd, ['strict', 'relaxed', 'relaxed']);
    assert.deepEqual(out[p].threads, [1, 1, 2]);
    assert.ok(out[p].n >= 1800 && out[p].mag > 0);
    assert.deepEqual(out[p].differ, [0, 0], `${p}: of ${out[p].n} logits, [relaxed, threaded relaxed] differ`);
    assert.deepEqual(out[p].stepwise, [0, 0, 0], `${p}: prefill and token-by-token logits differ`);
  }
});

// f32 products use the relaxed multiply-add, which the engine may fuse: the
// relaxed builds may differ from the strict one by those roundings (far
// below any model's own precision), and never between their 1- and
// 2-thread runs or between a prefill and the same tokens one by one.
test('Node --experimental-wasm-relaxed-simd --no-liftoff: f32 on the relaxed multiply-add stays consistent', () => {
  const path = initModel('f32');
  const script = join(scratch(), 'relaxed-f32-child.mjs');
  writeFileSync(script, child);
  const r = spawnSync(process.execPath, ['--experimental-wasm-relaxed-simd', '--no-liftoff', script, path],
    { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const o = JSON.parse(r.stdout.trim().split('\n').at(-1))[path];
  assert.deepEqual(o.simd, ['strict', 'relaxed', 'relaxed']);
  assert.ok(o.n >= 1800 && o.range > 1);
  assert.equal(o.relaxedPair, 0, 'the relaxed build on 1 and 2 threads differs');
  assert.deepEqual(o.stepwise, [0, 0, 0], 'prefill and token-by-token logits differ');
  for (const d of o.maxDiff) assert.ok(d <= 1e-4 * o.range, `relaxed vs strict: ${d} of a logit range ${o.range}`);
  console.log(`f32 relaxed vs strict: ${o.differ[0]} of ${o.n} logits differ, at most ${o.maxDiff[0].toExponential(2)} (logit range ${o.range.toFixed(2)})`);
});
