// The package's types compile, and so do the README examples: every ```js /
// ```ts block of README.md and js/README.md is extracted and type-checked
// with `tsc --strict` against js/index.d.ts and js/worker.d.ts (a block can
// opt out with an `<!-- no-typecheck -->` line right before it). JS blocks
// are checked as JavaScript (checkJs), TS blocks as TypeScript.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { root, scratch } from './helpers.js';

const tsc = join(root, 'node_modules', '.bin', 'tsc');
const noTsc = existsSync(tsc) ? false : 'typescript is not installed (npm install)';

/** The code blocks of a markdown text: { lang, code, line } (line: 1-based, of the first code line). */
export function codeBlocks(md) {
  const lines = md.split('\n');
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(```+|~~~+)\s*([\w-]*)/.exec(lines[i]);
    if (!open) continue;
    const fence = open[2];
    const lang = open[3].toLowerCase();
    let j = i + 1;
    while (j < lines.length && !lines[j].trimStart().startsWith(fence)) j++;
    let k = i - 1;
    while (k >= 0 && lines[k].trim() === '') k--;
    const optOut = k >= 0 && lines[k].trim() === '<!-- no-typecheck -->';
    out.push({ lang, code: lines.slice(i + 1, j).join('\n'), line: i + 2, optOut });
    i = j;
  }
  return out;
}

const KINDS = { js: 'js', javascript: 'js', mjs: 'js', ts: 'ts', typescript: 'ts' };

/**
 * Type-checks the blocks of the given markdown texts ({ name, text });
 * returns { checked, errors } with errors mapped back to "name:line".
 */
function typecheck(docs) {
  const dir = scratch();
  const files = [];
  const where = new Map();
  for (const { name, text } of docs) {
    for (const b of codeBlocks(text)) {
      const kind = KINDS[b.lang];
      if (!kind || b.optOut) continue;
      const file = `block${files.length}.${kind === 'ts' ? 'ts' : 'js'}`;
      // a module of its own (top-level await, no clashes between blocks)
      writeFileSync(join(dir, file), `${b.code}\nexport {};\n`);
      files.push(file);
      where.set(file, { name, line: b.line });
    }
  }
  // The examples run in Node and browsers; without @types/node in the
  // dev dependencies, the few Node names they use are declared loosely (the
  // point is checking them against doze-lm's own types).
  writeFileSync(join(dir, 'node-shim.d.ts'), "declare module 'node:*';\ndeclare const process: any;\n");
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      strict: true, noEmit: true, allowJs: true, checkJs: true, skipLibCheck: false,
      module: 'esnext', target: 'es2022', moduleResolution: 'bundler', lib: ['es2022', 'dom', 'dom.iterable'], types: [],
      paths: { 'doze-lm': [join(root, 'js/index.d.ts')], 'doze-lm/worker': [join(root, 'js/worker.d.ts')], 'doze-lm/models': [join(root, 'js/models.d.ts')], 'doze-lm/chat': [join(root, 'js/chat.d.ts')], 'doze-lm/wasm': [join(root, 'js/wasm.d.ts')] },
    },
    files: ['node-shim.d.ts', join(root, 'js/index.d.ts'), join(root, 'js/worker.d.ts'), ...files],
  }));
  const r = spawnSync(tsc, ['-p', dir, '--pretty', 'false'], { encoding: 'utf8' });
  const errors = [];
  for (const l of (r.stdout + r.stderr).split('\n').filter(Boolean)) {
    const m = /(block\d+\.[jt]s)\((\d+),(\d+)\): (.*)$/.exec(l);
    if (m && where.has(m[1])) {
      const w = where.get(m[1]);
      errors.push(`${w.name}:${w.line + Number(m[2]) - 1}: ${m[4]}`);
    } else {
      errors.push(l);
    }
  }
  return { checked: files.length, errors, status: r.status };
}

test('the extraction and the check can fail: a wrong use of the types is reported at its README line', { skip: noTsc }, () => {
  const md = [
    '# x', '', '```js', "import { loadModel } from 'doze-lm';", 'const m = await loadModel("m.gguf");',
    'for await (const t of m.generate("x")) { const n = t.mask.layers.length + t.compute; void n; }', '```', '',
    '<!-- no-typecheck -->', '```js', 'this is not code', '```', '',
    '```ts', "import { loadModel } from 'doze-lm/worker';", 'const w = await loadModel("m.gguf");',
    'const p: number = w.tokenize("x");', '```',
  ].join('\n');
  const r = typecheck([{ name: 'T.md', text: md }]);
  assert.equal(r.checked, 2, 'two blocks checked, one opted out');
  assert.equal(r.errors.length, 1, r.errors.join('\n'));
  assert.match(r.errors[0], /^T\.md:17: error TS2322: Type 'Promise<Int32Array<ArrayBufferLike>>' is not assignable to type 'number'/);
});

test('every code example of README.md and js/README.md type-checks with tsc --strict', { skip: noTsc }, () => {
  const docs = ['README.md', 'js/README.md'].map((name) => ({ name, text: readFileSync(join(root, name), 'utf8') }));
  const r = typecheck(docs);
  assert.ok(r.checked > 0, 'some blocks checked');
  assert.deepEqual(r.errors, [], `tsc --strict:\n${r.errors.join('\n')}`);
  console.log(`# ${r.checked} code blocks of README.md and js/README.md type-check with tsc --strict`);
});

// What users write: a switch over DozeError codes is checked against the
// list (a misspelt code is an error), readonly stop lists and `as const`
// messages are taken, and doze-lm/chat's chat() takes a worker's model.
test('error codes narrow; readonly stops and messages; chat() on a worker model', { skip: noTsc }, () => {
  const block = (code) => ['```ts', ...code, '```', ''];
  const md = [
    '# y', '',
    ...block([
      "import { DozeError, loadModel } from 'doze-lm';",
      "import { END_OF_TURN, chat } from 'doze-lm/chat';",
      "import { loadModel as loadInWorker } from 'doze-lm/worker';",
      "const m = await loadModel('m.gguf');",
      "const messages = [{ role: 'user', content: 'Hi' }] as const;",
      "for await (const t of m.generate('x', { stop: END_OF_TURN })) void t;",
      "for await (const t of m.chat(messages, { stop: ['\\n'] as const })) void t;",
      "const w = await loadInWorker('m.gguf');",
      'for await (const t of chat(w, messages)) void t;',
      "import { instantiateDoze, hasRelaxedSimd } from 'doze-lm/wasm';",
      "const rt = await instantiateDoze({ simd: hasRelaxedSimd() ? 'relaxed' : 'strict' });",
      "const exit: number = rt.callMain(['--version']) + rt.HEAPU8.length;",
      "rt.free(rt.writeString('x'));",
      'void exit;',
      'try { m.budget = 2; } catch (e) {',
      "  if (e instanceof DozeError) { const c: 'INVALID_ARGUMENT' | 'STATE' | string = e.code; void c; }",
      '}',
    ]),
    ...block([
      "import { DozeError } from 'doze-lm';",
      'declare const e: DozeError;',
      "switch (e.code) { case 'INVALID_ARGUMNT': break; }",
    ]),
  ].join('\n');
  const r = typecheck([{ name: 'U.md', text: md }]);
  assert.equal(r.checked, 2);
  assert.equal(r.errors.length, 1, r.errors.join('\n'));
  assert.match(r.errors[0], /^U\.md:26: error TS2678: Type '"INVALID_ARGUMNT"' is not comparable/);
});
