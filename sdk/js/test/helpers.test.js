// Unit tests of the helper (projector.js): exact decimals, exact JSON, timestamps, values, spec, context.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  Decimal,
  Event,
  Timestamp,
  date,
  del,
  field,
  float,
  formatDate,
  increment,
  json,
  list,
  money,
  parseDate,
  parseJson,
  postgres,
  projection,
  ProjectionError,
  schema as s,
  spec,
  stringifyJson,
  sum,
  toWitValue,
  upsert,
  utf8Decode,
  utf8Encode,
} from '../projector.js';
import { Harness, eventFromSample } from '../testing.js';

const d = (/** @type {string} */ text) => Decimal.parse(text);

test('decimals parse from text and print in plain notation with their scale', () => {
  assert.equal(d('116.8').toString(), '116.8');
  assert.equal(d('99.0').toString(), '99.0');
  assert.equal(d('-0.05').toString(), '-0.05');
  assert.equal(d('1e2').toString(), '100');
  assert.equal(d('1.5E-3').toString(), '0.0015');
  assert.equal(d('1.50e1').toString(), '15.0');
  assert.equal(d('0.30000000000000000001').toString(), '0.30000000000000000001');
  assert.throws(() => d('lots'), RangeError);
  assert.throws(() => d('1e99999'), RangeError);
  assert.throws(() => Decimal.from(0.1), RangeError, 'floats are refused');
  assert.equal(Decimal.from(7).toString(), '7');
  assert.equal(Decimal.from(7n).toString(), '7');
});

test('decimal arithmetic is exact', () => {
  assert.equal(d('0.1').add(d('0.2')).toString(), '0.3');
  assert.equal(d('0.1').add('0.2').money().toString(), '0.30');
  assert.equal(d('8.9').mul(2).toString(), '17.8');
  assert.equal(money(d('8.9').mul(2)).toString(), '17.80');
  assert.equal(sum([d('64.5'), d('4.99').mul(3)]).toString(), '79.47');
  assert.equal(sum([]).money().toString(), '0.00');
  assert.equal(d('1.00').sub('2.5').toString(), '-1.50');
  assert.equal(d('-3').mul('-0.5').toString(), '1.5');
  assert.equal(d('0.1').add('0.1').add('0.1').toString(), '0.3');
  assert.equal(d('2.50').cmp('2.5'), 0);
  assert.equal(d('-1').cmp('0.001'), -1);
  assert.ok(d('0.000').isZero());
  assert.equal(d('10').div('3', 2).toString(), '3.33');
  assert.equal(d('5').div('3', 2).toString(), '1.67');
  assert.equal(d('-5').div('3', 2).toString(), '-1.67');
  assert.equal(d('196.27').div(2, 2).toString(), '98.14');
});

test('money rounds half away from zero to exactly 2 places', () => {
  const m = (/** @type {string} */ t) => money(t).toString();
  assert.equal(m('116.8'), '116.80');
  assert.equal(m('99'), '99.00');
  assert.equal(m('79.47'), '79.47');
  assert.equal(m('0'), '0.00');
  assert.equal(m('0.125'), '0.13');
  assert.equal(m('-0.125'), '-0.13');
  assert.equal(m('0.135'), '0.14');
  assert.equal(m('2.674999'), '2.67');
  assert.equal(m('-2.675'), '-2.68');
  assert.equal(m('0.005'), '0.01');
  assert.equal(m('-0.004'), '0.00');
  assert.equal(d('1.2345').round(3).toString(), '1.235');
  assert.equal(d('1.2').round(3).toString(), '1.2', 'round never adds places');
});

