//! Folding a batch's operations into one net change per row, in event order.
//!
//! Invariants:
//! - Applying a [`Changeset`] once has the same effect as applying its operations one by one
//!   in the order they were added: a later upsert overrides an earlier value, increments add up
//!   (onto a value set earlier in the batch, or onto the stored one), a delete discards what
//!   came before it and makes later writes start from an empty row.
//! - Every value is checked against the declared field type before it is accepted, and is kept
//!   as a [`Cell`] of that type: sink-neutral, so each sink encodes it in its own form (the
//!   PostgreSQL column form is `sink::postgres::encode`). Decimals never pass through a float.
//! - Text holds no NUL character (U+0000), in every sink alike: PostgreSQL cannot store it, and
//!   one write semantics means one set of values every sink takes.
//! - Rows are ordered by key, so concurrent writers lock rows in the same order.

use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{Map, Number, Value as Json};

use crate::contract::{FieldType, FieldValue, Operation, ScalarType, Sink, Value};
use crate::spec::{is_numeric, CollectionInfo, Spec};

/// One primary-key component, in a form with a single representation per value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyPart {
    /// A boolean key.
    Bool(bool),
    /// An integer key.
    Int(i64),
    /// A text key.
    Text(String),
    /// A date key (days since the epoch).
    Date(i32),
    /// A timestamp key (microseconds since the epoch).
    Timestamp(i64),
}

/// A primary key, in declared order.
pub(crate) type Key = Vec<KeyPart>;

/// A value checked against its field's declared type.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// No value.
    Null,
    /// A boolean field's value.
    Bool(bool),
    /// An integer field's value.
    Int(i64),
    /// A float field's value (NaN and infinities included).
    Float(f64),
    /// A decimal field's value, with its scale.
    Decimal(Decimal),
    /// A text field's value (no NUL character).
    Text(String),
    /// A timestamp field's value (microseconds since the epoch, within chrono's range).
    Timestamp(i64),
    /// A date field's value (days since the epoch, within chrono's range).
    Date(i32),
    /// A JSON field's document (no NUL character in any string or member name).
    Json(Json),
    /// A list field's elements, each of the element type.
    List(Vec<Cell>),
}

/// The net change of one field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldChange {
    /// Set the field to this value.
    Set(Cell),
    /// Add this amount to the stored value (null or absent counts as zero).
    Add(Amount),
}

/// An amount to add.
#[derive(Debug, Clone, PartialEq)]
pub enum Amount {
    /// To an integer field.
    Int(i64),
    /// To a float field.
    Float(f64),
    /// To a decimal field.
    Decimal(Decimal),
    /// To a JSON object of counters, key by key.
    Counts(BTreeMap<String, Decimal>),
}

/// The net change of one row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RowChange {
    /// Delete the stored row before writing.
    pub delete_first: bool,
    /// Fields to write, by declared position; `None` when the row ends deleted.
    pub write: Option<BTreeMap<usize, FieldChange>>,
    /// Each event's own change of the row, in event order: kept for collections whose sink
    /// applies every event at most once per document by its source offset (the search engine),
    /// empty otherwise.
    pub steps: Vec<Step>,
}

/// One event's change of one row (its operations on the row folded), with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Partition of the event.
    pub partition: i32,
    /// Offset of the event.
    pub offset: i64,
    /// The event deletes the row before its writes (or without any).
    pub delete_first: bool,
    /// What the event writes, by declared position.
    pub write: BTreeMap<usize, FieldChange>,
}

/// Where an event of a batch came from, for the per-event [`Step`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    /// Partition of the event.
    pub partition: i32,
    /// Offset of the event.
    pub offset: i64,
}

/// The net changes of one batch, per collection (by declared position) and key.
#[derive(Debug, Clone, Default)]
pub struct Changeset {
    tables: Vec<BTreeMap<Key, RowChange>>,
}

impl Changeset {
    /// An empty changeset for the collections of `spec`.
    pub fn new(spec: &Spec) -> Self {
        Self { tables: vec![BTreeMap::new(); spec.collections().count()] }
    }

    /// Whether the changeset changes nothing.
    pub fn is_empty(&self) -> bool {
        self.tables.iter().all(BTreeMap::is_empty)
    }

    /// Rows changed per collection position.
    pub fn tables(&self) -> &[BTreeMap<Key, RowChange>] {
        &self.tables
    }

