//! A 3-node combined cluster of real `gregor server --process-roles broker,controller`
//! processes on loopback, with process faults (kill -9, SIGSTOP/SIGCONT, restart), metadata
//! observation through librdkafka, and the workload driver in [`workload`].
//!
//! Every node gets fixed free loopback ports (Kafka, controller, replication, admin HTTP) and its
//! own data directory, so a restart uses the same command line and the same files. Every wait polls an
//! observable condition (a stdout line, a metadata answer) against a deadline. Children are
//! killed by PID when the cluster drops (SIGKILL also ends a SIGSTOPped process); their stderr
//! tails are printed if the test is failing.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)] // test code; not every test uses every helper

pub mod workload;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use parking_lot::Mutex;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The `gregor` binary Cargo built for these tests.
pub const GREGOR: &str = env!("CARGO_BIN_EXE_gregor");
/// Upper bound for any single wait.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// How often conditions are re-polled (the pace of a poll loop, never a synchronization).
pub const POLL_EVERY: Duration = Duration::from_millis(50);
/// The cluster id all nodes are formatted with.
pub const CLUSTER_ID: &str = "gregor-durability";
/// Lines of each node's stderr kept for failure reports.
const STDERR_TAIL: usize = 200;

/// The addresses of one node.
#[derive(Debug, Clone)]
pub struct NodeAddrs {
    /// Kafka listener (`listeners`).
    pub kafka: String,
    /// Controller quorum listener (`controller.listener`).
    pub controller: String,
    /// Broker replication gRPC listener (`replication.listener`).
    pub replication: String,
    /// Admin HTTP listener (`admin.listener`: `/health`, `/ready`, `/metrics`).
    pub admin: String,
}

struct Node {
    addrs: NodeAddrs,
    dir: PathBuf,
    child: Option<Child>,
    /// SIGSTOPped and not yet SIGCONTed.
    stopped: bool,
    /// The last lines of stderr and stdout, for failure reports.
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// Set when the current incarnation prints `serving Kafka on`.
    serving: watch::Receiver<bool>,
    readers: JoinSet<()>,
}

/// The partition as librdkafka's metadata reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    /// Leader node id (-1: none).
    pub leader: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
}

/// A running 3-node cluster.
pub struct Cluster {
    _tmp: tempfile::TempDir,
    /// Held for the cluster's life: nodes restart on the same ports.
    _ports: crate::ports::Reservation,
    nodes: BTreeMap<i32, Node>,
    overrides: Vec<(String, String)>,
    /// One long-lived client for metadata polls (a client per poll would start threads and
    /// connections every 50 ms).
    meta: Option<Arc<BaseConsumer>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.nodes.keys().collect::<Vec<_>>())
            .field("overrides", &self.overrides)
            .finish()
    }
}

/// True if this build's broker or controller knows config `key` (so the server accepts it).
pub fn key_known(key: &str) -> bool {
    gregor_broker::config::KEYS.contains(&key) || gregor_controller::config::KEYS.contains(&key)
}

impl Cluster {
    /// Starts nodes 1..=3 with `overrides` (`--override key=value` on every node) and waits for
    /// each to serve Kafka.
    pub async fn start(overrides: &[(&str, &str)]) -> anyhow::Result<Cluster> {
        let tmp = tempfile::tempdir()?;
        let ports = crate::ports::reserve(12)?;
        let mut nodes = BTreeMap::new();
        for id in 1..=3i32 {
            let i = (id - 1) as usize * 4;
            let addr = |p: u16| format!("127.0.0.1:{p}");
            nodes.insert(
                id,
                Node {
                    addrs: NodeAddrs {
                        kafka: addr(ports[i]),
                        controller: addr(ports[i + 1]),
                        replication: addr(ports[i + 2]),
                        admin: addr(ports[i + 3]),
                    },
                    dir: tmp.path().join(format!("node-{id}")),
                    child: None,
                    stopped: false,
                    stderr: Arc::default(),
                    serving: watch::channel(false).1,
                    readers: JoinSet::new(),
                },
            );
        }
        let mut cluster = Cluster {
            _tmp: tmp,
            _ports: ports,
            nodes,
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            meta: None,
        };
        // Start all three before waiting: the controller quorum needs a majority to elect, and
        // a node's broker role registers with the quorum before it serves Kafka.
        for id in 1..=3 {
            cluster.spawn(id)?;
        }
        for id in 1..=3 {
            cluster.wait_serving(id).await?;
        }
        cluster.meta = Some(Arc::new(cluster.client_config().create()?));
        Ok(cluster)
    }

    /// Node ids.
    pub fn ids(&self) -> Vec<i32> {
        self.nodes.keys().copied().collect()
    }

    /// A node's addresses.
    pub fn addrs(&self, id: i32) -> &NodeAddrs {
        &self.nodes[&id].addrs
    }

