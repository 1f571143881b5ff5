//! `misbehaving`: a test fixture, never deployed. It proves the sandbox's limits with a real
//! component: on an event of type `Spin` it loops forever, on `Hog` it allocates without end,
//! on `Panic` it panics, on `Recurse` it recurses until its stack overflows, on `Socket` it
//! tries to open a TCP connection and says what happened, on `Sleep` it sleeps for 40 s, on
//! `Doze` it sleeps a second at a time forever, on `Churn` it computes for a bounded while (the
//! same steps every time), on `Flood` it writes 200,000 state keys, on `Burst` it returns
//! 200,000 operations, on `Echo` it returns 100 operations whose texts are one 1 MiB buffer,
//! on `Ambient` it records what the clock, randomness, environment and filesystem look
//! like from inside; a `Child` is refused until a `Parent` of the same key was seen (an event
//! that arrived before what it depends on: a dead letter to re-drive later), then it counts one
//! more child; any other event upserts a row keyed by the record key.

use projector_sdk::{Collection, Context, Error, Event, Field, Operation, Projection, ProjectionSpec};

/// The collection this fixture writes.
pub const COLLECTION: &str = "probe";

/// The fixture projection.
pub struct Misbehaving;

impl Projection for Misbehaving {
    fn describe() -> ProjectionSpec {
        ProjectionSpec::new("misbehaving", 1, "Test fixture for the sandbox limits.").collection(
            Collection::postgres(COLLECTION, "One row per record key.")
                .field(Field::text("id").description("The record key."))
                .field(Field::text("observed").description("What the event observed."))
                .field(Field::integer("children").description("`Child` events applied."))
                .primary_key(["id"]),
        )
    }

    fn handle(event: &Event, ctx: &mut Context) -> Result<Vec<Operation>, Error> {
        let id = event.key_str().unwrap_or_default().to_string();
        match event.event_type() {
            Some("Flood") => {
                for i in 0..200_000 {
                    ctx.set_state(&format!("flood-{i}"), &i)?;
                }
            }
            Some("Parent") => ctx.set_state(&format!("parent:{id}"), &true)?,
            Some("Child") => {
                if ctx.state::<bool>(&format!("parent:{id}"))?.is_none() {
                    return Err(Error::new(format!("child of {id} arrived before its parent")));
                }
                return Ok(vec![
                    Operation::upsert(COLLECTION, id.clone()).set("observed", "child").into(),
                    Operation::increment(COLLECTION, id).add("children", 1i64).into(),
                ]);
            }
            Some("Echo") => return Ok(echo(&id)),
            Some("Burst") => {
                return Ok((0..200_000)
                    .map(|i| Operation::upsert(COLLECTION, format!("{id}-{i}")).set("observed", "burst").into())
                    .collect());
            }
            _ => {}
        }
        let observed = match event.event_type() {
            Some("Spin") => spin(),
            Some("Hog") => hog(),
            Some("Panic") => panic!("misbehaving plugin panicked on purpose at offset {}", event.offset),
            Some("Ambient") => ambient(),
            Some("Recurse") => recurse(0).to_string(),
            Some("Socket") => socket(),
            Some("Churn") => churn(event.offset as u64),
            Some("Sleep") => {
                std::thread::sleep(std::time::Duration::from_secs(40));
                "slept".to_string()
            }
            Some("Doze") => loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            },
            _ => "ok".to_string(),
        };
        Ok(vec![Operation::upsert(COLLECTION, id).set("observed", observed).into()])
    }
}

/// 100 operations whose `observed` texts all point at one 1 MiB buffer: the plugin holds
/// 1 MiB, the host, copying each text, would hold 100 MiB.
fn echo(id: &str) -> Vec<Operation> {
    let buffer = std::mem::ManuallyDrop::new("e".repeat(1 << 20));
    (0..100)
        .map(|i| {
            // SAFETY: none, on purpose: a hostile fixture aliases one buffer 100 times. The texts
            // are only read (lowered into the result) and the instance is dropped after the call.
            let alias = unsafe { String::from_raw_parts(buffer.as_ptr().cast_mut(), buffer.len(), buffer.capacity()) };
            Operation::upsert(COLLECTION, format!("{id}-{i}")).set("observed", alias).into()
        })
        .collect()
}

#[allow(clippy::empty_loop)]
fn spin() -> String {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// How many steps a `Churn` event computes.
const CHURN_STEPS: u64 = 200_000;

/// A bounded computation: `CHURN_STEPS` steps of a linear congruential generator from `seed`.
fn churn(seed: u64) -> String {
    let mut x = seed;
    for _ in 0..CHURN_STEPS {
        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407));
    }
    format!("churned {x:016x}")
}

fn hog() -> String {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

/// Recursion without end: each frame keeps a buffer alive, so the stack overflows.
#[allow(unconditional_recursion)] // the point of this fixture
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    recurse(depth + 1) + frame[(depth % 64) as usize]
}

/// A TCP connection to a local port, as seen inside.
fn socket() -> String {
    match std::net::TcpStream::connect("127.0.0.1:5432") {
        Ok(_) => "connected".to_string(),
        Err(e) => format!("denied ({e})"),
    }
}

/// Wall clock, monotonic clock, random bytes, environment and a file read, as seen inside.
fn ambient() -> String {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs().to_string())
        .unwrap_or_else(|e| format!("error {e}"));
    let started = std::time::Instant::now();
    let monotonic = started.elapsed().as_nanos();
    // RandomState is seeded from the platform's random source.
    let hashed = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 42u64);
    let env = std::env::vars().count();
    let file =
        std::fs::read_to_string("/etc/passwd").map(|_| "read".to_string()).unwrap_or_else(|e| format!("denied ({e})"));
    serde_json::json!({"wall": wall, "monotonic": monotonic as u64, "hash": hashed, "env": env, "file": file})
        .to_string()
}

projector_sdk::export_projection!(Misbehaving);
