// Corrupted model files through the wasm build: truncated and
// byte-flipped variants of seeded and reference models go through the wasm
// CLI's `generate FILE --steps 4`. Every run must end with exit code 0 or 1
// and, on failure, a "doze: ..." message; never a trap (the CLI's 134).
//
// Most variants run in-process through the same CLI entry point
// (instantiateDoze + callMain, one compiled module): one long-lived instance
// for all of them also checks that the module stays usable after failures
// and that failed loads give back their memory (malloc'd bytes return to
// the baseline after every run). A sample also runs as `node js/cli.js`
// subprocesses, exactly as a user would.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { instantiateDoze } from '../../js/src/wasm.js';
import { root, run, scratch, shared, hasShared } from './helpers.js';

const wasmPath = process.env.DOZE_WASM || join(root, 'js', 'dist', 'doze.wasm');
const noWasm = existsSync(wasmPath) ? false : `${wasmPath} not built`;

// xorshift64* (the sampler's), on BigInt: a fixed seed, the same variants every run
function rng(seed) {
  let s = BigInt.asUintN(64, BigInt(seed));
  return (n) => {
    s ^= s >> 12n;
    s ^= BigInt.asUintN(64, s << 25n);
    s ^= s >> 27n;
    const x = BigInt.asUintN(64, s * 0x2545f4914f6cdd1dn) >> 32n;
    return Number(x % BigInt(n));
  };
}

function variants(name, bytes, rnd, { cuts, flips }) {
  const out = [];
  const n = bytes.length;
  for (let i = 0; i < cuts; i++) {
    // half in the first 4 KiB (the header), half anywhere
    const at = i % 2 === 0 ? rnd(Math.min(n, 4096)) : rnd(n);
    out.push({ label: `${name} cut at ${at}`, data: bytes.subarray(0, at) });
  }
  for (let i = 0; i < flips; i++) {
    const v = Uint8Array.from(bytes);
    const k = 1 + rnd(4);
    const region = rnd(2) ? Math.min(n, 8192) : n;
    const where = [];
    for (let j = 0; j < k; j++) {
      const at = rnd(region);
      v[at] = rnd(2) ? rnd(256) : v[at] ^ (1 << rnd(8));
      where.push(at);
    }
    out.push({ label: `${name} flipped at ${where.join(',')}`, data: v });
  }
  return out;
}

async function cliInstance(module) {
  let stderr = '';
  let stdout = '';
  const doze = await instantiateDoze({
    wasm: module,
    host: {
      stdout: (b) => {
        stdout += Buffer.from(b).toString();
      },
      stderr: (b) => {
        stderr += Buffer.from(b).toString();
      },
    },
  });
  return {
    doze,
    run(args) {
      stderr = '';
      stdout = '';
      const code = doze.callMain(args);
      return { code, stderr, stdout };
    },
  };
}

