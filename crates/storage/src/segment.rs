//! One segment: a `.log` file of stored batches plus its sparse `.index` and `.timeindex`.
//!
//! Files are named after the segment's base offset, 20 digits, as Kafka names them:
//! `00000000000000000000.log`, `.index`, `.timeindex`.
//!
//! - `.log`: RecordBatch v2 batches back to back, exactly as appended (see [`crate::batch`]),
//!   with strictly increasing offsets from the base offset on: contiguous as appended, with
//!   gaps once the log cleaner has removed records (see [`crate::cleaner`]). No header of its
//!   own; the format version lives in `partition.meta`.
//! - `.index`: 8-byte entries, big-endian: offset relative to the base (u32), byte position of
//!   the batch starting at that offset (u32). One entry at the first batch after at least
//!   `index.interval.bytes` of batches since the previous entry (or the segment start).
//! - `.timeindex`: 12-byte entries, one per `.index` entry, big-endian: the largest batch
//!   `maxTimestamp` among the batches *before* the entry (i64, -1 if none), relative offset
//!   (u32). Non-decreasing, so a timestamp lookup is a binary search: every record before an
//!   entry whose timestamp is < the target is older than the target.
//!
//! Index files carry no checksum, and need none: at open they are compared with the index
//! rebuilt from the log's batch headers and rewritten when they differ, so damage to them
//! costs a rewrite, never a record. The in-memory copy serves lookups.

use crate::batch::{BATCH_HEADER_BYTES, BatchHeader, validate_batch_at};
use crate::error::{StorageError, fatal_err, io_err};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use weir_model::Offset;
use weir_model::limits::REQUEST_BYTES_MAX_DEFAULT;

/// Largest batch recovery accepts. Recovery must not refuse a batch that was accepted under a
/// larger `max.message.bytes`, but a batch can never exceed a produce request.
pub(crate) const RECOVERY_BATCH_BYTES_MAX: u32 = REQUEST_BYTES_MAX_DEFAULT;
/// Bytes read at a time when walking batch headers.
const WALK_CHUNK_BYTES: usize = 16 * 1024;
/// The header prefix a walk needs: baseOffset, batchLength, ..., lastOffsetDelta.
const WALK_HEADER_BYTES: usize = 27;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub rel: u32,
    pub pos: u32,
    pub max_ts_before: i64,
}

/// `<base>.log.cleaned` and friends: a cleaner round's output before it is committed.
pub(crate) fn cleaned_name(base: Offset, ext: &str) -> String {
    format!("{}.cleaned", file_name(base, ext))
}

pub(crate) fn file_name(base: Offset, ext: &str) -> String {
    format!("{:020}.{ext}", base.get())
}

/// Parses `00000000000000000042.log` into 42.
pub(crate) fn parse_log_name(name: &str) -> Option<Offset> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok().map(Offset)
}

/// Where segment ids come from: unique within the process, so the cleaner can tell at swap
/// time that the segments it copied are still the very ones in the log.
static NEXT_SEGMENT_ID: AtomicU64 = AtomicU64::new(1);

fn next_segment_id() -> u64 {
    NEXT_SEGMENT_ID.fetch_add(1, Ordering::Relaxed)
}

#[derive(Debug)]
pub(crate) struct Segment {
    /// Identity of this segment's content: fresh at create and open, and again whenever the
    /// file is cut (truncation), so a cleaner round planned on the old content never swaps.
    pub id: u64,
    pub base: Offset,
    /// One past the last offset stored here (== base when empty).
    pub next_offset: Offset,
    /// Bytes of whole batches in the file.
    pub size: u64,
    /// Largest batch maxTimestamp here (-1 if none) and the last offset of that batch.
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: Offset,
    /// Reference time for `segment.ms`: the first append's clock, or at open the first batch's
    /// maxTimestamp.
    pub rolling_ts: Option<i64>,
    pub index: Vec<IndexEntry>,
    bytes_since_entry: u64,
    file: File,
    path: PathBuf,
    /// "" for a live segment; ".cleaned" while the cleaner writes it (see `crate::cleaner`).
    suffix: &'static str,
}

