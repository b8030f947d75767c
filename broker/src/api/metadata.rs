//! Metadata: brokers, topics, partitions, their leaders, leader epochs, replicas and ISRs, from
//! the cluster view this broker follows.
//!
//! A request names at most [`METADATA_REQUEST_TOPICS_MAX`] topics (the rest are answered
//! INVALID_REQUEST without a lookup) and auto-creates at most
//! [`AUTO_CREATE_TOPICS_PER_REQUEST_MAX`] of them, one at a time, stopping when the client
//! closes: one request cannot create topics without end, nor outlive its client doing so.

use super::{Ctx, str_bytes, topic_name, uuid_of};
use crate::cluster::{ClusterView, TopicView};
use crate::state::BrokerState;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::*;
use std::sync::Arc;
use weir_model::acl::{Operation, ResourceType};
use weir_model::limits::{
    AUTO_CREATE_TOPICS_PER_REQUEST_MAX, METADATA_REQUEST_TOPICS_MAX, TOPICS_MAX,
};

pub async fn metadata(
    state: &Arc<BrokerState>,
    ctx: &Ctx,
    req: MetadataRequest,
) -> MetadataResponse {
    let mut view = state.view();
    let mut r = MetadataResponse::default();
    r.cluster_id = Some(str_bytes(view.cluster_id.clone()));
    // KRaft brokers name a random live broker as "controller"; clients send admin requests
    // there, and every broker forwards them to the coordinators.
    r.controller_id = BrokerId(state.me.get());

    // Version 0 has no null topic list: an empty list means "all topics" there.
    let wanted = match req.topics {
        Some(t) if !(ctx.version == 0 && t.is_empty()) => t,
        _ => {
            r.brokers = brokers(&view, &ctx.listener);
            // Only the topics this principal may describe, as Kafka lists them.
            r.topics = view
                .topics
                .values()
                .filter(|t| describable(state, ctx, t.name.as_str()))
                .map(|t| topic_entry(ctx, &view, t))
                .collect();
            return r;
        }
    };
    // Auto-creation is allowed unless the client (v4+) says no.
    let may_create =
        state.config.auto_create_topics && (ctx.version < 4 || req.allow_auto_topic_creation);
    let mut creations = Creations {
        allowed: may_create,
        done: 0,
    };
    let mut entries = Vec::with_capacity(wanted.len().min(1024));
    for (i, want) in wanted.into_iter().enumerate() {
        if i >= METADATA_REQUEST_TOPICS_MAX {
            // Answered, but not looked up, let alone created.
            let mut e = error_entry(
                want.name.as_ref().map(|n| n.0.as_str()),
                ResponseError::InvalidRequest,
            );
            e.topic_id = want.topic_id;
            entries.push(e);
            continue;
        }
        let entry = match &want.name {
            Some(name) => named_entry(state, ctx, &mut view, &mut creations, name.0.as_str()).await,
            None => match view.topic_by_id(weir_model::TopicId(*want.topic_id.as_bytes())) {
                Some(t) if describable(state, ctx, t.name.as_str()) => topic_entry(ctx, &view, t),
                Some(_) => {
                    let mut e = error_entry(None, ResponseError::TopicAuthorizationFailed);
                    e.topic_id = want.topic_id;
                    e
                }
                None => {
                    let mut e = error_entry(None, ResponseError::UnknownTopicId);
                    e.topic_id = want.topic_id;
                    e
                }
            },
        };
        entries.push(entry);
    }
    r.brokers = brokers(&view, &ctx.listener);
    r.topics = entries;
    r
}

/// Auto-creations one Metadata request may still make.
struct Creations {
    allowed: bool,
    done: usize,
}

