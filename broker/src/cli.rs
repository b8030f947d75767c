//! Flags of the `weir-broker` binary. Every flag has a `WEIR_*` environment equivalent, as the
//! Kubernetes StatefulSets set them.

use crate::BrokerConfig;
use crate::listener::ListenerConfig;
use crate::sasl::{SaslSettings, ScramUser};
use crate::tls::TlsFiles;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, clap::Parser)]
#[command(
    name = "weir-broker",
    version,
    about = "A Weir broker: serves Kafka clients and replicates partitions, as the coordinators direct"
)]
pub struct BrokerArgs {
    /// This broker's id, unique in the cluster and stable across restarts.
    #[arg(long, env = "WEIR_BROKER_ID", value_parser = clap::value_parser!(i32).range(0..=1_000_000))]
    pub id: i32,
    /// Where partition logs live.
    #[arg(long, env = "WEIR_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address of the Kafka listener, PLAINTEXT (default 0.0.0.0:9092). The simple form of
    /// --listener; give one or the other.
    #[arg(long, env = "WEIR_KAFKA_ADDR")]
    pub kafka_addr: Option<SocketAddr>,
    /// The `host:port` clients are told to connect to (with --kafka-addr).
    #[arg(long, env = "WEIR_ADVERTISED_KAFKA_ADDR")]
    pub advertised_kafka_addr: Option<String>,
    #[command(flatten)]
    pub listeners: ListenerArgs,
    /// Address of the replication (gRPC) listener.
    #[arg(long, env = "WEIR_INTERNAL_ADDR", default_value = "0.0.0.0:9093")]
    pub internal_addr: SocketAddr,
    /// The `host:port` other brokers replicate from (defaults to --internal-addr).
    #[arg(long, env = "WEIR_ADVERTISED_INTERNAL_ADDR")]
    pub advertised_internal_addr: Option<String>,
    /// Coordinators, `host:port` comma-separated; any live one is enough.
    #[arg(
        long,
        env = "WEIR_COORDINATORS",
        value_delimiter = ',',
        required = true
    )]
    pub coordinators: Vec<String>,
    /// The rack (or zone) this broker is in; replicas are spread over racks.
    #[arg(long, env = "WEIR_RACK")]
    pub rack: Option<String>,
    /// A follower not caught up for this long leaves the ISR (`replica.lag.time.max.ms`).
    #[arg(long, env = "WEIR_REPLICA_LAG_TIME_MAX_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub replica_lag_time_max_ms: u64,
    /// `min.insync.replicas` for topics that do not set it.
    #[arg(long, env = "WEIR_MIN_INSYNC_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=100))]
    pub min_insync_replicas: u64,
    /// Create topics on first use (`auto.create.topics.enable`).
    #[arg(long, env = "WEIR_AUTO_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_create_topics: bool,
    /// fsync after this many records (`flush.messages`; 1 = every append). Default: page cache.
    #[arg(long, env = "WEIR_FLUSH_MESSAGES", value_parser = clap::value_parser!(u64).range(1..))]
    pub flush_messages: Option<u64>,
    /// fsync at least this often in milliseconds (`flush.ms`). Default: page cache.
    #[arg(long, env = "WEIR_FLUSH_MS", value_parser = clap::value_parser!(i64).range(0..))]
    pub flush_ms: Option<i64>,
    /// How long SIGTERM waits for leaderships to move before exiting anyway.
    #[arg(
        long,
        env = "WEIR_CONTROLLED_SHUTDOWN_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub controlled_shutdown_timeout_ms: u64,
    #[command(flatten)]
    pub log_cleaner: crate::config::LogCleanerArgs,
    /// Serve Prometheus metrics (partitions led here, consumer groups and their lag) at
    /// `http://ADDR/metrics`. Not served unless set.
    #[arg(long, env = "WEIR_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub groups: GroupArgs,
}

