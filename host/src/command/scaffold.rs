//! `projector new <name> --lang rust|python|js`: a plugin project that builds to an uploadable
//! component with one command and carries a test of its own.
//!
//! Every template is a working projection (`<name>`, version 1): one row per record key with
//! the last event type seen and a count of events, so a new author starts from something that
//! runs, then changes it. The templates are the files under `templates/`, filled by replacing
//! `{{placeholder}}`s. A project copies no Projector code: it depends by path on the SDK of a
//! checkout (`--sdk`): the Rust crate itself, the Python package `projector-plugin` in
//! `python/` (installed into the project's venv) and the npm package `projector-plugin` in
//! `js/` (linked into `node_modules`). The Python and JavaScript packages ship the WIT contract.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use projector::spec::{is_identifier, is_projection_name};

/// A plugin language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Lang {
    /// Rust, through the `projector-sdk` crate.
    Rust,
    /// Python, through componentize-py and the `projector-plugin` package.
    Python,
    /// JavaScript, through componentize-js and the `projector-plugin` npm package.
    Js,
}

/// The SDK of the checkout this binary was built from: the Rust crate, with the Python and
/// JavaScript helper packages in `python/` and `js/`.
pub(crate) fn default_sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk")
}

/// A project file: its path in the project and its template.
type Template = (&'static str, &'static str);

/// Sample events of every order event type, for `projector check` and tests.
const SAMPLES: &str = include_str!("../../../plugins/testdata/samples.jsonl");

const RUST: &[Template] = &[
    ("Cargo.toml", include_str!("templates/rust/Cargo.toml.template")),
    ("src/lib.rs", include_str!("templates/rust/src/lib.rs")),
    ("README.md", include_str!("templates/rust/README.md")),
    (".gitignore", include_str!("templates/rust/gitignore")),
    ("samples.jsonl", SAMPLES),
];

const PYTHON: &[Template] = &[
    ("app.py", include_str!("templates/python/app.py")),
    ("test_app.py", include_str!("templates/python/test_app.py")),
    ("setup.sh", include_str!("templates/python/setup.sh")),
    ("build.sh", include_str!("templates/python/build.sh")),
    // The pinned toolchain, the same as the repository's plugins use.
    ("requirements.txt", include_str!("../../../plugins/python/requirements.txt")),
    ("README.md", include_str!("templates/python/README.md")),
    (".gitignore", include_str!("templates/python/gitignore")),
    ("samples.jsonl", SAMPLES),
];

const JS: &[Template] = &[
    ("package.json", include_str!("templates/js/package.json")),
    ("index.js", include_str!("templates/js/index.js")),
    ("test/index.test.js", include_str!("templates/js/test/index.test.js")),
    ("build.mjs", include_str!("templates/js/build.mjs")),
    ("README.md", include_str!("templates/js/README.md")),
    (".gitignore", include_str!("templates/js/gitignore")),
    ("samples.jsonl", SAMPLES),
];

/// The repository's JavaScript plugins' manifest: its `devDependencies` are the pinned
/// toolchain of a JavaScript project too.
const JS_PLUGINS_PACKAGE: &str = include_str!("../../../plugins/js/package.json");

/// Creates `<dir>/<name>`; returns its path.
pub(crate) fn create(name: &str, lang: Lang, dir: &Path, sdk: &Path) -> anyhow::Result<PathBuf> {
    if !is_projection_name(name) {
        bail!("the name must be lowercase ASCII letters, digits and `-`, starting with a letter (it becomes the projection name)");
    }
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    let (templates, values) = match lang {
        Lang::Rust => (RUST, vec![("sdk", quoted(&locate(sdk, "")?))]),
        Lang::Python => (PYTHON, vec![("python_helper", shell_quoted(&locate(sdk, "python")?))]),
        Lang::Js => {
            let helper = format!("file:{}", locate(sdk, "js")?.display());
            (JS, vec![("js_helper", quoted(Path::new(&helper))), ("dev_dependencies", js_dev_dependencies()?)])
        }
    };
    let values = [common_values(name), values].concat();
    for (path, template) in templates {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("a file path"))?;
        std::fs::write(&path, fill(template, &values)).with_context(|| format!("cannot write {}", path.display()))?;
        if path.extension().is_some_and(|e| e == "sh") {
            make_executable(&path)?;
        }
    }
    Ok(root)
}

