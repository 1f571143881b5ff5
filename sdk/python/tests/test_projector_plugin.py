"""Unit tests of the helper package: values, money, time, events, context and harness."""

import unittest
from decimal import Decimal

from projector_plugin import (
    Collection, Context, Date, Event, Field, Header, Json, Level, Projection, ProjectionError, Spec,
    Timestamp, Value, decimal_text, delete, dumps, export, increment, loads, money, run_batch, upsert,
)
from projector_plugin.testing import Harness, HostRejection, MemoryStore, event_from_sample as sample


class MoneyAndDecimalsTest(unittest.TestCase):
    def test_money_rescales_to_two_places(self):
        for text, expected in [("116.8", "116.80"), ("99", "99.00"), ("79.47", "79.47"), ("0", "0.00")]:
            self.assertEqual(decimal_text(money(Decimal(text))), expected)

    def test_money_rounds_half_away_from_zero(self):
        for text, expected in [("0.125", "0.13"), ("-0.125", "-0.13"), ("0.135", "0.14"),
                               ("2.674999", "2.67"), ("-2.675", "-2.68"), ("-0.004", "0.00")]:
            self.assertEqual(decimal_text(money(Decimal(text))), expected, text)

    def test_decimals_are_plain_and_exact(self):
        self.assertEqual(decimal_text(Decimal("1E+2")), "100")
        self.assertEqual(decimal_text(Decimal("1.0E-3")), "0.0010")
        self.assertEqual(decimal_text(Decimal("116.80")), "116.80")
        self.assertEqual(loads("0.1") + loads("0.2"), Decimal("0.3"))
        self.assertEqual(Value.of(Decimal("1E+2")), Value("decimal", "100"))
        with self.assertRaises(ValueError):
            decimal_text(Decimal("NaN"))

    def test_json_counters_are_stored_without_trailing_zeros_as_the_host_stores_them(self):
        from projector_plugin import FieldType
        from projector_plugin.testing import _add
        total = _add(FieldType("json"), Value("json", '{"A": 0.50, "B": 99}'), Value("json", '{"A": 1, "B": 1.0}'))
        self.assertEqual(total, Value("json", '{"A":1.5,"B":100}'))

    def test_json_keeps_exact_digits(self):
        document = loads('{"a": [8.9, 99.0, 0.10, 3], "b": "Zoë", "c": null, "d": true}')
        self.assertEqual(dumps(document), '{"a":[8.9,99.0,0.10,3],"b":"Zoë","c":null,"d":true}')
        self.assertEqual(dumps({"at": Timestamp(0), "day": Date(1)}), '{"at":"1970-01-01T00:00:00Z","day":"1970-01-02"}')


class TimeTest(unittest.TestCase):
    def test_parses_utc_and_offsets_to_micros(self):
        t = Timestamp.parse("2026-11-22T10:15:30.123Z")
        self.assertEqual(t.micros, 1_795_342_530_123_000)
        self.assertEqual(Timestamp.parse("2026-11-22T11:15:30.123+01:00"), t)
        self.assertEqual(Timestamp.parse("2026-11-22T05:15:30.123-05:00"), t)
        self.assertEqual(Timestamp.parse("2026-11-22T10:15:30.123456789Z").micros, 1_795_342_530_123_456)
        self.assertEqual(Timestamp.parse("1969-12-31T23:59:59.999Z").micros, -1000)

    def test_rejects_non_rfc3339(self):
        for bad in ["2026-11-22", "2026-11-22 10:15:30", "yesterday", "2026-11-22T10:15:30", "2026-02-30T00:00:00Z"]:
            with self.assertRaises(ValueError) as raised:
                Timestamp.parse(bad)
            self.assertIn(bad, str(raised.exception))

    def test_formats_as_rfc3339(self):
        self.assertEqual(str(Timestamp.parse("2026-11-20T09:00:00.000Z")), "2026-11-20T09:00:00Z")
        self.assertEqual(str(Timestamp.parse("2026-11-20T23:59:59.999Z")), "2026-11-20T23:59:59.999Z")
        self.assertEqual(str(Timestamp.parse("2026-11-20T23:59:59.000001Z")), "2026-11-20T23:59:59.000001Z")
        self.assertEqual(str(Timestamp(-1000)), "1969-12-31T23:59:59.999Z")

    def test_dates(self):
        d = Date.parse("2026-11-20")
        self.assertEqual(d.days, 20_777)
        self.assertEqual(str(d), "2026-11-20")
        self.assertEqual(Timestamp.parse("2026-11-21T00:30:00+01:00").date(), d)
        self.assertEqual(Timestamp.parse("1969-12-31T23:00:00Z").date().days, -1)
        with self.assertRaises(ValueError):
            Date.parse("2026-02-30")


