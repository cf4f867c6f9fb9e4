//! What changed between two metadata images (pure: old image, new image → changes), and the
//! controller-quorum changes seen between two `DescribeCluster` answers.

use std::collections::BTreeSet;
use std::fmt;

use gregor_controller::metadata::{BrokerId, MetadataImage};

/// One change worth a line: what a user watches for while killing brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// The partition's leader changed (`None`: offline).
    LeaderChanged {
        topic: String,
        partition: u32,
        from: Option<BrokerId>,
        to: Option<BrokerId>,
        leader_epoch: i32,
    },
    /// Replicas left the ISR.
    IsrShrunk {
        topic: String,
        partition: u32,
        from: Vec<BrokerId>,
        to: Vec<BrokerId>,
    },
    /// Replicas joined the ISR.
    IsrExpanded {
        topic: String,
        partition: u32,
        from: Vec<BrokerId>,
        to: Vec<BrokerId>,
    },
    /// A broker registered (first start or restart: a new broker epoch).
    BrokerRegistered { id: BrokerId, epoch: u64 },
    /// The controller fenced a broker (missed heartbeats, or a controlled shutdown).
    BrokerFenced { id: BrokerId },
    /// A broker caught up with the metadata and was unfenced.
    BrokerUnfenced { id: BrokerId },
    /// A topic appeared.
    TopicCreated { topic: String, partitions: usize },
    /// A topic was deleted.
    TopicDeleted { topic: String },
    /// Partitions were added to a topic.
    PartitionsAdded {
        topic: String,
        from: usize,
        to: usize,
    },
    /// The controller quorum's leader changed, as a controller reported it (`None`: no leader
    /// known, e.g. during an election).
    ControllerLeader {
        from: Option<u64>,
        to: Option<u64>,
        term: u64,
    },
    /// No controller answered.
    ControllerUnreachable { error: String },
    /// A controller answers again.
    ControllerReachable { answered_by: u64 },
}

impl Change {
    /// A short stable name (the second word of a `--plain` line).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Change::LeaderChanged { .. } => "leader-change",
            Change::IsrShrunk { .. } => "isr-shrink",
            Change::IsrExpanded { .. } => "isr-expand",
            Change::BrokerRegistered { .. } => "broker-registered",
            Change::BrokerFenced { .. } => "broker-fenced",
            Change::BrokerUnfenced { .. } => "broker-unfenced",
            Change::TopicCreated { .. } => "topic-created",
            Change::TopicDeleted { .. } => "topic-deleted",
            Change::PartitionsAdded { .. } => "partitions-added",
            Change::ControllerLeader { .. } => "controller-leader",
            Change::ControllerUnreachable { .. } => "controller-unreachable",
            Change::ControllerReachable { .. } => "controller-reachable",
        }
    }

    /// The topic this change is about, if it is about one.
    pub(crate) fn topic(&self) -> Option<&str> {
        match self {
            Change::LeaderChanged { topic, .. }
            | Change::IsrShrunk { topic, .. }
            | Change::IsrExpanded { topic, .. }
            | Change::TopicCreated { topic, .. }
            | Change::TopicDeleted { topic }
            | Change::PartitionsAdded { topic, .. } => Some(topic),
            _ => None,
        }
    }

    /// The partition this change is about, if it is about one.
    pub(crate) fn partition(&self) -> Option<(&str, u32)> {
        match self {
            Change::LeaderChanged {
                topic, partition, ..
            }
            | Change::IsrShrunk {
                topic, partition, ..
            }
            | Change::IsrExpanded {
                topic, partition, ..
            } => Some((topic, *partition)),
            _ => None,
        }
    }

    /// Whether this change means less redundancy or availability (shown in red), as opposed to
    /// a recovery (green) or a neutral change (yellow).
    pub(crate) fn severity(&self) -> Severity {
        match self {
            Change::IsrShrunk { .. }
            | Change::BrokerFenced { .. }
            | Change::ControllerUnreachable { .. }
            | Change::TopicDeleted { .. } => Severity::Bad,
            Change::LeaderChanged { to: None, .. } | Change::ControllerLeader { to: None, .. } => {
                Severity::Bad
            }
            Change::IsrExpanded { .. }
            | Change::BrokerUnfenced { .. }
            | Change::ControllerReachable { .. } => Severity::Good,
            _ => Severity::Neutral,
        }
    }
}

