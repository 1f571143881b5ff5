//! Storage derived from a projection's declaration: one schema per projection version with a
//! table per collection, the per-key state and the offsets; public views in `read_models`.
//!
//! Invariant: every identifier here comes from a validated [`Spec`] (lowercase ASCII, digits,
//! `_`) and is still quoted; nothing is spliced in from plugin output or requests.

use crate::contract::{Collection, Computed, Field, FieldType, ScalarType};
use crate::spec::Spec;

/// Quotes an identifier for SQL.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// Schema-wide objects the host needs, created once per database.
pub const BOOTSTRAP: &[&str] = &[
    "CREATE SCHEMA IF NOT EXISTS projector",
    "CREATE SCHEMA IF NOT EXISTS read_models",
    // Full-text search: accents folded by unaccent (a trusted extension of PostgreSQL's contrib).
    "CREATE EXTENSION IF NOT EXISTS unaccent SCHEMA public",
    // The search document of a row: its searchable texts, accent-folded, as `simple` (no
    // stemming: names, SKUs and ids are matched as written, case-insensitively). Declared
    // IMMUTABLE so a generated column can use it: it is, as long as the unaccent rules do not
    // change.
    r#"CREATE OR REPLACE FUNCTION projector.search_document(parts text[]) RETURNS tsvector
       LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
         SELECT to_tsvector('simple'::regconfig,
                            public.unaccent('public.unaccent'::regdictionary, coalesce(array_to_string(parts, ' '), '')))
       $$"#,
    // A search query written as tsquery text, accent-folded the same way.
    r#"CREATE OR REPLACE FUNCTION projector.search_query(query text) RETURNS tsquery
       LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
         SELECT to_tsquery('simple'::regconfig, public.unaccent('public.unaccent'::regdictionary, query))
       $$"#,
    // Adds JSON objects of numbers key by key, dropping keys that reach zero: the semantics
    // of an `increment` on a json field.
    r#"CREATE OR REPLACE FUNCTION projector.jsonb_add(a jsonb, b jsonb) RETURNS jsonb
       LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
         SELECT COALESCE(jsonb_object_agg(k, v), '{}'::jsonb)
         FROM (SELECT k, sum(n) AS v
               FROM (SELECT key AS k, value::numeric AS n
                       FROM jsonb_each_text(CASE WHEN jsonb_typeof(a) = 'object' THEN a ELSE '{}'::jsonb END)
                     UNION ALL
                     SELECT key, value::numeric
                       FROM jsonb_each_text(CASE WHEN jsonb_typeof(b) = 'object' THEN b ELSE '{}'::jsonb END)) AS parts
               GROUP BY k) AS sums
         WHERE v <> 0
       $$"#,
    r#"CREATE TABLE IF NOT EXISTS projector.components (
         sha256      text        PRIMARY KEY,
         wasm        bytea       NOT NULL,
         size_bytes  bigint      NOT NULL,
         uploaded_by text,
         uploaded_at timestamptz NOT NULL DEFAULT now())"#,
    r#"CREATE TABLE IF NOT EXISTS projector.deployments (
         id              bigserial   PRIMARY KEY,
         name            text        NOT NULL,
         version         integer     NOT NULL,
         build           integer     NOT NULL,
         sha256          text        NOT NULL REFERENCES projector.components (sha256),
         spec            jsonb       NOT NULL,
         schema_name     text        NOT NULL UNIQUE,
         consumer_group  text        NOT NULL,
         status          text        NOT NULL CHECK (status IN ('building', 'live', 'standby', 'failed')),
         paused          boolean     NOT NULL DEFAULT false,
         last_error      text,
         error_partition integer,
         error_offset    bigint,
         uploaded_by     text,
         created_at      timestamptz NOT NULL DEFAULT now(),
         activated_at    timestamptz,
         UNIQUE (name, version, build))"#,
    // One live deployment per projection: the one behind the public views.
    "CREATE UNIQUE INDEX IF NOT EXISTS deployments_one_live ON projector.deployments (name) WHERE status = 'live'",
    // `serving`: the deployment behind the public views, live or failed since (a registry from
    // before the column: the live ones serve).
    "ALTER TABLE projector.deployments ADD COLUMN IF NOT EXISTS serving boolean",
    "UPDATE projector.deployments SET serving = (status = 'live') WHERE serving IS NULL",
    "ALTER TABLE projector.deployments ALTER COLUMN serving SET DEFAULT false, ALTER COLUMN serving SET NOT NULL",
    "CREATE UNIQUE INDEX IF NOT EXISTS deployments_one_serving ON projector.deployments (name) WHERE serving",
    // What a deployment does with an event that fails deterministically (see `registry::Poison`).
    "ALTER TABLE projector.deployments ADD COLUMN IF NOT EXISTS on_poison text NOT NULL DEFAULT 'halt' \
     CHECK (on_poison IN ('halt', 'dead-letter'))",
    // Components removed through the admin API: the plugin directory does not bring them back.
    r#"CREATE TABLE IF NOT EXISTS projector.removed (
         sha256     text        PRIMARY KEY,
         name       text        NOT NULL,
         version    integer     NOT NULL,
         removed_at timestamptz NOT NULL DEFAULT now())"#,
];

