//! The plugin runtime: projection components in wasmtime sandboxes.
//!
//! Invariants:
//! - A component is compiled once; the compiled artifact is cached on disk by the sha256 of
//!   the component and the engine's compatibility hash, so restarts skip compilation. Each
//!   artifact carries an HMAC-SHA256 under a key only this cache directory holds, checked
//!   before the bytes are deserialized (deserializing runs native code as it is): a file
//!   planted, truncated or corrupted in the cache is refused and compiled again.
//! - Every call gets a fresh `Store` from a pre-instantiated component: no state survives a
//!   call except through the `state` import, and a trap poisons nothing.
//! - Every call is bounded from its first instruction by a fuel budget, a deadline (epoch
//!   interruption) and a linear-memory cap; exceeding any fails the call with an error saying
//!   which. Fuel counts WebAssembly instructions, so running out of it is deterministic: the
//!   same events always run out at the same instruction, however loaded the machine is. The
//!   deadline is only a wall-clock backstop (for time spent where fuel is not counted, such as
//!   a slow state load) and is not deterministic: [`CallError::is_deterministic`] tells them
//!   apart.

mod bindings;
mod convert;
mod sandbox;

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, PoolingAllocationConfig, Store, Trap};

pub use sandbox::{StateLoader, StateOverlay, StateUnavailable};

use crate::contract::{Event, Operation, ProjectionSpec};
use crate::spec::{Placement, Spec, SpecError};
use bindings::{Projection, ProjectionPre};
use sandbox::Sandbox;

/// Most operations one call may return, over all its events.
pub const MAX_OPERATIONS: usize = 100_000;

/// How often the engine's epoch advances: the granularity of call deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The most a plugin may make the host copy out of its memory at once, in bytes as the host
/// holds them: one call's returned operations, or the arguments of one call it makes to the
/// host. A plugin can return one buffer many times over (every string of 100 operations
/// pointing at the same megabyte), so what the host would copy is bounded here, as it is
/// copied, not by the plugin's memory cap. wasmtime counts it (its "hostcall fuel", 128 MiB
/// unless set); 64 MiB is 16 times the input of a call at the default `bytes_per_call`.
pub const MAX_TRANSFER: usize = 64 << 20;

/// What wasmtime says when a transfer passes [`MAX_TRANSFER`].
const TRANSFER_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// After a call that fails as a whole, the plugin rests this many times as long as the call
/// ran before its next call may start (see [`Plugin::rest`]): a plugin whose every call fails
/// (a poison event after another under the `dead-letter` policy, an infinite loop cut by fuel
/// each time) gets at most a fifth of a core, so the projections beside it keep theirs.
pub const REST_AFTER_FAILURE: u32 = 4;

/// The longest rest after one failed call (a call cut at a long wall-clock deadline).
pub const MAX_REST: Duration = Duration::from_secs(30);

/// Fuel every call gets on top of its events' share: instantiating the component, entering and
/// leaving `handle`, moving the events in and the results out, and a floor for calls of few
/// events. Measured (docs/BENCHMARKS.md, "Fuel vs epoch interruption"), a call of no events
/// spends at most 0.6 million (JavaScript) and the heaviest single event 4.4 million: this is
/// over 100 times either.
pub const CALL_FUEL: u64 = 500_000_000;

/// Fuel a `describe` call gets, instantiation included (the example components spend at most
/// 2.4 million, in JavaScript).
pub const DESCRIBE_FUEL: u64 = 500_000_000;

/// A conservative rate at which plugins spend fuel, in units per second: about half what the
/// example plugins spend on the project's 2-core machines under load. The deadline must leave
/// a full call's fuel budget this much time, so a loop runs out of fuel (deterministic) before
/// it reaches the deadline (not deterministic).
pub const SLOW_FUEL_PER_SECOND: u64 = 1_000_000_000;