    /// Adds one event's operations, in order. On error nothing of that event is added and
    /// the message says which operation and field are at fault.
    pub fn apply(&mut self, spec: &Spec, operations: &[Operation]) -> Result<(), String> {
        self.apply_at(spec, None, operations)
    }

    /// [`Changeset::apply`] for an event at `at`: rows of collections on the search engine
    /// also keep the event's own change as a [`Step`].
    pub fn apply_at(&mut self, spec: &Spec, at: Option<At>, operations: &[Operation]) -> Result<(), String> {
        let mut scratch = self.clone_touched(spec, operations);
        for (index, operation) in operations.iter().enumerate() {
            apply_one(spec, &mut scratch, operation).map_err(|message| format!("operation {index}: {message}"))?;
        }
        let at = at.filter(|_| spec.on_search_engine());
        if let Some(at) = at {
            // The event alone, folded from nothing: its step of each row it touches.
            let mut own = BTreeMap::new();
            for operation in operations {
                apply_one(spec, &mut own, operation).expect("accepted above");
            }
            for (position, rows) in own {
                if spec.raw().collections[position].sink != Sink::Elasticsearch {
                    continue;
                }
                for (key, change) in rows {
                    let row = scratch.get_mut(&position).and_then(|rows| rows.get_mut(&key)).expect("touched above");
                    row.steps.push(Step {
                        partition: at.partition,
                        offset: at.offset,
                        delete_first: change.delete_first,
                        write: change.write.unwrap_or_default(),
                    });
                }
            }
        }
        for (position, rows) in scratch {
            self.tables[position].extend(rows);
        }
        Ok(())
    }

    /// Copies the rows the operations touch, so a failing event leaves `self` unchanged.
    fn clone_touched(&self, spec: &Spec, operations: &[Operation]) -> BTreeMap<usize, BTreeMap<Key, RowChange>> {
        let mut scratch: BTreeMap<usize, BTreeMap<Key, RowChange>> = BTreeMap::new();
        for operation in operations {
            let (collection, key) = match operation {
                Operation::Upsert(op) => (&op.collection, &op.key),
                Operation::Delete(op) => (&op.collection, &op.key),
                Operation::Increment(op) => (&op.collection, &op.key),
            };
            let Some((declared, info)) = spec.collection(collection) else {
                continue;
            };
            let Ok(key) = key_of(&declared.fields, info, key) else {
                continue;
            };
            if let Some(row) = self.tables[info.index].get(&key) {
                scratch.entry(info.index).or_default().insert(key, row.clone());
            }
        }
        scratch
    }
}

fn apply_one(
    spec: &Spec,
    scratch: &mut BTreeMap<usize, BTreeMap<Key, RowChange>>,
    operation: &Operation,
) -> Result<(), String> {
    let (name, key) = match operation {
        Operation::Upsert(op) => (&op.collection, &op.key),
        Operation::Delete(op) => (&op.collection, &op.key),
        Operation::Increment(op) => (&op.collection, &op.key),
    };
    let (collection, info) = spec.collection(name).ok_or_else(|| format!("unknown collection `{name}`"))?;
    let fields = &collection.fields;
    let key = key_of(fields, info, key).map_err(|m| format!("collection `{name}`: {m}"))?;
    let row = scratch.entry(info.index).or_default().entry(key).or_default();
    match operation {
        Operation::Delete(_) => {
            *row = RowChange { delete_first: true, write: None, steps: std::mem::take(&mut row.steps) };
        }
        Operation::Upsert(op) => {
            let write = row.write.get_or_insert_with(BTreeMap::new);
            for FieldValue { name: field, value } in &op.fields {
                let position = writable(fields, info, name, field)?;
                let cell =
                    to_cell(&fields[position].type_, value).map_err(|m| format!("field `{field}` of `{name}`: {m}"))?;
                if cell == Cell::Null && !fields[position].nullable {
                    return Err(format!("field `{field}` of `{name}` is not nullable"));
                }
                write.insert(position, FieldChange::Set(cell));
            }
        }
        Operation::Increment(op) => {
            let write = row.write.get_or_insert_with(BTreeMap::new);
            for FieldValue { name: field, value } in &op.fields {
                let position = writable(fields, info, name, field)?;
                let amount = to_amount(&fields[position].type_, value)
                    .map_err(|m| format!("increment of field `{field}` of `{name}`: {m}"))?;
                let change = match write.remove(&position) {
                    None => FieldChange::Add(amount),
                    Some(FieldChange::Add(before)) => FieldChange::Add(add(before, amount)?),
                    Some(FieldChange::Set(before)) => FieldChange::Set(add_to_cell(&before, amount)?),
                };
                write.insert(position, change);
            }
        }
    }
    Ok(())
}

