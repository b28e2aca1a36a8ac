// Fixtures of the chat tests: a GGUF file given one more string key (e.g. a
// model given a tokenizer.chat_template).

/** The GGUF file with one more string key (the data section re-aligned). */
export function withStringKey(bytes, key, value) {
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
    if (k === key) throw new Error(`the file has ${key} already`);
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
  const enc = new TextEncoder();
  const k = enc.encode(key);
  const v = enc.encode(value);
  const kv = new Uint8Array(8 + k.length + 4 + 8 + v.length);
  const kdv = new DataView(kv.buffer);
  kdv.setBigUint64(0, BigInt(k.length), true);
  kv.set(k, 8);
  kdv.setUint32(8 + k.length, 8, true);
  kdv.setBigUint64(12 + k.length, BigInt(v.length), true);
  kv.set(v, 20 + k.length);
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
