// The conformance corpus (tests/conformance/*.json of the repository) run through the
// JavaScript harness: the same declarations, operations and expected rows or rejections the
// host's end-to-end runner checks against PostgreSQL.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { Harness } from '../testing.js';

const CORPUS = join(import.meta.dirname, '..', '..', '..', 'tests', 'conformance');

/** The WIT-shaped spec (what `describe` returns) of a declaration in the registry's JSON form. */
function declaration(document) {
  return {
    name: document.name,
    version: document.version,
    description: document.description ?? '',
    collections: document.collections.map((c) => ({
      name: c.name,
      fields: c.fields.map((f) => ({
        name: f.name,
        type: typeof f.type === 'object' ? { tag: 'list', val: f.type.list } : { tag: f.type },
        nullable: f.nullable ?? false,
        searchable: f.searchable ?? false,
        filterable: f.filterable ?? false,
        sortable: f.sortable ?? false,
        computed: f.computed === undefined ? undefined : { tag: 'ratio', val: { ...f.computed.ratio } },
        description: f.description ?? '',
      })),
      primaryKey: c.primary_key,
      sink: c.sink,
      description: c.description ?? '',
    })),
  };
}

/** A WIT value: 64-bit integers as BigInt, as the generated bindings hand them over. */
function value(item) {
  if (item === null) return { tag: 'null' };
  const [[tag, val]] = Object.entries(item);
  if (tag === 'integer' || tag === 'timestamp') return { tag, val: BigInt(val) };
  if (tag === 'list') return { tag, val: val.map(value) };
  return { tag, val };
}

function operation(item) {
  const [[tag, body]] = Object.entries(item);
  const val = { collection: body.collection, key: body.key.map(value) };
  if (tag !== 'delete') val.fields = body.fields.map(([name, v]) => ({ name, value: value(v) }));
  return { tag, val };
}

function run(document, batches) {
  const events = batches.flat();
  let harness;
  try {
    const spec = declaration(document);
    harness = new Harness({
      describe: () => spec,
      handle: (batch) => batch.map((event) => ({ tag: 'ok', val: events[event.offset].map(operation) })),
    });
  } catch (e) {
    return ['declaration', e.message];
  }
  let offset = 0;
  for (const batch of batches) {
    try {
      harness.feedBatch(batch.map(() => ({ offset: offset++ })));
    } catch (e) {
      return ['operation', e.message];
    }
  }
  return ['rows', Object.fromEntries(harness.spec.collections.map((c) => [c.name, harness.rows(c.name)]))];
}

/** Equal in the corpus's sense: numbers of equal value, everything else exactly. */
function same(actual, expected) {
  if (typeof actual === 'bigint') return typeof expected === 'number' && BigInt(expected) === actual;
  if (typeof actual === 'number' || typeof expected === 'number') return actual === expected;
  if (Array.isArray(actual) || Array.isArray(expected)) {
    return Array.isArray(actual) && Array.isArray(expected) && actual.length === expected.length &&
      actual.every((a, k) => same(a, expected[k]));
  }
  if (actual && expected && typeof actual === 'object' && typeof expected === 'object') {
    const keys = Object.keys(actual);
    return keys.length === Object.keys(expected).length && keys.every((k) => k in expected && same(actual[k], expected[k]));
  }
  return actual === expected;
}

test('the JavaScript harness passes the conformance corpus', () => {
  let count = 0;
  const failures = [];
  for (const file of readdirSync(CORPUS).filter((f) => f.endsWith('.json')).sort()) {
    const document = JSON.parse(readFileSync(join(CORPUS, file), 'utf8'));
    for (const c of document.cases) {
      count += 1;
      const [kind, result] = run(c.declaration ?? document.declaration, c.batches);
      const passed = 'error' in c.expect ? kind === c.expect.error : kind === 'rows' && same(result, c.expect.rows);
      if (!passed) {
        failures.push(`${file}: ${c.name}: got ${kind} ${JSON.stringify(result, (_, v) => (typeof v === 'bigint' ? String(v) : v))}, expected ${JSON.stringify(c.expect)}`);
      }
    }
  }
  assert.ok(count >= 30, `the corpus has ${count} cases`);
  assert.deepEqual(failures, [], `${failures.length} of ${count} cases failed:\n${failures.join('\n')}`);
});
