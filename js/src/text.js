// Text out of token ids: the streaming piece decoder (UTF-8 split over
// tokens comes out whole), stop strings held back while they may still
// match, and UTF-8 truncation.

const MAX_PIECE = 1024; // DOZE_MAX_PIECE: the longest piece doze_token_to_piece writes

/** Decodes token pieces to text through a streaming UTF-8 decoder; owns a small wasm buffer (free()). */
export class PieceDecoder {
  constructor(rt, model) {
    this.rt = rt;
    this.model = model;
    this.buf = rt.doze.malloc(MAX_PIECE + 8);
    this.len = this.buf + MAX_PIECE;
    // ignoreBOM: a U+FEFF at the start is text (the default decoder eats
    // it: detokenize('\uFEFF...') lost it, and so did a stream whose first
    // piece began with one)
    this.decoder = new TextDecoder('utf-8', { ignoreBOM: true });
  }
  bytes(prev, id) {
    const { rt } = this;
    rt.check(rt.x.doze_token_to_piece(this.model, prev, id, this.buf, MAX_PIECE, this.len, rt.err), 'detokenize');
    const n = rt.doze.view.getUint32(this.len, true);
    return rt.doze.readBytes(this.buf, n);
  }
  text(prev, id) {
    return this.decoder.decode(this.bytes(prev, id), { stream: true });
  }
  flush() {
    return this.decoder.decode();
  }
  free() {
    if (this.buf) this.rt.doze.free(this.buf);
    this.buf = 0;
  }
}

/** Longest suffix of s that is a proper prefix of one of the stop strings. */
export function heldSuffix(s, stops) {
  let best = 0;
  for (const stop of stops) {
    for (let k = Math.min(stop.length - 1, s.length); k > best; k--) {
      if (s.endsWith(stop.slice(0, k))) {
        best = k;
        break;
      }
    }
  }
  return best;
}

/**
 * Stop strings over streamed text: text that may be the start of a stop
 * string is held back until it is known not to be; a match cuts the text
 * before it.
 */
export class StopText {
  constructor(stops) {
    this.stops = stops;
    this.held = '';
  }
  /** The text to emit now for `text` (`last`: nothing follows), and whether a stop string matched. */
  push(text, last) {
    if (!this.stops.length) return { text, stopped: false };
    this.held += text;
    let at = -1;
    for (const s of this.stops) {
      const i = this.held.indexOf(s);
      if (i >= 0 && (at < 0 || i < at)) at = i;
    }
    if (at >= 0) {
      const out = this.held.slice(0, at);
      this.held = '';
      return { text: out, stopped: true };
    }
    const keep = last ? 0 : heldSuffix(this.held, this.stops);
    const out = this.held.slice(0, this.held.length - keep);
    this.held = this.held.slice(this.held.length - keep);
    return { text: out, stopped: false };
  }
}

/** The first `max` bytes of UTF-8 `bytes`, cut back to a character boundary. */
export function truncateUtf8(bytes, max) {
  if (bytes.length <= max) return bytes;
  let len = max;
  while (len > 0 && (bytes[len] & 0xc0) === 0x80) len--;
  return bytes.subarray(0, len);
}

/** Concatenates a token stream's texts (onToken sees each token). */
export async function collect(gen, onToken) {
  let text = '';
  for await (const t of gen) {
    text += t.text;
    if (onToken) onToken(t);
  }
  return text;
}
