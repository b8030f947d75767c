//! What validating a client's compressed records at produce costs. Not a test: run with
//!
//! ```text
//! CARGO_TARGET_DIR=/work/tgt-storage cargo test --release -p weir-storage \
//!     --test validation_bench -- --ignored --nocapture
//! ```
//!
//! 200k records (about 100 bytes each, text-like) in batches of 16 KiB before compression,
//! per codec. Prints MB/s of uncompressed record bytes for:
//! - `header+crc`: the checks made before (`validate_stored_batches`: header, CRC-32C);
//! - `full`: `validate_batches`, which now also decompresses and walks every record;
//! - `append`: `PartitionLog::append` end to end (it runs `full`), page cache only;
//! - `read crc`: CRC-32C over the stored bytes, what a read now adds (MB/s of stored bytes).
//!
//! The append cost before the change is `append` minus the difference of the first two.

use std::time::{Duration, Instant};
use weir_model::{LeaderEpoch, Timestamp};
use weir_storage::testing::{BatchSpec, encode_batch};
use weir_storage::{
    Compression, LogConfig, PartitionLog, validate_batches, validate_stored_batches,
};

const RECORDS: usize = 200_000;
const BATCH_RECORD_BYTES: usize = 16 * 1024;
const ROUNDS: usize = 5;

fn value(i: usize) -> Vec<u8> {
    format!(
        r#"{{"id":{i},"user":"u{}","event":"click","ts":{},"path":"/p/{}/{}"}}"#,
        i % 9973,
        1_700_000_000_000u64 + (i as u64 * 7919) % 100_000,
        i % 97,
        (i * 31) % 1013
    )
    .into_bytes()
}

/// The batches, and the uncompressed bytes of their record values.
fn batches(codec: Compression) -> (Vec<Vec<u8>>, usize) {
    let mut out = Vec::new();
    let mut raw = 0;
    let mut i = 0;
    while i < RECORDS {
        let mut values = Vec::new();
        let mut bytes = 0;
        while i < RECORDS && bytes < BATCH_RECORD_BYTES {
            let v = value(i);
            bytes += v.len();
            values.push(v);
            i += 1;
        }
        raw += bytes;
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        let spec = BatchSpec {
            compression: codec,
            ..BatchSpec::default()
        };
        out.push(encode_batch(&spec, &refs));
    }
    (out, raw)
}

fn best_of(mut f: impl FnMut() -> Duration) -> Duration {
    (0..ROUNDS).map(|_| f()).min().unwrap_or_default()
}

fn mb_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn compressed_validation_cost() {
    println!(
        "{:<8} {:>9} {:>8} {:>14} {:>10} {:>12} {:>12}",
        "codec", "batches", "ratio", "header+crc", "full", "append", "read crc"
    );
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let (bs, raw) = batches(codec);
        let stored: usize = bs.iter().map(Vec::len).sum();
        let old = best_of(|| {
            let t = Instant::now();
            for b in &bs {
                validate_stored_batches(b, u32::MAX).expect("valid");
            }
            t.elapsed()
        });
        let new = best_of(|| {
            let t = Instant::now();
            for b in &bs {
                validate_batches(b, u32::MAX).expect("valid");
            }
            t.elapsed()
        });
        let append = best_of(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut log =
                PartitionLog::open(dir.path(), LogConfig::default(), Timestamp(0)).expect("open");
            let mut copies = bs.clone();
            let t = Instant::now();
            for b in &mut copies {
                log.append(b, LeaderEpoch(0), Timestamp(1)).expect("append");
            }
            t.elapsed()
        });
        // What a read now adds: one CRC-32C over every stored byte it serves.
        let crc = best_of(|| {
            let t = Instant::now();
            let mut x = 0u32;
            for b in &bs {
                x ^= crc32c::crc32c(&b[21..]);
            }
            std::hint::black_box(x);
            t.elapsed()
        });
        println!(
            "{:<8} {:>9} {:>8.2} {:>9.0} MB/s {:>5.0} MB/s {:>7.0} MB/s {:>7.0} MB/s",
            format!("{codec:?}"),
            bs.len(),
            raw as f64 / stored as f64,
            mb_per_s(raw, old),
            mb_per_s(raw, new),
            mb_per_s(raw, append),
            mb_per_s(stored, crc),
        );
    }
}
