// llama.cpp itself (node-llama-cpp, CPU build) as the oracle for every
// architecture x weight type: a seeded random model written by `doze init`
// is read by both runtimes; from the same prompt ids, 48 greedy steps must
// give the same ids, and the next-token distributions must agree:
// max |dp| <= 1e-4 for F32/F16/BF16, and for the quantized types within the
// figure measured (docs/exactness.md) with a margin. Doze runs natively (the
// CLI's --trace/--logits) and in wasm (the package's Session#step).
//
// node-llama-cpp is a required dev dependency: this file imports it
// statically, so without it the suite fails rather than skips.
//
// DOZE_ORACLE_TABLE=1 prints the markdown table of docs/exactness.md;
// DOZE_ORACLE_ARCH=qwen3 runs the architectures whose name starts so.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { getLlama } from 'node-llama-cpp';

import { loadModel } from '../../js/src/index.js';
import { run, scratch } from './helpers.js';
import { PROMPT, STEPS, compare, llamaRun, nativeRun, wasmRun } from './oracle.js';

const COMMON = ['--hidden', '512', '--layers', '2', '--vocab', '512', '--ctx', '128', '--seed', '11'];

// Row lengths (dim 256, hidden 512, heads x head size 256..768) are whole
// 256-blocks so that the K-quant types are used for every matrix. The
// embedding and classifier ranges (--embd-scale) give soft distributions
// (greedy p mostly 0.1-0.5): a one-hot distribution would hide any error.
// A tied random classifier favours the token just seen, so the tied model
// repeats a token or two; the untied ones wander over the vocabulary.
const ARCHS = [
  { name: 'llama (MHA, tied)', args: ['--arch', 'llama', '--dim', '256', '--heads', '4', '--embd-scale', '0.1'] },
  { name: 'llama3 (rope_freqs, GQA 8/2, untied)',
    args: ['--arch', 'llama3', '--dim', '256', '--heads', '8', '--kv-heads', '2', '--untied', '--embd-scale', '0.4'] },
  { name: 'qwen2 (QKV biases, GQA 4/2, untied)',
    args: ['--arch', 'qwen2', '--dim', '256', '--heads', '4', '--kv-heads', '2', '--untied', '--embd-scale', '0.4'] },
  { name: 'qwen3 (q/k norms, head 128 != 256/6, GQA 6/3, untied)',
    args: ['--arch', 'qwen3', '--dim', '256', '--heads', '6', '--kv-heads', '3', '--head-dim', '128', '--untied',
      '--embd-scale', '0.4'] },
];

// One row per weight type: `doze init --type` name and the largest max |dp|
// accepted: 1e-4 for F32 (the bound; measured ~1e-6); for the others
// about 3x the worst figure measured over the architectures above (natively
// and in wasm: the same bits). Both runtimes read the same weight bytes and
// round the activations of F16 / BF16 products to F16 / BF16; what is left
// there is the order of the float sums, which a rounding downstream can
// amplify to a 16-bit step. The quantized types differ in how activations
// are quantized: per 256 (Q8_K) for ggml's K-quants, per 32 (Q8_0) in Doze.
// docs/exactness.md has the table and the evidence. Adding a type is one
// line here.
const TYPES = [
  { type: 'f32', maxDp: 1e-4 },
  { type: 'f16', maxDp: 1.5e-3 },
  { type: 'bf16', maxDp: 1.2e-2 },
  { type: 'q8_0', maxDp: 2.5e-2 },
  { type: 'q4_0', maxDp: 2e-2 },
  { type: 'q4_1', maxDp: 0.07 },
  { type: 'q5_0', maxDp: 0.05 },
  { type: 'q5_1', maxDp: 0.09 },
  { type: 'iq4_nl', maxDp: 0.05 },
  { type: 'q4_k', maxDp: 0.1 },
  { type: 'q5_k', maxDp: 0.12 },
  { type: 'q6_k', maxDp: 0.12 },
  { type: 'q4_k_m', maxDp: 0.12 },
  { type: 'q2_k', maxDp: 0.1 },
  { type: 'q3_k', maxDp: 0.1 },
  { type: 'iq4_xs', maxDp: 0.1 },
];

