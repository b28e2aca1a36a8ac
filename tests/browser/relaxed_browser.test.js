// doze-relaxed.wasm in Chromium: the Q8_0/Q4_0 products on the relaxed-SIMD
// int8 dot, and F16's on the multiply-add (exact products), must give the strict build's bits (src/kernels/kernels_relaxed.c
// says why they can), for decode steps and a batched prefill, in V8's
// baseline compiler (Liftoff) and in its optimizing one (TurboFan) alike:
// each browser run loads one model in both builds and compares every logit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { root, scratch, run } from '../js/helpers.js';
import { initModel, kquantModel, serve } from '../js/package_fixtures.js';
import { ARGS, CHROMIUM, playwright, skipReason } from './chromium.js';

const page = `<!doctype html><meta charset="utf-8"><title>doze-lm relaxed SIMD test</title>
<script type="module">
window.runBoth = async (modelUrl) => {
  const M = await import('/js/src/index.js');
  const out = { hasRelaxed: M.hasRelaxedSimd() };
  for (const simd of ['strict', 'relaxed']) {
    const m = await M.loadModel(modelUrl, { simd });
    const s = m.createSession();
    const logits = [];
    // a prompt (batched prefill: its KV cache feeds every later step), then single steps
    for await (const t of s.generate('Once upon a time there was a little dog who liked to run in the park', { maxTokens: 1, temperature: 0 })) void t;
    for (let i = 0; i < 6; i++) logits.push(Array.from((await s.step((i * 37 + 5) % m.info.vocabSize)).logits));
    const gen = [];
    for await (const t of m.generate('Once upon a time', { temperature: 0, maxTokens: 12 })) gen.push(t.id);
    out[simd] = { info: m.info.simd, logits, gen };
    s.dispose?.();
    m.dispose();
  }
  return out;
};
// f32: the relaxed build's products run on the relaxed multiply-add; a
// prompt's logits as one prefill and token by token, in the build asked for
window.runF32 = async (modelUrl, simd) => {
  const M = await import('/js/src/index.js');
  const m = await M.loadModel(modelUrl, { simd });
  const prompt = 'Once upon a time there was a little dog who liked to run in the park';
  const runs = [];
  for (const batched of [true, false]) {
    const s = m.createSession();
    if (batched) for await (const t of s.generate(prompt, { maxTokens: 1, temperature: 0 })) void t;
    else for (const id of m.tokenize(prompt, { bos: true })) await s.step(id);
    const logits = [];
    for (let i = 0; i < 6; i++) logits.push(...(await s.step((i * 37 + 5) % m.info.vocabSize)).logits);
    runs.push(logits);
    s.dispose();
  }
  const info = m.info.simd;
  m.dispose();
  return { info, prefill: runs[0], stepwise: runs[1] };
};
window.dozeReady = true;
</script>`;

function oddModel(dir) {
  // rows that are not a multiple of 4 (vocab 302): the row-major products
  const out = join(dir, 'odd-q4_0.gguf');
  const r = run('native', ['init', '--dim', '64', '--hidden', '128', '--layers', '2', '--heads', '4', '--kv-heads', '2',
    '--vocab', '302', '--ctx', '128', '--seed', '3', '--type', 'q4_0', '-o', out]);
  if (r.status !== 0) throw new Error(`doze init failed: ${r.stderr}`);
  return out;
}

