//! The read-model declaration a plugin returns from `describe`, checked before anything is
//! created from it.
//!
//! Invariant: a [`Spec`] is always valid. Names are safe SQL identifiers (lowercase ASCII,
//! digits, `_`), primary keys use types with one canonical representation (so two equal keys
//! can never reach the database as two different rows), computed fields read only stored
//! numeric fields. Storage and SQL are derived from a `Spec` alone, never from request text.

use std::collections::{HashMap, HashSet};

use crate::contract::{Collection, Computed, Field, FieldType, ProjectionSpec, ScalarType, Sink};

/// A declaration that cannot be used, naming the part at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid projection spec: {0}")]
pub struct SpecError(pub String);

/// Where this host puts collections: what the search-engine configuration adds to a
/// declaration before it is validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    /// Whether a search engine is configured; without one, a collection declared there is
    /// refused.
    pub search_engine: bool,
    /// Collections put on the search engine whatever their declared sink.
    pub moved: Vec<String>,
}

impl Placement {
    /// The declaration with the moved collections on the search engine; refused when it needs
    /// a search engine this host does not have.
    pub fn place(&self, mut raw: ProjectionSpec) -> Result<ProjectionSpec, SpecError> {
        for collection in &mut raw.collections {
            if self.moved.contains(&collection.name) {
                collection.sink = Sink::Elasticsearch;
            }
            if collection.sink == Sink::Elasticsearch && !self.search_engine {
                return Err(SpecError(format!(
                    "collection `{}`: its sink is elasticsearch and this host has no search engine configured \
                     (elasticsearch.urls)",
                    collection.name
                )));
            }
        }
        Ok(raw)
    }
}

/// A validated projection declaration with lookup tables for the hot path.
#[derive(Debug, Clone)]
pub struct Spec {
    raw: ProjectionSpec,
    collections: Vec<CollectionInfo>,
    by_name: HashMap<String, usize>,
    /// Whether a collection is on the search engine (known once, asked per event).
    on_search_engine: bool,
}

/// One validated collection.
#[derive(Debug, Clone)]
pub struct CollectionInfo {
    /// Index of the collection in the declaration.
    pub index: usize,
    /// Field positions of the primary key, in key order.
    pub primary_key: Vec<usize>,
    fields_by_name: HashMap<String, usize>,
}

const MAX_NAME: usize = 40;
/// Most collections one projection declares.
pub const MAX_COLLECTIONS: usize = 32;
/// Most fields one collection declares (PostgreSQL allows 1,600 columns; rows this wide are a
/// mistake long before).
pub const MAX_FIELDS: usize = 256;
/// Longest description, in bytes, of the projection, a collection or a field.
pub const MAX_DESCRIPTION: usize = 4_096;

impl Spec {
    /// Validates a declaration.
    pub fn new(raw: ProjectionSpec) -> Result<Self, SpecError> {
        check_projection_name(&raw.name)?;
        if raw.version == 0 {
            return Err(SpecError("version must be at least 1".into()));
        }
        if raw.collections.is_empty() {
            return Err(SpecError("a projection declares at least one collection".into()));
        }
        check_size(&raw)?;
        let mut collections = Vec::new();
        let mut by_name = HashMap::new();
        for (index, collection) in raw.collections.iter().enumerate() {
            let info = check_collection(index, collection)?;
            if by_name.insert(collection.name.clone(), index).is_some() {
                return Err(SpecError(format!("collection `{}` is declared twice", collection.name)));
            }
            collections.push(info);
        }
        let on_search_engine = raw.collections.iter().any(|c| c.sink == Sink::Elasticsearch);
        Ok(Self { raw, collections, by_name, on_search_engine })
    }

    /// The declaration as the plugin returned it.
    pub fn raw(&self) -> &ProjectionSpec {
        &self.raw
    }

    /// Projection name, e.g. `order-summaries`.
    pub fn name(&self) -> &str {
        &self.raw.name
    }

    /// Projection version.
    pub fn version(&self) -> u32 {
        self.raw.version
    }

    /// The declared collections with their lookup tables.
    pub fn collections(&self) -> impl Iterator<Item = (&Collection, &CollectionInfo)> {
        self.raw.collections.iter().zip(&self.collections)
    }

    /// Whether any collection is on the search engine.
    pub fn on_search_engine(&self) -> bool {
        self.on_search_engine
    }

    /// Finds a collection by its declared name.
    pub fn collection(&self, name: &str) -> Option<(&Collection, &CollectionInfo)> {
        let index = *self.by_name.get(name)?;
        Some((&self.raw.collections[index], &self.collections[index]))
    }
}

impl CollectionInfo {
    /// Position of a field by name.
    pub fn field(&self, name: &str) -> Option<usize> {
        self.fields_by_name.get(name).copied()
    }
}

// The name rules, the one place the host states them. The Rust SDK, Python and JavaScript
// harnesses restate them once each; the conformance corpus (`tests/conformance/
// declarations.json`) holds all four to the same answers.

