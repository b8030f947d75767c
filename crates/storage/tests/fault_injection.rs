//! Storage fault injection: every on-disk file of a partition log, damaged (a byte flipped) or
//! cut (truncated) at a few hundred seeded positions, after a clean close and after an
//! unclean shutdown. After each, reopening must either
//!
//! - succeed, with every acknowledged record readable at its original offset with its original
//!   content, or reported by the read as [`StorageError::CorruptLog`] (sealed segments, and the
//!   active one after a clean close, are not CRC-checked at open: a damaged batch there is
//!   found by the read that would serve it, and never served); or
//! - fail with a typed error (`is_corruption()`, or `UnsupportedFormat` when a flip lands on
//!   a metadata file's version field), with the directory's bytes exactly as they were.
//!
//! In no case is a record deleted or its offset given to a new record, with one exception,
//! a crash's own: after an UNCLEAN shutdown the active segment's tail was never fsynced, so
//! - a flip in its final batch may be taken for a torn tail, and that batch lost (or, a flip in
//!   its baseOffset, which no checksum covers in Kafka's format, moved to higher offsets);
//! - a cut anywhere in it is exactly what a crash does to unflushed data: the batches past the
//!   cut are lost and their offsets reused (the log recovers precisely the batches before it).
//!
//! Flips in partitionLeaderEpoch (also outside the CRC) are not detectable; the records stay
//! intact, so only the epoch checks skip `.log` damage.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use weir_model::{LeaderEpoch, Offset, Timestamp};
use weir_storage::testing::{BatchSpec, KeyValue, decode_records, encode_keyed_batch};
use weir_storage::{
    AppendOutcome, CleanOutcome, Cleaner, CleanerConfig, CleanupPolicy, Compression, DirtyRatio,
    LogConfig, PartitionLog, StorageError,
};

const NOW: Timestamp = Timestamp(1_000_000);
const SEED: u64 = 0x5eed_fa17;
const FLIPS_PER_FILE: usize = 8;
const CUTS_PER_FILE: usize = 6;

/// SplitMix64: a seeded, replayable position source.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn config(compacted: bool) -> LogConfig {
    LogConfig {
        segment_bytes: 1500,
        index_interval_bytes: 200,
        retention_ms: None,
        cleanup_policy: if compacted {
            CleanupPolicy::Compact
        } else {
            CleanupPolicy::Delete
        },
        min_cleanable_dirty_ratio: DirtyRatio::from_f64(0.0),
        ..LogConfig::default()
    }
}

/// A log as written: its directory and every acknowledged record.
struct Golden {
    dir: tempfile::TempDir,
    compacted: bool,
    clean: bool,
    acked: BTreeMap<i64, Vec<u8>>,
    epochs: Vec<Option<(LeaderEpoch, Offset)>>,
}

const EPOCHS_CHECKED: i32 = 5;

fn epoch_answers(log: &PartitionLog) -> Vec<Option<(LeaderEpoch, Offset)>> {
    (-1..EPOCHS_CHECKED)
        .map(|e| log.end_offset_for_epoch(LeaderEpoch(e)))
        .collect()
}

