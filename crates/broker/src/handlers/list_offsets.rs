//! ListOffsets (key 2): earliest (-2), latest (-1), max timestamp (-3, v7+), earliest local
//! (-4, v8+), latest tiered (-5, v9+) and by timestamp.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext};
use crate::broker::{LEADER_EPOCH, check_leader_epoch};
use crate::error::{self, Result};

/// Served versions.
pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 10 };

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// (timestamp, offset); (-1, -1) when nothing matches.
fn lookup(
    ctx: &RequestContext,
    topic: &str,
    partition: i32,
    epoch: i32,
    timestamp: i64,
) -> Result<(i64, i64)> {
    check_leader_epoch(epoch)?;
    let p = ctx.broker.partition(topic, partition)?;
    let log = p.log.read();
    // Consumers never see past the high watermark (= last stable offset: no transactions).
    let hw = log.high_watermark();
    let found = match timestamp {
        LATEST => (-1, hw),
        EARLIEST | EARLIEST_LOCAL => (-1, log.log_start_offset()),
        LATEST_TIERED => (-1, -1),
        MAX_TIMESTAMP => match log.max_timestamp_offset()? {
            Some(t) if t.offset < hw => (t.timestamp, t.offset),
            _ => (-1, -1),
        },
        ts => match log.offset_for_timestamp(ts)? {
            Some(t) if t.offset < hw => (t.timestamp, t.offset),
            _ => (-1, -1),
        },
    };
    Ok(found)
}

/// Handles ListOffsets.
pub async fn handle(ctx: &RequestContext, req: ListOffsetsRequest) -> Reply<ListOffsetsResponse> {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let resp = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    match lookup(
                        ctx,
                        &name,
                        p.partition_index,
                        p.current_leader_epoch,
                        p.timestamp,
                    ) {
                        Ok((timestamp, offset)) => {
                            let resp = resp.with_timestamp(timestamp).with_offset(offset);
                            // leader_epoch exists from v4; the codec refuses it set earlier.
                            if ctx.api_version >= 4 && offset >= 0 {
                                resp.with_leader_epoch(LEADER_EPOCH)
                            } else {
                                resp
                            }
                        }
                        Err(e) => resp
                            .with_error_code(error::code(&e))
                            .with_timestamp(-1)
                            .with_offset(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    Reply::Respond(ListOffsetsResponse::default().with_topics(topics))
}
