//! `gregor dev` at the process level: it starts three `gregor server` children on the documented
//! ports, prints their PIDs and restart commands, reports a node killed with `kill -9` while the
//! others keep serving, the printed restart command brings that node back, SIGINT stops every
//! node and exits 0, a second run on the same directory reuses the cluster id (and SIGTERM stops
//! it the same way), and a node that cannot start makes it stop the others and fail.
//!
//! Only what `gregor dev` itself promises is checked (processes, ports, output, signals): the
//! brokers form a replicated cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;
mod ports;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{DEADLINE, GREGOR, gregor, stderr};

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(ok.success(), "kill {sig} {pid}");
}

/// Whether `pid` still exists (a zombie counts: it has not been reaped yet).
fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits (bounded) for a child's exit status.
fn wait_exit(mut child: Child) -> ExitStatus {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    rx.recv_timeout(DEADLINE)
        .expect("process did not exit within the deadline")
        .expect("wait")
}

/// Reads a child's stdout lines on a thread.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// The next line matching `pred`, bounded by [`DEADLINE`].
fn next_line(rx: &mpsc::Receiver<String>, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no line with {what}: {e}"));
        if pred(&line) {
            return line;
        }
    }
}

/// Waits (bounded) until every line of `expected` was read, in any order.
fn wait_lines(rx: &mpsc::Receiver<String>, mut expected: Vec<String>) {
    let deadline = Instant::now() + DEADLINE;
    while !expected.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("still waiting for {expected:?}: {e}"));
        expected.retain(|l| *l != line);
    }
}

/// One node as `gregor dev` printed it.
#[derive(Debug)]
struct Node {
    id: u16,
    pid: u32,
    kafka: u16,
    controller: u16,
    replication: u16,
    restart: String,
}

/// Processes the test must not leak: killed by PID on drop unless disarmed.
#[derive(Default)]
struct Guard {
    pids: Vec<u32>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for pid in &self.pids {
            if exists(*pid) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// A running `gregor dev` and what it printed at start-up.
struct Dev {
    child: Child,
    lines: mpsc::Receiver<String>,
    bootstrap: String,
    nodes: Vec<Node>,
    cluster_line: String,
}

fn start_dev(base: u16, dir: &Path) -> Dev {
    let mut child = Command::new(GREGOR)
        .args([
            "dev",
            "--nodes",
            "3",
            "--port",
            &base.to_string(),
            "--data-dir",
        ])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn gregor dev");
    let lines = lines_of(&mut child);
    let bootstrap = next_line(&lines, "bootstrap", |l| l.starts_with("bootstrap: "));
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let line = next_line(&lines, "a node", |l| l.starts_with("node "));
        let restart = next_line(&lines, "a restart command", |l| {
            l.starts_with("  restart: ")
        });
        // node 1: pid 4813, kafka 127.0.0.1:31092, controller 127.0.0.1:31192, replication ...
        let (head, rest) = line.split_once(": ").unwrap();
        let fields: Vec<&str> = rest.split(", ").collect();
        let port = |i: usize, name: &str| -> u16 {
            let f = fields[i].strip_prefix(name).unwrap();
            f.strip_prefix(" 127.0.0.1:").unwrap().parse().unwrap()
        };
        nodes.push(Node {
            id: head.strip_prefix("node ").unwrap().parse().unwrap(),
            pid: fields[0].strip_prefix("pid ").unwrap().parse().unwrap(),
            kafka: port(1, "kafka"),
            controller: port(2, "controller"),
            replication: port(3, "replication"),
            restart: restart.strip_prefix("  restart: ").unwrap().to_string(),
        });
    }
    let cluster_line = next_line(&lines, "the cluster line", |l| l.starts_with("cluster "));
    Dev {
        child,
        lines,
        bootstrap: bootstrap.strip_prefix("bootstrap: ").unwrap().to_string(),
        nodes,
        cluster_line,
    }
}

/// A Kafka client command (ApiVersions + Metadata) against one node succeeds.
fn answers(kafka: u16) {
    let out = gregor(&["topic", "list"], &format!("127.0.0.1:{kafka}"), None);
    assert!(
        out.status.success(),
        "node on {kafka} does not answer: {}",
        stderr(&out)
    );
}

#[test]
fn dev_runs_kills_restarts_and_stops_a_three_node_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev data"); // a space: the restart command must quote it
    let (base, _reserved) = ports::dev_base().unwrap();
    let mut guard = Guard::default();
    let dev = start_dev(base, &dir);
    guard.pids.push(dev.child.id());
    guard.pids.extend(dev.nodes.iter().map(|n| n.pid));

