//! One replica of a partition on one broker, as a state machine without I/O: the role metadata
//! gives it ([`Replica::on_metadata`]), the ISR proposals its leader makes
//! ([`Replica::isr_proposal`], [`Replica::on_follower_fetch`]) and how the coordinators' answer
//! settles them ([`Replica::settle`]). The broker's shell holds one behind each partition's
//! lock, reads its log's end, sends the proposals, and executes the [`RoleChange`] and
//! [`Settlement`] it gets back; the simulation does the same with its own network and clock.
//!
//! Kafka's rules kept here:
//! - A replica only moves forward in leader epochs: a lagging coordinator may stream an older
//!   state after a reconnect, and it is ignored.
//! - Taking leadership at a new epoch starts a fresh [`LeaderState`] from the log end; the shell
//!   records the epoch at that offset (KIP-101) so followers get an answer before any append.
//!   The watermark carried over is the one this broker knew, as leader or follower.
//! - One ISR proposal at a time, counted for the watermark while in flight (KIP-497). Only a
//!   refusal proves it was not applied; unanswered, it is sent again while this leadership lasts.
//!   INVALID_UPDATE_VERSION may mean an earlier attempt was applied, so the proposal stays until
//!   the metadata brings the partition's record. A broker that is fenced or shutting down is
//!   never proposed into the ISR (KIP-841): it would count for the watermark and stall acks=all.

use crate::LeaderState;
use crate::acks::Progress;
use weir_model::{BrokerId, LeaderEpoch, Offset, PartitionEpoch};

/// Below every leader epoch metadata can name: a replica that has seen no metadata yet.
const BEFORE_ANY_EPOCH: LeaderEpoch = LeaderEpoch(-1);

/// What a partition replica is doing now.
#[derive(Clone, Debug)]
pub enum Role {
    Leader(LeaderState),
    /// Copying from `leader` (None: the partition is offline, waiting for one).
    Follower {
        leader: Option<BrokerId>,
    },
}

/// A hosted partition's replication state.
#[derive(Clone, Debug)]
pub struct Replica {
    pub role: Role,
    pub epoch: LeaderEpoch,
    /// The highest offset known committed. Leaders compute it; followers learn it from the
    /// leader (capped at their own log end).
    pub high_watermark: Offset,
    /// `min.insync.replicas` of the topic.
    pub min_insync: usize,
}

/// The partition as the latest metadata records it.
#[derive(Clone, Copy, Debug)]
pub struct Assignment<'a> {
    pub leader: Option<BrokerId>,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
    pub replicas: &'a [BrokerId],
    pub isr: &'a [BrokerId],
    pub min_insync: usize,
}

/// What [`Replica::on_metadata`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleChange {
    /// The metadata is older than what this replica has seen: nothing changed.
    Stale,
    /// Still leading at the same epoch; the committed ISR was taken in.
    StillLeading { watermark_moved: bool },
    /// Leading from now on, at `epoch`: the shell records the epoch at `log_end`.
    Leads {
        epoch: LeaderEpoch,
        log_end: Offset,
        high_watermark: Offset,
    },
    /// Following `leader` (None: offline); `changed` when the leader or epoch is new.
    Follows {
        leader: Option<BrokerId>,
        changed: bool,
    },
}

/// An ISR change for the shell to send to the coordinators (AlterPartition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
    pub isr: Vec<BrokerId>,
}

/// The partition's record as the coordinators committed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub partition_epoch: PartitionEpoch,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
}

/// The coordinators' answer to a [`Proposal`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Applied; the record after the change, when the answer carries it (else the metadata
    /// watch brings it).
    Applied(Option<Committed>),
    /// Refused. `maybe_applied` for INVALID_UPDATE_VERSION: an earlier attempt may have been.
    Refused { maybe_applied: bool },
    /// No answer (transport failure, timeout): the outcome is unknown.
    Unanswered,
}

/// What the shell does after [`Replica::settle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// The proposal is no longer this leader's (the epoch or the proposal moved on): drop it.
    Gone,
    /// Send the same proposal again after a pause.
    Resend,
    /// Settled; the watermark may have moved, so wake the waiters.
    Settled,
}

/// What a follower's fetch did on the leader.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchRecorded {
    /// The high watermark moved.
    pub watermark_moved: bool,
    /// A follower that caught up, proposed back into the ISR.
    pub proposal: Option<Proposal>,
}

impl Default for Replica {
    fn default() -> Replica {
        Replica::new()
    }
}

