//! Where events come from: the source-neutral face the pipeline sees ([`Source`]) and the
//! Kafka source behind it.
//!
//! Invariants every source keeps:
//! - It owns the partitions' positions: what it holds, each one's stored next offset, and the
//!   next offset it accepts. After an assignment change it starts every partition at the
//!   stored offset (or the beginning), and drops what it collected before the change.
//! - A batch never holds an event twice, nor one before a partition's stored offset.

pub mod kafka;
pub mod positions;
pub mod stall;

use std::collections::HashMap;

use crate::contract::Event;

/// What a source hands the pipeline.
#[derive(Debug)]
pub enum Pull {
    /// Events in offset order per partition; empty when nothing arrived within a poll
    /// interval or the projection is stopping.
    Events(Vec<Event>),
    /// A new assignment starts some partitions at stored offsets the log does not hold.
    Jumped(Vec<Jump>),
}

/// A partition whose stored next offset is outside the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jump {
    /// The partition.
    pub partition: i32,
    /// The stored next offset.
    pub stored: i64,
    /// The log's start offset.
    pub low: i64,
    /// The log's end offset.
    pub high: i64,
}

/// One deployment's events.
pub trait Source {
    /// The topic events are read from.
    fn topic(&self) -> &str;
    /// Collects the next batch (or the jumps of a new assignment).
    fn next_batch(&mut self) -> Pull;
    /// The partitions held, each with its stored next offset (`None`: nothing stored yet).
    fn held(&self) -> HashMap<i32, Option<i64>>;
    /// A batch committed: these partitions' stored offsets moved to these next offsets.
    fn committed(&mut self, offsets: &[(i32, i64)]);
    /// A commit was fenced (another consumer advanced a partition): re-read the stored
    /// offsets and start over from them.
    fn fenced(&mut self);
    /// An accepted jump: `partition`'s stored offset was moved to `offset`; go on from there.
    /// False when the source could not move and started over from the stored offsets
    /// instead (the jumps of this assignment are then checked again).
    fn rewind(&mut self, partition: i32, offset: i64) -> bool;
}
