//! Command-vector tests: an input image and an event in, the exact command list out.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::*;
use crate::metadata::{
    CommandResult, ConfigResource, MIN_INSYNC_REPLICAS, Rejection, UNCLEAN_LEADER_ELECTION,
};

/// Registers and unfences brokers `ids` (broker `id` gets epoch `10 * id`), with optional racks.
fn cluster(brokers: &[(BrokerId, Option<&str>)]) -> MetadataImage {
    let mut img = MetadataImage::default();
    for (id, rack) in brokers {
        let epoch = 10 * (*id as u64);
        let r = img.apply(
            epoch,
            &Command::RegisterBroker {
                broker_id: *id,
                incarnation: Uuid::from_u128(*id as u128),
                endpoints: vec![],
                rack: rack.map(str::to_owned),
                clean_shutdown: true,
            },
        );
        assert_eq!(
            r,
            CommandResult::BrokerRegistered {
                broker_epoch: epoch
            }
        );
        img.apply(
            epoch + 1,
            &Command::UnfenceBroker {
                broker_id: *id,
                broker_epoch: epoch,
            },
        );
    }
    img
}

fn brokers(n: i32) -> MetadataImage {
    cluster(&(1..=n).map(|i| (i, None)).collect::<Vec<_>>())
}

/// Adds topic `name` with an explicit state per partition.
fn with_topic(
    mut img: MetadataImage,
    name: &str,
    parts: &[(&[BrokerId], &[BrokerId], Option<BrokerId>)],
) -> MetadataImage {
    let assignments = parts.iter().map(|(r, _, _)| r.to_vec()).collect();
    let id = Uuid::from_u128(1000 + img.topics.len() as u128);
    let r = img.apply(
        img.offset + 1,
        &Command::CreateTopic {
            name: name.into(),
            topic_id: id,
            assignments,
            configs: BTreeMap::new(),
        },
    );
    assert_eq!(r, CommandResult::Applied);
    // Set ISR and leader directly: these tests are about what the planner does with them.
    if let Some(t) = img.topics.get_mut(name) {
        for (p, (_, isr, leader)) in t.partitions.iter_mut().zip(parts) {
            p.isr = isr.to_vec();
            p.leader = *leader;
        }
    }
    img
}

fn fence(img: &mut MetadataImage, id: BrokerId) {
    let epoch = img.brokers[&id].epoch;
    let r = img.apply(
        img.offset + 1,
        &Command::FenceBroker {
            broker_id: id,
            broker_epoch: epoch,
        },
    );
    assert_eq!(r, CommandResult::Applied);
}

fn apply_all(img: &mut MetadataImage, cmds: &[Command]) {
    for c in cmds {
        let off = img.offset + 1;
        let r = img.apply(off, c);
        assert!(!matches!(r, CommandResult::Rejected(_)), "{c:?}: {r:?}");
    }
}

fn elect(topic: &str, p: u32, pe: i32, leader: Option<BrokerId>, isr: &[BrokerId]) -> Command {
    Command::ElectLeader {
        topic: topic.into(),
        partition: p,
        partition_epoch: pe,
        leader,
        isr: isr.to_vec(),
    }
}

fn create(name: &str, partitions: u32, rf: u16) -> CreateTopicRequest {
    CreateTopicRequest {
        name: name.into(),
        topic_id: Uuid::from_u128(77),
        partitions,
        replication_factor: rf,
        configs: BTreeMap::new(),
    }
}

// ----- placement -----------------------------------------------------------------------------

#[test]
fn placement_balances_replicas_and_leaders() {
    // 3 brokers, 3 partitions x RF 3: each broker leads one partition.
    let img = brokers(3);
    let cmds = plan_create_topic(&img, &create("t", 3, 3)).unwrap();
    assert_eq!(
        cmds,
        vec![Command::CreateTopic {
            name: "t".into(),
            topic_id: Uuid::from_u128(77),
            assignments: vec![vec![1, 2, 3], vec![2, 1, 3], vec![3, 1, 2]],
            configs: BTreeMap::new(),
        }]
    );
}

#[test]
fn placement_accounts_for_existing_load() {
    // Broker 1 already holds two replicas and a leadership: new partitions avoid it.
    let img = with_topic(brokers(3), "old", &[(&[1, 2], &[1, 2], Some(1))]);
    let cmds = plan_create_topic(&img, &create("t", 1, 1)).unwrap();
    assert_eq!(
        cmds,
        vec![Command::CreateTopic {
            name: "t".into(),
            topic_id: Uuid::from_u128(77),
            assignments: vec![vec![3]],
            configs: BTreeMap::new(),
        }]
    );
}

