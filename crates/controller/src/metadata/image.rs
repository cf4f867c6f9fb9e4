//! The metadata image and the deterministic apply function.
//!
//! `apply` depends only on the image, the command and its log offset: no clock, no randomness,
//! no I/O. A command that is not valid against the current image is *rejected*: the image is left
//! unchanged and a typed [`Rejection`] is returned, identically on every replica.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codec::{DecodeError, Reader, Writer};
use super::command::{Command, ConfigResource};
use super::{BrokerId, Endpoint};

/// Topic config key that allows electing a leader outside the ISR (may lose data).
pub const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";
/// Topic (or cluster-level) config key: the ISR size below which the high watermark stops and
/// removed replicas become Eligible Leader Replicas (KIP-966).
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration {
    /// Broker id.
    pub id: BrokerId,
    /// The offset of the registration record.
    pub epoch: u64,
    /// Process incarnation that registered.
    pub incarnation: Uuid,
    /// Listeners.
    pub endpoints: Vec<Endpoint>,
    /// Rack, if any.
    pub rack: Option<String>,
    /// Fenced brokers lead nothing and are not in any ISR (except as the last one standing).
    pub fenced: bool,
}

/// The state of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// Assigned replicas; the first is the preferred leader.
    pub replicas: Vec<BrokerId>,
    /// In-sync replicas. Empty only while the partition is offline (its last members then
    /// moved to the ELR).
    pub isr: Vec<BrokerId>,
    /// Eligible Leader Replicas (KIP-966), in assignment order: replicas removed from the ISR
    /// while it was below min ISR. The high watermark cannot advance below min ISR, so they hold
    /// every committed record and may be elected cleanly. Disjoint from the ISR; empty whenever
    /// the ISR has at least min ISR members.
    pub elr: Vec<BrokerId>,
    /// The leader when the partition last went offline with an empty ISR, kept until a leader
    /// is elected again. Elected as a last resort when ISR and ELR are both empty (Kafka's
    /// "last known leader"), so that e.g. a single-replica partition comes back after an
    /// unclean restart of its broker.
    pub last_known_leader: Option<BrokerId>,
    /// Current leader, `None` when offline.
    pub leader: Option<BrokerId>,
    /// Bumped on every leader or ISR change made by the controller.
    pub leader_epoch: i32,
    /// Bumped on every change of this partition (KIP-497's version guard).
    pub partition_epoch: i32,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    /// Topic id.
    pub id: Uuid,
    /// Partitions by index.
    pub partitions: Vec<PartitionState>,
    /// Topic-level config overrides.
    pub configs: BTreeMap<String, String>,
}

impl TopicImage {
    /// Whether this topic opted in to unclean leader election.
    pub fn unclean_election_enabled(&self) -> bool {
        self.configs
            .get(UNCLEAN_LEADER_ELECTION)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// Parses a `min.insync.replicas` value; anything but a positive integer counts as unset.
fn parse_min_isr(v: Option<&String>) -> Option<usize> {
    v.and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n >= 1)
}

/// The whole cluster metadata as of [`MetadataImage::offset`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataImage {
    /// The offset of the last applied log entry (0 before anything was applied).
    pub offset: u64,
    /// Brokers by id.
    pub brokers: BTreeMap<BrokerId, BrokerRegistration>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicImage>,
    /// Config overrides for the cluster and brokers.
    pub configs: BTreeMap<ConfigResource, BTreeMap<String, String>>,
    /// The first producer id not yet handed out.
    pub next_producer_id: i64,
}

/// The result of applying one log entry, returned to whoever proposed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// Applied (also the result of blank and membership entries).
    Applied,
    /// The broker is registered with this epoch.
    BrokerRegistered {
        /// The broker epoch.
        broker_epoch: u64,
    },
    /// A partition changed; its new epochs.
    PartitionChanged {
        /// New leader epoch.
        leader_epoch: i32,
        /// New partition epoch.
        partition_epoch: i32,
    },
    /// A block of producer ids `[first, first + count)`.
    ProducerIds {
        /// First id of the block.
        first: i64,
        /// Block size.
        count: u32,
    },
    /// Not valid against the image; nothing changed.
    Rejected(Rejection),
}