/// Position of a field operations may write.
fn writable(
    fields: &[crate::contract::Field],
    info: &CollectionInfo,
    collection: &str,
    field: &str,
) -> Result<usize, String> {
    let position = info.field(field).ok_or_else(|| format!("unknown field `{field}` of `{collection}`"))?;
    if info.primary_key.contains(&position) {
        return Err(format!("field `{field}` of `{collection}` is part of the key; set it through the key"));
    }
    if fields[position].computed.is_some() {
        return Err(format!("field `{field}` of `{collection}` is computed by the host"));
    }
    Ok(position)
}

fn key_of(fields: &[crate::contract::Field], info: &CollectionInfo, values: &[Value]) -> Result<Key, String> {
    if values.len() != info.primary_key.len() {
        return Err(format!(
            "the key has {} values; the primary key has {} fields",
            values.len(),
            info.primary_key.len()
        ));
    }
    info.primary_key
        .iter()
        .zip(values)
        .map(|(&position, value)| {
            let field = &fields[position];
            let part = match (&field.type_, value) {
                (FieldType::Text, Value::Text(s)) => {
                    storable(s).map_err(|m| format!("key field `{}`: {m}", field.name))?;
                    KeyPart::Text(s.clone())
                }
                (FieldType::Integer, Value::Integer(i)) => KeyPart::Int(*i),
                (FieldType::Boolean, Value::Boolean(b)) => KeyPart::Bool(*b),
                (FieldType::Date, Value::Date(d)) => KeyPart::Date(date(*d)?),
                (FieldType::Timestamp, Value::Timestamp(t)) => KeyPart::Timestamp(timestamp(*t)?),
                (expected, got) => {
                    return Err(format!(
                        "key field `{}` is {}; got {}",
                        field.name,
                        type_name(expected),
                        value_name(got)
                    ))
                }
            };
            Ok(part)
        })
        .collect()
}

/// Checks a value against a field of `field_type`.
pub(crate) fn to_cell(field_type: &FieldType, value: &Value) -> Result<Cell, String> {
    let mismatch = || Err(format!("expected {}, got {}", type_name(field_type), value_name(value)));
    Ok(match (field_type, value) {
        (_, Value::Null) => Cell::Null,
        (FieldType::Boolean, Value::Boolean(b)) => Cell::Bool(*b),
        (FieldType::Integer, Value::Integer(i)) => Cell::Int(*i),
        (FieldType::Float, Value::Float(f)) => Cell::Float(*f),
        (FieldType::Float, Value::Integer(i)) => Cell::Float(*i as f64),
        (FieldType::Decimal, Value::Decimal(s)) => Cell::Decimal(parse_decimal(s)?),
        (FieldType::Decimal, Value::Integer(i)) => Cell::Decimal(Decimal::from(*i)),
        (FieldType::Text, Value::Text(s)) => {
            storable(s)?;
            Cell::Text(s.clone())
        }
        (FieldType::Timestamp, Value::Timestamp(t)) => Cell::Timestamp(timestamp(*t)?),
        (FieldType::Date, Value::Date(d)) => Cell::Date(date(*d)?),
        (FieldType::Json, Value::Json(text)) => {
            let document = serde_json::from_str(text).map_err(|e| format!("invalid JSON document: {e}"))?;
            storable_json(&document)?;
            Cell::Json(document)
        }
        (FieldType::List(element), Value::List(items)) => {
            Cell::List(items.iter().map(|item| scalar_cell(*element, item)).collect::<Result<_, _>>()?)
        }
        _ => return mismatch(),
    })
}

/// Refuses text with a NUL character: PostgreSQL's `text` and `jsonb` cannot store it.
fn storable(text: &str) -> Result<(), String> {
    match text.find('\0') {
        Some(at) => Err(format!("text contains a NUL character (U+0000) at byte {at}, which PostgreSQL cannot store")),
        None => Ok(()),
    }
}

fn storable_json(document: &Json) -> Result<(), String> {
    match document {
        Json::String(text) => storable(text),
        Json::Array(items) => items.iter().try_for_each(storable_json),
        Json::Object(members) => members.iter().try_for_each(|(name, value)| {
            storable(name)?;
            storable_json(value)
        }),
        _ => Ok(()),
    }
}