/// How a walk of a segment's batches ended.
#[derive(Debug)]
pub(crate) struct WalkEnd {
    /// Bytes of valid batches from the start of the file.
    pub valid_bytes: u64,
    /// Why the walk stopped before the end of the file, if it did.
    pub problem: Option<WalkProblem>,
}

/// Why a walk stopped at `WalkEnd::valid_bytes`.
#[derive(Debug)]
pub(crate) struct WalkProblem {
    pub reason: String,
    /// The batch there is whole (and, in a verifying walk, passed its CRC) but breaks the
    /// offset order: a crash cannot do that, only damage to its baseOffset or
    /// lastOffsetDelta can. A torn write leaves a short or unchecksummed batch instead.
    pub damage: bool,
}

impl WalkProblem {
    fn torn_or_damage(reason: String) -> Option<WalkProblem> {
        Some(WalkProblem {
            reason,
            damage: false,
        })
    }

    fn damage(reason: String) -> Option<WalkProblem> {
        Some(WalkProblem {
            reason,
            damage: true,
        })
    }
}

impl Segment {
    pub fn create(dir: &Path, base: Offset) -> Result<Segment, StorageError> {
        let path = dir.join(file_name(base, "log"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err(&path, "creating segment"))?;
        for ext in ["index", "timeindex"] {
            let p = dir.join(file_name(base, ext));
            File::create(&p).map_err(io_err(&p, "creating index"))?;
        }
        Ok(Segment::with_file(base, file, path))
    }

    /// A new, empty `<base>.log.cleaned` for the cleaner to write (no index files until
    /// [`Segment::write_cleaned_index_files`]).
    pub fn create_cleaned(dir: &Path, base: Offset) -> Result<Segment, StorageError> {
        let path = dir.join(cleaned_name(base, "log"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err(&path, "creating cleaned segment"))?;
        let mut seg = Segment::with_file(base, file, path);
        seg.suffix = ".cleaned";
        Ok(seg)
    }

    /// The path of this segment's file with extension `ext` (and its suffix, if any).
    fn file_path(&self, ext: &str) -> PathBuf {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        dir.join(format!("{}{}", file_name(self.base, ext), self.suffix))
    }

    /// The cleaned segment now lives under its final name (the swap renamed the files; the
    /// open handle follows the rename).
    pub fn mark_renamed_to_final(&mut self) {
        self.suffix = "";
        self.path = self.file_path("log");
    }

    pub fn open(dir: &Path, base: Offset) -> Result<(Segment, u64), StorageError> {
        let path = dir.join(file_name(base, "log"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path, "opening segment"))?;
        let len = file
            .metadata()
            .map_err(io_err(&path, "reading size of"))?
            .len();
        Ok((Segment::with_file(base, file, path), len))
    }

    fn with_file(base: Offset, file: File, path: PathBuf) -> Segment {
        Segment {
            id: next_segment_id(),
            base,
            next_offset: base,
            size: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: base,
            rolling_ts: None,
            index: Vec::new(),
            bytes_since_entry: 0,
            file,
            path,
            suffix: "",
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Forgets the tracked batches so a walk can rebuild them.
    pub fn reset_tracking(&mut self) {
        self.next_offset = self.base;
        self.size = 0;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = self.base;
        self.rolling_ts = None;
        self.index.clear();
        self.bytes_since_entry = 0;
    }

    /// Accounts for a batch written at `pos` (the current end): index entry, timestamps.
    #[inline]
    pub fn track_batch(
        &mut self,
        pos: u64,
        base: Offset,
        last: Offset,
        size: u64,
        max_ts: i64,
        index_interval: u32,
    ) {
        debug_assert_eq!(pos, self.size);
        // Gaps are allowed: a compacted log (or a follower's copy of one) has them.
        debug_assert!(base >= self.next_offset);
        if self.bytes_since_entry >= index_interval as u64 {
            self.index.push(IndexEntry {
                rel: (base.get() - self.base.get()) as u32,
                pos: pos as u32,
                max_ts_before: self.max_timestamp,
            });
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += size;
        if max_ts > self.max_timestamp {
            self.max_timestamp = max_ts;
            self.offset_of_max_timestamp = last;
        }
        if self.rolling_ts.is_none() {
            self.rolling_ts = Some(max_ts);
        }
        self.next_offset = last.plus(1);
        self.size = pos + size;
    }

    /// Writes `bytes` at the end of the file in one positional write. On failure the file is
    /// cut back to its previous size so no partial batch stays behind; if even that fails the
    /// environment is broken.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        if let Err(e) = self.file.write_all_at(bytes, self.size) {
            self.file
                .set_len(self.size)
                .map_err(fatal_err(&self.path, "rolling back a failed write to"))?;
            return Err(io_err(&self.path, "appending to")(e));
        }
        Ok(())
    }

    /// Writes `bytes` at `pos` (the cleaner's buffered writes into a `.cleaned` file).
    pub fn write_at(&self, pos: u64, bytes: &[u8]) -> Result<(), StorageError> {
        self.file
            .write_all_at(bytes, pos)
            .map_err(io_err(&self.path, "writing cleaned segment"))
    }

    /// A second handle on the file, for reads that must not hold the log's lock.
    pub fn clone_file(&self) -> Result<File, StorageError> {
        self.file
            .try_clone()
            .map_err(io_err(&self.path, "duplicating handle of"))
    }

    pub fn sync(&self) -> Result<(), StorageError> {
        self.file
            .sync_data()
            .map_err(fatal_err(&self.path, "fsync of"))
    }

    /// Cuts the file to `size` bytes (a batch boundary).
    pub fn truncate_file(&mut self, size: u64) -> Result<(), StorageError> {
        self.id = next_segment_id();
        self.file
            .set_len(size)
            .map_err(io_err(&self.path, "truncating"))
    }

    /// Walks the batches of the file's first `len` bytes from the start, checking framing,
    /// header fields and offset contiguity, and with `verify` also CRC and record framing.
    /// Calls `on_batch(position, header)` for each good batch and tracks it. Stops at the
    /// first bad or incomplete batch.
    pub fn walk(
        &mut self,
        len: u64,
        verify: bool,
        index_interval: u32,
        mut on_batch: impl FnMut(u64, &BatchHeader),
    ) -> Result<WalkEnd, StorageError> {
        self.reset_tracking();
        // A second handle, so the reader's borrow does not conflict with tracking batches.
        let file = self
            .file
            .try_clone()
            .map_err(io_err(&self.path, "duplicating handle of"))?;
        let path = self.path.clone();
        let mut reader = ChunkReader::new(&file, &path, len);
        let mut pos = 0u64;
        let mut problem = None;
        while pos < len {
            let remaining = len - pos;
            if remaining < BATCH_HEADER_BYTES as u64 {
                problem = WalkProblem::torn_or_damage(format!("{remaining} trailing bytes"));
                break;
            }
            let h = match BatchHeader::parse(reader.bytes(pos, BATCH_HEADER_BYTES)?) {
                Ok(h) => h,
                Err(e) => {
                    problem = WalkProblem::torn_or_damage(e.to_string());
                    break;
                }
            };
            let size = h.size_bytes() as u64;
            if size > remaining {
                problem = WalkProblem::torn_or_damage(format!(
                    "a batch of {size} bytes is cut at {remaining}"
                ));
                break;
            }
            if size > RECOVERY_BATCH_BYTES_MAX as u64 {
                problem = WalkProblem::torn_or_damage(format!("a batch claims {size} bytes"));
                break;
            }
            if verify {
                // size is bounded by the file and by RECOVERY_BATCH_BYTES_MAX above.
                let bytes = reader.bytes(pos, size as usize)?;
                if let Err(e) = validate_batch_at(bytes, pos as usize, RECOVERY_BATCH_BYTES_MAX) {
                    problem = WalkProblem::torn_or_damage(e.to_string());
                    break;
                }
            }
            // Offsets only increase; gaps are where the log cleaner removed records.
            if h.base_offset < self.next_offset {
                problem = WalkProblem::damage(format!(
                    "a whole batch has base offset {}, below the end of the one before it",
                    h.base_offset
                ));
                break;
            }
            if h.last_offset().get() - self.base.get() > u32::MAX as i64 {
                problem = WalkProblem::damage("a batch overflows the segment's offsets".into());
                break;
            }
            on_batch(pos, &h);
            self.track_batch(
                pos,
                h.base_offset,
                h.last_offset(),
                size,
                h.max_timestamp.get(),
                index_interval,
            );
            pos += size;
        }
        Ok(WalkEnd {
            valid_bytes: pos,
            problem,
        })
    }

    /// The first position in `[from, len)` where a whole batch passes every check (header,
    /// size within the file, CRC-32C, record framing) and starts at or after `expected`. One
    /// there proves the bytes before it are damage rather than a torn tail: a crash tears only
    /// the end of what was being written. Rare path (recovery after a failed walk): tries
    /// every byte position, but computes a CRC only where magic, length and offset fit.
    pub fn find_valid_batch(
        &self,
        from: u64,
        len: u64,
        expected: Offset,
    ) -> Result<Option<u64>, StorageError> {
        let mut reader = ChunkReader::new(&self.file, &self.path, len);
        let mut pos = from;
        while pos + BATCH_HEADER_BYTES as u64 <= len {
            let head = reader.bytes(pos, BATCH_HEADER_BYTES)?;
            if let Ok(h) = BatchHeader::parse(head) {
                let size = h.size_bytes() as u64;
                if size <= len - pos
                    && size <= RECOVERY_BATCH_BYTES_MAX as u64
                    && h.base_offset >= expected
                {
                    let bytes = reader.bytes(pos, size as usize)?;
                    if validate_batch_at(bytes, pos as usize, RECOVERY_BATCH_BYTES_MAX).is_ok() {
                        return Ok(Some(pos));
                    }
                }
            }
            pos += 1;
        }
        Ok(None)
    }

    /// Byte position to start scanning from for `target`: the last index entry at or before it.
    fn index_position(&self, target: Offset) -> u64 {
        let rel = (target.get() - self.base.get()).clamp(0, u32::MAX as i64) as u32;
        let i = self.index.partition_point(|e| e.rel <= rel);
        if i == 0 {
            0
        } else {
            self.index[i - 1].pos as u64
        }
    }

    /// Position, size, base and last offset of the batch containing `target`, if any.
    pub fn find_batch(
        &self,
        target: Offset,
    ) -> Result<Option<(u64, u64, BatchHeaderLite)>, StorageError> {
        let mut reader = ChunkReader::new(&self.file, &self.path, self.size);
        let mut pos = self.index_position(target);
        while pos < self.size {
            let h = BatchHeaderLite::parse(reader.bytes(pos, WALK_HEADER_BYTES)?);
            if h.last >= target {
                return Ok(Some((pos, h.size, h)));
            }
            pos += h.size;
        }
        Ok(None)
    }

    /// Whole batches from the one containing `from`, totalling at most `max_bytes` (at least
    /// the first one with `min_one_batch`), all with last offset < `upper`.
    ///
    /// Every batch's CRC-32C is checked before it is served: sealed segments are not verified
    /// at open (that would read the whole log at every start), so this is where damage there
    /// is found. A damaged batch is never served, which would make it a consumer's poison
    /// pill; [`StorageError::CorruptLog`] takes the partition offline instead. Cheap: the
    /// bytes are in memory already and CRC-32C runs at memory speed.
    pub fn read(
        &self,
        from: Offset,
        max_bytes: usize,
        upper: Offset,
        min_one_batch: bool,
    ) -> Result<Vec<u8>, StorageError> {
        let Some((start, first_size, first)) = self.find_batch(from)? else {
            return Ok(Vec::new());
        };
        let buf = self.read_batches(start, first_size, first, max_bytes, upper, min_one_batch)?;
        self.check_crcs(start, &buf)?;
        Ok(buf)
    }

    /// Fails with [`StorageError::CorruptLog`] on the first batch in `buf` (read from `start`)
    /// whose CRC-32C does not match.
    fn check_crcs(&self, start: u64, buf: &[u8]) -> Result<(), StorageError> {
        let mut at = 0usize;
        while at < buf.len() {
            let rest = &buf[at..];
            let checked = BatchHeader::parse(rest).and_then(|h| {
                let size = h.size_bytes().min(rest.len());
                crate::batch::check_crc(&rest[..size], at).map(|()| h)
            });
            match checked {
                Ok(h) => at += h.size_bytes(),
                Err(e) => {
                    let base = BatchHeader::parse(rest).map_or(self.base, |h| h.base_offset);
                    return Err(StorageError::CorruptLog {
                        path: self.path.clone(),
                        position: start + at as u64,
                        expected_offset: base,
                        reason: format!("a stored batch fails its check: {e}"),
                    });
                }
            }
        }
        Ok(())
    }

    fn read_batches(
        &self,
        start: u64,
        first_size: u64,
        first: BatchHeaderLite,
        max_bytes: usize,
        upper: Offset,
        min_one_batch: bool,
    ) -> Result<Vec<u8>, StorageError> {
        if first.last >= upper {
            return Ok(Vec::new());
        }
        if first_size as usize > max_bytes {
            if !min_one_batch {
                return Ok(Vec::new());
            }
            return self.read_exact(start, first_size as usize);
        }
        // One read of up to max_bytes, then cut back to the last whole batch below `upper`.
        let len = (max_bytes as u64).min(self.size - start) as usize;
        let mut buf = self.read_exact(start, len)?;
        let mut end = 0usize;
        while end + WALK_HEADER_BYTES <= buf.len() {
            let h = BatchHeaderLite::parse(&buf[end..]);
            if end as u64 + h.size > buf.len() as u64 || h.last >= upper {
                break;
            }
            end += h.size as usize;
        }
        buf.truncate(end);
        Ok(buf)
    }

    pub fn read_exact(&self, pos: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, pos)
            .map_err(io_err(&self.path, "reading"))?;
        Ok(buf)
    }

    /// Start position for a timestamp search: after every entry whose preceding batches are all
    /// older than `target`.
    pub fn time_index_position(&self, target: i64) -> u64 {
        let i = self.index.partition_point(|e| e.max_ts_before < target);
        if i == 0 {
            0
        } else {
            self.index[i - 1].pos as u64
        }
    }

    /// Iterates batch headers from `pos` to the end, calling `f(pos, header)` until it returns
    /// `Some`.
    pub fn scan_from<T>(
        &self,
        mut pos: u64,
        mut f: impl FnMut(u64, &BatchHeader) -> Result<Option<T>, StorageError>,
    ) -> Result<Option<T>, StorageError> {
        let mut reader = ChunkReader::new(&self.file, &self.path, self.size);
        while pos < self.size {
            let bytes = reader.bytes(pos, BATCH_HEADER_BYTES)?;
            let h = BatchHeader::parse(bytes).map_err(StorageError::CorruptBatch)?;
            if let Some(t) = f(pos, &h)? {
                return Ok(Some(t));
            }
            pos += h.size_bytes() as u64;
        }
        Ok(None)
    }

    pub fn index_bytes(&self) -> (Vec<u8>, Vec<u8>) {
        let mut offsets = Vec::with_capacity(self.index.len() * 8);
        let mut times = Vec::with_capacity(self.index.len() * 12);
        for e in &self.index {
            offsets.extend_from_slice(&e.rel.to_be_bytes());
            offsets.extend_from_slice(&e.pos.to_be_bytes());
            times.extend_from_slice(&e.max_ts_before.to_be_bytes());
            times.extend_from_slice(&e.rel.to_be_bytes());
        }
        (offsets, times)
    }

    fn index_paths(&self) -> (PathBuf, PathBuf) {
        (self.file_path("index"), self.file_path("timeindex"))
    }

    /// Writes a cleaned segment's index files (`.index.cleaned`, `.timeindex.cleaned`),
    /// fsynced, before the swap renames them.
    pub fn write_cleaned_index_files(&self) -> Result<(), StorageError> {
        debug_assert_eq!(self.suffix, ".cleaned");
        self.write_index_files(true)
    }

    /// Writes both index files from memory; with `sync`, durably.
    pub fn write_index_files(&self, sync: bool) -> Result<(), StorageError> {
        let (offsets, times) = self.index_bytes();
        let (op, tp) = self.index_paths();
        for (path, bytes) in [(op, offsets), (tp, times)] {
            fs::write(&path, &bytes).map_err(io_err(&path, "writing index"))?;
            if sync {
                let f = File::open(&path).map_err(io_err(&path, "opening index"))?;
                f.sync_data().map_err(fatal_err(&path, "fsync of"))?;
            }
        }
        Ok(())
    }

    /// Rewrites the index files if they differ from the index rebuilt in memory (missing,
    /// short, garbage, or from another `index.interval.bytes`). Returns whether it did.
    pub fn repair_index_files(&self) -> Result<bool, StorageError> {
        let (offsets, times) = self.index_bytes();
        let (op, tp) = self.index_paths();
        let same = |path: &Path, want: &[u8]| -> Result<bool, StorageError> {
            match fs::metadata(path) {
                // Compare sizes first so a huge garbage file is never read.
                Ok(m) if m.len() != want.len() as u64 => Ok(false),
                Ok(_) => Ok(fs::read(path).map_err(io_err(path, "reading index"))? == want),
                Err(_) => Ok(false),
            }
        };
        if same(&op, &offsets)? && same(&tp, &times)? {
            return Ok(false);
        }
        self.write_index_files(false)?;
        Ok(true)
    }

    /// Deletes the segment's files.
    pub fn delete_files(self) -> Result<(), StorageError> {
        let (op, tp) = self.index_paths();
        let log = self.path.clone();
        drop(self.file);
        for p in [log, op, tp] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&p, "deleting")(e)),
            }
        }
        Ok(())
    }

    /// The segment's last-modified time in ms, for retention of segments without timestamps.
    pub fn modified_ms(&self) -> Option<i64> {
        let m = self.file.metadata().ok()?.modified().ok()?;
        m.duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_millis() as i64)
    }
}

