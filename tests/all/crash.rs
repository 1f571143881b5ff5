//! The soak. Nothing lost, nothing doubled: SIGKILL the host at random moments while events keep
//! arriving, start it again each time, restart its PostgreSQL server (a cluster of the test's
//! own) under it while events are pending, and compare the final read models with the model and
//! with a clean run.
//!
//! Sized by the environment: `PROJECTOR_SOAK_KILLS` (default 20, what CI runs; `scripts/soak.sh`
//! runs 1,000), `PROJECTOR_SOAK_ORDERS` (generated orders, default 725 per kill: about 2,600
//! events a round) and `PROJECTOR_SOAK_SEED` (printed). The seed fixes which rounds restart
//! PostgreSQL or kill the host while it starts; the kill moments are drawn from it too, but
//! depend on how fast the host went as well, so no two runs kill at exactly the same offsets.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::str::FromStr;
use std::time::{Duration, Instant};

use projector_demo::DemoRecord;
use projector_tests::host::{Host, HostConfig};
use projector_tests::postgres::{OwnServer, Stop};
use projector_tests::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value as Json;

use crate::e2e::wait_for_progress;

/// Kills when `PROJECTOR_SOAK_KILLS` is not set: what CI runs.
const DEFAULT_KILLS: usize = 20;
/// Generated orders per kill when `PROJECTOR_SOAK_ORDERS` is not set (about 3.6 events each).
const ORDERS_PER_KILL: usize = 725;
/// The seed when `PROJECTOR_SOAK_SEED` is not set.
const DEFAULT_SEED: u64 = 0xC0FFEE;
/// PostgreSQL is restarted once in every so many rounds, and at least twice per run.
const ROUNDS_PER_RESTART: usize = 100;
/// One round in every so many kills the host while it starts.
const ROUNDS_PER_AT_START: usize = 10;

/// The consumers' session timeout: how long a restarted host waits for the group to drop the
/// member it was before the kill.
const SESSION: Duration = Duration::from_millis(2_500);

/// The read models compared, in the order of [`read_models`].
const READ_MODELS: [&str; 3] = ["order_summaries", "order_details", "daily_order_stats"];
/// Their rows, in the same order.
const QUERIES: [&str; 3] = [SUMMARIES_SQL, DETAILS_SQL, DAILY_SQL];

/// A setting from the environment, else its default.
fn setting<T: FromStr>(name: &str, default: T) -> T
where
    T::Err: Debug,
{
    match std::env::var(name) {
        Ok(value) => value.parse().unwrap_or_else(|e| panic!("{name}={value}: {e:?}")),
        Err(_) => default,
    }
}

/// The size and randomness of one soak.
struct Soak {
    kills: usize,
    orders: usize,
    seed: u64,
}

impl Soak {
    /// Reads `PROJECTOR_SOAK_KILLS`, `PROJECTOR_SOAK_ORDERS` and `PROJECTOR_SOAK_SEED`.
    fn from_env() -> Soak {
        let kills = setting("PROJECTOR_SOAK_KILLS", DEFAULT_KILLS);
        assert!(kills >= 2, "PROJECTOR_SOAK_KILLS={kills}: at least 2");
        Soak {
            kills,
            orders: setting("PROJECTOR_SOAK_ORDERS", kills * ORDERS_PER_KILL),
            seed: setting("PROJECTOR_SOAK_SEED", DEFAULT_SEED),
        }
    }

    /// What each round does, drawn from the seed before anything runs: PostgreSQL restarts once
    /// in every [`ROUNDS_PER_RESTART`] rounds and at least twice (a fast shutdown, then an
    /// immediate one), each at random in the middle half of its stretch of rounds; and one round
    /// in every [`ROUNDS_PER_AT_START`] kills the host while it starts (never the first round,
    /// which creates everything).
    fn plan(&self, rng: &mut StdRng) -> Vec<Round> {
        let mut plan = vec![Round::Kill; self.kills];
        let restarts = self.kills.div_ceil(ROUNDS_PER_RESTART).max(2);
        for stretch in 0..restarts {
            let first = stretch * self.kills / restarts;
            let length = (stretch + 1) * self.kills / restarts - first;
            plan[first + rng.gen_range(length / 4..=3 * length / 4)] = Round::RestartPostgres;
        }
        for first in (0..self.kills).step_by(ROUNDS_PER_AT_START) {
            let round = rng.gen_range(first.max(1)..(first + ROUNDS_PER_AT_START).min(self.kills));
            if plan[round] == Round::Kill {
                plan[round] = Round::KillAtStart;
            }
        }
        plan
    }
}

