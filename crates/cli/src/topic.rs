//! `gregor topic …`, with kafka-topics.sh's flag names.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use gregor_client::Client;
use gregor_client::kafka_protocol::messages::BrokerId;

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
    /// Show partitions, leaders, replicas and in-sync replicas, and non-default configs.
    Describe {
        #[command(flatten)]
        topic: TopicName,
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
        TopicCommand::Describe { topic } => {
            let topic = topic.get()?;
            describe(&mut client, &topic).await?;
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

async fn describe(client: &mut Client, topic: &str) -> anyhow::Result<()> {
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
    let rf = t.partitions.first().map_or(0, |p| p.replica_nodes.len());
    println!(
        "Topic: {topic}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {rf}\tConfigs: {}",
        t.topic_id,
        t.partitions.len(),
        overrides.join(",")
    );
    let mut parts: Vec<_> = t.partitions.iter().collect();
    parts.sort_by_key(|p| p.partition_index);
    for p in parts {
        let ids = |v: &[BrokerId]| {
            v.iter()
                .map(|b| b.0.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        println!(
            "\tTopic: {topic}\tPartition: {}\tLeader: {}\tLeaderEpoch: {}\tReplicas: {}\tIsr: {}",
            p.partition_index,
            p.leader_id.0,
            p.leader_epoch,
            ids(&p.replica_nodes),
            ids(&p.isr_nodes),
        );
    }
    Ok(())
}