/// Plugin instances alive at once in one host (a call, a `describe`): the instance pool's size.
/// A call past it waits for a free instance ([`CallError::Busy`]).
pub const POOL_INSTANCES: u32 = 1_000;

/// Most core instances one plugin component may have; a component past this or the other
/// `PLUGIN_` bounds is refused at load ([`LoadError::Limits`]).
pub const PLUGIN_CORE_INSTANCES: u32 = 64;
/// Most linear memories one plugin component may define.
pub const PLUGIN_MEMORIES: u32 = 4;
/// Most tables one plugin component may define.
pub const PLUGIN_TABLES: u32 = 16;
/// Most elements a plugin's table may start with or grow to.
pub const TABLE_ELEMENTS: usize = 1 << 16;

/// Bytes of each memory slot reset in place (the pages a call dirtied, found with the kernel's
/// `PAGEMAP_SCAN`, written back) instead of handed back to the kernel: a call's instance is
/// made and dropped without a system call that changes the address space, so the calls of
/// one plugin do not stop every other thread of the host for a TLB shootdown (two threads
/// instantiating thousands of times a second took 10% from each other on the project's
/// virtual machines). Past it, a slot is reset with `madvise`.
const KEEP_RESIDENT: usize = 4 << 20;

/// Limits applied to every plugin call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest time one call may run, instantiation included: a wall-clock backstop.
    pub call_timeout: Duration,
    /// Largest linear memory, in bytes.
    pub max_memory: usize,
    /// Fuel each event adds to its call's budget: a call of `n` events may spend
    /// `CALL_FUEL + n * fuel_per_event`, however its events share it.
    pub fuel_per_event: u64,
}

impl Limits {
    /// The fuel budget of a call of `events` events.
    pub fn call_fuel(&self, events: usize) -> u64 {
        self.fuel_per_event.saturating_mul(events as u64).saturating_add(CALL_FUEL)
    }
}

/// Which bounds on CPU time the engine compiles into plugin code. The host always runs with
/// [`Interruption::FuelAndDeadline`]; the others exist to measure what each bound costs (the
/// sandbox benchmark).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interruption {
    /// Fuel budgets and the wall-clock deadline.
    #[default]
    FuelAndDeadline,
    /// Fuel budgets only: no deadline.
    Fuel,
    /// The wall-clock deadline only: no fuel budget.
    Deadline,
}

impl Interruption {
    fn fuel(self) -> bool {
        self != Interruption::Deadline
    }

    fn deadline(self) -> bool {
        self != Interruption::Fuel
    }
}

/// Why a component could not be loaded. Each variant has a stable [`LoadError::code`].
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not WebAssembly at all.
    #[error("not WebAssembly: the bytes do not start with the WebAssembly magic number")]
    NotWasm,
    /// A core module, not a component.
    #[error("this is a core WebAssembly module, not a component; build for a component target (e.g. Rust's wasm32-wasip2, componentize-py, jco)")]
    CoreModule,
    /// The component does not compile.
    #[error("the component does not compile: {0}")]
    Compile(String),
    /// The component does not export the `projector:projection` world.
    #[error("the component does not implement the projector:projection@0.1.0 world: {0}")]
    WrongWorld(String),
    /// The component imports something the host does not provide.
    #[error("the component imports something the host does not provide: {0}")]
    UnsupportedImport(String),
    /// The component has more core instances, memories or tables than a plugin may.
    #[error("the component needs more than a plugin may have (at most {PLUGIN_CORE_INSTANCES} core instances, {PLUGIN_MEMORIES} linear memories and {PLUGIN_TABLES} tables of {TABLE_ELEMENTS} elements): {0}")]
    Limits(String),
    /// `describe` trapped or timed out.
    #[error("describe failed: {0}")]
    Describe(#[from] CallError),
    /// `describe` returned an unusable declaration.
    #[error(transparent)]
    Spec(#[from] SpecError),
}

impl LoadError {
    /// A stable, machine-readable code for the error.
    pub fn code(&self) -> &'static str {
        match self {
            LoadError::NotWasm => "not_wasm",
            LoadError::CoreModule => "core_module",
            LoadError::Compile(_) => "compile_failed",
            LoadError::Limits(_) => "over_plugin_limits",
            LoadError::WrongWorld(_) => "wrong_world",
            LoadError::UnsupportedImport(_) => "unsupported_import",
            LoadError::Describe(_) => "describe_failed",
            LoadError::Spec(_) => "invalid_spec",
        }
    }
}

