//! Running a component over sample events without touching any storage: the admin API's
//! `POST /admin/dry-run` and the offline `projector check` command share this.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Value as Json};

use crate::changeset::Changeset;
use crate::contract::{Event, Header};
use crate::runtime::{Plugin, StateOverlay};

/// One sample event, in the `samples.jsonl` shape: `{"key", "headers", "value"}`, optionally
/// with `partition` and `offset`.
#[derive(Debug, Deserialize)]
pub struct SampleEvent {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    headers: HashMap<String, String>,
    value: Json,
    #[serde(default)]
    partition: i32,
    offset: Option<i64>,
}

/// Parses `samples.jsonl` text: one sample event per non-blank line.
pub fn parse_jsonl(text: &str) -> anyhow::Result<Vec<SampleEvent>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|e| anyhow::anyhow!("line {}: not a sample event: {e}", index + 1))
        })
        .collect()
}

/// The records the samples stand for, on `topic`; a sample without an offset gets its index.
pub fn events(topic: &str, samples: Vec<SampleEvent>) -> Vec<Event> {
    samples
        .into_iter()
        .enumerate()
        .map(|(index, sample)| Event {
            topic: topic.to_owned(),
            partition: sample.partition,
            offset: sample.offset.unwrap_or(index as i64),
            key: sample.key.map(String::into_bytes),
            value: Some(sample.value.to_string().into_bytes()),
            headers: sample
                .headers
                .into_iter()
                .map(|(key, value)| Header { key, value: Some(value.into_bytes()) })
                .collect(),
            timestamp_ms: None,
        })
        .collect()
}

/// What a dry run found: per event its operations or error, checked against the declaration.
pub struct Outcome {
    /// `{"projection": {...}, "results": [{"at", "operations"?, "error"?}]}`.
    pub report: Json,
    /// How many events have an error (the plugin's, or operations the declaration refuses).
    pub errors: usize,
}

/// Runs `plugin` over `events` with empty state that is discarded afterwards. Blocks (call it
/// off the async runtime). Fails only when the call itself fails (trap, deadline, memory).
pub fn run(plugin: &Plugin, events: &[Event]) -> anyhow::Result<Outcome> {
    let state = StateOverlay::new(HashMap::new(), Box::new(|_| Ok(None)));
    let (results, _) = plugin.handle(events, state)?;
    let spec = plugin.spec();
    let mut changes = Changeset::new(spec);
    let mut errors = 0;
    let answers: Vec<Json> = events
        .iter()
        .zip(results)
        .map(|(event, result)| {
            let at = json!({"partition": event.partition, "offset": event.offset});
            let answer = match result {
                Err(message) => json!({"at": at, "error": message}),
                Ok(operations) => match changes.apply(spec, &operations) {
                    Ok(()) => json!({"at": at, "operations": operations}),
                    Err(message) => {
                        json!({"at": at, "operations": operations, "error": format!("invalid operations: {message}")})
                    }
                },
            };
            errors += usize::from(answer.get("error").is_some());
            answer
        })
        .collect();
    let report = json!({
        "projection": {"name": spec.name(), "version": spec.version(), "spec": spec.raw()},
        "results": answers,
    });
    Ok(Outcome { report, errors })
}
