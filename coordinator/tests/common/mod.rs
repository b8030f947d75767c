//! Helpers shared by the coordinator's integration tests: clusters on loopback, gRPC clients,
//! fake brokers, and waiting on a condition with a deadline.

#![allow(dead_code)] // each test binary uses a subset

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
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
            (d.coordinator_leader >= 0 && !d.cluster_id.is_empty()).then_some(d)
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

pub fn create_topic_request(name: &str, partitions: i32, rf: i32) -> pb::CreateTopicRequest {
    pb::CreateTopicRequest {
        name: name.to_string(),
        partitions,
        replication_factor: rf,
        configs: Default::default(),
        assignment: Vec::new(),
        validate_only: false,
    }
}
