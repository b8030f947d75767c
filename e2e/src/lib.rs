//! Helpers for end-to-end tests: `weir dev` and the reference Apache Kafka as real processes
//! on loopback, and librdkafka clients pointed at either.
//!
//! Tests get a [`Target`] (Weir or Kafka) and run the same client code against both, so a
//! difference between the two shows up as a test that passes on one and fails on the other.
//!
//! A replicated cluster is a different animal: [`cluster::TestCluster`] runs coordinators and
//! brokers as processes in network namespaces of their own ([`netns`]), so a test can kill,
//! pause and cut them off; [`workload`] is the producer that writes through such faults and the
//! check that what it was acknowledged is what the cluster stores. [`podman`] runs the same
//! cluster from Weir's container images, as containers on a podman network.

pub mod admin;
pub mod cluster;
pub mod group;
pub mod netns;
pub mod podman;
pub mod workload;

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root (this crate lives in `<root>/e2e`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The `weir` binary under test: `$WEIR_BIN` (relative to the workspace root), or the one built with the same profile as this
/// test (`target/<profile>/weir`).
pub fn weir_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WEIR_BIN") {
        // Tests run in the crate's directory; a relative path means one from the workspace root.
        let p = PathBuf::from(p);
        return if p.is_absolute() {
            p
        } else {
            workspace_root().join(p)
        };
    }
    // The test executable is target/<profile>/deps/<name>; the binary sits in target/<profile>.
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(|d| d.join("weir")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| workspace_root().join("target/debug/weir"))
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Waits until a Kafka-compatible broker at `bootstrap` answers a metadata request.
pub fn wait_ready(bootstrap: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "0")
        .create()
        .context("creating a probe client")?;
    loop {
        match consumer.fetch_metadata(None, Duration::from_millis(500)) {
            Ok(md) if !md.brokers().is_empty() => return Ok(()),
            _ if Instant::now() >= deadline => {
                bail!("{bootstrap} did not answer within {timeout:?}")
            }
            _ => {}
        }
    }
}

