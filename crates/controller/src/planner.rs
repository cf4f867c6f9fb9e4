//! Controller decisions as pure functions: image (+ event, + `now`) in, commands out.
//!
//! Nothing here reads a clock, draws a random number or does I/O. The leader controller calls
//! these with its own clock as `now` and proposes the returned commands; apply validates them
//! again (partition epochs guard against plans made on a stale image).
//!
//! Rules:
//! - **Placement** ([`assign_replicas`]): replicas go to active brokers with the fewest replicas,
//!   spreading each partition across racks when racks are set; the preferred leader (first
//!   replica) goes to the broker with the fewest preferred leaderships.
//! - **Election** ([`plan_leadership`], KIP-966 order): a partition whose leader is fenced or gone
//!   gets the first replica (in assignment order) that is in the ISR and active; else, when no
//!   ISR member is active, the first active Eligible Leader Replica, with a new ISR of itself;
//!   else, when ISR and ELR are both empty, the last known leader if it is active; else, only if
//!   the topic sets `unclean.leader.election.enable=true`, any active replica with a fresh ISR of
//!   itself. With none it goes offline with an empty ISR: apply moves the fenced ISR members to
//!   the ELR (|ISR| = 0 < min ISR), so a clean one is elected when it comes back, and one that
//!   restarted uncleanly is not (it leaves every ELR when it registers).
//! - **ISR hygiene**: fenced brokers are removed from ISRs of partitions that still have a leader
//!   (apply adds them to the ELR when that leaves the ISR below min ISR).
//! - **Preferred leader**: when the first replica is active and back in the ISR, it leads again.
//! - **Sessions** ([`plan_session_expiry`]): an active broker not heard from for
//!   `session_timeout_ms` is fenced; its leaderships then move by the election rule. One whose
//!   session stream closed and that has not been heard from since is fenced after the shorter
//!   `disconnect_grace_ms` (a killed process closes its sockets at once).
//! - **Admin writes** ([`plan_create_topic`], [`plan_create_partitions`], [`plan_delete_topic`],
//!   [`plan_alter_configs`], [`plan_allocate_producer_ids`]): validated against the image (Kafka's
//!   topic-name rules, existence, broker epochs) so that the caller gets a typed error instead of
//!   a rejected log entry; apply still re-validates.
//! - **Heartbeats** ([`plan_heartbeat`]): a fenced broker whose metadata offset reached its own
//!   registration is unfenced; `want_fence` fences it (controlled shutdown).
//!
//! Every rule is level-triggered: planning again on the image that results from applying a plan
//! returns no commands, so a plan lost with a controller failover is simply recomputed.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::metadata::{BrokerId, Command, ConfigResource, MetadataImage, PartitionState};

/// Milliseconds on the leader controller's clock.
pub type Millis = u64;

/// Default `broker.heartbeat.interval.ms` (see `docs/controller.md` for the reasoning).
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: Millis = 200;
/// Default `broker.session.timeout.ms`: four and a half heartbeat intervals.
pub const DEFAULT_SESSION_TIMEOUT_MS: Millis = 900;
/// How often the leader controller runs [`plan_tick`].
pub const DEFAULT_PLANNER_TICK_MS: Millis = 100;

/// When the leader controller gives up on a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// `broker.session.timeout.ms`: fenced when nothing was heard for this long.
    pub timeout_ms: Millis,
    /// Fenced this long after its session stream closed, if nothing was heard since (the
    /// broker's heartbeat interval: a live broker re-opens the session or heartbeats first).
    pub disconnect_grace_ms: Millis,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
            disconnect_grace_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
        }
    }
}

/// Why a request cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The topic exists.
    #[error("topic {0} already exists")]
    TopicExists(String),
    /// The topic does not exist.
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// Not enough active brokers.
    #[error("replication factor {replication_factor} exceeds the {active} active brokers")]
    InvalidReplicationFactor {
        /// Requested.
        replication_factor: u16,
        /// Active brokers.
        active: usize,
    },
    /// Zero partitions, or not more than the topic already has.
    #[error("invalid partition count {0}")]
    InvalidPartitions(u32),
    /// The broker is not registered.
    #[error("broker {0} is not registered")]
    UnknownBroker(BrokerId),
    /// The heartbeat's epoch is not the broker's current registration.
    #[error("stale broker epoch {got} for broker {broker_id} (current {current})")]
    StaleBrokerEpoch {
        /// Broker.
        broker_id: BrokerId,
        /// Current epoch.
        current: u64,
        /// Epoch in the heartbeat.
        got: u64,
    },
    /// The topic name breaks Kafka's rules (1-249 characters of `[A-Za-z0-9._-]`, not `.`/`..`).
    #[error("invalid topic name {0:?}: 1-249 characters of [A-Za-z0-9._-], not '.' or '..'")]
    InvalidTopicName(String),
    /// A request that cannot be valid (empty config key, empty producer-id block).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

