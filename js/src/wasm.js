// Loads doze.wasm (a standalone Emscripten module, see wasm/link.cmake) with
// our own glue: no Emscripten JS. Works in Node >= 18 and browsers.
//
// The module imports:
//   env.host_open/host_read/host_write/host_size/host_close/host_remove/host_rename/host_now
//       the CLI's I/O (wasm/io_host.c implements src/cli/io.h with them)
//   env.emscripten_notify_memory_growth
//       called after memory.grow; our views are rebuilt on every use anyway
//   wasi_snapshot_preview1.*
//       whatever libc pulls in (fd_write for printf, proc_exit for exit(), ...)
// Every import is checked up front: an unknown env import is an error at
// load time, an unknown WASI function returns ENOSYS.

import { nodeModule } from './node.js';

const DEFAULT_WASM = new URL('../dist/doze.wasm', import.meta.url);
// The same module with the quantized products on the relaxed-SIMD int8 dot
// (same results, bit for bit: see src/kernels/kernels_relaxed.c).
const RELAXED_WASM = new URL('../dist/doze-relaxed.wasm', import.meta.url);
// The threaded build (shared memory, the thread pool) and its relaxed twin.
const THREADED_WASM = new URL('../dist/doze-mt.wasm', import.meta.url);
const THREADED_RELAXED_WASM = new URL('../dist/doze-mt-relaxed.wasm', import.meta.url);
const ABI_VERSION = 5; // wasm/exports.c DOZE_WASM_ABI_VERSION

const isNode =
  typeof process !== 'undefined' && process.versions != null && process.versions.node != null;

// (func (result v128) i32.const 0 i8x16.splat i8x16.popcnt)
const SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253,
  15, 253, 98, 11,
]);

/** True when this engine supports WebAssembly SIMD128 (doze.wasm needs it). */
export function hasWasmSimd() {
  try {
    return typeof WebAssembly === 'object' && WebAssembly.validate(SIMD_PROBE);
  } catch {
    return false;
  }
}

// (func (param i32 i32 i32) (result i32)
//   (i32x4.extract_lane 0 (i32x4.relaxed_dot_i8x16_i7x16_add_s
//     (i8x16.splat p0) (i8x16.splat p1) (i32x4.splat p2))))  exported as "f"
const RELAXED_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 8, 1, 96, 3, 127, 127, 127, 1, 127, 3, 2, 1, 0, 7, 5, 1, 1, 102, 0, 0,
  10, 22, 1, 20, 0, 32, 0, 253, 15, 32, 1, 253, 15, 32, 2, 253, 17, 253, 147, 2, 253, 27, 0, 11,
]);

let relaxedOk = null;
/**
 * True when this engine has relaxed SIMD and its int8 dot product returns
 * the exact dot for the operands doze-relaxed.wasm passes (second operand in
 * [0, 127]). Not only validation: Node 20's --experimental-wasm-relaxed-simd
 * validates the instruction, but its baseline compiler returns twice the dot
 * on x64, and a module whose results depend on the tier is no use.
 */
export function hasRelaxedSimd() {
  if (relaxedOk !== null) return relaxedOk;
  relaxedOk = false;
  try {
    if (typeof WebAssembly === 'object' && WebAssembly.validate(RELAXED_PROBE)) {
      const f = new WebAssembly.Instance(new WebAssembly.Module(RELAXED_PROBE)).exports.f;
      relaxedOk = f(-3, 5, 7) === -53 && f(-128, 127, 1) === -65023 && f(127, 127, -1) === 64515;
    }
  } catch {
    relaxedOk = false;
  }
  return relaxedOk;
}

/** Thrown (as a value) by the proc_exit shim; callMain turns it into a code. */
export class DozeExit extends Error {
  constructor(code) {
    super(`doze exited with code ${code}`);
    this.name = 'DozeExit';
    this.code = code;
  }
}

// ---- loading ------------------------------------------------------------------

function isUrlLike(s) {
  return /^(file|https?|data|blob):/i.test(s);
}

