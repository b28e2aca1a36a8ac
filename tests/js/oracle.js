// llama.cpp (node-llama-cpp) as the oracle: the runs both oracle tests
// compare (the dense architectures and the mixtures of experts). Every run
// covers STEPS greedy positions from the prompt's last token on.
import assert from 'node:assert/strict';
import { join } from 'node:path';

import { readFloats, run } from './helpers.js';

export const STEPS = 48;
export const PROMPT = 'the cat sat on the mat';

/** p = softmax(logits), in double. */
export function softmax(logits) {
  let m = -Infinity;
  for (const v of logits) m = Math.max(m, v);
  const p = new Float64Array(logits.length);
  let s = 0;
  for (let i = 0; i < logits.length; i++) s += (p[i] = Math.exp(logits[i] - m));
  for (let i = 0; i < p.length; i++) p[i] /= s;
  return p;
}

export const argmax = (p) => p.reduce((b, v, i) => (v > p[b] ? i : b), 0);

/**
 * llama.cpp: the prompt ids, then `steps` greedy tokens and their full
 * distributions (`vocab` values each: by default the size of the
 * distribution llama.cpp returns); `batch` is its batch size.
 */
export async function llamaRun(llama, path, promptIds,
  { steps = STEPS, batch = Number(process.env.DOZE_ORACLE_BATCH ?? 128), vocab = null } = {}) {
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  // F32 KV cache and no flash attention: llama.cpp's defaults round keys and
  // values to F16, which would be llama.cpp's error, not Doze's.
  // DOZE_ORACLE_BATCH=1 feeds the prompt one token at a time (llama.cpp's
  // batched products take other kernels: docs/exactness.md).
  const ctx = await model.createContext({
    contextSize: Math.max(128, promptIds.length + steps + 1), batchSize: batch, threads: 1, flashAttention: false,
    experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32',
  });
  try {
    const seq = ctx.getSequence();
    const out = [];
    // The vocabulary's size is that of the distribution llama.cpp returns
    // (every token). node-llama-cpp's model.tokens has no vocabSize: the
    // fallback of 512 fitted only the tests' 512-token models, and cut any
    // larger vocabulary's distribution (ids >= 512 dropped: NaN in compare,
    // a TypeError in scripts/oracle-steps.mjs).
    let V = vocab;
    for await (const r of seq.evaluateWithMetadata([...promptIds], { probabilities: true }, { temperature: 0 })) {
      if (V == null) for (const id of r.probabilities.keys()) V = Math.max(V ?? 0, id + 1);
      const p = new Float64Array(V);
      for (const [id, v] of r.probabilities) {
        if (!(id < V)) throw new Error(`llama.cpp gave token ${id}, past the vocabulary of ${V}`);
        p[id] = v;
      }
      out.push({ id: r.token, p });
      if (out.length >= steps) break;
    }
    return out;
  } finally {
    await ctx.dispose();
    await model.dispose();
  }
}

/**
 * Doze natively: the CLI fed the prompt and llama.cpp's greedy ids
 * (--prompt-ids), token by token; the distributions of the STEPS positions
 * from the prompt's last token on.
 */
export function nativeRun(path, dir, promptIds, followIds) {
  const logits = join(dir, 'logits.f32');
  const ids = [...promptIds, ...followIds.slice(0, STEPS - 1)];
  const r = run('native', ['generate', path, '--prompt-ids', ids.join(' '), '--steps', String(ids.length),
    '--temp', '0', '--no-stop', '--logits', logits]);
  assert.equal(r.status, 0, r.stderr);
  const all = readFloats(logits);
  const V = all.length / ids.length;
  const out = [];
  for (let k = 0; k < STEPS; k++) out.push(softmax(all.subarray((promptIds.length - 1 + k) * V, (promptIds.length + k) * V)));
  return out;
}

/** Doze in wasm: the package's session, step by step over the same ids. */
export async function wasmRun(model, promptIds, followIds, steps = STEPS) {
  const s = model.createSession();
  try {
    const out = [];
    const ids = [...promptIds, ...followIds];
    for (let i = 0; i < promptIds.length - 1 + steps; i++) {
      const { logits } = await s.step(ids[i]);
      if (i >= promptIds.length - 1) out.push(softmax(logits));
    }
    return out;
  } finally {
    s.dispose();
  }
}

/**
 * max |dp| over the vocabulary and steps; the steps whose greedy id differs
 * from llama.cpp's (`flips`), and of those the ones that are not near ties
 * (llama.cpp's own probabilities of the two ids further apart than `tol`).
 */
export function compare(ref, ps, tol) {
  let maxDp = 0;
  let flips = 0;
  const bad = [];
  for (let t = 0; t < ref.length; t++) {
    const p = ps[t];
    // distributions of different lengths would compare as NaN, not fail
    if (p.length !== ref[t].p.length) throw new Error(`step ${t}: ${p.length} probabilities against llama.cpp's ${ref[t].p.length}`);
    const a = argmax(p);
    if (a !== ref[t].id) {
      flips++;
      const gap = ref[t].p[ref[t].id] - ref[t].p[a];
      if (gap > tol) bad.push(`step ${t}: doze ${a}, llama.cpp ${ref[t].id} (gap ${gap.toExponential(2)})`);
    }
    for (let i = 0; i < p.length; i++) maxDp = Math.max(maxDp, Math.abs(p[i] - ref[t].p[i]));
  }
  return { maxDp, flips, bad };
}
