//! Test harness: real services, real host processes, real plugin components.
//!
//! Services come from the environment the test script sets up (`scripts/test.sh`):
//! `PROJECTOR_TEST_PG` (an admin URL of the PostgreSQL server) and `PROJECTOR_TEST_BROKERS`.
//! Every test creates its own database and topic, so tests run side by side.

#[path = "api.rs"]
pub mod api;
#[path = "broker.rs"]
pub mod broker;
#[path = "corpus.rs"]
pub mod conformance;
#[path = "expected.rs"]
pub mod expected;
#[path = "hoarder.rs"]
pub mod hoarder;
#[path = "host.rs"]
pub mod host;
#[path = "postgres.rs"]
pub mod postgres;
#[path = "search.rs"]
pub mod search;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use projector::config::KafkaConfig;
use projector::source::kafka::client_config;
use projector_demo::DemoRecord;
use serde_json::Value as Json;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

/// The three example components, built from `plugins/` by `build.rs`.
pub const ORDER_SUMMARIES: &str = env!("ORDER_SUMMARIES_WASM");
/// See [`ORDER_SUMMARIES`].
pub const ORDER_DETAILS: &str = env!("ORDER_DETAILS_WASM");
/// See [`ORDER_SUMMARIES`].
pub const DAILY_ORDER_STATS: &str = env!("DAILY_ORDER_STATS_WASM");
/// A fixture that loops, hoards memory, panics or probes ambient capabilities on request.
pub const MISBEHAVING: &str = env!("MISBEHAVING_WASM");
/// `order-summaries` version 2: one more column (`event_count`).
pub const ORDER_SUMMARIES_V2: &str = env!("ORDER_SUMMARIES_V2_WASM");
/// A component of another world.
pub const OTHER_WORLD: &str = env!("OTHER_WORLD_WASM");
/// A component whose `describe` the host refuses.
pub const INVALID_SPEC: &str = env!("INVALID_SPEC_WASM");
/// A component importing an interface the host does not provide.
pub const EXTRA_IMPORT: &str = env!("EXTRA_IMPORT_WASM");
/// The `order-search` component.
pub const ORDER_SEARCH: &str = env!("ORDER_SEARCH_WASM");
/// `order-summaries` written in Python (componentize-py), built by `plugins/python/build.sh`.
pub const PY_ORDER_SUMMARIES: &str = env!("PY_ORDER_SUMMARIES_WASM");
/// `customer-ltv`, written in Python.
pub const PY_CUSTOMER_LTV: &str = env!("PY_CUSTOMER_LTV_WASM");
/// A Python fixture that calls `time.sleep` on request.
pub const PY_SLEEPER: &str = env!("PY_SLEEPER_WASM");
/// `order-summaries` written in JavaScript (componentize-js), built by `plugins/js/build.sh`.
pub const JS_ORDER_SUMMARIES: &str = env!("JS_ORDER_SUMMARIES_WASM");
/// `sku-sales`, written in JavaScript.
pub const JS_SKU_SALES: &str = env!("JS_SKU_SALES_WASM");
/// All three example components.
pub const EXAMPLE_PLUGINS: [&str; 3] = [ORDER_SUMMARIES, ORDER_DETAILS, DAILY_ORDER_STATS];

/// Where slow, reusable build output lives, as in the scripts: `$PROJECTOR_CACHE_DIR`, else
/// `$CARGO_HOME/projector-cache` (the Kafka jars, the Python venv, cargo target dirs).
pub fn cache_dir() -> std::path::PathBuf {
    use std::path::PathBuf;
    std::env::var("PROJECTOR_CACHE_DIR").map(PathBuf::from).unwrap_or_else(|_| {
        let home = std::env::var("CARGO_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo"));
        home.join("projector-cache")
    })
}

/// Records as the events a plugin receives, at consecutive offsets of partition 0.
pub fn events_of(records: &[DemoRecord]) -> Vec<projector::contract::Event> {
    use projector::contract::{Event, Header};
    records
        .iter()
        .enumerate()
        .map(|(offset, r)| Event {
            topic: "order-events".into(),
            partition: 0,
            offset: offset as i64,
            key: Some(r.key.clone().into_bytes()),
            value: Some(r.value.to_string().into_bytes()),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| Header { key: k.clone(), value: Some(v.clone().into_bytes()) })
                .collect(),
            timestamp_ms: Some(0),
        })
        .collect()
}

