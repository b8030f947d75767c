//! The operator's view of a Weir cluster's coordinators: the [`ClusterAdmin`] trait and its
//! gRPC implementation over the coordinators' `Admin` service.
//!
//! Controllers only see the trait, so their logic is tested with an in-memory fake; the gRPC
//! implementation is tested against real coordinator and broker processes
//! (`operator/tests/admin.rs`). No generated `pb::` type or `tonic::Status` leaves this file.

use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;
use weir_coordinator_client::{ControlClient, ControlError};
use weir_model::{BrokerId, PartitionId, TopicName};
use weir_proto::v1 as pb;
use weir_proto::v1::admin_client::AdminClient;

/// Kafka error codes the coordinators answer with that controllers act on.
pub use weir_proto::codes as code;

/// What can go wrong talking to the coordinators.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No coordinator answered: all unreachable or without a leader. Retry later.
    #[error("no coordinator of {addrs} answered {call}: {message}")]
    Unavailable {
        call: &'static str,
        addrs: String,
        message: String,
    },
    /// The coordinators refused the request with a Kafka error code.
    #[error("{call} refused: {message} (Kafka error {code})")]
    Refused {
        call: &'static str,
        code: i32,
        message: String,
    },
}

impl AdminError {
    /// The Kafka error code of a refusal.
    pub fn code(&self) -> Option<i32> {
        match self {
            AdminError::Refused { code, .. } => Some(*code),
            AdminError::Unavailable { .. } => None,
        }
    }
}

/// The cluster as the coordinators describe it: the same view the brokers keep.
pub use weir_coordinator_client::view::{BrokerView, ClusterView, PartitionView, TopicView};

/// A new topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub configs: BTreeMap<String, String>,
}

/// One Weir cluster's coordinators.
///
/// Every call goes to whichever coordinator answers; the quorum forwards writes to its leader
/// and answers once the change is committed, so a successful call is durable. Calls are not
/// idempotent in their errors (creating a topic twice gives TOPIC_ALREADY_EXISTS), which the
/// controllers expect.
pub trait ClusterAdmin: Send + Sync {
    fn describe(&self) -> BoxFuture<'_, Result<ClusterView, AdminError>>;
    /// Creates a topic; its view as created (None if it was deleted again before the
    /// coordinators answered).
    fn create_topic(&self, topic: NewTopic)
    -> BoxFuture<'_, Result<Option<TopicView>, AdminError>>;
    /// Raises a topic's partition count to `count`.
    fn create_partitions(&self, name: &str, count: i32) -> BoxFuture<'_, Result<(), AdminError>>;
    /// Makes a topic's configs exactly `configs` (keys not named go back to the defaults).
    fn replace_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> BoxFuture<'_, Result<(), AdminError>>;
    fn delete_topic(&self, name: &str) -> BoxFuture<'_, Result<(), AdminError>>;
    /// Moves a partition to `replicas` (preferred leader first). The move completes in the
    /// background: new replicas catch up, join the ISR, then the old ones are dropped.
    fn reassign(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        replicas: Vec<BrokerId>,
    ) -> BoxFuture<'_, Result<(), AdminError>>;
    /// Partitions still moving.
    fn reassignments_in_progress(&self) -> BoxFuture<'_, Result<usize, AdminError>>;
}

/// Makes a [`ClusterAdmin`] for a cluster's coordinator addresses. The gRPC implementation
/// keeps one client per address list, so controllers can ask on every reconcile.
pub trait AdminFactory: Send + Sync {
    fn admin(&self, coordinators: &[String]) -> Arc<dyn ClusterAdmin>;
}

/// How long one call to one coordinator may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
use weir_model::limits::OPERATOR_RESPONSE_BYTES_MAX as RESPONSE_BYTES_MAX;

/// Talks to the coordinators' `Admin` gRPC service, trying each address in turn.
#[derive(Debug, Default)]
pub struct GrpcAdminFactory {
    clients: std::sync::Mutex<Vec<(Vec<String>, Arc<GrpcAdmin>)>>,
}

impl AdminFactory for GrpcAdminFactory {
    fn admin(&self, coordinators: &[String]) -> Arc<dyn ClusterAdmin> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, c)) = clients.iter().find(|(k, _)| k.as_slice() == coordinators) {
            return c.clone();
        }
        let client = Arc::new(GrpcAdmin::new(coordinators.to_vec()));
        if clients.len() >= weir_model::limits::OPERATOR_CLIENTS_MAX {
            clients.remove(0);
        }
        clients.push((coordinators.to_vec(), client.clone()));
        client
    }
}

/// A [`ClusterAdmin`] over gRPC.
#[derive(Debug)]
pub struct GrpcAdmin {
    /// The shared coordinator client: lazy channels, the one that answered last asked first.
    client: Option<ControlClient>,
    addrs: Vec<String>,
}