/// Consumer-group flags, shared by `weir-broker` and `weir dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct GroupArgs {
    /// How long the first rebalance of an empty group waits for more members to join
    /// (`group.initial.rebalance.delay.ms`).
    #[arg(long, env = "WEIR_GROUP_INITIAL_REBALANCE_DELAY_MS", default_value_t = 3_000,
          value_parser = clap::value_parser!(i32).range(0..=300_000))]
    pub group_initial_rebalance_delay_ms: i32,
    /// Shortest session timeout a consumer may ask for (`group.min.session.timeout.ms`).
    #[arg(long, env = "WEIR_GROUP_MIN_SESSION_TIMEOUT_MS", default_value_t = 6_000,
          value_parser = clap::value_parser!(i32).range(1..=3_600_000))]
    pub group_min_session_timeout_ms: i32,
    /// Longest session timeout a consumer may ask for (`group.max.session.timeout.ms`).
    #[arg(long, env = "WEIR_GROUP_MAX_SESSION_TIMEOUT_MS", default_value_t = 1_800_000,
          value_parser = clap::value_parser!(i32).range(1..=3_600_000))]
    pub group_max_session_timeout_ms: i32,
    /// Most members a group may have (`group.max.size`); unlimited by default.
    #[arg(long, env = "WEIR_GROUP_MAX_SIZE", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub group_max_size: Option<u64>,
    /// Partitions of `__consumer_offsets` when it is created (`offsets.topic.num.partitions`);
    /// cannot change afterwards.
    #[arg(long, env = "WEIR_OFFSETS_TOPIC_PARTITIONS", default_value_t = 50,
          value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub offsets_topic_partitions: i32,
    /// Replicas of `__consumer_offsets` (`offsets.topic.replication.factor`); capped by the
    /// brokers registered when it is created.
    #[arg(long, env = "WEIR_OFFSETS_TOPIC_REPLICATION_FACTOR", default_value_t = 3,
          value_parser = clap::value_parser!(i32).range(1..=16))]
    pub offsets_topic_replication_factor: i32,
    /// KIP-848 consumer groups (`group.protocol=consumer`): a member silent this long is
    /// removed (`group.consumer.session.timeout.ms`).
    #[arg(long, env = "WEIR_GROUP_CONSUMER_SESSION_TIMEOUT_MS", default_value_t = 45_000,
          value_parser = clap::value_parser!(i32).range(1_000..=3_600_000))]
    pub group_consumer_session_timeout_ms: i32,
    /// KIP-848 consumer groups: how often members heartbeat
    /// (`group.consumer.heartbeat.interval.ms`).
    #[arg(long, env = "WEIR_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(i32).range(100..=3_600_000))]
    pub group_consumer_heartbeat_interval_ms: i32,
}

impl GroupArgs {
    /// The settings, or what is wrong with the combination.
    pub fn settings(&self) -> Result<crate::config::GroupSettings, String> {
        if self.group_consumer_heartbeat_interval_ms >= self.group_consumer_session_timeout_ms {
            return Err(format!(
                "--group-consumer-heartbeat-interval-ms ({}) must be less than --group-consumer-session-timeout-ms ({})",
                self.group_consumer_heartbeat_interval_ms, self.group_consumer_session_timeout_ms
            ));
        }
        if self.group_min_session_timeout_ms > self.group_max_session_timeout_ms {
            return Err(format!(
                "--group-min-session-timeout-ms ({}) must not exceed --group-max-session-timeout-ms ({})",
                self.group_min_session_timeout_ms, self.group_max_session_timeout_ms
            ));
        }
        Ok(crate::config::GroupSettings {
            initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms,
            min_session_timeout_ms: self.group_min_session_timeout_ms,
            max_session_timeout_ms: self.group_max_session_timeout_ms,
            max_size: self.group_max_size.map_or(usize::MAX, |n| n as usize),
            offsets_topic_partitions: self.offsets_topic_partitions,
            offsets_topic_replication_factor: self.offsets_topic_replication_factor,
            consumer_session_timeout_ms: self.group_consumer_session_timeout_ms,
            consumer_heartbeat_interval_ms: self.group_consumer_heartbeat_interval_ms,
            ..crate::config::GroupSettings::default()
        })
    }
}