fn append(log: &mut PartitionLog, acked: &mut BTreeMap<i64, Vec<u8>>, i: usize, epoch: i32) {
    let n = 1 + i % 3;
    let values: Vec<Vec<u8>> = (0..n)
        .map(|j| format!("v{i}-{j}-{}", "x".repeat((i * 7 + j * 13) % 40)).into_bytes())
        .collect();
    let keys: Vec<Vec<u8>> = (0..n).map(|j| format!("k{i}-{j}").into_bytes()).collect();
    let records: Vec<KeyValue> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| (Some(k.as_slice()), Some(v.as_slice())))
        .collect();
    let spec = BatchSpec {
        compression: if i % 4 == 3 {
            Compression::Gzip
        } else {
            Compression::None
        },
        ..BatchSpec::default()
    };
    let mut b = encode_keyed_batch(&spec, &records);
    match log.append(&mut b, LeaderEpoch(epoch), NOW).expect("append") {
        AppendOutcome::Appended { base_offset, .. } => {
            for (j, v) in values.into_iter().enumerate() {
                acked.insert(base_offset.get() + j as i64, v);
            }
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Several sealed segments and an active one holding at least three batches, over three
/// leader epochs. `compacted`: keys are unique, and a cleaning round (which removes nothing)
/// writes a cleaner checkpoint.
fn build(clean: bool, compacted: bool) -> Golden {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(compacted), NOW).expect("open");
    let mut acked = BTreeMap::new();
    let mut i = 0;
    let mut in_active = 0;
    while i < 40 || log.segment_count() < 5 || in_active < 3 {
        let before = log.segment_count();
        append(&mut log, &mut acked, i, (i / 15) as i32);
        in_active = if log.segment_count() != before {
            1
        } else {
            in_active + 1
        };
        i += 1;
        if compacted && i == 30 {
            let mut cleaner = Cleaner::new(CleanerConfig::default());
            let end = log.log_end_offset();
            let out = log.clean_now(&mut cleaner, end, NOW).expect("clean");
            assert!(matches!(out, Some(CleanOutcome::Swapped { .. })), "{out:?}");
        }
    }
    let epochs = epoch_answers(&log);
    if clean {
        log.close().expect("close");
    }
    // Unclean: dropped without close, as a crash leaves it (no clean-close marker).
    drop(log);
    Golden {
        dir,
        compacted,
        clean,
        acked,
        epochs,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    SealedLog,
    ActiveLog,
    Index,
    Meta,
    EpochCheckpoint,
    CleanerCheckpoint,
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    Flip { at: u64, xor: u8 },
    Cut { at: u64 },
}

/// `(position, base offset, size)` of each batch of a `.log` file.
fn batches(bytes: &[u8]) -> Vec<(u64, i64, u64)> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + 12 <= bytes.len() {
        let base = i64::from_be_bytes(bytes[pos..pos + 8].try_into().expect("8 bytes"));
        let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().expect("4 bytes"));
        let size = len as usize + 12;
        out.push((pos as u64, base, size as u64));
        pos += size;
    }
    out
}

fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .expect("list")
        .map(|e| {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            (name, fs::read(e.path()).expect("read"))
        })
        .collect()
}

fn restore(files: &BTreeMap<String, Vec<u8>>, dir: &Path) {
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes).expect("write");
    }
}

/// The seeded damage for one file: flips (half of them in batch headers for `.log` files, where
/// the framing is) and cuts (some exactly at batch boundaries, which framing alone cannot show).
fn damages(rng: &mut Rng, bytes: &[u8], is_log: bool) -> Vec<Damage> {
    let len = bytes.len() as u64;
    if len == 0 {
        return Vec::new();
    }
    let bs = if is_log { batches(bytes) } else { Vec::new() };
    let mut out = Vec::new();
    for k in 0..FLIPS_PER_FILE {
        let at = if is_log && k % 2 == 0 {
            let (pos, _, _) = bs[rng.below(bs.len() as u64) as usize];
            (pos + rng.below(61)).min(len - 1)
        } else {
            rng.below(len)
        };
        let xor = 1u8 << rng.below(8);
        out.push(Damage::Flip { at, xor });
    }
    for k in 0..CUTS_PER_FILE {
        let at = if is_log && k % 3 == 0 {
            bs[rng.below(bs.len() as u64) as usize].0
        } else {
            rng.below(len)
        };
        out.push(Damage::Cut { at });
    }
    out
}

/// The first offset whose loss a crash explains, for damage to the active segment after an
/// unclean shutdown (see the module doc); `None` when no loss is allowed.
fn loss_allowed_from(g: &Golden, kind: Kind, golden_bytes: &[u8], d: Damage) -> Option<i64> {
    if g.clean || kind != Kind::ActiveLog {
        return None;
    }
    let bs = batches(golden_bytes);
    match d {
        Damage::Flip { at, .. } => bs.last().filter(|b| at >= b.0).map(|b| b.1),
        Damage::Cut { at } => bs.iter().find(|b| b.0 + b.2 > at).map(|b| b.1),
    }
}

struct Case<'a> {
    g: &'a Golden,
    file: &'a str,
    kind: Kind,
    damage: Damage,
    loss_from: Option<i64>,
}

impl Case<'_> {
    fn name(&self) -> String {
        format!(
            "{} close, {} ({:?}), {:?}",
            if self.g.clean { "clean" } else { "unclean" },
            self.file,
            self.kind,
            self.damage
        )
    }

    fn lost_allowed(&self, offset: i64) -> bool {
        self.loss_from.is_some_and(|l| offset >= l)
    }
}

