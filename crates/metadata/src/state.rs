//! Types and `apply`. See the crate docs for the rules.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use weir_model::acl::{AclBinding, AclFilter};
use weir_model::{
    BrokerEpoch, BrokerId, LeaderEpoch, PartitionEpoch, ScramCredential, ScramMechanism, TopicId,
    TopicName,
};

/// A named Kafka listener's advertised `host:port` (an entry of Kafka's
/// `advertised.listeners`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub listener: String,
    pub addr: String,
}

/// A broker as the cluster knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    pub id: BrokerId,
    /// The first listener's advertised address.
    pub kafka_addr: String,
    /// Every Kafka listener's advertised address; empty for a broker that registered before
    /// brokers sent them (its `kafka_addr` is then its only one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Endpoint>,
    pub internal_addr: String,
    pub rack: Option<String>,
    /// The index of the log entry that registered this incarnation.
    pub epoch: BrokerEpoch,
    /// Random per process start; re-registering with the same one is idempotent.
    pub incarnation: String,
    /// The id of the broker's data directory, made when the directory was first used (Kafka's
    /// `directory.id`). A broker that comes back with another one lost its disk: it holds none
    /// of the records it held. Empty when the broker did not say (older brokers).
    #[serde(default)]
    pub directory_id: String,
    pub fenced: bool,
    pub shutting_down: bool,
}

/// One partition's replicas, leader and ISR.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// Preference order: `replicas[0]` is the preferred leader. During a reassignment this is
    /// the union of the old and the target replicas.
    pub replicas: Vec<BrokerId>,
    pub leader: Option<BrokerId>,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
    /// Empty only while the partition is offline because its last in-sync replica came back
    /// with an empty disk (KIP-966's empty ISR): no replica is known to hold every committed
    /// record, so none is elected cleanly.
    pub isr: Vec<BrokerId>,
    /// Set while a reassignment runs.
    pub reassignment: Option<Reassignment>,
    /// Replicas that came back with an empty data directory and have not been in the ISR since.
    /// An unclean election never picks one of them while a replica outside this list is live:
    /// electing an empty log would make every other replica truncate to nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emptied: Vec<BrokerId>,
}

/// A reassignment in progress: `target` is where the replicas are going.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassignment {
    pub target: Vec<BrokerId>,
    /// The replica list before it started, for cancelling.
    pub original: Vec<BrokerId>,
}

impl Reassignment {
    pub fn adding(&self) -> Vec<BrokerId> {
        self.target
            .iter()
            .filter(|b| !self.original.contains(b))
            .copied()
            .collect()
    }
    pub fn removing(&self) -> Vec<BrokerId> {
        self.original
            .iter()
            .filter(|b| !self.target.contains(b))
            .copied()
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: TopicName,
    pub id: TopicId,
    /// Only the keys a user set.
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionRecord>,
}

/// Everything the quorum agrees on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataState {
    pub cluster_id: String,
    pub brokers: BTreeMap<BrokerId, BrokerRecord>,
    pub topics: BTreeMap<TopicName, TopicRecord>,
    pub next_producer_id: i64,
    /// SASL users and their SCRAM credentials, by user name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub users: BTreeMap<String, UserCredentials>,
    /// Access control lists.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub acls: BTreeSet<AclBinding>,
    /// The log index of the last applied command that changed something.
    pub version: u64,
}

/// One user's SCRAM credentials, a mechanism each at most.
pub type UserCredentials = BTreeMap<ScramMechanism, ScramCredential>;

/// A SCRAM credential to set (AlterUserScramCredentials' upsertion, already turned from a
/// salted password into stored and server keys by the broker).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramUpsertion {
    pub user: String,
    pub mechanism: ScramMechanism,
    pub credential: ScramCredential,
}

/// A SCRAM credential to remove.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramDeletion {
    pub user: String,
    pub mechanism: ScramMechanism,
}

