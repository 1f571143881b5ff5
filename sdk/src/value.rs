//! Field values, mirroring the WIT `value` and `scalar` variants.
//!
//! Invariants: decimals travel as plain-notation strings (`"116.80"`), never as floats;
//! timestamps as microseconds since the epoch (UTC); dates as days since 1970-01-01; JSON
//! documents as their serialized text, numbers keeping their exact digits.

use serde::Serialize;

use crate::{Date, Decimal, Error, Timestamp};

/// A value written to a field: a new value for an upsert, an amount for an increment, or a
/// primary-key component.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL: clears the field on upsert.
    Null,
    /// A boolean.
    Boolean(bool),
    /// A 64-bit signed integer.
    Integer(i64),
    /// A 64-bit float. Not for money: use [`Value::Decimal`].
    Float(f64),
    /// An exact decimal in plain notation, e.g. `"116.80"`.
    Decimal(String),
    /// UTF-8 text.
    Text(String),
    /// An instant, in microseconds since the epoch.
    Timestamp(i64),
    /// A calendar date, in days since 1970-01-01.
    Date(i32),
    /// A JSON document, serialized.
    Json(String),
    /// A list of scalars of the field's element type.
    List(Vec<Scalar>),
}

/// An element of a [`Value::List`]: a [`Value`] that is neither JSON nor a list.
#[derive(Debug, Clone, PartialEq)]
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
    /// An instant, in microseconds since the epoch.
    Timestamp(i64),
    /// A calendar date, in days since 1970-01-01.
    Date(i32),
}

impl Value {
    /// `value` serialized as a JSON document, e.g. a list of line objects.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        Ok(Self::Json(serde_json::to_string(value)?))
    }
}

macro_rules! from_impls {
    ($target:ident: $($source:ty => |$v:ident| $body:expr;)*) => {$(
        impl From<$source> for $target {
            fn from($v: $source) -> Self {
                $body
            }
        }
    )*};
}

from_impls! { Value:
    bool => |v| Value::Boolean(v);
    i64 => |v| Value::Integer(v);
    i32 => |v| Value::Integer(v.into());
    u32 => |v| Value::Integer(v.into());
    f64 => |v| Value::Float(v);
    &str => |v| Value::Text(v.to_owned());
    String => |v| Value::Text(v);
    &String => |v| Value::Text(v.clone());
    Decimal => |v| Value::Decimal(v.to_string());
    Timestamp => |v| Value::Timestamp(v.as_micros());
    Date => |v| Value::Date(v.as_days());
    serde_json::Value => |v| Value::Json(v.to_string());
    Vec<Scalar> => |v| Value::List(v);
}

from_impls! { Scalar:
    bool => |v| Scalar::Boolean(v);
    i64 => |v| Scalar::Integer(v);
    i32 => |v| Scalar::Integer(v.into());
    u32 => |v| Scalar::Integer(v.into());
    f64 => |v| Scalar::Float(v);
    &str => |v| Scalar::Text(v.to_owned());
    String => |v| Scalar::Text(v);
    &String => |v| Scalar::Text(v.clone());
    Decimal => |v| Scalar::Decimal(v.to_string());
    Timestamp => |v| Scalar::Timestamp(v.as_micros());
    Date => |v| Scalar::Date(v.as_days());
}

impl<T: Into<Value>> From<Option<T>> for Value {
    /// `None` is [`Value::Null`].
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

impl<T: Into<Scalar>> From<Option<T>> for Scalar {
    /// `None` is [`Scalar::Null`].
    fn from(value: Option<T>) -> Self {
        value.map_or(Scalar::Null, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::money;

    #[test]
    fn conversions() {
        assert_eq!(Value::from("a"), Value::Text("a".into()));
        assert_eq!(Value::from(3_i32), Value::Integer(3));
        assert_eq!(Value::from(None::<i64>), Value::Null);
        assert_eq!(Value::from(Some(true)), Value::Boolean(true));
        let total = money(Decimal::from_str("116.8").unwrap());
        assert_eq!(Value::from(total), Value::Decimal("116.80".into()));
        let at = Timestamp::parse("1970-01-01T00:00:01Z").unwrap();
        assert_eq!(Value::from(at), Value::Timestamp(1_000_000));
        assert_eq!(Value::from(at.date()), Value::Date(0));
        let doc = serde_json::json!({"SHIPPED": 1});
        assert_eq!(Value::from(doc), Value::Json(r#"{"SHIPPED":1}"#.into()));
        assert_eq!(Value::from(vec![Scalar::from("x")]), Value::List(vec![Scalar::Text("x".into())]));
    }

    #[test]
    fn json_keeps_exact_digits() {
        let number: serde_json::Value = serde_json::from_str(r#"[8.9, 99.0, 0.10]"#).unwrap();
        assert_eq!(Value::json(&number).unwrap(), Value::Json("[8.9,99.0,0.10]".into()));
    }
}
