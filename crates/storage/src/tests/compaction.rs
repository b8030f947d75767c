//! Log compaction: the cleaner against a model of what was written, crashes at every step of
//! a swap, and the rules around it (keyless refusal, tombstones, lag, ratio, aborts).

use super::*;
use crate::cleaner::{CleanOutcome, Cleaner, CleanerConfig, IO_BUFFER_BYTES_MIN};
use crate::testing::encode_keyed_batch;
use crate::{BatchHeader, CleanupPolicy, Compression, DirtyRatio, StorageError};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use weir_model::{ProducerEpoch, ProducerId};

const RETENTION_MS: i64 = 100;

fn compact_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 64,
        retention_ms: None,
        cleanup_policy: CleanupPolicy::Compact,
        delete_retention_ms: RETENTION_MS,
        min_cleanable_dirty_ratio: DirtyRatio::from_f64(0.0),
        ..LogConfig::default()
    }
}

fn cleaner(map_bytes: usize) -> Cleaner {
    Cleaner::new(CleanerConfig {
        dedupe_buffer_bytes: map_bytes,
        io_buffer_bytes: IO_BUFFER_BYTES_MIN,
        io_max_bytes_per_second: None,
    })
}

use crate::testing::KeyValue as Rec;

fn append_keyed(log: &mut PartitionLog, records: &[Rec], now: Timestamp) -> (Offset, Offset) {
    let mut b = encode_keyed_batch(&BatchSpec::default(), records);
    match log.append(&mut b, LeaderEpoch(0), now).expect("append") {
        AppendOutcome::Appended {
            base_offset,
            last_offset,
            ..
        } => (base_offset, last_offset),
        other => panic!("unexpected {other:?}"),
    }
}

/// Every record and every batch (base, last, record count) from the log start to the end,
/// stepping over gaps and empty batches by batch headers.
fn scan(log: &PartitionLog) -> (Vec<DecodedRecord>, Vec<(Offset, Offset, i32)>) {
    let mut records = Vec::new();
    let mut batches = Vec::new();
    let mut next = log.log_start_offset();
    let end = log.log_end_offset();
    while next < end {
        let r = log.read(next, 500, end, true).expect("read");
        let stepped = r.next_offset;
        assert!(
            !r.bytes.is_empty(),
            "read at {next} before the end {end}: {:?}",
            log.debug_segments()
        );
        let mut bytes = &r.bytes[..];
        while !bytes.is_empty() {
            let h = BatchHeader::parse(bytes).expect("header");
            let one = &bytes[..h.size_bytes()];
            crate::validate_stored_batches(one, u32::MAX).expect("a stored batch validates");
            if h.last_offset() >= next {
                batches.push((h.base_offset, h.last_offset(), h.records_count));
                records.extend(
                    crate::testing::decode_records(one)
                        .into_iter()
                        .filter(|r| r.offset >= next),
                );
                next = h.last_offset().plus(1);
            }
            bytes = &bytes[h.size_bytes()..];
        }
        assert_eq!(
            stepped, next,
            "ReadOutcome::next_offset steps past the last batch"
        );
    }
    (records, batches)
}

/// What was written: offset -> (key, value or None for a tombstone, time of the append).
type Written = BTreeMap<i64, (Vec<u8>, Option<Vec<u8>>, i64)>;

/// Checks the compaction contract against what was written: offsets strictly increasing and
/// unchanged (a record read back is the one written at its offset), the newest record of
/// every key present unless it is a tombstone older than delete.retention.ms, and the log end
/// where the appends left it.
fn check_contract(
    log: &PartitionLog,
    written: &Written,
    end: i64,
    now: i64,
) -> Result<Vec<DecodedRecord>, TestCaseError> {
    prop_assert_eq!(log.log_end_offset(), Offset(end));
    let (records, batches) = scan(log);
    for w in batches.windows(2) {
        prop_assert!(w[0].1 < w[1].0, "batches overlap: {:?}", w);
    }
    for w in records.windows(2) {
        prop_assert!(w[0].offset < w[1].offset, "offsets not increasing");
    }
    for r in &records {
        let Some((k, v, _)) = written.get(&r.offset.get()) else {
            return Err(TestCaseError::fail(format!(
                "offset {} never written",
                r.offset
            )));
        };
        prop_assert_eq!(r.key.as_ref(), Some(k));
        prop_assert_eq!(r.tombstone, v.is_none());
        prop_assert_eq!(&r.value, &v.clone().unwrap_or_default());
    }
    let mut newest: BTreeMap<&Vec<u8>, i64> = BTreeMap::new();
    for (o, (k, _, _)) in written {
        newest.insert(k, *o);
    }
    for (k, o) in newest {
        let present = records.iter().any(|r| r.offset.get() == o);
        let (_, v, at) = &written[&o];
        if !present {
            prop_assert!(
                v.is_none() && now - at >= RETENTION_MS,
                "the newest record of {:?} (offset {}) is gone",
                String::from_utf8_lossy(k),
                o
            );
        }
    }
    Ok(records)
}

