//! What a follower replica decides from its leader's answers, without I/O: the broker's fetcher
//! asks the leader, reads its own log's offsets, and executes what these functions return.
//!
//! Kafka's rules (KIP-101 and KIP-279):
//! - Before copying at a new leader epoch, a follower asks the leader where the follower's
//!   latest epoch ends on the leader's log, and cuts its own log there ([`divergence`]); it
//!   asks again until the epochs agree. Never below its high watermark: a leader elected from
//!   the ISR holds every committed record, so a leader that answers lower lacks committed
//!   records, and truncating would destroy acknowledged ones (unless the topic allows unclean
//!   election, the operator's choice).
//! - A fetch the leader answers OFFSET_OUT_OF_RANGE means the follower is below the leader's
//!   log start (retention moved on: start over there) or, after a divergence check, nothing
//!   sensible: check again ([`out_of_range`]).
//! - The follower's high watermark is the leader's, capped at its own log end, and never goes
//!   back ([`high_watermark`]); its log start follows the leader's, capped at its log end
//!   ([`log_start`]).

use weir_model::{LeaderEpoch, Offset};

/// The leader's answer to "where does my latest epoch end on your log?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEnd {
    /// The largest epoch at or below the one asked about that the leader's log has; `None`
    /// when it has none (its log starts later, or is empty).
    pub epoch: Option<LeaderEpoch>,
    /// Where that epoch ends on the leader's log.
    pub end_offset: Offset,
}

/// The follower's side of a divergence check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Local {
    /// The latest epoch in the follower's log (what it asked about).
    pub latest: LeaderEpoch,
    pub log_end: Offset,
    pub high_watermark: Offset,
    /// The topic allows unclean leader election.
    pub unclean_allowed: bool,
}

/// What a divergence check decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Divergence {
    /// The logs agree up to the follower's end: fetch from there.
    Agree,
    /// Cut the log to this offset, then ask again for the epoch latest then.
    TruncateTo(Offset),
    /// The leader lacks committed records (it would cut below the high watermark): keep
    /// them, copy nothing, and say so.
    Refuse { target: Offset },
}

/// Where the follower's log diverges from the leader's, given the leader's answer.
/// `end_here(epoch)` is where `epoch` ends on the follower's own log (asked only when the
/// leader answers for an older epoch than the follower's latest).
pub fn divergence(
    local: Local,
    answer: EpochEnd,
    end_here: impl FnOnce(LeaderEpoch) -> Option<Offset>,
) -> Divergence {
    let target = match answer.epoch {
        // The leader knows no epoch at or below ours: keep what is known committed, as Kafka
        // does.
        None => local.high_watermark.min(local.log_end),
        Some(e) if e == local.latest => answer.end_offset.min(local.log_end),
        // An older epoch: cut where that epoch ends on either side, whichever is first.
        Some(e) => {
            let here = end_here(e).unwrap_or(local.log_end);
            answer.end_offset.min(here).min(local.log_end)
        }
    };
    if target < local.high_watermark && !local.unclean_allowed {
        Divergence::Refuse { target }
    } else if target < local.log_end {
        Divergence::TruncateTo(target)
    } else {
        Divergence::Agree
    }
}

/// What to do when the leader answers a fetch with OFFSET_OUT_OF_RANGE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutOfRange {
    /// Below the leader's log start (retention moved on): empty the log and start there.
    ResetTo(Offset),
    /// Anything else cannot follow a divergence check: check again.
    Recheck,
}

pub fn out_of_range(log_end: Offset, leader_log_start: Offset) -> OutOfRange {
    if log_end < leader_log_start {
        OutOfRange::ResetTo(leader_log_start)
    } else {
        OutOfRange::Recheck
    }
}

/// The follower's new high watermark from the leader's, if it moves: capped at its own log
/// end (it cannot have committed what it does not hold), and never backwards.
pub fn high_watermark(leader: Offset, log_end: Offset, current: Offset) -> Option<Offset> {
    let hw = leader.min(log_end);
    (hw > current).then_some(hw)
}

