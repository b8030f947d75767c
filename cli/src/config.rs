//! Typed values of the command line, parsed once with messages that say what is accepted.
//!
//! Each type implements `FromStr` so clap reports `invalid value '2' for '--acks <ACKS>': acks
//! must be 0, 1 or all` and exits with status 2 before any connection is made.

use std::fmt;
use std::str::FromStr;
use weir_model::TopicName;
use weir_model::limits::PARTITIONS_PER_TOPIC_MAX;

/// The longest `--request-timeout-ms` we accept: an admin call that needs more is a broken call.
pub const REQUEST_TIMEOUT_MS_MAX: u64 = 10 * 60 * 1000;
/// The largest bench record value; larger ones exceed Kafka's default `message.max.bytes`.
pub const BENCH_RECORD_BYTES_MAX: usize = 1_000_000;
const _: () =
    assert!(BENCH_RECORD_BYTES_MAX <= weir_model::limits::MESSAGE_BYTES_MAX_DEFAULT as usize);

/// `--output`: tables for people, JSON for scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// Producer `acks`: how many replicas must have a record before it counts as delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// Fire and forget: no response from the broker.
    None,
    /// The leader has it.
    Leader,
    /// Every in-sync replica has it.
    All,
}

impl Acks {
    /// The value of librdkafka's `acks` property.
    pub fn as_rdkafka(self) -> &'static str {
        match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        }
    }
}

impl FromStr for Acks {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            _ => Err("acks must be 0, 1 or all".to_string()),
        }
    }
}

impl fmt::Display for Acks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_rdkafka())
    }
}

/// Producer `compression.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_rdkafka(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Where `weir consume` starts in each partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    Beginning,
    End,
    /// This offset in every assigned partition (clamped by the broker's offset reset policy:
    /// we use `earliest`, so an offset below the log start reads from the log start).
    Offset(i64),
    /// The first record whose timestamp is at or after this many milliseconds since the epoch.
    Timestamp(i64),
}

impl FromStr for StartFrom {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const EXPECTED: &str = "expected beginning, end, offset:N or timestamp:MS";
        match s {
            "beginning" | "earliest" => return Ok(StartFrom::Beginning),
            "end" | "latest" => return Ok(StartFrom::End),
            _ => {}
        }
        if let Some(n) = s.strip_prefix("offset:") {
            let n: i64 = n
                .parse()
                .map_err(|e| format!("offset {n:?} is not a number ({e}); {EXPECTED}"))?;
            if n < 0 {
                return Err(format!("offset must be 0 or more, got {n}"));
            }
            return Ok(StartFrom::Offset(n));
        }
        if let Some(ms) = s.strip_prefix("timestamp:") {
            let ms: i64 = ms.parse().map_err(|e| {
                format!("timestamp {ms:?} is not a number of milliseconds since the epoch ({e})")
            })?;
            if ms < 0 {
                return Err(format!("timestamp must be 0 or more, got {ms}"));
            }
            return Ok(StartFrom::Timestamp(ms));
        }
        Err(format!("unknown start position {s:?}; {EXPECTED}"))
    }
}

/// A `key=value` pair from `--config`, `--header` or `--property`. The value may contain `=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

impl FromStr for KeyValue {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok(KeyValue {
                key: k.to_string(),
                value: v.to_string(),
            }),
            _ => Err(format!("expected KEY=VALUE, got {s:?}")),
        }
    }
}

/// `--brokers`: a comma-separated list of `host:port`, checked so a typo fails here and not
/// after a connection timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Brokers(String);

impl Brokers {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `weir dev --brokers N`: a number instead of addresses is how many brokers to run.
    pub fn count(&self) -> Option<u16> {
        self.0.parse().ok()
    }
}

/// The most brokers `weir dev --brokers N` runs in one process.
pub const DEV_BROKERS_MAX: u16 = 9;

impl fmt::Display for Brokers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Brokers {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(n) = s.trim().parse::<u16>() {
            return if (1..=DEV_BROKERS_MAX).contains(&n) {
                Ok(Brokers(n.to_string()))
            } else {
                Err(format!(
                    "a broker count (for `weir dev`) must be from 1 to {DEV_BROKERS_MAX}; other commands take HOST:PORT[,HOST:PORT...]"
                ))
            };
        }
        let mut list = Vec::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (host, port) = entry
                .rsplit_once(':')
                .ok_or_else(|| format!("broker {entry:?} has no port; expected HOST:PORT"))?;
            if host.is_empty() {
                return Err(format!("broker {entry:?} has no host; expected HOST:PORT"));
            }
            match port.parse::<u16>() {
                Ok(p) if p > 0 => {}
                _ => return Err(format!("broker {entry:?}: port must be 1 to 65535")),
            }
            list.push(entry);
        }
        if list.is_empty() {
            return Err("expected at least one HOST:PORT".to_string());
        }
        Ok(Brokers(list.join(",")))
    }
}

