//! `gregor dev`: a local cluster of N combined broker + controller processes on 127.0.0.1.
//!
//! Each node is a separate `gregor server` child (this same binary), so a node can be killed and
//! restarted on its own, exactly as in production. Port scheme for node `i` (0-based, node id
//! `i + 1`) and base port `P`: Kafka `P + i`, controller `P + 100 + i`, replication `P + 200 + i`,
//! admin HTTP (`/health`, `/ready`, `/metrics`) `P + 300 + i`.
//! The cluster id is generated once and kept in `DIR/cluster.id`, so a later `gregor dev` on the
//! same directory restarts the same cluster with its data. Node output goes to `DIR/node-N.log`.
//!
//! Children run in their own process groups: Ctrl-C reaches only this supervisor, which then stops
//! the nodes in order (SIGTERM by PID, a bounded wait, SIGKILL). A node that dies is reported and
//! not restarted; the printed `restart:` line is for the user.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tokio::process::{Child, Command};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long a node may take to print [`READY_LINE`].
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the node logs are checked for [`READY_LINE`] during start-up.
const READY_POLL: Duration = Duration::from_millis(100);
/// SIGTERM to SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The line `gregor server` prints once its Kafka listener is up.
const READY_LINE: &str = "serving Kafka on";
/// The file in the data directory that holds the cluster id.
const CLUSTER_ID_FILE: &str = "cluster.id";
/// Offsets of the controller, replication and admin HTTP ports from the Kafka port.
const CONTROLLER_OFFSET: u16 = 100;
const REPLICATION_OFFSET: u16 = 200;
const ADMIN_OFFSET: u16 = 300;
/// At most 9 nodes, so the four port ranges (each < 100 wide) never overlap.
const MAX_NODES: u8 = 9;
/// Log lines shown when a node fails to start.
const TAIL_LINES: usize = 20;

#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// Number of nodes (1-9), each a combined broker + controller process.
    #[arg(long, default_value_t = 3)]
    nodes: u8,
    /// Kafka port of node 1; node i (0-based) uses PORT+i (Kafka), PORT+100+i (controller),
    /// PORT+200+i (replication) and PORT+300+i (admin HTTP: /health, /ready, /metrics).
    #[arg(long, default_value_t = 9092)]
    port: u16,
    /// Data directory: one subdirectory and one log file per node, and the cluster id. Reused by
    /// the next `gregor dev` on the same directory.
    #[arg(long, default_value = "./gregor-dev-data")]
    data_dir: PathBuf,
}

/// One node: its addresses and the `gregor server` arguments that start it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodePlan {
    /// `node.id` (1-based).
    pub(crate) id: u8,
    /// Kafka port.
    pub(crate) kafka: u16,
    /// Controller (Raft and admin gRPC) port.
    pub(crate) controller: u16,
    /// Replication gRPC port.
    pub(crate) replication: u16,
    /// Admin HTTP port (`/health`, `/ready`, `/metrics`).
    pub(crate) admin: u16,
    /// Arguments after the binary.
    pub(crate) args: Vec<String>,
    /// Where its stdout and stderr go.
    pub(crate) log: PathBuf,
}