async function readNodeFile(pathOrUrl) {
  const fs = await nodeModule('node:fs/promises');
  try {
    return await fs.readFile(pathOrUrl);
  } catch (e) {
    if (e && e.code === 'ENOENT') {
      const where = pathOrUrl instanceof URL ? pathOrUrl.pathname : String(pathOrUrl);
      const err = new Error(
        `doze.wasm not found at ${where} (build it with "npm run build:wasm")`,
        { cause: e },
      );
      err.code = 'NO_WASM_FILE';
      throw err;
    }
    throw e;
  }
}

async function compileFromUrl(url) {
  if (isNode && url.protocol === 'file:') {
    return WebAssembly.compile(await readNodeFile(url));
  }
  if (typeof WebAssembly.compileStreaming === 'function') {
    try {
      return await WebAssembly.compileStreaming(fetch(url));
    } catch (e) {
      // Usually a server that does not send application/wasm: fall back.
      if (!(e instanceof TypeError)) throw e;
    }
  }
  const res = await fetch(url);
  if (!res.ok) throw new Error(`fetching ${url}: HTTP ${res.status}`);
  return WebAssembly.compile(await res.arrayBuffer());
}

async function compileWasm(source) {
  if (source == null) return compileFromUrl(DEFAULT_WASM);
  if (source instanceof WebAssembly.Module) return source;
  if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) {
    return WebAssembly.compile(source);
  }
  if (source instanceof URL) return compileFromUrl(source);
  if (typeof source === 'string') {
    if (isUrlLike(source)) return compileFromUrl(new URL(source));
    if (isNode) return WebAssembly.compile(await readNodeFile(source));
    return compileFromUrl(new URL(source, globalThis.location ? globalThis.location.href : undefined));
  }
  throw new TypeError('instantiateDoze: wasm must be a URL, path, ArrayBuffer, typed array or WebAssembly.Module');
}

// Which module to load: a given `wasm` as it is; else the relaxed build
// (doze-relaxed.wasm, threaded: doze-mt-relaxed.wasm) where simd is
// 'relaxed' (an error when the engine lacks it) or 'auto' and the engine has
// it (the strict build when that file cannot be read), else the strict one
// (doze.wasm, threaded: doze-mt.wasm).
async function chooseWasm(wasm, simd, threaded) {
  if (simd !== 'auto' && simd !== 'relaxed' && simd !== 'strict') {
    throw new TypeError(`instantiateDoze: simd must be 'auto', 'relaxed' or 'strict', got ${String(simd)}`);
  }
  if (simd === 'relaxed' && !hasRelaxedSimd()) {
    const err = new Error(
      "simd: 'relaxed' was asked for, but this engine has no (working) relaxed SIMD " +
        '(Chrome and Edge >= 114, Node >= 22; Node 20 behind its flag gives wrong dots and is not used)',
    );
    err.code = 'NO_RELAXED_SIMD';
    throw err;
  }
  if (wasm != null) return wasm;
  const strict = threaded ? THREADED_WASM : DEFAULT_WASM;
  if (simd === 'strict' || !hasRelaxedSimd()) return strict;
  const relaxed = threaded ? THREADED_RELAXED_WASM : RELAXED_WASM;
  if (simd === 'relaxed') return relaxed;
  try {
    return await compileFromUrl(relaxed);
  } catch {
    return strict; // e.g. a build or a server without the relaxed file
  }
}

// ---- default hosts --------------------------------------------------------------

