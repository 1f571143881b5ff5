//! The Kafka source: one consumer per projection version, in its own consumer group.
//!
//! Invariants:
//! - The authoritative position of a projection is the next offset per partition stored in
//!   PostgreSQL with its read model. On every assignment the consumer starts each partition
//!   there (or at the beginning when nothing is stored), never at Kafka's committed offset.
//!   Offsets committed to Kafka are informational, for lag tools.
//! - Every rebalance bumps a generation counter; a batch collected across a rebalance is
//!   discarded before it is applied (its events are re-read from the stored offsets).
//! - The rebalance callback runs on the thread that polls the consumer, so it never races
//!   with a batch being applied.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::config::KafkaConfig;

/// Reads the stored next offset of every partition that has one.
pub type OffsetLoader = Box<dyn Fn() -> anyhow::Result<HashMap<i32, i64>> + Send + Sync>;

/// The consumer type every projection uses.
pub type ProjectionConsumer = BaseConsumer<SeedingContext>;

/// Seeds assignments from stored offsets and tracks what is assigned.
pub struct SeedingContext {
    topic: String,
    /// The consumer group, for the log.
    group: String,
    load_offsets: OffsetLoader,
    cancel: CancellationToken,
    generation: AtomicU64,
    /// Assigned partitions and their stored next offset (`None`: nothing stored yet).
    assigned: Mutex<HashMap<i32, Option<i64>>>,
}

impl SeedingContext {
    /// A context for `topic`, in `group`, reading stored offsets with `load_offsets`.
    pub fn new(topic: &str, group: &str, load_offsets: OffsetLoader, cancel: CancellationToken) -> Self {
        Self {
            topic: topic.to_string(),
            group: group.to_string(),
            load_offsets,
            cancel,
            generation: AtomicU64::new(0),
            assigned: Mutex::new(HashMap::new()),
        }
    }

    /// Incremented on every assignment change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The assigned partitions with their stored next offsets.
    pub fn assigned(&self) -> HashMap<i32, Option<i64>> {
        self.assigned.lock().expect("not poisoned").clone()
    }

    /// Records that a batch committed: the partitions' stored offsets moved.
    pub fn committed(&self, offsets: &[(i32, i64)]) {
        let mut assigned = self.assigned.lock().expect("not poisoned");
        for &(partition, next) in offsets {
            if let Some(stored) = assigned.get_mut(&partition) {
                *stored = Some(next);
            }
        }
    }

    /// Re-reads the stored offsets and moves the consumer back to them (after a fenced
    /// commit: another consumer applied some of what this one fetched), by seeking each
    /// assigned partition; the assignment itself is left to the group protocol. A partition
    /// that cannot be moved is dropped from what this context accepts (its events are ignored
    /// until the next assignment), and `false` is returned: the caller should then replace the
    /// consumer. Either way the generation moves, so the pipeline restarts from what is stored.
    pub fn reseed(&self, consumer: &ProjectionConsumer) -> bool {
        let stored = self.stored_offsets();
        let mut assigned = self.assigned.lock().expect("not poisoned");
        let mut moved = true;
        assigned.retain(|&partition, next| {
            *next = stored.get(&partition).copied();
            let offset = next.map_or(Offset::Beginning, Offset::Offset);
            match consumer.seek(&self.topic, partition, offset, Duration::from_secs(10)) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(group = %self.group, topic = %self.topic, partition, error = %e, "Could not move back to the stored offset; ignoring the partition until it is assigned again.");
                    moved = false;
                    false
                }
            }
        });
        self.generation.fetch_add(1, Ordering::AcqRel);
        moved
    }

    fn stored_offsets(&self) -> HashMap<i32, i64> {
        let mut delay = Duration::from_millis(200);
        loop {
            match (self.load_offsets)() {
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

    fn seeded(&self, partitions: &[i32]) -> TopicPartitionList {
        let stored = if self.cancel.is_cancelled() { None } else { Some(self.stored_offsets()) };
        let mut tpl = TopicPartitionList::new();
        let mut assigned = HashMap::new();
        if let Some(stored) = stored {
            for &partition in partitions {
                let next = stored.get(&partition).copied();
                let offset = next.map_or(Offset::Beginning, Offset::Offset);
                tpl.add_partition_offset(&self.topic, partition, offset).expect("valid offset");
                assigned.insert(partition, next);
            }
        }
        *self.assigned.lock().expect("not poisoned") = assigned;
        self.generation.fetch_add(1, Ordering::AcqRel);
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
                self.assigned.lock().expect("not poisoned").clear();
                self.generation.fetch_add(1, Ordering::AcqRel);
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
