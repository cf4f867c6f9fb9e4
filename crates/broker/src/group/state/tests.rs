//! The state machine against event vectors: every fencing rule and timer, with Kafka's codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use GroupError::*;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 60_000;
const DELAY: i32 = 3000;

fn group() -> Group {
    Group::new(
        "g",
        GroupConfig {
            min_session_timeout_ms: 1000,
            max_session_timeout_ms: 100_000,
            initial_rebalance_delay_ms: DELAY,
        },
    )
}

fn protocols(names: &[&str]) -> Vec<Protocol> {
    names
        .iter()
        .map(|n| Protocol {
            name: n.to_string(),
            metadata: Bytes::from(format!("meta-{n}")),
        })
        .collect()
}

fn join(req: RequestId, member: &str, fresh: &str) -> JoinRequest {
    JoinRequest {
        req,
        member_id: member.into(),
        fresh_member_id: fresh.into(),
        group_instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: protocols(&["range"]),
        require_known_member_id: false,
        supports_skip_assignment: false,
    }
}

fn sync(req: RequestId, member: &str, generation: i32, assign: &[(&str, &str)]) -> Event {
    Event::Sync(SyncRequest {
        req,
        member_id: member.into(),
        group_instance_id: None,
        generation_id: generation,
        protocol_type: None,
        protocol_name: None,
        assignments: assign
            .iter()
            .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
            .collect(),
    })
}

fn hb(req: RequestId, member: &str, generation: i32) -> Event {
    Event::Heartbeat(HeartbeatRequest {
        req,
        member_id: member.into(),
        group_instance_id: None,
        generation_id: generation,
    })
}

fn replies(out: &[Output]) -> Vec<(RequestId, Reply)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Reply(id, r) => Some((*id, r.clone())),
            Output::StoreGroup => None,
        })
        .collect()
}

fn join_reply(out: &[Output], req: RequestId) -> JoinResponse {
    match replies(out).into_iter().find(|(id, _)| *id == req) {
        Some((_, Reply::Join(j))) => j,
        other => panic!("no join reply for {req}: {other:?} in {out:?}"),
    }
}

fn sync_reply(out: &[Output], req: RequestId) -> SyncResponse {
    match replies(out).into_iter().find(|(id, _)| *id == req) {
        Some((_, Reply::Sync(s))) => s,
        other => panic!("no sync reply for {req}: {other:?} in {out:?}"),
    }
}

fn hb_error(g: &mut Group, now: i64, member: &str, generation: i32) -> Option<GroupError> {
    match replies(&g.handle(now, hb(0, member, generation))).pop() {
        Some((_, Reply::Heartbeat(e))) => e,
        other => panic!("{other:?}"),
    }
}

/// A stable group with member "a" (leader) and optionally "b", generation returned.
fn stable(members: &[&str]) -> (Group, i32) {
    let mut g = group();
    let mut t = 0;
    for (i, m) in members.iter().enumerate() {
        g.handle(t, Event::Join(join(i as u64 + 1, "", m)));
    }
    t += i64::from(DELAY);
    // Each join after the first extends the initial delay once.
    let mut out = g.handle(t, Event::Tick);
    while g.state() == GroupState::PreparingRebalance {
        t += i64::from(DELAY);
        out = g.handle(t, Event::Tick);
    }
    let generation = join_reply(&out, 1).generation_id;
    for (i, m) in members.iter().enumerate().skip(1) {
        assert!(
            g.handle(t, sync(100 + i as u64, m, generation, &[]))
                .is_empty()
        );
    }
    let assign: Vec<(&str, &str)> = members.iter().map(|m| (*m, *m)).collect();
    let out = g.handle(t, sync(100, members[0], generation, &assign));
    assert!(out.contains(&Output::StoreGroup));
    assert_eq!(g.state(), GroupState::Stable);
    (g, generation)
}