/// Waits until the Kafka metadata from `bootstrap` shows `topic` with `partitions` partitions,
/// each with a leader.
pub fn wait_topic_leaders(
    bootstrap: &str,
    topic: &str,
    partitions: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "0")
        .create()
        .context("creating a probe client")?;
    loop {
        let last = match consumer.fetch_metadata(Some(topic), Duration::from_millis(1000)) {
            Ok(md) => {
                let t = md.topics().iter().find(|t| t.name() == topic);
                match t {
                    Some(t)
                        if t.error().is_none()
                            && t.partitions().len() == partitions
                            && t.partitions()
                                .iter()
                                .all(|p| p.leader() >= 0 && p.error().is_none()) =>
                    {
                        return Ok(());
                    }
                    Some(t) => format!(
                        "error {:?}, partitions (id, leader, error) {:?}",
                        t.error(),
                        t.partitions()
                            .iter()
                            .map(|p| (p.id(), p.leader(), p.error()))
                            .collect::<Vec<_>>()
                    ),
                    None => "topic not in metadata".into(),
                }
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            bail!(
                "{topic} has no leader for every partition at {bootstrap} within {timeout:?}: {last}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `weir dev` as a child process.
#[derive(Debug)]
pub struct WeirProcess {
    pub child: Child,
    pub port: u16,
    pub data_dir: PathBuf,
    pub extra_args: Vec<String>,
}

impl WeirProcess {
    /// Starts `weir dev` with its data in `data_dir` on `port` and waits until it answers.
    pub fn start(data_dir: &Path, port: u16, extra_args: &[&str]) -> anyhow::Result<WeirProcess> {
        let bin = weir_bin();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("log"))
            .context("opening the weir log file")?;
        let child = Command::new(&bin)
            .arg("dev")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--kafka-addr")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra_args)
            // Kafka's default delays a new group's first rebalance by 3 s to collect members;
            // tests start their members together and wait on the assignment instead. (An
            // environment variable, not a flag: a `weir` without groups ignores it.)
            .env("WEIR_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut p = WeirProcess {
            child,
            port,
            data_dir: data_dir.to_path_buf(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        if let Err(e) = wait_ready(&p.bootstrap(), Duration::from_secs(30)) {
            let _ = p.child.kill();
            let _ = p.child.wait();
            let log = std::fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default();
            bail!("{e}; weir's output:\n{log}");
        }
        Ok(p)
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `kill -9`: no flush, no clean-shutdown marker.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        self.child.kill().context("SIGKILL weir")?;
        self.child.wait().context("reaping weir")?;
        Ok(())
    }

    /// Starts again on the same port and data directory.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let args: Vec<&str> = self.extra_args.iter().map(String::as_str).collect();
        let next = WeirProcess::start(&self.data_dir, self.port, &args)?;
        *self = next;
        Ok(())
    }
}

impl Drop for WeirProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The reference Apache Kafka (KRaft, single node) from `scripts/kafka-reference.sh`.
#[derive(Debug)]
pub struct KafkaProcess {
    data_dir: tempfile::TempDir,
    port: u16,
    pub bootstrap: String,
}

impl KafkaProcess {
    pub fn start() -> anyhow::Result<KafkaProcess> {
        let data_dir = tempfile::tempdir()?;
        let port = free_port();
        let k = KafkaProcess {
            data_dir,
            port,
            bootstrap: format!("127.0.0.1:{port}"),
        };
        k.run_start()?;
        Ok(k)
    }

    fn run_start(&self) -> anyhow::Result<()> {
        let script = workspace_root().join("scripts/kafka-reference.sh");
        let out = Command::new("bash")
            .arg(&script)
            .args(["start", "--port", &self.port.to_string(), "--data-dir"])
            .arg(self.data_dir.path())
            .stderr(Stdio::inherit())
            .output()
            .context("running scripts/kafka-reference.sh start")?;
        if !out.status.success() {
            bail!("reference Kafka did not start ({})", out.status);
        }
        Ok(())
    }

    /// The broker's process id, from the pid file the script keeps.
    fn pid(&self) -> anyhow::Result<u32> {
        let file = self.data_dir.path().join("kafka.pid");
        let pid = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        pid.trim()
            .parse()
            .with_context(|| format!("pid {pid:?} in {}", file.display()))
    }

    /// `kill -9` of the broker; returns once the process is gone (or a zombie).
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        let pid = self.pid()?;
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -KILL {pid} failed ({status})");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        // The broker is not our child (the script starts it with setsid), so it is reaped by
        // whoever adopted it: gone, or a zombie until then. Either way its sockets are closed.
        while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        }) {
            if Instant::now() >= deadline {
                bail!("Kafka (pid {pid}) still runs 10 s after SIGKILL");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Starts the broker again on the same port and data directory, after [`KafkaProcess::kill9`].
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.run_start()
    }
}

impl Drop for KafkaProcess {
    fn drop(&mut self) {
        let script = workspace_root().join("scripts/kafka-reference.sh");
        let _ = Command::new("bash")
            .arg(&script)
            .arg("stop")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .status();
    }
}

/// Which broker a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Weir,
    Kafka,
}

/// The targets selected by `WEIR_E2E_TARGETS` (default `weir,kafka`).
pub fn targets() -> Vec<Target> {
    let raw = std::env::var("WEIR_E2E_TARGETS").unwrap_or_else(|_| "weir,kafka".into());
    raw.split(',')
        .filter_map(|t| match t.trim() {
            "weir" => Some(Target::Weir),
            "kafka" => Some(Target::Kafka),
            _ => None,
        })
        .collect()
}

/// A running broker of either kind; dropped, it stops.
#[derive(Debug)]
pub enum Running {
    Weir(WeirProcess, tempfile::TempDir),
    Kafka(KafkaProcess),
}

impl Running {
    pub fn start(target: Target) -> anyhow::Result<Running> {
        Ok(match target {
            Target::Weir => {
                let dir = tempfile::tempdir()?;
                let p = WeirProcess::start(&dir.path().join("data"), free_port(), &[])?;
                Running::Weir(p, dir)
            }
            Target::Kafka => Running::Kafka(KafkaProcess::start()?),
        })
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Running::Weir(p, _) => p.bootstrap(),
            Running::Kafka(k) => k.bootstrap.clone(),
        }
    }

    /// `kill -9` of the broker process.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        match self {
            Running::Weir(p, _) => p.kill9(),
            Running::Kafka(k) => k.kill9(),
        }
    }

    /// Starts the broker again on the same address and data, after [`Running::kill9`].
    pub fn restart(&mut self) -> anyhow::Result<()> {
        match self {
            Running::Weir(p, _) => p.restart(),
            Running::Kafka(k) => k.restart(),
        }
    }
}
