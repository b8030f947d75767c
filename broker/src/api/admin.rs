//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
//! AlterConfigs and IncrementalAlterConfigs.
//!
//! Changes go to the coordinators (gRPC Admin), which place replicas and commit through Raft;
//! the broker then waits until its own view shows the change, so a client that creates a
//! topic and asks this broker for its metadata sees it. Refusals carry the coordinators'
//! Kafka error code and a message that says what is allowed.

use super::{Ctx, str_bytes, topic_name, uuid_of};
use crate::cluster::TopicView;
use crate::state::BrokerState;
use crate::topic_config::{self, TOPIC_CONFIG_KEYS};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use weir_coordinator_client::ControlClient;
use weir_model::TopicId;
use weir_model::acl::{Operation, ResourceType};
use weir_model::limits::PARTITIONS_PER_TOPIC_MAX;
use weir_proto::v1;

pub(super) type Refusal = (ResponseError, String);

/// A created (or validated) topic: what the coordinators returned, the partition count and
/// replication factor asked for, and the configs.
type Created = (Option<TopicView>, i32, i32, BTreeMap<String, String>);

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// One step of an admin request: the coordinators' commit, or this broker seeing it.
pub(super) const ADMIN_TIMEOUT: Duration =
    Duration::from_millis(weir_model::limits::ADMIN_WAIT_MS_MAX);

/// A refusal for a missing ACL on a topic.
fn denied(what: &str) -> Refusal {
    (
        ResponseError::TopicAuthorizationFailed,
        format!("{what} is needed"),
    )
}

/// A refusal for a missing ACL on a config resource: the topic's code, or the cluster's.
fn denied_on(rt: ResourceType, op: &str) -> Refusal {
    match rt {
        ResourceType::Topic => denied(&format!("{op} on the topic")),
        _ => (
            ResponseError::ClusterAuthorizationFailed,
            format!("{op} on the cluster is needed"),
        ),
    }
}

/// The ACL resource a config resource is checked as: a topic, or (a broker) the cluster.
fn config_resource(resource_type: i8, name: &str) -> (ResourceType, &str) {
    if resource_type == RESOURCE_TOPIC {
        (ResourceType::Topic, name)
    } else {
        (ResourceType::Cluster, weir_model::acl::CLUSTER_NAME)
    }
}

fn check_partitions(n: i32) -> Result<(), Refusal> {
    if (1..=PARTITIONS_PER_TOPIC_MAX).contains(&n) {
        Ok(())
    } else {
        Err((
            ResponseError::InvalidPartitions,
            format!("partitions must be from 1 to {PARTITIONS_PER_TOPIC_MAX}, not {n}"),
        ))
    }
}

/// A coordinator's item error as a Kafka refusal.
pub(super) fn refusal(e: Option<v1::Error>) -> Result<(), Refusal> {
    match e {
        Some(e) if e.code != 0 => Err((
            ResponseError::try_from_code(e.code as i16)
                .unwrap_or(ResponseError::UnknownServerError),
            e.message,
        )),
        _ => Ok(()),
    }
}

fn unreachable_refusal(e: weir_coordinator_client::ControlError) -> Refusal {
    tracing::warn!(error = %weir_model::Chain(&e), "admin request: coordinators unreachable");
    (ResponseError::RequestTimedOut, e.to_string())
}

/// Calls the coordinators' Admin service with failover.
pub(super) async fn admin<T, F, Fut>(state: &BrokerState, f: F) -> Result<T, Refusal>
where
    F: Fn(weir_proto::v1::admin_client::AdminClient<tonic::transport::Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    state
        .control
        .call(ADMIN_TIMEOUT, |ch| {
            let fut = f(ControlClient::admin(ch));
            async move { fut.await.map(|r| r.into_inner()) }
        })
        .await
        .map_err(unreachable_refusal)
}

