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

use super::consistency::Consistency;
use super::read::{resolve, settle};
use super::rows::{self, bad, parse_instant, Cursor, Params};
use crate::contract::Collection;
use crate::http_error::ApiError;
use crate::registry::Deployment;
use crate::shared::Shared;
use crate::sink::postgres::ddl::{ident, SEARCH_COLUMN};

/// The collection searched.
pub(super) const COLLECTION: &str = "order_search";

const PARAMETERS: &[&str] = &["q", "status", "customerId", "from", "to", "sort", "limit", "cursor", "after", "wait_ms"];

/// Most lexemes the last word expands to before the search falls back to a prefix scan.
const MAX_EXPANSIONS: i64 = 32;
/// Hits counted exactly; beyond, the total is a lower bound (`total_exact: false`).
const COUNT_CAP: i64 = 10_000;

/// The words of a query, lowercased, without tsquery syntax. Accents are folded in SQL.
pub(crate) fn words(q: &str) -> Vec<String> {
    q.split(|c: char| {
        c.is_whitespace() || matches!(c, '\'' | '\\' | '&' | '|' | '!' | '(' | ')' | ':' | '<' | '>' | '*')
    })
    .map(|w| w.trim_matches(|c: char| matches!(c, '-' | '.' | ',' | ';' | '"')))
    .filter(|w| !w.is_empty())
    .map(str::to_lowercase)
    .collect()
}

/// The tsquery text of a search: every word a quoted lexeme, all required; the last one either
/// the whole lexemes it expands to (`expanded`) or, without an expansion, a prefix.
pub(crate) fn tsquery(words: &[String], expanded: Option<&[String]>) -> Option<String> {
    let (last, rest) = words.split_last()?;
    let mut terms: Vec<String> = rest.iter().map(|w| format!("'{w}'")).collect();
    terms.push(match expanded {
        Some(lexemes) => format!("({})", lexemes.iter().map(|l| format!("'{l}'")).collect::<Vec<_>>().join(" | ")),
        None => format!("'{last}':*"),
    });
    Some(terms.join(" & "))
}

/// The lexemes starting with `word` (accent-folded), when there are few enough to list; `None`
/// to search by prefix instead. Only plain words expand: a hyphenated one (a SKU, an order id)
/// is several lexemes to the parser.
async fn expand(pool: &sqlx::PgPool, schema: &str, word: &str) -> Result<Option<Vec<String>>, ApiError> {
    if !word.chars().all(char::is_alphanumeric) {
        return Ok(None);
    }
    let lexicon = crate::sink::postgres::ddl::qualified(schema, &crate::sink::postgres::ddl::lexicon(COLLECTION));
    let lexemes: Result<Vec<String>, _> = sqlx::query_scalar(&format!(
        "SELECT word FROM {lexicon}, (SELECT lower(public.unaccent('public.unaccent'::regdictionary, $1)) COLLATE \"C\" AS p) x \
         WHERE word >= x.p AND word < x.p || chr(1114111) ORDER BY word LIMIT {}",
        MAX_EXPANSIONS + 1
    ))
    .bind(word)
    .fetch_all(pool)
    .await;
    let lexemes = match lexemes {
        Ok(lexemes) => lexemes,
        // A deployment created before lexicons existed: search by prefix.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => return Ok(None),
        Err(e) => return Err(ApiError::internal(e)),
    };
    Ok((lexemes.len() as i64 <= MAX_EXPANSIONS).then_some(lexemes))
}

/// A search request, checked: the same for both engines.
struct Request {
    /// The words of `q` (none without `q`).
    words: Vec<String>,
    /// `(field, value)` equality filters.
    equals: Vec<(&'static str, String)>,
    /// Created at or after, before.
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
    /// `relevance`, `createdAt`, `-createdAt`, `total` or `-total`.
    sort: String,
    limit: usize,
    cursor: Option<String>,
}

impl Request {
    fn parse(params: &HashMap<String, String>, config: &crate::config::QueryConfig) -> Result<Request, ApiError> {
        let limit = rows::limit(params.get("limit"), config)?;
        let words = params.get("q").map(|q| words(q)).unwrap_or_default();
        let mut equals = Vec::new();
        for (parameter, column) in [("status", "status"), ("customerId", "customer_id")] {
            if let Some(value) = params.get(parameter) {
                equals.push((column, value.clone()));
            }
        }
        let instant = |parameter: &str| {
            params
                .get(parameter)
                .map(|value| {
                    parse_instant(value).ok_or_else(|| {
                        bad(parameter, &format!("`{value}` is not an RFC 3339 timestamp or a date (YYYY-MM-DD)"))
                    })
                })
                .transpose()
        };
        let (from, to) = (instant("from")?, instant("to")?);
        let sort = match params.get("sort").map(String::as_str) {
            None if !words.is_empty() => "relevance",
            None => "-createdAt",
            Some("relevance") if words.is_empty() => return Err(bad("sort", "relevance needs q")),
            Some(s @ ("relevance" | "createdAt" | "-createdAt" | "total" | "-total")) => s,
            Some(other) => {
                return Err(bad(
                    "sort",
                    &format!("`{other}` is not one of relevance, createdAt, -createdAt, total, -total"),
                ))
            }
        }
        .to_string();
        Ok(Request { words, equals, from, to, sort, limit, cursor: params.get("cursor").cloned() })
    }