impl Replica {
    /// A replica that has seen no metadata: following nobody.
    pub fn new() -> Replica {
        Replica {
            role: Role::Follower { leader: None },
            epoch: BEFORE_ANY_EPOCH,
            high_watermark: Offset::ZERO,
            min_insync: 1,
        }
    }

    /// What acks=all waiters and fetches watch.
    pub fn progress(&self) -> Progress {
        match &self.role {
            Role::Leader(l) => Progress {
                epoch: self.epoch,
                leader: true,
                high_watermark: l.high_watermark(),
                isr_len: l.isr().len(),
            },
            Role::Follower { .. } => Progress {
                epoch: self.epoch,
                leader: false,
                high_watermark: self.high_watermark,
                isr_len: 0,
            },
        }
    }

    pub fn leader(&self) -> Option<&LeaderState> {
        match &self.role {
            Role::Leader(l) => Some(l),
            Role::Follower { .. } => None,
        }
    }

    /// The leader this replica copies from, with its epoch.
    pub fn following(&self) -> Option<(BrokerId, LeaderEpoch)> {
        match self.role {
            Role::Follower { leader: Some(l) } => Some((l, self.epoch)),
            _ => None,
        }
    }

    /// Takes the role metadata gives broker `me`, at its epoch and never an older one.
    /// `log_end` is this replica's log end now (read under the same lock as appends).
    pub fn on_metadata(
        &mut self,
        me: BrokerId,
        a: &Assignment<'_>,
        log_end: Offset,
        now_ms: u64,
    ) -> RoleChange {
        self.min_insync = a.min_insync.max(1);
        if a.leader_epoch < self.epoch {
            return RoleChange::Stale;
        }
        let change = if a.leader == Some(me) {
            self.lead(me, a, log_end, now_ms)
        } else {
            self.follow(a)
        };
        self.epoch = a.leader_epoch;
        change
    }

    fn lead(
        &mut self,
        me: BrokerId,
        a: &Assignment<'_>,
        log_end: Offset,
        now_ms: u64,
    ) -> RoleChange {
        if let Role::Leader(l) = &mut self.role
            && l.epoch() == a.leader_epoch
        {
            let watermark_moved = l.committed(
                a.partition_epoch,
                a.replicas.to_vec(),
                a.isr.to_vec(),
                now_ms,
            );
            return RoleChange::StillLeading { watermark_moved };
        }
        // Leading again at a new epoch (a follower lost its disk): keep the watermark this
        // leadership reached, not the one from when this broker followed.
        let high_watermark = match &self.role {
            Role::Leader(l) => l.high_watermark().max(self.high_watermark),
            Role::Follower { .. } => self.high_watermark,
        };
        self.role = Role::Leader(LeaderState::new(
            me,
            a.leader_epoch,
            a.partition_epoch,
            a.replicas.to_vec(),
            a.isr.to_vec(),
            log_end,
            high_watermark,
            now_ms,
        ));
        RoleChange::Leads {
            epoch: a.leader_epoch,
            log_end,
            high_watermark,
        }
    }

    fn follow(&mut self, a: &Assignment<'_>) -> RoleChange {
        if let Role::Leader(l) = &self.role {
            self.high_watermark = l.high_watermark();
        }
        let changed = !matches!(self.role, Role::Follower { leader } if leader == a.leader)
            || self.epoch != a.leader_epoch;
        self.role = Role::Follower { leader: a.leader };
        RoleChange::Follows {
            leader: a.leader,
            changed,
        }
    }

    /// The partition is no longer hosted here: requests waiting on it learn it at once.
    pub fn retire(&mut self) {
        if let Role::Leader(l) = &self.role {
            self.high_watermark = l.high_watermark();
        }
        self.role = Role::Follower { leader: None };
    }

    /// As leader, the ISR change follower progress calls for now (shrinks, and expansions of
    /// followers at the watermark), marked in flight; `None` when there is nothing to propose
    /// or one is already in flight. `eligible(b)`: broker `b` may join (unfenced, not
    /// shutting down).
    pub fn isr_proposal(
        &mut self,
        now_ms: u64,
        lag_max_ms: u64,
        eligible: impl Fn(BrokerId) -> bool,
    ) -> Option<Proposal> {
        let leader_epoch = self.epoch;
        let Role::Leader(l) = &mut self.role else {
            return None;
        };
        let isr = l.isr_change(now_ms, lag_max_ms)?;
        propose(l, leader_epoch, isr, eligible)
    }

