//! The admin HTTP port (`admin.listener`) of real `gregor server` processes, asked through
//! `gregor admin` (the compose healthcheck's client):
//!
//! * `/health` answers 200 as soon as the process runs; `/ready` answers 503 with a reason while
//!   the broker cannot register (its quorum has no majority yet) and 200 once the other voters
//!   are up and it registered, caught up and serves Kafka.
//! * `/metrics` on a 3-node cluster: after N acks=all records to an RF=3 partition the leader
//!   reports LEO = HW = N, every replica LEO = N, Produce request counts went up; after kill -9
//!   of a follower the leader reports the partition under-replicated with an ISR of 2.
//!
//! Every wait polls observable state (a stdout line, an HTTP answer) against a deadline; every
//! child is killed by PID when its owner drops.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod fault;
mod ports;

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use fault::{CLUSTER_ID, Cluster, DEADLINE, GREGOR, POLL_EVERY};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long a quorum and a broker registration may take to form (the controller's election
/// plus the broker's registration retries).
const FORM_DEADLINE: Duration = Duration::from_secs(60);

/// `gregor admin <endpoint> -a <addr>`: (exit success, stdout, stderr), bounded.
async fn admin(endpoint: &str, addr: &str) -> anyhow::Result<(bool, String, String)> {
    let out = tokio::time::timeout(
        DEADLINE,
        Command::new(GREGOR)
            .args([
                "admin",
                endpoint,
                "--admin-server",
                addr,
                "--timeout-ms",
                "3000",
            ])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("gregor admin timed out")??;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Polls `gregor admin <endpoint>` until `ok(success, body)` holds (bounded); returns the body.
async fn wait_admin(
    endpoint: &str,
    addr: &str,
    deadline: Duration,
    what: &str,
    ok: impl Fn(bool, &str) -> bool,
) -> anyhow::Result<String> {
    let until = Instant::now() + deadline;
    let mut tick = tokio::time::interval(POLL_EVERY);
    loop {
        tick.tick().await;
        let last = match admin(endpoint, addr).await {
            Ok((success, body, _)) if ok(success, &body) => return Ok(body),
            Ok(answer) => format!("{answer:?}"),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() > until {
            bail!("{addr}: no {what} within {deadline:?}; last answer {last}");
        }
    }
}

/// The value of the series `name{labels...}` in Prometheus text (labels in any order).
fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (set, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let have: Vec<&str> = if set.is_empty() {
            Vec::new()
        } else {
            set.split(',').collect()
        };
        (pairs.len() == have.len() && pairs.iter().all(|p| have.contains(&p.as_str())))
            .then(|| value.trim().parse().ok())?
    })
}

/// The sum of every `name{...}` series whose labels include `labels`.
fn series_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    text.lines()
        .filter_map(|line| {
            let (set, value) = line
                .strip_prefix(name)?
                .strip_prefix('{')?
                .split_once("} ")?;
            let have: Vec<&str> = set.split(',').collect();
            pairs
                .iter()
                .all(|p| have.contains(&p.as_str()))
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

#[test]
fn series_are_found_by_name_and_labels() {
    let text = "a_total{request=\"Produce\",version=\"9\"} 3\n\
                a_total{request=\"Produce\",version=\"11\"} 4\n\
                a_total{request=\"Fetch\",version=\"11\"} 5\n\
                b 7\n\
                b_lag 1\n";
    assert_eq!(
        series(text, "a_total", &[("version", "9"), ("request", "Produce")]),
        Some(3.0)
    );
    assert_eq!(series(text, "a_total", &[("request", "Produce")]), None);
    assert_eq!(series(text, "b", &[]), Some(7.0));
    assert_eq!(series_sum(text, "a_total", &[("request", "Produce")]), 7.0);
    assert_eq!(series_sum(text, "a_total", &[]), 12.0);
}

/// One `gregor server` of a 3-voter quorum, killed on drop.
struct Node {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Node {
    fn start(id: usize, ports: &[u16], dir: &std::path::Path) -> anyhow::Result<Node> {
        let port = |node: usize, which: usize| ports[(node - 1) * 4 + which];
        let voters: Vec<String> = (1..=3)
            .map(|n| format!("{n}@127.0.0.1:{}", port(n, 1)))
            .collect();
        let node_dir = dir.join(format!("node-{id}"));
        let mut child = Command::new(GREGOR)
            .args(["server", "--node-id", &id.to_string()])
            .args(["--process-roles", "broker,controller"])
            .args([
                "--listeners",
                &format!("PLAINTEXT://127.0.0.1:{}", port(id, 0)),
            ])
            .args(["--controller-quorum-voters", &voters.join(",")])
            .args([
                "--controller-listener",
                &format!("127.0.0.1:{}", port(id, 1)),
            ])
            .args(["--cluster-id", CLUSTER_ID])
            .arg("--log-dirs")
            .arg(&node_dir)
            .arg("--metadata-log-dir")
            .arg(node_dir.join("metadata"))
            .args([
                "--override",
                &format!("replication.listener=127.0.0.1:{}", port(id, 2)),
                "--override",
                &format!("admin.listener=127.0.0.1:{}", port(id, 3)),
            ])
            .env("RUST_LOG", "warn,openraft=off")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("spawn gregor server")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Node { child, lines })
    }

    /// The next stdout line containing `needle` (bounded).
    async fn line_with(&mut self, needle: &str) -> anyhow::Result<String> {
        let until = tokio::time::Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(until, self.lines.recv()).await {
                Ok(Some(line)) if line.contains(needle) => return Ok(line),
                Ok(Some(_)) => {}
                Ok(None) => bail!("the node exited before printing {needle:?}"),
                Err(_) => bail!("no {needle:?} line within {DEADLINE:?}"),
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // SIGKILL by PID; kill_on_drop reaps.
        let _ = self.child.start_kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_at_once_and_ready_waits_for_registration() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let ports = ports::reserve(12)?;
    let admin_1 = format!("127.0.0.1:{}", ports[3]);
    let mut node_1 = Node::start(1, &ports, tmp.path())?;
    let line = node_1.line_with("serving admin HTTP on").await?;
    ensure!(line.contains(&admin_1), "admin address in {line:?}");

    // Alone, node 1's controller has no majority, so its broker cannot register: alive, not
    // ready, and it says why.
    let (ok, body, _) = admin("health", &admin_1).await?;
    ensure!(ok && body == "ok\n", "health: {ok} {body:?}");
    let (ok, body, err) = admin("ready", &admin_1).await?;
    ensure!(!ok, "ready without a quorum: {body:?}");
    ensure!(body.starts_with("not ready: "), "ready body {body:?}");
    ensure!(err.contains("503"), "ready status in {err:?}");

    // The other voters come up: the quorum elects, node 1 registers, catches up and serves.
    let _node_2 = Node::start(2, &ports, tmp.path())?;
    let _node_3 = Node::start(3, &ports, tmp.path())?;
    let body = wait_admin("ready", &admin_1, FORM_DEADLINE, "readiness", |ok, _| ok).await?;
    ensure!(body == "ready\n", "ready body {body:?}");
    // Published only after the broker printed that it serves Kafka.
    node_1.line_with("serving Kafka on").await?;
    let (ok, _, _) = admin("health", &admin_1).await?;
    ensure!(ok, "still healthy");
    Ok(())
}

const TOPIC: &str = "t-admin-metrics";
const RECORDS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_produce_and_a_follower_kill() -> anyhow::Result<()> {
    // A follower that stops fetching leaves the ISR after 2 s instead of Kafka's 30 s.
    let mut cluster = Cluster::start(&[("replica.lag.time.max.ms", "2000")]).await?;
    cluster
        .create_topic(TOPIC, 1, 3, &[("min.insync.replicas", "2")])
        .await?;
    let view = cluster
        .wait_partition(TOPIC, 0, DEADLINE, "full ISR", |v| {
            v.leader >= 0 && v.isr.len() == 3
        })
        .await?;
    let leader = view.leader;
    let leader_admin = cluster.addrs(leader).admin.clone();
    let labels = [("topic", TOPIC), ("partition", "0")];

    // Every node serves /metrics with its role for the partition before anything is written.
    for id in cluster.ids() {
        let addr = cluster.addrs(id).admin.clone();
        let text = wait_admin("metrics", &addr, DEADLINE, "partition metrics", |ok, t| {
            ok && series(t, "gregor_partition_leader", &labels) == Some(f64::from(leader))
        })
        .await?;
        let is_leader = series(&text, "gregor_partition_is_leader", &labels);
        ensure!(
            is_leader == Some(f64::from(u8::from(id == leader))),
            "node {id}: is_leader {is_leader:?} (leader {leader})"
        );
        ensure!(
            series(&text, "gregor_controller_leader", &[]).is_some_and(|l| l >= 1.0),
            "node {id} knows a controller leader"
        );
    }
    let before = admin("metrics", &leader_admin).await?.1;
    let produced_before = series_sum(
        &before,
        "kafka_network_requestmetrics_requests_total",
        &[("request", "Produce")],
    );

    // N records with acks=all to partition 0.
    let input: String = (0..RECORDS).map(|i| format!("record-{i}\n")).collect();
    let mut producer = Command::new(GREGOR)
        .args(["produce", TOPIC, "--partition", "0", "--acks", "all"])
        .args(["--bootstrap-server", &cluster.bootstrap()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = producer.stdin.take().context("stdin")?;
        stdin.write_all(input.as_bytes()).await?;
    }
    let out = tokio::time::timeout(DEADLINE, producer.wait_with_output())
        .await
        .context("gregor produce timed out")??;
    ensure!(
        out.status.success(),
        "gregor produce failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // acks=all returned: the leader's HW passed every record. Its metrics say so at once.
    let n = RECORDS as f64;
    let text = admin("metrics", &leader_admin).await?.1;
    for (name, want) in [
        ("kafka_log_log_logendoffset", n),
        ("gregor_partition_high_watermark", n),
        ("gregor_partition_high_watermark_lag", 0.0),
        ("kafka_cluster_partition_insyncreplicascount", 3.0),
        ("kafka_cluster_partition_underreplicated", 0.0),
    ] {
        let got = series(&text, name, &labels);
        ensure!(got == Some(want), "leader {name}: {got:?}, want {want}");
    }
    let produced = series_sum(
        &text,
        "kafka_network_requestmetrics_requests_total",
        &[("request", "Produce")],
    );
    ensure!(
        produced > produced_before,
        "Produce requests {produced_before} -> {produced}"
    );
    ensure!(
        series(
            &text,
            "kafka_network_requestmetrics_totaltime_seconds_count",
            &[("request", "Produce")]
        )
        .is_some_and(|c| c >= produced - produced_before),
        "every Produce request is in the latency histogram"
    );
    // The followers' logs reach N (their HW follows one fetch later).
    for id in cluster.ids().into_iter().filter(|id| *id != leader) {
        let addr = cluster.addrs(id).admin.clone();
        wait_admin("metrics", &addr, DEADLINE, "follower LEO = N", |ok, t| {
            ok && series(t, "kafka_log_log_logendoffset", &labels) == Some(n)
                && series(t, "gregor_partition_high_watermark", &labels) == Some(n)
        })
        .await?;
    }

    // kill -9 a follower: the leader drops it from the ISR and reports the partition
    // under-replicated.
    let follower = *view.replicas.iter().find(|id| **id != leader).unwrap();
    cluster.kill9(follower).await?;
    let text = wait_admin(
        "metrics",
        &leader_admin,
        DEADLINE,
        "under-replicated partition",
        |ok, t| ok && series(t, "kafka_cluster_partition_underreplicated", &labels) == Some(1.0),
    )
    .await?;
    let isr = series(
        &text,
        "kafka_cluster_partition_insyncreplicascount",
        &labels,
    );
    ensure!(isr == Some(2.0), "ISR after the kill: {isr:?}");
    let total = series(
        &text,
        "kafka_server_replicamanager_underreplicatedpartitions",
        &[],
    );
    ensure!(
        total.is_some_and(|t| t >= 1.0),
        "broker total under-replicated: {total:?}"
    );
    ensure!(
        series(&text, "kafka_cluster_partition_underminisr", &labels) == Some(0.0),
        "ISR 2 = min.insync.replicas 2 is not under min ISR"
    );
    Ok(())
}