/// Runs one case; returns whether the damage was detected (open or a read refused).
fn run(case: &Case, golden: &BTreeMap<String, Vec<u8>>) -> bool {
    let name = case.name();
    let copy = tempfile::tempdir().expect("tempdir");
    restore(golden, copy.path());
    let path = copy.path().join(case.file);
    let mut bytes = golden[case.file].clone();
    match case.damage {
        Damage::Flip { at, xor } => bytes[at as usize] ^= xor,
        Damage::Cut { at } => bytes.truncate(at as usize),
    }
    fs::write(&path, &bytes).expect("damage");
    let before = snapshot(copy.path());
    let is_log = matches!(case.kind, Kind::SealedLog | Kind::ActiveLog);
    let mut log = match PartitionLog::open(copy.path(), config(case.g.compacted), NOW) {
        Ok(log) => log,
        Err(e) => {
            let allowed = match case.kind {
                Kind::SealedLog | Kind::ActiveLog => e.is_corruption(),
                Kind::Index => false,
                // A flip in the version field reads as a newer format: refused, not rebuilt.
                Kind::Meta | Kind::EpochCheckpoint | Kind::CleanerCheckpoint => {
                    matches!(e, StorageError::UnsupportedFormat { .. })
                }
            };
            assert!(allowed, "{name}: open failed with {e}");
            assert!(
                snapshot(copy.path()) == before,
                "{name}: the failed open changed the directory"
            );
            return true;
        }
    };
    let mut detected = false;
    let end = log.log_end_offset();
    // Every acknowledged record, at its offset, with its content (or the read refuses).
    for (&offset, value) in &case.g.acked {
        if case.lost_allowed(offset) {
            continue;
        }
        assert!(
            offset < end.get(),
            "{name}: offset {offset} lost, end {end}"
        );
        match log.read(Offset(offset), 1 << 20, end, true) {
            Ok(r) => {
                let records = decode_records(&r.bytes);
                let found = records.iter().find(|r| r.offset == Offset(offset));
                let found = found.unwrap_or_else(|| panic!("{name}: offset {offset} missing"));
                assert_eq!(&found.value, value, "{name}: offset {offset} changed");
            }
            Err(e) if is_log && e.is_corruption() => detected = true,
            Err(e) => panic!("{name}: read at {offset}: {e}"),
        }
    }
    check_no_phantoms(case, &log, &mut detected);
    if let Some(l) = case.loss_from {
        match case.damage {
            // A cut is a crash: exactly the batches before it survive.
            Damage::Cut { .. } => assert_eq!(end, Offset(l), "{name}: recovered end"),
            Damage::Flip { .. } => assert!(end >= Offset(l), "{name}: recovered end {end}"),
        }
    }
    if !is_log {
        assert_eq!(epoch_answers(&log), case.g.epochs, "{name}: leader epochs");
    }
    // No acknowledged offset is ever handed out again, but for the torn tail's.
    let epoch = log.latest_epoch().unwrap_or(LeaderEpoch(0));
    let mut acked = BTreeMap::new();
    append(&mut log, &mut acked, 0, epoch.get());
    let new = Offset(*acked.keys().next().expect("one record"));
    let floor = match case.loss_from {
        Some(l) => Offset(l),
        None => Offset(case.g.acked.keys().last().expect("records") + 1),
    };
    assert!(
        new >= floor,
        "{name}: new record got offset {new}, below {floor}"
    );
    detected
}

/// Reads the whole log in order: nothing may come back that was not acknowledged there
/// (outside the torn tail's offsets).
fn check_no_phantoms(case: &Case, log: &PartitionLog, detected: &mut bool) {
    let name = case.name();
    let end = log.log_end_offset();
    let mut next = log.log_start_offset();
    while next < end {
        let r = match log.read(next, 4096, end, true) {
            Ok(r) => r,
            Err(e) if e.is_corruption() => {
                *detected = true;
                next = next.plus(1);
                continue;
            }
            Err(e) => panic!("{name}: read at {next}: {e}"),
        };
        for rec in decode_records(&r.bytes) {
            if rec.offset < next || case.lost_allowed(rec.offset.get()) {
                continue;
            }
            let acked = case.g.acked.get(&rec.offset.get());
            assert_eq!(
                acked,
                Some(&rec.value),
                "{name}: offset {} holds a record never acknowledged there",
                rec.offset
            );
        }
        assert!(
            r.next_offset > next,
            "{name}: read at {next} did not advance"
        );
        next = r.next_offset;
    }
}

