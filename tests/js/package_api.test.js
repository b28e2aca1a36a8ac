// doze-lm's main API in Node: every source kind, progress, generation equal to
// the native CLI token for token (greedy and seeded sampling), perplexity
// equal to `doze ppl`, sessions, errors with stable codes, abort, and the
// wasm heap back at its baseline after dispose.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { loadModel, heapUsed, DozeError } from '../../js/src/index.js';
import { run, scratch, sharedSkip } from './helpers.js';
import { cliGenerate, continuation, initModel, serve, slowStream, storiesModel } from './package_fixtures.js';

const dir = scratch();
const initPath = initModel('f32', dir);
const storiesPath = storiesModel(dir);
// The model the source/abort tests use: stories260K where present, else init.
const mainPath = storiesPath || initPath;
const mainBytes = readFileSync(mainPath);
const PROMPT = 'Once upon a time';

async function greedyIds(model, prompt = PROMPT, maxTokens = 30) {
  const ids = [];
  for await (const t of model.generate(prompt, { temperature: 0, maxTokens })) ids.push(t.id);
  return ids;
}

test('heap baseline exists and the package exports what it documents', async () => {
  const base = await heapUsed();
  assert.equal(typeof base, 'number');
  assert.ok(base >= 0);
  assert.equal(typeof loadModel, 'function');
  assert.ok(new DozeError('BAD_MAGIC', 'x') instanceof Error);
});

test('every source kind loads the same model to the same outputs, with monotonic progress', async () => {
  const srv = await serve({ routes: { '/m.gguf': mainPath } });
  const base = await heapUsed();
  try {
    const sources = {
      'URL string': () => `${srv.url}/m.gguf`,
      'URL object': () => new URL(`${srv.url}/m.gguf`),
      'file path': () => mainPath,
      'file: URL': () => pathToFileURL(mainPath),
      ArrayBuffer: () => mainBytes.buffer.slice(mainBytes.byteOffset, mainBytes.byteOffset + mainBytes.byteLength),
      Uint8Array: () => new Uint8Array(mainBytes),
      Blob: () => new Blob([mainBytes]),
      Response: () => new Response(new Blob([mainBytes])),
      // bytes in memory: the stream closes before its last read is answered
      'Response of bytes': () => new Response(new Uint8Array(mainBytes)),
      'byte ReadableStream': () => new ReadableStream({ type: 'bytes', start(c) { c.enqueue(new Uint8Array(mainBytes)); c.close(); } }),
      'fetch Response': () => fetch(`${srv.url}/m.gguf`),
      ReadableStream: () => slowStream(mainBytes, { size: 50000 }),
    };
    let reference = null;
    for (const [kind, make] of Object.entries(sources)) {
      const events = [];
      const model = await loadModel(await make(), { onProgress: (p) => events.push(p) });
      const out = {
        info: model.info,
        ids: Array.from(model.tokenize('The cat sat on the mat.')),
        gen: await greedyIds(model),
      };
      model.dispose();
      // progress: monotonic, ends with 'done' at total = the file's size
      assert.ok(events.length >= 2, `${kind}: progress events`);
      for (let i = 1; i < events.length; i++) {
        assert.ok(events[i].loaded >= events[i - 1].loaded, `${kind}: loaded is monotonic`);
      }
      const last = events[events.length - 1];
      assert.equal(last.phase, 'done', kind);
      assert.equal(last.loaded, mainBytes.length, `${kind}: loaded ends at the file size`);
      assert.equal(last.total, mainBytes.length, `${kind}: total`);
      for (const e of events.slice(1)) {
        if (e.total) assert.ok(e.loaded <= e.total, `${kind}: loaded <= total`);
      }
      // a stream or a Response without Content-Length: the total is known at the end
      if (!/ReadableStream|^Response/.test(kind)) assert.equal(events[0].total, mainBytes.length, `${kind}: total known up front`);
      else assert.ok(events.slice(1).every((e) => e.total === mainBytes.length), `${kind}: total from the GGUF header`);
      if (!reference) reference = out;
      else assert.deepEqual(out, reference, `${kind} gives the same model`);
    }
    assert.ok(reference.gen.length > 0);
    assert.equal(await heapUsed(), base, 'heap back at baseline');
    console.log(`# ${Object.keys(sources).length} source kinds; ${reference.gen.length} greedy tokens each: ${reference.gen.slice(0, 12).join(' ')} ...`);
  } finally {
    await srv.close();
  }
});

