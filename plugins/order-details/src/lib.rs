//! `order-details`: one document per order with its lines, status history, shipping and
//! cancellation.
//!
//! Invariants:
//! - The first eight fields mean exactly what they mean in `order-summaries`.
//! - `lines` and `history` are kept in the order's state (key = order id) and written whole on
//!   every change, in event order; `unitPrice` is the JSON number as the event wrote it and
//!   `history[].at` / `shipping.shippedAt` the instant's original text.
//! - Each event applies once: the state holds the applied event ids, and a redelivered
//!   `eventId` yields no operation. Unknown event types are skipped.
//! - The state grows with the order's lines (about 150 bytes each) and events; the host caps it
//!   at 64 KiB, some 400 lines, and fails the event beyond that.

use order_events::{handle_once, status, summary, AppliedEvents, Instant, OrderEvent, OrderState, Price};
use projector_sdk::{
    money, Collection, Context, Decimal, Error, Event, Field, Operation, Projection, ProjectionSpec, Value,
};
use serde::{Deserialize, Serialize};

/// The collection this projection writes.
pub const COLLECTION: &str = "order_details";

/// The `order-details` projection.
pub struct OrderDetails;

/// Per-order state: applied event ids, the lines and history written whole, the running total.
#[derive(Debug, Default, Serialize, Deserialize)]
struct DetailState {
    applied: AppliedEvents,
    lines: Vec<LineDoc>,
    history: Vec<HistoryDoc>,
    /// Current total: the sum of lines while open, then the submitted or placed total.
    total: Decimal,
}

impl OrderState for DetailState {
    fn applied(&mut self) -> &mut AppliedEvents {
        &mut self.applied
    }
}

/// One element of the `lines` field.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LineDoc {
    sku: String,
    product_name: String,
    quantity: i64,
    /// The exact JSON number from the event.
    unit_price: serde_json::Number,
}

/// One element of the `history` field.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HistoryDoc {
    status: String,
    /// The event's instant, as the event wrote it.
    at: String,
}

/// The `shipping` field.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ShippingDoc<'a> {
    carrier: &'a str,
    tracking_number: &'a str,
    shipped_at: &'a str,
}

impl LineDoc {
    fn new(sku: &str, product_name: &str, quantity: i64, unit_price: &Price) -> Self {
        Self { sku: sku.into(), product_name: product_name.into(), quantity, unit_price: unit_price.number().clone() }
    }
}

impl Projection for OrderDetails {
    fn describe() -> ProjectionSpec {
        ProjectionSpec::new("order-details", 1, "One document per order: lines, status history, shipping and cancellation.")
            .collection(
                summary::with_fields(Collection::postgres(COLLECTION, "One order with everything known about it."))
                    .field(Field::json("lines").description(
                        "Order lines in event order: [{sku, productName, quantity, unitPrice}], unitPrice as the event wrote it.",
                    ))
                    .field(Field::json("history").description("Status history in event order: [{status, at}], at as the event wrote it."))
                    .field(
                        Field::json("shipping")
                            .nullable()
                            .description("{carrier, trackingNumber, shippedAt} once shipped, else null."),
                    )
                    .field(Field::text("cancellation_reason").nullable().description("Why the order was cancelled, if it was.")),
            )
    }

    fn handle(event: &Event, ctx: &mut Context) -> Result<Vec<Operation>, Error> {
        handle_once(event, ctx, |state, e| Ok(vec![apply(state, e)?]))
    }
}

