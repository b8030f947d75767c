//! Broker configuration: what `weir dev` and `weir-broker` parse into.

use std::net::SocketAddr;
use std::path::PathBuf;
use weir_model::limits;
use weir_storage::CleanerConfig;
use weir_storage::cleaner::{
    DEDUPE_BUFFER_BYTES_DEFAULT, DEDUPE_BUFFER_BYTES_MAX, DEDUPE_BUFFER_BYTES_MIN,
    IO_BUFFER_BYTES_DEFAULT, IO_BUFFER_BYTES_MAX, IO_BUFFER_BYTES_MIN, IO_BYTES_PER_SECOND_MIN,
};

/// Kafka's `log.cleaner.backoff.ms`.
pub const BACKOFF_MS_DEFAULT: u64 = 15_000;

/// Everything a broker needs to start. Built by the binaries from flags and environment.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// This broker's id in metadata responses (`node.id`).
    pub node_id: i32,
    /// Where topics, partitions and broker metadata live.
    pub data_dir: PathBuf,
    /// The Kafka listeners, at least one. The first one's advertised address is the one the
    /// coordinators and the operator know the broker by.
    pub listeners: Vec<crate::listener::ListenerConfig>,
    /// The certificate, key and client CA of the SSL listeners.
    pub tls: Option<crate::tls::TlsFiles>,
    /// SASL on the SASL listeners: mechanisms, session lifetime, users made at start.
    pub sasl: crate::sasl::SaslSettings,
    /// Super users and the rule for resources no ACL names.
    pub authorizer: weir_auth::acl::Authorizer,
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
    /// The gRPC listener for replication between brokers.
    pub internal_addr: SocketAddr,
    /// The `host:port` other brokers use to reach `internal_addr`; defaults to the bound one.
    pub advertised_internal_addr: Option<String>,
    /// `host:port` of every coordinator (any subset that includes a live one works).
    pub coordinators: Vec<String>,
    /// Placement spreads a partition's replicas over racks.
    pub rack: Option<String>,
    /// A follower not caught up for this long leaves the ISR (`replica.lag.time.max.ms`).
    pub replica_lag_time_max_ms: u64,
    /// `min.insync.replicas` for topics that do not set it.
    pub min_insync_replicas: usize,
    /// How long a SIGTERM waits for leaderships to move away before exiting anyway.
    pub controlled_shutdown_timeout_ms: u64,
    /// Log compaction (`log.cleaner.*`): on, its backoff and its limits.
    pub log_cleaner: LogCleanerSettings,
    /// Consumer-group coordination.
    pub groups: GroupSettings,
    /// Where `/metrics` (Prometheus) is served; not served when unset.
    pub metrics_addr: Option<SocketAddr>,
}

/// Consumer-group coordination: Kafka's `group.*` and `offsets.*` broker configs.
#[derive(Clone, Debug)]
pub struct GroupSettings {
    /// How long the first rebalance of an empty group waits for more members
    /// (`group.initial.rebalance.delay.ms`).
    pub initial_rebalance_delay_ms: i32,
    /// Session timeouts clients may ask for (`group.min/max.session.timeout.ms`).
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// Members per group (`group.max.size`).
    pub max_size: usize,
    /// Partitions of `__consumer_offsets` when it is first created
    /// (`offsets.topic.num.partitions`); fixed afterwards, as the group-to-partition hash
    /// depends on it.
    pub offsets_topic_partitions: i32,
    /// Replicas of `__consumer_offsets` (`offsets.topic.replication.factor`), capped by the
    /// brokers registered when it is created.
    pub offsets_topic_replication_factor: i32,
    /// Longest commit metadata string (`offset.metadata.max.bytes`).
    pub offset_metadata_max_bytes: usize,
    /// KIP-848 groups: a member silent this long is removed
    /// (`group.consumer.session.timeout.ms`).
    pub consumer_session_timeout_ms: i32,
    /// KIP-848 groups: how often members heartbeat (`group.consumer.heartbeat.interval.ms`).
    pub consumer_heartbeat_interval_ms: i32,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            initial_rebalance_delay_ms: 3_000,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            max_size: usize::MAX,
            offsets_topic_partitions: 50,
            offsets_topic_replication_factor: 3,
            offset_metadata_max_bytes: 4096,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
        }
    }
}

