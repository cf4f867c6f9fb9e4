//! Produce (key 0): appends one record batch per partition, as the partition's leader.
//!
//! Storage is called inline, not through `spawn_blocking`: an append copies the batch into the
//! page cache (no fsync unless the topic's flush settings ask for one), which is cheaper than a
//! thread hop. The partition's locks are held only for the append and the high-watermark
//! update, never across an `.await`. After the append the log end and (if it moved) the HW are
//! published so replica fetches and consumer fetches wake immediately.
//!
//! Acks (docs/replication.md): only the leader appends (else NOT_LEADER_OR_FOLLOWER, 6, before
//! anything is written), stamping its leader epoch. acks=1 answers after the local append.
//! acks=all (-1) refuses with NOT_ENOUGH_REPLICAS (19) and appends nothing when the committed
//! ISR is smaller than `min.insync.replicas`; otherwise it appends and waits until the HW passes
//! the batch. While it waits: the committed ISR falling below the minimum → 20; leadership lost
//! → 6; the request's `timeout_ms` → REQUEST_TIMED_OUT (7). Those three are indeterminate (the
//! batch is in the log). All partitions of one request wait concurrently, on watches, in a
//! [`Reply::Deferred`]: a wait blocks neither other partitions, nor other connections'
//! requests, nor the appends of the same connection's next pipelined requests.
//!
//! Idempotent batches (producer id ≥ 0) are checked against the partition's producer state
//! under the same write lock, right before the append (`PartitionLog::check_producer`): a retry
//! of one of the producer's last 5 batches is answered with its original offsets and not
//! appended; a sequence gap or a new epoch not starting at 0 → OUT_OF_ORDER_SEQUENCE_NUMBER (45);
//! an older epoch → INVALID_PRODUCER_EPOCH (47). The append records the batch in the state.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gregor_storage::batch::ValidationMode;
use gregor_storage::{BatchHeader, ProducerCheck};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext, str_bytes};
use crate::broker::{Partition, TimestampPolicy, Topic, now_ms};
use crate::error::{self, BrokerError, Result};

/// Served versions. v13 names topics by id and is not advertised.
pub const VERSIONS: VersionRange = VersionRange { min: 3, max: 12 };

#[derive(Debug, Clone, Copy)]
struct Appended {
    base_offset: i64,
    /// Last offset of the batch (of the original, for a duplicate): acks=all waits for it.
    last_offset: i64,
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

/// Appends one partition's batch as its leader; returns the outcome and the leader epoch it was
/// written in (an acks=all wait must still be leader in that epoch).
fn append(
    partition: &Partition,
    min_isr: i32,
    policy: &TimestampPolicy,
    acks: i16,
    records: Option<Bytes>,
) -> Result<(Appended, i32)> {
    let records = match records {
        Some(r) if !r.is_empty() => r,
        _ => {
            return Err(BrokerError::InvalidRecord(
                "a produce request must carry exactly one record batch".into(),
            ));
        }
    };
    let now = now_ms();
    // One header parse serves the timestamp bounds and the producer check; malformed framing is
    // left to storage, which reports the precise error.
    let header = BatchHeader::parse(&records).ok();
    if let Some(h) = &header {
        check_timestamps(policy, h, &records, now)?;
    }
    let idempotent = header.filter(|h| h.producer_id >= 0);
    // acks=all promises min.insync.replicas copies: the committed ISR is checked before the
    // append (as Kafka does), so nothing is written that could not be acknowledged.
    let required_isr = (acks == -1).then_some(min_isr);
    partition.append_as_leader(Some(min_isr), required_isr, |log, epoch| {
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
                last_offset: original.last_offset,
                log_append_time_ms: if policy.log_append_time {
                    original.timestamp
                } else {
                    -1
                },
                log_start_offset: log.log_start_offset(),
            });
        }
        let info = log.append_as_leader(records, epoch, now)?;
        Ok(Appended {
            base_offset: info.base_offset,
            last_offset: info.last_offset,
            log_append_time_ms: info.log_append_time_ms,
            log_start_offset: log.log_start_offset(),
        })
    })
}

/// A partition's failure as the client sees it: (error code, message).
type Failure = (i16, String);

/// One partition's outcome.
type Outcome = std::result::Result<Appended, Failure>;

/// Every partition's outcome, by topic, in request order.
type Results = Vec<(TopicName, Vec<(i32, Outcome)>)>;

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
    let timeout_ms = i64::from(req.timeout_ms.max(0));
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms as u64);
    // (topic name, partition outcomes); acks=all outcomes are completed below, concurrently.
    let mut results: Results = Vec::with_capacity(req.topic_data.len());
    let mut waits = Vec::new();
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
                Ok(topic) => {
                    let min_isr = ctx.broker.min_insync_replicas(topic);
                    ctx.broker
                        .partition(&name, p.index)
                        .and_then(|partition| {
                            let (a, epoch) = append(
                                &partition,
                                min_isr,
                                &ctx.broker.timestamp_policy(topic),
                                acks,
                                p.records,
                            )?;
                            if acks == -1 {
                                waits.push((
                                    results.len(),
                                    partitions.len(),
                                    partition,
                                    a,
                                    epoch,
                                    min_isr,
                                ));
                            }
                            Ok(a)
                        })
                        .map_err(|e| failure(&e))
                }
            };
            tracing::trace!(topic = %name, partition = p.index, acks, ok = outcome.is_ok(), "produce");
            partitions.push((p.index, outcome));
        }
        results.push((topic.name, partitions));
    }
    if waits.is_empty() {
        return respond(acks, results);
    }
    // acks=all: the batches are in the log; the answer waits until the HW passes them, every
    // partition at once. The connection handles its next requests meanwhile (`server`).
    let shutdown = ctx.shutdown.clone();
    Reply::Deferred(Box::pin(async move {
        let outcomes =
            futures::future::join_all(waits.iter().map(|(_, _, partition, a, epoch, min_isr)| {
                partition.wait_for_replication(
                    a.last_offset,
                    *epoch,
                    *min_isr,
                    deadline,
                    timeout_ms,
                    &shutdown,
                )
            }))
            .await;
        for ((t, i, _, _, _, _), outcome) in waits.iter().zip(outcomes) {
            if let Err(e) = outcome {
                results[*t].1[*i].1 = Err(failure(&e));
            }
        }
        // Only acks=all is deferred, and acks=all always answers.
        response(results).0
    }))
}

/// The reply for every partition's outcome, as `acks` asks.
fn respond(acks: i16, results: Results) -> Reply<ProduceResponse> {
    match (acks, response(results)) {
        // Kafka answers nothing for acks=0, and closes the connection on an error so the
        // producer (which is not reading responses) notices and refreshes its metadata.
        (0, (_, false)) => Reply::NoResponse,
        (0, (_, true)) => Reply::Close,
        (_, (response, _)) => Reply::Respond(response),
    }
}

/// The response for every partition's outcome, and whether any partition failed.
fn response(results: Results) -> (ProduceResponse, bool) {
    let mut any_error = false;
    let responses: Vec<_> = results
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, outcome)| {
                    any_error |= outcome.is_err();
                    partition_response(index, outcome)
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(partitions)
        })
        .collect();
    (
        ProduceResponse::default().with_responses(responses),
        any_error,
    )
}
