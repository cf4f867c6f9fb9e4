//! An idempotent producer, as Kafka's producer runs with `enable.idempotence=true`.
//!
//! A session starts with InitProducerId (non-transactional: `transactional_id` null, sent to any
//! broker; there is no coordinator to find) and gets a producer id and epoch. Every batch then
//! carries them plus a base sequence: per partition, the first batch has sequence 0 and each
//! acknowledged batch advances it by its record count (wrapping at `i32::MAX` like Kafka's
//! `DefaultRecordBatch.incrementSequence`). The broker keeps the last five batches per producer
//! and partition: a batch it already has is answered with its original offsets (old brokers say
//! `DUPLICATE_SEQUENCE_NUMBER`, 46), so a retry can never append a record twice.
//!
//! Choices (Kafka's producer is the model; where it differs, why):
//! * **acks=all only.** Kafka refuses `enable.idempotence` with another `acks`; so does
//!   [`IdempotentProducer::new`] (and [`require_acks_all`] for flag checks).
//! * **One batch in flight** per producer (Kafka allows five per partition). Sends are awaited
//!   one at a time through `&mut self`, so per partition the order is the send order and there
//!   is never more than one unacknowledged sequence to resolve.
//! * **Retries re-send the same bytes.** A retriable error (leader moved, not enough replicas,
//!   a broken connection, ...) re-sends the identical batch — same producer id, epoch and
//!   sequence — after a backoff until the delivery timeout (Kafka's `delivery.timeout.ms`).
//!   [`IdempotentProducer::deliver`] lets a caller re-send a [`PreparedBatch`] itself.
//! * **`DUPLICATE_SEQUENCE_NUMBER` (46) is success**: the batch is in the log; its offset is
//!   not known, so [`Produced::base_offset`] is -1 (as in Kafka's producer).
//! * **Fatal sequence errors end the session.** `OUT_OF_ORDER_SEQUENCE_NUMBER` (45),
//!   `INVALID_PRODUCER_EPOCH` (47) and `UNKNOWN_PRODUCER_ID` (59) fail the send with that error;
//!   the next send starts a new session (a new InitProducerId; Kafka's KIP-360 epoch bump gets a
//!   new id for a non-transactional producer too), with every sequence back at 0.
//! * **An unresolved batch ends the session at the next new batch to its partition.** A send
//!   that failed otherwise (timeout, non-retriable error) may or may not be in the log. Giving
//!   its sequence to other records could make the broker answer them as a duplicate of it — a
//!   silent loss — and skipping it would be out of order if it was not appended. So the
//!   partition is marked unresolved: re-delivering the same [`PreparedBatch`] may still resolve
//!   it, and preparing a new batch for that partition starts a new session first.
//! * **Cancellation.** If a send's future is dropped while its request is out, the connection
//!   may hold an unread response and the batch is unresolved: the next call reconnects and
//!   starts a new session.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};
use kafka_protocol::records::Compression;
use tokio::time::Instant;

use crate::client::{Client, Produced, retriable};
use crate::error::{ClientError, Result};
use crate::records::{ProducerRecord, encode_batch};

/// Kafka's default `delivery.timeout.ms` (two minutes).
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);
/// Kafka's default `request.timeout.ms`, sent as the Produce `timeout_ms`.
pub const DEFAULT_REQUEST_TIMEOUT_MS: i32 = 30_000;
/// Pause before a retry, like `retry.backoff.ms`.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// `transaction.timeout.ms` sent with InitProducerId (Kafka's default; unused without a
/// transactional id).
const TRANSACTION_TIMEOUT_MS: i32 = 60_000;

/// `OUT_OF_ORDER_SEQUENCE_NUMBER`.
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
/// `DUPLICATE_SEQUENCE_NUMBER`.
const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
/// `INVALID_PRODUCER_EPOCH`.
const INVALID_PRODUCER_EPOCH: i16 = 47;
/// `UNKNOWN_PRODUCER_ID`.
const UNKNOWN_PRODUCER_ID: i16 = 59;