#[test]
fn placement_is_rack_aware() {
    // Racks: a={1,2}, b={3,4}. RF 2: every partition spans both racks.
    let img = cluster(&[
        (1, Some("a")),
        (2, Some("a")),
        (3, Some("b")),
        (4, Some("b")),
    ]);
    let a = assign_replicas(&img, 4, 2).unwrap();
    assert_eq!(a, vec![vec![1, 3], vec![2, 4], vec![3, 1], vec![4, 2]]);
}

#[test]
fn placement_skips_fenced_brokers_and_checks_the_replication_factor() {
    let mut img = brokers(3);
    fence(&mut img, 2);
    assert_eq!(
        assign_replicas(&img, 2, 2).unwrap(),
        vec![vec![1, 3], vec![3, 1]]
    );
    assert_eq!(
        plan_create_topic(&img, &create("t", 1, 3)),
        Err(PlanError::InvalidReplicationFactor {
            replication_factor: 3,
            active: 2
        })
    );
    assert_eq!(
        plan_create_topic(&img, &create("t", 0, 1)),
        Err(PlanError::InvalidPartitions(0))
    );
}

#[test]
fn create_partitions_keeps_the_replication_factor() {
    let img = with_topic(brokers(3), "t", &[(&[1, 2], &[1, 2], Some(1))]);
    assert_eq!(
        plan_create_partitions(&img, "t", 2).unwrap(),
        vec![Command::CreatePartitions {
            topic: "t".into(),
            // 3 holds nothing yet, so it leads; 1 and 2 tie on load and the lower id wins.
            assignments: vec![vec![3, 1]]
        }]
    );
    assert_eq!(
        plan_create_partitions(&img, "t", 1),
        Err(PlanError::InvalidPartitions(1))
    );
    assert_eq!(
        plan_create_partitions(&img, "nope", 3),
        Err(PlanError::UnknownTopic("nope".into()))
    );
}

#[test]
fn create_existing_topic_is_refused() {
    let img = with_topic(brokers(1), "t", &[(&[1], &[1], Some(1))]);
    assert_eq!(
        plan_create_topic(&img, &create("t", 1, 1)),
        Err(PlanError::TopicExists("t".into()))
    );
}

#[test]
fn topic_names_follow_kafkas_rules() {
    let img = brokers(1);
    for bad in ["", ".", "..", "a b", "a/b", "é", &"x".repeat(250)] {
        assert_eq!(
            plan_create_topic(&img, &create(bad, 1, 1)),
            Err(PlanError::InvalidTopicName(bad.to_owned())),
            "{bad:?}"
        );
    }
    for good in ["a", "a.b_c-D9", "...", &"x".repeat(249)] {
        assert!(
            plan_create_topic(&img, &create(good, 1, 1)).is_ok(),
            "{good:?}"
        );
    }
}

#[test]
fn delete_topic_plans_one_command_and_needs_the_topic() {
    let img = with_topic(brokers(1), "t", &[(&[1], &[1], Some(1))]);
    assert_eq!(
        plan_delete_topic(&img, "t"),
        Ok(vec![Command::DeleteTopic { name: "t".into() }])
    );
    assert_eq!(
        plan_delete_topic(&img, "u"),
        Err(PlanError::UnknownTopic("u".into()))
    );
}

#[test]
fn alter_configs_checks_the_resource_and_keys() {
    let img = with_topic(brokers(1), "t", &[(&[1], &[1], Some(1))]);
    let set = vec![("retention.ms".to_owned(), Some("1000".to_owned()))];
    for resource in [
        ConfigResource::Cluster,
        ConfigResource::Broker(1),
        ConfigResource::Topic("t".into()),
    ] {
        assert_eq!(
            plan_alter_configs(&img, &resource, &set),
            Ok(vec![Command::AlterConfigs {
                resource: resource.clone(),
                changes: set.clone()
            }])
        );
    }
    assert_eq!(
        plan_alter_configs(&img, &ConfigResource::Topic("u".into()), &set),
        Err(PlanError::UnknownTopic("u".into()))
    );
    assert_eq!(
        plan_alter_configs(&img, &ConfigResource::Broker(9), &set),
        Err(PlanError::UnknownBroker(9))
    );
    assert!(matches!(
        plan_alter_configs(&img, &ConfigResource::Cluster, &[(" ".into(), None)]),
        Err(PlanError::InvalidRequest(_))
    ));
    assert_eq!(
        plan_alter_configs(&img, &ConfigResource::Cluster, &[]),
        Ok(vec![])
    );
}

