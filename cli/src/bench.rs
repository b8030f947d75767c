//! `weir bench produce|consume`: throughput and delivery latency through librdkafka, so Weir
//! and any other Kafka-compatible broker are measured by the same client.
//!
//! ```text
//! produce:  one thread: BaseRecord(payload buffer reused, opaque = send time) ──▶ librdkafka
//!           and, every POLL_EVERY_RECORDS sends, poll ◀── delivery reports ── HdrHistogram
//! consume:  BaseConsumer, all partitions assigned from the beginning, read to the high
//!           watermarks as of the start (or --records)
//! ```
//!
//! The sender allocates nothing per record itself. librdkafka copies each payload into its
//! queue, and the Rust binding makes one `CString` of the topic name per `send`; both are
//! outside our control. Delivery latency is measured from just before `send` to the handling of
//! the delivery report, at most POLL_EVERY_RECORDS sends (tens of microseconds) after it
//! arrived. MB means 10^6 bytes of record values.
//!
//! Why one thread: with a poll thread (`ThreadedProducer`) the sender's mallocs and the poll
//! thread's frees of librdkafka's messages contend on glibc's arena locks. Measured on 2 cores
//! with 100-byte records, acks=1, against librdkafka's in-process mock cluster: poll thread
//! 1.60 M records/s, single thread 1.90 M records/s with lower latency; against Apache Kafka
//! 4.3 (sharing the cores): 1.54 M/s and 1.54-1.63 M/s. One `FutureProducer` future per
//! record (a boxed oneshot sender each), awaited in order: 0.64 M/s against the sink of
//! `weir bench sink`, 0.56 M/s against Apache Kafka.
//!
//! `--producers N` runs N such loops on N threads, each with its own client; against the sink
//! on the same 2 cores, 2 producers reach 2.4 M records/s where one reaches 1.8-1.9 M/s.

use crate::client::{Admin, CliContext, Connection, stop_flag};
use crate::config::{
    Acks, BENCH_RECORD_BYTES_MAX, Compression, OutputFormat, parse_partition_count,
    parse_record_bytes, parse_topic,
};
use crate::consume::{consumer_config, partitions_of};
use crate::error::{Error, Result};
use crate::topic::find_topic;
use hdrhistogram::Histogram;
use rdkafka::ClientContext;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use weir_model::TopicName;

use weir_model::limits::LATENCY_MICROS_MAX;
/// How long the sender serves delivery reports when librdkafka's queue is full, before it
/// tries again.
const QUEUE_FULL_POLL: Duration = Duration::from_millis(1);
/// The sender serves delivery reports every this many sends (one report event carries a
/// whole batch, so this keeps up at any rate).
const POLL_EVERY_RECORDS: u64 = 64;
/// How often the sender checks the clock for `--duration-secs` and Ctrl-C, in records.
const CLOCK_CHECK_RECORDS: u64 = 1024;
/// Poll timeout of the consume loop, so Ctrl-C and stalls are noticed.
const CONSUME_POLL_SLICE: Duration = Duration::from_millis(100);

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Send records as fast as the cluster takes them (or at --rate) and report throughput
    /// and per-record delivery latency.
    Produce(ProduceArgs),
    /// Read a topic (filled by `weir bench produce`) from the beginning and report throughput.
    Consume(ConsumeArgs),
    /// Serve a Kafka endpoint that acknowledges every produce and stores nothing, to measure
    /// what the client alone reaches: `weir bench produce --brokers <its address>`.
    Sink(SinkArgs),
}

#[derive(Debug, clap::Args)]
pub struct SinkArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9094")]
    pub addr: std::net::SocketAddr,
    /// Partitions every topic appears to have.
    #[arg(long, short = 'p', default_value = "6", value_parser = parse_partition_count)]
    pub partitions: i32,
}