/// What a round does besides killing the host at a random moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Round {
    /// Kill it while it projects, after it applied something of the round.
    Kill,
    /// Kill it while it starts: registering components, creating schemas, joining groups.
    KillAtStart,
    /// Restart PostgreSQL under it while events are pending, then kill it.
    RestartPostgres,
}

/// What the rounds did.
#[derive(Default, Debug)]
struct Tally {
    kills: usize,
    /// Kills while events published were not all applied yet.
    mid_stream: usize,
    /// Kills while the host was starting.
    at_start: usize,
    restarts: Vec<Stop>,
    /// Restarts while events were pending, each followed by progress of the same host.
    restarts_mid_stream: usize,
}

impl Tally {
    /// Counts a kill with `at_kill` of `published` events applied.
    fn count(&mut self, round: usize, at_kill: i64, published: i64, took: Duration) {
        self.kills += 1;
        if at_kill < published {
            self.mid_stream += 1;
        }
        eprintln!("round {round} ({took:.1?}): killed with {at_kill} of {published} events applied by order-summaries");
    }
}

/// The events applied so far by `order-summaries` (the sum of its next offsets).
async fn applied(db: &TestDb) -> i64 {
    wait_for_progress(db, 0).await
}

/// The rounds of a soak: hosts started, killed, and the database server restarted under them.
struct Rounds {
    server: OwnServer,
    db: TestDb,
    topic: String,
    config: HostConfig,
    rng: StdRng,
    tally: Tally,
    /// Events published so far.
    published: i64,
    /// Events applied when the last host was killed (a dead host applies nothing more).
    applied: i64,
    /// A restart is due (planned, and none landed while events were pending since).
    restart_due: bool,
}

impl Rounds {
    /// Runs one round over its slice of the stream: half of it is published before the host
    /// starts, half while it runs, so the stream keeps arriving while the host crashes.
    async fn run(&mut self, round: usize, plan: Round, slice: &[DemoRecord]) {
        let started = Instant::now();
        let (early, later) = slice.split_at(slice.len() / 2);
        self.publish(early).await;
        let mut host = Host::start(&self.config);
        self.restart_due |= plan == Round::RestartPostgres;
        if plan == Round::KillAtStart && !self.restart_due {
            tokio::time::sleep(Duration::from_millis(self.rng.gen_range(0..3_000))).await;
            self.kill(host, round, started).await;
            self.tally.at_start += 1;
            self.publish(later).await;
            return;
        }
        // Only after this host applied something of its round.
        wait_for_progress(&self.db, self.applied + 1).await;
        if self.restart_due {
            self.restart_postgres(&mut host, later).await;
        } else {
            self.publish(later).await;
        }
        // A random moment: once a random share of what is pending is applied, and a little later.
        let target = self.rng.gen_range(applied(&self.db).await..=self.published);
        wait_for_progress(&self.db, target).await;
        tokio::time::sleep(Duration::from_millis(self.rng.gen_range(0..100))).await;
        self.kill(host, round, started).await;
    }

    /// Publishes the next events of the stream.
    async fn publish(&mut self, records: &[DemoRecord]) {
        publish(&self.topic, records).await;
        self.published += records.len() as i64;
    }

    /// Kills the host, after checking it did not die on its own, and counts the kill.
    async fn kill(&mut self, mut host: Host, round: usize, started: Instant) {
        assert!(host.running(), "host died on its own in round {round}: {}", host.log_tail());
        host.kill();
        self.applied = applied(&self.db).await;
        self.tally.count(round, self.applied, self.published, started.elapsed());
    }

