// sku-sales: exact rows for the samples and hand-computed cases.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { Harness, eventFromSample, eventsFromSamples } from 'projector-plugin/testing';
import * as plugin from '../sku-sales/index.js';

const { COLLECTION } = plugin;
const SAMPLES = readFileSync(new URL('../../testdata/samples.jsonl', import.meta.url), 'utf8');

let nextId = 1;
/** A sample event of `type` for `order`, with a fresh eventId unless `eventId` is given. */
function ev(/** @type {string} */ type, /** @type {string} */ order, /** @type {Record<string, unknown>} */ fields = {}) {
  const value = { type, eventId: `x-${nextId++}`, orderId: order, ...fields };
  return eventFromSample(JSON.stringify({ key: order, headers: {}, value }).replace(/"@(-?[\d.]+)"/g, '$1'));
}
const at = '2026-11-20T09:00:00Z';
/** An item; the price is written as an exact JSON number (`"@1.10"` → `1.10`). */
const item = (/** @type {string} */ sku, /** @type {number} */ quantity, /** @type {string} */ price) =>
  ({ productId: sku, productName: `Name of ${sku}`, quantity, unitPrice: `@${price}` });
const created = (/** @type {string} */ order, /** @type {any[]} */ items) =>
  ev('OrderCreated', order, { customerId: 'c', customerName: 'n', items, createdAt: at });
const added = (/** @type {string} */ order, /** @type {any} */ i) => ev('ItemAdded', order, { ...i, occurredAt: at });
const submitted = (/** @type {string} */ order) => ev('OrderSubmitted', order, { total: 0, submittedAt: at });
const cancelled = (/** @type {string} */ order) => ev('OrderCancelled', order, { cancelledAt: at });
const placed = (/** @type {string} */ order, /** @type {any[]} */ lines) => ev('OrderPlaced', order, {
  customerId: 'c', customerName: 'n', total: 0, occurredAt: at,
  lines: lines.map((l) => ({ sku: l.productId, productName: l.productName, quantity: l.quantity, unitPrice: l.unitPrice })),
});

/** @param {any[]} events */
function run(events) {
  const h = new Harness(plugin);
  const results = h.feedAll(events);
  for (const r of results) assert.equal(r.tag, 'ok', r.val);
  return h;
}

test('the spec: sku_sales keyed by sku, average computed by the host', () => {
  const spec = plugin.describe();
  assert.equal(spec.name, 'sku-sales');
  assert.equal(spec.version, 1);
  const [c] = spec.collections;
  assert.equal(c.name, COLLECTION);
  assert.deepEqual(c.primaryKey, ['sku']);
  assert.deepEqual(c.fields.map((f) => [f.name, f.type.tag]), [
    ['sku', 'text'], ['product_name', 'text'], ['units_sold', 'integer'], ['revenue', 'decimal'],
    ['orders', 'integer'], ['average_unit_price', 'decimal'],
  ]);
  assert.deepEqual(c.fields[5].computed, { tag: 'ratio', val: { numerator: 'revenue', denominator: 'units_sold', scale: 2 } });
});

test('samples give exact rows', () => {
  const h = new Harness(plugin);
  const results = h.feedAll(eventsFromSamples(SAMPLES));
  assert.deepEqual(results.map((r) => (r.tag === 'ok' ? r.val.length : r.val)), [0, 0, 4, 0, 4, 0, 2, 0, 1, 0, 0]);
  assert.deepEqual(h.rows(COLLECTION), [
    { sku: 'sku-espresso-250', product_name: 'Espresso Beans 250g', units_sold: 2, revenue: '17.80', orders: 1, average_unit_price: '8.90' },
    { sku: 'sku-filter-100', product_name: 'Paper Filters x100', units_sold: 3, revenue: '14.97', orders: 1, average_unit_price: '4.99' },
    { sku: 'sku-grinder-c2', product_name: 'Hand Grinder C2', units_sold: 1, revenue: '99.00', orders: 1, average_unit_price: '99.00' },
    { sku: 'sku-kettle-gooseneck', product_name: 'Gooseneck Kettle', units_sold: 1, revenue: '64.50', orders: 1, average_unit_price: '64.50' },
    // ord-1003 was submitted, then cancelled: counted, then subtracted again.
    { sku: 'sku-mug-stone', product_name: 'Stoneware Mug', units_sold: 0, revenue: '0.00', orders: 0, average_unit_price: null },
  ]);
  assert.deepEqual(h.logs, [['debug', 'Skipped redelivered event e-7 of order ord-1003.']]);
  assert.equal(h.stateText('ord-1003'), '{"applied":["e-6","e-7","e-8"],"status":"cancelled","lines":[]}');
  assert.equal(h.stateText('ord-1001'),
    '{"applied":["e-1","e-2","e-3","e-4"],"status":"counted","lines":[{"sku":"sku-espresso-250","productName":"Espresso Beans 250g","quantity":2,"unitPrice":8.9},{"sku":"sku-grinder-c2","productName":"Hand Grinder C2","quantity":1,"unitPrice":99.0}]}');
});

test('an order counts only once submitted', () => {
  const h = run([created('o1', [item('A', 2, '1.10')]), added('o1', item('B', 1, '0.05'))]);
  assert.deepEqual(h.rows(COLLECTION), []);
  h.feed(submitted('o1'));
  assert.deepEqual(h.rows(COLLECTION), [
    { sku: 'A', product_name: 'Name of A', units_sold: 2, revenue: '2.20', orders: 1, average_unit_price: '1.10' },
    { sku: 'B', product_name: 'Name of B', units_sold: 1, revenue: '0.05', orders: 1, average_unit_price: '0.05' },
  ]);
});

