//! Typed values of the command line, parsed once with messages that say what is accepted.
//!
//! Each type implements `FromStr` so clap reports `invalid value '2' for '--acks <ACKS>': acks
//! must be 0, 1 or all` and exits with status 2 before any connection is made.

use std::fmt;
use std::str::FromStr;
use weir_model::TopicName;
use weir_model::limits::PARTITIONS_PER_TOPIC_MAX;

pub use weir_model::limits::BENCH_RECORD_BYTES_MAX;
pub use weir_model::limits::CLI_REQUEST_TIMEOUT_MS_MAX as REQUEST_TIMEOUT_MS_MAX;
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

pub use weir_model::limits::DEV_BROKERS_MAX;

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

pub use weir_model::limits::GROUP_ID_BYTES_MAX;

/// Clap value parser for a consumer group id: any non-empty text without control characters.
pub fn parse_group(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("a group id cannot be empty".to_string());
    }
    if s.len() > GROUP_ID_BYTES_MAX {
        return Err(format!(
            "a group id is at most {GROUP_ID_BYTES_MAX} bytes, got {}",
            s.len()
        ));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!(
            "group id {s:?} contains the control character {c:?}; use printable characters"
        ));
    }
    Ok(s.to_string())
}

/// `--topic T[:P,P...]`: a topic, and optionally some of its partitions (default: all of them).
/// Topic names cannot contain `:`, so the first `:` ends the name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicPartitions {
    pub topic: TopicName,
    /// `None`: every partition of the topic. Sorted, without duplicates.
    pub partitions: Option<Vec<i32>>,
}

impl FromStr for TopicPartitions {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const EXPECTED: &str =
            "expected TOPIC or TOPIC:PARTITION[,PARTITION...], e.g. orders or orders:0,2";
        let (name, list) = match s.split_once(':') {
            Some((name, list)) => (name, Some(list)),
            None => (s, None),
        };
        let topic = TopicName::new(name).map_err(|e| format!("{e}; {EXPECTED}"))?;
        let partitions = match list {
            None => None,
            Some(list) => {
                let mut partitions = Vec::new();
                for p in list.split(',') {
                    let p = p.trim();
                    if p.is_empty() {
                        return Err(format!("empty partition in {s:?}; {EXPECTED}"));
                    }
                    partitions.push(parse_partition(p).map_err(|e| format!("{e}; {EXPECTED}"))?);
                }
                partitions.sort_unstable();
                partitions.dedup();
                Some(partitions)
            }
        };
        Ok(TopicPartitions { topic, partitions })
    }
}

