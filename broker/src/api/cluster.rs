//! ApiVersions, DescribeCluster and InitProducerId.

use super::{Ctx, SUPPORTED, str_bytes};
use crate::state::BrokerState;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::*;
use std::sync::Arc;
use weir_model::acl::{Operation, ResourceType};

pub fn api_versions_body() -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.api_keys = SUPPORTED
        .iter()
        .map(|&(key, lo, hi)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(lo)
                .with_max_version(hi)
        })
        .collect();
    r
}

pub async fn api_versions(
    _state: &Arc<BrokerState>,
    _ctx: &Ctx,
    _req: ApiVersionsRequest,
) -> ApiVersionsResponse {
    api_versions_body()
}

pub async fn describe_cluster(
    state: &Arc<BrokerState>,
    ctx: &Ctx,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let mut r = DescribeClusterResponse::default();
    // Endpoint type 1 is "brokers"; 2 ("controllers") has no answer from a broker.
    if req.endpoint_type != 1 && ctx.version >= 1 {
        r.error_code = ResponseError::UnsupportedEndpointType.code();
        r.error_message = Some(str_bytes(
            "this broker describes brokers (endpoint type 1) only",
        ));
        r.endpoint_type = req.endpoint_type;
        return r;
    }
    if ctx.version >= 1 {
        r.endpoint_type = 1;
    }
    if !super::allowed_on_cluster(state, ctx, Operation::Describe) {
        r.error_code = ResponseError::ClusterAuthorizationFailed.code();
        r.error_message = Some(str_bytes("DESCRIBE on the cluster is needed"));
        return r;
    }
    let view = state.view();
    r.cluster_id = str_bytes(view.cluster_id.clone());
    r.controller_id = BrokerId(state.me.get());
    r.brokers = view
        .live_brokers_on(&ctx.listener)
        .map(|(b, host, port)| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id.get()))
                .with_host(str_bytes(host.to_string()))
                .with_port(port)
                .with_rack(b.rack.clone().map(str_bytes))
        })
        .collect();
    r
}

/// An idempotent producer needs IDEMPOTENT_WRITE on the cluster or, since Kafka 2.8 (KIP-679),
/// WRITE on any topic.
fn may_write_idempotently(state: &BrokerState, ctx: &Ctx) -> bool {
    if super::allowed_on_cluster(state, ctx, Operation::IdempotentWrite) {
        return true;
    }
    let acls = &state.view().acls;
    state
        .config
        .authorizer
        .allows_any(acls, ctx.requester(), Operation::Write, ResourceType::Topic)
}

/// Idempotent producers only: transactions are not offered (their APIs are not advertised,
/// so clients configured for them fail at start with a clear message of their own).
pub async fn init_producer_id(
    state: &Arc<BrokerState>,
    ctx: &Ctx,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let mut r = InitProducerIdResponse::default();
    if req.transactional_id.is_none() && !may_write_idempotently(state, ctx) {
        r.error_code = ResponseError::ClusterAuthorizationFailed.code();
        r.producer_id = ProducerId(-1);
        r.producer_epoch = -1;
        return r;
    }
    if req.transactional_id.is_some() {
        r.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
        r.producer_id = ProducerId(-1);
        r.producer_epoch = -1;
        return r;
    }
    // Without a transactional id every call gets a fresh producer id at epoch 0, as in Kafka,
    // even when the client names the id it had (KIP-360 epoch bumps are for transactions):
    // bumping a named id would let any client fence any producer.
    match state.next_producer_id().await {
        Ok(id) => {
            r.producer_id = ProducerId(id);
            r.producer_epoch = 0;
        }
        Err(e) => {
            tracing::error!(error = %weir_model::Chain(&e), "allocating a producer id");
            r.error_code = ResponseError::CoordinatorNotAvailable.code();
            r.producer_id = ProducerId(-1);
            r.producer_epoch = -1;
        }
    }
    r
}
