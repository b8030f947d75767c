//! Consumer groups: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//! OffsetFetch, DescribeGroups, ListGroups, DeleteGroups, OffsetDelete.
//!
//! The rules live in `weir-group`; [`crate::groups`] routes a group to its shard, persists and
//! answers waiters. These handlers translate between the wire and those two, and wait (without
//! holding the shard's lock) for replication of what must be durable before it is answered.

use super::{Ctx, str_bytes};
use crate::groups::{self, OFFSETS_TOPIC};
use crate::services::Services;
use crate::state::BrokerState;
use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;
use std::time::Duration;
use weir_group::consumer::MemberEpoch;
use weir_group::records::OffsetValue;
use weir_group::{
    Group, GroupError, GroupId as WeirGroupId, GroupState, JoinOutcome, JoinRequest, JoinResponse,
    SyncOutcome, SyncResponse,
};
use weir_model::acl::{Operation, ResourceType};
use weir_model::{LeaderEpoch, Offset, PartitionId, Timestamp};

const SYNC_WAIT_MAX: Duration = Duration::from_millis(weir_model::limits::SYNC_WAIT_MS_MAX);
/// How long FindCoordinator waits for a new `__consumer_offsets` partition to get a leader.
const COORDINATOR_WAIT: Duration = Duration::from_secs(5);

fn err(e: GroupError) -> i16 {
    crate::error::group_error_code(e).code()
}

/// Whether the client may do `op` to the group (Kafka's ACLs).
fn group_allowed(svc: &Services, ctx: &Ctx, op: Operation, group: &str) -> bool {
    super::allowed(&svc.state, ctx, op, ResourceType::Group, group)
}

fn group_denied() -> i16 {
    ResponseError::GroupAuthorizationFailed.code()
}

fn opt_str(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

// -------------------------------------------------------------------------------------------
// FindCoordinator

pub async fn find_coordinator(
    svc: &Services,
    ctx: &Ctx,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let state = &svc.state;
    let keys: Vec<StrBytes> = if ctx.version >= 4 {
        req.coordinator_keys.clone()
    } else {
        vec![req.key.clone()]
    };
    let mut found = Vec::with_capacity(keys.len());
    for key in keys {
        let c = if req.key_type == 0 && !group_allowed(svc, ctx, Operation::Describe, &key) {
            let why = "DESCRIBE on the group is needed".to_string();
            Err((ResponseError::GroupAuthorizationFailed, why))
        } else {
            locate(state, &ctx.listener, req.key_type, key.as_str()).await
        };
        found.push(match c {
            Ok((node, host, port)) => Coordinator::default()
                .with_key(key)
                .with_node_id(BrokerId(node))
                .with_host(str_bytes(host))
                .with_port(port),
            Err((e, msg)) => Coordinator::default()
                .with_key(key)
                .with_node_id(BrokerId(-1))
                .with_host(str_bytes(""))
                .with_port(-1)
                .with_error_code(e.code())
                .with_error_message(Some(str_bytes(msg))),
        });
    }
    let mut r = FindCoordinatorResponse::default();
    if ctx.version >= 4 {
        r.coordinators = found;
    } else if let Some(c) = found.into_iter().next() {
        r.error_code = c.error_code;
        if ctx.version >= 1 {
            r.error_message = c.error_message;
        }
        r.node_id = c.node_id;
        r.host = c.host;
        r.port = c.port;
    }
    r
}

async fn locate(
    state: &BrokerState,
    listener: &str,
    key_type: i8,
    key: &str,
) -> Result<(i32, String, i32), (ResponseError, String)> {
    if key_type != 0 {
        return Err((
            ResponseError::TransactionalIdAuthorizationFailed,
            "transactions are not supported; only group coordinators (key type 0)".into(),
        ));
    }
    if key.is_empty() {
        return Err((
            ResponseError::InvalidGroupId,
            "the group id is empty".into(),
        ));
    }
    super::admin::ensure_offsets_topic(state)
        .await
        .map_err(|(_, msg)| (ResponseError::CoordinatorNotAvailable, msg))?;
    let index = crate::groups::partition_of(state, key).ok_or((
        ResponseError::CoordinatorNotAvailable,
        "__consumer_offsets is being created".to_string(),
    ))?;
    let led = |v: &crate::cluster::ClusterView| {
        v.topic(OFFSETS_TOPIC)
            .and_then(|t| t.partition(index))
            .and_then(|p| p.leader)
            .and_then(|l| v.brokers.get(&l))
            .and_then(|b| {
                let (host, port) = b.endpoint(listener)?;
                Some((b.id.get(), host.to_string(), port))
            })
    };
    if led(&state.view()).is_none() {
        state
            .wait_for_view(COORDINATOR_WAIT, |v| led(v).is_some())
            .await;
    }
    led(&state.view()).ok_or((
        ResponseError::CoordinatorNotAvailable,
        format!("partition {index} of __consumer_offsets has no leader right now"),
    ))
}

// -------------------------------------------------------------------------------------------
// JoinGroup

pub async fn join_group(svc: &Services, ctx: &Ctx, req: JoinGroupRequest) -> JoinGroupResponse {
    if !group_allowed(svc, ctx, Operation::Read, &req.group_id) {
        let mut resp = JoinGroupResponse::default()
            .with_error_code(group_denied())
            .with_generation_id(-1);
        if ctx.version < 7 {
            resp.protocol_name = Some(str_bytes(""));
        }
        return resp;
    }
    let r = join(svc, ctx, &req).await;
    let mut resp = JoinGroupResponse::default()
        .with_error_code(r.error.map_or(0, err))
        // Kafka's -1: no generation (the join failed).
        .with_generation_id(r.generation.unwrap_or(-1))
        .with_leader(str_bytes(r.leader))
        .with_member_id(str_bytes(r.member_id));
    // Before v7 the protocol name is not nullable.
    resp.protocol_name = match (r.protocol_name, ctx.version >= 7) {
        (Some(p), _) => Some(str_bytes(p)),
        (None, true) => None,
        (None, false) => Some(str_bytes("")),
    };
    if ctx.version >= 7 {
        resp.protocol_type = r.protocol_type.map(str_bytes);
    }
    resp.members = r
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(m.member_id))
                .with_group_instance_id(if ctx.version >= 5 {
                    m.instance_id.map(str_bytes)
                } else {
                    None
                })
                .with_metadata(m.metadata)
        })
        .collect();
    resp
}