    /// Every node's Kafka address, comma-separated (librdkafka's `bootstrap.servers`).
    pub fn bootstrap(&self) -> String {
        let v: Vec<&str> = self
            .nodes
            .values()
            .map(|n| n.addrs.kafka.as_str())
            .collect();
        v.join(",")
    }

    fn voters(&self) -> String {
        let v: Vec<String> = self
            .nodes
            .iter()
            .map(|(id, n)| format!("{id}@{}", n.addrs.controller))
            .collect();
        v.join(",")
    }

    /// The exact command line of node `id` (the same on every restart).
    fn command(&self, id: i32) -> Command {
        let n = &self.nodes[&id];
        let mut cmd = Command::new(GREGOR);
        cmd.args(["server", "--node-id", &id.to_string()])
            .args(["--process-roles", "broker,controller"])
            .args(["--listeners", &format!("PLAINTEXT://{}", n.addrs.kafka)])
            .args(["--controller-quorum-voters", &self.voters()])
            .args(["--controller-listener", &n.addrs.controller])
            .args(["--cluster-id", CLUSTER_ID])
            .arg("--log-dirs")
            .arg(&n.dir)
            .arg("--metadata-log-dir")
            .arg(n.dir.join("metadata"));
        // `replication.listener` arrives with broker replication (issue #4); a build without it
        // would refuse the unknown key, and has no replication port to pin anyway.
        if key_known("replication.listener") {
            cmd.args([
                "--override",
                &format!("replication.listener={}", n.addrs.replication),
            ]);
        }
        if key_known("admin.listener") {
            cmd.args(["--override", &format!("admin.listener={}", n.addrs.admin)]);
        }
        for (k, v) in &self.overrides {
            cmd.args(["--override", &format!("{k}={v}")]);
        }
        // Peers dying is the point of these tests: keep openraft's reconnect noise out.
        let log = std::env::var("GREGOR_TEST_SERVER_LOG").unwrap_or("warn,openraft=off".into());
        cmd.env("RUST_LOG", log)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Spawns node `id` and starts draining its output (its `serving Kafka on` line flips
    /// `serving`).
    fn spawn(&mut self, id: i32) -> anyhow::Result<()> {
        let mut cmd = self.command(id);
        let node = self.nodes.get_mut(&id).context("no such node")?;
        ensure!(node.child.is_none(), "node {id} is already running");
        let mut child = cmd.spawn().context("spawn gregor server")?;
        let stdout = child.stdout.take().context("stdout")?;
        let stderr = child.stderr.take().context("stderr")?;
        let tail = node.stderr.clone();
        node.readers.spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut t = tail.lock();
                if t.len() == STDERR_TAIL {
                    t.pop_front();
                }
                t.push_back(line);
            }
        });
        let tail = node.stderr.clone();
        let (serving, serving_rx) = watch::channel(false);
        node.serving = serving_rx;
        node.readers.spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("serving Kafka on") {
                    serving.send_replace(true);
                }
                // Kept with stderr so a failure report shows both in order.
                let mut t = tail.lock();
                if t.len() == STDERR_TAIL {
                    t.pop_front();
                }
                t.push_back(format!("[stdout] {line}"));
            }
        });
        node.child = Some(child);
        node.stopped = false;
        Ok(())
    }

    /// Waits (bounded) until node `id` printed `serving Kafka on`.
    async fn wait_serving(&self, id: i32) -> anyhow::Result<()> {
        let mut serving = self.nodes[&id].serving.clone();
        match tokio::time::timeout(DEADLINE, serving.wait_for(|s| *s)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => bail!(
                "node {id} exited before serving; output:\n{}",
                self.tail(id)
            ),
            Err(_) => bail!(
                "node {id} did not serve Kafka within {DEADLINE:?}; output:\n{}",
                self.tail(id)
            ),
        }
    }

    /// The OS process id of node `id`, if running.
    pub fn pid(&self, id: i32) -> Option<u32> {
        self.nodes[&id].child.as_ref().and_then(Child::id)
    }

    /// kill -9 node `id` and reap it (bounded). Returns when the process is gone.
    pub async fn kill9(&mut self, id: i32) -> anyhow::Result<()> {
        let node = self.nodes.get_mut(&id).context("no such node")?;
        let mut child = node.child.take().context("node is not running")?;
        child.start_kill()?;
        tokio::time::timeout(DEADLINE, child.wait())
            .await
            .context("killed node was not reaped")??;
        node.stderr
            .lock()
            .push_back(format!("[harness] node {id} killed (-9)"));
        Ok(())
    }

    /// SIGSTOP node `id` (the process stays, frozen: its sockets stay open, nothing answers).
    pub fn sigstop(&mut self, id: i32) -> anyhow::Result<()> {
        self.signal(id, "-STOP")?;
        self.nodes.get_mut(&id).context("no such node")?.stopped = true;
        Ok(())
    }

    /// True while node `id` is SIGSTOPped.
    pub fn is_stopped(&self, id: i32) -> bool {
        self.nodes[&id].stopped
    }

    /// SIGCONT node `id`.
    pub fn sigcont(&mut self, id: i32) -> anyhow::Result<()> {
        self.signal(id, "-CONT")?;
        self.nodes.get_mut(&id).context("no such node")?.stopped = false;
        Ok(())
    }

    fn signal(&self, id: i32, sig: &str) -> anyhow::Result<()> {
        let pid = self.pid(id).context("node is not running")?;
        let status = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .context("run kill")?;
        ensure!(status.success(), "kill {sig} {pid} failed: {status}");
        Ok(())
    }

    /// Starts node `id` again with the same command line and data, and waits until it serves.
    pub async fn restart(&mut self, id: i32) -> anyhow::Result<()> {
        self.nodes[&id]
            .stderr
            .lock()
            .push_back(format!("[harness] node {id} restarting"));
        self.spawn(id)?;
        self.wait_serving(id).await
    }

    /// The last lines node `id` printed (stderr and stdout).
    pub fn tail(&self, id: i32) -> String {
        let t = self.nodes[&id].stderr.lock();
        t.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// A librdkafka client config bootstrapping from every node.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap())
            .set("broker.address.family", "v4")
            // Dead brokers are normal here; reconnect quickly when they are back.
            .set("reconnect.backoff.ms", "50")
            .set("reconnect.backoff.max.ms", "500")
            .set("topic.metadata.refresh.interval.ms", "1000")
            .set("log_level", "3");
        c
    }

    /// Creates `topic` through librdkafka's AdminClient (bounded), with `configs` such as
    /// `min.insync.replicas`.
    pub async fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
        replication_factor: i32,
        configs: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        create_topic(
            &self.client_config(),
            topic,
            partitions,
            replication_factor,
            configs,
        )
        .await
    }

    /// One metadata answer for `topic`'s `partition`, from any live node (librdkafka picks).
    pub async fn partition_view(
        &self,
        topic: &str,
        partition: i32,
    ) -> anyhow::Result<Option<PartitionView>> {
        let c = self.meta.clone().context("cluster not started")?;
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || {
            let md = c.fetch_metadata(Some(&topic), Duration::from_secs(3))?;
            Ok(md
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .and_then(|t| t.partitions().iter().find(|p| p.id() == partition))
                .filter(|p| p.error().is_none())
                .map(|p| PartitionView {
                    leader: p.leader(),
                    replicas: p.replicas().to_vec(),
                    isr: p.isr().to_vec(),
                }))
        })
        .await?
    }

    /// Polls metadata (bounded by `deadline`) until `ok` holds for the partition; returns it.
    pub async fn wait_partition(
        &self,
        topic: &str,
        partition: i32,
        deadline: Duration,
        what: &str,
        ok: impl Fn(&PartitionView) -> bool,
    ) -> anyhow::Result<PartitionView> {
        let until = Instant::now() + deadline;
        let mut tick = tokio::time::interval(POLL_EVERY);
        let mut last = None;
        loop {
            tick.tick().await;
            // A node being down or paused makes single answers fail; that is what we wait out.
            if let Ok(Some(view)) = self.partition_view(topic, partition).await {
                if ok(&view) {
                    return Ok(view);
                }
                last = Some(view);
            }
            if Instant::now() > until {
                bail!("{topic}-{partition}: no {what} within {deadline:?}; last view {last:?}");
            }
        }
    }

    /// The partition's leader, once metadata reports one (bounded).
    pub async fn leader_of(&self, topic: &str, partition: i32) -> anyhow::Result<i32> {
        Ok(self
            .wait_partition(topic, partition, DEADLINE, "leader", |v| v.leader >= 0)
            .await?
            .leader)
    }
}

