//! Apache Kafka brokers of a test's own, started through `scripts/kafka.sh` (the same jars,
//! configuration and start command as `scripts/services.sh`), so a test can SIGKILL, freeze
//! (SIGSTOP) and restart one without disturbing the others.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use projector::config::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// `scripts/kafka.sh` of this checkout.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh")
}

/// Runs one of Kafka's command-line tools (`TopicCommand`, `consumer.group.ConsumerGroupCommand`,
/// ...) from the broker's jars.
pub fn tool(class: &str, args: &[&str]) -> Output {
    Command::new("bash").arg(script()).arg("tool").arg(class).args(args).output().unwrap()
}

/// Waits until the brokers at `brokers` answer a metadata request.
pub fn wait_for_metadata(brokers: &str, timeout: Duration) {
    let consumer: BaseConsumer = projector::source::kafka::client_config(&KafkaConfig {
        brokers: brokers.into(),
        ..KafkaConfig::default()
    })
    .create()
    .unwrap();
    let deadline = Instant::now() + timeout;
    loop {
        match consumer.fetch_metadata(None, Duration::from_secs(2)) {
            Ok(metadata) if !metadata.brokers().is_empty() => return,
            outcome => assert!(
                Instant::now() < deadline,
                "the broker at {brokers} does not answer metadata requests: {:?}",
                outcome.err()
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One Apache Kafka process (broker and controller in one), data under its directory.
pub struct Broker {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl Broker {
    /// Formats a log directory under `dir` and starts a broker on a free port.
    pub fn start(dir: &Path) -> Broker {
        let port = crate::host::free_port();
        let controller = crate::host::free_port();
        let configured = Command::new("bash")
            .arg(script())
            .args(["configure", dir.to_str().unwrap(), &port.to_string(), &controller.to_string()])
            .status()
            .unwrap();
        assert!(configured.success(), "scripts/kafka.sh configure failed");
        let mut broker = Broker { child: None, dir: dir.to_path_buf(), port };
        broker.restart();
        broker
    }

    /// Starts the process again on the same log directory and ports (after [`Broker::kill`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the broker is running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("broker.log")).unwrap();
        let child = Command::new("bash")
            .arg(script())
            .arg("run")
            .arg(&self.dir)
            .env("PROJECTOR_KAFKA_HEAP", "384m")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for_metadata(&self.brokers(), Duration::from_secs(90));
    }

    /// `host:port` of the broker.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kafka settings for `topic` on this broker.
    pub fn kafka(&self, topic: &str) -> KafkaConfig {
        KafkaConfig { brokers: self.brokers(), topic: topic.into(), ..KafkaConfig::default() }
    }

    /// SIGKILL: the process dies at once, without a controlled shutdown.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGSTOP: the process stays, its sockets stay open, and nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`Broker::freeze`].
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A frozen process must be thawed to die of SIGKILL promptly.
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
        }
        self.kill();
    }
}
