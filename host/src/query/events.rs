//! `POST /events`: publish one order event to the topic (for demos, tests and tools; the real
//! write side publishes on its own) and answer where it landed, so the client can read its
//! own write with `?after=<partition>:<offset>`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::http_error::ApiError;
use crate::shared::Shared;
use crate::source::kafka::client_config;

/// One event to publish, in the `samples.jsonl` shape.
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct NewEvent {
    /// Record key: the order id.
    pub key: String,
    /// Record headers, e.g. `{"__TypeId__": "com.example.orders.events.OrderCreated"}`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The event, a JSON object.
    #[schema(value_type = Object)]
    pub value: Value,
}

/// Where a published event landed.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Published {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// The value to pass as `after` to see this event in reads.
    pub after: String,
}

/// `POST /events` (admin token).
#[utoipa::path(post, path = "/events", tag = "events", request_body = NewEvent,
    security(("bearer" = [])),
    responses((status = 201, description = "Published", body = Published),
              (status = 401, description = "No or unknown token"), (status = 403, description = "Read-only token")))]
pub(super) async fn publish(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Published>), ApiError> {
    // The token is checked before the body is even parsed.
    crate::admin::authorize_write(&shared, &headers)?;
    let event: NewEvent = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", format!("invalid event: {e}")))?;
    if !event.value.is_object() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", "value must be a JSON object"));
    }
    let producer = shared
        .producer
        .get_or_try_init(|| async { client_config(&shared.config.kafka).set("acks", "all").create::<FutureProducer>() })
        .await
        .map_err(ApiError::internal)?;
    let payload = event.value.to_string();
    let mut record_headers = OwnedHeaders::new();
    for (key, value) in &event.headers {
        record_headers = record_headers.insert(Header { key, value: Some(value.as_bytes()) });
    }
    let topic = &shared.config.kafka.topic;
    let record = FutureRecord::to(topic).key(&event.key).payload(&payload).headers(record_headers);
    let delivery = producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "publish_failed",
            format!("the broker did not take the event: {e}"),
        )
    })?;
    Ok((
        StatusCode::CREATED,
        Json(Published {
            topic: topic.clone(),
            partition: delivery.partition,
            offset: delivery.offset,
            after: format!("{}:{}", delivery.partition, delivery.offset),
        }),
    ))
}