/// Whether `name` is a valid projection name: 1-40 lowercase ASCII letters, digits and `-`,
/// starting with a letter and not ending with `-`.
pub fn is_projection_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn check_projection_name(name: &str) -> Result<(), SpecError> {
    if is_projection_name(name) {
        Ok(())
    } else {
        Err(SpecError(format!(
            "projection name `{name}` must be 1-{MAX_NAME} lowercase ASCII letters, digits and `-`, starting with a letter"
        )))
    }
}

/// Whether `name` is a valid collection or field identifier: 1-48 lowercase ASCII letters,
/// digits and `_`, starting with a letter.
pub fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME + 8
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Bounds what a declaration may hold: it is stored in the registry and read on every start.
fn check_size(raw: &ProjectionSpec) -> Result<(), SpecError> {
    let too_long = |what: String, text: &str| {
        (text.len() > MAX_DESCRIPTION)
            .then(|| SpecError(format!("{what}: the description is {} bytes; at most {MAX_DESCRIPTION}", text.len())))
    };
    if raw.collections.len() > MAX_COLLECTIONS {
        return Err(SpecError(format!("{} collections declared; at most {MAX_COLLECTIONS}", raw.collections.len())));
    }
    if let Some(error) = too_long("the projection".into(), &raw.description) {
        return Err(error);
    }
    for collection in &raw.collections {
        let name = &collection.name;
        if collection.fields.len() > MAX_FIELDS {
            return Err(SpecError(format!(
                "collection `{name}`: {} fields declared; at most {MAX_FIELDS}",
                collection.fields.len()
            )));
        }
        if let Some(error) = too_long(format!("collection `{name}`"), &collection.description) {
            return Err(error);
        }
        for field in &collection.fields {
            if let Some(error) = too_long(format!("collection `{name}`: field `{}`", field.name), &field.description) {
                return Err(error);
            }
        }
    }
    Ok(())
}

fn check_collection(index: usize, collection: &Collection) -> Result<CollectionInfo, SpecError> {
    let at = |message: String| SpecError(format!("collection `{}`: {message}", collection.name));
    if !is_identifier(&collection.name) {
        return Err(at("the name must be lowercase ASCII letters, digits and `_`, starting with a letter".into()));
    }
    if collection.fields.is_empty() {
        return Err(at("declares no fields".into()));
    }
    let mut fields_by_name = HashMap::new();
    for (position, field) in collection.fields.iter().enumerate() {
        if !is_identifier(&field.name) {
            return Err(at(format!(
                "field `{}`: the name must be lowercase ASCII letters, digits and `_`, starting with a letter",
                field.name
            )));
        }
        if fields_by_name.insert(field.name.clone(), position).is_some() {
            return Err(at(format!("field `{}` is declared twice", field.name)));
        }
    }
    if collection.primary_key.is_empty() {
        return Err(at("declares no primary key".into()));
    }
    let mut primary_key = Vec::new();
    let mut seen = HashSet::new();
    for name in &collection.primary_key {
        let position =
            *fields_by_name.get(name).ok_or_else(|| at(format!("primary key names unknown field `{name}`")))?;
        if !seen.insert(position) {
            return Err(at(format!("primary key names `{name}` twice")));
        }
        let field = &collection.fields[position];
        if !is_key_type(&field.type_) {
            return Err(at(format!("primary key field `{name}` must be text, integer, boolean, date or timestamp")));
        }
        if field.computed.is_some() {
            return Err(at(format!("primary key field `{name}` cannot be computed")));
        }
        primary_key.push(position);
    }
    for field in &collection.fields {
        check_field(collection, field, &fields_by_name).map_err(at)?;
    }
    Ok(CollectionInfo { index, primary_key, fields_by_name })
}

fn check_field(collection: &Collection, field: &Field, fields_by_name: &HashMap<String, usize>) -> Result<(), String> {
    let name = &field.name;
    if field.sortable && matches!(field.type_, FieldType::Json | FieldType::List(_)) {
        return Err(format!("field `{name}`: json and list fields cannot be sortable"));
    }
    if field.searchable && !matches!(field.type_, FieldType::Text | FieldType::List(ScalarType::Text)) {
        return Err(format!("field `{name}`: only text and list<text> fields can be searchable"));
    }
    if let Some(Computed::Ratio(ratio)) = &field.computed {
        if !matches!(field.type_, FieldType::Decimal | FieldType::Float) {
            return Err(format!("field `{name}`: a computed ratio must be decimal or float"));
        }
        if ratio.scale > 30 {
            return Err(format!("field `{name}`: ratio scale must be at most 30"));
        }
        for operand in [&ratio.numerator, &ratio.denominator] {
            let Some(&position) = fields_by_name.get(operand) else {
                return Err(format!("field `{name}`: ratio operand `{operand}` is not a field"));
            };
            let other = &collection.fields[position];
            if !is_numeric(&other.type_) || other.computed.is_some() {
                return Err(format!(
                    "field `{name}`: ratio operand `{operand}` must be a stored integer, float or decimal field"
                ));
            }
        }
    }
    Ok(())
}

