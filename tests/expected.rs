//! An independent model of the three example read models, written from ORDER-EVENTS.md
//! without looking at the plugins: the expectation every end-to-end test compares against.
//!
//! Rows are canonical JSON objects in the shape of the `*_SQL` queries of the harness:
//! decimals as strings with two decimals, timestamps as `YYYY-MM-DDTHH:MM:SS.mmmZ`.

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;

use projector_demo::DemoRecord;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Map, Value as Json};

#[derive(Default, Clone)]
struct Order {
    seen: HashSet<String>,
    customer_id: Option<String>,
    customer_name: Option<String>,
    status: Option<String>,
    total: Option<Decimal>,
    lines: Vec<Json>,
    history: Vec<Json>,
    created_at: Option<String>,
    updated_at: Option<String>,
    shipping: Option<Json>,
    reason: Option<String>,
    stats_day: Option<String>,
}

#[derive(Default)]
struct Day {
    count: i64,
    revenue: Decimal,
    by_status: BTreeMap<String, i64>,
}

/// The expected read models after applying a stream once.
#[derive(Default)]
pub struct Model {
    orders: BTreeMap<String, Order>,
    days: BTreeMap<String, Day>,
}

fn cents(d: Decimal) -> String {
    let mut d = d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    d.rescale(2);
    d.to_string()
}

fn dec(json: &Json) -> Decimal {
    Decimal::from_str(&json.to_string()).unwrap()
}

fn text(json: &Json, field: &str) -> String {
    json[field].as_str().unwrap_or_else(|| panic!("{field} missing in {json}")).to_string()
}

/// The event type: simple name of `__TypeId__`, else the `type` field.
pub fn event_type(record: &DemoRecord) -> Option<String> {
    record
        .headers
        .iter()
        .find(|(k, _)| k == "__TypeId__")
        .map(|(_, v)| v.rsplit('.').next().unwrap().to_string())
        .or_else(|| record.value["type"].as_str().map(str::to_string))
}

impl Model {
    /// Applies every record in publish order.
    pub fn of(records: &[DemoRecord]) -> Model {
        let mut model = Model::default();
        for record in records {
            model.apply(record);
        }
        model
    }

