//! The supervisor: makes what runs in this process match the registry.
//!
//! Every instance runs one. On each tick (every `admin.reconcile_interval_ms`, and at once on a
//! registry notification) it starts a worker for each deployment that should consume
//! (building, live or standby, not paused) and stops the others; a hot-swapped component is
//! picked up by restarting the worker on the new code from the stored offsets. Kafka's group
//! assignment splits each deployment's partitions across the instances running it.
//! It also promotes building deployments that have caught up (any instance may; the registry
//! makes it happen once) and records everyone's progress for the API and metrics.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::pipeline::Projector;
use crate::progress::{self, Watermarks};
use crate::registry::{Deployment, Promotion, Registry, RegistryError, Status, CHANNEL};
use crate::runtime::{CallError, LoadError};
use crate::shared::Shared;
use crate::spec::Spec;
use crate::status::ProjectionStatus;

struct Running {
    sha256: String,
    cancel: CancellationToken,
    thread: JoinHandle<()>,
}

/// First delay before starting a deployment again after a start error that may pass.
const START_RETRY: Duration = Duration::from_secs(1);
/// Longest delay between such tries.
const START_RETRY_MAX: Duration = Duration::from_secs(60);

/// Whether a start error may pass by itself: the database unavailable or busy (a pool timeout),
/// `describe` past its deadline (the machine is loaded) or waiting for a free plugin instance. Anything else fails the deployment.
fn start_may_pass(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<sqlx::Error>().is_some_and(crate::sink::postgres::is_transient)
            || cause.downcast_ref::<crate::sink::SinkError>().is_some_and(crate::sink::SinkError::is_transient)
            || matches!(
                cause.downcast_ref::<LoadError>(),
                Some(LoadError::Describe(CallError::Timeout(_) | CallError::Busy(_)))
            )
    })
}

/// Runs workers to match the registry until `cancel` fires.
pub(crate) struct Supervisor {
    shared: Shared,
    cancel: CancellationToken,
    running: HashMap<i64, Running>,
    watermarks: Option<Arc<Watermarks>>,
    /// The last reconcile error, so a lasting one is logged once, not every tick.
    last_error: Option<String>,
    /// Deployments whose start failed for a reason that may pass (the database busy, a
    /// `describe` slow under load): when to try again, and the delay before that try.
    retry: HashMap<i64, (Instant, Duration)>,
    /// The serving deployment each projection's search-engine aliases point at.
    aliased: HashMap<String, i64>,
}

impl Supervisor {
    /// A supervisor over the shared pieces.
    pub(crate) fn new(shared: Shared, cancel: CancellationToken) -> Self {
        Self {
            shared,
            cancel,
            running: HashMap::new(),
            watermarks: None,
            last_error: None,
            retry: HashMap::new(),
            aliased: HashMap::new(),
        }
    }

    /// Reconciles until cancelled, then stops every worker (each finishes its batch).
    pub(crate) async fn run(mut self) {
        let interval = Duration::from_millis(self.shared.config.admin.reconcile_interval_ms);
        let mut listener = self.listen().await;
        loop {
            match self.reconcile().await {
                Ok(()) if self.last_error.take().is_some() => tracing::info!("Reconciling works again."),
                Ok(()) => {}
                Err(e) => {
                    let error = format!("{e:#}");
                    if self.last_error.as_ref() != Some(&error) {
                        tracing::warn!(error = %error, "Reconciling with the registry failed; retrying every tick.");
                    }
                    self.last_error = Some(error);
                }
            }
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(|_| ()).map_err(|e| e.to_string()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = tokio::time::sleep(interval) => {}
                result = notified => if let Err(e) = result {
                    tracing::warn!(error = %e, "Registry notifications lost; reconnecting.");
                    listener = self.listen().await;
                },
            }
        }
        let stopping: Vec<Running> = self.running.drain().map(|(_, r)| r).collect();
        for r in &stopping {
            r.cancel.cancel();
        }
        let _ = tokio::task::spawn_blocking(move || {
            for r in stopping {
                let _ = r.thread.join();
            }
        })
        .await;
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(self.shared.database.pool()).await.ok()?;
        listener.listen(CHANNEL).await.ok()?;
        Some(listener)
    }

