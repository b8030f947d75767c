//! Weir's broker: the Apache Kafka wire protocol over Weir's storage engine.
//!
//! ```text
//!  client ──TCP──▶ server (framing, limits, in-order responses)
//!                    │
//!                    ▼
//!                  api::dispatch ──▶ produce ──▶ PartitionLog::append ──▶ segment files
//!                    │           ──▶ fetch   ◀── PartitionLog::read (stored bytes, as sent)
//!                    │           ──▶ metadata, admin ──▶ MetadataStore (topics, configs)
//!                    ▼
//!                  state: topics ─▶ partitions ─▶ logs
//! ```
//!
//! Modules:
//! - [`config`]: what the binaries parse flags into.
//! - [`server`]: the listener, connection framing and limits.
//! - `api`: one module per family of Kafka APIs; wire types stop there.
//! - [`state`]: topics, partitions and their logs; producer ids.
//! - [`metadata_store`]: where topics are recorded (a local file now, the coordinator later).
//! - [`topic_config`]: topic config keys, validation, mapping to storage configs.
//! - [`error`]: errors, and the single mapping to Kafka error codes.

pub mod api;
pub mod config;
pub mod error;
pub mod metadata_store;
pub mod server;
pub mod sink;
pub mod state;
pub mod topic_config;

pub use config::BrokerConfig;
pub use error::BrokerError;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{info, warn};

/// A started broker: data opened and recovered, listener bound, not yet serving.
#[derive(Debug)]
pub struct Broker {
    state: Arc<BrokerState>,
    listener: TcpListener,
    local_addr: SocketAddr,
}

use state::BrokerState;

impl Broker {
    /// Opens the data directory (recovering every partition) and binds the Kafka listener.
    pub async fn start(config: BrokerConfig) -> Result<Broker, BrokerError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| BrokerError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let listener = TcpListener::bind(config.kafka_addr)
            .await
            .map_err(|source| BrokerError::Bind {
                addr: config.kafka_addr,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| BrokerError::Bind {
            addr: config.kafka_addr,
            source,
        })?;
        let (host, port) = match &config.advertised_kafka_addr {
            Some(a) => {
                split_host_port(a).unwrap_or((local_addr.ip().to_string(), local_addr.port()))
            }
            None => (local_addr.ip().to_string(), local_addr.port()),
        };
        let store = Arc::new(metadata_store::LocalMetadataStore::open(&config.data_dir)?);
        let state = tokio::task::block_in_place(|| {
            BrokerState::open(config, store, host, i32::from(port))
        })?;
        Ok(Broker {
            state: Arc::new(state),
            listener,
            local_addr,
        })
    }

    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The `host:port` clients are told to use.
    pub fn advertised_addr(&self) -> String {
        format!(
            "{}:{}",
            self.state.advertised_host, self.state.advertised_port
        )
    }

    /// Serves clients until `shutdown` completes, then flushes and closes every log.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), BrokerError> {
        let Broker {
            state,
            listener,
            local_addr,
        } = self;
        info!(addr = %local_addr, cluster_id = %state.cluster_id, "serving Kafka clients");
        let connections = Arc::new(Semaphore::new(state.config.connections_max));
        let mut tasks = tokio::task::JoinSet::new();
        let housekeeping = tokio::spawn(housekeeping(state.clone()));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // EMFILE and friends: keep serving the connections we have.
                            warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = connections.clone().try_acquire_owned() else {
                        warn!(peer = %peer, max = state.config.connections_max, "connection limit reached; closing");
                        drop(stream);
                        continue;
                    };
                    let state = state.clone();
                    tasks.spawn(async move {
                        server::serve_connection(state, stream).await;
                        drop(permit);
                    });
                }
                // Reap finished connection tasks so the set does not grow without bound.
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        info!("shutting down: closing connections and flushing logs");
        tasks.shutdown().await;
        housekeeping.abort();
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
            s.housekeeping(weir_model::Timestamp::now(), retention)
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
                        } if error::is_fatal(&source) => {
                            error::fatal(&format!("housekeeping {topic}-{partition}"), &source)
                        }
                        e => warn!(error = %e, "housekeeping"),
                    }
                }
            }
            Err(e) => warn!(error = %e, "housekeeping task"),
        }
    }
}

fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    Some((
        host.trim_matches(|c| c == '[' || c == ']').to_string(),
        port.parse().ok()?,
    ))
}
