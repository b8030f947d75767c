//! Replication between brokers in one process: one coordinator, three brokers, real sockets
//! and real files. The process-level fault tests (kill -9, SIGSTOP, network cuts) are in
//! `e2e/tests/cluster_faults.rs`; these check the mechanics quickly and precisely.
#![allow(clippy::unwrap_used)]

use crate::common::{Client, batch};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use weir_broker::{Broker, BrokerConfig};
use weir_model::{Offset, Timestamp};

struct Node {
    addr: SocketAddr,
    internal: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

struct Cluster {
    dir: tempfile::TempDir,
    coordinator: Option<weir_coordinator::CoordinatorHandle>,
    nodes: Vec<Option<Node>>,
    lag_ms: u64,
}

impl Cluster {
    async fn start(brokers: usize, lag_ms: u64) -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("WEIR_LOG"))
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let coordinator = weir_coordinator::start(weir_coordinator::CoordinatorConfig {
            data_dir: dir.path().join("coordinator"),
            broker_session_timeout: Duration::from_millis(2_000),
            broker_heartbeat_interval: Duration::from_millis(200),
            ..Default::default()
        })
        .await
        .unwrap();
        let mut c = Cluster {
            dir,
            coordinator: Some(coordinator),
            nodes: (0..brokers).map(|_| None).collect(),
            lag_ms,
        };
        for id in 1..=brokers as i32 {
            c.start_broker(id).await;
        }
        c
    }

    fn broker_dir(&self, id: i32) -> PathBuf {
        self.dir.path().join(format!("broker-{id}"))
    }

    async fn start_broker(&mut self, id: i32) {
        let mut config = BrokerConfig::new(self.broker_dir(id), "127.0.0.1:0".parse().unwrap());
        config.node_id = id;
        config.coordinators = vec![self.coordinator.as_ref().unwrap().local_addr().to_string()];
        config.replica_lag_time_max_ms = self.lag_ms;
        config.controlled_shutdown_timeout_ms = 10_000;
        // Compacted topics here are cleaned within milliseconds, not Kafka's 15 s.
        config.log_cleaner.backoff_ms = 20;
        let broker = Broker::start(config).await.unwrap();
        let addr = broker.local_addr();
        let internal = broker.internal_addr();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            broker
                .serve(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        self.nodes[id as usize - 1] = Some(Node {
            addr,
            internal,
            stop,
            task,
        });
    }

    /// SIGTERM-like stop: controlled shutdown, then close.
    async fn stop_broker(&mut self, id: i32) {
        let node = self.nodes[id as usize - 1].take().unwrap();
        let _ = node.stop.send(());
        node.task.await.unwrap();
    }

    fn addr(&self, id: i32) -> SocketAddr {
        self.nodes[id as usize - 1].as_ref().unwrap().addr
    }

    fn any_addr(&self) -> SocketAddr {
        self.nodes.iter().flatten().next().unwrap().addr
    }

    /// Stops everything; the data directories stay until the cluster is dropped.
    async fn shutdown(&mut self) {
        for id in 1..=self.nodes.len() as i32 {
            if self.nodes[id as usize - 1].is_some() {
                self.stop_broker(id).await;
            }
        }
        if let Some(c) = self.coordinator.take() {
            c.shutdown().await;
        }
    }
}

async fn metadata(addr: SocketAddr, topic: &str) -> MetadataResponse {
    let mut c = Client::connect(addr).await;
    let req = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.into())))),
    ]));
    c.request(ApiKey::Metadata, 12, &req).await
}

/// (leader, isr) of partition 0, as a broker reports it.
async fn partition0(addr: SocketAddr, topic: &str) -> (i32, Vec<i32>) {
    let m = metadata(addr, topic).await;
    let p = &m.topics[0].partitions[0];
    (p.leader_id.0, p.isr_nodes.iter().map(|b| b.0).collect())
}

/// Polls until `ok` holds for partition 0 (a deadline, not a fixed sleep).
async fn wait_for(
    addr: SocketAddr,
    topic: &str,
    what: &str,
    ok: impl Fn(i32, &[i32]) -> bool,
) -> (i32, Vec<i32>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (leader, isr) = partition0(addr, topic).await;
        if ok(leader, &isr) {
            return (leader, isr);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: leader {leader}, isr {isr:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_rf3(addr: SocketAddr, topic: &str) {
    let mut c = Client::connect(addr).await;
    let req = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_num_partitions(1)
            .with_replication_factor(3)
            .with_configs(vec![
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("min.insync.replicas"))
                    .with_value(Some(StrBytes::from_static_str("2"))),
            ]),
    ]);
    let resp: CreateTopicsResponse = c.request(ApiKey::CreateTopics, 7, &req).await;
    assert_eq!(
        resp.topics[0].error_code, 0,
        "{:?}",
        resp.topics[0].error_message
    );
}

