"""``sleeper``: a test fixture, never deployed. On an event of type ``Sleep`` it calls
``time.sleep(40)``; on ``Doze`` it sleeps a second at a time forever; any other event upserts
``ok``. It proves, in Python, that sleeping waits for nothing real inside the sandbox (timers
are due at once) and that a plugin sleeping forever is stopped like any loop.
"""

from __future__ import annotations

import time

from projector_plugin import Collection, Context, Event, Field, Operation, Projection, Spec, export, loads, upsert

COLLECTION = "sleeps"


class Sleeper(Projection):
    """The fixture projection."""

    def describe(self) -> Spec:
        rows = Collection(COLLECTION, "One row per record key.")
        rows.field(Field.text("id", "The record key."))
        rows.field(Field.text("observed", "What the event observed."))
        rows.key("id")
        return Spec("py-sleeper", 1, "Test fixture: sleeping in Python.").collection(rows)

    def handle(self, event: Event, ctx: Context) -> list[Operation]:
        kind = loads(event.value or b"{}").get("type")
        observed = "ok"
        if kind == "Sleep":
            time.sleep(40)
            observed = "slept"
        elif kind == "Doze":
            while True:
                time.sleep(1)
        return [upsert(COLLECTION, event.key_str or "").set("observed", observed)]


WitWorld = export(Sleeper)