// RecordBatch v2 header (Kafka's `DefaultRecordBatch`): byte offsets of the fields rewritten.
const MAGIC_OFFSET: usize = 16;
const CRC_OFFSET: usize = 17;
/// The CRC covers everything from the attributes on.
const ATTRIBUTES_OFFSET: usize = 21;
const PRODUCER_ID_OFFSET: usize = 43;
const PRODUCER_EPOCH_OFFSET: usize = 51;
const BASE_SEQUENCE_OFFSET: usize = 53;
const RECORDS_COUNT_OFFSET: usize = 57;
const HEADER_LEN: usize = 61;

/// Refuses every `acks` but all (-1), with Kafka's reason.
pub fn require_acks_all(acks: i16) -> Result<()> {
    if acks == -1 {
        Ok(())
    } else {
        Err(ClientError::Invalid(format!(
            "an idempotent producer needs acks=all, not acks={acks} (Kafka: \"Must set acks to all in order to use the idempotent producer\")"
        )))
    }
}

/// Kafka's `DefaultRecordBatch.incrementSequence`: sequences wrap from `i32::MAX` to 0.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// The record count of one RecordBatch v2, from its header.
pub fn record_count(batch: &[u8]) -> Result<i32> {
    check_one_batch(batch)?;
    let count = read_i32(batch, RECORDS_COUNT_OFFSET);
    if count <= 0 {
        return Err(ClientError::Invalid(format!(
            "a batch of {count} records cannot be sequenced"
        )));
    }
    Ok(count)
}

/// Rewrites the producer id, epoch and base sequence of one RecordBatch v2 (as built by
/// [`encode_batch`]) and recomputes its CRC, as Kafka's `MemoryRecordsBuilder` does when it
/// re-stamps a closed batch.
pub fn stamp(batch: &[u8], producer_id: i64, epoch: i16, base_sequence: i32) -> Result<Bytes> {
    check_one_batch(batch)?;
    let mut out = BytesMut::from(batch);
    out[PRODUCER_ID_OFFSET..PRODUCER_EPOCH_OFFSET].copy_from_slice(&producer_id.to_be_bytes());
    out[PRODUCER_EPOCH_OFFSET..BASE_SEQUENCE_OFFSET].copy_from_slice(&epoch.to_be_bytes());
    out[BASE_SEQUENCE_OFFSET..RECORDS_COUNT_OFFSET].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES_OFFSET..]);
    out[CRC_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(&crc.to_be_bytes());
    Ok(out.freeze())
}

fn read_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn check_one_batch(batch: &[u8]) -> Result<()> {
    if batch.len() < HEADER_LEN {
        return Err(ClientError::Invalid(format!(
            "{} bytes are not a record batch",
            batch.len()
        )));
    }
    if batch[MAGIC_OFFSET] != 2 {
        return Err(ClientError::Invalid(format!(
            "record batch magic {} (only v2 carries producer ids)",
            batch[MAGIC_OFFSET]
        )));
    }
    let declared = usize::try_from(read_i32(batch, 8)).unwrap_or(0) + 12;
    if declared != batch.len() {
        return Err(ClientError::Invalid(format!(
            "expected exactly one record batch ({declared} of {} bytes)",
            batch.len()
        )));
    }
    Ok(())
}

/// Per-partition sequence bookkeeping of one producer session (pure).
#[derive(Debug, Clone, Default)]
pub struct Sequences {
    next: HashMap<(String, i32), i32>,
    unresolved: HashSet<(String, i32)>,
}

impl Sequences {
    /// The base sequence of the next new batch to `topic`-`partition` (0 at first).
    pub fn next(&self, topic: &str, partition: i32) -> i32 {
        self.next
            .get(&(topic.to_string(), partition))
            .copied()
            .unwrap_or(0)
    }

    /// Whether a batch with the next sequence failed without a known outcome.
    pub fn is_unresolved(&self, topic: &str, partition: i32) -> bool {
        self.unresolved.contains(&(topic.to_string(), partition))
    }

    /// The batch at `base_sequence` with `count` records is in the log. Only the batch at the
    /// next sequence advances it; an acknowledged re-send of an older batch changes nothing.
    pub fn acknowledged(&mut self, topic: &str, partition: i32, base_sequence: i32, count: i32) {
        let key = (topic.to_string(), partition);
        let next = self.next.get(&key).copied().unwrap_or(0);
        if base_sequence == next {
            self.next
                .insert(key.clone(), increment_sequence(next, count));
            self.unresolved.remove(&key);
        }
    }

