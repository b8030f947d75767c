//! Kafka request handlers, one module per family of APIs.
//!
//! [`dispatch`] checks the API key and version against [`SUPPORTED`], decodes the request with
//! the `kafka-protocol` crate's generated types, calls the handler and encodes its response.
//! Handlers convert between wire types and Weir's types at this edge: Kafka's `-1` sentinels
//! and raw integers do not travel further in.

mod acls;
mod admin;
mod cluster;
mod fetch;
mod groups;
mod metadata;
mod offsets;
mod produce;
mod sasl;
mod users;

use crate::frame::{ConnectionError, peek_header};
use crate::services::Services;
use crate::state::BrokerState;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, watch};
use weir_model::acl::{CLUSTER_NAME, Operation, ResourceType};

/// The APIs and versions this broker serves, as ApiVersions advertises them.
///
/// Produce is advertised from version 0 because librdkafka refuses a broker that does not list
/// the old versions, but versions below 3 (message formats v0/v1) are refused when used.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    // SaslHandshake v0: the exchange follows in raw SASL frames (clients before KIP-152);
    // librdkafka also takes v0's presence as the sign that the broker speaks SASL at all.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
];

/// The lowest Produce version that is actually served (RecordBatch v2, magic 2).
pub const PRODUCE_VERSION_MIN_SERVED: i16 = 3;

pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|&(_, lo, hi)| (lo, hi))
}

/// The connection a request came on, as handlers see it.
#[derive(Debug)]
pub struct Peer {
    /// The client's address as group descriptions show it (`/127.0.0.1`).
    pub client_host: Arc<str>,
    /// Becomes `true` when the client has closed or broken its side of the connection.
    pub gone: watch::Receiver<bool>,
    /// The listener it connected through: Metadata answers with that listener's addresses.
    pub listener: Arc<str>,
    /// On a SASL listener, the connection's authentication; `None` elsewhere.
    pub sasl: Option<crate::sasl::Session>,
    /// Set once the connection has authenticated: its reader then takes full-sized frames.
    pub authenticated: Arc<std::sync::atomic::AtomicBool>,
    /// Set by a handler whose answer is the last on this connection (a failed login); the
    /// reason is logged when it closes.
    pub close_after: Option<String>,
    /// Who the client is, for ACLs: `User:NAME` once logged in, `User:ANONYMOUS` before and on
    /// listeners without SASL.
    pub principal: Arc<str>,
}

/// A response written into the output buffer, with the share of the broker's fetch-response
/// memory it holds; drop it once the bytes are on the socket.
#[derive(Debug)]
pub struct Written {
    _memory: Option<OwnedSemaphorePermit>,
}

const WRITTEN: Result<Option<Written>, ConnectionError> = Ok(Some(Written { _memory: None }));

/// Handles one request frame, writing the size-prefixed response into `out`.
/// Returns `Ok(None)` when the request gets no response (acks=0 produce).
pub async fn dispatch(
    svc: &Services,
    frame: Bytes,
    out: &mut BytesMut,
    peer: &mut Peer,
) -> Result<Option<Written>, ConnectionError> {
    if peer.sasl.as_ref().is_some_and(|s| s.expects_raw_token()) {
        return sasl::raw_token(&svc.state, frame, out, peer).await;
    }
    let Some((ctx, mut buf)) = request_ctx(frame, out, peer)? else {
        return WRITTEN;
    };
    let state = &svc.state;
    sasl::check_authenticated(state, peer, ctx.api)?;
    match ctx.api {
        ApiKey::SaslHandshake => sasl::handshake(state, &ctx, decode(&ctx, &mut buf)?, out, peer),
        ApiKey::SaslAuthenticate => {
            sasl::authenticate(state, &ctx, decode(&ctx, &mut buf)?, out, peer).await
        }
        ApiKey::DescribeUserScramCredentials => {
            let req = decode(&ctx, &mut buf)?;
            let resp = users::describe_user_scram_credentials(state, &ctx, req).await;
            ctx.write(out, &resp)?;
            WRITTEN
        }
        ApiKey::AlterUserScramCredentials => {
            let req = decode(&ctx, &mut buf)?;
            let resp = users::alter_user_scram_credentials(state, &ctx, req).await;
            ctx.write(out, &resp)?;
            WRITTEN
        }
        _ => answer(svc, ctx, buf, out).await,
    }
}

