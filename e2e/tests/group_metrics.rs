//! Consumer-group lag as Prometheus metrics, and committed offsets across a `kill -9`: `weir
//! dev` with `--metrics-addr`, a librdkafka group consumer that reads part of a topic and
//! commits, then `/metrics` scraped over a real socket.
#![allow(clippy::unwrap_used)] // test code panics on purpose

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use weir_e2e::{WeirProcess, free_port};

const TOPIC: &str = "lagging";
const GROUP: &str = "metrics-group";

fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(
        out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"),
        "{out}"
    );
    out
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(body: &str, series: &str) -> Option<i64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap()
}

/// Proves: after a group consumer reads and commits 10 of the 30 records of each of three
/// partitions, `/metrics` reports the committed offsets, a lag of 20 per partition (60 in
/// all, 20 at most), the group's state; and after `kill -9` and a restart the committed
/// offsets are still there and a new member resumes exactly from them.
#[test]
fn lag_metrics_and_committed_offsets_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let metrics = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics}");
    let mut weir = WeirProcess::start(
        &data,
        port,
        &["--metrics-addr", &metrics_addr, "--default-partitions", "3"],
    )
    .unwrap();
    let bootstrap = weir.bootstrap();

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .create()
        .unwrap();
    for p in 0..3 {
        for i in 0..30 {
            producer
                .send(
                    BaseRecord::to(TOPIC)
                        .partition(p)
                        .key(&format!("k{i}"))
                        .payload(&format!("{p}-{i}")),
                )
                .unwrap();
        }
    }
    producer.flush(Duration::from_secs(20)).unwrap();
    drop(producer);

    // Read the first 10 records of every partition, then commit exactly offset 10 of each.
    let c = consumer(&bootstrap);
    c.subscribe(&[TOPIC]).unwrap();
    let mut seen: BTreeMap<i32, usize> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.values().sum::<usize>() < 90 {
        assert!(Instant::now() < deadline, "consumed only {seen:?}");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            *seen.entry(m.partition()).or_default() += 1;
        }
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(TOPIC, p, Offset::Offset(10))
            .unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).unwrap();

    let lag =
        |p: i32| format!("weir_group_lag{{group=\"{GROUP}\",topic=\"{TOPIC}\",partition=\"{p}\"}}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let body = scrape(metrics);
        if sample(&body, &format!("weir_group_lag_sum{{group=\"{GROUP}\"}}")) == Some(60) {
            break body;
        }
        assert!(Instant::now() < deadline, "lag never reached 60:\n{body}");
        std::thread::park_timeout(Duration::from_millis(100));
    };
    for p in 0..3 {
        assert_eq!(sample(&body, &lag(p)), Some(20), "{body}");
        assert_eq!(
            sample(
                &body,
                &format!(
                    "weir_group_committed_offset{{group=\"{GROUP}\",topic=\"{TOPIC}\",partition=\"{p}\"}}"
                )
            ),
            Some(10)
        );
        assert_eq!(
            sample(
                &body,
                &format!("weir_partition_high_watermark{{topic=\"{TOPIC}\",partition=\"{p}\"}}")
            ),
            Some(30)
        );
    }
    assert_eq!(
        sample(&body, &format!("weir_group_lag_max{{group=\"{GROUP}\"}}")),
        Some(20)
    );
    assert_eq!(
        sample(&body, &format!("weir_group_members{{group=\"{GROUP}\"}}")),
        Some(1)
    );
    assert_eq!(
        sample(
            &body,
            &format!("weir_group_state{{group=\"{GROUP}\",state=\"Stable\"}}")
        ),
        Some(1)
    );
    drop(c);

    // The commit was acknowledged: it must survive kill -9.
    weir.kill9().unwrap();
    weir.restart().unwrap();
    let c = consumer(&weir.bootstrap());
    let mut wanted = TopicPartitionList::new();
    for p in 0..3 {
        wanted.add_partition(TOPIC, p);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let committed = loop {
        match c.committed_offsets(wanted.clone(), Duration::from_secs(5)) {
            Ok(t) => break t,
            Err(e) => assert!(
                Instant::now() < deadline,
                "committed offsets after restart: {e}"
            ),
        }
    };
    for p in 0..3 {
        assert_eq!(
            committed.find_partition(TOPIC, p).unwrap().offset(),
            Offset::Offset(10),
            "partition {p}"
        );
    }
    // A new member starts at the committed offsets: the first record of each partition is 10.
    c.subscribe(&[TOPIC]).unwrap();
    let mut first: BTreeMap<i32, i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while first.len() < 3 {
        assert!(Instant::now() < deadline, "resumed only {first:?}");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            first.entry(m.partition()).or_insert(m.offset());
        }
    }
    assert_eq!(first, BTreeMap::from([(0, 10), (1, 10), (2, 10)]));
}
