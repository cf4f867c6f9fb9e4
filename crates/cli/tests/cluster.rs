//! A combined three-node cluster (`gregor server --process-roles broker,controller`, the flags of
//! HELPERS.md) on loopback: brokers register with the quorum and answer Kafka Metadata from the
//! controller's image. A topic with RF 3 and 6 partitions is created through the Kafka API; every
//! node reports the same 3 brokers and the same leaders and ISRs, leaders spread over all three;
//! `kill -9` of one node moves its leaderships to other ISR members and drops it from the broker
//! list; restarted, it registers again. `gregor cluster describe` and `gregor topic describe`
//! work against the cluster. A second test joins a broker-only process to a combined node.
//!
//! Every wait polls observable state (the child's serving line, Metadata) with a deadline;
//! children are killed by PID on drop.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;
mod ports;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{DEADLINE, GREGOR, gregor, stderr, stdout};
use gregor_client::connection::Connection;
use gregor_client::kafka_protocol::messages::{MetadataRequest, MetadataResponse};

const CLUSTER_ID: &str = "quorum-test";
const TOPIC: &str = "replicated";
/// Failover: session expiry (~1 s) plus, when the killed node led the controller quorum, a
/// controller election (~2 s); generous for a loaded CI machine.
const FAILOVER_DEADLINE: Duration = Duration::from_secs(45);

struct Node {
    id: u32,
    kafka: String,
    args: Vec<String>,
    child: Option<Child>,
}

impl Node {
    fn spawn(&mut self) -> mpsc::Receiver<String> {
        let mut child = Command::new(GREGOR)
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn gregor server");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        self.child = Some(child);
        rx
    }

    fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        let ok = Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let _ = child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits (bounded) for the broker's `serving Kafka on` line.
fn wait_serving(node: u32, rx: &mpsc::Receiver<String>) {
    let end = Instant::now() + DEADLINE * 2;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("node {node} did not start serving Kafka"));
        if line.contains("serving Kafka on") {
            return;
        }
    }
}

fn node(id: u32, dir: &Path, kafka: u16, ctl: &[u16], repl: u16) -> Node {
    let voters = ctl
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let data: PathBuf = dir.join(format!("node-{id}"));
    let args = vec![
        "server".to_string(),
        "--node-id".into(),
        id.to_string(),
        "--process-roles".into(),
        "broker,controller".into(),
        "--listeners".into(),
        format!("PLAINTEXT://127.0.0.1:{kafka}"),
        "--controller-quorum-voters".into(),
        voters,
        "--controller-listener".into(),
        format!("127.0.0.1:{}", ctl[id as usize - 1]),
        "--cluster-id".into(),
        CLUSTER_ID.into(),
        "--log-dirs".into(),
        data.display().to_string(),
        "--metadata-log-dir".into(),
        data.join("metadata").display().to_string(),
        "--override".into(),
        format!("replication.listener=127.0.0.1:{repl}"),
    ];
    Node {
        id,
        kafka: format!("127.0.0.1:{kafka}"),
        args,
        child: None,
    }
}

/// One Metadata request (all topics) to one node; `None` if it does not answer.
fn metadata(rt: &tokio::runtime::Runtime, addr: &str) -> Option<MetadataResponse> {
    rt.block_on(async {
        let call = async {
            let mut c = Connection::connect(addr).await.ok()?;
            c.send(&MetadataRequest::default().with_topics(None))
                .await
                .ok()
        };
        tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .ok()
            .flatten()
    })
}

/// Per partition of `TOPIC`: (leader, leader epoch, replicas, ISR).
type Layout = BTreeMap<i32, (i32, i32, Vec<i32>, Vec<i32>)>;

fn layout(m: &MetadataResponse) -> Option<Layout> {
    let t = m
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == TOPIC))?;
    Some(
        t.partitions
            .iter()
            .map(|p| {
                (
                    p.partition_index,
                    (
                        p.leader_id.0,
                        p.leader_epoch,
                        p.replica_nodes.iter().map(|b| b.0).collect(),
                        p.isr_nodes.iter().map(|b| b.0).collect(),
                    ),
                )
            })
            .collect(),
    )
}

fn brokers(m: &MetadataResponse) -> BTreeSet<i32> {
    m.brokers.iter().map(|b| b.node_id.0).collect()
}

/// Pause between two polls of the cluster's state (a poller's interval, not synchronization:
/// the condition itself is re-checked).
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `f` until it returns `Some`, or panics with `what` after `deadline`.
fn poll<T>(
    rt: &tokio::runtime::Runtime,
    deadline: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        rt.block_on(async { tokio::time::sleep(POLL_INTERVAL).await });
    }
}

