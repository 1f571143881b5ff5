//! Events from the `samples.jsonl` format: one JSON object per line with `key`, `headers` and
//! `value`, e.g. `{"key": "ord-1", "headers": {"__TypeId__": "x.OrderCreated"}, "value": {...}}`.

use serde::Deserialize;

use crate::{Event, Header};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sample {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    headers: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    value: Option<serde_json::Value>,
}

/// The event one sample line describes, on topic `order-events`, partition 0, offset 0.
/// The value is re-serialized with its numbers' exact digits; a `null` header has no value.
///
/// # Panics
/// When the line is not a sample object or a header is neither a string nor null.
pub fn event_from_sample(line: &str) -> Event {
    let sample: Sample = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a sample line ({e}): {line}"));
    let headers = sample
        .headers
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                serde_json::Value::Null => None,
                serde_json::Value::String(text) => Some(text.into_bytes()),
                other => panic!("header `{key}` must be a string or null, not {other}"),
            };
            Header { key, value }
        })
        .collect();
    Event {
        topic: "order-events".to_owned(),
        partition: 0,
        offset: 0,
        key: sample.key.map(String::into_bytes),
        value: sample.value.map(|v| v.to_string().into_bytes()),
        headers,
        timestamp_ms: None,
    }
}

/// The events of a `samples.jsonl` text, skipping blank lines; offsets count from 0 in order.
///
/// # Panics
/// As [`event_from_sample`].
pub fn events_from_samples(jsonl: &str) -> Vec<Event> {
    jsonl
        .lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(offset, line)| Event { offset: offset as i64, ..event_from_sample(line) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_lines_become_events() {
        let jsonl = r#"
{"key": "ord-1", "headers": {"__TypeId__": "a.b.OrderCreated", "trace": null}, "value": {"unitPrice": 8.90}}

{"key": null, "headers": {}, "value": {"type": "OrderShipped"}}
"#;
        let events = events_from_samples(jsonl);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].key_str(), Some("ord-1"));
        assert_eq!(events[0].event_type(), Some("OrderCreated"));
        assert_eq!(events[0].header("trace"), None);
        assert_eq!(events[0].value.as_deref(), Some(&br#"{"unitPrice":8.90}"#[..]));
        assert_eq!((events[1].offset, events[1].key.as_deref()), (1, None));
        assert_eq!(events[1].event_type(), Some("OrderShipped"));
    }
}
