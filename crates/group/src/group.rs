//! One consumer group under Kafka's classic rebalance protocol, as a state machine.
//!
//! ```text
//!            join (first member)           all members joined, or the rebalance timeout
//!   Empty ─────────────────────▶ Preparing ───────────────────────────▶ Completing
//!     ▲                          Rebalance ◀──── member joins/leaves ─── Rebalance
//!     │   last member leaves        ▲  ▲                                    │ leader's
//!     └──────────────────────────── │  └───── member joins/leaves/expires ─ │ SyncGroup
//!                                   │                                       ▼ (persisted)
//!                                   └────────── member joins/leaves ────── Stable
//! ```
//!
//! Requests that must wait (a JoinGroup until the rebalance completes, a follower's SyncGroup
//! until the leader's assignment is persisted) are registered with a caller-chosen [`Waiter`]
//! and answered later through [`Reply`] values returned by whichever call completes them. Time
//! is passed in (`now`, monotonic milliseconds); [`Group::tick`] runs the timers: member
//! session expiry, the rebalance deadline, and the initial rebalance delay. Nothing here does
//! I/O: the caller persists what [`Effects::store_group`] and [`SyncOutcome::Persist`] ask for
//! in `__consumer_offsets` and answers the waiters.
//!
//! The rules follow Apache Kafka's `GroupCoordinator` (the classic protocol): member ids are
//! handed out with MEMBER_ID_REQUIRED from JoinGroup v4 (KIP-394), static members keep their
//! identity across restarts (KIP-345), a generation fences stale members with
//! ILLEGAL_GENERATION, and the initial rebalance of an empty group waits
//! `group.initial.rebalance.delay.ms` for more members.

use crate::records::{GroupValue, OffsetValue, StoredMember};
use crate::{GroupError, GroupId};
use bytes::Bytes;
use std::collections::BTreeMap;
use weir_model::{Offset, PartitionId};

/// Limits and timeouts of the coordinator (Kafka's `group.*` broker configs).
#[derive(Clone, Debug)]
pub struct GroupConfig {
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub initial_rebalance_delay_ms: i32,
    pub max_size: usize,
    /// Largest commit metadata string (`offset.metadata.max.bytes`).
    pub offset_metadata_max_bytes: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: usize::MAX,
            offset_metadata_max_bytes: 4096,
        }
    }
}

/// A caller's handle for a request that is answered later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Waiter(pub u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name DescribeGroups and ListGroups report.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A JoinGroup request, in Weir's terms.
#[derive(Clone, Debug)]
pub struct JoinRequest {
    /// Empty for a member joining for the first time.
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// JoinGroup v4+: a new member must first learn its id (KIP-394).
    pub require_known_member_id: bool,
}

/// What a JoinGroup is answered with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JoinResponse {
    pub error: Option<GroupError>,
    /// None with an error (Kafka's -1 at the protocol edge).
    pub generation: Option<i32>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only: every member with its metadata for the chosen protocol.
    pub members: Vec<JoinedMember>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

/// What a SyncGroup is answered with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncResponse {
    pub error: Option<GroupError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

/// An answer to a request that waited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Join(Waiter, JoinResponse),
    Sync(Waiter, SyncResponse),
}

/// What a call produced besides its direct answer.
#[derive(Debug, Default)]
#[must_use]
pub struct Effects {
    pub replies: Vec<Reply>,
    /// The group's stored record is out of date (a generation ended empty, a static member was
    /// replaced): write [`Group::stored_value`] to `__consumer_offsets`.
    pub store_group: bool,
}

impl Effects {
    fn merge(&mut self, other: Effects) {
        self.replies.extend(other.replies);
        self.store_group |= other.store_group;
    }
}

/// How a JoinGroup proceeds.
#[derive(Debug)]
pub enum JoinOutcome {
    /// Answer now.
    Reply(JoinResponse),
    /// Registered: the answer comes in a [`Reply::Join`] for this waiter.
    Wait,
}

/// How a SyncGroup proceeds.
#[derive(Debug)]
pub enum SyncOutcome {
    Reply(SyncResponse),
    /// Registered: the answer comes in a [`Reply::Sync`].
    Wait,
    /// The leader's assignment: persist [`Group::value_with`] for it, then call
    /// [`Group::sync_persisted`]. The leader's own answer comes as a [`Reply::Sync`] then.
    Persist {
        generation: i32,
        assignments: BTreeMap<String, Bytes>,
    },
}

