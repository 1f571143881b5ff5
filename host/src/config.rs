//! Host configuration: one TOML file, overridable field by field from the environment.
//!
//! Every field has a default, so an empty file is a valid configuration for a local setup.
//! Unknown fields are rejected, and cross-field rules are checked by [`Config::load`] before
//! anything starts. Environment variables override the file: `PROJECTOR_<SECTION>__<FIELD>`,
//! for example `PROJECTOR_POSTGRES__URL` or `PROJECTOR_KAFKA__BROKERS`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The whole host configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where events come from.
    pub kafka: KafkaConfig,
    /// Where read models, per-key state and offsets are stored.
    pub postgres: PostgresConfig,
    /// Which projection plugins to run and the sandbox every call runs in.
    pub plugins: PluginsConfig,
    /// How events are grouped into batches.
    pub pipeline: PipelineConfig,
    /// The admin API, hot-loading and blue/green promotion.
    pub admin: AdminConfig,
    /// The query API: order search and read-model reads.
    pub query: QueryConfig,
    /// The search-engine sink (Elasticsearch, or OpenSearch through the same REST API).
    pub elasticsearch: ElasticsearchConfig,
}

/// The Kafka source.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port`.
    pub brokers: String,
    /// Topic holding the order events.
    pub topic: String,
    /// Prefix of each projection's consumer group: the group is
    /// `<group_prefix>.<projection name>.v<version>`.
    pub group_prefix: String,
    /// Consumer session timeout in milliseconds: how long the group waits for a silent
    /// member before reassigning its partitions.
    pub session_timeout_ms: u32,
    /// Consumer heartbeat interval in milliseconds; must be below the session timeout.
    pub heartbeat_interval_ms: u32,
    /// How long a projection's consumer may hold no partitions, or receive nothing while its
    /// partitions have events waiting, before it counts as stalled (logged, shown as `stalled`
    /// in the status and metrics) and is replaced by a fresh consumer, in milliseconds.
    pub stall_timeout_ms: u64,
    /// What a projection does when a partition's stored offset is no longer in the log (retention
    /// deleted events it had not applied, or the topic was recreated): `halt` (stop there, the
    /// status naming the partition, the offset and the events lost) or `accept` (record the jump,
    /// count it, and go on from the start of what the log holds).
    pub on_offset_jump: OffsetJump,
    /// Extra librdkafka client properties, passed through as given
    /// (for example `"security.protocol" = "SSL"`).
    pub properties: BTreeMap<String, String>,
}

/// See [`KafkaConfig::on_offset_jump`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetJump {
    /// Stop the projection at the partition whose offsets jumped.
    Halt,
    /// Record the jump and go on from the start of what the log holds.
    Accept,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            topic: "order-events".into(),
            group_prefix: "projector".into(),
            session_timeout_ms: 6_000,
            heartbeat_interval_ms: 500,
            stall_timeout_ms: 30_000,
            on_offset_jump: OffsetJump::Halt,
            properties: BTreeMap::new(),
        }
    }
}

/// The PostgreSQL sink.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Connection URL, e.g. `postgres://projector:secret@127.0.0.1:5432/projector`.
    pub url: String,
    /// Largest number of pooled connections.
    pub max_connections: u32,
    /// PostgreSQL's `idle_in_transaction_session_timeout` for the host's connections, in
    /// milliseconds (0: none). A host frozen in the middle of a batch's transaction (a long GC
    /// pause, SIGSTOP, a VM migration) then loses that transaction and its row locks, so the
    /// instance that took over its partitions is not blocked behind it.
    pub idle_in_transaction_timeout_ms: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/projector".into(),
            max_connections: 10,
            idle_in_transaction_timeout_ms: 10_000,
        }
    }
}

