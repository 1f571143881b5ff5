//! The core path: events in the topic become exactly the expected read models.

use std::time::Duration;

use projector_tests::host::{Host, HostConfig};
use projector_tests::*;
use serde_json::json;

/// `samples.jsonl` gives exactly the rows worked out by hand from ORDER-EVENTS.md.
#[tokio::test(flavor = "multi_thread")]
async fn samples_project_to_the_hand_computed_rows() {
    let db = TestDb::create("samples").await;
    let topic = create_topic("samples", 6).await;
    let records = samples();
    publish(&topic, &records).await;
    let host = Host::start(&HostConfig::new("samples", &db.url, &topic, &EXAMPLE_PLUGINS));
    wait_caught_up(&db, &topic, 3, Duration::from_secs(90)).await;

    let [summaries, details, daily] = read_models(&db).await;
    assert_rows_eq(
        "order_summaries",
        &summaries,
        &[
            json!({"order_id": "ord-1001", "customer_id": "cust-7", "customer_name": "Zoë Müller", "status": "SHIPPED",
               "total": "116.80", "item_count": 2, "created_at": "2026-11-20T09:00:00.000Z", "updated_at": "2026-11-21T15:30:00.000Z"}),
            json!({"order_id": "ord-1002", "customer_id": "cust-9", "customer_name": "Kenji Watanabe", "status": "SHIPPED",
               "total": "79.47", "item_count": 2, "created_at": "2026-11-20T23:59:59.999Z", "updated_at": "2026-11-22T01:00:00.000Z"}),
            json!({"order_id": "ord-1003", "customer_id": "cust-7", "customer_name": "Zoë Müller", "status": "CANCELLED",
               "total": "48.00", "item_count": 1, "created_at": "2026-11-21T08:00:00.000Z", "updated_at": "2026-11-21T10:00:00.000Z"}),
        ],
    );
    assert_rows_eq(
        "daily_order_stats",
        &daily,
        &[
            // 116.80 + 79.47 = 196.27 over 2 orders: 98.135 rounds half away from zero to 98.14.
            json!({"day": "2026-11-20", "order_count": 2, "total_revenue": "196.27", "average_order_value": "98.14",
               "orders_by_status": {"SHIPPED": 2}}),
            json!({"day": "2026-11-21", "order_count": 1, "total_revenue": "48.00", "average_order_value": "48.00",
               "orders_by_status": {"CANCELLED": 1}}),
        ],
    );
    assert_eq!(details.len(), 3);
    assert_eq!(
        details[0]["lines"],
        serde_json::from_str::<serde_json::Value>(
            r#"[{"sku": "sku-espresso-250", "productName": "Espresso Beans 250g", "quantity": 2, "unitPrice": 8.9},
            {"sku": "sku-grinder-c2", "productName": "Hand Grinder C2", "quantity": 1, "unitPrice": 99.0}]"#
        )
        .unwrap()
    );
    assert_eq!(
        details[0]["history"],
        json!([
        {"status": "CREATED", "at": "2026-11-20T09:00:00.000Z"},
        {"status": "SUBMITTED", "at": "2026-11-20T09:02:00.000Z"},
        {"status": "SHIPPED", "at": "2026-11-21T15:30:00.000Z"}])
    );
    assert_eq!(
        details[0]["shipping"],
        json!({"carrier": "DHL", "trackingNumber": "JD0146000055", "shippedAt": "2026-11-21T15:30:00.000Z"})
    );
    assert_eq!(
        details[2]["history"],
        json!([
        {"status": "CREATED", "at": "2026-11-21T08:00:00.000Z"},
        {"status": "SUBMITTED", "at": "2026-11-21T08:05:00.000Z"},
        {"status": "CANCELLED", "at": "2026-11-21T10:00:00.000Z"}]),
        "the redelivered e-7 is applied once"
    );
    assert_eq!(details[2]["cancellation_reason"], json!("customer changed their mind"));
    assert_eq!(details[1]["lines"][1]["unitPrice"].to_string(), "4.99");
    // The independent model agrees with the hand-computed rows.
    assert_matches_model(&db, &records).await;
    assert!(host.terminate(Duration::from_secs(30)));
}

