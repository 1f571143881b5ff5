//! Reads of any live read model, on the fields its plugin declared, and the order
//! conveniences built on them.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use sqlx::Row;

use super::consistency::{self, Consistency};
use super::rows::{self, bad, Cursor, Params};
use crate::contract::{Collection, Field, FieldType};
use crate::http_error::ApiError;
use crate::registry::Deployment;
use crate::shared::Shared;
use crate::sink::postgres::ddl::ident;

/// The live deployment serving `name`, and the collection's declaration.
pub(super) async fn resolve(shared: &Shared, name: &str) -> Result<(Deployment, Collection), ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_collection",
            format!("no live read model serves collection `{name}`"),
        )
    };
    // The supervisor keeps the catalog current (it reconciles on every registry change); the
    // registry answers for a collection the catalog does not know yet.
    let cached = shared.catalog.read().expect("not poisoned").get(name).cloned();
    let deployment = match cached {
        Some(deployment) => deployment,
        None => shared.registry.serving_collection(name).await?.ok_or_else(not_found)?,
    };
    let collection = deployment.spec.collections.iter().find(|c| c.name == name).cloned().ok_or_else(not_found)?;
    Ok((deployment, collection))
}

/// Honors `after` and `wait_ms`, then reports the freshness of the deployment.
pub(super) async fn settle(
    shared: &Shared,
    deployment: &Deployment,
    collection: &Collection,
    params: &mut HashMap<String, String>,
) -> Result<Consistency, ApiError> {
    let wait = match params.remove("wait_ms") {
        None => Duration::ZERO,
        Some(text) => {
            let ms: u64 = text.parse().map_err(|_| bad("wait_ms", "expected milliseconds"))?;
            Duration::from_millis(ms.min(shared.config.query.max_wait_ms))
        }
    };
    if let Some(after) = params.remove("after") {
        let after = consistency::parse_after(&after)?;
        consistency::wait_for(shared, deployment, &after, wait).await?;
        if on_engine(collection) {
            // Applied is not yet searchable until the engine refreshes.
            let (engine, index) = super::engine::target(shared, deployment, collection)?;
            super::engine::refresh(engine, &index).await?;
        }
    }
    consistency::consistency(shared, deployment).await
}

pub(super) fn field<'a>(collection: &'a Collection, name: &str) -> Option<&'a Field> {
    collection.fields.iter().find(|f| f.name == name)
}

/// Whether the collection is on the search engine.
pub(super) fn on_engine(collection: &Collection) -> bool {
    collection.sink == crate::contract::Sink::Elasticsearch
}

/// A page request on one collection.
pub(super) struct ListRequest {
    /// `field = value` filters (declared filterable fields only).
    pub equals: Vec<(String, String)>,
    /// `field >= value` and `field <= value` filters.
    pub ranges: Vec<(String, &'static str, String)>,
    /// Sort field, `-` prefixed for descending; the primary key when absent.
    pub order_by: Option<String>,
    /// Page size.
    pub limit: Option<String>,
    /// Cursor of the previous page.
    pub cursor: Option<String>,
}

impl ListRequest {
    /// The sort (`order_by`, else the primary key), whether it is descending, and its field: a
    /// sortable one or a key field.
    pub(super) fn sorting<'a>(&self, collection: &'a Collection) -> Result<(String, bool, &'a Field), ApiError> {
        let sort = self.order_by.clone().unwrap_or_else(|| collection.primary_key[0].clone());
        let (descending, name) = match sort.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, sort.as_str()),
        };
        let sort_field = field(collection, name)
            .filter(|f| f.sortable || collection.primary_key.contains(&f.name))
            .ok_or_else(|| bad("order_by", &format!("`{name}` is not a sortable field")))?;
        Ok((sort, descending, sort_field))
    }
}

/// Builds a page request from the generic parameters: `<field>=<value>`, `order_by`, `limit`,
/// `cursor`. Anything else is a 400 naming it.
fn generic_request(collection: &Collection, mut params: HashMap<String, String>) -> Result<ListRequest, ApiError> {
    let order_by = params.remove("order_by");
    let limit = params.remove("limit");
    let cursor = params.remove("cursor");
    let mut equals = Vec::new();
    let mut names: Vec<String> = params.keys().cloned().collect();
    names.sort();
    for name in names {
        let value = params.remove(&name).expect("listed");
        match field(collection, &name) {
            Some(f) if f.filterable || collection.primary_key.contains(&f.name) => equals.push((name, value)),
            Some(_) => return Err(bad(&name, "this field is not declared filterable")),
            None => return Err(bad(&name, "unknown parameter")),
        }
    }
    Ok(ListRequest { equals, ranges: Vec::new(), order_by, limit, cursor })
}

