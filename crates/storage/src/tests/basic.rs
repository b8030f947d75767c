//! Roll, read bounds, timestamps, retention, DeleteRecords, epochs, config and format checks.

use super::*;
use crate::testing::{BatchSpec, encode_batch};
use crate::{Compression, StorageError, TimestampType};

#[test]
fn segments_roll_by_size_and_use_kafka_file_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    for _ in 0..30 {
        append_values(&mut log, &[&[7u8; 100]]);
    }
    assert!(log.segment_count() > 1);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.contains(&"00000000000000000000.log".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"00000000000000000000.index".to_string()));
    assert!(names.contains(&"00000000000000000000.timeindex".to_string()));
    assert_eq!(read_all(&log).len(), 30);
}

#[test]
fn segments_roll_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 1000,
        ..small_config()
    };
    let mut log = PartitionLog::open(dir.path(), config, NOW).unwrap();
    let mut b = batch(&[b"a"]);
    log.append(&mut b, LeaderEpoch(0), NOW).unwrap();
    let mut b = batch(&[b"b"]);
    log.append(&mut b, LeaderEpoch(0), Timestamp(NOW.get() + 500))
        .unwrap();
    assert_eq!(log.segment_count(), 1);
    let mut b = batch(&[b"c"]);
    log.append(&mut b, LeaderEpoch(0), Timestamp(NOW.get() + 1000))
        .unwrap();
    assert_eq!(log.segment_count(), 2);
}

#[test]
fn reads_return_whole_batches_within_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), NOW).unwrap();
    append_values(&mut log, &[b"a", b"b", b"c"]); // 0..=2
    append_values(&mut log, &[b"d", b"e"]); // 3..=4
    let end = log.log_end_offset();
    // From inside a batch: the whole batch.
    let r = log.read(Offset(1), 1 << 20, end, true).unwrap();
    let recs = decode_records(&r.bytes);
    assert_eq!(recs.first().unwrap().offset, Offset(0));
    assert_eq!(recs.len(), 5);
    // Upper bound cuts at batch granularity.
    let r = log.read(Offset(0), 1 << 20, Offset(3), true).unwrap();
    assert_eq!(decode_records(&r.bytes).len(), 3);
    let r = log.read(Offset(0), 1 << 20, Offset(2), true).unwrap();
    assert!(r.bytes.is_empty());
    // max_bytes smaller than the first batch: nothing, or the batch with min_one_batch.
    assert!(
        log.read(Offset(0), 10, end, false)
            .unwrap()
            .bytes
            .is_empty()
    );
    assert_eq!(
        decode_records(&log.read(Offset(0), 10, end, true).unwrap().bytes).len(),
        3
    );
    // The log end is an empty read; past it is out of range.
    assert!(log.read(end, 100, end, true).unwrap().bytes.is_empty());
    assert!(matches!(
        log.read(end.plus(1), 100, end, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // Fetched bytes carry the assigned offsets and epoch, with a valid CRC.
    let hs = crate::validate_batches(
        &log.read(Offset(0), 1 << 20, end, true).unwrap().bytes,
        1 << 20,
    )
    .unwrap();
    assert_eq!(hs[1].base_offset, Offset(3));
    assert_eq!(hs[1].partition_leader_epoch, LeaderEpoch(0));
}

#[test]
fn timestamps_are_looked_up_like_list_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    // Batch i has records with timestamps 10_000*i + 0..3 at offsets 3i..3i+2.
    for i in 0..20i64 {
        let spec = BatchSpec {
            base_timestamp: 10_000 * i,
            ..BatchSpec::default()
        };
        let mut b = encode_batch(&spec, &[&[1u8; 40], &[2u8; 40], &[3u8; 40]]);
        log.append(&mut b, LeaderEpoch(0), NOW).unwrap();
    }
    assert!(log.segment_count() > 2);
    let at = |ts| log.offset_for_timestamp(Timestamp(ts)).unwrap();
    assert_eq!(at(0), Some((Offset(0), Timestamp(0))));
    assert_eq!(at(50_001), Some((Offset(16), Timestamp(50_001))));
    assert_eq!(at(50_003), Some((Offset(18), Timestamp(60_000))));
    assert_eq!(at(190_002), Some((Offset(59), Timestamp(190_002))));
    assert_eq!(at(190_003), None);
    assert_eq!(
        log.max_timestamp().unwrap(),
        Some((Offset(59), Timestamp(190_002)))
    );
    // After DeleteRecords, nothing below the log start is answered.
    log.delete_records_before(Offset(17)).unwrap();
    let at = |ts| log.offset_for_timestamp(Timestamp(ts)).unwrap();
    assert_eq!(at(0), Some((Offset(17), Timestamp(50_002))));
}

#[test]
fn log_append_time_stamps_batches_and_lookups_use_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..small_config()
    };
    let mut log = PartitionLog::open(dir.path(), config, NOW).unwrap();
    let mut b = batch(&[b"x", b"y"]);
    let out = log
        .append(&mut b, LeaderEpoch(0), Timestamp(5_000))
        .unwrap();
    assert!(matches!(
        out,
        AppendOutcome::Appended {
            log_append_time: Some(Timestamp(5_000)),
            ..
        }
    ));
    let r = log
        .read(Offset(0), 1 << 20, log.log_end_offset(), true)
        .unwrap();
    let h = crate::validate_batches(&r.bytes, 1 << 20).unwrap()[0];
    assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(h.max_timestamp, Timestamp(5_000));
    assert_eq!(
        log.offset_for_timestamp(Timestamp(4_000)).unwrap(),
        Some((Offset(0), Timestamp(5_000)))
    );
}

