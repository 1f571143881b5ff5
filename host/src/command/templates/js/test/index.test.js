// The starter projection's rows, exactly.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Harness, eventFromSample } from 'projector-plugin/testing';
import * as plugin from '../index.js';

test('counts events per key', () => {
  const harness = new Harness(plugin);
  harness.feedAll([
    eventFromSample('{"key": "ord-1", "headers": {"__TypeId__": "x.OrderCreated"}, "value": {}}'),
    eventFromSample('{"key": "ord-1", "headers": {}, "value": {"type": "OrderShipped"}}'),
  ]);
  assert.deepEqual(harness.rows(plugin.COLLECTION), [{ id: 'ord-1', last_type: 'OrderShipped', events: 2 }]);
});
