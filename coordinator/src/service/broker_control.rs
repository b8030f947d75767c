//! The `weir.v1.BrokerControl` service: registration, heartbeats, the metadata watch stream,
//! and the broker-initiated changes (AlterPartition, ControlledShutdown, producer ids).

use crate::config::PRODUCER_ID_BLOCK;
use crate::convert;
use crate::core::Core;
use crate::store::state_machine::Applied;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{debug, info};
use weir_metadata::{Command, MetadataError, Reply};
use weir_model::{BrokerEpoch, BrokerId, LeaderEpoch, PartitionEpoch, TopicId};
use weir_proto::v1 as pb;
use weir_proto::v1::broker_control_server::BrokerControl;

/// Updates queued for one watcher before the stream stops reading the broadcast (it then lags
/// and gets a full update when it catches up).
const WATCH_QUEUE_DEPTH: usize = 64;

#[derive(Debug)]
pub struct BrokerControlService {
    pub core: Arc<Core>,
}

fn unexpected(reply: Reply) -> Status {
    Status::internal(format!(
        "unexpected reply from the state machine: {reply:?}"
    ))
}

impl BrokerControlService {
    /// Refuses a request whose broker epoch is not the broker's current one.
    fn check_epoch(&self, id: BrokerId, epoch: BrokerEpoch) -> Option<pb::Error> {
        let current = self.core.state(|s| s.brokers.get(&id).map(|b| b.epoch));
        match current {
            None => convert::metadata_error(&MetadataError::UnknownBroker(id)),
            Some(c) if c != epoch => convert::metadata_error(&MetadataError::StaleBrokerEpoch {
                id,
                given: epoch,
                current: c,
            }),
            Some(_) => None,
        }
    }
}

#[tonic::async_trait]
impl BrokerControl for BrokerControlService {
    async fn register(
        &self,
        request: Request<pb::RegisterBrokerRequest>,
    ) -> Result<Response<pb::RegisterBrokerResponse>, Status> {
        let r = request.into_inner();
        let core = &self.core;
        // The leader sets the cluster id right after the first election; a broker that
        // registers before then would be told an empty one.
        if core.state(|s| s.cluster_id.is_empty()) {
            return Err(Status::unavailable(
                "the cluster is not initialised yet; retry",
            ));
        }
        let command = Command::RegisterBroker {
            id: BrokerId(r.broker_id),
            kafka_addr: r.kafka_addr,
            internal_addr: r.internal_addr,
            rack: r.rack,
            incarnation: r.incarnation,
            directory_id: r.directory_id,
            endpoints: r
                .endpoints
                .into_iter()
                .map(|e| weir_metadata::Endpoint {
                    listener: e.listener,
                    addr: e.addr,
                })
                .collect(),
        };
        let written = core.write(command).await?;
        let cluster_id = core.state(|s| s.cluster_id.clone());
        let mut response = pb::RegisterBrokerResponse {
            error: None,
            broker_epoch: -1,
            cluster_id,
            heartbeat_interval_ms: core.config.broker_heartbeat_interval.as_millis() as i32,
            session_timeout_ms: core.config.broker_session_timeout.as_millis() as i32,
        };
        match written.result {
            Ok(Reply::BrokerRegistered { epoch }) => {
                info!(
                    broker = r.broker_id,
                    epoch = epoch.get(),
                    "broker registered"
                );
                response.broker_epoch = epoch.get();
            }
            Ok(other) => return Err(unexpected(other)),
            Err(e) => response.error = convert::metadata_error(&e),
        }
        Ok(Response::new(response))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::BrokerHeartbeatRequest>,
    ) -> Result<Response<pb::BrokerHeartbeatResponse>, Status> {
        let r = request.into_inner();
        let outcome = self
            .core
            .heartbeat(
                BrokerId(r.broker_id),
                BrokerEpoch(r.broker_epoch),
                r.metadata_version,
            )
            .await?;
        Ok(Response::new(pb::BrokerHeartbeatResponse {
            error: outcome
                .error
                .and_then(|(code, message)| convert::error(code, message)),
            fenced: outcome.fenced,
        }))
    }

