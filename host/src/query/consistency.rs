//! What a reader is told about freshness: the projection version that answered, its watermark
//! (next offset per partition), the time of its last applied event, its lag and whether that
//! makes the answer stale; and waiting for a given offset before answering (read-your-writes).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::http_error::ApiError;
use crate::registry::{Deployment, Status};
use crate::shared::Shared;
use crate::sink::postgres::ddl::qualified;

/// Freshness of an answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(super) struct Consistency {
    /// Projection that answered.
    pub projection: String,
    /// Its live version.
    pub version: u32,
    /// Next offset to apply, per partition: every event below it is in the answer.
    pub watermark: BTreeMap<i32, i64>,
    /// Time of the last event applied (from the broker's record timestamps).
    pub last_event_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Events in the topic not yet applied, when known.
    pub lag: Option<i64>,
    /// True when the lag is over the configured threshold.
    pub stale: bool,
    /// `live`, or `failed`: the projection stopped on an error and the answer comes from its
    /// last committed batch (the watermark says how far that is).
    pub status: String,
    /// Why it stopped, with the partition and offset when an event caused it.
    pub error: Option<String>,
}

async fn watermark(
    pool: &PgPool,
    schema: &str,
) -> Result<(BTreeMap<i32, i64>, Option<chrono::DateTime<chrono::Utc>>), sqlx::Error> {
    let rows: Vec<(i32, i64, Option<chrono::DateTime<chrono::Utc>>)> =
        sqlx::query_as(&format!("SELECT partition, next_offset, last_event_at FROM {}", qualified(schema, "_offsets")))
            .fetch_all(pool)
            .await?;
    let last = rows.iter().filter_map(|r| r.2).max();
    Ok((rows.into_iter().map(|r| (r.0, r.1)).collect(), last))
}

/// The freshness of `deployment` now.
pub(super) async fn consistency(shared: &Shared, deployment: &Deployment) -> Result<Consistency, ApiError> {
    let (watermark, last_event_at) = watermark(shared.database.pool(), &deployment.schema).await?;
    let lag = shared.board.get(deployment.id).map(|p| p.lag);
    Ok(Consistency {
        projection: deployment.name.clone(),
        version: deployment.version,
        watermark,
        last_event_at,
        lag,
        stale: lag.is_some_and(|l| l > shared.config.query.stale_lag),
        status: deployment.status.to_string(),
        error: failure(deployment),
    })
}

/// A failed deployment's error, with where it happened.
fn failure(deployment: &Deployment) -> Option<String> {
    if deployment.status != Status::Failed {
        return None;
    }
    let message = deployment.last_error.clone().unwrap_or_default();
    Some(match (deployment.error_partition, deployment.error_offset) {
        (Some(partition), Some(offset)) if !message.contains("partition") => {
            format!("at partition {partition} offset {offset}: {message}")
        }
        _ => message,
    })
}

/// Parses `after=<partition>:<offset>[,<partition>:<offset>...]`.
pub(super) fn parse_after(text: &str) -> Result<Vec<(i32, i64)>, ApiError> {
    text.split(',')
        .map(|part| {
            let (p, o) = part.split_once(':').ok_or(())?;
            Ok((p.trim().parse().map_err(|_| ())?, o.trim().parse().map_err(|_| ())?))
        })
        .collect::<Result<Vec<_>, ()>>()
        .map_err(|()| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                "after: expected <partition>:<offset>[,<partition>:<offset>...]",
            )
        })
}

/// Waits until every `(partition, offset)` of `after` is applied by `deployment` (its stored
/// next offset is past it), for at most `wait`; on timeout a 503 carrying the watermark.
pub(super) async fn wait_for(
    shared: &Shared,
    deployment: &Deployment,
    after: &[(i32, i64)],
    wait: Duration,
) -> Result<(), ApiError> {
    if let Some(error) = failure(deployment) {
        let details = serde_json::json!({"projection": deployment.name, "version": deployment.version, "error": error});
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "projection_failed",
            format!(
                "{} v{} stopped on an error and applies nothing more until it is fixed: {error}",
                deployment.name, deployment.version
            ),
        )
        .with_details(details));
    }
    let deadline = Instant::now() + wait;
    loop {
        let (watermark, _) = watermark(shared.database.pool(), &deployment.schema).await?;
        let applied = after.iter().all(|(p, o)| watermark.get(p).is_some_and(|next| next > o));
        if applied {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let positions: Vec<String> = watermark.iter().map(|(p, o)| format!("{p}:{o}")).collect();
            let details = serde_json::json!({"watermark": watermark, "projection": deployment.name, "version": deployment.version});
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_yet_applied",
                format!(
                    "{} v{} has not applied the requested offsets within {} ms; its watermark (next offset per partition) is {}",
                    deployment.name,
                    deployment.version,
                    wait.as_millis(),
                    if positions.is_empty() { "empty".to_string() } else { positions.join(",") }
                ),
            )
            .with_details(details));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
