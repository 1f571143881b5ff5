//! The PostgreSQL sink: storage derived from declarations and exactly-once batch writes.
//!
//! Invariant: DDL and registry changes run under one transaction-scoped advisory lock, so
//! several hosts starting together never race on `CREATE` statements or on which version of
//! a projection is live.

pub mod ddl;
pub mod letters;
mod write;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

pub use write::{is_transient, BatchWriter, PartitionProgress, SinkError};

use crate::config::PostgresConfig;

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
