// order-summaries: the same rows, state and logs as the Rust plugin's tests.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { Harness, eventFromSample, eventsFromSamples } from 'projector-plugin/testing';
import * as plugin from '../order-summaries/index.js';

const { COLLECTION } = plugin;
const SAMPLES = readFileSync(new URL('../../testdata/samples.jsonl', import.meta.url), 'utf8');
const events = () => eventsFromSamples(SAMPLES);

function runSamples() {
  const h = new Harness(plugin);
  const results = h.feedAll(events());
  // e-2 (ItemAdded) increments and upserts; the duplicate e-7 and LoyaltyPointsGranted yield nothing.
  assert.deepEqual(results.map((r) => (r.tag === 'ok' ? r.val.length : r.val)), [1, 2, 1, 1, 1, 1, 1, 0, 1, 0, 1]);
  return h;
}

test('the spec matches the Rust plugin', () => {
  const spec = plugin.describe();
  assert.equal(spec.name, 'order-summaries');
  assert.equal(spec.version, 1);
  assert.equal(spec.description, 'One summary row per order, for order lists and pagination.');
  const [c] = spec.collections;
  assert.equal(c.name, COLLECTION);
  assert.deepEqual(c.fields.map((f) => f.name),
    ['order_id', 'customer_id', 'customer_name', 'status', 'total', 'item_count', 'created_at', 'updated_at']);
  assert.deepEqual(c.primaryKey, ['order_id']);
});

test('samples give exact rows', () => {
  const h = runSamples();
  assert.deepEqual(h.rows(COLLECTION), [
    {
      order_id: 'ord-1001', customer_id: 'cust-7', customer_name: 'Zoë Müller',
      status: 'SHIPPED', total: '116.80', item_count: 2,
      created_at: '2026-11-20T09:00:00Z', updated_at: '2026-11-21T15:30:00Z',
    },
    {
      order_id: 'ord-1002', customer_id: 'cust-9', customer_name: 'Kenji Watanabe',
      status: 'SHIPPED', total: '79.47', item_count: 2,
      created_at: '2026-11-20T23:59:59.999Z', updated_at: '2026-11-22T01:00:00Z',
    },
    {
      order_id: 'ord-1003', customer_id: 'cust-7', customer_name: 'Zoë Müller',
      status: 'CANCELLED', total: '48.00', item_count: 1,
      created_at: '2026-11-21T08:00:00Z', updated_at: '2026-11-21T10:00:00Z',
    },
  ]);
  assert.equal(h.row(COLLECTION, 'ord-1004'), undefined, 'LoyaltyPointsGranted is skipped');
  assert.deepEqual(h.logs, [['debug', 'Skipped redelivered event e-7 of order ord-1003.']]);
});

test('the same samples in one batch give the same rows', () => {
  const h = new Harness(plugin);
  h.feedBatch(events());
  assert.deepEqual(h.rows(COLLECTION), runSamples().rows(COLLECTION));
});

test('open order total is the sum of lines', () => {
  const h = new Harness(plugin);
  h.feedAll(events().slice(0, 2));
  const row = h.row(COLLECTION, 'ord-1001');
  assert.deepEqual([row?.status, row?.total, row?.item_count], ['CREATED', '116.80', 2]);
  assert.equal(row?.updated_at, '2026-11-20T09:01:10Z');
});

test('redelivery after later events changes nothing', () => {
  const h = runSamples();
  const before = h.rows(COLLECTION);
  for (const event of events()) assert.deepEqual(h.feed(event), { tag: 'ok', val: [] });
  assert.deepEqual(h.rows(COLLECTION), before);
  assert.equal(h.stateText('ord-1001'), '{"applied":["e-1","e-2","e-3","e-4"]}');
});

test('state bytes match the Rust plugin', () => {
  const h = new Harness(plugin);
  h.feedAll(events().slice(0, 2));
  assert.equal(h.stateText('ord-1001'), '{"applied":["e-1","e-2"]}');
});

