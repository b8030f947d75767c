//! Both sides of a partition's replication, as state machines without I/O:
//! - [`LeaderState`] (this file): what a partition's leader knows about its followers, and what
//!   it decides from that;
//! - [`follower`]: what a follower decides from its leader's answers (divergence, truncation,
//!   out-of-range, watermark, log start);
//! - [`replica`]: one replica's role as metadata changes it, and its ISR proposals from
//!   proposal to settlement;
//! - [`acks`]: when an acks=all produce is answered.
//!
//! The broker's async shell and the simulation (`tests/simulation.rs`) both drive these types
//! and execute what they return.
//!
//! No I/O and no clocks: the time comes in as milliseconds. The broker feeds [`LeaderState`]
//! appends, follower fetches and committed metadata, and asks it for the high watermark and for
//! the ISR change to propose. Kafka's rules:
//!
//! - A follower's fetch offset is its log end offset: everything before it is on the follower.
//! - The high watermark is the smallest log end offset over the *maximal* ISR: the committed
//!   ISR plus any members of a proposal still in flight (KIP-497). A proposed expansion counts
//!   at once (the new member has the records); a proposed shrink does not count until it is
//!   committed, so the watermark never moves on an ISR the coordinator has not accepted.
//!   The watermark never moves backwards.
//! - A member falls out of the ISR when it has not been caught up to the leader's log end
//!   for `replica.lag.time.max.ms`. A replica joins when its log end offset has reached the
//!   high watermark and the offset where this leader's epoch began (so it holds every record
//!   of earlier epochs that could have been acknowledged).
//! - One ISR proposal at a time; the broker sends it to the coordinator (AlterPartition) and
//!   reports back with [`LeaderState::committed`] or [`LeaderState::proposal_failed`].

pub mod acks;
pub mod follower;
pub mod replica;

use std::collections::BTreeMap;
use weir_model::{BrokerId, LeaderEpoch, Offset, PartitionEpoch};

/// What the leader knows of one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The follower's log end offset, from its latest fetch; `None` before its first fetch in
    /// this leader epoch.
    pub log_end: Option<Offset>,
    /// When the follower was last caught up with the leader's log end.
    pub caught_up_ms: u64,
    /// The leader's log end and the time at the follower's previous fetch (Kafka's rule: a
    /// fetch from at least the leader's log end *as of the previous fetch* proves the follower
    /// was caught up then, even while new records keep arriving).
    pub previous_fetch: Option<(Offset, u64)>,
}