/// Creates a topic through the coordinators and waits until this broker's view has it.
async fn create_topic(
    state: &BrokerState,
    req: v1::CreateTopicRequest,
) -> Result<Option<TopicView>, Refusal> {
    let validate_only = req.validate_only;
    let name = req.name.clone();
    let resp = admin(state, |mut c| {
        let req = req.clone();
        async move { c.create_topic(req).await }
    })
    .await?;
    refusal(resp.error)?;
    if validate_only {
        return Ok(None);
    }
    let id = resp
        .topic
        .as_ref()
        .and_then(|t| TopicId::parse(&t.id))
        .ok_or((
            ResponseError::UnknownServerError,
            "the coordinators returned no topic id".to_string(),
        ))?;
    let seen = state
        .wait_for_view(ADMIN_TIMEOUT, |v| {
            v.topic(&name).is_some_and(|t| t.id == id)
        })
        .await;
    if !seen {
        return Err((
            ResponseError::RequestTimedOut,
            format!("topic '{name}' was created but this broker has not seen it yet; retry"),
        ));
    }
    Ok(state.view().topic(&name).cloned())
}

/// Auto-creation (Metadata, Produce to an unknown topic): the cluster defaults, and a topic
/// that a racing request created meanwhile counts as success.
pub async fn auto_create(state: &BrokerState, name: &str) -> Result<(), Refusal> {
    weir_model::TopicName::new(name)
        .map_err(|e| (ResponseError::InvalidTopicException, e.to_string()))?;
    let req = v1::CreateTopicRequest {
        name: name.to_string(),
        partitions: Some(state.config.default_partitions),
        replication_factor: None,
        configs: Default::default(),
        assignment: Vec::new(),
        validate_only: false,
    };
    match create_topic(state, req).await {
        Ok(_) => Ok(()),
        Err((ResponseError::TopicAlreadyExists, _)) => {
            state
                .wait_for_view(ADMIN_TIMEOUT, |v| v.topic(name).is_some())
                .await;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Creates `__consumer_offsets` if it does not exist yet (on the first FindCoordinator, as
/// Kafka does): compacted, with `min.insync.replicas` of 2 when it has 3 or more replicas so an
/// acknowledged commit is on two brokers, and a replication factor capped by the live brokers
/// so a single-broker cluster (`weir dev`) can run groups.
pub(crate) async fn ensure_offsets_topic(state: &BrokerState) -> Result<(), Refusal> {
    let name = crate::groups::OFFSETS_TOPIC;
    if state.view().topic(name).is_some() {
        return Ok(());
    }
    let settings = &state.config.groups;
    let live = state.view().brokers.values().filter(|b| !b.fenced).count() as i32;
    let rf = settings.offsets_topic_replication_factor.min(live.max(1));
    let mut configs = std::collections::HashMap::new();
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    configs.insert("segment.bytes".to_string(), (100 * 1024 * 1024).to_string());
    configs.insert(
        "min.insync.replicas".to_string(),
        if rf >= 3 { "2" } else { "1" }.to_string(),
    );
    let req = v1::CreateTopicRequest {
        name: name.to_string(),
        partitions: Some(settings.offsets_topic_partitions),
        replication_factor: Some(rf),
        configs: configs.into_iter().collect(),
        assignment: Vec::new(),
        validate_only: false,
    };
    match create_topic(state, req).await {
        Ok(_) => {
            if rf < settings.offsets_topic_replication_factor {
                tracing::warn!(
                    wanted = settings.offsets_topic_replication_factor,
                    replicas = rf,
                    "created __consumer_offsets with fewer replicas than configured: only {live} brokers were live"
                );
            }
            Ok(())
        }
        Err((ResponseError::TopicAlreadyExists, _)) => {
            state
                .wait_for_view(ADMIN_TIMEOUT, |v| v.topic(name).is_some())
                .await;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

pub async fn create_topics(
    state: &Arc<BrokerState>,
    ctx: &Ctx,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let dupes: HashSet<String> = req
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.0.to_string()))
        .map(|t| t.name.0.to_string())
        .collect();
    let mut r = CreateTopicsResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut res = CreatableTopicResult::default().with_name(t.name.clone());
        let may_create = super::allowed_on_cluster(state, ctx, Operation::Create)
            || super::allowed(state, ctx, Operation::Create, ResourceType::Topic, &name);
        let outcome = if may_create {
            create_one(state, &t, req.validate_only, dupes.contains(&name)).await
        } else {
            Err(denied("CREATE on the cluster or the topic"))
        };
        match outcome {
            Ok(created) => fill_created(state, ctx, &mut res, created),
            Err((code, msg)) => {
                res.error_code = code.code();
                res.error_message = Some(str_bytes(msg));
                if ctx.version >= 5 {
                    res.num_partitions = -1;
                    res.replication_factor = -1;
                }
            }
        }
        r.topics.push(res);
    }
    r
}

/// Checks one topic of a CreateTopics request and asks the coordinators to create it.
async fn create_one(
    state: &BrokerState,
    t: &create_topics_request::CreatableTopic,
    validate_only: bool,
    duplicate: bool,
) -> Result<Created, Refusal> {
    let name = t.name.0.to_string();
    if duplicate {
        return Err((
            ResponseError::InvalidRequest,
            format!("topic '{name}' appears more than once in the request"),
        ));
    }
    let assignment: Vec<v1::ReplicaList> = t
        .assignments
        .iter()
        .map(|a| v1::ReplicaList {
            replicas: a.broker_ids.iter().map(|b| b.0).collect(),
        })
        .collect();
    if !assignment.is_empty() && (t.num_partitions != -1 || t.replication_factor != -1) {
        return Err((
            ResponseError::InvalidRequest,
            "give either replica assignments or partitions and replication factor, not both".into(),
        ));
    }
    let partitions = if !assignment.is_empty() {
        assignment.len() as i32
    } else if t.num_partitions == -1 {
        state.config.default_partitions
    } else {
        t.num_partitions
    };
    check_partitions(partitions)?;
    let configs = topic_config::validate_all(
        t.configs
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
    )
    .map_err(|e| (ResponseError::InvalidConfig, e.to_string()))?;
    let rf = if !assignment.is_empty() {
        assignment[0].replicas.len() as i32
    } else {
        i32::from(t.replication_factor)
    };
    let creq = v1::CreateTopicRequest {
        name: name.clone(),
        // Kafka's -1 ("the default") stops here: the coordinators take an absent value.
        partitions: assignment.is_empty().then_some(partitions),
        replication_factor: (assignment.is_empty() && t.replication_factor != -1)
            .then_some(i32::from(t.replication_factor)),
        configs: configs.clone().into_iter().collect(),
        assignment,
        validate_only,
    };
    let info = create_topic(state, creq).await?;
    Ok((info, partitions, rf, configs))
}

/// What CreateTopics v5+ reports of a created topic: its partitions, replication factor and
/// effective configs (and its id from v7).
fn fill_created(state: &BrokerState, ctx: &Ctx, res: &mut CreatableTopicResult, created: Created) {
    let (info, partitions, rf, configs) = created;
    if ctx.version >= 5 {
        res.num_partitions = info
            .as_ref()
            .map_or(partitions, |i| i.partitions.len() as i32);
        res.replication_factor = info
            .as_ref()
            .and_then(|i| i.partitions.first())
            .map_or(rf, |p| p.replicas.len() as i32)
            .clamp(-1, i32::from(i16::MAX)) as i16;
        let configs = info.as_ref().map_or(configs, |i| i.configs.clone());
        res.configs = Some(
            effective_configs(state, &configs)
                .into_iter()
                .map(|(k, v, source)| {
                    CreatableTopicConfigs::default()
                        .with_name(str_bytes(k))
                        .with_value(Some(str_bytes(v)))
                        .with_config_source(source)
                })
                .collect(),
        );
    }
    if ctx.version >= 7
        && let Some(i) = &info
    {
        res.topic_id = uuid_of(i.id);
    }
}

/// Every topic config with its effective value and source, in key order.
fn effective_configs(
    state: &BrokerState,
    overrides: &BTreeMap<String, String>,
) -> Vec<(String, String, i8)> {
    TOPIC_CONFIG_KEYS
        .iter()
        .map(|k| match overrides.get(k.name) {
            Some(v) => (k.name.to_string(), v.clone(), SOURCE_DYNAMIC_TOPIC),
            None => (
                k.name.to_string(),
                topic_config::default_value(k.name, &state.config.log_defaults),
                SOURCE_DEFAULT,
            ),
        })
        .collect()
}

pub async fn delete_topics(
    state: &Arc<BrokerState>,
    ctx: &Ctx,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    // v6 names topics by name or id in `topics`; earlier versions list names.
    let targets: Vec<(Option<String>, uuid::Uuid)> = if ctx.version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    let mut r = DeleteTopicsResponse::default();
    for (name, id) in targets {
        let mut res = DeletableTopicResult::default();
        if ctx.version >= 6 {
            res.topic_id = id;
        }
        let view = state.view();
        let topic = match &name {
            Some(n) => view.topic(n).cloned(),
            None => view.topic_by_id(TopicId(*id.as_bytes())).cloned(),
        };
        res.name = name
            .clone()
            .or_else(|| topic.as_ref().map(|t| t.name.to_string()))
            .map(topic_name);
        let may_delete = res.name.as_ref().is_some_and(|n| {
            super::allowed(
                state,
                ctx,
                Operation::Delete,
                ResourceType::Topic,
                n.0.as_str(),
            )
        });
        let outcome = if may_delete {
            delete_one(state, name.is_none(), topic).await
        } else {
            Err(denied("DELETE on the topic"))
        };
        if let Err((code, msg)) = outcome {
            res.error_code = code.code();
            if ctx.version >= 5 {
                res.error_message = Some(str_bytes(msg));
            }
        }
        r.responses.push(res);
    }
    r
}

/// Deletes one topic through the coordinators and waits until this broker's view lost it.
async fn delete_one(
    state: &BrokerState,
    by_id: bool,
    topic: Option<TopicView>,
) -> Result<(), Refusal> {
    let Some(t) = topic else {
        return Err(if by_id {
            (ResponseError::UnknownTopicId, "no such topic".to_string())
        } else {
            (
                ResponseError::UnknownTopicOrPartition,
                "no such topic".to_string(),
            )
        });
    };
    let tname = t.name.to_string();
    if tname == crate::groups::OFFSETS_TOPIC {
        return Err((
            ResponseError::InvalidTopicException,
            "__consumer_offsets is internal: deleting it would lose every group's offsets"
                .to_string(),
        ));
    }
    let resp = admin(state, |mut c| {
        let name = tname.clone();
        async move { c.delete_topic(v1::DeleteTopicRequest { name }).await }
    })
    .await?;
    refusal(resp.error)?;
    let gone = state
        .wait_for_view(ADMIN_TIMEOUT, |v| v.topic_by_id(t.id).is_none())
        .await;
    if !gone {
        return Err((
            ResponseError::RequestTimedOut,
            format!("topic '{tname}' was deleted but this broker has not seen it yet"),
        ));
    }
    Ok(())
}

pub async fn create_partitions(
    state: &Arc<BrokerState>,
    ctx: &Ctx,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut r = CreatePartitionsResponse::default();
    for t in req.topics {
        let mut res = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let outcome = if super::allowed(state, ctx, Operation::Alter, ResourceType::Topic, &t.name)
        {
            add_partitions(state, &t, req.validate_only).await
        } else {
            Err(denied("ALTER on the topic"))
        };
        if let Err((code, msg)) = outcome {
            res.error_code = code.code();
            res.error_message = Some(str_bytes(msg));
        }
        r.results.push(res);
    }
    r
}

/// Grows one topic of a CreatePartitions request through the coordinators, and waits until
/// this broker's view has the new partitions.
async fn add_partitions(
    state: &BrokerState,
    t: &create_partitions_request::CreatePartitionsTopic,
    validate_only: bool,
) -> Result<(), Refusal> {
    let name = t.name.0.to_string();
    if name == crate::groups::OFFSETS_TOPIC {
        // The group-to-partition hash depends on the partition count.
        return Err((
            ResponseError::InvalidTopicException,
            "__consumer_offsets is internal: its partition count is fixed at creation".to_string(),
        ));
    }
    let current = state
        .view()
        .topic(&name)
        .map(|i| i.partitions.len() as i32)
        .ok_or_else(|| {
            (
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{name}' does not exist"),
            )
        })?;
    if t.count <= current {
        return Err((
            ResponseError::InvalidPartitions,
            format!(
                "Topic currently has {current} partitions, which is higher than or equal to the requested {}; partitions can only grow.",
                t.count
            ),
        ));
    }
    check_partitions(t.count)?;
    let assignment: Vec<v1::ReplicaList> = t
        .assignments
        .iter()
        .flatten()
        .map(|a| v1::ReplicaList {
            replicas: a.broker_ids.iter().map(|b| b.0).collect(),
        })
        .collect();
    let creq = v1::CreatePartitionsRequest {
        name: name.clone(),
        count: t.count,
        assignment,
        validate_only,
    };
    let resp = admin(state, |mut c| {
        let creq = creq.clone();
        async move { c.create_partitions(creq).await }
    })
    .await?;
    refusal(resp.error)?;
    if validate_only {
        return Ok(());
    }
    let count = t.count as usize;
    let seen = state
        .wait_for_view(ADMIN_TIMEOUT, |v| {
            v.topic(&name).is_some_and(|i| i.partitions.len() >= count)
        })
        .await;
    if !seen {
        return Err((
            ResponseError::RequestTimedOut,
            format!("partitions of '{name}' were added but this broker has not seen them yet"),
        ));
    }
    Ok(())
}

/// Broker configs as DescribeConfigs shows them; they are set by flags at start.
fn broker_configs(state: &BrokerState) -> Vec<(&'static str, String)> {
    let c = &state.config;
    vec![
        ("node.id", c.node_id.to_string()),
        ("log.dirs", c.data_dir.display().to_string()),
        (
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
        ),
        ("num.partitions", c.default_partitions.to_string()),
        ("default.replication.factor", "1".into()),
        ("socket.request.max.bytes", c.request_bytes_max.to_string()),
        ("max.connections", c.connections_max.to_string()),
        (
            "message.max.bytes",
            c.log_defaults.max_message_bytes.to_string(),
        ),
        (
            "log.segment.bytes",
            c.log_defaults.segment_bytes.to_string(),
        ),
        (
            "log.retention.ms",
            c.log_defaults
                .retention_ms
                .map_or("-1".into(), |v| v.to_string()),
        ),
        (
            "log.retention.bytes",
            c.log_defaults
                .retention_bytes
                .map_or("-1".into(), |v| v.to_string()),
        ),
    ]
}

pub async fn describe_configs(
    state: &Arc<BrokerState>,
    ctx: &Ctx,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let mut r = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut out = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        let wanted = |k: &str| {
            res.configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|w| w.as_str() == k))
        };
        let include = Include {
            synonyms: req.include_synonyms,
            documentation: req.include_documentation && ctx.version >= 3,
            types: ctx.version >= 3,
        };
        let entry =
            |name: &str, value: String, source: i8, read_only: bool, kind: i8, doc: &str| {
                describe_entry(name, value, source, read_only, kind, doc, include)
            };
        let (rt, rname) = config_resource(res.resource_type, res.resource_name.as_str());
        if !super::allowed(state, ctx, Operation::DescribeConfigs, rt, rname) {
            let (code, msg) = denied_on(rt, "DESCRIBE_CONFIGS");
            out.error_code = code.code();
            out.error_message = Some(str_bytes(msg));
            r.results.push(out);
            continue;
        }
        match res.resource_type {
            RESOURCE_TOPIC => {
                describe_topic(state, res.resource_name.as_str(), &wanted, &entry, &mut out)
            }
            RESOURCE_BROKER => {
                let name = res.resource_name.as_str();
                if !name.is_empty() && name != state.config.node_id.to_string() {
                    out.error_code = ResponseError::InvalidRequest.code();
                    out.error_message = Some(str_bytes(format!(
                        "this is broker {}, not {name}",
                        state.config.node_id
                    )));
                } else {
                    for (k, v) in broker_configs(state) {
                        if wanted(k) {
                            out.configs.push(entry(
                                k,
                                v,
                                SOURCE_STATIC_BROKER,
                                true,
                                2,
                                "set by a flag when the broker starts",
                            ));
                        }
                    }
                }
            }
            other => {
                out.error_code = ResponseError::InvalidRequest.code();
                out.error_message = Some(str_bytes(format!(
                    "resource type {other} is not supported; use 2 (topic) or 4 (broker)"
                )));
            }
        }
        r.results.push(out);
    }
    r
}

/// What a DescribeConfigs request asks to be included with each config.
#[derive(Clone, Copy)]
struct Include {
    synonyms: bool,
    documentation: bool,
    types: bool,
}

fn describe_entry(
    name: &str,
    value: String,
    source: i8,
    read_only: bool,
    kind: i8,
    doc: &str,
    include: Include,
) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(name))
        .with_value(Some(str_bytes(value.clone())))
        .with_read_only(read_only)
        .with_config_source(source);
    if include.synonyms {
        e.synonyms = vec![
            DescribeConfigsSynonym::default()
                .with_name(str_bytes(name))
                .with_value(Some(str_bytes(value)))
                .with_source(source),
        ];
    }
    if include.types {
        e.config_type = kind;
    }
    if include.documentation {
        e.documentation = Some(str_bytes(doc));
    }
    e
}

