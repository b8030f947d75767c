//! What a coordinator is started with, and the checks on it.

use crate::types::NodeId;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use weir_model::limits::PARTITIONS_PER_TOPIC_MAX;

/// The quorum sizes a cluster may be bootstrapped with: an odd number of voters, at most five
/// (more voters only slow every commit down).
pub const VOTERS_ALLOWED: [usize; 3] = [1, 3, 5];
/// The size of a producer-id block handed to a broker.
pub const PRODUCER_ID_BLOCK: i32 = 1000;
/// How often the leader checks broker leases.
pub const LEASE_CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// A gap longer than this between two looks at the clock by the leader's timers (which look
/// every `LEASE_CHECK_INTERVAL`) means the process was paused, and broker leases start afresh
/// (see `leases`). Well above the interval, so a busy runtime's late timers are not a pause;
/// short next to session timeouts, so a pause it misses ages a lease by little.
pub const LEASE_PAUSE_GAP: Duration = Duration::from_millis(500);
const _: () = assert!(LEASE_PAUSE_GAP.as_millis() >= 2 * LEASE_CHECK_INTERVAL.as_millis());
/// Bound on a connection attempt to another coordinator.
pub const PEER_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Bound on a request forwarded to the leader (a write waits for a quorum).
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// Size of one InstallSnapshot chunk (sent as a JSON array of numbers: up to ~4 bytes each).
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1024 * 1024;

const _: () = assert!(
    SNAPSHOT_CHUNK_BYTES as usize * 4 + 4096 < weir_model::limits::COORDINATOR_MESSAGE_BYTES_MAX
);

/// A coordinator's configuration. `Default` gives a single-voter quorum on `127.0.0.1` with an
/// ephemeral port and data in `./weir-coordinator-data`, as `weir dev` wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// This coordinator's Raft node id.
    pub id: NodeId,
    pub data_dir: PathBuf,
    /// Where the gRPC server listens, `HOST:PORT`; port 0 picks a free port.
    pub listen: String,
    /// The address other coordinators and brokers reach this one at; the listener's address
    /// when unset.
    pub advertised_addr: Option<String>,
    /// The initial voters, id → `HOST:PORT`, including this coordinator. Empty means a
    /// single-voter quorum of this coordinator at its advertised address.
    pub peers: BTreeMap<NodeId, String>,
    /// Do not bootstrap: this coordinator waits to be added with the Admin AddCoordinator RPC.
    pub join: bool,
    /// A broker whose last heartbeat is older than this is fenced.
    pub broker_session_timeout: Duration,
    /// How often brokers are told to heartbeat.
    pub broker_heartbeat_interval: Duration,
    /// A snapshot is written every this many log entries, and the log before it purged.
    pub snapshot_every: u64,
    /// Partitions of a topic created without a count.
    pub default_partitions: i32,
    /// Replication factor of a topic created without one.
    pub default_replication_factor: i32,
    /// How often the leader moves leadership back to preferred replicas.
    pub leader_rebalance_interval: Duration,
    /// Raft's heartbeat from the leader to the followers.
    pub raft_heartbeat_interval: Duration,
    /// A follower that hears no leader for a random time in `[min, max)` starts an election.
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            id: 1,
            data_dir: PathBuf::from("./weir-coordinator-data"),
            listen: "127.0.0.1:0".to_string(),
            advertised_addr: None,
            peers: BTreeMap::new(),
            join: false,
            broker_session_timeout: Duration::from_millis(6000),
            broker_heartbeat_interval: Duration::from_millis(1000),
            snapshot_every: 1000,
            default_partitions: 1,
            default_replication_factor: 1,
            leader_rebalance_interval: Duration::from_millis(10_000),
            raft_heartbeat_interval: Duration::from_millis(150),
            election_timeout_min: Duration::from_millis(1000),
            election_timeout_max: Duration::from_millis(2000),
        }
    }
}