test('llama.cpp oracle: every architecture x type, 48 greedy steps, natively and in wasm', { timeout: 600_000 },
  async (t) => {
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
    const dir = scratch();
    const rows = [];
    const failures = [];
    try {
      for (const [ai, arch] of ARCHS.entries()) {
        if (process.env.DOZE_ORACLE_ARCH && !arch.name.startsWith(process.env.DOZE_ORACLE_ARCH)) continue;
        // the F32 model, to put each type's gap beside its quantization error
        const f32Path = join(dir, `a${ai}-f32-ref.gguf`);
        const initF32 = run('native', ['init', '-o', f32Path, ...COMMON, ...arch.args, '--type', 'f32']);
        assert.equal(initF32.status, 0, initF32.stderr);
        const f32Model = await loadModel(readFileSync(f32Path));
        try {
          for (const { type, maxDp } of TYPES) {
            if (process.env.DOZE_ORACLE_TYPES && !process.env.DOZE_ORACLE_TYPES.split(',').includes(type)) continue;
            const path = join(dir, `a${ai}-${type}.gguf`);
            const init = run('native', ['init', '-o', path, ...COMMON, ...arch.args, '--type', type]);
            assert.equal(init.status, 0, init.stderr);

            const model = await loadModel(readFileSync(path));
            let ref, natPs, wasmPs, f32Ps;
            try {
              // q4_k_m keeps attn_q at q4_k (llama.cpp's mix)
              assert.equal(model.info.weightType, type === 'q4_k_m' ? 'q4_k' : type);
              // the prompt as Doze tokenizes it (BOS first); llama.cpp gets the same ids
              const promptIds = Array.from(model.tokenize(PROMPT, { bos: true }));
              ref = await llamaRun(llama, path, promptIds);
              assert.equal(ref.length, STEPS);
              natPs = nativeRun(path, dir, promptIds, ref.map((r) => r.id));
              wasmPs = await wasmRun(model, promptIds, ref.map((r) => r.id));
              f32Ps = await wasmRun(f32Model, promptIds, ref.map((r) => r.id));
            } finally {
              model.dispose();
            }
            const cn = compare(ref, natPs, maxDp);
            const cw = compare(ref, wasmPs, maxDp);
            rows.push({ arch: arch.name, type, native: cn.maxDp, wasm: cw.maxDp, flips: cn.flips, flipsW: cw.flips,
              quant: compare(ref, f32Ps, 1).maxDp, maxP: Math.max(...ref.map((r) => r.p[r.id])) });
            const tag = `${arch.name} ${type}`;
            // the same logits bit for bit natively and in wasm
            let nw = 0;
            for (let k = 0; k < STEPS; k++) for (let i = 0; i < natPs[k].length; i++) nw = Math.max(nw, Math.abs(natPs[k][i] - wasmPs[k][i]));
            if (nw !== 0) failures.push(`${tag}: native and wasm differ (${nw})`);
            for (const b of cn.bad) failures.push(`${tag}: native greedy id differs at ${b}`);
            for (const b of cw.bad) failures.push(`${tag}: wasm greedy id differs at ${b}`);
            if (!(cn.maxDp <= maxDp)) failures.push(`${tag}: native max|dp| ${cn.maxDp.toExponential(2)} > ${maxDp}`);
            if (!(cw.maxDp <= maxDp)) failures.push(`${tag}: wasm max|dp| ${cw.maxDp.toExponential(2)} > ${maxDp}`);
          }
        } finally {
          f32Model.dispose();
        }
      }
    } finally {
      await llama.dispose();
    }
    const fmt = (x) => x.toExponential(1);
    const table = ['| architecture | type | max \\|Δp\\| native | max \\|Δp\\| wasm | near-tie flips | vs Doze on the F32 model | largest greedy p |',
      '| --- | --- | --- | --- | --- | --- | --- |',
      ...rows.map((r) => `| ${r.arch} | ${r.type} | ${fmt(r.native)} | ${fmt(r.wasm)} | ${r.flips} | ${fmt(r.quant)} | ${r.maxP.toFixed(3)} |`)];
    if (process.env.DOZE_ORACLE_TABLE) console.log(table.join('\n'));
    for (const r of rows) t.diagnostic(`${r.arch} ${r.type}: max|dp| native ${fmt(r.native)} wasm ${fmt(r.wasm)}; near-tie flips ${r.flips}/${r.flipsW}; F32 model ${fmt(r.quant)}; top p ${r.maxP.toFixed(3)}`);
    assert.deepEqual(failures, []);
  });

// The oracle itself on a vocabulary larger than the models above (hub models
// have 49k-152k tokens): llamaRun's distributions are the whole vocabulary's.
// It sized them 512 (node-llama-cpp has no model.tokens.vocabSize), so ids
// past 512 were dropped and compare() gave NaN (scripts/oracle-steps.mjs, which
// docs/exactness.md has users run on their models, threw).
test('llama.cpp oracle: a 1,000-token vocabulary is compared whole', { timeout: 120_000 }, async () => {
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
  const dir = scratch();
  try {
    const path = join(dir, 'v1000.gguf');
    const init = run('native', ['init', '-o', path, '--dim', '64', '--hidden', '128', '--layers', '1', '--heads', '2',
      '--vocab', '1000', '--ctx', '64', '--seed', '5', '--embd-scale', '0.4', '--untied', '--type', 'f32']);
    assert.equal(init.status, 0, init.stderr);
    const model = await loadModel(readFileSync(path));
    try {
      const promptIds = Array.from(model.tokenize(PROMPT, { bos: true }));
      const ref = await llamaRun(llama, path, promptIds, { steps: 6 });
      assert.equal(ref[0].p.length, 1000);
      const ps = await wasmRun(model, promptIds, ref.map((r) => r.id), 6);
      const c = compare(ref, ps, 1e-4);
      assert.ok(c.maxDp <= 1e-4, `max |dp| ${c.maxDp}`);
      assert.deepEqual(c.bad, []);
    } finally {
      model.dispose();
    }
  } finally {
    await llama.dispose();
  }
});
