//! `gregor cluster watch` on three real `gregor server` processes (issue #6): `--once` shows
//! every partition with its leader, ISR and high watermark; `--plain` (a child process) prints
//! the starting state, then a leader change, an ISR shrink and the fencing when the partition
//! leader is kill -9'd (its controller is the first one the watch asks, so the metadata stream
//! fails over too), and the registration, unfencing and ISR expansion when it comes back.
//!
//! Every wait reads the watch's stdout lines (or cluster metadata) against a deadline; the
//! cluster's children and the watch are killed by PID when they drop.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fault;
mod ports;

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use fault::{Cluster, DEADLINE, GREGOR};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Fence a dead broker after 3 s (controller keys), so the kill costs seconds.
const FAST_FENCING: &[(&str, &str)] = &[
    ("broker.session.timeout.ms", "3000"),
    ("broker.heartbeat.interval.ms", "500"),
];
const TOPIC: &str = "t-watch";
const PARTITIONS: i32 = 3;
const RECORDS: usize = 30;

/// A running `gregor cluster watch --plain` and the lines it printed so far.
struct Watch {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Watch {
    fn start(controllers: &str) -> anyhow::Result<Watch> {
        let mut child = Command::new(GREGOR)
            .args(["cluster", "watch", "--plain", "--controller", controllers])
            // A safety net: the watch ends by itself even if the test forgot it.
            .args(["--duration", "5m"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("spawn gregor cluster watch")?;
        let out = child.stdout.take().context("stdout")?;
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut out = BufReader::new(out).lines();
            while let Ok(Some(line)) = out.next_line().await {
                println!("watch: {line}");
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Watch {
            child,
            lines,
            seen: Vec::new(),
        })
    }

    /// Waits (bounded) for a line of `kind` whose text satisfies `ok`; returns the text after
    /// the kind. Lines already read are searched first.
    async fn wait(
        &mut self,
        kind: &str,
        what: &str,
        ok: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let matches = |line: &str| {
            let mut words = line.splitn(3, ' ');
            let (_ts, k, rest) = (words.next(), words.next(), words.next().unwrap_or(""));
            (k == Some(kind) && ok(rest.trim_start())).then(|| rest.trim_start().to_owned())
        };
        if let Some(found) = self.seen.iter().find_map(|l| matches(l)) {
            return Ok(found);
        }
        let until = tokio::time::Instant::now() + DEADLINE;
        loop {
            let line = match tokio::time::timeout_at(until, self.lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => bail!(
                    "the watch exited before {what}; it printed:\n{}",
                    self.dump()
                ),
                Err(_) => bail!(
                    "no {what} within {DEADLINE:?}; the watch printed:\n{}",
                    self.dump()
                ),
            };
            let found = matches(&line);
            self.seen.push(line);
            if let Some(found) = found {
                return Ok(found);
            }
        }
    }

    fn dump(&self) -> String {
        self.seen.join("\n")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // SIGKILL by PID; kill_on_drop reaps.
        let _ = self.child.start_kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_shows_a_leader_kill_and_the_rejoin() -> anyhow::Result<()> {
    let mut c = Cluster::start(FAST_FENCING).await?;
    let result = scenario(&mut c).await;
    if result.is_err() {
        c.print_tails();
    }
    result
}

async fn scenario(c: &mut Cluster) -> anyhow::Result<()> {
    c.create_topic(TOPIC, PARTITIONS, 3, &[]).await?;
    for p in 0..PARTITIONS {
        c.wait_partition(TOPIC, p, DEADLINE, "full ISR", |v| {
            v.leader >= 0 && v.isr.len() == 3
        })
        .await?;
    }
    let leader = c.leader_of(TOPIC, 0).await?;
    // The leader's controller first: the watch streams from it, so the kill breaks the stream.
    let mut ids = c.ids();
    ids.sort_by_key(|id| *id != leader);
    let controllers = ids
        .iter()
        .map(|id| c.addrs(*id).controller.clone())
        .collect::<Vec<_>>()
        .join(",");

    // --once: one frame with the high watermarks of what was produced.
    let lines: String = (0..RECORDS).map(|i| format!("r{i}\n")).collect();
    let produced = run_gregor(
        &[
            "produce",
            TOPIC,
            "--bootstrap",
            &c.bootstrap(),
            "--acks",
            "all",
        ],
        Some(&lines),
    )
    .await?;
    ensure!(produced.status.success(), "produce failed: {produced:?}");
    let once = once_until(&controllers, |frame| hw_sum(frame) == Some(RECORDS as i64)).await?;
    ensure!(
        once.lines().any(|l| l.starts_with("Controller: leader ")),
        "{once}"
    );
    ensure!(
        once.lines()
            .any(|l| l.starts_with("Brokers:") && l.matches("alive").count() == 3),
        "{once}"
    );

    let mut w = Watch::start(&controllers)?;
    let state = w
        .wait("state", "the starting state of partition 0", |t| {
            t.starts_with(&format!("{TOPIC}-0: "))
        })
        .await?;
    ensure!(
        state.starts_with(&format!("{TOPIC}-0: leader {leader}, ")) && state.contains("isr "),
        "{state}"
    );
    w.wait("state", "the quorum state", |t| {
        t.starts_with("controller leader ")
    })
    .await?;

    let killed_at = Instant::now();
    c.kill9(leader).await?;
    let change = w
        .wait("leader-change", "a leader change of partition 0", |t| {
            t.starts_with(&format!("{TOPIC}-0: leader {leader} -> ")) && !t.contains("-> none")
        })
        .await?;
    let shrink = w
        .wait("isr-shrink", "an ISR shrink of partition 0", |t| {
            t.starts_with(&format!("{TOPIC}-0: ")) && t.ends_with(&format!("(out: {leader})"))
        })
        .await?;
    w.wait("broker-fenced", "the fencing", |t| {
        t == format!("broker {leader} fenced")
    })
    .await?;
    println!(
        "{:?} after the kill: {change} / {shrink}",
        killed_at.elapsed()
    );
    // The other partitions lose the dead replica from their ISR too.
    for p in 1..PARTITIONS {
        w.wait("isr-shrink", "an ISR shrink of every partition", |t| {
            t.starts_with(&format!("{TOPIC}-{p}: ")) && t.ends_with(&format!("(out: {leader})"))
        })
        .await?;
    }

    c.restart(leader).await?;
    w.wait("broker-registered", "the re-registration", |t| {
        t.starts_with(&format!("broker {leader} registered"))
    })
    .await?;
    w.wait("broker-unfenced", "the unfencing", |t| {
        t == format!("broker {leader} unfenced")
    })
    .await?;
    w.wait("isr-expand", "the ISR expansion of partition 0", |t| {
        t.starts_with(&format!("{TOPIC}-0: ")) && t.ends_with(&format!("(in: {leader})"))
    })
    .await?;
    // The watch is still running: it survived its controller's death.
    ensure!(
        w.child.try_wait()?.is_none(),
        "the watch exited:\n{}",
        w.dump()
    );
    Ok(())
}

/// Runs `gregor ARGS` (bounded), feeding `stdin`.
async fn run_gregor(args: &[&str], stdin: Option<&str>) -> anyhow::Result<std::process::Output> {
    let mut child = Command::new(GREGOR)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(input) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut w = child.stdin.take().context("stdin")?;
        w.write_all(input.as_bytes()).await?;
    }
    Ok(tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .context("gregor timed out")??)
}

/// `gregor cluster watch --once` until its frame satisfies `ok` (the high watermarks follow
/// the producer's acknowledgement by one follower fetch), bounded.
async fn once_until(controllers: &str, ok: impl Fn(&str) -> bool) -> anyhow::Result<String> {
    let until = Instant::now() + DEADLINE;
    loop {
        let out = run_gregor(
            &["cluster", "watch", "--once", "--controller", controllers],
            None,
        )
        .await?;
        let frame = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success(),
            "watch --once failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if ok(&frame) {
            return Ok(frame);
        }
        ensure!(Instant::now() < until, "the frame never matched:\n{frame}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The sum of the HW column over the topic's rows (`None` if a row has no HW yet).
fn hw_sum(frame: &str) -> Option<i64> {
    let rows: Vec<Vec<&str>> = frame
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| {
            w.first()
                .is_some_and(|n| n.starts_with(&format!("{TOPIC}-")))
        })
        .collect();
    if rows.len() != PARTITIONS as usize {
        return None;
    }
    rows.iter()
        .map(|w| w.last().and_then(|hw| hw.parse::<i64>().ok()))
        .sum()
}
