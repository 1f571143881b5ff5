//! Inspecting and steering projections: list, status, rebuild, rollback, pause, resume, remove.

use std::collections::BTreeMap;
use std::time::Duration;

use super::views::{
    ConsumerView, DeadLetterList, DeadLetterView, DeploymentAction, DeploymentView, LastError, LetterCounts, PolicySet,
    ProjectionList, ProjectionView, Redriving, Removed, RolledBack, Steered,
};
use super::{ApiError, Caller};
use crate::registry::{Component, Created, Deployment, Status};
use crate::shared::Shared;
use crate::sink::postgres::letters;
use crate::source::kafka::client_config;
use crate::spec::Spec;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};

/// The state shown for a deployment: its status, or `paused`.
fn state(d: &Deployment) -> String {
    if d.paused && d.status != Status::Failed {
        "paused".into()
    } else {
        d.status.to_string()
    }
}

/// Dead letters per deployment.
type Letters = BTreeMap<i64, LetterCounts>;

async fn letter_counts(shared: &Shared, deployments: &[Deployment]) -> Result<Letters, ApiError> {
    let mut counts = Letters::new();
    for d in deployments {
        let (pending, redriven) =
            letters::counts(shared.database.pool(), &d.schema).await.map_err(ApiError::internal)?;
        counts.insert(d.id, LetterCounts { pending, redriven });
    }
    Ok(counts)
}

fn describe(shared: &Shared, d: &Deployment) -> DeploymentView {
    describe_with(shared, d, &Letters::new())
}

fn describe_with(shared: &Shared, d: &Deployment, counts: &Letters) -> DeploymentView {
    let progress = shared.board.get(d.id).unwrap_or_default();
    DeploymentView {
        id: d.id,
        version: d.version,
        build: d.build,
        state: state(d),
        serving: d.serving,
        sha256: d.sha256.clone(),
        schema: d.schema.clone(),
        consumer_group: d.consumer_group.clone(),
        uploaded_by: d.uploaded_by.clone(),
        created_at: d.created_at,
        activated_at: d.activated_at,
        collections: d.spec.collections.iter().map(|c| c.name.clone()).collect(),
        lag: progress.lag,
        applied: progress.applied,
        events_per_second: (progress.events_per_second * 10.0).round() / 10.0,
        eta_seconds: progress.eta_seconds.map(|s| (s * 10.0).round() / 10.0),
        partitions: progress.partitions.iter().map(|(p, pos)| (p.to_string(), *pos)).collect(),
        consumer: consumer(shared, d.id),
        on_poison: d.on_poison,
        dead_letters: counts.get(&d.id).copied().unwrap_or_default(),
        last_error: d.last_error.as_ref().map(|message| LastError {
            message: message.clone(),
            partition: d.error_partition,
            offset: d.error_offset,
        }),
    }
}

/// This instance's consumer of a deployment (`None` when it does not run it here): whether it
/// is stalled, how many stalls it recovered from and the last one, and how many of its batches
/// a fence rejected.
fn consumer(shared: &Shared, id: i64) -> Option<ConsumerView> {
    use std::sync::atomic::Ordering;
    let workers = shared.workers.lock().expect("not poisoned");
    let status = workers.get(&id)?;
    let view = ConsumerView {
        stalled: status.stalled.load(Ordering::Acquire),
        stalls: status.stalls.load(Ordering::Relaxed),
        last_stall: status.last_stall.lock().expect("not poisoned").clone(),
        fenced_batches: status.fenced.load(Ordering::Relaxed),
        offset_jumps: status.offset_jumps.load(Ordering::Relaxed),
        last_offset_jump: status.last_offset_jump.lock().expect("not poisoned").clone(),
        events_applied: status.events_applied.load(Ordering::Relaxed),
    };
    Some(view)
}

