//! The broker-facing gRPC service (`BrokerLifecycle`) and the leader controller's planner loop.
//!
//! * `RegisterBroker`, `Heartbeat` and `AlterPartition` go to the leader controller (others answer `Unavailable`
//!   with the leader's address in the `x-gregor-leader` metadata key).
//! * `WatchMetadata(from_offset)` works on any controller: it streams the locally applied records
//!   with offset ≥ `from_offset`, in order, starting with a snapshot of the image when those
//!   records are no longer retained in memory.
//! * The planner loop runs on every controller but only acts while it is the leader: each tick
//!   it runs [`planner::plan_tick`] with the leader's clock as `now` and proposes the result.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use gregor_proto::controller::v1 as pb;
use gregor_proto::controller::v1::broker_lifecycle_server::BrokerLifecycle;
use openraft::ServerState;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::cluster_id::ClusterId;
use crate::error::{ControllerError, to_status};
use crate::grpc::check_cluster;
use crate::metadata::{Command, CommandResult, Endpoint};
use crate::network::PeerHealth;
use crate::node::propose;
use crate::planner::{self, Heartbeat, Liveness, Millis, SessionPolicy};
use crate::raft_types::Raft;
use crate::store::{MetadataView, RecordsSince};

/// Heartbeat and session bookkeeping of the leader controller, shared by the service and the
/// planner loop.
#[derive(Debug)]
pub struct LeaderClock {
    base: tokio::time::Instant,
    state: Mutex<ClockState>,
}

#[derive(Debug, Default)]
struct ClockState {
    /// The term the bookkeeping belongs to; everything resets when it changes.
    term: u64,
    liveness: Liveness,
    /// The open session stream per broker (its id), so that an older stream closing after a
    /// newer one opened does not count as a disconnect.
    sessions: BTreeMap<i32, u64>,
    next_session: u64,
}

impl LeaderClock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self {
            base: tokio::time::Instant::now(),
            state: Mutex::new(ClockState::default()),
        }
    }

    /// Milliseconds on this controller's monotonic clock.
    pub fn now(&self) -> Millis {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The state for `term`, reset when this controller starts leading a new term.
    fn lock(&self, term: u64) -> MutexGuard<'_, ClockState> {
        let now = self.now();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.term != term {
            *s = ClockState {
                term,
                liveness: Liveness {
                    since: now,
                    ..Liveness::default()
                },
                sessions: BTreeMap::new(),
                next_session: s.next_session,
            };
        }
        s
    }

    fn liveness(&self, term: u64) -> Liveness {
        self.lock(term).liveness.clone()
    }

    /// `at` on this clock (0 if it is before the clock started).
    fn millis(&self, at: tokio::time::Instant) -> Millis {
        u64::try_from(at.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX)
    }

    fn record(&self, term: u64, broker_id: i32) {
        let now = self.now();
        self.lock(term)
            .liveness
            .last_heartbeat
            .insert(broker_id, now);
    }

    /// A session stream of `broker_id` opened in `term`: counts as hearing from it.
    fn session_opened(&self, term: u64, broker_id: i32) -> u64 {
        let now = self.now();
        let mut s = self.lock(term);
        s.next_session += 1;
        let id = s.next_session;
        s.sessions.insert(broker_id, id);
        s.liveness.disconnected.remove(&broker_id);
        s.liveness.last_heartbeat.insert(broker_id, now);
        id
    }

    /// Session `id` of `broker_id` closed; a disconnect only if it is still the broker's
    /// current session of the current term.
    fn session_closed(&self, term: u64, broker_id: i32, id: u64) {
        let now = self.now();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.term == term && s.sessions.get(&broker_id) == Some(&id) {
            s.sessions.remove(&broker_id);
            s.liveness.disconnected.insert(broker_id, now);
        }
    }
}

impl Default for LeaderClock {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves `gregor.controller.v1.BrokerLifecycle`.
#[derive(Clone)]
pub struct BrokerService {
    raft: Raft,
    view: MetadataView,
    cluster_id: ClusterId,
    clock: Arc<LeaderClock>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for BrokerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerService")
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

impl BrokerService {
    /// A service over one controller's Raft handle and applied metadata.
    pub fn new(
        raft: Raft,
        view: MetadataView,
        cluster_id: ClusterId,
        clock: Arc<LeaderClock>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            raft,
            view,
            cluster_id,
            clock,
            shutdown,
        }
    }

