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
import { llamaRun, wasmRun } from '../tests/js/oracle.js';

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
const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
try {
  const ids = Array.from(doze.tokenize(opt.prompt, { bos: true }));
  const ref = await llamaRun(llama, path, ids, { steps, batch });
  const ps = await wasmRun(doze, ids, ref.map((r) => r.id), ref.length);
  const rows = ps.map((p, k) => {
    let dp = 0;
    for (let i = 0; i < p.length; i++) dp = Math.max(dp, Math.abs(p[i] - ref[k].p[i]));
    console.log(`position ${ids.length - 1 + k}: max |dp| ${dp.toExponential(2)} (llama.cpp's greedy p ${ref[k].p[ref[k].id].toFixed(3)})`);
    return dp;
  });
  const sorted = [...rows].sort((a, b) => a - b);
  console.log(`${rows.length} positions: median ${sorted[sorted.length >> 1].toExponential(2)}, max ${sorted.at(-1).toExponential(2)}`);
} finally {
  doze.dispose();
  await llama.dispose();
}
