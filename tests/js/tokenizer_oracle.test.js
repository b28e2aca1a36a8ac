// Doze's tokenizers (through the wasm build's vocabulary-only API) against
// llama.cpp itself (node-llama-cpp, CPU build, vocabulary-only loads): on
// generated hard strings (mixed scripts, CJK, emoji, combining marks, runs
// of digits, runs of spaces/tabs/newlines, code, contractions, text that
// looks like special tokens) every vocabulary in ../shared/models/vocab and
// ../shared/models/ggml-vocab-llama-spm.gguf must give llama.cpp's ids, with
// and without parsing special tokens, and the same end-of-generation tokens.
// Three more vocabularies are written here to exercise the pre-tokenizers
// ../shared has no file for: falcon's tokens and merges with
// tokenizer.ggml.pre = llama-bpe, deepseek-llm's with qwen2, starcoder's with
// smollm.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { instantiateDoze } from '../../js/src/wasm.js';
import { scratch, shared } from './helpers.js';

const vocabDir = join(shared, 'models', 'vocab');
const skip = existsSync(vocabDir) ? false : `vocabularies not found at ${vocabDir}`;
// strings per vocabulary (bounded so that the test stays well under a minute)
const N_STRINGS = Number(process.env.DOZE_TOKENIZER_STRINGS || 1500);

// ---- hard strings ----------------------------------------------------------------

function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PIECES = [
  // words, contractions (every case llama.cpp's regexes distinguish)
  'Hello', 'world', 'the', 'The', 'THE', "don't", "I'll", "we're", "WE'RE", "they've", "it's",
  "'s", "'S", "'ll", "'LL", "'d", "'M", 'O\'Neil', "it’s", 'Günther', 'naïve', 'café', 'Æsir',
  // digits
  '1', '12', '123', '1234', '12345', '1234567', '3.14159', '1,000,000', '007', '2024-06-01',
  '٣٤٥', '①②', '½', '²³', 'Ⅻ',
  // white space runs
  ' ', '  ', '   ', '    ', '\t', '\t\t', '\n', '\n\n', '\n\n\n', '\r\n', ' \n', '\n ', ' \t \n',
  '   \n   ', '\u00a0', '\u2003', '\u3000', '\u200b', '\u0085', '\u2028', '\f', '\v',
  // scripts
  '中文字符', '日本語のテキスト', 'カタカナ', '한국어 문장', 'Привет мир', 'Ελληνικά', 'العربية',
  'עברית', 'हिन्दी', 'नमस्ते', 'ภาษาไทย', 'ก่อน', 'Tiếng Việt', 'ქართული', 'Ꭰ', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢',
  // combining marks and composed forms
  'e\u0301', 'a\u0308\u0304', 'n\u0303', '\u0301', 'Z\u0351\u036b\u0343',
  // emoji
  '😀', '👨‍👩‍👧', '🇫🇷', '❤️', '👍🏽', '🦙', '✨',
  // punctuation and symbols
  '...', '!?', '—', '–', '«»', '¿¡', '“quoted”', '‘single’', '€', '$', '%', '&&', '||', '->',
  '=>', '::', '#', '@', '~', '^', '`', '|', '\\', '/', '()', '[]', '{}', '<>', '、', '。',
  '！', '（）', '・',
  // code
  'def f(x):\n    return x**2\n', 'if (a && b) { c++; }', '<div class="x">', '#include <stdio.h>',
  'for i in range(10):', '\tint main(void) {\n\t\treturn 0;\n\t}', 'x = [1, 2, 3]',
  'SELECT * FROM t;', '// comment', '/* block */', 'snake_case_name', 'camelCaseName',
  // text that looks like special tokens
  '<|endoftext|>', '<s>', '</s>', '<unk>', '<|im_start|>', '<|im_end|>', '<fim_prefix>',
  '>>TITLE<<', '<|eot_id|>',
];

function hardString(r) {
  const n = 1 + Math.floor(r() * 10);
  let s = '';
  for (let i = 0; i < n; i++) {
    s += PIECES[Math.floor(r() * PIECES.length)];
    const x = r();
    if (x < 0.35) s += ' ';
    else if (x < 0.4) s += '\n';
  }
  return s;
}

// ---- synthetic vocabularies: an existing GGUF with another pre-tokenizer --------

function withPre(bytes, pre) {
  // GGUF v3, no tensors: rewrite the tokenizer.ggml.pre string in place
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const key = Buffer.from('tokenizer.ggml.pre');
  const at = Buffer.from(bytes).indexOf(key);
  assert.ok(at > 8, 'tokenizer.ggml.pre present');
  const valueAt = at + key.length + 4; // after the key and its type (string = 8)
  assert.equal(dv.getUint32(at + key.length, true), 8);
  const oldLen = Number(dv.getBigUint64(valueAt, true));
  const val = Buffer.from(pre);
  const head = Buffer.from(bytes.subarray(0, valueAt));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(val.length));
  const tail = Buffer.from(bytes.subarray(valueAt + 8 + oldLen));
  return Buffer.concat([head, len, val, tail]);
}

