//! Bad input gets a clear error, a visible status, and loses nothing.

use std::time::Duration;

use projector_demo::DemoRecord;
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
        headers: vec![("__TypeId__".into(), "com.example.orders.events.OrderSubmitted".into())],
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
    let mut host = Host::start(&HostConfig::new("malformed", &db.url, &topic, &EXAMPLE_PLUGINS));

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
        assert!(std::time::Instant::now() < deadline, "not all projections failed: {}", host.log_tail());
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
    for schema in ["proj_order_summaries_v1", "proj_order_details_v1", "proj_daily_order_stats_v1"] {
        let next: i64 = sqlx::query_scalar(&format!("SELECT next_offset FROM {schema}._offsets WHERE partition = 0"))
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
    assert!(host.log().contains("Projection failed and stopped"), "{}", host.log_tail());
}

/// The database goes away under a running host, again and again: every connection to its
/// database is terminated (as a PostgreSQL restart or failover does) while events keep arriving.
/// The host stays up, retries, and ends with exactly the model's rows: nothing lost, nothing
/// applied twice (a commit whose answer was lost is fenced on retry, not doubled).
#[tokio::test(flavor = "multi_thread")]
async fn database_connections_dropped_mid_stream_lose_and_double_nothing() {
    let db = TestDb::create("pgdrop").await;
    let topic = create_topic("pgdrop", 4).await;
    let records = projector_demo::generate(4_000, 17);
    let config = HostConfig::new("pgdrop", &db.url, &topic, &EXAMPLE_PLUGINS)
        .with("PROJECTOR_PIPELINE__MAX_BATCH_EVENTS", "200");
    let mut host = Host::start(&config);
    let database = db.url.rsplit('/').next().unwrap().to_string();
    let mut terminated = 0_i64;
    for slice in records.chunks(records.len().div_ceil(10)) {
        publish(&topic, slice).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        // Each round waits until the host has reconnected (a slow start or a retry backoff
        // under load must not leave a round with nothing to terminate), then drops it all.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
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
            if killed > 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the host never reconnected: {}", host.log_tail());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
    let records: Vec<DemoRecord> = (0..40).map(|i| record(i, if i == 23 { "Panic" } else { "Fine" })).collect();
    publish(&topic, &records).await;
    let host = Host::start(&HostConfig::new("poison", &db.url, &topic, &[MISBEHAVING]));
    let (error, partition, offset, schema) = failure_of(&db, "misbehaving", &host).await;
    assert_eq!((partition, offset), (Some(0), Some(23)), "{error}");
    assert!(error.contains("panicked on purpose at offset 23"), "{error}");
    let keys = probe_ids(&db, &schema).await;
    let expected: Vec<String> = (0..23).map(|i| format!("k{i:02}")).collect();
    assert_eq!(keys, expected, "everything before the poison event is applied, nothing after");
}

/// The schema of the `misbehaving` fixture's deployment.
async fn probe_schema(db: &TestDb) -> String {
    sqlx::query_scalar("SELECT schema_name FROM projector.deployments WHERE name = 'misbehaving'")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

/// The record keys in the `misbehaving` fixture's table of `schema`, sorted.
pub(crate) async fn probe_ids(db: &TestDb, schema: &str) -> Vec<String> {
    sqlx::query_scalar(&format!("SELECT id FROM \"{schema}\".probe ORDER BY id")).fetch_all(&db.pool).await.unwrap()
}

/// Waits until a projection fails; returns its error, partition, offset and schema.
pub(crate) async fn failure_of(db: &TestDb, name: &str, host: &Host) -> (String, Option<i32>, Option<i64>, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let row = sqlx::query(
            "SELECT last_error, error_partition, error_offset, schema_name FROM projector.deployments \
             WHERE status = 'failed' AND name = $1",
        )
        .bind(name)
        .fetch_optional(&db.pool)
        .await
        .unwrap_or_default();
        if let Some(row) = row {
            return (row.get(0), row.get(1), row.get(2), row.get(3));
        }
        assert!(std::time::Instant::now() < deadline, "{name} did not fail: {}", host.log_tail());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A record whose key holds a NUL character (which PostgreSQL text cannot store) and whose type
/// no example projection handles: the examples skip it and stay exact, while the projection
/// that stores the key fails at exactly that event, with partition, offset and a clear message,
/// everything before it applied.
#[tokio::test(flavor = "multi_thread")]
async fn a_nul_byte_in_a_key_fails_only_the_projection_that_stores_it() {
    let db = TestDb::create("nulkey").await;
    let topic = create_topic("nulkey", 1).await;
    let mut records = projector_demo::generate(200, 31);
    let at = records.len() / 2;
    records
        .insert(at, DemoRecord { key: "ord-nul-\u{0}-1".into(), headers: vec![], value: json!({"type": "Mystery"}) });
    publish(&topic, &records).await;
    let mut plugins = EXAMPLE_PLUGINS.to_vec();
    plugins.push(MISBEHAVING);
    let host = Host::start(&HostConfig::new("nulkey", &db.url, &topic, &plugins));

    let (error, partition, offset, schema) = failure_of(&db, "misbehaving", &host).await;
    assert_eq!((partition, offset), (Some(0), Some(at as i64)), "{error}");
    assert!(error.contains("NUL character (U+0000)"), "{error}");
    let keys = probe_ids(&db, &schema).await;
    let mut before: Vec<String> = records[..at].iter().map(|r| r.key.clone()).collect();
    before.sort();
    before.dedup();
    assert_eq!(keys, before, "every key before the NUL record, none after");

    wait_caught_up_beside(&db, &kafka(&topic), 3, &["misbehaving"], Duration::from_secs(120)).await;
    assert_matches_model(&db, &records).await;
}

/// A value the database refuses although it passed every check of the host (here a key too
/// large for its primary-key index) is narrowed to the event that produced it: the projection
/// stops exactly there with the database's reason, everything before it applied.
#[tokio::test(flavor = "multi_thread")]
async fn a_row_the_database_refuses_is_pinned_to_its_event() {
    let db = TestDb::create("refused").await;
    let topic = create_topic("refused", 1).await;
    // 20,000 pseudo-random letters: too large for a btree entry even compressed.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let huge: String = (0..20_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (b'a' + (seed % 26) as u8) as char
        })
        .collect();
    let records: Vec<DemoRecord> = (0..30)
        .map(|i| DemoRecord {
            key: if i == 17 { huge.clone() } else { format!("k{i:02}") },
            headers: vec![],
            value: json!({"type": "Fine"}),
        })
        .collect();
    publish(&topic, &records).await;
    let host = Host::start(&HostConfig::new("refused", &db.url, &topic, &[MISBEHAVING]));
    let (error, partition, offset, schema) = failure_of(&db, "misbehaving", &host).await;
    assert_eq!((partition, offset), (Some(0), Some(17)), "{error}");
    assert!(error.contains("the database refused what the plugin made of this event"), "{error}");
    assert!(error.contains("index row"), "{error}");
    let keys = probe_ids(&db, &schema).await;
    let expected: Vec<String> = (0..17).map(|i| format!("k{i:02}")).collect();
    assert_eq!(keys, expected, "everything before the refused event is applied, nothing after");
}

/// Large events are handed to a plugin a few at a time: calls are bounded by bytes as well as
/// by count, so 100 valid events of 600 KB (60 MB, where a call of 500 events would hold them
/// all) fit a 32 MiB memory cap and every one is applied.
#[tokio::test(flavor = "multi_thread")]
async fn large_events_are_split_into_calls_that_fit_the_memory_cap() {
    let db = TestDb::create("large").await;
    let topic = create_topic("large", 1).await;
    let pad = "x".repeat(600_000);
    let records: Vec<DemoRecord> = (0..100)
        .map(|i| DemoRecord { key: format!("big{i:03}"), headers: vec![], value: json!({"type": "Fine", "pad": pad}) })
        .collect();
    publish(&topic, &records).await;
    // A long batch wait, so that the batch holds all of them (it is bounded at 64 MiB).
    let config = HostConfig::new("large", &db.url, &topic, &[MISBEHAVING])
        .with("PROJECTOR_PLUGINS__MAX_MEMORY_MIB", "32")
        .with("PROJECTOR_PIPELINE__MAX_BATCH_WAIT_MS", "5000");
    let host = Host::start(&config);
    wait_caught_up(&db, &topic, 1, Duration::from_secs(120)).await;
    let schema = probe_schema(&db).await;
    let rows: Vec<(String, String)> =
        sqlx::query_as(&format!("SELECT id, observed FROM \"{schema}\".probe ORDER BY id"))
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let expected: Vec<(String, String)> = (0..100).map(|i| (format!("big{i:03}"), "ok".to_string())).collect();
    assert_eq!(rows, expected, "{}", host.log_tail());
}

/// Retention deletes events two projections had not applied yet (while their hosts were down).
/// On the next assignment each host finds its stored offset below the log start. By default the
/// projection halts there, the status naming the partition, the stored offset and how many
/// events were lost; with `kafka.on_offset_jump = "accept"` the jump is recorded and counted, the
/// stored offset moves to the log start, and what the log still holds is applied exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn an_offset_jump_halts_by_default_and_is_accepted_when_configured() {
    use rdkafka::admin::{AdminClient, AdminOptions};
    let topic = create_topic("jump", 1).await;
    let record = |i: usize| DemoRecord { key: format!("k{i:03}"), headers: vec![], value: json!({"type": "Fine"}) };
    publish(&topic, &(0..50).map(record).collect::<Vec<_>>()).await;
    let (halting, accepting) = (TestDb::create("jump_halt").await, TestDb::create("jump_accept").await);
    let halt = HostConfig::new("jump-halt", &halting.url, &topic, &[MISBEHAVING]);
    let accept = HostConfig::new("jump-accept", &accepting.url, &topic, &[MISBEHAVING])
        .with("PROJECTOR_KAFKA__ON_OFFSET_JUMP", "accept");
    for (db, config) in [(&halting, &halt), (&accepting, &accept)] {
        let host = Host::start(config);
        wait_caught_up(db, &topic, 1, Duration::from_secs(120)).await;
        host.kill();
    }

    publish(&topic, &(50..100).map(record).collect::<Vec<_>>()).await;
    let admin: AdminClient<_> = projector::source::kafka::client_config(&kafka(&topic)).create().unwrap();
    let mut before = rdkafka::TopicPartitionList::new();
    before.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(80)).unwrap();
    admin.delete_records(&before, &AdminOptions::new()).await.unwrap();

    let halted = Host::start(&halt);
    let (error, partition, offset, _) = failure_of(&halting, "misbehaving", &halted).await;
    assert_eq!((partition, offset), (Some(0), Some(50)), "{error}");
    assert!(error.contains("the stored offset 50 is below the log start offset 80: 30 events were deleted"), "{error}");
    assert!(error.contains("kafka.on_offset_jump"), "{error}");

    let _accepted = Host::start(&accept);
    wait_caught_up(&accepting, &topic, 1, Duration::from_secs(120)).await;
    let schema = probe_schema(&accepting).await;
    let ids = probe_ids(&accepting, &schema).await;
    let expected: Vec<String> = (0..50).chain(80..100).map(|i| format!("k{i:03}")).collect();
    assert_eq!(ids, expected, "what was applied before, then what the log still holds");
    let api = projector_tests::api::Api::of(&accept);
    let deployment = api.deployments("misbehaving").await[0].clone();
    assert_eq!(deployment["consumer"]["offset_jumps"], 1, "{deployment}");
    let jump = deployment["consumer"]["last_offset_jump"].as_str().unwrap();
    assert!(jump.starts_with("partition 0: the stored offset 50 is below the log start offset 80"), "{jump}");
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
    projector_tests::create_topic_on(&kafka, topic, 3).await.unwrap();
    let records = projector_demo::generate(8_000, 23);
    let (first, second) = records.split_at(records.len() * 3 / 4);
    projector_tests::publish_on(&kafka, first).await.unwrap();

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
    projector_tests::publish_on(&kafka, second).await.unwrap();

    wait_caught_up_on(&db, &kafka, 3, Duration::from_secs(180)).await;
    assert!(host.running(), "{}", host.log_tail());
    assert_matches_model(&db, &records).await;
    drop(broker);
}
