// `doze generate` stops at an end-of-generation token the model samples —
// densely and with --speculative alike, natively and in wasm. The default
// model's vocabulary is given, as its EOS, a token its greedy story writes a
// few words in, so the stop is certain to be reached.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { withUint32 } from './chat_fixtures.js';
import { readPairs, root, run, scratch } from './helpers.js';

test('generate stops at a sampled end-of-generation token, dense and speculative, natively and in wasm', () => {
  const dir = scratch();
  const model = join(root, 'models', 'doze-stories.gguf');
  const gates = join(root, 'models', 'doze-stories.gates.gguf');
  const args = ['--prompt', 'Once upon a time', '--temp', '0', '--steps', '60'];
  const trace = join(dir, 'trace.txt');
  const full = run('native', ['generate', model, ...args, '--trace', trace]);
  assert.equal(full.status, 0, full.stderr);
  // the 10th generated token becomes the EOS (the prompt is 5 tokens with BOS)
  const pairs = readPairs(trace);
  const eos = pairs[4 + 10][1];
  const first = pairs.findIndex(([, next], i) => i >= 4 && next === eos);
  const patched = join(dir, 'eos.gguf');
  writeFileSync(patched, withUint32(readFileSync(model), 'tokenizer.ggml.eos_token_id', eos));

  const outs = [];
  for (const which of ['native', 'wasm']) {
    for (const extra of [[], ['--speculative', '--gates', gates]]) {
      const r = run(which, ['generate', patched, ...args, ...extra]);
      assert.equal(r.status, 0, r.stderr);
      outs.push([`${which} ${extra.length ? 'speculative' : 'dense'}`, r.stdout.toString()]);
    }
  }
  const text = full.stdout.toString();
  const stopped = outs[0][1];
  // the story up to (not including) the first EOS, then the line end
  assert.ok(stopped.length < text.length && text.startsWith(stopped.trimEnd()), JSON.stringify({ stopped, text }));
  assert.ok(first - 4 <= 10, `EOS ${eos} first generated at step ${first - 4}`);
  for (const [what, out] of outs) assert.equal(out, stopped, what);
});