    /// Restarts PostgreSQL under the running host (a fast shutdown and an immediate one, in
    /// turn), publishes `later`, and waits until the host applied one of those events: it
    /// reconnected by itself. The restart is done if events were pending when the server went
    /// down; else it is due again in the next round.
    async fn restart_postgres(&mut self, host: &mut Host, later: &[DemoRecord]) {
        let how = if self.tally.restarts.len().is_multiple_of(2) { Stop::Fast } else { Stop::Immediate };
        let at_stop = applied(&self.db).await;
        let started = Instant::now();
        self.server.restart(how);
        self.tally.restarts.push(how);
        eprintln!(
            "PostgreSQL restarted ({how:?}, {:.1?}) with {at_stop} of {} events applied",
            started.elapsed(),
            self.published
        );
        if at_stop < self.published {
            self.tally.restarts_mid_stream += 1;
            self.restart_due = false;
        }
        let before = self.published;
        self.publish(later).await;
        let after = wait_for_progress(&self.db, before + 1).await;
        assert!(host.running(), "host died after the PostgreSQL restart: {}", host.log_tail());
        eprintln!("the host reconnected: {after} events applied");
    }
}

/// The lost and doubled effects of a run, counted against the model and the clean run.
#[derive(Debug, Default, PartialEq, Eq)]
struct Effects {
    /// Rows in one run's read models and not in the other's (either way).
    rows_differing: usize,
    /// Effects of the model missing: status changes in order histories and orders counted in
    /// the daily stats.
    lost: i64,
    /// Effects present more often than in the model.
    doubled: i64,
    /// The effects of the model, for scale.
    expected: i64,
}

/// What a row counts as effects, by its key: the status changes of an order's history, the
/// orders of a day.
type Counts = BTreeMap<String, i64>;

