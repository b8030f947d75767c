//! The acks=all predicate: when a produce waiting for its ISR is answered, and how.
//!
//! A batch appended by a leader at `epoch`, up to offset `last`, is acknowledged once the
//! high watermark passes `last` at that same epoch, with at least `min.insync.replicas`
//! members in the ISR then (else NOT_ENOUGH_REPLICAS_AFTER_APPEND: written, but not as safely
//! as asked). Any other epoch fails the wait, even a later one of the same broker: the batch
//! may have been truncated by another leader in between, and a watermark past `last` would
//! then count other records.

use weir_model::{LeaderEpoch, Offset};

/// What acks=all waiters watch of a partition replica; changes whenever the watermark, the
/// epoch or the role does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub epoch: LeaderEpoch,
    pub leader: bool,
    pub high_watermark: Offset,
    pub isr_len: usize,
}

/// Why a wait ended without an acknowledgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortfall {
    /// The replica no longer leads at the epoch the batch was appended at.
    LeadershipMoved,
    /// Replicated, but the ISR is smaller than `min.insync.replicas`.
    NotEnoughReplicas { isr: usize },
}

/// Where a wait stands given the partition's progress: `None` while it must go on waiting.
/// `min_insync` is asked only once the watermark has passed (the broker reads it under the
/// replica lock).
pub fn outcome(
    now: &Progress,
    last: Offset,
    epoch: LeaderEpoch,
    min_insync: impl FnOnce() -> usize,
) -> Option<Result<(), Shortfall>> {
    if !now.leader || now.epoch != epoch {
        return Some(Err(Shortfall::LeadershipMoved));
    }
    if now.high_watermark > last {
        if now.isr_len < min_insync() {
            return Some(Err(Shortfall::NotEnoughReplicas { isr: now.isr_len }));
        }
        return Some(Ok(()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(epoch: i32, leader: bool, hw: i64, isr: usize) -> Progress {
        Progress {
            epoch: LeaderEpoch(epoch),
            leader,
            high_watermark: Offset(hw),
            isr_len: isr,
        }
    }

    /// Proves: a batch is acknowledged once the watermark passes its last offset at its own
    /// epoch, with enough in-sync replicas; it waits below; it fails on any other epoch or
    /// role, and with too small an ISR.
    #[test]
    fn acks_all_waits_for_the_watermark_at_the_batchs_epoch() {
        let (last, epoch) = (Offset(9), LeaderEpoch(4));
        assert_eq!(outcome(&progress(4, true, 9, 3), last, epoch, || 2), None);
        assert_eq!(
            outcome(&progress(4, true, 10, 3), last, epoch, || 2),
            Some(Ok(()))
        );
        assert_eq!(
            outcome(&progress(4, true, 10, 1), last, epoch, || 2),
            Some(Err(Shortfall::NotEnoughReplicas { isr: 1 }))
        );
        assert_eq!(
            outcome(&progress(5, true, 10, 3), last, epoch, || 2),
            Some(Err(Shortfall::LeadershipMoved))
        );
        assert_eq!(
            outcome(&progress(4, false, 10, 3), last, epoch, || 2),
            Some(Err(Shortfall::LeadershipMoved))
        );
    }

    /// Proves: `min.insync.replicas` is not read while the watermark is below the batch.
    #[test]
    fn min_insync_is_read_only_once_replicated() {
        let asked = |_: ()| -> usize { panic!("read too early") };
        assert_eq!(
            outcome(&progress(4, true, 5, 3), Offset(9), LeaderEpoch(4), || {
                asked(())
            }),
            None
        );
    }
}