/// Answers an authenticated client's request (every API but the SASL and user ones).
async fn answer(
    svc: &Services,
    ctx: Ctx,
    mut buf: Bytes,
    out: &mut BytesMut,
) -> Result<Option<Written>, ConnectionError> {
    let api = ctx.api;
    let state = &svc.state;

    // Handlers are given the partitions (`state`); group APIs the group coordinator too (`svc`).
    macro_rules! handle {
        ($with:expr, $req:ty, $handler:expr) => {{
            let req: $req = decode(&ctx, &mut buf)?;
            let resp = $handler($with, &ctx, req).await;
            ctx.write(out, &resp)?;
            WRITTEN
        }};
    }

    match api {
        ApiKey::ApiVersions => handle!(state, ApiVersionsRequest, cluster::api_versions),
        ApiKey::Metadata => handle!(state, MetadataRequest, metadata::metadata),
        ApiKey::Produce => answer_produce(state, &ctx, decode(&ctx, &mut buf)?, out).await,
        ApiKey::Fetch => answer_fetch(state, &ctx, decode(&ctx, &mut buf)?, out).await,
        ApiKey::ListOffsets => handle!(state, ListOffsetsRequest, offsets::list_offsets),
        ApiKey::OffsetForLeaderEpoch => {
            handle!(
                state,
                OffsetForLeaderEpochRequest,
                offsets::offset_for_leader_epoch
            )
        }
        ApiKey::DeleteRecords => handle!(state, DeleteRecordsRequest, offsets::delete_records),
        ApiKey::CreateTopics => handle!(state, CreateTopicsRequest, admin::create_topics),
        ApiKey::DeleteTopics => handle!(state, DeleteTopicsRequest, admin::delete_topics),
        ApiKey::CreatePartitions => {
            handle!(state, CreatePartitionsRequest, admin::create_partitions)
        }
        ApiKey::DescribeConfigs => handle!(state, DescribeConfigsRequest, admin::describe_configs),
        ApiKey::AlterConfigs => handle!(state, AlterConfigsRequest, admin::alter_configs),
        ApiKey::IncrementalAlterConfigs => {
            handle!(
                state,
                IncrementalAlterConfigsRequest,
                admin::incremental_alter_configs
            )
        }
        ApiKey::DescribeCluster => {
            handle!(state, DescribeClusterRequest, cluster::describe_cluster)
        }
        ApiKey::InitProducerId => handle!(state, InitProducerIdRequest, cluster::init_producer_id),
        ApiKey::FindCoordinator => handle!(svc, FindCoordinatorRequest, groups::find_coordinator),
        ApiKey::JoinGroup => handle!(svc, JoinGroupRequest, groups::join_group),
        ApiKey::SyncGroup => handle!(svc, SyncGroupRequest, groups::sync_group),
        ApiKey::Heartbeat => handle!(svc, HeartbeatRequest, groups::heartbeat),
        ApiKey::LeaveGroup => handle!(svc, LeaveGroupRequest, groups::leave_group),
        ApiKey::OffsetCommit => handle!(svc, OffsetCommitRequest, groups::offset_commit),
        ApiKey::OffsetFetch => handle!(svc, OffsetFetchRequest, groups::offset_fetch),
        ApiKey::DescribeGroups => handle!(svc, DescribeGroupsRequest, groups::describe_groups),
        ApiKey::CreateAcls => handle!(state, CreateAclsRequest, acls::create_acls),
        ApiKey::DescribeAcls => handle!(state, DescribeAclsRequest, acls::describe_acls),
        ApiKey::DeleteAcls => handle!(state, DeleteAclsRequest, acls::delete_acls),
        ApiKey::ListGroups => handle!(svc, ListGroupsRequest, groups::list_groups),
        ApiKey::DeleteGroups => handle!(svc, DeleteGroupsRequest, groups::delete_groups),
        ApiKey::OffsetDelete => handle!(svc, OffsetDeleteRequest, groups::offset_delete),
        ApiKey::ConsumerGroupHeartbeat => {
            handle!(
                svc,
                ConsumerGroupHeartbeatRequest,
                groups::consumer_group_heartbeat
            )
        }
        other => Err(ConnectionError::Protocol(format!(
            "{other:?} is not supported"
        ))),
    }
}

