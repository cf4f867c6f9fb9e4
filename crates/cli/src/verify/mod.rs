//! `gregor verify`: a durability check users can run against their own cluster.
//!
//! N producers write unique self-checking values (`gregor_verify::make_value`, CRC-32C
//! payloads) to a topic at the chosen `acks` (idempotent with `--idempotent`), live `assign` readers follow every partition, and
//! an optional seeded fault plan ([`plan`]) hits the nodes of a `gregor dev` or compose cluster
//! through a [`backend`]. After the last fault is healed, every partition is read back (the final
//! read) and the history goes to `gregor_verify::check`; the §6.6 report is printed and the exit
//! code is non-zero when an invariant broke (e.g. an acknowledged record was lost).
//!
//! Layout: `plan` (the pure fault plan and flag parsing), `backend` (dev processes / compose
//! services), `workload` (producers, readers, final read).

mod backend;
mod plan;
mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use gregor_client::Client;
use gregor_verify::{CheckOptions, FaultWindow, MAX_WRITER, Recorder, RunInfo};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::backend::Backend;
pub(crate) use self::plan::parse_duration;
use self::plan::{FaultKind, PlannedFault, Target};
use self::workload::Workload;

/// Bound on the final read after the workload.
const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on finding a partition's leader for a leader kill.
const LEADER_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Bootstrap servers (default: the dev cluster's Kafka ports with --dev, else 127.0.0.1:9092).
    #[arg(long, visible_alias = "bootstrap-server", env = "GREGOR_BOOTSTRAP")]
    bootstrap: Option<String>,
    /// The topic written (it must exist; create it with the replication you want to test).
    #[arg(long, default_value = "gregor-verify")]
    topic: String,
    /// Producer `acks`: 0, 1 or all (-1).
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    acks: i16,
    /// Idempotent producers (Kafka's `enable.idempotence=true`; needs `--acks all`): retries
    /// cannot duplicate a record, so duplicates and reordered sends make the run invalid.
    #[arg(long)]
    idempotent: bool,
    /// Number of producers (writer ids 0..N).
    #[arg(long, default_value_t = 2)]
    producers: u32,
    /// Sends per second per producer (one send in flight each).
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Live `assign` readers following every partition while the producers run.
    #[arg(long, default_value_t = 1)]
    consumers: u32,
    /// How long the producers run, e.g. 30s or 2m.
    #[arg(long, default_value = "30s", value_parser = plan::parse_duration)]
    duration: Duration,
    /// Faults to draw from: kill9, pause, restart, leader-kill (comma-separated; none by
    /// default). Needs --dev or --compose.
    #[arg(long, value_delimiter = ',')]
    faults: Vec<FaultKind>,
    /// Time between faults; each is healed half an interval after it was injected.
    #[arg(long, default_value = "10s", value_parser = plan::parse_duration)]
    fault_interval: Duration,
    /// Seed of the fault plan (printed in the report; the same seed gives the same plan).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fault a `gregor dev` cluster: DIR/nodes.txt holds gregor dev's output (`gregor dev
    /// --data-dir DIR | tee DIR/nodes.txt`).
    #[arg(long, value_name = "DIR", conflicts_with = "compose")]
    dev: Option<PathBuf>,
    /// Fault the `node-N` services of a compose project (deploy/compose.yaml).
    #[arg(long)]
    compose: bool,
    /// The compose file (with --compose).
    #[arg(long, default_value = "deploy/compose.yaml")]
    compose_file: PathBuf,
    /// The compose project name (with --compose).
    #[arg(long, default_value = "gregor")]
    compose_project: String,
    /// The compose command (default: `docker compose` when Compose v2 is installed, else
    /// `docker-compose`).
    #[arg(long)]
    compose_command: Option<String>,
    /// Nodes of the compose project (services node-1..node-N).
    #[arg(long, default_value_t = 3)]
    nodes: i32,
    /// Bound on one send, the client's retries included.
    #[arg(long, default_value = "10s", value_parser = plan::parse_duration)]
    request_timeout: Duration,
    /// Write the results (the report's figures, anomalies and run settings) as JSON here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Write the whole history (JSON Lines) here.
    #[arg(long, value_name = "PATH")]
    history: Option<PathBuf>,
}

fn parse_acks(value: &str) -> Result<i16, String> {
    match value {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        other => Err(format!("acks must be 0, 1 or all, not {other:?}")),
    }
}

