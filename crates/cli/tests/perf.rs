//! `gregor perf produce|consume` against a real server: counts, throughput, latency fields, and
//! the log end offsets the producer leaves behind; `gregor perf disk` on a temp dir.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use common::{GREGOR, Server, gregor, stderr, stdout};
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

#[test]
fn perf_produce_pipelined_and_throttled_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let b = server.bootstrap.as_str();
    // 3,000 records at 6,000/s with 5 ms linger: ≈ 0.5 s, about 100 batches of ≈ 31 records,
    // up to 8 requests in flight on the one connection.
    let p = json(&gregor(
        &[
            "perf",
            "produce",
            "--topic",
            "q",
            "--num-records",
            "3000",
            "--record-size",
            "1024",
            "--acks",
            "1",
            "--partitions",
            "4",
            "--throughput",
            "6000",
            "--max-in-flight",
            "8",
            "--batch-size",
            "1000000",
            "--json",
        ],
        b,
        None,
    ));
    assert_eq!(p["records"], 3000, "{p}");
    assert_eq!(p["max_in_flight"], 8, "{p}");
    let batches = p["batches"].as_u64().unwrap();
    // Linger groups the records due within 5 ms (31 at 6,000/s) into one batch.
    assert!((90..=110).contains(&batches), "{p}");
    // Throttled: 3,000 records at 6,000/s cannot take less than the schedule (≈ 0.5 s).
    assert!(p["elapsed_ms"].as_f64().unwrap() >= 490.0, "{p}");
    // Latency counts from the record's due time, so it includes up to one linger.
    assert!(p["latency_max_ms"].as_f64().unwrap() >= 5.0, "{p}");

    let c = json(&gregor(
        &[
            "perf",
            "consume",
            "--topic",
            "q",
            "--num-records",
            "3000",
            "--json",
        ],
        b,
        None,
    ));
    assert_eq!(c["records"], 3000, "{c}");
    assert_eq!(c["bytes"], 3000 * 1024, "{c}");
}

#[test]
fn perf_disk_writes_the_bytes_and_removes_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(GREGOR)
        .args([
            "perf",
            "disk",
            "--bytes",
            "3000000",
            "--block-size",
            "65536",
        ])
        .args(["--fsync", "--json", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let d = json(&o);
    assert_eq!(d["bytes"], 3_000_000, "{d}");
    assert_eq!(d["fsync"], true, "{d}");
    assert!(d["mb_per_sec"].as_f64().unwrap() > 0.0, "{d}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "file left behind"
    );
    // Three copies (the bytes an RF=3 cluster writes): three times the bytes, no file left.
    let o = std::process::Command::new(GREGOR)
        .args([
            "perf", "disk", "--bytes", "1000000", "--copies", "3", "--json", "--dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let d = json(&o);
    assert_eq!(
        (d["bytes"].as_u64(), d["copies"].as_u64()),
        (Some(3_000_000), Some(3)),
        "{d}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "files left behind"
    );
}
