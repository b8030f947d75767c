//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
//! AlterConfigs and IncrementalAlterConfigs.
//!
//! Every change takes `BrokerState::admin`, checks, writes the metadata store (durable on
//! return), then publishes; a refusal carries a message that says what is allowed.

use super::{Ctx, str_bytes, topic_name, uuid_of};
use crate::metadata_store::TopicRecord;
use crate::state::{BrokerState, Topic};
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
use weir_model::limits::{BROKER_PARTITIONS_MAX, PARTITIONS_PER_TOPIC_MAX, TOPICS_MAX};
use weir_model::{TopicId, TopicName};

type Refusal = (ResponseError, String);

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

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

fn check_broker_partitions(state: &BrokerState, adding: i32) -> Result<(), Refusal> {
    let now = state.partition_count();
    if now + adding.max(0) as usize > BROKER_PARTITIONS_MAX {
        return Err((
            ResponseError::PolicyViolation,
            format!(
                "this broker hosts {now} partitions; {adding} more would pass its limit of {BROKER_PARTITIONS_MAX}"
            ),
        ));
    }
    Ok(())
}

/// Checks that a topic could be created. The caller holds `admin`.
fn check_new_topic(state: &BrokerState, name: &str, partitions: i32) -> Result<TopicName, Refusal> {
    let name =
        TopicName::new(name).map_err(|e| (ResponseError::InvalidTopicException, e.to_string()))?;
    if state.topic(name.as_str()).is_some() {
        return Err((
            ResponseError::TopicAlreadyExists,
            format!("Topic '{name}' already exists."),
        ));
    }
    let key = name.collision_key();
    if let Some(other) = state
        .all_topics()
        .iter()
        .find(|t| t.record.name.collision_key() == key)
    {
        return Err((
            ResponseError::InvalidTopicException,
            format!(
                "topic '{name}' collides with existing topic '{}' ('.' and '_' collide)",
                other.record.name
            ),
        ));
    }
    check_partitions(partitions)?;
    check_broker_partitions(state, partitions)?;
    if state.topic_count() >= TOPICS_MAX {
        return Err((
            ResponseError::PolicyViolation,
            format!("this broker already hosts the maximum of {TOPICS_MAX} topics"),
        ));
    }
    Ok(name)
}

/// How [`create_topic`] treats a topic that already exists, and whether it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateMode {
    /// CreateTopics: an existing topic is TOPIC_ALREADY_EXISTS.
    Create,
    /// CreateTopics with `validate_only`: check, change nothing.
    ValidateOnly,
    /// Auto-creation: an existing topic (perhaps created by a racing request) is returned.
    GetOrCreate,
}

/// Creates a topic (used by CreateTopics and by auto-creation in Metadata).
pub async fn create_topic(
    state: &BrokerState,
    name: &str,
    partitions: i32,
    configs: BTreeMap<String, String>,
    mode: CreateMode,
) -> Result<Arc<Topic>, Refusal> {
    let _admin = state.admin.lock().await;
    if mode == CreateMode::GetOrCreate
        && let Some(t) = state.topic(name)
    {
        return Ok(t);
    }
    let name = check_new_topic(state, name, partitions)?;
    let record = TopicRecord {
        name,
        id: TopicId(*uuid::Uuid::new_v4().as_bytes()),
        partitions,
        configs,
    };
    if mode == CreateMode::ValidateOnly {
        return Ok(Arc::new(Topic {
            record,
            partitions: Vec::new(),
        }));
    }
    state.install_topic(record).map_err(|e| {
        tracing::error!(error = %e, "creating topic");
        (
            ResponseError::KafkaStorageError,
            format!("could not create the topic: {e}"),
        )
    })
}

