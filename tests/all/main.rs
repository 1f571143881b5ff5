//! End-to-end tests: real PostgreSQL, real Apache Kafka broker, real `projector` processes running
//! real plugin components. One binary, so the workspace links once.

mod admin;
mod conformance;
mod crash;
mod e2e;
mod failures;
mod groups;
mod languages;
mod poison;
mod query;
mod sandbox;
mod search_engine;
