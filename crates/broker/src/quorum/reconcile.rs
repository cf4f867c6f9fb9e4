//! The pure part of following the controller: from a metadata image and what this broker holds
//! locally, the actions that make the broker match the image.
//!
//! Rules (each is a Kafka behaviour unless noted):
//! * a partition gets a local log only where this broker is one of its replicas;
//! * the logs of a topic that is no longer in the image, or whose id changed (deleted and
//!   re-created under the same name), are deleted. Logs found on disk at startup (no topic id
//!   known yet) are deleted only once the image has `caught_up` with the broker's registration:
//!   the images of a replayed stream are partial until then (the first record is not the topic's
//!   creation), and deleting on a partial image would lose data;
//! * a local log of a partition this broker is not a replica of (a reassignment, which Gregor
//!   does not do yet) is kept, not deleted: deleting data on a metadata mismatch is the riskier
//!   mistake (Gregor's choice);
//! * topic config overrides changed in the image are applied to the topic's local logs;
//! * every local partition whose assignment differs from the last one applied (or that was just
//!   opened) gets `apply_assignment`.

use std::collections::{BTreeMap, BTreeSet};

use gregor_controller::metadata::{MetadataImage, PartitionState};
use uuid::Uuid;

use crate::cluster::{BrokerId, PartitionAssignment};

/// What this broker holds, as the reconciler sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalState {
    /// Topic ids this broker learnt from the image (absent for logs found on disk at start).
    pub topic_ids: BTreeMap<String, Uuid>,
    /// Config overrides last applied per topic.
    pub topic_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Local partition logs and the assignment last applied to each (`None`: found on disk,
    /// not open as a partition yet).
    pub partitions: BTreeMap<(String, i32), Option<PartitionAssignment>>,
}