/// Default `plugins.fuel_per_event`: 10 times what an event of the example projection costs in
/// JavaScript, 20 times in Python, 470 times in Rust (docs/BENCHMARKS.md, "Fuel vs epoch
/// interruption").
pub const DEFAULT_FUEL_PER_EVENT: u64 = 20_000_000;
/// Smallest `plugins.fuel_per_event`: about what one event of the example projection costs in
/// Python.
pub const MIN_FUEL_PER_EVENT: u64 = 1_000_000;
/// Largest `plugins.fuel_per_event`: a call of 500 events may then run for minutes.
pub const MAX_FUEL_PER_EVENT: u64 = 100_000_000_000;

/// Projection plugins and their sandbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Directory scanned at start for `*.wasm` projection components.
    pub dir: PathBuf,
    /// Directory for compiled plugin artifacts, so a restart does not recompile.
    pub cache_dir: PathBuf,
    /// Longest time one plugin call (one chunk of a batch) may run, in milliseconds: a
    /// wall-clock backstop behind the fuel budget, which must run out first (checked).
    pub call_timeout_ms: u64,
    /// Largest linear memory one plugin instance may grow to, in MiB.
    pub max_memory_mib: u64,
    /// Fuel (about one unit per WebAssembly instruction) each event adds to its call's budget:
    /// the deterministic bound on a plugin's CPU time. A call of `n` events may spend
    /// `n * fuel_per_event` plus a fixed allowance for instantiation.
    pub fuel_per_event: u64,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: "plugins".into(),
            cache_dir: ".projector/cache".into(),
            call_timeout_ms: 30_000,
            max_memory_mib: 256,
            fuel_per_event: DEFAULT_FUEL_PER_EVENT,
        }
    }
}

/// Batching of events through a projection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Most events in one batch: one database transaction.
    pub max_batch_events: usize,
    /// Longest time to wait for a batch to fill before applying it, in milliseconds.
    pub max_batch_wait_ms: u64,
    /// Most events handed to the plugin in one call; a batch may take several calls.
    pub events_per_call: usize,
    /// Most bytes (keys, values and headers) handed to the plugin in one call; an event larger
    /// than this goes alone.
    pub bytes_per_call: usize,
    /// Most bytes in one batch; the batch ends at the event that reaches it.
    pub max_batch_bytes: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            max_batch_events: 2_000,
            max_batch_wait_ms: 100,
            events_per_call: 500,
            bytes_per_call: 4 << 20,
            max_batch_bytes: 64 << 20,
        }
    }
}

/// The admin API (also serving `/metrics`) and the control loop behind it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address the admin API listens on.
    pub listen: std::net::SocketAddr,
    /// Bearer tokens, each with a name (recorded as the uploader) and whether it may only read.
    /// With no token configured every admin request is refused.
    pub tokens: Vec<TokenConfig>,
    /// Largest component upload, in MiB; enforced while the body streams in. Components that
    /// embed a language runtime are large: Python (componentize-py) about 18 MiB, JavaScript
    /// (componentize-js) about 12 MiB.
    pub max_upload_mib: u64,
    /// Longest time validating an upload may take (compiling it included), in milliseconds.
    pub compile_timeout_ms: u64,
    /// A building deployment goes live once its lag is at most this many events.
    pub promote_max_lag: i64,
    /// How often each instance reconciles with the registry, in milliseconds (registry
    /// changes also wake it at once through PostgreSQL notifications).
    pub reconcile_interval_ms: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".parse().expect("valid address"),
            tokens: Vec::new(),
            max_upload_mib: 64,
            compile_timeout_ms: 30_000,
            promote_max_lag: 0,
            reconcile_interval_ms: 1_000,
        }
    }
}

