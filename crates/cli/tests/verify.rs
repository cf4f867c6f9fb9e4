//! `gregor verify` and gregor-client's idempotent producer against real `gregor` processes:
//! * acks=all without faults on one server comes out valid with every acknowledged record read
//!   back, and the results JSON says so;
//! * an idempotent producer whose batch reached the log without the answer reaching it (the
//!   batch is delivered once over another connection, as a lost response would leave it) re-sends
//!   the same batch and gets the original offset, with each record once in the log; a sequence
//!   gap gets OUT_OF_ORDER_SEQUENCE_NUMBER (45) and a new producer session; `gregor produce
//!   --idempotent` works and refuses acks other than all;
//! * `gregor verify --idempotent --acks all` with three leader kills on a `gregor dev` cluster is
//!   valid with no duplicate (the run is checked as idempotent, so a duplicate would fail it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking
mod common;
mod ports;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{DEADLINE, GREGOR, Server, gregor, stderr, stdout};
use gregor_client::idempotent::stamp;
use gregor_client::records::{ProducerRecord, decode_records};
use gregor_client::{Client, IdempotentProducer};

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

fn rec(value: &str) -> ProducerRecord {
    ProducerRecord {
        value: Some(Bytes::from(value.to_string())),
        timestamp: 1_700_000_000_000,
        ..ProducerRecord::default()
    }
}

