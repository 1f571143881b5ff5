"""Write Projector projections in Python.

A projection turns Kafka records into read-model operations. It implements
:class:`Projection`: ``describe()`` declares the read model (a :class:`Spec` of
:class:`Collection` objects made of :class:`Field` objects) and ``handle(event, ctx)``
returns (or yields) the operations one :class:`Event` implies, built with :func:`upsert`,
:func:`increment` and :func:`delete`. A plugin module then ends with::

    WitWorld = export(MyProjection)

which is the class componentize-py looks for when it builds the component. Native tests use
:mod:`projector_plugin.testing`; :mod:`projector_plugin.wit` is the WIT contract the package
implements. The package version is the version of that WIT package
(``projector:projection@0.1.0`` is ``projector-plugin`` 0.1.0).

Invariants:

- This module uses the standard library only. The generated bindings (``wit_world``) are
  only imported by :func:`export`, and only when they exist (inside a componentize-py
  build), so projections and their tests run under plain CPython.
- Money is exact: JSON numbers decode to :class:`decimal.Decimal` (never ``float``), decimal
  values travel in plain notation (``Decimal('1E+2')`` is written ``"100"``) and
  :func:`money` rounds half away from zero to 2 places.
- Timestamps are microseconds since 1970-01-01T00:00:00Z, dates days since 1970-01-01, as
  in the WIT contract. Nothing here reads the clock.
- An exception raised while handling an event becomes that event's error string, and
  nothing that event wrote to state is kept: writes go to a per-event overlay that reaches
  the host (or the test store) only when the event succeeds.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from dataclasses import dataclass, field as dc_field
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any, Iterable, Mapping, Optional, Protocol, Sequence, Union

__all__ = [
    "Collection", "Context", "Date", "Event", "Field", "FieldType", "Header", "Increment", "Json",
    "Level", "MAX_STATE_BYTES", "Outcome", "Projection", "ProjectionError", "Ratio", "Reader",
    "Sink", "Spec", "Delete", "Store", "Timestamp", "Upsert", "Value", "decimal_text", "delete",
    "dumps", "export", "handle_event", "increment", "invalid_field", "loads", "missing_field",
    "money", "run_batch", "upsert",
]

#: The package version: always the version of the WIT package it implements (see ``wit/``).
__version__ = "0.1.0"

#: The most bytes the host stores under one state key.
MAX_STATE_BYTES = 64 * 1024
#: The longest state key the host accepts, in UTF-8 bytes.
MAX_STATE_KEY_BYTES = 512
#: The header Spring Kafka's ``JsonSerializer`` fills with the event's Java class name.
TYPE_ID_HEADER = "__TypeId__"

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_MICROS_PER_SECOND = 1_000_000
_MICROS_PER_DAY = 86_400 * _MICROS_PER_SECOND


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


class ProjectionError(Exception):
    """Why an event could not be handled; its message becomes the event's ``err``.

    Say what is wrong with the event (which field is missing or malformed), not where the
    plugin failed: the host records the message against the event's partition and offset.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def missing_field(name: str) -> ProjectionError:
    """The error for a required field the event lacks: ``missing field `name```."""
    return ProjectionError(f"missing field `{name}`")


def invalid_field(name: str, problem: str) -> ProjectionError:
    """The error for a field with an unusable value: ``field `name`: problem``."""
    return ProjectionError(f"field `{name}`: {problem}")


def error_message(exc: BaseException) -> str:
    """The ``err`` string for an exception raised while handling an event."""
    if isinstance(exc, ProjectionError):
        return exc.message
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


# --------------------------------------------------------------------------------------
# Decimals, money, JSON
# --------------------------------------------------------------------------------------

_PLAIN_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def decimal_text(amount: Decimal) -> str:
    """``amount`` in plain notation, keeping its scale: ``116.80``, ``Decimal('1E+2')`` -> ``100``.

    Raises :class:`ValueError` for NaN and infinities, which the contract cannot carry.
    """
    if not amount.is_finite():
        raise ValueError(f"{amount} is not a finite decimal")
    text = format(amount, "f")
    if amount.is_zero() and text.startswith("-"):
        text = text[1:]
    return text


def money(amount: Union[Decimal, int, str]) -> Decimal:
    """``amount`` rounded half away from zero to exactly 2 decimal places.

    ``116.8`` -> ``116.80``, ``0.125`` -> ``0.13``, ``-0.125`` -> ``-0.13``.
    """
    value = amount if isinstance(amount, Decimal) else Decimal(amount)
    with localcontext() as ctx:
        ctx.prec = max(60, len(value.as_tuple().digits) + 4)
        rounded = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return rounded.copy_abs() if rounded.is_zero() else rounded


def loads(text: Union[str, bytes]) -> Any:
    """Parses JSON, numbers with a fraction or exponent as exact :class:`Decimal`."""
    return json.loads(text, parse_float=Decimal)


def dumps(document: Any) -> str:
    """Serializes ``document`` as compact JSON (no spaces, non-ASCII kept as is).

    :class:`Decimal` numbers keep their exact digits in plain notation; :class:`Timestamp`
    and :class:`Date` become RFC 3339 / ``YYYY-MM-DD`` strings; dataclasses become objects.
    """
    parts: list[str] = []
    _dump(document, parts)
    return "".join(parts)


