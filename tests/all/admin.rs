//! The admin API against running hosts: uploads validated before anything is stored, hot-loads
//! with the full history, blue/green swaps without a gap, rollback, hot swap, pause, removal,
//! restarts, two instances, metrics, dry runs and the CLI.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::Engine as _;
use projector_tests::api::{wasm, Api};
use projector_tests::host::{binary, Host, HostConfig, ADMIN_TOKEN, READ_TOKEN};
use projector_tests::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Row;

async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

/// Random bytes, a core module, another world, an invalid `describe`, an oversize body, a
/// wrong checksum, no token and a read-only token each get their own 4xx code; nothing is
/// stored.
#[tokio::test(flavor = "multi_thread")]
async fn bad_uploads_are_refused_with_their_own_code_and_nothing_is_stored() {
    let db = TestDb::create("rejects").await;
    let topic = create_topic("rejects", 1).await;
    let config = HostConfig::new("rejects", &db.url, &topic, &[]).with("PROJECTOR_ADMIN__MAX_UPLOAD_MIB", "1");
    let _host = Host::start(&config);
    let api = Api::of(&config);
    api.ready().await;
    let url = format!("{}/admin/projections", api.base);
    let summaries = wasm(ORDER_SUMMARIES);

    let mut codes = BTreeSet::new();
    let mut expect = |(status, body): (StatusCode, Value), expected: StatusCode, code: &str| {
        assert_eq!(status, expected, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
        codes.insert(code.to_string());
    };
    expect(api.send(api.http.post(&url).body(summaries.clone())).await, StatusCode::UNAUTHORIZED, "unauthorized");
    expect(
        api.send(api.http.post(&url).bearer_auth(READ_TOKEN).body(summaries.clone())).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    expect(
        api.upload(b"these are not the bytes you are looking for".to_vec(), "").await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "not_wasm",
    );
    expect(api.upload(b"\0asm\x01\0\0\0".to_vec(), "").await, StatusCode::UNSUPPORTED_MEDIA_TYPE, "core_module");
    expect(api.upload(wasm(OTHER_WORLD), "").await, StatusCode::UNPROCESSABLE_ENTITY, "wrong_world");
    expect(api.upload(wasm(INVALID_SPEC), "").await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_spec");
    expect(api.upload(vec![7u8; 2 << 20], "").await, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let wrong = "0".repeat(64);
    expect(
        api.send(
            api.http.post(&url).bearer_auth(ADMIN_TOKEN).header("X-Checksum-Sha256", wrong).body(summaries.clone()),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "checksum_mismatch",
    );
    expect(api.upload(wasm(EXTRA_IMPORT), "").await, StatusCode::UNPROCESSABLE_ENTITY, "unsupported_import");
    assert_eq!(codes.len(), 9, "nine distinct codes: {codes:?}");
    // The read-only token may still read.
    let (status, body) = api.send(api.http.get(&url).bearer_auth(READ_TOKEN)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"projections": []})));
    assert_eq!(count(&db, "SELECT count(*) FROM projector.components").await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM projector.deployments").await, 0);
    let (status, body) = api.get("/admin/projections/order-summaries").await;
    assert_eq!((status, body["error"]["code"].clone()), (StatusCode::NOT_FOUND, json!("not_found")));
}

/// Validation that takes longer than the compile time limit is refused, and nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_component_that_does_not_compile_in_time_is_refused() {
    let db = TestDb::create("slowcompile").await;
    let topic = create_topic("slowcompile", 1).await;
    let cache = std::env::temp_dir().join(unique("empty-cache"));
    let config = HostConfig::new("slowcompile", &db.url, &topic, &[])
        .with("PROJECTOR_ADMIN__COMPILE_TIMEOUT_MS", "300")
        .with("PROJECTOR_PLUGINS__CACHE_DIR", cache.to_str().unwrap());
    let host = Host::start(&config);
    let api = Api::of(&config);
    api.ready().await;
    // The Python component takes seconds to compile: far past the limit.
    let (status, body) = api.upload(wasm(PY_ORDER_SUMMARIES), "").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("compile_timeout")),
        "{body}"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM projector.components").await, 0);
    // The compile was stopped, not abandoned to go on in the background: the host uses next to
    // no CPU once it answered.
    let before = host.cpu_time();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = host.cpu_time() - before;
    assert!(used < Duration::from_millis(600), "the host used {used:?} of CPU in the 3 s after refusing the compile");
}

/// With more than 100,000 events in the topic and the host running, pushing a plugin (through
/// the CLI, which follows the build with a progress bar) makes it live with the full history;
/// the host process is never restarted.
#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_plugin_goes_live_with_the_full_history_without_a_restart() {
    let db = TestDb::create("hotload").await;
    let topic = create_topic("hotload", 6).await;
    let records = projector_demo::generate(28_000, 21);
    assert!(records.len() >= 100_000, "{} events", records.len());
    publish(&topic, &records).await;
    let config = HostConfig::new("hotload", &db.url, &topic, &[]);
    let mut host = Host::start(&config);
    let api = Api::of(&config);
    api.ready().await;

    let pushed = tokio::process::Command::new(binary())
        .args(["projections", "--admin-url", &config.admin_url(), "--token", ADMIN_TOKEN, "push", ORDER_SUMMARIES])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&pushed.stdout);
    assert!(pushed.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&pushed.stderr));
    assert!(stdout.contains("order-summaries v1: building"), "{stdout}");
    // The CLI returned once the deployment was live.
    let deployments = api.deployments("order-summaries").await;
    assert_eq!(deployments.len(), 1);
    assert_eq!(deployments[0]["state"], "live");
    wait_caught_up(&db, &topic, 1, Duration::from_secs(300)).await;
    let model = expected::Model::of(&records);
    assert_rows_eq("order_summaries", &db.json_rows(SUMMARIES_SQL).await, &model.summaries());
    assert!(host.running(), "the host was never restarted");
    assert_eq!(host.log().matches("Admin API listening").count(), 1);
}

