// Fixtures of the chat tests: a GGUF file given one more string or bool key
// (e.g. a model given a tokenizer.chat_template), or a uint32 key changed.

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
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dec = new TextDecoder();
  let o = 24;
  let alignment = 32;
  const str = () => {
    const n = Number(dv.getBigUint64(o, true));
    const s = dec.decode(bytes.subarray(o + 8, o + 8 + n));
    o += 8 + n;
    return s;
  };
  const SIZES = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
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
  for (let i = 0; i < nKv; i++) {
    const k = str();
    const type = dv.getUint32(o, true);
    o += 4;
    if (k === key) {
      const e = new Error(`the file has ${key} already`);
      if (type === 7) e.at = o; // a bool's value byte, for withBoolKey
      throw e;
    }
    if (k === 'general.alignment') alignment = dv.getUint32(o, true);
    skip(type);
  }
  const kvEnd = o;
  for (let i = 0; i < nTensors; i++) {
    str();
    const nd = dv.getUint32(o, true);
    o += 4 + 8 * nd + 4 + 8;
  }
  const infoEnd = o;
  const dataStart = Math.ceil(infoEnd / alignment) * alignment;
  const k = new TextEncoder().encode(key);
  const kv = new Uint8Array(8 + k.length + 4 + payload.length);
  const kdv = new DataView(kv.buffer);
  kdv.setBigUint64(0, BigInt(k.length), true);
  kv.set(k, 8);
  kdv.setUint32(8 + k.length, type, true);
  kv.set(payload, 12 + k.length);
  const headLen = infoEnd + kv.length;
  const newDataStart = Math.ceil(headLen / alignment) * alignment;
  const out = new Uint8Array(newDataStart + (bytes.length - dataStart));
  out.set(bytes.subarray(0, kvEnd), 0);
  out.set(kv, kvEnd);
  out.set(bytes.subarray(kvEnd, infoEnd), kvEnd + kv.length);
  new DataView(out.buffer).setBigUint64(16, BigInt(nKv + 1), true);
  out.set(bytes.subarray(dataStart), newDataStart);
  return out;
}

/** A ChatML template (the default model has none): the tests add it to a file or pass it as `template`. */
export const CHATML = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