/// A generated stream of 5,000 orders (both generations, duplicates, foreign types) gives
/// read models equal to the independent model, row by row.
#[tokio::test(flavor = "multi_thread")]
async fn generated_stream_matches_the_model() {
    let db = TestDb::create("generated").await;
    let topic = create_topic("generated", 6).await;
    let records = projector_demo::generate(5_000, 42);
    assert!(records.len() > 15_000, "{} events", records.len());
    publish(&topic, &records).await;
    let host = Host::start(&HostConfig::new("generated", &db.url, &topic, &EXAMPLE_PLUGINS));
    wait_caught_up(&db, &topic, 3, Duration::from_secs(300)).await;
    assert_matches_model(&db, &records).await;
    let [summaries, _, daily] = read_models(&db).await;
    assert_eq!(summaries.len(), 5_000);
    assert!(daily.len() >= 30, "orders spread over a month");
    assert!(host.terminate(Duration::from_secs(30)));
}

/// Dropping a projection's storage and offsets and replaying from the topic yields identical
/// rows. Kafka still holds the group's committed offsets at the end of the topic, so this also
/// proves the host starts from the offsets stored in PostgreSQL, not Kafka's.
#[tokio::test(flavor = "multi_thread")]
async fn dropping_storage_and_offsets_replays_to_identical_rows() {
    let db = TestDb::create("replay").await;
    let topic = create_topic("replay", 6).await;
    let records = projector_demo::generate(2_000, 5);
    publish(&topic, &records).await;
    let config = HostConfig::new("replay", &db.url, &topic, &EXAMPLE_PLUGINS);
    let host = Host::start(&config);
    wait_caught_up(&db, &topic, 3, Duration::from_secs(180)).await;
    let before = read_models(&db).await;
    assert!(host.terminate(Duration::from_secs(30)));

    for schema in ["proj_order_summaries_v1", "proj_order_details_v1", "proj_daily_order_stats_v1"] {
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&db.pool).await.unwrap();
    }
    sqlx::query("DELETE FROM projector.deployments").execute(&db.pool).await.unwrap();

    let host = Host::start(&config);
    wait_caught_up(&db, &topic, 3, Duration::from_secs(180)).await;
    let after = read_models(&db).await;
    for (index, name) in ["order_summaries", "order_details", "daily_order_stats"].iter().enumerate() {
        assert_rows_eq(name, &after[index], &before[index]);
    }
    assert_matches_model(&db, &records).await;
    assert!(host.terminate(Duration::from_secs(30)));
}

/// SIGTERM finishes the batch in flight, commits and exits cleanly; the next start resumes
/// from the stored offsets.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_gracefully_and_a_restart_resumes() {
    let db = TestDb::create("sigterm").await;
    let topic = create_topic("sigterm", 6).await;
    let records = projector_demo::generate(6_000, 11);
    publish(&topic, &records).await;
    let config = HostConfig::new("sigterm", &db.url, &topic, &EXAMPLE_PLUGINS)
        .with("PROJECTOR_PIPELINE__MAX_BATCH_EVENTS", "200");
    let host = Host::start(&config);
    wait_for_progress(&db, 1).await;
    assert!(host.terminate(Duration::from_secs(30)), "exit status is success after SIGTERM");
    let log = std::fs::read_to_string(&config.log).unwrap();
    assert!(log.contains("SIGTERM received"), "{log}");
    assert_eq!(log.matches("Projection stopped.").count(), 3, "{log}");

    let host = Host::start(&config);
    wait_caught_up(&db, &topic, 3, Duration::from_secs(180)).await;
    assert_matches_model(&db, &records).await;
    assert!(host.terminate(Duration::from_secs(30)));
}

/// Waits until the order-summaries projection has applied more than `at_least` events.
pub async fn wait_for_progress(db: &TestDb, at_least: i64) -> i64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT sum(next_offset)::bigint FROM proj_order_summaries_v1._offsets")
                .fetch_one(&db.pool)
                .await
                .unwrap_or(None);
        if let Some(applied) = applied.filter(|a| *a >= at_least) {
            return applied;
        }
        assert!(std::time::Instant::now() < deadline, "no progress past {at_least}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