/// Pushing version 2 (one more column) builds it blue/green: a reader polling every 50 ms sees
/// version 1 with no error and no gap while it builds, then version 2; a rollback brings
/// version 1 back at once, and version 1 kept consuming meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_version_swaps_without_a_gap_and_rolls_back() {
    let db = TestDb::create("bluegreen").await;
    let topic = create_topic("bluegreen", 6).await;
    let records = projector_demo::generate(12_000, 31);
    publish(&topic, &records).await;
    let config = HostConfig::new("bluegreen", &db.url, &topic, &[ORDER_SUMMARIES]);
    let _host = Host::start(&config);
    let api = Api::of(&config);
    api.ready().await;
    wait_caught_up(&db, &topic, 1, Duration::from_secs(180)).await;
    let orders = 12_000_i64;

    // The reader: count of rows, and whether the live view has v2's column.
    let reader_pool = db.pool.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader_stop = stop.clone();
    let reader = tokio::spawn(async move {
        let mut seen: Vec<(i64, bool)> = Vec::new();
        while !reader_stop.load(std::sync::atomic::Ordering::Relaxed) {
            let row = sqlx::query(
                "SELECT count(*), coalesce(bool_or(to_jsonb(s) ? 'event_count'), false) FROM read_models.order_summaries s",
            )
            .fetch_one(&reader_pool)
            .await
            .unwrap_or_else(|e| panic!("a read failed during the swap: {e}"));
            seen.push((row.get(0), row.get(1)));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seen
    });

    let (status, body) = api.upload(wasm(ORDER_SUMMARIES_V2), "").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let v2 = body["deployment"]["id"].as_i64().unwrap();
    let building = api.deployments("order-summaries").await;
    assert_eq!(building.iter().map(|d| d["state"].as_str().unwrap()).collect::<Vec<_>>(), ["building", "live"]);
    assert!(building[0]["partitions"].is_object());
    api.wait_state("order-summaries", v2, "live", Duration::from_secs(180)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = reader.await.unwrap();

    assert!(seen.iter().all(|(rows, _)| *rows == orders), "a read saw a gap: {seen:?}");
    let switched = seen.iter().position(|(_, v2)| *v2).expect("the reader saw version 2");
    assert!(switched > 0, "the reader saw version 1 first");
    assert!(seen[switched..].iter().all(|(_, v2)| *v2), "no flapping back to version 1");
    let states: Vec<String> =
        api.deployments("order-summaries").await.iter().map(|d| d["state"].as_str().unwrap().to_string()).collect();
    assert_eq!(states, ["live", "standby"]);
    let model = expected::Model::of(&records);
    let v2_rows = db.json_rows(SUMMARIES_SQL).await;
    assert_rows_eq("order_summaries v2", &v2_rows, &model.summaries());

    // Version 1 keeps consuming on standby: events published now reach it too.
    let more = projector_demo::generate(500, 32);
    publish(&topic, &more).await;
    wait_caught_up(&db, &topic, 1, Duration::from_secs(120)).await;
    let (status, body) = api.post("/admin/projections/order-summaries/rollback").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["live"]["version"], 1);
    let all: Vec<_> = records.iter().chain(&more).cloned().collect();
    let rows = db.json_rows(SUMMARIES_SQL).await;
    assert!(rows.iter().all(|r| r.get("event_count").is_none()));
    assert_rows_eq("order_summaries after rollback", &rows, &expected::Model::of(&all).summaries());
    let has_v2: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'read_models' AND table_name = 'order_summaries' AND column_name = 'event_count')",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(!has_v2, "the view is version 1's again");
}

