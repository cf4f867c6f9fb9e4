//! The replication data plane: each partition's replica state machine (leader / follower /
//! none), the leader's high watermark and ISR bookkeeping, the follower fetchers and the gRPC
//! `Replication` service. The rules are Kafka's; `docs/replication.md` lists them with the KIPs
//! and every choice Kafka leaves open.
//!
//! - This module: [`ReplicaState`] (per partition, behind a mutex that is never held across an
//!   `.await`), the [`crate::broker::Partition`] methods that drive it, and [`serve`], the
//!   entry point that runs the service, the fetchers and ISR maintenance.
//! - [`leader`]: pure leader bookkeeping (follower progress, HW, ISR proposals, which fetch
//!   positions count as progress, truncation).
//! - [`fetcher`]: one fetch loop per leader broker, one request in flight.
//! - [`service`]: the leader side of `Replication.Fetch` and `DescribeReplicas`.

pub mod fetcher;
pub mod leader;
pub mod service;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, Partition, now_ms};
use crate::cluster::{AlterIsr, BrokerId, IsrCommitted, PartitionAssignment};
use crate::error::{BrokerError, Result};
use leader::{LeaderState, maximal_isr};

/// This node's role for one partition, derived from the assignment and the node id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// This node leads the partition.
    Leader,
    /// This node is a replica and fetches from `leader`.
    Follower {
        /// The leader to fetch from.
        leader: BrokerId,
    },
    /// Not a replica, or the partition is offline (no leader).
    None,
}

/// What [`Partition::apply_assignment`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// The role, the leader or the leader epoch changed (fetchers must re-read their work).
    pub role_changed: bool,
}

/// One partition's replica state.
#[derive(Debug)]
pub struct ReplicaState {
    node: BrokerId,
    assignment: PartitionAssignment,
    role: Role,
    /// `Some` exactly while `role` is [`Role::Leader`].
    leader: Option<LeaderState>,
    /// The AlterIsr in flight (at most one per partition): its (leader epoch, partition
    /// epoch) and proposed ISR.
    isr_in_flight: Option<((i32, i32), Vec<BrokerId>)>,
    /// The (leader epoch, partition epoch) a refused AlterIsr was based on: no new proposal
    /// until the metadata moves past it.
    isr_refused_at: Option<(i32, i32)>,
    /// The topic's `min.insync.replicas` as last seen by a caller that knows the topic (the
    /// `__consumer_offsets` append path does not). Unknown (`i32::MAX`) until then, which the
    /// effective minimum turns into "every replica".
    min_isr: i32,
}

impl ReplicaState {
    /// The state of a partition of `node` before any assignment (not a replica).
    pub fn new(node: BrokerId) -> Self {
        ReplicaState {
            node,
            assignment: PartitionAssignment {
                leader: None,
                leader_epoch: -1,
                partition_epoch: -1,
                replicas: Vec::new(),
                isr: Vec::new(),
                elr: Vec::new(),
            },
            role: Role::None,
            leader: None,
            isr_in_flight: None,
            isr_refused_at: None,
            min_isr: i32::MAX,
        }
    }

    /// The assignment in force.
    pub fn assignment(&self) -> &PartitionAssignment {
        &self.assignment
    }

    /// The role in force.
    pub fn role(&self) -> Role {
        self.role
    }

    fn role_for(&self, a: &PartitionAssignment) -> Role {
        match a.leader {
            Some(l) if l == self.node => Role::Leader,
            Some(l) if a.replicas.contains(&self.node) => Role::Follower { leader: l },
            _ => Role::None,
        }
    }

    /// KIP-320 fencing of a caller's `current_leader_epoch` (negative: not given).
    fn check_epoch(&self, requested: i32) -> Result<()> {
        let ours = self.assignment.leader_epoch;
        match requested {
            e if e < 0 => Ok(()),
            e if e < ours => Err(BrokerError::FencedLeaderEpoch(e)),
            e if e > ours => Err(BrokerError::UnknownLeaderEpoch(e)),
            _ => Ok(()),
        }
    }

    fn not_leader(&self, p: &Partition) -> BrokerError {
        BrokerError::NotLeaderOrFollower {
            topic: p.tp.topic.clone(),
            partition: p.tp.partition,
        }
    }
}

/// Replication counters (for tests and tools).
#[derive(Debug, Default)]
pub struct ReplicaStats {
    /// Fetched batches a follower refused to append (bad CRC, not contiguous, ...).
    pub rejected_fetches: AtomicU64,
    /// Divergence truncations a follower performed.
    pub truncations: AtomicU64,
    /// ISR changes this node's leaderships had committed.
    pub isr_changes: AtomicU64,
}