class ValueTest(unittest.TestCase):
    def test_python_values_map_to_wit_values(self):
        self.assertEqual(Value.of(None), Value("null"))
        self.assertEqual(Value.of(True), Value("boolean", True))
        self.assertEqual(Value.of(3), Value("integer", 3))
        self.assertEqual(Value.of(1.5), Value("float", 1.5))
        self.assertEqual(Value.of("a"), Value("text", "a"))
        self.assertEqual(Value.of(Timestamp(5)), Value("timestamp", 5))
        self.assertEqual(Value.of(Date(2)), Value("date", 2))
        self.assertEqual(Value.of({"SHIPPED": 1}), Value("json", '{"SHIPPED":1}'))
        self.assertEqual(Value.of(Json([1, Decimal("2.50")])), Value("json", "[1,2.50]"))
        self.assertEqual(Value.of(["x", 1]), Value("list", (Value("text", "x"), Value("integer", 1))))
        with self.assertRaises(ValueError):
            Value.of(2**63)
        with self.assertRaises(TypeError):
            Value.of([{"a": 1}])


class EventTest(unittest.TestCase):
    def test_type_from_header_or_value(self):
        self.assertEqual(Event(headers=(Header("__TypeId__", b"com.x.OrderCreated"),), value=b"{}").type, "OrderCreated")
        self.assertEqual(Event(headers=(Header("__TypeId__", b"OrderShipped"),), value=b'{"type":"Other"}').type,
                         "OrderShipped")
        self.assertEqual(Event(headers=(Header("__TypeId__", None),), value=b'{"type":"OrderSubmitted"}').type,
                         "OrderSubmitted")
        for value in (b'{"eventId":"e"}', b'{"type":42}', b"not json", None):
            self.assertIsNone(Event(value=value).type)

    def test_header_is_the_last_one(self):
        event = Event(key=b"ord-1", headers=(Header("a", b"1"), Header("a", b"2")))
        self.assertEqual(event.header("a"), b"2")
        self.assertIsNone(event.header("b"))
        self.assertEqual(event.key_str, "ord-1")

    def test_reader_errors_name_the_field(self):
        fields = Event(value=b'{"items":[{"unitPrice":true}],"n":1.5,"t":"soon"}').fields()
        cases = [
            (lambda: fields.text("total"), "missing field `total`"),
            (lambda: fields.objects("items")[0].number("unitPrice"),
             "field `items[0].unitPrice`: expected a number, got boolean `true`"),
            (lambda: fields.integer("n"), "field `n`: expected an integer, got number `1.5`"),
            (lambda: fields.timestamp("t"), "field `t`: invalid timestamp `soon`"),
        ]
        for call, message in cases:
            with self.assertRaises(ProjectionError) as raised:
                call()
            self.assertTrue(str(raised.exception).startswith(message), str(raised.exception))
        with self.assertRaises(ProjectionError) as raised:
            Event().json()
        self.assertIn("tombstone", str(raised.exception))

    def test_sample_lines(self):
        event = sample('{"key": "ord-1", "headers": {"__TypeId__": "a.b.OrderCreated", "trace": null}, '
                       '"value": {"unitPrice": 8.90}}')
        self.assertEqual((event.key_str, event.type, event.header("trace")), ("ord-1", "OrderCreated", None))
        self.assertEqual(event.value, b'{"unitPrice":8.90}')


