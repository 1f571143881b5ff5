//! The pipeline: the one place where the Kafka source, the plugin runtime and the PostgreSQL
//! sink meet. Each projection version runs on its own thread: collect a batch, project it in
//! the sandbox, apply it with its offsets, repeat.
//!
//! Invariants:
//! - Nothing lost, nothing doubled: a batch is applied in one transaction with the next offsets
//!   of its partitions; after a crash, consumption resumes from those offsets.
//! - A batch that cannot be committed for a transient reason (database down, deadlock) is
//!   retried as it is; one that a plugin rejects stops the projection with its status set to
//!   `failed` and the error pinned to the partition and offset. Nothing is skipped silently.
//! - On shutdown the batch in flight is finished and committed; a partly collected batch is
//!   dropped (its events are re-read on the next start).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::changeset::Changeset;
use crate::config::{KafkaConfig, OffsetJump, PipelineConfig};
use crate::contract::{Event, Header};
use crate::progress::Watermarks;
use crate::registry::{Deployment, Poison, Registry};
use crate::runtime::{CallError, Plugin, StateOverlay, StateUnavailable};
use crate::sink::postgres::letters::{Build, Letter, Reason};
use crate::sink::postgres::{BatchWriter, Database, PartitionProgress, SinkError};
use crate::source::kafka::{self, ProjectionConsumer, SeedingContext};
use crate::source::stall::{Observation, StallDetector, Verdict};

/// Live counters of one running projection, shared with whoever reports on it.
#[derive(Debug, Default)]
pub struct ProjectionStatus {
    /// Events applied since the process started.
    pub events_applied: AtomicU64,
    /// Batches committed since the process started.
    pub batches_committed: AtomicU64,
    /// The error that stopped the projection, if one did.
    pub failure: Mutex<Option<String>>,
    /// Whether the consumer is stalled right now (see [`crate::source::stall`]).
    pub stalled: std::sync::atomic::AtomicBool,
    /// Stalls detected since the process started; each replaced the consumer.
    pub stalls: AtomicU64,
    /// The last stall: when it was detected and why.
    pub last_stall: Mutex<Option<Stall>>,
    /// Batches a fence rejected: another consumer had advanced a partition first.
    pub fenced: AtomicU64,
    /// Partitions found with a stored offset the log no longer holds (see
    /// [`crate::config::KafkaConfig::on_offset_jump`]).
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

/// Why a batch stopped the projection.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// The plugin returned an error for one event, or operations the declaration forbids, or
    /// a call failed on it deterministically (a trap, fuel, the memory cap), or the database
    /// refused what it made of it: the same event fails again the same way, so it is poison
    /// (see [`Poison`]).
    #[error("event at partition {partition} offset {offset}: {message}")]
    Event { partition: i32, offset: i64, message: String },
    /// A partition's stored offset is not in the log any more, and the policy is to halt.
    #[error("partition {partition} offset {offset}: {message}")]
    Jump { partition: i32, offset: i64, message: String },
    /// A plugin call failed as a whole (trap, deadline, memory cap).
    #[error("events at {range}: {error}")]
    Call { range: String, error: crate::runtime::CallError },
    /// The database refused the batch for a reason retrying cannot fix.
    #[error("applying the batch failed: {0}")]
    Sink(SinkError),
    /// Shutdown was requested while waiting for the database.
    #[error("stopped while waiting for the database")]
    Cancelled,
}

/// Where the events of a batch come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Read from the topic: a commit moves the offsets past them.
    Topic,
    /// Dead letters re-driven: a commit marks them re-driven and leaves the offsets.
    Redrive,
}

/// How often a worker looks for dead letters whose re-drive was requested.
const REDRIVE_CHECK: Duration = Duration::from_secs(1);

/// How often a call that ran past the wall-clock deadline (not out of fuel) is tried again
/// before the projection stops where that call started.
const TIMEOUT_RETRIES: u32 = 3;

/// Everything one deployment's thread needs.
pub(crate) struct Projector {
    /// The loaded plugin.
    pub plugin: Arc<Plugin>,
    /// What it runs as: schema, consumer group, registry id.
    pub deployment: Deployment,
    /// Where its read model lives.
    pub database: Database,
    /// Where its status is recorded.
    pub registry: Registry,
    /// The source.
    pub kafka: KafkaConfig,
    /// Batching.
    pub pipeline: PipelineConfig,
    /// Runtime for the database calls (the thread blocks on it).
    pub handle: Handle,
    /// Cancelled on shutdown.
    pub cancel: CancellationToken,
    /// Counters shared with reporters.
    pub status: Arc<ProjectionStatus>,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Projector {
    /// Starts the projection on its own thread.
    pub(crate) fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        let name = format!("proj-{}-{}", self.deployment.name, self.deployment.id);
        std::thread::Builder::new().name(name).spawn(move || self.run())
    }

    /// A consumer in the deployment's group whose assignments start at the stored offsets.
    fn consumer(&self, writer: &BatchWriter) -> rdkafka::error::KafkaResult<ProjectionConsumer> {
        let loader = {
            let (writer, handle) = (writer.clone(), self.handle.clone());
            Box::new(move || handle.block_on(writer.offsets()).map_err(anyhow::Error::from))
        };
        let context =
            SeedingContext::new(&self.kafka.topic, &self.deployment.consumer_group, loader, self.cancel.clone());
        kafka::subscribe(&self.kafka, &self.deployment.consumer_group, context)
    }

