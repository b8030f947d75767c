//! The cluster's metadata as a state machine: a plain struct and a pure [`MetadataState::apply`].
//!
//! The coordinator replicates [`Command`]s through Raft and applies them here in log order on
//! every coordinator; nothing in this crate does I/O, reads a clock or draws random numbers, so
//! every coordinator reaches the same state from the same log, and tests can drive it directly.
//! Time and randomness arrive inside commands (a topic's UUID, the index of the log entry).
//!
//! What it holds: brokers (id, addresses, rack, epoch, fenced), topics (name, UUID, configs),
//! partitions (replicas, leader, leader epoch, partition epoch, ISR, reassignment in progress)
//! the next free block of producer ids, and SASL users' SCRAM credentials (never a password), and ACLs.
//!
//! The rules it enforces (Kafka's KRaft controller rules):
//! - A leader is always a member of the ISR, the ISR a non-empty subset of the replicas.
//! - A fenced broker (lease expired, or restarted: a new incarnation lost its memory) leads
//!   nothing and leaves every ISR it was in, unless it is the last member: then the partition
//!   goes offline, leader `None`, and keeps that member as its ISR so it can come back as
//!   leader without losing anything (when it unfences).
//! - A broker in controlled shutdown hands its leaderships to live ISR members and leaves the
//!   ISRs; where no other ISR member is live it keeps leading until a retry can move it.
//! - Every leader change bumps the leader epoch; every change to a partition's record bumps the
//!   partition epoch, by exactly one per command.
//! - New leaders come only from the ISR, unless the topic sets
//!   `unclean.leader.election.enable=true`; no partition stays offline while it has a live
//!   candidate.
//! - AlterPartition is fenced by broker epoch, leader epoch and partition epoch, and only the
//!   leader grows an ISR, with live replicas.
//! - A reassignment runs with the union of the old and target replicas, and completes once
//!   every target replica is in the ISR.
//!
//! Modules:
//! - `state`: the types ([`MetadataState`], [`Command`], [`Reply`], [`Changes`],
//!   [`MetadataError`]) and the Kafka error code of each refusal.
//! - `apply`: [`MetadataState::apply`], one method per command.
//! - `query`: read helpers ([`MetadataState::topic_by_id`], [`MetadataState::is_live`], ...)
//!   and [`MetadataState::check_invariants`].
//! - `users`: SASL users' SCRAM credentials (AlterScramCredentials).
//! - `acls`: access control lists (CreateAcls, DeleteAcls).
//! - [`placement`]: where a new topic's replicas go.
//!
//! ```text
//!  client / broker ──gRPC──▶ coordinator ──propose──▶ Raft log ──commit──▶ apply(index, cmd)
//!                                 ▲                                            │
//!                                 └──────── Reply / MetadataError ◀────────────┤
//!  brokers ◀──watch stream── records named in Changes ◀────────────────────────┘
//! ```

mod acls;
mod apply;
pub mod placement;
mod query;
mod state;
mod users;

pub use query::UNCLEAN_LEADER_ELECTION_KEY;
pub use state::*;
pub use weir_model::limits::PRODUCER_ID_BLOCK_MAX;

#[cfg(test)]
mod tests;
