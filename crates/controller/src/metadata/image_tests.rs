//! Apply tests: every command's effect and every rejection, on small hand-built images.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::*;

fn uuid(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

/// Brokers 1..=n registered at offsets 1..=n and unfenced, then a topic "t" with the given
/// assignment.
pub(crate) fn image_with(n: i32, assignments: &[&[BrokerId]]) -> MetadataImage {
    let mut img = MetadataImage::default();
    let mut off = 0;
    for id in 1..=n {
        off += 1;
        let r = img.apply(
            off,
            &Command::RegisterBroker {
                broker_id: id,
                incarnation: uuid(id as u128),
                endpoints: vec![],
                rack: None,
                clean_shutdown: true,
            },
        );
        assert_eq!(r, CommandResult::BrokerRegistered { broker_epoch: off });
        off += 1;
        let r = img.apply(
            off,
            &Command::UnfenceBroker {
                broker_id: id,
                broker_epoch: off - 1,
            },
        );
        assert_eq!(r, CommandResult::Applied);
    }
    if !assignments.is_empty() {
        off += 1;
        let r = img.apply(
            off,
            &Command::CreateTopic {
                name: "t".into(),
                topic_id: uuid(100),
                assignments: assignments.iter().map(|a| a.to_vec()).collect(),
                configs: BTreeMap::new(),
            },
        );
        assert_eq!(r, CommandResult::Applied);
    }
    img
}

fn rejected(img: &mut MetadataImage, cmd: Command) -> Rejection {
    let before = img.clone();
    let offset = img.offset + 1;
    match img.apply(offset, &cmd) {
        CommandResult::Rejected(r) => {
            let mut expected = before;
            expected.offset = offset;
            assert_eq!(*img, expected, "a rejected command changed the image");
            r
        }
        other => panic!("{cmd:?} was not rejected: {other:?}"),
    }
}

#[test]
fn register_is_fenced_until_unfenced_and_idempotent_per_incarnation() {
    let mut img = MetadataImage::default();
    let reg = Command::RegisterBroker {
        broker_id: 7,
        incarnation: uuid(1),
        endpoints: vec![],
        rack: Some("a".into()),
        clean_shutdown: true,
    };
    assert_eq!(
        img.apply(5, &reg),
        CommandResult::BrokerRegistered { broker_epoch: 5 }
    );
    assert!(img.brokers[&7].fenced);
    // Same incarnation again: same epoch, still one registration.
    assert_eq!(
        img.apply(6, &reg),
        CommandResult::BrokerRegistered { broker_epoch: 5 }
    );
    img.apply(
        7,
        &Command::UnfenceBroker {
            broker_id: 7,
            broker_epoch: 5,
        },
    );
    assert!(img.is_active(7));
    // A restart (new incarnation) gets a new epoch and starts fenced again.
    let restart = Command::RegisterBroker {
        broker_id: 7,
        incarnation: uuid(2),
        endpoints: vec![],
        rack: None,
        clean_shutdown: true,
    };
    assert_eq!(
        img.apply(9, &restart),
        CommandResult::BrokerRegistered { broker_epoch: 9 }
    );
    assert!(!img.is_active(7));
    // The old incarnation's epoch no longer works.
    assert_eq!(
        rejected(
            &mut img,
            Command::UnfenceBroker {
                broker_id: 7,
                broker_epoch: 5
            }
        ),
        Rejection::StaleBrokerEpoch {
            broker_id: 7,
            current: 9,
            got: 5
        }
    );
}

#[test]
fn create_topic_starts_with_full_isr_and_first_replica_leading() {
    let img = image_with(3, &[&[1, 2, 3], &[2, 3, 1]]);
    let t = &img.topics["t"];
    assert_eq!(
        t.partitions[1],
        PartitionState {
            replicas: vec![2, 3, 1],
            isr: vec![2, 3, 1],
            elr: vec![],
            last_known_leader: None,
            leader: Some(2),
            leader_epoch: 0,
            partition_epoch: 0
        }
    );
}

#[test]
fn create_topic_rejections() {
    let mut img = image_with(2, &[&[1, 2]]);
    let create = |name: &str, id: u128, a: Vec<Vec<BrokerId>>| Command::CreateTopic {
        name: name.into(),
        topic_id: uuid(id),
        assignments: a,
        configs: BTreeMap::new(),
    };
    assert_eq!(
        rejected(&mut img, create("t", 1, vec![vec![1]])),
        Rejection::TopicExists("t".into())
    );
    assert_eq!(
        rejected(&mut img, create("u", 100, vec![vec![1]])),
        Rejection::TopicIdInUse(uuid(100))
    );
    assert_eq!(
        rejected(&mut img, create("u", 2, vec![vec![1, 9]])),
        Rejection::UnknownBroker(9)
    );
    assert!(matches!(
        rejected(&mut img, create("u", 2, vec![vec![1, 1]])),
        Rejection::Invalid(_)
    ));
    assert!(matches!(
        rejected(&mut img, create("u", 2, vec![])),
        Rejection::Invalid(_)
    ));
    assert!(matches!(
        rejected(&mut img, create("", 2, vec![vec![1]])),
        Rejection::Invalid(_)
    ));
}

#[test]
fn delete_and_create_partitions() {
    let mut img = image_with(2, &[&[1, 2]]);
    let r = img.apply(
        50,
        &Command::CreatePartitions {
            topic: "t".into(),
            assignments: vec![vec![2, 1]],
        },
    );
    assert_eq!(r, CommandResult::Applied);
    assert_eq!(img.topics["t"].partitions.len(), 2);
    assert_eq!(img.partition("t", 1).map(|p| p.leader), Some(Some(2)));
    assert_eq!(
        img.apply(51, &Command::DeleteTopic { name: "t".into() }),
        CommandResult::Applied
    );
    assert_eq!(
        rejected(&mut img, Command::DeleteTopic { name: "t".into() }),
        Rejection::UnknownTopic("t".into())
    );
}

fn alter(isr: Vec<BrokerId>, by: BrokerId, epoch: u64, le: i32, pe: i32) -> Command {
    Command::AlterPartition {
        topic: "t".into(),
        partition: 0,
        broker_id: by,
        broker_epoch: epoch,
        leader_epoch: le,
        partition_epoch: pe,
        new_isr: isr,
    }
}

#[test]
fn alter_partition_is_guarded_by_the_partition_epoch() {
    // Broker 1 registered at offset 1.
    let mut img = image_with(3, &[&[1, 2, 3]]);
    let r = img.apply(20, &alter(vec![1, 2], 1, 1, 0, 0));
    assert_eq!(
        r,
        CommandResult::PartitionChanged {
            leader_epoch: 0,
            partition_epoch: 1
        }
    );
    // The same request again is stale now (KIP-497).
    assert_eq!(
        rejected(&mut img, alter(vec![1, 2, 3], 1, 1, 0, 0)),
        Rejection::StalePartitionEpoch { current: 1, got: 0 }
    );
    assert_eq!(
        rejected(&mut img, alter(vec![1, 2, 3], 1, 1, 5, 1)),
        Rejection::FencedLeaderEpoch { current: 0, got: 5 }
    );
    assert_eq!(
        rejected(&mut img, alter(vec![1, 2, 3], 2, 3, 0, 1)),
        Rejection::NotLeader(2)
    );
    assert!(matches!(
        rejected(&mut img, alter(vec![2, 3], 1, 1, 0, 1)),
        Rejection::Invalid(_)
    ));
    assert!(matches!(
        rejected(&mut img, alter(vec![1, 4], 1, 1, 0, 1)),
        Rejection::Invalid(_)
    ));
    assert_eq!(
        rejected(&mut img, alter(vec![1, 3], 1, 99, 0, 1)),
        Rejection::StaleBrokerEpoch {
            broker_id: 1,
            current: 1,
            got: 99
        }
    );
}

#[test]
fn alter_partition_cannot_add_a_fenced_broker() {
    let mut img = image_with(3, &[&[1, 2, 3]]);
    img.apply(20, &alter(vec![1, 2], 1, 1, 0, 0));
    // Broker 3 registered at offset 5.
    img.apply(
        21,
        &Command::FenceBroker {
            broker_id: 3,
            broker_epoch: 5,
        },
    );
    assert_eq!(
        rejected(&mut img, alter(vec![1, 2, 3], 1, 1, 0, 1)),
        Rejection::IneligibleReplica(3)
    );
}

fn elect(pe: i32, leader: Option<BrokerId>, isr: Vec<BrokerId>) -> Command {
    Command::ElectLeader {
        topic: "t".into(),
        partition: 0,
        partition_epoch: pe,
        leader,
        isr,
    }
}

#[test]
fn elect_leader_bumps_both_epochs_and_only_picks_from_the_isr() {
    let mut img = image_with(3, &[&[1, 2, 3]]);
    img.apply(20, &alter(vec![1, 2], 1, 1, 0, 0));
    assert_eq!(
        img.apply(21, &elect(1, Some(2), vec![2])),
        CommandResult::PartitionChanged {
            leader_epoch: 1,
            partition_epoch: 2
        }
    );
    // 3 is not in the ISR {2}: refused without the per-topic opt-in.
    assert_eq!(
        rejected(&mut img, elect(2, Some(3), vec![3])),
        Rejection::IneligibleReplica(3)
    );
    assert!(matches!(
        rejected(&mut img, elect(2, Some(2), vec![2, 3])),
        Rejection::Invalid(_)
    ));
    assert_eq!(
        rejected(&mut img, elect(1, Some(2), vec![2])),
        Rejection::StalePartitionEpoch { current: 2, got: 1 }
    );
    // Going offline may keep (a subset of) the ISR.
    assert_eq!(
        img.apply(22, &elect(2, None, vec![2])),
        CommandResult::PartitionChanged {
            leader_epoch: 2,
            partition_epoch: 3
        }
    );
}

#[test]
fn unclean_election_needs_the_topic_opt_in_and_resets_the_isr() {
    let mut img = image_with(3, &[&[1, 2, 3]]);
    img.apply(20, &alter(vec![1], 1, 1, 0, 0));
    assert_eq!(
        rejected(&mut img, elect(1, Some(2), vec![2])),
        Rejection::IneligibleReplica(2)
    );
    img.apply(
        21,
        &Command::AlterConfigs {
            resource: ConfigResource::Topic("t".into()),
            changes: vec![(UNCLEAN_LEADER_ELECTION.into(), Some("true".into()))],
        },
    );
    assert!(matches!(
        rejected(&mut img, elect(1, Some(2), vec![2, 1])),
        Rejection::IneligibleReplica(2)
    ));
    assert!(matches!(
        img.apply(22, &elect(1, Some(2), vec![2])),
        CommandResult::PartitionChanged { .. }
    ));
}

#[test]
fn a_fenced_broker_cannot_be_elected() {
    let mut img = image_with(2, &[&[1, 2]]);
    img.apply(
        20,
        &Command::FenceBroker {
            broker_id: 2,
            broker_epoch: 3,
        },
    );
    assert_eq!(
        rejected(&mut img, elect(0, Some(2), vec![2])),
        Rejection::IneligibleReplica(2)
    );
}

#[test]
fn alter_configs_set_and_delete() {
    let mut img = image_with(1, &[&[1]]);
    let set = Command::AlterConfigs {
        resource: ConfigResource::Topic("t".into()),
        changes: vec![
            ("a".into(), Some("1".into())),
            ("b".into(), Some("2".into())),
        ],
    };
    assert_eq!(img.apply(10, &set), CommandResult::Applied);
    let del = Command::AlterConfigs {
        resource: ConfigResource::Topic("t".into()),
        changes: vec![("a".into(), None)],
    };
    img.apply(11, &del);
    assert_eq!(
        img.topics["t"].configs,
        BTreeMap::from([("b".to_string(), "2".to_string())])
    );
    img.apply(
        12,
        &Command::AlterConfigs {
            resource: ConfigResource::Cluster,
            changes: vec![("x".into(), Some("y".into()))],
        },
    );
    assert_eq!(img.configs[&ConfigResource::Cluster]["x"], "y");
    assert_eq!(
        rejected(
            &mut img,
            Command::AlterConfigs {
                resource: ConfigResource::Broker(9),
                changes: vec![]
            }
        ),
        Rejection::UnknownBroker(9)
    );
}

#[test]
fn producer_id_blocks_do_not_overlap() {
    let mut img = image_with(2, &[]);
    let alloc = |id, epoch| Command::AllocateProducerIds {
        broker_id: id,
        broker_epoch: epoch,
        count: 1000,
    };
    assert_eq!(
        img.apply(10, &alloc(1, 1)),
        CommandResult::ProducerIds {
            first: 0,
            count: 1000
        }
    );
    assert_eq!(
        img.apply(11, &alloc(2, 3)),
        CommandResult::ProducerIds {
            first: 1000,
            count: 1000
        }
    );
    assert!(matches!(
        rejected(&mut img, alloc(2, 1)),
        Rejection::StaleBrokerEpoch { .. }
    ));
}

#[test]
fn apply_is_deterministic_and_the_image_round_trips() {
    let build = || {
        let mut img = image_with(3, &[&[1, 2, 3], &[3, 1, 2]]);
        img.apply(20, &alter(vec![1, 3], 1, 1, 0, 0));
        img.apply(
            21,
            &Command::AlterConfigs {
                resource: ConfigResource::Broker(2),
                changes: vec![("k".into(), Some("v".into()))],
            },
        );
        img
    };
    let mut a = build();
    // Every field of the v2 encoding, including a non-empty ELR and a last known leader.
    a.topics.get_mut("t").unwrap().partitions[1].elr = vec![2];
    a.topics.get_mut("t").unwrap().partitions[1].last_known_leader = Some(3);
    assert_eq!(build().encode(), build().encode());
    let bytes = a.encode();
    assert_eq!(MetadataImage::decode(&bytes), Ok(a));
}

#[test]
fn corrupt_images_are_typed_errors() {
    let bytes = image_with(2, &[&[1, 2]]).encode();
    let mut flipped = bytes.clone();
    flipped[20] ^= 0x40;
    assert!(matches!(
        MetadataImage::decode(&flipped),
        Err(DecodeError::Checksum { .. })
    ));
    let mut magic = bytes.clone();
    magic[0] = b'X';
    assert_eq!(MetadataImage::decode(&magic), Err(DecodeError::BadMagic));
    for cut in 0..bytes.len() {
        assert!(MetadataImage::decode(&bytes[..cut]).is_err());
    }
}

// ----- KIP-966: Eligible Leader Replicas ---------------------------------------------------------

fn set_config(img: &mut MetadataImage, resource: ConfigResource, key: &str, value: &str) {
    let off = img.offset + 1;
    let r = img.apply(
        off,
        &Command::AlterConfigs {
            resource,
            changes: vec![(key.into(), Some(value.into()))],
        },
    );
    assert_eq!(r, CommandResult::Applied);
}

fn min_isr(img: &mut MetadataImage, n: usize) {
    set_config(
        img,
        ConfigResource::Topic("t".into()),
        MIN_INSYNC_REPLICAS,
        &n.to_string(),
    );
}

fn part(img: &MetadataImage) -> &PartitionState {
    &img.topics["t"].partitions[0]
}

fn register(img: &mut MetadataImage, id: BrokerId, incarnation: u128, clean: bool) -> u64 {
    let off = img.offset + 1;
    match img.apply(
        off,
        &Command::RegisterBroker {
            broker_id: id,
            incarnation: uuid(incarnation),
            endpoints: vec![],
            rack: None,
            clean_shutdown: clean,
        },
    ) {
        CommandResult::BrokerRegistered { broker_epoch } => broker_epoch,
        other => panic!("{other:?}"),
    }
}

fn set_fenced(img: &mut MetadataImage, id: BrokerId, fenced: bool) {
    let off = img.offset + 1;
    let broker_epoch = img.brokers[&id].epoch;
    let cmd = if fenced {
        Command::FenceBroker {
            broker_id: id,
            broker_epoch,
        }
    } else {
        Command::UnfenceBroker {
            broker_id: id,
            broker_epoch,
        }
    };
    assert_eq!(img.apply(off, &cmd), CommandResult::Applied);
}

#[test]
fn min_isr_comes_from_the_topic_then_the_cluster_then_defaults_to_one() {
    let mut img = image_with(3, &[&[1, 2, 3]]);
    assert_eq!(img.min_isr("t"), 1);
    set_config(&mut img, ConfigResource::Cluster, MIN_INSYNC_REPLICAS, "2");
    assert_eq!(img.min_isr("t"), 2);
    min_isr(&mut img, 3);
    assert_eq!(img.min_isr("t"), 3);
    // An unusable override counts as unset.
    set_config(
        &mut img,
        ConfigResource::Topic("t".into()),
        MIN_INSYNC_REPLICAS,
        "0",
    );
    assert_eq!(img.min_isr("t"), 2);
}

#[test]
fn shrinking_below_min_isr_moves_the_removed_replicas_to_the_elr() {
    let mut img = image_with(4, &[&[1, 2, 3, 4]]);
    min_isr(&mut img, 3);
    let pe = part(&img).partition_epoch;
    // 4 ISR members -> 3: still at min ISR, so 4 is just out of sync (the HW could advance
    // without it).
    img.apply(30, &alter(vec![1, 2, 3], 1, 1, 0, pe));
    assert_eq!(part(&img).elr, Vec::<BrokerId>::new());
    // 3 -> 1: below min ISR; 2 and 3 hold everything committed.
    img.apply(31, &alter(vec![1], 1, 1, 0, pe + 1));
    assert_eq!(part(&img).isr, vec![1]);
    assert_eq!(part(&img).elr, vec![2, 3]);
    // 3 catches up and rejoins the ISR: it leaves the ELR; still below min ISR, 2 stays.
    img.apply(32, &alter(vec![1, 3], 1, 1, 0, pe + 2));
    assert_eq!(part(&img).elr, vec![2]);
    // Back at min ISR: the ELR is cleared (the HW moves again without 2).
    img.apply(33, &alter(vec![1, 3, 4], 1, 1, 0, pe + 3));
    assert_eq!(part(&img).elr, Vec::<BrokerId>::new());
    assert_eq!(part(&img).partition_epoch, pe + 4);
}

#[test]
fn the_cluster_min_isr_applies_to_topics_without_an_override() {
    let mut img = image_with(3, &[&[1, 2, 3]]);
    set_config(&mut img, ConfigResource::Cluster, MIN_INSYNC_REPLICAS, "2");
    img.apply(30, &alter(vec![1], 1, 1, 0, 0));
    assert_eq!(part(&img).elr, vec![2, 3]);
    // Without any min ISR (default 1) the same shrink adds nobody.
    let mut img = image_with(3, &[&[1, 2, 3]]);
    img.apply(30, &alter(vec![1], 1, 1, 0, 0));
    assert_eq!(part(&img).elr, Vec::<BrokerId>::new());
}

#[test]
fn a_min_isr_change_clears_the_elr() {
    let mut img = image_with(3, &[&[1, 2, 3]]);
    min_isr(&mut img, 2);
    img.apply(30, &alter(vec![1], 1, 1, 0, 0));
    assert_eq!(part(&img).elr, vec![2, 3]);
    let pe = part(&img).partition_epoch;
    set_config(&mut img, ConfigResource::Cluster, MIN_INSYNC_REPLICAS, "3");
    // The topic override still wins, but the cluster key is a min ISR change: cleared.
    assert_eq!(part(&img).elr, Vec::<BrokerId>::new());
    assert_eq!(part(&img).partition_epoch, pe + 1);
}

#[test]
fn elr_members_are_elected_only_when_no_isr_member_is_live() {
    let mut img = image_with(3, &[&[1, 2, 3]]);
    min_isr(&mut img, 2);
    img.apply(30, &alter(vec![1], 1, 1, 0, 0));
    assert_eq!(part(&img).elr, vec![2, 3]);
    // 1 (the ISR) is alive: an ELR member may not take over.
    assert_eq!(
        rejected(&mut img, elect(1, Some(3), vec![3])),
        Rejection::IneligibleReplica(3)
    );
    set_fenced(&mut img, 1, true);
    // It becomes the ISR alone, not with other ELR members.
    assert!(matches!(
        rejected(&mut img, elect(1, Some(3), vec![3, 2])),
        Rejection::IneligibleReplica(3)
    ));
    assert_eq!(
        img.apply(40, &elect(1, Some(3), vec![3])),
        CommandResult::PartitionChanged {
            leader_epoch: 1,
            partition_epoch: 2
        }
    );
    // 1 left the ISR below min ISR: it joins the ELR; 3 left it.
    let p = part(&img);
    assert_eq!((p.leader, &p.isr, &p.elr), (Some(3), &vec![3], &vec![1, 2]));
}

#[test]
fn going_offline_moves_the_isr_to_the_elr_and_remembers_the_leader() {
    let mut img = image_with(2, &[&[1, 2]]);
    img.apply(30, &alter(vec![1], 1, 1, 0, 0));
    set_fenced(&mut img, 1, true);
    assert!(matches!(
        img.apply(40, &elect(1, None, vec![])),
        CommandResult::PartitionChanged { .. }
    ));
    let p = part(&img);
    assert_eq!(
        (p.leader, p.isr.clone(), p.elr.clone(), p.last_known_leader),
        (None, vec![], vec![1], Some(1))
    );
    // The last known leader is only a candidate once the ELR is empty too.
    set_fenced(&mut img, 1, false);
    let pe = part(&img).partition_epoch;
    assert!(matches!(
        img.apply(41, &elect(pe, Some(1), vec![1])),
        CommandResult::PartitionChanged { .. }
    ));
    let p = part(&img);
    assert_eq!(
        (p.leader, p.isr.clone(), p.elr.clone(), p.last_known_leader),
        (Some(1), vec![1], vec![], None)
    );
}

#[test]
fn an_unclean_restart_leaves_every_elr_and_isr_without_joining_an_elr() {
    // Two partitions: p0 led by 1 with ISR {1} and ELR {2, 3}; p1 led by 2 with ISR {2, 3}.
    let mut img = image_with(3, &[&[1, 2, 3], &[2, 3, 1]]);
    min_isr(&mut img, 2);
    img.apply(30, &alter(vec![1], 1, 1, 0, 0));
    img.apply(
        31,
        &Command::AlterPartition {
            topic: "t".into(),
            partition: 1,
            broker_id: 2,
            broker_epoch: 3,
            leader_epoch: 0,
            partition_epoch: 0,
            new_isr: vec![2, 3],
        },
    );
    assert_eq!(part(&img).elr, vec![2, 3]);
    // A clean restart of 2 changes no ELR or ISR (the planner fences it out of ISRs later).
    let before = img.topics["t"].clone();
    register(&mut img, 2, 22, true);
    assert_eq!(img.topics["t"], before);
    // An unclean restart of 3: out of p0's ELR, and out of p1's ISR without entering its ELR
    // (p1 drops below min ISR but the only removed replica is the unclean one).
    register(&mut img, 3, 33, false);
    let p0 = &img.topics["t"].partitions[0];
    assert_eq!((&p0.isr, &p0.elr), (&vec![1], &vec![2]));
    assert_eq!(p0.partition_epoch, before.partitions[0].partition_epoch + 1);
    assert_eq!(p0.leader_epoch, before.partitions[0].leader_epoch);
    let p1 = &img.topics["t"].partitions[1];
    assert_eq!((p1.leader, &p1.isr, &p1.elr), (Some(2), &vec![2], &vec![]));
    // An unclean restart of the leader of p0 (ISR {1}): leaderless, leader epoch up, ISR empty,
    // 1 is not an ELR member, and it is remembered as the last known leader.
    let le = img.topics["t"].partitions[0].leader_epoch;
    register(&mut img, 1, 11, false);
    let p0 = &img.topics["t"].partitions[0];
    assert_eq!(
        (p0.leader, &p0.isr, &p0.elr, p0.last_known_leader),
        (None, &vec![], &vec![2], Some(1))
    );
    assert_eq!(p0.leader_epoch, le + 1);
    // A retried registration of the same incarnation changes nothing.
    let again = img.topics["t"].clone();
    register(&mut img, 1, 11, false);
    assert_eq!(img.topics["t"], again);
}

#[test]
fn the_last_known_leader_waits_for_an_empty_elr() {
    let mut img = image_with(3, &[&[1, 2, 3]]);
    min_isr(&mut img, 2);
    img.apply(30, &alter(vec![1], 1, 1, 0, 0));
    for b in [1, 2, 3] {
        set_fenced(&mut img, b, true);
    }
    img.apply(40, &elect(1, None, vec![]));
    assert_eq!(part(&img).elr, vec![1, 2, 3]);
    assert_eq!(part(&img).last_known_leader, Some(1));
    // 1 comes back uncleanly: not in the ELR any more, and while 2 and 3 are ELR members it is
    // not electable as the last known leader either.
    let e1 = register(&mut img, 1, 11, false);
    img.apply(
        50,
        &Command::UnfenceBroker {
            broker_id: 1,
            broker_epoch: e1,
        },
    );
    let pe = part(&img).partition_epoch;
    assert_eq!(
        rejected(&mut img, elect(pe, Some(1), vec![1])),
        Rejection::IneligibleReplica(1)
    );
    // 2 and 3 come back uncleanly too: nothing is known to be complete; the last leader is
    // the best copy left.
    register(&mut img, 2, 22, false);
    register(&mut img, 3, 33, false);
    assert_eq!(part(&img).elr, Vec::<BrokerId>::new());
    let pe = part(&img).partition_epoch;
    assert!(matches!(
        img.apply(60, &elect(pe, Some(1), vec![1])),
        CommandResult::PartitionChanged { .. }
    ));
}

#[test]
fn a_v1_image_decodes_with_empty_elrs() {
    // One topic with one partition and no configs: the v2 partition ends with an empty ELR
    // (4 bytes) and no last known leader (1 byte), followed by the config count (4 bytes) and
    // the checksum. Dropping those 5 bytes and writing version 1 gives the v1 layout.
    let img = image_with(2, &[&[1, 2]]);
    let v2 = img.encode();
    assert_eq!(v2[4], 2);
    let n = v2.len();
    let mut v1 = v2[..n - 13].to_vec();
    v1.extend_from_slice(&v2[n - 8..n - 4]);
    v1[4] = 1;
    let crc = crc32c::crc32c(&v1);
    v1.extend_from_slice(&crc.to_be_bytes());
    assert_eq!(MetadataImage::decode(&v1), Ok(img));
    let mut v3 = v2.clone();
    v3[4] = 3;
    let crc = crc32c::crc32c(&v3[..n - 4]);
    v3[n - 4..].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        MetadataImage::decode(&v3),
        Err(DecodeError::UnsupportedVersion { version: 3, .. })
    ));
}
