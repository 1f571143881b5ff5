//! Builds the plugin workspace for `wasm32-wasip2` and exposes each component's path as a
//! compile-time environment variable (`ORDER_SUMMARIES_WASM`, ...), so tests always run
//! against components built from the current sources.

use std::path::PathBuf;
use std::process::Command;

const PLUGINS: &[&str] = &[
    "order_summaries",
    "order_details",
    "daily_order_stats",
    "misbehaving",
    "order_summaries_v2",
    "other_world",
    "invalid_spec",
    "extra_import",
    "order_search",
];

/// Plugins written in other languages, each built by its own toolchain's script
/// (`<script> <out dir>`, installing the pinned toolchain when missing): (env prefix, script,
/// components). `order_summaries` of each must equal the Rust one.
const OTHER_LANGUAGES: &[(&str, &str, &[&str])] = &[
    ("PY", "plugins/python/build.sh", &["order_summaries", "customer_ltv", "sleeper"]),
    ("JS", "plugins/js/build.sh", &["order_summaries", "sku_sales"]),
];

/// Set (to anything but `0`), the Python and JavaScript components are not built.
const SKIP_OTHER_LANGUAGES: &str = "PROJECTOR_SKIP_OTHER_LANGUAGES";

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap();
    for dir in ["plugins", "sdk", "wit"] {
        for entry in walk(&root.join(dir)) {
            println!("cargo:rerun-if-changed={}", entry.display());
        }
    }
    let target_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("plugins-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // A clean environment: the variables cargo sets for this build script (TARGET, OPT_LEVEL,
    // RUSTFLAGS, ...) must not leak into the guest build.
    let mut command = Command::new(cargo);
    command.env_clear();
    for key in ["PATH", "HOME", "CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN"] {
        if let Ok(value) = std::env::var(key) {
            command.env(key, value);
        }
    }
    let status = command
        .current_dir(root.join("plugins"))
        .args(["build", "--release", "--locked", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target_dir)
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building the plugins failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)"
    );
    // For an editor's `cargo check`, which should not start Python and Node: the components'
    // variables then name a path that says why it is missing, so only the tests that load them
    // fail. The test command never sets it.
    println!("cargo:rerun-if-env-changed={SKIP_OTHER_LANGUAGES}");
    let skip = std::env::var_os(SKIP_OTHER_LANGUAGES).is_some_and(|v| !v.is_empty() && v != "0");
    for (prefix, script, components) in OTHER_LANGUAGES {
        if skip {
            for component in *components {
                let missing = format!("not-built-because-{SKIP_OTHER_LANGUAGES}-is-set/{component}.wasm");
                println!("cargo:rustc-env={prefix}_{}_WASM={missing}", component.to_uppercase());
            }
            continue;
        }
        let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join(prefix.to_lowercase());
        let mut command = Command::new("bash");
        command.env_clear();
        for key in ["PATH", "HOME", "CARGO_HOME", "PROJECTOR_CACHE_DIR"] {
            if let Ok(value) = std::env::var(key) {
                command.env(key, value);
            }
        }
        let status = command.arg(root.join(script)).arg(&out).status().expect("bash runs");
        assert!(status.success(), "{script} failed (see its output above)");
        for component in *components {
            let path = out.join(format!("{component}.wasm"));
            assert!(path.exists(), "{script} did not build {}", path.display());
            println!("cargo:rustc-env={prefix}_{}_WASM={}", component.to_uppercase(), path.display());
        }
    }
    for plugin in PLUGINS {
        let path = target_dir.join("wasm32-wasip2/release").join(format!("{plugin}.wasm"));
        assert!(path.exists(), "{} was not built", path.display());
        println!("cargo:rustc-env={}_WASM={}", plugin.to_uppercase(), path.display());
    }
}

/// Every file under `dir`, skipping build output.
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let skipped = ["target", "node_modules", "dist", "__pycache__", ".venv"];
        if path.file_name().is_some_and(|n| skipped.iter().any(|s| n == *s)) {
            continue;
        }
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
