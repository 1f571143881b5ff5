//! An in-memory read model applying operations with the host's semantics.

use std::cmp::Ordering;

use rust_decimal::RoundingStrategy;

use super::row::Row;
use super::spec_check::validate;
use super::values::{add, as_decimal, check_value, stored};
use crate::spec::{Collection, Field, FieldType, ProjectionSpec};
use crate::{Decimal, Operation, Value};

/// Every collection of a projection, with its rows.
#[derive(Debug)]
pub(crate) struct ReadModel {
    tables: Vec<Table>,
}

#[derive(Debug)]
struct Table {
    spec: Collection,
    rows: Vec<(Vec<Value>, Row)>,
}

impl ReadModel {
    /// An empty read model for `spec`, or why the host would refuse the spec.
    pub(crate) fn new(spec: &ProjectionSpec) -> Result<Self, String> {
        validate(spec)?;
        let tables = spec.collections.iter().map(|c| Table { spec: c.clone(), rows: Vec::new() }).collect();
        Ok(Self { tables })
    }

    /// The rows of `collection` in primary-key order, `None` for an undeclared collection.
    pub(crate) fn rows(&self, collection: &str) -> Option<Vec<&Row>> {
        let table = self.tables.iter().find(|t| t.spec.name == collection)?;
        let mut rows: Vec<_> = table.rows.iter().collect();
        rows.sort_by(|(a, _), (b, _)| compare_keys(a, b));
        Some(rows.into_iter().map(|(_, row)| row).collect())
    }

    /// The row of `collection` with primary key `key`.
    pub(crate) fn row(&self, collection: &str, key: &[Value]) -> Option<&Row> {
        let table = self.tables.iter().find(|t| t.spec.name == collection)?;
        table.rows.iter().find(|(k, _)| k == key).map(|(_, row)| row)
    }

    /// Applies one operation, or says why the host would reject it.
    pub(crate) fn apply(&mut self, op: &Operation) -> Result<(), String> {
        let table = self
            .tables
            .iter_mut()
            .find(|t| t.spec.name == op.collection())
            .ok_or_else(|| format!("unknown collection `{}`", op.collection()))?;
        let key = op.key().values();
        table.check_key(key)?;
        let position = table.rows.iter().position(|(k, _)| k == key);
        if let Operation::Delete(_) = op {
            if let Some(index) = position {
                table.rows.remove(index);
            }
            return Ok(());
        }
        let mut row = match position {
            Some(index) => table.rows[index].1.clone(),
            None => table.new_row(key),
        };
        let mut seen = Vec::new();
        for (name, value) in op.fields() {
            let field = table.writable_field(name)?;
            if seen.contains(&name) {
                return Err(format!("field `{name}` written twice in one operation"));
            }
            seen.push(name);
            let slot = row.get_mut(name);
            match op {
                Operation::Upsert(_) => {
                    check_value(field.field_type, value).map_err(|e| format!("field `{name}`: {e}"))?;
                    *slot = stored(field.field_type, value);
                }
                _ => *slot = add(field.field_type, slot, value).map_err(|e| format!("field `{name}`: {e}"))?,
            }
        }
        table.compute(&mut row);
        for field in &table.spec.fields {
            if !table.spec.is_nullable(field) && row[field.name.as_str()] == Value::Null {
                return Err(format!("field `{}` is not nullable but would be null", field.name));
            }
        }
        match position {
            Some(index) => table.rows[index].1 = row,
            None => table.rows.push((key.to_vec(), row)),
        }
        Ok(())
    }
}

impl Table {
    fn check_key(&self, key: &[Value]) -> Result<(), String> {
        let names = &self.spec.primary_key;
        if key.len() != names.len() {
            return Err(format!("key has {} values, `{}` has {} key fields", key.len(), self.spec.name, names.len()));
        }
        for (name, value) in names.iter().zip(key) {
            let field = self.field(name).expect("validated spec");
            if *value == Value::Null {
                return Err(format!("key field `{name}` is null"));
            }
            check_value(field.field_type, value).map_err(|e| format!("key field `{name}`: {e}"))?;
        }
        Ok(())
    }

