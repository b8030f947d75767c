//! The log cleaner: Kafka's log compaction for topics whose `cleanup.policy` includes
//! `compact`. It keeps the newest record of every key, removes tombstones (null values) once
//! they are `delete.retention.ms` old, and keeps every offset it does not remove.
//!
//! A round runs in three steps, so that appends never wait for the copying:
//!
//! ```text
//! PartitionLog::plan_clean (&self, read lock)   which sealed segments, the dirty ratio; file
//!                                               handles of those segments, the checkpoint
//! Cleaner::clean (no lock at all)               build the key -> offset map over the dirty
//!                                               part, copy the kept records into
//!                                               <base>.log.cleaned (+ indexes), fsync
//! PartitionLog::finish_clean (&mut self)        check the segments are still the same ones,
//!                                               commit (cleaner.swap), rename, drop the old
//! ```
//!
//! Decisions, and why:
//!
//! - **What is cleaned.** Only sealed segments (never the active one), only those wholly below
//!   the upper bound the caller passes (the broker passes the high watermark, so a record that
//!   may still be truncated is never used to remove another), and only a prefix of them that
//!   honours `min.compaction.lag.ms`. A round rewrites the log from its first segment up to
//!   where the map ends, as Kafka does: the clean part must be re-read to drop what the new
//!   dirty records supersede.
//! - **Bounded memory.** The map holds a 16-byte hash of each key (two independently keyed
//!   SipHashes: 128 bits, as Kafka's MD5 in its dedupe buffer; the keys are random per map, so
//!   no producer can choose colliding keys) and an offset, in a table of fixed size
//!   ([`CleanerConfig::dedupe_buffer_bytes`], 24 bytes a slot, filled to 3/4). When it is
//!   full, the round cleans only up to the record that did not fit, and the next round carries
//!   on from there (Kafka's partial cleaning). Batches are read through a buffer of
//!   [`CleanerConfig::io_buffer_bytes`] (a single larger batch is read whole: it was accepted,
//!   so it is bounded by the request size), and decompressed within
//!   [`weir_model::limits::DECOMPRESSED_BATCH_BYTES_MAX`].
//! - **Bounded I/O.** Bytes read and written count against
//!   [`CleanerConfig::io_max_bytes_per_second`]; the cleaner's own thread sleeps to stay under
//!   it (Kafka's `log.cleaner.io.max.bytes.per.second`).
//! - **Batches keep their offset range.** A rewritten batch keeps its base offset, last offset
//!   delta, leader epoch and producer id, epoch and base sequence; only the kept records are
//!   in it (their bytes copied verbatim, so offset and timestamp deltas still hold), with a
//!   new record count, max timestamp and CRC. A batch left with no record is dropped, except
//!   the log's last batch and each producer's last batch, which stay as an empty batch (no
//!   records; Kafka's `RETAIN_EMPTY`): the first so the log end offset is never lost (a
//!   follower copying the log must reach it), the second so an idempotent producer's last
//!   sequence survives a restart and its retries are still recognised.
//! - **Compressed batches** are decompressed, filtered and compressed again with the same
//!   codec (Kafka does the same). A batch that does not decompress within the limit is kept
//!   whole, and its keys do not enter the map.
//! - **Tombstones.** A tombstone is removed only once it has been in the clean part of the log
//!   for `delete.retention.ms`: the clock starts at the round that first cleaned it, kept per
//!   stretch of offsets in `cleaner.checkpoint` (Kafka 3.1+ keeps the same clock in the batch
//!   header, KIP-534). Producer timestamps are not used: a producer's clock may be anywhere.
//! - **Records without a key** cannot be appended to a compacted topic; any left from before
//!   the topic became compacted are removed, as Kafka's cleaner does.
//! - **Crash safety.** New segments are written as `.cleaned` files and fsynced off-lock.
//!   Under the write lock the round is committed by writing `cleaner.swap` atomically (see
//!   [`crate::meta`]): before it, a crash leaves `.cleaned` files that open deletes; after it,
//!   open finishes the swap. The lock is held only for renames, unlinks and a few small
//!   fsyncs, never for copying.

use crate::batch::{
    BATCH_HEADER_BYTES, BatchHeader, Compression, RecordIter, RecordView, TimestampType,
    validate_batch_at,
};
use crate::error::{StorageError, io_err};
use crate::meta::CleanerCheckpoint;
use crate::segment::{RECOVERY_BATCH_BYTES_MAX, Segment};
use std::collections::HashMap;
use std::fs::File;
use std::hash::BuildHasher;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use weir_model::{Offset, Timestamp};