/// The bytes of a stopped broker's copy of `topic`-0, read from its files.
fn stored(dir: &std::path::Path, topic: &str) -> Vec<u8> {
    let mut log = weir_storage::PartitionLog::open(
        &dir.join("logs").join(format!("{topic}-0")),
        weir_storage::LogConfig::default(),
        Timestamp::now(),
    )
    .unwrap();
    let end = log.log_end_offset();
    let mut out = Vec::new();
    let mut at = Offset(0);
    while at < end {
        let r = log.read(at, 1 << 20, end, true).unwrap();
        let mut bytes = &r.bytes[..];
        while !bytes.is_empty() {
            let h = weir_storage::BatchHeader::parse(bytes).unwrap();
            at = h.last_offset().plus(1);
            out.extend_from_slice(&bytes[..h.size_bytes()]);
            bytes = &bytes[h.size_bytes()..];
        }
    }
    log.close().unwrap();
    out
}

/// Proves: acks=all is answered only once every ISR member has the batch, so after the leader
/// is stopped (controlled shutdown) a follower takes over with every acknowledged record, the
/// producer carries on there, and the two remaining replicas hold byte-identical logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acks_all_reaches_every_replica_and_a_follower_takes_over() {
    let mut cluster = Cluster::start(3, 30_000).await;
    create_rf3(cluster.any_addr(), "r").await;
    let (leader, _) = wait_for(cluster.any_addr(), "r", "an ISR of 3", |l, isr| {
        l > 0 && isr.len() == 3
    })
    .await;

    let mut c = Client::connect(cluster.addr(leader)).await;
    for i in 0..20 {
        let (err, base) = c
            .produce("r", 0, batch(10, 1_700_000_000_000 + i, Compression::None))
            .await;
        assert_eq!((err, base), (0, i * 10));
    }
    drop(c);
    cluster.stop_broker(leader).await;
    let (new_leader, _) = wait_for(cluster.any_addr(), "r", "a new leader", |l, _| {
        l > 0 && l != leader
    })
    .await;
    let mut c = Client::connect(cluster.addr(new_leader)).await;
    for i in 20..30 {
        let (err, base) = c
            .produce("r", 0, batch(10, 1_700_000_000_000 + i, Compression::None))
            .await;
        assert_eq!(
            (err, base),
            (0, i * 10),
            "the new leader has every acknowledged record"
        );
    }
    drop(c);
    let others: Vec<i32> = (1..=3).filter(|&b| b != leader).collect();
    cluster.shutdown().await;
    let a = stored(&cluster.broker_dir(others[0]), "r");
    let b = stored(&cluster.broker_dir(others[1]), "r");
    assert_eq!(a, b, "the two remaining replicas are byte-identical");
    let old = stored(&cluster.broker_dir(leader), "r");
    assert!(
        a.starts_with(&old),
        "the stopped leader's log is a prefix of the new one"
    );
    assert_eq!(
        old.len() * 3 / 2,
        a.len(),
        "20 of 30 equal-sized batches were written before the stop"
    );
}

/// Proves: a follower that stops fetching leaves the ISR after `replica.lag.time.max.ms`
/// (acks=all carries on with the two left, as min.insync.replicas=2 allows), and once it is
/// back it catches up, rejoins the ISR and holds the same bytes as the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lagging_follower_leaves_the_isr_and_rejoins_after_catching_up() {
    let mut cluster = Cluster::start(3, 1_000).await;
    create_rf3(cluster.any_addr(), "lag").await;
    let (leader, _) = wait_for(cluster.any_addr(), "lag", "an ISR of 3", |l, isr| {
        l > 0 && isr.len() == 3
    })
    .await;
    let follower = (1..=3).find(|&b| b != leader).unwrap();
    cluster.stop_broker(follower).await;
    wait_for(
        cluster.addr(leader),
        "lag",
        "the ISR to shrink",
        |_, isr| isr.len() == 2 && !isr.contains(&follower),
    )
    .await;

    let mut c = Client::connect(cluster.addr(leader)).await;
    for i in 0..50 {
        let (err, _) = c
            .produce("lag", 0, batch(20, 1_700_000_000_000 + i, Compression::Lz4))
            .await;
        assert_eq!(
            err, 0,
            "acks=all with two in-sync replicas of min.insync.replicas=2"
        );
    }
    drop(c);
    cluster.start_broker(follower).await;
    wait_for(
        cluster.addr(leader),
        "lag",
        "the follower to rejoin",
        |_, isr| isr.contains(&follower),
    )
    .await;
    cluster.shutdown().await;
    let l = stored(&cluster.broker_dir(leader), "lag");
    let f = stored(&cluster.broker_dir(follower), "lag");
    assert!(!l.is_empty());
    assert_eq!(l, f, "the rejoined follower holds the leader's bytes");
}

