//! Kafka RecordBatch v2 (magic 2): parsing, validation and the in-place header patches the
//! log applies when it appends.
//!
//! Byte layout of one batch (all integers big-endian), as Kafka defines it:
//!
//! ```text
//! offset  size  field
//!      0     8  baseOffset            assigned by the log, outside the CRC
//!      8     4  batchLength           bytes after this field (total size - 12)
//!     12     4  partitionLeaderEpoch  assigned by the log, outside the CRC
//!     16     1  magic                 always 2
//!     17     4  crc                   CRC-32C (Castagnoli) of bytes 21..end
//!     21     2  attributes            bits 0-2 compression, 3 timestamp type,
//!                                     4 transactional, 5 control
//!     23     4  lastOffsetDelta
//!     27     8  baseTimestamp
//!     35     8  maxTimestamp
//!     43     8  producerId            -1 when the producer is not idempotent
//!     51     2  producerEpoch
//!     53     4  baseSequence
//!     57     4  recordsCount
//!     61     -  records (varint-framed; compressed as a whole when compression != 0)
//! ```
//!
//! Because the CRC starts at `attributes`, the log can write `baseOffset` and
//! `partitionLeaderEpoch` into the producer's bytes without re-encoding or re-checksumming: a
//! fetch serves exactly the stored bytes.

use weir_model::limits::BATCH_RECORDS_MAX;
use weir_model::{LeaderEpoch, Offset, ProducerEpoch, ProducerId, Timestamp};

/// Size of the fixed header, up to the first record.
pub const BATCH_HEADER_BYTES: usize = 61;
/// `baseOffset` and `batchLength`: the bytes not counted by `batchLength`.
pub const BATCH_LENGTH_OVERHEAD: usize = 12;
/// The only message format version we store.
pub const MAGIC_V2: i8 = 2;

const PARTITION_LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
/// The CRC covers everything from here to the end of the batch.
const CRC_COVERS_FROM: usize = 21;
const ATTRIBUTES_AT: usize = 21;
const MAX_TIMESTAMP_AT: usize = 35;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

pub use crate::decompress::Compression;

/// Which clock a topic's timestamps come from (`message.timestamp.type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer's timestamps are kept (Kafka's default).
    #[default]
    CreateTime,
    /// The broker stamps each batch with its append time.
    LogAppendTime,
}

/// Why a batch was refused. `at` is the byte position of the batch within the slice handed to
/// [`validate_batches`], so a client's bad batch can be located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("no record batches")]
    Empty,
    #[error("batch at byte {at}: needs {needed} bytes, only {available} remain")]
    Truncated {
        at: usize,
        needed: usize,
        available: usize,
    },
    #[error("batch at byte {at}: magic {magic}, only 2 is supported")]
    BadMagic { at: usize, magic: i8 },
    #[error("batch at byte {at}: batchLength {batch_length} is smaller than a header")]
    BadLength { at: usize, batch_length: i32 },
    #[error("batch at byte {at}: {size} bytes exceeds the limit of {max}")]
    TooLarge { at: usize, size: usize, max: u32 },
    #[error("batch at byte {at}: CRC-32C is {computed:#010x}, header says {stored:#010x}")]
    CrcMismatch {
        at: usize,
        stored: u32,
        computed: u32,
    },
    #[error("batch at byte {at}: recordsCount {count} with lastOffsetDelta {last_offset_delta}")]
    BadRecordCount {
        at: usize,
        count: i32,
        last_offset_delta: i32,
    },
    #[error("batch at byte {at}: maxTimestamp {max} is before baseTimestamp {base}")]
    BadTimestamps { at: usize, base: i64, max: i64 },
    #[error("batch at byte {at}: unknown compression codec {codec}")]
    UnknownCompression { at: usize, codec: i16 },
    #[error(
        "batch at byte {at}: producer id {producer_id} with epoch {epoch} and sequence {sequence}"
    )]
    BadProducerFields {
        at: usize,
        producer_id: i64,
        epoch: i16,
        sequence: i32,
    },
    #[error("batch at byte {at}: records do not frame: {reason}")]
    BadRecords { at: usize, reason: &'static str },
    /// A compressed batch whose records do not decompress: a damaged or cut stream, or one
    /// expanding past [`weir_model::limits::DECOMPRESSED_BATCH_BYTES_MAX`]. Kafka answers
    /// CORRUPT_MESSAGE here (KAFKA-3160); records that decompress but do not decode are
    /// [`BatchError::BadRecords`], Kafka's INVALID_RECORD.
    #[error("batch at byte {at}: {codec:?} records: {reason}")]
    BadCompression {
        at: usize,
        codec: Compression,
        reason: &'static str,
    },
}