impl VerifyArgs {
    /// Checks the flags against each other (clap checks each alone).
    fn validate(&self) -> anyhow::Result<()> {
        if self.producers == 0 || self.producers > MAX_WRITER {
            bail!("--producers must be in 1..={MAX_WRITER}");
        }
        if self.idempotent {
            // Kafka refuses enable.idempotence with acks other than all; so does the client.
            gregor_client::idempotent::require_acks_all(self.acks)
                .map_err(|e| anyhow::anyhow!("--idempotent: {e}"))?;
        }
        if self.rate == 0 {
            bail!("--rate must be at least 1");
        }
        if self.duration.is_zero() {
            bail!("--duration must be positive");
        }
        if !self.faults.is_empty() {
            if self.dev.is_none() && !self.compose {
                bail!("--faults needs a cluster to fault: --dev DIR or --compose");
            }
            if self.fault_interval.is_zero() {
                bail!("--fault-interval must be positive");
            }
            if self.fault_interval + self.fault_interval / 2 > self.duration {
                bail!(
                    "--duration {:?} leaves no room for a fault every {:?} (each is healed half an interval later)",
                    self.duration,
                    self.fault_interval
                );
            }
        }
        if self.compose && self.nodes < 1 {
            bail!("--nodes must be at least 1");
        }
        Ok(())
    }
}

pub(crate) async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    args.validate()?;
    let mut backend = match (&args.dev, args.compose) {
        (Some(dir), _) => Some(Backend::dev(dir)?),
        (None, true) => Some(
            Backend::compose(
                args.compose_command.as_deref(),
                &args.compose_project,
                &args.compose_file,
                args.nodes,
            )
            .await?,
        ),
        (None, false) => None,
    };
    let bootstrap = args
        .bootstrap
        .clone()
        .or_else(|| backend.as_ref().and_then(Backend::bootstrap))
        .unwrap_or_else(|| crate::DEFAULT_BOOTSTRAP.to_string());

    let mut admin = Client::connect(&bootstrap)
        .await
        .with_context(|| format!("connect to {bootstrap}"))?;
    let partitions = partition_count(&mut admin, &args.topic).await?;
    let nodes = backend.as_ref().map(Backend::node_ids).unwrap_or_default();
    let faults = plan::plan(
        &args.faults,
        args.fault_interval,
        args.duration,
        &nodes,
        partitions,
        args.seed,
    );
    let acks_name = match args.acks {
        -1 => "all".to_string(),
        a => a.to_string(),
    };
    println!(
        "verify: topic {} ({partitions} partitions) via {bootstrap}; {} {}producers x {}/s acks={acks_name} for {:?}; {} readers; {} faults (seed {})",
        args.topic,
        args.producers,
        if args.idempotent { "idempotent " } else { "" },
        args.rate,
        args.duration,
        args.consumers,
        faults.len(),
        args.seed
    );

    let workload = Arc::new(Workload {
        bootstrap: bootstrap.clone(),
        topic: args.topic.clone(),
        partitions,
        acks: args.acks,
        rate: args.rate,
        request_timeout: args.request_timeout,
        filler: 64,
        idempotent: args.idempotent,
    });
    let rec = Arc::new(Recorder::new());
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    for writer in 0..args.producers {
        tasks.spawn(workload::produce(
            Arc::clone(&workload),
            writer,
            Arc::clone(&rec),
            stop.clone(),
        ));
    }
    for reader in 0..args.consumers {
        tasks.spawn(workload::read(
            Arc::clone(&workload),
            reader,
            Arc::clone(&rec),
            stop.clone(),
        ));
    }

    let started = Instant::now();
    let start = tokio::time::Instant::now();
    let mut windows = Vec::new();
    let mut fault_error = None;
    if let Some(backend) = backend.as_mut() {
        match run_faults(backend, &faults, start, &mut admin, &args.topic, &rec).await {
            Ok(w) => windows = w,
            Err(e) => fault_error = Some(e),
        }
    }
    tokio::time::sleep_until(start + args.duration).await;
    stop.cancel();
    while let Some(joined) = tasks.join_next().await {
        joined.context("workload task")??;
    }
    let duration = started.elapsed();
    if let Some(e) = fault_error {
        return Err(e.context("a fault could not be injected or healed; the run is not checked"));
    }

    workload::final_read(
        &workload,
        &rec,
        tokio::time::Instant::now() + FINAL_READ_TIMEOUT,
    )
    .await?;

    let events = rec.snapshot();
    let result = gregor_verify::check(
        &events,
        &CheckOptions {
            idempotent: args.idempotent,
            fault_windows: windows,
        },
    );
    let kinds: Vec<&str> = args.faults.iter().map(|k| k.name()).collect();
    let info = RunInfo {
        scenario: if args.idempotent {
            format!("gregor verify --idempotent {}", args.topic)
        } else {
            format!("gregor verify {}", args.topic)
        },
        seed: Some(args.seed),
        duration,
        faults: faults.len(),
        fault_kind: if kinds.is_empty() {
            "none".into()
        } else {
            kinds.join(",")
        },
        acks: acks_name,
    };
    print!("{}", gregor_verify::render(&info, &result));
    if let Some(path) = &args.history {
        gregor_verify::save_jsonl(path, &events)
            .with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&gregor_verify::results_json(&info, &result))?;
        std::fs::write(path, json).with_context(|| format!("write {}", path.display()))?;
    }
    if !result.valid {
        bail!(
            "INVALID: {} (acked lost: {})",
            result.fatal.join(", "),
            result.acked_lost
        );
    }
    println!("VALID: no invariant broken");
    Ok(())
}