#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// The topic; created with --partitions if it does not exist.
    #[arg(long, short = 't', default_value = "weir-bench", value_parser = parse_topic)]
    pub topic: TopicName,
    /// Bytes of each record's value (no key).
    #[arg(long, short = 's', default_value = "100", value_parser = parse_record_bytes)]
    pub record_size: usize,
    /// Records to send.
    #[arg(long, short = 'n', default_value = "1000000", conflicts_with = "duration_secs",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub records: u64,
    /// Send for this many seconds instead of a number of records.
    #[arg(long, short = 'd', value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub duration_secs: Option<u64>,
    /// Partitions of the topic when it is created here.
    #[arg(long, short = 'p', default_value = "6", value_parser = parse_partition_count)]
    pub partitions: i32,
    /// Replication factor of the topic when it is created here (default: the broker's).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=32))]
    pub replication_factor: Option<i32>,
    /// 0, 1 or all.
    #[arg(long, default_value = "all")]
    pub acks: Acks,
    /// `linger.ms`: how long a batch may wait to fill.
    #[arg(long, default_value = "5", value_parser = clap::value_parser!(u64).range(0..=900_000))]
    pub linger_ms: u64,
    /// `batch.size`: the most bytes in one batch (librdkafka default 1000000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=2_147_483_647))]
    pub batch_size: Option<u64>,
    /// `batch.num.messages`: the most records in one batch (librdkafka default 10000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch_records: Option<u64>,
    /// Batch compression.
    #[arg(long, value_enum, default_value = "none")]
    pub compression: Compression,
    /// Send at most this many records per second (default: as fast as possible).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// Producers, each with its own librdkafka client and sending thread, sharing the
    /// records and the rate. One is enough for about 1.9 M 100-byte records/s.
    #[arg(long, default_value = "1", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub producers: u32,
}

#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// The topic to read, from the beginning of every partition.
    #[arg(long, short = 't', default_value = "weir-bench", value_parser = parse_topic)]
    pub topic: TopicName,
    /// Stop after this many records (default: everything up to the end as of the start).
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..))]
    pub records: Option<u64>,
}

pub async fn run(
    connection: &Connection,
    output: OutputFormat,
    command: BenchCommand,
) -> Result<()> {
    let stop = stop_flag();
    let connection = connection.clone();
    let report = match command {
        BenchCommand::Sink(args) => return sink(args).await,
        BenchCommand::Produce(args) => {
            // librdkafka's in-process mock cluster is a sink for measuring the client alone;
            // each client gets its own, so the producer's auto-creates the topic itself.
            let mock = connection
                .properties
                .iter()
                .any(|kv| kv.key == "test.mock.num.brokers");
            let partitions = if mock {
                0
            } else {
                ensure_topic(&connection.admin()?, &args).await?
            };
            tokio::task::spawn_blocking(move || {
                bench_produce(&connection, &args, partitions, &stop)
            })
            .await
            .map_err(|_join| Error::Panicked {
                what: "bench produce",
            })??
        }
        BenchCommand::Consume(args) => {
            tokio::task::spawn_blocking(move || bench_consume(&connection, &args, &stop))
                .await
                .map_err(|_join| Error::Panicked {
                    what: "bench consume",
                })??
        }
    };
    match output {
        OutputFormat::Json => crate::output::print_json(&report.json()),
        OutputFormat::Table => crate::output::print(&format!("{}\n", report.line())),
    }?;
    report.outcome()
}

/// Runs the broker's discarding sink until Ctrl-C or SIGTERM.
async fn sink(args: SinkArgs) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| Error::io(format!("listening on {}", args.addr), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("reading the listener's address", e))?;
    eprintln!(
        "sink on {addr}: every topic has {} partitions; produce is acknowledged and dropped",
        args.partitions
    );
    eprintln!("  try:  weir bench produce --brokers {addr}    Ctrl-C stops it.");
    tokio::select! {
        served = crate::sink::run_sink(listener, args.partitions) => {
            served.map_err(|e| Error::io(format!("serving the sink on {addr}"), e))
        }
        _ = crate::client::shutdown_signal() => Ok(()),
    }
}