/// Admin URL of the test PostgreSQL server.
pub fn pg_admin_url() -> String {
    std::env::var("PROJECTOR_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/postgres".into())
}

/// Bootstrap servers of the test broker.
pub fn brokers() -> String {
    std::env::var("PROJECTOR_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

/// A unique lowercase suffix for names of databases, topics and groups.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}_{}_{:x}", std::process::id(), nanos % 0xffff_ffff)
}

/// The `application_name` of the tests' own database connections.
pub const TEST_APPLICATION: &str = "projector-tests";

/// A database of one test, dropped by nobody (so a failure can be inspected).
pub struct TestDb {
    /// Its URL.
    pub url: String,
    /// A pool on it.
    pub pool: PgPool,
}

impl TestDb {
    /// Creates a fresh database on the test PostgreSQL server.
    pub async fn create(prefix: &str) -> TestDb {
        TestDb::create_on(&pg_admin_url(), prefix).await
    }

    /// Creates a fresh database on the server of `admin_url` (one of a test's own).
    pub async fn create_on(admin_url: &str, prefix: &str) -> TestDb {
        let name = unique(prefix);
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(admin_url)
            .await
            .expect("test PostgreSQL is up (run scripts/test.sh)");
        sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&admin).await.unwrap();
        admin.close().await;
        let base = admin_url;
        let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("SET TIME ZONE 'UTC'").execute(conn).await?;
                    Ok(())
                })
            })
            // Named, so a test can tell its own connections from the host's.
            .connect(&format!("{url}?application_name={TEST_APPLICATION}"))
            .await
            .unwrap();
        TestDb { url, pool }
    }

    /// Rows of a query returning one JSON object per row.
    pub async fn json_rows(&self, sql: &str) -> Vec<Json> {
        let mut rows = Vec::new();
        let mut texts = std::pin::pin!(self.texts(sql));
        while let Some(text) = futures_util::StreamExt::next(&mut texts).await {
            rows.push(serde_json::from_str(&text).unwrap());
        }
        rows
    }

    /// The rows of a query returning one text column, as they arrive from the server: a long
    /// soak's read models do not fit in memory at once.
    pub fn texts<'a>(&'a self, sql: &'a str) -> impl futures_util::Stream<Item = String> + 'a {
        futures_util::StreamExt::map(sqlx::query(sql).fetch(&self.pool), move |row| {
            row.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
        })
    }
}

/// Kafka settings of a test topic.
pub fn kafka(topic: &str) -> KafkaConfig {
    KafkaConfig { brokers: brokers(), topic: topic.into(), ..KafkaConfig::default() }
}

/// Creates a topic with `partitions` partitions.
pub async fn create_topic(prefix: &str, partitions: i32) -> String {
    let topic = unique(prefix).replace('_', "-");
    create_topic_on(&kafka(&topic), &topic, partitions).await.unwrap();
    topic
}

/// Creates `topic` on the brokers of `kafka` (no error when it exists).
pub async fn create_topic_on(kafka: &KafkaConfig, topic: &str, partitions: i32) -> anyhow::Result<()> {
    projector_demo::create_topic(&client_config(kafka), topic, partitions).await
}

/// Publishes records; returns the last offset per partition.
pub async fn publish(topic: &str, records: &[DemoRecord]) -> BTreeMap<i32, i64> {
    publish_on(&kafka(topic), records).await.unwrap()
}

/// Publishes records to the topic and brokers of `kafka`.
pub async fn publish_on(kafka: &KafkaConfig, records: &[DemoRecord]) -> anyhow::Result<BTreeMap<i32, i64>> {
    projector_demo::publish(&client_config(kafka), &kafka.topic, records).await
}

