//! The PostgreSQL encoder: the JSON form `jsonb_populate_recordset` reads into each column
//! type, for the fold's checked values ([`Cell`]), key parts and amounts.
//!
//! Invariant: decimals are written as decimal strings (never through a float), timestamps as
//! RFC 3339 with microseconds in UTC, dates as `YYYY-MM-DD`, and floats that JSON cannot hold
//! (NaN, infinities) as the strings PostgreSQL's `double precision` reads.

use serde_json::{Number, Value as Json};

use crate::changeset::{counts_document, epoch, Amount, Cell, KeyPart};

/// The column form of a checked value.
pub(crate) fn cell_json(cell: &Cell) -> Json {
    match cell {
        Cell::Null => Json::Null,
        Cell::Bool(b) => Json::Bool(*b),
        Cell::Int(i) => Json::from(*i),
        Cell::Float(f) => float_json(*f),
        Cell::Decimal(d) => Json::String(d.to_string()),
        Cell::Text(s) => Json::String(s.clone()),
        Cell::Timestamp(t) => Json::String(timestamp_text(*t)),
        Cell::Date(d) => Json::String(date_text(*d)),
        Cell::Json(document) => document.clone(),
        Cell::List(items) => Json::Array(items.iter().map(cell_json).collect()),
    }
}

/// The column form of a key part.
pub(crate) fn key_json(part: &KeyPart) -> Json {
    match part {
        KeyPart::Bool(b) => Json::Bool(*b),
        KeyPart::Int(i) => Json::from(*i),
        KeyPart::Text(s) => Json::String(s.clone()),
        KeyPart::Date(d) => Json::String(date_text(*d)),
        KeyPart::Timestamp(t) => Json::String(timestamp_text(*t)),
    }
}

/// The column form of an amount to add.
pub(crate) fn amount_json(amount: &Amount) -> Json {
    match amount {
        Amount::Int(i) => Json::from(*i),
        Amount::Float(f) => float_json(*f),
        Amount::Decimal(d) => Json::String(d.to_string()),
        Amount::Counts(counts) => counts_document(counts),
    }
}

fn float_json(f: f64) -> Json {
    match Number::from_f64(f) {
        Some(n) => Json::Number(n),
        None if f.is_nan() => Json::String("NaN".into()),
        None if f > 0.0 => Json::String("Infinity".into()),
        None => Json::String("-Infinity".into()),
    }
}

/// The fold checked the range (`changeset::to_cell`, key parts alike).
pub(crate) fn timestamp_text(micros: i64) -> String {
    let time = chrono::DateTime::from_timestamp_micros(micros).expect("a timestamp checked by the fold");
    time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub(crate) fn date_text(days: i32) -> String {
    let date = epoch().checked_add_signed(chrono::Duration::days(days.into())).expect("a date checked by the fold");
    date.format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::str::FromStr;

    use rust_decimal::Decimal;

    use super::*;
    use crate::changeset::to_cell;
    use crate::contract::{FieldType, Scalar, ScalarType, Value};

    fn column(field_type: FieldType, value: Value) -> Json {
        cell_json(&to_cell(&field_type, &value).unwrap())
    }

    #[test]
    fn values_take_their_column_json_form() {
        assert_eq!(
            column(FieldType::Timestamp, Value::Timestamp(1_763_629_200_123_000)),
            Json::String("2025-11-20T09:00:00.123000Z".into())
        );
        assert_eq!(column(FieldType::Date, Value::Date(20_412)), Json::String("2025-11-20".into()));
        assert_eq!(column(FieldType::Decimal, Value::Decimal("116.80".into())), Json::String("116.80".into()));
        assert_eq!(column(FieldType::Decimal, Value::Integer(7)), Json::String("7".into()));
        assert_eq!(column(FieldType::Json, Value::Json(r#"{"p":8.90}"#.into())).to_string(), r#"{"p":8.90}"#);
        assert_eq!(column(FieldType::Float, Value::Float(f64::NAN)), Json::String("NaN".into()));
        assert_eq!(column(FieldType::Float, Value::Float(f64::NEG_INFINITY)), Json::String("-Infinity".into()));
        assert_eq!(column(FieldType::Float, Value::Integer(2)), serde_json::json!(2.0));
        assert_eq!(
            column(FieldType::List(ScalarType::Date), Value::List(vec![Scalar::Date(0), Scalar::Null])),
            serde_json::json!(["1970-01-01", null])
        );
        assert_eq!(key_json(&KeyPart::Timestamp(0)), Json::String("1970-01-01T00:00:00.000000Z".into()));
        assert_eq!(key_json(&KeyPart::Date(-1)), Json::String("1969-12-31".into()));
    }

    #[test]
    fn amounts_take_their_column_json_form() {
        assert_eq!(amount_json(&Amount::Decimal(Decimal::from_str("0.10").unwrap())), Json::String("0.10".into()));
        assert_eq!(amount_json(&Amount::Float(f64::INFINITY)), Json::String("Infinity".into()));
        let counts = BTreeMap::from([("PAID".to_string(), Decimal::from_str("2.50").unwrap())]);
        assert_eq!(amount_json(&Amount::Counts(counts)).to_string(), r#"{"PAID":2.5}"#);
    }
}
