//! Weir's container images as a cluster: three coordinators and three brokers started from
//! `localhost/weir/coordinator` and `localhost/weir/broker` (FROM scratch: the release binaries
//! and glibc, nonroot) on a private podman network, with librdkafka on the host as the client.
//!
//! ```text
//!   test process ── podman bridge 10.X.Y.1 ─┬─ coordinator-0  10.X.Y.10:9190 ┐ Raft peers by
//!   (librdkafka: Kafka                      ├─ coordinator-1  10.X.Y.11:9190 │ DNS name
//!    to IP:9092; gRPC                       ├─ coordinator-2  10.X.Y.12:9190 ┘ (aardvark-dns)
//!    Admin to IP:9190)                      ├─ broker-0       10.X.Y.20:9092 Kafka (advertised by IP),
//!                                           ├─ broker-1       10.X.Y.21       :9093 replication
//!                                           └─ broker-2       10.X.Y.22       (advertised by name)
//! ```
//!
//! The coordinators reach each other, and the brokers reach the coordinators and each other,
//! by container name only: a static glibc binary in an empty image resolving names through
//! the /etc/resolv.conf and /etc/hosts podman provides. The host cannot resolve those names,
//! so the brokers advertise their IPs to Kafka clients.
//!
//! Skips (with a message) only when podman is not installed and `WEIR_REQUIRE_PODMAN` is
//! unset; see `weir_e2e::podman` for which images run.
#![allow(clippy::unwrap_used)] // test code panics on purpose

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::time::{Duration, Instant};
use tonic::transport::Endpoint;
use weir_e2e::admin::create_topic_with;
use weir_e2e::cluster::{find_partition, summarize};
use weir_e2e::podman::{ContainerSpec, Images, PodmanNetwork, images, skip_reason};
use weir_e2e::wait_topic_leaders;
use weir_e2e::workload::{Workload, read_all, verify};
use weir_proto::v1::admin_client::AdminClient;
use weir_proto::v1::{DescribeClusterRequest, DescribeClusterResponse};

const COORDINATORS: u8 = 3;
const BROKERS: u8 = 3;
/// Ports of the images (the operator and the Helm chart use the same).
const COORDINATOR_PORT: u16 = 9190;
const KAFKA_PORT: u16 = 9092;
const INTERNAL_PORT: u16 = 9093;
/// Coordinator `i` is at 10.X.Y.(10 + i), broker `i` at 10.X.Y.(20 + i).
const COORDINATOR_HOST_FIRST: u8 = 10;
const BROKER_HOST_FIRST: u8 = 20;
const TOPIC: &str = "containers";
const PARTITIONS: i32 = 3;
/// One record every 2 ms, round-robin: about 170 records/s per partition.
const INTERVAL: Duration = Duration::from_millis(2);
/// Acknowledgements per partition that show the topic accepts writes.
const ACKS_FLOWING: usize = 50;
/// Short leases, as in the process cluster tests: failover in seconds.
const BROKER_SESSION_TIMEOUT_MS: u64 = 3000;
/// Containers start, elect a Raft leader and register the brokers.
const START: Duration = Duration::from_secs(60);
/// The lease, a Raft election, metadata propagation and a client's retry.
const FAILOVER: Duration = Duration::from_secs(30);
const FINISH: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);
const ADMIN_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const ADMIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

fn coordinator(i: u8) -> String {
    format!("coordinator-{i}")
}

fn broker(i: u8) -> String {
    format!("broker-{i}")
}

/// The cluster's network and the host's view of it.
struct Cluster {
    net: PodmanNetwork,
    rt: tokio::runtime::Runtime,
}

