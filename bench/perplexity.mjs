// perplexity() against the token-by-token way it used to run (a step per
// token, its logits to JS, the softmax there), on the first story of a
// text, interleaved rounds: ms each and the ratio per round.
//   node bench/perplexity.mjs MODEL.gguf [TEXT] [--threads N] [--rounds N]
import { readFileSync } from 'node:fs';
import { loadModel } from '../js/src/index.js';

const args = process.argv.slice(2);
const opt = (name, d) => {
  const i = args.indexOf(name);
  if (i < 0) return d;
  const v = Number(args[i + 1]);
  args.splice(i, 2);
  return v;
};
const threads = opt('--threads', 1);
const rounds = opt('--rounds', 3);
const [path, textPath = new URL('../../shared/text/tinystories-dev.txt', import.meta.url).pathname] = args;
if (!path) {
  console.error('usage: node bench/perplexity.mjs MODEL.gguf [TEXT] [--threads N] [--rounds N]');
  process.exit(2);
}
const text = readFileSync(textPath, 'utf8').split('<|endoftext|>').map((s) => s.trim()).find((s) => s.length > 0);
const m = await loadModel(path, { threads });

async function stepped() {
  const s = m.createSession();
  const ids = m.tokenize(text, { bos: true }).subarray(0, m.info.contextLength);
  let sum = 0;
  for (let i = 0; i + 1 < ids.length; i++) {
    const { logits } = await s.step(ids[i]);
    let max = -Infinity;
    for (const v of logits) if (v > max) max = v;
    let z = 0;
    for (const v of logits) z += Math.exp(Math.fround(v - max));
    sum += Math.log(z) - Math.fround(logits[ids[i + 1]] - max);
  }
  s.dispose();
  return { nll: sum / (ids.length - 1), tokens: ids.length - 1 };
}

const ratios = [];
for (let r = 0; r < rounds; r++) {
  let t0 = performance.now();
  const a = await stepped();
  const ta = performance.now() - t0;
  t0 = performance.now();
  const b = await m.perplexity(text);
  const tb = performance.now() - t0;
  if (Math.abs(a.nll - b.nll) > 1e-9) throw new Error(`nll ${a.nll} against ${b.nll}`);
  ratios.push(ta / tb);
  console.log(`round ${r + 1}: ${b.tokens} tokens, steps ${ta.toFixed(0)} ms, perplexity() ${tb.toFixed(0)} ms: ${(ta / tb).toFixed(2)}x`);
}
ratios.sort((x, y) => x - y);
console.log(`perplexity() ${ratios[ratios.length >> 1].toFixed(2)}x as fast as steps (median; ${ratios[0].toFixed(2)}-${ratios.at(-1).toFixed(2)})`);
m.dispose();