/// Why a command was rejected. Stable across replicas because apply is deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    /// No such broker.
    #[error("broker {0} is not registered")]
    UnknownBroker(BrokerId),
    /// The broker epoch does not match the current registration.
    #[error("stale broker epoch for broker {broker_id}: current {current}, got {got}")]
    StaleBrokerEpoch {
        /// Broker.
        broker_id: BrokerId,
        /// Current epoch.
        current: u64,
        /// Epoch in the command.
        got: u64,
    },
    /// The topic already exists.
    #[error("topic {0} already exists")]
    TopicExists(String),
    /// Another topic has this id.
    #[error("topic id {0} is already in use")]
    TopicIdInUse(Uuid),
    /// No such topic.
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// No such partition.
    #[error("unknown partition {topic}-{partition}")]
    UnknownPartition {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
    },
    /// The command's partition epoch is not the current one.
    #[error("stale partition epoch: current {current}, got {got}")]
    StalePartitionEpoch {
        /// Current partition epoch.
        current: i32,
        /// Epoch in the command.
        got: i32,
    },
    /// The leader epoch in an AlterPartition is not the current one.
    #[error("fenced leader epoch: current {current}, got {got}")]
    FencedLeaderEpoch {
        /// Current leader epoch.
        current: i32,
        /// Epoch in the command.
        got: i32,
    },
    /// The sender of an AlterPartition is not the partition leader.
    #[error("broker {0} is not the leader")]
    NotLeader(BrokerId),
    /// The broker may not become leader or join the ISR.
    #[error("broker {0} is not eligible")]
    IneligibleReplica(BrokerId),
    /// Any other invalid input.
    #[error("invalid request: {0}")]
    Invalid(String),
}

type Applied = Result<CommandResult, Rejection>;

impl MetadataImage {
    /// Applies the command at log `offset`. Deterministic; on rejection nothing changes.
    pub fn apply(&mut self, offset: u64, cmd: &Command) -> CommandResult {
        self.offset = offset;
        let result = match cmd {
            Command::RegisterBroker {
                broker_id,
                incarnation,
                endpoints,
                rack,
                clean_shutdown,
            } => Ok(self.register(
                offset,
                *broker_id,
                *incarnation,
                (endpoints, rack),
                *clean_shutdown,
            )),
            Command::FenceBroker {
                broker_id,
                broker_epoch,
            } => self.set_fenced(*broker_id, *broker_epoch, true),
            Command::UnfenceBroker {
                broker_id,
                broker_epoch,
            } => self.set_fenced(*broker_id, *broker_epoch, false),
            Command::CreateTopic {
                name,
                topic_id,
                assignments,
                configs,
            } => self.create_topic(name, *topic_id, assignments, configs),
            Command::DeleteTopic { name } => match self.topics.remove(name) {
                Some(_) => Ok(CommandResult::Applied),
                None => Err(Rejection::UnknownTopic(name.clone())),
            },
            Command::CreatePartitions { topic, assignments } => {
                self.create_partitions(topic, assignments)
            }
            Command::AlterPartition {
                topic,
                partition,
                broker_id,
                broker_epoch,
                leader_epoch,
                partition_epoch,
                new_isr,
            } => self.alter_partition(
                topic,
                *partition,
                (*broker_id, *broker_epoch),
                (*leader_epoch, *partition_epoch),
                new_isr,
            ),
            Command::ElectLeader {
                topic,
                partition,
                partition_epoch,
                leader,
                isr,
            } => self.elect_leader(topic, *partition, *partition_epoch, *leader, isr),
            Command::AlterConfigs { resource, changes } => self.alter_configs(resource, changes),
            Command::AllocateProducerIds {
                broker_id,
                broker_epoch,
                count,
            } => self.allocate_producer_ids(*broker_id, *broker_epoch, *count),
        };
        result.unwrap_or_else(CommandResult::Rejected)
    }

