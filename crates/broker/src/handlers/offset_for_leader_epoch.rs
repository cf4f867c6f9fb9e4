//! OffsetForLeaderEpoch (key 23): for each partition, the largest leader epoch `<=` the
//! requested one and where it ends (KIP-101/279; consumers use it to detect truncation after a
//! leader change, KIP-320). Unknown → `UNDEFINED_EPOCH` (-1) / `UNDEFINED_EPOCH_OFFSET` (-1).
//!
//! Only the leader answers (NOT_LEADER_OR_FOLLOWER, 6, otherwise), after the same epoch fencing
//! as Fetch (`current_leader_epoch`, v2+: older → 74, newer → 75). Versions 2–4 (the codec's
//! range; v3+ carries `replica_id`, which changes nothing here: followers use the Replication
//! service's `diverging_epoch` instead).

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext};
use crate::error::{self, Result};

/// Served versions.
pub const VERSIONS: VersionRange = VersionRange { min: 2, max: 4 };

/// Kafka's `UNDEFINED_EPOCH`.
const UNDEFINED_EPOCH: i32 = -1;
/// Kafka's `UNDEFINED_EPOCH_OFFSET`.
const UNDEFINED_EPOCH_OFFSET: i64 = -1;

fn end_offset(
    ctx: &RequestContext,
    topic: &str,
    partition: i32,
    current_leader_epoch: i32,
    requested: i32,
) -> Result<(i32, i64)> {
    let p = ctx.broker.partition(topic, partition)?;
    p.check_leader(current_leader_epoch)?;
    let log = p.log.read();
    Ok(log
        .end_offset_for_epoch(requested)
        .unwrap_or((UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)))
}

/// Handles OffsetForLeaderEpoch.
pub async fn handle(
    ctx: &RequestContext,
    req: OffsetForLeaderEpochRequest,
) -> Reply<OffsetForLeaderEpochResponse> {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.to_string();
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let resp = EpochEndOffset::default().with_partition(p.partition);
                    match end_offset(
                        ctx,
                        &name,
                        p.partition,
                        p.current_leader_epoch,
                        p.leader_epoch,
                    ) {
                        Ok((epoch, offset)) => {
                            resp.with_leader_epoch(epoch).with_end_offset(offset)
                        }
                        Err(e) => resp
                            .with_error_code(error::code(&e))
                            .with_leader_epoch(UNDEFINED_EPOCH)
                            .with_end_offset(UNDEFINED_EPOCH_OFFSET),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    Reply::Respond(OffsetForLeaderEpochResponse::default().with_topics(topics))
}
