// Forced-mask steps through the JS API on a given doze.wasm: prints one line
// per step (position, compute, sha256 of the logits' bytes) so that two
// builds can be compared byte for byte (run.sh).
//   node forced.mjs MODEL.gguf WASM [STEPS]
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { loadModel } from '../../js/src/index.js';

const [modelPath, wasmPath, stepsArg] = process.argv.slice(2);
const steps = Number(stepsArg || 48);
const model = await loadModel(resolve(modelPath), { wasm: resolve(wasmPath) });
const { layers: L, heads: H } = model.info;
const NB = model.info.ffnBlocks;
const session = model.createSession();
let seed = 12345;
const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
let token = model.info.bosId >= 0 ? model.info.bosId : 1;
for (let i = 0; i < steps; i++) {
  const dense = i % 4 === 0;
  const layers = Array.from({ length: L }, (_, l) => (dense || l === 0 || rand() < 0.7 ? 1 : 0));
  const heads = Array.from({ length: L * H }, () => (dense || rand() < 0.6 ? 1 : 0));
  const ffn = Array.from({ length: L * NB }, () => (dense || rand() < 0.6 ? 1 : 0));
  const r = await session.step(token, { layers, heads, ffn });
  const h = createHash('sha256').update(new Uint8Array(r.logits.buffer, r.logits.byteOffset, r.logits.byteLength));
  console.log(`${r.position} ${r.compute.toFixed(6)} ${h.digest('hex').slice(0, 16)}`);
  let best = 0;
  for (let v = 1; v < r.logits.length; v++) if (r.logits[v] > r.logits[best]) best = v;
  token = best;
}
model.dispose();
