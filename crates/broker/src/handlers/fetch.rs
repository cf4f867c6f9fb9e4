//! Fetch (key 1): reads record batches up to the high watermark, with long polling.
//!
//! Consumers read only from the leader (a follower or non-replica answers
//! NOT_LEADER_OR_FOLLOWER, 6) and never above the HW; `current_leader_epoch` is fenced as in
//! KIP-320 (older → 74, newer → 75). On 6 and 74, v12+ responses carry the leader and epoch this
//! broker knows in `current_leader` (KIP-951 style) so the client can skip a metadata round trip.
//! The last stable offset is the HW (no transactions).
//!
//! Long poll: when fewer than `min_bytes` are available, the handler waits on the requested
//! partitions' high-watermark watches (subscribed *before* the first read, so no append can slip
//! between read and wait), the `max_wait_ms` deadline, or shutdown, whichever comes first, then
//! reads again. No timers poll.
//!
//! Fetch sessions (KIP-227) are not created: responses carry session id 0, which tells clients
//! to keep sending full fetch requests.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use kafka_protocol::protocol::VersionRange;
use tokio::time::Instant;

use super::{Reply, RequestContext};
use crate::broker::Partition;
use crate::error::{self, BrokerError, Result};

/// Served versions. v13+ names topics by id and is not advertised.
pub const VERSIONS: VersionRange = VersionRange { min: 4, max: 12 };

/// One requested partition, resolved once per request.
struct Slot {
    index: i32,
    partition: Result<Arc<Partition>>,
    fetch_offset: i64,
    max_bytes: i32,
    leader_epoch: i32,
}

/// Reads every slot once; returns the response topics and the number of record bytes.
fn read_all(
    topics: &[(kafka_protocol::messages::TopicName, Vec<Slot>)],
    max_bytes: i32,
    api_version: i16,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let mut budget = max_bytes.max(0) as usize;
    let mut total = 0usize;
    let mut any_error = false;
    let mut out = Vec::with_capacity(topics.len());
    for (name, slots) in topics {
        let mut partitions = Vec::with_capacity(slots.len());
        for slot in slots {
            let data = PartitionData::default().with_partition_index(slot.index);
            let result = slot.partition.as_ref().map_err(clone_err).and_then(|p| {
                p.check_leader(slot.leader_epoch)?;
                let limit = budget.min(slot.max_bytes.max(0) as usize);
                let log = p.log.read();
                let hw = log.high_watermark();
                // KIP-74: the first partition with data returns at least one whole batch even
                // if it exceeds the limits, so a large batch can never block a consumer.
                let read = log.read(slot.fetch_offset, limit, hw, total == 0)?;
                Ok(read)
            });
            let data = match result {
                Ok(read) => {
                    budget = budget.saturating_sub(read.records.len());
                    total += read.records.len();
                    data.with_high_watermark(read.high_watermark)
                        .with_last_stable_offset(read.high_watermark)
                        .with_log_start_offset(read.log_start_offset)
                        .with_records(Some(read.records))
                }
                Err(e) => {
                    any_error = true;
                    let code = error::code(&e);
                    let data = match (&slot.partition, error::error_code(&e)) {
                        (
                            Ok(p),
                            kafka_protocol::ResponseError::NotLeaderOrFollower
                            | kafka_protocol::ResponseError::FencedLeaderEpoch,
                        ) if api_version >= 12 => {
                            let (leader, epoch) = p.leader_hint();
                            data.with_current_leader(
                                LeaderIdAndEpoch::default()
                                    .with_leader_id(BrokerId(leader.unwrap_or(-1)))
                                    .with_leader_epoch(epoch),
                            )
                        }
                        _ => data,
                    };
                    data.with_error_code(code)
                        .with_high_watermark(-1)
                        .with_last_stable_offset(-1)
                        .with_log_start_offset(-1)
                        // Never None: librdkafka rejects a null record set (size -1).
                        .with_records(Some(bytes::Bytes::new()))
                }
            };
            partitions.push(data);
        }
        out.push(
            FetchableTopicResponse::default()
                .with_topic(name.clone())
                .with_partitions(partitions),
        );
    }
    (out, total, any_error)
}

/// Partition lookups fail with UNKNOWN_TOPIC_OR_PARTITION only; re-create it for each read.
fn clone_err(e: &BrokerError) -> BrokerError {
    match e {
        BrokerError::UnknownTopicOrPartition { topic, partition } => {
            BrokerError::UnknownTopicOrPartition {
                topic: topic.clone(),
                partition: *partition,
            }
        }
        other => BrokerError::InvalidRequest(other.to_string()),
    }
}

/// Handles Fetch.
pub async fn handle(ctx: &RequestContext, req: FetchRequest) -> Reply<FetchResponse> {
    if ctx.api_version >= 7 && req.session_id != 0 {
        // We never hand out session ids, so any named session is unknown.
        let err = BrokerError::FetchSessionIdNotFound(req.session_id);
        return Reply::Respond(FetchResponse::default().with_error_code(error::code(&err)));
    }
    let broker = &ctx.broker;
    let mut receivers = Vec::new();
    let topics: Vec<_> = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.to_string();
            let slots = t
                .partitions
                .into_iter()
                .map(|p| {
                    let partition = broker.partition(&name, p.partition);
                    if let Ok(part) = &partition {
                        receivers.push(part.subscribe());
                    }
                    Slot {
                        index: p.partition,
                        partition,
                        fetch_offset: p.fetch_offset,
                        max_bytes: p.partition_max_bytes,
                        leader_epoch: p.current_leader_epoch,
                    }
                })
                .collect();
            (t.topic, slots)
        })
        .collect();

    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let min_bytes = req.min_bytes.max(0) as usize;
    loop {
        let (responses, total, any_error) = read_all(&topics, req.max_bytes, ctx.api_version);
        // Kafka answers at once when min_bytes is reached (so min_bytes=0 never waits) or on
        // any partition error.
        let done = total >= min_bytes
            || any_error
            || Instant::now() >= deadline
            || ctx.shutdown.is_cancelled();
        if done {
            return Reply::Respond(FetchResponse::default().with_responses(responses));
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            _ = crate::replica::any_changed(&mut receivers) => {}
            _ = ctx.shutdown.cancelled() => {}
        }
    }
}