/// A member of the group.
#[derive(Clone, Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub assignment: Bytes,
    join_waiter: Option<Waiter>,
    sync_waiter: Option<Waiter>,
    /// When the session expires without a heartbeat (monotonic ms).
    expires_at: u64,
}

/// A waiting JoinGroup answered with an error.
fn join_error(w: Waiter, error: GroupError, member_id: impl Into<String>) -> Reply {
    Reply::Join(
        w,
        JoinResponse {
            error: Some(error),
            generation: None,
            member_id: member_id.into(),
            ..JoinResponse::default()
        },
    )
}

/// A waiting SyncGroup answered with an error.
fn sync_error(w: Waiter, error: GroupError) -> Reply {
    Reply::Sync(
        w,
        SyncResponse {
            error: Some(error),
            ..SyncResponse::default()
        },
    )
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }
}

#[derive(Clone, Debug)]
struct JoinTimer {
    at: u64,
    /// The initial delay of a group that was empty: extended while new members arrive, up to
    /// the rebalance timeout.
    initial: Option<InitialDelay>,
}

#[derive(Clone, Debug)]
struct InitialDelay {
    remaining_ms: u64,
    new_member_added: bool,
}

/// One group: membership, rebalance state and committed offsets.
#[derive(Debug)]
pub struct Group {
    pub id: GroupId,
    state: GroupState,
    /// Wall-clock ms of the last state change (stored, shown).
    state_timestamp: i64,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Members told their id with MEMBER_ID_REQUIRED, not joined yet: id → expiry.
    pending: BTreeMap<String, u64>,
    /// group.instance.id → member id.
    static_members: BTreeMap<String, String>,
    join_timer: Option<JoinTimer>,
    offsets: BTreeMap<(String, PartitionId), OffsetValue>,
    /// Where in `__consumer_offsets` each offset (or its deletion) was written: commits can be
    /// replicated out of order, and the later write must win.
    positions: BTreeMap<(String, PartitionId), Offset>,
}

impl Group {
    pub fn new(id: GroupId, wall_ms: i64) -> Group {
        Group {
            id,
            state: GroupState::Empty,
            state_timestamp: wall_ms,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            static_members: BTreeMap::new(),
            join_timer: None,
            offsets: BTreeMap::new(),
            positions: BTreeMap::new(),
        }
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn offsets(&self) -> &BTreeMap<(String, PartitionId), OffsetValue> {
        &self.offsets
    }

    pub fn offset(&self, topic: &str, partition: PartitionId) -> Option<&OffsetValue> {
        self.offsets.get(&(topic.to_string(), partition))
    }

    /// Whether nothing is left to keep: no members, no offsets.
    pub fn is_unused(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty() && self.offsets.is_empty()
    }

    /// The topics the members subscribe to, when the group uses the consumer protocol.
    pub fn subscribed_topics(&self) -> Option<Vec<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.as_deref()?;
        let mut topics = Vec::new();
        for m in self.members.values() {
            topics.extend(crate::consumer_protocol::subscribed_topics(
                &m.metadata(protocol),
            )?);
        }
        topics.sort();
        topics.dedup();
        Some(topics)
    }

    /// The member's metadata for the chosen protocol, for DescribeGroups (only in Stable, as
    /// Kafka reports it).
    pub fn described_metadata(&self, member: &Member) -> Bytes {
        match (&self.state, &self.protocol) {
            (GroupState::Stable, Some(p)) => member.metadata(p),
            _ => Bytes::new(),
        }
    }

    fn set_state(&mut self, state: GroupState, wall_ms: i64) {
        self.state = state;
        self.state_timestamp = wall_ms;
    }

    // ---------------------------------------------------------------------------------------
    // JoinGroup

