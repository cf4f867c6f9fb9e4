//! Three `gregor server --process-roles controller` processes on loopback: kill -9 the active
//! controller again and again while a client creates topics through the gRPC admin API, and
//! check that every acknowledged creation exists exactly once on every controller. The ignored
//! `failover_bench` measures the time from killing the leader to the next committed command
//! (`docs/benchmarks.md`, "Controller failover").
//!
//! Every wait is on observable state with a deadline: the child's "serving" line, `DescribeCluster`
//! (leader, matched indexes) and `ListTopics` (applied index). Children are killed by PID.

mod ports;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gregor_proto::controller::v1 as pb;
use gregor_proto::controller::v1::broker_lifecycle_client::BrokerLifecycleClient;
use gregor_proto::controller::v1::controller_admin_client::ControllerAdminClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tonic::transport::Channel;

const GREGOR: &str = env!("CARGO_BIN_EXE_gregor");
const DEADLINE: Duration = Duration::from_secs(30);
const RPC_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between attempts of a retrying client (a real client's backoff, not synchronization).
const RETRY_BACKOFF: Duration = Duration::from_millis(10);
const CLUSTER_ID: &str = "failover-test";

/// Three controller processes with fixed loopback ports and data directories.
struct Quorum {
    _dir: tempfile::TempDir,
    data: PathBuf,
    addrs: BTreeMap<u64, String>,
    children: BTreeMap<u64, Child>,
    /// Held for the quorum's life: controllers restart on the same ports.
    _ports: ports::Reservation,
}

impl Quorum {
    async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let reserved = ports::reserve(3)?;
        let addrs: BTreeMap<u64, String> = (1..=3u64)
            .zip(reserved.iter())
            .map(|(id, port)| (id, format!("127.0.0.1:{port}")))
            .collect();
        let mut q = Quorum {
            data: dir.path().to_path_buf(),
            _dir: dir,
            addrs,
            children: BTreeMap::new(),
            _ports: reserved,
        };
        for id in 1..=3 {
            q.spawn(id).await?;
        }
        Ok(q)
    }

    fn voters(&self) -> String {
        let v: Vec<String> = self
            .addrs
            .iter()
            .map(|(id, a)| format!("{id}@{a}"))
            .collect();
        v.join(",")
    }

    /// Starts controller `id` and waits for its "serving" line.
    async fn spawn(&mut self, id: u64) -> anyhow::Result<()> {
        let meta: PathBuf = self.data.join(format!("controller-{id}"));
        let mut child = Command::new(GREGOR)
            .args(["server", "--process-roles", "controller", "--node-id"])
            .arg(id.to_string())
            .args(["--controller-quorum-voters", &self.voters()])
            .arg("--metadata-log-dir")
            .arg(&meta)
            .args(["--cluster-id", CLUSTER_ID])
            // Brokers in these tests register once and never heartbeat again.
            .args(["--override", "broker.session.timeout.ms=600000"])
            // Peers being down is the point of the test: keep openraft's reconnect errors out.
            .env("RUST_LOG", "error,openraft=off")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawn gregor server")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        // The admin port's line comes first; the controller's says `serving the controller quorum`.
        let serving = async {
            loop {
                let line = lines
                    .next_line()
                    .await?
                    .context("controller exited before serving")?;
                if line.contains("serving the controller quorum") {
                    return anyhow::Ok(());
                }
                anyhow::ensure!(
                    line.contains("serving admin HTTP on"),
                    "unexpected line {line:?}"
                );
            }
        };
        tokio::time::timeout(DEADLINE, serving)
            .await
            .context("controller did not report serving")??;
        self.children.insert(id, child);
        Ok(())
    }

    /// kill -9 by PID, and reap.
    async fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        let mut child = self.children.remove(&id).context("not running")?;
        child.start_kill()?;
        tokio::time::timeout(DEADLINE, child.wait()).await??;
        Ok(())
    }

    async fn stop_all(&mut self) -> anyhow::Result<()> {
        let ids: Vec<u64> = self.children.keys().copied().collect();
        for id in ids {
            self.kill(id).await?;
        }
        Ok(())
    }

    fn live_addrs(&self) -> Vec<String> {
        self.children
            .keys()
            .map(|id| self.addrs[id].clone())
            .collect()
    }

    /// The leader's own `DescribeCluster` answer, once a live controller knows a leader
    /// satisfying `ok`.
    async fn wait_leader(
        &self,
        ok: impl Fn(&pb::DescribeClusterReply) -> bool,
    ) -> anyhow::Result<pb::DescribeClusterReply> {
        let until = Instant::now() + DEADLINE;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            for addr in self.live_addrs() {
                if let Ok(d) = describe(&addr).await
                    && d.from_leader
                    && d.leader_id.is_some()
                    && ok(&d)
                {
                    return Ok(d);
                }
            }
            if Instant::now() > until {
                bail!("no leader matching the condition before the deadline");
            }
        }
    }

    /// Waits until the leader reports every voter matched at or beyond `index`.
    async fn wait_all_matched(&self, index: u64) -> anyhow::Result<()> {
        self.wait_leader(|d| {
            d.voters
                .iter()
                .all(|v| v.matched_index.is_some_and(|m| m >= index))
        })
        .await
        .map(|_| ())
    }
}

