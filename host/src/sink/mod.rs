//! Where read models are written.

pub mod postgres;
