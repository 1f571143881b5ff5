//! The Kafka source: one consumer per projection version, in its own consumer group.
//!
//! Invariants:
//! - The authoritative position of a projection is the next offset per partition stored in
//!   PostgreSQL with its read model. On every assignment the consumer starts each partition
//!   there (or at the beginning when nothing is stored), never at Kafka's committed offset.
//!   Offsets committed to Kafka are informational, for lag tools.
//! - Every rebalance bumps the generation of its [`Positions`]; a batch collected across a
//!   rebalance is discarded before it is applied (its events are re-read from the stored
//!   offsets). The bookkeeping is `source::positions`, unit-tested without Kafka.
//! - The rebalance callback runs on the thread that polls the consumer, so it never races
//!   with a batch being applied.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::positions::{Guard, Positions};
use super::stall::{Observation, StallDetector, Verdict};
use super::{Jump, Pull, Source};
use crate::config::{KafkaConfig, PipelineConfig};
use crate::contract::{Event, Header};
use crate::status::{ProjectionStatus, Stall};

/// The consumer type every projection uses.
pub type ProjectionConsumer = BaseConsumer<SeedingContext>;

/// Seeds assignments from stored offsets and keeps the [`Positions`] of what is assigned.
pub struct SeedingContext {
    topic: String,
    /// The consumer group, for the log.
    group: String,
    stored: StoredOffsets,
    cancel: CancellationToken,
    positions: Mutex<Positions>,
}

impl SeedingContext {
    /// A context for `topic`, in `group`, reading stored offsets with `stored`.
    pub fn new(topic: &str, group: &str, stored: StoredOffsets, cancel: CancellationToken) -> Self {
        Self {
            topic: topic.to_string(),
            group: group.to_string(),
            stored,
            cancel,
            positions: Mutex::new(Positions::default()),
        }
    }

    /// What is assigned, with the stored next offsets and the generation.
    pub fn positions(&self) -> MutexGuard<'_, Positions> {
        self.positions.lock().expect("not poisoned")
    }

    /// The assigned partitions with their stored next offsets.
    pub fn assigned(&self) -> HashMap<i32, Option<i64>> {
        self.positions().held().clone()
    }

    /// Re-reads the stored offsets and moves the consumer back to them (after a fenced
    /// commit: another consumer applied some of what this one fetched), by seeking each
    /// assigned partition; the assignment itself is left to the group protocol. A partition
    /// that cannot be moved is dropped from what this context accepts (its events are ignored
    /// until the next assignment), and `false` is returned: the caller should then replace the
    /// consumer. Either way the generation moves, so the pipeline restarts from what is stored.
    pub fn reseed(&self, consumer: &ProjectionConsumer) -> bool {
        let stored = self.stored_offsets();
        self.positions().reseed(&stored, |partition, next| {
            let offset = next.map_or(Offset::Beginning, Offset::Offset);
            match consumer.seek(&self.topic, partition, offset, Duration::from_secs(10)) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(group = %self.group, topic = %self.topic, partition, error = %e, "Could not move back to the stored offset; ignoring the partition until it is assigned again.");
                    false
                }
            }
        })
    }

    fn stored_offsets(&self) -> HashMap<i32, i64> {
        let mut delay = Duration::from_millis(200);
        loop {
            match (self.stored)() {
                Ok(offsets) => return offsets,
                Err(e) if self.cancel.is_cancelled() => {
                    tracing::warn!(error = %e, "Stored offsets unavailable during shutdown.");
                    return HashMap::new();
                }
                Err(e) => {
                    tracing::error!(group = %self.group, topic = %self.topic, error = %e, "Cannot read stored offsets; partitions stay idle until the database answers.");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The assignment of `partitions`, each at its stored offset; none while shutting down.
    fn seeded(&self, partitions: &[i32]) -> TopicPartitionList {
        let (partitions, stored) =
            if self.cancel.is_cancelled() { (&[][..], HashMap::new()) } else { (partitions, self.stored_offsets()) };
        let mut tpl = TopicPartitionList::new();
        for (partition, next) in self.positions().assign(partitions, &stored) {
            let offset = next.map_or(Offset::Beginning, Offset::Offset);
            tpl.add_partition_offset(&self.topic, partition, offset).expect("valid offset");
        }
        tpl
    }
}

impl ClientContext for SeedingContext {}

impl ConsumerContext for SeedingContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let partitions: Vec<i32> = tpl.elements_for_topic(&self.topic).iter().map(|e| e.partition()).collect();
                let seeded = self.seeded(&partitions);
                tracing::info!(group = %self.group, topic = %self.topic, partitions = ?partitions, "Partitions assigned; starting from stored offsets.");
                if let Err(e) = consumer.assign(&seeded) {
                    tracing::error!(group = %self.group, topic = %self.topic, error = %e, "Could not apply the assignment.");
                }
            }
            other => {
                if other != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                    tracing::warn!(group = %self.group, topic = %self.topic, error = ?other, "Rebalance error; dropping the assignment.");
                }
                self.positions().revoke();
                if let Err(e) = consumer.unassign() {
                    tracing::warn!(group = %self.group, topic = %self.topic, error = %e, "Could not drop the assignment.");
                }
            }
        }
    }
}