    fn run(self) {
        let (name, version) = (self.deployment.name.clone(), self.deployment.version);
        let writer = self.database.writer(&self.deployment.schema);
        let consumer = match self.consumer(&writer) {
            Ok(consumer) => consumer,
            Err(e) => {
                self.fail(&format!("cannot create the Kafka consumer: {e}"), None);
                return;
            }
        };
        let group = &self.deployment.consumer_group;
        tracing::info!(projection = %name, version, group = %group, "Projection started.");
        let generation = consumer.context().generation();
        let mut worker = Worker {
            projector: &self,
            consumer,
            writer,
            accepted: HashMap::new(),
            generation,
            stall: StallDetector::new(self.kafka.stall_timeout(), Instant::now()),
            closing: None,
            watermarks: None,
            halted: None,
            redrive_checked: Instant::now(),
        };
        if let Err(e) = worker.retry("create the dead-letter table", || worker.writer.ensure_dead_letters()) {
            tracing::warn!(projection = %name, error = %e, "Cannot create the dead-letter table; recording a dead letter will fail.");
        }
        let mut report = Report::new();
        while !self.cancel.is_cancelled() {
            let outcome = match worker.redrive() {
                Some(outcome) => outcome,
                None => {
                    let batch = worker.collect();
                    match worker.halted.take() {
                        Some(failure) => Err(failure),
                        None if batch.is_empty() => continue,
                        None => worker.apply(&batch),
                    }
                }
            };
            match outcome {
                Ok(applied) => report.add(&name, applied),
                Err(Failure::Cancelled) => break,
                Err(failure) => {
                    let kind = match failure {
                        Failure::Event { .. } => "event",
                        Failure::Jump { .. } => "offset_jump",
                        _ => "call",
                    };
                    if kind != "offset_jump" {
                        // A jump was counted when it was found.
                        self.metrics.error(&name, kind);
                    }
                    let at = match &failure {
                        Failure::Event { partition, offset, .. } | Failure::Jump { partition, offset, .. } => {
                            Some((*partition, *offset))
                        }
                        _ => None,
                    };
                    self.fail(&failure.to_string(), at);
                    break;
                }
            }
        }
        // Dropping the consumer closes it: it leaves the group so partitions move at once.
        drop(worker);
        tracing::info!(projection = %name, version, "Projection stopped.");
    }

    fn fail(&self, message: &str, at: Option<(i32, i64)>) {
        let d = &self.deployment;
        tracing::error!(projection = %d.name, version = d.version, build = d.build, error = %message, "Projection failed and stopped; its read model keeps the last committed batch.");
        *self.status.failure.lock().expect("not poisoned") = Some(message.to_string());
        if let Err(e) = self.handle.block_on(self.registry.fail(d.id, message, at)) {
            tracing::error!(projection = %d.name, error = %e, "Could not record the failure.");
        }
    }
}

struct Worker<'a> {
    projector: &'a Projector,
    consumer: ProjectionConsumer,
    writer: BatchWriter,
    /// Next offset to accept per partition: guards against re-delivered messages.
    accepted: HashMap<i32, i64>,
    /// The assignment generation `accepted` was taken from. Kept across batches: a reseed
    /// after a fenced commit changes the generation between two batches.
    generation: u64,
    /// Watches for a consumer that silently stopped receiving.
    stall: StallDetector,
    /// The thread closing the consumer replaced last, while it runs.
    closing: Option<JoinHandle<()>>,
    /// The client reading the partitions' watermarks for the stall detector.
    watermarks: Option<Watermarks>,
    /// Set by [`Worker::collect`] when the projection must stop before its next batch.
    halted: Option<Failure>,
    /// When [`Worker::redrive`] last looked for requested re-drives.
    redrive_checked: Instant,
}