#[derive(Clone, Debug)]
enum Op {
    /// A batch of (key index, value or tombstone).
    Append(Vec<(u8, Option<Vec<u8>>)>),
    /// A whole round under `&mut` (`clean_now`), up to the log end or below it.
    Clean {
        below_end: bool,
    },
    /// Plan, copy, then appends land before the swap (as they do in the broker).
    CleanWithAppendsMeanwhile(Vec<(u8, Option<Vec<u8>>)>),
    Tick(i64),
    Reopen {
        clean: bool,
    },
}

fn records() -> impl Strategy<Value = Vec<(u8, Option<Vec<u8>>)>> {
    let value = prop_oneof![
        1 => Just(None),
        6 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Some),
    ];
    prop::collection::vec((0u8..6, value), 1..5)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => records().prop_map(Op::Append),
        3 => any::<bool>().prop_map(|below_end| Op::Clean { below_end }),
        2 => records().prop_map(Op::CleanWithAppendsMeanwhile),
        2 => (0i64..80).prop_map(Op::Tick),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

fn key(i: u8) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

fn append_model(
    log: &mut PartitionLog,
    recs: &[(u8, Option<Vec<u8>>)],
    written: &mut Written,
    now: i64,
) -> i64 {
    let keys: Vec<Vec<u8>> = recs.iter().map(|(k, _)| key(*k)).collect();
    let refs: Vec<Rec> = recs
        .iter()
        .zip(&keys)
        .map(|((_, v), k)| (Some(k.as_slice()), v.as_deref()))
        .collect();
    let (base, last) = append_keyed(log, &refs, Timestamp(now));
    for (i, (k, v)) in recs.iter().enumerate() {
        written.insert(base.get() + i as i64, (key(*k), v.clone(), now));
    }
    last.get() + 1
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Proves: with several segments, appends interleaved with cleaning rounds (also appends
    /// landing between a round's copy and its swap), reopens, and a dedupe map small enough
    /// to force partial cleaning, the log read from the start always gives the newest record
    /// of every key (a tombstone may go only once it is older than delete.retention.ms), never
    /// a record that was not written at that offset, with offsets strictly increasing; and
    /// once everything is sealed and cleaned to the end, every key appears at most once.
    #[test]
    fn compaction_keeps_the_newest_record_of_every_key(
        ops in prop::collection::vec(op(), 1..60),
        map_keys in prop_oneof![Just(3usize), Just(6), Just(1000)],
        segment_bytes in prop_oneof![Just(300u64), Just(700), Just(2500)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = compact_config(segment_bytes);
        let mut now = NOW.get();
        let mut log = Some(PartitionLog::open(dir.path(), config.clone(), Timestamp(now)).unwrap());
        let mut c = cleaner(map_keys * 32);
        let mut written = Written::new();
        let mut end = 0i64;
        for op in ops {
            let l = log.as_mut().unwrap();
            match op {
                Op::Append(recs) => end = append_model(l, &recs, &mut written, now),
                Op::Clean { below_end } => {
                    let upper = if below_end { Offset(end / 2) } else { Offset(end) };
                    if let Some(out) = l.clean_now(&mut c, upper, Timestamp(now)).unwrap() {
                        prop_assert!(matches!(out, CleanOutcome::Swapped { .. }), "{:?}", out);
                    }
                }
                Op::CleanWithAppendsMeanwhile(recs) => {
                    let plan = l.plan_clean(Offset(end), Timestamp(now)).unwrap();
                    end = append_model(l, &recs, &mut written, now);
                    if let Some(plan) = plan {
                        let round = c.clean(plan, &|| false).unwrap().unwrap();
                        end = append_model(l, &recs, &mut written, now);
                        let out = l.finish_clean(round).unwrap();
                        prop_assert!(matches!(out, CleanOutcome::Swapped { .. }), "{:?}", out);
                    }
                }
                Op::Tick(ms) => now += ms,
                Op::Reopen { clean } => {
                    let mut l = log.take().unwrap();
                    if clean { l.close().unwrap(); } else { drop(l); }
                    log = Some(PartitionLog::open(dir.path(), config.clone(), Timestamp(now)).unwrap());
                }
            }
            check_contract(log.as_ref().unwrap(), &written, end, now)?;
        }
        // Seal everything (a roll by segment.ms), then clean until nothing is dirty.
        let l = log.as_mut().unwrap();
        l.set_config(LogConfig { segment_ms: 1, ..config.clone() });
        now += 10;
        let sealed_end = end;
        end = append_model(l, &[(99, Some(b"seal".to_vec()))], &mut written, now);
        l.set_config(config);
        let mut rounds = 0;
        while l.clean_now(&mut c, Offset(end), Timestamp(now)).unwrap().is_some() {
            rounds += 1;
            prop_assert!(rounds < 500, "cleaning never finishes");
        }
        let records = check_contract(l, &written, end, now)?;
        let mut seen = std::collections::BTreeSet::new();
        for r in records.iter().filter(|r| r.offset.get() < sealed_end) {
            prop_assert!(seen.insert(r.key.clone()), "{:?} kept twice", r.key);
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A compacted log over several sealed segments: keys rewritten many times, a tombstone,
/// and an active segment. Returns the dir, the config and what was written.
fn build_compacted(segment_bytes: u64) -> (tempfile::TempDir, LogConfig, Written, i64) {
    let dir = tempfile::tempdir().unwrap();
    let config = compact_config(segment_bytes);
    let mut log = PartitionLog::open(dir.path(), config.clone(), NOW).unwrap();
    let mut written = Written::new();
    let mut end = 0;
    for round in 0..12u8 {
        let recs: Vec<(u8, Option<Vec<u8>>)> = (0..4u8)
            .map(|k| {
                let v = (round == 7 && k == 2).then_some(None);
                (k, v.unwrap_or_else(|| Some(vec![round; 30])))
            })
            .collect();
        end = append_model(&mut log, &recs, &mut written, NOW.get());
    }
    assert!(
        log.segment_count() >= 4,
        "the test wants several sealed segments"
    );
    drop(log);
    (dir, config, written, end)
}

/// Proves: a crash (the swap stopped, the process gone, the files as that step left them)
/// after any step of a swap loses nothing: reopening recovers a log that honours the
/// contract, with no `.cleaned` file or manifest left behind, and cleaning afterwards
/// completes. Every step is tried, from before the commit to the manifest's removal. A crash
/// during recovery itself is covered too: recovery redoes the swap's own file steps in the
/// same order, each only if still needed, so wherever it stops the directory is in a state
/// some step here already left it in.
#[test]
fn a_crash_at_any_step_of_a_swap_loses_nothing() {
    let (dir, config, written, end) = build_compacted(600);
    let now = NOW.get();
    let mut crashed_at = 0;
    for steps in 0.. {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        let mut log = PartitionLog::open(copy.path(), config.clone(), NOW).unwrap();
        log.crash_after_steps = Some(steps);
        match log.clean_now(&mut cleaner(1 << 20), Offset(end), NOW) {
            Ok(Some(CleanOutcome::Swapped { .. })) => {
                assert!(steps > 5, "a swap has more steps than {steps}");
                break;
            }
            Ok(other) => panic!("step {steps}: {other:?}"),
            Err(e) => {
                assert!(e.to_string().contains("injected crash"), "{e}");
                crashed_at += 1;
            }
        }
        drop(log); // the crash: no close, nothing more written
        let mut log = PartitionLog::open(copy.path(), config.clone(), NOW).unwrap();
        let left: Vec<String> = names(copy.path())
            .into_iter()
            .filter(|n| n.ends_with(".cleaned") || n.starts_with("cleaner.swap"))
            .collect();
        assert!(left.is_empty(), "step {steps}: left behind {left:?}");
        check_contract(&log, &written, end, now).unwrap();
        // The next round completes, and the result still honours the contract.
        while log
            .clean_now(&mut cleaner(1 << 20), Offset(end), NOW)
            .unwrap()
            .is_some()
        {}
        check_contract(&log, &written, end, now).unwrap();
        drop(log);
        let log = PartitionLog::open(copy.path(), config.clone(), NOW).unwrap();
        check_contract(&log, &written, end, now).unwrap();
    }
    assert!(crashed_at > 5, "only {crashed_at} crash points");
}

/// Proves: a crash during the copy (before the commit) leaves `.cleaned` files, even a torn
/// one, that reopening deletes, with the log untouched.
#[test]
fn a_crash_while_copying_leaves_nothing_behind() {
    let (dir, config, written, end) = build_compacted(600);
    let before = names(dir.path());
    let log = PartitionLog::open(dir.path(), config.clone(), NOW).unwrap();
    let plan = log.plan_clean(Offset(end), NOW).unwrap().unwrap();
    let round = cleaner(1 << 20).clean(plan, &|| false).unwrap().unwrap();
    // The process dies: nothing drops the round, its files stay; one is torn.
    std::mem::forget(round);
    drop(log);
    let cleaned: Vec<String> = names(dir.path())
        .into_iter()
        .filter(|n| n.ends_with(".log.cleaned"))
        .collect();
    assert!(!cleaned.is_empty());
    let torn = dir.path().join(&cleaned[0]);
    let len = fs::metadata(&torn).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&torn)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let log = PartitionLog::open(dir.path(), config, NOW).unwrap();
    assert_eq!(names(dir.path()), before);
    let (records, _) = scan(&log);
    assert_eq!(records.len(), written.len(), "nothing was removed");
}

/// Proves: a round whose segments changed before the swap (retention deleted one, a
/// truncation cut one) is aborted, its files deleted, and the log left as it was.
#[test]
fn a_round_aborts_when_its_segments_changed() {
    let (dir, config, written, end) = build_compacted(600);
    let mut log = PartitionLog::open(dir.path(), config.clone(), NOW).unwrap();
    let mut c = cleaner(1 << 20);
    let plan = log.plan_clean(Offset(end), NOW).unwrap().unwrap();
    let round = c.clean(plan, &|| false).unwrap().unwrap();
    // DeleteRecords past the first segment deletes it.
    let second_segment_base = Offset(end / 3);
    log.delete_records_before(second_segment_base).unwrap();
    let out = log.finish_clean(round).unwrap();
    assert!(matches!(out, CleanOutcome::Aborted { .. }), "{out:?}");
    assert!(names(dir.path()).iter().all(|n| !n.ends_with(".cleaned")));
    let (records, _) = scan(&log);
    let expected = written
        .keys()
        .filter(|o| **o >= log.log_start_offset().get())
        .count();
    assert_eq!(records.len(), expected, "nothing was removed");

    let plan = log.plan_clean(Offset(end), NOW).unwrap().unwrap();
    let round = c.clean(plan, &|| false).unwrap().unwrap();
    // Cut inside the first sealed segment left: it is truncated and becomes active.
    log.truncate_to(Offset(second_segment_base.get() + 2))
        .unwrap();
    let out = log.finish_clean(round).unwrap();
    assert!(matches!(out, CleanOutcome::Aborted { .. }), "{out:?}");
    assert!(names(dir.path()).iter().all(|n| !n.ends_with(".cleaned")));
}

/// Proves: records without a key are refused on a compacted topic (plain and compressed
/// batches), with nothing appended, but accepted from the leader by a follower, and on a
/// topic that does not compact.
#[test]
fn keyless_records_are_refused_on_compacted_topics() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), compact_config(1 << 20), NOW).unwrap();
    for compression in [Compression::None, Compression::Zstd] {
        let spec = BatchSpec {
            compression,
            ..BatchSpec::default()
        };
        let mut b = encode_keyed_batch(&spec, &[(Some(b"k"), Some(b"v")), (None, Some(b"v"))]);
        let e = log.append(&mut b, LeaderEpoch(0), NOW).unwrap_err();
        assert!(
            matches!(e, StorageError::RecordWithoutKey { at: 0 }),
            "{compression:?}: {e}"
        );
        assert!(e.to_string().contains("without key"));
        assert_eq!(log.log_end_offset(), Offset(0));
    }
    append_keyed(&mut log, &[(Some(b"k"), None)], NOW);
    let mut keyless = encode_keyed_batch(&BatchSpec::default(), &[(None, Some(b"v"))]);
    crate::batch::set_base_offset(&mut keyless, Offset(1));
    assert_eq!(log.append_replicated(&keyless, NOW).unwrap(), Offset(2));
    let plain = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(plain.path(), small_config(), NOW).unwrap();
    append_values(&mut log, &[b"no key"]);
}

/// Proves: compressed batches are decompressed, filtered and recompressed with their codec,
/// and read back with the right records at the right offsets, for every codec.
#[test]
fn compressed_batches_are_rewritten_with_their_codec() {
    for compression in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), compact_config(400), NOW).unwrap();
        let spec = BatchSpec {
            compression,
            ..BatchSpec::default()
        };
        for i in 0..8u8 {
            let v1 = [i; 40];
            let v2 = [i + 100; 40];
            let mut b = encode_keyed_batch(
                &spec,
                &[
                    (Some(b"a".as_slice()), Some(v1.as_slice())),
                    (Some(format!("u{i}").as_bytes()), Some(v2.as_slice())),
                ],
            );
            log.append(&mut b, LeaderEpoch(0), NOW).unwrap();
        }
        let end = log.log_end_offset();
        let out = log.clean_now(&mut cleaner(1 << 20), end, NOW).unwrap();
        assert!(
            matches!(out, Some(CleanOutcome::Swapped { .. })),
            "{compression:?}"
        );
        let (records, _) = scan(&log);
        let a: Vec<_> = records
            .iter()
            .filter(|r| r.key.as_deref() == Some(b"a"))
            .collect();
        // The sealed copies of "a" went; the active segment's stays with the newest.
        assert!(a.len() < 8, "{compression:?}: {} copies of a", a.len());
        assert_eq!(a.last().unwrap().value, vec![7u8; 40]);
        let uniques = records
            .iter()
            .filter(|r| r.key.as_deref().is_some_and(|k| k.starts_with(b"u")))
            .count();
        assert_eq!(uniques, 8, "{compression:?}: every unique key stays");
        for r in &records {
            let i = r.offset.get() / 2;
            if r.offset.get() % 2 == 1 {
                assert_eq!(r.value, vec![i as u8 + 100; 40]);
            }
        }
        let h =
            BatchHeader::parse(&log.read(Offset(0), 1 << 20, end, true).unwrap().bytes).unwrap();
        assert_eq!(h.compression(), compression);
    }
}

