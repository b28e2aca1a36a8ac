// Shared helpers for the JS tests: paths, running the native and wasm CLIs,
// and the reference data location (skipped cleanly where ../shared is absent).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const nativeCli = join(root, 'build', 'doze');
export const wasmCli = join(root, 'js', 'cli.js');
export const shared = resolve(root, '..', 'shared');
export const hasShared = existsSync(join(shared, 'models', 'stories260K.bin'));
export const sharedSkip = hasShared ? false : `reference data not found at ${shared}`;

/** A training text: the start of tinystories-train.txt (whole UTF-8
 * characters), or a made-up story repeated where ../shared is absent. */
export const trainText = hasShared
  ? readFileSync(join(shared, 'text', 'tinystories-train.txt')).subarray(0, 20000).toString('utf8').replace(/\uFFFD+$/, '')
  : 'Once upon a time, there was a little cat named Tom. He liked to play in the sun with his ball. One day he saw a big dog.\n<|endoftext|>\n'.repeat(120);

export function scratch() {
  return mkdtempSync(join(tmpdir(), 'doze-test-'));
}

/** Runs a CLI (native: 'native', wasm: 'wasm') and returns {status, stdout, stderr}. */
export function run(which, args, opts = {}) {
  const cmd = which === 'native' ? nativeCli : process.execPath;
  const argv = which === 'native' ? args : [wasmCli, ...args];
  const r = spawnSync(cmd, argv, { encoding: 'buffer', maxBuffer: 1 << 28, ...opts });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}

export function readPairs(path) {
  return readFileSync(path, 'utf8').trim().split('\n').map((l) => l.split(' ').map(Number));
}

export function readFloats(path) {
  const b = readFileSync(path);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}
