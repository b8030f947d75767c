//! Per-topic configuration: the keys Weir honours, their validation, and their mapping onto
//! the storage engine's [`LogConfig`].
//!
//! A topic stores only the keys a user set (`overrides`); everything else comes from the
//! broker's defaults, as in Kafka. Unknown keys and values out of range are refused with a
//! message that says what is allowed, never stored and silently ignored.

use std::collections::BTreeMap;
use weir_model::limits;
use weir_storage::{LogConfig, TimestampType};

/// How a config value is typed, for DescribeConfigs' `config_type` (v3+).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigKind {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    List = 7,
}

/// One topic config key Weir understands.
#[derive(Debug)]
pub struct ConfigKey {
    pub name: &'static str,
    pub kind: ConfigKind,
    pub doc: &'static str,
}

/// Every topic config key accepted, in the order DescribeConfigs lists them.
pub const TOPIC_CONFIG_KEYS: &[ConfigKey] = &[
    ConfigKey {
        name: "cleanup.policy",
        kind: ConfigKind::List,
        doc: "Only \"delete\" is supported in this release; log compaction comes later.",
    },
    ConfigKey {
        name: "compression.type",
        kind: ConfigKind::String,
        doc: "Only \"producer\": batches are stored as the producer compressed them.",
    },
    ConfigKey {
        name: "flush.messages",
        kind: ConfigKind::Long,
        doc: "fsync after this many records; 1 means every append.",
    },
    ConfigKey {
        name: "flush.ms",
        kind: ConfigKind::Long,
        doc: "fsync at least this often, in milliseconds.",
    },
    ConfigKey {
        name: "index.interval.bytes",
        kind: ConfigKind::Int,
        doc: "Bytes of log between sparse index entries.",
    },
    ConfigKey {
        name: "max.message.bytes",
        kind: ConfigKind::Int,
        doc: "Largest record batch the topic accepts.",
    },
    ConfigKey {
        name: "message.timestamp.type",
        kind: ConfigKind::String,
        doc: "CreateTime or LogAppendTime.",
    },
    ConfigKey {
        name: "min.insync.replicas",
        kind: ConfigKind::Int,
        doc: "Replicas that must hold a record before acks=all is answered.",
    },
    ConfigKey {
        name: "retention.bytes",
        kind: ConfigKind::Long,
        doc: "Largest size of a partition's log before old segments are deleted; -1 for no limit.",
    },
    ConfigKey {
        name: "retention.ms",
        kind: ConfigKind::Long,
        doc: "How long records are kept; -1 for ever.",
    },
    ConfigKey {
        name: "segment.bytes",
        kind: ConfigKind::Int,
        doc: "Size at which a segment file is rolled.",
    },
    ConfigKey {
        name: "segment.ms",
        kind: ConfigKind::Long,
        doc: "Age at which a segment file is rolled.",
    },
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown topic config {key:?}; known keys: {known}")]
    UnknownKey { key: String, known: String },
    #[error("invalid value {value:?} for {key}: {allowed}")]
    InvalidValue {
        key: String,
        value: String,
        allowed: String,
    },
    #[error("config {key} has no value")]
    MissingValue { key: String },
}

