//! What a plugin instance can reach: its per-key state, the host log, and WASI stand-ins.
//!
//! Invariant: nothing here observes the outside world. The WASI context has no preopened
//! directories, no environment, no arguments, no sockets or name lookup; its clocks are frozen
//! at the Unix epoch and its random sources replay a fixed byte sequence. So the same events
//! always produce the same operations, whichever language the plugin was written in.
//! - Nothing here blocks for real: timers (`subscribe-duration`, `subscribe-instant`) are due
//!   at once, so a plugin that sleeps keeps running guest code, where the epoch deadline
//!   reaches it. (wasmtime-wasi's own timers wait on the host's clock inside `poll`, out of the
//!   deadline's reach.)

use std::collections::HashMap;
use std::time::Duration;

use wasmtime::component::{HasData, Resource};
use wasmtime::ResourceLimiter;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p2::{DynPollable, Pollable};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, ResourceTable, WasiCtx, WasiCtxView, WasiView};

use super::bindings::projector::projection::{log, state};
use super::bindings::types::Level;

/// Largest state value a plugin may store under one key.
pub(super) const MAX_STATE_VALUE: usize = 64 * 1024;
/// Largest state key.
pub(super) const MAX_STATE_KEY: usize = 512;
/// Most log lines one call may write; the rest are counted and dropped.
const MAX_LOG_LINES: u32 = 100;
/// Longest log line kept, in bytes.
const MAX_LOG_LINE: usize = 2048;
/// How much of the plugin's stderr is kept (a Rust panic message lands there).
pub(super) const STDERR_CAPACITY: usize = 64 * 1024;
/// Most state writes (sets and removals) one call may make.
pub(super) const MAX_STATE_WRITES: usize = 100_000;
/// Most bytes of state values one call may write.
pub(super) const MAX_STATE_BYTES: usize = 64 << 20;
/// Most core instances, tables and linear memories in one store (a component of any of our
/// languages needs at most a few dozen).
const MAX_INSTANCES: usize = 100;
/// What one table element is charged against the memory budget, in bytes (a pointer, as
/// wasmtime stores it, plus bookkeeping).
const TABLE_ELEMENT_BYTES: usize = 16;

/// Loads state a batch did not prefetch. Called from the plugin thread; may block. An error
/// wrapping [`StateUnavailable`] says the store is down for now: the call fails with
/// [`super::CallError::StateUnavailable`] and can be retried; any other error is final.
pub type StateLoader = Box<dyn FnMut(&str) -> anyhow::Result<Option<Vec<u8>>> + Send>;

/// A state load failed because the store is unavailable for now (retrying may work).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StateUnavailable(pub String);

/// The per-key state a batch sees: what was read from the database plus the batch's own writes.
///
/// Invariant: `writes` holds exactly the keys changed during the batch, with `None` for a
/// removal; reads see the batch's writes first, then what was loaded.
pub struct StateOverlay {
    loaded: HashMap<String, Option<Vec<u8>>>,
    writes: HashMap<String, Option<Vec<u8>>>,
    loader: StateLoader,
    /// Set when a load failed with [`StateUnavailable`].
    unavailable: Option<String>,
}

impl StateOverlay {
    /// An overlay over prefetched values (`None` = known to be absent).
    pub fn new(loaded: HashMap<String, Option<Vec<u8>>>, loader: StateLoader) -> Self {
        Self { loaded, writes: HashMap::new(), loader, unavailable: None }
    }

    /// Reads a key, loading it on a miss.
    pub fn get(&mut self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        if let Some(value) = self.writes.get(key) {
            return Ok(value.clone());
        }
        if let Some(value) = self.loaded.get(key) {
            return Ok(value.clone());
        }
        let value = (self.loader)(key).inspect_err(|e| {
            if let Some(StateUnavailable(message)) = e.downcast_ref() {
                self.unavailable = Some(message.clone());
            }
        })?;
        self.loaded.insert(key.to_string(), value.clone());
        Ok(value)
    }

    /// Why a load failed with [`StateUnavailable`], if one did.
    pub fn unavailable(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// The batch's writes: key to new value, `None` for a removal.
    pub fn writes(&self) -> &HashMap<String, Option<Vec<u8>>> {
        &self.writes
    }

    fn write(&mut self, key: String, value: Option<Vec<u8>>) {
        self.writes.insert(key, value);
    }
}

/// The data of one plugin `Store`: one call's sandbox.
pub(super) struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: MemoryCap,
    stderr: MemoryOutputPipe,
    pub(super) state: Option<StateOverlay>,
    projection: String,
    /// Timers made in this call (see [`MAX_TIMERS`]).
    timers: u32,
    log_lines: u32,
    /// State writes and bytes written by this call so far.
    state_writes: usize,
    state_bytes: usize,
}

