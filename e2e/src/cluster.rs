//! A replicated Weir cluster as real processes: `weir-coordinator`s and `weir-broker`s, each in
//! a network namespace of its own on a private [`Network`], so a test can kill, pause, restart
//! and cut off any one of them while librdkafka in the test process talks to the brokers.
//!
//! ```text
//!   test process ── bridge ─┬─ coordinator 1  10.X.Y.10:7000   (Raft, Admin, BrokerControl)
//!   (librdkafka,            ├─ coordinator 2  10.X.Y.11:7000
//!    Admin client)          ├─ coordinator 3  10.X.Y.12:7000
//!                           ├─ broker 1       10.X.Y.13:9092 Kafka, :7100 replication
//!                           ├─ broker 2       10.X.Y.14:9092 ...
//!                           └─ broker N
//! ```
//!
//! Data directories and logs live in a temporary directory. Each process' stdout and stderr
//! go to `logs/<node>.log` there, appended across restarts; when a test panics, dropping the
//! cluster prints what each node believes, the tail of every log and the bytes in every data
//! directory, and copies the logs to `$TMPDIR/weir-e2e-logs-*` (always, with
//! `WEIR_E2E_KEEP_LOGS=1`).
//!
//! Binaries: `$WEIR_COORDINATOR_BIN` and `$WEIR_BROKER_BIN` (relative paths are from the
//! workspace root), else the ones built with this test's profile, else `target/release`.

use crate::netns::{self, Network};
use crate::workspace_root;
use anyhow::{Context, bail};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use weir_proto::v1::admin_client::AdminClient;
use weir_proto::v1::{
    CreateTopicRequest, DescribeClusterRequest, DescribeClusterResponse, ElectLeadersRequest,
    ListReassignmentsRequest, Partition, ReassignPartitionRequest, ReplicaList, Topic,
    TopicPartitionRef,
};

pub const COORDINATOR_PORT: u16 = 7000;
pub const KAFKA_PORT: u16 = 9092;
pub const INTERNAL_PORT: u16 = 7100;
/// Lines of each log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;
/// How long one Admin request may take before the next coordinator is tried: a paused
/// coordinator accepts connections (the kernel does) but never answers.
const ADMIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const ADMIN_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long an Admin call keeps retrying on UNAVAILABLE before giving up.
const ADMIN_RETRY_FOR: Duration = Duration::from_secs(20);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A process of the cluster. Ids are the ones the processes are started with, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    Coordinator(i32),
    Broker(i32),
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Coordinator(id) => write!(f, "coordinator-{id}"),
            Node::Broker(id) => write!(f, "broker-{id}"),
        }
    }
}

/// What [`TestCluster::start`] starts.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub coordinators: usize,
    pub brokers: usize,
    /// The first broker's id; the others follow. 1 by default; 0 matches the broker ids a
    /// Kubernetes StatefulSet gives (its pod ordinals).
    pub first_broker_id: i32,
    /// `--broker-session-timeout-ms` of the coordinators: how long a broker that stopped
    /// heartbeating keeps its lease.
    pub broker_session_timeout_ms: u64,
    pub coordinator_args: Vec<String>,
    pub broker_args: Vec<String>,
    /// How long start-up may take, until every broker is registered and unfenced.
    pub start_timeout: Duration,
    /// Default: [`coordinator_bin`].
    pub coordinator_bin: PathBuf,
    /// Default: [`broker_bin`].
    pub broker_bin: PathBuf,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            coordinators: 3,
            brokers: 3,
            first_broker_id: 1,
            broker_session_timeout_ms: 3000,
            coordinator_args: Vec::new(),
            broker_args: Vec::new(),
            start_timeout: Duration::from_secs(60),
            coordinator_bin: coordinator_bin(),
            broker_bin: broker_bin(),
        }
    }
}

/// (topic, partition, leader, replicas, ISR) as a broker reports them to Kafka clients.
pub type KafkaPartitionView = (String, i32, i32, Vec<i32>, Vec<i32>);

/// A binary under test: `$env` (relative to the workspace root), else next to this test
/// executable's profile directory, else `target/release/<name>`.
pub fn bin_path(name: &str, env: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        return if p.is_absolute() {
            p
        } else {
            workspace_root().join(p)
        };
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| workspace_root().join("target/release").join(name))
}

pub fn coordinator_bin() -> PathBuf {
    bin_path("weir-coordinator", "WEIR_COORDINATOR_BIN")
}

pub fn broker_bin() -> PathBuf {
    bin_path("weir-broker", "WEIR_BROKER_BIN")
}

