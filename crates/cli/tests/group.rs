//! Drives `gregor group list|describe|delete|reset-offsets` against a `gregor server` process,
//! with a raw gregor-client member to show that groups with active members are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
mod common;

use common::{Server, gregor, stderr, stdout};

use bytes::{BufMut, BytesMut};
use gregor_client::Connection;
use gregor_client::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use gregor_client::kafka_protocol::messages::*;
use gregor_client::kafka_protocol::protocol::{Encodable, StrBytes};

/// Non-empty rows of `gregor group describe`'s partition table: (partition, current, end, lag).
fn offset_rows(out: &str, topic: &str) -> Vec<(String, String, String, String)> {
    out.lines()
        .filter(|l| l.starts_with(topic))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[1].into(), f[2].into(), f[3].into(), f[4].into())
        })
        .collect()
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// Joins group `g` as a consumer of `t` and takes partitions 0 and 1; returns the member id
/// and the connection (the member stays until it leaves or its session expires).
async fn join_member(bootstrap: &str) -> (Connection, String) {
    let mut c = Connection::connect(bootstrap).await.unwrap();
    let find = FindCoordinatorRequest::default().with_key(s("g"));
    assert_eq!(c.send_version(&find, 3).await.unwrap().error_code, 0);
    let mut sub = BytesMut::new();
    sub.put_i16(0);
    ConsumerProtocolSubscription::default()
        .with_topics(vec![s("t")])
        .encode(&mut sub, 0)
        .unwrap();
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(sub.freeze()),
        ]);
    let j = c.send_version(&join, 3).await.unwrap();
    assert_eq!(j.error_code, 0);
    let member = j.member_id.to_string();
    let mut asg = BytesMut::new();
    asg.put_i16(0);
    ConsumerProtocolAssignment::default()
        .with_assigned_partitions(vec![
            consumer_protocol_assignment::TopicPartition::default()
                .with_topic(TopicName(s("t")))
                .with_partitions(vec![0, 1]),
        ])
        .encode(&mut asg, 0)
        .unwrap();
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_member_id(s(&member))
        .with_generation_id(j.generation_id)
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(s(&member))
                .with_assignment(asg.freeze()),
        ]);
    assert_eq!(c.send_version(&sync, 3).await.unwrap().error_code, 0);
    (c, member)
}

#[test]
fn group_commands() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--override", "group.initial.rebalance.delay.ms=0"],
    );
    let b = server.bootstrap.clone();
    let ok = |args: &[&str], stdin: Option<&str>| {
        let o = gregor(args, &b, stdin);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    ok(&["topic", "create", "t", "--partitions", "2"], None);
    ok(&["produce", "t", "--partition", "0"], Some("a\nb\nc\n"));
    ok(&["produce", "t", "--partition", "1"], Some("d\ne\n"));

    // An empty group: offsets can be reset every way, and describe shows them with lag.
    let out = ok(
        &["group", "reset-offsets", "g", "--topic", "t", "--to-latest"],
        None,
    );
    assert!(out.contains("NEW-OFFSET"), "{out}");
    let out = ok(&["group", "describe", "g"], None);
    assert!(out.contains("state Empty"), "{out}");
    assert_eq!(
        offset_rows(&out, "t "),
        vec![
            ("0".into(), "3".into(), "3".into(), "0".into()),
            ("1".into(), "2".into(), "2".into(), "0".into())
        ]
    );
    ok(
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-earliest",
        ],
        None,
    );
    let out = ok(&["group", "describe", "g"], None);
    let lags: Vec<String> = offset_rows(&out, "t ").into_iter().map(|r| r.3).collect();
    assert_eq!(lags, vec!["3", "2"], "{out}");
    ok(
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-offset",
            "1",
        ],
        None,
    );
    let out = ok(&["group", "describe", "g"], None);
    let current: Vec<String> = offset_rows(&out, "t ").into_iter().map(|r| r.1).collect();
    assert_eq!(current, vec!["1", "1"], "{out}");
    let out = ok(&["group", "list"], None);
    assert!(
        out.lines()
            .any(|l| l.starts_with("g ") && l.contains("Empty")),
        "{out}"
    );

    // With an active member: describe shows it and its assignment; reset and delete refuse.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut conn, member) = rt.block_on(join_member(&b));
    let out = ok(&["group", "describe", "g"], None);
    assert!(out.contains("state Stable"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&member) && l.contains("t:0,1")),
        "{out}"
    );
    assert!(
        out.lines()
            .filter(|l| l.starts_with("t "))
            .all(|l| l.ends_with(&member)),
        "{out}"
    );
    let refused = gregor(
        &["group", "reset-offsets", "g", "--topic", "t", "--to-latest"],
        &b,
        None,
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("active members"),
        "{}",
        stderr(&refused)
    );
    let refused = gregor(&["group", "delete", "g"], &b, None);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("NON_EMPTY_GROUP"),
        "{}",
        stderr(&refused)
    );
    // Once the member leaves, the group can be deleted; then it is gone.
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_member_id(s(&member));
    assert_eq!(
        rt.block_on(conn.send_version(&leave, 2))
            .unwrap()
            .error_code,
        0
    );
    ok(&["group", "delete", "g"], None);
    let out = ok(&["group", "list"], None);
    assert!(!out.lines().any(|l| l.starts_with("g ")), "{out}");
    let missing = gregor(&["group", "delete", "g"], &b, None);
    assert!(
        stderr(&missing).contains("GROUP_ID_NOT_FOUND"),
        "{}",
        stderr(&missing)
    );
}