def _dump(item: Any, out: list[str]) -> None:
    if item is None:
        out.append("null")
    elif item is True:
        out.append("true")
    elif item is False:
        out.append("false")
    elif isinstance(item, str):
        out.append(json.dumps(item, ensure_ascii=False))
    elif isinstance(item, int):
        out.append(str(int(item)))
    elif isinstance(item, Decimal):
        out.append(decimal_text(item))
    elif isinstance(item, float):
        if item != item or item in (float("inf"), float("-inf")):
            raise ValueError(f"{item} cannot be written as JSON")
        out.append(repr(item))
    elif isinstance(item, (Timestamp, Date)):
        out.append(json.dumps(str(item)))
    elif isinstance(item, Mapping):
        out.append("{")
        for index, (key, value) in enumerate(item.items()):
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, not {key!r}")
            if index:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _dump(value, out)
        out.append("}")
    elif isinstance(item, (list, tuple)):
        out.append("[")
        for index, value in enumerate(item):
            if index:
                out.append(",")
            _dump(value, out)
        out.append("]")
    elif dataclasses.is_dataclass(item) and not isinstance(item, type):
        _dump({f.name: getattr(item, f.name) for f in dataclasses.fields(item)}, out)
    else:
        raise TypeError(f"{type(item).__name__} cannot be written as JSON")


# --------------------------------------------------------------------------------------
# Time
# --------------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})"
)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (no validation)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """The proleptic Gregorian (year, month, day) ``days`` days after 1970-01-01."""
    days += 719_468
    era = days // 146_097
    day_of_era = days - era * 146_097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + (3 if shifted_month < 10 else -9)
    return year_of_era + era * 400 + (month <= 2), month, day


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


@dataclass(frozen=True, order=True)
class Timestamp:
    """An instant, in microseconds since the Unix epoch (UTC); a ``timestamp`` value."""

    micros: int

    @classmethod
    def parse(cls, text: str) -> "Timestamp":
        """Parses an RFC 3339 instant such as ``2026-11-20T23:59:59.999Z`` or
        ``2026-11-22T11:15:30+01:00``; digits below the microsecond are truncated.

        Raises :class:`ValueError` naming the text when it is not RFC 3339.
        """
        match = _RFC3339.fullmatch(text) if isinstance(text, str) else None
        problem = f"invalid timestamp `{text}`: expected RFC 3339, e.g. 2026-11-22T10:15:30.123Z"
        if match is None:
            raise ValueError(problem)
        year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
        if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)):
            raise ValueError(problem)
        if hour > 23 or minute > 59 or second > 59:
            raise ValueError(problem)
        fraction = (match.group(7) or "")[:6].ljust(6, "0")
        zone = match.group(8)
        offset = 0
        if zone not in ("Z", "z"):
            offset_hours, offset_minutes = int(zone[1:3]), int(zone[4:6])
            if offset_hours > 23 or offset_minutes > 59:
                raise ValueError(problem)
            offset = (offset_hours * 3600 + offset_minutes * 60) * (-1 if zone[0] == "-" else 1)
        seconds = _days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        return cls((seconds - offset) * _MICROS_PER_SECOND + int(fraction))

    @classmethod
    def from_millis(cls, millis: int) -> "Timestamp":
        """The instant ``millis`` milliseconds after the epoch (e.g. a Kafka timestamp)."""
        return cls(millis * 1000)

    def date(self) -> "Date":
        """The UTC calendar day this instant falls on."""
        return Date(self.micros // _MICROS_PER_DAY)

    def __str__(self) -> str:
        """RFC 3339 in UTC, fraction digits only when needed: ``2026-11-20T23:59:59.999Z``."""
        days, micros = divmod(self.micros, _MICROS_PER_DAY)
        year, month, day = _civil_from_days(days)
        seconds, fraction = divmod(micros, _MICROS_PER_SECOND)
        hour, rest = divmod(seconds, 3600)
        minute, second = divmod(rest, 60)
        text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
        if fraction % 1000 == 0 and fraction:
            text += f".{fraction // 1000:03d}"
        elif fraction:
            text += f".{fraction:06d}"
        return text + "Z"


@dataclass(frozen=True, order=True)
class Date:
    """A calendar day, in days since 1970-01-01; a ``date`` value."""

    days: int

    @classmethod
    def from_ymd(cls, year: int, month: int, day: int) -> "Date":
        """The proleptic Gregorian day ``year``-``month``-``day``; :class:`ValueError` if none."""
        if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)):
            raise ValueError(f"invalid date {year:04d}-{month:02d}-{day:02d}")
        return cls(_days_from_civil(year, month, day))

    @classmethod
    def parse(cls, text: str) -> "Date":
        """Parses ``YYYY-MM-DD``."""
        match = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", text) if isinstance(text, str) else None
        try:
            if match is None:
                raise ValueError
            return cls.from_ymd(*(int(g) for g in match.groups()))
        except ValueError:
            raise ValueError(f"invalid date `{text}`: expected YYYY-MM-DD") from None

    def __str__(self) -> str:
        year, month, day = _civil_from_days(self.days)
        return f"{year:04d}-{month:02d}-{day:02d}"


