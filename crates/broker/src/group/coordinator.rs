//! The group coordinator: drives one [`Group`] state machine per group id.
//!
//! Each group lives in a slot behind a `parking_lot` mutex, held only for a state-machine step
//! and the page-cache append that persists its outcome, never across an `.await`. A request
//! that must wait (JoinGroup, SyncGroup) parks a oneshot sender in the slot under its request
//! id and awaits the receiver; the step that completes the rebalance sends the answer. One timer
//! task per group sleeps until [`Group::next_deadline`] (or until a step changes it, via a
//! `Notify`) and feeds [`Event::Tick`]. The tasks are owned by the coordinator's `JoinSet` and
//! stop on its `CancellationToken` (broker shutdown) or when their group is deleted.
//!
//! Ownership follows leadership: this node serves a group only while it leads the group's
//! partition of `__consumer_offsets` (NOT_COORDINATOR otherwise, so clients re-run
//! FindCoordinator). When it becomes leader of an offsets partition (a new leader epoch), a load
//! task replays that partition's log up to its end and installs its groups
//! (COORDINATOR_LOAD_IN_PROGRESS until then); when it stops leading, the partition's groups are
//! dropped and their waiting requests answered NOT_COORDINATOR. Loads are owned by the
//! coordinator's `JoinSet` and cancelled by a per-load `CancellationToken`. A watcher task
//! re-checks every offsets partition on each [`Broker::replica_changes`] notification; every
//! group request re-checks its own partition too.
//!
//! Persistence: committed offsets and group metadata are appended to the group's partition of
//! `__consumer_offsets`, in Kafka's record formats, with acks=-1 (refused below
//! `min.insync.replicas`). Every write a reply depends on is waited for until the partition's
//! high watermark passed it, bounded by `offsets.commit.timeout.ms`, without locks held:
//! - OffsetCommit: the in-memory offsets change only then; a timeout is REQUEST_TIMED_OUT.
//! - Group metadata (a SyncGroup assignment, a static member's rejoin): the JoinGroup/SyncGroup
//!   replies of that generation wait for it, each in its own request. If it fails, they are
//!   answered with Kafka's mapping (`write_error`) and the group rebalances
//!   ([`Event::StoreFailed`]), as Kafka does when storing a SyncGroup assignment fails.
//! - DeleteGroups and OffsetDelete tombstones: answered once replicated (same mapping).
//!
//! Lock order: ownership → registry → group slot → partition log.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::records::{self, Key};
use super::state::{
    CommittedOffset, Event, Group, GroupConfig, GroupState, GroupSummary, JoinResponse, Reply,
    RequestId, StoredGroup, SyncResponse, TopicPartitionKey,
};
use super::{GroupError, OFFSETS_TOPIC};
use crate::broker::{Broker, Partition, Topic, now_ms};
use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
use crate::replica::Role;

/// Kafka's `offsets.topic.segment.bytes` default.
const OFFSETS_SEGMENT_BYTES: i64 = 100 * 1024 * 1024;

/// Upper bound on the inline timer steps of one event; each step moves the state forward, so
/// this only guards against a state-machine bug spinning the caller.
const MAX_INLINE_TICKS: usize = 16;

