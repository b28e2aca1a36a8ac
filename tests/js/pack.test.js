// What the published package `doze-lm` holds: `npm pack --dry-run --json` in
// js/ must list the wasm, the types, the worker, the CLI and the default
// model with its gates (byte sizes equal to the sources), and nothing else
// (no tests, no build trees, no C sources). Then the real tarball, unpacked
// as node_modules/doze-lm of a scratch project, loads its own model through
// `doze-lm/models` and writes English — what js/README.md's first example does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { root, scratch } from './helpers.js';

const js = join(root, 'js');

function npm(args, cwd) {
  const r = spawnSync('npm', args, { cwd, encoding: 'utf8', maxBuffer: 1 << 26 });
  assert.equal(r.status, 0, `npm ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

test('npm pack: the wasm, types, worker, CLI and the default model; nothing else', () => {
  const [info] = JSON.parse(npm(['pack', '--dry-run', '--json', '--ignore-scripts'], js));
  const files = new Map(info.files.map((f) => [f.path, f.size]));
  const required = [
    'package.json', 'README.md', 'cli.js', 'index.d.ts', 'worker.d.ts', 'models.d.ts', 'chat.d.ts', 'wasm.d.ts',
    'dist/doze.wasm', 'dist/doze-relaxed.wasm', 'dist/doze-mt.wasm', 'dist/doze-mt-relaxed.wasm', 'src/pool.js', 'src/pool-worker.js', 'src/index.js', 'src/worker.js', 'src/worker-thread.js', 'src/wasm.js', 'src/models.js',
    'src/chat.js', 'src/cache.js', 'src/node.js',
    'models/doze-stories.gguf', 'models/doze-stories.gates.gguf', 'models/doze-stories.gates.ppl.json',
  ];
  for (const f of required) assert.ok(files.has(f), `the package lacks ${f}`);
  for (const f of ['doze.wasm', 'doze-stories.gguf', 'doze-stories.gates.gguf']) {
    const src = f === 'doze.wasm' ? join(js, 'dist', f) : join(root, 'models', f);
    const packed = f === 'doze.wasm' ? `dist/${f}` : `models/${f}`;
    assert.equal(files.get(packed), statSync(src).size, `${packed} is not the file it should be`);
  }
  const allowed = /^(package\.json|README\.md|cli\.js|[a-z]+\.d\.ts|dist\/doze(-relaxed|-mt|-mt-relaxed)?\.wasm|src\/[a-z-]+\.js|models\/(doze-stories\.(gguf|gates\.gguf|gates\.ppl\.json)|README\.md))$/;
  const stray = [...files.keys()].filter((f) => !allowed.test(f));
  assert.deepEqual(stray, [], 'files that do not belong in the package');
  // a model and a runtime (four builds of it: strict and relaxed SIMD, each
  // with and without threads; a page fetches one), not a development tree:
  // under 8 MB unpacked
  assert.ok(info.unpackedSize < 8e6, `unpacked size ${info.unpackedSize}`);

  const pkg = JSON.parse(readFileSync(join(js, 'package.json'), 'utf8'));
  assert.equal(pkg.name, 'doze-lm');
  assert.match(pkg.license, /\S/);
  assert.match(pkg.repository.url, /^git\+https:\/\//);
  assert.ok(pkg.keywords.includes('gguf') && pkg.keywords.includes('webassembly'));
  assert.match(pkg.engines.node, /^>=\d+/);
  assert.equal(pkg.exports['./models'].default, './src/models.js');
  // every entry's code and types are in the package
  for (const [entry, target] of Object.entries(pkg.exports)) {
    if (entry.includes('*')) continue;
    for (const f of typeof target === 'string' ? [target] : Object.values(target)) {
      assert.ok(files.has(f.replace(/^\.\//, '')), `exports['${entry}'] points at ${f}, which is not packed`);
    }
  }
  assert.ok(files.has(pkg.types.replace(/^\.\//, '')) && files.has(pkg.main.replace(/^\.\//, '')));
  // the budget costs ship measured numbers, dense first and getting worse
  const costs = JSON.parse(readFileSync(join(js, 'models', 'doze-stories.gates.ppl.json'), 'utf8'));
  assert.equal(costs.points[0].budget, 1);
  for (let i = 1; i < costs.points.length; i++) assert.ok(costs.points[i].ppl > costs.points[i - 1].ppl);
});

test('the packed doze-lm, installed in a scratch project, loads its own model and writes English', { timeout: 60000 }, () => {
  const dir = scratch();
  try {
    npm(['pack', '--ignore-scripts', '--pack-destination', dir], js);
    const tgz = JSON.parse(npm(['pack', '--dry-run', '--json', '--ignore-scripts'], js))[0].filename;
    const pkgDir = join(dir, 'node_modules', 'doze-lm');
    mkdirSync(pkgDir, { recursive: true });
    const tar = spawnSync('tar', ['-xzf', join(dir, tgz), '-C', pkgDir, '--strip-components=1']);
    assert.equal(tar.status, 0, String(tar.stderr));
    writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
    writeFileSync(join(dir, 'main.js'), `
import { loadModel } from 'doze-lm';
import { defaultModelUrl } from 'doze-lm/models';
const model = await loadModel(defaultModelUrl());
let text = '';
for await (const t of model.generate('Once upon a time', { maxTokens: 40, temperature: 0 })) text += t.text;
console.log(text);
model.dispose();
`);
    const r = spawnSync(process.execPath, ['main.js'], { cwd: dir, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^, there was a little girl named Lily\. She loved to play/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