#[test]
fn producer_ids_need_the_current_broker_epoch() {
    let img = brokers(2);
    assert_eq!(
        plan_allocate_producer_ids(&img, 2, 20, 1000),
        Ok(vec![Command::AllocateProducerIds {
            broker_id: 2,
            broker_epoch: 20,
            count: 1000
        }])
    );
    assert_eq!(
        plan_allocate_producer_ids(&img, 2, 10, 1000),
        Err(PlanError::StaleBrokerEpoch {
            broker_id: 2,
            current: 20,
            got: 10
        })
    );
    assert_eq!(
        plan_allocate_producer_ids(&img, 3, 30, 1000),
        Err(PlanError::UnknownBroker(3))
    );
    assert!(matches!(
        plan_allocate_producer_ids(&img, 2, 20, 0),
        Err(PlanError::InvalidRequest(_))
    ));
}

// ----- election ------------------------------------------------------------------------------

#[test]
fn fenced_leader_moves_to_the_next_isr_member_and_leaves_the_isr() {
    //  replicas  isr      leader | fence 1 | leader  isr
    //  [1,2,3]   [1,2,3]  1      |         | 2       [2,3]
    //  [2,3,1]   [2,3,1]  2      |         | 2       [2,3]   (ISR shrink only)
    //  [3,1,2]   [3,1]    3      |         | (untouched: 1 not... ) -> 3 [3]
    let mut img = with_topic(
        brokers(3),
        "t",
        &[
            (&[1, 2, 3], &[1, 2, 3], Some(1)),
            (&[2, 3, 1], &[2, 3, 1], Some(2)),
            (&[3, 1, 2], &[3, 1], Some(3)),
        ],
    );
    fence(&mut img, 1);
    assert_eq!(
        plan_leadership(&img),
        vec![
            elect("t", 0, 0, Some(2), &[2, 3]),
            elect("t", 1, 0, Some(2), &[2, 3]),
            elect("t", 2, 0, Some(3), &[3]),
        ]
    );
}

#[test]
fn leader_is_only_elected_from_the_isr() {
    // The ISR is {1}; 1 is fenced; 2 and 3 are active but out of sync: the partition goes
    // offline with an empty ISR, and 1 moves to the ELR.
    let mut img = with_topic(brokers(3), "t", &[(&[1, 2, 3], &[1], Some(1))]);
    fence(&mut img, 1);
    let plan = plan_leadership(&img);
    assert_eq!(plan, vec![elect("t", 0, 0, None, &[])]);
    apply_all(&mut img, &plan);
    let p = img.partition("t", 0).unwrap();
    assert_eq!((&p.elr, p.last_known_leader), (&vec![1], Some(1)));
    assert_eq!(plan_leadership(&img), vec![]);
}

#[test]
fn unclean_election_is_a_per_topic_opt_in() {
    let mut img = with_topic(brokers(3), "t", &[(&[1, 2, 3], &[1], Some(1))]);
    apply_all(
        &mut img,
        &[Command::AlterConfigs {
            resource: ConfigResource::Topic("t".into()),
            changes: vec![(UNCLEAN_LEADER_ELECTION.into(), Some("true".into()))],
        }],
    );
    fence(&mut img, 1);
    assert_eq!(plan_leadership(&img), vec![elect("t", 0, 0, Some(2), &[2])]);
}

#[test]
fn offline_partition_comes_back_when_its_last_isr_member_returns() {
    let mut img = with_topic(brokers(2), "t", &[(&[1, 2], &[1], Some(1))]);
    fence(&mut img, 1);
    let offline = plan_leadership(&img);
    apply_all(&mut img, &offline);
    assert_eq!(img.partition("t", 0).map(|p| p.leader), Some(None));
    // Nothing to do while 1 is away.
    assert_eq!(plan_leadership(&img), vec![]);
    // Broker 1 unfences (epoch 10): it is the ISR, so it leads again with a higher epoch.
    apply_all(
        &mut img,
        &[Command::UnfenceBroker {
            broker_id: 1,
            broker_epoch: 10,
        }],
    );
    assert_eq!(plan_leadership(&img), vec![elect("t", 0, 1, Some(1), &[1])]);
}