/// Proves: with one replica of three left, acks=all is refused with NOT_ENOUGH_REPLICAS (and
/// nothing is appended), while acks=1 still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acks_all_is_refused_below_min_insync_replicas() {
    let mut cluster = Cluster::start(3, 1_000).await;
    create_rf3(cluster.any_addr(), "few").await;
    let (leader, _) = wait_for(cluster.any_addr(), "few", "an ISR of 3", |l, isr| {
        l > 0 && isr.len() == 3
    })
    .await;
    for b in (1..=3).filter(|&b| b != leader) {
        cluster.stop_broker(b).await;
    }
    wait_for(cluster.addr(leader), "few", "an ISR of 1", |_, isr| {
        isr == [leader]
    })
    .await;
    let mut c = Client::connect(cluster.addr(leader)).await;
    let (err, _) = c
        .produce("few", 0, batch(5, 1_700_000_000_000, Compression::None))
        .await;
    assert_eq!(err, kafka_protocol::ResponseError::NotEnoughReplicas.code());
    let p = c.fetch("few", 0, 0, 0, 0).await;
    assert_eq!(p.high_watermark, 0, "the refused batch was not appended");
    cluster.shutdown().await;
}

/// A batch of one record per key `key-0..keys`, values naming the round.
fn keyed_batch(keys: usize, round: usize, compression: Compression) -> bytes::Bytes {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions};
    let records: Vec<Record> = (0..keys)
        .map(|k| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: kafka_protocol::records::TimestampType::Creation,
            offset: k as i64,
            sequence: k as i32 - 1,
            timestamp: Timestamp::now().get(),
            key: Some(bytes::Bytes::from(format!("key-{k}"))),
            value: Some(bytes::Bytes::from(format!("value-{k}-round-{round}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

/// Records in a replica's copy, read from its files: (offset, key, value).
fn stored_records(dir: &std::path::Path, topic: &str) -> Vec<(i64, String, String)> {
    let mut bytes = bytes::Bytes::from(stored(dir, topic));
    kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes)
        .unwrap()
        .into_iter()
        .flat_map(|set| set.records)
        .map(|r| {
            let s = |b: Option<bytes::Bytes>| String::from_utf8(b.unwrap().to_vec()).unwrap();
            (r.offset, s(r.key), s(r.value))
        })
        .collect()
}

/// Proves: a follower that was down while its leader compacted a topic catches up across the
/// gaps the cleaner left (fetching from inside a gap gets the next batch), reaches the
/// leader's log end and rejoins the ISR; its copy then holds the newest value of every key,
/// at the offsets they were written at.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_catches_up_on_a_compacted_leader_across_its_gaps() {
    const KEYS: usize = 4;
    const ROUNDS: usize = 150;
    let mut cluster = Cluster::start(3, 1_000).await;
    let topic = "compacted";
    let mut c = Client::connect(cluster.any_addr()).await;
    let configs = [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "2048"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("min.insync.replicas", "2"),
    ];
    let req = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_num_partitions(1)
            .with_replication_factor(3)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_static_str(k))
                            .with_value(Some(StrBytes::from_static_str(v)))
                    })
                    .collect(),
            ),
    ]);
    let resp: CreateTopicsResponse = c.request(ApiKey::CreateTopics, 7, &req).await;
    assert_eq!(resp.topics[0].error_code, 0);
    drop(c);
    let (leader, _) = wait_for(cluster.any_addr(), topic, "an ISR of 3", |l, isr| {
        l > 0 && isr.len() == 3
    })
    .await;
    let follower = (1..=3).find(|&b| b != leader).unwrap();
    cluster.stop_broker(follower).await;
    wait_for(
        cluster.addr(leader),
        topic,
        "the ISR to shrink",
        |_, isr| isr.len() == 2,
    )
    .await;
    let mut c = Client::connect(cluster.addr(leader)).await;
    let mut last_base = 0;
    for round in 0..ROUNDS {
        let (err, base) = c
            .produce(topic, 0, keyed_batch(KEYS, round, Compression::Lz4))
            .await;
        assert_eq!(err, 0, "round {round}");
        last_base = base;
    }
    let end = last_base + KEYS as i64;
    // Wait until the leader's cleaner has compacted: a fetch from 0 steps over a gap.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let p = c.fetch(topic, 0, 0, 0, 1).await;
        let mut recs = p.records.unwrap_or_default();
        let first = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut recs)
            .unwrap()
            .into_iter()
            .flat_map(|s| s.records)
            .next();
        if first.is_some_and(|r| r.offset > 0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the leader never compacted"
        );
    }
    drop(c);
    cluster.start_broker(follower).await;
    wait_for(
        cluster.addr(leader),
        topic,
        "the follower to rejoin",
        |_, isr| isr.contains(&follower),
    )
    .await;
    cluster.shutdown().await;
    let records = stored_records(&cluster.broker_dir(follower), topic);
    assert!(
        records.len() < KEYS * ROUNDS,
        "the follower copied a compacted log"
    );
    for w in records.windows(2) {
        assert!(w[0].0 < w[1].0, "offsets increase");
    }
    for (offset, key, value) in &records {
        let round = (offset / KEYS as i64) as usize;
        let k = (offset % KEYS as i64) as usize;
        assert_eq!(
            (key, value),
            (&format!("key-{k}"), &format!("value-{k}-round-{round}")),
            "offset {offset}"
        );
    }
    for k in 0..KEYS {
        let newest = records
            .iter()
            .rev()
            .find(|r| r.1 == format!("key-{k}"))
            .unwrap();
        assert_eq!(newest.2, format!("value-{k}-round-{}", ROUNDS - 1));
    }
    assert_eq!(records.last().unwrap().0, end - 1);
}

