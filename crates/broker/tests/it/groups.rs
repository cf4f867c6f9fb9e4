//! Consumer groups over the wire with raw requests (gregor-client): every served version of the
//! group APIs, Kafka's error codes where Kafka returns them, long-polled JoinGroup, session
//! expiry, and groups/offsets surviving a restart (replayed from `__consumer_offsets`).

use bytes::{BufMut, Bytes, BytesMut};
use gregor_broker::group::records::partition_for;
use gregor_broker::handlers::SUPPORTED;
use gregor_client::Connection;
use gregor_client::kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use gregor_client::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use gregor_client::kafka_protocol::messages::leave_group_request::MemberIdentity;
use gregor_client::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use gregor_client::kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use gregor_client::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use gregor_client::kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use gregor_client::kafka_protocol::messages::*;
use gregor_client::kafka_protocol::protocol::{Encodable, StrBytes};

use crate::common::*;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn gid(x: &str) -> GroupId {
    GroupId(s(x))
}

/// A consumer-protocol subscription (v0) to `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    let sub =
        ConsumerProtocolSubscription::default().with_topics(topics.iter().map(|t| s(t)).collect());
    let mut b = BytesMut::new();
    b.put_i16(0);
    sub.encode(&mut b, 0).unwrap();
    b.freeze()
}

async fn start() -> TestBroker {
    TestBroker::start_with(|c| {
        c.group_initial_rebalance_delay_ms = 0;
        c.group_min_session_timeout_ms = 500;
        // Few partitions keep the per-test cost of __consumer_offsets small.
        c.offsets_topic_num_partitions = 5;
    })
    .await
}

fn join_req(group: &str, member: &str, session_ms: i32, topics: &[&str]) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(subscription(topics)),
        ])
}

/// Joins as a new member at version `v` (handling KIP-394's MEMBER_ID_REQUIRED on v4+).
async fn join_new(c: &mut Connection, v: i16, group: &str, topics: &[&str]) -> JoinGroupResponse {
    let resp = c
        .send_version(&join_req(group, "", 5000, topics), v)
        .await
        .unwrap();
    if v < 4 {
        return resp;
    }
    assert_eq!(resp.error_code, 79, "v{v}: MEMBER_ID_REQUIRED");
    assert!(!resp.member_id.is_empty());
    c.send_version(&join_req(group, &resp.member_id, 5000, topics), v)
        .await
        .unwrap()
}

fn sync_req(
    group: &str,
    member: &str,
    generation: i32,
    assign: &[(&str, &[u8])],
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(gid(group))
        .with_member_id(s(member))
        .with_generation_id(generation)
        .with_assignments(
            assign
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::copy_from_slice(a))
                })
                .collect(),
        )
}

fn heartbeat_req(group: &str, member: &str, generation: i32) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(gid(group))
        .with_member_id(s(member))
        .with_generation_id(generation)
}

fn commit_req(
    group: &str,
    member: &str,
    generation: i32,
    topic: &str,
    offsets: &[(i32, i64)],
) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_member_id(s(member))
        .with_generation_id_or_member_epoch(generation)
        .with_retention_time_ms(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(name(topic))
                .with_partitions(
                    offsets
                        .iter()
                        .map(|(p, o)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(*o)
                                .with_committed_metadata(Some(s("m")))
                        })
                        .collect(),
                ),
        ])
}

fn commit_codes(resp: &OffsetCommitResponse) -> Vec<i16> {
    resp.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// Committed offsets of `group` for `topic` partitions 0..n, via OffsetFetch v`v`.
async fn fetch_offsets(c: &mut Connection, v: i16, group: &str, topic: &str, n: i32) -> Vec<i64> {
    let parts: Vec<i32> = (0..n).collect();
    if v < 8 {
        let req = OffsetFetchRequest::default()
            .with_group_id(gid(group))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(name(topic))
                    .with_partition_indexes(parts),
            ]));
        let resp = c.send_version(&req, v).await.unwrap();
        assert_eq!(resp.error_code, 0);
        let mut out: Vec<(i32, i64)> = resp.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.committed_offset))
            .collect();
        out.sort();
        return out.into_iter().map(|(_, o)| o).collect();
    }
    let req = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(gid(group))
            .with_member_epoch(-1)
            .with_topics(Some(vec![
                OffsetFetchRequestTopics::default()
                    .with_name(name(topic))
                    .with_partition_indexes(parts),
            ])),
    ]);
    let resp = c.send_version(&req, v).await.unwrap();
    assert_eq!(resp.groups[0].error_code, 0);
    let mut out: Vec<(i32, i64)> = resp.groups[0].topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    out.sort();
    out.into_iter().map(|(_, o)| o).collect()
}

async fn describe(
    c: &mut Connection,
    v: i16,
    group: &str,
) -> describe_groups_response::DescribedGroup {
    let req = DescribeGroupsRequest::default().with_groups(vec![gid(group)]);
    c.send_version(&req, v).await.unwrap().groups.remove(0)
}

fn range(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let r = SUPPORTED.iter().find(|(k, _)| *k == key).unwrap().1;
    r.min..=r.max
}

