//! `gregor group …`: list, describe (members, assignment, committed offset and lag per
//! partition), delete, and reset the offsets of an empty group — kafka-consumer-groups.sh's
//! everyday commands.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use bytes::Buf;
use clap::{ArgGroup, Args, Subcommand};
use gregor_client::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use gregor_client::kafka_protocol::messages::{
    ConsumerProtocolAssignment, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest,
    GroupId, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use gregor_client::kafka_protocol::protocol::{Decodable, StrBytes};
use gregor_client::{Client, ClientError, Connection};

use crate::DEFAULT_BOOTSTRAP;

#[derive(Debug, Args)]
pub(crate) struct GroupArgs {
    /// Comma-separated broker addresses.
    #[arg(long, global = true, default_value = DEFAULT_BOOTSTRAP, env = "GREGOR_BOOTSTRAP",
          visible_alias = "bootstrap-server")]
    bootstrap: String,
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// List consumer groups with their state.
    List,
    /// Show a group's state and members, and per partition its committed offset, log end
    /// offset, lag and owner.
    Describe {
        /// The group.
        group: String,
    },
    /// Delete empty groups and their committed offsets.
    Delete {
        /// The groups.
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Set an empty group's committed offsets for a topic.
    #[command(group(ArgGroup::new("to").required(true).args(["to_earliest", "to_latest", "to_offset"])))]
    ResetOffsets {
        /// The group (must have no active members).
        group: String,
        /// The topic whose partitions are reset (all of them).
        #[arg(long)]
        topic: String,
        /// The first offset still in the log.
        #[arg(long)]
        to_earliest: bool,
        /// The log end (skip everything present).
        #[arg(long)]
        to_latest: bool,
        /// An absolute offset, for every partition.
        #[arg(long, value_name = "N")]
        to_offset: Option<i64>,
    },
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn check(code: i16, what: &str) -> anyhow::Result<()> {
    match ClientError::from_code(code, None) {
        Some(e) => Err(e).with_context(|| what.to_string()),
        None => Ok(()),
    }
}

/// A connection to the group's coordinator (FindCoordinator, then its advertised address).
async fn coordinator(client: &mut Client, group: &str) -> anyhow::Result<Connection> {
    let req = FindCoordinatorRequest::default().with_key(s(group));
    let resp = client.any()?.send_version(&req, 3).await?;
    check(resp.error_code, "find coordinator")?;
    let addr = format!("{}:{}", resp.host, resp.port);
    Connection::connect(&addr)
        .await
        .with_context(|| format!("connect to coordinator {addr}"))
}

/// A consumer-protocol assignment as (topic, partitions), or `None` if it is not one.
fn decode_assignment(bytes: &bytes::Bytes) -> Option<Vec<(String, Vec<i32>)>> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16().clamp(0, 3);
    let a = ConsumerProtocolAssignment::decode(&mut buf, version).ok()?;
    Some(
        a.assigned_partitions
            .into_iter()
            .map(|tp| (tp.topic.0.to_string(), tp.partitions))
            .collect(),
    )
}

pub(crate) async fn run(args: GroupArgs) -> anyhow::Result<()> {
    let mut client = Client::connect(&args.bootstrap).await?;
    match args.command {
        GroupCommand::List => {
            let resp = client
                .any()?
                .send_version(&ListGroupsRequest::default(), 4)
                .await?;
            check(resp.error_code, "list groups")?;
            let mut groups: Vec<_> = resp.groups.into_iter().collect();
            groups.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
            println!("{:<40} {:<20} PROTOCOL-TYPE", "GROUP", "STATE");
            for g in groups {
                println!(
                    "{:<40} {:<20} {}",
                    g.group_id.0.as_str(),
                    g.group_state.as_str(),
                    g.protocol_type.as_str()
                );
            }
        }
        GroupCommand::Describe { group } => describe(&mut client, &group).await?,
        GroupCommand::Delete { groups } => {
            for group in groups {
                let mut conn = coordinator(&mut client, &group).await?;
                let req =
                    DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(&group))]);
                let resp = conn.send_version(&req, 2).await?;
                for r in resp.results {
                    check(r.error_code, &format!("delete group {group}"))?;
                }
                println!("Deleted group {group}.");
            }
        }
        GroupCommand::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
        } => {
            let mut conn = coordinator(&mut client, &group).await?;
            let described = conn
                .send_version(
                    &DescribeGroupsRequest::default().with_groups(vec![GroupId(s(&group))]),
                    5,
                )
                .await?;
            let state = described
                .groups
                .first()
                .map(|g| g.group_state.to_string())
                .unwrap_or_default();
            // Active members would overwrite the reset with their next commit (Kafka's tool
            // refuses for the same reason).
            if state != "Empty" && state != "Dead" {
                bail!("group {group} has active members (state {state}); stop them first");
            }
            let partitions = client.partition_count(&topic).await?;
            let mut targets = Vec::new();
            for p in 0..partitions {
                let offset = match (to_earliest, to_latest, to_offset) {
                    (true, _, _) => client.list_offset(&topic, p, -2).await?.0,
                    (_, true, _) => client.list_offset(&topic, p, -1).await?.0,
                    (_, _, Some(n)) => n,
                    _ => bail!("give --to-earliest, --to-latest or --to-offset"),
                };
                targets.push((p, offset));
            }
            let req = OffsetCommitRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_generation_id_or_member_epoch(-1)
                .with_member_id(s(""))
                .with_topics(vec![
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(&topic)))
                        .with_partitions(
                            targets
                                .iter()
                                .map(|(p, o)| {
                                    OffsetCommitRequestPartition::default()
                                        .with_partition_index(*p)
                                        .with_committed_offset(*o)
                                        .with_committed_leader_epoch(-1)
                                })
                                .collect(),
                        ),
                ]);
            let resp = conn.send_version(&req, 8).await?;
            for t in &resp.topics {
                for p in &t.partitions {
                    check(
                        p.error_code,
                        &format!("commit {topic}-{}", p.partition_index),
                    )?;
                }
            }
            println!("{:<30} {:>9} NEW-OFFSET", "TOPIC", "PARTITION");
            for (p, o) in targets {
                println!("{topic:<30} {p:>9} {o}");
            }
        }
    }
    Ok(())
}

