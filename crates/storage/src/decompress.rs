//! Bounded decompression of a batch's records, for the rare paths that must see inside a
//! compressed batch (ListOffsets by timestamp and max timestamp, key checks on compacted
//! topics, the log cleaner), and the compression the cleaner uses to re-encode a batch it
//! rewrote. The produce and fetch paths never decompress: batches are stored and served as
//! sent.
//!
//! Every codec reads through a limit, so a small batch that expands to gigabytes (a
//! decompression bomb) costs at most [`DECOMPRESSED_BATCH_BYTES_MAX`] and then gives up.
//! Kafka's framings: gzip and zstd streams, the LZ4 frame format, and Snappy in xerial's
//! block framing (or raw Snappy, which the Java client also accepts).

use crate::batch::Compression;
use std::io::Read;
use weir_model::limits::DECOMPRESSED_BATCH_BYTES_MAX;

/// xerial snappy-java's stream header: magic, then version 1 and compatible version 1.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;

/// The records of a compressed batch, or `None` when they do not decompress within the limit.
pub(crate) fn decompress(codec: Compression, data: &[u8]) -> Option<Vec<u8>> {
    decompress_bounded(codec, data, DECOMPRESSED_BATCH_BYTES_MAX)
}

fn read_bounded(reader: impl Read, limit: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    // One byte past the limit tells "exactly at the limit" from "over it".
    reader.take(limit as u64 + 1).read_to_end(&mut out).ok()?;
    (out.len() <= limit).then_some(out)
}

fn decompress_bounded(codec: Compression, data: &[u8], limit: usize) -> Option<Vec<u8>> {
    match codec {
        Compression::None => (data.len() <= limit).then(|| data.to_vec()),
        Compression::Gzip => read_bounded(flate2::read::GzDecoder::new(data), limit),
        Compression::Zstd => read_bounded(zstd::stream::read::Decoder::new(data).ok()?, limit),
        Compression::Lz4 => read_bounded(lz4::Decoder::new(data).ok()?, limit),
        Compression::Snappy => snappy(data, limit),
    }
}

fn snappy(data: &[u8], limit: usize) -> Option<Vec<u8>> {
    let raw = |block: &[u8], out: &mut Vec<u8>| -> Option<()> {
        let len = snap::raw::decompress_len(block).ok()?;
        if out.len() + len > limit {
            return None;
        }
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .ok()?;
        Some(())
    };
    let mut out = Vec::new();
    if !data.starts_with(XERIAL_MAGIC) {
        raw(data, &mut out)?;
        return Some(out);
    }
    let mut rest = data.get(XERIAL_HEADER_BYTES..)?;
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let block = rest.get(4..4 + len)?;
        raw(block, &mut out)?;
        rest = &rest[4 + len..];
    }
    Some(out)
}

/// xerial's block size, as snappy-java (and so Kafka's Java producer) writes it.
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;

/// Compresses a records section in Kafka's framing for `codec`, as Kafka's own cleaner does
/// when it rewrites a compressed batch: gzip and zstd streams; an LZ4 frame with independent
/// 64 KiB blocks and no content checksum (the only kind Kafka's Java reader,
/// `KafkaLZ4BlockInputStream`, accepts); Snappy in xerial's block framing, as the Java client
/// writes it (librdkafka and the other clients read it too).
pub(crate) fn compress(codec: Compression, data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(
                Vec::with_capacity(data.len() / 2),
                flate2::Compression::default(),
            );
            e.write_all(data)?;
            e.finish()
        }
        Compression::Zstd => zstd::encode_all(data, 3),
        Compression::Lz4 => {
            let mut e = lz4::EncoderBuilder::new()
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::with_capacity(data.len() / 2))?;
            e.write_all(data)?;
            let (out, r) = e.finish();
            r.map(|()| out)
        }
        Compression::Snappy => {
            let mut out = XERIAL_MAGIC.to_vec();
            out.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
            let mut enc = snap::raw::Encoder::new();
            for chunk in data.chunks(XERIAL_BLOCK_BYTES) {
                let block = enc.compress_vec(chunk).map_err(std::io::Error::other)?;
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn xerial(data: &[u8]) -> Vec<u8> {
        let mut out = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        for chunk in data.chunks(1000) {
            let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            out.extend_from_slice(&(block.len() as u32).to_be_bytes());
            out.extend_from_slice(&block);
        }
        out
    }

    fn lz4(data: &[u8]) -> Vec<u8> {
        let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
        e.write_all(data).unwrap();
        let (out, r) = e.finish();
        r.unwrap();
        out
    }

    /// Proves: every codec round-trips in Kafka's framing, and output past the limit is refused
    /// rather than allocated (a bomb of zeroes compresses to almost nothing).
    #[test]
    fn every_codec_decompresses_within_the_limit_and_no_further() {
        let data: Vec<u8> = (0..5000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let zstd = zstd::encode_all(&data[..], 3).unwrap();
        let raw_snappy = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        for (codec, packed) in [
            (Compression::Gzip, gzip(&data)),
            (Compression::Zstd, zstd),
            (Compression::Lz4, lz4(&data)),
            (Compression::Snappy, xerial(&data)),
            (Compression::Snappy, raw_snappy),
        ] {
            assert_eq!(
                decompress_bounded(codec, &packed, data.len()).as_deref(),
                Some(&data[..]),
                "{codec:?}"
            );
            assert_eq!(
                decompress_bounded(codec, &packed, data.len() - 1),
                None,
                "{codec:?} over the limit"
            );
            // Cut short: nothing, or (LZ4's frame decoder stops quietly) a strict prefix, which
            // the record walk then ends on. Stored batches passed their CRC, so this is only
            // about never reading past what is there.
            let cut = decompress_bounded(codec, &packed[..packed.len() / 2], data.len());
            assert!(
                cut.as_ref()
                    .is_none_or(|c| c.len() < data.len() && data.starts_with(c)),
                "{codec:?} truncated"
            );
        }
        // What the cleaner writes, every codec reads back.
        for codec in [
            Compression::Gzip,
            Compression::Zstd,
            Compression::Lz4,
            Compression::Snappy,
        ] {
            let packed = compress(codec, &data).unwrap();
            assert_eq!(
                decompress_bounded(codec, &packed, data.len()).as_deref(),
                Some(&data[..]),
                "{codec:?} written by compress"
            );
        }
        let bomb = zstd::encode_all(&vec![0u8; 10 << 20][..], 3).unwrap();
        assert!(bomb.len() < 4096);
        assert_eq!(decompress_bounded(Compression::Zstd, &bomb, 1 << 20), None);
    }
}
