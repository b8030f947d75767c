//! A paced producer whose every acknowledgement is recorded, and the check that a topic holds
//! exactly what was acknowledged.
//!
//! [`Workload`] writes one record per tick, round-robin over the partitions, with values
//! `p{partition}-{n}` where `n` counts up from 0 within each partition. Every delivery report
//! is kept: the (partition, offset, value) the broker acknowledged and when, or the error.
//! [`read_all`] consumes each partition from the beginning up to its end offset, and
//! [`verify`] checks the two against each other:
//!
//! - every acknowledged record is stored exactly once, at its acknowledged offset (somewhere
//!   in its partition when librdkafka acknowledged it without an offset, see [`Ack::offset`]);
//! - within a partition, values are stored in the order they were sent;
//! - no value is stored twice, acknowledged or not, and nothing else is stored.

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One acknowledged record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub partition: i32,
    /// Where the broker stored it; -1001 (librdkafka's "invalid offset") when librdkafka
    /// acknowledged it implicitly: when an idempotent producer's request carrying this record
    /// failed with its outcome unknown (a timeout or a dropped connection, as in a failover)
    /// and a later request to the partition succeeded, the earlier records were stored too, and
    /// librdkafka reports them delivered without their offsets.
    pub offset: i64,
    /// The record's number within its partition: its value is `p{partition}-{seq}`.
    pub seq: u64,
    /// When it was handed to the producer.
    pub sent_at: Instant,
    /// When its acknowledgement arrived.
    pub at: Instant,
}

/// One record whose delivery failed for good.
#[derive(Debug, Clone)]
pub struct Failure {
    pub partition: i32,
    pub seq: u64,
    pub error: String,
    pub at: Instant,
}

#[derive(Debug, Default)]
struct Shared {
    acks: Mutex<Vec<Ack>>,
    failures: Mutex<Vec<Failure>>,
    /// Client-level errors librdkafka reported (a broker down, a request timed out): not
    /// failures by themselves, the producer retries, but a record of what it went through.
    client_errors: Mutex<Vec<String>>,
    /// Delivery reports received, acks and failures.
    reported: AtomicU64,
}

/// The producer's context: files every delivery report.
pub struct Reports(Arc<Shared>);
impl std::fmt::Debug for Reports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reports")
    }
}
impl ClientContext for Reports {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        lock(&self.0.client_errors).push(format!("{error}: {reason}"));
    }
}
impl ProducerContext for Reports {
    type DeliveryOpaque = Box<(i32, u64, Instant)>;
    fn delivery(&self, result: &DeliveryResult<'_>, id: Self::DeliveryOpaque) {
        let (partition, seq, sent_at) = *id;
        let at = Instant::now();
        match result {
            Ok(m) => {
                let ack = Ack {
                    partition: m.partition(),
                    offset: m.offset(),
                    seq,
                    sent_at,
                    at,
                };
                lock(&self.0.acks).push(ack);
            }
            Err((e, _)) => lock(&self.0.failures).push(Failure {
                partition,
                seq,
                error: e.to_string(),
                at,
            }),
        }
        self.0.reported.fetch_add(1, Ordering::Release);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn value(partition: i32, seq: u64) -> String {
    format!("p{partition}-{seq}")
}

/// (partition, seq) from a value [`value`] made.
pub fn parse_value(v: &str) -> Option<(i32, u64)> {
    let (p, n) = v.strip_prefix('p')?.split_once('-')?;
    Some((p.parse().ok()?, n.parse().ok()?))
}

/// The producer's settings: idempotent, acks=all, and timeouts short enough that a dead or
/// paused leader costs seconds, not the 30 s default `request.timeout.ms`.
pub fn producer_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "40000")
        .set("request.timeout.ms", "5000")
        .set("retry.backoff.ms", "50")
        .set("retry.backoff.max.ms", "500")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("log_level", "4");
    c
}

/// A producer writing at a steady pace on its own thread; see the module documentation.
#[derive(Debug)]
pub struct Workload {
    topic: String,
    partitions: i32,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<(ThreadedProducer<Reports>, Vec<u64>)>>,
}

impl Workload {
    /// Starts producing to `topic`'s partitions `0..partitions`, one record every `interval`,
    /// with [`producer_config`].
    pub fn start(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        interval: Duration,
    ) -> anyhow::Result<Workload> {
        Workload::start_with(producer_config(bootstrap), topic, partitions, interval)
    }

