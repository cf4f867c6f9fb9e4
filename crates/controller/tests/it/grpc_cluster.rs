//! Three controllers in one process over real loopback gRPC. Every wait is on openraft's
//! metrics watch channel with a deadline; nothing sleeps.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use gregor_controller::cluster_id::ClusterId;
use gregor_controller::metadata::{Command, CommandResult};
use gregor_controller::node::{ControllerNode, NodeConfig, RaftTiming};
use gregor_controller::raft_types::NodeId;
use gregor_controller::store::SledBackend;
use gregor_proto::controller::v1::RaftRequest;
use gregor_proto::controller::v1::raft_client::RaftClient;
use openraft::ServerState;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const DEADLINE: Duration = Duration::from_secs(15);

pub struct Cluster {
    pub cluster_id: ClusterId,
    pub voters: BTreeMap<NodeId, String>,
    dirs: BTreeMap<NodeId, tempfile::TempDir>,
    /// Kept open across in-process restarts (see `ControllerNode::start_with_backend`).
    stores: BTreeMap<NodeId, Arc<SledBackend>>,
    pub nodes: BTreeMap<NodeId, ControllerNode>,
    timing: RaftTiming,
    session_timeout_ms: u64,
    token: CancellationToken,
}

impl Cluster {
    /// Three nodes started the production way (format, open sled, serve).
    pub async fn start(timing: RaftTiming) -> anyhow::Result<Self> {
        Self::start_inner(
            timing,
            false,
            gregor_controller::planner::DEFAULT_SESSION_TIMEOUT_MS,
        )
        .await
    }

    /// Like [`Cluster::start`] with another `broker.session.timeout.ms` (tests that register
    /// brokers without heartbeating them).
    pub async fn start_with_session_timeout(
        timing: RaftTiming,
        session_timeout_ms: u64,
    ) -> anyhow::Result<Self> {
        Self::start_inner(timing, false, session_timeout_ms).await
    }

    /// Three nodes on sled stores the test keeps open, so a node can restart in-process.
    async fn start_restartable(timing: RaftTiming) -> anyhow::Result<Self> {
        Self::start_inner(
            timing,
            true,
            gregor_controller::planner::DEFAULT_SESSION_TIMEOUT_MS,
        )
        .await
    }

    async fn start_inner(
        timing: RaftTiming,
        keep_stores: bool,
        session_timeout_ms: u64,
    ) -> anyhow::Result<Self> {
        let mut listeners = BTreeMap::new();
        let mut voters = BTreeMap::new();
        for id in 1..=3u64 {
            let l = TcpListener::bind("127.0.0.1:0").await?;
            voters.insert(id, l.local_addr()?.to_string());
            listeners.insert(id, l);
        }
        let mut c = Cluster {
            cluster_id: ClusterId::random(),
            voters,
            dirs: BTreeMap::new(),
            stores: BTreeMap::new(),
            nodes: BTreeMap::new(),
            timing,
            session_timeout_ms,
            token: CancellationToken::new(),
        };
        for (id, l) in listeners {
            let dir = tempfile::tempdir()?;
            let config = c.config(id, dir.path());
            let node = if keep_stores {
                let kv = Arc::new(SledBackend::open(dir.path())?);
                c.stores.insert(id, kv.clone());
                ControllerNode::start_with_backend(config, kv, l, c.token.clone()).await?
            } else {
                ControllerNode::start(config, l, c.token.clone()).await?
            };
            c.nodes.insert(id, node);
            c.dirs.insert(id, dir);
        }
        Ok(c)
    }

    fn config(&self, id: NodeId, dir: &std::path::Path) -> NodeConfig {
        NodeConfig {
            timing: self.timing,
            broker_session_timeout_ms: self.session_timeout_ms,
            ..NodeConfig::new(
                id,
                self.cluster_id.clone(),
                dir.to_path_buf(),
                self.voters.clone(),
            )
        }
    }

    /// Waits until every running node agrees on one leader that is not `not`.
    pub async fn wait_leader(&self, not: Option<NodeId>) -> anyhow::Result<NodeId> {
        let mut agreed = None;
        for node in self.nodes.values() {
            let m = node
                .raft()
                .wait(Some(DEADLINE))
                .metrics(
                    |m| m.current_leader.is_some() && m.current_leader != not,
                    "a new leader is known",
                )
                .await?;
            let leader = m.current_leader.context("leader vanished")?;
            match agreed {
                None => agreed = Some(leader),
                Some(l) if l == leader => {}
                Some(l) => bail!("nodes disagree on the leader: {l} vs {leader}"),
            }
        }
        let leader = agreed.context("no running nodes")?;
        self.nodes[&leader]
            .raft()
            .wait(Some(DEADLINE))
            .state(ServerState::Leader, "leader sees itself as leader")
            .await?;
        Ok(leader)
    }

    pub async fn wait_applied(&self, index: u64) -> anyhow::Result<()> {
        for node in self.nodes.values() {
            node.raft()
                .wait(Some(DEADLINE))
                .applied_index_at_least(Some(index), "applied")
                .await?;
        }
        Ok(())
    }

    pub async fn propose(
        &self,
        leader: NodeId,
        cmd: Command,
    ) -> anyhow::Result<(u64, CommandResult)> {
        let c = self.nodes[&leader].propose(cmd).await?;
        Ok((c.offset, c.result))
    }

    pub async fn stop(&mut self, id: NodeId) -> anyhow::Result<()> {
        let node = self.nodes.remove(&id).context("not running")?;
        node.shutdown().await?;
        Ok(())
    }

    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.token.cancel();
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await?;
        }
        Ok(())
    }
}

