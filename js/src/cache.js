// The browser model cache: loadModel(url, { cache }) keeps a completed
// download of a model URL in the Cache API, so the next page load reads it
// from disk instead of the network.
//
// Trust rules (a cached model is only as good as the bytes it holds):
//   - a download is stored only after it completed: every byte read, the
//     count equal to Content-Length when the server sent one, the sha256
//     equal to the caller's when given, and the C loader accepted the whole
//     file as a model. An aborted or interrupted download (or one the loader
//     refuses) is never stored.
//   - a cached copy is used only if its size equals the size recorded when
//     it was stored, and its sha256 equals the caller's when given; else it
//     is deleted and the model is downloaded again.
// Bytes of a download are kept in memory (copies of the chunks) until the
// load completes, then stored as one Blob: the model's size again in JS
// memory for the duration of the load.
//
// Environments without the Cache API (Node, an insecure http: page) refuse
// the cache option with INVALID_ARGUMENT: there is nowhere to keep the copy,
// and silently downloading every time is what the option promises not to do.

import { DozeError, abortError } from './errors.js';
import { openSource } from './sources.js';
import { invalid } from './options.js';

/** The Cache API storage that holds the models (one entry per model URL). */
export const CACHE_NAME = 'doze-lm-models';
const H_BYTES = 'x-doze-bytes';
const H_SHA = 'x-doze-sha256';
const H_STORED = 'x-doze-stored-at';

/** The `cache` option: true / false, or { sha256: 64 hex digits }. -> false | { sha256? } */
export function cacheOption(v, where) {
  if (v === false) return false;
  let want;
  if (v === true) want = {};
  else if (v != null && typeof v === 'object' && !Array.isArray(v)) {
    for (const k of Object.keys(v)) {
      if (k !== 'sha256') throw invalid(`${where}: unknown option '${k}' (known: sha256)`);
    }
    if (v.sha256 !== undefined && (typeof v.sha256 !== 'string' || !/^[0-9a-fA-F]{64}$/.test(v.sha256))) {
      throw invalid(`${where}.sha256 must be 64 hex digits (the SHA-256 of the model file), got ${JSON.stringify(v.sha256)}`);
    }
    want = v.sha256 === undefined ? {} : { sha256: v.sha256.toLowerCase() };
  } else {
    throw invalid(`${where} must be true, false or { sha256: '<64 hex digits>' }`);
  }
  storage(where); // no Cache API: refused before anything is loaded
  return want;
}

function storage(what) {
  const c = globalThis.caches;
  if (!c || typeof c.open !== 'function') {
    throw invalid(`${what} needs the browser Cache API (a page or worker served over https or from localhost); `
      + 'this environment has none (Node has none: load from a file path instead)');
  }
  return c;
}

/** The cache key of a model source: its absolute http(s) URL. */
function keyOf(source, what) {
  let url;
  try {
    if (source instanceof URL) url = new URL(source.href);
    else if (typeof source === 'string') url = new URL(source, globalThis.location ? globalThis.location.href : undefined);
  } catch {
    url = null;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw invalid(`${what} works with http(s) URLs only (bytes, Blobs and streams have no URL to keep them under)`);
  }
  url.hash = '';
  return url.href;
}

async function sha256Hex(bytes) {
  const d = new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', bytes));
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * The cached copy of `key` if it passes the checks (a ByteSource over it),
 * else null (and a copy that failed them is deleted).
 */
async function cachedCopy(cache, key, want, signal) {
  const res = await cache.match(key);
  if (!res) return null;
  const size = Number(res.headers.get(H_BYTES));
  let ok = Number.isSafeInteger(size) && size > 0;
  let src = null;
  if (ok && want.sha256) {
    const buf = new Uint8Array(await res.arrayBuffer());
    ok = buf.byteLength === size && (await sha256Hex(buf)) === want.sha256;
    if (ok) src = await openSource(buf);
  } else if (ok) {
    // a Blob is disk-backed: its size is known without reading it
    const blob = await res.blob();
    ok = blob.size === size;
    if (ok) src = await openSource(blob, { signal });
  }
  if (!ok) {
    await cache.delete(key).catch(() => {});
    return null;
  }
  return src;
}

/**
 * A ByteSource for loadModel with the cache option: the cached copy when it
 * passes the checks, else the network, teeing the chunks into memory.
 * `src.fromCache` says which; after the loader accepted the model,
 * `await src.commit()` stores a download (and returns { stored, error? }).
 */
export async function openCachedSource(source, want, { signal, totalBytes } = {}) {
  const caches = storage('loadModel: cache');
  const key = keyOf(source, 'loadModel: cache');
  const cache = await caches.open(CACHE_NAME);
  if (signal && signal.aborted) throw abortError('loading the model', signal);
  const hit = await cachedCopy(cache, key, want, signal);
  if (hit) {
    hit.fromCache = true;
    hit.commit = async () => ({ stored: false });
    return hit;
  }
  const net = await openSource(key, { signal, totalBytes });
  const chunks = [];
  let count = 0;
  let ended = false;
  return {
    total: net.total,
    inMemory: net.inMemory,
    fromCache: false,
    async next() {
      const c = await net.next();
      if (c === null) {
        ended = true;
        return null;
      }
      chunks.push(c.slice()); // a copy: the source reuses its buffer
      count += c.byteLength;
      return c;
    },
    close: () => net.close(),
    async commit() {
      if (!ended || (net.total > 0 && count !== net.total)) {
        return { stored: false, error: `the download ended at ${count} of ${net.total} bytes` };
      }
      const blob = new Blob(chunks);
      chunks.length = 0;
      const headers = { 'content-type': 'application/octet-stream', [H_BYTES]: String(count), [H_STORED]: new Date().toISOString() };
      if (want.sha256) {
        const got = await sha256Hex(await blob.arrayBuffer());
        if (got !== want.sha256) {
          throw new DozeError('IO', `loadModel: the SHA-256 of ${key} is ${got}, not the expected ${want.sha256} (not cached)`);
        }
        headers[H_SHA] = got;
      }
      try {
        await cache.put(key, new Response(blob, { headers }));
        return { stored: true };
      } catch (e) {
        // e.g. over the storage quota: the model itself loaded fine
        return { stored: false, error: `storing the model in the cache failed: ${e && e.message ? e.message : e}` };
      }
    },
  };
}

/** The models in the cache: [{ url, bytes, sha256 (when checked at store time, else null), storedAt }]. */
export async function listCachedModels() {
  const cache = await storage('listCachedModels').open(CACHE_NAME);
  const out = [];
  for (const req of await cache.keys()) {
    const res = await cache.match(req);
    if (!res) continue;
    out.push({
      url: req.url,
      bytes: Number(res.headers.get(H_BYTES)) || 0,
      sha256: res.headers.get(H_SHA) || null,
      storedAt: res.headers.get(H_STORED) || null,
    });
  }
  return out;
}

/** Deletes the cached copy of a model URL; true if there was one. */
export async function deleteCachedModel(url) {
  if (!(typeof url === 'string' || url instanceof URL)) throw invalid('deleteCachedModel: url must be a string or a URL');
  const c = storage('deleteCachedModel');
  const key = keyOf(url, 'deleteCachedModel');
  const cache = await c.open(CACHE_NAME);
  return cache.delete(key);
}
