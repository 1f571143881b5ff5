//! Realistic order events, as the write side of an order service publishes them
//! (`shared/events/ORDER-EVENTS.md`): both producer generations, at-least-once duplicates,
//! events of other teams, headers or `type` fields.
//!
//! Invariant: the stream is a pure function of the seed and the order count, so a test can
//! regenerate exactly what a producer published. Within an order, events are in lifecycle
//! order and share the order id as key (hence one partition).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

/// One record to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoRecord {
    /// The order id.
    pub key: String,
    /// Headers (`__TypeId__` for most events).
    pub headers: Vec<(String, String)>,
    /// The JSON value.
    pub value: Value,
}

impl DemoRecord {
    /// The line format of `samples.jsonl`: `{"key", "headers", "value"}`.
    pub fn to_json_line(&self) -> String {
        let headers: serde_json::Map<String, Value> =
            self.headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        json!({"key": self.key, "headers": headers, "value": self.value}).to_string()
    }
}

const FIRST_NAMES: &[&str] = &[
    "Zoë",
    "Kenji",
    "José",
    "François",
    "Søren",
    "Chloé",
    "Björn",
    "Ana",
    "Mia",
    "Liam",
    "Noah",
    "Amélie",
    "Jürgen",
    "Inés",
    "Mateo",
    "Olivia",
    "Ravi",
    "Aiko",
    "Łucja",
    "Tomás",
    "Emma",
    "Lucas",
    "Hana",
    "Omar",
    "Leila",
    "Mateusz",
    "Sofía",
    "Hugo",
    "Nora",
    "Elif",
    "Priya",
    "Yusuf",
    "Astrid",
    "Dmitri",
    "Ingrid",
    "Kofi",
    "Mei",
    "Pablo",
    "Rania",
    "Sven",
    "Tariq",
    "Ursula",
    "Viktor",
    "Wanda",
    "Xiomara",
    "Yara",
    "Zeynep",
    "Agnès",
    "Benoît",
    "Céline",
    "Dário",
    "Élodie",
    "Fátima",
    "Gaël",
    "Håkon",
    "Irène",
    "Joël",
    "Kåre",
    "Léa",
    "Miloš",
];
const LAST_NAMES: &[&str] = &[
    "Müller",
    "Watanabe",
    "Álvarez",
    "Dubois",
    "Kierkegaard",
    "Lefèvre",
    "Borg",
    "Nowak",
    "Schmidt",
    "García",
    "O'Brien",
    "Rossi",
    "Novák",
    "Jansen",
    "Sørensen",
    "Żak",
    "Smith",
    "Núñez",
    "Tanaka",
    "Kowalski",
    "Fernández",
    "Moreau",
    "Eriksson",
    "Papadopoulos",
    "Yilmaz",
    "Ivanov",
    "Costa",
    "Haddad",
    "Okafor",
    "Nakamura",
    "Lindqvist",
    "Horváth",
    "Petrović",
    "Baptiste",
    "Castillo",
    "Dąbrowski",
    "Engström",
    "Fontaine",
    "Gonçalves",
    "Hernández",
    "Ibáñez",
    "Jørgensen",
    "Kahraman",
    "Lambert",
    "Martín",
    "Nieminen",
    "Olsen",
    "Pérez",
    "Quintero",
    "Ramírez",
    "Šimek",
    "Thorsen",
    "Uzun",
    "Vasquez",
    "Wójcik",
    "Xu",
    "Yamamoto",
    "Zöller",
    "Achterberg",
    "Brännström",
];
const PRODUCTS: &[(&str, &str, &str)] = &[
    ("sku-espresso-250", "Espresso Beans 250g", "8.90"),
    ("sku-grinder-c2", "Hand Grinder C2", "99.00"),
    ("sku-kettle-gooseneck", "Gooseneck Kettle", "64.50"),
    ("sku-filter-100", "Paper Filters x100", "4.99"),
    ("sku-mug-stone", "Stoneware Mug", "12.00"),
    ("sku-dripper-v60", "Ceramic Dripper V60", "24.95"),
    ("sku-scale-01", "Coffee Scale 0.1g", "39.99"),
    ("sku-decaf-500", "Decaf Beans 500g", "15.49"),
    ("sku-tamper-58", "Tamper 58mm", "29.90"),
    ("sku-milk-jug", "Milk Jug 600ml", "18.75"),
    ("sku-cold-brew", "Cold Brew Bottle", "21.30"),
    ("sku-chemex-6", "Chemex Six Cup", "47.00"),
    ("sku-aeropress", "AeroPress Go", "36.99"),
    ("sku-beans-ethiopia", "Yirgacheffe Beans 250g", "13.45"),
    ("sku-beans-colombia", "Huila Beans 250g", "11.95"),
    ("sku-cleaning-tabs", "Cleaning Tablets", "7.49"),
];
const CARRIERS: &[&str] = &["DHL", "UPS", "Yamato", "DPD", "PostNL"];
const REASONS: &[&str] = &["customer changed their mind", "payment declined", "out of stock", "duplicate order"];
const FOREIGN_TYPES: &[&str] = &["LoyaltyPointsGranted", "PaymentAuthorized", "InvoiceIssued"];

