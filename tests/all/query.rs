//! The query API against a running host: order search (accents, prefixes, SKUs, ids, filters,
//! paging), read-model reads, conveniences, read-your-writes and parameter errors.

use std::time::{Duration, Instant};

use projector_demo::DemoRecord;
use projector_tests::host::{Host, HostConfig, ADMIN_TOKEN, READ_TOKEN};
use projector_tests::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn record(kind: &str, key: &str, value: Value) -> DemoRecord {
    DemoRecord {
        key: key.into(),
        headers: vec![("__TypeId__".into(), format!("com.example.orders.events.{kind}"))],
        value,
    }
}

fn created(id: &str, customer: (&str, &str), item: (&str, &str, i64, &str), at: &str) -> DemoRecord {
    let (sku, name, quantity, price) = item;
    let price: Value = serde_json::from_str(price).unwrap();
    record(
        "OrderCreated",
        id,
        json!({
        "eventId": format!("{id}-c"), "orderId": id, "customerId": customer.0, "customerName": customer.1,
        "items": [{"productId": sku, "productName": name, "quantity": quantity, "unitPrice": price}],
        "createdAt": at}),
    )
}

/// Five hand-made orders whose search results are known exactly.
fn catalog() -> Vec<DemoRecord> {
    vec![
        created(
            "ord-a1",
            ("cust-zoe", "Zoë Müller"),
            ("sku-espresso-250", "Espresso Beans 250g", 2, "8.90"),
            "2026-11-01T10:00:00.000Z",
        ),
        record(
            "OrderSubmitted",
            "ord-a1",
            json!({"eventId": "ord-a1-s", "orderId": "ord-a1", "total": serde_json::from_str::<Value>("17.80").unwrap(), "submittedAt": "2026-11-01T10:05:00.000Z"}),
        ),
        created(
            "ord-a2",
            ("cust-zoe2", "Zoe Muller"),
            ("sku-grinder-c2", "Hand Grinder C2", 1, "99.00"),
            "2026-11-02T10:00:00.000Z",
        ),
        record(
            "OrderPlaced",
            "ord-a3",
            json!({
            "eventId": "ord-a3-p", "orderId": "ord-a3", "customerId": "cust-kenji", "customerName": "Kenji Watanabe",
            "lines": [{"sku": "sku-kettle-gooseneck", "productName": "Gooseneck Kettle", "quantity": 1, "unitPrice": serde_json::from_str::<Value>("64.50").unwrap()}],
            "total": serde_json::from_str::<Value>("64.50").unwrap(), "occurredAt": "2026-11-03T10:00:00.000Z"}),
        ),
        created(
            "ord-a4",
            ("cust-zoltan", "Zoltán Kodály"),
            ("sku-espresso-cups", "Espresso Cups", 6, "4.50"),
            "2026-11-04T10:00:00.000Z",
        ),
        record(
            "OrderCancelled",
            "ord-a4",
            json!({"eventId": "ord-a4-x", "orderId": "ord-a4", "reason": "duplicate order", "cancelledAt": "2026-11-04T11:00:00.000Z"}),
        ),
        created(
            "ord-a5",
            ("cust-amelie", "Amélie Poulain"),
            ("sku-mug-stone", "Stoneware Mug", 3, "12.00"),
            "2026-11-05T10:00:00.000Z",
        ),
        record(
            "OrderSubmitted",
            "ord-a5",
            json!({"eventId": "ord-a5-s", "orderId": "ord-a5", "total": serde_json::from_str::<Value>("36.00").unwrap(), "submittedAt": "2026-11-05T10:05:00.000Z"}),
        ),
        record(
            "OrderShipped",
            "ord-a5",
            json!({"eventId": "ord-a5-h", "orderId": "ord-a5", "carrier": "DHL", "trackingNumber": "T1", "shippedAt": "2026-11-06T10:00:00.000Z"}),
        ),
    ]
}

struct Query {
    base: String,
    http: reqwest::Client,
}

