//! Collections on the search engine (OpenSearch here, Elasticsearch with `ES_URL`): the same
//! read models as PostgreSQL would hold, through crashes and blue/green swaps.

use std::time::Duration;

use projector_tests::api::{wasm, Api};
use projector_tests::host::{Host, HostConfig};
use projector_tests::search::{daily_row, summary_row, Engine};
use projector_tests::*;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;

/// A host over the example plugins with `order_summaries` and `daily_order_stats` moved to the
/// search engine (`order_details` stays in PostgreSQL).
fn moved(name: &str, db: &TestDb, topic: &str, engine: &Engine) -> HostConfig {
    let mut config = HostConfig::new(name, &db.url, topic, &EXAMPLE_PLUGINS);
    for (key, value) in engine.settings(&["order_summaries", "daily_order_stats"]) {
        config = config.with(&key, &value);
    }
    config
}

/// The two moved read models, read back through their aliases, against the model.
async fn assert_documents_match_model(engine: &Engine, records: &[projector_demo::DemoRecord]) {
    let model = expected::Model::of(records);
    let summaries = engine.aliased("order_summaries", Duration::from_secs(30)).await;
    let rows: Vec<_> = engine.documents(&summaries, "order_id").await.iter().map(summary_row).collect();
    assert_rows_eq("order_summaries documents", &rows, &model.summaries());
    let daily = engine.aliased("daily_order_stats", Duration::from_secs(30)).await;
    let rows: Vec<_> = engine.documents(&daily, "day").await.iter().map(daily_row).collect();
    assert_rows_eq("daily_order_stats documents", &rows, &model.daily());
}

/// Moved collections hold exactly the model's documents (decimals to the cent, counters fed
/// from all six partitions, the computed average), and PostgreSQL holds none of their rows.
#[tokio::test(flavor = "multi_thread")]
async fn moved_collections_hold_the_model_documents() {
    let db = TestDb::create("es_model").await;
    let topic = create_topic("es_model", 6).await;
    let engine = Engine::new("es-model");
    let records = projector_demo::generate(3_000, 7);
    publish(&topic, &records).await;
    let host = Host::start(&moved("es_model", &db, &topic, &engine));
    wait_caught_up(&db, &topic, 3, Duration::from_secs(180)).await;

    assert_documents_match_model(&engine, &records).await;
    let model = expected::Model::of(&records);
    assert_rows_eq("order_details (PostgreSQL)", &db.json_rows(DETAILS_SQL).await, &model.details());
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables \
         WHERE table_name IN ('order_summaries', 'daily_order_stats') ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(tables, Vec::<String>::new(), "no table or view for the moved collections");
    assert!(host.terminate(Duration::from_secs(30)));
}

/// SIGKILL at random moments while the host writes to the search engine in small bulk requests
/// (so a kill can land between two requests of one batch, leaving it half applied), events
/// arriving between rounds; the documents end equal to the model: no update lost, no increment
/// of a day counted twice, though each day's counters are fed from all six partitions.
#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_bulk_the_documents_end_exact() {
    let db = TestDb::create("es_crash").await;
    let topic = create_topic("es_crash", 6).await;
    let engine = Engine::new("es-crash");
    let config = moved("es_crash", &db, &topic, &engine)
        .with("PROJECTOR_PIPELINE__MAX_BATCH_EVENTS", "300")
        .with("PROJECTOR_ELASTICSEARCH__MAX_BULK_ACTIONS", "40")
        .with("PROJECTOR_KAFKA__SESSION_TIMEOUT_MS", "2500");
    let records = projector_demo::generate(4_000, 13);
    let rounds = 6;
    let chunk = records.len().div_ceil(rounds);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xE5);
    let mut published = 0;
    for round in 0..rounds {
        let next = (published + chunk).min(records.len());
        publish(&topic, &records[published..next]).await;
        published = next;
        let host = Host::start(&config);
        let before = crate::e2e::wait_for_progress(&db, 0).await;
        crate::e2e::wait_for_progress(&db, before + 1).await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..400))).await;
        host.kill();
        eprintln!("round {round}: killed after {before}+ events applied of {published}");
    }
    let host = Host::start(&config);
    wait_caught_up(&db, &topic, 3, Duration::from_secs(240)).await;
    assert_documents_match_model(&engine, &records).await;
    assert!(host.terminate(Duration::from_secs(30)));
}

