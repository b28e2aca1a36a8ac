// The ffnBlock load option (CLI --ffn-block): the size of the FFN blocks the
// router keeps or skips. Coarser blocks are the finer ones taken together:
// skipping a 64-channel block is skipping its two 32-channel halves; sizes
// the model's quant blocks cannot cut, and mixtures, are refused; gate files
// are bound to the size they were made with.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadModel, DozeError } from '../../js/src/index.js';
import * as worker from '../../js/src/worker.js';
import { readFileSync } from 'node:fs';
import { run, scratch } from './helpers.js';
import { calibText } from './skip_fixtures.js';

const dir = scratch();

function init(name, args) {
  const out = join(dir, `${name}.gguf`);
  const r = run('native', ['init', ...args, '-o', out]);
  assert.equal(r.status, 0, r.stderr);
  return out;
}

// hidden 192: 6 blocks of 32, 3 of 64, one of 192 (a whole FFN)
const q8 = init('fb-q8_0', ['--dim', '64', '--hidden', '192', '--layers', '2', '--heads', '4', '--kv-heads', '2',
  '--vocab', '300', '--ctx', '64', '--seed', '5', '--type', 'q8_0']);
const kq = init('fb-q4_k', ['--dim', '256', '--hidden', '512', '--layers', '1', '--heads', '4', '--kv-heads', '2',
  '--vocab', '300', '--ctx', '64', '--seed', '5', '--type', 'q4_k']);

const TOKENS = [1, 17, 42, 99, 250, 3, 8];

/** Logits after each token of TOKENS, every step under mask(position). */
async function stepAll(m, mask) {
  const s = m.createSession();
  const out = [];
  for (let i = 0; i < TOKENS.length; i++) out.push((await s.step(TOKENS[i], mask ? mask(i) : undefined)).logits);
  return out;
}

function maxRelDiff(a, b) {
  let d = 0;
  let scale = 1e-9;
  for (let i = 0; i < a.length; i++)
    for (let j = 0; j < a[i].length; j++) {
      d = Math.max(d, Math.abs(a[i][j] - b[i][j]));
      scale = Math.max(scale, Math.abs(a[i][j]));
    }
  return d / scale;
}

test('ffnBlock: the blocks have that size, and a coarse block skips what its fine halves skip', async () => {
  const m32 = await loadModel(q8);
  const m64 = await loadModel(q8, { ffnBlock: 64 });
  try {
    assert.equal(m32.info.ffnBlock, 32);
    assert.equal(m32.info.ffnBlocks, 6);
    assert.equal(m64.info.ffnBlock, 64);
    assert.equal(m64.info.ffnBlocks, 3);
    // dense: the same function (the blocks' partial sums only regroup)
    const dense32 = await stepAll(m32);
    const dense64 = await stepAll(m64);
    assert.ok(maxRelDiff(dense32, dense64) < 1e-5, `dense ${maxRelDiff(dense32, dense64)}`);
    // skip 64-block 1 of layer 0 and 64-block 2 of layer 1 == 32-blocks 2, 3 and 4, 5
    const ffn64 = [[1, 0, 1], [1, 1, 0]];
    const ffn32 = [[1, 1, 0, 0, 1, 1], [1, 1, 1, 1, 0, 0]];
    const skip32 = await stepAll(m32, () => ({ ffn: ffn32 }));
    const skip64 = await stepAll(m64, () => ({ ffn: ffn64 }));
    assert.ok(maxRelDiff(skip32, skip64) < 1e-5, `skipped ${maxRelDiff(skip32, skip64)}`);
    // and skipping changed the output (the masks did something)
    assert.ok(maxRelDiff(dense64, skip64) > 1e-3, `skipping two blocks changed nothing: ${maxRelDiff(dense64, skip64)}`);
    // the whole FFN as one block: skipping it is skipping every block
    const m192 = await loadModel(q8, { ffnBlock: 192 });
    try {
      assert.equal(m192.info.ffnBlocks, 1);
      const none192 = await stepAll(m192, () => ({ ffn: [[0], [0]] }));
      const none32 = await stepAll(m32, () => ({ ffn: [[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]] }));
      assert.ok(maxRelDiff(none32, none192) < 1e-6);
    } finally {
      m192.dispose();
    }
    // gate files are bound to the block size
    await m32.calibrateGates({ text: calibText() });
    const bytes = m32.saveGates();
    assert.throws(() => m64.loadGates(bytes), (e) => e instanceof DozeError && /ffn_block/.test(e.message));
  } finally {
    m32.dispose();
    m64.dispose();
  }
});

