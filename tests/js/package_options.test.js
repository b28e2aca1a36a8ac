// Every option of the main API is checked: a wrong type or range, or an
// unknown option name, is a DozeError INVALID_ARGUMENT naming the call and
// the option; a prompt longer than the context is an error naming both
// numbers unless truncate / keepLast says what to keep; an abandoned
// generator's wasm memory is freed at model.dispose().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel, heapUsed, getRuntime, DozeError } from '../../js/src/index.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { withBoolKey } from './chat_fixtures.js';
import { root, scratch } from './helpers.js';
import { initModel } from './package_fixtures.js';

const dir = scratch();
const path = initModel('f32', dir); // context 128, vocab 300
const LONG = 'The quick brown fox jumps over the lazy dog again and again. '.repeat(12);

/** Asserts that `p` (a promise or a function) fails with INVALID_ARGUMENT and a message matching `re`. */
async function invalid(p, re) {
  const check = (e) => {
    assert.ok(e instanceof DozeError, `a DozeError, got ${e}`);
    assert.equal(e.code, 'INVALID_ARGUMENT', e.message);
    assert.match(e.message, re);
    return true;
  };
  if (typeof p === 'function') {
    let r;
    try {
      r = p();
    } catch (e) {
      return check(e);
    }
    return assert.rejects(Promise.resolve(r), check);
  }
  return assert.rejects(p, check);
}

const drain = async (gen) => {
  const out = [];
  for await (const t of gen) out.push(t);
  return out;
};