async fn channel(addr: &str) -> anyhow::Result<Channel> {
    Ok(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(RPC_TIMEOUT)
            .timeout(RPC_TIMEOUT)
            .connect()
            .await?,
    )
}

async fn describe(addr: &str) -> anyhow::Result<pb::DescribeClusterReply> {
    let mut c = ControllerAdminClient::new(channel(addr).await?);
    Ok(c.describe_cluster(pb::DescribeClusterRequest::default())
        .await?
        .into_inner())
}

/// A client of the leader-only admin API: follows the leader hint, otherwise tries the next
/// controller, until the call succeeds or fails for a reason other than availability.
struct AdminClient {
    addrs: Vec<String>,
    target: String,
}

impl AdminClient {
    fn new(addrs: Vec<String>) -> Self {
        let target = addrs[0].clone();
        Self { addrs, target }
    }

    fn rotate(&mut self) {
        let i = self.addrs.iter().position(|a| *a == self.target);
        let next = i.map_or(0, |i| (i + 1) % self.addrs.len());
        self.target = self.addrs[next].clone();
    }

    /// Runs `call` until it returns anything but an availability error. Returns the result
    /// and the number of attempts.
    async fn retry<T, F, Fut>(&mut self, call: F) -> anyhow::Result<(Result<T, tonic::Status>, u32)>
    where
        F: Fn(ControllerAdminClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let until = Instant::now() + DEADLINE;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = match channel(&self.target).await {
                Ok(ch) => call(ControllerAdminClient::new(ch)).await,
                Err(e) => Err(tonic::Status::unavailable(e.to_string())),
            };
            match result {
                Ok(reply) => return Ok((Ok(reply.into_inner()), attempts)),
                Err(s) if is_retryable(&s) => {
                    match gregor_controller::broker_service::leader_hint(&s) {
                        Some(hint) if hint != self.target => self.target = hint,
                        _ => self.rotate(),
                    }
                }
                Err(s) => return Ok((Err(s), attempts)),
            }
            if Instant::now() > until {
                bail!("no controller accepted the call before the deadline");
            }
            tokio::time::sleep(RETRY_BACKOFF).await;
        }
    }
}

fn is_retryable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::DeadlineExceeded
    )
}

/// The test's one broker. Not a voter's id: node ids are unique in a cluster, and a broker with a
/// voter's id is that controller's own process (combined roles), which the leader fences as soon
/// as that controller refuses connections (`docs/controller.md`, session rule 2).
const FAKE_BROKER: i32 = 100;

/// Registers broker `FAKE_BROKER` through the leader and unfences it with one heartbeat.
async fn register_broker(addrs: Vec<String>) -> anyhow::Result<()> {
    let mut target = addrs[0].clone();
    let until = Instant::now() + DEADLINE;
    let mut epoch = None;
    loop {
        let attempt = async {
            let mut c = BrokerLifecycleClient::new(channel(&target).await?);
            let e = match epoch {
                Some(e) => e,
                None => {
                    c.register_broker(pb::RegisterBrokerRequest {
                        cluster_id: CLUSTER_ID.into(),
                        broker_id: FAKE_BROKER,
                        incarnation_id: "00000000-0000-0000-0000-000000000001".into(),
                        endpoints: vec![],
                        rack: String::new(),
                        clean_shutdown: false,
                    })
                    .await?
                    .into_inner()
                    .broker_epoch
                }
            };
            epoch = Some(e);
            let hb = c
                .heartbeat(pb::HeartbeatRequest {
                    cluster_id: CLUSTER_ID.into(),
                    broker_id: FAKE_BROKER,
                    broker_epoch: e,
                    metadata_offset: e,
                    want_fence: false,
                })
                .await?
                .into_inner();
            anyhow::ensure!(!hb.fenced, "still fenced");
            Ok::<_, anyhow::Error>(())
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) => {
                let hint = e
                    .downcast_ref::<tonic::Status>()
                    .and_then(gregor_controller::broker_service::leader_hint);
                target = match hint {
                    Some(h) => h,
                    None => {
                        let i = addrs.iter().position(|a| *a == target).unwrap_or(0);
                        addrs[(i + 1) % addrs.len()].clone()
                    }
                };
            }
        }
        if Instant::now() > until {
            bail!("broker registration did not succeed before the deadline");
        }
        tokio::time::sleep(RETRY_BACKOFF).await;
    }
}