/// Makes one config's result: name, value, source, read-only, type, documentation.
type Entry<'a> = dyn Fn(&str, String, i8, bool, i8, &str) -> DescribeConfigsResourceResult + 'a;

/// A topic's effective configs, those asked for.
fn describe_topic(
    state: &BrokerState,
    topic: &str,
    wanted: &dyn Fn(&str) -> bool,
    entry: &Entry<'_>,
    out: &mut DescribeConfigsResult,
) {
    let view = state.view();
    let Some(t) = view.topic(topic) else {
        out.error_code = ResponseError::UnknownTopicOrPartition.code();
        out.error_message = Some(str_bytes(format!("topic '{topic}' does not exist")));
        return;
    };
    for (k, v, source) in effective_configs(state, &t.configs) {
        if !wanted(&k) {
            continue;
        }
        let key = TOPIC_CONFIG_KEYS.iter().find(|c| c.name == k);
        out.configs.push(entry(
            &k,
            v,
            source,
            false,
            key.map_or(2, |c| c.kind as i8),
            key.map_or("", |c| c.doc),
        ));
    }
}

/// The outcome of altering one resource's configs: `change` computes the new set of
/// overrides from the current one; the whole set goes to the coordinators.
async fn alter_resource(
    state: &BrokerState,
    ctx: &Ctx,
    (resource_type, name): (i8, &StrBytes),
    validate_only: bool,
    change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Refusal>,
) -> Result<(), Refusal> {
    let (rt, rname) = config_resource(resource_type, name.as_str());
    if !super::allowed(state, ctx, Operation::AlterConfigs, rt, rname) {
        return Err(denied_on(rt, "ALTER_CONFIGS"));
    }
    match resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            return Err((
                ResponseError::InvalidRequest,
                "broker configs are set by flags when the broker starts; see `weir-broker --help`"
                    .into(),
            ));
        }
        other => {
            return Err((
                ResponseError::InvalidRequest,
                format!("resource type {other} is not supported; use 2 (topic)"),
            ));
        }
    }
    let topic = state.view().topic(name.as_str()).cloned().ok_or_else(|| {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("topic '{}' does not exist", name.as_str()),
        )
    })?;
    let configs = change(&topic.configs)?;
    if validate_only {
        return Ok(());
    }
    let req = v1::AlterConfigsRequest {
        name: topic.name.to_string(),
        set: configs.clone().into_iter().collect(),
        delete: Vec::new(),
        replace: true,
        validate_only: false,
    };
    let resp = admin(state, |mut c| {
        let req = req.clone();
        async move { c.alter_configs(req).await }
    })
    .await?;
    refusal(resp.error)?;
    let seen = state
        .wait_for_view(ADMIN_TIMEOUT, |v| {
            v.topic_by_id(topic.id).is_none_or(|t| t.configs == configs)
        })
        .await;
    if !seen {
        return Err((
            ResponseError::RequestTimedOut,
            format!(
                "configs of '{}' were changed but this broker has not seen them yet",
                topic.name
            ),
        ));
    }
    Ok(())
}

