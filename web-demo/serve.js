#!/usr/bin/env node
// The Doze web demo's server: `npm run demo` (or `node web-demo/serve.js`).
//
// Builds what is missing (js/dist/doze.wasm; the default model in models/
// when a recipe for it exists), then serves on localhost:
//   /             web-demo/ (the page)
//   /js/...       js/ (the doze-lm package: src/, dist/doze.wasm)
//   /models/...   models/ (GGUF models and gate files)
//   /config.json  what the page should load by default (generated)
//
// Options: --port N (default 8080, or $PORT; the next free port is taken if
// it is busy), --host H (default 127.0.0.1), --models DIR (default models/),
// --no-build (serve as is). Also usable from tests: startServer({ ... }).
import { createServer } from 'node:http';
import { spawnSync } from 'node:child_process';
import { createReadStream, existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const root = resolve(here, '..');

export const DEFAULT_MODEL = 'doze-stories.gguf';
export const DEFAULT_GATES = 'doze-stories.gates.gguf';
// perplexity and compute per budget with the default gates (scripts/measure-budgets.sh)
export const DEFAULT_COSTS = 'doze-stories.gates.ppl.json';

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.gguf': 'application/octet-stream',
  '.bin': 'application/octet-stream',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.ts': 'text/plain; charset=utf-8',
};

/** The file under `dir` that URL path `rel` names, or null (no escaping `dir`). */
function inside(dir, rel) {
  const base = resolve(dir);
  const file = resolve(base, '.' + sep + rel);
  if (file !== base && !file.startsWith(base + sep)) return null;
  return file;
}

/** What the page loads by default: files present in the models folder. */
export function demoConfig(modelsDir) {
  const has = (f) => existsSync(join(modelsDir, f)) && statSync(join(modelsDir, f)).isFile();
  let files = [];
  try {
    files = readdirSync(modelsDir).filter((f) => f.endsWith('.gguf') && has(f)).sort();
  } catch {
    /* no models folder */
  }
  return {
    defaultModel: has(DEFAULT_MODEL) ? `models/${DEFAULT_MODEL}` : null,
    defaultGates: has(DEFAULT_MODEL) && has(DEFAULT_GATES) ? `models/${DEFAULT_GATES}` : null,
    defaultCosts: has(DEFAULT_MODEL) && has(DEFAULT_GATES) && has(DEFAULT_COSTS) ? `models/${DEFAULT_COSTS}` : null,
    models: files.filter((f) => !/\.(gates|vocab)\.gguf$/.test(f)).map((f) => `models/${f}`),
    gates: files.filter((f) => f.endsWith('.gates.gguf')).map((f) => `models/${f}`),
  };
}

/**
 * Starts the server. Resolves to { url, port, server, close, requests }.
 * @param {{ port?: number, host?: string, modelsDir?: string, portTries?: number }} [options]
 */
