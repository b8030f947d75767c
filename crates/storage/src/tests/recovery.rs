//! Crash recovery: a segment cut at every byte boundary, corrupt batches, damaged indexes.

use super::*;
use crate::StorageError;
use std::fs;
use std::path::Path;

fn copy_dir(from: &Path, to: &Path) {
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn active_log_path(dir: &Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

/// A log with a closed segment and an active one; returns the dir, the values per batch, and
/// the active segment's batch end positions.
fn build() -> (tempfile::TempDir, Vec<Vec<u8>>, Vec<(u64, Offset)>) {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 50,
        ..small_config()
    };
    let mut log = PartitionLog::open(dir.path(), config, NOW).unwrap();
    let mut values = Vec::new();
    let mut ends = Vec::new();
    for i in 0..9u8 {
        let v = vec![i; 20 + i as usize * 3];
        let segs = log.segment_count();
        let (_, last) = append_values(&mut log, &[&v, &[i]]);
        if log.segment_count() != segs {
            ends.clear();
        }
        values.push(v);
        ends.push((
            fs::metadata(active_log_path(dir.path())).unwrap().len(),
            last.plus(1),
        ));
    }
    assert!(
        log.segment_count() >= 2,
        "the test wants a closed segment too"
    );
    assert!(
        ends.len() >= 3,
        "the test wants 3 batches in the active segment"
    );
    drop(log); // crash: no close
    (dir, values, ends)
}

/// Proves: cutting the active segment at any byte within its last three batches recovers
/// exactly the batches wholly before the cut, and the log accepts appends afterwards.
#[test]
fn cut_at_every_byte_of_the_last_batches() {
    let (dir, _, ends) = build();
    let start = if ends.len() > 3 {
        ends[ends.len() - 4].0
    } else {
        0
    };
    let (total, _) = ends[ends.len() - 1];
    let config = LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 50,
        ..small_config()
    };
    assert!(
        total - start > 300,
        "cuts {start}..{total} cover too little"
    );
    for cut in start..total {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        let f = fs::OpenOptions::new()
            .write(true)
            .open(active_log_path(copy.path()))
            .unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        let mut log = PartitionLog::open(copy.path(), config.clone(), NOW).unwrap();
        let expect_end = ends.iter().rev().find(|(end, _)| *end <= cut).map(|e| e.1);
        let expect_end = expect_end.unwrap_or_else(|| {
            // Cut inside the first batch of the active segment: the end is its base.
            let (first_end, first_next) = ends[0];
            assert!(cut < first_end);
            first_next.plus(-2)
        });
        assert_eq!(log.log_end_offset(), expect_end, "cut at {cut}");
        let records = read_all(&log);
        assert_eq!(records.len() as i64, expect_end.get(), "cut at {cut}");
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.offset, Offset(i as i64));
        }
        let (base, _) = append_values(&mut log, &[b"after"]);
        assert_eq!(base, expect_end);
        assert_eq!(read_all(&log).last().unwrap().value, b"after".to_vec());
    }
}

/// Proves: a corrupt byte in the last batch (CRC fails) truncates that batch at open.
#[test]
fn a_corrupt_last_batch_is_truncated() {
    let (dir, _, ends) = build();
    let path = active_log_path(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let (prev_end, prev_next) = ends[ends.len() - 2];
    bytes[prev_end as usize + 40] ^= 0x55;
    fs::write(&path, &bytes).unwrap();
    let log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    assert_eq!(log.log_end_offset(), prev_next);
    assert_eq!(fs::metadata(&path).unwrap().len(), prev_end);
}

/// Proves: missing, short and garbage index files are rebuilt, and lookups still work.
#[test]
fn damaged_indexes_are_rebuilt() {
    let (dir, _, _) = build();
    let config = LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 50,
        ..small_config()
    };
    let mut log = PartitionLog::open(dir.path(), config.clone(), NOW).unwrap();
    let before = read_all(&log);
    log.close().unwrap();
    let mut indexes: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "index" || x == "timeindex")
        })
        .collect();
    indexes.sort();
    let good: Vec<Vec<u8>> = indexes.iter().map(|p| fs::read(p).unwrap()).collect();
    assert!(
        good.iter().any(|g| !g.is_empty()),
        "the test wants non-empty indexes"
    );
    for (i, p) in indexes.iter().enumerate() {
        match i % 3 {
            0 => fs::write(p, [0xffu8; 37]).unwrap(),
            1 => fs::write(p, &good[i][..good[i].len() / 2]).unwrap(),
            _ => fs::remove_file(p).unwrap(),
        }
    }
    // A second time through with entries that are well-formed but wrong.
    let log = PartitionLog::open(dir.path(), config.clone(), NOW).unwrap();
    for (p, g) in indexes.iter().zip(&good) {
        assert_eq!(&fs::read(p).unwrap(), g, "{} not rebuilt", p.display());
    }
    assert_eq!(read_all(&log), before);
    drop(log);
    for (p, g) in indexes.iter().zip(&good) {
        let mut wrong = g.clone();
        wrong.reverse();
        fs::write(p, wrong).unwrap();
    }
    let log = PartitionLog::open(dir.path(), config, NOW).unwrap();
    assert_eq!(read_all(&log), before);
    for (p, g) in indexes.iter().zip(&good) {
        assert_eq!(&fs::read(p).unwrap(), g);
    }
}

