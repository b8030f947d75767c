//! Crash recovery: a segment cut at every byte boundary, corrupt batches, damaged indexes.

use super::*;
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
