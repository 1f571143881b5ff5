//! The admin HTTP API: upload, inspect and steer projections without redeploying the host.
//!
//! Invariants:
//! - Every route requires `Authorization: Bearer <token>`: 401 without a known token, 403 for
//!   a read-only token on anything but GET.
//! - An upload is fully validated (size while streaming, checksum, component, world, imports,
//!   compilation within a time limit, `describe`) before anything is stored; a rejection is a
//!   4xx with a stable code, and the registry is untouched.
//! - Handlers only change the registry; the supervisors of all instances carry the change out.

mod projections;
mod upload;
pub mod views;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use utoipa::OpenApi;

pub use crate::http_error::ApiError;

use crate::shared::Shared;

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
        .route("/admin/projections/{name}/deployments/{id}", axum::routing::delete(projections::remove_deployment))
        .route("/admin/projections/{name}/rebuild", post(projections::rebuild))
        .route("/admin/projections/{name}/rollback", post(projections::rollback))
        .route("/admin/projections/{name}/pause", post(projections::pause))
        .route("/admin/projections/{name}/resume", post(projections::resume))
        .route("/admin/projections/{name}/policy", axum::routing::put(projections::set_policy))
        .route("/admin/projections/{name}/skip", post(projections::skip))
        .route("/admin/projections/{name}/dead-letters", get(projections::dead_letters))
        .route("/admin/projections/{name}/dead-letters/redrive", post(projections::redrive))
        .route("/admin/dry-run", post(upload::dry_run))
        .route("/metrics", get(metrics))
        .route("/admin/openapi.json", get(openapi))
        .layer(middleware::from_fn_with_state(shared.clone(), authenticate))
        .with_state(shared)
}

/// The admin API's OpenAPI description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Projector admin API", description = "Upload, inspect and steer projections without redeploying the host. Every route needs `Authorization: Bearer <token>`; read-only tokens may only GET."),
    paths(upload::upload, upload::dry_run, projections::list, projections::status, projections::rebuild,
          projections::rollback, projections::pause, projections::resume, projections::remove,
          projections::remove_deployment, projections::set_policy, projections::skip, projections::dead_letters,
          projections::redrive),
    modifiers(&BearerAuth),
    tags((name = "projections", description = "Projections, their deployments and uploads"))
)]
pub struct AdminApi;

/// Declares the `bearer` security scheme the paths refer to.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(AdminApi::openapi())
}

async fn authenticate(State(shared): State<Shared>, mut request: Request, next: Next) -> Response {
    match caller(&shared, request.headers(), request.method()) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(error) => {
            // Read what the client is still sending, so it receives this answer instead of a
            // connection reset.
            upload::drain(request.into_body(), shared.config.admin.max_upload_bytes() * 8).await;
            error.into_response()
        }
    }
}

/// Checks that a request of another API carries a token allowed to change things.
pub fn authorize_write(shared: &Shared, headers: &axum::http::HeaderMap) -> Result<Caller, ApiError> {
    caller(shared, headers, &Method::POST)
}

/// Who sends a request, if the token allows the method.
fn caller(shared: &Shared, headers: &axum::http::HeaderMap, method: &Method) -> Result<Caller, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "send Authorization: Bearer <token>"))?;
    let token = shared
        .config
        .admin
        .tokens
        .iter()
        .find(|t| constant_time_eq(t.token.as_bytes(), presented.as_bytes()))
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown token"))?;
    if token.read_only && !matches!(*method, Method::GET | Method::HEAD) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("token {} is read-only", token.name)));
    }
    Ok(Caller { name: token.name.clone() })
}

/// Compares secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(State(shared): State<Shared>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], shared.metrics.render())
}

/// Serves a router until `cancel` fires, letting requests in flight finish.
pub async fn serve(
    router: Router,
    listener: tokio::net::TcpListener,
    cancel: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(async move { cancel.cancelled().await }).await
}
