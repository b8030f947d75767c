//! The broker's errors, and the one place where internal errors become Kafka error codes.

use crate::partition::{AppendError, NotServed, WaitError};
use kafka_protocol::ResponseError;
use std::path::PathBuf;
use weir_group::GroupError;
use weir_storage::{BatchError, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `meta.properties` is damaged or names another broker; or a partition's `topic.id` is
    /// damaged. Never guessed around: see `data_dir`.
    #[error("{path}: {reason}")]
    DataDirMeta { path: PathBuf, reason: String },
    #[error("binding Kafka listener {listener} to {addr}")]
    Bind {
        listener: String,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("no Kafka listener configured; at least one is needed")]
    NoListener,
    #[error("binding the replication listener to {addr}")]
    BindInternal {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot bind the metrics listener on {addr}")]
    BindMetrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the coordinators")]
    Control(#[from] weir_coordinator_client::ControlError),
    #[error("the coordinators refused: {0}")]
    Coordinator(String),
    #[error("partition {topic}-{partition}")]
    Storage {
        topic: String,
        partition: i32,
        #[source]
        source: StorageError,
    },
}

/// The Kafka error code for a storage error, as a produce, fetch or list-offsets response
/// carries it. Exhaustive on purpose: a new storage error must be given a code here.
pub fn storage_error_code(e: &StorageError) -> ResponseError {
    use StorageError as S;
    match e {
        S::CorruptBatch(b) => batch_error_code(b),
        // Keyless records on a compacted topic: Kafka's INVALID_RECORD (87), not retried.
        S::ControlBatchRefused { .. }
        | S::DuplicateAmongBatches { .. }
        | S::RecordWithoutKey { .. } => ResponseError::InvalidRecord,
        // The log was closed under the request: its topic was deleted.
        S::Closed { .. } => ResponseError::UnknownTopicOrPartition,
        S::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
        S::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        S::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        S::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        S::StaleLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
        // A follower's copy that does not continue its log: the fetcher re-syncs.
        S::NonContiguousReplica { .. } => ResponseError::OffsetOutOfRange,
        // Damaged files (the partition is offline here) and failed writes (the log directory
        // is offline): KAFKA_STORAGE_ERROR, which clients retry elsewhere after a metadata
        // refresh, as with Kafka's offline log directories.
        S::Io { .. }
        | S::Fatal { .. }
        | S::UnsupportedFormat { .. }
        | S::CorruptMetadata { .. }
        | S::CorruptLog { .. } => ResponseError::KafkaStorageError,
    }
}

/// The Kafka error code for a partition this broker cannot serve.
pub fn not_served_code(e: NotServed) -> ResponseError {
    match e {
        NotServed::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        NotServed::NotLeader => ResponseError::NotLeaderOrFollower,
        NotServed::Offline => ResponseError::KafkaStorageError,
    }
}

/// The Kafka error code for a refused append as leader.
pub fn append_error_code(e: &AppendError) -> ResponseError {
    match e {
        AppendError::LogDirOffline { .. } => ResponseError::KafkaStorageError,
        AppendError::EpochMoved { .. } | AppendError::NotLeader { .. } => {
            ResponseError::NotLeaderOrFollower
        }
        AppendError::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas,
        AppendError::Storage(e) => storage_error_code(e),
    }
}

/// The Kafka error code for an acks=all wait that ended unacknowledged. A leadership lost
/// while waiting is NOT_LEADER_OR_FOLLOWER: the client retries on the new leader, which dedupes
/// an idempotent producer's batch if it already has it.
pub fn wait_error_code(e: &WaitError) -> ResponseError {
    match e {
        WaitError::LeadershipMoved { .. } | WaitError::NoLongerHosted { .. } => {
            ResponseError::NotLeaderOrFollower
        }
        WaitError::NotEnoughReplicasAfterAppend { .. } => {
            ResponseError::NotEnoughReplicasAfterAppend
        }
        WaitError::TimedOut { .. } => ResponseError::RequestTimedOut,
    }
}

/// The Kafka error code for a group coordinator error: the same names, one to one.
pub fn group_error_code(e: GroupError) -> ResponseError {
    match e {
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
        GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
        GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        GroupError::NotCoordinator => ResponseError::NotCoordinator,
        GroupError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        GroupError::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
        GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::RequestTimedOut => ResponseError::RequestTimedOut,
        GroupError::FencedMemberEpoch => ResponseError::FencedMemberEpoch,
        GroupError::StaleMemberEpoch => ResponseError::StaleMemberEpoch,
        GroupError::InvalidRequest => ResponseError::InvalidRequest,
    }
}

/// As Kafka sorts them: damage in transit (bad CRC, cut short) is CORRUPT_MESSAGE, which
/// clients retry; a batch that is well-formed but wrong is INVALID_RECORD, which they do not.
fn batch_error_code(e: &BatchError) -> ResponseError {
    use BatchError as B;
    match e {
        B::Empty
        | B::Truncated { .. }
        | B::BadLength { .. }
        | B::CrcMismatch { .. }
        | B::BadCompression { .. } => ResponseError::CorruptMessage,
        B::BadMagic { .. } => ResponseError::UnsupportedForMessageFormat,
        B::TooLarge { .. } => ResponseError::MessageTooLarge,
        B::BadRecordCount { .. }
        | B::BadTimestamps { .. }
        | B::UnknownCompression { .. }
        | B::BadProducerFields { .. }
        | B::BadRecords { .. } => ResponseError::InvalidRecord,
    }
}

/// A storage error that means the environment is broken (fsync failed): the broker must not
/// limp on, because acknowledged data may not be on disk.
pub fn is_fatal(e: &StorageError) -> bool {
    e.is_fatal()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use weir_model::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};

    /// Proves: the codes Weir's gRPC carries (`weir_proto::codes`) are Kafka's, name for name.
    #[test]
    fn wire_codes_are_kafkas() {
        for &(name, code) in weir_proto::codes::ALL {
            let kafka = i16::try_from(code)
                .ok()
                .and_then(ResponseError::try_from_code)
                .map_or_else(|| "NONE".to_string(), |e| e.to_string());
            let mut screaming = String::new();
            for (i, c) in kafka.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 && kafka != "NONE" {
                    screaming.push('_');
                }
                screaming.push(c.to_ascii_uppercase());
            }
            assert_eq!(screaming, name, "code {code}");
        }
    }

    /// Proves: every storage error has the Kafka code a client expects. `storage_error_code`
    /// is an exhaustive match, so a new variant fails to compile until it is given a code;
    /// this pins the codes themselves.
    #[test]
    fn storage_errors_map_to_kafka_codes() {
        let io = || std::io::Error::other("x");
        let p = || PathBuf::from("/d");
        let cases: Vec<(StorageError, ResponseError)> = vec![
            (
                StorageError::Io {
                    path: p(),
                    op: "w",
                    source: io(),
                },
                ResponseError::KafkaStorageError,
            ),
            (
                StorageError::Fatal {
                    path: p(),
                    op: "fsync",
                    source: io(),
                },
                ResponseError::KafkaStorageError,
            ),
            (
                StorageError::CorruptBatch(BatchError::CrcMismatch {
                    at: 0,
                    stored: 1,
                    computed: 2,
                }),
                ResponseError::CorruptMessage,
            ),
            (
                StorageError::CorruptBatch(BatchError::Empty),
                ResponseError::CorruptMessage,
            ),
            (
                StorageError::CorruptBatch(BatchError::BadCompression {
                    at: 0,
                    codec: weir_storage::Compression::Gzip,
                    reason: "not gzip",
                }),
                ResponseError::CorruptMessage,
            ),
            (
                StorageError::CorruptLog {
                    path: p(),
                    position: 61,
                    expected_offset: Offset(3),
                    reason: "CRC mismatch".into(),
                },
                ResponseError::KafkaStorageError,
            ),
            (
                StorageError::CorruptBatch(BatchError::BadMagic { at: 0, magic: 1 }),
                ResponseError::UnsupportedForMessageFormat,
            ),
            (
                StorageError::CorruptBatch(BatchError::BadRecordCount {
                    at: 0,
                    count: 2,
                    last_offset_delta: 0,
                }),
                ResponseError::InvalidRecord,
            ),
            (
                StorageError::CorruptBatch(BatchError::BadTimestamps {
                    at: 0,
                    base: 2,
                    max: 1,
                }),
                ResponseError::InvalidRecord,
            ),
            (
                StorageError::RecordTooLarge { size: 2, max: 1 },
                ResponseError::MessageTooLarge,
            ),
            (
                StorageError::OffsetOutOfRange {
                    offset: Offset(9),
                    log_start: Offset(0),
                    log_end: Offset(1),
                },
                ResponseError::OffsetOutOfRange,
            ),
            (
                StorageError::OutOfOrderSequence {
                    producer_id: ProducerId(1),
                    epoch: ProducerEpoch(0),
                    sequence: 9,
                    last_sequence: Some(1),
                },
                ResponseError::OutOfOrderSequenceNumber,
            ),
            (
                StorageError::InvalidProducerEpoch {
                    producer_id: ProducerId(1),
                    epoch: ProducerEpoch(0),
                    current: ProducerEpoch(1),
                },
                ResponseError::InvalidProducerEpoch,
            ),
            (
                StorageError::StaleLeaderEpoch {
                    epoch: LeaderEpoch(0),
                    latest: LeaderEpoch(1),
                },
                ResponseError::FencedLeaderEpoch,
            ),
            (
                StorageError::ControlBatchRefused { at: 0 },
                ResponseError::InvalidRecord,
            ),
            (
                StorageError::DuplicateAmongBatches { at: 0 },
                ResponseError::InvalidRecord,
            ),
            (
                StorageError::UnsupportedFormat {
                    path: p(),
                    found: 9,
                    supported: 1,
                },
                ResponseError::KafkaStorageError,
            ),
            (
                StorageError::CorruptMetadata {
                    path: p(),
                    reason: "x".into(),
                },
                ResponseError::KafkaStorageError,
            ),
            (
                StorageError::Closed { dir: p() },
                ResponseError::UnknownTopicOrPartition,
            ),
            (
                StorageError::RecordWithoutKey { at: 0 },
                ResponseError::InvalidRecord,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(storage_error_code(&e), want, "{e}");
        }
        assert!(is_fatal(&StorageError::Fatal {
            path: p(),
            op: "fsync",
            source: io()
        }));
        assert!(!is_fatal(&StorageError::Io {
            path: p(),
            op: "w",
            source: io()
        }));
    }

    /// Every group coordinator error, named in a match so that a new one fails to compile here.
    fn all_group_errors() -> Vec<GroupError> {
        use GroupError as G;
        let all = vec![
            G::UnknownMemberId,
            G::IllegalGeneration,
            G::RebalanceInProgress,
            G::InconsistentGroupProtocol,
            G::InvalidSessionTimeout,
            G::MemberIdRequired,
            G::FencedInstanceId,
            G::GroupMaxSizeReached,
            G::NonEmptyGroup,
            G::GroupIdNotFound,
            G::CoordinatorNotAvailable,
            G::NotCoordinator,
            G::CoordinatorLoadInProgress,
            G::OffsetMetadataTooLarge,
            G::GroupSubscribedToTopic,
            G::InvalidGroupId,
            G::RequestTimedOut,
            G::FencedMemberEpoch,
            G::StaleMemberEpoch,
            G::InvalidRequest,
        ];
        for e in &all {
            match e {
                G::UnknownMemberId
                | G::IllegalGeneration
                | G::RebalanceInProgress
                | G::InconsistentGroupProtocol
                | G::InvalidSessionTimeout
                | G::MemberIdRequired
                | G::FencedInstanceId
                | G::GroupMaxSizeReached
                | G::NonEmptyGroup
                | G::GroupIdNotFound
                | G::CoordinatorNotAvailable
                | G::NotCoordinator
                | G::CoordinatorLoadInProgress
                | G::OffsetMetadataTooLarge
                | G::GroupSubscribedToTopic
                | G::InvalidGroupId
                | G::RequestTimedOut
                | G::FencedMemberEpoch
                | G::StaleMemberEpoch
                | G::InvalidRequest => {}
            }
        }
        all
    }

    /// Proves: each group error becomes the Kafka error of the same name, all of them.
    #[test]
    fn group_errors_map_to_the_kafka_codes_of_their_names() {
        for e in all_group_errors() {
            assert_eq!(
                format!("{e:?}"),
                format!("{:?}", group_error_code(e)),
                "{e}"
            );
        }
    }

    /// Proves: the partition's refusals carry the codes clients act on: NOT_LEADER_OR_FOLLOWER
    /// (refresh metadata, retry on the new leader), NOT_ENOUGH_REPLICAS(_AFTER_APPEND),
    /// REQUEST_TIMED_OUT, KAFKA_STORAGE_ERROR.
    #[test]
    fn partition_errors_map_to_kafka_codes() {
        use weir_model::{BrokerId, PartitionId, TopicName};
        let topic = || TopicName::new("t").unwrap();
        let partition = PartitionId(0);
        let appends = [
            (
                AppendError::LogDirOffline {
                    broker: BrokerId(1),
                    reason: "full".into(),
                },
                ResponseError::KafkaStorageError,
            ),
            (
                AppendError::EpochMoved {
                    topic: topic(),
                    partition,
                    epoch: LeaderEpoch(3),
                },
                ResponseError::NotLeaderOrFollower,
            ),
            (
                AppendError::NotLeader {
                    broker: BrokerId(1),
                    topic: topic(),
                    partition,
                },
                ResponseError::NotLeaderOrFollower,
            ),
            (
                AppendError::NotEnoughReplicas {
                    topic: topic(),
                    partition,
                    isr: 1,
                    min_insync: 2,
                },
                ResponseError::NotEnoughReplicas,
            ),
            (
                AppendError::Storage(StorageError::RecordTooLarge { size: 2, max: 1 }),
                ResponseError::MessageTooLarge,
            ),
        ];
        for (e, want) in appends {
            assert_eq!(append_error_code(&e), want, "{e}");
        }
        let waits = [
            (
                WaitError::LeadershipMoved {
                    topic: topic(),
                    partition,
                },
                ResponseError::NotLeaderOrFollower,
            ),
            (
                WaitError::NoLongerHosted {
                    topic: topic(),
                    partition,
                },
                ResponseError::NotLeaderOrFollower,
            ),
            (
                WaitError::NotEnoughReplicasAfterAppend {
                    topic: topic(),
                    partition,
                    isr: 1,
                    min_insync: 2,
                },
                ResponseError::NotEnoughReplicasAfterAppend,
            ),
            (
                WaitError::TimedOut {
                    topic: topic(),
                    partition,
                },
                ResponseError::RequestTimedOut,
            ),
        ];
        for (e, want) in waits {
            assert_eq!(wait_error_code(&e), want, "{e}");
        }
        for (e, want) in [
            (
                NotServed::UnknownTopicOrPartition,
                ResponseError::UnknownTopicOrPartition,
            ),
            (NotServed::NotLeader, ResponseError::NotLeaderOrFollower),
            (NotServed::Offline, ResponseError::KafkaStorageError),
        ] {
            assert_eq!(not_served_code(e), want);
        }
    }
}
