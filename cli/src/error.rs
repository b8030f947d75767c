//! The one error type of the `weir` command: each variant says what failed and what to try.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "could not reach {brokers} — is `weir dev` running? (or point --brokers / WEIR_BROKERS at your cluster)"
    )]
    Unreachable {
        brokers: String,
        #[source]
        source: KafkaError,
    },

    #[error(
        "{what} got no answer from {brokers} within {timeout_ms} ms; try a larger --request-timeout-ms"
    )]
    TimedOut {
        what: String,
        brokers: String,
        timeout_ms: u64,
    },

    #[error("{what} failed")]
    Kafka {
        what: String,
        #[source]
        source: KafkaError,
    },

    #[error("{what} failed: {code}{hint}", hint = hint(*code))]
    Broker {
        what: String,
        code: RDKafkaErrorCode,
    },

    #[error("topic {topic} does not exist; `weir topic list` shows the topics there are")]
    TopicNotFound { topic: String },

    #[error("consumer group {group} does not exist; `weir group list` shows the groups there are")]
    GroupNotFound { group: String },

    #[error(
        "topic {topic} has {partitions} partition(s), numbered 0 to {last}; there is no partition {partition}",
        last = partitions - 1
    )]
    PartitionNotFound {
        topic: String,
        partition: i32,
        partitions: i32,
    },

    #[error("{failed} of {total} records were not delivered; the first failure: {first}")]
    Delivery {
        failed: u64,
        total: u64,
        first: String,
    },

    #[error("received {received} of {wanted} records: none arrived for {timeout_ms} ms")]
    Incomplete {
        received: u64,
        wanted: u64,
        timeout_ms: u64,
    },

    #[error("{what}: {message}")]
    Invalid { what: String, message: String },

    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("the {what} thread panicked")]
    Panicked { what: &'static str },
}

impl Error {
    pub fn kafka(what: impl Into<String>, source: KafkaError) -> Error {
        Error::Kafka {
            what: what.into(),
            source,
        }
    }

    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub fn invalid(what: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Invalid {
            what: what.into(),
            message: message.into(),
        }
    }

    /// Writing to a closed pipe (`weir consume ... | head`) is how a reader says it has enough;
    /// the command then stops quietly.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// What to try for the broker errors people meet most.
pub fn hint(code: RDKafkaErrorCode) -> &'static str {
    match code {
        RDKafkaErrorCode::TopicAlreadyExists => " (`weir topic describe` shows it)",
        RDKafkaErrorCode::UnknownTopicOrPartition => " (`weir topic list` shows the topics)",
        RDKafkaErrorCode::InvalidReplicationFactor => {
            " (a single-node cluster such as `weir dev` needs --replication-factor 1)"
        }
        RDKafkaErrorCode::InvalidPartitions => " (partitions can only be added, never removed)",
        RDKafkaErrorCode::InvalidConfig => " (check the config names and values)",
        RDKafkaErrorCode::PolicyViolation => " (the cluster's policy refused it)",
        RDKafkaErrorCode::TopicAuthorizationFailed
        | RDKafkaErrorCode::ClusterAuthorizationFailed => {
            " (the cluster's ACLs refuse this client)"
        }
        RDKafkaErrorCode::NonEmptyGroup => {
            " (the group still has members: stop the group's consumers first; `weir group describe` lists them)"
        }
        RDKafkaErrorCode::GroupIdNotFound => " (`weir group list` shows the groups)",
        RDKafkaErrorCode::InvalidGroupId => " (the group id is not valid for this cluster)",
        RDKafkaErrorCode::UnknownMemberId
        | RDKafkaErrorCode::IllegalGeneration
        | RDKafkaErrorCode::RebalanceInProgress => {
            " (the group has active members, so it refuses offsets from outside the group: stop the group's consumers first)"
        }
        RDKafkaErrorCode::GroupAuthorizationFailed => {
            " (the cluster's ACLs refuse this client access to the group)"
        }
        RDKafkaErrorCode::CoordinatorNotAvailable | RDKafkaErrorCode::NotCoordinator => {
            " (the group's coordinator is moving or starting; try again)"
        }
        RDKafkaErrorCode::UnsupportedVersion => {
            " (the broker does not implement this request version)"
        }
        _ => "",
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
