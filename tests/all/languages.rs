//! Plugins in any language: `projector new` scaffolds for each language build with one
//! command, pass their own tests, pass `projector check` offline and are accepted by a host's
//! upload validation, then project real events.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use projector_tests::api::{wasm, Api};
use projector_tests::host::{binary, Host, HostConfig};
use projector_tests::*;
use reqwest::StatusCode;
use serde_json::json;

/// The repository root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Runs a command in `dir` with a clean, build-neutral environment; panics with its output on
/// failure.
fn run(dir: &Path, program: &str, args: &[&str], env: &[(&str, String)]) {
    let mut command = Command::new(program);
    command.current_dir(dir).args(args).env_clear();
    for key in ["PATH", "HOME", "CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN", "PROJECTOR_CACHE_DIR"] {
        if let Ok(value) = std::env::var(key) {
            command.env(key, value);
        }
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "`{program} {}` in {} failed:\n{}\n{}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Where slow, reusable build output lives (the same cache the scripts use).
fn cache_dir() -> PathBuf {
    std::env::var("PROJECTOR_CACHE_DIR").map(PathBuf::from).unwrap_or_else(|_| {
        let home = std::env::var("CARGO_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo"));
        home.join("projector-cache")
    })
}

/// One language's scaffold: how to test and build it and where the component lands.
struct Scaffold {
    lang: &'static str,
    name: &'static str,
    /// Commands (program, args) run in the project, in order: its own tests, then the build.
    steps: Vec<(&'static str, Vec<&'static str>)>,
    env: Vec<(&'static str, String)>,
    /// The component, relative to the project (or absolute).
    component: PathBuf,
}

fn scaffolds() -> Vec<Scaffold> {
    let rust_target = cache_dir().join("scaffold-target");
    vec![Scaffold {
        lang: "rust",
        name: "rust-starter",
        steps: vec![
            ("cargo", vec!["test", "--quiet"]),
            ("cargo", vec!["build", "--release", "--target", "wasm32-wasip2"]),
        ],
        // Builds in a cache kept between runs, so the SDK's dependencies compile once.
        component: rust_target.join("wasm32-wasip2/release/rust_starter.wasm"),
        env: vec![("CARGO_TARGET_DIR", rust_target.display().to_string())],
    }]
}

/// For each language: `projector new`, the project's own tests, its one-command build,
/// `projector check` on the sample events, then an upload that goes live on a real host and
/// projects the samples into the template's read model (events per order, last type).
#[tokio::test(flavor = "multi_thread")]
async fn scaffolded_plugins_build_pass_their_tests_and_go_live() {
    let workdir = std::env::temp_dir().join(unique("scaffolds"));
    std::fs::create_dir_all(&workdir).unwrap();
    let db = TestDb::create("scaffolds").await;
    let topic = create_topic("scaffolds", 3).await;
    publish(&topic, &samples()).await;
    let config = HostConfig::new("scaffolds", &db.url, &topic, &[]);
    let host = Host::start(&config);
    let api = Api::of(&config);
    api.ready().await;
    let sdk = repo().join("sdk").display().to_string();
    let samples = repo().join("plugins/testdata/samples.jsonl").display().to_string();
    let scaffolds = scaffolds();
    for scaffold in &scaffolds {
        let bin = binary().display().to_string();
        run(&workdir, &bin, &["new", scaffold.name, "--lang", scaffold.lang, "--sdk", &sdk], &[]);
        let project = workdir.join(scaffold.name);
        for (program, args) in &scaffold.steps {
            run(&project, program, args, &scaffold.env);
        }
        let component = project.join(&scaffold.component).display().to_string();
        run(&project, &bin, &["check", &component, "--events", &samples], &[]);
        let (status, body) = api.upload(wasm(&component), "").await;
        assert_eq!(status, StatusCode::CREATED, "{} upload: {body}", scaffold.lang);
        assert_eq!(body["deployment"]["name"], scaffold.name, "{body}");
    }
    wait_caught_up(&db, &topic, scaffolds.len(), Duration::from_secs(120)).await;
    for scaffold in &scaffolds {
        let table = scaffold.name.replace('-', "_");
        let rows = db
            .json_rows(&format!("SELECT jsonb_build_object('id', id, 'last_type', last_type, 'events', events)::text FROM read_models.{table} ORDER BY id"))
            .await;
        // samples.jsonl: ord-1001 has 4 events, ord-1002 2, ord-1003 4 (one a redelivery, which
        // the template counts: it does no deduplication), ord-1004 1.
        assert_rows_eq(
            scaffold.lang,
            &rows,
            &[
                json!({"id": "ord-1001", "last_type": "OrderShipped", "events": 4}),
                json!({"id": "ord-1002", "last_type": "OrderShipped", "events": 2}),
                json!({"id": "ord-1003", "last_type": "OrderCancelled", "events": 4}),
                json!({"id": "ord-1004", "last_type": "LoyaltyPointsGranted", "events": 1}),
            ],
        );
    }
    drop(host);
}
