//! Durability by crashing: an idempotent acks=all producer keeps writing while `weir dev` is
//! killed with SIGKILL and restarted, several times. Afterwards every acknowledged record is
//! in the log exactly once, in the order it was produced within its partition, and no record
//! appears twice at all (retries after the crash are deduplicated from rebuilt producer state).
#![allow(clippy::unwrap_used)] // test code panics on purpose

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_e2e::{WeirProcess, free_port};

const PARTITIONS: i32 = 3;
const RECORDS: usize = 100_000;
const KILLS: usize = 3;
/// Unacknowledged records each kill must interrupt, at least.
const MIN_BACKLOG: usize = 1_000;

/// Collects what the broker acknowledged: (partition, offset, record number).
#[derive(Default)]
struct Acks {
    acked: Mutex<Vec<(i32, i64, usize)>>,
    failed: AtomicUsize,
    count: AtomicUsize,
}

struct Ctx(Arc<Acks>);
impl ClientContext for Ctx {}
impl ProducerContext for Ctx {
    type DeliveryOpaque = Box<usize>;
    fn delivery(&self, result: &DeliveryResult<'_>, i: Self::DeliveryOpaque) {
        match result {
            Ok(m) => {
                self.0
                    .acked
                    .lock()
                    .unwrap()
                    .push((m.partition(), m.offset(), *i));
                self.0.count.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
                self.0.count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
        std::thread::park_timeout(Duration::from_millis(1));
    }
}

/// Proves: no acknowledged record is lost or duplicated when the broker is killed mid-write,
/// with the default flush policy (page cache).
#[test]
fn acknowledged_records_survive_kill_9() {
    kill_9_while_producing(&[]);
}

/// Proves the same with an fsync before every acknowledgement (`flush.messages=1`).
#[test]
fn acknowledged_records_survive_kill_9_with_fsync_per_append() {
    kill_9_while_producing(&["--flush-messages", "1"]);
}

fn kill_9_while_producing(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let partitions = PARTITIONS.to_string();
    let mut args = vec!["--default-partitions", partitions.as_str()];
    args.extend_from_slice(extra);
    let mut weir = WeirProcess::start(&data, port, &args).unwrap();
    let bootstrap = weir.bootstrap();

    let acks = Arc::new(Acks::default());
    let producer: ThreadedProducer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("batch.num.messages", "500")
        .set("message.timeout.ms", "120000")
        // A bounded queue paces the enqueue loop by the broker's acknowledgements, as a real
        // producer's buffer does, so kills below land while acks flow and a backlog waits.
        .set("queue.buffering.max.messages", "20000")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .set("log_level", "3")
        .create_with_context(Ctx(acks.clone()))
        .unwrap();

    let mut recoveries = Vec::new();
    // Records enqueued but not yet acknowledged at each kill: what the crash interrupted.
    let mut in_flight = Vec::new();
    // Kills land inside the producing loop, which librdkafka's bounded queue paces by the
    // broker's acknowledgements: kill k comes at the first record past its point in the run at
    // which acks have moved since the broker last started (they flow) and at least
    // MIN_BACKLOG records wait unacknowledged. The loop never pauses to make that happen.
    let kill_at: Vec<usize> = (1..=KILLS).map(|k| k * RECORDS / (KILLS + 2)).collect();
    let mut acked_at_start = 0;
    for i in 0..RECORDS {
        let key = format!("k{}", i % 97);
        let value = format!("{i}");
        let mut record = BaseRecord::with_opaque_to("crash", Box::new(i))
            .key(&key)
            .payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                // Queue full (or the broker down): wait for deliveries to drain it.
                Err((_, r)) => {
                    record = r;
                    std::thread::park_timeout(Duration::from_millis(1));
                }
            }
        }
        let acked = acks.count.load(Ordering::Relaxed);
        let backlog = i + 1 - acked;
        let k = in_flight.len();
        if k < KILLS && i >= kill_at[k] && acked > acked_at_start && backlog >= MIN_BACKLOG {
            in_flight.push(backlog);
            weir.kill9().unwrap();
            let down = Instant::now();
            weir.restart().unwrap();
            recoveries.push(down.elapsed());
            acked_at_start = acks.count.load(Ordering::Relaxed);
        }
    }
    wait_for("every delivery report", Duration::from_secs(180), || {
        acks.count.load(Ordering::Relaxed) == RECORDS
    });
    let failed = acks.failed.load(Ordering::Relaxed);
    let acked = acks.acked.lock().unwrap().clone();
    eprintln!(
        "{} acknowledged, {failed} failed, {KILLS} kills with {in_flight:?} records in flight; \
         restart-to-ready times: {recoveries:?}",
        acked.len()
    );
    assert_eq!(
        in_flight.len(),
        KILLS,
        "every kill landed while at least {MIN_BACKLOG} records waited: {in_flight:?}"
    );
    assert!(
        acked.len() > RECORDS / 2,
        "most records should be acknowledged"
    );

    // Read everything back.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        // librdkafka wants a group id even for assign(); nothing joins or commits with it.
        .set("group.id", "weir-e2e-unused")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        let (_, high) = consumer
            .fetch_watermarks("crash", p, Duration::from_secs(10))
            .unwrap();
        ends.insert(p, high);
        tpl.add_partition_offset("crash", p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let total: i64 = ends.values().sum();
    let mut stored: HashMap<i32, Vec<(i64, usize)>> = HashMap::new();
    let mut read = 0i64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while read < total {
        assert!(
            Instant::now() < deadline,
            "read {read} of {total} stored records"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            let i: usize = std::str::from_utf8(m.payload().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            stored
                .entry(m.partition())
                .or_default()
                .push((m.offset(), i));
            read += 1;
        }
    }

    // No record stored twice, acknowledged or not.
    let mut count = vec![0u8; RECORDS];
    for recs in stored.values() {
        for &(_, i) in recs {
            count[i] += 1;
        }
    }
    let dupes: Vec<usize> = (0..RECORDS).filter(|&i| count[i] > 1).collect();
    assert!(
        dupes.is_empty(),
        "{} records stored twice, e.g. {:?}",
        dupes.len(),
        &dupes[..dupes.len().min(10)]
    );

    // Every acknowledged record is stored at the offset it was acknowledged with.
    let by_offset: HashMap<(i32, i64), usize> = stored
        .iter()
        .flat_map(|(p, v)| v.iter().map(move |&(o, i)| ((*p, o), i)))
        .collect();
    for &(p, off, i) in &acked {
        assert_eq!(
            by_offset.get(&(p, off)),
            Some(&i),
            "acknowledged record {i} at {p}/{off}"
        );
    }

    // Within a partition, records are in the order they were produced.
    for (p, recs) in &stored {
        for w in recs.windows(2) {
            assert!(
                w[0].1 < w[1].1,
                "partition {p}: record {} stored before {}",
                w[0].1,
                w[1].1
            );
        }
    }
}