#[test]
fn three_combined_nodes_share_metadata_and_fail_over() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ports = ports::reserve(9).unwrap();
    let ctl = &ports[3..6];
    let mut nodes: Vec<Node> = (1..=3)
        .map(|i| {
            node(
                i,
                dir.path(),
                ports[i as usize - 1],
                ctl,
                ports[5 + i as usize],
            )
        })
        .collect();
    let lines: Vec<_> = nodes.iter_mut().map(Node::spawn).collect();
    for (n, rx) in nodes.iter().zip(&lines) {
        wait_serving(n.id, rx);
    }

    let out = gregor(
        &[
            "topic",
            "create",
            TOPIC,
            "--partitions",
            "6",
            "--replication-factor",
            "3",
        ],
        &nodes[0].kafka,
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // Every node lists the three brokers and the same layout (each broker waits for its own
    // image on writes, the others follow the stream: poll until they agree).
    let agreed = poll(
        &rt,
        DEADLINE,
        "three nodes to agree on the metadata",
        || {
            let all: Vec<MetadataResponse> = nodes
                .iter()
                .map(|n| metadata(&rt, &n.kafka))
                .collect::<Option<_>>()?;
            let first = layout(&all[0])?;
            let same = all.iter().all(|m| {
                brokers(m) == BTreeSet::from([1, 2, 3]) && layout(m) == Some(first.clone())
            });
            same.then_some(first)
        },
    );
    assert_eq!(agreed.len(), 6);
    for (leader, _, replicas, isr) in agreed.values() {
        assert_eq!(replicas.len(), 3);
        assert_eq!(isr.len(), 3);
        assert!(replicas.contains(leader));
    }
    let leaders: BTreeSet<i32> = agreed.values().map(|(l, ..)| *l).collect();
    assert_eq!(
        leaders,
        BTreeSet::from([1, 2, 3]),
        "leaders spread: {agreed:?}"
    );

    // kill -9 node 2: its leaderships move to other ISR members and it leaves the broker list.
    nodes[1].kill9();
    let after = poll(
        &rt,
        FAILOVER_DEADLINE,
        "broker 2's leaderships to move",
        || {
            let m = metadata(&rt, &nodes[0].kafka)?;
            let l = layout(&m)?;
            let moved = !brokers(&m).contains(&2) && l.values().all(|(leader, ..)| *leader != 2);
            moved.then_some(l)
        },
    );
    for (p, (leader, epoch, _, _)) in &after {
        let (old_leader, old_epoch, _, old_isr) = &agreed[p];
        assert!(
            old_isr.contains(leader),
            "partition {p}: {leader} not in {old_isr:?}"
        );
        if *old_leader == 2 {
            assert!(epoch > old_epoch, "partition {p}: leader epoch not bumped");
        }
    }
    // Node 3 agrees.
    poll(&rt, DEADLINE, "node 3 to see the failover", || {
        let m = metadata(&rt, &nodes[2].kafka)?;
        (layout(&m)? == after && !brokers(&m).contains(&2)).then_some(())
    });

    // Restarted on its data, node 2 registers again and is listed as a broker.
    let rx = nodes[1].spawn();
    wait_serving(2, &rx);
    poll(&rt, DEADLINE, "broker 2 to be listed again", || {
        let m = metadata(&rt, &nodes[0].kafka)?;
        brokers(&m).contains(&2).then_some(())
    });

    let controllers = ctl
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let out = Command::new(GREGOR)
        .args(["cluster", "describe", "--controller", &controllers])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("Cluster id:      {CLUSTER_ID}")),
        "{text}"
    );
    for id in 1..=3 {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().next() == Some(&id.to_string())
                    && l.contains("alive")
                    && l.contains("REPLICATION://")),
            "broker {id} alive with a replication endpoint: {text}"
        );
    }

    let out = gregor(
        &["topic", "describe", TOPIC, "--controller", &controllers],
        &nodes[2].kafka,
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("PartitionCount: 6\tReplicationFactor: 3"),
        "{text}"
    );
    assert_eq!(text.matches("Leader: ").count(), 6, "{text}");
    assert_eq!(text.matches("HighWatermark: ").count(), 6, "{text}");
}

/// A broker-only process joins a quorum it is told about (`controller.quorum.voters`), learns
/// the cluster id from it, and serves the same metadata as the combined node.
#[test]
fn a_broker_only_process_joins_the_quorum_of_a_combined_node() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ports = ports::reserve(5).unwrap();
    let voter = format!("1@127.0.0.1:{}", ports[2]);
    let mut combined = Node {
        id: 1,
        kafka: format!("127.0.0.1:{}", ports[0]),
        args: vec![
            "server".into(),
            "--node-id".into(),
            "1".into(),
            "--listeners".into(),
            format!("PLAINTEXT://127.0.0.1:{}", ports[0]),
            "--controller-quorum-voters".into(),
            voter.clone(),
            "--log-dirs".into(),
            dir.path().join("node-1").display().to_string(),
        ],
        child: None,
    };
    let mut broker = Node {
        id: 2,
        kafka: format!("127.0.0.1:{}", ports[1]),
        args: vec![
            "server".into(),
            "--node-id".into(),
            "2".into(),
            "--process-roles".into(),
            "broker".into(),
            "--listeners".into(),
            format!("PLAINTEXT://127.0.0.1:{}", ports[1]),
            "--controller-quorum-voters".into(),
            voter,
            "--log-dirs".into(),
            dir.path().join("node-2").display().to_string(),
            "--override".into(),
            format!("replication.listener=127.0.0.1:{}", ports[3]),
        ],
        child: None,
    };
    let rx = combined.spawn();
    wait_serving(1, &rx);
    let rx = broker.spawn();
    wait_serving(2, &rx);
    assert!(!dir.path().join("node-2").join("metadata").exists());

    let out = gregor(
        &[
            "topic",
            "create",
            TOPIC,
            "--partitions",
            "4",
            "--replication-factor",
            "2",
        ],
        &broker.kafka,
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let layouts = poll(&rt, DEADLINE, "both brokers to agree", || {
        let a = metadata(&rt, &combined.kafka)?;
        let b = metadata(&rt, &broker.kafka)?;
        let same = brokers(&a) == BTreeSet::from([1, 2])
            && brokers(&b) == brokers(&a)
            && a.cluster_id == b.cluster_id
            && layout(&a).is_some()
            && layout(&a) == layout(&b);
        same.then(|| layout(&a).unwrap())
    });
    assert!(layouts.values().all(|(_, _, r, _)| r.len() == 2));
    // The broker-only node holds a log for every partition it replicates (all of them, RF 2).
    for p in 0..4 {
        assert!(
            dir.path()
                .join("node-2")
                .join(format!("{TOPIC}-{p}"))
                .exists()
        );
    }
}
