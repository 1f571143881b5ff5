//! `POST /admin/projections` (upload, or `?mode=hot-swap`) and `POST /admin/dry-run`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use base64::Engine as _;
use http_body_util::BodyExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::views::Uploaded;
use super::{ApiError, Caller};
use crate::dryrun::{self, Report, SampleEvent};
use crate::registry::{Component, Created, Poison};
use crate::runtime::Plugin;
use crate::shared::Shared;

/// Query of an upload.
#[derive(Debug, Deserialize)]
pub(super) struct UploadQuery {
    /// `hot-swap` replaces the live deployment's code without a rebuild.
    mode: Option<String>,
    /// The projection's poison policy: `halt` or `dead-letter` (unchanged when left out).
    on_poison: Option<String>,
}

/// Parses a poison policy given to the API.
pub(super) fn poison_policy(text: &str) -> Result<Poison, ApiError> {
    Poison::parse(text).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_policy",
            format!("on_poison `{text}` is unknown; use halt or dead-letter"),
        )
    })
}

/// Reads and drops a body, up to `bound` bytes.
pub(super) async fn drain(mut body: Body, bound: usize) {
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        seen += frame.data_ref().map_or(0, |d| d.len());
        if seen > bound {
            break;
        }
    }
}

/// Reads a body, refusing it once it grows past `limit` bytes. Nothing past the limit is kept;
/// the rest is read and dropped (up to a bound) so that the client, still sending, receives
/// the 413 answer instead of a reset connection.
async fn read_limited(mut body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let unreadable =
        |e: axum::Error| ApiError::new(StatusCode::BAD_REQUEST, "bad_body", format!("cannot read the body: {e}"));
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(unreadable)?.into_data() else { continue };
        seen += data.len();
        if seen <= limit {
            kept.extend_from_slice(&data);
        } else if seen > limit.saturating_mul(8) {
            break;
        }
    }
    if seen > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than the {limit}-byte limit"),
        ));
    }
    Ok(kept)
}

/// Compiles and describes a component within the configured time. The compile runs in a child
/// process (`projector precompile`) into the artifact cache, killed when the time is up, so a
/// component made to compile for long costs nothing once refused; then the component is loaded
/// from the cache and described, on a blocking thread (`describe` has the call deadline).
async fn validate(shared: &Shared, wasm: Vec<u8>) -> Result<Plugin, ApiError> {
    let timeout = Duration::from_millis(shared.config.admin.compile_timeout_ms);
    let started = tokio::time::Instant::now();
    let too_slow = || {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "compile_timeout",
            format!("validating the component took longer than {timeout:?}; the compile was stopped"),
        )
    };
    if let Some(dir) = shared.runtime.cache_dir() {
        match precompile(dir, &wasm, timeout).await {
            Ok(Compiled::InTime) => {}
            Ok(Compiled::Late) => return Err(too_slow()),
            // Loading below gives the error with its code (or the reason the child failed).
            Ok(Compiled::Refused(reason)) => {
                tracing::debug!(reason = %reason, "The compile child refused the component.")
            }
            Err(e) => tracing::warn!(error = %e, "Cannot compile in a child process; compiling in this one."),
        }
    }
    let runtime = shared.runtime.clone();
    let left = timeout.saturating_sub(started.elapsed());
    let loading = tokio::task::spawn_blocking(move || runtime.load(&wasm));
    match tokio::time::timeout(left, loading).await {
        Err(_) => Err(too_slow()),
        Ok(joined) => Ok(joined.map_err(ApiError::internal)??),
    }
}

/// How a compile in a child process went.
enum Compiled {
    /// The artifact is in the cache.
    InTime,
    /// The time was up: the child was killed.
    Late,
    /// The child failed, saying why.
    Refused(String),
}

/// Runs `projector precompile` on `wasm`, killing it after `timeout`.
async fn precompile(cache_dir: &std::path::Path, wasm: &[u8], timeout: Duration) -> std::io::Result<Compiled> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("precompile")
        .arg("--cache-dir")
        .arg(cache_dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    let run = async {
        stdin.write_all(wasm).await?;
        drop(stdin);
        child.wait_with_output().await
    };
    match tokio::time::timeout(timeout, run).await {
        // Dropping the future dropped the child: it is killed.
        Err(_) => Ok(Compiled::Late),
        Ok(output) => {
            let output = output?;
            if output.status.success() {
                Ok(Compiled::InTime)
            } else {
                Ok(Compiled::Refused(String::from_utf8_lossy(&output.stderr).into_owned()))
            }
        }
    }
}

