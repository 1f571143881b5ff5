//! Rows as the harness keeps them, and their JSON rendering for assertions.

use crate::{Date, Scalar, Timestamp, Value};

/// One row of a collection: every declared field, in column order (unwritten fields are null).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub(super) columns: Vec<(String, Value)>,
}

impl Row {
    /// The value of `field`, `None` when the collection has no such field.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.columns.iter().find(|(name, _)| name == field).map(|(_, value)| value)
    }

    /// The row as a JSON object, for whole-row assertions: decimals as strings with their exact
    /// scale (`"116.80"`), timestamps as RFC 3339 strings (`"2026-11-20T09:00:00Z"`), dates as
    /// `"YYYY-MM-DD"`, JSON fields as the documents themselves.
    pub fn to_json(&self) -> serde_json::Value {
        let object = self.columns.iter().map(|(name, value)| (name.clone(), render(value))).collect();
        serde_json::Value::Object(object)
    }

    pub(super) fn get_mut(&mut self, field: &str) -> &mut Value {
        let column = self.columns.iter_mut().find(|(name, _)| name == field);
        &mut column.expect("fields are checked against the spec").1
    }
}

impl std::ops::Index<&str> for Row {
    type Output = Value;

    /// The value of `field`.
    ///
    /// # Panics
    /// When the collection has no such field.
    fn index(&self, field: &str) -> &Value {
        self.get(field).unwrap_or_else(|| panic!("no field `{field}` in this row"))
    }
}

fn render(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::Null => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => J::from(*i),
        Value::Float(f) => J::from(*f),
        Value::Decimal(d) | Value::Text(d) => J::String(d.clone()),
        Value::Timestamp(t) => J::String(Timestamp::from_micros(*t).to_string()),
        Value::Date(d) => J::String(Date::from_days(*d).to_string()),
        Value::Json(text) => serde_json::from_str(text).expect("JSON values are checked"),
        Value::List(items) => J::Array(items.iter().map(|s| render(&scalar_value(s))).collect()),
    }
}

pub(super) fn scalar_value(scalar: &Scalar) -> Value {
    match scalar.clone() {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Boolean(b),
        Scalar::Integer(i) => Value::Integer(i),
        Scalar::Float(f) => Value::Float(f),
        Scalar::Decimal(d) => Value::Decimal(d),
        Scalar::Text(t) => Value::Text(t),
        Scalar::Timestamp(t) => Value::Timestamp(t),
        Scalar::Date(d) => Value::Date(d),
    }
}