#[test]
fn kip_394_member_id_required_then_initial_delay_then_sync() {
    let mut g = group();
    let mut r = join(1, "", "m1");
    r.require_known_member_id = true;
    let out = g.handle(0, Event::Join(r.clone()));
    let j = join_reply(&out, 1);
    assert_eq!(j.error, Some(MemberIdRequired));
    assert_eq!(j.member_id, "m1");
    assert_eq!(g.state(), GroupState::Empty);
    // Rejoin with the id: the group waits for the initial rebalance delay.
    r.req = 2;
    r.member_id = "m1".into();
    assert!(replies(&g.handle(10, Event::Join(r))).is_empty());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(g.next_deadline(), Some(10 + i64::from(DELAY)));
    let out = g.handle(10 + i64::from(DELAY), Event::Tick);
    let j = join_reply(&out, 2);
    assert_eq!(j.error, None);
    assert_eq!(j.generation_id, 1);
    assert_eq!(j.leader, "m1");
    assert_eq!(j.protocol_name.as_deref(), Some("range"));
    assert_eq!(j.members.len(), 1);
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    let out = g.handle(3100, sync(3, "m1", 1, &[("m1", "p0")]));
    assert_eq!(out[0], Output::StoreGroup);
    assert_eq!(sync_reply(&out, 3).assignment, Bytes::from("p0"));
    assert_eq!(g.state(), GroupState::Stable);
}

#[test]
fn session_timeout_outside_bounds_is_invalid() {
    let mut g = group();
    for ms in [999, 100_001] {
        let mut r = join(1, "", "m1");
        r.session_timeout_ms = ms;
        assert_eq!(
            join_reply(&g.handle(0, Event::Join(r)), 1).error,
            Some(InvalidSessionTimeout)
        );
    }
    assert!(g.members().is_empty());
}

#[test]
fn initial_delay_is_extended_while_members_keep_arriving() {
    let mut g = group();
    g.handle(0, Event::Join(join(1, "", "a")));
    g.handle(100, Event::Join(join(2, "", "b")));
    // First deadline: a new member came, so wait one more delay instead of completing.
    assert!(replies(&g.handle(i64::from(DELAY), Event::Tick)).is_empty());
    let out = g.handle(2 * i64::from(DELAY), Event::Tick);
    assert_eq!(join_reply(&out, 1).generation_id, 1);
    assert_eq!(join_reply(&out, 1).members.len(), 2, "leader sees everyone");
    assert!(
        join_reply(&out, 2).members.is_empty(),
        "followers see nobody"
    );
}

#[test]
fn new_member_rebalances_a_stable_group_and_waits_for_everyone() {
    let (mut g, generation) = stable(&["a"]);
    let out = g.handle(5000, Event::Join(join(10, "", "b")));
    assert!(replies(&out).is_empty(), "b waits for a to rejoin");
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    // a learns of the rebalance from its heartbeat; commits are still accepted meanwhile.
    assert_eq!(
        hb_error(&mut g, 5001, "a", generation),
        Some(RebalanceInProgress)
    );
    assert_eq!(g.validate_commit(5001, "a", None, generation), Ok(()));
    // Sync in PreparingRebalance is refused.
    assert_eq!(
        sync_reply(&g.handle(5002, sync(11, "a", generation, &[])), 11).error,
        Some(RebalanceInProgress)
    );
    let out = g.handle(5003, Event::Join(join(12, "a", "")));
    let a = join_reply(&out, 12);
    let b = join_reply(&out, 10);
    assert_eq!(a.generation_id, generation + 1);
    assert_eq!(b.generation_id, generation + 1);
    assert_eq!(a.leader, "a");
    assert_eq!(a.members.len(), 2);
    // Old generation is fenced; commits wait for the sync.
    assert_eq!(
        hb_error(&mut g, 5004, "a", generation),
        Some(IllegalGeneration)
    );
    assert_eq!(
        g.validate_commit(5004, "a", None, generation + 1),
        Err(RebalanceInProgress)
    );
    assert_eq!(
        hb_error(&mut g, 5004, "b", generation + 1),
        None,
        "heartbeats in CompletingRebalance are fine"
    );
    assert!(
        g.handle(5005, sync(13, "b", generation + 1, &[]))
            .is_empty()
    );
    let out = g.handle(5006, sync(14, "a", generation + 1, &[("a", "A")]));
    assert_eq!(sync_reply(&out, 14).assignment, Bytes::from("A"));
    assert_eq!(
        sync_reply(&out, 13).assignment,
        Bytes::new(),
        "left out by the leader: empty"
    );
}

