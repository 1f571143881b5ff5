"""`{{name}}`: one row per record key, with the last event type seen and how many events
arrived. A starting point: change ``describe`` and ``handle`` to build your read model."""

from projector_plugin import Context, Collection, Event, Field, Projection, Spec, export, increment, upsert

COLLECTION = "{{collection}}"
"""The collection this projection writes."""


class Starter(Projection):
    """The ``{{name}}`` projection."""

    def describe(self) -> Spec:
        return Spec("{{name}}", 1, "Events per record key.").collection(
            Collection(COLLECTION, "One row per record key.")
            .field(Field.text("id", "The record key."))
            .field(Field.text("last_type", "Type of the last event.").filterable())
            .field(Field.integer("events", "Events received.").sortable())
            .key("id")
        )

    def handle(self, event: Event, ctx: Context) -> list:
        key, kind = event.key_str, event.type
        if key is None or kind is None:
            return []
        return [
            upsert(COLLECTION, key).set("last_type", kind),
            increment(COLLECTION, key).add("events", 1),
        ]


WitWorld = export(Starter)
