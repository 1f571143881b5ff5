//! What the admin API answers about projections, as types: the handlers build them, the
//! OpenAPI description documents them (as schemas), and the `projector projections` client
//! decodes them, so a field renamed on one side cannot go unnoticed on the other.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::progress::PartitionPosition;
use crate::registry::{Deployment, Poison};
use crate::sink::postgres::letters::StoredLetter;
use crate::status::Stall;

/// `GET /admin/projections`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProjectionList {
    /// Every projection, by name.
    pub projections: Vec<ProjectionView>,
}

/// One projection with all its deployments (`GET /admin/projections/{name}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProjectionView {
    /// Projection name.
    pub name: String,
    /// Version of the deployment that is live, if any.
    pub live_version: Option<u32>,
    /// Version whose collections the public views show, if any (live, or failed while live).
    pub serving_version: Option<u32>,
    /// The poison policy of the serving (or else the newest) deployment.
    pub on_poison: Option<Poison>,
    /// Its deployments, newest first.
    pub deployments: Vec<DeploymentView>,
}

/// One deployment: one build of one version, with its progress.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeploymentView {
    /// Registry id.
    pub id: i64,
    /// Declared version.
    pub version: u32,
    /// 0 for the first build of a version, then one more per rebuild.
    pub build: u32,
    /// `building`, `live`, `standby`, `failed`, `retired`, or `paused`.
    pub state: String,
    /// Whether the public views show its collections.
    pub serving: bool,
    /// Hex sha256 of its component.
    pub sha256: String,
    /// PostgreSQL schema holding its tables.
    pub schema: String,
    /// Its Kafka consumer group.
    pub consumer_group: String,
    /// Who uploaded the component (the admin token's name).
    pub uploaded_by: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last went live.
    pub activated_at: Option<DateTime<Utc>>,
    /// Its collections' names.
    pub collections: Vec<String>,
    /// Events not applied yet, over all partitions.
    pub lag: i64,
    /// Events applied (the sum of the stored next offsets).
    pub applied: i64,
    /// Events applied per second over the last seconds, to one decimal.
    pub events_per_second: f64,
    /// Seconds to catch up at that rate, when it moves.
    pub eta_seconds: Option<f64>,
    /// Position per partition, keyed by the partition number.
    #[schema(value_type = BTreeMap<String, Object>)]
    pub partitions: BTreeMap<String, PartitionPosition>,
    /// This instance's consumer of it; null where this instance does not run it.
    pub consumer: Option<ConsumerView>,
    /// What it does with a poison event.
    pub on_poison: Poison,
    /// Its dead letters.
    pub dead_letters: LetterCounts,
    /// The error that stopped it, if any.
    pub last_error: Option<LastError>,
}

/// The state of one instance's consumer of a deployment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConsumerView {
    /// Whether it is stalled now.
    pub stalled: bool,
    /// Stalls it recovered from.
    pub stalls: u64,
    /// The last stall.
    #[schema(value_type = Option<Object>)]
    pub last_stall: Option<Stall>,
    /// Batches a fence rejected (another instance owned the partition by then).
    pub fenced_batches: u64,
    /// Offset jumps found (retention or a recreated topic).
    pub offset_jumps: u64,
    /// The last offset jump.
    pub last_offset_jump: Option<String>,
    /// Events this instance applied.
    pub events_applied: u64,
}

/// Dead letters of one deployment.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct LetterCounts {
    /// Waiting, not re-driven.
    pub pending: i64,
    /// Re-driven.
    pub redriven: i64,
}

/// The error that stopped a deployment, with the event that caused it when one did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LastError {
    /// What went wrong.
    pub message: String,
    /// Partition of the event at fault.
    pub partition: Option<i32>,
    /// Offset of the event at fault.
    pub offset: Option<i64>,
}

/// The answer to an action on one deployment: `rebuild` (`building`), `skip` (`skipping`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeploymentAction {
    /// What happened.
    pub result: String,
    /// The deployment acted on.
    pub deployment: DeploymentView,
}

/// The answer to a rollback.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RolledBack {
    /// `rolled back`.
    pub result: String,
    /// The deployment live now.
    pub live: DeploymentView,
}

/// The answer to an upload: `building` (201), `unchanged` or `hot-swapped` (200).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Uploaded {
    /// What happened.
    pub result: String,
    /// The deployment the upload made, kept or changed.
    pub deployment: Deployment,
}

/// The answer to pausing (`paused`) or resuming (`resumed`) a projection.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Steered {
    /// What happened.
    pub result: String,
    /// The projection.
    pub name: String,
}

/// The answer to setting a poison policy.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicySet {
    /// `policy set`.
    pub result: String,
    /// The projection.
    pub name: String,
    /// The policy every deployment applies from its next poison event.
    pub on_poison: Poison,
}

/// The answer to a re-drive request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Redriving {
    /// `redriving`.
    pub result: String,
    /// Dead letters marked for a re-drive, over the running deployments.
    pub requested: u64,
}

/// The answer to removing a projection, or one deployment of it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Removed {
    /// `removed`.
    pub result: String,
    /// The projection.
    pub name: String,
    /// The deployment removed, when only one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<i64>,
    /// Kafka consumer groups deleted in the background.
    pub consumer_groups: Vec<String>,
}

/// `GET /admin/projections/{name}/dead-letters`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterList {
    /// The projection.
    pub name: String,
    /// Per deployment, in offset order per partition.
    pub dead_letters: Vec<DeadLetterView>,
}

/// One dead letter of one deployment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterView {
    /// Registry id of the deployment.
    pub deployment: i64,
    /// Its declared version.
    pub version: u32,
    /// Its build.
    pub build: u32,
    /// The dead letter.
    #[serde(flatten)]
    pub letter: StoredLetter,
}
