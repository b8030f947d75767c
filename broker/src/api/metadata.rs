//! Metadata: brokers, topics, partitions and their leaders.

use super::{Ctx, str_bytes, topic_name, uuid_of};
use crate::state::{BrokerState, LEADER_EPOCH, Topic};
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
    let node = state.config.node_id;
    let mut r = MetadataResponse::default();
    r.brokers = vec![
        MetadataResponseBroker::default()
            .with_node_id(BrokerId(node))
            .with_host(str_bytes(state.advertised_host.clone()))
            .with_port(state.advertised_port),
    ];
    r.cluster_id = Some(str_bytes(state.cluster_id.clone()));
    r.controller_id = BrokerId(node);

    // Version 0 has no null topic list: an empty list means "all topics" there.
    let wanted = match req.topics {
        Some(t) if !(ctx.version == 0 && t.is_empty()) => t,
        _ => {
            r.topics = state
                .all_topics()
                .iter()
                .map(|t| topic_entry(ctx, t, node))
                .collect();
            return r;
        }
    };
    // Auto-creation is allowed unless the client (v4+) says no.
    let may_create =
        state.config.auto_create_topics && (ctx.version < 4 || req.allow_auto_topic_creation);

    for want in wanted {
        let entry = match &want.name {
            Some(name) => {
                let name = name.0.as_str();
                match state.topic(name) {
                    Some(t) => topic_entry(ctx, &t, node),
                    None if may_create => {
                        match super::admin::create_topic(
                            state,
                            name,
                            state.config.default_partitions,
                            Default::default(),
                            super::admin::CreateMode::GetOrCreate,
                        )
                        .await
                        {
                            Ok(t) => topic_entry(ctx, &t, node),
                            Err((code, _)) => error_entry(ctx, Some(name), code),
                        }
                    }
                    None => {
                        let code = match weir_model::TopicName::new(name) {
                            Ok(_) => ResponseError::UnknownTopicOrPartition,
                            Err(_) => ResponseError::InvalidTopicException,
                        };
                        error_entry(ctx, Some(name), code)
                    }
                }
            }
            None => match state.topic_by_id(weir_model::TopicId(*want.topic_id.as_bytes())) {
                Some(t) => topic_entry(ctx, &t, node),
                None => {
                    let mut e = error_entry(ctx, None, ResponseError::UnknownTopicId);
                    e.topic_id = want.topic_id;
                    e
                }
            },
        };
        r.topics.push(entry);
    }
    r
}

fn topic_entry(ctx: &Ctx, t: &Topic, node: i32) -> MetadataResponseTopic {
    let mut e = MetadataResponseTopic::default()
        .with_name(Some(topic_name(t.record.name.to_string())))
        .with_partitions(
            t.partitions
                .iter()
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_partition_index(p.id.get())
                        .with_leader_id(BrokerId(node))
                        .with_leader_epoch(LEADER_EPOCH.get())
                        .with_replica_nodes(vec![BrokerId(node)])
                        .with_isr_nodes(vec![BrokerId(node)])
                })
                .collect(),
        );
    if ctx.version >= 10 {
        e.topic_id = uuid_of(t.record.id);
    }
    e
}

fn error_entry(_ctx: &Ctx, name: Option<&str>, code: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code.code())
        .with_name(name.map(|n| topic_name(n.to_string())))
}
