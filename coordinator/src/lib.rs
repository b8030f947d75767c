//! Weir's coordinator: the cluster's metadata quorum.
//!
//! One, three or five coordinators replicate [`weir_metadata::Command`]s with Raft (openraft)
//! and apply them to [`weir_metadata::MetadataState`]. Brokers register, heartbeat and watch
//! the metadata through the `BrokerControl` gRPC service; the CLI and the operator use
//! `Admin`; coordinators talk to each other through `Raft`.
//!
//! ```text
//!  broker ─gRPC─▶ BrokerControl ─┐                 ┌─▶ Raft.Forward ─▶ leader's Core
//!  CLI    ─gRPC─▶ Admin ─────────┼─▶ Core::write ──┤   (when this coordinator follows)
//!                                │                 └─▶ raft.client_write ─▶ log (redb, fsync)
//!                                │                                            │ commit
//!  Watch stream ◀── broadcast ◀──┴── state machine: MetadataState::apply ◀────┘
//!                                        │ every --snapshot-every entries
//!                                        ▼
//!                                   snapshot.json (log before it purged)
//! ```
//!
//! Modules:
//! - [`config`]: [`CoordinatorConfig`], its checks, and the limits.
//! - `types`: the Raft type configuration and the forwarded-request messages (JSON; see there
//!   why).
//! - `store`: the Raft log in redb and the in-memory state machine with its snapshot file.
//! - `network`: Raft over gRPC, and the shared channels to peers.
//! - `core`: what the services share: where a request runs (forwarding to the leader),
//!   heartbeats, quorum changes, the leader's periodic duties.
//! - `leases`: broker leases (leader only), pure.
//! - `peer_input`: the bounds every Raft message from a peer (and the stored vote) is held
//!   to before openraft sees it.
//! - `convert`: metadata records to protobuf messages.
//! - `service`: the three gRPC services.
//! - [`error`]: [`CoordinatorError`], and the exit on a broken disk.

pub mod config;
mod convert;
mod core;
pub mod error;
mod leases;
mod network;
mod peer_input;
mod service;
mod store;
mod types;

pub use config::{CoordinatorConfig, parse_peers};
pub use error::CoordinatorError;
pub use peer_input::Refused;
pub use types::NodeId;

use crate::core::Core;
use crate::network::{NetworkFactory, PeerChannels};
use crate::store::log::LogStore;
use crate::store::state_machine::StateMachineStore;
use openraft::error::{InitializeError, RaftError};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tracing::{info, warn};
use weir_proto::v1::admin_server::AdminServer;
use weir_proto::v1::broker_control_server::BrokerControlServer;
use weir_proto::v1::raft_server::RaftServer;

/// How long shutdown waits for in-flight gRPC requests before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running coordinator.
#[derive(Debug)]
pub struct CoordinatorHandle {
    core: Arc<Core>,
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    duties: JoinHandle<()>,
}

impl CoordinatorHandle {
    /// The address the gRPC server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This coordinator's id.
    pub fn id(&self) -> NodeId {
        self.core.id
    }

    /// Whether this coordinator is the Raft leader now.
    pub fn is_leader(&self) -> bool {
        self.core.is_leader()
    }

    /// The Raft leader this coordinator knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.core.leader()
    }

    /// Stops serving, stops Raft, and waits (a bounded time) for in-flight requests.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.duties.abort();
        if let Err(e) = self.core.raft.shutdown().await {
            warn!(error = %weir_model::Chain(&e), "Raft did not stop cleanly");
        }
        let mut server = self.server;
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                warn!(error = %weir_model::Chain(&e), "gRPC server stopped with an error")
            }
            Ok(Err(e)) => warn!(error = %weir_model::Chain(&e), "gRPC server task failed"),
            Err(_) => {
                warn!("in-flight gRPC requests did not finish in time; dropping them");
                server.abort();
            }
        }
        info!(id = self.core.id, "coordinator stopped");
    }
}

/// Starts a coordinator: binds `config.listen`, then as [`start_with_listener`].
pub async fn start(config: CoordinatorConfig) -> Result<CoordinatorHandle, CoordinatorError> {
    config.validate()?;
    let listener =
        TcpListener::bind(&config.listen)
            .await
            .map_err(|source| CoordinatorError::Bind {
                addr: config.listen.clone(),
                source,
            })?;
    start_with_listener(config, listener).await
}

