// Joint fine-tuning in the page: the model's weights (all of them, or
// low-rank adapters merged when written) learn together with its gates, the
// same run as `doze finetune MODEL TEXT --joint`. The loaded model is never
// changed: the trainer holds its own f32 copy of the weights, and the result
// is a new model file plus its gate file (bytes), so an aborted run leaves
// the caller exactly what it had.

import { DozeError, abortError } from './errors.js';
import { FINETUNE_OPTIONS, checkInit, gateRunParams, runSteps, trainDefaults } from './gates.js';
import { bool, checkOptions, func, int, invalid, num, oneOf, seedHalves } from './options.js';

const bytesOption = (v, where) => {
  if (!(v instanceof ArrayBuffer || ArrayBuffer.isView(v))) throw invalid(`${where} must be the bytes of the model's GGUF file`);
  // a buffer transferred away (to a worker, or to loadModel's) reads as 0 bytes
  if (v.byteLength === 0) throw invalid(`${where} is empty (a detached buffer? pass a copy to loadModel: source.slice(0))`);
  return v;
};

const budgetRange = (v, where) => {
  const ok = Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number' && Number.isFinite(x))
    && v[0] > 0 && v[0] <= v[1] && v[1] <= 1;
  if (!ok) throw invalid(`${where} must be [lo, hi] with 0 < lo <= hi <= 1`);
  return v;
};

const { onStep: _onStep, activate: _activate, ...GATE_OPTIONS } = FINETUNE_OPTIONS;

export const JOINT_OPTIONS = {
  ...GATE_OPTIONS,
  joint: bool,
  source: bytesOption,
  lora: int(1),
  loss: oneOf('kl', 'ce'),
  weightLr: num(0, Infinity, { loOpen: true }),
  weightClip: num(0),
  budgetRange,
  denseFraction: num(0, 1, { hiOpen: true }),
  weightLrMin: num(0),
  weightWarmup: int(0),
  noiseEnd: num(0, 1),
  weightAnchor: num(0),
  weightEma: num(0, 1, { hiOpen: true }),
  onProgress: func,
};

export function checkJointOptions(options) {
  const o = checkOptions('finetune', options, JOINT_OPTIONS);
  if (o.joint === false) throw invalid('finetune: joint: false is finetuneGates() (the weights frozen)');
  if (o.source == null) throw invalid("finetune: source (the bytes of the model's GGUF file) is required: the new model is written from it");
  if (o.denseFraction != null && o.budgetRange == null) throw invalid('finetune: denseFraction goes with budgetRange');
  if (o.weightAnchor > 0 && o.lora != null) throw invalid('finetune: weightAnchor pulls every weight towards the model\'s own; adapters (lora) start from 0 and have nothing to anchor');
  if (o.weightEma > 0 && o.lora != null) throw invalid('finetune: weightEma averages every weight over the steps; not with adapters (lora)');
  return o;
}

/** doze_train_default_params()'s joint fields, read from the wasm once per runtime. */
const jointDefaultsCache = new WeakMap();
function jointDefaults(rt) {
  let d = jointDefaultsCache.get(rt);
  if (d) return d;
  const p = rt.doze.malloc(8 * 8);
  try {
    rt.x.doze_wasm_joint_default_params(p);
    const v = new Float64Array(rt.x.memory.buffer, p, 7);
    d = Object.freeze({ loss: v[1] === 1 ? 'ce' : 'kl', weightLr: v[2], weightClip: v[3], denseFraction: v[4], noiseEnd: v[6] });
  } finally {
    rt.doze.free(p);
  }
  jointDefaultsCache.set(rt, d);
  return d;
}

/** Loads a GGUF already in wasm memory (ptr, n) as a second model, with FFN blocks of ffnBlock channels (0: chosen); returns its pointer. */
function loadFromHeap(rt, ptr, n, ffnBlock) {
  const ld = rt.x.doze_wasm_loader_new(0, 0, ffnBlock, rt.err);
  if (!ld) throw rt.error('finetune');
  try {
    rt.check(rt.x.doze_loader_feed(ld, ptr, n, rt.err), 'finetune');
    const m = rt.x.doze_wasm_loader_finish(ld, rt.err);
    if (!m) throw rt.error('finetune');
    return m;
  } finally {
    rt.x.doze_loader_free(ld);
  }
}

