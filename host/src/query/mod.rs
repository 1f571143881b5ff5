//! The query API: full-text order search, reads of any live read model, order conveniences,
//! and `POST /events`; every answer says how fresh it is.
//!
//! Invariants:
//! - SQL is built from the live deployment's declaration only; request values are bound
//!   parameters, checked against the declared field type first. Filters and sorts are limited
//!   to fields declared filterable and sortable; anything else is a 400 naming the parameter.
//! - Decimals are JSON strings, exact. Paging is by keyset cursor, never by offset.
//! - `?after=<partition>:<offset>&wait_ms=<n>` answers only once that offset is applied, or
//!   fails with 503 carrying the current watermark.

mod consistency;
mod engine;
mod events;
mod read;
mod rows;
mod search;

use axum::routing::{get, post};
use axum::{Json, Router};
use utoipa::OpenApi;

use crate::shared::Shared;

/// The OpenAPI document of the query API, generated from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(title = "Projector query API", description = "Order search and read-model reads, with explicit consistency."),
    paths(search::search, read::order, read::orders, read::daily_stats, read::read_one, read::read_many, events::publish),
    components(schemas(consistency::Consistency, events::NewEvent, events::Published)),
    tags((name = "orders", description = "Order search and conveniences"),
         (name = "read models", description = "Any live read model, on its declared fields"),
         (name = "events", description = "Publishing events (admin token)"))
)]
pub(crate) struct QueryApi;

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(QueryApi::openapi())
}

/// The query API over the host's shared state.
pub(crate) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/orders/search", get(search::search))
        .route("/orders/{id}", get(read::order))
        .route("/orders", get(read::orders))
        .route("/stats/daily", get(read::daily_stats))
        .route("/read-models/{collection}", get(read::read_many))
        .route("/read-models/{collection}/{key}", get(read::read_one))
        .route("/events", post(events::publish))
        .route("/openapi.json", get(openapi))
        .with_state(shared)
}