/// Starts a coordinator on an already bound listener (`config.listen` is then ignored): opens
/// the data directory (recovering from the snapshot and the log), starts Raft and the gRPC
/// server, and on a fresh data directory bootstraps the initial voters unless `join` is set.
pub async fn start_with_listener(
    config: CoordinatorConfig,
    listener: TcpListener,
) -> Result<CoordinatorHandle, CoordinatorError> {
    config.validate()?;
    let id = config.id;
    let local_addr = listener
        .local_addr()
        .map_err(|source| CoordinatorError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
    let advertised = config
        .advertised_addr
        .clone()
        .unwrap_or_else(|| local_addr.to_string());
    std::fs::create_dir_all(&config.data_dir).map_err(|source| CoordinatorError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;

    let mut log_store = LogStore::open(&config.data_dir)?;
    check_stored_state(&mut log_store, &config).await?;
    let state_machine =
        StateMachineStore::open(&config.data_dir).map_err(|source| CoordinatorError::Snapshot {
            path: config.data_dir.clone(),
            source,
        })?;
    let data = state_machine.shared();
    let applied_tx = state_machine.applied_sender();
    let channels = PeerChannels::default();
    let raft_config = config
        .raft_config()
        .validate()
        .map_err(|e| CoordinatorError::Raft(e.to_string()))?;
    let raft = openraft::Raft::new(
        id,
        Arc::new(raft_config),
        NetworkFactory {
            channels: channels.clone(),
        },
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| CoordinatorError::Raft(e.to_string()))?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let core = Arc::new(Core::new(
        id,
        raft.clone(),
        config.clone(),
        data,
        applied_tx,
        channels,
        shutdown_rx.clone(),
    ));

    let server = serve(&core, listener, shutdown_rx);

    if let Err(e) = bootstrap(&config, &raft, &advertised).await {
        // Leave nothing running behind a failed start.
        let _ = shutdown_tx.send(true);
        let _ = raft.shutdown().await;
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, server).await;
        return Err(e);
    }
    let duties = tokio::spawn(core.clone().run_leader_duties());
    info!(id, addr = %local_addr, advertised = %advertised, "coordinator listening");
    Ok(CoordinatorHandle {
        core,
        local_addr,
        shutdown: shutdown_tx,
        server,
        duties,
    })
}

/// Refuses to start from a store whose vote or log is past the Raft ceilings (written by a
/// forged message before they were enforced): openraft would panic at the first election, and
/// again after every restart. See `peer_input::stored`.
async fn check_stored_state(
    store: &mut LogStore,
    config: &CoordinatorConfig,
) -> Result<(), CoordinatorError> {
    use openraft::storage::RaftLogStorage;
    let unreadable = |e: types::StorageError| CoordinatorError::Raft(e.to_string());
    let vote = store.read_vote().await.map_err(unreadable)?;
    let last = store.get_log_state().await.map_err(unreadable)?.last_log_id;
    peer_input::stored(vote.as_ref(), last.as_ref()).map_err(|source| {
        CoordinatorError::UnsafeRaftState {
            path: config.data_dir.clone(),
            source,
        }
    })
}

/// Serves the three gRPC services on `listener` until `stop` turns true.
fn serve(
    core: &Arc<Core>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<Result<(), tonic::transport::Error>> {
    let max = weir_model::limits::COORDINATOR_MESSAGE_BYTES_MAX;
    let raft_service = RaftServer::new(service::raft::RaftService { core: core.clone() })
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let broker_service = BrokerControlServer::new(service::broker_control::BrokerControlService {
        core: core.clone(),
    })
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let admin_service = AdminServer::new(service::admin::AdminService { core: core.clone() })
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(raft_service)
            .add_service(broker_service)
            .add_service(admin_service)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.wait_for(|s| *s).await;
            }),
    )
}

/// On a fresh data directory, initialises the quorum with the initial voters (unless joining).
async fn bootstrap(
    config: &CoordinatorConfig,
    raft: &types::Raft,
    advertised: &str,
) -> Result<(), CoordinatorError> {
    let id = config.id;
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| CoordinatorError::Raft(e.to_string()))?;
    if initialized {
        return Ok(());
    }
    if config.join {
        info!(
            id,
            addr = %advertised,
            "waiting to be added to the quorum (Admin AddCoordinator id={id} addr={advertised})"
        );
        return Ok(());
    }
    let mut peers = config.peers.clone();
    if peers.is_empty() {
        peers.insert(id, advertised.to_string());
    }
    if let Some(listed) = peers.get(&id)
        && listed != advertised
    {
        warn!(
            id,
            listed = %listed,
            advertised = %advertised,
            "--peers gives this coordinator another address than the one it listens on or advertises"
        );
    }
    info!(id, voters = ?peers, "bootstrapping the quorum");
    match raft.initialize(core::voters(&peers)).await {
        Ok(()) => Ok(()),
        // Another voter initialised first and this one already heard from it.
        Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
            info!(reason = %e, "quorum already initialised");
            Ok(())
        }
        Err(e) => Err(CoordinatorError::Raft(e.to_string())),
    }
}

/// Runs a coordinator until `shutdown` completes, then stops it cleanly.
pub async fn run(
    config: CoordinatorConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CoordinatorError> {
    let handle = start(config).await?;
    shutdown.await;
    info!("shutting down");
    handle.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::storage::RaftLogStorage;

    /// A data directory whose stored vote is at term u64::MAX (written by a forged message
    /// before the edge refused it) is refused at start with a clear error, not a panic at the
    /// first election.
    #[tokio::test]
    async fn a_store_with_a_vote_past_the_ceiling_does_not_start() {
        let dir = tempfile::tempdir().unwrap();
        let config = CoordinatorConfig {
            data_dir: dir.path().to_path_buf(),
            ..CoordinatorConfig::default()
        };
        {
            let mut store = LogStore::open(dir.path()).unwrap();
            store
                .save_vote(&openraft::Vote::new_committed(u64::MAX, 2))
                .await
                .unwrap();
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let e = start_with_listener(config, listener).await.unwrap_err();
        assert!(
            matches!(
                e,
                CoordinatorError::UnsafeRaftState {
                    source: Refused::TermAboveCeiling { .. },
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("delete its data directory"), "{e}");
    }
}
