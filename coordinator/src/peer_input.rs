//! The checks on what another coordinator sends (and on what our own store holds), before
//! openraft sees it.
//!
//! openraft trusts its peers: it computes `term + 1` and `index + 1` without checking, asserts
//! that appended entries are consecutive only in debug builds, and sizes the snapshot buffer
//! from a chunk's offset. The Raft port is reachable by anyone who can reach a coordinator, so
//! one forged message at term `u64::MAX` used to wrap the term at the next election and panic,
//! and, the vote being persisted, panic again after every restart. Here every field that
//! reaches openraft is held to the bounds in [`weir_model::limits`]:
//!
//! - terms: at most [`RAFT_TERM_MAX`], and a request at most [`RAFT_TERM_STEP_MAX`] above the
//!   receiver's own term (answers are held to the ceiling only, so a quorum still learns the
//!   term of an honest node that was partitioned away for long);
//! - log indexes: at most [`RAFT_LOG_INDEX_MAX`]; log ids no newer than the sender's vote;
//!   entries consecutive after `prev_log_id` with terms that never go back;
//! - memberships: one or two non-empty voter sets, every voter with a node, at most
//!   [`RAFT_MEMBERS_MAX`] nodes, addresses at most [`RAFT_NAME_BYTES_MAX`] bytes;
//! - snapshot chunks: ending within [`RAFT_SNAPSHOT_BYTES_MAX`];
//! - a request never claims to come from the receiver, and a candidate asking for a vote must
//!   be in the receiver's membership (when it has one: a fresh node has none yet).
//!
//! These checks refuse the absurd, not the forged: a peer that forges a plausible term and a
//! member's id can still disturb the quorum. Only authenticating peers (mTLS) stops that.

use crate::types::{Entry, LogId, NodeId, TypeConfig, Vote};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, EntryPayload, Membership};
use std::collections::BTreeSet;
use weir_model::limits::{
    RAFT_LOG_INDEX_MAX, RAFT_MEMBERS_MAX, RAFT_NAME_BYTES_MAX, RAFT_SNAPSHOT_BYTES_MAX,
    RAFT_TERM_MAX, RAFT_TERM_STEP_MAX,
};

/// What the receiving coordinator knows of itself when it judges a request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Receiver {
    pub id: NodeId,
    /// The term of the receiver's current vote.
    pub term: u64,
    /// The nodes (voters and learners) of the receiver's effective membership; empty on a
    /// node that was never initialised.
    pub members: BTreeSet<NodeId>,
}

/// Why a peer's message (or the local store) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{what} is at term {term}, above the ceiling {RAFT_TERM_MAX}")]
    TermAboveCeiling { what: &'static str, term: u64 },
    #[error(
        "{what} is at term {term}, more than {RAFT_TERM_STEP_MAX} above this coordinator's term {own}"
    )]
    TermJump {
        what: &'static str,
        term: u64,
        own: u64,
    },
    #[error("{what} is at log index {index}, above the ceiling {RAFT_LOG_INDEX_MAX}")]
    IndexAboveCeiling { what: &'static str, index: u64 },
    #[error("{what} is at term {term}, after the sender's own term {vote_term}")]
    LogAfterVote {
        what: &'static str,
        term: u64,
        vote_term: u64,
    },
    #[error("the message claims to come from coordinator {id}, the receiver itself")]
    ClaimsToBeReceiver { id: NodeId },
    #[error("candidate {id} is not in this coordinator's membership {members:?}")]
    NotAMember { id: NodeId, members: Vec<NodeId> },
    #[error("entry {position} is at index {found}; expected {expected} (consecutive entries)")]
    EntriesNotConsecutive {
        position: usize,
        expected: u64,
        found: u64,
    },
    #[error("entry {position} is at term {term}, before the term {before} of the entry before it")]
    EntryTermGoesBack {
        position: usize,
        term: u64,
        before: u64,
    },
    #[error("a membership with {configs} voter sets; one, or two while changing, are allowed")]
    MembershipConfigs { configs: usize },
    #[error("a membership with an empty voter set")]
    MembershipEmptyVoters,
    #[error("a membership naming {nodes} coordinators; at most {RAFT_MEMBERS_MAX}")]
    MembershipTooLarge { nodes: usize },
    #[error("voter {id} has no node (address) in its membership")]
    VoterWithoutNode { id: NodeId },
    #[error("{what} is {len} bytes; at most {RAFT_NAME_BYTES_MAX}")]
    NameTooLong { what: &'static str, len: usize },
    #[error(
        "a snapshot chunk at offset {offset} with {len} bytes ends past {RAFT_SNAPSHOT_BYTES_MAX}"
    )]
    SnapshotTooLarge { offset: u64, len: usize },
}