/// Every (offset, value) of partition 0 of `topic` up to its high watermark, in offset order
/// (a fetch may return fewer batches than there are: read on from the last offset).
async fn values(client: &mut Client, topic: &str) -> Vec<(i64, String)> {
    let mut out: Vec<(i64, String)> = Vec::new();
    loop {
        let from = out.last().map_or(0, |(o, _)| o + 1);
        let f = client.fetch(topic, 0, from, 100, 1 << 20).await.unwrap();
        for r in decode_records(&f.records).unwrap() {
            if r.offset >= from {
                let v = r.value.unwrap();
                out.push((r.offset, String::from_utf8_lossy(&v).into_owned()));
            }
        }
        let end = out.last().map_or(0, |(o, _)| o + 1);
        if end >= f.high_watermark {
            return out;
        }
        assert!(
            end > from,
            "no progress at offset {from} of {}",
            f.high_watermark
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_resend_gets_its_original_offset_and_no_second_copy() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let b = server.bootstrap.clone();
    let out = gregor(&["topic", "create", "idem", "--partitions", "1"], &b, None);
    assert!(out.status.success(), "{}", stderr(&out));

    // Kafka refuses idempotence without acks=all; so does the client.
    for acks in [0, 1] {
        let e = IdempotentProducer::new(Client::connect(&b).await.unwrap(), acks).unwrap_err();
        assert!(e.to_string().contains("acks=all"), "{e}");
    }
    let mut p = IdempotentProducer::new(Client::connect(&b).await.unwrap(), -1)
        .unwrap()
        .with_delivery_timeout(DEADLINE);
    assert_eq!(
        p.producer_id(),
        None,
        "the session starts with the first send"
    );
    assert_eq!(p.send("idem", 0, &[rec("a")]).await.unwrap().base_offset, 0);
    let (pid, epoch) = p.producer_id().unwrap();
    assert!(pid >= 0);
    assert_eq!(p.sessions(), 1);

    // A batch reaches the log but its answer never reaches the producer: here it is delivered
    // once over another connection, exactly as the lost first attempt would have left it.
    let batch = p.prepare("idem", 0, &[rec("b"), rec("c")]).await.unwrap();
    assert_eq!(
        (batch.producer_id(), batch.epoch(), batch.base_sequence()),
        (pid, epoch, 1)
    );
    let mut other = Client::connect(&b).await.unwrap();
    let first = other
        .produce("idem", 0, batch.bytes().clone(), -1, 30_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.base_offset, 1);
    // The producer's retry (the same batch, the same sequence) is answered with the original
    // offset however often it comes, and appends nothing.
    for _ in 0..2 {
        assert_eq!(p.deliver(&batch).await.unwrap().base_offset, 1);
    }
    // The sequence advanced once, by the batch's two records.
    let next = p.prepare("idem", 0, &[rec("d")]).await.unwrap();
    assert_eq!(next.base_sequence(), 3);
    assert_eq!(p.deliver(&next).await.unwrap().base_offset, 3);
    let log = values(&mut other, "idem").await;
    assert_eq!(
        log,
        [(0, "a"), (1, "b"), (2, "c"), (3, "d")].map(|(o, v)| (o, v.to_string()))
    );

    // Someone else wrote sequences 4..=9 with this producer id: the producer's own next batch
    // (sequence 4) is neither the next sequence nor among the last five batches, so it fails
    // with OUT_OF_ORDER_SEQUENCE_NUMBER and the session ends.
    let template = p.prepare("idem", 0, &[rec("x")]).await.unwrap();
    assert_eq!(template.base_sequence(), 4);
    for seq in 4..=9 {
        let bytes = stamp(template.bytes(), pid, epoch, seq).unwrap();
        other.produce("idem", 0, bytes, -1, 30_000).await.unwrap();
    }
    let e = p.send("idem", 0, &[rec("e")]).await.unwrap_err();
    assert_eq!(e.kafka_code(), Some(45), "{e}");
    assert_eq!(
        p.producer_id(),
        None,
        "a fatal sequence error ends the session"
    );
    // The next send starts a new session: a new producer id, sequences from 0.
    assert_eq!(
        p.send("idem", 0, &[rec("f")]).await.unwrap().base_offset,
        10
    );
    let (pid2, _) = p.producer_id().unwrap();
    assert_ne!(pid2, pid);
    assert_eq!(p.sessions(), 2);
    let log = values(&mut other, "idem").await;
    assert_eq!(log.len(), 11);
    assert_eq!(log.iter().filter(|(_, v)| v == "e").count(), 0);

    // gregor produce --idempotent: acks=all only, and the records arrive once each.
    let out = gregor(
        &["produce", "idem", "--idempotent", "--acks", "1"],
        &b,
        Some("y\n"),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("acks=all"), "{}", stderr(&out));
    let out = gregor(
        &["produce", "idem", "--idempotent", "--partition", "0"],
        &b,
        Some("p1\np2\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let log = values(&mut other, "idem").await;
    let tail: Vec<&str> = log[11.min(log.len())..]
        .iter()
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(tail, ["p1", "p2"], "{log:?}");

    // gregor verify --idempotent needs acks=all too.
    let out = gregor(
        &["verify", "--topic", "idem", "--idempotent", "--acks", "1"],
        &b,
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("acks=all"), "{}", stderr(&out));
}

/// Processes killed by PID when the test ends, however it ends.
#[derive(Default)]
struct Pids(Vec<u32>);

impl Drop for Pids {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Runs `gregor ARGS` to completion within `bound`.
fn run_bounded(args: &[&str], bound: Duration) -> Output {
    let child = Command::new(GREGOR)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gregor");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(bound)
        .expect("gregor did not finish in time")
        .expect("output")
}

#[test]
fn idempotent_verify_through_leader_kills_on_gregor_dev_is_valid_without_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let (base, _reserved) = ports::dev_base().unwrap();
    let mut pids = Pids::default();
    let mut dev = Command::new(GREGOR)
        .args([
            "dev",
            "--nodes",
            "3",
            "--port",
            &base.to_string(),
            "--data-dir",
        ])
        .arg(&dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn gregor dev");
    pids.0.push(dev.id());
    let (tx, lines) = mpsc::channel();
    let out = dev.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // A thread owns the child and reaps it, however the test ends (the guard kills it by PID).
    let (exit_tx, exited) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = exit_tx.send(dev.wait());
    });
    // Everything up to the cluster line is what verify --dev reads from nodes.txt.
    let mut printed = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).expect("gregor dev did not start");
        if let Some(pid) = line
            .strip_prefix("node ")
            .and_then(|l| l.split_once(": pid "))
            .and_then(|(_, rest)| rest.split(',').next())
        {
            pids.0.push(pid.parse().unwrap());
        }
        let done = line.starts_with("cluster ");
        printed.push(line);
        if done {
            break;
        }
    }
    std::fs::write(dir.join("nodes.txt"), printed.join("\n") + "\n").unwrap();
    let bootstrap = printed
        .iter()
        .find_map(|l| l.strip_prefix("bootstrap: "))
        .expect("bootstrap line")
        .to_string();

    // Three replicas need three registered brokers: wait until the metadata lists them.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(mut c) = Client::connect(&bootstrap).await
                && let Ok(md) = c.metadata(Some(&[]), false).await
                && md.brokers.len() == 3
            {
                return;
            }
            assert!(Instant::now() < deadline, "three brokers never registered");
            // A poller's interval: the condition itself is re-checked.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let out = gregor(
        &[
            "topic",
            "create",
            "idem",
            "--partitions",
            "2",
            "--replication-factor",
            "3",
            "--config",
            "min.insync.replicas=2",
        ],
        &bootstrap,
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let json = tmp.path().join("results.json");
    let out = run_bounded(
        &[
            "verify",
            "--dev",
            dir.to_str().unwrap(),
            "--topic",
            "idem",
            "--idempotent",
            "--acks",
            "all",
            "--producers",
            "2",
            "--rate",
            "50",
            "--duration",
            "18s",
            "--faults",
            "leader-kill",
            "--fault-interval",
            "5s",
            "--seed",
            "3",
            "--json",
            json.to_str().unwrap(),
        ],
        Duration::from_secs(180),
    );
    let text = stdout(&out);
    println!("{text}");
    // Nodes restarted by verify outlive it: stop them by the PIDs it printed.
    for line in text.lines() {
        if let Some(pid) = line.split("(new pid ").nth(1) {
            pids.0.push(pid.trim_end_matches(')').parse().unwrap());
        }
    }
    assert!(
        out.status.success(),
        "stdout:\n{text}\nstderr:\n{}",
        stderr(&out)
    );
    assert!(text.contains("2 idempotent producers"), "{text}");
    assert_eq!(text.matches("fault: leader-kill node").count(), 3, "{text}");
    assert_eq!(text.matches("heal: leader-kill node").count(), 3, "{text}");
    assert!(text.contains("VALID: no invariant broken"), "{text}");
    assert!(!text.contains("allowed: not idempotent"), "{text}");

    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let r = &doc["results"];
    assert_eq!(r["idempotent"], true);
    assert_eq!(r["valid"], true);
    assert_eq!(r["duplicates"]["count"], 0);
    assert_eq!(r["nonmonotonic_sends"]["count"], 0);
    assert_eq!(r["acked_lost"], 0);
    assert_eq!(doc["run"]["faults"], 3);
    let ok = r["counts"]["ok"].as_u64().unwrap();
    assert!(ok >= 300, "only {ok} sends acknowledged in 18 s");

    // SIGTERM stops gregor dev and the nodes it runs; the guard stops the restarted ones.
    let term = Command::new("kill")
        .args(["-TERM", &pids.0[0].to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = exited
        .recv_timeout(DEADLINE)
        .expect("gregor dev did not stop");
    assert!(status.unwrap().success());
}
