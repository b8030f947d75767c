//! Property test of the log against an in-memory model: random appends, reads, truncations,
//! rolls (small segments), retention, DeleteRecords and reopens (clean and crashed).

use super::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<Vec<u8>>),
    Read {
        at: prop::sample::Index,
        max_bytes: usize,
    },
    Truncate(prop::sample::Index),
    RetainBytes(u64),
    DeleteRecords(prop::sample::Index),
    Reopen {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..60), 1..5).prop_map(Op::Append),
        3 => (any::<prop::sample::Index>(), 1usize..700).prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        1 => any::<prop::sample::Index>().prop_map(Op::Truncate),
        1 => (0u64..3000).prop_map(Op::RetainBytes),
        1 => any::<prop::sample::Index>().prop_map(Op::DeleteRecords),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

/// The model: the batches still in the log (each its base offset and values) and the start.
#[derive(Default, Debug)]
struct Model {
    batches: Vec<(i64, Vec<Vec<u8>>)>,
    log_start: i64,
}

impl Model {
    fn end(&self) -> i64 {
        self.batches
            .last()
            .map_or(self.log_start, |(b, v)| b + v.len() as i64)
    }
    fn value(&self, offset: i64) -> Option<&Vec<u8>> {
        let (b, v) = self.batches.iter().rev().find(|(b, _)| *b <= offset)?;
        v.get((offset - b) as usize)
    }
    /// An offset in [log_start, end].
    fn pick(&self, i: prop::sample::Index) -> i64 {
        self.log_start + i.index((self.end() - self.log_start + 1) as usize) as i64
    }
}

fn check(log: &PartitionLog, m: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.log_start_offset(), Offset(m.log_start));
    prop_assert_eq!(log.log_end_offset(), Offset(m.end()));
    let records = read_all(log);
    prop_assert_eq!(records.len() as i64, m.end() - m.log_start);
    for (i, r) in records.iter().enumerate() {
        prop_assert_eq!(r.offset, Offset(m.log_start + i as i64));
        prop_assert_eq!(Some(&r.value), m.value(r.offset.get()));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Proves: after any sequence of operations the log holds exactly the model's records at
    /// contiguous offsets, with the right log start and end, across clean and crashed reopens.
    #[test]
    fn log_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { segment_bytes: 400, index_interval_bytes: 64, ..small_config() };
        let mut log = Some(PartitionLog::open(dir.path(), config.clone(), NOW).unwrap());
        let mut m = Model::default();
        for op in ops {
            let l = log.as_mut().unwrap();
            match op {
                Op::Append(values) => {
                    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
                    let (base, last) = append_values(l, &refs);
                    prop_assert_eq!(base, Offset(m.end()));
                    prop_assert_eq!(last.get(), m.end() + values.len() as i64 - 1);
                    m.batches.push((base.get(), values));
                }
                Op::Read { at, max_bytes } => {
                    let from = m.pick(at);
                    let r = l.read(Offset(from), max_bytes, Offset(m.end()), true).unwrap();
                    let recs = crate::testing::decode_records(&r.bytes);
                    if from == m.end() {
                        prop_assert!(recs.is_empty());
                    } else {
                        prop_assert!(!recs.is_empty());
                        prop_assert!(recs[0].offset <= Offset(from));
                        prop_assert!(recs.last().unwrap().offset >= Offset(from));
                        for r in &recs {
                            prop_assert_eq!(Some(&r.value), m.value(r.offset.get()));
                        }
                    }
                    prop_assert!(l.read(Offset(m.end() + 1), 100, Offset(m.end()), true).is_err());
                    if m.log_start > 0 {
                        prop_assert!(l.read(Offset(m.log_start - 1), 100, Offset(m.end()), true).is_err());
                    }
                }
                Op::Truncate(at) => {
                    let to = m.pick(at);
                    l.truncate_to(Offset(to)).unwrap();
                    // The batch containing `to` goes entirely.
                    if let Some(i) = m.batches.iter().position(|(b, v)| b + v.len() as i64 > to) {
                        let new_end = m.batches[i].0;
                        m.batches.truncate(i);
                        m.log_start = m.log_start.min(new_end);
                    }
                }
                Op::RetainBytes(max) => {
                    l.set_config(LogConfig { retention_bytes: Some(max), ..config.clone() });
                    let out = l.apply_retention(NOW).unwrap();
                    l.set_config(config.clone());
                    let start = out.log_start_offset.get();
                    prop_assert!(start >= m.log_start);
                    // Whole segments go, so the start lands on a batch base, or (the active
                    // segment included, as in Kafka) at the log end when everything went.
                    prop_assert!(
                        start == m.log_start
                            || start == m.end()
                            || m.batches.iter().any(|(b, _)| *b == start)
                    );
                    m.log_start = start;
                }
                Op::DeleteRecords(at) => {
                    let to = m.pick(at);
                    let start = l.delete_records_before(Offset(to)).unwrap();
                    m.log_start = m.log_start.max(to);
                    prop_assert_eq!(start, Offset(m.log_start));
                }
                Op::Reopen { clean } => {
                    let mut l = log.take().unwrap();
                    if clean { l.close().unwrap(); } else { drop(l); }
                    log = Some(PartitionLog::open(dir.path(), config.clone(), NOW).unwrap());
                }
            }
            // Forget batches wholly below the log start: the log may have deleted them.
            let start = m.log_start;
            let keep_from = m.batches.iter().position(|(b, v)| b + v.len() as i64 > start);
            match keep_from {
                Some(i) => { m.batches.drain(..i); }
                None => m.batches.clear(),
            }
            check(log.as_ref().unwrap(), &m)?;
        }
    }
}
