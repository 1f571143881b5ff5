//! The one error type of a projection: a message pinned to the event that caused it.
//!
//! The host records the message against the event's partition and offset, so a message must
//! say what was wrong with the event (which field was missing or malformed), not where in the
//! plugin it went wrong.

use std::fmt;

/// Why a projection could not handle an event; becomes the `err` of the event's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error with this message, e.g. `Error::new("field `total`: must not be negative")`.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }

    /// An error for a required field the event lacks: "missing field `name`".
    pub fn missing_field(name: &str) -> Self {
        Self::new(format!("missing field `{name}`"))
    }

    /// An error for a field the event has but with an unusable value:
    /// "field `name`: problem".
    pub fn invalid_field(name: &str, problem: impl fmt::Display) -> Self {
        Self::new(format!("field `{name}`: {problem}"))
    }

    /// The message, as the host will record it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Self::new(format!("invalid JSON: {error}"))
    }
}

impl From<serde_path_to_error::Error<serde_json::Error>> for Error {
    fn from(error: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." {
            Self::new(inner.to_string())
        } else {
            Self::invalid_field(&path, inner)
        }
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}
