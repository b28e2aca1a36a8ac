// One thread of a model's pool (js/src/pool.js): a Web Worker or a Node
// worker_threads Worker that instantiates doze-mt.wasm on the main instance's
// shared memory and runs the pool's loop (src/runtime/pool.c) until the model
// is freed. It runs no constructors (_initialize) and allocates nothing: its
// stack is the one the pool allocated for it.

function stubImports(module, memory) {
  const imports = { env: {}, wasi_snapshot_preview1: {} };
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.kind === 'memory') imports[imp.module][imp.name] = memory;
    else if (imp.kind === 'function') {
      imports[imp.module] ||= {};
      imports[imp.module][imp.name] =
        imp.name === 'emscripten_notify_memory_growth'
          ? () => {}
          : () => {
              throw new Error(`doze pool worker: ${imp.module}.${imp.name} is not available in a worker`);
            };
    }
  }
  return imports;
}

async function run({ module, memory, pool, index, stackTop }, post) {
  try {
    const instance = await WebAssembly.instantiate(module, stubImports(module, memory));
    const x = instance.exports;
    x.stackRestore(stackTop);
    post({ type: 'running', index });
    x.doze_wasm_pool_work(pool, index); // returns when the model is freed
    post({ type: 'exit', index });
  } catch (e) {
    post({ type: 'error', index, message: String((e && e.message) || e) });
  }
}

const isNode = typeof process !== 'undefined' && process.versions != null && process.versions.node != null;
if (isNode && typeof self === 'undefined') {
  // a variable specifier, hidden from bundlers as js/src/node.js does (this
  // file is loaded by URL, so it imports nothing of the package)
  const name = 'node:worker_threads';
  const { parentPort } = await import(/* @vite-ignore */ /* webpackIgnore: true */ name);
  parentPort.once('message', (msg) => run(msg, (m) => parentPort.postMessage(m)));
} else {
  self.onmessage = (ev) => run(ev.data, (m) => self.postMessage(m));
}
