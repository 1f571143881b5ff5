//! The conformance corpus (`tests/conformance/*.json` of the repository) run through the
//! in-memory read model: the same declarations, operations and expected rows or rejections the
//! host's end-to-end runner checks against PostgreSQL.

use std::path::PathBuf;
use std::str::FromStr;

use serde_json::Value as Json;

use super::read_model::ReadModel;
use crate::spec::{Collection, Field, FieldType, ProjectionSpec, ScalarType};
use crate::{Decimal, Operation, Scalar, Value};

enum Outcome {
    Declaration(String),
    Operation(String),
    Rows(Json),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Declaration(message) => write!(f, "the declaration refused: {message}"),
            Outcome::Operation(message) => write!(f, "an operation refused: {message}"),
            Outcome::Rows(rows) => write!(f, "rows {rows}"),
        }
    }
}

#[test]
fn the_sdk_harness_passes_the_conformance_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/conformance");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the corpus directory")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let (mut count, mut failures) = (0, Vec::new());
    for path in files {
        let document: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        for case in document["cases"].as_array().expect("cases") {
            count += 1;
            let declaration = case.get("declaration").unwrap_or(&document["declaration"]);
            let outcome = run(declaration, &case["batches"]);
            let expect = &case["expect"];
            let passed = match (expect.get("error").and_then(Json::as_str), &outcome) {
                (Some("declaration"), Outcome::Declaration(_)) | (Some("operation"), Outcome::Operation(_)) => true,
                (None, Outcome::Rows(rows)) => same_rows(rows, &expect["rows"]),
                _ => false,
            };
            if !passed {
                failures.push(format!("{file}: {}: got {outcome}, expected {expect}", case["name"]));
            }
        }
    }
    assert!(count >= 30, "the corpus has {count} cases");
    assert!(failures.is_empty(), "{} of {count} cases failed:\n{}", failures.len(), failures.join("\n"));
}

fn run(declaration: &Json, batches: &Json) -> Outcome {
    let spec = match spec(declaration) {
        Ok(spec) => spec,
        Err(error) => return Outcome::Declaration(error),
    };
    let mut model = match ReadModel::new(&spec) {
        Ok(model) => model,
        Err(error) => return Outcome::Declaration(error),
    };
    // The read model applies operations one by one; batches and events only group them.
    for operation in
        batches.as_array().unwrap().iter().flat_map(|b| b.as_array().unwrap()).flat_map(|e| e.as_array().unwrap())
    {
        if let Err(error) = model.apply(&self::operation(operation)) {
            return Outcome::Operation(error);
        }
    }
    let tables = spec
        .collections()
        .iter()
        .map(|c| {
            let rows = model.rows(c.name()).unwrap().into_iter().map(|row| row.to_json()).collect();
            (c.name().to_owned(), Json::Array(rows))
        })
        .collect();
    Outcome::Rows(Json::Object(tables))
}

/// The SDK spec of a declaration in the registry's JSON form; `Err` for what the SDK's types
/// cannot express (an unknown type name), which the host refuses too.
fn spec(json: &Json) -> Result<ProjectionSpec, String> {
    let text = |value: &Json| value.as_str().map(str::to_owned).ok_or_else(|| format!("not a string: {value}"));
    let version = json["version"].as_u64().and_then(|v| u32::try_from(v).ok()).ok_or("version")?;
    let mut spec = ProjectionSpec::new(text(&json["name"])?, version, "");
    for c in json["collections"].as_array().ok_or("collections")? {
        let mut collection = match c["sink"].as_str() {
            Some("postgres") => Collection::postgres(text(&c["name"])?, ""),
            Some("elasticsearch") => Collection::elasticsearch(text(&c["name"])?, ""),
            _ => return Err(format!("unknown sink {}", c["sink"])),
        };
        for f in c["fields"].as_array().ok_or("fields")? {
            let mut field = Field::new(text(&f["name"])?, field_type(&f["type"])?);
            field = if f["nullable"] == Json::Bool(true) { field.nullable() } else { field.required() };
            for (flag, set) in [
                ("searchable", Field::searchable as fn(Field) -> Field),
                ("filterable", Field::filterable),
                ("sortable", Field::sortable),
            ] {
                if f[flag] == Json::Bool(true) {
                    field = set(field);
                }
            }
            if let Some(ratio) = f.get("computed").map(|c| &c["ratio"]) {
                let scale = ratio["scale"].as_u64().and_then(|s| u8::try_from(s).ok()).ok_or("scale")?;
                field = field.computed_ratio(text(&ratio["numerator"])?, text(&ratio["denominator"])?, scale);
            }
            collection = collection.field(field);
        }
        let key: Vec<String> =
            c["primary_key"].as_array().ok_or("primary_key")?.iter().map(text).collect::<Result<_, _>>()?;
        spec = spec.collection(collection.primary_key(key));
    }
    Ok(spec)
}