/// The nodes of a dev cluster (pure: flags in, command lines out).
pub(crate) fn plan(
    nodes: u8,
    port: u16,
    dir: &Path,
    cluster_id: &str,
) -> anyhow::Result<Vec<NodePlan>> {
    if !(1..=MAX_NODES).contains(&nodes) {
        bail!("--nodes must be between 1 and {MAX_NODES}, got {nodes}");
    }
    let highest = u32::from(port) + u32::from(ADMIN_OFFSET) + u32::from(nodes) - 1;
    if port == 0 || highest > u32::from(u16::MAX) {
        bail!(
            "--port {port}: the ports {port}..={highest} must be between 1 and {}",
            u16::MAX
        );
    }
    let dir = dir
        .to_str()
        .context("the data directory must be valid UTF-8 (it goes into shell commands)")?;
    let ids = 1..=nodes;
    let kafka = |id: u8| port + u16::from(id) - 1;
    let controller = |id: u8| kafka(id) + CONTROLLER_OFFSET;
    let voters = ids
        .clone()
        .map(|id| format!("{id}@127.0.0.1:{}", controller(id)))
        .collect::<Vec<_>>()
        .join(",");
    Ok(ids
        .map(|id| {
            let node_dir = format!("{dir}/node-{id}");
            let replication = kafka(id) + REPLICATION_OFFSET;
            let admin = kafka(id) + ADMIN_OFFSET;
            let args = [
                "server".to_string(),
                "--node-id".into(),
                id.to_string(),
                "--process-roles".into(),
                "broker,controller".into(),
                "--listeners".into(),
                format!("PLAINTEXT://127.0.0.1:{}", kafka(id)),
                "--controller-quorum-voters".into(),
                voters.clone(),
                "--controller-listener".into(),
                format!("127.0.0.1:{}", controller(id)),
                "--cluster-id".into(),
                cluster_id.to_string(),
                "--log-dirs".into(),
                node_dir.clone(),
                "--metadata-log-dir".into(),
                format!("{node_dir}/metadata"),
                "--override".into(),
                format!("replication.listener=127.0.0.1:{replication}"),
                "--override".into(),
                format!("admin.listener=127.0.0.1:{admin}"),
            ];
            NodePlan {
                id,
                kafka: kafka(id),
                controller: controller(id),
                replication,
                admin,
                args: args.to_vec(),
                log: PathBuf::from(format!("{dir}/node-{id}.log")),
            }
        })
        .collect())
}

/// The shell command that starts `node` (what the user runs to restart it by hand).
pub(crate) fn restart_command(exe: &Path, node: &NodePlan) -> anyhow::Result<String> {
    let exe = exe
        .to_str()
        .context("the gregor binary's path must be valid UTF-8")?;
    let words = std::iter::once(exe).chain(node.args.iter().map(String::as_str));
    shlex::try_join(words).context("quote the restart command")
}

/// Whether `id` is a cluster id the controller accepts: 1-64 characters of `[A-Za-z0-9_-]`.
fn valid_cluster_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Reads `dir/cluster.id`, or writes a new random one (temp file, fsync, rename) on first use.
pub(crate) fn cluster_id(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join(CLUSTER_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if !valid_cluster_id(id) {
                bail!(
                    "{} holds {id:?}, not a cluster id (1-64 characters of [A-Za-z0-9_-])",
                    path.display()
                );
            }
            Ok(id.to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let tmp = dir.join(format!("{CLUSTER_ID_FILE}.tmp"));
            let mut f =
                std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
            writeln!(f, "{id}")?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("rename {} to {}", tmp.display(), path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// A node process ended.
#[derive(Debug)]
struct Exited {
    node: u8,
    pid: u32,
    status: std::io::Result<ExitStatus>,
}

/// How start-up ended.
enum Startup {
    Ready,
    Interrupted,
    Failed(String),
}

pub(crate) async fn run(args: DevArgs) -> anyhow::Result<()> {
    // Validate the flags before touching the disk.
    plan(args.nodes, args.port, Path::new("."), "x")?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("create {}", args.data_dir.display()))?;
    let dir = std::fs::canonicalize(&args.data_dir)
        .with_context(|| format!("resolve {}", args.data_dir.display()))?;
    let cluster_id = cluster_id(&dir)?;
    let exe = std::env::current_exe().context("find the gregor binary")?;
    let nodes = plan(args.nodes, args.port, &dir, &cluster_id)?;
    let restarts = nodes
        .iter()
        .map(|n| restart_command(&exe, n))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Listen before starting anything, so a Ctrl-C during start-up stops what already runs.
    let mut sigint = signal(SignalKind::interrupt()).context("listen for SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("listen for SIGTERM")?;

    let stop = CancellationToken::new();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    let mut pids = BTreeMap::new();
    let mut offsets = BTreeMap::new();
    for node in &nodes {
        let (child, offset) = match spawn(&exe, node) {
            Ok(started) => started,
            Err(e) => {
                stop_all(&stop, &mut tasks, &mut events).await;
                return Err(e.context(format!("start node {}", node.id)));
            }
        };
        pids.insert(node.id, child.id().unwrap_or(0));
        offsets.insert(node.id, offset);
        tasks.spawn(supervise(node.id, child, stop.clone(), events_tx.clone()));
    }
    drop(events_tx);

    let startup = wait_ready(&nodes, &offsets, &mut events, &mut sigint, &mut sigterm).await;
    match startup {
        Startup::Ready => {}
        Startup::Interrupted => {
            stop_all(&stop, &mut tasks, &mut events).await;
            return Ok(());
        }
        Startup::Failed(why) => {
            stop_all(&stop, &mut tasks, &mut events).await;
            bail!("{why}");
        }
    }

    let bootstrap = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.kafka))
        .collect::<Vec<_>>()
        .join(",");
    println!("bootstrap: {bootstrap}");
    for (node, restart) in nodes.iter().zip(&restarts) {
        println!(
            "node {}: pid {}, kafka 127.0.0.1:{}, controller 127.0.0.1:{}, replication 127.0.0.1:{}, admin http://127.0.0.1:{}",
            node.id,
            pids.get(&node.id).copied().unwrap_or(0),
            node.kafka,
            node.controller,
            node.replication,
            node.admin
        );
        println!("  restart: {restart}");
    }
    println!(
        "cluster {cluster_id}, data and node-N.log files in {}; Ctrl-C stops every node",
        dir.display()
    );

    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            Some(e) = events.recv() => println!("{}", exit_line(&e)),
        }
    }
    println!("stopping");
    stop_all(&stop, &mut tasks, &mut events).await;
    Ok(())
}

