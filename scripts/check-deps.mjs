// Fails (exit 1, naming what is missing) when a dev dependency in
// package.json is not installed: a missing one must fail the suite, never
// make tests skip. (Checked on disk: several packages do not export their
// package.json, so require.resolve cannot be used for all of them.)
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const missing = Object.keys(pkg.devDependencies || {})
  .filter((name) => !existsSync(join(root, 'node_modules', ...name.split('/'), 'package.json')));
if (missing.length) {
  console.error(`missing npm dev dependencies: ${missing.join(', ')}`);
  console.error('run: npm install --omit=optional --no-audit --no-fund --prefer-offline');
  process.exit(1);
}
