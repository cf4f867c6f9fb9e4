//! Fault backends: how a fault reaches a node.
//!
//! * `--dev DIR`: the processes of a `gregor dev` cluster. `DIR/nodes.txt` holds what
//!   `gregor dev` printed (`gregor dev --data-dir DIR | tee DIR/nodes.txt`): for every node a
//!   line `node N: pid P, kafka HOST:PORT, ...` followed by `  restart: <shell command>`. Signals
//!   go by PID (`kill -KILL/-STOP/-CONT/-TERM`); a node is started again by running its restart
//!   command in its own process group with output appended to `DIR/node-N.log`, and its new PID
//!   replaces the old one. A node restarted this way outlives `gregor verify` (like one
//!   restarted by hand); `gregor dev` does not stop it.
//! * `--compose`: the services `node-N` of a compose project, through the compose CLI
//!   (`kill -s SIGKILL`, `pause`, `unpause`, `stop`, `start`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::Command;

/// How long a clean stop (SIGTERM) may take before the node is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll period while waiting for a stopped process to exit.
const EXIT_POLL: Duration = Duration::from_millis(50);

/// One node of a `gregor dev` cluster, as `nodes.txt` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DevNode {
    /// Process id.
    pub(crate) pid: u32,
    /// `host:port` of its Kafka listener.
    pub(crate) kafka: String,
    /// The shell command that starts it again.
    pub(crate) restart: String,
}

/// Parses `gregor dev`'s start-up output (see the module docs). Other lines are ignored.
pub(crate) fn parse_nodes(text: &str) -> anyhow::Result<BTreeMap<i32, DevNode>> {
    let mut nodes = BTreeMap::new();
    let mut last: Option<i32> = None;
    for line in text.lines() {
        if let Some(cmd) = line.trim_start().strip_prefix("restart:") {
            let id = last.context("a restart: line before any node line")?;
            if let Some(n) = nodes.get_mut(&id) {
                let n: &mut DevNode = n;
                n.restart = cmd.trim().to_string();
            }
            continue;
        }
        let Some(rest) = line.strip_prefix("node ") else {
            continue;
        };
        let Some((id, fields)) = rest.split_once(':') else {
            continue;
        };
        let Ok(id) = id.trim().parse::<i32>() else {
            continue;
        };
        let mut pid = None;
        let mut kafka = None;
        for field in fields.split(',') {
            let field = field.trim();
            if let Some(p) = field.strip_prefix("pid ") {
                pid = p.trim().parse::<u32>().ok();
            } else if let Some(k) = field.strip_prefix("kafka ") {
                kafka = Some(k.trim().to_string());
            }
        }
        let (Some(pid), Some(kafka)) = (pid, kafka) else {
            // `node N (pid P) exited: ...` lines and the like.
            continue;
        };
        nodes.insert(
            id,
            DevNode {
                pid,
                kafka,
                restart: String::new(),
            },
        );
        last = Some(id);
    }
    if nodes.is_empty() {
        bail!("no `node N: pid P, kafka HOST:PORT, ...` line found");
    }
    if let Some((id, _)) = nodes.iter().find(|(_, n)| n.restart.is_empty()) {
        bail!("node {id} has no `  restart: <command>` line");
    }
    Ok(nodes)
}

/// Where faults go.
#[derive(Debug)]
pub(crate) enum Backend {
    /// A `gregor dev` cluster's processes.
    Dev {
        /// The data directory (node logs go to `node-N.log` there).
        dir: PathBuf,
        /// The nodes by id; PIDs are updated on restart.
        nodes: BTreeMap<i32, DevNode>,
    },
    /// A compose project's `node-N` services.
    Compose {
        /// The compose command and its global arguments, e.g. `docker compose -p gregor -f
        /// deploy/compose.yaml`.
        command: Vec<String>,
        /// Node ids (services `node-1..node-N`).
        nodes: Vec<i32>,
    },
}

