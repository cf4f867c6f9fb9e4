//! `gregor topic …`, with kafka-topics.sh's flag names.
//!
//! `topic describe` prints kafka-topics.sh's lines (leader, leader epoch, replicas, ISR from the
//! Kafka Metadata API) plus each partition's high watermark and every replica's log end offset,
//! asked from the partition leader's `Replication.DescribeReplicas`. The leaders' replication
//! addresses come from the controller quorum (`--controller`, its `DescribeCluster` lists the
//! brokers' `REPLICATION` endpoints); without it, or when a leader does not answer, those
//! columns show `-`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use gregor_client::Client;
use gregor_client::kafka_protocol::messages::BrokerId;
use gregor_client::kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use gregor_proto::replication::v1 as rpb;
use gregor_proto::replication::v1::replication_client::ReplicationClient;

use crate::{DEFAULT_BOOTSTRAP, parse_key_value};

#[derive(Debug, Args)]
pub(crate) struct TopicArgs {
    /// Comma-separated broker addresses.
    #[arg(long, global = true, default_value = DEFAULT_BOOTSTRAP, env = "GREGOR_BOOTSTRAP",
          visible_alias = "bootstrap-server")]
    bootstrap: String,
    #[command(subcommand)]
    command: TopicCommand,
}

/// A topic name given either positionally or as `--topic` (kafka-topics.sh style).
#[derive(Debug, Args)]
struct TopicName {
    /// The topic.
    #[arg(value_name = "TOPIC")]
    name: Option<String>,
    /// The topic (kafka-topics.sh spelling).
    #[arg(long = "topic", conflicts_with = "name")]
    topic: Option<String>,
}

impl TopicName {
    fn get(self) -> anyhow::Result<String> {
        match self.name.or(self.topic) {
            Some(t) => Ok(t),
            None => bail!("a topic name is required (TOPIC or --topic TOPIC)"),
        }
    }
}

#[derive(Debug, Subcommand)]
enum TopicCommand {
    /// Create a topic.
    Create {
        #[command(flatten)]
        topic: TopicName,
        /// Number of partitions (the broker's num.partitions when omitted).
        #[arg(long)]
        partitions: Option<i32>,
        /// Replication factor (the broker's default.replication.factor when omitted).
        #[arg(long)]
        replication_factor: Option<i16>,
        /// A topic config override, `key=value`; repeatable.
        #[arg(long = "config", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
    },
    /// List topic names.
    List,
    /// Show partitions, leaders, replicas and in-sync replicas, high watermarks and replica
    /// log end offsets, and non-default configs.
    Describe {
        #[command(flatten)]
        topic: TopicName,
        /// Controller address(es), `HOST:PORT[,...]`: where to find the leaders' replication
        /// endpoints for the HighWatermark and LogEndOffsets columns (`-` without it).
        #[arg(long)]
        controller: Option<String>,
    },
    /// Delete a topic.
    Delete {
        #[command(flatten)]
        topic: TopicName,
    },
    /// Raise the partition count and change configs.
    Alter {
        #[command(flatten)]
        topic: TopicName,
        /// New (larger) partition count.
        #[arg(long)]
        partitions: Option<i32>,
        /// Set a config, `key=value`; repeatable.
        #[arg(long = "config", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        /// Remove a config override (back to the default); repeatable.
        #[arg(long = "delete-config")]
        delete_configs: Vec<String>,
    },
}