fn scalar_cell(element: ScalarType, item: &crate::contract::Scalar) -> Result<Cell, String> {
    use crate::contract::Scalar;
    let as_value = match item {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Boolean(*b),
        Scalar::Integer(i) => Value::Integer(*i),
        Scalar::Float(f) => Value::Float(*f),
        Scalar::Decimal(s) => Value::Decimal(s.clone()),
        Scalar::Text(s) => Value::Text(s.clone()),
        Scalar::Timestamp(t) => Value::Timestamp(*t),
        Scalar::Date(d) => Value::Date(*d),
    };
    let field_type = element.field_type();
    to_cell(&field_type, &as_value).map_err(|m| format!("list element: {m}"))
}

fn to_amount(field_type: &FieldType, value: &Value) -> Result<Amount, String> {
    Ok(match (field_type, value) {
        (FieldType::Integer, Value::Integer(i)) => Amount::Int(*i),
        (FieldType::Float, Value::Float(f)) => Amount::Float(*f),
        (FieldType::Float, Value::Integer(i)) => Amount::Float(*i as f64),
        (FieldType::Decimal, Value::Decimal(s)) => Amount::Decimal(parse_decimal(s)?),
        (FieldType::Decimal, Value::Integer(i)) => Amount::Decimal(Decimal::from(*i)),
        (FieldType::Json, Value::Json(text)) => {
            Amount::Counts(counts(&serde_json::from_str(text).map_err(|e| format!("invalid JSON document: {e}"))?)?)
        }
        (t, v) if is_numeric(t) || *t == FieldType::Json => {
            return Err(format!("expected an amount of type {}, got {}", type_name(t), value_name(v)))
        }
        (t, _) => return Err(format!("a {} field cannot be incremented", type_name(t))),
    })
}

fn counts(json: &Json) -> Result<BTreeMap<String, Decimal>, String> {
    let Json::Object(map) = json else {
        return Err("a JSON increment must be an object of numbers".into());
    };
    map.iter()
        .map(|(key, value)| match value {
            Json::Number(n) => Ok((key.clone(), parse_decimal(&n.to_string())?)),
            _ => Err(format!("a JSON increment must be an object of numbers; `{key}` is not a number")),
        })
        .collect()
}

fn add(before: Amount, amount: Amount) -> Result<Amount, String> {
    Ok(match (before, amount) {
        (Amount::Int(a), Amount::Int(b)) => Amount::Int(a.checked_add(b).ok_or("integer increment overflows 64 bits")?),
        (Amount::Float(a), Amount::Float(b)) => Amount::Float(a + b),
        (Amount::Decimal(a), Amount::Decimal(b)) => {
            Amount::Decimal(a.checked_add(b).ok_or("decimal increment overflows")?)
        }
        (Amount::Counts(mut a), Amount::Counts(b)) => {
            for (key, n) in b {
                let sum = a.get(&key).copied().unwrap_or_default().checked_add(n).ok_or("counter overflows")?;
                a.insert(key, sum);
            }
            a.retain(|_, n| !n.is_zero());
            Amount::Counts(a)
        }
        _ => unreachable!("amounts of one field have one type"),
    })
}

/// Adds an amount to a value set earlier in the same batch.
fn add_to_cell(before: &Cell, amount: Amount) -> Result<Cell, String> {
    let start = match (&amount, before) {
        (_, Cell::Null) => zero_like(&amount),
        (Amount::Int(_), Cell::Int(n)) => Amount::Int(*n),
        (Amount::Float(_), Cell::Float(f)) => Amount::Float(*f),
        (Amount::Decimal(_), Cell::Decimal(d)) => Amount::Decimal(*d),
        (Amount::Counts(_), Cell::Json(json @ Json::Object(_))) => Amount::Counts(counts(json)?),
        (Amount::Counts(_), _) => return Err("the stored JSON value is not an object of numbers".into()),
        _ => return Err("the stored value does not match the amount".into()),
    };
    Ok(match add(start, amount)? {
        Amount::Int(i) => Cell::Int(i),
        Amount::Float(f) => Cell::Float(f),
        Amount::Decimal(d) => Cell::Decimal(d),
        Amount::Counts(map) => Cell::Json(counts_document(&map)),
    })
}

fn zero_like(amount: &Amount) -> Amount {
    match amount {
        Amount::Int(_) => Amount::Int(0),
        Amount::Float(_) => Amount::Float(0.0),
        Amount::Decimal(_) => Amount::Decimal(Decimal::ZERO),
        Amount::Counts(_) => Amount::Counts(BTreeMap::new()),
    }
}