export function startServer({ port = 0, host = '127.0.0.1', modelsDir = join(root, 'models'), portTries = 20 } = {}) {
  const requests = [];
  const mounts = [
    ['/js/', join(root, 'js')],
    ['/models/', modelsDir],
    ['/vendor/jinja/', join(root, 'node_modules', '@huggingface', 'jinja', 'dist')], // chat.js's template engine
    ['/', here],
  ];
  const server = createServer((req, res) => {
    let path;
    try {
      path = decodeURIComponent(new URL(req.url, 'http://localhost').pathname);
    } catch {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('bad request');
      return;
    }
    requests.push(path);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed');
      return;
    }
    if (path === '/config.json') {
      const body = JSON.stringify(demoConfig(modelsDir));
      res.writeHead(200, { 'content-type': MIME['.json'], 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    if (path === '/serve.js') path = '/404'; // the server itself is not part of the page
    let file = null;
    for (const [prefix, dir] of mounts) {
      if (path.startsWith(prefix)) {
        file = inside(dir, path.slice(prefix.length));
        break;
      }
    }
    if (file && existsSync(file) && statSync(file).isDirectory()) file = join(file, 'index.html');
    if (!file || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found');
      return;
    }
    const size = statSync(file).size;
    res.writeHead(200, {
      'content-type': MIME[extname(file).toLowerCase()] || 'application/octet-stream',
      'content-length': size,
      'cache-control': 'no-cache',
      'x-content-type-options': 'nosniff',
      // cross-origin isolation: SharedArrayBuffer, so the model can run on threads
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-embedder-policy': 'require-corp',
    });
    if (req.method === 'HEAD') return res.end();
    const stream = createReadStream(file);
    stream.on('error', () => res.destroy());
    stream.pipe(res);
  });
  return new Promise((resolveStart, reject) => {
    let tries = 0;
    const listen = (p) => {
      server.once('error', (e) => {
        if (e.code === 'EADDRINUSE' && p !== 0 && ++tries < portTries) listen(p + 1);
        else reject(e);
      });
      server.listen(p, host, () => {
        const { port: actual } = server.address();
        const shown = host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host;
        resolveStart({
          url: `http://${shown}:${actual}/`,
          port: actual,
          server,
          requests,
          close: () => new Promise((r) => {
            server.closeAllConnections?.();
            server.close(() => r());
          }),
        });
      });
    };
    listen(port);
  });
}

/** Runs a command in the project root, showing its output. */
function sh(cmd, args) {
  console.log(`demo: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  return r.status === 0;
}

/** A recipe that makes models/doze-stories.gguf, if the project has one. */
function modelRecipe(modelsDir) {
  let scripts = {};
  try {
    scripts = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).scripts || {};
  } catch {
    /* no package.json */
  }
  for (const name of ['make-model', 'build:models', 'build:model', 'models']) {
    if (scripts[name]) return ['npm', ['run', name]];
  }
  const candidates = [
    ['make-model.sh', (f) => ['sh', [f]]],
    ['Makefile', () => ['make', ['-C', modelsDir]]],
    ['make.sh', (f) => ['sh', [f]]],
    ['build.sh', (f) => ['sh', [f]]],
    ['make.mjs', (f) => [process.execPath, [f]]],
    ['make.js', (f) => [process.execPath, [f]]],
    ['build.mjs', (f) => [process.execPath, [f]]],
    ['build.js', (f) => [process.execPath, [f]]],
  ];
  for (const [name, cmd] of candidates) {
    const f = join(modelsDir, name);
    if (existsSync(f)) return cmd(f);
  }
  return null;
}

/**
 * Makes what the demo needs and is missing. Returns { notes, errors }: notes
 * are for the user; an error means the page could not work, and the server
 * must not start (no URL to a page that cannot run models).
 */
export function buildMissing({ modelsDir = join(root, 'models') } = {}) {
  const notes = [];
  const errors = [];
  const wasm = join(root, 'js', 'dist', 'doze.wasm');
  if (!existsSync(wasm)) {
    if (!sh('npm', ['run', 'build:wasm']) || !existsSync(wasm)) {
      errors.push('js/dist/doze.wasm is missing and `npm run build:wasm` failed (npm run setup installs the tools).');
    }
  }
  if (!existsSync(join(modelsDir, DEFAULT_MODEL))) {
    const recipe = modelRecipe(modelsDir);
    if (recipe) {
      if (!existsSync(join(root, 'build', 'doze'))) sh('npm', ['run', 'build:native']);
      console.log('demo: making the default model (it is trained from scratch: this takes a while, once;');
      console.log('demo: press Ctrl+C and run `node web-demo/serve.js --no-build` to skip it)');
      if (!sh(recipe[0], recipe[1])) errors.push(`making the default model failed (${recipe[0]} ${recipe[1].join(' ')})`);
    }
    if (!existsSync(join(modelsDir, DEFAULT_MODEL))) {
      notes.push(`no default model (${join(modelsDir, DEFAULT_MODEL)}): the page will ask for a GGUF file or URL.`);
    }
  }
  return { notes, errors };
}

function parseArgs(argv) {
  const o = { port: Number(process.env.PORT) || 8080, host: '127.0.0.1', modelsDir: join(root, 'models'), build: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--port' || a === '-p') o.port = Number(val());
    else if (a === '--host') o.host = val();
    else if (a === '--models') o.modelsDir = resolve(val());
    else if (a === '--no-build') o.build = false;
    else if (a === '--help' || a === '-h') {
      console.log('usage: node web-demo/serve.js [--port N] [--host H] [--models DIR] [--no-build]');
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) throw new Error('--port must be 0..65535');
  return o;
}

async function main() {
  let o;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`demo: ${e.message}`);
    process.exit(2);
  }
  const { notes, errors } = o.build ? buildMissing({ modelsDir: o.modelsDir }) : { notes: [], errors: [] };
  if (errors.length) {
    for (const e of errors) console.error(`demo: error: ${e}`);
    process.exit(1);
  }
  let s;
  try {
    s = await startServer({ port: o.port, host: o.host, modelsDir: o.modelsDir });
  } catch (e) {
    console.error(`demo: error: cannot listen on ${o.host}:${o.port}: ${e.message}`);
    process.exit(1);
  }
  for (const n of notes) console.log(`demo: note: ${n}`);
  console.log(`Doze web demo: ${s.url}  (Ctrl+C to stop)`);
  const stop = () => s.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) main();