/// The collections of `spec` stored in PostgreSQL (the others are on the search engine).
pub fn tables(spec: &Spec) -> impl Iterator<Item = &Collection> {
    spec.collections().map(|(c, _)| c).filter(|c| c.sink == crate::contract::Sink::Postgres)
}

/// Statements creating a deployment's schema and tables, idempotently.
pub fn create_storage(schema: &str, spec: &Spec) -> Vec<String> {
    let mut statements = vec![
        format!("CREATE SCHEMA IF NOT EXISTS {}", ident(schema)),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, value bytea NOT NULL)",
            qualified(schema, "_state")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (partition integer PRIMARY KEY, next_offset bigint NOT NULL, \
             last_event_at timestamptz, updated_at timestamptz NOT NULL DEFAULT now())",
            qualified(schema, "_offsets")
        ),
        dead_letters(schema),
    ];
    for collection in tables(spec) {
        statements.push(create_table(schema, collection));
        statements.extend(create_indexes(schema, collection));
        if search_document(collection).is_some() {
            statements.extend(create_lexicon(schema, collection));
        }
    }
    statements
}

/// The deployment's dead letters: events moved past without being applied (the `dead-letter`
/// poison policy, or an operator's skip), with their coordinates, bytes, error and the build
/// that refused them, and whether they were re-driven since. Headers are kept as two arrays of
/// bytes, since text and JSON cannot hold every byte a Kafka header may.
pub fn dead_letters(schema: &str) -> String {
    format!(
        r#"CREATE TABLE IF NOT EXISTS {} (
         partition            integer     NOT NULL,
         "offset"             bigint      NOT NULL,
         event_recorded       boolean     NOT NULL,
         key                  bytea,
         value                bytea,
         header_keys          bytea[]     NOT NULL DEFAULT '{{}}',
         header_values        bytea[]     NOT NULL DEFAULT '{{}}',
         timestamp_ms         bigint,
         error                text        NOT NULL,
         reason               text        NOT NULL CHECK (reason IN ('dead-letter', 'skipped')),
         sha256               text        NOT NULL,
         version              integer     NOT NULL,
         build                integer     NOT NULL,
         recorded_by          text,
         recorded_at          timestamptz NOT NULL DEFAULT now(),
         redrive_requested_at timestamptz,
         attempts             integer     NOT NULL DEFAULT 0,
         last_redrive_error   text,
         redriven_at          timestamptz,
         redriven_sha256      text,
         PRIMARY KEY (partition, "offset"))"#,
        qualified(schema, "_dead_letters")
    )
}