    fn apply(&mut self, record: &DemoRecord) {
        let Some(kind) = event_type(record) else {
            return;
        };
        let v = &record.value;
        let known = ["OrderPlaced", "OrderCreated", "ItemAdded", "OrderSubmitted", "OrderShipped", "OrderCancelled"];
        if !known.contains(&kind.as_str()) {
            return;
        }
        let order_id = text(v, "orderId");
        let order = self.orders.entry(order_id).or_default();
        if !order.seen.insert(text(v, "eventId")) {
            return;
        }
        match kind.as_str() {
            "OrderCreated" | "OrderPlaced" => {
                let (items, at, status) = if kind == "OrderCreated" {
                    (&v["items"], text(v, "createdAt"), "CREATED")
                } else {
                    (&v["lines"], text(v, "occurredAt"), "PLACED")
                };
                order.customer_id = Some(text(v, "customerId"));
                order.customer_name = Some(text(v, "customerName"));
                order.lines = items
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| {
                        let sku = i.get("sku").or_else(|| i.get("productId")).unwrap().clone();
                        json!({"sku": sku, "productName": i["productName"], "quantity": i["quantity"], "unitPrice": i["unitPrice"]})
                    })
                    .collect();
                order.total = Some(if status == "PLACED" { dec(&v["total"]) } else { sum(&order.lines) });
                order.status = Some(status.into());
                order.created_at = Some(at.clone());
                order.updated_at = Some(at.clone());
                order.history.push(json!({"status": status, "at": at}));
                if status == "PLACED" {
                    let day = at[..10].to_string();
                    order.stats_day = Some(day.clone());
                    let d = self.days.entry(day).or_default();
                    d.count += 1;
                    d.revenue += dec(&v["total"]);
                    *d.by_status.entry("PLACED".into()).or_default() += 1;
                }
            }
            "ItemAdded" => {
                let line = json!({"sku": v["productId"], "productName": v["productName"], "quantity": v["quantity"], "unitPrice": v["unitPrice"]});
                order.total = Some(order.total.unwrap_or_default() + line_total(&line));
                order.lines.push(line);
                order.updated_at = Some(text(v, "occurredAt"));
            }
            "OrderSubmitted" => {
                let at = text(v, "submittedAt");
                let total = dec(&v["total"]);
                order.total = Some(total);
                order.status = Some("SUBMITTED".into());
                order.updated_at = Some(at.clone());
                order.history.push(json!({"status": "SUBMITTED", "at": at}));
                if order.stats_day.is_none() {
                    let day = at[..10].to_string();
                    order.stats_day = Some(day.clone());
                    let d = self.days.entry(day).or_default();
                    d.count += 1;
                    d.revenue += total;
                    *d.by_status.entry("SUBMITTED".into()).or_default() += 1;
                }
            }
            "OrderShipped" | "OrderCancelled" => {
                let (status, at) = if kind == "OrderShipped" {
                    ("SHIPPED", text(v, "shippedAt"))
                } else {
                    ("CANCELLED", text(v, "cancelledAt"))
                };
                if kind == "OrderShipped" {
                    order.shipping =
                        Some(json!({"carrier": v["carrier"], "trackingNumber": v["trackingNumber"], "shippedAt": at}));
                } else {
                    order.reason = Some(text(v, "reason"));
                }
                let previous = order.status.replace(status.into());
                order.updated_at = Some(at.clone());
                order.history.push(json!({"status": status, "at": at}));
                self.move_status(&text(v, "orderId"), previous, status);
            }
            _ => unreachable!(),
        }
    }

    fn move_status(&mut self, order_id: &str, previous: Option<String>, status: &str) {
        let Some(day) = self.orders[order_id].stats_day.clone() else {
            return;
        };
        let d = self.days.get_mut(&day).unwrap();
        if let Some(previous) = previous {
            *d.by_status.entry(previous).or_default() -= 1;
        }
        *d.by_status.entry(status.into()).or_default() += 1;
        d.by_status.retain(|_, n| *n != 0);
    }

    fn rows(&self) -> impl Iterator<Item = (&String, &Order)> {
        // A row exists once any known event of the order was applied.
        self.orders.iter().filter(|(_, o)| !o.seen.is_empty())
    }

    /// Expected `order_summaries` rows, by order id.
    pub fn summaries(&self) -> Vec<Json> {
        self.summary_rows().collect()
    }

    /// [`Model::summaries`] one row at a time.
    pub fn summary_rows(&self) -> impl Iterator<Item = Json> + '_ {
        self.rows().map(|(id, o)| Json::Object(summary(id, o)))
    }

    /// Expected `order_details` rows, by order id.
    pub fn details(&self) -> Vec<Json> {
        self.detail_rows().collect()
    }

    /// [`Model::details`] one row at a time (a long soak's do not fit in memory as JSON at once).
    pub fn detail_rows(&self) -> impl Iterator<Item = Json> + '_ {
        self.rows().map(|(id, o)| {
            let mut row = summary(id, o);
            row.insert("lines".into(), Json::Array(o.lines.clone()));
            row.insert("history".into(), Json::Array(o.history.clone()));
            row.insert("shipping".into(), o.shipping.clone().unwrap_or(Json::Null));
            row.insert("cancellation_reason".into(), json!(o.reason));
            Json::Object(row)
        })
    }

    /// Expected `daily_order_stats` rows, by day.
    pub fn daily(&self) -> Vec<Json> {
        self.days
            .iter()
            .map(|(day, d)| {
                let average = cents(d.revenue / Decimal::from(d.count));
                json!({
                    "day": day, "order_count": d.count, "total_revenue": cents(d.revenue),
                    "average_order_value": average,
                    "orders_by_status": d.by_status,
                })
            })
            .collect()
    }
}