# --------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Json:
    """Marks ``document`` (dict, list, numbers, ...) as a ``json`` value.

    A ``dict`` is a JSON value on its own; wrap lists (which otherwise become ``list``
    values) and scalars that must be stored as JSON.
    """

    document: Any


@dataclass(frozen=True)
class Value:
    """A WIT ``value``: ``kind`` is the case name, ``data`` its payload in contract units.

    ``null`` (None), ``boolean`` (bool), ``integer`` (int), ``float`` (float), ``decimal``
    (plain-notation str), ``text`` (str), ``timestamp`` (int, microseconds), ``date`` (int,
    days), ``json`` (serialized str) or ``list`` (tuple of scalar :class:`Value`).
    """

    kind: str
    data: Any = None

    @classmethod
    def of(cls, item: Any) -> "Value":
        """Converts a Python value: None -> null, bool, int, float, :class:`Decimal` ->
        decimal, str -> text, :class:`Timestamp`, :class:`Date`, :class:`Json` or dict ->
        json, list or tuple -> list of scalars."""
        if isinstance(item, Value):
            return item
        if item is None:
            return NULL
        if isinstance(item, bool):
            return cls("boolean", item)
        if isinstance(item, int):
            if not _I64_MIN <= item <= _I64_MAX:
                raise ValueError(f"{item} does not fit a 64-bit integer")
            return cls("integer", int(item))
        if isinstance(item, float):
            return cls("float", item)
        if isinstance(item, Decimal):
            return cls("decimal", decimal_text(item))
        if isinstance(item, str):
            return cls("text", item)
        if isinstance(item, Timestamp):
            return cls("timestamp", item.micros)
        if isinstance(item, Date):
            return cls("date", item.days)
        if isinstance(item, Json):
            return cls("json", dumps(item.document))
        if isinstance(item, Mapping):
            return cls("json", dumps(item))
        if isinstance(item, (list, tuple)):
            elements = tuple(cls.of(element) for element in item)
            for element in elements:
                if element.kind in ("json", "list"):
                    raise TypeError(f"a list holds scalars, not {element.kind} values")
            return cls("list", elements)
        raise TypeError(f"{type(item).__name__} is not a field value")

    def to_json(self) -> Any:
        """A JSON-like rendering for assertions: decimals as strings with their scale,
        timestamps as RFC 3339 strings, dates as ``YYYY-MM-DD``, JSON as the document."""
        if self.kind == "timestamp":
            return str(Timestamp(self.data))
        if self.kind == "date":
            return str(Date(self.data))
        if self.kind == "json":
            return loads(self.data)
        if self.kind == "list":
            return [element.to_json() for element in self.data]
        return self.data


NULL = Value("null")


# --------------------------------------------------------------------------------------
# Spec
# --------------------------------------------------------------------------------------

_SCALAR_TYPES = ("boolean", "integer", "float", "decimal", "text", "timestamp", "date")


class Sink(enum.Enum):
    """Where a collection is stored."""

    POSTGRES = "postgres"
    ELASTICSEARCH = "elasticsearch"


class Level(enum.Enum):
    """Severity of a log line."""

    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


@dataclass(frozen=True)
class FieldType:
    """A field's declared type: one of the scalar type names, ``json`` or ``list`` of a
    scalar ``element``."""

    kind: str
    element: Optional[str] = None

    def __str__(self) -> str:
        return f"list<{self.element}>" if self.kind == "list" else self.kind


@dataclass(frozen=True)
class Ratio:
    """A field the host computes as ``round(numerator / denominator, scale)`` (half away
    from zero), null when the denominator is zero or null."""

    numerator: str
    denominator: str
    scale: int