/// Clap value parser for topic names, using Kafka's rules from `weir-model`.
pub fn parse_topic(s: &str) -> Result<TopicName, String> {
    TopicName::new(s).map_err(|e| e.to_string())
}

/// Clap value parser for partition counts.
pub fn parse_partition_count(s: &str) -> Result<i32, String> {
    let n: i32 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number ({e})"))?;
    if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&n) {
        return Err(format!(
            "partitions must be 1 to {PARTITIONS_PER_TOPIC_MAX}, got {n}"
        ));
    }
    Ok(n)
}

/// Clap value parser for a partition id.
pub fn parse_partition(s: &str) -> Result<i32, String> {
    let n: i32 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number ({e})"))?;
    if !(0..PARTITIONS_PER_TOPIC_MAX).contains(&n) {
        return Err(format!(
            "partition must be 0 to {}, got {n}",
            PARTITIONS_PER_TOPIC_MAX - 1
        ));
    }
    Ok(n)
}

/// Clap value parser for a bench record size.
pub fn parse_record_bytes(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number ({e})"))?;
    if !(1..=BENCH_RECORD_BYTES_MAX).contains(&n) {
        return Err(format!(
            "record size must be 1 to {BENCH_RECORD_BYTES_MAX} bytes, got {n}"
        ));
    }
    Ok(n)
}

/// Clap value parser for `--request-timeout-ms`.
pub fn parse_request_timeout_ms(s: &str) -> Result<u64, String> {
    let n: u64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number ({e})"))?;
    if !(1..=REQUEST_TIMEOUT_MS_MAX).contains(&n) {
        return Err(format!(
            "request timeout must be 1 to {REQUEST_TIMEOUT_MS_MAX} ms, got {n}"
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_accepts_kafka_spellings_and_names_them_on_error() {
        assert_eq!("0".parse(), Ok(Acks::None));
        assert_eq!("1".parse(), Ok(Acks::Leader));
        assert_eq!("all".parse(), Ok(Acks::All));
        assert_eq!("-1".parse(), Ok(Acks::All));
        assert_eq!(
            "2".parse::<Acks>(),
            Err("acks must be 0, 1 or all".to_string())
        );
    }

    #[test]
    fn start_from_parses_every_form() {
        assert_eq!("beginning".parse(), Ok(StartFrom::Beginning));
        assert_eq!("end".parse(), Ok(StartFrom::End));
        assert_eq!("offset:42".parse(), Ok(StartFrom::Offset(42)));
        assert_eq!(
            "timestamp:1700000000000".parse(),
            Ok(StartFrom::Timestamp(1_700_000_000_000))
        );
        let e = "offset:x".parse::<StartFrom>().unwrap_err();
        assert!(e.contains("offset:N"), "{e}");
        assert!("offset:-1".parse::<StartFrom>().is_err());
        assert!(
            "middle"
                .parse::<StartFrom>()
                .unwrap_err()
                .contains("beginning")
        );
    }

    #[test]
    fn key_value_splits_on_the_first_equals() {
        let kv: KeyValue = "a=b=c".parse().unwrap();
        assert_eq!((kv.key.as_str(), kv.value.as_str()), ("a", "b=c"));
        let kv: KeyValue = "empty=".parse().unwrap();
        assert_eq!(kv.value, "");
        assert!("novalue".parse::<KeyValue>().is_err());
        assert!("=v".parse::<KeyValue>().is_err());
    }

    #[test]
    fn brokers_need_host_and_port() {
        let b: Brokers = "127.0.0.1:9092, kafka:19092".parse().unwrap();
        assert_eq!(b.as_str(), "127.0.0.1:9092,kafka:19092");
        assert!("[::1]:9092".parse::<Brokers>().is_ok());
        assert!(
            "localhost"
                .parse::<Brokers>()
                .unwrap_err()
                .contains("no port")
        );
        assert!("localhost:0".parse::<Brokers>().is_err());
        assert!("localhost:99999".parse::<Brokers>().is_err());
        assert!(":9092".parse::<Brokers>().is_err());
        assert!(",".parse::<Brokers>().is_err());
    }

    #[test]
    fn numeric_parsers_enforce_their_ranges() {
        assert_eq!(parse_partition_count("3"), Ok(3));
        assert!(parse_partition_count("0").is_err());
        assert!(parse_partition_count("10001").is_err());
        assert_eq!(parse_partition("0"), Ok(0));
        assert!(parse_partition("-1").is_err());
        assert!(parse_record_bytes("0").is_err());
        assert!(parse_request_timeout_ms("0").is_err());
        assert!(parse_topic("bad name").is_err());
        assert!(parse_topic("good.name-1").is_ok());
    }
}