    pub fn start_with(
        config: ClientConfig,
        topic: &str,
        partitions: i32,
        interval: Duration,
    ) -> anyhow::Result<Workload> {
        let shared = Arc::new(Shared::default());
        let producer: ThreadedProducer<Reports> = config
            .create_with_context(Reports(shared.clone()))
            .context("creating the producer")?;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, sent, topic) = (stop.clone(), sent.clone(), topic.to_string());
            std::thread::Builder::new()
                .name("workload".into())
                .spawn(move || {
                    let mut next_seq = vec![0u64; partitions as usize];
                    let mut next = Instant::now();
                    let mut k = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let p = (k % partitions as usize) as i32;
                        let seq = next_seq[p as usize];
                        let v = value(p, seq);
                        let mut record = BaseRecord::<(), _, _>::with_opaque_to(
                            &topic,
                            Box::new((p, seq, Instant::now())),
                        )
                        .partition(p)
                        .payload(&v);
                        loop {
                            match producer.send(record) {
                                Ok(()) => break,
                                // The local queue is full: deliveries will drain it.
                                Err((_, r)) if !stop.load(Ordering::Relaxed) => {
                                    record = r;
                                    std::thread::sleep(Duration::from_millis(1));
                                }
                                Err(_) => return (producer, next_seq),
                            }
                        }
                        next_seq[p as usize] += 1;
                        sent.fetch_add(1, Ordering::Release);
                        k += 1;
                        // Pacing, not waiting for a condition: a steady offered load.
                        next += interval;
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        } else if now - next > Duration::from_secs(1) {
                            // Fell behind (queue full during a fault): don't burst to catch up.
                            next = now;
                        }
                    }
                    (producer, next_seq)
                })?
        };
        Ok(Workload {
            topic: topic.to_string(),
            partitions,
            shared,
            stop,
            sent,
            thread: Some(thread),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Records handed to the producer so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Acquire)
    }

    /// Acknowledgements so far, of one partition or of all.
    pub fn acks(&self, partition: Option<i32>) -> Vec<Ack> {
        lock(&self.shared.acks)
            .iter()
            .filter(|a| partition.is_none_or(|p| a.partition == p))
            .copied()
            .collect()
    }

    pub fn failures(&self) -> Vec<Failure> {
        lock(&self.shared.failures).clone()
    }

    /// Acknowledgements at or after `since`, of one partition or of all.
    pub fn acks_since(&self, partition: Option<i32>, since: Instant) -> usize {
        lock(&self.shared.acks)
            .iter()
            .filter(|a| a.at >= since && partition.is_none_or(|p| a.partition == p))
            .count()
    }

    /// Waits until every partition has had at least `n` acknowledgements at or after `since`:
    /// the topic accepts writes everywhere.
    pub fn wait_acks_everywhere(
        &self,
        n: usize,
        since: Instant,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        for p in 0..self.partitions {
            self.wait_acks(Some(p), n, since, timeout)?;
        }
        Ok(())
    }

    /// Waits until `partition` (or all partitions together) has had at least `n`
    /// acknowledgements at or after `since`.
    pub fn wait_acks(
        &self,
        partition: Option<i32>,
        n: usize,
        since: Instant,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = since.max(Instant::now()) + timeout;
        loop {
            let got = self.acks_since(partition, since);
            if got >= n {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let failures = self.failures();
                bail!(
                    "{got} of {n} acknowledgements on partition {partition:?} within {timeout:?}; \
                     {} failures so far, e.g. {:?}",
                    failures.len(),
                    failures.first()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops sending, waits (up to `timeout`) for every delivery report, and returns them.
    pub fn finish(mut self, timeout: Duration) -> anyhow::Result<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        let (producer, sent) = self
            .thread
            .take()
            .context("finished twice")?
            .join()
            .map_err(|_| anyhow::anyhow!("the producing thread panicked"))?;
        let total: u64 = sent.iter().sum();
        let deadline = Instant::now() + timeout;
        // flush() polls for deliveries until the queue is empty or the timeout passes.
        let _ = producer.flush(timeout);
        while self.shared.reported.load(Ordering::Acquire) < total {
            if Instant::now() >= deadline {
                bail!(
                    "{} of {total} delivery reports within {timeout:?}",
                    self.shared.reported.load(Ordering::Acquire)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(producer);
        let mut acks = lock(&self.shared.acks).clone();
        acks.sort_by_key(|a| a.at);
        Ok(Outcome {
            topic: self.topic.clone(),
            sent,
            acks,
            failures: lock(&self.shared.failures).clone(),
            client_errors: lock(&self.shared.client_errors).clone(),
        })
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // Dropping the producer purges what it still holds, without waiting.
            let _ = t.join();
        }
    }
}

/// Everything a finished [`Workload`] sent and heard back.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub topic: String,
    /// Records sent per partition.
    pub sent: Vec<u64>,
    /// In the order they arrived.
    pub acks: Vec<Ack>,
    pub failures: Vec<Failure>,
    /// See `Shared::client_errors`.
    pub client_errors: Vec<String>,
}

impl Outcome {
    /// How long after `t` the first record sent at or after `t` to `partition` (or to any)
    /// was acknowledged: after a fault at `t`, when writes were served again. (Records sent
    /// before `t` may be acknowledged just after it by the old leader.)
    pub fn first_ack_after(&self, partition: Option<i32>, t: Instant) -> Option<Duration> {
        self.acks
            .iter()
            .filter(|a| partition.is_none_or(|p| a.partition == p))
            .filter(|a| a.sent_at >= t)
            .map(|a| a.at - t)
            .min()
    }

    /// The longest time without an acknowledgement on `partition` (or on any partition), and
    /// when that gap started.
    pub fn longest_stall(&self, partition: Option<i32>) -> Option<(Duration, Instant)> {
        let times: Vec<Instant> = self
            .acks
            .iter()
            .filter(|a| partition.is_none_or(|p| a.partition == p))
            .map(|a| a.at)
            .collect();
        times
            .windows(2)
            .map(|w| (w[1] - w[0], w[0]))
            .max_by_key(|(gap, _)| *gap)
    }

    /// A one-paragraph account of the run around a fault at `fault_at` on `partition`.
    pub fn report(&self, name: &str, fault_at: Instant, partition: Option<i32>) -> String {
        let fmt_stall = |s: Option<(Duration, Instant)>| match s {
            Some((gap, start)) => {
                let rel = if start >= fault_at {
                    format!("+{:?}", start - fault_at)
                } else {
                    format!("-{:?}", fault_at - start)
                };
                format!("{gap:?} (starting {rel} from the fault)")
            }
            None => "n/a".into(),
        };
        format!(
            "[{name}] sent {}, acknowledged {}, failed {}, client errors {}; first record sent after the fault to partition {} acknowledged after {:?}; \
             longest stall there: {}; longest stall on any partition: {}",
            self.sent.iter().sum::<u64>(),
            self.acks.len(),
            self.failures.len(),
            self.client_errors.len(),
            partition.map_or("any".to_string(), |p| p.to_string()),
            self.first_ack_after(partition, fault_at),
            fmt_stall(self.longest_stall(partition)),
            fmt_stall(self.longest_stall(None)),
        )
    }
}

/// What a partition holds: (offset, value) in offset order.
pub type Stored = BTreeMap<i32, Vec<(i64, String)>>;

/// The end offset of `topic`/`partition`, asked again while leadership is moving: the
/// coordinators may have elected a leader that has not applied the change yet, and it answers
/// NOT_LEADER_OR_FOLLOWER (librdkafka returns that instead of retrying), or librdkafka's
/// metadata, fetched from a broker that had not applied it yet, still shows the partition
/// without a leader ("Local: Unknown partition"; CI runs of f31fcbf and e31c170, after an
/// unclean election in `last_in_sync_replica_back_with_an_empty_disk`, 2 failures in 11 runs
/// before the metadata refresh below, none in 10 after).
fn end_offset(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    deadline: Instant,
) -> anyhow::Result<i64> {
    use rdkafka::types::RDKafkaErrorCode as Code;
    loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
            Ok((_, high)) => return Ok(high),
            Err(e)
                if Instant::now() < deadline
                    && matches!(
                        e.rdkafka_error_code(),
                        Some(
                            Code::NotLeaderForPartition
                                | Code::LeaderNotAvailable
                                | Code::UnknownPartition
                        )
                    ) =>
            {
                // librdkafka answers from its metadata cache and counts a partition with no
                // leader there as permanently unknown: it will not ask again by itself
                // (rd_kafka_topic_partition_list_query_leaders), so a brokers' view that lagged
                // the election once would fail every later try. Ask for the topic afresh, then
                // back off before the next try.
                let _ = consumer.fetch_metadata(Some(topic), Duration::from_secs(5));
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("end offset of {topic}/{partition}"));
            }
        }
    }
}