/// Creates the topic when it is missing and waits until every partition has a leader, so
/// the first records do not measure topic creation. Returns the partition count.
async fn ensure_topic(admin: &Admin, args: &ProduceArgs) -> Result<usize> {
    let name = args.topic.as_str();
    let metadata = admin.metadata(Some(name))?;
    match find_topic(&metadata, name) {
        Ok(topic) => return Ok(topic.partitions().len()),
        Err(Error::TopicNotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    let new_topic = NewTopic::new(
        name,
        args.partitions,
        TopicReplication::Fixed(args.replication_factor.unwrap_or(-1)),
    );
    let what = format!("creating topic {name}");
    match admin.create_topic(&new_topic, &what).await? {
        // Created meanwhile by someone else: fine, it is there.
        Ok(()) | Err(RDKafkaErrorCode::TopicAlreadyExists) => {}
        Err(code) => return Err(Error::Broker { what, code }),
    }
    let deadline = Instant::now() + admin.connection.request_timeout;
    loop {
        let metadata = admin.metadata(Some(name))?;
        if let Ok(topic) = find_topic(&metadata, name) {
            let ready = !topic.partitions().is_empty()
                && topic
                    .partitions()
                    .iter()
                    .all(|p| p.leader() >= 0 && p.error().is_none());
            if ready {
                return Ok(topic.partitions().len());
            }
        }
        if Instant::now() >= deadline {
            return Err(admin.connection.timed_out(format!(
                "waiting for the partitions of {name} to have leaders"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Counters and the latency histogram, written by delivery reports on the poll thread.
#[derive(Debug)]
struct BenchContext {
    /// Time zero of the run: the opaque of each record is nanoseconds since it.
    start: Instant,
    latency_micros: Mutex<Histogram<u64>>,
    delivered: AtomicU64,
    failed: AtomicU64,
    first_failure: Mutex<Option<String>>,
}

impl ClientContext for BenchContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, reason, "client error");
    }
}

impl ProducerContext for BenchContext {
    /// Nanoseconds from `start` to just before the record was sent.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at_nanos: usize) {
        let now = self.start.elapsed().as_nanos();
        match result {
            Ok(_) => {
                let micros = now.saturating_sub(sent_at_nanos as u128) / 1000;
                let micros = u64::try_from(micros).unwrap_or(u64::MAX).max(1);
                self.latency_micros
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .saturating_record(micros);
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.first_failure
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .get_or_insert_with(|| error.to_string());
            }
        }
    }
}

/// A payload that does not compress to nothing: printable bytes from a fixed-seed xorshift.
fn bench_payload(size: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b'!' + (state % 94) as u8
        })
        .collect()
}

/// The client settings of every bench producer.
fn producer_config(connection: &Connection, args: &ProduceArgs) -> ClientConfig {
    let mut config = connection.client_config();
    config
        .set("acks", args.acks.as_rdkafka())
        .set("linger.ms", args.linger_ms.to_string())
        .set("compression.type", args.compression.as_rdkafka())
        // Room for ~1 s of records at the target rate, so a slow batch does not stall the
        // sender; bounded by queue.buffering.max.kbytes (1 GiB) as well.
        .set("queue.buffering.max.messages", "1000000");
    if let Some(bytes) = args.batch_size {
        config.set("batch.size", bytes.to_string());
    }
    if let Some(records) = args.batch_records {
        config.set("batch.num.messages", records.to_string());
    }
    connection.apply_overrides(&mut config);
    config
}

fn bench_produce(
    connection: &Connection,
    args: &ProduceArgs,
    partitions: usize,
    stop: &AtomicBool,
) -> Result<Report> {
    assert!(args.record_size <= BENCH_RECORD_BYTES_MAX);
    let config = producer_config(connection, args);
    let producers = u64::from(args.producers);
    let deadline = args
        .duration_secs
        .map(|s| Instant::now() + Duration::from_secs(s));
    let share = |i: u64| Share {
        // Without a deadline: the records split evenly, the remainder to the first producer.
        records: if deadline.is_some() {
            u64::MAX
        } else {
            args.records / producers + if i == 0 { args.records % producers } else { 0 }
        },
        rate: args.rate.map(|r| r as f64 / producers as f64),
        deadline,
    };
    let start = Instant::now();
    let outcomes: Vec<Result<Outcome>> = if producers == 1 {
        vec![run_producer(&config, args, share(0), stop)]
    } else {
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..producers)
                .map(|i| {
                    let config = &config;
                    let share = share(i);
                    scope.spawn(move || run_producer(config, args, share, stop))
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .map_err(|_panic| Error::Panicked {
                            what: "bench producer",
                        })
                        .and_then(|outcome| outcome)
                })
                .collect()
        })
    };
    let elapsed = start.elapsed();
    let mut total = Outcome::empty()?;
    for outcome in outcomes {
        total.merge(outcome?)?;
    }
    Ok(Report {
        mode: "produce",
        topic: args.topic.as_str().to_string(),
        records: total.delivered,
        bytes: total.delivered * args.record_size as u64,
        elapsed,
        failed: total.failed,
        first_failure: total.first_failure,
        latency_micros: Some(total.latency_micros),
        settings: json!({
            "record_size": args.record_size,
            "partitions": partitions,
            "producers": args.producers,
            "acks": args.acks.as_rdkafka(),
            "linger_ms": args.linger_ms,
            "batch_size": args.batch_size,
            "batch_records": args.batch_records,
            "compression": args.compression.as_rdkafka(),
            "rate": args.rate,
        }),
    })
}