/// A restarted host resumes every deployment from its stored offsets: no new deployment, no
/// rebuild, exact rows.
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_resumes_every_projection_from_its_offsets() {
    let db = TestDb::create("resume").await;
    let topic = create_topic("resume", 6).await;
    let first = projector_demo::generate(3_000, 41);
    publish(&topic, &first).await;
    let config = HostConfig::new("resume", &db.url, &topic, &EXAMPLE_PLUGINS);
    let host = Host::start(&config);
    wait_caught_up(&db, &topic, 3, Duration::from_secs(180)).await;
    assert!(host.terminate(Duration::from_secs(30)));
    let before: Vec<(i64, i64)> = sqlx::query_as("SELECT id, build::bigint FROM projector.deployments ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let applied_before = count(&db, "SELECT sum(next_offset)::bigint FROM proj_order_summaries_v1._offsets").await;

    let second = projector_demo::generate(1_000, 42);
    publish(&topic, &second).await;
    // No plugin directory this time: everything comes from the registry.
    std::fs::remove_dir_all(config.dir.join("plugins")).unwrap();
    let first_run_log = std::fs::read_to_string(&config.log).unwrap().len();
    let host = Host::start(&config);
    wait_caught_up(&db, &topic, 3, Duration::from_secs(180)).await;
    let after: Vec<(i64, i64)> = sqlx::query_as("SELECT id, build::bigint FROM projector.deployments ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(before, after, "no deployment was added or rebuilt");
    let applied_after = count(&db, "SELECT sum(next_offset)::bigint FROM proj_order_summaries_v1._offsets").await;
    assert_eq!(applied_after - applied_before, second.len() as i64);
    let all: Vec<_> = first.iter().chain(&second).cloned().collect();
    assert_matches_model(&db, &all).await;
    let log = host.log()[first_run_log..].to_string();
    assert!(log.contains("Worker started"), "{log}");
    assert!(!log.contains("Deployment caught up and went live"), "nothing was promoted again: {log}");
    assert!(host.terminate(Duration::from_secs(30)));
}

/// Two instances share the consumer groups: both apply events; an upload to one runs on the
/// other within 5 seconds; the swap happens once; both serve metrics.
#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_partitions_and_see_uploads_within_seconds() {
    let db = TestDb::create("cluster").await;
    let topic = create_topic("cluster", 6).await;
    let records = projector_demo::generate(8_000, 51);
    publish(&topic, &records).await;
    let a = HostConfig::new("cluster-a", &db.url, &topic, &[]);
    let prefix = a.env.iter().find(|(k, _)| k == "PROJECTOR_KAFKA__GROUP_PREFIX").unwrap().1.clone();
    let b = HostConfig::new("cluster-b", &db.url, &topic, &[]).with("PROJECTOR_KAFKA__GROUP_PREFIX", &prefix);
    let (host_a, host_b) = (Host::start(&a), Host::start(&b));
    let (api_a, api_b) = (Api::of(&a), Api::of(&b));
    api_a.ready().await;
    api_b.ready().await;

    let uploaded = Instant::now();
    let (status, body) = api_a.upload(wasm(ORDER_SUMMARIES), "").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    while !host_b.log().contains("Worker started") {
        assert!(
            uploaded.elapsed() < Duration::from_secs(5),
            "instance B did not pick up the upload: {}",
            host_b.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Once B has its share of the partitions, more events arrive: both instances apply some.
    while !host_b.log().contains("Partitions assigned") {
        assert!(uploaded.elapsed() < Duration::from_secs(60), "instance B never got partitions: {}", host_b.log_tail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let more = projector_demo::generate(3_000, 52);
    publish(&topic, &more).await;
    wait_caught_up(&db, &topic, 1, Duration::from_secs(180)).await;
    let all: Vec<_> = records.iter().chain(&more).cloned().collect();
    assert_rows_eq("order_summaries", &db.json_rows(SUMMARIES_SQL).await, &expected::Model::of(&all).summaries());
    let promotions = host_a.log().matches("went live").count() + host_b.log().matches("went live").count();
    assert_eq!(promotions, 1, "the swap happened exactly once");

    for api in [&api_a, &api_b] {
        let response = api.http.get(format!("{}/metrics", api.base)).bearer_auth(READ_TOKEN).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.unwrap();
        let applied: f64 = text
            .lines()
            .filter(|l| {
                l.starts_with("projector_events_applied_total{") && l.contains("projection=\"order-summaries\"")
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum();
        assert!(applied > 0.0, "each instance applied some partitions:\n{text}");
        for metric in [
            "projector_partition_lag{",
            "projector_batch_seconds_bucket{",
            "projector_plugin_call_seconds_count{",
            "projector_deployment_state{",
        ] {
            assert!(text.contains(metric), "{metric} missing:\n{text}");
        }
        assert!(
            text.contains(
                r#"projector_deployment_state{build="0",projection="order-summaries",state="live",version="1"} 1"#
            ),
            "{text}"
        );
    }
}

/// Hot swap replaces the live code in place (no rebuild); different collections are refused.
/// Pause stops consumption, resume catches up; removal drops views, schemas and the registry
/// rows.
#[tokio::test(flavor = "multi_thread")]
async fn hot_swap_pause_resume_and_remove() {
    let db = TestDb::create("steer").await;
    let topic = create_topic("steer", 3).await;
    let records = projector_demo::generate(1_000, 61);
    publish(&topic, &records).await;
    let config = HostConfig::new("steer", &db.url, &topic, &[ORDER_SUMMARIES]);
    let _host = Host::start(&config);
    let api = Api::of(&config);
    api.ready().await;
    wait_caught_up(&db, &topic, 1, Duration::from_secs(120)).await;
    let live = api.deployments("order-summaries").await[0].clone();

    // A rebuilt component with the same behavior: the same bytes plus a custom section.
    let mut patched = wasm(ORDER_SUMMARIES);
    patched.extend_from_slice(&[0, 8, 7]);
    patched.extend_from_slice(b"patched");
    let (status, body) = api.upload(patched, "?mode=hot-swap").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"], "hot-swapped");
    let after = api.deployments("order-summaries").await;
    assert_eq!(after.len(), 1, "no new deployment");
    assert_eq!(after[0]["id"], live["id"]);
    assert_ne!(after[0]["sha256"], live["sha256"]);
    let (status, body) = api.upload(wasm(ORDER_SUMMARIES_V2), "?mode=hot-swap").await;
    assert_eq!((status, body["error"]["code"].clone()), (StatusCode::CONFLICT, json!("conflict")), "{body}");

    let (status, _) = api.post("/admin/projections/order-summaries/pause").await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let more = projector_demo::generate(300, 62);
    publish(&topic, &more).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let paused = api.deployments("order-summaries").await[0].clone();
    assert_eq!(paused["state"], "paused");
    assert_eq!(paused["lag"].as_i64().unwrap(), more.len() as i64, "nothing consumed while paused: {paused}");
    let (status, _) = api.post("/admin/projections/order-summaries/resume").await;
    assert_eq!(status, StatusCode::OK);
    wait_caught_up(&db, &topic, 1, Duration::from_secs(120)).await;
    let all: Vec<_> = records.iter().chain(&more).cloned().collect();
    assert_rows_eq("order_summaries", &db.json_rows(SUMMARIES_SQL).await, &expected::Model::of(&all).summaries());

    let (status, body) = api
        .send(api.http.delete(format!("{}/admin/projections/order-summaries", api.base)).bearer_auth(ADMIN_TOKEN))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(count(&db, "SELECT count(*) FROM projector.deployments").await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM information_schema.views WHERE table_schema = 'read_models'").await, 0);
    assert_eq!(
        count(&db, "SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE 'proj\\_%'").await,
        0
    );
    let (status, _) = api.get("/admin/projections/order-summaries").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A dry run returns the operations a component would emit for sample events and touches no
/// storage.
#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_shows_operations_and_stores_nothing() {
    let db = TestDb::create("dryrun").await;
    let topic = create_topic("dryrun", 1).await;
    let config = HostConfig::new("dryrun", &db.url, &topic, &[]);
    let _host = Host::start(&config);
    let api = Api::of(&config);
    api.ready().await;
    let events: Vec<Value> = samples()
        .iter()
        .map(|r| json!({"key": r.key, "headers": r.headers.iter().cloned().collect::<std::collections::HashMap<_, _>>(), "value": r.value}))
        .collect();
    let component = base64::engine::general_purpose::STANDARD.encode(wasm(ORDER_SUMMARIES));
    let request = api
        .http
        .post(format!("{}/admin/dry-run", api.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"component": component, "events": events}));
    let (status, body) = api.send(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["projection"]["name"], "order-summaries");
    let counts: Vec<usize> =
        body["results"].as_array().unwrap().iter().map(|r| r["operations"].as_array().unwrap().len()).collect();
    assert_eq!(counts, [1, 2, 1, 1, 1, 1, 1, 0, 1, 0, 1], "{body}");
    assert_eq!(body["results"][0]["at"], json!({"partition": 0, "offset": 0}));
    let first = body["results"][0]["operations"][0].to_string();
    assert!(first.contains("CREATED") && first.contains("17.80"), "{first}");
    assert_eq!(count(&db, "SELECT count(*) FROM projector.components").await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM projector.deployments").await, 0);
}

/// The CLI over the admin API: list (a table), rebuild (followed until live; the previous
/// build stays on standby), rollback, rm.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_lists_rebuilds_rolls_back_and_removes() {
    let db = TestDb::create("cli").await;
    let topic = create_topic("cli", 3).await;
    let records = projector_demo::generate(2_000, 71);
    publish(&topic, &records).await;
    let config = HostConfig::new("cli", &db.url, &topic, &[ORDER_SUMMARIES]);
    let _host = Host::start(&config);
    let api = Api::of(&config);
    api.ready().await;
    wait_caught_up(&db, &topic, 1, Duration::from_secs(120)).await;
    let admin_url = config.admin_url();
    let cli = |args: &[&str]| {
        let mut full = vec!["projections", "--admin-url", &admin_url, "--token", ADMIN_TOKEN];
        full.extend_from_slice(args);
        let output = std::process::Command::new(binary()).args(&full).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(output.status.success(), "{args:?}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        stdout
    };

    let table = cli(&["list"]);
    assert!(table.contains("order-summaries") && table.contains("live"), "{table}");
    let rebuilt = cli(&["rebuild", "order-summaries"]);
    assert!(rebuilt.contains("rebuilding as build 1"), "{rebuilt}");
    let states = api.builds("order-summaries").await;
    assert_eq!(states, [(1, "live".to_string()), (0, "standby".to_string())]);
    assert_rows_eq(
        "order_summaries (rebuilt)",
        &db.json_rows(SUMMARIES_SQL).await,
        &expected::Model::of(&records).summaries(),
    );
    let table = cli(&["list"]);
    assert!(table.contains("standby"), "{table}");

    cli(&["rollback", "order-summaries"]);
    let states = api.builds("order-summaries").await;
    assert_eq!(states, [(1, "standby".to_string()), (0, "live".to_string())]);

    // The standby build can be removed on its own; the live one cannot.
    let ids: Vec<i64> = api.deployments("order-summaries").await.iter().map(|d| d["id"].as_i64().unwrap()).collect();
    let delete = |id: i64| {
        api.http
            .delete(format!("{}/admin/projections/order-summaries/deployments/{id}", api.base))
            .bearer_auth(ADMIN_TOKEN)
    };
    let (status, body) = api.send(delete(ids[1])).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("conflict")),
        "the live one: {body}"
    );
    let (status, body) = api.send(delete(ids[0])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(api.deployments("order-summaries").await.len(), 1);
    assert_eq!(
        count(&db, "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'proj_order_summaries_v1_b1'")
            .await,
        0
    );

    cli(&["rm", "order-summaries"]);
    assert_eq!(count(&db, "SELECT count(*) FROM projector.deployments").await, 0);
    let status = std::process::Command::new(binary())
        .args(["projections", "--admin-url", &config.admin_url(), "--token", ADMIN_TOKEN, "status", "order-summaries"])
        .output()
        .unwrap();
    assert!(!status.status.success());
    assert!(
        String::from_utf8_lossy(&status.stderr).contains("not_found"),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}

/// `/admin/openapi.json` describes every admin route, with the bearer scheme it requires.
#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_describes_itself_in_openapi() {
    let db = TestDb::create("admin_openapi").await;
    let topic = create_topic("admin-openapi", 1).await;
    let config = HostConfig::new("admin-openapi", &db.url, &topic, &[]);
    let _host = Host::start(&config);
    let api = Api::of(&config);
    api.ready().await;
    let (status, spec) = api.get("/admin/openapi.json").await;
    assert_eq!(status, StatusCode::OK, "{spec}");
    let paths: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |method| (method.clone(), path.clone())))
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("get", "/admin/projections"),
        ("post", "/admin/projections"),
        ("get", "/admin/projections/{name}"),
        ("delete", "/admin/projections/{name}"),
        ("delete", "/admin/projections/{name}/deployments/{id}"),
        ("post", "/admin/projections/{name}/rebuild"),
        ("post", "/admin/projections/{name}/rollback"),
        ("post", "/admin/projections/{name}/pause"),
        ("post", "/admin/projections/{name}/resume"),
        ("put", "/admin/projections/{name}/policy"),
        ("post", "/admin/projections/{name}/skip"),
        ("get", "/admin/projections/{name}/dead-letters"),
        ("post", "/admin/projections/{name}/dead-letters/redrive"),
        ("post", "/admin/dry-run"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    assert_eq!(paths, expected);
    // The answers are typed: the list's body is the ProjectionList schema, and every schema
    // referred to is described.
    let list = &spec["paths"]["/admin/projections"]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
    assert_eq!(list["$ref"], "#/components/schemas/ProjectionList", "{list}");
    let text = spec.to_string();
    let referred: BTreeSet<&str> =
        text.split("\"#/components/schemas/").skip(1).map(|rest| rest.split('"').next().unwrap()).collect();
    for name in ["ProjectionView", "DeploymentView", "Uploaded", "Deployment", "RolledBack"] {
        assert!(referred.contains(name), "{name} is not referred to: {referred:?}");
    }
    for name in &referred {
        assert!(spec["components"]["schemas"][name].is_object(), "{name} is referred to but not described");
    }
    let deployment = &spec["components"]["schemas"]["DeploymentView"]["properties"];
    for field in ["state", "lag", "applied", "partitions", "consumer", "dead_letters", "last_error"] {
        assert!(deployment[field].is_object(), "DeploymentView has no {field}: {deployment}");
    }
    assert_eq!(spec["components"]["securitySchemes"]["bearer"]["scheme"], "bearer", "{spec}");
    let unauthenticated = api.http.get(format!("{}/admin/openapi.json", api.base)).send().await.unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
}

/// Waits until deployment `id` of `name` is failed, serving or not; returns its description.
async fn wait_failed(api: &Api, name: &str, id: i64, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let deployments = api.deployments(name).await;
        if let Some(d) = deployments.iter().find(|d| d["id"] == id && d["state"] == "failed") {
            return d.clone();
        }
        assert!(Instant::now() < deadline, "{name} deployment {id} did not fail: {deployments:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A live projection that fails is not gone: it keeps answering from its last committed batch,
/// every answer flagged (`status: failed`, the error with its partition and offset, the
/// watermark), a read waiting for an offset it will not apply is told at once, and it can be
/// hot-swapped (it is live again and resumes from its stored offsets; this fixture fails on the
/// same event again, deterministically).
#[tokio::test(flavor = "multi_thread")]
async fn a_live_projection_that_fails_keeps_serving_flagged_and_can_be_hot_swapped() {
    let db = TestDb::create("failedlive").await;
    let topic = create_topic("failedlive", 1).await;
    let record = |i: usize, kind: &str| projector_demo::DemoRecord {
        key: format!("k{i:02}"),
        headers: vec![],
        value: json!({"type": kind}),
    };
    publish(&topic, &(0..10).map(|i| record(i, "Fine")).collect::<Vec<_>>()).await;
    let config = HostConfig::new("failedlive", &db.url, &topic, &[MISBEHAVING]);
    let host = Host::start(&config);
    let api = Api::of(&config);
    api.ready().await;
    wait_caught_up(&db, &topic, 1, Duration::from_secs(120)).await;
    let id = api.deployments("misbehaving").await[0]["id"].as_i64().unwrap();
    publish(&topic, &[record(10, "Panic"), record(11, "Fine")]).await;
    let failed = wait_failed(&api, "misbehaving", id, Duration::from_secs(60)).await;
    assert_eq!(failed["serving"], true, "{failed}");
    assert_eq!(failed["last_error"]["offset"], 10, "{failed}");

    let query = reqwest::Client::new();
    let get = |path: String| {
        let request = query.get(format!("{}{path}", config.query_url()));
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    // The catalog follows the registry within a reconcile.
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = get("/read-models/probe?limit=100".into()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["consistency"]["status"] == "failed" {
            break body;
        }
        assert!(Instant::now() < deadline, "answers are not flagged: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    let expected: Vec<String> = (0..10).map(|i| format!("k{i:02}")).collect();
    assert_eq!(ids, expected, "{body}");
    let error = body["consistency"]["error"].as_str().unwrap();
    assert!(error.contains("partition 0 offset 10") && error.contains("panicked on purpose at offset 10"), "{error}");
    assert_eq!(body["consistency"]["watermark"], json!({"0": 10}));
    let (status, row) = get("/read-models/probe/k03".into()).await;
    assert_eq!((status, row["data"]["observed"].clone()), (StatusCode::OK, json!("ok")), "{row}");
    let asked = Instant::now();
    let (status, body) = get("/read-models/probe/k03?after=0:11&wait_ms=10000".into()).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!("projection_failed")),
        "{body}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "a read-your-writes wait on a failed projection took {:?}",
        asked.elapsed()
    );

    let mut patched = wasm(MISBEHAVING);
    patched.extend_from_slice(&[0, 8, 7]);
    patched.extend_from_slice(b"patched");
    let (status, body) = api.upload(patched, "?mode=hot-swap").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"], "hot-swapped");
    let again = wait_failed(&api, "misbehaving", id, Duration::from_secs(60)).await;
    assert_ne!(again["sha256"], failed["sha256"], "{again}");
    assert_eq!(again["last_error"]["offset"], 10, "resumed from its stored offset: {again}");
    assert_eq!(count(&db, "SELECT count(*) FROM read_models.probe").await, 10, "{}", host.log_tail());
}

/// A failed serving deployment can be rolled back to its standby, which answers as live again.
/// (The failure is recorded through the registry, as a worker records one: no fixture has two
/// versions of which the newer fails.)
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_serving_deployment_rolls_back_to_its_standby() {
    let db = TestDb::create("failedroll").await;
    let topic = create_topic("failedroll", 2).await;
    let records = projector_demo::generate(300, 41);
    publish(&topic, &records).await;
    let config = HostConfig::new("failedroll", &db.url, &topic, &[ORDER_SUMMARIES]);
    let _host = Host::start(&config);
    let api = Api::of(&config);
    api.ready().await;
    wait_caught_up(&db, &topic, 1, Duration::from_secs(120)).await;
    let (status, body) = api.upload(wasm(ORDER_SUMMARIES_V2), "").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let v2 = body["deployment"]["id"].as_i64().unwrap();
    api.wait_state("order-summaries", v2, "live", Duration::from_secs(120)).await;

    let registry = projector::registry::Registry::new(db.pool.clone());
    registry.fail(v2, "event at partition 1 offset 7: broken on purpose", Some((1, 7))).await.unwrap();
    let failed = wait_failed(&api, "order-summaries", v2, Duration::from_secs(30)).await;
    assert_eq!(failed["serving"], true);
    let (status, body) = api.get("/admin/projections/order-summaries").await;
    assert_eq!(
        (status, body["live_version"].clone(), body["serving_version"].clone()),
        (StatusCode::OK, Value::Null, json!(2)),
        "{body}"
    );

    let (status, body) = api.post("/admin/projections/order-summaries/rollback").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["live"]["version"], 1);
    let states: Vec<(String, bool)> = api
        .deployments("order-summaries")
        .await
        .iter()
        .map(|d| (d["state"].as_str().unwrap().to_string(), d["serving"].as_bool().unwrap()))
        .collect();
    assert_eq!(states, [("failed".to_string(), false), ("live".to_string(), true)]);
    let rows = db.json_rows(SUMMARIES_SQL).await;
    assert!(rows.iter().all(|r| r.get("event_count").is_none()), "version 1's view is back");
    assert_rows_eq("order_summaries after rollback", &rows, &expected::Model::of(&records).summaries());
}

/// The control plane's edges. A removed deployment stays removed although its component is
/// still in the plugin directory at the next start. A deployment older than the serving one
/// (here version 1 uploaded again while version 2 serves) waits on standby when it has caught
/// up: promotion only moves forward. A user's view on a public view blocks a promotion with a
/// clear error on that deployment only, until the view is dropped. A registry change waiting
/// on the registry's lock gives up after the lock timeout with a 503.
#[tokio::test(flavor = "multi_thread")]
async fn removed_stays_removed_promotion_moves_forward_and_dependent_views_are_explained() {
    let db = TestDb::create("edges").await;
    let topic = create_topic("edges", 2).await;
    let records = projector_demo::generate(400, 71);
    publish(&topic, &records).await;
    let config = HostConfig::new("edges", &db.url, &topic, &[ORDER_SUMMARIES]);
    let host = Host::start(&config);
    let api = Api::of(&config);
    api.ready().await;
    wait_caught_up(&db, &topic, 1, Duration::from_secs(120)).await;
    let v1 = api.deployments("order-summaries").await[0]["id"].as_i64().unwrap();
    let (status, body) = api.upload(wasm(ORDER_SUMMARIES_V2), "").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let v2 = body["deployment"]["id"].as_i64().unwrap();
    api.wait_state("order-summaries", v2, "live", Duration::from_secs(120)).await;
    let path = format!("{}/admin/projections/order-summaries/deployments/{v1}", api.base);
    let (status, body) = api.send(api.http.delete(path).bearer_auth(ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Restarted with version 1 still in its plugin directory: it does not come back.
    host.kill();
    let host = Host::start(&config);
    api.ready().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids: Vec<i64> = api.deployments("order-summaries").await.iter().map(|d| d["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [v2], "{}", host.log_tail());
    assert!(host.log().contains("Not registering a plugin removed through the admin API"), "{}", host.log_tail());

    // Uploaded on purpose, version 1 builds, catches up and waits on standby.
    let (status, body) = api.upload(wasm(ORDER_SUMMARIES), "").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let again = body["deployment"]["id"].as_i64().unwrap();
    api.wait_state("order-summaries", again, "standby", Duration::from_secs(120)).await;
    let states: Vec<(i64, String, bool)> = api
        .deployments("order-summaries")
        .await
        .iter()
        .map(|d| {
            (d["version"].as_i64().unwrap(), d["state"].as_str().unwrap().to_string(), d["serving"].as_bool().unwrap())
        })
        .collect();
    assert_eq!(states, [(1, "standby".to_string(), false), (2, "live".to_string(), true)]);

    // A view of the user's on the public view: the rebuild of version 2 catches up but cannot
    // be swapped in; version 2 keeps serving; dropping the view lets it through.
    sqlx::query("CREATE VIEW public.big_orders AS SELECT order_id FROM read_models.order_summaries WHERE total > 100")
        .execute(&db.pool)
        .await
        .unwrap();
    let (status, body) = api.post("/admin/projections/order-summaries/rebuild").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let rebuild = body["deployment"]["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let blocked = loop {
        let deployments = api.deployments("order-summaries").await;
        let d = deployments.iter().find(|d| d["id"] == rebuild).unwrap().clone();
        if !d["last_error"].is_null() {
            break d;
        }
        assert!(Instant::now() < deadline, "the promotion was not reported blocked: {d}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(blocked["state"], "building", "{blocked}");
    let message = blocked["last_error"]["message"].as_str().unwrap();
    assert!(
        message.contains("cannot go live")
            && message.contains("view big_orders depends on view read_models.order_summaries"),
        "{message}"
    );
    assert!(message.contains("drop those views and create them again after the swap"), "{message}");
    sqlx::query("DROP VIEW public.big_orders").execute(&db.pool).await.unwrap();
    let live = api.wait_state("order-summaries", rebuild, "live", Duration::from_secs(60)).await;
    assert!(live["last_error"].is_null(), "{live}");

    // Another change holds the registry's lock: a change waits for it, then gives up.
    let mut holder = db.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(0x7072_6f6a_6563_746f_i64)
        .execute(&mut *holder)
        .await
        .unwrap();
    let asked = Instant::now();
    let (status, body) = api.post("/admin/projections/order-summaries/pause").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!("registry_busy")),
        "{body}"
    );
    assert!(
        asked.elapsed() >= Duration::from_secs(9) && asked.elapsed() < Duration::from_secs(20),
        "{:?}",
        asked.elapsed()
    );
    holder.rollback().await.unwrap();
    let (status, body) = api.post("/admin/projections/order-summaries/pause").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
