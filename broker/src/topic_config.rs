//! Per-topic configuration: the keys Weir honours, their validation, and their mapping onto
//! the storage engine's [`LogConfig`].
//!
//! A topic stores only the keys a user set (`overrides`); everything else comes from the
//! broker's defaults, as in Kafka. Unknown keys and values out of range are refused with a
//! message that says what is allowed, never stored and silently ignored.

use std::collections::BTreeMap;
pub use weir_model::topic_config::{
    ConfigError, ConfigKey, ConfigKind, TOPIC_CONFIG_KEYS, validate, validate_all,
};
use weir_storage::{LogConfig, TimestampType};

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
        "unclean.leader.election.enable" => "false".into(),
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
