//! The pipeline: the one place where a deployment's source, its plugin and its sink meet, each
//! behind a trait ([`Source`], [`Project`], [`Sink`], and [`Control`] for its registry entry).
//! Each deployment runs on its own thread: pull a batch, project it in the sandbox, commit it
//! with its offsets, repeat. It orchestrates only: Kafka lives in `source::kafka`, SQL in
//! `sink::postgres`.
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
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::changeset::{At, Changeset};
use crate::config::{KafkaConfig, OffsetJump, PipelineConfig};
use crate::contract::Event;
use crate::registry::{Deployment, Poison};
use crate::runtime::{CallError, EventResults, Plugin, StateOverlay, StateUnavailable};
use crate::sink::{Build, Letter, PartitionProgress, Reason, Sink, SinkError};
use crate::source::kafka::{KafkaSource, Reader};
use crate::source::{Jump, Pull, Source};
use crate::spec::Spec;
use crate::status::ProjectionStatus;

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
enum Origin {
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

/// The plugin as the pipeline calls it (see [`Plugin`]).
pub(crate) trait Project: Send + Sync {
    /// The validated declaration.
    fn spec(&self) -> &Spec;
    /// Projects `events` over `state`: one result per event, and the state with the call's
    /// writes added.
    fn handle(&self, events: &[Event], state: StateOverlay) -> Result<(EventResults, StateOverlay), CallError>;
    /// How long to wait before the next call (after a failed one).
    fn rest(&self) -> Duration;
}

impl Project for Plugin {
    fn spec(&self) -> &Spec {
        Plugin::spec(self)
    }

    fn handle(&self, events: &[Event], state: StateOverlay) -> Result<(EventResults, StateOverlay), CallError> {
        Plugin::handle(self, events, state)
    }

    fn rest(&self) -> Duration {
        Plugin::rest(self)
    }
}

/// What the pipeline reads from and records in the deployment's registry entry.
pub(crate) trait Control: Send + Sync {
    /// Its poison policy, read when a poison event occurs (a change applies at once).
    fn poison_policy(&self) -> Result<Poison, SinkError>;
    /// Records that it failed (with the event, when one caused it).
    fn fail(&self, message: &str, at: Option<(i32, i64)>) -> anyhow::Result<()>;
}

/// Everything one deployment's thread needs.
pub(crate) struct Projector {
    /// The loaded plugin.
    pub plugin: Arc<dyn Project>,
    /// What it runs as: schema, consumer group, registry id.
    pub deployment: Deployment,
    /// Where its read model lives.
    pub sink: Arc<dyn Sink>,
    /// The deployment's record: its poison policy, where failures are recorded.
    pub control: Arc<dyn Control>,
    /// The source.
    pub kafka: KafkaConfig,
    /// Batching.
    pub pipeline: PipelineConfig,
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

    /// The deployment's events: a consumer in its group whose assignments start at the
    /// offsets stored in its sink.
    fn source(&self) -> anyhow::Result<KafkaSource> {
        let d = &self.deployment;
        let reader = Reader {
            projection: d.name.clone(),
            id: d.id,
            version: d.version,
            build: d.build,
            group: d.consumer_group.clone(),
        };
        let sink = self.sink.clone();
        let offsets = Arc::new(move || sink.offsets().map_err(anyhow::Error::from));
        Ok(KafkaSource::new(&self.kafka, &self.pipeline, reader, offsets, self.cancel.clone(), self.status.clone())?)
    }