/// One full member lifecycle per JoinGroup version, with the other group APIs cycling through
/// their versions: every advertised version encodes and decodes.
#[tokio::test]
async fn every_group_api_version_runs_a_member_lifecycle() {
    let tb = start().await;
    tb.create_topic("t", 2);
    let mut c = tb.connect().await;
    let port = tb.addr.rsplit(':').next().unwrap().parse::<i32>().unwrap();
    for v in range(ApiKey::FindCoordinator) {
        let req = if v >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s("a"), s("b")])
        } else {
            FindCoordinatorRequest::default().with_key(s("a"))
        };
        let resp = c.send_version(&req, v).await.unwrap();
        if v >= 4 {
            assert_eq!(resp.coordinators.len(), 2);
            assert!(
                resp.coordinators
                    .iter()
                    .all(|k| k.error_code == 0 && k.port == port)
            );
        } else {
            assert_eq!(
                (resp.error_code, resp.node_id.0, resp.port),
                (0, 1, port),
                "v{v}"
            );
        }
    }
    let sync_versions: Vec<i16> = range(ApiKey::SyncGroup).collect();
    let hb_versions: Vec<i16> = range(ApiKey::Heartbeat).collect();
    let leave_versions: Vec<i16> = range(ApiKey::LeaveGroup).collect();
    let commit_versions: Vec<i16> = range(ApiKey::OffsetCommit).collect();
    let fetch_versions: Vec<i16> = range(ApiKey::OffsetFetch).collect();
    let describe_versions: Vec<i16> = range(ApiKey::DescribeGroups).collect();
    for (i, v) in range(ApiKey::JoinGroup).enumerate() {
        let group = format!("g{v}");
        let pick = |vs: &[i16]| vs[i % vs.len()];
        let j = join_new(&mut c, v, &group, &["t"]).await;
        assert_eq!(j.error_code, 0, "join v{v}");
        assert_eq!(
            (j.generation_id, j.leader.clone()),
            (1, j.member_id.clone())
        );
        assert_eq!(j.members.len(), 1);
        assert_eq!(j.members[0].metadata, subscription(&["t"]));
        let member = j.member_id.to_string();
        let sv = pick(&sync_versions);
        let resp = c
            .send_version(&sync_req(&group, &member, 1, &[(&member, b"A")]), sv)
            .await
            .unwrap();
        assert_eq!(
            (resp.error_code, &resp.assignment[..]),
            (0, &b"A"[..]),
            "sync v{sv}"
        );
        let hv = pick(&hb_versions);
        let resp = c
            .send_version(&heartbeat_req(&group, &member, 1), hv)
            .await
            .unwrap();
        assert_eq!(resp.error_code, 0, "heartbeat v{hv}");
        let cv = pick(&commit_versions);
        let resp = c
            .send_version(
                &commit_req(&group, &member, 1, "t", &[(0, 10 + i as i64), (1, 20)]),
                cv,
            )
            .await
            .unwrap();
        assert_eq!(commit_codes(&resp), vec![0, 0], "commit v{cv}");
        let fv = pick(&fetch_versions);
        assert_eq!(
            fetch_offsets(&mut c, fv, &group, "t", 3).await,
            vec![10 + i as i64, 20, -1],
            "fetch v{fv}"
        );
        let dv = pick(&describe_versions);
        let d = describe(&mut c, dv, &group).await;
        assert_eq!(
            (d.error_code, d.group_state.as_str()),
            (0, "Stable"),
            "describe v{dv}"
        );
        assert_eq!(d.protocol_data.as_str(), "range");
        assert_eq!(&d.members[0].member_assignment[..], b"A");
        assert_eq!(d.members[0].client_host.as_str(), "/127.0.0.1");
        let lv = pick(&leave_versions);
        let req = if lv >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(gid(&group))
                .with_members(vec![MemberIdentity::default().with_member_id(s(&member))])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(gid(&group))
                .with_member_id(s(&member))
        };
        let resp = c.send_version(&req, lv).await.unwrap();
        assert_eq!(resp.error_code, 0, "leave v{lv}");
        assert!(resp.members.iter().all(|m| m.error_code == 0));
        assert_eq!(
            describe(&mut c, dv, &group).await.group_state.as_str(),
            "Empty"
        );
    }
    for v in range(ApiKey::ListGroups) {
        let resp = c
            .send_version(&ListGroupsRequest::default(), v)
            .await
            .unwrap();
        assert_eq!(
            resp.groups.len(),
            range(ApiKey::JoinGroup).count(),
            "list v{v}"
        );
        if v >= 4 {
            assert!(
                resp.groups
                    .iter()
                    .all(|g| g.group_state.as_str() == "Empty")
            );
        }
        if v >= 4 {
            let stable = ListGroupsRequest::default().with_states_filter(vec![s("Stable")]);
            assert!(c.send_version(&stable, v).await.unwrap().groups.is_empty());
        }
    }
    for (i, v) in range(ApiKey::DeleteGroups).enumerate() {
        let req = DeleteGroupsRequest::default().with_groups_names(vec![gid(&format!("g{i}"))]);
        let resp = c.send_version(&req, v).await.unwrap();
        assert_eq!(resp.results[0].error_code, 0, "delete groups v{v}");
    }
    for v in range(ApiKey::OffsetDelete) {
        let req = OffsetDeleteRequest::default()
            .with_group_id(gid("g5"))
            .with_topics(vec![
                OffsetDeleteRequestTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0),
                    ]),
            ]);
        let resp = c.send_version(&req, v).await.unwrap();
        assert_eq!(
            (resp.error_code, resp.topics[0].partitions[0].error_code),
            (0, 0)
        );
        assert_eq!(fetch_offsets(&mut c, 5, "g5", "t", 2).await, vec![-1, 20]);
    }
}

