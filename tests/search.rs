//! The search engine of the end-to-end tests: `ES_URL` (a real Elasticsearch cluster, wherever
//! one exists), else `PROJECTOR_TEST_ES` (the OpenSearch node `scripts/test.sh` starts).
//!
//! Every test puts its indices under a prefix of its own, so tests share the engine side by
//! side; documents are read back through the public alias, the way a user's tools would.

use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};

/// The engine's URL; a test that needs one fails without it (it is never skipped).
pub fn url() -> String {
    std::env::var("ES_URL").or_else(|_| std::env::var("PROJECTOR_TEST_ES")).unwrap_or_else(|_| {
        panic!("no search engine: set ES_URL or PROJECTOR_TEST_ES (scripts/test.sh starts OpenSearch and sets it)")
    })
}

/// One test's view of the engine: its index prefix.
#[derive(Clone)]
pub struct Engine {
    /// Base URL.
    pub url: String,
    /// Prefix of the test's indices and aliases.
    pub prefix: String,
    http: reqwest::Client,
}

impl Engine {
    /// A prefix of its own for the test `name`.
    pub fn new(name: &str) -> Engine {
        let prefix = format!("{}-", crate::unique(name).replace('_', "-"));
        Engine { url: url(), prefix, http: reqwest::Client::new() }
    }

    /// The host settings pointing it at the engine, with `collections` moved there.
    pub fn settings(&self, collections: &[&str]) -> Vec<(String, String)> {
        let quoted: Vec<String> = collections.iter().map(|c| format!("{c:?}")).collect();
        vec![
            ("PROJECTOR_ELASTICSEARCH__URLS".into(), format!("[{:?}]", self.url)),
            ("PROJECTOR_ELASTICSEARCH__INDEX_PREFIX".into(), self.prefix.clone()),
            ("PROJECTOR_ELASTICSEARCH__COLLECTIONS".into(), format!("[{}]", quoted.join(", "))),
            ("PROJECTOR_ELASTICSEARCH__REFRESH_INTERVAL_MS".into(), "200".into()),
        ]
    }

    /// Sends a request; the status and the JSON body.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Json>) -> (u16, Json) {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("search engine at {}: {e}", self.url));
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Json::Null))
    }

    /// The index the public alias of `collection` points at, once it points somewhere.
    pub async fn aliased(&self, collection: &str, timeout: Duration) -> String {
        let started = Instant::now();
        loop {
            let (status, body) =
                self.call(reqwest::Method::GET, &format!("/_alias/{}{collection}", self.prefix), None).await;
            if status == 200 {
                if let Some(index) = body.as_object().and_then(|o| o.keys().next()) {
                    return index.clone();
                }
            }
            assert!(
                started.elapsed() < timeout,
                "alias {}{collection} not set within {timeout:?}: {body}",
                self.prefix
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every live document of `index` (tombstones of deleted ones left out), sorted by
    /// `sort_field`, as stored: the declared fields of `_source`, without the host's own.
    pub async fn documents(&self, index: &str, sort_field: &str) -> Vec<Json> {
        let (status, body) = self.call(reqwest::Method::POST, &format!("/{index}/_refresh"), None).await;
        assert_eq!(status, 200, "refresh {index}: {body}");
        let mut documents = Vec::new();
        let mut after: Option<Json> = None;
        loop {
            let mut query = json!({
                "size": 1000,
                "query": {"bool": {"must_not": {"term": {"projector-deleted": true}}}},
                "sort": [{sort_field: "asc"}],
            });
            if let Some(after) = &after {
                query["search_after"] = after.clone();
            }
            let (status, body) = self.call(reqwest::Method::POST, &format!("/{index}/_search"), Some(query)).await;
            assert_eq!(status, 200, "search {index}: {body}");
            let hits = body["hits"]["hits"].as_array().cloned().unwrap_or_default();
            if hits.is_empty() {
                return documents;
            }
            after = Some(hits.last().expect("not empty")["sort"].clone());
            for hit in hits {
                let mut source = hit["_source"].clone();
                if let Some(fields) = source.as_object_mut() {
                    fields.retain(|name, _| !name.starts_with("projector-"));
                }
                documents.push(source);
            }
        }
    }
}

/// An `order_summaries` document in the shape of [`crate::SUMMARIES_SQL`]'s rows (timestamps to
/// the millisecond, as the model writes them).
pub fn summary_row(document: &Json) -> Json {
    let millis = |field: &str| match document[field].as_str() {
        // `2026-11-20T09:00:00.000000Z`: the host writes microseconds.
        Some(text) => json!(format!("{}Z", &text[..23])),
        None => Json::Null,
    };
    json!({
        "order_id": document["order_id"], "customer_id": document["customer_id"],
        "customer_name": document["customer_name"], "status": document["status"], "total": document["total"],
        "item_count": document["item_count"], "created_at": millis("created_at"), "updated_at": millis("updated_at"),
    })
}

/// A `daily_order_stats` document in the shape of [`crate::DAILY_SQL`]'s rows.
pub fn daily_row(document: &Json) -> Json {
    json!({
        "day": document["day"], "order_count": document["order_count"], "total_revenue": document["total_revenue"],
        "average_order_value": document["average_order_value"], "orders_by_status": document["orders_by_status"],
    })
}
