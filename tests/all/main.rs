//! End-to-end tests: real PostgreSQL, real Apache Kafka broker, real `projector` processes running
//! real plugin components. One binary, so the workspace links once.

mod crash;
mod query;
mod e2e;
mod admin;
mod failures;
mod poison;
mod groups;
mod sandbox;
mod languages;
