// generate()'s min-p and repetition / frequency / presence penalties: seeded
// runs give the native CLI's tokens (`doze generate` with the same flags),
// in the main thread and in the Worker; the penalties see the session's
// earlier tokens; each option is checked (INVALID_ARGUMENT naming it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as direct from '../../js/src/index.js';
import * as worker from '../../js/src/worker.js';
import { join } from 'node:path';
import { run, scratch } from './helpers.js';
import { cliGenerate, continuation, initArgs, storiesModel } from './package_fixtures.js';

const dir = scratch();
// A seeded model whose next-token distributions are soft (a small untied
// classifier), so that the penalties and min-p change what is picked.
let softPath = null;
function softModel() {
  if (softPath) return softPath;
  softPath = join(dir, 'soft.gguf');
  const r = run('native', ['init', ...initArgs, '--untied', '--embd-scale', '0.5', '-o', softPath]);
  if (r.status !== 0) throw new Error(r.stderr);
  return softPath;
}
const PROMPT = 'Once upon a time';
const STEPS = 100;

// The CLI's flags and the same settings as generate() options.
const RUNS = [
  { cli: ['--temp', '0', '--repeat-penalty', '1.5'], js: { temperature: 0, repeatPenalty: 1.5 } },
  { cli: ['--temp', '0', '--frequency-penalty', '0.8', '--presence-penalty', '0.5', '--repeat-last-n', '16'],
    js: { temperature: 0, frequencyPenalty: 0.8, presencePenalty: 0.5, repeatLastN: 16 } },
  { cli: ['--temp', '0.8', '--min-p', '0.05', '--seed', '9'], js: { temperature: 0.8, minP: 0.05, seed: 9 } },
  { cli: ['--temp', '1', '--top-k', '40', '--top-p', '0.95', '--min-p', '0.02', '--repeat-penalty', '1.3',
    '--repeat-last-n', '-1', '--frequency-penalty', '0.2', '--presence-penalty', '-0.1', '--seed', '31'],
  js: { temperature: 1, topK: 40, topP: 0.95, minP: 0.02, repeatPenalty: 1.3, repeatLastN: -1,
    frequencyPenalty: 0.2, presencePenalty: -0.1, seed: 31 } },
  // top-p 0 keeps the most likely token alone (llama.cpp's reading): greedy at any temperature
  { cli: ['--temp', '1.5', '--top-p', '0', '--seed', '4'], js: { temperature: 1.5, topP: 0, seed: 4 }, greedy: true },
];

async function collect(gen) {
  const ids = [];
  for await (const t of gen) if (t.id >= 0) ids.push(t.id); // id -1: held-back text at the end
  return ids;
}

for (const [name, make] of [['init', softModel], ['stories260K', () => storiesModel(dir)]]) {
  test(`seeded penalties and min-p: the CLI's tokens in wasm, main thread and Worker (${name})`, async (t) => {
    const path = make();
    if (!path) {
      t.skip('stories260K not found in ../shared');
      return;
    }
    const d = await direct.loadModel(path);
    const w = await worker.loadModel(path);
    try {
      const nPrompt = d.tokenize(PROMPT).length;
      const plain = await collect(d.generate(PROMPT, { temperature: 0, maxTokens: STEPS - nPrompt + 1 }));
      let differ = 0;
      for (const r of RUNS) {
        const { pairs } = cliGenerate(path, PROMPT, STEPS, r.cli);
        let want = continuation(pairs, nPrompt, d.info.bosId);
        // the package also stops at EOS (the CLI only at BOS)
        if (want.includes(d.info.eosId)) want = want.slice(0, want.indexOf(d.info.eosId));
        const opts = { ...r.js, maxTokens: STEPS - nPrompt + 1 };
        const got = await collect(d.generate(PROMPT, opts));
        assert.deepEqual(got, want, `main thread: ${r.cli.join(' ')}`);
        assert.ok(got.length >= 10, 'generated something');
        assert.deepEqual(await collect(w.generate(PROMPT, opts)), want, `worker: ${r.cli.join(' ')}`);
        if (r.greedy) assert.deepEqual(got, plain.slice(0, got.length), `${r.cli.join(' ')} is greedy`);
        else if (got.join() !== plain.slice(0, got.length).join()) differ++;
      }
      // the options act: the penalised greedy runs leave the plain greedy path
      assert.ok(differ >= 2, `${differ} runs differ from plain greedy`);
      t.diagnostic(`${name}: ${RUNS.length} runs equal the CLI (main thread and worker); ${differ} differ from plain greedy`);
    } finally {
      d.dispose();
      await w.dispose();
    }
  });
}

test('the penalties look back over the session: two generate calls = one with the whole context', async () => {
  const m = await direct.loadModel(softModel());
  try {
    const opts = { temperature: 0, repeatPenalty: 2, repeatLastN: -1, ignoreEos: true };
    const s = m.createSession();
    const first = await collect(s.generate(PROMPT, { ...opts, maxTokens: 12 }));
    const second = await collect(s.generate('', { ...opts, maxTokens: 12 }));
    s.dispose();
    const whole = await collect(m.generate(PROMPT, { ...opts, maxTokens: 24 }));
    assert.deepEqual([...first, ...second], whole);
    // and they do act on the history: a fresh penalty window would pick differently
    const s2 = m.createSession();
    await collect(s2.generate(PROMPT, { ...opts, maxTokens: 12 }));
    const noHistory = await collect(s2.generate('', { ...opts, repeatLastN: 1, maxTokens: 12 }));
    s2.dispose();
    assert.notDeepEqual(noHistory, second);
  } finally {
    m.dispose();
  }
});

test('the sampler options are checked: INVALID_ARGUMENT naming the option', async () => {
  const m = await direct.loadModel(softModel());
  const bad = async (opts, re) => {
    await assert.rejects(m.generate('x', opts).next(), (e) => {
      assert.equal(e.code, 'INVALID_ARGUMENT', e.message);
      assert.match(e.message, re);
      return true;
    });
  };
  try {
    await bad({ minP: -0.1 }, /generate: minP must be a finite number in \[0, 1\], got -0.1/);
    await bad({ minP: 1.5 }, /minP/);
    await bad({ repeatPenalty: 0 }, /generate: repeatPenalty must be a finite number > 0, got 0/);
    await bad({ repeatPenalty: Infinity }, /repeatPenalty/);
    await bad({ repeatLastN: -2 }, /generate: repeatLastN must be an integer >= -1, got -2/);
    await bad({ repeatLastN: 1.5 }, /repeatLastN/);
    await bad({ frequencyPenalty: NaN }, /generate: frequencyPenalty must be a finite number, got NaN/);
    await bad({ presencePenalty: '1' }, /generate: presencePenalty must be a finite number, got "1"/);
    await assert.rejects(m.chat([{ role: 'user', content: 'hi' }], { template: '{{ messages[0].content }}', minP: 2 }).next(),
      (e) => e.code === 'INVALID_ARGUMENT' && /minP/.test(e.message));
  } finally {
    m.dispose();
  }
});
