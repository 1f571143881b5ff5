//! The glue between the WIT world `projector:projection/projection` and the SDK's own types.
//!
//! Invariants: this is the only module that knows the generated bindings. `handle` returns
//! exactly one result per event, in order, and one event's error never affects the others;
//! the state and log imports are only called on `wasm32`. Conversions are total: every SDK
//! value has a WIT counterpart.

use crate::__private::bindings::projector::projection::types as wit;
use crate::context::Level;
use crate::operation::Key;
use crate::spec::{Collection, Field, FieldType, ScalarType, Sink};
use crate::{Context, Event, Header, Operation, Projection, ProjectionSpec, Scalar, Value};

#[cfg(target_arch = "wasm32")]
pub(crate) use crate::__private::bindings::projector::projection::state;

/// Writes one line through the WIT `log` import.
#[cfg(target_arch = "wasm32")]
pub(crate) fn log(level: Level, message: &str) {
    crate::__private::bindings::projector::projection::log::write(level.into(), message);
}

/// The WIT `describe` export for projection `P`.
pub fn describe<P: Projection>() -> wit::ProjectionSpec {
    P::describe().into()
}

/// The WIT `handle` export for projection `P`: one result per event, in order.
pub fn handle<P: Projection>(events: Vec<wit::Event>) -> Vec<Result<Vec<wit::Operation>, String>> {
    let mut ctx = Context::new();
    events
        .into_iter()
        .map(|event| {
            let event = Event::from(event);
            match P::handle(&event, &mut ctx) {
                Ok(ops) => {
                    ctx.commit();
                    Ok(ops.into_iter().map(Into::into).collect())
                }
                Err(error) => {
                    ctx.discard();
                    Err(error.to_string())
                }
            }
        })
        .collect()
}

impl From<wit::Event> for Event {
    fn from(e: wit::Event) -> Self {
        Event {
            topic: e.topic,
            partition: e.partition,
            offset: e.offset,
            key: e.key,
            value: e.value,
            headers: e.headers.into_iter().map(|h| Header { key: h.key, value: h.value }).collect(),
            timestamp_ms: e.timestamp_ms,
        }
    }
}

impl From<Level> for wit::Level {
    fn from(level: Level) -> Self {
        match level {
            Level::Debug => wit::Level::Debug,
            Level::Info => wit::Level::Info,
            Level::Warn => wit::Level::Warn,
            Level::Error => wit::Level::Error,
        }
    }
}

