// Model sources -> a stream of byte chunks, never the whole file at once
// (except where the caller already holds it: ArrayBuffer / Uint8Array).

import { DozeError, abortError } from './errors.js';
import { nodeModule } from './node.js';

export const isNode =
  typeof process !== 'undefined' && process.versions != null && process.versions.node != null;

const FILE_CHUNK = 1 << 20; // Node file reads
const MEMORY_CHUNK = 1 << 22; // slices of an in-memory buffer
const STREAM_CHUNK = 1 << 18; // BYOB reads from byte streams

/**
 * @typedef {object} ByteSource
 * @property {number} total       bytes expected (0: unknown)
 * @property {boolean} inMemory   true when the chunks come without I/O waits
 * @property {() => Promise<Uint8Array|null>} next  the next chunk, null at the end
 * @property {() => Promise<void>} close            stop early (abort, error)
 */

function looksLikeUrl(s) {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(s) || /^(data|blob):/i.test(s);
}

function memorySource(u8) {
  let off = 0;
  return {
    total: u8.byteLength,
    inMemory: true,
    async next() {
      if (off >= u8.byteLength) return null;
      const part = u8.subarray(off, Math.min(u8.byteLength, off + MEMORY_CHUNK));
      off += part.byteLength;
      return part;
    },
    async close() {},
  };
}

/** A chunk of a stream or an iterable as bytes; INVALID_ARGUMENT when it is not bytes. */
function chunkBytes(value, what) {
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new DozeError('INVALID_ARGUMENT', `${what} gave ${value === null ? 'null' : `a ${typeof value}`}, not bytes`);
}

function readerSource(stream, total, signal) {
  // Byte streams (fetch bodies, Blob.stream(), type: 'bytes') are read into
  // one reused buffer (a BYOB reader): no garbage chunk per read, so memory
  // stays bounded however large the model; other streams read as they come.
  let reader;
  let byob = null;
  try {
    reader = stream.getReader({ mode: 'byob' });
    byob = new ArrayBuffer(STREAM_CHUNK);
  } catch {
    reader = stream.getReader();
  }
  // A byte stream's source may close() without respond(0) to a pending BYOB
  // read (which then never settles): reader.closed tells us it ended.
  const ENDED = { done: true, value: undefined };
  const ended = byob ? reader.closed.then(() => ENDED) : null;
  if (ended) ended.catch(() => {});
  let closed = false;
  // A pending read on a stalled stream must end when the load is aborted.
  const onAbort = () => {
    if (!closed) reader.cancel(signal.reason).catch(() => {});
  };
  if (signal) signal.addEventListener('abort', onAbort, { once: true });
  return {
    total,
    inMemory: false,
    async next() {
      if (byob) {
        for (;;) {
          const read = reader.read(new Uint8Array(byob, 0, byob.byteLength));
          let r = await Promise.race([read, ended]);
          // closed may settle before the last read's answer (a stream made
          // from bytes in memory closes at once): that answer still counts,
          // and only a read left pending past a macrotask is given up
          if (r === ENDED) r = await Promise.race([read, new Promise((res) => setTimeout(() => res(ENDED), 0))]);
          const { done, value } = r;
          if (value) byob = value.buffer; // the buffer comes back (transferred)
          if (done) return null;
          if (value.byteLength) return value; // consumed before the next read
        }
      }
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return null;
        if (value == null) continue;
        const u8 = chunkBytes(value, 'the model stream');
        if (u8.byteLength) return u8;
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      if (signal) signal.removeEventListener('abort', onAbort);
      try {
        await reader.cancel();
      } catch {
        /* already errored or closed */
      }
      try {
        reader.releaseLock();
      } catch {
        /* fine */
      }
    },
  };
}

function iterableSource(iterable, total, signal) {
  const it = iterable[Symbol.asyncIterator] ? iterable[Symbol.asyncIterator]() : iterable[Symbol.iterator]();
  // A stalled iterator's pending next() never settles by itself: an abort
  // ends the wait (the iterator is then closed by the loader). One abort
  // promise per read, its listener removed after: a race against a promise
  // that never settles would keep every chunk it was raced with alive.
  const nextOrAbort = () => {
    if (!signal) return it.next();
    if (signal.aborted) return Promise.reject(abortError('loading the model', signal));
    let onAbort;
    const aborted = new Promise((_, reject) => {
      onAbort = () => reject(abortError('loading the model', signal));
      signal.addEventListener('abort', onAbort, { once: true });
    });
    return Promise.race([it.next(), aborted]).finally(() => signal.removeEventListener('abort', onAbort));
  };
  return {
    total,
    inMemory: false,
    async next() {
      for (;;) {
        const { done, value } = await nextOrAbort();
        if (done) return null;
        const u8 = chunkBytes(value, "the model's iterable");
        if (u8.byteLength) return u8;
      }
    },
    async close() {
      if (typeof it.return === 'function') {
        // Not awaited: an async generator stalled inside an await answers
        // return() only once that await settles, which may be never.
        try {
          Promise.resolve(it.return()).catch(() => {});
        } catch {
          /* fine */
        }
      }
    },
  };
}