pub async fn create_topics(
    state: &Arc<BrokerState>,
    ctx: &Ctx,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let node = state.config.node_id;
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
        let outcome: Result<Arc<Topic>, Refusal> = async {
            if dupes.contains(&name) {
                return Err((ResponseError::InvalidRequest, format!("topic '{name}' appears more than once in the request")));
            }
            let rf = t.replication_factor;
            let partitions = if !t.assignments.is_empty() {
                if t.num_partitions != -1 || rf != -1 {
                    return Err((ResponseError::InvalidRequest, "give either replica assignments or partitions and replication factor, not both".into()));
                }
                for a in &t.assignments {
                    if a.broker_ids != [BrokerId(node)] {
                        return Err((ResponseError::InvalidReplicaAssignment, format!("this cluster has one broker (id {node}); every partition must be assigned to [{node}]")));
                    }
                }
                t.assignments.len() as i32
            } else {
                if rf != -1 && rf != 1 {
                    return Err((ResponseError::InvalidReplicationFactor, format!("Replication factor: {rf} larger than available brokers: 1.")));
                }
                if t.num_partitions == -1 { state.config.default_partitions } else { t.num_partitions }
            };
            let configs = topic_config::validate_all(
                t.configs.iter().map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
            )
            .map_err(|e| (ResponseError::InvalidConfig, e.to_string()))?;
            let mode = if req.validate_only { CreateMode::ValidateOnly } else { CreateMode::Create };
            create_topic(state, &name, partitions, configs, mode).await
        }
        .await;
        match outcome {
            Ok(topic) => {
                if ctx.version >= 5 {
                    res.num_partitions = topic.record.partitions;
                    res.replication_factor = 1;
                    res.configs = Some(
                        effective_configs(state, &topic.record.configs)
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
                if ctx.version >= 7 {
                    res.topic_id = uuid_of(topic.record.id);
                }
            }
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
    let _admin = state.admin.lock().await;
    for (name, id) in targets {
        let mut res = DeletableTopicResult::default();
        if ctx.version >= 6 {
            res.topic_id = id;
        }
        let topic = match &name {
            Some(n) => state.topic(n),
            None => state.topic_by_id(TopicId(*id.as_bytes())),
        };
        res.name = name
            .clone()
            .or_else(|| topic.as_ref().map(|t| t.record.name.to_string()))
            .map(topic_name);
        match topic {
            None => {
                res.error_code = if name.is_none() {
                    ResponseError::UnknownTopicId.code()
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                };
                if ctx.version >= 5 {
                    res.error_message = Some(str_bytes("no such topic"));
                }
            }
            Some(t) => {
                if let Err(e) = state.delete_topic(&t.record.name) {
                    tracing::error!(topic = %t.record.name, error = %e, "deleting topic");
                    res.error_code = ResponseError::KafkaStorageError.code();
                    if ctx.version >= 5 {
                        res.error_message =
                            Some(str_bytes(format!("could not delete the topic: {e}")));
                    }
                }
            }
        }
        r.responses.push(res);
    }
    r
}

pub async fn create_partitions(
    state: &Arc<BrokerState>,
    _ctx: &Ctx,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let node = state.config.node_id;
    let mut r = CreatePartitionsResponse::default();
    let _admin = state.admin.lock().await;
    for t in req.topics {
        let mut res = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let outcome: Result<(), Refusal> = (|| {
            let topic = state.topic(t.name.0.as_str()).ok_or_else(|| {
                (
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic '{}' does not exist", t.name.0.as_str()),
                )
            })?;
            let current = topic.record.partitions;
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
            check_broker_partitions(state, t.count - current)?;
            if let Some(assignments) = &t.assignments
                && (assignments.len() as i32 != t.count - current
                    || assignments.iter().any(|a| a.broker_ids != [BrokerId(node)]))
            {
                return Err((
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "give one assignment per new partition, each [{node}] (this cluster has one broker)"
                    ),
                ));
            }
            if req.validate_only {
                return Ok(());
            }
            state.grow_topic(&topic, t.count).map_err(|e| {
                (
                    ResponseError::KafkaStorageError,
                    format!("could not add partitions: {e}"),
                )
            })
        })();
        if let Err((code, msg)) = outcome {
            res.error_code = code.code();
            res.error_message = Some(str_bytes(msg));
        }
        r.results.push(res);
    }
    r
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
        let entry =
            |name: &str, value: String, source: i8, read_only: bool, kind: i8, doc: &str| {
                let mut e = DescribeConfigsResourceResult::default()
                    .with_name(str_bytes(name))
                    .with_value(Some(str_bytes(value.clone())))
                    .with_read_only(read_only)
                    .with_config_source(source);
                if req.include_synonyms {
                    e.synonyms = vec![
                        DescribeConfigsSynonym::default()
                            .with_name(str_bytes(name))
                            .with_value(Some(str_bytes(value)))
                            .with_source(source),
                    ];
                }
                if ctx.version >= 3 {
                    e.config_type = kind;
                    if req.include_documentation {
                        e.documentation = Some(str_bytes(doc));
                    }
                }
                e
            };
        match res.resource_type {
            RESOURCE_TOPIC => match state.topic(res.resource_name.as_str()) {
                None => {
                    out.error_code = ResponseError::UnknownTopicOrPartition.code();
                    out.error_message = Some(str_bytes(format!(
                        "topic '{}' does not exist",
                        res.resource_name.as_str()
                    )));
                }
                Some(t) => {
                    for (k, v, source) in effective_configs(state, &t.record.configs) {
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
            },
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

/// The outcome of altering one resource's configs.
fn alter_resource(
    state: &BrokerState,
    resource_type: i8,
    name: &StrBytes,
    validate_only: bool,
    change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Refusal>,
) -> Result<(), Refusal> {
    match resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            return Err((
                ResponseError::InvalidRequest,
                "broker configs are set by flags when the broker starts; see `weir dev --help`"
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
    let topic = state.topic(name.as_str()).ok_or_else(|| {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("topic '{}' does not exist", name.as_str()),
        )
    })?;
    let configs = change(&topic.record.configs)?;
    if validate_only {
        return Ok(());
    }
    state.update_topic_configs(&topic, configs).map_err(|e| {
        (
            ResponseError::KafkaStorageError,
            format!("could not store the configs: {e}"),
        )
    })
}

pub async fn alter_configs(
    state: &Arc<BrokerState>,
    _ctx: &Ctx,
    req: AlterConfigsRequest,
) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let mut r = AlterConfigsResponse::default();
    let _admin = state.admin.lock().await;
    for res in req.resources {
        // AlterConfigs replaces the whole set of overrides with the one given.
        let outcome = alter_resource(
            state,
            res.resource_type,
            &res.resource_name,
            req.validate_only,
            |_| {
                topic_config::validate_all(
                    res.configs
                        .iter()
                        .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
                )
                .map_err(|e| (ResponseError::InvalidConfig, e.to_string()))
            },
        );
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
    _ctx: &Ctx,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let mut r = IncrementalAlterConfigsResponse::default();
    let _admin = state.admin.lock().await;
    for res in req.resources {
        let outcome = alter_resource(
            state,
            res.resource_type,
            &res.resource_name,
            req.validate_only,
            |current| {
                let mut next = current.clone();
                for c in &res.configs {
                    let key = c.name.as_str();
                    let value = c.value.as_ref().map(|v| v.as_str());
                    match c.config_operation {
                        // SET
                        0 => {
                            let v = value.ok_or_else(|| {
                                (
                                    ResponseError::InvalidConfig,
                                    format!("SET {key} needs a value"),
                                )
                            })?;
                            let v = topic_config::validate(key, v)
                                .map_err(|e| (ResponseError::InvalidConfig, e.to_string()))?;
                            next.insert(key.to_string(), v);
                        }
                        // DELETE: back to the default.
                        1 => {
                            topic_config::validate(
                                key,
                                &topic_config::default_value(key, &state.config.log_defaults),
                            )
                            .map_err(|e| (ResponseError::InvalidConfig, e.to_string()))?;
                            next.remove(key);
                        }
                        // APPEND / SUBTRACT apply to list configs.
                        op @ (2 | 3) => {
                            let is_list = TOPIC_CONFIG_KEYS
                                .iter()
                                .any(|k| k.name == key && k.kind == topic_config::ConfigKind::List);
                            if !is_list {
                                return Err((
                                    ResponseError::InvalidConfig,
                                    format!(
                                        "{key} is not a list; APPEND and SUBTRACT apply to list configs only"
                                    ),
                                ));
                            }
                            let base = next.get(key).cloned().unwrap_or_else(|| {
                                topic_config::default_value(key, &state.config.log_defaults)
                            });
                            let mut items: Vec<String> = base
                                .split(',')
                                .map(str::trim)
                                .filter(|s| !s.is_empty())
                                .map(String::from)
                                .collect();
                            for v in value
                                .unwrap_or_default()
                                .split(',')
                                .map(str::trim)
                                .filter(|s| !s.is_empty())
                            {
                                if op == 2 {
                                    if !items.iter().any(|i| i == v) {
                                        items.push(v.to_string());
                                    }
                                } else {
                                    items.retain(|i| i != v);
                                }
                            }
                            let v = topic_config::validate(key, &items.join(","))
                                .map_err(|e| (ResponseError::InvalidConfig, e.to_string()))?;
                            next.insert(key.to_string(), v);
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
                }
                Ok(next)
            },
        );
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
