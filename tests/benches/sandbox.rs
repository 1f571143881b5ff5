//! Plugin throughput through the sandbox against the same projection code compiled natively,
//! measured in one run on the same events.
//!
//! `cargo bench -p projector-tests --bench sandbox` (results: docs/BENCHMARKS.md).
//!
//! Native: the plugin crate called directly, with in-memory state (`projector_sdk::testing::Runner`).
//! Sandboxed: the `.wasm` component in the host's runtime, in calls of 500 events, each with a
//! fresh instance, a deadline and a memory cap, state held by the host; the same events.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use projector::demo::DemoRecord;
use projector::runtime::types::{Event, Header};
use projector::runtime::{Limits, Runtime, StateOverlay};
use projector_sdk::testing::Runner;
use projector_sdk::Projection;

const ORDERS: usize = 20_000;
const EVENTS_PER_CALL: usize = 500;
const ROUNDS: usize = 5;

fn wit_events(records: &[DemoRecord]) -> Vec<Event> {
    records
        .iter()
        .enumerate()
        .map(|(offset, r)| Event {
            topic: "order-events".into(),
            partition: 0,
            offset: offset as i64,
            key: Some(r.key.clone().into_bytes()),
            value: Some(r.value.to_string().into_bytes()),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| Header { key: k.clone(), value: Some(v.clone().into_bytes()) })
                .collect(),
            timestamp_ms: Some(0),
        })
        .collect()
}

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
    measure(runtime, wasm, events).rate
}

/// What one component costs: its size, compile time, peak linear memory and throughput.
struct Cost {
    size: usize,
    compile: Duration,
    peak_memory: usize,
    rate: f64,
}

fn measure(runtime: &Runtime, wasm: &str, events: &[Event]) -> Cost {
    let bytes = std::fs::read(wasm).unwrap();
    let started = Instant::now();
    let plugin = runtime.load(&bytes).unwrap();
    let compile = started.elapsed();
    let rate = best(events.len(), || {
        let mut state = StateOverlay::new(HashMap::new(), Box::new(|_| Ok(None)));
        let mut operations = 0;
        for chunk in events.chunks(EVENTS_PER_CALL) {
            let (results, after) = plugin.handle(chunk, state).unwrap();
            operations += results.iter().map(|r| r.as_ref().map(Vec::len).unwrap_or(0)).sum::<usize>();
            state = after;
        }
        operations
    });
    Cost { size: bytes.len(), compile, peak_memory: plugin.peak_memory(), rate }
}

const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    let records = projector::demo::generate(ORDERS, 99);
    let events = wit_events(&records);
    let native_events = sdk_events(&events);
    let runtime = Runtime::new(
        Limits { call_timeout: Duration::from_secs(10), max_memory: 256 << 20 },
        None,
    )
    .unwrap();
    println!("{} events of {ORDERS} generated orders; best of {ROUNDS} rounds; {EVENTS_PER_CALL} events per sandboxed call.\n", events.len());
    println!("| plugin | native (events/s) | sandboxed (events/s) | sandboxed / native |");
    println!("|---|---:|---:|---:|");
    let rows = [
        ("order-summaries", native::<order_summaries::OrderSummaries>(&native_events), projector_tests::ORDER_SUMMARIES),
        ("order-details", native::<order_details::OrderDetails>(&native_events), projector_tests::ORDER_DETAILS),
        ("daily-order-stats", native::<daily_order_stats::DailyOrderStats>(&native_events), projector_tests::DAILY_ORDER_STATS),
    ];
    for (name, native_rate, wasm) in rows {
        let sandboxed_rate = sandboxed(&runtime, wasm, &events);
        println!(
            "| {name} | {native_rate:.0} | {sandboxed_rate:.0} | {:.2} |",
            sandboxed_rate / native_rate
        );
    }
    println!("\n`order-summaries` in three languages, same events, same runtime and limits:\n");
    println!("| language | component size | compile (no cache) | peak linear memory | sandboxed (events/s) | vs Rust sandboxed |");
    println!("|---|---:|---:|---:|---:|---:|");
    let languages = [
        ("Rust (wasm32-wasip2)", projector_tests::ORDER_SUMMARIES),
        ("Python (componentize-py)", projector_tests::PY_ORDER_SUMMARIES),
        ("JavaScript (componentize-js)", projector_tests::JS_ORDER_SUMMARIES),
    ];
    let mut rust_rate = None;
    for (language, wasm) in languages {
        let cost = measure(&runtime, wasm, &events);
        let rust = *rust_rate.get_or_insert(cost.rate);
        println!(
            "| {language} | {:.1} MiB | {:.2} s | {:.1} MiB | {:.0} | {:.3} |",
            cost.size as f64 / MIB,
            cost.compile.as_secs_f64(),
            cost.peak_memory as f64 / MIB,
            cost.rate,
            cost.rate / rust
        );
    }
}
