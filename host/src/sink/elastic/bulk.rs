//! `_bulk` requests from a batch's changes, and what the engine answered per item.
//!
//! Invariant: one action per document and batch (so a retried item is the whole of that
//! document's change), sent in the order of the changeset (collections, then keys).

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use serde_json::{json, Map, Value as Json};

use super::index;
use crate::changeset::{Amount, Cell, Changeset, FieldChange, KeyPart, Step};
use crate::config::ElasticsearchConfig;
use crate::contract::{Collection, Computed, Sink as SinkKind};
use crate::sink::postgres::encode::{date_text, key_json, timestamp_text};
use crate::spec::Spec;

/// Longest document id Elasticsearch takes, in bytes.
const MAX_ID_BYTES: usize = 512;

/// One document's action: its id and its two NDJSON lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// The document id.
    pub id: String,
    /// The action and source lines, each ending in a newline.
    pub lines: String,
}

/// The actions of the search-engine collections' rows of `changes`; `Err` names the value the
/// engine cannot take. `redriven` are the events applied again from the dead letters.
pub fn actions(
    config: &ElasticsearchConfig,
    schema: &str,
    spec: &Spec,
    changes: &Changeset,
    redriven: &HashSet<(i32, i64)>,
) -> Result<Vec<Action>, String> {
    let mut actions = Vec::new();
    let script = index::script_id();
    for ((collection, info), rows) in spec.collections().zip(changes.tables()) {
        if collection.sink != SinkKind::Elasticsearch || rows.is_empty() {
            continue;
        }
        let target = index::name(config, &collection.name, schema);
        let ratios = ratios(collection);
        for (key, row) in rows {
            let id = document_id(key).map_err(|m| format!("collection `{}`: {m}", collection.name))?;
            let key_fields: Map<String, Json> = info
                .primary_key
                .iter()
                .zip(key)
                .map(|(&p, part)| (collection.fields[p].name.clone(), key_json(part)))
                .collect();
            let steps = row
                .steps
                .iter()
                .map(|step| step_json(collection, step, redriven))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|m| format!("collection `{}`, document `{id}`: {m}", collection.name))?;
            let action = json!({"update": {"_index": target, "_id": id, "retry_on_conflict": 5}});
            let source = json!({
                "script": {"id": script, "params": {"steps": steps, "key": key_fields, "ratios": ratios}},
                "scripted_upsert": true,
                "upsert": {},
            });
            actions.push(Action { id, lines: format!("{action}\n{source}\n") });
        }
    }
    Ok(actions)
}

/// Cuts `actions` into requests of at most `max_actions` actions and `max_bytes` bytes (an
/// action larger than that goes alone).
pub fn requests(actions: &[Action], max_actions: usize, max_bytes: usize) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (at, action) in actions.iter().enumerate() {
        let full = at - start == max_actions || (at > start && bytes + action.lines.len() > max_bytes);
        if full {
            ranges.push(start..at);
            (start, bytes) = (at, 0);
        }
        bytes += action.lines.len();
    }
    if start < actions.len() {
        ranges.push(start..actions.len());
    }
    ranges
}

/// The NDJSON body of `actions`.
pub fn body(actions: &[&Action]) -> Vec<u8> {
    let mut body = Vec::with_capacity(actions.iter().map(|a| a.lines.len()).sum());
    for action in actions {
        body.extend_from_slice(action.lines.as_bytes());
    }
    body
}

/// What a `_bulk` answer says of each item, by position in the request.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// Items to send again (429, 5xx), with the reason.
    pub retry: Vec<(usize, String)>,
    /// Items refused for what they are, with the reason.
    pub refused: Vec<(usize, String)>,
}

/// Reads a `_bulk` answer of `sent` items.
pub fn outcome(answer: &Json, sent: usize) -> Result<Outcome, String> {
    let items = answer["items"].as_array().ok_or("no `items`")?;
    if items.len() != sent {
        return Err(format!("{} items answered for {sent} sent", items.len()));
    }
    let mut outcome = Outcome::default();
    if answer["errors"] == false {
        return Ok(outcome);
    }
    for (at, item) in items.iter().enumerate() {
        let result = item.as_object().and_then(|o| o.values().next()).ok_or("an item without a result")?;
        let status = result["status"].as_u64().unwrap_or(0);
        if (200..300).contains(&status) {
            continue;
        }
        let why = reason(&result["error"]).unwrap_or_else(|| format!("status {status}"));
        if status == 429 || status >= 500 {
            outcome.retry.push((at, why));
        } else {
            outcome.refused.push((at, why));
        }
    }
    Ok(outcome)
}