/// Creates `topic` through librdkafka's AdminClient on `client` (bounded).
pub async fn create_topic(
    client: &ClientConfig,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
    configs: &[(&str, &str)],
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client.create()?;
    let mut new = NewTopic::new(
        topic,
        partitions,
        TopicReplication::Fixed(replication_factor),
    );
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let opts = AdminOptions::new()
        .operation_timeout(Some(DEADLINE))
        .request_timeout(Some(DEADLINE));
    let results = tokio::time::timeout(DEADLINE, admin.create_topics([&new], &opts))
        .await
        .context("CreateTopics timed out")??;
    for r in results {
        if let Err((name, code)) = r {
            bail!("create topic {name}: {code:?} ({})", code as i32);
        }
    }
    Ok(())
}

impl Cluster {
    /// Prints every node's output tail (for a failing test).
    pub fn print_tails(&self) {
        for id in self.nodes.keys() {
            eprintln!("---- node {id} output (last {STDERR_TAIL} lines) ----");
            eprintln!("{}", self.tail(*id));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_tails();
        }
        for node in self.nodes.values_mut() {
            if let Some(child) = node.child.as_mut() {
                // SIGKILL by PID; works on a SIGSTOPped process too. kill_on_drop reaps.
                let _ = child.start_kill();
            }
            node.readers.abort_all();
        }
    }
}