    /// A registered, unfenced broker.
    pub fn is_active(&self, id: BrokerId) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    /// A partition by topic name and index.
    pub fn partition(&self, topic: &str, partition: u32) -> Option<&PartitionState> {
        self.topics.get(topic)?.partitions.get(partition as usize)
    }

    /// The min ISR of `topic`: its `min.insync.replicas` override, else the cluster-level one,
    /// else 1 (Kafka's default). An unknown topic gets the cluster value.
    pub fn min_isr(&self, topic: &str) -> usize {
        let topic_level = self
            .topics
            .get(topic)
            .and_then(|t| parse_min_isr(t.configs.get(MIN_INSYNC_REPLICAS)));
        topic_level
            .or_else(|| {
                parse_min_isr(
                    self.configs
                        .get(&ConfigResource::Cluster)
                        .and_then(|c| c.get(MIN_INSYNC_REPLICAS)),
                )
            })
            .unwrap_or(1)
    }

    fn register(
        &mut self,
        offset: u64,
        id: BrokerId,
        incarnation: Uuid,
        (endpoints, rack): (&[Endpoint], &Option<String>),
        clean_shutdown: bool,
    ) -> CommandResult {
        if let Some(existing) = self.brokers.get(&id)
            && existing.incarnation == incarnation
        {
            // A retried registration of the same process: idempotent.
            return CommandResult::BrokerRegistered {
                broker_epoch: existing.epoch,
            };
        }
        if !clean_shutdown {
            self.forget_unclean_replica(id);
        }
        self.brokers.insert(
            id,
            BrokerRegistration {
                id,
                epoch: offset,
                incarnation,
                endpoints: endpoints.to_vec(),
                rack: rack.clone(),
                // A new incarnation has not caught up with the metadata yet.
                fenced: true,
            },
        );
        CommandResult::BrokerRegistered {
            broker_epoch: offset,
        }
    }

    /// KIP-966: a broker back from an unclean (or unknown) shutdown may have lost unflushed
    /// records, so it leaves every ELR, and it leaves every ISR *without* becoming an ELR
    /// member (the controller's ISR hygiene would otherwise move it from the ISR into the ELR
    /// once it is fenced). If it led a partition, that partition is leaderless until the planner
    /// elects again (it is fenced now anyway); the leader epoch rises.
    fn forget_unclean_replica(&mut self, id: BrokerId) {
        let names: Vec<String> = self.topics.keys().cloned().collect();
        for name in names {
            let min_isr = self.min_isr(&name);
            let Some(t) = self.topics.get_mut(&name) else {
                continue;
            };
            for p in &mut t.partitions {
                let in_elr = p.elr.contains(&id);
                let in_isr = p.isr.contains(&id);
                if !in_elr && !in_isr {
                    continue;
                }
                p.elr.retain(|b| *b != id);
                if in_isr {
                    let old_leader = p.leader;
                    p.isr.retain(|b| *b != id);
                    // Nobody else was removed, so only the "ISR back at min ISR" rule applies.
                    update_elr(p, &[], min_isr);
                    if old_leader == Some(id) {
                        p.leader = None;
                        p.leader_epoch += 1;
                    }
                    if p.isr.is_empty() && old_leader.is_some() {
                        p.last_known_leader = old_leader;
                    }
                }
                p.partition_epoch += 1;
            }
        }
    }

    fn check_broker(&self, id: BrokerId, epoch: u64) -> Result<&BrokerRegistration, Rejection> {
        let b = self.brokers.get(&id).ok_or(Rejection::UnknownBroker(id))?;
        if b.epoch != epoch {
            return Err(Rejection::StaleBrokerEpoch {
                broker_id: id,
                current: b.epoch,
                got: epoch,
            });
        }
        Ok(b)
    }

    fn set_fenced(&mut self, id: BrokerId, epoch: u64, fenced: bool) -> Applied {
        self.check_broker(id, epoch)?;
        if let Some(b) = self.brokers.get_mut(&id) {
            b.fenced = fenced;
        }
        Ok(CommandResult::Applied)
    }

