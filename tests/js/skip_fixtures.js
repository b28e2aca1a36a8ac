// Fixtures for the skipping tests (tests/js/skip_*.test.js): a seeded init
// model whose layers dominate the compute, stories260K where ../shared
// exists, calibration text, and gate files made by the native CLI.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hasShared, readPairs, run, scratch, shared } from './helpers.js';
import { storiesModel } from './package_fixtures.js';

export const SKIP_INIT_ARGS = ['--dim', '128', '--hidden', '344', '--layers', '6', '--heads', '4',
  '--kv-heads', '4', '--vocab', '300', '--ctx', '512', '--seed', '3'];

export const dir = scratch();

function cli(args) {
  const r = run('native', args);
  if (r.status !== 0) throw new Error(`doze ${args[0]} failed: ${r.stderr}`);
  return r;
}

/** The init model of the skipping tests (another seed: the same shape, other weights). */
export function skipInitModel(seed = 3) {
  const out = join(dir, `skip-init-${seed}.gguf`);
  const args = [...SKIP_INIT_ARGS];
  args[args.indexOf('--seed') + 1] = String(seed);
  cli(['init', ...args, '-o', out]);
  return out;
}

export { storiesModel, hasShared };

/** Calibration text: TinyStories where present, else a fixed paragraph. */
export function calibText() {
  if (hasShared) return readFileSync(join(shared, 'text', 'tinystories-train.txt'), 'utf8').slice(0, 6000);
  const s = 'Once upon a time, there was a little cat named Tom. He liked to play in the sun with his ball. ' +
    'One day he saw a big dog. The dog said hello and they became friends. They played all day and were happy. ';
  return s.repeat(12);
}

/** `doze gates MODEL [--calib FILE] -o F`: the path of the gate file. */
export function cliGates(model, { calib = null, name = 'gates' } = {}) {
  const out = join(dir, `${name}.gguf`);
  const args = ['gates', model, '-o', out];
  if (calib != null) {
    const file = join(dir, `${name}.calib.txt`);
    writeFileSync(file, calib);
    args.push('--calib', file);
  }
  cli(args);
  return out;
}

/**
 * `doze generate MODEL --prompt P --steps N ... --trace T --masks M`: the
 * token pairs, the mask lines {pos, token, compute, layers, heads} and stdout.
 */
export function cliGenerateMasked(model, prompt, steps, extra = []) {
  const trace = join(dir, 'trace.pairs');
  const masks = join(dir, 'masks.txt');
  const r = cli(['generate', model, '--prompt', prompt, '--steps', String(steps), '--trace', trace,
    '--masks', masks, ...extra]);
  const lines = readFileSync(masks, 'utf8').trim().split('\n').map((l) => {
    const [pos, token, compute, layers, heads, ffn, experts] = l.split(' ');
    return { pos: Number(pos), token: Number(token), compute: Number(compute), layers, heads, ffn, experts };
  });
  return { pairs: readPairs(trace), masks: lines, stdout: r.stdout.toString() };
}

/** A mask in the CLI's --masks notation: "101100 1111/----/1111/... 0110/----/1111/..." (FFN blocks: ffnBlocks per layer; experts: that many per layer, a mixture's). */
export function maskString(mask, layers, heads, ffnBlocks = 0, experts = 0) {
  let l = '';
  const h = [];
  const f = [];
  const x = [];
  for (let i = 0; i < layers; i++) {
    l += mask.layers[i] ? '1' : '0';
    let row = '';
    for (let j = 0; j < heads; j++) row += mask.layers[i] ? (mask.heads[i * heads + j] ? '1' : '0') : '-';
    h.push(row);
    let frow = '';
    for (let j = 0; j < ffnBlocks; j++) frow += mask.layers[i] ? (mask.ffn[i * ffnBlocks + j] ? '1' : '0') : '-';
    f.push(frow);
    let xrow = '';
    for (let j = 0; j < experts; j++) xrow += mask.layers[i] ? (mask.experts[i * experts + j] ? '1' : '0') : '-';
    x.push(xrow);
  }
  return { layers: l, heads: h.join('/'), ffn: f.join('/'), experts: x.join('/') };
}

export async function collect(gen) {
  const tokens = [];
  let text = '';
  for await (const t of gen) {
    if (t.id >= 0) tokens.push(t);
    text += t.text;
  }
  return { tokens, ids: tokens.map((t) => t.id), text };
}

export const mean = (a) => a.reduce((s, x) => s + x, 0) / a.length;