/// The search-engine sink: Elasticsearch 8 or later, or OpenSearch 2 (the same REST API for
/// everything the host uses). Disabled while `urls` is empty: a collection declared with the
/// `elasticsearch` sink is then refused when it is deployed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticsearchConfig {
    /// Node URLs, e.g. `["https://es1:9200", "https://es2:9200"]`; requests go round robin.
    pub urls: Vec<String>,
    /// User name for basic authentication (with `password`).
    pub username: Option<String>,
    /// Password for basic authentication.
    pub password: Option<String>,
    /// An API key, as the base64 `id:key` Elasticsearch prints (instead of a user name).
    pub api_key: Option<String>,
    /// PEM file of the certificate authority that signed the nodes' certificates, for `https`
    /// URLs with a private CA (the system's roots otherwise).
    pub ca_cert: Option<PathBuf>,
    /// Longest time one request may take, in milliseconds.
    pub timeout_ms: u64,
    /// Prefix of every index and alias the host creates: a collection's public alias is
    /// `<prefix><collection>`, each deployment's index `<prefix><collection>-<deployment>`.
    pub index_prefix: String,
    /// Primary shards of each index.
    pub shards: u32,
    /// Replicas of each shard (0 for one node).
    pub replicas: u32,
    /// How often new writes become visible to searches (Elasticsearch's `refresh_interval`),
    /// in milliseconds.
    pub refresh_interval_ms: u64,
    /// Most actions in one `_bulk` request; a batch larger than this takes several.
    pub max_bulk_actions: usize,
    /// Most bytes in one `_bulk` request body.
    pub max_bulk_bytes: usize,
    /// Attempts at the items of a `_bulk` request the engine answered with 429 or 5xx, with
    /// exponential backoff and jitter, before the batch fails as transient (and is retried
    /// whole, idempotently).
    pub max_item_attempts: u32,
    /// Collections put on the search engine whatever sink their plugin declares: the switch
    /// that moves `order_search` off PostgreSQL without rebuilding the plugin. Applied when a
    /// deployment is created; a deployment keeps the sinks it was created with.
    pub collections: Vec<String>,
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            username: None,
            password: None,
            api_key: None,
            ca_cert: None,
            timeout_ms: 30_000,
            index_prefix: "projector-".into(),
            shards: 1,
            replicas: 0,
            refresh_interval_ms: 1_000,
            max_bulk_actions: 2_000,
            max_bulk_bytes: 8 << 20,
            max_item_attempts: 8,
            collections: Vec::new(),
        }
    }
}

impl ElasticsearchConfig {
    /// Whether a search engine is configured.
    pub fn enabled(&self) -> bool {
        !self.urls.is_empty()
    }
}

/// The query API (public reads; `POST /events` needs an admin token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Address the query API listens on.
    pub listen: std::net::SocketAddr,
    /// Page size when a request gives none.
    pub default_limit: usize,
    /// Largest page size a request may ask for.
    pub max_limit: usize,
    /// Longest `wait_ms` a read may wait for its `after` offsets, in milliseconds.
    pub max_wait_ms: u64,
    /// Answers are flagged `stale` when the projection's lag is over this many events.
    pub stale_lag: i64,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            default_limit: 20,
            max_limit: 100,
            max_wait_ms: 30_000,
            stale_lag: 1_000,
        }
    }
}

/// One admin API token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it, e.g. `ci` or `alice`; recorded as the uploader of components.
    pub name: String,
    /// The secret the client sends as `Authorization: Bearer <token>` (16 characters or more).
    pub token: String,
    /// A read-only token may list and inspect, and gets 403 on every change.
    #[serde(default)]
    pub read_only: bool,
}

/// A configuration that cannot be used, with the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable could not be parsed.
    #[error("invalid configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    /// A value is out of range or contradicts another.
    #[error("invalid configuration: {field}: {message}")]
    Invalid { field: &'static str, message: String },
}

