//! An in-process Raft transport with seeded fault injection: message drops (requests and
//! replies), random delays and network partitions. Calls go straight to the target's
//! `openraft::Raft` handle, so one runtime can hold a whole cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use gregor_controller::raft_types::{NodeId, Raft, TypeConfig};
use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type RpcError<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

/// Fault settings; all probabilities are per message.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Probability that a request is lost before delivery.
    pub drop_request: f64,
    /// Probability that a reply is lost after the target processed the request.
    pub drop_reply: f64,
    /// Upper bound of a uniformly random one-way delay.
    pub max_delay_ms: u64,
}

struct State {
    nodes: BTreeMap<NodeId, Raft>,
    /// Links that deliver nothing, in both directions.
    cut: BTreeSet<(NodeId, NodeId)>,
    faults: Faults,
    rng: StdRng,
}

/// The shared in-process network.
#[derive(Clone)]
pub struct Router {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Fault(&'static str);

impl Router {
    pub fn new(seed: u64) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                nodes: BTreeMap::new(),
                cut: BTreeSet::new(),
                faults: Faults::default(),
                rng: StdRng::seed_from_u64(seed),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, id: NodeId, raft: Raft) {
        self.lock().nodes.insert(id, raft);
    }

    pub fn remove(&self, id: NodeId) -> Option<Raft> {
        self.lock().nodes.remove(&id)
    }

    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Cuts every link between `node` and the others.
    pub fn isolate(&self, node: NodeId, all: &[NodeId]) {
        let mut s = self.lock();
        for other in all.iter().copied().filter(|o| *o != node) {
            s.cut.insert((node, other));
            s.cut.insert((other, node));
        }
    }

    pub fn heal(&self) {
        let mut s = self.lock();
        s.cut.clear();
        s.faults = Faults::default();
    }

    pub fn network(&self, from: NodeId) -> RouterNetwork {
        RouterNetwork {
            from,
            router: self.clone(),
        }
    }

    /// Decides the fate of one message: the target handle and a delay, or a fault.
    fn route(&self, from: NodeId, to: NodeId) -> Result<(Raft, Duration, bool), Fault> {
        let mut s = self.lock();
        if s.cut.contains(&(from, to)) {
            return Err(Fault("partitioned"));
        }
        let raft = s.nodes.get(&to).cloned().ok_or(Fault("target down"))?;
        let f = s.faults;
        if f.drop_request > 0.0 && s.rng.random_bool(f.drop_request) {
            return Err(Fault("request dropped"));
        }
        let delay = if f.max_delay_ms > 0 {
            Duration::from_millis(s.rng.random_range(0..=f.max_delay_ms))
        } else {
            Duration::ZERO
        };
        let drop_reply = f.drop_reply > 0.0 && s.rng.random_bool(f.drop_reply);
        Ok((raft, delay, drop_reply))
    }
}

/// The factory one node uses.
pub struct RouterNetwork {
    from: NodeId,
    router: Router,
}

impl RaftNetworkFactory<TypeConfig> for RouterNetwork {
    type Network = RouterPeer;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> RouterPeer {
        RouterPeer {
            from: self.from,
            target,
            router: self.router.clone(),
        }
    }
}

pub struct RouterPeer {
    from: NodeId,
    target: NodeId,
    router: Router,
}

impl RouterPeer {
    async fn deliver<Resp, E, F, Fut>(
        &self,
        option: &RPCOption,
        call: F,
    ) -> Result<Resp, RpcError<E>>
    where
        E: std::error::Error,
        F: FnOnce(Raft) -> Fut,
        Fut: Future<Output = Result<Resp, RaftError<NodeId, E>>>,
    {
        let unreachable = |f: Fault| RPCError::Unreachable(Unreachable::new(&f));
        let (raft, delay, drop_reply) = self
            .router
            .route(self.from, self.target)
            .map_err(unreachable)?;
        let exchange = async {
            // Simulated network latency (virtual time under the paused test clock).
            tokio::time::sleep(delay).await;
            let result = call(raft).await;
            tokio::time::sleep(delay).await;
            result
        };
        let result = tokio::time::timeout(option.hard_ttl(), exchange)
            .await
            .map_err(|_| unreachable(Fault("timed out")))?;
        if drop_reply {
            return Err(unreachable(Fault("reply dropped")));
        }
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for RouterPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        self.deliver(&option, |r| async move { r.append_entries(rpc).await })
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        self.deliver(&option, |r| async move { r.install_snapshot(rpc).await })
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcError> {
        self.deliver(&option, |r| async move { r.vote(rpc).await })
            .await
    }
}
