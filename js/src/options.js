// Option checking: every option of the public calls is checked for type and
// range before anything is allocated, and an unknown option name is an error
// (a misspelt `maxTokens` would otherwise silently mean "no limit"). Errors
// are DozeError INVALID_ARGUMENT naming the call and the option.

import { DozeError } from './errors.js';

export const invalid = (msg) => new DozeError('INVALID_ARGUMENT', msg);

const show = (v) => {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'function') return 'a function';
  if (v === null || typeof v !== 'object') return String(v);
  return Array.isArray(v) ? 'an array' : `an object (${v.constructor?.name ?? 'Object'})`;
};

/**
 * A checker: (value, where) -> the value to use (or throws). `where` is
 * "call: name". Checkers see only values that are not undefined; null is
 * passed through only where `nullable` says so.
 */

/** A whole number the C side takes as an int32 (larger ones would wrap). */
export const isInt32 = (x) => Number.isInteger(x) && x >= -(2 ** 31) && x <= 2 ** 31 - 1;

/**
 * An integer in [min, max] (Infinity allowed as max when `infinite`); a max
 * left open is 2^31 - 1, since the value goes to wasm as an int32 (2^32 + 1
 * would arrive as 1).
 */
export function int(min = -Infinity, max = Infinity, { infinite = false } = {}) {
  const cap = infinite ? Infinity : 2 ** 31 - 1;
  return (v, where) => {
    if (infinite && v === Infinity) return v;
    if (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max && v > cap) {
      throw invalid(`${where} must be at most ${cap}, got ${show(v)}`);
    }
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      const range = max === Infinity ? `>= ${min}` : `in [${min}, ${max}]`;
      throw invalid(`${where} must be an integer ${range}${infinite ? ' (or Infinity)' : ''}, got ${show(v)}`);
    }
    return v;
  };
}

/** A finite number; `lo`/`hi` bounds, open when `loOpen`/`hiOpen`. */
export function num(lo = -Infinity, hi = Infinity, { loOpen = false, hiOpen = false } = {}) {
  return (v, where) => {
    const ok = typeof v === 'number' && Number.isFinite(v)
      && (loOpen ? v > lo : v >= lo) && (hiOpen ? v < hi : v <= hi);
    if (!ok) {
      const a = lo === -Infinity ? '' : `${loOpen ? '>' : '>='} ${lo}`;
      const b = hi === Infinity ? '' : `${hiOpen ? '<' : '<='} ${hi}`;
      const range = a && b ? `in ${loOpen ? '(' : '['}${lo}, ${hi}${hiOpen ? ')' : ']'}` : a || b;
      throw invalid(`${where} must be a finite number${range ? ` ${range}` : ''}, got ${show(v)}`);
    }
    return v;
  };
}

/** A budget b in (0, 1], also as the float32 the runtime holds (1e-46 would be 0 there). */
export const budget = (v, where) => {
  if (typeof v !== 'number' || !(v > 0 && v <= 1) || !(Math.fround(v) > 0))
    throw invalid(`${where} must be a number in (0, 1], got ${show(v)}`);
  return v;
};

export const bool = (v, where) => {
  if (typeof v !== 'boolean') throw invalid(`${where} must be true or false, got ${show(v)}`);
  return v;
};

export const func = (v, where) => {
  if (typeof v !== 'function') throw invalid(`${where} must be a function, got ${show(v)}`);
  return v;
};

export const string = (v, where) => {
  if (typeof v !== 'string') throw invalid(`${where} must be a string, got ${show(v)}`);
  return v;
};

export const signal = (v, where) => {
  const ok = v != null && typeof v === 'object' && typeof v.aborted === 'boolean' && typeof v.addEventListener === 'function';
  if (!ok) throw invalid(`${where} must be an AbortSignal, got ${show(v)}`);
  return v;
};

/** A 64-bit seed: a safe integer >= 0 or a bigint in [0, 2^64). */
export const seed = (v, where) => {
  const ok = (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0)
    || (typeof v === 'bigint' && v >= 0n && v < 1n << 64n);
  if (!ok) throw invalid(`${where} must be an integer in [0, 2^53) or a bigint in [0, 2^64), got ${show(v)}`);
  return v;
};