#[test]
fn fencing_of_unknown_members_generations_and_protocols() {
    let (mut g, generation) = stable(&["a"]);
    assert_eq!(hb_error(&mut g, 1, "zz", generation), Some(UnknownMemberId));
    assert_eq!(
        hb_error(&mut g, 1, "a", generation + 5),
        Some(IllegalGeneration)
    );
    assert_eq!(
        sync_reply(&g.handle(1, sync(2, "a", generation - 1, &[])), 2).error,
        Some(IllegalGeneration)
    );
    assert_eq!(
        sync_reply(&g.handle(1, sync(2, "zz", generation, &[])), 2).error,
        Some(UnknownMemberId)
    );
    // Known member rejoining with a different protocol type.
    let mut r = join(3, "a", "");
    r.protocol_type = "connect".into();
    assert_eq!(
        join_reply(&g.handle(1, Event::Join(r)), 3).error,
        Some(InconsistentGroupProtocol)
    );
    // New member with no protocol in common.
    let mut r = join(4, "", "c");
    r.protocols = protocols(&["roundrobin"]);
    assert_eq!(
        join_reply(&g.handle(1, Event::Join(r)), 4).error,
        Some(InconsistentGroupProtocol)
    );
    // SyncGroup v5 protocol name mismatch.
    let out = g.handle(
        1,
        Event::Sync(SyncRequest {
            req: 5,
            member_id: "a".into(),
            group_instance_id: None,
            generation_id: generation,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("roundrobin".into()),
            assignments: vec![],
        }),
    );
    assert_eq!(sync_reply(&out, 5).error, Some(InconsistentGroupProtocol));
    // A stable follower's sync just returns its assignment.
    let out = g.handle(1, sync(6, "a", generation, &[]));
    assert_eq!(sync_reply(&out, 6).assignment, Bytes::from("a"));
    // Known member joining an unknown group id path: member id given but not in the group.
    assert_eq!(
        join_reply(&g.handle(1, Event::Join(join(7, "ghost", ""))), 7).error,
        Some(UnknownMemberId)
    );
}

#[test]
fn offset_commit_rules() {
    let mut g = group();
    // Outside group management, an empty group accepts commits from anyone.
    assert_eq!(g.validate_commit(0, "", None, -1), Ok(()));
    assert_eq!(g.validate_commit(0, "x", None, -1), Err(UnknownMemberId));
    let (mut g, generation) = stable(&["a"]);
    assert_eq!(g.validate_commit(0, "", None, -1), Err(UnknownMemberId));
    assert_eq!(g.validate_commit(0, "a", None, generation), Ok(()));
    assert_eq!(
        g.validate_commit(0, "a", None, generation + 1),
        Err(IllegalGeneration)
    );
    assert_eq!(
        g.validate_commit(0, "b", None, generation),
        Err(UnknownMemberId)
    );
    g.mark_dead();
    assert_eq!(
        g.validate_commit(0, "a", None, generation),
        Err(CoordinatorNotAvailable)
    );
    assert_eq!(
        hb_error(&mut g, 0, "a", generation),
        Some(CoordinatorNotAvailable)
    );
}

#[test]
fn session_expiry_removes_the_silent_member() {
    let (mut g, generation) = stable(&["a", "b"]);
    let start = g.next_deadline().unwrap();
    // a keeps heartbeating, b does not.
    assert_eq!(hb_error(&mut g, start - 1, "a", generation), None);
    let out = g.handle(start, Event::Tick);
    assert!(replies(&out).is_empty());
    assert!(!g.members().contains_key("b"));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        hb_error(&mut g, start, "b", generation),
        Some(UnknownMemberId)
    );
    let out = g.handle(start + 1, Event::Join(join(20, "a", "")));
    let j = join_reply(&out, 20);
    assert_eq!((j.generation_id, j.members.len()), (generation + 1, 1));
}

