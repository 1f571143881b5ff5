/**
 * @file `order-summaries`: one row per order, for lists and pagination. The JavaScript twin
 * of the Rust plugin `plugins/order-summaries`: same spec, same operations, same state.
 *
 * Invariants:
 * - Both producer generations feed the same rows: `OrderPlaced` (legacy) opens an order in
 *   status `PLACED`, `OrderCreated` in `CREATED`; unknown event types are skipped.
 * - Each event applies once: the order's state (key = order id) holds the applied event ids,
 *   and a redelivered `eventId` yields no operation.
 * - `total` is exact and has 2 decimals: the sum of quantity × unit price while the order is
 *   open (`ItemAdded` adds to it), then the submitted or placed total.
 * - Times come from the events (`updated_at` = the time of the last event applied), never the
 *   clock.
 */

import { field, increment, money, postgres, projection, spec, sum, upsert } from 'projector-plugin';
import { STATUS, handleOnce } from '../order-events.js';

/** The collection this projection writes. */
export const COLLECTION = 'order_summaries';

/**
 * The operations a first-time order event implies for the summary row.
 * @param {import('../order-events.js').OrderEvent} e
 */
function operations(e) {
  const row = upsert(COLLECTION, e.orderId);
  switch (e.type) {
    case 'OrderCreated': {
      const total = sum(e.items.map((/** @type {any} */ i) => i.unitPrice.mul(i.quantity)));
      return [
        row
          .set('customer_id', e.customerId)
          .set('customer_name', e.customerName)
          .set('status', STATUS.CREATED)
          .set('total', money(total))
          .set('item_count', e.items.length)
          .set('created_at', e.createdAt)
          .set('updated_at', e.createdAt),
      ];
    }
    case 'OrderPlaced':
      return [
        row
          .set('customer_id', e.customerId)
          .set('customer_name', e.customerName)
          .set('status', STATUS.PLACED)
          .set('total', money(e.total))
          .set('item_count', e.lines.length)
          .set('created_at', e.occurredAt)
          .set('updated_at', e.occurredAt),
      ];
    case 'ItemAdded':
      // Increments commute with whatever else touched the row, so the count stays right even
      // for an item whose OrderCreated this projection never saw.
      return [
        increment(COLLECTION, e.orderId)
          .add('item_count', 1)
          .add('total', money(e.unitPrice.mul(e.quantity))),
        row.set('updated_at', e.occurredAt),
      ];
    case 'OrderSubmitted':
      return [row.set('status', STATUS.SUBMITTED).set('total', money(e.total)).set('updated_at', e.submittedAt)];
    case 'OrderShipped':
      return [row.set('status', STATUS.SHIPPED).set('updated_at', e.shippedAt)];
    case 'OrderCancelled':
      return [row.set('status', STATUS.CANCELLED).set('updated_at', e.cancelledAt)];
    default:
      return [];
  }
}

export const { describe, handle } = projection({
  describe: () =>
    spec('order-summaries', 1, 'One summary row per order, for order lists and pagination.', [
      postgres(COLLECTION, 'One order: who ordered, its status, total and item count.')
        .field(field.text('order_id').description('Order id (the Kafka record key).'))
        .field(field.text('customer_id').filterable().description('Customer id.'))
        .field(field.text('customer_name').description('Customer display name.'))
        .field(field.text('status').filterable().description('CREATED, PLACED, SUBMITTED, SHIPPED or CANCELLED.'))
        .field(
          field
            .decimal('total')
            .sortable()
            .description('Sum of quantity x unit price while open, then the submitted or placed total; 2 decimals.'),
        )
        .field(field.integer('item_count').description('Number of order lines.'))
        .field(field.timestamp('created_at').filterable().sortable().description('When the order was created or placed.'))
        .field(field.timestamp('updated_at').sortable().description('Time of the last event applied.'))
        .primaryKey('order_id'),
    ]),

  handle: (event, ctx) => handleOnce(event, ctx, (_state, e) => operations(e)),
});