/// Proves: a tombstone is kept until delete.retention.ms has passed since the round that
/// first cleaned it, then removed; the older values of its key go at once.
#[test]
fn tombstones_go_only_after_delete_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), compact_config(200), NOW).unwrap();
    let mut c = cleaner(1 << 20);
    append_keyed(&mut log, &[(Some(b"k"), Some(b"old value"))], NOW);
    let (tomb, _) = append_keyed(&mut log, &[(Some(b"k"), None)], NOW);
    for i in 0..6u8 {
        append_keyed(&mut log, &[(Some(&[b'x', i]), Some(&[0u8; 60]))], NOW);
    }
    let end = log.log_end_offset();
    let t0 = NOW.get();
    log.clean_now(&mut c, end, Timestamp(t0)).unwrap().unwrap();
    let (records, _) = scan(&log);
    assert!(records.iter().all(|r| r.value != b"old value"));
    assert!(records.iter().any(|r| r.offset == tomb && r.tombstone));
    // Force another round over the same (now clean) part: dirty it with a new segment.
    let more = |log: &mut PartitionLog| {
        for i in 0..4u8 {
            append_keyed(log, &[(Some(&[b'y', i]), Some(&[0u8; 60]))], NOW);
        }
        log.log_end_offset()
    };
    let end = more(&mut log);
    log.clean_now(&mut c, end, Timestamp(t0 + RETENTION_MS - 1))
        .unwrap()
        .unwrap();
    assert!(scan(&log).0.iter().any(|r| r.offset == tomb), "too early");
    let end = more(&mut log);
    log.clean_now(&mut c, end, Timestamp(t0 + RETENTION_MS))
        .unwrap()
        .unwrap();
    assert!(
        scan(&log).0.iter().all(|r| r.offset != tomb),
        "kept too long"
    );
}

