//! Small per-partition files written atomically (temp file, fsync, rename, fsync of the
//! directory): the partition metadata and the leader-epoch checkpoint.
//!
//! Checksums: every file here has carried a CRC-32C since format version 1 (each layout
//! below says what it covers), so damage is always detected and no format change was needed.
//! What damage leads to is decided at open ([`crate::PartitionLog::open`]): `partition.meta`,
//! the leader-epoch checkpoint and the cleaner checkpoint are rebuilt or dropped (all they
//! hold can be recovered from the segments, or only errs on the safe side when lost); the
//! cleaner's swap manifest cannot be (it is the commit record of a swap in progress), so its
//! damage fails the open. A version this build does not know is never rebuilt over (see
//! `check_version`).

use crate::error::{StorageError, fatal_err, io_err};
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use weir_model::{LeaderEpoch, Offset};

/// The on-disk format version this build writes and reads (segments, indexes and the files in
/// this module together).
pub const FORMAT_VERSION: u16 = 1;

/// The version check every file here makes right after its magic. A version this build does
/// not know is [`StorageError::UnsupportedFormat`] even when the file's checksum fails: a
/// newer version may lay the file out differently (the checksum elsewhere), so a bad
/// checksum cannot tell damage from a newer file, and a newer file must never be rebuilt
/// over. Version 0 was never written (formats start at 1), so it is damage.
fn check_version(path: &Path, version: u16) -> Result<(), StorageError> {
    if version == 0 {
        return Err(StorageError::CorruptMetadata {
            path: path.to_path_buf(),
            reason: "format version 0".into(),
        });
    }
    if version != FORMAT_VERSION {
        return Err(StorageError::UnsupportedFormat {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(())
}

pub(crate) const META_FILE: &str = "partition.meta";
pub(crate) const EPOCH_FILE: &str = "leader-epoch.checkpoint";

/// `partition.meta`, 32 bytes, big-endian:
///
/// ```text
/// 0  4  magic "WEIR"
/// 4  2  format version (1)
/// 6  2  flags: bit 0 = closed cleanly
/// 8  8  log start offset
/// 16 8  log end offset at clean close (-1 when not clean)
/// 24 4  reserved (0)
/// 28 4  CRC-32C of bytes 0..28
/// ```
///
/// Rewritten when the log start offset moves, at open (clean flag cleared, before any append
/// can happen) and at close (clean flag set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PartitionMeta {
    pub log_start: Offset,
    /// `Some(log end offset)` when the log was closed cleanly.
    pub clean_end: Option<Offset>,
}

const META_MAGIC: &[u8; 4] = b"WEIR";
const META_BYTES: usize = 32;

impl PartitionMeta {
    fn encode(&self) -> [u8; META_BYTES] {
        let mut b = [0u8; META_BYTES];
        b[0..4].copy_from_slice(META_MAGIC);
        b[4..6].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
        let flags: u16 = if self.clean_end.is_some() { 1 } else { 0 };
        b[6..8].copy_from_slice(&flags.to_be_bytes());
        b[8..16].copy_from_slice(&self.log_start.get().to_be_bytes());
        b[16..24].copy_from_slice(&self.clean_end.map_or(-1, |o| o.get()).to_be_bytes());
        let crc = crc32c::crc32c(&b[..28]);
        b[28..32].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn decode(path: &Path, b: &[u8]) -> Result<PartitionMeta, StorageError> {
        let corrupt = |reason: &str| StorageError::CorruptMetadata {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        if b.len() < 6 || &b[0..4] != META_MAGIC {
            return Err(corrupt("not a weir partition metadata file"));
        }
        check_version(path, u16::from_be_bytes([b[4], b[5]]))?;
        if b.len() != META_BYTES {
            return Err(corrupt("wrong size"));
        }
        let stored = u32::from_be_bytes([b[28], b[29], b[30], b[31]]);
        if crc32c::crc32c(&b[..28]) != stored {
            return Err(corrupt("checksum mismatch"));
        }
        let i64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            i64::from_be_bytes(a)
        };
        let flags = u16::from_be_bytes([b[6], b[7]]);
        let log_start = i64_at(8);
        if log_start < 0 {
            return Err(corrupt("negative log start offset"));
        }
        let clean_end = (flags & 1 == 1 && i64_at(16) >= 0).then(|| Offset(i64_at(16)));
        Ok(PartitionMeta {
            log_start: Offset(log_start),
            clean_end,
        })
    }

    pub fn load(dir: &Path) -> Result<Option<PartitionMeta>, StorageError> {
        let path = dir.join(META_FILE);
        match fs::read(&path) {
            Ok(b) => Self::decode(&path, &b).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, "reading")(e)),
        }
    }

    pub fn store(&self, dir: &Path) -> Result<(), StorageError> {
        write_atomically(dir, META_FILE, &self.encode())
    }
}

/// `leader-epoch.checkpoint`, big-endian:
///
/// ```text
/// 0      4  magic "WEPC"
/// 4      2  format version (1)
/// 6      4  entry count n
/// 10  12*n  entries: leader epoch i32, start offset i64 (both ascending)
/// end-4  4  CRC-32C of everything before it
/// ```
///
/// Rewritten whenever the cache changes (a new epoch is appended, truncation, the log start
/// moves). At open it is merged with the epochs found in batch headers, so a stale or missing
/// checkpoint only loses entries that no batch in the log carries any more.
pub(crate) fn load_epochs(dir: &Path) -> Result<Vec<(LeaderEpoch, Offset)>, StorageError> {
    let path = dir.join(EPOCH_FILE);
    let b = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&path, "reading")(e)),
    };
    let corrupt = |reason: &str| StorageError::CorruptMetadata {
        path: path.clone(),
        reason: reason.into(),
    };
    if b.len() < 14 || &b[0..4] != b"WEPC" {
        return Err(corrupt("not a leader epoch checkpoint"));
    }
    check_version(&path, u16::from_be_bytes([b[4], b[5]]))?;
    let n = u32::from_be_bytes([b[6], b[7], b[8], b[9]]) as usize;
    // The count is checked against the file's real size before anything is sized by it.
    if b.len() != 14 + 12 * n {
        return Err(corrupt("size does not match entry count"));
    }
    let end = b.len() - 4;
    let stored = u32::from_be_bytes([b[end], b[end + 1], b[end + 2], b[end + 3]]);
    if crc32c::crc32c(&b[..end]) != stored {
        return Err(corrupt("checksum mismatch"));
    }
    let mut out = Vec::with_capacity(n);
    for e in b[10..end].chunks_exact(12) {
        let epoch = i32::from_be_bytes([e[0], e[1], e[2], e[3]]);
        let mut a = [0u8; 8];
        a.copy_from_slice(&e[4..12]);
        out.push((LeaderEpoch(epoch), Offset(i64::from_be_bytes(a))));
    }
    if out.windows(2).any(|w| w[0].0 >= w[1].0 || w[0].1 > w[1].1) {
        return Err(corrupt("entries not ascending"));
    }
    Ok(out)
}

