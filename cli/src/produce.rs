//! `weir produce`: each line of stdin becomes one record.
//!
//! ```text
//! stdin ─ read_until('\n') ─ split key ─ ThreadedProducer::send ─▶ librdkafka queue ─▶ broker
//!                                                  delivery reports (poll thread) ─▶ Stats
//! ```
//! Every record is waited for: the command exits non-zero when any was not delivered.

use crate::client::{Connection, fetch_metadata};
use crate::config::{Acks, Compression, KeyValue, OutputFormat, parse_partition, parse_topic};
use crate::error::{Error, Result};
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::sync::Mutex;
use std::time::Duration;
use weir_model::TopicName;

pub use weir_model::limits::LINE_BYTES_MAX;
/// Failures printed as they happen; the rest are counted in the summary.
const FAILURES_PRINTED_MAX: u64 = 5;
/// How long `send` waits for room when librdkafka's queue is full before trying again.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(10);

#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// The topic to write to.
    #[arg(long, short = 't', value_parser = parse_topic)]
    pub topic: TopicName,
    /// Split each line at the first SEP: the part before is the key (no SEP: no key).
    #[arg(long, short = 'K', value_name = "SEP", value_parser = parse_separator)]
    pub key_separator: Option<String>,
    /// Write every record to this partition (default: by key hash, or spread when no key).
    #[arg(long, short = 'p', value_parser = parse_partition)]
    pub partition: Option<i32>,
    /// Replicas that must have a record before it counts as delivered: 0, 1 or all.
    #[arg(long, default_value = "all")]
    pub acks: Acks,
    /// A header added to every record; repeat for more.
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE")]
    pub headers: Vec<KeyValue>,
    /// Give up on a record not delivered within this many milliseconds (`message.timeout.ms`).
    #[arg(long, default_value = "30000", value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub delivery_timeout_ms: u64,
    /// Compress batches with this codec.
    #[arg(long, value_enum, default_value = "none")]
    pub compression: Compression,
    /// Wait up to this long to fill a batch (`linger.ms`).
    #[arg(long, default_value = "5", value_parser = clap::value_parser!(u64).range(0..=900_000))]
    pub linger_ms: u64,
}

fn parse_separator(s: &str) -> std::result::Result<String, String> {
    if s.is_empty() {
        return Err("the key separator cannot be empty".to_string());
    }
    Ok(s.to_string())
}

pub async fn run(connection: &Connection, output: OutputFormat, args: ProduceArgs) -> Result<()> {
    let connection = connection.clone();
    tokio::task::spawn_blocking(move || {
        let stdin = std::io::stdin();
        produce(&connection, output, &args, stdin.lock())
    })
    .await
    .map_err(|_join| Error::Panicked { what: "produce" })?
}

/// What the delivery reports said, per partition.
#[derive(Debug, Default)]
struct Stats {
    delivered: u64,
    failed: u64,
    first_failure: Option<String>,
    /// partition -> (first offset, last offset, records); offsets are unknown with acks=0.
    partitions: BTreeMap<i32, (Option<i64>, Option<i64>, u64)>,
}

impl Stats {
    fn fail(&mut self, line: usize, error: &KafkaError) {
        self.failed += 1;
        let message = format!("line {line}: {error}");
        if self.failed <= FAILURES_PRINTED_MAX {
            eprintln!("not delivered: {message}");
        }
        self.first_failure.get_or_insert(message);
    }
}

/// Delivery reports arrive on the producer's poll thread; the opaque is the line number.
#[derive(Debug, Default)]
struct ProduceContext {
    stats: Mutex<Stats>,
}

impl ClientContext for ProduceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, reason, "client error");
    }
}

impl ProducerContext for ProduceContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, line: usize) {
        let mut stats = self
            .stats
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match result {
            Ok(message) => {
                stats.delivered += 1;
                let offset = Some(message.offset()).filter(|o| *o >= 0);
                let entry = stats
                    .partitions
                    .entry(message.partition())
                    .or_insert((offset, offset, 0));
                entry.0 = entry.0.min(offset).or(offset);
                entry.1 = entry.1.max(offset);
                entry.2 += 1;
            }
            Err((error, _message)) => stats.fail(line, error),
        }
    }
}

fn produce(
    connection: &Connection,
    output: OutputFormat,
    args: &ProduceArgs,
    mut input: impl BufRead,
) -> Result<()> {
    let topic = args.topic.as_str();
    let producer = create_producer(connection, args)?;

    let metadata = fetch_metadata(producer.client(), connection, Some(topic))?;
    check_target(&metadata, topic, args.partition)?;

    let header_template: Vec<(&str, &[u8])> = args
        .headers
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_bytes()))
        .collect();
    let separator = args.key_separator.as_deref().map(str::as_bytes);
    let mut line = Vec::new();
    let mut line_number = 0usize;
    let mut sent = 0u64;
    loop {
        if !read_line(&mut input, &mut line, line_number + 1)? {
            break;
        }
        line_number += 1;
        let (key, value) = split_key(&line, separator);
        let mut record = BaseRecord::with_opaque_to(topic, line_number).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(partition) = args.partition {
            record = record.partition(partition);
        }
        if !header_template.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(header_template.len());
            for (k, v) in &header_template {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(*v),
                });
            }
            record = record.headers(headers);
        }
        send(&producer, record, line_number);
        sent += 1;
    }

    // librdkafka gives up on each record after message.timeout.ms; the flush needs no longer.
    let flush_timeout = Duration::from_millis(args.delivery_timeout_ms) + Duration::from_secs(5);
    if let Err(error) = producer.flush(flush_timeout) {
        let stats = lock(&producer);
        let unreported = sent.saturating_sub(stats.delivered + stats.failed);
        return Err(Error::Delivery {
            failed: stats.failed + unreported,
            total: sent,
            first: stats
                .first_failure
                .clone()
                .unwrap_or_else(|| format!("flushing: {error}")),
        });
    }

    let stats = lock(&producer);
    let attempted = stats.delivered + stats.failed;
    let summary = summary(output, topic, &stats);
    eprintln!("{summary}");
    match &stats.first_failure {
        None => Ok(()),
        Some(first) => Err(Error::Delivery {
            failed: stats.failed,
            total: attempted,
            first: first.clone(),
        }),
    }
}