/// The topic's partition count; the topic must exist (no auto-creation).
async fn partition_count(admin: &mut Client, topic: &str) -> anyhow::Result<i32> {
    let md = admin
        .metadata(Some(&[topic.to_string()]), false)
        .await
        .context("metadata")?;
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .with_context(|| format!("no metadata for {topic}"))?;
    if t.error_code != 0 || t.partitions.is_empty() {
        bail!(
            "topic {topic} is not usable (error code {}); create it first, e.g. gregor topic create {topic} --partitions 3 --replication-factor 3 --config min.insync.replicas=2",
            t.error_code
        );
    }
    i32::try_from(t.partitions.len()).context("partition count")
}

/// Executes the plan on the workload's clock; returns the fault windows (history clock).
async fn run_faults(
    backend: &mut Backend,
    faults: &[PlannedFault],
    start: tokio::time::Instant,
    admin: &mut Client,
    topic: &str,
    rec: &Recorder,
) -> anyhow::Result<Vec<FaultWindow>> {
    let mut windows = Vec::new();
    for f in faults {
        tokio::time::sleep_until(start + f.at).await;
        let node = match f.target {
            Target::Node(n) => n,
            Target::LeaderOf(p) => leader_of(admin, topic, p).await?,
        };
        let label = format!("{} node {node}", f.kind);
        let t0 = rec.now_ns();
        match f.kind {
            FaultKind::Kill9 | FaultKind::LeaderKill => backend.kill(node).await?,
            FaultKind::Pause => backend.pause(node).await?,
            FaultKind::Restart => backend.stop(node).await?,
        }
        println!("fault: {label} at {:.1}s", f.at.as_secs_f64());
        tokio::time::sleep_until(start + f.heal_at).await;
        let pid = match f.kind {
            FaultKind::Pause => {
                backend.unpause(node).await?;
                None
            }
            _ => backend.start(node).await?,
        };
        match pid {
            Some(pid) => println!(
                "heal: {label} at {:.1}s (new pid {pid})",
                f.heal_at.as_secs_f64()
            ),
            None => println!("heal: {label} at {:.1}s", f.heal_at.as_secs_f64()),
        }
        windows.push(FaultWindow {
            start_ns: t0,
            end_ns: rec.now_ns(),
            label,
        });
    }
    Ok(windows)
}

/// The current leader of `topic`-`partition`, from fresh metadata (retried until a leader is
/// known or the bound passes).
async fn leader_of(admin: &mut Client, topic: &str, partition: i32) -> anyhow::Result<i32> {
    let deadline = tokio::time::Instant::now() + LEADER_LOOKUP_TIMEOUT;
    loop {
        if let Ok(md) = admin.metadata(Some(&[topic.to_string()]), false).await {
            let leader = md
                .topics
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
                .and_then(|t| t.partitions.iter().find(|p| p.partition_index == partition))
                .map(|p| p.leader_id.0);
            if let Some(l) = leader.filter(|l| *l >= 0) {
                return Ok(l);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("no leader for {topic}-{partition} within {LEADER_LOOKUP_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: VerifyArgs,
    }

    fn parse(argv: &[&str]) -> anyhow::Result<VerifyArgs> {
        let cli = Cli::try_parse_from(std::iter::once("verify").chain(argv.iter().copied()))?;
        cli.args.validate()?;
        Ok(cli.args)
    }

    #[test]
    fn flags_are_validated() {
        let a = parse(&["--acks", "all"]).unwrap();
        assert_eq!(a.acks, -1);
        assert!(a.faults.is_empty());
        assert_eq!(parse(&["--acks", "1"]).unwrap().acks, 1);
        assert!(parse(&["--acks", "2"]).is_err());
        // Faults need a backend, and room in the duration.
        assert!(parse(&["--faults", "kill9"]).is_err());
        let a = parse(&["--faults", "leader-kill,pause", "--compose"]).unwrap();
        assert_eq!(a.faults, vec![FaultKind::LeaderKill, FaultKind::Pause]);
        assert!(
            parse(&[
                "--faults",
                "kill9",
                "--compose",
                "--duration",
                "5s",
                "--fault-interval",
                "10s"
            ])
            .is_err()
        );
        assert!(
            parse(&["--dev", "/tmp/x", "--compose"]).is_err(),
            "one backend"
        );
        assert!(parse(&["--producers", "0"]).is_err());
        // Idempotence needs acks=all, as in Kafka.
        assert!(parse(&["--idempotent"]).unwrap().idempotent);
        assert!(!parse(&[]).unwrap().idempotent);
        for acks in ["0", "1"] {
            let e = parse(&["--idempotent", "--acks", acks]).unwrap_err();
            assert!(e.to_string().contains("acks=all"), "{e}");
        }
        assert!(parse(&["--faults", "partition", "--compose"]).is_err());
    }
}
