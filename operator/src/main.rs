//! `weir-operator`: flags and environment in, [`weir_operator::run`] until SIGTERM or SIGINT.
//! Logging goes to stdout, filtered by `WEIR_LOG` (default `info`), as JSON with `--log-json`.

use clap::Parser;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use weir_operator::OperatorConfig;
use weir_operator::controller::Timing;
use weir_operator::desired::Defaults;

/// Weir's Kubernetes operator: reconciles Cluster, Topic and ConsumerGroup resources.
#[derive(Debug, Parser)]
#[command(name = "weir-operator", version)]
struct Flags {
    /// Namespaces to watch, comma-separated; all namespaces when empty.
    #[arg(long, env = "WEIR_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Address of `/metrics`, `/livez` and `/readyz`.
    #[arg(long, env = "WEIR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Broker image repository; a Cluster runs `<repository>:<version>`.
    #[arg(
        long,
        env = "WEIR_BROKER_IMAGE",
        default_value = "localhost/weir/broker"
    )]
    broker_image: String,
    /// Coordinator image repository.
    #[arg(
        long,
        env = "WEIR_COORDINATOR_IMAGE",
        default_value = "localhost/weir/coordinator"
    )]
    coordinator_image: String,
    /// Version a Cluster without `spec.version` runs [default: the operator's own].
    #[arg(long, env = "WEIR_DEFAULT_VERSION")]
    default_version: Option<String>,
    /// Seconds between looks at a steady cluster.
    #[arg(long, env = "WEIR_CLUSTER_RESYNC_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    cluster_resync_seconds: u64,
    /// Seconds between looks at a cluster that is rolling out, draining or spreading.
    #[arg(long, env = "WEIR_CLUSTER_BUSY_SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    cluster_busy_seconds: u64,
    /// Seconds between checks of a topic against its resource: how soon a change made behind
    /// the operator's back is undone.
    #[arg(long, env = "WEIR_TOPIC_RESYNC_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    topic_resync_seconds: u64,
    /// Seconds between refreshes of a ConsumerGroup's status.
    #[arg(long, env = "WEIR_GROUP_REFRESH_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    group_refresh_seconds: u64,
    /// Seconds before a failed reconcile is tried again.
    #[arg(long, env = "WEIR_RETRY_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    retry_seconds: u64,
    /// Reach a cluster's coordinators at these addresses instead of its in-cluster ones:
    /// `NAMESPACE/CLUSTER=HOST:PORT[,HOST:PORT...]`; repeatable. For an operator running outside
    /// the Kubernetes cluster (development, tests).
    #[arg(long = "coordinators-override", value_name = "NS/CLUSTER=ADDRS")]
    coordinators_override: Vec<String>,
    /// Reach a cluster's brokers at these bootstrap addresses instead of its bootstrap Service:
    /// `NAMESPACE/CLUSTER=HOST:PORT[,HOST:PORT...]`; repeatable.
    #[arg(long = "bootstrap-override", value_name = "NS/CLUSTER=ADDRS")]
    bootstrap_override: Vec<String>,
    /// Log as JSON lines.
    #[arg(long, env = "WEIR_LOG_JSON")]
    log_json: bool,
    /// This pod's name, for the events the operator publishes.
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
}

fn overrides(flag: &str, values: &[String]) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut out = BTreeMap::new();
    for v in values {
        let bad = || format!("{flag} {v:?}: expected NAMESPACE/CLUSTER=HOST:PORT[,HOST:PORT...]");
        let (key, addrs) = v.split_once('=').ok_or_else(bad)?;
        let (ns, name) = key.split_once('/').ok_or_else(bad)?;
        let addrs: Vec<String> = addrs.split(',').map(|a| a.trim().to_string()).collect();
        let valid = |a: &String| {
            a.rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        };
        if ns.is_empty() || name.is_empty() || addrs.is_empty() || !addrs.iter().all(valid) {
            return Err(bad());
        }
        out.insert(key.to_string(), addrs);
    }
    Ok(out)
}

impl Flags {
    fn into_config(self) -> Result<OperatorConfig, String> {
        let secs = Duration::from_secs;
        Ok(OperatorConfig {
            namespaces: self
                .namespaces
                .into_iter()
                .filter(|n| !n.trim().is_empty())
                .collect(),
            http_addr: self.http_addr,
            defaults: Defaults {
                broker_repository: self.broker_image,
                coordinator_repository: self.coordinator_image,
                version: self
                    .default_version
                    .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string()),
            },
            timing: Timing {
                cluster_resync: secs(self.cluster_resync_seconds),
                cluster_busy: secs(self.cluster_busy_seconds),
                topic_resync: secs(self.topic_resync_seconds),
                group_refresh: secs(self.group_refresh_seconds),
                retry: secs(self.retry_seconds),
            },
            coordinator_overrides: overrides(
                "--coordinators-override",
                &self.coordinators_override,
            )?,
            bootstrap_overrides: overrides("--bootstrap-override", &self.bootstrap_override)?,
            instance: self.pod_name,
        })
    }
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if flags.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init();
    }
    let config = match flags.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("weir-operator: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weir-operator: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(weir_operator::run(config, weir_process::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir-operator: {e}");
            ExitCode::FAILURE
        }
    }
}
