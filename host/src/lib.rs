//! Projector: Kafka order events to query-ready read models, through sandboxed WebAssembly
//! projection plugins.
//!
//! The pieces, each knowing only its own job: [`source`] reads the topic, [`runtime`] runs
//! plugins in wasmtime sandboxes, [`changeset`] folds their operations, [`sink`] writes read
//! models with their offsets. [`pipeline`] is the one place where they meet. The control plane:
//! [`registry`] (uploaded components and deployments in PostgreSQL), [`supervisor`] (runs what
//! the registry says, promotes what caught up), [`admin`] (the HTTP API over both).

#![warn(unreachable_pub)]

pub mod admin;
pub mod app;
pub mod changeset;
pub mod config;
pub mod contract;
pub mod demo;
pub mod dryrun;
mod metrics;
mod pipeline;
pub mod progress;
mod query;
pub mod registry;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod spec;
mod status;
mod supervisor;
