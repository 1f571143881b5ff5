//! The host's view of the plugin contract (`wit/projection.wit`): the events it hands plugins,
//! the declarations and operations it gets back.
//!
//! Invariants:
//! - These types are the host's own. The bindings wasmtime generates from the WIT stay inside
//!   the runtime module, which converts at the call boundary, so a change to the WIT touches the
//!   runtime and this module, not every module that reads an operation or a declaration.
//! - A declaration persists as [`StoredSpec`]: a format number beside the spec, field and
//!   variant names of the host's choosing, defaults for every field that may be added later and
//!   unknown fields ignored, so a host reads what an older or a newer host stored.
//! - Operations serialize (for dry runs) as their WIT names say: `{"upsert": {"collection",
//!   "key": [{"text": "ord-1"}], "fields": [{"name", "value": {"decimal": "17.80"}}]}}`.

use serde::{Deserialize, Serialize};

/// One Kafka record header. Kafka allows a header without a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Header name, e.g. `__TypeId__`.
    pub key: String,
    /// Raw header value, absent for a null header.
    pub value: Option<Vec<u8>>,
}

/// One Kafka record, as consumed from the topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Topic the record was read from.
    pub topic: String,
    /// Partition of the record.
    pub partition: i32,
    /// Offset of the record within its partition.
    pub offset: i64,
    /// Record key, absent for a null key.
    pub key: Option<Vec<u8>>,
    /// Record value, absent for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Record headers, in the order the producer wrote them.
    pub headers: Vec<Header>,
    /// Record timestamp in milliseconds since the Unix epoch, when the broker has one.
    pub timestamp_ms: Option<i64>,
}

/// A scalar value: what a list can hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scalar {
    /// SQL NULL.
    Null,
    /// A boolean.
    Boolean(bool),
    /// A 64-bit signed integer.
    Integer(i64),
    /// A 64-bit float.
    Float(f64),
    /// An exact decimal in plain notation.
    Decimal(String),
    /// UTF-8 text.
    Text(String),
    /// Microseconds since 1970-01-01T00:00:00Z.
    Timestamp(i64),
    /// Days since 1970-01-01.
    Date(i32),
}

/// A field value in an operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Value {
    /// SQL NULL: clears the field on upsert.
    Null,
    /// A boolean.
    Boolean(bool),
    /// A 64-bit signed integer.
    Integer(i64),
    /// A 64-bit float.
    Float(f64),
    /// An exact decimal in plain notation.
    Decimal(String),
    /// UTF-8 text.
    Text(String),
    /// Microseconds since 1970-01-01T00:00:00Z.
    Timestamp(i64),
    /// Days since 1970-01-01.
    Date(i32),
    /// A JSON document, serialized as text.
    Json(String),
    /// A list of scalars of the field's element type.
    List(Vec<Scalar>),
}

/// One field assignment of an operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldValue {
    /// Field name, as declared.
    pub name: String,
    /// New value, or for `increment` the amount to add.
    pub value: Value,
}

/// Merge the named fields into the row with this key, creating it when absent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Upsert {
    /// Collection name, as declared.
    pub collection: String,
    /// Primary-key values, in the declared key order.
    pub key: Vec<Value>,
    /// Fields to set.
    pub fields: Vec<FieldValue>,
}

/// Delete the row with this key, if any.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delete {
    /// Collection name, as declared.
    pub collection: String,
    /// Primary-key values, in the declared key order.
    pub key: Vec<Value>,
}

/// Add to numeric fields of the row with this key, creating it when absent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Increment {
    /// Collection name, as declared.
    pub collection: String,
    /// Primary-key values, in the declared key order.
    pub key: Vec<Value>,
    /// Amounts to add, one per field.
    pub fields: Vec<FieldValue>,
}

/// One change to a read model. Operations apply in the order returned, event after event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Merge fields into a row.
    Upsert(Upsert),
    /// Delete a row.
    Delete(Delete),
    /// Add to numeric fields of a row.
    Increment(Increment),
}