/// Fault injection for tests of the replication protocol. Production code only reads them;
/// all are off by default.
#[derive(Debug, Default)]
pub struct Failpoints {
    /// The leader flips one byte of the next N non-empty record sets it serves to followers.
    pub corrupt_fetch_records: AtomicU32,
    /// The leader sends its log start offset instead of its HW to followers (KIP-101
    /// scenario: the HW does not propagate).
    pub withhold_high_watermark: AtomicBool,
}

impl Failpoints {
    /// Takes one "corrupt" token, if any.
    pub(crate) fn take_corruption(&self) -> bool {
        self.corrupt_fetch_records
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// What a follower sends for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowState {
    /// The leader to fetch from.
    pub leader: BrokerId,
    /// The leader epoch the follower believes is current.
    pub leader_epoch: i32,
    /// The follower's log end offset.
    pub fetch_offset: i64,
    /// The epoch of the follower's last batch (-1: empty log).
    pub last_fetched_epoch: i32,
    /// The follower's log start offset.
    pub log_start_offset: i64,
}

impl Partition {
    /// The current role.
    pub fn role(&self) -> Role {
        self.replica.lock().role
    }

    /// The current leader epoch.
    pub fn leader_epoch(&self) -> i32 {
        self.replica.lock().assignment.leader_epoch
    }

    /// Wakes everyone waiting on the HW watch (acks=all waits re-check leadership and ISR;
    /// fetch long-polls re-read).
    fn wake(&self) {
        self.hw.send_modify(|_| {});
    }

    fn publish_log_end(&self, leo: i64) {
        self.leo.send_if_modified(|v| {
            let changed = *v != leo;
            *v = leo;
            changed
        });
    }

    /// Applies an assignment (see [`Broker::apply_assignment`]).
    pub fn apply_assignment(&self, a: PartitionAssignment, now: i64) -> Result<Applied> {
        let mut st = self.replica.lock();
        let cur = &st.assignment;
        if (a.leader_epoch, a.partition_epoch) < (cur.leader_epoch, cur.partition_epoch) {
            tracing::debug!(tp = %self.tp, ?a, held = ?cur, "ignoring a stale assignment");
            return Ok(Applied::default());
        }
        let role = st.role_for(&a);
        let new_term = role != st.role || a.leader_epoch != st.assignment.leader_epoch;
        let old_isr = st.assignment.isr.clone();
        match role {
            Role::Leader if new_term => {
                let mut log = self.log.write();
                // KIP-101: the new epoch starts at the log end, before anything is written in it.
                log.assign_epoch_at_end(a.leader_epoch)?;
                let leo = log.log_end_offset();
                drop(log);
                st.leader = Some(LeaderState::new(
                    a.leader_epoch,
                    leo,
                    st.node,
                    &a.replicas,
                    &a.isr,
                    now,
                ));
                st.isr_in_flight = None;
                st.isr_refused_at = None;
                if a.replicas.len() > 1 {
                    tracing::info!(tp = %self.tp, epoch = a.leader_epoch, leo, isr = ?a.isr, "became leader");
                }
            }
            Role::Leader => {
                let node = st.node;
                if let Some(l) = st.leader.as_mut() {
                    l.sync_replicas(node, &a.replicas, &a.isr, now);
                }
            }
            Role::Follower { leader } if new_term => {
                st.leader = None;
                st.isr_in_flight = None;
                // Terms this replica led without writing must not stay in its cache: the new
                // leader's batches may carry older epochs.
                self.log.write().drop_epochs_past_end()?;
                tracing::info!(tp = %self.tp, leader, epoch = a.leader_epoch, "became follower");
            }
            Role::Follower { .. } => {}
            Role::None => {
                if st.role != Role::None {
                    tracing::info!(tp = %self.tp, epoch = a.leader_epoch, "no longer a replica or offline");
                }
                st.leader = None;
                st.isr_in_flight = None;
            }
        }
        if a.isr != old_isr || a.partition_epoch != st.assignment.partition_epoch {
            st.isr_refused_at = None;
        }
        st.role = role;
        st.assignment = a;
        // A new leader whose ISR is already complete (a single node after a restart) need not
        // wait for an append to expose its log.
        self.advance_hw_locked(&mut st, None);
        drop(st);
        // Waiters re-check: a lost leadership fails acks=all, a shrunk ISR fails it with 20.
        self.wake();
        Ok(Applied {
            role_changed: new_term,
        })
    }

    /// Checks a Kafka client's `current_leader_epoch` (KIP-320) and that this node leads the
    /// partition (consumers read only from the leader). Returns the leader epoch.
    pub fn check_leader(&self, requested_epoch: i32) -> Result<i32> {
        let st = self.replica.lock();
        st.check_epoch(requested_epoch)?;
        if st.role != Role::Leader {
            return Err(st.not_leader(self));
        }
        Ok(st.assignment.leader_epoch)
    }

