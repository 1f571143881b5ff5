//! Plugin throughput through the sandbox against the same projection code compiled natively,
//! measured in one run on the same events.
//!
//! `cargo bench -p projector-tests --bench sandbox` (results: docs/BENCHMARKS.md).
//!
//! Native: the plugin crate called directly, with in-memory state (`projector_sdk::testing::Runner`).
//! Sandboxed: the `.wasm` component in the host's runtime, in calls of 500 events, each with a
//! fresh instance, a fuel budget, a deadline and a memory cap, state held by the host; the same
//! events.
//!
//! Fuel vs epoch interruption: `order-summaries` in each language under each CPU bound the
//! engine can compile in (deadline only, fuel only, both: the host's choice), rounds of the
//! three interleaved; with the fuel a typical event, the heaviest single event and an empty
//! call spend, and the fuel spent per second.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use projector::contract::Event;
use projector::runtime::{Interruption, Limits, Plugin, Runtime, StateOverlay};
use projector_sdk::testing::Runner;
use projector_sdk::Projection;

const ORDERS: usize = 20_000;
const EVENTS_PER_CALL: usize = 500;
const ROUNDS: usize = 5;

fn sdk_events(events: &[Event]) -> Vec<projector_sdk::Event> {
    events
        .iter()
        .map(|e| projector_sdk::Event {
            topic: e.topic.clone(),
            partition: e.partition,
            offset: e.offset,
            key: e.key.clone(),
            value: e.value.clone(),
            headers: e
                .headers
                .iter()
                .map(|h| projector_sdk::Header { key: h.key.clone(), value: h.value.clone() })
                .collect(),
            timestamp_ms: e.timestamp_ms,
        })
        .collect()
}

/// Best of `ROUNDS` runs, in events per second.
fn best(events: usize, mut run: impl FnMut() -> usize) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let operations = std::hint::black_box(run());
        assert!(operations > 0);
        best = best.min(started.elapsed());
    }
    events as f64 / best.as_secs_f64()
}

fn native<P: Projection>(events: &[projector_sdk::Event]) -> f64 {
    best(events.len(), || {
        let mut runner = Runner::<P>::new();
        events.iter().map(|e| runner.handle(e).map(|ops| ops.len()).unwrap_or(0)).sum()
    })
}

fn sandboxed(runtime: &Runtime, wasm: &str, events: &[Event]) -> f64 {
    let plugin = runtime.load(&std::fs::read(wasm).unwrap()).unwrap();
    best(events.len(), || project(&plugin, events))
}

/// Projects all `events` in calls of `EVENTS_PER_CALL`; returns the number of operations.
fn project(plugin: &Plugin, events: &[Event]) -> usize {
    let mut state = empty_state();
    let mut operations = 0;
    for chunk in events.chunks(EVENTS_PER_CALL) {
        let (results, after) = plugin.handle(chunk, state).unwrap();
        operations += results.iter().map(|r| r.as_ref().map(Vec::len).unwrap_or(0)).sum::<usize>();
        state = after;
    }
    operations
}

fn empty_state() -> StateOverlay {
    StateOverlay::new(HashMap::new(), Box::new(|_| Ok(None)))
}

/// The CPU bounds compared, in the order of the table's columns.
const MODES: [Interruption; 3] = [Interruption::Deadline, Interruption::Fuel, Interruption::FuelAndDeadline];

/// What one component costs under each CPU bound.
struct Cost {
    size: usize,
    /// Compile time under the host's bounds (fuel and deadline).
    compile: Duration,
    peak_memory: usize,
    /// Events per second, one per entry of `MODES`.
    rates: [f64; 3],
    fuel: FuelCost,
}

/// Fuel spent, measured under the host's bounds.
struct FuelCost {
    /// A call of no events: instantiation, entering and leaving `handle`.
    empty_call: u64,
    /// `describe` at load, instantiation included.
    describe: u64,
    /// The average event in calls of `EVENTS_PER_CALL` (the empty call's share removed).
    per_event: f64,
    /// The heaviest event of the first `SINGLE_EVENTS`, each projected alone.
    heaviest_event: u64,
    /// Fuel spent per second of a round.
    per_second: f64,
}

/// How many events are projected one per call to find the heaviest.
const SINGLE_EVENTS: usize = 1_000;

fn measure(runtimes: &[Runtime; 3], wasm: &str, events: &[Event]) -> Cost {
    let bytes = std::fs::read(wasm).unwrap();
    let plugins: Vec<Plugin> = runtimes.iter().map(|r| r.load(&bytes).unwrap()).collect();
    let started = Instant::now();
    let host = runtimes[2].load(&bytes).unwrap();
    let compile = started.elapsed();
    let mut best = [Duration::MAX; 3];
    for _ in 0..ROUNDS {
        for (plugin, best) in plugins.iter().zip(&mut best) {
            let started = Instant::now();
            assert!(std::hint::black_box(project(plugin, events)) > 0);
            *best = (*best).min(started.elapsed());
        }
    }
    let rates = best.map(|b| events.len() as f64 / b.as_secs_f64());
    let fuel = fuel_cost(&host, events);
    Cost { size: bytes.len(), compile, peak_memory: host.peak_memory(), rates, fuel }
}