    fn check_assignments(&self, assignments: &[Vec<BrokerId>]) -> Result<(), Rejection> {
        if assignments.is_empty() {
            return Err(Rejection::Invalid("no partitions".into()));
        }
        for replicas in assignments {
            if replicas.is_empty() {
                return Err(Rejection::Invalid("a partition has no replicas".into()));
            }
            if has_duplicates(replicas) {
                return Err(Rejection::Invalid(format!(
                    "duplicate replicas {replicas:?}"
                )));
            }
            if let Some(b) = replicas.iter().find(|b| !self.brokers.contains_key(b)) {
                return Err(Rejection::UnknownBroker(*b));
            }
        }
        Ok(())
    }

    fn create_topic(
        &mut self,
        name: &str,
        topic_id: Uuid,
        assignments: &[Vec<BrokerId>],
        configs: &BTreeMap<String, String>,
    ) -> Applied {
        if name.is_empty() || name.len() > 249 {
            return Err(Rejection::Invalid(format!("invalid topic name {name:?}")));
        }
        if self.topics.contains_key(name) {
            return Err(Rejection::TopicExists(name.to_owned()));
        }
        if topic_id.is_nil() || self.topics.values().any(|t| t.id == topic_id) {
            return Err(Rejection::TopicIdInUse(topic_id));
        }
        self.check_assignments(assignments)?;
        let topic = TopicImage {
            id: topic_id,
            partitions: assignments.iter().map(|r| new_partition(r)).collect(),
            configs: configs.clone(),
        };
        self.topics.insert(name.to_owned(), topic);
        Ok(CommandResult::Applied)
    }

    fn create_partitions(&mut self, topic: &str, assignments: &[Vec<BrokerId>]) -> Applied {
        if !self.topics.contains_key(topic) {
            return Err(Rejection::UnknownTopic(topic.to_owned()));
        }
        self.check_assignments(assignments)?;
        if let Some(t) = self.topics.get_mut(topic) {
            t.partitions
                .extend(assignments.iter().map(|r| new_partition(r)));
        }
        Ok(CommandResult::Applied)
    }

