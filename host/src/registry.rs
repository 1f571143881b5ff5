//! The projection registry in PostgreSQL: uploaded components and their deployments.
//!
//! A *deployment* is one build of one projection version: its component (by sha256), its
//! declaration, its schema and consumer group, and its status. `building` deployments catch up
//! from the start of the topic; at most one deployment per name is *serving* (its collections
//! are the public views): the `live` one, or the one that failed while live, which keeps
//! answering from its last committed batch until it is hot-swapped, rolled back or replaced.
//! The previous live one stays `standby` (still consuming) for an instant rollback. Every host instance reconciles against this table, so it is the single source of
//! truth for what runs where.
//!
//! Invariants:
//! - Every change runs in a transaction holding one advisory lock, and status changes are
//!   conditional updates (`WHERE status = 'building'`), so a promotion or rollback happens
//!   exactly once however many instances attempt it.
//! - A unique partial index allows one `live` deployment per name; views move in the same
//!   transaction as the status, so readers never see a half-swapped read model.
//! - Every change sends `NOTIFY projector_registry`, so other instances react within moments.

use std::fmt;

use serde::Serialize;
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Row, Transaction};

use crate::contract::{ProjectionSpec, StoredSpec};
use crate::sink::postgres::ddl;
use crate::spec::Spec;

/// The notification channel of registry changes.
pub const CHANNEL: &str = "projector_registry";

/// Key of the advisory lock serializing DDL and registry changes.
const LOCK: i64 = 0x7072_6f6a_6563_746f; // "projecto"

/// Where a deployment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Catching up from the start of the topic; not yet behind the public views.
    Building,
    /// Behind the public views.
    Live,
    /// A previous live deployment, still consuming, ready for an instant rollback.
    Standby,
    /// Stopped by an error; see its last error.
    Failed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Building => "building",
            Status::Live => "live",
            Status::Standby => "standby",
            Status::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Status {
        match text {
            "building" => Status::Building,
            "live" => Status::Live,
            "standby" => Status::Standby,
            _ => Status::Failed,
        }
    }

    /// Whether workers should be consuming for a deployment in this status.
    pub fn runs(self) -> bool {
        matches!(self, Status::Building | Status::Live | Status::Standby)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a deployment does with a *poison* event: one that fails deterministically (the plugin
/// rejects it, traps on it, or the database refuses what it makes of it). Transient failures
/// (the database or the broker away) are never poison: they are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Poison {
    /// Stop exactly at the event, everything before it applied, until a fixed build is
    /// hot-swapped in or an operator skips that one event.
    #[default]
    Halt,
    /// Move past the event, recording it with its error in the deployment's dead letters in the
    /// same transaction; it can be re-driven later through the current build.
    DeadLetter,
}

impl Poison {
    /// The policy's name in the API and the registry.
    pub fn as_str(self) -> &'static str {
        match self {
            Poison::Halt => "halt",
            Poison::DeadLetter => "dead-letter",
        }
    }

    /// Parses `halt` or `dead-letter`.
    pub fn parse(text: &str) -> Option<Poison> {
        match text {
            "halt" => Some(Poison::Halt),
            "dead-letter" => Some(Poison::DeadLetter),
            _ => None,
        }
    }
}