/// Runs a page request: rows as JSON, and the cursor of the next page when there is one.
pub(super) async fn list(
    shared: &Shared,
    deployment: &Deployment,
    collection: &Collection,
    request: ListRequest,
) -> Result<(Vec<Value>, Option<String>), ApiError> {
    if on_engine(collection) {
        return super::engine::list(shared, deployment, collection, request).await;
    }
    let limit = rows::limit(request.limit.as_ref(), &shared.config.query)?;
    let (sort, descending, sort_field) = request.sorting(collection)?;
    let sort_expr = sort_key(sort_field)?;
    let key: Vec<&Field> =
        collection.primary_key.iter().map(|k| field(collection, k).expect("validated spec")).collect();
    let key_exprs: Vec<String> = key.iter().map(|f| format!("t.{}", ident(&f.name))).collect();

    let mut params = Params::default();
    let mut conditions = Vec::new();
    for (name, value) in &request.equals {
        let f = field(collection, name).expect("checked by the caller");
        let value = rows::parse_value(name, f, value)?;
        conditions.push(format!("t.{} = {}", ident(name), params.push(value, rows::cast(f)?)));
    }
    for (name, op, value) in &request.ranges {
        let f = field(collection, name).expect("checked by the caller");
        let value = rows::parse_value(name, f, value)?;
        conditions.push(format!("t.{} {op} {}", ident(name), params.push(value, rows::cast(f)?)));
    }
    if let Some(text) = &request.cursor {
        let cursor = Cursor::decode(text, &sort)?;
        if cursor.key.len() != key.len() {
            return Err(bad("cursor", "not a cursor of this collection"));
        }
        let value = params.push(cursor.value.clone().unwrap_or_default(), rows::cast(sort_field)?);
        let keys: Vec<String> = key
            .iter()
            .zip(&cursor.key)
            .map(|(f, k)| Ok(params.push(k.clone(), rows::cast(f)?)))
            .collect::<Result<_, ApiError>>()?;
        let beyond = if descending { "<" } else { ">" };
        conditions.push(format!(
            "({sort_expr} {beyond} {value} OR ({sort_expr} = {value} AND ({}) > ({})))",
            key_exprs.join(", "),
            keys.join(", ")
        ));
    }
    let filter = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
    let direction = if descending { "DESC" } else { "ASC" };
    let key_text: Vec<String> = key_exprs.iter().map(|k| format!("{k}::text")).collect();
    let sql = format!(
        "SELECT ({})::text, ({sort_expr})::text, ARRAY[{}] FROM {} t {filter} ORDER BY {sort_expr} {direction}, {} LIMIT {}",
        rows::row_json(collection),
        key_text.join(", "),
        rows::view(collection),
        key_exprs.join(", "),
        limit + 1
    );
    let fetched = params.bind(sqlx::query(&sql)).fetch_all(shared.database.pool()).await.map_err(query_error)?;
    let more = fetched.len() > limit;
    let mut rows = Vec::new();
    let mut last: Option<Cursor> = None;
    for row in fetched.iter().take(limit) {
        let text: String = row.get(0);
        rows.push(serde_json::from_str(&text).map_err(ApiError::internal)?);
        last = Some(Cursor { sort: sort.clone(), value: row.get(1), key: row.get(2) });
    }
    Ok((rows, if more { last.map(|c| c.encode()) } else { None }))
}

/// A sort key that is never null: nulls sort first ascending, last descending.
fn sort_key(f: &Field) -> Result<String, ApiError> {
    let column = format!("t.{}", ident(&f.name));
    let lowest = match f.type_ {
        FieldType::Boolean => "false",
        FieldType::Integer => "(-9223372036854775808)::bigint",
        FieldType::Float => "'-Infinity'::double precision",
        FieldType::Decimal => "'-Infinity'::numeric",
        FieldType::Text => "''",
        FieldType::Timestamp => "'-infinity'::timestamptz",
        FieldType::Date => "'-infinity'::date",
        FieldType::Json | FieldType::List(_) => return Err(bad("order_by", "json and list fields cannot be sorted")),
    };
    Ok(format!("COALESCE({column}, {lowest})"))
}