/// A read model's key column and what one of its rows counts as effects.
type Counted = (&'static str, fn(&Json) -> i64);

impl Effects {
    /// Counts them in the crashed run's read models, reading both runs' rows as they arrive
    /// (the 1,000-kill soak's, held as JSON, did not fit in 21 GB); also gives the first row
    /// that differs from the clean run's, in the order of the read model's key.
    async fn of(crashed: &TestDb, clean: &TestDb, model: &expected::Model) -> (Effects, Option<String>) {
        use futures_util::StreamExt as _;
        let mut effects = Effects::default();
        let mut first_difference = None;
        for (name, query) in READ_MODELS.iter().zip(QUERIES) {
            let counted: Option<Counted> = match query {
                DETAILS_SQL => Some(("order_id", |row| row["history"].as_array().map_or(0, |h| h.len() as i64))),
                DAILY_SQL => Some(("day", |row| row["order_count"].as_i64().unwrap_or(0))),
                _ => None,
            };
            let (mut balance, mut actual) = (HashMap::<u64, i64>::new(), Counts::new());
            let (mut a, mut b) = (std::pin::pin!(crashed.texts(query)), std::pin::pin!(clean.texts(query)));
            let mut index = 0;
            loop {
                let (row, clean_row) = tokio::join!(a.next(), b.next());
                if row.is_none() && clean_row.is_none() {
                    break;
                }
                if row != clean_row && first_difference.is_none() {
                    first_difference =
                        Some(format!("{name}: row {index} differs\ncrashed: {row:?}\nclean:   {clean_row:?}"));
                }
                if let Some(row) = row {
                    *balance.entry(hash(&row)).or_default() += 1;
                    if let Some((key, count)) = counted {
                        let row: Json = serde_json::from_str(&row).unwrap();
                        actual.insert(row[key].to_string(), count(&row));
                    }
                }
                if let Some(clean_row) = clean_row {
                    *balance.entry(hash(&clean_row)).or_default() -= 1;
                }
                index += 1;
            }
            effects.rows_differing += balance.values().map(|n| n.unsigned_abs() as usize).sum::<usize>();
            if let Some((key, count)) = counted {
                let expected: Counts = match query {
                    DETAILS_SQL => model.detail_rows().map(|row| (row[key].to_string(), count(&row))).collect(),
                    _ => model.daily().iter().map(|row| (row[key].to_string(), count(row))).collect(),
                };
                effects.add(&actual, &expected);
            }
        }
        (effects, first_difference)
    }

    /// Adds the differences of effect counts per key.
    fn add(&mut self, actual: &Counts, expected: &Counts) {
        for key in actual.keys().chain(expected.keys().filter(|k| !actual.contains_key(*k))) {
            let (a, e) = (actual.get(key).copied().unwrap_or(0), expected.get(key).copied().unwrap_or(0));
            self.lost += (e - a).max(0);
            self.doubled += (a - e).max(0);
            self.expected += e;
        }
    }
}

/// A row's hash, to count rows in one run and not the other as multisets.
fn hash(row: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    row.hash(&mut hasher);
    hasher.finish()
}

/// A clean run over `topic`, in a database of its own on the shared server.
async fn clean_run(topic: &str, catch_up: Duration) -> TestDb {
    let db = TestDb::create("soak_clean").await;
    let host = Host::start(&HostConfig::new("soak-clean", &db.url, topic, &EXAMPLE_PLUGINS));
    wait_caught_up(&db, topic, 3, catch_up).await;
    assert!(host.terminate(Duration::from_secs(30)));
    db
}

/// The soak (CI runs 20 kills and two PostgreSQL restarts; see the module documentation).
#[tokio::test(flavor = "multi_thread")]
async fn sigkills_and_postgres_restarts_lose_and_double_nothing() {
    let soak = Soak::from_env();
    let started = Instant::now();
    let records = projector_demo::generate(soak.orders, 7);
    eprintln!(
        "soak: {} kills over {} orders ({} events), seed {:#x} \
         (PROJECTOR_SOAK_KILLS, PROJECTOR_SOAK_ORDERS, PROJECTOR_SOAK_SEED)",
        soak.kills,
        soak.orders,
        records.len(),
        soak.seed
    );
    assert!(
        records.len() >= 100 * soak.kills,
        "{} events for {} kills: too few to land mid-stream",
        records.len(),
        soak.kills
    );
    let server = OwnServer::start();
    let db = server.create_db("soak").await;
    let topic = create_topic("soak", 6).await;
    // Small batches: many commits, so kills land between and inside them. A short session:
    // the group gives the killed member's partitions to its successor within a round.
    let config = HostConfig::new("soak", &db.url, &topic, &EXAMPLE_PLUGINS)
        .with("PROJECTOR_PIPELINE__MAX_BATCH_EVENTS", "300")
        .with("PROJECTOR_KAFKA__SESSION_TIMEOUT_MS", &SESSION.as_millis().to_string())
        .with("PROJECTOR_KAFKA__HEARTBEAT_INTERVAL_MS", "500");
    let mut rng = StdRng::seed_from_u64(soak.seed);
    let plan = soak.plan(&mut rng);
    let planned_restarts = plan.iter().filter(|r| **r == Round::RestartPostgres).count();
    let mut rounds = Rounds {
        server,
        db,
        topic,
        config,
        rng,
        tally: Tally::default(),
        published: 0,
        applied: 0,
        restart_due: false,
    };
    for (round, kind) in plan.iter().enumerate() {
        let slice = &records[round * records.len() / soak.kills..(round + 1) * records.len() / soak.kills];
        rounds.run(round, *kind, slice).await;
    }
    // The server stays up until the end: the crashed run's database is on it.
    let Rounds { server: _server, db, topic, config, tally, published, .. } = rounds;
    assert_eq!(tally.kills, soak.kills);
    assert!(tally.mid_stream >= soak.kills / 2, "only {} kills landed while events were pending", tally.mid_stream);
    assert_eq!(
        tally.restarts_mid_stream, planned_restarts,
        "PostgreSQL restarts planned, and done while events were pending: {tally:?}"
    );

    // Ten minutes, or more for a long soak's events (2.6 million for 1,000 kills).
    let catch_up = Duration::from_secs(600.max(records.len() as u64 / 2_000));
    let host = Host::start(&config);
    wait_caught_up(&db, &topic, 3, catch_up).await;
    assert!(host.terminate(Duration::from_secs(30)));
    let soaked = started.elapsed();

    let clean = clean_run(&topic, catch_up).await;
    let (effects, first_difference) = Effects::of(&db, &clean, &expected::Model::of(&records)).await;
    eprintln!(
        "soak summary: {} kills ({} mid-stream, {} while starting), {} PostgreSQL restarts ({} mid-stream: {:?}), \
         {published} events; rows differing from the clean run: {}, effects lost: {}, doubled: {} (of {}); \
         seed {:#x}; {:.0?} of kills and catch-up, {:.0?} in all",
        tally.kills,
        tally.mid_stream,
        tally.at_start,
        tally.restarts.len(),
        tally.restarts_mid_stream,
        tally.restarts,
        effects.rows_differing,
        effects.lost,
        effects.doubled,
        effects.expected,
        soak.seed,
        soaked,
        started.elapsed()
    );
    assert_eq!(effects, Effects { expected: effects.expected, ..Effects::default() });
    assert_eq!(first_difference, None);
    assert_matches_model(&db, &records).await;
}
