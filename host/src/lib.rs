//! Projector: Kafka order events to query-ready read models, through sandboxed WebAssembly
//! projection plugins.
//!
//! The pieces, each knowing only its own job: [`source`] reads the topic, [`runtime`] runs
//! plugins in wasmtime sandboxes, [`changeset`] folds their operations, [`sink`] writes read
//! models with their offsets. `pipeline` is the one place where they meet. The control plane:
//! [`registry`] (uploaded components and deployments in PostgreSQL), `supervisor` (runs what
//! the registry says, promotes what caught up), [`admin`] (the HTTP API over both).
//! `docs/ARCHITECTURE.md` is the map.

#![warn(unreachable_pub)]

pub mod admin;
pub mod app;
pub mod changeset;
pub mod config;
pub mod contract;
pub mod dryrun;
mod http_error;
mod metrics;
mod pipeline;
pub mod progress;
mod query;
pub mod registry;
pub mod runtime;
mod shared;
pub mod sink;
pub mod source;
pub mod spec;
mod status;
mod supervisor;

#[cfg(test)]
mod layering {
    //! The module graph stays a hierarchy: no top-level module reaches, through the `crate::`
    //! paths in its files (tests aside), back to itself. See docs/ARCHITECTURE.md.

    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Top-level module to the top-level modules its non-test code names.
    fn graph() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut stack = vec![src.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let relative = path.strip_prefix(&src).unwrap();
                let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
                let module = first.trim_end_matches(".rs").to_string();
                if ["lib", "main", "command"].contains(&module.as_str()) {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                let uses = graph.entry(module.clone()).or_default();
                for (at, _) in code.match_indices("crate::") {
                    let name: String =
                        code[at + 7..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                    if !name.is_empty() && name != module {
                        uses.insert(name);
                    }
                }
            }
        }
        graph
    }

    #[test]
    fn no_module_imports_reach_back_to_themselves() {
        let graph = graph();
        assert!(graph.contains_key("pipeline") && graph["pipeline"].contains("source"), "the scan found the modules");
        for start in graph.keys() {
            // Depth-first from `start`, carrying the path, to name the cycle if there is one.
            let mut stack = vec![vec![start.clone()]];
            let mut seen = BTreeSet::new();
            while let Some(path) = stack.pop() {
                let last = path.last().unwrap();
                for next in graph.get(last).into_iter().flatten() {
                    assert!(next != start, "import cycle: {} -> {next}", path.join(" -> "));
                    if seen.insert(next.clone()) {
                        let mut longer = path.clone();
                        longer.push(next.clone());
                        stack.push(longer);
                    }
                }
            }
        }
    }
}
