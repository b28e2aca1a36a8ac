// 2 threads against 1 through the package, in Node (doze.wasm at 1 thread,
// doze-mt.wasm at 2): `doze init` models of the stories110M shape (or the
// GGUF files given), rounds interleaving files and thread counts; prefill is
// the prompt's tokens over the time to the first token, decode the intervals
// after it. Prints one line per run and the per-round ratios.
//   node bench/threads.mjs [--rounds N] [A.gguf B.gguf ...]
// --finetune MODEL.gguf TEXT: gate fine-tuning instead (model.finetuneGates,
// --steps steps of 8 x 128 tokens, default 8), tokens/s as the median of its
// steps after the first, 1 and 2 threads in turn each round.
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../js/src/index.js';

const args = process.argv.slice(2);
let rounds = 3, steps = 8, finetune = null;
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--rounds') rounds = Number(args[++i]);
  else if (args[i] === '--steps') steps = Number(args[++i]);
  else if (args[i] === '--finetune') finetune = { model: args[++i], text: args[++i] };
  else files.push(args[i]);
}
if (!(Number.isInteger(rounds) && rounds >= 1)) throw new Error('--rounds takes a whole number >= 1');
if (!(Number.isInteger(steps) && steps >= 2)) throw new Error('--steps takes a whole number >= 2');
if (finetune && !(finetune.model && finetune.text)) throw new Error('--finetune takes MODEL.gguf TEXT');
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
const ratios = {};
for (let round = 0; round < rounds; round++) {
  for (const file of files) {
    const r = {};
    for (const threads of [1, 2]) {
      const model = await loadModel(file, { threads, contextLength: 512 });
      const n = model.tokenize(text).length;
      const t0 = performance.now();
      let first = 0, last = 0, count = 0;
      for await (const _ of model.generate(text, { maxTokens: 33, temperature: 0, ignoreEos: true })) {
        const now = performance.now();
        if (count === 0) first = now;
        last = now;
        count++;
      }
      model.dispose();
      r[threads] = { prefill: n / ((first - t0) / 1000), decode: (count - 1) / ((last - first) / 1000) };
      console.log(`round ${round + 1} ${file} threads ${threads}: decode ${r[threads].decode.toFixed(1)} tok/s, ` +
        `prefill ${r[threads].prefill.toFixed(1)} tok/s (${n} prompt tokens)`);
    }
    const k = file;
    (ratios[k] ??= { decode: [], prefill: [] });
    ratios[k].decode.push(r[2].decode / r[1].decode);
    ratios[k].prefill.push(r[2].prefill / r[1].prefill);
  }
}
for (const [file, r] of Object.entries(ratios))
  for (const metric of ['decode', 'prefill'])
    console.log(`${file} ${metric}: 2 / 1 threads median ${median(r[metric]).toFixed(2)} ` +
      `(${Math.min(...r[metric]).toFixed(2)}-${Math.max(...r[metric]).toFixed(2)})`);