/// Coordinator settings, from the broker config.
#[derive(Debug, Clone, Copy)]
pub struct CoordinatorConfig {
    /// Group timeouts and delays.
    pub group: GroupConfig,
    /// `offsets.topic.num.partitions`.
    pub offsets_partitions: i32,
    /// `offsets.topic.replication.factor`.
    pub offsets_replication_factor: i16,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.commit.timeout.ms`.
    pub offsets_commit_timeout_ms: i64,
}

impl CoordinatorConfig {
    /// From the broker configuration.
    pub fn from_broker(c: &BrokerConfig) -> CoordinatorConfig {
        CoordinatorConfig {
            group: GroupConfig {
                min_session_timeout_ms: c.group_min_session_timeout_ms,
                max_session_timeout_ms: c.group_max_session_timeout_ms,
                initial_rebalance_delay_ms: c.group_initial_rebalance_delay_ms,
            },
            offsets_partitions: c.offsets_topic_num_partitions,
            offsets_replication_factor: c.offsets_topic_replication_factor,
            offset_metadata_max_bytes: c.offset_metadata_max_bytes.max(0) as usize,
            offsets_commit_timeout_ms: i64::from(c.offsets_commit_timeout_ms.max(1)),
        }
    }
}

/// Monotonic milliseconds since the coordinator started: the state machine's clock.
#[derive(Debug, Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(self) -> i64 {
        self.0.elapsed().as_millis() as i64
    }
    fn instant(self, ms: i64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.0 + Duration::from_millis(ms.max(0) as u64))
    }
}

/// A group-metadata write and what became of its append.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupWrite {
    /// The generation it stored.
    generation: i32,
    outcome: WriteOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum WriteOutcome {
    /// Appended as leader in `epoch`: replies wait until the HW passed `last_offset`.
    Appended { last_offset: i64, epoch: i32 },
    /// The append itself was refused: replies carry this error.
    Failed(GroupError),
}

/// A reply and the group-metadata write it must wait for (JoinGroup/SyncGroup successes of the
/// written generation).
type Delivery = (Reply, Option<GroupWrite>);

#[derive(Debug)]
struct SlotInner {
    group: Group,
    waiters: HashMap<RequestId, oneshot::Sender<Delivery>>,
    /// The latest group-metadata write. Successful JoinGroup/SyncGroup replies of its
    /// generation wait for it (a follower's SyncGroup that arrives after the leader's too).
    last_store: Option<GroupWrite>,
    /// The latest offset write per partition still waiting for replication (its commit
    /// sequence): only that write may update the in-memory offset when it completes, so an
    /// older commit finishing late never overwrites a newer one.
    pending: HashMap<TopicPartitionKey, u64>,
}

/// One group with its waiting requests and its `__consumer_offsets` partition.
#[derive(Debug)]
struct GroupSlot {
    partition: Arc<Partition>,
    /// `min.insync.replicas` of `__consumer_offsets` (shared with the coordinator).
    min_isr: Arc<AtomicI32>,
    inner: Mutex<SlotInner>,
    /// Wakes the timer task when a step may have moved the next deadline.
    wake: Notify,
}

impl GroupSlot {
    /// Runs one event (plus any deadline already due), persists, answers waiters.
    fn step(&self, clock: Clock, event: Event) {
        let mut inner = self.inner.lock();
        let now = clock.now();
        let mut outputs = inner.group.handle(now, event);
        // Deadlines already due (e.g. an initial rebalance delay of 0) run at once, so the
        // outcome does not depend on when the timer task gets scheduled.
        for _ in 0..MAX_INLINE_TICKS {
            match inner.group.next_deadline() {
                Some(d) if d <= now => outputs.extend(inner.group.handle(now, Event::Tick)),
                _ => break,
            }
        }
        if outputs
            .iter()
            .any(|o| matches!(o, super::state::Output::StoreGroup))
        {
            let mut stored = inner.group.stored();
            stored.current_state_timestamp = now_ms();
            let key = records::group_key(inner.group.id());
            let min_isr = self.min_isr.load(Ordering::Relaxed);
            let outcome = match append(
                &self.partition,
                vec![(key, Some(records::group_value(&stored)))],
                Some(min_isr),
            ) {
                Ok((last_offset, epoch)) => WriteOutcome::Appended { last_offset, epoch },
                Err(e) => {
                    tracing::warn!(group = %inner.group.id(), error = %e, "cannot persist group metadata");
                    WriteOutcome::Failed(write_error(&e))
                }
            };
            inner.last_store = Some(GroupWrite {
                generation: inner.group.generation(),
                outcome,
            });
        }
        let store = inner
            .last_store
            .clone()
            .filter(|w| w.generation == inner.group.generation());
        for o in outputs {
            if let super::state::Output::Reply(id, reply) = o
                && let Some(tx) = inner.waiters.remove(&id)
            {
                let write = if needs_store(&reply) {
                    store.clone()
                } else {
                    None
                };
                // The requester may have gone away (shutdown); nothing to do then.
                let _ = tx.send((reply, write));
            }
        }
        drop(inner);
        self.wake.notify_one();
    }
}

/// Why a submitted request got no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unanswered {
    /// The group does not exist (and was not to be created).
    NoGroup,
    /// The broker is shutting down, or the group went away while the request waited.
    Interrupted,
    /// This node does not (yet) coordinate the group: NOT_COORDINATOR or
    /// COORDINATOR_LOAD_IN_PROGRESS.
    Refused(GroupError),
}

/// What this node holds of one `__consumer_offsets` partition it leads.
#[derive(Debug)]
enum Ownership {
    /// The load task of leader epoch `epoch` is replaying the log.
    Loading {
        epoch: i32,
        cancel: CancellationToken,
    },
    /// The partition's groups are installed for leader epoch `epoch`.
    Loaded { epoch: i32 },
}

/// The state shared with the coordinator's tasks.
#[derive(Debug, Default)]
struct Registry {
    /// By offsets partition index.
    owned: Mutex<HashMap<i32, Ownership>>,
    groups: Mutex<HashMap<String, Arc<GroupSlot>>>,
    timers: Mutex<JoinSet<()>>,
    /// Partition loads and the leadership watcher.
    tasks: Mutex<JoinSet<()>>,
    /// Slots loaded before the runtime ran (at open); [`GroupCoordinator::start`] starts them.
    unstarted: Mutex<Vec<Arc<GroupSlot>>>,
}

impl Registry {
    /// Drops the groups of offsets partition `index`: their waiting requests are answered
    /// NOT_COORDINATOR (the senders drop) and their timers end (the group is dead).
    fn unload(&self, index: i32) {
        let dropped: Vec<Arc<GroupSlot>> = {
            let mut groups = self.groups.lock();
            let ids: Vec<String> = groups
                .iter()
                .filter(|(_, s)| s.partition.tp.partition == index)
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| groups.remove(id)).collect()
        };
        if !dropped.is_empty() {
            tracing::info!(
                partition = index,
                groups = dropped.len(),
                "no longer coordinator: unloaded groups"
            );
        }
        for slot in dropped {
            let mut inner = slot.inner.lock();
            inner.waiters.clear();
            inner.pending.clear();
            inner.last_store = None;
            inner.group.mark_dead();
            drop(inner);
            slot.wake.notify_one();
        }
    }

    /// Installs loaded groups and starts their timers.
    fn install(
        &self,
        slots: Vec<(String, Arc<GroupSlot>)>,
        clock: Clock,
        cancel: &CancellationToken,
    ) {
        let mut groups = self.groups.lock();
        let mut timers = self.timers.lock();
        while timers.try_join_next().is_some() {}
        for (id, slot) in slots {
            timers.spawn(run_timer(Arc::clone(&slot), clock, cancel.clone()));
            groups.insert(id, slot);
        }
    }
}

/// The group coordinator. See the module docs.
#[derive(Debug)]
pub struct GroupCoordinator {
    config: CoordinatorConfig,
    clock: Clock,
    offsets_topic: RwLock<Option<Arc<Topic>>>,
    /// Serializes the creation of `__consumer_offsets`.
    create: Mutex<()>,
    reg: Arc<Registry>,
    next_request: AtomicU64,
    /// `min.insync.replicas` of `__consumer_offsets` as last seen (the HW rule needs it);
    /// shared with every group slot.
    offsets_min_isr: Arc<AtomicI32>,
    cancel: CancellationToken,
}

impl Drop for GroupCoordinator {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl GroupCoordinator {
    /// A coordinator with no groups.
    pub fn new(config: CoordinatorConfig) -> GroupCoordinator {
        GroupCoordinator {
            config,
            clock: Clock(Instant::now()),
            offsets_topic: RwLock::new(None),
            create: Mutex::new(()),
            reg: Arc::new(Registry::default()),
            next_request: AtomicU64::new(1),
            offsets_min_isr: Arc::new(AtomicI32::new(1)),
            cancel: CancellationToken::new(),
        }
    }

    /// The group settings.
    pub fn group_config(&self) -> GroupConfig {
        self.config.group
    }

    /// `offset.metadata.max.bytes`.
    pub fn offset_metadata_max_bytes(&self) -> usize {
        self.config.offset_metadata_max_bytes
    }

    /// Loads, synchronously, every `__consumer_offsets` partition this node leads now (at open:
    /// a single node leads them all). Blocking (reads the logs). Their timers start with
    /// [`GroupCoordinator::start`].
    pub fn load(&self, broker: &Broker) -> Result<()> {
        let Some(topic) = broker.topic(OFFSETS_TOPIC) else {
            return Ok(());
        };
        self.offsets_min_isr
            .store(broker.min_insync_replicas(&topic), Ordering::Relaxed);
        let loaded = self.load_leading(&topic)?;
        self.reg.unstarted.lock().extend(loaded);
        *self.offsets_topic.write() = Some(topic);
        Ok(())
    }

    /// Loads the partitions of `topic` this node leads and does not hold yet, inline. Returns
    /// the new slots (timers not started).
    fn load_leading(&self, topic: &Topic) -> Result<Vec<Arc<GroupSlot>>> {
        let mut out = Vec::new();
        let mut owned = self.reg.owned.lock();
        for partition in &topic.partitions {
            let index = partition.tp.partition;
            let epoch = partition.leader_epoch();
            if partition.role() != Role::Leader
                || matches!(owned.get(&index), Some(Ownership::Loaded { epoch: e }) if *e == epoch)
            {
                continue;
            }
            if let Some(Ownership::Loading { cancel, .. }) = owned.remove(&index) {
                cancel.cancel();
            }
            self.reg.unload(index);
            let slots = load_groups(
                partition,
                self.config.group,
                self.clock.now(),
                &self.offsets_min_isr,
            )?;
            tracing::info!(
                partition = index,
                epoch,
                groups = slots.len(),
                "loaded consumer groups from {OFFSETS_TOPIC}"
            );
            let mut groups = self.reg.groups.lock();
            for (id, slot) in slots {
                out.push(Arc::clone(&slot));
                groups.insert(id, slot);
            }
            owned.insert(index, Ownership::Loaded { epoch });
        }
        Ok(out)
    }

    /// Starts the timers of groups loaded at open and the leadership watcher. Needs a tokio
    /// runtime; call once.
    pub fn start(&self, broker: &Arc<Broker>) {
        let slots: Vec<Arc<GroupSlot>> = std::mem::take(&mut *self.reg.unstarted.lock());
        {
            let mut timers = self.reg.timers.lock();
            for slot in slots {
                timers.spawn(run_timer(slot, self.clock, self.cancel.clone()));
            }
        }
        self.reg.tasks.lock().spawn(watch_leadership(
            Arc::downgrade(broker),
            broker.replica_changes(),
            self.cancel.clone(),
        ));
    }

    /// Re-derives what this node coordinates from the roles of its `__consumer_offsets`
    /// replicas: starts loads for partitions it now leads, unloads those it no longer leads.
    pub fn reconcile_all(&self, broker: &Broker) {
        let Some(topic) = broker.topic(OFFSETS_TOPIC) else {
            return;
        };
        self.offsets_min_isr
            .store(broker.min_insync_replicas(&topic), Ordering::Relaxed);
        for partition in &topic.partitions {
            self.reconcile(partition);
        }
        // Partitions this node stopped being a replica of.
        let gone: Vec<i32> = {
            let owned = self.reg.owned.lock();
            owned
                .keys()
                .copied()
                .filter(|i| topic.local(*i).is_none())
                .collect()
        };
        for index in gone {
            let mut owned = self.reg.owned.lock();
            if let Some(Ownership::Loading { cancel, .. }) = owned.remove(&index) {
                cancel.cancel();
            }
            self.reg.unload(index);
        }
        *self.offsets_topic.write() = Some(topic);
    }

    /// Compares one offsets partition's role with what is held, and acts: a new leadership
    /// (or leader epoch) starts a load task, a lost one unloads.
    fn reconcile(&self, partition: &Arc<Partition>) {
        let index = partition.tp.partition;
        let leader = partition.role() == Role::Leader;
        let epoch = partition.leader_epoch();
        let mut owned = self.reg.owned.lock();
        let held = match owned.get(&index) {
            Some(Ownership::Loaded { epoch: e } | Ownership::Loading { epoch: e, .. }) => Some(*e),
            None => None,
        };
        if (leader && held == Some(epoch)) || (!leader && held.is_none()) {
            return;
        }
        // Spawning needs a runtime; without one (a blocking open) the next request retries.
        if leader && tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        if let Some(Ownership::Loading { cancel, .. }) = owned.remove(&index) {
            cancel.cancel();
        }
        self.reg.unload(index);
        if leader {
            let cancel = self.cancel.child_token();
            owned.insert(
                index,
                Ownership::Loading {
                    epoch,
                    cancel: cancel.clone(),
                },
            );
            tracing::info!(
                partition = index,
                epoch,
                "became coordinator: loading groups"
            );
            let mut tasks = self.reg.tasks.lock();
            while tasks.try_join_next().is_some() {}
            tasks.spawn(load_partition(LoadJob {
                reg: Arc::clone(&self.reg),
                partition: Arc::clone(partition),
                epoch,
                cancel,
                config: self.config.group,
                min_isr: Arc::clone(&self.offsets_min_isr),
                clock: self.clock,
                shutdown: self.cancel.clone(),
            }));
        }
    }

    /// The group's offsets partition if this node coordinates the group now; otherwise
    /// NOT_COORDINATOR, or COORDINATOR_LOAD_IN_PROGRESS while its load runs.
    fn coordinated(&self, group_id: &str) -> Result<Arc<Partition>, GroupError> {
        let topic = self
            .offsets_topic
            .read()
            .clone()
            .ok_or(GroupError::CoordinatorNotAvailable)?;
        let index = records::partition_for(group_id, topic.partition_count);
        // In a cluster this broker holds only the partitions it is a replica of.
        let partition = topic
            .local(index)
            .cloned()
            .ok_or(GroupError::NotCoordinator)?;
        self.reconcile(&partition);
        let owned = self.reg.owned.lock();
        match owned.get(&index) {
            Some(Ownership::Loaded { epoch })
                if partition.role() == Role::Leader && partition.leader_epoch() == *epoch =>
            {
                Ok(partition)
            }
            Some(Ownership::Loading { .. }) => Err(GroupError::CoordinatorLoadInProgress),
            _ => Err(GroupError::NotCoordinator),
        }
    }

    /// Stops every timer task and interrupts waiting requests' timers (shutdown).
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// `__consumer_offsets`, created on first use like Kafka's FindCoordinator does, with
    /// min(`offsets.topic.replication.factor`, [`Broker::offsets_topic_replication_cap`])
    /// replicas. Blocking (fsync or a controller round trip).
    pub fn ensure_offsets_topic(&self, broker: &Broker) -> Result<Arc<Topic>> {
        if let Some(t) = self.offsets_topic.read().clone() {
            return Ok(t);
        }
        let _creating = self.create.lock();
        if let Some(t) = self.offsets_topic.read().clone() {
            return Ok(t);
        }
        // Kafka refuses until enough brokers are alive; Gregor caps the factor (at 1 alone, at
        // the number of controller voters in a cluster) so a small cluster keeps working.
        let rf = self
            .config
            .offsets_replication_factor
            .min(broker.offsets_topic_replication_cap());
        // No time or size retention: without compaction in storage yet, deleting old segments
        // would lose the latest offsets of idle groups (Kafka compacts this topic instead).
        let configs = [
            ("retention.ms", "-1".to_string()),
            ("retention.bytes", "-1".to_string()),
            ("segment.bytes", OFFSETS_SEGMENT_BYTES.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        match broker.create_topic(
            OFFSETS_TOPIC,
            self.config.offsets_partitions,
            rf,
            configs,
            false,
        ) {
            Ok(_) | Err(BrokerError::TopicAlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
        let topic = broker
            .topic(OFFSETS_TOPIC)
            .ok_or_else(|| group_err("", GroupError::CoordinatorNotAvailable))?;
        self.offsets_min_isr
            .store(broker.min_insync_replicas(&topic), Ordering::Relaxed);
        // A fresh topic's partitions are empty: loading them inline means the first group
        // request is served instead of answered COORDINATOR_LOAD_IN_PROGRESS.
        let loaded = self.load_leading(&topic)?;
        if tokio::runtime::Handle::try_current().is_ok() {
            let mut timers = self.reg.timers.lock();
            for slot in loaded {
                timers.spawn(run_timer(slot, self.clock, self.cancel.clone()));
            }
        } else {
            self.reg.unstarted.lock().extend(loaded);
        }
        *self.offsets_topic.write() = Some(Arc::clone(&topic));
        Ok(topic)
    }

    /// Whether `__consumer_offsets` is ready (no blocking needed before group calls).
    pub fn is_ready(&self) -> bool {
        self.offsets_topic.read().is_some()
    }

    /// The group's slot, if this node coordinates the group (error otherwise) and it exists.
    fn slot(&self, group_id: &str) -> Result<Option<Arc<GroupSlot>>, GroupError> {
        // Without `__consumer_offsets` there are no groups anywhere.
        if self.offsets_topic.read().is_none() {
            return Ok(None);
        }
        self.coordinated(group_id)?;
        Ok(self.reg.groups.lock().get(group_id).cloned())
    }

    fn get_or_create(&self, group_id: &str) -> Result<Arc<GroupSlot>, GroupError> {
        let partition = self.coordinated(group_id)?;
        // Under the ownership lock, so an unload cannot run between the check and the insert
        // and leave a group of a partition this node no longer leads.
        let owned = self.reg.owned.lock();
        let loaded = matches!(
            owned.get(&partition.tp.partition),
            Some(Ownership::Loaded { epoch }) if *epoch == partition.leader_epoch()
        );
        if !loaded {
            return Err(GroupError::NotCoordinator);
        }
        let mut groups = self.reg.groups.lock();
        if let Some(s) = groups.get(group_id) {
            return Ok(Arc::clone(s));
        }
        let slot = new_slot(
            Group::new(group_id, self.config.group),
            partition,
            Arc::clone(&self.offsets_min_isr),
        );
        groups.insert(group_id.to_string(), Arc::clone(&slot));
        let mut timers = self.reg.timers.lock();
        // Reap finished timers (deleted groups) so the set does not grow without bound.
        while timers.try_join_next().is_some() {}
        timers.spawn(run_timer(
            Arc::clone(&slot),
            self.clock,
            self.cancel.clone(),
        ));
        Ok(slot)
    }

    /// A fresh member id: `<client or instance id>-<uuid>`, as Kafka makes them.
    pub fn member_id(prefix: &str) -> String {
        format!("{prefix}-{}", uuid::Uuid::new_v4())
    }

    /// Submits a request event and waits for its reply (JoinGroup/SyncGroup may wait for the
    /// rebalance). `create` makes the group if it does not exist.
    pub async fn submit(
        &self,
        shutdown: &CancellationToken,
        group_id: &str,
        create: bool,
        event: impl FnOnce(RequestId) -> Event,
    ) -> Result<Reply, Unanswered> {
        let slot = if create {
            self.get_or_create(group_id).map_err(Unanswered::Refused)?
        } else {
            self.slot(group_id)
                .map_err(Unanswered::Refused)?
                .ok_or(Unanswered::NoGroup)?
        };
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut inner = slot.inner.lock();
            // Unloaded (leadership lost) between the lookup and now.
            if inner.group.state() == GroupState::Dead {
                return Err(Unanswered::Refused(GroupError::NotCoordinator));
            }
            inner.waiters.insert(id, tx);
        }
        slot.step(self.clock, event(id));
        let (reply, write) = tokio::select! {
            delivery = rx => delivery.map_err(|_| Unanswered::Interrupted)?,
            _ = shutdown.cancelled() => {
                slot.inner.lock().waiters.remove(&id);
                return Err(Unanswered::Interrupted);
            }
            _ = self.cancel.cancelled() => {
                slot.inner.lock().waiters.remove(&id);
                return Err(Unanswered::Interrupted);
            }
        };
        let Some(write) = write else {
            return Ok(reply);
        };
        match self.replicated(&slot, &write.outcome, shutdown).await {
            Ok(()) => Ok(reply),
            Err(e) => {
                tracing::debug!(group = group_id, generation = write.generation, error = %e, "group metadata not replicated");
                // Kafka: reset the assignment, answer the error, rebalance. Every waiter of
                // this write reports it; the group rebalances once.
                slot.step(
                    self.clock,
                    Event::StoreFailed {
                        generation: write.generation,
                    },
                );
                Ok(with_error(reply, e))
            }
        }
    }

    /// Waits (bounded by `offsets.commit.timeout.ms`, no locks held) until the HW of the
    /// group's offsets partition passed a write; its failure as Kafka maps it.
    async fn replicated(
        &self,
        slot: &GroupSlot,
        outcome: &WriteOutcome,
        shutdown: &CancellationToken,
    ) -> Result<(), GroupError> {
        let (last_offset, epoch) = match outcome {
            WriteOutcome::Appended { last_offset, epoch } => (*last_offset, *epoch),
            WriteOutcome::Failed(e) => return Err(e.clone()),
        };
        let min_isr = self.offsets_min_isr.load(Ordering::Relaxed);
        let timeout_ms = self.config.offsets_commit_timeout_ms;
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(timeout_ms.max(0) as u64);
        let r = tokio::select! {
            r = slot.partition.wait_for_replication(last_offset, epoch, min_isr, deadline, timeout_ms, shutdown) => r,
            _ = self.cancel.cancelled() => Err(BrokerError::RequestTimedOut(timeout_ms)),
        };
        r.map_err(|e| write_error(&e))
    }

    /// OffsetCommit for one group: validates membership and generation, appends, waits until
    /// the offsets partition's HW passed the batch (bounded by `offsets.commit.timeout.ms`:
    /// REQUEST_TIMED_OUT), then updates the in-memory offsets. A lost leadership is
    /// NOT_COORDINATOR. An unknown group is created only for a commit outside group management
    /// (generation < 0), as Kafka does.
    pub async fn commit_offsets(
        &self,
        shutdown: &CancellationToken,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        offsets: Vec<(TopicPartitionKey, CommittedOffset)>,
    ) -> Result<()> {
        let slot = match self.slot(group_id).map_err(|e| group_err(group_id, e))? {
            Some(s) => s,
            None if generation_id < 0 => self
                .get_or_create(group_id)
                .map_err(|e| group_err(group_id, e))?,
            None => return Err(group_err(group_id, GroupError::IllegalGeneration)),
        };
        let min_isr = self.offsets_min_isr.load(Ordering::Relaxed);
        let (seq, last_offset, epoch) = {
            let mut inner = slot.inner.lock();
            if inner.group.state() == GroupState::Dead {
                return Err(group_err(group_id, GroupError::NotCoordinator));
            }
            inner
                .group
                .validate_commit(
                    self.clock.now(),
                    member_id,
                    group_instance_id,
                    generation_id,
                )
                .map_err(|e| group_err(group_id, e))?;
            if offsets.is_empty() {
                return Ok(());
            }
            let batch = offsets
                .iter()
                .map(|((t, p), o)| {
                    (
                        records::offset_key(group_id, t, *p),
                        Some(records::offset_value(o)),
                    )
                })
                .collect();
            let (last_offset, epoch) = append(&slot.partition, batch, Some(min_isr))
                .map_err(|e| not_leader_is_not_coordinator(group_id, e))?;
            let seq = self.next_request.fetch_add(1, Ordering::Relaxed);
            for (tp, _) in &offsets {
                inner.pending.insert(tp.clone(), seq);
            }
            (seq, last_offset, epoch)
        };
        let timeout_ms = self.config.offsets_commit_timeout_ms;
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(timeout_ms.max(0) as u64);
        let replicated = tokio::select! {
            r = slot.partition.wait_for_replication(last_offset, epoch, min_isr, deadline, timeout_ms, shutdown) => r,
            _ = self.cancel.cancelled() => Err(BrokerError::RequestTimedOut(timeout_ms)),
        };
        let mut inner = slot.inner.lock();
        for (tp, o) in offsets {
            if inner.pending.get(&tp) == Some(&seq) {
                inner.pending.remove(&tp);
                if replicated.is_ok() {
                    inner.group.offsets.insert(tp, o);
                }
            }
        }
        drop(inner);
        slot.wake.notify_one();
        replicated.map_err(|e| match e {
            // Kafka answers a commit whose replicas fell short with COORDINATOR_NOT_AVAILABLE.
            BrokerError::NotEnoughReplicasAfterAppend { .. }
            | BrokerError::NotEnoughReplicas { .. } => {
                group_err(group_id, GroupError::CoordinatorNotAvailable)
            }
            e => not_leader_is_not_coordinator(group_id, e),
        })
    }

    /// Committed offsets of a group: all of them (`None`), or the requested partitions (`None`
    /// for a partition without a commit). An unknown group has no offsets.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        wanted: Option<Vec<TopicPartitionKey>>,
    ) -> Result<Vec<(TopicPartitionKey, Option<CommittedOffset>)>, GroupError> {
        let Some(slot) = self.slot(group_id)? else {
            return Ok(wanted
                .unwrap_or_default()
                .into_iter()
                .map(|tp| (tp, None))
                .collect());
        };
        let inner = slot.inner.lock();
        Ok(match wanted {
            None => inner
                .group
                .offsets
                .iter()
                .map(|(tp, o)| (tp.clone(), Some(o.clone())))
                .collect(),
            Some(list) => list
                .into_iter()
                .map(|tp| {
                    let o = inner.group.offsets.get(&tp).cloned();
                    (tp, o)
                })
                .collect(),
        })
    }

    /// Every group: (id, protocol type, state).
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        // Only groups of partitions this node leads are registered.
        let slots: Vec<(String, Arc<GroupSlot>)> = self
            .reg
            .groups
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        let mut out: Vec<_> = slots
            .into_iter()
            .map(|(id, s)| {
                let inner = s.inner.lock();
                let g = &inner.group;
                (
                    id,
                    g.protocol_type().unwrap_or_default().to_string(),
                    g.state(),
                )
            })
            .filter(|(_, _, state)| *state != GroupState::Dead)
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// DescribeGroups' view of one group, if it exists (error: not coordinated here).
    pub fn describe(&self, group_id: &str) -> Result<Option<GroupSummary>, GroupError> {
        let Some(slot) = self.slot(group_id)? else {
            return Ok(None);
        };
        let inner = slot.inner.lock();
        Ok(Some(inner.group.summary()))
    }

    /// DeleteGroups: an empty group's offsets and metadata are tombstoned, then it is gone. The
    /// answer waits until the tombstones are replicated (errors as Kafka maps them,
    /// `write_error`).
    pub async fn delete_group(&self, shutdown: &CancellationToken, group_id: &str) -> Result<()> {
        let (slot, written) = self.delete_group_locally(group_id)?;
        self.replicated(&slot, &written, shutdown)
            .await
            .map_err(|e| group_err(group_id, e))
    }

    /// The locked part of [`GroupCoordinator::delete_group`]: checks, appends the tombstones,
    /// drops the group. Returns the write to wait for.
    fn delete_group_locally(&self, group_id: &str) -> Result<(Arc<GroupSlot>, WriteOutcome)> {
        self.coordinated(group_id)
            .map_err(|e| group_err(group_id, e))?;
        let mut groups = self.reg.groups.lock();
        let slot = groups
            .get(group_id)
            .cloned()
            .ok_or_else(|| group_err(group_id, GroupError::GroupIdNotFound))?;
        let mut inner = slot.inner.lock();
        inner
            .group
            .check_deletable()
            .map_err(|e| group_err(group_id, e))?;
        let mut tombstones: Vec<(Bytes, Option<Bytes>)> = inner
            .group
            .offsets
            .keys()
            .map(|(t, p)| (records::offset_key(group_id, t, *p), None))
            .collect();
        tombstones.push((records::group_key(group_id), None));
        let min_isr = self.offsets_min_isr.load(Ordering::Relaxed);
        let (last_offset, epoch) = append(&slot.partition, tombstones, Some(min_isr))
            .map_err(|e| group_err(group_id, write_error(&e)))?;
        inner.group.offsets.clear();
        inner.group.mark_dead();
        groups.remove(group_id);
        drop(inner);
        drop(groups);
        slot.wake.notify_one();
        Ok((slot, WriteOutcome::Appended { last_offset, epoch }))
    }

    /// OffsetDelete: removes the offsets of partitions of topics the group does not consume.
    /// `Err` is a group-level error (also when the tombstones are not replicated in time,
    /// `write_error`); otherwise one result per requested partition.
    pub async fn delete_offsets(
        &self,
        shutdown: &CancellationToken,
        group_id: &str,
        partitions: Vec<TopicPartitionKey>,
    ) -> Result<Vec<(TopicPartitionKey, Option<GroupError>)>> {
        let (results, written) = self.delete_offsets_locally(group_id, partitions)?;
        if let Some((slot, written)) = written {
            self.replicated(&slot, &written, shutdown)
                .await
                .map_err(|e| group_err(group_id, e))?;
        }
        Ok(results)
    }

    /// The locked part of [`GroupCoordinator::delete_offsets`]; returns the write to wait for,
    /// if any tombstone was written.
    #[allow(clippy::type_complexity)] // a private helper's (results, pending write) pair
    fn delete_offsets_locally(
        &self,
        group_id: &str,
        partitions: Vec<TopicPartitionKey>,
    ) -> Result<(
        Vec<(TopicPartitionKey, Option<GroupError>)>,
        Option<(Arc<GroupSlot>, WriteOutcome)>,
    )> {
        let slot = self
            .slot(group_id)
            .map_err(|e| group_err(group_id, e))?
            .ok_or_else(|| group_err(group_id, GroupError::GroupIdNotFound))?;
        let mut inner = slot.inner.lock();
        let checks = inner
            .group
            .check_offset_delete(partitions.iter().map(|(t, _)| t.as_str()))
            .map_err(|e| group_err(group_id, e))?;
        let results: Vec<_> = partitions.into_iter().zip(checks).collect();
        let tombstones: Vec<(Bytes, Option<Bytes>)> = results
            .iter()
            .filter(|(tp, err)| err.is_none() && inner.group.offsets.contains_key(tp))
            .map(|((t, p), _)| (records::offset_key(group_id, t, *p), None))
            .collect();
        let mut written = None;
        if !tombstones.is_empty() {
            let min_isr = self.offsets_min_isr.load(Ordering::Relaxed);
            let (last_offset, epoch) = append(&slot.partition, tombstones, Some(min_isr))
                .map_err(|e| group_err(group_id, write_error(&e)))?;
            written = Some(WriteOutcome::Appended { last_offset, epoch });
        }
        for (tp, err) in &results {
            if err.is_none() {
                inner.group.offsets.remove(tp);
            }
        }
        drop(inner);
        Ok((results, written.map(|w| (slot, w))))
    }
}

fn group_err(group: &str, source: GroupError) -> BrokerError {
    BrokerError::Group {
        group: group.to_string(),
        source,
    }
}

/// A write to an offsets partition this node no longer leads: the client must find the new
/// coordinator.
fn not_leader_is_not_coordinator(group: &str, e: BrokerError) -> BrokerError {
    match e {
        BrokerError::NotLeaderOrFollower { .. }
        | BrokerError::FencedLeaderEpoch(_)
        | BrokerError::UnknownLeaderEpoch(_) => group_err(group, GroupError::NotCoordinator),
        e => e,
    }
}

/// Kafka's answer for a group-metadata or tombstone write to `__consumer_offsets` that failed or
/// was not replicated in time (`GroupMetadataManager.appendGroupMetadataErrorToResponseError`,
/// and the coordinator runtime's `handleOperationException` for DeleteGroups/OffsetDelete): too
/// few in-sync replicas or a timeout → COORDINATOR_NOT_AVAILABLE; a lost leadership or a storage
/// error → NOT_COORDINATOR (the client looks the coordinator up again). Anything else (Kafka:
/// UNKNOWN_SERVER_ERROR for oversized batches, which these small writes never are) is
/// COORDINATOR_NOT_AVAILABLE, so the client retries.
fn write_error(e: &BrokerError) -> GroupError {
    match e {
        BrokerError::NotLeaderOrFollower { .. }
        | BrokerError::FencedLeaderEpoch(_)
        | BrokerError::UnknownLeaderEpoch(_)
        | BrokerError::Storage(_) => GroupError::NotCoordinator,
        BrokerError::Group { source, .. } => source.clone(),
        _ => GroupError::CoordinatorNotAvailable,
    }
}

/// Whether a reply waits for the group-metadata write of its generation: successful
/// JoinGroup/SyncGroup answers (errors and other APIs are answered at once).
fn needs_store(reply: &Reply) -> bool {
    match reply {
        Reply::Join(r) => r.error.is_none(),
        Reply::Sync(r) => r.error.is_none(),
        Reply::Heartbeat(_) | Reply::Leave(_) => false,
    }
}

/// `reply` turned into the error answer of its API.
fn with_error(reply: Reply, error: GroupError) -> Reply {
    match reply {
        Reply::Join(r) => Reply::Join(JoinResponse {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            members: Vec::new(),
            member_id: r.member_id,
        }),
        Reply::Sync(_) => Reply::Sync(SyncResponse {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }),
        other => other,
    }
}

fn new_slot(group: Group, partition: Arc<Partition>, min_isr: Arc<AtomicI32>) -> Arc<GroupSlot> {
    Arc::new(GroupSlot {
        partition,
        min_isr,
        inner: Mutex::new(SlotInner {
            group,
            waiters: HashMap::new(),
            last_store: None,
            pending: HashMap::new(),
        }),
        wake: Notify::new(),
    })
}

/// Replays one offsets partition to its log end (a new leader's log is the committed log after
/// truncation) and builds its groups. Blocking.
fn load_groups(
    partition: &Arc<Partition>,
    config: GroupConfig,
    now: i64,
    min_isr: &Arc<AtomicI32>,
) -> Result<Vec<(String, Arc<GroupSlot>)>> {
    let mut latest: BTreeMap<Key, Option<Bytes>> = BTreeMap::new();
    replay(partition, &mut latest)?;
    let mut offsets: HashMap<String, BTreeMap<TopicPartitionKey, CommittedOffset>> = HashMap::new();
    let mut metadata: HashMap<String, StoredGroup> = HashMap::new();
    for (key, value) in latest {
        let Some(value) = value else { continue };
        match key {
            Key::Offset {
                group,
                topic,
                partition,
            } => match records::decode_offset_value(value) {
                Ok(o) => {
                    offsets
                        .entry(group)
                        .or_default()
                        .insert((topic, partition), o);
                }
                Err(e) => tracing::warn!(%group, error = %e, "skipping offset record"),
            },
            Key::Group(group) => match records::decode_group_value(value) {
                Ok(g) => {
                    metadata.insert(group, g);
                }
                Err(e) => tracing::warn!(%group, error = %e, "skipping group record"),
            },
        }
    }
    let mut ids: Vec<String> = offsets.keys().chain(metadata.keys()).cloned().collect();
    ids.sort();
    ids.dedup();
    Ok(ids
        .into_iter()
        .map(|id| {
            let stored = metadata.remove(&id).unwrap_or(StoredGroup {
                protocol_type: String::new(),
                generation: 0,
                protocol: None,
                leader: None,
                current_state_timestamp: -1,
                members: Vec::new(),
            });
            let group = Group::load(
                id.clone(),
                config,
                stored,
                offsets.remove(&id).unwrap_or_default(),
                now,
            );
            (
                id,
                new_slot(group, Arc::clone(partition), Arc::clone(min_isr)),
            )
        })
        .collect())
}

/// One partition load (see [`load_partition`]).
struct LoadJob {
    reg: Arc<Registry>,
    partition: Arc<Partition>,
    epoch: i32,
    /// Cancelled when the leadership this load is for ends.
    cancel: CancellationToken,
    config: GroupConfig,
    min_isr: Arc<AtomicI32>,
    clock: Clock,
    shutdown: CancellationToken,
}

/// Replays an offsets partition off the runtime and installs its groups, unless the
/// leadership it was started for ended meanwhile.
async fn load_partition(job: LoadJob) {
    let index = job.partition.tp.partition;
    let partition = Arc::clone(&job.partition);
    let (config, now, min_isr) = (job.config, job.clock.now(), Arc::clone(&job.min_isr));
    let read = tokio::select! {
        r = tokio::task::spawn_blocking(move || load_groups(&partition, config, now, &min_isr)) => r,
        _ = job.cancel.cancelled() => return,
    };
    let mut owned = job.reg.owned.lock();
    let current = matches!(
        owned.get(&index),
        Some(Ownership::Loading { epoch, cancel }) if *epoch == job.epoch && !cancel.is_cancelled()
    );
    if !current {
        return;
    }
    match read {
        Ok(Ok(slots)) => {
            tracing::info!(
                partition = index,
                epoch = job.epoch,
                groups = slots.len(),
                "loaded consumer groups from {OFFSETS_TOPIC}"
            );
            job.reg.install(slots, job.clock, &job.shutdown);
            owned.insert(index, Ownership::Loaded { epoch: job.epoch });
        }
        Ok(Err(e)) => {
            // Forget the attempt: the next request or leadership change starts another.
            tracing::warn!(partition = index, error = %crate::error::message(&e), "cannot load {OFFSETS_TOPIC}");
            owned.remove(&index);
        }
        Err(e) => {
            tracing::warn!(partition = index, error = %e, "{OFFSETS_TOPIC} load task failed");
            owned.remove(&index);
        }
    }
}

/// Re-checks the offsets partitions whenever some partition's role changes. Holds the broker
/// weakly (the broker owns the coordinator that owns this task).
async fn watch_leadership(
    broker: Weak<Broker>,
    mut changes: tokio::sync::watch::Receiver<u64>,
    cancel: CancellationToken,
) {
    loop {
        {
            let Some(b) = broker.upgrade() else { return };
            b.groups().reconcile_all(&b);
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}

async fn run_timer(slot: Arc<GroupSlot>, clock: Clock, cancel: CancellationToken) {
    loop {
        let deadline = {
            let inner = slot.inner.lock();
            if inner.group.state() == GroupState::Dead {
                return;
            }
            inner.group.next_deadline()
        };
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(clock.instant(d)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            // A step may have moved the deadline; recompute it.
            _ = slot.wake.notified() => {}
            _ = sleep => slot.step(clock, Event::Tick),
        }
    }
}

/// Appends one uncompressed batch of (key, value) records (a `None` value is a tombstone) to a
/// `__consumer_offsets` partition as its leader (NOT_LEADER_OR_FOLLOWER otherwise) and recomputes
/// its high watermark (single node: the ISR is this node, so HW = LEO). The page-cache write
/// happens inline, as Produce does it.
fn append(
    partition: &Partition,
    entries: Vec<(Bytes, Option<Bytes>)>,
    min_isr: Option<i32>,
) -> Result<(i64, i32)> {
    let now = now_ms();
    let records: Vec<Record> = entries
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch when offset - sequence changes; keep one batch.
            sequence: i as i32 - 1,
            timestamp: now,
            key: Some(key),
            value,
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| BrokerError::InvalidRecord(format!("cannot encode group records: {e}")))?;
    let records = buf.freeze();
    // Only the leader appends, stamping its epoch; the HW moves as the ISR replicates it.
    let (info, epoch) = partition.append_as_leader(min_isr, None, |log, epoch| {
        Ok(log.append_as_leader(records, epoch, now)?)
    })?;
    Ok((info.last_offset, epoch))
}

/// Size of a v2 record batch header; anything shorter cannot be a batch.
const BATCH_HEADER: usize = 61;

/// Reads a `__consumer_offsets` partition from its start to its end, keeping the last value per
/// key. Undecodable batches and records are logged and skipped: disk input never panics.
fn replay(partition: &Partition, latest: &mut BTreeMap<Key, Option<Bytes>>) -> Result<()> {
    let log = partition.log.read();
    // Single node: everything in the log was acknowledged, so replay to the log end.
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    while offset < end {
        let read = log.read(offset, 1 << 20, end, true)?;
        let mut rest = read.records;
        let mut progressed = false;
        while rest.len() >= BATCH_HEADER {
            let base = i64::from_be_bytes(rest[0..8].try_into().unwrap_or([0; 8]));
            let len = i32::from_be_bytes(rest[8..12].try_into().unwrap_or([0; 4]));
            let last_delta = i32::from_be_bytes(rest[23..27].try_into().unwrap_or([0; 4]));
            let Ok(total) = usize::try_from(len).map(|l| l + 12) else {
                break;
            };
            if total > rest.len() || total < BATCH_HEADER {
                break;
            }
            let mut batch = rest.split_to(total);
            match RecordBatchDecoder::decode(&mut batch) {
                Ok(set) => {
                    for r in set.records.into_iter().filter(|r| !r.control) {
                        let Some(key) = r.key else {
                            tracing::warn!("skipping {OFFSETS_TOPIC} record without a key");
                            continue;
                        };
                        match records::decode_key(key) {
                            Ok(k) => {
                                latest.insert(k, r.value);
                            }
                            Err(e) => tracing::warn!(error = %e, "skipping {OFFSETS_TOPIC} record"),
                        }
                    }
                }
                Err(e) => tracing::warn!(offset = base, error = %e, "skipping undecodable batch"),
            }
            offset = base + i64::from(last_delta) + 1;
            progressed = true;
        }
        if !progressed {
            tracing::warn!(
                offset,
                "stopping {OFFSETS_TOPIC} replay at an unreadable batch"
            );
            break;
        }
    }
    Ok(())
}