/// The table of every lexeme in a collection's search documents, for expanding the prefix a
/// user is typing into whole lexemes (an exact index lookup instead of a prefix scan of the
/// full-text index).
pub fn lexicon(collection: &str) -> String {
    format!("_lexicon_{collection}")
}

/// The lexicon table and the statement-level triggers that keep it filled.
fn create_lexicon(schema: &str, collection: &Collection) -> Vec<String> {
    let table = qualified(schema, &collection.name);
    let lexicon = qualified(schema, &lexicon(&collection.name));
    let function = qualified(schema, &format!("_lexicon_add_{}", collection.name));
    let mut statements = vec![
        format!("CREATE TABLE IF NOT EXISTS {lexicon} (word text COLLATE \"C\" PRIMARY KEY)"),
        // Sorted, so concurrent batches take the index locks in the same order.
        format!(
            "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             INSERT INTO {lexicon} (word) SELECT DISTINCT w FROM new_rows, unnest(tsvector_to_array(new_rows.{search})) AS w \
             ORDER BY w ON CONFLICT DO NOTHING; RETURN NULL; END $$",
            search = ident(SEARCH_COLUMN)
        ),
    ];
    for event in ["INSERT", "UPDATE"] {
        statements.push(format!(
            "CREATE OR REPLACE TRIGGER {} AFTER {event} ON {table} REFERENCING NEW TABLE AS new_rows \
             FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
            ident(&format!("lexicon_on_{}", event.to_lowercase()))
        ));
    }
    statements
}

/// The generated search column of a collection with searchable fields.
pub const SEARCH_COLUMN: &str = "_search";

fn create_table(schema: &str, collection: &Collection) -> String {
    let mut columns: Vec<String> = collection.fields.iter().map(|f| column(collection, f)).collect();
    if let Some(document) = search_document(collection) {
        columns.push(format!("{} tsvector GENERATED ALWAYS AS ({document}) STORED", ident(SEARCH_COLUMN)));
    }
    let key: Vec<String> = collection.primary_key.iter().map(|k| ident(k)).collect();
    columns.push(format!("PRIMARY KEY ({})", key.join(", ")));
    format!("CREATE TABLE IF NOT EXISTS {} (\n  {}\n)", qualified(schema, &collection.name), columns.join(",\n  "))
}

fn column(collection: &Collection, field: &Field) -> String {
    let mut sql = format!("{} {}", ident(&field.name), column_type(&field.type_));
    if let Some(Computed::Ratio(ratio)) = &field.computed {
        let (n, d) = (ident(&ratio.numerator), ident(&ratio.denominator));
        // round(numeric, int) rounds half away from zero.
        sql.push_str(&format!(
            " GENERATED ALWAYS AS (CASE WHEN {d} IS NULL OR {d} = 0 THEN NULL \
             ELSE round({n}::numeric / {d}::numeric, {}) END) STORED",
            ratio.scale
        ));
    } else if !field.nullable || collection.primary_key.contains(&field.name) {
        sql.push_str(" NOT NULL");
    }
    sql
}

/// The expression of a collection's search document, if it has searchable fields: its text
/// fields in an array, its text lists appended.
fn search_document(collection: &Collection) -> Option<String> {
    let searchable: Vec<&Field> = collection.fields.iter().filter(|f| f.searchable).collect();
    if searchable.is_empty() {
        return None;
    }
    let texts: Vec<String> = searchable.iter().filter(|f| f.type_ == FieldType::Text).map(|f| ident(&f.name)).collect();
    let mut parts = vec![format!("ARRAY[{}]::text[]", texts.join(", "))];
    parts.extend(
        searchable
            .iter()
            .filter(|f| f.type_ != FieldType::Text)
            .map(|f| format!("COALESCE({}, '{{}}'::text[])", ident(&f.name))),
    );
    Some(format!("projector.search_document({})", parts.join(" || ")))
}