/// Kafka-style named listeners and their TLS material.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ListenerArgs {
    /// A Kafka listener, `NAME=PROTOCOL://HOST:PORT` (PROTOCOL: PLAINTEXT, SSL, SASL_PLAINTEXT
    /// or SASL_SSL; HOST an IP address or empty for all). Repeatable; the first is the one the cluster knows the
    /// broker by.
    #[arg(long = "listener", env = "WEIR_LISTENERS", value_delimiter = ',')]
    pub listener: Vec<String>,
    /// The `host:port` clients of listener NAME are told, `NAME=HOST:PORT`. Repeatable.
    #[arg(
        long = "advertised-listener",
        env = "WEIR_ADVERTISED_LISTENERS",
        value_delimiter = ','
    )]
    pub advertised_listener: Vec<String>,
    /// The SSL listeners' certificate chain (PEM, leaf first). Reloaded when it changes.
    #[arg(long, env = "WEIR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM). Reloaded when it changes.
    #[arg(long, env = "WEIR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CAs client certificates must chain to (PEM): mutual TLS on the SSL listeners.
    #[arg(long, env = "WEIR_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// The SASL mechanisms the SASL listeners offer: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    /// (default: both SCRAM ones).
    #[arg(long, env = "WEIR_SASL_MECHANISMS", value_delimiter = ',')]
    pub sasl_mechanisms: Vec<String>,
    /// A SASL user made at start if it has no credential yet, `NAME=PASSWORD[:MECHANISM]`
    /// (both SCRAM mechanisms unless one is named), as `kafka-storage format --add-scram`.
    /// Repeatable; a password may not hold a comma.
    #[arg(long = "scram-user", env = "WEIR_SCRAM_USERS", value_delimiter = ',')]
    pub scram_user: Vec<String>,
    /// How long a SASL session lasts before the client must re-authenticate on its
    /// connection (`connections.max.reauth.ms`, KIP-368); 0 (the default): for ever.
    #[arg(long, env = "WEIR_CONNECTIONS_MAX_REAUTH_MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=86_400_000))]
    pub connections_max_reauth_ms: u64,
    /// Principals that may do anything whatever the ACLs say, `User:NAME,...` (`super.users`).
    #[arg(long, env = "WEIR_SUPER_USERS", value_delimiter = ',')]
    pub super_users: Vec<String>,
    /// Whether a resource no ACL names is open to every principal
    /// (`allow.everyone.if.no.acl.found`). Default: false once a SASL listener exists, else
    /// true.
    #[arg(long, env = "WEIR_ALLOW_EVERYONE_IF_NO_ACL_FOUND", action = clap::ArgAction::Set)]
    pub allow_everyone_if_no_acl_found: Option<bool>,
}

impl ListenerArgs {
    /// The authorizer's settings for these listeners.
    pub fn authorizer(
        &self,
        listeners: &[ListenerConfig],
    ) -> Result<weir_auth::acl::Authorizer, String> {
        for u in &self.super_users {
            if u.strip_prefix("User:").is_none_or(str::is_empty) {
                return Err(format!("--super-users {u:?}: a principal is User:NAME"));
            }
        }
        let any_sasl = listeners.iter().any(|l| l.protocol.sasl());
        Ok(weir_auth::acl::Authorizer {
            super_users: self.super_users.iter().cloned().collect(),
            allow_if_no_acl: self.allow_everyone_if_no_acl_found.unwrap_or(!any_sasl),
        })
    }

