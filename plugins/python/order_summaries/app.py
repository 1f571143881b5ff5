"""``order-summaries``: one row per order, for lists and pagination.

The Python twin of the Rust ``plugins/order-summaries``: same spec, same operations, same
state bytes. Invariants:

- Both producer generations feed the same rows: ``OrderPlaced`` (legacy) opens an order in
  status ``PLACED``, ``OrderCreated`` in ``CREATED``; unknown event types are skipped.
- Each event applies once: the order's state (key = order id) holds the applied event ids,
  and a redelivered ``eventId`` yields no operation.
- ``total`` is exact and has 2 decimals: the sum of quantity x unit price while the order is
  open (``ItemAdded`` adds to it), then the submitted or placed total.
- Times come from the events (``updated_at`` = the time of the last event applied), never
  the clock.
"""

from __future__ import annotations

from typing import Any

import order_events as oe
from projector_plugin import Collection, Context, Event, Field, Operation, Projection, Spec, export, increment, money, upsert

COLLECTION = "order_summaries"
"""The collection this projection writes."""


def summary_fields(collection: Collection) -> Collection:
    """Adds the summary fields (``order_id`` as the key, then customer, status, total, item
    count and times) to ``collection``."""
    return (
        collection
        .field(Field.text("order_id", "Order id (the Kafka record key)."))
        .field(Field.text("customer_id", "Customer id.").filterable())
        .field(Field.text("customer_name", "Customer display name."))
        .field(Field.text("status", "CREATED, PLACED, SUBMITTED, SHIPPED or CANCELLED.").filterable())
        .field(Field.decimal(
            "total",
            "Sum of quantity x unit price while open, then the submitted or placed total; 2 decimals.",
        ).sortable())
        .field(Field.integer("item_count", "Number of order lines."))
        .field(Field.timestamp("created_at", "When the order was created or placed.").filterable().sortable())
        .field(Field.timestamp("updated_at", "Time of the last event applied.").sortable())
        .key("order_id")
    )


def summary_operations(collection: str, event: oe.OrderEvent) -> list[Operation]:
    """The operations a first-time order event implies for the summary fields."""
    row = upsert(collection, event.order_id)
    if isinstance(event, oe.OrderCreated):
        total = money(sum((item.amount for item in event.items), start=0))
        row.set("customer_id", event.customer_id).set("customer_name", event.customer_name)
        row.set("status", oe.CREATED).set("total", total).set("item_count", len(event.items))
        row.set("created_at", event.created_at).set("updated_at", event.created_at)
    elif isinstance(event, oe.OrderPlaced):
        row.set("customer_id", event.customer_id).set("customer_name", event.customer_name)
        row.set("status", oe.PLACED).set("total", money(event.total)).set("item_count", len(event.lines))
        row.set("created_at", event.occurred_at).set("updated_at", event.occurred_at)
    elif isinstance(event, oe.ItemAdded):
        # Increments commute with whatever else touched the row, so the count stays right
        # even for an item whose OrderCreated this projection never saw.
        added = increment(collection, event.order_id).add("item_count", 1).add("total", money(event.line.amount))
        return [added, row.set("updated_at", event.occurred_at)]
    elif isinstance(event, oe.OrderSubmitted):
        row.set("status", oe.SUBMITTED).set("total", money(event.total)).set("updated_at", event.submitted_at)
    elif isinstance(event, oe.OrderShipped):
        row.set("status", oe.SHIPPED).set("updated_at", event.shipped_at)
    elif isinstance(event, oe.OrderCancelled):
        row.set("status", oe.CANCELLED).set("updated_at", event.cancelled_at)
    return [row]


class OrderSummaries(Projection):
    """The ``order-summaries`` projection."""

    def describe(self) -> Spec:
        return Spec("order-summaries", 1, "One summary row per order, for order lists and pagination.").collection(
            summary_fields(Collection(COLLECTION, "One order: who ordered, its status, total and item count."))
        )

    def handle(self, event: Event, ctx: Context) -> list[Operation]:
        return oe.handle_once(event, ctx, self._apply)

    @staticmethod
    def _apply(state: dict[str, Any], event: oe.OrderEvent) -> list[Operation]:
        return summary_operations(COLLECTION, event)


WitWorld = export(OrderSummaries)
