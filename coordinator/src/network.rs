//! Raft between coordinators over gRPC: the client half ([`Network`], one per peer) and the
//! channels it shares with request forwarding ([`PeerChannels`]).
//!
//! Each message is openraft's own request type as JSON in `RaftMessage.json`; the answer is a
//! JSON `Result<response, RaftError>` so a refusal by the remote Raft (not a transport error)
//! reaches openraft as a `RemoteError`, as it expects. See `types` for why JSON.

use crate::config::PEER_CONNECT_TIMEOUT;
use crate::peer_input::{PeerAnswer, Refused};
use crate::types::{NodeId, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use weir_model::limits::COORDINATOR_MESSAGE_BYTES_MAX;
use weir_proto::v1::RaftMessage;
use weir_proto::v1::raft_client::RaftClient;

/// One lazily connected gRPC channel per peer address, shared by Raft and forwarding.
/// A channel reconnects by itself after a peer restarts.
#[derive(Clone, Debug, Default)]
pub struct PeerChannels {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl PeerChannels {
    /// A Raft-service client for the coordinator at `addr` (`HOST:PORT`).
    pub fn client(&self, addr: &str) -> Result<RaftClient<Channel>, tonic::transport::Error> {
        let channel = {
            let mut channels = match self.channels.lock() {
                Ok(c) => c,
                Err(p) => p.into_inner(),
            };
            match channels.get(addr) {
                Some(c) => c.clone(),
                None => {
                    let c = Endpoint::from_shared(format!("http://{addr}"))?
                        .connect_timeout(PEER_CONNECT_TIMEOUT)
                        .tcp_nodelay(true)
                        .connect_lazy();
                    channels.insert(addr.to_string(), c.clone());
                    c
                }
            }
        };
        Ok(RaftClient::new(channel)
            .max_decoding_message_size(COORDINATOR_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(COORDINATOR_MESSAGE_BYTES_MAX))
    }
}

/// Why one call to a peer failed at the transport.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("invalid peer address {addr}: {source}")]
    Address {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("gRPC call to {addr}: {source}")]
    Status {
        addr: String,
        #[source]
        source: Box<tonic::Status>,
    },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("encoding a message for {addr}: {source}")]
    Encode {
        addr: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("refused the answer from {addr}: {source}")]
    Refused {
        addr: String,
        #[source]
        source: Refused,
    },
    #[error("decoding the answer from {addr}: {source}")]
    Decode {
        addr: String,
        #[source]
        source: serde_json::Error,
    },
}

impl TransportError {
    /// Whether the peer could not be reached at all (openraft backs off from such peers).
    fn unreachable(&self) -> bool {
        match self {
            TransportError::Status { source, .. } => source.code() == tonic::Code::Unavailable,
            TransportError::Address { .. } | TransportError::Timeout { .. } => true,
            _ => false,
        }
    }
}

/// Which RPC of the Raft service to call.
#[derive(Clone, Copy, Debug)]
pub enum RaftRpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
    Forward,
}

/// Sends `request` as JSON to `addr` and decodes the JSON answer, within `timeout`.
pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
    channels: &PeerChannels,
    addr: &str,
    rpc: RaftRpc,
    request: &Req,
    timeout: Duration,
) -> Result<Resp, TransportError> {
    let json = serde_json::to_vec(request).map_err(|source| TransportError::Encode {
        addr: addr.to_string(),
        source,
    })?;
    let mut client = channels
        .client(addr)
        .map_err(|source| TransportError::Address {
            addr: addr.to_string(),
            source,
        })?;
    let msg = RaftMessage { json };
    let fut = async move {
        match rpc {
            RaftRpc::AppendEntries => client.append_entries(msg).await,
            RaftRpc::Vote => client.vote(msg).await,
            RaftRpc::InstallSnapshot => client.install_snapshot(msg).await,
            RaftRpc::Forward => client.forward(msg).await,
        }
    };
    let response = match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(status)) => {
            return Err(TransportError::Status {
                addr: addr.to_string(),
                source: Box::new(status),
            });
        }
        Err(_) => {
            return Err(TransportError::Timeout {
                addr: addr.to_string(),
                timeout,
            });
        }
    };
    serde_json::from_slice(&response.json).map_err(|source| TransportError::Decode {
        addr: addr.to_string(),
        source,
    })
}

/// Creates a [`Network`] per peer.
#[derive(Clone, Debug)]
pub struct NetworkFactory {
    pub channels: PeerChannels,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        Network {
            target,
            addr: node.addr.clone(),
            channels: self.channels.clone(),
        }
    }
}

/// The connection to one peer.
#[derive(Debug)]
pub struct Network {
    target: NodeId,
    addr: String,
    channels: PeerChannels,
}

impl Network {
    async fn send<Req, Resp, E>(
        &self,
        rpc: RaftRpc,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned + PeerAnswer,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<Resp, RaftError<NodeId, E>> =
            call(&self.channels, &self.addr, rpc, request, option.hard_ttl())
                .await
                .map_err(|e| {
                    if e.unreachable() {
                        RPCError::Unreachable(Unreachable::new(&e))
                    } else {
                        RPCError::Network(NetworkError::new(&e))
                    }
                })?;
        // An absurd answer (a vote at term u64::MAX) must not reach openraft either: it is
        // treated as a failed call, which openraft retries.
        if let Err(source) = answer.check() {
            let e = TransportError::Refused {
                addr: self.addr.clone(),
                source,
            };
            tracing::warn!(error = %weir_model::Chain(&e), "refused a peer's Raft answer");
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Network {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.send(RaftRpc::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.send(RaftRpc::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.send(RaftRpc::Vote, &rpc, &option).await
    }
}