    fn new_row(&self, key: &[Value]) -> Row {
        let columns = self
            .spec
            .fields
            .iter()
            .map(|f| {
                let key_index = self.spec.primary_key.iter().position(|k| *k == f.name);
                (f.name.clone(), key_index.map_or(Value::Null, |i| key[i].clone()))
            })
            .collect();
        Row { columns }
    }

    fn field(&self, name: &str) -> Option<&Field> {
        self.spec.fields.iter().find(|f| f.name == name)
    }

    fn writable_field(&self, name: &str) -> Result<&Field, String> {
        let field = self.field(name).ok_or_else(|| format!("unknown field `{name}` in `{}`", self.spec.name))?;
        if field.computed.is_some() {
            return Err(format!("field `{name}` is computed by the host and must not be written"));
        }
        if self.spec.primary_key.contains(&field.name) {
            return Err(format!("key field `{name}` is set through the operation's key"));
        }
        Ok(field)
    }

    /// Recomputes ratio fields: `round(numerator / denominator, scale)`, null on a zero or null
    /// denominator.
    fn compute(&self, row: &mut Row) {
        for field in &self.spec.fields {
            let Some(ratio) = &field.computed else {
                continue;
            };
            let numerator = as_decimal(&row[ratio.numerator.as_str()]);
            let denominator = as_decimal(&row[ratio.denominator.as_str()]);
            let value = match (numerator, denominator) {
                (Some(n), Some(d)) if !d.is_zero() => n.checked_div(d).map(|q| {
                    let mut q =
                        q.round_dp_with_strategy(u32::from(ratio.scale), RoundingStrategy::MidpointAwayFromZero);
                    q.rescale(u32::from(ratio.scale));
                    match field.field_type {
                        FieldType::Integer => Value::Integer(i64::try_from(q.trunc().mantissa()).unwrap_or(i64::MAX)),
                        FieldType::Float => Value::Float(q.to_string().parse().unwrap_or(f64::NAN)),
                        _ => Value::Decimal(q.to_string()),
                    }
                }),
                _ => None,
            };
            *row.get_mut(&field.name) = value.unwrap_or(Value::Null);
        }
    }
}