/// A JSON object of counters, each an exact JSON number.
pub(crate) fn counts_document(counts: &BTreeMap<String, Decimal>) -> Json {
    // With arbitrary_precision, parsing keeps the exact digits.
    let number =
        |d: &Decimal| Json::Number(Number::from_str(&d.normalize().to_string()).expect("a decimal is a JSON number"));
    Json::Object(counts.iter().map(|(k, v)| (k.clone(), number(v))).collect::<Map<_, _>>())
}

fn parse_decimal(text: &str) -> Result<Decimal, String> {
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| format!("`{text}` is not a decimal within 28 significant digits"))
}

/// A timestamp chrono can represent (every sink formats it through chrono).
fn timestamp(micros: i64) -> Result<i64, String> {
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(_) => Ok(micros),
        None => Err(format!("timestamp {micros} µs is out of range")),
    }
}

/// A date chrono can represent.
fn date(days: i32) -> Result<i32, String> {
    match epoch().checked_add_signed(chrono::Duration::days(days.into())) {
        Some(_) => Ok(days),
        None => Err(format!("date {days} days is out of range")),
    }
}

/// 1970-01-01, day 0 of [`Cell::Date`] and [`KeyPart::Date`].
pub(crate) fn epoch() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date")
}

fn type_name(field_type: &FieldType) -> &'static str {
    match field_type {
        FieldType::Boolean => "boolean",
        FieldType::Integer => "integer",
        FieldType::Float => "float",
        FieldType::Decimal => "decimal",
        FieldType::Text => "text",
        FieldType::Timestamp => "timestamp",
        FieldType::Date => "date",
        FieldType::Json => "json",
        FieldType::List(_) => "list",
    }
}

