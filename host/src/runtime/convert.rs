//! The call boundary: generated binding types to the host's [`crate::contract`] types and back.
//! Nothing outside the runtime sees a generated type.
//!
//! Events go in by copy (the caller keeps its events to pin a failure on one and to dead-letter
//! it); answers come out by move.

use super::bindings::types as wit;
use crate::contract::*;

pub(super) fn event(event: &Event) -> wit::Event {
    wit::Event {
        topic: event.topic.clone(),
        partition: event.partition,
        offset: event.offset,
        key: event.key.clone(),
        value: event.value.clone(),
        headers: event.headers.iter().map(|h| wit::Header { key: h.key.clone(), value: h.value.clone() }).collect(),
        timestamp_ms: event.timestamp_ms,
    }
}

pub(super) fn answer(answer: Result<Vec<wit::Operation>, String>) -> Result<Vec<Operation>, String> {
    answer.map(|operations| operations.into_iter().map(operation).collect())
}

fn operation(operation: wit::Operation) -> Operation {
    let fields = |fields: Vec<wit::FieldValue>| {
        fields.into_iter().map(|f| FieldValue { name: f.name, value: value(f.value) }).collect()
    };
    let key = |key: Vec<wit::Value>| key.into_iter().map(value).collect();
    match operation {
        wit::Operation::Upsert(u) => {
            Operation::Upsert(Upsert { collection: u.collection, key: key(u.key), fields: fields(u.fields) })
        }
        wit::Operation::Delete(d) => Operation::Delete(Delete { collection: d.collection, key: key(d.key) }),
        wit::Operation::Increment(i) => {
            Operation::Increment(Increment { collection: i.collection, key: key(i.key), fields: fields(i.fields) })
        }
    }
}

fn value(value: wit::Value) -> Value {
    match value {
        wit::Value::Null => Value::Null,
        wit::Value::Boolean(b) => Value::Boolean(b),
        wit::Value::Integer(i) => Value::Integer(i),
        wit::Value::Float(f) => Value::Float(f),
        wit::Value::Decimal(d) => Value::Decimal(d),
        wit::Value::Text(t) => Value::Text(t),
        wit::Value::Timestamp(t) => Value::Timestamp(t),
        wit::Value::Date(d) => Value::Date(d),
        wit::Value::Json(j) => Value::Json(j),
        wit::Value::List(items) => Value::List(items.into_iter().map(scalar).collect()),
    }
}

fn scalar(scalar: wit::Scalar) -> Scalar {
    match scalar {
        wit::Scalar::Null => Scalar::Null,
        wit::Scalar::Boolean(b) => Scalar::Boolean(b),
        wit::Scalar::Integer(i) => Scalar::Integer(i),
        wit::Scalar::Float(f) => Scalar::Float(f),
        wit::Scalar::Decimal(d) => Scalar::Decimal(d),
        wit::Scalar::Text(t) => Scalar::Text(t),
        wit::Scalar::Timestamp(t) => Scalar::Timestamp(t),
        wit::Scalar::Date(d) => Scalar::Date(d),
    }
}

pub(super) fn spec(spec: wit::ProjectionSpec) -> ProjectionSpec {
    ProjectionSpec {
        name: spec.name,
        version: spec.version,
        description: spec.description,
        collections: spec.collections.into_iter().map(collection).collect(),
    }
}

fn collection(collection: wit::Collection) -> Collection {
    Collection {
        name: collection.name,
        fields: collection.fields.into_iter().map(field).collect(),
        primary_key: collection.primary_key,
        sink: match collection.sink {
            wit::Sink::Postgres => Sink::Postgres,
            wit::Sink::Elasticsearch => Sink::Elasticsearch,
        },
        description: collection.description,
    }
}

fn field(field: wit::Field) -> Field {
    Field {
        name: field.name,
        type_: field_type(field.type_),
        nullable: field.nullable,
        searchable: field.searchable,
        filterable: field.filterable,
        sortable: field.sortable,
        computed: field.computed.map(|wit::Computed::Ratio(r)| {
            Computed::Ratio(Ratio { numerator: r.numerator, denominator: r.denominator, scale: r.scale })
        }),
        description: field.description,
    }
}

fn field_type(field_type: wit::FieldType) -> FieldType {
    match field_type {
        wit::FieldType::Boolean => FieldType::Boolean,
        wit::FieldType::Integer => FieldType::Integer,
        wit::FieldType::Float => FieldType::Float,
        wit::FieldType::Decimal => FieldType::Decimal,
        wit::FieldType::Text => FieldType::Text,
        wit::FieldType::Timestamp => FieldType::Timestamp,
        wit::FieldType::Date => FieldType::Date,
        wit::FieldType::Json => FieldType::Json,
        wit::FieldType::List(element) => FieldType::List(scalar_type(element)),
    }
}

fn scalar_type(scalar_type: wit::ScalarType) -> ScalarType {
    match scalar_type {
        wit::ScalarType::Boolean => ScalarType::Boolean,
        wit::ScalarType::Integer => ScalarType::Integer,
        wit::ScalarType::Float => ScalarType::Float,
        wit::ScalarType::Decimal => ScalarType::Decimal,
        wit::ScalarType::Text => ScalarType::Text,
        wit::ScalarType::Timestamp => ScalarType::Timestamp,
        wit::ScalarType::Date => ScalarType::Date,
    }
}