    /// The batch at `base_sequence` failed and may or may not be in the log.
    pub fn failed(&mut self, topic: &str, partition: i32, base_sequence: i32) {
        if base_sequence == self.next(topic, partition) {
            self.unresolved.insert((topic.to_string(), partition));
        }
    }
}

/// What one delivery attempt's result means for the batch and the session.
#[derive(Debug)]
pub enum Verdict {
    /// The batch is in the log (offset -1 when the broker only said "duplicate").
    Acknowledged(Produced),
    /// Retriable: send the same batch again.
    Retry(ClientError),
    /// The session is over (45, 47, 59): the batch was not appended in this session.
    Fenced(ClientError),
    /// Failed for good; the batch may or may not be in the log.
    Unresolved(ClientError),
}

/// Classifies one acks=all produce result like Kafka's producer (`Sender.completeBatch`).
pub fn judge(result: Result<Option<Produced>>) -> Verdict {
    match result {
        Ok(Some(p)) => Verdict::Acknowledged(p),
        Ok(None) => Verdict::Unresolved(ClientError::Codec(
            "no produce response for acks=all".into(),
        )),
        Err(e) => match e.kafka_code() {
            Some(DUPLICATE_SEQUENCE_NUMBER) => Verdict::Acknowledged(Produced {
                base_offset: -1,
                log_append_time_ms: -1,
            }),
            Some(OUT_OF_ORDER_SEQUENCE_NUMBER | INVALID_PRODUCER_EPOCH | UNKNOWN_PRODUCER_ID) => {
                Verdict::Fenced(e)
            }
            _ if retriable(&e) => Verdict::Retry(e),
            _ => Verdict::Unresolved(e),
        },
    }
}

/// One batch stamped for a producer session, ready to be delivered (and re-delivered).
#[derive(Debug, Clone)]
pub struct PreparedBatch {
    topic: String,
    partition: i32,
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    count: i32,
    bytes: Bytes,
}

impl PreparedBatch {
    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }
    /// The partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }
    /// The producer id it carries.
    pub fn producer_id(&self) -> i64 {
        self.producer_id
    }
    /// The producer epoch it carries.
    pub fn epoch(&self) -> i16 {
        self.epoch
    }
    /// Its base sequence.
    pub fn base_sequence(&self) -> i32 {
        self.base_sequence
    }
    /// Its record count.
    pub fn records(&self) -> i32 {
        self.count
    }
    /// The stamped RecordBatch bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

#[derive(Debug)]
struct Session {
    producer_id: i64,
    epoch: i16,
    sequences: Sequences,
}

/// An idempotent producer over a [`Client`] (see the module docs for its rules).
#[derive(Debug)]
pub struct IdempotentProducer {
    bootstrap: String,
    client: Option<Client>,
    session: Option<Session>,
    /// Sessions started so far (InitProducerId answers).
    sessions: u64,
    /// A request was out when a send's future was dropped.
    interrupted: bool,
    compression: Compression,
    delivery_timeout: Duration,
    request_timeout_ms: i32,
}

impl IdempotentProducer {
    /// An idempotent producer over `client`; `acks` must be all (-1). The first send starts
    /// the session.
    pub fn new(client: Client, acks: i16) -> Result<Self> {
        require_acks_all(acks)?;
        Ok(Self {
            bootstrap: client.bootstrap().join(","),
            client: Some(client),
            session: None,
            sessions: 0,
            interrupted: false,
            compression: Compression::None,
            delivery_timeout: DEFAULT_DELIVERY_TIMEOUT,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
        })
    }

    /// Sets the compression of the batches [`send`](Self::send) and
    /// [`prepare`](Self::prepare) build.
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Bounds one send (session start, retries and waits included), like
    /// `delivery.timeout.ms`.
    pub fn with_delivery_timeout(mut self, timeout: Duration) -> Self {
        self.delivery_timeout = timeout;
        self
    }

    /// The Produce request's `timeout_ms` (how long the leader waits for the ISR).
    pub fn with_request_timeout_ms(mut self, timeout_ms: i32) -> Self {
        self.request_timeout_ms = timeout_ms;
        self
    }

    /// The current session's producer id and epoch.
    pub fn producer_id(&self) -> Option<(i64, i16)> {
        self.session.as_ref().map(|s| (s.producer_id, s.epoch))
    }