fn term_ceiling(what: &'static str, term: u64) -> Result<(), Refused> {
    if term > RAFT_TERM_MAX {
        return Err(Refused::TermAboveCeiling { what, term });
    }
    Ok(())
}

/// The vote a request is sent under: within the ceiling, within a step of the receiver's term,
/// and not the receiver's own identity.
fn request_vote(what: &'static str, vote: &Vote, rx: &Receiver) -> Result<(), Refused> {
    let term = vote.leader_id.term;
    term_ceiling(what, term)?;
    if term > rx.term.saturating_add(RAFT_TERM_STEP_MAX) {
        return Err(Refused::TermJump {
            what,
            term,
            own: rx.term,
        });
    }
    if vote.leader_id.node_id == rx.id {
        return Err(Refused::ClaimsToBeReceiver { id: rx.id });
    }
    Ok(())
}

/// A log id within the ceilings and, when the sender's term is known, not newer than it (a
/// node only holds entries of terms up to its own).
fn log_id(what: &'static str, id: &LogId, vote_term: Option<u64>) -> Result<(), Refused> {
    let term = id.leader_id.term;
    term_ceiling(what, term)?;
    if id.index > RAFT_LOG_INDEX_MAX {
        return Err(Refused::IndexAboveCeiling {
            what,
            index: id.index,
        });
    }
    match vote_term {
        Some(vote_term) if term > vote_term => Err(Refused::LogAfterVote {
            what,
            term,
            vote_term,
        }),
        _ => Ok(()),
    }
}

fn opt_log_id(
    what: &'static str,
    id: &Option<LogId>,
    vote_term: Option<u64>,
) -> Result<(), Refused> {
    id.as_ref().map_or(Ok(()), |id| log_id(what, id, vote_term))
}

/// A membership openraft can use without tripping over it (its own `ensure_valid`, plus size).
fn membership(m: &Membership<NodeId, BasicNode>) -> Result<(), Refused> {
    let configs = m.get_joint_config();
    if !(1..=2).contains(&configs.len()) {
        return Err(Refused::MembershipConfigs {
            configs: configs.len(),
        });
    }
    if configs.iter().any(BTreeSet::is_empty) {
        return Err(Refused::MembershipEmptyVoters);
    }
    let nodes = m.nodes().count();
    if nodes > RAFT_MEMBERS_MAX {
        return Err(Refused::MembershipTooLarge { nodes });
    }
    if let Some(id) = m.voter_ids().find(|id| m.get_node(id).is_none()) {
        return Err(Refused::VoterWithoutNode { id });
    }
    if let Some((_, n)) = m.nodes().find(|(_, n)| n.addr.len() > RAFT_NAME_BYTES_MAX) {
        return Err(Refused::NameTooLong {
            what: "a coordinator address",
            len: n.addr.len(),
        });
    }
    Ok(())
}

/// Entries follow `prev` one index at a time, their terms never go back, and none is newer
/// than the sender's term.
fn entries(prev: &Option<LogId>, list: &[Entry], vote_term: u64) -> Result<(), Refused> {
    let first = prev.map_or(0, |p| p.index + 1);
    let mut before = prev.map_or(0, |p| p.leader_id.term);
    for ((position, entry), expected) in list.iter().enumerate().zip(first..) {
        log_id("an entry", &entry.log_id, Some(vote_term))?;
        if entry.log_id.index != expected {
            return Err(Refused::EntriesNotConsecutive {
                position,
                expected,
                found: entry.log_id.index,
            });
        }
        let term = entry.log_id.leader_id.term;
        if term < before {
            return Err(Refused::EntryTermGoesBack {
                position,
                term,
                before,
            });
        }
        if let EntryPayload::Membership(m) = &entry.payload {
            membership(m)?;
        }
        before = term;
    }
    Ok(())
}