impl Config {
    /// Loads the defaults, then the TOML file if given, then `PROJECTOR_*` environment
    /// variables, and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = path {
            if !path.exists() {
                return Err(ConfigError::Invalid {
                    field: "--config",
                    message: format!("file {} does not exist", path.display()),
                });
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(overrides());
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML document (no environment), for tests and tools.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: &str| Err(ConfigError::Invalid { field, message: message.to_string() });
        if self.kafka.brokers.trim().is_empty() {
            return invalid("kafka.brokers", "must name at least one broker");
        }
        if self.kafka.topic.trim().is_empty() {
            return invalid("kafka.topic", "must not be empty");
        }
        if self.kafka.heartbeat_interval_ms >= self.kafka.session_timeout_ms {
            return invalid("kafka.heartbeat_interval_ms", "must be below kafka.session_timeout_ms");
        }
        if self.kafka.stall_timeout_ms < 1_000 {
            return invalid("kafka.stall_timeout_ms", "must be at least 1000");
        }
        let es = &self.elasticsearch;
        if es.username.is_some() != es.password.is_some() {
            return invalid("elasticsearch.username", "username and password go together");
        }
        if es.username.is_some() && es.api_key.is_some() {
            return invalid("elasticsearch.api_key", "give either an API key or a username and password");
        }
        if let Some(bad) = es.urls.iter().find(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
            return invalid("elasticsearch.urls", &format!("`{bad}` is not an http:// or https:// URL"));
        }
        if !es.collections.is_empty() && !es.enabled() {
            return invalid("elasticsearch.collections", "needs elasticsearch.urls");
        }
        let prefix_ok =
            es.index_prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
                && !es.index_prefix.starts_with(['-', '_', '.']);
        if !prefix_ok || es.index_prefix.len() > 100 {
            return invalid(
                "elasticsearch.index_prefix",
                "lowercase ASCII letters, digits, `-`, `_` and `.`, not starting with `-`, `_` or `.`, at most 100",
            );
        }
        if es.max_bulk_actions == 0 || es.max_bulk_bytes < 1 << 16 || es.max_item_attempts == 0 {
            return invalid(
                "elasticsearch.max_bulk_actions",
                "bulk requests need at least one action, 64 KiB and one attempt",
            );
        }
        if es.timeout_ms < 100 {
            return invalid("elasticsearch.timeout_ms", "must be at least 100");
        }
        if self.postgres.max_connections < 2 {
            return invalid("postgres.max_connections", "must be at least 2");
        }
        if self.plugins.call_timeout_ms < 10 {
            return invalid("plugins.call_timeout_ms", "must be at least 10");
        }
        if !(MIN_FUEL_PER_EVENT..=MAX_FUEL_PER_EVENT).contains(&self.plugins.fuel_per_event) {
            return invalid(
                "plugins.fuel_per_event",
                &format!("must be between {MIN_FUEL_PER_EVENT} and {MAX_FUEL_PER_EVENT}"),
            );
        }
        let full_call = crate::runtime::CALL_FUEL
            .saturating_add(self.plugins.fuel_per_event.saturating_mul(self.pipeline.events_per_call as u64));
        let needed_ms = full_call / (crate::runtime::SLOW_FUEL_PER_SECOND / 1_000);
        if self.plugins.call_timeout_ms < needed_ms {
            return invalid(
                "plugins.call_timeout_ms",
                &format!(
                    "must be at least {needed_ms}: a call of pipeline.events_per_call events may spend {full_call} fuel, about {needed_ms} ms on a slow machine, and must run out of fuel (deterministic) before it reaches the deadline (not deterministic)"
                ),
            );
        }
        if self.plugins.max_memory_mib < 16 {
            return invalid("plugins.max_memory_mib", "must be at least 16");
        }
        if self.pipeline.max_batch_events == 0
            || self.pipeline.events_per_call == 0
            || self.pipeline.bytes_per_call == 0
            || self.pipeline.max_batch_bytes == 0
        {
            return invalid("pipeline.max_batch_events", "batch sizes must be at least 1");
        }
        Ok(())
    }
}

/// `PROJECTOR_<SECTION>__<FIELD>` variables. Other `PROJECTOR_*` variables (such as
/// `PROJECTOR_CONFIG`, or those of scripts and tests) are not configuration fields.
fn overrides() -> Env {
    Env::prefixed("PROJECTOR_").filter(|key| key.as_str().contains("__")).split("__")
}

