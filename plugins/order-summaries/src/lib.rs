//! `order-summaries`: one row per order, for lists and pagination.
//!
//! Invariants:
//! - Both producer generations feed the same rows: `OrderPlaced` (legacy) opens an order in
//!   status `PLACED`, `OrderCreated` in `CREATED`; unknown event types are skipped.
//! - Each event applies once: the order's state (key = order id) holds the applied event ids,
//!   and a redelivered `eventId` yields no operation.
//! - `total` is exact and has 2 decimals: the sum of quantity × unit price while the order is
//!   open (`ItemAdded` adds to it), then the submitted or placed total.
//! - Times come from the events (`updated_at` = the time of the last event applied), never the
//!   clock.

use order_events::{handle_once, summary, AppliedOnly};
use projector_sdk::{Collection, Context, Error, Event, Operation, Projection, ProjectionSpec};

/// The collection this projection writes.
pub const COLLECTION: &str = "order_summaries";

/// The `order-summaries` projection.
pub struct OrderSummaries;

impl Projection for OrderSummaries {
    fn describe() -> ProjectionSpec {
        ProjectionSpec::new("order-summaries", 1, "One summary row per order, for order lists and pagination.")
            .collection(summary::with_fields(Collection::postgres(
                COLLECTION,
                "One order: who ordered, its status, total and item count.",
            )))
    }

    fn handle(event: &Event, ctx: &mut Context) -> Result<Vec<Operation>, Error> {
        handle_once(event, ctx, |_: &mut AppliedOnly, e| Ok(summary::operations(COLLECTION, e)))
    }
}

projector_sdk::export_projection!(OrderSummaries);

#[cfg(test)]
mod tests {
    use order_events::SAMPLES;
    use projector_sdk::testing::{event_from_sample, events_from_samples, Harness};
    use serde_json::json;

    use super::*;

    fn run_samples() -> Harness<OrderSummaries> {
        let mut harness = Harness::new();
        let events = events_from_samples(SAMPLES);
        let results = harness.feed_all(&events);
        let counts: Vec<_> = results.iter().map(|r| r.as_ref().map(Vec::len)).collect();
        // e-2 (ItemAdded) increments and upserts; the duplicate e-7 and LoyaltyPointsGranted
        // yield nothing.
        assert_eq!(counts, [Ok(1), Ok(2), Ok(1), Ok(1), Ok(1), Ok(1), Ok(1), Ok(0), Ok(1), Ok(0), Ok(1)]);
        harness
    }

    #[test]
    fn samples_give_exact_rows() {
        let harness = run_samples();
        let rows: Vec<_> = harness.rows(COLLECTION).iter().map(|r| r.to_json()).collect();
        assert_eq!(
            rows,
            [
                json!({
                    "order_id": "ord-1001", "customer_id": "cust-7", "customer_name": "Zoë Müller",
                    "status": "SHIPPED", "total": "116.80", "item_count": 2,
                    "created_at": "2026-11-20T09:00:00Z", "updated_at": "2026-11-21T15:30:00Z",
                }),
                json!({
                    "order_id": "ord-1002", "customer_id": "cust-9", "customer_name": "Kenji Watanabe",
                    "status": "SHIPPED", "total": "79.47", "item_count": 2,
                    "created_at": "2026-11-20T23:59:59.999Z", "updated_at": "2026-11-22T01:00:00Z",
                }),
                json!({
                    "order_id": "ord-1003", "customer_id": "cust-7", "customer_name": "Zoë Müller",
                    "status": "CANCELLED", "total": "48.00", "item_count": 1,
                    "created_at": "2026-11-21T08:00:00Z", "updated_at": "2026-11-21T10:00:00Z",
                }),
            ]
        );
        assert!(harness.row(COLLECTION, "ord-1004").is_none(), "LoyaltyPointsGranted is skipped");
        let skipped = "Skipped redelivered event e-7 of order ord-1003.".to_owned();
        assert_eq!(harness.logs(), [(projector_sdk::Level::Debug, skipped)]);
    }

    #[test]
    fn open_order_total_is_the_sum_of_lines() {
        let mut harness = Harness::<OrderSummaries>::new();
        let events = events_from_samples(SAMPLES);
        harness.feed_all(&events[..2]);
        let row = harness.row(COLLECTION, "ord-1001").unwrap().to_json();
        assert_eq!(
            (&row["status"], &row["total"], &row["item_count"]),
            (&json!("CREATED"), &json!("116.80"), &json!(2))
        );
        assert_eq!(row["updated_at"], json!("2026-11-20T09:01:10Z"));
    }

    #[test]
    fn redelivery_after_later_events_changes_nothing() {
        let mut harness = run_samples();
        let events = events_from_samples(SAMPLES);
        let before: Vec<_> = harness.rows(COLLECTION).iter().map(|r| r.to_json()).collect();
        for event in &events {
            assert_eq!(harness.feed(event), Ok(Vec::new()));
        }
        let after: Vec<_> = harness.rows(COLLECTION).iter().map(|r| r.to_json()).collect();
        assert_eq!(before, after);
        let state = harness.state_bytes("ord-1001").unwrap();
        assert_eq!(state, br#"{"applied":["e-1","e-2","e-3","e-4"]}"#);
    }

    #[test]
    fn malformed_event_is_an_error_naming_the_field() {
        let mut harness = Harness::<OrderSummaries>::new();
        let bad = event_from_sample(
            r#"{"key":"ord-9","headers":{"__TypeId__":"x.OrderSubmitted"},"value":{"eventId":"e-90","orderId":"ord-9","submittedAt":"2026-11-20T09:02:00Z"}}"#,
        );
        let err = harness.feed(&bad).unwrap_err();
        assert!(err.message().contains("missing field `total`"), "{err}");
        assert!(harness.rows(COLLECTION).is_empty());
        assert!(harness.state_bytes("ord-9").is_none(), "a failed event is not marked applied");
    }
}