/// Proves: an idempotent producer's last batch survives as an empty batch (offsets, producer
/// id, epoch and sequence kept) when all its records are superseded, so after a restart the
/// producer's retry is still recognised and not appended twice.
#[test]
fn a_producers_last_batch_stays_as_an_empty_batch() {
    let dir = tempfile::tempdir().unwrap();
    let config = compact_config(200);
    let mut log = PartitionLog::open(dir.path(), config.clone(), NOW).unwrap();
    let pid = ProducerId(42);
    let spec = |seq| BatchSpec {
        producer: Some((pid, ProducerEpoch(0), seq)),
        ..BatchSpec::default()
    };
    let mut first = encode_keyed_batch(&spec(0), &[(Some(b"k"), Some(&[1u8; 80]))]);
    log.append(&mut first, LeaderEpoch(0), NOW).unwrap();
    // A plain producer supersedes k, with enough data to seal a few segments.
    for _ in 0..4 {
        append_keyed(&mut log, &[(Some(b"k"), Some(&[2u8; 80]))], NOW);
    }
    // Another key after them, so every copy of k is in a sealed segment.
    append_keyed(&mut log, &[(Some(b"other"), Some(&[3u8; 80]))], NOW);
    let end = log.log_end_offset();
    log.clean_now(&mut cleaner(1 << 20), end, NOW)
        .unwrap()
        .unwrap();
    let (records, batches) = scan(&log);
    assert_eq!(
        batches[0],
        (Offset(0), Offset(0), 0),
        "the producer's batch, emptied"
    );
    assert_eq!(
        records
            .iter()
            .filter(|r| r.key.as_deref() == Some(b"k"))
            .count(),
        1
    );
    drop(log);
    let mut log = PartitionLog::open(dir.path(), config, NOW).unwrap();
    let mut retry = encode_keyed_batch(&spec(0), &[(Some(b"k"), Some(&[1u8; 80]))]);
    let out = log.append(&mut retry, LeaderEpoch(0), NOW).unwrap();
    assert!(
        matches!(out, AppendOutcome::Duplicate { base_offset, .. } if base_offset == Offset(0)),
        "{out:?}"
    );
}