fn is_key_type(field_type: &FieldType) -> bool {
    matches!(
        field_type,
        FieldType::Text | FieldType::Integer | FieldType::Boolean | FieldType::Date | FieldType::Timestamp
    )
}

/// Whether increments may target a field of this type.
pub fn is_numeric(field_type: &FieldType) -> bool {
    matches!(field_type, FieldType::Integer | FieldType::Float | FieldType::Decimal)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::contract::Ratio;

    pub(crate) fn field(name: &str, type_: FieldType) -> Field {
        Field {
            name: name.into(),
            type_,
            nullable: true,
            searchable: false,
            filterable: false,
            sortable: false,
            computed: None,
            description: String::new(),
        }
    }

    pub(crate) fn stats_spec() -> ProjectionSpec {
        let mut average = field("average", FieldType::Decimal);
        average.computed =
            Some(Computed::Ratio(Ratio { numerator: "revenue".into(), denominator: "count".into(), scale: 2 }));
        ProjectionSpec {
            name: "daily-stats".into(),
            version: 3,
            description: String::new(),
            collections: vec![Collection {
                name: "daily".into(),
                fields: vec![
                    field("day", FieldType::Date),
                    field("count", FieldType::Integer),
                    field("revenue", FieldType::Decimal),
                    average,
                    field("by_status", FieldType::Json),
                    field("tags", FieldType::List(ScalarType::Text)),
                ],
                primary_key: vec!["day".into()],
                sink: Sink::Postgres,
                description: String::new(),
            }],
        }
    }

    #[test]
    fn a_valid_spec_is_accepted() {
        let spec = Spec::new(stats_spec()).unwrap();
        let (_, info) = spec.collection("daily").unwrap();
        assert_eq!(info.primary_key, vec![0]);
        assert_eq!(info.field("revenue"), Some(2));
    }

    fn rejected(change: impl FnOnce(&mut ProjectionSpec)) -> String {
        let mut raw = stats_spec();
        change(&mut raw);
        Spec::new(raw).unwrap_err().0
    }

    #[test]
    fn declarations_are_bounded_in_size() {
        let many = rejected(|s| {
            let template = s.collections[0].clone();
            s.collections = (0..33).map(|i| Collection { name: format!("c{i}"), ..template.clone() }).collect();
        });
        assert_eq!(many, "33 collections declared; at most 32");
        let wide = rejected(|s| {
            let fields = &mut s.collections[0].fields;
            fields.extend((0..251).map(|i| field(&format!("f{i}"), FieldType::Text)));
        });
        assert_eq!(wide, "collection `daily`: 257 fields declared; at most 256");
        let long = rejected(|s| s.collections[0].fields[1].description = "x".repeat(4_097));
        assert_eq!(long, "collection `daily`: field `count`: the description is 4097 bytes; at most 4096");
        assert!(rejected(|s| s.description = "y".repeat(5_000))
            .starts_with("the projection: the description is 5000 bytes"));
        let mut widest = stats_spec();
        widest.collections[0].fields.extend((0..250).map(|i| field(&format!("f{i}"), FieldType::Text)));
        assert!(Spec::new(widest).is_ok(), "256 fields are allowed");
    }

    #[test]
    fn placement_moves_collections_and_needs_a_search_engine() {
        let moved = Placement { search_engine: true, moved: vec!["daily".into()] }.place(stats_spec()).unwrap();
        assert_eq!(moved.collections[0].sink, Sink::Elasticsearch);
        assert_eq!(Placement::default().place(stats_spec()).unwrap(), stats_spec());
        let mut declared = stats_spec();
        declared.collections[0].sink = Sink::Elasticsearch;
        let refused = Placement::default().place(declared).unwrap_err().to_string();
        assert!(refused.contains("collection `daily`: its sink is elasticsearch"), "{refused}");
    }

    #[test]
    fn bad_declarations_are_rejected_with_the_part_at_fault() {
        assert!(rejected(|s| s.name = "Daily".into()).contains("projection name `Daily`"));
        assert!(rejected(|s| s.version = 0).contains("version"));
        assert!(rejected(|s| s.collections[0].name = "drop table;".into()).contains("collection `drop table;`"));
        assert!(rejected(|s| s.collections[0].primary_key = vec!["nope".into()]).contains("unknown field `nope`"));
        assert!(rejected(|s| s.collections[0].primary_key = vec!["revenue".into()]).contains("must be text, integer"));
        assert!(rejected(|s| s.collections[0].fields[1].name = "day".into()).contains("declared twice"));
        assert!(rejected(|s| s.collections[0].fields[4].sortable = true).contains("cannot be sortable"));
        assert!(rejected(|s| {
            s.collections[0].fields[3].computed =
                Some(Computed::Ratio(Ratio { numerator: "by_status".into(), denominator: "count".into(), scale: 2 }))
        })
        .contains("operand `by_status`"));
        let twice = rejected(|s| {
            let copy = s.collections[0].clone();
            s.collections.push(copy)
        });
        assert!(twice.contains("declared twice"), "{twice}");
    }
}