    /// Handles a JoinGroup. `new_member_id` is the id to give a member joining for the first
    /// time (the caller makes it unique: client id and a UUID, as Kafka does).
    pub fn join(
        &mut self,
        config: &GroupConfig,
        req: JoinRequest,
        new_member_id: String,
        waiter: Waiter,
        now: u64,
        wall_ms: i64,
    ) -> (JoinOutcome, Effects) {
        let fail = |e: GroupError, member_id: &str| {
            (
                JoinOutcome::Reply(JoinResponse {
                    error: Some(e),
                    generation: None,
                    member_id: member_id.to_string(),
                    ..JoinResponse::default()
                }),
                Effects::default(),
            )
        };
        if req.session_timeout_ms < config.min_session_timeout_ms
            || req.session_timeout_ms > config.max_session_timeout_ms
        {
            return fail(GroupError::InvalidSessionTimeout, &req.member_id);
        }
        if self.state == GroupState::Dead {
            return fail(GroupError::CoordinatorNotAvailable, &req.member_id);
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return fail(GroupError::InconsistentGroupProtocol, &req.member_id);
        }
        if req.member_id.is_empty() {
            self.join_new_member(config, req, new_member_id, waiter, now, wall_ms)
        } else {
            self.join_known_member(config, req, waiter, now, wall_ms)
        }
    }

    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && self
                .candidate_protocols()
                .iter()
                .any(|c| protocols.iter().any(|(n, _)| n == c))
    }

    /// Protocols every member supports.
    fn candidate_protocols(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let mut out: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in members {
            out.retain(|c| m.protocols.iter().any(|(n, _)| n == c));
        }
        out
    }

    /// Each member votes for its most preferred candidate; the most votes wins (ties go to the
    /// protocol listed first by the candidates, so the choice is deterministic).
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: Vec<(String, usize)> = candidates.iter().map(|c| (c.clone(), 0)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n))
                && let Some(v) = votes.iter_mut().find(|(c, _)| c == name)
            {
                v.1 += 1;
            }
        }
        let best = votes.iter().map(|(_, n)| *n).max()?;
        votes.into_iter().find(|(_, n)| *n == best).map(|(c, _)| c)
    }

    fn join_new_member(
        &mut self,
        config: &GroupConfig,
        req: JoinRequest,
        new_member_id: String,
        waiter: Waiter,
        now: u64,
        wall_ms: i64,
    ) -> (JoinOutcome, Effects) {
        // Members waiting for their id count: a client cannot grow the group past its limit
        // by never completing the join.
        if req.instance_id.is_none() && self.members.len() + self.pending.len() >= config.max_size {
            return (
                JoinOutcome::Reply(JoinResponse {
                    error: Some(GroupError::GroupMaxSizeReached),
                    generation: None,
                    ..JoinResponse::default()
                }),
                Effects::default(),
            );
        }
        if let Some(instance) = req.instance_id.clone() {
            if let Some(old) = self.static_members.get(&instance).cloned() {
                return self.replace_static_member(
                    config,
                    old,
                    req,
                    new_member_id,
                    waiter,
                    now,
                    wall_ms,
                );
            }
        } else if req.require_known_member_id {
            // KIP-394: the member learns its id first, so a client whose JoinGroup timed out and
            // retries does not leave an orphan member behind that stalls the rebalance.
            self.pending
                .insert(new_member_id.clone(), now + req.session_timeout_ms as u64);
            return (
                JoinOutcome::Reply(JoinResponse {
                    error: Some(GroupError::MemberIdRequired),
                    generation: None,
                    member_id: new_member_id,
                    ..JoinResponse::default()
                }),
                Effects::default(),
            );
        }
        if self.members.len() >= config.max_size {
            return (
                JoinOutcome::Reply(JoinResponse {
                    error: Some(GroupError::GroupMaxSizeReached),
                    generation: None,
                    ..JoinResponse::default()
                }),
                Effects::default(),
            );
        }
        let effects =
            self.add_member_and_rebalance(config, req, new_member_id, waiter, now, wall_ms);
        (JoinOutcome::Wait, effects)
    }

    fn join_known_member(
        &mut self,
        config: &GroupConfig,
        req: JoinRequest,
        waiter: Waiter,
        now: u64,
        wall_ms: i64,
    ) -> (JoinOutcome, Effects) {
        let member_id = req.member_id.clone();
        let fail = |e: GroupError| {
            (
                JoinOutcome::Reply(JoinResponse {
                    error: Some(e),
                    generation: None,
                    member_id: member_id.clone(),
                    ..JoinResponse::default()
                }),
                Effects::default(),
            )
        };
        if self.pending.remove(&member_id).is_some() {
            if self.members.len() >= config.max_size {
                return fail(GroupError::GroupMaxSizeReached);
            }
            let id = member_id.clone();
            let effects = self.add_member_and_rebalance(config, req, id, waiter, now, wall_ms);
            return (JoinOutcome::Wait, effects);
        }
        if self.is_static_fenced(req.instance_id.as_deref(), &member_id) {
            return fail(GroupError::FencedInstanceId);
        }
        let Some(member) = self.members.get_mut(&member_id) else {
            return fail(GroupError::UnknownMemberId);
        };
        member.expires_at = now + member.session_timeout_ms as u64;
        match self.state {
            GroupState::PreparingRebalance => {
                let effects = self.update_member_and_rebalance(config, req, waiter, now, wall_ms);
                (JoinOutcome::Wait, effects)
            }
            GroupState::CompletingRebalance => {
                if member.same_protocols(&req.protocols) {
                    // A retried JoinGroup whose answer was lost: answer it again.
                    let is_leader = self.leader.as_deref() == Some(member_id.as_str());
                    (
                        JoinOutcome::Reply(self.join_response(&member_id, is_leader)),
                        Effects::default(),
                    )
                } else {
                    let effects =
                        self.update_member_and_rebalance(config, req, waiter, now, wall_ms);
                    (JoinOutcome::Wait, effects)
                }
            }
            GroupState::Stable => {
                let is_leader = self.leader.as_deref() == Some(member_id.as_str());
                if is_leader || !member.same_protocols(&req.protocols) {
                    // The leader rejoining means it wants a new assignment (its metadata or
                    // the topics changed): rebalance.
                    let effects =
                        self.update_member_and_rebalance(config, req, waiter, now, wall_ms);
                    (JoinOutcome::Wait, effects)
                } else {
                    (
                        JoinOutcome::Reply(self.join_response(&member_id, false)),
                        Effects::default(),
                    )
                }
            }
            GroupState::Empty | GroupState::Dead => fail(GroupError::UnknownMemberId),
        }
    }

    fn is_static_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id.is_some_and(|i| {
            self.static_members
                .get(i)
                .is_some_and(|known| known != member_id)
        })
    }

    fn add_member_and_rebalance(
        &mut self,
        config: &GroupConfig,
        req: JoinRequest,
        member_id: String,
        waiter: Waiter,
        now: u64,
        wall_ms: i64,
    ) -> Effects {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(i) = &req.instance_id {
            self.static_members.insert(i.clone(), member_id.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        self.members.insert(
            member_id.clone(),
            Member {
                id: member_id,
                instance_id: req.instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                protocol_type: req.protocol_type,
                protocols: req.protocols,
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                assignment: Bytes::new(),
                join_waiter: Some(waiter),
                sync_waiter: None,
                expires_at: now + req.session_timeout_ms as u64,
            },
        );
        if let Some(JoinTimer {
            initial: Some(d), ..
        }) = &mut self.join_timer
        {
            d.new_member_added = true;
        }
        self.maybe_prepare_rebalance(config, now, wall_ms)
    }

    fn update_member_and_rebalance(
        &mut self,
        config: &GroupConfig,
        req: JoinRequest,
        waiter: Waiter,
        now: u64,
        wall_ms: i64,
    ) -> Effects {
        let mut effects = Effects::default();
        if let Some(m) = self.members.get_mut(&req.member_id) {
            if let Some(old) = m.join_waiter.replace(waiter) {
                // A second JoinGroup from the same member while the first waits: the first
                // connection is gone or the client gave up on it; it gets no real answer.
                effects.replies.push(join_error(
                    old,
                    GroupError::UnknownMemberId,
                    req.member_id.clone(),
                ));
            }
            m.protocols = req.protocols;
            m.session_timeout_ms = req.session_timeout_ms;
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.client_id = req.client_id;
            m.client_host = req.client_host;
        }
        effects.merge(self.maybe_prepare_rebalance(config, now, wall_ms));
        effects
    }

    /// A static member restarted with a new member id: the old id is fenced.
    #[allow(clippy::too_many_arguments)]
    fn replace_static_member(
        &mut self,
        config: &GroupConfig,
        old_id: String,
        req: JoinRequest,
        new_id: String,
        waiter: Waiter,
        now: u64,
        wall_ms: i64,
    ) -> (JoinOutcome, Effects) {
        let mut effects = Effects::default();
        let Some(mut member) = self.members.remove(&old_id) else {
            self.static_members
                .remove(req.instance_id.as_deref().unwrap_or_default());
            return (
                JoinOutcome::Reply(JoinResponse {
                    error: Some(GroupError::UnknownMemberId),
                    generation: None,
                    ..JoinResponse::default()
                }),
                effects,
            );
        };
        if let Some(w) = member.join_waiter.take() {
            effects
                .replies
                .push(join_error(w, GroupError::FencedInstanceId, old_id.clone()));
        }
        if let Some(w) = member.sync_waiter.take() {
            effects
                .replies
                .push(sync_error(w, GroupError::FencedInstanceId));
        }
        let was_leader = self.leader.as_deref() == Some(old_id.as_str());
        let leader_before = self.leader.clone().unwrap_or_default();
        let same_protocols = member.same_protocols(&req.protocols);
        member.id = new_id.clone();
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.expires_at = now + req.session_timeout_ms as u64;
        if let Some(i) = &req.instance_id {
            self.static_members.insert(i.clone(), new_id.clone());
        }
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        match self.state {
            GroupState::Stable if same_protocols => {
                // KIP-345: a static member that comes back with the same subscription keeps
                // its assignment and causes no rebalance, even the leader. As in Kafka, the
                // answer names the leader by its old member id, so a returning leader does
                // not see itself as leader and compute an assignment a Stable group would
                // never hand out.
                self.members.insert(new_id.clone(), member);
                effects.store_group = true;
                let mut r = self.join_response(&new_id, false);
                r.leader = leader_before;
                (JoinOutcome::Reply(r), effects)
            }
            _ => {
                member.protocols = req.protocols;
                member.join_waiter = Some(waiter);
                self.members.insert(new_id, member);
                effects.merge(self.maybe_prepare_rebalance(config, now, wall_ms));
                (JoinOutcome::Wait, effects)
            }
        }
    }

    fn join_response(&self, member_id: &str, leader: bool) -> JoinResponse {
        let protocol = self.protocol.clone().unwrap_or_default();
        JoinResponse {
            error: None,
            generation: Some(self.generation),
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if leader {
                self.members
                    .values()
                    .map(|m| JoinedMember {
                        member_id: m.id.clone(),
                        instance_id: m.instance_id.clone(),
                        metadata: m.metadata(&protocol),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    fn maybe_prepare_rebalance(&mut self, config: &GroupConfig, now: u64, wall_ms: i64) -> Effects {
        match self.state {
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(config, now, wall_ms)
            }
            GroupState::PreparingRebalance => self.try_complete_join(now, wall_ms),
            GroupState::Dead => Effects::default(),
        }
    }

    fn rebalance_timeout_ms(&self) -> u64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms.max(0) as u64)
            .max()
            .unwrap_or(0)
    }

    fn prepare_rebalance(&mut self, config: &GroupConfig, now: u64, wall_ms: i64) -> Effects {
        let mut effects = Effects::default();
        if self.state == GroupState::CompletingRebalance {
            effects
                .replies
                .extend(self.reset_assignments(GroupError::RebalanceInProgress));
        }
        let timeout = self.rebalance_timeout_ms();
        let delay = config.initial_rebalance_delay_ms.max(0) as u64;
        self.join_timer = Some(if self.state == GroupState::Empty && delay > 0 {
            JoinTimer {
                at: now + delay.min(timeout.max(1)),
                initial: Some(InitialDelay {
                    remaining_ms: timeout.saturating_sub(delay),
                    new_member_added: false,
                }),
            }
        } else {
            JoinTimer {
                at: now + timeout,
                initial: None,
            }
        });
        self.set_state(GroupState::PreparingRebalance, wall_ms);
        effects.merge(self.try_complete_join(now, wall_ms));
        effects
    }

    /// Clears every assignment; members waiting in SyncGroup get `error`.
    fn reset_assignments(&mut self, error: GroupError) -> Vec<Reply> {
        let mut replies = Vec::new();
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            if let Some(w) = m.sync_waiter.take() {
                replies.push(sync_error(w, error));
            }
        }
        replies
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    fn try_complete_join(&mut self, now: u64, wall_ms: i64) -> Effects {
        let initial = self
            .join_timer
            .as_ref()
            .is_some_and(|t| t.initial.is_some());
        if self.state == GroupState::PreparingRebalance && !initial && self.all_joined() {
            self.complete_join(now, wall_ms)
        } else {
            Effects::default()
        }
    }

    /// The join phase ends: members that did not rejoin are dropped (static members are kept
    /// until their session expires), a new generation starts and every joined member is told.
    fn complete_join(&mut self, now: u64, wall_ms: i64) -> Effects {
        let mut effects = Effects::default();
        self.join_timer = None;
        let not_joined: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in not_joined {
            self.members.remove(&id);
        }
        let leader_joined = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .is_some_and(|m| m.join_waiter.is_some());
        if !leader_joined {
            self.leader = self
                .members
                .values()
                .find(|m| m.join_waiter.is_some())
                .or_else(|| self.members.values().next())
                .map(|m| m.id.clone());
        }
        self.generation += 1;
        if self.members.is_empty() {
            // The protocol type stays (Kafka reports an emptied consumer group as "consumer").
            self.protocol = None;
            self.leader = None;
            self.set_state(GroupState::Empty, wall_ms);
            effects.store_group = true;
            return effects;
        }
        self.protocol = self.select_protocol();
        self.set_state(GroupState::CompletingRebalance, wall_ms);
        let joined: Vec<(String, Waiter)> = self
            .members
            .values_mut()
            .filter_map(|m| {
                m.expires_at = now + m.session_timeout_ms as u64;
                m.join_waiter.take().map(|w| (m.id.clone(), w))
            })
            .collect();
        for (id, w) in joined {
            let is_leader = self.leader.as_deref() == Some(id.as_str());
            effects
                .replies
                .push(Reply::Join(w, self.join_response(&id, is_leader)));
        }
        effects
    }

    // ---------------------------------------------------------------------------------------
    // SyncGroup, Heartbeat, LeaveGroup

    /// Handles a SyncGroup. `assignments` is the leader's (empty from followers). Also returns
    /// the answer to an earlier SyncGroup of the same member that this one replaces.
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: BTreeMap<String, Bytes>,
        waiter: Waiter,
        now: u64,
    ) -> (SyncOutcome, Vec<Reply>) {
        let mut replaced = Vec::new();
        let outcome = self.sync_inner(
            member_id,
            instance_id,
            generation,
            protocol_type,
            protocol_name,
            assignments,
            waiter,
            now,
            &mut replaced,
        );
        (outcome, replaced)
    }

    #[allow(clippy::too_many_arguments)]
    fn sync_inner(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: BTreeMap<String, Bytes>,
        waiter: Waiter,
        now: u64,
        replaced: &mut Vec<Reply>,
    ) -> SyncOutcome {
        let fail = |e: GroupError| {
            SyncOutcome::Reply(SyncResponse {
                error: Some(e),
                ..SyncResponse::default()
            })
        };
        if self.state == GroupState::Dead {
            return fail(GroupError::CoordinatorNotAvailable);
        }
        if self.is_static_fenced(instance_id, member_id) {
            return fail(GroupError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return fail(GroupError::UnknownMemberId);
        }
        if generation != self.generation {
            return fail(GroupError::IllegalGeneration);
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|p| Some(p) != self.protocol.as_deref())
        {
            return fail(GroupError::InconsistentGroupProtocol);
        }
        let is_leader = self.leader.as_deref() == Some(member_id);
        let state = self.state;
        let Some(member) = self.members.get_mut(member_id) else {
            return fail(GroupError::UnknownMemberId);
        };
        member.expires_at = now + member.session_timeout_ms as u64;
        match state {
            GroupState::Empty => fail(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => fail(GroupError::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                // A retried SyncGroup replaces the waiting one, which is answered with
                // REBALANCE_IN_PROGRESS rather than left to time out.
                if let Some(old) = member.sync_waiter.replace(waiter) {
                    replaced.push(sync_error(old, GroupError::RebalanceInProgress));
                }
                if is_leader {
                    // Members the leader left out get an empty assignment, as in Kafka.
                    let assignments = self
                        .members
                        .keys()
                        .map(|id| (id.clone(), assignments.get(id).cloned().unwrap_or_default()))
                        .collect();
                    SyncOutcome::Persist {
                        generation: self.generation,
                        assignments,
                    }
                } else {
                    SyncOutcome::Wait
                }
            }
            GroupState::Stable => SyncOutcome::Reply(SyncResponse {
                error: None,
                protocol_type: self.protocol_type.clone(),
                protocol_name: self.protocol.clone(),
                assignment: member.assignment.clone(),
            }),
            GroupState::Dead => fail(GroupError::CoordinatorNotAvailable),
        }
    }

    /// The outcome of persisting the leader's assignment for `generation`.
    pub fn sync_persisted(
        &mut self,
        config: &GroupConfig,
        generation: i32,
        assignments: BTreeMap<String, Bytes>,
        result: Result<(), GroupError>,
        now: u64,
        wall_ms: i64,
    ) -> Effects {
        let mut effects = Effects::default();
        // A rebalance that started meanwhile already answered the waiters.
        if self.generation != generation || self.state != GroupState::CompletingRebalance {
            return effects;
        }
        match result {
            Ok(()) => {
                for m in self.members.values_mut() {
                    m.assignment = assignments.get(&m.id).cloned().unwrap_or_default();
                    if let Some(w) = m.sync_waiter.take() {
                        effects.replies.push(Reply::Sync(
                            w,
                            SyncResponse {
                                error: None,
                                protocol_type: self.protocol_type.clone(),
                                protocol_name: self.protocol.clone(),
                                assignment: m.assignment.clone(),
                            },
                        ));
                    }
                }
                self.set_state(GroupState::Stable, wall_ms);
            }
            Err(e) => {
                effects.replies.extend(self.reset_assignments(e));
                effects.merge(self.prepare_rebalance(config, now, wall_ms));
            }
        }
        effects
    }

    /// Handles a Heartbeat: keeps the member's session alive and tells it whether to rejoin.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: u64,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if self.is_static_fenced(instance_id, member_id) {
            return Err(GroupError::FencedInstanceId);
        }
        let state = self.state;
        let current = self.generation;
        let Some(m) = self.members.get_mut(member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        if generation != current {
            return Err(GroupError::IllegalGeneration);
        }
        match state {
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                m.expires_at = now + m.session_timeout_ms as u64;
                Err(GroupError::RebalanceInProgress)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                m.expires_at = now + m.session_timeout_ms as u64;
                Ok(())
            }
        }
    }

    /// Handles one member of a LeaveGroup (by member id, or by instance id with an empty
    /// member id, as LeaveGroup v3+ allows).
    pub fn leave(
        &mut self,
        config: &GroupConfig,
        member_id: &str,
        instance_id: Option<&str>,
        now: u64,
        wall_ms: i64,
    ) -> (Result<(), GroupError>, Effects) {
        if self.state == GroupState::Dead {
            return (Err(GroupError::CoordinatorNotAvailable), Effects::default());
        }
        if !member_id.is_empty() && self.is_static_fenced(instance_id, member_id) {
            return (Err(GroupError::FencedInstanceId), Effects::default());
        }
        if self.pending.remove(member_id).is_some() {
            return (Ok(()), self.try_complete_join(now, wall_ms));
        }
        let id = if member_id.is_empty() {
            match instance_id.and_then(|i| self.static_members.get(i)) {
                Some(id) => id.clone(),
                None => return (Err(GroupError::UnknownMemberId), Effects::default()),
            }
        } else {
            member_id.to_string()
        };
        if !self.members.contains_key(&id) {
            return (Err(GroupError::UnknownMemberId), Effects::default());
        }
        (Ok(()), self.remove_member(config, &id, now, wall_ms))
    }

    fn remove_member(&mut self, config: &GroupConfig, id: &str, now: u64, wall_ms: i64) -> Effects {
        let mut effects = Effects::default();
        let Some(m) = self.members.remove(id) else {
            return effects;
        };
        if let Some(i) = &m.instance_id {
            self.static_members.remove(i);
        }
        if let Some(w) = m.join_waiter {
            effects
                .replies
                .push(join_error(w, GroupError::UnknownMemberId, id.to_string()));
        }
        if let Some(w) = m.sync_waiter {
            effects
                .replies
                .push(sync_error(w, GroupError::UnknownMemberId));
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.keys().next().cloned();
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                effects.merge(self.prepare_rebalance(config, now, wall_ms));
            }
            GroupState::PreparingRebalance => {
                effects.merge(self.try_complete_join(now, wall_ms));
            }
            GroupState::Empty | GroupState::Dead => {}
        }
        effects
    }

    // ---------------------------------------------------------------------------------------
    // Timers

    /// The earliest time [`Group::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<u64> {
        let members = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.sync_waiter.is_none())
            .map(|m| m.expires_at);
        let pending = self.pending.values().copied();
        let join = self.join_timer.as_ref().map(|t| t.at);
        members.chain(pending).chain(join).min()
    }

    /// Runs the timers due at `now`.
    pub fn tick(&mut self, config: &GroupConfig, now: u64, wall_ms: i64) -> Effects {
        let mut effects = Effects::default();
        let expired_pending: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired_pending {
            self.pending.remove(&id);
            effects.merge(self.try_complete_join(now, wall_ms));
        }
        // Members waiting in JoinGroup or SyncGroup are not expired: the waiting request is
        // their sign of life, and the rebalance deadline bounds the wait.
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.sync_waiter.is_none() && m.expires_at <= now)
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            effects.merge(self.remove_member(config, &id, now, wall_ms));
        }
        if let Some(timer) = self.join_timer.clone()
            && timer.at <= now
            && self.state == GroupState::PreparingRebalance
        {
            match timer.initial {
                Some(d) if d.new_member_added && d.remaining_ms > 0 => {
                    let delay =
                        (config.initial_rebalance_delay_ms.max(0) as u64).min(d.remaining_ms);
                    self.join_timer = Some(JoinTimer {
                        at: now + delay,
                        initial: Some(InitialDelay {
                            remaining_ms: d.remaining_ms - delay,
                            new_member_added: false,
                        }),
                    });
                }
                _ => effects.merge(self.complete_join(now, wall_ms)),
            }
        }
        if self.state == GroupState::Empty && self.members.is_empty() {
            self.join_timer = None;
        }
        effects
    }

    // ---------------------------------------------------------------------------------------
    // Offsets

    /// Checks an OffsetCommit against the group's membership (Kafka's rules: a commit with no
    /// generation is accepted from outside the group only while it is empty).
    pub fn validate_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: u64,
    ) -> Result<(), GroupError> {
        match self.state {
            GroupState::Dead => return Err(GroupError::CoordinatorNotAvailable),
            GroupState::Empty if generation < 0 => return Ok(()),
            _ => {}
        }
        if self.is_static_fenced(instance_id, member_id) {
            return Err(GroupError::FencedInstanceId);
        }
        // Outside the empty case, only a member of the current generation commits (Kafka 3+:
        // an anonymous commit to a group with members is UNKNOWN_MEMBER_ID, so an admin
        // reset cannot race live consumers).
        let current = self.generation;
        let Some(m) = self.members.get_mut(member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        if generation != current {
            return Err(GroupError::IllegalGeneration);
        }
        // A commit is a sign of life, as a heartbeat is.
        m.expires_at = now + m.session_timeout_ms as u64;
        // A member of the current generation that has not synced yet cannot know what it owns.
        if self.state == GroupState::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Records a committed offset written at `position` of `__consumer_offsets` (after it was
    /// persisted), or removes it (`None`). A write older than the one in place is ignored.
    pub fn set_offset(
        &mut self,
        topic: &str,
        partition: PartitionId,
        value: Option<OffsetValue>,
        position: Offset,
    ) {
        let key = (topic.to_string(), partition);
        if self.positions.get(&key).is_some_and(|p| *p > position) {
            return;
        }
        self.positions.insert(key.clone(), position);
        match value {
            Some(v) => {
                self.offsets.insert(key, v);
            }
            None => {
                self.offsets.remove(&key);
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Persistence

    /// The record describing the group now (members with their current assignments).
    pub fn stored_value(&self) -> GroupValue {
        let assignments = self
            .members
            .values()
            .map(|m| (m.id.clone(), m.assignment.clone()))
            .collect();
        self.value_with(&assignments)
    }

    /// The record describing the group with `assignments` in place of the current ones.
    pub fn value_with(&self, assignments: &BTreeMap<String, Bytes>) -> GroupValue {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: self.state_timestamp,
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(&protocol),
                    assignment: assignments.get(&m.id).cloned().unwrap_or_default(),
                })
                .collect(),
        }
    }

    /// Restores the group from its stored record (when a broker becomes the coordinator).
    /// Members get a full session from `now` to show up at their new coordinator.
    pub fn load(&mut self, v: GroupValue, now: u64) {
        self.generation = v.generation;
        self.protocol_type = (!v.protocol_type.is_empty()).then_some(v.protocol_type);
        self.protocol = v.protocol;
        self.leader = v.leader;
        self.state_timestamp = v.state_timestamp;
        self.members.clear();
        self.static_members.clear();
        self.pending.clear();
        self.join_timer = None;
        let protocol = self.protocol.clone().unwrap_or_default();
        for m in v.members {
            if let Some(i) = &m.instance_id {
                self.static_members.insert(i.clone(), m.member_id.clone());
            }
            self.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    protocol_type: self.protocol_type.clone().unwrap_or_default(),
                    protocols: vec![(protocol.clone(), m.subscription)],
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    assignment: m.assignment,
                    join_waiter: None,
                    sync_waiter: None,
                    expires_at: now + m.session_timeout_ms.max(0) as u64,
                },
            );
        }
        self.state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
    }

    /// Marks the group deleted: it answers nothing more and is forgotten by the caller.
    pub fn mark_dead(&mut self, wall_ms: i64) -> Result<(), GroupError> {
        match self.state {
            GroupState::Empty | GroupState::Dead => {
                self.offsets.clear();
                self.positions.clear();
                self.set_state(GroupState::Dead, wall_ms);
                Ok(())
            }
            _ => Err(GroupError::NonEmptyGroup),
        }
    }

    /// Every waiter, answered with `error` (the broker stopped coordinating this group).
    pub fn abandon(&mut self, error: GroupError) -> Vec<Reply> {
        let mut replies = Vec::new();
        for m in self.members.values_mut() {
            if let Some(w) = m.join_waiter.take() {
                replies.push(join_error(w, error, m.id.clone()));
            }
            if let Some(w) = m.sync_waiter.take() {
                replies.push(sync_error(w, error));
            }
        }
        replies
    }
}