pub(crate) fn store_epochs(
    dir: &Path,
    entries: &[(LeaderEpoch, Offset)],
) -> Result<(), StorageError> {
    let mut b = Vec::with_capacity(14 + 12 * entries.len());
    b.extend_from_slice(b"WEPC");
    b.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    b.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for (epoch, start) in entries {
        b.extend_from_slice(&epoch.get().to_be_bytes());
        b.extend_from_slice(&start.get().to_be_bytes());
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    write_atomically(dir, EPOCH_FILE, &b)
}

pub(crate) const CLEANER_CHECKPOINT_FILE: &str = "cleaner.checkpoint";
pub(crate) const CLEANER_SWAP_FILE: &str = "cleaner.swap";

/// At most this many tombstone-clock entries are kept; past it the two oldest merge, keeping
/// the later time, so tombstones are only ever kept longer, never shorter.
pub(crate) const CLEANER_HORIZON_ENTRIES_MAX: usize = 32;

/// `cleaner.checkpoint`: where the clean part of the log ends, and when each stretch of it was
/// first cleaned (the clock for `delete.retention.ms`). Big-endian:
///
/// ```text
/// 0       4  magic "WECC"
/// 4       2  format version (1)
/// 6       8  clean offset: records below it have been through the cleaner (the first dirty
///            offset; the dirty ratio is computed from it)
/// 14      4  entry count n (<= 32)
/// 18  16*n   entries: end offset i64, first-cleaned time ms i64, both ascending. Records in
///            [previous end, end) were first cleaned at that time; the last end is the clean
///            offset.
/// end-4   4  CRC-32C of everything before it
/// ```
///
/// Written atomically after each cleaning round and when truncation cuts below the clean
/// offset. Missing means nothing was ever cleaned: the clean offset is the log start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CleanerCheckpoint {
    pub clean_offset: Offset,
    /// `(end offset, first cleaned at ms)`, ascending in both.
    pub horizon: Vec<(Offset, i64)>,
}