    /// As leader at `epoch`, records a follower's fetch from `fetch_offset`: the watermark may
    /// move, and a follower that has caught up is proposed back into the ISR at once.
    pub fn on_follower_fetch(
        &mut self,
        follower: BrokerId,
        epoch: LeaderEpoch,
        fetch_offset: Offset,
        now_ms: u64,
        eligible: impl Fn(BrokerId) -> bool,
    ) -> FetchRecorded {
        let leader_epoch = self.epoch;
        let Role::Leader(l) = &mut self.role else {
            return FetchRecorded::default();
        };
        if leader_epoch != epoch || fetch_offset > l.log_end() {
            return FetchRecorded::default();
        }
        let watermark_moved = l.on_fetch(follower, fetch_offset, now_ms);
        let proposal = l
            .expansion_after_fetch(follower)
            .and_then(|isr| propose(l, leader_epoch, isr, eligible));
        FetchRecorded {
            watermark_moved,
            proposal,
        }
    }

    /// Whether `proposal` is still this leader's: the same epoch, with it in flight.
    pub fn owns(&self, proposal: &Proposal) -> bool {
        self.epoch == proposal.leader_epoch
            && self
                .leader()
                .is_some_and(|l| l.pending() == Some(&proposal.isr[..]))
    }

    /// Settles `proposal` with the coordinators' answer.
    pub fn settle(&mut self, proposal: &Proposal, answer: Answer, now_ms: u64) -> Settlement {
        if !self.owns(proposal) {
            return Settlement::Gone;
        }
        let Role::Leader(l) = &mut self.role else {
            return Settlement::Gone;
        };
        match answer {
            Answer::Applied(Some(c)) => {
                l.committed(c.partition_epoch, c.replicas, c.isr, now_ms);
            }
            Answer::Applied(None)
            | Answer::Refused {
                maybe_applied: true,
            } => {}
            Answer::Refused {
                maybe_applied: false,
            } => l.proposal_failed(),
            Answer::Unanswered => return Settlement::Resend,
        }
        Settlement::Settled
    }
}

/// Marks `proposed` in flight once the ineligible joiners are dropped, unless nothing is then
/// left to change.
fn propose(
    l: &mut LeaderState,
    leader_epoch: LeaderEpoch,
    proposed: Vec<BrokerId>,
    eligible: impl Fn(BrokerId) -> bool,
) -> Option<Proposal> {
    let isr = eligible_isr(l.isr(), proposed, eligible)?;
    l.propose(isr.clone());
    Some(Proposal {
        leader_epoch,
        partition_epoch: l.partition_epoch(),
        isr,
    })
}