    /// How many sessions (producer ids) this producer has had.
    pub fn sessions(&self) -> u64 {
        self.sessions
    }

    /// Builds, stamps and delivers one batch; see [`prepare`](Self::prepare) and
    /// [`deliver`](Self::deliver).
    pub async fn send(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[ProducerRecord],
    ) -> Result<Produced> {
        let deadline = Instant::now() + self.delivery_timeout;
        let batch = self
            .prepare_until(topic, partition, records, deadline)
            .await?;
        self.deliver_until(&batch, deadline).await
    }

    /// Builds one batch and stamps it with the session's producer id, epoch and the partition's
    /// next sequence, starting a session first when there is none (or the partition's last
    /// batch is unresolved). Nothing is sent.
    pub async fn prepare(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[ProducerRecord],
    ) -> Result<PreparedBatch> {
        let deadline = Instant::now() + self.delivery_timeout;
        self.prepare_until(topic, partition, records, deadline)
            .await
    }

    /// Delivers a prepared batch: re-sends the same bytes on retriable errors until the delivery
    /// timeout. A batch is delivered at most once into the log however often this is called
    /// (the broker answers a re-sent batch with its original offsets).
    pub async fn deliver(&mut self, batch: &PreparedBatch) -> Result<Produced> {
        let deadline = Instant::now() + self.delivery_timeout;
        self.deliver_until(batch, deadline).await
    }

    async fn prepare_until(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[ProducerRecord],
        deadline: Instant,
    ) -> Result<PreparedBatch> {
        self.recover();
        let unstamped = encode_batch(records, self.compression)?;
        let count = record_count(&unstamped)?;
        if self
            .session
            .as_ref()
            .is_some_and(|s| s.sequences.is_unresolved(topic, partition))
        {
            tracing::debug!(
                topic,
                partition,
                "the last batch is unresolved: new producer session"
            );
            self.session = None;
        }
        if self.session.is_none() {
            self.start_session(deadline).await?;
        }
        let s = self
            .session
            .as_ref()
            .ok_or_else(|| ClientError::Unavailable("no producer session".into()))?;
        let base_sequence = s.sequences.next(topic, partition);
        Ok(PreparedBatch {
            topic: topic.to_string(),
            partition,
            producer_id: s.producer_id,
            epoch: s.epoch,
            base_sequence,
            count,
            bytes: stamp(&unstamped, s.producer_id, s.epoch, base_sequence)?,
        })
    }

    async fn deliver_until(
        &mut self,
        batch: &PreparedBatch,
        deadline: Instant,
    ) -> Result<Produced> {
        self.recover();
        let (topic, partition) = (batch.topic.as_str(), batch.partition);
        let mut last: Option<ClientError> = None;
        loop {
            if self.producer_id() != Some((batch.producer_id, batch.epoch)) {
                return Err(ClientError::Invalid(format!(
                    "the batch belongs to producer {} epoch {}, whose session is over; prepare it again",
                    batch.producer_id, batch.epoch
                )));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.failed(batch);
                return Err(self.timed_out(batch, last));
            }
            if let Err(e) = self.connect().await {
                last = Some(e);
                tokio::time::sleep(RETRY_BACKOFF.min(left)).await;
                continue;
            }
            let Some(client) = self.client.as_mut() else {
                continue;
            };
            self.interrupted = true;
            let attempt = tokio::time::timeout(
                left,
                client.produce(
                    topic,
                    partition,
                    batch.bytes.clone(),
                    -1,
                    self.request_timeout_ms,
                ),
            )
            .await;
            self.interrupted = false;
            let Ok(result) = attempt else {
                // The request may be out with its response unread: this connection is done.
                self.client = None;
                self.failed(batch);
                return Err(self.timed_out(batch, last));
            };
            match judge(result) {
                Verdict::Acknowledged(p) => {
                    if let Some(s) = self.session.as_mut() {
                        s.sequences.acknowledged(
                            topic,
                            partition,
                            batch.base_sequence,
                            batch.count,
                        );
                    }
                    return Ok(p);
                }
                Verdict::Retry(e) => {
                    tracing::debug!(topic, partition, error = %e, "re-sending the same batch");
                    last = Some(e);
                    tokio::time::sleep(RETRY_BACKOFF.min(left)).await;
                }
                Verdict::Fenced(e) => {
                    tracing::debug!(topic, partition, error = %e, "producer session over");
                    self.session = None;
                    return Err(e);
                }
                Verdict::Unresolved(e) => {
                    self.failed(batch);
                    return Err(e);
                }
            }
        }
    }