/// Decodes a request's body at the header's version.
fn decode<R: Decodable>(ctx: &Ctx, buf: &mut Bytes) -> Result<R, ConnectionError> {
    R::decode(buf, ctx.version)
        .map_err(|e| ConnectionError::Protocol(format!("{:?} v{}: {e}", ctx.api, ctx.version)))
}

/// Parses and checks a request's header. `None` when it is already answered (an ApiVersions
/// version we lack).
fn request_ctx(
    frame: Bytes,
    out: &mut BytesMut,
    peer: &Peer,
) -> Result<Option<(Ctx, Bytes)>, ConnectionError> {
    let (key, version, correlation_id) = peek_header(&frame)?;
    let api = ApiKey::try_from(key)
        .map_err(|_| ConnectionError::Protocol(format!("unknown API key {key}")))?;
    let range = supported_range(api);

    if api == ApiKey::ApiVersions && range.is_none_or(|(lo, hi)| version < lo || version > hi) {
        // KIP-511: a client asking for a version we lack gets our list in the v0 format, with
        // UNSUPPORTED_VERSION, so it can retry with one we have.
        let mut body = cluster::api_versions_body();
        body.error_code = kafka_protocol::ResponseError::UnsupportedVersion.code();
        write_response(out, correlation_id, 0, &body, 0)?;
        return Ok(None);
    }
    check_version(api, version, range)?;

    let mut buf = frame;
    let header = RequestHeader::decode(&mut buf, api.request_header_version(version))
        .map_err(|e| ConnectionError::Protocol(format!("{api:?} request header: {e}")))?;
    let ctx = Ctx {
        api,
        version,
        correlation_id: header.correlation_id,
        client_id: header.client_id.clone().unwrap_or_default(),
        client_host: peer.client_host.clone(),
        gone: peer.gone.clone(),
        listener: peer.listener.clone(),
        principal: peer.principal.clone(),
    };
    tracing::trace!(api = ?api, version, correlation_id = header.correlation_id, "request");
    Ok(Some((ctx, buf)))
}

/// Refuses an API or version this broker does not serve (the connection is closed).
fn check_version(
    api: ApiKey,
    version: i16,
    range: Option<(i16, i16)>,
) -> Result<(), ConnectionError> {
    let Some((lo, hi)) = range else {
        return Err(ConnectionError::Protocol(format!(
            "{api:?} is not supported"
        )));
    };
    if version < lo || version > hi {
        return Err(ConnectionError::Protocol(format!(
            "{api:?} v{version} is not supported (supported: v{lo} to v{hi})"
        )));
    }
    if api == ApiKey::Produce && version < PRODUCE_VERSION_MIN_SERVED {
        return Err(ConnectionError::Protocol(format!(
            "Produce v{version} uses message format v0/v1; Weir serves Produce v3 and later"
        )));
    }
    Ok(())
}

