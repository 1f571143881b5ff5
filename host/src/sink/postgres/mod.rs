//! The PostgreSQL sink: storage derived from declarations, the projection registry, and
//! exactly-once batch writes.
//!
//! Invariant: DDL and registry changes run under one transaction-scoped advisory lock, so
//! several hosts starting together never race on `CREATE` statements or on which version of
//! a projection is live.

pub mod ddl;
mod write;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};

pub use write::{is_transient, BatchWriter, PartitionProgress, SinkError};

use crate::config::PostgresConfig;
use crate::runtime::types::ProjectionSpec;
use crate::spec::Spec;

/// Key of the advisory lock serializing DDL and registry changes.
const DDL_LOCK: i64 = 0x7072_6f6a_6563_746f; // "projecto"

/// Why a projection version could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The same name and version was installed before with a different declaration.
    #[error("{name} v{version} is already installed with a different declaration; bump the version to change collections or fields")]
    SpecChanged { name: String, version: u32 },
    /// A collection name is already served by another projection.
    #[error("collection `{collection}` of {name} is already served by projection {owner}")]
    CollectionTaken {
        name: String,
        collection: String,
        owner: String,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// A connection pool with the host's schema in place.
#[derive(Clone)]
pub struct Database {
    pool: PgPool,
}

impl Database {
    /// Connects (retrying for up to `wait` while the server is unreachable) and creates the
    /// host's own schema objects.
    pub async fn connect(config: &PostgresConfig, wait: Duration) -> anyhow::Result<Self> {
        let options: PgConnectOptions = config.url.parse()?;
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

    /// A batch writer for a projection version.
    pub fn writer(&self, spec: &Spec) -> BatchWriter {
        BatchWriter::new(self.pool.clone(), spec)
    }

    async fn locked(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(DDL_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// Registers a projection version, creates its storage if missing and makes it the live
    /// version behind the public views. Idempotent: a restart finds everything in place and
    /// resumes from the stored offsets.
    pub async fn install(&self, spec: &Spec, sha256: &str) -> Result<(), InstallError> {
        let (name, version) = (spec.name(), spec.version());
        let mut tx = self.locked().await?;
        let existing = sqlx::query(
            "SELECT spec, sha256 FROM projector.projection_versions WHERE name = $1 AND version = $2",
        )
        .bind(name)
        .bind(version as i32)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            let stored: sqlx::types::Json<ProjectionSpec> = row.get(0);
            if stored.0 != *spec.raw() {
                return Err(InstallError::SpecChanged {
                    name: name.into(),
                    version,
                });
            }
            let stored_sha: String = row.get(1);
            if stored_sha != sha256 {
                tracing::warn!(projection = %name, version, "Plugin code changed without a version bump; continuing from the stored offsets without a rebuild.");
            }
        }
        self.check_collections_free(&mut tx, spec).await?;
        sqlx::query(
            "INSERT INTO projector.projection_versions (name, version, sha256, spec, schema_name, status) \
             VALUES ($1, $2, $3, $4, $5, 'live') \
             ON CONFLICT (name, version) DO UPDATE SET sha256 = EXCLUDED.sha256, status = 'live', \
             last_error = NULL, updated_at = now()",
        )
        .bind(name)
        .bind(version as i32)
        .bind(sha256)
        .bind(sqlx::types::Json(spec.raw()))
        .bind(spec.schema_name())
        .execute(&mut *tx)
        .await?;
        for statement in ddl::create_storage(spec)
            .iter()
            .chain(&ddl::publish_views(spec))
        {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        sqlx::query(
            "INSERT INTO projector.projections (name, live_version) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET live_version = EXCLUDED.live_version",
        )
        .bind(name)
        .bind(version as i32)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn check_collections_free(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        spec: &Spec,
    ) -> Result<(), InstallError> {
        let rows = sqlx::query(
            "SELECT v.name, c.value->>'name' FROM projector.projections p \
             JOIN projector.projection_versions v ON v.name = p.name AND v.version = p.live_version \
             CROSS JOIN LATERAL jsonb_array_elements(v.spec->'collections') AS c \
             WHERE p.name <> $1",
        )
        .bind(spec.name())
        .fetch_all(&mut **tx)
        .await?;
        for row in rows {
            let (owner, collection): (String, String) = (row.get(0), row.get(1));
            if spec.collection(&collection).is_some() {
                return Err(InstallError::CollectionTaken {
                    name: spec.name().into(),
                    collection,
                    owner,
                });
            }
        }
        Ok(())
    }

    /// Records a projection version's status and last error, for operators.
    pub async fn set_status(
        &self,
        spec: &Spec,
        status: &str,
        last_error: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE projector.projection_versions SET status = $3, last_error = $4, updated_at = now() \
             WHERE name = $1 AND version = $2",
        )
        .bind(spec.name())
        .bind(spec.version() as i32)
        .bind(status)
        .bind(last_error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
