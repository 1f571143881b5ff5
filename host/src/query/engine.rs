//! Reads of collections on the search engine, with the same semantics as the PostgreSQL reads
//! (`read.rs`): the same row shape, filters on declared filterable fields, sorts on declared
//! sortable fields with nulls first ascending and last descending, the primary key as the
//! tiebreaker, keyset cursors (`search_after`).
//!
//! Invariants: a deployment is read through its own index (the registry says which serves, as
//! for PostgreSQL), never through the alias; tombstones of deleted documents are never answered;
//! with `after`, the index is refreshed first (`read::settle`), so what the offsets say is
//! applied is also visible to the search.

use serde_json::{json, Map, Value};

use super::read::ListRequest;
use super::rows::{self, bad, Cursor};
use crate::contract::{Collection, Field, FieldType};
use crate::http_error::ApiError;
use crate::registry::Deployment;
use crate::shared::Shared;
use crate::sink::elastic::{bulk, index, Engine};

/// The engine and the index of `collection` in `deployment`.
pub(super) fn target<'a>(
    shared: &'a Shared,
    deployment: &Deployment,
    collection: &Collection,
) -> Result<(&'a Engine, String), ApiError> {
    let engine = shared.search.as_ref().ok_or_else(|| {
        ApiError::internal(format!(
            "collection `{}` is on the search engine, and this host has none configured (elasticsearch.urls)",
            collection.name
        ))
    })?;
    Ok((engine, index::name(engine.config(), &collection.name, &deployment.schema)))
}

/// Makes everything written so far visible to searches of `index` (for `after`).
pub(super) async fn refresh(engine: &Engine, index: &str) -> Result<(), ApiError> {
    let answer = engine.call(elasticsearch::http::Method::Post, &format!("/{index}/_refresh"), None).await;
    checked(answer).map(drop)
}

/// Sends a search; engine failures are 503, as a database's are.
pub(super) async fn search(engine: &Engine, index: &str, body: &Value) -> Result<Value, ApiError> {
    let answer = engine.call(elasticsearch::http::Method::Post, &format!("/{index}/_search"), Some(body)).await;
    checked(answer)
}

