//! A Kafka endpoint that acknowledges every produce and stores nothing: the ceiling a client
//! reaches on this machine when the broker costs nothing. `weir bench sink` runs it, so the
//! benchmark can say how close Weir gets to what the client alone can do.
//!
//! It answers ApiVersions, Metadata (any topic exists, with `partitions` partitions), Produce
//! (offsets count up per partition; the records are not looked at) and InitProducerId.
//! Everything else closes the connection.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use weir_broker::frame::{ConnectionError, peek_header, read_frame};

/// Fetch is advertised but not served: librdkafka picks its record format from the Fetch
/// versions a broker lists, and without them falls back to the v1 format (and its costlier
/// checksums), which would understate what the client can do.
const SINK_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::InitProducerId, 0, 5),
];

#[derive(Debug, Default)]
struct Offsets(Mutex<HashMap<(String, i32), i64>>);

/// Serves the sink on `listener` until the process ends.
pub async fn run_sink(listener: TcpListener, partitions: i32) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let offsets = Arc::new(Offsets::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let offsets = offsets.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, addr, partitions, offsets).await {
                tracing::debug!(error = %weir_model::Chain(&e), "sink connection closed");
            }
        });
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    partitions: i32,
    offsets: Arc<Offsets>,
) -> Result<(), ConnectionError> {
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let mut out = BytesMut::new();
    while let Some(frame) =
        read_frame(&mut rd, weir_model::limits::REQUEST_BYTES_MAX_DEFAULT).await?
    {
        let (key, version, _) = peek_header(&frame)?;
        let api = ApiKey::try_from(key)
            .map_err(|_| ConnectionError::Protocol(format!("unknown API key {key}")))?;
        let mut buf = frame;
        let header = RequestHeader::decode(&mut buf, api.request_header_version(version))
            .map_err(|e| ConnectionError::Protocol(e.to_string()))?;
        let bad = |e: anyhow::Error| ConnectionError::Protocol(e.to_string());
        out.clear();
        let hv = api.response_header_version(version);
        let start = out.len();
        out.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(header.correlation_id)
            .encode(&mut out, hv)
            .map_err(bad)?;
        let encoded = match api {
            ApiKey::ApiVersions => api_versions().encode(&mut out, version.min(3)),
            ApiKey::Metadata => {
                let req = MetadataRequest::decode(&mut buf, version).map_err(bad)?;
                metadata(req, addr, partitions).encode(&mut out, version)
            }
            ApiKey::InitProducerId => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(1))
                .encode(&mut out, version),
            ApiKey::Produce if version >= 3 => {
                let req = ProduceRequest::decode(&mut buf, version).map_err(bad)?;
                let acks = req.acks;
                let r = produce(req, &offsets);
                if acks == 0 {
                    continue;
                }
                r.encode(&mut out, version)
            }
            other => {
                return Err(ConnectionError::Protocol(format!(
                    "the sink does not serve {other:?}"
                )));
            }
        };
        encoded.map_err(bad)?;
        let size = (out.len() - start - 4) as i32;
        out[start..start + 4].copy_from_slice(&size.to_be_bytes());
        wr.write_all(&out).await?;
    }
    Ok(())
}

fn api_versions() -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.api_keys = SINK_APIS
        .iter()
        .map(|&(k, lo, hi)| {
            api_versions_response::ApiVersion::default()
                .with_api_key(k as i16)
                .with_min_version(lo)
                .with_max_version(hi)
        })
        .collect();
    r
}

/// Every topic asked for exists, with `partitions` partitions, all led by the sink.
fn metadata(req: MetadataRequest, addr: SocketAddr, partitions: i32) -> MetadataResponse {
    let mut r = MetadataResponse::default();
    r.brokers = vec![
        MetadataResponseBroker::default()
            .with_node_id(BrokerId(1))
            .with_host(StrBytes::from_string(addr.ip().to_string()))
            .with_port(i32::from(addr.port())),
    ];
    r.controller_id = BrokerId(1);
    let partition = |p| {
        MetadataResponsePartition::default()
            .with_partition_index(p)
            .with_leader_id(BrokerId(1))
            .with_leader_epoch(0)
            .with_replica_nodes(vec![BrokerId(1)])
            .with_isr_nodes(vec![BrokerId(1)])
    };
    r.topics = req
        .topics
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| t.name)
        .map(|name| {
            MetadataResponseTopic::default()
                .with_name(Some(name))
                .with_partitions((0..partitions).map(partition).collect())
        })
        .collect();
    r
}

/// Acknowledges every batch, counting offsets up per partition.
fn produce(req: ProduceRequest, offsets: &Offsets) -> ProduceResponse {
    let mut r = ProduceResponse::default();
    let mut map = offsets.0.lock().unwrap_or_else(|p| p.into_inner());
    for t in req.topic_data {
        let mut tr = TopicProduceResponse::default().with_name(t.name.clone());
        for p in t.partition_data {
            // Record count from the batch header (bytes 57..61), no validation.
            let count = p
                .records
                .as_ref()
                .and_then(|b| b.get(57..61))
                .map_or(1, |c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]).max(1));
            let next = map.entry((t.name.0.to_string(), p.index)).or_insert(0);
            tr.partition_responses.push(
                PartitionProduceResponse::default()
                    .with_index(p.index)
                    .with_base_offset(*next)
                    .with_log_append_time_ms(-1),
            );
            *next += i64::from(count);
        }
        r.responses.push(tr);
    }
    r
}