/// How a change is highlighted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Severity {
    /// Lost a replica, a broker or the controller.
    Bad,
    /// Got one back.
    Good,
    /// Anything else (a leader moved, a topic appeared).
    Neutral,
}

/// `1,2,3`, or `-` for an empty list.
pub(crate) fn ids<T: fmt::Display>(v: &[T]) -> String {
    if v.is_empty() {
        return "-".to_owned();
    }
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A broker or controller id, or `none`.
pub(crate) fn opt<T: fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::LeaderChanged {
                topic,
                partition,
                from,
                to,
                leader_epoch,
            } => write!(
                f,
                "{topic}-{partition}: leader {} -> {} (epoch {leader_epoch})",
                opt(*from),
                opt(*to)
            ),
            Change::IsrShrunk {
                topic,
                partition,
                from,
                to,
            } => write!(
                f,
                "{topic}-{partition}: isr {} -> {} (out: {})",
                ids(from),
                ids(to),
                ids(&minus(from, to))
            ),
            Change::IsrExpanded {
                topic,
                partition,
                from,
                to,
            } => write!(
                f,
                "{topic}-{partition}: isr {} -> {} (in: {})",
                ids(from),
                ids(to),
                ids(&minus(to, from))
            ),
            Change::BrokerRegistered { id, epoch } => {
                write!(f, "broker {id} registered (epoch {epoch})")
            }
            Change::BrokerFenced { id } => write!(f, "broker {id} fenced"),
            Change::BrokerUnfenced { id } => write!(f, "broker {id} unfenced"),
            Change::TopicCreated { topic, partitions } => {
                write!(f, "{topic}: created with {partitions} partitions")
            }
            Change::TopicDeleted { topic } => write!(f, "{topic}: deleted"),
            Change::PartitionsAdded { topic, from, to } => {
                write!(f, "{topic}: partitions {from} -> {to}")
            }
            Change::ControllerLeader { from, to, term } => write!(
                f,
                "controller leader {} -> {} (term {term})",
                opt(*from),
                opt(*to)
            ),
            Change::ControllerUnreachable { error } => {
                write!(f, "no controller answers ({error})")
            }
            Change::ControllerReachable { answered_by } => {
                write!(f, "controller {answered_by} answers again")
            }
        }
    }
}

/// The members of `a` not in `b`, in `a`'s order.
fn minus(a: &[BrokerId], b: &[BrokerId]) -> Vec<BrokerId> {
    a.iter().filter(|x| !b.contains(x)).copied().collect()
}

/// Every change from `old` to `new`, brokers first, then topics and partitions in name order.
/// Within one partition a leader change comes before the ISR change of the same record (a
/// fenced leader is replaced and dropped from the ISR in one election).
pub(crate) fn diff(old: &MetadataImage, new: &MetadataImage) -> Vec<Change> {
    let mut out = Vec::new();
    for (id, b) in &new.brokers {
        match old.brokers.get(id) {
            Some(o) if o.epoch == b.epoch => {
                if o.fenced != b.fenced {
                    out.push(if b.fenced {
                        Change::BrokerFenced { id: *id }
                    } else {
                        Change::BrokerUnfenced { id: *id }
                    });
                }
            }
            previous => {
                out.push(Change::BrokerRegistered {
                    id: *id,
                    epoch: b.epoch,
                });
                // A new incarnation registers fenced; a broker restarted before the
                // controller fenced the old one goes from unfenced to fenced here.
                let was_fenced = previous.is_none_or(|o| o.fenced);
                if was_fenced != b.fenced {
                    out.push(if b.fenced {
                        Change::BrokerFenced { id: *id }
                    } else {
                        Change::BrokerUnfenced { id: *id }
                    });
                }
            }
        }
    }
    let topics: BTreeSet<&String> = old.topics.keys().chain(new.topics.keys()).collect();
    for name in topics {
        let (o, n) = (old.topics.get(name), new.topics.get(name));
        let (o, n) = match (o, n) {
            (None, Some(n)) => {
                out.push(Change::TopicCreated {
                    topic: name.clone(),
                    partitions: n.partitions.len(),
                });
                continue;
            }
            (Some(_), None) => {
                out.push(Change::TopicDeleted {
                    topic: name.clone(),
                });
                continue;
            }
            (Some(o), Some(n)) if o.id != n.id => {
                // Deleted and re-created under the same name between the two images.
                out.push(Change::TopicDeleted {
                    topic: name.clone(),
                });
                out.push(Change::TopicCreated {
                    topic: name.clone(),
                    partitions: n.partitions.len(),
                });
                continue;
            }
            (Some(o), Some(n)) => (o, n),
            (None, None) => continue,
        };
        if n.partitions.len() > o.partitions.len() {
            out.push(Change::PartitionsAdded {
                topic: name.clone(),
                from: o.partitions.len(),
                to: n.partitions.len(),
            });
        }
        for (i, (op, np)) in o.partitions.iter().zip(&n.partitions).enumerate() {
            let partition = u32::try_from(i).unwrap_or(u32::MAX);
            if op.leader != np.leader {
                out.push(Change::LeaderChanged {
                    topic: name.clone(),
                    partition,
                    from: op.leader,
                    to: np.leader,
                    leader_epoch: np.leader_epoch,
                });
            }
            let removed = op.isr.iter().any(|b| !np.isr.contains(b));
            let added = np.isr.iter().any(|b| !op.isr.contains(b));
            if removed {
                // A reassignment may remove and add in one step: the shrink shows the
                // removal only, the expansion the addition.
                let to: Vec<BrokerId> = op
                    .isr
                    .iter()
                    .filter(|b| np.isr.contains(b))
                    .copied()
                    .collect();
                out.push(Change::IsrShrunk {
                    topic: name.clone(),
                    partition,
                    from: op.isr.clone(),
                    to: if added { to } else { np.isr.clone() },
                });
            }
            if added {
                let from: Vec<BrokerId> = if removed {
                    op.isr
                        .iter()
                        .filter(|b| np.isr.contains(b))
                        .copied()
                        .collect()
                } else {
                    op.isr.clone()
                };
                out.push(Change::IsrExpanded {
                    topic: name.clone(),
                    partition,
                    from,
                    to: np.isr.clone(),
                });
            }
        }
    }
    out
}