    fn leader_term(&self) -> Result<u64, ControllerError> {
        let m = self.raft.metrics().borrow().clone();
        if m.state == ServerState::Leader {
            Ok(m.current_term)
        } else {
            Err(not_leader(&self.raft))
        }
    }
}

/// [`ControllerError::NotLeader`] with the leader's id and address when this node knows them.
pub(crate) fn not_leader(raft: &Raft) -> ControllerError {
    let m = raft.metrics().borrow().clone();
    let leader = m.current_leader.and_then(|id| {
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|n| (id, n.addr.clone()))
    });
    ControllerError::NotLeader { leader }
}

pub(crate) fn rejected(result: CommandResult) -> Result<CommandResult, ControllerError> {
    match result {
        CommandResult::Rejected(r) => Err(ControllerError::Rejected(r)),
        other => Ok(other),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::MetadataEvent, Status>> + Send>>;
type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::SessionEvent, Status>> + Send>>;

/// Keeps one broker session open while this controller leads `term`. When the broker's side
/// goes away (its connection closed), the close is recorded as a disconnect; when this
/// controller stops leading, the stream just ends and the broker opens one on the new leader.
async fn hold_session(
    raft: Raft,
    clock: Arc<LeaderClock>,
    term: u64,
    broker_id: i32,
    id: u64,
    tx: mpsc::Sender<Result<pb::SessionEvent, Status>>,
    shutdown: CancellationToken,
) {
    let mut metrics = raft.metrics();
    let still_leading =
        metrics.wait_for(|m| m.state != ServerState::Leader || m.current_term != term);
    tokio::select! {
        () = tx.closed() => clock.session_closed(term, broker_id, id),
        _ = still_leading => {}
        () = shutdown.cancelled() => {}
    }
}

#[tonic::async_trait]
impl BrokerLifecycle for BrokerService {
    async fn register_broker(
        &self,
        request: Request<pb::RegisterBrokerRequest>,
    ) -> Result<Response<pb::RegisterBrokerReply>, Status> {
        let req = request.into_inner();
        check_cluster(&self.cluster_id, &req.cluster_id)?;
        let bad = |m: String| to_status(&ControllerError::Payload(m));
        let incarnation = uuid::Uuid::parse_str(&req.incarnation_id)
            .map_err(|e| bad(format!("incarnation_id: {e}")))?;
        let endpoints = req
            .endpoints
            .into_iter()
            .map(|e| {
                let port = u16::try_from(e.port).map_err(|_| bad(format!("port {}", e.port)))?;
                Ok(Endpoint {
                    name: e.name,
                    host: e.host,
                    port,
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let cmd = Command::RegisterBroker {
            broker_id: req.broker_id,
            incarnation,
            endpoints,
            rack: Some(req.rack).filter(|r| !r.is_empty()),
            clean_shutdown: req.clean_shutdown,
        };
        let (term, result) = async {
            let term = self.leader_term()?;
            Ok::<_, ControllerError>((term, rejected(propose(&self.raft, cmd).await?.result)?))
        }
        .await
        .map_err(|e| to_status(&e))?;
        match result {
            CommandResult::BrokerRegistered { broker_epoch } => {
                self.clock.record(term, req.broker_id);
                Ok(Response::new(pb::RegisterBrokerReply { broker_epoch }))
            }
            other => Err(to_status(&ControllerError::Payload(format!(
                "unexpected result {other:?}"
            )))),
        }
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatReply>, Status> {
        let req = request.into_inner();
        check_cluster(&self.cluster_id, &req.cluster_id)?;
        let hb = Heartbeat {
            broker_id: req.broker_id,
            broker_epoch: req.broker_epoch,
            metadata_offset: req.metadata_offset,
            want_fence: req.want_fence,
        };
        let reply = async {
            let term = self.leader_term()?;
            let image = self.view.image();
            let cmds = planner::plan_heartbeat(&image, &hb)?;
            self.clock.record(term, hb.broker_id);
            for cmd in cmds {
                rejected(propose(&self.raft, cmd).await?.result)?;
            }
            let image = self.view.image();
            Ok::<_, ControllerError>(pb::HeartbeatReply {
                fenced: image.brokers.get(&hb.broker_id).is_none_or(|b| b.fenced),
                committed_offset: image.offset,
            })
        }
        .await
        .map_err(|e| to_status(&e))?;
        Ok(Response::new(reply))
    }

    async fn alter_partition(
        &self,
        request: Request<pb::AlterPartitionRequest>,
    ) -> Result<Response<pb::AlterPartitionReply>, Status> {
        let req = request.into_inner();
        check_cluster(&self.cluster_id, &req.cluster_id)?;
        let partition = u32::try_from(req.partition).map_err(|_| {
            to_status(&ControllerError::Payload(format!(
                "partition {} is negative",
                req.partition
            )))
        })?;
        let cmd = Command::AlterPartition {
            topic: req.topic.clone(),
            partition,
            broker_id: req.broker_id,
            broker_epoch: req.broker_epoch,
            leader_epoch: req.leader_epoch,
            partition_epoch: req.partition_epoch,
            new_isr: req.new_isr,
        };
        // Apply validates everything (broker epoch, leadership, both epochs, eligibility) against
        // the committed image; a refusal changes nothing and comes back as a typed rejection.
        let reply = async {
            self.leader_term()?;
            let committed = propose(&self.raft, cmd).await?;
            let offset = committed.offset;
            match rejected(committed.result)? {
                CommandResult::PartitionChanged {
                    leader_epoch,
                    partition_epoch,
                } => {
                    let image = self.view.image();
                    let isr = image
                        .partition(&req.topic, partition)
                        .filter(|p| p.partition_epoch == partition_epoch)
                        .map(|p| p.isr.clone())
                        .unwrap_or_default();
                    Ok(pb::AlterPartitionReply {
                        leader_epoch,
                        partition_epoch,
                        isr,
                        offset,
                    })
                }
                other => Err(ControllerError::Payload(format!(
                    "unexpected result {other:?}"
                ))),
            }
        }
        .await
        .map_err(|e| to_status(&e))?;
        Ok(Response::new(reply))
    }

    type OpenSessionStream = SessionStream;

    async fn open_session(
        &self,
        request: Request<pb::OpenSessionRequest>,
    ) -> Result<Response<SessionStream>, Status> {
        let req = request.into_inner();
        check_cluster(&self.cluster_id, &req.cluster_id)?;
        let term = self.leader_term().map_err(|e| to_status(&e))?;
        // The same validation as a heartbeat's (registered, current epoch), without effects.
        let current = self
            .view
            .image()
            .brokers
            .get(&req.broker_id)
            .map(|b| b.epoch);
        let refusal = match current {
            None => Some(planner::PlanError::UnknownBroker(req.broker_id)),
            Some(epoch) if epoch != req.broker_epoch => {
                Some(planner::PlanError::StaleBrokerEpoch {
                    broker_id: req.broker_id,
                    current: epoch,
                    got: req.broker_epoch,
                })
            }
            Some(_) => None,
        };
        if let Some(e) = refusal {
            return Err(to_status(&ControllerError::from(e)));
        }
        let id = self.clock.session_opened(term, req.broker_id);
        let (tx, rx) = mpsc::channel(1);
        // The first event flushes the response headers, so the broker knows it is accepted.
        let _ = tx.try_send(Ok(pb::SessionEvent { term }));
        tokio::spawn(hold_session(
            self.raft.clone(),
            Arc::clone(&self.clock),
            term,
            req.broker_id,
            id,
            tx,
            self.shutdown.clone(),
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type WatchMetadataStream = EventStream;

    async fn watch_metadata(
        &self,
        request: Request<pb::WatchMetadataRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let req = request.into_inner();
        check_cluster(&self.cluster_id, &req.cluster_id)?;
        let (tx, rx) = mpsc::channel(256);
        let view = self.view.clone();
        let shutdown = self.shutdown.clone();
        // One task per watcher; it ends when the broker disconnects or the server stops.
        tokio::spawn(stream_metadata(view, req.from_offset, tx, shutdown));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

async fn stream_metadata(
    view: MetadataView,
    from: u64,
    tx: mpsc::Sender<Result<pb::MetadataEvent, Status>>,
    shutdown: CancellationToken,
) {
    use pb::metadata_event::Event;
    let mut applied = view.subscribe();
    let mut next = from.max(1);
    loop {
        let events: Vec<Event> = match view.records_since(next) {
            RecordsSince::Snapshot(image) => {
                next = image.offset + 1;
                vec![Event::Snapshot(pb::MetadataSnapshot {
                    offset: image.offset,
                    image: image.encode().into(),
                })]
            }
            RecordsSince::Records(records) => {
                if let Some(last) = records.last() {
                    next = last.offset + 1;
                }
                records
                    .into_iter()
                    .map(|r| {
                        Event::Record(pb::MetadataRecord {
                            offset: r.offset,
                            command: r.command.encode().into(),
                        })
                    })
                    .collect()
            }
        };
        let idle = events.is_empty();
        for event in events {
            let sent = tx.send(Ok(pb::MetadataEvent { event: Some(event) }));
            tokio::select! {
                r = sent => if r.is_err() { return },
                () = shutdown.cancelled() => return,
            }
        }
        if idle {
            tokio::select! {
                r = applied.changed() => if r.is_err() { return },
                () = tx.closed() => return,
                () = shutdown.cancelled() => return,
            }
        }
    }
}

/// The leader controller's periodic planning: session expiry and leadership fixes.
pub async fn run_planner(
    raft: Raft,
    view: MetadataView,
    clock: Arc<LeaderClock>,
    peers: PeerHealth,
    policy: SessionPolicy,
    tick: Duration,
    shutdown: CancellationToken,
) -> Result<(), ControllerError> {
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut metrics = raft.metrics();
    let mut seen = (ServerState::Follower, 0);
    loop {
        // Also plan at once when this node becomes leader: a failover is when the planner has
        // the most to do (a dead former leader's broker to fence, its leaderships to move).
        let became_leader = metrics
            .wait_for(|m| m.state == ServerState::Leader && (m.state, m.current_term) != seen);
        tokio::select! {
            _ = ticker.tick() => {}
            r = became_leader => if r.is_err() { return Ok(()) },
            () = shutdown.cancelled() => return Ok(()),
        }
        let m = raft.metrics().borrow().clone();
        seen = (m.state, m.current_term);
        if m.state != ServerState::Leader {
            continue;
        }
        let mut liveness = clock.liveness(m.current_term);
        liveness.unreachable_voters = peers
            .unreachable()
            .into_iter()
            .filter_map(|(id, since)| Some((i32::try_from(id).ok()?, clock.millis(since))))
            .collect();
        let now = clock.now();
        let cmds = planner::plan_tick(&view.image(), &liveness, now, &policy);
        if cmds.is_empty() {
            continue;
        }
        tracing::info!(commands = cmds.len(), first = ?cmds[0], "planner proposes");
        for cmd in &cmds {
            if let Command::FenceBroker { broker_id, .. } = cmd {
                // Which session rule fired, for whoever reads the log after a failover.
                tracing::info!(
                    broker_id,
                    now,
                    leading_since = liveness.since,
                    last_heard = ?liveness.last_heartbeat.get(broker_id),
                    session_closed = ?liveness.disconnected.get(broker_id),
                    controller_unreachable = ?liveness.unreachable_voters.get(broker_id),
                    "fencing a broker"
                );
            }
        }
        // All at once: openraft appends and replicates queued writes together, so a broker
        // failure that moves 50 leaderships costs one commit round, not 50 in a row (one at a
        // time put the last partition's new leader ~1 s behind the fence on this machine).
        // Submission order is log order (join_all polls in order), so fences still precede the
        // elections planned on top of them; apply re-validates each one anyway.
        let proposals = cmds.into_iter().map(|cmd| propose(&raft, cmd));
        for result in futures::future::join_all(proposals).await {
            match result {
                Ok(_) => {}
                // Lost leadership mid-plan: the next leader re-plans from its own image.
                Err(ControllerError::NotLeader { .. }) => break,
                Err(e) => tracing::warn!(error = %e, "planner proposal failed"),
            }
        }
    }
}

/// The leader address carried by a `NotLeader` status, if any.
pub fn leader_hint(status: &Status) -> Option<String> {
    status
        .metadata()
        .get(crate::error::LEADER_HINT_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
