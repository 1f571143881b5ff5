//! Prometheus metrics, served at `GET /metrics` on the admin listener.
//!
//! Counters and histograms count this instance's work; lag and state gauges are read from
//! shared state (PostgreSQL offsets, Kafka watermarks, the registry), so every instance reports
//! the same values for them.

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::progress::Progress;
use crate::registry::{Deployment, Status};

/// The host's metrics.
pub struct Metrics {
    registry: Registry,
    events_applied: IntCounterVec,
    batch_seconds: HistogramVec,
    plugin_seconds: HistogramVec,
    errors: IntCounterVec,
    lag: IntGaugeVec,
    state: IntGaugeVec,
    stalled: IntGaugeVec,
    recoveries: IntCounterVec,
}

const STATES: [&str; 5] = ["building", "live", "standby", "failed", "paused"];

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("projector".into()), None).expect("valid prefix");
        let deployment = ["projection", "version", "build"];
        let events_applied = IntCounterVec::new(
            Opts::new("events_applied_total", "Events applied to read models by this instance."),
            &deployment,
        )
        .expect("valid metric");
        let buckets = vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        let batch_seconds = HistogramVec::new(
            HistogramOpts::new("batch_seconds", "Time to project and commit one batch.").buckets(buckets.clone()),
            &["projection"],
        )
        .expect("valid metric");
        let plugin_seconds = HistogramVec::new(
            HistogramOpts::new("plugin_call_seconds", "Time of one plugin call, instantiation included.")
                .buckets(buckets),
            &["projection"],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new("errors_total", "Errors by kind: event, call, database, fenced."),
            &["projection", "kind"],
        )
        .expect("valid metric");
        let lag = IntGaugeVec::new(
            Opts::new("partition_lag", "Events in the partition not yet applied by the deployment."),
            &["projection", "version", "build", "partition"],
        )
        .expect("valid metric");
        let state = IntGaugeVec::new(
            Opts::new("deployment_state", "1 for the deployment's current state, 0 for the others."),
            &["projection", "version", "build", "state"],
        )
        .expect("valid metric");
        let stalled = IntGaugeVec::new(
            Opts::new(
                "consumer_stalled",
                "1 while this instance's consumer of the deployment holds no partitions, or receives nothing while events wait, past kafka.stall_timeout_ms.",
            ),
            &deployment,
        )
        .expect("valid metric");
        let recoveries = IntCounterVec::new(
            Opts::new("consumer_recoveries_total", "Stalled consumers replaced by a fresh one on this instance."),
            &deployment,
        )
        .expect("valid metric");
        for collector in [
            Box::new(events_applied.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(batch_seconds.clone()),
            Box::new(plugin_seconds.clone()),
            Box::new(errors.clone()),
            Box::new(lag.clone()),
            Box::new(state.clone()),
            Box::new(stalled.clone()),
            Box::new(recoveries.clone()),
        ] {
            registry.register(collector).expect("registered once");
        }
        Self { registry, events_applied, batch_seconds, plugin_seconds, errors, lag, state, stalled, recoveries }
    }

    /// A batch was committed.
    pub fn batch_committed(&self, d: &Deployment, events: usize, seconds: f64) {
        let (version, build) = (d.version.to_string(), d.build.to_string());
        self.events_applied.with_label_values(&[&d.name, &version, &build]).inc_by(events as u64);
        self.batch_seconds.with_label_values(&[&d.name]).observe(seconds);
    }

    /// This instance's consumer of `d` is stalled (`true`) or receiving again (`false`).
    pub fn stalled(&self, d: &Deployment, stalled: bool) {
        let (version, build) = (d.version.to_string(), d.build.to_string());
        self.stalled.with_label_values(&[&d.name, &version, &build]).set(i64::from(stalled));
    }

    /// A stalled consumer of `d` was replaced.
    pub fn recovered(&self, d: &Deployment) {
        let (version, build) = (d.version.to_string(), d.build.to_string());
        self.recoveries.with_label_values(&[&d.name, &version, &build]).inc();
    }

    /// A plugin call returned (or failed) after `seconds`.
    pub fn plugin_call(&self, projection: &str, seconds: f64) {
        self.plugin_seconds.with_label_values(&[projection]).observe(seconds);
    }

    /// An error of `kind` happened.
    pub fn error(&self, projection: &str, kind: &str) {
        self.errors.with_label_values(&[projection, kind]).inc();
    }

    /// Records a deployment's state and per-partition lag.
    pub fn observe_deployment(&self, d: &Deployment, progress: &Progress) {
        let (version, build) = (d.version.to_string(), d.build.to_string());
        for (partition, position) in &progress.partitions {
            self.lag.with_label_values(&[&d.name, &version, &build, &partition.to_string()]).set(position.lag);
        }
        let current = if d.paused && d.status != Status::Failed { "paused" } else { status_label(d.status) };
        for state in STATES {
            self.state.with_label_values(&[&d.name, &version, &build, state]).set(i64::from(state == current));
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer).expect("encodes");
        String::from_utf8(buffer).expect("UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn status_label(status: Status) -> &'static str {
    match status {
        Status::Building => "building",
        Status::Live => "live",
        Status::Standby => "standby",
        Status::Failed => "failed",
    }
}