/// Proves: a replica fetch is taken only from a registered broker other than the leader, at
/// the epoch of its current registration. A fetch moves the high watermark and keeps its
/// sender in the ISR, so a forged one (a made-up or stale epoch) could keep a cut-off follower
/// "in sync" and let acks=all be answered with the data on fewer disks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_replica_fetches_are_refused() {
    use weir_proto::v1;
    let mut cluster = Cluster::start(3, 1_000).await;
    create_rf3(cluster.any_addr(), "forged").await;
    let (leader, _) = wait_for(cluster.any_addr(), "forged", "an ISR of 3", |l, isr| {
        l > 0 && isr.len() == 3
    })
    .await;
    let follower = (1..=3).find(|&b| b != leader).unwrap();
    let coordinator = cluster.coordinator.as_ref().unwrap().local_addr();
    let mut admin = v1::admin_client::AdminClient::connect(format!("http://{coordinator}"))
        .await
        .unwrap();
    let d = admin
        .describe_cluster(v1::DescribeClusterRequest {})
        .await
        .unwrap()
        .into_inner();
    let topic = d.topics.iter().find(|t| t.name == "forged").unwrap();
    let epoch_of = |id: i32| d.brokers.iter().find(|b| b.id == id).unwrap().epoch;
    let fetch = |replica_id: i32, broker_epoch: i64| v1::ReplicaFetchRequest {
        replica_id,
        broker_epoch,
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1 << 20,
        partitions: vec![v1::ReplicaFetchPartition {
            topic_id: topic.id.clone(),
            partition: 0,
            current_leader_epoch: topic.partitions[0].leader_epoch,
            fetch_offset: 0,
            max_bytes: 1 << 20,
        }],
    };
    let internal = cluster.nodes[leader as usize - 1]
        .as_ref()
        .unwrap()
        .internal;
    let mut replication =
        v1::replication_client::ReplicationClient::connect(format!("http://{internal}"))
            .await
            .unwrap();
    let refused = [
        (
            fetch(follower, epoch_of(follower) + 1),
            tonic::Code::FailedPrecondition,
        ),
        (fetch(follower, 0), tonic::Code::FailedPrecondition),
        (fetch(99, 1), tonic::Code::PermissionDenied),
        (
            fetch(leader, epoch_of(leader)),
            tonic::Code::InvalidArgument,
        ),
    ];
    for (req, code) in refused {
        let shown = (req.replica_id, req.broker_epoch);
        let status = replication
            .fetch(req)
            .await
            .expect_err("a forged fetch was taken");
        assert_eq!(status.code(), code, "{shown:?}: {status}");
    }
    // The follower's real epoch is taken.
    let ok = replication
        .fetch(fetch(follower, epoch_of(follower)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.partitions[0].error_code, 0);
    cluster.shutdown().await;
}