class Counter(Projection):
    """Counts events per key; fails events without a key after writing state."""

    def describe(self):
        return Spec("counter", 1, "Counts events per key.").collection(
            Collection("counts", "One row per key.")
            .field(Field.text("key"))
            .field(Field.integer("n").required())
            .field(Field.decimal("amount"))
            .field(Field.decimal("average").ratio("amount", "n", 2))
            .field(Field.json("by_kind"))
            .key("key"))

    def handle(self, event, ctx):
        seen = ctx.state("seen", 0)
        ctx.set_state("seen", seen + 1)
        if event.key is None:
            raise ProjectionError("no key")
        ctx.debug(f"counting {event.key_str}")
        kind = event.header("kind").decode()
        yield increment("counts", event.key_str).add("n", 1).add("amount", Decimal("1.005")).add("by_kind", {kind: 1})
        if kind == "undo":
            yield increment("counts", event.key_str).add("by_kind", {"undo": -1, "a": -1})
        if kind == "drop":
            yield delete("counts", event.key_str)


def ev(key, kind="a"):
    return Event(key=None if key is None else key.encode(), headers=(Header("kind", kind.encode()),))


class RuntimeAndHarnessTest(unittest.TestCase):
    def test_failed_event_state_does_not_leak_into_the_batch(self):
        store = MemoryStore()
        outcomes = run_batch(Counter(), [ev("a"), ev(None), ev("b")], store)
        self.assertEqual([o.error for o in outcomes], [None, "no key", None])
        self.assertEqual(store.state["seen"], b"2")

    def test_other_exceptions_become_errors(self):
        outcomes = run_batch(Counter(), [Event(key=b"k")], MemoryStore())
        self.assertEqual(outcomes[0].error, "AttributeError: 'NoneType' object has no attribute 'decode'")

    def test_harness_applies_host_semantics(self):
        harness = Harness(Counter)
        harness.feed_all([ev("a"), ev("a", "undo"), ev("b"), ev("c", "drop"), ev("a")])
        self.assertEqual(harness.rows("counts"), [
            {"key": "a", "n": 3, "amount": "3.015", "average": "1.01", "by_kind": {"a": 1}},
            {"key": "b", "n": 1, "amount": "1.005", "average": "1.01", "by_kind": {"a": 1}},
        ])
        self.assertEqual(harness.logs[0], (Level.DEBUG, "counting a"))
        self.assertEqual(harness.state("seen"), 5)

    def test_harness_rejects_what_the_host_rejects(self):
        class Bad(Counter):
            def handle(self, event, ctx):
                return [upsert("counts", "k").set(event.key_str, 1)]

        for field in ("nope", "average", "key", "amount"):
            with self.assertRaises(HostRejection):
                Harness(Bad).feed(Event(key=field.encode()))
        with self.assertRaises(HostRejection):  # `n` is required
            Harness(Bad).feed(Event(key=b"by_kind"))

    def test_spec_validation(self):
        with self.assertRaises(ValueError):
            Spec("Bad Name", 1, "").validate()
        with self.assertRaises(ValueError):
            Spec("p", 1, "").collection(Collection("c").field(Field.text("a"))).validate()
        with self.assertRaises(ValueError):
            Spec("p", 1, "").collection(
                Collection("c").field(Field.text("a")).field(Field.decimal("r").ratio("a", "a", 2)).key("a")
            ).validate()

    def test_export_works_without_bindings(self):
        world = export(Counter)
        self.assertTrue(callable(world.describe) and callable(world.handle))

    def test_context_overlay(self):
        store = MemoryStore()
        ctx = Context(store)
        ctx.set_state("k", {"a": Decimal("1.50")})
        self.assertEqual(ctx.state("k"), {"a": Decimal("1.50")})
        self.assertEqual(store.state, {})
        ctx._commit()
        self.assertEqual(store.state, {"k": b'{"a":1.50}'})
        ctx.remove_state("k")
        ctx._discard()
        self.assertEqual(ctx.state_bytes("k"), b'{"a":1.50}')
        with self.assertRaises(ProjectionError):
            ctx.set_state("big", "x" * 70_000)


if __name__ == "__main__":
    unittest.main()
