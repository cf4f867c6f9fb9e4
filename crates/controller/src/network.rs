//! The client side of Raft traffic: openraft's `RaftNetwork` over the gRPC `Raft` service.
//!
//! openraft messages travel as JSON inside `RaftRequest.payload`, stamped with our cluster id;
//! the reply carries openraft's own `Result`, so a Raft-level refusal (higher vote, conflict)
//! reaches openraft as a `RemoteError` and a transport failure as `Unreachable`, which makes
//! openraft back off instead of spinning.
//!
//! Every call also updates [`PeerHealth`]: which peers refuse connections right now (nothing
//! listening: the process is gone). The leader's planner uses it to fence the broker of a
//! combined node whose controller is gone without waiting out a whole session.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gregor_proto::controller::v1::RaftRequest;
use gregor_proto::controller::v1::raft_client::RaftClient;
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};

use crate::cluster_id::ClusterId;
use crate::raft_types::{NodeId, TypeConfig};

type RpcError<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

/// How long openraft waits before calling an unreachable peer again (its default is 500 ms).
/// Shorter than the election timeout's minimum, so that a restarted voter hears from the
/// leader before its own election timer fires; otherwise it campaigns and deposes a healthy
/// leader (openraft 0.9 has no pre-vote).
pub const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(100);

/// Which peers refused a connection at their last call, and since when (shared by all
/// connections of one controller).
#[derive(Debug, Clone, Default)]
pub struct PeerHealth {
    unreachable: Arc<Mutex<BTreeMap<NodeId, tokio::time::Instant>>>,
}

impl PeerHealth {
    /// Peers whose last call failed to connect, with the start of their failure streak.
    pub fn unreachable(&self) -> BTreeMap<NodeId, tokio::time::Instant> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, tokio::time::Instant>> {
        self.unreachable.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn answered(&self, peer: NodeId) {
        self.lock().remove(&peer);
    }

    fn refused(&self, peer: NodeId) {
        self.lock()
            .entry(peer)
            .or_insert_with(tokio::time::Instant::now);
    }
}

/// Creates one gRPC connection per peer.
#[derive(Debug, Clone)]
pub struct GrpcNetwork {
    cluster_id: ClusterId,
    health: PeerHealth,
}

impl GrpcNetwork {
    /// Peers are called with `cluster_id`; a peer of another cluster refuses. Call outcomes
    /// go to `health`.
    pub fn new(cluster_id: ClusterId, health: PeerHealth) -> Self {
        Self { cluster_id, health }
    }
}

/// The connection to one peer.
#[derive(Debug)]
pub struct GrpcPeer {
    target: NodeId,
    cluster_id: ClusterId,
    health: PeerHealth,
    /// `Err` when the peer's address is not a valid URI: every call then fails as unreachable.
    client: Result<RaftClient<Channel>, String>,
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = GrpcPeer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> GrpcPeer {
        let client = Endpoint::from_shared(format!("http://{}", node.addr))
            .map(|e| {
                // Lazy: a peer that is down now is retried by openraft's backoff, not here.
                let ch = e.connect_timeout(Duration::from_millis(500)).connect_lazy();
                RaftClient::new(ch)
            })
            .map_err(|e| format!("invalid peer address {:?}: {e}", node.addr));
        GrpcPeer {
            target,
            cluster_id: self.cluster_id.clone(),
            health: self.health.clone(),
            client,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl GrpcPeer {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RpcError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(msg) => {
                self.health.refused(self.target);
                return Err(RPCError::Unreachable(Unreachable::new(&AddrError(
                    msg.clone(),
                ))));
            }
        };
        let payload =
            serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let request = RaftRequest {
            cluster_id: self.cluster_id.to_string(),
            payload: payload.into(),
        };
        let fut = async {
            match rpc {
                Rpc::Append => client.append_entries(request).await,
                Rpc::Vote => client.vote(request).await,
                Rpc::Snapshot => client.install_snapshot(request).await,
            }
        };
        // tonic's own timeout is only a header for the server; bound the call here.
        // A timeout says nothing about the process (it may be paused or slow): only a refused
        // connection marks the peer unreachable, and any answer clears it.
        let reply = match tokio::time::timeout(option.hard_ttl(), fut).await {
            Err(elapsed) => return Err(RPCError::Network(NetworkError::new(&elapsed))),
            Ok(Err(status)) => {
                let e = status_to_rpc_error(&status);
                if matches!(e, RPCError::Unreachable(_)) {
                    self.health.refused(self.target);
                }
                return Err(e);
            }
            Ok(Ok(r)) => {
                self.health.answered(self.target);
                r.into_inner()
            }
        };
        let result: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&reply.payload)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

fn status_to_rpc_error<E: std::error::Error>(status: &tonic::Status) -> RpcError<E> {
    match status.code() {
        // Connection refused / reset, or the peer is shutting down.
        tonic::Code::Unavailable | tonic::Code::Cancelled => {
            RPCError::Unreachable(Unreachable::new(status))
        }
        _ => RPCError::Network(NetworkError::new(status)),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct AddrError(String);

impl RaftNetwork<TypeConfig> for GrpcPeer {
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        self.call(Rpc::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        self.call(Rpc::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcError> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}