/// The entry for a topic named in the request, auto-creating it when allowed: at most
/// [`AUTO_CREATE_TOPICS_PER_REQUEST_MAX`] per request, none past [`TOPICS_MAX`], and none once
/// the client has gone. A topic not created answers UNKNOWN_TOPIC_OR_PARTITION, and the client
/// asks again, as with Kafka when it cannot create.
async fn named_entry(
    state: &Arc<BrokerState>,
    ctx: &Ctx,
    view: &mut Arc<ClusterView>,
    creations: &mut Creations,
    name: &str,
) -> MetadataResponseTopic {
    let valid = weir_model::TopicName::new(name).is_ok();
    let may_describe = describable(state, ctx, name);
    if valid
        && creations.allowed
        && (super::allowed_on_cluster(state, ctx, Operation::Create)
            || super::allowed(state, ctx, Operation::Create, ResourceType::Topic, name))
        && view.topic(name).is_none()
        && creations.done < AUTO_CREATE_TOPICS_PER_REQUEST_MAX
        && view.topics.len() < TOPICS_MAX
        && !ctx.client_gone()
    {
        creations.done += 1;
        if let Err((code, msg)) = super::admin::auto_create(state, name).await {
            tracing::debug!(topic = name, code = ?code, msg, "auto-creation refused");
            return error_entry(Some(name), code);
        }
        *view = state.view();
    }
    match view.topic(name) {
        // Kafka's order: a topic the principal may not describe is not told to exist.
        _ if !may_describe => error_entry(Some(name), ResponseError::TopicAuthorizationFailed),
        Some(t) => topic_entry(ctx, view, t),
        None if valid => error_entry(Some(name), ResponseError::UnknownTopicOrPartition),
        None => error_entry(Some(name), ResponseError::InvalidTopicException),
    }
}

/// Whether the client may see the topic (DESCRIBE, or anything implying it).
fn describable(state: &BrokerState, ctx: &Ctx, name: &str) -> bool {
    super::allowed(state, ctx, Operation::Describe, ResourceType::Topic, name)
}

/// Brokers clients may use: registered, not fenced, and with the listener the client came
/// through (at that listener's address), as Kafka answers.
fn brokers(view: &ClusterView, listener: &str) -> Vec<MetadataResponseBroker> {
    view.live_brokers_on(listener)
        .map(|(b, host, port)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id.get()))
                .with_host(str_bytes(host.to_string()))
                .with_port(port)
                .with_rack(b.rack.clone().map(str_bytes))
        })
        .collect()
}

fn topic_entry(ctx: &Ctx, view: &ClusterView, t: &TopicView) -> MetadataResponseTopic {
    let ids = |v: &[weir_model::BrokerId]| v.iter().map(|b| BrokerId(b.get())).collect::<Vec<_>>();
    let mut e = MetadataResponseTopic::default()
        .with_name(Some(topic_name(t.name.to_string())))
        // Clients leave internal topics out of pattern subscriptions.
        .with_is_internal(ctx.version >= 1 && t.name.as_str() == crate::groups::OFFSETS_TOPIC)
        .with_partitions(
            t.partitions
                .iter()
                .map(|p| {
                    let offline: Vec<_> = p
                        .replicas
                        .iter()
                        .filter(|b| view.brokers.get(b).is_none_or(|info| info.fenced))
                        .map(|b| BrokerId(b.get()))
                        .collect();
                    let mut out = MetadataResponsePartition::default()
                        .with_partition_index(p.index.get())
                        .with_leader_id(BrokerId(p.leader.map_or(-1, |b| b.get())))
                        .with_leader_epoch(p.leader_epoch.get())
                        .with_replica_nodes(ids(&p.replicas))
                        .with_isr_nodes(ids(&p.isr))
                        .with_offline_replicas(offline);
                    match p.leader.map(|l| view.brokers.get(&l)) {
                        None => out.error_code = ResponseError::LeaderNotAvailable.code(),
                        // As Kafka: the leader has no listener of the name the client came
                        // through.
                        Some(Some(l)) if l.endpoint(&ctx.listener).is_none() => {
                            out.error_code = ResponseError::ListenerNotFound.code();
                        }
                        Some(_) => {}
                    }
                    out
                })
                .collect(),
        );
    if ctx.version >= 10 {
        e.topic_id = uuid_of(t.id);
    }
    e
}

fn error_entry(name: Option<&str>, code: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code.code())
        .with_name(name.map(|n| topic_name(n.to_string())))
}
