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

/// One language's scaffold: how to test and build it and where the component lands.
struct Scaffold {
    lang: &'static str,
    name: &'static str,
    /// Commands (program, args) run in the project, in order: its set-up, its own tests, then
    /// the build.
    steps: Vec<(String, Vec<&'static str>)>,
    env: Vec<(&'static str, String)>,
    /// The component, relative to the project (or absolute).
    component: PathBuf,
}

fn scaffolds() -> Vec<Scaffold> {
    let rust_target = cache_dir().join("scaffold-target");
    // The venv plugins/python/setup.sh made for the test build (same pinned toolchain); the
    // project's setup.sh installs the helper package into it.
    let python_venv = cache_dir().join("python-venv");
    vec![
        Scaffold {
            lang: "rust",
            name: "rust-starter",
            steps: vec![
                ("cargo".into(), vec!["test", "--quiet"]),
                ("cargo".into(), vec!["build", "--release", "--target", "wasm32-wasip2"]),
            ],
            // Builds in a cache kept between runs, so the SDK's dependencies compile once.
            component: rust_target.join("wasm32-wasip2/release/rust_starter.wasm"),
            env: vec![("CARGO_TARGET_DIR", rust_target.display().to_string())],
        },
        Scaffold {
            lang: "python",
            name: "python-starter",
            steps: vec![
                ("bash".into(), vec!["setup.sh"]),
                (python_venv.join("bin/python").display().to_string(), vec!["-m", "unittest", "-v"]),
                ("bash".into(), vec!["build.sh"]),
            ],
            env: vec![("PROJECTOR_PYTHON_VENV", python_venv.display().to_string())],
            component: "python-starter.wasm".into(),
        },
        Scaffold {
            lang: "js",
            name: "js-starter",
            steps: vec![
                ("npm".into(), vec!["install", "--no-audit", "--no-fund", "--loglevel=error"]),
                ("npm".into(), vec!["test"]),
                ("npm".into(), vec!["run", "build"]),
            ],
            env: vec![],
            component: "js-starter.wasm".into(),
        },
    ]
}

/// For each language: `projector new` (a project depending by path on this checkout's SDK and
/// helper packages, copying none of their code), the project's own tests, its one-command build,
/// `projector check` on the sample events, then an upload that goes live on a real host and
/// projects the samples into the template's read model (events per order, last type).
#[tokio::test(flavor = "multi_thread")]
async fn scaffolded_plugins_build_pass_their_tests_and_go_live() {
    let workdir = std::env::temp_dir().join(unique("scaffolds"));
    std::fs::create_dir_all(&workdir).unwrap();
    let db = TestDb::create("scaffolds").await;
    let topic = create_topic("scaffolds", 3).await;
    publish(&topic, &samples()).await;
    // A freshly built Python or JavaScript component is compiled at upload, not precompiled like
    // the fixtures: on a loaded 2-core CI machine that ran past the default 30 s (CI, 2026-12-03).
    let config =
        HostConfig::new("scaffolds", &db.url, &topic, &[]).with("PROJECTOR_ADMIN__COMPILE_TIMEOUT_MS", "180000");
    let host = Host::start(&config);
    let api = Api::of(&config);
    api.ready().await;
    let sdk = repo().join("sdk").display().to_string();
    let scaffolds = scaffolds();
    for scaffold in &scaffolds {
        let bin = binary().display().to_string();
        run(&workdir, &bin, &["new", scaffold.name, "--lang", scaffold.lang, "--sdk", &sdk], &[]);
        let project = workdir.join(scaffold.name);
        for (program, args) in &scaffold.steps {
            run(&project, program, args, &scaffold.env);
        }
        let component = project.join(&scaffold.component).display().to_string();
        run(&project, &bin, &["check", &component, "--events", "samples.jsonl"], &[]);
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

/// The Rust, Python and JavaScript `order-summaries` components, each in its own host and
/// database over the same topic, declare the same read model and build it identically, row by
/// row, equal to the independent model; their per-order state is byte for byte the same, so a
/// projection can change language with a hot swap.
#[tokio::test(flavor = "multi_thread")]
async fn order_summaries_are_identical_in_rust_python_and_javascript() {
    let mut records = samples();
    records.extend(projector_demo::generate(1_500, 61));
    let topic = create_topic("languages", 4).await;
    publish(&topic, &records).await;
    let mut running = Vec::new();
    for (lang, component) in [("rust", ORDER_SUMMARIES), ("python", PY_ORDER_SUMMARIES), ("js", JS_ORDER_SUMMARIES)] {
        let db = TestDb::create(&format!("summaries_{lang}")).await;
        let host = Host::start(&HostConfig::new(lang, &db.url, &topic, &[component]));
        running.push((lang, db, host));
    }
    let expected = expected::Model::of(&records).summaries();
    let mut specs = Vec::new();
    let mut states = Vec::new();
    for (lang, db, _) in &running {
        wait_caught_up(db, &topic, 1, Duration::from_secs(300)).await;
        assert_rows_eq(lang, &db.json_rows(SUMMARIES_SQL).await, &expected);
        let spec: String =
            sqlx::query_scalar("SELECT spec::text FROM projector.deployments").fetch_one(&db.pool).await.unwrap();
        specs.push(spec);
        let deployments = deployments(db, &topic).await.unwrap();
        let schema = &deployments[0].0.schema;
        let state: Vec<(String, Vec<u8>)> =
            sqlx::query_as(&format!("SELECT key, value FROM \"{schema}\"._state ORDER BY key"))
                .fetch_all(&db.pool)
                .await
                .unwrap();
        assert!(state.len() > 1_000, "{lang}: {} state rows", state.len());
        states.push(state);
    }
    assert_eq!(specs[1], specs[0], "Python declares what Rust declares");
    assert_eq!(specs[2], specs[0], "JavaScript declares what Rust declares");
    assert!(states[1] == states[0], "Python's state differs from Rust's");
    assert!(states[2] == states[0], "JavaScript's state differs from Rust's");
}

/// `customer-ltv` (Python) and `sku-sales` (JavaScript) in one host over the samples and 2,000
/// generated orders: their read models equal the independent model row by row (money to the
/// cent, counters, status maps, host-computed averages), and the samples' rows are checked by
/// hand as well.
#[tokio::test(flavor = "multi_thread")]
async fn customer_ltv_in_python_and_sku_sales_in_javascript_give_exact_read_models() {
    let db = TestDb::create("ltv_skus").await;
    let topic = create_topic("ltv-skus", 3).await;
    let mut records = samples();
    publish(&topic, &records).await;
    let host = Host::start(&HostConfig::new("ltv-skus", &db.url, &topic, &[PY_CUSTOMER_LTV, JS_SKU_SALES]));
    wait_caught_up(&db, &topic, 2, Duration::from_secs(120)).await;
    // samples.jsonl by hand: cust-7 opened ord-1001 (2 + 1 units, submitted 116.80, shipped)
    // and ord-1003 (submitted 48.00, then cancelled); cust-9 placed ord-1002 (79.47, 4 units).
    assert_rows_eq(
        "customer_ltv (samples)",
        &db.json_rows(CUSTOMER_LTV_SQL).await,
        &[
            json!({"customer_id": "cust-7", "customer_name": "Zoë Müller", "orders": 2, "paid_orders": 1,
                   "cancelled_orders": 1, "revenue": "116.80", "items": 3,
                   "orders_by_status": {"SHIPPED": 1, "CANCELLED": 1}, "average_order_value": "116.80"}),
            json!({"customer_id": "cust-9", "customer_name": "Kenji Watanabe", "orders": 1, "paid_orders": 1,
                   "cancelled_orders": 0, "revenue": "79.47", "items": 4,
                   "orders_by_status": {"SHIPPED": 1}, "average_order_value": "79.47"}),
        ],
    );
    // ord-1001 and ord-1002 count; ord-1003's four mugs counted, then were taken back.
    let sku = |sku: &str, name: &str, units: i64, revenue: &str, orders: i64, average: Option<&str>| json!({"sku": sku, "product_name": name, "units_sold": units, "revenue": revenue, "orders": orders, "average_unit_price": average});
    assert_rows_eq(
        "sku_sales (samples)",
        &db.json_rows(SKU_SALES_SQL).await,
        &[
            sku("sku-espresso-250", "Espresso Beans 250g", 2, "17.80", 1, Some("8.90")),
            sku("sku-filter-100", "Paper Filters x100", 3, "14.97", 1, Some("4.99")),
            sku("sku-grinder-c2", "Hand Grinder C2", 1, "99.00", 1, Some("99.00")),
            sku("sku-kettle-gooseneck", "Gooseneck Kettle", 1, "64.50", 1, Some("64.50")),
            sku("sku-mug-stone", "Stoneware Mug", 0, "0.00", 0, None),
        ],
    );
    let (customers, skus) = expected::customers_and_skus(&records);
    assert_rows_eq("customer_ltv (samples, model)", &db.json_rows(CUSTOMER_LTV_SQL).await, &customers);
    assert_rows_eq("sku_sales (samples, model)", &db.json_rows(SKU_SALES_SQL).await, &skus);

    let generated = projector_demo::generate(2_000, 71);
    publish(&topic, &generated).await;
    records.extend(generated);
    wait_caught_up(&db, &topic, 2, Duration::from_secs(300)).await;
    let (customers_now, skus_now) = expected::customers_and_skus(&records);
    assert_ne!((&customers_now, &skus_now), (&customers, &skus));
    assert_rows_eq("customer_ltv", &db.json_rows(CUSTOMER_LTV_SQL).await, &customers_now);
    assert_rows_eq("sku_sales", &db.json_rows(SKU_SALES_SQL).await, &skus_now);
    drop(host);
}

/// A Python plugin calling `time.sleep(40)` gets its answer at once (timers inside the sandbox
/// are due immediately), and one sleeping forever traps past 10,000 timers in one call, well
/// within the call deadline: neither can hold the host's thread.
#[test]
fn a_sleeping_python_plugin_cannot_outlast_the_deadline() {
    use projector::contract::{Event, Operation, Value};
    use projector::runtime::{CallError, Limits, Runtime, StateOverlay};
    let limit = Duration::from_secs(2);
    let runtime = Runtime::new(
        Limits {
            call_timeout: limit,
            max_memory: 256 << 20,
            fuel_per_event: projector::config::DEFAULT_FUEL_PER_EVENT,
        },
        None,
    )
    .unwrap();
    let plugin = runtime.load(&std::fs::read(PY_SLEEPER).unwrap()).unwrap();
    let event = |kind: &str| Event {
        topic: "t".into(),
        partition: 0,
        offset: 0,
        key: Some(b"k".to_vec()),
        value: Some(format!(r#"{{"type":"{kind}"}}"#).into_bytes()),
        headers: vec![],
        timestamp_ms: Some(0),
    };
    let state = || StateOverlay::new(std::collections::HashMap::new(), Box::new(|_| Ok(None)));
    let started = std::time::Instant::now();
    let (results, _) = plugin.handle(&[event("Sleep")], state()).unwrap();
    let [Ok(operations)] = results.as_slice() else { panic!("{results:?}") };
    let [Operation::Upsert(upsert)] = operations.as_slice() else { panic!("{operations:?}") };
    assert_eq!(upsert.fields[0].value, Value::Text("slept".into()));
    assert!(started.elapsed() < Duration::from_secs(2), "time.sleep(40) took {:?}", started.elapsed());
    let started = std::time::Instant::now();
    let error = plugin.handle(&[event("Doze")], state()).err().unwrap();
    let CallError::Trap { message } = &error else { panic!("{error:?}") };
    assert!(message.contains("more than 10000 sleeps or timers in one call"), "{message}");
    assert!(started.elapsed() < limit.mul_f64(1.5), "stopped {:?} into a {limit:?} deadline", started.elapsed());
}