#[test]
fn compressed_batches_are_stored_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    let spec = BatchSpec {
        compression: Compression::Lz4,
        ..BatchSpec::default()
    };
    let mut b = encode_batch(&spec, &[b"opaque", b"payload"]);
    log.append(&mut b, LeaderEpoch(0), NOW).unwrap();
    let r = log
        .read(Offset(0), 1 << 20, log.log_end_offset(), true)
        .unwrap();
    assert_eq!(&r.bytes[..], &b[..]);
    // The lookup looks inside the compressed batch: the first record, with its own timestamp.
    assert_eq!(
        log.offset_for_timestamp(Timestamp(0)).unwrap(),
        Some((Offset(0), Timestamp(1_000)))
    );
}

#[test]
fn retention_deletes_expired_segments_and_moves_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    for i in 0..30i64 {
        let spec = BatchSpec {
            base_timestamp: i * 1000,
            ..BatchSpec::default()
        };
        let mut b = encode_batch(&spec, &[&[0u8; 100]]);
        log.append(&mut b, LeaderEpoch(0), NOW).unwrap();
    }
    let segments = log.segment_count();
    let mut config = small_config();
    config.retention_ms = Some(10_000);
    log.set_config(config.clone());
    let out = log.apply_retention(Timestamp(25_000)).unwrap();
    assert!(out.segments_deleted > 0 && out.segments_deleted < segments);
    assert_eq!(out.log_start_offset, log.log_start_offset());
    assert!(log.log_start_offset() <= Offset(15));
    // Everything is past retention: every segment goes, the active one included (as in
    // Kafka, lowering retention.ms empties a topic); offsets carry on where they were.
    let out = log.apply_retention(Timestamp(1_000_000)).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert_eq!(out.log_start_offset, Offset(30));
    assert_eq!(log.log_end_offset(), Offset(30));
    assert!(read_all(&log).is_empty());
    let appended = append_values(&mut log, &[&[1u8; 10]]);
    assert_eq!(
        read_all(&log).first().unwrap().offset,
        Offset(30),
        "{appended:?}"
    );
    drop(log);
    let log = PartitionLog::open(dir.path(), config, NOW).unwrap();
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (Offset(30), Offset(31))
    );
    // By size.
    let dir2 = tempfile::tempdir().unwrap();
    let mut log2 = PartitionLog::open(dir2.path(), small_config(), NOW).unwrap();
    for _ in 0..30 {
        append_values(&mut log2, &[&[0u8; 100]]);
    }
    log2.set_config(LogConfig {
        retention_bytes: Some(2048),
        ..small_config()
    });
    log2.apply_retention(NOW).unwrap();
    assert!(log2.size_bytes() <= 2048 + 1024, "{}", log2.size_bytes());
    assert_eq!(read_all(&log2).last().unwrap().offset, Offset(29));
}