pub async fn alter_configs(
    state: &Arc<BrokerState>,
    ctx: &Ctx,
    req: AlterConfigsRequest,
) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let mut r = AlterConfigsResponse::default();
    for res in req.resources {
        // AlterConfigs replaces the whole set of overrides with the one given.
        let outcome = alter_resource(
            state,
            ctx,
            (res.resource_type, &res.resource_name),
            req.validate_only,
            |_| {
                topic_config::validate_all(
                    res.configs
                        .iter()
                        .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
                )
                .map_err(|e| (ResponseError::InvalidConfig, e.to_string()))
            },
        )
        .await;
        let mut out = AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        if let Err((code, msg)) = outcome {
            out.error_code = code.code();
            out.error_message = Some(str_bytes(msg));
        }
        r.responses.push(out);
    }
    r
}

pub async fn incremental_alter_configs(
    state: &Arc<BrokerState>,
    ctx: &Ctx,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let mut r = IncrementalAlterConfigsResponse::default();
    let defaults = &state.config.log_defaults;
    for res in req.resources {
        let outcome = alter_resource(
            state,
            ctx,
            (res.resource_type, &res.resource_name),
            req.validate_only,
            |current| {
                let mut next = current.clone();
                for c in &res.configs {
                    let value = c.value.as_ref().map(|v| v.as_str());
                    apply_config_op(
                        &mut next,
                        c.name.as_str(),
                        c.config_operation,
                        value,
                        defaults,
                    )?;
                }
                Ok(next)
            },
        )
        .await;
        let mut out = AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        if let Err((code, msg)) = outcome {
            out.error_code = code.code();
            out.error_message = Some(str_bytes(msg));
        }
        r.responses.push(out);
    }
    r
}