/// What the topic-creating client saw.
#[derive(Debug, Default)]
struct Created {
    /// Names whose creation returned OK.
    acknowledged: Vec<String>,
    /// Names whose creation was retried after an unavailable leader and then found existing.
    existed_on_retry: Vec<String>,
}

/// Creates `t-0`, `t-1`, ... until `stop` flips, publishing the acknowledged count on `acks`.
async fn create_topics(
    addrs: Vec<String>,
    mut stop: watch::Receiver<bool>,
    acks: watch::Sender<usize>,
) -> anyhow::Result<Created> {
    let mut client = AdminClient::new(addrs);
    let mut created = Created::default();
    for n in 0.. {
        if *stop.borrow_and_update() {
            break;
        }
        let name = format!("t-{n}");
        let (result, attempts) = client
            .retry(|mut c| {
                let name = name.clone();
                async move {
                    c.create_topic(pb::CreateTopicRequest {
                        cluster_id: CLUSTER_ID.into(),
                        name,
                        partitions: 1,
                        replication_factor: 1,
                        configs: Default::default(),
                    })
                    .await
                }
            })
            .await?;
        match result {
            Ok(_) => {
                created.acknowledged.push(name);
                acks.send_replace(created.acknowledged.len());
            }
            Err(s) if s.code() == tonic::Code::AlreadyExists && attempts > 1 => {
                created.existed_on_retry.push(name);
            }
            Err(s) => bail!("creating {name} failed after {attempts} attempts: {s}"),
        }
    }
    Ok(created)
}

/// Each live controller's topics (name → id), once it has applied `index`.
async fn topics_everywhere(
    q: &Quorum,
    index: u64,
) -> anyhow::Result<BTreeMap<u64, Vec<(String, String)>>> {
    let mut out = BTreeMap::new();
    for (id, addr) in &q.addrs {
        let until = Instant::now() + DEADLINE;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            let mut c = ControllerAdminClient::new(channel(addr).await?);
            let reply = c
                .list_topics(pb::ListTopicsRequest::default())
                .await?
                .into_inner();
            if reply.applied_index >= index {
                let topics = reply
                    .topics
                    .into_iter()
                    .map(|t| (t.name, t.topic_id))
                    .collect();
                out.insert(*id, topics);
                break;
            }
            if Instant::now() > until {
                bail!("controller {id} did not apply {index} before the deadline");
            }
        }
    }
    Ok(out)
}

async fn wait_acks(acks: &mut watch::Receiver<usize>, at_least: usize) -> anyhow::Result<()> {
    tokio::time::timeout(DEADLINE, acks.wait_for(|n| *n >= at_least))
        .await
        .context("topic creations stalled")??;
    Ok(())
}

