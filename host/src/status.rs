//! What a running projection shows about itself: counters and the last failure, stall and
//! offset jump, shared between its worker thread, its source and whoever reports on it.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Mutex;

/// Live counters of one running projection, shared with whoever reports on it.
#[derive(Debug, Default)]
pub struct ProjectionStatus {
    /// Events applied since the process started.
    pub events_applied: AtomicU64,
    /// Batches committed since the process started.
    pub batches_committed: AtomicU64,
    /// The error that stopped the projection, if one did.
    pub failure: Mutex<Option<String>>,
    /// Whether the consumer is stalled right now (the stall detector of `source::stall`).
    pub stalled: AtomicBool,
    /// Stalls detected since the process started.
    pub stalls: AtomicU64,
    /// Stalled consumers replaced by fresh ones since the process started.
    pub recoveries: AtomicU64,
    /// The last stall: when it was detected and why.
    pub last_stall: Mutex<Option<Stall>>,
    /// Batches a fence rejected: another consumer had advanced a partition first.
    pub fenced: AtomicU64,
    /// Partitions found with a stored offset the log no longer holds (see
    /// `kafka.on_offset_jump` in the configuration).
    pub offset_jumps: AtomicU64,
    /// The last of those: what was found and what was done.
    pub last_offset_jump: Mutex<Option<String>>,
    /// Poison events moved past (dead-lettered or skipped) since the process started.
    pub dead_lettered: AtomicU64,
}

/// One detected stall of a projection's consumer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Stall {
    /// When it was detected.
    pub at: chrono::DateTime<chrono::Utc>,
    /// What was seen.
    pub reason: String,
}
