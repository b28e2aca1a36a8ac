// Fixtures of the streamed-text tests: a seeded `doze init` model given a
// real vocabulary (the tokenizer.* keys of a vocabulary-only GGUF from
// ../shared/models), so that generation samples real pieces: SentencePiece
// byte tokens (<0xE2>), byte-level BPE fragments of UTF-8 characters.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { ggufLayout, ggufRebuild } from './gguf_fixtures.js';
import { run, scratch } from './helpers.js';

/** The model file with its tokenizer.* metadata replaced by the vocabulary file's. */
export function withVocabulary(modelBytes, vocabBytes) {
  const m = ggufLayout(modelBytes);
  const v = ggufLayout(vocabBytes);
  const kvs = [...m.kvs.filter((k) => !k.key.startsWith('tokenizer.')), ...v.kvs.filter((k) => k.key.startsWith('tokenizer.'))];
  return ggufRebuild(modelBytes, m, kvs.map((k) => k.bytes));
}

/** Token count of a vocabulary-only GGUF (its tokenizer.ggml.tokens array). */
export function vocabularySize(vocabBytes) {
  const dv = new DataView(vocabBytes.buffer, vocabBytes.byteOffset, vocabBytes.byteLength);
  const kv = ggufLayout(vocabBytes).kvs.find((k) => k.key === 'tokenizer.ggml.tokens');
  const at = kv.bytes.byteOffset - vocabBytes.byteOffset + 8 + 'tokenizer.ggml.tokens'.length + 4 + 4;
  return Number(dv.getBigUint64(at, true));
}

/** A small seeded model (soft next-token distributions) speaking the vocabulary at `vocabPath`: GGUF bytes. */
export function modelWithVocabulary(vocabPath, dir = scratch()) {
  const vocab = readFileSync(vocabPath);
  const out = join(dir, 'init.gguf');
  const r = run('native', ['init', '--dim', '64', '--hidden', '128', '--layers', '2', '--heads', '4',
    '--vocab', String(vocabularySize(vocab)), '--ctx', '512', '--seed', '11', '--embd-scale', '0.05', '-o', out]);
  if (r.status !== 0) throw new Error(`doze init failed: ${r.stderr}`);
  return withVocabulary(readFileSync(out), vocab);
}
