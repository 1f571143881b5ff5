//! The host's rules for field values: which values fit which field type, and how an
//! increment adds an amount to a stored value.

use std::str::FromStr;

use crate::spec::{FieldType, ScalarType};
use crate::{Decimal, Scalar, Value};

pub(super) fn as_decimal(value: &Value) -> Option<Decimal> {
    match value {
        Value::Integer(i) => Some(Decimal::from(*i)),
        Value::Decimal(d) => Decimal::from_str(d).ok(),
        Value::Float(f) => Decimal::from_str(&f.to_string()).ok(),
        _ => None,
    }
}

/// Parses a decimal in plain notation (`-12.50`): optional sign, digits, optional fraction.
pub(super) fn parse_decimal(text: &str) -> Result<Decimal, String> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    let plain = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let parsed = if plain(whole) && plain(fraction) { Decimal::from_str(text).ok() } else { None };
    parsed.ok_or_else(|| format!("`{text}` is not a decimal in plain notation"))
}

/// Whether `value` fits a field of type `field_type` (null always does; nullability is checked
/// on the whole row).
pub(super) fn check_value(field_type: FieldType, value: &Value) -> Result<(), String> {
    let fits = match (field_type, value) {
        (_, Value::Null)
        | (FieldType::Boolean, Value::Boolean(_))
        | (FieldType::Integer, Value::Integer(_))
        | (FieldType::Float, Value::Float(_))
        | (FieldType::Text, Value::Text(_))
        | (FieldType::Timestamp, Value::Timestamp(_))
        | (FieldType::Date, Value::Date(_)) => true,
        (FieldType::Decimal, Value::Decimal(d)) => parse_decimal(d).map(|_| true)?,
        (FieldType::Decimal | FieldType::Float, Value::Integer(_)) => true,
        (FieldType::Json, Value::Json(text)) => serde_json::from_str::<serde_json::Value>(text).is_ok(),
        (FieldType::List(element), Value::List(items)) => items.iter().all(|s| scalar_fits(element, s)),
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        Err(format!("{value:?} does not fit a {field_type:?} field"))
    }
}

/// The value a field of `field_type` stores for `value` (which fits it): an integer is accepted
/// for a decimal or float field, alone or in a list, and stored as that type, as the host does.
pub(super) fn stored(field_type: FieldType, value: &Value) -> Value {
    let element = |scalar: &Scalar, element: ScalarType| match (element, scalar) {
        (ScalarType::Decimal, Scalar::Integer(i)) => Scalar::Decimal(i.to_string()),
        #[allow(clippy::cast_precision_loss)] // what the host stores: the nearest float
        (ScalarType::Float, Scalar::Integer(i)) => Scalar::Float(*i as f64),
        _ => scalar.clone(),
    };
    match (field_type, value) {
        (FieldType::Decimal, Value::Integer(i)) => Value::Decimal(i.to_string()),
        #[allow(clippy::cast_precision_loss)]
        (FieldType::Float, Value::Integer(i)) => Value::Float(*i as f64),
        (FieldType::List(e), Value::List(items)) => Value::List(items.iter().map(|s| element(s, e)).collect()),
        _ => value.clone(),
    }
}

fn scalar_fits(element: ScalarType, scalar: &Scalar) -> bool {
    matches!(
        (element, scalar),
        (_, Scalar::Null)
            | (ScalarType::Decimal | ScalarType::Float, Scalar::Integer(_))
            | (ScalarType::Boolean, Scalar::Boolean(_))
            | (ScalarType::Integer, Scalar::Integer(_))
            | (ScalarType::Float, Scalar::Float(_))
            | (ScalarType::Text, Scalar::Text(_))
            | (ScalarType::Timestamp, Scalar::Timestamp(_))
            | (ScalarType::Date, Scalar::Date(_))
    ) || matches!((element, scalar), (ScalarType::Decimal, Scalar::Decimal(d)) if parse_decimal(d).is_ok())
}

/// `current + amount` for an increment; absent or null counts as zero.
pub(super) fn add(field_type: FieldType, current: &Value, amount: &Value) -> Result<Value, String> {
    match (field_type, current, amount) {
        (FieldType::Integer, Value::Null | Value::Integer(_), Value::Integer(a)) => {
            let base = if let Value::Integer(c) = current { *c } else { 0 };
            base.checked_add(*a).map(Value::Integer).ok_or_else(|| "integer overflow".to_owned())
        }
        (FieldType::Float, Value::Null | Value::Float(_), Value::Float(_) | Value::Integer(_)) => {
            let base = if let Value::Float(c) = current { *c } else { 0.0 };
            let amount = match amount {
                #[allow(clippy::cast_precision_loss)] // the nearest float, as in the host
                Value::Integer(i) => *i as f64,
                Value::Float(f) => *f,
                _ => unreachable!("matched above"),
            };
            Ok(Value::Float(base + amount))
        }
        (FieldType::Decimal, Value::Null | Value::Decimal(_), Value::Decimal(_) | Value::Integer(_)) => {
            let base = if let Value::Decimal(c) = current { parse_decimal(c)? } else { Decimal::ZERO };
            let amount = match amount {
                Value::Integer(i) => Decimal::from(*i),
                Value::Decimal(a) => parse_decimal(a)?,
                _ => unreachable!("matched above"),
            };
            let sum = base.checked_add(amount).ok_or("decimal overflow")?;
            Ok(Value::Decimal(sum.to_string()))
        }
        (FieldType::Json, Value::Null | Value::Json(_), Value::Json(a)) => add_json(current, a),
        _ => Err(format!("cannot add {amount:?} to a {field_type:?} field holding {current:?}")),
    }
}

/// Adds a JSON object of numbers key by key; keys reaching zero disappear.
fn add_json(current: &Value, amount: &str) -> Result<Value, String> {
    use serde_json::Value as J;
    let J::Object(amounts) = serde_json::from_str(amount).map_err(|e| e.to_string())? else {
        return Err(format!("a JSON increment must be an object of numbers, not {amount}"));
    };
    let mut object = match current {
        Value::Json(text) => match serde_json::from_str(text).map_err(|e| e.to_string())? {
            J::Object(object) => object,
            other => return Err(format!("cannot add to the JSON value {other}: not an object")),
        },
        _ => serde_json::Map::new(),
    };
    for (key, delta) in amounts {
        let J::Number(delta) = delta else {
            return Err(format!("JSON increment `{key}` is {delta}, not a number"));
        };
        let base = match object.get(&key) {
            None | Some(J::Null) => Decimal::ZERO,
            Some(J::Number(n)) => parse_number(n)?,
            Some(other) => return Err(format!("cannot add to `{key}`: it holds {other}")),
        };
        let sum = base.checked_add(parse_number(&delta)?).ok_or("decimal overflow")?;
        if sum.is_zero() {
            object.remove(&key);
        } else {
            let number = serde_json::from_str(&sum.normalize().to_string()).map_err(|e| e.to_string())?;
            object.insert(key, J::Number(number));
        }
    }
    Ok(Value::Json(J::Object(object).to_string()))
}

fn parse_number(number: &serde_json::Number) -> Result<Decimal, String> {
    let text = number.to_string();
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| format!("{text} does not fit a decimal"))
}
