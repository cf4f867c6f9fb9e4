//! One controller process: format check, durable store, openraft, and the gRPC server.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gregor_proto::controller::v1::broker_lifecycle_server::BrokerLifecycleServer;
use gregor_proto::controller::v1::controller_admin_server::ControllerAdminServer;
use gregor_proto::controller::v1::raft_server::RaftServer;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin_service::AdminService;
use crate::broker_service::{BrokerService, LeaderClock, run_planner};
use crate::cluster_id::{ClusterId, format_or_verify};
use crate::error::ControllerError;
use crate::grpc::RaftService;
use crate::metadata::{Command, CommandResult};
use crate::network::{GrpcNetwork, PeerHealth};
use crate::planner::SessionPolicy;
use crate::raft_types::{NodeId, Raft};
use crate::store::{KvBackend, LogStore, MetadataView, SledBackend, StateMachineStore};

/// Raft timing of the controller quorum. See `docs/controller.md` for how these were chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTiming {
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
    /// Minimum election timeout.
    pub election_min_ms: u64,
    /// Maximum election timeout (exclusive).
    pub election_max_ms: u64,
    /// Take a snapshot after this many applied entries.
    pub snapshot_every: u64,
    /// Entries kept in the log behind the last snapshot (for slightly lagging followers).
    pub keep_after_snapshot: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        Self {
            heartbeat_ms: 50,
            election_min_ms: 200,
            election_max_ms: 400,
            snapshot_every: 1024,
            keep_after_snapshot: 256,
        }
    }
}

impl RaftTiming {
    /// The validated openraft configuration.
    pub fn to_openraft(&self) -> Result<Arc<openraft::Config>, ControllerError> {
        let config = openraft::Config {
            cluster_name: "gregor-controller".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_min_ms,
            election_timeout_max: self.election_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_after_snapshot,
            ..Default::default()
        };
        config
            .validate()
            .map(Arc::new)
            .map_err(|e| ControllerError::InvalidConfig(e.to_string()))
    }
}

/// Configuration of one controller.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This controller's id; must be one of `voters`.
    pub node_id: NodeId,
    /// The cluster this node belongs to (checked against the data directory and every peer).
    pub cluster_id: ClusterId,
    /// Where `meta.properties` and the Raft store live.
    pub data_dir: PathBuf,
    /// The static voter set (`controller.quorum.voters`): id → `host:port`.
    pub voters: BTreeMap<NodeId, String>,
    /// Raft timing.
    pub timing: RaftTiming,
    /// `broker.session.timeout.ms`.
    pub broker_session_timeout_ms: u64,
    /// How soon after its session stream closes a silent broker is fenced
    /// (`broker.heartbeat.interval.ms`; see [`crate::planner::SessionPolicy`]).
    pub broker_disconnect_grace_ms: u64,
    /// How often the leader runs the planner.
    pub planner_tick_ms: u64,
    /// Call openraft's `initialize` with `voters` on start. openraft refuses it (harmlessly)
    /// unless this node's Raft state is pristine. [`crate::config::start`] sets it on the lowest
    /// voter only; tests may let every voter initialize with the same membership.
    pub initialize: bool,
}

impl NodeConfig {
    /// A configuration with the documented defaults for timing and sessions.
    pub fn new(
        node_id: NodeId,
        cluster_id: ClusterId,
        data_dir: PathBuf,
        voters: BTreeMap<NodeId, String>,
    ) -> Self {
        Self {
            node_id,
            cluster_id,
            data_dir,
            voters,
            timing: RaftTiming::default(),
            broker_session_timeout_ms: crate::planner::DEFAULT_SESSION_TIMEOUT_MS,
            broker_disconnect_grace_ms: crate::planner::DEFAULT_HEARTBEAT_INTERVAL_MS,
            planner_tick_ms: crate::planner::DEFAULT_PLANNER_TICK_MS,
            initialize: true,
        }
    }
}

/// A running controller. Dropping it without [`ControllerNode::shutdown`] leaves its tasks to
/// the cancellation token's owner.
pub struct ControllerNode {
    id: NodeId,
    cluster_id: ClusterId,
    raft: Raft,
    view: MetadataView,
    addr: SocketAddr,
    token: CancellationToken,
    tasks: JoinSet<Result<(), ControllerError>>,
}