/// Proves: a clean close lets the next open trust the active segment, and a later crash is
/// still recovered (the marker is cleared at open).
#[test]
fn a_crash_after_a_clean_reopen_still_recovers() {
    let (dir, _, _) = build();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    let end = log.log_end_offset();
    log.close().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    assert_eq!(log.log_end_offset(), end);
    append_values(&mut log, &[b"one more"]);
    drop(log);
    let path = active_log_path(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    assert_eq!(log.log_end_offset(), end);
}

fn build_config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 50,
        ..small_config()
    }
}

/// Every file's name and bytes.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, fs::read(e.path()).unwrap())
        })
        .collect()
}

fn log_paths(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut logs: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs
}

/// Opens `dir`, expecting [`StorageError::CorruptLog`] and no change to any file.
fn assert_refused_untouched(dir: &Path, config: LogConfig) -> StorageError {
    let before = snapshot(dir);
    let e = PartitionLog::open(dir, config, NOW).unwrap_err();
    assert!(
        matches!(e, StorageError::CorruptLog { .. }) && e.is_corruption(),
        "{e}"
    );
    assert!(
        snapshot(dir) == before,
        "the failed open changed the directory"
    );
    e
}

/// Proves: a damaged batch header in a sealed segment fails the open with CorruptLog, naming
/// the file and position, and neither truncates it nor deletes the later segments.
#[test]
fn a_damaged_header_in_a_sealed_segment_fails_the_open_and_changes_nothing() {
    let (dir, _, _) = build();
    let sealed = &log_paths(dir.path())[0];
    let mut bytes = fs::read(sealed).unwrap();
    let second = {
        let len = i32::from_be_bytes(bytes[8..12].try_into().unwrap());
        len as usize + 12
    };
    bytes[second + 16] = 7; // the second batch's magic
    fs::write(sealed, &bytes).unwrap();
    let e = assert_refused_untouched(dir.path(), build_config());
    let StorageError::CorruptLog { path, position, .. } = &e else {
        unreachable!()
    };
    assert_eq!(path, sealed);
    assert_eq!(*position, second as u64);
}

/// Proves: a sealed segment cut inside a batch, or exactly at a batch boundary (which its own
/// framing cannot show, but the next segment's base can), fails the open untouched.
#[test]
fn a_cut_sealed_segment_fails_the_open_and_changes_nothing() {
    for at_boundary in [false, true] {
        let (dir, _, _) = build();
        let sealed = &log_paths(dir.path())[0];
        let bytes = fs::read(sealed).unwrap();
        let first = i32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize + 12;
        let cut = if at_boundary { first } else { first + 30 };
        let f = fs::OpenOptions::new().write(true).open(sealed).unwrap();
        f.set_len(cut as u64).unwrap();
        drop(f);
        assert_refused_untouched(dir.path(), build_config());
    }
}

/// Proves: a segment that starts inside the one before it fails the open; it is not dropped.
#[test]
fn a_segment_overlapping_the_one_before_fails_the_open_and_changes_nothing() {
    let (dir, _, _) = build();
    let logs = log_paths(dir.path());
    assert!(logs.len() >= 2);
    let last = logs.last().unwrap();
    let base: i64 = last.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    // The active segment's files, renamed to a base inside the sealed segment before it.
    for ext in ["log", "index", "timeindex"] {
        let from = dir.path().join(format!("{base:020}.{ext}"));
        let to = dir.path().join(format!("{:020}.{ext}", base - 1));
        fs::rename(from, to).unwrap();
    }
    assert_refused_untouched(dir.path(), build_config());
}