/// A topic creation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopicRequest {
    /// Topic name.
    pub name: String,
    /// Chosen by the caller (random), so that the plan stays a pure function.
    pub topic_id: Uuid,
    /// Number of partitions.
    pub partitions: u32,
    /// Replicas per partition.
    pub replication_factor: u16,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
}

/// A broker heartbeat as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Broker.
    pub broker_id: BrokerId,
    /// Its epoch.
    pub broker_epoch: u64,
    /// The highest metadata offset it has applied.
    pub metadata_offset: u64,
    /// Controlled shutdown: fence me.
    pub want_fence: bool,
}

/// The leader controller's view of broker liveness.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Liveness {
    /// When this controller became leader: a broker it has not heard from yet is counted from
    /// here, so a failover does not fence everyone.
    pub since: Millis,
    /// Last heartbeat (or session open) received per broker.
    pub last_heartbeat: BTreeMap<BrokerId, Millis>,
    /// When a broker's session stream closed, for brokers that have not opened a new one.
    pub disconnected: BTreeMap<BrokerId, Millis>,
    /// Controllers (by node id) that refuse Raft connections, since when. A broker with the
    /// same id is the same process (combined roles), so it is gone too.
    pub unreachable_voters: BTreeMap<BrokerId, Millis>,
}

/// Chooses replicas for `count` new partitions on the active brokers of `image`.
///
/// Greedy and deterministic: the preferred leader is the active broker with the fewest preferred
/// leaderships (then fewest replicas, then lowest id); each further replica is the broker with
/// the fewest replicas, preferring racks this partition does not use yet.
pub fn assign_replicas(
    image: &MetadataImage,
    count: u32,
    replication_factor: u16,
) -> Result<Vec<Vec<BrokerId>>, PlanError> {
    let active: Vec<BrokerId> = image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| b.id)
        .collect();
    let rf = usize::from(replication_factor);
    if rf == 0 || rf > active.len() {
        return Err(PlanError::InvalidReplicationFactor {
            replication_factor,
            active: active.len(),
        });
    }
    let mut replicas_on: BTreeMap<BrokerId, usize> = active.iter().map(|b| (*b, 0)).collect();
    let mut leaders_on = replicas_on.clone();
    for p in image.topics.values().flat_map(|t| &t.partitions) {
        for (i, b) in p.replicas.iter().enumerate() {
            if let Some(n) = replicas_on.get_mut(b) {
                *n += 1;
            }
            if i == 0
                && let Some(n) = leaders_on.get_mut(b)
            {
                *n += 1;
            }
        }
    }
    let rack = |b: &BrokerId| image.brokers.get(b).and_then(|r| r.rack.clone());
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let mut chosen: Vec<BrokerId> = Vec::with_capacity(rf);
        let leader = active
            .iter()
            .copied()
            .min_by_key(|b| (leaders_on[b], replicas_on[b], *b))
            .ok_or(PlanError::InvalidReplicationFactor {
                replication_factor,
                active: 0,
            })?;
        chosen.push(leader);
        while chosen.len() < rf {
            let used_racks: Vec<Option<String>> = chosen.iter().map(rack).collect();
            let next = active
                .iter()
                .copied()
                .filter(|b| !chosen.contains(b))
                .min_by_key(|b| {
                    let r = rack(b);
                    let rack_used = r.is_some() && used_racks.contains(&r);
                    (rack_used, replicas_on[b], *b)
                })
                .ok_or(PlanError::InvalidReplicationFactor {
                    replication_factor,
                    active: active.len(),
                })?;
            chosen.push(next);
        }
        for b in &chosen {
            if let Some(n) = replicas_on.get_mut(b) {
                *n += 1;
            }
        }
        if let Some(n) = leaders_on.get_mut(&leader) {
            *n += 1;
        }
        out.push(chosen);
    }
    Ok(out)
}

/// Plans a topic creation.
pub fn plan_create_topic(
    image: &MetadataImage,
    req: &CreateTopicRequest,
) -> Result<Vec<Command>, PlanError> {
    validate_topic_name(&req.name)?;
    if image.topics.contains_key(&req.name) {
        return Err(PlanError::TopicExists(req.name.clone()));
    }
    if req.partitions == 0 {
        return Err(PlanError::InvalidPartitions(0));
    }
    Ok(vec![Command::CreateTopic {
        name: req.name.clone(),
        topic_id: req.topic_id,
        assignments: assign_replicas(image, req.partitions, req.replication_factor)?,
        configs: req.configs.clone(),
    }])
}

