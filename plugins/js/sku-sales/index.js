/**
 * @file `sku-sales`: units, revenue and orders per SKU, for product sales reports.
 *
 * Semantics:
 * - An order's lines count once the order is final: when it is submitted (`OrderSubmitted`;
 *   its lines are the `OrderCreated` items plus every `ItemAdded` before it) or placed (legacy
 *   `OrderPlaced`, final at once with its `lines`). An order never submitted or placed counts
 *   nothing; a cancelled order (`OrderCancelled`) that was counted is subtracted again, line by
 *   line. Shipping changes nothing. An `ItemAdded` after the order was counted counts at once;
 *   events after a cancellation change nothing.
 * - Per SKU row: `units_sold` = Σ quantity, `revenue` = Σ quantity × unit price (exact, never
 *   rounded, written with at least 2 decimals), `orders` = number of counted orders with a line
 *   of the SKU, `average_unit_price` = revenue / units_sold computed by the host (2 decimals,
 *   null while no unit is sold), `product_name` = the name on the last counted line. A SKU
 *   whose orders were all cancelled keeps its row, at zero.
 *
 * Invariants:
 * - Events of one SKU come from many orders, on different partitions: the per-SKU numbers are
 *   only ever changed by increments, which commute, so concurrent partitions add up right;
 *   `product_name` is the one upserted field (last writer wins, which is fine for a label).
 * - State is per order (key = order id, the record key, so it stays on the order's partition):
 *   `{"applied":[event ids],"status":"open"|"counted"|"cancelled","lines":[...]}`. The lines
 *   are kept until the order is cancelled, so a cancellation subtracts exactly what was added.
 * - Each event applies once: a redelivered `eventId` yields no operation.
 */

import { Decimal, field, increment, postgres, projection, spec, upsert } from 'projector-plugin';
import { handleOnce, linesOf } from '../order-events.js';

/** The collection this projection writes. */
export const COLLECTION = 'sku_sales';

/** @typedef {{ sku: string, productName: string, quantity: number, unitPrice: Decimal }} Line */

/**
 * An exact amount written with at least 2 decimals (`17.8` → `17.80`, `0.125` stays).
 * @param {Decimal} amount
 */
const atLeastCents = (amount) => (amount.scale < 2 ? amount.rescale(2) : amount);

/**
 * Lines read back from state: the unit price is stored as a JSON number and parses back exact.
 * @param {any[]} lines
 * @returns {Line[]}
 */
const storedLines = (lines) => lines.map((l) => ({ ...l, unitPrice: Decimal.from(l.unitPrice) }));

/**
 * The operations that add (`sign` 1) or subtract (`sign` -1) `lines` of one order.
 * @param {Line[]} lines
 * @param {1 | -1} sign
 * @param {Set<string>} [alreadyCounted] SKUs this order already counts (not counted twice in `orders`)
 */
function count(lines, sign, alreadyCounted) {
  /** @type {Map<string, { name: string, units: number, revenue: Decimal }>} */
  const bySku = new Map();
  for (let k = 0; k < lines.length; k++) {
    const line = lines[k];
    let entry = bySku.get(line.sku);
    if (entry === undefined) {
      entry = { name: line.productName, units: 0, revenue: Decimal.ZERO };
      bySku.set(line.sku, entry);
    }
    entry.name = line.productName;
    entry.units += line.quantity;
    entry.revenue = entry.revenue.add(line.unitPrice.mul(line.quantity));
  }
  const ops = [];
  for (const [sku, entry] of bySku) {
    const added = increment(COLLECTION, sku)
      .add('units_sold', sign * entry.units)
      .add('revenue', atLeastCents(sign > 0 ? entry.revenue : entry.revenue.neg()));
    if (alreadyCounted === undefined || !alreadyCounted.has(sku)) added.add('orders', sign);
    if (sign > 0) ops.push(upsert(COLLECTION, sku).set('product_name', entry.name));
    ops.push(added);
  }
  return ops;
}

/**
 * Applies one first-time order event to the order's state; returns the operations.
 * @param {Record<string, any>} state
 * @param {import('../order-events.js').OrderEvent} e
 */
function apply(state, e) {
  state.status ??= 'open';
  state.lines = storedLines(state.lines ?? []);
  if (state.status === 'cancelled') return [];
  switch (e.type) {
    case 'OrderCreated':
    case 'ItemAdded': {
      const added = linesOf(e);
      const before = new Set();
      for (let k = 0; k < state.lines.length; k++) before.add(state.lines[k].sku);
      state.lines.push(...added);
      return state.status === 'counted' ? count(added, 1, before) : [];
    }
    case 'OrderPlaced':
    case 'OrderSubmitted': {
      if (state.status === 'counted') return [];
      if (e.type === 'OrderPlaced') state.lines = linesOf(e);
      state.status = 'counted';
      return count(state.lines, 1);
    }
    case 'OrderCancelled': {
      const ops = state.status === 'counted' ? count(state.lines, -1) : [];
      state.status = 'cancelled';
      state.lines = [];
      return ops;
    }
    default:
      return [];
  }
}

export const { describe, handle } = projection({
  describe: () =>
    spec('sku-sales', 1, 'Units, revenue and orders per SKU from submitted and placed orders, for sales reports.', [
      postgres(COLLECTION, 'One SKU: what its counted (submitted or placed, not cancelled) orders sold.')
        .field(field.text('sku').description('SKU (the product id).'))
        .field(field.text('product_name').searchable().description('Product display name on the last counted line.'))
        .field(field.integer('units_sold').sortable().description('Units in counted orders.'))
        .field(
          field
            .decimal('revenue')
            .sortable()
            .description('Sum of quantity x unit price over counted orders; exact, at least 2 decimals.'),
        )
        .field(field.integer('orders').sortable().description('Counted orders with a line of this SKU.'))
        .field(
          field
            .decimal('average_unit_price')
            .ratio('revenue', 'units_sold', 2)
            .description('revenue / units_sold, 2 decimals; null while no unit is sold.'),
        )
        .primaryKey('sku'),
    ]),

  handle: (event, ctx) => handleOnce(event, ctx, apply),
});