/// `type: reason`, with the innermost cause's reason (a script's own message is there).
pub fn reason(error: &Json) -> Option<String> {
    let kind = error["type"].as_str()?;
    let mut text = format!("{kind}: {}", error["reason"].as_str().unwrap_or(""));
    let mut cause = &error["caused_by"];
    let mut innermost = None;
    while cause.is_object() {
        innermost = cause["reason"].as_str();
        cause = &cause["caused_by"];
    }
    if let Some(inner) = innermost {
        text.push_str(&format!(" ({inner})"));
    }
    Some(text)
}

/// The document id of a key: a single part as its text, several as a JSON array.
pub fn document_id(key: &[KeyPart]) -> Result<String, String> {
    let id = match key {
        [KeyPart::Text(text)] => text.clone(),
        [KeyPart::Int(i)] => i.to_string(),
        [KeyPart::Bool(b)] => b.to_string(),
        [KeyPart::Date(d)] => date_text(*d),
        [KeyPart::Timestamp(t)] => timestamp_text(*t),
        parts => Json::Array(parts.iter().map(key_json).collect()).to_string(),
    };
    if id.len() > MAX_ID_BYTES {
        return Err(format!(
            "the key is {} bytes as a document id; the search engine takes at most {MAX_ID_BYTES}",
            id.len()
        ));
    }
    Ok(id)
}

fn ratios(collection: &Collection) -> Vec<Json> {
    collection
        .fields
        .iter()
        .filter_map(|field| {
            let Computed::Ratio(r) = field.computed.as_ref()?;
            Some(json!([field.name, r.numerator, r.denominator, r.scale]))
        })
        .collect()
}

fn step_json(collection: &Collection, step: &Step, redriven: &HashSet<(i32, i64)>) -> Result<Json, String> {
    let mut set = Map::new();
    let mut add = Vec::new();
    for (&position, change) in &step.write {
        let name = &collection.fields[position].name;
        match change {
            FieldChange::Set(cell) => {
                set.insert(name.clone(), value(cell).map_err(|m| format!("field `{name}`: {m}"))?);
            }
            FieldChange::Add(amount) => add.push(amount_json(name, amount)?),
        }
    }
    Ok(json!({
        "p": step.partition,
        "o": step.offset,
        "r": redriven.contains(&(step.partition, step.offset)),
        "d": step.delete_first,
        "s": set,
        "a": add,
    }))
}

fn amount_json(name: &str, amount: &Amount) -> Result<Json, String> {
    Ok(match amount {
        Amount::Int(i) => json!([name, "i", i]),
        Amount::Float(f) => json!([name, "f", finite(*f).map_err(|m| format!("increment of `{name}`: {m}"))?]),
        Amount::Decimal(d) => json!([name, "d", d.to_string()]),
        Amount::Counts(counts) => {
            let counts: BTreeMap<&String, String> = counts.iter().map(|(k, v)| (k, v.to_string())).collect();
            json!([name, "c", counts])
        }
    })
}

/// The document form of a checked value.
fn value(cell: &Cell) -> Result<Json, String> {
    Ok(match cell {
        Cell::Null => Json::Null,
        Cell::Bool(b) => Json::Bool(*b),
        Cell::Int(i) => Json::from(*i),
        Cell::Float(f) => finite(*f)?,
        Cell::Decimal(d) => Json::String(d.to_string()),
        Cell::Text(s) => Json::String(s.clone()),
        Cell::Timestamp(t) => Json::String(timestamp_text(*t)),
        Cell::Date(d) => Json::String(date_text(*d)),
        Cell::Json(document) => document.clone(),
        Cell::List(items) => Json::Array(items.iter().map(value).collect::<Result<_, _>>()?),
    })
}