/// The wire request as the group state machine takes it.
fn join_request(ctx: &Ctx, req: &JoinGroupRequest, rebalance_timeout_ms: i32) -> JoinRequest {
    JoinRequest {
        member_id: req.member_id.to_string(),
        instance_id: opt_str(&req.group_instance_id),
        client_id: ctx.client_id.to_string(),
        client_host: ctx.client_host.to_string(),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms,
        require_known_member_id: ctx.version >= 4,
    }
}

async fn join(svc: &Services, ctx: &Ctx, req: &JoinGroupRequest) -> JoinResponse {
    let state = &svc.state;
    let fail = |e: GroupError| JoinResponse {
        error: Some(e),
        generation: None,
        member_id: req.member_id.to_string(),
        ..JoinResponse::default()
    };
    let coordinator = &*svc.groups;
    let group = req.group_id.0.to_string();
    let mut shard = match coordinator.shard(state, &group).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if !req.member_id.is_empty() && !shard.groups.contains_key(&group) {
        return fail(GroupError::UnknownMemberId);
    }
    if shard.consumer.get(&group).is_some_and(|c| !c.is_empty()) {
        // A group is of one protocol at a time, as in Kafka.
        return fail(GroupError::InconsistentGroupProtocol);
    }
    let now = coordinator.now();
    let (waiter, rx) = coordinator.join_waiter();
    let rebalance_timeout_ms = if ctx.version >= 1 {
        req.rebalance_timeout_ms
    } else {
        req.session_timeout_ms
    };
    let join = join_request(ctx, req, rebalance_timeout_ms);
    let new_member_id = format!("{}-{}", ctx.client_id.as_str(), uuid::Uuid::new_v4());
    let g = shard
        .groups
        .entry(group.clone())
        .or_insert_with(|| Group::new(WeirGroupId(group.clone()), now.wall));
    let (outcome, effects) = g.join(
        &coordinator.config,
        join,
        new_member_id,
        waiter,
        now.mono,
        now.wall,
    );
    let stored = coordinator.apply(state, &shard, &group, effects);
    drop(shard);
    match outcome {
        JoinOutcome::Reply(r) => {
            coordinator.forget(waiter);
            // A static member that took over its old identity is answered once that is
            // replicated (as Kafka does): a coordinator failing over in between must not map
            // the instance back to the old member id and fence the live one.
            if r.error.is_none() {
                let durable = match stored {
                    Ok(Some(a)) => groups::persisted(&a).await,
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                };
                if let Err(e) = durable {
                    return fail(e);
                }
            }
            r
        }
        JoinOutcome::Wait => {
            // The rebalance deadline (the longest rebalance timeout of the members) bounds the
            // wait; the margin covers the timer's granularity.
            let bound = Duration::from_millis(rebalance_timeout_ms.max(0) as u64)
                + groups::TICK * 4
                + Duration::from_secs(1);
            match tokio::time::timeout(bound, rx).await {
                Ok(Ok(r)) => r,
                _ => {
                    coordinator.forget(waiter);
                    fail(GroupError::RebalanceInProgress)
                }
            }
        }
    }
}

// -------------------------------------------------------------------------------------------
// SyncGroup