    /// InitProducerId on any broker, retried until `deadline`.
    async fn start_session(&mut self, deadline: Instant) -> Result<()> {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(TRANSACTION_TIMEOUT_MS)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let mut last: Option<ClientError> = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(last.unwrap_or_else(|| {
                    ClientError::TimedOut("InitProducerId: no answer in time".into())
                }));
            }
            if let Err(e) = self.connect().await {
                last = Some(e);
                tokio::time::sleep(RETRY_BACKOFF.min(left)).await;
                continue;
            }
            let Some(client) = self.client.as_mut() else {
                continue;
            };
            self.interrupted = true;
            let attempt =
                tokio::time::timeout(left, async { client.any()?.send(&req).await }).await;
            self.interrupted = false;
            let result = match attempt {
                Ok(Ok(resp)) => match ClientError::from_code(resp.error_code, None) {
                    None => Ok((resp.producer_id.0, resp.producer_epoch)),
                    Some(e) => Err(e),
                },
                Ok(Err(e)) => {
                    // Not an answer: the connection is suspect; reconnect (any bootstrap node).
                    self.client = None;
                    Err(e)
                }
                Err(_) => {
                    self.client = None;
                    Err(ClientError::TimedOut(
                        "InitProducerId: no answer in time".into(),
                    ))
                }
            };
            match result {
                Ok((producer_id, epoch)) => {
                    tracing::debug!(producer_id, epoch, "idempotent producer session");
                    self.session = Some(Session {
                        producer_id,
                        epoch,
                        sequences: Sequences::default(),
                    });
                    self.sessions += 1;
                    return Ok(());
                }
                Err(e) if retriable(&e) || matches!(e, ClientError::TimedOut(_)) => {
                    last = Some(e);
                    tokio::time::sleep(RETRY_BACKOFF.min(left)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// After a dropped send: the connection may hold an unread response and the batch's
    /// outcome is unknown, so start over with a new connection and a new session.
    fn recover(&mut self) {
        if self.interrupted {
            self.interrupted = false;
            self.client = None;
            self.session = None;
        }
    }

    /// Connects (any bootstrap address) unless connected.
    async fn connect(&mut self) -> Result<()> {
        if self.client.is_none() {
            self.client = Some(Client::connect(&self.bootstrap).await?);
        }
        Ok(())
    }

    fn failed(&mut self, batch: &PreparedBatch) {
        if let Some(s) = self.session.as_mut()
            && (s.producer_id, s.epoch) == (batch.producer_id, batch.epoch)
        {
            s.sequences
                .failed(&batch.topic, batch.partition, batch.base_sequence);
        }
    }

    fn timed_out(&self, batch: &PreparedBatch, last: Option<ClientError>) -> ClientError {
        ClientError::TimedOut(format!(
            "{}-{}: batch at sequence {} not acknowledged within {:?}{}",
            batch.topic,
            batch.partition,
            batch.base_sequence,
            self.delivery_timeout,
            last.map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        ))
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::records::RecordBatchDecoder;

    use super::*;

    fn rec(i: usize) -> ProducerRecord {
        ProducerRecord {
            value: Some(Bytes::from(format!("value-{i}"))),
            timestamp: 1_700_000_000_000 + i as i64,
            ..ProducerRecord::default()
        }
    }

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(increment_sequence(0, 1), 1);
        assert_eq!(increment_sequence(5, 10), 15);
        assert_eq!(increment_sequence(i32::MAX - 1, 1), i32::MAX);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 2, 5), 2);
    }

    #[test]
    fn only_the_next_batch_advances_and_failures_mark_it_unresolved() {
        let mut s = Sequences::default();
        assert_eq!(s.next("t", 0), 0);
        s.acknowledged("t", 0, 0, 3);
        assert_eq!(s.next("t", 0), 3);
        assert_eq!(s.next("t", 1), 0, "partitions are independent");
        assert_eq!(s.next("u", 0), 0, "topics are independent");
        // A re-sent older batch acknowledged again (a duplicate) changes nothing.
        s.acknowledged("t", 0, 0, 3);
        assert_eq!(s.next("t", 0), 3);
        // A failed re-send of an older batch does not put the next one in doubt.
        s.failed("t", 0, 0);
        assert!(!s.is_unresolved("t", 0));
        // The next batch fails: unresolved until that same batch is acknowledged.
        s.failed("t", 0, 3);
        assert!(s.is_unresolved("t", 0));
        assert!(!s.is_unresolved("t", 1));
        assert_eq!(s.next("t", 0), 3, "a failure never advances");
        s.acknowledged("t", 0, 3, 2);
        assert!(!s.is_unresolved("t", 0));
        assert_eq!(s.next("t", 0), 5);
    }

    #[test]
    fn stamped_batches_carry_the_producer_fields_and_a_valid_crc() {
        let records: Vec<_> = (0..4).map(rec).collect();
        for compression in [Compression::None, Compression::Zstd] {
            let plain = encode_batch(&records, compression).unwrap();
            assert_eq!(record_count(&plain).unwrap(), 4);
            let stamped = stamp(&plain, 4242, 7, 1000).unwrap();
            assert_eq!(stamped.len(), plain.len());
            assert_eq!(
                crc32c::crc32c(&stamped[ATTRIBUTES_OFFSET..]).to_be_bytes(),
                stamped[CRC_OFFSET..ATTRIBUTES_OFFSET]
            );
            let mut buf = stamped.clone();
            let set = RecordBatchDecoder::decode(&mut buf).unwrap();
            assert_eq!(set.records.len(), 4);
            for (i, r) in set.records.iter().enumerate() {
                assert_eq!(r.producer_id, 4242);
                assert_eq!(r.producer_epoch, 7);
                assert_eq!(r.sequence, 1000 + i as i32);
                assert_eq!(r.value, records[i].value);
            }
        }
        // Not one v2 batch: refused, never stamped.
        let plain = encode_batch(&[rec(0)], Compression::None).unwrap();
        assert!(stamp(&plain[..plain.len() - 1], 1, 0, 0).is_err());
        let mut two = BytesMut::from(&plain[..]);
        two.extend_from_slice(&plain);
        assert!(stamp(&two, 1, 0, 0).is_err());
        let mut v1 = BytesMut::from(&plain[..]);
        v1[MAGIC_OFFSET] = 1;
        assert!(stamp(&v1, 1, 0, 0).is_err());
        assert!(stamp(&plain[..20], 1, 0, 0).is_err());
    }

    #[test]
    fn results_are_judged_like_kafkas_producer() {
        let ok = Produced {
            base_offset: 7,
            log_append_time_ms: -1,
        };
        assert!(matches!(judge(Ok(Some(ok))), Verdict::Acknowledged(p) if p.base_offset == 7));
        let err = |code| Err(ClientError::from_code(code, None).unwrap());
        assert!(
            matches!(judge(err(46)), Verdict::Acknowledged(p) if p.base_offset == -1),
            "DUPLICATE_SEQUENCE_NUMBER is success"
        );
        for code in [45, 47, 59] {
            assert!(matches!(judge(err(code)), Verdict::Fenced(_)), "{code}");
        }
        // NOT_LEADER_OR_FOLLOWER, NOT_ENOUGH_REPLICAS, REQUEST_TIMED_OUT: the same batch again.
        for code in [6, 19, 7] {
            assert!(matches!(judge(err(code)), Verdict::Retry(_)), "{code}");
        }
        assert!(matches!(
            judge(Err(ClientError::Unavailable("down".into()))),
            Verdict::Retry(_)
        ));
        // MESSAGE_TOO_LARGE, INVALID_RECORD: failed, outcome of earlier attempts unknown.
        for code in [10, 87] {
            assert!(matches!(judge(err(code)), Verdict::Unresolved(_)), "{code}");
        }
        assert!(matches!(judge(Ok(None)), Verdict::Unresolved(_)));
    }

    #[test]
    fn other_acks_are_refused() {
        assert!(require_acks_all(-1).is_ok());
        for acks in [0, 1] {
            let e = require_acks_all(acks).unwrap_err();
            assert!(e.to_string().contains("acks=all"), "{e}");
        }
    }
}