/// A parsed batch header. Fields are typed where Kafka has no sentinel; the producer fields
/// keep their raw values (`-1` = none) and are read through [`BatchHeader::producer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: Offset,
    pub batch_length: i32,
    pub partition_leader_epoch: LeaderEpoch,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: Timestamp,
    pub max_timestamp: Timestamp,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

#[inline]
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
#[inline]
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
#[inline]
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl BatchHeader {
    /// Parses and checks the header only (no CRC, no records): magic, `batchLength` at least a
    /// header, record count against `lastOffsetDelta` and [`BATCH_RECORDS_MAX`], timestamps,
    /// compression codec and producer fields. `bytes` may be longer than the header.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        Self::parse_at(bytes, 0)
    }

    fn parse_at(b: &[u8], at: usize) -> Result<BatchHeader, BatchError> {
        if b.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated {
                at,
                needed: BATCH_HEADER_BYTES,
                available: b.len(),
            });
        }
        let magic = b[MAGIC_AT] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::BadMagic { at, magic });
        }
        let h = BatchHeader {
            base_offset: Offset(be_i64(b, 0)),
            batch_length: be_i32(b, 8),
            partition_leader_epoch: LeaderEpoch(be_i32(b, PARTITION_LEADER_EPOCH_AT)),
            magic,
            crc: be_i32(b, CRC_AT) as u32,
            attributes: be_i16(b, ATTRIBUTES_AT),
            last_offset_delta: be_i32(b, 23),
            base_timestamp: Timestamp(be_i64(b, 27)),
            max_timestamp: Timestamp(be_i64(b, MAX_TIMESTAMP_AT)),
            producer_id: be_i64(b, 43),
            producer_epoch: be_i16(b, 51),
            base_sequence: be_i32(b, 53),
            records_count: be_i32(b, 57),
        };
        if (h.batch_length as i64) < (BATCH_HEADER_BYTES - BATCH_LENGTH_OVERHEAD) as i64 {
            return Err(BatchError::BadLength {
                at,
                batch_length: h.batch_length,
            });
        }
        // A producer's batch has exactly `lastOffsetDelta + 1` records ([`validate_batches`]
        // insists); a batch rewritten by the log cleaner keeps its offset range (so the last
        // sequence stays right, as Kafka does) but may hold fewer records, or none (an
        // idempotent producer's last batch, kept for its sequence, as Kafka keeps it).
        if h.records_count < 0
            || h.records_count > BATCH_RECORDS_MAX
            || h.last_offset_delta < h.records_count - 1
            || h.last_offset_delta >= BATCH_RECORDS_MAX
        {
            return Err(BatchError::BadRecordCount {
                at,
                count: h.records_count,
                last_offset_delta: h.last_offset_delta,
            });
        }
        let (base, max) = (h.base_timestamp.get(), h.max_timestamp.get());
        if max != -1 && max < base {
            return Err(BatchError::BadTimestamps { at, base, max });
        }
        let codec = h.attributes & COMPRESSION_MASK;
        if codec > 4 {
            return Err(BatchError::UnknownCompression { at, codec });
        }
        if h.producer_id >= 0 && (h.producer_epoch < 0 || (h.base_sequence < 0 && !h.is_control()))
        {
            return Err(BatchError::BadProducerFields {
                at,
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                sequence: h.base_sequence,
            });
        }
        Ok(h)
    }

    /// Total bytes of the batch, `batchLength` plus the 12 bytes before it.
    #[inline]
    pub fn size_bytes(&self) -> usize {
        self.batch_length as usize + BATCH_LENGTH_OVERHEAD
    }

    pub fn compression(&self) -> Compression {
        match self.attributes & COMPRESSION_MASK {
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            // parse() refused codecs above 4.
            _ => Compression::None,
        }
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    pub fn record_count(&self) -> i32 {
        self.records_count
    }

    pub fn last_offset(&self) -> Offset {
        self.base_offset.plus(self.last_offset_delta as i64)
    }

    /// The idempotent producer that wrote this batch: id, epoch and base sequence.
    /// `None` for a plain producer (`producerId == -1`).
    pub fn producer(&self) -> Option<(ProducerId, ProducerEpoch, i32)> {
        (self.producer_id >= 0).then_some((
            ProducerId(self.producer_id),
            ProducerEpoch(self.producer_epoch),
            self.base_sequence,
        ))
    }

    /// The sequence of the batch's last record; sequences wrap from `i32::MAX` to 0 as in
    /// Kafka's `DefaultRecordBatch.incrementSequence`.
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// `sequence + delta`, wrapping past `i32::MAX` to 0.
pub fn increment_sequence(sequence: i32, delta: i32) -> i32 {
    if sequence > i32::MAX - delta {
        sequence - (i32::MAX - delta) - 1
    } else {
        sequence + delta
    }
}

/// Splits the `records` bytes of one produce partition into batches and validates each: magic
/// == 2, `batchLength` within the slice and the whole batch <= `max_batch_bytes`, CRC-32C,
/// `recordsCount` in 1..=[`BATCH_RECORDS_MAX`] and == `lastOffsetDelta + 1`, timestamps
/// (`maxTimestamp >= baseTimestamp` unless -1), and then every record, as Kafka's
/// `LogValidator` does: compressed batches are decompressed (bounded by
/// [`weir_model::limits::DECOMPRESSED_BATCH_BYTES_MAX`]: a bomb is refused, not inflated), and in every batch
/// exactly `recordsCount` records must frame the records section, each record's fields
/// (attributes, timestamp delta, offset delta, key, value, headers) must fill it exactly,
/// and offset deltas must run 0, 1, 2, ... A batch a consumer could not decode is refused
/// here ([`BatchError::BadRecords`], CORRUPT_MESSAGE), never stored where it would block
/// every consumer of the partition. A stream that does not decompress (damaged, cut short,
/// or a bomb) is [`BatchError::BadCompression`].
///
/// Allocates only the returned headers and, per compressed batch, its decompressed records
/// (bounded as above, freed before the next batch); never sized by a length from the bytes.
pub fn validate_batches(
    records: &[u8],
    max_batch_bytes: u32,
) -> Result<Vec<BatchHeader>, BatchError> {
    let headers = validate_stored_batches(records, max_batch_bytes)?;
    let mut at = 0;
    for h in &headers {
        // Only the log cleaner makes a batch with gaps; a producer's never has any.
        if h.last_offset_delta != h.records_count - 1 {
            return Err(BatchError::BadRecordCount {
                at,
                count: h.records_count,
                last_offset_delta: h.last_offset_delta,
            });
        }
        let section = &records[at + BATCH_HEADER_BYTES..at + h.size_bytes()];
        let bad = |reason| BatchError::BadRecords { at, reason };
        match h.compression() {
            Compression::None => check_records(section, h.records_count).map_err(bad)?,
            codec => {
                let inflated =
                    crate::decompress::decompress_checked(codec, section).map_err(|e| {
                        BatchError::BadCompression {
                            at,
                            codec,
                            reason: e.reason(),
                        }
                    })?;
                check_records(&inflated, h.records_count).map_err(bad)?;
            }
        }
        at += h.size_bytes();
    }
    Ok(headers)
}

/// Checks a producer's (decompressed) records section: exactly `count` records, each a
/// zigzag-varint length and a body that [`check_record_body`] accepts, filling it exactly.
/// Kafka's `DefaultRecord.readFrom` checks the same when its `LogValidator` iterates a batch.
fn check_records(records: &[u8], count: i32) -> Result<(), &'static str> {
    let mut pos = 0;
    for index in 0..count {
        let (len, n) = read_varint(&records[pos..]).ok_or("bad record length varint")?;
        pos += n;
        let len = usize::try_from(len).map_err(|_| "negative record length")?;
        let body = records
            .get(pos..pos + len)
            .ok_or("record runs past the end of the batch")?;
        check_record_body(body, index)?;
        pos += len;
    }
    if pos != records.len() {
        return Err("bytes left after the last record");
    }
    Ok(())
}