    /// The current leader and epoch, for KIP-951 style hints in error responses.
    pub fn leader_hint(&self) -> (Option<BrokerId>, i32) {
        let st = self.replica.lock();
        (st.assignment.leader, st.assignment.leader_epoch)
    }

    /// The start offset of the current leadership term (`None` unless leader).
    pub fn leader_epoch_start(&self) -> Option<i64> {
        self.replica
            .lock()
            .leader
            .as_ref()
            .map(|l| l.epoch_start_offset)
    }

    /// Appends as the leader: `append` runs under the log's write lock with the leader epoch to
    /// stamp, then the log end is published and the HW recomputed. Fails with
    /// NOT_LEADER_OR_FOLLOWER on a non-leader, and (when `required_isr` is given, acks=all)
    /// with NOT_ENOUGH_REPLICAS if the committed ISR is smaller, before anything is written.
    /// Returns `append`'s result and the leader epoch used.
    pub fn append_as_leader<T>(
        &self,
        min_isr: Option<i32>,
        required_isr: Option<i32>,
        append: impl FnOnce(&mut gregor_storage::PartitionLog, i32) -> Result<T>,
    ) -> Result<(T, i32)> {
        let mut st = self.replica.lock();
        if st.role != Role::Leader {
            return Err(st.not_leader(self));
        }
        if let Some(min) = required_isr {
            let isr = st.assignment.isr.len() as i32;
            if isr < min {
                return Err(BrokerError::NotEnoughReplicas { isr, min_isr: min });
            }
        }
        let epoch = st.assignment.leader_epoch;
        let mut log = self.log.write();
        let out = append(&mut log, epoch)?;
        let leo = log.log_end_offset();
        drop(log);
        self.publish_log_end(leo);
        self.advance_hw_locked(&mut st, min_isr);
        Ok((out, epoch))
    }

    /// Recomputes the leader's HW (no-op on a follower).
    pub fn maybe_advance_high_watermark(&self, min_isr: i32) -> Result<()> {
        let mut st = self.replica.lock();
        self.advance_hw_locked(&mut st, Some(min_isr));
        Ok(())
    }

    /// HW = min LEO over the maximal ISR, only while |committed ISR| ≥ min.insync.replicas,
    /// never backwards. Publishes it when it moved.
    fn advance_hw_locked(&self, st: &mut ReplicaState, min_isr: Option<i32>) {
        if let Some(m) = min_isr {
            st.min_isr = m;
        }
        // Kafka's effective minimum: min.insync.replicas capped at the replication factor, so a
        // single replica (or RF below the minimum) still moves its HW (acks=all is refused
        // separately, on the configured value).
        let min_isr = st
            .min_isr
            .min(i32::try_from(st.assignment.replicas.len()).unwrap_or(i32::MAX))
            .max(1);
        let Some(leader) = st.leader.as_ref() else {
            return;
        };
        let maximal = maximal_isr(
            &st.assignment.isr,
            st.isr_in_flight.as_ref().map(|(_, isr)| isr.as_slice()),
        );
        let mut log = self.log.write();
        let leo = log.log_end_offset();
        let Some(candidate) =
            leader.high_watermark(st.node, leo, &maximal, st.assignment.isr.len(), min_isr)
        else {
            return;
        };
        let current = log.high_watermark();
        if candidate > current {
            log.set_high_watermark(candidate);
            let hw = log.high_watermark();
            drop(log);
            self.hw.send_replace(hw);
        }
    }

