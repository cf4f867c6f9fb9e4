//! Consumer groups of real Python clients on three real `gregor server` processes (issue #5):
//! for confluent-kafka (librdkafka) and kafka-python, three member processes
//! (`tests/interop/group_member.py`) in one group on a 6-partition RF=3 topic.
//!
//! - Every partition is owned by exactly one member, as the members themselves report their
//!   assignments.
//! - One member leaves cleanly (LeaveGroup), then one is kill -9'd (its session expires): the
//!   remaining members take its partitions over and resume at the last committed offsets.
//! - Nothing committed is lost: every produced record is consumed and committed by some member;
//!   a record consumed twice is allowed only if every earlier consumer of it never reported its
//!   commit (the killed member's uncommitted tail); at the end the group's committed offsets
//!   (OffsetFetch through the coordinator) equal each partition's end.
//!
//! The members commit every record synchronously and print one line per event; the test waits
//! on those lines with deadlines. Every child is killed by PID when it drops.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fault;
mod ports;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use fault::{Cluster, DEADLINE};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// Fence a dead broker quickly, allow the members' 3 s sessions (a killed member costs seconds),
/// start the first rebalance soon after the first member, and keep `__consumer_offsets` small
/// (its creation is part of the first FindCoordinator).
const OVERRIDES: &[(&str, &str)] = &[
    ("broker.session.timeout.ms", "3000"),
    ("broker.heartbeat.interval.ms", "500"),
    ("group.min.session.timeout.ms", "1000"),
    ("group.initial.rebalance.delay.ms", "500"),
    ("offsets.topic.num.partitions", "6"),
];
const PARTITIONS: i32 = 6;
/// Records per partition per round.
const PER_ROUND: i64 = 10;

/// One member process; killed by PID on drop (kill_on_drop).
struct Member {
    child: Child,
    stdin: Option<ChildStdin>,
}

/// What the members printed, folded into the state the test waits on.
#[derive(Default)]
struct Seen {
    assignment: HashMap<String, BTreeSet<i32>>,
    /// Highest committed next offset per partition (any member).
    committed: BTreeMap<i32, i64>,
    /// (member, partition, next offset) of every reported commit.
    commits: BTreeSet<(String, i32, i64)>,
    /// (partition, offset) → who consumed it, in order.
    records: BTreeMap<(i32, i64), Vec<String>>,
    closed: BTreeSet<String>,
    log: Vec<String>,
}

impl Seen {
    fn apply(&mut self, line: &str) -> anyhow::Result<()> {
        self.log.push(line.to_string());
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["assigned", name, ps] => {
                let set = if *ps == "-" {
                    BTreeSet::new()
                } else {
                    ps.split(',')
                        .map(str::parse)
                        .collect::<Result<_, _>>()
                        .with_context(|| format!("bad line {line}"))?
                };
                self.assignment.insert(name.to_string(), set);
            }
            ["revoked", name] => {
                self.assignment.insert(name.to_string(), BTreeSet::new());
            }
            ["record", name, p, o, _value] => {
                self.records
                    .entry((p.parse()?, o.parse()?))
                    .or_default()
                    .push(name.to_string());
            }
            ["committed", name, p, o] => {
                let (p, o): (i32, i64) = (p.parse()?, o.parse()?);
                let e = self.committed.entry(p).or_default();
                *e = (*e).max(o);
                self.commits.insert((name.to_string(), p, o));
            }
            ["closed", name] => {
                self.closed.insert(name.to_string());
                self.assignment.remove(*name);
            }
            ["commit-failed", ..] => bail!("a commit failed: {line}"),
            _ => {}
        }
        Ok(())
    }

    /// Every partition owned by exactly one of `members`, each owning some, nobody else any.
    fn balanced_over(&self, members: &[&str]) -> bool {
        let mut all = Vec::new();
        for m in members {
            match self.assignment.get(*m) {
                Some(s) if !s.is_empty() => all.extend(s.iter().copied()),
                _ => return false,
            }
        }
        let others_empty = self
            .assignment
            .iter()
            .filter(|(k, _)| !members.contains(&k.as_str()))
            .all(|(_, s)| s.is_empty());
        all.sort();
        others_empty && all == (0..PARTITIONS).collect::<Vec<_>>()
    }

    /// Every partition committed up to `end`.
    fn committed_to(&self, end: i64) -> bool {
        (0..PARTITIONS).all(|p| self.committed.get(&p) == Some(&end))
    }
}

struct Group {
    client: &'static str,
    bootstrap: String,
    topic: String,
    group: String,
    tx: mpsc::UnboundedSender<String>,
    rx: mpsc::UnboundedReceiver<String>,
    seen: Seen,
}

fn member_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/group_member.py")
}

impl Group {
    fn spawn(&self, name: &str) -> anyhow::Result<Member> {
        let mut child = Command::new("python3")
            .arg(member_script())
            .args([self.client, &self.bootstrap, &self.topic, &self.group, name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("python3 (run tests/setup.sh)")?;
        let stdout = child.stdout.take().context("stdout")?;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Ok(Member { child, stdin })
    }

    /// Folds printed lines into `seen` until `done` holds (bounded by `DEADLINE`).
    async fn wait(&mut self, what: &str, done: impl Fn(&Seen) -> bool) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !done(&self.seen) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(line)) => self.seen.apply(&line).with_context(|| self.dump())?,
                _ => bail!(
                    "timed out waiting for {what}; members printed:\n{}",
                    self.dump()
                ),
            }
        }
        Ok(())
    }

    fn dump(&self) -> String {
        self.seen.log.join("\n")
    }
}

