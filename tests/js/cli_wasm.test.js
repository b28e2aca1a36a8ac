// The wasm build runs the same CLI as the native one: identical bytes out for
// init, generate (greedy and sampled, with every sampling option), tokenize
// and ppl on the suite's own seeded models; the same usage errors, help,
// version and file errors; and, with ../shared present, the llama2.c reference runs
// reproduced in wasm (pairs exact, logits within 1e-4 relative).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../js/src/index.js';
import { hasShared, nativeCli, readFloats, readPairs, root, run, scratch, shared, sharedSkip } from './helpers.js';

const dir = scratch();
const wasmPath = join(root, 'js', 'dist', 'doze.wasm');

test('the native CLI and the wasm module are built', () => {
  assert.ok(existsSync(nativeCli), `missing ${nativeCli}: run npm run build`);
  assert.ok(existsSync(wasmPath), `missing ${wasmPath}: run npm run build`);
});

const initArgs = ['init', '--dim', '64', '--hidden', '160', '--layers', '3', '--heads', '4',
  '--kv-heads', '2', '--vocab', '300', '--ctx', '128', '--seed', '7'];

for (const type of ['f32', 'f16', 'q8_0']) {
  test(`init (${type}) writes byte-identical files natively and in wasm`, () => {
    const a = join(dir, `n-${type}.gguf`), b = join(dir, `w-${type}.gguf`);
    assert.equal(run('native', [...initArgs, '--type', type, '-o', a]).status, 0);
    const w = run('wasm', [...initArgs, '--type', type, '-o', b]);
    assert.equal(w.status, 0, w.stderr);
    assert.ok(readFileSync(a).equals(readFileSync(b)));
  });

  test(`generate (${type}) prints the same text natively and in wasm, greedy and sampled`, () => {
    const model = join(dir, `n-${type}.gguf`);
    for (const extra of [['--temp', '0'], ['--temp', '0.9', '--top-p', '0.9', '--seed', '123'],
      ['--temp', '1.2', '--top-k', '20', '--seed', '5']]) {
      const args = ['generate', model, '--prompt', 'hello world', '--steps', '60', '--no-stop', ...extra];
      const n = run('native', args), w = run('wasm', args);
      assert.equal(n.status, 0, n.stderr);
      assert.equal(w.status, 0, w.stderr);
      assert.ok(n.stdout.length > 20, 'some text was generated');
      assert.ok(n.stdout.equals(w.stdout), `outputs differ for ${extra.join(' ')}`);
    }
  });
}

test('the sampling options (penalties, min-p, top-k, top-p) draw the same ids natively and in wasm', () => {
  const model = join(dir, 'n-f32.gguf');
  const base = ['generate', model, '--prompt', 'hello world', '--steps', '80', '--no-stop', '--temp', '1.3',
    '--seed', '11'];
  const penalty = ['--repeat-penalty', '1.8', '--repeat-last-n', '16'];
  // each option set, and the one it must differ from (this random model is
  // so sure of itself that min-p only matters once a penalty has worked)
  for (const [extra, without] of [
    [penalty, []],
    [['--frequency-penalty', '1.5', '--presence-penalty', '0.5', '--repeat-last-n', '-1'], []],
    [[...penalty, '--min-p', '0.3'], penalty],
    [[...penalty, '--top-k', '40', '--top-p', '0.9', '--min-p', '0.05', '--temp', '0.8'], penalty],
  ]) {
    const n = run('native', [...base, ...extra]), w = run('wasm', [...base, ...extra]);
    const ref = run('native', [...base, ...without]);
    assert.equal(n.status, 0, n.stderr);
    assert.equal(w.status, 0, w.stderr);
    assert.ok(n.stdout.equals(w.stdout), `outputs differ for ${extra.join(' ')}`);
    assert.ok(!n.stdout.equals(ref.stdout), `${extra.join(' ')} changes nothing`);
  }
});

test('usage errors, --help and --version are the same natively and in wasm', () => {
  const model = join(dir, 'n-f32.gguf');
  const pkg = JSON.parse(readFileSync(join(root, 'js', 'package.json'), 'utf8'));
  const cases = [
    [['--version'], 0, new RegExp(`^doze ${pkg.version.replace(/\./g, '\\.')}\n$`)],
    [['generate', '--help'], 0, /^usage: doze generate MODEL/],
    [['ppl', model, 'x.txt', '--budgte', '0.5'], 2, /unknown option --budgte \(did you mean --budget\?\)/],
    [['generate', model, '--steps'], 2, /--steps needs a value/],
    [['generate', model, '--top-p', '2'], 2, /top_p 2 must be in \[0, 1\]/],
    [['generate', join(dir, 'absent.gguf')], 1, /No such file or directory \(ENOENT\)/],
    [['generate', model, '--prompt', 'hello world '.repeat(40), '--steps', '32'], 1,
      /the prompt has \d+ tokens but the context holds 32/],
  ];
  for (const [args, status, pattern] of cases) {
    const n = run('native', args), w = run('wasm', args);
    assert.equal(n.status, status, `${args.join(' ')}: ${n.stderr}`);
    assert.equal(w.status, status, `${args.join(' ')} (wasm): ${w.stderr}`);
    assert.match(status === 0 ? n.stdout.toString() : n.stderr, pattern);
    assert.ok(n.stdout.equals(w.stdout), `${args.join(' ')}: stdout differs`);
    assert.equal(n.stderr, w.stderr, `${args.join(' ')}: stderr differs`);
  }
});

