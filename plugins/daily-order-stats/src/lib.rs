//! `daily-order-stats`: per UTC day, the orders submitted or placed that day, their revenue and
//! how many of them are currently in each status.
//!
//! Invariants:
//! - An order counts on exactly one day: the UTC day of the event that submitted
//!   (`OrderSubmitted.submittedAt`) or placed (`OrderPlaced.occurredAt`) it, taken from the
//!   event, never the clock. A second submit or place of a counted order changes no counts.
//! - Revenue is gross: it adds the order's total on that day, and a later cancellation does
//!   not subtract it (the cancellation only moves the order to `CANCELLED` in
//!   `orders_by_status`).
//! - `orders_by_status` moves a counted order from its previous status to the new one on
//!   `OrderShipped` / `OrderCancelled`; the previous status comes from the order's state (key =
//!   order id: applied event ids, current status, stats day).
//!   `OrderCreated` / `ItemAdded` only mark an uncounted order `CREATED`; they never move a
//!   counted one. A status change to the same status writes nothing.
//! - Every write is an increment, which commutes: hosts consuming different partitions may
//!   update the same day row. `average_order_value` is computed by the host, never written.

use order_events::{handle_once, status, AppliedEvents, OrderEvent, OrderState};
use projector_sdk::{
    money, Collection, Context, Date, Decimal, Error, Event, Field, Operation, Projection, ProjectionSpec,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The collection this projection writes.
pub const COLLECTION: &str = "daily_order_stats";

/// The `daily-order-stats` projection. Revenue is gross: an order's total counts on the day it
/// was submitted or placed, and a later cancellation does not subtract it.
pub struct DailyOrderStats;

/// Per-order state.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StatsState {
    applied: AppliedEvents,
    /// Current status, once any event of the order was seen.
    status: Option<String>,
    /// The day the order counts on, once submitted or placed.
    day: Option<Date>,
}

impl OrderState for StatsState {
    fn applied(&mut self) -> &mut AppliedEvents {
        &mut self.applied
    }
}

impl Projection for DailyOrderStats {
    fn describe() -> ProjectionSpec {
        ProjectionSpec::new(
            "daily-order-stats",
            1,
            "Per UTC day: orders submitted or placed, gross revenue, average order value and current status counts.",
        )
        .collection(
            Collection::postgres(COLLECTION, "One UTC day, counting the orders submitted or placed that day.")
                .field(Field::date("day").description("UTC day the orders were submitted or placed."))
                .field(Field::integer("order_count").description("Orders submitted or placed that day."))
                .field(
                    Field::decimal("total_revenue")
                        .description("Sum of those orders' totals; gross: cancellations do not subtract."),
                )
                .field(
                    Field::decimal("average_order_value")
                        .computed_ratio("total_revenue", "order_count", 2)
                        .description("total_revenue / order_count, 2 decimals (computed by the host)."),
                )
                .field(
                    Field::json("orders_by_status").description(
                        "How many of that day's orders are currently in each status, e.g. {\"SHIPPED\": 2}.",
                    ),
                )
                .primary_key(["day"]),
        )
    }

    fn handle(event: &Event, ctx: &mut Context) -> Result<Vec<Operation>, Error> {
        handle_once(event, ctx, |state, e| Ok(apply(state, e)))
    }
}

/// Folds a first-time event into the order's state; returns the increments it implies.
fn apply(state: &mut StatsState, event: &OrderEvent) -> Vec<Operation> {
    match event {
        OrderEvent::Created(_) | OrderEvent::ItemAdded(_) => {
            // Only an order not yet counted is open; never move a counted order back.
            if state.day.is_none() {
                state.status = Some(status::CREATED.to_owned());
            }
            Vec::new()
        }
        OrderEvent::Submitted(e) => counted(state, e.submitted_at.at.date(), e.total, status::SUBMITTED),
        OrderEvent::Placed(e) => counted(state, e.occurred_at.at.date(), e.total, status::PLACED),
        OrderEvent::Shipped(_) => moved(state, status::SHIPPED),
        OrderEvent::Cancelled(_) => moved(state, status::CANCELLED),
    }
}

/// Counts the order on `day` with `total`, unless it already counts somewhere.
fn counted(state: &mut StatsState, day: Date, total: Decimal, new_status: &str) -> Vec<Operation> {
    if state.day.is_some() {
        return Vec::new();
    }
    state.day = Some(day);
    state.status = Some(new_status.to_owned());
    let op = Operation::increment(COLLECTION, day)
        .add("order_count", 1_i64)
        .add("total_revenue", money(total))
        .add("orders_by_status", json!({ new_status: 1 }));
    vec![op.into()]
}

