//! `GET /orders/search`: full-text order search over the `order_search` read model.
//!
//! Words match the collection's search document (order id, customer name, product names, SKUs)
//! case- and accent-insensitively; the last word matches as a prefix (search as you type).
//! Results are ranked by relevance, or sorted by creation time or total, and paged by keyset:
//! the cursor holds the last hit's sort value and order id, never an offset.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::Json;
use serde_json::{json, Value};
use sqlx::Row;

use super::read::{resolve, settle};
use super::rows::{self, bad, parse_instant, Cursor, Params};
use crate::admin::ApiError;
use crate::sink::postgres::ddl::{ident, SEARCH_COLUMN};
use crate::supervisor::Shared;

/// The collection searched.
pub const COLLECTION: &str = "order_search";

const PARAMETERS: &[&str] = &["q", "status", "customerId", "from", "to", "sort", "limit", "cursor", "after", "wait_ms"];

/// The tsquery text of a search: every word as a quoted lexeme, the last one as a prefix.
/// `None` when the query has no word.
pub fn tsquery(q: &str) -> Option<String> {
    let words: Vec<String> = q
        .split(|c: char| c.is_whitespace() || matches!(c, '\'' | '\\' | '&' | '|' | '!' | '(' | ')' | ':' | '<' | '>' | '*'))
        .map(|w| w.trim_matches(|c: char| matches!(c, '-' | '.' | ',' | ';' | '"')))
        .filter(|w| !w.is_empty())
        .map(|w| format!("'{}'", w.to_lowercase()))
        .collect();
    let (last, rest) = words.split_last()?;
    let mut terms: Vec<String> = rest.to_vec();
    terms.push(format!("{last}:*"));
    Some(terms.join(" & "))
}

/// `GET /orders/search?q=&status=&customerId=&from=&to=&sort=&limit=&cursor=`.
#[utoipa::path(get, path = "/orders/search", tag = "orders",
    params(("q" = Option<String>, Query, description = "Words from the customer name, product names, SKUs or order id; the last one matches as a prefix"),
           ("status" = Option<String>, Query, description = "Only orders in this status"),
           ("customerId" = Option<String>, Query, description = "Only this customer's orders"),
           ("from" = Option<String>, Query, description = "Created at or after (RFC 3339, or a date)"),
           ("to" = Option<String>, Query, description = "Created before (RFC 3339, or a date)"),
           ("sort" = Option<String>, Query, description = "relevance (default with q), createdAt, -createdAt (default without q), total, -total"),
           ("limit" = Option<usize>, Query, description = "Page size"),
           ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
           ("after" = Option<String>, Query, description = "Wait until <partition>:<offset> is applied"),
           ("wait_ms" = Option<u64>, Query, description = "How long to wait for `after`")),
    responses((status = 200, description = "hits, total hit count, next_cursor and consistency"),
              (status = 400, description = "A parameter is unknown or invalid (the message names it)")))]
