//! Produce (key 0): appends one record batch per partition.
//!
//! Storage is called inline, not through `spawn_blocking`: an append copies the batch into the
//! page cache (no fsync unless the topic's flush settings ask for one), which is cheaper than a
//! thread hop. The partition's write lock is held only for the append and the high-watermark
//! update, never across an `.await`. After the append the partition's watch is bumped so
//! long-polling fetches wake immediately.
//!
//! Idempotent batches (producer id ≥ 0) are checked against the partition's producer state
//! under the same write lock, right before the append (`PartitionLog::check_producer`): a retry
//! of one of the producer's last 5 batches is answered with its original offsets and not
//! appended; a sequence gap or a new epoch not starting at 0 → OUT_OF_ORDER_SEQUENCE_NUMBER (45);
//! an older epoch → INVALID_PRODUCER_EPOCH (47). The append records the batch in the state.

use std::sync::Arc;

use bytes::Bytes;
use gregor_storage::batch::ValidationMode;
use gregor_storage::{BatchHeader, ProducerCheck};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext, str_bytes};
use crate::broker::{LEADER_EPOCH, Partition, TimestampPolicy, Topic, now_ms};
use crate::error::{self, BrokerError, Result};

/// Served versions. v13 names topics by id and is not advertised.
pub const VERSIONS: VersionRange = VersionRange { min: 3, max: 12 };

/// The ISR of a single-node partition.
const ISR_SIZE: i32 = 1;

struct Appended {
    base_offset: i64,
    log_append_time_ms: i64,
    log_start_offset: i64,
}

/// Checks the batch header's timestamps against the topic's bounds (B19). On a violation the
/// batch is fully validated first, so a corrupt batch still reports CORRUPT_MESSAGE (as Kafka,
/// which checks CRCs before timestamps); the accepted path reads only the 61-byte header.
fn check_timestamps(
    policy: &TimestampPolicy,
    header: &BatchHeader,
    records: &Bytes,
    now: i64,
) -> Result<()> {
    let outcome = policy.check(header.base_timestamp, header.max_timestamp, now);
    if outcome.is_err() {
        gregor_storage::batch::validate(records, ValidationMode::Client)?;
    }
    outcome
}

fn append(
    partition: &Partition,
    min_isr: i32,
    policy: &TimestampPolicy,
    acks: i16,
    records: Option<Bytes>,
) -> Result<Appended> {
    let records = match records {
        Some(r) if !r.is_empty() => r,
        _ => {
            return Err(BrokerError::InvalidRecord(
                "a produce request must carry exactly one record batch".into(),
            ));
        }
    };
    // acks=all promises min.insync.replicas copies; refuse before appending (Kafka's NOT_ENOUGH_REPLICAS
    // check happens before the append too), so nothing is written that could not be acknowledged.
    if acks == -1 && ISR_SIZE < min_isr {
        return Err(BrokerError::NotEnoughReplicas {
            isr: ISR_SIZE,
            min_isr,
        });
    }
    let now = now_ms();
    // One header parse serves the timestamp bounds and the producer check; malformed framing is
    // left to storage, which reports the precise error.
    let header = BatchHeader::parse(&records).ok();
    if let Some(h) = &header {
        check_timestamps(policy, h, &records, now)?;
    }
    let idempotent = header.filter(|h| h.producer_id >= 0);
    let mut log = partition.log.write();
    if let Some(header) = &idempotent
        && let ProducerCheck::Duplicate(original) = log.check_producer(header)?
    {
        // Kafka validates a batch before looking for duplicates: a damaged retry is an error.
        gregor_storage::batch::validate(&records, ValidationMode::Client)?;
        tracing::debug!(
            producer_id = header.producer_id,
            base_sequence = header.base_sequence,
            base_offset = original.first_offset,
            "duplicate batch answered with its original offsets"
        );
        return Ok(Appended {
            base_offset: original.first_offset,
            log_append_time_ms: if policy.log_append_time {
                original.timestamp
            } else {
                -1
            },
            log_start_offset: log.log_start_offset(),
        });
    }
    let info = log.append_as_leader(records, LEADER_EPOCH, now)?;
    // Single node: everything appended is replicated to the whole ISR (itself).
    log.set_high_watermark(info.log_end_offset);
    let log_start_offset = log.log_start_offset();
    drop(log);
    partition.publish_high_watermark(info.log_end_offset);
    Ok(Appended {
        base_offset: info.base_offset,
        log_append_time_ms: info.log_append_time_ms,
        log_start_offset,
    })
}

/// A partition's failure as the client sees it: (error code, message).
type Failure = (i16, String);

fn failure(e: &BrokerError) -> Failure {
    (error::code(e), error::message(e))
}

fn partition_response(
    index: i32,
    outcome: std::result::Result<Appended, Failure>,
) -> PartitionProduceResponse {
    let resp = PartitionProduceResponse::default().with_index(index);
    match outcome {
        Ok(a) => resp
            .with_base_offset(a.base_offset)
            .with_log_append_time_ms(a.log_append_time_ms)
            .with_log_start_offset(a.log_start_offset),
        Err((code, message)) => {
            tracing::debug!(partition = index, code, %message, "produce rejected");
            resp.with_error_code(code)
                .with_error_message(Some(str_bytes(message)))
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1)
        }
    }
}

/// Handles Produce.
pub async fn handle(ctx: &RequestContext, req: ProduceRequest) -> Reply<ProduceResponse> {
    let acks = req.acks;
    // Errors that apply to the whole request are still reported per partition, as Kafka does.
    let request_error = if !matches!(acks, -1..=1) {
        Some(failure(&BrokerError::InvalidRequiredAcks(acks)))
    } else if req.transactional_id.is_some() {
        Some(failure(&BrokerError::InvalidRequest(
            "transactions are not supported".into(),
        )))
    } else {
        None
    };
    let mut any_error = false;
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let name = topic.name.0.to_string();
        let resolved: std::result::Result<Arc<Topic>, Failure> = match &request_error {
            Some(f) => Err(f.clone()),
            None => match ctx.broker.topic(&name) {
                Some(t) => Ok(t),
                None => {
                    let n = name.clone();
                    ctx.broker
                        .blocking(move |b| b.ensure_topic(&n))
                        .await
                        .map_err(|e| failure(&e))
                }
            },
        };
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for p in topic.partition_data {
            let outcome = match &resolved {
                Err(f) => Err(f.clone()),
                Ok(topic) => ctx
                    .broker
                    .partition(&name, p.index)
                    .and_then(|partition| {
                        append(
                            &partition,
                            ctx.broker.min_insync_replicas(topic),
                            &ctx.broker.timestamp_policy(topic),
                            acks,
                            p.records,
                        )
                    })
                    .map_err(|e| failure(&e)),
            };
            any_error |= outcome.is_err();
            tracing::trace!(topic = %name, partition = p.index, acks, ok = outcome.is_ok(), "produce");
            partitions.push(partition_response(p.index, outcome));
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(partitions),
        );
    }
    match (acks, any_error) {
        // Kafka answers nothing for acks=0, and closes the connection on an error so the
        // producer (which is not reading responses) notices and refreshes its metadata.
        (0, false) => Reply::NoResponse,
        (0, true) => Reply::Close,
        _ => Reply::Respond(ProduceResponse::default().with_responses(responses)),
    }
}