#[test]
fn rebalance_timeout_drops_members_that_do_not_rejoin() {
    let (mut g, generation) = stable(&["a", "b"]);
    g.handle(100, Event::Join(join(30, "", "c")));
    g.handle(200, Event::Join(join(31, "a", "")));
    // b heartbeats (so its session stays alive) but never rejoins.
    assert_eq!(
        hb_error(&mut g, 300, "b", generation),
        Some(RebalanceInProgress)
    );
    assert_eq!(
        g.next_deadline(),
        Some(300 + i64::from(SESSION)).min(Some(100 + i64::from(REBALANCE)))
    );
    let mut t = 300;
    while g.state() == GroupState::PreparingRebalance {
        t += i64::from(SESSION) - 1;
        if g.members().contains_key("b") {
            hb_error(&mut g, t, "b", generation);
        }
        g.handle(t, Event::Tick);
        assert!(
            t < 100 + i64::from(REBALANCE) + i64::from(SESSION),
            "rebalance never ended"
        );
    }
    assert!(!g.members().contains_key("b"));
    assert_eq!(g.generation(), generation + 1);
    assert_eq!(
        hb_error(&mut g, t, "b", generation + 1),
        Some(UnknownMemberId)
    );
}

#[test]
fn members_that_never_sync_are_dropped_after_the_rebalance_timeout() {
    let mut g = group();
    g.handle(0, Event::Join(join(1, "", "a")));
    g.handle(0, Event::Join(join(2, "", "b")));
    let mut t = 0;
    while g.state() == GroupState::PreparingRebalance {
        t += i64::from(DELAY);
        g.handle(t, Event::Tick);
    }
    // a (leader) syncs and keeps heartbeating; b never syncs.
    g.handle(t, sync(3, "a", 1, &[("a", "A"), ("b", "B")]));
    assert_eq!(g.state(), GroupState::Stable);
    let deadline = t + i64::from(REBALANCE);
    while t + i64::from(SESSION) / 2 < deadline {
        t += i64::from(SESSION) / 2;
        hb_error(&mut g, t, "a", 1);
        hb_error(&mut g, t, "b", 1);
    }
    g.handle(deadline, Event::Tick);
    assert!(!g.members().contains_key("b"));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn pending_member_expires_after_its_session_timeout() {
    let (mut g, _) = stable(&["a"]);
    let mut r = join(1, "", "p");
    r.require_known_member_id = true;
    assert_eq!(
        join_reply(&g.handle(0, Event::Join(r.clone())), 1).error,
        Some(MemberIdRequired)
    );
    // Leader rejoins (a rebalance); the pending member blocks completion until it expires.
    assert!(replies(&g.handle(1, Event::Join(join(2, "a", "")))).is_empty());
    let out = g.handle(i64::from(SESSION), Event::Tick);
    assert_eq!(join_reply(&out, 2).members.len(), 1);
    // Coming back later with the expired id: unknown.
    r.member_id = "p".into();
    r.req = 3;
    assert_eq!(
        join_reply(&g.handle(i64::from(SESSION) + 1, Event::Join(r)), 3).error,
        Some(UnknownMemberId)
    );
}

#[test]
fn static_member_rejoin_replaces_and_fences_the_old_id() {
    let mut g = group();
    let mut r = join(1, "", "s1");
    r.group_instance_id = Some("inst".into());
    // Static members never get MEMBER_ID_REQUIRED.
    r.require_known_member_id = true;
    g.handle(0, Event::Join(r.clone()));
    let out = g.handle(i64::from(DELAY), Event::Tick);
    assert_eq!(join_reply(&out, 1).member_id, "s1");
    g.handle(i64::from(DELAY), sync(2, "s1", 1, &[("s1", "S")]));
    assert_eq!(g.state(), GroupState::Stable);
    // The same instance restarts (new process, no member id): replaced without a rebalance.
    r.req = 3;
    r.fresh_member_id = "s2".into();
    let out = g.handle(5000, Event::Join(r.clone()));
    assert!(out.contains(&Output::StoreGroup));
    let j = join_reply(&out, 3);
    assert_eq!(
        (j.error, j.member_id.as_str(), j.generation_id),
        (None, "s2", 1)
    );
    assert_eq!(j.leader, "s1", "before v9 the old leader id is returned");
    assert_eq!(g.state(), GroupState::Stable);
    let fenced = |g: &mut Group, member: &str| -> Option<GroupError> {
        let out = g.handle(
            5001,
            Event::Heartbeat(HeartbeatRequest {
                req: 9,
                member_id: member.into(),
                group_instance_id: Some("inst".into()),
                generation_id: 1,
            }),
        );
        match replies(&out).pop() {
            Some((_, Reply::Heartbeat(e))) => e,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(fenced(&mut g, "s1"), Some(FencedInstanceId));
    assert_eq!(fenced(&mut g, "s2"), None);
    assert_eq!(
        g.validate_commit(5002, "s1", Some("inst"), 1),
        Err(FencedInstanceId)
    );
    assert_eq!(
        g.validate_commit(5002, "s2", Some("other"), 1),
        Err(UnknownMemberId)
    );
    // The stable member's assignment survives the replacement.
    let out = g.handle(5003, sync(10, "s2", 1, &[]));
    assert_eq!(sync_reply(&out, 10).assignment, Bytes::from("S"));
    // v9: the static leader is told it leads but may skip the assignment.
    r.req = 11;
    r.fresh_member_id = "s3".into();
    r.supports_skip_assignment = true;
    let j = join_reply(&g.handle(5004, Event::Join(r)), 11);
    assert!(j.skip_assignment);
    assert_eq!(j.leader, "s3");
    assert_eq!(j.members.len(), 1);
}

#[test]
fn static_member_pending_join_is_fenced_by_its_replacement() {
    let (mut g, _) = stable(&["a"]);
    let mut r = join(1, "", "s1");
    r.group_instance_id = Some("inst".into());
    g.handle(0, Event::Join(r.clone()));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    r.req = 2;
    r.fresh_member_id = "s2".into();
    let out = g.handle(1, Event::Join(r));
    assert_eq!(join_reply(&out, 1).error, Some(FencedInstanceId));
}

#[test]
fn leave_group_batches_members_and_removes_static_ones_by_instance() {
    let mut g = group();
    let mut r = join(1, "", "s1");
    r.group_instance_id = Some("inst".into());
    g.handle(0, Event::Join(r));
    g.handle(0, Event::Join(join(2, "", "a")));
    g.handle(0, Event::Join(join(3, "", "b")));
    let mut t = 0;
    while g.state() == GroupState::PreparingRebalance {
        t += i64::from(DELAY);
        g.handle(t, Event::Tick);
    }
    let out = g.handle(
        t,
        Event::Leave {
            req: 4,
            members: vec![
                LeavingMember {
                    member_id: "nobody".into(),
                    group_instance_id: None,
                },
                LeavingMember {
                    member_id: "a".into(),
                    group_instance_id: None,
                },
                LeavingMember {
                    member_id: "".into(),
                    group_instance_id: Some("inst".into()),
                },
                LeavingMember {
                    member_id: "b".into(),
                    group_instance_id: Some("inst".into()),
                },
            ],
        },
    );
    let leave = replies(&out)
        .into_iter()
        .find_map(|(id, r)| match (id, r) {
            (4, Reply::Leave(l)) => Some(l),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        leave,
        Ok(vec![Some(UnknownMemberId), None, None, None]),
        "b names an instance that is gone by then, so it is checked by member id"
    );
    assert!(g.members().is_empty());
    // With nobody left, the rebalance completes at once into an empty generation.
    assert_eq!(g.state(), GroupState::Empty);
    assert!(out.contains(&Output::StoreGroup));
    let generation = g.generation();
    assert_eq!(hb_error(&mut g, t, "a", generation), Some(UnknownMemberId));
}

#[test]
fn a_leaving_member_unblocks_the_rebalance_and_waiting_syncs_learn_of_it() {
    let (mut g, generation) = stable(&["a", "b"]);
    // Rebalance: both rejoin; b syncs first and waits for the leader.
    g.handle(0, Event::Join(join(1, "a", "")));
    let out = g.handle(0, Event::Join(join(2, "b", "")));
    assert_eq!(join_reply(&out, 2).generation_id, generation + 1);
    assert!(g.handle(1, sync(3, "b", generation + 1, &[])).is_empty());
    // The leader leaves instead of syncing: b's sync is answered with REBALANCE_IN_PROGRESS.
    let out = g.handle(
        2,
        Event::Leave {
            req: 4,
            members: vec![LeavingMember {
                member_id: "a".into(),
                group_instance_id: None,
            }],
        },
    );
    assert_eq!(sync_reply(&out, 3).error, Some(RebalanceInProgress));
    assert_eq!(g.leader(), Some("b"));
    let out = g.handle(3, Event::Join(join(5, "b", "")));
    assert_eq!(join_reply(&out, 5).leader, "b");
}

#[test]
fn protocol_selection_picks_one_every_member_supports() {
    let mut g = group();
    let mut r = join(1, "", "a");
    r.protocols = protocols(&["range", "roundrobin"]);
    g.handle(0, Event::Join(r));
    let mut r = join(2, "", "b");
    r.protocols = protocols(&["roundrobin", "range"]);
    g.handle(0, Event::Join(r));
    let mut r = join(3, "", "c");
    r.protocols = protocols(&["roundrobin"]);
    g.handle(0, Event::Join(r));
    let mut out = Vec::new();
    let mut t = 0;
    while g.state() == GroupState::PreparingRebalance {
        t += i64::from(DELAY);
        out = g.handle(t, Event::Tick);
    }
    let j = join_reply(&out, 1);
    assert_eq!(j.protocol_name.as_deref(), Some("roundrobin"));
    assert!(j.members.iter().all(|m| m.metadata == "meta-roundrobin"));
}

#[test]
fn delete_and_offset_delete_checks() {
    let mut g = group();
    assert_eq!(g.check_deletable(), Ok(()));
    assert_eq!(g.check_offset_delete(["t"]), Ok(vec![None]));
    // A consumer group subscribed to "t" (subscription v0: version, topics, user data).
    let mut sub = bytes::BytesMut::new();
    use bytes::BufMut;
    sub.put_i16(0);
    sub.put_i32(1);
    sub.put_i16(1);
    sub.put_slice(b"t");
    sub.put_i32(-1);
    let mut r = join(1, "", "a");
    r.protocols = vec![Protocol {
        name: "range".into(),
        metadata: sub.freeze(),
    }];
    g.handle(0, Event::Join(r));
    g.handle(i64::from(DELAY), Event::Tick);
    assert_eq!(g.check_deletable(), Err(NonEmptyGroup));
    assert_eq!(
        g.check_offset_delete(["t", "u"]),
        Ok(vec![Some(GroupSubscribedToTopic), None])
    );
    g.mark_dead();
    assert_eq!(g.check_deletable(), Err(GroupIdNotFound));
}

#[test]
fn reloaded_group_is_stable_and_expires_without_heartbeats() {
    let (g, generation) = stable(&["a", "b"]);
    let stored = g.stored();
    let mut loaded = Group::load("g", g.config, stored, BTreeMap::new(), 1000);
    assert_eq!(loaded.state(), GroupState::Stable);
    assert_eq!(loaded.generation(), generation);
    assert_eq!(loaded.leader(), Some("a"));
    assert_eq!(hb_error(&mut loaded, 1001, "a", generation), None);
    let out = loaded.handle(1001, sync(1, "b", generation, &[]));
    assert_eq!(sync_reply(&out, 1).assignment, Bytes::from("b"));
    loaded.handle(1000 + i64::from(SESSION), Event::Tick);
    assert!(loaded.members().contains_key("a"));
    assert!(loaded.members().contains_key("b"), "b's sync refreshed it");
    loaded.handle(1001 + 2 * i64::from(SESSION), Event::Tick);
    assert!(loaded.members().is_empty());
}

#[test]
fn a_failed_store_of_the_current_generation_rebalances_the_group() {
    let (mut g, generation) = stable(&["a", "b"]);
    // A failure report for an older generation changes nothing.
    assert!(
        g.handle(
            1,
            Event::StoreFailed {
                generation: generation - 1
            }
        )
        .is_empty()
    );
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(hb_error(&mut g, 1, "b", generation), None);
    // The assignment of this generation was not replicated: everybody rejoins.
    g.handle(2, Event::StoreFailed { generation });
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        hb_error(&mut g, 3, "b", generation),
        Some(RebalanceInProgress)
    );
    // Several waiters report the same failure: the second report is a no-op.
    assert!(g.handle(4, Event::StoreFailed { generation }).is_empty());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}