fn summary(shared: &Shared, name: &str, deployments: &[&Deployment], counts: &Letters) -> ProjectionView {
    let live = deployments.iter().find(|d| d.status == Status::Live);
    let serving = deployments.iter().find(|d| d.serving);
    ProjectionView {
        name: name.to_string(),
        live_version: live.map(|d| d.version),
        serving_version: serving.map(|d| d.version),
        on_poison: serving.or(deployments.first()).map(|d| d.on_poison),
        deployments: deployments.iter().map(|d| describe_with(shared, d, counts)).collect(),
    }
}

/// `GET /admin/projections`: every projection with its deployments.
#[utoipa::path(get, path = "/admin/projections", tag = "projections", security(("bearer" = [])),
    responses((status = 200, description = "Every projection with its deployments", body = ProjectionList),
              (status = 401, description = "No or unknown token")))]
pub(super) async fn list(State(shared): State<Shared>) -> Result<Json<ProjectionList>, ApiError> {
    let all = shared.registry.all().await?;
    let counts = letter_counts(&shared, &all).await?;
    let mut by_name: BTreeMap<&str, Vec<&Deployment>> = BTreeMap::new();
    for d in &all {
        by_name.entry(&d.name).or_default().push(d);
    }
    let projections = by_name.iter().map(|(name, ds)| summary(&shared, name, ds, &counts)).collect();
    Ok(Json(ProjectionList { projections }))
}

/// `GET /admin/projections/{name}`: one projection in detail.
#[utoipa::path(get, path = "/admin/projections/{name}", tag = "projections", params(("name" = String, Path, description = "Projection name")), security(("bearer" = [])),
    responses((status = 200, description = "The projection: live version and every deployment with its state, progress (lag per partition, events/s, ETA) and last error", body = ProjectionView),
              (status = 401, description = "No or unknown token"), (status = 403, description = "Read-only token"), (status = 404, description = "No such projection")))]
pub(super) async fn status(
    State(shared): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<ProjectionView>, ApiError> {
    let deployments = shared.registry.of(&name).await?;
    let counts = letter_counts(&shared, &deployments).await?;
    let refs: Vec<&Deployment> = deployments.iter().collect();
    Ok(Json(summary(&shared, &name, &refs, &counts)))
}

/// `POST /admin/projections/{name}/rebuild`: the live code again from the start of the topic,
/// blue/green: the current deployment serves until the rebuild has caught up.
#[utoipa::path(post, path = "/admin/projections/{name}/rebuild", tag = "projections", params(("name" = String, Path, description = "Projection name")), security(("bearer" = [])),
    responses((status = 202, description = "The rebuild, building", body = DeploymentAction), (status = 401, description = "No or unknown token"), (status = 403, description = "Read-only token"), (status = 404, description = "No such projection")))]
pub(super) async fn rebuild(
    State(shared): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<DeploymentAction>), ApiError> {
    let deployments = shared.registry.of(&name).await?;
    let source =
        deployments.iter().find(|d| d.serving).or_else(|| deployments.first()).expect("of() returns at least one");
    // The code's declaration placed as this host places it now (a rebuild is how a collection
    // moves to or from the search engine).
    let plugin = shared.plugin(&source.sha256).await.map_err(ApiError::internal)?;
    let spec = plugin.spec();
    let component = Component { sha256: &source.sha256, wasm: None, uploaded_by: &caller.name };
    let prefix = &shared.config.kafka.group_prefix;
    let Created::New(deployment) = shared.registry.create(spec, component, prefix, true, None).await? else {
        unreachable!("a rebuild always creates a deployment");
    };
    tracing::info!(projection = %name, version = deployment.version, build = deployment.build, by = %caller.name, "Rebuild started.");
    Ok((
        StatusCode::ACCEPTED,
        Json(DeploymentAction { result: "building".into(), deployment: describe(&shared, &deployment) }),
    ))
}

/// `POST /admin/projections/{name}/rollback`: the previous deployment back live, at once.
#[utoipa::path(post, path = "/admin/projections/{name}/rollback", tag = "projections", params(("name" = String, Path, description = "Projection name")), security(("bearer" = [])),
    responses((status = 200, description = "The deployment live again", body = RolledBack), (status = 409, description = "No standby deployment to roll back to"), (status = 401, description = "No or unknown token"), (status = 403, description = "Read-only token"), (status = 404, description = "No such projection")))]