@dataclass(frozen=True)
class Field:
    """One field (column) of a collection. Build with the typed constructors and chain::

        Field.text("status", "Current status.").filterable()
    """

    name: str
    type: FieldType
    description: str = ""
    nullable_flag: Optional[bool] = None
    is_searchable: bool = False
    is_filterable: bool = False
    is_sortable: bool = False
    computed: Optional[Ratio] = None

    @classmethod
    def boolean(cls, name: str, description: str = "") -> "Field":
        """A ``boolean`` field."""
        return cls(name, FieldType("boolean"), description)

    @classmethod
    def integer(cls, name: str, description: str = "") -> "Field":
        """A 64-bit ``integer`` field."""
        return cls(name, FieldType("integer"), description)

    @classmethod
    def float(cls, name: str, description: str = "") -> "Field":
        """A 64-bit ``float`` field; not for money."""
        return cls(name, FieldType("float"), description)

    @classmethod
    def decimal(cls, name: str, description: str = "") -> "Field":
        """An exact ``decimal`` field, for money."""
        return cls(name, FieldType("decimal"), description)

    @classmethod
    def text(cls, name: str, description: str = "") -> "Field":
        """A ``text`` field."""
        return cls(name, FieldType("text"), description)

    @classmethod
    def timestamp(cls, name: str, description: str = "") -> "Field":
        """A ``timestamp`` (instant) field."""
        return cls(name, FieldType("timestamp"), description)

    @classmethod
    def date(cls, name: str, description: str = "") -> "Field":
        """A ``date`` (calendar day) field."""
        return cls(name, FieldType("date"), description)

    @classmethod
    def json(cls, name: str, description: str = "") -> "Field":
        """A ``json`` document field."""
        return cls(name, FieldType("json"), description)

    @classmethod
    def list(cls, name: str, element: str, description: str = "") -> "Field":
        """A list field of ``element`` scalars (``"text"``, ``"decimal"``, ...)."""
        if element not in _SCALAR_TYPES:
            raise ValueError(f"list element type `{element}` is not one of {', '.join(_SCALAR_TYPES)}")
        return cls(name, FieldType("list", element), description)

    def describe(self, description: str) -> "Field":
        """Says what the field means, for people reading the read model."""
        return dataclasses.replace(self, description=description)

    def nullable(self) -> "Field":
        """Allows null (the default, except for primary-key fields)."""
        return dataclasses.replace(self, nullable_flag=True)

    def required(self) -> "Field":
        """Forbids null: the host declares the column NOT NULL."""
        return dataclasses.replace(self, nullable_flag=False)

    def searchable(self) -> "Field":
        """Puts the field into the collection's full-text search document."""
        return dataclasses.replace(self, is_searchable=True)

    def filterable(self) -> "Field":
        """Lets queries filter on the field (the host indexes it)."""
        return dataclasses.replace(self, is_filterable=True)

    def sortable(self) -> "Field":
        """Lets queries sort on the field (the host indexes it)."""
        return dataclasses.replace(self, is_sortable=True)

    def ratio(self, numerator: str, denominator: str, scale: int) -> "Field":
        """Makes the host compute the field as ``round(numerator / denominator, scale)``.
        Operations must not write a computed field."""
        return dataclasses.replace(self, computed=Ratio(numerator, denominator, scale))


@dataclass
class Collection:
    """One collection (table or index): its fields in column order and its primary key."""

    name: str
    description: str = ""
    fields: list[Field] = dc_field(default_factory=list)
    primary_key: list[str] = dc_field(default_factory=list)
    sink: Sink = Sink.POSTGRES

    def field(self, field: Field) -> "Collection":
        """Adds ``field`` after the fields already declared; returns the collection."""
        self.fields.append(field)
        return self

    def key(self, *names: str) -> "Collection":
        """Names the primary-key fields, in key order; returns the collection."""
        self.primary_key = list(names)
        return self

    def get(self, name: str) -> Optional[Field]:
        """The field called ``name``, if declared."""
        return next((f for f in self.fields if f.name == name), None)

    def is_nullable(self, field: Field) -> bool:
        """Whether ``field`` may hold null: false for key and required fields."""
        return field.name not in self.primary_key and field.nullable_flag is not False


@dataclass
class Spec:
    """A projection's read model: what ``describe`` returns."""

    name: str
    version: int
    description: str
    collections: list[Collection] = dc_field(default_factory=list)

    def collection(self, collection: Collection) -> "Spec":
        """Adds a collection; returns the spec."""
        self.collections.append(collection)
        return self

    def get(self, name: str) -> Optional[Collection]:
        """The collection called ``name``, if declared."""
        return next((c for c in self.collections if c.name == name), None)

    def validate(self) -> None:
        """Raises :class:`ValueError` when the host would refuse the spec: the checks of the
        host's ``spec.rs``, in its order (names, sizes, keys, field flags, ratios)."""
        if not is_projection_name(self.name):
            raise ValueError(f"projection name `{self.name}` must be 1-{MAX_NAME} lowercase ASCII letters, "
                             "digits and `-`, starting with a letter")
        if not 1 <= self.version < 2**32:
            raise ValueError(f"version {self.version}: must be at least 1 and fit a u32")
        if not self.collections:
            raise ValueError("a projection declares at least one collection")
        if len(self.collections) > MAX_COLLECTIONS:
            raise ValueError(f"{len(self.collections)} collections declared; at most {MAX_COLLECTIONS}")
        texts = [self.description] + [c.description for c in self.collections] + \
            [f.description for c in self.collections for f in c.fields]
        if any(len(text.encode("utf-8")) > MAX_DESCRIPTION for text in texts):
            raise ValueError(f"a description is over {MAX_DESCRIPTION} bytes")
        seen: set[str] = set()
        for c in self.collections:
            _check_collection(c)
            if c.name in seen:
                raise ValueError(f"collection `{c.name}` declared twice")
            seen.add(c.name)


# The name rules, as the host's ``spec.rs`` states them (checked by the shared conformance
# corpus, ``tests/conformance/declarations.json``).
MAX_NAME = 40
"""Longest projection name; collection and field identifiers may have 8 more characters."""
MAX_COLLECTIONS, MAX_FIELDS, MAX_DESCRIPTION = 32, 256, 4096
_PROJECTION_NAME = re.compile(rf"[a-z]([a-z0-9-]{{0,{MAX_NAME - 2}}}[a-z0-9])?")
_IDENTIFIER = re.compile(rf"[a-z][a-z0-9_]{{0,{MAX_NAME + 7}}}")
_KEY_TYPES = ("text", "integer", "boolean", "date", "timestamp")
_NUMERIC = ("integer", "float", "decimal")