#[test]
fn delete_records_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    for _ in 0..20 {
        append_values(&mut log, &[&[0u8; 100], &[1u8; 100]]);
    }
    assert_eq!(log.delete_records_before(Offset(13)).unwrap(), Offset(13));
    assert!(matches!(
        log.read(Offset(12), 100, Offset(40), true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    drop(log);
    let log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    assert_eq!(log.log_start_offset(), Offset(13));
    assert_eq!(read_all(&log).first().unwrap().offset, Offset(13));
    assert!(matches!(
        PartitionLog::open(dir.path(), small_config(), NOW)
            .map(|mut l| l.delete_records_before(Offset(41))),
        Ok(Err(StorageError::OffsetOutOfRange { .. }))
    ));
}

#[test]
fn leader_epochs_answer_offset_for_leader_epoch_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    for (epoch, n) in [(0, 3), (2, 2), (5, 4)] {
        for _ in 0..n {
            let mut b = batch(&[b"v"]);
            log.append(&mut b, LeaderEpoch(epoch), NOW).unwrap();
        }
    }
    let check = |log: &PartitionLog| {
        assert_eq!(
            log.end_offset_for_epoch(LeaderEpoch(0)),
            Some((LeaderEpoch(0), Offset(3)))
        );
        assert_eq!(
            log.end_offset_for_epoch(LeaderEpoch(1)),
            Some((LeaderEpoch(0), Offset(3)))
        );
        assert_eq!(
            log.end_offset_for_epoch(LeaderEpoch(2)),
            Some((LeaderEpoch(2), Offset(5)))
        );
        assert_eq!(
            log.end_offset_for_epoch(LeaderEpoch(5)),
            Some((LeaderEpoch(5), Offset(9)))
        );
        assert_eq!(log.end_offset_for_epoch(LeaderEpoch(6)), None);
    };
    check(&log);
    let mut b = batch(&[b"v"]);
    assert!(matches!(
        log.append(&mut b, LeaderEpoch(4), NOW),
        Err(StorageError::StaleLeaderEpoch { .. })
    ));
    drop(log);
    // Without the checkpoint the epochs come back from batch headers.
    std::fs::remove_file(dir.path().join("leader-epoch.checkpoint")).unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    check(&log);
    log.truncate_to(Offset(4)).unwrap();
    assert_eq!(
        log.end_offset_for_epoch(LeaderEpoch(2)),
        Some((LeaderEpoch(2), Offset(4)))
    );
    assert_eq!(log.end_offset_for_epoch(LeaderEpoch(5)), None);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    assert_eq!(log.latest_epoch(), Some(LeaderEpoch(2)));
}

#[test]
fn refusals_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_message_bytes: 200,
        ..small_config()
    };
    let mut log = PartitionLog::open(dir.path(), config, NOW).unwrap();
    let mut big = batch(&[&[0u8; 300]]);
    assert!(matches!(
        log.append(&mut big, LeaderEpoch(0), NOW),
        Err(StorageError::RecordTooLarge { .. })
    ));
    let mut bad = batch(&[b"x"]);
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert!(matches!(
        log.append(&mut bad, LeaderEpoch(0), NOW),
        Err(StorageError::CorruptBatch(_))
    ));
    let mut control = batch(&[b"x"]);
    control[22] |= 0x20;
    let crc = crc32c::crc32c(&control[21..]);
    control[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        log.append(&mut control, LeaderEpoch(0), NOW),
        Err(StorageError::ControlBatchRefused { .. })
    ));
    assert!(matches!(
        log.append(&mut [], LeaderEpoch(0), NOW),
        Err(StorageError::CorruptBatch(_))
    ));
    assert_eq!(log.log_end_offset(), Offset(0));
}

#[test]
fn unknown_format_versions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    PartitionLog::open(dir.path(), small_config(), NOW)
        .unwrap()
        .close()
        .unwrap();
    let path = dir.path().join("partition.meta");
    let mut b = std::fs::read(&path).unwrap();
    b[4..6].copy_from_slice(&7u16.to_be_bytes());
    std::fs::write(&path, b).unwrap();
    let e = PartitionLog::open(dir.path(), small_config(), NOW).unwrap_err();
    assert!(
        matches!(e, StorageError::UnsupportedFormat { found: 7, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("version 7"), "{e}");
}

#[test]
fn flush_policies_fsync_and_keep_appending() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_messages: Some(1),
        flush_ms: Some(10),
        ..small_config()
    };
    let mut log = PartitionLog::open(dir.path(), config, NOW).unwrap();
    for _ in 0..3 {
        append_values(&mut log, &[b"durable"]);
    }
    log.maybe_flush(Timestamp(NOW.get() + 100)).unwrap();
    log.flush().unwrap();
    assert_eq!(read_all(&log).len(), 3);
}