// Line-buffers UTF-8 bytes into console.log / console.error (browsers).
function consoleSink(log) {
  const dec = new TextDecoder('utf-8', { ignoreBOM: true }); // a leading U+FEFF is output
  let pending = '';
  return {
    write(bytes) {
      pending += dec.decode(bytes, { stream: true });
      let nl;
      while ((nl = pending.indexOf('\n')) >= 0) {
        log(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
      }
    },
    flush() {
      pending += dec.decode();
      if (pending) log(pending);
      pending = '';
    },
  };
}

function browserHost() {
  const out = consoleSink((s) => console.log(s));
  const err = consoleSink((s) => console.error(s));
  return {
    open: () => -1,
    read: () => -1,
    write(h, bytes) {
      if (h === 1) return this.stdout(bytes);
      if (h === 2) return this.stderr(bytes);
      throw new Error('bad handle');
    },
    size: () => -1,
    close: () => {},
    remove: () => -1,
    rename: () => -1,
    stdout: (bytes) => out.write(bytes),
    stderr: (bytes) => err.write(bytes),
    flush() {
      out.flush();
      err.flush();
    },
  };
}

// Why a file could not be opened or read, as io.h's negative IO_ERR_* codes
// (the CLI prints the reason as the native build does).
const IO_REASONS = {
  ENOENT: -2, EACCES: -3, EPERM: -3, EISDIR: -4, ENOTDIR: -5, ENAMETOOLONG: -6,
  EROFS: -7, ENOSPC: -8, EMFILE: -9, ENFILE: -9, ELOOP: -10,
};
function ioReason(e) {
  return (e && IO_REASONS[e.code]) || -1;
}

async function nodeHost() {
  const fs = await nodeModule('node:fs');
  const files = new Map(); // handle -> OS fd
  let next = 3; // 1 and 2 are stdout / stderr; never handed out
  let sleeper = null;

  // fs.writeSync keeps output order exact; it can hit EAGAIN when the fd is
  // a non-blocking pipe, so wait a little and retry.
  function writeAll(fd, bytes) {
    let off = 0;
    while (off < bytes.length) {
      try {
        off += fs.writeSync(fd, bytes, off, bytes.length - off);
      } catch (e) {
        if (e.code !== 'EAGAIN') throw e;
        sleeper ??= new Int32Array(new SharedArrayBuffer(4));
        Atomics.wait(sleeper, 0, 0, 1);
      }
    }
  }

  return {
    open(path, mode) {
      try {
        const fd = fs.openSync(path, mode === 'w' ? 'w' : 'r');
        const h = next++;
        files.set(h, fd);
        return h;
      } catch (e) {
        return ioReason(e);
      }
    },
    read(h, view) {
      if (h === 0) return this.stdin(view);
      const fd = files.get(h);
      if (fd === undefined) return -1;
      try {
        return fs.readSync(fd, view, 0, view.length, null);
      } catch (e) {
        return ioReason(e);
      }
    },
    write(h, bytes) {
      if (h === 1) return this.stdout(bytes);
      if (h === 2) return this.stderr(bytes);
      const fd = files.get(h);
      if (fd === undefined) throw new Error('bad handle');
      writeAll(fd, bytes);
    },
    size(h) {
      const fd = files.get(h);
      if (fd === undefined) return -1;
      try {
        return fs.fstatSync(fd).size;
      } catch {
        return -1;
      }
    },
    close(h) {
      const fd = files.get(h);
      if (fd === undefined) return;
      files.delete(h);
      fs.closeSync(fd); // a throw: the host reports -1
    },
    remove(path) {
      if (!fs.statSync(path).isFile()) return -1; // never a device or a pipe
      fs.unlinkSync(path);
    },
    rename(from, to) {
      let target = null;
      try {
        target = fs.statSync(to);
      } catch {
        /* a new name */
      }
      if (target && !target.isFile()) return -1; // never over a device or a pipe
      fs.renameSync(from, to);
    },
    stdout: (bytes) => writeAll(1, bytes),
    stderr: (bytes) => writeAll(2, bytes),
    // Blocking read of the process's stdin (doze chat); EAGAIN on a
    // non-blocking pipe waits a little and retries; 0 at end of input.
    stdin(view) {
      for (;;) {
        try {
          return fs.readSync(0, view, 0, view.length, null);
        } catch (e) {
          if (e.code === 'EOF') return 0;
          if (e.code !== 'EAGAIN') return -1;
          sleeper ??= new Int32Array(new SharedArrayBuffer(4));
          Atomics.wait(sleeper, 0, 0, 5);
        }
      }
    },
    flush() {},
  };
}

// ---- instantiate ----------------------------------------------------------------

/**
 * Loads and instantiates doze.wasm.
 *
 * @param {object} [options]
 * @param {string|URL|ArrayBuffer|ArrayBufferView|WebAssembly.Module} [options.wasm]
 *   Where the module is; default js/dist/doze.wasm next to this package.
 * @param {object} [options.host] Overrides for the host functions, merged over
 *   the default (Node: the file system; browser: no files, console output):
 *     open(path: string, mode: 'r'|'w') -> handle (>= 3), or -1 on failure (or
 *       a reason: -2 ENOENT, -3 EACCES, -4 EISDIR, ... as IO_REASONS; a thrown
 *       Node fs error is mapped the same way)
 *     read(handle, view: Uint8Array) -> bytes read, 0 at end of file, -1 (or a
 *       reason, as for open) on error
 *       handle 0 is stdin (Node: stdin(view), a blocking read of fd 0)
 *     write(handle, bytes: Uint8Array) -> void (throw on error); 1/2 go to
 *       stdout/stderr by default
 *     size(handle) -> bytes or -1;  close(handle) -> -1 (or a throw) when the
 *       file could not be closed;  remove(path) -> -1 (or a throw) when it
 *       could not be deleted (only regular files are);  rename(from, to) -> -1 (or
 *       a throw) when it could not replace `to` (the CLI then writes `to`
 *       directly);  now() -> milliseconds
 *     stdout(bytes), stderr(bytes): where handles 1 and 2 go
 *     flush(): called at the end of callMain
 *   The Uint8Array views point into wasm memory: valid only during the call.
 *   Host functions are called with `this` set to the merged host object.
 */
export async function instantiateDoze({ wasm, host, simd = 'auto', threaded = false } = {}) {
  if (!hasWasmSimd()) {
    const err = new Error(
      'This JavaScript engine does not support WebAssembly SIMD (simd128), which doze needs ' +
        '(Node >= 16.4, Chrome >= 91, Firefox >= 89, Safari >= 16.4).',
    );
    err.code = 'NO_WASM_SIMD';
    throw err;
  }

  const module = await compileWasm(await chooseWasm(wasm, simd, threaded));
  const base = isNode ? await nodeHost() : browserHost();
  const h = Object.assign(base, { now: () => performance.now() }, host || {});

  let instance = null;
  const mem = () => instance.exports.memory || imports.env.memory;
  const u8 = () => new Uint8Array(mem().buffer);
  const dv = () => new DataView(mem().buffer);
  const encoder = new TextEncoder();
  // ignoreBOM: strings read back (token texts, metadata) keep a leading
  // U+FEFF (SentencePiece vocabularies have a token that is just U+FEFF)
  const decoder = new TextDecoder('utf-8', { ignoreBOM: true });

  const view = (ptr, len) => new Uint8Array(mem().buffer, ptr >>> 0, len >>> 0);

  // ---- env: the io.h host ----
  const env = {
    host_open(pathPtr, pathLen, mode) {
      try {
        const path = decoder.decode(view(pathPtr, pathLen).slice());
        const r = h.open(path, mode === 1 ? 'w' : 'r');
        return typeof r === 'number' && (r >= 3 || r < 0) ? r | 0 : -1;
      } catch (e) {
        return ioReason(e);
      }
    },
    host_read(fd, ptr, n) {
      try {
        const r = h.read(fd, view(ptr, n));
        return typeof r === 'number' ? r | 0 : -1;
      } catch (e) {
        return ioReason(e);
      }
    },
    host_write(fd, ptr, n) {
      try {
        h.write(fd, view(ptr, n));
        return 0;
      } catch {
        return -1;
      }
    },
    host_size(fd) {
      try {
        const s = h.size(fd);
        return typeof s === 'number' && s >= 0 ? s : -1;
      } catch {
        return -1;
      }
    },
    host_close(fd) {
      try {
        return h.close(fd) === -1 ? -1 : 0;
      } catch {
        return -1;
      }
    },
    host_remove(pathPtr, pathLen) {
      try {
        const path = decoder.decode(view(pathPtr, pathLen).slice());
        return h.remove(path) === -1 ? -1 : 0;
      } catch {
        return -1;
      }
    },
    host_rename(fromPtr, fromLen, toPtr, toLen) {
      try {
        const from = decoder.decode(view(fromPtr, fromLen).slice());
        const to = decoder.decode(view(toPtr, toLen).slice());
        return typeof h.rename === 'function' && h.rename(from, to) !== -1 ? 0 : -1;
      } catch {
        return -1;
      }
    },
    host_now() {
      return h.now();
    },
    emscripten_notify_memory_growth() {
      // Nothing cached: every access re-reads exports.memory.buffer.
    },
    emscripten_memcpy_big(dest, src, n) {
      u8().copyWithin(dest >>> 0, src >>> 0, (src >>> 0) + (n >>> 0));
      return dest;
    },
  };

  // ---- wasi_snapshot_preview1: just what a CLI's libc may touch ----
  const ENOSYS = 52;
  const EBADF = 8;
  const ESPIPE = 70;
  const wasi = {
    fd_write(fd, iovs, iovsLen, nwrittenPtr) {
      if (fd !== 1 && fd !== 2) return EBADF;
      let total = 0;
      try {
        for (let i = 0; i < iovsLen; i++) {
          const d = dv();
          const p = d.getUint32((iovs >>> 0) + i * 8, true);
          const l = d.getUint32((iovs >>> 0) + i * 8 + 4, true);
          if (l) (fd === 1 ? h.stdout : h.stderr).call(h, importedMemory ? view(p, l).slice() : view(p, l));
          total += l;
        }
      } catch {
        return 29; // EIO
      }
      dv().setUint32(nwrittenPtr >>> 0, total, true);
      return 0;
    },
    fd_read(fd, iovs, iovsLen, nreadPtr) {
      if (fd !== 0) return EBADF;
      dv().setUint32(nreadPtr >>> 0, 0, true); // stdin: always end of file
      return 0;
    },
    fd_close: (fd) => (fd >= 0 && fd <= 2 ? 0 : EBADF),
    fd_seek: (fd) => (fd >= 0 && fd <= 2 ? ESPIPE : EBADF),
    fd_fdstat_get(fd, statPtr) {
      if (fd < 0 || fd > 2) return EBADF;
      const d = dv();
      const p = statPtr >>> 0;
      for (let i = 0; i < 24; i += 4) d.setUint32(p + i, 0, true);
      d.setUint8(p, 2); // filetype: character device
      return 0;
    },
    environ_sizes_get(countPtr, sizePtr) {
      dv().setUint32(countPtr >>> 0, 0, true);
      dv().setUint32(sizePtr >>> 0, 0, true);
      return 0;
    },
    environ_get: () => 0,
    args_sizes_get(countPtr, sizePtr) {
      dv().setUint32(countPtr >>> 0, 0, true);
      dv().setUint32(sizePtr >>> 0, 0, true);
      return 0;
    },
    args_get: () => 0,
    clock_time_get(clockId, _precision, timePtr) {
      const ms = clockId === 0 ? Date.now() : h.now(); // 0: realtime, else monotonic
      dv().setBigUint64(timePtr >>> 0, BigInt(Math.round(ms * 1e6)), true);
      return 0;
    },
    clock_res_get(_clockId, resPtr) {
      dv().setBigUint64(resPtr >>> 0, 1000n, true);
      return 0;
    },
    random_get(ptr, len) {
      const v = view(ptr, len);
      for (let i = 0; i < v.length; i += 65536) {
        globalThis.crypto.getRandomValues(v.subarray(i, Math.min(v.length, i + 65536)));
      }
      return 0;
    },
    sched_yield: () => 0,
    proc_exit(code) {
      throw new DozeExit(code);
    },
  };

  // Check every import now rather than failing halfway through a run.
  const imports = { env: {}, wasi_snapshot_preview1: {} };
  const missing = [];
  let importedMemory = null;
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.module === 'env' && imp.name === 'memory' && imp.kind === 'memory') {
      // doze-mt.wasm: a shared memory the pool's workers instantiate on too
      // (limits: wasm/link.cmake's INITIAL_MEMORY and MAXIMUM_MEMORY)
      importedMemory = new WebAssembly.Memory({ initial: 256, maximum: 65536, shared: true });
      imports.env.memory = importedMemory;
    } else if (imp.kind !== 'function') {
      missing.push(`${imp.module}.${imp.name} (${imp.kind})`);
    } else if (imp.module === 'env' && imp.name in env) {
      imports.env[imp.name] = env[imp.name];
    } else if (imp.module === 'wasi_snapshot_preview1') {
      imports.wasi_snapshot_preview1[imp.name] = wasi[imp.name] || (() => ENOSYS);
    } else {
      missing.push(`${imp.module}.${imp.name}`);
    }
  }
  if (missing.length) {
    const err = new Error(`doze.wasm needs imports this glue does not provide: ${missing.join(', ')}`);
    err.code = 'WASM_IMPORTS';
    throw err;
  }

  instance = await WebAssembly.instantiate(module, imports);
  const exports = importedMemory ? { ...instance.exports, memory: importedMemory } : instance.exports;
  if (!(exports.memory instanceof WebAssembly.Memory)) {
    throw new Error('doze.wasm does not export its memory');
  }
  if (typeof exports.doze_wasm_abi_version === 'function') {
    const v = exports.doze_wasm_abi_version();
    if (v !== ABI_VERSION) {
      throw new Error(`doze.wasm ABI version ${v} does not match this glue (${ABI_VERSION})`);
    }
  }
  // A --no-entry standalone module is a WASI reactor: run its constructors.
  if (typeof exports._initialize === 'function') exports._initialize();

  // ---- memory helpers ----
  function malloc(n) {
    const p = exports.malloc(n >>> 0) >>> 0;
    if (p === 0 && n > 0) throw new RangeError(`doze.wasm: out of memory allocating ${n} bytes`);
    return p;
  }
  function free(ptr) {
    if (ptr) exports.free(ptr >>> 0);
  }
  /** Copies bytes into a fresh malloc'd block; returns the pointer. */
  function writeBytes(bytes) {
    const src = ArrayBuffer.isView(bytes)
      ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
      : new Uint8Array(bytes);
    const p = malloc(Math.max(1, src.length));
    u8().set(src, p);
    return p;
  }
  /** Copies a string in as NUL-terminated UTF-8; returns the pointer (free it). */
  function writeString(str) {
    const bytes = encoder.encode(String(str));
    const p = malloc(bytes.length + 1);
    const m = u8();
    m.set(bytes, p);
    m[p + bytes.length] = 0;
    return p;
  }
  /** A copy of len bytes at ptr. */
  function readBytes(ptr, len) {
    return u8().slice(ptr >>> 0, (ptr >>> 0) + (len >>> 0));
  }
  /** UTF-8 at ptr: len bytes, or up to the first NUL when len is omitted. */
  function readString(ptr, len) {
    const m = u8();
    const p = ptr >>> 0;
    let end;
    if (len === undefined) {
      end = m.indexOf(0, p);
      if (end < 0) end = m.length;
    } else {
      end = p + (len >>> 0);
    }
    // TextDecoder refuses views of a SharedArrayBuffer (doze-mt.wasm): copy
    return decoder.decode(importedMemory ? m.slice(p, end) : m.subarray(p, end));
  }

  /**
   * Runs the CLI: doze_cli_main(argc, argv) with argv = [programName, ...args].
   * Returns the exit code (also when the C side calls exit()). Traps propagate.
   */
  function callMain(args = [], { programName = 'doze' } = {}) {
    const argv = [programName, ...args.map(String)];
    const strs = argv.map(writeString);
    const argvPtr = malloc((argv.length + 1) * 4);
    const d = dv();
    strs.forEach((p, i) => d.setUint32(argvPtr + i * 4, p, true));
    d.setUint32(argvPtr + argv.length * 4, 0, true);
    let code;
    try {
      code = exports.doze_cli_main(argv.length, argvPtr);
    } catch (e) {
      if (e instanceof DozeExit) return e.code; // memory state after exit() is not reused
      throw e;
    } finally {
      if (typeof exports.doze_wasm_flush === 'function') {
        try {
          exports.doze_wasm_flush();
        } catch {
          /* after a trap, nothing to flush */
        }
      }
      if (typeof h.flush === 'function') h.flush();
    }
    strs.forEach(free);
    free(argvPtr);
    return code;
  }

  return {
    get module() {
      return module;
    },
    /** 'relaxed' (doze-relaxed.wasm: q8_0/q4_0 on the relaxed-SIMD dot) or 'strict' */
    simd: typeof exports.doze_wasm_relaxed_simd === 'function' && exports.doze_wasm_relaxed_simd() ? 'relaxed' : 'strict',
    get instance() {
      return instance;
    },
    get exports() {
      return exports;
    },
    /** True for doze-mt.wasm (shared memory: the thread pool can run). */
    get threaded() {
      return importedMemory !== null;
    },
    get memory() {
      return exports.memory;
    },
    /** Fresh views over the current buffer (re-get after anything that may grow memory). */
    get HEAPU8() {
      return u8();
    },
    get view() {
      return dv();
    },
    host: h,
    malloc,
    free,
    writeBytes,
    writeString,
    readBytes,
    readString,
    callMain,
  };
}

export default instantiateDoze;