/// Reads partitions `0..partitions` of `topic` from the beginning to their end offsets (as
/// the leaders report them when this starts).
pub fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> anyhow::Result<Stored> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // librdkafka wants a group id even for assign(); nothing joins or commits with it.
        .set("group.id", "weir-e2e-unused")
        .set("enable.auto.commit", "false")
        .set("log_level", "4")
        .create()
        .context("creating the consumer")?;
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    let deadline = Instant::now() + timeout;
    for p in 0..partitions {
        ends.insert(p, end_offset(&consumer, topic, p, deadline)?);
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut stored: Stored = (0..partitions).map(|p| (p, Vec::new())).collect();
    let done = |stored: &Stored| {
        ends.iter()
            .all(|(p, &end)| stored[p].last().map_or(end <= 0, |&(o, _)| o + 1 >= end))
    };
    while !done(&stored) {
        if Instant::now() >= deadline {
            let got: Vec<(i32, Option<i64>, i64)> = ends
                .iter()
                .map(|(p, e)| (*p, stored[p].last().map(|x| x.0), *e))
                .collect();
            bail!(
                "reading {topic}: (partition, last offset read, end offset) {got:?} after {timeout:?}"
            );
        }
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.context("consuming")?;
            let Some(records) = stored.get_mut(&m.partition()) else {
                continue;
            };
            if ends
                .get(&m.partition())
                .is_some_and(|&end| m.offset() >= end)
            {
                continue;
            }
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            records.push((m.offset(), v));
        }
    }
    Ok(stored)
}

