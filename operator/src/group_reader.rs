//! How the operator reads a consumer group: the [`GroupReader`] trait, and its implementation
//! over the Kafka protocol (`weir-kafka-admin`), since groups live in the brokers, not in the
//! coordinators' metadata.

use crate::crd::{GroupMember, PartitionLag};
use futures::future::BoxFuture;
use std::time::Duration;

/// A consumer group as read from the cluster.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct GroupSnapshot {
    pub state: String,
    pub members: Vec<GroupMember>,
    pub offsets: Vec<PartitionLag>,
}

/// Why a group could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GroupReadError {
    /// The cluster has no such group (no members and no committed offsets).
    #[error("the cluster has no group {0:?}")]
    NotFound(String),
    /// The brokers could not be asked; retry later.
    #[error("{0}")]
    Unavailable(String),
}

/// Reads consumer groups from a cluster's brokers.
pub trait GroupReader: Send + Sync {
    fn describe<'a>(
        &'a self,
        bootstrap: &'a [String],
        group: &'a str,
    ) -> BoxFuture<'a, Result<GroupSnapshot, GroupReadError>>;
}

/// Reads groups with Weir's small Kafka client.
#[derive(Debug)]
pub struct KafkaGroupReader {
    pub request_timeout: Duration,
}

impl GroupReader for KafkaGroupReader {
    fn describe<'a>(
        &'a self,
        bootstrap: &'a [String],
        group: &'a str,
    ) -> BoxFuture<'a, Result<GroupSnapshot, GroupReadError>> {
        Box::pin(async move {
            let mut config = weir_kafka_admin::ClientConfig::new(bootstrap.iter().cloned());
            config.client_id = "weir-operator".into();
            config.request_timeout = self.request_timeout;
            let client = weir_kafka_admin::Client::new(config);
            let d = match client.describe_group(group).await {
                Ok(d) => d,
                Err(weir_kafka_admin::Error::GroupNotFound { .. }) => {
                    return Err(GroupReadError::NotFound(group.to_string()));
                }
                Err(e) => return Err(GroupReadError::Unavailable(e.to_string())),
            };
            Ok(GroupSnapshot {
                state: d.state,
                members: d
                    .members
                    .into_iter()
                    .map(|m| GroupMember {
                        member_id: m.member_id,
                        group_instance_id: m.group_instance_id,
                        client_id: m.client_id,
                        host: m.client_host,
                        assignment: m
                            .assignment
                            .iter()
                            .map(|tp| format!("{}-{}", tp.topic, tp.partition.get()))
                            .collect(),
                    })
                    .collect(),
                offsets: d
                    .partitions
                    .into_iter()
                    .map(|p| PartitionLag {
                        topic: p.topic,
                        partition: p.partition.get(),
                        committed_offset: p.committed.get(),
                        end_offset: p.end.map(|o| o.get()),
                        lag: p.lag,
                    })
                    .collect(),
            })
        })
    }
}