/// Fuel `plugin` spends on `call`.
fn spends(plugin: &Plugin, call: impl FnOnce(&Plugin)) -> u64 {
    let before = plugin.fuel_spent();
    call(plugin);
    plugin.fuel_spent() - before
}

fn fuel_cost(plugin: &Plugin, events: &[Event]) -> FuelCost {
    let empty_call = spends(plugin, |p| drop(p.handle(&[], empty_state()).unwrap()));
    let started = Instant::now();
    let round = spends(plugin, |p| assert!(project(p, events) > 0));
    let per_second = round as f64 / started.elapsed().as_secs_f64();
    let calls = events.len().div_ceil(EVENTS_PER_CALL) as u64;
    let per_event = (round - calls * empty_call) as f64 / events.len() as f64;
    let mut state = empty_state();
    let mut heaviest_event = 0;
    for event in &events[..SINGLE_EVENTS] {
        let before = plugin.fuel_spent();
        state = plugin.handle(std::slice::from_ref(event), state).unwrap().1;
        heaviest_event = heaviest_event.max(plugin.fuel_spent() - before - empty_call);
    }
    FuelCost { empty_call, describe: plugin.describe_fuel(), per_event, heaviest_event, per_second }
}

const MIB: f64 = 1024.0 * 1024.0;

fn limits() -> Limits {
    Limits {
        call_timeout: Duration::from_secs(30),
        max_memory: 256 << 20,
        fuel_per_event: projector::config::DEFAULT_FUEL_PER_EVENT,
    }
}

fn main() {
    let records = projector_demo::generate(ORDERS, 99);
    let events = projector_tests::events_of(&records);
    let native_events = sdk_events(&events);
    let runtimes = MODES.map(|mode| Runtime::with_interruption(limits(), None, mode).unwrap());
    let runtime = &runtimes[2];
    println!("{} events of {ORDERS} generated orders; best of {ROUNDS} rounds; {EVENTS_PER_CALL} events per sandboxed call.\n", events.len());
    println!("| plugin | native (events/s) | sandboxed (events/s) | sandboxed / native |");
    println!("|---|---:|---:|---:|");
    let rows = [
        (
            "order-summaries",
            native::<order_summaries::OrderSummaries>(&native_events),
            projector_tests::ORDER_SUMMARIES,
        ),
        ("order-details", native::<order_details::OrderDetails>(&native_events), projector_tests::ORDER_DETAILS),
        (
            "daily-order-stats",
            native::<daily_order_stats::DailyOrderStats>(&native_events),
            projector_tests::DAILY_ORDER_STATS,
        ),
    ];
    for (name, native_rate, wasm) in rows {
        let sandboxed_rate = sandboxed(runtime, wasm, &events);
        println!("| {name} | {native_rate:.0} | {sandboxed_rate:.0} | {:.2} |", sandboxed_rate / native_rate);
    }
    let languages = [
        ("Rust (wasm32-wasip2)", projector_tests::ORDER_SUMMARIES),
        ("Python (componentize-py)", projector_tests::PY_ORDER_SUMMARIES),
        ("JavaScript (componentize-js)", projector_tests::JS_ORDER_SUMMARIES),
    ];
    let costs: Vec<(&str, Cost)> = languages.iter().map(|(l, wasm)| (*l, measure(&runtimes, wasm, &events))).collect();
    println!("\n`order-summaries` in three languages, same events, same runtime and limits:\n");
    println!("| language | component size | compile (no cache) | peak linear memory | sandboxed (events/s) | vs Rust sandboxed |");
    println!("|---|---:|---:|---:|---:|---:|");
    let rust = costs[0].1.rates[2];
    for (language, cost) in &costs {
        println!(
            "| {language} | {:.1} MiB | {:.2} s | {:.1} MiB | {:.0} | {:.3} |",
            cost.size as f64 / MIB,
            cost.compile.as_secs_f64(),
            cost.peak_memory as f64 / MIB,
            cost.rates[2],
            cost.rates[2] / rust
        );
    }
    println!("\nFuel vs epoch interruption, `order-summaries` (events/s; rounds of the three interleaved):\n");
    println!("| language | deadline only | fuel only | fuel + deadline | fuel + deadline / deadline only |");
    println!("|---|---:|---:|---:|---:|");
    for (language, cost) in &costs {
        let [deadline, fuel, both] = cost.rates;
        println!("| {language} | {deadline:.0} | {fuel:.0} | {both:.0} | {:.3} |", both / deadline);
    }
    println!("\nFuel spent (fuel + deadline runtime):\n");
    println!("| language | per event (mean, calls of {EVENTS_PER_CALL}) | heaviest of {SINGLE_EVENTS} events alone | empty call | describe | fuel per second |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (language, cost) in &costs {
        let f = &cost.fuel;
        println!(
            "| {language} | {:.0} | {} | {} | {} | {:.2e} |",
            f.per_event, f.heaviest_event, f.empty_call, f.describe, f.per_second
        );
    }
}
