// Fixtures of the chat tests: a GGUF file given one more string or bool key
// (e.g. a model given a tokenizer.chat_template), or a uint32 key changed.
import { ggufEntry, ggufLayout, ggufRebuild } from './gguf_fixtures.js';

/** The GGUF file with one more string key (the data section re-aligned). */
export function withStringKey(bytes, key, value) {
  const v = new TextEncoder().encode(value);
  const payload = new Uint8Array(8 + v.length);
  new DataView(payload.buffer).setBigUint64(0, BigInt(v.length), true);
  payload.set(v, 8);
  return withKey(bytes, key, 8, payload);
}

/** The GGUF file with the uint32 value of `key` replaced (in place: same size). */
export function withUint32(bytes, key, value) {
  const out = new Uint8Array(bytes);
  const k = new TextEncoder().encode(key);
  for (let o = 24; o + 8 + k.length + 8 <= out.length; o++) {
    if (out[o + 8] !== k[0]) continue;
    const dv = new DataView(out.buffer, o);
    if (Number(dv.getBigUint64(0, true)) !== k.length) continue;
    if (!k.every((c, i) => out[o + 8 + i] === c)) continue;
    if (dv.getUint32(8 + k.length, true) !== 4) throw new Error(`${key} is not a uint32`);
    dv.setUint32(12 + k.length, value, true);
    return out;
  }
  throw new Error(`no key ${key}`);
}

/** The GGUF file with a bool key set (its value changed where the file has it, else added). */
export function withBoolKey(bytes, key, value) {
  try {
    return withKey(bytes, key, 7, Uint8Array.of(value ? 1 : 0));
  } catch (e) {
    if (!e.at) throw e;
    const out = bytes.slice();
    out[e.at] = value ? 1 : 0;
    return out;
  }
}

/** The GGUF file with one more key of GGUF type `type`, its value's bytes `payload`. */
function withKey(bytes, key, type, payload) {
  const l = ggufLayout(bytes);
  const had = l.kvs.find((k) => k.key === key);
  if (had) {
    const e = new Error(`the file has ${key} already`);
    if (had.type === 7) e.at = had.valueAt; // a bool's value byte, for withBoolKey
    throw e;
  }
  return ggufRebuild(bytes, l, [...l.kvs.map((k) => k.bytes), ggufEntry(key, type, payload)]);
}

/** A ChatML template (the default model has none): the tests add it to a file or pass it as `template`. */
export const CHATML = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