test('model.info describes the init model', async () => {
  const m = await loadModel(initPath);
  try {
    const i = m.info;
    assert.equal(i.architecture, 'llama');
    assert.deepEqual([i.dim, i.hiddenDim, i.layers, i.heads, i.kvHeads, i.headDim, i.vocabSize, i.contextLength],
      [64, 160, 2, 4, 2, 16, 300, 128]);
    assert.equal(i.weightType, 'f32');
    // A small f32 FFN (160 < 8 * 32 channels): blocks of 16
    assert.equal(i.ffnBlock, 16);
    assert.equal(i.ffnBlocks, 10);
    assert.equal(i.ffnOrder, 0); // not rewritten by doze order-ffn
    assert.equal(i.bosId, 1);
    assert.equal(i.eosId, 2);
    assert.ok(i.bytes > 64 * 300 * 4);
  } finally {
    m.dispose();
  }
  const q = await loadModel(initModel('q8_0', dir), { contextLength: 32 });
  assert.equal(q.info.weightType, 'q8_0');
  assert.equal(q.info.contextLength, 32);
  q.dispose();
});

test('tokenize / detokenize equal the CLI', async () => {
  const text = 'héllo wörld 😀 and more';
  for (const path of [initPath, storiesPath].filter(Boolean)) {
    const m = await loadModel(path);
    const cli = run('native', ['tokenize', path, '--text', text]).stdout.toString().trim().split(' ').map(Number);
    assert.deepEqual(Array.from(m.tokenize(text)), cli);
    const noBos = run('native', ['tokenize', path, '--text', text, '--no-bos']).stdout.toString().trim().split(' ').map(Number);
    assert.deepEqual(Array.from(m.tokenize(text, { bos: false })), noBos);
    // Characters outside the vocabulary go as bytes; a space next to them is
    // the byte-encoded U+2581, which decodes as itself (as in llama.cpp).
    assert.equal(m.detokenize(m.tokenize(text)).replace(/\u2581/g, ' '), text);
    if (path === storiesPath) assert.equal(m.detokenize(m.tokenize('One day, a dog ran.')), 'One day, a dog ran.');
    m.dispose();
  }
});

for (const [name, getPath, skip] of [['init', () => initPath, false], ['stories260K', () => storiesPath, sharedSkip]]) {
  test(`greedy and seeded generation equal the native CLI token for token (${name})`, { skip }, async () => {
    const path = getPath();
    const m = await loadModel(path);
    try {
      const nPrompt = m.tokenize(PROMPT).length;
      const runs = [
        { cli: ['--temp', '0'], js: { temperature: 0 } },
        { cli: ['--temp', '0.9', '--top-p', '0.9', '--seed', '123'], js: { temperature: 0.9, topP: 0.9, seed: 123 } },
        { cli: ['--temp', '1.2', '--top-k', '20', '--seed', '5'], js: { temperature: 1.2, topK: 20, seed: 5 } },
        { cli: ['--temp', '1', '--seed', '77', '--no-stop'], js: { temperature: 1, seed: 77, ignoreEos: true } },
        // seeds are 64 bits on both sides (the CLI took at most 2^63 - 1)
        { cli: ['--temp', '1', '--seed', '18446744073709551557'], js: { temperature: 1, seed: 18446744073709551557n } },
      ];
      const steps = 100;
      for (const r of runs) {
        const noStop = r.cli.includes('--no-stop');
        const { pairs, stdout } = cliGenerate(path, PROMPT, steps, r.cli);
        let want = continuation(pairs, nPrompt, m.info.bosId, noStop);
        // The package also stops at EOS (the CLI only at BOS)
        if (!noStop && want.includes(m.info.eosId)) want = want.slice(0, want.indexOf(m.info.eosId));
        const got = [];
        let text = '';
        const gen = m.generate(PROMPT, { ...r.js, maxTokens: steps - nPrompt + 1 });
        for await (const t of gen) {
          got.push(t.id);
          text += t.text;
        }
        assert.deepEqual(got, want, `${name} ${r.cli.join(' ')}`);
        assert.ok(got.length >= 5, 'generated something');
        if (want.length === pairs.length - nPrompt + 1 || noStop) {
          // nothing cut: the CLI printed the prompt and the same continuation
          assert.equal(m.detokenize(m.tokenize(PROMPT)) + text + '\n', stdout);
        }
      }
      const complete = await m.complete(PROMPT, { temperature: 0, maxTokens: 20 });
      assert.equal(complete, m.detokenize([m.tokenize(PROMPT).at(-1), ...(await greedyIds(m, PROMPT, 20))]).slice(m.detokenize([m.tokenize(PROMPT).at(-1)]).length));
      console.log(`# ${name}: greedy + 4 sampled runs equal the CLI; greedy: ${JSON.stringify(complete)}`);
    } finally {
      m.dispose();
    }
  });
}