pub async fn sync_group(svc: &Services, ctx: &Ctx, req: SyncGroupRequest) -> SyncGroupResponse {
    if !group_allowed(svc, ctx, Operation::Read, &req.group_id) {
        return SyncGroupResponse::default().with_error_code(group_denied());
    }
    let r = sync(svc, &req).await;
    let mut resp = SyncGroupResponse::default()
        .with_error_code(r.error.map_or(0, err))
        .with_assignment(r.assignment);
    if ctx.version >= 5 {
        resp.protocol_type = r.protocol_type.map(str_bytes);
        resp.protocol_name = r.protocol_name.map(str_bytes);
    }
    resp
}

async fn sync(svc: &Services, req: &SyncGroupRequest) -> SyncResponse {
    let state = &svc.state;
    let fail = |e: GroupError| SyncResponse {
        error: Some(e),
        ..SyncResponse::default()
    };
    let coordinator = &*svc.groups;
    let group = req.group_id.0.to_string();
    let mut shard = match coordinator.shard(state, &group).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let now = coordinator.now();
    let Some(g) = shard.groups.get_mut(&group) else {
        return fail(GroupError::UnknownMemberId);
    };
    let (waiter, rx) = coordinator.sync_waiter();
    let assignments: BTreeMap<String, Bytes> = req
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
        .collect();
    let (outcome, replaced) = g.sync(
        req.member_id.as_str(),
        req.group_instance_id.as_ref().map(|s| s.as_str()),
        req.generation_id,
        req.protocol_type.as_ref().map(|s| s.as_str()),
        req.protocol_name.as_ref().map(|s| s.as_str()),
        assignments,
        waiter,
        now.mono,
    );
    for r in replaced {
        coordinator.deliver(r);
    }
    match outcome {
        SyncOutcome::Reply(r) => {
            coordinator.forget(waiter);
            return r;
        }
        SyncOutcome::Wait => drop(shard),
        SyncOutcome::Persist {
            generation,
            assignments,
        } => {
            let value = weir_group::records::encode_group_value(&g.value_with(&assignments));
            persist_assignments(svc, shard, &group, value, generation, assignments).await;
        }
    }
    match tokio::time::timeout(SYNC_WAIT_MAX, rx).await {
        Ok(Ok(r)) => r,
        _ => {
            coordinator.forget(waiter);
            fail(GroupError::RebalanceInProgress)
        }
    }
}

/// Persists the leader's assignments, then tells the group the outcome. The assignment is
/// answered only once it is replicated: a coordinator that fails over after answering must
/// still know every member's assignment.
async fn persist_assignments(
    svc: &Services,
    shard: tokio::sync::OwnedMutexGuard<groups::Shard>,
    group: &str,
    value: Bytes,
    generation: i32,
    assignments: BTreeMap<String, Bytes>,
) {
    let (state, coordinator) = (&svc.state, &*svc.groups);
    let key = weir_group::records::encode_group_key(group);
    let appended = groups::append(state, &shard, vec![(key, Some(value))]);
    let index = shard.index;
    drop(shard);
    let result = match appended {
        Ok(a) => groups::persisted(&a).await,
        Err(e) => Err(e),
    };
    // Relock: if this broker lost the partition meanwhile, unloading it answered every
    // waiter (this one too) with NOT_COORDINATOR.
    if let Ok(mut shard) = coordinator.shard(state, group).await
        && shard.index == index
    {
        let now = coordinator.now();
        if let Some(g) = shard.groups.get_mut(group) {
            let effects = g.sync_persisted(
                &coordinator.config,
                generation,
                assignments,
                result,
                now.mono,
                now.wall,
            );
            let _ = coordinator.apply(state, &shard, group, effects);
        }
    }
}

// -------------------------------------------------------------------------------------------
// Heartbeat, LeaveGroup

pub async fn heartbeat(svc: &Services, ctx: &Ctx, req: HeartbeatRequest) -> HeartbeatResponse {
    if !group_allowed(svc, ctx, Operation::Read, &req.group_id) {
        return HeartbeatResponse::default().with_error_code(group_denied());
    }
    let state = &svc.state;
    let coordinator = &*svc.groups;
    let group = req.group_id.0.to_string();
    let result = match coordinator.shard(state, &group).await {
        Err(e) => Err(e),
        Ok(mut shard) => match shard.groups.get_mut(&group) {
            None => Err(GroupError::UnknownMemberId),
            Some(g) => g.heartbeat(
                req.member_id.as_str(),
                req.group_instance_id.as_ref().map(|s| s.as_str()),
                req.generation_id,
                coordinator.now().mono,
            ),
        },
    };
    HeartbeatResponse::default().with_error_code(result.err().map_or(0, err))
}

