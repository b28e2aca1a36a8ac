// Streamed text and detokenizing as a web page sees them: the chunks of
// generate() concatenate to detokenize() of all ids (characters split over
// byte tokens come out whole), text held back for a possible stop string is
// not lost when a stop id or EOS ends the generation, and detokenize()
// gives back what tokenize() was given, for SentencePiece with or without
// BOS, as llama.cpp's detokenize does, and a leading U+FEFF too.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { loadModel } from '../../js/src/index.js';
import { root, shared } from './helpers.js';
import { modelWithVocabulary } from './vocab_fixtures.js';

const spmVocab = join(shared, 'models', 'ggml-vocab-llama-spm.gguf');
const bpeVocab = join(shared, 'models', 'vocab', 'ggml-vocab-deepseek-llm.gguf');
const vocabSkip = existsSync(spmVocab) && existsSync(bpeVocab) ? false : `vocabularies not found under ${shared}`;
const storiesPath = join(root, 'models', 'doze-stories.gguf');
const PROMPT = 'Once upon a time';

/** Every item of a generation and its result. */
async function drain(gen) {
  const items = [];
  for (;;) {
    const r = await gen.next();
    if (r.done) return { items, result: r.value };
    items.push(r.value);
  }
}

test('a stop id after text held back for a stop string: the held text comes out, once', async () => {
  const m = await loadModel(readFileSync(storiesPath));
  try {
    const base = { temperature: 0, maxTokens: 40 };
    const { items } = await drain(m.generate(PROMPT, base));
    const ids = items.map((t) => t.id);
    const texts = items.map((t) => t.text);
    // a token k (its first occurrence) after text whose last character
    // starts the stop string: that character is held back when token k-1
    // comes, then token k (a stop id) ends the generation
    let k = -1;
    for (let i = 2; i < ids.length && k < 0; i++) {
      if (ids.indexOf(ids[i]) === i && /\S$/.test(texts.slice(0, i).join(''))) k = i;
    }
    assert.ok(k > 0, `no usable stop id in ${JSON.stringify(texts.join(''))}`);
    const before = texts.slice(0, k).join('');
    const held = before.at(-1);
    const stopString = `${held}\u0001never`; // starts like the text's end, never completed
    const run = await drain(m.generate(PROMPT, { ...base, stop: [stopString, ids[k]] }));
    assert.equal(run.result.reason, 'stop');
    assert.equal(run.items.map((t) => t.text).join(''), before, 'the streamed text');
    assert.equal(run.result.text, before, 'the result text');
    // without the stop string: the same text
    const plain = await drain(m.generate(PROMPT, { ...base, stop: [ids[k]] }));
    assert.equal(plain.result.text, before);
    // speculative decoding ends the same way
    const spec = await drain(m.generate(PROMPT, { ...base, stop: [stopString, ids[k]], speculative: true }));
    assert.equal(spec.result.reason, 'stop');
    assert.equal(spec.items.map((t) => t.text).join(''), before, 'the streamed text (speculative)');
    assert.equal(spec.result.text, before);
  } finally {
    m.dispose();
  }
});

test('a leading U+FEFF is text: detokenize and tokenText keep it', async () => {
  // TextDecoder's default eats a BOM at the start of what it decodes
  const m = await loadModel(readFileSync(storiesPath));
  try {
    for (const text of ['\uFEFFHello', '\uFEFF', 'a\uFEFFb']) {
      for (const bos of [true, false]) assert.equal(m.detokenize(m.tokenize(text, { bos })), text, JSON.stringify(text));
    }
  } finally {
    m.dispose();
  }
  if (vocabSkip) return;
  const v = await loadModel(modelWithVocabulary(spmVocab));
  try {
    const ids = Array.from(v.tokenize('\uFEFFx', { bos: false }));
    const bom = ids.find((id) => v.tokenText(id)?.includes('\uFEFF'));
    assert.ok(bom !== undefined, `no token reads as U+FEFF in ${ids.map((id) => JSON.stringify(v.tokenText(id))).join(' ')}`);
    assert.equal(v.tokenText(bom), '\uFEFF');
    assert.equal(v.detokenize(ids), '\uFEFFx');
  } finally {
    v.dispose();
  }
});