#[test]
fn multi_batch_appends_get_contiguous_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    let mut b = batch(&[b"a", b"b"]);
    b.extend(batch(&[b"c"]));
    let out = log.append(&mut b, LeaderEpoch(0), NOW).unwrap();
    assert!(matches!(
        out,
        AppendOutcome::Appended {
            base_offset: Offset(0),
            last_offset: Offset(2),
            ..
        }
    ));
    let vals: Vec<Vec<u8>> = read_all(&log).into_iter().map(|r| r.value).collect();
    assert_eq!(vals, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
}

#[test]
fn a_closed_or_retired_log_refuses_changes_but_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    append_values(&mut log, &[&[1u8; 10]]);
    log.close().unwrap();
    log.close().unwrap();
    let mut b = batch(&[b"late"]);
    assert!(matches!(
        log.append(&mut b, LeaderEpoch(0), NOW),
        Err(StorageError::Closed { .. })
    ));
    assert!(matches!(
        log.apply_retention(NOW),
        Err(StorageError::Closed { .. })
    ));
    assert!(matches!(
        log.delete_records_before(Offset(1)),
        Err(StorageError::Closed { .. })
    ));
    assert_eq!(read_all(&log).len(), 1);

    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    log.retire();
    assert!(matches!(log.flush(), Err(StorageError::Closed { .. })));
    assert!(matches!(
        log.maybe_flush(NOW),
        Err(StorageError::Closed { .. })
    ));
}

/// KIP-734: the max-timestamp lookup names the record that carries the maximum, not the last
/// offset of its batch.
#[test]
fn max_timestamp_names_the_record_inside_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    let spec = BatchSpec {
        base_timestamp: 100,
        timestamp_deltas: vec![0, 50, 10, 20],
        ..BatchSpec::default()
    };
    let mut b = encode_batch(&spec, &[b"a", b"b", b"c", b"d"]);
    log.append(&mut b, LeaderEpoch(0), NOW).unwrap();
    let spec = BatchSpec {
        base_timestamp: 110,
        ..BatchSpec::default()
    };
    let mut b = encode_batch(&spec, &[b"e", b"f"]);
    log.append(&mut b, LeaderEpoch(0), NOW).unwrap();
    assert_eq!(
        log.max_timestamp().unwrap(),
        Some((Offset(1), Timestamp(150)))
    );
    assert_eq!(
        log.offset_for_timestamp(Timestamp(115)).unwrap(),
        Some((Offset(1), Timestamp(150)))
    );
}

/// KIP-734 inside compressed batches: the lookups decompress (within a limit) to name the exact
/// record, for every codec.
#[test]
fn timestamp_lookups_see_inside_compressed_batches() {
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
        let spec = BatchSpec {
            base_timestamp: 100,
            timestamp_deltas: vec![0, 50, 10, 20],
            compression: codec,
            ..BatchSpec::default()
        };
        let mut b = encode_batch(&spec, &[b"a", b"b", b"c", b"d"]);
        log.append(&mut b, LeaderEpoch(0), NOW).unwrap();
        assert_eq!(
            log.max_timestamp().unwrap(),
            Some((Offset(1), Timestamp(150))),
            "{codec:?}"
        );
        assert_eq!(
            log.offset_for_timestamp(Timestamp(112)).unwrap(),
            Some((Offset(1), Timestamp(150))),
            "{codec:?}"
        );
    }
}

/// Proves: a client's gzip batch whose payload is garbage (with a CRC the client computed over
/// it) is refused as a corrupt batch (CORRUPT_MESSAGE) and nothing is appended.
#[test]
fn a_compressed_batch_that_does_not_decode_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    let spec = BatchSpec {
        compression: Compression::Gzip,
        ..BatchSpec::default()
    };
    let good = encode_batch(&spec, &[b"a", b"b"]);
    let mut b = good[..crate::BATCH_HEADER_BYTES].to_vec();
    b.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xde, 0xad, 0xbe, 0xef]);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    let e = log.append(&mut b, LeaderEpoch(0), NOW).unwrap_err();
    assert!(
        matches!(
            e,
            StorageError::CorruptBatch(crate::BatchError::BadCompression {
                codec: Compression::Gzip,
                ..
            })
        ),
        "{e}"
    );
    assert_eq!(log.log_end_offset(), Offset(0));
    let mut good = good;
    log.append(&mut good, LeaderEpoch(0), NOW).unwrap();
    assert_eq!(read_all(&log).len(), 2);
}
