//! A follower's log: batches copied from a leader keep their offsets and epochs, and leave the
//! follower able to dedupe a producer's retry after it becomes leader.

use super::*;
use crate::StorageError;
use weir_model::{ProducerEpoch, ProducerId};

#[test]
fn a_follower_copy_is_byte_identical_and_dedupes_after_promotion() {
    let ldir = tempfile::tempdir().unwrap();
    let fdir = tempfile::tempdir().unwrap();
    let mut leader = PartitionLog::open(ldir.path(), small_config(), NOW).unwrap();
    let mut follower = PartitionLog::open(fdir.path(), small_config(), NOW).unwrap();
    let pid = ProducerId(7);
    let spec = |seq| BatchSpec {
        producer: Some((pid, ProducerEpoch(0), seq)),
        ..BatchSpec::default()
    };
    let mut first = encode_batch(&spec(0), &[b"a", b"b"]);
    leader.append(&mut first, LeaderEpoch(3), NOW).unwrap();
    let mut second = encode_batch(&spec(2), &[b"c"]);
    leader.append(&mut second, LeaderEpoch(5), NOW).unwrap();

    let copied = leader
        .read(Offset(0), 1 << 20, leader.log_end_offset(), true)
        .unwrap();
    let end = follower.append_replicated(&copied.bytes, NOW).unwrap();
    assert_eq!(end, Offset(3));
    let back = follower.read(Offset(0), 1 << 20, end, true).unwrap();
    assert_eq!(
        back.bytes, copied.bytes,
        "the follower stores the leader's bytes"
    );
    assert_eq!(
        follower.end_offset_for_epoch(LeaderEpoch(3)),
        Some((LeaderEpoch(3), Offset(2))),
        "epochs come from the batches"
    );

    // Promoted: the producer retries its second batch; it is acknowledged, not appended.
    let mut retry = encode_batch(&spec(2), &[b"c"]);
    let out = follower.append(&mut retry, LeaderEpoch(6), NOW).unwrap();
    assert!(
        matches!(out, AppendOutcome::Duplicate { base_offset, .. } if base_offset == Offset(2))
    );

    // Reopened after a crash, the same holds.
    drop(follower);
    let mut follower = PartitionLog::open(fdir.path(), small_config(), NOW).unwrap();
    let mut retry = encode_batch(&spec(2), &[b"c"]);
    let out = follower.append(&mut retry, LeaderEpoch(6), NOW).unwrap();
    assert!(matches!(out, AppendOutcome::Duplicate { .. }));
}

/// Proves: a follower's append that overlaps its log is refused and changes nothing, while a
/// gap is accepted (a compacted leader's log has gaps where its cleaner removed records, and
/// a follower fetching from inside one gets the next batch, as in Kafka); reads at an offset
/// inside the gap get the next batch.
#[test]
fn an_overlap_is_refused_and_a_gap_is_accepted() {
    let ldir = tempfile::tempdir().unwrap();
    let fdir = tempfile::tempdir().unwrap();
    let mut leader = PartitionLog::open(ldir.path(), small_config(), NOW).unwrap();
    let mut follower = PartitionLog::open(fdir.path(), small_config(), NOW).unwrap();
    for v in [b"a", b"b", b"c"] {
        let mut b = encode_batch(&BatchSpec::default(), &[v]);
        leader.append(&mut b, LeaderEpoch(1), NOW).unwrap();
    }
    let all = leader
        .read(Offset(0), 1 << 20, leader.log_end_offset(), true)
        .unwrap();
    let from_two = leader
        .read(Offset(2), 1 << 20, leader.log_end_offset(), true)
        .unwrap();
    assert_eq!(
        follower.append_replicated(&all.bytes, NOW).unwrap(),
        Offset(3)
    );
    let err = follower
        .append_replicated(&from_two.bytes, NOW)
        .unwrap_err();
    assert!(
        matches!(err, StorageError::NonContiguousReplica { expected, found, .. }
        if expected == Offset(3) && found == Offset(2)),
        "{err}"
    );
    assert_eq!(follower.log_end_offset(), Offset(3));

    // The leader's batch at offset 5 after a gap of 3..5.
    let mut gap = encode_batch(&BatchSpec::default(), &[b"d"]);
    crate::batch::set_base_offset(&mut gap, Offset(5));
    assert_eq!(follower.append_replicated(&gap, NOW).unwrap(), Offset(6));
    let r = follower.read(Offset(3), 1 << 20, Offset(6), true).unwrap();
    let recs = crate::testing::decode_records(&r.bytes);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].offset, Offset(5));
    drop(follower);
    let follower = PartitionLog::open(fdir.path(), small_config(), NOW).unwrap();
    assert_eq!(
        follower.log_end_offset(),
        Offset(6),
        "recovery keeps the gap"
    );
}

#[test]
fn a_new_leaders_epoch_answers_for_newer_follower_epochs_before_any_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    for epoch in [1, 1, 3] {
        let mut b = encode_batch(&BatchSpec::default(), &[b"v"]);
        log.append(&mut b, LeaderEpoch(epoch), NOW).unwrap();
    }
    // A follower deposed at epoch 4 (records this log never got) asks about epoch 4.
    assert_eq!(log.end_offset_for_epoch(LeaderEpoch(4)), None);
    log.start_leader_epoch(LeaderEpoch(5)).unwrap();
    assert_eq!(
        log.end_offset_for_epoch(LeaderEpoch(4)),
        Some((LeaderEpoch(3), Offset(3))),
        "epoch 3 ends where this leader's epoch 5 starts: the follower keeps offsets below 3"
    );
    assert_eq!(
        log.end_offset_for_epoch(LeaderEpoch(5)),
        Some((LeaderEpoch(5), Offset(3)))
    );
    // An epoch with no records yet is dropped by recovery after a restart; the broker records
    // it again when it takes over (every takeover does).
}
