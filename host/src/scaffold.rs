//! `projector new <name> --lang rust|python|js`: a plugin project that builds to an uploadable
//! component with one command and carries a test of its own.
//!
//! Every template is a working projection (`<name>`, version 1): one row per record key with
//! the last event type seen and a count of events, so a new author starts from something that
//! runs, then changes it. Python and JavaScript projects are self-contained (the WIT contract and
//! the helper module are copied in); a Rust project depends on the SDK by path.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::spec::is_identifier;

/// A plugin language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, through the `projector-sdk` crate.
    Rust,
    /// Python, through componentize-py.
    Python,
    /// JavaScript, through componentize-js.
    Js,
}

/// Where the SDK of this checkout is, for Rust projects made on this machine.
pub fn default_sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk")
}

/// Creates `<dir>/<name>`; returns its path.
pub fn create(name: &str, lang: Lang, dir: &Path, sdk: &Path) -> anyhow::Result<PathBuf> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!("the name must be lowercase ASCII letters, digits and `-`, starting with a letter (it becomes the projection name)");
    }
    let collection = name.replace('-', "_");
    debug_assert!(is_identifier(&collection));
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    let files = match lang {
        Lang::Rust => rust(name, &collection, sdk)?,
        Lang::Python | Lang::Js => bail!("only --lang rust is available in this version"),
    };
    for (path, content) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("a file path"))?;
        std::fs::write(&path, content).with_context(|| format!("cannot write {}", path.display()))?;
        if path.extension().is_some_and(|e| e == "sh") {
            make_executable(&path)?;
        }
    }
    Ok(root)
}

fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut permissions = std::fs::metadata(path)?.permissions();
    permissions.set_mode(0o755);
    std::fs::set_permissions(path, permissions)?;
    Ok(())
}

fn rust(name: &str, collection: &str, sdk: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let sdk = sdk.canonicalize().with_context(|| format!("the SDK is not at {} (pass --sdk)", sdk.display()))?;
    let crate_name = name.replace('-', "_");
    let type_name: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    let cargo = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
projector-sdk = {{ path = "{sdk}" }}

[profile.release]
opt-level = 3
lto = true
codegen-units = 1
strip = "debuginfo"

# A project of its own, not a member of any enclosing workspace.
[workspace]
"#,
        sdk = sdk.display()
    );
    let lib = format!(
        r##"//! `{name}`: one row per record key, with the last event type seen and how many events
//! arrived. A starting point: change `describe` and `handle` to build your read model.

use projector_sdk::{{Collection, Context, Error, Event, Field, Operation, Projection, ProjectionSpec}};

/// The collection this projection writes.
pub const COLLECTION: &str = "{collection}";

/// The `{name}` projection.
pub struct {type_name};

impl Projection for {type_name} {{
    fn describe() -> ProjectionSpec {{
        ProjectionSpec::new("{name}", 1, "Events per record key.").collection(
            Collection::postgres(COLLECTION, "One row per record key.")
                .field(Field::text("id").description("The record key."))
                .field(Field::text("last_type").filterable().description("Type of the last event."))
                .field(Field::integer("events").sortable().description("Events received."))
                .primary_key(["id"]),
        )
    }}

    fn handle(event: &Event, _ctx: &mut Context) -> Result<Vec<Operation>, Error> {{
        let (Some(id), Some(kind)) = (event.key_str(), event.event_type()) else {{
            return Ok(Vec::new());
        }};
        Ok(vec![
            Operation::upsert(COLLECTION, id).set("last_type", kind).into(),
            Operation::increment(COLLECTION, id).add("events", 1_i64).into(),
        ])
    }}
}}

projector_sdk::export_projection!({type_name});

#[cfg(test)]
mod tests {{
    use projector_sdk::testing::{{event_from_sample, Harness}};
    use projector_sdk::Value;

    use super::*;

    #[test]
    fn counts_events_per_key() {{
        let mut harness = Harness::<{type_name}>::new();
        let created = event_from_sample(r#"{{"key": "ord-1", "headers": {{"__TypeId__": "x.OrderCreated"}}, "value": {{}}}}"#);
        let shipped = event_from_sample(r#"{{"key": "ord-1", "headers": {{}}, "value": {{"type": "OrderShipped"}}}}"#);
        harness.feed_all([&created, &shipped]);
        let row = harness.row(COLLECTION, "ord-1").expect("a row");
        assert_eq!(row["last_type"], Value::Text("OrderShipped".into()));
        assert_eq!(row["events"], Value::Integer(2));
    }}
}}
"##
    );
    let readme = format!(
        r#"# {name}

A Projector projection plugin in Rust.

```sh
cargo build --release --target wasm32-wasip2        # -> target/wasm32-wasip2/release/{crate_name}.wasm
cargo test                                         # the plugin logic, natively
projector projections push target/wasm32-wasip2/release/{crate_name}.wasm
```

See docs/writing-plugins.md in the Projector repository.
"#
    );
    Ok(vec![
        ("Cargo.toml".into(), cargo),
        ("src/lib.rs".into(), lib),
        ("README.md".into(), readme),
        (".gitignore".into(), "/target\n".into()),
    ])
}