fn exit_line(e: &Exited) -> String {
    match &e.status {
        Ok(status) => format!("node {} (pid {}) exited: {status}", e.node, e.pid),
        Err(err) => format!("node {} (pid {}) exited: unknown ({err})", e.node, e.pid),
    }
}

/// Starts one node with stdout and stderr appended to its log; returns the child and the log
/// offset its output starts at.
fn spawn(exe: &Path, node: &NodePlan) -> anyhow::Result<(Child, u64)> {
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log)
        .with_context(|| format!("open {}", node.log.display()))?;
    writeln!(log, "==== gregor dev: starting node {} ====", node.id)?;
    let offset = log.metadata()?.len();
    let err = log.try_clone()?;
    let child = Command::new(exe)
        .args(&node.args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err))
        // Its own process group: a terminal's Ctrl-C reaches only the supervisor, which stops
        // the nodes in order.
        .process_group(0)
        // Safety net if the supervisor unwinds without stopping it.
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawn {}", exe.display()))?;
    Ok((child, offset))
}

/// Owns one child: reports its exit, or on `stop` terminates it (SIGTERM, bounded wait,
/// SIGKILL). Owning the `Child` here means a PID is only signalled while it is still ours.
async fn supervise(
    node: u8,
    mut child: Child,
    stop: CancellationToken,
    events: mpsc::UnboundedSender<Exited>,
) {
    let pid = child.id().unwrap_or(0);
    let exited = tokio::select! {
        status = child.wait() => Some(status),
        () = stop.cancelled() => None,
    };
    let status = match exited {
        Some(status) => status,
        None => terminate(&mut child).await,
    };
    let _ = events.send(Exited { node, pid, status });
}

async fn terminate(child: &mut Child) -> std::io::Result<ExitStatus> {
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        // ESRCH means it is exiting anyway; the wait below collects it.
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if let Ok(status) = tokio::time::timeout(STOP_GRACE, child.wait()).await {
        return status;
    }
    child.start_kill()?;
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(status) => status,
        Err(_) => Err(std::io::Error::other("still running after SIGKILL")),
    }
}

/// Stops every node (bounded per node by [`terminate`]) and reports how each ended.
async fn stop_all(
    stop: &CancellationToken,
    tasks: &mut JoinSet<()>,
    events: &mut mpsc::UnboundedReceiver<Exited>,
) {
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    while let Ok(e) = events.try_recv() {
        println!("{}", exit_line(&e));
    }
}