function contentLength(res) {
  // A compressed body's Content-Length is not the size of what we read.
  const enc = res.headers.get('content-encoding');
  if (enc && enc !== 'identity') return 0;
  const n = Number(res.headers.get('content-length'));
  return Number.isFinite(n) && n > 0 ? n : 0;
}

function responseSource(res, signal, what) {
  if (!res.ok) throw new DozeError('IO', `fetching ${what}: HTTP ${res.status} ${res.statusText}`.trim());
  if (!res.body) {
    // No streaming body (old engines): fall back to one buffer.
    return {
      total: contentLength(res),
      inMemory: false,
      _buf: null,
      async next() {
        if (this._buf === 'done') return null;
        const b = new Uint8Array(await res.arrayBuffer());
        this._buf = 'done';
        return b;
      },
      async close() {},
    };
  }
  return readerSource(res.body, contentLength(res), signal);
}

async function fileSource(path) {
  const fs = await nodeModule('node:fs/promises');
  let fh;
  try {
    fh = await fs.open(path, 'r');
  } catch (e) {
    throw new DozeError('IO', `cannot open ${path}: ${e.message}`, { cause: e });
  }
  const { size } = await fh.stat();
  const buf = new Uint8Array(Math.min(FILE_CHUNK, Math.max(1, size)));
  let pos = 0;
  let closed = false;
  return {
    total: size,
    inMemory: false,
    async next() {
      const { bytesRead } = await fh.read(buf, 0, buf.byteLength, pos);
      if (bytesRead === 0) return null;
      pos += bytesRead;
      return buf.subarray(0, bytesRead); // reused: consumed before the next read
    },
    async close() {
      if (closed) return;
      closed = true;
      await fh.close().catch(() => {});
    },
  };
}

async function urlSource(url, signal) {
  if (url.protocol === 'file:' && isNode) {
    const { fileURLToPath } = await nodeModule('node:url');
    return fileSource(fileURLToPath(url));
  }
  let res;
  try {
    res = await fetch(url, { signal });
  } catch (e) {
    if (signal && signal.aborted) throw abortError('loading the model', signal);
    throw new DozeError('IO', `fetching ${url.href}: ${e.message}`, { cause: e });
  }
  return responseSource(res, signal, url.href);
}

/**
 * Opens any supported model source.
 * @returns {Promise<ByteSource>}
 */
export async function openSource(source, { signal, totalBytes } = {}) {
  const hint = Number(totalBytes) > 0 ? Number(totalBytes) : 0;
  if (source == null) throw new DozeError('INVALID_ARGUMENT', 'loadModel: no source given');
  if (typeof source === 'string') {
    if (looksLikeUrl(source)) return urlSource(new URL(source), signal);
    if (isNode) return fileSource(source);
    const base = globalThis.location ? globalThis.location.href : undefined;
    return urlSource(new URL(source, base), signal);
  }
  if (source instanceof URL) return urlSource(source, signal);
  if (source instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && source instanceof SharedArrayBuffer)) {
    return memorySource(new Uint8Array(source));
  }
  if (ArrayBuffer.isView(source)) {
    return memorySource(new Uint8Array(source.buffer, source.byteOffset, source.byteLength));
  }
  if (typeof Response !== 'undefined' && source instanceof Response) {
    return responseSource(source, signal, source.url || 'the response');
  }
  if (typeof Blob !== 'undefined' && source instanceof Blob) {
    const s = readerSource(source.stream(), source.size, signal);
    return s;
  }
  if (typeof ReadableStream !== 'undefined' && source instanceof ReadableStream) {
    return readerSource(source, hint, signal);
  }
  if (typeof source.getReader === 'function') return readerSource(source, hint, signal);
  if (typeof source[Symbol.asyncIterator] === 'function') return iterableSource(source, hint, signal);
  throw new DozeError(
    'INVALID_ARGUMENT',
    'loadModel: source must be a URL, a file path (Node), an ArrayBuffer or typed array, a Blob, a Response or a ReadableStream',
  );
}
