//! `order-search`: one searchable document per order, behind `GET /orders/search`.
//!
//! The collection declares which fields are searchable (order id, customer name, product names,
//! SKUs), filterable (status, customer, creation time) and sortable (creation time, total); the
//! host builds the full-text index from that declaration. The summary fields follow the same
//! rules as `order-summaries`; the product names and SKUs grow with `ItemAdded`, so they are
//! kept in the order's state.

use order_events::{handle_once, summary, AppliedEvents, OrderEvent, OrderState};
use projector_sdk::{
    Collection, Context, Error, Event, Field, Operation, Projection, ProjectionSpec, Scalar, ScalarType, Value,
};
use serde::{Deserialize, Serialize};

/// The collection this projection writes.
pub const COLLECTION: &str = "order_search";

/// The `order-search` projection.
pub struct OrderSearch;

/// Per-order state: applied events, and the products seen so far.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SearchState {
    applied: AppliedEvents,
    product_names: Vec<String>,
    skus: Vec<String>,
}

impl OrderState for SearchState {
    fn applied(&mut self) -> &mut AppliedEvents {
        &mut self.applied
    }
}

impl Projection for OrderSearch {
    fn describe() -> ProjectionSpec {
        let base = summary::with_fields(Collection::postgres(COLLECTION, "One order, as a search document."))
            .field(
                Field::list("product_names", ScalarType::Text)
                    .searchable()
                    .description("Names of the products ordered."),
            )
            .field(Field::list("skus", ScalarType::Text).searchable().description("SKUs of the products ordered."));
        ProjectionSpec::new("order-search", 1, "Full-text search over orders: customer, products, SKUs and order id.")
            .collection(searchable(base, &["order_id", "customer_name"]))
    }

    fn handle(event: &Event, ctx: &mut Context) -> Result<Vec<Operation>, Error> {
        handle_once(event, ctx, |state: &mut SearchState, e| {
            let mut operations = summary::operations(COLLECTION, e);
            let added: Vec<(&str, &str)> = match e {
                OrderEvent::Created(c) => {
                    c.items.iter().map(|i| (i.product_name.as_str(), i.product_id.as_str())).collect()
                }
                OrderEvent::Placed(p) => p.lines.iter().map(|l| (l.product_name.as_str(), l.sku.as_str())).collect(),
                OrderEvent::ItemAdded(i) => vec![(i.product_name.as_str(), i.product_id.as_str())],
                _ => Vec::new(),
            };
            if !added.is_empty() {
                for (name, sku) in added {
                    push_unique(&mut state.product_names, name);
                    push_unique(&mut state.skus, sku);
                }
                let row = Operation::upsert(COLLECTION, e.order_id())
                    .set("product_names", texts(&state.product_names))
                    .set("skus", texts(&state.skus));
                operations.push(row.into());
            }
            Ok(operations)
        })
    }
}

/// Marks already declared fields searchable.
fn searchable(collection: Collection, names: &[&str]) -> Collection {
    collection.map_fields(|field| if names.contains(&field.name()) { field.searchable() } else { field })
}

fn push_unique(list: &mut Vec<String>, value: &str) {
    if !list.iter().any(|v| v == value) {
        list.push(value.to_string());
    }
}

fn texts(values: &[String]) -> Value {
    Value::List(values.iter().map(|v| Scalar::Text(v.clone())).collect())
}

projector_sdk::export_projection!(OrderSearch);

#[cfg(test)]
mod tests {
    use order_events::SAMPLES;
    use projector_sdk::testing::{events_from_samples, Harness};
    use serde_json::json;

    use super::*;

    #[test]
    fn documents_hold_products_and_skus() {
        let mut harness = Harness::<OrderSearch>::new();
        harness.feed_all(&events_from_samples(SAMPLES));
        let row = harness.row(COLLECTION, "ord-1001").unwrap().to_json();
        assert_eq!(row["product_names"], json!(["Espresso Beans 250g", "Hand Grinder C2"]));
        assert_eq!(row["skus"], json!(["sku-espresso-250", "sku-grinder-c2"]));
        assert_eq!(row["customer_name"], json!("Zoë Müller"));
        assert_eq!(row["status"], json!("SHIPPED"));
        let spec = OrderSearch::describe();
        let searchable: Vec<&str> =
            spec.collections()[0].fields().iter().filter(|f| f.is_searchable()).map(|f| f.name()).collect();
        assert_eq!(searchable, ["order_id", "customer_name", "product_names", "skus"]);
    }
}
