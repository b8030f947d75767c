//! The `weir.v1.Admin` service: topics, configs, reassignments, leader elections and the
//! quorum's membership.
//!
//! The coordinator that receives a request turns it into a [`Command`] from its local state
//! (placement, the full new config map), then proposes it through the leader. The state
//! machine checks the command again when it is applied, so a proposal built from a state a
//! few entries old is refused rather than applied wrongly (a topic created twice is
//! TOPIC_ALREADY_EXISTS), and those that read the state first pass a read barrier, so the
//! state they read is at least as new as any write acknowledged before the request.
//! `validate_only` applies the command to a copy of the local state.

use crate::convert;
use crate::core::Core;
use std::collections::BTreeMap;
use std::sync::Arc;
use tonic::{Request, Response, Status};
use tracing::info;
use weir_metadata::{
    Command, MetadataError, MetadataState, Reply, ScramAlteration, ScramDeletion, ScramUpsertion,
    placement,
};
use weir_model::limits::{BROKER_PARTITIONS_MAX, PARTITIONS_PER_TOPIC_MAX, TOPICS_MAX};
use weir_model::topic_config::{self, ConfigError};
use weir_model::{BrokerId, ScramMechanism, TopicId, TopicName};
use weir_proto::v1 as pb;
use weir_proto::v1::admin_server::Admin;

#[derive(Debug)]
pub struct AdminService {
    pub core: Arc<Core>,
}

/// A refusal before anything is proposed: a Kafka code and a message.
type Refusal = Option<pb::Error>;

fn config_refusal(e: &ConfigError) -> Refusal {
    convert::error(convert::INVALID_CONFIG, e.to_string())
}

fn topic_name(name: &str) -> Result<TopicName, Refusal> {
    TopicName::new(name)
        .map_err(|e| convert::error(convert::INVALID_TOPIC_EXCEPTION, e.to_string()))
}

/// Refuses a creation that would take the cluster past [`TOPICS_MAX`] topics (`new_topic`), or
/// a broker past [`BROKER_PARTITIONS_MAX`] partition replicas, each of which holds open files.
/// Checked when the command is built rather than in the state machine, so a log written before
/// these limits replays to the same state; proposals racing past the check can overshoot by at
/// most the requests in flight.
fn check_capacity(
    state: &MetadataState,
    new_topic: bool,
    assignment: &[Vec<BrokerId>],
) -> Result<(), Refusal> {
    if new_topic && state.topics.len() >= TOPICS_MAX {
        return Err(convert::error(
            convert::POLICY_VIOLATION,
            format!("the cluster already has {TOPICS_MAX} topics, the most it allows"),
        ));
    }
    let mut adding: BTreeMap<BrokerId, usize> = BTreeMap::new();
    for replica in assignment.iter().flatten() {
        *adding.entry(*replica).or_default() += 1;
    }
    let mut hosted: BTreeMap<BrokerId, usize> = adding.keys().map(|b| (*b, 0)).collect();
    for p in state.topics.values().flat_map(|t| &t.partitions) {
        for b in &p.replicas {
            if let Some(n) = hosted.get_mut(b) {
                *n += 1;
            }
        }
    }
    for (broker, n) in adding {
        let has = hosted.get(&broker).copied().unwrap_or(0);
        if has + n > BROKER_PARTITIONS_MAX {
            return Err(convert::error(
                convert::POLICY_VIOLATION,
                format!(
                    "broker {broker} hosts {has} partitions; {n} more would pass the most a \
                     broker hosts ({BROKER_PARTITIONS_MAX})"
                ),
            ));
        }
    }
    Ok(())
}

fn assignment(lists: &[pb::ReplicaList]) -> Vec<Vec<BrokerId>> {
    lists
        .iter()
        .map(|l| l.replicas.iter().map(|b| BrokerId(*b)).collect())
        .collect()
}

fn unexpected(reply: Reply) -> Status {
    Status::internal(format!(
        "unexpected reply from the state machine: {reply:?}"
    ))
}

/// Applies `command` to a copy of `state`, as validate_only asks.
fn dry_run(state: &MetadataState, index: u64, command: &Command) -> Result<Reply, MetadataError> {
    state.clone().apply(index, command).map(|(reply, _)| reply)
}

impl AdminService {
    /// Applies `command` to a copy of the local state at the next log index.
    fn validate(&self, command: &Command) -> Result<Reply, MetadataError> {
        self.core.read(|d| {
            let next = d.last_applied.map_or(1, |l| l.index + 1);
            dry_run(&d.state, next, command)
        })
    }

