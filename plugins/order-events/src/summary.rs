//! The order summary shared by read models: its fields and how each event changes them.
//!
//! `order-summaries` is exactly this; `order-details` adds documents to the same fields; a later
//! version adds columns. One definition keeps them in step.

use projector_sdk::{money, Collection, Decimal, Field, Operation};

use crate::{status, OrderEvent};

/// Adds the summary fields (`order_id` as the key, then customer, status, total, item count
/// and times) to a collection.
pub fn with_fields(collection: Collection) -> Collection {
    collection
        .field(Field::text("order_id").description("Order id (the Kafka record key)."))
        .field(Field::text("customer_id").filterable().description("Customer id."))
        .field(Field::text("customer_name").description("Customer display name."))
        .field(Field::text("status").filterable().description("CREATED, PLACED, SUBMITTED, SHIPPED or CANCELLED."))
        .field(
            Field::decimal("total").sortable().description(
                "Sum of quantity x unit price while open, then the submitted or placed total; 2 decimals.",
            ),
        )
        .field(Field::integer("item_count").description("Number of order lines."))
        .field(
            Field::timestamp("created_at").filterable().sortable().description("When the order was created or placed."),
        )
        .field(Field::timestamp("updated_at").sortable().description("Time of the last event applied."))
        .primary_key(["order_id"])
}

/// The operations a first-time order event implies for the summary fields of `collection`.
pub fn operations(collection: &str, event: &OrderEvent) -> Vec<Operation> {
    let row = Operation::upsert(collection, event.order_id());
    let op = match event {
        OrderEvent::Created(e) => {
            let total: Decimal = e.items.iter().map(|i| i.unit_price.times(i.quantity)).sum();
            row.set("customer_id", &e.customer_id)
                .set("customer_name", &e.customer_name)
                .set("status", status::CREATED)
                .set("total", money(total))
                .set("item_count", e.items.len() as i64)
                .set("created_at", e.created_at.at)
                .set("updated_at", e.created_at.at)
        }
        OrderEvent::Placed(e) => row
            .set("customer_id", &e.customer_id)
            .set("customer_name", &e.customer_name)
            .set("status", status::PLACED)
            .set("total", money(e.total))
            .set("item_count", e.lines.len() as i64)
            .set("created_at", e.occurred_at.at)
            .set("updated_at", e.occurred_at.at),
        OrderEvent::ItemAdded(e) => {
            // Increments commute with whatever else touched the row, so the count stays right
            // even for an item whose OrderCreated this projection never saw.
            let added = Operation::increment(collection, e.order_id.as_str())
                .add("item_count", 1_i64)
                .add("total", money(e.unit_price.times(e.quantity)));
            return vec![added.into(), row.set("updated_at", e.occurred_at.at).into()];
        }
        OrderEvent::Submitted(e) => {
            row.set("status", status::SUBMITTED).set("total", money(e.total)).set("updated_at", e.submitted_at.at)
        }
        OrderEvent::Shipped(e) => row.set("status", status::SHIPPED).set("updated_at", e.shipped_at.at),
        OrderEvent::Cancelled(e) => row.set("status", status::CANCELLED).set("updated_at", e.cancelled_at.at),
    };
    vec![op.into()]
}