impl From<ProjectionSpec> for wit::ProjectionSpec {
    fn from(spec: ProjectionSpec) -> Self {
        wit::ProjectionSpec {
            name: spec.name,
            version: spec.version,
            description: spec.description,
            collections: spec.collections.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Collection> for wit::Collection {
    fn from(c: Collection) -> Self {
        let fields = c.fields.iter().map(|field| wit_field(field, c.is_nullable(field))).collect();
        wit::Collection {
            name: c.name,
            fields,
            primary_key: c.primary_key,
            sink: match c.sink {
                Sink::Postgres => wit::Sink::Postgres,
                Sink::Elasticsearch => wit::Sink::Elasticsearch,
            },
            description: c.description,
        }
    }
}

fn wit_field(f: &Field, nullable: bool) -> wit::Field {
    wit::Field {
        name: f.name.clone(),
        type_: f.field_type.into(),
        nullable,
        searchable: f.searchable,
        filterable: f.filterable,
        sortable: f.sortable,
        computed: f.computed.as_ref().map(|r| {
            wit::Computed::Ratio(wit::Ratio {
                numerator: r.numerator.clone(),
                denominator: r.denominator.clone(),
                scale: r.scale,
            })
        }),
        description: f.description.clone(),
    }
}

impl From<FieldType> for wit::FieldType {
    fn from(t: FieldType) -> Self {
        match t {
            FieldType::Boolean => wit::FieldType::Boolean,
            FieldType::Integer => wit::FieldType::Integer,
            FieldType::Float => wit::FieldType::Float,
            FieldType::Decimal => wit::FieldType::Decimal,
            FieldType::Text => wit::FieldType::Text,
            FieldType::Timestamp => wit::FieldType::Timestamp,
            FieldType::Date => wit::FieldType::Date,
            FieldType::Json => wit::FieldType::Json,
            FieldType::List(element) => wit::FieldType::List(element.into()),
        }
    }
}

impl From<ScalarType> for wit::ScalarType {
    fn from(t: ScalarType) -> Self {
        match t {
            ScalarType::Boolean => wit::ScalarType::Boolean,
            ScalarType::Integer => wit::ScalarType::Integer,
            ScalarType::Float => wit::ScalarType::Float,
            ScalarType::Decimal => wit::ScalarType::Decimal,
            ScalarType::Text => wit::ScalarType::Text,
            ScalarType::Timestamp => wit::ScalarType::Timestamp,
            ScalarType::Date => wit::ScalarType::Date,
        }
    }
}

impl From<Value> for wit::Value {
    fn from(v: Value) -> Self {
        match v {
            Value::Null => wit::Value::Null,
            Value::Boolean(b) => wit::Value::Boolean(b),
            Value::Integer(i) => wit::Value::Integer(i),
            Value::Float(f) => wit::Value::Float(f),
            Value::Decimal(d) => wit::Value::Decimal(d),
            Value::Text(t) => wit::Value::Text(t),
            Value::Timestamp(t) => wit::Value::Timestamp(t),
            Value::Date(d) => wit::Value::Date(d),
            Value::Json(j) => wit::Value::Json(j),
            Value::List(items) => wit::Value::List(items.into_iter().map(Into::into).collect()),
        }
    }
}

impl From<Scalar> for wit::Scalar {
    fn from(s: Scalar) -> Self {
        match s {
            Scalar::Null => wit::Scalar::Null,
            Scalar::Boolean(b) => wit::Scalar::Boolean(b),
            Scalar::Integer(i) => wit::Scalar::Integer(i),
            Scalar::Float(f) => wit::Scalar::Float(f),
            Scalar::Decimal(d) => wit::Scalar::Decimal(d),
            Scalar::Text(t) => wit::Scalar::Text(t),
            Scalar::Timestamp(t) => wit::Scalar::Timestamp(t),
            Scalar::Date(d) => wit::Scalar::Date(d),
        }
    }
}

fn wit_key(key: Key) -> Vec<wit::Value> {
    key.0.into_iter().map(Into::into).collect()
}

fn wit_fields(fields: Vec<(String, Value)>) -> Vec<wit::FieldValue> {
    fields.into_iter().map(|(name, value)| wit::FieldValue { name, value: value.into() }).collect()
}

impl From<Operation> for wit::Operation {
    fn from(op: Operation) -> Self {
        match op {
            Operation::Upsert(u) => wit::Operation::Upsert(wit::Upsert {
                collection: u.collection,
                key: wit_key(u.key),
                fields: wit_fields(u.fields),
            }),
            Operation::Increment(i) => wit::Operation::Increment(wit::Increment {
                collection: i.collection,
                key: wit_key(i.key),
                fields: wit_fields(i.fields),
            }),
            Operation::Delete(d) => {
                wit::Operation::Delete(wit::Delete { collection: d.collection, key: wit_key(d.key) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    struct Echo;

    impl Projection for Echo {
        fn describe() -> ProjectionSpec {
            ProjectionSpec::new("echo", 2, "Echoes offsets.").collection(
                Collection::postgres("echoes", "One row per offset.")
                    .field(Field::integer("offset"))
                    .field(Field::decimal("avg").computed_ratio("offset", "offset", 2))
                    .primary_key(["offset"]),
            )
        }

        fn handle(event: &Event, _ctx: &mut Context) -> Result<Vec<Operation>, Error> {
            if event.offset == 1 {
                return Err(Error::missing_field("x"));
            }
            Ok(vec![Operation::upsert("echoes", event.offset).into()])
        }
    }

    #[test]
    fn describe_marks_key_fields_not_null() {
        let spec = describe::<Echo>();
        assert_eq!((spec.name.as_str(), spec.version), ("echo", 2));
        let fields = &spec.collections[0].fields;
        assert!(!fields[0].nullable && fields[1].nullable);
        assert!(matches!(fields[1].computed, Some(wit::Computed::Ratio(ref r)) if r.scale == 2));
    }

    #[test]
    fn handle_returns_one_result_per_event() {
        let events = (0..3)
            .map(|offset| wit::Event {
                topic: "t".into(),
                partition: 0,
                offset,
                key: None,
                value: None,
                headers: Vec::new(),
                timestamp_ms: None,
            })
            .collect();
        let results = handle::<Echo>(events);
        assert_eq!(results.len(), 3);
        assert_eq!(results[1].as_ref().err().map(String::as_str), Some("missing field `x`"));
        let Ok(ops) = &results[2] else { panic!("event 2 succeeds") };
        assert!(matches!(&ops[0], wit::Operation::Upsert(u) if matches!(u.key[0], wit::Value::Integer(2))));
    }
}