    /// The SASL settings.
    pub fn sasl(&self) -> Result<SaslSettings, String> {
        Ok(SaslSettings {
            mechanisms: crate::sasl::parse_mechanisms(&self.sasl_mechanisms)?,
            reauth_ms: (self.connections_max_reauth_ms > 0)
                .then_some(self.connections_max_reauth_ms),
            scram_users: self
                .scram_user
                .iter()
                .map(|u| ScramUser::parse(u))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The listeners, or PLAINTEXT on `kafka_addr` (advertised as `advertised`) when none are
    /// named; and the TLS files.
    pub fn resolve(
        self,
        kafka_addr: Option<SocketAddr>,
        advertised: Option<String>,
    ) -> Result<(Vec<ListenerConfig>, Option<TlsFiles>), String> {
        let tls = self.tls_cert.zip(self.tls_key).map(|(cert, key)| TlsFiles {
            cert,
            key,
            client_ca: self.tls_client_ca,
        });
        if self.listener.is_empty() {
            if !self.advertised_listener.is_empty() {
                return Err("--advertised-listener names a --listener; give --listener too".into());
            }
            let mut l = ListenerConfig::plaintext(kafka_addr.unwrap_or(DEFAULT_KAFKA_ADDR));
            l.advertised = advertised;
            return Ok((vec![l], tls));
        }
        if kafka_addr.is_some() || advertised.is_some() {
            return Err("--kafka-addr and --advertised-kafka-addr are the simple form of --listener and --advertised-listener; give one form".into());
        }
        let listeners = self
            .listener
            .iter()
            .map(|l| ListenerConfig::parse(l))
            .collect::<Result<Vec<_>, _>>()?;
        let advertised = self
            .advertised_listener
            .iter()
            .map(|a| crate::listener::parse_advertised(a))
            .collect::<Result<Vec<_>, _>>()?;
        let listeners = crate::listener::assemble(listeners, advertised, tls.as_ref())?;
        Ok((listeners, tls))
    }
}

/// Kafka's port on every interface: the listener of a broker given none.
const DEFAULT_KAFKA_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 9092);

impl BrokerArgs {
    pub fn into_config(self) -> Result<BrokerConfig, String> {
        let groups = self.groups.settings()?;
        let sasl = self.listeners.sasl()?;
        let listener_args = self.listeners.clone();
        let (listeners, tls) = self
            .listeners
            .resolve(self.kafka_addr, self.advertised_kafka_addr)?;
        let mut c = BrokerConfig::new(self.data_dir, DEFAULT_KAFKA_ADDR);
        c.listeners = listeners;
        c.tls = tls;
        c.authorizer = listener_args.authorizer(&c.listeners)?;
        c.sasl = sasl;
        c.node_id = self.id;
        c.internal_addr = self.internal_addr;
        c.advertised_internal_addr = self.advertised_internal_addr;
        c.coordinators = self.coordinators;
        // An empty rack (a Kubernetes pod without the zone label) means no rack.
        c.rack = self.rack.filter(|r| !r.trim().is_empty());
        c.replica_lag_time_max_ms = self.replica_lag_time_max_ms;
        c.min_insync_replicas = self.min_insync_replicas as usize;
        c.auto_create_topics = self.auto_create_topics;
        c.log_defaults.flush_messages = self.flush_messages;
        c.log_defaults.flush_ms = self.flush_ms;
        c.controlled_shutdown_timeout_ms = self.controlled_shutdown_timeout_ms;
        c.log_cleaner = self.log_cleaner.settings();
        c.groups = groups;
        c.metrics_addr = self.metrics_addr;
        Ok(c)
    }
}

/// The binary: parse flags, log to stderr (filter from `WEIR_LOG`), run until a signal.
pub fn main() -> std::process::ExitCode {
    use clap::Parser;
    let args = BrokerArgs::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: container and Kubernetes logs keep no escape codes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weir-broker: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let config = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("weir-broker: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(crate::run(config, weir_process::shutdown_signal())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("weir-broker: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("{msg}");
            std::process::ExitCode::FAILURE
        }
    }
}