pub async fn search(
    State(shared): State<Shared>,
    Query(mut params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    if let Some(unknown) = params.keys().find(|k| !PARAMETERS.contains(&k.as_str())) {
        return Err(bad(unknown, "unknown parameter"));
    }
    let (deployment, collection) = resolve(&shared, COLLECTION).await?;
    let consistency = settle(&shared, &deployment, &mut params).await?;
    let config = &shared.config.query;
    let limit = match params.get("limit") {
        None => config.default_limit,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=config.max_limit).contains(l))
            .ok_or_else(|| bad("limit", &format!("expected a number from 1 to {}", config.max_limit)))?,
    };

    let mut sql = Params::default();
    let mut conditions = Vec::new();
    let query = params.get("q").and_then(|q| tsquery(q)).map(|text| sql.push(text, "text"));
    if let Some(query) = &query {
        conditions.push(format!("t.{} @@ projector.search_query({query})", ident(SEARCH_COLUMN)));
    }
    for (parameter, column) in [("status", "status"), ("customerId", "customer_id")] {
        if let Some(value) = params.get(parameter) {
            conditions.push(format!("t.{} = {}", ident(column), sql.push(value.clone(), "text")));
        }
    }
    for (parameter, op) in [("from", ">="), ("to", "<")] {
        if let Some(value) = params.get(parameter) {
            let instant = parse_instant(value)
                .ok_or_else(|| bad(parameter, &format!("`{value}` is not an RFC 3339 timestamp or a date (YYYY-MM-DD)")))?;
            conditions.push(format!("t.created_at {op} {}", sql.push(instant.to_rfc3339(), "timestamptz")));
        }
    }
    // The count sees the filters only: keep their parameters apart from the page's.
    let (filters, filter_params) = (conditions.clone(), sql.clone());

    let sort = match params.get("sort").map(String::as_str) {
        None if query.is_some() => "relevance",
        None => "-createdAt",
        Some(s @ ("relevance" | "createdAt" | "-createdAt" | "total" | "-total")) => s,
        Some(other) => return Err(bad("sort", &format!("`{other}` is not one of relevance, createdAt, -createdAt, total, -total"))),
    }
    .to_string();
    let (key, cast, descending) = match sort.as_str() {
        "relevance" => {
            let query = query.as_ref().ok_or_else(|| bad("sort", "relevance needs q"))?;
            (format!("ts_rank(t.{}, projector.search_query({query}))", ident(SEARCH_COLUMN)), "real", true)
        }
        "createdAt" | "-createdAt" => ("COALESCE(t.created_at, '-infinity'::timestamptz)".to_string(), "timestamptz", sort.starts_with('-')),
        _ => ("COALESCE(t.total, '-Infinity'::numeric)".to_string(), "numeric", sort.starts_with('-')),
    };
    if let Some(text) = params.get("cursor") {
        let cursor = Cursor::decode(text, &sort)?;
        let [id] = cursor.key.as_slice() else { return Err(bad("cursor", "not a cursor of this search")) };
        let value = sql.push(cursor.value.clone().unwrap_or_default(), cast);
        let id = sql.push(id.clone(), "text");
        let beyond = if descending { "<" } else { ">" };
        conditions.push(format!("({key} {beyond} {value} OR ({key} = {value} AND t.order_id > {id}))"));
    }
    let clause = |conditions: &[String]| {
        if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) }
    };
    let direction = if descending { "DESC" } else { "ASC" };
    let view = rows::view(&collection);
    let page_sql = format!(
        "SELECT ({})::text, ({key})::text, t.order_id FROM {view} t {} ORDER BY {key} {direction}, t.order_id LIMIT {}",
        rows::row_json(&collection),
        clause(&conditions),
        limit + 1
    );
    let count_sql = format!("SELECT count(*) FROM {view} t {}", clause(&filters));
    let pool = shared.database.pool();
    let fetched = sql.bind(sqlx::query(&page_sql)).fetch_all(pool).await.map_err(ApiError::internal)?;
    let total: i64 = filter_params.bind(sqlx::query(&count_sql)).fetch_one(pool).await.map_err(ApiError::internal)?.get(0);

    let mut hits = Vec::new();
    let mut next = None;
    for (index, row) in fetched.iter().enumerate() {
        if index == limit {
            let last = &fetched[index - 1];
            next = Some(Cursor { sort: sort.clone(), value: last.get(1), key: vec![last.get(2)] }.encode());
            break;
        }
        let mut hit: Value = serde_json::from_str(&row.get::<String, _>(0)).map_err(ApiError::internal)?;
        if sort == "relevance" {
            hit["_score"] = json!(row.get::<String, _>(1).parse::<f64>().unwrap_or_default());
        }
        hits.push(hit);
    }
    Ok(Json(json!({"hits": hits, "total": total, "next_cursor": next, "sort": sort, "consistency": consistency})))
}

#[cfg(test)]
mod tests {
    use super::tsquery;

    #[test]
    fn words_become_lexemes_and_the_last_a_prefix() {
        assert_eq!(tsquery("Zoë  Mül").unwrap(), "'zoë' & 'mül':*");
        assert_eq!(tsquery("ord-1001").unwrap(), "'ord-1001':*");
        assert_eq!(tsquery("a'b) | c!").unwrap(), "'a' & 'b' & 'c':*");
        assert_eq!(tsquery("  -- ' "), None);
    }
}