test('JSON parsing keeps every number exact', () => {
  const v = /** @type {any} */ (parseJson('{"a":8.9,"b":99.0,"c":[0.10,2,-0],"big":12345678901234567890,"s":"\\u00e9\\n"}'));
  assert.ok(v.a instanceof Decimal);
  assert.equal(v.a.toString(), '8.9');
  assert.equal(v.b.toString(), '99.0');
  assert.equal(v.c[0].toString(), '0.10');
  assert.equal(v.c[1], 2);
  assert.equal(v.big, 12345678901234567890n);
  assert.equal(v.s, 'é\n');
  assert.equal(stringifyJson(v), '{"a":8.9,"b":99.0,"c":[0.10,2,0],"big":12345678901234567890,"s":"é\\n"}');
  assert.equal(v.a.add(v.c[0]).toString(), '9.00');
  const p = /** @type {any} */ (parseJson('{"__proto__": 1}'));
  assert.equal(Object.getPrototypeOf(p), Object.prototype, 'a __proto__ member is data');
  assert.equal(p.__proto__, 1);
  assert.throws(() => parseJson('{"a":1,}'), /key must be a string at line 1 column 8/);
  assert.throws(() => parseJson('{"a":1} x'), /trailing characters at line 1 column 9/);
  assert.throws(() => parseJson('[1, tru]'), /expected value/);
  assert.throws(() => parseJson(''), /EOF while parsing a value/);
});

test('timestamps parse RFC 3339 to microseconds and print like the host', () => {
  const t = Timestamp.parse('2026-11-22T10:15:30.123Z');
  assert.equal(t.micros, 1_795_342_530_123_000n);
  assert.equal(Timestamp.parse('2026-11-22T11:15:30.123+01:00').micros, t.micros);
  assert.equal(Timestamp.parse('2026-11-22T10:15:30.123456789Z').micros, 1_795_342_530_123_456n);
  assert.equal(Timestamp.parse('2026-11-20T09:00:00.000Z').toString(), '2026-11-20T09:00:00Z');
  assert.equal(Timestamp.parse('2026-11-20T23:59:59.999Z').toString(), '2026-11-20T23:59:59.999Z');
  assert.equal(Timestamp.parse('2026-11-20T23:59:59.000001Z').toString(), '2026-11-20T23:59:59.000001Z');
  assert.equal(Timestamp.parse('1969-12-31T23:00:00Z').days(), -1);
  assert.equal(formatDate(Timestamp.parse('2026-11-21T00:30:00+01:00').days()), '2026-11-20');
  assert.equal(Timestamp.parse('1969-12-31T23:59:59.5Z').toString(), '1969-12-31T23:59:59.500Z');
  for (const bad of ['2026-11-22', '2026-11-22 10:15:30', 'yesterday', '2026-11-22T10:15:30', '2026-02-30T00:00:00Z']) {
    assert.throws(() => Timestamp.parse(bad), (e) => e instanceof ProjectionError && e.message.includes(bad));
  }
  assert.equal(parseDate('2026-11-20'), 20_777);
  assert.equal(formatDate(0), '1970-01-01');
  assert.throws(() => parseDate('2026-02-30'), /invalid date/);
});

test('values map to the WIT variants', () => {
  assert.deepEqual(toWitValue('a'), { tag: 'text', val: 'a' });
  assert.deepEqual(toWitValue(3), { tag: 'integer', val: 3n });
  assert.deepEqual(toWitValue(null), { tag: 'null' });
  assert.deepEqual(toWitValue(true), { tag: 'boolean', val: true });
  assert.deepEqual(toWitValue(money('116.8')), { tag: 'decimal', val: '116.80' });
  assert.deepEqual(toWitValue(Timestamp.parse('1970-01-01T00:00:01Z')), { tag: 'timestamp', val: 1_000_000n });
  assert.deepEqual(toWitValue(date('1970-01-02')), { tag: 'date', val: 1 });
  assert.deepEqual(toWitValue(float(0.5)), { tag: 'float', val: 0.5 });
  assert.deepEqual(toWitValue(json({ SHIPPED: 1, avg: d('8.90') })), { tag: 'json', val: '{"SHIPPED":1,"avg":8.90}' });
  assert.deepEqual(toWitValue(list(['x', 2])), { tag: 'list', val: [{ tag: 'text', val: 'x' }, { tag: 'integer', val: 2n }] });
  assert.throws(() => toWitValue(0.5), /float/);
  assert.throws(() => toWitValue({}), /wrap it/);
});