/// Clap value parser for an RFC 3339 time, e.g. `2024-05-01T12:00:00Z` or
/// `2024-05-01T14:00:00.250+02:00`, to milliseconds since the epoch. The zone is required, so
/// the same command means the same instant on every machine. Fractions finer than a
/// millisecond are cut off (Kafka timestamps are milliseconds).
pub fn parse_datetime_ms(s: &str) -> Result<i64, String> {
    const EXPECTED: &str = "expected an RFC 3339 time with a zone, such as 2024-05-01T12:00:00Z or 2024-05-01T14:00:00.250+02:00";
    let bad = |why: &str| format!("{s:?}: {why}; {EXPECTED}");
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = b.get(range).ok_or_else(|| bad("too short"))?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(bad("a date or time field is not a number"));
        }
        Ok(part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    if b.len() < 19 {
        return Err(bad("too short"));
    }
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad("not in the form YYYY-MM-DDTHH:MM:SS"));
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month) {
        return Err(bad("month must be 01 to 12"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(bad(&format!(
            "day must be 01 to {:02} in that month",
            days_in_month(year, month)
        )));
    }
    // 60: a leap second, which Kafka's clocks never show; it counts as the next second.
    if hour > 23 || minute > 59 || second > 60 {
        return Err(bad("the time must be 00:00:00 to 23:59:59"));
    }
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let len = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return Err(bad("a '.' must be followed by digits"));
        }
        for (d, scale) in fraction.bytes().take(len.min(3)).zip([100, 10, 1]) {
            millis += i64::from(d - b'0') * scale;
        }
        rest = &fraction[len..];
    }
    let offset_minutes = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()) =>
        {
            let hours = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let minutes = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            if hours > 23 || minutes > 59 {
                return Err(bad("the zone offset must be -23:59 to +23:59"));
            }
            let total = hours * 60 + minutes;
            if *sign == b'-' { -total } else { total }
        }
        [] => {
            return Err(bad(
                "the zone is missing: end with Z (UTC) or an offset like +02:00",
            ));
        }
        _ => return Err(bad("the zone must be Z or +HH:MM / -HH:MM")),
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    if seconds < 0 {
        return Err(bad(
            "times before 1970-01-01T00:00:00Z have no Kafka timestamp",
        ));
    }
    Ok(seconds * 1000 + millis)
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's `days_from_civil`: (year, month, day) to days since 1970-01-01, the inverse
/// of `output::civil_from_days`.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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

    #[test]
    fn group_ids_must_be_printable_and_non_empty() {
        assert_eq!(
            parse_group("orders-service"),
            Ok("orders-service".to_string())
        );
        assert_eq!(
            parse_group("with space/and:colon"),
            Ok("with space/and:colon".to_string())
        );
        assert!(parse_group("").unwrap_err().contains("cannot be empty"));
        assert!(
            parse_group("a\nb")
                .unwrap_err()
                .contains("control character")
        );
        let long = "g".repeat(GROUP_ID_BYTES_MAX + 1);
        assert!(parse_group(&long).unwrap_err().contains("at most"));
    }

    #[test]
    fn topic_partitions_take_a_topic_and_an_optional_partition_list() {
        let all: TopicPartitions = "orders".parse().unwrap();
        assert_eq!((all.topic.as_str(), all.partitions), ("orders", None));
        let some: TopicPartitions = "orders:2,0,2".parse().unwrap();
        assert_eq!(some.partitions, Some(vec![0, 2]));
        for bad in [
            "orders:",
            "orders:1,,2",
            "orders:x",
            "orders:-1",
            "bad name:0",
            ":0",
        ] {
            let e = bad.parse::<TopicPartitions>().unwrap_err();
            assert!(e.contains("TOPIC:PARTITION[,PARTITION...]"), "{bad}: {e}");
        }
    }

    #[test]
    fn datetimes_parse_as_rfc3339_with_a_zone() {
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_datetime_ms("2023-11-14T22:13:20Z"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_datetime_ms("2023-11-14T22:13:20.5Z"),
            Ok(1_700_000_000_500)
        );
        assert_eq!(
            parse_datetime_ms("2023-11-14T22:13:20.123456z"),
            Ok(1_700_000_000_123)
        );
        assert_eq!(
            parse_datetime_ms("2023-11-15T00:13:20+02:00"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_datetime_ms("2023-11-14t20:13:20-02:00"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_datetime_ms("2000-02-29 00:00:00.123Z"),
            Ok(951_782_400_123)
        );
        // Every date round-trips through the output formatter.
        for ms in [0, 951_782_400_123, 1_700_000_000_000, 4_102_444_799_999] {
            let text = crate::output::format_timestamp_ms(ms);
            assert_eq!(parse_datetime_ms(&text), Ok(ms), "{text}");
        }
        for (bad, why) in [
            ("2023-11-14T22:13:20", "zone is missing"),
            ("2023-11-14", "too short"),
            ("1700000000000", "too short"),
            ("2023-02-29T00:00:00Z", "day must be 01 to 28"),
            ("2023-13-01T00:00:00Z", "month must be"),
            ("2023-11-14T24:00:00Z", "00:00:00 to 23:59:59"),
            ("2023-11-14T22:13:20+2:00", "zone must be"),
            ("2023-11-14T22:13:20.Z", "followed by digits"),
            ("1969-12-31T23:59:59Z", "before 1970"),
            ("2023/11/14T22:13:20Z", "YYYY-MM-DDTHH:MM:SS"),
        ] {
            let e = parse_datetime_ms(bad).unwrap_err();
            assert!(e.contains(why) && e.contains("RFC 3339"), "{bad}: {e}");
        }
    }
}