fn field_type(json: &Json) -> Result<FieldType, String> {
    if let Some(element) = json.get("list") {
        return Ok(FieldType::List(match element.as_str() {
            Some("boolean") => ScalarType::Boolean,
            Some("integer") => ScalarType::Integer,
            Some("float") => ScalarType::Float,
            Some("decimal") => ScalarType::Decimal,
            Some("text") => ScalarType::Text,
            Some("timestamp") => ScalarType::Timestamp,
            Some("date") => ScalarType::Date,
            _ => return Err(format!("unknown list element type {element}")),
        }));
    }
    Ok(match json.as_str() {
        Some("boolean") => FieldType::Boolean,
        Some("integer") => FieldType::Integer,
        Some("float") => FieldType::Float,
        Some("decimal") => FieldType::Decimal,
        Some("text") => FieldType::Text,
        Some("timestamp") => FieldType::Timestamp,
        Some("date") => FieldType::Date,
        Some("json") => FieldType::Json,
        _ => return Err(format!("unknown field type {json}")),
    })
}

fn operation(json: &Json) -> Operation {
    let (kind, body) = json.as_object().and_then(|o| o.iter().next()).expect("an operation is {kind: body}");
    let collection = body["collection"].as_str().expect("collection");
    let key: Vec<Value> = body["key"].as_array().expect("key").iter().map(value).collect();
    let fields = || body["fields"].as_array().expect("fields").iter().map(|p| (p[0].as_str().unwrap(), value(&p[1])));
    match kind.as_str() {
        "upsert" => fields().fold(Operation::upsert(collection, key), |op, (n, v)| op.set(n, v)).into(),
        "increment" => fields().fold(Operation::increment(collection, key), |op, (n, v)| op.add(n, v)).into(),
        "delete" => Operation::delete(collection, key),
        other => panic!("unknown operation `{other}`"),
    }
}

fn value(json: &Json) -> Value {
    if json.is_null() {
        return Value::Null;
    }
    let (kind, inner) = json.as_object().and_then(|o| o.iter().next()).expect("a value is {type: value}");
    match kind.as_str() {
        "json" => Value::Json(inner.as_str().expect("JSON text").to_owned()),
        "list" => Value::List(inner.as_array().expect("an array").iter().map(scalar).collect()),
        _ => super::row::scalar_value(&scalar(json)),
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

/// Rows equal in the corpus's sense: numbers of equal value, everything else exactly.
fn same_rows(actual: &Json, expected: &Json) -> bool {
    let number = |n: &serde_json::Number| {
        let text = n.to_string();
        Decimal::from_str(&text).ok().or_else(|| Decimal::from_scientific(&text).ok())
    };
    match (actual, expected) {
        (Json::Number(a), Json::Number(b)) => number(a) == number(b),
        (Json::Array(a), Json::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_rows(a, b)),
        (Json::Object(a), Json::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same_rows(v, w)))
        }
        (a, b) => a == b,
    }
}
