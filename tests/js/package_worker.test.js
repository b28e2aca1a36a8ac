// doze-lm/worker under Node's worker_threads: the same tokens as the main
// thread API, streamed back by postMessage; cancel (AbortSignal and breaking
// out of the loop) forwarded to the worker; errors keep their codes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as direct from '../../js/src/index.js';
import * as worker from '../../js/src/worker.js';
import { scratch } from './helpers.js';
import { initModel, slowStream, storiesModel } from './package_fixtures.js';

const dir = scratch();
const path = storiesModel(dir) || initModel('f32', dir);
const PROMPT = 'Once upon a time';

async function ids(gen) {
  const out = [];
  let text = '';
  for await (const t of gen) {
    out.push(t.id);
    text += t.text;
  }
  return { ids: out, text };
}

test('the worker streams the same tokens as the main-thread API', async () => {
  const d = await direct.loadModel(path);
  const progress = [];
  const w = await worker.loadModel(path, { onProgress: (p) => progress.push(p) });
  try {
    assert.deepEqual(w.info, d.info);
    assert.equal(progress.at(-1).phase, 'done');
    assert.equal(progress.at(-1).loaded, readFileSync(path).length);
    assert.deepEqual(Array.from(await w.tokenize('The cat sat.')), Array.from(d.tokenize('The cat sat.')));
    assert.equal(await w.detokenize(d.tokenize('The cat sat.')), 'The cat sat.');
    for (const opts of [{ temperature: 0, maxTokens: 40 }, { temperature: 0.9, topP: 0.9, seed: 123, maxTokens: 40 }]) {
      const a = await ids(d.generate(PROMPT, opts));
      const b = await ids(w.generate(PROMPT, opts));
      assert.deepEqual(b, a);
      assert.ok(a.ids.length > 5);
    }
    assert.equal(await w.complete(PROMPT, { temperature: 0, maxTokens: 20 }), await d.complete(PROMPT, { temperature: 0, maxTokens: 20 }));
    const text = 'Once upon a time, there was a little girl named Lily.';
    assert.deepEqual(await w.perplexity(text), await d.perplexity(text));
    // sessions in the worker
    const s1 = await w.createSession();
    const s2 = await w.createSession();
    const [r1, r2] = await Promise.all([ids(s1.generate(PROMPT, { temperature: 0, maxTokens: 15 })),
      ids(s2.generate('One day', { temperature: 0, maxTokens: 15 }))]);
    assert.deepEqual(r1, await ids(d.generate(PROMPT, { temperature: 0, maxTokens: 15 })));
    assert.deepEqual(r2, await ids(d.generate('One day', { temperature: 0, maxTokens: 15 })));
    assert.ok(s1.position > 15, 'position: a cached getter, exact after the stream ended');
    await s1.dispose();
    console.log(`# worker: ${a0(await ids(w.generate(PROMPT, { temperature: 0, maxTokens: 12 })))} (same as the main thread)`);
  } finally {
    d.dispose();
    await w.dispose();
  }
  function a0(r) { return r.ids.join(' '); }
});

test('cancel is forwarded to the worker; the worker stays usable and frees what it took', async () => {
  const w = await worker.loadModel(readFileSync(path));
  try {
    const greedy = await ids(w.generate(PROMPT, { temperature: 0, maxTokens: 30 }));
    const base = await w.heapUsed(); // the model + its cached session
    const ac = new AbortController();
    let n = 0;
    await assert.rejects((async () => {
      for await (const t of w.generate(PROMPT, { temperature: 1, seed: 4, ignoreEos: true, signal: ac.signal })) {
        void t;
        if (++n === 3) ac.abort();
      }
    })(), (e) => e.name === 'AbortError' && e.code === 'ABORTED');
    assert.ok(n >= 3);
    // breaking out of the loop cancels too
    for await (const t of w.generate(PROMPT, { temperature: 1, seed: 4, ignoreEos: true })) { void t; break; }
    assert.deepEqual(await ids(w.generate(PROMPT, { temperature: 0, maxTokens: 30 })), greedy);
    assert.equal(await w.heapUsed(), base, 'heap in the worker back where it was');
  } finally {
    await w.dispose();
  }
});

