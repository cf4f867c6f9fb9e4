//! OffsetFetch (key 9): committed offsets of a group (v8+: of several groups). Partitions
//! without a commit answer offset -1, as Kafka does.

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext, str_bytes, topic_name};
use crate::error;
use crate::group::GroupError;
use crate::group::state::{CommittedOffset, TopicPartitionKey};

/// Served versions: 1-9 (v2+ all topics with a null list, v8+ batched groups).
pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 9 };

type Fetched = BTreeMap<String, Vec<(i32, Option<CommittedOffset>)>>;

/// The group's offsets by topic, or why this node cannot answer for the group
/// (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS).
fn fetch(
    ctx: &RequestContext,
    group_id: &str,
    wanted: Option<Vec<TopicPartitionKey>>,
) -> Result<Fetched, GroupError> {
    let mut by_topic: Fetched = BTreeMap::new();
    for ((topic, partition), o) in ctx.broker.groups().fetch_offsets(group_id, wanted)? {
        by_topic.entry(topic).or_default().push((partition, o));
    }
    Ok(by_topic)
}

fn parts<T>(
    list: Vec<(i32, Option<CommittedOffset>)>,
    make: impl Fn(i32, i64, i32, String) -> T,
) -> Vec<T> {
    list.into_iter()
        .map(|(p, o)| match o {
            Some(o) => make(p, o.offset, o.leader_epoch, o.metadata.unwrap_or_default()),
            None => make(p, -1, -1, String::new()),
        })
        .collect()
}

/// Handles OffsetFetch.
pub async fn handle(ctx: &RequestContext, req: OffsetFetchRequest) -> Reply<OffsetFetchResponse> {
    if ctx.api_version < 8 {
        let wanted = req.topics.map(|ts| {
            ts.iter()
                .flat_map(|t| {
                    t.partition_indexes
                        .iter()
                        .map(|p| (t.name.0.to_string(), *p))
                        .collect::<Vec<_>>()
                })
                .collect()
        });
        let fetched = match fetch(ctx, &req.group_id.0, wanted) {
            Ok(f) => f,
            Err(e) => {
                return Reply::Respond(
                    OffsetFetchResponse::default().with_error_code(error::group_code(Some(&e))),
                );
            }
        };
        let topics = fetched
            .into_iter()
            .map(|(name, list)| {
                OffsetFetchResponseTopic::default()
                    .with_name(topic_name(name))
                    .with_partitions(parts(list, |p, offset, epoch, meta| {
                        OffsetFetchResponsePartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(epoch)
                            .with_metadata(Some(str_bytes(meta)))
                    }))
            })
            .collect();
        return Reply::Respond(OffsetFetchResponse::default().with_topics(topics));
    }
    let groups = req
        .groups
        .into_iter()
        .map(|g| {
            let wanted = g.topics.map(|ts| {
                ts.iter()
                    .flat_map(|t| {
                        t.partition_indexes
                            .iter()
                            .map(|p| (t.name.0.to_string(), *p))
                            .collect::<Vec<_>>()
                    })
                    .collect()
            });
            let fetched = match fetch(ctx, &g.group_id.0, wanted) {
                Ok(f) => f,
                Err(e) => {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(error::group_code(Some(&e)));
                }
            };
            let topics = fetched
                .into_iter()
                .map(|(name, list)| {
                    OffsetFetchResponseTopics::default()
                        .with_name(topic_name(name))
                        .with_partitions(parts(list, |p, offset, epoch, meta| {
                            OffsetFetchResponsePartitions::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(epoch)
                                .with_metadata(Some(str_bytes(meta)))
                        }))
                })
                .collect();
            OffsetFetchResponseGroup::default()
                .with_group_id(g.group_id)
                .with_topics(topics)
        })
        .collect();
    Reply::Respond(OffsetFetchResponse::default().with_groups(groups))
}