fn finite(f: f64) -> Result<Json, String> {
    serde_json::Number::from_f64(f)
        .map(Json::Number)
        .ok_or_else(|| format!("{f} cannot be stored in the search engine (JSON has no NaN or infinity)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changeset::At;
    use crate::contract::{Delete, FieldValue, Increment, Operation, Upsert, Value};
    use crate::spec::tests::stats_spec;

    fn spec() -> Spec {
        let mut raw = stats_spec();
        raw.collections[0].sink = SinkKind::Elasticsearch;
        Spec::new(raw).unwrap()
    }

    fn fv(name: &str, value: Value) -> FieldValue {
        FieldValue { name: name.into(), value }
    }

    fn key(day: i32) -> Vec<Value> {
        vec![Value::Date(day)]
    }

    #[test]
    fn each_event_is_a_step_with_its_partition_and_offset() {
        let spec = spec();
        let mut changes = Changeset::new(&spec);
        let inc = |n: i64, revenue: &str| {
            Operation::Increment(Increment {
                collection: "daily".into(),
                key: key(1),
                fields: vec![fv("count", Value::Integer(n)), fv("revenue", Value::Decimal(revenue.into()))],
            })
        };
        changes.apply_at(&spec, Some(At { partition: 2, offset: 10 }), &[inc(1, "10.10")]).unwrap();
        changes
            .apply_at(
                &spec,
                Some(At { partition: 0, offset: 4 }),
                &[
                    Operation::Delete(Delete { collection: "daily".into(), key: key(1) }),
                    Operation::Upsert(Upsert {
                        collection: "daily".into(),
                        key: key(1),
                        fields: vec![fv("by_status", Value::Json(r#"{"PAID":1}"#.into()))],
                    }),
                    inc(2, "0.905"),
                ],
            )
            .unwrap();
        let redriven = HashSet::from([(0, 4)]);
        let actions =
            actions(&ElasticsearchConfig::default(), "proj_daily_stats_v3", &spec, &changes, &redriven).unwrap();
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0].id, "1970-01-02");
        let lines: Vec<Json> = actions[0].lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(
            lines[0],
            json!({"update": {"_index": "projector-daily-proj-daily-stats-v3", "_id": "1970-01-02", "retry_on_conflict": 5}})
        );
        assert_eq!(
            lines[1],
            json!({
                "script": {"id": index::script_id(), "params": {
                    "steps": [
                        {"p": 2, "o": 10, "r": false, "d": false, "s": {}, "a": [["count", "i", 1], ["revenue", "d", "10.10"]]},
                        {"p": 0, "o": 4, "r": true, "d": true, "s": {"by_status": {"PAID": 1}}, "a": [["count", "i", 2], ["revenue", "d", "0.905"]]},
                    ],
                    "key": {"day": "1970-01-02"},
                    "ratios": [["average", "revenue", "count", 2]],
                }},
                "scripted_upsert": true,
                "upsert": {},
            })
        );
    }

    #[test]
    fn requests_are_bounded_by_count_and_bytes() {
        let action = |n: usize| Action { id: n.to_string(), lines: "x".repeat(n) };
        let actions: Vec<Action> = [10, 10, 10, 50, 10, 10].into_iter().map(action).collect();
        assert_eq!(requests(&actions, 2, 1_000), vec![0..2, 2..4, 4..6]);
        assert_eq!(requests(&actions, 100, 30), vec![0..3, 3..4, 4..6]);
        assert_eq!(requests(&actions[..0], 2, 30), Vec::<Range<usize>>::new());
    }

    #[test]
    fn answers_split_into_retries_and_refusals() {
        let answer = json!({"errors": true, "items": [
            {"update": {"status": 200, "result": "updated"}},
            {"update": {"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "rejected execution"}}},
            {"update": {"status": 400, "error": {"type": "illegal_argument_exception", "reason": "failed to execute script",
                "caused_by": {"type": "script_exception", "reason": "runtime error",
                    "caused_by": {"type": "illegal_argument_exception", "reason": "projector: integer increment of count overflows 64 bits at 0:7"}}}}},
            {"update": {"status": 503, "error": {"type": "unavailable_shards_exception", "reason": "primary shard is not active"}}},
        ]});
        let read = outcome(&answer, 4).unwrap();
        assert_eq!(read.retry.iter().map(|(at, _)| *at).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(
            read.refused,
            vec![(2, "illegal_argument_exception: failed to execute script (projector: integer increment of count overflows 64 bits at 0:7)".to_string())]
        );
        assert!(outcome(&json!({"errors": false, "items": [{}]}), 2).is_err());
    }

    #[test]
    fn values_json_cannot_hold_are_refused() {
        assert!(value(&Cell::Float(f64::NAN)).unwrap_err().contains("NaN"));
        let long = vec![KeyPart::Text("k".repeat(513))];
        assert!(document_id(&long).unwrap_err().contains("at most 512"));
        let pair = vec![KeyPart::Text("a".into()), KeyPart::Int(7)];
        assert_eq!(document_id(&pair).unwrap(), r#"["a",7]"#);
    }
}
