// One instantiated doze.wasm, shared by the models loaded with the same
// `wasm` option, and the event-loop yield the long-running calls use.

import { instantiateDoze } from './wasm.js';
import { DozeError, toDozeError } from './errors.js';

let channel = null;
const waiting = [];
/** Resolves after pending macrotasks (timers, messages, abort events) ran. */
export function yieldToEventLoop() {
  if (typeof setImmediate === 'function') return new Promise((r) => setImmediate(r));
  if (typeof MessageChannel === 'function') {
    if (!channel) {
      channel = new MessageChannel();
      channel.port1.onmessage = () => waiting.shift()?.();
    }
    return new Promise((r) => {
      waiting.push(r);
      channel.port2.postMessage(0);
    });
  }
  return new Promise((r) => setTimeout(r, 0));
}

export const now = () => performance.now();

/**
 * One instantiated doze.wasm. Models loaded with the same `wasm` option share
 * it (and its memory).
 */
export class Runtime {
  constructor(doze) {
    this.doze = doze;
    this.x = doze.exports;
    this.simd = doze.simd;
    this.err = doze.malloc(this.x.doze_wasm_error_size());
    this.x.doze_wasm_error_clear(this.err);
    this.baseHeap = this.x.doze_wasm_heap_used(); // what the runtime itself holds
  }
  get u8() {
    return new Uint8Array(this.x.memory.buffer);
  }
  /** The DozeError for the status in the shared doze_error. */
  error(context) {
    const code = this.x.doze_wasm_error_code(this.err);
    const name = this.doze.readString(this.x.doze_status_name(code));
    const msg = this.doze.readString(this.x.doze_wasm_error_message(this.err)) || name;
    this.x.doze_wasm_error_clear(this.err);
    return new DozeError(name, context ? `${context}: ${msg}` : msg);
  }
  check(status, context) {
    if (status !== 0) throw this.error(context);
  }
  /** Bytes malloc'd in wasm memory right now. */
  heapUsed() {
    return this.x.doze_wasm_heap_used();
  }
  /** Size of the wasm memory (it grows, never shrinks). */
  memoryBytes() {
    return this.x.memory.buffer.byteLength;
  }
  version() {
    return this.doze.readString(this.x.doze_wasm_version());
  }
}

const runtimes = new Map(); // key -> Promise<Runtime>
const runtimeKey = (simd, wasm, threaded) => `${simd}|${wasm == null ? '' : String(wasm)}|${threaded ? 'mt' : '1'}`;
const moduleRuntimes = new WeakMap(); // WebAssembly.Module -> Promise<Runtime>

/**
 * The runtime for a `wasm` option (default: dist/doze.wasm next to this
 * package, or doze-relaxed.wasm by `simd`; when `threaded`, dist/doze-mt.wasm
 * or doze-mt-relaxed.wasm), instantiated once and shared.
 */
export function getRuntime({ wasm, simd = 'auto', threaded = false } = {}) {
  threaded = threaded && wasm == null; // a given module is used as it is
  const make = async () => {
    try {
      return new Runtime(await instantiateDoze({ wasm, simd, threaded }));
    } catch (e) {
      throw toDozeError(e, 'NO_WASM_FILE');
    }
  };
  let p;
  if (wasm instanceof WebAssembly.Module) {
    p = moduleRuntimes.get(wasm);
    if (!p) moduleRuntimes.set(wasm, (p = make()));
  } else if (wasm == null || typeof wasm === 'string' || wasm instanceof URL) {
    const key = runtimeKey(simd, wasm, threaded);
    p = runtimes.get(key);
    if (!p) runtimes.set(key, (p = make()));
  } else {
    p = make(); // bytes: a fresh instance each time
  }
  p.catch(() => {
    // do not cache failures
    if (wasm instanceof WebAssembly.Module) moduleRuntimes.delete(wasm);
    else if (wasm == null || typeof wasm === 'string' || wasm instanceof URL) runtimes.delete(runtimeKey(simd, wasm, threaded));
  });
  return p;
}

/** Bytes malloc'd inside a runtime's wasm memory (for leak checks). */
export async function heapUsed(options) {
  if (options && options.wasm != null) return (await getRuntime(options)).heapUsed();
  // the default runtimes: doze.wasm (or doze-relaxed.wasm), plus the
  // threaded ones once a threaded model made them
  let n = (await getRuntime(options)).heapUsed();
  for (const [key, mt] of runtimes)
    // (their own fixed allocations excluded, so a baseline taken before they existed holds)
    if (key.endsWith('|mt')) n += await mt.then((r) => r.heapUsed() - r.baseHeap, () => 0);
  return n;
}
