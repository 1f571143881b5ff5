//! Where read models are written: the sink-neutral face the pipeline sees ([`Sink`] and the
//! values it takes), and the PostgreSQL sink behind it.
//!
//! Invariants every sink keeps:
//! - A commit applies a batch's row changes, state writes, dead letters and next offsets
//!   together or not at all.
//! - A partition's stored offset only advances from the offset the batch started at; a stale
//!   owner's commit fails with [`SinkError::Fenced`] and changes nothing.

pub mod elastic;
pub mod postgres;

use std::collections::HashMap;

use crate::changeset::Changeset;
use crate::contract::Event;
use crate::spec::Spec;

/// Per-key state: key to value, `None` for a key without state (or removed).
pub type State = HashMap<String, Option<Vec<u8>>>;

/// Why a sink call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// Another consumer advanced this partition first; this batch is stale.
    #[error("partition {partition} was advanced by another consumer; the batch was discarded")]
    Fenced { partition: i32 },
    /// The store refused or could not be reached.
    #[error("database error: {message}")]
    Database {
        /// The store's own message.
        message: String,
        /// Retrying the same call later may succeed (connection loss, deadlock, overload).
        transient: bool,
        /// The store refused a value: something one event produced, not the store's state.
        by_data: bool,
    },
}

impl SinkError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::Database { transient: true, .. })
    }

    /// Whether the store refused a value one event produced (a data exception, a constraint, a
    /// value too large for an index), so the batch can be narrowed down to that event.
    pub fn caused_by_data(&self) -> bool {
        matches!(self, SinkError::Database { by_data: true, .. })
    }
}

/// How far one partition moves in a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionProgress {
    /// The partition.
    pub partition: i32,
    /// The stored next offset the batch started from; `None` when none was stored yet.
    pub expected: Option<i64>,
    /// The next offset after the batch.
    pub next: i64,
    /// Timestamp of the partition's last event in the batch, in milliseconds.
    pub last_event_ms: Option<i64>,
}

/// Why an event was moved past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The projection's poison policy is `dead-letter`.
    DeadLetter,
    /// An operator skipped it (the policy is `halt`).
    Skipped,
}

impl Reason {
    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::DeadLetter => "dead-letter",
            Reason::Skipped => "skipped",
        }
    }
}

/// The build a dead letter is recorded by.
#[derive(Debug, Clone)]
pub struct Build {
    /// Hex sha256 of the component.
    pub sha256: String,
    /// Declared version.
    pub version: u32,
    /// Build number of the version.
    pub build: u32,
}

/// A change to the dead letters, written with a batch.
#[derive(Debug)]
pub enum Letter<'a> {
    /// A poison event the batch moves past, with the error it caused.
    Record { event: &'a Event, error: &'a str, reason: Reason, build: &'a Build },
    /// A dead letter whose effects the batch applies (a re-drive), by `sha256`.
    Redriven { partition: i32, offset: i64, sha256: &'a str },
    /// A re-drive that failed again: the dead letter stays, with the new error.
    Refused { partition: i32, offset: i64, error: &'a str },
}

/// One deployment's store, as the pipeline uses it. Calls block the calling thread (each
/// deployment runs on a thread of its own).
pub trait Sink: Send + Sync {
    /// Creates the dead-letter storage of a deployment made before there was one.
    fn ensure_dead_letters(&self) -> Result<(), SinkError>;
    /// The stored next offset of every partition that has one.
    fn offsets(&self) -> Result<HashMap<i32, i64>, SinkError>;
    /// Moves a partition's stored next offset from `from` to `to` without applying anything
    /// (an accepted offset jump); false when it was not at `from` any more.
    fn move_offset(&self, partition: i32, from: i64, to: i64) -> Result<bool, SinkError>;
    /// The stored state of `keys`, with `None` for keys without state.
    fn load_state(&self, keys: &[String]) -> Result<State, SinkError>;
    /// The stored state of one key (a key the plugin reads that was not prefetched).
    fn load_one(&self, key: &str) -> Result<Option<Vec<u8>>, SinkError>;
    /// Applies a batch: offsets (fenced), dead letters, state, then rows, all or nothing.
    fn commit(
        &self,
        spec: &Spec,
        changes: &Changeset,
        state: &State,
        progress: &[PartitionProgress],
        letters: &[Letter<'_>],
    ) -> Result<(), SinkError>;
    /// Writes a batch as [`Sink::commit`] does and takes it back: whether the store would
    /// accept it.
    fn probe(
        &self,
        spec: &Spec,
        changes: &Changeset,
        state: &State,
        progress: &[PartitionProgress],
    ) -> Result<(), SinkError>;
    /// Whether an operator skipped the event at `partition`/`offset` and it was not read since.
    fn skip_noted(&self, partition: i32, offset: i64) -> Result<bool, SinkError>;
    /// Dead letters of `partitions` whose re-drive was requested, as events of `topic`.
    fn redrives(&self, topic: &str, partitions: &[i32], limit: i64) -> Result<Vec<Event>, SinkError>;
}