#[test]
fn preferred_leader_is_restored_once_back_in_the_isr() {
    // 1 is preferred but 2 leads. While 1 is not in the ISR nothing happens; once the leader
    // adds it back (it caught up) leadership returns to 1.
    let img = with_topic(brokers(3), "t", &[(&[1, 2, 3], &[2, 3], Some(2))]);
    assert_eq!(plan_leadership(&img), vec![]);
    let img = with_topic(brokers(3), "t", &[(&[1, 2, 3], &[2, 3, 1], Some(2))]);
    assert_eq!(
        plan_leadership(&img),
        vec![elect("t", 0, 0, Some(1), &[2, 3, 1])]
    );
}

#[test]
fn preferred_leader_waits_until_unfenced() {
    let mut img = with_topic(brokers(2), "t", &[(&[1, 2], &[2, 1], Some(2))]);
    fence(&mut img, 1);
    // Fenced and in the ISR: removed from the ISR, not made leader.
    assert_eq!(plan_leadership(&img), vec![elect("t", 0, 0, Some(2), &[2])]);
}

#[test]
fn epochs_rise_on_every_planned_change_and_plans_converge() {
    let mut img = with_topic(
        brokers(3),
        "t",
        &[
            (&[1, 2, 3], &[1, 2, 3], Some(1)),
            (&[2, 3, 1], &[2, 3, 1], Some(2)),
        ],
    );
    let before: Vec<(i32, i32)> = img.topics["t"]
        .partitions
        .iter()
        .map(|p| (p.leader_epoch, p.partition_epoch))
        .collect();
    fence(&mut img, 1);
    let plan = plan_leadership(&img);
    apply_all(&mut img, &plan);
    for (p, (le, pe)) in img.topics["t"].partitions.iter().zip(before) {
        assert!(p.leader_epoch > le && p.partition_epoch > pe, "{p:?}");
    }
    // Level-triggered: the image now satisfies every rule.
    assert_eq!(plan_leadership(&img), vec![]);
}

#[test]
fn a_plan_made_on_a_stale_image_is_rejected_by_apply() {
    let mut img = with_topic(brokers(3), "t", &[(&[1, 2, 3], &[1, 2, 3], Some(1))]);
    fence(&mut img, 1);
    let plan = plan_leadership(&img);
    apply_all(&mut img, &plan);
    let off = img.offset + 1;
    assert!(matches!(
        img.apply(off, &plan[0]),
        CommandResult::Rejected(crate::metadata::Rejection::StalePartitionEpoch { .. })
    ));
}

// ----- KIP-966: Eligible Leader Replicas ------------------------------------------------------

fn set_topic_config(img: &mut MetadataImage, key: &str, value: &str) {
    apply_all(
        img,
        &[Command::AlterConfigs {
            resource: ConfigResource::Topic("t".into()),
            changes: vec![(key.into(), Some(value.into()))],
        }],
    );
}

/// Sets the ELR of partition 0 of "t" directly, like `with_topic` does for the ISR.
fn with_elr(mut img: MetadataImage, elr: &[BrokerId]) -> MetadataImage {
    if let Some(t) = img.topics.get_mut("t") {
        t.partitions[0].elr = elr.to_vec();
    }
    img
}

/// A restart: a new registration (fenced), clean or not, then unfenced once caught up.
fn restart(img: &mut MetadataImage, id: BrokerId, clean: bool) {
    let off = img.offset + 1;
    let r = img.apply(
        off,
        &Command::RegisterBroker {
            broker_id: id,
            incarnation: Uuid::from_u128(1_000_000 + off as u128),
            endpoints: vec![],
            rack: None,
            clean_shutdown: clean,
        },
    );
    assert_eq!(r, CommandResult::BrokerRegistered { broker_epoch: off });
    apply_all(
        img,
        &[Command::UnfenceBroker {
            broker_id: id,
            broker_epoch: off,
        }],
    );
}

fn state(img: &MetadataImage) -> (Option<BrokerId>, Vec<BrokerId>, Vec<BrokerId>) {
    let p = img.partition("t", 0).unwrap();
    (p.leader, p.isr.clone(), p.elr.clone())
}

