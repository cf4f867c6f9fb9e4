//! The server side of the gRPC services: Raft traffic into the local openraft instance.

use gregor_proto::controller::v1::raft_server::Raft as RaftRpc;
use gregor_proto::controller::v1::{RaftReply, RaftRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use crate::cluster_id::ClusterId;
use crate::error::{ControllerError, to_status};
use crate::raft_types::Raft;

/// Serves `gregor.controller.v1.Raft` for one controller.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
    cluster_id: ClusterId,
}

impl std::fmt::Debug for RaftService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // openraft's handle is not Debug.
        f.debug_struct("RaftService")
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

impl RaftService {
    /// Serves `raft`, refusing peers of other clusters.
    pub fn new(raft: Raft, cluster_id: ClusterId) -> Self {
        Self { raft, cluster_id }
    }

    fn decode<T: DeserializeOwned>(&self, req: Request<RaftRequest>) -> Result<T, Status> {
        let req = req.into_inner();
        check_cluster(&self.cluster_id, &req.cluster_id)?;
        serde_json::from_slice(&req.payload)
            .map_err(|e| to_status(&ControllerError::Payload(e.to_string())))
    }
}

/// Refuses a caller that belongs to another cluster.
pub(crate) fn check_cluster(ours: &ClusterId, theirs: &str) -> Result<(), Status> {
    if ours.as_str() == theirs {
        Ok(())
    } else {
        Err(to_status(&ControllerError::ClusterIdMismatch {
            expected: ours.to_string(),
            found: theirs.to_owned(),
        }))
    }
}

fn reply<T: Serialize>(result: &T) -> Result<Response<RaftReply>, Status> {
    let payload = serde_json::to_vec(result)
        .map_err(|e| to_status(&ControllerError::Payload(e.to_string())))?;
    Ok(Response::new(RaftReply {
        payload: payload.into(),
    }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = self.decode(request)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc = self.decode(request)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = self.decode(request)?;
        reply(&self.raft.install_snapshot(rpc).await)
    }
}
