//! Weir's broker: the Apache Kafka wire protocol over Weir's storage engine.
//!
//! ```text
//!  client ──TCP──▶ server (limits, in-order responses) ◀── frame (size prefix, header)
//!                    │
//!                    ▼
//!                  api::dispatch ──▶ produce ──▶ partition: append as leader, acks=all wait
//!                    │           ──▶ fetch   ◀── PartitionLog::read, up to the high watermark
//!                    │           ──▶ groups  ──▶ groups (coordinator runtime) ──▶ partition
//!                    │           ──▶ metadata ◀── cluster view;  admin ──▶ coordinators (gRPC)
//!                    ▼
//!                  state: hosted partitions ─▶ partition: log + replica role (leader / follower)
//!
//!  coordinators ──watch──▶ session ──▶ state.apply_update (open logs, set roles)
//!  followers ──gRPC Fetch──▶ replication (leader side); fetchers (follower side)
//! ```
//!
//! The modules, lowest first; each uses only modules above it in this list (no import
//! circles: `scripts/check-structure.py` checks it):
//! - [`sasl`]: SASL settings and a connection's authentication state (the exchanges are the
//!   pure `weir_auth`).
//! - [`config`], [`cli`]: what the binaries parse flags into; the `weir-broker` binary's flags.
//! - [`frame`]: Kafka's request framing, shared with `weir bench sink`.
//! - [`cluster`]: the cluster view from the coordinators' watch stream (the shared
//!   `weir_coordinator_client::view`, which the operator reads too) and readiness.
//! - [`topic_config`]: topic config keys, validation, mapping to storage configs.
//! - [`log_dir`]: the log directory's health (a failed write takes it offline).
//! - [`partition`]: one hosted partition: its log and its replica (the pure
//!   `weir_replication::replica::Replica`); append as leader and the acks=all wait, with their
//!   domain errors.
//! - [`error`]: errors, and the mapping of storage and partition errors to Kafka error codes.
//! - [`data_dir`]: the data directory's identity files.
//! - [`state`]: the hosted partitions, reconciled from metadata; roles taken as
//!   `Replica::on_metadata` decides; producer ids; the broker's clock (`weir_model::Clock`:
//!   every wall and monotonic time the broker reads comes from it, a manual one in tests).
//! - [`session`]: registration, heartbeats, the metadata watch, ISR proposals (decided and
//!   settled by `Replica`, sent here), controlled shutdown, and the reaction to a failed log
//!   directory.
//! - [`replication`]: the leader's Replication service and the followers' fetchers (executing
//!   `weir_replication::follower`'s decisions).
//! - [`log_cleaner`]: compaction, on a thread of its own.
//! - [`groups`]: the group coordinator's runtime, writing through [`partition`].
//! - [`services`]: what connections are served from: the partitions and the group coordinator.
//! - [`metrics`]: `/metrics`, `/livez`, `/readyz`.
//! - `api`: one module per family of Kafka APIs; wire types stop there. Only [`server`]
//!   uses it.
//! - [`server`]: the listener, connections and their limits.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod data_dir;
pub mod error;
pub mod frame;
pub mod groups;
pub mod listener;
pub mod log_cleaner;
pub mod log_dir;
pub mod metrics;
pub mod partition;
pub mod replication;
pub mod sasl;
pub mod server;
pub mod services;
pub mod session;
pub mod state;
pub mod tls;
pub mod topic_config;

pub use config::BrokerConfig;
pub use error::BrokerError;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use weir_model::limits;

/// A started broker: registered with the coordinators, following their metadata, replication
/// listener up; Kafka listener bound but not yet serving.
#[derive(Debug)]
pub struct Broker {
    state: Arc<BrokerState>,
    groups: Arc<groups::Coordinator>,
    /// The Kafka listeners, in the configured order.
    listeners: Vec<server::Bound>,
    internal_addr: SocketAddr,
    background: Vec<JoinHandle<()>>,
}

use state::BrokerState;

impl Broker {
    /// Binds both listeners, registers with the coordinators and waits for the first metadata
    /// update (so the broker never answers Metadata with an empty cluster).
    pub async fn start(config: BrokerConfig) -> Result<Broker, BrokerError> {
        Broker::start_with_clock(config, Arc::new(weir_model::SystemClock::new())).await
    }

