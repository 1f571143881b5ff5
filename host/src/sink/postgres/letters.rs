//! Dead letters: events a deployment moved past without applying them, kept in its schema's
//! `_dead_letters` table (see [`super::ddl::dead_letters`]).
//!
//! Invariants:
//! - A dead letter is written in the transaction that moves the partition's offset past its
//!   event, so an event is either applied, or dead-lettered, never both and never neither.
//! - A re-driven dead letter is marked in the transaction that applies its effects, and only
//!   if it was not marked already: re-driving applies it once, however often it is requested.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Row, Transaction};
use utoipa::ToSchema;

use super::ddl::qualified;
use crate::contract::{Event, Header};
use crate::sink::{Build, Letter, SinkError};

/// Text PostgreSQL can store: NUL characters are replaced.
pub fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}").into()
    } else {
        text.into()
    }
}

/// Writes `letters` in the batch's transaction. A re-drive of a letter already re-driven (by
/// another consumer of its partition) fails the batch as fenced.
pub(super) async fn write(
    tx: &mut Transaction<'_, Postgres>,
    schema: &str,
    letters: &[Letter<'_>],
) -> Result<(), SinkError> {
    let table = qualified(schema, "_dead_letters");
    for letter in letters {
        match letter {
            Letter::Record { event, error, reason, build } => {
                let (keys, values): (Vec<&[u8]>, Vec<Option<&[u8]>>) =
                    event.headers.iter().map(|h| (h.key.as_bytes(), h.value.as_deref())).unzip();
                // A skip was noted by an operator before the event was read again: the note
                // keeps its reason and author and gains the event.
                sqlx::query(&format!(
                    r#"INSERT INTO {table} (partition, "offset", event_recorded, key, value, header_keys, header_values,
                         timestamp_ms, error, reason, sha256, version, build)
                       VALUES ($1, $2, true, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                       ON CONFLICT (partition, "offset") DO UPDATE SET event_recorded = true, key = EXCLUDED.key,
                         value = EXCLUDED.value, header_keys = EXCLUDED.header_keys, header_values = EXCLUDED.header_values,
                         timestamp_ms = EXCLUDED.timestamp_ms, error = EXCLUDED.error, sha256 = EXCLUDED.sha256,
                         version = EXCLUDED.version, build = EXCLUDED.build"#
                ))
                .bind(event.partition)
                .bind(event.offset)
                .bind(event.key.as_deref())
                .bind(event.value.as_deref())
                .bind(&keys)
                .bind(&values)
                .bind(event.timestamp_ms)
                .bind(storable(error).as_ref())
                .bind(reason.as_str())
                .bind(&build.sha256)
                .bind(build.version as i32)
                .bind(build.build as i32)
                .execute(&mut **tx)
                .await?;
            }
            Letter::Redriven { partition, offset, sha256 } => {
                let marked = sqlx::query(&format!(
                    r#"UPDATE {table} SET redriven_at = now(), redriven_sha256 = $3, redrive_requested_at = NULL,
                         attempts = attempts + 1, last_redrive_error = NULL
                       WHERE partition = $1 AND "offset" = $2 AND redriven_at IS NULL"#
                ))
                .bind(partition)
                .bind(offset)
                .bind(sha256)
                .execute(&mut **tx)
                .await?;
                if marked.rows_affected() != 1 {
                    return Err(SinkError::Fenced { partition: *partition });
                }
            }
            Letter::Refused { partition, offset, error } => {
                sqlx::query(&format!(
                    r#"UPDATE {table} SET redrive_requested_at = NULL, attempts = attempts + 1, last_redrive_error = $3
                       WHERE partition = $1 AND "offset" = $2 AND redriven_at IS NULL"#
                ))
                .bind(partition)
                .bind(offset)
                .bind(storable(error).as_ref())
                .execute(&mut **tx)
                .await?;
            }
        }
    }
    Ok(())
}

/// Whether an operator skipped the event at `partition`/`offset` and it was not read since.
pub(super) async fn skip_noted(pool: &PgPool, schema: &str, partition: i32, offset: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(&format!(
        r#"SELECT EXISTS (SELECT 1 FROM {} WHERE partition = $1 AND "offset" = $2 AND reason = 'skipped' AND NOT event_recorded)"#,
        qualified(schema, "_dead_letters")
    ))
    .bind(partition)
    .bind(offset)
    .fetch_one(pool)
    .await
}

/// Up to `limit` dead letters of `partitions` whose re-drive was requested, in offset order
/// per partition (the order of each key's events), as events of `topic`.
pub(super) async fn requested(
    pool: &PgPool,
    schema: &str,
    topic: &str,
    partitions: &[i32],
    limit: i64,
) -> Result<Vec<Event>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        r#"SELECT partition, "offset", key, value, header_keys, header_values, timestamp_ms FROM {}
           WHERE redrive_requested_at IS NOT NULL AND redriven_at IS NULL AND event_recorded
             AND partition = ANY($1)
           ORDER BY partition, "offset" LIMIT $2"#,
        qualified(schema, "_dead_letters")
    ))
    .bind(partitions)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let keys: Vec<Vec<u8>> = row.get(4);
            let values: Vec<Option<Vec<u8>>> = row.get(5);
            Event {
                topic: topic.to_string(),
                partition: row.get(0),
                offset: row.get(1),
                key: row.get(2),
                value: row.get(3),
                headers: keys
                    .into_iter()
                    .zip(values)
                    .map(|(key, value)| Header { key: String::from_utf8_lossy(&key).into_owned(), value })
                    .collect(),
                timestamp_ms: row.get(6),
            }
        })
        .collect())
}