    type WatchStream = ReceiverStream<Result<pb::MetadataUpdate, Status>>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let broker = request.into_inner().broker_id;
        let (tx, rx) = mpsc::channel(WATCH_QUEUE_DEPTH);
        let core = self.core.clone();
        // Subscribe before reading the state: every change after the read is then in the
        // channel, and the ones before it are skipped by index.
        let applied = core.subscribe();
        tokio::spawn(async move {
            debug!(broker, "watch stream opened");
            stream_updates(core, applied, tx).await;
            debug!(broker, "watch stream closed");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn alter_partition(
        &self,
        request: Request<pb::AlterPartitionRequest>,
    ) -> Result<Response<pb::AlterPartitionResponse>, Status> {
        let r = request.into_inner();
        let Some(topic) = TopicId::parse(&r.topic_id) else {
            return Ok(Response::new(pb::AlterPartitionResponse {
                error: convert::error(
                    convert::UNKNOWN_TOPIC_ID,
                    format!("{:?} is not a topic id", r.topic_id),
                ),
                partition: None,
            }));
        };
        let command = Command::AlterPartition {
            broker: BrokerId(r.broker_id),
            broker_epoch: BrokerEpoch(r.broker_epoch),
            topic,
            partition: r.partition,
            leader_epoch: LeaderEpoch(r.leader_epoch),
            partition_epoch: PartitionEpoch(r.partition_epoch),
            new_isr: r.new_isr.iter().map(|b| BrokerId(*b)).collect(),
        };
        let written = self.core.write(command).await?;
        let (error, partition) = match written.result {
            Ok(Reply::Partition(p)) => (None, Some(convert::partition(r.partition, &p))),
            Ok(other) => return Err(unexpected(other)),
            Err(e) => {
                let current = self.core.state(|s| {
                    let t = s.topic_by_id(topic)?;
                    s.partition(&t.name, r.partition)
                        .map(|p| convert::partition(r.partition, p))
                });
                (convert::metadata_error(&e), current)
            }
        };
        Ok(Response::new(pb::AlterPartitionResponse {
            error,
            partition,
        }))
    }

    async fn controlled_shutdown(
        &self,
        request: Request<pb::ControlledShutdownRequest>,
    ) -> Result<Response<pb::ControlledShutdownResponse>, Status> {
        let r = request.into_inner();
        let command = Command::ControlledShutdown {
            id: BrokerId(r.broker_id),
            epoch: BrokerEpoch(r.broker_epoch),
        };
        let written = self.core.write(command).await?;
        let response = match written.result {
            Ok(Reply::RemainingLeaderships(n)) => pb::ControlledShutdownResponse {
                error: None,
                remaining_leaderships: i32::try_from(n).unwrap_or(i32::MAX),
            },
            Ok(other) => return Err(unexpected(other)),
            Err(e) => pb::ControlledShutdownResponse {
                error: convert::metadata_error(&e),
                remaining_leaderships: -1,
            },
        };
        Ok(Response::new(response))
    }

    async fn allocate_producer_ids(
        &self,
        request: Request<pb::AllocateProducerIdsRequest>,
    ) -> Result<Response<pb::AllocateProducerIdsResponse>, Status> {
        let r = request.into_inner();
        let id = BrokerId(r.broker_id);
        let refused = |error| {
            Ok(Response::new(pb::AllocateProducerIdsResponse {
                error,
                first: -1,
                count: 0,
            }))
        };
        if let Some(error) = self.check_epoch(id, BrokerEpoch(r.broker_epoch)) {
            return refused(Some(error));
        }
        let command = Command::AllocateProducerIds {
            broker: id,
            count: PRODUCER_ID_BLOCK,
        };
        match self.core.write(command).await?.result {
            Ok(Reply::ProducerIds { first, count }) => {
                Ok(Response::new(pb::AllocateProducerIdsResponse {
                    error: None,
                    first,
                    count,
                }))
            }
            Ok(other) => Err(unexpected(other)),
            Err(e) => refused(convert::metadata_error(&e)),
        }
    }
}

/// Feeds one watcher: a full update, then a delta per applied change, a full update again
/// after lagging or a snapshot install, and an empty delta when only the Raft leader changed.
/// Ends when the watcher goes away or the coordinator shuts down.
async fn stream_updates(
    core: Arc<Core>,
    mut applied: broadcast::Receiver<Arc<Applied>>,
    tx: mpsc::Sender<Result<pb::MetadataUpdate, Status>>,
) {
    let mut shutdown = core.shutdown.clone();
    // Server metrics change only with votes, roles and membership, not with every append.
    let mut metrics = core.raft.server_metrics();
    let full = |core: &Core| {
        let leader = core.leader_wire();
        core.read(|d| {
            let seen = d.last_applied.map_or(0, |l| l.index);
            (convert::full_update(&d.state, leader), seen)
        })
    };
    let (update, mut seen) = full(&core);
    let mut version = update.version;
    let mut leader = update.coordinator_leader;
    if tx.send(Ok(update)).await.is_err() {
        return;
    }
    loop {
        let update = tokio::select! {
            _ = shutdown.changed() => return,
            _ = tx.closed() => return,
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = core.leader_wire();
                if now == leader {
                    continue;
                }
                pb::MetadataUpdate {
                    version,
                    full: false,
                    cluster_id: core.state(|s| s.cluster_id.clone()),
                    coordinator_leader: now,
                    ..Default::default()
                }
            }
            received = applied.recv() => match received {
                Ok(a) if a.index <= seen => continue,
                Ok(a) if a.full => {
                    let (u, s) = full(&core);
                    seen = s;
                    u
                }
                Ok(a) => {
                    seen = a.index;
                    convert::delta_update(&a, core.leader_wire())
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    debug!(missed = n, "watcher lagged; sending a full update");
                    let (u, s) = full(&core);
                    seen = s;
                    u
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        version = update.version;
        leader = update.coordinator_leader;
        let sent = tokio::select! {
            sent = tx.send(Ok(update)) => sent.is_ok(),
            _ = shutdown.changed() => false,
        };
        if !sent {
            return;
        }
    }
}
