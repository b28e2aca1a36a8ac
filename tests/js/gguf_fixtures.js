// A GGUF file's layout and a file rebuilt from its parts: the test fixtures
// that edit metadata (chat_fixtures.js, vocab_fixtures.js) read and write
// files through these two.

const SIZES = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

/**
 * The metadata entries (key, type, their bytes), the tensor infos and the
 * data of a GGUF file; `valueAt` is where an entry's value starts.
 */
export function ggufLayout(bytes) {
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
    const valueAt = o;
    if (key === 'general.alignment') alignment = dv.getUint32(o, true);
    skip(type);
    kvs.push({ key, type, valueAt, bytes: bytes.subarray(start, o) });
  }
  const infoStart = o;
  for (let i = 0; i < nTensors; i++) {
    str();
    const nd = dv.getUint32(o, true);
    o += 4 + 8 * nd + 4 + 8;
  }
  return { kvs, nTensors, infos: bytes.subarray(infoStart, o), data: bytes.subarray(Math.ceil(o / alignment) * alignment), alignment };
}

/** One metadata entry's bytes: key, GGUF type, the value's bytes. */
export function ggufEntry(key, type, payload) {
  const k = new TextEncoder().encode(key);
  const kv = new Uint8Array(8 + k.length + 4 + payload.length);
  const kdv = new DataView(kv.buffer);
  kdv.setBigUint64(0, BigInt(k.length), true);
  kv.set(k, 8);
  kdv.setUint32(8 + k.length, type, true);
  kv.set(payload, 12 + k.length);
  return kv;
}

/**
 * A GGUF file of `file`'s header, tensors and data (layout `l`) with the
 * metadata entries `entries` (byte arrays), the data re-aligned (tensor
 * offsets are data-relative: they stay).
 */
export function ggufRebuild(file, l, entries) {
  const head = new Uint8Array(24);
  head.set(file.subarray(0, 8)); // magic, version
  const hdv = new DataView(head.buffer);
  hdv.setBigUint64(8, BigInt(l.nTensors), true);
  hdv.setBigUint64(16, BigInt(entries.length), true);
  const metaLen = 24 + entries.reduce((s, e) => s + e.length, 0) + l.infos.length;
  const dataStart = Math.ceil(metaLen / l.alignment) * l.alignment;
  const out = new Uint8Array(dataStart + l.data.length);
  let o = 0;
  for (const part of [head, ...entries, l.infos]) {
    out.set(part, o);
    o += part.length;
  }
  out.set(l.data, dataStart);
  return out;
}