/// Notes an operator's skip of the event at `partition`/`offset`: the deployment, once
/// running again, moves past that event when it fails there again, and records it.
pub async fn note_skip(
    tx: &mut Transaction<'_, Postgres>,
    schema: &str,
    at: (i32, i64),
    error: &str,
    build: &Build,
    by: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&super::ddl::dead_letters(schema)).execute(&mut **tx).await?;
    sqlx::query(&format!(
        r#"INSERT INTO {} (partition, "offset", event_recorded, error, reason, sha256, version, build, recorded_by)
           VALUES ($1, $2, false, $3, 'skipped', $4, $5, $6, $7)
           ON CONFLICT (partition, "offset") DO UPDATE SET recorded_by = EXCLUDED.recorded_by"#,
        qualified(schema, "_dead_letters")
    ))
    .bind(at.0)
    .bind(at.1)
    .bind(storable(error).as_ref())
    .bind(&build.sha256)
    .bind(build.version as i32)
    .bind(build.build as i32)
    .bind(by)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Requests a re-drive of the pending dead letters in `schema` (of one event, with `at`);
/// returns how many were requested.
pub async fn request_redrive(pool: &PgPool, schema: &str, at: Option<(i32, i64)>) -> Result<u64, sqlx::Error> {
    if !exists(pool, schema).await? {
        return Ok(0);
    }
    let requested = sqlx::query(&format!(
        r#"UPDATE {} SET redrive_requested_at = now()
           WHERE redriven_at IS NULL AND event_recorded AND ($1::integer IS NULL OR (partition = $1 AND "offset" = $2))"#,
        qualified(schema, "_dead_letters")
    ))
    .bind(at.map(|(p, _)| p))
    .bind(at.map(|(_, o)| o))
    .execute(pool)
    .await?;
    Ok(requested.rows_affected())
}

/// `(pending, re-driven)` dead letters in `schema`.
pub async fn counts(pool: &PgPool, schema: &str) -> Result<(i64, i64), sqlx::Error> {
    if !exists(pool, schema).await? {
        return Ok((0, 0));
    }
    sqlx::query_as(&format!(
        "SELECT count(*) FILTER (WHERE redriven_at IS NULL), count(*) FILTER (WHERE redriven_at IS NOT NULL) FROM {}",
        qualified(schema, "_dead_letters")
    ))
    .fetch_one(pool)
    .await
}

