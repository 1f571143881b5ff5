//! Native test support: run a [`Projection`](crate::Projection) over events and assert the
//! exact rows it produces, without a host, a broker or a database.
//!
//! Invariants: [`Harness`] applies operations with the semantics the WIT contract documents
//! (upsert merges, delete removes, increment adds with absent or null as zero, JSON-object
//! amounts add key by key and drop keys reaching zero) and computes ratio fields as the host
//! does. It is stricter than necessary rather than more lenient: an operation the host would
//! reject (unknown collection or field, wrong type, a write to a computed or key field, a null
//! in a non-nullable field) panics the test. Only built for non-`wasm32` targets.

#[cfg(test)]
mod conformance;
mod harness;
mod read_model;
mod row;
mod samples;
mod spec_check;
mod values;

pub use harness::{Harness, Runner};
pub use row::Row;
pub use samples::{event_from_sample, events_from_samples};
