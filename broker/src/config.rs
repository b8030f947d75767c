//! Broker configuration: what `weir dev` and (later) `weir-broker` parse into.

use std::net::SocketAddr;
use std::path::PathBuf;
use weir_model::limits;

/// Everything a broker needs to start. Built by the binaries from flags and environment.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// This broker's id in metadata responses (`node.id`).
    pub node_id: i32,
    /// Where topics, partitions and broker metadata live.
    pub data_dir: PathBuf,
    /// The Kafka listener's bind address.
    pub kafka_addr: SocketAddr,
    /// The `host:port` clients are told to connect to; defaults to the bound address.
    pub advertised_kafka_addr: Option<String>,
    /// Largest request frame read from a client (`socket.request.max.bytes`).
    pub request_bytes_max: u32,
    /// Connections served at once; more are closed on accept.
    pub connections_max: usize,
    /// Bytes of requests read but not yet answered, over all connections
    /// (`queued.max.request.bytes`). At least `request_bytes_max`.
    pub queued_request_bytes_max: u64,
    /// Longest a fetch may wait for data; a client's `max.wait.ms` is capped here.
    pub fetch_wait_ms_max: i32,
    /// Create a topic when a client asks for metadata or produces to an unknown one.
    pub auto_create_topics: bool,
    /// Partitions for auto-created topics and CreateTopics with `-1` (`num.partitions`).
    pub default_partitions: i32,
    /// Defaults for per-topic log configs (`log.*` broker configs in Kafka).
    pub log_defaults: weir_storage::LogConfig,
    /// How often retention runs (Kafka's `log.retention.check.interval.ms`, 5 minutes).
    pub retention_check_interval_ms: u64,
    /// How often `flush.ms` deadlines are checked.
    pub flush_check_interval_ms: u64,
}

impl BrokerConfig {
    /// A single-node configuration with Kafka's defaults.
    pub fn new(data_dir: PathBuf, kafka_addr: SocketAddr) -> BrokerConfig {
        BrokerConfig {
            node_id: 1,
            data_dir,
            kafka_addr,
            advertised_kafka_addr: None,
            request_bytes_max: limits::REQUEST_BYTES_MAX_DEFAULT,
            connections_max: limits::CONNECTIONS_MAX_DEFAULT,
            queued_request_bytes_max: limits::QUEUED_REQUEST_BYTES_MAX_DEFAULT,
            fetch_wait_ms_max: limits::FETCH_WAIT_MS_MAX,
            auto_create_topics: true,
            default_partitions: 1,
            log_defaults: weir_storage::LogConfig::default(),
            retention_check_interval_ms: 300_000,
            flush_check_interval_ms: 1_000,
        }
    }
}