impl Query {
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Ids of every hit of a search, page by page (7 a page), checked for duplicates and
    /// against the total of the first page.
    async fn pages(&self, filter: &str) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut total = None;
        loop {
            let page = match &cursor {
                None => format!("/orders/search?{filter}&limit=7"),
                Some(c) => format!("/orders/search?{filter}&limit=7&cursor={c}"),
            };
            let (status, body) = self.get(&page).await;
            assert_eq!(status, StatusCode::OK, "{page}: {body}");
            total = total.or(body["total"].as_i64());
            seen.extend(body["hits"].as_array().unwrap().iter().map(|h| h["order_id"].as_str().unwrap().to_string()));
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        let unique: std::collections::BTreeSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "{filter}: duplicates");
        assert_eq!(seen.len() as i64, total.unwrap(), "{filter}: every hit");
        seen
    }

    /// Ids of the hits of a search, and the total.
    async fn search(&self, query: &str) -> (Vec<String>, i64) {
        let (status, body) = self.get(&format!("/orders/search?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        let ids =
            body["hits"].as_array().unwrap().iter().map(|h| h["order_id"].as_str().unwrap().to_string()).collect();
        (ids, body["total"].as_i64().unwrap())
    }
}

async fn start(name: &str, records: &[DemoRecord]) -> (TestDb, String, HostConfig, Host, Query) {
    let topic = create_topic(name, 3).await;
    publish(&topic, records).await;
    let (db, config, host, query) = host_on(name, &topic, None).await;
    (db, topic, config, host, query)
}

/// A host over the example plugins and `order-search` on `topic`, caught up; with `engine`,
/// `order_search` is on the search engine.
async fn host_on(name: &str, topic: &str, engine: Option<&search::Engine>) -> (TestDb, HostConfig, Host, Query) {
    let db = TestDb::create(name).await;
    let mut config =
        HostConfig::new(name, &db.url, topic, &[ORDER_SEARCH, ORDER_SUMMARIES, ORDER_DETAILS, DAILY_ORDER_STATS]);
    for (key, value) in engine.map(|e| e.settings(&["order_search"])).unwrap_or_default() {
        config = config.with(&key, &value);
    }
    let host = Host::start(&config);
    wait_caught_up(&db, topic, 4, Duration::from_secs(180)).await;
    let query = Query { base: config.query_url(), http: reqwest::Client::new() };
    (db, config, host, query)
}

#[tokio::test(flavor = "multi_thread")]
async fn search_finds_exactly_the_expected_orders() {
    let (_db, _topic, _config, _host, api) = start("search", &catalog()).await;
    search_scenarios(&api).await;
}

/// The same scenarios with `order_search` on the search engine, and every answer's hits equal,
/// in order, to PostgreSQL's for the same topic.
#[tokio::test(flavor = "multi_thread")]
async fn search_on_the_search_engine_answers_as_postgresql() {
    let topic = create_topic("search_es", 3).await;
    publish(&topic, &catalog()).await;
    let engine = search::Engine::new("search-es");
    let (_pg_db, _pg_config, _pg_host, postgres) = host_on("search_pg", &topic, None).await;
    let (_db, _config, _host, api) = host_on("search_es", &topic, Some(&engine)).await;
    search_scenarios(&api).await;
    for query in SCENARIOS {
        assert_eq!(api.search(query).await, postgres.search(query).await, "{query}");
    }
}

/// Every search of [`search_scenarios`], for the comparison of engines.
const SCENARIOS: &[&str] = &[
    "q=zoe%20muller",
    "q=Zo%C3%AB%20M%C3%BCller",
    "q=zoltan%20kodaly",
    "q=zol",
    "q=esp&sort=createdAt",
    "q=amelie%20stone",
    "q=sku-grinder-c2",
    "q=sku-kettle",
    "q=ord-a3",
    "status=SHIPPED",
    "customerId=cust-zoe",
    "from=2026-11-02&to=2026-11-04",
    "q=zoe&status=SUBMITTED",
    "q=espresso&status=CANCELLED",
    "sort=total",
    "sort=-total&limit=2",
    "q=nonexistentword",
    "q=z",
    "q=espresso&sort=-total",
];

/// The catalog's searches and their exact hits, whichever engine answers.
async fn search_scenarios(api: &Query) {
    let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // Accents and case do not matter, either way; equal relevance ties break by order id.
    assert_eq!(api.search("q=zoe%20muller").await, (ids(&["ord-a1", "ord-a2"]), 2));
    assert_eq!(api.search("q=Zo%C3%AB%20M%C3%BCller").await, (ids(&["ord-a1", "ord-a2"]), 2));
    assert_eq!(api.search("q=zoltan%20kodaly").await, (ids(&["ord-a4"]), 1));
    // The last word is a prefix: search as you type.
    assert_eq!(api.search("q=zol").await, (ids(&["ord-a4"]), 1));
    assert_eq!(api.search("q=esp&sort=createdAt").await, (ids(&["ord-a1", "ord-a4"]), 2));
    assert_eq!(api.search("q=amelie%20stone").await, (ids(&["ord-a5"]), 1));
    // SKUs and order ids.
    assert_eq!(api.search("q=sku-grinder-c2").await, (ids(&["ord-a2"]), 1));
    assert_eq!(api.search("q=sku-kettle").await, (ids(&["ord-a3"]), 1));
    assert_eq!(api.search("q=ord-a3").await, (ids(&["ord-a3"]), 1));
    // Filters alone (newest first by default) and with q.
    assert_eq!(api.search("status=SHIPPED").await, (ids(&["ord-a5"]), 1));
    assert_eq!(api.search("customerId=cust-zoe").await, (ids(&["ord-a1"]), 1));
    assert_eq!(api.search("from=2026-11-02&to=2026-11-04").await, (ids(&["ord-a3", "ord-a2"]), 2));
    assert_eq!(api.search("q=zoe&status=SUBMITTED").await, (ids(&["ord-a1"]), 1));
    assert_eq!(api.search("q=espresso&status=CANCELLED").await, (ids(&["ord-a4"]), 1));
    assert_eq!(api.search("sort=total").await, (ids(&["ord-a1", "ord-a4", "ord-a5", "ord-a3", "ord-a2"]), 5));
    assert_eq!(api.search("sort=-total&limit=2").await.0, ids(&["ord-a2", "ord-a3"]));
    // No hits.
    assert_eq!(api.search("q=nonexistentword").await, (Vec::new(), 0));
    // Hits carry exact decimals and a score when ranked.
    let (_, body) = api.get("/orders/search?q=zoe%20muller").await;
    assert_eq!(body["hits"][0]["total"], "17.80");
    assert!(body["hits"][0]["_score"].as_f64().unwrap() > 0.0);
    assert_eq!(body["consistency"]["projection"], "order-search");
    assert_eq!(body["consistency"]["stale"], false);
    // One letter: every order with a word starting with it.
    assert_eq!(api.search("q=z&sort=createdAt").await, (ids(&["ord-a1", "ord-a2", "ord-a4"]), 3));
}

/// Searches paged through, with the order PostgreSQL sorts their hits in (none: relevance, or
/// a full-text search the check in SQL does not repeat).
const PAGED: [(&str, &str); 4] = [
    ("status=SHIPPED&sort=total", "total, order_id"),
    ("sort=-createdAt", "created_at DESC, order_id"),
    ("q=espresso", ""),
    ("q=a&sort=createdAt", ""),
];

/// Paging on the search engine visits the same hits in the same order as on PostgreSQL.
#[tokio::test(flavor = "multi_thread")]
async fn paging_on_the_search_engine_matches_postgresql() {
    let topic = create_topic("paging_es", 3).await;
    publish(&topic, &projector_demo::generate(600, 81)).await;
    let engine = search::Engine::new("paging-es");
    let (_pg_db, _pg_config, _pg_host, postgres) = host_on("paging_pg", &topic, None).await;
    let (_db, _config, _host, api) = host_on("paging_es", &topic, Some(&engine)).await;
    for (filter, _) in PAGED {
        let on_engine = api.pages(filter).await;
        let on_postgres = postgres.pages(filter).await;
        if !filter.contains("sort=") {
            // Relevance: the two engines score differently (BM25, ts_rank); the same hits.
            let sorted = |mut ids: Vec<String>| {
                ids.sort();
                ids
            };
            assert_eq!(sorted(on_engine), sorted(on_postgres), "{filter}");
        } else {
            assert_eq!(on_engine, on_postgres, "{filter}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn paging_visits_every_hit_once() {
    let records = projector_demo::generate(600, 81);
    let (db, _topic, _config, _host, api) = start("paging", &records).await;
    for (filter, order) in PAGED {
        let seen = api.pages(filter).await;
        if !order.is_empty() {
            let condition = if filter.starts_with("status") { "WHERE status = 'SHIPPED'" } else { "" };
            let expected: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT order_id FROM read_models.order_search {condition} ORDER BY {order}"
            ))
            .fetch_all(&db.pool)
            .await
            .unwrap();
            assert_eq!(seen, expected, "{filter}: order");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_conveniences_and_parameter_errors() {
    let records: Vec<DemoRecord> = catalog().into_iter().chain(samples()).collect();
    let (_db, _topic, _config, _host, api) = start("reads", &records).await;

    let (status, body) = api.get("/orders/ord-1001").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["total"], "116.80", "decimals are exact strings");
    assert_eq!(body["data"]["status"], "SHIPPED");
    assert_eq!(body["data"]["created_at"], "2026-11-20T09:00:00.000000Z");
    assert_eq!(body["data"]["shipping"]["carrier"], "DHL");
    assert_eq!(body["consistency"]["projection"], "order-details");
    assert_eq!(body["consistency"]["version"], 1);
    assert!(
        body["consistency"]["watermark"].as_object().unwrap().values().map(|v| v.as_i64().unwrap()).sum::<i64>() > 0
    );
    assert!(body["consistency"]["last_event_at"].is_string());

    let (status, body) = api.get("/orders?customerId=cust-7").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|r| r["order_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["ord-1003", "ord-1001"], "newest first");
    let (_, body) = api.get("/orders?status=SHIPPED&limit=1").await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    let next = body["next_cursor"].as_str().unwrap();
    let (_, body) = api.get(&format!("/orders?status=SHIPPED&limit=1&cursor={next}")).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);

    let (status, body) = api.get("/stats/daily?from=2026-11-20&to=2026-11-20").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"],
        json!([{"day": "2026-11-20", "order_count": 2, "total_revenue": "196.27", "average_order_value": "98.14", "orders_by_status": {"SHIPPED": 2}}])
    );

    let (status, body) = api.get("/read-models/order_summaries/ord-1002").await;
    assert_eq!((status, body["data"]["total"].clone()), (StatusCode::OK, json!("79.47")));
    let (status, body) = api.get("/read-models/order_summaries?status=CANCELLED&order_by=-total").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|r| r["order_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["ord-1003", "ord-a4"]);

    // Errors: 400 naming the parameter, 404 for unknown collections and keys.
    for (path, parameter) in [
        ("/read-models/order_summaries?nope=1", "nope"),
        ("/read-models/order_summaries?customer_name=x", "customer_name"),
        ("/read-models/order_summaries?order_by=customer_name", "order_by"),
        ("/read-models/order_summaries?cursor=xyz", "cursor"),
        ("/read-models/order_summaries?limit=0", "limit"),
        ("/read-models/order_summaries?created_at=yesterday", "created_at"),
        ("/orders/search?from=yesterday", "from"),
        ("/orders/search?to=2026-02-30", "to"),
        ("/orders/search?sort=color", "sort"),
        ("/orders/search?color=red", "color"),
        ("/orders/search?cursor=bad", "cursor"),
        ("/stats/daily?from=2026-13-40", "from"),
        ("/orders?nope=1", "nope"),
    ] {
        let (status, body) = api.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().starts_with(&format!("{parameter}:")), "{path}: {body}");
    }
    let (_, body) = api.get("/orders/search?sort=total&limit=1").await;
    let cursor = body["next_cursor"].as_str().unwrap();
    let (status, body) = api.get(&format!("/orders/search?sort=-total&cursor={cursor}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a cursor of another sort: {body}");
    for path in ["/read-models/nope/1", "/read-models/nope", "/orders/ord-404", "/read-models/order_summaries/ord-404"]
    {
        let (status, body) = api.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }

    let (status, body) = api.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/orders/search",
        "/orders/{id}",
        "/orders",
        "/stats/daily",
        "/read-models/{collection}",
        "/read-models/{collection}/{key}",
        "/events",
    ] {
        assert!(body["paths"].get(path).is_some(), "{path} missing from the OpenAPI document");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_published_through_the_api_is_readable_with_after() {
    let (_db, _topic, config, _host, api) = start("ryw", &samples()).await;
    let publish = |body: Value, token: &str| {
        api.http.post(format!("{}/events", config.query_url())).bearer_auth(token).json(&body).send()
    };
    let unauthorized = api.http.post(format!("{}/events", config.query_url())).json(&json!({})).send().await.unwrap();
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
    let read_only = publish(json!({"key": "k", "value": {}}), READ_TOKEN).await.unwrap();
    assert_eq!(read_only.status(), StatusCode::FORBIDDEN);

    for n in 0..15 {
        let id = format!("ord-ryw-{n}");
        let event = json!({
            "key": id,
            "headers": {"__TypeId__": "com.example.orders.events.OrderCreated"},
            "value": {"eventId": format!("{id}-c"), "orderId": id, "customerId": "cust-ryw", "customerName": "Read Your Writes",
                      "items": [{"productId": "sku-x", "productName": "X", "quantity": 1, "unitPrice": 1.25}],
                      "createdAt": "2026-11-28T12:00:00.000Z"}});
        let response = publish(event, ADMIN_TOKEN).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let published: Value = response.json().await.unwrap();
        let after = published["after"].as_str().unwrap();
        let started = Instant::now();
        let (status, body) = api.get(&format!("/orders/{id}?after={after}&wait_ms=10000")).await;
        assert_eq!(status, StatusCode::OK, "{id} after {after}: {body}");
        assert_eq!(body["data"]["total"], "1.25");
        let (partition, offset) = after.split_once(':').unwrap();
        assert!(body["consistency"]["watermark"][partition].as_i64().unwrap() > offset.parse::<i64>().unwrap());
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    // An offset that will not be applied in time: 503 with the watermark.
    let (status, body) = api.get("/orders/ord-1001?after=0:999999&wait_ms=200").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "not_yet_applied");
    assert!(body["error"]["details"]["watermark"].is_object(), "{body}");
    let (status, body) = api.get("/orders/ord-1001?after=zero&wait_ms=200").await;
    assert_eq!(
        (status, body["error"]["message"].as_str().unwrap().starts_with("after:")),
        (StatusCode::BAD_REQUEST, true)
    );
}

/// An answer from a projection lagging over `query.stale_lag` says so.
#[tokio::test(flavor = "multi_thread")]
async fn answers_from_a_lagging_projection_are_flagged_stale() {
    let db = TestDb::create("stale").await;
    let topic = create_topic("stale", 1).await;
    publish(&topic, &samples()).await;
    let config = HostConfig::new("stale", &db.url, &topic, &[ORDER_DETAILS]).with("PROJECTOR_QUERY__STALE_LAG", "0");
    let _host = Host::start(&config);
    wait_caught_up(&db, &topic, 1, Duration::from_secs(120)).await;
    let api = Query { base: config.query_url(), http: reqwest::Client::new() };
    let (_, body) = api.get("/orders/ord-1001").await;
    assert_eq!(
        (body["consistency"]["stale"].clone(), body["consistency"]["lag"].clone()),
        (json!(false), json!(0)),
        "{body}"
    );

    let paused = api
        .http
        .post(format!("{}/admin/projections/order-details/pause", config.admin_url()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(paused.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    publish(&topic, &catalog()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = api.get("/orders/ord-1001").await;
        assert_eq!(status, StatusCode::OK);
        if body["consistency"]["stale"] == json!(true) {
            assert_eq!(body["consistency"]["lag"], json!(catalog().len()), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "never flagged stale: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
