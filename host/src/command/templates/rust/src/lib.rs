//! `{{name}}`: one row per record key, with the last event type seen and how many events
//! arrived. A starting point: change `describe` and `handle` to build your read model.

use projector_sdk::{Collection, Context, Error, Event, Field, Operation, Projection, ProjectionSpec};

/// The collection this projection writes.
pub const COLLECTION: &str = "{{collection}}";

/// The `{{name}}` projection.
pub struct {{type_name}};

impl Projection for {{type_name}} {
    fn describe() -> ProjectionSpec {
        ProjectionSpec::new("{{name}}", 1, "Events per record key.").collection(
            Collection::postgres(COLLECTION, "One row per record key.")
                .field(Field::text("id").description("The record key."))
                .field(Field::text("last_type").filterable().description("Type of the last event."))
                .field(Field::integer("events").sortable().description("Events received."))
                .primary_key(["id"]),
        )
    }

    fn handle(event: &Event, _ctx: &mut Context) -> Result<Vec<Operation>, Error> {
        let (Some(id), Some(kind)) = (event.key_str(), event.event_type()) else {
            return Ok(Vec::new());
        };
        Ok(vec![
            Operation::upsert(COLLECTION, id).set("last_type", kind).into(),
            Operation::increment(COLLECTION, id).add("events", 1_i64).into(),
        ])
    }
}

projector_sdk::export_projection!({{type_name}});

#[cfg(test)]
mod tests {
    use projector_sdk::testing::{event_from_sample, Harness};
    use projector_sdk::Value;

    use super::*;

    #[test]
    fn counts_events_per_key() {
        let mut harness = Harness::<{{type_name}}>::new();
        let created = event_from_sample(r#"{"key": "ord-1", "headers": {"__TypeId__": "x.OrderCreated"}, "value": {}}"#);
        let shipped = event_from_sample(r#"{"key": "ord-1", "headers": {}, "value": {"type": "OrderShipped"}}"#);
        harness.feed_all([&created, &shipped]);
        let row = harness.row(COLLECTION, "ord-1").expect("a row");
        assert_eq!(row["last_type"], Value::Text("OrderShipped".into()));
        assert_eq!(row["events"], Value::Integer(2));
    }
}
