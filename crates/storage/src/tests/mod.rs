//! Tests of the whole log through its public API, on real files in temporary directories.

mod basic;
mod compaction;
mod idempotence;
mod log_props;
mod recovery;
mod replica;

use crate::testing::{BatchSpec, DecodedRecord, decode_records, encode_batch};
use crate::{AppendOutcome, LogConfig, PartitionLog};
use weir_model::{LeaderEpoch, Offset, Timestamp};

pub(crate) const NOW: Timestamp = Timestamp(1_000_000);

/// Small segments and a dense index so tests exercise rolling and index lookups.
pub(crate) fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 100,
        retention_ms: None,
        ..LogConfig::default()
    }
}

pub(crate) fn batch(values: &[&[u8]]) -> Vec<u8> {
    encode_batch(&BatchSpec::default(), values)
}

/// Appends a plain batch and returns its (base, last) offsets.
pub(crate) fn append_values(log: &mut PartitionLog, values: &[&[u8]]) -> (Offset, Offset) {
    let mut b = batch(values);
    match log.append(&mut b, LeaderEpoch(0), NOW).expect("append") {
        AppendOutcome::Appended {
            base_offset,
            last_offset,
            ..
        } => (base_offset, last_offset),
        other => panic!("unexpected {other:?}"),
    }
}

/// Every record from the log start to the log end, reading in small steps.
pub(crate) fn read_all(log: &PartitionLog) -> Vec<DecodedRecord> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    let end = log.log_end_offset();
    while next < end {
        let r = log.read(next, 300, end, true).expect("read");
        let records = decode_records(&r.bytes);
        assert!(
            !records.is_empty(),
            "read at {next} returned nothing before the end {end}"
        );
        assert!(
            records[0].offset <= next,
            "read at {next} started at {}",
            records[0].offset
        );
        for rec in records {
            if rec.offset >= next {
                next = rec.offset.plus(1);
                out.push(rec);
            }
        }
    }
    out
}