test('operations and specs convert to the WIT shapes', () => {
  assert.deepEqual(upsert('t', 'k').set('a', 'x').set('b', undefined).toWit(), {
    tag: 'upsert',
    val: { collection: 't', key: [{ tag: 'text', val: 'k' }], fields: [
      { name: 'a', value: { tag: 'text', val: 'x' } },
      { name: 'b', value: { tag: 'null' } },
    ] },
  });
  const inc = increment('t', [date('2026-11-20'), 'x']).add('n', 1).add('by_status', { SHIPPED: 1 }).toWit();
  assert.deepEqual(inc.val.key, [{ tag: 'date', val: 20_777 }, { tag: 'text', val: 'x' }]);
  assert.deepEqual(inc.val.fields[1].value, { tag: 'json', val: '{"SHIPPED":1}' });
  assert.deepEqual(del('t', 'k').toWit(), { tag: 'delete', val: { collection: 't', key: [{ tag: 'text', val: 'k' }] } });
  const wit = spec('p', 3, 'd', [
    postgres('t', 'one row')
      .field(field.text('id').description('the id'))
      .field(field.decimal('total').sortable())
      .field(field.integer('n').required())
      .field(field.decimal('avg').ratio('total', 'n', 2))
      .field(field.list('tags', 'text').searchable().filterable())
      .primaryKey('id'),
  ]);
  const [id, total, n, avg, tags] = wit.collections[0].fields;
  assert.deepEqual(id, { name: 'id', type: { tag: 'text' }, nullable: false, searchable: false, filterable: false,
    sortable: false, computed: undefined, description: 'the id' });
  assert.equal(total.nullable, true);
  assert.equal(total.sortable, true);
  assert.equal(n.nullable, false);
  assert.deepEqual(avg.computed, { tag: 'ratio', val: { numerator: 'total', denominator: 'n', scale: 2 } });
  assert.deepEqual(tags.type, { tag: 'list', val: 'text' });
  assert.deepEqual(wit.collections[0].primaryKey, ['id']);
  assert.equal(wit.collections[0].sink, 'postgres');
});

test('events: type from the header simple name or the value, last header wins', () => {
  const e = new Event(eventFromSample('{"key":"ord-1","headers":{"__TypeId__":"a.b.OrderCreated","x":"1"},"value":{"type":"Other"}}'));
  assert.equal(e.type, 'OrderCreated');
  assert.equal(e.key, 'ord-1');
  assert.equal(utf8Decode(/** @type {Uint8Array} */ (e.header('x'))), '1');
  assert.equal(new Event(eventFromSample('{"key":"o","headers":{},"value":{"type":"OrderShipped"}}')).type, 'OrderShipped');
  assert.equal(new Event(eventFromSample('{"key":"o","headers":{},"value":{"type":42}}')).type, undefined);
  assert.equal(new Event(eventFromSample('{"key":"o","headers":{},"value":null}')).type, undefined);
  const last = new Event({ topic: 't', partition: 0, offset: 0n, headers: [
    { key: 'a', value: utf8Encode('1') }, { key: 'a', value: utf8Encode('2') }] });
  assert.equal(last.headerText('a'), '2');
  assert.equal(utf8Decode(Uint8Array.from([0xff])), undefined);
  assert.equal(utf8Decode(utf8Encode('Zoë 🎉')), 'Zoë 🎉');
});

test('schema decoding names the field, in serde wording', () => {
  const Item = s.record('Item', { unitPrice: s.number });
  const Submitted = s.record('Submitted', { total: s.decimal, submittedAt: s.timestamp, items: s.optional(s.list(Item)) });
  const decode = (/** @type {string} */ value) => new Event(eventFromSample(`{"key":"o","headers":{},"value":${value}}`)).decode(Submitted);
  const ok = decode('{"total":116.8,"submittedAt":"2026-11-20T09:02:00.000Z"}');
  assert.equal(ok.total.toString(), '116.8');
  assert.equal(ok.items, undefined);
  assert.throws(() => decode('{"submittedAt":"2026-11-20T09:02:00Z"}'), { message: 'missing field `total` at line 1 column 38' });
  assert.throws(() => decode('{"total":1,"submittedAt":"soon"}'), /^ProjectionError: field `submittedAt`: invalid timestamp `soon`/);
  assert.throws(() => decode('{"total":1,"submittedAt":"2026-11-20T09:02:00Z","items":[{"unitPrice":true}]}'),
    /field `items\[0\].unitPrice`: invalid type: boolean `true`, expected a JSON number/);
  assert.throws(() => decode('{"total":"lots","submittedAt":"2026-11-20T09:02:00Z"}'),
    /field `total`: invalid value: string "lots", expected a Decimal/);
  assert.throws(() => new Event({ topic: 't', partition: 0, offset: 0n, headers: [] }).decode(Submitted), /tombstone/);
});