/// One build of one projection version.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Deployment {
    /// Registry id.
    pub id: i64,
    /// Projection name.
    pub name: String,
    /// Declared version.
    pub version: u32,
    /// 0 for the first build of a version, then one more per rebuild.
    pub build: u32,
    /// Hex sha256 of the component running it.
    pub sha256: String,
    /// The declaration.
    #[serde(skip)]
    pub spec: ProjectionSpec,
    /// Schema holding its tables, state and offsets.
    pub schema: String,
    /// Its Kafka consumer group.
    pub consumer_group: String,
    /// Where it is in its life.
    pub status: Status,
    /// Paused deployments keep their place but consume nothing.
    pub paused: bool,
    /// What it does with a poison event.
    pub on_poison: Poison,
    /// Whether its collections are the public views: it is live, or failed while live.
    pub serving: bool,
    /// The error that stopped it, if any.
    pub last_error: Option<String>,
    /// Partition of the event that caused the error, when one did.
    pub error_partition: Option<i32>,
    /// Offset of the event that caused the error, when one did.
    pub error_offset: Option<i64>,
    /// Who uploaded the component (the admin token's name).
    pub uploaded_by: Option<String>,
    /// When the deployment was created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it last went live.
    pub activated_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Why a registry change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The same name and version exists with other code.
    #[error("{name} v{version} already exists with different code; bump the version, or use mode=hot-swap for a fix that keeps the collections")]
    VersionExists { name: String, version: u32 },
    /// A collection name is already served by another projection.
    #[error("collection `{collection}` is already served by projection {owner}")]
    CollectionTaken { collection: String, owner: String },
    /// No such projection.
    #[error("no projection named {0}")]
    NotFound(String),
    /// The operation does not apply in the projection's current state.
    #[error("{0}")]
    Conflict(String),
    /// Another registry change held the lock past the lock timeout.
    #[error("the registry is busy with another change (waited {0:?} for its lock); try again")]
    Busy(std::time::Duration),
    /// The database failed.
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for RegistryError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03") => RegistryError::Busy(LOCK_TIMEOUT),
            _ => RegistryError::Database(error),
        }
    }
}

