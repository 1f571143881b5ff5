"""The conformance corpus (``tests/conformance/*.json`` of the repository) run through the
Python harness: the same declarations, operations and expected rows or rejections the host's
end-to-end runner checks against PostgreSQL."""

import json
import pathlib
import unittest
from decimal import Decimal

from projector_plugin import (
    Collection, Delete, Event, Field, FieldType, Increment, Projection, Ratio, Sink, Spec, Upsert, Value,
)
from projector_plugin.testing import Harness, HostRejection

CORPUS = pathlib.Path(__file__).resolve().parents[3] / "tests" / "conformance"


def declaration(document):
    """The Python spec of a declaration in the registry's JSON form."""
    spec = Spec(document["name"], document["version"], document.get("description", ""))
    for c in document["collections"]:
        collection = Collection(c["name"], c.get("description", ""), sink=Sink(c["sink"]))
        for f in c["fields"]:
            kind = f["type"]
            field_type = FieldType("list", kind["list"]) if isinstance(kind, dict) else FieldType(kind)
            ratio = f.get("computed", {}).get("ratio")
            collection.field(Field(
                f["name"], field_type, f.get("description", ""), nullable_flag=f.get("nullable", False),
                is_searchable=f.get("searchable", False), is_filterable=f.get("filterable", False),
                is_sortable=f.get("sortable", False),
                computed=None if ratio is None else Ratio(ratio["numerator"], ratio["denominator"], ratio["scale"]),
            ))
        collection.key(*c["primary_key"])
        spec.collection(collection)
    return spec


def value(item):
    if item is None:
        return Value("null")
    (kind, data), = item.items()
    if kind == "list":
        return Value("list", tuple(value(element) for element in data))
    return Value(kind, data)


def operation(item):
    (kind, body), = item.items()
    key = tuple(value(part) for part in body["key"])
    if kind == "delete":
        return Delete(body["collection"], key)
    fields = [(name, value(v)) for name, v in body["fields"]]
    return (Upsert if kind == "upsert" else Increment)(body["collection"], key, fields)


class Replay(Projection):
    """Declares the case's spec and answers each event with the case's operations for it."""

    def __init__(self, spec, events):
        self.spec, self.events = spec, events

    def describe(self):
        return self.spec

    def handle(self, event, ctx):
        return [operation(op) for op in self.events[event.offset]]


def run(document, batches):
    try:
        spec = declaration(document)
        events = [event for batch in batches for event in batch]
        harness = Harness(Replay(spec, events))
    except (ValueError, KeyError, TypeError) as exc:
        return ("declaration", str(exc))
    for offset in range(len(events)):
        try:
            harness.feed(Event("conformance", 0, offset, None, None, ()))
        except HostRejection as exc:
            return ("operation", str(exc))
    return ("rows", {c.name: harness.rows(c.name) for c in spec.collections})


def same(actual, expected):
    """Equal in the corpus's sense: numbers of equal value, everything else exactly."""
    number = (int, float, Decimal)
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(actual, number) and isinstance(expected, number):
        return Decimal(repr(actual) if isinstance(actual, float) else actual) == \
            Decimal(repr(expected) if isinstance(expected, float) else expected)
    if isinstance(actual, (list, tuple)) and isinstance(expected, list):
        return len(actual) == len(expected) and all(same(a, b) for a, b in zip(actual, expected))
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(same(actual[k], expected[k]) for k in actual)
    return type(actual) is type(expected) and actual == expected


class ConformanceTest(unittest.TestCase):
    def test_the_python_harness_passes_the_conformance_corpus(self):
        count, failures = 0, []
        for path in sorted(CORPUS.glob("*.json")):
            document = json.loads(path.read_text(), parse_float=Decimal)
            for case in document["cases"]:
                count += 1
                kind, result = run(case.get("declaration", document["declaration"]), case["batches"])
                expect = case["expect"]
                passed = kind == expect["error"] if "error" in expect else \
                    kind == "rows" and same(result, expect["rows"])
                if not passed:
                    failures.append(f"{path.name}: {case['name']}: got {kind} {result}, expected {expect}")
        self.assertGreaterEqual(count, 30)
        self.assertEqual(failures, [], f"{len(failures)} of {count} cases failed:\n" + "\n".join(failures))


if __name__ == "__main__":
    unittest.main()