    /// Waits until the HW passes `last_offset` (acks=all), as leader in `epoch`. Fails with
    /// NOT_LEADER_OR_FOLLOWER when leadership moved (indeterminate: the batch is in the log),
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND when the committed ISR fell below `min_isr`, and
    /// REQUEST_TIMED_OUT at `deadline`.
    pub async fn wait_for_replication(
        &self,
        last_offset: i64,
        epoch: i32,
        min_isr: i32,
        deadline: Instant,
        timeout_ms: i64,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        let mut rx = self.subscribe();
        loop {
            {
                let st = self.replica.lock();
                if st.role != Role::Leader || st.assignment.leader_epoch != epoch {
                    return Err(st.not_leader(self));
                }
                if self.log.read().high_watermark() > last_offset {
                    return Ok(());
                }
                let isr = st.assignment.isr.len() as i32;
                if isr < min_isr {
                    return Err(BrokerError::NotEnoughReplicasAfterAppend { isr, min_isr });
                }
            }
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        // The partition was deleted.
                        return Err(BrokerError::NotLeaderOrFollower {
                            topic: self.tp.topic.clone(),
                            partition: self.tp.partition,
                        });
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(BrokerError::RequestTimedOut(timeout_ms));
                }
                _ = shutdown.cancelled() => {
                    return Err(BrokerError::RequestTimedOut(timeout_ms));
                }
            }
        }
    }

    /// Validates a replica fetch: the caller's epoch (74/75), this node leads and the caller is
    /// an assigned replica (6 otherwise).
    pub(crate) fn check_replica_fetch(&self, follower: BrokerId, epoch: i32) -> Result<()> {
        let st = self.replica.lock();
        st.check_epoch(epoch)?;
        if st.role != Role::Leader || !st.assignment.replicas.contains(&follower) {
            return Err(st.not_leader(self));
        }
        Ok(())
    }

    /// Leader side of a replica fetch: validates the caller and its epoch and, when its fetch
    /// position is consistent with this log ([`leader::fetch_position`]: not diverged, within
    /// bounds), records the fetch offset as its progress and recomputes the HW. Returns whether
    /// progress of a caller outside the committed ISR was recorded (so the ISR check runs soon).
    pub(crate) fn record_follower_fetch(
        &self,
        follower: BrokerId,
        current_leader_epoch: i32,
        fetch: (i64, i32),
        min_isr: i32,
        now: i64,
    ) -> Result<bool> {
        let (fetch_offset, last_fetched_epoch) = fetch;
        let mut st = self.replica.lock();
        st.check_epoch(current_leader_epoch)?;
        if st.role != Role::Leader || !st.assignment.replicas.contains(&follower) {
            return Err(st.not_leader(self));
        }
        let (position, leo) = {
            let log = self.log.read();
            let position = leader::fetch_position(
                last_fetched_epoch,
                fetch_offset,
                |e| log.end_offset_for_epoch(e),
                log.log_start_offset(),
                log.log_end_offset(),
            );
            (position, log.log_end_offset())
        };
        // A diverged or out-of-range fetch offset says nothing about the follower's log; the
        // reply tells it to truncate (or restart) and its next fetch is recorded.
        if position != leader::FetchPosition::Valid {
            return Ok(false);
        }
        if let Some(l) = st.leader.as_mut() {
            l.record_fetch(follower, fetch_offset, leo, now);
        }
        let outside = !st.assignment.isr.contains(&follower);
        self.advance_hw_locked(&mut st, Some(min_isr));
        Ok(outside)
    }

    /// The ISR change to propose now, if any; marks it in flight. `None` while one is in
    /// flight or after a refusal until new metadata arrives.
    pub(crate) fn isr_proposal(&self, lag_max_ms: i64, now: i64) -> Option<AlterIsr> {
        let mut st = self.replica.lock();
        if st.isr_in_flight.is_some() {
            return None;
        }
        let a = &st.assignment;
        if st.isr_refused_at == Some((a.leader_epoch, a.partition_epoch)) {
            return None;
        }
        let leader = st.leader.as_ref()?;
        let hw = self.log.read().high_watermark();
        let new_isr = leader.isr_change(st.node, &a.replicas, &a.isr, hw, lag_max_ms, now)?;
        let request = AlterIsr {
            topic: self.tp.topic.clone(),
            partition: self.tp.partition,
            leader_epoch: a.leader_epoch,
            partition_epoch: a.partition_epoch,
            new_isr: new_isr.clone(),
        };
        st.isr_in_flight = Some(((request.leader_epoch, request.partition_epoch), new_isr));
        Some(request)
    }

    /// Takes in the outcome of an AlterIsr this partition proposed.
    pub(crate) fn isr_outcome(
        &self,
        request: &AlterIsr,
        outcome: Result<IsrCommitted>,
        min_isr: i32,
    ) {
        let mut st = self.replica.lock();
        // A new term may have started (and proposed) since: only our own proposal is cleared.
        if st
            .isr_in_flight
            .as_ref()
            .is_some_and(|(base, _)| *base == (request.leader_epoch, request.partition_epoch))
        {
            st.isr_in_flight = None;
        }
        match outcome {
            Ok(c) => {
                let a = &mut st.assignment;
                // The commit may already have arrived through the metadata path (or a newer
                // change after it): the partition epoch orders them.
                if c.leader_epoch == a.leader_epoch && c.partition_epoch > a.partition_epoch {
                    tracing::info!(tp = %self.tp, isr = ?c.isr, partition_epoch = c.partition_epoch, "ISR changed");
                    a.isr = c.isr;
                    a.partition_epoch = c.partition_epoch;
                }
            }
            Err(e) => {
                tracing::info!(tp = %self.tp, error = %e, proposed = ?request.new_isr, "ISR change refused; waiting for new metadata");
                st.isr_refused_at = Some((request.leader_epoch, request.partition_epoch));
            }
        }
        self.advance_hw_locked(&mut st, Some(min_isr));
        drop(st);
        self.wake();
    }

    /// What a follower fetches next, or `None` when this node does not follow the partition.
    pub fn follow_state(&self) -> Option<FollowState> {
        let st = self.replica.lock();
        let Role::Follower { leader } = st.role else {
            return None;
        };
        let log = self.log.read();
        Some(FollowState {
            leader,
            leader_epoch: st.assignment.leader_epoch,
            fetch_offset: log.log_end_offset(),
            last_fetched_epoch: log.latest_epoch().unwrap_or(-1),
            log_start_offset: log.log_start_offset(),
        })
    }

    /// Follower: truncates after a `diverging_epoch` reply, if still following in `epoch`.
    pub(crate) fn truncate_diverged(&self, epoch: i32, diverging: (i32, i64)) -> Result<i64> {
        let st = self.replica.lock();
        if !matches!(st.role, Role::Follower { .. }) || st.assignment.leader_epoch != epoch {
            return Ok(self.log.read().log_end_offset());
        }
        let mut log = self.log.write();
        let leo = log.log_end_offset();
        let local = if diverging.0 >= 0 {
            log.end_offset_for_epoch(diverging.0)
        } else {
            None
        };
        let target = leader::truncation_offset(diverging, local, leo);
        tracing::info!(tp = %self.tp, ?diverging, ?local, leo, target, "truncating a diverged log");
        if target < log.log_start_offset() {
            log.truncate_to(target.max(0))?;
        } else {
            log.truncate_to(target)?;
        }
        let new_leo = log.log_end_offset();
        let hw = log.high_watermark();
        drop(log);
        drop(st);
        self.publish_log_end(new_leo);
        self.hw.send_replace(hw);
        Ok(new_leo)
    }

    /// Follower: the leader no longer has our fetch offset (its log start moved past it). If
    /// we are behind its log start, restart the log, empty, there (Kafka's
    /// `truncateFullyAndStartAt`); anything else waits for the leader. Returns whether it reset.
    pub(crate) fn reset_behind_leader(&self, epoch: i32, leader_log_start: i64) -> Result<bool> {
        let st = self.replica.lock();
        if !matches!(st.role, Role::Follower { .. }) || st.assignment.leader_epoch != epoch {
            return Ok(false);
        }
        let mut log = self.log.write();
        if leader_log_start <= log.log_end_offset() {
            return Ok(false);
        }
        tracing::warn!(tp = %self.tp, leo = log.log_end_offset(), leader_log_start, "behind the leader's log start; restarting the log there");
        log.reset_to(leader_log_start)?;
        let (leo, hw) = (log.log_end_offset(), log.high_watermark());
        drop(log);
        drop(st);
        self.publish_log_end(leo);
        self.hw.send_replace(hw);
        Ok(true)
    }

    /// Follower: appends fetched batches (every batch CRC-checked by storage; a bad one
    /// rejects the whole set) and takes HW = min(leader HW, own LEO), never backwards.
    pub(crate) fn append_fetched(
        &self,
        epoch: i32,
        records: Bytes,
        leader_hw: i64,
        leader_log_start: i64,
    ) -> Result<()> {
        let st = self.replica.lock();
        if !matches!(st.role, Role::Follower { .. }) || st.assignment.leader_epoch != epoch {
            return Ok(());
        }
        let mut log = self.log.write();
        if !records.is_empty() {
            log.append_as_follower(records)?;
        }
        let leo = log.log_end_offset();
        let hw = leader_hw.min(leo);
        let moved = hw > log.high_watermark();
        if moved {
            log.set_high_watermark(hw);
        }
        let hw = log.high_watermark();
        // The log start follows the leader's (retention there), within what is committed here.
        if leader_log_start > log.log_start_offset()
            && leader_log_start <= hw
            && let Err(e) = log.advance_log_start_offset(leader_log_start)
        {
            tracing::warn!(tp = %self.tp, error = %e, "cannot follow the leader's log start");
        }
        drop(log);
        drop(st);
        self.publish_log_end(leo);
        if moved {
            self.hw.send_replace(hw);
        }
        Ok(())
    }

    /// The leader's view of its replicas, for `DescribeReplicas` (`None` unless leader).
    pub(crate) fn leader_status(&self, now: i64) -> Option<LeaderStatus> {
        let st = self.replica.lock();
        let l = st.leader.as_ref()?;
        let log = self.log.read();
        let mut progress = vec![(st.node, log.log_end_offset(), 0)];
        for (&id, p) in &l.followers {
            let lag = if p.last_caught_up_ms < 0 {
                -1
            } else {
                (now - p.last_caught_up_ms).max(0)
            };
            progress.push((id, p.leo, lag));
        }
        Some(LeaderStatus {
            assignment: st.assignment.clone(),
            high_watermark: log.high_watermark(),
            log_start_offset: log.log_start_offset(),
            progress,
        })
    }
}

