//! A tiny RecordBatch v2 encoder and decoder for tests (this crate's unit and integration
//! tests). Records carry a key (null unless given), a value (or null: a tombstone) and no
//! headers; compressed batches are compressed as Kafka's clients frame them.

use crate::batch::{BATCH_HEADER_BYTES, BatchHeader, Compression, RecordIter};
use weir_model::{Offset, ProducerEpoch, ProducerId, Timestamp};

/// What the encoder puts into a batch's header.
#[derive(Clone, Debug)]
pub struct BatchSpec {
    /// Timestamp of the first record; record `i` gets `base_timestamp + i` unless
    /// `timestamp_deltas` says otherwise.
    pub base_timestamp: i64,
    pub producer: Option<(ProducerId, ProducerEpoch, i32)>,
    pub compression: Compression,
    pub transactional: bool,
    /// Per-record timestamp deltas from `base_timestamp` (one per value, all >= 0); empty
    /// means `0, 1, 2, ...`.
    pub timestamp_deltas: Vec<i64>,
}

impl Default for BatchSpec {
    fn default() -> Self {
        BatchSpec {
            base_timestamp: 1_000,
            producer: None,
            compression: Compression::None,
            transactional: false,
            timestamp_deltas: Vec::new(),
        }
    }
}

pub fn put_varint(out: &mut Vec<u8>, v: i32) {
    let mut raw = ((v << 1) ^ (v >> 31)) as u32;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

pub fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// One record for [`encode_keyed_batch`]: key and value, `None` for null.
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Encodes one batch with one record per value (null keys), base offset 0, leader epoch -1, as
/// a producer sends it.
pub fn encode_batch(spec: &BatchSpec, values: &[&[u8]]) -> Vec<u8> {
    let records: Vec<KeyValue> = values.iter().map(|v| (None, Some(*v))).collect();
    encode_keyed_batch(spec, &records)
}

/// Encodes one batch of `(key, value)` records (`None` = null; a null value is a tombstone),
/// base offset 0, leader epoch -1, as a producer sends it.
pub fn encode_keyed_batch(spec: &BatchSpec, values: &[KeyValue]) -> Vec<u8> {
    assert!(!values.is_empty(), "a batch has at least one record");
    assert!(spec.timestamp_deltas.is_empty() || spec.timestamp_deltas.len() == values.len());
    let delta = |i: usize| spec.timestamp_deltas.get(i).copied().unwrap_or(i as i64);
    let mut records = Vec::new();
    for (i, (k, v)) in values.iter().enumerate() {
        let mut body = vec![0u8]; // attributes
        put_varlong(&mut body, delta(i)); // timestampDelta
        put_varint(&mut body, i as i32); // offsetDelta
        match k {
            Some(k) => {
                put_varint(&mut body, k.len() as i32);
                body.extend_from_slice(k);
            }
            None => put_varint(&mut body, -1),
        }
        match v {
            Some(v) => {
                put_varint(&mut body, v.len() as i32);
                body.extend_from_slice(v);
            }
            None => put_varint(&mut body, -1),
        }
        put_varint(&mut body, 0); // headers
        put_varint(&mut records, body.len() as i32);
        records.extend_from_slice(&body);
    }
    let records = compress(spec.compression, records);
    let n = values.len() as i32;
    let codec: i16 = match spec.compression {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    };
    let attributes = codec | if spec.transactional { 0x10 } else { 0 };
    let (pid, epoch, seq) = spec
        .producer
        .map_or((-1i64, -1i16, -1i32), |(p, e, s)| (p.0, e.0, s));
    let mut b = Vec::with_capacity(BATCH_HEADER_BYTES + records.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((BATCH_HEADER_BYTES - 12 + records.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&(n - 1).to_be_bytes());
    b.extend_from_slice(&spec.base_timestamp.to_be_bytes());
    let max_delta = (0..values.len()).map(delta).max().unwrap_or(0);
    b.extend_from_slice(&(spec.base_timestamp + max_delta).to_be_bytes());
    b.extend_from_slice(&pid.to_be_bytes());
    b.extend_from_slice(&epoch.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&n.to_be_bytes());
    b.extend_from_slice(&records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// The records section in Kafka's framing for `codec`, as a producer would send it.
fn compress(codec: Compression, records: Vec<u8>) -> Vec<u8> {
    use std::io::Write;
    match codec {
        Compression::None => records,
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&records).expect("gzip into memory");
            e.finish().expect("gzip into memory")
        }
        Compression::Zstd => zstd::encode_all(&records[..], 3).expect("zstd into memory"),
        Compression::Lz4 => {
            let mut e = lz4::EncoderBuilder::new()
                .build(Vec::new())
                .expect("lz4 encoder");
            e.write_all(&records).expect("lz4 into memory");
            let (out, r) = e.finish();
            r.expect("lz4 into memory");
            out
        }
        Compression::Snappy => {
            // xerial framing, as the Java client writes it.
            let mut out = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
            let block = snap::raw::Encoder::new()
                .compress_vec(&records)
                .expect("snappy");
            out.extend_from_slice(&(block.len() as u32).to_be_bytes());
            out.extend_from_slice(&block);
            out
        }
    }
}

/// One record as [`decode_records`] sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedRecord {
    pub offset: Offset,
    pub timestamp: Timestamp,
    /// `None` for a null key.
    pub key: Option<Vec<u8>>,
    /// Empty for a null value; see `tombstone`.
    pub value: Vec<u8>,
    /// The value is null.
    pub tombstone: bool,
}

/// Decodes every record of a run of stored batches (as `read` returns them), decompressing
/// compressed ones. Panics on malformed input: tests only.
pub fn decode_records(mut bytes: &[u8]) -> Vec<DecodedRecord> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let h = BatchHeader::parse(bytes).expect("batch header");
        let batch = &bytes[..h.size_bytes()];
        let log_append = h.timestamp_type() == crate::TimestampType::LogAppendTime;
        let section = &batch[BATCH_HEADER_BYTES..];
        let records = match h.compression() {
            Compression::None => section.to_vec(),
            codec => crate::decompress::decompress(codec, section).expect("decompresses"),
        };
        for r in RecordIter::new(&records, h.records_count) {
            let r = r.expect("record frames");
            let body = r.bytes;
            // The value is the last field before the headers: find it by re-walking.
            let value = value_of(body);
            out.push(DecodedRecord {
                offset: h.base_offset.plus(r.offset_delta as i64),
                timestamp: if log_append {
                    h.max_timestamp
                } else {
                    Timestamp(h.base_timestamp.get() + r.timestamp_delta)
                },
                key: r.key.map(<[u8]>::to_vec),
                tombstone: !r.has_value,
                value: value.unwrap_or_default(),
            });
        }
        bytes = &bytes[h.size_bytes()..];
    }
    out
}

/// The value of one stored record (its length varint included), `None` when null.
fn value_of(record: &[u8]) -> Option<Vec<u8>> {
    use crate::batch::{read_varint, read_varlong};
    let (_, mut q) = read_varint(record)?;
    q += 1; // attributes
    q += read_varlong(&record[q..])?.1;
    q += read_varint(&record[q..])?.1;
    let (key_len, m) = read_varint(&record[q..])?;
    q += m + key_len.max(0) as usize;
    let (val_len, m) = read_varint(&record[q..])?;
    q += m;
    (val_len >= 0).then(|| record[q..q + val_len as usize].to_vec())
}
