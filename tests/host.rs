//! Runs the real `projector` binary as a child process: start, SIGTERM, SIGKILL.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `projector` binary: `$PROJECTOR_BIN`, or the one next to this test's target dir.
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("PROJECTOR_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/all-<hash> -> target/<profile>/projector
    let path = exe.parent().unwrap().parent().unwrap().join("projector");
    assert!(path.exists(), "{} is missing: build it first (cargo build --release -p projector-host)", path.display());
    path
}

/// The admin token every test host accepts.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// The read-only token every test host accepts.
pub const READ_TOKEN: &str = "test-read-token-0123456789";

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// How to start a host.
#[derive(Clone)]
pub struct HostConfig {
    /// PostgreSQL URL.
    pub db_url: String,
    /// Topic.
    pub topic: String,
    /// Plugin components to load.
    pub plugins: Vec<PathBuf>,
    /// Extra `PROJECTOR_*` variables.
    pub env: Vec<(String, String)>,
    /// Where its log goes.
    pub log: PathBuf,
    /// Plugin directory (created from `plugins`).
    pub dir: PathBuf,
}

impl HostConfig {
    /// A host over `plugins` writing to `db_url`, consuming `topic`.
    pub fn new(name: &str, db_url: &str, topic: &str, plugins: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(crate::unique(name));
        std::fs::create_dir_all(dir.join("plugins")).unwrap();
        for plugin in plugins {
            let source = PathBuf::from(plugin);
            std::fs::copy(&source, dir.join("plugins").join(source.file_name().unwrap())).unwrap();
        }
        HostConfig {
            db_url: db_url.into(),
            topic: topic.into(),
            plugins: plugins.iter().map(PathBuf::from).collect(),
            env: vec![
                // Groups are cluster-wide: a group per test keeps parallel tests apart.
                ("PROJECTOR_KAFKA__GROUP_PREFIX".into(), crate::unique("g")),
                ("PROJECTOR_ADMIN__LISTEN".into(), format!("127.0.0.1:{}", free_port())),
                ("PROJECTOR_QUERY__LISTEN".into(), format!("127.0.0.1:{}", free_port())),
                (
                    "PROJECTOR_ADMIN__TOKENS".into(),
                    format!(
                        r#"[{{name="test-admin", token="{ADMIN_TOKEN}"}}, {{name="test-reader", token="{READ_TOKEN}", read_only=true}}]"#
                    ),
                ),
            ],
            log: dir.join("host.log"),
            dir,
        }
    }

    /// Another instance of the same cluster: the same database, topic and consumer groups (and
    /// the same overrides), its own listeners, log and no plugin directory of its own.
    pub fn sibling(&self, name: &str) -> Self {
        let fresh = HostConfig::new(name, &self.db_url, &self.topic, &[]);
        let mut sibling = self.clone();
        sibling.plugins.clear();
        for key in ["PROJECTOR_ADMIN__LISTEN", "PROJECTOR_QUERY__LISTEN"] {
            let value = &fresh.env.iter().find(|(k, _)| k == key).expect("set in new").1;
            sibling = sibling.with(key, value);
        }
        HostConfig { log: fresh.log, dir: fresh.dir, ..sibling }
    }

    /// Adds (or replaces) a `PROJECTOR_*` override.
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }

    /// The base URL of the query API.
    pub fn query_url(&self) -> String {
        let listen = &self.env.iter().find(|(k, _)| k == "PROJECTOR_QUERY__LISTEN").expect("set in new").1;
        format!("http://{listen}")
    }

    /// The base URL of the admin API.
    pub fn admin_url(&self) -> String {
        let listen = &self.env.iter().find(|(k, _)| k == "PROJECTOR_ADMIN__LISTEN").expect("set in new").1;
        format!("http://{listen}")
    }
}

/// The compiled-artifact cache every test host shares.
fn artifact_cache() -> PathBuf {
    std::env::temp_dir().join("projector-test-cache")
}

/// Compiles `plugin` into [`artifact_cache`] with `projector precompile` (the host's own engine
/// configuration), once per test process and one plugin at a time: a host then loads it from
/// the cache, so a cold machine's compile (a minute or more for a Python or JavaScript
/// component when parallel tests compile the same one) stays out of the time a test gives a
/// host to catch up.
fn compiled(plugin: &std::path::Path) {
    use std::io::Write as _;
    static DONE: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if done.iter().any(|p| p == plugin) {
        return;
    }
    let mut child = Command::new(binary())
        .arg("precompile")
        .arg("--cache-dir")
        .arg(artifact_cache())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&std::fs::read(plugin).unwrap()).unwrap();
    let output = child.wait_with_output().unwrap();
    // A component the host refuses is some tests' point: the host reports it, not this.
    if !output.status.success() {
        eprintln!("precompiling {} failed: {}", plugin.display(), String::from_utf8_lossy(&output.stderr));
    }
    done.push(plugin.to_path_buf());
}

/// A running host process.
pub struct Host {
    child: Child,
    config: HostConfig,
}

impl Host {
    /// Starts `projector run`, its plugins compiled into the artifact cache first.
    pub fn start(config: &HostConfig) -> Host {
        for plugin in &config.plugins {
            compiled(plugin);
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&config.log).unwrap();
        let mut command = Command::new(binary());
        command
            .arg("run")
            .env("PROJECTOR_POSTGRES__URL", &config.db_url)
            .env("PROJECTOR_KAFKA__BROKERS", crate::brokers())
            .env("PROJECTOR_KAFKA__TOPIC", &config.topic)
            .env("PROJECTOR_PLUGINS__DIR", config.dir.join("plugins"))
            .env("PROJECTOR_PLUGINS__CACHE_DIR", artifact_cache())
            .env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn,sqlx::postgres::notice=warn")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        for (key, value) in &config.env {
            command.env(key, value);
        }
        Host { child: command.spawn().unwrap(), config: config.clone() }
    }

    /// CPU time the process itself has used so far (user + system; not its children), from
    /// `/proc/<pid>/stat`.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name, which is in parentheses: utime and stime are the 14th
        // and 15th fields of the line.
        let rest: Vec<u64> =
            stat.rsplit_once(')').unwrap().1.split_whitespace().skip(11).take(2).map(|f| f.parse().unwrap()).collect();
        let ticks: u64 = rest.iter().sum();
        // USER_HZ is 100 on Linux.
        Duration::from_millis(ticks * 10)
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM and waits for the exit; returns whether it exited successfully.
    pub fn terminate(mut self, timeout: Duration) -> bool {
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("host did not stop within {timeout:?} after SIGTERM; log: {}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGSTOP: the process is frozen, its connections stay open and nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`Host::freeze`].
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(sent.success(), "kill {signal} failed");
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The end of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.config.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.config.log).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Already gone is fine: a test may have killed it.
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