test('streamed chunks concatenate to detokenize() of the ids, on real vocabularies', { skip: vocabSkip, timeout: 300_000 }, async () => {
  for (const vocab of [spmVocab, bpeVocab]) {
    const m = await loadModel(modelWithVocabulary(vocab));
    try {
      const prompt = 'Hello 日本';
      const promptIds = Array.from(m.tokenize(prompt));
      const head = m.detokenize(promptIds);
      let bytePieces = 0;
      for (let seed = 1; seed <= 4; seed++) {
        // seeded sampling from a soft random model: every kind of piece,
        // byte tokens (parts of characters) among them
        const { items, result } = await drain(m.generate(prompt, { temperature: 1, seed, maxTokens: 120 }));
        const ids = items.filter((t) => t.id >= 0).map((t) => t.id);
        const text = items.map((t) => t.text).join('');
        const whole = m.detokenize([...promptIds, ...ids]);
        assert.ok(whole.startsWith(head));
        assert.equal(text, whole.slice(head.length), `${vocab} seed ${seed}`);
        assert.equal(result.text, text);
        for (const t of items) assert.ok(!/[\ud800-\udbff]$/.test(t.text), 'no chunk ends inside a surrogate pair');
        bytePieces += ids.filter((id) => /^<0x[0-9A-F]{2}>$/.test(m.tokenText(id) ?? '')).length;
      }
      if (vocab === spmVocab) assert.ok(bytePieces > 0, 'the runs sampled byte tokens');
    } finally {
      m.dispose();
    }
  }
});

test('detokenize(tokenize(text)) is the text, with or without BOS (SentencePiece dummy space)', { skip: vocabSkip }, async () => {
  const m = await loadModel(modelWithVocabulary(spmVocab));
  try {
    const texts = ['Hello world', ' Hello', '  two spaces', '\nnewline first', '日本語のテキスト 😀 done',
      'Привет, мир!', 'tab\there\r\n', 'a\u0000b', readFileSync(join(shared, 'text', 'tinystories-dev.txt'), 'utf8').slice(0, 2000)];
    for (const text of texts) {
      for (const bos of [true, false]) {
        const ids = m.tokenize(text, { bos });
        assert.equal(m.detokenize(ids), text, `${JSON.stringify(text.slice(0, 30))} bos ${bos}`);
      }
    }
    // what follows another token keeps its space: a continuation decoded
    // after its context, as generate() streams it
    const ids = Array.from(m.tokenize('Hello world', { bos: false }));
    assert.equal(m.detokenize(ids.slice(1)), 'world', 'a text that starts with the piece');
    // <unk> is not text (llama.cpp prints nothing for it)
    assert.equal(m.detokenize([0]), '');
  } finally {
    m.dispose();
  }
});

test('detokenize() equals llama.cpp on real text where llama.cpp keeps the spaces as they are', { skip: vocabSkip, timeout: 300_000 }, async (t) => {
  let llama;
  try {
    const { getLlama } = await import('node-llama-cpp');
    llama = await getLlama({ gpu: false, build: 'never', logLevel: 'disabled' });
  } catch (e) {
    t.skip(`node-llama-cpp unavailable: ${e.message}`);
    return;
  }
  // llama.cpp's detokenize also "cleans up" spaces before punctuation for
  // some byte-level vocabularies (falcon, gpt-neox, mpt, refact, starcoder:
  // " ." -> "."), which loses text; Doze keeps the text. Compared here: the
  // vocabularies where llama.cpp does not.
  const inputs = readFileSync(`${spmVocab}.inp`, 'utf8').split('\n__ggml_vocab_test__\n')
    .concat([readFileSync(join(shared, 'text', 'tinystories-dev.txt'), 'utf8').slice(0, 3000),
      '日本語のテキストです。中文字符。한국어 문장 😀👨‍👩‍👧', 'x\r\ny\u0000z']);
  for (const file of [spmVocab, join(shared, 'models', 'vocab', 'ggml-vocab-phi-3.gguf'), bpeVocab,
    join(shared, 'models', 'vocab', 'ggml-vocab-deepseek-coder.gguf')]) {
    const m = await loadModel(modelWithVocabulary(file));
    const ref = await llama.loadModel({ modelPath: file, vocabOnly: true });
    try {
      for (const text of inputs) {
        const ids = Array.from(m.tokenize(text, { bos: false }));
        assert.equal(m.detokenize(ids), ref.detokenize(ids, false), `${file}: ${JSON.stringify(text.slice(0, 30))}`);
      }
    } finally {
      m.dispose();
      await ref.dispose();
    }
  }
  await llama.dispose();
});