    /// [`Broker::start`] on the given clock (a test's manual one).
    pub async fn start_with_clock(
        config: BrokerConfig,
        clock: Arc<dyn weir_model::Clock>,
    ) -> Result<Broker, BrokerError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| BrokerError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let Listeners {
            kafka: listeners,
            internal,
            internal_addr,
            metrics,
        } = Listeners::bind(&config, clock.mono_ms()).await?;
        let endpoints = listeners
            .iter()
            .map(|l| (l.name.clone(), l.advertised.clone()))
            .collect();
        let internal_advertised = config
            .advertised_internal_addr
            .clone()
            .unwrap_or_else(|| internal_addr.to_string());
        let control = Arc::new(weir_coordinator_client::ControlClient::new(
            &config.coordinators,
        )?);
        let advertised = (endpoints, internal_advertised);
        let state = Arc::new(tokio::task::block_in_place(|| {
            BrokerState::open(config, control, clock, advertised)
        })?);
        let groups = Arc::new(groups::Coordinator::new(
            state.config.groups.clone(),
            state.clock.clone(),
        ));
        // Replication server first: followers may fetch as soon as metadata names us leader.
        let mut background = vec![serve_replication(state.clone(), internal)];
        let incarnation = state
            .incarnation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let every = session::register(&state, &incarnation).await?;
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        background.push(tokio::spawn(session::watch_loop(state.clone(), first_tx)));
        background.push(tokio::spawn(session::heartbeat_loop(state.clone(), every)));
        background.push(tokio::spawn(session::log_dir_loop(state.clone())));
        background.push(tokio::spawn(session::isr_loop(state.clone())));
        background.push(tokio::spawn(replication::run_fetchers(state.clone())));
        background.push(tokio::spawn(groups::run(state.clone(), groups.clone())));
        if let Some(listener) = metrics {
            if let Ok(addr) = listener.local_addr() {
                info!(addr = %addr, "serving Prometheus metrics at /metrics");
            }
            let svc = services::Services {
                state: state.clone(),
                groups: groups.clone(),
            };
            background.push(tokio::spawn(metrics::serve(svc, listener)));
        }
        // The watch loop only ends with the process, so the sender is never dropped unsent.
        let _ = first_rx.await;
        wait_until_unfenced(&state).await;
        session::create_scram_users(&state).await?;
        info!(
            broker = state.me.get(),
            internal = %internal_addr,
            "following cluster metadata"
        );
        Ok(Broker {
            state,
            groups,
            listeners,
            internal_addr,
            background,
        })
    }

    /// The address the Kafka listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listeners[0].local_addr
    }

    /// The address the replication listener is bound to.
    pub fn internal_addr(&self) -> SocketAddr {
        self.internal_addr
    }

    /// The `host:port` clients of the first listener are told to use.
    pub fn advertised_addr(&self) -> String {
        self.state.endpoints[0].1.clone()
    }

    /// The address listener `name` is bound to.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.local_addr)
    }

    /// Serves clients until `shutdown` completes; then hands leaderships over (controlled
    /// shutdown), closes connections and flushes and closes every log.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), BrokerError> {
        let Broker {
            state,
            groups,
            listeners,
            background,
            ..
        } = self;
        for l in &listeners {
            info!(listener = %l.name, protocol = l.protocol.name(), addr = %l.local_addr, advertised = %l.advertised, cluster_id = %state.cluster_id(), "serving Kafka clients");
        }
        let connections = Arc::new(Semaphore::new(state.config.connections_max));
        let mut tasks = tokio::task::JoinSet::new();
        let housekeeping = tokio::spawn(housekeeping(state.clone()));
        let log_cleaner = log_cleaner::LogCleaner::start(state.clone());
        let (accepted_tx, mut accepted) = tokio::sync::mpsc::channel(64);
        let acceptors: Vec<JoinHandle<()>> = listeners
            .into_iter()
            .map(|l| tokio::spawn(server::accept(l, accepted_tx.clone())))
            .collect();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(server::Accepted { stream, peer, listener }) = accepted.recv() => {
                    let Ok(permit) = connections.clone().try_acquire_owned() else {
                        warn!(peer = %peer, max = state.config.connections_max, "connection limit reached; closing");
                        drop(stream);
                        continue;
                    };
                    let svc = services::Services { state: state.clone(), groups: groups.clone() };
                    tasks.spawn(async move {
                        server::serve_connection(svc, stream, listener).await;
                        drop(permit);
                    });
                }
                // Reap finished connection tasks so the set does not grow without bound.
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        // Connections stay up while leaderships move, so clients in flight get
        // NOT_LEADER_OR_FOLLOWER and move on instead of a closed socket.
        info!("shutting down: moving leaderships to in-sync followers");
        session::controlled_shutdown(&state).await;
        info!("closing connections and flushing logs");
        for a in acceptors {
            a.abort();
        }
        tasks.shutdown().await;
        housekeeping.abort();
        // The cleaner abandons a round in progress and stops before the logs close.
        if let Some(c) = log_cleaner {
            tokio::task::block_in_place(|| c.stop());
        }
        for task in background {
            task.abort();
        }
        tokio::task::block_in_place(|| state.close())?;
        Ok(())
    }
}