/**
 * Ranges of a text where control tokens stay text (tokenize / generate's
 * `literal`): an array of [start, end) pairs of string indices (UTF-16 code
 * units, as String#slice takes them), 0 <= start <= end. Checked against the
 * text's length where it is tokenized (literalBytes).
 */
export const literalRanges = (v, where) => {
  const ok = Array.isArray(v) && v.every((r) => Array.isArray(r) && r.length === 2
    && Number.isSafeInteger(r[0]) && Number.isSafeInteger(r[1]) && r[0] >= 0 && r[0] <= r[1]);
  if (!ok) throw invalid(`${where} must be an array of [start, end] index pairs with 0 <= start <= end, got ${show(v)}`);
  return v;
};

/**
 * `literal` ranges of `text` as UTF-8 byte offsets, flattened [s0, e0, s1,
 * e1, ...] (doze_tokenize_literal's form), walking the text once.
 */
export function literalBytes(text, ranges, where) {
  const marks = new Map();
  for (const [s, e] of ranges) {
    if (e > text.length) throw invalid(`${where}: the range [${s}, ${e}] ends past the text (${text.length} characters)`);
    marks.set(s, 0);
    marks.set(e, 0);
  }
  const wanted = [...marks.keys()].sort((a, b) => a - b);
  let bytes = 0;
  let k = 0;
  for (let i = 0; i <= text.length && k < wanted.length; i++) {
    while (k < wanted.length && wanted[k] === i) marks.set(wanted[k++], bytes);
    if (i === text.length) break;
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      // a surrogate pair: one 4-byte character (an index inside it counts as its start)
      i++;
      while (k < wanted.length && wanted[k] === i) marks.set(wanted[k++], bytes);
      bytes += 4;
    } else bytes += 3; // the BMP beyond, and a lone surrogate (U+FFFD, 3 bytes)
  }
  return ranges.flatMap(([s, e]) => [marks.get(s), marks.get(e)]);
}

/** One of the listed values. */
export function oneOf(...values) {
  return (v, where) => {
    if (!values.includes(v)) throw invalid(`${where} must be one of ${values.map(show).join(', ')}, got ${show(v)}`);
    return v;
  };
}

/** The checker, or null accepted as is. */
export const nullable = (check) => {
  const c = (v, where) => (v === null ? null : check(v, where));
  c.acceptsNull = true;
  return c;
};

/** Any value (checked where it is used). */
export const any = (v) => v;

/**
 * Checks `options` of `call` against `schema` ({ name: checker }): an
 * object (or undefined / null: no options), no unknown names, every given
 * value checked. Returns a new object with the checked values (undefined
 * ones left out, so defaults apply).
 */
export function checkOptions(call, options, schema) {
  if (options == null) return {};
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw invalid(`${call}: options must be an object, got ${show(options)}`);
  }
  const out = {};
  for (const key of Object.keys(options)) {
    const check = schema[key];
    if (!check) {
      const known = Object.keys(schema).join(', ');
      throw invalid(`${call}: unknown option '${key}' (known: ${known})`);
    }
    const v = options[key];
    if (v === undefined) continue;
    if (v === null && !check.acceptsNull) {
      out[key] = undefined; // null = the default, as before
      continue;
    }
    out[key] = check(v, `${call}: ${key}`);
  }
  return out;
}

/** A seed as the two 32-bit halves the wasm exports take (a random one when null). */
export function seedHalves(seed) {
  if (seed == null) {
    const r = new Uint32Array(2);
    globalThis.crypto.getRandomValues(r);
    return [r[0], r[1]];
  }
  const s = BigInt.asUintN(64, BigInt(typeof seed === 'number' ? Math.trunc(seed) : seed));
  return [Number(s & 0xffffffffn), Number(s >> 32n)];
}

/** An array-like of integer token ids (a plain array or a typed array). */
export const tokenIds = (v, where) => {
  let a = null;
  if (v != null && typeof v === 'object' && typeof v.length === 'number') {
    try {
      a = Array.from(v);
    } catch {
      a = null;
    }
  }
  if (!a || !a.every(isInt32)) throw invalid(`${where} must be an array of integer token ids, got ${show(v)}`);
  return v;
};