/// Maps database errors of a read: a value PostgreSQL refuses is the client's, the rest ours.
fn query_error(error: sqlx::Error) -> ApiError {
    if let sqlx::Error::Database(db) = &error {
        if db.code().is_some_and(|c| c.starts_with("22")) {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                format!("a parameter was refused: {}", db.message()),
            );
        }
    }
    ApiError::internal(error)
}

/// One row by primary key (a composite key is comma-separated, in key order).
pub(super) async fn get_row(
    shared: &Shared,
    name: &str,
    key: &str,
    mut params: HashMap<String, String>,
) -> Result<Json<Value>, ApiError> {
    let (deployment, collection) = resolve(shared, name).await?;
    let consistency = settle(shared, &deployment, &collection, &mut params).await?;
    if let Some(unknown) = params.keys().next() {
        return Err(bad(unknown, "unknown parameter"));
    }
    let parts: Vec<&str> = if collection.primary_key.len() == 1 { vec![key] } else { key.split(',').collect() };
    if parts.len() != collection.primary_key.len() {
        return Err(bad("key", &format!("expected {} comma-separated values", collection.primary_key.len())));
    }
    let not_found = |consistency: &Consistency| {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no row of `{name}` has key `{key}`"))
            .with_details(json!({"consistency": consistency}))
    };
    if on_engine(&collection) {
        let data = super::engine::get_row(shared, &deployment, &collection, &parts).await?;
        return match data {
            Some(data) => Ok(Json(json!({"data": data, "consistency": consistency}))),
            None => Err(not_found(&consistency)),
        };
    }
    let mut sql_params = Params::default();
    let mut conditions = Vec::new();
    for (name, part) in collection.primary_key.iter().zip(parts) {
        let f = field(&collection, name).expect("validated spec");
        let value = rows::parse_value("key", f, part)?;
        conditions.push(format!("t.{} = {}", ident(name), sql_params.push(value, rows::cast(f)?)));
    }
    let sql = format!(
        "SELECT ({})::text FROM {} t WHERE {}",
        rows::row_json(&collection),
        rows::view(&collection),
        conditions.join(" AND ")
    );
    let row = sql_params.bind(sqlx::query(&sql)).fetch_optional(shared.database.pool()).await.map_err(query_error)?;
    let Some(row) = row else {
        return Err(not_found(&consistency));
    };
    let data: Value = serde_json::from_str(&row.get::<String, _>(0)).map_err(ApiError::internal)?;
    Ok(Json(json!({"data": data, "consistency": consistency})))
}

/// `GET /read-models/{collection}/{key}`.
#[utoipa::path(get, path = "/read-models/{collection}/{key}", tag = "read models",
    params(("collection" = String, Path, description = "Public collection name"),
           ("key" = String, Path, description = "Primary key (composite keys comma-separated)"),
           ("after" = Option<String>, Query, description = "Wait until <partition>:<offset> is applied"),
           ("wait_ms" = Option<u64>, Query, description = "How long to wait for `after`")),
    responses((status = 200, description = "The row and the consistency of the answer"),
              (status = 404, description = "Unknown collection or key"),
              (status = 503, description = "`after` not applied within `wait_ms`; carries the watermark")))]
pub(super) async fn read_one(
    State(shared): State<Shared>,
    Path((name, key)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    get_row(&shared, &name, &key, params).await
}

/// `GET /read-models/{collection}`.
#[utoipa::path(get, path = "/read-models/{collection}", tag = "read models",
    params(("collection" = String, Path, description = "Public collection name"),
           ("order_by" = Option<String>, Query, description = "A sortable field, `-` prefixed for descending"),
           ("limit" = Option<usize>, Query, description = "Page size"),
           ("cursor" = Option<String>, Query, description = "Cursor of the previous page"),
           ("after" = Option<String>, Query, description = "Wait until <partition>:<offset> is applied"),
           ("wait_ms" = Option<u64>, Query, description = "How long to wait for `after`")),
    responses((status = 200, description = "A page of rows (filter with <field>=<value> on filterable fields)"),
              (status = 400, description = "Unknown or undeclared parameter, bad value or cursor"),
              (status = 404, description = "Unknown collection")))]