fn line_total(line: &Json) -> Decimal {
    Decimal::from(line["quantity"].as_i64().unwrap()) * dec(&line["unitPrice"])
}

fn sum(lines: &[Json]) -> Decimal {
    lines.iter().map(line_total).sum()
}

fn summary(id: &str, o: &Order) -> Map<String, Json> {
    let mut row = Map::new();
    row.insert("order_id".into(), json!(id));
    row.insert("customer_id".into(), json!(o.customer_id));
    row.insert("customer_name".into(), json!(o.customer_name));
    row.insert("status".into(), json!(o.status));
    row.insert("total".into(), json!(o.total.map(cents)));
    row.insert("item_count".into(), json!(o.lines.len()));
    row.insert("created_at".into(), json!(o.created_at));
    row.insert("updated_at".into(), json!(o.updated_at));
    row
}

/// What one order contributes to the per-customer and per-SKU models.
#[derive(Default)]
struct Contribution {
    seen: HashSet<String>,
    customer: Option<String>,
    status: Option<String>,
    /// Order lines (sku, name, quantity, unit price), the created items plus added items.
    lines: Vec<(String, String, i64, Decimal)>,
    /// The total counted into revenue, once the order counts (submitted or placed).
    counted: Option<Decimal>,
    cancelled: bool,
}

#[derive(Default)]
struct Customer {
    name: String,
    orders: i64,
    paid: i64,
    cancelled: i64,
    revenue: Decimal,
    items: i64,
    by_status: BTreeMap<String, i64>,
}

#[derive(Default)]
struct Sku {
    name: String,
    units: i64,
    revenue: Decimal,
    orders: i64,
}

fn lines_of(items: &Json, sku_field: &str) -> Vec<(String, String, i64, Decimal)> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (text(i, sku_field), text(i, "productName"), i["quantity"].as_i64().unwrap(), dec(&i["unitPrice"])))
        .collect()
}

/// Adds (`sign` 1) or removes (-1) an order's lines to the per-SKU totals.
fn count_lines(skus: &mut BTreeMap<String, Sku>, lines: &[(String, String, i64, Decimal)], sign: i64) {
    let mut distinct = HashSet::new();
    for (sku, name, quantity, price) in lines {
        let row = skus.entry(sku.clone()).or_default();
        if sign > 0 {
            row.name = name.clone();
        }
        row.units += sign * quantity;
        row.revenue += Decimal::from(sign * quantity) * price;
        if distinct.insert(sku.clone()) {
            row.orders += sign;
        }
    }
}

fn ratio(numerator: Decimal, denominator: i64) -> Json {
    if denominator == 0 {
        Json::Null
    } else {
        json!(cents(numerator / Decimal::from(denominator)))
    }
}