fn value_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Boolean(_) => "boolean",
        Value::Integer(_) => "integer",
        Value::Float(_) => "float",
        Value::Decimal(_) => "decimal",
        Value::Text(_) => "text",
        Value::Timestamp(_) => "timestamp",
        Value::Date(_) => "date",
        Value::Json(_) => "json",
        Value::List(_) => "list",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Delete, Increment, Upsert};
    use crate::spec::tests::stats_spec;

    fn spec() -> Spec {
        Spec::new(stats_spec()).unwrap()
    }

    fn fv(name: &str, value: Value) -> FieldValue {
        FieldValue { name: name.into(), value }
    }

    fn upsert(day: i32, fields: Vec<FieldValue>) -> Operation {
        Operation::Upsert(Upsert { collection: "daily".into(), key: vec![Value::Date(day)], fields })
    }

    fn inc(day: i32, fields: Vec<FieldValue>) -> Operation {
        Operation::Increment(Increment { collection: "daily".into(), key: vec![Value::Date(day)], fields })
    }

    fn row(changes: &Changeset, day: i32) -> RowChange {
        changes.tables()[0][&vec![KeyPart::Date(day)]].clone()
    }

    #[test]
    fn increments_fold_onto_earlier_sets_and_adds() {
        let spec = spec();
        let mut changes = Changeset::new(&spec);
        changes
            .apply(
                &spec,
                &[inc(1, vec![fv("count", Value::Integer(1)), fv("revenue", Value::Decimal("10.10".into()))])],
            )
            .unwrap();
        changes
            .apply(
                &spec,
                &[inc(1, vec![fv("count", Value::Integer(2)), fv("revenue", Value::Decimal("0.905".into()))])],
            )
            .unwrap();
        changes
            .apply(
                &spec,
                &[
                    upsert(2, vec![fv("revenue", Value::Decimal("1.5".into()))]),
                    inc(2, vec![fv("revenue", Value::Decimal("2.25".into()))]),
                ],
            )
            .unwrap();
        let write = row(&changes, 1).write.unwrap();
        assert_eq!(write[&1], FieldChange::Add(Amount::Int(3)));
        assert_eq!(write[&2], FieldChange::Add(Amount::Decimal(Decimal::from_str("11.005").unwrap())));
        assert_eq!(
            row(&changes, 2).write.unwrap()[&2],
            FieldChange::Set(Cell::Decimal(Decimal::from_str("3.75").unwrap()))
        );
    }

    #[test]
    fn json_counters_add_key_by_key_and_drop_zeros() {
        let spec = spec();
        let mut changes = Changeset::new(&spec);
        changes.apply(&spec, &[inc(1, vec![fv("by_status", Value::Json(r#"{"SUBMITTED":1}"#.into()))])]).unwrap();
        changes
            .apply(&spec, &[inc(1, vec![fv("by_status", Value::Json(r#"{"SUBMITTED":-1,"SHIPPED":1}"#.into()))])])
            .unwrap();
        let mut expected = BTreeMap::new();
        expected.insert("SHIPPED".to_string(), Decimal::ONE);
        assert_eq!(row(&changes, 1).write.unwrap()[&4], FieldChange::Add(Amount::Counts(expected.clone())));
        assert_eq!(counts_document(&expected).to_string(), r#"{"SHIPPED":1}"#);
    }

    #[test]
    fn delete_discards_earlier_changes_and_later_writes_start_fresh() {
        let spec = spec();
        let mut changes = Changeset::new(&spec);
        changes.apply(&spec, &[inc(1, vec![fv("count", Value::Integer(5))])]).unwrap();
        changes
            .apply(&spec, &[Operation::Delete(Delete { collection: "daily".into(), key: vec![Value::Date(1)] })])
            .unwrap();
        assert_eq!(row(&changes, 1), RowChange { delete_first: true, write: None, steps: vec![] });
        changes.apply(&spec, &[inc(1, vec![fv("count", Value::Integer(2))])]).unwrap();
        let after = row(&changes, 1);
        assert!(after.delete_first);
        assert_eq!(after.write.unwrap()[&1], FieldChange::Add(Amount::Int(2)));
    }

    #[test]
    fn out_of_range_dates_and_timestamps_are_refused() {
        assert_eq!(
            to_cell(&FieldType::Date, &Value::Date(i32::MAX)),
            Err(format!("date {} days is out of range", i32::MAX))
        );
        assert!(to_cell(&FieldType::Timestamp, &Value::Timestamp(i64::MAX)).unwrap_err().contains("out of range"));
        assert_eq!(to_cell(&FieldType::Date, &Value::Date(20_412)), Ok(Cell::Date(20_412)));
    }

    #[test]
    fn text_postgresql_cannot_store_is_refused() {
        let refused = "text contains a NUL character (U+0000) at byte 1, which PostgreSQL cannot store";
        assert_eq!(to_cell(&FieldType::Text, &Value::Text("a\0b".into())), Err(refused.to_string()));
        let document = Value::Json(r#"{"a": ["x", "y\u0000"]}"#.into());
        assert_eq!(to_cell(&FieldType::Json, &document), Err(refused.to_string()));
        let member = Value::Json(r#"{"k\u0000": 1}"#.into());
        assert_eq!(to_cell(&FieldType::Json, &member), Err(refused.to_string()));
        let list = Value::List(vec![crate::contract::Scalar::Text("z\0".into())]);
        assert!(to_cell(&FieldType::List(ScalarType::Text), &list).unwrap_err().contains("NUL"));
        assert_eq!(to_cell(&FieldType::Text, &Value::Text("fine".into())), Ok(Cell::Text("fine".into())));
    }

    #[test]
    fn values_are_checked_against_declared_types() {
        let spec = spec();
        let mut changes = Changeset::new(&spec);
        let cases = [
            (
                upsert(1, vec![fv("count", Value::Text("x".into()))]),
                "field `count` of `daily`: expected integer, got text",
            ),
            (upsert(1, vec![fv("revenue", Value::Float(1.5))]), "expected decimal, got float"),
            (upsert(1, vec![fv("revenue", Value::Decimal("1e".into()))]), "`1e` is not a decimal"),
            (upsert(1, vec![fv("average", Value::Decimal("1".into()))]), "computed by the host"),
            (upsert(1, vec![fv("nope", Value::Null)]), "unknown field `nope`"),
            (upsert(1, vec![fv("day", Value::Date(2))]), "part of the key"),
            (inc(1, vec![fv("tags", Value::Integer(1))]), "a list field cannot be incremented"),
            (inc(1, vec![fv("by_status", Value::Json("[1]".into()))]), "object of numbers"),
            (
                Operation::Delete(Delete { collection: "daily".into(), key: vec![Value::Text("d".into())] }),
                "key field `day` is date; got text",
            ),
            (Operation::Delete(Delete { collection: "nightly".into(), key: vec![] }), "unknown collection `nightly`"),
        ];
        for (operation, expected) in cases {
            let err = changes.apply(&spec, &[upsert(9, vec![fv("count", Value::Integer(1))]), operation]).unwrap_err();
            assert!(err.contains(expected), "{err} should contain {expected}");
            assert!(err.starts_with("operation 1: "), "{err}");
        }
        assert!(changes.is_empty(), "a failed event adds nothing");
    }
}
