//! A consumer group under the KIP-848 protocol (`group.protocol=consumer`): the coordinator
//! assigns partitions itself and members converge to that target through heartbeats.
//!
//! ```text
//! member heartbeat (epoch, subscription, owned partitions)
//!   │
//!   ├─ subscription or topic metadata changed ─▶ group epoch + 1
//!   ├─ group epoch > assignment epoch ─▶ compute the target assignment (server side)
//!   └─ reconcile the member towards its target:
//!        1. partitions it holds that are no longer its own: ask it to revoke them
//!           (its epoch stays until it reports them gone);
//!        2. then it moves to the target epoch and gets the new partitions that no other
//!           member still holds (the rest follow once released).
//! ```
//!
//! A partition is therefore never given to a member while another member may still be
//! consuming it — the same guarantee the classic protocol's eager rebalance gives, without
//! stopping the whole group. Member epochs fence zombies: a heartbeat or commit with an epoch
//! that is neither the member's current nor its previous one is refused.
//!
//! The assignor is a deterministic range assignor per topic (members subscribed to a topic,
//! ordered by id, take contiguous ranges), the `range` of KIP-848's server-side assignors.
//! Group state is kept in memory only: after a coordinator failover members get
//! UNKNOWN_MEMBER_ID and rejoin (their committed offsets are durable like every other
//! commit).

use crate::GroupError;
use std::collections::{BTreeMap, BTreeSet};

/// A topic as the coordinator sees it when assigning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMeta {
    pub id: [u8; 16],
    pub name: String,
    pub partitions: i32,
}

/// Partitions by topic id.
pub type Assignment = BTreeMap<[u8; 16], BTreeSet<i32>>;

#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    pub session_timeout_ms: i32,
    pub heartbeat_interval_ms: i32,
    pub max_size: usize,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            max_size: usize::MAX,
        }
    }
}

/// What a heartbeat's member epoch says. KIP-848 numbers it (0 joins, -1 leaves, -2 a static
/// member leaves for a restart); the broker maps Kafka's numbers at the protocol edge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemberEpoch {
    #[default]
    Join,
    Leave,
    /// A static member stepping out for a restart.
    LeaveTemporarily,
    /// A known member's epoch (at least 1).
    At(i32),
}

impl MemberEpoch {
    /// The epoch a joining (0) or known member heartbeats at; None for a leave.
    pub fn current(self) -> Option<i32> {
        match self {
            MemberEpoch::Join => Some(0),
            MemberEpoch::At(e) => Some(e),
            MemberEpoch::Leave | MemberEpoch::LeaveTemporarily => None,
        }
    }
}

/// A ConsumerGroupHeartbeat, in Weir's terms.
#[derive(Clone, Debug, Default)]
pub struct HeartbeatRequest {
    /// Empty on the first heartbeat of a v0 client (the coordinator names it).
    pub member_id: String,
    pub member_epoch: MemberEpoch,
    pub instance_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    /// None: unchanged since the last heartbeat.
    pub subscribed_topics: Option<Vec<String>>,
    /// None: unchanged since the last heartbeat.
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatResponse {
    pub error: Option<GroupError>,
    pub member_id: String,
    /// None after a leave: the edge answers with the epoch the leave was sent with.
    pub member_epoch: Option<i32>,
    pub heartbeat_interval_ms: i32,
    /// Set when the member's assignment changed (or on its first heartbeat).
    pub assignment: Option<Assignment>,
}

#[derive(Clone, Debug)]
pub struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    /// The epoch before the last bump, whose answer may have been lost (None after a join).
    previous_epoch: Option<i32>,
    pub subscribed: Vec<String>,
    /// What the member was told it owns.
    pub assigned: Assignment,
    /// Partitions it was asked to give up and has not yet reported gone.
    pub revoking: Assignment,
    /// The last assignment sent, so an unchanged one is not resent.
    sent: Option<Assignment>,
    expires_at: u64,
}

/// A KIP-848 consumer group.
#[derive(Debug)]
pub struct ConsumerGroup {
    pub id: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    members: BTreeMap<String, ConsumerMember>,
    target: BTreeMap<String, Assignment>,
    /// The partition counts the target was computed from.
    metadata: BTreeMap<String, ([u8; 16], i32)>,
}

