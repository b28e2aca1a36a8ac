// The default model that ships in models/: loadModel() of it from JS writes
// TinyStories-like English, and its gate file loads beside it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../js/src/index.js';
import { root } from './helpers.js';

const modelPath = join(root, 'models', 'doze-stories.gguf');
const gatesPath = join(root, 'models', 'doze-stories.gates.gguf');

test('the default model writes English from "Once upon a time", and its gates load', async () => {
  assert.ok(existsSync(modelPath), 'models/doze-stories.gguf is committed');
  const m = await loadModel(modelPath);
  try {
    assert.equal(m.info.architecture, 'llama');
    const text = await m.complete('Once upon a time', { temperature: 0, maxTokens: 60 });
    console.log(`# greedy: ${JSON.stringify(text.slice(0, 160))}`);
    const words = text.toLowerCase().match(/[a-z']+/g) || [];
    const common = new Set(['the', 'a', 'was', 'she', 'he', 'her', 'his', 'to', 'and', 'of', 'in',
      'with', 'they', 'it', 'named', 'little', 'day', 'one', 'there', 'play', 'loved', 'time', 'upon', 'once']);
    const hits = words.filter((w) => common.has(w)).length;
    assert.ok(words.length >= 30, `${words.length} words`);
    assert.ok(hits / words.length > 0.3, `only ${hits} of ${words.length} words are common English words`);
    const gates = await m.loadGates(readFileSync(gatesPath));
    assert.ok(gates);
    m.budget = 0.7;
    const r = await m.perplexity('Once upon a time, there was a little dog. He liked to play in the park with his friend.', { budget: 0.7 });
    assert.ok(r.compute > 0.5 && r.compute < 0.9, `compute ${r.compute}`);
    assert.ok(Number.isFinite(r.perplexity) && r.perplexity < 100, `ppl ${r.perplexity}`);
  } finally {
    m.dispose();
  }
});
