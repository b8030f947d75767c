//! The crate's one error type.

use crate::batch::BatchError;
use std::io;
use std::path::{Path, PathBuf};
use weir_model::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A follower's append does not continue this log: the batch at index `at` starts at
    /// `found`, the log expects `expected`.
    #[error("replicated batch {at} starts at offset {found}; the log ends at {expected}")]
    NonContiguousReplica {
        expected: Offset,
        found: Offset,
        at: usize,
    },
    /// An I/O operation failed; the log is still consistent (a failed append was rolled back).
    #[error("{op} {path}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// The environment is broken (an fsync failed, or a failed write could not be rolled
    /// back): what is on disk is unknown. The broker must stop, not retry: after a failed
    /// fsync the kernel may have dropped the dirty pages, so a later fsync can succeed while
    /// data is lost.
    #[error("fatal: {op} {path} failed; the log directory can no longer be trusted")]
    Fatal {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("invalid record batch")]
    CorruptBatch(#[from] BatchError),
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    RecordTooLarge { size: usize, max: u32 },
    #[error("offset {offset} is outside the log [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: Offset,
        log_start: Offset,
        log_end: Offset,
    },
    #[error(
        "producer {producer_id} epoch {epoch}: sequence {sequence} does not follow {last_sequence:?}"
    )]
    OutOfOrderSequence {
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        sequence: i32,
        /// The last sequence the log holds for this producer and epoch; `None` when the batch
        /// starts a new epoch (which must begin at sequence 0).
        last_sequence: Option<i32>,
    },
    #[error("producer {producer_id}: epoch {epoch} is fenced by epoch {current}")]
    InvalidProducerEpoch {
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        current: ProducerEpoch,
    },
    #[error("leader epoch {epoch} is older than the log's latest epoch {latest}")]
    StaleLeaderEpoch {
        epoch: LeaderEpoch,
        latest: LeaderEpoch,
    },
    #[error("clients may not produce control batches (batch at byte {at})")]
    ControlBatchRefused { at: usize },
    #[error(
        "{path}: on-disk format version {found} is not supported (this build reads {supported})"
    )]
    UnsupportedFormat {
        path: PathBuf,
        found: u16,
        supported: u16,
    },
    /// A metadata file that cannot be rebuilt is damaged (the cleaner's swap manifest, or a
    /// segment the cleaner found damaged). Nothing was changed on disk.
    #[error("{path}: corrupt: {reason}")]
    CorruptMetadata { path: PathBuf, reason: String },
    /// A segment file is damaged where no crash could have damaged it: a sealed segment (they
    /// are fsynced when rolled), segments that overlap, the active segment after a clean close,
    /// or the active segment with a valid batch after the damage (a torn tail has none). Also
    /// returned by a read that meets a batch whose CRC-32C no longer matches (sealed segments
    /// are not CRC-checked at open). [`crate::PartitionLog::open`] returns it having changed
    /// nothing on disk: no truncation, no deleted segment, no rewritten metadata. The broker
    /// takes the partition offline (KAFKA_STORAGE_ERROR); see [`StorageError::is_corruption`].
    #[error(
        "{path}: log damaged at byte {position} (the log expects offset {expected_offset} or later there): {reason}"
    )]
    CorruptLog {
        path: PathBuf,
        position: u64,
        expected_offset: Offset,
        reason: String,
    },
    #[error(
        "a batch at byte {at} is a duplicate of one already in the log, and others came with it"
    )]
    DuplicateAmongBatches { at: usize },
    #[error("the log in {dir} is closed (shut down or deleted)")]
    Closed { dir: PathBuf },
    /// A record without a key, appended to a compacted topic (Kafka's wording, and its
    /// INVALID_RECORD): the cleaner could never tell which record it replaces.
    #[error("Compacted topic cannot accept message without key (batch at byte {at})")]
    RecordWithoutKey { at: usize },
}

impl StorageError {
    /// True when the broker must stop rather than answer the request with an error.
    pub fn is_fatal(&self) -> bool {
        matches!(self, StorageError::Fatal { .. })
    }

    /// True when on-disk data of this partition is damaged beyond what recovery may repair
    /// ([`StorageError::CorruptLog`], [`StorageError::CorruptMetadata`]): the partition must go
    /// offline (KAFKA_STORAGE_ERROR) until an operator or re-replication fixes it, and the
    /// process may go on serving other partitions. Retrying the open will fail the same way.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            StorageError::CorruptLog { .. } | StorageError::CorruptMetadata { .. }
        )
    }
}

pub(crate) fn io_err(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> StorageError {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

pub(crate) fn fatal_err(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> StorageError {
    move |source| StorageError::Fatal {
        path: path.to_path_buf(),
        op,
        source,
    }
}