    /// The partition, whether its topic allows unclean election, and its min ISR.
    fn partition_mut(
        &mut self,
        topic: &str,
        partition: u32,
    ) -> Result<(&mut PartitionState, bool, usize), Rejection> {
        let min_isr = self.min_isr(topic);
        let t = self
            .topics
            .get_mut(topic)
            .ok_or_else(|| Rejection::UnknownTopic(topic.to_owned()))?;
        let unclean = t.unclean_election_enabled();
        let p = t.partitions.get_mut(partition as usize).ok_or_else(|| {
            Rejection::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            }
        })?;
        Ok((p, unclean, min_isr))
    }

    fn alter_partition(
        &mut self,
        topic: &str,
        partition: u32,
        (broker_id, broker_epoch): (BrokerId, u64),
        (leader_epoch, partition_epoch): (i32, i32),
        new_isr: &[BrokerId],
    ) -> Applied {
        self.check_broker(broker_id, broker_epoch)?;
        let ineligible = new_isr.iter().copied().find(|b| !self.is_active(*b));
        let (p, _, min_isr) = self.partition_mut(topic, partition)?;
        if p.leader != Some(broker_id) {
            return Err(Rejection::NotLeader(broker_id));
        }
        if leader_epoch != p.leader_epoch {
            return Err(Rejection::FencedLeaderEpoch {
                current: p.leader_epoch,
                got: leader_epoch,
            });
        }
        if partition_epoch != p.partition_epoch {
            return Err(Rejection::StalePartitionEpoch {
                current: p.partition_epoch,
                got: partition_epoch,
            });
        }
        validate_isr(&p.replicas, new_isr)?;
        if !new_isr.contains(&broker_id) {
            return Err(Rejection::Invalid("the ISR must contain the leader".into()));
        }
        // A fenced broker may stay in the ISR (it was there), but may not be added to it.
        if let Some(b) = ineligible.filter(|b| !p.isr.contains(b)) {
            return Err(Rejection::IneligibleReplica(b));
        }
        let removed = minus(&p.isr, new_isr);
        p.isr = new_isr.to_vec();
        update_elr(p, &removed, min_isr);
        p.partition_epoch += 1;
        Ok(CommandResult::PartitionChanged {
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
        })
    }

    fn elect_leader(
        &mut self,
        topic: &str,
        partition: u32,
        partition_epoch: i32,
        leader: Option<BrokerId>,
        isr: &[BrokerId],
    ) -> Applied {
        let leader_active = leader.is_none_or(|l| self.is_active(l));
        let isr_live = self
            .partition(topic, partition)
            .is_some_and(|p| p.isr.iter().any(|b| self.is_active(*b)));
        let (p, unclean, min_isr) = self.partition_mut(topic, partition)?;
        if partition_epoch != p.partition_epoch {
            return Err(Rejection::StalePartitionEpoch {
                current: p.partition_epoch,
                got: partition_epoch,
            });
        }
        let shrink_only = || {
            if isr.iter().any(|b| !p.isr.contains(b)) {
                Err(Rejection::Invalid(
                    "an election may only shrink the ISR".into(),
                ))
            } else {
                Ok(())
            }
        };
        // Whether this election trusts a replica outside the ISR and ELR (unclean).
        let mut unclean_election = false;
        if let Some(l) = leader {
            validate_isr(&p.replicas, isr)?;
            if !leader_active {
                return Err(Rejection::IneligibleReplica(l));
            }
            if !isr.contains(&l) {
                return Err(Rejection::Invalid("the ISR must contain the leader".into()));
            }
            // The safety rule, in KIP-966's order: an ISR member; else, with no live ISR
            // member, an ELR member; else, with ISR and ELR empty, the last known leader; else
            // any replica if the topic opted in to unclean election. Outside the ISR the new
            // ISR is the new leader alone.
            let alone = isr == [l];
            let from_elr = p.elr.contains(&l) && !isr_live && alone;
            let last_known =
                p.isr.is_empty() && p.elr.is_empty() && p.last_known_leader == Some(l) && alone;
            if p.isr.contains(&l) {
                shrink_only()?;
            } else if !(from_elr || last_known) {
                if !(unclean && alone) {
                    return Err(Rejection::IneligibleReplica(l));
                }
                unclean_election = true;
            }
        } else {
            // Offline: the ISR may shrink down to empty; its members then move to the ELR.
            if has_duplicates(isr) {
                return Err(Rejection::Invalid(format!("duplicate ISR members {isr:?}")));
            }
            shrink_only()?;
        }
        let removed = minus(&p.isr, isr);
        let old_leader = p.leader;
        p.leader = leader;
        p.isr = isr.to_vec();
        if unclean_election {
            // The new leader's log is the truth now; nobody else is known to match it.
            p.elr.clear();
        } else {
            update_elr(p, &removed, min_isr);
        }
        if leader.is_some() {
            p.last_known_leader = None;
        } else if p.isr.is_empty() && old_leader.is_some() {
            p.last_known_leader = old_leader;
        }
        p.leader_epoch += 1;
        p.partition_epoch += 1;
        Ok(CommandResult::PartitionChanged {
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
        })
    }

    fn alter_configs(
        &mut self,
        resource: &ConfigResource,
        changes: &[(String, Option<String>)],
    ) -> Applied {
        let target = match resource {
            ConfigResource::Topic(name) => match self.topics.get_mut(name) {
                Some(t) => &mut t.configs,
                None => return Err(Rejection::UnknownTopic(name.clone())),
            },
            ConfigResource::Broker(id) if !self.brokers.contains_key(id) => {
                return Err(Rejection::UnknownBroker(*id));
            }
            other => self.configs.entry(other.clone()).or_default(),
        };
        for (k, v) in changes {
            match v {
                Some(v) => target.insert(k.clone(), v.clone()),
                None => target.remove(k),
            };
        }
        // Kafka clears the ELRs a min ISR change affects: they were computed against the old
        // value. Clearing only costs availability, never safety.
        if changes.iter().any(|(k, _)| k == MIN_INSYNC_REPLICAS) {
            let affected: Vec<String> = match resource {
                ConfigResource::Topic(name) => vec![name.clone()],
                ConfigResource::Cluster => self.topics.keys().cloned().collect(),
                ConfigResource::Broker(_) => vec![],
            };
            for name in affected {
                let Some(t) = self.topics.get_mut(&name) else {
                    continue;
                };
                for p in t.partitions.iter_mut().filter(|p| !p.elr.is_empty()) {
                    p.elr.clear();
                    p.partition_epoch += 1;
                }
            }
        }
        Ok(CommandResult::Applied)
    }

    fn allocate_producer_ids(&mut self, id: BrokerId, epoch: u64, count: u32) -> Applied {
        self.check_broker(id, epoch)?;
        if count == 0 {
            return Err(Rejection::Invalid("empty producer id block".into()));
        }
        let first = self.next_producer_id;
        self.next_producer_id = first
            .checked_add(i64::from(count))
            .ok_or_else(|| Rejection::Invalid("producer ids exhausted".into()))?;
        Ok(CommandResult::ProducerIds { first, count })
    }
}