impl Progress {
    fn new(now_ms: u64) -> Progress {
        Progress {
            log_end: None,
            caught_up_ms: now_ms,
            previous_fetch: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct LeaderState {
    me: BrokerId,
    epoch: LeaderEpoch,
    partition_epoch: PartitionEpoch,
    replicas: Vec<BrokerId>,
    isr: Vec<BrokerId>,
    pending: Option<Vec<BrokerId>>,
    epoch_start: Offset,
    log_end: Offset,
    high_watermark: Offset,
    followers: BTreeMap<BrokerId, Progress>,
}

impl LeaderState {
    /// This broker has just become leader at `epoch`, with its log ending at `log_end` and the
    /// high watermark it knew as a follower. Followers in the ISR are given a full lag period
    /// from `now_ms` to show up.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: BrokerId,
        epoch: LeaderEpoch,
        partition_epoch: PartitionEpoch,
        replicas: Vec<BrokerId>,
        isr: Vec<BrokerId>,
        log_end: Offset,
        high_watermark: Offset,
        now_ms: u64,
    ) -> LeaderState {
        let followers = replicas
            .iter()
            .filter(|&&b| b != me)
            .map(|&b| (b, Progress::new(now_ms)))
            .collect();
        let mut s = LeaderState {
            me,
            epoch,
            partition_epoch,
            replicas,
            isr,
            pending: None,
            epoch_start: log_end,
            log_end,
            high_watermark: high_watermark.min(log_end),
            followers,
        };
        s.recompute();
        s
    }

    pub fn epoch(&self) -> LeaderEpoch {
        self.epoch
    }
    pub fn partition_epoch(&self) -> PartitionEpoch {
        self.partition_epoch
    }
    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }
    pub fn log_end(&self) -> Offset {
        self.log_end
    }
    /// The committed ISR: what `min.insync.replicas` is checked against.
    pub fn isr(&self) -> &[BrokerId] {
        &self.isr
    }
    pub fn replicas(&self) -> &[BrokerId] {
        &self.replicas
    }
    pub fn pending(&self) -> Option<&[BrokerId]> {
        self.pending.as_deref()
    }
    pub fn follower(&self, id: BrokerId) -> Option<Progress> {
        self.followers.get(&id).copied()
    }

    /// The leader appended; returns whether the high watermark moved.
    pub fn on_append(&mut self, log_end: Offset) -> bool {
        self.log_end = self.log_end.max(log_end);
        self.recompute()
    }

    /// The leader's log was truncated or reset below what it had (DeleteRecords does not do
    /// this; a reset of an empty log may).
    pub fn on_log_end_reset(&mut self, log_end: Offset) {
        self.log_end = log_end;
        self.high_watermark = self.high_watermark.min(log_end);
    }

    /// A follower fetched from `fetch_offset`. Returns whether the high watermark moved.
    /// Fetches from brokers that are not replicas are ignored.
    pub fn on_fetch(&mut self, follower: BrokerId, fetch_offset: Offset, now_ms: u64) -> bool {
        let log_end = self.log_end;
        let Some(p) = self.followers.get_mut(&follower) else {
            return false;
        };
        p.log_end = Some(fetch_offset);
        if fetch_offset >= log_end {
            p.caught_up_ms = now_ms;
        } else if let Some((previous_end, previous_ms)) = p.previous_fetch
            && fetch_offset >= previous_end
        {
            p.caught_up_ms = p.caught_up_ms.max(previous_ms);
        }
        p.previous_fetch = Some((log_end, now_ms));
        self.recompute()
    }

    /// The ISR (and possibly replicas) as the coordinator committed them, within this epoch.
    ///
    /// A record at the partition epoch this leader already has is the same record again (the
    /// broker hands every partition over on every metadata update): it says nothing about the
    /// proposal in flight, which stays, unless the record is that proposal (an AlterPartition
    /// that changed nothing).
    pub fn committed(
        &mut self,
        partition_epoch: PartitionEpoch,
        replicas: Vec<BrokerId>,
        isr: Vec<BrokerId>,
        now_ms: u64,
    ) -> bool {
        if partition_epoch < self.partition_epoch {
            return false;
        }
        if partition_epoch == self.partition_epoch
            && self
                .pending
                .as_ref()
                .is_some_and(|p| p.len() != isr.len() || !p.iter().all(|b| isr.contains(b)))
        {
            return false;
        }
        self.partition_epoch = partition_epoch;
        for &b in &replicas {
            if b != self.me {
                self.followers
                    .entry(b)
                    .or_insert_with(|| Progress::new(now_ms));
            }
        }
        self.followers.retain(|b, _| replicas.contains(b));
        self.replicas = replicas;
        self.isr = isr;
        self.pending = None;
        self.recompute()
    }

    /// An AlterPartition failed or was refused: the proposal is dropped, the next tick may
    /// propose again.
    pub fn proposal_failed(&mut self) {
        self.pending = None;
    }

    /// The ISR change to propose now, if any (and none is in flight). The caller sends it and
    /// marks it with [`LeaderState::propose`].
    pub fn isr_change(&self, now_ms: u64, lag_max_ms: u64) -> Option<Vec<BrokerId>> {
        if self.pending.is_some() {
            return None;
        }
        let keep = |b: &BrokerId| {
            *b == self.me
                || self
                    .followers
                    .get(b)
                    .is_some_and(|p| now_ms.saturating_sub(p.caught_up_ms) <= lag_max_ms)
        };
        // At or past the watermark *now*: proposed, it counts for the watermark at once, so
        // the watermark can never pass it. Under steady writes a follower is rarely at the
        // watermark at an arbitrary moment, so the broker also asks right after each fetch
        // ([`LeaderState::expansion_after_fetch`]), when it is, as Kafka does.
        let joins = |b: &BrokerId| {
            self.followers.get(b).is_some_and(|p| {
                p.log_end
                    .is_some_and(|e| e >= self.high_watermark && e >= self.epoch_start)
            })
        };
        let new: Vec<BrokerId> = self
            .replicas
            .iter()
            .filter(|b| {
                if self.isr.contains(b) {
                    keep(b)
                } else {
                    joins(b)
                }
            })
            .copied()
            .collect();
        let same = new.len() == self.isr.len() && new.iter().all(|b| self.isr.contains(b));
        (!same && new.contains(&self.me)).then_some(new)
    }

    /// Right after [`LeaderState::on_fetch`] from `follower`: the ISR with it added, if it is
    /// out of the ISR, now at or past the watermark and this epoch's start, and no proposal is
    /// in flight. The caller proposes it at once, under the same lock.
    pub fn expansion_after_fetch(&self, follower: BrokerId) -> Option<Vec<BrokerId>> {
        if self.pending.is_some() || self.isr.contains(&follower) {
            return None;
        }
        let p = self.followers.get(&follower)?;
        let e = p.log_end?;
        if e < self.high_watermark || e < self.epoch_start {
            return None;
        }
        Some(
            self.replicas
                .iter()
                .filter(|b| self.isr.contains(b) || **b == follower)
                .copied()
                .collect(),
        )
    }

    pub fn propose(&mut self, isr: Vec<BrokerId>) {
        self.pending = Some(isr);
        self.recompute();
    }

    /// Members the high watermark waits for: the committed ISR plus proposed additions.
    fn maximal_isr(&self) -> impl Iterator<Item = BrokerId> + '_ {
        let extra = self
            .pending
            .iter()
            .flatten()
            .filter(|b| !self.isr.contains(b));
        self.isr.iter().chain(extra).copied()
    }