pub async fn leave_group(svc: &Services, ctx: &Ctx, req: LeaveGroupRequest) -> LeaveGroupResponse {
    if !group_allowed(svc, ctx, Operation::Read, &req.group_id) {
        return LeaveGroupResponse::default().with_error_code(group_denied());
    }
    let state = &svc.state;
    let coordinator = &*svc.groups;
    let group = req.group_id.0.to_string();
    let who: Vec<(String, Option<String>)> = if ctx.version >= 3 {
        req.members
            .iter()
            .map(|m| (m.member_id.to_string(), opt_str(&m.group_instance_id)))
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let mut results: Vec<Result<(), GroupError>> = Vec::with_capacity(who.len());
    let top = match coordinator.shard(state, &group).await {
        Err(e) => Err(e),
        Ok(mut shard) => {
            let now = coordinator.now();
            for (member, instance) in &who {
                let r = match shard.groups.get_mut(&group) {
                    None => Err(GroupError::UnknownMemberId),
                    Some(g) => {
                        let (r, effects) = g.leave(
                            &coordinator.config,
                            member,
                            instance.as_deref(),
                            now.mono,
                            now.wall,
                        );
                        let _ = coordinator.apply(state, &shard, &group, effects);
                        r
                    }
                };
                results.push(r);
            }
            Ok(())
        }
    };
    let mut resp = LeaveGroupResponse::default();
    match top {
        Err(e) => resp.error_code = err(e),
        Ok(()) if ctx.version >= 3 => {
            resp.members = who
                .into_iter()
                .zip(&results)
                .map(|((m, i), r)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(m))
                        .with_group_instance_id(i.map(str_bytes))
                        .with_error_code(r.err().map_or(0, err))
                })
                .collect();
        }
        Ok(()) => {
            resp.error_code = results.first().and_then(|r| r.err()).map_or(0, err);
        }
    }
    resp
}

// -------------------------------------------------------------------------------------------
// OffsetCommit, OffsetFetch, OffsetDelete

pub async fn offset_commit(
    svc: &Services,
    ctx: &Ctx,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let state = &svc.state;
    let group_ok = group_allowed(svc, ctx, Operation::Read, &req.group_id);
    let view = state.view();
    // Per partition: Ok(value to write) or the error to answer.
    let mut items: Vec<CommitItem> = Vec::new();
    let now_wall = state.clock.wall().get();
    let max_meta = svc.groups.config.offset_metadata_max_bytes;
    for t in &req.topics {
        let info = view.topic(t.name.0.as_str());
        let topic_ok = super::allowed(state, ctx, Operation::Read, ResourceType::Topic, &t.name);
        let parts = t
            .partitions
            .iter()
            .map(|p| {
                let r = if !group_ok {
                    Err(ResponseError::GroupAuthorizationFailed)
                } else if !topic_ok {
                    Err(ResponseError::TopicAuthorizationFailed)
                } else if info.is_none_or(|i| {
                    i.partition(weir_model::PartitionId(p.partition_index))
                        .is_none()
                }) {
                    Err(ResponseError::UnknownTopicOrPartition)
                } else if p
                    .committed_metadata
                    .as_ref()
                    .is_some_and(|m| m.len() > max_meta)
                {
                    Err(ResponseError::OffsetMetadataTooLarge)
                } else {
                    Ok(OffsetValue {
                        offset: Offset(p.committed_offset),
                        // Kafka's -1: the client did not say.
                        leader_epoch: (p.committed_leader_epoch >= 0)
                            .then_some(LeaderEpoch(p.committed_leader_epoch)),
                        metadata: p
                            .committed_metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                        commit_timestamp: Timestamp(now_wall),
                    })
                };
                (p.partition_index, r)
            })
            .collect();
        items.push((t.name.clone(), parts));
    }
    let group = req.group_id.0.to_string();
    let outcome = commit(svc, &req, &group, &items).await;
    let mut resp = OffsetCommitResponse::default();
    for (name, parts) in items {
        let partitions = parts
            .into_iter()
            .map(|(index, r)| {
                let code = match (&outcome, r) {
                    (_, Err(e)) => e.code(),
                    (Err(e), Ok(_)) => err(*e),
                    (Ok(()), Ok(_)) => 0,
                };
                OffsetCommitResponsePartition::default()
                    .with_partition_index(index)
                    .with_error_code(code)
            })
            .collect();
        resp.topics.push(
            OffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(partitions),
        );
    }
    resp
}

/// A topic of an OffsetCommit: per partition, the value to write or the error to answer.
type CommitItem = (TopicName, Vec<(i32, Result<OffsetValue, ResponseError>)>);
type CommitItems = [CommitItem];
/// A topic of an OffsetDelete: per partition, the error to answer, if any.
type DeleteItem = (TopicName, Vec<(i32, Option<GroupError>)>);