/// `proposed` without the joiners that may not join (fenced or shutting down, Kafka's KIP-841
/// eligibility). A dead follower that was caught up when it died still looks caught up until
/// `replica.lag.time.max.ms` passes; proposing it would count it for the watermark and stall
/// acks=all for that long. `None` when nothing is left to change.
pub fn eligible_isr(
    current: &[BrokerId],
    proposed: Vec<BrokerId>,
    eligible: impl Fn(BrokerId) -> bool,
) -> Option<Vec<BrokerId>> {
    let isr: Vec<BrokerId> = proposed
        .into_iter()
        .filter(|&b| current.contains(&b) || eligible(b))
        .collect();
    let same = isr.len() == current.len() && isr.iter().all(|b| current.contains(b));
    (!same).then_some(isr)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: BrokerId = BrokerId(1);

    fn ids(v: &[i32]) -> Vec<BrokerId> {
        v.iter().map(|&b| BrokerId(b)).collect()
    }

    fn assignment<'a>(
        leader: i32,
        epoch: i32,
        pe: i32,
        replicas: &'a [BrokerId],
        isr: &'a [BrokerId],
    ) -> Assignment<'a> {
        Assignment {
            leader: Some(BrokerId(leader)),
            leader_epoch: LeaderEpoch(epoch),
            partition_epoch: PartitionEpoch(pe),
            replicas,
            isr,
            min_insync: 2,
        }
    }

    #[test]
    fn an_older_epoch_changes_nothing() {
        let (r3, isr) = (ids(&[1, 2, 3]), ids(&[1, 2, 3]));
        let mut r = Replica::new();
        r.on_metadata(ME, &assignment(2, 5, 0, &r3, &isr), Offset(10), 0);
        let change = r.on_metadata(ME, &assignment(1, 4, 0, &r3, &isr), Offset(10), 0);
        assert_eq!(change, RoleChange::Stale);
        assert_eq!(r.following(), Some((BrokerId(2), LeaderEpoch(5))));
    }

    #[test]
    fn leading_again_keeps_the_watermark_the_leadership_reached() {
        let (r3, isr) = (ids(&[1, 2]), ids(&[1, 2]));
        let mut r = Replica::new();
        r.on_metadata(ME, &assignment(1, 1, 0, &r3, &isr), Offset(0), 0);
        let Role::Leader(l) = &mut r.role else {
            panic!("not leading")
        };
        l.on_append(Offset(5));
        l.on_fetch(BrokerId(2), Offset(5), 0);
        assert_eq!(l.high_watermark(), Offset(5));
        let change = r.on_metadata(ME, &assignment(1, 2, 1, &r3, &isr), Offset(5), 0);
        assert_eq!(
            change,
            RoleChange::Leads {
                epoch: LeaderEpoch(2),
                log_end: Offset(5),
                high_watermark: Offset(5)
            }
        );
    }

    #[test]
    fn a_leader_demoted_follows_with_its_watermark() {
        let (r3, isr) = (ids(&[1, 2]), ids(&[1, 2]));
        let mut r = Replica::new();
        r.on_metadata(ME, &assignment(1, 1, 0, &r3, &isr), Offset(0), 0);
        if let Role::Leader(l) = &mut r.role {
            l.on_append(Offset(3));
            l.on_fetch(BrokerId(2), Offset(3), 0);
        }
        let change = r.on_metadata(ME, &assignment(2, 2, 1, &r3, &isr), Offset(3), 0);
        assert_eq!(
            change,
            RoleChange::Follows {
                leader: Some(BrokerId(2)),
                changed: true
            }
        );
        assert_eq!(r.high_watermark, Offset(3));
        assert!(!r.progress().leader);
    }

    #[test]
    fn an_unanswered_proposal_is_resent_until_the_leadership_moves() {
        let (r3, isr) = (ids(&[1, 2, 3]), ids(&[1, 2, 3]));
        let mut r = Replica::new();
        r.on_metadata(ME, &assignment(1, 1, 0, &r3, &isr), Offset(0), 0);
        let p = r.isr_proposal(60_000, 30_000, |_| true).expect("a shrink");
        assert_eq!(p.isr, ids(&[1]));
        assert_eq!(
            r.isr_proposal(60_000, 30_000, |_| true),
            None,
            "one at a time"
        );
        assert_eq!(r.settle(&p, Answer::Unanswered, 0), Settlement::Resend);
        r.on_metadata(ME, &assignment(2, 2, 1, &r3, &isr), Offset(0), 0);
        assert_eq!(r.settle(&p, Answer::Unanswered, 0), Settlement::Gone);
    }

    #[test]
    fn only_a_refusal_that_proves_nothing_was_applied_drops_the_proposal() {
        let (r3, isr) = (ids(&[1, 2, 3]), ids(&[1, 2, 3]));
        let mut r = Replica::new();
        r.on_metadata(ME, &assignment(1, 1, 0, &r3, &isr), Offset(0), 0);
        let p = r.isr_proposal(60_000, 30_000, |_| true).expect("a shrink");
        let stale = Answer::Refused {
            maybe_applied: true,
        };
        assert_eq!(r.settle(&p, stale, 0), Settlement::Settled);
        assert!(r.owns(&p), "INVALID_UPDATE_VERSION keeps it in flight");
        let refused = Answer::Refused {
            maybe_applied: false,
        };
        assert_eq!(r.settle(&p, refused, 0), Settlement::Settled);
        assert!(!r.owns(&p));
    }

    #[test]
    fn a_caught_up_follower_that_is_shutting_down_is_not_proposed() {
        let (r3, isr) = (ids(&[1, 2, 3]), ids(&[1, 2]));
        let mut r = Replica::new();
        r.on_metadata(ME, &assignment(1, 1, 0, &r3, &isr), Offset(0), 0);
        let out = r.on_follower_fetch(BrokerId(3), LeaderEpoch(1), Offset(0), 0, |b| {
            b != BrokerId(3)
        });
        assert_eq!(out.proposal, None);
        let out = r.on_follower_fetch(BrokerId(3), LeaderEpoch(1), Offset(0), 0, |_| true);
        assert_eq!(out.proposal.map(|p| p.isr), Some(ids(&[1, 2, 3])));
    }
}