/// The controller quorum as one `DescribeCluster` answer showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Quorum {
    /// The cluster id.
    pub(crate) cluster_id: String,
    /// The controller that answered.
    pub(crate) answered_by: u64,
    /// Whether the answer came from the leader (else a follower answered on its own).
    pub(crate) from_leader: bool,
    /// The leader the answering controller knows.
    pub(crate) leader: Option<u64>,
    /// Its address.
    pub(crate) leader_address: String,
    /// The Raft term.
    pub(crate) term: u64,
    /// Voter ids.
    pub(crate) voters: Vec<u64>,
}

/// The controller-quorum state between polls: answered, or no controller reachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QuorumState {
    /// Not asked yet.
    Unknown,
    /// The last poll was answered.
    Up(Quorum),
    /// The last poll found no controller; the last answer before that, if any.
    Down { error: String, last: Option<Quorum> },
}

impl QuorumState {
    /// The last quorum answer seen (current or before it became unreachable).
    pub(crate) fn last(&self) -> Option<&Quorum> {
        match self {
            QuorumState::Up(q) => Some(q),
            QuorumState::Down { last, .. } => last.as_ref(),
            QuorumState::Unknown => None,
        }
    }
}

/// The changes from one quorum poll to the next. The first answer is the starting point
/// (no change); a leader change is reported once, however many polls in between failed.
pub(crate) fn diff_quorum(old: &QuorumState, new: &QuorumState) -> Vec<Change> {
    let mut out = Vec::new();
    match (old, new) {
        (QuorumState::Up(_) | QuorumState::Unknown, QuorumState::Down { error, .. }) => {
            out.push(Change::ControllerUnreachable {
                error: error.clone(),
            });
        }
        (QuorumState::Down { .. }, QuorumState::Up(q)) => {
            out.push(Change::ControllerReachable {
                answered_by: q.answered_by,
            });
        }
        _ => {}
    }
    if let (Some(o), QuorumState::Up(n)) = (old.last(), new)
        && o.leader != n.leader
    {
        out.push(Change::ControllerLeader {
            from: o.leader,
            to: n.leader,
            term: n.term,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use gregor_controller::metadata::{BrokerRegistration, PartitionState, TopicImage};

    use super::*;

    fn broker(id: BrokerId, epoch: u64, fenced: bool) -> BrokerRegistration {
        BrokerRegistration {
            id,
            epoch,
            incarnation: uuid::Uuid::nil(),
            endpoints: Vec::new(),
            rack: None,
            fenced,
        }
    }

    fn part(leader: Option<BrokerId>, epoch: i32, isr: &[BrokerId]) -> PartitionState {
        PartitionState {
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            elr: Vec::new(),
            last_known_leader: None,
            leader,
            leader_epoch: epoch,
            partition_epoch: epoch,
        }
    }

    fn image(brokers: &[(BrokerId, u64, bool)], parts: Vec<PartitionState>) -> MetadataImage {
        let mut topics = BTreeMap::new();
        topics.insert(
            "t".to_owned(),
            TopicImage {
                id: uuid::Uuid::from_u128(7),
                partitions: parts,
                configs: BTreeMap::new(),
            },
        );
        MetadataImage {
            offset: 10,
            brokers: brokers
                .iter()
                .map(|&(id, e, f)| (id, broker(id, e, f)))
                .collect(),
            topics,
            ..MetadataImage::default()
        }
    }

    const ALL_UP: &[(BrokerId, u64, bool)] = &[(1, 3, false), (2, 4, false), (3, 5, false)];

    #[test]
    fn equal_images_have_no_changes() {
        let a = image(ALL_UP, vec![part(Some(1), 0, &[1, 2, 3])]);
        assert_eq!(diff(&a, &a.clone()), Vec::new());
    }

    #[test]
    fn a_leader_kill_is_a_fence_a_leader_change_and_an_isr_shrink() {
        let old = image(
            ALL_UP,
            vec![part(Some(1), 0, &[1, 2, 3]), part(Some(2), 0, &[2, 3, 1])],
        );
        let new = image(
            &[(1, 3, true), (2, 4, false), (3, 5, false)],
            vec![part(Some(2), 1, &[2, 3]), part(Some(2), 1, &[2, 3])],
        );
        let changes = diff(&old, &new);
        assert_eq!(
            changes,
            vec![
                Change::BrokerFenced { id: 1 },
                Change::LeaderChanged {
                    topic: "t".into(),
                    partition: 0,
                    from: Some(1),
                    to: Some(2),
                    leader_epoch: 1
                },
                Change::IsrShrunk {
                    topic: "t".into(),
                    partition: 0,
                    from: vec![1, 2, 3],
                    to: vec![2, 3]
                },
                Change::IsrShrunk {
                    topic: "t".into(),
                    partition: 1,
                    from: vec![2, 3, 1],
                    to: vec![2, 3]
                },
            ]
        );
        assert_eq!(
            changes[1].to_string(),
            "t-0: leader 1 -> 2 (epoch 1)",
            "the --plain text the process test matches"
        );
        assert_eq!(changes[2].to_string(), "t-0: isr 1,2,3 -> 2,3 (out: 1)");
        assert_eq!(changes[2].severity(), Severity::Bad);
    }

    #[test]
    fn a_restart_is_a_registration_then_an_unfence_then_an_isr_expand() {
        let before = image(
            &[(1, 3, true), (2, 4, false), (3, 5, false)],
            vec![part(Some(2), 1, &[2, 3])],
        );
        // Re-registered with a new epoch, fenced until it catches up.
        let registered = image(
            &[(1, 40, true), (2, 4, false), (3, 5, false)],
            vec![part(Some(2), 1, &[2, 3])],
        );
        assert_eq!(
            diff(&before, &registered),
            vec![Change::BrokerRegistered { id: 1, epoch: 40 }]
        );
        let unfenced = image(
            &[(1, 40, false), (2, 4, false), (3, 5, false)],
            vec![part(Some(2), 1, &[2, 3])],
        );
        assert_eq!(
            diff(&registered, &unfenced),
            vec![Change::BrokerUnfenced { id: 1 }]
        );
        let rejoined = image(
            &[(1, 40, false), (2, 4, false), (3, 5, false)],
            vec![part(Some(2), 2, &[2, 3, 1])],
        );
        let changes = diff(&unfenced, &rejoined);
        assert_eq!(
            changes,
            vec![Change::IsrExpanded {
                topic: "t".into(),
                partition: 0,
                from: vec![2, 3],
                to: vec![2, 3, 1]
            }]
        );
        assert_eq!(changes[0].to_string(), "t-0: isr 2,3 -> 2,3,1 (in: 1)");
    }

    #[test]
    fn a_broker_that_restarts_before_it_was_fenced_is_fenced_by_its_new_registration() {
        let old = image(ALL_UP, vec![part(Some(1), 0, &[1, 2, 3])]);
        // A new incarnation registers fenced (it has not caught up with the metadata yet).
        let new = image(
            &[(1, 9, true), (2, 4, false), (3, 5, false)],
            vec![part(Some(1), 0, &[1, 2, 3])],
        );
        assert_eq!(
            diff(&old, &new),
            vec![
                Change::BrokerRegistered { id: 1, epoch: 9 },
                Change::BrokerFenced { id: 1 }
            ]
        );
        // A brand-new broker registers fenced: no fence to report, only the registration.
        let mut fresh = new.clone();
        fresh.brokers.insert(4, broker(4, 11, true));
        assert_eq!(
            diff(&new, &fresh),
            vec![Change::BrokerRegistered { id: 4, epoch: 11 }]
        );
    }

    #[test]
    fn offline_reassignment_and_topic_changes() {
        let old = image(ALL_UP, vec![part(Some(1), 0, &[1])]);
        let mut new = image(ALL_UP, vec![part(None, 1, &[]), part(Some(3), 0, &[3])]);
        new.topics.insert(
            "u".into(),
            TopicImage {
                id: uuid::Uuid::from_u128(8),
                partitions: vec![part(Some(2), 0, &[2])],
                configs: BTreeMap::new(),
            },
        );
        let changes = diff(&old, &new);
        assert_eq!(
            changes,
            vec![
                Change::PartitionsAdded {
                    topic: "t".into(),
                    from: 1,
                    to: 2
                },
                Change::LeaderChanged {
                    topic: "t".into(),
                    partition: 0,
                    from: Some(1),
                    to: None,
                    leader_epoch: 1
                },
                Change::IsrShrunk {
                    topic: "t".into(),
                    partition: 0,
                    from: vec![1],
                    to: vec![]
                },
                Change::TopicCreated {
                    topic: "u".into(),
                    partitions: 1
                },
            ]
        );
        assert_eq!(changes[1].to_string(), "t-0: leader 1 -> none (epoch 1)");
        assert_eq!(changes[1].severity(), Severity::Bad);
        // Removed and added in one step: both halves are reported.
        let a = image(ALL_UP, vec![part(Some(1), 0, &[1, 2])]);
        let b = image(ALL_UP, vec![part(Some(1), 1, &[1, 3])]);
        assert_eq!(
            diff(&a, &b),
            vec![
                Change::IsrShrunk {
                    topic: "t".into(),
                    partition: 0,
                    from: vec![1, 2],
                    to: vec![1]
                },
                Change::IsrExpanded {
                    topic: "t".into(),
                    partition: 0,
                    from: vec![1],
                    to: vec![1, 3]
                },
            ]
        );
        assert_eq!(
            diff(&b, &MetadataImage::default()),
            vec![Change::TopicDeleted { topic: "t".into() }]
        );
    }

    fn quorum(leader: Option<u64>, term: u64) -> Quorum {
        Quorum {
            cluster_id: "c".into(),
            answered_by: 2,
            from_leader: true,
            leader,
            leader_address: String::new(),
            term,
            voters: vec![1, 2, 3],
        }
    }

    #[test]
    fn controller_leader_changes_and_reachability() {
        let unknown = QuorumState::Unknown;
        let up1 = QuorumState::Up(quorum(Some(1), 3));
        assert_eq!(diff_quorum(&unknown, &up1), Vec::new());
        assert_eq!(diff_quorum(&up1, &up1.clone()), Vec::new());
        let down = QuorumState::Down {
            error: "refused".into(),
            last: Some(quorum(Some(1), 3)),
        };
        assert_eq!(
            diff_quorum(&up1, &down),
            vec![Change::ControllerUnreachable {
                error: "refused".into()
            }]
        );
        // Back, with another leader elected meanwhile: both are reported.
        let up3 = QuorumState::Up(quorum(Some(3), 4));
        assert_eq!(
            diff_quorum(&down, &up3),
            vec![
                Change::ControllerReachable { answered_by: 2 },
                Change::ControllerLeader {
                    from: Some(1),
                    to: Some(3),
                    term: 4
                }
            ]
        );
        let electing = QuorumState::Up(quorum(None, 5));
        let changes = diff_quorum(&up3, &electing);
        assert_eq!(
            changes[0].to_string(),
            "controller leader 3 -> none (term 5)"
        );
        assert_eq!(changes[0].severity(), Severity::Bad);
    }
}
