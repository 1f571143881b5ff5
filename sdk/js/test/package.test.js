// The package as its users see it: versioned with the WIT (its version is the WIT package's, and
// the contract it ships is the repository's wit/projection.wit, byte for byte), reachable
// through its `exports`, and typed by committed declarations that `npm run types` writes from
// the JSDoc.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const PACKAGE = join(import.meta.dirname, '..');
const REPOSITORY_WIT = join(PACKAGE, '..', '..', 'wit', 'projection.wit');
const manifest = JSON.parse(readFileSync(join(PACKAGE, 'package.json'), 'utf8'));

test('the version is the WIT package version', () => {
  const declared = /^package projector:projection@(\S+);/m.exec(readFileSync(REPOSITORY_WIT, 'utf8'));
  assert.ok(declared, 'no package line in wit/projection.wit');
  assert.equal(manifest.version, declared[1]);
});

test('the bundled WIT is the repository WIT', () => {
  const bundled = join(PACKAGE, 'wit', 'projection.wit');
  assert.ok(readFileSync(bundled).equals(readFileSync(REPOSITORY_WIT)), `copy wit/projection.wit to ${bundled}`);
});

test('the exports resolve: the helper, its testing module and the WIT', async () => {
  const helper = await import('projector-plugin');
  const testing = await import('projector-plugin/testing');
  assert.equal(typeof helper.projection, 'function');
  assert.equal(typeof testing.Harness, 'function');
  const wit = fileURLToPath(import.meta.resolve('projector-plugin/wit/projection.wit'));
  assert.equal(wit, join(PACKAGE, 'wit', 'projection.wit'));
});

test('the committed declarations are what the strictly checked JSDoc gives', () => {
  const tsc = join(PACKAGE, 'node_modules', 'typescript', 'bin', 'tsc');
  assert.ok(existsSync(tsc), `TypeScript is not installed: run \`npm ci\` in ${PACKAGE}`);
  const out = mkdtempSync(join(tmpdir(), 'projector-plugin-types-'));
  try {
    execFileSync(process.execPath, [tsc, '-p', PACKAGE, '--outDir', out], { stdio: 'pipe' });
    const committed = readdirSync(join(PACKAGE, 'types')).sort();
    assert.deepEqual(committed, readdirSync(out).sort());
    for (const name of committed) {
      const fresh = readFileSync(join(out, name), 'utf8');
      assert.equal(readFileSync(join(PACKAGE, 'types', name), 'utf8'), fresh, `types/${name} is stale: run \`npm run types\``);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
