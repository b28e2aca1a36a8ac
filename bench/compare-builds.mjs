// Two builds of doze.wasm side by side on the same model, in one process:
// decode tokens/s and prefill tokens/s, rounds interleaved (A, B, A, B...)
// so that both see the same machine load; prints the median and range of
// each and of the ratio B / A.
//   node bench/compare-builds.mjs OLD.wasm NEW.wasm MODEL.gguf [--rounds N] [--steps N] [--prompt N] [--threads N]
// (--threads: for two doze-mt.wasm builds; default the package's default)
import { resolve } from 'node:path';
import { loadModel } from '../js/src/index.js';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args.splice(i, 2)[1]) : dflt;
};
const rounds = opt('--rounds', 5), steps = opt('--steps', 64), promptLen = opt('--prompt', 128);
const threads = opt('--threads', 0);
if (!(Number.isInteger(threads) && threads >= 0)) throw new Error('--threads takes a whole number of threads');
const [wa, wb, modelPath] = args;
if (!modelPath) {
  console.error('usage: node bench/compare-builds.mjs OLD.wasm NEW.wasm MODEL.gguf [--rounds N] [--steps N] [--prompt N] [--threads N]');
  process.exit(2);
}
const load = (w) => loadModel(resolve(modelPath), threads ? { wasm: resolve(w), threads } : { wasm: resolve(w) });
const models = [await load(wa), await load(wb)];
const vocab = models[0].info.vocabSize;
// a text prompt of about promptLen tokens (the batched prefill path)
let prompt = '';
while (models[0].tokenize(prompt).length < promptLen) prompt += 'Once upon a time there was a little dog. ';

async function decode(model) {
  const s = model.createSession();
  const t0 = performance.now();
  let token = 1;
  for (let i = 0; i < steps; i++) {
    const r = await s.step(token);
    token = (i * 31 + 7) % vocab;
    void r;
  }
  const ms = performance.now() - t0;
  s.dispose?.();
  return (steps / ms) * 1000;
}
async function prefill(model) {
  const s = model.createSession();
  const it = s.generate(prompt, { maxTokens: 1 });
  let r;
  while (!(r = await it.next()).done);
  s.dispose?.();
  return (r.value.promptTokens / r.value.promptMs) * 1000;
}
const med = (v) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)];
const fmt = (v) => `${med(v).toFixed(1)} (${Math.min(...v).toFixed(1)}-${Math.max(...v).toFixed(1)})`;
for (const [name, fn] of [['decode tok/s', decode], ['prefill tok/s', prefill]]) {
  const a = [], b = [], ratio = [];
  await fn(models[0]), await fn(models[1]); // warm-up
  for (let r = 0; r < rounds; r++) {
    const x = await fn(models[0]), y = await fn(models[1]);
    a.push(x), b.push(y), ratio.push(y / x);
  }
  const spread = Math.max(...ratio) / Math.min(...ratio);
  console.log(`${name.padEnd(14)} A ${fmt(a)}  B ${fmt(b)}  B/A ${fmt(ratio)}${spread > 2 ? '  UNRELIABLE (rounds spread > 2x)' : ''}`);
}
for (const m of models) m.dispose();
