//! ListOffsets (key 2): earliest (-2), latest (-1), max timestamp (-3, v7+), earliest local
//! (-4, v8+), latest tiered (-5, v9+) and by timestamp.
//!
//! Only the leader answers (6 otherwise), after KIP-320 fencing of `current_leader_epoch` (74 /
//! 75). Consumers never see past the HW. A new leader whose HW is still below the start of its
//! epoch answers OFFSET_NOT_AVAILABLE (78): its HW may be behind what the old leader exposed, and
//! offsets must not go backwards (Kafka's rule). The returned leader epoch is the epoch of the
//! batch holding the offset (the epoch cache's entry), the current epoch for "latest".

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext};
use crate::error::{self, BrokerError, Result};

/// Served versions.
pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 10 };

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// (timestamp, offset, leader epoch); (-1, -1, -1) when nothing matches.
fn lookup(
    ctx: &RequestContext,
    topic: &str,
    partition: i32,
    epoch: i32,
    timestamp: i64,
) -> Result<(i64, i64, i32)> {
    let p = ctx.broker.partition(topic, partition)?;
    let leader_epoch = p.check_leader(epoch)?;
    let epoch_start = p.leader_epoch_start();
    let log = p.log.read();
    // Consumers never see past the high watermark (= last stable offset: no transactions).
    let hw = log.high_watermark();
    if let Some(start) = epoch_start
        && start > hw
    {
        return Err(BrokerError::OffsetNotAvailable {
            high_watermark: hw,
            epoch_start: start,
        });
    }
    let epoch_of = |offset: i64| -> i32 {
        log.epoch_entries()
            .iter()
            .rev()
            .find(|e| e.start_offset <= offset)
            .map_or(leader_epoch, |e| e.epoch)
    };
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
    let epoch = match (timestamp, found.1) {
        (_, o) if o < 0 => -1,
        (LATEST, _) => leader_epoch,
        (_, o) => epoch_of(o),
    };
    Ok((found.0, found.1, epoch))
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
                        Ok((timestamp, offset, epoch)) => {
                            let resp = resp.with_timestamp(timestamp).with_offset(offset);
                            // leader_epoch exists from v4; the codec refuses it set earlier.
                            if ctx.api_version >= 4 && offset >= 0 {
                                resp.with_leader_epoch(epoch)
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
