//! The Raft type configuration and the messages coordinators exchange besides Raft's own.
//!
//! Raft payloads (log entries, votes, snapshots) and forwarded requests travel as JSON inside
//! `weir.v1.RaftMessage.json`. They are openraft's own serde types: they never leave the
//! quorum, and they change with the openraft version, so a protobuf schema would only
//! duplicate them and drift. JSON keeps them readable in a packet capture and in the log store.

use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use weir_metadata::{Command, MetadataError, Reply};

/// A coordinator's id in the quorum (openraft's node id).
pub type NodeId = u64;

/// What applying one log entry gave: the command's reply or its refusal. Blank and membership
/// entries give `Ok(Reply::Done)`.
pub type CommandResult = Result<Reply, MetadataError>;

openraft::declare_raft_types!(
    /// Weir's Raft: [`Command`]s in, [`CommandResult`]s out, nodes known by their gRPC address.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, BasicNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;

/// A request that only the Raft leader can serve, passed on by a coordinator that is not the
/// leader (the `Raft.Forward` RPC). The receiver executes it locally and never forwards it
/// again, so a request makes at most one hop.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ForwardRequest {
    /// Propose a command.
    Write(Command),
    /// A broker's heartbeat: leases live on the leader only.
    Heartbeat {
        broker_id: i32,
        broker_epoch: i64,
        metadata_version: i64,
    },
    AddCoordinator {
        id: NodeId,
        addr: String,
    },
    RemoveCoordinator {
        id: NodeId,
    },
    /// Raft's ReadIndex: the leader confirms it still leads and names the log index a
    /// linearizable read must have applied.
    ReadIndex,
}

/// The leader's answer to a [`ForwardRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ForwardResponse {
    /// The command was committed at `index` with this result.
    Written {
        index: u64,
        result: CommandResult,
    },
    Heartbeat(HeartbeatOutcome),
    ReadIndex {
        index: u64,
    },
    /// The quorum change was committed at `index`.
    QuorumChanged {
        index: u64,
    },
    /// The receiver is not the leader (any more); the sender should retry later.
    NotLeader {
        leader: Option<NodeId>,
    },
    /// Raft refused the request for another reason.
    Failed {
        message: String,
    },
}

/// The leader's answer to a broker's heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatOutcome {
    /// A Kafka error code and message, when the heartbeat was refused.
    pub error: Option<(i32, String)>,
    pub fenced: bool,
}