/// Hands a record to the producer, waiting while its queue is full; a refusal is counted
/// against the record's line.
fn send(
    producer: &ThreadedProducer<ProduceContext>,
    mut record: BaseRecord<'_, [u8], [u8], usize>,
    line_number: usize,
) {
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(QUEUE_FULL_WAIT);
            }
            Err((error, _)) => {
                lock(producer).fail(line_number, &error);
                return;
            }
        }
    }
}

fn create_producer(
    connection: &Connection,
    args: &ProduceArgs,
) -> Result<ThreadedProducer<ProduceContext>> {
    let mut config = connection.client_config();
    config
        .set("acks", args.acks.as_rdkafka())
        .set("message.timeout.ms", args.delivery_timeout_ms.to_string())
        .set("compression.type", args.compression.as_rdkafka())
        .set("linger.ms", args.linger_ms.to_string());
    connection.apply_overrides(&mut config);
    config
        .create_with_context(ProduceContext::default())
        .map_err(|e| Error::kafka("creating the producer", e))
}

/// Reads line `line_number` of the input into `line`, without its line ending; false at the
/// end. A line longer than the limit is refused, not split.
fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>, line_number: usize) -> Result<bool> {
    line.clear();
    let read = (&mut *input)
        .take(LINE_BYTES_MAX + 1)
        .read_until(b'\n', line)
        .map_err(|e| Error::io("reading stdin", e))?;
    if read == 0 {
        return Ok(false);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    } else if line.len() as u64 > LINE_BYTES_MAX {
        return Err(Error::invalid(
            format!("line {line_number} of stdin"),
            format!("it is longer than {LINE_BYTES_MAX} bytes"),
        ));
    }
    Ok(true)
}

/// What was produced, as the output format shows it.
fn summary(output: OutputFormat, topic: &str, stats: &Stats) -> String {
    match output {
        OutputFormat::Json => {
            let partitions: Vec<_> = stats
            .partitions
            .iter()
            .map(|(p, (first, last, n))| {
                json!({ "partition": p, "first_offset": first, "last_offset": last, "records": n })
            })
            .collect();
            json!({
                "topic": topic,
                "records": stats.delivered,
                "failed": stats.failed,
                "partitions": partitions,
            })
            .to_string()
        }
        OutputFormat::Table => format!(
            "{} record(s) produced to {topic}{}",
            stats.delivered,
            if stats.failed > 0 {
                format!(", {} failed", stats.failed)
            } else {
                String::new()
            }
        ),
    }
}

fn lock(producer: &ThreadedProducer<ProduceContext>) -> std::sync::MutexGuard<'_, Stats> {
    producer
        .context()
        .stats
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Splits a line at the first separator: `(Some(key), value)`, or `(None, line)` without one.
fn split_key<'a>(line: &'a [u8], separator: Option<&[u8]>) -> (Option<&'a [u8]>, &'a [u8]) {
    let Some(sep) = separator else {
        return (None, line);
    };
    match line.windows(sep.len()).position(|w| w == sep) {
        Some(at) => (Some(&line[..at]), &line[at + sep.len()..]),
        None => (None, line),
    }
}

/// The topic exists (or is being auto-created) and has the requested partition.
fn check_target(metadata: &Metadata, topic: &str, partition: Option<i32>) -> Result<()> {
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(Error::TopicNotFound {
            topic: topic.to_string(),
        });
    };
    match t.error().map(RDKafkaErrorCode::from) {
        None => {}
        // Auto-creation in progress: librdkafka waits for the leader by itself.
        Some(RDKafkaErrorCode::LeaderNotAvailable) => return Ok(()),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
            return Err(Error::TopicNotFound {
                topic: topic.to_string(),
            });
        }
        Some(code) => {
            return Err(Error::Broker {
                what: format!("looking up topic {topic}"),
                code,
            });
        }
    }
    let partitions = i32::try_from(t.partitions().len()).unwrap_or(i32::MAX);
    match partition {
        Some(p) if p >= partitions => Err(Error::PartitionNotFound {
            topic: topic.to_string(),
            partition: p,
            partitions,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_the_part_before_the_first_separator() {
        assert_eq!(
            split_key(b"k:v:w", Some(b":")),
            (Some(&b"k"[..]), &b"v:w"[..])
        );
        assert_eq!(
            split_key(b"k::v", Some(b"::")),
            (Some(&b"k"[..]), &b"v"[..])
        );
        assert_eq!(split_key(b":v", Some(b":")), (Some(&b""[..]), &b"v"[..]));
        assert_eq!(split_key(b"novalue", Some(b":")), (None, &b"novalue"[..]));
        assert_eq!(split_key(b"k:v", None), (None, &b"k:v"[..]));
    }
}