/** A tiny projection: counts events per key, keeps the last offset in state, fails on no key. */
const counter = projection({
  describe: () => spec('counter', 1, 'Counts events per key.', [
    postgres('counts', 'One row per key.')
      .field(field.text('key'))
      .field(field.integer('n').required())
      .field(field.json('seen'))
      .primaryKey('key'),
  ]),
  handle(event, ctx) {
    ctx.setState('last', { offset: event.offset });
    const key = event.key;
    if (key === undefined) throw new ProjectionError('no key');
    if (key === 'boom') JSON.parse('{');
    ctx.debug(`counting ${key}`);
    return increment('counts', key).add('n', 1).add('seen', { [event.offset % 2n ? 'odd' : 'even']: 1 });
  },
});

test('a failed event is an error and leaves no state; later events still run', () => {
  const h = new Harness(counter);
  const a = (/** @type {number} */ offset) => eventFromSample('{"key":"a","headers":{},"value":{}}', offset);
  const none = eventFromSample('{"key":null,"headers":{},"value":{}}', 2);
  const boom = eventFromSample('{"key":"boom","headers":{},"value":{}}', 3);
  const results = h.feedBatch([a(0), a(1), none, boom, a(4)]);
  assert.deepEqual(results.map((r) => r.tag), ['ok', 'ok', 'err', 'err', 'ok']);
  assert.equal(results[2].val, 'no key');
  assert.match(results[3].val, /^SyntaxError: /);
  assert.deepEqual(h.rows('counts'), [{ key: 'a', n: 3, seen: { even: 2, odd: 1 } }]);
  assert.equal(h.stateText('last'), '{"offset":4}');
  assert.equal(h.logs.length, 3);
  h.feed(a(5));
  h.feed(a(7));
  assert.deepEqual(h.row('counts', 'a')?.seen, { even: 2, odd: 3 });
});

test('the harness applies the host semantics: merge, increments, zero keys removed, ratios', () => {
  const plugin = projection({
    describe: () => spec('stats', 1, 'Stats.', [
      postgres('days', 'One row per day.')
        .field(field.date('day'))
        .field(field.integer('n'))
        .field(field.decimal('revenue'))
        .field(field.decimal('average').ratio('revenue', 'n', 2))
        .field(field.json('by_status'))
        .field(field.text('note'))
        .primaryKey('day'),
    ]),
    handle(event) {
      const ops = /** @type {any} */ (event.json());
      return ops.map((/** @type {any} */ op) => {
        if (op.kind === 'del') return del('days', date(op.day));
        if (op.kind === 'set') return upsert('days', date(op.day)).set('note', op.note);
        return increment('days', date(op.day)).add('n', op.n).add('revenue', Decimal.parse(op.revenue)).add('by_status', op.status);
      });
    },
  });
  const h = new Harness(plugin);
  const feed = (/** @type {unknown[]} */ ops) => h.feed(eventFromSample(JSON.stringify({ key: 'k', headers: {}, value: ops })));
  feed([{ kind: 'inc', day: 7, n: 1, revenue: '116.80', status: { SUBMITTED: 1 } }]);
  feed([{ kind: 'inc', day: 7, n: 1, revenue: '79.47', status: { PLACED: 1 } }]);
  feed([{ kind: 'inc', day: 7, n: 0, revenue: '0.00', status: { SUBMITTED: -1, SHIPPED: 1 } }, { kind: 'set', day: 7, note: 'x' }]);
  assert.deepEqual(h.rows('days'), [
    { day: '1970-01-08', n: 2, revenue: '196.27', average: '98.14', by_status: { PLACED: 1, SHIPPED: 1 }, note: 'x' },
  ]);
  feed([{ kind: 'inc', day: 2, n: 0, revenue: '5', status: {} }]);
  assert.equal(h.row('days', date(2))?.average, null, 'zero denominator');
  feed([{ kind: 'del', day: 7 }]);
  assert.deepEqual(h.rows('days').map((r) => r.day), ['1970-01-03']);
  assert.throws(() => feed([{ kind: 'inc', day: 1, n: 1, revenue: '1', status: [1] }]), /the host would reject/);
});
