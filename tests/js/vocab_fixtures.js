// Fixtures of the streamed-text tests: a seeded `doze init` model given a
// real vocabulary (the tokenizer.* keys of a vocabulary-only GGUF from
// ../shared/models), so that generation samples real pieces: SentencePiece
// byte tokens (<0xE2>), byte-level BPE fragments of UTF-8 characters.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { run, scratch } from './helpers.js';

/** Byte ranges of a GGUF file's metadata entries and where its tensor infos and data start. */
function layout(bytes) {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dec = new TextDecoder();
  const SIZES = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  let o = 24;
  let alignment = 32;
  const str = () => {
    const n = Number(dv.getBigUint64(o, true));
    const s = dec.decode(bytes.subarray(o + 8, o + 8 + n));
    o += 8 + n;
    return s;
  };
  const skip = (type) => {
    if (type === 8) str();
    else if (type === 9) {
      const et = dv.getUint32(o, true);
      const n = Number(dv.getBigUint64(o + 4, true));
      o += 12;
      if (SIZES[et]) o += SIZES[et] * n;
      else for (let i = 0; i < n; i++) skip(et);
    } else o += SIZES[type];
  };
  const nTensors = Number(dv.getBigUint64(8, true));
  const nKv = Number(dv.getBigUint64(16, true));
  const kvs = [];
  for (let i = 0; i < nKv; i++) {
    const start = o;
    const key = str();
    const type = dv.getUint32(o, true);
    o += 4;
    if (key === 'general.alignment') alignment = dv.getUint32(o, true);
    skip(type);
    kvs.push({ key, bytes: bytes.subarray(start, o) });
  }
  const infoStart = o;
  for (let i = 0; i < nTensors; i++) {
    str();
    const nd = dv.getUint32(o, true);
    o += 4 + 8 * nd + 4 + 8;
  }
  return { kvs, nTensors, infos: bytes.subarray(infoStart, o), data: bytes.subarray(Math.ceil(o / alignment) * alignment), alignment };
}

/** The model file with its tokenizer.* metadata replaced by the vocabulary file's (tensor offsets are data-relative: they stay). */
export function withVocabulary(modelBytes, vocabBytes) {
  const m = layout(modelBytes);
  const v = layout(vocabBytes);
  const kvs = [...m.kvs.filter((k) => !k.key.startsWith('tokenizer.')), ...v.kvs.filter((k) => k.key.startsWith('tokenizer.'))];
  const head = new Uint8Array(24);
  const hdv = new DataView(head.buffer);
  head.set(modelBytes.subarray(0, 8)); // magic, version
  hdv.setBigUint64(8, BigInt(m.nTensors), true);
  hdv.setBigUint64(16, BigInt(kvs.length), true);
  const metaLen = 24 + kvs.reduce((s, k) => s + k.bytes.length, 0) + m.infos.length;
  const dataStart = Math.ceil(metaLen / m.alignment) * m.alignment;
  const out = new Uint8Array(dataStart + m.data.length);
  let o = 0;
  for (const part of [head, ...kvs.map((k) => k.bytes), m.infos]) {
    out.set(part, o);
    o += part.length;
  }
  out.set(m.data, dataStart);
  return out;
}

/** Token count of a vocabulary-only GGUF (its tokenizer.ggml.tokens array). */
export function vocabularySize(vocabBytes) {
  const dv = new DataView(vocabBytes.buffer, vocabBytes.byteOffset, vocabBytes.byteLength);
  const kv = layout(vocabBytes).kvs.find((k) => k.key === 'tokenizer.ggml.tokens');
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