test('perplexity equals `doze ppl` on a single story', async () => {
  const story = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the sun.';
  const file = join(dir, 'story.txt');
  writeFileSync(file, story);
  for (const path of [initPath, storiesPath].filter(Boolean)) {
    const m = await loadModel(path);
    const out = run('native', ['ppl', path, file]).stdout.toString();
    const [, ppl, tokens, , nll] = /^ppl ([\d.]+) tokens (\d+) stories (\d+) nll ([\d.]+)/.exec(out);
    const r = await m.perplexity(story);
    assert.equal(r.tokens, Number(tokens));
    // (native and wasm libm may differ in the last bits of exp/log)
    assert.ok(Math.abs(r.perplexity - Number(ppl)) <= 1e-6 * Number(ppl) + 1e-4, `${r.perplexity} vs ${ppl}`);
    assert.ok(Math.abs(r.nll - Number(nll)) <= 1e-5, `${r.nll} vs ${nll}`);
    console.log(`# perplexity ${path.endsWith('stories260K.gguf') ? 'stories260K' : 'init'}: js ${r.perplexity.toFixed(6)} cli ${ppl} over ${r.tokens} tokens`);
    m.dispose();
  }
});

test('perplexity over several scoring passes equals the likelihoods of single steps; abort stops it between passes', async () => {
  const m = await loadModel(mainPath);
  try {
    const text = 'Once upon a time, there was a little dog named Max. Max liked to run in the park. '.repeat(6);
    const ids = m.tokenize(text, { bos: true }).subarray(0, m.info.contextLength);
    assert.ok(ids.length > 130, `${ids.length} tokens: more than two passes of 64`);
    const s = m.createSession();
    let sum = 0;
    for (let i = 0; i + 1 < ids.length; i++) {
      const { logits } = await s.step(ids[i]);
      let max = -Infinity;
      for (const v of logits) if (v > max) max = v;
      let z = 0;
      for (const v of logits) z += Math.exp(Math.fround(v - max));
      sum += Math.log(z) - Math.fround(logits[ids[i + 1]] - max);
    }
    s.dispose();
    const r = await m.perplexity(text);
    assert.equal(r.tokens, ids.length - 1);
    // the same logits; only JS's and wasm's exp/log may differ in the last bits
    assert.ok(Math.abs(r.nll - sum / r.tokens) <= 1e-12, `${r.nll} vs ${sum / r.tokens}`);
    assert.equal(r.compute, 1);
    const ac = new AbortController();
    const aborted = m.perplexity(text, { signal: ac.signal });
    ac.abort();
    await assert.rejects(aborted, (e) => e.code === 'ABORTED');
    assert.deepEqual(await m.perplexity(text), r, 'the next perplexity is whole');
  } finally {
    m.dispose();
  }
});

test('text pieces concatenate to valid UTF-8 when characters span tokens', async () => {
  // In the init model every character outside its word list is byte tokens.
  const m = await loadModel(initPath);
  try {
    const text = 'ab 😀 é 日本';
    const ids = m.tokenize(text, { bos: false });
    assert.ok(ids.length > [...text].length, 'multi-byte characters are split into byte tokens');
    // the dummy leading space is the tokenizer's, not the text's: it goes
    // without BOS too (as in llama.cpp's detokenize)
    assert.equal(m.detokenize(ids).replace(/\u2581/g, ' '), text, 'without BOS the text comes back');
    // Generation text: concatenation == detokenize of the ids (no U+FFFD)
    const s = m.createSession();
    const got = [];
    let out = '';
    for await (const t of s.generate('😀', { temperature: 1.5, seed: 9, maxTokens: 60, ignoreEos: true })) {
      got.push(t.id);
      out += t.text;
    }
    const prev = m.tokenize('😀').at(-1);
    const whole = m.detokenize([prev, ...got]).slice(m.detokenize([prev]).length);
    assert.equal(out, whole);
    s.dispose();
  } finally {
    m.dispose();
  }
});