/// A change proposed through Raft. Everything non-deterministic (UUIDs, the cluster id) is
/// decided by the proposer and carried here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// The first entry of a new cluster. Repeating it with the same id is a no-op; another id
    /// is refused (AlreadyInitialised).
    InitCluster {
        cluster_id: String,
    },
    /// A broker process starts. A new broker, or a new incarnation of a known one, gets the
    /// command's log index as its epoch and starts fenced (a restarted one is first taken out
    /// of its leaderships and ISRs, as FenceBroker does); the same incarnation again is a
    /// no-op. A known broker whose `directory_id` changed lost its disk: it leaves every ISR,
    /// even as the last member (the partition then stays offline rather than be led by an
    /// empty log), and is marked `emptied` there. Replies BrokerRegistered with the current
    /// epoch.
    RegisterBroker {
        id: BrokerId,
        kafka_addr: String,
        internal_addr: String,
        rack: Option<String>,
        incarnation: String,
        /// The broker's data-directory id; empty when it did not send one.
        #[serde(default)]
        directory_id: String,
        /// Its Kafka listeners' advertised addresses.
        #[serde(default)]
        endpoints: Vec<Endpoint>,
    },
    /// A broker's lease expired (proposed by the Raft leader, which tracks heartbeats). A stale
    /// epoch or an already fenced broker is a no-op.
    FenceBroker {
        id: BrokerId,
        epoch: BrokerEpoch,
    },
    /// A registered broker heartbeats again and has caught up with the metadata. Offline
    /// partitions it can lead get it as leader. A stale epoch is a no-op.
    UnfenceBroker {
        id: BrokerId,
        epoch: BrokerEpoch,
    },
    /// A broker asks to hand over its leaderships before it exits. Replies
    /// RemainingLeaderships: the broker retries until it is 0 (or its shutdown times out).
    ControlledShutdown {
        id: BrokerId,
        epoch: BrokerEpoch,
    },
    CreateTopic {
        name: TopicName,
        id: TopicId,
        /// Explicit replica lists, one per partition (the proposer ran placement or the user
        /// gave them).
        assignment: Vec<Vec<BrokerId>>,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: TopicName,
    },
    /// Adds partitions with the given replica lists.
    CreatePartitions {
        name: TopicName,
        assignment: Vec<Vec<BrokerId>>,
    },
    AlterConfigs {
        name: TopicName,
        configs: BTreeMap<String, String>,
    },
    /// An ISR change proposed by a partition's leader. Replies Partition with the record after
    /// the change (which may also have completed a reassignment).
    AlterPartition {
        broker: BrokerId,
        broker_epoch: BrokerEpoch,
        topic: TopicId,
        partition: i32,
        leader_epoch: LeaderEpoch,
        partition_epoch: PartitionEpoch,
        new_isr: Vec<BrokerId>,
    },
    /// Moves a partition's replicas to `target` (any length). Replaces a running
    /// reassignment's target; a target equal to the original replicas cancels it.
    Reassign {
        name: TopicName,
        partition: i32,
        target: Vec<BrokerId>,
    },
    /// Goes back to the replicas before the reassignment.
    CancelReassignment {
        name: TopicName,
        partition: i32,
    },
    /// Moves leadership to the preferred replica where it is in sync and unfenced; an empty
    /// list means every partition.
    ElectPreferredLeaders {
        partitions: Vec<(TopicName, i32)>,
    },
    /// Reserves a block of 1 to [`crate::PRODUCER_ID_BLOCK_MAX`] producer ids for a registered
    /// broker.
    AllocateProducerIds {
        broker: BrokerId,
        count: i32,
    },
    /// Sets and removes SCRAM credentials, all of one user's or none (Kafka's
    /// AlterUserScramCredentials): a user whose changes include a refused one gets that error
    /// and keeps the credentials it had. With `only_if_absent`, an upsertion for a mechanism the
    /// user already has is skipped, not refused (`--scram-user` at every start).
    AlterScramCredentials(ScramAlteration),
    /// Adds ACLs (Kafka's CreateAcls); an existing one counts as created.
    CreateAcls(Vec<AclBinding>),
    /// Removes the ACLs each filter matches (Kafka's DeleteAcls).
    DeleteAcls(Vec<AclFilter>),
}

/// AlterScramCredentials' changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramAlteration {
    pub upsertions: Vec<ScramUpsertion>,
    pub deletions: Vec<ScramDeletion>,
    pub only_if_absent: bool,
}

/// What a successful command returns to its proposer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Done,
    BrokerRegistered {
        epoch: BrokerEpoch,
    },
    TopicCreated {
        id: TopicId,
    },
    TopicDeleted {
        id: TopicId,
    },
    Partition(PartitionRecord),
    /// ControlledShutdown: how many partitions the broker still leads.
    RemainingLeaderships(u32),
    Elected(u32),
    ProducerIds {
        first: i64,
        count: i32,
    },
    /// AlterScramCredentials: each user named, with its refusal if it had one.
    ScramAltered(Vec<(String, Option<MetadataError>)>),
    /// CreateAcls: each ACL's refusal, in order, if it had one.
    AclsCreated(Vec<Option<MetadataError>>),
    /// DeleteAcls: what each filter removed, in order.
    AclsDeleted(Vec<Vec<AclBinding>>),
}

/// Which records an applied command changed, for the brokers' watch streams.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// Brokers whose record was created or changed.
    pub brokers: BTreeSet<BrokerId>,
    /// Topics whose record (configs or any partition) was created, changed or removed. A
    /// removed topic is no longer in [`MetadataState::topics`]; its id is in `removed_topics`.
    pub topics: BTreeSet<TopicName>,
    pub removed_topics: Vec<TopicId>,
    /// Users whose credentials changed; one no longer in [`MetadataState::users`] was removed.
    pub users: BTreeSet<String>,
    pub acls_added: Vec<AclBinding>,
    pub acls_removed: Vec<AclBinding>,
}