// ---- the two tokenizers -----------------------------------------------------------

function dozeVocab(doze, bytes) {
  const x = doze.exports;
  const err = doze.malloc(x.doze_wasm_error_size());
  const out = doze.malloc(4);
  const p = doze.writeBytes(bytes);
  const st = x.doze_vocab_load(p, bytes.length, out, err);
  doze.free(p);
  if (st !== 0) throw new Error(`doze_vocab_load: status ${st}`);
  const v = doze.view.getUint32(out, true);
  const cap = 1 << 16;
  const ids = doze.malloc(4 * cap);
  const nOut = doze.malloc(4);
  return {
    tokenize(text, special) {
      const t = doze.writeString(text);
      const bytesLen = Buffer.byteLength(text);
      const s = x.doze_vocab_tokenize(v, t, bytesLen, special ? 2 : 0, ids, cap, nOut, err);
      doze.free(t);
      if (s !== 0) throw new Error(`doze_vocab_tokenize: ${s}`);
      const n = doze.view.getInt32(nOut, true);
      assert.ok(n <= cap);
      return Array.from(new Int32Array(doze.memory.buffer, ids, n));
    },
    size: () => x.doze_vocab_size(v),
    isEog: (id) => x.doze_vocab_is_eog(v, id) !== 0,
    free() {
      x.doze_vocab_free(v);
      doze.free(ids);
      doze.free(nOut);
      doze.free(out);
      doze.free(err);
    },
  };
}

const escape = (s) => JSON.stringify(s);

test('tokenizers: ids equal llama.cpp on generated hard strings', { skip, timeout: 900_000 }, async (t) => {
  let llama;
  try {
    const { getLlama } = await import('node-llama-cpp');
    llama = await getLlama({ gpu: false, build: 'never', logLevel: 'disabled' });
  } catch (e) {
    t.skip(`node-llama-cpp unavailable: ${e.message}`);
    return;
  }
  const doze = await instantiateDoze();
  const dir = scratch();
  const files = [
    join(shared, 'models', 'ggml-vocab-llama-spm.gguf'),
    ...['deepseek-coder', 'deepseek-llm', 'falcon', 'gpt-neox', 'mpt', 'phi-3', 'refact', 'starcoder'].map(
      (n) => join(vocabDir, `ggml-vocab-${n}.gguf`),
    ),
  ];
  for (const [base, pre] of [
    ['falcon', 'llama-bpe'],
    ['deepseek-llm', 'qwen2'],
    ['starcoder', 'smollm'],
  ]) {
    const out = join(dir, `synthetic-${pre}.gguf`);
    writeFileSync(out, withPre(readFileSync(join(vocabDir, `ggml-vocab-${base}.gguf`)), pre));
    files.push(out);
  }

  const summary = [];
  for (const file of files) {
    const name = file.split('/').pop();
    const bytes = readFileSync(file);
    const dv = dozeVocab(doze, bytes);
    const model = await llama.loadModel({ modelPath: file, vocabOnly: true });
    try {
      const r = rng(0xd0e5 + name.length * 7919);
      let same = 0;
      const bad = [];
      for (let i = 0; i < N_STRINGS; i++) {
        const s = hardString(r);
        const special = i % 4 === 3; // a quarter with control tokens parsed
        const want = Array.from(model.tokenize(s, special));
        const got = dv.tokenize(s, special);
        if (got.length === want.length && got.every((v, k) => v === want[k])) same++;
        else if (bad.length < 5) bad.push(`${escape(s)} special=${special}: doze ${got.join(' ')} llama.cpp ${want.join(' ')}`);
      }
      // end-of-generation tokens
      let eogSame = 0;
      const n = dv.size();
      const eogBad = [];
      for (let id = 0; id < n; id++) {
        const a = dv.isEog(id);
        const b = model.isEogToken(id);
        if (a === b) eogSame++;
        else if (eogBad.length < 5) eogBad.push(`${id} doze ${a} llama.cpp ${b}`);
      }
      summary.push(`${name}: ${same}/${N_STRINGS} strings, EOG ${eogSame}/${n}`);
      assert.equal(same, N_STRINGS, `${name}: ids differ from llama.cpp:\n${bad.join('\n')}`);
      assert.equal(eogSame, n, `${name}: end-of-generation tokens differ:\n${eogBad.join('\n')}`);
    } finally {
      dv.free();
      await model.dispose();
    }
  }
  t.diagnostic(summary.join('; '));
  await llama.dispose();
});