/// Uploads a component: a new projection or version builds from the start of the topic
/// (blue/green when another version is live); `?mode=hot-swap` replaces the live code.
#[utoipa::path(post, path = "/admin/projections", tag = "projections", security(("bearer" = [])),
    params(("mode" = Option<String>, Query, description = "`hot-swap`: replace the live deployment's code without a rebuild"),
           ("on_poison" = Option<String>, Query, description = "The projection's poison policy, `halt` (default) or `dead-letter`; left out, it keeps the one it has"),
           ("X-Checksum-Sha256" = Option<String>, Header, description = "Expected sha256 of the body, hex")),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component"),
    responses((status = 201, description = "`building`: validated, stored, rebuilding from the start of the topic", body = Uploaded),
              (status = 200, description = "`unchanged` or `hot-swapped`", body = Uploaded),
              (status = 400, description = "`checksum_mismatch`, `invalid_checksum_header`, `invalid_mode`, `invalid_policy`"),
              (status = 401, description = "No or unknown token"), (status = 403, description = "Read-only token"),
              (status = 409, description = "`version_exists`, `collection_taken`"),
              (status = 413, description = "`payload_too_large`"),
              (status = 422, description = "`not_wasm`, `core_module`, `wrong_world`, `unsupported_import`, `compile_failed`, `over_plugin_limits`, `compile_timeout`, `describe_failed`, `invalid_spec`")))]
pub(super) async fn upload(
    State(shared): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    let hot_swap = match query.mode.as_deref() {
        None | Some("build") => false,
        Some("hot-swap") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_mode",
                format!("mode `{other}` is unknown; use hot-swap or leave it out"),
            ))
        }
    };
    let on_poison = query.on_poison.as_deref().map(poison_policy).transpose()?;
    let wasm = read_limited(body, shared.config.admin.max_upload_bytes()).await?;
    let sha256 = hex::encode(Sha256::digest(&wasm));
    if let Some(expected) = headers.get("x-checksum-sha256") {
        let expected = expected.to_str().unwrap_or_default().trim().to_ascii_lowercase();
        if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_checksum_header",
                "X-Checksum-Sha256 must be 64 hexadecimal digits",
            ));
        }
        if expected != sha256 {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "checksum_mismatch",
                format!("the body's sha256 is {sha256}, the X-Checksum-Sha256 header says {expected}"),
            ));
        }
    }
    let plugin = Arc::new(validate(&shared, wasm.clone()).await?);
    let spec = plugin.spec();
    let component = Component { sha256: &sha256, wasm: Some(&wasm), uploaded_by: &caller.name };
    shared.plugins.lock().expect("not poisoned").insert(sha256.clone(), plugin.clone());
    if let Some(policy) = on_poison {
        // A policy is the projection's: set it on the deployments it has (if it has any).
        match shared.registry.set_poison(spec.name(), policy).await {
            Ok(()) | Err(crate::registry::RegistryError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if hot_swap {
        let deployment = shared.registry.hot_swap(spec, component).await?;
        tracing::info!(projection = %deployment.name, sha256 = %sha256, by = %caller.name, "Live code hot-swapped.");
        return Ok((StatusCode::OK, Json(Uploaded { result: "hot-swapped".into(), deployment })));
    }
    let prefix = &shared.config.kafka.group_prefix;
    match shared.registry.create(spec, component, prefix, false, on_poison).await? {
        Created::New(deployment) => {
            tracing::info!(projection = %deployment.name, version = deployment.version, sha256 = %sha256, by = %caller.name, "Projection uploaded; building.");
            Ok((StatusCode::CREATED, Json(Uploaded { result: "building".into(), deployment })))
        }
        Created::Unchanged(deployment) => {
            Ok((StatusCode::OK, Json(Uploaded { result: "unchanged".into(), deployment })))
        }
    }
}

/// Body of a dry run.
#[derive(Debug, Deserialize)]
pub(super) struct DryRun {
    /// The component, base64-encoded.
    component: String,
    /// Sample events, in the `samples.jsonl` shape.
    events: Vec<SampleEvent>,
}

/// Runs a component over sample events and returns the operations it would emit, checked
/// against its declaration. Touches no storage: state starts empty and is discarded.
#[utoipa::path(post, path = "/admin/dry-run", tag = "projections", security(("bearer" = [])),
    request_body(content = String, content_type = "application/json",
        description = "`{component: <base64 .wasm>, events: [{key, headers, value, partition?, offset?}]}`"),
    responses((status = 200, body = Report, description = "Per event its operations or error, checked against the declaration"),
              (status = 400, description = "`invalid_request`"), (status = 401, description = "No or unknown token"),
              (status = 422, description = "The component is refused (same codes as an upload), or `plugin_failed`")))]
pub(super) async fn dry_run(State(shared): State<Shared>, body: Body) -> Result<Json<Report>, ApiError> {
    let limit = shared.config.admin.max_upload_bytes() * 2 + (1 << 20);
    let bytes = read_limited(body, limit).await?;
    let request: DryRun = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", format!("invalid dry-run request: {e}"))
    })?;
    let wasm = base64::engine::general_purpose::STANDARD.decode(request.component.trim()).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", format!("component is not base64: {e}"))
    })?;
    let plugin = validate(&shared, wasm).await?;
    let events = dryrun::events(&shared.config.kafka.topic, request.events);
    let outcome = tokio::task::spawn_blocking(move || dryrun::run(&plugin, &events))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "plugin_failed", e.to_string()))?;
    Ok(Json(outcome.report))
}