impl Worker<'_> {
    /// Polls until the batch is full, or its first event has waited long enough. Returns an
    /// empty batch on shutdown or when nothing arrived within a poll interval.
    fn collect(&mut self) -> Vec<OwnedMessage> {
        let config = &self.projector.pipeline;
        let mut batch: Vec<OwnedMessage> = Vec::new();
        let mut bytes = 0;
        let mut first_at: Option<Instant> = None;
        loop {
            if self.projector.cancel.is_cancelled() {
                return Vec::new();
            }
            let wait = match first_at {
                None => Duration::from_millis(100),
                Some(t) => config.max_batch_wait().saturating_sub(t.elapsed()),
            };
            // Owned at once (a batch keeps it anyway), so the consumer is free for a check below.
            let polled = self.consumer.poll(wait).map(|result| result.map(|m| m.detach()));
            let context = self.consumer.context();
            if context.generation() != self.generation {
                // The assignment changed (a rebalance, or a reseed after a fenced commit):
                // drop what was collected and restart from the stored offsets of what is
                // assigned now.
                self.generation = context.generation();
                self.stall.received(Instant::now());
                batch.clear();
                bytes = 0;
                first_at = None;
                self.accepted = context.assigned().into_iter().map(|(p, next)| (p, next.unwrap_or(i64::MIN))).collect();
                if let Err(failure) = self.check_offsets() {
                    self.halted = Some(failure);
                    return Vec::new();
                }
            }
            match polled {
                Some(Ok(message)) => {
                    let partition = message.partition();
                    let Some(next) = self.accepted.get_mut(&partition) else {
                        continue;
                    };
                    if message.offset() < *next {
                        continue;
                    }
                    *next = message.offset() + 1;
                    bytes += message.key().map_or(0, <[u8]>::len) + message.payload().map_or(0, <[u8]>::len);
                    batch.push(message);
                    first_at.get_or_insert_with(Instant::now);
                    self.receiving();
                }
                Some(Err(e)) => {
                    tracing::warn!(projection = %self.projector.deployment.name, error = %e, "Kafka consumer error.");
                }
                None if first_at.is_none() => {
                    self.watch();
                    return batch;
                }
                None => {}
            }
            let full = batch.len() >= config.max_batch_events || bytes >= config.max_batch_bytes;
            if full || first_at.is_some_and(|t| t.elapsed() >= config.max_batch_wait()) {
                return batch;
            }
        }
    }

    /// The consumer delivered an event: it is not stalled.
    fn receiving(&mut self) {
        self.stall.received(Instant::now());
        let status = &self.projector.status;
        if status.stalled.swap(false, Ordering::AcqRel) {
            self.projector.metrics.stalled(&self.projector.deployment, false);
            tracing::info!(projection = %self.projector.deployment.name, "Consumer receives events again.");
        }
    }

    /// Called when a poll found nothing: once the consumer has been silent for the stall
    /// timeout, looks at its assignment, the stored offsets and the watermarks, and replaces a
    /// stalled consumer with a fresh one.
    fn watch(&mut self) {
        let now = Instant::now();
        if !self.stall.due(now) {
            return;
        }
        let seen = match self.observe() {
            Ok(seen) => seen,
            Err(e) => {
                tracing::debug!(projection = %self.projector.deployment.name, error = %e, "Cannot check for a stall now.");
                self.stall.unobserved(now);
                return;
            }
        };
        match self.stall.judge(now, &seen) {
            Verdict::Stalled(reason) => self.recover(reason),
            // Nothing waits for this consumer any more.
            Verdict::Idle if self.projector.status.stalled.load(Ordering::Acquire) => self.receiving(),
            Verdict::Idle | Verdict::Watching => {}
        }
    }

    /// Compares the stored offsets of a new assignment with what the log holds now. A stored
    /// offset below the log start (retention deleted events not applied yet) or past its end
    /// (the topic was recreated or truncated) is a jump, counted and shown in the status: with
    /// `kafka.on_offset_jump = "halt"` the projection stops there; with `"accept"` the stored
    /// offset moves to the log start (recorded, in the same table) and consumption goes on
    /// from there.
    fn check_offsets(&mut self) -> Result<(), Failure> {
        let stored: Vec<(i32, i64)> =
            self.consumer.context().assigned().into_iter().filter_map(|(p, next)| Some((p, next?))).collect();
        if stored.is_empty() {
            return Ok(());
        }
        let projector = self.projector;
        let name = &projector.deployment.name;
        let mut tries = 0;
        let ranges = loop {
            match self.ranges() {
                Ok(ranges) => break ranges,
                Err(e) if tries < 5 && !projector.cancel.is_cancelled() => {
                    tracing::debug!(projection = %name, error = %e, "Cannot read the log's offsets yet.");
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => {
                    tracing::warn!(projection = %name, error = %e, "Cannot read the log's offsets; offset jumps of this assignment go unchecked.");
                    return Ok(());
                }
            }
        };
        for (partition, next) in stored {
            let Some(&(low, high)) = ranges.get(&partition) else { continue };
            let found = if next < low {
                format!(
                    "the stored offset {next} is below the log start offset {low}: {} events were deleted (retention) before this projection applied them",
                    low - next
                )
            } else if next > high {
                format!("the stored offset {next} is past the end of the log ({high}): the topic was recreated or truncated")
            } else {
                continue;
            };
            projector.metrics.error(name, "offset_jump");
            projector.status.offset_jumps.fetch_add(1, Ordering::Relaxed);
            *projector.status.last_offset_jump.lock().expect("not poisoned") =
                Some(format!("partition {partition}: {found}"));
            if projector.kafka.on_offset_jump == OffsetJump::Halt {
                return Err(Failure::Jump {
                    partition,
                    offset: next,
                    message: format!(
                        "{found}; halted (kafka.on_offset_jump = \"halt\"): set it to \"accept\" to go on from offset {low}, or rebuild the projection"
                    ),
                });
            }
            tracing::warn!(projection = %name, partition, stored = next, log_start = low, found = %found, "Offsets jumped; going on from the start of the log (kafka.on_offset_jump = \"accept\").");
            let moved = self.retry("move the stored offset", || self.writer.move_offset(partition, next, low))?;
            if moved {
                self.consumer.context().committed(&[(partition, low)]);
                self.accepted.insert(partition, low);
                let topic = &projector.kafka.topic;
                if let Err(e) =
                    self.consumer.seek(topic, partition, rdkafka::Offset::Offset(low), Duration::from_secs(10))
                {
                    tracing::warn!(projection = %name, partition, error = %e, "Could not move to the log start; replacing the consumer.");
                    self.replace_consumer();
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The low and high watermark of every partition, from the worker's own client (see
    /// [`Worker::observe`]); a client that failed is replaced on the next call.
    fn ranges(&mut self) -> anyhow::Result<BTreeMap<i32, (i64, i64)>> {
        if self.watermarks.is_none() {
            self.watermarks = Some(Watermarks::new(&self.projector.kafka)?);
        }
        self.watermarks.as_ref().expect("just set").ranges().inspect_err(|_| {
            // The broker may be down; or this client may be the stuck one: a new one next time.
            self.watermarks = None;
        })
    }

    /// What the detector needs. The watermarks come from a client of their own: a consumer's
    /// own client can be the stuck part (after a broker froze, librdkafka 2.12 was seen to keep
    /// one instance's connections broken for good while a fresh instance worked), and asking
    /// it would fail exactly when the answer matters.
    fn observe(&mut self) -> anyhow::Result<Observation> {
        let topic = &self.projector.kafka.topic;
        let watermarks = self.ranges()?;
        let stored = self.projector.handle.block_on(self.writer.offsets())?;
        let mut assigned: Vec<i32> = self.consumer.context().assigned().into_keys().collect();
        assigned.sort_unstable();
        let positions = self
            .consumer
            .position()?
            .elements_for_topic(topic)
            .iter()
            .filter_map(|e| match e.offset() {
                rdkafka::Offset::Offset(next) => Some((e.partition(), next)),
                _ => None,
            })
            .collect();
        Ok(Observation { assigned, stored: stored.into_iter().collect(), watermarks, positions })
    }

    /// Replaces a stalled consumer. The old one is closed on a thread of its own (closing may
    /// wait on a coordinator that does not answer); the new one joins the group and starts
    /// every partition it is assigned at the stored offset, so nothing is lost or repeated.
    fn recover(&mut self, reason: String) {
        let projector = self.projector;
        let d = &projector.deployment;
        tracing::warn!(projection = %d.name, version = d.version, build = d.build, group = %d.consumer_group, reason = %reason, "Consumer stalled; replacing it with a fresh consumer that resumes from the stored offsets.");
        let status = &projector.status;
        status.stalled.store(true, Ordering::Release);
        status.stalls.fetch_add(1, Ordering::Relaxed);
        *status.last_stall.lock().expect("not poisoned") = Some(Stall { at: chrono::Utc::now(), reason });
        projector.metrics.stalled(d, true);
        if self.replace_consumer() {
            projector.metrics.recovered(d);
        }
        self.stall.received(Instant::now());
    }

    /// Replaces the consumer with a fresh one in the same group, whose assignments start at the
    /// stored offsets. Returns whether it was replaced (else the old one is kept and a later
    /// check tries again).
    fn replace_consumer(&mut self) -> bool {
        let d = &self.projector.deployment;
        if self.closing.as_ref().is_some_and(|t| !t.is_finished()) {
            // Closing waits for the coordinator: while the last one is still closing, another
            // fresh consumer would only add a member waiting on the same coordinator.
            tracing::warn!(projection = %d.name, "The consumer replaced last is still closing; keeping the current one for now.");
            return false;
        }
        match self.projector.consumer(&self.writer) {
            Ok(fresh) => {
                let old = std::mem::replace(&mut self.consumer, fresh);
                // Closing may wait on a coordinator that does not answer: not on this thread.
                match std::thread::Builder::new().name(format!("close-{}", d.id)).spawn(move || drop(old)) {
                    Ok(thread) => self.closing = Some(thread),
                    Err(e) => {
                        tracing::error!(projection = %d.name, error = %e, "Cannot start a thread to close the old consumer; it was closed here.")
                    }
                }
                self.generation = self.consumer.context().generation();
                self.accepted.clear();
                true
            }
            Err(e) => {
                tracing::error!(projection = %d.name, error = %e, "Cannot create a fresh consumer; retrying at the next check.");
                false
            }
        }
    }

    /// Projects and commits one batch; returns the number of events applied. When an event
    /// fails, the events before it are still applied, then the failure is returned: the
    /// projection stops exactly at the event that caused it.
    fn apply(&mut self, batch: &[OwnedMessage]) -> Result<usize, Failure> {
        let started = Instant::now();
        let events: Vec<Event> = batch.iter().map(to_event).collect();
        let applied = self.apply_events(&events);
        if let Ok(count) = &applied {
            let projector = self.projector;
            projector.metrics.batch_committed(&projector.deployment, *count, started.elapsed().as_secs_f64());
        }
        applied
    }

    fn apply_events(&mut self, events: &[Event]) -> Result<usize, Failure> {
        self.apply_from(events, Source::Topic)
    }

    /// Projects and commits `events` (read from the topic, or dead letters being re-driven).
    /// When one event fails, the events before it are applied; then a poison event from the
    /// topic is moved past, recorded in the dead letters in the same transaction, when the
    /// policy is `dead-letter` or an operator skipped it, and the rest goes on; any other
    /// failure stops the projection there. A re-driven event that fails again stays a dead
    /// letter, with its new error, and the rest goes on.
    fn apply_from(&mut self, events: &[Event], source: Source) -> Result<usize, Failure> {
        let mut rest = events;
        let mut applied = 0;
        loop {
            let (failed_at, failure) = match self.project(rest) {
                Ok((changes, state)) => {
                    let letters = redriven(rest, source, &self.projector.deployment.sha256);
                    match self.commit(rest, &changes, &state, source, &letters) {
                        Err(Failure::Sink(error)) if error.caused_by_data() => self.pin_refused(rest, error, source),
                        outcome => return outcome.map(|count| applied + count),
                    }
                }
                Err((failed_at, failure)) => self.pin(rest, failed_at, failure),
            };
            // A re-driven event that fails again is refused (`None`); a poison event from the
            // topic is moved past for a reason, or the projection halts there.
            let moving_past = match (&failure, source) {
                (Failure::Event { .. }, Source::Redrive) => Some(None),
                (Failure::Event { partition, offset, .. }, Source::Topic) => {
                    self.disposal(*partition, *offset)?.map(Some)
                }
                _ => None,
            };
            let (Some(reason), Failure::Event { message, .. }) = (moving_past, &failure) else {
                self.commit_prefix(&rest[..failed_at], source, Vec::new())?;
                return Err(failure);
            };
            let (poison, build) = (&rest[failed_at], self.build());
            let letter = match reason {
                Some(reason) => {
                    self.moved_past(poison, message, reason);
                    Letter::Record { event: poison, error: message, reason, build: &build }
                }
                None => Letter::Refused { partition: poison.partition, offset: poison.offset, error: message },
            };
            let committed = self.commit_prefix(&rest[..=failed_at], source, vec![letter])?;
            if committed == 0 {
                // Fenced: the consumer is back at the stored offsets.
                return Ok(applied);
            }
            applied += committed;
            rest = &rest[failed_at + 1..];
            if rest.is_empty() {
                return Ok(applied);
            }
        }
    }

    /// Commits `through`: the effects of all its events but the last one when `last` is
    /// given (the poison event, which only moves the offset past it), with its letters.
    fn commit_prefix(&mut self, through: &[Event], source: Source, last: Vec<Letter<'_>>) -> Result<usize, Failure> {
        let applying = if last.is_empty() { through } else { &through[..through.len() - 1] };
        if through.is_empty() {
            return Ok(0);
        }
        let spec = self.projector.plugin.spec();
        let (changes, state) = if applying.is_empty() {
            (Changeset::new(spec), StateOverlay::new(HashMap::new(), Box::new(|_: &str| Ok(None))))
        } else {
            // Deterministic plugins: projecting the prefix again gives the same result.
            self.project(applying).map_err(|(_, f)| f)?
        };
        let projector = self.projector;
        let mut letters = redriven(applying, source, &projector.deployment.sha256);
        letters.extend(last);
        self.commit(through, &changes, &state, source, &letters)
    }

    /// What to do with a poison event from the topic: move past it (dead-lettered by the
    /// policy, or skipped by an operator), or `None` to halt there.
    fn disposal(&self, partition: i32, offset: i64) -> Result<Option<Reason>, Failure> {
        let projector = self.projector;
        let policy =
            self.retry("read the poison policy", || projector.registry.poison_policy(projector.deployment.id))?;
        if policy == Poison::DeadLetter {
            return Ok(Some(Reason::DeadLetter));
        }
        let skipped = self.retry("read the skips", || self.writer.skip_noted(partition, offset))?;
        Ok(skipped.then_some(Reason::Skipped))
    }

    /// Counts and logs a poison event being moved past.
    fn moved_past(&self, event: &Event, error: &str, reason: Reason) {
        let projector = self.projector;
        let d = &projector.deployment;
        let (kind, how) = match reason {
            Reason::DeadLetter => ("dead_letter", "dead-lettered (on_poison = dead-letter)"),
            Reason::Skipped => ("skipped", "skipped by an operator"),
        };
        projector.metrics.error(&d.name, kind);
        projector.status.dead_lettered.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(projection = %d.name, version = d.version, partition = event.partition, offset = event.offset, error = %error, "Poison event {how}; moving past it.");
    }

    /// The build recording dead letters.
    fn build(&self) -> Build {
        let d = &self.projector.deployment;
        Build { sha256: d.sha256.clone(), version: d.version, build: d.build }
    }

    /// The dead letters whose re-drive was requested, of the partitions this worker holds, when
    /// it is time to look (every second); `None` when there are none.
    fn redrive(&mut self) -> Option<Result<usize, Failure>> {
        if self.redrive_checked.elapsed() < REDRIVE_CHECK {
            return None;
        }
        self.redrive_checked = Instant::now();
        let held: Vec<i32> =
            self.consumer.context().assigned().into_iter().filter_map(|(p, stored)| stored.map(|_| p)).collect();
        if held.is_empty() {
            return None;
        }
        let topic = &self.projector.kafka.topic;
        let limit = self.projector.pipeline.max_batch_events as i64;
        let events = match self.projector.handle.block_on(self.writer.redrives(topic, &held, limit)) {
            Ok(events) if !events.is_empty() => events,
            Ok(_) => return None,
            Err(e) => {
                tracing::debug!(projection = %self.projector.deployment.name, error = %e, "Cannot look for dead letters to re-drive now.");
                return None;
            }
        };
        tracing::info!(projection = %self.projector.deployment.name, count = events.len(), "Re-driving dead letters through the current build.");
        // Re-driven events are not new events: they add nothing to the throughput report.
        Some(self.apply_from(&events, Source::Redrive).map(|_| 0))
    }

    /// Narrows a batch the database refused for a value (see [`SinkError::caused_by_data`])
    /// down to the first event whose effects it refuses: a binary search over prefixes of the
    /// batch, each projected and written in a transaction that is rolled back.
    fn pin_refused(&self, events: &[Event], error: SinkError, source: Source) -> (usize, Failure) {
        let spec = self.projector.plugin.spec();
        let mut refusal = error.to_string();
        // Invariant: events[..good] is accepted, events[..bad] is refused.
        let (mut good, mut bad) = (0, events.len());
        while bad - good > 1 {
            let middle = good + (bad - good) / 2;
            let prefix = &events[..middle];
            let Ok((changes, state)) = self.project(prefix) else {
                return (0, Failure::Sink(error));
            };
            let progress = self.progress_of(prefix, source);
            match self.projector.handle.block_on(self.writer.probe(spec, &changes, state.writes(), &progress)) {
                Ok(()) => good = middle,
                Err(e) if e.caused_by_data() => {
                    refusal = e.to_string();
                    bad = middle;
                }
                // The database went away or the partition moved during the search: stop
                // where the batch started, as before.
                Err(_) => return (0, Failure::Sink(error)),
            }
        }
        let poison = &events[good];
        let failure = Failure::Event {
            partition: poison.partition,
            offset: poison.offset,
            message: format!("the database refused what the plugin made of this event: {refusal}"),
        };
        (good, failure)
    }

    /// Narrows a failed plugin call (a trap, the deadline, the memory cap) down to the event
    /// that makes it fail, so the projection stops exactly there with everything before it
    /// applied. Plugins are deterministic, so prefixes of the batch can be projected again: a
    /// binary search over the failing call's events finds the shortest prefix that fails.
    /// Other failures are already pinned to their event and are returned as they are.
    fn pin(&self, events: &[Event], failed_at: usize, failure: Failure) -> (usize, Failure) {
        if !matches!(failure, Failure::Call { .. }) {
            return (failed_at, failure);
        }
        // The failing call is the one starting at `failed_at`.
        let end = calls(events, &self.projector.pipeline)
            .find(|call| call.start == failed_at)
            .map_or(events.len(), |call| call.end);
        // Invariant: events[..good] projects, events[..bad] fails.
        let (mut good, mut bad) = (failed_at, end);
        while bad - good > 1 {
            let middle = good + (bad - good) / 2;
            match self.project(&events[..middle]) {
                Ok(_) => good = middle,
                Err((_, Failure::Cancelled)) => return (0, Failure::Cancelled),
                // The wall clock blames no event: a loaded machine reaches the deadline on
                // innocent ones. Stop where the call started, as for a failure not reproduced.
                Err((_, Failure::Call { error, .. })) if !error.is_deterministic() => return (failed_at, failure),
                // An event's own error pins it (it lies past `good`, which projects).
                Err((at, Failure::Event { .. })) => bad = (at + 1).clamp(good + 1, middle),
                Err(_) => bad = middle,
            }
        }
        let poison = &events[good];
        match self.project(&events[..bad]) {
            Err((at, event @ Failure::Event { .. })) if at == good => (good, event),
            Err((_, Failure::Call { error, .. })) if error.is_deterministic() => {
                let failure = Failure::Event {
                    partition: poison.partition,
                    offset: poison.offset,
                    message: format!("the plugin call failed on this event: {error}"),
                };
                (good, failure)
            }
            // Not reproducible on its own (or another failure came first): stop where the
            // call started, as before.
            _ => (failed_at, failure),
        }
    }

    /// Runs the plugin over `events`; on failure returns the index of the first event of the
    /// failing call or the failing event. A call that failed only because a state key could not
    /// be loaded while the database is unavailable is run again, from the start of the batch,
    /// once the database answers.
    fn project(&self, events: &[Event]) -> Result<(Changeset, StateOverlay), (usize, Failure)> {
        let mut delay = Duration::from_millis(100);
        let mut timeouts = 0;
        loop {
            match self.project_once(events) {
                Err((_, Failure::Call { error: CallError::StateUnavailable(message), .. })) => {
                    self.wait_for_database("load state", &message, &mut delay).map_err(|f| (0, f))?;
                }
                // Every instance of the host's pool in use: the call waits for one to end.
                Err((_, Failure::Call { error: error @ CallError::Busy(_), range })) => {
                    tracing::warn!(projection = %self.projector.deployment.name, events = %range, error = %error, retry_in = ?delay, "No free plugin instance; the call waits.");
                    self.pause(delay).map_err(|f| (0, f))?;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                // Past the wall-clock deadline but not out of fuel: the machine may be loaded;
                // the same call later, with backoff, before giving up.
                Err((_, Failure::Call { error: error @ CallError::Timeout(_), range }))
                    if timeouts < TIMEOUT_RETRIES =>
                {
                    timeouts += 1;
                    let pause = Duration::from_secs(1 << timeouts);
                    tracing::warn!(projection = %self.projector.deployment.name, events = %range, error = %error, retry_in = ?pause, "Plugin call past its wall-clock deadline (not out of fuel); trying it again.");
                    self.pause(pause).map_err(|f| (0, f))?;
                }
                outcome => return outcome,
            }
        }
    }

    fn project_once(&self, events: &[Event]) -> Result<(Changeset, StateOverlay), (usize, Failure)> {
        let projector = self.projector;
        let plugin = &projector.plugin;
        let spec = plugin.spec();
        let keys: Vec<String> = events
            .iter()
            .filter_map(|e| e.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let prefetched = self.retry("load state", || self.writer.load_state(&keys)).map_err(|f| (0, f))?;
        let loader = {
            let (writer, handle) = (self.writer.clone(), projector.handle.clone());
            Box::new(move |key: &str| {
                handle.block_on(writer.load_one(key)).map_err(|e| {
                    if crate::sink::postgres::is_transient(&e) {
                        anyhow::Error::new(StateUnavailable(e.to_string()))
                    } else {
                        anyhow::Error::from(e)
                    }
                })
            })
        };
        let mut state = StateOverlay::new(prefetched, loader);
        let mut changes = Changeset::new(spec);
        for calls in calls(events, &projector.pipeline) {
            let (first, chunk) = (calls.start, &events[calls]);
            // A plugin whose last call failed rests before the next (a fifth of a core at most
            // for a plugin failing call after call), so it cannot starve its neighbours.
            self.pause(plugin.rest()).map_err(|f| (first, f))?;
            let call_started = Instant::now();
            let outcome = plugin.handle(chunk, state);
            let seconds = call_started.elapsed().as_secs_f64();
            projector.metrics.plugin_call(&projector.deployment.name, seconds);
            let (results, after) =
                outcome.map_err(|error| (first, Failure::Call { range: describe_range(chunk), error }))?;
            state = after;
            for (index, (event, result)) in chunk.iter().zip(results).enumerate() {
                let pinned = |message: String| {
                    let failure = Failure::Event { partition: event.partition, offset: event.offset, message };
                    (first + index, failure)
                };
                let operations = result.map_err(pinned)?;
                changes.apply(spec, &operations).map_err(|m| pinned(format!("invalid operations: {m}")))?;
            }
        }
        Ok((changes, state))
    }

    /// Commits projected events with their offsets (from the topic) or their fence (re-driven)
    /// and `letters`; returns how many were committed (0 when fenced: the consumer is moved
    /// back to the stored offsets).
    fn commit(
        &mut self,
        events: &[Event],
        changes: &Changeset,
        state: &StateOverlay,
        source: Source,
        letters: &[Letter<'_>],
    ) -> Result<usize, Failure> {
        let projector = self.projector;
        let spec = projector.plugin.spec();
        let progress = self.progress_of(events, source);
        let committed = self.retry_commit(|| self.writer.commit(spec, changes, state.writes(), &progress, letters))?;
        if !committed {
            if !self.consumer.context().reseed(&self.consumer) {
                self.replace_consumer();
            }
            return Ok(0);
        }
        if source == Source::Redrive {
            return Ok(events.len());
        }
        let offsets: Vec<(i32, i64)> = progress.iter().map(|p| (p.partition, p.next)).collect();
        self.consumer.context().committed(&offsets);
        self.commit_to_kafka(&offsets);
        projector.status.events_applied.fetch_add(events.len() as u64, Ordering::Relaxed);
        projector.status.batches_committed.fetch_add(1, Ordering::Relaxed);
        Ok(events.len())
    }

    /// What a commit of `events` does to the offsets: moves them past events from the topic;
    /// only checks them (the partition is still this worker's) for re-driven events.
    fn progress_of(&self, events: &[Event], source: Source) -> Vec<PartitionProgress> {
        match source {
            Source::Topic => self.progress(events),
            Source::Redrive => self.fence(events),
        }
    }

    /// The stored offsets of the partitions of `events`, unchanged: a commit with them fails
    /// as fenced when another consumer moved one.
    fn fence(&self, events: &[Event]) -> Vec<PartitionProgress> {
        let assigned = self.consumer.context().assigned();
        let partitions: std::collections::BTreeSet<i32> = events.iter().map(|e| e.partition).collect();
        partitions
            .into_iter()
            .filter_map(|partition| {
                let stored = assigned.get(&partition).copied().flatten()?;
                Some(PartitionProgress { partition, expected: Some(stored), next: stored, last_event_ms: None })
            })
            .collect()
    }

    /// How far `events` move each partition, from the stored offsets of the assignment.
    fn progress(&self, events: &[Event]) -> Vec<PartitionProgress> {
        let assigned = self.consumer.context().assigned();
        let mut progress: BTreeMap<i32, PartitionProgress> = BTreeMap::new();
        for event in events {
            let entry = progress.entry(event.partition).or_insert_with(|| PartitionProgress {
                partition: event.partition,
                expected: assigned.get(&event.partition).copied().flatten(),
                next: event.offset + 1,
                last_event_ms: None,
            });
            entry.next = entry.next.max(event.offset + 1);
            entry.last_event_ms = event.timestamp_ms.or(entry.last_event_ms);
        }
        progress.into_values().collect()
    }

    /// Tells Kafka the new positions, asynchronously, so lag tools see them.
    fn commit_to_kafka(&self, offsets: &[(i32, i64)]) {
        let mut tpl = TopicPartitionList::new();
        for &(partition, next) in offsets {
            let _ = tpl.add_partition_offset(&self.projector.kafka.topic, partition, Offset::Offset(next));
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "Kafka offset commit failed (informational only).");
        }
    }

    /// Runs a database read, retrying transient failures until it works or shutdown.
    fn retry<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.projector.handle.block_on(call()) {
                Ok(value) => return Ok(value),
                Err(e) if crate::sink::postgres::is_transient(&e) => {
                    self.wait_for_database(what, &e.to_string(), &mut delay)?;
                }
                Err(e) => return Err(Failure::Sink(SinkError::Database(e))),
            }
        }
    }

    /// Commits, retrying transient failures; `Ok(false)` when fenced.
    fn retry_commit<F, Fut>(&self, mut call: F) -> Result<bool, Failure>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), SinkError>>,
    {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.projector.handle.block_on(call()) {
                Ok(()) => return Ok(true),
                Err(SinkError::Fenced { partition }) => {
                    self.projector.metrics.error(&self.projector.deployment.name, "fenced");
                    self.projector.status.fenced.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(projection = %self.projector.deployment.name, partition, "Batch fenced: another consumer advanced the partition; re-reading from the stored offsets.");
                    return Ok(false);
                }
                Err(e) if e.is_transient() => {
                    self.wait_for_database("commit batch", &e.to_string(), &mut delay)?;
                }
                Err(e) => return Err(Failure::Sink(e)),
            }
        }
    }

    /// Sleeps `length`, or until the projection is stopped ([`Failure::Cancelled`]).
    fn pause(&self, length: Duration) -> Result<(), Failure> {
        let until = Instant::now() + length;
        loop {
            if self.projector.cancel.is_cancelled() {
                return Err(Failure::Cancelled);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }

    fn wait_for_database(&self, what: &str, error: &str, delay: &mut Duration) -> Result<(), Failure> {
        self.projector.metrics.error(&self.projector.deployment.name, "database");
        if self.projector.cancel.is_cancelled() {
            return Err(Failure::Cancelled);
        }
        tracing::error!(projection = %self.projector.deployment.name, action = what, error = %error, retry_in = ?*delay, "Database unavailable; the batch is kept and retried.");
        self.pause(*delay)?;
        *delay = (*delay * 2).min(Duration::from_secs(5));
        Ok(())
    }
}

/// The marks of re-driven `events` as applied by `sha256` (none for events from the topic).
fn redriven<'e>(events: &'e [Event], source: Source, sha256: &'e str) -> Vec<Letter<'e>> {
    if source == Source::Topic {
        return Vec::new();
    }
    events.iter().map(|e| Letter::Redriven { partition: e.partition, offset: e.offset, sha256 }).collect()
}

/// How a batch is cut into plugin calls: consecutive ranges of at most `events_per_call`
/// events and `bytes_per_call` bytes (an event larger than that alone).
fn calls<'a>(events: &'a [Event], config: &PipelineConfig) -> impl Iterator<Item = std::ops::Range<usize>> + 'a {
    let (most_events, most_bytes) = (config.events_per_call, config.bytes_per_call);
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= events.len() {
            return None;
        }
        let mut end = start;
        let mut bytes = 0;
        while end < events.len() && end - start < most_events {
            let size = event_bytes(&events[end]);
            if end > start && bytes + size > most_bytes {
                break;
            }
            bytes += size;
            end += 1;
        }
        let call = start..end;
        start = end;
        Some(call)
    })
}

