//! [`PartitionLog`]: one partition's log in its own directory.
//!
//! Directory layout:
//!
//! ```text
//! <dir>/partition.meta                  format version, log start offset, clean-close marker
//! <dir>/leader-epoch.checkpoint         epoch -> start offset
//! <dir>/00000000000000000000.log        batches (see segment.rs), one file per segment
//! <dir>/00000000000000000000.index      sparse offset index
//! <dir>/00000000000000000000.timeindex  sparse time index
//! ```
//!
//! Durability: a segment is fsynced when it is rolled, so after a crash only the active
//! (last) segment can hold a torn or unsynced tail. Open therefore verifies every batch of the
//! active segment (CRC included) unless the previous close was clean, and checks the framing
//! of the closed ones and that each ends where the next begins. It truncates only a torn tail
//! (see [`PartitionLog::open`]); other damage fails the open with
//! [`StorageError::CorruptLog`] and changes nothing. Batches not CRC-checked at open are
//! checked by the read that serves them.
//!
//! What no check can see, by Kafka's format: `baseOffset` and `partitionLeaderEpoch` lie
//! outside the CRC. A damaged baseOffset is caught by the offset order (the next batch, or the
//! next segment, or the clean-close marker), except in the last batch of the log after a
//! crash, where it reads as a torn tail or moves that batch's offsets up (never down onto
//! others). A damaged leader epoch goes unseen. Below the cleaner's clean offset a segment
//! may end short of the next, so a cut exactly at a batch boundary there is unseen too.

use crate::batch::{BATCH_HEADER_BYTES, BatchError};
use crate::batch::{
    BatchHeader, Compression, TimestampType, find_record_by_timestamp, set_base_offset,
    set_log_append_time, set_partition_leader_epoch, validate_batches, validate_stored_batches,
};
use crate::cleaner::{CleanOutcome, CleanPlan, CleanedRound, SegmentSnapshot};
use crate::epoch::EpochCache;
use crate::error::{StorageError, io_err};
use crate::meta::{
    self, CLEANER_SWAP_FILE, CleanerCheckpoint, PartitionMeta, SwapGroup, SwapManifest,
};
use crate::producer::{self, BatchMeta, Check, ProducerEntry, ProducerState};
use crate::segment::{Segment, WalkProblem, cleaned_name, file_name, parse_log_name};
use bytes::Bytes;
use std::fs;
use std::path::{Path, PathBuf};
use weir_model::limits::{
    INDEX_INTERVAL_BYTES_DEFAULT, MESSAGE_BYTES_MAX_DEFAULT, RETENTION_MS_DEFAULT,
    SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN,
};
use weir_model::{LeaderEpoch, Offset, ProducerId, Timestamp};

/// Kafka's default `segment.ms` (`log.roll.hours` = 168).
pub const SEGMENT_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;

/// Kafka's default `delete.retention.ms`: how long a tombstone outlives its first cleaning.
pub const DELETE_RETENTION_MS_DEFAULT: i64 = 24 * 60 * 60 * 1000;

/// `cleanup.policy`: what happens to old records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CleanupPolicy {
    /// Whole segments go by `retention.ms` / `retention.bytes` (Kafka's default).
    #[default]
    Delete,
    /// The cleaner keeps the newest record of every key; retention deletes nothing.
    Compact,
    /// Both: compaction, and retention by time and size on top.
    CompactDelete,
}

impl CleanupPolicy {
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }

    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }
}

/// `min.cleanable.dirty.ratio`, in millionths so that [`LogConfig`] stays `Eq`: the share of
/// the cleanable log that must be dirty (not yet cleaned) before the cleaner rewrites it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirtyRatio(u32);

impl DirtyRatio {
    const ONE: u32 = 1_000_000;

    /// Kafka's default, 0.5.
    pub const DEFAULT: DirtyRatio = DirtyRatio(Self::ONE / 2);

    /// `r` clamped to 0..=1 (NaN counts as 0).
    pub fn from_f64(r: f64) -> DirtyRatio {
        let r = if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) };
        DirtyRatio((r * Self::ONE as f64).round() as u32)
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / Self::ONE as f64
    }
}

impl Default for DirtyRatio {
    fn default() -> Self {
        DirtyRatio::DEFAULT
    }
}