pub(crate) async fn run(args: TopicArgs) -> anyhow::Result<()> {
    let mut client = Client::connect(&args.bootstrap).await?;
    match args.command {
        TopicCommand::Create {
            topic,
            partitions,
            replication_factor,
            configs,
        } => {
            let topic = topic.get()?;
            client
                .create_topic(
                    &topic,
                    partitions.unwrap_or(-1),
                    replication_factor.unwrap_or(-1),
                    &configs,
                )
                .await?;
            println!("Created topic {topic}.");
        }
        TopicCommand::List => {
            let meta = client.metadata(None, false).await?;
            let mut names: Vec<String> = meta
                .topics
                .iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                .collect();
            names.sort();
            for n in names {
                println!("{n}");
            }
        }
        TopicCommand::Describe { topic, controller } => {
            let topic = topic.get()?;
            describe(&mut client, &topic, controller.as_deref()).await?;
        }
        TopicCommand::Delete { topic } => {
            let topic = topic.get()?;
            client.delete_topics(std::slice::from_ref(&topic)).await?;
            println!("Deleted topic {topic}.");
        }
        TopicCommand::Alter {
            topic,
            partitions,
            configs,
            delete_configs,
        } => {
            let topic = topic.get()?;
            if partitions.is_none() && configs.is_empty() && delete_configs.is_empty() {
                bail!("nothing to alter: give --partitions, --config or --delete-config");
            }
            if let Some(count) = partitions {
                client.create_partitions(&topic, count).await?;
            }
            if !configs.is_empty() || !delete_configs.is_empty() {
                client
                    .alter_topic_configs(&topic, &configs, &delete_configs)
                    .await?;
            }
            println!("Altered topic {topic}.");
        }
    }
    Ok(())
}

/// How long one leader may take to answer DescribeReplicas.
const REPLICAS_TIMEOUT: Duration = Duration::from_secs(3);

async fn describe(
    client: &mut Client,
    topic: &str,
    controller: Option<&str>,
) -> anyhow::Result<()> {
    let meta = client.metadata(Some(&[topic.to_string()]), false).await?;
    let t = meta
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .context("no metadata returned for the topic")?;
    if let Some(e) =
        gregor_client::ClientError::from_code(t.error_code, Some(format!("topic {topic}")))
    {
        return Err(e.into());
    }
    let configs = client.describe_topic_configs(topic).await?;
    let overrides: Vec<String> = configs
        .iter()
        .filter(|c| !c.is_default)
        .map(|c| format!("{}={}", c.name, c.value.as_deref().unwrap_or("")))
        .collect();
    let cluster_id = meta
        .cluster_id
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default();
    let progress = match controller {
        Some(c) => replica_progress(c, &cluster_id, topic, t).await,
        None => HashMap::new(),
    };
    print!("{}", render(topic, t, &overrides, &progress));
    Ok(())
}

/// The `REPLICATION` endpoint of every broker, from the controller quorum.
async fn replication_endpoints(controllers: &str) -> anyhow::Result<HashMap<i32, String>> {
    let voters: Vec<String> = controllers
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    let client = gregor_controller::client::ControllerClient::new(voters, "")?;
    let reply = client.describe_cluster(REPLICAS_TIMEOUT).await?;
    Ok(reply
        .brokers
        .into_iter()
        .filter_map(|b| {
            let e = b.endpoints.into_iter().find(|e| e.name == "REPLICATION")?;
            Some((b.id, format!("{}:{}", e.host, e.port)))
        })
        .collect())
}

/// Each partition's leader status, from `DescribeReplicas` on its leader; partitions whose
/// leader cannot be asked are left out (shown as `-`).
async fn replica_progress(
    controllers: &str,
    cluster_id: &str,
    topic: &str,
    t: &MetadataResponseTopic,
) -> HashMap<i32, rpb::LeaderPartitionStatus> {
    let endpoints = match replication_endpoints(controllers).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot reach the controller ({e:#}); HW and LEO unknown");
            return HashMap::new();
        }
    };
    let mut by_leader: BTreeMap<i32, Vec<rpb::TopicPartitionRef>> = BTreeMap::new();
    for p in &t.partitions {
        if p.leader_id.0 >= 0 {
            by_leader
                .entry(p.leader_id.0)
                .or_default()
                .push(rpb::TopicPartitionRef {
                    topic: topic.to_string(),
                    partition: p.partition_index,
                });
        }
    }
    let mut out = HashMap::new();
    for (leader, partitions) in by_leader {
        let Some(addr) = endpoints.get(&leader) else {
            continue;
        };
        let req = rpb::DescribeReplicasRequest {
            cluster_id: cluster_id.to_string(),
            partitions,
        };
        let call = async {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
                .connect_timeout(REPLICAS_TIMEOUT)
                .connect()
                .await?;
            let reply = ReplicationClient::new(channel)
                .describe_replicas(req)
                .await?
                .into_inner();
            anyhow::Ok(reply)
        };
        match tokio::time::timeout(REPLICAS_TIMEOUT, call).await {
            Ok(Ok(reply)) => {
                for s in reply.partitions.into_iter().filter(|s| s.topic == topic) {
                    out.insert(s.partition, s);
                }
            }
            Ok(Err(e)) => eprintln!("broker {leader} ({addr}): DescribeReplicas failed: {e:#}"),
            Err(_) => eprintln!("broker {leader} ({addr}): DescribeReplicas timed out"),
        }
    }
    out
}