async fn commit(
    svc: &Services,
    req: &OffsetCommitRequest,
    group: &str,
    items: &CommitItems,
) -> Result<(), GroupError> {
    let state = &svc.state;
    let coordinator = &*svc.groups;
    let mut shard = coordinator.shard(state, group).await?;
    let now = coordinator.now();
    let generation = req.generation_id_or_member_epoch;
    if !shard.groups.contains_key(group) {
        if generation >= 0 && !shard.consumer.contains_key(group) {
            return Err(GroupError::IllegalGeneration);
        }
        // A group that uses Kafka only to store offsets (manual assignment, or an admin
        // resetting offsets) exists from its first commit.
        shard.groups.insert(
            group.to_string(),
            Group::new(WeirGroupId(group.to_string()), now.wall),
        );
    }
    if let Some(c) = shard.consumer.get_mut(group) {
        c.validate_commit(
            req.member_id.as_str(),
            generation,
            now.mono,
            &coordinator.consumer_config,
        )?;
    } else if let Some(g) = shard.groups.get_mut(group) {
        g.validate_commit(
            req.member_id.as_str(),
            req.group_instance_id.as_ref().map(|s| s.as_str()),
            generation,
            now.mono,
        )?;
    }
    let writes: Vec<(String, PartitionId, OffsetValue)> = items
        .iter()
        .flat_map(|(t, parts)| {
            parts.iter().filter_map(move |(p, r)| {
                r.as_ref()
                    .ok()
                    .map(|v| (t.0.to_string(), PartitionId(*p), v.clone()))
            })
        })
        .collect();
    if writes.is_empty() {
        return Ok(());
    }
    let records = writes
        .iter()
        .map(|(t, p, v)| groups::offset_record(group, t, *p, Some(v)))
        .collect();
    let index = shard.index;
    let appended = groups::append(state, &shard, records)?;
    drop(shard);
    groups::persisted(&appended).await?;
    let last = appended.last;
    // Replicated: the commit stands. Make it visible, unless a later write to the same
    // partition got there first (commits can complete out of order).
    if let Ok(mut shard) = coordinator.shard(state, group).await
        && shard.index == index
    {
        let g = shard
            .groups
            .entry(group.to_string())
            .or_insert_with(|| Group::new(WeirGroupId(group.to_string()), now.wall));
        for (t, p, v) in writes {
            g.set_offset(&t, p, Some(v), last);
        }
    }
    Ok(())
}

pub async fn offset_fetch(
    svc: &Services,
    ctx: &Ctx,
    req: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let mut resp = OffsetFetchResponse::default();
    if ctx.version >= 8 {
        resp.groups = offset_fetch_groups(svc, ctx, &req).await;
        return resp;
    }
    if !group_allowed(svc, ctx, Operation::Describe, &req.group_id) {
        resp.error_code = group_denied();
        return resp;
    }
    let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let (error, found) = fetch(svc, req.group_id.0.as_str(), wanted).await;
    resp.topics = found
        .into_iter()
        .map(|(name, parts)| {
            OffsetFetchResponseTopic::default()
                .with_name(super::topic_name(name))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(i, v)| {
                            let (o, e, m) = fetched(v);
                            let mut p = OffsetFetchResponsePartition::default()
                                .with_partition_index(i)
                                .with_committed_offset(o)
                                .with_metadata(Some(str_bytes(m)));
                            if ctx.version >= 5 {
                                p.committed_leader_epoch = e;
                            }
                            // v1 has no group-level error: it goes on every partition.
                            if ctx.version < 2 {
                                p.error_code = error.map_or(0, err);
                            }
                            p
                        })
                        .collect(),
                )
        })
        .collect();
    if ctx.version >= 2 {
        resp.error_code = error.map_or(0, err);
    }
    resp
}

/// OffsetFetch v8+: any number of groups in one request.
async fn offset_fetch_groups(
    svc: &Services,
    ctx: &Ctx,
    req: &OffsetFetchRequest,
) -> Vec<OffsetFetchResponseGroup> {
    let mut out = Vec::new();
    for g in &req.groups {
        if !group_allowed(svc, ctx, Operation::Describe, &g.group_id) {
            out.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_error_code(group_denied()),
            );
            continue;
        }
        let wanted: Option<Vec<(String, Vec<i32>)>> = g.topics.as_ref().map(|ts| {
            ts.iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                .collect()
        });
        let (error, found) = fetch(svc, g.group_id.0.as_str(), wanted).await;
        let topics = found
            .into_iter()
            .map(|(name, parts)| {
                OffsetFetchResponseTopics::default()
                    .with_name(super::topic_name(name))
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(i, v)| {
                                let (o, e, m) = fetched(v);
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(i)
                                    .with_committed_offset(o)
                                    .with_committed_leader_epoch(e)
                                    .with_metadata(Some(str_bytes(m)))
                            })
                            .collect(),
                    )
            })
            .collect();
        out.push(
            OffsetFetchResponseGroup::default()
                .with_group_id(g.group_id.clone())
                .with_topics(topics)
                .with_error_code(error.map_or(0, err)),
        );
    }
    out
}

fn fetched(v: Option<OffsetValue>) -> (i64, i32, String) {
    match v {
        Some(v) => (
            v.offset.get(),
            v.leader_epoch.map_or(-1, LeaderEpoch::get),
            v.metadata,
        ),
        None => (-1, -1, String::new()),
    }
}