test('corrupted models through the wasm CLI: clean errors or working models, no traps', { skip: noWasm, timeout: 300000 }, async () => {
  const module = await WebAssembly.compile(readFileSync(wasmPath));
  const dir = scratch();
  try {
    const cli = await cliInstance(module);
    const heap = () =>
      typeof cli.doze.exports.doze_wasm_heap_used === 'function' ? cli.doze.exports.doze_wasm_heap_used() : null;

    // base files: seeded models made by the wasm CLI itself, and the reference files
    const bases = [];
    const f32 = join(dir, 'f32.gguf');
    assert.equal(cli.run(['init', '--dim', '64', '--hidden', '96', '--layers', '2', '--heads', '4', '--kv-heads', '2',
      '--vocab', '300', '--ctx', '32', '--seed', '5', '-o', f32]).code, 0);
    bases.push(['init f32', f32]);
    const q8 = join(dir, 'q8.gguf');
    assert.equal(cli.run(['init', '--dim', '64', '--hidden', '64', '--layers', '1', '--heads', '2', '--kv-heads', '1',
      '--vocab', '270', '--ctx', '16', '--seed', '6', '--type', 'q8_0', '-o', q8]).code, 0);
    bases.push(['init q8_0', q8]);
    if (hasShared) {
      bases.push(['llama-2-tiny-random', join(shared, 'models', 'llama-2-tiny-random.gguf')]);
      const st = join(dir, 'stories260K.gguf');
      const r = cli.run(['convert', 'llama2c', join(shared, 'models', 'stories260K.bin'),
        join(shared, 'models', 'tok512.bin'), '-o', st]);
      assert.equal(r.code, 0, r.stderr);
      bases.push(['stories260K', st]);
    }

    const rnd = rng(0x5eed);
    const all = [];
    for (const [name, path] of bases) {
      const bytes = readFileSync(path);
      // the good file runs
      const ok = cli.run(['generate', path, '--steps', '4']);
      assert.equal(ok.code, 0, `${name}: ${ok.stderr}`);
      all.push(...variants(name, bytes, rnd, { cuts: 40, flips: 60 }));
    }

    const file = join(dir, 'variant.gguf');
    const baseline = heap();
    let loaded = 0;
    let failed = 0;
    const codes = new Map();
    for (const v of all) {
      writeFileSync(file, v.data);
      let r;
      try {
        r = cli.run(['generate', file, '--steps', '4']);
      } catch (e) {
        assert.fail(`${v.label}: ${e instanceof WebAssembly.RuntimeError ? 'wasm trap' : 'exception'}: ${e.message}`);
      }
      assert.ok(r.code === 0 || r.code === 1, `${v.label}: exit code ${r.code}, stderr ${r.stderr}`);
      if (r.code === 0) {
        loaded++;
      } else {
        failed++;
        assert.match(r.stderr, /^doze: .+/m, `${v.label}: no "doze: ..." message`);
        const m = /\(([A-Z_0-9]+)\)\s*$/m.exec(r.stderr);
        const code = m ? m[1] : 'other';
        codes.set(code, (codes.get(code) || 0) + 1);
      }
      if (baseline !== null) {
        assert.equal(heap(), baseline, `${v.label}: ${heap() - baseline} bytes still allocated after the run`);
      }
    }
    // still usable: every good file loads and runs again in the same instance
    for (const [name, path] of bases) {
      const r = cli.run(['generate', path, '--steps', '4']);
      assert.equal(r.code, 0, `${name} after the corrupted runs: ${r.stderr}`);
    }
    console.log(`wasm: ${all.length} corrupted variants in one instance: ${loaded} ran, ${failed} clean errors ` +
      `(${[...codes].map(([k, n]) => `${k} ${n}`).join(', ')})`);

    // a sample as real subprocesses: `node js/cli.js generate FILE --steps 4`
    let spawned = 0;
    for (let i = 0; i < all.length; i += Math.ceil(all.length / 24)) {
      const v = all[i];
      writeFileSync(file, v.data);
      const r = run('wasm', ['generate', file, '--steps', '4']);
      assert.ok(r.status === 0 || r.status === 1, `${v.label}: node js/cli.js exited ${r.status}: ${r.stderr}`);
      if (r.status === 1) assert.match(r.stderr, /^doze: .+/m, `${v.label}: no "doze: ..." message`);
      spawned++;
    }
    console.log(`wasm: ${spawned} variants also run as node js/cli.js subprocesses`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('wasm: a model larger than memory allows fails cleanly and the module stays usable', { skip: noWasm, timeout: 120000 }, async () => {
  const module = await WebAssembly.compile(readFileSync(wasmPath));
  const dir = scratch();
  try {
    const cli = await cliInstance(module);
    const base = join(dir, 'ctx.gguf');
    // the largest context the format allows: its KV cache (2^20 positions x
    // 8 layers x 256 floats x 2) cannot be allocated in wasm32
    assert.equal(cli.run(['init', '--dim', '256', '--hidden', '64', '--layers', '8', '--heads', '1', '--kv-heads', '1',
      '--vocab', '260', '--ctx', '1048576', '--seed', '1', '-o', base]).code, 0);
    const r = cli.run(['generate', base, '--steps', '4', '--ctx', '1048576']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^doze: .*OUT_OF_MEMORY/m);
    // the same file with a small context runs, in the same instance
    const ok = cli.run(['generate', base, '--steps', '4']);
    assert.equal(ok.code, 0, ok.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
