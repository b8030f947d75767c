//! `weir consume`: print a topic's records.
//!
//! The consumer assigns partitions itself (all, or `--partition`) and never joins a consumer
//! group or commits offsets, so it works on clusters without group support (Weir today).
//!
//! Without `--follow` or `--count` it stops at each partition's high watermark as read when it
//! starts: records produced afterwards are not printed. `--count N` stops after N records (and
//! waits for them); `--follow` runs until Ctrl-C.

use crate::client::{CliContext, Connection, fetch_metadata, stop_flag};
use crate::config::{OutputFormat, StartFrom, parse_partition, parse_topic};
use crate::error::{Error, Result};
use crate::output::{display_bytes, format_timestamp_ms, json_bytes};
use crate::topic::find_topic;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientConfig, Offset, Timestamp, TopicPartitionList};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use weir_model::TopicName;

/// Longest single wait in the poll loop, so Ctrl-C and timeouts are noticed promptly.
const POLL_SLICE: Duration = Duration::from_millis(100);

#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// The topic to read.
    #[arg(long, short = 't', value_parser = parse_topic)]
    pub topic: TopicName,
    /// Where to start in each partition: beginning, end, offset:N or timestamp:MS (ms since
    /// the epoch; the first record at or after it).
    #[arg(long, short = 'f', default_value = "beginning")]
    pub from: StartFrom,
    /// Read only this partition (default: all).
    #[arg(long, short = 'p', value_parser = parse_partition)]
    pub partition: Option<i32>,
    /// Stop after this many records, waiting for new ones if needed.
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Keep waiting for new records until Ctrl-C instead of stopping at the end.
    #[arg(long, short = 'F')]
    pub follow: bool,
    /// Stop when no record arrives for this many milliseconds; an error if `--count` was not
    /// reached, or the end not reached (without --follow). Default: wait as long as needed,
    /// except that reading to the end gives up after --request-timeout-ms without progress.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: Option<u64>,
}

pub async fn run(connection: &Connection, output: OutputFormat, args: ConsumeArgs) -> Result<()> {
    let connection = connection.clone();
    let stop = stop_flag();
    tokio::task::spawn_blocking(move || consume(&connection, output, &args, &stop))
        .await
        .map_err(|_join| Error::Panicked { what: "consume" })?
}

fn consume(
    connection: &Connection,
    output: OutputFormat,
    args: &ConsumeArgs,
    stop: &Arc<AtomicBool>,
) -> Result<()> {
    let topic = args.topic.as_str();
    let consumer = create_consumer(connection)?;
    let partitions = partitions_of(&consumer, connection, topic, args.partition)?;

    // Stop at the high watermark as of now: only without --count and --follow.
    let bounded = args.count.is_none() && !args.follow;
    let Some(mut stop_at) = assign(&consumer, connection, args, &partitions, bounded)? else {
        return Ok(());
    };

    let idle_limit = args
        .timeout_ms
        .map(Duration::from_millis)
        .or(bounded.then_some(connection.request_timeout));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    write_header(&mut out, output)?;
    let mut received = 0u64;
    let mut last_progress = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        // Flush before blocking, so records show up as they arrive in --follow.
        let mut polled = consumer.poll(Duration::ZERO);
        if polled.is_none() {
            out.flush().map_err(|e| Error::io("writing to stdout", e))?;
            polled = consumer.poll(POLL_SLICE);
        }
        match polled {
            None => {
                let idle = last_progress.elapsed();
                if let Some(limit) = idle_limit.filter(|limit| idle >= *limit) {
                    return idle_end(args, bounded, received, &stop_at, limit, &mut out);
                }
            }
            Some(Ok(message)) => {
                last_progress = Instant::now();
                let p = message.partition();
                if bounded && !within_end(&mut stop_at, p, message.offset()) {
                    if stop_at.is_empty() {
                        break;
                    }
                    continue;
                }
                write_record(&mut out, output, &message)?;
                received += 1;
                if args.count.is_some_and(|n| received >= n) || (bounded && stop_at.is_empty()) {
                    break;
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                // The end now is at or past the end when we started (high watermarks only
                // grow), so a bounded read of this partition is complete.
                last_progress = Instant::now();
                if bounded && stop_at.remove(&p).is_some() && stop_at.is_empty() {
                    break;
                }
            }
            Some(Err(KafkaError::MessageConsumption(
                code @ (RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable),
            ))) => {
                // librdkafka reconnects and refreshes leaders by itself; the idle limit bounds it.
                tracing::warn!(topic, error = %code, "consumer error, retrying");
            }
            Some(Err(error)) => return Err(Error::kafka(format!("reading {topic}"), error)),
        }
    }
    out.flush().map_err(|e| Error::io("writing to stdout", e))?;
    Ok(())
}