#[tokio::test]
async fn group_error_codes_are_kafkas() {
    let tb = start().await;
    tb.create_topic("t", 2);
    let mut c = tb.connect().await;
    // The offsets topic is internal: not auto-created by Metadata, not deletable.
    let md = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default()
            .with_name(Some(name("__consumer_offsets"))),
    ]));
    assert_eq!(
        c.send_version(&md, 9).await.unwrap().topics[0].error_code,
        3
    );
    // FindCoordinator: transactions have no coordinator yet (15), bad key types are 42.
    let resp = c
        .send_version(
            &FindCoordinatorRequest::default()
                .with_key(s("x"))
                .with_key_type(1),
            3,
        )
        .await
        .unwrap();
    assert_eq!(resp.error_code, 15);
    let resp = c
        .send_version(
            &FindCoordinatorRequest::default()
                .with_coordinator_keys(vec![s("x")])
                .with_key_type(7),
            4,
        )
        .await
        .unwrap();
    assert_eq!(resp.coordinators[0].error_code, 42);
    let resp = c
        .send_version(&FindCoordinatorRequest::default().with_key(s("x")), 3)
        .await
        .unwrap();
    assert_eq!(resp.error_code, 0);
    let md = c
        .send_version(&MetadataRequest::default().with_topics(None), 9)
        .await
        .unwrap();
    let internal = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().unwrap().0.as_str() == "__consumer_offsets")
        .unwrap();
    assert!(internal.is_internal);
    assert_eq!(internal.partitions.len(), 5);
    let del = DeleteTopicsRequest::default()
        .with_topics(vec![
            DeleteTopicState::default().with_name(Some(name("__consumer_offsets"))),
        ])
        .with_timeout_ms(1000);
    assert_eq!(
        c.send_version(&del, 6).await.unwrap().responses[0].error_code,
        42
    );

    // JoinGroup: INVALID_GROUP_ID (24), INVALID_SESSION_TIMEOUT (26), unknown member of an
    // unknown group (25).
    let j = c
        .send_version(&join_req("", "", 5000, &["t"]), 5)
        .await
        .unwrap();
    assert_eq!(j.error_code, 24);
    let j = c
        .send_version(&join_req("g", "", 100, &["t"]), 5)
        .await
        .unwrap();
    assert_eq!(j.error_code, 26);
    let j = c
        .send_version(&join_req("nope", "ghost", 5000, &["t"]), 5)
        .await
        .unwrap();
    assert_eq!(j.error_code, 25);
    // Heartbeat/Sync on an unknown group: UNKNOWN_MEMBER_ID (25).
    assert_eq!(
        c.send_version(&heartbeat_req("nope", "m", 1), 4)
            .await
            .unwrap()
            .error_code,
        25
    );
    assert_eq!(
        c.send_version(&sync_req("nope", "m", 1, &[]), 5)
            .await
            .unwrap()
            .error_code,
        25
    );

    let j = join_new(&mut c, 5, "g", &["t"]).await;
    let a = j.member_id.to_string();
    assert_eq!(
        c.send_version(&sync_req("g", &a, 1, &[(&a, b"A")]), 5)
            .await
            .unwrap()
            .error_code,
        0
    );
    // ILLEGAL_GENERATION (22), UNKNOWN_MEMBER_ID (25).
    assert_eq!(
        c.send_version(&heartbeat_req("g", &a, 7), 4)
            .await
            .unwrap()
            .error_code,
        22
    );
    assert_eq!(
        c.send_version(&heartbeat_req("g", "zz", 1), 4)
            .await
            .unwrap()
            .error_code,
        25
    );
    assert_eq!(
        c.send_version(&sync_req("g", &a, 0, &[]), 5)
            .await
            .unwrap()
            .error_code,
        22
    );
    // INCONSISTENT_GROUP_PROTOCOL (23): a new member with another protocol type.
    let mut other = join_req("g", "", 5000, &["t"]);
    other.protocol_type = s("connect");
    assert_eq!(c.send_version(&other, 3).await.unwrap().error_code, 23);
    // OffsetCommit: unknown partition (3) next to a good one; wrong generation (22); a
    // non-member while the group has members (25); metadata too large (12); unknown group
    // with a generation (22).
    let resp = c
        .send_version(&commit_req("g", &a, 1, "t", &[(0, 5), (9, 5)]), 8)
        .await
        .unwrap();
    assert_eq!(commit_codes(&resp), vec![0, 3]);
    let resp = c
        .send_version(&commit_req("g", &a, 2, "t", &[(0, 5)]), 8)
        .await
        .unwrap();
    assert_eq!(commit_codes(&resp), vec![22]);
    let resp = c
        .send_version(&commit_req("g", "", -1, "t", &[(0, 5)]), 8)
        .await
        .unwrap();
    assert_eq!(commit_codes(&resp), vec![25]);
    let mut big = commit_req("g", &a, 1, "t", &[(1, 5)]);
    big.topics[0].partitions[0].committed_metadata = Some(s(&"x".repeat(5000)));
    assert_eq!(
        commit_codes(&c.send_version(&big, 8).await.unwrap()),
        vec![12]
    );
    let resp = c
        .send_version(&commit_req("other", "m", 3, "t", &[(0, 5)]), 8)
        .await
        .unwrap();
    assert_eq!(commit_codes(&resp), vec![22]);
    // A commit outside group management creates an empty group.
    let resp = c
        .send_version(&commit_req("simple", "", -1, "t", &[(0, 42)]), 2)
        .await
        .unwrap();
    assert_eq!(commit_codes(&resp), vec![0]);

    // DescribeGroups of an unknown group: Dead before v6, GROUP_ID_NOT_FOUND (69) in v6.
    let d = describe(&mut c, 5, "nope").await;
    assert_eq!((d.error_code, d.group_state.as_str()), (0, "Dead"));
    assert_eq!(describe(&mut c, 6, "nope").await.error_code, 69);
    // DeleteGroups: non-empty (68), unknown (69), empty (0).
    let req = DeleteGroupsRequest::default().with_groups_names(vec![
        gid("g"),
        gid("nope"),
        gid("simple"),
    ]);
    let codes: Vec<i16> = c
        .send_version(&req, 2)
        .await
        .unwrap()
        .results
        .iter()
        .map(|r| r.error_code)
        .collect();
    assert_eq!(codes, vec![68, 69, 0]);
    // OffsetDelete: subscribed topic (86), unknown topic (3), unknown group (69).
    tb.create_topic("u", 1);
    let od = |group: &str, topics: &[&str]| {
        OffsetDeleteRequest::default()
            .with_group_id(gid(group))
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        OffsetDeleteRequestTopic::default()
                            .with_name(name(t))
                            .with_partitions(vec![
                                OffsetDeleteRequestPartition::default().with_partition_index(0),
                            ])
                    })
                    .collect(),
            )
    };
    let resp = c
        .send_version(&od("g", &["t", "u", "zz"]), 0)
        .await
        .unwrap();
    let codes: Vec<i16> = resp
        .topics
        .iter()
        .map(|t| t.partitions[0].error_code)
        .collect();
    assert_eq!((resp.error_code, codes), (0, vec![86, 0, 3]));
    assert_eq!(
        c.send_version(&od("nope", &["t"]), 0)
            .await
            .unwrap()
            .error_code,
        69
    );

    // Static membership: a second instance with the same id fences the first (82).
    let mut s1 = join_req("static", "", 5000, &["t"]);
    s1.group_instance_id = Some(s("inst-1"));
    let j1 = c.send_version(&s1, 5).await.unwrap();
    assert_eq!(j1.error_code, 0, "static members skip MEMBER_ID_REQUIRED");
    let m1 = j1.member_id.to_string();
    let mut sync1 = sync_req("static", &m1, 1, &[(&m1, b"S")]);
    sync1.group_instance_id = Some(s("inst-1"));
    assert_eq!(c.send_version(&sync1, 5).await.unwrap().error_code, 0);
    let j2 = c.send_version(&s1, 5).await.unwrap();
    assert_eq!(
        (j2.error_code, j2.generation_id),
        (0, 1),
        "replaced without a rebalance"
    );
    let mut hb = heartbeat_req("static", &m1, 1);
    hb.group_instance_id = Some(s("inst-1"));
    assert_eq!(c.send_version(&hb, 4).await.unwrap().error_code, 82);
    hb.member_id = j2.member_id.clone();
    assert_eq!(c.send_version(&hb, 4).await.unwrap().error_code, 0);
    // LeaveGroup v3+: per member results; the static member leaves by instance id.
    let leave = LeaveGroupRequest::default()
        .with_group_id(gid("static"))
        .with_members(vec![
            MemberIdentity::default().with_member_id(s("ghost")),
            MemberIdentity::default()
                .with_member_id(s(&m1))
                .with_group_instance_id(Some(s("inst-1"))),
            MemberIdentity::default()
                .with_member_id(s(""))
                .with_group_instance_id(Some(s("inst-1"))),
        ]);
    let resp = c.send_version(&leave, 4).await.unwrap();
    let codes: Vec<i16> = resp.members.iter().map(|m| m.error_code).collect();
    assert_eq!((resp.error_code, codes), (0, vec![25, 82, 0]));
    // Old single-member LeaveGroup reports the member's error at the top.
    let old = LeaveGroupRequest::default()
        .with_group_id(gid("static"))
        .with_member_id(s("ghost"));
    assert_eq!(c.send_version(&old, 1).await.unwrap().error_code, 25);
    tb.assert_alive().await;
}

