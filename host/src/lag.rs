//! How far each live projection is behind the topic: stored next offsets against the
//! partitions' high watermarks.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use sqlx::Row;

use crate::config::KafkaConfig;
use crate::sink::postgres::ddl::qualified;
use crate::sink::postgres::Database;
use crate::source::kafka::client_config;

/// The position of one live projection.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionLag {
    /// Projection name.
    pub name: String,
    /// Live version.
    pub version: i32,
    /// Status in the registry (`live`, `failed`).
    pub status: String,
    /// Last error, for a failed projection.
    pub last_error: Option<String>,
    /// Per partition: stored next offset (0 when none) and high watermark.
    pub partitions: BTreeMap<i32, (i64, i64)>,
}

impl ProjectionLag {
    /// Events applied: the sum of stored next offsets.
    pub fn applied(&self) -> i64 {
        self.partitions.values().map(|(next, _)| next).sum()
    }

    /// Events not yet applied.
    pub fn lag(&self) -> i64 {
        self.partitions
            .values()
            .map(|(next, high)| (high - next).max(0))
            .sum()
    }
}

/// The high watermark of every partition of the topic.
pub fn high_watermarks(config: &KafkaConfig) -> anyhow::Result<BTreeMap<i32, i64>> {
    let consumer: BaseConsumer = client_config(config)
        .set("group.id", "projector-lag")
        .create()?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(&config.topic), timeout)?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == config.topic)
        .ok_or_else(|| anyhow::anyhow!("topic {} not found", config.topic))?;
    if let Some(error) = topic.error() {
        anyhow::bail!("topic {}: {:?}", config.topic, error);
    }
    let mut marks = BTreeMap::new();
    for partition in topic.partitions() {
        let (_, high) = consumer.fetch_watermarks(&config.topic, partition.id(), timeout)?;
        marks.insert(partition.id(), high);
    }
    Ok(marks)
}

/// The lag of every live projection.
pub async fn lag(database: &Database, kafka: &KafkaConfig) -> anyhow::Result<Vec<ProjectionLag>> {
    let config = kafka.clone();
    let marks = tokio::task::spawn_blocking(move || high_watermarks(&config)).await??;
    let rows = sqlx::query(
        "SELECT p.name, p.live_version, v.schema_name, v.status, v.last_error FROM projector.projections p \
         JOIN projector.projection_versions v ON v.name = p.name AND v.version = p.live_version ORDER BY p.name",
    )
    .fetch_all(database.pool())
    .await?;
    let mut result = Vec::new();
    for row in rows {
        let schema: String = row.get(2);
        let stored: Vec<(i32, i64)> = sqlx::query_as(&format!(
            "SELECT partition, next_offset FROM {}",
            qualified(&schema, "_offsets")
        ))
        .fetch_all(database.pool())
        .await?;
        let stored: BTreeMap<i32, i64> = stored.into_iter().collect();
        let partitions = marks
            .iter()
            .map(|(&p, &high)| (p, (stored.get(&p).copied().unwrap_or(0), high)))
            .collect();
        result.push(ProjectionLag {
            name: row.get(0),
            version: row.get(1),
            status: row.get(3),
            last_error: row.get(4),
            partitions,
        });
    }
    Ok(result)
}