/// Kafka's `log.cleaner.dedupe.buffer.size` is 128 MiB for all cleaner threads; Weir runs one
/// cleaner per broker and takes half: 2.8 million slots, about 2.1 million keys a round.
pub const DEDUPE_BUFFER_BYTES_DEFAULT: usize = 64 * 1024 * 1024;
/// Room for a handful of keys: tests use it to force partial cleaning.
pub const DEDUPE_BUFFER_BYTES_MIN: usize = 4 * SLOT_BYTES;
pub use weir_model::limits::CLEANER_DEDUPE_BUFFER_BYTES_MAX as DEDUPE_BUFFER_BYTES_MAX;
/// Kafka's `log.cleaner.io.buffer.size`.
pub const IO_BUFFER_BYTES_DEFAULT: usize = 512 * 1024;
pub use weir_model::limits::CLEANER_IO_BUFFER_BYTES_MAX as IO_BUFFER_BYTES_MAX;
pub use weir_model::limits::CLEANER_IO_BUFFER_BYTES_MIN as IO_BUFFER_BYTES_MIN;
pub use weir_model::limits::CLEANER_IO_BYTES_PER_SECOND_MIN as IO_BYTES_PER_SECOND_MIN;

/// Bytes per map slot: a 128-bit key hash and an offset.
const SLOT_BYTES: usize = 24;
/// How often the throttle compares the observed rate with the allowed one (Kafka: 300 ms).
const THROTTLE_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Longest single sleep of the throttle, so a stop request is seen promptly.
const THROTTLE_SLEEP_SLICE: Duration = Duration::from_millis(50);

const _: () = assert!(DEDUPE_BUFFER_BYTES_MIN <= DEDUPE_BUFFER_BYTES_DEFAULT);
const _: () = assert!(DEDUPE_BUFFER_BYTES_DEFAULT <= DEDUPE_BUFFER_BYTES_MAX);
const _: () = assert!(IO_BUFFER_BYTES_MIN <= IO_BUFFER_BYTES_DEFAULT);
const _: () = assert!(IO_BUFFER_BYTES_DEFAULT <= IO_BUFFER_BYTES_MAX);
const _: () = assert!(IO_BUFFER_BYTES_MIN >= BATCH_HEADER_BYTES);

/// The cleaner's resource limits (broker-wide, as Kafka's `log.cleaner.*` configs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanerConfig {
    /// Memory of the key -> offset map, clamped to
    /// [`DEDUPE_BUFFER_BYTES_MIN`]..=[`DEDUPE_BUFFER_BYTES_MAX`].
    pub dedupe_buffer_bytes: usize,
    /// Read buffer (and write buffer), clamped to
    /// [`IO_BUFFER_BYTES_MIN`]..=[`IO_BUFFER_BYTES_MAX`].
    pub io_buffer_bytes: usize,
    /// Bytes read plus written per second; `None` = unlimited (Kafka's default).
    pub io_max_bytes_per_second: Option<u64>,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            dedupe_buffer_bytes: DEDUPE_BUFFER_BYTES_DEFAULT,
            io_buffer_bytes: IO_BUFFER_BYTES_DEFAULT,
            io_max_bytes_per_second: None,
        }
    }
}

/// Key hash -> newest offset seen, in a fixed-size open-addressing table (linear probing, at
/// most 3/4 full so a probe stays short). A slot is `[hash high, hash low, offset + 1]`, 0 in
/// the last word meaning empty, so a fresh table is all zeroes and the allocator can hand
/// over untouched pages: memory is only touched where keys land.
#[derive(Debug)]
pub struct OffsetMap {
    slots: Vec<[u64; 3]>,
    len: usize,
    max_len: usize,
    hashers: (std::hash::RandomState, std::hash::RandomState),
}

impl OffsetMap {
    /// A map using about `bytes` of memory (clamped to the limits).
    pub fn with_memory(bytes: usize) -> OffsetMap {
        let bytes = bytes.clamp(DEDUPE_BUFFER_BYTES_MIN, DEDUPE_BUFFER_BYTES_MAX);
        let n = bytes / SLOT_BYTES;
        OffsetMap {
            slots: vec![[0u64; 3]; n],
            len: 0,
            // Strictly below n, so a probe always finds an empty slot and ends.
            max_len: (n * 3 / 4).max(1),
            hashers: (std::hash::RandomState::new(), std::hash::RandomState::new()),
        }
    }