/// `<sdk>/<part>`, absolute: the project refers to it from wherever it lives.
fn locate(sdk: &Path, part: &str) -> anyhow::Result<PathBuf> {
    let path = sdk.join(part);
    path.canonicalize().with_context(|| format!("the SDK is not at {} (pass --sdk)", path.display()))
}

/// The values every template may use: `name`, `collection` (the name as an identifier),
/// `crate_name` and `type_name` (`my-proj` → `my_proj`, `MyProj`).
fn common_values(name: &str) -> Vec<(&'static str, String)> {
    let collection = name.replace('-', "_");
    debug_assert!(is_identifier(&collection));
    let type_name: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    vec![
        ("name", name.into()),
        ("crate_name", collection.clone()),
        ("collection", collection),
        ("type_name", type_name),
    ]
}

/// `template` with every `{{key}}` replaced by its value.
fn fill(template: &str, values: &[(&str, String)]) -> String {
    values.iter().fold(template.to_owned(), |text, (key, value)| text.replace(&format!("{{{{{key}}}}}"), value))
}

/// `path` as a JSON string, which is a TOML basic string as well.
fn quoted(path: &Path) -> String {
    serde_json::Value::String(path.display().to_string()).to_string()
}

/// `path` as one single-quoted shell word.
fn shell_quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// The `devDependencies` object of the repository's `plugins/js/package.json`, as JSON nested
/// one level deep.
fn js_dev_dependencies() -> anyhow::Result<String> {
    let package: serde_json::Value = serde_json::from_str(JS_PLUGINS_PACKAGE)?;
    Ok(serde_json::to_string_pretty(&package["devDependencies"])?.replace('\n', "\n  "))
}

fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut permissions = std::fs::metadata(path)?.permissions();
    permissions.set_mode(0o755);
    std::fs::set_permissions(path, permissions)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled() {
        let sdk = default_sdk_path();
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let dir = std::env::temp_dir().join(format!("projector-scaffold-{}-{lang:?}", std::process::id()));
            let root = create("my-proj", lang, &dir, &sdk).unwrap();
            for entry in walk(&root) {
                let text = std::fs::read_to_string(&entry).unwrap();
                assert!(!text.contains("{{"), "{} keeps a placeholder", entry.display());
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn the_javascript_manifest_is_json_with_the_helper_and_the_pinned_toolchain() {
        let dir = std::env::temp_dir().join(format!("projector-scaffold-json-{}", std::process::id()));
        let root = create("my-proj", Lang::Js, &dir, &default_sdk_path()).unwrap();
        let package: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(root.join("package.json")).unwrap()).unwrap();
        let helper = default_sdk_path().join("js").canonicalize().unwrap();
        assert_eq!(package["dependencies"]["projector-plugin"], format!("file:{}", helper.display()));
        let plugins: serde_json::Value = serde_json::from_str(JS_PLUGINS_PACKAGE).unwrap();
        assert_eq!(package["devDependencies"], plugins["devDependencies"]);
        assert_eq!(package["name"], "my-proj");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_helper_packages_ship_the_repository_wit() {
        let wit = include_str!("../../../wit/projection.wit");
        assert_eq!(include_str!("../../../sdk/python/src/projector_plugin/wit/projection.wit"), wit);
        assert_eq!(include_str!("../../../sdk/js/wit/projection.wit"), wit);
    }

    #[test]
    fn paths_are_quoted_for_toml_json_and_shell() {
        assert_eq!(quoted(Path::new(r#"/a "b"\c"#)), r#""/a \"b\"\\c""#);
        assert_eq!(shell_quoted(Path::new("/it's here")), r"'/it'\''s here'");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }
}