/// What one producer of a run sends.
#[derive(Clone, Copy, Debug)]
struct Share {
    records: u64,
    /// Records per second, if limited.
    rate: Option<f64>,
    deadline: Option<Instant>,
}

/// What one producer of a run achieved.
#[derive(Debug)]
struct Outcome {
    delivered: u64,
    /// Refused by `send`, failed in a delivery report, or still undelivered after the flush.
    failed: u64,
    first_failure: Option<String>,
    latency_micros: Histogram<u64>,
}

impl Outcome {
    fn empty() -> Result<Outcome> {
        Ok(Outcome {
            delivered: 0,
            failed: 0,
            first_failure: None,
            latency_micros: new_histogram()?,
        })
    }

    fn merge(&mut self, other: Outcome) -> Result<()> {
        self.delivered += other.delivered;
        self.failed += other.failed;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
        self.latency_micros
            .add(&other.latency_micros)
            .map_err(|e| Error::invalid("merging latency histograms", format!("{e:?}")))
    }
}

fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, LATENCY_MICROS_MAX, 3)
        .map_err(|e| Error::invalid("creating the latency histogram", e.to_string()))
}

/// One producer's send loop, on the calling thread; see the module comment for its shape.
fn run_producer(
    config: &ClientConfig,
    args: &ProduceArgs,
    share: Share,
    stop: &AtomicBool,
) -> Result<Outcome> {
    let topic = args.topic.as_str();
    let (producer, epoch_ms_at_start) = bench_producer(config)?;
    let ctx = producer.context();

    let mut payload = bench_payload(args.record_size);
    let rate_interval_nanos = share.rate.map(|r| 1e9 / r);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut send_errors = 0u64;
    while sent < share.records {
        if sent.is_multiple_of(CLOCK_CHECK_RECORDS)
            && (stop.load(Ordering::Relaxed) || share.deadline.is_some_and(|d| Instant::now() >= d))
        {
            break;
        }
        if let Some(interval) = rate_interval_nanos {
            let due = start + Duration::from_nanos((sent as f64 * interval) as u64);
            let now = Instant::now();
            if due > now {
                // Wait by serving delivery reports, so their latency is not inflated.
                producer.poll(due - now);
            }
        }
        if sent.is_multiple_of(POLL_EVERY_RECORDS) {
            producer.poll(Duration::ZERO);
        }
        // A distinct record each time, without a new buffer: librdkafka copies the payload.
        let stamp = sent.to_le_bytes();
        let n = stamp.len().min(payload.len());
        payload[..n].copy_from_slice(&stamp[..n]);
        let sent_at = usize::try_from(ctx.start.elapsed().as_nanos()).unwrap_or(usize::MAX);
        // The record's CreateTime from the same clock reading: librdkafka would otherwise call
        // gettimeofday per record (3% of the sender's time in a profile).
        let timestamp_ms = epoch_ms_at_start + (sent_at / 1_000_000) as i64;
        let record: BaseRecord<'_, (), [u8], usize> = BaseRecord::with_opaque_to(topic, sent_at)
            .payload(&payload[..])
            .timestamp(timestamp_ms);
        if !send(&producer, record) {
            send_errors += 1;
        }
        sent += 1;
    }
    let flushed = producer.flush(Duration::from_secs(300));
    let delivered = ctx.delivered.load(Ordering::Relaxed);
    let failed = ctx.failed.load(Ordering::Relaxed) + send_errors;
    let mut first_failure = ctx
        .first_failure
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    if let Err(e) = flushed {
        first_failure.get_or_insert_with(|| format!("flushing: {e}"));
    }
    let latency_micros = std::mem::replace(
        &mut *ctx
            .latency_micros
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
        new_histogram()?,
    );
    Ok(Outcome {
        delivered,
        failed: failed + sent.saturating_sub(delivered + failed),
        first_failure,
        latency_micros,
    })
}