async fn describe(client: &mut Client, group: &str) -> anyhow::Result<()> {
    let mut conn = coordinator(client, group).await?;
    let resp = conn
        .send_version(
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]),
            5,
        )
        .await?;
    let g = resp
        .groups
        .into_iter()
        .next()
        .context("empty describe-groups response")?;
    check(g.error_code, &format!("describe group {group}"))?;
    // Owner of each partition, from the members' consumer-protocol assignments.
    let mut owners: BTreeMap<(String, i32), (String, String, String)> = BTreeMap::new();
    println!(
        "Group {group}: state {}, protocol {} {}",
        g.group_state.as_str(),
        g.protocol_type.as_str(),
        g.protocol_data.as_str()
    );
    println!(
        "{:<50} {:<16} {:<20} ASSIGNMENT",
        "MEMBER-ID", "HOST", "CLIENT-ID"
    );
    for m in &g.members {
        let assigned = decode_assignment(&m.member_assignment).unwrap_or_default();
        let shown: Vec<String> = assigned
            .iter()
            .map(|(t, ps)| {
                let ps: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
                format!("{t}:{}", ps.join(","))
            })
            .collect();
        println!(
            "{:<50} {:<16} {:<20} {}",
            m.member_id.as_str(),
            m.client_host.as_str(),
            m.client_id.as_str(),
            if shown.is_empty() {
                "-".to_string()
            } else {
                shown.join(" ")
            }
        );
        for (t, ps) in assigned {
            for p in ps {
                owners.insert(
                    (t.clone(), p),
                    (
                        m.member_id.to_string(),
                        m.client_host.to_string(),
                        m.client_id.to_string(),
                    ),
                );
            }
        }
    }
    // All committed offsets (null topic list), v7.
    let fetched = conn
        .send_version(
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(None),
            7,
        )
        .await?;
    check(fetched.error_code, "fetch offsets")?;
    let mut rows: BTreeMap<(String, i32), Option<i64>> = BTreeMap::new();
    for t in &fetched.topics {
        for p in &t.partitions {
            check(p.error_code, "fetch offsets")?;
            rows.insert(
                (t.name.0.to_string(), p.partition_index),
                (p.committed_offset >= 0).then_some(p.committed_offset),
            );
        }
    }
    for tp in owners.keys() {
        rows.entry(tp.clone()).or_insert(None);
    }
    println!();
    println!(
        "{:<30} {:>9} {:>14} {:>14} {:>8} CONSUMER-ID",
        "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"
    );
    for ((topic, p), committed) in rows {
        let end = client.list_offset(&topic, p, -1).await.ok().map(|(o, _)| o);
        let lag = match (committed, end) {
            (Some(c), Some(e)) => (e - c).max(0).to_string(),
            _ => "-".to_string(),
        };
        let show = |o: Option<i64>| o.map_or("-".to_string(), |o| o.to_string());
        let owner = owners
            .get(&(topic.clone(), p))
            .map_or("-".to_string(), |(id, _, _)| id.clone());
        println!(
            "{topic:<30} {p:>9} {:>14} {:>14} {lag:>8} {owner}",
            show(committed),
            show(end)
        );
    }
    Ok(())
}