/// Common client properties from the configuration.
pub fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.brokers);
    for (key, value) in &config.properties {
        client.set(key, value);
    }
    client
}

/// A consumer in `group`, subscribed to the topic, seeding assignments through `context`.
pub fn subscribe(config: &KafkaConfig, group: &str, context: SeedingContext) -> KafkaResult<ProjectionConsumer> {
    let consumer: ProjectionConsumer = client_config(config)
        .set("group.id", group)
        .set("client.id", format!("projector-{group}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .set("heartbeat.interval.ms", config.heartbeat_interval_ms.to_string())
        .set("partition.assignment.strategy", "range")
        .create_with_context(context)?;
    consumer.subscribe(&[&config.topic])?;
    Ok(consumer)
}

/// A metadata client reading the topic's high watermarks.
pub struct Watermarks {
    consumer: BaseConsumer,
    topic: String,
}

impl Watermarks {
    /// A client for the configured topic (no group membership).
    pub fn new(config: &KafkaConfig) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = client_config(config).set("group.id", "projector-watermarks").create()?;
        Ok(Self { consumer, topic: config.topic.clone() })
    }

    /// The high watermark of every partition (blocking).
    pub fn fetch(&self) -> anyhow::Result<BTreeMap<i32, i64>> {
        Ok(self.ranges()?.into_iter().map(|(partition, (_, high))| (partition, high)).collect())
    }

    /// The low and high watermark of every partition (blocking).
    pub fn ranges(&self) -> anyhow::Result<BTreeMap<i32, (i64, i64)>> {
        let timeout = Duration::from_secs(10);
        let metadata = self.consumer.fetch_metadata(Some(&self.topic), timeout)?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.topic)
            .ok_or_else(|| anyhow::anyhow!("topic {} not found", self.topic))?;
        if let Some(error) = topic.error() {
            anyhow::bail!("topic {}: {:?}", self.topic, error);
        }
        let mut marks = BTreeMap::new();
        for partition in topic.partitions() {
            let range = self.consumer.fetch_watermarks(&self.topic, partition.id(), timeout)?;
            marks.insert(partition.id(), range);
        }
        Ok(marks)
    }
}

/// Reads a deployment's stored next offsets (from its sink), shared by every consumer the
/// source creates.
pub type StoredOffsets = Arc<dyn Fn() -> anyhow::Result<HashMap<i32, i64>> + Send + Sync>;

/// Who a [`KafkaSource`] reads for, for its consumer group and its log lines.
#[derive(Debug, Clone)]
pub struct Reader {
    /// The projection's name.
    pub projection: String,
    /// The deployment's registry id.
    pub id: i64,
    /// Declared version.
    pub version: u32,
    /// Build of the version.
    pub build: u32,
    /// The deployment's consumer group.
    pub group: String,
}

/// One deployment's [`Source`]: a consumer in the deployment's group whose assignments start
/// at the stored offsets, watched for stalls (see [`crate::source::stall`]) and replaced by a
/// fresh one when it stalls.
pub struct KafkaSource {
    config: KafkaConfig,
    batches: PipelineConfig,
    reader: Reader,
    offsets: StoredOffsets,
    cancel: CancellationToken,
    status: Arc<ProjectionStatus>,
    consumer: ProjectionConsumer,
    /// The next offset accepted per partition, as of one assignment generation. Kept across
    /// batches: a reseed after a fenced commit changes the generation between two batches.
    guard: Guard,
    /// Watches for a consumer that silently stopped receiving.
    stall: StallDetector,
    /// The thread closing the consumer replaced last, while it runs.
    closing: Option<JoinHandle<()>>,
    /// The client reading the partitions' watermarks for the stall detector.
    watermarks: Option<Watermarks>,
}

impl KafkaSource {
    /// Joins the deployment's group; batches are cut by `batches`.
    pub fn new(
        config: &KafkaConfig,
        batches: &PipelineConfig,
        reader: Reader,
        offsets: StoredOffsets,
        cancel: CancellationToken,
        status: Arc<ProjectionStatus>,
    ) -> KafkaResult<Self> {
        let consumer = Self::consumer(config, &reader, &offsets, &cancel)?;
        let guard = Guard::new(&consumer.context().positions());
        Ok(Self {
            stall: StallDetector::new(config.stall_timeout(), Instant::now()),
            config: config.clone(),
            batches: batches.clone(),
            reader,
            offsets,
            cancel,
            status,
            consumer,
            guard,
            closing: None,
            watermarks: None,
        })
    }