test('loadModel: contextLength, maxMemory, callbacks, unknown names', async () => {
  const base = await heapUsed();
  for (const v of [-5, 0, 1e9, 1.5, '64', NaN]) {
    await invalid(loadModel(path, { contextLength: v }), /^loadModel: contextLength must be an integer in \[1, 1048576\], got /);
  }
  // above the model's own context: named with both numbers, nothing kept
  await invalid(loadModel(path, { contextLength: 4096 }), /contextLength 4096 is above the model's own context of 128 positions/);
  await invalid(loadModel(path, { maxMemory: -1 }), /maxMemory/);
  await invalid(loadModel(path, { onProgress: 'yes' }), /onProgress must be a function/);
  await invalid(loadModel(path, { signal: {} }), /signal must be an AbortSignal/);
  await invalid(loadModel(path, { contextLenght: 64 }), /unknown option 'contextLenght' \(known: onProgress, signal, contextLength/);
  await invalid(loadModel(path, 'fast'), /options must be an object/);
  await invalid(heapUsed({ wasm: 5 }), /heapUsed: wasm must be/);
  await invalid(getRuntime({ wsam: 'x' }), /unknown option 'wsam'/);
  assert.equal(await heapUsed(), base, 'the refused loads left nothing behind');
  const m = await loadModel(path, { contextLength: 128, maxMemory: 0 });
  assert.equal(m.info.contextLength, 128);
  m.dispose();
});

test('generate / complete / perplexity / step / tokenize / gates options are checked', async () => {
  const m = await loadModel(path);
  try {
    await drain(m.generate('x', { maxTokens: 1 })); // the model's cached session exists
    const base = await heapUsed();
    for (const v of [-1, 'abc', 1.5, NaN, -Infinity]) {
      await invalid(m.generate('x', { maxTokens: v }).next(), /^generate: maxTokens must be an integer >= 0 \(or Infinity\), got /);
    }
    await invalid(m.generate('x', { temperature: -0.5 }).next(), /generate: temperature must be a finite number >= 0, got -0.5/);
    await invalid(m.generate('x', { topP: -0.1 }).next(), /generate: topP must be a finite number in \[0, 1\], got -0.1/);
    await invalid(m.generate('x', { topP: 1.2 }).next(), /topP/);
    await invalid(m.generate('x', { topK: -3 }).next(), /topK must be an integer >= 0/);
    await invalid(m.generate('x', { seed: -1 }).next(), /seed must be/);
    await invalid(m.generate('x', { seed: 1.5 }).next(), /seed must be/);
    await invalid(m.generate('x', { stop: { s: 1 } }).next(), /stop must be a string, a token id, or an array of them/);
    await invalid(m.generate('x', { ignoreEos: 1 }).next(), /ignoreEos must be true or false/);
    await invalid(m.generate('x', { maxToken: 5 }).next(), /generate: unknown option 'maxToken'/);
    await invalid(m.generate('x', { onToken: () => {} }).next(), /generate: unknown option 'onToken'/);
    await invalid(m.generate('x', { truncate: 'end' }).next(), /truncate must be one of "start", got "end"/);
    await invalid(m.generate('x', { keepLast: 0 }).next(), /keepLast must be an integer >= 1/);
    await invalid(m.generate('x', { keepLast: 5, truncate: 'start' }).next(), /not both/);
    await invalid(m.generate(42).next(), /the prompt must be a string/);
    await invalid(m.complete('x', { maxTokens: 'abc' }), /^complete: maxTokens/);
    await invalid(m.complete('x', { onToken: 3 }), /complete: onToken must be a function/);
    await invalid(m.perplexity('Once upon a time', { budget: 2 }), /perplexity: budget must be a number in \(0, 1\], got 2/);
    await invalid(m.perplexity('Once upon a time', { budgte: 0.5 }), /unknown option 'budgte'/);
    await invalid(() => m.tokenize('x', { bos: 'no' }), /tokenize: bos must be true or false/);
    await invalid(() => m.tokenize('x', { eos: true }), /tokenize: unknown option 'eos'/);
    await invalid(() => m.detokenize(5), /detokenize: ids must be an array of integer token ids, got 5/);
    const s = m.createSession();
    await invalid(s.step(1, { layer: [1, 1] }), /step: mask: unknown option 'layer'/);
    await invalid(s.generate('x', { maxTokens: -1 }).next(), /maxTokens/);
    s.dispose();
    await invalid(m.calibrateGates({ protectLayers: -1 }), /calibrateGates: protectLayers must be an integer >= 0, got -1/);
    await invalid(m.calibrateGates({ tokens: ['a'] }), /calibrateGates: tokens must be an array of integer token ids/);
    await invalid(m.calibrateGates({ text: 'x', activte: false }), /calibrateGates: unknown option 'activte'/);
    await invalid(m.finetuneGates('text', { steps: 0 }), /finetuneGates: steps must be an integer >= 1, got 0/);
    await invalid(m.finetuneGates('text', { lr: -1 }), /finetuneGates: lr must be a finite number > 0, got -1/);
    await invalid(m.finetuneGates('text', { step: 3 }), /finetuneGates: unknown option 'step'/);
    await invalid(() => m.loadGates(new Uint8Array(8), { activate: 'yes' }), /loadGates: activate must be true or false/);
    await invalid(() => m.autoBudget({ targetMsPerToken: 5, mni: 0.3 }), /autoBudget: unknown option 'mni'/);
    assert.equal(await heapUsed(), base, 'refused calls took no memory');
    // what is valid still works: Infinity, 0 and complete's onToken
    const none = await drain(m.generate('x', { maxTokens: 0 }));
    assert.equal(none.length, 0);
    let seen = 0;
    const text = await m.complete('Once', { maxTokens: 5, temperature: 0, ignoreEos: true, onToken: () => seen++ });
    assert.equal(seen, 5);
    assert.equal(typeof text, 'string');
  } finally {
    m.dispose();
  }
});

test('a prompt longer than the context: an error naming both numbers, or truncate / keepLast keep its end', async () => {
  const m = await loadModel(path);
  try {
    const ids = m.tokenize(LONG);
    assert.ok(ids.length > 300, `${ids.length} prompt tokens`);
    await assert.rejects(drain(m.generate(LONG, { maxTokens: 5 })), (e) => {
      assert.equal(e.code, 'CONTEXT_FULL');
      assert.match(e.message, new RegExp(`the prompt is ${ids.length} tokens \\(BOS included\\) but the context has 128 of 128 positions free`));
      assert.doesNotMatch(e.message, /\b64\b/);
      return true;
    });
    // a session with 100 positions used
    const s = m.createSession();
    while (s.position < 100) await s.step(5);
    await assert.rejects(drain(s.generate(LONG.slice(0, 150), { maxTokens: 3 })),
      (e) => e.code === 'CONTEXT_FULL' && /but the context has 28 of 128 positions free/.test(e.message));
    s.dispose();

    // keepLast: BOS + the prompt's last N - 1 tokens; the first token is the
    // argmax of the logits after stepping exactly those tokens
    const keep = [ids[0], ...ids.slice(ids.length - 19)];
    const ref = m.createSession();
    let logits = null;
    for (const id of keep) logits = (await ref.step(id)).logits;
    ref.dispose();
    const argmax = logits.indexOf(Math.max(...logits));
    const gen = m.generate(LONG, { maxTokens: 4, temperature: 0, ignoreEos: true, keepLast: 20 });
    const first = await gen.next();
    assert.equal(first.value.id, argmax);
    assert.equal(first.value.position, 20);
    let r;
    while (!(r = await gen.next()).done);
    assert.equal(r.value.promptTokens, 20);

    // truncate: 'start' leaves room for maxTokens (at most half of the context)
    const a = m.generate(LONG, { maxTokens: 10, temperature: 0, ignoreEos: true, truncate: 'start' });
    let ra;
    const got = [];
    while (!(ra = await a.next()).done) got.push(ra.value);
    assert.equal(ra.value.promptTokens, 118);
    assert.equal(got.length, 10);
    assert.equal(ra.value.reason, 'length');
    const b = m.generate(LONG, { temperature: 0, ignoreEos: true, truncate: 'start' });
    let rb;
    while (!(rb = await b.next()).done);
    assert.equal(rb.value.promptTokens, 64);
    assert.equal(rb.value.reason, 'context');
    console.log(`# ${ids.length}-token prompt, context 128: refused; keepLast 20 -> first token ${argmax}; truncate 'start' kept 118 (maxTokens 10) / 64 (no limit)`);
  } finally {
    m.dispose();
  }
});

test('an abandoned generator (next() once, never finished) is freed at model.dispose()', async () => {
  const base = await heapUsed();
  const m = await loadModel(path);
  const g1 = m.generate('Once upon a time', { maxTokens: 50, temperature: 0, ignoreEos: true });
  assert.ok(!(await g1.next()).done);
  const s = m.createSession();
  const g2 = s.generate('One day', { maxTokens: 50, stop: ['zz'], ignoreEos: true });
  assert.ok(!(await g2.next()).done);
  const g3 = m.generate('Hello', { maxTokens: 50, ignoreEos: true }); // the shared session is busy: a temporary one
  assert.ok(!(await g3.next()).done);
  assert.ok((await heapUsed()) > base);
  m.dispose();
  assert.equal(await heapUsed(), base, 'nothing left after dispose');
  await assert.rejects(g1.next(), (e) => e.code === 'STATE');
  console.log('# 3 abandoned generators: heap back at its baseline after dispose');
});

// Numbers reach wasm as int32 / float32: what would wrap or round to
// something else there is refused here (2^32 + 5 once ran as token 5,
// batch 2^32 + 1 as batch 1, a budget of 1e-46 became 0 after the setter
// took it).
test('values that would wrap or round at the wasm boundary are refused', async () => {
  const m = await loadModel(path, { threads: 1 });
  const W = 2 ** 32;
  try {
    const s = m.createSession();
    await invalid(s.step(W + 5), /step: the token must be an integer id/);
    await invalid(Promise.resolve().then(() => m.detokenize([W + 5])), /detokenize: ids must be an array of integer token ids/);
    assert.equal(m.tokenText(W + 5), null);
    assert.notEqual(m.tokenText(5), null);
    await invalid(m.finetuneGates(LONG, { steps: 1, batch: W + 1 }), /finetuneGates: batch must be at most 2147483647, got 4294967297/);
    await invalid(m.generate('x', { repeatLastN: W }).next(), /repeatLastN must be at most 2147483647/);
    await invalid(Promise.resolve().then(() => { m.budget = 1e-46; }), /budget must be a number in \(0, 1\], got 1e-46/);
    // maxTokens 0 yields nothing, speculative or not
    for (const speculative of [false, { k: 2, timed: false }]) {
      const items = [];
      for await (const t of m.generate('The quick', { maxTokens: 0, speculative })) items.push(t);
      assert.deepEqual(items, [], `speculative ${JSON.stringify(speculative)}`);
    }
  } finally {
    m.dispose();
  }
});

test('an empty prompt where the vocabulary adds no BOS says so (the model has a BOS id)', async () => {
  const plain = readFileSync(join(root, 'models', 'doze-stories.gguf'));
  const m = await loadModel(withBoolKey(plain, 'tokenizer.ggml.add_bos_token', false));
  try {
    assert.ok(m.info.bosId >= 0);
    await assert.rejects(m.complete('', { maxTokens: 2 }),
      (e) => e.code === 'INVALID_ARGUMENT' && /the prompt is empty and this vocabulary adds no BOS token/.test(e.message));
    assert.ok((await m.complete('Once', { maxTokens: 2, temperature: 0 })).length > 0, 'a prompt runs');
  } finally {
    m.dispose();
  }
});