/// Produces round `round` (records `PER_ROUND * round ..` of every partition), acks=all,
/// idempotent, and waits for every acknowledgement.
async fn produce_round(c: &Cluster, topic: &str, round: i64) -> anyhow::Result<()> {
    let mut config = c.client_config();
    config.set("acks", "all").set("enable.idempotence", "true");
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let producer: BaseProducer = config.create()?;
        for p in 0..PARTITIONS {
            for i in 0..PER_ROUND {
                let v = format!("r{round}-p{p}-{i}");
                producer
                    .send(BaseRecord::<(), _>::to(&topic).partition(p).payload(&v))
                    .map_err(|(e, _)| e)?;
                producer.poll(Duration::ZERO);
            }
        }
        producer.flush(DEADLINE)?;
        Ok(())
    })
    .await?
}

/// The group's committed offsets, via OffsetFetch through the current coordinator (a consumer
/// that does not join).
async fn fetch_committed(
    c: &Cluster,
    topic: &str,
    group: &str,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let mut config = c.client_config();
    config.set("group.id", group);
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(&topic, p);
        }
        let got = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
        Ok(got
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect())
    })
    .await?
}

async fn three_members(client: &'static str) -> anyhow::Result<()> {
    let c = Cluster::start(OVERRIDES).await?;
    let result = scenario(&c, client).await;
    if result.is_err() {
        c.print_tails();
    }
    result
}

async fn scenario(c: &Cluster, client: &'static str) -> anyhow::Result<()> {
    let started = Instant::now();
    let topic = format!("t-members-{client}");
    c.create_topic(&topic, PARTITIONS, 3, &[]).await?;
    for p in 0..PARTITIONS {
        c.wait_partition(&topic, p, DEADLINE, "full ISR", |v| {
            v.leader >= 0 && v.isr.len() == 3
        })
        .await?;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let mut g = Group {
        client,
        bootstrap: c.bootstrap(),
        topic: topic.clone(),
        group: format!("{client}-members"),
        tx,
        rx,
        seen: Seen::default(),
    };
    let mut a = g.spawn("a")?;
    let mut b = g.spawn("b")?;
    let _c = g.spawn("c")?;
    g.wait("a balanced group of a, b, c", |s| {
        s.balanced_over(&["a", "b", "c"])
    })
    .await?;
    println!("{client}: a, b, c balanced after {:?}", started.elapsed());
    produce_round(c, &topic, 0).await?;
    g.wait("round 0 committed", |s| s.committed_to(PER_ROUND))
        .await?;

    // a leaves cleanly (LeaveGroup on close): b and c take its partitions over.
    a.stdin
        .as_mut()
        .context("a's stdin")?
        .write_all(b"close\n")
        .await?;
    g.wait("a closed", |s| s.closed.contains("a")).await?;
    let status = tokio::time::timeout(DEADLINE, a.child.wait()).await??;
    ensure!(status.success(), "member a exited with {status}");
    g.wait("b and c own everything", |s| s.balanced_over(&["b", "c"]))
        .await?;
    println!("{client}: b, c balanced after {:?}", started.elapsed());
    produce_round(c, &topic, 1).await?;
    g.wait("round 1 committed", |s| s.committed_to(2 * PER_ROUND))
        .await?;

    // b is kill -9'd while records of round 2 arrive: its session expires and c takes over
    // from b's last commits.
    produce_round(c, &topic, 2).await?;
    g.wait("b consumed part of round 2", |s| {
        s.records
            .iter()
            .any(|((_, o), by)| *o >= 2 * PER_ROUND && by.iter().any(|n| n == "b"))
    })
    .await?;
    b.child.start_kill()?;
    tokio::time::timeout(DEADLINE, b.child.wait()).await??;
    g.seen.assignment.remove("b");
    g.wait("c owns everything", |s| s.balanced_over(&["c"]))
        .await?;
    println!("{client}: c alone after {:?}", started.elapsed());
    produce_round(c, &topic, 3).await?;
    let end = 4 * PER_ROUND;
    g.wait("everything committed", |s| s.committed_to(end))
        .await?;

    // Nothing lost: every record consumed; duplicates only from an uncommitted tail.
    for p in 0..PARTITIONS {
        for o in 0..end {
            let by = g
                .seen
                .records
                .get(&(p, o))
                .with_context(|| format!("{p}@{o} was never consumed\n{}", g.dump()))?;
            for earlier in &by[..by.len() - 1] {
                ensure!(
                    !g.seen.commits.contains(&(earlier.clone(), p, o + 1)),
                    "{p}@{o} consumed again after {earlier} committed it (consumers {by:?})\n{}",
                    g.dump()
                );
            }
        }
    }
    let duplicates = g.seen.records.values().filter(|by| by.len() > 1).count();
    let committed = fetch_committed(c, &topic, &g.group).await?;
    ensure!(
        committed == (0..PARTITIONS).map(|p| (p, end)).collect(),
        "committed offsets {committed:?}, want {end} everywhere"
    );
    println!(
        "{client}: done after {:?}; {} records, {duplicates} redelivered from the killed member's uncommitted tail",
        started.elapsed(),
        i64::from(PARTITIONS) * end
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_members_share_and_take_over_on_a_cluster() -> anyhow::Result<()> {
    three_members("ck").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_members_share_and_take_over_on_a_cluster() -> anyhow::Result<()> {
    three_members("kp").await
}