/// Why a call into a plugin failed as a whole (as opposed to one event's error).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The call ran past its wall-clock deadline. Not deterministic: a loaded machine may
    /// reach the deadline on a call that runs well within it otherwise.
    #[error("plugin call exceeded its {0:?} deadline (wall-clock time, not deterministic: it may pass on a less loaded machine)")]
    Timeout(Duration),
    /// The call spent its fuel budget: it executed more instructions than its events allow.
    /// Deterministic: the same events always run out at the same instruction.
    #[error("plugin call ran out of fuel: it spent its budget of {budget} units (about one per WebAssembly instruction); this is deterministic, the same events always run out")]
    Fuel { budget: u64 },
    /// The plugin tried to grow its memory beyond the cap.
    #[error("plugin exceeded its memory cap of {cap} bytes (tried to grow to {desired} bytes)")]
    Memory { cap: usize, desired: usize },
    /// The plugin trapped (a panic, an unreachable, a host call refused).
    #[error("plugin trapped: {message}")]
    Trap { message: String },
    /// The plugin read a state key the host could not load because the store is unavailable
    /// for now: nothing is wrong with the plugin or the event, so the call can be retried.
    #[error("loading the plugin's state failed: {0}")]
    StateUnavailable(String),
    /// The plugin broke the contract, e.g. returned the wrong number of results.
    #[error("plugin broke the contract: {0}")]
    Contract(String),
    /// The host already runs as many plugin instances as its pool holds
    /// ([`POOL_INSTANCES`]): nothing is wrong with the plugin or the events, so the call can
    /// be retried once another call ends.
    #[error("the host runs as many plugin instances as it may ({0}); the call waits for one to end")]
    Busy(String),
}

impl CallError {
    /// Whether the same call on the same events and state always fails the same way, so the
    /// failure can be pinned on the events (and bisected to one of them). False for a
    /// wall-clock deadline (the machine's load decides it) and for a state store that was
    /// unavailable for the moment; true for running out of fuel, the memory cap, a trap and a
    /// broken contract.
    pub fn is_deterministic(&self) -> bool {
        match self {
            CallError::Timeout(_) | CallError::StateUnavailable(_) | CallError::Busy(_) => false,
            CallError::Fuel { .. } | CallError::Memory { .. } | CallError::Trap { .. } | CallError::Contract(_) => true,
        }
    }
}

/// Compiles and caches components and runs their calls under limits.
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<Sandbox>>,
    limits: Limits,
    cache_dir: Option<PathBuf>,
    interruption: Interruption,
    ticker: Arc<AtomicBool>,
    /// When the next load may start, after one refused for what the component is.
    load_rest: Rest,
    /// Where the collections of loaded plugins go.
    placement: Placement,
}