pub(super) async fn rollback(
    State(shared): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<RolledBack>, ApiError> {
    let live = shared.registry.rollback(&name).await?;
    tracing::info!(projection = %name, version = live.version, build = live.build, by = %caller.name, "Rolled back.");
    Ok(Json(RolledBack { result: "rolled back".into(), live: describe(&shared, &live) }))
}

/// `POST /admin/projections/{name}/pause`.
#[utoipa::path(post, path = "/admin/projections/{name}/pause", tag = "projections", params(("name" = String, Path, description = "Projection name")), security(("bearer" = [])),
    responses((status = 200, body = Steered, description = "`paused`: every deployment of the projection stops consuming; reads go on, flagged stale as lag grows"), (status = 401, description = "No or unknown token"), (status = 403, description = "Read-only token"), (status = 404, description = "No such projection")))]
pub(super) async fn pause(State(shared): State<Shared>, Path(name): Path<String>) -> Result<Json<Steered>, ApiError> {
    shared.registry.set_paused(&name, true).await?;
    Ok(Json(Steered { result: "paused".into(), name }))
}

/// `POST /admin/projections/{name}/resume`.
#[utoipa::path(post, path = "/admin/projections/{name}/resume", tag = "projections", params(("name" = String, Path, description = "Projection name")), security(("bearer" = [])),
    responses((status = 200, body = Steered, description = "`resumed`: consuming again from the stored offsets"), (status = 401, description = "No or unknown token"), (status = 403, description = "Read-only token"), (status = 404, description = "No such projection")))]
pub(super) async fn resume(State(shared): State<Shared>, Path(name): Path<String>) -> Result<Json<Steered>, ApiError> {
    shared.registry.set_paused(&name, false).await?;
    Ok(Json(Steered { result: "resumed".into(), name }))
}

/// An event's coordinates.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub(super) struct At {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Body of `PUT .../policy`.
#[derive(Debug, serde::Deserialize)]
pub(super) struct Policy {
    /// `halt` or `dead-letter`.
    pub on_poison: String,
}

/// `PUT /admin/projections/{name}/policy`: the projection's poison policy.
#[utoipa::path(put, path = "/admin/projections/{name}/policy", tag = "projections", params(("name" = String, Path, description = "Projection name")), security(("bearer" = [])),
    request_body(content = String, content_type = "application/json", description = "`{on_poison: \"halt\" | \"dead-letter\"}`"),
    responses((status = 200, body = PolicySet, description = "Every deployment applies it from its next poison event"),
              (status = 400, description = "`invalid_policy`"), (status = 401, description = "No or unknown token"), (status = 403, description = "Read-only token"), (status = 404, description = "No such projection")))]
pub(super) async fn set_policy(
    State(shared): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(policy): Json<Policy>,
) -> Result<Json<PolicySet>, ApiError> {
    let on_poison = super::upload::poison_policy(&policy.on_poison)?;
    shared.registry.set_poison(&name, on_poison).await?;
    tracing::info!(projection = %name, on_poison = on_poison.as_str(), by = %caller.name, "Poison policy set.");
    Ok(Json(PolicySet { result: "policy set".into(), name, on_poison }))
}

/// `POST /admin/projections/{name}/skip`: moves a deployment halted at one event past it.
#[utoipa::path(post, path = "/admin/projections/{name}/skip", tag = "projections", params(("name" = String, Path, description = "Projection name")), security(("bearer" = [])),
    request_body(content = String, content_type = "application/json", description = "`{partition, offset}`: exactly where the deployment failed"),
    responses((status = 200, body = DeploymentAction, description = "`{result: \"skipping\", deployment}`: it runs again and records that one event in its dead letters (reason `skipped`, who skipped it) as it moves past it; a fixed build hot-swapped in first would apply it instead"),
              (status = 409, description = "No deployment of the projection failed at that event"), (status = 401, description = "No or unknown token"), (status = 403, description = "Read-only token"), (status = 404, description = "No such projection")))]