impl BrokerConfig {
    /// Kafka's defaults, with one PLAINTEXT listener on `kafka_addr`; the caller sets the
    /// coordinators.
    pub fn new(data_dir: PathBuf, kafka_addr: SocketAddr) -> BrokerConfig {
        BrokerConfig {
            node_id: 1,
            data_dir,
            listeners: vec![crate::listener::ListenerConfig::plaintext(kafka_addr)],
            tls: None,
            sasl: crate::sasl::SaslSettings::default(),
            // No ACLs and no SASL listener: everything is open, as Kafka without an authorizer.
            authorizer: weir_auth::acl::Authorizer {
                super_users: Default::default(),
                allow_if_no_acl: true,
            },
            request_bytes_max: limits::REQUEST_BYTES_MAX_DEFAULT,
            connections_max: limits::CONNECTIONS_MAX_DEFAULT,
            queued_request_bytes_max: limits::QUEUED_REQUEST_BYTES_MAX_DEFAULT,
            fetch_wait_ms_max: limits::FETCH_WAIT_MS_MAX,
            auto_create_topics: true,
            default_partitions: 1,
            log_defaults: weir_storage::LogConfig::default(),
            retention_check_interval_ms: 300_000,
            flush_check_interval_ms: 1_000,
            internal_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertised_internal_addr: None,
            coordinators: Vec::new(),
            rack: None,
            replica_lag_time_max_ms: 30_000,
            min_insync_replicas: 1,
            controlled_shutdown_timeout_ms: 30_000,
            log_cleaner: LogCleanerSettings::default(),
            groups: GroupSettings::default(),
            metrics_addr: None,
        }
    }
}

/// The cleaner's broker-wide settings (Kafka's `log.cleaner.*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogCleanerSettings {
    /// `log.cleaner.enable`.
    pub enable: bool,
    /// Wait between passes when no partition is due.
    pub backoff_ms: u64,
    /// Memory, read buffer and I/O rate limits of a round.
    pub limits: CleanerConfig,
}

impl Default for LogCleanerSettings {
    fn default() -> Self {
        LogCleanerSettings {
            enable: true,
            backoff_ms: BACKOFF_MS_DEFAULT,
            limits: CleanerConfig::default(),
        }
    }
}

/// The `weir-broker` flags of the log cleaner.
#[derive(Debug, Clone, clap::Args)]
pub struct LogCleanerArgs {
    /// Compact topics whose cleanup.policy includes compact (`log.cleaner.enable`).
    #[arg(long, env = "WEIR_LOG_CLEANER_ENABLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub log_cleaner_enable: bool,
    /// Milliseconds to wait between cleaner passes when no log is due (`log.cleaner.backoff.ms`).
    #[arg(long, env = "WEIR_LOG_CLEANER_BACKOFF_MS", default_value_t = BACKOFF_MS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub log_cleaner_backoff_ms: u64,
    /// Bytes per second the cleaner may read plus write (`log.cleaner.io.max.bytes.per.second`).
    /// Default: unlimited.
    #[arg(long, env = "WEIR_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND",
          value_parser = clap::value_parser!(u64).range(IO_BYTES_PER_SECOND_MIN..))]
    pub log_cleaner_io_max_bytes_per_second: Option<u64>,
    /// Memory of the cleaner's key -> offset map: 24-byte slots, 3/4 usable, so about 32 bytes a
    /// key (`log.cleaner.dedupe.buffer.size`).
    #[arg(long, env = "WEIR_LOG_CLEANER_DEDUPE_BUFFER_BYTES", default_value_t = DEDUPE_BUFFER_BYTES_DEFAULT as u64,
          value_parser = clap::value_parser!(u64).range(DEDUPE_BUFFER_BYTES_MIN as u64..=DEDUPE_BUFFER_BYTES_MAX as u64))]
    pub log_cleaner_dedupe_buffer_bytes: u64,
    /// The cleaner's read and write buffer (`log.cleaner.io.buffer.size`).
    #[arg(long, env = "WEIR_LOG_CLEANER_IO_BUFFER_BYTES", default_value_t = IO_BUFFER_BYTES_DEFAULT as u64,
          value_parser = clap::value_parser!(u64).range(IO_BUFFER_BYTES_MIN as u64..=IO_BUFFER_BYTES_MAX as u64))]
    pub log_cleaner_io_buffer_bytes: u64,
}

impl LogCleanerArgs {
    pub fn settings(&self) -> LogCleanerSettings {
        LogCleanerSettings {
            enable: self.log_cleaner_enable,
            backoff_ms: self.log_cleaner_backoff_ms,
            limits: CleanerConfig {
                dedupe_buffer_bytes: usize::try_from(self.log_cleaner_dedupe_buffer_bytes)
                    .unwrap_or(DEDUPE_BUFFER_BYTES_MAX),
                io_buffer_bytes: usize::try_from(self.log_cleaner_io_buffer_bytes)
                    .unwrap_or(IO_BUFFER_BYTES_MAX),
                io_max_bytes_per_second: self.log_cleaner_io_max_bytes_per_second,
            },
        }
    }
}