impl CleanerCheckpoint {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(22 + 16 * self.horizon.len());
        b.extend_from_slice(b"WECC");
        b.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        b.extend_from_slice(&self.clean_offset.get().to_be_bytes());
        b.extend_from_slice(&(self.horizon.len() as u32).to_be_bytes());
        for (end, at) in &self.horizon {
            b.extend_from_slice(&end.get().to_be_bytes());
            b.extend_from_slice(&at.to_be_bytes());
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    pub fn decode(path: &Path, b: &[u8]) -> Result<CleanerCheckpoint, StorageError> {
        let corrupt = |reason: &str| StorageError::CorruptMetadata {
            path: path.to_path_buf(),
            reason: reason.into(),
        };
        if b.len() < 22 || &b[0..4] != b"WECC" {
            return Err(corrupt("not a cleaner checkpoint"));
        }
        check_version(path, u16::from_be_bytes([b[4], b[5]]))?;
        let n = u32::from_be_bytes([b[14], b[15], b[16], b[17]]) as usize;
        // Checked against the real size before anything is sized by it.
        if n > CLEANER_HORIZON_ENTRIES_MAX || b.len() != 22 + 16 * n {
            return Err(corrupt("size does not match entry count"));
        }
        let end = b.len() - 4;
        let stored = u32::from_be_bytes([b[end], b[end + 1], b[end + 2], b[end + 3]]);
        if crc32c::crc32c(&b[..end]) != stored {
            return Err(corrupt("checksum mismatch"));
        }
        let i64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            i64::from_be_bytes(a)
        };
        let clean_offset = Offset(i64_at(6));
        let horizon: Vec<(Offset, i64)> = (0..n)
            .map(|i| (Offset(i64_at(18 + 16 * i)), i64_at(26 + 16 * i)))
            .collect();
        if clean_offset.get() < 0
            || horizon
                .windows(2)
                .any(|w| w[0].0 >= w[1].0 || w[0].1 > w[1].1)
            || horizon.last().is_some_and(|l| l.0 != clean_offset)
        {
            return Err(corrupt(
                "entries not ascending or not ending at the clean offset",
            ));
        }
        Ok(CleanerCheckpoint {
            clean_offset,
            horizon,
        })
    }

    pub fn load(dir: &Path) -> Result<Option<CleanerCheckpoint>, StorageError> {
        let path = dir.join(CLEANER_CHECKPOINT_FILE);
        match fs::read(&path) {
            Ok(b) => Self::decode(&path, &b).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, "reading")(e)),
        }
    }

    pub fn store(&self, dir: &Path) -> Result<(), StorageError> {
        write_atomically(dir, CLEANER_CHECKPOINT_FILE, &self.encode())
    }

    /// When the stretch holding `offset` was first cleaned; `None` if it is still dirty.
    pub fn first_cleaned_at(&self, offset: Offset) -> Option<i64> {
        let i = self.horizon.partition_point(|e| e.0 <= offset);
        self.horizon.get(i).map(|e| e.1)
    }

    /// Records that everything below `end` is clean, the new part first cleaned `at`.
    pub fn advance(&mut self, end: Offset, at: i64) {
        if end <= self.clean_offset {
            return;
        }
        // Time never goes back here, even if the wall clock did.
        let at = self.horizon.last().map_or(at, |l| at.max(l.1));
        self.horizon.push((end, at));
        self.clean_offset = end;
        while self.horizon.len() > CLEANER_HORIZON_ENTRIES_MAX {
            // Merging the two oldest keeps the later time for both: tombstones there live
            // longer than they must, never shorter.
            self.horizon.remove(0);
        }
    }

    /// The log was cut back to `end` (truncation): nothing at or past it is clean any more.
    /// Returns whether anything changed.
    pub fn truncate_to(&mut self, end: Offset) -> bool {
        if self.clean_offset <= end {
            return false;
        }
        self.clean_offset = end;
        let keep = self.horizon.partition_point(|e| e.0 < end);
        self.horizon.truncate(keep + 1);
        if let Some(last) = self.horizon.last_mut() {
            last.0 = end;
        }
        true
    }

    /// The log restarts empty at `start`.
    pub fn reset(start: Offset) -> CleanerCheckpoint {
        CleanerCheckpoint {
            clean_offset: start,
            horizon: Vec::new(),
        }
    }
}