test('stop strings and stop ids end generation; the stop string is not output', async () => {
  const m = await loadModel(mainPath);
  try {
    // seeded sampling: varied text even from a random model (greedy text of
    // a random model can be one repeated word)
    const opts = { temperature: 3, seed: 5, maxTokens: 40 };
    const full = await m.complete(PROMPT, opts);
    // a short string whose first occurrence is not at the very start (a
    // random model's text may be one repeated word with no spaces)
    let word;
    for (let p = 1; p + 2 <= full.length && !word; p++) {
      const w = full.slice(p, p + 2);
      if (full.indexOf(w) === p && !/[\ud800-\udfff\ufffd]/.test(w)) word = w;
    }
    assert.ok(word, `no usable stop word in ${JSON.stringify(full)}`);
    const cut = full.indexOf(word);
    const r = [];
    const gen = m.generate(PROMPT, { ...opts, stop: [word] });
    let res;
    for (;;) {
      const n = await gen.next();
      if (n.done) {
        res = n.value;
        break;
      }
      r.push(n.value.text);
    }
    assert.equal(r.join(''), full.slice(0, cut));
    assert.equal(res.reason, 'stop');
    const ids = await greedyIds(m, PROMPT, 40);
    const stopId = ids[5];
    const upTo = ids.indexOf(stopId);
    assert.deepEqual(await greedyIds2(m, { stop: [stopId] }), ids.slice(0, upTo));
  } finally {
    m.dispose();
  }
  async function greedyIds2(model, extra) {
    const ids = [];
    for await (const t of model.generate(PROMPT, { temperature: 0, maxTokens: 40, ...extra })) ids.push(t.id);
    return ids;
  }
});

test('sessions keep independent KV caches', async () => {
  const m = await loadModel(mainPath);
  const base = await greedyIds(m, PROMPT, 25);
  const other = await greedyIds(m, 'One day, a dog', 25);
  const a = m.createSession();
  const b = m.createSession();
  const ga = a.generate(PROMPT, { temperature: 0, maxTokens: 25 });
  const gb = b.generate('One day, a dog', { temperature: 0, maxTokens: 25 });
  const ia = [], ib = [];
  // interleave the two generations token by token
  for (;;) {
    const [x, y] = await Promise.all([ga.next(), gb.next()]);
    if (!x.done) ia.push(x.value.id);
    if (!y.done) ib.push(y.value.id);
    if (x.done && y.done) break;
  }
  assert.deepEqual(ia, base);
  assert.deepEqual(ib, other);
  // a session continues its conversation: position grows, b is untouched
  const posB = b.position;
  const more = await a.complete(' And then', { temperature: 0, maxTokens: 5 });
  assert.equal(typeof more, 'string');
  assert.equal(b.position, posB);
  assert.ok(a.position > ia.length);
  // a third (model-level) generation is not disturbed by the open sessions
  assert.deepEqual(await greedyIds(m, PROMPT, 25), base);
  a.reset();
  assert.equal(a.position, 0);
  m.dispose();
  assert.throws(() => b.position, (e) => e.code === 'STATE');
});

test('malformed inputs reject with stable codes, and leave the heap at baseline', async () => {
  const base = await heapUsed();
  const cases = [
    ['truncated file', () => mainBytes.subarray(0, Math.floor(mainBytes.length / 2)), 'TRUNCATED'],
    ['header cut short', () => mainBytes.subarray(0, 100), 'TRUNCATED'],
    ['empty file', () => new Uint8Array(0), 'TRUNCATED'],
    ['wrong magic', () => { const b = new Uint8Array(mainBytes); b[0] = 0x58; return b; }, 'BAD_MAGIC'],
    ['not a model', () => new TextEncoder().encode('hello, I am not a GGUF file at all'), 'BAD_MAGIC'],
    ['stream that errors midway', () => slowStream(mainBytes, { size: 8192, failAt: 65536 }), 'IO'],
    ['missing file', () => join(dir, 'nope.gguf'), 'IO'],
    // Node's own code (EISDIR) is not a Doze code: it stays in the message
    ['a directory', () => dir, 'IO'],
  ];
  for (const [what, make, code] of cases) {
    await assert.rejects(loadModel(make()), (e) => {
      assert.ok(e instanceof DozeError, `${what}: a DozeError`);
      assert.equal(e.code, code, `${what}: ${e.message}`);
      assert.ok(e.message.length > 5);
      return true;
    });
  }
  const srv = await serve({});
  await assert.rejects(loadModel(`${srv.url}/missing.gguf`), (e) => e.code === 'IO' && /404/.test(e.message));
  await srv.close();
  const m = await loadModel(mainPath);
  assert.throws(() => m.detokenize([m.info.vocabSize + 5]), (e) => e.code === 'TOKEN_RANGE');
  await assert.rejects(m.complete('x', { temperature: -1 }), (e) => e.code === 'INVALID_ARGUMENT');
  m.dispose();
  assert.throws(() => m.tokenize('x'), (e) => e.code === 'STATE');
  assert.equal(await heapUsed(), base);
});