impl Backend {
    /// Reads `DIR/nodes.txt`.
    pub(crate) fn dev(dir: &Path) -> anyhow::Result<Backend> {
        let path = dir.join("nodes.txt");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "read {} (save gregor dev's output there: gregor dev --data-dir {} | tee {})",
                path.display(),
                dir.display(),
                path.display()
            )
        })?;
        let nodes = parse_nodes(&text).with_context(|| format!("parse {}", path.display()))?;
        Ok(Backend::Dev {
            dir: dir.to_path_buf(),
            nodes,
        })
    }

    /// The compose backend; `compose` empty means auto-detect (`docker compose` if Compose v2
    /// answers, else `docker-compose`).
    pub(crate) async fn compose(
        compose: Option<&str>,
        project: &str,
        file: &Path,
        nodes: i32,
    ) -> anyhow::Result<Backend> {
        let mut command: Vec<String> = match compose {
            Some(c) => c.split_whitespace().map(String::from).collect(),
            None => {
                let v2 = Command::new("docker")
                    .args(["compose", "version"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .await
                    .is_ok_and(|s| s.success());
                if v2 {
                    vec!["docker".into(), "compose".into()]
                } else {
                    vec!["docker-compose".into()]
                }
            }
        };
        command.extend([
            "-p".to_string(),
            project.to_string(),
            "-f".to_string(),
            file.display().to_string(),
        ]);
        Ok(Backend::Compose {
            command,
            nodes: (1..=nodes).collect(),
        })
    }

    /// The node ids faults may hit.
    pub(crate) fn node_ids(&self) -> Vec<i32> {
        match self {
            Backend::Dev { nodes, .. } => nodes.keys().copied().collect(),
            Backend::Compose { nodes, .. } => nodes.clone(),
        }
    }

    /// Kafka addresses to bootstrap from, when the backend knows them.
    pub(crate) fn bootstrap(&self) -> Option<String> {
        match self {
            Backend::Dev { nodes, .. } => Some(
                nodes
                    .values()
                    .map(|n| n.kafka.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            Backend::Compose { .. } => None,
        }
    }

    /// `kill -9`.
    pub(crate) async fn kill(&mut self, node: i32) -> anyhow::Result<()> {
        match self {
            Backend::Dev { nodes, .. } => signal(pid_of(nodes, node)?, "KILL").await,
            Backend::Compose { command, .. } => {
                compose(command, &["kill", "-s", "SIGKILL", &service(node)]).await
            }
        }
    }

    /// Freeze every process of the node.
    pub(crate) async fn pause(&mut self, node: i32) -> anyhow::Result<()> {
        match self {
            Backend::Dev { nodes, .. } => signal(pid_of(nodes, node)?, "STOP").await,
            Backend::Compose { command, .. } => compose(command, &["pause", &service(node)]).await,
        }
    }

    /// Resume a paused node.
    pub(crate) async fn unpause(&mut self, node: i32) -> anyhow::Result<()> {
        match self {
            Backend::Dev { nodes, .. } => signal(pid_of(nodes, node)?, "CONT").await,
            Backend::Compose { command, .. } => {
                compose(command, &["unpause", &service(node)]).await
            }
        }
    }

    /// Clean stop (SIGTERM), waiting for the node to exit.
    pub(crate) async fn stop(&mut self, node: i32) -> anyhow::Result<()> {
        match self {
            Backend::Dev { nodes, .. } => {
                let pid = pid_of(nodes, node)?;
                signal(pid, "TERM").await?;
                let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
                while alive(pid) {
                    if tokio::time::Instant::now() >= deadline {
                        signal(pid, "KILL").await?;
                        break;
                    }
                    tokio::time::sleep(EXIT_POLL).await;
                }
                Ok(())
            }
            Backend::Compose { command, .. } => {
                compose(command, &["stop", "-t", "30", &service(node)]).await
            }
        }
    }

    /// Start a stopped or killed node again; returns the new process id with `--dev` (the
    /// process outlives `gregor verify`, so it is printed for whoever stops it).
    pub(crate) async fn start(&mut self, node: i32) -> anyhow::Result<Option<u32>> {
        match self {
            Backend::Dev { dir, nodes } => {
                let n = nodes
                    .get_mut(&node)
                    .with_context(|| format!("no node {node}"))?;
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(format!("node-{node}.log")))
                    .context("open the node log")?;
                let child = Command::new("sh")
                    .arg("-c")
                    .arg(format!("exec {}", n.restart))
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().context("node log")?)
                    .stderr(log)
                    // Its own process group: Ctrl-C of `gregor verify` does not reach it.
                    .process_group(0)
                    .spawn()
                    .with_context(|| format!("run node {node}'s restart command"))?;
                n.pid = child
                    .id()
                    .with_context(|| format!("node {node} exited at once"))?;
                Ok(Some(n.pid))
            }
            Backend::Compose { command, .. } => compose(command, &["start", &service(node)])
                .await
                .map(|()| None),
        }
    }
}

/// The compose service of a node id.
pub(crate) fn service(node: i32) -> String {
    format!("node-{node}")
}

fn pid_of(nodes: &BTreeMap<i32, DevNode>, node: i32) -> anyhow::Result<u32> {
    nodes
        .get(&node)
        .map(|n| n.pid)
        .with_context(|| format!("no node {node} in nodes.txt"))
}

/// Whether a process exists (and is not a zombie we could reap: `gregor dev` reaps its own).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

async fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .await
        .context("run kill")?;
    if !status.success() {
        bail!("kill -{name} {pid} failed ({status})");
    }
    Ok(())
}

async fn compose(command: &[String], args: &[&str]) -> anyhow::Result<()> {
    let (program, base) = command.split_first().context("empty compose command")?;
    let out = Command::new(program)
        .args(base)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("run {program}"))?;
    if !out.status.success() {
        bail!(
            "{} {} failed: {}",
            command.join(" "),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gregor_dev_output_parses() {
        let text = "bootstrap: 127.0.0.1:9092,127.0.0.1:9093\n\
            node 1: pid 4813, kafka 127.0.0.1:9092, controller 127.0.0.1:9192, replication 127.0.0.1:9292\n\
            \x20 restart: /bin/gregor server --node-id 1 --log-dirs '/tmp/a b/node-1'\n\
            node 2: pid 4814, kafka 127.0.0.1:9093, controller 127.0.0.1:9193, replication 127.0.0.1:9293\n\
            \x20 restart: /bin/gregor server --node-id 2\n\
            cluster 6af7, data and node-N.log files in /tmp/x; Ctrl-C stops every node\n\
            node 2 (pid 4814) exited: signal: 9 (SIGKILL)\n";
        let nodes = parse_nodes(text).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(
            nodes[&1],
            DevNode {
                pid: 4813,
                kafka: "127.0.0.1:9092".into(),
                restart: "/bin/gregor server --node-id 1 --log-dirs '/tmp/a b/node-1'".into()
            }
        );
        assert_eq!(nodes[&2].pid, 4814);
        assert!(parse_nodes("nothing here\n").is_err());
        assert!(
            parse_nodes("node 1: pid 5, kafka 127.0.0.1:1\n").is_err(),
            "no restart line"
        );
    }
}
