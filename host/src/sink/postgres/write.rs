//! Applying one batch: read-model rows, per-key state and offsets in one transaction.
//!
//! Invariants:
//! - Exactly-once: a batch's row changes, state writes and next offsets commit together or
//!   not at all, so after any crash the stored offsets say exactly which events are applied.
//! - Fencing: a partition's offset row only advances from the offset the batch started at.
//!   A stale owner (one that lost the partition in a rebalance it has not seen yet) fails
//!   with [`SinkError::Fenced`] and its whole transaction rolls back.
//! - Writes are set-based: one statement per collection and row shape (`jsonb_populate_recordset`
//!   turns a JSON array into typed rows), never one statement per row. Rows are sorted by key.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value as Json};
use sqlx::postgres::PgPool;
use sqlx::types::Json as SqlJson;
use sqlx::{Postgres, Row, Transaction};

use super::ddl::{ident, qualified};
use super::encode::{amount_json, cell_json, key_json};
use super::letters;
use crate::changeset::{Changeset, FieldChange, Key, RowChange};
use crate::contract::{Collection, Event, FieldType};
use crate::sink::{Letter, PartitionProgress, SinkError};
use crate::spec::{CollectionInfo, Spec};

impl From<sqlx::Error> for SinkError {
    fn from(error: sqlx::Error) -> Self {
        SinkError::Database {
            message: error.to_string(),
            transient: is_transient(&error),
            by_data: refused_value(&error),
        }
    }
}

/// Whether the database refused a value (a data exception, a constraint, a value too large
/// for an index): something one event produced, not the database's state.
fn refused_value(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|code| code.starts_with("22") || code.starts_with("23") || code == "54000")
        }
        _ => false,
    }
}

/// Whether a database error is worth retrying.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") // connection exception
                || code.starts_with("53") // insufficient resources
                || code.starts_with("57P") // admin shutdown, crash shutdown, cannot connect now
                || code == "25P03" // idle-in-transaction timeout: this session was frozen
                || code == "40001" // serialization failure
                || code == "40P01" // deadlock detected
        }),
        _ => false,
    }
}

/// Writes one projection version's batches.
#[derive(Clone)]
pub struct BatchWriter {
    pool: PgPool,
    schema: String,
}

impl BatchWriter {
    /// A writer for the tables in `schema`.
    pub fn new(pool: PgPool, schema: &str) -> Self {
        Self { pool, schema: schema.to_string() }
    }

    /// Moves a partition's stored next offset from `from` to `to` without applying anything
    /// (an accepted offset jump); false when it was not at `from` any more.
    pub async fn move_offset(&self, partition: i32, from: i64, to: i64) -> Result<bool, sqlx::Error> {
        let moved = sqlx::query(&format!(
            "UPDATE {} SET next_offset = $3, updated_at = now() WHERE partition = $1 AND next_offset = $2",
            qualified(&self.schema, "_offsets")
        ))
        .bind(partition)
        .bind(from)
        .bind(to)
        .execute(&self.pool)
        .await?;
        Ok(moved.rows_affected() == 1)
    }