impl std::fmt::Debug for ControllerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // openraft's handle is not Debug.
        f.debug_struct("ControllerNode")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ControllerNode {
    /// Formats or verifies the data directory, opens the store, starts Raft and serves gRPC on
    /// `listener` until `shutdown` is cancelled.
    pub async fn start(
        config: NodeConfig,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<Self, ControllerError> {
        check_voters(&config)?;
        let dir = config.data_dir.clone();
        let (cluster_id, node_id) = (config.cluster_id.clone(), config.node_id);
        // Blocking file and sled I/O stays off the async workers.
        let kv = tokio::task::spawn_blocking(move || {
            format_or_verify(&dir, &cluster_id, node_id)?;
            Ok::<_, ControllerError>(SledBackend::open(&dir.join("raft"))?)
        })
        .await
        .map_err(ControllerError::raft)??;
        Self::start_with_backend(config, Arc::new(kv), listener, shutdown).await
    }

    /// Like [`ControllerNode::start`] on an already open backend, without touching the data
    /// directory. Tests use it to restart a node in-process on the same store (sled releases
    /// its file lock asynchronously, so reopening the directory in-process can race).
    pub async fn start_with_backend<B: KvBackend>(
        config: NodeConfig,
        kv: Arc<B>,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<Self, ControllerError> {
        check_voters(&config)?;
        let raft_config = config.timing.to_openraft()?;
        let log = LogStore::new(kv.clone());
        let sm = StateMachineStore::open(kv)?;
        let view = sm.view();
        let health = PeerHealth::default();
        let network = GrpcNetwork::new(config.cluster_id.clone(), health.clone());
        let raft = Raft::new(config.node_id, raft_config, network, log, sm)
            .await
            .map_err(ControllerError::raft)?;

        let addr = listener
            .local_addr()
            .map_err(|e| ControllerError::io("reading the listener address", e))?;
        let token = shutdown.child_token();
        let mut tasks = JoinSet::new();
        let service = RaftService::new(raft.clone(), config.cluster_id.clone());
        let clock = Arc::new(LeaderClock::new());
        let brokers = BrokerService::new(
            raft.clone(),
            view.clone(),
            config.cluster_id.clone(),
            clock.clone(),
            token.clone(),
        );
        let admin = AdminService::new(raft.clone(), view.clone(), config.cluster_id.clone());
        tasks.spawn(run_planner(
            raft.clone(),
            view.clone(),
            clock,
            health,
            SessionPolicy {
                timeout_ms: config.broker_session_timeout_ms,
                disconnect_grace_ms: config.broker_disconnect_grace_ms,
            },
            Duration::from_millis(config.planner_tick_ms.max(1)),
            token.clone(),
        ));
        let stop = token.clone();
        tasks.spawn(async move {
            tonic::transport::Server::builder()
                .add_service(RaftServer::new(service))
                .add_service(BrokerLifecycleServer::new(brokers))
                .add_service(ControllerAdminServer::new(admin))
                .serve_with_incoming_shutdown(
                    // With our own listener tonic sets no socket options: without TCP_NODELAY
                    // a reply's last segment can wait for the peer's delayed ACK (Nagle), ~40 ms
                    // on every Raft round trip, vote and broker session.
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    stop.cancelled_owned(),
                )
                .await
                .map_err(ControllerError::raft)
        });

        // Initializing voters use the same static membership; on a restart (or when a peer's
        // vote already arrived) openraft answers NotAllowed, which is expected.
        let members: BTreeMap<NodeId, BasicNode> = config
            .voters
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr)))
            .collect();
        // Only a pristine node (no log, no vote) may initialize; skipping the call otherwise
        // avoids openraft's error log on every restart.
        let pristine = {
            let m = raft.metrics().borrow().clone();
            m.last_log_index.is_none() && m.current_term == 0
        };
        if config.initialize && pristine {
            match raft.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(ControllerError::raft(e)),
            }
        }
        Ok(Self {
            id: config.node_id,
            cluster_id: config.cluster_id.clone(),
            raft,
            view,
            addr,
            token,
            tasks,
        })
    }

    /// This controller's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The cluster this controller belongs to.
    pub fn cluster_id(&self) -> &ClusterId {
        &self.cluster_id
    }

    /// The openraft handle (metrics, membership).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The applied metadata.
    pub fn view(&self) -> &MetadataView {
        &self.view
    }

    /// The address the gRPC server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The current voters.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    /// Replicates `command` if this controller is the leader and returns its apply result.
    pub async fn propose(&self, command: Command) -> Result<Committed, ControllerError> {
        propose(&self.raft, command).await
    }

    /// Stops serving, stops Raft and waits for every task of this node.
    pub async fn shutdown(mut self) -> Result<(), ControllerError> {
        self.token.cancel();
        let raft_result = self.raft.shutdown().await.map_err(ControllerError::raft);
        while let Some(joined) = self.tasks.join_next().await {
            joined.map_err(ControllerError::raft)??;
        }
        raft_result
    }
}

fn check_voters(config: &NodeConfig) -> Result<(), ControllerError> {
    if config.voters.contains_key(&config.node_id) {
        Ok(())
    } else {
        Err(ControllerError::InvalidConfig(format!(
            "node {} is not in the voter set {:?}",
            config.node_id,
            config.voters.keys().collect::<Vec<_>>()
        )))
    }
}

/// A command committed and applied by the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Its metadata offset (Raft log index).
    pub offset: u64,
    /// What apply returned.
    pub result: CommandResult,
}

/// Proposes through `raft`, turning "forward to leader" into [`ControllerError::NotLeader`].
pub async fn propose(raft: &Raft, command: Command) -> Result<Committed, ControllerError> {
    match raft.client_write(command).await {
        Ok(resp) => Ok(Committed {
            offset: resp.log_id.index,
            result: resp.data,
        }),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(ControllerError::NotLeader {
                leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
            })
        }
        Err(e) => Err(ControllerError::raft(e)),
    }
}
