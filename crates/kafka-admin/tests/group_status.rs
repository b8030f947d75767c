//! `describe_group` and `list_groups` against a real broker process: `weir dev`, and the
//! reference Apache Kafka (scripts/kafka-reference.sh) when `WEIR_E2E_TARGETS` names it (the
//! default names both). A librdkafka consumer is the group member; it commits what it reads.
#![allow(clippy::unwrap_used)]

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tokio::task::block_in_place;
use weir_e2e::group::{Member, Tracker, member_config};
use weir_e2e::{Running, Target, WeirProcess, targets, wait_topic_leaders};
use weir_kafka_admin::{
    Client, ClientConfig, Error, GroupDescription, Offset, PartitionId, TopicPartition,
};

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 3;
const GROUP: &str = "billing";
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_group_status() {
    if targets().contains(&Target::Weir) {
        scenario(Target::Weir).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_group_status() {
    if targets().contains(&Target::Kafka) {
        scenario(Target::Kafka).await;
    }
}

/// Proves routing in a cluster: with three brokers (one `weir dev --brokers 3` process), the
/// coordinator is asked for the group and each partition's leader for its end offset, with
/// the partitions led by at least two brokers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_three_brokers() {
    if !targets().contains(&Target::Weir) {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let port = three_free_ports();
    let weir =
        block_in_place(|| WeirProcess::start(&dir.path().join("data"), port, &["--brokers", "3"]))
            .unwrap();
    let bootstrap = weir.bootstrap();
    const SIX: i32 = 6;
    weir_e2e::admin::create_topic(&bootstrap, TOPIC, SIX)
        .await
        .unwrap();
    block_in_place(|| wait_topic_leaders(&bootstrap, TOPIC, SIX as usize, WAIT)).unwrap();
    let leaders: BTreeSet<i32> = block_in_place(|| {
        let probe: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        let md = probe.fetch_metadata(Some(TOPIC), WAIT).unwrap();
        md.topics()[0]
            .partitions()
            .iter()
            .map(|p| p.leader())
            .collect()
    });
    assert!(leaders.len() >= 2, "leaders {leaders:?}");
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let mut ends = BTreeMap::new();
    let counts: Vec<(i32, usize)> = (0..SIX).map(|p| (p, 2 + p as usize)).collect();
    produce(&producer, &mut ends, &counts).await;

    let tracker = Tracker::new();
    let member = Member::start(
        "m1",
        &member_config(&bootstrap, GROUP),
        TOPIC,
        &tracker,
        Duration::from_millis(100),
    )
    .unwrap();
    block_in_place(|| tracker.wait_stable(&["m1"], SIX, WAIT));
    let client = Client::new(ClientConfig::new([bootstrap.clone()]));
    let d = wait_for(&client, "Stable with everything committed", |d| {
        d.state == "Stable" && committed(d) == ends
    })
    .await;
    assert_eq!(d.members[0].assignment.len(), SIX as usize);
    for p in &d.partitions {
        assert_eq!((p.end, p.lag), (Some(p.committed), Some(0)), "{p:?}");
    }
    block_in_place(|| member.stop(WAIT)).unwrap();
    eprintln!("three brokers: took {:?}", started.elapsed());
}

/// A port `p` with `p + 1` and `p + 2` free too, for `weir dev --brokers 3`.
fn three_free_ports() -> u16 {
    for _ in 0..100 {
        let p = weir_e2e::free_port();
        let free = |q: u16| std::net::TcpListener::bind(("127.0.0.1", q)).is_ok();
        if p < u16::MAX - 2 && free(p + 1) && free(p + 2) {
            return p;
        }
    }
    panic!("no three consecutive free loopback ports");
}

/// Proves, on one broker: an unknown group is GroupNotFound; a running member shows as Stable
/// with its client id and all three partitions, with committed = end and lag 0; after it
/// leaves and more records arrive, the group is Empty with the same committed offsets and the
/// new records as lag; ListGroups lists it.
async fn scenario(target: Target) {
    let started = Instant::now();
    let broker = block_in_place(|| Running::start(target)).unwrap();
    let bootstrap = broker.bootstrap();
    weir_e2e::admin::create_topic(&bootstrap, TOPIC, PARTITIONS)
        .await
        .unwrap();
    block_in_place(|| wait_topic_leaders(&bootstrap, TOPIC, PARTITIONS as usize, WAIT)).unwrap();
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    produce(&producer, &mut ends, &[(0, 4), (1, 5), (2, 6)]).await;

    let client = Client::new(ClientConfig::new([bootstrap.clone()]));

    let missing = client.describe_group("nobody-here").await;
    assert!(
        matches!(&missing, Err(Error::GroupNotFound { group }) if group == "nobody-here"),
        "{missing:?}"
    );

    let tracker = Tracker::new();
    let mut config = member_config(&bootstrap, GROUP);
    config.set("client.id", "status-test");
    let member = Member::start("m1", &config, TOPIC, &tracker, Duration::from_millis(100)).unwrap();
    block_in_place(|| {
        tracker.wait_stable(&["m1"], PARTITIONS, WAIT);
        tracker.wait_consumed(TOPIC, &BTreeMap::new(), &ends, WAIT);
    });
    let running = wait_for(&client, "Stable with everything committed", |d| {
        d.state == "Stable" && committed(d) == ends
    })
    .await;
    assert_eq!(running.group_id, GROUP);
    assert_eq!(running.protocol_type, "consumer");
    assert_eq!(running.protocol, "roundrobin");
    assert_eq!(running.coordinator.address(), bootstrap);
    assert_eq!(running.members.len(), 1, "{running:#?}");
    let m = &running.members[0];
    assert_eq!(m.client_id, "status-test");
    assert!(
        !m.member_id.is_empty() && !m.client_host.is_empty(),
        "{m:?}"
    );
    assert_eq!(m.group_instance_id, None);
    let all: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition {
            topic: TOPIC.into(),
            partition: PartitionId(p),
        })
        .collect();
    assert_eq!(m.assignment, all);
    for p in &running.partitions {
        assert_eq!(p.end, Some(p.committed), "{p:?}");
        assert_eq!(p.lag, Some(0), "{p:?}");
    }

    block_in_place(|| member.stop(WAIT)).unwrap();
    produce(&producer, &mut ends, &[(1, 3)]).await;
    let left = wait_for(&client, "Empty, with the new records as lag", |d| {
        d.state == "Empty" && d.partitions.get(1).and_then(|p| p.end) == Some(Offset(ends[&1]))
    })
    .await;
    assert!(left.members.is_empty(), "{left:#?}");
    let lags: Vec<(i32, i64, Option<i64>, Option<i64>)> = left
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition.get(),
                p.committed.get(),
                p.end.map(Offset::get),
                p.lag,
            )
        })
        .collect();
    assert_eq!(
        lags,
        [
            (0, 4, Some(4), Some(0)),
            (1, 5, Some(8), Some(3)),
            (2, 6, Some(6), Some(0))
        ]
    );

    let groups = client.list_groups().await.unwrap();
    let listed = groups
        .iter()
        .find(|g| g.group_id == GROUP)
        .unwrap_or_else(|| panic!("{GROUP} not listed: {groups:?}"));
    assert_eq!(listed.protocol_type, "consumer");
    assert_eq!(listed.state.as_deref(), Some("Empty"));
    assert_eq!(listed.coordinator, left.coordinator);

    kip848_group(&client, &bootstrap, ends.values().sum()).await;
    eprintln!("{target:?}: scenario took {:?}", started.elapsed());
}