/// Produce: acks=0 gets no response, and a failure closes the connection instead.
async fn answer_produce(
    state: &Arc<BrokerState>,
    ctx: &Ctx,
    req: ProduceRequest,
    out: &mut BytesMut,
) -> Result<Option<Written>, ConnectionError> {
    let acks = req.acks;
    let resp = produce::produce(state, ctx, req).await;
    if acks == 0 {
        // No response to carry an error, so Kafka closes the connection instead: the
        // client reconnects and refreshes its metadata rather than sending into nothing.
        let failed = resp
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .find(|p| p.error_code != 0);
        if let Some(p) = failed {
            return Err(ConnectionError::Protocol(format!(
                "acks=0 produce to partition {} failed with error {}",
                p.index, p.error_code
            )));
        }
        return Ok(None);
    }
    ctx.write(out, &resp)?;
    WRITTEN
}

/// Fetch: the response keeps its share of the fetch memory until it is written.
async fn answer_fetch(
    state: &Arc<BrokerState>,
    ctx: &Ctx,
    req: FetchRequest,
    out: &mut BytesMut,
) -> Result<Option<Written>, ConnectionError> {
    let (resp, mut memory) = fetch::fetch(state, ctx, req).await;
    ctx.write(out, &resp)?;
    drop(resp);
    // Encoded: the records now live in `out` only.
    fetch::keep_only(&mut memory, out.len());
    Ok(Some(Written { _memory: memory }))
}

/// What a handler knows about the request it serves.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub api: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    /// The request header's client id (empty when the client sent none).
    pub client_id: StrBytes,
    /// The client's address as group descriptions show it (`/127.0.0.1`).
    pub client_host: Arc<str>,
    gone: watch::Receiver<bool>,
    /// The listener the client connected through.
    pub listener: Arc<str>,
    /// Who the client is (see [`Peer::principal`]).
    pub principal: Arc<str>,
}

impl Ctx {
    /// The principal and address ACLs are checked against.
    pub fn requester(&self) -> weir_auth::acl::Requester<'_> {
        weir_auth::acl::Requester {
            principal: &self.principal,
            host: self.client_host.trim_start_matches('/'),
        }
    }

    /// Whether the client has closed its side: work only it would see can stop.
    pub fn client_gone(&self) -> bool {
        *self.gone.borrow()
    }

    /// Completes when the client closes its side (or never, if the connection outlives it).
    pub async fn closed(&self) {
        let mut gone = self.gone.clone();
        if gone.wait_for(|g| *g).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    fn write<R: Encodable>(&self, out: &mut BytesMut, body: &R) -> Result<(), ConnectionError> {
        write_response(
            out,
            self.correlation_id,
            self.api.response_header_version(self.version),
            body,
            self.version,
        )
    }
}