/// JoinGroup is a long poll: a rejoin waits for the other member, which is only let go when
/// its session expires (REBALANCE_IN_PROGRESS for its heartbeat would have told it to rejoin).
#[tokio::test]
async fn join_waits_for_the_rebalance_and_session_expiry_ends_it() {
    let tb = start().await;
    tb.create_topic("t", 1);
    let mut a = tb.connect().await;
    let mut b = tb.connect().await;
    let ja = a
        .send_version(&join_req("g", "", 5000, &["t"]), 3)
        .await
        .unwrap();
    let ma = ja.member_id.to_string();
    assert_eq!(
        a.send_version(&sync_req("g", &ma, 1, &[]), 3)
            .await
            .unwrap()
            .error_code,
        0
    );
    // b (session 800 ms) joins: a must rejoin; b's JoinGroup waits meanwhile.
    let b_join = tokio::spawn(async move {
        let mut req = join_req("g", "", 800, &["t"]);
        req.rebalance_timeout_ms = 10_000;
        let j = b.send_version(&req, 3).await.unwrap();
        (b, j)
    });
    // a finds out through its heartbeat (27) and rejoins; both joins then complete together.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let code = a
            .send_version(&heartbeat_req("g", &ma, 1), 2)
            .await
            .unwrap()
            .error_code;
        if code == 27 {
            break;
        }
        assert_eq!(code, 0);
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rebalance signalled"
        );
        tokio::task::yield_now().await;
    }
    let ja = a
        .send_version(&join_req("g", &ma, 5000, &["t"]), 3)
        .await
        .unwrap();
    let (mut b, jb) = tokio::time::timeout(DEADLINE, b_join)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ja.error_code, jb.error_code), (0, 0));
    assert_eq!((ja.generation_id, jb.generation_id), (2, 2));
    assert_eq!(ja.members.len(), 2, "a leads and sees both");
    let mb = jb.member_id.to_string();
    // The leader hands in the assignment first; b's sync then answers at once.
    let resp = a
        .send_version(&sync_req("g", &ma, 2, &[(&ma, b"A"), (&mb, b"B")]), 3)
        .await
        .unwrap();
    assert_eq!(resp.error_code, 0);
    let resp = b
        .send_version(&sync_req("g", &mb, 2, &[]), 3)
        .await
        .unwrap();
    assert_eq!((resp.error_code, &resp.assignment[..]), (0, &b"B"[..]));
    // b goes silent. a rejoins and its JoinGroup completes once b's 800 ms session expires.
    let started = std::time::Instant::now();
    let j = tokio::time::timeout(
        DEADLINE,
        a.send_version(&join_req("g", &ma, 5000, &["t"]), 3),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!((j.error_code, j.generation_id, j.members.len()), (0, 3, 1));
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(400),
        "waited for the expiry"
    );
    assert_eq!(
        b.send_version(&heartbeat_req("g", &mb, 2), 2)
            .await
            .unwrap()
            .error_code,
        25
    );
}