/// A bench producer, and the wall clock (ms) at its context's start, from which record
/// timestamps are computed without a clock call per record.
fn bench_producer(config: &ClientConfig) -> Result<(BaseProducer<BenchContext>, i64)> {
    let context = BenchContext {
        start: Instant::now(),
        latency_micros: Mutex::new(new_histogram()?),
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_failure: Mutex::new(None),
    };
    let producer: BaseProducer<BenchContext> = config
        .create_with_context(context)
        .map_err(|e| Error::kafka("creating the producer", e))?;
    let ctx = producer.context();
    let epoch_ms_at_start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .map_err(|e| Error::invalid("reading the clock", e.to_string()))?
        - i64::try_from(ctx.start.elapsed().as_millis()).unwrap_or(0);
    Ok((producer, epoch_ms_at_start))
}

/// Hands a record to librdkafka, serving delivery reports while its queue is full. False
/// when it was refused (the first refusal is kept for the report).
#[inline]
fn send(
    producer: &BaseProducer<BenchContext>,
    mut record: BaseRecord<'_, (), [u8], usize>,
) -> bool {
    loop {
        match producer.send(record) {
            Ok(()) => return true,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(QUEUE_FULL_POLL);
            }
            Err((error, _)) => {
                producer
                    .context()
                    .first_failure
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .get_or_insert_with(|| error.to_string());
                return false;
            }
        }
    }
}

/// Assigns every non-empty partition of `topic` from its beginning; returns where each ends
/// and how many records there are in all.
fn assign_all(
    consumer: &BaseConsumer<CliContext>,
    connection: &Connection,
    topic: &str,
    partitions: &[i32],
) -> Result<(BTreeMap<i32, i64>, i64)> {
    let mut remaining: BTreeMap<i32, i64> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    let mut available = 0i64;
    for &p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, connection.request_timeout)
            .map_err(|e| Error::kafka(format!("reading the offsets of {topic}/{p}"), e))?;
        if high > low {
            available += high - low;
            remaining.insert(p, high);
            assignment
                .add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| Error::kafka(format!("assigning {topic}/{p}"), e))?;
        }
    }
    if remaining.is_empty() {
        return Err(Error::invalid(
            format!("benchmarking consumption of {topic}"),
            format!("the topic is empty; fill it first with `weir bench produce -t {topic}`"),
        ));
    }
    consumer
        .assign(&assignment)
        .map_err(|e| Error::kafka(format!("assigning the partitions of {topic}"), e))?;
    Ok((remaining, available))
}

