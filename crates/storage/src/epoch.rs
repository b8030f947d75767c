//! The leader epoch cache: for each leader epoch, the first offset written in it (Kafka's
//! `LeaderEpochFileCache`). Answers OffsetForLeaderEpoch (KIP-101), which a follower uses to
//! find where its log diverges from the leader's. Persisted by [`crate::meta::store_epochs`].

use weir_model::{LeaderEpoch, Offset};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct EpochCache {
    /// Ascending in both epoch and start offset.
    entries: Vec<(LeaderEpoch, Offset)>,
}

impl EpochCache {
    pub fn from_entries(entries: Vec<(LeaderEpoch, Offset)>) -> EpochCache {
        EpochCache { entries }
    }

    pub fn entries(&self) -> &[(LeaderEpoch, Offset)] {
        &self.entries
    }

    pub fn latest(&self) -> Option<LeaderEpoch> {
        self.entries.last().map(|e| e.0)
    }

    /// Records that `epoch` starts at `offset`. Returns whether the cache changed. An epoch not
    /// newer than the latest is ignored: its start is already known.
    pub fn assign(&mut self, epoch: LeaderEpoch, offset: Offset) -> bool {
        if self.latest().is_some_and(|l| l >= epoch) {
            return false;
        }
        // A new epoch cannot start before the previous one did; keep the start monotonic.
        let offset = self.entries.last().map_or(offset, |e| offset.max(e.1));
        self.entries.push((epoch, offset));
        true
    }

    /// Drops epochs starting at or after `end` (truncation of the log's tail).
    pub fn truncate_from_end(&mut self, end: Offset) -> bool {
        let keep = self.entries.partition_point(|e| e.1 < end);
        let changed = keep != self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// Moves the log start to `start`: epochs entirely before it are dropped, and the one
    /// containing it now starts there (Kafka's `truncateFromStart`).
    pub fn truncate_from_start(&mut self, start: Offset) -> bool {
        let before = self.entries.partition_point(|e| e.1 <= start);
        if before == 0 {
            return false;
        }
        let first_kept = before - 1;
        let changed = first_kept > 0 || self.entries[first_kept].1 != start;
        self.entries.drain(..first_kept);
        self.entries[0].1 = start;
        changed
    }

    /// KIP-101: for `requested`, the largest known epoch <= it and the start offset of the next
    /// higher epoch, or the log end offset if `requested` is the latest epoch. `None` when the
    /// requested epoch is newer than any known, or the cache is empty.
    pub fn end_offset_for(
        &self,
        requested: LeaderEpoch,
        log_end: Offset,
    ) -> Option<(LeaderEpoch, Offset)> {
        let latest = self.latest()?;
        if requested == latest {
            return Some((latest, log_end));
        }
        let higher = self.entries.partition_point(|e| e.0 <= requested);
        let next = self.entries.get(higher)?;
        if higher == 0 {
            // Older than every epoch we know: the log diverges at the first one's start.
            Some((requested, next.1))
        } else {
            Some((self.entries[higher - 1].0, next.1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> EpochCache {
        let mut c = EpochCache::default();
        c.assign(LeaderEpoch(1), Offset(0));
        c.assign(LeaderEpoch(3), Offset(10));
        c.assign(LeaderEpoch(5), Offset(20));
        c
    }

    #[test]
    fn end_offset_follows_kip_101() {
        let c = cache();
        let e = |x| c.end_offset_for(LeaderEpoch(x), Offset(30));
        assert_eq!(e(5), Some((LeaderEpoch(5), Offset(30))));
        assert_eq!(e(3), Some((LeaderEpoch(3), Offset(20))));
        assert_eq!(e(4), Some((LeaderEpoch(3), Offset(20))));
        assert_eq!(e(2), Some((LeaderEpoch(1), Offset(10))));
        assert_eq!(e(0), Some((LeaderEpoch(0), Offset(0))));
        assert_eq!(e(6), None);
        assert_eq!(
            EpochCache::default().end_offset_for(LeaderEpoch(0), Offset(0)),
            None
        );
    }

    #[test]
    fn truncation_from_both_ends() {
        let mut c = cache();
        assert!(c.truncate_from_end(Offset(20)));
        assert_eq!(c.latest(), Some(LeaderEpoch(3)));
        assert!(c.truncate_from_start(Offset(12)));
        assert_eq!(c.entries(), &[(LeaderEpoch(3), Offset(12))]);
        assert!(!c.truncate_from_start(Offset(12)));
        assert!(!c.assign(LeaderEpoch(2), Offset(15)));
    }
}
