//! The `weir.v1.Raft` service: openraft's RPCs and forwarded requests, JSON in and out.
//! Every Raft request passes `peer_input`'s checks first; a refused one gets `InvalidArgument`.

use crate::core::Core;
use crate::peer_input::{self, Refused};
use crate::types::{ForwardRequest, TypeConfig};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use tonic::{Request, Response, Status};
use tracing::warn;
use weir_proto::v1::RaftMessage;
use weir_proto::v1::raft_server::Raft;

#[derive(Debug)]
pub struct RaftService {
    pub core: Arc<Core>,
}

fn decode<T: DeserializeOwned>(request: Request<RaftMessage>) -> Result<T, Status> {
    serde_json::from_slice(&request.into_inner().json)
        .map_err(|e| Status::invalid_argument(format!("undecodable Raft message: {e}")))
}

/// A peer's message that failed [`peer_input`]'s checks: refused before openraft sees it.
fn refuse(rpc: &'static str, e: Refused) -> Status {
    warn!(rpc, reason = %e, "refused a Raft message");
    Status::invalid_argument(format!("{rpc} refused: {e}"))
}

fn encode<T: Serialize>(value: &T) -> Result<Response<RaftMessage>, Status> {
    let json = serde_json::to_vec(value)
        .map_err(|e| Status::internal(format!("encoding a Raft answer: {e}")))?;
    Ok(Response::new(RaftMessage { json }))
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let req: AppendEntriesRequest<TypeConfig> = decode(request)?;
        peer_input::append_entries(&req, &self.core.receiver())
            .map_err(|e| refuse("AppendEntries", e))?;
        encode(&self.core.raft.append_entries(req).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let req: VoteRequest<u64> = decode(request)?;
        peer_input::vote(&req, &self.core.receiver()).map_err(|e| refuse("Vote", e))?;
        encode(&self.core.raft.vote(req).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let req: InstallSnapshotRequest<TypeConfig> = decode(request)?;
        peer_input::install_snapshot(&req, &self.core.receiver())
            .map_err(|e| refuse("InstallSnapshot", e))?;
        encode(&self.core.raft.install_snapshot(req).await)
    }

    async fn forward(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let req: ForwardRequest = decode(request)?;
        encode(&self.core.handle_forwarded(req).await)
    }
}
