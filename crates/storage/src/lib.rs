//! Weir's storage engine: one partition's log on local disk. No networking, no async.
//!
//! Modules:
//! - [`batch`]: Kafka RecordBatch v2 parsing and validation (magic, sizes, CRC-32C, record
//!   framing) and the in-place header patches (base offset, leader epoch, LogAppendTime).
//! - [`log`]: [`PartitionLog`], the API the broker uses: append, read, recovery, retention,
//!   DeleteRecords, truncation, flush policy, timestamp and leader-epoch lookups.
//! - `segment`: a `.log` file with its sparse `.index` and `.timeindex` (formats documented
//!   there).
//! - `producer`: idempotent producer state, rebuilt from batch headers at open.
//! - `epoch`: the leader epoch cache (KIP-101).
//! - [`cleaner`]: log compaction (`cleanup.policy=compact`): plan under a read lock, copy with
//!   no lock, swap under the write lock; crash-safe through `cleaner.swap`.
//! - `decompress`: bounded decompression (timestamp lookups, key checks, the cleaner) and the
//!   cleaner's re-compression.
//! - `meta`: `partition.meta` (format version, log start, clean-close marker), the
//!   leader-epoch checkpoint, the cleaner checkpoint and swap manifest, written atomically.
//! - [`testing`] (feature `testing`): a tiny RecordBatch encoder/decoder for tests.
//!
//! Produce path:
//!
//! ```text
//! records (&mut [u8] from the request)
//!   -> validate_batches: header checks, CRC-32C once, every record's fields (compressed
//!      batches decompressed within DECOMPRESSED_BATCH_BYTES_MAX to check them)
//!   -> producer sequence check (Duplicate -> original offsets, nothing written)
//!   -> roll the active segment if segment.bytes / segment.ms says so
//!   -> patch baseOffset + partitionLeaderEpoch in place (outside the CRC; LogAppendTime
//!      re-stamps maxTimestamp and recomputes the CRC)
//!   -> one positional write at the segment's end -> in-memory index entries
//!   -> fsync if flush.messages is reached
//! ```
//!
//! Fetch path: segment by binary search on base offsets -> offset index binary search ->
//! walk batch headers to the batch containing the fetch offset -> one positional read of up
//! to `max_bytes` -> cut back to whole batches below the upper bound -> CRC-32C of each
//! (a damaged batch fails the read with `CorruptLog` instead of reaching a consumer).
//!
//! Damage on disk: recovery truncates only a torn tail of the active segment after a crash;
//! anything else fails `PartitionLog::open` with `StorageError::CorruptLog`, leaving the
//! files as they are ([`StorageError::is_corruption`]: the broker takes the partition offline).
//! Metadata that can be rebuilt (indexes, `partition.meta`, the leader-epoch and cleaner
//! checkpoints) is rebuilt. `tests/fault_injection.rs` damages every file type to prove it.

// Tests may unwrap: a panic is the failure report.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod batch;
pub mod cleaner;
mod decompress;
mod epoch;
mod error;
pub mod log;
mod meta;
mod producer;
mod segment;
// Always compiled, not behind a feature: a feature only tests turn on would give `cargo test`
// another weir-storage, and a rebuild of every crate above it (docs/ci.md). Unused code costs
// the binaries nothing.
#[doc(hidden)]
pub mod testing;

#[cfg(test)]
mod tests;

pub use batch::{
    BATCH_HEADER_BYTES, BatchError, BatchHeader, Compression, TimestampType, validate_batches,
    validate_stored_batches,
};
pub use cleaner::{CleanOutcome, CleanPlan, CleanStats, CleanedRound, Cleaner, CleanerConfig};
pub use error::StorageError;
pub use log::{
    AppendOutcome, CleanupPolicy, DirtyRatio, LogConfig, PartitionLog, ReadOutcome,
    RetentionOutcome,
};
pub use meta::FORMAT_VERSION;