/// One record body (after its length): attributes i8, timestampDelta varlong, offsetDelta
/// varint (must be `index`), key and value (varint length, -1 = null, then bytes), header
/// count varint, then per header a key (length >= 0) and a value (-1 = null); nothing left.
fn check_record_body(body: &[u8], index: i32) -> Result<(), &'static str> {
    const SHORT: &str = "a record's fields run past its length";
    let mut q = 1; // attributes
    if body.is_empty() {
        return Err(SHORT);
    }
    q += read_varlong(&body[q..]).ok_or(SHORT)?.1;
    let (offset_delta, n) = read_varint(&body[q..]).ok_or(SHORT)?;
    q += n;
    if offset_delta != index {
        return Err("record offset deltas do not run 0, 1, 2, ...");
    }
    // Skips a varint length and that many bytes (-1 = null when `nullable`).
    let skip = |q: &mut usize, nullable: bool| -> Result<(), &'static str> {
        let (len, n) = read_varint(body.get(*q..).ok_or(SHORT)?).ok_or(SHORT)?;
        *q += n;
        if len < 0 {
            return if len == -1 && nullable {
                Ok(())
            } else {
                Err("a negative length in a record")
            };
        }
        *q = q
            .checked_add(len as usize)
            .filter(|e| *e <= body.len())
            .ok_or(SHORT)?;
        Ok(())
    };
    skip(&mut q, true)?; // key
    skip(&mut q, true)?; // value
    let (headers, n) = read_varint(body.get(q..).ok_or(SHORT)?).ok_or(SHORT)?;
    q += n;
    if headers < 0 {
        return Err("a negative header count in a record");
    }
    // Each header takes at least two bytes, so a huge count fails fast at the body's end.
    for _ in 0..headers {
        skip(&mut q, false)?;
        skip(&mut q, true)?;
    }
    if q != body.len() {
        return Err("bytes left inside a record");
    }
    Ok(())
}