impl Sandbox {
    /// A fresh sandbox whose linear memory may grow to `max_memory` bytes.
    pub(super) fn new(projection: &str, max_memory: usize, state: Option<StateOverlay>) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let mut wasi = WasiCtx::builder();
        wasi.stderr(stderr.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(wasmtime_wasi::Deterministic::new(REPLAYED_BYTES.to_vec()))
            .insecure_random(wasmtime_wasi::Deterministic::new(REPLAYED_BYTES.to_vec()))
            .insecure_random_seed(0x5eed)
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false);
        Self {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: MemoryCap { max_memory, exceeded: None, used: 0, peak: 0 },
            stderr,
            state,
            projection: projection.to_string(),
            log_lines: 0,
            state_writes: 0,
            state_bytes: 0,
            timers: 0,
        }
    }

    /// The limiter enforcing the memory cap.
    pub(super) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limits
    }

    /// The most memory the store's memories and tables took together.
    pub(super) fn peak_memory(&self) -> usize {
        self.limits.peak
    }

    /// The total the plugin tried to grow its memories and tables to beyond the cap, if it did.
    pub(super) fn memory_exceeded(&self) -> Option<usize> {
        self.limits.exceeded
    }

    /// What the plugin wrote to stderr, lossily decoded and trimmed.
    pub(super) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents()).trim().to_string()
    }

    /// Counts one state write of `bytes` against the call's caps.
    fn count_write(&mut self, bytes: usize) -> wasmtime::Result<()> {
        self.state_writes += 1;
        self.state_bytes += bytes;
        if self.state_writes > MAX_STATE_WRITES {
            wasmtime::bail!("the plugin made more than {MAX_STATE_WRITES} state writes in one call");
        }
        if self.state_bytes > MAX_STATE_BYTES {
            wasmtime::bail!("the plugin wrote more than {MAX_STATE_BYTES} bytes of state in one call");
        }
        Ok(())
    }

    fn state(&mut self) -> wasmtime::Result<&mut StateOverlay> {
        self.state.as_mut().ok_or_else(|| wasmtime::format_err!("state is not available during describe"))
    }
}

/// One memory budget for a whole store: every linear memory and table of every core instance
/// counts against it (a component may have many), remembering a refused growth so the call's
/// error can say so.
struct MemoryCap {
    max_memory: usize,
    exceeded: Option<usize>,
    /// Bytes the store's memories and tables take now (each creation and growth is reported
    /// with the size before and after, a creation from zero).
    used: usize,
    peak: usize,
}

impl MemoryCap {
    fn grow(&mut self, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let after = self.used.saturating_sub(current).saturating_add(desired);
        self.peak = self.peak.max(after);
        if after > self.max_memory {
            self.exceeded = Some(after);
            // Trap instead of returning -1 from memory.grow: a guest allocator that cannot
            // grow aborts anyway, and the trap carries a clearer message.
            wasmtime::bail!(
                "memory limit exceeded: the plugin's memories and tables would take {after} bytes, the cap is {} bytes",
                self.max_memory
            );
        }
        self.used = after;
        Ok(true)
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.grow(current, desired)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.grow(current.saturating_mul(TABLE_ELEMENT_BYTES), desired.saturating_mul(TABLE_ELEMENT_BYTES))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_INSTANCES
    }
}

/// Bytes the random stand-ins replay. Fixed so that replays are identical.
const REPLAYED_BYTES: [u8; 16] = *b"projector-replay";

/// A wall and monotonic clock stopped at the Unix epoch.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// `wasi:clocks/monotonic-clock` as a plugin sees it: frozen at zero, every timer due at once.
pub(super) struct InstantTimers;

impl HasData for InstantTimers {
    type Data<'a> = Timers<'a>;
}

/// The view [`InstantTimers`] works on.
pub(super) struct Timers<'a> {
    table: &'a mut ResourceTable,
    /// Timers made in this call so far.
    made: &'a mut u32,
}

/// Most timers (sleeps) one call may make. Each is due at once and costs the guest next to no
/// fuel, so a plugin sleeping in a loop would otherwise spin in the host until the wall-clock
/// deadline, which blames no event; past this many it traps, deterministically.
pub(super) const MAX_TIMERS: u32 = 10_000;

impl Sandbox {
    /// The view the monotonic clock's host functions need.
    pub(super) fn timers(&mut self) -> Timers<'_> {
        Timers { table: &mut self.table, made: &mut self.timers }
    }
}

/// A timer that is always due.
struct Due;

