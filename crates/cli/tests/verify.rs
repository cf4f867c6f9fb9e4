//! `gregor verify` against one real `gregor server`: acks=all without faults must come out valid
//! with every acknowledged record read back, and the results JSON must say so.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
mod common;

use common::{Server, gregor, stderr, stdout};

#[test]
fn acks_all_without_faults_is_valid_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let b = server.bootstrap.clone();
    let out = gregor(
        &["topic", "create", "checked", "--partitions", "3"],
        &b,
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let json = dir.path().join("results.json");
    let history = dir.path().join("history.jsonl");
    let out = gregor(
        &[
            "verify",
            "--topic",
            "checked",
            "--acks",
            "all",
            "--producers",
            "2",
            "--rate",
            "100",
            "--duration",
            "3s",
            "--json",
            json.to_str().unwrap(),
            "--history",
            history.to_str().unwrap(),
        ],
        &b,
        None,
    );
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("VALID"), "{}", stdout(&out));

    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let r = &doc["results"];
    assert_eq!(r["valid"], true);
    assert_eq!(r["acked_lost"], 0);
    assert_eq!(r["has_final_read"], true);
    let ok = r["counts"]["ok"].as_u64().unwrap();
    assert!(ok >= 100, "only {ok} sends acknowledged in 3 s");
    // Every acknowledged record was in the final read (nothing else was written).
    assert_eq!(r["counts"]["final_read"].as_u64().unwrap(), ok);
    assert_eq!(doc["run"]["acks"], "all");
    assert!(std::fs::metadata(&history).unwrap().len() > 0);

    // A topic that does not exist is refused, not auto-created.
    let out = gregor(
        &["verify", "--topic", "missing", "--duration", "1s"],
        &b,
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("create it first"), "{}", stderr(&out));
}