impl ConsumerGroup {
    pub fn new(id: String) -> ConsumerGroup {
        ConsumerGroup {
            id,
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            metadata: BTreeMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn members(&self) -> impl Iterator<Item = &ConsumerMember> {
        self.members.values()
    }

    /// "Empty", "Assigning", "Reconciling" or "Stable", as Kafka names a consumer group's state.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.group_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || !m.revoking.is_empty())
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Every topic any member subscribes to.
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.subscribed.iter().cloned())
            .collect()
    }

    /// Handles one heartbeat. `topics` is the current metadata of (at least) the subscribed
    /// topics; `new_member_id` names a member joining without an id.
    pub fn heartbeat(
        &mut self,
        config: &ConsumerConfig,
        req: HeartbeatRequest,
        new_member_id: String,
        topics: &[TopicMeta],
        now: u64,
    ) -> HeartbeatResponse {
        let fail = |e: GroupError, id: &str, epoch: i32| HeartbeatResponse {
            error: Some(e),
            member_id: id.to_string(),
            member_epoch: Some(epoch),
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            assignment: None,
        };
        let Some(epoch) = req.member_epoch.current() else {
            return self.leave(config, req);
        };
        let id = if req.member_id.is_empty() {
            new_member_id
        } else {
            req.member_id.clone()
        };
        let admitted = if req.member_epoch == MemberEpoch::Join {
            self.join(config, &req, &id, now)
        } else {
            self.check_member(&req, epoch, &id)
        };
        if let Err(e) = admitted {
            // A joining member's epoch is 0, so this is the epoch it is answered with either way.
            return fail(e, &id, epoch);
        }
        let Some(m) = self.members.get_mut(&id) else {
            return fail(GroupError::UnknownMemberId, &id, epoch);
        };
        m.expires_at = now + config.session_timeout_ms.max(0) as u64;
        // A member answering from its previous epoch whose answer was lost: resend.
        if m.previous_epoch == Some(epoch) && epoch != m.epoch {
            m.sent = None;
        }
        self.follow_metadata(topics);
        if self.assignment_epoch < self.group_epoch {
            self.assign();
        }
        let owned = req.owned;
        let assignment = self.reconcile(&id, owned);
        let m = &self.members[&id];
        HeartbeatResponse {
            error: None,
            member_id: id.clone(),
            member_epoch: Some(m.epoch),
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            assignment,
        }
    }

    /// A member leaving, or a static member stepping out for a restart.
    fn leave(&mut self, config: &ConsumerConfig, req: HeartbeatRequest) -> HeartbeatResponse {
        // Either way its partitions go back to the pool now.
        if self.members.remove(&req.member_id).is_some() {
            self.target.remove(&req.member_id);
            self.group_epoch += 1;
        }
        HeartbeatResponse {
            error: None,
            member_id: req.member_id,
            member_epoch: None,
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            assignment: None,
        }
    }

    /// A member (re)joining (epoch 0) starts from nothing: whatever it held is given up.
    fn join(
        &mut self,
        config: &ConsumerConfig,
        req: &HeartbeatRequest,
        id: &str,
        now: u64,
    ) -> Result<(), GroupError> {
        let Some(subscribed) = req.subscribed_topics.clone() else {
            return Err(GroupError::InvalidRequest);
        };
        if !self.members.contains_key(id) && self.members.len() >= config.max_size {
            return Err(GroupError::GroupMaxSizeReached);
        }
        self.members.insert(
            id.to_string(),
            ConsumerMember {
                id: id.to_string(),
                instance_id: req.instance_id.clone(),
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                epoch: 0,
                previous_epoch: None,
                subscribed,
                assigned: Assignment::new(),
                revoking: Assignment::new(),
                sent: None,
                expires_at: now + config.session_timeout_ms.max(0) as u64,
            },
        );
        self.group_epoch += 1;
        Ok(())
    }