def is_projection_name(name: str) -> bool:
    """Whether ``name`` is a valid projection name: lowercase ASCII letters, digits and ``-``,
    starting with a letter, not ending with ``-``, at most 40 characters."""
    return _PROJECTION_NAME.fullmatch(name) is not None


def is_identifier(name: str) -> bool:
    """Whether ``name`` is a valid collection or field name: lowercase ASCII letters, digits
    and ``_``, starting with a letter, at most 48 characters."""
    return _IDENTIFIER.fullmatch(name) is not None


def _check_collection(c: "Collection") -> None:
    if not is_identifier(c.name):
        raise ValueError(f"collection `{c.name}`: the name must be lowercase ASCII letters, digits and `_`, "
                         "starting with a letter")
    if not c.fields:
        raise ValueError(f"collection `{c.name}` declares no fields")
    if len(c.fields) > MAX_FIELDS:
        raise ValueError(f"collection `{c.name}`: {len(c.fields)} fields declared; at most {MAX_FIELDS}")
    names: set[str] = set()
    for f in c.fields:
        if not is_identifier(f.name):
            raise ValueError(f"collection `{c.name}`: field `{f.name}`: the name must be lowercase ASCII "
                             "letters, digits and `_`, starting with a letter")
        if f.name in names:
            raise ValueError(f"field `{f.name}` declared twice in `{c.name}`")
        names.add(f.name)
    if not c.primary_key:
        raise ValueError(f"collection `{c.name}` declares no primary key")
    if len(set(c.primary_key)) != len(c.primary_key):
        raise ValueError(f"collection `{c.name}`: the primary key names a field twice")
    for name in c.primary_key:
        key_field = c.get(name)
        if key_field is None:
            raise ValueError(f"key field `{name}` is not a field of `{c.name}`")
        if key_field.type.kind not in _KEY_TYPES:
            raise ValueError(f"key field `{name}` must be text, integer, boolean, date or timestamp")
        if key_field.computed is not None:
            raise ValueError(f"key field `{name}` cannot be computed")
    for f in c.fields:
        if f.is_sortable and f.type.kind in ("json", "list"):
            raise ValueError(f"field `{f.name}`: json and list fields cannot be sortable")
        if f.is_searchable and not (f.type.kind == "text" or f.type == FieldType("list", "text")):
            raise ValueError(f"field `{f.name}`: only text and list<text> fields can be searchable")
        if f.computed is None:
            continue
        if f.type.kind not in ("decimal", "float"):
            raise ValueError(f"computed field `{f.name}`: a computed ratio must be decimal or float")
        if not 0 <= f.computed.scale <= 30:
            raise ValueError(f"computed field `{f.name}`: ratio scale must be at most 30")
        for operand in (f.computed.numerator, f.computed.denominator):
            o = c.get(operand)
            if o is None or o.computed is not None or o.type.kind not in _NUMERIC:
                raise ValueError(f"computed field `{f.name}`: `{operand}` is not a stored numeric field")


# --------------------------------------------------------------------------------------
# Operations
# --------------------------------------------------------------------------------------

KeyLike = Any  # one value, or a tuple/list of values for a composite key


def _key(key: KeyLike) -> tuple[Value, ...]:
    parts = key if isinstance(key, (tuple, list)) else (key,)
    return tuple(Value.of(part) for part in parts)


@dataclass
class Upsert:
    """Merge the named fields into the row with this key, creating it when absent."""

    collection: str
    key: tuple[Value, ...]
    fields: list[tuple[str, Value]] = dc_field(default_factory=list)

    def set(self, name: str, value: Any) -> "Upsert":
        """Sets field ``name`` to ``value`` (converted with :meth:`Value.of`)."""
        self.fields.append((name, Value.of(value)))
        return self


@dataclass
class Increment:
    """Add amounts to numeric (or JSON-object) fields of the row, creating it when absent."""

    collection: str
    key: tuple[Value, ...]
    fields: list[tuple[str, Value]] = dc_field(default_factory=list)

    def add(self, name: str, amount: Any) -> "Increment":
        """Adds ``amount`` to field ``name``: an int, :class:`Decimal`, float, or for a
        ``json`` field a dict of numbers added key by key (a key reaching zero is removed)."""
        self.fields.append((name, Value.of(amount)))
        return self


@dataclass
class Delete:
    """Delete the row with this key, if any."""

    collection: str
    key: tuple[Value, ...]


Operation = Union[Upsert, Increment, Delete]


def upsert(collection: str, key: KeyLike) -> Upsert:
    """An upsert of the row of ``collection`` with primary key ``key``; chain ``.set``."""
    return Upsert(collection, _key(key))


def increment(collection: str, key: KeyLike) -> Increment:
    """An increment of the row of ``collection`` with primary key ``key``; chain ``.add``."""
    return Increment(collection, _key(key))


def delete(collection: str, key: KeyLike) -> Delete:
    """The deletion of the row of ``collection`` with primary key ``key``."""
    return Delete(collection, _key(key))


# --------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """One Kafka record header; ``value`` is None for a null header."""

    key: str
    value: Optional[bytes]