/// Folds a first-time event into the order's state; returns the upsert it implies.
fn apply(state: &mut DetailState, event: &OrderEvent) -> Result<Operation, Error> {
    let row = Operation::upsert(COLLECTION, event.order_id());
    let row = match event {
        OrderEvent::Created(e) => {
            state.lines = e
                .items
                .iter()
                .map(|i| LineDoc::new(&i.product_id, &i.product_name, i.quantity, &i.unit_price))
                .collect();
            state.total = money(e.items.iter().map(|i| i.unit_price.times(i.quantity)).sum());
            opened(row, state, &e.customer_id, &e.customer_name, status::CREATED, &e.created_at)?
        }
        OrderEvent::Placed(e) => {
            state.lines =
                e.lines.iter().map(|l| LineDoc::new(&l.sku, &l.product_name, l.quantity, &l.unit_price)).collect();
            state.total = money(e.total);
            opened(row, state, &e.customer_id, &e.customer_name, status::PLACED, &e.occurred_at)?
        }
        OrderEvent::ItemAdded(e) => {
            state.lines.push(LineDoc::new(&e.product_id, &e.product_name, e.quantity, &e.unit_price));
            state.total = money(state.total + e.unit_price.times(e.quantity));
            row.set("lines", Value::json(&state.lines)?)
                .set("item_count", state.lines.len() as i64)
                .set("total", state.total)
                .set("updated_at", e.occurred_at.at)
        }
        OrderEvent::Submitted(e) => {
            state.total = money(e.total);
            changed(row.set("total", state.total), state, status::SUBMITTED, &e.submitted_at)?
        }
        OrderEvent::Shipped(e) => {
            let shipping = ShippingDoc {
                carrier: &e.carrier,
                tracking_number: &e.tracking_number,
                shipped_at: &e.shipped_at.text,
            };
            changed(row.set("shipping", Value::json(&shipping)?), state, status::SHIPPED, &e.shipped_at)?
        }
        OrderEvent::Cancelled(e) => {
            changed(row.set("cancellation_reason", e.reason.as_deref()), state, status::CANCELLED, &e.cancelled_at)?
        }
    };
    Ok(row.into())
}

/// The fields an order's first event (`OrderCreated` or `OrderPlaced`) sets.
fn opened(
    row: projector_sdk::Upsert,
    state: &mut DetailState,
    customer_id: &str,
    customer_name: &str,
    status: &str,
    at: &Instant,
) -> Result<projector_sdk::Upsert, Error> {
    let row = row
        .set("customer_id", customer_id)
        .set("customer_name", customer_name)
        .set("total", state.total)
        .set("item_count", state.lines.len() as i64)
        .set("created_at", at.at)
        .set("lines", Value::json(&state.lines)?);
    changed(row, state, status, at)
}

/// Records a status change in the history and sets status, updated_at and history.
fn changed(
    row: projector_sdk::Upsert,
    state: &mut DetailState,
    status: &str,
    at: &Instant,
) -> Result<projector_sdk::Upsert, Error> {
    state.history.push(HistoryDoc { status: status.into(), at: at.text.clone() });
    Ok(row.set("status", status).set("updated_at", at.at).set("history", Value::json(&state.history)?))
}

projector_sdk::export_projection!(OrderDetails);

#[cfg(test)]
mod tests {
    use order_events::SAMPLES;
    use projector_sdk::testing::{events_from_samples, Harness};
    use serde_json::json;

    use super::*;