/// Plans growing `topic` to `total` partitions, with the topic's current replication factor.
pub fn plan_create_partitions(
    image: &MetadataImage,
    topic: &str,
    total: u32,
) -> Result<Vec<Command>, PlanError> {
    let t = image
        .topics
        .get(topic)
        .ok_or_else(|| PlanError::UnknownTopic(topic.to_owned()))?;
    let have = u32::try_from(t.partitions.len()).unwrap_or(u32::MAX);
    if total <= have {
        return Err(PlanError::InvalidPartitions(total));
    }
    let rf = t.partitions.first().map_or(1, |p| p.replicas.len());
    let rf = u16::try_from(rf).unwrap_or(u16::MAX);
    Ok(vec![Command::CreatePartitions {
        topic: topic.to_owned(),
        assignments: assign_replicas(image, total - have, rf)?,
    }])
}

/// Kafka's topic-name rule: 1-249 characters of `[A-Za-z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), PlanError> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(PlanError::InvalidTopicName(name.to_owned()))
    }
}

/// Plans deleting `name`.
pub fn plan_delete_topic(image: &MetadataImage, name: &str) -> Result<Vec<Command>, PlanError> {
    if !image.topics.contains_key(name) {
        return Err(PlanError::UnknownTopic(name.to_owned()));
    }
    Ok(vec![Command::DeleteTopic {
        name: name.to_owned(),
    }])
}

/// Plans config changes on an existing topic, a registered broker or the cluster. An empty
/// change list plans nothing.
pub fn plan_alter_configs(
    image: &MetadataImage,
    resource: &ConfigResource,
    changes: &[(String, Option<String>)],
) -> Result<Vec<Command>, PlanError> {
    match resource {
        ConfigResource::Topic(t) if !image.topics.contains_key(t) => {
            return Err(PlanError::UnknownTopic(t.clone()));
        }
        ConfigResource::Broker(b) if !image.brokers.contains_key(b) => {
            return Err(PlanError::UnknownBroker(*b));
        }
        _ => {}
    }
    if changes.iter().any(|(k, _)| k.trim().is_empty()) {
        return Err(PlanError::InvalidRequest("empty config key".into()));
    }
    if changes.is_empty() {
        return Ok(vec![]);
    }
    Ok(vec![Command::AlterConfigs {
        resource: resource.clone(),
        changes: changes.to_vec(),
    }])
}

/// Plans a producer-id block for a registered broker at its current epoch.
pub fn plan_allocate_producer_ids(
    image: &MetadataImage,
    broker_id: BrokerId,
    broker_epoch: u64,
    count: u32,
) -> Result<Vec<Command>, PlanError> {
    let b = image
        .brokers
        .get(&broker_id)
        .ok_or(PlanError::UnknownBroker(broker_id))?;
    if b.epoch != broker_epoch {
        return Err(PlanError::StaleBrokerEpoch {
            broker_id,
            current: b.epoch,
            got: broker_epoch,
        });
    }
    if count == 0 {
        return Err(PlanError::InvalidRequest("empty producer id block".into()));
    }
    Ok(vec![Command::AllocateProducerIds {
        broker_id,
        broker_epoch,
        count,
    }])
}

/// Plans the reaction to one broker heartbeat.
pub fn plan_heartbeat(image: &MetadataImage, hb: &Heartbeat) -> Result<Vec<Command>, PlanError> {
    let b = image
        .brokers
        .get(&hb.broker_id)
        .ok_or(PlanError::UnknownBroker(hb.broker_id))?;
    if b.epoch != hb.broker_epoch {
        return Err(PlanError::StaleBrokerEpoch {
            broker_id: hb.broker_id,
            current: b.epoch,
            got: hb.broker_epoch,
        });
    }
    let (id, epoch) = (hb.broker_id, hb.broker_epoch);
    Ok(if hb.want_fence && !b.fenced {
        vec![Command::FenceBroker {
            broker_id: id,
            broker_epoch: epoch,
        }]
    } else if !hb.want_fence && b.fenced && hb.metadata_offset >= b.epoch {
        vec![Command::UnfenceBroker {
            broker_id: id,
            broker_epoch: epoch,
        }]
    } else {
        vec![]
    })
}

