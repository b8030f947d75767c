//! librdkafka (through the `rdkafka` crate) against Weir and against the reference Kafka:
//! admin, an idempotent producer, a consumer with manual assignment, seeks by offset and time.
#![allow(clippy::unwrap_used)] // test code panics on purpose

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use weir_e2e::admin::create_topic;
use weir_e2e::{Running, Target, targets};

fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // librdkafka wants a group id even for assign(); nothing joins or commits with it.
        .set("group.id", "weir-e2e-unused")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer")
}

/// (partition, offset, key, value, timestamp, header count)
type Read = (i32, i64, Option<Vec<u8>>, Vec<u8>, i64, usize);

/// Reads `count` records from the assigned partitions, failing after `timeout`.
fn read_n(c: &BaseConsumer, count: usize, timeout: Duration) -> Vec<Read> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "read {} of {count} records before the deadline",
            out.len()
        );
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            out.push((
                m.partition(),
                m.offset(),
                m.key().map(|k| k.to_vec()),
                m.payload().unwrap_or_default().to_vec(),
                m.timestamp().to_millis().unwrap_or(-1),
                m.headers().map_or(0, |h| h.count()),
            ));
        }
    }
    out
}

async fn idempotent_produce_and_assign(target: Target) {
    let broker = Running::start(target).expect("broker starts");
    let bootstrap = broker.bootstrap();
    let topic = "rdk-idem";
    create_topic(&bootstrap, topic, 3)
        .await
        .expect("topic created");

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .create()
        .expect("producer");
    let base_ts = 1_700_000_000_000i64;
    let n = 3000usize;
    let mut deliveries = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("key-{}", i % 50);
        let value = format!("value-{i}");
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&value)
            .timestamp(base_ts + i as i64)
            .headers(OwnedHeaders::new().insert(Header {
                key: "i",
                value: Some(&i.to_string()),
            }));
        deliveries.push(producer.send_result(record).expect("enqueue"));
    }
    let mut placed: HashMap<String, i32> = HashMap::new();
    for d in deliveries {
        d.await.expect("delivery future").expect("delivered");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");

    let c = consumer(&bootstrap);
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).expect("assign");
    let records = read_n(&c, n, Duration::from_secs(30));
    let mut seen = vec![false; n];
    let mut last_offset: HashMap<i32, i64> = HashMap::new();
    for (p, off, key, value, ts, headers) in &records {
        let i: usize = String::from_utf8_lossy(value)
            .trim_start_matches("value-")
            .parse()
            .expect("value");
        assert!(!seen[i], "record {i} read twice");
        seen[i] = true;
        assert_eq!(*ts, base_ts + i as i64, "CreateTime kept");
        assert_eq!(*headers, 1);
        let key = String::from_utf8(key.clone().expect("key")).expect("utf8");
        // The default partitioner sends a key to one partition, always.
        assert_eq!(*placed.entry(key).or_insert(*p), *p);
        if let Some(prev) = last_offset.insert(*p, *off) {
            assert!(*off > prev, "offsets increase within partition {p}");
        }
    }
    assert!(seen.iter().all(|s| *s), "every record read");

    // Watermarks and seeks: by offset, then by timestamp.
    let (low, high) = c
        .fetch_watermarks(topic, 0, Duration::from_secs(5))
        .expect("watermarks");
    assert_eq!(low, 0);
    assert!(high > 10);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(7))
        .unwrap();
    c.assign(&tpl).expect("assign at 7");
    let first = read_n(&c, 1, Duration::from_secs(10));
    assert_eq!((first[0].0, first[0].1), (0, 7), "seek by offset");

    let target_ts = base_ts + 1500;
    let mut q = TopicPartitionList::new();
    for p in 0..3 {
        q.add_partition_offset(topic, p, Offset::Offset(target_ts))
            .unwrap();
    }
    let found = c
        .offsets_for_times(q, Duration::from_secs(5))
        .expect("offsets_for_times");
    c.assign(&found).expect("assign at times");
    let after = read_n(&c, 3, Duration::from_secs(10));
    for r in &after {
        assert!(
            r.4 >= target_ts,
            "seek by timestamp lands at or after it ({} < {target_ts})",
            r.4
        );
    }
}

/// Proves: librdkafka's idempotent producer (acks=all, lz4) and a manually assigned consumer
/// see the same behaviour from Weir as from Apache Kafka: every record once, keys stay on their
/// partition, CreateTime and headers kept, seeks by offset and timestamp land right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_idempotent_producer_and_assigned_consumer() {
    for target in targets() {
        eprintln!("target: {target:?}");
        idempotent_produce_and_assign(target).await;
    }
}
