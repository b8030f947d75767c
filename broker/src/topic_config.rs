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
use weir_storage::{CleanupPolicy, DirtyRatio, LogConfig, TimestampType};

/// The broker default for a key, as DescribeConfigs shows it.
pub fn default_value(key: &str, defaults: &LogConfig) -> String {
    let opt = |v: Option<i64>| v.map_or("-1".to_string(), |v| v.to_string());
    match key {
        "cleanup.policy" => match defaults.cleanup_policy {
            CleanupPolicy::Delete => "delete".into(),
            CleanupPolicy::Compact => "compact".into(),
            CleanupPolicy::CompactDelete => "compact,delete".into(),
        },
        "delete.retention.ms" => defaults.delete_retention_ms.to_string(),
        "max.compaction.lag.ms" => defaults.max_compaction_lag_ms.to_string(),
        "min.cleanable.dirty.ratio" => defaults.min_cleanable_dirty_ratio.as_f64().to_string(),
        "min.compaction.lag.ms" => defaults.min_compaction_lag_ms.to_string(),
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
    if let Some(v) = overrides.get("cleanup.policy") {
        let has = |p: &str| v.split(',').any(|i| i.trim() == p);
        c.cleanup_policy = match (has("compact"), has("delete")) {
            (true, true) => CleanupPolicy::CompactDelete,
            (true, false) => CleanupPolicy::Compact,
            _ => CleanupPolicy::Delete,
        };
    }
    if let Some(v) = int("delete.retention.ms") {
        c.delete_retention_ms = v;
    }
    if let Some(v) = int("min.compaction.lag.ms") {
        c.min_compaction_lag_ms = v;
    }
    if let Some(v) = int("max.compaction.lag.ms") {
        c.max_compaction_lag_ms = v;
    }
    if let Some(v) = overrides
        .get("min.cleanable.dirty.ratio")
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        c.min_cleanable_dirty_ratio = DirtyRatio::from_f64(v);
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
        let e = validate("cleanup.policy", "compress")
            .unwrap_err()
            .to_string();
        assert!(e.contains("compact,delete"), "{e}");
        let e = validate("min.cleanable.dirty.ratio", "1.5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("from 0 to 1"), "{e}");
    }

    /// Proves: the compaction keys reach the storage config, and the policy list is read in
    /// any order.
    #[test]
    fn compaction_overrides_reach_the_log_config() {
        let d = LogConfig::default();
        let o = validate_all([
            ("cleanup.policy", Some("delete, compact")),
            ("delete.retention.ms", Some("1000")),
            ("min.cleanable.dirty.ratio", Some("0.01")),
            ("min.compaction.lag.ms", Some("5")),
            ("max.compaction.lag.ms", Some("60000")),
        ])
        .unwrap();
        assert_eq!(o["cleanup.policy"], "delete,compact");
        let c = log_config(&d, &o);
        assert_eq!(c.cleanup_policy, CleanupPolicy::CompactDelete);
        assert_eq!(c.delete_retention_ms, 1000);
        assert_eq!(c.min_cleanable_dirty_ratio, DirtyRatio::from_f64(0.01));
        assert_eq!(c.min_compaction_lag_ms, 5);
        assert_eq!(c.max_compaction_lag_ms, 60000);
        let compact = validate_all([("cleanup.policy", Some("compact"))]).unwrap();
        assert_eq!(
            log_config(&d, &compact).cleanup_policy,
            CleanupPolicy::Compact
        );
        assert_eq!(log_config(&d, &BTreeMap::new()), d);
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