impl Changes {
    pub fn has_acl_changes(&self) -> bool {
        !self.acls_added.is_empty() || !self.acls_removed.is_empty()
    }

    /// True when no broker or topic record changed (a command may still have advanced the
    /// state, as AllocateProducerIds and InitCluster do).
    pub fn is_empty(&self) -> bool {
        self.brokers.is_empty()
            && self.topics.is_empty()
            && self.removed_topics.is_empty()
            && self.users.is_empty()
            && !self.has_acl_changes()
    }
}

/// Why a command was refused. Each maps to one Kafka error code ([`MetadataError::kafka_code`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MetadataError {
    #[error("topic '{0}' already exists")]
    TopicExists(TopicName),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("topic '{topic}' has no partition {partition}")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("broker {0} is not registered")]
    UnknownBroker(BrokerId),
    #[error("broker {id} epoch {given} is stale; current is {current}")]
    StaleBrokerEpoch {
        id: BrokerId,
        given: BrokerEpoch,
        current: BrokerEpoch,
    },
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    #[error("leader epoch {given} is stale; current is {current}")]
    FencedLeaderEpoch {
        given: LeaderEpoch,
        current: LeaderEpoch,
    },
    #[error("partition epoch {given} is stale; current is {current}")]
    InvalidUpdateVersion {
        given: PartitionEpoch,
        current: PartitionEpoch,
    },
    #[error("broker {0} does not lead this partition")]
    NotLeader(BrokerId),
    #[error("invalid ISR: {0}")]
    IneligibleReplica(String),
    #[error("no reassignment in progress for {topic}-{partition}")]
    NoReassignmentInProgress { topic: String, partition: i32 },
    /// InitCluster with a cluster id other than the one already set.
    #[error("the cluster is already initialised with another cluster id")]
    AlreadyInitialised,
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A credential to delete does not exist.
    #[error("{0}")]
    ResourceNotFound(String),
    /// A user's credential for one mechanism is both set and deleted, or set twice.
    #[error("{0}")]
    DuplicateResource(String),
    /// A credential out of bounds (iterations, salt, key lengths, user name).
    #[error("{0}")]
    UnacceptableCredential(String),
    /// The cluster has as many users as it allows.
    #[error("{0}")]
    PolicyViolation(String),
}

impl MetadataError {
    /// The Kafka error code a client sees for this refusal.
    pub fn kafka_code(&self) -> i16 {
        match self {
            MetadataError::TopicExists(_) => 36, // TOPIC_ALREADY_EXISTS
            MetadataError::UnknownTopic(_) => 3, // UNKNOWN_TOPIC_OR_PARTITION
            MetadataError::UnknownPartition { .. } => 3, // UNKNOWN_TOPIC_OR_PARTITION
            MetadataError::UnknownBroker(_) => 102, // BROKER_ID_NOT_REGISTERED
            MetadataError::StaleBrokerEpoch { .. } => 77, // STALE_BROKER_EPOCH
            MetadataError::InvalidPartitions(_) => 37, // INVALID_PARTITIONS
            MetadataError::InvalidReplicationFactor(_) => 38, // INVALID_REPLICATION_FACTOR
            MetadataError::InvalidReplicaAssignment(_) => 39, // INVALID_REPLICA_ASSIGNMENT
            MetadataError::FencedLeaderEpoch { .. } => 74, // FENCED_LEADER_EPOCH
            MetadataError::InvalidUpdateVersion { .. } => 95, // INVALID_UPDATE_VERSION
            MetadataError::NotLeader(_) => 6,    // NOT_LEADER_OR_FOLLOWER
            MetadataError::IneligibleReplica(_) => 107, // INELIGIBLE_REPLICA
            MetadataError::NoReassignmentInProgress { .. } => 85, // NO_REASSIGNMENT_IN_PROGRESS
            MetadataError::AlreadyInitialised => 104, // INCONSISTENT_CLUSTER_ID
            MetadataError::InvalidRequest(_) => 42, // INVALID_REQUEST
            MetadataError::ResourceNotFound(_) => 91, // RESOURCE_NOT_FOUND
            MetadataError::DuplicateResource(_) => 92, // DUPLICATE_RESOURCE
            MetadataError::UnacceptableCredential(_) => 93, // UNACCEPTABLE_CREDENTIAL
            MetadataError::PolicyViolation(_) => 44, // POLICY_VIOLATION
        }
    }
}

/// The outcome of applying one command: the reply for the proposer, or the refusal. A refused
/// command changes nothing.
pub type ApplyResult = Result<(Reply, Changes), MetadataError>;
