//! `order-summaries` version 2: the version 1 summary plus `event_count`, the number of
//! distinct order events applied. Uploading it next to a live version 1 rebuilds it blue/green
//! from the start of the topic while version 1 keeps serving, then swaps.

use order_events::{handle_once, summary, AppliedOnly};
use projector_sdk::{Collection, Context, Error, Event, Field, Operation, Projection, ProjectionSpec};

/// The collection this projection writes (the same public name as version 1).
pub const COLLECTION: &str = "order_summaries";

/// The `order-summaries` projection, version 2.
pub struct OrderSummariesV2;

impl Projection for OrderSummariesV2 {
    fn describe() -> ProjectionSpec {
        ProjectionSpec::new("order-summaries", 2, "One summary row per order, with the number of events applied.")
            .collection(
                summary::with_fields(Collection::postgres(
                    COLLECTION,
                    "One order: who ordered, its status, total, item count and event count.",
                ))
                .field(Field::integer("event_count").description("Distinct order events applied to the order.")),
            )
    }

    fn handle(event: &Event, ctx: &mut Context) -> Result<Vec<Operation>, Error> {
        handle_once(event, ctx, |_: &mut AppliedOnly, e| {
            let mut operations = summary::operations(COLLECTION, e);
            operations.push(Operation::increment(COLLECTION, e.order_id()).add("event_count", 1_i64).into());
            Ok(operations)
        })
    }
}

projector_sdk::export_projection!(OrderSummariesV2);

#[cfg(test)]
mod tests {
    use order_events::SAMPLES;
    use projector_sdk::testing::{events_from_samples, Harness};
    use serde_json::json;

    use super::*;

    #[test]
    fn counts_each_distinct_event_once() {
        let mut harness = Harness::<OrderSummariesV2>::new();
        harness.feed_all(&events_from_samples(SAMPLES));
        let counts: Vec<_> = harness.rows(COLLECTION).iter().map(|r| r.to_json()["event_count"].clone()).collect();
        // ord-1001: 4 events; ord-1002: placed + shipped; ord-1003: created, submitted (once), cancelled.
        assert_eq!(counts, [json!(4), json!(2), json!(3)]);
    }
}