test('abort during load (a slow stream) and during generation; the module stays usable', async () => {
  const base = await heapUsed();
  // during load, after a few chunks
  const ac = new AbortController();
  let chunks = 0;
  const t0 = Date.now();
  await assert.rejects(
    loadModel(slowStream(mainBytes, { size: 4096, delay: 2 }), {
      signal: ac.signal,
      onProgress: (p) => { if (++chunks === 40) ac.abort(); void p; },
    }),
    (e) => e.name === 'AbortError' && e.code === 'ABORTED' && e instanceof DozeError,
  );
  assert.ok(Date.now() - t0 < 5000);
  assert.ok(chunks >= 40 && chunks < 45, `aborted promptly (${chunks} progress events)`);
  assert.equal(await heapUsed(), base, 'heap at baseline after an aborted load');
  // a stalled stream: the pending read is cancelled too
  const ac2 = new AbortController();
  const stalled = new ReadableStream({ start(c) { c.enqueue(mainBytes.slice(0, 5000)); } });
  setTimeout(() => ac2.abort(), 50);
  await assert.rejects(loadModel(stalled, { signal: ac2.signal }), (e) => e.code === 'ABORTED');
  // a stalled async iterable (a generator waiting forever inside an await)
  const acIt = new AbortController();
  async function* stalledGen() {
    yield mainBytes.slice(0, 5000);
    await new Promise(() => {});
  }
  setTimeout(() => acIt.abort(), 50);
  await assert.rejects(loadModel(stalledGen(), { signal: acIt.signal }), (e) => e.code === 'ABORTED');
  assert.equal(await heapUsed(), base, 'heap at baseline after the aborted iterable');
  // already aborted
  await assert.rejects(loadModel(mainPath, { signal: AbortSignal.abort() }), (e) => e.name === 'AbortError');
  assert.equal(await heapUsed(), base);

  // during generation
  const m = await loadModel(mainPath);
  const before = await greedyIds(m);
  const ac3 = new AbortController();
  const got = [];
  await assert.rejects((async () => {
    for await (const t of m.generate(PROMPT, { temperature: 0.8, seed: 1, signal: ac3.signal, ignoreEos: true })) {
      got.push(t.id);
      if (got.length === 7) ac3.abort();
    }
  })(), (e) => e.name === 'AbortError' && e.code === 'ABORTED');
  assert.equal(got.length, 7, 'no token after the abort');
  // from another task (queued after the first token; a fixed-delay timer can
  // outlast a whole generation of a small model): generation yields to the
  // event loop, so it is seen
  const ac4 = new AbortController();
  const got4 = [];
  await assert.rejects((async () => {
    for await (const t of m.generate(PROMPT, { temperature: 0.8, seed: 1, signal: ac4.signal, ignoreEos: true })) {
      if (got4.push(t.id) === 1) setImmediate(() => ac4.abort());
    }
  })(), (e) => e.code === 'ABORTED');
  assert.ok(got4.length < m.info.contextLength - 10, `aborted from a timer after ${got4.length} tokens`);
  // breaking out of the loop also releases everything
  for await (const t of m.generate(PROMPT, { temperature: 0 })) { void t; break; }
  assert.deepEqual(await greedyIds(m), before, 'still usable and unchanged');
  m.dispose();
  assert.equal(await heapUsed(), base, 'heap at baseline after an aborted generation');
});

test('the page stays responsive: timers run between generated tokens', async () => {
  const m = await loadModel(mainPath);
  let ticks = 0;
  const iv = setInterval(() => ticks++, 0);
  let n = 0;
  for await (const t of m.generate(PROMPT, { temperature: 1, seed: 2, maxTokens: 60, ignoreEos: true })) { void t; n++; }
  clearInterval(iv);
  m.dispose();
  assert.ok(n === 60);
  assert.ok(ticks > 0, `timers ran during generation (${ticks})`);
});

