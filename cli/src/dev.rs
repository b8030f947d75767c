//! `weir dev`: the local mode. One process runs a coordinator (a one-voter quorum) and one
//! broker, or `--brokers N` brokers on consecutive ports, with data in a local folder.

use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Where Weir keeps its data (`coordinator/` and one `broker-N/` per broker).
    #[arg(long, env = "WEIR_DATA_DIR", default_value = "./weir-data")]
    pub data_dir: PathBuf,
    /// Address of the (first) broker's Kafka listener, PLAINTEXT (default 127.0.0.1:9092);
    /// broker N listens on port + N - 1. The simple form of --listener; give one or the other.
    #[arg(long, env = "WEIR_KAFKA_ADDR")]
    pub kafka_addr: Option<SocketAddr>,
    /// The `host:port` clients are told to connect to (one broker only; defaults to the
    /// listener's address).
    #[arg(long, env = "WEIR_ADVERTISED_KAFKA_ADDR")]
    pub advertised_kafka_addr: Option<String>,
    /// Partitions of auto-created topics (`num.partitions`).
    #[arg(long, env = "WEIR_DEFAULT_PARTITIONS", default_value_t = 1,
          value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub default_partitions: i32,
    /// Create topics on first use (`auto.create.topics.enable`).
    #[arg(long, env = "WEIR_AUTO_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_create_topics: bool,
    /// fsync after this many records (`flush.messages`; 1 = every append). Default: page cache.
    #[arg(long, env = "WEIR_FLUSH_MESSAGES", value_parser = clap::value_parser!(u64).range(1..))]
    pub flush_messages: Option<u64>,
    /// fsync at least this often in milliseconds (`flush.ms`). Default: page cache.
    #[arg(long, env = "WEIR_FLUSH_MS", value_parser = clap::value_parser!(i64).range(0..))]
    pub flush_ms: Option<i64>,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (with several brokers, on
    /// consecutive ports). Not served unless set.
    #[arg(long, env = "WEIR_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Named listeners and TLS, as `weir-broker` takes them; with several brokers, broker N
    /// listens on each listener's port + N - 1.
    #[command(flatten)]
    pub listeners: weir_broker::cli::ListenerArgs,
    #[command(flatten)]
    pub groups: weir_broker::cli::GroupArgs,
}

/// Where the first broker listens when neither --kafka-addr nor --listener is given.
const DEV_KAFKA_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9092);

/// `brokers`: how many brokers to run, from the global `--brokers N`.
pub async fn run(args: DevArgs, brokers: u16) -> anyhow::Result<()> {
    if brokers > 1
        && (args.advertised_kafka_addr.is_some() || !args.listeners.advertised_listener.is_empty())
    {
        anyhow::bail!(
            "--advertised-kafka-addr and --advertised-listener apply to a single broker; drop them or use --brokers 1"
        );
    }
    let brokers = usize::from(brokers);
    let groups = args.groups.settings().map_err(anyhow::Error::msg)?;
    let coordinator = weir_coordinator::CoordinatorConfig {
        id: 1,
        data_dir: args.data_dir.join("coordinator"),
        listen: "127.0.0.1:0".to_string(),
        // New topics are replicated over every local broker, up to three.
        default_replication_factor: brokers.min(3) as i32,
        default_partitions: args.default_partitions,
        ..Default::default()
    };
    let coordinator = weir_coordinator::start(coordinator)
        .await
        .with_context(|| {
            format!(
                "starting the coordinator with data in {}",
                args.data_dir.display()
            )
        })?;
    let coordinator_addr = coordinator.local_addr().to_string();

    let mut started = Vec::new();
    for i in 0..brokers {
        let config = broker_config(&args, i, &coordinator_addr, &groups)?;
        let addr = config.listeners[0].addr;
        let broker = weir_broker::Broker::start(config)
            .await
            .with_context(|| format!("starting broker {} on {addr}", i + 1))?;
        started.push(broker);
    }
    let addrs: Vec<String> = started.iter().map(|b| b.advertised_addr()).collect();
    let bootstrap = addrs.join(",");
    print_banner(&args, brokers, &addrs, &bootstrap, &coordinator_addr);

    // Ctrl-C or SIGTERM: every broker stops accepting, hands over leaderships, flushes and
    // closes its logs; then the coordinator stops.
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut tasks = Vec::new();
    for broker in started {
        let mut rx = stop_tx.subscribe();
        tasks.push(tokio::spawn(async move {
            broker
                .serve(async move {
                    let _ = rx.recv().await;
                })
                .await
        }));
    }
    crate::client::shutdown_signal().await;
    let _ = stop_tx.send(());
    let mut result = Ok(());
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(anyhow::Error::new(e).context("serving the Kafka listener")),
            Err(e) => result = Err(anyhow::Error::new(e).context("broker task")),
        }
    }
    coordinator.shutdown().await;
    result?;
    eprintln!("Weir stopped cleanly.");
    Ok(())
}

