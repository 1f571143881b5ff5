//! Starting and stopping the host: connect, register the plugins found in the plugin
//! directory, serve the admin API, and let the supervisor run what the registry says; stop
//! gracefully on SIGTERM or Ctrl-C.
//!
//! Shutdown order: stop accepting admin requests, stop the supervisor (each worker finishes
//! and commits its batch in flight, then leaves its consumer group), exit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::progress::Board;
use crate::registry::{Component, Created, Registry, RegistryError};
use crate::runtime::{Limits, Runtime};
use crate::shared::Shared;
use crate::sink::postgres::Database;
use crate::supervisor::Supervisor;

/// The runtime limits from the configuration.
pub fn limits(config: &Config) -> Limits {
    Limits {
        call_timeout: config.plugins.call_timeout(),
        max_memory: (config.plugins.max_memory_mib * 1024 * 1024) as usize,
        fuel_per_event: config.plugins.fuel_per_event,
    }
}

/// Where collections go: the search engine when one is configured, for the collections the
/// configuration moves there as well as those declared there.
pub fn placement(config: &Config) -> crate::spec::Placement {
    crate::spec::Placement {
        search_engine: config.elasticsearch.enabled(),
        moved: config.elasticsearch.collections.clone(),
    }
}

/// The `*.wasm` files of a directory, sorted by name; none when it does not exist.
pub fn plugin_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the plugin directory {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
        .collect();
    files.sort();
    Ok(files)
}

/// Connects and builds the pieces every part of the host shares.
pub async fn shared(config: Config) -> anyhow::Result<Shared> {
    let database = Database::connect(&config.postgres, Duration::from_secs(60)).await?;
    let runtime = Arc::new(
        Runtime::new(limits(&config), Some(config.plugins.cache_dir.clone()))?.with_placement(placement(&config)),
    );
    let search = match config.elasticsearch.enabled() {
        true => Some(crate::sink::elastic::Engine::new(&config.elasticsearch)?),
        false => None,
    };
    Ok(Shared {
        search,
        registry: Registry::new(database.pool().clone()),
        database,
        runtime,
        board: Arc::new(Board::default()),
        metrics: Arc::new(Metrics::new()),
        plugins: Default::default(),
        producer: Default::default(),
        catalog: Default::default(),
        workers: Default::default(),
        config: Arc::new(config),
    })
}

/// Registers every component of the plugin directory, as an upload by `plugins-dir` would:
/// a new projection or version starts building; the same component again changes nothing.
pub async fn register_plugin_dir(shared: &Shared) -> anyhow::Result<()> {
    for file in plugin_files(&shared.config.plugins.dir)? {
        let wasm = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let sha256 = hex::encode(Sha256::digest(&wasm));
        let removed =
            transient_retried(|| async { shared.registry.removed(&sha256).await.map_err(RegistryError::from) }).await?;
        if let Some((name, version, at)) = removed {
            tracing::info!(file = %file.display(), projection = %name, version, removed_at = %at, "Not registering a plugin removed through the admin API; upload it to bring it back.");
            continue;
        }
        let runtime = shared.runtime.clone();
        let bytes = wasm.clone();
        let plugin = tokio::task::spawn_blocking(move || runtime.load(&bytes))
            .await?
            .with_context(|| format!("cannot load {}", file.display()))?;
        let spec = plugin.spec();
        let component = Component { sha256: &sha256, wasm: Some(&wasm), uploaded_by: "plugins-dir" };
        let prefix = &shared.config.kafka.group_prefix;
        match transient_retried(|| shared.registry.create(spec, component, prefix, false, None)).await {
            Ok(Created::New(d)) => {
                tracing::info!(projection = %d.name, version = d.version, file = %file.display(), "Registered a plugin from the plugin directory; building.")
            }
            Ok(Created::Unchanged(_)) => {}
            Err(e @ RegistryError::VersionExists { .. }) => {
                tracing::warn!(file = %file.display(), error = %e, "Keeping the registered code.")
            }
            Err(e) => return Err(e).with_context(|| format!("cannot register {}", file.display())),
        }
        shared.plugins.lock().expect("not poisoned").insert(sha256, Arc::new(plugin));
    }
    Ok(())
}

/// Runs a registry call again while it fails for a reason that passes (the database restarting
/// or dropping connections, the registry's lock busy), for up to a minute.
async fn transient_retried<T, F, Fut>(mut call: F) -> Result<T, RegistryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RegistryError>>,
{
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        let error = match call().await {
            Err(error) => error,
            done => return done,
        };
        let passes = match &error {
            RegistryError::Database(db) => crate::sink::postgres::is_transient(db),
            RegistryError::Busy(_) => true,
            _ => false,
        };
        if !passes || started.elapsed() > Duration::from_secs(60) {
            return Err(error);
        }
        tracing::warn!(error = %error, retry_in = ?delay, "Registering the plugin directory failed for now; retrying.");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Runs the host until `cancel` fires.
pub async fn run(config: Config, cancel: CancellationToken) -> anyhow::Result<()> {
    let shared = shared(config).await?;
    register_plugin_dir(&shared).await?;
    let admin = &shared.config.admin;
    if admin.tokens.is_empty() {
        tracing::warn!("No admin tokens configured: the admin API refuses every request.");
    }
    let listener = tokio::net::TcpListener::bind(admin.listen)
        .await
        .with_context(|| format!("cannot listen on {} for the admin API", admin.listen))?;
    tracing::info!(address = %listener.local_addr()?, "Admin API listening.");
    let server = tokio::spawn(crate::admin::serve(crate::admin::router(shared.clone()), listener, cancel.clone()));
    let query_listener = tokio::net::TcpListener::bind(shared.config.query.listen)
        .await
        .with_context(|| format!("cannot listen on {} for the query API", shared.config.query.listen))?;
    tracing::info!(address = %query_listener.local_addr()?, "Query API listening.");
    let query_server =
        tokio::spawn(crate::admin::serve(crate::query::router(shared.clone()), query_listener, cancel.clone()));
    Supervisor::new(shared, cancel.clone()).run().await;
    cancel.cancel();
    server.await??;
    query_server.await??;
    tracing::info!("Projector stopped.");
    Ok(())
}

/// Cancels `token` on SIGTERM or Ctrl-C.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("can install a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received; finishing the batches in flight."),
            _ = tokio::signal::ctrl_c() => tracing::info!("Interrupt received; finishing the batches in flight."),
        }
        token.cancel();
    });
}