fn bench_consume(connection: &Connection, args: &ConsumeArgs, stop: &AtomicBool) -> Result<Report> {
    let topic = args.topic.as_str();
    let mut config = consumer_config(connection);
    // librdkafka postpones a partition's next fetch by fetch.queue.backoff.ms (1000) when its
    // local queue is over queued.min.messages; a reader this fast empties the queue long
    // before that. Measured on 2 cores against Apache Kafka 4.3, 100-byte records:
    // 1000 ms: 0.37 M records/s, 50 ms: 1.66 M/s, 10 ms: 2.0 M/s, 1 ms: 2.0 M/s.
    config.set("fetch.queue.backoff.ms", "10");
    connection.apply_overrides(&mut config);
    let consumer: BaseConsumer<CliContext> = config
        .create_with_context(CliContext)
        .map_err(|e| Error::kafka("creating the consumer", e))?;
    let partitions = partitions_of(&consumer, connection, topic, None)?;
    let (mut remaining, available) = assign_all(&consumer, connection, topic, &partitions)?;
    let wanted = args.records.unwrap_or(u64::MAX);

    let start = Instant::now();
    let mut last_progress = start;
    let mut records = 0u64;
    let mut bytes = 0u64;
    while records < wanted && !remaining.is_empty() && !stop.load(Ordering::Relaxed) {
        match consumer.poll(CONSUME_POLL_SLICE) {
            Some(Ok(message)) => {
                last_progress = Instant::now();
                let p = message.partition();
                let Some(&end) = remaining.get(&p) else {
                    continue;
                };
                if message.offset() >= end {
                    remaining.remove(&p);
                    continue;
                }
                records += 1;
                bytes += message.payload_len() as u64;
                if message.offset() + 1 >= end {
                    remaining.remove(&p);
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                last_progress = Instant::now();
                remaining.remove(&p);
            }
            Some(Err(error)) => {
                return Err(Error::kafka(format!("reading {topic}"), error));
            }
            None if last_progress.elapsed() >= connection.request_timeout => {
                return Err(Error::invalid(
                    format!("reading {topic}"),
                    format!(
                        "read {records} of {available} records, then nothing for {} ms",
                        connection.timeout_ms()
                    ),
                ));
            }
            None => {}
        }
    }
    Ok(Report {
        mode: "consume",
        topic: topic.to_string(),
        records,
        bytes,
        elapsed: start.elapsed(),
        failed: 0,
        first_failure: None,
        latency_micros: None,
        settings: json!({ "partitions": partitions.len() }),
    })
}

/// The result of one run.
#[derive(Debug)]
struct Report {
    mode: &'static str,
    topic: String,
    records: u64,
    bytes: u64,
    elapsed: Duration,
    failed: u64,
    first_failure: Option<String>,
    latency_micros: Option<Histogram<u64>>,
    settings: serde_json::Value,
}

impl Report {
    fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// (p50, p99, p99.9, max) in milliseconds.
    fn latency_ms(&self) -> Option<[f64; 4]> {
        let h = self.latency_micros.as_ref().filter(|h| !h.is_empty())?;
        let ms = |micros: u64| micros as f64 / 1000.0;
        Some([
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max()),
        ])
    }

    fn line(&self) -> String {
        let mut line = format!(
            "{}: {} records in {:.2} s on {}: {:.0} records/s, {:.1} MB/s",
            self.mode,
            self.records,
            self.elapsed.as_secs_f64(),
            self.topic,
            self.records_per_sec(),
            self.mb_per_sec()
        );
        if let Some([p50, p99, p999, max]) = self.latency_ms() {
            line.push_str(&format!(
                "; latency ms p50 {p50:.2}, p99 {p99:.2}, p99.9 {p999:.2}, max {max:.2}"
            ));
        }
        if self.failed > 0 {
            line.push_str(&format!("; {} FAILED", self.failed));
        }
        line
    }

    fn json(&self) -> serde_json::Value {
        let latency = self.latency_ms().map(
            |[p50, p99, p999, max]| json!({ "p50": p50, "p99": p99, "p99_9": p999, "max": max }),
        );
        json!({
            "mode": self.mode,
            "topic": self.topic,
            "records": self.records,
            "bytes": self.bytes,
            "elapsed_secs": self.elapsed.as_secs_f64(),
            "records_per_sec": self.records_per_sec(),
            "mb_per_sec": self.mb_per_sec(),
            "latency_ms": latency,
            "failed": self.failed,
            "first_failure": self.first_failure,
            "settings": self.settings,
        })
    }

    fn outcome(&self) -> Result<()> {
        match &self.first_failure {
            Some(first) if self.failed > 0 => Err(Error::Delivery {
                failed: self.failed,
                total: self.records + self.failed,
                first: first.clone(),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_payload_is_printable_and_varied() {
        let p = bench_payload(1000);
        assert_eq!(p.len(), 1000);
        assert!(p.iter().all(|b| (b'!'..=b'~').contains(b)));
        let distinct: std::collections::HashSet<u8> = p.iter().copied().collect();
        assert!(distinct.len() > 50, "{}", distinct.len());
    }

    #[test]
    fn report_shows_throughput_and_latency_quantiles() {
        let mut h = Histogram::new_with_bounds(1, LATENCY_MICROS_MAX, 3).unwrap();
        for micros in 1..=1000 {
            h.record(micros).unwrap();
        }
        let report = Report {
            mode: "produce",
            topic: "t".into(),
            records: 2_000_000,
            bytes: 200_000_000,
            elapsed: Duration::from_secs(2),
            failed: 0,
            first_failure: None,
            latency_micros: Some(h),
            settings: json!({}),
        };
        assert_eq!(report.records_per_sec(), 1_000_000.0);
        assert_eq!(report.mb_per_sec(), 100.0);
        let [p50, p99, p999, max] = report.latency_ms().unwrap();
        assert!((0.49..=0.51).contains(&p50), "{p50}");
        assert!((0.98..=1.0).contains(&p99), "{p99}");
        assert!(p999 <= max && max <= 1.001, "{p999} {max}");
        let j = report.json();
        assert_eq!(j["records"], 2_000_000);
        assert!(j["latency_ms"]["p99_9"].is_f64());
        assert!(
            report.line().contains("1000000 records/s"),
            "{}",
            report.line()
        );
        assert!(report.outcome().is_ok());
    }
}