/// Applies one IncrementalAlterConfigs operation to a topic's configs: 0 SET, 1 DELETE (back
/// to the default), 2 APPEND and 3 SUBTRACT (list configs only).
fn apply_config_op(
    next: &mut BTreeMap<String, String>,
    key: &str,
    op: i8,
    value: Option<&str>,
    defaults: &weir_storage::LogConfig,
) -> Result<(), Refusal> {
    let invalid = |e: topic_config::ConfigError| (ResponseError::InvalidConfig, e.to_string());
    match op {
        0 => {
            let v = value.ok_or_else(|| {
                (
                    ResponseError::InvalidConfig,
                    format!("SET {key} needs a value"),
                )
            })?;
            next.insert(
                key.to_string(),
                topic_config::validate(key, v).map_err(invalid)?,
            );
        }
        1 => {
            topic_config::validate(key, &topic_config::default_value(key, defaults))
                .map_err(invalid)?;
            next.remove(key);
        }
        2 | 3 => {
            let is_list = TOPIC_CONFIG_KEYS
                .iter()
                .any(|k| k.name == key && k.kind == topic_config::ConfigKind::List);
            if !is_list {
                return Err((
                    ResponseError::InvalidConfig,
                    format!("{key} is not a list; APPEND and SUBTRACT apply to list configs only"),
                ));
            }
            let base = next
                .get(key)
                .cloned()
                .unwrap_or_else(|| topic_config::default_value(key, defaults));
            let items = list_op(&base, value.unwrap_or_default(), op == 2);
            next.insert(
                key.to_string(),
                topic_config::validate(key, &items).map_err(invalid)?,
            );
        }
        other => {
            return Err((
                ResponseError::InvalidRequest,
                format!(
                    "config operation {other} is not one of 0 (SET), 1 (DELETE), 2 (APPEND), 3 (SUBTRACT)"
                ),
            ));
        }
    }
    Ok(())
}

/// A comma-separated list with `values` appended (each once) or subtracted.
fn list_op(base: &str, values: &str, append: bool) -> String {
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    let mut items = split(base);
    for v in split(values) {
        if append {
            if !items.contains(&v) {
                items.push(v);
            }
        } else {
            items.retain(|i| *i != v);
        }
    }
    items.join(",")
}