fn write_response<R: Encodable>(
    out: &mut BytesMut,
    correlation_id: i32,
    header_version: i16,
    body: &R,
    version: i16,
) -> Result<(), ConnectionError> {
    let start = out.len();
    out.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    // An encoding failure is a bug in a handler (a field set that its version lacks); the
    // connection is closed and the error logged rather than sending a malformed response.
    header
        .encode(out, header_version)
        .and_then(|_| body.encode(out, version))
        .map_err(|e| ConnectionError::Protocol(format!("encoding response v{version}: {e}")))?;
    let size = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

/// Whether the client may do `op` to the resource (Kafka's ACL rule, `weir_auth::acl`).
pub(crate) fn allowed(
    state: &BrokerState,
    ctx: &Ctx,
    op: Operation,
    rt: ResourceType,
    name: &str,
) -> bool {
    let authorizer = &state.config.authorizer;
    authorizer.is_super_user(&ctx.principal)
        || authorizer.allows(&state.view().acls, ctx.requester(), op, rt, name)
}

/// Whether the client may do `op` to the cluster.
pub(crate) fn allowed_on_cluster(state: &BrokerState, ctx: &Ctx, op: Operation) -> bool {
    allowed(state, ctx, op, ResourceType::Cluster, CLUSTER_NAME)
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub(crate) fn topic_name(s: impl Into<String>) -> TopicName {
    TopicName(str_bytes(s))
}

/// Kafka's topic UUID for a Weir topic id.
pub(crate) fn uuid_of(id: weir_model::TopicId) -> uuid::Uuid {
    uuid::Uuid::from_bytes(id.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Message;

    /// Proves: every advertised version can be decoded by the codec (Produce below 3 is
    /// advertised for librdkafka but refused at dispatch).
    #[test]
    fn advertised_versions_are_within_the_codec() {
        let codec = |k: ApiKey| -> (i16, i16) {
            let r = match k {
                ApiKey::Produce => ProduceRequest::VERSIONS,
                ApiKey::Fetch => FetchRequest::VERSIONS,
                ApiKey::ListOffsets => ListOffsetsRequest::VERSIONS,
                ApiKey::Metadata => MetadataRequest::VERSIONS,
                ApiKey::ApiVersions => ApiVersionsRequest::VERSIONS,
                ApiKey::CreateTopics => CreateTopicsRequest::VERSIONS,
                ApiKey::DeleteTopics => DeleteTopicsRequest::VERSIONS,
                ApiKey::DeleteRecords => DeleteRecordsRequest::VERSIONS,
                ApiKey::InitProducerId => InitProducerIdRequest::VERSIONS,
                ApiKey::OffsetForLeaderEpoch => OffsetForLeaderEpochRequest::VERSIONS,
                ApiKey::DescribeConfigs => DescribeConfigsRequest::VERSIONS,
                ApiKey::AlterConfigs => AlterConfigsRequest::VERSIONS,
                ApiKey::CreatePartitions => CreatePartitionsRequest::VERSIONS,
                ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsRequest::VERSIONS,
                ApiKey::DescribeCluster => DescribeClusterRequest::VERSIONS,
                ApiKey::FindCoordinator => FindCoordinatorRequest::VERSIONS,
                ApiKey::JoinGroup => JoinGroupRequest::VERSIONS,
                ApiKey::SyncGroup => SyncGroupRequest::VERSIONS,
                ApiKey::Heartbeat => HeartbeatRequest::VERSIONS,
                ApiKey::LeaveGroup => LeaveGroupRequest::VERSIONS,
                ApiKey::OffsetCommit => OffsetCommitRequest::VERSIONS,
                ApiKey::OffsetFetch => OffsetFetchRequest::VERSIONS,
                ApiKey::DescribeGroups => DescribeGroupsRequest::VERSIONS,
                ApiKey::ListGroups => ListGroupsRequest::VERSIONS,
                ApiKey::DeleteGroups => DeleteGroupsRequest::VERSIONS,
                ApiKey::OffsetDelete => OffsetDeleteRequest::VERSIONS,
                ApiKey::ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest::VERSIONS,
                ApiKey::SaslHandshake => SaslHandshakeRequest::VERSIONS,
                ApiKey::SaslAuthenticate => SaslAuthenticateRequest::VERSIONS,
                ApiKey::DescribeUserScramCredentials => {
                    DescribeUserScramCredentialsRequest::VERSIONS
                }
                ApiKey::AlterUserScramCredentials => AlterUserScramCredentialsRequest::VERSIONS,
                ApiKey::CreateAcls => CreateAclsRequest::VERSIONS,
                ApiKey::DescribeAcls => DescribeAclsRequest::VERSIONS,
                ApiKey::DeleteAcls => DeleteAclsRequest::VERSIONS,
                other => panic!("{other:?} advertised without a codec check"),
            };
            (r.min, r.max)
        };
        for &(key, lo, hi) in SUPPORTED {
            let (clo, chi) = codec(key);
            let lo = if key == ApiKey::Produce {
                PRODUCE_VERSION_MIN_SERVED
            } else {
                lo
            };
            assert!(
                clo <= lo && hi <= chi,
                "{key:?} v{lo}..v{hi} outside codec v{clo}..v{chi}"
            );
        }
    }
}