    /// Builds the CreateTopic command, or the refusal.
    fn create_topic_command(&self, r: &pb::CreateTopicRequest) -> Result<Command, Refusal> {
        let name = topic_name(&r.name)?;
        let configs = topic_config::validate_all(
            r.configs
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_str()))),
        )
        .map_err(|e| config_refusal(&e))?;
        let assignment = if !r.assignment.is_empty() {
            assignment(&r.assignment)
        } else {
            // Absent means the cluster default (the broker turns Kafka's -1 into that).
            let partitions = match r.partitions {
                None => self.core.config.default_partitions,
                Some(p) if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&p) => {
                    return Err(convert::error(
                        convert::INVALID_PARTITIONS,
                        format!(
                            "{p} partitions; allowed are 1 to {PARTITIONS_PER_TOPIC_MAX}, or none for the default"
                        ),
                    ));
                }
                Some(p) => p,
            };
            let replication_factor = match r.replication_factor {
                None => self.core.config.default_replication_factor,
                Some(rf) if rf < 1 => {
                    return Err(convert::error(
                        convert::INVALID_REPLICATION_FACTOR,
                        format!(
                            "replication factor {rf}; it must be at least 1, or none for the default"
                        ),
                    ));
                }
                Some(rf) => rf,
            };
            let placed = self.core.state(|s| {
                placement::assign(
                    &s.live_brokers(),
                    partitions,
                    replication_factor,
                    s.topics.len(),
                )
            });
            placed.map_err(|e| convert::metadata_error(&e))?
        };
        self.core.state(|s| check_capacity(s, true, &assignment))?;
        Ok(Command::CreateTopic {
            name,
            id: TopicId(*uuid::Uuid::new_v4().as_bytes()),
            assignment,
            configs,
        })
    }

    fn create_partitions_command(
        &self,
        r: &pb::CreatePartitionsRequest,
    ) -> Result<Command, Refusal> {
        let name = topic_name(&r.name)?;
        let current = self.core.state(|s| {
            s.topic(&name)
                .map(|t| (t.partitions.len(), t.replication_factor()))
        });
        let Some((current, replication_factor)) = current else {
            return Err(convert::metadata_error(&MetadataError::UnknownTopic(
                name.to_string(),
            )));
        };
        let count = usize::try_from(r.count).unwrap_or(0);
        if count <= current {
            return Err(convert::error(
                convert::INVALID_PARTITIONS,
                format!(
                    "topic '{name}' has {current} partitions; the new count {} must be larger",
                    r.count
                ),
            ));
        }
        let adding = count - current;
        let assignment = if !r.assignment.is_empty() {
            if r.assignment.len() != adding {
                return Err(convert::metadata_error(
                    &MetadataError::InvalidReplicaAssignment(format!(
                        "{} replica lists for {adding} new partitions",
                        r.assignment.len()
                    )),
                ));
            }
            assignment(&r.assignment)
        } else {
            let rf = i32::try_from(replication_factor).unwrap_or(i32::MAX);
            let adding = i32::try_from(adding).unwrap_or(i32::MAX);
            self.core
                .state(|s| placement::assign(&s.live_brokers(), adding, rf, current))
                .map_err(|e| convert::metadata_error(&e))?
        };
        self.core.state(|s| check_capacity(s, false, &assignment))?;
        Ok(Command::CreatePartitions { name, assignment })
    }

    fn alter_configs_command(
        &self,
        r: &pb::AlterConfigsRequest,
    ) -> Result<(Command, BTreeMap<String, String>), Refusal> {
        let name = topic_name(&r.name)?;
        let set =
            topic_config::validate_all(r.set.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))))
                .map_err(|e| config_refusal(&e))?;
        for key in &r.delete {
            // Deleting a key needs only the key to be known.
            if let Err(e @ ConfigError::UnknownKey { .. }) = topic_config::validate(key, "") {
                return Err(config_refusal(&e));
            }
        }
        let current = self
            .core
            .state(|s| s.topic(&name).map(|t| t.configs.clone()));
        let Some(current) = current else {
            return Err(convert::metadata_error(&MetadataError::UnknownTopic(
                name.to_string(),
            )));
        };
        let configs = if r.replace {
            set
        } else {
            let mut next = current;
            for key in &r.delete {
                next.remove(key);
            }
            next.extend(set);
            next
        };
        Ok((
            Command::AlterConfigs {
                name,
                configs: configs.clone(),
            },
            configs,
        ))
    }

    fn coordinators(&self) -> Vec<pb::Coordinator> {
        self.core
            .coordinators()
            .into_iter()
            .map(|(id, addr, voter)| pb::Coordinator {
                id: i32::try_from(id).unwrap_or(i32::MAX),
                addr,
                voter,
            })
            .collect()
    }
}

