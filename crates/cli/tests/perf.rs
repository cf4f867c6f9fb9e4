//! `gregor perf produce|consume` against a real server: counts, throughput, latency fields, and
//! the log end offsets the producer leaves behind.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use common::{Server, gregor, stderr, stdout};
use gregor_client::Client;
use serde_json::Value;

fn json(o: &std::process::Output) -> Value {
    assert!(o.status.success(), "stderr: {}", stderr(o));
    serde_json::from_str(stdout(o).trim()).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[test]
fn perf_produce_then_consume() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let b = server.bootstrap.as_str();

    let p = json(&gregor(
        &[
            "perf",
            "produce",
            "--topic",
            "p",
            "--num-records",
            "2000",
            "--record-size",
            "100",
            "--acks",
            "all",
            "--partitions",
            "3",
            "--json",
        ],
        b,
        None,
    ));
    assert_eq!(p["records"], 2000, "{p}");
    assert_eq!(p["partitions"], 3, "{p}");
    assert!(p["records_per_sec"].as_f64().unwrap() > 0.0, "{p}");
    assert!(p["mb_per_sec"].as_f64().unwrap() > 0.0, "{p}");
    let p50 = p["latency_p50_ms"].as_f64().unwrap();
    let p99 = p["latency_p99_ms"].as_f64().unwrap();
    let max = p["latency_max_ms"].as_f64().unwrap();
    assert!(p50 >= 0.0 && p99 >= p50 && max >= p99, "{p}");

    let c = json(&gregor(
        &[
            "perf",
            "consume",
            "--topic",
            "p",
            "--num-records",
            "2000",
            "--json",
        ],
        b,
        None,
    ));
    assert_eq!(c["records"], 2000, "{c}");
    assert_eq!(c["bytes"], 2000 * 100, "{c}");

    // The log end offsets, read independently of the perf tool.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ends: Vec<i64> = rt.block_on(async {
        let mut client = Client::connect(b).await.unwrap();
        assert_eq!(client.partition_count("p").await.unwrap(), 3);
        let mut ends = Vec::new();
        for part in 0..3 {
            ends.push(client.list_offset("p", part, -1).await.unwrap().0);
        }
        ends
    });
    assert_eq!(ends.iter().sum::<i64>(), 2000, "{ends:?}");
    assert!(
        ends.iter().all(|&e| e > 0),
        "round-robin leaves every partition some: {ends:?}"
    );
}

#[test]
fn perf_produce_throttled_acks0_text() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let o = gregor(
        &[
            "perf",
            "produce",
            "--topic",
            "t",
            "--num-records",
            "200",
            "--record-size",
            "10",
            "--acks",
            "0",
            "--throughput",
            "1000",
            "--producers",
            "2",
            "--compression",
            "lz4",
        ],
        &server.bootstrap,
        None,
    );
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("200 records sent"), "{out}");
    assert!(out.contains("latency n/a"), "{out}");
}