/// Committed offsets and group metadata are replayed from `__consumer_offsets` after a
/// restart; deleted groups stay deleted (tombstones win).
#[tokio::test]
async fn groups_and_offsets_survive_a_restart() {
    let tb = start().await;
    tb.create_topic("t", 3);
    let mut c = tb.connect().await;
    let resp = c
        .send_version(
            &commit_req("simple", "", -1, "t", &[(0, 7), (1, 8), (2, 9)]),
            8,
        )
        .await
        .unwrap();
    assert_eq!(commit_codes(&resp), vec![0, 0, 0]);
    let resp = c
        .send_version(&commit_req("doomed", "", -1, "t", &[(0, 1)]), 8)
        .await
        .unwrap();
    assert_eq!(commit_codes(&resp), vec![0]);
    let j = join_new(&mut c, 9, "managed", &["t"]).await;
    let m = j.member_id.to_string();
    assert_eq!(
        c.send_version(&sync_req("managed", &m, 1, &[(&m, b"ASSIGN")]), 5)
            .await
            .unwrap()
            .error_code,
        0
    );
    let resp = c
        .send_version(&commit_req("managed", &m, 1, "t", &[(1, 100)]), 9)
        .await
        .unwrap();
    assert_eq!(commit_codes(&resp), vec![0]);
    // A newer commit for the same partition wins on replay.
    let resp = c
        .send_version(&commit_req("managed", &m, 1, "t", &[(1, 101)]), 9)
        .await
        .unwrap();
    assert_eq!(commit_codes(&resp), vec![0]);
    let req = DeleteGroupsRequest::default().with_groups_names(vec![gid("doomed")]);
    assert_eq!(
        c.send_version(&req, 2).await.unwrap().results[0].error_code,
        0
    );
    // The records sit in the partition Kafka would choose (Java hashCode of the group id).
    let p = partition_for("simple", 5);
    assert!(tb.log_end_offset("__consumer_offsets", p) >= 3);
    drop(c);

    let dir = tb.stop().await;
    let tb = TestBroker::start_in(dir, |c| {
        c.group_initial_rebalance_delay_ms = 0;
        c.group_min_session_timeout_ms = 500;
        c.offsets_topic_num_partitions = 5;
    })
    .await;
    let mut c = tb.connect().await;
    assert_eq!(
        fetch_offsets(&mut c, 7, "simple", "t", 3).await,
        vec![7, 8, 9]
    );
    assert_eq!(
        fetch_offsets(&mut c, 8, "managed", "t", 3).await,
        vec![-1, 101, -1]
    );
    assert_eq!(fetch_offsets(&mut c, 8, "doomed", "t", 1).await, vec![-1]);
    let d = describe(&mut c, 5, "managed").await;
    assert_eq!(d.group_state.as_str(), "Stable");
    assert_eq!(d.members[0].member_id.as_str(), m);
    assert_eq!(&d.members[0].member_assignment[..], b"ASSIGN");
    // The member carries on with its generation after the restart.
    assert_eq!(
        c.send_version(&heartbeat_req("managed", &m, 1), 4)
            .await
            .unwrap()
            .error_code,
        0
    );
    let groups: Vec<String> = c
        .send_version(&ListGroupsRequest::default(), 4)
        .await
        .unwrap()
        .groups
        .iter()
        .map(|g| g.group_id.0.to_string())
        .collect();
    assert_eq!(groups, vec!["managed".to_string(), "simple".to_string()]);
}

/// A JoinGroup waiting when the broker shuts down is answered NOT_COORDINATOR (16), so the
/// client looks for the (next) coordinator instead of hanging.
#[tokio::test]
async fn waiting_join_gets_not_coordinator_on_shutdown() {
    let tb = TestBroker::start_with(|c| {
        // A long initial delay keeps the first JoinGroup waiting.
        c.group_initial_rebalance_delay_ms = 60_000;
        c.offsets_topic_num_partitions = 1;
    })
    .await;
    let mut c = tb.connect().await;
    let pending = tokio::spawn(async move {
        c.send_version(&join_req("g", "", 10_000, &["t"]), 3)
            .await
            .unwrap()
    });
    // Wait until the join is parked in the group (observable through DescribeGroups).
    let mut d = tb.connect().await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while describe(&mut d, 5, "g").await.group_state.as_str() != "PreparingRebalance" {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::task::yield_now().await;
    }
    drop(d);
    let _dir = tb.stop().await;
    let j = tokio::time::timeout(DEADLINE, pending)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(j.error_code, 16);
}

// ---- Real clients: confluent-kafka, kafka-python, kcat ----

mod real {
    use std::collections::{BTreeMap, BTreeSet, HashMap};
    use std::process::Stdio;
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::process::{Child, ChildStdin, Command};
    use tokio::sync::mpsc;

    use super::*;

    const PARTITIONS: i32 = 6;
    const WAIT: Duration = Duration::from_secs(40);

    /// One member process; killed by PID on drop (kill_on_drop).
    struct Member {
        child: Child,
        stdin: Option<ChildStdin>,
    }

    /// What the members printed, folded into state the test waits on.
    #[derive(Default)]
    struct Seen {
        assignment: HashMap<String, BTreeSet<i32>>,
        committed: BTreeMap<i32, i64>,
        /// (partition, offset) → how many times consumed, and by whom.
        records: BTreeMap<(i32, i64), Vec<String>>,
        closed: BTreeSet<String>,
        log: Vec<String>,
    }