/// Runs `Broker::start` then `serve` until `shutdown`.
pub async fn run(
    config: BrokerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BrokerError> {
    Broker::start(config).await?.serve(shutdown).await
}

async fn housekeeping(state: Arc<BrokerState>) {
    let every = Duration::from_millis(state.config.flush_check_interval_ms.max(1));
    let retention_every = Duration::from_millis(state.config.retention_check_interval_ms.max(1));
    // The first pass comes one period after start, not at once (a tokio interval's first tick
    // is immediate), so retention never races a test or a restart.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_retention = tokio::time::Instant::now() + retention_every;
    loop {
        tick.tick().await;
        let retention = tokio::time::Instant::now() >= next_retention;
        if retention {
            next_retention = tokio::time::Instant::now() + retention_every;
        }
        let s = state.clone();
        let r = tokio::task::spawn_blocking(move || {
            let now = s.clock.wall();
            s.housekeeping(now, retention)
        })
        .await;
        match r {
            Ok(errors) => {
                for e in errors {
                    match e {
                        BrokerError::Storage {
                            source,
                            topic,
                            partition,
                        } if error::is_fatal(&source) => weir_process::fatal(
                            &format!("housekeeping {topic}-{partition}"),
                            &source,
                        ),
                        e => warn!(error = %weir_model::Chain(&e), "housekeeping"),
                    }
                }
            }
            Err(e) => warn!(error = %weir_model::Chain(&e), "housekeeping task"),
        }
    }
}

/// The listeners, bound before anything else so that a port in use fails the start at once.
struct Listeners {
    kafka: Vec<server::Bound>,
    internal: TcpListener,
    internal_addr: SocketAddr,
    metrics: Option<TcpListener>,
}

impl Listeners {
    async fn bind(config: &BrokerConfig, mono_ms: u64) -> Result<Listeners, BrokerError> {
        // The first listener is the address the cluster knows the broker by.
        if config.listeners.is_empty() {
            return Err(BrokerError::NoListener);
        }
        let tls = match &config.tls {
            Some(files) if config.listeners.iter().any(|l| l.protocol.tls()) => {
                Some(Arc::new(tls::TlsReloader::load(files.clone(), mono_ms)?))
            }
            _ => None,
        };
        let mut kafka = Vec::with_capacity(config.listeners.len());
        for l in &config.listeners {
            kafka.push(server::Bound::bind(l, tls.clone()).await?);
        }
        let internal_err = |source| BrokerError::BindInternal {
            addr: config.internal_addr,
            source,
        };
        let internal = TcpListener::bind(config.internal_addr)
            .await
            .map_err(internal_err)?;
        let internal_addr = internal.local_addr().map_err(internal_err)?;
        let metrics = match config.metrics_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| BrokerError::BindMetrics { addr, source })?,
            ),
            None => None,
        };
        Ok(Listeners {
            kafka,
            internal,
            internal_addr,
            metrics,
        })
    }
}

/// Serves the Replication gRPC service (the leader's side) on `internal`.
fn serve_replication(state: Arc<BrokerState>, internal: TcpListener) -> JoinHandle<()> {
    let service = replication::ReplicationService { state };
    tokio::spawn(async move {
        // No Nagle: a follower's fetch and the leader's answer are small writes, and a
        // delayed ACK would hold each for ~40 ms, making followers trail the ISR.
        let incoming =
            tonic::transport::server::TcpIncoming::from(internal).with_nodelay(Some(true));
        let result = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(
                weir_proto::v1::replication_server::ReplicationServer::new(service)
                    .max_decoding_message_size(limits::REPLICATION_MESSAGE_BYTES_MAX)
                    .max_encoding_message_size(limits::REPLICATION_MESSAGE_BYTES_MAX),
            )
            .serve_with_incoming(incoming)
            .await;
        if let Err(e) = result {
            tracing::error!(error = %weir_model::Chain(&e), "replication server stopped");
        }
    })
}

/// Returns once the coordinators count this broker live: before that, it is in no ISR and
/// leads nothing, and a topic created now could not be placed on it.
async fn wait_until_unfenced(state: &BrokerState) {
    while !state
        .wait_for_view(Duration::from_secs(10), |v| {
            v.brokers.get(&state.me).is_some_and(|b| !b.fenced)
        })
        .await
    {
        info!(
            broker = state.me.get(),
            "waiting for the coordinators to unfence this broker"
        );
    }
}