#[test]
fn fencing_below_min_isr_puts_the_removed_replica_in_the_elr() {
    let mut img = with_topic(brokers(3), "t", &[(&[1, 2, 3], &[1, 2], Some(1))]);
    set_topic_config(&mut img, MIN_INSYNC_REPLICAS, "2");
    fence(&mut img, 1);
    let plan = plan_leadership(&img);
    assert_eq!(plan, vec![elect("t", 0, 0, Some(2), &[2])]);
    apply_all(&mut img, &plan);
    assert_eq!(state(&img), (Some(2), vec![2], vec![1]));
    // At min ISR the same fence adds nobody.
    let mut img = with_topic(brokers(3), "t", &[(&[1, 2, 3], &[1, 2, 3], Some(1))]);
    set_topic_config(&mut img, MIN_INSYNC_REPLICAS, "2");
    fence(&mut img, 1);
    let plan = plan_leadership(&img);
    apply_all(&mut img, &plan);
    assert_eq!(state(&img), (Some(2), vec![2, 3], vec![]));
}

#[test]
fn an_elr_member_is_elected_when_no_isr_member_is_live() {
    // ISR {1}, ELR {2, 3} (they left the ISR below min ISR 2); 2 is fenced too.
    let mut img = with_topic(brokers(3), "t", &[(&[1, 2, 3], &[1], Some(1))]);
    // The min ISR first: changing it clears ELRs.
    set_topic_config(&mut img, MIN_INSYNC_REPLICAS, "2");
    let mut img = with_elr(img, &[2, 3]);
    fence(&mut img, 2);
    // 1 alive: it keeps leading, the ELR is not a candidate.
    assert_eq!(plan_leadership(&img), vec![]);
    fence(&mut img, 1);
    // The first active ELR member leads with an ISR of itself; 1 joins the ELR.
    let plan = plan_leadership(&img);
    assert_eq!(plan, vec![elect("t", 0, 0, Some(3), &[3])]);
    apply_all(&mut img, &plan);
    assert_eq!(state(&img), (Some(3), vec![3], vec![1, 2]));
    assert_eq!(plan_leadership(&img), vec![]);
}

#[test]
fn offline_partition_returns_to_a_clean_elr_member_not_an_unclean_one() {
    // ISR {1}, ELR {2}, min ISR 2; everyone dies: offline, ISR empty, ELR {1, 2}.
    let mut img = with_topic(brokers(3), "t", &[(&[1, 2, 3], &[1], Some(1))]);
    // The min ISR first: changing it clears ELRs.
    set_topic_config(&mut img, MIN_INSYNC_REPLICAS, "2");
    let mut img = with_elr(img, &[2]);
    for b in [1, 2, 3] {
        fence(&mut img, b);
    }
    let plan = plan_leadership(&img);
    apply_all(&mut img, &plan);
    assert_eq!(state(&img), (None, vec![], vec![1, 2]));
    // 1 (the last ISR member) restarts uncleanly: it may have lost acknowledged records, so it
    // leaves the ELR and is not elected although it is the only broker up (L6).
    restart(&mut img, 1, false);
    assert_eq!(state(&img), (None, vec![], vec![2]));
    assert_eq!(plan_leadership(&img), vec![]);
    // 3 was never in sync: no election either.
    restart(&mut img, 3, true);
    assert_eq!(plan_leadership(&img), vec![]);
    // 2 restarts cleanly: elected from the ELR.
    restart(&mut img, 2, true);
    let plan = plan_leadership(&img);
    let pe = img.partition("t", 0).unwrap().partition_epoch;
    assert_eq!(plan, vec![elect("t", 0, pe, Some(2), &[2])]);
    apply_all(&mut img, &plan);
    assert_eq!(state(&img).0, Some(2));
}

#[test]
fn the_last_known_leader_returns_once_nothing_better_is_left() {
    // A single-replica partition whose broker restarts uncleanly: no ELR is left, and the last
    // leader is the only copy, so it leads again (Kafka's last-known-leader election).
    let mut img = with_topic(brokers(1), "t", &[(&[1], &[1], Some(1))]);
    fence(&mut img, 1);
    let plan = plan_leadership(&img);
    apply_all(&mut img, &plan);
    assert_eq!(state(&img), (None, vec![], vec![1]));
    restart(&mut img, 1, false);
    assert_eq!(state(&img), (None, vec![], vec![]));
    let pe = img.partition("t", 0).unwrap().partition_epoch;
    assert_eq!(
        plan_leadership(&img),
        vec![elect("t", 0, pe, Some(1), &[1])]
    );
}

