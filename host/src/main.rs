//! The `projector` command.

#![warn(unreachable_pub)]

mod command;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use projector::config::Config;
use projector::progress::{Progress, Watermarks};
use projector::registry::{Deployment, Registry, Status};
use projector::sink::postgres::Database;

/// Projector: Kafka order events to read models through sandboxed WebAssembly plugins.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file; `PROJECTOR_<SECTION>__<FIELD>` variables override it.
    #[arg(long, short, global = true, env = "PROJECTOR_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the host: load the plugins, project the topic into PostgreSQL until SIGTERM.
    Run,
    /// Publish realistic order lifecycles to the topic and print the last offset per partition.
    ProduceDemo {
        /// Number of orders.
        #[arg(long, default_value_t = 10_000)]
        orders: usize,
        /// Seed of the generator: the same seed publishes the same events.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Create the topic if it does not exist.
    CreateTopic {
        /// Number of partitions.
        #[arg(long, default_value_t = 6)]
        partitions: i32,
    },
    /// Print each live projection's position and lag.
    Lag,
    /// Create a plugin project that builds to an uploadable component, with a test of its own.
    New {
        /// Projection name: lowercase letters, digits and `-`.
        name: String,
        /// Language of the plugin.
        #[arg(long, value_enum)]
        lang: command::scaffold::Lang,
        /// Directory to create the project in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The SDK (`sdk/` of a Projector checkout; the default is the checkout this binary
        /// was built from): the Rust crate, with the Python and JavaScript helper packages in
        /// `python/` and `js/`. The project depends on it by path.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Load a component as an upload would (same checks), run it over sample events with empty
    /// state and print what it declares and the operations each event yields. Needs no
    /// database or broker. Exits with 1 when any event fails.
    Check {
        /// The component (`.wasm`).
        component: PathBuf,
        /// Sample events, one JSON object per line: `{"key", "headers", "value"}`.
        #[arg(long)]
        events: Option<PathBuf>,
    },
    /// Compile a component (read from standard input) into the compiled-artifact cache, and
    /// nothing else. The admin API runs this as a child process, so that a compile past its
    /// time limit is stopped, not just abandoned.
    #[command(hide = true)]
    Precompile {
        /// The artifact cache directory.
        #[arg(long)]
        cache_dir: PathBuf,
    },
    /// Manage projections through the admin API.
    Projections {
        /// Admin API base URL.
        #[arg(long, env = "PROJECTOR_ADMIN_URL", default_value = "http://127.0.0.1:8081")]
        admin_url: String,
        /// Admin API bearer token.
        #[arg(long, env = "PROJECTOR_ADMIN_TOKEN", hide_env_values = true)]
        token: String,
        #[command(subcommand)]
        action: ProjectionsAction,
    },
    /// Wait until every live projection has caught up with the topic; print the throughput.
    Wait {
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
}

#[derive(Subcommand)]
enum ProjectionsAction {
    /// Upload a component; follow the build until it is live.
    Push {
        /// The `.wasm` component.
        file: PathBuf,
        /// Replace the live code without a rebuild (same collections and fields).
        #[arg(long)]
        hot_swap: bool,
        /// Return once uploaded instead of following the build.
        #[arg(long)]
        no_wait: bool,
        /// The projection's poison policy: `halt` or `dead-letter` (unchanged when left out).
        #[arg(long)]
        on_poison: Option<String>,
    },
    /// List projections and their deployments.
    List,
    /// Show one projection in detail.
    Status { name: String },
    /// Rebuild from the start of the topic, blue/green; follow until live.
    Rebuild {
        name: String,
        /// Return once started instead of following the build.
        #[arg(long)]
        no_wait: bool,
    },
    /// Put the previous deployment back live.
    Rollback { name: String },
    /// Stop consuming, keep serving.
    Pause { name: String },
    /// Consume again.
    Resume { name: String },
    /// Remove the projection: its workers, views, schemas and consumer groups.
    Rm { name: String },
    /// Set what the projection does with a poison event: `halt` or `dead-letter`.
    Policy { name: String, on_poison: String },
    /// Move a deployment halted at one event past it (recorded in its dead letters).
    Skip {
        name: String,
        #[arg(long)]
        partition: i32,
        #[arg(long)]
        offset: i64,
    },
    /// List the projection's dead letters.
    DeadLetters {
        name: String,
        /// Only those not re-driven yet.
        #[arg(long)]
        pending: bool,
    },
    /// Re-drive dead letters through the current build (all pending ones, or one).
    Redrive {
        name: String,
        #[arg(long, requires = "offset")]
        partition: Option<i32>,
        #[arg(long, requires = "partition")]
        offset: Option<i64>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,librdkafka=warn,rdkafka=warn,sqlx::postgres::notice=warn".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Command::Projections { admin_url, token, action } = cli.command {
        return projections(&command::cli::Client::new(&admin_url, &token), action).await;
    }
    if let Command::Precompile { cache_dir } = &cli.command {
        return precompile(cache_dir);
    }
    if let Command::New { name, lang, dir, sdk } = &cli.command {
        let sdk = sdk.clone().unwrap_or_else(command::scaffold::default_sdk_path);
        let root = command::scaffold::create(name, *lang, dir, &sdk)?;
        println!("Created {}. See its README.md to build, test and push it.", root.display());
        return Ok(());
    }
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Run => {
            let cancel = CancellationToken::new();
            projector::app::cancel_on_signals(cancel.clone());
            projector::app::run(config, cancel).await
        }
        Command::ProduceDemo { orders, seed } => {
            let records = projector_demo::generate(orders, seed);
            let started = Instant::now();
            let client = projector::source::kafka::client_config(&config.kafka);
            let last = projector_demo::publish(&client, &config.kafka.topic, &records).await?;
            let elapsed = started.elapsed().as_secs_f64();
            println!(
                "Published {} events of {orders} orders to {} in {elapsed:.1} s.",
                records.len(),
                config.kafka.topic
            );
            for (partition, offset) in last {
                println!("partition {partition}: last offset {offset}");
            }
            Ok(())
        }
        Command::CreateTopic { partitions } => {
            let client = projector::source::kafka::client_config(&config.kafka);
            projector_demo::create_topic(&client, &config.kafka.topic, partitions).await?;
            println!("Topic {} ready.", config.kafka.topic);
            Ok(())
        }
        Command::Lag => {
            for (d, p) in snapshot(&config).await? {
                let state = if d.paused { "paused".to_string() } else { d.status.to_string() };
                println!("{} v{} build {} [{state}]: {} applied, lag {}", d.name, d.version, d.build, p.applied, p.lag);
                if let Some(error) = &d.last_error {
                    println!("  last error: {error}");
                }
            }
            Ok(())
        }
        Command::Wait { timeout } => wait(&config, Duration::from_secs(timeout)).await,
        // Off the async runtime: WASI's stdio inside the plugin blocks on its own.
        Command::Check { component, events } => {
            tokio::task::spawn_blocking(move || check(&config, &component, events.as_deref())).await?
        }
        Command::Projections { .. } | Command::New { .. } | Command::Precompile { .. } => unreachable!("handled above"),
    }
}

/// `projector precompile`: the component on standard input into the artifact cache. The
/// limits do not matter to compiling; the engine's configuration is the host's.
fn precompile(cache_dir: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Read as _;
    let mut wasm = Vec::new();
    std::io::stdin().read_to_end(&mut wasm)?;
    let limits = projector::runtime::Limits {
        call_timeout: Duration::from_secs(1),
        max_memory: 16 << 20,
        fuel_per_event: projector::config::DEFAULT_FUEL_PER_EVENT,
    };
    let runtime = projector::runtime::Runtime::new(limits, Some(cache_dir.to_path_buf()))?;
    runtime.precompile(&wasm)?;
    Ok(())
}

async fn projections(client: &command::cli::Client, action: ProjectionsAction) -> anyhow::Result<()> {
    match action {
        ProjectionsAction::Push { file, hot_swap, no_wait, on_poison } => {
            let body = client.push(&file, hot_swap, on_poison.as_deref()).await?;
            let d = &body.deployment;
            println!("{} v{}: {}", d.name, d.version, body.result);
            if body.result == "building" && !no_wait {
                client.follow(&d.name, d.id).await?;
            }
        }
        ProjectionsAction::List => client.list().await?,
        ProjectionsAction::Status { name } => client.status(&name).await?,
        ProjectionsAction::Rebuild { name, no_wait } => {
            let body = client.rebuild(&name).await?;
            println!("{name}: rebuilding as build {}", body.deployment.build);
            if !no_wait {
                client.follow(&name, body.deployment.id).await?;
            }
        }
        ProjectionsAction::Rollback { name } => {
            let body = client.rollback(&name).await?;
            println!("{name}: {}; live: version {}, build {}", body.result, body.live.version, body.live.build);
        }
        ProjectionsAction::Pause { name } => println!("{name}: {}", client.steer(&name, "pause").await?.result),
        ProjectionsAction::Resume { name } => println!("{name}: {}", client.steer(&name, "resume").await?.result),
        ProjectionsAction::Rm { name } => {
            let body = client.remove(&name).await?;
            println!("{name}: {}; consumer groups deleted: {}", body.result, body.consumer_groups.join(", "));
        }
        ProjectionsAction::Policy { name, on_poison } => {
            let body = client.set_policy(&name, &on_poison).await?;
            println!("{name}: on_poison = {}", body.on_poison.as_str());
        }
        ProjectionsAction::Skip { name, partition, offset } => {
            let body = client.skip(&name, partition, offset).await?;
            let d = &body.deployment;
            println!(
                "{name}: {} partition {partition} offset {offset} (version {}, build {})",
                body.result, d.version, d.build
            );
        }
        ProjectionsAction::DeadLetters { name, pending } => client.dead_letters(&name, pending).await?,
        ProjectionsAction::Redrive { name, partition, offset } => {
            let body = client.redrive(&name, partition.zip(offset)).await?;
            println!("{name}: {} {} dead letter(s)", body.result, body.requested);
        }
    }
    Ok(())
}

/// Every deployment with its position.
async fn snapshot(config: &Config) -> anyhow::Result<Vec<(Deployment, Progress)>> {
    let database = Database::connect(&config.postgres, Duration::from_secs(30)).await?;
    let kafka = config.kafka.clone();
    let marks = tokio::task::spawn_blocking(move || Watermarks::new(&kafka)?.fetch()).await??;
    projector::progress::snapshot(&Registry::new(database.pool().clone()), database.pool(), &marks).await
}

/// Polls until every running deployment has caught up and nothing is still building; measures
/// events applied per second from the first progress seen to the moment everything caught up.
/// `projector check`: loads the component offline and dry-runs it over the sample events.
fn check(config: &Config, component: &std::path::Path, events: Option<&std::path::Path>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let wasm = std::fs::read(component).with_context(|| format!("cannot read {}", component.display()))?;
    let runtime = projector::runtime::Runtime::new(projector::app::limits(config), None)?;
    let plugin = runtime.load(&wasm).map_err(|e| anyhow::anyhow!("{} is refused: {e}", component.display()))?;
    let samples = match events {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            projector::dryrun::parse_jsonl(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => Vec::new(),
    };
    let events = projector::dryrun::events(&config.kafka.topic, samples);
    let outcome = projector::dryrun::run(&plugin, &events)?;
    println!("{}", serde_json::to_string_pretty(&outcome.report)?);
    if outcome.errors > 0 {
        anyhow::bail!("{} of {} events failed (see `error` above)", outcome.errors, events.len());
    }
    Ok(())
}

async fn wait(config: &Config, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut initial: Option<i64> = None;
    let mut started: Option<Instant> = None;
    let mut last_print = Instant::now();
    loop {
        let all = snapshot(config).await?;
        if let Some((failed, _)) = all.iter().find(|(d, _)| d.status == Status::Failed) {
            anyhow::bail!("projection {} failed: {}", failed.name, failed.last_error.clone().unwrap_or_default());
        }
        let running: Vec<&(Deployment, Progress)> = all.iter().filter(|(d, _)| d.status.runs() && !d.paused).collect();
        let applied: i64 = running.iter().map(|(_, p)| p.applied).sum();
        let lag: i64 = running.iter().map(|(_, p)| p.lag).sum();
        let building = running.iter().any(|(d, _)| d.status == Status::Building);
        let first = *initial.get_or_insert(applied);
        if started.is_none() && applied > first {
            started = Some(Instant::now());
        }
        if !running.is_empty() && lag == 0 && !building {
            let events = applied - first;
            match started {
                Some(t) if events > 0 => {
                    let seconds = t.elapsed().as_secs_f64().max(0.001);
                    let count = running.len() as f64;
                    println!(
                        "Caught up in {seconds:.2} s: {} projections applied {events} events \
                         ({:.0} topic events each): {:.0} events/s in total, {:.0} events/s per projection.",
                        running.len(),
                        events as f64 / count,
                        events as f64 / seconds,
                        events as f64 / count / seconds,
                    );
                }
                _ => println!("Caught up: nothing left to apply."),
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("still {lag} events behind after {timeout:?}");
        }
        if last_print.elapsed() >= Duration::from_secs(2) {
            for (d, p) in &running {
                eprintln!("  {} v{} [{}]: {} applied, lag {}", d.name, d.version, d.status, p.applied, p.lag);
            }
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