fn register(id: i32) -> Command {
    Command::RegisterBroker {
        broker_id: id,
        incarnation: Uuid::from_u128(id as u128),
        endpoints: vec![],
        rack: None,
        clean_shutdown: true,
    }
}

fn create_topic(name: &str, n: u128) -> Command {
    Command::CreateTopic {
        name: name.into(),
        topic_id: Uuid::from_u128(n),
        assignments: vec![vec![1]],
        configs: BTreeMap::new(),
    }
}

async fn with_deadline<F: Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(50), f)
        .await
        .context("test deadline")?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_controllers_elect_commit_and_survive_a_leader_kill() -> anyhow::Result<()> {
    with_deadline(async {
        let mut c = Cluster::start(RaftTiming::default()).await?;
        let leader = c.wait_leader(None).await?;

        let (_, r) = c.propose(leader, register(1)).await?;
        assert!(matches!(r, CommandResult::BrokerRegistered { .. }), "{r:?}");
        let (index, r) = c.propose(leader, create_topic("t1", 1)).await?;
        assert_eq!(r, CommandResult::Applied);
        c.wait_applied(index).await?;
        for node in c.nodes.values() {
            assert!(node.view().image().topics.contains_key("t1"), "node {}", node.id());
        }

        // A follower refuses writes and names the leader.
        let follower = *c.nodes.keys().find(|id| **id != leader).context("no follower")?;
        let err = c.nodes[&follower].propose(create_topic("x", 9)).await.unwrap_err();
        assert!(
            matches!(&err, gregor_controller::error::ControllerError::NotLeader { leader: Some((l, _)) } if *l == leader),
            "{err}"
        );

        // Kill the leader: the other two elect a new one that commits the next command.
        c.stop(leader).await?;
        let new_leader = c.wait_leader(Some(leader)).await?;
        assert_ne!(new_leader, leader);
        let (index, r) = c.propose(new_leader, create_topic("t2", 2)).await?;
        assert_eq!(r, CommandResult::Applied);
        c.wait_applied(index).await?;
        for node in c.nodes.values() {
            let image = node.view().image();
            assert!(image.topics.contains_key("t1") && image.topics.contains_key("t2"));
        }
        c.shutdown().await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_recovers_from_snapshot_and_log() -> anyhow::Result<()> {
    with_deadline(async {
        // Snapshot every 4 entries, keep 2: the restarted node must use snapshot + log replay.
        let timing = RaftTiming {
            snapshot_every: 4,
            keep_after_snapshot: 2,
            ..RaftTiming::default()
        };
        let mut c = Cluster::start_restartable(timing).await?;
        let leader = c.wait_leader(None).await?;
        c.propose(leader, register(1)).await?;
        let mut last = 0;
        for i in 0..10u128 {
            let (index, r) = c
                .propose(leader, create_topic(&format!("t{i}"), i + 1))
                .await?;
            assert_eq!(r, CommandResult::Applied);
            last = index;
        }
        c.wait_applied(last).await?;
        let follower = *c
            .nodes
            .keys()
            .find(|id| **id != leader)
            .context("no follower")?;
        let before = c.nodes[&follower].view().image();
        let snap = c.nodes[&follower]
            .raft()
            .wait(Some(DEADLINE))
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index >= 4),
                "snapshot taken",
            )
            .await?;
        assert!(snap.purged.is_some(), "log was purged behind the snapshot");

        c.stop(follower).await?;
        // Rebind the same port so the peers' configured address still reaches it.
        let listener = TcpListener::bind(&c.voters[&follower]).await?;
        let config = c.config(follower, c.dirs[&follower].path());
        let node = ControllerNode::start_with_backend(
            config,
            c.stores[&follower].clone(),
            listener,
            c.token.clone(),
        )
        .await?;
        c.nodes.insert(follower, node);
        c.nodes[&follower]
            .raft()
            .wait(Some(DEADLINE))
            .applied_index_at_least(Some(last), "restarted node caught up")
            .await?;
        // The leader's planner may still commit while we look (it fences broker 1, whose
        // heartbeats never come), so compare the two images at the same applied offset: apply is
        // deterministic, so equal offsets must mean equal images.
        loop {
            let on_leader = c.nodes[&leader].view().image();
            c.nodes[&follower]
                .raft()
                .wait(Some(DEADLINE))
                .applied_index_at_least(Some(on_leader.offset), "follower reached the leader")
                .await?;
            let after = c.nodes[&follower].view().image();
            if after.offset != on_leader.offset {
                continue; // the leader committed more in between; look again
            }
            assert_eq!(after, on_leader);
            assert!(before.topics.keys().all(|t| after.topics.contains_key(t)));
            assert_eq!(
                after.brokers.keys().collect::<Vec<_>>(),
                before.brokers.keys().collect::<Vec<_>>()
            );
            break;
        }
        c.shutdown().await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_from_another_cluster_is_refused() -> anyhow::Result<()> {
    with_deadline(async {
        let c = Cluster::start(RaftTiming::default()).await?;
        let addr = &c.voters[&1];
        let mut client = RaftClient::connect(format!("http://{addr}")).await?;
        let status = client
            .vote(RaftRequest {
                cluster_id: "some-other-cluster".into(),
                payload: b"{}".to_vec().into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert!(status.message().contains("cluster id mismatch"), "{status}");
        // The right cluster id with garbage is a bad payload, not a crash.
        let status = client
            .vote(RaftRequest {
                cluster_id: c.cluster_id.to_string(),
                payload: b"not json".to_vec().into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        c.shutdown().await
    })
    .await
}