/// Checks `stored` against `outcome`; see the module documentation. Returns the number of
/// records stored.
pub fn verify(outcome: &Outcome, stored: &Stored) -> anyhow::Result<usize> {
    let mut problems = Vec::new();
    let mut seen: HashMap<(i32, u64), (i32, i64)> = HashMap::new();
    let mut total = 0;
    for (&p, records) in stored {
        let mut prev: Option<(i64, u64)> = None;
        for (offset, v) in records {
            total += 1;
            let Some((vp, seq)) = parse_value(v) else {
                problems.push(format!("{p}/{offset}: unexpected record {v:?}"));
                continue;
            };
            if vp != p {
                problems.push(format!("{p}/{offset}: {v} belongs to partition {vp}"));
            }
            if let Some(first) = seen.insert((vp, seq), (p, *offset)) {
                problems.push(format!(
                    "{v} stored twice: at {first:?} and at {p}/{offset}"
                ));
            }
            if let Some((po, pseq)) = prev
                && pseq >= seq
            {
                problems.push(format!(
                    "{p}: p{p}-{pseq} at offset {po} stored before {v} at offset {offset}: out of send order"
                ));
            }
            prev = Some((*offset, seq));
        }
    }
    let by_offset: HashMap<(i32, i64), &str> = stored
        .iter()
        .flat_map(|(p, v)| v.iter().map(move |(o, s)| ((*p, *o), s.as_str())))
        .collect();
    let mut acked_at: HashMap<(i32, u64), i64> = HashMap::new();
    for a in &outcome.acks {
        let want = value(a.partition, a.seq);
        if let Some(o) = acked_at.insert((a.partition, a.seq), a.offset) {
            problems.push(format!(
                "{want} acknowledged twice: at offsets {o} and {}",
                a.offset
            ));
        }
        if a.offset < 0 {
            // Acknowledged implicitly, offset unknown (see `Ack::offset`): it must be stored in
            // its partition all the same, once (checked above).
            if !seen.contains_key(&(a.partition, a.seq)) {
                problems.push(format!(
                    "{want} acknowledged (offset unknown) but not stored in partition {}",
                    a.partition
                ));
            }
            continue;
        }
        match by_offset.get(&(a.partition, a.offset)) {
            Some(&got) if got == want => {}
            Some(&got) => problems.push(format!(
                "{want} acknowledged at {}/{} but {got} is stored there",
                a.partition, a.offset
            )),
            None => problems.push(format!(
                "{want} acknowledged at {}/{} but nothing is stored there",
                a.partition, a.offset
            )),
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        problems.truncate(30);
        bail!(
            "{n} problems, the first {}:\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    Ok(total)
}