test('worker: abort during load, errors with codes, disposed model', async () => {
  const bytes = readFileSync(path);
  const ac = new AbortController();
  let events = 0;
  await assert.rejects(worker.loadModel(slowStream(bytes, { size: 4096, delay: 2 }), {
    signal: ac.signal,
    onProgress: () => { if (++events === 10) ac.abort(); },
  }), (e) => e.name === 'AbortError' && e.code === 'ABORTED');
  const bad = new Uint8Array(bytes);
  bad[1] = 0;
  await assert.rejects(worker.loadModel(bad), (e) => e instanceof worker.DozeError && e.code === 'BAD_MAGIC');
  await assert.rejects(worker.loadModel(bytes.subarray(0, 5000)), (e) => e.code === 'TRUNCATED');
  await assert.rejects(worker.loadModel(new Blob([bytes.subarray(0, 99999)])), (e) => e.code === 'TRUNCATED');
  const w = await worker.loadModel(new Response(new Blob([bytes])));
  await assert.rejects(w.detokenize([999999]), (e) => e.code === 'TOKEN_RANGE');
  await w.dispose();
  await assert.rejects(w.tokenize('x'), (e) => e instanceof worker.DozeError);
});

// dispose() ends what is in flight as on the main thread: each pending call
// rejects with STATE (it once waited forever on a terminated worker).
test('worker: dispose rejects the calls in flight with STATE', async () => {
  const settle = (p) =>
    Promise.race([p.then(() => 'resolved', (e) => e.code), new Promise((r) => setTimeout(() => r('hung'), 10000))]);
  let m = await worker.loadModel(path, { threads: 1 });
  const p = m.complete(PROMPT, { maxTokens: 100000, ignoreEos: true });
  p.catch(() => {});
  await new Promise((r) => setTimeout(r, 50));
  await m.dispose();
  assert.equal(await settle(p), 'STATE');
  m = await worker.loadModel(path, { threads: 1 });
  const g = (async () => {
    let n = 0;
    for await (const t of m.generate(PROMPT, { maxTokens: 200, ignoreEos: true })) if (++n === 3) m.dispose();
  })();
  assert.equal(await settle(g), 'STATE');
});

// chat() on the worker's model renders the template in the calling thread
// (a page's import map does not reach a worker) and generates in the worker:
// the same reply as the main thread's model.
test('worker: chat gives the main thread\'s reply', async () => {
  const template = "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  const messages = [{ role: 'user', content: 'Tell me a story.' }];
  const opts = { template, maxTokens: 12, temperature: 0 };
  const reply = async (m) => {
    let text = '';
    for await (const t of m.chat(messages, opts)) text += t.text;
    return text;
  };
  const d = await direct.loadModel(path, { threads: 1 });
  const w = await worker.loadModel(path, { threads: 1 });
  try {
    const expected = await reply(d);
    assert.ok(expected.length > 0);
    assert.equal(await reply(w), expected);
    await assert.rejects(reply(w).then(() => w.chat(messages, { template: '{% if %}' }).next()), (e) => e.code === 'BAD_FORMAT');
  } finally {
    d.dispose();
    await w.dispose();
  }
});

// An async iterable (a generator, a Node Readable) cannot be posted to a
// worker: it goes over as a stream read on demand.
test('worker: loads from an async generator and a Node Readable', async () => {
  const bytes = readFileSync(path);
  async function* chunks() {
    for (let i = 0; i < bytes.length; i += 100000) yield bytes.subarray(i, i + 100000);
  }
  const { createReadStream } = await import('node:fs');
  const d = await direct.loadModel(path, { threads: 1 });
  const expected = await d.complete(PROMPT, { maxTokens: 6, temperature: 0 });
  d.dispose();
  for (const source of [chunks(), createReadStream(path)]) {
    const w = await worker.loadModel(source, { threads: 1 });
    assert.equal(await w.complete(PROMPT, { maxTokens: 6, temperature: 0 }), expected);
    await w.dispose();
  }
});
