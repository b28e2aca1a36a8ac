// doze-relaxed.wasm in Node. Node 20 has relaxed SIMD only behind
// --experimental-wasm-relaxed-simd, and there its baseline compiler (Liftoff)
// returns twice the int8 dot on x64: hasRelaxedSimd()'s probe refuses such an
// engine, so simd 'auto' stays strict and 'relaxed' is an error. Its
// optimizing compiler is right: run alone (--no-liftoff) the relaxed build
// must give the strict build's bits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { hasRelaxedSimd, loadModel } from '../../js/src/index.js';
import { root } from './helpers.js';
import { initModel, kquantModel } from './package_fixtures.js';

const strictWasm = join(root, 'js', 'dist', 'doze.wasm');
const relaxedWasm = join(root, 'js', 'dist', 'doze-relaxed.wasm');

test('relaxed build present, selection and errors in an engine without (working) relaxed SIMD', async () => {
  assert.ok(existsSync(relaxedWasm), 'npm run build makes js/dist/doze-relaxed.wasm');
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
const out = {};
for (const path of process.argv.slice(1)) {
  const res = [];
  for (const wasm of [${JSON.stringify(strictWasm)}, ${JSON.stringify(relaxedWasm)}]) {
    const m = await loadModel(path, { wasm });
    const s = m.createSession();
    for await (const t of s.generate('Once upon a time there was a little dog who liked to run', { maxTokens: 1, temperature: 0 })) void t;
    const logits = [];
    for (let i = 0; i < 6; i++) logits.push(...(await s.step((i * 37 + 5) % m.info.vocabSize)).logits);
    res.push({ simd: m.info.simd, logits });
    m.dispose();
  }
  let differ = 0;
  res[0].logits.forEach((v, i) => { if (!Object.is(v, res[1].logits[i])) differ++; });
  out[path] = { simd: res.map((r) => r.simd), n: res[0].logits.length, differ, mag: res[0].logits.reduce((a, v) => a + Math.abs(v), 0) };
}
console.log(JSON.stringify(out));
`;

test('Node --experimental-wasm-relaxed-simd --no-liftoff: the relaxed build gives the strict bits (q8_0, q4_0, q5_0, K-quants)', () => {
  const models = [initModel('q8_0'), initModel('q4_0'), initModel('q5_0'), kquantModel('q4_k_m'), kquantModel('q5_k'),
    kquantModel('q6_k'), kquantModel('q3_k'), kquantModel('q2_k')];
  const r = spawnSync(process.execPath, ['--experimental-wasm-relaxed-simd', '--no-liftoff', '--input-type=module', '-e', child, ...models],
    { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1));
  for (const p of models) {
    assert.deepEqual(out[p].simd, ['strict', 'relaxed']);
    assert.ok(out[p].n >= 1800 && out[p].mag > 0);
    assert.equal(out[p].differ, 0, `${p}: ${out[p].differ} of ${out[p].n} logits differ`);
  }
});
