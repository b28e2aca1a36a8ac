// Node's built-in modules, imported only where the code runs in Node.
//
// The specifier is a variable, and the comments tell bundlers to leave the
// import alone: a browser bundle (Vite, webpack, Rollup) then neither tries
// to resolve node:fs nor splits a chunk for it. A split chunk in the worker
// bundle fails Vite's default worker format (iife: one file, no chunks).

/** import(name) for a node: module, invisible to bundlers. */
export const nodeModule = (name) => import(/* @vite-ignore */ /* webpackIgnore: true */ name);

/**
 * The parent's Node options for a worker thread (Node passes them all by
 * default): those about the main script's own input — `--input-type`,
 * `-e`/`-p` and their text — are dropped, since a worker given them refuses
 * to start (`node --input-type=module -e '...'`).
 */
export function workerExecArgv() {
  const out = [];
  const a = process.execArgv;
  for (let i = 0; i < a.length; i++) {
    const s = a[i];
    if (s === '--input-type' || s === '-e' || s === '--eval' || s === '-p' || s === '--print' || s === '-pe') {
      i++; // and its value
      continue;
    }
    if (/^--(input-type|eval|print)=/.test(s)) continue;
    out.push(s);
  }
  return out;
}
