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
    let consumer: BaseConsumer =
        projector::source::kafka::client_config(&KafkaConfig { brokers: brokers.into(), ..KafkaConfig::default() })
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
        Broker::start_advertising(dir, port, port)
    }

    /// [`Broker::start`] on `port`, telling clients to connect to `advertised` (a proxy).
    pub fn start_advertising(dir: &Path, port: u16, advertised: u16) -> Broker {
        let controller = crate::host::free_port();
        let configured = Command::new("bash")
            .arg(script())
            .args(["configure", dir.to_str().unwrap(), &port.to_string(), &controller.to_string()])
            .arg(advertised.to_string())
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
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).stderr(Stdio::null()).status();
        }
        self.kill();
    }
}

/// A TCP proxy in front of a broker that can make the group coordinator stop answering while
/// the broker goes on serving metadata, fetches and produce requests: what a starved or wedged
/// coordinator looks like to a consumer. No local engine can be told to do that, hence a proxy.
///
/// librdkafka talks to the coordinator on a connection of its own. While the proxy is
/// silenced, a connection that sends a group request (OffsetCommit, JoinGroup, Heartbeat,
/// LeaveGroup, SyncGroup) stops being forwarded in both directions; other connections are not
/// touched. [`CoordinatorGate::speak`] forwards what was held and lets everything through again.
pub struct CoordinatorGate {
    /// The port clients connect to.
    pub port: u16,
    silent: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

/// Kafka API keys of the group membership and offset commit requests.
const GROUP_REQUESTS: [i16; 5] = [8, 11, 12, 13, 14];

impl CoordinatorGate {
    /// Starts forwarding `port` (on 127.0.0.1) to the broker at `upstream`.
    pub async fn start(port: u16, upstream: u16) -> CoordinatorGate {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let (silent, _) = tokio::sync::watch::channel(false);
        let silent = std::sync::Arc::new(silent);
        let gate = silent.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { continue };
                tokio::spawn(relay(client, server, gate.subscribe()));
            }
        });
        CoordinatorGate { port, silent }
    }

    /// From now on, the coordinator does not answer.
    pub fn silence(&self) {
        self.silent.send_replace(true);
    }

    /// The coordinator answers again, starting with what it held.
    pub fn speak(&self) {
        self.silent.send_replace(false);
    }
}

/// Waits while the gate is silenced.
async fn pass(gate: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = gate.wait_for(|silent| !*silent).await;
}

async fn relay(client: tokio::net::TcpStream, server: tokio::net::TcpStream, gate: tokio::sync::watch::Receiver<bool>) {
    let coordinator = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Either side closing ends the relay (dropping both connections).
    tokio::select! {
        _ = requests(client_read, server_write, coordinator.clone(), gate.clone()) => {}
        _ = responses(server_read, client_write, coordinator, gate) => {}
    }
}

/// Client to broker, request by request: a 4-byte length, then the frame, whose first two
/// bytes are the API key.
async fn requests(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    coordinator: std::sync::Arc<std::sync::atomic::AtomicBool>,
    mut gate: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let mut length = [0u8; 4];
        from.read_exact(&mut length).await?;
        let mut frame = vec![0u8; u32::from_be_bytes(length) as usize];
        from.read_exact(&mut frame).await?;
        if frame.len() >= 2 && GROUP_REQUESTS.contains(&i16::from_be_bytes([frame[0], frame[1]])) {
            coordinator.store(true, Ordering::Release);
        }
        if coordinator.load(Ordering::Acquire) {
            pass(&mut gate).await;
        }
        to.write_all(&length).await?;
        to.write_all(&frame).await?;
    }
}

/// Broker to client, held while the connection is the coordinator's and the gate is silent.
async fn responses(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    coordinator: std::sync::Arc<std::sync::atomic::AtomicBool>,
    mut gate: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = from.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        if coordinator.load(std::sync::atomic::Ordering::Acquire) {
            pass(&mut gate).await;
        }
        to.write_all(&buffer[..read]).await?;
    }
}
