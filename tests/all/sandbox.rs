//! The sandbox bounds every call: a looping plugin runs out of fuel (deterministically, however
//! loaded the machine), the wall-clock deadline stops what fuel does not, a hoarding plugin hits
//! the memory cap, a panicking one traps with its message; and nothing ambient leaks in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use projector::config::MAX_FUEL_PER_EVENT;
use projector::contract::{Event, Header, Operation, Value};
use projector::runtime::{
    CallError, Limits, LoadError, Plugin, Runtime, StateOverlay, CALL_FUEL, MAX_TRANSFER, REST_AFTER_FAILURE,
};
use projector_tests::*;

/// The host's default fuel per event.
const FUEL_PER_EVENT: u64 = projector::config::DEFAULT_FUEL_PER_EVENT;

fn runtime() -> Runtime {
    runtime_with(Duration::from_millis(300))
}

fn runtime_with(call_timeout: Duration) -> Runtime {
    Runtime::new(Limits { call_timeout, max_memory: 32 << 20, fuel_per_event: FUEL_PER_EVENT }, None).unwrap()
}

fn event(offset: i64, kind: &str) -> Event {
    Event {
        topic: "t".into(),
        partition: 0,
        offset,
        key: Some(format!("k{offset}").into_bytes()),
        value: Some(format!(r#"{{"type":"{kind}"}}"#).into_bytes()),
        headers: vec![Header { key: "x".into(), value: None }],
        timestamp_ms: Some(0),
    }
}

fn state() -> StateOverlay {
    StateOverlay::new(HashMap::new(), Box::new(|_| Ok(None)))
}

fn load(runtime: &Runtime, path: &str) -> Plugin {
    runtime.load(&std::fs::read(path).unwrap()).unwrap()
}

fn observed(operations: &[Operation]) -> String {
    let [Operation::Upsert(upsert)] = operations else { panic!("{operations:?}") };
    let Value::Text(text) = &upsert.fields[0].value else { panic!("{upsert:?}") };
    text.clone()
}

fn runtime_with_fuel(fuel_per_event: u64, call_timeout: Duration) -> Runtime {
    Runtime::new(Limits { call_timeout, max_memory: 32 << 20, fuel_per_event }, None).unwrap()
}

/// A deadline no test call should reach: only fuel may stop these calls.
const NO_DEADLINE: Duration = Duration::from_secs(120);

/// Fuel per event in the fuel tests: 20 times what a `Churn` event spends, and a budget that
/// lasts a fraction of a second.
const TEST_FUEL_PER_EVENT: u64 = 20_000_000;

/// Fuel a real plugin (Rust `order-summaries`) spends per second on this machine now, over
/// 10,000 events in calls of 500: the rate docs/BENCHMARKS.md turns budgets into time with.
fn fuel_per_second(plugin: &Plugin) -> f64 {
    let samples = projector::dryrun::parse_jsonl(include_str!("../../plugins/testdata/samples.jsonl")).unwrap();
    let events = projector::dryrun::events("t", samples);
    let events: Vec<Event> = events.iter().cycle().take(10_000).cloned().collect();
    let (before, started) = (plugin.fuel_spent(), Instant::now());
    let mut state = state();
    for call in events.chunks(500) {
        state = plugin.handle(call, state).unwrap().1;
    }
    (plugin.fuel_spent() - before) as f64 / started.elapsed().as_secs_f64()
}

#[test]
fn a_looping_plugin_runs_out_of_fuel_deterministically() {
    let runtime = runtime_with_fuel(TEST_FUEL_PER_EVENT, NO_DEADLINE);
    let plugin = load(&runtime, MISBEHAVING);
    let real = load(&runtime, ORDER_SUMMARIES);
    let budget = CALL_FUEL + 2 * TEST_FUEL_PER_EVENT;
    for _ in 0..3 {
        let budget_lasts = Duration::from_secs_f64(budget as f64 / fuel_per_second(&real));
        let started = Instant::now();
        let error = plugin.handle(&[event(0, "Ok"), event(1, "Spin")], state()).err().unwrap();
        let took = started.elapsed();
        assert_eq!(error, CallError::Fuel { budget });
        assert!(error.is_deterministic());
        assert!(took < budget_lasts.mul_f64(1.5), "stopped after {took:?}; the budget lasts {budget_lasts:?}");
    }
    let message = CallError::Fuel { budget }.to_string();
    assert_eq!(
        message,
        format!("plugin call ran out of fuel: it spent its budget of {budget} units (about one per WebAssembly instruction); this is deterministic, the same events always run out")
    );
    // The plugin stays usable: the next call gets a fresh instance.
    let (results, _) = plugin.handle(&[event(2, "Ok")], state()).unwrap();
    assert_eq!(observed(results[0].as_ref().unwrap()), "ok");
}

/// Threads that keep every core busy until dropped.
struct CpuLoad {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CpuLoad {
    fn start(threads: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            thread.join().unwrap();
        }
    }
}

/// How a call over a prefix ended: `None` when it succeeded.
fn outcome(plugin: &Plugin, events: &[Event]) -> Option<CallError> {
    plugin.handle(events, state()).err()
}

/// The pipeline's search for the event a failing call is pinned on: the shortest failing
/// prefix, by bisection, assuming shorter prefixes succeed and longer ones fail.
fn bisect(plugin: &Plugin, events: &[Event]) -> usize {
    let (mut good, mut bad) = (0, events.len());
    while bad - good > 1 {
        let middle = good + (bad - good) / 2;
        match outcome(plugin, &events[..middle]) {
            None => good = middle,
            Some(_) => bad = middle,
        }
    }
    good
}

/// What the pipeline relies on to pin a failing call on one event: under CPU load, a call
/// whose events each do bounded work never runs out of fuel, every prefix holding the looping
/// event does with the same error, and bisection lands on the looping event every time.
#[test]
fn under_cpu_load_only_the_looping_event_runs_out_of_fuel() {
    let runtime = runtime_with_fuel(TEST_FUEL_PER_EVENT, NO_DEADLINE);
    let plugin = load(&runtime, MISBEHAVING);
    let looping = 5;
    let events: Vec<Event> =
        (0..8).map(|offset| event(offset, if offset == looping { "Spin" } else { "Churn" })).collect();
    let _load = CpuLoad::start(4);
    let expected = |len: usize| {
        (len > looping as usize).then(|| CallError::Fuel { budget: CALL_FUEL + len as u64 * TEST_FUEL_PER_EVENT })
    };
    for round in 0..2 {
        for len in 1..=events.len() {
            assert_eq!(outcome(&plugin, &events[..len]), expected(len), "round {round}, prefix of {len}");
        }
        assert_eq!(bisect(&plugin, &events), looping as usize, "round {round}");
    }
}

/// Fuel counts instructions, not time: a call that sleeps or waits in the host spends little
/// of it, so the wall-clock deadline stays as a backstop. With fuel enough for minutes, a
/// looping plugin still stops at the deadline, with an error saying it is not deterministic.
#[test]
fn the_deadline_stops_a_looping_plugin_that_fuel_does_not() {
    let limit = Duration::from_millis(300);
    let runtime = runtime_with_fuel(MAX_FUEL_PER_EVENT, limit);
    let plugin = load(&runtime, MISBEHAVING);
    let started = Instant::now();
    let error = plugin.handle(&[event(0, "Ok"), event(1, "Spin")], state()).err().unwrap();
    assert_eq!(error, CallError::Timeout(limit));
    assert!(!error.is_deterministic());
    assert!(started.elapsed() < Duration::from_secs(2), "stopped after {:?}", started.elapsed());
    assert_eq!(
        error.to_string(),
        "plugin call exceeded its 300ms deadline (wall-clock time, not deterministic: it may pass on a less loaded machine)"
    );
    let (results, _) = plugin.handle(&[event(2, "Ok")], state()).unwrap();
    assert_eq!(observed(results[0].as_ref().unwrap()), "ok");
}

/// Which failures the pipeline may pin on an event: those the same events always reproduce.
#[test]
fn only_the_deadline_and_an_unavailable_store_are_not_deterministic() {
    let deterministic = [
        CallError::Fuel { budget: 1 },
        CallError::Memory { cap: 1, desired: 2 },
        CallError::Trap { message: "boom".into() },
        CallError::Contract("two results for one event".into()),
    ];
    assert!(deterministic.iter().all(CallError::is_deterministic));
    let not = [CallError::Timeout(Duration::from_secs(5)), CallError::StateUnavailable("reset".into())];
    assert!(!not.iter().any(CallError::is_deterministic));
}

/// A sleep waits for nothing real (a plugin cannot block the host's thread out of the deadline's
/// reach), so a long sleep returns at once; sleeping forever is a loop that mostly runs in the
/// host, where fuel is not spent, so it is stopped by a count: past 10,000 timers in one call it
/// traps, deterministically, long before the deadline (fuel set high enough not to interfere).
#[test]
fn a_sleeping_plugin_cannot_outlast_the_deadline() {
    let limit = Duration::from_secs(1);
    let runtime = runtime_with_fuel(MAX_FUEL_PER_EVENT, limit);
    let plugin = load(&runtime, MISBEHAVING);
    let started = Instant::now();
    let (results, _) = plugin.handle(&[event(0, "Sleep")], state()).unwrap();
    assert_eq!(observed(results[0].as_ref().unwrap()), "slept");
    assert!(started.elapsed() < limit, "a 40 s sleep took {:?}", started.elapsed());

    let started = Instant::now();
    let error = plugin.handle(&[event(1, "Ok"), event(2, "Doze")], state()).err().unwrap();
    let took = started.elapsed();
    let CallError::Trap { message } = &error else { panic!("{error:?}") };
    assert!(message.contains("more than 10000 sleeps or timers in one call"), "{message}");
    assert!(error.is_deterministic());
    assert!(took < limit, "stopped {took:?} into the call, past its {limit:?} deadline");
}

/// State writes and returned operations are capped per call, so a plugin cannot make the host
/// hold without bound what it produces.
#[test]
fn floods_of_state_writes_and_operations_fail_the_call() {
    let runtime = Runtime::new(
        Limits { call_timeout: Duration::from_secs(30), max_memory: 256 << 20, fuel_per_event: MAX_FUEL_PER_EVENT },
        None,
    )
    .unwrap();
    let plugin = load(&runtime, MISBEHAVING);
    let error = plugin.handle(&[event(0, "Flood")], state()).err().unwrap();
    let CallError::Trap { message } = error else { panic!("{error:?}") };
    assert!(message.contains("more than 100000 state writes in one call"), "{message}");
    let error = plugin.handle(&[event(1, "Ok"), event(2, "Burst")], state()).err().unwrap();
    assert_eq!(
        error,
        CallError::Contract(
            "handle returned 200001 operations for 2 events; one call may return at most 100000".into()
        )
    );
}

/// What the host copies out of a plugin is bounded as it is copied: a plugin returning one 1 MiB
/// buffer as the text of 100 operations holds 1 MiB, the host would hold 100 MiB (wasmtime's
/// own bound, 128 MiB unless set, let it through).
#[test]
fn a_plugin_returning_one_buffer_many_times_is_refused_as_it_is_copied() {
    let runtime = runtime();
    let plugin = load(&runtime, MISBEHAVING);
    let error = plugin.handle(&[event(0, "Ok"), event(1, "Echo")], state()).err().unwrap();
    assert_eq!(
        error,
        CallError::Contract(format!(
            "the plugin returned more than {MAX_TRANSFER} bytes in one call (or passed as much to one host call), counted as the host would hold them"
        ))
    );
    assert!(error.is_deterministic());
    assert!(plugin.peak_memory() < 8 << 20, "the plugin itself held {} bytes", plugin.peak_memory());
}

/// A plugin whose call failed rests four times as long as the call ran before the pipeline calls
/// it again, so a plugin failing call after call gets a fifth of a core; a call that succeeds
/// ends the rest. `handle` itself never waits.
#[test]
fn a_plugin_rests_after_a_failed_call() {
    let runtime = runtime_with_fuel(TEST_FUEL_PER_EVENT, NO_DEADLINE);
    let plugin = load(&runtime, MISBEHAVING);
    assert_eq!(plugin.rest(), Duration::ZERO);
    let started = Instant::now();
    plugin.handle(&[event(0, "Ok"), event(1, "Spin")], state()).err().unwrap();
    let (took, rest) = (started.elapsed(), plugin.rest());
    assert!(rest <= took * REST_AFTER_FAILURE, "rest {rest:?} after a call of {took:?}");
    assert!(rest >= took * (REST_AFTER_FAILURE - 1), "rest {rest:?} after a call of {took:?}");
    let started = Instant::now();
    plugin.handle(&[event(2, "Ok")], state()).unwrap();
    assert!(started.elapsed() < rest, "handle waited out the rest");
    assert_eq!(plugin.rest(), Duration::ZERO);
}

#[test]
fn a_hoarding_plugin_fails_its_call_at_the_memory_cap() {
    let runtime = runtime();
    let plugin = load(&runtime, MISBEHAVING);
    let error = plugin.handle(&[event(0, "Hog")], state()).err().unwrap();
    let CallError::Memory { cap, desired } = error else { panic!("{error:?}") };
    assert_eq!(cap, 32 << 20);
    assert!(desired > cap);
}

#[test]
fn a_panicking_plugin_traps_with_its_message() {
    let runtime = runtime();
    let plugin = load(&runtime, MISBEHAVING);
    let error = plugin.handle(&[event(7, "Panic")], state()).err().unwrap();
    let CallError::Trap { message } = error else { panic!("{error:?}") };
    assert!(message.contains("misbehaving plugin panicked on purpose at offset 7"), "{message}");
}

#[test]
fn nothing_ambient_reaches_a_plugin() {
    let runtime = runtime();
    let plugin = load(&runtime, MISBEHAVING);
    let run = || {
        let (results, _) = plugin.handle(&[event(0, "Ambient")], state()).unwrap();
        observed(results[0].as_ref().unwrap())
    };
    let first: serde_json::Value = serde_json::from_str(&run()).unwrap();
    assert_eq!(first["wall"], "0", "the wall clock is frozen at the epoch");
    assert_eq!(first["monotonic"], 0, "the monotonic clock does not move");
    assert_eq!(first["env"], 0, "no environment variables");
    assert!(first["file"].as_str().unwrap().starts_with("denied"), "{first}");
    let second: serde_json::Value = serde_json::from_str(&run()).unwrap();
    assert_eq!(first, second, "randomness replays identically");
}

#[test]
fn the_example_plugins_describe_their_read_models() {
    let runtime = runtime();
    let names: Vec<(String, u32)> = EXAMPLE_PLUGINS
        .iter()
        .map(|path| {
            let plugin = load(&runtime, path);
            (plugin.spec().name().to_string(), plugin.spec().version())
        })
        .collect();
    assert_eq!(
        names,
        [("order-summaries".to_string(), 1), ("order-details".into(), 1), ("daily-order-stats".into(), 1)]
    );
}

#[test]
fn bytes_that_are_not_a_component_are_refused() {
    let runtime = runtime();
    let error = runtime.load(b"definitely not wasm").err().unwrap();
    assert!(matches!(error, LoadError::NotWasm), "{error}");
    assert_eq!(error.code(), "not_wasm");
    // A core module: magic and version 1, no sections.
    let error = runtime.load(b"\0asm\x01\0\0\0").err().unwrap();
    assert!(matches!(error, LoadError::CoreModule), "{error}");
    assert!(error.to_string().contains("core WebAssembly module"), "{error}");
}

/// A state key the host cannot load because the database is down for now fails the call with
/// `StateUnavailable` (the pipeline retries the batch once the database answers), not with a
/// trap that would fail the projection; any other load error stays a trap.
#[test]
fn an_unavailable_state_store_is_a_retryable_failure_not_a_trap() {
    let runtime = runtime();
    let plugin = load(&runtime, ORDER_SUMMARIES);
    let events = projector::dryrun::events(
        "t",
        projector::dryrun::parse_jsonl(include_str!("../../plugins/testdata/samples.jsonl")).unwrap(),
    );
    let down = StateOverlay::new(
        HashMap::new(),
        Box::new(|_| Err(anyhow::Error::new(projector::runtime::StateUnavailable("connection reset".into())))),
    );
    let Err(error) = plugin.handle(&events, down) else { panic!("the call succeeded without state") };
    assert!(matches!(&error, CallError::StateUnavailable(m) if m == "connection reset"), "{error:?}");

    let broken = StateOverlay::new(HashMap::new(), Box::new(|_| Err(anyhow::anyhow!("relation does not exist"))));
    let Err(error) = plugin.handle(&events, broken) else { panic!("the call succeeded without state") };
    assert!(matches!(&error, CallError::Trap { message } if message.contains("relation does not exist")), "{error:?}");
}

/// The compiled-artifact cache checks each file's keyed checksum before deserializing it: a
/// corrupted (or planted) artifact is refused, compiled again and replaced.
#[test]
fn a_tampered_compiled_artifact_is_refused_and_compiled_again() {
    let dir = std::env::temp_dir().join(unique("artifacts"));
    let limits =
        || Limits { call_timeout: Duration::from_secs(5), max_memory: 32 << 20, fuel_per_event: FUEL_PER_EVENT };
    load(&Runtime::new(limits(), Some(dir.clone())).unwrap(), MISBEHAVING);
    let artifacts: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    let [artifact] = artifacts.as_slice() else { panic!("{artifacts:?}") };
    let good = std::fs::read(artifact).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x5a;
    std::fs::write(artifact, &bad).unwrap();

    let plugin = load(&Runtime::new(limits(), Some(dir.clone())).unwrap(), MISBEHAVING);
    let (results, _) = plugin.handle(&[event(0, "Ok")], state()).unwrap();
    assert_eq!(observed(results[0].as_ref().unwrap()), "ok");
    let rewritten = std::fs::read(artifact).unwrap();
    assert_ne!(rewritten, bad, "the corrupted artifact was replaced");
    assert_eq!(rewritten.len(), good.len());
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 2, "the artifact and the key, no temporary files: {leftovers:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