    /// A known member heartbeating at its epoch (or the previous one, whose answer was lost);
    /// a new subscription bumps the group epoch.
    fn check_member(
        &mut self,
        req: &HeartbeatRequest,
        epoch: i32,
        id: &str,
    ) -> Result<(), GroupError> {
        let Some(m) = self.members.get_mut(id) else {
            return Err(GroupError::UnknownMemberId);
        };
        if epoch != m.epoch && Some(epoch) != m.previous_epoch {
            return Err(GroupError::FencedMemberEpoch);
        }
        if let Some(s) = &req.subscribed_topics
            && *s != m.subscribed
        {
            m.subscribed = s.clone();
            self.group_epoch += 1;
        }
        Ok(())
    }

    /// Partition counts of subscribed topics changed: the target must follow.
    fn follow_metadata(&mut self, topics: &[TopicMeta]) {
        let wanted = self.subscribed_topics();
        let metadata: BTreeMap<String, ([u8; 16], i32)> = topics
            .iter()
            .filter(|t| wanted.contains(&t.name))
            .map(|t| (t.name.clone(), (t.id, t.partitions)))
            .collect();
        if metadata != self.metadata {
            self.metadata = metadata;
            self.group_epoch += 1;
        }
    }

    /// Range assignment per topic over the members subscribed to it, ordered by member id.
    fn assign(&mut self) {
        let mut target: BTreeMap<String, Assignment> = self
            .members
            .keys()
            .map(|id| (id.clone(), Assignment::new()))
            .collect();
        for (name, (topic_id, partitions)) in &self.metadata {
            let subscribers: Vec<&String> = self
                .members
                .values()
                .filter(|m| m.subscribed.iter().any(|s| s == name))
                .map(|m| &m.id)
                .collect();
            if subscribers.is_empty() {
                continue;
            }
            let n = subscribers.len() as i32;
            let (per, extra) = (partitions / n, partitions % n);
            let mut next = 0;
            for (i, member) in subscribers.into_iter().enumerate() {
                let count = per + i32::from((i as i32) < extra);
                let set: BTreeSet<i32> = (next..next + count).collect();
                next += count;
                if !set.is_empty()
                    && let Some(t) = target.get_mut(member)
                {
                    t.insert(*topic_id, set);
                }
            }
        }
        self.target = target;
        self.assignment_epoch = self.group_epoch;
    }

    /// Moves one member towards its target; returns the assignment to send, if it changed.
    fn reconcile(&mut self, id: &str, owned: Option<Assignment>) -> Option<Assignment> {
        let target = self.target.get(id).cloned().unwrap_or_default();
        // What every other member holds or is still giving up: not free to hand out.
        let mut taken: BTreeSet<([u8; 16], i32)> = BTreeSet::new();
        for (other, m) in &self.members {
            if other != id {
                for (t, ps) in m.assigned.iter().chain(m.revoking.iter()) {
                    taken.extend(ps.iter().map(|p| (*t, *p)));
                }
            }
        }
        let epoch = self.assignment_epoch;
        let m = self.members.get_mut(id)?;
        if let Some(owned) = &owned {
            // Revocations the member has carried out are done.
            m.revoking.retain(|t, ps| {
                ps.retain(|p| owned.get(t).is_some_and(|o| o.contains(p)));
                !ps.is_empty()
            });
        }
        // 1. Give up what is no longer ours.
        let mut revoke = Assignment::new();
        for (t, ps) in &m.assigned {
            let gone: BTreeSet<i32> = ps
                .iter()
                .filter(|p| !target.get(t).is_some_and(|tp| tp.contains(p)))
                .copied()
                .collect();
            if !gone.is_empty() {
                revoke.insert(*t, gone);
            }
        }
        if !revoke.is_empty() {
            for (t, ps) in &revoke {
                if let Some(a) = m.assigned.get_mut(t) {
                    a.retain(|p| !ps.contains(p));
                }
                m.revoking.entry(*t).or_default().extend(ps.iter().copied());
            }
            m.assigned.retain(|_, ps| !ps.is_empty());
        }
        if m.revoking.is_empty() {
            // 2. At the target epoch; take what is free of the new partitions.
            if m.epoch != epoch {
                m.previous_epoch = Some(m.epoch);
                m.epoch = epoch;
            }
            for (t, ps) in &target {
                for p in ps {
                    if !taken.contains(&(*t, *p)) {
                        m.assigned.entry(*t).or_default().insert(*p);
                    }
                }
            }
        }
        // A member that reports owning something else than it was last sent missed an answer
        // (lost or timed out): send its assignment again.
        let reported_differs = owned.as_ref().is_some_and(|o| {
            let o: Assignment = o
                .iter()
                .filter(|(_, ps)| !ps.is_empty())
                .map(|(t, ps)| (*t, ps.clone()))
                .collect();
            o != m.assigned && m.revoking.is_empty()
        });
        if !reported_differs && m.sent.as_ref() == Some(&m.assigned) {
            None
        } else {
            m.sent = Some(m.assigned.clone());
            Some(m.assigned.clone())
        }
    }

