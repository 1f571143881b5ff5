//! The search-engine sink: collections kept as Elasticsearch (or OpenSearch) indices, one per
//! deployment, behind a public alias per collection.
//!
//! Invariants:
//! - Every write is a scripted upsert through [`index::SCRIPT`], one `_bulk` action per
//!   document and batch, carrying each event's own step with its partition and offset; a
//!   document applies a step at most once, so replays, re-cut batches and stale owners change
//!   nothing twice and lose nothing (see the script).
//! - A batch's offsets are stored in PostgreSQL (with its state, dead letters and PostgreSQL
//!   rows) only after every action of the batch succeeded here; a crash in between replays the
//!   batch onto documents that skip what they applied.
//! - Items the engine answers with 429 or 5xx are retried alone, with exponential backoff and
//!   jitter; other refusals fail the batch with the document and the engine's reason.

pub mod bulk;
pub mod index;

use std::collections::HashSet;
use std::time::Duration;

use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::transport::{MultiNodeConnectionPool, TransportBuilder};
use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use rand::Rng;
use serde_json::{json, Value as Json};

use crate::changeset::Changeset;
use crate::config::ElasticsearchConfig;
use crate::contract::Sink as SinkKind;
use crate::sink::{Letter, SinkError};
use crate::spec::Spec;

/// A client of the configured search engine.
#[derive(Clone)]
pub struct Engine {
    client: Elasticsearch,
    config: ElasticsearchConfig,
}

/// An answer of the engine: its status and JSON body.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body (`Null` when it was not JSON).
    pub body: Json,
}

impl Answer {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The answer when it is a success; otherwise the refusal, prefixed with `what` failed.
    fn checked(self, what: &str) -> Result<Answer, SinkError> {
        if self.ok() {
            Ok(self)
        } else {
            Err(refused(format!("{what}: {}", self.reason()), self.status))
        }
    }

    /// The engine's error type and reason, as its error bodies give them.
    pub fn reason(&self) -> String {
        bulk::reason(&self.body["error"]).unwrap_or_else(|| format!("HTTP {}: {}", self.status, self.body))
    }
}

impl Engine {
    /// A client of the nodes in `config` (nothing is sent yet).
    pub fn new(config: &ElasticsearchConfig) -> anyhow::Result<Self> {
        let urls = config
            .urls
            .iter()
            .map(|u| u.parse().map_err(|e| anyhow::anyhow!("elasticsearch.urls: `{u}`: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut builder = TransportBuilder::new(MultiNodeConnectionPool::round_robin(urls, None))
            .timeout(Duration::from_millis(config.timeout_ms))
            .enable_meta_header(false);
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder = builder.auth(Credentials::Basic(user.clone(), password.clone()));
        }
        if let Some(key) = &config.api_key {
            builder = builder.auth(Credentials::EncodedApiKey(key.clone()));
        }
        if let Some(path) = &config.ca_cert {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("elasticsearch.ca_cert: cannot read {}: {e}", path.display()))?;
            let ca = Certificate::from_pem(&pem).map_err(|e| {
                anyhow::anyhow!("elasticsearch.ca_cert: {} is not PEM certificates: {e}", path.display())
            })?;
            builder = builder.cert_validation(CertificateValidation::Full(ca));
        }
        let transport = builder.build().map_err(|e| anyhow::anyhow!("cannot set up the search engine client: {e}"))?;
        Ok(Self { client: Elasticsearch::new(transport), config: config.clone() })
    }

    /// The configuration the client was made from.
    pub fn config(&self) -> &ElasticsearchConfig {
        &self.config
    }

    /// Sends one request; transport failures (refused, reset, timed out) are `Err`.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Json>) -> Result<Answer, SinkError> {
        let body = body.map(|b| b.to_string().into_bytes());
        self.send(method, path, body, "application/json").await
    }