    impl Seen {
        fn apply(&mut self, line: &str) {
            self.log.push(line.to_string());
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.as_slice() {
                ["assigned", name, ps] => {
                    let set = if *ps == "-" {
                        BTreeSet::new()
                    } else {
                        ps.split(',').map(|p| p.parse().unwrap()).collect()
                    };
                    self.assignment.insert(name.to_string(), set);
                }
                ["revoked", name] => {
                    self.assignment.insert(name.to_string(), BTreeSet::new());
                }
                ["record", name, p, o, _value] => {
                    self.records
                        .entry((p.parse().unwrap(), o.parse().unwrap()))
                        .or_default()
                        .push(name.to_string());
                }
                ["committed", _, p, o] => {
                    let e = self.committed.entry(p.parse().unwrap()).or_default();
                    *e = (*e).max(o.parse().unwrap());
                }
                ["closed", name] => {
                    self.closed.insert(name.to_string());
                    self.assignment.remove(*name);
                }
                ["commit-failed", ..] => panic!("a commit failed: {line}\n{}", self.log.join("\n")),
                _ => {}
            }
        }

        /// Every partition owned by exactly one of `members`, each owning some.
        fn balanced_over(&self, members: &[&str]) -> bool {
            let mut all = Vec::new();
            for m in members {
                match self.assignment.get(*m) {
                    Some(s) if !s.is_empty() => all.extend(s.iter().copied()),
                    _ => return false,
                }
            }
            let others_empty = self
                .assignment
                .iter()
                .filter(|(k, _)| !members.contains(&k.as_str()))
                .all(|(_, s)| s.is_empty());
            all.sort();
            others_empty && all == (0..PARTITIONS).collect::<Vec<_>>()
        }
    }

    struct Group {
        tx: mpsc::UnboundedSender<String>,
        rx: mpsc::UnboundedReceiver<String>,
        seen: Seen,
    }

    impl Group {
        fn new() -> Group {
            let (tx, rx) = mpsc::unbounded_channel();
            Group {
                tx,
                rx,
                seen: Seen::default(),
            }
        }

        fn spawn(&self, args: &[&str]) -> Member {
            let mut child = Command::new("python3")
                .arg(repo_tests_dir().join("interop").join("group_member.py"))
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .expect("python3 (run tests/setup.sh)");
            let stdout = child.stdout.take().unwrap();
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            let stdin = child.stdin.take();
            Member { child, stdin }
        }

        /// Folds printed lines into `seen` until `done` holds (bounded by WAIT).
        async fn wait(&mut self, what: &str, done: impl Fn(&Seen) -> bool) {
            let deadline = tokio::time::Instant::now() + WAIT;
            while !done(&self.seen) {
                match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Ok(Some(line)) => self.seen.apply(&line),
                    _ => panic!(
                        "timed out waiting for {what}; members printed:\n{}",
                        self.seen.log.join("\n")
                    ),
                }
            }
        }
    }

    async fn produce_round(tb: &TestBroker, topic: &str, round: usize) {
        let mut c = tb.connect().await;
        for p in 0..PARTITIONS {
            let values: Vec<String> = (0..10).map(|i| format!("r{round}-p{p}-{i}")).collect();
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            let (code, _) = produce(&mut c, topic, p, batch(&refs, now())).await;
            assert_eq!(code, 0);
        }
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    }

    fn config(c: &mut gregor_broker::BrokerConfig) {
        c.group_initial_rebalance_delay_ms = 500;
        c.group_min_session_timeout_ms = 1000;
        c.offsets_topic_num_partitions = 5;
    }

    /// Three members on a 6-partition topic; one leaves cleanly, one is SIGKILLed; the
    /// survivors take over from the last committed offsets; nothing is lost or redelivered;
    /// after a broker restart the committed offsets are still there.
    async fn three_members(client: &str) {
        let tb = TestBroker::start_with(config).await;
        tb.create_topic("t", PARTITIONS);
        let group = format!("{client}-group");
        let mut g = Group::new();
        let args = |name: &'static str| [client, tb.addr.as_str(), "t", group.as_str(), name];
        let mut a = g.spawn(&args("a"));
        let mut b = g.spawn(&args("b"));
        let _c = g.spawn(&args("c"));
        g.wait("a balanced group of a, b, c", |s| {
            s.balanced_over(&["a", "b", "c"])
        })
        .await;
        produce_round(&tb, "t", 0).await;
        g.wait("round 0 committed", |s| {
            s.committed.values().filter(|o| **o == 10).count() == PARTITIONS as usize
        })
        .await;

        // a leaves cleanly (LeaveGroup on close): b and c take over at once.
        a.stdin
            .as_mut()
            .unwrap()
            .write_all(b"close\n")
            .await
            .unwrap();
        g.wait("a closed", |s| s.closed.contains("a")).await;
        assert!(
            tokio::time::timeout(WAIT, a.child.wait())
                .await
                .unwrap()
                .unwrap()
                .success()
        );
        g.wait("b and c own everything", |s| s.balanced_over(&["b", "c"]))
            .await;
        produce_round(&tb, "t", 1).await;
        g.wait("round 1 committed", |s| {
            s.committed.values().filter(|o| **o == 20).count() == PARTITIONS as usize
        })
        .await;

        // b crashes: its session expires and c takes over from b's last commits.
        let pid = b.child.id().unwrap();
        b.child.start_kill().unwrap();
        tokio::time::timeout(WAIT, b.child.wait())
            .await
            .unwrap()
            .unwrap();
        g.seen.assignment.remove("b");
        tracing::info!(pid, "killed member b");
        g.wait("c owns everything", |s| s.balanced_over(&["c"]))
            .await;
        produce_round(&tb, "t", 2).await;
        g.wait("round 2 committed", |s| {
            s.committed.values().filter(|o| **o == 30).count() == PARTITIONS as usize
        })
        .await;

        // Every record consumed exactly once: handovers resumed at the committed offsets.
        for p in 0..PARTITIONS {
            for o in 0..30 {
                let by = g.seen.records.get(&(p, o));
                assert_eq!(
                    by.map(Vec::len),
                    Some(1),
                    "{p}@{o} consumed by {by:?}\n{}",
                    g.seen.log.join("\n")
                );
            }
        }
        let mut conn = tb.connect().await;
        assert_eq!(
            fetch_offsets(&mut conn, 8, &group, "t", PARTITIONS).await,
            vec![30; 6]
        );
        drop(conn);
        drop(_c);
        let dir = tb.stop().await;
        let tb = TestBroker::start_in(dir, config).await;
        let mut conn = tb.connect().await;
        assert_eq!(
            fetch_offsets(&mut conn, 8, &group, "t", PARTITIONS).await,
            vec![30; 6]
        );
    }

    #[tokio::test]
    async fn confluent_kafka_three_members_share_and_take_over() {
        three_members("ck").await;
    }

    #[tokio::test]
    async fn kafka_python_three_members_share_and_take_over() {
        three_members("kp").await;
    }

    /// kcat's balanced consumer (`-G`): consumes everything, commits on exit, and the next run
    /// resumes after the committed offsets.
    #[tokio::test]
    async fn kcat_group_consumer_commits_and_resumes() {
        let tb = TestBroker::start_with(|c| {
            c.group_initial_rebalance_delay_ms = 0;
            c.offsets_topic_num_partitions = 5;
        })
        .await;
        tb.create_topic("k", 3);
        let mut c = tb.connect().await;
        for p in 0..3 {
            let vals: Vec<String> = (0..4).map(|i| format!("a-{p}-{i}")).collect();
            let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
            assert_eq!(produce(&mut c, "k", p, batch(&refs, now())).await.0, 0);
        }
        let run = |count: &'static str| {
            let addr = tb.addr.clone();
            async move {
                run_with_deadline(
                    "kcat",
                    &[
                        "-b",
                        &addr,
                        "-G",
                        "kgroup",
                        "-X",
                        "auto.offset.reset=earliest",
                        "-c",
                        count,
                        "-f",
                        "%s\n",
                        "-q",
                        "k",
                    ],
                    None,
                    Duration::from_secs(30),
                )
                .await
            }
        };
        let out = run("12").await;
        assert!(out.status.success(), "{}", out.stderr);
        let mut got: Vec<&str> = out.stdout.lines().collect();
        got.sort();
        assert_eq!(got.len(), 12, "{}", out.stdout);
        assert_eq!(
            fetch_offsets(&mut c, 7, "kgroup", "k", 3).await,
            vec![4, 4, 4]
        );
        assert_eq!(
            produce(&mut c, "k", 1, batch(&["b-1-0", "b-1-1"], now()))
                .await
                .0,
            0
        );
        let out = run("2").await;
        assert!(out.status.success(), "{}", out.stderr);
        assert_eq!(
            out.stdout.lines().collect::<Vec<_>>(),
            vec!["b-1-0", "b-1-1"]
        );
        assert_eq!(
            fetch_offsets(&mut c, 7, "kgroup", "k", 3).await,
            vec![4, 6, 4]
        );
    }
}