#[async_trait::async_trait]
impl Pollable for Due {
    async fn ready(&mut self) {}
}

impl Timers<'_> {
    fn due(&mut self) -> wasmtime::Result<Resource<DynPollable>> {
        *self.made += 1;
        if *self.made > MAX_TIMERS {
            wasmtime::bail!("more than {MAX_TIMERS} sleeps or timers in one call: time does not pass inside the sandbox, so waiting for it never ends");
        }
        let timer = self.table.push(Due)?;
        wasmtime_wasi::p2::subscribe(self.table, timer)
    }
}

impl monotonic_clock::Host for Timers<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(HostMonotonicClock::now(&FrozenClock))
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(HostMonotonicClock::resolution(&FrozenClock))
    }

    fn subscribe_instant(&mut self, _when: monotonic_clock::Instant) -> wasmtime::Result<Resource<DynPollable>> {
        self.due()
    }

    fn subscribe_duration(&mut self, _duration: monotonic_clock::Duration) -> wasmtime::Result<Resource<DynPollable>> {
        self.due()
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl state::Host for Sandbox {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        self.state()?.get(&key).map_err(|e| wasmtime::format_err!("loading state under `{key}` failed: {e:#}"))
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<()> {
        check_key(&key)?;
        if value.len() > MAX_STATE_VALUE {
            wasmtime::bail!("state value under `{key}` is {} bytes; the limit is {MAX_STATE_VALUE}", value.len());
        }
        self.count_write(key.len() + value.len())?;
        self.state()?.write(key, Some(value));
        Ok(())
    }

    fn remove(&mut self, key: String) -> wasmtime::Result<()> {
        check_key(&key)?;
        self.count_write(key.len())?;
        self.state()?.write(key, None);
        Ok(())
    }
}

fn check_key(key: &str) -> wasmtime::Result<()> {
    if key.is_empty() || key.len() > MAX_STATE_KEY {
        wasmtime::bail!("state keys must be 1 to {MAX_STATE_KEY} bytes long");
    }
    if key.contains('\0') {
        wasmtime::bail!("state keys cannot contain a NUL character (U+0000)");
    }
    Ok(())
}

impl log::Host for Sandbox {
    fn write(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            if self.log_lines == MAX_LOG_LINES + 1 {
                tracing::warn!(projection = %self.projection, "Plugin log limit reached; dropping further lines of this call.");
            }
            return Ok(());
        }
        let mut message = message;
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let projection = &self.projection;
        match level {
            Level::Debug => {
                tracing::debug!(target: "plugin", projection = %projection, "{message}")
            }
            Level::Info => tracing::info!(target: "plugin", projection = %projection, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", projection = %projection, "{message}"),
            Level::Error => {
                tracing::error!(target: "plugin", projection = %projection, "{message}")
            }
        }
        Ok(())
    }
}

impl super::bindings::types::Host for Sandbox {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_reads_writes_first_then_loaded_then_loader() {
        let mut loaded = HashMap::new();
        loaded.insert("a".to_string(), Some(b"1".to_vec()));
        loaded.insert("gone".to_string(), None);
        let mut overlay =
            StateOverlay::new(loaded, Box::new(|key| Ok(if key == "far" { Some(b"3".to_vec()) } else { None })));
        assert_eq!(overlay.get("a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(overlay.get("gone").unwrap(), None);
        assert_eq!(overlay.get("far").unwrap(), Some(b"3".to_vec()));
        overlay.write("a".into(), Some(b"2".to_vec()));
        overlay.write("far".into(), None);
        assert_eq!(overlay.get("a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(overlay.get("far").unwrap(), None);
        assert_eq!(overlay.writes().len(), 2);
    }

    #[test]
    fn one_budget_covers_every_memory_and_table_of_a_store() {
        let mut cap = MemoryCap { max_memory: 1000, exceeded: None, used: 0, peak: 0 };
        assert!(cap.memory_growing(0, 400, None).unwrap(), "a first memory");
        assert!(cap.memory_growing(0, 400, None).unwrap(), "a second memory");
        assert!(cap.table_growing(0, 10, None).unwrap(), "160 bytes of table");
        assert!(cap.memory_growing(400, 440, None).unwrap(), "the first grows within the budget");
        let refused = cap.memory_growing(0, 1, None).unwrap_err().to_string();
        assert!(refused.contains("would take 1001 bytes, the cap is 1000 bytes"), "{refused}");
        assert_eq!((cap.exceeded, cap.used, cap.peak), (Some(1001), 1000, 1001));
        assert!(cap.table_growing(10, 11, None).is_err(), "tables count too");
    }
}