/// The header fields a walk needs, from a batch already validated when it was appended.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchHeaderLite {
    pub size: u64,
    pub last: Offset,
}

impl BatchHeaderLite {
    /// `b` holds at least [`WALK_HEADER_BYTES`] bytes of a stored batch.
    fn parse(b: &[u8]) -> BatchHeaderLite {
        let mut base = [0u8; 8];
        base.copy_from_slice(&b[0..8]);
        let len = i32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        let delta = i32::from_be_bytes([b[23], b[24], b[25], b[26]]);
        BatchHeaderLite {
            size: len as u64 + 12,
            last: Offset(i64::from_be_bytes(base) + delta as i64),
        }
    }
}

/// Positional reads through a small buffer, so walking many small batch headers costs one
/// syscall per chunk rather than one per batch.
struct ChunkReader<'a> {
    file: &'a File,
    path: &'a Path,
    end: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'a> ChunkReader<'a> {
    fn new(file: &'a File, path: &'a Path, end: u64) -> Self {
        ChunkReader {
            file,
            path,
            end,
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    /// `[pos, pos + len)`, which the caller guarantees lies within `end`.
    fn bytes(&mut self, pos: u64, len: usize) -> Result<&[u8], StorageError> {
        assert!(pos + len as u64 <= self.end, "read past the segment's end");
        let have =
            pos >= self.buf_start && pos + len as u64 <= self.buf_start + self.buf.len() as u64;
        if !have {
            let want = len.max(WALK_CHUNK_BYTES).min((self.end - pos) as usize);
            self.buf.resize(want, 0);
            self.file
                .read_exact_at(&mut self.buf, pos)
                .map_err(io_err(self.path, "reading"))?;
            self.buf_start = pos;
        }
        let at = (pos - self.buf_start) as usize;
        Ok(&self.buf[at..at + len])
    }
}