/// [`validate_batches`] for batches that come from a log (a follower's copy of its leader's):
/// header checks, CRC-32C and, for uncompressed batches, the record framing by length. A
/// batch may hold fewer records than its offset range, as a batch the log cleaner rewrote
/// does. Compressed records are not decompressed here, on purpose: the leader checked them at
/// produce ([`validate_batches`]), the CRC proves these are the leader's bytes, and a cleaned
/// batch legitimately breaks the producer-only rules (offset deltas with gaps). Refusing a
/// batch the leader holds would also stall the follower for good, as it cannot skip it.
pub fn validate_stored_batches(
    records: &[u8],
    max_batch_bytes: u32,
) -> Result<Vec<BatchHeader>, BatchError> {
    if records.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut headers = Vec::with_capacity(1);
    let mut at = 0;
    while at < records.len() {
        let h = validate_batch_at(&records[at..], at, max_batch_bytes)?;
        at += h.size_bytes();
        headers.push(h);
    }
    Ok(headers)
}

/// Validates the batch at the start of `bytes` (which may continue past it). `at` is only used
/// in errors.
pub(crate) fn validate_batch_at(
    bytes: &[u8],
    at: usize,
    max_batch_bytes: u32,
) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse_at(bytes, at)?;
    let size = h.size_bytes();
    if size > max_batch_bytes as usize {
        return Err(BatchError::TooLarge {
            at,
            size,
            max: max_batch_bytes,
        });
    }
    if size > bytes.len() {
        return Err(BatchError::Truncated {
            at,
            needed: size,
            available: bytes.len(),
        });
    }
    let batch = &bytes[..size];
    let computed = crc32c::crc32c(&batch[CRC_COVERS_FROM..]);
    if computed != h.crc {
        return Err(BatchError::CrcMismatch {
            at,
            stored: h.crc,
            computed,
        });
    }
    if h.compression() == Compression::None {
        walk_records(&batch[BATCH_HEADER_BYTES..], h.records_count)
            .map_err(|reason| BatchError::BadRecords { at, reason })?;
    }
    Ok(h)
}

/// Checks the CRC-32C of `batch`, one whole batch whose header parsed. `at` is only used in
/// the error.
pub(crate) fn check_crc(batch: &[u8], at: usize) -> Result<(), BatchError> {
    if batch.len() < BATCH_HEADER_BYTES {
        return Err(BatchError::Truncated {
            at,
            needed: BATCH_HEADER_BYTES,
            available: batch.len(),
        });
    }
    let stored = be_i32(batch, CRC_AT) as u32;
    let computed = crc32c::crc32c(&batch[CRC_COVERS_FROM..]);
    if computed != stored {
        return Err(BatchError::CrcMismatch {
            at,
            stored,
            computed,
        });
    }
    Ok(())
}

