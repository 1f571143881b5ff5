//! `projector new <name> --lang rust|python|js`: a plugin project that builds to an uploadable
//! component with one command and carries a test of its own.
//!
//! Every template is a working projection (`<name>`, version 1): one row per record key with
//! the last event type seen and a count of events, so a new author starts from something that
//! runs, then changes it. Python and JavaScript projects are self-contained (the WIT contract and
//! the helper module are copied in); a Rust project depends on the SDK by path.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use projector::spec::{is_identifier, is_projection_name};

/// A plugin language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Lang {
    /// Rust, through the `projector-sdk` crate.
    Rust,
    /// Python, through componentize-py.
    Python,
    /// JavaScript, through componentize-js.
    Js,
}

/// Where the SDK of this checkout is, for Rust projects made on this machine.
pub(crate) fn default_sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk")
}

/// Creates `<dir>/<name>`; returns its path.
pub(crate) fn create(name: &str, lang: Lang, dir: &Path, sdk: &Path) -> anyhow::Result<PathBuf> {
    if !is_projection_name(name) {
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
        Lang::Python => python(name, &collection)?,
        Lang::Js => js(name, &collection)?,
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
projector check target/wasm32-wasip2/release/{crate_name}.wasm --events samples.jsonl   # offline dry run
projector projections push target/wasm32-wasip2/release/{crate_name}.wasm
```

See docs/writing-plugins.md in the Projector repository.
"#
    );
    Ok(vec![
        ("Cargo.toml".into(), cargo),
        ("src/lib.rs".into(), lib),
        ("samples.jsonl".into(), SAMPLES.into()),
        ("README.md".into(), readme),
        (".gitignore".into(), "/target\n".into()),
    ])
}

/// Sample events of every order event type, for `projector check` and tests.
const SAMPLES: &str = include_str!("../../../plugins/testdata/samples.jsonl");
/// The WIT contract, copied into Python and JavaScript projects (their toolchains read it).
const WIT: &str = include_str!("../../../wit/projection.wit");
/// The Python helper module, copied verbatim.
const PYTHON_HELPER: &str = include_str!("../../../plugins/python/projector_plugin.py");
/// The JavaScript helper module and its test harness, copied verbatim.
const JS_HELPER: &str = include_str!("../../../plugins/js/projector.js");
/// See [`JS_HELPER`].
const JS_TESTING: &str = include_str!("../../../plugins/js/projector-testing.js");
/// The pinned JavaScript toolchain, the same as the repository's plugins use.
const JS_PACKAGE: &str = include_str!("../../../plugins/js/package.json");
/// The pinned Python toolchain, the same as the repository's plugins use.
const PYTHON_REQUIREMENTS: &str = include_str!("../../../plugins/python/requirements.txt");

fn python(name: &str, collection: &str) -> anyhow::Result<Vec<(String, String)>> {
    let app = format!(
        r#""""`{name}`: one row per record key, with the last event type seen and how many events
arrived. A starting point: change ``describe`` and ``handle`` to build your read model."""

from projector_plugin import Context, Collection, Event, Field, Projection, Spec, export, increment, upsert

COLLECTION = "{collection}"
"""The collection this projection writes."""


class Starter(Projection):
    """The ``{name}`` projection."""

    def describe(self) -> Spec:
        return Spec("{name}", 1, "Events per record key.").collection(
            Collection(COLLECTION, "One row per record key.")
            .field(Field.text("id", "The record key."))
            .field(Field.text("last_type", "Type of the last event.").filterable())
            .field(Field.integer("events", "Events received.").sortable())
            .key("id")
        )

    def handle(self, event: Event, ctx: Context) -> list:
        key, kind = event.key_str, event.type
        if key is None or kind is None:
            return []
        return [
            upsert(COLLECTION, key).set("last_type", kind),
            increment(COLLECTION, key).add("events", 1),
        ]


WitWorld = export(Starter)
"#
    );
    let test = r#""""The starter projection's rows, exactly."""

import sys
import unittest

sys.dont_write_bytecode = True

from app import COLLECTION, Starter  # noqa: E402
from projector_plugin import Harness, event_from_sample  # noqa: E402


class StarterTest(unittest.TestCase):
    def test_counts_events_per_key(self):
        harness = Harness(Starter)
        harness.feed_all([
            event_from_sample('{"key": "ord-1", "headers": {"__TypeId__": "x.OrderCreated"}, "value": {}}'),
            event_from_sample('{"key": "ord-1", "headers": {}, "value": {"type": "OrderShipped"}}'),
        ])
        self.assertEqual(harness.rows(COLLECTION), [{"id": "ord-1", "last_type": "OrderShipped", "events": 2}])


if __name__ == "__main__":
    unittest.main()
"#;
    let build = format!(
        r#"#!/usr/bin/env bash
# Builds {name}.wasm, an uploadable component, with the pinned componentize-py (requirements.txt).
# The toolchain goes into .venv (or $PROJECTOR_PYTHON_VENV, a venv holding the same pin).
set -euo pipefail
cd "$(dirname "${{BASH_SOURCE[0]}}")"
venv="${{PROJECTOR_PYTHON_VENV:-.venv}}"
want="$(sed -n 's/^componentize-py==//p' requirements.txt)"
if ! "$venv/bin/componentize-py" --version 2>/dev/null | grep -qF "$want"; then
  echo "installing componentize-py $want into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
fi
"$venv/bin/componentize-py" -q -d wit -w projection componentize app -p . -o {name}.wasm
echo "built $(pwd)/{name}.wasm"
"#
    );
    let readme = format!(
        r#"# {name}

A Projector projection plugin in Python (componentize-py).

```sh
python3 -m unittest -v                    # the plugin logic, natively (standard library only)
./build.sh                                # -> {name}.wasm
projector check {name}.wasm --events samples.jsonl      # offline dry run through the real runtime
projector projections push {name}.wasm
```

`projector_plugin.py` is Projector's helper module and `wit/` the contract; keep both as they
are. See docs/writing-plugins.md in the Projector repository.
"#
    );
    Ok(vec![
        ("app.py".into(), app),
        ("test_app.py".into(), test.into()),
        ("build.sh".into(), build),
        ("requirements.txt".into(), PYTHON_REQUIREMENTS.into()),
        ("projector_plugin.py".into(), PYTHON_HELPER.into()),
        ("wit/projection.wit".into(), WIT.into()),
        ("samples.jsonl".into(), SAMPLES.into()),
        ("README.md".into(), readme),
        (".gitignore".into(), ".venv/\n__pycache__/\n*.wasm\n".into()),
    ])
}

/// The `devDependencies` object of the repository's `plugins/js/package.json`.
fn js_dev_dependencies() -> anyhow::Result<serde_json::Value> {
    let package: serde_json::Value = serde_json::from_str(JS_PACKAGE)?;
    Ok(package["devDependencies"].clone())
}

fn js(name: &str, collection: &str) -> anyhow::Result<Vec<(String, String)>> {
    let package = serde_json::json!({
        "name": name,
        "private": true,
        "version": "0.1.0",
        "type": "module",
        "engines": {"node": ">=20"},
        "scripts": {"build": "node build.mjs", "test": "node --test"},
        "devDependencies": js_dev_dependencies()?,
    });
    let index = format!(
        r#"/**
 * @file `{name}`: one row per record key, with the last event type seen and how many events
 * arrived. A starting point: change `describe` and `handle` to build your read model.
 */

import {{ field, increment, postgres, projection, spec, upsert }} from './projector.js';

/** The collection this projection writes. */
export const COLLECTION = '{collection}';

export const {{ describe, handle }} = projection({{
  describe: () =>
    spec('{name}', 1, 'Events per record key.', [
      postgres(COLLECTION, 'One row per record key.')
        .field(field.text('id').description('The record key.'))
        .field(field.text('last_type').filterable().description('Type of the last event.'))
        .field(field.integer('events').sortable().description('Events received.'))
        .primaryKey('id'),
    ]),

  handle: (event) => {{
    const {{ key, type }} = event;
    if (key === undefined || type === undefined) return [];
    return [upsert(COLLECTION, key).set('last_type', type), increment(COLLECTION, key).add('events', 1)];
  }},
}});
"#
    );
    let test = r#"// The starter projection's rows, exactly.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Harness, eventFromSample } from '../projector-testing.js';
import * as plugin from '../index.js';

test('counts events per key', () => {
  const harness = new Harness(plugin);
  harness.feedAll([
    eventFromSample('{"key": "ord-1", "headers": {"__TypeId__": "x.OrderCreated"}, "value": {}}'),
    eventFromSample('{"key": "ord-1", "headers": {}, "value": {"type": "OrderShipped"}}'),
  ]);
  assert.deepEqual(harness.rows(plugin.COLLECTION), [{ id: 'ord-1', last_type: 'OrderShipped', events: 2 }]);
});
"#;
    let build = format!(
        r#"// Builds {name}.wasm, an uploadable component, with the pinned componentize-js.
// `npm install` first; then `npm run build`.
import {{ componentize }} from '@bytecodealliance/componentize-js';
import {{ mkdir, rm, writeFile }} from 'node:fs/promises';
import {{ dirname, join }} from 'node:path';
import {{ fileURLToPath }} from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
process.chdir(here);
await mkdir('.build', {{ recursive: true }});
// The entry hands the host's imports to projector.js and exports the projection.
const entry = join(here, '.build', 'entry.js');
await writeFile(
  entry,
  [
    "import * as state from 'projector:projection/state@0.1.0';",
    "import {{ write }} from 'projector:projection/log@0.1.0';",
    "import {{ useHost }} from '../projector.js';",
    "import {{ describe, handle }} from '../index.js';",
    'useHost({{ state, log: write }});',
    'export {{ describe, handle }};',
    '',
  ].join('\n'),
);
const {{ component }} = await componentize({{
  sourcePath: entry,
  witPath: join(here, 'wit'),
  worldName: 'projection',
  // No WASI at all: the component imports only the projection interfaces.
  disableFeatures: ['random', 'stdio', 'clocks', 'http', 'fetch-event'],
}});
await writeFile(join(here, '{name}.wasm'), component);
await rm('.build', {{ recursive: true, force: true }});
console.log(`built ${{join(here, '{name}.wasm')}}`);
"#
    );
    let readme = format!(
        r#"# {name}

A Projector projection plugin in JavaScript (componentize-js).

```sh
npm install                               # the pinned toolchain (package.json)
npm test                                  # the plugin logic, natively (node --test)
npm run build                             # -> {name}.wasm
projector check {name}.wasm --events samples.jsonl      # offline dry run through the real runtime
projector projections push {name}.wasm
```

`projector.js` and `projector-testing.js` are Projector's helper modules and `wit/` the
contract; keep them as they are. See docs/writing-plugins.md in the Projector repository.
"#
    );
    Ok(vec![
        ("package.json".into(), format!("{}\n", serde_json::to_string_pretty(&package)?)),
        ("index.js".into(), index),
        ("test/index.test.js".into(), test.into()),
        ("build.mjs".into(), build),
        ("projector.js".into(), JS_HELPER.into()),
        ("projector-testing.js".into(), JS_TESTING.into()),
        ("wit/projection.wit".into(), WIT.into()),
        ("samples.jsonl".into(), SAMPLES.into()),
        ("README.md".into(), readme),
        (".gitignore".into(), "node_modules/\n.build/\n*.wasm\n".into()),
    ])
}