    fn answer(
        &self,
        hits: Vec<Value>,
        total: i64,
        exact: bool,
        next: Option<String>,
        consistency: Consistency,
    ) -> Value {
        json!({"hits": hits, "total": total, "total_exact": exact, "next_cursor": next, "sort": self.sort, "consistency": consistency})
    }
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
pub(super) async fn search(
    State(shared): State<Shared>,
    Query(mut params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    if let Some(unknown) = params.keys().find(|k| !PARAMETERS.contains(&k.as_str())) {
        return Err(bad(unknown, "unknown parameter"));
    }
    let (deployment, collection) = resolve(&shared, COLLECTION).await?;
    let consistency = settle(&shared, &deployment, &collection, &mut params).await?;
    let request = Request::parse(&params, &shared.config.query)?;
    let answer = if super::read::on_engine(&collection) {
        on_engine(&shared, &deployment, &collection, &request, consistency).await?
    } else {
        on_postgres(&shared, &deployment, &collection, &request, consistency).await?
    };
    Ok(Json(answer))
}

/// The search on the search engine: the words through the same folding analyzer, all
/// required, the last one a prefix (`match_bool_prefix`); the order id as the tiebreaker.
async fn on_engine(
    shared: &Shared,
    deployment: &Deployment,
    collection: &Collection,
    request: &Request,
    consistency: Consistency,
) -> Result<Value, ApiError> {
    let (engine, index) = super::engine::target(shared, deployment, collection)?;
    let mut filters: Vec<Value> =
        request.equals.iter().map(|(field, value)| json!({"term": {*field: value}})).collect();
    let mut range = serde_json::Map::new();
    if let Some(from) = request.from {
        range.insert("gte".into(), json!(from.to_rfc3339()));
    }
    if let Some(to) = request.to {
        range.insert("lt".into(), json!(to.to_rfc3339()));
    }
    if !range.is_empty() {
        filters.push(json!({"range": {"created_at": range}}));
    }
    let mut query = json!({"bool": {"filter": filters, "must_not": [super::engine::live()]}});
    if !request.words.is_empty() {
        query["bool"]["must"] = json!([{"match_bool_prefix": {crate::sink::elastic::index::SEARCH: {
            "query": request.words.join(" "), "operator": "and", "analyzer": "projector_query"}}}]);
    }
    let sort = match request.sort.as_str() {
        "relevance" => json!([{"_score": {"order": "desc"}}, {"order_id": {"order": "asc"}}]),
        field_sort => {
            let (descending, name) = match field_sort.strip_prefix('-') {
                Some(name) => (true, name),
                None => (false, field_sort),
            };
            let field = super::read::field(collection, if name == "total" { "total" } else { "created_at" })
                .ok_or_else(|| ApiError::internal(format!("{COLLECTION} declares no field for sort {name}")))?;
            super::engine::sort_clauses(collection, field, descending)
        }
    };
    // As on PostgreSQL: the first page of a full-text search counts every hit, other pages
    // count up to the cap.
    let counted_in_page = !request.words.is_empty() && request.cursor.is_none();
    let track = if counted_in_page { json!(true) } else { json!(COUNT_CAP) };
    let mut body = json!({"size": request.limit + 1, "query": query, "sort": sort, "track_total_hits": track});
    if let Some(text) = &request.cursor {
        body["search_after"] = super::engine::after(text, &request.sort)?;
    }
    let answer = super::engine::search(engine, &index, &body).await?;
    let (mut hits, next) = super::engine::page(collection, &answer, &request.sort, request.limit)?;
    if request.sort == "relevance" {
        for (hit, found) in hits.iter_mut().zip(answer["hits"]["hits"].as_array().into_iter().flatten()) {
            hit["_score"] = found["_score"].clone();
        }
    }
    let total = answer["hits"]["total"]["value"].as_i64().unwrap_or(0);
    let exact = answer["hits"]["total"]["relation"] == "eq";
    Ok(request.answer(hits, total, exact, next, consistency))
}

/// The search on PostgreSQL: the words as a tsquery over the generated search document.
async fn on_postgres(
    shared: &Shared,
    deployment: &Deployment,
    collection: &Collection,
    request: &Request,
    consistency: Consistency,
) -> Result<Value, ApiError> {
    let mut sql = Params::default();
    let mut conditions = Vec::new();
    let pool = shared.database.pool();
    let words = &request.words;
    let expanded = match words.last() {
        Some(last) => expand(pool, &deployment.schema, last).await?,
        None => None,
    };
    if expanded.as_ref().is_some_and(Vec::is_empty) {
        // The last word starts no lexeme at all: nothing can match.
        return Ok(request.answer(Vec::new(), 0, true, None, consistency));
    }
    let query = tsquery(words, expanded.as_deref()).map(|text| sql.push(text, "text"));
    if let Some(query) = &query {
        conditions.push(format!("t.{} @@ projector.search_query({query})", ident(SEARCH_COLUMN)));
    }
    for (column, value) in &request.equals {
        conditions.push(format!("t.{} = {}", ident(column), sql.push(value.clone(), "text")));
    }
    for (instant, op) in [(request.from, ">="), (request.to, "<")] {
        if let Some(instant) = instant {
            conditions.push(format!("t.created_at {op} {}", sql.push(instant.to_rfc3339(), "timestamptz")));
        }
    }
    // The count sees the filters only: keep their parameters apart from the page's.
    let (filters, filter_params) = (conditions.clone(), sql.clone());

    let sort = request.sort.as_str();
    let (key, cast, descending) = match sort {
        "relevance" => {
            let query = query.as_ref().ok_or_else(|| bad("sort", "relevance needs q"))?;
            (format!("ts_rank(t.{}, projector.search_query({query}))", ident(SEARCH_COLUMN)), "real", true)
        }
        "createdAt" | "-createdAt" => {
            ("COALESCE(t.created_at, '-infinity'::timestamptz)".to_string(), "timestamptz", sort.starts_with('-'))
        }
        _ => ("COALESCE(t.total, '-Infinity'::numeric)".to_string(), "numeric", sort.starts_with('-')),
    };
    if let Some(text) = &request.cursor {
        let cursor = Cursor::decode(text, sort)?;
        let [id] = cursor.key.as_slice() else { return Err(bad("cursor", "not a cursor of this search")) };
        let value = sql.push(cursor.value.clone().unwrap_or_default(), cast);
        let id = sql.push(id.clone(), "text");
        let beyond = if descending { "<" } else { ">" };
        conditions.push(format!("({key} {beyond} {value} OR ({key} = {value} AND t.order_id > {id}))"));
    }
    let clause = |conditions: &[String]| {
        if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        }
    };
    let direction = if descending { "DESC" } else { "ASC" };
    let view = rows::view(collection);
    let limit = request.limit;
    // A first page of a full-text search ranks every hit anyway: counting them on the way
    // costs nothing more. Otherwise a separate count, exact up to COUNT_CAP.
    let counted_in_page = query.is_some() && request.cursor.is_none();
    let window = if counted_in_page { "count(*) OVER ()" } else { "0::bigint" };
    let page_sql = format!(
        "SELECT ({})::text, ({key})::text, t.order_id, {window} FROM {view} t {} ORDER BY {key} {direction}, t.order_id LIMIT {}",
        rows::row_json(collection),
        clause(&conditions),
        limit + 1
    );
    let fetched = sql.bind(sqlx::query(&page_sql)).fetch_all(pool).await.map_err(ApiError::internal)?;
    let (total, total_exact) = if counted_in_page {
        (fetched.first().map_or(0, |row| row.get::<i64, _>(3)), true)
    } else {
        let count_sql =
            format!("SELECT count(*) FROM (SELECT 1 FROM {view} t {} LIMIT {}) hits", clause(&filters), COUNT_CAP + 1);
        let counted: i64 =
            filter_params.bind(sqlx::query(&count_sql)).fetch_one(pool).await.map_err(ApiError::internal)?.get(0);
        (counted.min(COUNT_CAP), counted <= COUNT_CAP)
    };

    let mut hits = Vec::new();
    let mut next = None;
    for (index, row) in fetched.iter().enumerate() {
        if index == limit {
            let last = &fetched[index - 1];
            next = Some(Cursor { sort: sort.to_string(), value: last.get(1), key: vec![last.get(2)] }.encode());
            break;
        }
        let mut hit: Value = serde_json::from_str(&row.get::<String, _>(0)).map_err(ApiError::internal)?;
        if sort == "relevance" {
            hit["_score"] = json!(row.get::<String, _>(1).parse::<f64>().unwrap_or_default());
        }
        hits.push(hit);
    }
    Ok(request.answer(hits, total, total_exact, next, consistency))
}

#[cfg(test)]
mod tests {
    use super::{tsquery, words};

    #[test]
    fn words_become_lexemes_and_the_last_a_prefix_or_its_expansion() {
        assert_eq!(words("Zoë  Mül"), ["zoë", "mül"]);
        assert_eq!(tsquery(&words("Zoë  Mül"), None).unwrap(), "'zoë' & 'mül':*");
        let expanded = ["muller".to_string(), "mullins".to_string()];
        assert_eq!(tsquery(&words("zoe mul"), Some(&expanded)).unwrap(), "'zoe' & ('muller' | 'mullins')");
        assert_eq!(tsquery(&words("ord-1001"), None).unwrap(), "'ord-1001':*");
        assert_eq!(tsquery(&words("a'b) | c!"), None).unwrap(), "'a' & 'b' & 'c':*");
        assert_eq!(tsquery(&words("  -- ' "), None), None);
    }
}