type Fetched = Vec<(String, Vec<(i32, Option<OffsetValue>)>)>;

async fn fetch(
    svc: &Services,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> (Option<GroupError>, Fetched) {
    let state = &svc.state;
    let shard = match svc.groups.shard(state, group).await {
        Ok(s) => s,
        Err(e) => {
            // Partitions still listed, with no offset, so clients see which ones failed.
            let listed = wanted
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| (t, ps.into_iter().map(|p| (p, None)).collect()))
                .collect();
            return (Some(e), listed);
        }
    };
    let g = shard.groups.get(group);
    let out = match wanted {
        Some(w) => w
            .into_iter()
            .map(|(t, ps)| {
                let parts = ps
                    .into_iter()
                    .map(|p| (p, g.and_then(|g| g.offset(&t, PartitionId(p))).cloned()))
                    .collect();
                (t, parts)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<(i32, Option<OffsetValue>)>> = BTreeMap::new();
            if let Some(g) = g {
                for ((t, p), v) in g.offsets() {
                    by_topic
                        .entry(t.clone())
                        .or_default()
                        .push((p.get(), Some(v.clone())));
                }
            }
            by_topic.into_iter().collect()
        }
    };
    (None, out)
}

pub async fn offset_delete(
    svc: &Services,
    ctx: &Ctx,
    req: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let group = req.group_id.0.to_string();
    let mut resp = OffsetDeleteResponse::default();
    if !group_allowed(svc, ctx, Operation::Delete, &group) {
        resp.error_code = group_denied();
        return resp;
    }
    let outcome = delete_offsets(svc, &group, &req).await;
    match outcome {
        Err(e) => resp.error_code = err(e),
        Ok(results) => {
            resp.topics = results
                .into_iter()
                .map(|(name, parts)| {
                    OffsetDeleteResponseTopic::default()
                        .with_name(name)
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|(i, e)| {
                                    OffsetDeleteResponsePartition::default()
                                        .with_partition_index(i)
                                        .with_error_code(e.map_or(0, err))
                                })
                                .collect(),
                        )
                })
                .collect();
        }
    }
    resp
}

/// Deletes the offsets a request names, but those of topics the group is subscribed to;
/// answers per partition.
async fn delete_offsets(
    svc: &Services,
    group: &str,
    req: &OffsetDeleteRequest,
) -> Result<Vec<DeleteItem>, GroupError> {
    let (state, coordinator) = (&svc.state, &*svc.groups);
    let mut shard = coordinator.shard(state, group).await?;
    let g = shard
        .groups
        .get(group)
        .filter(|g| g.state() != GroupState::Dead)
        .ok_or(GroupError::GroupIdNotFound)?;
    if g.state() != GroupState::Empty && g.protocol_type() != Some("consumer") {
        return Err(GroupError::NonEmptyGroup);
    }
    let mut subscribed = if g.state() == GroupState::Empty {
        Vec::new()
    } else {
        g.subscribed_topics().unwrap_or_default()
    };
    // A live KIP-848 group's subscriptions count too (its classic entry only holds offsets).
    if let Some(c) = shard.consumer.get(group) {
        subscribed.extend(c.subscribed_topics());
    }
    let mut results = Vec::new();
    let mut tombstones = Vec::new();
    for t in &req.topics {
        let refuse = subscribed.iter().any(|s| s == t.name.0.as_str());
        let parts = t
            .partitions
            .iter()
            .map(|p| {
                if refuse {
                    (p.partition_index, Some(GroupError::GroupSubscribedToTopic))
                } else {
                    if g.offset(t.name.0.as_str(), PartitionId(p.partition_index))
                        .is_some()
                    {
                        tombstones.push((t.name.0.to_string(), PartitionId(p.partition_index)));
                    }
                    (p.partition_index, None)
                }
            })
            .collect();
        results.push((t.name.clone(), parts));
    }
    if !tombstones.is_empty() {
        let records = tombstones
            .iter()
            .map(|(t, p)| groups::offset_record(group, t, *p, None))
            .collect();
        let appended = groups::append(state, &shard, records)?;
        if let Some(g) = shard.groups.get_mut(group) {
            for (t, p) in &tombstones {
                g.set_offset(t, *p, None, appended.last);
            }
        }
        drop(shard);
        groups::persisted(&appended).await?;
    }
    Ok(results)
}

// -------------------------------------------------------------------------------------------
// DescribeGroups, ListGroups, DeleteGroups