/// Generates the events of `orders` orders, deterministically from `seed`, in publish order.
pub fn generate(orders: usize, seed: u64) -> Vec<DemoRecord> {
    let mut rng = StdRng::seed_from_u64(seed);
    let start = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
    let spread_ms = 30 * 24 * 3600 * 1000_i64;
    // (time, sequence) -> record: sorted by time, ties in generation order.
    let mut timeline: BTreeMap<(i64, usize), DemoRecord> = BTreeMap::new();
    let mut sequence = 0;
    let mut event_id = 0u64;
    for index in 0..orders {
        let order_id = format!("ord-{seed}-{index:07}");
        let mut at = start.timestamp_millis() + rng.gen_range(0..spread_ms);
        // About five orders per customer, like a real shop (at least 400 customers).
        let customer = rng.gen_range(0..(orders / 5).max(400));
        let customer_id = format!("cust-{customer:04}");
        let customer_name = format!(
            "{} {}",
            FIRST_NAMES[customer % FIRST_NAMES.len()],
            LAST_NAMES[(customer / FIRST_NAMES.len()) % LAST_NAMES.len()]
        );
        let with_header = rng.gen_bool(0.8);
        let mut events: Vec<(i64, &str, Value)> = Vec::new();
        let mut next_id = || {
            event_id += 1;
            format!("evt-{seed}-{event_id}")
        };
        let line = |rng: &mut StdRng| {
            let (sku, name, price) = PRODUCTS[rng.gen_range(0..PRODUCTS.len())];
            (sku, name, rng.gen_range(1..=4i64), decimal(price))
        };
        // Legacy orders are placed (already submitted); current ones may stay open.
        let committed = if rng.gen_bool(0.15) {
            let lines: Vec<_> = (0..rng.gen_range(1..=4)).map(|_| line(&mut rng)).collect();
            let total = money_total(&lines);
            let lines: Vec<Value> = lines
                .iter()
                .map(|(sku, name, qty, price)| json!({"sku": sku, "productName": name, "quantity": qty, "unitPrice": price}))
                .collect();
            events.push((
                at,
                "OrderPlaced",
                json!({
                "eventId": next_id(), "orderId": order_id, "customerId": customer_id,
                "customerName": customer_name, "lines": lines, "total": decimal(&total),
                "occurredAt": iso(at)}),
            ));
            true
        } else {
            let mut lines: Vec<_> = (0..rng.gen_range(1..=3)).map(|_| line(&mut rng)).collect();
            let items: Vec<Value> = lines
                .iter()
                .map(|(sku, name, qty, price)| json!({"productId": sku, "productName": name, "quantity": qty, "unitPrice": price}))
                .collect();
            events.push((
                at,
                "OrderCreated",
                json!({
                "eventId": next_id(), "orderId": order_id, "customerId": customer_id,
                "customerName": customer_name, "items": items, "createdAt": iso(at)}),
            ));
            for _ in 0..rng.gen_range(0..=3) {
                at += rng.gen_range(10_000..600_000);
                let added = line(&mut rng);
                events.push((
                    at,
                    "ItemAdded",
                    json!({
                    "eventId": next_id(), "orderId": order_id, "productId": added.0,
                    "productName": added.1, "quantity": added.2, "unitPrice": added.3,
                    "occurredAt": iso(at)}),
                ));
                lines.push(added);
            }
            let submitted = rng.gen_bool(0.7);
            if submitted {
                at += rng.gen_range(30_000..3_600_000);
                events.push((
                    at,
                    "OrderSubmitted",
                    json!({
                    "eventId": next_id(), "orderId": order_id,
                    "total": decimal(&money_total(&lines)), "submittedAt": iso(at)}),
                ));
            }
            submitted
        };
        match (committed, rng.gen_range(0..10)) {
            (true, 0..=5) => {
                at += rng.gen_range(3_600_000..172_800_000);
                events.push((at, "OrderShipped", shipped(&mut rng, &mut next_id, &order_id, at)));
            }
            (true, 6) | (false, 0..=3) => {
                at += rng.gen_range(60_000..7_200_000);
                events.push((at, "OrderCancelled", cancelled(&mut rng, &mut next_id, &order_id, at)));
            }
            _ => {}
        }
        if rng.gen_bool(0.03) {
            at += rng.gen_range(1_000..60_000);
            let kind = FOREIGN_TYPES[rng.gen_range(0..FOREIGN_TYPES.len())];
            events.push((
                at,
                kind,
                json!({
                "eventId": next_id(), "orderId": order_id, "points": rng.gen_range(10..500),
                "occurredAt": iso(at)}),
            ));
        }
        for (at, kind, mut value) in events {
            let headers = if with_header {
                vec![("__TypeId__".to_string(), format!("com.example.orders.events.{kind}"))]
            } else {
                value.as_object_mut().expect("an object").insert("type".into(), Value::String(kind.into()));
                Vec::new()
            };
            let record = DemoRecord { key: order_id.clone(), headers, value };
            // At-least-once delivery: about 3% of events arrive twice.
            let copies = if rng.gen_bool(0.03) { 2 } else { 1 };
            for _ in 0..copies {
                sequence += 1;
                timeline.insert((at, sequence), record.clone());
            }
        }
    }
    timeline.into_values().collect()
}