impl Runtime {
    /// Builds the engine and linker, and starts the epoch ticker thread.
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        Self::with_interruption(limits, cache_dir, Interruption::default())
    }

    /// [`Runtime::new`] with only some of the CPU bounds (to measure what they cost).
    pub fn with_interruption(
        limits: Limits,
        cache_dir: Option<PathBuf>,
        interruption: Interruption,
    ) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(interruption.deadline())
            .consume_fuel(interruption.fuel())
            .allocation_strategy(pool());
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        // Replace wasmtime-wasi's timers, which block the thread on the host's clock.
        linker.allow_shadowing(true);
        wasmtime_wasi::p2::bindings::clocks::monotonic_clock::add_to_linker::<Sandbox, sandbox::InstantTimers>(
            &mut linker,
            Sandbox::timers,
        )?;
        linker.allow_shadowing(false);
        Projection::add_to_linker::<Sandbox, HasSelf<Sandbox>>(&mut linker, |s| s)?;
        let ticker = Arc::new(AtomicBool::new(true));
        let running = ticker.clone();
        let ticking = engine.clone();
        std::thread::Builder::new().name("wasm-epoch".into()).spawn(move || {
            while running.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                ticking.increment_epoch();
            }
        })?;
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            limits,
            cache_dir,
            interruption,
            ticker,
            load_rest: Rest::default(),
            placement: Placement::default(),
        })
    }

    /// The same runtime, placing the collections of every plugin it loads as `placement` says.
    pub fn with_placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// Compiles (or loads from the cache), links and describes a component.
    ///
    /// A load refused for what the component is (over the plugin limits, not compiling, a
    /// `describe` failing deterministically) rests the loads after it, as a failing call rests
    /// its plugin: upload after refused upload gets at most a fifth of a core.
    pub fn load(&self, wasm: &[u8]) -> Result<Plugin, LoadError> {
        std::thread::sleep(self.load_rest.left());
        let started = Instant::now();
        let loaded = self.load_now(wasm);
        let refused = match &loaded {
            Err(LoadError::Limits(_) | LoadError::Compile(_)) => true,
            Err(LoadError::Describe(error)) => error.is_deterministic(),
            _ => false,
        };
        self.load_rest.after(started, refused);
        loaded
    }

    fn load_now(&self, wasm: &[u8]) -> Result<Plugin, LoadError> {
        if !wasm.starts_with(b"\0asm") {
            return Err(LoadError::NotWasm);
        }
        if !is_component_binary(wasm) {
            return Err(LoadError::CoreModule);
        }
        let sha256 = hex::encode(Sha256::digest(wasm));
        let component = self.compile(wasm, &sha256)?;
        let exports = component.component_type();
        let missing: Vec<&str> = ["describe", "handle"]
            .into_iter()
            .filter(|name| exports.get_export(&self.engine, name).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(LoadError::WrongWorld(format!("it does not export {}", missing.join(" and "))));
        }
        let pre =
            self.linker.instantiate_pre(&component).map_err(|e| LoadError::UnsupportedImport(format!("{e:#}")))?;
        let pre = ProjectionPre::new(pre).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        let mut plugin = Plugin {
            pre,
            engine: self.engine.clone(),
            limits: self.limits.clone(),
            interruption: self.interruption,
            spec: None,
            sha256,
            peak_memory: Default::default(),
            fuel_spent: Default::default(),
            describe_fuel: 0,
            rest: Rest::default(),
        };
        plugin.spec = Some(Spec::new(self.placement.place(plugin.describe()?)?)?);
        Ok(plugin)
    }

    /// Compiles a component into the artifact cache only (no linking, no `describe`): what a
    /// child process does for an upload, so that a compile running past its time limit can be
    /// stopped by killing it (compiling in this process cannot be interrupted).
    pub fn precompile(&self, wasm: &[u8]) -> Result<(), LoadError> {
        if !wasm.starts_with(b"\0asm") {
            return Err(LoadError::NotWasm);
        }
        if !is_component_binary(wasm) {
            return Err(LoadError::CoreModule);
        }
        self.compile(wasm, &hex::encode(Sha256::digest(wasm))).map(drop)
    }

    /// The directory compiled artifacts are cached in, if any.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache_dir.as_deref()
    }

    fn compile(&self, wasm: &[u8], sha256: &str) -> Result<Component, LoadError> {
        let Some(dir) = &self.cache_dir else {
            return Component::new(&self.engine, wasm).map_err(compile_error);
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        let path = dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish()));
        if path.exists() {
            match load_artifact(&self.engine, dir, &path) {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "Ignoring unreadable compiled plugin.")
                }
            }
        }
        let component = Component::new(&self.engine, wasm).map_err(compile_error)?;
        if let Err(e) = store_artifact(&component, dir, &path) {
            tracing::warn!(path = %path.display(), error = %e, "Could not cache compiled plugin.");
        }
        Ok(component)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker.store(false, Ordering::Relaxed);
    }
}

