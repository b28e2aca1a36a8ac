// `doze bench` prints every figure as the median (min-max) of interleaved
// rounds and marks a figure whose rounds spread more than 2x UNRELIABLE.
// These tests check the form and the marker against the printed numbers
// (not the timings themselves), natively and in wasm.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from './helpers.js';
import { initModel } from './package_fixtures.js';

const FIG = /(\d+\.\d+) \((\d+\.\d+)-(\d+\.\d+)\)( UNRELIABLE)?/g;

function checkFigure([, med, lo, hi, flag], where) {
  const [m, a, b] = [med, lo, hi].map(Number);
  assert.ok(a <= m && m <= b, `${where}: ${med} not within ${lo}-${hi}`);
  // printed with 1-2 decimals: the marker may only disagree within rounding
  if (b > 2 * a * 1.02) assert.ok(flag, `${where}: ${lo}-${hi} spreads > 2x but is not marked`);
  if (b < 2 * a * 0.98) assert.ok(!flag, `${where}: ${lo}-${hi} is marked but spreads < 2x`);
}

function checkJson(rec, where) {
  let any = false;
  for (const k of Object.keys(rec)) {
    if (!(`${k}_min` in rec)) continue;
    const [m, a, b] = [rec[k], rec[`${k}_min`], rec[`${k}_max`]];
    assert.ok(a <= m + 1e-9 && m <= b + 1e-9, `${where} ${k}: ${m} not within ${a}-${b}`);
    if (!(a > 0) || b > 2 * a * 1.001) any = true;
  }
  assert.ok(Object.keys(rec).some((k) => k.endsWith('_min')), `${where}: no series`);
  // the record's marker: set when a series spreads over 2x (or has a round without a measurement)
  if (any) assert.equal(rec.unreliable, 1, `${where}: a series spreads > 2x, unreliable = ${rec.unreliable}`);
  assert.ok(rec.unreliable === 0 || rec.unreliable === 1);
}

for (const where of ['native', 'wasm']) {
  test(`bench A B (${where}): every figure median (min-max) of the rounds, spread > 2x marked`, () => {
    const models = [initModel('f32'), initModel('q8_0')];
    const r = run(where, ['bench', ...models, '--steps', '2', '--rounds', '3']);
    assert.equal(r.status, 0, r.stderr);
    const out = r.stdout.toString();
    assert.match(out, /median \(min-max\) of 3 rounds/);
    const lines = out.split('\n').filter((l) => /tok\/s|GB\/s|vs q8_0|vs f32/.test(l) && /^ /.test(l));
    assert.ok(lines.length >= 9, out);
    for (const l of lines) {
      const figs = [...l.matchAll(FIG)];
      assert.ok(figs.length >= 1, `no figure in "${l}"`);
      for (const f of figs) checkFigure(f, `${where} "${l.trim()}"`);
    }
    const j = run(where, ['bench', ...models, '--steps', '2', '--rounds', '3', '--json']);
    assert.equal(j.status, 0, j.stderr);
    const recs = j.stdout.toString().trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(recs.length, 2);
    for (const rec of recs) {
      assert.equal(rec.rounds, 3);
      checkJson(rec, `${where} ${rec.type}`);
    }
    assert.equal(recs[0].vs_first_min, 1);
    assert.equal(recs[0].vs_first_max, 1);
  });
}

test('bench --skip-table --json (native): speedup per round, marker per budget', () => {
  const r = run('native', ['bench', initModel('f32'), '--skip-table', '--steps', '2', '--rounds', '3', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const recs = r.stdout.toString().trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(recs.map((x) => x.budget), [1, 0.75, 0.5, 0.3]);
  for (const rec of recs) checkJson(rec, `budget ${rec.budget}`);
  assert.equal(recs[0].speedup, 1);
});

test('bench --skip-table heads --json (native): heads-only masks whose compute falls to b', () => {
  const r = run('native', ['bench', initModel('f32'), '--skip-table', 'heads', '--steps', '4', '--rounds', '2', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const recs = r.stdout.toString().trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(recs.map((x) => x.budget), [1, 0.95, 0.9, 0.85]);
  assert.deepEqual([...new Set(recs.map((x) => x.masks))], ['heads']);
  assert.equal(recs[0].compute, 1);
  // whole heads: the achieved compute lands within half a head's share of b,
  // and every layer's FFN still runs, so it stays above the FFN's share
  for (const rec of recs.slice(1)) {
    checkJson(rec, `budget ${rec.budget}`);
    assert.ok(Math.abs(rec.compute - rec.budget) < 0.04, `budget ${rec.budget}: compute ${rec.compute}`);
  }
  assert.ok(recs[1].compute > recs[2].compute && recs[2].compute > recs[3].compute);
});

test('bench --rounds out of range is a usage error', () => {
  const r = run('native', ['bench', initModel('f32'), '--rounds', '0']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--rounds must be in 1\.\.64/);
});