impl Cluster {
    fn start(images: &Images) -> anyhow::Result<Cluster> {
        let mut net = PodmanNetwork::new()?;
        println!(
            "network {} (10.X.Y = {}), images {} and {}",
            net.name(),
            net.ip(0),
            images.coordinator,
            images.broker
        );
        let peers = (0..COORDINATORS)
            .map(|i| format!("{i}={}:{COORDINATOR_PORT}", coordinator(i)))
            .collect::<Vec<_>>()
            .join(",");
        for i in 0..COORDINATORS {
            net.run(&ContainerSpec {
                name: coordinator(i),
                image: images.coordinator.clone(),
                host: COORDINATOR_HOST_FIRST + i,
                aliases: vec![coordinator(i)],
                args: [
                    "--id",
                    &i.to_string(),
                    "--peers",
                    &peers,
                    "--advertised-addr",
                    &format!("{}:{COORDINATOR_PORT}", coordinator(i)),
                    "--broker-session-timeout-ms",
                    &BROKER_SESSION_TIMEOUT_MS.to_string(),
                ]
                .map(String::from)
                .to_vec(),
                env: Vec::new(),
            })?;
        }
        let coordinators = (0..COORDINATORS)
            .map(|i| format!("{}:{COORDINATOR_PORT}", coordinator(i)))
            .collect::<Vec<_>>()
            .join(",");
        for i in 0..BROKERS {
            let ip = net.ip(BROKER_HOST_FIRST + i);
            net.run(&ContainerSpec {
                name: broker(i),
                image: images.broker.clone(),
                host: BROKER_HOST_FIRST + i,
                aliases: vec![broker(i)],
                args: [
                    "--id",
                    &i.to_string(),
                    "--coordinators",
                    &coordinators,
                    "--advertised-kafka-addr",
                    &format!("{ip}:{KAFKA_PORT}"),
                    "--advertised-internal-addr",
                    &format!("{}:{INTERNAL_PORT}", broker(i)),
                ]
                .map(String::from)
                .to_vec(),
                env: Vec::new(),
            })?;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("a runtime for the Admin client")?;
        Ok(Cluster { net, rt })
    }

    fn kafka_addr(&self, i: u8) -> String {
        format!("{}:{KAFKA_PORT}", self.net.ip(BROKER_HOST_FIRST + i))
    }

    fn bootstrap(&self) -> String {
        (0..BROKERS)
            .map(|i| self.kafka_addr(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Admin.DescribeCluster from coordinator `i`, by IP from the host.
    fn describe_via(&self, i: u8) -> anyhow::Result<DescribeClusterResponse> {
        let addr = format!(
            "http://{}:{COORDINATOR_PORT}",
            self.net.ip(COORDINATOR_HOST_FIRST + i)
        );
        self.rt.block_on(async {
            let channel = Endpoint::from_shared(addr)?
                .connect_timeout(ADMIN_CONNECT_TIMEOUT)
                .timeout(ADMIN_REQUEST_TIMEOUT)
                .connect()
                .await?;
            let resp = AdminClient::new(channel)
                .describe_cluster(DescribeClusterRequest {})
                .await?;
            anyhow::Ok(resp.into_inner())
        })
    }

    /// Admin.DescribeCluster from the first coordinator that answers.
    fn describe(&self) -> anyhow::Result<DescribeClusterResponse> {
        let mut errors = Vec::new();
        for i in 0..COORDINATORS {
            match self.describe_via(i) {
                Ok(d) => return Ok(d),
                Err(e) => errors.push(format!("{}: {e:#}", coordinator(i))),
            }
        }
        bail!("no coordinator answered: {}", errors.join("; "))
    }

    /// Polls DescribeCluster until `cond` returns `Some`, for at most `timeout`.
    fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&DescribeClusterResponse) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.describe() {
                Ok(d) => match cond(&d) {
                    Some(t) => return Ok(t),
                    None => summarize(&d),
                },
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until a coordinator other than `not` leads the quorum (ids start at 0).
    fn wait_coordinator_leader(&self, not: Option<i32>, timeout: Duration) -> anyhow::Result<i32> {
        self.wait_for("a coordinator leader", timeout, |d| {
            d.coordinator_leader.filter(|&l| Some(l) != not)
        })
    }

    /// Waits until the live brokers are registered and unfenced.
    fn wait_brokers_ready(&self, brokers: &[u8], timeout: Duration) -> anyhow::Result<()> {
        self.wait_for("every broker registered and unfenced", timeout, |d| {
            brokers
                .iter()
                .all(|&id| d.brokers.iter().any(|b| b.id == id as i32 && !b.fenced))
                .then_some(())
        })
    }

    /// Waits until every partition of `topic` has a leader and at least `n` replicas in sync.
    fn wait_isr(&self, topic: &str, n: usize, timeout: Duration) -> anyhow::Result<()> {
        self.wait_for(
            &format!("every partition of {topic} with a leader and {n} in sync"),
            timeout,
            |d| {
                (0..PARTITIONS)
                    .all(|p| {
                        find_partition(d, topic, p)
                            .is_some_and(|p| p.leader.is_some() && p.isr.len() >= n)
                    })
                    .then_some(())
            },
        )
    }

    /// Partition `partition`'s leader as Kafka clients see it, from the live brokers'
    /// Metadata, once it is a broker other than `not`.
    fn wait_kafka_leader(
        &self,
        live: &[u8],
        partition: i32,
        not: Option<i32>,
        timeout: Duration,
    ) -> anyhow::Result<i32> {
        let bootstrap = live
            .iter()
            .map(|&i| self.kafka_addr(i))
            .collect::<Vec<_>>()
            .join(",");
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("log_level", "0")
            .create()?;
        let deadline = Instant::now() + timeout;
        loop {
            let last = match client.fetch_metadata(Some(TOPIC), Duration::from_secs(1)) {
                Ok(md) => {
                    let leader = md
                        .topics()
                        .iter()
                        .find(|t| t.name() == TOPIC)
                        .and_then(|t| t.partitions().iter().find(|p| p.id() == partition))
                        .map(|p| p.leader());
                    match leader {
                        Some(l) if l >= 0 && Some(l) != not => return Ok(l),
                        other => format!("leader {other:?}"),
                    }
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                bail!(
                    "{TOPIC}/{partition}: no leader other than {not:?} in Kafka metadata within {timeout:?}: {last}"
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

/// Proves: the FROM-scratch images run a replicated cluster on a podman network (coordinators
/// and brokers finding each other by container name), a real Kafka client produces and
/// consumes through it, and after `podman kill` of partition 0's leader broker together with
/// the coordinators' Raft leader new leaders take over, every acknowledged record is read
/// back, and both containers, started again, rejoin (the broker back in every ISR, the
/// coordinator caught up).
#[test]
fn cluster_of_containers_survives_killed_leaders() {
    match skip_reason() {
        Ok(Some(why)) => {
            eprintln!("skipped cluster_of_containers_survives_killed_leaders: {why}");
            return;
        }
        Ok(None) => {}
        Err(e) => panic!("{e:#}"),
    }
    let images = images().unwrap();
    let t0 = Instant::now();
    let c = Cluster::start(&images).unwrap();
    let raft_leader = c.wait_coordinator_leader(None, START).unwrap();
    c.wait_brokers_ready(&[0, 1, 2], START).unwrap();
    println!(
        "3 coordinators (Raft leader {raft_leader}) and 3 brokers up in {:?}",
        t0.elapsed()
    );

    c.rt.block_on(create_topic_with(
        &c.bootstrap(),
        TOPIC,
        PARTITIONS,
        3,
        &[("min.insync.replicas", "2")],
    ))
    .unwrap();
    c.wait_isr(TOPIC, 3, START).unwrap();
    wait_topic_leaders(&c.bootstrap(), TOPIC, PARTITIONS as usize, START).unwrap();
    println!(
        "topic {TOPIC} created, 3 replicas in sync everywhere, at {:?}",
        t0.elapsed()
    );

    // Produce and consume before any fault.
    let w = Workload::start(&c.bootstrap(), TOPIC, PARTITIONS, INTERVAL).unwrap();
    w.wait_acks_everywhere(ACKS_FLOWING, Instant::now(), FAILOVER)
        .unwrap();
    let before = read_all(&c.bootstrap(), TOPIC, PARTITIONS, FINISH).unwrap();
    let read_before: usize = before.values().map(Vec::len).sum();
    assert!(
        read_before >= PARTITIONS as usize * ACKS_FLOWING,
        "consumed {read_before} records before the fault"
    );
    println!("{read_before} records produced and consumed before the fault");

    let old_leader = c.wait_kafka_leader(&[0, 1, 2], 0, None, FAILOVER).unwrap();
    let raft_leader = c.wait_coordinator_leader(None, FAILOVER).unwrap();
    let (dead_broker, dead_coordinator) =
        (broker(old_leader as u8), coordinator(raft_leader as u8));
    let fault_at = Instant::now();
    c.net.kill(&dead_broker).unwrap();
    c.net.kill(&dead_coordinator).unwrap();
    println!(
        "killed {dead_broker} (leader of partition 0) and {dead_coordinator} (Raft leader) in {:?}",
        fault_at.elapsed()
    );
    let live: Vec<u8> = (0..BROKERS).filter(|&i| i as i32 != old_leader).collect();
    let new_raft_leader = c
        .wait_coordinator_leader(Some(raft_leader), FAILOVER)
        .unwrap();
    println!(
        "coordinator-{new_raft_leader} leads the quorum after {:?}",
        fault_at.elapsed()
    );
    let new_leader = c
        .wait_kafka_leader(&live, 0, Some(old_leader), FAILOVER)
        .unwrap();
    println!(
        "broker-{new_leader} leads partition 0 after {:?}",
        fault_at.elapsed()
    );
    c.wait_brokers_ready(&live, FAILOVER).unwrap();
    // Writes are acknowledged again on every partition, with acks=all and min.insync.replicas=2
    // met by the two live brokers.
    w.wait_acks_everywhere(ACKS_FLOWING, Instant::now(), FAILOVER)
        .unwrap();
    println!(
        "every partition accepts writes again after {:?}",
        fault_at.elapsed()
    );

    // The same containers again (`podman start`: same writable layer, same address), as a
    // pod restarted on its volume.
    let restarted_at = Instant::now();
    c.net.start(&dead_coordinator).unwrap();
    c.net.start(&dead_broker).unwrap();
    c.wait_brokers_ready(&[0, 1, 2], FAILOVER).unwrap();
    c.wait_isr(TOPIC, 3, FAILOVER).unwrap();
    // The restarted coordinator has applied what the quorum committed while it was down, up
    // to the ISR that took the restarted broker back.
    let version = c.describe().unwrap().version;
    let deadline = Instant::now() + FAILOVER;
    loop {
        match c.describe_via(raft_leader as u8) {
            Ok(d) if d.coordinator_leader.is_some() && d.version >= version => break,
            other => assert!(
                Instant::now() < deadline,
                "restarted {dead_coordinator} did not reach metadata version {version} within {FAILOVER:?}: {:?}",
                other.map(|d| (d.version, summarize(&d)))
            ),
        }
        std::thread::sleep(POLL);
    }
    println!(
        "{dead_coordinator} and {dead_broker} started again; caught up, every replica in sync, after {:?}",
        restarted_at.elapsed()
    );
    w.wait_acks_everywhere(ACKS_FLOWING, Instant::now(), FAILOVER)
        .unwrap();

    let outcome = w.finish(FINISH).unwrap();
    println!("{}", outcome.report("containers", fault_at, Some(0)));
    let stored = read_all(&c.bootstrap(), TOPIC, PARTITIONS, FINISH).unwrap();
    let n = verify(&outcome, &stored).unwrap();
    assert!(
        outcome.failures.is_empty(),
        "{} records failed for good, e.g. {:?}",
        outcome.failures.len(),
        &outcome.failures[..outcome.failures.len().min(5)]
    );
    let exited = c.net.exited();
    assert!(
        exited.is_empty(),
        "containers exited on their own: {exited:?}"
    );
    println!(
        "{n} records stored, every one of the {} acknowledged ({} of them implicitly, offset unknown) exactly once and in order; test took {:?}",
        outcome.acks.len(),
        outcome.acks.iter().filter(|a| a.offset < 0).count(),
        t0.elapsed()
    );
}