/// What an event weighs when it is handed to a plugin.
fn event_bytes(event: &Event) -> usize {
    let headers: usize = event.headers.iter().map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len)).sum();
    event.key.as_ref().map_or(0, Vec::len) + event.value.as_ref().map_or(0, Vec::len) + headers
}

fn describe_range(chunk: &[Event]) -> String {
    let mut first: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for e in chunk {
        let range = first.entry(e.partition).or_insert((e.offset, e.offset));
        range.0 = range.0.min(e.offset);
        range.1 = range.1.max(e.offset);
    }
    first.iter().map(|(p, (a, b))| format!("partition {p} offsets {a}..={b}")).collect::<Vec<_>>().join(", ")
}

fn to_event(message: &OwnedMessage) -> Event {
    let headers = message
        .headers()
        .map(|headers| {
            headers.iter().map(|h| Header { key: h.key.to_string(), value: h.value.map(<[u8]>::to_vec) }).collect()
        })
        .unwrap_or_default();
    Event {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
        timestamp_ms: message.timestamp().to_millis(),
    }
}

/// Progress logging at INFO, at most every ten seconds.
struct Report {
    since: Instant,
    events: usize,
}

impl Report {
    fn new() -> Self {
        Self { since: Instant::now(), events: 0 }
    }

    fn add(&mut self, projection: &str, events: usize) {
        self.events += events;
        let elapsed = self.since.elapsed();
        if elapsed >= Duration::from_secs(10) {
            let rate = self.events as f64 / elapsed.as_secs_f64();
            tracing::info!(projection = %projection, events = self.events, events_per_second = rate.round(), "Projection progress.");
            *self = Self::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sized(values: &[usize]) -> Vec<Event> {
        values
            .iter()
            .enumerate()
            .map(|(offset, &size)| Event {
                topic: "t".into(),
                partition: 0,
                offset: offset as i64,
                key: Some(b"k".to_vec()),
                value: Some(vec![b'x'; size - 1]),
                headers: vec![],
                timestamp_ms: None,
            })
            .collect()
    }

    #[test]
    fn calls_are_bounded_by_count_and_bytes() {
        let config = PipelineConfig { events_per_call: 3, bytes_per_call: 100, ..PipelineConfig::default() };
        let cut = |sizes: &[usize]| calls(&sized(sizes), &config).collect::<Vec<_>>();
        assert_eq!(cut(&[10, 10, 10, 10, 10]), vec![0..3, 3..5], "by count");
        assert_eq!(cut(&[60, 40, 1, 50]), vec![0..2, 2..4], "by bytes, exactly at the bound");
        assert_eq!(cut(&[10, 500, 10]), vec![0..1, 1..2, 2..3], "an event over the bound goes alone");
        assert_eq!(cut(&[]), Vec::<std::ops::Range<usize>>::new());
    }
}
