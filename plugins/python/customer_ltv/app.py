"""``customer-ltv``: one row per customer with their orders, revenue and average order value.

Events of one customer arrive on different partitions (the record key is the order id), so
hosts consuming different partitions may write the same customer row concurrently. Every
per-customer counter is therefore written with increments, which commute;
``customer_name`` is the only last-writer-wins field. The per-order state (key = order id,
so it stays within the record key's partition) remembers what is needed to undo or move an
order's contribution later:
``{"applied": [event ids], "customer": id, "status": ..., "units": n, "total": counted total}``.

Semantics:

- ``orders``: orders opened (``OrderCreated`` or legacy ``OrderPlaced``).
- An order *counts* once its total is final: on ``OrderSubmitted``, or on ``OrderPlaced``
  (legacy placed orders are already submitted). Counting adds 1 to ``paid_orders``, the
  order's total (rounded to cents) to ``revenue`` and its quantity units to ``items``.
  A second submit of a counted order changes nothing.
- ``OrderCancelled`` adds 1 to ``cancelled_orders``; when the order counted, it also
  subtracts what counting added (1, the remembered total, the units). Cancelled is final:
  later events of a cancelled order change nothing.
- ``items``: quantity units of the counted, uncancelled orders. ``ItemAdded`` adds its
  units to the order (and to ``items`` when the order already counts).
- ``orders_by_status``: a JSON counter map moving each order from its old status to the new
  one (``{"SUBMITTED": -1, "SHIPPED": 1}``); a key reaching zero disappears.
- ``average_order_value``: ``revenue / paid_orders`` to 2 decimals, computed by the host
  (null while ``paid_orders`` is 0).
- Opening an order increments every counter (by 0 where nothing changes), so customer rows
  hold zeros rather than nulls.
- Events of an order whose opening event was never seen write nothing (the customer is
  unknown); unknown event types and redeliveries (same ``eventId``) are skipped.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Optional

import order_events as oe
from projector_plugin import Collection, Context, Event, Field, Operation, Projection, Spec, export, increment, money, upsert

COLLECTION = "customer_ltv"
"""The collection this projection writes."""


class CustomerLtv(Projection):
    """The ``customer-ltv`` projection."""

    def describe(self) -> Spec:
        customers = Collection(COLLECTION, "One customer: their orders, revenue and average order value.")
        customers.field(Field.text("customer_id", "Customer id."))
        customers.field(Field.text("customer_name", "Customer display name, from their latest opened order."))
        customers.field(Field.integer("orders", "Orders opened (created or placed)."))
        customers.field(Field.integer(
            "paid_orders", "Orders whose total counts (submitted or placed), minus those cancelled since.",
        ).sortable())
        customers.field(Field.integer("cancelled_orders", "Orders cancelled."))
        customers.field(Field.decimal(
            "revenue", "Sum of the totals of the paid orders; 2 decimals.",
        ).sortable())
        customers.field(Field.integer("items", "Quantity units in the paid orders."))
        customers.field(Field.json(
            "orders_by_status", "How many of the customer's orders are in each status, e.g. {\"SHIPPED\": 2}.",
        ))
        customers.field(Field.decimal(
            "average_order_value", "revenue / paid_orders, 2 decimals (computed by the host).",
        ).ratio("revenue", "paid_orders", 2).sortable())
        customers.key("customer_id")
        return Spec("customer-ltv", 1, "Per customer: orders, paid revenue and average order value.").collection(customers)

    def handle(self, event: Event, ctx: Context) -> list[Operation]:
        return oe.handle_once(event, ctx, apply)


def apply(state: dict[str, Any], event: oe.OrderEvent) -> list[Operation]:
    """Folds a first-time event into the order's ``state``; returns the customer writes."""
    if isinstance(event, (oe.OrderCreated, oe.OrderPlaced)):
        if isinstance(event, oe.OrderCreated):
            units = sum(item.quantity for item in event.items)
            return opened(state, event.customer_id, event.customer_name, units, oe.CREATED)
        units = sum(line.quantity for line in event.lines)
        ops = opened(state, event.customer_id, event.customer_name, units, oe.PLACED)
        return ops + counted(state, event.total, oe.PLACED)
    customer: Optional[str] = state.get("customer")
    if customer is None or state.get("status") == oe.CANCELLED:
        if isinstance(event, oe.ItemAdded):
            state["units"] = state.get("units", 0) + event.line.quantity
        return []
    if isinstance(event, oe.ItemAdded):
        state["units"] += event.line.quantity
        if "total" in state:
            return [increment(COLLECTION, customer).add("items", event.line.quantity)]
        return []
    if isinstance(event, oe.OrderSubmitted):
        return counted(state, event.total, oe.SUBMITTED)
    if isinstance(event, oe.OrderShipped):
        return moved(state, oe.SHIPPED)
    return cancelled(state)


def opened(state: dict[str, Any], customer: str, name: str, units: int, status: str) -> list[Operation]:
    """Opens the order for ``customer`` (once): counts it in ``orders`` and ``status``."""
    if "customer" in state:
        return [upsert(COLLECTION, customer).set("customer_name", name)]
    state.update(customer=customer, status=status, units=state.get("units", 0) + units)
    opening = (
        increment(COLLECTION, customer)
        .add("orders", 1).add("paid_orders", 0).add("cancelled_orders", 0)
        .add("revenue", Decimal("0.00")).add("items", 0)
        .add("orders_by_status", {status: 1})
    )
    return [upsert(COLLECTION, customer).set("customer_name", name), opening]


def counted(state: dict[str, Any], total: Decimal, status: str) -> list[Operation]:
    """Counts the order's ``total`` and units (once) and moves it to ``status``."""
    if "total" in state:
        return []
    amount = money(total)
    state["total"] = amount
    paid = (
        increment(COLLECTION, state["customer"])
        .add("paid_orders", 1).add("revenue", amount).add("items", state["units"])
    )
    return [paid, *moved(state, status)]


def cancelled(state: dict[str, Any]) -> list[Operation]:
    """Cancels the order: undoes its count, if any, and moves it to ``CANCELLED``."""
    undo = increment(COLLECTION, state["customer"]).add("cancelled_orders", 1)
    if "total" in state:
        undo.add("paid_orders", -1).add("revenue", -state["total"]).add("items", -state["units"])
    return [undo, *moved(state, oe.CANCELLED)]


def moved(state: dict[str, Any], status: str) -> list[Operation]:
    """Moves the order from its status to ``status`` in ``orders_by_status``."""
    previous = state["status"]
    if previous == status:
        return []
    state["status"] = status
    change = {previous: -1, status: 1}
    return [increment(COLLECTION, state["customer"]).add("orders_by_status", change)]


WitWorld = export(CustomerLtv)