/// Kills the current leader, restarts it on the same data directory, and waits until it has
/// caught up. Returns the killed leader.
async fn kill_leader_and_restart(q: &mut Quorum) -> anyhow::Result<u64> {
    let before = q.wait_leader(|_| true).await?;
    let leader = before.leader_id.context("leader")?;
    q.kill(leader).await?;
    let after = q
        .wait_leader(|d| d.leader_id != Some(leader) && d.term > before.term)
        .await?;
    q.spawn(leader).await?;
    q.wait_all_matched(after.committed_index).await?;
    Ok(leader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_active_controller_loses_no_acknowledged_topic() -> anyhow::Result<()> {
    const KILLS: usize = 10;
    tokio::time::timeout(Duration::from_secs(240), async {
        let mut q = Quorum::start().await?;
        let addrs: Vec<String> = q.addrs.values().cloned().collect();
        q.wait_leader(|_| true).await?;
        register_broker(addrs.clone()).await?;

        let (stop_tx, stop_rx) = watch::channel(false);
        let (acks_tx, mut acks) = watch::channel(0usize);
        let creator = tokio::spawn(create_topics(addrs.clone(), stop_rx, acks_tx));
        let mut killed = Vec::new();
        for _ in 0..KILLS {
            // Creations make progress between kills.
            let seen = *acks.borrow();
            wait_acks(&mut acks, seen + 3).await?;
            killed.push(kill_leader_and_restart(&mut q).await?);
        }
        let seen = *acks.borrow();
        wait_acks(&mut acks, seen + 3).await?;
        stop_tx.send_replace(true);
        let created = tokio::time::timeout(DEADLINE, creator)
            .await
            .context("creator did not stop")???;

        let leader = q.wait_leader(|_| true).await?;
        let everywhere = topics_everywhere(&q, leader.committed_index).await?;
        let reference = &everywhere[&leader.answered_by];
        for (id, topics) in &everywhere {
            let names: BTreeSet<&str> = topics.iter().map(|(n, _)| n.as_str()).collect();
            let ids: BTreeSet<&str> = topics.iter().map(|(_, t)| t.as_str()).collect();
            assert_eq!(names.len(), topics.len(), "duplicate names on controller {id}");
            assert_eq!(ids.len(), topics.len(), "duplicate topic ids on controller {id}");
            assert_eq!(topics, reference, "controller {id} differs from the leader");
            for name in &created.acknowledged {
                let count = topics.iter().filter(|(n, _)| n == name).count();
                assert_eq!(count, 1, "acknowledged {name} on controller {id}");
            }
            for name in &created.existed_on_retry {
                assert!(names.contains(name.as_str()), "{name} on controller {id}");
            }
            // Nothing appears that the client did not ask for.
            let asked: BTreeSet<&str> = created
                .acknowledged
                .iter()
                .chain(&created.existed_on_retry)
                .map(String::as_str)
                .collect();
            assert!(names.is_subset(&asked), "unexpected topics on controller {id}");
        }
        println!(
            "{KILLS} leader kills (killed {killed:?}): {} creations acknowledged, {} found existing on retry",
            created.acknowledged.len(),
            created.existed_on_retry.len()
        );
        q.stop_all().await
    })
    .await
    .context("test deadline")?
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `GREGOR_BENCH_KILLS` (default 20) leader kills; for each, the time from the kill to the next
/// committed command (an `AlterConfigs` on the cluster resource, retried like a real client).
///
/// ```sh
/// GREGOR_BENCH_KILLS=20 cargo test --release -p gregor-cli --test controller_failover \
///     -- --ignored failover_bench --nocapture
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly, see docs/benchmarks.md"]
async fn failover_bench() -> anyhow::Result<()> {
    let kills: usize = std::env::var("GREGOR_BENCH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut q = Quorum::start().await?;
    let addrs: Vec<String> = q.addrs.values().cloned().collect();
    let mut client = AdminClient::new(addrs);
    let mut samples = Vec::new();
    for i in 0..kills {
        // The leader commits before the kill, so the next commit is after it.
        commit(&mut client, i).await?;
        let before = q.wait_leader(|_| true).await?;
        let leader = before.leader_id.context("leader")?;
        let killed_at = Instant::now();
        q.kill(leader).await?;
        commit(&mut client, i).await?;
        let took = killed_at.elapsed();
        samples.push(took);
        println!("kill {i}: controller {leader}, next commit after {took:?}");
        q.spawn(leader).await?;
        let after = q.wait_leader(|d| d.term > before.term).await?;
        q.wait_all_matched(after.committed_index).await?;
    }
    q.stop_all().await?;
    samples.sort();
    println!(
        "controller failover over {} kills: p50 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 99.0),
        samples.last().copied().unwrap_or_default()
    );
    Ok(())
}

async fn commit(client: &mut AdminClient, i: usize) -> anyhow::Result<()> {
    let (result, _) = client
        .retry(|mut c| async move {
            c.alter_configs(pb::AlterConfigsRequest {
                cluster_id: CLUSTER_ID.into(),
                resource_type: pb::alter_configs_request::ResourceType::Cluster.into(),
                resource_name: String::new(),
                changes: vec![pb::ConfigChange {
                    key: "gregor.bench.kill".into(),
                    value: Some(i.to_string()),
                }],
            })
            .await
        })
        .await?;
    result?;
    Ok(())
}