fn checked(answer: Result<crate::sink::elastic::Answer, crate::sink::SinkError>) -> Result<Value, ApiError> {
    match answer {
        Ok(answer) if (200..300).contains(&answer.status) => Ok(answer.body),
        Ok(answer) => Err(ApiError::internal(format!("the search engine refused the read: {}", answer.reason()))),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

/// Excludes tombstones.
pub(super) fn live() -> Value {
    json!({"term": {index::DELETED: true}})
}

/// A stored document as a row: every declared field, null when absent.
pub(super) fn row(collection: &Collection, source: &Value) -> Value {
    let fields: Map<String, Value> = collection
        .fields
        .iter()
        .map(|f| (f.name.clone(), source.get(&f.name).cloned().unwrap_or(Value::Null)))
        .collect();
    Value::Object(fields)
}

/// One document by its key parts (as the URL gives them); `None` when there is none.
pub(super) async fn get_row(
    shared: &Shared,
    deployment: &Deployment,
    collection: &Collection,
    parts: &[&str],
) -> Result<Option<Value>, ApiError> {
    let (engine, index) = target(shared, deployment, collection)?;
    let key = collection
        .primary_key
        .iter()
        .zip(parts)
        .map(|(name, text)| key_part(field(collection, name), text))
        .collect::<Result<Vec<_>, _>>()?;
    let id = bulk::document_id(&key).map_err(|m| bad("key", &m))?;
    let path = format!("/{index}/_doc/{}", percent(&id));
    let answer = engine.call(elasticsearch::http::Method::Get, &path, None).await;
    let body = match answer {
        Ok(answer) if answer.status == 404 => return Ok(None),
        other => checked(other)?,
    };
    let source = &body["_source"];
    if body["found"] != true || source[index::DELETED] == true {
        return Ok(None);
    }
    Ok(Some(row(collection, source)))
}

/// A page of documents, as [`super::read::list`] answers for PostgreSQL.
pub(super) async fn list(
    shared: &Shared,
    deployment: &Deployment,
    collection: &Collection,
    request: ListRequest,
) -> Result<(Vec<Value>, Option<String>), ApiError> {
    let (engine, index) = target(shared, deployment, collection)?;
    let limit = rows::limit(request.limit.as_ref(), &shared.config.query)?;
    let (sort, descending, sort_field) = request.sorting(collection)?;
    if matches!(sort_field.type_, FieldType::Json | FieldType::List(_)) {
        return Err(bad("order_by", "json and list fields cannot be sorted"));
    }
    let mut filters = Vec::new();
    for (name, value) in &request.equals {
        let f = field(collection, name);
        filters.push(json!({"term": {name: typed(name, f, value)?}}));
    }
    for (name, op, value) in &request.ranges {
        let f = field(collection, name);
        let bound = if *op == ">=" { "gte" } else { "lte" };
        filters.push(json!({"range": {name: {bound: typed(name, f, value)?}}}));
    }
    let mut body = json!({
        "size": limit + 1,
        "query": {"bool": {"filter": filters, "must_not": [live()]}},
        "sort": sort_clauses(collection, sort_field, descending),
    });
    if let Some(text) = &request.cursor {
        body["search_after"] = after(text, &sort)?;
    }
    let answer = search(engine, &index, &body).await?;
    page(collection, &answer, &sort, limit)
}

/// The sort: the field (nulls first ascending, last descending, as in PostgreSQL), then the
/// primary key ascending, a unique tiebreaker.
pub(super) fn sort_clauses(collection: &Collection, sort_field: &Field, descending: bool) -> Value {
    let (order, missing) = if descending { ("desc", "_last") } else { ("asc", "_first") };
    let mut clauses = vec![json!({&sort_field.name: {"order": order, "missing": missing}})];
    for key in &collection.primary_key {
        clauses.push(json!({key: {"order": "asc"}}));
    }
    Value::Array(clauses)
}

/// The `search_after` of a cursor made by [`page`] for `sort`.
pub(super) fn after(text: &str, sort: &str) -> Result<Value, ApiError> {
    let cursor = Cursor::decode(text, sort)?;
    cursor
        .value
        .as_deref()
        .and_then(|v| serde_json::from_str::<Value>(v).ok())
        .filter(|v| v.is_array() && cursor.key.is_empty())
        .ok_or_else(|| bad("cursor", "not a cursor of this collection"))
}

/// The rows of a search answer asked for `limit + 1` hits, and the next page's cursor.
pub(super) fn page(
    collection: &Collection,
    answer: &Value,
    sort: &str,
    limit: usize,
) -> Result<(Vec<Value>, Option<String>), ApiError> {
    let hits = answer["hits"]["hits"].as_array().cloned().unwrap_or_default();
    let more = hits.len() > limit;
    let rows = hits.iter().take(limit).map(|hit| row(collection, &hit["_source"])).collect();
    let next = match (more, hits.get(limit.saturating_sub(1))) {
        (true, Some(last)) => {
            Some(Cursor { sort: sort.to_string(), value: Some(last["sort"].to_string()), key: Vec::new() }.encode())
        }
        _ => None,
    };
    Ok((rows, next))
}

fn field<'a>(collection: &'a Collection, name: &str) -> &'a Field {
    super::read::field(collection, name).expect("checked by the caller")
}

/// A request value as the engine compares it with the stored field.
fn typed(parameter: &str, field: &Field, text: &str) -> Result<Value, ApiError> {
    let checked = rows::parse_value(parameter, field, text)?;
    Ok(match field.type_ {
        FieldType::Boolean => json!(checked == "true"),
        FieldType::Integer => json!(checked.parse::<i64>().expect("checked")),
        FieldType::Float | FieldType::Decimal => json!(checked.parse::<f64>().expect("checked")),
        _ => json!(checked),
    })
}

/// A key part from its URL text, in the form the document id is made of.
fn key_part(field: &Field, text: &str) -> Result<crate::changeset::KeyPart, ApiError> {
    use crate::changeset::KeyPart;
    rows::parse_value("key", field, text)?;
    Ok(match field.type_ {
        FieldType::Integer => KeyPart::Int(text.parse().expect("checked")),
        FieldType::Boolean => KeyPart::Bool(text == "true"),
        FieldType::Date => {
            let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("checked");
            KeyPart::Date((day - crate::changeset::epoch()).num_days() as i32)
        }
        FieldType::Timestamp => KeyPart::Timestamp(rows::parse_instant(text).expect("checked").timestamp_micros()),
        _ => KeyPart::Text(text.to_string()),
    })
}

/// A document id as one URL path segment.
fn percent(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