/// A leader's view of one partition (DescribeReplicas).
#[derive(Debug, Clone)]
pub(crate) struct LeaderStatus {
    pub assignment: PartitionAssignment,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// (broker, log end offset, ms since caught up or -1).
    pub progress: Vec<(BrokerId, i64, i64)>,
}

impl Broker {
    /// Every partition this node holds, with its topic's `min.insync.replicas`.
    pub(crate) fn all_partitions(&self) -> Vec<(Arc<Partition>, i32)> {
        let mut out = Vec::new();
        for t in self.topics() {
            let min_isr = self.min_insync_replicas(&t);
            for p in &t.partitions {
                out.push((Arc::clone(p), min_isr));
            }
        }
        out
    }

    /// The `min.insync.replicas` of a partition's topic (1 if the topic is gone).
    pub(crate) fn min_isr_of(&self, topic: &str) -> i32 {
        self.topic(topic)
            .map_or(1, |t| self.min_insync_replicas(&t))
    }
}

/// How often ISR maintenance runs: half the lag bound (as Kafka's `isr-expiration` task),
/// at least every 10 ms.
fn isr_check_interval(lag_max_ms: i64) -> Duration {
    Duration::from_millis((lag_max_ms / 2).clamp(10, i64::MAX) as u64)
}

/// ISR maintenance for the partitions this node leads: proposes shrinks and expansions through
/// [`crate::cluster::ClusterLink::alter_isr`] (one in flight per partition, run concurrently
/// across partitions) and recomputes the HW. Runs every `replica.lag.time.max.ms / 2` and
/// whenever a fetch from a follower outside the ISR wakes it.
pub async fn run_isr_maintenance(broker: Arc<Broker>, shutdown: CancellationToken) {
    let lag_max = broker.config().replica_lag_time_max_ms;
    let mut tick = tokio::time::interval(isr_check_interval(lag_max));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight: JoinSet<()> = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
            _ = broker.isr_check().notified() => {}
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => continue,
        }
        let now = now_ms();
        for (p, min_isr) in broker.all_partitions() {
            if p.role() != Role::Leader {
                continue;
            }
            let _ = p.maybe_advance_high_watermark(min_isr);
            let Some(request) = p.isr_proposal(lag_max, now) else {
                continue;
            };
            let broker = Arc::clone(&broker);
            let stop = shutdown.clone();
            in_flight.spawn(async move {
                tracing::info!(tp = %p.tp, proposed = ?request.new_isr, "proposing an ISR change");
                let outcome = tokio::select! {
                    o = broker.link().alter_isr(request.clone()) => o,
                    _ = stop.cancelled() => return,
                };
                if outcome.is_ok() {
                    broker
                        .replica_stats()
                        .isr_changes
                        .fetch_add(1, Ordering::Relaxed);
                }
                p.isr_outcome(&request, outcome, min_isr);
            });
        }
    }
    in_flight.shutdown().await;
}