/// The instance pool: memories and tables reserved once and reused call after call (wasmtime's
/// pooling allocator). What a plugin's memories may grow to is the store's memory cap (the
/// limiter), not the pool's; the pool bounds how many memories, tables and core instances a
/// component has, checked when it is compiled or loaded from the cache.
fn pool() -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * 8)
        .total_memories(POOL_INSTANCES)
        .total_tables(POOL_INSTANCES * 4)
        .max_core_instances_per_component(PLUGIN_CORE_INSTANCES)
        .max_memories_per_component(PLUGIN_MEMORIES)
        .max_memories_per_module(PLUGIN_MEMORIES)
        .max_tables_per_component(PLUGIN_TABLES)
        .max_tables_per_module(PLUGIN_TABLES)
        .table_elements(TABLE_ELEMENTS)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .pagemap_scan(Enabled::Auto);
    pool
}

/// What a failed compile means: the pool refusing the component's shape (checked once it is
/// compiled) or a component that does not compile.
fn compile_error(error: wasmtime::Error) -> LoadError {
    let message = format!("{error:#}");
    if message.contains("pooling allocator") {
        LoadError::Limits(message)
    } else {
        LoadError::Compile(message)
    }
}

/// Whether the bytes start with the header of a component (layer 1), not a core module.
fn is_component_binary(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm[0..4] == *b"\0asm" && wasm[6..8] == [1, 0]
}

type ArtifactMac = hmac::Hmac<Sha256>;

/// Length of the MAC in front of a cached artifact.
const MAC_LEN: usize = 32;

