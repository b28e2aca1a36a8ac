// Position by position, how far Doze's next-token distribution is from
// llama.cpp's on one GGUF: llama.cpp (node-llama-cpp, CPU, F32 KV cache,
// one thread) generates greedy tokens from the prompt; Doze (wasm,
// Session#step) is fed the same ids. Prints max |dp| at each position, so a
// lone spike (one rounding that went the other way) can be told from a
// drift. docs/exactness.md uses it.
//
//   node scripts/oracle-steps.mjs MODEL.gguf [--prompt TEXT] [--steps 48] [--batch 1]
//
// --batch: llama.cpp's batch size; 1 feeds the prompt one token at a time
// (its batched products take other kernels).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { getLlama } from 'node-llama-cpp';

import { loadModel } from '../js/src/index.js';
import { softmax } from '../tests/js/oracle.js';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: { prompt: { type: 'string', default: 'the cat sat on the mat' }, steps: { type: 'string', default: '48' },
    batch: { type: 'string', default: '1' } },
});
if (positionals.length !== 1) {
  console.error('usage: node scripts/oracle-steps.mjs MODEL.gguf [--prompt TEXT] [--steps N] [--batch B]');
  process.exit(2);
}
const steps = Number(opt.steps), batch = Number(opt.batch);
if (!(steps >= 1) || !(batch >= 1)) {
  console.error('--steps and --batch take positive integers');
  process.exit(2);
}

const path = positionals[0];
const doze = await loadModel(readFileSync(path));
const ids = Array.from(doze.tokenize(opt.prompt, { bos: true }));
const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
const ctx = await model.createContext({ contextSize: ids.length + steps + 1, batchSize: batch, threads: 1,
  flashAttention: false, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' });
const session = doze.createSession();
try {
  const V = doze.info.vocabSize;
  let next = null;
  let k = 0;
  const rows = [];
  for await (const r of ctx.getSequence().evaluateWithMetadata(ids, { probabilities: true }, { temperature: 0 })) {
    const ref = new Float64Array(V);
    for (const [id, v] of r.probabilities) ref[id] = v;
    let logits;
    for (const id of next === null ? ids : [next]) ({ logits } = await session.step(id));
    const p = softmax(logits);
    let dp = 0;
    for (let i = 0; i < V; i++) dp = Math.max(dp, Math.abs(p[i] - ref[i]));
    rows.push(dp);
    console.log(`position ${ids.length - 1 + k}: max |dp| ${dp.toExponential(2)} (llama.cpp's greedy p ${ref[r.token].toFixed(3)})`);
    next = r.token;
    if (++k >= steps) break;
  }
  const sorted = [...rows].sort((a, b) => a - b);
  console.log(`${rows.length} positions: median ${sorted[sorted.length >> 1].toExponential(2)}, max ${sorted.at(-1).toExponential(2)}`);
} finally {
  session.dispose();
  doze.dispose();
  await ctx.dispose();
  await model.dispose();
  await llama.dispose();
}