fn kind_of(name: &str, active_log: &str) -> Option<Kind> {
    Some(match name {
        "partition.meta" => Kind::Meta,
        "leader-epoch.checkpoint" => Kind::EpochCheckpoint,
        "cleaner.checkpoint" => Kind::CleanerCheckpoint,
        n if n == active_log => Kind::ActiveLog,
        n if n.ends_with(".log") => Kind::SealedLog,
        n if n.ends_with(".index") || n.ends_with(".timeindex") => Kind::Index,
        _ => return None,
    })
}

/// Runs every case for one golden log over the files `wanted` selects; returns (cases, detected).
fn run_all(g: &Golden, rng: &mut Rng, wanted: impl Fn(Kind) -> bool) -> (usize, usize) {
    let golden = snapshot(g.dir.path());
    let active_log = golden
        .keys()
        .filter(|n| n.ends_with(".log"))
        .max()
        .expect("a segment")
        .clone();
    let (mut cases, mut detected) = (0, 0);
    for (file, bytes) in &golden {
        let Some(kind) = kind_of(file, &active_log).filter(|k| wanted(*k)) else {
            continue;
        };
        let is_log = matches!(kind, Kind::SealedLog | Kind::ActiveLog);
        for damage in damages(rng, bytes, is_log) {
            let case = Case {
                g,
                file,
                kind,
                damage,
                loss_from: loss_allowed_from(g, kind, bytes, damage),
            };
            cases += 1;
            detected += run(&case, &golden) as usize;
        }
    }
    (cases, detected)
}

/// Proves: after a clean close and after a crash, no single flipped byte or cut in any of a
/// log's files (segments sealed and active, indexes, partition.meta, the leader-epoch
/// checkpoint) loses or rewrites an acknowledged record or reuses its offset, beyond what a
/// crash itself explains; damage fails the open with a typed error and an untouched
/// directory, or is refused by the read that meets it.
#[test]
fn damage_to_any_file_never_loses_or_reuses_an_acknowledged_offset() {
    let mut rng = Rng(SEED);
    let mut total = 0;
    for clean in [true, false] {
        let g = build(clean, false);
        let (cases, detected) = run_all(&g, &mut rng, |_| true);
        eprintln!("clean={clean}: {cases} cases, {detected} detected");
        total += cases;
    }
    assert!(total >= 300, "only {total} cases");
}

/// Proves: a damaged cleaner checkpoint never costs a record: it is dropped (the log counts as
/// dirty again) or, on a version flip, the open refuses without touching anything.
#[test]
fn damage_to_the_cleaner_checkpoint_never_loses_a_record() {
    let mut rng = Rng(SEED ^ 1);
    for clean in [true, false] {
        let g = build(clean, true);
        assert!(g.dir.path().join("cleaner.checkpoint").exists());
        let len = fs::metadata(g.dir.path().join("cleaner.checkpoint"))
            .expect("checkpoint")
            .len();
        let golden = snapshot(g.dir.path());
        // Every byte flipped and every cut, the file being small.
        for at in 0..len {
            for damage in [
                Damage::Flip {
                    at,
                    xor: 1 << rng.below(8),
                },
                Damage::Cut { at },
            ] {
                let case = Case {
                    g: &g,
                    file: "cleaner.checkpoint",
                    kind: Kind::CleanerCheckpoint,
                    damage,
                    loss_from: None,
                };
                run(&case, &golden);
            }
        }
        // The other files of a compacted log, but for its sealed segments: below the clean
        // offset a segment may end short of the next one (the cleaner dropped its last
        // batches), so a cut exactly at a batch boundary there cannot be told from cleaning.
        // That one blind spot is documented on `check_continues` in log.rs.
        run_all(&g, &mut rng, |k| {
            !matches!(k, Kind::CleanerCheckpoint | Kind::SealedLog)
        });
    }
}