#[test]
fn unclean_election_of_an_out_of_sync_replica_still_needs_the_opt_in() {
    // ISR {1}; 1 dies and restarts uncleanly while 2 and 3 (never in sync) are up; 1 is fenced
    // again before it is elected: nothing is electable without the opt-in.
    let mut img = with_topic(brokers(3), "t", &[(&[1, 2, 3], &[1], Some(1))]);
    fence(&mut img, 1);
    let plan = plan_leadership(&img);
    apply_all(&mut img, &plan);
    restart(&mut img, 1, false);
    fence(&mut img, 1);
    assert_eq!(state(&img), (None, vec![], vec![]));
    assert_eq!(plan_leadership(&img), vec![]);
    // Apply refuses such an election too.
    let pe = img.partition("t", 0).unwrap().partition_epoch;
    let off = img.offset + 1;
    assert_eq!(
        img.apply(off, &elect("t", 0, pe, Some(2), &[2])),
        CommandResult::Rejected(Rejection::IneligibleReplica(2))
    );
    set_topic_config(&mut img, UNCLEAN_LEADER_ELECTION, "true");
    let plan = plan_leadership(&img);
    assert_eq!(plan, vec![elect("t", 0, pe, Some(2), &[2])]);
    apply_all(&mut img, &plan);
    // An unclean leader starts a new history: no ELR, no last known leader.
    let p = img.partition("t", 0).unwrap();
    assert_eq!((&p.elr, p.last_known_leader), (&vec![], None));
}

#[test]
fn unclean_election_does_not_preempt_a_clean_elr_member() {
    // With the opt-in, an active ELR member still wins over any other replica.
    let mut img = with_topic(brokers(3), "t", &[(&[1, 2, 3], &[1], Some(1))]);
    // The min ISR first: changing it clears ELRs.
    set_topic_config(&mut img, MIN_INSYNC_REPLICAS, "2");
    let mut img = with_elr(img, &[3]);
    set_topic_config(&mut img, UNCLEAN_LEADER_ELECTION, "true");
    fence(&mut img, 1);
    assert_eq!(plan_leadership(&img), vec![elect("t", 0, 0, Some(3), &[3])]);
}

// ----- sessions and heartbeats ---------------------------------------------------------------

#[test]
fn silent_broker_is_fenced_after_the_session_timeout() {
    let img = brokers(3);
    let live = Liveness {
        since: 0,
        last_heartbeat: BTreeMap::from([(1, 1000), (2, 1500), (3, 1900)]),
        ..Liveness::default()
    };
    // now=2000, timeout=900: broker 1 (1000 ms ago) expired, 2 (500) and 3 (100) did not.
    assert_eq!(
        plan_session_expiry(&img, &live, 2000, &policy(900, 200)),
        vec![Command::FenceBroker {
            broker_id: 1,
            broker_epoch: 10
        }]
    );
    // Exactly at the timeout is not expired.
    assert_eq!(
        plan_session_expiry(&img, &live, 1900, &policy(900, 200)),
        vec![]
    );
}

fn policy(timeout_ms: Millis, disconnect_grace_ms: Millis) -> SessionPolicy {
    SessionPolicy {
        timeout_ms,
        disconnect_grace_ms,
    }
}

#[test]
fn a_closed_session_fences_after_the_grace_unless_heard_from_since() {
    let img = brokers(3);
    let live = Liveness {
        since: 0,
        last_heartbeat: BTreeMap::from([(1, 1000), (2, 1000), (3, 1000)]),
        // 1 dropped after its last heartbeat; 2 dropped but heartbeated afterwards (a live
        // broker whose connection broke); 3 never dropped.
        disconnected: BTreeMap::from([(1, 1050), (2, 900)]),
        ..Liveness::default()
    };
    // 1300 - 1050 = 250 > 200: broker 1 is fenced long before its 900 ms session would expire.
    assert_eq!(
        plan_session_expiry(&img, &live, 1300, &policy(900, 200)),
        vec![Command::FenceBroker {
            broker_id: 1,
            broker_epoch: 10
        }]
    );
    // Exactly at the grace is not yet.
    assert_eq!(
        plan_session_expiry(&img, &live, 1250, &policy(900, 200)),
        vec![]
    );
    // The session timeout still applies to everyone.
    assert_eq!(
        plan_session_expiry(&img, &live, 1901, &policy(900, 200)).len(),
        3
    );
}