/// The cache directory's key, created (readable by its owner only) on first use.
fn cache_key(dir: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Write as _;
    let path = dir.join("artifacts.key");
    match std::fs::read(&path) {
        Ok(key) if key.len() == 32 => return Ok(key),
        Ok(_) => anyhow::bail!("{} is not a 32-byte key", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    std::fs::create_dir_all(dir)?;
    let mut key = vec![0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(&key)?;
    // Another host creating the key at the same moment wins; both then read its key.
    match file.persist_noclobber(&path) {
        Ok(_) => Ok(key),
        Err(_) => Ok(std::fs::read(&path)?),
    }
}

fn mac(key: &[u8], bytes: &[u8]) -> ArtifactMac {
    use hmac::Mac as _;
    let mut mac = ArtifactMac::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(bytes);
    mac
}

#[allow(unsafe_code)]
fn load_artifact(engine: &Engine, dir: &Path, path: &Path) -> anyhow::Result<Component> {
    use hmac::Mac as _;
    let file = std::fs::read(path)?;
    anyhow::ensure!(file.len() > MAC_LEN, "the file is too short to be a compiled artifact");
    let (tag, bytes) = file.split_at(MAC_LEN);
    mac(&cache_key(dir)?, bytes)
        .verify_slice(tag)
        .map_err(|_| anyhow::anyhow!("its checksum does not match: it was not written by this cache"))?;
    // SAFETY: the bytes carry a valid MAC under this cache's private key, so they are exactly
    // what `store_artifact` wrote from `Component::serialize` of this engine configuration
    // (its compatibility hash is in the file name).
    Ok(unsafe { Component::deserialize(engine, bytes) }?)
}

fn store_artifact(component: &Component, dir: &Path, path: &Path) -> anyhow::Result<()> {
    use hmac::Mac as _;
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize()?;
    let tag = mac(&cache_key(dir)?, &bytes).finalize().into_bytes();
    // A unique temporary name in the same directory, renamed into place when complete.
    let mut partial = tempfile::NamedTempFile::new_in(dir)?;
    partial.write_all(&tag)?;
    partial.write_all(&bytes)?;
    partial.persist(path)?;
    Ok(())
}

/// When whoever failed may run again: [`REST_AFTER_FAILURE`] times as long as the failed run
/// took (at most [`MAX_REST`]), from its end; at once after a run that succeeded.
#[derive(Default)]
struct Rest(std::sync::Mutex<Option<Instant>>);

impl Rest {
    /// Records a run that started at `started` and has just ended.
    fn after(&self, started: Instant, failed: bool) {
        let until = failed.then(|| Instant::now() + (started.elapsed() * REST_AFTER_FAILURE).min(MAX_REST));
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = until;
    }

    /// What is left of the rest.
    fn left(&self) -> Duration {
        let until = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        until.map_or(Duration::ZERO, |until| until.saturating_duration_since(Instant::now()))
    }
}

/// A loaded projection plugin, ready to be called from any thread.
pub struct Plugin {
    pre: ProjectionPre<Sandbox>,
    engine: Engine,
    limits: Limits,
    interruption: Interruption,
    spec: Option<Spec>,
    sha256: String,
    peak_memory: std::sync::atomic::AtomicUsize,
    /// Fuel spent by all `handle` calls, instantiation included.
    fuel_spent: AtomicU64,
    /// Fuel the `describe` call spent, instantiation included.
    describe_fuel: u64,
    /// When the next call may start, after a call that failed.
    rest: Rest,
}

/// The per-event answers of one call: operations, or the plugin's error for that event.
pub type EventResults = Vec<Result<Vec<Operation>, String>>;

impl Plugin {
    /// The validated declaration.
    pub fn spec(&self) -> &Spec {
        self.spec.as_ref().expect("set by Runtime::load")
    }

    /// The largest linear memory any call's instance grew to, in bytes.
    pub fn peak_memory(&self) -> usize {
        self.peak_memory.load(Ordering::Relaxed)
    }

    /// Hex sha256 of the component bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Fuel spent by all `handle` calls so far, instantiation included (zero when fuel is
    /// not counted).
    pub fn fuel_spent(&self) -> u64 {
        self.fuel_spent.load(Ordering::Relaxed)
    }

    /// Fuel the `describe` call spent at load, instantiation included: about what
    /// instantiating the component costs, since `describe` itself does little.
    pub fn describe_fuel(&self) -> u64 {
        self.describe_fuel
    }

    fn describe(&mut self) -> Result<ProjectionSpec, CallError> {
        let (mut store, instance) = self.instantiate("(loading)", None, DESCRIBE_FUEL)?;
        let spec = instance.call_describe(&mut store).map_err(|e| self.call_error(&store, e, DESCRIBE_FUEL))?;
        self.describe_fuel = self.spent(&store, DESCRIBE_FUEL);
        Ok(convert::spec(spec))
    }

    /// Projects `events` with `state` as the per-key state; returns one result per event and
    /// the state with the call's writes added.
    ///
    /// A call that fails as a whole (except for state that could not be loaded for now) makes
    /// the plugin rest: see [`Plugin::rest`].
    pub fn handle(&self, events: &[Event], state: StateOverlay) -> Result<(EventResults, StateOverlay), CallError> {
        let started = Instant::now();
        let outcome = self.call_handle(events, state);
        if !matches!(outcome, Err(CallError::StateUnavailable(_))) {
            self.rest.after(started, outcome.is_err());
        }
        outcome
    }

    /// How long the caller should wait before the next call: [`REST_AFTER_FAILURE`] times as
    /// long as the last call ran, from its end, when it failed; zero once a call succeeded. The pipeline
    /// waits it out (and stops waiting when the projection is stopped); `handle` itself does
    /// not wait, so a caller that must call at once (a test, a one-off check) can.
    pub fn rest(&self) -> Duration {
        self.rest.left()
    }

    fn call_handle(&self, events: &[Event], state: StateOverlay) -> Result<(EventResults, StateOverlay), CallError> {
        let budget = self.limits.call_fuel(events.len());
        let (mut store, instance) = self.instantiate(self.spec().name(), Some(state), budget)?;
        let events: Vec<_> = events.iter().map(convert::event).collect();
        let results = instance.call_handle(&mut store, &events).map_err(|e| self.call_error(&store, e, budget))?;
        self.fuel_spent.fetch_add(self.spent(&store, budget), Ordering::Relaxed);
        if results.len() != events.len() {
            return Err(CallError::Contract(format!(
                "handle returned {} results for {} events",
                results.len(),
                events.len()
            )));
        }
        let operations: usize = results.iter().map(|r| r.as_ref().map_or(0, Vec::len)).sum();
        if operations > MAX_OPERATIONS {
            return Err(CallError::Contract(format!(
                "handle returned {operations} operations for {} events; one call may return at most {MAX_OPERATIONS}",
                events.len()
            )));
        }
        self.peak_memory.fetch_max(store.data().peak_memory(), Ordering::Relaxed);
        let state = store.data_mut().state.take().expect("state was given");
        Ok((results.into_iter().map(convert::answer).collect(), state))
    }

    /// A fresh store and instance, bounded by `fuel` and the deadline from the first
    /// instruction of instantiation on.
    fn instantiate(
        &self,
        name: &str,
        state: Option<StateOverlay>,
        fuel: u64,
    ) -> Result<(Store<Sandbox>, Projection), CallError> {
        let mut store = Store::new(&self.engine, Sandbox::new(name, self.limits.max_memory, state));
        store.limiter(|sandbox| sandbox.limiter());
        store.set_hostcall_fuel(MAX_TRANSFER);
        if self.interruption.fuel() {
            store.set_fuel(fuel).expect("the engine counts fuel");
        }
        if self.interruption.deadline() {
            store.set_epoch_deadline(self.deadline_ticks());
            store.epoch_deadline_trap();
        }
        let instance = self.pre.instantiate(&mut store).map_err(|e| self.call_error(&store, e, fuel))?;
        Ok((store, instance))
    }

    /// The deadline in epoch ticks (at least one).
    fn deadline_ticks(&self) -> u64 {
        let ticks = self.limits.call_timeout.as_millis().div_ceil(EPOCH_TICK.as_millis()).max(1);
        ticks as u64
    }

    /// Fuel the store has spent out of `budget` (zero when fuel is not counted).
    fn spent(&self, store: &Store<Sandbox>, budget: u64) -> u64 {
        store.get_fuel().map_or(0, |left| budget - left)
    }

    /// What a failed call's error means; `budget` is the fuel the call was given.
    fn call_error(&self, store: &Store<Sandbox>, error: wasmtime::Error, budget: u64) -> CallError {
        if let Some(full) = error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
            return CallError::Busy(full.to_string());
        }
        if let Some(message) = store.data().state.as_ref().and_then(StateOverlay::unavailable) {
            return CallError::StateUnavailable(message.to_owned());
        }
        if let Some(desired) = store.data().memory_exceeded() {
            return CallError::Memory { cap: self.limits.max_memory, desired };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => return CallError::Timeout(self.limits.call_timeout),
            Some(Trap::OutOfFuel) => return CallError::Fuel { budget },
            _ => {}
        }
        let mut message = format!("{error:#}");
        if message.contains(TRANSFER_EXHAUSTED) {
            return CallError::Contract(format!(
                "the plugin returned more than {MAX_TRANSFER} bytes in one call (or passed as much to one host call), counted as the host would hold them"
            ));
        }
        let stderr = store.data().stderr();
        if !stderr.is_empty() {
            message.push_str("; plugin stderr: ");
            message.push_str(&stderr);
        }
        CallError::Trap { message }
    }
}