    /// The stored next offset of every partition that has one.
    pub async fn offsets(&self) -> Result<HashMap<i32, i64>, sqlx::Error> {
        let rows = sqlx::query(&format!("SELECT partition, next_offset FROM {}", qualified(&self.schema, "_offsets")))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| (r.get::<i32, _>(0), r.get::<i64, _>(1))).collect())
    }

    /// The stored state of `keys`, with `None` for keys without state.
    pub async fn load_state(&self, keys: &[String]) -> Result<HashMap<String, Option<Vec<u8>>>, sqlx::Error> {
        let mut found: HashMap<String, Option<Vec<u8>>> = keys.iter().map(|k| (k.clone(), None)).collect();
        if keys.is_empty() {
            return Ok(found);
        }
        // A key with a NUL character cannot be stored, so it has no state.
        let storable: Vec<&str> = keys.iter().map(String::as_str).filter(|k| !k.contains('\0')).collect();
        let rows =
            sqlx::query(&format!("SELECT key, value FROM {} WHERE key = ANY($1)", qualified(&self.schema, "_state")))
                .bind(&storable)
                .fetch_all(&self.pool)
                .await?;
        for row in rows {
            found.insert(row.get(0), Some(row.get(1)));
        }
        Ok(found)
    }

    /// The stored state of one key.
    pub async fn load_one(&self, key: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        if key.contains('\0') {
            return Ok(None);
        }
        sqlx::query_scalar(&format!("SELECT value FROM {} WHERE key = $1", qualified(&self.schema, "_state")))
            .bind(key)
            .fetch_optional(&self.pool)
            .await
    }

    /// Applies a batch: offsets (fenced), dead letters, state, then rows, in one transaction.
    pub async fn commit(
        &self,
        spec: &Spec,
        changes: &Changeset,
        state: &HashMap<String, Option<Vec<u8>>>,
        progress: &[PartitionProgress],
        letters: &[Letter<'_>],
    ) -> Result<(), SinkError> {
        self.write(spec, changes, state, progress, letters, true).await
    }

    /// Creates the dead-letter table of a deployment made before there was one.
    pub async fn ensure_dead_letters(&self) -> Result<(), sqlx::Error> {
        sqlx::query(&super::ddl::dead_letters(&self.schema)).execute(&self.pool).await?;
        Ok(())
    }

    /// Whether an operator skipped the event at `partition`/`offset` (see
    /// [`super::letters::note_skip`]) and it was not read since.
    pub async fn skip_noted(&self, partition: i32, offset: i64) -> Result<bool, sqlx::Error> {
        letters::skip_noted(&self.pool, &self.schema, partition, offset).await
    }

    /// Dead letters of `partitions` whose re-drive was requested, as events of `topic`.
    pub async fn redrives(&self, topic: &str, partitions: &[i32], limit: i64) -> Result<Vec<Event>, sqlx::Error> {
        letters::requested(&self.pool, &self.schema, topic, partitions, limit).await
    }

    /// Writes a batch as [`BatchWriter::commit`] does, then rolls it back: whether the
    /// database would accept it.
    pub async fn probe(
        &self,
        spec: &Spec,
        changes: &Changeset,
        state: &HashMap<String, Option<Vec<u8>>>,
        progress: &[PartitionProgress],
    ) -> Result<(), SinkError> {
        self.write(spec, changes, state, progress, &[], false).await
    }

    async fn write(
        &self,
        spec: &Spec,
        changes: &Changeset,
        state: &HashMap<String, Option<Vec<u8>>>,
        progress: &[PartitionProgress],
        letters: &[Letter<'_>],
        keep: bool,
    ) -> Result<(), SinkError> {
        let mut tx = self.pool.begin().await?;
        // Offsets first: a stale owner is stopped before it does any work, and the offset
        // row locks serialize two owners of one partition.
        for p in progress {
            advance_offset(&mut tx, &self.schema, p).await?;
        }
        letters::write(&mut tx, &self.schema, letters).await?;
        write_state(&mut tx, &self.schema, state).await?;
        for ((collection, info), rows) in spec.collections().zip(changes.tables()) {
            if !rows.is_empty() && collection.sink == crate::contract::Sink::Postgres {
                write_rows(&mut tx, &self.schema, collection, info, rows).await?;
            }
        }
        if keep {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(())
    }
}

async fn advance_offset(
    tx: &mut Transaction<'_, Postgres>,
    schema: &str,
    p: &PartitionProgress,
) -> Result<(), SinkError> {
    let table = qualified(schema, "_offsets");
    let last_event_at = p.last_event_ms.and_then(chrono::DateTime::from_timestamp_millis);
    let result = match p.expected {
        Some(expected) => {
            sqlx::query(&format!(
                "UPDATE {table} SET next_offset = $2, last_event_at = COALESCE($3, last_event_at), \
                 updated_at = now() WHERE partition = $1 AND next_offset = $4"
            ))
            .bind(p.partition)
            .bind(p.next)
            .bind(last_event_at)
            .bind(expected)
            .execute(&mut **tx)
            .await?
        }
        None => {
            sqlx::query(&format!(
                "INSERT INTO {table} (partition, next_offset, last_event_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (partition) DO NOTHING"
            ))
            .bind(p.partition)
            .bind(p.next)
            .bind(last_event_at)
            .execute(&mut **tx)
            .await?
        }
    };
    if result.rows_affected() == 1 {
        Ok(())
    } else {
        Err(SinkError::Fenced { partition: p.partition })
    }
}

async fn write_state(
    tx: &mut Transaction<'_, Postgres>,
    schema: &str,
    state: &HashMap<String, Option<Vec<u8>>>,
) -> Result<(), sqlx::Error> {
    let table = qualified(schema, "_state");
    let mut sorted: Vec<(&String, &Option<Vec<u8>>)> = state.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let (mut keys, mut values, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    for (key, value) in sorted {
        match value {
            Some(value) => {
                keys.push(key.as_str());
                values.push(value.as_slice());
            }
            None => removed.push(key.as_str()),
        }
    }
    if !keys.is_empty() {
        sqlx::query(&format!(
            "INSERT INTO {table} (key, value) SELECT * FROM UNNEST($1::text[], $2::bytea[]) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
        ))
        .bind(&keys)
        .bind(&values)
        .execute(&mut **tx)
        .await?;
    }
    if !removed.is_empty() {
        sqlx::query(&format!("DELETE FROM {table} WHERE key = ANY($1)")).bind(&removed).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Which fields a row writes and how: rows of one shape share one statement.
type Shape = Vec<(usize, bool)>;

async fn write_rows(
    tx: &mut Transaction<'_, Postgres>,
    schema: &str,
    collection: &Collection,
    info: &CollectionInfo,
    rows: &BTreeMap<Key, RowChange>,
) -> Result<(), sqlx::Error> {
    let table = qualified(schema, &collection.name);
    let key_object = |key: &Key| -> Map<String, Json> {
        info.primary_key
            .iter()
            .zip(key)
            .map(|(&position, part)| (collection.fields[position].name.clone(), key_json(part)))
            .collect()
    };

    let deletes: Vec<Json> =
        rows.iter().filter(|(_, r)| r.delete_first).map(|(k, _)| Json::Object(key_object(k))).collect();
    if !deletes.is_empty() {
        let matches: Vec<String> = collection.primary_key.iter().map(|k| format!("t.{0} = r.{0}", ident(k))).collect();
        sqlx::query(&format!(
            "DELETE FROM {table} AS t USING jsonb_populate_recordset(NULL::{table}, $1) AS r WHERE {}",
            matches.join(" AND ")
        ))
        .bind(SqlJson(Json::Array(deletes)))
        .execute(&mut **tx)
        .await?;
    }

    let mut shapes: BTreeMap<Shape, Vec<Json>> = BTreeMap::new();
    for (key, row) in rows {
        let Some(write) = &row.write else { continue };
        let shape: Shape = write.iter().map(|(&p, c)| (p, matches!(c, FieldChange::Add(_)))).collect();
        let mut object = key_object(key);
        for (&position, change) in write {
            let value = match change {
                FieldChange::Set(cell) => cell_json(cell),
                FieldChange::Add(amount) => amount_json(amount),
            };
            object.insert(collection.fields[position].name.clone(), value);
        }
        shapes.entry(shape).or_default().push(Json::Object(object));
    }
    for (shape, objects) in shapes {
        sqlx::query(&upsert_sql(&table, collection, &shape))
            .bind(SqlJson(Json::Array(objects)))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// `INSERT ... SELECT FROM jsonb_populate_recordset ... ON CONFLICT DO UPDATE` for one shape:
/// set fields take the new value, added fields add to the stored one.
fn upsert_sql(table: &str, collection: &Collection, shape: &Shape) -> String {
    let key: Vec<String> = collection.primary_key.iter().map(|k| ident(k)).collect();
    let mut columns = key.clone();
    let mut selected: Vec<String> = key.iter().map(|k| format!("r.{k}")).collect();
    let mut updates = Vec::new();
    for &(position, is_add) in shape {
        let field = &collection.fields[position];
        let column = ident(&field.name);
        columns.push(column.clone());
        let is_json = field.type_ == FieldType::Json;
        selected.push(if is_add && is_json {
            format!("projector.jsonb_add(NULL, r.{column})")
        } else {
            format!("r.{column}")
        });
        updates.push(match (is_add, is_json) {
            (false, _) => format!("{column} = EXCLUDED.{column}"),
            (true, true) => {
                format!("{column} = projector.jsonb_add(t.{column}, EXCLUDED.{column})")
            }
            (true, false) => format!("{column} = COALESCE(t.{column}, 0) + EXCLUDED.{column}"),
        });
    }
    let conflict =
        if updates.is_empty() { "DO NOTHING".to_string() } else { format!("DO UPDATE SET {}", updates.join(", ")) };
    format!(
        "INSERT INTO {table} AS t ({}) SELECT {} FROM jsonb_populate_recordset(NULL::{table}, $1) AS r \
         ON CONFLICT ({}) {conflict}",
        columns.join(", "),
        selected.join(", "),
        key.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::stats_spec;

    #[test]
    fn upserts_set_or_add_per_field() {
        let spec = Spec::new(stats_spec()).unwrap();
        let (collection, _) = spec.collection("daily").unwrap();
        let sql = upsert_sql("\"s\".\"daily\"", collection, &vec![(1, true), (2, false), (4, true)]);
        assert_eq!(
            sql,
            "INSERT INTO \"s\".\"daily\" AS t (\"day\", \"count\", \"revenue\", \"by_status\") \
             SELECT r.\"day\", r.\"count\", r.\"revenue\", projector.jsonb_add(NULL, r.\"by_status\") \
             FROM jsonb_populate_recordset(NULL::\"s\".\"daily\", $1) AS r ON CONFLICT (\"day\") DO UPDATE SET \
             \"count\" = COALESCE(t.\"count\", 0) + EXCLUDED.\"count\", \"revenue\" = EXCLUDED.\"revenue\", \
             \"by_status\" = projector.jsonb_add(t.\"by_status\", EXCLUDED.\"by_status\")"
        );
        assert!(upsert_sql("t", collection, &vec![]).ends_with("ON CONFLICT (\"day\") DO NOTHING"));
    }
}
