// DozeError: every error the package throws on purpose.

/**
 * An error from Doze. `code` is stable: the C library's status name
 * (`BAD_MAGIC`, `TRUNCATED`, `UNSUPPORTED_VERSION`, `BAD_FORMAT`,
 * `UNSUPPORTED_TYPE`, `BAD_SHAPE`, `MISSING`, `OUT_OF_MEMORY`, `IO`,
 * `TOKEN_RANGE`, `BAD_UTF8`, `CONTEXT_FULL`, `ABORTED`, `STATE`,
 * `INVALID_ARGUMENT`) or one of the JS side's (`NO_WASM_SIMD`, `NO_RELAXED_SIMD`,
 * `NO_WASM_FILE`, `WASM_IMPORTS`, `WORKER`). Aborts have `name` 'AbortError'
 * and code 'ABORTED', like the DOMException fetch() throws.
 */
export class DozeError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{cause?: unknown}} [options]
   */
  constructor(code, message, options) {
    super(message, options);
    this.name = code === 'ABORTED' ? 'AbortError' : 'DozeError';
    /** @type {string} */
    this.code = code;
  }
}

/** The error an abort rejects with. */
export function abortError(what = 'the operation', signal) {
  const reason = signal && signal.reason;
  const why = reason instanceof Error ? `: ${reason.message}` : reason != null && typeof reason !== 'object' ? `: ${reason}` : '';
  return new DozeError('ABORTED', `${what} was aborted${why}`, reason !== undefined ? { cause: reason } : undefined);
}

/** Every code a DozeError can carry (index.d.ts: DozeErrorCode). */
const DOZE_CODES = new Set([
  'INVALID_ARGUMENT', 'BAD_MAGIC', 'UNSUPPORTED_VERSION', 'TRUNCATED', 'BAD_FORMAT', 'UNSUPPORTED_TYPE', 'BAD_SHAPE',
  'MISSING', 'OUT_OF_MEMORY', 'IO', 'TOKEN_RANGE', 'BAD_UTF8', 'CONTEXT_FULL', 'ABORTED', 'STATE',
  'NO_WASM_SIMD', 'NO_RELAXED_SIMD', 'NO_WASM_FILE', 'WASM_IMPORTS', 'WORKER',
]);

/**
 * Turns anything thrown into a DozeError. A Doze code already on the error
 * (wasm.js tags its errors) is kept; another code (Node's EISDIR, EIO, ...)
 * stays in the message and the cause, and the error gets fallbackCode.
 */
export function toDozeError(e, fallbackCode = 'IO', context = '') {
  if (e instanceof DozeError) return e;
  const code = e && typeof e.code === 'string' && DOZE_CODES.has(e.code) ? e.code : fallbackCode;
  const msg = e && e.message ? e.message : String(e);
  return new DozeError(code, context ? `${context}: ${msg}` : msg, { cause: e });
}

/** Plain-object form for postMessage (the Worker entry). */
export function serializeError(e) {
  const d = toDozeError(e, 'WORKER');
  return { code: d.code, message: d.message, name: d.name };
}

export function deserializeError(o) {
  return new DozeError(o.code, o.message);
}