impl KafkaConfig {
    /// How long a consumer may go without partitions or events before it counts as stalled.
    pub fn stall_timeout(&self) -> Duration {
        Duration::from_millis(self.stall_timeout_ms)
    }
}

impl PluginsConfig {
    /// The per-call deadline.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }
}

impl AdminConfig {
    /// The upload size limit in bytes.
    pub fn max_upload_bytes(&self) -> usize {
        (self.max_upload_mib * 1024 * 1024) as usize
    }
}

impl PipelineConfig {
    /// The batch fill deadline.
    pub fn max_batch_wait(&self) -> Duration {
        Duration::from_millis(self.max_batch_wait_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
    }

    #[test]
    fn fields_override_defaults() {
        let config = Config::from_toml(
            "[kafka]\nbrokers = \"b:1\"\n[kafka.properties]\n\"client.rack\" = \"r1\"\n[pipeline]\nmax_batch_events = 10\n",
        )
        .unwrap();
        assert_eq!(config.kafka.brokers, "b:1");
        assert_eq!(config.kafka.properties["client.rack"], "r1");
        assert_eq!(config.pipeline.max_batch_events, 10);
        assert_eq!(config.kafka.topic, "order-events");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = Config::from_toml("[kafka]\nbrokerz = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("brokerz"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure returns figment's own error.
    fn environment_overrides_fields_and_ignores_other_projector_variables() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("projector.toml", "[kafka]\nbrokers = \"file:1\"\ntopic = \"t\"\n")?;
            jail.set_env("PROJECTOR_KAFKA__BROKERS", "env:2");
            jail.set_env("PROJECTOR_PIPELINE__MAX_BATCH_EVENTS", "7");
            jail.set_env("PROJECTOR_CONFIG", "projector.toml");
            jail.set_env("PROJECTOR_TEST_PG", "postgres://elsewhere");
            let config = Config::load(Some(Path::new("projector.toml"))).expect("loads");
            assert_eq!(config.kafka.brokers, "env:2");
            assert_eq!(config.kafka.topic, "t");
            assert_eq!(config.pipeline.max_batch_events, 7);
            jail.set_env("PROJECTOR_ADMIN__TOKENS", r#"[{name="ci", token="0123456789abcdef"}]"#);
            let config = Config::load(None).expect("loads");
            assert_eq!(config.admin.tokens[0].name, "ci");
            assert!(!config.admin.tokens[0].read_only);
            jail.set_env("PROJECTOR_KAFKA__BROKERZ", "x");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("brokerz"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn fuel_per_event_is_bounded() {
        for fuel in [0, MIN_FUEL_PER_EVENT - 1, MAX_FUEL_PER_EVENT + 1] {
            let err = Config::from_toml(&format!("[plugins]\nfuel_per_event = {fuel}\n")).unwrap_err().to_string();
            assert!(err.contains("plugins.fuel_per_event"), "{err}");
        }
        let config = Config::from_toml(&format!("[plugins]\nfuel_per_event = {MIN_FUEL_PER_EVENT}\n")).unwrap();
        assert_eq!(config.plugins.fuel_per_event, MIN_FUEL_PER_EVENT);
        // 500 events of 100 million fuel: 50.5 billion, about 51 s; the deadline is 30 s.
        let err = Config::from_toml("[plugins]\nfuel_per_event = 100000000\n").unwrap_err().to_string();
        assert!(err.contains("plugins.call_timeout_ms") && err.contains("at least 50500"), "{err}");
    }

    #[test]
    fn cross_field_rules_are_checked() {
        let err = Config::from_toml("[kafka]\nsession_timeout_ms = 500\n").unwrap_err().to_string();
        assert!(err.contains("kafka.heartbeat_interval_ms"), "{err}");
    }
}