// fn(tab, errors) on the page at url in a fresh Chromium whose V8 runs only
// the given tier; the browser and its profile are gone afterwards
async function inChromium(url, tier, fn) {
  const profile = mkdtempSync(join(tmpdir(), 'doze-chromium-'));
  let context;
  try {
    context = await playwright.chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, args: [...ARGS, `--js-flags=${tier}`],
    });
    const tab = context.pages()[0] || (await context.newPage());
    const errors = [];
    tab.on('pageerror', (e) => errors.push(String(e)));
    await tab.goto(`${url}/`);
    await tab.waitForFunction(() => window.dozeReady === true);
    return await fn(tab, errors);
  } finally {
    if (context) await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

for (const tier of ['--liftoff-only', '--no-liftoff']) {
  test(`Chromium (${tier}): doze-relaxed.wasm gives doze.wasm's bits for f16, q8_0, q4_0, q5_0 and the K-quants`, { skip: skipReason, timeout: 240000 }, async () => {
    const dir = scratch();
    const models = { f16: initModel('f16', dir), q8_0: initModel('q8_0', dir), q4_0: initModel('q4_0', dir), odd_q4_0: oddModel(dir),
      q5_0: initModel('q5_0', dir), q4_k_m: kquantModel('q4_k_m', dir), q5_k: kquantModel('q5_k', dir),
      q6_k: kquantModel('q6_k', dir) };
    writeFileSync(join(dir, 'index.html'), page);
    const routes = { '/': join(dir, 'index.html') };
    for (const [k, f] of Object.entries(models)) routes[`/${k}.gguf`] = f;
    const srv = await serve({ routes, roots: { '/js/': join(root, 'js') } });
    try {
      await inChromium(srv.url, tier, async (tab, errors) => {
        for (const k of Object.keys(models)) {
          const r = await tab.evaluate((u) => window.runBoth(u), `${srv.url}/${k}.gguf`);
          assert.deepEqual(errors, []);
          assert.equal(r.hasRelaxed, true, 'Chromium has a working relaxed SIMD');
          assert.equal(r.strict.info, 'strict');
          assert.equal(r.relaxed.info, 'relaxed');
          let differ = 0, n = 0, mag = 0;
          r.strict.logits.forEach((row, i) => row.forEach((v, j) => {
            n++;
            mag += Math.abs(v);
            if (!Object.is(v, r.relaxed.logits[i][j])) differ++;
          }));
          assert.ok(n > 1000 && mag > 0, 'logits were compared');
          assert.equal(differ, 0, `${k}: ${differ} of ${n} logits differ between the builds`);
          assert.deepEqual(r.relaxed.gen, r.strict.gen, `${k}: greedy tokens`);
          console.log(`# ${tier} ${k}: ${n} logits and ${r.strict.gen.length} greedy tokens identical in both builds`);
        }
      });
      assert.ok(srv.requests.includes('/js/dist/doze-relaxed.wasm') && srv.requests.includes('/js/dist/doze.wasm'));
    } finally {
      await srv.close();
    }
  });
}

// The multiply-add may be fused or not, but the same way in V8's baseline
// compiler and its optimizing one (both lower it through one helper), so a
// function's bits do not change when it tiers up: the relaxed build's f32
// logits are compared across the two tiers, and with the strict build's.
test('Chromium: f32 on the relaxed multiply-add, the same bits in both tiers, prefill and token by token', { skip: skipReason, timeout: 240000 }, async () => {
  const dir = scratch();
  writeFileSync(join(dir, 'index.html'), page);
  const srv = await serve({ routes: { '/': join(dir, 'index.html'), '/f32.gguf': initModel('f32', dir) }, roots: { '/js/': join(root, 'js') } });
  const got = {};
  try {
    for (const tier of ['--liftoff-only', '--no-liftoff'])
      got[tier] = await inChromium(srv.url, tier, async (tab, errors) => {
        const r = { relaxed: await tab.evaluate((u) => window.runF32(u, 'relaxed'), `${srv.url}/f32.gguf`),
          strict: await tab.evaluate((u) => window.runF32(u, 'strict'), `${srv.url}/f32.gguf`) };
        assert.deepEqual(errors, []);
        return r;
      });
  } finally {
    await srv.close();
  }
  const same = (a, b) => a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
  const lo = got['--liftoff-only'], hi = got['--no-liftoff'];
  assert.equal(lo.relaxed.info, 'relaxed');
  assert.equal(lo.strict.info, 'strict');
  assert.ok(lo.relaxed.prefill.length > 1000);
  for (const r of [lo.relaxed, hi.relaxed, lo.strict, hi.strict])
    assert.ok(same(r.prefill, r.stepwise), 'prefill and token-by-token logits differ');
  assert.ok(same(lo.relaxed.prefill, hi.relaxed.prefill), 'the relaxed build differs between the tiers');
  assert.ok(same(lo.strict.prefill, hi.strict.prefill), 'the strict build differs between the tiers');
  const ref = hi.strict.prefill;
  const range = Math.max(...ref) - Math.min(...ref);
  const worst = Math.max(...hi.relaxed.prefill.map((v, i) => Math.abs(v - ref[i])));
  const differ = hi.relaxed.prefill.filter((v, i) => !Object.is(v, ref[i])).length;
  assert.ok(range > 1 && worst <= 1e-4 * range, `relaxed vs strict: ${worst} of a logit range ${range}`);
  console.log(`# f32: relaxed = itself in both tiers; vs strict ${differ} of ${ref.length} logits differ, at most ${worst.toExponential(2)} (range ${range.toFixed(2)})`);
});