test('bench A B --json: one record per model, natively and in wasm', () => {
  const models = [join(dir, 'n-f32.gguf'), join(dir, 'n-q8_0.gguf')];
  for (const where of ['native', 'wasm']) {
    const r = run(where, ['bench', ...models, '--steps', '2', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const recs = r.stdout.toString().trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(recs.map((x) => x.type), ['f32', 'q8_0']);
    for (const x of recs) {
      for (const k of ['prompt_tok_s', 'decode_tok_s', 'gb_s', 'read_loop_gb_s', 'matvecs_tok_s'])
        assert.ok(Number.isFinite(x[k]) && x[k] > 0, `${where} ${x.type} ${k} = ${x[k]}`);
      assert.equal(x.dim, 64);
      assert.equal(x.layers, 3);
    }
    assert.equal(recs[0].vs_first, 1);
  }
});

test('order-ffn writes byte-identical models natively and in wasm; the model still runs', async () => {
  const model = join(dir, 'n-f32.gguf');
  const text = join(dir, 'order.txt');
  writeFileSync(text, 'the cat sat on the mat. a dog ran to the park and the cat ran after it. '.repeat(40));
  const a = join(dir, 'ordered-n.gguf'), b = join(dir, 'ordered-w.gguf');
  const n = run('native', ['order-ffn', model, '--calib', text, '--tokens', '400', '-o', a]);
  const w = run('wasm', ['order-ffn', model, '--calib', text, '--tokens', '400', '-o', b]);
  assert.equal(n.status, 0, n.stderr);
  assert.equal(w.status, 0, w.stderr);
  assert.ok(n.stdout.equals(w.stdout));
  assert.match(n.stdout.toString(), /layer  2: 0\.\d+ -> 0\.\d+/);
  assert.ok(readFileSync(a).equals(readFileSync(b)), 'ordered files differ');
  assert.ok(!readFileSync(a).equals(readFileSync(model)));
  const g = run('native', ['generate', a, '--prompt', 'hello', '--steps', '20', '--temp', '0']);
  assert.equal(g.status, 0, g.stderr);
  const m = await loadModel(readFileSync(a));
  try {
    assert.ok(m.info.ffnOrder > 0, 'info.ffnOrder names the order');
  } finally {
    m.dispose();
  }
  for (const where of ['native', 'wasm']) { // refused before the search, and no file is left behind
    const out = join(dir, `x-${where}.gguf`);
    const bad = run(where, ['order-ffn', join(dir, 'n-q8_0.gguf'), '--calib', text, '-o', out]);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr.toString(), /ffn_down\.weight is q8_0.*UNSUPPORTED_TYPE/);
    assert.ok(!existsSync(out), `${where} left ${out}`);
  }
});

test('tokenize and ppl print the same natively and in wasm', () => {
  const model = join(dir, 'n-f32.gguf');
  const text = join(dir, 'text.txt');
  writeFileSync(text, 'one story here.\n<|endoftext|>\nAnother, with ünïcödé and 😀 too.\n<|endoftext|>\n');
  for (const args of [['tokenize', model, '--text', 'héllo wörld 😀'], ['ppl', model, text]]) {
    const n = run('native', args), w = run('wasm', args);
    assert.equal(n.status, 0, n.stderr);
    assert.equal(w.status, 0, w.stderr);
    assert.ok(n.stdout.equals(w.stdout), `${args[0]} differs`);
  }
});

test('errors are reported the same way: exit code and message', () => {
  const bad = join(dir, 'bad.gguf');
  writeFileSync(bad, 'not a gguf file at all');
  const n = run('native', ['generate', bad]), w = run('wasm', ['generate', bad]);
  assert.equal(n.status, 1);
  assert.equal(w.status, 1);
  assert.match(n.stderr, /BAD_MAGIC/);
  assert.equal(n.stderr, w.stderr);
});

// An output that cannot be written is an error (exit 1, a message naming
// it) and no incomplete file is left: a full device, a run that fails after
// opening its outputs, a file size limit (natively SIGXFSZ is ignored so the
// write fails instead of killing the process). Numbers past an int and
// options that do nothing in the mode asked are usage errors.
test('failed writes: exit 1, the incomplete outputs deleted; out-of-range numbers refused', () => {
  const model = join(root, 'models', 'doze-stories.gguf');
  for (const which of ['native', 'wasm']) {
    const full = run(which, ['generate', model, '--prompt', 'Once', '--steps', '5', '--logits', '/dev/full']);
    assert.equal(full.status, 1, `${which}: ${full.stderr}`);
    assert.match(full.stderr, /cannot write \/dev\/full/);
    const trace = join(dir, `${which}-t.txt`), logits = join(dir, `${which}-l.bin`);
    // the prompt does not fit 3 positions: the run fails after opening both
    const early = run(which, ['generate', model, '--prompt', 'Once upon a time there was', '--steps', '3',
      '--trace', trace, '--logits', logits]);
    assert.equal(early.status, 1);
    assert.ok(!existsSync(trace) && !existsSync(logits), `${which}: the failed run left its outputs`);
    const limited = join(dir, `${which}-limited.bin`);
    const cmd = which === 'native' ? nativeCli : `${JSON.stringify(process.execPath)} ${JSON.stringify(join(root, 'js', 'cli.js'))}`;
    const r = spawnSync('sh', ['-c', `ulimit -f 100; ${cmd} generate ${model} --prompt Once --steps 200 --no-stop --logits ${limited} > /dev/null`],
      { encoding: 'utf8' });
    assert.equal(r.status, 1, `${which}: ${r.stderr}`);
    assert.match(r.stderr, /incomplete file is deleted/);
    assert.ok(!existsSync(limited), `${which}: the cut file was left`);
    for (const args of [['init', '-o', join(dir, 'x.gguf'), '--experts', '4294967297'],
      ['generate', model, '--steps', '2147483648'], ['generate', model, '--steps', ' 10'],
      ['generate', model, '--draft-k', '3'], ['generate', model, '--speculative', '--logits', logits],
      ['train', model, '-o', join(dir, 'y.gguf'), '--gates-lr', '0.1'],
      ['finetune', model, model, '--budget-range', '0.4:1x', '-o', join(dir, 'z.gguf')]]) {
      const u = run(which, args);
      assert.equal(u.status, 2, `${which} ${args.join(' ')}: ${u.stderr}`);
    }
  }
});

function compareRun(name, trace, logits, vocab) {
  const got = readPairs(trace), ref = readPairs(join(shared, 'models', `${name}.pairs`));
  assert.deepEqual(got, ref, `${name}: token pairs`);
  const a = readFloats(logits), r = readFloats(join(shared, 'models', `${name}.logits.f32`));
  assert.equal(a.length, r.length);
  assert.equal(a.length, ref.length * vocab);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const tol = 1e-4 * Math.max(1, Math.abs(r[i]));
    worst = Math.max(worst, Math.abs(a[i] - r[i]) / tol);
  }
  assert.ok(worst <= 1, `${name}: worst logit error ${worst} x tolerance`);
  console.log(`# wasm ${name}: ${ref.length} steps identical, worst logit error ${worst.toFixed(4)} of tolerance`);
}