    fn consumer(
        config: &KafkaConfig,
        reader: &Reader,
        offsets: &StoredOffsets,
        cancel: &CancellationToken,
    ) -> KafkaResult<ProjectionConsumer> {
        let context = SeedingContext::new(&config.topic, &reader.group, offsets.clone(), cancel.clone());
        subscribe(config, &reader.group, context)
    }

    /// The stored offsets outside the log, of what is assigned now. Reading the log's offsets
    /// is tried for a few seconds; when the broker does not answer, the jumps of this
    /// assignment go unchecked (a warning says so).
    fn jumps(&mut self) -> Vec<Jump> {
        let stored: Vec<(i32, i64)> =
            self.consumer.context().assigned().into_iter().filter_map(|(p, next)| Some((p, next?))).collect();
        if stored.is_empty() {
            return Vec::new();
        }
        let mut tries = 0;
        let ranges = loop {
            match self.ranges() {
                Ok(ranges) => break ranges,
                Err(e) if tries < 5 && !self.cancel.is_cancelled() => {
                    tracing::debug!(projection = %self.reader.projection, error = %e, "Cannot read the log's offsets yet.");
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => {
                    tracing::warn!(projection = %self.reader.projection, error = %e, "Cannot read the log's offsets; offset jumps of this assignment go unchecked.");
                    return Vec::new();
                }
            }
        };
        stored
            .into_iter()
            .filter_map(|(partition, stored)| {
                let &(low, high) = ranges.get(&partition)?;
                (stored < low || stored > high).then_some(Jump { partition, stored, low, high })
            })
            .collect()
    }

    /// The consumer delivered an event: it is not stalled.
    fn receiving(&mut self) {
        self.stall.received(Instant::now());
        if self.status.stalled.swap(false, Ordering::AcqRel) {
            tracing::info!(projection = %self.reader.projection, "Consumer receives events again.");
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
                tracing::debug!(projection = %self.reader.projection, error = %e, "Cannot check for a stall now.");
                self.stall.unobserved(now);
                return;
            }
        };
        match self.stall.judge(now, &seen) {
            Verdict::Stalled(reason) => self.recover(reason),
            // Nothing waits for this consumer any more.
            Verdict::Idle if self.status.stalled.load(Ordering::Acquire) => self.receiving(),
            Verdict::Idle | Verdict::Watching => {}
        }
    }

    /// The low and high watermark of every partition, from the source's own client (see
    /// [`KafkaSource::observe`]); a client that failed is replaced on the next call.
    fn ranges(&mut self) -> anyhow::Result<BTreeMap<i32, (i64, i64)>> {
        if self.watermarks.is_none() {
            self.watermarks = Some(Watermarks::new(&self.config)?);
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
        let watermarks = self.ranges()?;
        let stored = (self.offsets)()?;
        let mut assigned: Vec<i32> = self.consumer.context().assigned().into_keys().collect();
        assigned.sort_unstable();
        let positions = self
            .consumer
            .position()?
            .elements_for_topic(&self.config.topic)
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(next) => Some((e.partition(), next)),
                _ => None,
            })
            .collect();
        Ok(Observation { assigned, stored: stored.into_iter().collect(), watermarks, positions })
    }

    /// Replaces a stalled consumer. The old one is closed on a thread of its own (closing may
    /// wait on a coordinator that does not answer); the new one joins the group and starts
    /// every partition it is assigned at the stored offset, so nothing is lost or repeated.
    fn recover(&mut self, reason: String) {
        let r = &self.reader;
        tracing::warn!(projection = %r.projection, version = r.version, build = r.build, group = %r.group, reason = %reason, "Consumer stalled; replacing it with a fresh consumer that resumes from the stored offsets.");
        let status = &self.status;
        status.stalled.store(true, Ordering::Release);
        status.stalls.fetch_add(1, Ordering::Relaxed);
        *status.last_stall.lock().expect("not poisoned") = Some(Stall { at: chrono::Utc::now(), reason });
        if self.replace_consumer() {
            self.status.recoveries.fetch_add(1, Ordering::Relaxed);
        }
        self.stall.received(Instant::now());
    }

    /// Replaces the consumer with a fresh one in the same group, whose assignments start at the
    /// stored offsets. Returns whether it was replaced (else the old one is kept and a later
    /// check tries again).
    fn replace_consumer(&mut self) -> bool {
        let r = &self.reader;
        if self.closing.as_ref().is_some_and(|t| !t.is_finished()) {
            // Closing waits for the coordinator: while the last one is still closing, another
            // fresh consumer would only add a member waiting on the same coordinator.
            tracing::warn!(projection = %r.projection, "The consumer replaced last is still closing; keeping the current one for now.");
            return false;
        }
        match Self::consumer(&self.config, r, &self.offsets, &self.cancel) {
            Ok(fresh) => {
                let old = std::mem::replace(&mut self.consumer, fresh);
                // Closing may wait on a coordinator that does not answer: not on this thread.
                match std::thread::Builder::new().name(format!("close-{}", r.id)).spawn(move || drop(old)) {
                    Ok(thread) => self.closing = Some(thread),
                    Err(e) => {
                        tracing::error!(projection = %r.projection, error = %e, "Cannot start a thread to close the old consumer; it was closed here.")
                    }
                }
                self.guard = Guard::new(&self.consumer.context().positions());
                true
            }
            Err(e) => {
                tracing::error!(projection = %r.projection, error = %e, "Cannot create a fresh consumer; retrying at the next check.");
                false
            }
        }
    }
}