/// The element type of a list field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScalarType {
    #[serde(alias = "Boolean")]
    Boolean,
    #[serde(alias = "Integer")]
    Integer,
    #[serde(alias = "Float")]
    Float,
    #[serde(alias = "Decimal")]
    Decimal,
    #[serde(alias = "Text")]
    Text,
    #[serde(alias = "Timestamp")]
    Timestamp,
    #[serde(alias = "Date")]
    Date,
}

impl ScalarType {
    /// The field type of one element.
    pub fn field_type(self) -> FieldType {
        match self {
            ScalarType::Boolean => FieldType::Boolean,
            ScalarType::Integer => FieldType::Integer,
            ScalarType::Float => FieldType::Float,
            ScalarType::Decimal => FieldType::Decimal,
            ScalarType::Text => FieldType::Text,
            ScalarType::Timestamp => FieldType::Timestamp,
            ScalarType::Date => FieldType::Date,
        }
    }
}

/// The declared type of a field; each sink maps it to a type of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    #[serde(alias = "Boolean")]
    Boolean,
    #[serde(alias = "Integer")]
    Integer,
    #[serde(alias = "Float")]
    Float,
    #[serde(alias = "Decimal")]
    Decimal,
    #[serde(alias = "Text")]
    Text,
    #[serde(alias = "Timestamp")]
    Timestamp,
    #[serde(alias = "Date")]
    Date,
    #[serde(alias = "Json")]
    Json,
    /// A list of scalars of this element type.
    #[serde(alias = "List")]
    List(ScalarType),
}

/// A field whose value the host computes from other fields of the same row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Computed {
    /// `round(numerator / denominator, scale)`, or null when the denominator is zero or null.
    #[serde(alias = "Ratio")]
    Ratio(Ratio),
}

/// The operands of a computed ratio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ratio {
    /// Field divided.
    pub numerator: String,
    /// Field divided by.
    pub denominator: String,
    /// Decimal places of the result, rounded half away from zero.
    pub scale: u8,
}

/// One field of a collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// Field name.
    pub name: String,
    /// Field type.
    #[serde(rename = "type", alias = "type_")]
    pub type_: FieldType,
    /// Whether the field may be null. Primary-key fields never are.
    #[serde(default)]
    pub nullable: bool,
    /// Whether the field is part of the collection's full-text search document.
    #[serde(default)]
    pub searchable: bool,
    /// Whether queries may filter on the field.
    #[serde(default)]
    pub filterable: bool,
    /// Whether queries may sort on the field.
    #[serde(default)]
    pub sortable: bool,
    /// Set when the host computes the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computed: Option<Computed>,
    /// What the field means.
    #[serde(default)]
    pub description: String,
}

/// Where a collection is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sink {
    /// A PostgreSQL table, exposed as a view in schema `read_models`.
    #[serde(alias = "Postgres")]
    Postgres,
    /// An Elasticsearch index.
    #[serde(alias = "Elasticsearch")]
    Elasticsearch,
}

/// One collection (table or index) of a read model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collection {
    /// Public name of the collection, unique across all projections.
    pub name: String,
    /// Its fields, in column order.
    pub fields: Vec<Field>,
    /// Names of the fields forming the primary key, in order.
    pub primary_key: Vec<String>,
    /// Sink holding the collection.
    pub sink: Sink,
    /// What one row of the collection represents.
    #[serde(default)]
    pub description: String,
}

/// What a plugin builds: its answer to `describe`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectionSpec {
    /// Projection name, e.g. `order-summaries`.
    pub name: String,
    /// Version of the read model's shape and logic.
    pub version: u32,
    /// One sentence on what the projection is for.
    #[serde(default)]
    pub description: String,
    /// The collections the projection writes.
    pub collections: Vec<Collection>,
}

