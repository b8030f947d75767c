//! Metadata: brokers, topics, partitions, their leaders, leader epochs, replicas and ISRs, from
//! the cluster view this broker follows.

use super::{Ctx, str_bytes, topic_name, uuid_of};
use crate::cluster::{ClusterView, TopicInfo};
use crate::state::BrokerState;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::*;
use std::sync::Arc;

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
            r.brokers = brokers(&view);
            r.topics = view
                .topics
                .values()
                .map(|t| topic_entry(ctx, &view, t))
                .collect();
            return r;
        }
    };
    // Auto-creation is allowed unless the client (v4+) says no.
    let may_create =
        state.config.auto_create_topics && (ctx.version < 4 || req.allow_auto_topic_creation);

    let mut entries = Vec::with_capacity(wanted.len().min(1024));
    for want in wanted {
        let entry = match &want.name {
            Some(name) => {
                let name = name.0.as_str();
                if view.topic(name).is_none() && may_create {
                    if let Err((code, msg)) = super::admin::auto_create(state, name).await {
                        tracing::debug!(topic = name, code = ?code, msg, "auto-creation refused");
                        entries.push(error_entry(Some(name), code));
                        continue;
                    }
                    view = state.view();
                }
                match view.topic(name) {
                    Some(t) => topic_entry(ctx, &view, t),
                    None => {
                        let code = match weir_model::TopicName::new(name) {
                            Ok(_) => ResponseError::UnknownTopicOrPartition,
                            Err(_) => ResponseError::InvalidTopicException,
                        };
                        error_entry(Some(name), code)
                    }
                }
            }
            None => match view.topic_by_id(weir_model::TopicId(*want.topic_id.as_bytes())) {
                Some(t) => topic_entry(ctx, &view, t),
                None => {
                    let mut e = error_entry(None, ResponseError::UnknownTopicId);
                    e.topic_id = want.topic_id;
                    e
                }
            },
        };
        entries.push(entry);
    }
    r.brokers = brokers(&view);
    r.topics = entries;
    r
}

/// Brokers clients may use: registered and not fenced.
fn brokers(view: &ClusterView) -> Vec<MetadataResponseBroker> {
    view.live_brokers()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id.get()))
                .with_host(str_bytes(b.kafka_host.clone()))
                .with_port(b.kafka_port)
                .with_rack(b.rack.clone().map(str_bytes))
        })
        .collect()
}

fn topic_entry(ctx: &Ctx, view: &ClusterView, t: &TopicInfo) -> MetadataResponseTopic {
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
                        .with_partition_index(p.index)
                        .with_leader_id(BrokerId(p.leader.map_or(-1, |b| b.get())))
                        .with_leader_epoch(p.leader_epoch.get())
                        .with_replica_nodes(ids(&p.replicas))
                        .with_isr_nodes(ids(&p.isr))
                        .with_offline_replicas(offline);
                    if p.leader.is_none() {
                        out.error_code = ResponseError::LeaderNotAvailable.code();
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
