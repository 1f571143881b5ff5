//! PostgreSQL clusters of a test's own, started through the functions of `scripts/services.sh`
//! (the same binaries, `initdb` and start command as the demo and the test services), so a test
//! can stop and restart one under a running host without disturbing the shared server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `scripts/services.sh` of this checkout.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh")
}

/// How a server stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// `pg_ctl -m fast`: connections are terminated, open transactions rolled back, a
    /// checkpoint written (what a restart for maintenance does).
    Fast,
    /// `pg_ctl -m immediate`: the server dies without a checkpoint and replays its WAL at the
    /// next start (what a crash of the database server looks like).
    Immediate,
}

/// One PostgreSQL cluster of a test's own, data under a temporary directory removed on drop.
pub struct OwnServer {
    state: PathBuf,
    port: u16,
    running: bool,
}

impl OwnServer {
    /// Creates a cluster in a fresh directory and starts it on a free port.
    pub fn start() -> OwnServer {
        let state = std::env::temp_dir().join(crate::unique("pg"));
        let mut server = OwnServer { state, port: crate::host::free_port(), running: false };
        server.start_again();
        server
    }

    /// Starts the server again on the same data directory and port (after [`OwnServer::stop`]).
    pub fn start_again(&mut self) {
        assert!(!self.running, "the server is running");
        self.services("start_postgres");
        self.running = true;
    }

    /// Stops the server; connections to it fail until [`OwnServer::start_again`].
    pub fn stop(&mut self, how: Stop) {
        assert!(self.running, "the server is not running");
        match how {
            Stop::Fast => self.services("stop_postgres"),
            Stop::Immediate => self.services(STOP_IMMEDIATE),
        }
        self.running = false;
    }

    /// Stops and starts the server.
    pub fn restart(&mut self, how: Stop) {
        self.stop(how);
        self.start_again();
    }

    /// Admin URL of the server (its `postgres` database).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates a fresh database on this server.
    pub async fn create_db(&self, prefix: &str) -> crate::TestDb {
        crate::TestDb::create_on(&self.admin_url(), prefix).await
    }

    /// Runs shell code after sourcing `scripts/services.sh` with this server's state directory
    /// and port, asserting it succeeds.
    fn services(&self, code: &str) {
        assert!(
            self.run(code),
            "scripts/services.sh: {code} failed; see {} and {}",
            self.state.join("services.log").display(),
            self.state.join("pg/server.log").display()
        );
    }

    /// [`OwnServer::services`] returning whether it succeeded; its output goes to
    /// `services.log` in the state directory.
    fn run(&self, code: &str) -> bool {
        let Ok(log) = std::fs::create_dir_all(&self.state)
            .and_then(|()| std::fs::OpenOptions::new().create(true).append(true).open(self.state.join("services.log")))
        else {
            return false;
        };
        let Ok(err) = log.try_clone() else { return false };
        Command::new("bash")
            .arg("-c")
            // Not the script's own name as `$0`: sourced, it only defines its functions.
            .arg(format!(r#"source "$1" && {code}"#))
            .arg("projector-tests")
            .arg(script())
            .env("PROJECTOR_STATE_DIR", &self.state)
            .env("PROJECTOR_PG_PORT", self.port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .status()
            .is_ok_and(|status| status.success())
    }
}

/// Stops the server at once, whatever state its data is in.
const STOP_IMMEDIATE: &str = r#"as_postgres "$(pg_bin)/pg_ctl" -D "$STATE/pg" -m immediate -w stop >/dev/null"#;

impl Drop for OwnServer {
    /// Stops the server; removes its directory unless the test failed (kept for inspection).
    fn drop(&mut self) {
        if self.running && !self.run(STOP_IMMEDIATE) {
            eprintln!("could not stop the PostgreSQL server of {}", self.state.display());
            return;
        }
        if std::thread::panicking() {
            eprintln!("PostgreSQL data and log kept in {}", self.state.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.state);
        }
    }
}