fn decimal(text: &str) -> Value {
    // arbitrary_precision keeps the digits exactly as written (e.g. 8.90), like Jackson does
    // for a BigDecimal.
    serde_json::from_str(text).expect("a decimal literal")
}

fn money_total(lines: &[(&str, &str, i64, Value)]) -> String {
    let cents: i64 = lines
        .iter()
        .map(|(_, _, qty, price)| {
            let text = price.to_string();
            let (units, fraction) = text.split_once('.').unwrap_or((&text, "00"));
            qty * (units.parse::<i64>().unwrap() * 100 + format!("{fraction:0<2}")[..2].parse::<i64>().unwrap())
        })
        .sum();
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn iso(ms: i64) -> String {
    let t: DateTime<Utc> = DateTime::from_timestamp_millis(ms).expect("in range");
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn shipped(rng: &mut StdRng, next_id: &mut impl FnMut() -> String, order_id: &str, at: i64) -> Value {
    let carrier = CARRIERS[rng.gen_range(0..CARRIERS.len())];
    json!({"eventId": next_id(), "orderId": order_id, "carrier": carrier,
           "trackingNumber": format!("{}{:010}", &carrier[..2].to_uppercase(), rng.gen_range(0..10_000_000_000u64)),
           "shippedAt": iso(at)})
}

fn cancelled(rng: &mut StdRng, next_id: &mut impl FnMut() -> String, order_id: &str, at: i64) -> Value {
    json!({"eventId": next_id(), "orderId": order_id,
           "reason": REASONS[rng.gen_range(0..REASONS.len())], "cancelledAt": iso(at)})
}

/// Publishes records to `topic` in order and returns the last offset written per partition.
/// `client` holds the brokers and security settings (the host's `source::kafka::client_config`).
pub async fn publish(client: &ClientConfig, topic: &str, records: &[DemoRecord]) -> anyhow::Result<BTreeMap<i32, i64>> {
    let producer: FutureProducer = client
        .clone()
        .set("linger.ms", "5")
        .set("acks", "all")
        // One request in flight per connection: a retry can never reorder an order's events.
        .set("max.in.flight.requests.per.connection", "1")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "60000")
        .create()?;
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    let mut pending = std::collections::VecDeque::new();
    for record in records {
        let payload = record.value.to_string();
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            headers = headers.insert(Header { key, value: Some(value.as_bytes()) });
        }
        let future = producer.send_result(FutureRecord::to(topic).key(&record.key).payload(&payload).headers(headers));
        let future = future.map_err(|(e, _)| anyhow::anyhow!("cannot enqueue a record: {e}"))?;
        pending.push_back(future);
        if pending.len() >= 10_000 {
            settle(pending.pop_front().expect("non-empty"), &mut last).await?;
        }
    }
    while let Some(future) = pending.pop_front() {
        settle(future, &mut last).await?;
    }
    let _ = producer.flush(Duration::from_secs(30));
    Ok(last)
}

