//! Idempotent producers: duplicates, ordering, fencing, and state rebuilt from the log.

use super::*;
use crate::StorageError;
use weir_model::{ProducerEpoch, ProducerId};

const PID: ProducerId = ProducerId(42);

fn pbatch(epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    let spec = BatchSpec {
        producer: Some((PID, ProducerEpoch(epoch), seq)),
        ..BatchSpec::default()
    };
    let values: Vec<&[u8]> = vec![b"v"; n];
    encode_batch(&spec, &values)
}

fn append(
    log: &mut PartitionLog,
    epoch: i16,
    seq: i32,
    n: usize,
) -> Result<AppendOutcome, StorageError> {
    log.append(&mut pbatch(epoch, seq, n), LeaderEpoch(0), NOW)
}

fn appended(base: i64, last: i64) -> impl Fn(&AppendOutcome) -> bool {
    move |o| {
        matches!(o, AppendOutcome::Appended { base_offset, last_offset, .. }
        if *base_offset == Offset(base) && *last_offset == Offset(last))
    }
}

#[test]
fn retried_batches_are_acknowledged_with_their_original_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    assert!(appended(0, 4)(&append(&mut log, 0, 0, 5).unwrap()));
    assert!(appended(5, 7)(&append(&mut log, 0, 5, 3).unwrap()));
    let dup = append(&mut log, 0, 0, 5).unwrap();
    assert!(matches!(
        dup,
        AppendOutcome::Duplicate {
            base_offset: Offset(0),
            last_offset: Offset(4),
            ..
        }
    ));
    assert_eq!(log.log_end_offset(), Offset(8));
    assert!(matches!(
        append(&mut log, 0, 9, 1),
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    assert_eq!(log.log_end_offset(), Offset(8));
}

#[test]
fn older_epochs_are_fenced_and_new_epochs_start_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    append(&mut log, 3, 0, 2).unwrap();
    assert!(matches!(
        append(&mut log, 2, 2, 1),
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
    assert!(matches!(
        append(&mut log, 4, 2, 1),
        Err(StorageError::OutOfOrderSequence {
            last_sequence: None,
            ..
        })
    ));
    assert!(appended(2, 2)(&append(&mut log, 4, 0, 1).unwrap()));
    assert!(matches!(
        append(&mut log, 3, 2, 1),
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
}

#[test]
fn state_is_rebuilt_from_the_log_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    // Enough batches to span several segments.
    let mut seq = 0;
    for _ in 0..12 {
        append(&mut log, 1, seq, 4).unwrap();
        seq += 4;
    }
    drop(log); // crash: no close
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    let dup = append(&mut log, 1, seq - 4, 4).unwrap();
    assert!(matches!(
        dup,
        AppendOutcome::Duplicate {
            base_offset: Offset(44),
            last_offset: Offset(47),
            ..
        }
    ));
    assert!(matches!(
        append(&mut log, 1, seq + 1, 1),
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    assert!(matches!(
        append(&mut log, 0, seq, 1),
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
    assert!(appended(48, 48)(&append(&mut log, 1, seq, 1).unwrap()));
    log.close().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    assert!(matches!(
        append(&mut log, 1, seq, 1).unwrap(),
        AppendOutcome::Duplicate {
            base_offset: Offset(48),
            ..
        }
    ));
}

#[test]
fn a_torn_batch_is_not_a_duplicate_on_retry() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    append(&mut log, 0, 0, 2).unwrap();
    append(&mut log, 0, 2, 2).unwrap();
    drop(log);
    let path = dir.path().join("00000000000000000000.log");
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    assert_eq!(log.log_end_offset(), Offset(2));
    assert!(appended(2, 3)(&append(&mut log, 0, 2, 2).unwrap()));
}

#[test]
fn sequences_wrap_at_i32_max() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    append(&mut log, 0, i32::MAX - 1, 2).unwrap();
    assert!(appended(2, 3)(&append(&mut log, 0, 0, 2).unwrap()));
    assert!(matches!(
        append(&mut log, 0, i32::MAX - 1, 2).unwrap(),
        AppendOutcome::Duplicate {
            base_offset: Offset(0),
            ..
        }
    ));
}

#[test]
fn a_duplicate_within_a_multi_batch_request_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    let mut two = pbatch(0, 0, 2);
    two.extend(pbatch(0, 2, 2));
    assert!(appended(0, 3)(
        &log.append(&mut two, LeaderEpoch(0), NOW).unwrap()
    ));
    let mut bad = pbatch(0, 4, 1);
    bad.extend(pbatch(0, 9, 1));
    assert!(matches!(
        log.append(&mut bad, LeaderEpoch(0), NOW),
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    assert!(appended(4, 4)(&append(&mut log, 0, 4, 1).unwrap()));
}

/// A new batch followed by a retried one in the same append must not be acknowledged as a
/// duplicate: that would drop the new batch while telling the client it is stored.
#[test]
fn a_duplicate_among_new_batches_is_refused_not_half_applied() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    assert!(appended(0, 1)(&append(&mut log, 0, 0, 2).unwrap()));
    let mut mixed = pbatch(0, 2, 2);
    mixed.extend(pbatch(0, 0, 2));
    assert!(matches!(
        log.append(&mut mixed, LeaderEpoch(0), NOW),
        Err(StorageError::DuplicateAmongBatches { .. })
    ));
    assert_eq!(
        log.log_end_offset(),
        Offset(2),
        "nothing of the refused append was written"
    );
    assert!(appended(2, 3)(&append(&mut log, 0, 2, 2).unwrap()));
}