fn coordinator_id(id: i32) -> Result<u64, Status> {
    u64::try_from(id).map_err(|_| {
        Status::invalid_argument(format!(
            "coordinator id {id} is negative; ids are 0 or more"
        ))
    })
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_topic(
        &self,
        request: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::CreateTopicResponse>, Status> {
        let r = request.into_inner();
        let refused = |error| {
            Ok(Response::new(pb::CreateTopicResponse {
                error,
                topic: None,
            }))
        };
        self.core.read_barrier().await?;
        let command = match self.create_topic_command(&r) {
            Ok(c) => c,
            Err(e) => return refused(e),
        };
        let Command::CreateTopic {
            name,
            id,
            assignment,
            configs,
        } = &command
        else {
            return Err(Status::internal("CreateTopic built another command"));
        };
        if r.validate_only {
            if let Err(e) = self.validate(&command) {
                return refused(convert::metadata_error(&e));
            }
            // What the topic would look like, leaders not yet elected.
            let topic = pb::Topic {
                name: name.to_string(),
                id: id.to_uuid_string(),
                configs: configs
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                partitions: assignment
                    .iter()
                    .zip(0..)
                    .map(|(replicas, i)| pb::Partition {
                        partition: i,
                        replicas: replicas.iter().map(|b| b.get()).collect(),
                        leader: None,
                        ..Default::default()
                    })
                    .collect(),
            };
            return Ok(Response::new(pb::CreateTopicResponse {
                error: None,
                topic: Some(topic),
            }));
        }
        let name = name.clone();
        match self.core.write(command).await?.result {
            Ok(Reply::TopicCreated { id }) => {
                info!(topic = %name, id = %id.to_uuid_string(), "topic created");
                let topic = self.core.state(|s| s.topic(&name).map(convert::topic));
                Ok(Response::new(pb::CreateTopicResponse {
                    error: None,
                    topic,
                }))
            }
            Ok(other) => Err(unexpected(other)),
            Err(e) => refused(convert::metadata_error(&e)),
        }
    }

    async fn delete_topic(
        &self,
        request: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        let r = request.into_inner();
        let refused = |error| {
            Ok(Response::new(pb::DeleteTopicResponse {
                error,
                topic_id: String::new(),
            }))
        };
        let name = match topic_name(&r.name) {
            Ok(n) => n,
            Err(e) => return refused(e),
        };
        match self
            .core
            .write(Command::DeleteTopic { name: name.clone() })
            .await?
            .result
        {
            Ok(Reply::TopicDeleted { id }) => {
                info!(topic = %name, "topic deleted");
                Ok(Response::new(pb::DeleteTopicResponse {
                    error: None,
                    topic_id: id.to_uuid_string(),
                }))
            }
            Ok(other) => Err(unexpected(other)),
            Err(e) => refused(convert::metadata_error(&e)),
        }
    }

    async fn create_partitions(
        &self,
        request: Request<pb::CreatePartitionsRequest>,
    ) -> Result<Response<pb::CreatePartitionsResponse>, Status> {
        let r = request.into_inner();
        self.core.read_barrier().await?;
        let command = match self.create_partitions_command(&r) {
            Ok(c) => c,
            Err(error) => return Ok(Response::new(pb::CreatePartitionsResponse { error })),
        };
        let result = if r.validate_only {
            self.validate(&command)
        } else {
            self.core.write(command).await?.result
        };
        let error = result.err().and_then(|e| convert::metadata_error(&e));
        Ok(Response::new(pb::CreatePartitionsResponse { error }))
    }

    async fn alter_configs(
        &self,
        request: Request<pb::AlterConfigsRequest>,
    ) -> Result<Response<pb::AlterConfigsResponse>, Status> {
        let r = request.into_inner();
        let refused = |error| {
            Ok(Response::new(pb::AlterConfigsResponse {
                error,
                configs: Default::default(),
            }))
        };
        self.core.read_barrier().await?;
        let (command, configs) = match self.alter_configs_command(&r) {
            Ok(c) => c,
            Err(e) => return refused(e),
        };
        let result = if r.validate_only {
            self.validate(&command)
        } else {
            self.core.write(command).await?.result
        };
        match result {
            Ok(_) => Ok(Response::new(pb::AlterConfigsResponse {
                error: None,
                configs: configs.into_iter().collect(),
            })),
            Err(e) => refused(convert::metadata_error(&e)),
        }
    }

    async fn describe_cluster(
        &self,
        _request: Request<pb::DescribeClusterRequest>,
    ) -> Result<Response<pb::DescribeClusterResponse>, Status> {
        let mut response = self.core.state(|s| pb::DescribeClusterResponse {
            cluster_id: s.cluster_id.clone(),
            version: s.version as i64,
            brokers: s.brokers.values().map(convert::broker).collect(),
            topics: s.topics.values().map(convert::topic).collect(),
            coordinator_leader: None,
            coordinators: Vec::new(),
        });
        response.coordinator_leader = self.core.leader_wire();
        response.coordinators = self.coordinators();
        Ok(Response::new(response))
    }

    async fn reassign_partition(
        &self,
        request: Request<pb::ReassignPartitionRequest>,
    ) -> Result<Response<pb::ReassignPartitionResponse>, Status> {
        let r = request.into_inner();
        let name = match topic_name(&r.topic) {
            Ok(n) => n,
            Err(error) => return Ok(Response::new(pb::ReassignPartitionResponse { error })),
        };
        let command = Command::Reassign {
            name,
            partition: r.partition,
            target: r.replicas.iter().map(|b| BrokerId(*b)).collect(),
        };
        let error = self
            .core
            .write(command)
            .await?
            .result
            .err()
            .and_then(|e| convert::metadata_error(&e));
        Ok(Response::new(pb::ReassignPartitionResponse { error }))
    }

    async fn cancel_reassignment(
        &self,
        request: Request<pb::CancelReassignmentRequest>,
    ) -> Result<Response<pb::CancelReassignmentResponse>, Status> {
        let r = request.into_inner();
        let name = match topic_name(&r.topic) {
            Ok(n) => n,
            Err(error) => return Ok(Response::new(pb::CancelReassignmentResponse { error })),
        };
        let command = Command::CancelReassignment {
            name,
            partition: r.partition,
        };
        let error = self
            .core
            .write(command)
            .await?
            .result
            .err()
            .and_then(|e| convert::metadata_error(&e));
        Ok(Response::new(pb::CancelReassignmentResponse { error }))
    }

    async fn list_reassignments(
        &self,
        _request: Request<pb::ListReassignmentsRequest>,
    ) -> Result<Response<pb::ListReassignmentsResponse>, Status> {
        let reassignments = self.core.state(|s| {
            s.reassignments()
                .into_iter()
                .map(|(topic, partition, p)| {
                    let pb = convert::partition(partition, p);
                    pb::Reassignment {
                        topic: topic.to_string(),
                        partition,
                        replicas: pb.replicas,
                        adding_replicas: pb.adding_replicas,
                        removing_replicas: pb.removing_replicas,
                    }
                })
                .collect()
        });
        Ok(Response::new(pb::ListReassignmentsResponse {
            reassignments,
        }))
    }

    async fn elect_leaders(
        &self,
        request: Request<pb::ElectLeadersRequest>,
    ) -> Result<Response<pb::ElectLeadersResponse>, Status> {
        let r = request.into_inner();
        let mut partitions = Vec::with_capacity(r.partitions.len());
        for p in &r.partitions {
            let name = TopicName::new(p.topic.as_str())
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            partitions.push((name, p.partition));
        }
        let command = Command::ElectPreferredLeaders { partitions };
        match self.core.write(command).await?.result {
            Ok(Reply::Elected(n)) => Ok(Response::new(pb::ElectLeadersResponse {
                elected: i32::try_from(n).unwrap_or(i32::MAX),
            })),
            Ok(other) => Err(unexpected(other)),
            Err(e @ (MetadataError::UnknownTopic(_) | MetadataError::UnknownPartition { .. })) => {
                Err(Status::not_found(e.to_string()))
            }
            Err(e) => Err(Status::invalid_argument(e.to_string())),
        }
    }

    async fn add_coordinator(
        &self,
        request: Request<pb::AddCoordinatorRequest>,
    ) -> Result<Response<pb::ChangeQuorumResponse>, Status> {
        let r = request.into_inner();
        let id = coordinator_id(r.id)?;
        if crate::config::parse_peers(&format!("{id}={}", r.addr)).is_err() {
            return Err(Status::invalid_argument(format!(
                "coordinator address {:?} is not HOST:PORT",
                r.addr
            )));
        }
        self.core.add_coordinator(id, r.addr).await?;
        Ok(Response::new(pb::ChangeQuorumResponse {
            coordinators: self.coordinators(),
        }))
    }

    async fn remove_coordinator(
        &self,
        request: Request<pb::RemoveCoordinatorRequest>,
    ) -> Result<Response<pb::ChangeQuorumResponse>, Status> {
        let id = coordinator_id(request.into_inner().id)?;
        self.core.remove_coordinator(id).await?;
        Ok(Response::new(pb::ChangeQuorumResponse {
            coordinators: self.coordinators(),
        }))
    }

    async fn create_acls(
        &self,
        request: Request<pb::CreateAclsRequest>,
    ) -> Result<Response<pb::CreateAclsResponse>, Status> {
        self.create_acls_impl(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn delete_acls(
        &self,
        request: Request<pb::DeleteAclsRequest>,
    ) -> Result<Response<pb::DeleteAclsResponse>, Status> {
        self.delete_acls_impl(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn alter_scram_credentials(
        &self,
        request: Request<pb::AlterScramCredentialsRequest>,
    ) -> Result<Response<pb::AlterScramCredentialsResponse>, Status> {
        let command = match scram_command(request.into_inner()) {
            Ok(c) => c,
            Err(error) => {
                return Ok(Response::new(pb::AlterScramCredentialsResponse {
                    error,
                    ..Default::default()
                }));
            }
        };
        let written = self.core.write(command).await?;
        let results = match written.result {
            Ok(Reply::ScramAltered(results)) => results,
            Ok(other) => return Err(unexpected(other)),
            Err(e) => {
                return Ok(Response::new(pb::AlterScramCredentialsResponse {
                    error: convert::metadata_error(&e),
                    ..Default::default()
                }));
            }
        };
        let results = results
            .into_iter()
            .map(|(user, e)| pb::UserResult {
                user,
                error: e.as_ref().and_then(convert::metadata_error),
            })
            .collect();
        Ok(Response::new(pb::AlterScramCredentialsResponse {
            error: None,
            results,
            version: i64::try_from(written.index).unwrap_or(i64::MAX),
        }))
    }
}

impl AdminService {
    /// Proposes an ACL command; its reply and the log index it was written at, or the
    /// refusal of the whole request.
    async fn write_acls(&self, command: Command) -> Result<Result<(Reply, i64), Refusal>, Status> {
        let written = self.core.write(command).await?;
        let version = i64::try_from(written.index).unwrap_or(i64::MAX);
        Ok(match written.result {
            Ok(reply) => Ok((reply, version)),
            Err(e) => Err(convert::metadata_error(&e)),
        })
    }

    pub async fn create_acls_impl(
        &self,
        r: pb::CreateAclsRequest,
    ) -> Result<pb::CreateAclsResponse, Status> {
        let mut acls = Vec::with_capacity(r.acls.len());
        for a in &r.acls {
            let Some(acl) = convert::acl_from(a) else {
                let error = convert::error(
                    convert::INVALID_REQUEST,
                    format!("an ACL with a number no Kafka enum has: {a:?}"),
                );
                return Ok(pb::CreateAclsResponse {
                    error,
                    ..Default::default()
                });
            };
            acls.push(acl);
        }
        match self.write_acls(Command::CreateAcls(acls)).await? {
            Ok((Reply::AclsCreated(results), version)) => Ok(pb::CreateAclsResponse {
                error: None,
                results: results
                    .iter()
                    .map(|e| {
                        e.as_ref()
                            .and_then(convert::metadata_error)
                            .unwrap_or_default()
                    })
                    .collect(),
                version,
            }),
            Ok((other, _)) => Err(unexpected(other)),
            Err(error) => Ok(pb::CreateAclsResponse {
                error,
                ..Default::default()
            }),
        }
    }

    pub async fn delete_acls_impl(
        &self,
        r: pb::DeleteAclsRequest,
    ) -> Result<pb::DeleteAclsResponse, Status> {
        let mut filters = Vec::with_capacity(r.filters.len());
        for f in &r.filters {
            let Some(filter) = convert::acl_filter_from(f) else {
                let error = convert::error(
                    convert::INVALID_REQUEST,
                    format!("an ACL filter with a number no Kafka enum has: {f:?}"),
                );
                return Ok(pb::DeleteAclsResponse {
                    error,
                    ..Default::default()
                });
            };
            filters.push(filter);
        }
        match self.write_acls(Command::DeleteAcls(filters)).await? {
            Ok((Reply::AclsDeleted(results), version)) => Ok(pb::DeleteAclsResponse {
                error: None,
                results: results
                    .iter()
                    .map(|removed| pb::DeletedAcls {
                        acls: removed.iter().map(convert::acl).collect(),
                    })
                    .collect(),
                version,
            }),
            Ok((other, _)) => Err(unexpected(other)),
            Err(error) => Ok(pb::DeleteAclsResponse {
                error,
                ..Default::default()
            }),
        }
    }
}

/// The AlterScramCredentials command, or the refusal of a mechanism number nobody knows.
fn scram_command(r: pb::AlterScramCredentialsRequest) -> Result<Command, Refusal> {
    let unknown = |m: i32| {
        convert::error(
            convert::UNSUPPORTED_SASL_MECHANISM,
            format!("SCRAM mechanism {m} is not known; 1 is SCRAM-SHA-256, 2 SCRAM-SHA-512"),
        )
    };
    let mut upsertions = Vec::with_capacity(r.upsertions.len());
    for u in r.upsertions {
        let c = u.credential.unwrap_or_default();
        let (mechanism, credential) =
            convert::scram_credential_from(&c).ok_or_else(|| unknown(c.mechanism))?;
        upsertions.push(ScramUpsertion {
            user: u.user,
            mechanism,
            credential,
        });
    }
    let mut deletions = Vec::with_capacity(r.deletions.len());
    for d in r.deletions {
        let mechanism = i8::try_from(d.mechanism)
            .ok()
            .and_then(ScramMechanism::from_kafka_type)
            .ok_or_else(|| unknown(d.mechanism))?;
        deletions.push(ScramDeletion {
            user: d.user,
            mechanism,
        });
    }
    Ok(Command::AlterScramCredentials(ScramAlteration {
        upsertions,
        deletions,
        only_if_absent: r.only_if_absent,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_metadata::{PartitionRecord, TopicRecord};

    /// `topics` topics of `partitions` partitions each, every replica on `broker`.
    fn state_with(topics: usize, partitions: usize, broker: BrokerId) -> MetadataState {
        // From JSON, so fields this test does not care about keep their serde defaults.
        let b = broker.get();
        let partition: PartitionRecord = serde_json::from_value(serde_json::json!({
            "replicas": [b], "leader": b, "leader_epoch": 0, "partition_epoch": 0,
            "isr": [b], "reassignment": null,
        }))
        .unwrap();
        let mut s = MetadataState::default();
        for i in 0..topics {
            let name = TopicName::new(format!("t{i}")).unwrap();
            let topic = TopicRecord {
                name: name.clone(),
                id: TopicId([1; 16]),
                configs: BTreeMap::new(),
                partitions: vec![partition.clone(); partitions],
            };
            s.topics.insert(name, topic);
        }
        s
    }

    fn code(r: Result<(), Refusal>) -> i32 {
        r.err().flatten().map_or(0, |e| e.code)
    }

    /// Proves: a new topic past TOPICS_MAX, or replicas past BROKER_PARTITIONS_MAX on one
    /// broker, are refused with POLICY_VIOLATION; up to both limits creation passes.
    #[test]
    fn creation_past_the_topic_and_broker_partition_limits_is_refused() {
        let (one, two) = (BrokerId(1), BrokerId(2));
        let full = state_with(TOPICS_MAX, 1, one);
        assert_eq!(
            code(check_capacity(&full, true, &[vec![two]])),
            convert::POLICY_VIOLATION
        );
        // More partitions for an existing topic is not another topic.
        assert_eq!(code(check_capacity(&full, false, &[vec![two]])), 0);

        let almost = state_with(2, BROKER_PARTITIONS_MAX / 2 - 1, one);
        assert_eq!(code(check_capacity(&almost, true, &vec![vec![one]; 2])), 0);
        assert_eq!(
            code(check_capacity(&almost, true, &vec![vec![one]; 3])),
            convert::POLICY_VIOLATION
        );
        // Another broker has room.
        assert_eq!(code(check_capacity(&almost, true, &vec![vec![two]; 3])), 0);
        assert_eq!(
            code(check_capacity(&almost, false, &vec![vec![two, one]; 3])),
            convert::POLICY_VIOLATION
        );
    }
}