/// Checks that `count` records, each a zigzag-varint length followed by that many bytes, fill
/// `records` exactly. Uses no memory.
fn walk_records(records: &[u8], count: i32) -> Result<(), &'static str> {
    let mut pos = 0;
    for _ in 0..count {
        let (len, n) = read_varint(&records[pos..]).ok_or("bad record length varint")?;
        pos += n;
        if len < 0 {
            return Err("negative record length");
        }
        let len = len as usize;
        if len > records.len() - pos {
            return Err("record runs past the end of the batch");
        }
        pos += len;
    }
    if pos != records.len() {
        return Err("bytes left after the last record");
    }
    Ok(())
}

/// Reads a zigzag varint of at most 5 bytes (Kafka's int32 varint); returns value and length.
pub(crate) fn read_varint(b: &[u8]) -> Option<(i32, usize)> {
    let mut raw: u32 = 0;
    for i in 0..5 {
        let byte = *b.get(i)?;
        raw |= ((byte & 0x7f) as u32) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((((raw >> 1) as i32) ^ -((raw & 1) as i32), i + 1));
        }
    }
    None
}

/// Reads a zigzag varlong of at most 10 bytes; returns value and length.
pub(crate) fn read_varlong(b: &[u8]) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for i in 0..10 {
        let byte = *b.get(i)?;
        raw |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((((raw >> 1) as i64) ^ -((raw & 1) as i64), i + 1));
        }
    }
    None
}

/// One record of a batch's records section, as [`RecordIter`] yields it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordView<'a> {
    /// The whole record as stored, its length varint included: copied verbatim into a
    /// rewritten batch with the same base offset and base timestamp, it means the same.
    pub bytes: &'a [u8],
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    /// `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// False for a null value: a tombstone.
    pub has_value: bool,
}

/// Iterates the records of a batch's (decompressed) records section. Yields an error and stops
/// at the first record that does not frame; never reads outside `records`.
#[derive(Debug)]
pub(crate) struct RecordIter<'a> {
    records: &'a [u8],
    pos: usize,
    left: i32,
}

impl<'a> RecordIter<'a> {
    pub fn new(records: &'a [u8], count: i32) -> RecordIter<'a> {
        RecordIter {
            records,
            pos: 0,
            left: count,
        }
    }

    fn parse(&mut self) -> Option<RecordView<'a>> {
        let rest = self.records.get(self.pos..)?;
        let (len, n) = read_varint(rest)?;
        let len = usize::try_from(len).ok()?;
        let bytes = rest.get(..n + len)?;
        let body = &bytes[n..];
        // attributes i8 | timestampDelta varlong | offsetDelta varint | key | value | headers
        let mut q = 1;
        let (timestamp_delta, m) = read_varlong(body.get(q..)?)?;
        q += m;
        let (offset_delta, m) = read_varint(body.get(q..)?)?;
        q += m;
        let (key_len, m) = read_varint(body.get(q..)?)?;
        q += m;
        let key = if key_len < 0 {
            None
        } else {
            let k = body.get(q..q + key_len as usize)?;
            q += key_len as usize;
            Some(k)
        };
        let (value_len, _) = read_varint(body.get(q..)?)?;
        self.pos += n + len;
        Some(RecordView {
            bytes,
            timestamp_delta,
            offset_delta,
            key,
            has_value: value_len >= 0,
        })
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>, &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left <= 0 {
            return None;
        }
        self.left -= 1;
        match self.parse() {
            Some(r) => Some(Ok(r)),
            None => {
                self.left = 0;
                Some(Err("a record does not frame"))
            }
        }
    }
}

/// For an already validated batch's records section (`records`, decompressed if the batch is
/// compressed): the offset and timestamp of the first record whose timestamp is >= `target`
/// and whose offset is >= `min_offset`.
pub(crate) fn find_record_by_timestamp(
    records: &[u8],
    h: &BatchHeader,
    target: i64,
    min_offset: Offset,
) -> Option<(Offset, Timestamp)> {
    let mut pos = 0;
    for _ in 0..h.records_count {
        let (len, n) = read_varint(records.get(pos..)?)?;
        let body = records.get(pos + n..pos + n + usize::try_from(len).ok()?)?;
        // record: length | attributes i8 | timestampDelta varlong | offsetDelta varint | ...
        let (ts_delta, m) = read_varlong(body.get(1..)?)?;
        let (off_delta, _) = read_varint(body.get(1 + m..)?)?;
        let ts = h.base_timestamp.get().saturating_add(ts_delta);
        let offset = h.base_offset.plus(off_delta as i64);
        if ts >= target && offset >= min_offset {
            return Some((offset, Timestamp(ts)));
        }
        pos += n + len as usize;
    }
    None
}