/// Assigns the partitions from where `--from` says. When `bounded`, returns the end offset of
/// each partition with something to read (None: nothing to read at all).
fn assign(
    consumer: &BaseConsumer<CliContext>,
    connection: &Connection,
    args: &ConsumeArgs,
    partitions: &[i32],
    bounded: bool,
) -> Result<Option<BTreeMap<i32, i64>>> {
    let topic = args.topic.as_str();
    let mut stop_at: BTreeMap<i32, i64> = BTreeMap::new();
    if bounded {
        for &p in partitions {
            let (_low, high) = consumer
                .fetch_watermarks(topic, p, connection.request_timeout)
                .map_err(|e| Error::kafka(format!("reading the end offset of {topic}/{p}"), e))?;
            stop_at.insert(p, high);
        }
    }

    let starts = start_offsets(consumer, connection, topic, partitions, args.from)?;
    let mut assignment = TopicPartitionList::new();
    for (&p, &start) in &starts {
        if bounded {
            let end = stop_at[&p];
            // Nothing to read: the start is at or past the end we stop at.
            let empty = match start {
                Offset::End => true,
                Offset::Offset(o) => o >= end,
                _ => end == 0,
            };
            if empty {
                stop_at.remove(&p);
                continue;
            }
        }
        assignment
            .add_partition_offset(topic, p, start)
            .map_err(|e| Error::kafka(format!("assigning {topic}/{p}"), e))?;
    }
    if bounded && stop_at.is_empty() {
        return Ok(None);
    }
    consumer
        .assign(&assignment)
        .map_err(|e| Error::kafka(format!("assigning the partitions of {topic}"), e))?;
    Ok(Some(stop_at))
}

/// Whether a bounded read shows a record of partition `p` at `offset`: it must be below the
/// partition's end offset. The partition is done (removed) with its last record before the
/// end, or with the first at or past it.
fn within_end(stop_at: &mut BTreeMap<i32, i64>, p: i32, offset: i64) -> bool {
    let Some(&end) = stop_at.get(&p) else {
        return false;
    };
    if offset + 1 >= end {
        stop_at.remove(&p);
    }
    offset < end
}

fn write_header(out: &mut impl Write, output: OutputFormat) -> Result<()> {
    if output == OutputFormat::Table {
        writeln!(
            out,
            "{}",
            table_line(
                "PARTITION",
                "OFFSET",
                "TIMESTAMP",
                "KEY",
                "HEADERS",
                "VALUE"
            )
        )
        .map_err(|e| Error::io("writing to stdout", e))?;
    }
    Ok(())
}

/// Nothing came for `limit`: with --count or a bounded read that is an error; with --follow
/// and --timeout-ms, the end.
fn idle_end(
    args: &ConsumeArgs,
    bounded: bool,
    received: u64,
    stop_at: &BTreeMap<i32, i64>,
    limit: Duration,
    out: &mut impl Write,
) -> Result<()> {
    let topic = args.topic.as_str();
    let timeout_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
    if let Some(wanted) = args.count {
        return Err(Error::Incomplete {
            received,
            wanted,
            timeout_ms,
        });
    }
    if bounded {
        return Err(Error::invalid(
            format!("reading {topic} to its end"),
            format!(
                "received {received} record(s), then nothing for {timeout_ms} ms; the partitions not finished: {:?}",
                stop_at.keys().collect::<Vec<_>>()
            ),
        ));
    }
    out.flush().map_err(|e| Error::io("writing to stdout", e))
}

/// A consumer for manual assignment: no group membership, no commits, no auto-created topics.
pub fn create_consumer(connection: &Connection) -> Result<BaseConsumer<CliContext>> {
    let mut config = consumer_config(connection);
    connection.apply_overrides(&mut config);
    config
        .create_with_context(CliContext)
        .map_err(|e| Error::kafka("creating the consumer", e))
}