/// Proves: `min.cleanable.dirty.ratio` holds a round back until enough of the log is dirty,
/// `min.compaction.lag.ms` keeps young segments out, the upper bound keeps segments at or
/// past it out, and a `compact`-only policy is not subject to retention.
#[test]
fn ratio_lag_and_upper_bound_limit_what_is_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        min_cleanable_dirty_ratio: DirtyRatio::from_f64(0.9),
        retention_ms: Some(1),
        ..compact_config(300)
    };
    let mut log = PartitionLog::open(dir.path(), config.clone(), NOW).unwrap();
    for i in 0..20u8 {
        append_keyed(&mut log, &[(Some(&[i % 3]), Some(&[i; 50]))], NOW);
    }
    let end = log.log_end_offset();
    assert_eq!(
        log.apply_retention(Timestamp(NOW.get() * 2))
            .unwrap()
            .segments_deleted,
        0
    );
    // Everything is dirty: ratio 1 >= 0.9.
    assert!(log.cleanable(end, NOW).unwrap().due);
    log.clean_now(&mut cleaner(1 << 20), end, NOW)
        .unwrap()
        .unwrap();
    // One new segment's worth is not 90% of the log.
    for i in 0..6u8 {
        append_keyed(&mut log, &[(Some(&[i % 3]), Some(&[i; 50]))], NOW);
    }
    let end = log.log_end_offset();
    let c = log.cleanable(end, NOW).unwrap();
    assert!(c.dirty_ratio > 0.0 && !c.due, "{c:?}");
    assert!(log.plan_clean(end, NOW).unwrap().is_none());

    // Lag: segments with records from the last hour are left alone.
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(
        dir.path(),
        LogConfig {
            min_compaction_lag_ms: 3_600_000,
            ..compact_config(300)
        },
        NOW,
    )
    .unwrap();
    for i in 0..20u8 {
        let spec = BatchSpec {
            base_timestamp: NOW.get(),
            ..BatchSpec::default()
        };
        let mut b = encode_keyed_batch(&spec, &[(Some(&[i % 3]), Some(&[i; 50]))]);
        log.append(&mut b, LeaderEpoch(0), NOW).unwrap();
    }
    let end = log.log_end_offset();
    assert!(log.plan_clean(end, NOW).unwrap().is_none(), "too young");
    let later = Timestamp(NOW.get() + 3_600_100);
    assert!(log.plan_clean(end, later).unwrap().is_some());
    // Upper bound: nothing below offset 1 makes a whole sealed segment.
    assert!(log.plan_clean(Offset(1), later).unwrap().is_none());
}