/// Moves a counted order from its previous status to `new_status` on its day.
fn moved(state: &mut StatsState, new_status: &str) -> Vec<Operation> {
    let previous = state.status.replace(new_status.to_owned());
    match (state.day, previous) {
        (Some(day), Some(previous)) if previous != new_status => {
            let amounts = json!({ previous: -1, new_status: 1 });
            vec![Operation::increment(COLLECTION, day).add("orders_by_status", amounts).into()]
        }
        _ => Vec::new(),
    }
}

projector_sdk::export_projection!(DailyOrderStats);

#[cfg(test)]
mod tests {
    use order_events::SAMPLES;
    use projector_sdk::testing::{event_from_sample, events_from_samples, Harness};

    use super::*;

    fn day(text: &str) -> Date {
        Date::parse(text).unwrap()
    }

    #[test]
    fn samples_give_exact_days() {
        let mut harness = Harness::<DailyOrderStats>::new();
        let results = harness.feed_all(&events_from_samples(SAMPLES));
        let counts: Vec<_> = results.iter().map(|r| r.as_ref().map(Vec::len)).collect();
        // Only submit/place (e-3, e-5, e-7) and ship/cancel of counted orders (e-4, e-8, e-10) write.
        assert_eq!(counts, [Ok(0), Ok(0), Ok(1), Ok(1), Ok(1), Ok(0), Ok(1), Ok(0), Ok(1), Ok(0), Ok(1)]);
        let rows: Vec<_> = harness.rows(COLLECTION).iter().map(|r| r.to_json()).collect();
        assert_eq!(
            rows,
            [
                // ord-1001 submitted 09:02 (116.80) and ord-1002 placed 23:59:59.999 (79.47), both shipped.
                json!({
                    "day": "2026-11-20", "order_count": 2, "total_revenue": "196.27",
                    "average_order_value": "98.14", "orders_by_status": {"SHIPPED": 2},
                }),
                // ord-1003 submitted once (e-7 redelivered), then cancelled: revenue stays gross.
                json!({
                    "day": "2026-11-21", "order_count": 1, "total_revenue": "48.00",
                    "average_order_value": "48.00", "orders_by_status": {"CANCELLED": 1},
                }),
            ]
        );
    }

    #[test]
    fn status_counts_follow_the_order() {
        let mut harness = Harness::<DailyOrderStats>::new();
        let events = events_from_samples(SAMPLES);
        harness.feed_all(&events[..5]);
        let row = harness.row(COLLECTION, day("2026-11-20")).unwrap().to_json();
        assert_eq!(row["orders_by_status"], json!({"SHIPPED": 1, "PLACED": 1}));
        let state = std::str::from_utf8(harness.state_bytes("ord-1001").unwrap()).unwrap().to_owned();
        assert_eq!(state, r#"{"applied":["e-1","e-2","e-3","e-4"],"status":"SHIPPED","day":"2026-11-20"}"#);
    }

    #[test]
    fn second_submit_with_a_new_event_id_changes_no_counts() {
        let mut harness = Harness::<DailyOrderStats>::new();
        let events = events_from_samples(SAMPLES);
        harness.feed_all(&events[..3]);
        let resubmit = event_from_sample(
            r#"{"key":"ord-1001","headers":{"__TypeId__":"x.OrderSubmitted"},"value":{"eventId":"e-3b","orderId":"ord-1001","total":120.0,"submittedAt":"2026-11-22T09:00:00.000Z"}}"#,
        );
        assert_eq!(harness.feed(&resubmit), Ok(Vec::new()));
        let rows: Vec<_> = harness.rows(COLLECTION).iter().map(|r| r.to_json()).collect();
        assert_eq!(
            rows,
            [json!({
                "day": "2026-11-20", "order_count": 1, "total_revenue": "116.80",
                "average_order_value": "116.80", "orders_by_status": {"SUBMITTED": 1},
            })]
        );
    }

    #[test]
    fn cancelling_an_open_order_writes_nothing() {
        let mut harness = Harness::<DailyOrderStats>::new();
        let created = &events_from_samples(SAMPLES)[5];
        let cancel = event_from_sample(
            r#"{"key":"ord-1003","headers":{},"value":{"type":"OrderCancelled","eventId":"e-x","orderId":"ord-1003","cancelledAt":"2026-11-21T09:00:00Z"}}"#,
        );
        assert_eq!(harness.feed(created), Ok(Vec::new()));
        assert_eq!(harness.feed(&cancel), Ok(Vec::new()));
        assert!(harness.rows(COLLECTION).is_empty());
    }
}
