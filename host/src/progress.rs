//! How far each deployment is: stored next offsets against the partitions' high watermarks,
//! the rate it applies events at, and the time it needs to catch up.
//!
//! Every figure comes from shared state (offsets in PostgreSQL, watermarks in Kafka), so any
//! instance reports the same progress whichever instance does the work.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::PgPool;

use crate::registry::{Deployment, Registry};
use crate::sink::postgres::ddl::qualified;
pub use crate::source::kafka::Watermarks;

/// One partition's position.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct PartitionPosition {
    /// Stored next offset (0 when nothing is stored yet).
    pub stored_offset: i64,
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// Events not yet applied.
    pub lag: i64,
}

/// A deployment's position and pace.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Progress {
    /// Per partition.
    pub partitions: BTreeMap<i32, PartitionPosition>,
    /// Events applied (sum of stored next offsets).
    pub applied: i64,
    /// Events not yet applied.
    pub lag: i64,
    /// Events applied per second over the last seconds.
    pub events_per_second: f64,
    /// Estimated seconds to catch up at that rate, when it is moving.
    pub eta_seconds: Option<f64>,
}

/// The stored next offset of each partition of a deployment.
pub async fn stored_offsets(pool: &PgPool, schema: &str) -> Result<BTreeMap<i32, i64>, sqlx::Error> {
    let rows: Vec<(i32, i64)> =
        sqlx::query_as(&format!("SELECT partition, next_offset FROM {}", qualified(schema, "_offsets")))
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}

/// Combines stored offsets and watermarks.
pub fn position(stored: &BTreeMap<i32, i64>, marks: &BTreeMap<i32, i64>) -> Progress {
    let partitions: BTreeMap<i32, PartitionPosition> = marks
        .iter()
        .map(|(&p, &high)| {
            let stored_offset = stored.get(&p).copied().unwrap_or(0);
            (p, PartitionPosition { stored_offset, high_watermark: high, lag: (high - stored_offset).max(0) })
        })
        .collect();
    Progress {
        applied: stored.values().sum(),
        lag: partitions.values().map(|p| p.lag).sum(),
        partitions,
        ..Progress::default()
    }
}

/// Every deployment with its current position (no rate: a one-off reading).
pub async fn snapshot(
    registry: &Registry,
    pool: &PgPool,
    marks: &BTreeMap<i32, i64>,
) -> anyhow::Result<Vec<(Deployment, Progress)>> {
    let mut result = Vec::new();
    for deployment in registry.all().await? {
        let stored = stored_offsets(pool, &deployment.schema).await.unwrap_or_default();
        let progress = position(&stored, marks);
        result.push((deployment, progress));
    }
    Ok(result)
}

/// How many seconds of samples the rate is computed over.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Recent positions of every deployment, for rates and estimates; fed by the supervisor.
#[derive(Default)]
pub struct Board {
    tracked: Mutex<HashMap<i64, Tracked>>,
}

/// A deployment's last reading and its recent (time, applied) positions.
type Tracked = (Progress, VecDeque<(Instant, i64)>);

impl Board {
    /// Records a new reading of a deployment.
    pub fn record(&self, id: i64, mut progress: Progress) {
        let now = Instant::now();
        let mut tracked = self.tracked.lock().expect("not poisoned");
        let (current, samples) = tracked.entry(id).or_default();
        samples.push_back((now, progress.applied));
        while samples.front().is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW) {
            samples.pop_front();
        }
        if let (Some(&(t0, a0)), Some(&(t1, a1))) = (samples.front(), samples.back()) {
            let seconds = t1.duration_since(t0).as_secs_f64();
            if seconds > 0.0 {
                progress.events_per_second = ((a1 - a0) as f64 / seconds).max(0.0);
            }
        }
        if progress.events_per_second > 0.0 {
            progress.eta_seconds = Some(progress.lag as f64 / progress.events_per_second);
        }
        *current = progress;
    }

    /// The latest reading of a deployment.
    pub fn get(&self, id: i64) -> Option<Progress> {
        self.tracked.lock().expect("not poisoned").get(&id).map(|(p, _)| p.clone())
    }

    /// Forgets deployments that no longer exist.
    pub fn retain(&self, ids: &[i64]) {
        self.tracked.lock().expect("not poisoned").retain(|id, _| ids.contains(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_counts_lag_per_partition() {
        let stored = BTreeMap::from([(0, 10), (1, 5)]);
        let marks = BTreeMap::from([(0, 10), (1, 8), (2, 4)]);
        let progress = position(&stored, &marks);
        assert_eq!(progress.applied, 15);
        assert_eq!(progress.lag, 7);
        assert_eq!(progress.partitions[&2], PartitionPosition { stored_offset: 0, high_watermark: 4, lag: 4 });
    }

    #[test]
    fn board_computes_rate_and_eta() {
        let board = Board::default();
        let at = |applied, lag| Progress { applied, lag, ..Progress::default() };
        board.record(1, at(0, 100));
        std::thread::sleep(Duration::from_millis(100));
        board.record(1, at(50, 50));
        let progress = board.get(1).unwrap();
        assert!(progress.events_per_second > 100.0 && progress.events_per_second < 600.0, "{progress:?}");
        let eta = progress.eta_seconds.unwrap();
        assert!((eta - 50.0 / progress.events_per_second).abs() < 1e-9);
        board.retain(&[]);
        assert!(board.get(1).is_none());
    }
}
