//! Starting and stopping the host: load plugins, install their storage, run a pipeline per
//! projection, stop gracefully on SIGTERM or Ctrl-C.
//!
//! Shutdown order: stop collecting, let each projection finish and commit its batch in
//! flight, close the consumers (leaving their groups), then exit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::pipeline::{ProjectionStatus, Projector};
use crate::runtime::{Limits, Plugin, Runtime};
use crate::sink::postgres::Database;

/// The runtime limits from the configuration.
pub fn limits(config: &Config) -> Limits {
    Limits {
        call_timeout: config.plugins.call_timeout(),
        max_memory: (config.plugins.max_memory_mib * 1024 * 1024) as usize,
    }
}

/// The `*.wasm` files of a directory, sorted by name.
pub fn plugin_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the plugin directory {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
        .collect();
    files.sort();
    Ok(files)
}

/// Runs the host until `cancel` fires (or every projection has stopped).
pub async fn run(config: Config, cancel: CancellationToken) -> anyhow::Result<()> {
    let database = Database::connect(&config.postgres, Duration::from_secs(60)).await?;
    let runtime = Arc::new(Runtime::new(
        limits(&config),
        Some(config.plugins.cache_dir.clone()),
    )?);
    let files = plugin_files(&config.plugins.dir)?;
    if files.is_empty() {
        anyhow::bail!("no *.wasm plugins in {}", config.plugins.dir.display());
    }
    let mut plugins: Vec<Arc<Plugin>> = Vec::new();
    for file in files {
        let bytes =
            std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let loading = runtime.clone();
        let plugin = tokio::task::spawn_blocking(move || loading.load(&bytes))
            .await?
            .with_context(|| format!("cannot load {}", file.display()))?;
        let spec = plugin.spec();
        if let Some(other) = plugins.iter().find(|p| p.spec().name() == spec.name()) {
            anyhow::bail!(
                "{} and another file both declare projection {} (v{} and v{})",
                file.display(),
                spec.name(),
                spec.version(),
                other.spec().version()
            );
        }
        database
            .install(spec, plugin.sha256())
            .await
            .with_context(|| format!("cannot install {}", file.display()))?;
        tracing::info!(projection = %spec.name(), version = spec.version(), sha256 = %plugin.sha256(), "Projection loaded.");
        plugins.push(Arc::new(plugin));
    }

    let mut threads = Vec::new();
    for plugin in plugins {
        let projector = Projector {
            plugin,
            database: database.clone(),
            kafka: config.kafka.clone(),
            pipeline: config.pipeline.clone(),
            handle: tokio::runtime::Handle::current(),
            cancel: cancel.clone(),
            status: Arc::new(ProjectionStatus::default()),
        };
        threads.push(projector.spawn()?);
    }
    tracing::info!(projections = threads.len(), "Projector running.");

    // Wait for shutdown, or for every projection to stop on its own (all failed).
    let all_stopped = {
        let mut waiting = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break false,
                _ = waiting.tick() => if threads.iter().all(|t| t.is_finished()) { break true },
            }
        }
    };
    cancel.cancel();
    tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    })
    .await?;
    drop(runtime);
    if all_stopped {
        anyhow::bail!("every projection stopped; see the errors above");
    }
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
