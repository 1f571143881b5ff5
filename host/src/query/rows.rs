//! SQL for reads, derived only from a collection's declaration; request text only ever
//! arrives as bound parameters, validated against the declared field type first.
//!
//! Rows are answered as JSON objects: decimals as strings (exact), timestamps as RFC 3339 UTC
//! strings, dates as `YYYY-MM-DD`, JSON and lists as they are. Internal columns (the search
//! document) are never returned.

use axum::http::StatusCode;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::contract::{Collection, Field, FieldType};
use crate::http_error::ApiError;
use crate::sink::postgres::ddl::{ident, qualified};

/// `read_models."<collection>"`.
pub(super) fn view(collection: &Collection) -> String {
    qualified("read_models", &collection.name)
}

/// The expression of one field as it appears in a row's JSON.
fn json_expr(field: &Field) -> String {
    let column = format!("t.{}", ident(&field.name));
    match field.type_ {
        FieldType::Decimal => format!("{column}::text"),
        FieldType::Timestamp => {
            format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
        }
        FieldType::Date => format!("{column}::text"),
        _ => column,
    }
}

/// `jsonb_build_object(...)` of a row of `collection` aliased `t`.
pub(super) fn row_json(collection: &Collection) -> String {
    // jsonb_build_object takes at most 100 arguments: 50 fields per call, concatenated.
    collection
        .fields
        .chunks(50)
        .map(|chunk| {
            let pairs: Vec<String> = chunk.iter().map(|f| format!("'{}', {}", f.name, json_expr(f))).collect();
            format!("jsonb_build_object({})", pairs.join(", "))
        })
        .collect::<Vec<_>>()
        .join(" || ")
}

/// The PostgreSQL type a parameter is cast to, for a field.
pub(super) fn cast(field: &Field) -> Result<&'static str, ApiError> {
    Ok(match field.type_ {
        FieldType::Boolean => "boolean",
        FieldType::Integer => "bigint",
        FieldType::Float => "double precision",
        FieldType::Decimal => "numeric",
        FieldType::Text => "text",
        FieldType::Timestamp => "timestamptz",
        FieldType::Date => "date",
        FieldType::Json | FieldType::List(_) => {
            return Err(bad(&field.name, "json and list fields cannot be compared"))
        }
    })
}

/// The page size of a request: `limit`, or the configured default.
pub(super) fn limit(text: Option<&String>, config: &crate::config::QueryConfig) -> Result<usize, ApiError> {
    match text {
        None => Ok(config.default_limit),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=config.max_limit).contains(l))
            .ok_or_else(|| bad("limit", &format!("expected a number from 1 to {}", config.max_limit))),
    }
}

/// A 400 naming the parameter at fault.
pub(super) fn bad(parameter: &str, message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", format!("{parameter}: {message}"))
}

/// Checks a request value against a field's type; returns it in the text form PostgreSQL
/// parses for that type.
pub(super) fn parse_value(parameter: &str, field: &Field, text: &str) -> Result<String, ApiError> {
    let ok = match field.type_ {
        FieldType::Boolean => matches!(text, "true" | "false"),
        FieldType::Integer => text.parse::<i64>().is_ok(),
        FieldType::Float => text.parse::<f64>().is_ok(),
        FieldType::Decimal => rust_decimal::Decimal::from_str_exact(text).is_ok(),
        FieldType::Text => true,
        FieldType::Timestamp => parse_instant(text).is_some(),
        FieldType::Date => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok(),
        FieldType::Json | FieldType::List(_) => false,
    };
    if !ok {
        return Err(bad(parameter, &format!("`{text}` is not a valid {}", type_name(&field.type_))));
    }
    Ok(match field.type_ {
        FieldType::Timestamp => parse_instant(text).expect("checked").to_rfc3339(),
        _ => text.to_string(),
    })
}

/// An RFC 3339 instant, or a date (meaning its midnight UTC).
pub(super) fn parse_instant(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&chrono::Utc)).ok().or_else(|| {
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
    })
}

fn type_name(field_type: &FieldType) -> &'static str {
    match field_type {
        FieldType::Boolean => "boolean (true or false)",
        FieldType::Integer => "integer",
        FieldType::Float => "number",
        FieldType::Decimal => "decimal",
        FieldType::Text => "text",
        FieldType::Timestamp => "timestamp (RFC 3339, or a date YYYY-MM-DD)",
        FieldType::Date => "date (YYYY-MM-DD)",
        FieldType::Json => "JSON document",
        FieldType::List(_) => "list",
    }
}

/// The position after the last row of a page: the sort value and the key of that row, tied to
/// the sort it was made for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Cursor {
    /// The sort the cursor belongs to.
    pub sort: String,
    /// The last row's sort value, as PostgreSQL printed it.
    pub value: Option<String>,
    /// The last row's primary key, as text.
    pub key: Vec<String>,
}

impl Cursor {
    /// The opaque form clients send back.
    pub(super) fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("serializable"))
    }

    /// Decodes a cursor, checking it was made for `sort`.
    pub(super) fn decode(text: &str, sort: &str) -> Result<Cursor, ApiError> {
        let cursor: Cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| bad("cursor", "not a cursor returned by this API"))?;
        if cursor.sort != sort {
            return Err(bad("cursor", &format!("the cursor belongs to sort `{}`, not `{sort}`", cursor.sort)));
        }
        Ok(cursor)
    }
}

/// Collects SQL parameters, all bound as text and cast in SQL.
#[derive(Debug, Default, Clone)]
pub(super) struct Params {
    values: Vec<String>,
}

impl Params {
    /// Adds a value; returns its placeholder cast to `cast` (e.g. `$3::date`).
    pub(super) fn push(&mut self, value: String, cast: &str) -> String {
        self.values.push(value);
        format!("${}::{cast}", self.values.len())
    }

    /// Binds every value to a query, in order.
    pub(super) fn bind<'q>(
        &'q self,
        mut query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        for value in &self.values {
            query = query.bind(value);
        }
        query
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_belong_to_their_sort() {
        let cursor = Cursor {
            sort: "-createdAt".into(),
            value: Some("2026-11-20 09:00:00+00".into()),
            key: vec!["ord-1".into()],
        };
        let text = cursor.encode();
        assert_eq!(Cursor::decode(&text, "-createdAt").unwrap(), cursor);
        assert!(Cursor::decode(&text, "total").unwrap_err().message.contains("belongs to sort `-createdAt`"));
        assert!(Cursor::decode("garbage!", "total").unwrap_err().message.starts_with("cursor:"));
    }

    #[test]
    fn instants_accept_rfc3339_and_dates() {
        assert_eq!(parse_instant("2026-11-20").unwrap().to_rfc3339(), "2026-11-20T00:00:00+00:00");
        assert_eq!(parse_instant("2026-11-20T10:00:00+01:00").unwrap().to_rfc3339(), "2026-11-20T09:00:00+00:00");
        assert!(parse_instant("yesterday").is_none());
    }
}