    fn recompute(&mut self) -> bool {
        let mut hw = self.log_end;
        for b in self.maximal_isr() {
            if b == self.me {
                continue;
            }
            match self.followers.get(&b).and_then(|p| p.log_end) {
                Some(e) => hw = hw.min(e),
                // A member that has not fetched in this epoch holds the watermark where it is.
                None => hw = hw.min(self.high_watermark),
            }
        }
        if hw > self.high_watermark {
            self.high_watermark = hw;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: BrokerId = BrokerId(1);
    const B: BrokerId = BrokerId(2);
    const C: BrokerId = BrokerId(3);

    fn leader(isr: Vec<BrokerId>) -> LeaderState {
        LeaderState::new(
            A,
            LeaderEpoch(1),
            PartitionEpoch(0),
            vec![A, B, C],
            isr,
            Offset(10),
            Offset(10),
            0,
        )
    }

    #[test]
    fn the_watermark_waits_for_every_isr_member() {
        let mut l = leader(vec![A, B, C]);
        assert!(!l.on_append(Offset(15)));
        assert_eq!(l.high_watermark(), Offset(10));
        l.on_fetch(B, Offset(15), 1);
        assert_eq!(l.high_watermark(), Offset(10), "C has not fetched");
        assert!(l.on_fetch(C, Offset(12), 1));
        assert_eq!(l.high_watermark(), Offset(12));
        l.on_fetch(C, Offset(15), 2);
        assert_eq!(l.high_watermark(), Offset(15));
    }

    #[test]
    fn a_lagging_member_is_shrunk_and_the_watermark_moves_only_once_committed() {
        let mut l = leader(vec![A, B, C]);
        l.on_append(Offset(20));
        l.on_fetch(B, Offset(20), 100);
        assert_eq!(l.isr_change(100, 1_000), None);
        l.on_fetch(B, Offset(20), 1_100);
        let shrink = l.isr_change(1_200, 1_000).unwrap();
        assert_eq!(shrink, vec![A, B]);
        l.propose(shrink.clone());
        assert_eq!(
            l.high_watermark(),
            Offset(10),
            "pending shrink does not count"
        );
        assert_eq!(l.isr_change(1_300, 1_000), None, "one proposal at a time");
        assert!(l.committed(PartitionEpoch(1), vec![A, B, C], shrink, 1_300));
        assert_eq!(l.high_watermark(), Offset(20));
    }

    #[test]
    fn a_caught_up_replica_joins_and_counts_at_once() {
        let mut l = leader(vec![A, B]);
        l.on_append(Offset(20));
        l.on_fetch(B, Offset(20), 1);
        assert_eq!(l.high_watermark(), Offset(20));
        l.on_append(Offset(30));
        l.on_fetch(C, Offset(15), 2);
        assert_eq!(l.isr_change(2, 1_000), None, "C is below the watermark");
        l.on_fetch(C, Offset(25), 3);
        let grow = l.isr_change(3, 1_000).unwrap();
        assert_eq!(grow, vec![A, B, C]);
        l.propose(grow);
        l.on_fetch(B, Offset(30), 4);
        assert_eq!(
            l.high_watermark(),
            Offset(25),
            "the proposed member already counts"
        );
    }

    #[test]
    fn a_follower_under_steady_writes_is_caught_up_by_the_previous_fetch_rule() {
        let mut l = leader(vec![A, B, C]);
        // Every fetch from B trails the newest append, but reaches the log end the leader had
        // at B's previous fetch: B stays in sync.
        for i in 0..50u64 {
            let end = Offset(10 + i as i64 * 2);
            l.on_append(end.plus(1));
            l.on_fetch(B, end, i * 100);
            l.on_fetch(C, end.plus(1), i * 100);
        }
        assert_eq!(l.isr_change(5_000, 1_000), None, "B is not shrunk");
    }

    #[test]
    fn a_returning_follower_joins_right_after_a_fetch_at_the_watermark() {
        let mut l = leader(vec![A, B]);
        l.on_append(Offset(30));
        l.on_fetch(B, Offset(30), 1);
        l.on_fetch(C, Offset(20), 1);
        assert_eq!(l.expansion_after_fetch(C), None, "below the watermark");
        l.on_fetch(C, Offset(30), 2);
        let grow = l.expansion_after_fetch(C).unwrap();
        assert_eq!(grow, vec![A, B, C]);
        l.propose(grow);
        l.on_append(Offset(40));
        l.on_fetch(B, Offset(40), 3);
        assert_eq!(
            l.high_watermark(),
            Offset(30),
            "the joining member holds the watermark"
        );
    }

    #[test]
    fn a_repeated_record_keeps_the_proposal_in_flight() {
        let mut l = leader(vec![A, B]);
        l.on_append(Offset(20));
        l.on_fetch(B, Offset(20), 1);
        l.on_fetch(C, Offset(20), 1);
        let grow = l.isr_change(1, 1_000).unwrap();
        l.propose(grow.clone());
        // A metadata update about something else repeats this partition's record.
        assert!(!l.committed(PartitionEpoch(0), vec![A, B, C], vec![A, B], 2));
        assert_eq!(l.pending(), Some(&grow[..]));
        l.on_append(Offset(30));
        l.on_fetch(B, Offset(30), 3);
        assert_eq!(
            l.high_watermark(),
            Offset(20),
            "C may join any moment: the watermark waits for it"
        );
        // The coordinator applies the proposal.
        l.committed(PartitionEpoch(1), vec![A, B, C], grow, 4);
        assert_eq!(l.pending(), None);
        assert_eq!(l.isr(), &[A, B, C]);
    }

    #[test]
    fn a_new_leaders_watermark_waits_for_members_to_fetch() {
        let mut l = LeaderState::new(
            A,
            LeaderEpoch(2),
            PartitionEpoch(3),
            vec![A, B, C],
            vec![A, B],
            Offset(50),
            Offset(40),
            0,
        );
        assert_eq!(l.high_watermark(), Offset(40));
        l.on_append(Offset(55));
        assert_eq!(l.high_watermark(), Offset(40));
        l.on_fetch(B, Offset(55), 1);
        assert_eq!(l.high_watermark(), Offset(55));
        // C must reach the epoch start (50) and the watermark to join.
        l.on_fetch(C, Offset(45), 1);
        assert_eq!(l.isr_change(1, 1_000), None);
    }

    #[test]
    fn a_single_replica_commits_on_append() {
        let mut l = LeaderState::new(
            A,
            LeaderEpoch(0),
            PartitionEpoch(0),
            vec![A],
            vec![A],
            Offset(0),
            Offset(0),
            0,
        );
        assert!(l.on_append(Offset(3)));
        assert_eq!(l.high_watermark(), Offset(3));
        assert_eq!(l.isr_change(10_000_000, 1), None);
    }

    proptest::proptest! {
        /// Whatever happens, the watermark never passes an ISR member's log end (so every
        /// record below it is on every member) and never moves backwards.
        #[test]
        fn the_watermark_is_safe_and_monotonic(ops in proptest::collection::vec((0u8..4, 0u8..3, 0i64..40), 1..80)) {
            let mut l = leader(vec![A, B, C]);
            let mut ends = BTreeMap::from([(B, Offset(10)), (C, Offset(10))]);
            let mut now = 0u64;
            let mut last_hw = l.high_watermark();
            for (op, who, n) in ops {
                now += 10;
                let who = [A, B, C][who as usize];
                match op {
                    0 => { let e = l.log_end().plus(n % 5); l.on_append(e); }
                    1 if who != A => {
                        let e = Offset(n.min(l.log_end().get()).max(ends[&who].get()));
                        ends.insert(who, e);
                        l.on_fetch(who, e, now);
                        if let Some(isr) = l.expansion_after_fetch(who) { l.propose(isr); }
                    }
                    2 => if let Some(isr) = l.isr_change(now, 50) { l.propose(isr); },
                    _ => if let Some(p) = l.pending().map(|p| p.to_vec()) {
                        let pe = PartitionEpoch(l.partition_epoch().get() + 1);
                        if n % 2 == 0 { l.committed(pe, vec![A, B, C], p, now); } else { l.proposal_failed(); }
                    },
                }
                proptest::prop_assert!(l.high_watermark() >= last_hw);
                last_hw = l.high_watermark();
                for b in l.isr().to_vec() {
                    if b != A {
                        proptest::prop_assert!(l.high_watermark() <= ends[&b].max(Offset(10)));
                    }
                }
            }
        }
    }
}