/// One replacement in a cleaning round: the segment `new_base` (written as `<new_base>.log
/// .cleaned`) takes the place of the segments at `old_bases` (the first of which is
/// `new_base` itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SwapGroup {
    pub new_base: Offset,
    pub old_bases: Vec<Offset>,
}

/// Most groups one round may swap, and most segments one group may replace: a bound for the
/// manifest decoder; a round never comes close (each group is at most `segment.bytes`).
pub(crate) const SWAP_GROUPS_MAX: usize = 1 << 16;
pub(crate) const SWAP_GROUP_SEGMENTS_MAX: usize = 1 << 16;

/// `cleaner.swap`: the commit record of a cleaning round. Its atomic appearance is the point
/// after which the round is carried out, whatever crashes: at open, a manifest present means
/// "finish the swap" (delete the old segments it names, rename the `.cleaned` files that are
/// left, store the checkpoint), absent means "roll back" (delete every `.cleaned` file).
/// Big-endian:
///
/// ```text
/// 0     4  magic "WECS"
/// 4     2  format version (1)
/// 6     4  group count g
///          g groups: new base i64, old segment count n u32, n old bases i64
///       4  checkpoint length c, then c bytes: the `cleaner.checkpoint` after the round
/// end-4 4  CRC-32C of everything before it
/// ```
///
/// Why a manifest rather than Kafka's `.swap` suffix: a cleaned segment whose last batches
/// were all removed ends before the old segments it replaces did, so the replaced range
/// cannot be told from the new file; the manifest names the old segments outright, and one
/// file appearing atomically is the whole round's commit point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SwapManifest {
    pub groups: Vec<SwapGroup>,
    pub checkpoint: CleanerCheckpoint,
}

impl SwapManifest {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"WECS");
        b.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        b.extend_from_slice(&(self.groups.len() as u32).to_be_bytes());
        for g in &self.groups {
            b.extend_from_slice(&g.new_base.get().to_be_bytes());
            b.extend_from_slice(&(g.old_bases.len() as u32).to_be_bytes());
            for o in &g.old_bases {
                b.extend_from_slice(&o.get().to_be_bytes());
            }
        }
        let cp = self.checkpoint.encode();
        b.extend_from_slice(&(cp.len() as u32).to_be_bytes());
        b.extend_from_slice(&cp);
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    pub fn decode(path: &Path, b: &[u8]) -> Result<SwapManifest, StorageError> {
        let corrupt = |reason: &str| StorageError::CorruptMetadata {
            path: path.to_path_buf(),
            reason: reason.into(),
        };
        if b.len() < 14 || &b[0..4] != b"WECS" {
            return Err(corrupt("not a cleaner swap manifest"));
        }
        check_version(path, u16::from_be_bytes([b[4], b[5]]))?;
        let end = b.len() - 4;
        let stored = u32::from_be_bytes([b[end], b[end + 1], b[end + 2], b[end + 3]]);
        if crc32c::crc32c(&b[..end]) != stored {
            return Err(corrupt("checksum mismatch"));
        }
        let body = &b[..end];
        let mut at = 6usize;
        let u32_at = |at: usize| -> Option<u32> {
            Some(u32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?))
        };
        let i64_at = |at: usize| -> Option<i64> {
            Some(i64::from_be_bytes(body.get(at..at + 8)?.try_into().ok()?))
        };
        let short = || corrupt("cut short");
        let g = u32_at(at).ok_or_else(short)? as usize;
        at += 4;
        if g > SWAP_GROUPS_MAX || g * 12 > body.len() {
            return Err(corrupt("too many groups"));
        }
        let mut groups = Vec::with_capacity(g);
        for _ in 0..g {
            let new_base = Offset(i64_at(at).ok_or_else(short)?);
            let n = u32_at(at + 8).ok_or_else(short)? as usize;
            at += 12;
            if n > SWAP_GROUP_SEGMENTS_MAX || n * 8 > body.len().saturating_sub(at) {
                return Err(corrupt("too many old segments"));
            }
            let mut old_bases = Vec::with_capacity(n);
            for _ in 0..n {
                old_bases.push(Offset(i64_at(at).ok_or_else(short)?));
                at += 8;
            }
            if old_bases.first() != Some(&new_base) {
                return Err(corrupt("a group does not start at its new segment's base"));
            }
            groups.push(SwapGroup {
                new_base,
                old_bases,
            });
        }
        let c = u32_at(at).ok_or_else(short)? as usize;
        at += 4;
        let cp = body.get(at..at + c).ok_or_else(short)?;
        if at + c != body.len() {
            return Err(corrupt("trailing bytes"));
        }
        Ok(SwapManifest {
            groups,
            checkpoint: CleanerCheckpoint::decode(path, cp)?,
        })
    }

    pub fn load(dir: &Path) -> Result<Option<SwapManifest>, StorageError> {
        let path = dir.join(CLEANER_SWAP_FILE);
        match fs::read(&path) {
            Ok(b) => Self::decode(&path, &b).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, "reading")(e)),
        }
    }
}

