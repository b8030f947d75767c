//! The coordinator's errors, and the one place a broken environment stops the process.

use std::path::PathBuf;

/// Why a coordinator could not start (or stopped).
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Raft log store: {0}")]
    LogStore(#[from] crate::store::log::OpenError),
    #[error("snapshot in {path}: {source}")]
    Snapshot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("binding the gRPC listener on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the Raft state in {path} is unsafe to start from: {source}. It was written from a forged \
         message before such messages were refused. Remove this coordinator from the quorum \
         (Admin RemoveCoordinator), delete its data directory and add it again"
    )]
    UnsafeRaftState {
        path: PathBuf,
        #[source]
        source: crate::peer_input::Refused,
    },
    #[error("starting Raft: {0}")]
    Raft(String),
}
