//! Helpers shared by the coordinator's integration tests: clusters on loopback, gRPC clients,
//! fake brokers, and waiting on a condition with a deadline.

#![allow(dead_code)] // each test binary uses a subset
#![allow(clippy::unwrap_used)] // test code panics on purpose

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tonic::transport::Channel;
use weir_coordinator::{CoordinatorConfig, CoordinatorHandle};
use weir_proto::v1 as pb;
use weir_proto::v1::admin_client::AdminClient;
use weir_proto::v1::broker_control_client::BrokerControlClient;

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until exactly one coordinator leads and all agree on it; returns its index.
pub async fn wait_for_leader(cluster: &[CoordinatorHandle]) -> usize {
    wait_for("one agreed leader", Duration::from_secs(20), || {
        let leaders: Vec<Option<u64>> = cluster.iter().map(|h| h.leader()).collect();
        let leading: Vec<usize> = (0..cluster.len())
            .filter(|i| cluster[*i].is_leader())
            .collect();
        async move {
            let first = leaders[0]?;
            (leaders.iter().all(|l| *l == Some(first)) && leading.len() == 1).then(|| leading[0])
        }
    })
    .await
}

/// Fast Raft timings for tests on loopback.
pub fn test_config(id: u64, dir: &Path) -> CoordinatorConfig {
    CoordinatorConfig {
        id,
        data_dir: dir.join(format!("c{id}")),
        raft_heartbeat_interval: Duration::from_millis(50),
        election_timeout_min: Duration::from_millis(300),
        election_timeout_max: Duration::from_millis(600),
        ..CoordinatorConfig::default()
    }
}

/// Starts `n` coordinators in this process as one quorum, with `tweak` applied to each config.
pub async fn start_cluster(
    n: u64,
    dir: &Path,
    tweak: impl Fn(&mut CoordinatorConfig),
) -> Vec<CoordinatorHandle> {
    let mut listeners = Vec::new();
    let mut peers = BTreeMap::new();
    for id in 1..=n {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        peers.insert(id, l.local_addr().unwrap().to_string());
        listeners.push((id, l));
    }
    let mut handles = Vec::new();
    for (id, listener) in listeners {
        let mut config = test_config(id, dir);
        config.peers = peers.clone();
        tweak(&mut config);
        handles.push(
            weir_coordinator::start_with_listener(config, listener)
                .await
                .unwrap(),
        );
    }
    handles
}

pub async fn admin(addr: impl std::fmt::Display) -> AdminClient<Channel> {
    AdminClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

pub async fn control(addr: impl std::fmt::Display) -> BrokerControlClient<Channel> {
    BrokerControlClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

/// Waits until the coordinator at `addr` answers and reports a leader and a cluster id.
pub async fn wait_ready(addr: &str) -> pb::DescribeClusterResponse {
    wait_for(
        "a leader and a cluster id",
        Duration::from_secs(15),
        || async {
            let d = describe(addr).await?;
            (d.coordinator_leader.is_some() && !d.cluster_id.is_empty()).then_some(d)
        },
    )
    .await
}

/// Registers a fake broker through the coordinator at `addr`, retrying while there is no
/// leader yet; returns its epoch.
pub async fn register_broker(addr: &str, id: i32) -> i64 {
    wait_for(
        "broker registration",
        Duration::from_secs(15),
        || async move {
            let mut client = BrokerControlClient::connect(format!("http://{addr}"))
                .await
                .ok()?;
            let r = client
                .register(pb::RegisterBrokerRequest {
                    broker_id: id,
                    kafka_addr: format!("127.0.0.1:{}", 9000 + id),
                    internal_addr: format!("127.0.0.1:{}", 19000 + id),
                    rack: None,
                    incarnation: format!("incarnation-{id}"),
                    directory_id: format!("directory-{id}"),
                    endpoints: Vec::new(),
                })
                .await
                .ok()?
                .into_inner();
            assert!(r.error.is_none(), "registration refused: {:?}", r.error);
            assert!(!r.cluster_id.is_empty());
            Some(r.broker_epoch)
        },
    )
    .await
}

/// One heartbeat claiming to have caught up with the broker's own registration.
pub async fn heartbeat(
    client: &mut BrokerControlClient<Channel>,
    id: i32,
    epoch: i64,
) -> Result<pb::BrokerHeartbeatResponse, tonic::Status> {
    client
        .heartbeat(pb::BrokerHeartbeatRequest {
            broker_id: id,
            broker_epoch: epoch,
            metadata_version: epoch,
        })
        .await
        .map(|r| r.into_inner())
}

/// Heartbeats until the broker is unfenced.
pub async fn heartbeat_until_unfenced(addr: &str, id: i32, epoch: i64) {
    let client = control(addr).await;
    wait_for("the broker to be unfenced", Duration::from_secs(15), || {
        let mut client = client.clone();
        async move {
            let r = heartbeat(&mut client, id, epoch).await.ok()?;
            assert!(r.error.is_none(), "heartbeat refused: {:?}", r.error);
            (!r.fenced).then_some(())
        }
    })
    .await
}

/// A fake broker that heartbeats every 200 ms until the task is aborted.
pub fn spawn_heartbeats(addr: String, id: i32, epoch: i64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut client = control(&addr).await;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            let _ = heartbeat(&mut client, id, epoch).await;
        }
    })
}

pub async fn describe(addr: &str) -> Option<pb::DescribeClusterResponse> {
    let mut client = AdminClient::connect(format!("http://{addr}")).await.ok()?;
    client
        .describe_cluster(pb::DescribeClusterRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// `None`: the cluster's default.
pub fn create_topic_request(
    name: &str,
    partitions: Option<i32>,
    rf: Option<i32>,
) -> pb::CreateTopicRequest {
    pb::CreateTopicRequest {
        name: name.to_string(),
        partitions,
        replication_factor: rf,
        configs: Default::default(),
        assignment: Vec::new(),
        validate_only: false,
    }
}

/// One `weir-coordinator` process with fast Raft timings, logging to `<dir>/c<id>.log.<start>`;
/// killed when dropped so a failing test leaves nothing behind.
pub struct Proc {
    pub id: u64,
    pub addr: String,
    pub dir: PathBuf,
    peers: String,
    args: Vec<String>,
    child: Option<Child>,
    starts: u32,
}

impl Proc {
    /// A coordinator (not started) with data in `<dir>/c<id>`, `--peers peers` and `args`.
    pub fn new(id: u64, addr: &str, dir: &Path, peers: &str, args: &[String]) -> Proc {
        Proc {
            id,
            addr: addr.to_string(),
            dir: dir.join(format!("c{id}")),
            peers: peers.to_string(),
            args: args.to_vec(),
            child: None,
            starts: 0,
        }
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.dir.with_extension(format!("log.{start}"))
    }

    pub fn start(&mut self) {
        self.starts += 1;
        let log = File::create(self.log_path(self.starts)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_weir-coordinator"))
            .args(["--id", &self.id.to_string()])
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--listen", &self.addr, "--peers", &self.peers])
            .args(["--raft-heartbeat-interval-ms", "50"])
            .args(["--election-timeout-min-ms", "300"])
            .args(["--election-timeout-max-ms", "600"])
            .args(&self.args)
            .env("WEIR_LOG", "info")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Sends `signal` (`TERM`, `STOP`, `CONT`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("running");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        self.child.take().expect("running").wait().unwrap()
    }

    /// The log of the latest start.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A loopback address with a port that was free a moment ago.
pub fn free_port_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}