/// Where the follower's log should start to follow the leader's, if it moves: never past its
/// own log end.
pub fn log_start(leader: Offset, log_start: Offset, log_end: Offset) -> Option<Offset> {
    (leader > log_start).then(|| leader.min(log_end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(latest: i32, log_end: i64, hw: i64) -> Local {
        Local {
            latest: LeaderEpoch(latest),
            log_end: Offset(log_end),
            high_watermark: Offset(hw),
            unclean_allowed: false,
        }
    }

    fn answer(epoch: Option<i32>, end: i64) -> EpochEnd {
        EpochEnd {
            epoch: epoch.map(LeaderEpoch),
            end_offset: Offset(end),
        }
    }

    fn never(_: LeaderEpoch) -> Option<Offset> {
        panic!("the follower's own epoch end is not needed here")
    }

    /// Proves: same epoch: cut at the leader's end of it, never past our own end; agree when
    /// the leader's log reaches ours.
    #[test]
    fn the_same_epoch_cuts_at_the_leaders_end_of_it() {
        assert_eq!(
            divergence(local(3, 100, 50), answer(Some(3), 80), never),
            Divergence::TruncateTo(Offset(80))
        );
        assert_eq!(
            divergence(local(3, 100, 50), answer(Some(3), 120), never),
            Divergence::Agree
        );
        assert_eq!(
            divergence(local(3, 100, 50), answer(Some(3), 100), never),
            Divergence::Agree
        );
    }

    /// Proves: an older epoch in the answer cuts where that epoch ends on either side,
    /// whichever comes first (KIP-279).
    #[test]
    fn an_older_epoch_cuts_at_the_first_of_both_ends() {
        let here = |e: LeaderEpoch| {
            assert_eq!(e, LeaderEpoch(2));
            Some(Offset(70))
        };
        assert_eq!(
            divergence(local(3, 100, 50), answer(Some(2), 90), here),
            Divergence::TruncateTo(Offset(70))
        );
        let here = |_| Some(Offset(95));
        assert_eq!(
            divergence(local(3, 100, 50), answer(Some(2), 60), here),
            Divergence::TruncateTo(Offset(60))
        );
        // The follower's log lacks the epoch: its own end bounds the cut.
        assert_eq!(
            divergence(local(3, 100, 50), answer(Some(2), 60), |_| None),
            Divergence::TruncateTo(Offset(60))
        );
    }

    /// Proves: a leader that knows no epoch at or below ours leaves the committed prefix.
    #[test]
    fn no_common_epoch_keeps_the_committed_prefix() {
        assert_eq!(
            divergence(local(3, 100, 50), answer(None, 0), never),
            Divergence::TruncateTo(Offset(50))
        );
        // A follower whose log ends at its watermark has nothing to cut.
        assert_eq!(
            divergence(local(3, 50, 50), answer(None, 0), never),
            Divergence::Agree
        );
    }

    /// Proves: a cut below the high watermark is refused unless the topic allows unclean
    /// election; then it is made.
    #[test]
    fn a_cut_below_the_high_watermark_is_refused_unless_unclean() {
        assert_eq!(
            divergence(local(3, 100, 50), answer(Some(3), 30), never),
            Divergence::Refuse { target: Offset(30) }
        );
        let unclean = Local {
            unclean_allowed: true,
            ..local(3, 100, 50)
        };
        assert_eq!(
            divergence(unclean, answer(Some(3), 30), never),
            Divergence::TruncateTo(Offset(30))
        );
    }

    /// Proves: below the leader's log start the follower resets there; otherwise it checks
    /// divergence again.
    #[test]
    fn out_of_range_resets_only_below_the_leaders_log_start() {
        assert_eq!(
            out_of_range(Offset(10), Offset(40)),
            OutOfRange::ResetTo(Offset(40))
        );
        assert_eq!(out_of_range(Offset(40), Offset(40)), OutOfRange::Recheck);
        assert_eq!(out_of_range(Offset(90), Offset(40)), OutOfRange::Recheck);
    }

    /// Proves: the watermark is the leader's capped at the follower's end, and only moves
    /// forward; the log start follows the leader's, capped the same way.
    #[test]
    fn watermark_and_log_start_follow_the_leader_within_the_log() {
        assert_eq!(
            high_watermark(Offset(80), Offset(60), Offset(50)),
            Some(Offset(60))
        );
        assert_eq!(high_watermark(Offset(80), Offset(100), Offset(80)), None);
        assert_eq!(high_watermark(Offset(40), Offset(100), Offset(50)), None);
        assert_eq!(
            log_start(Offset(30), Offset(10), Offset(100)),
            Some(Offset(30))
        );
        assert_eq!(
            log_start(Offset(300), Offset(10), Offset(100)),
            Some(Offset(100))
        );
        assert_eq!(log_start(Offset(10), Offset(10), Offset(100)), None);
    }
}