/// A partition's log settings (Kafka topic configs of the same names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub index_interval_bytes: u32,
    /// `None` = unlimited (Kafka's -1).
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<u64>,
    /// `None` = page cache only; `Some(1)` fsyncs every append.
    pub flush_messages: Option<u64>,
    pub flush_ms: Option<i64>,
    pub max_message_bytes: u32,
    pub timestamp_type: TimestampType,
    /// `cleanup.policy`. With compaction, records without a key are refused on append.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: a tombstone is removed only once it has been in the cleaned part
    /// of the log this long (see [`crate::cleaner`] for why the clock starts there).
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`.
    pub min_cleanable_dirty_ratio: DirtyRatio,
    /// `min.compaction.lag.ms`: a segment holding a record younger than this is not cleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty segment older than this is cleaned whatever the dirty
    /// ratio says.
    pub max_compaction_lag_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_ms: SEGMENT_MS_DEFAULT,
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            retention_ms: Some(RETENTION_MS_DEFAULT),
            retention_bytes: None,
            flush_messages: None,
            flush_ms: None,
            max_message_bytes: MESSAGE_BYTES_MAX_DEFAULT,
            timestamp_type: TimestampType::CreateTime,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: DELETE_RETENTION_MS_DEFAULT,
            min_cleanable_dirty_ratio: DirtyRatio::DEFAULT,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
        }
    }
}

impl LogConfig {
    /// Segment positions are stored as u32 and must stay below 2 GiB.
    fn segment_bytes(&self) -> u64 {
        self.segment_bytes
            .clamp(SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    Appended {
        base_offset: Offset,
        last_offset: Offset,
        /// The time stamped into the batches when the topic uses LogAppendTime.
        log_append_time: Option<Timestamp>,
        log_start_offset: Offset,
    },
    /// A retried idempotent batch already in the log: acknowledged with its original offsets.
    Duplicate {
        base_offset: Offset,
        last_offset: Offset,
        log_start_offset: Offset,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Whole stored batches, possibly empty.
    pub bytes: Bytes,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
    /// Where the next read continues: one past the last batch's last offset (`from` when no
    /// batch came back). After compaction a batch may end past its last record, or hold none,
    /// so a reader that steps by record offsets can stall; step by this instead (as Kafka's
    /// consumers step by the batch's last offset).
    pub next_offset: Offset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    pub log_start_offset: Offset,
}

/// One partition's log in its own directory. Not thread-safe by itself: the broker wraps it in
/// a lock. Reads take `&self` (positional reads), writes take `&mut self`.
///
/// Contract: an append is readable when `append` returns and durable after `flush` (or per
/// `flush.messages` / `flush.ms`). Offsets increase strictly from the log start offset to the
/// log end offset: contiguously as appended, with gaps where the log cleaner removed records
/// (which keeps every offset it does not remove). Every error except [`StorageError::Fatal`]
/// leaves the log as it was.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    /// Ascending by base offset, never overlapping (gaps only where the cleaner removed
    /// records); the last is the active segment. Never empty.
    segments: Vec<Segment>,
    log_start: Offset,
    producers: ProducerState,
    epochs: EpochCache,
    unflushed_messages: u64,
    last_flush_ms: i64,
    /// Set by [`PartitionLog::close`] and [`PartitionLog::retire`]: every later change is
    /// refused with [`StorageError::Closed`], so a handle that outlives its log (a request in
    /// flight while the topic is deleted) can never touch files that are gone or reused.
    closed: bool,
    /// The cleaner's clean offset and tombstone clock (`cleaner.checkpoint`); `None` until the
    /// first round, so logs that are never compacted never write one.
    cleaner_checkpoint: Option<CleanerCheckpoint>,
    /// Test hook: the swap fails (as a crash would stop it) after this many more steps.
    #[cfg(test)]
    pub(crate) crash_after_steps: Option<usize>,
}

/// Where the dirty part of a log stands, for the cleaner to pick the dirtiest log.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cleanable {
    pub dirty_ratio: f64,
    pub dirty_bytes: u64,
    pub clean_bytes: u64,
    /// The ratio reaches `min.cleanable.dirty.ratio`, or `max.compaction.lag.ms` has passed.
    pub due: bool,
}

impl PartitionLog {
    /// Opens (creating if absent) and recovers: walks every segment's batch headers (rebuilding
    /// indexes that do not match, producer state and the epoch cache), verifies the active
    /// segment's batches unless the last close was clean, and truncates a torn tail.
    ///
    /// Recovery repairs only what a crash can break and what can be rebuilt:
    /// - Only the active segment, only after an unclean shutdown, and only at a torn tail is
    ///   ever truncated. A tail is torn when nothing valid follows the first bad batch; a
    ///   whole, CRC-valid batch after it (at or past the expected offset) means damage.
    /// - Damage (any problem in a sealed segment, overlapping segments, any problem in the
    ///   active segment after a clean close, mid-file damage in the active segment) fails the
    ///   open with [`StorageError::CorruptLog`], having changed nothing on disk: no truncation,
    ///   no deleted segment, no rewritten metadata. Offsets are never reused.
    /// - Index files, a damaged or missing `partition.meta` (log start = first segment's base,
    ///   no clean-close marker, so the active segment is verified), a damaged leader-epoch
    ///   checkpoint (rebuilt from batch headers) and a damaged cleaner checkpoint (dropped:
    ///   the whole log counts as dirty again) are rebuilt, logged at ERROR.
    /// - A file in a newer format version is [`StorageError::UnsupportedFormat`], never
    ///   rewritten.
    ///
    /// Before any of that, a committed cleaner swap is finished (or an uncommitted one rolled
    /// back): it is part of the log's history, not repair.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        now: Timestamp,
    ) -> Result<PartitionLog, StorageError> {
        fs::create_dir_all(dir).map_err(io_err(dir, "creating"))?;
        // Before the segments are listed: finish a committed cleaner swap, or roll back an
        // uncommitted one.
        recover_cleaner_leftovers(dir)?;
        let (bases, leftovers) = list_segments(dir)?;
        let meta = load_or_rebuild_meta(dir, &bases)?;
        let (cleaner_checkpoint, cleaner_checkpoint_damaged) = load_cleaner_checkpoint(dir)?;
        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            config,
            segments: Vec::with_capacity(bases.len().max(1)),
            log_start: meta.log_start,
            producers: ProducerState::default(),
            epochs: load_or_rebuild_epochs(dir)?,
            unflushed_messages: 0,
            last_flush_ms: now.get(),
            closed: false,
            cleaner_checkpoint,
            #[cfg(test)]
            crash_after_steps: None,
        };
        // Where the cleaner may have left a sealed segment ending short of the next one. With
        // its checkpoint damaged that is unknown, so every segment is given the benefit.
        let cleaned_below = if cleaner_checkpoint_damaged {
            Offset(i64::MAX)
        } else {
            log.cleaner_checkpoint
                .as_ref()
                .map_or(Offset::ZERO, |c| c.clean_offset)
        };
        log.recover(&bases, meta, cleaned_below)?;
        // Only now that the log is known to be sound does anything else on disk change.
        for p in leftovers {
            remove_if_exists(&p)?;
        }
        if cleaner_checkpoint_damaged {
            remove_if_exists(&dir.join(meta::CLEANER_CHECKPOINT_FILE))?;
        }
        // A crash may have lost a tail the checkpoint had counted as clean (it cannot, for
        // sealed segments are synced, but the checkpoint must never claim past the log).
        let log_end = log.log_end_offset();
        if let Some(cp) = log.cleaner_checkpoint.as_mut()
            && cp.truncate_to(log_end)
        {
            cp.store(dir)?;
        }
        log.store_meta(None)?;
        meta::store_epochs(&log.dir, log.epochs.entries())?;
        tracing::debug!(dir = %log.dir.display(), log_start = log.log_start.get(),
            log_end = log.log_end_offset().get(), segments = log.segments.len(), "opened log");
        Ok(log)
    }

    /// `cleaned_below`: segments starting below it may have been rewritten by the cleaner.
    fn recover(
        &mut self,
        bases: &[Offset],
        meta: PartitionMeta,
        cleaned_below: Offset,
    ) -> Result<(), StorageError> {
        // Read-only until every segment has been checked: damage must leave the disk as it is.
        let Checked {
            epoch_starts,
            torn_at,
        } = self.check_segments(bases, meta, cleaned_below)?;
        if let Some(valid_bytes) = torn_at {
            self.active_mut().truncate_file(valid_bytes)?;
        }
        for seg in &self.segments {
            if seg.repair_index_files()? {
                tracing::info!(segment = %seg.path().display(), "rebuilt index files");
            }
        }
        if self.segments.is_empty() {
            self.segments
                .push(Segment::create(&self.dir, self.log_start)?);
        }
        // Epochs: the checkpoint, plus any epoch a batch carries that it lacks (a crash between
        // the append and the checkpoint write), minus anything past the recovered end.
        let log_end = self.log_end_offset();
        self.epochs.truncate_from_end(log_end);
        for (epoch, start) in epoch_starts {
            self.epochs.assign(epoch, start);
        }
        let first_base = self.segments[0].base;
        if self.log_start > log_end {
            // The log start was moved past data lost in the crash: start over there.
            let start = self.log_start;
            self.truncate_fully_and_start_at(start)?;
        } else if self.log_start < first_base {
            self.log_start = first_base;
        }
        self.epochs.truncate_from_start(self.log_start);
        self.producers.evict_below(self.log_start);
        Ok(())
    }

    /// Opens and walks every segment without changing any file, replaying batch headers into
    /// producer state. Returns the epoch starts the batches carry, and where the active
    /// segment's torn tail begins if it has one. Fails with [`StorageError::CorruptLog`] on
    /// damage a crash cannot explain.
    fn check_segments(
        &mut self,
        bases: &[Offset],
        meta: PartitionMeta,
        cleaned_below: Offset,
    ) -> Result<Checked, StorageError> {
        let interval = self.config.index_interval_bytes;
        let mut epoch_starts: Vec<(LeaderEpoch, Offset)> = Vec::new();
        let mut torn_at = None;
        for (i, &base) in bases.iter().enumerate() {
            let active = i + 1 == bases.len();
            let (mut seg, len) = Segment::open(&self.dir, base)?;
            if let Some(prev) = self.segments.last() {
                check_continues(prev, &seg, cleaned_below)?;
            }
            let log_start = self.log_start;
            let verify = active && meta.clean_end.is_none();
            let end = seg.walk(len, verify, interval, |_, h| {
                replay(&mut self.producers, &mut epoch_starts, h, log_start)
            })?;
            if let Some(problem) = end.problem {
                check_torn_tail(&seg, active, meta, end.valid_bytes, len, problem)?;
                torn_at = Some(end.valid_bytes);
            } else if let Some(clean_end) = meta.clean_end.filter(|_| active)
                && seg.next_offset != clean_end
            {
                return Err(StorageError::CorruptLog {
                    path: seg.path().to_path_buf(),
                    position: end.valid_bytes,
                    expected_offset: clean_end,
                    reason: format!(
                        "the log was closed cleanly ending at offset {clean_end}, but its \
                         active segment ends at {}",
                        seg.next_offset
                    ),
                });
            }
            self.segments.push(seg);
        }
        Ok(Checked {
            epoch_starts,
            torn_at,
        })
    }

    fn store_meta(&self, clean_end: Option<Offset>) -> Result<(), StorageError> {
        PartitionMeta {
            log_start: self.log_start,
            clean_end,
        }
        .store(&self.dir)
    }

    fn active(&self) -> &Segment {
        // Invariant: never empty.
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment {
        let n = self.segments.len();
        &mut self.segments[n - 1]
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn log_start_offset(&self) -> Offset {
        self.log_start
    }

    /// The next offset to be assigned.
    pub fn log_end_offset(&self) -> Offset {
        self.active().next_offset
    }

    /// Bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The latest leader epoch that wrote to this log.
    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.epochs.latest()
    }

    /// Appends one produce partition's `records` (one or more batches, as the client sent
    /// them). Validates, checks idempotent-producer sequences, assigns base offsets and `epoch`
    /// in place (mutating `records`), writes them with one positional write. Readable when it
    /// returns; durable per the flush policy. On error nothing was appended.
    pub fn append(
        &mut self,
        records: &mut [u8],
        epoch: LeaderEpoch,
        now: Timestamp,
    ) -> Result<AppendOutcome, StorageError> {
        self.check_open()?;
        let headers =
            validate_batches(records, self.config.max_message_bytes).map_err(|e| match e {
                BatchError::TooLarge { size, max, .. } => {
                    StorageError::RecordTooLarge { size, max }
                }
                e => StorageError::CorruptBatch(e),
            })?;
        if let Some(latest) = self.epochs.latest()
            && epoch < latest
        {
            return Err(StorageError::StaleLeaderEpoch { epoch, latest });
        }
        // A compacted topic refuses keyless records up front, as Kafka does. Followers
        // (append_replicated) never check: the leader decided.
        if self.config.cleanup_policy.compacts() {
            crate::cleaner::check_keys(records, &headers)?;
        }
        let log_end = self.log_end_offset();
        let (pending, next) = match self.check_producers(&headers, log_end)? {
            ProducerCheck::Accept { pending, next } => (pending, next),
            ProducerCheck::Duplicate(outcome) => return Ok(outcome),
        };
        let total = records.len() as u64;
        if self.should_roll(total, next, now) {
            self.roll()?;
        }
        // Patch headers in place: offsets and epoch are outside the CRC.
        let log_append_time = self.config.timestamp_type == TimestampType::LogAppendTime;
        patch_headers(
            records,
            &headers,
            log_end,
            epoch,
            log_append_time.then_some(now),
        );
        let mut base = log_end;
        let placed = headers.iter().map(|h| {
            let last = base.plus(h.last_offset_delta as i64);
            let max_timestamp = if log_append_time {
                now.get()
            } else {
                h.max_timestamp.get()
            };
            let p = Placed::of(h, base, last, max_timestamp);
            base = last.plus(1);
            p
        });
        let count = self.write_indexed(records, placed, now)?;
        for (pid, entry) in pending {
            for meta in entry.batches.iter().filter(|m| m.base_offset >= log_end) {
                self.producers.apply(pid, entry.epoch, *meta);
            }
        }
        if self.epochs.assign(epoch, log_end) {
            meta::store_epochs(&self.dir, self.epochs.entries())?;
        }
        self.count_unflushed(count, now)?;
        Ok(AppendOutcome::Appended {
            base_offset: log_end,
            last_offset: next.plus(-1),
            log_append_time: log_append_time.then_some(now),
            log_start_offset: self.log_start,
        })
    }

    /// The idempotent-producer checks of an append: each batch against the stored state and
    /// the earlier batches of the same append. Returns the producers' state after it, and the
    /// next offset; or a retried batch's first outcome.
    fn check_producers(
        &self,
        headers: &[BatchHeader],
        log_end: Offset,
    ) -> Result<ProducerCheck, StorageError> {
        let mut next = log_end;
        // Producer checks against the state plus the earlier batches of this same request.
        let mut pending: Vec<(ProducerId, ProducerEntry)> = Vec::new();
        let mut at = 0usize;
        for h in headers {
            if h.is_control() {
                return Err(StorageError::ControlBatchRefused { at });
            }
            let base = next;
            let last = base.plus(h.last_offset_delta as i64);
            if let Some((pid, pepoch, first_seq)) = h.producer() {
                let idx = pending.iter().position(|(p, _)| *p == pid);
                let current = match idx {
                    Some(i) => Some(&pending[i].1),
                    None => self.producers.get(pid),
                };
                let last_seq = h.last_sequence();
                let meta = BatchMeta {
                    first_seq,
                    last_seq,
                    base_offset: base,
                    last_offset: last,
                };
                match ProducerState::check(current, pid, pepoch, first_seq, last_seq)? {
                    // A retried batch is acknowledged with its first offsets, but only alone: with
                    // other batches in the same append, answering "duplicate" would silently drop
                    // the others (Kafka refuses more than one batch per partition anyway).
                    Check::Duplicate(_) if headers.len() > 1 => {
                        return Err(StorageError::DuplicateAmongBatches { at });
                    }
                    Check::Duplicate(d) => {
                        return Ok(ProducerCheck::Duplicate(AppendOutcome::Duplicate {
                            base_offset: d.base_offset,
                            last_offset: d.last_offset,
                            log_start_offset: self.log_start,
                        }));
                    }
                    Check::Accept => {
                        let i = idx.unwrap_or_else(|| {
                            let e = self
                                .producers
                                .get(pid)
                                .cloned()
                                .unwrap_or_else(|| producer::new_entry(pepoch));
                            pending.push((pid, e));
                            pending.len() - 1
                        });
                        producer::apply_to(&mut pending[i].1, pepoch, meta);
                    }
                }
            }
            next = last.plus(1);
            at += h.size_bytes();
        }
        Ok(ProducerCheck::Accept { pending, next })
    }

    /// Writes batches to the active segment and indexes each where it sits; returns how many
    /// records were written. Then the flush policy (`flush.messages`) applies.
    fn write_indexed(
        &mut self,
        records: &[u8],
        batches: impl Iterator<Item = Placed>,
        now: Timestamp,
    ) -> Result<u64, StorageError> {
        let interval = self.config.index_interval_bytes;
        let seg = self.active_mut();
        let was_empty = seg.is_empty();
        seg.write(records)?;
        let mut pos = seg.size;
        let mut count = 0u64;
        for b in batches {
            seg.track_batch(pos, b.base, b.last, b.size, b.max_timestamp, interval);
            pos += b.size;
            count += b.records;
        }
        if was_empty {
            // First append into this segment: segment.ms counts from now.
            seg.rolling_ts = Some(now.get());
        }
        Ok(count)
    }

    /// Counts written records against `flush.messages`, and flushes when it is reached.
    fn count_unflushed(&mut self, count: u64, now: Timestamp) -> Result<(), StorageError> {
        self.unflushed_messages += count;
        if self
            .config
            .flush_messages
            .is_some_and(|n| self.unflushed_messages >= n)
        {
            self.flush_at(now)?;
        }
        Ok(())
    }

    /// Appends batches copied from the leader (a follower's append): offsets and leader epochs
    /// are already assigned and are kept as they are. Validates every batch, checks that the
    /// first starts at this log's end and that they are contiguous, records producer state and
    /// epochs as the leader did, so a follower that becomes leader dedupes retried batches.
    /// No sequence checks: the leader made them. Returns the new log end offset.
    pub fn append_replicated(
        &mut self,
        records: &[u8],
        now: Timestamp,
    ) -> Result<Offset, StorageError> {
        self.check_open()?;
        // The leader already accepted these under its own (possibly larger) limit; only the
        // framing limit applies here.
        let headers =
            validate_stored_batches(records, u32::MAX).map_err(StorageError::CorruptBatch)?;
        let log_end = self.log_end_offset();
        let mut next = log_end;
        for (at, h) in headers.iter().enumerate() {
            // The leader's log may have gaps where its cleaner removed records: offsets must
            // only increase, as in Kafka's follower append.
            if h.base_offset < next {
                return Err(StorageError::NonContiguousReplica {
                    expected: next,
                    found: h.base_offset,
                    at,
                });
            }
            next = h.last_offset().plus(1);
        }
        if headers.is_empty() {
            return Ok(log_end);
        }
        if self.should_roll(records.len() as u64, next, now) {
            self.roll()?;
        }
        let placed = headers
            .iter()
            .map(|h| Placed::of(h, h.base_offset, h.last_offset(), h.max_timestamp.get()));
        let count = self.write_indexed(records, placed, now)?;
        let mut epochs_changed = false;
        for h in &headers {
            if let Some((pid, epoch, first_seq)) = h.producer() {
                if h.is_control() {
                    self.producers.apply_epoch(pid, epoch);
                } else {
                    self.producers.apply(
                        pid,
                        epoch,
                        BatchMeta {
                            first_seq,
                            last_seq: h.last_sequence(),
                            base_offset: h.base_offset,
                            last_offset: h.last_offset(),
                        },
                    );
                }
            }
            epochs_changed |= self.epochs.assign(h.partition_leader_epoch, h.base_offset);
        }
        if epochs_changed {
            meta::store_epochs(&self.dir, self.epochs.entries())?;
        }
        self.count_unflushed(count, now)?;
        Ok(next)
    }

    /// Records that `epoch` starts at the current log end, as a new leader does when it takes
    /// over (Kafka's `makeLeader`), before it has appended anything in that epoch. Without it,
    /// a follower that asks where its own (newer than anything here) epoch ends would get no
    /// answer, and fall back to a truncation that can drop committed records. Does nothing if
    /// the log already knows `epoch` or a later one.
    pub fn start_leader_epoch(&mut self, epoch: LeaderEpoch) -> Result<(), StorageError> {
        self.check_open()?;
        if self.epochs.assign(epoch, self.log_end_offset()) {
            meta::store_epochs(&self.dir, self.epochs.entries())?;
        }
        Ok(())
    }

    /// Empties the log and restarts it at `offset`: a follower whose fetch position fell below
    /// the leader's log start (retention moved on while it was away) starts over there.
    pub fn reset_to(&mut self, offset: Offset) -> Result<(), StorageError> {
        self.check_open()?;
        self.truncate_fully_and_start_at(offset)
    }

    fn check_open(&self) -> Result<(), StorageError> {
        if self.closed {
            return Err(StorageError::Closed {
                dir: self.dir.clone(),
            });
        }
        Ok(())
    }

    fn should_roll(&self, incoming: u64, next: Offset, now: Timestamp) -> bool {
        let seg = self.active();
        if seg.is_empty() {
            return false;
        }
        seg.size + incoming > self.config.segment_bytes()
            || seg.rolling_ts.is_some_and(|t| now.get().saturating_sub(t) >= self.config.segment_ms)
            // Offsets inside a segment are stored relative to its base, as u32.
            || next.get() - seg.base.get() > u32::MAX as i64
    }

    /// Closes the active segment (index files written, data fsynced) and starts a new one at
    /// the log end offset.
    fn roll(&mut self) -> Result<(), StorageError> {
        let seg = self.active();
        seg.write_index_files(false)?;
        seg.sync()?;
        let base = seg.next_offset;
        let new = Segment::create(&self.dir, base)?;
        meta::sync_dir(&self.dir)?;
        self.segments.push(new);
        tracing::debug!(dir = %self.dir.display(), base = base.get(), "rolled segment");
        Ok(())
    }

    /// Whole batches starting from the batch that contains `from`, up to `max_bytes` (but at
    /// least one whole batch when `min_one_batch`, even if larger), only batches whose last
    /// offset is below `upper`, from one segment. `from == log end` returns no bytes.
    ///
    /// Every batch returned has passed its CRC-32C here; one that fails is never served:
    /// the read fails with [`StorageError::CorruptLog`] (`is_corruption()`), and the broker
    /// takes the partition offline rather than hand consumers a batch they cannot decode.
    pub fn read(
        &self,
        from: Offset,
        max_bytes: usize,
        upper: Offset,
        min_one_batch: bool,
    ) -> Result<ReadOutcome, StorageError> {
        let log_end = self.log_end_offset();
        if from < self.log_start || from > log_end {
            return Err(StorageError::OffsetOutOfRange {
                offset: from,
                log_start: self.log_start,
                log_end,
            });
        }
        let upper = upper.min(log_end);
        let bytes = if from >= upper {
            Vec::new()
        } else {
            let mut i = self
                .segments
                .partition_point(|s| s.base <= from)
                .saturating_sub(1);
            // `from` may fall in a gap the cleaner left at the end of a segment, or emptied
            // whole segments: the next batch is then in a later one (which exists, since
            // from < upper <= log end).
            while i + 1 < self.segments.len()
                && (self.segments[i].next_offset <= from || self.segments[i].is_empty())
            {
                i += 1;
            }
            self.segments[i].read(from, max_bytes, upper, min_one_batch)?
        };
        let mut next_offset = from;
        let mut at = 0usize;
        while at + BATCH_HEADER_BYTES <= bytes.len() {
            // Stored batches, framed when they were written: the header parses.
            let h = BatchHeader::parse(&bytes[at..]).map_err(StorageError::CorruptBatch)?;
            next_offset = next_offset.max(h.last_offset().plus(1));
            at += h.size_bytes();
        }
        Ok(ReadOutcome {
            bytes: Bytes::from(bytes),
            log_start_offset: self.log_start,
            log_end_offset: log_end,
            next_offset,
        })
    }

    /// ListOffsets by timestamp: the first offset (>= log start) whose record timestamp is >=
    /// `ts`, with that timestamp. Exact per record for uncompressed batches and LogAppendTime;
    /// for compressed CreateTime batches the batch's first offset and maxTimestamp (storage does
    /// not decompress).
    pub fn offset_for_timestamp(
        &self,
        ts: Timestamp,
    ) -> Result<Option<(Offset, Timestamp)>, StorageError> {
        let target = ts.get();
        let min = self.log_start;
        for seg in self
            .segments
            .iter()
            .filter(|s| s.next_offset > min && s.max_timestamp >= target)
        {
            let found = seg.scan_from(seg.time_index_position(target), |pos, h| {
                if h.last_offset() < min || h.max_timestamp.get() < target {
                    return Ok(None);
                }
                let first = h.base_offset.max(min);
                // LogAppendTime: every record carries the batch's time.
                if h.timestamp_type() == TimestampType::LogAppendTime {
                    return Ok(Some((first, h.max_timestamp)));
                }
                let batch = seg.read_exact(pos, h.size_bytes())?;
                let Some(section) = batch.get(crate::batch::BATCH_HEADER_BYTES..) else {
                    return Ok(Some((first, h.max_timestamp)));
                };
                let records = match h.compression() {
                    Compression::None => std::borrow::Cow::Borrowed(section),
                    codec => match crate::decompress::decompress(codec, section) {
                        Some(r) => std::borrow::Cow::Owned(r),
                        // Past the decompression limit: answer at batch level.
                        None => return Ok(Some((first, h.max_timestamp))),
                    },
                };
                Ok(find_record_by_timestamp(&records, h, target, min))
            })?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP (KIP-734): the largest timestamp in the log and the offset of
    /// the first record carrying it. Exact for CreateTime batches (compressed ones are
    /// decompressed, within a limit); for LogAppendTime batches (one timestamp for all) it is
    /// the batch's first offset, as in Kafka. `None` when no record has a timestamp.
    pub fn max_timestamp(&self) -> Result<Option<(Offset, Timestamp)>, StorageError> {
        let mut best: Option<(Offset, Timestamp)> = None;
        for s in self
            .segments
            .iter()
            .filter(|s| s.next_offset > self.log_start)
        {
            if s.max_timestamp >= 0 && best.is_none_or(|b| s.max_timestamp > b.1.get()) {
                best = Some((s.offset_of_max_timestamp, Timestamp(s.max_timestamp)));
            }
        }
        let Some((batch_offset, max)) = best else {
            return Ok(None);
        };
        // Nothing is later than the maximum, so the first record at or after it is the one.
        // None only when the maximum sits in records below the log start offset (DeleteRecords
        // inside a segment); then the segment's own answer, clamped to the log start, stands.
        Ok(Some(
            self.offset_for_timestamp(max)?
                .unwrap_or((batch_offset.max(self.log_start), max)),
        ))
    }

    /// OffsetForLeaderEpoch (KIP-101): the largest epoch <= `epoch` this log knows and the
    /// offset where the next higher epoch starts (the log end for the latest epoch).
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// DeleteRecords: moves the log start offset to `offset` (persisted) and deletes closed
    /// segments wholly below it. Returns the new log start offset. Moving backwards is a no-op.
    pub fn delete_records_before(&mut self, offset: Offset) -> Result<Offset, StorageError> {
        self.check_open()?;
        let log_end = self.log_end_offset();
        if offset > log_end {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: self.log_start,
                log_end,
            });
        }
        if offset > self.log_start {
            self.log_start = offset;
            self.store_meta(None)?;
            self.delete_segments_below_start()?;
            self.after_start_moved()?;
        }
        Ok(self.log_start)
    }

    /// Deletes closed segments whose every offset is below the log start.
    fn delete_segments_below_start(&mut self) -> Result<(usize, u64), StorageError> {
        let n = self.segments[..self.segments.len() - 1]
            .iter()
            .take_while(|s| s.next_offset <= self.log_start)
            .count();
        self.delete_first_segments(n)
    }

    fn delete_first_segments(&mut self, n: usize) -> Result<(usize, u64), StorageError> {
        assert!(
            n < self.segments.len(),
            "the active segment is never deleted"
        );
        let mut bytes = 0;
        for seg in self.segments.drain(..n) {
            bytes += seg.size;
            seg.delete_files()?;
        }
        Ok((n, bytes))
    }

    fn after_start_moved(&mut self) -> Result<(), StorageError> {
        self.producers.evict_below(self.log_start);
        if self.epochs.truncate_from_start(self.log_start) {
            meta::store_epochs(&self.dir, self.epochs.entries())?;
        }
        Ok(())
    }

    /// Deletes closed segments (oldest first, never the active one) whose largest timestamp is
    /// older than `retention.ms`, then while the log exceeds `retention.bytes`, and moves the
    /// log start offset past them.
    pub fn apply_retention(&mut self, now: Timestamp) -> Result<RetentionOutcome, StorageError> {
        self.check_open()?;
        // `cleanup.policy=compact` alone: the cleaner, not retention, decides what goes.
        if !self.config.cleanup_policy.deletes() {
            return Ok(RetentionOutcome {
                segments_deleted: 0,
                bytes_deleted: 0,
                log_start_offset: self.log_start,
            });
        }
        // The active segment counts too, as in Kafka: a topic whose newest records are past
        // retention.ms is emptied (the active segment is rolled first, then deleted), and
        // retention.bytes can go below one segment.
        let all = if self.active().is_empty() {
            self.segments.len() - 1
        } else {
            self.segments.len()
        };
        let mut n = 0;
        if let Some(ms) = self.config.retention_ms {
            let limit = now.get().saturating_sub(ms);
            n = self.segments[..all]
                .iter()
                .take_while(|s| {
                    let ts = if s.max_timestamp >= 0 {
                        Some(s.max_timestamp)
                    } else {
                        s.modified_ms()
                    };
                    ts.is_some_and(|t| t < limit)
                })
                .count();
        }
        if let Some(max) = self.config.retention_bytes {
            let mut size =
                self.size_bytes() - self.segments[..n].iter().map(|s| s.size).sum::<u64>();
            while n < all && size - self.segments[n].size >= max && size > max {
                size -= self.segments[n].size;
                n += 1;
            }
        }
        if n == self.segments.len() {
            // Every segment goes, the active one included: roll so a new, empty active segment
            // starts at the log end offset and the old one can be deleted like any other.
            self.roll()?;
        }
        if n == 0 {
            return Ok(RetentionOutcome {
                segments_deleted: 0,
                bytes_deleted: 0,
                log_start_offset: self.log_start,
            });
        }
        let new_start = self.segments[n].base.max(self.log_start);
        if new_start > self.log_start {
            self.log_start = new_start;
            self.store_meta(None)?;
        }
        let (segments_deleted, bytes_deleted) = self.delete_first_segments(n)?;
        self.after_start_moved()?;
        tracing::info!(dir = %self.dir.display(), segments_deleted, bytes_deleted,
            log_start = self.log_start.get(), "retention deleted segments");
        Ok(RetentionOutcome {
            segments_deleted,
            bytes_deleted,
            log_start_offset: self.log_start,
        })
    }

    /// Flushes when `flush.ms` has passed since the last flush and there is unflushed data.
    pub fn maybe_flush(&mut self, now: Timestamp) -> Result<(), StorageError> {
        self.check_open()?;
        if self.unflushed_messages > 0
            && self
                .config
                .flush_ms
                .is_some_and(|ms| now.get().saturating_sub(self.last_flush_ms) >= ms)
        {
            self.flush_at(now)?;
        }
        Ok(())
    }

    /// Makes every append so far durable. Closed segments were synced when they were rolled.
    /// The `flush.ms` schedule stays where it was (it is kept on the time appends bring in;
    /// this takes none): the next timed flush comes when it would have, finding less to do.
    pub fn flush(&mut self) -> Result<(), StorageError> {
        self.check_open()?;
        self.active().sync()?;
        self.unflushed_messages = 0;
        Ok(())
    }

    fn flush_at(&mut self, now: Timestamp) -> Result<(), StorageError> {
        self.active().sync()?;
        self.unflushed_messages = 0;
        self.last_flush_ms = now.get();
        Ok(())
    }

    /// Removes every record at and after `offset` (a batch containing it goes entirely, so the
    /// log end may end up below `offset`). Truncating at or past the log end does nothing;
    /// below the first segment, the log restarts empty at `offset`.
    pub fn truncate_to(&mut self, offset: Offset) -> Result<(), StorageError> {
        self.check_open()?;
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        if offset <= self.segments[0].base {
            return self.truncate_fully_and_start_at(offset);
        }
        while self.active().base >= offset {
            if let Some(seg) = self.segments.pop() {
                seg.delete_files()?;
            }
        }
        let interval = self.config.index_interval_bytes;
        let seg = self.active_mut();
        let cut = match seg.find_batch(offset)? {
            Some((pos, _, _)) => pos,
            None => seg.size,
        };
        seg.truncate_file(cut)?;
        seg.walk(cut, false, interval, |_, _| {})?;
        seg.write_index_files(false)?;
        let log_end = self.log_end_offset();
        if self.log_start > log_end {
            self.log_start = log_end;
            self.store_meta(None)?;
        }
        self.rebuild_producers()?;
        if self.epochs.truncate_from_end(log_end) {
            meta::store_epochs(&self.dir, self.epochs.entries())?;
        }
        // Records appended from here on are dirty, whatever the checkpoint said before.
        if let Some(cp) = self.cleaner_checkpoint.as_mut()
            && cp.truncate_to(log_end)
        {
            cp.store(&self.dir)?;
        }
        Ok(())
    }

    fn truncate_fully_and_start_at(&mut self, offset: Offset) -> Result<(), StorageError> {
        for seg in self.segments.drain(..) {
            seg.delete_files()?;
        }
        self.segments.push(Segment::create(&self.dir, offset)?);
        self.log_start = offset;
        self.store_meta(None)?;
        self.producers = ProducerState::default();
        self.epochs.truncate_from_end(offset);
        self.epochs.truncate_from_start(offset);
        meta::store_epochs(&self.dir, self.epochs.entries())?;
        if self.cleaner_checkpoint.is_some() {
            let cp = CleanerCheckpoint::reset(offset);
            cp.store(&self.dir)?;
            self.cleaner_checkpoint = Some(cp);
        }
        Ok(())
    }

    /// Replays every batch header from the log start (after truncation, which Kafka handles
    /// with producer snapshots).
    fn rebuild_producers(&mut self) -> Result<(), StorageError> {
        let mut state = ProducerState::default();
        let mut epochs = Vec::new();
        let log_start = self.log_start;
        for seg in &self.segments {
            seg.scan_from(0, |_, h| {
                replay(&mut state, &mut epochs, h, log_start);
                Ok(None::<()>)
            })?;
        }
        self.producers = state;
        Ok(())
    }

    /// The cleanable part of the log: sealed segments wholly below `upper` (the broker passes
    /// the high watermark), from the first on, stopping at the first that holds a record
    /// younger than `min.compaction.lag.ms`. Returns how many segments, and their end.
    fn cleanable_prefix(&self, upper: Offset, now: Timestamp) -> (usize, Offset) {
        let sealed = self.segments.len() - 1;
        let lag = self.config.min_compaction_lag_ms.max(0);
        let young_from = now.get().saturating_sub(lag);
        let n = self.segments[..sealed]
            .iter()
            .take_while(|s| s.next_offset <= upper && (lag == 0 || s.max_timestamp <= young_from))
            .count();
        (n, self.segments[n].base)
    }

    #[cfg(test)]
    pub(crate) fn debug_segments(&self) -> Vec<(Offset, Offset, u64, u64)> {
        self.segments
            .iter()
            .map(|s| (s.base, s.next_offset, s.size, s.id))
            .collect()
    }

    fn first_dirty(&self) -> Offset {
        let clean = self
            .cleaner_checkpoint
            .as_ref()
            .map_or(Offset::ZERO, |c| c.clean_offset);
        clean.max(self.log_start).max(self.segments[0].base)
    }

    /// Where this log's dirty part stands (`None` when the policy does not compact, the log is
    /// closed, or nothing is dirty), so the cleaner can pick the dirtiest log.
    pub fn cleanable(&self, upper: Offset, now: Timestamp) -> Option<Cleanable> {
        if self.closed || !self.config.cleanup_policy.compacts() {
            return None;
        }
        let (n, _) = self.cleanable_prefix(upper, now);
        let first_dirty = self.first_dirty();
        let (mut clean_bytes, mut dirty_bytes) = (0u64, 0u64);
        let mut first_dirty_segment = None;
        for s in &self.segments[..n] {
            if s.next_offset <= first_dirty {
                clean_bytes += s.size;
            } else {
                dirty_bytes += s.size;
                first_dirty_segment.get_or_insert(s);
            }
        }
        let first_dirty_segment = first_dirty_segment?;
        let total = clean_bytes + dirty_bytes;
        let dirty_ratio = if total == 0 {
            0.0
        } else {
            dirty_bytes as f64 / total as f64
        };
        // max.compaction.lag.ms: the first dirty segment's first record time (its rolling
        // reference: first batch's timestamp, or when it was first appended to).
        let overdue = self.config.max_compaction_lag_ms < i64::MAX
            && first_dirty_segment
                .rolling_ts
                .is_some_and(|t| now.get().saturating_sub(t) >= self.config.max_compaction_lag_ms);
        let due = dirty_ratio >= self.config.min_cleanable_dirty_ratio.as_f64() || overdue;
        Some(Cleanable {
            dirty_ratio,
            dirty_bytes,
            clean_bytes,
            due,
        })
    }

    /// Plans a cleaning round (see [`crate::cleaner`]) when this log is compacted and its dirty
    /// part is due. Takes `&self`: the broker calls it under the read lock, then runs
    /// [`crate::Cleaner::clean`] on the plan with no lock, then [`PartitionLog::finish_clean`]
    /// under the write lock.
    pub fn plan_clean(
        &self,
        upper: Offset,
        now: Timestamp,
    ) -> Result<Option<CleanPlan>, StorageError> {
        let Some(c) = self.cleanable(upper, now) else {
            return Ok(None);
        };
        if !c.due || c.dirty_bytes == 0 {
            return Ok(None);
        }
        let (n, cleanable_end) = self.cleanable_prefix(upper, now);
        let mut segments = Vec::with_capacity(n);
        for s in &self.segments[..n] {
            segments.push(SegmentSnapshot {
                id: s.id,
                base: s.base,
                next_offset: s.next_offset,
                size: s.size,
                file: s.clone_file()?,
                path: s.path().to_path_buf(),
            });
        }
        let first_dirty = self.first_dirty();
        Ok(Some(CleanPlan {
            dir: self.dir.clone(),
            segments,
            cleanable_end,
            first_dirty,
            log_end: self.log_end_offset(),
            checkpoint: self
                .cleaner_checkpoint
                .clone()
                .unwrap_or_else(|| CleanerCheckpoint::reset(first_dirty)),
            producer_last: self
                .producers
                .last_batch_ends()
                .map(|(p, o)| (p.get(), o))
                .collect(),
            now,
            delete_retention_ms: self.config.delete_retention_ms.max(0),
            segment_bytes: self.config.segment_bytes(),
            index_interval_bytes: self.config.index_interval_bytes,
            dirty_ratio: c.dirty_ratio,
            dirty_bytes: c.dirty_bytes,
            clean_bytes: c.clean_bytes,
        }))
    }

    /// Test hook: counts down the steps of a swap and fails where a crash was injected.
    fn swap_step(&mut self) -> Result<(), StorageError> {
        #[cfg(test)]
        if let Some(n) = self.crash_after_steps.as_mut() {
            if *n == 0 {
                return Err(StorageError::Io {
                    path: self.dir.clone(),
                    op: "injected crash in",
                    source: std::io::Error::other("injected crash"),
                });
            }
            *n -= 1;
        }
        Ok(())
    }

    /// Swaps a cleaned round in, under the write lock: checks that every segment it replaces
    /// is still in the log, unchanged (same id) and sealed; if not (retention, truncation or
    /// DeleteRecords got there first) the round is dropped and its files deleted. Otherwise
    /// it commits (`cleaner.swap`), replaces the files by rename, updates the checkpoint and
    /// removes the manifest. A failure after the commit is fatal: the disk is mid-swap, and
    /// only [`PartitionLog::open`] (which finishes the swap) can be trusted to fix it.
    pub fn finish_clean(&mut self, mut round: CleanedRound) -> Result<CleanOutcome, StorageError> {
        self.check_open()?;
        if round.dir != self.dir {
            return Ok(CleanOutcome::Aborted {
                reason: "the round belongs to another log",
            });
        }
        let mut positions = Vec::with_capacity(round.groups.len());
        for g in &round.groups {
            let Some(i) = self.segments.iter().position(|s| s.id == g.old[0].0) else {
                return Ok(CleanOutcome::Aborted {
                    reason: "a segment the round replaces is gone",
                });
            };
            let same = g.old.iter().enumerate().all(|(k, (id, base))| {
                self.segments
                    .get(i + k)
                    .is_some_and(|s| s.id == *id && s.base == *base)
            });
            if !same {
                return Ok(CleanOutcome::Aborted {
                    reason: "the segments the round replaces changed",
                });
            }
            if i + g.old.len() >= self.segments.len() {
                return Ok(CleanOutcome::Aborted {
                    reason: "a segment the round replaces is active again",
                });
            }
            positions.push(i);
        }
        let mut checkpoint = self
            .cleaner_checkpoint
            .clone()
            .unwrap_or_else(|| CleanerCheckpoint::reset(self.first_dirty()));
        checkpoint.advance(round.clean_offset, round.now.get());
        let manifest = SwapManifest {
            groups: round
                .groups
                .iter()
                .map(|g| SwapGroup {
                    new_base: g.old[0].1,
                    old_bases: g.old.iter().map(|o| o.1).collect(),
                })
                .collect(),
            checkpoint: checkpoint.clone(),
        };
        self.swap_step()?;
        // The commit point. A failure before the rename inside leaves no manifest: the round
        // is dropped (its files deleted) and the log is as it was.
        meta::write_atomically(&self.dir, CLEANER_SWAP_FILE, &manifest.encode())?;
        let stats = round.stats;
        let replaced: usize = round.groups.iter().map(|g| g.old.len()).sum();
        let written = round.groups.len();
        let clean_offset = checkpoint.clean_offset;
        self.apply_swap(&mut round, &positions, checkpoint)
            .map_err(|e| match e {
                StorageError::Io { path, op, source } => StorageError::Fatal { path, op, source },
                e => e,
            })?;
        tracing::info!(dir = %self.dir.display(), segments_replaced = replaced,
            segments_written = written, clean_offset = clean_offset.get(),
            records_removed = stats.records_removed, bytes_read = stats.bytes_read,
            bytes_written = stats.bytes_written, map_full = stats.map_full, "cleaned log");
        Ok(CleanOutcome::Swapped {
            segments_replaced: replaced,
            segments_written: written,
            clean_offset,
            stats,
        })
    }

    /// The committed part of a swap: file renames and deletions, then memory.
    fn apply_swap(
        &mut self,
        round: &mut CleanedRound,
        positions: &[usize],
        checkpoint: CleanerCheckpoint,
    ) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        for g in &round.groups {
            let new_base = g.old[0].1;
            for (_, base) in &g.old[1..] {
                for ext in ["log", "index", "timeindex"] {
                    self.swap_step()?;
                    remove_if_exists(&dir.join(file_name(*base, ext)))?;
                }
            }
            // Index files first, the log last: recovery keys on the `.log.cleaned` file.
            for ext in ["index", "timeindex", "log"] {
                self.swap_step()?;
                let from = dir.join(cleaned_name(new_base, ext));
                let to = dir.join(file_name(new_base, ext));
                fs::rename(&from, &to).map_err(io_err(&to, "renaming cleaned segment into"))?;
            }
        }
        self.swap_step()?;
        meta::sync_dir(&dir)?;
        // Memory: splice from the back so earlier positions stay valid.
        for (g, &i) in round.groups.iter_mut().zip(positions).rev() {
            let Some(mut seg) = g.new.take() else {
                unreachable!("a round's segments are swapped once")
            };
            seg.mark_renamed_to_final();
            let old: Vec<Segment> = self
                .segments
                .splice(i..i + g.old.len(), std::iter::once(seg))
                .collect();
            // Their files are renamed over or deleted already; this only closes handles.
            drop(old);
        }
        self.swap_step()?;
        checkpoint.store(&dir)?;
        self.cleaner_checkpoint = Some(checkpoint);
        self.swap_step()?;
        remove_if_exists(&dir.join(CLEANER_SWAP_FILE))?;
        meta::sync_dir(&dir)
    }

    /// Plans, cleans and swaps in one call, holding `&mut self` throughout: for tests and
    /// tools. The broker uses the three steps so that appends go on meanwhile.
    pub fn clean_now(
        &mut self,
        cleaner: &mut crate::Cleaner,
        upper: Offset,
        now: Timestamp,
    ) -> Result<Option<CleanOutcome>, StorageError> {
        let Some(plan) = self.plan_clean(upper, now)? else {
            return Ok(None);
        };
        let Some(round) = cleaner.clean(plan, &|| false)? else {
            return Ok(None);
        };
        self.finish_clean(round).map(Some)
    }

    /// Flushes, writes the active segment's index files and the clean-close marker that lets
    /// the next open skip verifying the active segment.
    /// After it, every change is refused with [`StorageError::Closed`]; reads still work.
    /// Closing twice is a no-op.
    pub fn close(&mut self) -> Result<(), StorageError> {
        if self.closed {
            return Ok(());
        }
        self.flush()?;
        self.active().write_index_files(true)?;
        let end = self.log_end_offset();
        self.store_meta(Some(end))?;
        self.closed = true;
        Ok(())
    }

    /// Marks the log closed without writing anything: its directory is about to be deleted.
    /// Later changes through any handle are refused with [`StorageError::Closed`].
    pub fn retire(&mut self) {
        self.closed = true;
    }
}

/// What the read-only pass of recovery found.
struct Checked {
    /// `(epoch, first offset)` for each rise of partitionLeaderEpoch along the batches.
    epoch_starts: Vec<(LeaderEpoch, Offset)>,
    /// Where the active segment's torn tail starts, if it has one.
    torn_at: Option<u64>,
}

/// Checks that `seg` continues the log after `prev` (walked already): it must not start
/// inside `prev`, and `prev` must end exactly where `seg` starts, because a roll starts the
/// new segment at the old one's end. Only the cleaner leaves a sealed segment ending short
/// (it drops the last batches of a segment it rewrites), and only below its clean offset
/// (`cleaned_below`). Anything else means batches are missing from the end of `prev`, as
/// when a sealed file is cut at a batch boundary, which its own framing cannot show.
fn check_continues(
    prev: &Segment,
    seg: &Segment,
    cleaned_below: Offset,
) -> Result<(), StorageError> {
    if prev.next_offset > seg.base {
        return Err(StorageError::CorruptLog {
            path: seg.path().to_path_buf(),
            position: 0,
            expected_offset: prev.next_offset,
            reason: format!(
                "the segment starts at offset {}, inside the segment before it",
                seg.base
            ),
        });
    }
    if prev.next_offset < seg.base && prev.base >= cleaned_below {
        return Err(StorageError::CorruptLog {
            path: prev.path().to_path_buf(),
            position: prev.size,
            expected_offset: prev.next_offset,
            reason: format!(
                "the segment ends at offset {} but the next one starts at {}: batches are \
                 missing from its end (the cleaner, which alone leaves such a gap, has not \
                 cleaned here)",
                prev.next_offset, seg.base
            ),
        });
    }
    Ok(())
}

/// Decides whether the walk of `seg` that stopped at `valid_bytes` with `problem` found a torn
/// tail (Ok: cut there) or damage ([`StorageError::CorruptLog`]). Only the active segment
/// after an unclean shutdown can have a torn tail: sealed segments were fsynced when rolled,
/// and a clean close fsynced the active one before writing its marker.
fn check_torn_tail(
    seg: &Segment,
    active: bool,
    meta: PartitionMeta,
    valid_bytes: u64,
    len: u64,
    problem: WalkProblem,
) -> Result<(), StorageError> {
    let damage = |reason: String| StorageError::CorruptLog {
        path: seg.path().to_path_buf(),
        position: valid_bytes,
        expected_offset: seg.next_offset,
        reason,
    };
    if !active {
        return Err(damage(format!(
            "{} (a sealed segment, fsynced when it was rolled: no crash tears it)",
            problem.reason
        )));
    }
    if let Some(clean_end) = meta.clean_end {
        return Err(damage(format!(
            "{} (the log was closed cleanly ending at offset {clean_end})",
            problem.reason
        )));
    }
    if problem.damage {
        return Err(damage(problem.reason));
    }
    if let Some(at) = seg.find_valid_batch(valid_bytes + 1, len, seg.next_offset)? {
        return Err(damage(format!(
            "{}; a valid batch follows at byte {at}, so this is not a torn tail",
            problem.reason
        )));
    }
    tracing::warn!(segment = %seg.path().display(), valid_bytes, problem = %problem.reason,
        "truncating the torn tail of the active segment");
    Ok(())
}

/// The segments' base offsets, ascending, and the leftover `.tmp` files (checkpoint writes
/// that did not reach their rename) to delete once the log is known to be sound.
fn list_segments(dir: &Path) -> Result<(Vec<Offset>, Vec<PathBuf>), StorageError> {
    let mut bases = Vec::new();
    let mut leftovers = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir, "listing"))? {
        let entry = entry.map_err(io_err(dir, "listing"))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = parse_log_name(name) {
            bases.push(base);
        } else if name.ends_with(".tmp") {
            leftovers.push(entry.path());
        }
    }
    bases.sort();
    Ok((bases, leftovers))
}

/// `partition.meta`, or when it is damaged (or missing while segments exist) a rebuilt one:
/// log start at the first segment's base (a DeleteRecords inside that segment is forgotten:
/// records come back rather than go), and no clean-close marker, so that the active segment
/// is verified. Stored by open only once the log is known to be sound. A newer format
/// version stays an error: a file this build does not understand is never rewritten.
fn load_or_rebuild_meta(dir: &Path, bases: &[Offset]) -> Result<PartitionMeta, StorageError> {
    let rebuilt = PartitionMeta {
        log_start: bases.first().copied().unwrap_or(Offset::ZERO),
        clean_end: None,
    };
    match PartitionMeta::load(dir) {
        Ok(Some(m)) => Ok(m),
        Ok(None) if bases.is_empty() => Ok(rebuilt),
        Ok(None) => {
            tracing::error!(dir = %dir.display(), log_start = rebuilt.log_start.get(),
                "partition.meta is missing but segments exist; rebuilding it");
            Ok(rebuilt)
        }
        Err(e @ StorageError::CorruptMetadata { .. }) => {
            tracing::error!(dir = %dir.display(), error = %weir_model::Chain(&e), log_start = rebuilt.log_start.get(),
                "partition.meta is damaged; rebuilding it, the active segment will be verified");
            Ok(rebuilt)
        }
        Err(e) => Err(e),
    }
}

/// The leader-epoch checkpoint, or an empty cache when it is damaged: recovery then rebuilds
/// it from batch headers (every batch carries its partitionLeaderEpoch). Only an epoch started
/// by a leader that then appended nothing is lost; the next epoch's start covers it.
fn load_or_rebuild_epochs(dir: &Path) -> Result<EpochCache, StorageError> {
    match meta::load_epochs(dir) {
        Ok(entries) => Ok(EpochCache::from_entries(entries)),
        Err(e @ StorageError::CorruptMetadata { .. }) => {
            tracing::error!(dir = %dir.display(), error = %weir_model::Chain(&e),
                "leader-epoch checkpoint is damaged; rebuilding it from batch headers");
            Ok(EpochCache::default())
        }
        Err(e) => Err(e),
    }
}

/// The cleaner checkpoint, or `None` (and `true`) when it is damaged: as if nothing had ever
/// been cleaned, so the next round cleans the whole log again and tombstones are kept longer,
/// never shorter. The damaged file is deleted once the log is known to be sound.
fn load_cleaner_checkpoint(dir: &Path) -> Result<(Option<CleanerCheckpoint>, bool), StorageError> {
    match CleanerCheckpoint::load(dir) {
        Ok(cp) => Ok((cp, false)),
        Err(e @ StorageError::CorruptMetadata { .. }) => {
            tracing::error!(dir = %dir.display(), error = %weir_model::Chain(&e),
                "cleaner checkpoint is damaged; dropping it, the whole log counts as dirty");
            Ok((None, true))
        }
        Err(e) => Err(e),
    }
}

/// Replays one stored batch into producer state and the epoch-start list.
fn replay(
    producers: &mut ProducerState,
    epoch_starts: &mut Vec<(LeaderEpoch, Offset)>,
    h: &BatchHeader,
    log_start: Offset,
) {
    if epoch_starts
        .last()
        .is_none_or(|e| e.0 < h.partition_leader_epoch)
    {
        epoch_starts.push((h.partition_leader_epoch, h.base_offset));
    }
    if h.last_offset() < log_start {
        return;
    }
    if let Some((pid, epoch, first_seq)) = h.producer() {
        if h.is_control() {
            producers.apply_epoch(pid, epoch);
        } else {
            let meta = BatchMeta {
                first_seq,
                last_seq: h.last_sequence(),
                base_offset: h.base_offset,
                last_offset: h.last_offset(),
            };
            producers.apply(pid, epoch, meta);
        }
    }
}

fn remove_if_exists(path: &Path) -> Result<(), StorageError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path, "deleting")(e)),
    }
}

/// At open, before the segments are listed: a `cleaner.swap` manifest means a round was
/// committed, so its swap is finished (idempotently: each step checks what is left to do);
/// then every `.cleaned` file left is from a round that never committed, and goes.
fn recover_cleaner_leftovers(dir: &Path) -> Result<(), StorageError> {
    if let Some(m) = SwapManifest::load(dir)? {
        tracing::info!(dir = %dir.display(), groups = m.groups.len(),
            "finishing a log cleaner swap interrupted by a crash");
        for g in &m.groups {
            for base in &g.old_bases[1..] {
                for ext in ["log", "index", "timeindex"] {
                    remove_if_exists(&dir.join(file_name(*base, ext)))?;
                }
            }
            if dir.join(cleaned_name(g.new_base, "log")).exists() {
                for ext in ["index", "timeindex", "log"] {
                    let from = dir.join(cleaned_name(g.new_base, ext));
                    if from.exists() {
                        let to = dir.join(file_name(g.new_base, ext));
                        fs::rename(&from, &to)
                            .map_err(io_err(&to, "renaming cleaned segment into"))?;
                    }
                }
            }
        }
        meta::sync_dir(dir)?;
        m.checkpoint.store(dir)?;
        remove_if_exists(&dir.join(CLEANER_SWAP_FILE))?;
        meta::sync_dir(dir)?;
    }
    for entry in fs::read_dir(dir).map_err(io_err(dir, "listing"))? {
        let entry = entry.map_err(io_err(dir, "listing"))?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(".cleaned"))
        {
            let p = entry.path();
            tracing::info!(file = %p.display(), "deleting an unfinished log cleaner file");
            remove_if_exists(&p)?;
        }
    }
    Ok(())
}

/// A batch where it will sit in the log: its offsets, size, records and the timestamp the
/// time index takes for it.
struct Placed {
    base: Offset,
    last: Offset,
    size: u64,
    records: u64,
    max_timestamp: i64,
}

impl Placed {
    fn of(h: &BatchHeader, base: Offset, last: Offset, max_timestamp: i64) -> Placed {
        Placed {
            base,
            last,
            size: h.size_bytes() as u64,
            records: h.records_count as u64,
            max_timestamp,
        }
    }
}

/// What the producer checks of an append decided.
enum ProducerCheck {
    /// Append, with the producers' state as it will be after and the next offset.
    Accept {
        pending: Vec<(ProducerId, ProducerEntry)>,
        next: Offset,
    },
    /// A retried batch: answer as the first time.
    Duplicate(AppendOutcome),
}

/// Gives each batch its offsets and leader epoch, and the append time when the topic uses
/// it: all outside the CRC, so patched in place.
fn patch_headers(
    records: &mut [u8],
    headers: &[BatchHeader],
    log_end: Offset,
    epoch: LeaderEpoch,
    append_time: Option<Timestamp>,
) {
    let mut at = 0usize;
    let mut base = log_end;
    for h in headers {
        let batch = &mut records[at..at + h.size_bytes()];
        set_base_offset(batch, base);
        set_partition_leader_epoch(batch, epoch);
        if let Some(now) = append_time {
            set_log_append_time(batch, now);
        }
        base = base.plus(h.last_offset_delta as i64 + 1);
        at += h.size_bytes();
    }
}