    async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>, kind: &str) -> Result<Answer, SinkError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_str(kind).expect("a valid content type"));
        let response = self
            .client
            .send(method, path, headers, Option::<&()>::None, body, None)
            .await
            .map_err(|e| unreachable_engine(&e.to_string()))?;
        let status = response.status_code().as_u16();
        let body = response.json::<Json>().await.unwrap_or(Json::Null);
        Ok(Answer { status, body })
    }

    /// Stores the write script (idempotent).
    pub async fn install_script(&self) -> Result<(), SinkError> {
        let body = json!({"script": {"lang": "painless", "source": index::SCRIPT}});
        let answer = self.call(Method::Put, &format!("/_scripts/{}", index::script_id()), Some(&body)).await?;
        answer.checked("the search engine refused the write script").map(drop)
    }

    /// Creates the indices of a deployment's search-engine collections that do not exist yet.
    pub async fn ensure_indices(&self, schema: &str, spec: &Spec) -> Result<(), SinkError> {
        for (collection, _) in spec.collections().filter(|(c, _)| c.sink == SinkKind::Elasticsearch) {
            let name = index::name(&self.config, &collection.name, schema);
            let answer =
                self.call(Method::Put, &format!("/{name}"), Some(&index::definition(&self.config, collection))).await?;
            let exists = answer.body["error"]["type"] == "resource_already_exists_exception";
            if !answer.ok() && !exists {
                return Err(refused(format!("cannot create index {name}: {}", answer.reason()), answer.status));
            }
        }
        Ok(())
    }

    /// Points the public alias of each search-engine collection of `spec` at `schema`'s index,
    /// atomically (one `_aliases` request moves them all), once everything written to those
    /// indices is visible to searches (a refresh first): a reader of the alias never sees a
    /// version partly.
    pub async fn point_aliases(&self, schema: &str, spec: &Spec) -> Result<(), SinkError> {
        let mut actions = Vec::new();
        for (collection, _) in spec.collections().filter(|(c, _)| c.sink == SinkKind::Elasticsearch) {
            let alias = index::alias(&self.config, &collection.name);
            let target = index::name(&self.config, &collection.name, schema);
            self.call(Method::Post, &format!("/{target}/_refresh"), None)
                .await?
                .checked(&format!("cannot refresh {target}"))?;
            actions.push(json!({"remove": {"index": format!("{}{}-*", self.config.index_prefix, collection.name), "alias": alias, "must_exist": false}}));
            actions.push(json!({"add": {"index": target, "alias": alias}}));
        }
        if actions.is_empty() {
            return Ok(());
        }
        let answer = self.call(Method::Post, "/_aliases", Some(&json!({"actions": actions}))).await?;
        answer.checked("cannot move the aliases").map(drop)
    }

    /// Deletes a deployment's indices (missing ones are fine).
    pub async fn delete_indices(&self, schema: &str, spec: &Spec) -> Result<(), SinkError> {
        for (collection, _) in spec.collections().filter(|(c, _)| c.sink == SinkKind::Elasticsearch) {
            let name = index::name(&self.config, &collection.name, schema);
            let answer = self.call(Method::Delete, &format!("/{name}"), None).await?;
            if !answer.ok() && answer.status != 404 {
                return Err(refused(format!("cannot delete index {name}: {}", answer.reason()), answer.status));
            }
        }
        Ok(())
    }

    /// Applies the search-engine collections' rows of a batch to `schema`'s indices: every
    /// action succeeded when this returns `Ok`.
    pub async fn apply(
        &self,
        schema: &str,
        spec: &Spec,
        changes: &Changeset,
        letters: &[Letter<'_>],
    ) -> Result<(), SinkError> {
        let redriven: HashSet<(i32, i64)> = letters
            .iter()
            .filter_map(|l| match l {
                Letter::Redriven { partition, offset, .. } => Some((*partition, *offset)),
                _ => None,
            })
            .collect();
        let actions = bulk::actions(&self.config, schema, spec, changes, &redriven)
            .map_err(|message| SinkError::Database { message, transient: false, by_data: true })?;
        for request in bulk::requests(&actions, self.config.max_bulk_actions, self.config.max_bulk_bytes) {
            self.bulk(&actions[request]).await?;
        }
        Ok(())
    }

    /// Checks what [`Engine::apply`] would send, without sending it: the values the engine
    /// cannot take are refused here, pinned to their event by the pipeline.
    pub fn check(&self, schema: &str, spec: &Spec, changes: &Changeset) -> Result<(), SinkError> {
        bulk::actions(&self.config, schema, spec, changes, &HashSet::new())
            .map(drop)
            .map_err(|message| SinkError::Database { message, transient: false, by_data: true })
    }

    /// Sends actions through `_bulk`, retrying the items answered with 429 or 5xx alone.
    async fn bulk(&self, actions: &[bulk::Action]) -> Result<(), SinkError> {
        let mut pending: Vec<&bulk::Action> = actions.iter().collect();
        let mut wait = Duration::from_millis(100);
        for attempt in 1..=self.config.max_item_attempts {
            let body = bulk::body(&pending);
            let answer = self.send(Method::Post, "/_bulk", Some(body), "application/x-ndjson").await?;
            if answer.status == 429 || answer.status >= 500 {
                if attempt == self.config.max_item_attempts {
                    return Err(unreachable_engine(&answer.reason()));
                }
            } else if !answer.ok() {
                return Err(refused(
                    format!("the search engine refused a bulk request: {}", answer.reason()),
                    answer.status,
                ));
            } else {
                let outcome = bulk::outcome(&answer.body, pending.len())
                    .map_err(|m| refused(format!("unexpected bulk answer: {m}"), 200))?;
                if let Some((at, reason)) = outcome.refused.first() {
                    let document = &pending[*at].id;
                    return Err(SinkError::Database {
                        message: format!("the search engine refused document `{document}`: {reason}"),
                        transient: false,
                        by_data: false,
                    });
                }
                if outcome.retry.is_empty() {
                    return Ok(());
                }
                if attempt == self.config.max_item_attempts {
                    let (at, reason) = &outcome.retry[0];
                    return Err(unreachable_engine(&format!(
                        "{} documents still refused after {attempt} attempts, e.g. `{}`: {reason}",
                        outcome.retry.len(),
                        pending[*at].id
                    )));
                }
                tracing::warn!(items = outcome.retry.len(), attempt, reason = %outcome.retry[0].1, "The search engine is overloaded; retrying the refused items.");
                let again: HashSet<usize> = outcome.retry.iter().map(|(at, _)| *at).collect();
                pending = pending.into_iter().enumerate().filter(|(i, _)| again.contains(i)).map(|(_, a)| a).collect();
            }
            // Full jitter: a random wait up to the doubling cap, so retrying writers spread out.
            let jittered = rand::thread_rng().gen_range(wait / 2..=wait);
            tokio::time::sleep(jittered).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        unreachable!("the last attempt returns")
    }
}

fn unreachable_engine(message: &str) -> SinkError {
    SinkError::Database { message: format!("search engine unavailable: {message}"), transient: true, by_data: false }
}

fn refused(message: String, status: u16) -> SinkError {
    SinkError::Database { message, transient: status == 429 || status >= 500, by_data: false }
}

/// Contract tests: the engine's answers as Elasticsearch 8's documentation shows them, from a
/// local HTTP server, for what no local engine does on request (an item refused with 429 while
/// the others succeed, a mapping error body); the requests the host sends are asserted exactly.
#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::routing::post;
    use axum::{Json, Router};
    use serde_json::{json, Value as Json_};

    use super::*;
    use crate::changeset::At;
    use crate::contract::{FieldValue, Increment, Operation, Value};
    use crate::spec::tests::stats_spec;

    /// What the fake engine received, and the answers it gives in turn.
    #[derive(Clone, Default)]
    struct Script {
        received: Arc<Mutex<Vec<String>>>,
        answers: Arc<Mutex<Vec<(u16, Json_)>>>,
    }

    async fn bulk(State(script): State<Script>, body: Bytes) -> (axum::http::StatusCode, Json<Json_>) {
        script.received.lock().unwrap().push(String::from_utf8(body.to_vec()).unwrap());
        let (status, answer) = script.answers.lock().unwrap().remove(0);
        (axum::http::StatusCode::from_u16(status).unwrap(), Json(answer))
    }

    async fn engine(script: &Script, attempts: u32) -> Engine {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().route("/_bulk", post(bulk)).with_state(script.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let config = ElasticsearchConfig { urls: vec![url], max_item_attempts: attempts, ..Default::default() };
        Engine::new(&config).unwrap()
    }

    /// Two days incremented from partitions 0 and 3: two documents, one action each.
    fn batch() -> (Spec, Changeset) {
        let mut raw = stats_spec();
        raw.collections[0].sink = SinkKind::Elasticsearch;
        let spec = Spec::new(raw).unwrap();
        let mut changes = Changeset::new(&spec);
        for (day, partition, offset) in [(1, 0, 7), (2, 3, 9)] {
            let op = Operation::Increment(Increment {
                collection: "daily".into(),
                key: vec![Value::Date(day)],
                fields: vec![FieldValue { name: "count".into(), value: Value::Integer(1) }],
            });
            changes.apply_at(&spec, Some(At { partition, offset }), &[op]).unwrap();
        }
        (spec, changes)
    }

    fn item(status: u16, error: Option<Json_>) -> Json_ {
        let mut result = json!({"_index": "projector-daily-s", "_id": "x", "status": status});
        if let Some(error) = error {
            result["error"] = error;
        }
        json!({"update": result})
    }

    #[tokio::test]
    async fn an_item_refused_with_429_is_sent_again_alone() {
        let script = Script::default();
        let rejected = json!({"type": "es_rejected_execution_exception", "reason": "rejected execution of coordinating operation"});
        script.answers.lock().unwrap().extend([
            (200, json!({"took": 3, "errors": true, "items": [item(200, None), item(429, Some(rejected))]})),
            (200, json!({"took": 1, "errors": false, "items": [item(200, None)]})),
        ]);
        let engine = engine(&script, 3).await;
        let (spec, changes) = batch();
        engine.apply("s", &spec, &changes, &[]).await.unwrap();
        let received = script.received.lock().unwrap().clone();
        assert_eq!(received.len(), 2);
        let actions = bulk::actions(engine.config(), "s", &spec, &changes, &HashSet::new()).unwrap();
        assert_eq!(received[0], format!("{}{}", actions[0].lines, actions[1].lines));
        assert_eq!(received[1], actions[1].lines, "only the refused document is sent again");
    }

    #[tokio::test]
    async fn items_still_overloaded_after_every_attempt_fail_the_batch_as_transient() {
        let script = Script::default();
        let unavailable = json!({"type": "unavailable_shards_exception", "reason": "primary shard is not active"});
        let first = [item(503, Some(unavailable.clone())), item(200, None)];
        let again = [item(503, Some(unavailable))];
        script.answers.lock().unwrap().extend([
            (200, json!({"took": 1, "errors": true, "items": first})),
            (200, json!({"took": 1, "errors": true, "items": again})),
        ]);
        let engine = engine(&script, 2).await;
        let (spec, changes) = batch();
        let error = engine.apply("s", &spec, &changes, &[]).await.unwrap_err();
        assert!(error.is_transient(), "{error}");
        assert!(error.to_string().contains("1 documents still refused after 2 attempts"), "{error}");
    }

    #[tokio::test]
    async fn a_mapping_error_names_the_document_and_the_engines_reason() {
        let script = Script::default();
        // As Elasticsearch 8 answers a value its mapping cannot take.
        let refused = json!({"type": "document_parsing_exception", "reason": "[1:12] failed to parse field [count] of type [long] in document with id '1970-01-02'",
            "caused_by": {"type": "illegal_argument_exception", "reason": "For input string: \"x\""}});
        script
            .answers
            .lock()
            .unwrap()
            .push((200, json!({"took": 1, "errors": true, "items": [item(400, Some(refused)), item(200, None)]})));
        let engine = engine(&script, 3).await;
        let (spec, changes) = batch();
        let error = engine.apply("s", &spec, &changes, &[]).await.unwrap_err();
        assert!(!error.is_transient());
        assert_eq!(
            error.to_string(),
            "database error: the search engine refused document `1970-01-02`: document_parsing_exception: [1:12] failed to parse field [count] of type [long] in document with id '1970-01-02' (For input string: \"x\")"
        );
    }

    /// The `Authorization` header each configured credential sends (Elasticsearch's basic and
    /// API key schemes), seen by a local server.
    #[tokio::test]
    async fn credentials_reach_the_engine_as_configured() {
        async fn seen(headers: axum::http::HeaderMap, State(log): State<Arc<Mutex<Vec<String>>>>) -> Json<Json_> {
            let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
            log.lock().unwrap().push(auth);
            Json(json!({"acknowledged": true}))
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().route("/_scripts/{id}", axum::routing::put(seen)).with_state(log.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let basic = ElasticsearchConfig {
            urls: vec![url.clone()],
            username: Some("projector".into()),
            password: Some("s3cret".into()),
            ..Default::default()
        };
        let key = ElasticsearchConfig {
            urls: vec![url],
            api_key: Some("VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==".into()),
            ..Default::default()
        };
        Engine::new(&basic).unwrap().install_script().await.unwrap();
        Engine::new(&key).unwrap().install_script().await.unwrap();
        assert_eq!(
            *log.lock().unwrap(),
            [
                "Basic cHJvamVjdG9yOnMzY3JldA==".to_string(),
                "ApiKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==".to_string()
            ]
        );
    }

    #[test]
    fn a_certificate_authority_that_cannot_be_used_is_refused_at_start() {
        let with_ca = |path: &std::path::Path| ElasticsearchConfig {
            urls: vec!["https://es.example:9200".into()],
            ca_cert: Some(path.to_path_buf()),
            ..Default::default()
        };
        let missing = Engine::new(&with_ca(std::path::Path::new("/nonexistent/ca.pem"))).err().unwrap().to_string();
        assert!(missing.starts_with("elasticsearch.ca_cert: cannot read /nonexistent/ca.pem"), "{missing}");
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "not a certificate").unwrap();
        let garbage = Engine::new(&with_ca(file.path())).err().unwrap().to_string();
        assert!(garbage.contains("is not PEM certificates"), "{garbage}");
    }

    #[tokio::test]
    async fn an_overloaded_cluster_answering_429_to_the_whole_request_is_retried() {
        let script = Script::default();
        let whole = json!({"error": {"type": "circuit_breaking_exception", "reason": "[parent] Data too large"}, "status": 429});
        script.answers.lock().unwrap().extend([
            (429, whole),
            (200, json!({"took": 1, "errors": false, "items": [item(200, None), item(200, None)]})),
        ]);
        let engine = engine(&script, 3).await;
        let (spec, changes) = batch();
        engine.apply("s", &spec, &changes, &[]).await.unwrap();
        let received = script.received.lock().unwrap().clone();
        assert_eq!(received.len(), 2);
        assert_eq!(received[0], received[1], "the whole request again");
    }
}