async fn settle(future: rdkafka::producer::DeliveryFuture, last: &mut BTreeMap<i32, i64>) -> anyhow::Result<()> {
    match future.await {
        Ok(Ok(delivery)) => {
            let entry = last.entry(delivery.partition).or_insert(delivery.offset);
            *entry = (*entry).max(delivery.offset);
            Ok(())
        }
        Ok(Err((e, _))) => Err(anyhow::anyhow!("delivery failed: {e}")),
        Err(_) => Err(anyhow::anyhow!("delivery was cancelled")),
    }
}

/// Creates a topic (no error when it exists).
pub async fn create_topic(client: &ClientConfig, topic: &str, partitions: i32) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<_> = client.create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("cannot create topic {name}: {code}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_deterministic_and_realistic() {
        let a = generate(2_000, 7);
        assert_eq!(a, generate(2_000, 7));
        assert_ne!(a, generate(2_000, 8));
        let kind = |r: &DemoRecord| -> String {
            r.headers
                .first()
                .map(|(_, v)| v.rsplit('.').next().unwrap().to_string())
                .unwrap_or_else(|| r.value["type"].as_str().unwrap().to_string())
        };
        let count = |name: &str| a.iter().filter(|r| kind(r) == name).count();
        assert!(count("OrderPlaced") > 200 && count("OrderCreated") > 1_500);
        assert!(count("OrderSubmitted") > 0 && count("OrderShipped") > 0 && count("OrderCancelled") > 0);
        assert!(count("ItemAdded") > 0 && count("LoyaltyPointsGranted") + count("PaymentAuthorized") > 0);
        let mut ids = std::collections::HashSet::new();
        let duplicates = a.iter().filter(|r| !ids.insert(r.value["eventId"].to_string())).count();
        assert!(duplicates > 50, "{duplicates} duplicates");
        assert!(a.iter().any(|r| r.headers.is_empty()) && a.iter().any(|r| !r.headers.is_empty()));
        assert_eq!(money_total(&[("a", "b", 3, decimal("4.99")), ("c", "d", 1, decimal("8.9"))]), "23.87");
        assert_eq!(decimal("8.90").to_string(), "8.90");
    }

    #[test]
    fn events_of_an_order_stay_in_lifecycle_order() {
        let records = generate(500, 3);
        let mut seen: std::collections::HashMap<&str, Vec<&str>> = Default::default();
        for r in &records {
            let at = ["createdAt", "occurredAt", "submittedAt", "shippedAt", "cancelledAt"]
                .iter()
                .find_map(|f| r.value[*f].as_str())
                .unwrap();
            let times = seen.entry(&r.key).or_default();
            if let Some(previous) = times.last() {
                assert!(*previous <= at, "{} went back in time", r.key);
            }
            times.push(at);
        }
    }
}