/// Writes the log-assigned `baseOffset` into a batch. Outside the CRC.
#[inline]
pub fn set_base_offset(batch: &mut [u8], offset: Offset) {
    batch[0..8].copy_from_slice(&offset.get().to_be_bytes());
}

/// Writes the leader epoch into a batch. Outside the CRC.
#[inline]
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: LeaderEpoch) {
    batch[PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4]
        .copy_from_slice(&epoch.get().to_be_bytes());
}

/// Stamps a validated batch with the broker's append time, as Kafka does for
/// `message.timestamp.type=LogAppendTime`: sets the timestamp-type attribute bit and
/// `maxTimestamp`, then recomputes the CRC (both fields are inside it). `batch` must be exactly
/// one whole batch.
pub fn set_log_append_time(batch: &mut [u8], now: Timestamp) {
    let attributes = be_i16(batch, ATTRIBUTES_AT) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now.get().to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_COVERS_FROM..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{BatchSpec, encode_batch};
    use proptest::prelude::*;

    fn valid(values: &[&[u8]]) -> Vec<u8> {
        encode_batch(&BatchSpec::default(), values)
    }

    #[test]
    fn a_test_encoded_batch_validates_and_parses_back() {
        let b = valid(&[b"a", b"bc", b""]);
        let hs = validate_batches(&b, 1 << 20).unwrap();
        assert_eq!(hs.len(), 1);
        assert_eq!(hs[0].record_count(), 3);
        assert_eq!(hs[0].size_bytes(), b.len());
        assert_eq!(hs[0].producer(), None);
        assert_eq!(hs[0].compression(), Compression::None);
    }

    #[test]
    fn offset_and_epoch_patches_keep_the_crc_valid() {
        let mut b = valid(&[b"x".as_slice(); 4]);
        set_base_offset(&mut b, Offset(1234));
        set_partition_leader_epoch(&mut b, LeaderEpoch(7));
        let h = validate_batches(&b, 1 << 20).unwrap()[0];
        assert_eq!(h.base_offset, Offset(1234));
        assert_eq!(h.last_offset(), Offset(1237));
        assert_eq!(h.partition_leader_epoch, LeaderEpoch(7));
    }

    #[test]
    fn log_append_time_sets_the_attribute_and_a_valid_crc() {
        let mut b = valid(&[b"x"]);
        set_log_append_time(&mut b, Timestamp(99_000));
        let h = validate_batches(&b, 1 << 20).unwrap()[0];
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(h.max_timestamp, Timestamp(99_000));
    }

    #[test]
    fn too_large_is_its_own_error() {
        let b = valid(&[&[0u8; 100]]);
        assert!(matches!(
            validate_batches(&b, 50),
            Err(BatchError::TooLarge { .. })
        ));
    }

    #[test]
    fn compressed_batches_validate_through_their_records() {
        let spec = BatchSpec {
            compression: Compression::Zstd,
            ..BatchSpec::default()
        };
        let b = encode_batch(&spec, &[b"opaque", b"bytes"]);
        let h = validate_batches(&b, 1 << 20).unwrap()[0];
        assert_eq!(h.compression(), Compression::Zstd);
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 2), 7);
    }

    #[test]
    fn varints_round_trip_with_the_test_encoder() {
        for v in [0i32, 1, -1, 63, -64, 300, i32::MAX, i32::MIN] {
            let mut buf = Vec::new();
            crate::testing::put_varint(&mut buf, v);
            assert_eq!(read_varint(&buf), Some((v, buf.len())));
        }
        for v in [0i64, -1, 1 << 40, i64::MAX, i64::MIN] {
            let mut buf = Vec::new();
            crate::testing::put_varlong(&mut buf, v);
            assert_eq!(read_varlong(&buf), Some((v, buf.len())));
        }
    }

    fn arb_batches() -> impl Strategy<Value = Vec<u8>> {
        let values = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6);
        let codec = prop_oneof![Just(Compression::None), Just(Compression::Gzip)];
        let producer = prop::option::of((0i64..5, 0i16..3, 0i32..1000));
        prop::collection::vec((values, codec, producer, any::<i32>()), 1..4).prop_map(|bs| {
            let mut out = Vec::new();
            for (values, compression, producer, ts) in bs {
                let spec = BatchSpec {
                    compression,
                    base_timestamp: ts as i64,
                    producer: producer.map(|(p, e, s)| (ProducerId(p), ProducerEpoch(e), s)),
                    ..BatchSpec::default()
                };
                let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
                out.extend(encode_batch(&spec, &refs));
            }
            out
        })
    }

    /// Bytes outside the CRC that the log rewrites anyway: flipping them must not be refused.
    fn outside_crc_and_unchecked(pos_in_batch: usize) -> bool {
        pos_in_batch < 8
            || (PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4).contains(&pos_in_batch)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Proves: valid batches pass; any single byte flip is refused unless it hits
        /// baseOffset or partitionLeaderEpoch; validation never panics.
        #[test]
        fn single_byte_flips_are_refused_outside_offset_and_epoch(
            bytes in arb_batches(), pick in any::<prop::sample::Index>(), xor in 1u8..=255,
        ) {
            let headers = validate_batches(&bytes, 1 << 20).unwrap();
            let i = pick.index(bytes.len());
            let mut start = 0;
            for h in &headers {
                if i < start + h.size_bytes() { break; }
                start += h.size_bytes();
            }
            let mut flipped = bytes.clone();
            flipped[i] ^= xor;
            let r = validate_batches(&flipped, 1 << 20);
            if outside_crc_and_unchecked(i - start) {
                prop_assert!(r.is_ok());
            } else {
                prop_assert!(r.is_err(), "flip at {} accepted", i);
            }
        }

        /// Proves: every proper prefix of a valid batch sequence that cuts a batch is refused.
        #[test]
        fn truncations_are_refused(bytes in arb_batches(), pick in any::<prop::sample::Index>()) {
            let headers = validate_batches(&bytes, 1 << 20).unwrap();
            let cut = pick.index(bytes.len());
            let mut boundary = 0;
            let mut on_boundary = cut == 0;
            for h in &headers {
                boundary += h.size_bytes();
                on_boundary |= boundary == cut;
            }
            let r = validate_batches(&bytes[..cut], 1 << 20);
            if on_boundary && cut > 0 {
                prop_assert!(r.is_ok());
            } else {
                prop_assert!(r.is_err());
            }
        }

        /// Proves: arbitrary bytes never panic the validator or the header parser.
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = validate_batches(&bytes, 1 << 20);
            let _ = BatchHeader::parse(&bytes);
        }

        /// Proves: random bytes behind a plausible header (right magic and length) never panic.
        #[test]
        fn random_bodies_never_panic(mut body in prop::collection::vec(any::<u8>(), 61..300)) {
            let len = (body.len() - 12) as i32;
            body[8..12].copy_from_slice(&len.to_be_bytes());
            body[16] = 2;
            let crc = crc32c::crc32c(&body[21..]);
            body[17..21].copy_from_slice(&crc.to_be_bytes());
            let _ = validate_batches(&body, 1 << 20);
        }
    }
}