/// A configuration refused, with what is allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("--peers entry {entry:?} is not ID=HOST:PORT (for example 1=10.0.0.1:9093)")]
    PeerSyntax { entry: String },
    #[error("--peers names coordinator {0} twice; each id may appear once")]
    DuplicatePeer(NodeId),
    #[error("--peers lists {0} voters; a quorum has 1, 3 or 5 voters")]
    VoterCount(usize),
    #[error(
        "--id {id} does not appear in --peers ({peers}); list every initial voter including this one, or pass --join to be added later"
    )]
    IdNotInPeers { id: NodeId, peers: String },
    #[error("{flag} {value:?} is not HOST:PORT with a port from 0 to 65535")]
    Address { flag: &'static str, value: String },
    #[error("{flag} is {value}; allowed: {allowed}")]
    OutOfRange {
        flag: &'static str,
        value: String,
        allowed: String,
    },
}

/// Parses `1=host:port,2=host:port,...`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, String>, ConfigError> {
    let mut peers = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let syntax = || ConfigError::PeerSyntax {
            entry: entry.to_string(),
        };
        let (id, addr) = entry.split_once('=').ok_or_else(syntax)?;
        let id: NodeId = id.trim().parse().map_err(|_| syntax())?;
        let addr = addr.trim();
        check_addr("--peers", addr)?;
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(ConfigError::DuplicatePeer(id));
        }
    }
    Ok(peers)
}

/// Checks `HOST:PORT` (a host name, an IPv4 address or a bracketed IPv6 address).
fn check_addr(flag: &'static str, value: &str) -> Result<(), ConfigError> {
    let bad = || ConfigError::Address {
        flag,
        value: value.to_string(),
    };
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(())
}

fn range_err(flag: &'static str, value: impl ToString, allowed: &str) -> ConfigError {
    ConfigError::OutOfRange {
        flag,
        value: value.to_string(),
        allowed: allowed.to_string(),
    }
}

