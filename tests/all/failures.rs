//! Bad input gets a clear error, a visible status, and loses nothing.

use std::time::Duration;

use projector::demo::DemoRecord;
use projector_tests::broker::Broker;
use projector_tests::host::{Host, HostConfig};
use projector_tests::*;
use serde_json::json;
use sqlx::Row;

/// A known event type with a malformed body stops each projection at that event: the status
/// says `failed` with the partition and offset, everything before it is applied, nothing after.
#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_event_stops_the_projection_at_that_offset() {
    let db = TestDb::create("malformed").await;
    let topic = create_topic("malformed", 1).await;
    let mut records = samples();
    let bad = DemoRecord {
        key: "ord-2001".into(),
        headers: vec![(
            "__TypeId__".into(),
            "com.example.orders.events.OrderSubmitted".into(),
        )],
        // `total` is text, not a number.
        value: json!({"eventId": "e-bad", "orderId": "ord-2001", "total": "lots", "submittedAt": "2026-11-22T10:00:00.000Z"}),
    };
    records.push(bad);
    records.extend(samples().into_iter().map(|mut r| {
        r.key = r.key.replace("ord-", "late-");
        r.value["orderId"] = json!(r.key);
        r
    }));
    publish(&topic, &records).await;
    let mut host = Host::start(&HostConfig::new(
        "malformed",
        &db.url,
        &topic,
        &EXAMPLE_PLUGINS,
    ));

    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let failed = loop {
        let rows = sqlx::query(
            "SELECT name, last_error, error_partition, error_offset FROM projector.deployments \
             WHERE status = 'failed' ORDER BY name",
        )
            .fetch_all(&db.pool)
            .await
            .unwrap_or_default();
        if rows.len() == 3 {
            break rows;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not all projections failed: {}",
            host.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for row in &failed {
        let (name, error): (String, String) = (row.get(0), row.get(1));
        let at: (Option<i32>, Option<i64>) = (row.get(2), row.get(3));
        assert_eq!(at, (Some(0), Some(11)), "{name}");
        assert!(error.contains("partition 0 offset 11"), "{name}: {error}");
        assert!(error.contains("total"), "{name} names the field: {error}");
    }
    // Every projection stopped exactly before the bad event: the 11 samples are applied.
    for schema in [
        "proj_order_summaries_v1",
        "proj_order_details_v1",
        "proj_daily_order_stats_v1",
    ] {
        let next: i64 = sqlx::query_scalar(&format!(
            "SELECT next_offset FROM {schema}._offsets WHERE partition = 0"
        ))
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(next, 11, "{schema} stops exactly at the bad event");
    }
    // The deployments failed while building, so nothing went live; their tables hold exactly
    // the 11 samples before the bad event.
    let schemas = ["proj_order_summaries_v1", "proj_order_details_v1", "proj_daily_order_stats_v1"];
    assert_tables_match_model(&db, schemas, &samples()).await;
    // The host keeps running (a fixed plugin can be uploaded); the failure is in its log.
    assert!(host.running(), "{}", host.log_tail());
    assert!(
        host.log().contains("Projection failed and stopped"),
        "{}",
        host.log_tail()
    );
}

/// The database goes away under a running host, again and again: every connection to its
/// database is terminated (as a PostgreSQL restart or failover does) while events keep arriving.
/// The host stays up, retries, and ends with exactly the model's rows: nothing lost, nothing
/// applied twice (a commit whose answer was lost is fenced on retry, not doubled).
#[tokio::test(flavor = "multi_thread")]
async fn database_connections_dropped_mid_stream_lose_and_double_nothing() {
    let db = TestDb::create("pgdrop").await;
    let topic = create_topic("pgdrop", 4).await;
    let records = projector::demo::generate(4_000, 17);
    let config = HostConfig::new("pgdrop", &db.url, &topic, &EXAMPLE_PLUGINS)
        .with("PROJECTOR_PIPELINE__MAX_BATCH_EVENTS", "200");
    let mut host = Host::start(&config);
    let database = db.url.rsplit('/').next().unwrap().to_string();
    let mut terminated = 0_i64;
    for slice in records.chunks(records.len().div_ceil(10)) {
        publish(&topic, slice).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        let killed: i64 = sqlx::query_scalar(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name <> $2",
        )
        .bind(&database)
        .bind(TEST_APPLICATION)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        terminated += killed;
    }
    assert!(terminated >= 10, "only {terminated} connections were terminated");
    wait_caught_up(&db, &topic, 3, Duration::from_secs(180)).await;
    assert!(host.running(), "the host died: {}", host.log_tail());
    assert_matches_model(&db, &records).await;
}

/// A plugin that traps (here: panics) on one event in the middle of a call is narrowed down to
/// that event: the projection stops exactly there, with the status naming its partition and
/// offset and the panic message, and every event before it applied.
#[tokio::test(flavor = "multi_thread")]
async fn a_trap_stops_the_projection_exactly_at_the_poison_event() {
    let db = TestDb::create("poison").await;
    let topic = create_topic("poison", 1).await;
    let record = |index: usize, kind: &str| DemoRecord {
        key: format!("k{index:02}"),
        headers: vec![],
        value: json!({"type": kind}),
    };
    let records: Vec<DemoRecord> =
        (0..40).map(|i| record(i, if i == 23 { "Panic" } else { "Fine" })).collect();
    publish(&topic, &records).await;
    let host = Host::start(&HostConfig::new("poison", &db.url, &topic, &[MISBEHAVING]));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let row = loop {
        let row = sqlx::query(
            "SELECT last_error, error_partition, error_offset, schema_name FROM projector.deployments WHERE status = 'failed'",
        )
        .fetch_optional(&db.pool)
        .await
        .unwrap_or_default();
        if let Some(row) = row {
            break row;
        }
        assert!(std::time::Instant::now() < deadline, "the projection did not fail: {}", host.log_tail());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (error, partition, offset, schema): (String, Option<i32>, Option<i64>, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!((partition, offset), (Some(0), Some(23)), "{error}");
    assert!(error.contains("panicked on purpose at offset 23"), "{error}");
    let keys: Vec<String> = sqlx::query_scalar(&format!("SELECT id FROM \"{schema}\".probe ORDER BY id"))
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let expected: Vec<String> = (0..23).map(|i| format!("k{i:02}")).collect();
    assert_eq!(keys, expected, "everything before the poison event is applied, nothing after");
}

/// The broker goes away under a running host (SIGKILL) while events are pending, and comes back
/// on the same port and storage a few seconds later, while more events arrive. The host stays
/// up, resumes by itself and ends with exactly the model's rows.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_killed_and_restarted_mid_stream_loses_and_doubles_nothing() {
    let dir = std::env::temp_dir().join(unique("broker"));
    let mut broker = Broker::start(&dir);
    let topic = "order-events";
    let kafka = broker.kafka(topic);
    projector::demo::create_topic(&kafka, topic, 3).await.unwrap();
    let records = projector::demo::generate(8_000, 23);
    let (first, second) = records.split_at(records.len() * 3 / 4);
    projector::demo::publish(&kafka, first).await.unwrap();

    let db = TestDb::create("broker_down").await;
    let config = HostConfig::new("broker-down", &db.url, topic, &EXAMPLE_PLUGINS)
        .with("PROJECTOR_KAFKA__BROKERS", &kafka.brokers)
        .with("PROJECTOR_PIPELINE__MAX_BATCH_EVENTS", "200");
    let mut host = Host::start(&config);
    crate::e2e::wait_for_progress(&db, 1).await;
    broker.kill();
    let at_kill = crate::e2e::wait_for_progress(&db, 0).await;
    assert!(at_kill < first.len() as i64, "the kill came after all {at_kill} events were applied");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(host.running(), "the host died with the broker: {}", host.log_tail());
    broker.restart();
    projector::demo::publish(&kafka, second).await.unwrap();

    wait_caught_up_on(&db, &kafka, 3, Duration::from_secs(180)).await;
    assert!(host.running(), "{}", host.log_tail());
    assert_matches_model(&db, &records).await;
    drop(broker);
}
