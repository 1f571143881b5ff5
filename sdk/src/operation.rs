//! Operations: the changes to a read model that one event implies.
//!
//! Invariants: an operation names a declared collection, the full primary key in declared key
//! order, and declared, non-computed fields. The host applies the operations of a batch in the
//! order returned, in the same transaction as the per-key state and the offsets. Upserts merge
//! (unnamed fields are left as they are); increments are commutative, so two partitions may add
//! to the same row.

use crate::Value;

/// One change to a read model; build it with [`Operation::upsert`], [`Operation::increment`]
/// or [`Operation::delete`].
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// Merge fields into a row, creating it when absent.
    Upsert(Upsert),
    /// Add to numeric (or JSON-object) fields of a row, creating it when absent.
    Increment(Increment),
    /// Delete a row, if any.
    Delete(Delete),
}

/// The primary-key values of a row, in the declared key order.
///
/// Built from one value (`"ord-1001"`, `date`) or a `Vec<Value>` for a composite key.
#[derive(Debug, Clone, PartialEq)]
pub struct Key(pub(crate) Vec<Value>);

impl Key {
    /// The key's values, in declared key order.
    pub fn values(&self) -> &[Value] {
        &self.0
    }
}

impl<T: Into<Value>> From<T> for Key {
    fn from(value: T) -> Self {
        Key(vec![value.into()])
    }
}

impl From<Vec<Value>> for Key {
    fn from(values: Vec<Value>) -> Self {
        Key(values)
    }
}

/// Merge the named fields into the row with this key; see [`Operation::upsert`].
#[derive(Debug, Clone, PartialEq)]
pub struct Upsert {
    pub(crate) collection: String,
    pub(crate) key: Key,
    pub(crate) fields: Vec<(String, Value)>,
}

/// Add amounts to fields of the row with this key; see [`Operation::increment`].
#[derive(Debug, Clone, PartialEq)]
pub struct Increment {
    pub(crate) collection: String,
    pub(crate) key: Key,
    pub(crate) fields: Vec<(String, Value)>,
}

/// Delete the row with this key; see [`Operation::delete`].
#[derive(Debug, Clone, PartialEq)]
pub struct Delete {
    pub(crate) collection: String,
    pub(crate) key: Key,
}

impl Operation {
    /// Merge fields into the row of `collection` with primary key `key`, creating the row when
    /// absent (its unnamed fields then start null). Add fields with [`Upsert::set`].
    pub fn upsert(collection: impl Into<String>, key: impl Into<Key>) -> Upsert {
        Upsert { collection: collection.into(), key: key.into(), fields: Vec::new() }
    }

    /// Add to fields of the row of `collection` with primary key `key`, creating the row when
    /// absent (absent or null fields count as zero). Add amounts with [`Increment::add`].
    pub fn increment(collection: impl Into<String>, key: impl Into<Key>) -> Increment {
        Increment { collection: collection.into(), key: key.into(), fields: Vec::new() }
    }

    /// Delete the row of `collection` with primary key `key`, if any.
    pub fn delete(collection: impl Into<String>, key: impl Into<Key>) -> Operation {
        Operation::Delete(Delete { collection: collection.into(), key: key.into() })
    }

    /// The collection the operation writes.
    pub fn collection(&self) -> &str {
        match self {
            Operation::Upsert(op) => &op.collection,
            Operation::Increment(op) => &op.collection,
            Operation::Delete(op) => &op.collection,
        }
    }

    /// The primary key of the row the operation writes.
    pub fn key(&self) -> &Key {
        match self {
            Operation::Upsert(op) => &op.key,
            Operation::Increment(op) => &op.key,
            Operation::Delete(op) => &op.key,
        }
    }

    /// The fields set (upsert) or the amounts added (increment); empty for a delete.
    pub fn fields(&self) -> &[(String, Value)] {
        match self {
            Operation::Upsert(op) => &op.fields,
            Operation::Increment(op) => &op.fields,
            Operation::Delete(_) => &[],
        }
    }
}

impl Upsert {
    /// Sets `field` to `value` (`Value::Null` or `None` clears it).
    #[must_use]
    pub fn set(mut self, field: impl Into<String>, value: impl Into<Value>) -> Self {
        self.fields.push((field.into(), value.into()));
        self
    }
}

impl Increment {
    /// Adds `amount` to `field`: an integer, float or decimal of the field's type, or for a
    /// `json` field a JSON object of numbers added key by key (e.g. `{"SUBMITTED": -1,
    /// "SHIPPED": 1}`; a key reaching zero is removed).
    #[must_use]
    pub fn add(mut self, field: impl Into<String>, amount: impl Into<Value>) -> Self {
        self.fields.push((field.into(), amount.into()));
        self
    }
}

impl From<Upsert> for Operation {
    fn from(op: Upsert) -> Self {
        Operation::Upsert(op)
    }
}

impl From<Increment> for Operation {
    fn from(op: Increment) -> Self {
        Operation::Increment(op)
    }
}

impl From<Delete> for Operation {
    fn from(op: Delete) -> Self {
        Operation::Delete(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Date, Decimal};

    #[test]
    fn upsert_builder() {
        let op: Operation = Operation::upsert("order_summaries", "ord-1")
            .set("status", "SHIPPED")
            .set("total", Decimal::new(11680, 2))
            .set("customer_name", None::<String>)
            .into();
        assert_eq!(op.collection(), "order_summaries");
        assert_eq!(op.key().values(), &[Value::Text("ord-1".into())]);
        assert_eq!(
            op.fields(),
            &[
                ("status".to_string(), Value::Text("SHIPPED".into())),
                ("total".to_string(), Value::Decimal("116.80".into())),
                ("customer_name".to_string(), Value::Null),
            ]
        );
    }

    #[test]
    fn increment_and_delete_builders() {
        let day = Date::from_ymd(2026, 11, 20).unwrap();
        let op: Operation = Operation::increment("daily_order_stats", day)
            .add("order_count", 1_i64)
            .add("orders_by_status", serde_json::json!({"SHIPPED": 1}))
            .into();
        assert!(matches!(op, Operation::Increment(_)));
        assert_eq!(op.key().values(), &[Value::Date(20_777)]);
        assert_eq!(op.fields()[1].1, Value::Json(r#"{"SHIPPED":1}"#.into()));

        let composite = Operation::delete("t", vec![Value::from("a"), Value::from(2_i64)]);
        assert_eq!(composite.key().values().len(), 2);
        assert!(composite.fields().is_empty());
    }
}