    async fn reconcile(&mut self) -> anyhow::Result<()> {
        let deployments = self.shared.registry.all().await?;
        self.publish_catalog(&deployments);
        self.point_aliases(&deployments).await;
        self.reap();
        let wanted: HashMap<i64, &Deployment> =
            deployments.iter().filter(|d| d.status.runs() && !d.paused).map(|d| (d.id, d)).collect();
        // Stop what should not run, or runs code that was hot-swapped since.
        let stale: Vec<i64> = self
            .running
            .iter()
            .filter(|(id, r)| wanted.get(id).is_none_or(|d| d.sha256 != r.sha256))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            let running = self.running.remove(&id).expect("listed");
            running.cancel.cancel();
            tokio::task::spawn_blocking(move || running.thread.join()).await?.ok();
            self.shared.workers.lock().expect("not poisoned").remove(&id);
            tracing::info!(deployment = id, "Worker stopped.");
        }
        self.retry.retain(|id, _| wanted.contains_key(id));
        for deployment in wanted.values() {
            let id = deployment.id;
            if self.running.contains_key(&id) || self.retry.get(&id).is_some_and(|(at, _)| Instant::now() < *at) {
                continue;
            }
            match self.start(deployment).await {
                Ok(()) => {
                    self.retry.remove(&id);
                }
                Err(e) if start_may_pass(&e) => {
                    let delay = self.retry.get(&id).map_or(START_RETRY, |(_, d)| (*d * 2).min(START_RETRY_MAX));
                    tracing::warn!(projection = %deployment.name, deployment = id, error = %format!("{e:#}"), retry_in = ?delay, "Cannot start the deployment for now; retrying.");
                    self.retry.insert(id, (Instant::now() + delay, delay));
                }
                Err(e) => {
                    tracing::error!(projection = %deployment.name, deployment = id, error = %format!("{e:#}"), "Cannot start the deployment.");
                    self.shared.registry.fail(id, &format!("cannot start: {e:#}"), None).await?;
                }
            }
        }
        self.track_and_promote(&deployments).await
    }

    /// Records which deployment serves each public collection.
    fn publish_catalog(&self, deployments: &[Deployment]) {
        let catalog: HashMap<String, Deployment> = deployments
            .iter()
            .filter(|d| d.serving)
            .flat_map(|d| d.spec.collections.iter().map(move |c| (c.name.clone(), d.clone())))
            .collect();
        *self.shared.catalog.write().expect("not poisoned") = catalog;
    }

    /// Forgets workers whose thread ended on its own (they recorded their failure).
    fn reap(&mut self) {
        self.running.retain(|_, r| !r.thread.is_finished());
        let mut workers = self.shared.workers.lock().expect("not poisoned");
        workers.retain(|id, _| self.running.contains_key(id));
    }

    async fn start(&mut self, deployment: &Deployment) -> anyhow::Result<()> {
        let plugin = self.shared.plugin(&deployment.sha256).await?;
        let stored = Spec::new(deployment.spec.clone())?;
        if stored.raw().collections != plugin.spec().raw().collections {
            anyhow::bail!(
                "the collections this host places on each sink differ from when the deployment was created \
                 (elasticsearch.collections changed?); restore the setting, or rebuild the projection"
            );
        }
        if stored.collections().any(|(c, _)| c.sink == crate::contract::Sink::Elasticsearch) {
            let engine = self.shared.search.as_ref().ok_or_else(|| {
                anyhow::anyhow!("the deployment has collections on the search engine; configure elasticsearch.urls")
            })?;
            engine.install_script().await?;
            engine.ensure_indices(&deployment.schema, &stored).await?;
        }
        let cancel = self.cancel.child_token();
        let status = Arc::new(ProjectionStatus::default());
        let projector = Projector {
            plugin,
            deployment: deployment.clone(),
            sink: Arc::new(
                crate::sink::postgres::PgSink::new(
                    &self.shared.database,
                    &deployment.schema,
                    tokio::runtime::Handle::current(),
                )
                .with_search(self.shared.search.clone()),
            ),
            control: Arc::new(Record {
                registry: self.shared.registry.clone(),
                id: deployment.id,
                handle: tokio::runtime::Handle::current(),
            }),
            kafka: self.shared.config.kafka.clone(),
            pipeline: self.shared.config.pipeline.clone(),
            cancel: cancel.clone(),
            status: status.clone(),
            metrics: self.shared.metrics.clone(),
        };
        let thread = projector.spawn()?;
        tracing::info!(projection = %deployment.name, version = deployment.version, build = deployment.build, status = %deployment.status, "Worker started.");
        self.running.insert(deployment.id, Running { sha256: deployment.sha256.clone(), cancel, thread });
        self.shared.workers.lock().expect("not poisoned").insert(deployment.id, status);
        Ok(())
    }

    /// Points each projection's search-engine aliases at its serving deployment's indices,
    /// whichever instance promoted or rolled back; tried again every tick until it succeeds.
    async fn point_aliases(&mut self, deployments: &[Deployment]) {
        let Some(engine) = &self.shared.search else { return };
        for d in deployments.iter().filter(|d| d.serving) {
            if self.aliased.get(&d.name) == Some(&d.id) {
                continue;
            }
            let Ok(spec) = Spec::new(d.spec.clone()) else { continue };
            match engine.point_aliases(&d.schema, &spec).await {
                Ok(()) => {
                    self.aliased.insert(d.name.clone(), d.id);
                }
                Err(e) => {
                    tracing::warn!(projection = %d.name, deployment = d.id, error = %e, "Cannot point the search-engine aliases at the serving deployment; retrying every tick.")
                }
            }
        }
    }

    async fn track_and_promote(&mut self, deployments: &[Deployment]) -> anyhow::Result<()> {
        let watermarks = match &self.watermarks {
            Some(w) => w.clone(),
            None => {
                let w = Arc::new(Watermarks::new(&self.shared.config.kafka)?);
                self.watermarks = Some(w.clone());
                w
            }
        };
        let marks = tokio::task::spawn_blocking(move || watermarks.fetch()).await??;
        let pool = self.shared.database.pool();
        let max_lag = self.shared.config.admin.promote_max_lag;
        for d in deployments {
            let stored = progress::stored_offsets(pool, &d.schema).await.unwrap_or_default();
            let position = progress::position(&stored, &marks);
            let lag = position.lag;
            self.shared.metrics.observe_deployment(d, &position);
            self.shared.board.record(d.id, position);
            if d.status == Status::Building && !d.paused && lag <= max_lag && self.running.contains_key(&d.id) {
                match self.shared.registry.promote(d.id).await {
                    Ok(Promotion::Live) => {
                        tracing::info!(projection = %d.name, version = d.version, build = d.build, lag, "Deployment caught up and went live.");
                    }
                    Ok(Promotion::Standby) => {
                        tracing::info!(projection = %d.name, version = d.version, build = d.build, "Deployment caught up; it is older than the serving one, so it waits on standby (roll back to make it live).");
                    }
                    Ok(Promotion::Nothing) => {}
                    // Only this promotion waits: shown on the deployment, tried again every tick.
                    Err(e @ (RegistryError::Conflict(_) | RegistryError::Busy(_))) => {
                        let why = format!("caught up, but cannot go live: {e}");
                        if d.last_error.as_deref() != Some(why.as_str()) {
                            tracing::warn!(projection = %d.name, version = d.version, build = d.build, error = %e, "Promotion blocked; retrying every tick.");
                        }
                        self.shared.registry.note_blocked(d.id, Some(&why)).await?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let ids: Vec<i64> = deployments.iter().map(|d| d.id).collect();
        self.shared.board.retain(&ids);
        Ok(())
    }
}

/// A deployment's registry entry as its pipeline sees it; each call blocks on `handle`.
struct Record {
    registry: Registry,
    id: i64,
    handle: tokio::runtime::Handle,
}

impl crate::pipeline::Control for Record {
    fn poison_policy(&self) -> Result<crate::registry::Poison, crate::sink::SinkError> {
        Ok(self.handle.block_on(self.registry.poison_policy(self.id))?)
    }

    fn fail(&self, message: &str, at: Option<(i32, i64)>) -> anyhow::Result<()> {
        Ok(self.handle.block_on(self.registry.fail(self.id, message, at))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_errors_that_may_pass_are_told_apart() {
        assert!(start_may_pass(&anyhow::Error::from(sqlx::Error::PoolTimedOut)));
        let slow = LoadError::Describe(CallError::Timeout(Duration::from_secs(5)));
        assert!(start_may_pass(&anyhow::Error::from(slow).context("loading")));
        let full = LoadError::Describe(CallError::Busy("pool full".into()));
        assert!(start_may_pass(&anyhow::Error::from(full)));
        assert!(!start_may_pass(&anyhow::Error::from(LoadError::Limits("100 memories".into()))));
        assert!(!start_may_pass(&anyhow::Error::from(LoadError::NotWasm)));
        let trapped = LoadError::Describe(CallError::Trap { message: "boom".into() });
        assert!(!start_may_pass(&anyhow::Error::from(trapped)));
        assert!(!start_may_pass(&anyhow::Error::from(sqlx::Error::RowNotFound)));
    }
}