/// Waits until every node's log (from its start offset) has [`READY_LINE`], bounded by
/// [`READY_TIMEOUT`]; a node that exits first, or the deadline, fails start-up.
async fn wait_ready(
    nodes: &[NodePlan],
    offsets: &BTreeMap<u8, u64>,
    events: &mut mpsc::UnboundedReceiver<Exited>,
    sigint: &mut Signal,
    sigterm: &mut Signal,
) -> Startup {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    let mut tick = tokio::time::interval(READY_POLL);
    let offset = |id: u8| offsets.get(&id).copied().unwrap_or(0);
    loop {
        tokio::select! {
            _ = sigint.recv() => return Startup::Interrupted,
            _ = sigterm.recv() => return Startup::Interrupted,
            Some(e) = events.recv() => {
                let log = nodes.iter().find(|n| n.id == e.node);
                let tail = log.map(|n| tail(&n.log, offset(n.id))).unwrap_or_default();
                return Startup::Failed(format!(
                    "{} during start-up; last lines of its log:\n{tail}",
                    exit_line(&e)
                ));
            }
            _ = tick.tick() => {
                let waiting: Vec<&NodePlan> = nodes
                    .iter()
                    .filter(|n| !output_since(&n.log, offset(n.id)).contains(READY_LINE))
                    .collect();
                let Some(first) = waiting.first() else {
                    return Startup::Ready;
                };
                if tokio::time::Instant::now() >= deadline {
                    return Startup::Failed(format!(
                        "node {} did not serve Kafka within {} s; last lines of {}:\n{}",
                        first.id,
                        READY_TIMEOUT.as_secs(),
                        first.log.display(),
                        tail(&first.log, offset(first.id))
                    ));
                }
            }
        }
    }
}

/// What a node wrote to its log since `offset` (lossy: logs are for humans).
fn output_since(log: &Path, offset: u64) -> String {
    let mut out = Vec::new();
    let read = std::fs::File::open(log).and_then(|mut f| {
        f.seek(SeekFrom::Start(offset))?;
        f.read_to_end(&mut out)
    });
    match read {
        Ok(_) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => String::new(),
    }
}

fn tail(log: &Path, offset: u64) -> String {
    let text = output_since(log, offset);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ports_follow_the_documented_scheme() {
        let nodes = plan(3, 9092, Path::new("/d"), "abc").unwrap();
        let ports: Vec<(u8, u16, u16, u16, u16)> = nodes
            .iter()
            .map(|n| (n.id, n.kafka, n.controller, n.replication, n.admin))
            .collect();
        assert_eq!(
            ports,
            vec![
                (1, 9092, 9192, 9292, 9392),
                (2, 9093, 9193, 9293, 9393),
                (3, 9094, 9194, 9294, 9394)
            ]
        );
        assert_eq!(
            nodes[1].args.join(" "),
            "server --node-id 2 --process-roles broker,controller \
             --listeners PLAINTEXT://127.0.0.1:9093 \
             --controller-quorum-voters 1@127.0.0.1:9192,2@127.0.0.1:9193,3@127.0.0.1:9194 \
             --controller-listener 127.0.0.1:9193 --cluster-id abc \
             --log-dirs /d/node-2 --metadata-log-dir /d/node-2/metadata \
             --override replication.listener=127.0.0.1:9293 \
             --override admin.listener=127.0.0.1:9393"
        );
        assert_eq!(nodes[2].log, PathBuf::from("/d/node-3.log"));
    }

    #[test]
    fn flags_are_validated() {
        assert!(plan(0, 9092, Path::new("/d"), "a").is_err());
        assert!(plan(10, 9092, Path::new("/d"), "a").is_err());
        assert!(plan(9, 9092, Path::new("/d"), "a").is_ok());
        assert!(plan(1, 0, Path::new("/d"), "a").is_err());
        // The highest port, admin of the last node, must fit: 65235 + 300 + 0 is fine, one
        // more is not.
        assert!(plan(1, 65235, Path::new("/d"), "a").is_ok());
        assert!(plan(1, 65236, Path::new("/d"), "a").is_err());
        assert!(plan(3, 65234, Path::new("/d"), "a").is_err());
    }

    #[test]
    fn restart_commands_are_shell_quoted() {
        let nodes = plan(1, 9092, Path::new("/tmp/my data"), "abc").unwrap();
        let cmd = restart_command(Path::new("/bin/gregor"), &nodes[0]).unwrap();
        assert!(cmd.starts_with("/bin/gregor server --node-id 1 "), "{cmd}");
        assert!(cmd.contains("--log-dirs '/tmp/my data/node-1' "), "{cmd}");
        assert_eq!(shlex::split(&cmd).unwrap()[1..], nodes[0].args[..]);
    }

    #[test]
    fn the_cluster_id_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let id = cluster_id(dir.path()).unwrap();
        assert!(valid_cluster_id(&id), "{id}");
        assert_eq!(cluster_id(dir.path()).unwrap(), id);
        std::fs::write(dir.path().join(CLUSTER_ID_FILE), "not valid!\n").unwrap();
        assert!(cluster_id(dir.path()).is_err());
    }
}
