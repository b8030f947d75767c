//! The `weir.v1.Raft` service: openraft's RPCs and forwarded requests, JSON in and out.

use crate::core::Core;
use crate::types::{ForwardRequest, TypeConfig};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use tonic::{Request, Response, Status};
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
        encode(&self.core.raft.append_entries(req).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let req: VoteRequest<u64> = decode(request)?;
        encode(&self.core.raft.vote(req).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let req: InstallSnapshotRequest<TypeConfig> = decode(request)?;
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
