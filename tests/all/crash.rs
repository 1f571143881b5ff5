//! Nothing lost, nothing doubled: SIGKILL the host at random moments while it projects, restart
//! it each time, and compare the final read models with the model and with a clean run.

use std::time::Duration;

use projector_tests::host::{Host, HostConfig};
use projector_tests::*;
use rand::{Rng, SeedableRng};

use crate::e2e::wait_for_progress;

const KILLS: usize = 12;

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_moments_loses_and_doubles_nothing() {
    let db = TestDb::create("crash").await;
    let topic = create_topic("crash", 6).await;
    let records = projector::demo::generate(14_500, 7);
    assert!(records.len() >= 50_000, "{} events", records.len());
    // Small batches: many commits, so kills land between and inside them.
    let config = HostConfig::new("crash", &db.url, &topic, &EXAMPLE_PLUGINS)
        .with("PROJECTOR_PIPELINE__MAX_BATCH_EVENTS", "300");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xC0FFEE);

    // The stream keeps arriving while the host crashes: publish a slice before each start.
    let slices: Vec<&[projector::demo::DemoRecord]> =
        records.chunks(records.len().div_ceil(KILLS)).collect();
    let mut applied = 0;
    let (mut published, mut mid_stream) = (0, 0);
    for (round, slice) in slices.iter().enumerate() {
        publish(&topic, slice).await;
        published += slice.len() as i64;
        let mut host = Host::start(&config);
        // Kill only after this run applied something, at a random moment after that.
        applied = wait_for_progress(&db, applied + 1).await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..300))).await;
        assert!(
            host.running(),
            "host died on its own in round {round}: {}",
            host.log_tail()
        );
        host.kill();
        let at_kill = wait_for_progress(&db, 0).await;
        if at_kill < published {
            mid_stream += 1;
        }
        eprintln!("round {round}: killed with {at_kill} of {published} events applied by order-summaries");
    }
    assert_eq!(slices.len(), KILLS);
    assert!(mid_stream >= KILLS / 2, "only {mid_stream} kills landed while events were pending");

    let host = Host::start(&config);
    wait_caught_up(&db, &topic, 3, Duration::from_secs(600)).await;
    assert!(host.terminate(Duration::from_secs(30)));
    assert_matches_model(&db, &records).await;

    // A clean run over the same topic, in another database, gives the very same rows.
    let clean = TestDb::create("crash_clean").await;
    let clean_host = Host::start(&HostConfig::new(
        "crash-clean",
        &clean.url,
        &topic,
        &EXAMPLE_PLUGINS,
    ));
    wait_caught_up(&clean, &topic, 3, Duration::from_secs(600)).await;
    assert!(clean_host.terminate(Duration::from_secs(30)));
    let (crashed, clean) = (read_models(&db).await, read_models(&clean).await);
    for (index, name) in ["order_summaries", "order_details", "daily_order_stats"]
        .iter()
        .enumerate()
    {
        assert_rows_eq(name, &crashed[index], &clean[index]);
    }
}
