//! The conformance corpus (`tests/conformance/*.json`) run through the host itself: each case's
//! declaration is validated by `Spec::new`, its tables created in a schema of its own, its
//! batches folded by `Changeset` and committed by `BatchWriter` to a real PostgreSQL, and the
//! rows read back from the tables. The Rust SDK, Python and JavaScript harnesses run the same
//! files and must reach the same rows or the same rejection; the corpus format is described in
//! `tests/conformance/README.md`.

use std::collections::HashMap;

use projector::changeset::Changeset;
use projector::contract::{Delete, FieldType, FieldValue, Increment, Operation, Scalar, StoredSpec, Upsert, Value};
use projector::sink::postgres::ddl::{self, create_storage};
use projector::sink::postgres::BatchWriter;
use projector::spec::Spec;
use projector_tests::conformance::{cases, same_rows, Case, Outcome};
use projector_tests::TestDb;
use serde_json::{Map, Value as Json};

#[tokio::test]
async fn the_host_passes_the_conformance_corpus() {
    let db = TestDb::create("conformance").await;
    for statement in ddl::BOOTSTRAP {
        sqlx::query(statement).execute(&db.pool).await.unwrap();
    }
    let cases = cases();
    assert!(cases.len() >= 30, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let outcome = run(&db, &format!("case_{index}"), case).await;
        if let Err(problem) = case.check(&outcome, same_rows) {
            failures.push(format!("{}: {problem}", case.title()));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

async fn run(db: &TestDb, schema: &str, case: &Case) -> Outcome {
    let stored: StoredSpec = match serde_json::from_value(case.declaration.clone()) {
        Ok(stored) => stored,
        Err(error) => return Outcome::Declaration(format!("unreadable declaration: {error}")),
    };
    let spec = match Spec::new(stored.spec) {
        Ok(spec) => spec,
        Err(error) => return Outcome::Declaration(error.to_string()),
    };
    for statement in create_storage(schema, &spec) {
        sqlx::query(&statement).execute(&db.pool).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    let writer = BatchWriter::new(db.pool.clone(), schema);
    for batch in &case.batches {
        let mut changes = Changeset::new(&spec);
        for event in batch {
            let operations: Vec<Operation> = event.iter().map(operation).collect();
            if let Err(error) = changes.apply(&spec, &operations) {
                return Outcome::Operation(error);
            }
        }
        if let Err(error) = writer.commit(&spec, &changes, &HashMap::new(), &[], &[]).await {
            assert!(error.caused_by_data(), "{}: not a refusal of the data: {error}", case.title());
            return Outcome::Operation(error.to_string());
        }
    }
    let mut tables = Map::new();
    for (collection, _) in spec.collections() {
        let key: Vec<String> = collection.primary_key.iter().map(|k| ddl::ident(k)).collect();
        let rows = db
            .json_rows(&format!(
                "SELECT (to_jsonb(t) - '{}')::text FROM {} AS t ORDER BY {}",
                ddl::SEARCH_COLUMN,
                ddl::qualified(schema, &collection.name),
                key.join(", ")
            ))
            .await;
        let types: HashMap<&str, &FieldType> = collection.fields.iter().map(|f| (f.name.as_str(), &f.type_)).collect();
        let rows = rows.into_iter().map(|row| canonical_row(row, &types)).collect();
        tables.insert(collection.name.clone(), Json::Array(rows));
    }
    Outcome::Rows(Json::Object(tables))
}

/// A row as PostgreSQL renders it (`to_jsonb`), in the corpus's canonical form: decimals as
/// strings of their stored digits, timestamps in UTC with a `Z`.
fn canonical_row(row: Json, types: &HashMap<&str, &FieldType>) -> Json {
    let Json::Object(columns) = row else { panic!("a row is an object: {row}") };
    let columns = columns
        .into_iter()
        .map(|(name, value)| {
            let value = match (types[name.as_str()], value) {
                (FieldType::Decimal, Json::Number(n)) => Json::String(n.to_string()),
                (FieldType::Timestamp, Json::String(t)) => Json::String(utc(&t)),
                (_, value) => value,
            };
            (name, value)
        })
        .collect();
    Json::Object(columns)
}

fn utc(text: &str) -> String {
    let stripped = text.strip_suffix("+00:00").unwrap_or_else(|| panic!("a UTC timestamp: {text}"));
    format!("{stripped}Z")
}

fn operation(json: &Json) -> Operation {
    let (kind, body) = json.as_object().and_then(|o| o.iter().next()).expect("an operation is {kind: body}");
    let collection = body["collection"].as_str().expect("collection").to_owned();
    let key = body["key"].as_array().expect("key").iter().map(value).collect();
    let fields = || -> Vec<FieldValue> {
        let pairs = body["fields"].as_array().expect("fields");
        pairs
            .iter()
            .map(|pair| FieldValue { name: pair[0].as_str().expect("name").into(), value: value(&pair[1]) })
            .collect()
    };
    match kind.as_str() {
        "upsert" => Operation::Upsert(Upsert { collection, key, fields: fields() }),
        "increment" => Operation::Increment(Increment { collection, key, fields: fields() }),
        "delete" => Operation::Delete(Delete { collection, key }),
        other => panic!("unknown operation `{other}`"),
    }
}

fn value(json: &Json) -> Value {
    if json.is_null() {
        return Value::Null;
    }
    let (kind, inner) = json.as_object().and_then(|o| o.iter().next()).expect("a value is {type: value}");
    let text = || inner.as_str().expect("a string").to_owned();
    match kind.as_str() {
        "json" => Value::Json(text()),
        "list" => Value::List(inner.as_array().expect("an array").iter().map(scalar).collect()),
        _ => match scalar(json) {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Boolean(b),
            Scalar::Integer(i) => Value::Integer(i),
            Scalar::Float(f) => Value::Float(f),
            Scalar::Decimal(d) => Value::Decimal(d),
            Scalar::Text(t) => Value::Text(t),
            Scalar::Timestamp(t) => Value::Timestamp(t),
            Scalar::Date(d) => Value::Date(d),
        },
    }
}

fn scalar(json: &Json) -> Scalar {
    if json.is_null() {
        return Scalar::Null;
    }
    let (kind, inner) = json.as_object().and_then(|o| o.iter().next()).expect("a value is {type: value}");
    let integer = || inner.as_i64().expect("an integer");
    match kind.as_str() {
        "boolean" => Scalar::Boolean(inner.as_bool().expect("a boolean")),
        "integer" => Scalar::Integer(integer()),
        "float" => Scalar::Float(inner.as_f64().expect("a number")),
        "decimal" => Scalar::Decimal(inner.as_str().expect("a string").into()),
        "text" => Scalar::Text(inner.as_str().expect("a string").into()),
        "timestamp" => Scalar::Timestamp(integer()),
        "date" => Scalar::Date(i32::try_from(integer()).expect("a date in days")),
        other => panic!("unknown value type `{other}`"),
    }
}
