// Node's built-in modules, imported only where the code runs in Node.
//
// The specifier is a variable, and the comments tell bundlers to leave the
// import alone: a browser bundle (Vite, webpack, Rollup) then neither tries
// to resolve node:fs nor splits a chunk for it. A split chunk in the worker
// bundle fails Vite's default worker format (iife: one file, no chunks).

/** import(name) for a node: module, invisible to bundlers. */
export const nodeModule = (name) => import(/* @vite-ignore */ /* webpackIgnore: true */ name);
