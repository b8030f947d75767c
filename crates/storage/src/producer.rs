//! Idempotent producer state of one partition: for each producer id, its epoch and the
//! sequence ranges of its last [`PRODUCER_BATCHES_RETAINED`] batches, so a retried batch is
//! recognised and acknowledged with its original offsets instead of being appended twice.
//!
//! Not persisted: [`crate::PartitionLog::open`] rebuilds it from the batch headers in the log,
//! which is what makes a retry after a crash safe (the retried batch may already be on disk).

use crate::batch::increment_sequence;
use crate::error::StorageError;
use std::collections::{HashMap, VecDeque};
use weir_model::limits::PRODUCER_BATCHES_RETAINED;
use weir_model::{Offset, ProducerEpoch, ProducerId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: Offset,
    pub last_offset: Offset,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    pub epoch: ProducerEpoch,
    pub batches: VecDeque<BatchMeta>,
}

impl ProducerEntry {
    fn push(&mut self, meta: BatchMeta) {
        if self.batches.len() == PRODUCER_BATCHES_RETAINED {
            self.batches.pop_front();
        }
        self.batches.push_back(meta);
    }
}

/// What the sequence check decided for one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    Accept,
    Duplicate(BatchMeta),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProducerState {
    producers: HashMap<ProducerId, ProducerEntry>,
}

/// Kafka's `inSequence`: the next sequence follows the last one, wrapping at `i32::MAX`.
fn in_sequence(last: i32, next: i32) -> bool {
    next == increment_sequence(last, 1)
}

impl ProducerState {
    pub fn get(&self, pid: ProducerId) -> Option<&ProducerEntry> {
        self.producers.get(&pid)
    }

    /// Checks a batch from `pid` against `entry` (the producer's state, including batches of
    /// the same request accepted before this one). Kafka's rules: a duplicate of a retained
    /// batch of the same epoch is acknowledged; an older epoch is fenced; a newer epoch must
    /// start at sequence 0; within an epoch sequences must follow on. A producer the log knows
    /// nothing about (new, or its batches removed by retention) may start anywhere.
    pub fn check(
        entry: Option<&ProducerEntry>,
        pid: ProducerId,
        epoch: ProducerEpoch,
        first_seq: i32,
        last_seq: i32,
    ) -> Result<Check, StorageError> {
        let Some(entry) = entry else {
            return Ok(Check::Accept);
        };
        if epoch < entry.epoch {
            return Err(StorageError::InvalidProducerEpoch {
                producer_id: pid,
                epoch,
                current: entry.epoch,
            });
        }
        if epoch > entry.epoch {
            if first_seq != 0 {
                return Err(StorageError::OutOfOrderSequence {
                    producer_id: pid,
                    epoch,
                    sequence: first_seq,
                    last_sequence: None,
                });
            }
            return Ok(Check::Accept);
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Ok(Check::Duplicate(*dup));
        }
        match entry.batches.back() {
            Some(last) if !in_sequence(last.last_seq, first_seq) => {
                Err(StorageError::OutOfOrderSequence {
                    producer_id: pid,
                    epoch,
                    sequence: first_seq,
                    last_sequence: Some(last.last_seq),
                })
            }
            _ => Ok(Check::Accept),
        }
    }

    /// Records an accepted batch (also used to replay the log at open, without checks).
    pub fn apply(&mut self, pid: ProducerId, epoch: ProducerEpoch, meta: BatchMeta) {
        apply_to(
            self.producers
                .entry(pid)
                .or_insert_with(|| new_entry(epoch)),
            epoch,
            meta,
        );
    }

    /// Records only an epoch (a control batch, which has no sequence).
    pub fn apply_epoch(&mut self, pid: ProducerId, epoch: ProducerEpoch) {
        let e = self
            .producers
            .entry(pid)
            .or_insert_with(|| new_entry(epoch));
        if epoch > e.epoch {
            *e = new_entry(epoch);
        }
    }

    /// Each producer's last batch in the log, by its last offset (the cleaner keeps those
    /// batches, so a restart can rebuild the producer's last sequence).
    pub fn last_batch_ends(&self) -> impl Iterator<Item = (ProducerId, Offset)> + '_ {
        self.producers
            .iter()
            .filter_map(|(pid, e)| e.batches.back().map(|b| (*pid, b.last_offset)))
    }

    /// Forgets batches below the log start offset, and producers left with none, so the state
    /// matches what a rebuild from the remaining log would produce.
    pub fn evict_below(&mut self, log_start: Offset) {
        self.producers.retain(|_, e| {
            e.batches.retain(|b| b.last_offset >= log_start);
            !e.batches.is_empty()
        });
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.producers.len()
    }
}

pub(crate) fn new_entry(epoch: ProducerEpoch) -> ProducerEntry {
    ProducerEntry {
        epoch,
        batches: VecDeque::with_capacity(PRODUCER_BATCHES_RETAINED),
    }
}

pub(crate) fn apply_to(e: &mut ProducerEntry, epoch: ProducerEpoch, meta: BatchMeta) {
    if epoch > e.epoch {
        *e = new_entry(epoch);
    }
    if epoch == e.epoch {
        e.push(meta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(first: i32, last: i32, base: i64) -> BatchMeta {
        BatchMeta {
            first_seq: first,
            last_seq: last,
            base_offset: Offset(base),
            last_offset: Offset(base + (last - first) as i64),
        }
    }

    #[test]
    fn sequence_rules_follow_kafka() {
        let pid = ProducerId(7);
        let mut s = ProducerState::default();
        s.apply(pid, ProducerEpoch(1), meta(0, 4, 0));
        let e = s.get(pid);
        let check = |ep: i16, f: i32, l: i32| ProducerState::check(e, pid, ProducerEpoch(ep), f, l);
        assert_eq!(check(1, 5, 9).unwrap(), Check::Accept);
        assert_eq!(check(1, 0, 4).unwrap(), Check::Duplicate(meta(0, 4, 0)));
        assert!(matches!(
            check(1, 6, 9),
            Err(StorageError::OutOfOrderSequence { .. })
        ));
        assert!(matches!(
            check(0, 5, 9),
            Err(StorageError::InvalidProducerEpoch { .. })
        ));
        assert!(matches!(
            check(2, 5, 9),
            Err(StorageError::OutOfOrderSequence { .. })
        ));
        assert_eq!(check(2, 0, 3).unwrap(), Check::Accept);
        assert_eq!(
            ProducerState::check(None, pid, ProducerEpoch(0), 77, 80).unwrap(),
            Check::Accept
        );
    }

    #[test]
    fn sequences_wrap_and_only_five_batches_are_kept() {
        let pid = ProducerId(1);
        let mut s = ProducerState::default();
        s.apply(pid, ProducerEpoch(0), meta(i32::MAX - 1, i32::MAX, 0));
        let next = ProducerState::check(s.get(pid), pid, ProducerEpoch(0), 0, 3).unwrap();
        assert_eq!(next, Check::Accept);
        for i in 0..7 {
            s.apply(
                pid,
                ProducerEpoch(0),
                meta(i * 10, i * 10 + 9, 100 + i as i64 * 10),
            );
        }
        assert_eq!(s.get(pid).unwrap().batches.len(), PRODUCER_BATCHES_RETAINED);
        s.evict_below(Offset(1_000));
        assert_eq!(s.len(), 0);
    }
}
