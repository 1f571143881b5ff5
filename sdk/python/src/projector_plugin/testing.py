"""Native test support for projections: sample events, an in-memory store and a harness that
applies operations with the host's semantics.

Invariants:

- :class:`Harness` runs the projection through the same per-event runtime as the component
  (:func:`projector_plugin.handle_event`), so a failed event's state writes are dropped here
  as they are in the host.
- Operations apply as the host applies them: upserts merge, increments add (JSON counter maps
  key by key, dropping zeros), deletes remove, computed ratios round half away from zero; an
  operation the host would refuse raises :class:`HostRejection` naming the event.
- Nothing here is imported by :func:`projector_plugin.export`, so none of it is built into a
  component.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any, Iterable, Optional, Union

from projector_plugin import (
    NULL, Collection, Context, Delete, Event, FieldType, Header, KeyLike, Level, Operation, Outcome,
    Projection, ProjectionError, Upsert, Value, _I64_MAX, _I64_MIN, _PLAIN_DECIMAL, _key, decimal_text,
    dumps, handle_event, loads,
)

__all__ = ["Harness", "HostRejection", "MemoryStore", "event_from_sample", "events_from_samples"]


class MemoryStore:
    """An in-memory :class:`projector_plugin.Store` for native runs: state bytes per key and log lines."""

    def __init__(self) -> None:
        self.state: dict[str, bytes] = {}
        self.logs: list[tuple[Level, str]] = []

    def get(self, key: str) -> Optional[bytes]:
        return self.state.get(key)

    def set(self, key: str, value: bytes) -> None:
        self.state[key] = value

    def remove(self, key: str) -> None:
        self.state.pop(key, None)

    def log(self, level: Level, message: str) -> None:
        self.logs.append((level, message))


def event_from_sample(line: str, offset: int = 0) -> Event:
    """The event a ``samples.jsonl`` line describes (``{"key", "headers", "value"}``), on
    topic ``order-events``, partition 0. The value is re-serialized with exact digits."""
    sample = loads(line)
    if not isinstance(sample, dict) or set(sample) - {"key", "headers", "value"}:
        raise ValueError(f"not a sample line: {line}")
    headers = []
    for name, value in (sample.get("headers") or {}).items():
        if value is not None and not isinstance(value, str):
            raise ValueError(f"header `{name}` must be a string or null, not {value!r}")
        headers.append(Header(name, None if value is None else value.encode("utf-8")))
    key, value = sample.get("key"), sample.get("value")
    return Event(
        topic="order-events",
        partition=0,
        offset=offset,
        key=None if key is None else key.encode("utf-8"),
        value=None if value is None else dumps(value).encode("utf-8"),
        headers=tuple(headers),
    )


def events_from_samples(text: str) -> list[Event]:
    """The events of a ``samples.jsonl`` text, skipping blank lines; offsets from 0."""
    lines = [line for line in text.splitlines() if line.strip()]
    return [event_from_sample(line, offset) for offset, line in enumerate(lines)]


class HostRejection(AssertionError):
    """An operation the host would refuse (unknown field, wrong type, ...)."""


def _plain_decimal(text: Any) -> Decimal:
    if not isinstance(text, str) or not _PLAIN_DECIMAL.fullmatch(text):
        raise HostRejection(f"`{text}` is not a decimal in plain notation")
    return Decimal(text)


def _stored(field_type: FieldType, value: Value) -> Value:
    """The value a field of ``field_type`` stores for ``value``: an integer is accepted for a
    decimal or float field (alone or in a list) and stored as that type, as the host does."""
    if value.kind == "integer" and field_type.kind == "decimal":
        return Value("decimal", str(value.data))
    if value.kind == "integer" and field_type.kind == "float":
        return Value("float", float(value.data))
    if value.kind == "list" and field_type.kind == "list":
        return Value("list", tuple(_stored(FieldType(field_type.element), e) for e in value.data))
    return value


def _fits(field_type: FieldType, value: Value) -> bool:
    if value.kind == "null":
        return True
    if field_type.kind == "list":
        return value.kind == "list" and all(_fits(FieldType(field_type.element), e) for e in value.data)
    if value.kind == "integer" and field_type.kind in ("decimal", "float"):
        return True
    if field_type.kind != value.kind:
        return False
    if value.kind == "decimal":
        _plain_decimal(value.data)
    if value.kind == "json":
        try:
            loads(value.data)
        except ValueError:
            return False
    return True


def _as_decimal(value: Value) -> Optional[Decimal]:
    if value.kind in ("integer", "decimal"):
        return Decimal(value.data)
    if value.kind == "float":
        return Decimal(repr(value.data))
    return None


def _add(field_type: FieldType, current: Value, amount: Value) -> Value:
    kind = field_type.kind
    empty = current.kind == "null"
    if kind == "integer" and amount.kind == "integer" and (empty or current.kind == "integer"):
        total = (0 if empty else current.data) + amount.data
        if not _I64_MIN <= total <= _I64_MAX:
            raise HostRejection("integer overflow")
        return Value("integer", total)
    if kind == "float" and amount.kind in ("float", "integer") and (empty or current.kind == "float"):
        return Value("float", (0.0 if empty else current.data) + float(amount.data))
    if kind == "decimal" and amount.kind in ("decimal", "integer") and (empty or current.kind == "decimal"):
        base = Decimal(0) if empty else _plain_decimal(current.data)
        delta = Decimal(amount.data) if amount.kind == "integer" else _plain_decimal(amount.data)
        with localcontext() as ctx:
            ctx.prec = 100
            return Value("decimal", decimal_text(base + delta))
    if kind == "json" and amount.kind == "json" and (empty or current.kind == "json"):
        amounts = loads(amount.data)
        if not isinstance(amounts, dict):
            raise HostRejection(f"a JSON increment must be an object of numbers, not {amount.data}")
        document = {} if empty else loads(current.data)
        if not isinstance(document, dict):
            raise HostRejection(f"cannot add to the JSON value {current.data}: not an object")
        for key, delta in amounts.items():
            if isinstance(delta, bool) or not isinstance(delta, (int, Decimal)):
                raise HostRejection(f"JSON increment `{key}` is {delta!r}, not a number")
            base = document.get(key)
            if base is not None and (isinstance(base, bool) or not isinstance(base, (int, Decimal))):
                raise HostRejection(f"cannot add to `{key}`: it holds {base!r}")
            total = Decimal(base or 0) + Decimal(delta)
            if total.is_zero():
                document.pop(key, None)
            else:
                document[key] = total.normalize()  # the host stores counters without trailing zeros
        return Value("json", dumps(document))
    raise HostRejection(f"cannot add {amount} to a {field_type} field holding {current}")


def _key_rank(values: tuple[Value, ...]) -> tuple:
    ranks = []
    for v in values:
        if v.kind in ("integer", "decimal", "float"):
            ranks.append((1, _as_decimal(v), ""))
        elif v.kind in ("timestamp", "date"):
            ranks.append((2 if v.kind == "timestamp" else 3, Decimal(v.data), ""))
        elif v.kind == "text":
            ranks.append((4, Decimal(0), v.data))
        else:
            ranks.append((5, Decimal(0), repr(v)))
    return tuple(ranks)


class _Table:
    def __init__(self, spec: Collection) -> None:
        self.spec = spec
        self.rows: dict[tuple[Value, ...], dict[str, Value]] = {}

    def check_key(self, key: tuple[Value, ...]) -> None:
        names = self.spec.primary_key
        if len(key) != len(names):
            raise HostRejection(f"key has {len(key)} values, `{self.spec.name}` has {len(names)} key fields")
        for name, value in zip(names, key):
            if value.kind == "null":
                raise HostRejection(f"key field `{name}` is null")
            if not _fits(self.spec.get(name).type, value):
                raise HostRejection(f"key field `{name}`: {value} does not fit a {self.spec.get(name).type} field")

    def apply(self, op: Operation) -> None:
        self.check_key(op.key)
        if isinstance(op, Delete):
            self.rows.pop(op.key, None)
            return
        row = dict(self.rows.get(op.key) or self._new_row(op.key))
        written: set[str] = set()
        for name, value in op.fields:
            f = self.spec.get(name)
            if f is None:
                raise HostRejection(f"unknown field `{name}` in `{self.spec.name}`")
            if f.computed is not None:
                raise HostRejection(f"field `{name}` is computed by the host and must not be written")
            if name in self.spec.primary_key:
                raise HostRejection(f"key field `{name}` is set through the operation's key")
            if name in written:
                raise HostRejection(f"field `{name}` written twice in one operation")
            written.add(name)
            if isinstance(op, Upsert):
                if not _fits(f.type, value):
                    raise HostRejection(f"field `{name}`: {value} does not fit a {f.type} field")
                row[name] = _stored(f.type, value)
            else:
                row[name] = _add(f.type, row[name], value)
        self._compute(row)
        for f in self.spec.fields:
            if not self.spec.is_nullable(f) and row[f.name].kind == "null":
                raise HostRejection(f"field `{f.name}` is not nullable but would be null")
        self.rows[op.key] = row

    def _new_row(self, key: tuple[Value, ...]) -> dict[str, Value]:
        row = {f.name: NULL for f in self.spec.fields}
        for name, value in zip(self.spec.primary_key, key):
            row[name] = value
        return row

    def _compute(self, row: dict[str, Value]) -> None:
        for f in self.spec.fields:
            if f.computed is None:
                continue
            numerator = _as_decimal(row[f.computed.numerator])
            denominator = _as_decimal(row[f.computed.denominator])
            if numerator is None or denominator is None or denominator.is_zero():
                row[f.name] = NULL
                continue
            with localcontext() as ctx:
                ctx.prec = 60
                quotient = (numerator / denominator).quantize(
                    Decimal(1).scaleb(-f.computed.scale), rounding=ROUND_HALF_UP)
            if f.type.kind == "integer":
                row[f.name] = Value("integer", int(quotient))
            elif f.type.kind == "float":
                row[f.name] = Value("float", float(quotient))
            else:
                row[f.name] = Value("decimal", decimal_text(quotient))


class Harness:
    """Runs a projection natively the way the host does: keeps its state, applies its
    operations to an in-memory read model (upserts merge, increments add, JSON counter maps
    add key by key and drop zeros, deletes, computed ratios) and records its logs.

    Rows are plain dicts in column order with JSON-like values (see :meth:`Value.to_json`).
    An operation the host would refuse raises :class:`HostRejection`.
    """

    def __init__(self, projection: Union[type, Projection]) -> None:
        self.projection = projection() if isinstance(projection, type) else projection
        self.spec = self.projection.describe()
        self.spec.validate()
        self.store = MemoryStore()
        self._ctx = Context(self.store)
        self._tables = {c.name: _Table(c) for c in self.spec.collections}

    def feed(self, event: Event) -> list[Operation]:
        """Handles ``event`` and applies its operations; raises :class:`ProjectionError`
        with the event's error message when it fails (its state writes are then dropped)."""
        outcome = self.feed_outcome(event)
        if not outcome.ok:
            raise ProjectionError(outcome.error)
        return outcome.operations

    def feed_outcome(self, event: Event) -> Outcome:
        """Handles ``event`` and applies its operations; returns its :class:`Outcome`."""
        outcome = handle_event(self.projection, event, self._ctx)
        for op in outcome.operations:
            table = self._tables.get(op.collection)
            if table is None:
                raise HostRejection(f"event at offset {event.offset}: unknown collection `{op.collection}`")
            try:
                table.apply(op)
            except HostRejection as exc:
                raise HostRejection(f"event at offset {event.offset}: the host would reject {op}: {exc}") from None
        return outcome

    def feed_all(self, events: Iterable[Event]) -> list[Outcome]:
        """Feeds ``events`` in order; one :class:`Outcome` per event."""
        return [self.feed_outcome(event) for event in events]

    def rows(self, collection: str) -> list[dict[str, Any]]:
        """The rows of ``collection`` in primary-key order, as JSON-like dicts."""
        table = self._table(collection)
        keys = sorted(table.rows, key=_key_rank)
        return [self._render(table.rows[k]) for k in keys]

    def row(self, collection: str, key: KeyLike) -> Optional[dict[str, Any]]:
        """The row of ``collection`` with primary key ``key``, if any."""
        row = self._table(collection).rows.get(_key(key))
        return None if row is None else self._render(row)

    def state(self, key: str) -> Any:
        """The committed JSON state under ``key``, decoded; None when absent."""
        raw = self.store.get(key)
        return None if raw is None else loads(raw)

    def state_bytes(self, key: str) -> Optional[bytes]:
        """The committed raw state bytes under ``key``."""
        return self.store.get(key)

    @property
    def logs(self) -> list[tuple[Level, str]]:
        """The log lines written so far, oldest first."""
        return self.store.logs

    def _table(self, collection: str) -> _Table:
        if collection not in self._tables:
            raise KeyError(f"projection `{self.spec.name}` has no collection `{collection}`")
        return self._tables[collection]

    @staticmethod
    def _render(row: dict[str, Value]) -> dict[str, Any]:
        return {name: value.to_json() for name, value in row.items()}