@dataclass(frozen=True)
class Event:
    """One Kafka record, exactly as consumed."""

    topic: str = ""
    partition: int = 0
    offset: int = 0
    key: Optional[bytes] = None
    value: Optional[bytes] = None
    headers: tuple[Header, ...] = ()
    timestamp_ms: Optional[int] = None

    @property
    def key_str(self) -> Optional[str]:
        """The record key as UTF-8; None when null or not UTF-8."""
        if self.key is None:
            return None
        try:
            return self.key.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def header(self, name: str) -> Optional[bytes]:
        """The value of the last header called ``name``; None when absent or null."""
        for header in reversed(self.headers):
            if header.key == name:
                return header.value
        return None

    @property
    def timestamp(self) -> Optional[Timestamp]:
        """The broker timestamp, if any. Prefer instants inside the event."""
        return None if self.timestamp_ms is None else Timestamp.from_millis(self.timestamp_ms)

    @property
    def type(self) -> Optional[str]:
        """The simple type name, e.g. ``OrderCreated``: what follows the last ``.`` of the
        ``__TypeId__`` header, else the value's ``"type"`` string; None when neither."""
        type_id = self.header(TYPE_ID_HEADER)
        if type_id is not None:
            try:
                simple = type_id.decode("utf-8").rsplit(".", 1)[-1].strip()
            except UnicodeDecodeError:
                simple = ""
            if simple:
                return simple
        if self.value is None:
            return None
        try:
            document = loads(self.value)
        except ValueError:
            return None
        name = document.get("type") if isinstance(document, dict) else None
        return name if isinstance(name, str) and name else None

    def json(self) -> Any:
        """The value decoded from JSON, non-integral numbers as exact :class:`Decimal`.

        Raises :class:`ProjectionError` for a tombstone or invalid JSON.
        """
        if self.value is None:
            raise ProjectionError("the record has no value (tombstone)")
        try:
            return loads(self.value)
        except ValueError as exc:
            raise ProjectionError(f"invalid JSON: {exc}") from None

    def fields(self) -> "Reader":
        """The JSON value as a :class:`Reader` whose errors name the offending field."""
        document = self.json()
        if not isinstance(document, dict):
            raise ProjectionError(f"expected a JSON object, got {_describe_json(document)}")
        return Reader(document)


def _describe_json(item: Any) -> str:
    if item is None:
        return "null"
    if isinstance(item, bool):
        return f"boolean `{str(item).lower()}`"
    if isinstance(item, (int, Decimal)):
        return f"number `{item}`"
    if isinstance(item, str):
        return f"string {json.dumps(item, ensure_ascii=False)}"
    if isinstance(item, list):
        return "an array"
    return "an object"


