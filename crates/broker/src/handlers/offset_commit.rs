//! OffsetCommit (key 8): stores committed offsets in `__consumer_offsets` after the group's
//! membership and generation checks. Unknown topics or partitions fail individually
//! (UNKNOWN_TOPIC_OR_PARTITION) while the rest of the request commits.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext};
use crate::broker::now_ms;
use crate::error::{self, BrokerError};
use crate::group::state::CommittedOffset;
use crate::group::{self, GroupError};

/// Served versions: 2-9 (v0-1 are gone from Kafka 4 and from the codec; v7+ static members).
pub const VERSIONS: VersionRange = VersionRange { min: 2, max: 9 };

/// Handles OffsetCommit.
pub async fn handle(ctx: &RequestContext, req: OffsetCommitRequest) -> Reply<OffsetCommitResponse> {
    let group_id = req.group_id.0.to_string();
    let broker = &ctx.broker;
    let max_metadata = broker.groups().offset_metadata_max_bytes();
    let group_error = |e: GroupError| BrokerError::Group {
        group: group_id.clone(),
        source: e,
    };
    let request_error = if group_id.is_empty() {
        Some(group_error(GroupError::InvalidGroupId))
    } else {
        group::ready(broker).await.err().map(group_error)
    };
    // (topic index, partition index, outcome so far: None = to commit).
    let mut slots: Vec<(usize, i32, Option<i16>)> = Vec::new();
    let mut to_commit = Vec::new();
    let now = now_ms();
    for (ti, topic) in req.topics.iter().enumerate() {
        let name = topic.name.0.to_string();
        for p in &topic.partitions {
            let early = if let Some(e) = &request_error {
                Some(error::code(e))
            } else if let Err(e) = broker.partition(&name, p.partition_index) {
                Some(error::code(&e))
            } else if p
                .committed_metadata
                .as_ref()
                .is_some_and(|m| m.len() > max_metadata)
            {
                Some(error::code(&group_error(
                    GroupError::OffsetMetadataTooLarge,
                )))
            } else {
                to_commit.push((
                    (name.clone(), p.partition_index),
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                        commit_timestamp: now,
                    },
                ));
                None
            };
            slots.push((ti, p.partition_index, early));
        }
    }
    let committed: Result<(), BrokerError> = if request_error.is_some() || to_commit.is_empty() {
        Ok(())
    } else {
        broker
            .groups()
            .commit_offsets(
                &ctx.shutdown,
                &group_id,
                &req.member_id,
                req.group_instance_id.as_deref(),
                req.generation_id_or_member_epoch,
                to_commit,
            )
            .await
    };
    if let Err(e) = &committed {
        tracing::debug!(group = %group_id, error = %error::message(e), "offset commit rejected");
    }
    let commit_code = committed.as_ref().map_or_else(error::code, |()| 0);
    let topics = req
        .topics
        .iter()
        .enumerate()
        .map(|(ti, t)| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    slots
                        .iter()
                        .filter(|(i, _, _)| *i == ti)
                        .map(|(_, p, early)| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(*p)
                                .with_error_code(early.unwrap_or(commit_code))
                        })
                        .collect(),
                )
        })
        .collect();
    Reply::Respond(OffsetCommitResponse::default().with_topics(topics))
}
