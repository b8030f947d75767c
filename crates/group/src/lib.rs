//! Consumer-group coordination without I/O.
//!
//! - [`group`]: one group under Kafka's classic rebalance protocol (JoinGroup, SyncGroup,
//!   Heartbeat, LeaveGroup, offset commits), driven by calls and a clock passed in.
//! - [`records`]: the `__consumer_offsets` keys and values, in Kafka's formats.
//! - [`consumer`]: a KIP-848 consumer group (server-side assignment, member epochs).
//! - [`consumer_protocol`]: reading subscriptions and assignments of the `consumer` protocol.
//! - [`partition_for`]: which `__consumer_offsets` partition (hence which broker) coordinates
//!   a group.
//!
//! The broker owns the I/O: it routes requests to the group's coordinator, writes what the
//! groups ask to persist, waits for replication, and answers waiting requests.

pub mod consumer;
pub mod consumer_protocol;
pub mod group;
pub mod records;

pub use group::{
    Effects, Group, GroupConfig, GroupState, JoinOutcome, JoinRequest, JoinResponse, JoinedMember,
    Member, Reply, SyncOutcome, SyncResponse, Waiter,
};

use std::fmt;

/// A consumer group's id (`group.id`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(pub String);

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The errors of group coordination, each one a Kafka error code at the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("the member id is not known to the group")]
    UnknownMemberId,
    #[error("the generation is not the group's current one")]
    IllegalGeneration,
    #[error("the group is rebalancing; rejoin")]
    RebalanceInProgress,
    #[error("the protocol type or protocols do not match the group's")]
    InconsistentGroupProtocol,
    #[error(
        "the session timeout is outside group.min.session.timeout.ms..group.max.session.timeout.ms"
    )]
    InvalidSessionTimeout,
    #[error("a new member must rejoin with the member id it was given")]
    MemberIdRequired,
    #[error("another member with the same group.instance.id has replaced this one")]
    FencedInstanceId,
    #[error("the group has group.max.size members")]
    GroupMaxSizeReached,
    #[error("the group has members")]
    NonEmptyGroup,
    #[error("the group does not exist")]
    GroupIdNotFound,
    #[error("the coordinator is not available")]
    CoordinatorNotAvailable,
    #[error("this broker is not the group's coordinator")]
    NotCoordinator,
    #[error("the coordinator is loading the group's state")]
    CoordinatorLoadInProgress,
    #[error("the commit metadata is longer than offset.metadata.max.bytes")]
    OffsetMetadataTooLarge,
    #[error("the group subscribes to the topic")]
    GroupSubscribedToTopic,
    #[error("the group id is empty")]
    InvalidGroupId,
    #[error("the request timed out")]
    RequestTimedOut,
    #[error("the member epoch is fenced; rejoin with epoch 0")]
    FencedMemberEpoch,
    #[error("the member epoch is not the member's current one")]
    StaleMemberEpoch,
    #[error("the request is malformed for this protocol")]
    InvalidRequest,
}

/// The `__consumer_offsets` partition that stores `group`, as Kafka computes it (the Java
/// `String.hashCode` of the id, made non-negative, modulo the partition count), so a group
/// maps to the same partition number in Weir as in Kafka.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // Kafka's Utils.abs: i32::MIN maps to 0 rather than overflowing.
    let h = if h == i32::MIN { 0 } else { h.abs() };
    h % partitions.max(1)
}

#[cfg(test)]
mod tests;
