// 2 threads against 1 through the package, in Node (doze.wasm at 1 thread,
// doze-mt.wasm at 2): `doze init` models of the stories110M shape (or the
// GGUF files given), rounds interleaving files and thread counts; prefill is
// the prompt's tokens over the time to the first token, decode the intervals
// after it, each timed on a model already warmed by an untimed generation
// (wasm functions start in V8's baseline code and are optimized while they
// run, so the first prompt after a load is slower than the next ones).
// Prints one line per run and the per-round ratios.
//   node bench/threads.mjs [--rounds N] [A.gguf B.gguf ...]
// --finetune MODEL.gguf TEXT: gate fine-tuning instead (model.finetuneGates,
// --steps steps of 8 x 128 tokens, default 8), tokens/s as the median of its
// steps after the first, 1 and 2 threads in turn each round.
// --budget B: each thread count also decodes under budget B (training-free
// gates calibrated at load, or --gates FILE) right after dense on the same
// loaded model; prints budget / dense decode per thread count, and the
// compute the budget achieved. --ctx N: N positions instead of the model's own
// context (a 32k-context model's KV cache would dwarf the weights).
// --prompt N: the prompt's last N tokens (default all of it, about 350).
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../js/src/index.js';

const args = process.argv.slice(2);
let rounds = 3, steps = 8, finetune = null, budget = null, gates = null, ctx = 0, promptLen = 0;
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--rounds') rounds = Number(args[++i]);
  else if (args[i] === '--steps') steps = Number(args[++i]);
  else if (args[i] === '--finetune') finetune = { model: args[++i], text: args[++i] };
  else if (args[i] === '--budget') budget = Number(args[++i]);
  else if (args[i] === '--gates') gates = args[++i];
  else if (args[i] === '--ctx') ctx = Number(args[++i]);
  else if (args[i] === '--prompt') promptLen = Number(args[++i]);
  else files.push(args[i]);
}
if (!(Number.isInteger(rounds) && rounds >= 1)) throw new Error('--rounds takes a whole number >= 1');
if (!(Number.isInteger(steps) && steps >= 2)) throw new Error('--steps takes a whole number >= 2');
if (finetune && !(finetune.model && finetune.text)) throw new Error('--finetune takes MODEL.gguf TEXT');
if (budget !== null && !(budget > 0 && budget < 1)) throw new Error('--budget takes a number in (0, 1)');
if (gates && budget === null) throw new Error('--gates goes with --budget');
if (!(Number.isInteger(ctx) && ctx >= 0)) throw new Error('--ctx takes a whole number of positions');
if (!(Number.isInteger(promptLen) && promptLen >= 0)) throw new Error('--prompt takes a whole number of tokens');
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
if (finetune) {
  const text = readFileSync(finetune.text, 'utf8'), got = [];
  for (let round = 0; round < rounds; round++) {
    const r = {};
    for (const threads of [1, 2]) {
      const model = await loadModel(finetune.model, { threads });
      const tps = [];
      await model.finetuneGates(text, { steps, batch: 8, contextLength: 128, seed: 1,
        onStep: (p) => { if (p.step > 1) tps.push(p.tokensPerSecond); } });
      model.dispose();
      r[threads] = median(tps);
      console.log(`round ${round + 1} threads ${threads}: gate fine-tuning ${r[threads].toFixed(0)} tok/s (median of steps 2-${steps})`);
    }
    got.push(r[2] / r[1]);
  }
  console.log(`gate fine-tuning: 2 / 1 threads median ${median(got).toFixed(2)} (${Math.min(...got).toFixed(2)}-${Math.max(...got).toFixed(2)})`);
  process.exit(0);
}
if (files.length === 0) {
  const dir = mkdtempSync(join(tmpdir(), 'doze-threads-'));
  for (const type of ['f32', 'q8_0']) {
    const out = join(dir, `stories110M-shape-${type}.gguf`);
    execFileSync(new URL('../build/doze', import.meta.url).pathname, ['init', '--dim', '768', '--hidden', '2048',
      '--layers', '12', '--heads', '12', '--vocab', '32000', '--ctx', '512', '--seed', '3', '--type', type, '-o', out]);
    files.push(out);
  }
}
const text = 'Once upon a time there was a little fox who loved to run in the green woods and '.repeat(12);
// One generation on a loaded model: prompt tokens / time to the first token,
// and the tokens after it over their time; the mean compute of the decode steps.
async function run(model, n, b) {
  model.budget = b;
  const t0 = performance.now();
  let first = 0, last = 0, count = 0, compute = 0;
  for await (const tok of model.generate(text, { maxTokens: 33, temperature: 0, ignoreEos: true, keepLast: n })) {
    const now = performance.now();
    if (count === 0) first = now; else compute += tok.compute;
    last = now;
    count++;
  }
  return { prefill: n / ((first - t0) / 1000), decode: (count - 1) / ((last - first) / 1000), compute: compute / (count - 1) };
}
const ratios = {};
const push = (k, metric, v) => ((ratios[k] ??= {})[metric] ??= []).push(v);
for (let round = 0; round < rounds; round++) {
  for (const file of files) {
    const r = {};
    for (const threads of [1, 2]) {
      const model = await loadModel(file, ctx ? { threads, contextLength: ctx } : { threads });
      if (budget !== null) {
        if (gates) model.loadGates(readFileSync(gates));
        else await model.calibrateGates();
      }
      // the prompt's last tokens when the context is short: room for the 33 generated
      let n = Math.min(model.tokenize(text).length, model.info.contextLength - 40);
      if (promptLen) n = Math.min(n, promptLen);
      await run(model, n, 1); // untimed warm-up
      r[threads] = await run(model, n, 1);
      console.log(`round ${round + 1} ${file} threads ${threads}: decode ${r[threads].decode.toFixed(1)} tok/s, ` +
        `prefill ${r[threads].prefill.toFixed(1)} tok/s (${n} prompt tokens)`);
      if (budget !== null) {
        const g = await run(model, n, budget);
        console.log(`round ${round + 1} ${file} threads ${threads} budget ${budget}: decode ${g.decode.toFixed(1)} tok/s ` +
          `(compute ${g.compute.toFixed(3)})`);
        push(file, `budget ${budget} / dense decode, ${threads} thread${threads > 1 ? 's' : ''}`, g.decode / r[threads].decode);
      }
      model.dispose();
    }
    push(file, 'decode: 2 / 1 threads', r[2].decode / r[1].decode);
    push(file, 'prefill: 2 / 1 threads', r[2].prefill / r[1].prefill);
  }
}
for (const [file, r] of Object.entries(ratios))
  for (const [metric, v] of Object.entries(r))
    console.log(`${file} ${metric}: median ${median(v).toFixed(2)} (${Math.min(...v).toFixed(2)}-${Math.max(...v).toFixed(2)})`);
