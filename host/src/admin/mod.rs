//! The admin HTTP API: upload, inspect and steer projections without redeploying the host.
//!
//! Invariants:
//! - Every route requires `Authorization: Bearer <token>`: 401 without a known token, 403 for
//!   a read-only token on anything but GET.
//! - An upload is fully validated (size while streaming, checksum, component, world, imports,
//!   compilation within a time limit, `describe`) before anything is stored; a rejection is a
//!   4xx with a stable code, and the registry is untouched.
//! - Handlers only change the registry; the supervisors of all instances carry the change out.

mod error;
mod projections;
mod upload;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

pub use error::ApiError;

use crate::supervisor::Shared;

/// Who made a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name.
    pub name: String,
}

/// The admin API over the host's shared state.
pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/admin/projections", get(projections::list).post(upload::upload))
        .route("/admin/projections/{name}", get(projections::status).delete(projections::remove))
        .route("/admin/projections/{name}/rebuild", post(projections::rebuild))
        .route("/admin/projections/{name}/rollback", post(projections::rollback))
        .route("/admin/projections/{name}/pause", post(projections::pause))
        .route("/admin/projections/{name}/resume", post(projections::resume))
        .route("/admin/dry-run", post(upload::dry_run))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(shared.clone(), authenticate))
        .with_state(shared)
}

async fn authenticate(State(shared): State<Shared>, mut request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "send Authorization: Bearer <token>")
            .into_response();
    };
    let known = shared.config.admin.tokens.iter().find(|t| constant_time_eq(t.token.as_bytes(), presented.as_bytes()));
    let Some(token) = known else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown token").into_response();
    };
    if token.read_only && !matches!(*request.method(), Method::GET | Method::HEAD) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("token {} is read-only", token.name),
        )
        .into_response();
    }
    request.extensions_mut().insert(Caller { name: token.name.clone() });
    next.run(request).await
}

/// Compares secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(State(shared): State<Shared>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
}

/// Serves the admin API until `cancel` fires.
pub async fn serve(
    shared: Shared,
    listener: tokio::net::TcpListener,
    cancel: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
}
