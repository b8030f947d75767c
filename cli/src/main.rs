//! `weir`: Weir's command line. It speaks the Kafka protocol through librdkafka, so every
//! command except `dev` works against any Kafka-compatible cluster.
//!
//! ```text
//! main.rs     flags, tracing, dispatch
//! dev.rs      weir dev: a local broker in this process
//! topic.rs    weir topic create|list|describe|alter|delete (admin APIs)
//! group.rs    weir group list|describe|reset-offsets|delete (consumer groups)
//! produce.rs  weir produce: stdin lines -> records
//! consume.rs  weir consume: records -> stdout (manual assignment, no consumer group)
//! bench.rs    weir bench produce|consume: throughput and delivery latency
//! client.rs   librdkafka settings, reachability, bounded admin and metadata calls
//! config.rs   typed flag values (acks, start position, KEY=VALUE, brokers)
//! output.rs   tables, JSON, timestamps, bytes
//! error.rs    what failed and what to try
//! ```

mod bench;
mod client;
mod cluster;
mod config;
mod consume;
mod dev;
mod error;
mod group;
mod output;
mod produce;
mod sink;
mod topic;

use clap::{Parser, Subcommand};
use config::{Brokers, KeyValue, OutputFormat, parse_request_timeout_ms};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "weir",
    version,
    about = "Weir: a Kafka-compatible streaming platform"
)]
struct Cli {
    /// Bootstrap brokers, HOST:PORT[,HOST:PORT...]; any Kafka-compatible cluster. With
    /// `weir dev`, a number: how many brokers to run (default 1).
    #[arg(
        long,
        short = 'b',
        global = true,
        help_heading = "Global options",
        env = "WEIR_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    brokers: Brokers,
    /// `table` for people, `json` for scripts.
    #[arg(
        long,
        short = 'o',
        global = true,
        help_heading = "Global options",
        env = "WEIR_OUTPUT",
        value_enum,
        default_value = "table"
    )]
    output: OutputFormat,
    /// Bound on every admin and metadata request, in milliseconds.
    #[arg(long, global = true, help_heading = "Global options", env = "WEIR_REQUEST_TIMEOUT_MS", default_value = "10000",
          value_parser = parse_request_timeout_ms)]
    request_timeout_ms: u64,
    /// A librdkafka property for every client, e.g. `-X security.protocol=ssl`; repeatable.
    #[arg(
        long = "property",
        short = 'X',
        global = true,
        help_heading = "Global options",
        value_name = "KEY=VALUE"
    )]
    properties: Vec<KeyValue>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run Weir locally: a coordinator and one broker (or --brokers N) in this process, data
    /// in a local folder.
    Dev(dev::DevArgs),
    /// Describe the cluster: brokers, leaders, under-replicated and offline partitions.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Create, list, describe, alter and delete topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Send stdin to a topic, one record per line.
    Produce(produce::ProduceArgs),
    /// Print a topic's records (reads partitions directly; no consumer group).
    Consume(consume::ConsumeArgs),
    /// List, describe (members, offsets, lag), reset the offsets of, and delete consumer groups.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Measure produce or consume throughput and latency against any Kafka-compatible cluster.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                // librdkafka reports each failed connection; our own errors say it once.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("info,librdkafka=off,openraft=warn")
                }),
        )
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dev_brokers = cli.brokers.count();
    if dev_brokers.is_some() && !matches!(cli.command, Command::Dev(_)) {
        eprintln!(
            "error: --brokers {} is a broker count, which only `weir dev` takes; give HOST:PORT[,HOST:PORT...]",
            cli.brokers
        );
        return ExitCode::from(2);
    }
    let dev_brokers = dev_brokers.unwrap_or(1);
    let connection = client::Connection {
        brokers: cli.brokers,
        request_timeout: Duration::from_millis(cli.request_timeout_ms),
        properties: cli.properties,
    };
    let output = cli.output;
    let result: anyhow::Result<()> = runtime.block_on(async move {
        match cli.command {
            Command::Dev(args) => dev::run(args, dev_brokers).await,
            Command::Topic(command) => Ok(topic::run(&connection, output, command).await?),
            Command::Cluster(command) => Ok(cluster::run(&connection, output, command).await?),
            Command::Produce(args) => Ok(produce::run(&connection, output, args).await?),
            Command::Consume(args) => Ok(consume::run(&connection, output, args).await?),
            Command::Group(command) => Ok(group::run(&connection, output, command).await?),
            Command::Bench(command) => Ok(bench::run(&connection, output, command).await?),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e)
            if e.downcast_ref::<error::Error>()
                .is_some_and(error::Error::is_broken_pipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            // librdkafka's errors repeat their source in their own text; print each once.
            let mut previous = e.to_string();
            for cause in e.chain().skip(1) {
                let text = cause.to_string();
                if !previous.contains(&text) {
                    eprintln!("  caused by: {text}");
                }
                previous = text;
            }
            ExitCode::FAILURE
        }
    }
}