/// Fences every active broker
/// * whose last heartbeat (or the leadership start, whichever is later) is more than
///   `policy.timeout_ms` before `now`;
/// * whose session stream closed more than `policy.disconnect_grace_ms` before `now`, with
///   nothing heard from it since;
/// * whose co-located controller (same node id) refuses connections, with nothing heard from
///   the broker since that began (the case where the dead node was the controller leader: the
///   new leader never saw its session, but its Raft connection is refused at once).
pub fn plan_session_expiry(
    image: &MetadataImage,
    liveness: &Liveness,
    now: Millis,
    policy: &SessionPolicy,
) -> Vec<Command> {
    image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .filter(|b| {
            let heard = liveness.last_heartbeat.get(&b.id).copied();
            let seen = heard.unwrap_or(0).max(liveness.since);
            let silent_since = |at: Millis| heard.is_none_or(|h| h <= at);
            let dropped = liveness.disconnected.get(&b.id).is_some_and(|&at| {
                silent_since(at) && now.saturating_sub(at) > policy.disconnect_grace_ms
            });
            // No grace here: a refused connection means nothing listens on the node's controller
            // port, so the process is gone (or not started yet: then this registration is an old
            // incarnation's, and the new one's registration counts as heard).
            let unreachable = liveness
                .unreachable_voters
                .get(&b.id)
                .is_some_and(|&at| silent_since(at));
            dropped || unreachable || now.saturating_sub(seen) > policy.timeout_ms
        })
        .map(|b| Command::FenceBroker {
            broker_id: b.id,
            broker_epoch: b.epoch,
        })
        .collect()
}

/// Leader and ISR changes that the current broker states call for (see the module rules).
pub fn plan_leadership(image: &MetadataImage) -> Vec<Command> {
    let mut out = Vec::new();
    for (name, topic) in &image.topics {
        let unclean = topic.unclean_election_enabled();
        for (i, p) in topic.partitions.iter().enumerate() {
            if let Some((leader, isr)) = desired(image, p, unclean)
                && (leader != p.leader || isr != p.isr)
            {
                out.push(Command::ElectLeader {
                    topic: name.clone(),
                    partition: u32::try_from(i).unwrap_or(u32::MAX),
                    partition_epoch: p.partition_epoch,
                    leader,
                    isr,
                });
            }
        }
    }
    out
}

/// The leader and ISR one partition should have, or `None` to leave it alone.
fn desired(
    image: &MetadataImage,
    p: &PartitionState,
    unclean: bool,
) -> Option<(Option<BrokerId>, Vec<BrokerId>)> {
    let active_isr: Vec<BrokerId> = p
        .isr
        .iter()
        .copied()
        .filter(|b| image.is_active(*b))
        .collect();
    // First replica, in assignment order, that is in the ISR and active: this is both the
    // election rule and the preferred-leader rule (replicas[0] wins whenever it is eligible).
    let clean = p.replicas.iter().copied().find(|b| active_isr.contains(b));
    if let Some(leader) = clean {
        return Some((Some(leader), active_isr));
    }
    // No live ISR member: an ELR member holds every committed record (the ELR is kept in
    // assignment order).
    if let Some(leader) = p.elr.iter().copied().find(|b| image.is_active(*b)) {
        return Some((Some(leader), vec![leader]));
    }
    // Nothing else known to be complete: the last leader is the best copy there is. Only once
    // the ISR is empty (its fenced members moved to the ELR first) and the ELR too.
    if p.isr.is_empty()
        && p.elr.is_empty()
        && let Some(leader) = p.last_known_leader.filter(|b| image.is_active(*b))
    {
        return Some((Some(leader), vec![leader]));
    }
    if unclean && let Some(leader) = p.replicas.iter().copied().find(|b| image.is_active(*b)) {
        return Some((Some(leader), vec![leader]));
    }
    // Nobody eligible: offline with an empty ISR; apply moves its members to the ELR so that
    // the first of them to come back cleanly leads.
    Some((None, Vec::new()))
}

/// One planning round of the leader controller: expire sessions, then fix leadership on the
/// image as it will be once those fences apply.
pub fn plan_tick(
    image: &MetadataImage,
    liveness: &Liveness,
    now: Millis,
    policy: &SessionPolicy,
) -> Vec<Command> {
    let mut out = plan_session_expiry(image, liveness, now, policy);
    if out.is_empty() {
        out.extend(plan_leadership(image));
        return out;
    }
    let mut next = image.clone();
    for cmd in &out {
        // Offsets are irrelevant to fencing; apply validates the epochs the planner copied.
        next.apply(image.offset, cmd);
    }
    out.extend(plan_leadership(&next));
    out
}

#[cfg(test)]
#[path = "planner_tests.rs"]
mod tests;