test('a cancellation after submit subtracts what was counted', () => {
  const h = run([
    created('o1', [item('A', 2, '1.10'), item('B', 1, '0.05')]),
    added('o1', item('A', 1, '1.10')),
    submitted('o1'),
    created('o2', [item('A', 5, '1.00')]),
    submitted('o2'),
  ]);
  assert.deepEqual(h.row(COLLECTION, 'A'), { sku: 'A', product_name: 'Name of A', units_sold: 8, revenue: '8.30', orders: 2, average_unit_price: '1.04' });
  h.feed(cancelled('o1'));
  assert.deepEqual(h.rows(COLLECTION), [
    { sku: 'A', product_name: 'Name of A', units_sold: 5, revenue: '5.00', orders: 1, average_unit_price: '1.00' },
    { sku: 'B', product_name: 'Name of B', units_sold: 0, revenue: '0.00', orders: 0, average_unit_price: null },
  ]);
});

test('a cancellation before submit counts nothing, and nothing after it counts', () => {
  const h = run([created('o1', [item('A', 2, '1.10')]), cancelled('o1'), submitted('o1'), added('o1', item('A', 1, '1'))]);
  assert.deepEqual(h.rows(COLLECTION), []);
});

test('legacy OrderPlaced counts at once; its cancellation subtracts', () => {
  const h = run([placed('o1', [item('A', 3, '4.99'), item('A', 1, '4.99'), item('C', 1, '64.5')])]);
  assert.deepEqual(h.row(COLLECTION, 'A'), { sku: 'A', product_name: 'Name of A', units_sold: 4, revenue: '19.96', orders: 1, average_unit_price: '4.99' });
  assert.equal(h.row(COLLECTION, 'C')?.revenue, '64.50');
  h.feed(cancelled('o1'));
  assert.equal(h.row(COLLECTION, 'A')?.units_sold, 0);
  assert.equal(h.row(COLLECTION, 'C')?.orders, 0);
});

test('an item added after submit counts at once, without counting the order twice', () => {
  const h = run([created('o1', [item('A', 1, '2.00')]), submitted('o1'), added('o1', item('A', 2, '2.50')), added('o1', item('D', 1, '9'))]);
  assert.deepEqual(h.row(COLLECTION, 'A'), { sku: 'A', product_name: 'Name of A', units_sold: 3, revenue: '7.00', orders: 1, average_unit_price: '2.33' });
  assert.deepEqual(h.row(COLLECTION, 'D'), { sku: 'D', product_name: 'Name of D', units_sold: 1, revenue: '9.00', orders: 1, average_unit_price: '9.00' });
  h.feed(cancelled('o1'));
  assert.deepEqual([h.row(COLLECTION, 'A')?.units_sold, h.row(COLLECTION, 'A')?.orders, h.row(COLLECTION, 'A')?.revenue], [0, 0, '0.00']);
});

test('redeliveries are skipped: no double count, no double subtraction', () => {
  const submit = submitted('o1');
  const cancel = cancelled('o1');
  const h = run([created('o1', [item('A', 2, '1.10')]), submit, submit]);
  assert.equal(h.row(COLLECTION, 'A')?.units_sold, 2);
  h.feedBatch([cancel, cancel, submit]);
  assert.deepEqual(h.row(COLLECTION, 'A'), { sku: 'A', product_name: 'Name of A', units_sold: 0, revenue: '0.00', orders: 0, average_unit_price: null });
  assert.equal(h.logs.length, 3);
});

test('decimals are exact to the cent and beyond', () => {
  const h = run([
    created('o1', [item('A', 1, '0.1')]), submitted('o1'),
    created('o2', [item('A', 2, '0.2')]), submitted('o2'),
    created('o3', [item('T', 3, '0.125')]), submitted('o3'),
    created('o4', [item('F', 3, '8.9')]), submitted('o4'),
  ]);
  // 0.1 + 2 × 0.2 = 0.50 exactly (binary floats would give 0.5000000000000001).
  assert.deepEqual(h.row(COLLECTION, 'A'), { sku: 'A', product_name: 'Name of A', units_sold: 3, revenue: '0.50', orders: 2, average_unit_price: '0.17' });
  // 3 × 0.125 = 0.375 is kept exact, not rounded; the average 0.125 rounds half away to 0.13.
  assert.deepEqual(h.row(COLLECTION, 'T'), { sku: 'T', product_name: 'Name of T', units_sold: 3, revenue: '0.375', orders: 1, average_unit_price: '0.13' });
  assert.equal(h.row(COLLECTION, 'F')?.revenue, '26.70');
});

test('a malformed event fails with the field named and leaves no state', () => {
  const h = run([created('o1', [item('A', 1, '1')])]);
  const bad = ev('ItemAdded', 'o1', { productId: 'B', productName: 'b', quantity: 1, unitPrice: '2', occurredAt: at });
  const result = h.feed(bad);
  assert.equal(result.tag, 'err');
  assert.match(result.val, /^field `unitPrice`: invalid type: string "2", expected a JSON number/);
  h.feed(submitted('o1'));
  assert.deepEqual(h.rows(COLLECTION).map((r) => r.sku), ['A']);
});