/// The expected `customer_ltv` (Python plugin) and `sku_sales` (JavaScript plugin) rows after
/// applying `records` once, written from the semantics their modules document:
/// an order counts once submitted or placed (revenue, paid orders, units), a cancellation of a
/// counted order takes that back, events after a cancellation change nothing, redeliveries and
/// unknown types are skipped.
pub fn customers_and_skus(records: &[DemoRecord]) -> (Vec<Json>, Vec<Json>) {
    let mut orders: BTreeMap<String, Contribution> = BTreeMap::new();
    let mut customers: BTreeMap<String, Customer> = BTreeMap::new();
    let mut skus: BTreeMap<String, Sku> = BTreeMap::new();
    for record in records {
        let Some(kind) = event_type(record) else { continue };
        let v = &record.value;
        let known = ["OrderPlaced", "OrderCreated", "ItemAdded", "OrderSubmitted", "OrderShipped", "OrderCancelled"];
        if !known.contains(&kind.as_str()) {
            continue;
        }
        let order = orders.entry(text(v, "orderId")).or_default();
        if !order.seen.insert(text(v, "eventId")) || order.cancelled {
            continue;
        }
        let move_to = |order: &mut Contribution, customers: &mut BTreeMap<String, Customer>, status: &str| {
            if let Some(customer) = &order.customer {
                let row = customers.get_mut(customer).unwrap();
                if let Some(previous) = order.status.replace(status.into()) {
                    *row.by_status.entry(previous).or_default() -= 1;
                }
                *row.by_status.entry(status.into()).or_default() += 1;
                row.by_status.retain(|_, n| *n != 0);
            }
        };
        match kind.as_str() {
            "OrderCreated" | "OrderPlaced" => {
                let customer_id = text(v, "customerId");
                let row = customers.entry(customer_id.clone()).or_default();
                row.name = text(v, "customerName");
                row.orders += 1;
                order.customer = Some(customer_id);
                if kind == "OrderCreated" {
                    order.lines = lines_of(&v["items"], "productId");
                    move_to(order, &mut customers, "CREATED");
                } else {
                    order.lines = lines_of(&v["lines"], "sku");
                    move_to(order, &mut customers, "PLACED");
                    order.counted = Some(dec(&v["total"]));
                    count_lines(&mut skus, &order.lines, 1);
                }
            }
            "ItemAdded" => {
                let line = (
                    text(v, "productId"),
                    text(v, "productName"),
                    v["quantity"].as_i64().unwrap(),
                    dec(&v["unitPrice"]),
                );
                if order.counted.is_some() {
                    let known = order.lines.iter().any(|l| l.0 == line.0);
                    let row = skus.entry(line.0.clone()).or_default();
                    row.name = line.1.clone();
                    row.units += line.2;
                    row.revenue += Decimal::from(line.2) * line.3;
                    row.orders += i64::from(!known);
                }
                order.lines.push(line);
            }
            "OrderSubmitted" if order.counted.is_none() => {
                order.counted = Some(dec(&v["total"]));
                count_lines(&mut skus, &order.lines, 1);
                move_to(order, &mut customers, "SUBMITTED");
            }
            "OrderSubmitted" => {}
            "OrderShipped" => move_to(order, &mut customers, "SHIPPED"),
            "OrderCancelled" => {
                if order.counted.is_some() {
                    count_lines(&mut skus, &order.lines, -1);
                }
                move_to(order, &mut customers, "CANCELLED");
                order.cancelled = true;
            }
            _ => unreachable!(),
        }
    }
    // Per-customer money and units follow from each order's final contribution.
    for order in orders.values() {
        let Some(customer) = &order.customer else { continue };
        let row = customers.get_mut(customer).unwrap();
        row.cancelled += i64::from(order.cancelled);
        if let (Some(total), false) = (order.counted, order.cancelled) {
            row.paid += 1;
            row.revenue += total;
            row.items += order.lines.iter().map(|l| l.2).sum::<i64>();
        }
    }
    let customers = customers
        .into_iter()
        .map(|(id, c)| {
            json!({
                "customer_id": id, "customer_name": c.name, "orders": c.orders, "paid_orders": c.paid,
                "cancelled_orders": c.cancelled, "revenue": cents(c.revenue), "items": c.items,
                "orders_by_status": c.by_status, "average_order_value": ratio(c.revenue, c.paid),
            })
        })
        .collect();
    let skus = skus
        .into_iter()
        .map(|(sku, s)| {
            let mut revenue = s.revenue;
            if revenue.scale() < 2 {
                revenue.rescale(2);
            }
            json!({
                "sku": sku, "product_name": s.name, "units_sold": s.units, "revenue": revenue.to_string(),
                "orders": s.orders, "average_unit_price": ratio(s.revenue, s.units),
            })
        })
        .collect();
    (customers, skus)
}