/// Checks an AppendEntries request.
pub fn append_entries(
    req: &AppendEntriesRequest<TypeConfig>,
    rx: &Receiver,
) -> Result<(), Refused> {
    request_vote("the leader's vote", &req.vote, rx)?;
    let term = Some(req.vote.leader_id.term);
    opt_log_id("prev_log_id", &req.prev_log_id, term)?;
    opt_log_id("leader_commit", &req.leader_commit, term)?;
    entries(&req.prev_log_id, &req.entries, req.vote.leader_id.term)
}

/// Checks a Vote request. Refusing a candidate this coordinator does not know as a member
/// costs at most this one vote, and a receiver that lacks the candidate's membership entry is
/// behind it anyway.
pub fn vote(req: &VoteRequest<NodeId>, rx: &Receiver) -> Result<(), Refused> {
    request_vote("the candidate's vote", &req.vote, rx)?;
    opt_log_id(
        "last_log_id",
        &req.last_log_id,
        Some(req.vote.leader_id.term),
    )?;
    let candidate = req.vote.leader_id.node_id;
    if !rx.members.is_empty() && !rx.members.contains(&candidate) {
        return Err(Refused::NotAMember {
            id: candidate,
            members: rx.members.iter().copied().collect(),
        });
    }
    Ok(())
}

/// Checks an InstallSnapshot chunk.
pub fn install_snapshot(
    req: &InstallSnapshotRequest<TypeConfig>,
    rx: &Receiver,
) -> Result<(), Refused> {
    request_vote("the leader's vote", &req.vote, rx)?;
    let term = Some(req.vote.leader_id.term);
    let meta = &req.meta;
    opt_log_id("the snapshot's last_log_id", &meta.last_log_id, term)?;
    opt_log_id(
        "the snapshot's membership log id",
        meta.last_membership.log_id(),
        term,
    )?;
    membership(meta.last_membership.membership())?;
    if meta.snapshot_id.len() > RAFT_NAME_BYTES_MAX {
        return Err(Refused::NameTooLong {
            what: "the snapshot id",
            len: meta.snapshot_id.len(),
        });
    }
    let end = req.offset.checked_add(req.data.len() as u64);
    if end.is_none_or(|end| end > RAFT_SNAPSHOT_BYTES_MAX) {
        return Err(Refused::SnapshotTooLarge {
            offset: req.offset,
            len: req.data.len(),
        });
    }
    Ok(())
}

/// An answer from a peer, checked before openraft acts on it. Only the ceilings apply: the
/// peer was called at a member's address, and a quorum must be able to learn a higher term
/// from an honest node that was partitioned away.
pub trait PeerAnswer {
    fn check(&self) -> Result<(), Refused>;
}

impl PeerAnswer for VoteResponse<NodeId> {
    fn check(&self) -> Result<(), Refused> {
        term_ceiling("the voter's vote", self.vote.leader_id.term)?;
        opt_log_id("the voter's last_log_id", &self.last_log_id, None)
    }
}

impl PeerAnswer for AppendEntriesResponse<NodeId> {
    fn check(&self) -> Result<(), Refused> {
        match self {
            AppendEntriesResponse::HigherVote(v) => {
                term_ceiling("the follower's vote", v.leader_id.term)
            }
            AppendEntriesResponse::PartialSuccess(matching) => {
                opt_log_id("the follower's matching log id", matching, None)
            }
            AppendEntriesResponse::Success | AppendEntriesResponse::Conflict => Ok(()),
        }
    }
}

impl PeerAnswer for InstallSnapshotResponse<NodeId> {
    fn check(&self) -> Result<(), Refused> {
        term_ceiling("the follower's vote", self.vote.leader_id.term)
    }
}

impl<T: PeerAnswer, E> PeerAnswer for Result<T, E> {
    fn check(&self) -> Result<(), Refused> {
        self.as_ref().map_or(Ok(()), PeerAnswer::check)
    }
}