/**
 * Joint fine-tuning of `model` on `text` (see Model#finetune); returns
 * { model, gates } as GGUF bytes. `o` holds checked options; `track` /
 * `untrack` let the model free a run in flight at its dispose().
 */
export async function finetuneJoint(model, rt, text, o, track, untrack) {
  const d = trainDefaults(rt);
  const j = jointDefaults(rt);
  const p = {
    ...gateRunParams(o, d),
    loss: (o.loss ?? j.loss) === 'ce' ? 1 : 0,
    weightLr: o.weightLr ?? j.weightLr,
    weightClip: o.weightClip ?? j.weightClip,
    lora: o.lora ?? 0,
    range: o.budgetRange ?? [0, 0],
    denseFraction: o.denseFraction ?? j.denseFraction,
    weightLrMin: o.weightLrMin ?? 0,
    weightWarmup: o.weightWarmup ?? 0,
    noiseEnd: o.noiseEnd ?? j.noiseEnd,
    weightAnchor: o.weightAnchor ?? 0,
    weightEma: o.weightEma ?? 0,
  };
  const { init = null, onProgress, signal: sig, source } = o;
  checkInit(model, init, 'finetune');
  if (sig && sig.aborted) throw abortError('fine-tuning', sig);
  const [lo, hi] = seedHalves(o.seed ?? d.seed);
  let f = 0;
  let trained = 0;
  let file = 0;
  let written = 0;
  const run = {
    free: () => {
      if (f) rt.x.doze_finetune_free(f);
      if (trained) rt.x.doze_model_free(trained);
      if (file) rt.doze.free(file);
      if (written) rt.doze.free(written);
      f = trained = file = written = 0;
    },
  };
  try {
    track(run);
    const bytes = new TextEncoder().encode(text);
    const tp = rt.doze.writeBytes(bytes);
    try {
      f = rt.x.doze_wasm_finetune_new_joint(
        model._alive(), init ? init._ptr() : 0, p.budget, p.contextLength, p.batch, p.lr, p.weightDecay,
        p.computeWeight, p.tauStart, p.tauEnd, p.steps, lo >>> 0, hi >>> 0, 1, p.loss, p.weightLr, p.weightClip,
        p.lora, p.range[0], p.range[1], p.denseFraction, p.weightLrMin, p.weightWarmup, p.noiseEnd, p.weightAnchor,
        p.weightEma, tp, bytes.length, rt.err);
    } finally {
      rt.doze.free(tp);
    }
    if (!f) throw rt.error('finetune');
    // the file the new model is written from, checked before the steps: a
    // wrong or empty `source` (another model's file, a detached buffer)
    // fails now, not after the whole run
    file = rt.doze.writeBytes(source);
    rt.check(rt.x.doze_finetune_check_model(f, file, source.byteLength, rt.err), 'finetune');
    rt.doze.free(file);
    file = 0;
    await runSteps(model, rt, () => f, p, 'finetune', onProgress, sig);
    const out = rt.doze.malloc(8 * 8);
    try {
      // the new model file, from the original one with the trained weights
      file = rt.doze.writeBytes(source);
      rt.check(rt.x.doze_wasm_finetune_write_model(f, file, source.byteLength, out, rt.err), 'finetune');
      written = rt.doze.view.getUint32(out, true);
      const n = rt.doze.view.getUint32(out + 4, true);
      rt.doze.free(file);
      file = 0;
      // its gates, retuned on it (with the blocks the run's gates have)
      trained = loadFromHeap(rt, written, n, model.info.experts ? 0 : model.info.ffnBlock);
      const modelBytes = rt.doze.readBytes(written, n);
      rt.doze.free(written);
      written = 0;
      rt.check(rt.x.doze_wasm_finetune_finish_joint(f, trained, rt.err), 'finetune');
      const g = rt.x.doze_finetune_take_gates(f);
      if (!g) throw new DozeError('STATE', 'finetune: the run has no gates');
      try {
        rt.check(rt.x.doze_wasm_gates_save(g, out, rt.err), 'finetune');
      } finally {
        rt.x.doze_gates_free(g);
      }
      const gp = rt.doze.view.getUint32(out, true);
      const gn = rt.doze.view.getUint32(out + 4, true);
      const gatesBytes = rt.doze.readBytes(gp, gn);
      rt.doze.free(gp);
      return { model: modelBytes, gates: gatesBytes };
    } finally {
      rt.doze.free(out);
    }
  } finally {
    untrack(run);
    run.free();
  }
}