test('dispose returns the heap to baseline after 20 load/dispose cycles', async () => {
  const base = await heapUsed();
  for (let i = 0; i < 20; i++) {
    const m = await loadModel(i % 2 ? mainBytes : initPath);
    const s = m.createSession();
    await s.complete('hi', { temperature: 0, maxTokens: 3 });
    if (i % 3 === 0) s.dispose(); // the others are freed by model.dispose()
    await m.complete('hello', { maxTokens: 2, seed: i });
    m.dispose();
    m.dispose(); // idempotent
  }
  const after = await heapUsed();
  console.log(`# heap in use: baseline ${base} B, after 20 load/dispose cycles ${after} B`);
  assert.equal(after, base);
});

test('a precompiled WebAssembly.Module and a custom wasm URL work', async () => {
  const wasmPath = new URL('../../js/dist/doze.wasm', import.meta.url);
  const mod = await WebAssembly.compile(readFileSync(wasmPath));
  const a = await loadModel(mainPath, { wasm: mod });
  const b = await loadModel(mainPath, { wasm: wasmPath });
  assert.deepEqual(await greedyIds(a, PROMPT, 10), await greedyIds(b, PROMPT, 10));
  a.dispose();
  b.dispose();
  await assert.rejects(loadModel(mainPath, { wasm: join(dir, 'missing.wasm') }), (e) => e.code === 'NO_WASM_FILE');
});

test('an engine without wasm SIMD gets a clear NO_WASM_SIMD error', async () => {
  const validate = WebAssembly.validate;
  WebAssembly.validate = () => false; // what an engine without simd128 answers for the probe
  try {
    await assert.rejects(loadModel(mainPath, { wasm: 'no-simd-engine.wasm' }), (e) =>
      e instanceof DozeError && e.code === 'NO_WASM_SIMD' && /SIMD/.test(e.message));
  } finally {
    WebAssembly.validate = validate;
  }
});

test('a dense prompt runs as batched prefill, giving the token-by-token results', async () => {
  const model = await loadModel(mainPath);
  try {
    // > 64 tokens (several prefill passes; the last prompt token is a normal
    // step) that leave room for the continuation in the model's context
    const words = 'Once upon a time there was a little girl named Lily. She loved to play outside.'.split(' ');
    const room = model.info.contextLength - 20;
    let prompt = '';
    for (let i = 0; model.tokenize(prompt + ' ' + words[i % words.length]).length <= Math.min(room, 160); i++)
      prompt += (i ? ' ' : '') + words[i % words.length];
    let steps = 0;
    model._testAfterStep = () => { steps++; };
    const run = async (opts) => {
      steps = 0;
      const ids = [];
      const it = model.generate(prompt, { maxTokens: 16, ...opts });
      let r;
      while (!(r = await it.next()).done) ids.push(r.value.id);
      return { ids, steps, result: r.value };
    };
    for (const sampling of [{ temperature: 0 }, { temperature: 0.9, seed: 5 }]) {
      const batched = await run(sampling);
      const stepwise = await run({ ...sampling, onPromptStep: () => {} }); // observed: token by token
      assert.ok(batched.result.promptTokens > 64, `prompt of ${batched.result.promptTokens} tokens`);
      assert.equal(batched.result.promptTokens, stepwise.result.promptTokens);
      assert.deepEqual(batched.ids, stepwise.ids);
      // the prompt cost one step call (its last token) instead of one per token
      assert.equal(stepwise.steps - batched.steps, batched.result.promptTokens - 1);
      assert.ok(batched.result.promptMs >= 0 && stepwise.result.promptMs >= 0);
    }
    // abort between prefill passes: AbortError, and the model still generates the same
    const base = await heapUsed();
    const ac = new AbortController();
    setImmediate(() => ac.abort()); // fires at the yield after the first pass
    await assert.rejects((async () => {
      for await (const t of model.generate(prompt, { temperature: 0, maxTokens: 16, signal: ac.signal })) void t;
    })(), (e) => e.name === 'AbortError' && e.code === 'ABORTED');
    assert.equal(await heapUsed(), base);
    assert.deepEqual((await run({ temperature: 0 })).ids, (await run({ temperature: 0, onPromptStep: () => {} })).ids);
    // under a budget below 1 the prompt is batched too (the gates decide per
    // token inside each batch): one step call for its last token again
    model.budget = 0.6;
    const gated = await run({ temperature: 0 });
    assert.equal(gated.steps, gated.ids.length);
  } finally {
    model.dispose();
  }
});
