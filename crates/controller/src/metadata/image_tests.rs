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
    // Going offline keeps the ISR.
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
    let a = build();
    assert_eq!(a, build());
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