/// The records of `shared/events/samples.jsonl` (copied into the repository).
pub fn samples() -> Vec<DemoRecord> {
    include_str!("../plugins/testdata/samples.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let json: Json = serde_json::from_str(line).unwrap();
            DemoRecord {
                key: json["key"].as_str().unwrap().to_string(),
                headers: json["headers"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect(),
                value: json["value"].clone(),
            }
        })
        .collect()
}

/// The registry's deployments of a test database, with their positions in `topic`.
pub async fn deployments(
    db: &TestDb,
    topic: &str,
) -> anyhow::Result<Vec<(projector::registry::Deployment, projector::progress::Progress)>> {
    deployments_on(db, &kafka(topic)).await
}

/// [`deployments`] with positions on another broker than the shared test broker.
pub async fn deployments_on(
    db: &TestDb,
    kafka: &KafkaConfig,
) -> anyhow::Result<Vec<(projector::registry::Deployment, projector::progress::Progress)>> {
    let kafka = kafka.clone();
    let marks = tokio::task::spawn_blocking(move || projector::progress::Watermarks::new(&kafka)?.fetch()).await??;
    let registry = projector::registry::Registry::new(db.pool.clone());
    projector::progress::snapshot(&registry, &db.pool, &marks).await
}

/// Waits until `live` projections are live, nothing is building, and every running
/// deployment has applied every event of the topic.
pub async fn wait_caught_up(db: &TestDb, topic: &str, live: usize, timeout: Duration) {
    wait_caught_up_on(db, &kafka(topic), live, timeout).await
}

/// [`wait_caught_up`] on another broker than the shared test broker.
pub async fn wait_caught_up_on(db: &TestDb, kafka: &KafkaConfig, live: usize, timeout: Duration) {
    wait_caught_up_beside(db, kafka, live, &[], timeout).await
}