    /// How many distinct keys fit.
    pub fn capacity(&self) -> usize {
        self.max_len
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn hash(&self, key: &[u8]) -> (u64, u64) {
        (self.hashers.0.hash_one(key), self.hashers.1.hash_one(key))
    }

    fn first_slot(&self, h: (u64, u64)) -> usize {
        // Lemire's multiply-shift: uniform over the table without a division.
        ((h.1 as u128 * self.slots.len() as u128) >> 64) as usize
    }

    /// Records `offset` as the newest for `key`. False, and nothing changes, when the key is
    /// new and the map is full.
    pub fn put(&mut self, key: &[u8], offset: Offset) -> bool {
        let h = self.hash(key);
        let n = self.slots.len();
        let mut i = self.first_slot(h);
        loop {
            let s = &mut self.slots[i];
            if s[2] == 0 {
                if self.len >= self.max_len {
                    return false;
                }
                *s = [h.0, h.1, offset.get() as u64 + 1];
                self.len += 1;
                return true;
            }
            if s[0] == h.0 && s[1] == h.1 {
                s[2] = s[2].max(offset.get() as u64 + 1);
                return true;
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
    }

    /// The newest offset recorded for `key`.
    pub fn get(&self, key: &[u8]) -> Option<Offset> {
        let h = self.hash(key);
        let n = self.slots.len();
        let mut i = self.first_slot(h);
        loop {
            let s = &self.slots[i];
            if s[2] == 0 {
                return None;
            }
            if s[0] == h.0 && s[1] == h.1 {
                return Some(Offset(s[2] as i64 - 1));
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
    }
}

/// How long to sleep so that `bytes` moved in `elapsed` average at most `rate` per second.
pub(crate) fn throttle_delay(bytes: u64, elapsed: Duration, rate: u64) -> Duration {
    let due = Duration::from_secs_f64(bytes as f64 / rate.max(1) as f64);
    due.saturating_sub(elapsed)
}

/// Kafka's `Throttler`: counts bytes and, every [`THROTTLE_CHECK_INTERVAL`], sleeps off any
/// excess over the allowed rate. It reads the real monotonic clock, not an injected one: it
/// paces real disk I/O with real sleeps (its arithmetic, [`throttle_delay`], is pure and
/// tested on its own).
#[derive(Debug)]
struct Throttler {
    rate: Option<u64>,
    window_start: Instant,
    window_bytes: u64,
}

impl Throttler {
    fn new(rate: Option<u64>) -> Throttler {
        Throttler {
            rate: rate.map(|r| r.max(IO_BYTES_PER_SECOND_MIN)),
            window_start: Instant::now(),
            window_bytes: 0,
        }
    }

    fn account(&mut self, bytes: u64, stop: &dyn Fn() -> bool) {
        let Some(rate) = self.rate else { return };
        self.window_bytes += bytes;
        let elapsed = self.window_start.elapsed();
        if elapsed < THROTTLE_CHECK_INTERVAL && self.window_bytes < rate / 10 {
            return;
        }
        let mut delay = throttle_delay(self.window_bytes, elapsed, rate);
        // Rate limiting, not waiting for a condition: the cleaner's own thread idles here.
        while !delay.is_zero() && !stop() {
            let slice = delay.min(THROTTLE_SLEEP_SLICE);
            std::thread::sleep(slice);
            delay -= slice;
        }
        self.window_start = Instant::now();
        self.window_bytes = 0;
    }
}

/// A sealed segment as the plan saw it: an independent handle on its file (positional reads
/// through it stay valid even if the segment is deleted meanwhile) and what identifies it.
#[derive(Debug)]
pub(crate) struct SegmentSnapshot {
    pub id: u64,
    pub base: Offset,
    /// One past its last batch's last offset.
    pub next_offset: Offset,
    pub size: u64,
    pub file: File,
    pub path: PathBuf,
}

/// What one round will do, taken under the log's read lock by [`crate::PartitionLog::plan_clean`].
#[derive(Debug)]
pub struct CleanPlan {
    pub(crate) dir: PathBuf,
    /// The cleanable sealed segments, from the log's first on.
    pub(crate) segments: Vec<SegmentSnapshot>,
    /// The base of the first segment after them.
    pub(crate) cleanable_end: Offset,
    /// Where the dirty part starts.
    pub(crate) first_dirty: Offset,
    pub(crate) log_end: Offset,
    pub(crate) checkpoint: CleanerCheckpoint,
    /// Each idempotent producer's last batch, by its last offset.
    pub(crate) producer_last: HashMap<i64, Offset>,
    pub(crate) now: Timestamp,
    pub(crate) delete_retention_ms: i64,
    pub(crate) segment_bytes: u64,
    pub(crate) index_interval_bytes: u32,
    pub dirty_ratio: f64,
    pub dirty_bytes: u64,
    pub clean_bytes: u64,
}

/// What the round did, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanStats {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_removed: u64,
    pub batches_rewritten: u64,
    pub batches_removed: u64,
    pub keys_mapped: u64,
    /// Whether the map filled before the end of the dirty part (partial cleaning).
    pub map_full: bool,
}

/// One new segment and the old ones it replaces.
#[derive(Debug)]
pub(crate) struct CleanedGroup {
    /// `(segment id, base offset)` of the segments replaced, ascending.
    pub old: Vec<(u64, Offset)>,
    /// The new segment, written as `<base>.log.cleaned`; taken by the swap. If the round is
    /// dropped unfinished, its files are deleted.
    pub new: Option<Segment>,
}

impl Drop for CleanedGroup {
    fn drop(&mut self) {
        if let Some(seg) = self.new.take()
            && let Err(e) = seg.delete_files()
        {
            tracing::warn!(error = %weir_model::Chain(&e), "deleting an unfinished cleaned segment");
        }
    }
}

/// A round's output, ready for [`crate::PartitionLog::finish_clean`]. Dropping it unfinished
/// deletes its files.
#[derive(Debug)]
pub struct CleanedRound {
    pub(crate) dir: PathBuf,
    pub(crate) groups: Vec<CleanedGroup>,
    /// The new clean offset: where the map ended.
    pub(crate) clean_offset: Offset,
    pub(crate) now: Timestamp,
    pub stats: CleanStats,
}

/// How [`crate::PartitionLog::finish_clean`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CleanOutcome {
    /// The cleaned segments replaced the old ones.
    Swapped {
        segments_replaced: usize,
        segments_written: usize,
        clean_offset: Offset,
        stats: CleanStats,
    },
    /// The log changed meanwhile (retention, truncation, DeleteRecords): nothing was replaced,
    /// and the next round starts afresh.
    Aborted { reason: &'static str },
}

/// One batch from [`BatchReader::next_batch`]: its position, header, bytes, and how many
/// bytes were read from disk to get it (for the throttle).
type NextBatch<'a> = (u64, BatchHeader, &'a [u8], u64);

/// Reads a segment's batches in order through a bounded buffer.
struct BatchReader<'a> {
    file: &'a File,
    path: &'a Path,
    size: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
    cap: usize,
    bytes_read: u64,
}

impl<'a> BatchReader<'a> {
    fn new(seg: &'a SegmentSnapshot, cap: usize) -> BatchReader<'a> {
        BatchReader {
            file: &seg.file,
            path: &seg.path,
            size: seg.size,
            pos: 0,
            buf: Vec::new(),
            buf_start: 0,
            cap,
            bytes_read: 0,
        }
    }

    fn corrupt(&self, reason: String) -> StorageError {
        StorageError::CorruptMetadata {
            path: self.path.to_path_buf(),
            reason,
        }
    }

    /// Makes `[pos, pos + len)` available in the buffer.
    fn fill(&mut self, pos: u64, len: usize) -> Result<(), StorageError> {
        let end = self.buf_start + self.buf.len() as u64;
        if pos >= self.buf_start && pos + len as u64 <= end {
            return Ok(());
        }
        let want = len.max(self.cap).min((self.size - pos) as usize);
        if want < len {
            return Err(self.corrupt(format!(
                "the cleaner read a batch at {pos} that runs past the segment's end"
            )));
        }
        // A batch larger than the buffer gets a buffer of its own size, then the buffer
        // shrinks back, so one large batch does not pin memory for the rest of the round.
        self.buf.resize(want, 0);
        if self.buf.capacity() > self.cap.max(want) * 2 {
            self.buf.shrink_to(want);
        }
        self.file
            .read_exact_at(&mut self.buf, pos)
            .map_err(io_err(self.path, "reading (cleaner)"))?;
        self.bytes_read += want as u64;
        self.buf_start = pos;
        Ok(())
    }

    /// The next batch, `None` at the segment's end.
    fn next_batch(&mut self) -> Result<Option<NextBatch<'_>>, StorageError> {
        if self.pos >= self.size {
            return Ok(None);
        }
        let before = self.bytes_read;
        let pos = self.pos;
        if self.size - pos < BATCH_HEADER_BYTES as u64 {
            return Err(self.corrupt(format!("trailing bytes at {pos}")));
        }
        self.fill(pos, BATCH_HEADER_BYTES)?;
        let at = (pos - self.buf_start) as usize;
        let h = BatchHeader::parse(&self.buf[at..]).map_err(StorageError::CorruptBatch)?;
        let size = h.size_bytes();
        if size as u64 > RECOVERY_BATCH_BYTES_MAX as u64 {
            return Err(self.corrupt(format!("batch at {pos} claims {size} bytes")));
        }
        self.fill(pos, size)?;
        self.pos = pos + size as u64;
        let at = (pos - self.buf_start) as usize;
        // Sealed segments are not CRC-checked at open: without this, a damaged batch the
        // cleaner rewrites would come out with a fresh, valid CRC over damaged records.
        if let Err(e) = crate::batch::check_crc(&self.buf[at..at + size], at) {
            return Err(StorageError::CorruptLog {
                path: self.path.to_path_buf(),
                position: pos,
                expected_offset: h.base_offset,
                reason: format!("a stored batch fails its check: {e}"),
            });
        }
        let read = self.bytes_read - before;
        Ok(Some((pos, h, &self.buf[at..at + size], read)))
    }
}

/// What becomes of one batch.
enum Kept {
    Whole,
    Rewritten(Vec<u8>),
    Removed,
}

/// Runs the off-lock part of cleaning rounds: map building and copying. Holds no log state;
/// one per cleaner thread.
#[derive(Debug)]
pub struct Cleaner {
    config: CleanerConfig,
    throttler: Throttler,
}

impl Cleaner {
    pub fn new(config: CleanerConfig) -> Cleaner {
        let mut config = config;
        config.dedupe_buffer_bytes = config
            .dedupe_buffer_bytes
            .clamp(DEDUPE_BUFFER_BYTES_MIN, DEDUPE_BUFFER_BYTES_MAX);
        config.io_buffer_bytes = config
            .io_buffer_bytes
            .clamp(IO_BUFFER_BYTES_MIN, IO_BUFFER_BYTES_MAX);
        Cleaner {
            throttler: Throttler::new(config.io_max_bytes_per_second),
            config,
        }
    }

    pub fn config(&self) -> &CleanerConfig {
        &self.config
    }

    /// Builds the map over the dirty part and writes the cleaned segments (fsynced). Needs no
    /// lock on the log: it reads through the plan's own file handles. `Ok(None)` when `stop`
    /// said so meanwhile (nothing is left behind).
    pub fn clean(
        &mut self,
        plan: CleanPlan,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<CleanedRound>, StorageError> {
        let mut stats = CleanStats::default();
        // A fresh map each round: zeroed pages come straight from the allocator, and only
        // the slots keys land in are ever touched.
        let mut map = OffsetMap::with_memory(self.config.dedupe_buffer_bytes);
        let Some(map_end) = self.build_map(&plan, &mut map, &mut stats, stop)? else {
            return Ok(None);
        };
        stats.keys_mapped = map.len() as u64;
        let mut round = CleanedRound {
            dir: plan.dir.clone(),
            groups: Vec::new(),
            clean_offset: map_end,
            now: plan.now,
            stats,
        };
        let n = plan
            .segments
            .iter()
            .take_while(|s| s.base < map_end)
            .count();
        for group in group_segments(&plan.segments[..n], plan.segment_bytes) {
            let Some(g) = self.clean_group(&plan, group, &map, &mut round.stats, stop)? else {
                return Ok(None);
            };
            round.groups.push(g);
        }
        Ok(Some(round))
    }

    /// Scans the dirty part, recording each key's newest offset. Returns where the map ends:
    /// the first offset not in it (the record that did not fit, or the cleanable end).
    fn build_map(
        &mut self,
        plan: &CleanPlan,
        map: &mut OffsetMap,
        stats: &mut CleanStats,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<Offset>, StorageError> {
        let mut scratch = Vec::new();
        for seg in &plan.segments {
            // Segments wholly below the dirty part are not read.
            if seg.next_offset <= plan.first_dirty {
                continue;
            }
            let mut reader = BatchReader::new(seg, self.config.io_buffer_bytes);
            loop {
                if stop() {
                    return Ok(None);
                }
                let Some((_, h, batch, read)) = reader.next_batch()? else {
                    break;
                };
                if h.last_offset() < plan.first_dirty || h.is_control() {
                    self.throttler.account(read, stop);
                    continue;
                }
                let Some(records) = records_of(&h, batch, &mut scratch) else {
                    self.throttler.account(read, stop);
                    continue;
                };
                for r in RecordIter::new(records, h.records_count) {
                    let Ok(r) = r else { break };
                    let offset = h.base_offset.plus(r.offset_delta as i64);
                    if offset < plan.first_dirty {
                        continue;
                    }
                    stats.records_read += 1;
                    if let Some(key) = r.key
                        && !map.put(key, offset)
                    {
                        stats.map_full = true;
                        stats.bytes_read += reader.bytes_read;
                        return Ok(Some(offset));
                    }
                }
                self.throttler.account(read, stop);
            }
            stats.bytes_read += reader.bytes_read;
        }
        Ok(Some(plan.cleanable_end))
    }

    /// Writes one group's kept records into `<base>.log.cleaned` and its indexes, fsynced.
    fn clean_group(
        &mut self,
        plan: &CleanPlan,
        group: &[SegmentSnapshot],
        map: &OffsetMap,
        stats: &mut CleanStats,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<CleanedGroup>, StorageError> {
        let base = group[0].base;
        let mut out = CleanedGroup {
            old: group.iter().map(|s| (s.id, s.base)).collect(),
            new: Some(Segment::create_cleaned(&plan.dir, base)?),
        };
        let mut written = Written {
            pending: Vec::with_capacity(self.config.io_buffer_bytes),
            flushed: 0,
        };
        let mut scratch = Vec::new();
        for seg in group {
            let mut reader = BatchReader::new(seg, self.config.io_buffer_bytes);
            loop {
                if stop() {
                    return Ok(None);
                }
                let Some((pos, h, batch, read)) = reader.next_batch()? else {
                    break;
                };
                // Re-check the CRC: a batch damaged on disk must not be laundered by a
                // rewrite with a fresh checksum.
                validate_batch_at(batch, pos as usize, u32::MAX)
                    .map_err(StorageError::CorruptBatch)?;
                let kept = filter_batch(plan, map, &h, batch, &mut scratch, stats);
                let bytes: &[u8] = match &kept {
                    Kept::Whole => batch,
                    Kept::Rewritten(b) => {
                        stats.batches_rewritten += 1;
                        b
                    }
                    Kept::Removed => {
                        stats.batches_removed += 1;
                        self.throttler.account(read, stop);
                        continue;
                    }
                };
                let Some(seg) = out.new.as_mut() else {
                    unreachable!("the new segment is only taken by the swap")
                };
                self.keep(seg, bytes, &mut written, plan, stats, stop)?;
                self.throttler.account(read, stop);
            }
            stats.bytes_read += reader.bytes_read;
        }
        let Some(seg) = out.new.as_mut() else {
            unreachable!("the new segment is only taken by the swap")
        };
        if !written.pending.is_empty() {
            seg.write_at(written.flushed, &written.pending)?;
            stats.bytes_written += written.pending.len() as u64;
        }
        debug_assert_eq!(written.flushed + written.pending.len() as u64, seg.size);
        seg.sync()?;
        seg.write_cleaned_index_files()?;
        Ok(Some(out))
    }

    /// Adds a kept batch to the cleaned segment: indexed where it will sit, its bytes held in
    /// `written.pending` until a buffer's worth goes out in one write.
    fn keep(
        &mut self,
        seg: &mut Segment,
        bytes: &[u8],
        written: &mut Written,
        plan: &CleanPlan,
        stats: &mut CleanStats,
        stop: &dyn Fn() -> bool,
    ) -> Result<(), StorageError> {
        let kh = BatchHeader::parse(bytes).map_err(StorageError::CorruptBatch)?;
        let at = seg.size;
        seg.track_batch(
            at,
            kh.base_offset,
            kh.last_offset(),
            bytes.len() as u64,
            kh.max_timestamp.get(),
            plan.index_interval_bytes,
        );
        written.pending.extend_from_slice(bytes);
        if written.pending.len() >= self.config.io_buffer_bytes {
            let n = written.pending.len() as u64;
            seg.write_at(written.flushed, &written.pending)?;
            written.flushed += n;
            stats.bytes_written += n;
            written.pending.clear();
            self.throttler.account(n, stop);
        }
        Ok(())
    }
}

/// A cleaned segment's bytes: written up to `flushed`, the rest waiting in `pending`.
struct Written {
    pending: Vec<u8>,
    flushed: u64,
}

/// Groups consecutive segments so that each group's current size stays within
/// `segment_bytes` and its offsets fit a segment's 32-bit relative offsets (Kafka's
/// `groupSegmentsBySize`). Every group has at least one segment.
fn group_segments(segments: &[SegmentSnapshot], segment_bytes: u64) -> Vec<&[SegmentSnapshot]> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < segments.len() {
        let mut end = start + 1;
        let mut size = segments[start].size;
        while end < segments.len() {
            let next = &segments[end];
            if size + next.size > segment_bytes
                || next.next_offset.get() - segments[start].base.get() > u32::MAX as i64
            {
                break;
            }
            size += next.size;
            end += 1;
        }
        groups.push(&segments[start..end]);
        start = end;
    }
    groups
}

/// The records section of a batch, decompressed into `scratch` if need be. `None` when it
/// does not decompress within the limit.
fn records_of<'a>(h: &BatchHeader, batch: &'a [u8], scratch: &'a mut Vec<u8>) -> Option<&'a [u8]> {
    let section = &batch[BATCH_HEADER_BYTES..];
    match h.compression() {
        Compression::None => Some(section),
        codec => {
            *scratch = crate::decompress::decompress(codec, section)?;
            Some(&scratch[..])
        }
    }
}

/// Decides which of a batch's records stay.
fn filter_batch(
    plan: &CleanPlan,
    map: &OffsetMap,
    h: &BatchHeader,
    batch: &[u8],
    scratch: &mut Vec<u8>,
    stats: &mut CleanStats,
) -> Kept {
    // Transactions are not supported; a control batch (none is ever appended) stays as it is.
    if h.is_control() || h.records_count == 0 {
        return Kept::Whole;
    }
    let Some(records) = records_of(h, batch, scratch) else {
        return Kept::Whole;
    };
    let now = plan.now.get();
    let mut kept: Vec<RecordView> = Vec::new();
    let mut total = 0;
    for r in RecordIter::new(records, h.records_count) {
        let Ok(r) = r else {
            // Validated at append and by CRC; keep what cannot be read rather than guess.
            return Kept::Whole;
        };
        total += 1;
        let offset = h.base_offset.plus(r.offset_delta as i64);
        let Some(key) = r.key else {
            continue;
        };
        if map.get(key).is_some_and(|newest| offset < newest) {
            continue;
        }
        if !r.has_value
            && offset < plan.first_dirty
            && plan
                .checkpoint
                .first_cleaned_at(offset)
                .is_some_and(|t| t.saturating_add(plan.delete_retention_ms) <= now)
        {
            continue;
        }
        kept.push(r);
    }
    stats.records_removed += (total - kept.len()) as u64;
    if kept.len() == total {
        return Kept::Whole;
    }
    let last_of_log = h.last_offset().plus(1) == plan.log_end;
    let last_of_producer =
        h.producer_id >= 0 && plan.producer_last.get(&h.producer_id) == Some(&h.last_offset());
    if kept.is_empty() {
        if last_of_log || last_of_producer {
            return Kept::Rewritten(empty_batch(h, batch));
        }
        return Kept::Removed;
    }
    match rewrite_batch(h, batch, &kept) {
        Some(b) => Kept::Rewritten(b),
        None => Kept::Whole,
    }
}

const ATTRIBUTES_AT: usize = 21;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const RECORDS_COUNT_AT: usize = 57;
const CRC_AT: usize = 17;
const CRC_FROM: usize = 21;

/// Fixes batchLength and the CRC after a header or records change.
fn seal(b: &mut [u8]) {
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&b[CRC_FROM..]);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The batch with only `kept` records: same offsets, epoch and producer fields; the records'
/// bytes copied verbatim (their deltas are relative to the unchanged base offset and base
/// timestamp); recompressed with the batch's codec. `None` if compression fails.
fn rewrite_batch(h: &BatchHeader, batch: &[u8], kept: &[RecordView]) -> Option<Vec<u8>> {
    let mut section = Vec::with_capacity(kept.iter().map(|r| r.bytes.len()).sum());
    for r in kept {
        section.extend_from_slice(r.bytes);
    }
    let section = match h.compression() {
        Compression::None => section,
        codec => crate::decompress::compress(codec, &section).ok()?,
    };
    let mut b = Vec::with_capacity(BATCH_HEADER_BYTES + section.len());
    b.extend_from_slice(&batch[..BATCH_HEADER_BYTES]);
    b.extend_from_slice(&section);
    b[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    // The max timestamp follows the records that are left (Kafka recomputes it too); with
    // LogAppendTime it is the append time, unchanged.
    if h.timestamp_type() == TimestampType::CreateTime && h.max_timestamp.get() != -1 {
        let base = h.base_timestamp.get();
        let max = kept
            .iter()
            .map(|r| base.saturating_add(r.timestamp_delta))
            .max()
            .unwrap_or(base);
        b[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max.to_be_bytes());
    }
    seal(&mut b);
    Some(b)
}

/// A batch with no records that keeps `h`'s offsets, epoch and producer fields, as Kafka's
/// `writeEmptyHeader`: uncompressed, both timestamps the batch's max timestamp.
fn empty_batch(h: &BatchHeader, batch: &[u8]) -> Vec<u8> {
    let mut b = batch[..BATCH_HEADER_BYTES].to_vec();
    let attributes = h.attributes & !0x07;
    b[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    let ts = h.max_timestamp.get().to_be_bytes();
    b[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].copy_from_slice(&ts);
    b[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&0i32.to_be_bytes());
    seal(&mut b);
    b
}

/// Checks that every record of `records` (validated batches, back to back) has a key: a
/// compacted topic refuses keyless records, as Kafka does (INVALID_RECORD).
pub(crate) fn check_keys(records: &[u8], headers: &[BatchHeader]) -> Result<(), StorageError> {
    let mut at = 0usize;
    let mut scratch = Vec::new();
    for h in headers {
        let batch = &records[at..at + h.size_bytes()];
        let Some(section) = records_of(h, batch, &mut scratch) else {
            return Err(StorageError::CorruptBatch(
                crate::batch::BatchError::BadRecords {
                    at,
                    reason: "compressed records do not decompress within the limit",
                },
            ));
        };
        for r in RecordIter::new(section, h.records_count) {
            let r = r.map_err(|reason| {
                StorageError::CorruptBatch(crate::batch::BatchError::BadRecords { at, reason })
            })?;
            if r.key.is_none() {
                return Err(StorageError::RecordWithoutKey { at });
            }
        }
        at += h.size_bytes();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves: the map returns the newest offset per key, refuses new keys once full (but
    /// still updates known ones), and its capacity follows the memory given.
    #[test]
    fn offset_map_is_bounded_and_keeps_the_newest() {
        let mut m = OffsetMap::with_memory(DEDUPE_BUFFER_BYTES_MIN);
        assert_eq!(m.capacity(), 3);
        assert!(m.put(b"a", Offset(1)));
        assert!(m.put(b"b", Offset(2)));
        assert!(m.put(b"a", Offset(5)));
        assert!(m.put(b"c", Offset(6)));
        assert!(!m.put(b"d", Offset(7)), "full");
        assert!(m.put(b"b", Offset(8)), "a known key still updates");
        assert_eq!(m.get(b"a"), Some(Offset(5)));
        assert_eq!(m.get(b"b"), Some(Offset(8)));
        assert_eq!(m.get(b"d"), None);
        assert_eq!(m.len(), 3);
        let big = OffsetMap::with_memory(24 * 1000);
        assert_eq!(big.capacity(), 750);
    }

    /// Proves: the throttle sleeps off exactly the excess over the rate.
    #[test]
    fn throttle_delay_is_the_excess_over_the_rate() {
        let ms = Duration::from_millis;
        assert_eq!(throttle_delay(1000, ms(100), 1000), ms(900));
        assert_eq!(throttle_delay(100, ms(100), 1000), Duration::ZERO);
        assert_eq!(throttle_delay(5000, ms(0), 10_000), ms(500));
    }
}