impl CoordinatorConfig {
    /// Checks the configuration, saying what is allowed when it is refused.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_peers()?;
        self.validate_broker_sessions()?;
        self.validate_metadata_defaults()?;
        self.validate_raft_timing()
    }

    /// The addresses, and the voters of a new quorum.
    fn validate_peers(&self) -> Result<(), ConfigError> {
        check_addr("--listen", &self.listen)?;
        if let Some(a) = &self.advertised_addr {
            check_addr("--advertised-addr", a)?;
        }
        for addr in self.peers.values() {
            check_addr("--peers", addr)?;
        }
        if !self.join {
            if !self.peers.is_empty() && !VOTERS_ALLOWED.contains(&self.peers.len()) {
                return Err(ConfigError::VoterCount(self.peers.len()));
            }
            if !self.peers.is_empty() && !self.peers.contains_key(&self.id) {
                return Err(ConfigError::IdNotInPeers {
                    id: self.id,
                    peers: self
                        .peers
                        .iter()
                        .map(|(id, a)| format!("{id}={a}"))
                        .collect::<Vec<_>>()
                        .join(","),
                });
            }
        }
        Ok(())
    }

    /// Broker leases: the heartbeat comes well within the session.
    fn validate_broker_sessions(&self) -> Result<(), ConfigError> {
        let ms = |d: Duration| d.as_millis();
        if self.broker_session_timeout.is_zero() {
            return Err(range_err(
                "--broker-session-timeout-ms",
                ms(self.broker_session_timeout),
                "a positive number of milliseconds",
            ));
        }
        if self.broker_heartbeat_interval.is_zero()
            || self.broker_heartbeat_interval >= self.broker_session_timeout
        {
            return Err(range_err(
                "--heartbeat-interval-ms",
                ms(self.broker_heartbeat_interval),
                &format!(
                    "from 1 to less than --broker-session-timeout-ms ({})",
                    ms(self.broker_session_timeout)
                ),
            ));
        }
        if self.broker_session_timeout.as_millis() > i32::MAX as u128 {
            return Err(range_err(
                "--broker-session-timeout-ms",
                ms(self.broker_session_timeout),
                &format!("at most {}", i32::MAX),
            ));
        }
        Ok(())
    }

    /// Snapshots and the defaults of new topics.
    fn validate_metadata_defaults(&self) -> Result<(), ConfigError> {
        if self.snapshot_every == 0 {
            return Err(range_err("--snapshot-every", 0, "at least 1 log entry"));
        }
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&self.default_partitions) {
            return Err(range_err(
                "--default-partitions",
                self.default_partitions,
                &format!("from 1 to {PARTITIONS_PER_TOPIC_MAX}"),
            ));
        }
        if !(1..=i16::MAX as i32).contains(&self.default_replication_factor) {
            return Err(range_err(
                "--default-replication-factor",
                self.default_replication_factor,
                &format!("from 1 to {}", i16::MAX),
            ));
        }
        Ok(())
    }

    /// Raft's heartbeat comes well within the election timeout, whose range is not empty.
    fn validate_raft_timing(&self) -> Result<(), ConfigError> {
        let ms = |d: Duration| d.as_millis();
        if self.leader_rebalance_interval.is_zero() {
            return Err(range_err(
                "--leader-rebalance-interval-ms",
                0,
                "a positive number of milliseconds",
            ));
        }
        if self.raft_heartbeat_interval.is_zero()
            || self.raft_heartbeat_interval >= self.election_timeout_min
        {
            return Err(range_err(
                "--raft-heartbeat-interval-ms",
                ms(self.raft_heartbeat_interval),
                &format!(
                    "from 1 to less than --election-timeout-min-ms ({})",
                    ms(self.election_timeout_min)
                ),
            ));
        }
        if self.election_timeout_max <= self.election_timeout_min {
            return Err(range_err(
                "--election-timeout-max-ms",
                ms(self.election_timeout_max),
                &format!(
                    "more than --election-timeout-min-ms ({})",
                    ms(self.election_timeout_min)
                ),
            ));
        }
        Ok(())
    }

    /// openraft's configuration from ours.
    pub(crate) fn raft_config(&self) -> openraft::Config {
        openraft::Config {
            cluster_name: "weir".to_string(),
            heartbeat_interval: self.raft_heartbeat_interval.as_millis() as u64,
            election_timeout_min: self.election_timeout_min.as_millis() as u64,
            election_timeout_max: self.election_timeout_max.as_millis() as u64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            // Purge everything a snapshot covers; a follower that far behind gets the snapshot.
            max_in_snapshot_log_to_keep: 0,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
            install_snapshot_timeout: 2000,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> CoordinatorConfig {
        CoordinatorConfig {
            id: 2,
            peers: parse_peers("1=a:1,2=b:2,3=c:3").unwrap(),
            ..CoordinatorConfig::default()
        }
    }

    #[test]
    fn default_is_valid() {
        assert_eq!(CoordinatorConfig::default().validate(), Ok(()));
        assert_eq!(three().validate(), Ok(()));
        assert!(three().raft_config().validate().is_ok());
    }

    #[test]
    fn peers_syntax_is_checked() {
        assert_eq!(
            parse_peers(" 1=h:1 , 2=[::1]:9093")
                .unwrap()
                .get(&2)
                .map(String::as_str),
            Some("[::1]:9093")
        );
        assert!(matches!(
            parse_peers("1:h:1"),
            Err(ConfigError::PeerSyntax { .. })
        ));
        assert!(matches!(
            parse_peers("x=h:1"),
            Err(ConfigError::PeerSyntax { .. })
        ));
        assert!(matches!(
            parse_peers("1=h"),
            Err(ConfigError::Address { .. })
        ));
        assert!(matches!(
            parse_peers("1=h:99999"),
            Err(ConfigError::Address { .. })
        ));
        assert_eq!(
            parse_peers("1=h:1,1=g:2"),
            Err(ConfigError::DuplicatePeer(1))
        );
    }

    #[test]
    fn id_must_be_a_peer_unless_joining() {
        let mut c = three();
        c.id = 4;
        let e = c.validate().unwrap_err();
        assert!(matches!(e, ConfigError::IdNotInPeers { id: 4, .. }));
        assert!(e.to_string().contains("--join"), "{e}");
        c.join = true;
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn quorum_sizes_are_odd_up_to_five() {
        let mut c = three();
        c.peers = parse_peers("1=a:1,2=b:2").unwrap();
        assert_eq!(c.validate(), Err(ConfigError::VoterCount(2)));
    }

    #[test]
    fn ranges_say_what_is_allowed() {
        let c = CoordinatorConfig {
            broker_heartbeat_interval: Duration::from_secs(10),
            ..CoordinatorConfig::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("less than --broker-session-timeout-ms"), "{e}");
        let c = CoordinatorConfig {
            election_timeout_max: Duration::from_millis(500),
            ..CoordinatorConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("more than"));
        let c = CoordinatorConfig {
            default_partitions: 0,
            ..CoordinatorConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("from 1 to"));
    }
}