class Reader:
    """Typed access to a decoded JSON object; every error names the field's path
    (``items[0].unitPrice``)."""

    def __init__(self, document: Mapping[str, Any], path: str = "") -> None:
        self.document = document
        self.path = path

    def _name(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def raw(self, name: str, default: Any = ...) -> Any:
        """The field's decoded JSON; missing (or null without ``default``) is an error."""
        item = self.document.get(name)
        if item is not None:
            return item
        if default is not ...:
            return default
        if name not in self.document:
            raise missing_field(self._name(name))
        raise invalid_field(self._name(name), "expected a value, got null")

    def _typed(self, name: str, item: Any, ok: bool, expected: str) -> Any:
        if not ok:
            raise invalid_field(self._name(name), f"expected {expected}, got {_describe_json(item)}")
        return item

    def text(self, name: str) -> str:
        """A required string."""
        item = self.raw(name)
        return self._typed(name, item, isinstance(item, str), "a string")

    def optional_text(self, name: str) -> Optional[str]:
        """A string, or None when null or absent."""
        item = self.raw(name, None)
        return None if item is None else self._typed(name, item, isinstance(item, str), "a string")

    def boolean(self, name: str) -> bool:
        """A required boolean."""
        item = self.raw(name)
        return self._typed(name, item, isinstance(item, bool), "a boolean")

    def integer(self, name: str) -> int:
        """A required integral JSON number that fits 64 bits."""
        item = self.raw(name)
        ok = isinstance(item, int) and not isinstance(item, bool) and _I64_MIN <= item <= _I64_MAX
        return self._typed(name, item, ok, "an integer")

    def number(self, name: str) -> Decimal:
        """A required JSON number, exact."""
        item = self.raw(name)
        self._typed(name, item, isinstance(item, (int, Decimal)) and not isinstance(item, bool), "a number")
        return Decimal(item)

    def decimal(self, name: str) -> Decimal:
        """A required decimal: a JSON number, or a string holding one (``"12.50"``)."""
        item = self.raw(name)
        if isinstance(item, str) and _JSON_NUMBER.fullmatch(item):
            return Decimal(item)
        ok = isinstance(item, (int, Decimal)) and not isinstance(item, bool)
        self._typed(name, item, ok, "a decimal number")
        return Decimal(item)

    def timestamp(self, name: str) -> Timestamp:
        """A required RFC 3339 instant."""
        text = self.text(name)
        try:
            return Timestamp.parse(text)
        except ValueError as exc:
            raise invalid_field(self._name(name), str(exc)) from None

    def object(self, name: str) -> "Reader":
        """A required nested object."""
        item = self.raw(name)
        self._typed(name, item, isinstance(item, dict), "an object")
        return Reader(item, self._name(name))

    def objects(self, name: str) -> list["Reader"]:
        """A required array of objects."""
        item = self.raw(name)
        self._typed(name, item, isinstance(item, list), "an array")
        readers = []
        for index, element in enumerate(item):
            path = f"{self._name(name)}[{index}]"
            if not isinstance(element, dict):
                raise invalid_field(path, f"expected an object, got {_describe_json(element)}")
            readers.append(Reader(element, path))
        return readers


# --------------------------------------------------------------------------------------
# State, logging and the per-event runtime
# --------------------------------------------------------------------------------------


class Store(Protocol):
    """Where committed state and log lines go: the host, or memory in tests
    (:class:`projector_plugin.testing.MemoryStore`)."""

    def get(self, key: str) -> Optional[bytes]: ...

    def set(self, key: str, value: bytes) -> None: ...

    def remove(self, key: str) -> None: ...

    def log(self, level: Level, message: str) -> None: ...


class Context:
    """Per-key JSON state and logging for the event being handled.

    State keys must derive from the record key (one writer per partition). An event's
    writes are visible to itself at once and reach the store only when it succeeds.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: dict[str, Optional[bytes]] = {}

    def state_bytes(self, key: str) -> Optional[bytes]:
        """The raw bytes stored under ``key``, if any."""
        if key in self._pending:
            return self._pending[key]
        return self._store.get(key)

    def state(self, key: str, default: Any = None) -> Any:
        """The JSON state under ``key`` (numbers with a fraction as :class:`Decimal`), or
        ``default`` when there is none."""
        raw = self.state_bytes(key)
        if raw is None:
            return default
        try:
            return loads(raw)
        except ValueError as exc:
            raise ProjectionError(f"corrupt state under key `{key}`: {exc}") from None

    def set_state(self, key: str, value: Any) -> None:
        """Stores ``value`` under ``key`` as compact JSON (see :func:`dumps`)."""
        encoded = dumps(value).encode("utf-8")
        if len(key.encode("utf-8")) > MAX_STATE_KEY_BYTES:
            raise ProjectionError(f"state key `{key[:40]}...` is over {MAX_STATE_KEY_BYTES} bytes")
        if len(encoded) > MAX_STATE_BYTES:
            raise ProjectionError(
                f"state under key `{key}` is {len(encoded)} bytes, over the {MAX_STATE_BYTES}-byte limit")
        self._pending[key] = encoded

    def remove_state(self, key: str) -> None:
        """Removes the state under ``key``, if any."""
        self._pending[key] = None

    def log(self, level: Level, message: str) -> None:
        """Writes a line to the host's log (rate-limited there; prefer ``debug`` per event)."""
        self._store.log(level, message)

    def debug(self, message: str) -> None:
        """Logs at :attr:`Level.DEBUG`."""
        self.log(Level.DEBUG, message)

    def info(self, message: str) -> None:
        """Logs at :attr:`Level.INFO`."""
        self.log(Level.INFO, message)

    def warn(self, message: str) -> None:
        """Logs at :attr:`Level.WARN`."""
        self.log(Level.WARN, message)

    def error(self, message: str) -> None:
        """Logs at :attr:`Level.ERROR`."""
        self.log(Level.ERROR, message)

    def _commit(self) -> None:
        for key, value in self._pending.items():
            if value is None:
                self._store.remove(key)
            else:
                self._store.set(key, value)
        self._pending.clear()

    def _discard(self) -> None:
        self._pending.clear()


class Projection:
    """Base class of a projection. Keep no data in attributes between calls: everything
    an event needs from earlier events belongs in ``ctx`` state, so rebuilds are exact."""

    def describe(self) -> Spec:
        """The read model: name, version, collections. Must not depend on state."""
        raise NotImplementedError

    def handle(self, event: Event, ctx: Context) -> Optional[Iterable[Operation]]:
        """The operations ``event`` implies (return a list, yield them, or return None for
        none). Raise :class:`ProjectionError` (or any exception) to fail the event."""
        raise NotImplementedError


@dataclass
class Outcome:
    """What handling one event gave: its operations, or its error message."""

    operations: list[Operation] = dc_field(default_factory=list)
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        """Whether the event succeeded."""
        return self.error is None


def handle_event(projection: Projection, event: Event, ctx: Context) -> Outcome:
    """Handles one event: commits its state writes on success, drops them on failure."""
    try:
        result = projection.handle(event, ctx)
        operations = [] if result is None else list(result)
        for op in operations:
            if not isinstance(op, (Upsert, Increment, Delete)):
                raise TypeError(f"handle produced {op!r}, not an operation")
    except Exception as exc:  # every failure is pinned to its event
        ctx._discard()
        return Outcome(error=error_message(exc))
    ctx._commit()
    return Outcome(operations=operations)


def run_batch(projection: Projection, events: Iterable[Event], store: Store) -> list[Outcome]:
    """Handles ``events`` in order with one :class:`Context`; one outcome per event."""
    ctx = Context(store)
    return [handle_event(projection, event, ctx) for event in events]


# --------------------------------------------------------------------------------------
# The component glue (the generated bindings are only imported by export())
# --------------------------------------------------------------------------------------


class _HostStore:
    """The :class:`Store` backed by the WIT ``state`` and ``log`` imports (the modules
    ``wit_world.imports.state``, ``.log`` and ``.types``)."""

    def __init__(self, state: Any, log: Any, types: Any) -> None:
        self._state, self._log, self._types = state, log, types

    def get(self, key: str) -> Optional[bytes]:
        return self._state.get(key)

    def set(self, key: str, value: bytes) -> None:
        self._state.set(key, value)

    def remove(self, key: str) -> None:
        self._state.remove(key)

    def log(self, level: Level, message: str) -> None:
        self._log.write(self._types.Level[level.name], message)


def event_from_wit(event: Any) -> Event:
    """Converts a binding ``Event`` into an :class:`Event`."""
    return Event(
        topic=event.topic,
        partition=event.partition,
        offset=event.offset,
        key=None if event.key is None else bytes(event.key),
        value=None if event.value is None else bytes(event.value),
        headers=tuple(Header(h.key, None if h.value is None else bytes(h.value)) for h in event.headers),
        timestamp_ms=event.timestamp_ms,
    )


def to_wit(item: Any, types: Any) -> Any:
    """Converts a :class:`Spec` or an operation into the generated binding types
    (``types`` is ``wit_world.imports.types``)."""
    if isinstance(item, Spec):
        return types.ProjectionSpec(
            name=item.name,
            version=item.version,
            description=item.description,
            collections=[_wit_collection(c, types) for c in item.collections],
        )
    if isinstance(item, Upsert):
        return types.Operation_Upsert(types.Upsert(
            item.collection, _wit_values(item.key, types), _wit_fields(item.fields, types)))
    if isinstance(item, Increment):
        return types.Operation_Increment(types.Increment(
            item.collection, _wit_values(item.key, types), _wit_fields(item.fields, types)))
    if isinstance(item, Delete):
        return types.Operation_Delete(types.Delete(item.collection, _wit_values(item.key, types)))
    raise TypeError(f"cannot convert {type(item).__name__} to a binding type")


_CASE = {
    "null": "Null", "boolean": "Boolean", "integer": "Integer", "float": "Float",
    "decimal": "Decimal", "text": "Text", "timestamp": "Timestamp", "date": "Date",
    "json": "Json", "list": "List",
}


def _wit_value(value: Value, types: Any, prefix: str = "Value") -> Any:
    case = getattr(types, f"{prefix}_{_CASE[value.kind]}")
    if value.kind == "null":
        return case()
    if value.kind == "list":
        return case([_wit_value(element, types, "Scalar") for element in value.data])
    return case(value.data)


def _wit_values(values: Sequence[Value], types: Any) -> list[Any]:
    return [_wit_value(v, types) for v in values]


def _wit_fields(fields: Sequence[tuple[str, Value]], types: Any) -> list[Any]:
    return [types.FieldValue(name, _wit_value(value, types)) for name, value in fields]


def _wit_collection(c: Collection, types: Any) -> Any:
    fields = []
    for f in c.fields:
        if f.type.kind == "list":
            field_type = types.FieldType_List(types.ScalarType[f.type.element.upper()])
        else:
            field_type = getattr(types, f"FieldType_{_CASE[f.type.kind]}")()
        computed = None
        if f.computed is not None:
            r = f.computed
            computed = types.Computed_Ratio(types.Ratio(r.numerator, r.denominator, r.scale))
        fields.append(types.Field(
            name=f.name, type=field_type, nullable=c.is_nullable(f), searchable=f.is_searchable,
            filterable=f.is_filterable, sortable=f.is_sortable, computed=computed,
            description=f.description))
    return types.Collection(
        name=c.name, fields=fields, primary_key=list(c.primary_key),
        sink=types.Sink[c.sink.name], description=c.description)


def export(projection: Union[type, Projection]) -> type:
    """The ``WitWorld`` class componentize-py exports for ``projection`` (a
    :class:`Projection` subclass or instance). In the app module: ``WitWorld = export(P)``.

    Natively (no bindings) the class still exists, so app modules import in tests.
    """
    instance = projection() if isinstance(projection, type) else projection
    # Import the bindings now, not when the host calls: componentize-py snapshots the
    # interpreter after importing the app module, and the component has no files to import
    # modules from later. Natively (tests) there are no bindings and nothing to export.
    try:
        import wit_world
        from componentize_py_types import Err, Ok
        from wit_world.imports import log, state, types
    except ImportError:
        wit_world = None

    class WitWorld(wit_world.WitWorld if wit_world else object):  # type: ignore[misc]
        """The component's exports, delegating to the projection."""

        def describe(self) -> Any:
            return to_wit(instance.describe(), types)

        def handle(self, events: list[Any]) -> list[Any]:
            store = _HostStore(state, log, types)
            outcomes = run_batch(instance, (event_from_wit(e) for e in events), store)
            results: list[Any] = []
            for outcome in outcomes:
                if outcome.ok:
                    results.append(Ok([to_wit(op, types) for op in outcome.operations]))
                else:
                    results.append(Err(outcome.error))
            return results

    WitWorld.__qualname__ = "WitWorld"
    return WitWorld