test('a malformed event is an error naming the field and leaves no state', () => {
  const h = new Harness(plugin);
  const bad = eventFromSample(
    '{"key":"ord-9","headers":{"__TypeId__":"x.OrderSubmitted"},"value":{"eventId":"e-90","orderId":"ord-9","submittedAt":"2026-11-20T09:02:00Z"}}',
  );
  const result = h.feed(bad);
  assert.equal(result.tag, 'err');
  assert.match(result.val, /missing field `total`/);
  assert.deepEqual(h.rows(COLLECTION), []);
  assert.equal(h.stateText('ord-9'), undefined, 'a failed event is not marked applied');
});

test('malformed known events name the field; a key mismatch is refused', () => {
  const cases = [
    ['{"type":"OrderSubmitted","eventId":"e","orderId":"o","total":"lots","submittedAt":"2026-11-20T09:02:00Z"}', 'field `total`'],
    ['{"type":"OrderShipped","eventId":"e","orderId":"o","carrier":"DHL","trackingNumber":"1","shippedAt":"tomorrow"}', 'field `shippedAt`: invalid timestamp'],
    ['{"type":"ItemAdded","eventId":"e","orderId":"o","productId":"p","productName":"n","quantity":1.5,"unitPrice":1,"occurredAt":"2026-11-20T09:02:00Z"}', 'field `quantity`'],
    ['{"type":"OrderCreated","eventId":"e","orderId":"o","customerId":"c","customerName":"n","items":[{"productId":"p","productName":"n","quantity":1,"unitPrice":"1"}],"createdAt":"2026-11-20T09:02:00Z"}', 'field `items[0].unitPrice`'],
    ['{"type":"OrderCancelled","eventId":"e","orderId":"o2","cancelledAt":"2026-11-20T09:02:00Z"}', 'field `orderId`: `o2` differs from the record key `o`'],
  ];
  for (const [value, expected] of cases) {
    const result = new Harness(plugin).feed(eventFromSample(`{"key":"o","headers":{},"value":${value}}`));
    assert.equal(result.tag, 'err', value);
    assert.ok(result.val.includes(expected), `${expected}: ${result.val}`);
  }
});

test('edge cases: legacy order, unseen order, unknown types, in-batch redelivery, failed then fixed event', () => {
  const h = new Harness(plugin);
  const edge = eventsFromSamples(readFileSync(new URL('./fixtures/edge-cases.jsonl', import.meta.url), 'utf8'));
  const results = h.feedBatch(edge);
  assert.deepEqual(results.map((r) => r.tag === 'ok' ? r.val.length : 'err'),
    [1, 2, 0, 0, 0, 1, 0, 2, 1, 1, 1, 'err', 1, 'err', 'err', 'err', 'err', 1, 'err', 1, 1]);
  assert.deepEqual(h.row(COLLECTION, 'ord-2001'), {
    order_id: 'ord-2001', customer_id: 'cust-1', customer_name: 'Ada "Lovelace" é', status: 'CANCELLED',
    total: '10.01', item_count: 2, created_at: '2026-11-20T09:15:30.123456Z', updated_at: '2026-11-21T05:00:00Z',
  });
  assert.deepEqual(h.row(COLLECTION, 'ord-2002'), {
    order_id: 'ord-2002', customer_id: null, customer_name: null, status: null, total: '20.00', item_count: 1,
    created_at: null, updated_at: '2026-11-20T10:00:00.500Z',
  });
  assert.equal(h.row(COLLECTION, 'ord-2004')?.total, '0.60');
  assert.equal(h.row(COLLECTION, 'ord-2004')?.item_count, 3);
  assert.equal(h.row(COLLECTION, 'ord-2004')?.created_at, '2026-11-21T03:00:00Z');
  assert.equal(h.row(COLLECTION, 'ord-2005')?.total, '5.00', 'the fixed e-30 applies after the failed one');
  assert.equal(h.row(COLLECTION, 'ord-2010')?.total, '-0.13');
  assert.equal(h.stateText('ord-2004'), '{"applied":["e-24","e-25","e-26","e-27"]}');
  assert.equal(h.stateText('ord-2006'), undefined);
  assert.deepEqual(h.logs, [['debug', 'Skipped redelivered event e-24 of order ord-2004.']]);
});