#[test]
fn a_new_leader_controller_counts_from_its_leadership_start() {
    let img = brokers(2);
    let live = Liveness {
        since: 5000,
        ..Liveness::default()
    };
    assert_eq!(
        plan_session_expiry(&img, &live, 5900, &policy(900, 200)),
        vec![]
    );
    assert_eq!(
        plan_session_expiry(&img, &live, 5901, &policy(900, 200)).len(),
        2
    );
}

#[test]
fn the_broker_of_an_unreachable_controller_is_fenced_at_once() {
    let img = brokers(3);
    let live = Liveness {
        // A new leader (since 5000): 2 re-opened its session, 1 and 3 were not heard from
        // yet; controller 1 refuses connections since 5010 (the dead former leader), and
        // controller 3 refused once at 4000 but its broker was heard from after that.
        since: 5000,
        last_heartbeat: BTreeMap::from([(2, 5100), (3, 4500)]),
        unreachable_voters: BTreeMap::from([(1, 5010), (3, 4000)]),
        ..Liveness::default()
    };
    // Controller 1 refuses and broker 1 was not heard from since: fenced without a grace.
    // Broker 3 was heard from after its controller's refusal began: kept.
    assert_eq!(
        plan_session_expiry(&img, &live, 5011, &policy(900, 200)),
        vec![Command::FenceBroker {
            broker_id: 1,
            broker_epoch: 10
        }]
    );
}

#[test]
fn tick_fences_and_moves_leadership_in_one_plan() {
    let img = with_topic(brokers(3), "t", &[(&[1, 2, 3], &[1, 2, 3], Some(1))]);
    let live = Liveness {
        since: 0,
        last_heartbeat: BTreeMap::from([(1, 0), (2, 950), (3, 950)]),
        ..Liveness::default()
    };
    assert_eq!(
        plan_tick(&img, &live, 1000, &policy(900, 200)),
        vec![
            Command::FenceBroker {
                broker_id: 1,
                broker_epoch: 10
            },
            elect("t", 0, 0, Some(2), &[2, 3]),
        ]
    );
}

#[test]
fn heartbeat_unfences_a_caught_up_broker() {
    let mut img = brokers(2);
    fence(&mut img, 2);
    let hb = |off, want_fence| Heartbeat {
        broker_id: 2,
        broker_epoch: 20,
        metadata_offset: off,
        want_fence,
    };
    // Not caught up to its own registration yet.
    assert_eq!(plan_heartbeat(&img, &hb(19, false)), Ok(vec![]));
    assert_eq!(
        plan_heartbeat(&img, &hb(20, false)),
        Ok(vec![Command::UnfenceBroker {
            broker_id: 2,
            broker_epoch: 20
        }])
    );
    // Controlled shutdown of an active broker.
    assert_eq!(
        plan_heartbeat(
            &img,
            &Heartbeat {
                broker_id: 1,
                broker_epoch: 10,
                metadata_offset: 99,
                want_fence: true
            }
        ),
        Ok(vec![Command::FenceBroker {
            broker_id: 1,
            broker_epoch: 10
        }])
    );
    // Steady state: nothing.
    assert_eq!(
        plan_heartbeat(
            &img,
            &Heartbeat {
                broker_id: 1,
                broker_epoch: 10,
                metadata_offset: 99,
                want_fence: false
            }
        ),
        Ok(vec![])
    );
}

#[test]
fn heartbeat_from_an_old_incarnation_is_refused() {
    let img = brokers(1);
    assert_eq!(
        plan_heartbeat(
            &img,
            &Heartbeat {
                broker_id: 1,
                broker_epoch: 3,
                metadata_offset: 0,
                want_fence: false
            }
        ),
        Err(PlanError::StaleBrokerEpoch {
            broker_id: 1,
            current: 10,
            got: 3
        })
    );
    assert_eq!(
        plan_heartbeat(
            &img,
            &Heartbeat {
                broker_id: 9,
                broker_epoch: 3,
                metadata_offset: 0,
                want_fence: false
            }
        ),
        Err(PlanError::UnknownBroker(9))
    );
}