    // The documented port scheme and output.
    assert_eq!(
        dev.bootstrap,
        format!(
            "127.0.0.1:{base},127.0.0.1:{},127.0.0.1:{}",
            base + 1,
            base + 2
        )
    );
    for (i, n) in dev.nodes.iter().enumerate() {
        let i = i as u16;
        assert_eq!(
            (n.id, n.kafka, n.controller, n.replication),
            (i + 1, base + i, base + 100 + i, base + 200 + i)
        );
        assert!(
            n.restart.contains(&format!(" --node-id {} ", n.id)),
            "{n:?}"
        );
        assert!(exists(n.pid), "{n:?} is not running");
        answers(n.kafka);
        assert!(dir.join(format!("node-{}.log", n.id)).exists());
    }
    let cluster_id = std::fs::read_to_string(dir.join("cluster.id")).unwrap();
    assert!(
        dev.cluster_line.contains(cluster_id.trim()),
        "{}",
        dev.cluster_line
    );

    // kill -9 node 2: dev reports it and keeps the others.
    let victim = &dev.nodes[1];
    signal(victim.pid, "-KILL");
    let line = next_line(&dev.lines, "the exit line", |l| l.contains("exited"));
    assert_eq!(
        line,
        format!("node 2 (pid {}) exited: signal: 9 (SIGKILL)", victim.pid)
    );
    answers(dev.nodes[0].kafka);
    answers(dev.nodes[2].kafka);

    // The printed restart command brings node 2 back on its port and data.
    let mut restarted = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {}", victim.restart))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run the restart command");
    let restarted_lines = lines_of(&mut restarted);
    let serving = next_line(&restarted_lines, "serving Kafka", |l| {
        l.contains("serving Kafka on")
    });
    assert!(
        serving.contains(&format!("serving Kafka on 127.0.0.1:{}", victim.kafka)),
        "{serving}"
    );
    answers(victim.kafka);
    // It is the test's process, not dev's: the test stops it.
    signal(restarted.id(), "-TERM");
    assert!(wait_exit(restarted).success());

    // SIGINT: dev stops every node it runs and exits 0.
    signal(dev.child.id(), "-INT");
    let status = wait_exit(dev.child);
    assert!(status.success(), "gregor dev exited with {status}");
    // dev reaps every node before it exits, so their PIDs are gone now.
    for n in [&dev.nodes[0], &dev.nodes[2]] {
        assert!(!exists(n.pid), "node {} (pid {}) still exists", n.id, n.pid);
    }
    wait_lines(
        &dev.lines,
        [&dev.nodes[0], &dev.nodes[2]]
            .iter()
            .map(|n| format!("node {} (pid {}) exited: exit status: 0", n.id, n.pid))
            .collect(),
    );

    // A second run on the same directory is the same cluster.
    let again = start_dev(base, &dir);
    guard.pids.push(again.child.id());
    guard.pids.extend(again.nodes.iter().map(|n| n.pid));
    assert!(
        again.cluster_line.contains(cluster_id.trim()),
        "{}",
        again.cluster_line
    );
    answers(again.nodes[1].kafka);
    // SIGTERM (e.g. from a process manager) stops it like Ctrl-C.
    signal(again.child.id(), "-TERM");
    assert!(wait_exit(again.child).success());
    for n in &again.nodes {
        assert!(!exists(n.pid), "node {} (pid {}) still exists", n.id, n.pid);
    }
    guard.pids.clear();
}

#[test]
fn a_node_that_cannot_start_stops_the_others_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let (base, _reserved) = ports::dev_base().unwrap();
    // Node 1's Kafka port is taken: it exits, and dev must stop nodes 2 and 3 and fail.
    let _taken = TcpListener::bind(("127.0.0.1", base)).unwrap();
    let child = Command::new(GREGOR)
        .args([
            "dev",
            "--nodes",
            "3",
            "--port",
            &base.to_string(),
            "--data-dir",
        ])
        .arg(tmp.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gregor dev");
    let mut guard = Guard::default();
    guard.pids.push(child.id());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(DEADLINE + Duration::from_secs(15))
        .expect("gregor dev did not give up")
        .expect("output");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("node 1 (pid"), "{err}");
    assert!(err.contains("during start-up"), "{err}");
    assert!(err.contains("bind the Kafka listener"), "{err}");
    // Every node it started was stopped: their exits are reported on stdout.
    let text = String::from_utf8_lossy(&out.stdout);
    for id in [2, 3] {
        assert!(text.contains(&format!("node {id} (pid")), "{text}");
    }
    guard.pids.clear();
}

#[test]
fn bad_flags_are_refused() {
    for args in [
        vec!["dev", "--nodes", "0"],
        vec!["dev", "--nodes", "10"],
        vec!["dev", "--port", "65400"],
    ] {
        let child = Command::new(GREGOR)
            .args(&args)
            .args(["--data-dir", "/nonexistent/never-created"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(child.wait_with_output());
            });
            rx.recv_timeout(DEADLINE).unwrap().unwrap()
        };
        assert!(!out.status.success(), "{args:?}");
        assert!(!Path::new("/nonexistent/never-created").exists());
    }
}
