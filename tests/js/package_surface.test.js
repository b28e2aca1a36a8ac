// One table (js/src/api.js) lists the members of Model, Session and Gates:
// the main-thread classes have exactly those members (getters, setters,
// methods, async generators), and doze-lm/worker's proxies have exactly the
// same names, getters included, so a member added to a class without the
// table (or the other way round) fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as main from '../../js/src/index.js';
import * as worker from '../../js/src/worker.js';
import { API, MODULE_EXPORTS, MAIN_ONLY_EXPORTS } from '../../js/src/api.js';
import { scratch } from './helpers.js';
import { initModel } from './package_fixtures.js';

const path = initModel('f32', scratch());
const AsyncGeneratorFunction = Object.getPrototypeOf(async function* () {}).constructor;

/** name -> 'value' | 'get' | 'getset' | 'call' | 'stream' of a live object (public members only). */
function surface(obj) {
  const out = {};
  for (let p = Object.getPrototypeOf(obj); p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const [name, d] of Object.entries(Object.getOwnPropertyDescriptors(p))) {
      if (name === 'constructor' || name.startsWith('_') || name in out) continue;
      if (d.get || d.set) out[name] = d.set ? 'getset' : 'get';
      else if (d.value instanceof AsyncGeneratorFunction) out[name] = 'stream';
      else if (typeof d.value === 'function') out[name] = 'call';
    }
  }
  for (const name of Object.keys(obj)) if (!name.startsWith('_')) out[name] = 'value';
  return out;
}

// the table's public rows (internal ones, named _x, are proxied but not API)
const publicRows = (cls) => Object.entries(API[cls]).filter(([k]) => !k.startsWith('_'));
const table = (cls) => Object.fromEntries(publicRows(cls).map(([k, d]) => [k, d.kind]));
// A getter with no setter that never changes may be a data property or a getter on the class.
const loose = (s) => Object.fromEntries(Object.entries(s).map(([k, v]) => [k, v === 'value' ? 'get' : v]));

test('the main-thread classes have exactly the members of the table', async () => {
  const m = await main.loadModel(path);
  try {
    const s = m.createSession();
    const g = await m.calibrateGates({ text: 'Once upon a time there was a cat. '.repeat(8), activate: false });
    for (const [cls, obj] of [['Model', m], ['Session', s], ['Gates', g]]) {
      assert.ok(obj instanceof main[cls]);
      assert.deepEqual(loose(surface(obj)), loose(table(cls)), `${cls}: members and kinds`);
    }
    // the heap is a Promise on both sides
    assert.ok(m.heapUsed() instanceof Promise);
  } finally {
    m.dispose();
  }
});

test('doze-lm/worker has the same names, getters included, and the same values after a call', async () => {
  const d = await main.loadModel(path);
  const w = await worker.loadModel(path);
  try {
    const ws = await w.createSession();
    const wg = await w.calibrateGates({ text: 'Once upon a time there was a cat. '.repeat(8), activate: false });
    const s = d.createSession();
    const g = await d.calibrateGates({ text: 'Once upon a time there was a cat. '.repeat(8), activate: false });
    for (const [cls, proxy, real] of [['Model', w, d], ['Session', ws, s], ['Gates', wg, g]]) {
      assert.ok(proxy instanceof worker[cls], `${cls} proxy`);
      const names = Object.keys(surface(proxy)).sort();
      assert.deepEqual(names, publicRows(cls).map(([k]) => k).sort(), `${cls}: the proxy's names are the table's`);
      assert.deepEqual(names, Object.keys(surface(real)).sort(), `${cls}: and the main thread's`);
      for (const [name, desc] of publicRows(cls)) {
        if (desc.kind === 'call' || desc.kind === 'stream') continue;
        if (name === 'model') assert.equal(proxy.model, w);
        else assert.deepEqual(proxy[name], real[name], `${cls}.${name}: the cached getter = the main thread's`);
      }
    }
    // getters are synchronous and follow the worker: after a stream, position
    await ws.complete('Once upon a time', { maxTokens: 5, temperature: 0, ignoreEos: true });
    await s.complete('Once upon a time', { maxTokens: 5, temperature: 0, ignoreEos: true });
    assert.equal(ws.position, s.position);
    assert.ok(ws.position > 5);
    // setters: checked here (synchronous throw), shown at once, applied in the worker
    assert.throws(() => (w.gates = g), { code: 'INVALID_ARGUMENT' }, 'a main-thread Gates is not the worker model\'s');
    assert.throws(() => (ws.budget = 2), { code: 'INVALID_ARGUMENT' });
    w.gates = wg;
    w.budget = 0.6;
    assert.equal(w.budget, 0.6);
    assert.equal(w.gates, wg);
    const r = await w.perplexity('Once upon a time there was a cat.');
    assert.equal(r.budget, 0.6, 'the worker ran under the budget set here');
    assert.equal(ws.budget, 0.6, 'a session follows its model');
    ws.budget = 0.9;
    ws.budget = null;
    await ws.reset();
    assert.equal(ws.budget, 0.6);
    assert.ok(w.heapUsed() instanceof Promise);
    await ws.dispose();
    assert.equal(ws.disposed, true);
    assert.throws(() => ws.position, { code: 'STATE' });
    await wg.dispose();
    assert.equal(wg.disposed, true);
    assert.equal(w.gates, null, 'disposed gates are dropped by the model');
  } finally {
    d.dispose();
    await w.dispose();
  }
  assert.equal(w.disposed, true);
});

test('module exports: the same in both entries, apart from the calling thread\'s own runtime', () => {
  const names = (m) => Object.keys(m).sort();
  assert.deepEqual(names(main), [...MODULE_EXPORTS, ...MAIN_ONLY_EXPORTS].sort());
  assert.deepEqual(names(worker), [...MODULE_EXPORTS, 'WorkerGates', 'WorkerModel', 'WorkerSession'].sort());
  assert.equal(worker.WorkerModel, worker.Model);
});