impl Source for KafkaSource {
    fn topic(&self) -> &str {
        &self.config.topic
    }

    /// Polls until the batch is full, or its first event has waited long enough.
    fn next_batch(&mut self) -> Pull {
        let mut batch: Vec<Event> = Vec::new();
        let mut bytes = 0;
        let mut first_at: Option<Instant> = None;
        loop {
            if self.cancel.is_cancelled() {
                return Pull::Events(Vec::new());
            }
            let wait = match first_at {
                None => Duration::from_millis(100),
                Some(t) => self.batches.max_batch_wait().saturating_sub(t.elapsed()),
            };
            // Converted at once (a batch keeps it anyway), so the consumer is free for a check below.
            let polled = self.consumer.poll(wait).map(|result| result.map(|m| to_event(&m)));
            let changed = self.guard.changed(&self.consumer.context().positions());
            if changed {
                // The assignment changed (a rebalance, or a reseed after a fenced commit):
                // drop what was collected and restart from the stored offsets of what is
                // assigned now.
                self.stall.received(Instant::now());
                batch.clear();
                bytes = 0;
                first_at = None;
                let jumps = self.jumps();
                if !jumps.is_empty() {
                    return Pull::Jumped(jumps);
                }
            }
            match polled {
                Some(Ok(event)) => {
                    if !self.guard.accept(event.partition, event.offset) {
                        continue;
                    }
                    bytes += event.key.as_ref().map_or(0, Vec::len) + event.value.as_ref().map_or(0, Vec::len);
                    batch.push(event);
                    first_at.get_or_insert_with(Instant::now);
                    self.receiving();
                }
                Some(Err(e)) => {
                    tracing::warn!(projection = %self.reader.projection, error = %e, "Kafka consumer error.");
                }
                None if first_at.is_none() => {
                    self.watch();
                    return Pull::Events(batch);
                }
                None => {}
            }
            let full = batch.len() >= self.batches.max_batch_events || bytes >= self.batches.max_batch_bytes;
            if full || first_at.is_some_and(|t| t.elapsed() >= self.batches.max_batch_wait()) {
                return Pull::Events(batch);
            }
        }
    }

    fn held(&self) -> HashMap<i32, Option<i64>> {
        self.consumer.context().assigned()
    }

    /// Records the new stored offsets and tells Kafka, asynchronously, so lag tools see them.
    fn committed(&mut self, offsets: &[(i32, i64)]) {
        self.consumer.context().positions().committed(offsets);
        let mut tpl = TopicPartitionList::new();
        for &(partition, next) in offsets {
            let _ = tpl.add_partition_offset(&self.config.topic, partition, Offset::Offset(next));
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "Kafka offset commit failed (informational only).");
        }
    }

    fn fenced(&mut self) {
        if !self.consumer.context().reseed(&self.consumer) {
            self.replace_consumer();
        }
    }

    fn rewind(&mut self, partition: i32, offset: i64) -> bool {
        self.consumer.context().positions().committed(&[(partition, offset)]);
        self.guard.rewind(partition, offset);
        let topic = &self.config.topic;
        if let Err(e) = self.consumer.seek(topic, partition, Offset::Offset(offset), Duration::from_secs(10)) {
            tracing::warn!(projection = %self.reader.projection, partition, error = %e, "Could not move to the log start; replacing the consumer.");
            self.replace_consumer();
            return false;
        }
        true
    }
}

/// The host's form of a record.
fn to_event(message: &BorrowedMessage<'_>) -> Event {
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