/// One step towards the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Delete the local log of a partition of a deleted (or re-created) topic.
    DeleteLog {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// Create (or open) the local log of a partition this broker is a replica of.
    OpenLog {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// Apply the topic's config overrides to its local logs.
    SetConfigs {
        /// Topic.
        topic: String,
        /// The overrides now in the image.
        configs: BTreeMap<String, String>,
    },
    /// Hand the partition's new assignment to the data plane.
    Assign {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The assignment from the image.
        assignment: PartitionAssignment,
    },
}

/// The controller's partition state as the broker's assignment.
pub fn assignment(p: &PartitionState) -> PartitionAssignment {
    PartitionAssignment {
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        replicas: p.replicas.clone(),
        isr: p.isr.clone(),
        elr: p.elr.clone(),
    }
}

/// The actions that bring `local` to `image` for broker `node`, in execution order: deletions,
/// then log creations, then config changes, then assignments. `caught_up`: the image has reached
/// the broker's registration offset (see the module docs).
pub fn plan(
    image: &MetadataImage,
    node: BrokerId,
    local: &LocalState,
    caught_up: bool,
) -> Vec<Action> {
    let mut deletes = Vec::new();
    let mut opens = Vec::new();
    let mut configs = Vec::new();
    let mut assigns = Vec::new();
    let gone = |topic: &str| match (image.topics.get(topic), local.topic_ids.get(topic)) {
        (None, Some(_)) => true,
        (None, None) => caught_up,
        (Some(t), known) => known.is_some_and(|id| *id != t.id),
    };
    for (topic, partition) in local.partitions.keys() {
        if gone(topic) {
            deletes.push(Action::DeleteLog {
                topic: topic.clone(),
                partition: *partition,
            });
        }
    }
    let deleted: BTreeSet<&String> = local
        .partitions
        .keys()
        .map(|(t, _)| t)
        .filter(|t| gone(t))
        .collect();
    for (name, topic) in &image.topics {
        let recreated = deleted.contains(name);
        let mut hosts_any = false;
        for (index, p) in topic.partitions.iter().enumerate() {
            if !p.replicas.contains(&node) {
                continue;
            }
            let Ok(index) = i32::try_from(index) else {
                continue;
            };
            hosts_any = true;
            let key = (name.clone(), index);
            let applied = if recreated {
                None
            } else {
                local.partitions.get(&key)
            };
            // Not assigned yet: new, or a log found on disk that is not open as a partition.
            if applied.and_then(Option::as_ref).is_none() {
                opens.push(Action::OpenLog {
                    topic: name.clone(),
                    partition: index,
                });
            }
            let wanted = assignment(p);
            if applied.and_then(Option::as_ref) != Some(&wanted) {
                assigns.push(Action::Assign {
                    topic: name.clone(),
                    partition: index,
                    assignment: wanted,
                });
            }
        }
        let known = if recreated {
            None
        } else {
            local.topic_configs.get(name)
        };
        if hosts_any && known.is_some_and(|c| *c != topic.configs) {
            configs.push(Action::SetConfigs {
                topic: name.clone(),
                configs: topic.configs.clone(),
            });
        }
    }
    deletes
        .into_iter()
        .chain(opens)
        .chain(configs)
        .chain(assigns)
        .collect()
}

#[cfg(test)]
mod tests {
    use gregor_controller::metadata::{BrokerRegistration, TopicImage};

    use super::*;

    fn partition(replicas: &[i32], leader: Option<i32>, epoch: i32) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            leader,
            leader_epoch: epoch,
            partition_epoch: epoch,
            elr: Vec::new(),
            last_known_leader: None,
        }
    }

    fn image(topics: &[(&str, Uuid, Vec<PartitionState>)]) -> MetadataImage {
        let mut img = MetadataImage::default();
        for id in 1..=3 {
            img.brokers.insert(
                id,
                BrokerRegistration {
                    id,
                    epoch: 1,
                    incarnation: Uuid::nil(),
                    endpoints: Vec::new(),
                    rack: None,
                    fenced: false,
                },
            );
        }
        for (name, id, partitions) in topics {
            img.topics.insert(
                (*name).to_owned(),
                TopicImage {
                    id: *id,
                    partitions: partitions.clone(),
                    configs: BTreeMap::new(),
                },
            );
        }
        img
    }

    fn applied(img: &MetadataImage, node: i32) -> LocalState {
        let mut local = LocalState::default();
        for a in plan(img, node, &LocalState::default(), true) {
            if let Action::Assign {
                topic,
                partition,
                assignment,
            } = a
            {
                local.topic_ids.insert(topic.clone(), img.topics[&topic].id);
                local
                    .topic_configs
                    .insert(topic.clone(), img.topics[&topic].configs.clone());
                local
                    .partitions
                    .insert((topic, partition), Some(assignment));
            }
        }
        local
    }

    #[test]
    fn partition_state_maps_to_the_assignment() {
        let p = PartitionState {
            replicas: vec![2, 1, 3],
            isr: vec![2, 3],
            leader: Some(2),
            leader_epoch: 4,
            partition_epoch: 9,
            elr: vec![1],
            last_known_leader: None,
        };
        assert_eq!(
            assignment(&p),
            PartitionAssignment {
                leader: Some(2),
                leader_epoch: 4,
                partition_epoch: 9,
                replicas: vec![2, 1, 3],
                isr: vec![2, 3],
                elr: vec![1],
            }
        );
        let offline = PartitionState { leader: None, ..p };
        assert_eq!(assignment(&offline).leader, None);
    }

    #[test]
    fn only_replicas_get_logs_and_every_new_partition_is_assigned() {
        let id = Uuid::from_u128(1);
        let img = image(&[(
            "t",
            id,
            vec![
                partition(&[1, 2], Some(1), 0),
                partition(&[2, 3], Some(2), 0),
                partition(&[3, 1], Some(3), 0),
            ],
        )]);
        let actions = plan(&img, 1, &LocalState::default(), true);
        let opened: Vec<i32> = actions
            .iter()
            .filter_map(|a| match a {
                Action::OpenLog { partition, .. } => Some(*partition),
                _ => None,
            })
            .collect();
        assert_eq!(opened, vec![0, 2]);
        let assigned: Vec<i32> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Assign { partition, .. } => Some(*partition),
                _ => None,
            })
            .collect();
        assert_eq!(assigned, vec![0, 2]);
        // Opens come before assignments (a partition must exist to be assigned).
        let first_assign = actions
            .iter()
            .position(|a| matches!(a, Action::Assign { .. }))
            .unwrap();
        assert!(
            actions[..first_assign]
                .iter()
                .all(|a| matches!(a, Action::OpenLog { .. }))
        );
    }

    #[test]
    fn an_unchanged_image_plans_nothing_and_a_leader_change_one_assignment() {
        let id = Uuid::from_u128(1);
        let img = image(&[(
            "t",
            id,
            vec![
                partition(&[1, 2], Some(1), 0),
                partition(&[2, 1], Some(2), 0),
            ],
        )]);
        let local = applied(&img, 1);
        assert_eq!(plan(&img, 1, &local, true), Vec::new());

        let mut moved = img.clone();
        let p = &mut moved.topics.get_mut("t").unwrap().partitions[0];
        p.leader = Some(2);
        p.isr = vec![2];
        p.leader_epoch = 1;
        p.partition_epoch = 1;
        let actions = plan(&moved, 1, &local, true);
        assert_eq!(actions.len(), 1);
        assert!(matches!(
            &actions[0],
            Action::Assign { partition: 0, assignment, .. }
                if assignment.leader == Some(2) && assignment.leader_epoch == 1
        ));
    }

    #[test]
    fn deleted_and_recreated_topics_lose_their_logs() {
        let old = Uuid::from_u128(1);
        let img = image(&[("t", old, vec![partition(&[1], Some(1), 0)])]);
        let local = applied(&img, 1);

        let deleted = image(&[]);
        assert_eq!(
            plan(&deleted, 1, &local, true),
            vec![Action::DeleteLog {
                topic: "t".into(),
                partition: 0
            }]
        );

        let recreated = image(&[("t", Uuid::from_u128(2), vec![partition(&[1], Some(1), 0)])]);
        let actions = plan(&recreated, 1, &local, true);
        assert_eq!(
            actions[..2],
            [
                Action::DeleteLog {
                    topic: "t".into(),
                    partition: 0
                },
                Action::OpenLog {
                    topic: "t".into(),
                    partition: 0
                }
            ]
        );
        assert!(matches!(actions[2], Action::Assign { partition: 0, .. }));
    }

    #[test]
    fn logs_found_on_disk_are_kept_when_the_topic_exists_and_deleted_otherwise() {
        let img = image(&[("t", Uuid::from_u128(1), vec![partition(&[1], Some(1), 0)])]);
        let mut local = LocalState::default();
        local.partitions.insert(("t".into(), 0), None);
        local.partitions.insert(("gone".into(), 3), None);
        // Another replica's partition that this broker happens to hold is kept.
        local.partitions.insert(("u".into(), 0), None);
        let img = {
            let mut i = img;
            i.topics.insert(
                "u".into(),
                TopicImage {
                    id: Uuid::from_u128(5),
                    partitions: vec![partition(&[2], Some(2), 0)],
                    configs: BTreeMap::new(),
                },
            );
            i
        };
        // While the replayed stream has not caught up, nothing found on disk is deleted.
        let early = plan(&img, 1, &local, false);
        assert!(
            early.iter().all(|a| !matches!(a, Action::DeleteLog { .. })),
            "{early:?}"
        );
        let actions = plan(&img, 1, &local, true);
        assert_eq!(
            actions,
            vec![
                Action::DeleteLog {
                    topic: "gone".into(),
                    partition: 3
                },
                Action::OpenLog {
                    topic: "t".into(),
                    partition: 0
                },
                Action::Assign {
                    topic: "t".into(),
                    partition: 0,
                    assignment: assignment(&partition(&[1], Some(1), 0)),
                }
            ]
        );
    }

    #[test]
    fn config_changes_are_applied_where_the_broker_hosts_the_topic() {
        let img = image(&[
            ("t", Uuid::from_u128(1), vec![partition(&[1], Some(1), 0)]),
            (
                "other",
                Uuid::from_u128(2),
                vec![partition(&[2], Some(2), 0)],
            ),
        ]);
        let local = applied(&img, 1);
        let mut changed = img.clone();
        for t in changed.topics.values_mut() {
            t.configs.insert("retention.ms".into(), "5".into());
        }
        assert_eq!(
            plan(&changed, 1, &local, true),
            vec![Action::SetConfigs {
                topic: "t".into(),
                configs: BTreeMap::from([("retention.ms".to_string(), "5".to_string())]),
            }]
        );
    }
}