fn compare_keys(a: &[Value], b: &[Value]) -> Ordering {
    fn rank(v: &Value) -> (u8, Option<Decimal>, String) {
        match v {
            Value::Integer(_) | Value::Decimal(_) | Value::Float(_) => (1, as_decimal(v), String::new()),
            Value::Timestamp(t) => (2, Some(Decimal::from(*t)), String::new()),
            Value::Date(d) => (3, Some(Decimal::from(*d)), String::new()),
            Value::Text(t) => (4, None, t.clone()),
            other => (5, None, format!("{other:?}")),
        }
    }
    a.iter().map(rank).cmp(b.iter().map(rank))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{Collection, Date, Field};

    fn model() -> ReadModel {
        let spec = ProjectionSpec::new("stats", 1, "Stats.").collection(
            Collection::postgres("days", "One row per day.")
                .field(Field::date("day"))
                .field(Field::integer("n"))
                .field(Field::decimal("revenue"))
                .field(Field::decimal("average").computed_ratio("revenue", "n", 2))
                .field(Field::json("by_status"))
                .field(Field::text("note"))
                .primary_key(["day"]),
        );
        ReadModel::new(&spec).unwrap()
    }

    fn day(d: i32) -> Date {
        Date::from_days(d)
    }

    #[test]
    fn upsert_merges_and_delete_removes() {
        let mut m = model();
        m.apply(&Operation::upsert("days", day(1)).set("note", "a").set("n", 2_i64).into()).unwrap();
        m.apply(&Operation::upsert("days", day(1)).set("note", "b").into()).unwrap();
        let row = m.row("days", &[Value::Date(1)]).unwrap();
        assert_eq!((&row["note"], &row["n"]), (&Value::from("b"), &Value::Integer(2)));
        assert_eq!(row["revenue"], Value::Null);
        m.apply(&Operation::delete("days", day(1))).unwrap();
        assert!(m.rows("days").unwrap().is_empty());
        m.apply(&Operation::delete("days", day(1))).unwrap();
    }

    #[test]
    fn increments_add_with_null_as_zero_and_compute_ratios() {
        let mut m = model();
        let inc = |n: i64, revenue: &str, status: serde_json::Value| -> Operation {
            Operation::increment("days", day(7))
                .add("n", n)
                .add("revenue", Value::Decimal(revenue.into()))
                .add("by_status", status)
                .into()
        };
        m.apply(&inc(1, "116.80", json!({"SUBMITTED": 1}))).unwrap();
        m.apply(&inc(1, "79.47", json!({"PLACED": 1}))).unwrap();
        m.apply(&inc(0, "0.00", json!({"SUBMITTED": -1, "SHIPPED": 1}))).unwrap();
        let row = m.row("days", &[Value::Date(7)]).unwrap();
        assert_eq!(
            row.to_json(),
            json!({"day": "1970-01-08", "n": 2, "revenue": "196.27", "average": "98.14",
                   "by_status": {"PLACED": 1, "SHIPPED": 1}, "note": null})
        );
    }

    #[test]
    fn json_counters_are_stored_without_trailing_zeros_as_the_host_stores_them() {
        let mut m = model();
        m.apply(
            &Operation::increment("days", day(3))
                .add("by_status", Value::Json(r#"{"A": 0.50, "B": 99}"#.into()))
                .into(),
        )
        .unwrap();
        m.apply(
            &Operation::increment("days", day(3)).add("by_status", Value::Json(r#"{"A": 1, "B": 1.0}"#.into())).into(),
        )
        .unwrap();
        assert_eq!(m.row("days", &[Value::Date(3)]).unwrap()["by_status"], Value::Json(r#"{"A":1.5,"B":100}"#.into()));
    }

    #[test]
    fn ratio_is_null_on_zero_denominator() {
        let mut m = model();
        m.apply(&Operation::increment("days", day(2)).add("revenue", Value::Decimal("5".into())).into()).unwrap();
        assert_eq!(m.row("days", &[Value::Date(2)]).unwrap()["average"], Value::Null);
        m.apply(&Operation::increment("days", day(2)).add("n", 3_i64).into()).unwrap();
        assert_eq!(m.row("days", &[Value::Date(2)]).unwrap()["average"], Value::Decimal("1.67".into()));
    }

    #[test]
    fn rejects_what_the_host_would() {
        let mut m = model();
        let cases: Vec<(Operation, &str)> = vec![
            (Operation::upsert("nope", day(1)).into(), "unknown collection"),
            (Operation::upsert("days", "x").into(), "key field `day`"),
            (Operation::upsert("days", day(1)).set("zzz", 1_i64).into(), "unknown field"),
            (Operation::upsert("days", day(1)).set("average", Value::Decimal("1".into())).into(), "computed"),
            (Operation::upsert("days", day(1)).set("day", day(2)).into(), "key field `day` is set"),
            (Operation::upsert("days", day(1)).set("n", "1").into(), "does not fit"),
            (Operation::upsert("days", day(1)).set("revenue", Value::Decimal("1e3".into())).into(), "plain notation"),
            (Operation::increment("days", day(1)).add("note", "x").into(), "cannot add"),
            (Operation::increment("days", day(1)).add("by_status", json!([1])).into(), "object of numbers"),
            (Operation::upsert("days", day(1)).set("n", 1_i64).set("n", 2_i64).into(), "twice"),
        ];
        for (op, expected) in cases {
            match m.apply(&op) {
                Err(err) => assert!(err.contains(expected), "{op:?}: {err}"),
                Ok(()) => panic!("{op:?} was accepted"),
            }
        }
        assert!(m.rows("days").unwrap().is_empty(), "a rejected operation changes nothing");
    }
}