test('wasm reproduces the llama2.c reference runs of stories260K (F32)', { skip: sharedSkip }, () => {
  const model = join(dir, 'stories260K.gguf');
  const c = run('wasm', ['convert', 'llama2c', join(shared, 'models', 'stories260K.bin'),
    join(shared, 'models', 'tok512.bin'), '-o', model]);
  assert.equal(c.status, 0, c.stderr);
  const runs = [
    ['stories260K.greedy', ['--steps', '200']],
    ['stories260K.prompt', ['--steps', '120', '--prompt', 'One day, a dog']],
    ['stories260K.long', ['--steps', '512', '--prompt', 'Once upon a time', '--no-stop']],
  ];
  for (const [name, args] of runs) {
    const trace = join(dir, `${name}.pairs`), logits = join(dir, `${name}.logits`);
    const g = run('wasm', ['generate', model, '--temp', '0', ...args, '--trace', trace, '--logits', logits]);
    assert.equal(g.status, 0, g.stderr);
    compareRun(name, trace, logits, 512);
  }
});

test('wasm reproduces the llama-2-tiny-random.gguf reference run', { skip: sharedSkip }, () => {
  const trace = join(dir, 'tiny.pairs'), logits = join(dir, 'tiny.logits');
  const g = run('wasm', ['generate', join(shared, 'models', 'llama-2-tiny-random.gguf'), '--temp', '0',
    '--steps', '24', '--prompt', 'Hello world', '--no-stop', '--trace', trace, '--logits', logits]);
  assert.equal(g.status, 0, g.stderr);
  compareRun('llama-2-tiny-random', trace, logits, 32000);
});

test('wasm ppl of stories260K on tinystories-dev is 4.2413', { skip: sharedSkip }, () => {
  const model = join(dir, 'stories260K.gguf');
  if (!existsSync(model)) return;
  const p = run('wasm', ['ppl', model, join(shared, 'text', 'tinystories-dev.txt')]);
  assert.equal(p.status, 0, p.stderr);
  const m = /^ppl ([\d.]+) tokens (\d+)/.exec(p.stdout.toString());
  assert.ok(m, p.stdout.toString());
  console.log(`# wasm ${p.stdout.toString().trim()}`);
  assert.ok(Math.abs(Number(m[1]) - 4.2413) <= 4.2413e-3);
  assert.equal(Number(m[2]), 48657);
});

void hasShared;