pub(super) async fn skip(
    State(shared): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(at): Json<At>,
) -> Result<Json<DeploymentAction>, ApiError> {
    let deployment = shared.registry.skip(&name, (at.partition, at.offset), &caller.name).await?;
    tracing::warn!(projection = %name, partition = at.partition, offset = at.offset, by = %caller.name, "Poison event skipped by an operator.");
    Ok(Json(DeploymentAction { result: "skipping".into(), deployment: describe(&shared, &deployment) }))
}

/// Query of the dead-letter list.
#[derive(Debug, serde::Deserialize)]
pub(super) struct LetterQuery {
    /// Only those not re-driven yet.
    #[serde(default)]
    pub pending: bool,
    /// At most this many per deployment (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// `GET /admin/projections/{name}/dead-letters`: every deployment's dead letters.
#[utoipa::path(get, path = "/admin/projections/{name}/dead-letters", tag = "projections",
    params(("name" = String, Path, description = "Projection name"), ("pending" = Option<bool>, Query, description = "Only those not re-driven"),
           ("limit" = Option<i64>, Query, description = "At most this many per deployment (default 100, at most 1000)")),
    security(("bearer" = [])),
    responses((status = 200, body = DeadLetterList, description = "Every deployment's dead letters, in offset order per partition"),
              (status = 401, description = "No or unknown token"), (status = 404, description = "No such projection")))]
pub(super) async fn dead_letters(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    axum::extract::Query(query): axum::extract::Query<LetterQuery>,
) -> Result<Json<DeadLetterList>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let mut dead_letters = Vec::new();
    for d in shared.registry.of(&name).await? {
        let stored =
            letters::list(shared.database.pool(), &d.schema, query.pending, limit).await.map_err(ApiError::internal)?;
        dead_letters.extend(stored.into_iter().map(|letter| DeadLetterView {
            deployment: d.id,
            version: d.version,
            build: d.build,
            letter,
        }));
    }
    Ok(Json(DeadLetterList { name, dead_letters }))
}

/// `POST /admin/projections/{name}/dead-letters/redrive`: applies dead letters through the
/// current build.
#[utoipa::path(post, path = "/admin/projections/{name}/dead-letters/redrive", tag = "projections", params(("name" = String, Path, description = "Projection name")), security(("bearer" = [])),
    request_body(content = String, content_type = "application/json", description = "Optional `{partition, offset}`: only that dead letter; without a body, every pending one"),
    responses((status = 202, body = Redriving, description = "Each running deployment re-drives its own, in offset order per partition, through its current build, each applied once; one that fails again stays, with the new error and one more attempt"),
              (status = 404, description = "No such projection, or no such pending dead letter"), (status = 401, description = "No or unknown token"), (status = 403, description = "Read-only token")))]
pub(super) async fn redrive(
    State(shared): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Option<Json<At>>,
) -> Result<(StatusCode, Json<Redriving>), ApiError> {
    let at = body.map(|Json(at)| (at.partition, at.offset));
    let mut requested = 0;
    for d in shared.registry.of(&name).await?.iter().filter(|d| d.status.runs()) {
        requested +=
            letters::request_redrive(shared.database.pool(), &d.schema, at).await.map_err(ApiError::internal)?;
    }
    if let (Some((partition, offset)), 0) = (at, requested) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "{name} has no pending dead letter at partition {partition} offset {offset} in a running deployment"
            ),
        ));
    }
    tracing::info!(projection = %name, requested, by = %caller.name, "Dead letters re-drive requested.");
    Ok((StatusCode::ACCEPTED, Json(Redriving { result: "redriving".into(), requested })))
}

/// `DELETE /admin/projections/{name}`: stops it everywhere and removes its views, schemas and
/// consumer groups.
#[utoipa::path(delete, path = "/admin/projections/{name}", tag = "projections", params(("name" = String, Path, description = "Projection name")), security(("bearer" = [])),
    responses((status = 200, body = Removed, description = "Stopped everywhere; its consumer groups are deleted in the background"), (status = 401, description = "No or unknown token"), (status = 403, description = "Read-only token"), (status = 404, description = "No such projection")))]