/// Replaces `dir/name` with `bytes` so that a crash leaves either the old or the new content.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).map_err(io_err(&tmp, "creating"))?;
    f.write_all(bytes).map_err(io_err(&tmp, "writing"))?;
    f.sync_all().map_err(fatal_err(&tmp, "fsync of"))?;
    fs::rename(&tmp, &path).map_err(io_err(&path, "renaming into"))?;
    sync_dir(dir)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let d = File::open(dir).map_err(io_err(dir, "opening directory"))?;
    d.sync_all().map_err(fatal_err(dir, "fsync of directory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_refuses_unknown_versions() {
        let dir = tempfile::tempdir().unwrap();
        let m = PartitionMeta {
            log_start: Offset(42),
            clean_end: Some(Offset(100)),
        };
        m.store(dir.path()).unwrap();
        assert_eq!(PartitionMeta::load(dir.path()).unwrap(), Some(m));
        let mut b = m.encode();
        b[5] = 9;
        fs::write(dir.path().join(META_FILE), b).unwrap();
        let e = PartitionMeta::load(dir.path()).unwrap_err();
        assert!(
            matches!(e, StorageError::UnsupportedFormat { found: 9, .. }),
            "{e}"
        );
    }

    /// Proves: the cleaner checkpoint and the swap manifest round-trip, and damage is refused.
    #[test]
    fn cleaner_files_round_trip_and_detect_damage() {
        let mut cp = CleanerCheckpoint::reset(Offset(3));
        cp.advance(Offset(10), 100);
        cp.advance(Offset(20), 90); // an earlier clock does not move the time back
        assert_eq!(cp.horizon, vec![(Offset(10), 100), (Offset(20), 100)]);
        assert_eq!(cp.first_cleaned_at(Offset(9)), Some(100));
        assert_eq!(cp.first_cleaned_at(Offset(20)), None);
        let path = Path::new("/x");
        let b = cp.encode();
        assert_eq!(CleanerCheckpoint::decode(path, &b).unwrap(), cp);
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x40;
            assert!(CleanerCheckpoint::decode(path, &d).is_err(), "flip at {i}");
        }
        let m = SwapManifest {
            groups: vec![
                SwapGroup {
                    new_base: Offset(0),
                    old_bases: vec![Offset(0), Offset(7)],
                },
                SwapGroup {
                    new_base: Offset(12),
                    old_bases: vec![Offset(12)],
                },
            ],
            checkpoint: cp.clone(),
        };
        let b = m.encode();
        assert_eq!(SwapManifest::decode(path, &b).unwrap(), m);
        for cut in 0..b.len() {
            assert!(
                SwapManifest::decode(path, &b[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut many = CleanerCheckpoint::reset(Offset::ZERO);
        for i in 1..100 {
            many.advance(Offset(i), i);
        }
        assert_eq!(many.horizon.len(), CLEANER_HORIZON_ENTRIES_MAX);
        // Merged entries keep the later time: offset 0 now counts as first cleaned at 68.
        assert_eq!(many.first_cleaned_at(Offset(0)), Some(68));
        assert!(many.truncate_to(Offset(50)));
        assert_eq!(many.clean_offset, Offset(50));
        assert_eq!(many.horizon, vec![(Offset(50), 68)]);
    }

    #[test]
    fn epoch_checkpoint_round_trips_and_detects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let entries = vec![(LeaderEpoch(1), Offset(0)), (LeaderEpoch(4), Offset(17))];
        store_epochs(dir.path(), &entries).unwrap();
        assert_eq!(load_epochs(dir.path()).unwrap(), entries);
        let path = dir.path().join(EPOCH_FILE);
        let mut b = fs::read(&path).unwrap();
        b[12] ^= 1;
        fs::write(&path, &b).unwrap();
        assert!(load_epochs(dir.path()).is_err());
    }
}