impl GrpcAdmin {
    pub fn new(addrs: Vec<String>) -> GrpcAdmin {
        GrpcAdmin {
            client: ControlClient::new(&addrs).ok(),
            addrs,
        }
    }

    /// Runs `call` against each coordinator once, starting with the one that answered last,
    /// until one answers. Only transport failures move on to the next; an answer (even an
    /// error code inside it) is final.
    async fn call<T, F, Fut>(&self, name: &'static str, f: F) -> Result<T, AdminError>
    where
        F: Fn(AdminClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let Some(client) = &self.client else {
            return Err(AdminError::Unavailable {
                call: name,
                addrs: self.addrs.join(","),
                message: format!("{:?} holds no valid coordinator address", self.addrs),
            });
        };
        client
            .call_each_once(REQUEST_TIMEOUT, |ch| {
                f(AdminClient::new(ch).max_decoding_message_size(RESPONSE_BYTES_MAX))
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|e| AdminError::Unavailable {
                call: name,
                addrs: self.addrs.join(","),
                message: match e {
                    ControlError::Unavailable { last, .. } => last,
                    other => other.to_string(),
                },
            })
    }
}

fn check(call: &'static str, error: Option<pb::Error>) -> Result<(), AdminError> {
    match error {
        Some(e) if e.code != weir_proto::NO_ERROR => Err(AdminError::Refused {
            call,
            code: e.code,
            message: e.message,
        }),
        _ => Ok(()),
    }
}

impl ClusterAdmin for GrpcAdmin {
    fn describe(&self) -> BoxFuture<'_, Result<ClusterView, AdminError>> {
        Box::pin(async move {
            let r = self
                .call("DescribeCluster", |mut c| async move {
                    c.describe_cluster(pb::DescribeClusterRequest {}).await
                })
                .await?;
            Ok(ClusterView::from_description(r))
        })
    }

    fn create_topic(
        &self,
        topic: NewTopic,
    ) -> BoxFuture<'_, Result<Option<TopicView>, AdminError>> {
        Box::pin(async move {
            let req = pb::CreateTopicRequest {
                name: topic.name.clone(),
                partitions: Some(topic.partitions),
                replication_factor: Some(topic.replication_factor),
                configs: topic.configs.into_iter().collect(),
                assignment: Vec::new(),
                validate_only: false,
            };
            let r = self
                .call("CreateTopic", |mut c| {
                    let req = req.clone();
                    async move { c.create_topic(req).await }
                })
                .await?;
            check("CreateTopic", r.error)?;
            Ok(r.topic.as_ref().and_then(TopicView::from_wire))
        })
    }

    fn create_partitions(&self, name: &str, count: i32) -> BoxFuture<'_, Result<(), AdminError>> {
        let req = pb::CreatePartitionsRequest {
            name: name.to_string(),
            count,
            assignment: Vec::new(),
            validate_only: false,
        };
        Box::pin(async move {
            let r = self
                .call("CreatePartitions", |mut c| {
                    let req = req.clone();
                    async move { c.create_partitions(req).await }
                })
                .await?;
            check("CreatePartitions", r.error)
        })
    }

    fn replace_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> BoxFuture<'_, Result<(), AdminError>> {
        let req = pb::AlterConfigsRequest {
            name: name.to_string(),
            set: configs.into_iter().collect(),
            delete: Vec::new(),
            replace: true,
            validate_only: false,
        };
        Box::pin(async move {
            let r = self
                .call("AlterConfigs", |mut c| {
                    let req = req.clone();
                    async move { c.alter_configs(req).await }
                })
                .await?;
            check("AlterConfigs", r.error)
        })
    }

    fn delete_topic(&self, name: &str) -> BoxFuture<'_, Result<(), AdminError>> {
        let req = pb::DeleteTopicRequest {
            name: name.to_string(),
        };
        Box::pin(async move {
            let r = self
                .call("DeleteTopic", |mut c| {
                    let req = req.clone();
                    async move { c.delete_topic(req).await }
                })
                .await?;
            check("DeleteTopic", r.error)
        })
    }

    fn reassign(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        replicas: Vec<BrokerId>,
    ) -> BoxFuture<'_, Result<(), AdminError>> {
        let req = pb::ReassignPartitionRequest {
            topic: topic.to_string(),
            partition: partition.get(),
            replicas: replicas.iter().map(|b| b.get()).collect(),
        };
        Box::pin(async move {
            let r = self
                .call("ReassignPartition", |mut c| {
                    let req = req.clone();
                    async move { c.reassign_partition(req).await }
                })
                .await?;
            check("ReassignPartition", r.error)
        })
    }

    fn reassignments_in_progress(&self) -> BoxFuture<'_, Result<usize, AdminError>> {
        Box::pin(async move {
            let r = self
                .call("ListReassignments", |mut c| async move {
                    c.list_reassignments(pb::ListReassignmentsRequest {}).await
                })
                .await?;
            Ok(r.reassignments.len())
        })
    }
}
