/**
 * @file The `order-events` topic as the example JavaScript projections read it (see
 * `ORDER-EVENTS.md`); the JavaScript twin of the Rust `order-events` crate.
 *
 * Invariants:
 * - An event's type is the simple name from `__TypeId__` or the value's `type` member;
 *   unknown or absent types decode to `undefined` and are skipped, never an error.
 * - A known type with a missing or malformed field is an error naming that field (serde's
 *   wording, so the messages match the Rust plugins'). Money decodes exactly, never through
 *   binary floating point; instants become BigInt-microsecond {@link Timestamp}s.
 * - The record key, when present, must equal the value's `orderId`: projections key their
 *   state by order id, and the host serializes state writes per partition, i.e. per key.
 * - Redeliveries are detected by `eventId`, per order: {@link handleOnce} keeps the applied
 *   ids in the order's state (`{"applied":["e-1","e-2"]}`) and saves it only when the event
 *   succeeds.
 */

import { ProjectionError, schema as s, utf8Decode } from 'projector-plugin';

/** @typedef {import('projector-plugin').Event} Event */
/** @typedef {import('projector-plugin').Context} Context */
/** @typedef {import('projector-plugin').Decimal} Decimal */
/** @typedef {import('projector-plugin').Timestamp} Timestamp */

/** A line of a legacy `OrderPlaced`. */
const Line = s.record('Line', {
  sku: s.string,
  productName: s.string,
  quantity: s.integer,
  unitPrice: s.number,
});

/** An item of an `OrderCreated`. */
const Item = s.record('Item', {
  productId: s.string,
  productName: s.string,
  quantity: s.integer,
  unitPrice: s.number,
});

/** The known event types and their members (in the Rust structs' order). */
export const SCHEMAS = Object.freeze({
  OrderPlaced: s.record('OrderPlaced', {
    eventId: s.string,
    orderId: s.string,
    customerId: s.string,
    customerName: s.string,
    lines: s.list(Line),
    total: s.decimal,
    occurredAt: s.timestamp,
  }),
  OrderCreated: s.record('OrderCreated', {
    eventId: s.string,
    orderId: s.string,
    customerId: s.string,
    customerName: s.string,
    items: s.list(Item),
    createdAt: s.timestamp,
  }),
  ItemAdded: s.record('ItemAdded', {
    eventId: s.string,
    orderId: s.string,
    productId: s.string,
    productName: s.string,
    quantity: s.integer,
    unitPrice: s.number,
    occurredAt: s.timestamp,
  }),
  OrderSubmitted: s.record('OrderSubmitted', {
    eventId: s.string,
    orderId: s.string,
    total: s.decimal,
    submittedAt: s.timestamp,
  }),
  OrderShipped: s.record('OrderShipped', {
    eventId: s.string,
    orderId: s.string,
    carrier: s.string,
    trackingNumber: s.string,
    shippedAt: s.timestamp,
  }),
  OrderCancelled: s.record('OrderCancelled', {
    eventId: s.string,
    orderId: s.string,
    reason: s.optional(s.string),
    cancelledAt: s.timestamp,
  }),
});

/**
 * One decoded order event: the JSON members (camelCase, money as Decimal, instants as
 * Timestamp) plus `type`, the simple type name.
 * @typedef {{ type: keyof typeof SCHEMAS, eventId: string, orderId: string } & Record<string, any>} OrderEvent
 */

/**
 * The order event in `event`; `undefined` for a type the projections do not know (or an
 * event without a type). Throws a ProjectionError naming the field when a known type is
 * malformed or its `orderId` differs from the record key.
 * @param {Event} event
 * @returns {OrderEvent | undefined}
 */
export function decodeOrderEvent(event) {
  const type = event.type;
  if (type === undefined || !Object.hasOwn(SCHEMAS, type)) return undefined;
  const decoded = { type, ...event.decode(SCHEMAS[/** @type {keyof typeof SCHEMAS} */ (type)]) };
  if (event.keyBytes !== undefined && event.key !== decoded.orderId) {
    const key = event.key ?? utf8Decode(event.keyBytes) ?? '\uFFFD';
    throw ProjectionError.invalidField('orderId', `\`${decoded.orderId}\` differs from the record key \`${key}\``);
  }
  return /** @type {OrderEvent} */ (decoded);
}

/**
 * The lines of an order event as `{ sku, productName, quantity, unitPrice }`: an
 * `OrderPlaced`'s lines, an `OrderCreated`'s items, the one item of an `ItemAdded`; none for
 * other types.
 * @param {OrderEvent} e
 * @returns {{ sku: string, productName: string, quantity: number, unitPrice: Decimal }[]}
 */
export function linesOf(e) {
  switch (e.type) {
    case 'OrderPlaced':
      return e.lines.map((/** @type {any} */ l) => ({ ...l }));
    case 'OrderCreated':
      return e.items.map((/** @type {any} */ i) => ({
        sku: i.productId,
        productName: i.productName,
        quantity: i.quantity,
        unitPrice: i.unitPrice,
      }));
    case 'ItemAdded':
      return [{ sku: e.productId, productName: e.productName, quantity: e.quantity, unitPrice: e.unitPrice }];
    default:
      return [];
  }
}

/**
 * Handles `event` once per `eventId`: skips unknown types and redeliveries (logging the
 * latter at debug), otherwise calls `apply(state, orderEvent)` with the order's state (key =
 * order id; `{ applied: [...] }` plus whatever `apply` keeps) and saves the state when
 * `apply` returns. `applied` stays the first member, so the state's JSON stays stable.
 * @template R
 * @param {Event} event
 * @param {Context} ctx
 * @param {(state: Record<string, any>, e: OrderEvent) => R} apply
 * @returns {R | []}
 */
export function handleOnce(event, ctx, apply) {
  const e = decodeOrderEvent(event);
  if (e === undefined) return [];
  const stored = ctx.state(e.orderId) ?? {};
  const applied = stored.applied ?? [];
  if (!Array.isArray(applied) || !allStrings(applied)) {
    throw new ProjectionError(`corrupt state under key \`${e.orderId}\`: \`applied\` is not a list of event ids`);
  }
  if (applied.includes(e.eventId)) {
    ctx.debug(`Skipped redelivered event ${e.eventId} of order ${e.orderId}.`);
    return [];
  }
  const state = { ...stored, applied: [...applied, e.eventId] };
  const ops = apply(state, e);
  const { applied: ids, ...rest } = state;
  ctx.setState(e.orderId, { applied: ids, ...rest });
  return ops;
}

/**
 * Whether every element of `list` is a string.
 * @param {unknown[]} list
 */
function allStrings(list) {
  for (let k = 0; k < list.length; k++) if (typeof list[k] !== 'string') return false;
  return true;
}

/** Order statuses, as the read models spell them. */
export const STATUS = Object.freeze({
  /** Opened by `OrderCreated`; items may still be added. */
  CREATED: 'CREATED',
  /** Placed by the legacy producer (`OrderPlaced`), already submitted. */
  PLACED: 'PLACED',
  /** Submitted (`OrderSubmitted`). */
  SUBMITTED: 'SUBMITTED',
  /** Shipped (`OrderShipped`). */
  SHIPPED: 'SHIPPED',
  /** Cancelled (`OrderCancelled`). */
  CANCELLED: 'CANCELLED',
});
