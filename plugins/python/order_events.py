"""The ``order-events`` topic as the example Python projections read it (``ORDER-EVENTS.md``).

Invariants (the same as the Rust ``order-events`` crate):

- An event's type is the simple name from ``__TypeId__`` or the value's ``type`` field;
  unknown or absent types decode to None and are skipped, never an error.
- A known type with a missing or malformed field is an error naming the type and the field
  (``OrderSubmitted: missing field `total```). Money decodes exactly as :class:`Decimal`;
  instants are parsed to :class:`Timestamp`.
- The record key, when present, must equal the value's ``orderId``: state is keyed by order
  id, and the host serializes state writes per partition, i.e. per key.
- Redeliveries are detected by ``eventId``, per order: :func:`handle_once` keeps the applied
  ids in the order's state (``{"applied":["e-1",...]}``) and applies each event once.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterable, Optional, Union

from projector_plugin import Context, Event, Operation, ProjectionError, Reader, Timestamp, invalid_field

CREATED = "CREATED"
"""Opened by ``OrderCreated``; items may still be added."""
PLACED = "PLACED"
"""Placed by the legacy producer (``OrderPlaced``), already submitted."""
SUBMITTED = "SUBMITTED"
"""Submitted (``OrderSubmitted``)."""
SHIPPED = "SHIPPED"
"""Shipped (``OrderShipped``)."""
CANCELLED = "CANCELLED"
"""Cancelled (``OrderCancelled``)."""


@dataclass(frozen=True)
class Line:
    """An ordered line: ``OrderPlaced.lines[]`` (sku) or ``OrderCreated.items[]`` (productId)."""

    sku: str
    product_name: str
    quantity: int
    unit_price: Decimal

    @property
    def amount(self) -> Decimal:
        """quantity x unit price, exact (not rounded)."""
        return self.unit_price * self.quantity


@dataclass(frozen=True)
class OrderPlaced:
    """Legacy producer: an order placed in one go, already submitted."""

    event_id: str
    order_id: str
    customer_id: str
    customer_name: str
    lines: tuple[Line, ...]
    total: Decimal
    occurred_at: Timestamp


@dataclass(frozen=True)
class OrderCreated:
    """Current producer: an order opened with its first items."""

    event_id: str
    order_id: str
    customer_id: str
    customer_name: str
    items: tuple[Line, ...]
    created_at: Timestamp


@dataclass(frozen=True)
class ItemAdded:
    """Current producer: one more item on an open order."""

    event_id: str
    order_id: str
    line: Line
    occurred_at: Timestamp


@dataclass(frozen=True)
class OrderSubmitted:
    """The order was submitted with its final total."""

    event_id: str
    order_id: str
    total: Decimal
    submitted_at: Timestamp


@dataclass(frozen=True)
class OrderShipped:
    """The order left the warehouse."""

    event_id: str
    order_id: str
    carrier: str
    tracking_number: str
    shipped_at: Timestamp


@dataclass(frozen=True)
class OrderCancelled:
    """The order was cancelled; ``reason`` when the producer says."""

    event_id: str
    order_id: str
    reason: Optional[str]
    cancelled_at: Timestamp


OrderEvent = Union[OrderPlaced, OrderCreated, ItemAdded, OrderSubmitted, OrderShipped, OrderCancelled]


def _line(r: Reader, sku_field: str) -> Line:
    return Line(r.text(sku_field), r.text("productName"), r.integer("quantity"), r.number("unitPrice"))


def _placed(r: Reader) -> OrderPlaced:
    return OrderPlaced(
        r.text("eventId"), r.text("orderId"), r.text("customerId"), r.text("customerName"),
        tuple(_line(line, "sku") for line in r.objects("lines")), r.decimal("total"),
        r.timestamp("occurredAt"))


def _created(r: Reader) -> OrderCreated:
    return OrderCreated(
        r.text("eventId"), r.text("orderId"), r.text("customerId"), r.text("customerName"),
        tuple(_line(item, "productId") for item in r.objects("items")), r.timestamp("createdAt"))


def _item_added(r: Reader) -> ItemAdded:
    return ItemAdded(r.text("eventId"), r.text("orderId"), _line(r, "productId"), r.timestamp("occurredAt"))


def _submitted(r: Reader) -> OrderSubmitted:
    return OrderSubmitted(r.text("eventId"), r.text("orderId"), r.decimal("total"), r.timestamp("submittedAt"))


def _shipped(r: Reader) -> OrderShipped:
    return OrderShipped(
        r.text("eventId"), r.text("orderId"), r.text("carrier"), r.text("trackingNumber"),
        r.timestamp("shippedAt"))


def _cancelled(r: Reader) -> OrderCancelled:
    return OrderCancelled(r.text("eventId"), r.text("orderId"), r.optional_text("reason"), r.timestamp("cancelledAt"))


_DECODERS: dict[str, Callable[[Reader], OrderEvent]] = {
    "OrderPlaced": _placed,
    "OrderCreated": _created,
    "ItemAdded": _item_added,
    "OrderSubmitted": _submitted,
    "OrderShipped": _shipped,
    "OrderCancelled": _cancelled,
}


def decode(event: Event) -> Optional[OrderEvent]:
    """The order event in ``event``; None for a type the projections do not know (or no
    type). Raises :class:`ProjectionError` naming the type and field when malformed."""
    type_name = event.type
    decoder = _DECODERS.get(type_name) if type_name else None
    if decoder is None:
        return None
    try:
        decoded = decoder(event.fields())
        if event.key is not None and event.key != decoded.order_id.encode("utf-8"):
            key = event.key.decode("utf-8", errors="replace")
            raise invalid_field("orderId", f"`{decoded.order_id}` differs from the record key `{key}`")
    except ProjectionError as exc:
        raise ProjectionError(f"{type_name}: {exc.message}") from None
    return decoded


Apply = Callable[[dict[str, Any], OrderEvent], Optional[Iterable[Operation]]]


def handle_once(event: Event, ctx: Context, apply: Apply) -> list[Operation]:
    """Handles ``event`` for a projection keeping per-order state under the order id.

    Skips unknown types and redeliveries (logging the latter at debug), otherwise calls
    ``apply(state, order_event)`` with the order's state dict (``"applied"`` holds the ids
    of the events applied so far; ``apply`` may add its own keys) and stores the state.
    A failure anywhere leaves the state untouched.
    """
    order_event = decode(event)
    if order_event is None:
        return []
    order_id = order_event.order_id
    state = ctx.state(order_id) or {"applied": []}
    applied = state.setdefault("applied", [])
    if order_event.event_id in applied:
        ctx.debug(f"Skipped redelivered event {order_event.event_id} of order {order_id}.")
        return []
    applied.append(order_event.event_id)
    operations = list(apply(state, order_event) or [])
    ctx.set_state(order_id, state)
    return operations