    fn run(self) {
        let (name, version) = (self.deployment.name.clone(), self.deployment.version);
        let source = match self.source() {
            Ok(source) => source,
            Err(e) => {
                self.fail(&format!("cannot create the Kafka consumer: {e}"), None);
                return;
            }
        };
        let group = &self.deployment.consumer_group;
        tracing::info!(projection = %name, version, group = %group, "Projection started.");
        let mut worker =
            Worker { projector: &self, source, redrive_checked: Instant::now(), stalls: Stalls::default() };
        if let Err(e) = worker.retry("create the dead-letter table", || self.sink.ensure_dead_letters()) {
            tracing::warn!(projection = %name, error = %e, "Cannot create the dead-letter table; recording a dead letter will fail.");
        }
        let mut report = Report::new();
        while !self.cancel.is_cancelled() {
            let outcome = match worker.redrive() {
                Some(outcome) => outcome,
                None => {
                    let pulled = worker.source.next_batch();
                    worker.report_stalls();
                    match pulled {
                        Pull::Jumped(jumps) => match worker.jumped(jumps) {
                            Ok(()) => continue,
                            Err(failure) => Err(failure),
                        },
                        Pull::Events(batch) if batch.is_empty() => continue,
                        Pull::Events(batch) => worker.apply(&batch),
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
        // Dropping the source closes its consumer: it leaves the group so partitions move at once.
        drop(worker);
        tracing::info!(projection = %name, version, "Projection stopped.");
    }

    fn fail(&self, message: &str, at: Option<(i32, i64)>) {
        let d = &self.deployment;
        tracing::error!(projection = %d.name, version = d.version, build = d.build, error = %message, "Projection failed and stopped; its read model keeps the last committed batch.");
        *self.status.failure.lock().expect("not poisoned") = Some(message.to_string());
        if let Err(e) = self.control.fail(message, at) {
            tracing::error!(projection = %d.name, error = %e, "Could not record the failure.");
        }
    }
}

struct Worker<'a, S> {
    projector: &'a Projector,
    source: S,
    /// When [`Worker::redrive`] last looked for requested re-drives.
    redrive_checked: Instant,
    /// What the metrics were last told of the source's stalls.
    stalls: Stalls,
}

/// The stall figures last reported to the metrics.
#[derive(Debug, Default)]
struct Stalls {
    stalled: bool,
    recoveries: u64,
}

impl<S: Source> Worker<'_, S> {
    /// Tells the metrics what the source's stall detector found since the last look.
    fn report_stalls(&mut self) {
        let (projector, status) = (self.projector, &self.projector.status);
        let stalled = status.stalled.load(Ordering::Acquire);
        if stalled != self.stalls.stalled {
            projector.metrics.stalled(&projector.deployment, stalled);
            self.stalls.stalled = stalled;
        }
        let recoveries = status.recoveries.load(Ordering::Relaxed);
        for _ in self.stalls.recoveries..recoveries {
            projector.metrics.recovered(&projector.deployment);
        }
        self.stalls.recoveries = recoveries;
    }

    /// Handles stored offsets a new assignment found outside the log: a stored offset below
    /// the log start (retention deleted events not applied yet) or past its end (the topic was
    /// recreated or truncated) is a jump, counted and shown in the status. With
    /// `kafka.on_offset_jump = "halt"` the projection stops there; with `"accept"` the stored
    /// offset moves to the log start (recorded, in the same table) and consumption goes on
    /// from there.
    fn jumped(&mut self, jumps: Vec<Jump>) -> Result<(), Failure> {
        let projector = self.projector;
        let name = &projector.deployment.name;
        for Jump { partition, stored: next, low, high } in jumps {
            let found = if next < low {
                format!(
                    "the stored offset {next} is below the log start offset {low}: {} events were deleted (retention) before this projection applied them",
                    low - next
                )
            } else {
                format!("the stored offset {next} is past the end of the log ({high}): the topic was recreated or truncated")
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
            let moved = self.retry("move the stored offset", || projector.sink.move_offset(partition, next, low))?;
            if moved && !self.source.rewind(partition, low) {
                break;
            }
        }
        Ok(())
    }

    /// Projects and commits one batch; returns the number of events applied. When an event
    /// fails, the events before it are still applied, then the failure is returned: the
    /// projection stops exactly at the event that caused it.
    fn apply(&mut self, events: &[Event]) -> Result<usize, Failure> {
        let started = Instant::now();
        let applied = self.apply_from(events, Origin::Topic);
        if let Ok(count) = &applied {
            let projector = self.projector;
            projector.metrics.batch_committed(&projector.deployment, *count, started.elapsed().as_secs_f64());
        }
        applied
    }

    /// Projects and commits `events` (read from the topic, or dead letters being re-driven).
    /// When one event fails, the events before it are applied; then a poison event from the
    /// topic is moved past, recorded in the dead letters in the same transaction, when the
    /// policy is `dead-letter` or an operator skipped it, and the rest goes on; any other
    /// failure stops the projection there. A re-driven event that fails again stays a dead
    /// letter, with its new error, and the rest goes on.
    fn apply_from(&mut self, events: &[Event], source: Origin) -> Result<usize, Failure> {
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
                (Failure::Event { .. }, Origin::Redrive) => Some(None),
                (Failure::Event { partition, offset, .. }, Origin::Topic) => {
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
    fn commit_prefix(&mut self, through: &[Event], source: Origin, last: Vec<Letter<'_>>) -> Result<usize, Failure> {
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
        let policy = self.retry("read the poison policy", || projector.control.poison_policy())?;
        if policy == Poison::DeadLetter {
            return Ok(Some(Reason::DeadLetter));
        }
        let skipped = self.retry("read the skips", || projector.sink.skip_noted(partition, offset))?;
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
        let held: Vec<i32> = self.source.held().into_iter().filter_map(|(p, stored)| stored.map(|_| p)).collect();
        if held.is_empty() {
            return None;
        }
        let topic = self.source.topic();
        let limit = self.projector.pipeline.max_batch_events as i64;
        let events = match self.projector.sink.redrives(topic, &held, limit) {
            Ok(events) if !events.is_empty() => events,
            Ok(_) => return None,
            Err(e) => {
                tracing::debug!(projection = %self.projector.deployment.name, error = %e, "Cannot look for dead letters to re-drive now.");
                return None;
            }
        };
        tracing::info!(projection = %self.projector.deployment.name, count = events.len(), "Re-driving dead letters through the current build.");
        // Re-driven events are not new events: they add nothing to the throughput report.
        Some(self.apply_from(&events, Origin::Redrive).map(|_| 0))
    }

    /// Narrows a batch the database refused for a value (see [`SinkError::caused_by_data`])
    /// down to the first event whose effects it refuses: a binary search over prefixes of the
    /// batch, each projected and written in a transaction that is rolled back.
    fn pin_refused(&self, events: &[Event], error: SinkError, source: Origin) -> (usize, Failure) {
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
            match self.projector.sink.probe(spec, &changes, state.writes(), &progress) {
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
        let mut waits = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut deadlines = Backoff::new(Duration::from_secs(2), Duration::from_secs(60));
        let mut timeouts = 0;
        loop {
            match self.project_once(events) {
                Err((_, Failure::Call { error: CallError::StateUnavailable(message), .. })) => {
                    self.wait_for_database("load state", &message, &mut waits).map_err(|f| (0, f))?;
                }
                // Every instance of the host's pool in use: the call waits for one to end.
                Err((_, Failure::Call { error: error @ CallError::Busy(_), range })) => {
                    let pause = waits.next();
                    tracing::warn!(projection = %self.projector.deployment.name, events = %range, error = %error, retry_in = ?pause, "No free plugin instance; the call waits.");
                    self.pause(pause).map_err(|f| (0, f))?;
                }
                // Past the wall-clock deadline but not out of fuel: the machine may be loaded;
                // the same call later, with backoff, before giving up.
                Err((_, Failure::Call { error: error @ CallError::Timeout(_), range }))
                    if timeouts < TIMEOUT_RETRIES =>
                {
                    timeouts += 1;
                    let pause = deadlines.next();
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
        let prefetched = self.retry("load state", || projector.sink.load_state(&keys)).map_err(|f| (0, f))?;
        let loader = {
            let sink = projector.sink.clone();
            Box::new(move |key: &str| {
                sink.load_one(key).map_err(|e| {
                    if e.is_transient() {
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
                let at = At { partition: event.partition, offset: event.offset };
                changes
                    .apply_at(spec, Some(at), &operations)
                    .map_err(|m| pinned(format!("invalid operations: {m}")))?;
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
        source: Origin,
        letters: &[Letter<'_>],
    ) -> Result<usize, Failure> {
        let projector = self.projector;
        let spec = projector.plugin.spec();
        let progress = self.progress_of(events, source);
        let committed =
            self.retry_commit(|| projector.sink.commit(spec, changes, state.writes(), &progress, letters))?;
        if !committed {
            self.source.fenced();
            return Ok(0);
        }
        if source == Origin::Redrive {
            return Ok(events.len());
        }
        let offsets: Vec<(i32, i64)> = progress.iter().map(|p| (p.partition, p.next)).collect();
        self.source.committed(&offsets);
        projector.status.events_applied.fetch_add(events.len() as u64, Ordering::Relaxed);
        projector.status.batches_committed.fetch_add(1, Ordering::Relaxed);
        Ok(events.len())
    }

    /// What a commit of `events` does to the offsets: moves them past events from the topic;
    /// only checks them (the partition is still this worker's) for re-driven events.
    fn progress_of(&self, events: &[Event], source: Origin) -> Vec<PartitionProgress> {
        match source {
            Origin::Topic => self.progress(events),
            Origin::Redrive => self.fence(events),
        }
    }

    /// The stored offsets of the partitions of `events`, unchanged: a commit with them fails
    /// as fenced when another consumer moved one.
    fn fence(&self, events: &[Event]) -> Vec<PartitionProgress> {
        let assigned = self.source.held();
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
        let assigned = self.source.held();
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

    /// Runs a sink call, retrying transient failures (with backoff, until shutdown) until it
    /// works or fails for good.
    fn retry<T>(&self, what: &str, mut call: impl FnMut() -> Result<T, SinkError>) -> Result<T, Failure> {
        let mut waits = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            match call() {
                Ok(value) => return Ok(value),
                Err(e) if e.is_transient() => self.wait_for_database(what, &e.to_string(), &mut waits)?,
                Err(e) => return Err(Failure::Sink(e)),
            }
        }
    }

    /// Commits, retrying transient failures; `Ok(false)` when fenced.
    fn retry_commit(&self, call: impl FnMut() -> Result<(), SinkError>) -> Result<bool, Failure> {
        match self.retry("commit batch", call) {
            Ok(()) => Ok(true),
            Err(Failure::Sink(SinkError::Fenced { partition })) => {
                let projector = self.projector;
                projector.metrics.error(&projector.deployment.name, "fenced");
                projector.status.fenced.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(projection = %projector.deployment.name, partition, "Batch fenced: another consumer advanced the partition; re-reading from the stored offsets.");
                Ok(false)
            }
            Err(failure) => Err(failure),
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

    fn wait_for_database(&self, what: &str, error: &str, waits: &mut Backoff) -> Result<(), Failure> {
        self.projector.metrics.error(&self.projector.deployment.name, "database");
        if self.projector.cancel.is_cancelled() {
            return Err(Failure::Cancelled);
        }
        let pause = waits.next();
        tracing::error!(projection = %self.projector.deployment.name, action = what, error = %error, retry_in = ?pause, "Database unavailable; the batch is kept and retried.");
        self.pause(pause)
    }
}

/// Exponential backoff: every wait twice the one before, up to a cap.
struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    fn new(first: Duration, cap: Duration) -> Self {
        Self { next: first, cap }
    }

    /// The wait before the next try.
    fn next(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.cap);
        wait
    }
}

/// The marks of re-driven `events` as applied by `sha256` (none for events from the topic).
fn redriven<'e>(events: &'e [Event], source: Origin, sha256: &'e str) -> Vec<Letter<'e>> {
    if source == Origin::Topic {
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
    fn backoff_doubles_up_to_its_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let waits: Vec<u128> = (0..5).map(|_| backoff.next().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
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

    /// Unit tests of the pipeline's own decisions against an in-memory source, sink, registry
    /// entry and plugin (fakes: the end-to-end tests in `tests/all` run the same paths against
    /// Kafka, PostgreSQL and real components).
    mod worker {
        use std::collections::VecDeque;
        use std::sync::atomic::AtomicU64;
        use std::sync::Mutex;

        use super::*;
        use crate::changeset::KeyPart;
        use crate::contract::{Collection, FieldType, Operation, ProjectionSpec, Upsert, Value};
        use crate::sink::State;
        use crate::source::Pull;

        /// Upserts one row per event, keyed `partition:offset`; an event whose value is `trap`
        /// fails the whole call it is in (deterministically), one whose value is `bad` fails alone.
        struct Plugin(Spec);

        impl Project for Plugin {
            fn spec(&self) -> &Spec {
                &self.0
            }

            fn handle(&self, events: &[Event], state: StateOverlay) -> Result<(EventResults, StateOverlay), CallError> {
                if events.iter().any(|e| e.value.as_deref() == Some(b"trap")) {
                    return Err(CallError::Trap { message: "unreachable executed".into() });
                }
                let results = events
                    .iter()
                    .map(|e| match e.value.as_deref() {
                        Some(b"bad") => Err("cannot parse the event".to_string()),
                        _ => Ok(vec![Operation::Upsert(Upsert {
                            collection: "seen".into(),
                            key: vec![Value::Text(format!("{}:{}", e.partition, e.offset))],
                            fields: vec![],
                        })]),
                    })
                    .collect();
                Ok((results, state))
            }

            fn rest(&self) -> Duration {
                Duration::ZERO
            }
        }

        /// A fenced store: the rows committed (by key, in commit order), the dead letters and
        /// the stored offsets; scripted failures for the next commits.
        #[derive(Default)]
        struct Store {
            offsets: Mutex<HashMap<i32, i64>>,
            rows: Mutex<Vec<String>>,
            letters: Mutex<Vec<(i32, i64)>>,
            failures: Mutex<VecDeque<SinkError>>,
            commits: AtomicU64,
            /// A row key the store refuses as a value (a constraint).
            refuses: Option<String>,
        }

        impl Store {
            fn check(&self, changes: &Changeset, progress: &[PartitionProgress]) -> Result<Vec<String>, SinkError> {
                let offsets = self.offsets.lock().unwrap();
                for p in progress {
                    if offsets.get(&p.partition).copied() != p.expected {
                        return Err(SinkError::Fenced { partition: p.partition });
                    }
                }
                let keys: Vec<String> = changes.tables()[0]
                    .keys()
                    .map(|key| match &key[0] {
                        KeyPart::Text(text) => text.clone(),
                        other => panic!("unexpected key {other:?}"),
                    })
                    .collect();
                if let Some(refused) = self.refuses.as_ref().filter(|r| keys.contains(r)) {
                    let message = format!("value of row {refused} violates a check constraint");
                    return Err(SinkError::Database { message, transient: false, by_data: true });
                }
                Ok(keys)
            }

            fn stored(&self) -> HashMap<i32, i64> {
                self.offsets.lock().unwrap().clone()
            }

            fn rows(&self) -> Vec<String> {
                self.rows.lock().unwrap().clone()
            }
        }

        impl Sink for Store {
            fn ensure_dead_letters(&self) -> Result<(), SinkError> {
                Ok(())
            }

            fn offsets(&self) -> Result<HashMap<i32, i64>, SinkError> {
                Ok(self.stored())
            }

            fn move_offset(&self, partition: i32, from: i64, to: i64) -> Result<bool, SinkError> {
                let mut offsets = self.offsets.lock().unwrap();
                let moved = offsets.get(&partition) == Some(&from);
                if moved {
                    offsets.insert(partition, to);
                }
                Ok(moved)
            }

            fn load_state(&self, keys: &[String]) -> Result<State, SinkError> {
                Ok(keys.iter().map(|k| (k.clone(), None)).collect())
            }

            fn load_one(&self, _: &str) -> Result<Option<Vec<u8>>, SinkError> {
                Ok(None)
            }

            fn commit(
                &self,
                _: &Spec,
                changes: &Changeset,
                _: &State,
                progress: &[PartitionProgress],
                letters: &[Letter<'_>],
            ) -> Result<(), SinkError> {
                self.commits.fetch_add(1, Ordering::Relaxed);
                if let Some(failure) = self.failures.lock().unwrap().pop_front() {
                    return Err(failure);
                }
                let keys = self.check(changes, progress)?;
                self.rows.lock().unwrap().extend(keys);
                for letter in letters {
                    if let Letter::Record { event, .. } = letter {
                        self.letters.lock().unwrap().push((event.partition, event.offset));
                    }
                }
                let mut offsets = self.offsets.lock().unwrap();
                for p in progress {
                    offsets.insert(p.partition, p.next);
                }
                Ok(())
            }

            fn probe(
                &self,
                _: &Spec,
                changes: &Changeset,
                _: &State,
                progress: &[PartitionProgress],
            ) -> Result<(), SinkError> {
                self.check(changes, progress).map(drop)
            }

            fn skip_noted(&self, _: i32, _: i64) -> Result<bool, SinkError> {
                Ok(false)
            }

            fn redrives(&self, _: &str, _: &[i32], _: i64) -> Result<Vec<Event>, SinkError> {
                Ok(Vec::new())
            }
        }

        /// Holds the partitions of the store; a fence re-reads their stored offsets.
        struct Held {
            store: Arc<Store>,
            held: HashMap<i32, Option<i64>>,
            fenced: usize,
        }

        impl Source for Held {
            fn topic(&self) -> &str {
                "order-events"
            }

            fn next_batch(&mut self) -> Pull {
                Pull::Events(Vec::new())
            }

            fn held(&self) -> HashMap<i32, Option<i64>> {
                self.held.clone()
            }

            fn committed(&mut self, offsets: &[(i32, i64)]) {
                for &(partition, next) in offsets {
                    self.held.insert(partition, Some(next));
                }
            }

            fn fenced(&mut self) {
                self.fenced += 1;
                let stored = self.store.stored();
                for (partition, next) in &mut self.held {
                    *next = stored.get(partition).copied();
                }
            }

            fn rewind(&mut self, partition: i32, offset: i64) -> bool {
                self.held.insert(partition, Some(offset));
                true
            }
        }

        struct Entry(Mutex<Poison>);

        impl Control for Entry {
            fn poison_policy(&self) -> Result<Poison, SinkError> {
                Ok(*self.0.lock().unwrap())
            }

            fn fail(&self, _: &str, _: Option<(i32, i64)>) -> anyhow::Result<()> {
                Ok(())
            }
        }

        fn spec() -> Spec {
            Spec::new(ProjectionSpec {
                name: "seen".into(),
                version: 1,
                description: String::new(),
                collections: vec![Collection {
                    name: "seen".into(),
                    fields: vec![crate::spec::tests::field("id", FieldType::Text)],
                    primary_key: vec!["id".into()],
                    sink: crate::contract::Sink::Postgres,
                    description: String::new(),
                }],
            })
            .unwrap()
        }

        fn projector(store: Arc<Store>, policy: Poison) -> Projector {
            let spec = spec();
            let deployment = Deployment {
                id: 1,
                name: "seen".into(),
                version: 1,
                build: 0,
                sha256: "00".into(),
                spec: spec.raw().clone(),
                schema: "proj_seen_v1".into(),
                consumer_group: "projector.seen.v1".into(),
                status: crate::registry::Status::Live,
                paused: false,
                on_poison: policy,
                serving: true,
                last_error: None,
                error_partition: None,
                error_offset: None,
                uploaded_by: None,
                created_at: chrono::Utc::now(),
                activated_at: None,
            };
            Projector {
                plugin: Arc::new(Plugin(spec)),
                deployment,
                sink: store,
                control: Arc::new(Entry(Mutex::new(policy))),
                kafka: KafkaConfig::default(),
                pipeline: PipelineConfig { events_per_call: 4, ..PipelineConfig::default() },
                cancel: CancellationToken::new(),
                status: Arc::new(ProjectionStatus::default()),
                metrics: Arc::new(crate::metrics::Metrics::new()),
            }
        }

        /// Events at offsets `from..to` of partition 0, with `values` at some offsets.
        fn events(from: i64, to: i64, values: &[(i64, &str)]) -> Vec<Event> {
            (from..to)
                .map(|offset| Event {
                    topic: "order-events".into(),
                    partition: 0,
                    offset,
                    key: Some(format!("ord-{offset}").into_bytes()),
                    value: Some(values.iter().find(|(o, _)| *o == offset).map_or("{}", |(_, v)| v).as_bytes().to_vec()),
                    headers: vec![],
                    timestamp_ms: Some(1_700_000_000_000 + offset),
                })
                .collect()
        }

        fn keys(offsets: impl IntoIterator<Item = i64>) -> Vec<String> {
            offsets.into_iter().map(|o| format!("0:{o}")).collect()
        }

        fn run<R>(store: &Arc<Store>, policy: Poison, then: impl FnOnce(&mut Worker<'_, Held>) -> R) -> (R, Held) {
            let projector = projector(store.clone(), policy);
            let held =
                Held { store: store.clone(), held: HashMap::from([(0, store.stored().get(&0).copied())]), fenced: 0 };
            let mut worker = Worker {
                projector: &projector,
                source: held,
                redrive_checked: Instant::now(),
                stalls: Stalls::default(),
            };
            let outcome = then(&mut worker);
            (outcome, worker.source)
        }

        #[test]
        fn a_failing_call_is_pinned_to_its_event_and_what_precedes_it_is_applied() {
            let store = Arc::new(Store::default());
            // Calls of 4 events: the trap is in the second call, 0..4 projects, 4..8 traps.
            let (outcome, source) = run(&store, Poison::Halt, |w| w.apply(&events(0, 10, &[(6, "trap")])));
            match outcome {
                Err(Failure::Event { partition: 0, offset: 6, message }) => {
                    assert!(message.contains("unreachable executed"), "{message}")
                }
                other => panic!("expected a failure pinned to offset 6, got {other:?}"),
            }
            assert_eq!(store.rows(), keys(0..6));
            assert_eq!(store.stored(), HashMap::from([(0, 6)]));
            assert_eq!(source.held, HashMap::from([(0, Some(6))]));
        }

        #[test]
        fn dead_letter_moves_past_the_poison_event_in_the_commit_and_the_rest_goes_on() {
            let store = Arc::new(Store::default());
            let (outcome, _) = run(&store, Poison::DeadLetter, |w| w.apply(&events(0, 10, &[(3, "bad")])));
            assert_eq!(outcome.unwrap(), 10);
            assert_eq!(store.rows(), keys((0..3).chain(4..10)));
            assert_eq!(*store.letters.lock().unwrap(), vec![(0, 3)]);
            assert_eq!(store.stored(), HashMap::from([(0, 10)]));
        }

        #[test]
        fn a_fenced_batch_changes_nothing_and_the_source_starts_over_from_the_stored_offsets() {
            let store = Arc::new(Store::default());
            store.offsets.lock().unwrap().insert(0, 0);
            let (outcome, source) = run(&store, Poison::Halt, |w| {
                // Another consumer applies 0..5 after this one read its position.
                store.offsets.lock().unwrap().insert(0, 5);
                let fenced = w.apply(&events(0, 10, &[])).unwrap();
                (fenced, w.apply(&events(5, 10, &[])).unwrap())
            });
            assert_eq!(outcome, (0, 5));
            assert_eq!(source.fenced, 1);
            assert_eq!(store.rows(), keys(5..10));
            assert_eq!(store.stored(), HashMap::from([(0, 10)]));
        }

        #[test]
        fn transient_sink_failures_are_retried_and_the_batch_applied_once() {
            let store = Arc::new(Store::default());
            for _ in 0..2 {
                let message = "connection reset by peer".to_string();
                store.failures.lock().unwrap().push_back(SinkError::Database {
                    message,
                    transient: true,
                    by_data: false,
                });
            }
            let (outcome, _) = run(&store, Poison::Halt, |w| w.apply(&events(0, 10, &[])));
            assert_eq!(outcome.unwrap(), 10);
            assert_eq!(store.commits.load(Ordering::Relaxed), 3);
            assert_eq!(store.rows(), keys(0..10));
            assert_eq!(store.stored(), HashMap::from([(0, 10)]));
        }

        #[test]
        fn a_row_the_store_refuses_is_narrowed_to_the_event_that_made_it() {
            let store = Arc::new(Store { refuses: Some("0:7".into()), ..Store::default() });
            let (outcome, _) = run(&store, Poison::Halt, |w| w.apply(&events(0, 10, &[])));
            match outcome {
                Err(Failure::Event { partition: 0, offset: 7, message }) => {
                    assert!(message.contains("refused") && message.contains("check constraint"), "{message}")
                }
                other => panic!("expected a failure pinned to offset 7, got {other:?}"),
            }
            assert_eq!(store.rows(), keys(0..7));
            assert_eq!(store.stored(), HashMap::from([(0, 7)]));
        }
    }
}