/// Runs the replication data plane until `shutdown`: the gRPC `Replication` service on
/// `listener`, the follower fetchers and ISR maintenance. Stops everything it started before
/// returning.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) -> Result<()> {
    let token = shutdown.child_token();
    let mut tasks: JoinSet<Result<()>> = JoinSet::new();
    let service = service::ReplicationService::new(Arc::clone(&broker), token.clone());
    let stop = token.clone();
    tasks.spawn(async move {
        tonic::transport::Server::builder()
            .add_service(
                gregor_proto::replication::v1::replication_server::ReplicationServer::new(service),
            )
            // With our own listener tonic sets no socket options: without TCP_NODELAY every
            // fetch reply's last segment waits for the follower's delayed ACK (Nagle), which
            // put ≈ 40 ms into every acks=all produce (docs/benchmarks.md, "Profile").
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                stop.cancelled_owned(),
            )
            .await
            .map_err(|e| BrokerError::Replication(e.to_string()))
    });
    let (b, t) = (Arc::clone(&broker), token.clone());
    tasks.spawn(async move {
        fetcher::run_fetchers(b, t).await;
        Ok(())
    });
    let (b, t) = (Arc::clone(&broker), token.clone());
    tasks.spawn(async move {
        run_isr_maintenance(b, t).await;
        Ok(())
    });
    let mut result = Ok(());
    tokio::select! {
        biased;
        _ = token.cancelled() => {}
        Some(done) = tasks.join_next() => {
            // A task ended on its own (the server failed) unless we are stopping: stop the rest.
            result = done.map_err(BrokerError::from).and_then(|r| r);
            if result.is_ok() && !token.is_cancelled() {
                result = Err(BrokerError::Replication("a replication task ended early".into()));
            }
        }
    }
    token.cancel();
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done.map_err(BrokerError::from).and_then(|r| r) {
            tracing::warn!(error = %e, "replication task failed");
        }
    }
    result
}