/// The format [`StoredSpec`] writes. Format 1 (hosts before 2026-12) wrote the generated
/// bindings' serde form, without a `format` key: `type_`, capitalised variants. It is read
/// through the serde aliases above.
pub const SPEC_FORMAT: u32 = 2;

/// A declaration as the registry persists it (a `jsonb` column): a format number beside the
/// spec's own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSpec {
    /// The format the row was written in; 1 when absent.
    #[serde(default = "first_format")]
    pub format: u32,
    /// The declaration.
    #[serde(flatten)]
    pub spec: ProjectionSpec,
}

fn first_format() -> u32 {
    1
}

impl StoredSpec {
    /// The declaration in the current format.
    pub fn new(spec: ProjectionSpec) -> Self {
        Self { format: SPEC_FORMAT, spec }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ProjectionSpec {
        let field = |name: &str, type_| Field {
            name: name.into(),
            type_,
            nullable: true,
            searchable: false,
            filterable: false,
            sortable: false,
            computed: None,
            description: String::new(),
        };
        let mut average = field("average", FieldType::Decimal);
        average.computed =
            Some(Computed::Ratio(Ratio { numerator: "revenue".into(), denominator: "count".into(), scale: 2 }));
        ProjectionSpec {
            name: "daily-stats".into(),
            version: 3,
            description: "Per day.".into(),
            collections: vec![Collection {
                name: "daily".into(),
                fields: vec![field("day", FieldType::Date), average, field("tags", FieldType::List(ScalarType::Text))],
                primary_key: vec!["day".into()],
                sink: Sink::Postgres,
                description: String::new(),
            }],
        }
    }

    /// What hosts before the contract module stored: the generated bindings' serde form,
    /// captured from one of them.
    const FORMAT_1: &str = r#"{"name":"daily-stats","version":3,"description":"Per day.","collections":[{"name":"daily","fields":[{"name":"day","type_":"Date","nullable":true,"searchable":false,"filterable":false,"sortable":false,"computed":null,"description":""},{"name":"average","type_":"Decimal","nullable":true,"searchable":false,"filterable":false,"sortable":false,"computed":{"Ratio":{"numerator":"revenue","denominator":"count","scale":2}},"description":""},{"name":"tags","type_":{"List":"Text"},"nullable":true,"searchable":false,"filterable":false,"sortable":false,"computed":null,"description":""}],"primary_key":["day"],"sink":"Postgres","description":""}]}"#;

    #[test]
    fn a_declaration_stored_by_an_older_host_reads_as_format_1() {
        let stored: StoredSpec = serde_json::from_str(FORMAT_1).unwrap();
        assert_eq!(stored, StoredSpec { format: 1, spec: spec() });
    }

    #[test]
    fn the_current_format_round_trips_with_its_number_and_names() {
        let json = serde_json::to_value(StoredSpec::new(spec())).unwrap();
        assert_eq!(json["format"], 2);
        assert_eq!(json["collections"][0]["fields"][2]["type"], serde_json::json!({"list": "text"}));
        assert_eq!(json["collections"][0]["fields"][1]["computed"]["ratio"]["scale"], 2);
        assert_eq!(json["collections"][0]["sink"], "postgres");
        let back: StoredSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back.spec, spec());
    }

    #[test]
    fn fields_a_newer_host_adds_are_ignored_and_fields_it_may_omit_default() {
        let newer = r#"{"format":7,"name":"p","version":1,"owner":"team-a","collections":[
            {"name":"c","primary_key":["id"],"sink":"postgres","retention":"30d",
             "fields":[{"name":"id","type":"text","analyzer":"english"}]}]}"#;
        let stored: StoredSpec = serde_json::from_str(newer).unwrap();
        assert_eq!(stored.format, 7);
        let field = &stored.spec.collections[0].fields[0];
        assert_eq!((field.type_, field.nullable, field.computed.clone()), (FieldType::Text, false, None));
        assert_eq!(stored.spec.description, "");
    }
}