/// `a` without the members of `b`, in `a`'s order.
fn minus(a: &[BrokerId], b: &[BrokerId]) -> Vec<BrokerId> {
    a.iter().copied().filter(|x| !b.contains(x)).collect()
}

/// KIP-966's ELR rule after an ISR change that removed `removed`: at or above min ISR the ELR
/// is empty; below it, the removed replicas join it, and ISR members never are in it.
fn update_elr(p: &mut PartitionState, removed: &[BrokerId], min_isr: usize) {
    if p.isr.len() >= min_isr {
        p.elr.clear();
        return;
    }
    let elr: Vec<BrokerId> = p
        .replicas
        .iter()
        .copied()
        .filter(|b| (p.elr.contains(b) || removed.contains(b)) && !p.isr.contains(b))
        .collect();
    p.elr = elr;
}

fn new_partition(replicas: &[BrokerId]) -> PartitionState {
    PartitionState {
        replicas: replicas.to_vec(),
        isr: replicas.to_vec(),
        elr: Vec::new(),
        last_known_leader: None,
        leader: replicas.first().copied(),
        leader_epoch: 0,
        partition_epoch: 0,
    }
}

fn has_duplicates(ids: &[BrokerId]) -> bool {
    ids.iter()
        .enumerate()
        .any(|(i, a)| ids[i + 1..].contains(a))
}

