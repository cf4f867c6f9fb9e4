//! `gregor cluster describe`: the controller quorum (leader, term, voters and their lag) and the
//! registered brokers (alive or fenced, with their epochs). `gregor cluster watch` ([`watch`]):
//! the same, live, with every partition's leader, ISR and high watermark and the events that
//! change them.

mod watch;

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use gregor_proto::controller::v1 as pb;
use gregor_proto::controller::v1::controller_admin_client::ControllerAdminClient;

/// Default controller addresses: the three controllers of `gregor dev` (Kafka port + 100, see
/// `docs/dev.md`). Kafka's conventional controller port 9093 is `gregor dev`'s second Kafka
/// listener, so it would be the wrong default here.
pub(crate) const DEFAULT_CONTROLLERS: &str = "127.0.0.1:9192,127.0.0.1:9193,127.0.0.1:9194";
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub(crate) struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Show the quorum leader, the voters and their lag, and the brokers with their epochs.
    Describe {
        /// Controller address(es), `HOST:PORT[,HOST:PORT...]`; the first that answers is used
        /// (a follower forwards the question to the leader).
        #[arg(long, default_value = DEFAULT_CONTROLLERS)]
        controller: String,
    },
    /// A live view: controller leader, brokers alive or fenced, every partition's leader, epoch,
    /// ISR and high watermark, and timestamped events (leader changes, ISR shrink/expand,
    /// fencing). On a terminal the screen refreshes in place; piped (or `--plain`) it prints one
    /// line per event.
    Watch(watch::WatchArgs),
}

pub(crate) async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Describe { controller } => {
            let reply = describe_any(&controller).await?;
            print!("{}", render(&reply));
            Ok(())
        }
        ClusterCommand::Watch(args) => watch::run(args).await,
    }
}

/// Asks each controller in the comma list in turn; returns the first answer.
async fn describe_any(controllers: &str) -> anyhow::Result<pb::DescribeClusterReply> {
    let mut errors = Vec::new();
    for addr in controllers
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        match describe(addr).await {
            Ok(reply) => return Ok(reply),
            Err(e) => errors.push(format!("{addr}: {e:#}")),
        }
    }
    if errors.is_empty() {
        bail!("no controller address given");
    }
    bail!("no controller answered ({})", errors.join("; "))
}

async fn describe(addr: &str) -> anyhow::Result<pb::DescribeClusterReply> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .context("controller address")?
        .connect_timeout(TIMEOUT)
        .timeout(TIMEOUT)
        .connect()
        .await
        .context("connect")?;
    let reply = ControllerAdminClient::new(channel)
        .describe_cluster(pb::DescribeClusterRequest::default())
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?;
    Ok(reply.into_inner())
}

fn render(d: &pb::DescribeClusterReply) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "Cluster id:      {}", d.cluster_id);
    match d.leader_id {
        Some(id) => {
            let _ = writeln!(
                out,
                "Quorum leader:   {id} ({}), term {}",
                d.leader_address, d.term
            );
        }
        None => {
            let _ = writeln!(out, "Quorum leader:   none known, term {}", d.term);
        }
    }
    if d.from_leader {
        let _ = writeln!(
            out,
            "Log:             committed {}, applied {}, last {}",
            d.committed_index, d.applied_index, d.last_log_index
        );
    } else {
        let _ = writeln!(
            out,
            "Log:             applied {} on controller {} (leader unreachable: lags unknown)",
            d.applied_index, d.answered_by
        );
    }
    let _ = writeln!(out, "Voters:");
    let _ = writeln!(
        out,
        "  {:<6} {:<24} {:<10} {:<8} ROLE",
        "ID", "ADDRESS", "MATCHED", "LAG"
    );
    for v in &d.voters {
        let opt = |x: Option<u64>| x.map_or_else(|| "-".to_owned(), |v| v.to_string());
        let role = if Some(v.id) == d.leader_id {
            "leader"
        } else {
            "follower"
        };
        let _ = writeln!(
            out,
            "  {:<6} {:<24} {:<10} {:<8} {role}",
            v.id,
            v.address,
            opt(v.matched_index),
            opt(v.lag)
        );
    }
    let _ = writeln!(out, "Brokers:");
    if d.brokers.is_empty() {
        let _ = writeln!(out, "  (none registered)");
        return out;
    }
    let _ = writeln!(
        out,
        "  {:<6} {:<10} {:<8} {:<8} ENDPOINTS",
        "ID", "EPOCH", "STATE", "RACK"
    );
    for b in &d.brokers {
        let endpoints: Vec<String> = b
            .endpoints
            .iter()
            .map(|e| format!("{}://{}:{}", e.name, e.host, e.port))
            .collect();
        let _ = writeln!(
            out,
            "  {:<6} {:<10} {:<8} {:<8} {}",
            b.id,
            b.epoch,
            if b.fenced { "fenced" } else { "alive" },
            if b.rack.is_empty() { "-" } else { &b.rack },
            endpoints.join(",")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_leader_voters_and_brokers() {
        let d = pb::DescribeClusterReply {
            cluster_id: "c1".into(),
            answered_by: 2,
            from_leader: true,
            leader_id: Some(2),
            leader_address: "127.0.0.1:9094".into(),
            term: 3,
            committed_index: 10,
            applied_index: 10,
            last_log_index: 11,
            voters: vec![
                pb::VoterStatus {
                    id: 1,
                    address: "127.0.0.1:9093".into(),
                    matched_index: Some(9),
                    lag: Some(2),
                },
                pb::VoterStatus {
                    id: 2,
                    address: "127.0.0.1:9094".into(),
                    matched_index: Some(11),
                    lag: Some(0),
                },
            ],
            brokers: vec![pb::BrokerStatus {
                id: 7,
                epoch: 4,
                fenced: true,
                rack: String::new(),
                endpoints: vec![pb::Endpoint {
                    name: "PLAINTEXT".into(),
                    host: "h".into(),
                    port: 9092,
                }],
            }],
        };
        let text = render(&d);
        assert!(
            text.contains("Quorum leader:   2 (127.0.0.1:9094), term 3"),
            "{text}"
        );
        assert!(text.contains("committed 10, applied 10, last 11"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == ["1", "127.0.0.1:9093", "9", "2", "follower"]),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == ["7", "4", "fenced", "-", "PLAINTEXT://h:9092"]),
            "{text}"
        );
    }
}