pub(super) async fn remove(
    State(shared): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Removed>, ApiError> {
    let deployments = shared.registry.of(&name).await?;
    let groups = shared.registry.remove(&name).await?;
    tracing::info!(projection = %name, by = %caller.name, "Projection removed.");
    delete_indices(&shared, deployments).await;
    // Workers leave their groups within a reconcile interval; delete the groups after that,
    // in the background, retrying while members are still leaving.
    let kafka = shared.config.kafka.clone();
    let wait = Duration::from_millis(shared.config.admin.reconcile_interval_ms * 3);
    let deleting = groups.clone();
    tokio::spawn(async move { delete_groups(kafka, deleting, wait).await });
    Ok(Json(Removed { result: "removed".into(), name, deployment: None, consumer_groups: groups }))
}

/// `DELETE /admin/projections/{name}/deployments/{id}`: removes one deployment that is not
/// live (a standby kept for rollback, a failed build), with its schema and consumer group.
#[utoipa::path(delete, path = "/admin/projections/{name}/deployments/{id}", tag = "projections",
    params(("name" = String, Path, description = "Projection name"), ("id" = i64, Path, description = "Deployment id")),
    security(("bearer" = [])),
    responses((status = 200, body = Removed, description = "Removed, with its schema; its consumer group is deleted in the background"), (status = 409, description = "The deployment is live"), (status = 401, description = "No or unknown token"), (status = 403, description = "Read-only token"), (status = 404, description = "No such projection")))]
pub(super) async fn remove_deployment(
    State(shared): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((name, id)): Path<(String, i64)>,
) -> Result<Json<Removed>, ApiError> {
    let removed: Vec<Deployment> = shared.registry.of(&name).await?.into_iter().filter(|d| d.id == id).collect();
    let group = shared.registry.remove_deployment(&name, id).await?;
    tracing::info!(projection = %name, deployment = id, by = %caller.name, "Deployment removed.");
    delete_indices(&shared, removed).await;
    let kafka = shared.config.kafka.clone();
    let wait = Duration::from_millis(shared.config.admin.reconcile_interval_ms * 3);
    let deleting = vec![group.clone()];
    tokio::spawn(async move { delete_groups(kafka, deleting, wait).await });
    Ok(Json(Removed { result: "removed".into(), name, deployment: Some(id), consumer_groups: vec![group] }))
}

/// Deletes the search-engine indices of removed deployments; one that cannot be deleted now
/// is logged (the registry no longer knows it, so nothing reads or writes it).
async fn delete_indices(shared: &Shared, removed: Vec<Deployment>) {
    let Some(engine) = &shared.search else { return };
    for d in removed {
        let deleted = match Spec::new(d.spec.clone()) {
            Ok(spec) => engine.delete_indices(&d.schema, &spec).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = deleted {
            tracing::warn!(projection = %d.name, deployment = d.id, error = %error, "Cannot delete the search-engine indices of a removed deployment.");
        }
    }
}

async fn delete_groups(kafka: crate::config::KafkaConfig, groups: Vec<String>, wait: Duration) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    let Ok(admin) = client_config(&kafka).create::<AdminClient<_>>() else { return };
    let names: Vec<&str> = groups.iter().map(String::as_str).collect();
    for attempt in 0..5 {
        tokio::time::sleep(wait * (attempt + 1)).await;
        match admin.delete_groups(&names, &AdminOptions::new()).await {
            Ok(results) if results.iter().all(|r| r.is_ok()) => return,
            Ok(results) => tracing::debug!(?results, "Some consumer groups could not be deleted yet."),
            Err(e) => tracing::debug!(error = %e, "Deleting consumer groups failed."),
        }
    }
    tracing::warn!(groups = ?groups, "Consumer groups of a removed projection could not be deleted from Kafka.");
}
