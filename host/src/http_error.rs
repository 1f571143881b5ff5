//! The error answer of both HTTP APIs (admin and query): a status, a stable code and a message
//! naming the problem; never internals.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::registry::RegistryError;
use crate::runtime::{CallError, LoadError};

/// An error answered as `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// Structured context, when there is some (e.g. the current watermark).
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: None }
    }

    /// Adds structured context to the error.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// A failure of ours (database down, ...): logged in full, answered without details.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "Admin API request failed.");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the host could not complete the request; see its log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(details) = self.details {
            error["details"] = details;
        }
        let body = Json(json!({ "error": error }));
        (self.status, body).into_response()
    }
}

impl From<LoadError> for ApiError {
    fn from(error: LoadError) -> Self {
        let status = match error {
            LoadError::NotWasm | LoadError::CoreModule => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            // Every plugin instance of the host in use: the same upload passes later.
            LoadError::Describe(CallError::Busy(_)) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self::new(status, error.code(), error.to_string())
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        match &error {
            RegistryError::VersionExists { .. } => Self::new(StatusCode::CONFLICT, "version_exists", error.to_string()),
            RegistryError::CollectionTaken { .. } => {
                Self::new(StatusCode::CONFLICT, "collection_taken", error.to_string())
            }
            RegistryError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", error.to_string()),
            RegistryError::Conflict(_) => Self::new(StatusCode::CONFLICT, "conflict", error.to_string()),
            RegistryError::Busy(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "registry_busy", error.to_string()),
            RegistryError::Database(e) => Self::internal(e),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::internal(error)
    }
}
