//! Poison events: what a projection does with an event that fails deterministically, by its
//! policy. `halt` stops exactly there until an operator skips that one event (recorded);
//! `dead-letter` moves past it, recording it in the same transaction, and a re-drive applies it
//! later through the current build, once.

use std::time::{Duration, Instant};

use projector_demo::DemoRecord;
use projector_tests::api::Api;
use projector_tests::host::{binary, Host, HostConfig, ADMIN_TOKEN};
use projector_tests::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::failures::{failure_of, probe_ids};

fn record(index: usize, key: &str, kind: &str) -> DemoRecord {
    DemoRecord { key: key.to_string(), headers: vec![("seq".into(), index.to_string())], value: json!({"type": kind}) }
}

/// The `misbehaving` fixture's rows: `(id, observed, children)`.
async fn probe_rows(db: &TestDb, schema: &str) -> Vec<(String, String, Option<i64>)> {
    sqlx::query_as(&format!("SELECT id, observed, children FROM \"{schema}\".probe ORDER BY id"))
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

/// Waits until `check` holds for the projection's dead letters; returns them.
async fn wait_letters(api: &Api, name: &str, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, body) = api.get(&format!("/admin/projections/{name}/dead-letters")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let letters = body["dead_letters"].as_array().unwrap().clone();
        if check(&letters) {
            return letters;
        }
        assert!(Instant::now() < deadline, "{what}: {letters:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn coordinates(letters: &[Value]) -> Vec<(i64, i64)> {
    letters.iter().map(|l| (l["partition"].as_i64().unwrap(), l["offset"].as_i64().unwrap())).collect()
}

/// With `dead-letter`, a refused event (a `Child` before its `Parent`) and a trapping one are
/// moved past, each recorded with its bytes, coordinates, error and build; everything else is
/// applied and the projection goes live. A re-drive applies the child through the current
/// build once its parent is there, and keeps the trapping one with its new error; asking again
/// applies nothing twice.
#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_move_past_poison_and_a_redrive_applies_them_once() {
    let db = TestDb::create("deadletter").await;
    let topic = create_topic("deadletter", 1).await;
    let config = HostConfig::new("deadletter", &db.url, &topic, &[MISBEHAVING]);
    let mut host = Host::start(&config);
    let api = Api::of(&config);
    api.ready().await;
    let (status, body) =
        api.put_json("/admin/projections/misbehaving/policy", &json!({"on_poison": "dead-letter"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api.put_json("/admin/projections/misbehaving/policy", &json!({"on_poison": "skip-it"})).await;
    assert_eq!((status, body["error"]["code"].clone()), (StatusCode::BAD_REQUEST, json!("invalid_policy")), "{body}");

    let records = [
        record(0, "k00", "Fine"),
        record(1, "k01", "Child"),
        record(2, "k02", "Panic"),
        record(3, "k03", "Fine"),
        record(4, "k01", "Parent"),
        record(5, "k04", "Fine"),
    ];
    publish(&topic, &records).await;
    wait_caught_up(&db, &topic, 1, Duration::from_secs(120)).await;
    let schema =
        sqlx::query_scalar::<_, String>("SELECT schema_name FROM projector.deployments WHERE name = 'misbehaving'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let ok = |id: &str| (id.to_string(), "ok".to_string(), None);
    assert_eq!(probe_rows(&db, &schema).await, [ok("k00"), ok("k01"), ok("k03"), ok("k04")]);
    let letters = wait_letters(&api, "misbehaving", "two dead letters", |l| l.len() == 2).await;
    assert_eq!(coordinates(&letters), [(0, 1), (0, 2)]);
    let child = &letters[0];
    assert_eq!(child["event"]["key"], "k01");
    assert_eq!(child["event"]["value"], r#"{"type":"Child"}"#);
    assert_eq!(child["event"]["headers"], json!([{"key": "seq", "value": "1"}]));
    assert_eq!(child["error"], "child of k01 arrived before its parent");
    assert_eq!(child["reason"], "dead-letter");
    assert_eq!((child["version"].clone(), child["attempts"].clone()), (json!(1), json!(0)));
    let panic = letters[1]["error"].as_str().unwrap();
    assert!(panic.contains("panicked on purpose at offset 2"), "{panic}");
    let d = &api.deployments("misbehaving").await[0];
    assert_eq!((d["state"].clone(), d["on_poison"].clone()), (json!("live"), json!("dead-letter")), "{d}");
    assert_eq!(d["dead_letters"], json!({"pending": 2, "redriven": 0}), "{d}");

    let (status, body) = api.post("/admin/projections/misbehaving/dead-letters/redrive").await;
    assert_eq!((status, body["requested"].clone()), (StatusCode::ACCEPTED, json!(2)), "{body}");
    let letters = wait_letters(&api, "misbehaving", "the child re-driven, the panic refused again", |l| {
        l.len() == 2 && !l[0]["redriven_at"].is_null() && l[1]["attempts"] == 1
    })
    .await;
    assert_eq!(letters[0]["redriven_by_sha256"], letters[0]["recorded_by_build"]["sha256"]);
    assert!(letters[1]["redriven_at"].is_null() && letters[1]["redrive_requested_at"].is_null(), "{:#?}", letters[1]);
    let again = letters[1]["last_redrive_error"].as_str().unwrap();
    assert!(again.contains("panicked on purpose at offset 2"), "{again}");
    let child = ("k01".to_string(), "child".to_string(), Some(1));
    assert_eq!(probe_rows(&db, &schema).await, [ok("k00"), child.clone(), ok("k03"), ok("k04")]);

    // The child is not pending any more: asking for it is refused, and re-driving the rest does
    // not apply it again.
    let (status, body) = api
        .post_json("/admin/projections/misbehaving/dead-letters/redrive", &json!({"partition": 0, "offset": 1}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = api.post("/admin/projections/misbehaving/dead-letters/redrive").await;
    assert_eq!((status, body["requested"].clone()), (StatusCode::ACCEPTED, json!(1)), "{body}");
    wait_letters(&api, "misbehaving", "the panic refused a second time", |l| l[1]["attempts"] == 2).await;
    assert_eq!(probe_rows(&db, &schema).await, [ok("k00"), child, ok("k03"), ok("k04")]);

    // The CLI lists them.
    let output = std::process::Command::new(binary())
        .args([
            "projections",
            "--admin-url",
            &config.admin_url(),
            "--token",
            ADMIN_TOKEN,
            "dead-letters",
            "misbehaving",
        ])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{table}{}", String::from_utf8_lossy(&output.stderr));
    assert!(table.contains("re-driven") && table.contains("k01") && table.contains("plugin trapped"), "{table}");
    let (_, metrics) = api.get("/metrics").await;
    let counted: Vec<&str> =
        metrics.as_str().unwrap().lines().filter(|l| l.contains(r#"kind="dead_letter""#)).collect();
    assert_eq!(counted.len(), 1, "{counted:?}");
    assert!(counted[0].contains(r#"projection="misbehaving""#) && counted[0].ends_with(" 2"), "{counted:?}");
    assert!(host.running(), "{}", host.log_tail());
}

/// With `halt` (the default), the projection stops exactly at a poison event. A skip must name
/// that event; then the projection runs again, moves past that one event (recorded with who
/// skipped it) and applies everything after it.
#[tokio::test(flavor = "multi_thread")]
async fn halt_stops_at_the_poison_event_until_an_operator_skips_it() {
    let db = TestDb::create("skip").await;
    let topic = create_topic("skip", 1).await;
    let kinds = ["Fine", "Fine", "Panic", "Fine", "Fine"];
    let records: Vec<DemoRecord> =
        kinds.iter().enumerate().map(|(i, kind)| record(i, &format!("k{i:02}"), kind)).collect();
    publish(&topic, &records).await;
    let config = HostConfig::new("skip", &db.url, &topic, &[MISBEHAVING]);
    let mut host = Host::start(&config);
    let api = Api::of(&config);
    let (error, partition, offset, schema) = failure_of(&db, "misbehaving", &host).await;
    assert_eq!((partition, offset), (Some(0), Some(2)), "{error}");
    assert_eq!(probe_ids(&db, &schema).await, ["k00", "k01"]);

    let (status, body) =
        api.post_json("/admin/projections/misbehaving/skip", &json!({"partition": 0, "offset": 3})).await;
    assert_eq!(status, StatusCode::CONFLICT, "a skip names the exact event: {body}");
    let (status, body) =
        api.post_json("/admin/projections/misbehaving/skip", &json!({"partition": 0, "offset": 2})).await;
    assert_eq!((status, body["result"].clone()), (StatusCode::OK, json!("skipping")), "{body}");
    wait_caught_up(&db, &topic, 1, Duration::from_secs(120)).await;
    assert_eq!(probe_ids(&db, &schema).await, ["k00", "k01", "k03", "k04"]);
    let letters =
        wait_letters(&api, "misbehaving", "the skipped event recorded", |l| l.len() == 1 && !l[0]["event"].is_null())
            .await;
    let skipped = &letters[0];
    assert_eq!(coordinates(&letters), [(0, 2)]);
    assert_eq!(
        (skipped["reason"].clone(), skipped["recorded_by"].clone()),
        (json!("skipped"), json!("test-admin")),
        "{skipped}"
    );
    assert_eq!(skipped["event"]["value"], r#"{"type":"Panic"}"#);
    assert!(skipped["error"].as_str().unwrap().contains("panicked on purpose at offset 2"), "{skipped}");
    let d = &api.deployments("misbehaving").await[0];
    assert_eq!((d["state"].clone(), d["last_error"].clone()), (json!("live"), Value::Null), "{d}");
    assert!(host.running(), "{}", host.log_tail());
}
