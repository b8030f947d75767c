//! Topic configuration keys: which ones Weir honours and what values each allows.
//!
//! Shared by the broker (Kafka admin requests) and the coordinator (its own admin API), so a
//! topic config is refused the same way whichever door it comes through. Unknown keys and
//! values out of range are refused with a message that says what is allowed.

use crate::limits;
use std::collections::BTreeMap;

/// How a config value is typed, for DescribeConfigs' `config_type` (v3+).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigKind {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
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
        doc: "\"delete\" (retention by time and size), \"compact\" (keep the newest record of every key; keyless records are refused) or \"compact,delete\" (both).",
    },
    ConfigKey {
        name: "compression.type",
        kind: ConfigKind::String,
        doc: "Only \"producer\": batches are stored as the producer compressed them.",
    },
    ConfigKey {
        name: "delete.retention.ms",
        kind: ConfigKind::Long,
        doc: "How long a tombstone (null value) stays in a compacted log after it was first cleaned, so consumers see the deletion.",
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
        name: "max.compaction.lag.ms",
        kind: ConfigKind::Long,
        doc: "Longest a record stays uncompacted: a dirty segment older than this is cleaned whatever the dirty ratio.",
    },
    ConfigKey {
        name: "min.cleanable.dirty.ratio",
        kind: ConfigKind::Double,
        doc: "Share of a compacted log (0 to 1) that must be uncleaned before the cleaner rewrites it.",
    },
    ConfigKey {
        name: "min.compaction.lag.ms",
        kind: ConfigKind::Long,
        doc: "Records younger than this are not compacted.",
    },
    ConfigKey {
        name: "min.insync.replicas",
        kind: ConfigKind::Int,
        doc: "Replicas that must hold a record before acks=all is answered.",
    },
    ConfigKey {
        name: "unclean.leader.election.enable",
        kind: ConfigKind::Boolean,
        doc: "Whether an out-of-sync replica may become leader when no in-sync one is left, at the cost of losing records.",
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
        "cleanup.policy" => {
            // A list, as in Kafka: "compact,delete" and "delete,compact" mean the same.
            let mut items: Vec<&str> = Vec::new();
            for item in value.split(',').map(str::trim) {
                if !matches!(item, "delete" | "compact") {
                    return Err(invalid("delete, compact, or compact,delete"));
                }
                if !items.contains(&item) {
                    items.push(item);
                }
            }
            Ok(items.join(","))
        }
        "delete.retention.ms" | "min.compaction.lag.ms" => int_in(0, i64::MAX),
        "max.compaction.lag.ms" => int_in(1, i64::MAX),
        "min.cleanable.dirty.ratio" => match value.trim().parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(value.trim().to_string()),
            _ => Err(invalid("a number from 0 to 1")),
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
        "unclean.leader.election.enable" => match value.trim() {
            "true" | "false" => Ok(value.trim().to_string()),
            _ => Err(invalid("true or false")),
        },
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