/// The coordinator serves a group only while it leads the group's `__consumer_offsets`
/// partition: once the assignment moves the leadership away every group API answers
/// NOT_COORDINATOR (16); when leadership comes back (a new leader epoch) the partition is
/// reloaded from its log (COORDINATOR_LOAD_IN_PROGRESS (14) until then) with every commit.
#[tokio::test]
async fn ownership_follows_the_offsets_partition_leadership() {
    use gregor_broker::cluster::PartitionAssignment;
    let tb = start().await;
    tb.create_topic("t", 3);
    let mut c = tb.connect().await;
    let resp = c
        .send_version(&commit_req("owned", "", -1, "t", &[(0, 5), (2, 6)]), 8)
        .await
        .unwrap();
    assert_eq!(commit_codes(&resp), vec![0, 0]);
    let node = tb.broker.config().node_id;
    let other = node + 1;
    let p = partition_for("owned", 5);
    let fetch_code = async |c: &mut Connection| {
        let req = OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(gid("owned"))
                .with_member_epoch(-1)
                .with_topics(None),
        ]);
        c.send_version(&req, 8).await.unwrap().groups[0].error_code
    };

    // Another broker leads the partition now.
    tb.broker
        .apply_assignment(
            "__consumer_offsets",
            p,
            PartitionAssignment {
                leader: Some(other),
                leader_epoch: 1,
                partition_epoch: 1,
                replicas: vec![node, other],
                isr: vec![node, other],
                elr: vec![],
            },
        )
        .unwrap();
    assert_eq!(fetch_code(&mut c).await, 16);
    let resp = c
        .send_version(&commit_req("owned", "", -1, "t", &[(0, 50)]), 8)
        .await
        .unwrap();
    assert_eq!(commit_codes(&resp), vec![16]);
    let join = JoinGroupRequest::default()
        .with_group_id(gid("owned"))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"));
    assert_eq!(c.send_version(&join, 9).await.unwrap().error_code, 16);
    // A group of another offsets partition is still served.
    let other_group = (0..)
        .map(|i| format!("g{i}"))
        .find(|g| partition_for(g, 5) != p)
        .unwrap();
    let resp = c
        .send_version(&commit_req(&other_group, "", -1, "t", &[(1, 3)]), 8)
        .await
        .unwrap();
    assert_eq!(commit_codes(&resp), vec![0]);

    // Leadership comes back in a new epoch: the partition is reloaded from its log.
    tb.broker
        .apply_assignment(
            "__consumer_offsets",
            p,
            PartitionAssignment {
                leader: Some(node),
                leader_epoch: 2,
                partition_epoch: 2,
                replicas: vec![node],
                isr: vec![node],
                elr: vec![],
            },
        )
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match fetch_code(&mut c).await {
            0 => break,
            14 => assert!(std::time::Instant::now() < until, "still loading"),
            other => panic!("unexpected error code {other} while reloading"),
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        fetch_offsets(&mut c, 8, "owned", "t", 3).await,
        vec![5, -1, 6]
    );
}