pub async fn describe_groups(
    svc: &Services,
    ctx: &Ctx,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let state = &svc.state;
    let mut resp = DescribeGroupsResponse::default();
    for id in req.groups {
        let mut d = DescribedGroup::default()
            .with_group_id(id.clone())
            .with_group_state(str_bytes("Dead"))
            .with_protocol_type(str_bytes(""))
            .with_protocol_data(str_bytes(""));
        if !group_allowed(svc, ctx, Operation::Describe, &id) {
            d.error_code = group_denied();
            resp.groups.push(d);
            continue;
        }
        match svc.groups.shard(state, id.0.as_str()).await {
            Err(e) => d.error_code = err(e),
            Ok(shard) => {
                // DescribeGroups describes classic groups only; a KIP-848 group shows as Dead,
                // as Kafka shows it (ConsumerGroupDescribe is that protocol's API).
                let classic = shard
                    .groups
                    .get(id.0.as_str())
                    .filter(|_| !shard.consumer.contains_key(id.0.as_str()));
                if let Some(g) = classic {
                    d.group_state = str_bytes(g.state().as_str());
                    d.protocol_type = str_bytes(g.protocol_type().unwrap_or_default());
                    d.protocol_data = str_bytes(g.protocol().unwrap_or_default());
                    d.members = g
                        .members()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(str_bytes(m.id.clone()))
                                .with_group_instance_id(m.instance_id.clone().map(str_bytes))
                                .with_client_id(str_bytes(m.client_id.clone()))
                                .with_client_host(str_bytes(m.client_host.clone()))
                                .with_member_metadata(g.described_metadata(m))
                                .with_member_assignment(m.assignment.clone())
                        })
                        .collect();
                }
            }
        }
        resp.groups.push(d);
    }
    resp
}

pub async fn list_groups(svc: &Services, ctx: &Ctx, req: ListGroupsRequest) -> ListGroupsResponse {
    let state = &svc.state;
    let states: Vec<String> = req
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let types: Vec<String> = req
        .types_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let mut resp = ListGroupsResponse::default();
    // DESCRIBE on the cluster lists every group; without it, those the principal may describe.
    let all = super::allowed_on_cluster(state, ctx, Operation::Describe);
    for (id, st, protocol_type, group_type) in svc.groups.list(state).await {
        if !all && !group_allowed(svc, ctx, Operation::Describe, &id) {
            continue;
        }
        if !states.is_empty() && !states.contains(&st.to_ascii_lowercase()) {
            continue;
        }
        if !types.is_empty() && !types.iter().any(|t| t == group_type) {
            continue;
        }
        let mut l = ListedGroup::default()
            .with_group_id(GroupId(str_bytes(id)))
            .with_protocol_type(str_bytes(protocol_type));
        if ctx.version >= 4 {
            l.group_state = str_bytes(st);
        }
        if ctx.version >= 5 {
            l.group_type = str_bytes(group_type);
        }
        resp.groups.push(l);
    }
    resp
}

pub async fn delete_groups(
    svc: &Services,
    ctx: &Ctx,
    req: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut resp = DeleteGroupsResponse::default();
    for id in req.groups_names {
        if !group_allowed(svc, ctx, Operation::Delete, &id) {
            let denied = DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(group_denied());
            resp.results.push(denied);
            continue;
        }
        let r = delete_group(svc, id.0.as_str()).await;
        resp.results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(r.err().map_or(0, err)),
        );
    }
    resp
}

async fn delete_group(svc: &Services, group: &str) -> Result<(), GroupError> {
    let state = &svc.state;
    let coordinator = &*svc.groups;
    let mut shard = coordinator.shard(state, group).await?;
    let now = coordinator.now();
    if shard.consumer.get(group).is_some_and(|c| !c.is_empty()) {
        return Err(GroupError::NonEmptyGroup);
    }
    let g = shard
        .groups
        .get_mut(group)
        .filter(|g| g.state() != GroupState::Dead)
        .ok_or(GroupError::GroupIdNotFound)?;
    let offsets: Vec<(String, PartitionId)> = g.offsets().keys().cloned().collect();
    g.mark_dead(now.wall)?;
    let mut records: Vec<_> = offsets
        .iter()
        .map(|(t, p)| groups::offset_record(group, t, *p, None))
        .collect();
    records.push((weir_group::records::encode_group_key(group), None));
    // Removed only once the tombstones are in the log; a failed append leaves the group as
    // it was (already Dead in memory, so it answers GROUP_ID_NOT_FOUND until reloaded).
    let appended = groups::append(state, &shard, records)?;
    shard.groups.remove(group);
    drop(shard);
    groups::persisted(&appended).await
}

// -------------------------------------------------------------------------------------------
// ConsumerGroupHeartbeat (KIP-848)