test('ffnBlock: sizes the model cannot cut are INVALID_ARGUMENT errors that name the rule', async () => {
  const bad = async (file, ffnBlock, re) => {
    await assert.rejects(loadModel(file, { ffnBlock }), (e) => e instanceof DozeError && e.code === 'INVALID_ARGUMENT'
      && re.test(e.message), `ffnBlock ${ffnBlock}`);
  };
  await bad(q8, 48, /multiples of 32/); // a q8_0 ffn_down splits at whole 32-value blocks
  await bad(q8, 8, /ffnBlock/); // below 16
  await bad(q8, 512, /ffnBlock/); // above 256
  await bad(q8, 32.5, /ffnBlock/);
  await bad(kq, 128, /256 channels/); // K-quants: whole 256-value super-blocks only
  const k = await loadModel(kq, { ffnBlock: 256 });
  assert.equal(k.info.ffnBlock, 256);
  k.dispose();
});

test('the chosen size: blocks of 32 doubled while the ffn_gate rows of a block are under 64 KB and 12 blocks remain', async () => {
  // SmolLM2-135M's FFN (dim 576, hidden 1536), one layer: the rule reads dim, hidden and the types only
  const shape = ['--dim', '576', '--hidden', '1536', '--layers', '1', '--heads', '9', '--kv-heads', '3',
    '--vocab', '64', '--ctx', '32', '--seed', '1'];
  const cases = [
    // q8_0 rows of 576 are 612 bytes: 32 -> 19.6 KB, 64 -> 39 KB, 128 -> 78 KB
    ['q8_0', 128],
    // q4_0 rows are 324 bytes: 128 -> 41 KB, but 256 would leave 6 blocks
    ['q4_0', 128],
    // f32 rows are 2,304 bytes: 32 -> 74 KB already
    ['f32', 32],
  ];
  for (const [type, want] of cases) {
    const m = await loadModel(init(`fb-smol-${type}`, [...shape, '--type', type]));
    try {
      assert.equal(m.info.ffnBlock, want, type);
      assert.equal(m.info.ffnBlocks, 1536 / want, type);
    } finally {
      m.dispose();
    }
  }
  // a small FFN keeps 32 (hidden 192: 64 would leave 3 blocks)
  const small = await loadModel(q8);
  assert.equal(small.info.ffnBlock, 32);
  small.dispose();
});

test('ffnBlock through doze-lm/worker: the model there has that size and steps as on the main thread', async () => {
  const d = await loadModel(q8, { ffnBlock: 64 });
  const w = await worker.loadModel(q8, { ffnBlock: 64 });
  try {
    assert.equal(w.info.ffnBlock, 64);
    assert.equal(w.info.ffnBlocks, 3);
    const mask = { ffn: [[0, 1, 1], [1, 0, 1]] };
    const sd = d.createSession();
    const sw = await w.createSession();
    for (const t of TOKENS.slice(0, 3)) assert.deepEqual((await sw.step(t, mask)).logits, (await sd.step(t, mask)).logits);
    await assert.rejects(worker.loadModel(q8, { ffnBlock: 48 }), (e) => e.code === 'INVALID_ARGUMENT');
  } finally {
    d.dispose();
    await w.dispose();
  }
});

test('doze --ffn-block: the CLI takes the same sizes and refuses the same ones', () => {
  const masks = join(dir, 'fb-masks.txt');
  const ok = run('native', ['generate', q8, '--ffn-block', '64', '--budget', '0.5', '--steps', '8', '--seed', '1',
    '--no-stop', '--masks', masks]);
  assert.equal(ok.status, 0, ok.stderr);
  // 'pos token compute layers heads/... ffn/...': 3 FFN blocks per layer at 64 channels, some skipped
  const rows = readFileSync(masks, 'utf8').trim().split('\n').map((l) => l.split(' '));
  assert.equal(rows.length, 8);
  for (const r of rows) for (const layer of r[5].split('/')) assert.match(layer, /^[01-]{3}$/, r.join(' '));
  assert.ok(rows.some((r) => r[5].includes('0')), 'b = 0.5 skipped no FFN block');
  const wrong = run('native', ['generate', q8, '--ffn-block', '48', '--steps', '2']);
  assert.equal(wrong.status, 1);
  assert.match(wrong.stderr, /ffn_block 48: this model's FFN blocks are multiples of 32 channels/);
  const range = run('native', ['bench', q8, '--ffn-block', '8']);
  assert.equal(range.status, 2);
  assert.match(range.stderr, /--ffn-block must be in 16\.\.256/);
});