/// Proves a KIP-848 group (`group.protocol=consumer`), which DescribeGroups does not describe
/// (Weir answers Dead, Kafka 4 GROUP_ID_NOT_FOUND), still shows its committed offsets and lag
/// while its member runs, as Dead without members: not GroupNotFound.
async fn kip848_group(client: &Client, bootstrap: &str, records: i64) {
    use rdkafka::consumer::CommitMode;
    use rdkafka::{Offset as RdOffset, TopicPartitionList};
    const GROUP_848: &str = "kip848";
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", GROUP_848)
        .set("group.protocol", "consumer")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("log_level", "4")
        .create()
        .unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut got = 0;
    block_in_place(|| {
        while got < records {
            assert!(
                Instant::now() < deadline,
                "{got} of {records} records consumed"
            );
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                m.unwrap();
                got += 1;
            }
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(TOPIC, 0, RdOffset::Offset(2))
            .unwrap();
        tpl.add_partition_offset(TOPIC, 1, RdOffset::Offset(3))
            .unwrap();
        consumer.commit(&tpl, CommitMode::Sync).unwrap();
    });
    let d = client.describe_group(GROUP_848).await.unwrap();
    assert_eq!((d.state.as_str(), d.members.len()), ("Dead", 0), "{d:#?}");
    let lags: Vec<(i32, i64, Option<i64>)> = d
        .partitions
        .iter()
        .map(|p| (p.partition.get(), p.committed.get(), p.lag))
        .collect();
    assert_eq!(lags, [(0, 2, Some(2)), (1, 3, Some(5))]);
    drop(consumer);
}

/// Produces `n` records to each `(partition, n)` and advances `ends` to one past the last.
async fn produce(
    producer: &FutureProducer,
    ends: &mut BTreeMap<i32, i64>,
    counts: &[(i32, usize)],
) {
    for &(partition, n) in counts {
        for i in 0..n {
            let payload = format!("record {i}");
            let delivery = producer
                .send(
                    FutureRecord::<(), _>::to(TOPIC)
                        .partition(partition)
                        .payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap();
            ends.insert(partition, delivery.offset + 1);
        }
    }
}

fn committed(d: &GroupDescription) -> BTreeMap<i32, i64> {
    d.partitions
        .iter()
        .filter(|p| p.topic == TOPIC)
        .map(|p| (p.partition.get(), p.committed.get()))
        .collect()
}

/// Describes the group until `done` holds; the member commits and the broker settles on their
/// own schedule. Fails with the last description after [`WAIT`].
async fn wait_for(
    client: &Client,
    what: &str,
    done: impl Fn(&GroupDescription) -> bool,
) -> GroupDescription {
    let deadline = Instant::now() + WAIT;
    loop {
        let last = client.describe_group(GROUP).await;
        match &last {
            Ok(d) if done(d) => return d.clone(),
            _ if Instant::now() >= deadline => {
                panic!("not {what} within {WAIT:?}; last: {last:#?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