pub async fn consumer_group_heartbeat(
    svc: &Services,
    ctx: &Ctx,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    use weir_group::consumer::ConsumerGroup;
    let (state, coordinator) = (&svc.state, &*svc.groups);
    let group = req.group_id.0.to_string();
    if let Some(refused) = unsupported_heartbeat(&req) {
        return refused;
    }
    if !group_allowed(svc, ctx, Operation::Read, &group) {
        return ConsumerGroupHeartbeatResponse::default()
            .with_error_code(group_denied())
            .with_error_message(Some(str_bytes("READ on the group is needed")));
    }
    let mut shard = match coordinator.shard(state, &group).await {
        Ok(s) => s,
        Err(e) => return heartbeat_failed(e, None),
    };
    if shard
        .groups
        .get(&group)
        .is_some_and(|g| g.member_count() > 0)
    {
        return heartbeat_failed(
            GroupError::InconsistentGroupProtocol,
            Some(format!("group {group} is a classic group with members")),
        );
    }
    let topics = topic_metas(state);
    let now = coordinator.now();
    let g = shard
        .consumer
        .entry(group.clone())
        .or_insert_with(|| ConsumerGroup::new(group.clone()));
    let r = g.heartbeat(
        &coordinator.consumer_config,
        heartbeat_request(ctx, &req),
        uuid::Uuid::new_v4().to_string(),
        &topics,
        now.mono,
    );
    if g.is_empty() {
        shard.consumer.remove(&group);
    }
    // The group's offsets live with the classic entry, which must exist for commits.
    shard
        .groups
        .entry(group.clone())
        .or_insert_with(|| Group::new(WeirGroupId(group.clone()), now.wall));
    heartbeat_response(r, req.member_epoch)
}

fn heartbeat_failed(e: GroupError, msg: Option<String>) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(err(e))
        .with_error_message(Some(str_bytes(msg.unwrap_or_else(|| e.to_string()))))
        .with_member_epoch(-1)
}

/// A heartbeat asking for what Weir does not do: a regular expression, another assignor.
fn unsupported_heartbeat(
    req: &ConsumerGroupHeartbeatRequest,
) -> Option<ConsumerGroupHeartbeatResponse> {
    if req.subscribed_topic_regex.is_some() && req.subscribed_topic_names.is_none() {
        return Some(heartbeat_failed(
            GroupError::InvalidRequest,
            Some("subscribing by regular expression is not supported; name the topics".into()),
        ));
    }
    let a = req
        .server_assignor
        .as_ref()
        .filter(|a| a.as_str() != "range" && a.as_str() != "uniform")?;
    Some(
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(ResponseError::UnsupportedAssignor.code())
            .with_error_message(Some(str_bytes(format!(
                "server assignor {a:?} is not supported; Weir assigns with \"range\""
            ))))
            .with_member_epoch(-1),
    )
}

/// Every topic, as the KIP-848 assignor sees it.
fn topic_metas(state: &BrokerState) -> Vec<weir_group::consumer::TopicMeta> {
    state
        .view()
        .topics
        .values()
        .map(|t| weir_group::consumer::TopicMeta {
            id: t.id.0,
            name: t.name.to_string(),
            partitions: t.partitions.len() as i32,
        })
        .collect()
}

/// The wire request as the group state machine takes it.
fn heartbeat_request(
    ctx: &Ctx,
    req: &ConsumerGroupHeartbeatRequest,
) -> weir_group::consumer::HeartbeatRequest {
    let owned = req.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .map(|tp| {
                (
                    *tp.topic_id.as_bytes(),
                    tp.partitions.iter().copied().collect(),
                )
            })
            .collect()
    });
    weir_group::consumer::HeartbeatRequest {
        member_id: req.member_id.to_string(),
        // KIP-848's numbers stop here.
        member_epoch: match req.member_epoch {
            0 => MemberEpoch::Join,
            -2 => MemberEpoch::LeaveTemporarily,
            e if e < 0 => MemberEpoch::Leave,
            e => MemberEpoch::At(e),
        },
        instance_id: opt_str(&req.instance_id),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topics: req
            .subscribed_topic_names
            .as_ref()
            .map(|ns| ns.iter().map(|n| n.0.to_string()).collect()),
        owned,
        client_id: ctx.client_id.to_string(),
        client_host: ctx.client_host.to_string(),
    }
}

/// The wire response; a leave is answered with the epoch it was sent with (`sent`).
fn heartbeat_response(
    r: weir_group::consumer::HeartbeatResponse,
    sent: i32,
) -> ConsumerGroupHeartbeatResponse {
    use kafka_protocol::messages::consumer_group_heartbeat_response::{
        Assignment, TopicPartitions,
    };
    let mut resp = ConsumerGroupHeartbeatResponse::default()
        .with_error_code(r.error.map_or(0, err))
        .with_member_id(Some(str_bytes(r.member_id)))
        .with_member_epoch(r.member_epoch.unwrap_or(sent))
        .with_heartbeat_interval_ms(r.heartbeat_interval_ms);
    if let Some(e) = r.error {
        resp.error_message = Some(str_bytes(e.to_string()));
    }
    resp.assignment = r.assignment.map(|a| {
        Assignment::default().with_topic_partitions(
            a.into_iter()
                .map(|(id, ps)| {
                    TopicPartitions::default()
                        .with_topic_id(uuid::Uuid::from_bytes(id))
                        .with_partitions(ps.into_iter().collect())
                })
                .collect(),
        )
    });
    resp
}