/// Why cluster tests cannot run here, if they cannot: not root, no iproute2, or binaries not
/// built while their environment variables are unset. With a variable set, a missing binary
/// is an error instead (scripts/test.sh sets them), so CI never skips these tests silently.
pub fn unavailable_reason() -> Option<String> {
    if !netns::available() {
        return Some("network namespaces need root and iproute2".into());
    }
    for (bin, env) in [
        (coordinator_bin(), "WEIR_COORDINATOR_BIN"),
        (broker_bin(), "WEIR_BROKER_BIN"),
    ] {
        if !bin.exists() && std::env::var_os(env).is_none() {
            return Some(format!(
                "{} is not built and ${env} is unset",
                bin.display()
            ));
        }
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Paused,
    /// Killed or never restarted: no process.
    Down,
}

#[derive(Debug)]
struct Proc {
    node: Node,
    host: usize,
    bin: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    state: State,
    starts: usize,
}

/// The cluster; see the module documentation. Dropping it kills every process and removes the
/// network, panicking test or not.
#[derive(Debug)]
pub struct TestCluster {
    procs: BTreeMap<Node, Proc>,
    /// Nodes whose host is cut off entirely (unreachable from the test process too).
    cut: HashSet<Node>,
    channels: HashMap<i32, Channel>,
    config: ClusterConfig,
    rt: tokio::runtime::Runtime,
    // Dropped after the processes are killed (in Drop::drop), in this order.
    net: Network,
    dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts the coordinators, waits for a Raft leader, starts the brokers and waits until
    /// every broker is registered and unfenced.
    pub fn start(config: ClusterConfig) -> anyhow::Result<TestCluster> {
        let mut cluster = TestCluster::prepare(config)?;
        let coordinators: Vec<Node> = cluster.coordinators().collect();
        for node in coordinators {
            cluster.spawn(node)?;
        }
        let timeout = cluster.config.start_timeout;
        cluster.wait_coordinator_leader(timeout)?;
        let brokers: Vec<Node> = cluster.brokers().collect();
        for node in brokers {
            cluster.spawn(node)?;
        }
        cluster.wait_brokers_ready(timeout)?;
        Ok(cluster)
    }

    /// Starts every process at once and waits for nothing: for stand-in binaries that only
    /// take the same arguments (the harness' own tests).
    pub fn start_unchecked(config: ClusterConfig) -> anyhow::Result<TestCluster> {
        let mut cluster = TestCluster::prepare(config)?;
        let nodes: Vec<Node> = cluster.procs.keys().copied().collect();
        for node in nodes {
            cluster.spawn(node)?;
        }
        Ok(cluster)
    }

    /// The network, directories and command lines; no process yet.
    fn prepare(config: ClusterConfig) -> anyhow::Result<TestCluster> {
        for bin in [&config.coordinator_bin, &config.broker_bin] {
            if !bin.exists() {
                bail!(
                    "{} does not exist: build it (cargo build --release -p weir-coordinator -p weir-broker) or set WEIR_COORDINATOR_BIN / WEIR_BROKER_BIN",
                    bin.display()
                );
            }
        }
        let dir = tempfile::Builder::new().prefix("weir-cluster-").tempdir()?;
        std::fs::create_dir_all(dir.path().join("logs"))?;
        let net = Network::new(config.coordinators + config.brokers)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("tokio runtime for the Admin client")?;

        let procs = processes(&config, &net, dir.path());

        Ok(TestCluster {
            procs,
            cut: HashSet::new(),
            channels: HashMap::new(),
            config,
            rt,
            net,
            dir,
        })
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    pub fn network(&self) -> &Network {
        &self.net
    }

    /// The temporary directory with every data directory and `logs/`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn coordinators(&self) -> impl Iterator<Item = Node> + '_ {
        self.procs
            .keys()
            .copied()
            .filter(|n| matches!(n, Node::Coordinator(_)))
    }

    pub fn brokers(&self) -> impl Iterator<Item = Node> + '_ {
        self.procs
            .keys()
            .copied()
            .filter(|n| matches!(n, Node::Broker(_)))
    }

    pub fn broker_ids(&self) -> Vec<i32> {
        self.brokers()
            .filter_map(|n| match n {
                Node::Broker(id) => Some(id),
                Node::Coordinator(_) => None,
            })
            .collect()
    }

    fn proc(&self, node: Node) -> &Proc {
        self.procs
            .get(&node)
            .unwrap_or_else(|| panic!("{node} is not in this cluster"))
    }

    fn proc_mut(&mut self, node: Node) -> &mut Proc {
        self.procs
            .get_mut(&node)
            .unwrap_or_else(|| panic!("{node} is not in this cluster"))
    }

    /// The network host index of `node`.
    pub fn host(&self, node: Node) -> usize {
        self.proc(node).host
    }

    /// `ip:9092` of broker `id`: its Kafka listener.
    pub fn kafka_addr(&self, id: i32) -> String {
        format!("{}:{KAFKA_PORT}", self.net.ip(self.host(Node::Broker(id))))
    }

    /// `ip:7000` of coordinator `id`.
    pub fn coordinator_addr(&self, id: i32) -> String {
        format!(
            "{}:{COORDINATOR_PORT}",
            self.net.ip(self.host(Node::Coordinator(id)))
        )
    }

    /// Every broker's Kafka listener, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.broker_ids()
            .into_iter()
            .map(|id| self.kafka_addr(id))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn log_path(&self, node: Node) -> PathBuf {
        self.proc(node).log.clone()
    }

    /// Everything `node` has written to stdout and stderr, over all its starts.
    pub fn log(&self, node: Node) -> String {
        std::fs::read_to_string(&self.proc(node).log).unwrap_or_default()
    }

    /// The process id of `node`, if it has a process.
    pub fn pid(&self, node: Node) -> Option<u32> {
        self.proc(node).child.as_ref().map(Child::id)
    }

    fn spawn(&mut self, node: Node) -> anyhow::Result<()> {
        let p = self.proc(node);
        assert!(p.child.is_none(), "{node} already has a process");
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log)
            .with_context(|| format!("opening {}", p.log.display()))?;
        writeln!(
            log,
            "==== e2e harness: start #{} of {node}: {} {}",
            p.starts + 1,
            p.bin.display(),
            p.args.join(" ")
        )?;
        let mut cmd = self.net.command(p.host, &p.bin);
        cmd.args(&p.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // The binaries read their flags from WEIR_* variables too: none leaks in from the test.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("WEIR_") && k != "WEIR_LOG" {
                cmd.env_remove(k);
            }
        }
        cmd.env("RUST_BACKTRACE", "1").env("NO_COLOR", "1");
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {node} ({})", p.bin.display()))?;
        let p = self.proc_mut(node);
        p.child = Some(child);
        p.state = State::Running;
        p.starts += 1;
        Ok(())
    }

    /// `kill -9`: the process dies with whatever it had in memory.
    pub fn kill9(&mut self, node: Node) -> anyhow::Result<()> {
        let p = self.proc_mut(node);
        let mut child = p
            .child
            .take()
            .with_context(|| format!("{node} has no process to kill"))?;
        p.state = State::Down;
        child.kill().with_context(|| format!("SIGKILL {node}"))?;
        child.wait().with_context(|| format!("reaping {node}"))?;
        Ok(())
    }

    /// SIGTERM (a broker's controlled shutdown), then waits up to `timeout` for the exit.
    pub fn stop(
        &mut self,
        node: Node,
        timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self
            .pid(node)
            .with_context(|| format!("{node} has no process to stop"))?;
        if self.proc(node).state == State::Paused {
            netns::signal(pid, "CONT")?;
        }
        netns::signal(pid, "TERM")?;
        let deadline = Instant::now() + timeout;
        let p = self.proc_mut(node);
        let child = p.child.as_mut().context("no child")?;
        loop {
            if let Some(status) = child.try_wait()? {
                p.child = None;
                p.state = State::Down;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("{node} did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOP: the process keeps its sockets and memory but does nothing, as in a long GC
    /// pause or a VM freeze. The kernel still completes TCP handshakes for it.
    pub fn pause(&mut self, node: Node) -> anyhow::Result<()> {
        let pid = self
            .pid(node)
            .with_context(|| format!("{node} has no process to pause"))?;
        netns::signal(pid, "STOP")?;
        self.proc_mut(node).state = State::Paused;
        Ok(())
    }

    /// SIGCONT after [`TestCluster::pause`].
    pub fn resume(&mut self, node: Node) -> anyhow::Result<()> {
        let pid = self
            .pid(node)
            .with_context(|| format!("{node} has no process to resume"))?;
        netns::signal(pid, "CONT")?;
        self.proc_mut(node).state = State::Running;
        Ok(())
    }

    /// Starts `node` again with the same arguments and data directory, after a `kill -9` if
    /// it still runs. Does not wait for it to be ready: use the `wait_*` methods.
    pub fn restart(&mut self, node: Node) -> anyhow::Result<()> {
        if self.proc(node).child.is_some() {
            self.kill9(node)?;
        }
        if let Node::Coordinator(id) = node {
            // A fresh channel: the old one may sit in reconnect back-off.
            self.channels.remove(&id);
        }
        self.spawn(node)
    }

    /// Cuts `node`'s host off from every other host and from the test process.
    pub fn cut(&mut self, node: Node) -> anyhow::Result<()> {
        self.net.cut(self.host(node))?;
        self.cut.insert(node);
        Ok(())
    }

    /// Undoes [`TestCluster::cut`].
    pub fn heal(&mut self, node: Node) -> anyhow::Result<()> {
        self.net.heal(self.host(node))?;
        self.cut.remove(&node);
        Ok(())
    }

    /// Drops all traffic between `node` and `others` (both ways); the test process still
    /// reaches `node`. Undone by [`TestCluster::unblock`].
    pub fn block(&mut self, node: Node, others: &[Node]) -> anyhow::Result<()> {
        let hosts: Vec<usize> = others.iter().map(|&o| self.host(o)).collect();
        self.net.block(self.host(node), &hosts)
    }

    /// Drops all traffic between `node` and every other node of the cluster, leaving only the
    /// test process able to talk to it.
    pub fn isolate_from_peers(&mut self, node: Node) -> anyhow::Result<()> {
        let others: Vec<Node> = self.procs.keys().copied().filter(|&n| n != node).collect();
        self.block(node, &others)
    }

    pub fn unblock(&mut self, node: Node) -> anyhow::Result<()> {
        self.net.unblock(self.host(node))
    }

    /// Nodes whose process exited on its own (a crash) while the test expected it to run.
    pub fn crashed(&mut self) -> Vec<(Node, std::process::ExitStatus)> {
        let mut out = Vec::new();
        for p in self.procs.values_mut() {
            if let Some(child) = p.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                out.push((p.node, status));
                p.child = None;
                p.state = State::Down;
            }
        }
        out
    }

    /// Fails when any process exited without the test asking for it.
    pub fn assert_no_crashes(&mut self) -> anyhow::Result<()> {
        let crashed = self.crashed();
        if !crashed.is_empty() {
            bail!("processes exited on their own: {crashed:?}");
        }
        Ok(())
    }

    // ------------------------------------------------------------------------------------
    // Admin API

    /// Runs `fut` on the cluster's runtime (for calls on an [`AdminClient`] from
    /// [`TestCluster::admin`]).
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.rt.block_on(fut)
    }

    /// Coordinators the test process can reach right now, in id order.
    fn reachable_coordinators(&self) -> Vec<i32> {
        self.procs
            .values()
            .filter(|p| p.state == State::Running && !self.cut.contains(&p.node))
            .filter_map(|p| match p.node {
                Node::Coordinator(id) => Some(id),
                Node::Broker(_) => None,
            })
            .collect()
    }

    fn channel(&mut self, id: i32) -> anyhow::Result<Channel> {
        if let Some(c) = self.channels.get(&id) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{}", self.coordinator_addr(id)))?
            .connect_timeout(ADMIN_CONNECT_TIMEOUT)
            .timeout(ADMIN_REQUEST_TIMEOUT);
        let channel = {
            let _guard = self.rt.enter();
            endpoint.connect_lazy()
        };
        self.channels.insert(id, channel.clone());
        Ok(channel)
    }

    /// An Admin client to a live coordinator (any one: they forward writes to the Raft leader).
    /// For calls that retry on UNAVAILABLE and move on to the next coordinator, use
    /// [`TestCluster::admin_call`].
    pub fn admin(&mut self) -> anyhow::Result<AdminClient<Channel>> {
        let id = *self
            .reachable_coordinators()
            .first()
            .context("no coordinator is running and reachable")?;
        Ok(AdminClient::new(self.channel(id)?))
    }

    /// Calls `f` with an Admin client, retrying for up to 20 s while coordinators answer
    /// UNAVAILABLE, time out or cannot be reached, each retry on the next live coordinator.
    /// Other statuses are returned as errors at once.
    pub fn admin_call<T, F, Fut>(&mut self, what: &str, mut f: F) -> anyhow::Result<T>
    where
        F: FnMut(AdminClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = Instant::now() + ADMIN_RETRY_FOR;
        let mut attempt = 0usize;
        let mut last = String::from("no coordinator reachable");
        loop {
            let ids = self.reachable_coordinators();
            if !ids.is_empty() {
                let id = ids[attempt % ids.len()];
                let client = AdminClient::new(self.channel(id)?);
                match self.rt.block_on(f(client)) {
                    Ok(resp) => return Ok(resp.into_inner()),
                    Err(s) if retriable(&s) => last = format!("coordinator {id}: {s}"),
                    Err(s) => bail!("{what} on coordinator {id}: {s}"),
                }
            }
            attempt += 1;
            if Instant::now() >= deadline {
                bail!("{what}: no answer within {ADMIN_RETRY_FOR:?}; last: {last}");
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Admin.DescribeCluster, from any live coordinator.
    pub fn describe(&mut self) -> anyhow::Result<DescribeClusterResponse> {
        self.admin_call("DescribeCluster", |mut a| async move {
            a.describe_cluster(DescribeClusterRequest {}).await
        })
    }

    /// Admin.DescribeCluster from one coordinator in particular, without retries.
    pub fn describe_via(&mut self, id: i32) -> anyhow::Result<DescribeClusterResponse> {
        let mut client = AdminClient::new(self.channel(id)?);
        let resp = self
            .rt
            .block_on(client.describe_cluster(DescribeClusterRequest {}))
            .with_context(|| format!("DescribeCluster on coordinator {id}"))?;
        Ok(resp.into_inner())
    }

    /// Polls DescribeCluster until `cond` returns `Some`, for at most `timeout`. Errors from the
    /// coordinators count as "not yet"; the last one and the last state seen are in the error.
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&DescribeClusterResponse) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.describe() {
                Ok(d) => {
                    if let Some(t) = cond(&d) {
                        return Ok(t);
                    }
                    summarize(&d)
                }
                Err(e) => format!("error: {e:#}"),
            };
            if Instant::now() >= deadline {
                bail!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits until the coordinators agree on a Raft leader; returns its id.
    pub fn wait_coordinator_leader(&mut self, timeout: Duration) -> anyhow::Result<i32> {
        self.wait_for("a coordinator leader", timeout, |d| {
            d.coordinator_leader.filter(|&l| l > 0)
        })
    }

    /// Waits until a coordinator other than `old` leads the quorum; returns its id.
    pub fn wait_coordinator_leader_not(
        &mut self,
        old: i32,
        timeout: Duration,
    ) -> anyhow::Result<i32> {
        self.wait_for(
            &format!("a coordinator leader other than {old}"),
            timeout,
            |d| d.coordinator_leader.filter(|&l| l > 0 && l != old),
        )
    }

    /// Waits until every broker of the cluster is registered and unfenced.
    pub fn wait_brokers_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let want = self.broker_ids();
        self.wait_for("every broker registered and unfenced", timeout, |d| {
            want.iter()
                .all(|id| d.brokers.iter().any(|b| b.id == *id && !b.fenced))
                .then_some(())
        })
    }

    /// Waits until broker `id` is fenced (its lease expired).
    pub fn wait_broker_fenced(&mut self, id: i32, timeout: Duration) -> anyhow::Result<()> {
        self.wait_for(&format!("broker {id} fenced"), timeout, |d| {
            d.brokers
                .iter()
                .any(|b| b.id == id && b.fenced)
                .then_some(())
        })
    }

    /// A partition as the coordinators see it now.
    pub fn partition(&mut self, topic: &str, partition: i32) -> anyhow::Result<Partition> {
        let d = self.describe()?;
        find_partition(&d, topic, partition)
            .cloned()
            .with_context(|| format!("{topic}/{partition} not in DescribeCluster"))
    }

    /// The current leader of a partition (an error when it has none).
    pub fn leader_of(&mut self, topic: &str, partition: i32) -> anyhow::Result<i32> {
        self.partition(topic, partition)?
            .leader
            .with_context(|| format!("{topic}/{partition} has no leader"))
    }

    /// Waits until the partition has a leader other than `old`; returns the new one.
    pub fn wait_leader_not(
        &mut self,
        topic: &str,
        partition: i32,
        old: i32,
        timeout: Duration,
    ) -> anyhow::Result<i32> {
        self.wait_for(
            &format!("{topic}/{partition} led by a broker other than {old}"),
            timeout,
            |d| {
                let p = find_partition(d, topic, partition)?;
                p.leader.filter(|&l| l != old)
            },
        )
    }

    /// Waits until broker `leader` leads the partition.
    pub fn wait_leader_is(
        &mut self,
        topic: &str,
        partition: i32,
        leader: i32,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_for(
            &format!("{topic}/{partition} led by {leader}"),
            timeout,
            |d| (find_partition(d, topic, partition)?.leader == Some(leader)).then_some(()),
        )
    }

    /// Waits until the partition has a leader and at least `n` replicas in sync.
    pub fn wait_isr(
        &mut self,
        topic: &str,
        partition: i32,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Partition> {
        self.wait_for(
            &format!("{topic}/{partition} with a leader and {n} replicas in sync"),
            timeout,
            |d| {
                let p = find_partition(d, topic, partition)?;
                (p.leader.is_some() && p.isr.len() >= n).then(|| p.clone())
            },
        )
    }

    /// Waits until every partition of `topic` has a leader and all its replicas in sync.
    pub fn wait_topic_in_sync(&mut self, topic: &str, timeout: Duration) -> anyhow::Result<Topic> {
        self.wait_for(&format!("every replica of {topic} in sync"), timeout, |d| {
            let t = d.topics.iter().find(|t| t.name == topic)?;
            (!t.partitions.is_empty()
                && t.partitions.iter().all(|p| {
                    p.leader.is_some()
                        && p.isr.len() == p.replicas.len()
                        && p.adding_replicas.is_empty()
                        && p.removing_replicas.is_empty()
                }))
            .then(|| t.clone())
        })
    }

    /// Creates a topic through Admin.CreateTopic (`assignment`: one replica list per
    /// partition, or empty for `partitions` × `replication_factor` placed by the
    /// coordinator), then waits until every replica is in sync and the brokers' Kafka metadata
    /// shows a leader for every partition.
    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        configs: &[(&str, &str)],
        assignment: &[Vec<i32>],
    ) -> anyhow::Result<Topic> {
        let req = CreateTopicRequest {
            name: name.to_string(),
            partitions: Some(partitions),
            replication_factor: Some(replication_factor),
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            assignment: assignment
                .iter()
                .map(|r| ReplicaList {
                    replicas: r.clone(),
                })
                .collect(),
            validate_only: false,
        };
        let resp = self.admin_call("CreateTopic", |mut a| {
            let req = req.clone();
            async move { a.create_topic(req).await }
        })?;
        if let Some(e) = resp.error.as_ref().filter(|e| e.code != 0) {
            bail!("CreateTopic {name}: error {} {}", e.code, e.message);
        }
        let topic = self.wait_topic_in_sync(name, Duration::from_secs(30))?;
        crate::wait_topic_leaders(
            &self.bootstrap(),
            name,
            topic.partitions.len(),
            Duration::from_secs(30),
        )?;
        Ok(topic)
    }

    /// Admin.ReassignPartition.
    pub fn reassign(
        &mut self,
        topic: &str,
        partition: i32,
        replicas: &[i32],
    ) -> anyhow::Result<()> {
        let req = ReassignPartitionRequest {
            topic: topic.to_string(),
            partition,
            replicas: replicas.to_vec(),
        };
        let resp = self.admin_call("ReassignPartition", |mut a| {
            let req = req.clone();
            async move { a.reassign_partition(req).await }
        })?;
        if let Some(e) = resp.error.filter(|e| e.code != 0) {
            bail!(
                "ReassignPartition {topic}/{partition}: error {} {}",
                e.code,
                e.message
            );
        }
        Ok(())
    }

    /// Admin.ListReassignments: (topic, partition) of every reassignment in progress.
    pub fn reassignments(&mut self) -> anyhow::Result<Vec<(String, i32)>> {
        let resp = self.admin_call("ListReassignments", |mut a| async move {
            a.list_reassignments(ListReassignmentsRequest {}).await
        })?;
        Ok(resp
            .reassignments
            .into_iter()
            .map(|r| (r.topic, r.partition))
            .collect())
    }

    /// Admin.ElectLeaders for one partition: its preferred replica leads again if in sync.
    pub fn elect_preferred_leader(&mut self, topic: &str, partition: i32) -> anyhow::Result<i32> {
        let req = ElectLeadersRequest {
            partitions: vec![TopicPartitionRef {
                topic: topic.to_string(),
                partition,
            }],
        };
        let resp = self.admin_call("ElectLeaders", |mut a| {
            let req = req.clone();
            async move { a.elect_leaders(req).await }
        })?;
        Ok(resp.elected)
    }

    /// The record batches broker `id` stores for a partition, read straight from its data
    /// directory: every `.log` segment of `logs/<topic>-<partition>` in base-offset order,
    /// concatenated (segments are batches back to back with no header of their own, so this
    /// does not depend on where segments were rolled). Empty when the broker hosts no replica.
    pub fn replica_log(&self, id: i32, topic: &str, partition: i32) -> anyhow::Result<Vec<u8>> {
        let dir = self
            .dir
            .path()
            .join(Node::Broker(id).to_string())
            .join("logs")
            .join(format!("{topic}-{partition}"));
        let mut segments: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        // 20-digit zero-padded base offsets: name order is offset order.
        segments.sort();
        let mut out = Vec::new();
        for seg in segments {
            out.extend(std::fs::read(&seg).with_context(|| format!("reading {}", seg.display()))?);
        }
        Ok(out)
    }

    /// Waits until every replica of every partition of `topic` (as the coordinators list
    /// them) stores byte-identical batches: followers copied the leader's log exactly and
    /// whatever a deposed leader had alone is gone. Call with the producers stopped. Returns
    /// the bytes each partition's replicas hold.
    pub fn wait_replicas_identical(
        &mut self,
        topic: &str,
        timeout: Duration,
    ) -> anyhow::Result<Vec<(i32, usize)>> {
        let deadline = Instant::now() + timeout;
        loop {
            let d = self.describe()?;
            let t = d
                .topics
                .iter()
                .find(|t| t.name == topic)
                .with_context(|| format!("{topic} not in DescribeCluster"))?;
            let mut differ = Vec::new();
            let mut sizes = Vec::new();
            for p in &t.partitions {
                let logs = p
                    .replicas
                    .iter()
                    .map(|&b| Ok((b, self.replica_log(b, topic, p.partition)?)))
                    .collect::<anyhow::Result<Vec<(i32, Vec<u8>)>>>()?;
                let (first, rest) = logs.split_first().context("a partition with no replica")?;
                sizes.push((p.partition, first.1.len()));
                if rest.iter().any(|(_, l)| l != &first.1) {
                    let at = |l: &[u8]| l.iter().zip(&first.1).position(|(a, b)| a != b);
                    differ.push(format!(
                        "{topic}/{}: (broker, bytes, first byte differing from broker {}) {:?}",
                        p.partition,
                        first.0,
                        logs.iter()
                            .map(|(b, l)| (*b, l.len(), at(l)))
                            .collect::<Vec<_>>()
                    ));
                }
            }
            if differ.is_empty() {
                return Ok(sizes);
            }
            if Instant::now() >= deadline {
                bail!(
                    "replicas still differ after {timeout:?}: {}",
                    differ.join("; ")
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Bytes of files in each directory (a partition, for a broker) under every node's data
    /// directory: shows at a glance whether the replicas of a partition kept up.
    pub fn data_summary(&self) -> String {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
            let mut here = 0;
            let mut files = false;
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                match e.file_type() {
                    Ok(t) if t.is_dir() => walk(root, &e.path(), out),
                    _ => {
                        files = true;
                        here += e.metadata().map(|m| m.len()).unwrap_or(0);
                    }
                }
            }
            if files {
                let rel = dir.strip_prefix(root).unwrap_or(dir);
                out.push((rel.display().to_string(), here));
            }
        }
        let mut out = String::new();
        for node in self.procs.keys() {
            let root = self.dir.path().join(node.to_string());
            let mut dirs = Vec::new();
            walk(&root, &root, &mut dirs);
            dirs.sort();
            out.push_str(&format!("{node}: {dirs:?}\n"));
        }
        out
    }

    /// What broker `id` itself tells Kafka clients: (topic, partition, leader, replicas, ISR)
    /// from a Metadata request to that broker alone. Compare with [`TestCluster::describe`]
    /// to see whether a broker's view of the metadata lags the coordinators'.
    pub fn kafka_metadata_of(&self, id: i32) -> anyhow::Result<Vec<KafkaPartitionView>> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let client: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.kafka_addr(id))
            .set("log_level", "0")
            .create()?;
        let md = client.fetch_metadata(None, Duration::from_secs(2))?;
        let mut out = Vec::new();
        for t in md.topics() {
            for p in t.partitions() {
                out.push((
                    t.name().to_string(),
                    p.id(),
                    p.leader(),
                    p.replicas().to_vec(),
                    p.isr().to_vec(),
                ));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The last `lines` lines of every log, headed by node name.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for p in self.procs.values() {
            let log = std::fs::read_to_string(&p.log).unwrap_or_default();
            let all: Vec<&str> = log.lines().collect();
            let from = all.len().saturating_sub(lines);
            out.push_str(&format!(
                "----- {} ({}, last {} of {} lines) -----\n",
                p.node,
                p.log.display(),
                all.len() - from,
                all.len()
            ));
            for l in &all[from..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

fn retriable(s: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        s.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}

/// A partition in a DescribeCluster answer.
pub fn find_partition<'a>(
    d: &'a DescribeClusterResponse,
    topic: &str,
    partition: i32,
) -> Option<&'a Partition> {
    d.topics
        .iter()
        .find(|t| t.name == topic)?
        .partitions
        .iter()
        .find(|p| p.partition == partition)
}

/// One line per broker and partition, for error messages.
pub fn summarize(d: &DescribeClusterResponse) -> String {
    let mut out = format!("coordinator leader {:?}; brokers", d.coordinator_leader);
    for b in &d.brokers {
        out.push_str(&format!(
            " {}{}",
            b.id,
            if b.fenced { "(fenced)" } else { "" }
        ));
    }
    for t in &d.topics {
        for p in &t.partitions {
            out.push_str(&format!(
                "; {}/{} replicas {:?} leader {:?} epoch {} isr {:?}",
                t.name, p.partition, p.replicas, p.leader, p.leader_epoch, p.isr
            ));
            if !p.adding_replicas.is_empty() || !p.removing_replicas.is_empty() {
                out.push_str(&format!(
                    " adding {:?} removing {:?}",
                    p.adding_replicas, p.removing_replicas
                ));
            }
        }
    }
    out
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            let crashed = self.crashed();
            if !crashed.is_empty() {
                eprintln!("processes that had exited on their own: {crashed:?}");
            }
            self.print_views();
        }
        for p in self.procs.values_mut() {
            if let Some(mut child) = p.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if panicking {
            eprintln!("{}", self.log_tails(LOG_TAIL_LINES));
            eprintln!("bytes in each data directory:\n{}", self.data_summary());
        }
        if panicking || std::env::var_os("WEIR_E2E_KEEP_LOGS").is_some() {
            // The temporary directory goes away with the cluster; the logs should not.
            let keep = std::env::temp_dir().join(format!(
                "weir-e2e-logs-{}-{}",
                std::process::id(),
                self.dir
                    .path()
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ));
            if std::fs::create_dir_all(&keep).is_ok() {
                for p in self.procs.values() {
                    let _ = std::fs::copy(&p.log, keep.join(format!("{}.log", p.node)));
                }
                eprintln!("full logs kept in {}", keep.display());
            }
        }
    }
}

impl TestCluster {
    /// Prints what each live coordinator and broker believes now (one attempt each, no
    /// retries): for a failed test, whether some node's view lags the others'.
    fn print_views(&mut self) {
        for id in self.reachable_coordinators() {
            match self.describe_via(id) {
                Ok(d) => eprintln!("coordinator {id}'s view: {}", summarize(&d)),
                Err(e) => eprintln!("coordinator {id}'s view: {e:#}"),
            }
        }
        for id in self.broker_ids() {
            let node = Node::Broker(id);
            if self.proc(node).state == State::Running && !self.cut.contains(&node) {
                match self.kafka_metadata_of(id) {
                    Ok(v) => eprintln!(
                        "broker {id}'s Kafka metadata (topic, partition, leader, replicas, isr): {v:?}"
                    ),
                    Err(e) => eprintln!("broker {id}'s Kafka metadata: {e:#}"),
                }
            }
        }
    }
}

/// The cluster's processes, not started: coordinators on the first hosts, then brokers.
fn processes(config: &ClusterConfig, net: &Network, dir: &std::path::Path) -> BTreeMap<Node, Proc> {
    let coordinator_addr = |i: usize| format!("{}:{COORDINATOR_PORT}", net.ip(i));
    let peers = (0..config.coordinators)
        .map(|i| format!("{}={}", i + 1, coordinator_addr(i)))
        .collect::<Vec<_>>()
        .join(",");
    let coordinators = (0..config.coordinators)
        .map(coordinator_addr)
        .collect::<Vec<_>>()
        .join(",");
    let mut procs = BTreeMap::new();
    for i in 0..config.coordinators {
        let node = Node::Coordinator(i as i32 + 1);
        let data = dir.join(node.to_string());
        let mut args = vec![
            "--id".to_string(),
            (i + 1).to_string(),
            "--data-dir".into(),
            data.display().to_string(),
            "--listen".into(),
            coordinator_addr(i),
            "--peers".into(),
            peers.clone(),
            "--broker-session-timeout-ms".into(),
            config.broker_session_timeout_ms.to_string(),
        ];
        args.extend(config.coordinator_args.iter().cloned());
        procs.insert(
            node,
            Proc {
                node,
                host: i,
                bin: config.coordinator_bin.clone(),
                args,
                log: dir.join("logs").join(format!("{node}.log")),
                child: None,
                state: State::Down,
                starts: 0,
            },
        );
    }
    for b in 0..config.brokers {
        let host = config.coordinators + b;
        let id = b as i32 + config.first_broker_id;
        let node = Node::Broker(id);
        let data = dir.join(node.to_string());
        let ip = net.ip(host);
        let mut args = vec![
            "--id".to_string(),
            id.to_string(),
            "--data-dir".into(),
            data.display().to_string(),
            "--kafka-addr".into(),
            format!("{ip}:{KAFKA_PORT}"),
            "--advertised-kafka-addr".into(),
            format!("{ip}:{KAFKA_PORT}"),
            "--internal-addr".into(),
            format!("{ip}:{INTERNAL_PORT}"),
            "--coordinators".into(),
            coordinators.clone(),
        ];
        args.extend(config.broker_args.iter().cloned());
        procs.insert(
            node,
            Proc {
                node,
                host,
                bin: config.broker_bin.clone(),
                args,
                log: dir.join("logs").join(format!("{node}.log")),
                child: None,
                state: State::Down,
                starts: 0,
            },
        );
    }
    procs
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Read;
    use std::net::TcpStream;
    use std::os::unix::fs::PermissionsExt;

    /// Takes the real binaries' arguments, listens on `--listen` or `--kafka-addr` and answers
    /// every connection with its `--id`.
    const STAND_IN: &str = r#"#!/usr/bin/env python3
import socket, sys
a = sys.argv[1:]
addr = a[a.index('--listen' if '--listen' in a else '--kafka-addr') + 1]
host, port = addr.rsplit(':', 1)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, int(port)))
s.listen()
print('stand-in listening on', addr, flush=True)
while True:
    c, _ = s.accept()
    c.sendall(a[a.index('--id') + 1].encode())
    c.close()
"#;

    fn ask(addr: &str) -> std::io::Result<String> {
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    fn wait_answer(addr: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match ask(addr) {
                Ok(got) if got == want => return,
                r => assert!(Instant::now() < deadline, "{addr}: {r:?}, want {want}"),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process plumbing with stand-in binaries: every node answers at its address from the
    /// test process; kill -9, restart, pause, resume, cut, heal and block act on the real
    /// process and host; dropping the cluster leaves no process behind.
    #[test]
    fn stand_ins_are_killed_paused_and_cut() {
        if !netns::available() {
            eprintln!("skipped: network namespaces need root and iproute2");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("stand-in");
        std::fs::write(&bin, STAND_IN).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut c = TestCluster::start_unchecked(ClusterConfig {
            brokers: 2,
            coordinator_bin: bin.clone(),
            broker_bin: bin,
            ..ClusterConfig::default()
        })
        .unwrap();
        for id in 1..=3 {
            wait_answer(&c.coordinator_addr(id), &id.to_string());
        }
        for id in 1..=2 {
            wait_answer(&c.kafka_addr(id), &id.to_string());
        }
        assert_eq!(c.bootstrap().split(',').count(), 2);
        let b1 = Node::Broker(1);
        let addr = c.kafka_addr(1);

        let pid = c.pid(b1).unwrap();
        c.kill9(b1).unwrap();
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "kill -9 reached the process"
        );
        assert!(ask(&addr).is_err());
        c.restart(b1).unwrap();
        wait_answer(&addr, "1");
        assert_eq!(c.log(b1).matches("stand-in listening").count(), 2);

        c.pause(b1).unwrap();
        assert!(ask(&addr).is_err(), "a paused process answered");
        c.resume(b1).unwrap();
        wait_answer(&addr, "1");

        c.cut(b1).unwrap();
        assert!(ask(&addr).is_err(), "a cut host answered");
        c.heal(b1).unwrap();
        wait_answer(&addr, "1");

        // Blocked from its peers, broker 1 still answers the test but not broker 2's host.
        c.isolate_from_peers(b1).unwrap();
        let from_peer = |c: &TestCluster| {
            netns::run(c.network().command(c.host(Node::Broker(2)), "python3").args([
                "-c",
                &format!(
                    "import socket; s=socket.create_connection(('{}', {KAFKA_PORT}), timeout=0.5); print(s.recv(8).decode())",
                    c.network().ip(c.host(b1))
                ),
            ]))
        };
        assert!(from_peer(&c).is_err(), "a peer got through the block");
        wait_answer(&addr, "1");
        c.unblock(b1).unwrap();
        assert_eq!(from_peer(&c).unwrap().trim(), "1");

        assert!(c.crashed().is_empty());
        let pids: Vec<u32> = c.procs.keys().filter_map(|&n| c.pid(n)).collect();
        assert_eq!(pids.len(), 5);
        drop(c);
        for pid in pids {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "{pid} outlived the cluster"
            );
        }
    }
}
