// Node's built-in modules, imported only where the code runs in Node.
//
// The specifier is a variable, and the comments tell bundlers to leave the
// import alone: a browser bundle (Vite, webpack, Rollup) then neither tries
// to resolve node:fs nor splits a chunk for it. A split chunk in the worker
// bundle fails Vite's default worker format (iife: one file, no chunks).

/** import(name) for a node: module, invisible to bundlers. */
export const nodeModule = (name) => import(/* @vite-ignore */ /* webpackIgnore: true */ name);

const MAIN_INPUT_ONLY = new Set(['--input-type', '-e', '--eval', '-p', '--print', '-pe']);

/**
 * A worker_threads Worker for url that starts whatever options the parent
 * process was given. Node hands a worker the parent's options; those about
 * the main script's own input (`--input-type`, `-e`/`-p` and their text)
 * make it refuse to start (`node --input-type=module -e '...'`), so they are
 * dropped. An explicit list may not hold per-process or V8 options
 * (`--expose-gc`, `--max-old-space-size`: ERR_WORKER_INVALID_EXEC_ARGV),
 * which the worker has anyway (they are the process's), so when Node refuses
 * the filtered list the worker gets none.
 */
export function newNodeWorker(Worker, url, options = {}) {
  const a = process.execArgv;
  const keep = [];
  let dropped = false;
  for (let i = 0; i < a.length; i++) {
    const s = a[i];
    if (MAIN_INPUT_ONLY.has(s)) {
      i++; // and its value
      dropped = true;
    } else if (/^--(input-type|eval|print)=/.test(s)) dropped = true;
    else keep.push(s);
  }
  if (!dropped) return new Worker(url, options); // Node's own inheritance
  try {
    return new Worker(url, { ...options, execArgv: keep });
  } catch (e) {
    if (!e || e.code !== 'ERR_WORKER_INVALID_EXEC_ARGV') throw e;
    return new Worker(url, { ...options, execArgv: [] });
  }
}
