//! The PostgreSQL sink: storage derived from declarations and exactly-once batch writes.
//!
//! Invariant: DDL and registry changes run under one transaction-scoped advisory lock, so
//! several hosts starting together never race on `CREATE` statements or on which version of
//! a projection is live.

pub mod ddl;
pub(crate) mod encode;
pub mod letters;
mod write;

use std::collections::HashMap;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

pub use write::{is_transient, BatchWriter};

use crate::changeset::Changeset;
use crate::config::PostgresConfig;
use crate::contract::Event;
use crate::sink::elastic::Engine;
use crate::sink::{Letter, PartitionProgress, Sink, SinkError, State};
use crate::spec::Spec;

/// Key of the advisory lock serializing DDL and registry changes (shared with the registry).
const DDL_LOCK: i64 = 0x7072_6f6a_6563_746f; // "projecto"

/// A connection pool with the host's schema in place.
#[derive(Clone)]
pub struct Database {
    pool: PgPool,
}

impl Database {
    /// Connects (retrying for up to `wait` while the server is unreachable) and creates the
    /// host's own schema objects.
    pub async fn connect(config: &PostgresConfig, wait: Duration) -> anyhow::Result<Self> {
        let mut options: PgConnectOptions = config.url.parse()?;
        if config.idle_in_transaction_timeout_ms > 0 {
            let timeout = format!("{}ms", config.idle_in_transaction_timeout_ms);
            options = options.options([("idle_in_transaction_session_timeout", timeout)]);
        }
        let started = std::time::Instant::now();
        let pool = loop {
            match PgPoolOptions::new()
                .max_connections(config.max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options.clone())
                .await
            {
                Ok(pool) => break pool,
                Err(e) if is_transient(&e) && started.elapsed() < wait => {
                    tracing::warn!(error = %e, "PostgreSQL not reachable yet; retrying.");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(anyhow::anyhow!("cannot connect to PostgreSQL: {e}")),
            }
        };
        let database = Self { pool };
        let mut tx = database.locked().await?;
        for statement in ddl::BOOTSTRAP {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(database)
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A batch writer for a deployment's schema.
    pub fn writer(&self, schema: &str) -> BatchWriter {
        BatchWriter::new(self.pool.clone(), schema)
    }

    async fn locked(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(DDL_LOCK).execute(&mut *tx).await?;
        Ok(tx)
    }
}

/// A deployment's schema as the pipeline's [`Sink`]: each call blocks on `handle`. With a
/// search engine, the collections placed there are written to its indices first, and the
/// batch's offsets (with everything PostgreSQL holds) only once every document succeeded.
#[derive(Clone)]
pub struct PgSink {
    writer: BatchWriter,
    handle: tokio::runtime::Handle,
    schema: String,
    search: Option<Engine>,
}

impl PgSink {
    /// The sink of `schema`, running its queries on `handle`.
    pub fn new(database: &Database, schema: &str, handle: tokio::runtime::Handle) -> Self {
        Self { writer: database.writer(schema), handle, schema: schema.to_string(), search: None }
    }

    /// The same sink, writing the search-engine collections through `engine`.
    pub fn with_search(mut self, engine: Option<Engine>) -> Self {
        self.search = engine;
        self
    }

    fn run<T, E: Into<SinkError>>(
        &self,
        call: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, SinkError> {
        self.handle.block_on(call).map_err(Into::into)
    }
}

impl Sink for PgSink {
    fn ensure_dead_letters(&self) -> Result<(), SinkError> {
        self.run(self.writer.ensure_dead_letters())
    }

    fn offsets(&self) -> Result<HashMap<i32, i64>, SinkError> {
        self.run(self.writer.offsets())
    }

    fn move_offset(&self, partition: i32, from: i64, to: i64) -> Result<bool, SinkError> {
        self.run(self.writer.move_offset(partition, from, to))
    }

    fn load_state(&self, keys: &[String]) -> Result<State, SinkError> {
        self.run(self.writer.load_state(keys))
    }

    fn load_one(&self, key: &str) -> Result<Option<Vec<u8>>, SinkError> {
        self.run(self.writer.load_one(key))
    }

    fn commit(
        &self,
        spec: &Spec,
        changes: &Changeset,
        state: &State,
        progress: &[PartitionProgress],
        letters: &[Letter<'_>],
    ) -> Result<(), SinkError> {
        if let Some(engine) = &self.search {
            self.run(engine.apply(&self.schema, spec, changes, letters))?;
        }
        self.run(self.writer.commit(spec, changes, state, progress, letters))
    }

    fn probe(
        &self,
        spec: &Spec,
        changes: &Changeset,
        state: &State,
        progress: &[PartitionProgress],
    ) -> Result<(), SinkError> {
        if let Some(engine) = &self.search {
            engine.check(&self.schema, spec, changes)?;
        }
        self.run(self.writer.probe(spec, changes, state, progress))
    }

    fn skip_noted(&self, partition: i32, offset: i64) -> Result<bool, SinkError> {
        self.run(self.writer.skip_noted(partition, offset))
    }

    fn redrives(&self, topic: &str, partitions: &[i32], limit: i64) -> Result<Vec<Event>, SinkError> {
        self.run(self.writer.redrives(topic, partitions, limit))
    }
}