/// Up to `limit` dead letters in `schema` (only those not re-driven, with `pending`), as JSON:
/// coordinates, the event (key and value as text when they are UTF-8, else base64), the error,
/// who recorded it and how, and its re-drives.
pub async fn list(pool: &PgPool, schema: &str, pending: bool, limit: i64) -> Result<Vec<StoredLetter>, sqlx::Error> {
    if !exists(pool, schema).await? {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(&format!(
        r#"SELECT partition, "offset", event_recorded, key, value, header_keys, header_values, timestamp_ms, error,
             reason, sha256, version, build, recorded_by, recorded_at, redrive_requested_at, attempts,
             last_redrive_error, redriven_at, redriven_sha256
           FROM {} WHERE NOT $1 OR redriven_at IS NULL ORDER BY partition, "offset" LIMIT $2"#,
        qualified(schema, "_dead_letters")
    ))
    .bind(pending)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(stored_letter).collect())
}

/// A dead letter as stored, for the admin API.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StoredLetter {
    /// Partition of the event.
    pub partition: i32,
    /// Offset of the event.
    pub offset: i64,
    /// The event, where it was recorded (a skipped one is not).
    pub event: Option<LetterEvent>,
    /// The error it caused.
    pub error: String,
    /// `dead-letter` (the poison policy moved past it) or `skipped` (an operator did).
    pub reason: String,
    /// The build that recorded it.
    pub recorded_by_build: LetterBuild,
    /// The operator who skipped it, for `skipped`.
    pub recorded_by: Option<String>,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// When a re-drive was last requested.
    pub redrive_requested_at: Option<DateTime<Utc>>,
    /// Re-drives tried.
    pub attempts: i32,
    /// The error of the last failed re-drive.
    pub last_redrive_error: Option<String>,
    /// When a re-drive applied it.
    pub redriven_at: Option<DateTime<Utc>>,
    /// Hex sha256 of the build that applied it.
    pub redriven_by_sha256: Option<String>,
}

/// A dead-lettered event. Keys and values are text when they are UTF-8, else
/// `{"base64": ...}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LetterEvent {
    /// The record key.
    #[schema(value_type = Option<Object>)]
    pub key: Option<Json>,
    /// The record value.
    #[schema(value_type = Option<Object>)]
    pub value: Option<Json>,
    /// The record headers, in order.
    pub headers: Vec<LetterHeader>,
    /// The record timestamp, in milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
}

/// One record header of a dead-lettered event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LetterHeader {
    /// Header name.
    pub key: String,
    /// Header value (text, or `{"base64": ...}`).
    #[schema(value_type = Option<Object>)]
    pub value: Option<Json>,
}

/// The build that recorded a dead letter.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LetterBuild {
    /// Hex sha256 of its component.
    pub sha256: String,
    /// Declared version.
    pub version: i32,
    /// Build number of the version.
    pub build: i32,
}

fn stored_letter(row: &sqlx::postgres::PgRow) -> StoredLetter {
    let keys: Vec<Vec<u8>> = row.get(5);
    let values: Vec<Option<Vec<u8>>> = row.get(6);
    let headers = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| LetterHeader {
            key: String::from_utf8_lossy(k).into_owned(),
            value: v.as_deref().map(bytes_json),
        })
        .collect();
    let event = row.get::<bool, _>(2).then(|| LetterEvent {
        key: row.get::<Option<Vec<u8>>, _>(3).as_deref().map(bytes_json),
        value: row.get::<Option<Vec<u8>>, _>(4).as_deref().map(bytes_json),
        headers,
        timestamp_ms: row.get(7),
    });
    StoredLetter {
        partition: row.get(0),
        offset: row.get(1),
        event,
        error: row.get(8),
        reason: row.get(9),
        recorded_by_build: LetterBuild { sha256: row.get(10), version: row.get(11), build: row.get(12) },
        recorded_by: row.get(13),
        recorded_at: row.get(14),
        redrive_requested_at: row.get(15),
        attempts: row.get(16),
        last_redrive_error: row.get(17),
        redriven_at: row.get(18),
        redriven_by_sha256: row.get(19),
    }
}

/// Bytes as text when they are UTF-8, else `{"base64": ...}`.
fn bytes_json(bytes: &[u8]) -> Json {
    use base64::Engine as _;
    match std::str::from_utf8(bytes) {
        Ok(text) => Json::String(text.to_string()),
        Err(_) => json!({"base64": base64::engine::general_purpose::STANDARD.encode(bytes)}),
    }
}

async fn exists(pool: &PgPool, schema: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(qualified(schema, "_dead_letters"))
        .fetch_one(pool)
        .await
}
