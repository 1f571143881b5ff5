//! The app state this process's supervisor, HTTP APIs and metrics endpoint share: the
//! configuration, the database, the registry, the plugin runtime and its compiled plugins,
//! everyone's progress and this instance's live counters.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::progress::Board;
use crate::registry::{Deployment, Registry};
use crate::runtime::{Plugin, Runtime};
use crate::sink::postgres::Database;
use crate::status::ProjectionStatus;

/// The state the supervisor, the admin and query APIs and the metrics endpoint all use.
#[derive(Clone)]
pub struct Shared {
    /// The host configuration.
    pub config: Arc<Config>,
    /// The database.
    pub database: Database,
    /// The registry.
    pub registry: Registry,
    /// The plugin runtime.
    pub runtime: Arc<Runtime>,
    /// Deployment progress.
    pub board: Arc<Board>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Compiled plugins by sha256.
    pub plugins: Arc<std::sync::Mutex<HashMap<String, Arc<Plugin>>>>,
    /// The deployment serving each public collection, refreshed on every reconcile.
    pub catalog: Arc<std::sync::RwLock<HashMap<String, Deployment>>>,
    /// The live counters of every deployment this instance runs, by deployment id.
    pub workers: Arc<std::sync::Mutex<HashMap<i64, Arc<ProjectionStatus>>>>,
    /// The search engine, when one is configured.
    pub search: Option<crate::sink::elastic::Engine>,
    /// Producer of `POST /events`, created on first use.
    pub producer: Arc<tokio::sync::OnceCell<rdkafka::producer::FutureProducer>>,
}

impl Shared {
    /// The loaded plugin of a component, compiling it (from the on-disk cache when possible) on
    /// first use.
    pub async fn plugin(&self, sha256: &str) -> anyhow::Result<Arc<Plugin>> {
        if let Some(plugin) = self.plugins.lock().expect("not poisoned").get(sha256) {
            return Ok(plugin.clone());
        }
        let wasm = self.registry.component(sha256).await?;
        let runtime = self.runtime.clone();
        let plugin = Arc::new(tokio::task::spawn_blocking(move || runtime.load(&wasm)).await??);
        self.plugins.lock().expect("not poisoned").insert(sha256.to_string(), plugin.clone());
        Ok(plugin)
    }
}