    /// Checks an OffsetCommit from this group (KIP-848 rules: a member commits with its
    /// current epoch; outsiders only while the group is empty).
    pub fn validate_commit(
        &mut self,
        member_id: &str,
        epoch: i32,
        now: u64,
        config: &ConsumerConfig,
    ) -> Result<(), GroupError> {
        if epoch < 0 && member_id.is_empty() && self.members.is_empty() {
            return Ok(());
        }
        let m = self
            .members
            .get_mut(member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        // Ahead of the coordinator: the member is from a future it cannot have seen (fenced);
        // behind: it must refresh its epoch first (stale), as Kafka answers.
        if epoch > m.epoch {
            return Err(GroupError::FencedMemberEpoch);
        }
        if epoch < m.epoch {
            return Err(GroupError::StaleMemberEpoch);
        }
        m.expires_at = now + config.session_timeout_ms.max(0) as u64;
        Ok(())
    }

    /// Removes members whose session expired; returns whether any was.
    pub fn tick(&mut self, now: u64) -> bool {
        let before = self.members.len();
        self.members.retain(|_, m| m.expires_at > now);
        let expired = self.members.len() != before;
        if expired {
            let ids: BTreeSet<String> = self.members.keys().cloned().collect();
            self.target.retain(|id, _| ids.contains(id));
            self.group_epoch += 1;
        }
        expired
    }

    pub fn next_deadline(&self) -> Option<u64> {
        self.members.values().map(|m| m.expires_at).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: [u8; 16] = [7; 16];

    fn topics() -> Vec<TopicMeta> {
        vec![TopicMeta {
            id: T,
            name: "t".into(),
            partitions: 6,
        }]
    }

    fn hb(id: &str, epoch: i32, owned: Option<&Assignment>) -> HeartbeatRequest {
        HeartbeatRequest {
            member_id: id.into(),
            member_epoch: if epoch == 0 {
                MemberEpoch::Join
            } else {
                MemberEpoch::At(epoch)
            },
            rebalance_timeout_ms: 30_000,
            subscribed_topics: (epoch == 0).then(|| vec!["t".to_string()]),
            owned: owned.cloned(),
            ..HeartbeatRequest::default()
        }
    }

    fn parts(a: &Assignment) -> BTreeSet<i32> {
        a.get(&T).cloned().unwrap_or_default()
    }

    /// Proves: a second member gets partitions only after the first has revoked them, so
    /// no partition is ever held by both; both end at the same epoch with a split of 3 + 3.
    #[test]
    fn partitions_move_only_after_revocation() {
        let c = ConsumerConfig::default();
        let mut g = ConsumerGroup::new("g".into());
        let r = g.heartbeat(&c, hb("", 0, None), "a".into(), &topics(), 0);
        assert_eq!(r.member_id, "a");
        let a_assign = r.assignment.expect("first assignment");
        assert_eq!(parts(&a_assign).len(), 6);
        let a_epoch = r.member_epoch.expect("a joined");

        let r = g.heartbeat(&c, hb("", 0, None), "b".into(), &topics(), 1);
        assert_eq!(
            r.assignment.map(|a| parts(&a)),
            Some(BTreeSet::new()),
            "b waits for a"
        );
        let b_epoch = r.member_epoch.expect("b joined");

        // a is told to keep only its half, at its old epoch until it revokes.
        let r = g.heartbeat(
            &c,
            hb("a", a_epoch, Some(&a_assign)),
            String::new(),
            &topics(),
            2,
        );
        let a_now = r.assignment.expect("a's reduced assignment");
        assert_eq!(parts(&a_now), BTreeSet::from([0, 1, 2]));
        assert_eq!(r.member_epoch, Some(a_epoch));
        // b still gets nothing: a has not reported the revocation yet.
        let r = g.heartbeat(
            &c,
            hb("b", b_epoch, Some(&Assignment::new())),
            String::new(),
            &topics(),
            3,
        );
        assert!(r.assignment.is_none());
        // a reports it dropped 3..6; it moves to the new epoch.
        let r = g.heartbeat(
            &c,
            hb("a", a_epoch, Some(&a_now)),
            String::new(),
            &topics(),
            4,
        );
        assert!(r.member_epoch.is_some_and(|e| e > a_epoch));
        // Now b gets them.
        let r = g.heartbeat(
            &c,
            hb("b", b_epoch, Some(&Assignment::new())),
            String::new(),
            &topics(),
            5,
        );
        assert_eq!(
            r.assignment.map(|a| parts(&a)),
            Some(BTreeSet::from([3, 4, 5]))
        );
        assert_eq!(g.state(), "Stable");
    }

    /// Proves: a stale epoch is fenced, an unknown member is refused, commits need the
    /// current epoch, and an expired member's partitions go back to the others.
    #[test]
    fn fencing_commits_and_expiry() {
        let c = ConsumerConfig::default();
        let mut g = ConsumerGroup::new("g".into());
        let a = g.heartbeat(&c, hb("", 0, None), "a".into(), &topics(), 0);
        let b = g.heartbeat(&c, hb("", 0, None), "b".into(), &topics(), 0);
        let (a_epoch, b_epoch) = (a.member_epoch.expect("a"), b.member_epoch.expect("b"));
        assert_eq!(
            g.heartbeat(&c, hb("zz", 5, None), String::new(), &topics(), 1)
                .error,
            Some(GroupError::UnknownMemberId)
        );
        assert_eq!(
            g.heartbeat(&c, hb("a", a_epoch + 10, None), String::new(), &topics(), 1)
                .error,
            Some(GroupError::FencedMemberEpoch)
        );
        assert_eq!(g.validate_commit("b", b_epoch, 1, &c), Ok(()));
        assert_eq!(
            g.validate_commit("b", b_epoch - 1, 1, &c),
            Err(GroupError::StaleMemberEpoch)
        );
        assert_eq!(
            g.validate_commit("", -1, 1, &c),
            Err(GroupError::UnknownMemberId)
        );
        // a goes silent; b keeps heartbeating and ends up with all six.
        assert!(g.tick(40_000).eq(&false));
        let _ = g.heartbeat(
            &c,
            hb("b", b_epoch, Some(&Assignment::new())),
            String::new(),
            &topics(),
            40_000,
        );
        assert!(g.tick(45_001));
        let b_epoch = g.members().next().map(|m| m.epoch).unwrap_or(0);
        let r = g.heartbeat(
            &c,
            hb("b", b_epoch, Some(&Assignment::new())),
            String::new(),
            &topics(),
            45_002,
        );
        assert_eq!(r.assignment.map(|a| parts(&a).len()), Some(6));
    }

    /// Proves: a leave (or a static member's temporary leave) gives the member's partitions
    /// back at once and is answered without an epoch (the edge echoes the one it was sent).
    #[test]
    fn leaving_frees_the_partitions_at_once() {
        let c = ConsumerConfig::default();
        for leave in [MemberEpoch::Leave, MemberEpoch::LeaveTemporarily] {
            let mut g = ConsumerGroup::new("g".into());
            let a = g.heartbeat(&c, hb("", 0, None), "a".into(), &topics(), 0);
            let _ = g.heartbeat(&c, hb("", 0, None), "b".into(), &topics(), 0);
            let epoch = g.group_epoch;
            let left = g.heartbeat(
                &c,
                HeartbeatRequest {
                    member_id: a.member_id.clone(),
                    member_epoch: leave,
                    ..HeartbeatRequest::default()
                },
                String::new(),
                &topics(),
                1,
            );
            assert_eq!((left.error, left.member_epoch), (None, None));
            assert_eq!(g.members().count(), 1, "{leave:?}");
            assert!(g.group_epoch > epoch);
        }
    }
}