/// [`wait_caught_up_on`] for all projections but `failing` ones, which may fail meanwhile.
pub async fn wait_caught_up_beside(db: &TestDb, kafka: &KafkaConfig, live: usize, failing: &[&str], timeout: Duration) {
    use projector::registry::Status;
    let deadline = Instant::now() + timeout;
    loop {
        let mut all = deployments_on(db, kafka).await.unwrap_or_default();
        all.retain(|(d, _)| !failing.contains(&d.name.as_str()));
        if let Some((failed, _)) = all.iter().find(|(d, _)| d.status == Status::Failed) {
            panic!("projection {} failed: {:?}", failed.name, failed.last_error);
        }
        let running: Vec<_> = all.iter().filter(|(d, _)| d.status.runs() && !d.paused).collect();
        let lives = running.iter().filter(|(d, _)| d.status == Status::Live).count();
        let building = running.iter().any(|(d, _)| d.status == Status::Building);
        if lives == live && !building && running.iter().all(|(_, p)| p.lag == 0) {
            return;
        }
        let summary: Vec<String> = all
            .iter()
            .map(|(d, p)| format!("{} v{} b{} {} lag {}", d.name, d.version, d.build, d.status, p.lag))
            .collect();
        assert!(Instant::now() < deadline, "not caught up after {timeout:?}: {summary:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `read_models.order_summaries`, one canonical JSON object per row, by order id.
pub const SUMMARIES_SQL: &str = "SELECT jsonb_build_object(
    'order_id', order_id, 'customer_id', customer_id, 'customer_name', customer_name,
    'status', status, 'total', total::text, 'item_count', item_count,
    'created_at', to_char(created_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
    'updated_at', to_char(updated_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))::text
  FROM read_models.order_summaries ORDER BY order_id";

/// `read_models.order_details`, one canonical JSON object per row, by order id.
pub const DETAILS_SQL: &str = "SELECT jsonb_build_object(
    'order_id', order_id, 'customer_id', customer_id, 'customer_name', customer_name,
    'status', status, 'total', total::text, 'item_count', item_count,
    'created_at', to_char(created_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
    'updated_at', to_char(updated_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
    'lines', lines, 'history', history, 'shipping', shipping,
    'cancellation_reason', cancellation_reason)::text
  FROM read_models.order_details ORDER BY order_id";

/// `read_models.daily_order_stats`, one canonical JSON object per row, by day.
pub const DAILY_SQL: &str = "SELECT jsonb_build_object(
    'day', day::text, 'order_count', order_count, 'total_revenue', total_revenue::text,
    'average_order_value', average_order_value::text, 'orders_by_status', orders_by_status)::text
  FROM read_models.daily_order_stats ORDER BY day";

/// The three example read models as stored.
pub async fn read_models(db: &TestDb) -> [Vec<Json>; 3] {
    [db.json_rows(SUMMARIES_SQL).await, db.json_rows(DETAILS_SQL).await, db.json_rows(DAILY_SQL).await]
}

/// Asserts two row lists are equal, reporting the first difference readably.
pub fn assert_rows_eq(what: &str, actual: &[Json], expected: &[Json]) {
    for (index, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_eq!(a, e, "{what}: row {index} differs\nactual:   {a}\nexpected: {e}");
    }
    assert_eq!(actual.len(), expected.len(), "{what}: {} rows, expected {}", actual.len(), expected.len());
}

/// Asserts the tables of three example deployments (by schema, in the order summaries,
/// details, daily stats) equal the independent model of `records`.
pub async fn assert_tables_match_model(db: &TestDb, schemas: [&str; 3], records: &[DemoRecord]) {
    let model = expected::Model::of(records);
    let views = ["read_models.order_summaries", "read_models.order_details", "read_models.daily_order_stats"];
    let queries = [SUMMARIES_SQL, DETAILS_SQL, DAILY_SQL];
    let expected = [model.summaries(), model.details(), model.daily()];
    for index in 0..3 {
        let table = views[index].replace("read_models", schemas[index]);
        let rows = db.json_rows(&queries[index].replace(views[index], &table)).await;
        assert_rows_eq(&table, &rows, &expected[index]);
    }
}

/// Asserts the three example read models equal the independent model of `records`, one row
/// at a time (a long soak's read models do not fit in memory at once as JSON).
pub async fn assert_matches_model(db: &TestDb, records: &[DemoRecord]) {
    let model = expected::Model::of(records);
    assert_stream_eq(db, "order_summaries", SUMMARIES_SQL, model.summary_rows()).await;
    assert_stream_eq(db, "order_details", DETAILS_SQL, model.detail_rows()).await;
    assert_stream_eq(db, "daily_order_stats", DAILY_SQL, model.daily().into_iter()).await;
}

/// [`assert_rows_eq`] of a query's rows as they arrive and `expected` as it is made.
pub async fn assert_stream_eq(db: &TestDb, what: &str, sql: &str, mut expected: impl Iterator<Item = Json>) {
    let mut actual = std::pin::pin!(db.texts(sql));
    let mut index = 0;
    while let Some(text) = futures_util::StreamExt::next(&mut actual).await {
        let a: Json = serde_json::from_str(&text).unwrap();
        match expected.next() {
            Some(e) => assert_eq!(a, e, "{what}: row {index} differs\nactual:   {a}\nexpected: {e}"),
            None => panic!("{what}: more rows than expected, from row {index}: {a}"),
        }
        index += 1;
    }
    let missing = expected.count();
    assert_eq!(missing, 0, "{what}: {index} rows, expected {}", index + missing);
}

/// `read_models.customer_ltv` (Python plugin), one canonical JSON object per row.
pub const CUSTOMER_LTV_SQL: &str = "SELECT jsonb_build_object(
    'customer_id', customer_id, 'customer_name', customer_name, 'orders', orders,
    'paid_orders', paid_orders, 'cancelled_orders', cancelled_orders, 'revenue', revenue::text,
    'items', items, 'orders_by_status', orders_by_status,
    'average_order_value', average_order_value::text)::text
  FROM read_models.customer_ltv ORDER BY customer_id";

/// `read_models.sku_sales` (JavaScript plugin), one canonical JSON object per row.
pub const SKU_SALES_SQL: &str = "SELECT jsonb_build_object(
    'sku', sku, 'product_name', product_name, 'units_sold', units_sold, 'revenue', revenue::text,
    'orders', orders, 'average_unit_price', average_unit_price::text)::text
  FROM read_models.sku_sales ORDER BY sku";