#[cfg(test)]
mod compressed_tests {
    //! Client batches whose records a consumer could not decode are refused at produce.
    use super::*;
    use crate::testing::{BatchSpec, encode_batch};
    use std::io::Write;

    const CODECS: [Compression; 4] = [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn spec(compression: Compression) -> BatchSpec {
        BatchSpec {
            compression,
            ..BatchSpec::default()
        }
    }

    /// `batch` with its records section replaced by `section` and `recordsCount` /
    /// `lastOffsetDelta` set to `count`, with a valid length and CRC: only the records are bad.
    fn with_section(batch: &[u8], section: &[u8], count: i32) -> Vec<u8> {
        let mut b = batch[..BATCH_HEADER_BYTES].to_vec();
        b.extend_from_slice(section);
        let len = (b.len() - BATCH_LENGTH_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        b[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_COVERS_FROM..]);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn refused(b: &[u8]) -> bool {
        matches!(
            validate_batches(b, u32::MAX),
            Err(BatchError::BadRecords { .. } | BatchError::BadCompression { .. })
        )
    }

    /// Proves: a valid batch of every codec passes, and so does the same batch stored.
    #[test]
    fn valid_compressed_batches_of_every_codec_validate() {
        for codec in CODECS {
            let b = encode_batch(&spec(codec), &[b"opaque", b"bytes", b""]);
            let h = validate_batches(&b, 1 << 20).unwrap()[0];
            assert_eq!(h.compression(), codec);
        }
    }

    /// Proves: garbage in place of every codec's stream is refused (the CRC is valid: the
    /// client computed it over the garbage).
    #[test]
    fn garbage_compressed_payloads_are_refused() {
        let garbage: Vec<u8> = (0..300u32).map(|i| (i * 37 % 251) as u8).collect();
        for codec in CODECS {
            let good = encode_batch(&spec(codec), &[b"a", b"b"]);
            let b = with_section(&good, &garbage, 2);
            assert!(refused(&b), "{codec:?}: garbage accepted");
        }
    }

    /// Proves: every codec's stream cut short is refused, at every cut.
    #[test]
    fn truncated_compressed_streams_are_refused() {
        let values: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 50]).collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        for codec in CODECS {
            let good = encode_batch(&spec(codec), &refs);
            let section = &good[BATCH_HEADER_BYTES..];
            for cut in 0..section.len() {
                let b = with_section(&good, &section[..cut], 20);
                assert!(refused(&b), "{codec:?}: cut at {cut} of {}", section.len());
            }
        }
    }

