//! Drives the real `gregor` binary: a server process, the admin, produce and consume commands,
//! Kafka-style errors with non-zero exit codes, dump-log, and a clean SIGTERM shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
mod common;

use std::process::Command;

use common::{GREGOR, Server, gregor, stderr, stdout};

#[test]
fn a_session_with_the_gregor_binary() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let b = server.bootstrap.clone();

    let out = gregor(
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=3600000",
        ],
        &b,
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let out = gregor(&["topic", "list"], &b, None);
    assert_eq!(stdout(&out).trim(), "orders");

    let out = gregor(&["topic", "describe", "--topic", "orders"], &b, None);
    let text = stdout(&out);
    assert!(text.contains("PartitionCount: 3"), "{text}");
    assert!(text.contains("Configs: retention.ms=3600000"), "{text}");
    assert_eq!(text.matches("Leader: ").count(), 3, "{text}");

    // Keyed records all land on murmur2(key) % 3, like Kafka's Java producer.
    let out = gregor(
        &["produce", "orders", "--acks", "all", "--key", "customer-7"],
        &b,
        Some("a\nb\nc\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let p = gregor_client::partitioner::partition_for_key(b"customer-7", 3).to_string();
    let out = gregor(
        &[
            "consume",
            "orders",
            "--partition",
            &p,
            "--offset",
            "0",
            "--max-messages",
            "3",
            "--print-key",
        ],
        &b,
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "customer-7\ta\ncustomer-7\tb\ncustomer-7\tc\n"
    );

    for acks in ["0", "1"] {
        let out = gregor(
            &["produce", "orders", "--acks", acks, "--partition", "0"],
            &b,
            Some(&format!("acks{acks}\n")),
        );
        assert!(out.status.success(), "acks={acks}: {}", stderr(&out));
    }
    // acks=0 has no answer: read back until both records are there.
    let out = gregor(
        &[
            "consume",
            "orders",
            "--partition",
            "0",
            "--from-beginning",
            "--max-messages",
            "2",
        ],
        &b,
        None,
    );
    let mut got: Vec<_> = stdout(&out).lines().map(String::from).collect();
    got.sort();
    assert_eq!(got, ["acks0", "acks1"]);

    // Errors read like Kafka's and exit non-zero.
    let out = gregor(&["topic", "create", "orders"], &b, None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("TOPIC_ALREADY_EXISTS (36)"),
        "{}",
        stderr(&out)
    );
    let out = gregor(
        &[
            "topic",
            "alter",
            "orders",
            "--config",
            "cleanup.policy=compact",
        ],
        &b,
        None,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("INVALID_CONFIG (40)"),
        "{}",
        stderr(&out)
    );
    let out = gregor(&["produce", "orders", "--acks", "2"], &b, Some("x\n"));
    assert!(!out.status.success());

    let out = gregor(&["topic", "alter", "orders", "--partitions", "4"], &b, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = gregor(&["topic", "delete", "orders"], &b, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = gregor(&["topic", "list"], &b, None);
    assert_eq!(stdout(&out).trim(), "");

    let out = gregor(
        &["produce", "keep", "--acks", "all", "--partition", "0"],
        &b,
        Some("one\ntwo\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // SIGTERM is a clean shutdown: exit 0 and a clean-shutdown marker.
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    let part = dir.path().join("keep-0");
    assert!(part.join("clean-shutdown").exists());

    let dump = Command::new(GREGOR)
        .args(["tools", "dump-log"])
        .arg(&part)
        .output()
        .unwrap();
    assert!(dump.status.success());
    let text = stdout(&dump);
    assert!(
        text.contains("base_offset=0 last_offset=1 count=2"),
        "{text}"
    );
    assert!(text.contains(" ok"), "{text}");
}

/// The default node (broker and sole controller voter) keeps its topics, data and cluster id
/// across a restart: the broker re-registers, replays the metadata stream and reopens the logs
/// it finds on disk instead of deleting them.
#[test]
fn the_default_node_keeps_topics_and_data_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let b = server.bootstrap.clone();
    let out = gregor(&["topic", "create", "kept", "--partitions", "2"], &b, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = gregor(
        &["produce", "kept", "--partition", "1"],
        &b,
        Some("one\ntwo\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let before = stdout(&gregor(&["topic", "describe", "kept"], &b, None));
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(dir.path().join("metadata").join("meta.properties").exists());

    let server = Server::start(dir.path(), &[]);
    let b = server.bootstrap.clone();
    let out = gregor(&["topic", "describe", "kept"], &b, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = stdout(&out);
    // Same topic id, same partitions, led by the restarted broker.
    assert_eq!(
        before.lines().next().unwrap(),
        after.lines().next().unwrap(),
        "{before}\n{after}"
    );
    assert_eq!(after.matches("Leader: 1\t").count(), 2, "{after}");
    let out = gregor(
        &[
            "consume",
            "kept",
            "--partition",
            "1",
            "--offset",
            "0",
            "--max-messages",
            "2",
        ],
        &b,
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().collect::<Vec<_>>(), vec!["one", "two"]);
}

/// A second process on a data directory that a live (here: frozen) process still owns refuses
/// to start instead of recovering and appending to the same segments. Its metadata directory is
/// its own, so only the data directory's lock can stop it.
#[test]
fn a_second_process_on_a_live_data_directory_refuses_to_start() {
    use std::process::Stdio;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let first = Server::start(&data, &[]);
    // Frozen like a paused container: alive, holding its files, doing nothing.
    let pid = first.pid().to_string();
    let signal = |sig: &str| {
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-STOP");
    let second = Command::new(GREGOR)
        .args([
            "server",
            "--listeners",
            "PLAINTEXT://127.0.0.1:0",
            "--log-dirs",
        ])
        .arg(&data)
        .arg("--metadata-log-dir")
        .arg(tmp.path().join("other-metadata"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (bounded) for its exit; a second process that serves is killed by PID and fails.
    let second_pid = second.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(second.wait_with_output());
    });
    let exited = rx.recv_timeout(common::DEADLINE).ok();
    if exited.is_none() {
        let _ = Command::new("kill").args(["-KILL", &second_pid]).status();
        let _ = rx.recv_timeout(common::DEADLINE);
    }
    signal("-CONT");
    let out = exited
        .expect("the second process kept running on a locked data directory")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("another gregor process is using this data directory"),
        "{err}"
    );
    // The owner is unharmed and stops cleanly.
    assert!(first.terminate().success());
}