/// A commit is acknowledged only once the offsets partition's HW passed it: with a follower in
/// the ISR that never fetches, the commit times out after `offsets.commit.timeout.ms` with
/// REQUEST_TIMED_OUT (7) and the committed offset stays the previous one.
#[tokio::test]
async fn offset_commit_waits_for_replication_and_times_out() {
    use gregor_broker::cluster::PartitionAssignment;
    let tb = TestBroker::start_with(|c| {
        c.group_initial_rebalance_delay_ms = 0;
        c.group_min_session_timeout_ms = 500;
        c.offsets_topic_num_partitions = 5;
        c.offsets_commit_timeout_ms = 300;
    })
    .await;
    tb.create_topic("t", 1);
    let mut c = tb.connect().await;
    let resp = c
        .send_version(&commit_req("slow", "", -1, "t", &[(0, 5)]), 8)
        .await
        .unwrap();
    assert_eq!(commit_codes(&resp), vec![0]);
    let node = tb.broker.config().node_id;
    // Still the leader (new epoch), now with a follower in the ISR that never fetches.
    tb.broker
        .apply_assignment(
            "__consumer_offsets",
            partition_for("slow", 5),
            PartitionAssignment {
                leader: Some(node),
                leader_epoch: 1,
                partition_epoch: 1,
                replicas: vec![node, node + 1],
                isr: vec![node, node + 1],
                elr: vec![],
            },
        )
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let code = loop {
        let resp = c
            .send_version(&commit_req("slow", "", -1, "t", &[(0, 9)]), 8)
            .await
            .unwrap();
        match commit_codes(&resp)[0] {
            14 => assert!(std::time::Instant::now() < until, "still loading"),
            code => break code,
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(code, 7, "REQUEST_TIMED_OUT");
    assert_eq!(fetch_offsets(&mut c, 8, "slow", "t", 1).await, vec![5]);
}

/// Group-metadata and tombstone writes wait for the offsets partition's HW as commits do. With
/// a follower in the ISR that never fetches, after `offsets.commit.timeout.ms`: the SyncGroup
/// that completes a rebalance is answered COORDINATOR_NOT_AVAILABLE (15) and the group
/// rebalances (Heartbeat: REBALANCE_IN_PROGRESS, 27); DeleteGroups and OffsetDelete answer 15
/// (Kafka's `appendGroupMetadataErrorToResponseError` / `handleOperationException` mapping of
/// REQUEST_TIMED_OUT).
#[tokio::test]
async fn group_metadata_and_tombstone_writes_wait_for_replication() {
    use gregor_broker::cluster::PartitionAssignment;
    const TIMEOUT_MS: i32 = 300;
    let tb = TestBroker::start_with(|c| {
        c.group_initial_rebalance_delay_ms = 0;
        c.group_min_session_timeout_ms = 500;
        c.offsets_topic_num_partitions = 5;
        c.offsets_commit_timeout_ms = TIMEOUT_MS;
    })
    .await;
    tb.create_topic("t", 1);
    let mut c = tb.connect().await;
    // Three groups of one offsets partition: one with a member, one to delete, one whose
    // offsets are deleted; the last two have a commit from before the follower appeared.
    let p = partition_for("m", 5);
    let same: Vec<String> = (0..)
        .map(|i| format!("g{i}"))
        .filter(|g| partition_for(g, 5) == p)
        .take(2)
        .collect();
    let (deleted, trimmed) = (same[0].as_str(), same[1].as_str());
    for g in [deleted, trimmed] {
        let resp = c
            .send_version(&commit_req(g, "", -1, "t", &[(0, 5)]), 8)
            .await
            .unwrap();
        assert_eq!(commit_codes(&resp), vec![0]);
    }
    let node = tb.broker.config().node_id;
    tb.broker
        .apply_assignment(
            "__consumer_offsets",
            p,
            PartitionAssignment {
                leader: Some(node),
                leader_epoch: 1,
                partition_epoch: 1,
                replicas: vec![node, node + 1],
                isr: vec![node, node + 1],
                elr: vec![],
            },
        )
        .unwrap();
    // The new leader epoch reloads the partition (COORDINATOR_LOAD_IN_PROGRESS meanwhile).
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let req = OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(gid("m"))
                .with_member_epoch(-1)
                .with_topics(None),
        ]);
        match c.send_version(&req, 8).await.unwrap().groups[0].error_code {
            0 => break,
            14 => assert!(std::time::Instant::now() < until, "still loading"),
            other => panic!("unexpected error code {other} while reloading"),
        }
        tokio::task::yield_now().await;
    }

    // The join completes without a write; the leader's SyncGroup stores the assignment.
    let joined = join_new(&mut c, 5, "m", &["t"]).await;
    assert_eq!(joined.error_code, 0);
    let member = joined.member_id.to_string();
    let started = std::time::Instant::now();
    let sync = c
        .send_version(
            &sync_req("m", &member, joined.generation_id, &[(&member, b"a")]),
            3,
        )
        .await
        .unwrap();
    assert_eq!(sync.error_code, 15, "COORDINATOR_NOT_AVAILABLE");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(TIMEOUT_MS as u64),
        "answered after {:?}, before the write could time out",
        started.elapsed()
    );
    assert!(sync.assignment.is_empty());
    let hb = c
        .send_version(&heartbeat_req("m", &member, joined.generation_id), 3)
        .await
        .unwrap();
    assert_eq!(
        hb.error_code, 27,
        "REBALANCE_IN_PROGRESS: the group rebalances"
    );

    let req = DeleteGroupsRequest::default().with_groups_names(vec![gid(deleted)]);
    let resp = c.send_version(&req, 2).await.unwrap();
    assert_eq!(resp.results[0].error_code, 15, "DeleteGroups");
    let req = OffsetDeleteRequest::default()
        .with_group_id(gid(trimmed))
        .with_topics(vec![
            OffsetDeleteRequestTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(0),
                ]),
        ]);
    let resp = c.send_version(&req, 0).await.unwrap();
    assert_eq!(resp.error_code, 15, "OffsetDelete");
}
