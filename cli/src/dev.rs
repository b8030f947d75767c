//! `weir dev`: the local mode, one process with a broker and its data in a local folder.

use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Where Weir keeps its data.
    #[arg(long, env = "WEIR_DATA_DIR", default_value = "./weir-data")]
    pub data_dir: PathBuf,
    /// Address of the Kafka listener.
    #[arg(long, env = "WEIR_KAFKA_ADDR", default_value = "127.0.0.1:9092")]
    pub kafka_addr: SocketAddr,
    /// The `host:port` clients are told to connect to (defaults to the listener's address).
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
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let mut config = weir_broker::BrokerConfig::new(args.data_dir.clone(), args.kafka_addr);
    config.advertised_kafka_addr = args.advertised_kafka_addr;
    config.default_partitions = args.default_partitions;
    config.auto_create_topics = args.auto_create_topics;
    config.log_defaults.flush_messages = args.flush_messages;
    config.log_defaults.flush_ms = args.flush_ms;

    let broker = weir_broker::Broker::start(config)
        .await
        .with_context(|| format!("starting Weir with data in {}", args.data_dir.display()))?;
    let addr = broker.advertised_addr();
    eprintln!(
        "Weir is running (local mode: one broker, data in {})",
        args.data_dir.display()
    );
    eprintln!("  Kafka listener: {addr}");
    eprintln!("  try:  kcat -b {addr} -L");
    eprintln!(
        "        weir produce -t demo --brokers {addr}   (then: weir consume -t demo --brokers {addr} --from beginning)"
    );
    eprintln!("  Ctrl-C stops it.");
    broker
        // Ctrl-C or SIGTERM: stop accepting, finish in-flight requests, flush and close logs.
        .serve(crate::client::shutdown_signal())
        .await
        .context("serving the Kafka listener")?;
    eprintln!("Weir stopped cleanly.");
    Ok(())
}