pub(super) async fn read_many(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    Query(mut params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let (deployment, collection) = resolve(&shared, &name).await?;
    let consistency = settle(&shared, &deployment, &collection, &mut params).await?;
    let request = generic_request(&collection, params)?;
    let (rows, next) = list(&shared, &deployment, &collection, request).await?;
    Ok(Json(json!({"data": rows, "next_cursor": next, "consistency": consistency})))
}

/// (field, value) filters named by convenience parameters.
type Renamed = Vec<(String, String)>;

/// Renames convenience parameters to fields; refuses the others.
fn renamed(
    mut params: HashMap<String, String>,
    mapping: &[(&str, &str)],
    passthrough: &[&str],
) -> Result<(Renamed, HashMap<String, String>), ApiError> {
    let mut fields = Vec::new();
    for (param, field) in mapping {
        if let Some(value) = params.remove(*param) {
            fields.push((field.to_string(), value));
        }
    }
    let kept: HashMap<String, String> =
        passthrough.iter().filter_map(|p| params.remove(*p).map(|v| (p.to_string(), v))).collect();
    if let Some(unknown) = params.keys().next() {
        return Err(bad(unknown, "unknown parameter"));
    }
    Ok((fields, kept))
}

/// `GET /orders/{id}`: one order's details.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders",
    params(("id" = String, Path, description = "Order id"),
           ("after" = Option<String>, Query, description = "Wait until <partition>:<offset> is applied"),
           ("wait_ms" = Option<u64>, Query, description = "How long to wait for `after`")),
    responses((status = 200, description = "The order_details row"), (status = 404, description = "No such order")))]
pub(super) async fn order(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    get_row(&shared, "order_details", &id, params).await
}

/// `GET /orders?customerId=&status=`: order summaries, newest first.
#[utoipa::path(get, path = "/orders", tag = "orders",
    params(("customerId" = Option<String>, Query, description = "Only this customer's orders"),
           ("status" = Option<String>, Query, description = "Only orders in this status"),
           ("limit" = Option<usize>, Query, description = "Page size"),
           ("cursor" = Option<String>, Query, description = "Cursor of the previous page"),
           ("after" = Option<String>, Query, description = "Wait until <partition>:<offset> is applied"),
           ("wait_ms" = Option<u64>, Query, description = "How long to wait for `after`")),
    responses((status = 200, description = "A page of order_summaries rows, newest first")))]
pub(super) async fn orders(
    State(shared): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let (deployment, collection) = resolve(&shared, "order_summaries").await?;
    let (equals, mut kept) = renamed(
        params,
        &[("customerId", "customer_id"), ("status", "status")],
        &["limit", "cursor", "after", "wait_ms"],
    )?;
    let consistency = settle(&shared, &deployment, &collection, &mut kept).await?;
    let request = ListRequest {
        equals,
        ranges: Vec::new(),
        order_by: Some("-created_at".into()),
        limit: kept.remove("limit"),
        cursor: kept.remove("cursor"),
    };
    let (rows, next) = list(&shared, &deployment, &collection, request).await?;
    Ok(Json(json!({"data": rows, "next_cursor": next, "consistency": consistency})))
}

/// `GET /stats/daily?from=&to=`: daily order statistics, oldest day first.
#[utoipa::path(get, path = "/stats/daily", tag = "orders",
    params(("from" = Option<String>, Query, description = "First day (YYYY-MM-DD), inclusive"),
           ("to" = Option<String>, Query, description = "Last day (YYYY-MM-DD), inclusive"),
           ("limit" = Option<usize>, Query, description = "Page size"),
           ("cursor" = Option<String>, Query, description = "Cursor of the previous page")),
    responses((status = 200, description = "daily_order_stats rows")))]
pub(super) async fn daily_stats(
    State(shared): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let (deployment, collection) = resolve(&shared, "daily_order_stats").await?;
    let (bounds, mut kept) =
        renamed(params, &[("from", ">="), ("to", "<=")], &["limit", "cursor", "after", "wait_ms"])?;
    let consistency = settle(&shared, &deployment, &collection, &mut kept).await?;
    let mut ranges = Vec::new();
    for (op, value) in bounds {
        let parameter = if op == ">=" { "from" } else { "to" };
        if chrono::NaiveDate::parse_from_str(&value, "%Y-%m-%d").is_err() {
            return Err(bad(parameter, &format!("`{value}` is not a date (YYYY-MM-DD)")));
        }
        ranges.push(("day".to_string(), if op == ">=" { ">=" } else { "<=" }, value));
    }
    let request = ListRequest {
        equals: Vec::new(),
        ranges,
        order_by: Some("day".into()),
        limit: kept.remove("limit"),
        cursor: kept.remove("cursor"),
    };
    let (rows, next) = list(&shared, &deployment, &collection, request).await?;
    Ok(Json(json!({"data": rows, "next_cursor": next, "consistency": consistency})))
}
