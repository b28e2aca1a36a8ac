#!/usr/bin/env node
// `doze` for Node: the same CLI as the native build/doze, run inside
// doze.wasm. Exits with the CLI's exit code.
//
// Dev override: DOZE_WASM=/path/to/other.wasm runs another module (for
// example a debug build) instead of dist/doze.wasm.
import { instantiateDoze } from './src/wasm.js';

function fail(msg, code = 1) {
  process.stderr.write(`doze: ${msg}\n`);
  process.exitCode = code;
}

try {
  const doze = await instantiateDoze({ wasm: process.env.DOZE_WASM || undefined });
  process.exitCode = doze.callMain(process.argv.slice(2));
} catch (e) {
  if (e && (e.code === 'NO_WASM_SIMD' || e.code === 'NO_WASM_FILE' || e.code === 'WASM_IMPORTS')) {
    fail(e.message);
  } else if (e instanceof WebAssembly.RuntimeError) {
    fail(`wasm trap: ${e.message}`, 134); // like a native abort()
  } else {
    fail(e && e.stack ? e.stack : String(e));
  }
}