/// Broker `i` (0-based) of the local cluster: every listener's port moved up by `i`.
fn broker_config(
    args: &DevArgs,
    i: usize,
    coordinator_addr: &str,
    groups: &weir_broker::config::GroupSettings,
) -> anyhow::Result<weir_broker::BrokerConfig> {
    let (mut listeners, tls) = args
        .listeners
        .clone()
        .resolve(
            args.kafka_addr
                .or(args.listeners.listener.is_empty().then_some(DEV_KAFKA_ADDR)),
            args.advertised_kafka_addr.clone(),
        )
        .map_err(anyhow::Error::msg)?;
    for l in &mut listeners {
        if l.addr.port() != 0 {
            let port = l.addr.port().checked_add(i as u16).with_context(|| {
                format!("listener {} port too high for this many brokers", l.name)
            })?;
            l.addr.set_port(port);
        }
    }
    let mut config = weir_broker::BrokerConfig::new(
        args.data_dir.join(format!("broker-{}", i + 1)),
        DEV_KAFKA_ADDR,
    );
    config.listeners = listeners;
    config.tls = tls;
    config.sasl = args.listeners.sasl().map_err(anyhow::Error::msg)?;
    config.authorizer = args
        .listeners
        .authorizer(&config.listeners)
        .map_err(anyhow::Error::msg)?;
    config.node_id = i as i32 + 1;
    config.coordinators = vec![coordinator_addr.to_string()];
    config.default_partitions = args.default_partitions;
    config.auto_create_topics = args.auto_create_topics;
    config.log_defaults.flush_messages = args.flush_messages;
    config.log_defaults.flush_ms = args.flush_ms;
    config.controlled_shutdown_timeout_ms = 5_000;
    config.groups = groups.clone();
    if let Some(mut m) = args.metrics_addr {
        m.set_port(
            m.port()
                .checked_add(i as u16)
                .context("--metrics-addr port too high for this many brokers")?,
        );
        config.metrics_addr = Some(m);
    }
    Ok(config)
}

/// What is running, and how to try it.
fn print_banner(
    args: &DevArgs,
    brokers: usize,
    addrs: &[String],
    bootstrap: &str,
    coordinator_addr: &str,
) {
    if brokers == 1 {
        eprintln!(
            "Weir is running (local mode: one coordinator and one broker, data in {})",
            args.data_dir.display()
        );
    } else {
        eprintln!(
            "Weir is running (local cluster: one coordinator and {brokers} brokers, data in {})",
            args.data_dir.display()
        );
    }
    eprintln!("  Kafka listener(s): {bootstrap}");
    eprintln!("  coordinator (gRPC): {coordinator_addr}");
    eprintln!("  try:  kcat -b {} -L", addrs[0]);
    eprintln!(
        "        weir produce -t demo --brokers {}   (then: weir consume -t demo --brokers {} --from beginning)",
        addrs[0], addrs[0]
    );
    eprintln!("  Ctrl-C stops it.");
}