/// The PostgreSQL type of a field.
pub fn column_type(field_type: &FieldType) -> String {
    match field_type {
        FieldType::Boolean => "boolean".into(),
        FieldType::Integer => "bigint".into(),
        FieldType::Float => "double precision".into(),
        FieldType::Decimal => "numeric".into(),
        FieldType::Text => "text".into(),
        FieldType::Timestamp => "timestamptz".into(),
        FieldType::Date => "date".into(),
        FieldType::Json => "jsonb".into(),
        FieldType::List(element) => format!("{}[]", scalar_type(*element)),
    }
}

fn scalar_type(element: ScalarType) -> &'static str {
    match element {
        ScalarType::Boolean => "boolean",
        ScalarType::Integer => "bigint",
        ScalarType::Float => "double precision",
        ScalarType::Decimal => "numeric",
        ScalarType::Text => "text",
        ScalarType::Timestamp => "timestamptz",
        ScalarType::Date => "date",
    }
}

/// B-tree indexes on filterable and sortable fields that do not lead the primary key, and a GIN
/// index on the search document of a collection with searchable fields.
fn create_indexes(schema: &str, collection: &Collection) -> Vec<String> {
    let search = search_document(collection).map(|_| {
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} USING gin ({})",
            ident(&format!("{}_search_idx", collection.name)),
            qualified(schema, &collection.name),
            ident(SEARCH_COLUMN)
        )
    });
    collection
        .fields
        .iter()
        .filter(|f| (f.filterable || f.sortable) && collection.primary_key.first() != Some(&f.name))
        .filter(|f| !matches!(f.type_, FieldType::Json | FieldType::List(_)))
        .map(|f| {
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
                ident(&format!("{}_{}_idx", collection.name, f.name)),
                qualified(schema, &collection.name),
                ident(&f.name)
            )
        })
        .chain(search)
        .collect()
}

/// Statements pointing the public views of every collection at the tables in `schema`.
pub fn publish_views(schema: &str, spec: &Spec) -> Vec<String> {
    tables(spec)
        .flat_map(|collection| {
            let view = qualified("read_models", &collection.name);
            [
                format!("DROP VIEW IF EXISTS {view}"),
                format!("CREATE VIEW {view} AS SELECT * FROM {}", qualified(schema, &collection.name)),
            ]
        })
        .collect()
}

/// Statements dropping the public views of every collection.
pub fn drop_views(spec: &Spec) -> Vec<String> {
    tables(spec)
        .map(|collection| format!("DROP VIEW IF EXISTS {}", qualified("read_models", &collection.name)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::stats_spec;

    #[test]
    fn tables_follow_the_declaration() {
        let spec = Spec::new(stats_spec()).unwrap();
        let statements = create_storage("proj_daily_stats_v3", &spec);
        let table = statements.iter().find(|s| s.contains("\"daily\" (")).unwrap();
        assert_eq!(
            table,
            "CREATE TABLE IF NOT EXISTS \"proj_daily_stats_v3\".\"daily\" (\n  \
             \"day\" date NOT NULL,\n  \"count\" bigint,\n  \"revenue\" numeric,\n  \
             \"average\" numeric GENERATED ALWAYS AS (CASE WHEN \"count\" IS NULL OR \"count\" = 0 THEN NULL \
             ELSE round(\"revenue\"::numeric / \"count\"::numeric, 2) END) STORED,\n  \
             \"by_status\" jsonb,\n  \"tags\" text[],\n  PRIMARY KEY (\"day\")\n)"
        );
        assert_eq!(
            publish_views("proj_daily_stats_v3", &spec),
            vec![
                "DROP VIEW IF EXISTS \"read_models\".\"daily\"".to_string(),
                "CREATE VIEW \"read_models\".\"daily\" AS SELECT * FROM \"proj_daily_stats_v3\".\"daily\"".to_string(),
            ]
        );
    }
}