    /// Proves: a stream that expands past DECOMPRESSED_BATCH_BYTES_MAX is refused without
    /// being inflated further.
    #[test]
    fn decompression_bombs_are_refused() {
        let zeros = vec![0u8; weir_model::limits::DECOMPRESSED_BATCH_BYTES_MAX + 1];
        let zstd = zstd::encode_all(&zeros[..], 3).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&zeros).unwrap();
        let gzip = gz.finish().unwrap();
        for (codec, bomb) in [(Compression::Zstd, zstd), (Compression::Gzip, gzip)] {
            let good = encode_batch(&spec(codec), &[b"a"]);
            let b = with_section(&good, &bomb, 1);
            assert!(
                matches!(
                    validate_batches(&b, u32::MAX),
                    Err(BatchError::BadCompression { reason, .. }) if reason.contains("limit")
                ),
                "{codec:?}"
            );
        }
    }

    /// Proves: a header's record count that disagrees with the records is refused, compressed
    /// or not, both more and fewer.
    #[test]
    fn wrong_record_counts_are_refused() {
        for codec in CODECS.into_iter().chain([Compression::None]) {
            let good = encode_batch(&spec(codec), &[b"a", b"b", b"c"]);
            let section = good[BATCH_HEADER_BYTES..].to_vec();
            for count in [1, 2, 4, 9] {
                let b = with_section(&good, &section, count);
                assert!(refused(&b), "{codec:?}: count {count} accepted");
            }
            assert!(!refused(&with_section(&good, &section, 3)));
        }
    }

    /// Proves: records that frame by length but whose fields do not fill them, or whose offset
    /// deltas do not run 0, 1, 2, are refused.
    #[test]
    fn record_fields_must_fill_the_record() {
        let good = encode_batch(&BatchSpec::default(), &[b"ab", b"cd"]);
        let section = good[BATCH_HEADER_BYTES..].to_vec();
        // Record 1: length 1 | attributes 0 | tsDelta 0 | offsetDelta | key -1 | value 2 "ab" |
        // headers 0. The second record's offsetDelta sits 3 bytes into it.
        let first_len = section[0] as usize / 2 + 1;
        let mut wrong_delta = section.clone();
        wrong_delta[first_len + 3] = 2 * 5; // zigzag 5
        assert!(refused(&with_section(&good, &wrong_delta, 2)));
        let mut bad_value_len = section.clone();
        bad_value_len[5] = 2 * 40; // value length 40 in a record of 8 bytes
        assert!(refused(&with_section(&good, &bad_value_len, 2)));
        let mut bad_headers = section.clone();
        bad_headers[first_len - 1] = 2; // one header, but no bytes left for it
        assert!(refused(&with_section(&good, &bad_headers, 2)));
        assert!(!refused(&with_section(&good, &section, 2)));
    }
}
