//! What a projection may touch besides its event: per-key state and the host's log.
//!
//! Invariants: state is JSON-encoded, at most 64 KiB per key, and exactly-once: the host
//! stores it in the same transaction as the read-model writes and the offsets, and a write is
//! visible to later events of the same batch. An event's state writes are held back until its
//! `handle` returns `Ok`, and dropped on `Err`: a failed event leaves no state behind. Keys
//! must be derived from the record key (for `order-events`, the order id): the host guarantees
//! one writer per partition, not per key. On `wasm32` the calls go to the WIT `state` and `log`
//! imports; natively (unit tests) to an in-memory map and log kept by the [`Context`] itself.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::Error;

/// The most bytes the host stores under one state key.
pub const MAX_STATE_BYTES: usize = 64 * 1024;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Detail for plugin authors.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the plugin handled.
    Warn,
    /// Something the plugin could not handle.
    Error,
}

/// Per-key state and logging for the event being handled.
#[derive(Debug, Default)]
pub struct Context {
    /// The current event's writes (`None`: removed), not yet passed to the host.
    pending: BTreeMap<String, Option<Vec<u8>>>,
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) native: native::Store,
}

impl Context {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Passes the current event's state writes to the host: the event succeeded.
    pub(crate) fn commit(&mut self) {
        for (key, value) in std::mem::take(&mut self.pending) {
            match value {
                Some(bytes) => self.store_set(&key, bytes),
                None => self.store_remove(&key),
            }
        }
    }

    /// Drops the current event's state writes: the event failed.
    pub(crate) fn discard(&mut self) {
        self.pending.clear();
    }

    fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        match self.pending.get(key) {
            Some(pending) => pending.clone(),
            None => self.store_get(key),
        }
    }

    fn set(&mut self, key: &str, value: Vec<u8>) {
        self.pending.insert(key.to_owned(), Some(value));
    }

    fn remove(&mut self, key: &str) {
        self.pending.insert(key.to_owned(), None);
    }

    /// The state stored under `key`, decoded from JSON; `Ok(None)` when there is none.
    pub fn state<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>, Error> {
        let Some(bytes) = self.get(key) else {
            return Ok(None);
        };
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|e| Error::new(format!("corrupt state under key `{key}`: {e}")))?;
        Ok(Some(value))
    }

    /// Stores `value` under `key` as JSON, replacing what was there. Fails when the encoding
    /// is over [`MAX_STATE_BYTES`].
    pub fn set_state<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value)?;
        if bytes.len() > MAX_STATE_BYTES {
            return Err(Error::new(format!(
                "state under key `{key}` is {} bytes, over the {MAX_STATE_BYTES}-byte limit",
                bytes.len()
            )));
        }
        self.set(key, bytes);
        Ok(())
    }

    /// Removes the state under `key`, if any.
    pub fn remove_state(&mut self, key: &str) {
        self.remove(key);
    }

    /// Writes a line to the host's log, tagged with the projection and event. The host
    /// rate-limits plugin logs: nothing per event above [`Level::Debug`] in normal operation.
    pub fn log(&mut self, level: Level, message: impl AsRef<str>) {
        self.write_log(level, message.as_ref());
    }
}

#[cfg(target_arch = "wasm32")]
impl Context {
    fn store_get(&mut self, key: &str) -> Option<Vec<u8>> {
        crate::guest::state::get(key)
    }

    fn store_set(&mut self, key: &str, value: Vec<u8>) {
        crate::guest::state::set(key, &value);
    }

    fn store_remove(&mut self, key: &str) {
        crate::guest::state::remove(key);
    }

    fn write_log(&mut self, level: Level, message: &str) {
        crate::guest::log(level, message);
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Context {
    fn store_get(&mut self, key: &str) -> Option<Vec<u8>> {
        self.native.state.get(key).cloned()
    }

    fn store_set(&mut self, key: &str, value: Vec<u8>) {
        self.native.state.insert(key.to_owned(), value);
    }

    fn store_remove(&mut self, key: &str) {
        self.native.state.remove(key);
    }

    fn write_log(&mut self, level: Level, message: &str) {
        self.native.logs.push((level, message.to_owned()));
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod native {
    use std::collections::BTreeMap;

    use super::Level;

    /// The state and log a native [`Context`](super::Context) keeps in memory.
    #[derive(Debug, Default)]
    pub(crate) struct Store {
        pub(crate) state: BTreeMap<String, Vec<u8>>,
        pub(crate) logs: Vec<(Level, String)>,
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_as_json() {
        let mut ctx = Context::new();
        assert_eq!(ctx.state::<Vec<String>>("ord-1").unwrap(), None);
        ctx.set_state("ord-1", &vec!["e-1".to_string()]).unwrap();
        assert_eq!(ctx.state::<Vec<String>>("ord-1").unwrap(), Some(vec!["e-1".to_string()]));
        assert!(ctx.state::<u32>("ord-1").unwrap_err().message().contains("corrupt state"));
        ctx.remove_state("ord-1");
        assert_eq!(ctx.state::<Vec<String>>("ord-1").unwrap(), None);
    }

    #[test]
    fn writes_reach_the_store_only_on_commit() {
        let mut ctx = Context::new();
        ctx.set_state("a", &1).unwrap();
        assert_eq!(ctx.state::<i32>("a").unwrap(), Some(1), "visible to the same event");
        assert!(ctx.native.state.is_empty());
        ctx.commit();
        assert_eq!(ctx.native.state.get("a").map(Vec::as_slice), Some(&b"1"[..]));
        ctx.set_state("a", &2).unwrap();
        ctx.remove_state("a");
        ctx.discard();
        assert_eq!(ctx.state::<i32>("a").unwrap(), Some(1), "a failed event leaves no trace");
        ctx.remove_state("a");
        ctx.commit();
        assert!(ctx.native.state.is_empty());
    }

    #[test]
    fn oversized_state_is_refused() {
        let mut ctx = Context::new();
        let big = "x".repeat(MAX_STATE_BYTES);
        assert!(ctx.set_state("k", &big).unwrap_err().message().contains("limit"));
        assert_eq!(ctx.state::<String>("k").unwrap(), None);
    }

    #[test]
    fn logs_are_kept() {
        let mut ctx = Context::new();
        ctx.log(Level::Warn, "odd");
        assert_eq!(ctx.native.logs, vec![(Level::Warn, "odd".to_string())]);
    }
}
