// Fixtures for the doze-lm package tests: seeded models made with the native
// CLI, stories260K converted where ../shared is present, the CLI's token ids
// for a generate run, and a tiny static HTTP server.
import { createServer } from 'node:http';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { extname, join, normalize } from 'node:path';
import { hasShared, nativeCli, readPairs, run, scratch, shared } from './helpers.js';

export const initArgs = ['--dim', '64', '--hidden', '160', '--layers', '2', '--heads', '4',
  '--kv-heads', '2', '--vocab', '300', '--ctx', '128', '--seed', '7'];

const made = new Map();

/** A seeded `doze init` model (f32 unless given), made once per process. */
export function initModel(type = 'f32', dir = scratch()) {
  const key = `init-${type}`;
  if (made.has(key)) return made.get(key);
  const out = join(dir, `${key}.gguf`);
  const r = run('native', ['init', ...initArgs, '--type', type, '-o', out]);
  if (r.status !== 0) throw new Error(`doze init failed: ${r.stderr}`);
  made.set(key, out);
  return out;
}

/** A seeded model whose rows are whole 256-blocks, so the K-quant types are
 * used for every matrix (`type`: q4_k_m, q5_k, q6_k, ...). */
export function kquantModel(type, dir = scratch()) {
  const key = `kq-${type}`;
  if (made.has(key)) return made.get(key);
  const out = join(dir, `${key}.gguf`);
  const r = run('native', ['init', '--dim', '256', '--hidden', '512', '--layers', '2', '--heads', '4', '--kv-heads', '2',
    '--vocab', '300', '--ctx', '128', '--seed', '7', '--type', type, '-o', out]);
  if (r.status !== 0) throw new Error(`doze init failed: ${r.stderr}`);
  made.set(key, out);
  return out;
}

/** stories260K converted to GGUF (null where ../shared is absent). */
export function storiesModel(dir = scratch()) {
  if (!hasShared) return null;
  if (made.has('stories')) return made.get('stories');
  const out = join(dir, 'stories260K.gguf');
  const r = run('native', ['convert', 'llama2c', join(shared, 'models', 'stories260K.bin'),
    join(shared, 'models', 'tok512.bin'), '-o', out]);
  if (r.status !== 0) throw new Error(`doze convert failed: ${r.stderr}`);
  made.set('stories', out);
  return out;
}

/**
 * Runs `doze generate` with a trace and returns the generated ids (the ones
 * sampled after the prompt, BOS stop excluded), the prompt length and stdout.
 */
export function cliGenerate(model, prompt, steps, extra = []) {
  const dir = scratch();
  const trace = join(dir, 'trace.pairs');
  const r = run('native', ['generate', model, '--prompt', prompt, '--steps', String(steps), '--trace', trace, ...extra]);
  if (r.status !== 0) throw new Error(`doze generate failed: ${r.stderr}`);
  const pairs = readPairs(trace);
  return { pairs, stdout: r.stdout.toString() };
}

/** The CLI's continuation ids: next tokens from the last prompt position on. */
export function continuation(pairs, nPrompt, bosId, noStop = false) {
  const ids = pairs.slice(nPrompt - 1).map((p) => p[1]);
  if (!noStop && ids.length && ids[ids.length - 1] === bosId) ids.pop();
  return ids;
}

const types = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.html': 'text/html',
  '.wasm': 'application/wasm', '.gguf': 'application/octet-stream', '.json': 'application/json' };

/**
 * Serves files: `routes` maps URL paths to files, `roots` maps URL prefixes
 * to directories. Resolves to { url, close, requests }.
 */
export function serve({ routes = {}, roots = {}, headers = {} } = {}) {
  const requests = [];
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    requests.push(path);
    let file = routes[path];
    if (!file) {
      for (const [prefix, dir] of Object.entries(roots)) {
        if (path.startsWith(prefix)) {
          const rel = normalize(path.slice(prefix.length)).replace(/^(\.\.[/\\])+/, '');
          file = join(dir, rel);
          break;
        }
      }
    }
    if (!file || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    res.writeHead(200, {
      'content-type': types[extname(file)] || 'application/octet-stream',
      'content-length': statSync(file).size,
      'cache-control': 'no-store',
      ...headers,
    });
    createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({
        url: `http://127.0.0.1:${port}`,
        requests,
        close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
      });
    });
  });
}

/** A ReadableStream over bytes in chunks of `size`, waiting `delay` ms between. */
export function slowStream(bytes, { size = 16384, delay = 0, failAt = -1 } = {}) {
  let off = 0;
  return new ReadableStream({
    async pull(controller) {
      if (delay) await new Promise((r) => setTimeout(r, delay));
      if (failAt >= 0 && off >= failAt) {
        controller.error(new Error('network connection lost'));
        return;
      }
      if (off >= bytes.length) {
        controller.close();
        return;
      }
      controller.enqueue(bytes.slice(off, off + size));
      off += size;
    },
  });
}

export { hasShared, nativeCli, readFileSync };