fn validate_isr(replicas: &[BrokerId], isr: &[BrokerId]) -> Result<(), Rejection> {
    if isr.is_empty() {
        return Err(Rejection::Invalid("empty ISR".into()));
    }
    if has_duplicates(isr) {
        return Err(Rejection::Invalid(format!("duplicate ISR members {isr:?}")));
    }
    if let Some(b) = isr.iter().find(|b| !replicas.contains(b)) {
        return Err(Rejection::Invalid(format!(
            "ISR member {b} is not a replica"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Snapshot encoding: magic, version, body, crc32c of everything before the checksum.
// ---------------------------------------------------------------------------------------------

const IMAGE_MAGIC: &[u8; 4] = b"GRMI";
/// v1: no ELR. v2 (KIP-966) adds each partition's `elr` and `last_known_leader` after its
/// partition epoch; v1 images decode with both empty.
const IMAGE_V1: u8 = 1;
const IMAGE_V2: u8 = 2;

impl MetadataImage {
    /// Encodes the image for a snapshot.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        for b in IMAGE_MAGIC {
            w.u8(*b);
        }
        w.u8(IMAGE_V2);
        w.u64(self.offset);
        w.i64(self.next_producer_id);
        w.len(self.brokers.len());
        for b in self.brokers.values() {
            w.i32(b.id);
            w.u64(b.epoch);
            w.uuid(b.incarnation);
            w.len(b.endpoints.len());
            for e in &b.endpoints {
                w.str(&e.name);
                w.str(&e.host);
                w.u16(e.port);
            }
            w.opt_str(b.rack.as_deref());
            w.bool(b.fenced);
        }
        w.len(self.topics.len());
        for (name, t) in &self.topics {
            w.str(name);
            w.uuid(t.id);
            w.str_map(&t.configs);
            w.len(t.partitions.len());
            for p in &t.partitions {
                w.i32s(&p.replicas);
                w.i32s(&p.isr);
                w.opt_i32(p.leader);
                w.i32(p.leader_epoch);
                w.i32(p.partition_epoch);
                w.i32s(&p.elr);
                w.opt_i32(p.last_known_leader);
            }
        }
        w.len(self.configs.len());
        for (res, m) in &self.configs {
            match res {
                ConfigResource::Cluster => w.u8(0),
                ConfigResource::Broker(id) => {
                    w.u8(1);
                    w.i32(*id);
                }
                ConfigResource::Topic(name) => {
                    w.u8(2);
                    w.str(name);
                }
            }
            w.str_map(m);
        }
        let crc = crc32c::crc32c(w.bytes_written());
        w.u32(crc);
        w.into_inner()
    }

    /// Decodes a snapshot written by [`MetadataImage::encode`], verifying magic, version and
    /// checksum.
    pub fn decode(bytes: &[u8]) -> Result<MetadataImage, DecodeError> {
        if bytes.len() < IMAGE_MAGIC.len() + 1 + 4 {
            return Err(DecodeError::Truncated {
                at: 0,
                needed: IMAGE_MAGIC.len() + 5 - bytes.len(),
            });
        }
        if &bytes[..4] != IMAGE_MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let (content, stored) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_be_bytes([stored[0], stored[1], stored[2], stored[3]]);
        let computed = crc32c::crc32c(content);
        if stored != computed {
            return Err(DecodeError::Checksum { stored, computed });
        }
        let mut r = Reader::new(&content[4..]);
        let version = r.u8()?;
        if version != IMAGE_V1 && version != IMAGE_V2 {
            return Err(DecodeError::UnsupportedVersion {
                kind: "metadata image",
                version,
            });
        }
        let mut img = MetadataImage {
            offset: r.u64()?,
            next_producer_id: r.i64()?,
            ..MetadataImage::default()
        };
        for _ in 0..r.len(30)? {
            let id = r.i32()?;
            let epoch = r.u64()?;
            let incarnation = r.uuid()?;
            let mut endpoints = Vec::new();
            for _ in 0..r.len(10)? {
                endpoints.push(Endpoint {
                    name: r.str()?,
                    host: r.str()?,
                    port: r.u16()?,
                });
            }
            let rack = r.opt_str()?;
            let fenced = r.bool()?;
            img.brokers.insert(
                id,
                BrokerRegistration {
                    id,
                    epoch,
                    incarnation,
                    endpoints,
                    rack,
                    fenced,
                },
            );
        }
        for _ in 0..r.len(28)? {
            let name = r.str()?;
            let id = r.uuid()?;
            let configs = r.str_map()?;
            let mut partitions = Vec::new();
            for _ in 0..r.len(17)? {
                let replicas = r.i32s()?;
                let isr = r.i32s()?;
                let leader = r.opt_i32()?;
                let leader_epoch = r.i32()?;
                let partition_epoch = r.i32()?;
                let (elr, last_known_leader) = if version >= IMAGE_V2 {
                    (r.i32s()?, r.opt_i32()?)
                } else {
                    (Vec::new(), None)
                };
                partitions.push(PartitionState {
                    replicas,
                    isr,
                    elr,
                    last_known_leader,
                    leader,
                    leader_epoch,
                    partition_epoch,
                });
            }
            img.topics.insert(
                name,
                TopicImage {
                    id,
                    partitions,
                    configs,
                },
            );
        }
        for _ in 0..r.len(5)? {
            let res = match r.u8()? {
                0 => ConfigResource::Cluster,
                1 => ConfigResource::Broker(r.i32()?),
                2 => ConfigResource::Topic(r.str()?),
                v => {
                    return Err(DecodeError::Invalid {
                        field: "config resource kind",
                        value: u64::from(v),
                    });
                }
            };
            img.configs.insert(res, r.str_map()?);
        }
        r.finish()?;
        Ok(img)
    }
}
