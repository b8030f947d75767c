//! `weir-coordinator`: flags and environment in, [`weir_coordinator::run`] until SIGTERM or
//! SIGINT (then a clean shutdown and exit 0). Logging goes to stdout, filtered by `WEIR_LOG`
//! (tracing's filter syntax; default `info,openraft=warn`).

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use weir_coordinator::{CoordinatorConfig, NodeId, parse_peers};

/// Weir's coordinator: one voter (or a joining learner) of the cluster's metadata quorum.
#[derive(Debug, Parser)]
#[command(name = "weir-coordinator", version)]
struct Flags {
    /// This coordinator's id in the quorum.
    #[arg(long, env = "WEIR_ID")]
    id: NodeId,
    /// Where the Raft log and snapshots are kept.
    #[arg(long, env = "WEIR_DATA_DIR")]
    data_dir: PathBuf,
    /// HOST:PORT of the gRPC server.
    #[arg(long, env = "WEIR_LISTEN")]
    listen: String,
    /// The initial voters, ID=HOST:PORT,... including this one (1, 3 or 5 of them).
    #[arg(long, env = "WEIR_PEERS", required_unless_present = "join")]
    peers: Option<String>,
    /// HOST:PORT others reach this coordinator at [default: the listener's address].
    #[arg(long, env = "WEIR_ADVERTISED_ADDR")]
    advertised_addr: Option<String>,
    /// Do not bootstrap: wait to be added with the Admin AddCoordinator RPC.
    #[arg(long, env = "WEIR_JOIN")]
    join: bool,
    /// A broker that has not heartbeated for this long is fenced.
    #[arg(long, env = "WEIR_BROKER_SESSION_TIMEOUT_MS", default_value_t = 6000)]
    broker_session_timeout_ms: u64,
    /// How often brokers heartbeat.
    #[arg(long, env = "WEIR_HEARTBEAT_INTERVAL_MS", default_value_t = 1000)]
    heartbeat_interval_ms: u64,
    /// Write a snapshot (and purge the log before it) every this many log entries.
    #[arg(long, env = "WEIR_SNAPSHOT_EVERY", default_value_t = 1000)]
    snapshot_every: u64,
    /// Partitions of a topic created without a count.
    #[arg(long, env = "WEIR_DEFAULT_PARTITIONS", default_value_t = 1)]
    default_partitions: i32,
    /// Replication factor of a topic created without one.
    #[arg(long, env = "WEIR_DEFAULT_REPLICATION_FACTOR", default_value_t = 1)]
    default_replication_factor: i32,
    /// How often leadership is moved back to preferred replicas.
    #[arg(
        long,
        env = "WEIR_LEADER_REBALANCE_INTERVAL_MS",
        default_value_t = 10_000
    )]
    leader_rebalance_interval_ms: u64,
    /// Raft heartbeat from the leader.
    #[arg(long, env = "WEIR_RAFT_HEARTBEAT_INTERVAL_MS", default_value_t = 150)]
    raft_heartbeat_interval_ms: u64,
    /// Shortest time without a leader before a follower starts an election.
    #[arg(long, env = "WEIR_ELECTION_TIMEOUT_MIN_MS", default_value_t = 1000)]
    election_timeout_min_ms: u64,
    /// Longest time without a leader before a follower starts an election.
    #[arg(long, env = "WEIR_ELECTION_TIMEOUT_MAX_MS", default_value_t = 2000)]
    election_timeout_max_ms: u64,
}

impl Flags {
    fn into_config(self) -> anyhow::Result<CoordinatorConfig> {
        let peers = match &self.peers {
            Some(p) => parse_peers(p)?,
            None => Default::default(),
        };
        let ms = Duration::from_millis;
        let config = CoordinatorConfig {
            id: self.id,
            data_dir: self.data_dir,
            listen: self.listen,
            advertised_addr: self.advertised_addr,
            peers,
            join: self.join,
            broker_session_timeout: ms(self.broker_session_timeout_ms),
            broker_heartbeat_interval: ms(self.heartbeat_interval_ms),
            snapshot_every: self.snapshot_every,
            default_partitions: self.default_partitions,
            default_replication_factor: self.default_replication_factor,
            leader_rebalance_interval: ms(self.leader_rebalance_interval_ms),
            raft_heartbeat_interval: ms(self.raft_heartbeat_interval_ms),
            election_timeout_min: ms(self.election_timeout_min_ms),
            election_timeout_max: ms(self.election_timeout_max_ms),
        };
        config.validate()?;
        Ok(config)
    }
}

fn main() -> ExitCode {
    // openraft logs every vote and election at info; its warnings are what an operator needs.
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();

    let config = match Flags::parse().into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("weir-coordinator: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weir-coordinator: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(weir_coordinator::run(
        config,
        weir_process::shutdown_signal(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir-coordinator: {e}");
            ExitCode::FAILURE
        }
    }
}