/// Checks the Raft state a coordinator is about to start from. A store holding a vote or a log
/// id past the ceilings was written before these checks existed, from a forged message; the
/// vote cannot be lowered safely (this node may have voted in any term below it), so the
/// coordinator refuses to start rather than panic at its first election.
pub fn stored(vote: Option<&Vote>, last: Option<&LogId>) -> Result<(), Refused> {
    if let Some(v) = vote {
        term_ceiling("the stored vote", v.leader_id.term)?;
    }
    last.map_or(Ok(()), |l| log_id("the last stored log id", l, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, SnapshotMeta, StoredMembership};
    use std::collections::BTreeMap;

    fn rx(term: u64) -> Receiver {
        Receiver {
            id: 1,
            term,
            members: BTreeSet::from([1, 2, 3]),
        }
    }

    fn lid(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 2), index)
    }

    fn append(term: u64) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(term, 2),
            prev_log_id: None,
            entries: Vec::new(),
            leader_commit: None,
        }
    }

    fn blank(term: u64, index: u64) -> Entry {
        Entry {
            log_id: lid(term, index),
            payload: EntryPayload::Blank,
        }
    }

    fn members(voters: &[u64], nodes: &[u64]) -> Membership<NodeId, BasicNode> {
        let nodes: BTreeMap<NodeId, BasicNode> = nodes
            .iter()
            .map(|id| (*id, BasicNode::new(format!("127.0.0.1:{id}"))))
            .collect();
        Membership::new(vec![voters.iter().copied().collect()], nodes)
    }

    /// A term past the ceiling, or more than a step above the receiver's, is refused on every
    /// request; the ceiling itself and a full step are accepted.
    #[test]
    fn absurd_terms_are_refused() {
        for term in [u64::MAX, u64::MAX - 1, RAFT_TERM_MAX + 1] {
            let e = append_entries(&append(term), &rx(RAFT_TERM_MAX)).unwrap_err();
            assert!(matches!(e, Refused::TermAboveCeiling { .. }), "{e}");
            let v = VoteRequest::new(Vote::new(term, 2), None);
            assert!(vote(&v, &rx(RAFT_TERM_MAX)).is_err());
        }
        assert_eq!(
            append_entries(&append(RAFT_TERM_MAX), &rx(RAFT_TERM_MAX)),
            Ok(())
        );
        assert_eq!(
            append_entries(&append(5 + RAFT_TERM_STEP_MAX), &rx(5)),
            Ok(())
        );
        let e = append_entries(&append(6 + RAFT_TERM_STEP_MAX), &rx(5)).unwrap_err();
        assert!(matches!(e, Refused::TermJump { own: 5, .. }), "{e}");
        // Below the receiver's term is openraft's to refuse, not ours.
        assert_eq!(append_entries(&append(0), &rx(5)), Ok(()));
    }

    /// Log ids past the index ceiling or newer than the sender's term are refused.
    #[test]
    fn absurd_log_ids_are_refused() {
        let mut r = append(3);
        r.prev_log_id = Some(lid(3, u64::MAX));
        let e = append_entries(&r, &rx(3)).unwrap_err();
        assert!(matches!(e, Refused::IndexAboveCeiling { .. }), "{e}");
        let mut r = append(3);
        r.leader_commit = Some(lid(4, 10));
        let e = append_entries(&r, &rx(3)).unwrap_err();
        assert!(matches!(e, Refused::LogAfterVote { term: 4, .. }), "{e}");
        let v = VoteRequest::new(Vote::new(3, 2), Some(lid(3, RAFT_LOG_INDEX_MAX + 1)));
        assert!(vote(&v, &rx(3)).is_err());
    }

    /// Entries follow prev_log_id one index at a time, terms never going back.
    #[test]
    fn entries_must_be_consecutive() {
        let mut r = append(3);
        r.prev_log_id = Some(lid(1, 4));
        r.entries = vec![blank(1, 5), blank(2, 6), blank(3, 7)];
        assert_eq!(append_entries(&r, &rx(3)), Ok(()));
        r.entries = vec![blank(1, 5), blank(2, 7)];
        let e = append_entries(&r, &rx(3)).unwrap_err();
        assert!(matches!(
            e,
            Refused::EntriesNotConsecutive { position: 1, .. }
        ));
        r.entries = vec![blank(2, 5), blank(1, 6)];
        let e = append_entries(&r, &rx(3)).unwrap_err();
        assert!(matches!(e, Refused::EntryTermGoesBack { position: 1, .. }));
        r.entries = vec![blank(0, 5)];
        let e = append_entries(&r, &rx(3)).unwrap_err();
        assert!(matches!(e, Refused::EntryTermGoesBack { position: 0, .. }));
        r.entries = vec![blank(4, 5)];
        assert!(
            append_entries(&r, &rx(3)).is_err(),
            "an entry past the vote"
        );
        r.prev_log_id = None;
        r.entries = vec![blank(1, 0)];
        assert_eq!(append_entries(&r, &rx(3)), Ok(()));
    }

    /// Memberships openraft would trip over, or that name too many nodes, are refused.
    #[test]
    fn absurd_memberships_are_refused() {
        let mut r = append(3);
        let entry = |m| Entry {
            log_id: lid(3, 0),
            payload: EntryPayload::Membership(m),
        };
        r.entries = vec![entry(members(&[1, 2, 3], &[1, 2, 3, 4]))];
        assert_eq!(append_entries(&r, &rx(3)), Ok(()));
        let mut no_node = members(&[1], &[1]);
        // Deserialised, not built: openraft's constructor would fill the node in.
        no_node = serde_json::from_str(
            &serde_json::to_string(&no_node)
                .unwrap()
                .replace("[[1]]", "[[1,9]]"),
        )
        .unwrap();
        r.entries = vec![entry(no_node)];
        assert_eq!(
            append_entries(&r, &rx(3)),
            Err(Refused::VoterWithoutNode { id: 9 })
        );
        let many: Vec<u64> = (1..=RAFT_MEMBERS_MAX as u64 + 1).collect();
        r.entries = vec![entry(members(&[1], &many))];
        assert!(matches!(
            append_entries(&r, &rx(3)),
            Err(Refused::MembershipTooLarge { .. })
        ));
        r.entries = vec![entry(members(&[], &[1]))];
        assert_eq!(
            append_entries(&r, &rx(3)),
            Err(Refused::MembershipEmptyVoters)
        );
    }

    /// A chunk ending past the snapshot limit (or past u64) is refused before openraft sizes
    /// its buffer from the offset.
    #[test]
    fn snapshot_chunks_stay_within_the_limit() {
        let chunk = |offset: u64| InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 2),
            meta: SnapshotMeta {
                last_log_id: Some(lid(3, 10)),
                last_membership: StoredMembership::new(Some(lid(1, 1)), members(&[1], &[1])),
                snapshot_id: "3-10".to_string(),
            },
            offset,
            data: vec![0; 16],
            done: false,
        };
        assert_eq!(install_snapshot(&chunk(0), &rx(3)), Ok(()));
        for offset in [RAFT_SNAPSHOT_BYTES_MAX, 1 << 40, u64::MAX] {
            assert!(matches!(
                install_snapshot(&chunk(offset), &rx(3)),
                Err(Refused::SnapshotTooLarge { .. })
            ));
        }
    }

    /// Only members may ask for a vote, and nobody may pose as the receiver; a node that was
    /// never initialised knows no members and judges nobody.
    #[test]
    fn candidates_must_be_members_and_not_the_receiver() {
        let v = |id| VoteRequest::new(Vote::new(4, id), None);
        assert_eq!(vote(&v(2), &rx(3)), Ok(()));
        assert!(matches!(
            vote(&v(9), &rx(3)),
            Err(Refused::NotAMember { id: 9, .. })
        ));
        assert_eq!(
            vote(&v(1), &rx(3)),
            Err(Refused::ClaimsToBeReceiver { id: 1 })
        );
        let fresh = Receiver {
            id: 1,
            term: 0,
            members: BTreeSet::new(),
        };
        assert_eq!(vote(&v(9), &fresh), Ok(()));
    }

    /// Answers are held to the ceilings only; an error answer carries nothing to check.
    #[test]
    fn answers_past_the_ceiling_are_refused() {
        let high = Vote::new(u64::MAX, 2);
        let answer = VoteResponse {
            vote: high,
            vote_granted: false,
            last_log_id: None,
        };
        assert!(answer.check().is_err());
        assert!(AppendEntriesResponse::HigherVote(high).check().is_err());
        assert!(InstallSnapshotResponse { vote: high }.check().is_err());
        let far = Vote::new(RAFT_TERM_STEP_MAX * 4, 2);
        assert_eq!(AppendEntriesResponse::HigherVote(far).check(), Ok(()));
        let err: Result<AppendEntriesResponse<NodeId>, ()> = Err(());
        assert_eq!(err.check(), Ok(()));
    }

    /// A store written from a forged message before these checks is refused at start.
    #[test]
    fn a_stored_vote_past_the_ceiling_is_refused() {
        assert_eq!(
            stored(Some(&Vote::new_committed(7, 2)), Some(&lid(7, 9))),
            Ok(())
        );
        assert!(stored(Some(&Vote::new_committed(u64::MAX, 2)), None).is_err());
        assert!(stored(None, Some(&lid(1, u64::MAX))).is_err());
    }
}