/// Resolves when any receiver sees a new value (fetch long-polls, Kafka's and the replicas'). A
/// receiver whose partition was deleted (sender dropped) is removed from the set, so the next
/// read reports the partition as unknown instead of waking in a loop.
pub(crate) async fn any_changed(receivers: &mut Vec<tokio::sync::watch::Receiver<i64>>) {
    if receivers.is_empty() {
        return std::future::pending().await;
    }
    let (alive, index) = {
        let changes = receivers
            .iter_mut()
            .map(|r| Box::pin(async move { r.changed().await.is_ok() }));
        let (alive, index, _rest) = futures::future::select_all(changes).await;
        (alive, index)
    };
    if !alive {
        receivers.swap_remove(index);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use gregor_storage::{LogConfig, PartitionLog, TopicPartition};
    use parking_lot::RwLock;

    use super::*;

    fn assignment(
        leader: BrokerId,
        epoch: i32,
        pepoch: i32,
        isr: &[BrokerId],
    ) -> PartitionAssignment {
        PartitionAssignment {
            leader: Some(leader),
            leader_epoch: epoch,
            partition_epoch: pepoch,
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            elr: Vec::new(),
        }
    }

    fn partition(dir: &std::path::Path, a: PartitionAssignment) -> Partition {
        let log = PartitionLog::open(dir, LogConfig::default(), now_ms()).unwrap();
        Partition::new(
            TopicPartition::new("t", 0),
            Arc::new(RwLock::new(log)),
            a,
            1,
        )
        .unwrap()
    }

    fn batch() -> Bytes {
        let mut rec = bytes::BytesMut::new();
        let records = [kafka_protocol::records::Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: kafka_protocol::records::TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: now_ms(),
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: Default::default(),
        }];
        kafka_protocol::records::RecordBatchEncoder::encode(
            &mut rec,
            &records,
            &kafka_protocol::records::RecordEncodeOptions {
                version: 2,
                compression: kafka_protocol::records::Compression::None,
            },
        )
        .unwrap();
        rec.freeze()
    }

    fn append(p: &Partition, required: Option<i32>) -> Result<i32> {
        p.append_as_leader(Some(2), required, |log, epoch| {
            Ok(log.append_as_leader(batch(), epoch, now_ms())?)
        })
        .map(|(_, e)| e)
    }

    #[test]
    fn roles_follow_the_assignment_and_stale_ones_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path(), assignment(1, 3, 1, &[1, 2, 3]));
        assert_eq!(p.role(), Role::Leader);
        assert_eq!(
            append(&p, None).unwrap(),
            3,
            "stamped with the leader epoch"
        );
        // An older assignment changes nothing.
        let applied = p
            .apply_assignment(assignment(2, 2, 9, &[2]), now_ms())
            .unwrap();
        assert!(!applied.role_changed);
        assert_eq!(p.role(), Role::Leader);
        // The same assignment again is a no-op.
        let applied = p
            .apply_assignment(assignment(1, 3, 1, &[1, 2, 3]), now_ms())
            .unwrap();
        assert!(!applied.role_changed);
        // A new epoch for the same leader is a new term: the epoch starts at the log end.
        assert!(
            p.apply_assignment(assignment(1, 4, 2, &[1, 2, 3]), now_ms())
                .unwrap()
                .role_changed
        );
        assert_eq!(p.log.read().end_offset_for_epoch(3), Some((3, 1)));
        assert_eq!(p.leader_epoch_start(), Some(1));
        // Follower: no produce; the empty epoch-4 term leaves the cache.
        assert!(
            p.apply_assignment(assignment(2, 5, 3, &[1, 2, 3]), now_ms())
                .unwrap()
                .role_changed
        );
        assert_eq!(p.role(), Role::Follower { leader: 2 });
        assert!(matches!(
            append(&p, None),
            Err(BrokerError::NotLeaderOrFollower { .. })
        ));
        assert_eq!(p.log.read().latest_epoch(), Some(3));
        let follow = p.follow_state().unwrap();
        assert_eq!(
            (
                follow.leader,
                follow.leader_epoch,
                follow.fetch_offset,
                follow.last_fetched_epoch
            ),
            (2, 5, 1, 3)
        );
        // Not a replica any more.
        let mut gone = assignment(2, 6, 4, &[2, 3]);
        gone.replicas = vec![2, 3];
        p.apply_assignment(gone, now_ms()).unwrap();
        assert_eq!(p.role(), Role::None);
        assert!(p.follow_state().is_none());
    }

    #[test]
    fn acks_all_needs_the_committed_isr_and_the_hw_needs_min_isr() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path(), assignment(1, 1, 1, &[1]));
        assert!(matches!(
            append(&p, Some(2)),
            Err(BrokerError::NotEnoughReplicas { isr: 1, min_isr: 2 })
        ));
        assert_eq!(p.log.read().log_end_offset(), 0, "nothing appended");
        append(&p, None).unwrap();
        assert_eq!(p.log.read().high_watermark(), 0, "KIP-966: ISR 1 < 2");
        // The controller adds 2 and 3; they fetch; the HW follows the slowest.
        p.apply_assignment(assignment(1, 1, 2, &[1, 2, 3]), now_ms())
            .unwrap();
        p.record_follower_fetch(2, 1, (1, -1), 2, now_ms()).unwrap();
        assert_eq!(p.log.read().high_watermark(), 0);
        p.record_follower_fetch(3, 1, (1, -1), 2, now_ms()).unwrap();
        assert_eq!(p.log.read().high_watermark(), 1);
        // Fencing of replica fetches.
        assert!(matches!(
            p.record_follower_fetch(2, 0, (1, -1), 2, now_ms()),
            Err(BrokerError::FencedLeaderEpoch(0))
        ));
        assert!(matches!(
            p.record_follower_fetch(2, 2, (1, -1), 2, now_ms()),
            Err(BrokerError::UnknownLeaderEpoch(2))
        ));
        assert!(matches!(
            p.record_follower_fetch(9, 1, (1, -1), 2, now_ms()),
            Err(BrokerError::NotLeaderOrFollower { .. })
        ));
    }

    #[test]
    fn a_diverged_fetch_offset_is_not_progress() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path(), assignment(1, 1, 1, &[1]));
        append(&p, None).unwrap();
        // Follower 2 holds three records of epoch 1, the leader one (an unclean election): its
        // fetch offset 3 counts records the leader does not have.
        assert!(!p.record_follower_fetch(2, 1, (3, 1), 1, now_ms()).unwrap());
        assert!(
            p.isr_proposal(30_000, now_ms()).is_none(),
            "not added to the ISR at a diverged offset"
        );
        // Beyond the log end without an epoch: nothing recorded either.
        assert!(!p.record_follower_fetch(2, 1, (5, -1), 1, now_ms()).unwrap());
        assert!(p.isr_proposal(30_000, now_ms()).is_none());
        // After truncating, its fetch at the leader's log end is progress.
        assert!(p.record_follower_fetch(2, 1, (1, 1), 1, now_ms()).unwrap());
        assert_eq!(
            p.isr_proposal(30_000, now_ms()).unwrap().new_isr,
            vec![1, 2]
        );
    }

    #[test]
    fn one_isr_change_in_flight_and_none_after_a_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path(), assignment(1, 1, 1, &[1]));
        p.record_follower_fetch(2, 1, (0, -1), 1, now_ms()).unwrap();
        let req = p.isr_proposal(30_000, now_ms()).unwrap();
        assert_eq!(req.new_isr, vec![1, 2]);
        assert_eq!((req.leader_epoch, req.partition_epoch), (1, 1));
        assert!(p.isr_proposal(30_000, now_ms()).is_none(), "one in flight");
        p.isr_outcome(&req, Err(BrokerError::InvalidRequest("stale".into())), 1);
        assert!(
            p.isr_proposal(30_000, now_ms()).is_none(),
            "refused: wait for metadata"
        );
        p.apply_assignment(assignment(1, 1, 2, &[1]), now_ms())
            .unwrap();
        let req = p.isr_proposal(30_000, now_ms()).unwrap();
        p.isr_outcome(
            &req,
            Ok(IsrCommitted {
                leader_epoch: 1,
                partition_epoch: 3,
                isr: vec![1, 2],
            }),
            1,
        );
        assert_eq!(p.assignment().isr, vec![1, 2]);
        assert_eq!(p.assignment().partition_epoch, 3);
        // The same commit arriving later through the metadata path changes nothing.
        p.apply_assignment(assignment(1, 1, 3, &[1, 2]), now_ms())
            .unwrap();
        assert_eq!(p.assignment().isr, vec![1, 2]);
    }
}