    #[test]
    fn samples_give_exact_documents() {
        let mut harness = Harness::<OrderDetails>::new();
        let results = harness.feed_all(&events_from_samples(SAMPLES));
        let counts: Vec<_> = results.iter().map(|r| r.as_ref().map(Vec::len)).collect();
        assert_eq!(counts, [Ok(1), Ok(1), Ok(1), Ok(1), Ok(1), Ok(1), Ok(1), Ok(0), Ok(1), Ok(0), Ok(1)]);
        let rows: Vec<_> = harness.rows(COLLECTION).iter().map(|r| r.to_json()).collect();
        // serde_json compares arbitrary-precision numbers by their digits: 99.0 must stay 99.0.
        let price = |digits: &str| json!(serde_json::from_str::<serde_json::Number>(digits).unwrap());
        assert_eq!(
            rows,
            [
                json!({
                    "order_id": "ord-1001", "customer_id": "cust-7", "customer_name": "Zoë Müller",
                    "status": "SHIPPED", "total": "116.80", "item_count": 2,
                    "created_at": "2026-11-20T09:00:00Z", "updated_at": "2026-11-21T15:30:00Z",
                    "lines": [
                        {"sku": "sku-espresso-250", "productName": "Espresso Beans 250g", "quantity": 2, "unitPrice": price("8.9")},
                        {"sku": "sku-grinder-c2", "productName": "Hand Grinder C2", "quantity": 1, "unitPrice": price("99.0")},
                    ],
                    "history": [
                        {"status": "CREATED", "at": "2026-11-20T09:00:00.000Z"},
                        {"status": "SUBMITTED", "at": "2026-11-20T09:02:00.000Z"},
                        {"status": "SHIPPED", "at": "2026-11-21T15:30:00.000Z"},
                    ],
                    "shipping": {"carrier": "DHL", "trackingNumber": "JD0146000055", "shippedAt": "2026-11-21T15:30:00.000Z"},
                    "cancellation_reason": null,
                }),
                json!({
                    "order_id": "ord-1002", "customer_id": "cust-9", "customer_name": "Kenji Watanabe",
                    "status": "SHIPPED", "total": "79.47", "item_count": 2,
                    "created_at": "2026-11-20T23:59:59.999Z", "updated_at": "2026-11-22T01:00:00Z",
                    "lines": [
                        {"sku": "sku-kettle-gooseneck", "productName": "Gooseneck Kettle", "quantity": 1, "unitPrice": price("64.5")},
                        {"sku": "sku-filter-100", "productName": "Paper Filters x100", "quantity": 3, "unitPrice": price("4.99")},
                    ],
                    "history": [
                        {"status": "PLACED", "at": "2026-11-20T23:59:59.999Z"},
                        {"status": "SHIPPED", "at": "2026-11-22T01:00:00.000Z"},
                    ],
                    "shipping": {"carrier": "Yamato", "trackingNumber": "4455-6677-8899", "shippedAt": "2026-11-22T01:00:00.000Z"},
                    "cancellation_reason": null,
                }),
                json!({
                    "order_id": "ord-1003", "customer_id": "cust-7", "customer_name": "Zoë Müller",
                    "status": "CANCELLED", "total": "48.00", "item_count": 1,
                    "created_at": "2026-11-21T08:00:00Z", "updated_at": "2026-11-21T10:00:00Z",
                    "lines": [
                        {"sku": "sku-mug-stone", "productName": "Stoneware Mug", "quantity": 4, "unitPrice": price("12.0")},
                    ],
                    "history": [
                        {"status": "CREATED", "at": "2026-11-21T08:00:00.000Z"},
                        {"status": "SUBMITTED", "at": "2026-11-21T08:05:00.000Z"},
                        {"status": "CANCELLED", "at": "2026-11-21T10:00:00.000Z"},
                    ],
                    "shipping": null,
                    "cancellation_reason": "customer changed their mind",
                }),
            ]
        );
        assert!(harness.row(COLLECTION, "ord-1004").is_none());
    }

    #[test]
    fn open_order_has_lines_and_summed_total() {
        let mut harness = Harness::<OrderDetails>::new();
        harness.feed_all(&events_from_samples(SAMPLES)[..2]);
        let row = harness.row(COLLECTION, "ord-1001").unwrap().to_json();
        assert_eq!(
            (&row["status"], &row["total"], &row["item_count"]),
            (&json!("CREATED"), &json!("116.80"), &json!(2))
        );
        assert_eq!(row["lines"].as_array().unwrap().len(), 2);
        assert_eq!(row["history"], json!([{"status": "CREATED", "at": "2026-11-20T09:00:00.000Z"}]));
        assert_eq!(row["shipping"], json!(null));
    }

    #[test]
    fn redelivered_events_change_nothing() {
        let mut harness = Harness::<OrderDetails>::new();
        let events = events_from_samples(SAMPLES);
        harness.feed_all(&events);
        let before: Vec<_> = harness.rows(COLLECTION).iter().map(|r| r.to_json()).collect();
        let results = harness.feed_all(&events);
        assert!(results.iter().all(|r| r.as_ref().is_ok_and(Vec::is_empty)));
        let after: Vec<_> = harness.rows(COLLECTION).iter().map(|r| r.to_json()).collect();
        assert_eq!(before, after);
    }
}