/// kafka-topics.sh's describe lines, plus `HighWatermark` and `LogEndOffsets`
/// (`broker=offset`, in replica order) from the leaders' progress, `-` when unknown.
fn render(
    topic: &str,
    t: &MetadataResponseTopic,
    overrides: &[String],
    progress: &HashMap<i32, rpb::LeaderPartitionStatus>,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let rf = t.partitions.first().map_or(0, |p| p.replica_nodes.len());
    let _ = writeln!(
        out,
        "Topic: {topic}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {rf}\tConfigs: {}",
        t.topic_id,
        t.partitions.len(),
        overrides.join(",")
    );
    let mut parts: Vec<_> = t.partitions.iter().collect();
    parts.sort_by_key(|p| p.partition_index);
    let ids = |v: &[BrokerId]| {
        v.iter()
            .map(|b| b.0.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    for p in parts {
        let (hw, leos) = match progress.get(&p.partition_index) {
            Some(s) => {
                let leo = |b: i32| {
                    s.progress
                        .iter()
                        .find(|r| r.broker_id == b)
                        .filter(|r| r.log_end_offset >= 0)
                        .map_or("-".to_string(), |r| r.log_end_offset.to_string())
                };
                let leos = p
                    .replica_nodes
                    .iter()
                    .map(|b| format!("{}={}", b.0, leo(b.0)))
                    .collect::<Vec<_>>()
                    .join(",");
                (s.high_watermark.to_string(), leos)
            }
            None => ("-".to_string(), "-".to_string()),
        };
        let _ = writeln!(
            out,
            "\tTopic: {topic}\tPartition: {}\tLeader: {}\tLeaderEpoch: {}\tReplicas: {}\tIsr: {}\tHighWatermark: {hw}\tLogEndOffsets: {leos}",
            p.partition_index,
            p.leader_id.0,
            p.leader_epoch,
            ids(&p.replica_nodes),
            ids(&p.isr_nodes),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use gregor_client::kafka_protocol::messages::metadata_response::MetadataResponsePartition;

    use super::*;

    #[test]
    fn describe_shows_leaders_and_known_offsets() {
        let part = |i: i32, leader: i32| {
            MetadataResponsePartition::default()
                .with_partition_index(i)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(2)
                .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
                .with_isr_nodes(vec![BrokerId(1)])
        };
        let t = MetadataResponseTopic::default().with_partitions(vec![part(1, 2), part(0, 1)]);
        let mut progress = HashMap::new();
        progress.insert(
            0,
            rpb::LeaderPartitionStatus {
                partition: 0,
                high_watermark: 7,
                progress: vec![rpb::ReplicaProgress {
                    broker_id: 1,
                    log_end_offset: 9,
                    lag_ms: 0,
                }],
                ..Default::default()
            },
        );
        let text = render("t", &t, &["retention.ms=5".into()], &progress);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].contains("PartitionCount: 2\tReplicationFactor: 2\tConfigs: retention.ms=5")
        );
        assert!(
            lines[1].contains("Partition: 0\tLeader: 1\tLeaderEpoch: 2\tReplicas: 1,2\tIsr: 1")
        );
        assert!(
            lines[1].ends_with("HighWatermark: 7\tLogEndOffsets: 1=9,2=-"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].ends_with("HighWatermark: -\tLogEndOffsets: -"),
            "{}",
            lines[2]
        );
    }
}
