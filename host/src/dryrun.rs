//! Running a component over sample events without touching any storage: the admin API's
//! `POST /admin/dry-run` and the offline `projector check` command share this.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use utoipa::ToSchema;

use crate::changeset::Changeset;
use crate::contract::{Event, Header, Operation, ProjectionSpec};
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
    /// The report the admin API and `projector check` show.
    pub report: Report,
    /// How many events have an error (the plugin's, or operations the declaration refuses).
    pub errors: usize,
}

/// A dry run's report (`POST /admin/dry-run`, `projector check`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Report {
    /// The projection the component declares.
    pub projection: Declared,
    /// One result per event, in order.
    pub results: Vec<EventResult>,
}

/// The declaration of the component run.
#[derive(Debug, Serialize, ToSchema)]
pub struct Declared {
    /// Projection name.
    pub name: String,
    /// Declared version.
    pub version: u32,
    /// The declaration, as the component returned it.
    #[schema(value_type = Object)]
    pub spec: ProjectionSpec,
}

/// What one event produced.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventResult {
    /// The event's coordinates.
    pub at: At,
    /// Its operations, when the plugin returned some (also when the declaration refuses them).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub operations: Option<Vec<Operation>>,
    /// The plugin's error, or `invalid operations: ...` when the declaration refuses them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An event's coordinates.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct At {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Runs `plugin` over `events` with empty state that is discarded afterwards. Blocks (call it
/// off the async runtime). Fails only when the call itself fails (trap, deadline, memory).
pub fn run(plugin: &Plugin, events: &[Event]) -> anyhow::Result<Outcome> {
    let state = StateOverlay::new(HashMap::new(), Box::new(|_| Ok(None)));
    let (results, _) = plugin.handle(events, state)?;
    let spec = plugin.spec();
    let mut changes = Changeset::new(spec);
    let results: Vec<EventResult> = events
        .iter()
        .zip(results)
        .map(|(event, result)| {
            let at = At { partition: event.partition, offset: event.offset };
            match result {
                Err(message) => EventResult { at, operations: None, error: Some(message) },
                Ok(operations) => {
                    let error = changes.apply(spec, &operations).err().map(|m| format!("invalid operations: {m}"));
                    EventResult { at, operations: Some(operations), error }
                }
            }
        })
        .collect();
    let errors = results.iter().filter(|r| r.error.is_some()).count();
    let projection = Declared { name: spec.name().to_owned(), version: spec.version(), spec: spec.raw().clone() };
    Ok(Outcome { report: Report { projection, results }, errors })
}
