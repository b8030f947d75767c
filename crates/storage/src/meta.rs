//! Small per-partition files written atomically (temp file, fsync, rename, fsync of the
//! directory): the partition metadata and the leader-epoch checkpoint.

use crate::error::{StorageError, fatal_err, io_err};
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use weir_model::{LeaderEpoch, Offset};

/// The on-disk format version this build writes and reads (segments, indexes and the files in
/// this module together).
pub const FORMAT_VERSION: u16 = 1;

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
        let version = u16::from_be_bytes([b[4], b[5]]);
        if version != FORMAT_VERSION {
            return Err(StorageError::UnsupportedFormat {
                path: path.to_path_buf(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
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
    let version = u16::from_be_bytes([b[4], b[5]]);
    if version != FORMAT_VERSION {
        return Err(StorageError::UnsupportedFormat {
            path: path.clone(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
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