/// Checks one key and value, returning the value as it will be stored.
pub fn validate(key: &str, value: &str) -> Result<String, ConfigError> {
    let invalid = |allowed: &str| ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        allowed: allowed.to_string(),
    };
    let int_in = |lo: i64, hi: i64| -> Result<String, ConfigError> {
        match value.trim().parse::<i64>() {
            Ok(v) if (lo..=hi).contains(&v) => Ok(v.to_string()),
            _ => Err(invalid(&format!("an integer from {lo} to {hi}"))),
        }
    };
    match key {
        "cleanup.policy" => match value.trim() {
            "delete" => Ok("delete".into()),
            _ => Err(invalid("\"delete\" (compaction is not supported yet)")),
        },
        "compression.type" => match value.trim() {
            "producer" => Ok("producer".into()),
            _ => Err(invalid(
                "\"producer\" (Weir stores batches as the producer compressed them)",
            )),
        },
        "flush.messages" | "flush.ms" => int_in(1, i64::MAX),
        "index.interval.bytes" => int_in(0, i32::MAX as i64),
        "max.message.bytes" => int_in(0, limits::REQUEST_BYTES_MAX_DEFAULT as i64),
        "message.timestamp.type" => match value.trim() {
            "CreateTime" | "LogAppendTime" => Ok(value.trim().to_string()),
            _ => Err(invalid("CreateTime or LogAppendTime")),
        },
        "min.insync.replicas" => int_in(1, i32::MAX as i64),
        "retention.bytes" | "retention.ms" => int_in(-1, i64::MAX),
        "segment.bytes" => int_in(
            limits::SEGMENT_BYTES_MIN as i64,
            limits::SEGMENT_BYTES_MAX as i64,
        ),
        "segment.ms" => int_in(1, i64::MAX),
        _ => Err(ConfigError::UnknownKey {
            key: key.to_string(),
            known: TOPIC_CONFIG_KEYS
                .iter()
                .map(|k| k.name)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Validates a whole set of overrides, as CreateTopics and AlterConfigs bring them.
pub fn validate_all<'a>(
    entries: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for (key, value) in entries {
        let value = value.ok_or_else(|| ConfigError::MissingValue {
            key: key.to_string(),
        })?;
        out.insert(key.to_string(), validate(key, value)?);
    }
    Ok(out)
}

/// The broker default for a key, as DescribeConfigs shows it.
pub fn default_value(key: &str, defaults: &LogConfig) -> String {
    let opt = |v: Option<i64>| v.map_or("-1".to_string(), |v| v.to_string());
    match key {
        "cleanup.policy" => "delete".into(),
        "compression.type" => "producer".into(),
        "flush.messages" => defaults
            .flush_messages
            .map_or(i64::MAX.to_string(), |v| v.to_string()),
        "flush.ms" => defaults
            .flush_ms
            .map_or(i64::MAX.to_string(), |v| v.to_string()),
        "index.interval.bytes" => defaults.index_interval_bytes.to_string(),
        "max.message.bytes" => defaults.max_message_bytes.to_string(),
        "message.timestamp.type" => match defaults.timestamp_type {
            TimestampType::CreateTime => "CreateTime".into(),
            TimestampType::LogAppendTime => "LogAppendTime".into(),
        },
        "min.insync.replicas" => "1".into(),
        "retention.bytes" => opt(defaults.retention_bytes.map(|v| v as i64)),
        "retention.ms" => opt(defaults.retention_ms),
        "segment.bytes" => defaults.segment_bytes.to_string(),
        "segment.ms" => defaults.segment_ms.to_string(),
        _ => String::new(),
    }
}

/// The storage config for a topic: broker defaults with the topic's overrides on top.
/// Overrides were validated when they were stored, so parsing here cannot fail; a value that
/// does not parse (a hand-edited metadata file) keeps the default.
pub fn log_config(defaults: &LogConfig, overrides: &BTreeMap<String, String>) -> LogConfig {
    let mut c = defaults.clone();
    let int = |k: &str| overrides.get(k).and_then(|v| v.parse::<i64>().ok());
    if let Some(v) = int("flush.messages") {
        c.flush_messages = (v > 0 && v < i64::MAX).then_some(v as u64);
    }
    if let Some(v) = int("flush.ms") {
        c.flush_ms = (v < i64::MAX).then_some(v);
    }
    if let Some(v) = int("index.interval.bytes") {
        c.index_interval_bytes = v as u32;
    }
    if let Some(v) = int("max.message.bytes") {
        c.max_message_bytes = v as u32;
    }
    if let Some(v) = overrides.get("message.timestamp.type") {
        c.timestamp_type = if v == "LogAppendTime" {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        };
    }
    if let Some(v) = int("retention.bytes") {
        c.retention_bytes = (v >= 0).then_some(v as u64);
    }
    if let Some(v) = int("retention.ms") {
        c.retention_ms = (v >= 0).then_some(v);
    }
    if let Some(v) = int("segment.bytes") {
        c.segment_bytes = v as u64;
    }
    if let Some(v) = int("segment.ms") {
        c.segment_ms = v;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_key_validates_its_default() {
        let d = LogConfig::default();
        for key in TOPIC_CONFIG_KEYS {
            let v = default_value(key.name, &d);
            assert!(
                validate(key.name, &v).is_ok(),
                "{} default {v:?} refused",
                key.name
            );
        }
    }

    #[test]
    fn refusals_say_what_is_allowed() {
        let e = validate("retention.ms", "soon").unwrap_err().to_string();
        assert!(e.contains("an integer from -1"), "{e}");
        let e = validate("retention.mss", "1").unwrap_err().to_string();
        assert!(
            e.contains("known keys") && e.contains("retention.ms"),
            "{e}"
        );
        let e = validate("cleanup.policy", "compact")
            .unwrap_err()
            .to_string();
        assert!(e.contains("delete"), "{e}");
    }

    #[test]
    fn overrides_reach_the_log_config() {
        let d = LogConfig::default();
        let o = validate_all([
            ("retention.ms", Some("-1")),
            ("segment.bytes", Some("1048576")),
        ])
        .unwrap();
        let c = log_config(&d, &o);
        assert_eq!(c.retention_ms, None);
        assert_eq!(c.segment_bytes, 1048576);
        assert_eq!(c.retention_bytes, d.retention_bytes);
    }
}