/// Version 2 of `order-summaries` (one more field) builds into an index of its own while
/// version 1's serves; a reader polling the alias every 50 ms sees every order each time, one
/// version's documents only, version 1 then version 2; a rollback points the alias back.
#[tokio::test(flavor = "multi_thread")]
async fn the_alias_swaps_to_a_new_version_and_back() {
    let db = TestDb::create("es_swap").await;
    let topic = create_topic("es_swap", 6).await;
    let engine = Engine::new("es-swap");
    let records = projector_demo::generate(3_000, 31);
    publish(&topic, &records).await;
    let mut config = HostConfig::new("es_swap", &db.url, &topic, &[ORDER_SUMMARIES]);
    for (key, value) in engine.settings(&["order_summaries"]) {
        config = config.with(&key, &value);
    }
    let _host = Host::start(&config);
    let api = Api::of(&config);
    api.ready().await;
    wait_caught_up(&db, &topic, 1, Duration::from_secs(180)).await;
    let v1_index = engine.aliased("order_summaries", Duration::from_secs(30)).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader_stop = stop.clone();
    let alias = format!("/{}order_summaries/_search", engine.prefix);
    let reader_engine = engine.clone();
    let reader = tokio::spawn(async move {
        let mut seen: Vec<(i64, i64)> = Vec::new();
        while !reader_stop.load(std::sync::atomic::Ordering::Relaxed) {
            let query = serde_json::json!({"size": 0, "track_total_hits": true,
                "query": {"bool": {"must_not": {"term": {"projector-deleted": true}}}},
                "aggs": {"v2": {"filter": {"exists": {"field": "event_count"}}}}});
            let (status, body) = reader_engine.call(reqwest::Method::POST, &alias, Some(query)).await;
            assert_eq!(status, 200, "a read failed during the swap: {body}");
            seen.push((
                body["hits"]["total"]["value"].as_i64().unwrap(),
                body["aggregations"]["v2"]["doc_count"].as_i64().unwrap(),
            ));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seen
    });

    let (status, body) = api.upload(wasm(ORDER_SUMMARIES_V2), "").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let v2 = body["deployment"]["id"].as_i64().unwrap();
    api.wait_state("order-summaries", v2, "live", Duration::from_secs(180)).await;
    let started = std::time::Instant::now();
    while engine.aliased("order_summaries", Duration::from_secs(5)).await == v1_index {
        assert!(started.elapsed() < Duration::from_secs(10), "the alias did not move to version 2");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = reader.await.unwrap();

    let orders = 3_000;
    assert!(seen.iter().all(|(hits, _)| *hits == orders), "a read saw a gap: {seen:?}");
    assert!(seen.iter().all(|(_, v2)| *v2 == 0 || *v2 == orders), "a read mixed versions: {seen:?}");
    let switched = seen.iter().position(|(_, v2)| *v2 == orders).expect("the reader saw version 2");
    assert!(switched > 0, "the reader saw version 1 first");
    assert!(seen[switched..].iter().all(|(_, v2)| *v2 == orders), "no flapping back to version 1");
    let v2_index = engine.aliased("order_summaries", Duration::from_secs(5)).await;
    let rows: Vec<_> = engine.documents(&v2_index, "order_id").await.iter().map(summary_row).collect();
    assert_rows_eq("order_summaries v2 documents", &rows, &expected::Model::of(&records).summaries());

    let (status, body) = api.post("/admin/projections/order-summaries/rollback").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let started = std::time::Instant::now();
    while engine.aliased("order_summaries", Duration::from_secs(5)).await != v1_index {
        assert!(started.elapsed() < Duration::from_secs(10), "the alias did not move back to version 1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every page of a read, following `next_cursor`.
async fn all_pages(base: &str, path: &str) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let separator = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            None => format!("{base}{path}"),
            Some(c) => format!("{base}{path}{separator}cursor={c}"),
        };
        let answer = reqwest::get(&url).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{url}");
        let body: serde_json::Value = answer.json().await.unwrap();
        rows.extend(body["data"].as_array().unwrap().iter().cloned());
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return rows,
        }
    }
}

/// The query API reads moved collections as it reads PostgreSQL ones: the same rows in the
/// same order for the generic reads (filters, sorts both ways, paging) and the conveniences,
/// one row by key, 404 for a missing key, 400 for a filter on an undeclared field.
#[tokio::test(flavor = "multi_thread")]
async fn reads_answer_as_on_postgresql() {
    let topic = create_topic("es_reads", 6).await;
    let engine = Engine::new("es-reads");
    publish(&topic, &projector_demo::generate(800, 23)).await;
    let pg_db = TestDb::create("es_reads_pg").await;
    let pg_config = HostConfig::new("es_reads_pg", &pg_db.url, &topic, &EXAMPLE_PLUGINS);
    let _pg_host = Host::start(&pg_config);
    let db = TestDb::create("es_reads").await;
    let config = moved("es_reads", &db, &topic, &engine);
    let _host = Host::start(&config);
    wait_caught_up(&pg_db, &topic, 3, Duration::from_secs(180)).await;
    wait_caught_up(&db, &topic, 3, Duration::from_secs(180)).await;
    let (base, pg_base) = (config.query_url(), pg_config.query_url());

    let customer = {
        let rows = all_pages(&pg_base, "/read-models/order_summaries?limit=100").await;
        assert_eq!(rows.len(), 800);
        rows[17]["customer_id"].as_str().unwrap().to_string()
    };
    for path in [
        "/read-models/order_summaries?limit=37".to_string(),
        "/read-models/order_summaries?order_by=-total&limit=50".to_string(),
        "/read-models/order_summaries?order_by=created_at&status=SHIPPED&limit=9".to_string(),
        format!("/read-models/order_summaries?customer_id={customer}&limit=2"),
        format!("/orders?customerId={customer}&limit=3"),
        "/orders?status=CANCELLED&limit=20".to_string(),
        "/read-models/daily_order_stats?limit=5".to_string(),
        "/read-models/daily_order_stats?order_by=-day&limit=4".to_string(),
        "/stats/daily?from=2026-10-05&to=2026-10-20&limit=3".to_string(),
    ] {
        let (on_engine, on_postgres) = (all_pages(&base, &path).await, all_pages(&pg_base, &path).await);
        assert!(!on_postgres.is_empty(), "{path}: no rows to compare");
        assert_rows_eq(&path, &on_engine, &on_postgres);
    }
    let one = |base: String, key: &str| {
        let url = format!("{base}/read-models/order_summaries/{key}");
        async move {
            let answer = reqwest::get(&url).await.unwrap();
            let status = answer.status();
            (status, answer.json::<serde_json::Value>().await.unwrap()["data"].clone())
        }
    };
    let first =
        all_pages(&pg_base, "/read-models/order_summaries?limit=1").await[0]["order_id"].as_str().unwrap().to_string();
    assert_eq!(one(base.clone(), &first).await, one(pg_base.clone(), &first).await);
    assert_eq!(one(base.clone(), "ord-none").await.0, StatusCode::NOT_FOUND);
    let day = reqwest::get(format!("{base}/read-models/daily_order_stats/2026-10-07")).await.unwrap();
    let pg_day = reqwest::get(format!("{pg_base}/read-models/daily_order_stats/2026-10-07")).await.unwrap();
    assert_eq!(day.status(), pg_day.status());
    assert_eq!(
        day.json::<serde_json::Value>().await.unwrap()["data"],
        pg_day.json::<serde_json::Value>().await.unwrap()["data"]
    );
    let refused = reqwest::get(format!("{base}/read-models/order_summaries?item_count=3")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
}

/// The write path itself against the engine: a batch applied twice, then the same events cut
/// into a batch that overlaps what was applied, leave each document as if every event were
/// applied once: increments from two partitions counted once each, the set field at its last
/// value, a deleted document gone and not revived by a stale write of it.
#[tokio::test(flavor = "multi_thread")]
async fn replayed_and_recut_batches_change_each_document_once() {
    use projector::changeset::{At, Changeset};
    use projector::contract::{Delete, FieldValue, Increment, Operation, ProjectionSpec, Upsert, Value};
    use projector::sink::elastic;

    let test = Engine::new("es-replay");
    let config = projector::config::ElasticsearchConfig {
        urls: vec![test.url.clone()],
        index_prefix: test.prefix.clone(),
        ..Default::default()
    };
    let raw: ProjectionSpec = serde_json::from_value(serde_json::json!({
        "name": "tallies", "version": 1, "collections": [{
            "name": "tallies", "sink": "elasticsearch", "primary_key": ["id"], "fields": [
                {"name": "id", "type": "text"},
                {"name": "count", "type": "integer", "nullable": true},
                {"name": "amount", "type": "decimal", "nullable": true},
                {"name": "label", "type": "text", "nullable": true}]}]}))
    .unwrap();
    let spec = projector::spec::Spec::new(raw).unwrap();
    let engine = elastic::Engine::new(&config).unwrap();
    engine.install_script().await.unwrap();
    engine.ensure_indices("tally_v1", &spec).await.unwrap();

    let key = |id: &str| vec![Value::Text(id.into())];
    let add = |id: &str, amount: &str| {
        Operation::Increment(Increment {
            collection: "tallies".into(),
            key: key(id),
            fields: vec![
                FieldValue { name: "count".into(), value: Value::Integer(1) },
                FieldValue { name: "amount".into(), value: Value::Decimal(amount.into()) },
            ],
        })
    };
    let label = |id: &str, text: &str| {
        Operation::Upsert(Upsert {
            collection: "tallies".into(),
            key: key(id),
            fields: vec![FieldValue { name: "label".into(), value: Value::Text(text.into()) }],
        })
    };
    let delete = |id: &str| Operation::Delete(Delete { collection: "tallies".into(), key: key(id) });
    // (partition, offset, operations), in the order a consumer may read them.
    let events: Vec<(i32, i64, Vec<Operation>)> = vec![
        (0, 10, vec![add("a", "1.10"), label("a", "first")]),
        (1, 3, vec![add("a", "2.05"), add("b", "5")]),
        (0, 11, vec![add("a", "0.85"), label("b", "kept?")]),
        (1, 4, vec![delete("b"), label("a", "second")]),
        (0, 12, vec![add("a", "10")]),
        (1, 5, vec![add("c", "0.01")]),
    ];
    let batch = |range: std::ops::Range<usize>| {
        let mut changes = Changeset::new(&spec);
        for (partition, offset, operations) in &events[range] {
            changes.apply_at(&spec, Some(At { partition: *partition, offset: *offset }), operations).unwrap();
        }
        changes
    };
    engine.apply("tally_v1", &spec, &batch(0..4), &[]).await.unwrap();
    engine.apply("tally_v1", &spec, &batch(0..4), &[]).await.unwrap();
    engine.apply("tally_v1", &spec, &batch(2..6), &[]).await.unwrap();
    // A stale owner writing an old batch late.
    engine.apply("tally_v1", &spec, &batch(1..3), &[]).await.unwrap();

    let index = elastic::index::name(&config, "tallies", "tally_v1");
    let documents = test.documents(&index, "id").await;
    assert_eq!(
        documents,
        vec![
            serde_json::json!({"id": "a", "count": 4, "amount": "14.00", "label": "second"}),
            serde_json::json!({"id": "c", "count": 1, "amount": "0.01"}),
        ]
    );
}
