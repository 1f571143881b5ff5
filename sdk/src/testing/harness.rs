//! Feed events to a projection natively and keep its state and read model in memory.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use super::read_model::ReadModel;
use super::row::Row;
use crate::{Context, Error, Event, Key, Level, Operation, Projection, ProjectionSpec};

/// Runs projection `P` over events the way the host does, keeping its per-key state and an
/// in-memory read model across calls.
///
/// An event whose `handle` fails leaves no trace: its state writes are rolled back and no
/// operation is applied.
pub struct Harness<P> {
    spec: ProjectionSpec,
    ctx: Context,
    model: ReadModel,
    projection: PhantomData<fn() -> P>,
}

impl<P: Projection> Default for Harness<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Projection> Harness<P> {
    /// A harness with empty state and an empty read model for `P::describe()`.
    ///
    /// # Panics
    /// When the host would refuse the spec (bad names, a missing or nullable key field, a
    /// ratio over non-numeric fields, ...).
    pub fn new() -> Self {
        let spec = P::describe();
        let model = ReadModel::new(&spec).unwrap_or_else(|e| panic!("invalid projection spec: {e}"));
        Self { spec, ctx: Context::new(), model, projection: PhantomData }
    }

    /// Handles one event and applies the operations it returns; returns what `handle` returned.
    ///
    /// # Panics
    /// When an operation would be rejected by the host (unknown collection or field, wrong
    /// type, a write to a key or computed field, a null in a non-nullable field).
    pub fn feed(&mut self, event: &Event) -> Result<Vec<Operation>, Error> {
        let result = P::handle(event, &mut self.ctx);
        match &result {
            Ok(ops) => {
                self.ctx.commit();
                for op in ops {
                    if let Err(e) = self.model.apply(op) {
                        panic!("event at offset {}: the host would reject {op:?}: {e}", event.offset);
                    }
                }
            }
            Err(_) => self.ctx.discard(),
        }
        result
    }

    /// Feeds `events` in order; one result per event.
    pub fn feed_all<'a, I>(&mut self, events: I) -> Vec<Result<Vec<Operation>, Error>>
    where
        I: IntoIterator<Item = &'a Event>,
    {
        events.into_iter().map(|event| self.feed(event)).collect()
    }

    /// The rows of `collection`, in primary-key order.
    ///
    /// # Panics
    /// When the projection declares no such collection.
    pub fn rows(&self, collection: &str) -> Vec<&Row> {
        self.model
            .rows(collection)
            .unwrap_or_else(|| panic!("projection `{}` has no collection `{collection}`", self.spec.name()))
    }

    /// The row of `collection` with primary key `key`, if any.
    pub fn row(&self, collection: &str, key: impl Into<Key>) -> Option<&Row> {
        self.model.row(collection, key.into().values())
    }

    /// The state stored under `key`, decoded from JSON.
    pub fn state<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>, Error> {
        self.ctx.state(key)
    }

    /// The raw JSON bytes stored under `key`, e.g. to check the state stays small.
    pub fn state_bytes(&self, key: &str) -> Option<&[u8]> {
        self.ctx.native.state.get(key).map(Vec::as_slice)
    }

    /// The log lines written so far, oldest first.
    pub fn logs(&self) -> &[(Level, String)] {
        &self.ctx.native.logs
    }

    /// The spec `P::describe()` returned.
    pub fn spec(&self) -> &ProjectionSpec {
        &self.spec
    }
}

/// Runs projection `P` natively with in-memory per-key state and nothing else: the work a
/// component does inside the host's sandbox, without the sandbox. The native baseline of the
/// benchmarks; use [`Harness`] to assert rows.
pub struct Runner<P> {
    ctx: Context,
    projection: PhantomData<fn() -> P>,
}

impl<P: Projection> Default for Runner<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Projection> Runner<P> {
    /// A runner with empty state.
    pub fn new() -> Self {
        Self { ctx: Context::new(), projection: PhantomData }
    }

    /// Handles one event: keeps its state writes when it succeeds, drops them when it fails.
    pub fn handle(&mut self, event: &Event) -> Result<Vec<Operation>, Error> {
        let result = P::handle(event, &mut self.ctx);
        match &result {
            Ok(_) => self.ctx.commit(),
            Err(_) => self.ctx.discard(),
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::event_from_sample;
    use crate::{Collection, Field, Value};

    /// Counts events per key, failing on events without a key.
    struct Counter;

    impl Projection for Counter {
        fn describe() -> ProjectionSpec {
            ProjectionSpec::new("counter", 1, "Counts events per key.").collection(
                Collection::postgres("counts", "One row per key.")
                    .field(Field::text("key"))
                    .field(Field::integer("n").required())
                    .primary_key(["key"]),
            )
        }

        fn handle(event: &Event, ctx: &mut Context) -> Result<Vec<Operation>, Error> {
            ctx.set_state("last", &event.offset)?;
            let key = event.key_str().ok_or_else(|| Error::new("no key"))?;
            ctx.log(Level::Debug, format!("counting {key}"));
            Ok(vec![Operation::increment("counts", key).add("n", 1_i64).into()])
        }
    }

    #[test]
    fn feeds_events_and_keeps_rows() {
        let mut h = Harness::<Counter>::new();
        let a = event_from_sample(r#"{"key": "a", "headers": {}, "value": {}}"#);
        let none = event_from_sample(r#"{"key": null, "headers": {}, "value": {}}"#);
        let results = h.feed_all([&a, &a, &none]);
        assert!(results[0].is_ok() && results[1].is_ok());
        assert_eq!(results[2].as_ref().unwrap_err().message(), "no key");
        assert_eq!(h.rows("counts").len(), 1);
        assert_eq!(h.row("counts", "a").unwrap().to_json(), json!({"key": "a", "n": 2}));
        assert_eq!(h.row("counts", "a").unwrap()["n"], Value::Integer(2));
        assert_eq!(h.logs().len(), 2);
        assert_eq!(h.state_bytes("last"), Some(&b"0"[..]), "the failed event's state write is rolled back");
    }

    #[test]
    #[should_panic(expected = "the host would reject")]
    fn invalid_operations_panic() {
        struct Bad;
        impl Projection for Bad {
            fn describe() -> ProjectionSpec {
                Counter::describe()
            }
            fn handle(_: &Event, _: &mut Context) -> Result<Vec<Operation>, Error> {
                Ok(vec![Operation::upsert("counts", "k").into()])
            }
        }
        // The new row's required `n` would be null.
        Harness::<Bad>::new().feed(&Event::default()).ok();
    }
}