/// Proves: after a crash, damage in the active segment followed by a valid batch is damage,
/// not a torn tail: the open fails and nothing is truncated.
#[test]
fn mid_file_damage_in_the_active_segment_is_not_a_torn_tail() {
    let (dir, _, ends) = build();
    let path = active_log_path(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    // Inside the records of the first batch of the active segment; two more follow.
    bytes[ends[0].0 as usize - 5] ^= 0x10;
    fs::write(&path, &bytes).unwrap();
    let e = assert_refused_untouched(dir.path(), build_config());
    assert!(e.to_string().contains("not a torn tail"), "{e}");
}

/// Proves: after a clean close the active segment has no torn tail: a damaged header, or a
/// segment ending before the clean-close marker, fails the open untouched.
#[test]
fn after_a_clean_close_damage_in_the_active_segment_fails_the_open() {
    for cut in [false, true] {
        let (dir, _, ends) = build();
        PartitionLog::open(dir.path(), build_config(), NOW)
            .unwrap()
            .close()
            .unwrap();
        let path = active_log_path(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        let last_start = ends[ends.len() - 2].0 as usize;
        if cut {
            bytes.truncate(last_start);
        } else {
            bytes[last_start + 16] = 9; // the last batch's magic
        }
        fs::write(&path, &bytes).unwrap();
        assert_refused_untouched(dir.path(), build_config());
    }
}

/// Proves: a batch damaged inside its records in a sealed segment (not CRC-checked at open) is
/// never served: the read that meets it fails with CorruptLog; the batches around it read.
#[test]
fn a_damaged_batch_in_a_sealed_segment_is_refused_by_the_read() {
    let (dir, _, _) = build();
    let sealed = &log_paths(dir.path())[0];
    let mut bytes = fs::read(sealed).unwrap();
    let first = i32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize + 12;
    bytes[first - 3] ^= 0x01;
    fs::write(sealed, &bytes).unwrap();
    let log = PartitionLog::open(dir.path(), build_config(), NOW).unwrap();
    let end = log.log_end_offset();
    let e = log.read(Offset(0), 1 << 20, end, true).unwrap_err();
    assert!(e.is_corruption(), "{e}");
    assert!(log.read(Offset(2), 1 << 20, end, true).is_ok());
}

/// Proves: a damaged or missing partition.meta is rebuilt (log start = first segment's base,
/// no clean-close marker, so a torn tail is still found), and every record stays.
#[test]
fn a_damaged_or_missing_partition_meta_is_rebuilt() {
    for damage in ["flip", "cut", "missing"] {
        let (dir, _, ends) = build();
        let mut log = PartitionLog::open(dir.path(), build_config(), NOW).unwrap();
        let before = read_all(&log);
        log.close().unwrap();
        let meta = dir.path().join("partition.meta");
        match damage {
            "flip" => {
                let mut b = fs::read(&meta).unwrap();
                b[10] ^= 0x04;
                fs::write(&meta, b).unwrap();
            }
            "cut" => fs::write(&meta, b"WEIR").unwrap(),
            _ => fs::remove_file(&meta).unwrap(),
        }
        // A torn tail too: only found if the rebuilt meta has no clean-close marker.
        let path = active_log_path(dir.path());
        let len = fs::metadata(&path).unwrap().len();
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 1).unwrap();
        drop(f);
        let log = PartitionLog::open(dir.path(), build_config(), NOW).unwrap();
        assert_eq!(log.log_start_offset(), Offset::ZERO, "{damage}");
        let (_, torn_next) = ends[ends.len() - 2];
        assert_eq!(log.log_end_offset(), torn_next, "{damage}");
        let after = read_all(&log);
        assert_eq!(after[..], before[..after.len()], "{damage}");
    }
}

/// Proves: a damaged leader-epoch checkpoint is rebuilt from the batches' leader epochs.
#[test]
fn a_damaged_epoch_checkpoint_is_rebuilt_from_batch_headers() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
    for (i, epoch) in [0, 0, 3, 3, 7, 9].into_iter().enumerate() {
        let mut b = batch(&[format!("r{i}").as_bytes()]);
        log.append(&mut b, LeaderEpoch(epoch), NOW).unwrap();
    }
    let answers = |log: &PartitionLog| {
        (-1..11)
            .map(|e| log.end_offset_for_epoch(LeaderEpoch(e)))
            .collect::<Vec<_>>()
    };
    let want = answers(&log);
    log.close().unwrap();
    let path = dir.path().join("leader-epoch.checkpoint");
    for damage in 0..3 {
        let mut b = fs::read(&path).unwrap();
        match damage {
            0 => b[12] ^= 0x20,
            1 => b.truncate(9),
            _ => b.clear(),
        }
        fs::write(&path, b).unwrap();
        let mut log = PartitionLog::open(dir.path(), small_config(), NOW).unwrap();
        assert_eq!(answers(&log), want, "damage {damage}");
        log.close().unwrap();
    }
}

/// Proves: a metadata file from a newer format version is refused and left as it is, never
/// rebuilt over.
#[test]
fn a_newer_format_version_is_refused_and_never_rewritten() {
    for file in ["partition.meta", "leader-epoch.checkpoint"] {
        let (dir, _, _) = build();
        let path = dir.path().join(file);
        let mut b = fs::read(&path).unwrap();
        b[4..6].copy_from_slice(&2u16.to_be_bytes());
        fs::write(&path, &b).unwrap();
        let before = snapshot(dir.path());
        let e = PartitionLog::open(dir.path(), build_config(), NOW).unwrap_err();
        assert!(
            matches!(e, StorageError::UnsupportedFormat { found: 2, .. }),
            "{file}: {e}"
        );
        assert!(snapshot(dir.path()) == before, "{file} rewritten");
    }
}