/// How long a registry change waits for the registry's lock, or for a lock on a read model
/// it replaces or drops (a long query holding one), before giving up with
/// [`RegistryError::Busy`].
pub const LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What [`Registry::promote`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promotion {
    /// The deployment is live: its views replaced the serving deployment's.
    Live,
    /// The deployment is older (version, then build) than the serving one: promotion only moves
    /// forward, so it waits on standby for an operator's rollback.
    Standby,
    /// It was not building any more (another instance promoted it, or it was removed).
    Nothing,
}

/// The schema of a deployment: `proj_<name>_v<version>`, with `_b<build>` for a rebuild.
pub fn schema_name(name: &str, version: u32, build: u32) -> String {
    let base = format!("proj_{}_v{version}", name.replace('-', "_"));
    if build == 0 {
        base
    } else {
        format!("{base}_b{build}")
    }
}

/// The consumer group of a deployment: `<prefix>.<name>.v<version>`, with `.b<build>` for a
/// rebuild.
pub fn group_name(prefix: &str, name: &str, version: u32, build: u32) -> String {
    let base = format!("{prefix}.{name}.v{version}");
    if build == 0 {
        base
    } else {
        format!("{base}.b{build}")
    }
}

/// What creating a deployment did.
#[derive(Debug)]
pub enum Created {
    /// A new deployment, now building.
    New(Deployment),
    /// The same component was already deployed for this version: nothing changed.
    Unchanged(Deployment),
}

/// The registry over a connection pool.
#[derive(Clone)]
pub struct Registry {
    pool: PgPool,
}

const COLUMNS: &str = "id, name, version, build, sha256, spec, schema_name, consumer_group, status, \
     paused, on_poison, serving, last_error, error_partition, error_offset, uploaded_by, created_at, activated_at";

impl Registry {
    /// A registry over `pool` (the host's schema must exist: see `Database::connect`).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    async fn locked(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!("SET LOCAL lock_timeout = '{}ms'", LOCK_TIMEOUT.as_millis())).execute(&mut *tx).await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(LOCK).execute(&mut *tx).await?;
        Ok(tx)
    }

    /// When a component was removed through the admin API, if it was (and not deployed again
    /// since): `(name, version, removed_at)`.
    pub async fn removed(
        &self,
        sha256: &str,
    ) -> Result<Option<(String, i32, chrono::DateTime<chrono::Utc>)>, sqlx::Error> {
        sqlx::query_as("SELECT name, version, removed_at FROM projector.removed WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await
    }

    /// Records why a building deployment is not promoted yet (shown as its last error), or
    /// clears it; its status stays `building`.
    pub async fn note_blocked(&self, id: i64, why: Option<&str>) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE projector.deployments SET last_error = $2 WHERE id = $1 AND status = 'building' \
             AND last_error IS DISTINCT FROM $2",
        )
        .bind(id)
        .bind(why)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn notify(tx: &mut Transaction<'static, Postgres>, what: &str) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(what).execute(&mut **tx).await?;
        Ok(())
    }

    /// A component's bytes.
    pub async fn component(&self, sha256: &str) -> Result<Vec<u8>, sqlx::Error> {
        sqlx::query_scalar("SELECT wasm FROM projector.components WHERE sha256 = $1")
            .bind(sha256)
            .fetch_one(&self.pool)
            .await
    }

    /// Every deployment, newest first within a name.
    pub async fn all(&self) -> Result<Vec<Deployment>, sqlx::Error> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM projector.deployments ORDER BY name, id DESC"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(deployment).collect()
    }

    /// The deployment serving a public collection, if any.
    pub async fn serving_collection(&self, collection: &str) -> Result<Option<Deployment>, sqlx::Error> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM projector.deployments WHERE serving \
             AND spec->'collections' @> jsonb_build_array(jsonb_build_object('name', $1::text))"
        ))
        .bind(collection)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(deployment)
        .transpose()
    }

    /// The deployments of one projection, newest first.
    pub async fn of(&self, name: &str) -> Result<Vec<Deployment>, RegistryError> {
        let rows =
            sqlx::query(&format!("SELECT {COLUMNS} FROM projector.deployments WHERE name = $1 ORDER BY id DESC"))
                .bind(name)
                .fetch_all(&self.pool)
                .await?;
        if rows.is_empty() {
            return Err(RegistryError::NotFound(name.into()));
        }
        Ok(rows.iter().map(deployment).collect::<Result<_, _>>()?)
    }

    /// Creates a building deployment of a validated component: the component's bytes (when
    /// given: an upload), its row and its storage, in one transaction. A rebuild gets the next
    /// build number of the version.
    pub async fn create(
        &self,
        spec: &Spec,
        component: Component<'_>,
        group_prefix: &str,
        rebuild: bool,
        on_poison: Option<Poison>,
    ) -> Result<Created, RegistryError> {
        let (name, version) = (spec.name(), spec.version());
        let (sha256, uploaded_by) = (component.sha256, component.uploaded_by);
        let mut tx = self.locked().await?;
        let existing = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM projector.deployments WHERE name = $1 AND version = $2 ORDER BY build DESC LIMIT 1"
        ))
        .bind(name)
        .bind(version as i32)
        .fetch_optional(&mut *tx)
        .await?;
        let build = match existing.as_ref().map(deployment).transpose()? {
            Some(current) if !rebuild => {
                return if current.sha256 == sha256 {
                    Ok(Created::Unchanged(current))
                } else {
                    Err(RegistryError::VersionExists { name: name.into(), version })
                };
            }
            Some(current) => current.build + 1,
            None => 0,
        };
        check_collections_free(&mut tx, spec).await?;
        store_component(&mut tx, &component).await?;
        // Deployed again on purpose: the plugin directory may bring it back from now on.
        sqlx::query("DELETE FROM projector.removed WHERE sha256 = $1").bind(sha256).execute(&mut *tx).await?;
        let schema = schema_name(name, version, build);
        let group = group_name(group_prefix, name, version, build);
        for statement in ddl::create_storage(&schema, spec) {
            sqlx::query(&statement).execute(&mut *tx).await?;
        }
        // Unless the upload says otherwise, a new deployment keeps the projection's policy.
        let row = sqlx::query(&format!(
            "INSERT INTO projector.deployments (name, version, build, sha256, spec, schema_name, consumer_group, status, uploaded_by, on_poison) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'building', $8, COALESCE($9, (SELECT on_poison FROM projector.deployments \
             WHERE name = $1 ORDER BY serving DESC, id DESC LIMIT 1), 'halt')) RETURNING {COLUMNS}"
        ))
        .bind(name)
        .bind(version as i32)
        .bind(build as i32)
        .bind(sha256)
        .bind(sqlx::types::Json(StoredSpec::new(spec.raw().clone())))
        .bind(&schema)
        .bind(&group)
        .bind(uploaded_by)
        .bind(on_poison.map(Poison::as_str))
        .fetch_one(&mut *tx)
        .await?;
        Self::notify(&mut tx, name).await?;
        tx.commit().await?;
        Ok(Created::New(deployment(&row)?))
    }

    /// Makes a caught-up building deployment live: its views replace the serving deployment's,
    /// which becomes standby (or stays failed); a promotion happens once. One older than the
    /// serving deployment goes on standby instead (see [`Promotion`]).
    pub async fn promote(&self, id: i64) -> Result<Promotion, RegistryError> {
        let mut tx = self.locked().await?;
        let Some(row) =
            sqlx::query(&format!("SELECT {COLUMNS} FROM projector.deployments WHERE id = $1 AND status = 'building'"))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(Promotion::Nothing);
        };
        let promoted = deployment(&row)?;
        let previous = sqlx::query(&format!("SELECT {COLUMNS} FROM projector.deployments WHERE name = $1 AND serving"))
            .bind(&promoted.name)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(deployment)
            .transpose()?;
        let older = previous.as_ref().is_some_and(|p| (promoted.version, promoted.build) < (p.version, p.build));
        let outcome = if older {
            sqlx::query("UPDATE projector.deployments SET status = 'standby', last_error = NULL WHERE id = $1")
                .bind(promoted.id)
                .execute(&mut *tx)
                .await?;
            Promotion::Standby
        } else {
            swap(&mut tx, previous.as_ref(), &promoted).await?;
            Promotion::Live
        };
        Self::notify(&mut tx, &promoted.name).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Puts the most recent standby deployment back live; the serving one goes on standby (or
    /// stays failed, no longer serving).
    pub async fn rollback(&self, name: &str) -> Result<Deployment, RegistryError> {
        let mut tx = self.locked().await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM projector.deployments WHERE name = $1 AND (serving OR status = 'standby') \
             ORDER BY serving DESC, activated_at DESC NULLS LAST"
        ))
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        let deployments: Vec<Deployment> = rows.iter().map(deployment).collect::<Result<_, _>>()?;
        let (live, standby) = match deployments.as_slice() {
            [live, standby, ..] if live.serving => (live, standby),
            [] => return Err(RegistryError::NotFound(name.into())),
            _ => return Err(RegistryError::Conflict(format!("{name} has no standby deployment to roll back to"))),
        };
        swap(&mut tx, Some(live), standby).await?;
        Self::notify(&mut tx, name).await?;
        tx.commit().await?;
        Ok(standby.clone())
    }

    /// Replaces the code of the serving deployment without a rebuild; one that failed is live
    /// again and resumes from its stored offsets. The new component must declare the same
    /// collections and fields.
    pub async fn hot_swap(&self, spec: &Spec, component: Component<'_>) -> Result<Deployment, RegistryError> {
        let sha256 = component.sha256;
        let mut tx = self.locked().await?;
        let live = sqlx::query(&format!("SELECT {COLUMNS} FROM projector.deployments WHERE name = $1 AND serving"))
            .bind(spec.name())
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(deployment)
            .transpose()?
            .ok_or_else(|| RegistryError::NotFound(spec.name().into()))?;
        if live.spec.collections != spec.raw().collections {
            return Err(RegistryError::Conflict(format!(
                "the component declares other collections or fields than live {} v{}; a hot swap keeps the storage, so upload it as a new version instead",
                live.name, live.version
            )));
        }
        store_component(&mut tx, &component).await?;
        sqlx::query("DELETE FROM projector.removed WHERE sha256 = $1").bind(sha256).execute(&mut *tx).await?;
        let row = sqlx::query(&format!(
            "UPDATE projector.deployments SET sha256 = $2, status = 'live', last_error = NULL, \
             error_partition = NULL, error_offset = NULL WHERE id = $1 RETURNING {COLUMNS}"
        ))
        .bind(live.id)
        .bind(sha256)
        .fetch_one(&mut *tx)
        .await?;
        Self::notify(&mut tx, spec.name()).await?;
        tx.commit().await?;
        Ok(deployment(&row)?)
    }

    /// Sets the poison policy of every deployment of a projection; running ones apply it from
    /// their next poison event.
    pub async fn set_poison(&self, name: &str, policy: Poison) -> Result<(), RegistryError> {
        self.set_for_name(name, "on_poison", policy.as_str()).await
    }

    /// A deployment's poison policy now (it may have changed since the deployment started).
    pub async fn poison_policy(&self, id: i64) -> Result<Poison, sqlx::Error> {
        let policy: Option<String> = sqlx::query_scalar("SELECT on_poison FROM projector.deployments WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(policy.as_deref().and_then(Poison::parse).unwrap_or_default())
    }

    /// An operator's skip of the one event a deployment halted at: the skip is noted in its
    /// dead letters (with who skipped it) and the deployment runs again (live again if it was
    /// serving, else building), moving past that event when it fails there again, recorded.
    /// Refused when no deployment of `name` failed at exactly `at`.
    pub async fn skip(&self, name: &str, at: (i32, i64), by: &str) -> Result<Deployment, RegistryError> {
        let mut tx = self.locked().await?;
        let failed = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM projector.deployments WHERE name = $1 AND status = 'failed' \
             AND error_partition = $2 AND error_offset = $3 ORDER BY serving DESC, id DESC LIMIT 1"
        ))
        .bind(name)
        .bind(at.0)
        .bind(at.1)
        .fetch_optional(&mut *tx)
        .await?
        .as_ref()
        .map(deployment)
        .transpose()?;
        let Some(failed) = failed else {
            let known: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM projector.deployments WHERE name = $1)")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
            if !known {
                return Err(RegistryError::NotFound(name.into()));
            }
            return Err(RegistryError::Conflict(format!(
                "no deployment of {name} halted at partition {} offset {}; a skip names the exact event a deployment failed at",
                at.0, at.1
            )));
        };
        let build = crate::sink::Build { sha256: failed.sha256.clone(), version: failed.version, build: failed.build };
        let error = failed.last_error.clone().unwrap_or_default();
        crate::sink::postgres::letters::note_skip(&mut tx, &failed.schema, at, &error, &build, by).await?;
        let row = sqlx::query(&format!(
            "UPDATE projector.deployments SET status = CASE WHEN serving THEN 'live' ELSE 'building' END, \
             last_error = NULL, error_partition = NULL, error_offset = NULL WHERE id = $1 RETURNING {COLUMNS}"
        ))
        .bind(failed.id)
        .fetch_one(&mut *tx)
        .await?;
        Self::notify(&mut tx, name).await?;
        tx.commit().await?;
        Ok(deployment(&row)?)
    }

    /// Pauses or resumes every running deployment of a projection.
    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<(), RegistryError> {
        self.set_for_name(name, "paused", paused).await
    }

    /// Sets `column` (a constant of this module, never input) of every deployment of `name`
    /// and tells the reconcilers; [`RegistryError::NotFound`] when there is none.
    async fn set_for_name<V>(&self, name: &str, column: &'static str, value: V) -> Result<(), RegistryError>
    where
        V: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
    {
        let mut tx = self.locked().await?;
        let changed = sqlx::query(&format!("UPDATE projector.deployments SET {column} = $2 WHERE name = $1"))
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        if changed.rows_affected() == 0 {
            return Err(RegistryError::NotFound(name.into()));
        }
        Self::notify(&mut tx, name).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records that a deployment stopped on an error. One that was serving goes on serving.
    pub async fn fail(&self, id: i64, error: &str, at: Option<(i32, i64)>) -> Result<(), sqlx::Error> {
        let mut tx = self.locked().await?;
        sqlx::query(
            "UPDATE projector.deployments SET status = 'failed', last_error = $2, error_partition = $3, \
             error_offset = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(crate::sink::postgres::letters::storable(error).as_ref())
        .bind(at.map(|(p, _)| p))
        .bind(at.map(|(_, o)| o))
        .execute(&mut *tx)
        .await?;
        Self::notify(&mut tx, "failed").await?;
        tx.commit().await
    }

    /// Removes a projection: its rows, views and schemas. Returns the consumer groups it used,
    /// for the caller to delete from Kafka.
    pub async fn remove(&self, name: &str) -> Result<Vec<String>, RegistryError> {
        let mut tx = self.locked().await?;
        let deployments: Vec<Deployment> =
            sqlx::query(&format!("SELECT {COLUMNS} FROM projector.deployments WHERE name = $1"))
                .bind(name)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(deployment)
                .collect::<Result<_, _>>()?;
        if deployments.is_empty() {
            return Err(RegistryError::NotFound(name.into()));
        }
        if let Some(live) = deployments.iter().find(|d| d.serving) {
            for statement in
                ddl::drop_views(&Spec::new(live.spec.clone()).map_err(|e| RegistryError::Conflict(e.to_string()))?)
            {
                sqlx::query(&statement).execute(&mut *tx).await.map_err(dependents)?;
            }
        }
        for d in &deployments {
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", ddl::ident(&d.schema))).execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM projector.deployments WHERE name = $1").bind(name).execute(&mut *tx).await?;
        for d in &deployments {
            tombstone(&mut tx, d).await?;
        }
        Self::notify(&mut tx, name).await?;
        tx.commit().await?;
        Ok(deployments.into_iter().map(|d| d.consumer_group).collect())
    }
}

/// A component being deployed.
#[derive(Debug, Clone, Copy)]
pub struct Component<'a> {
    /// Hex sha256 of the bytes.
    pub sha256: &'a str,
    /// The bytes, for an upload; `None` when the registry already holds them (a rebuild).
    pub wasm: Option<&'a [u8]>,
    /// Who deploys it.
    pub uploaded_by: &'a str,
}

async fn store_component(
    tx: &mut Transaction<'static, Postgres>,
    component: &Component<'_>,
) -> Result<(), sqlx::Error> {
    let Some(wasm) = component.wasm else { return Ok(()) };
    sqlx::query(
        "INSERT INTO projector.components (sha256, wasm, size_bytes, uploaded_by) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (sha256) DO NOTHING",
    )
    .bind(component.sha256)
    .bind(wasm)
    .bind(wasm.len() as i64)
    .bind(component.uploaded_by)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Registry {
    /// Removes one deployment that is not serving (a standby kept for rollback, a failed build):
    /// its row and schema. Returns its consumer group, for the caller to delete from Kafka.
    pub async fn remove_deployment(&self, name: &str, id: i64) -> Result<String, RegistryError> {
        let mut tx = self.locked().await?;
        let d = sqlx::query(&format!("SELECT {COLUMNS} FROM projector.deployments WHERE name = $1 AND id = $2"))
            .bind(name)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(deployment)
            .transpose()?
            .ok_or_else(|| RegistryError::NotFound(format!("{name} deployment {id}")))?;
        if d.serving {
            return Err(RegistryError::Conflict(format!(
                "deployment {id} of {name} is serving; roll back first, or remove the whole projection"
            )));
        }
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", ddl::ident(&d.schema))).execute(&mut *tx).await?;
        tombstone(&mut tx, &d).await?;
        sqlx::query("DELETE FROM projector.deployments WHERE id = $1").bind(id).execute(&mut *tx).await?;
        Self::notify(&mut tx, name).await?;
        tx.commit().await?;
        Ok(d.consumer_group)
    }
}

/// Records that a deployment's component was removed, so the plugin directory does not bring
/// it back at the next start (unless another deployment still uses the same bytes).
async fn tombstone(tx: &mut Transaction<'static, Postgres>, d: &Deployment) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO projector.removed (sha256, name, version) SELECT $1, $2, $3 \
         WHERE NOT EXISTS (SELECT 1 FROM projector.deployments WHERE sha256 = $1 AND id <> $4) \
         ON CONFLICT (sha256) DO UPDATE SET removed_at = now()",
    )
    .bind(&d.sha256)
    .bind(&d.name)
    .bind(d.version as i32)
    .bind(d.id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Moves the views from `previous` to `next` and their statuses with them.
async fn swap(
    tx: &mut Transaction<'static, Postgres>,
    previous: Option<&Deployment>,
    next: &Deployment,
) -> Result<(), RegistryError> {
    let spec = Spec::new(next.spec.clone()).map_err(|e| RegistryError::Conflict(e.to_string()))?;
    if let Some(previous) = previous {
        let old = Spec::new(previous.spec.clone()).map_err(|e| RegistryError::Conflict(e.to_string()))?;
        for statement in ddl::drop_views(&old) {
            sqlx::query(&statement).execute(&mut **tx).await.map_err(dependents)?;
        }
        sqlx::query(
            "UPDATE projector.deployments SET serving = false, \
             status = CASE WHEN status = 'live' THEN 'standby' ELSE status END WHERE id = $1",
        )
        .bind(previous.id)
        .execute(&mut **tx)
        .await?;
    }
    for statement in ddl::publish_views(&next.schema, &spec) {
        sqlx::query(&statement).execute(&mut **tx).await?;
    }
    sqlx::query(
        "UPDATE projector.deployments SET status = 'live', serving = true, activated_at = now(), last_error = NULL \
         WHERE id = $1",
    )
    .bind(next.id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A public view that cannot be replaced because objects of the user's depend on it (SQLSTATE
/// 2BP01) is a conflict saying which and what to do; other errors are as they are.
fn dependents(error: sqlx::Error) -> RegistryError {
    match &error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("2BP01") => {
            let detail = db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .and_then(|pg| pg.detail())
                .unwrap_or_default()
                .replace('\n', "; ");
            RegistryError::Conflict(format!(
                "{} ({detail}). The public views are replaced at every promotion and rollback, so \
                 PostgreSQL refuses while other views depend on them: drop those views and create them \
                 again after the swap, or build them on the versioned tables (the deployment's schema) \
                 instead of the public views",
                db.message()
            ))
        }
        _ => RegistryError::from(error),
    }
}

async fn check_collections_free(tx: &mut Transaction<'static, Postgres>, spec: &Spec) -> Result<(), RegistryError> {
    let rows = sqlx::query(
        "SELECT DISTINCT d.name, c.value->>'name' FROM projector.deployments d \
         CROSS JOIN LATERAL jsonb_array_elements(d.spec->'collections') AS c WHERE d.name <> $1",
    )
    .bind(spec.name())
    .fetch_all(&mut **tx)
    .await?;
    for row in rows {
        let (owner, collection): (String, String) = (row.get(0), row.get(1));
        if spec.collection(&collection).is_some() {
            return Err(RegistryError::CollectionTaken { collection, owner });
        }
    }
    Ok(())
}

fn deployment(row: &sqlx::postgres::PgRow) -> Result<Deployment, sqlx::Error> {
    let spec: sqlx::types::Json<StoredSpec> = row.try_get("spec")?;
    Ok(Deployment {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        version: row.try_get::<i32, _>("version")? as u32,
        build: row.try_get::<i32, _>("build")? as u32,
        sha256: row.try_get("sha256")?,
        spec: spec.0.spec,
        schema: row.try_get("schema_name")?,
        consumer_group: row.try_get("consumer_group")?,
        status: Status::parse(row.try_get::<&str, _>("status")?),
        paused: row.try_get("paused")?,
        on_poison: Poison::parse(row.try_get::<&str, _>("on_poison")?).unwrap_or_default(),
        serving: row.try_get("serving")?,
        last_error: row.try_get("last_error")?,
        error_partition: row.try_get("error_partition")?,
        error_offset: row.try_get("error_offset")?,
        uploaded_by: row.try_get("uploaded_by")?,
        created_at: row.try_get("created_at")?,
        activated_at: row.try_get("activated_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_version_and_build() {
        assert_eq!(schema_name("order-summaries", 2, 0), "proj_order_summaries_v2");
        assert_eq!(schema_name("order-summaries", 2, 3), "proj_order_summaries_v2_b3");
        assert_eq!(group_name("projector", "order-summaries", 2, 0), "projector.order-summaries.v2");
        assert_eq!(group_name("projector", "order-summaries", 2, 1), "projector.order-summaries.v2.b1");
    }
}