/// Settings of [`create_consumer`], before the `-X` overrides.
pub fn consumer_config(connection: &Connection) -> ClientConfig {
    let mut config = connection.client_config();
    config
        // librdkafka refuses assign() without a group.id ("Local: Unknown group") though it
        // never joins the group for a manual assignment; with commits off, the group is only
        // looked up (FindCoordinator) and a broker without groups does not stop fetching.
        .set("group.id", format!("weir-cli-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("allow.auto.create.topics", "false")
        // offset:N below the log start reads from the log start.
        .set("auto.offset.reset", "earliest");
    config
}

/// The topic's partitions, or the one requested after checking it exists.
pub fn partitions_of(
    consumer: &BaseConsumer<CliContext>,
    connection: &Connection,
    topic: &str,
    partition: Option<i32>,
) -> Result<Vec<i32>> {
    let metadata = fetch_metadata(consumer.client(), connection, Some(topic))?;
    let t = find_topic(&metadata, topic)?;
    let mut all: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    all.sort_unstable();
    match partition {
        None => Ok(all),
        Some(p) if all.contains(&p) => Ok(vec![p]),
        Some(p) => Err(Error::PartitionNotFound {
            topic: topic.to_string(),
            partition: p,
            partitions: i32::try_from(all.len()).unwrap_or(i32::MAX),
        }),
    }
}

/// Resolves `--from` to an offset in each partition (ListOffsets for timestamps).
fn start_offsets(
    consumer: &BaseConsumer<CliContext>,
    connection: &Connection,
    topic: &str,
    partitions: &[i32],
    from: StartFrom,
) -> Result<BTreeMap<i32, Offset>> {
    let fixed = |offset: Offset| partitions.iter().map(|&p| (p, offset)).collect();
    match from {
        StartFrom::Beginning => Ok(fixed(Offset::Beginning)),
        StartFrom::End => Ok(fixed(Offset::End)),
        StartFrom::Offset(n) => Ok(fixed(Offset::Offset(n))),
        StartFrom::Timestamp(ms) => {
            let mut query = TopicPartitionList::new();
            for &p in partitions {
                query
                    .add_partition_offset(topic, p, Offset::Offset(ms))
                    .map_err(|e| Error::kafka("building the timestamp query", e))?;
            }
            let found = consumer
                .offsets_for_times(query, connection.request_timeout)
                .map_err(|e| Error::kafka(format!("finding offsets of {topic} by timestamp"), e))?;
            let mut starts = BTreeMap::new();
            for element in found.elements() {
                element.error().map_err(|e| {
                    Error::kafka(
                        format!(
                            "finding offsets of {topic}/{} by timestamp",
                            element.partition()
                        ),
                        e,
                    )
                })?;
                // No record at or after the timestamp: start at the end.
                let offset = match element.offset() {
                    Offset::Offset(o) if o >= 0 => Offset::Offset(o),
                    _ => Offset::End,
                };
                starts.insert(element.partition(), offset);
            }
            Ok(starts)
        }
    }
}

fn table_line(p: &str, o: &str, ts: &str, key: &str, headers: &str, value: &str) -> String {
    format!("{p:<9}  {o:<8}  {ts:<24}  {key:<10}  {headers:<10}  {value}")
}

fn write_record(
    out: &mut impl Write,
    output: OutputFormat,
    message: &BorrowedMessage<'_>,
) -> Result<()> {
    let written = match output {
        OutputFormat::Table => {
            let timestamp = message
                .timestamp()
                .to_millis()
                .map(format_timestamp_ms)
                .unwrap_or_else(|| "-".to_string());
            let key = message
                .key()
                .map(display_bytes)
                .unwrap_or_else(|| "-".to_string());
            let headers = match message.headers() {
                Some(headers) if headers.count() > 0 => headers
                    .iter()
                    .map(|h| match h.value {
                        Some(v) => {
                            format!("{}={}", display_bytes(h.key.as_bytes()), display_bytes(v))
                        }
                        None => display_bytes(h.key.as_bytes()),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                _ => "-".to_string(),
            };
            let value = message
                .payload()
                .map(display_bytes)
                .unwrap_or_else(|| "-".to_string());
            writeln!(
                out,
                "{}",
                table_line(
                    &message.partition().to_string(),
                    &message.offset().to_string(),
                    &timestamp,
                    &key,
                    &headers,
                    &value
                )
            )
        }
        OutputFormat::Json => writeln!(out, "{}", record_json(message)),
    };
    written.map_err(|e| Error::io("writing to stdout", e))
}

fn record_json(message: &BorrowedMessage<'_>) -> serde_json::Value {
    let (timestamp, timestamp_type) = match message.timestamp() {
        Timestamp::NotAvailable => (None, None),
        t @ Timestamp::CreateTime(_) => (t.to_millis(), Some("create")),
        t @ Timestamp::LogAppendTime(_) => (t.to_millis(), Some("log_append")),
    };
    let headers: Vec<_> = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| json!({ "key": h.key, "value": h.value.map(json_bytes) }))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp": timestamp,
        "timestamp_type": timestamp_type,
        "key": message.key().map(json_bytes),
        "headers": headers,
        "value": message.payload().map(json_bytes),
    })
}
