//! The workload: producers writing self-checking values with `gregor-client`, live `assign`
//! readers, and the final read, all recorded into one [`Recorder`] history.
//!
//! Each producer has one send in flight (a paced loop; the pace is load, not synchronization).
//! `gregor-client` retries retriable errors itself, so every failed send is indeterminate
//! (`Attempts::MayHaveRetried`). With `acks=0` nothing is acknowledged: every send is
//! indeterminate. A producer or reader whose client failed reconnects as a new session.
//!
//! With `--idempotent` each producer is a [`IdempotentProducer`]: its retries re-send the same
//! batch (same producer id, epoch and sequence) until `--request-timeout`, so a retry cannot
//! append a record twice and the run is checked as idempotent (duplicates and reordered
//! acknowledged sends are fatal). A failed send stays indeterminate (an earlier attempt may have
//! been appended). The history's producer session is the producer id: a new InitProducerId
//! (after a fatal sequence error or an unresolved batch) is a new session.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use gregor_client::kafka_protocol::records::Compression;
use gregor_client::records::{ProducerRecord, decode_records, encode_batch};
use gregor_client::{Client, IdempotentProducer};
use gregor_verify::{
    Attempts, Event, OpType, Recorder, SendId, classify_send_error, decode_payload, encode_payload,
    make_value,
};
use tokio_util::sync::CancellationToken;

/// Process ids of live readers start here (writers are `0..producers`).
const READER_BASE: u64 = 1 << 32;
/// The final read's process id.
const FINAL_READER: u64 = 1 << 33;
/// Fetch wait of the readers.
const FETCH_WAIT_MS: i32 = 200;
const FETCH_MAX_BYTES: i32 = 1 << 20;
/// Pause before a failed client reconnects.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);

/// What the producers and readers do.
#[derive(Debug, Clone)]
pub(crate) struct Workload {
    pub(crate) bootstrap: String,
    pub(crate) topic: String,
    pub(crate) partitions: i32,
    /// `acks`: 0, 1 or -1.
    pub(crate) acks: i16,
    /// Sends per second per producer.
    pub(crate) rate: u32,
    /// Bound on one send, retries included.
    pub(crate) request_timeout: Duration,
    /// Extra payload bytes.
    pub(crate) filler: u16,
    /// Idempotent producers (acks must be -1).
    pub(crate) idempotent: bool,
}

/// A producer: writer id `writer`, until `stop`.
pub(crate) async fn produce(
    w: Arc<Workload>,
    writer: u32,
    rec: Arc<Recorder>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    if w.idempotent {
        return produce_idempotent(w, writer, rec, stop).await;
    }
    let mut session = 0u64;
    let mut client: Option<Client> = None;
    let period = Duration::from_secs_f64(1.0 / f64::from(w.rate.max(1)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timeout_ms = i32::try_from(w.request_timeout.as_millis()).unwrap_or(i32::MAX);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let c = match client.as_mut() {
            Some(c) => c,
            None => match Client::connect(&w.bootstrap).await {
                Ok(c) => client.insert(c),
                Err(e) => {
                    tracing::debug!(writer, error = %e, "producer cannot connect");
                    tokio::time::sleep(RECONNECT_BACKOFF).await;
                    continue;
                }
            },
        };
        let value = make_value(writer, seq).context("writer or sequence out of range")?;
        let partition =
            i32::try_from(seq % u64::try_from(w.partitions.max(1)).unwrap_or(1)).unwrap_or(0);
        seq += 1;
        let record = ProducerRecord {
            value: Some(Bytes::from(encode_payload(value, w.filler))),
            timestamp: now_ms(),
            ..ProducerRecord::default()
        };
        let batch = encode_batch(&[record], Compression::None)?;
        let id = SendId {
            process: u64::from(writer),
            session,
            partition,
            value,
        };
        rec.record(Event::send_invoke(rec.now_ns(), id));
        let sent = tokio::time::timeout(
            w.request_timeout,
            c.produce(&w.topic, partition, batch, w.acks, timeout_ms),
        )
        .await;
        let event = match sent {
            Ok(Ok(Some(p))) => Event::send_ok(rec.now_ns(), id, p.base_offset),
            Ok(Ok(None)) => Event::send_error(
                rec.now_ns(),
                id,
                OpType::Info,
                None,
                "acks=0: never acknowledged",
            ),
            Ok(Err(e)) => {
                let code = e.kafka_code().map(i32::from);
                let kind = classify_send_error(code.unwrap_or(-1), Attempts::MayHaveRetried);
                if code.is_none() {
                    // Not a broker answer: the connection is suspect; start a new session.
                    client = None;
                    session += 1;
                }
                Event::send_error(rec.now_ns(), id, kind, code, e.to_string())
            }
            Err(_) => {
                client = None;
                session += 1;
                Event::send_error(rec.now_ns(), id, OpType::Info, None, "timed out")
            }
        };
        rec.record(event);
    }
}

/// An idempotent producer: writer id `writer`, until `stop`.
async fn produce_idempotent(
    w: Arc<Workload>,
    writer: u32,
    rec: Arc<Recorder>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut producer: Option<IdempotentProducer> = None;
    let period = Duration::from_secs_f64(1.0 / f64::from(w.rate.max(1)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timeout_ms = i32::try_from(w.request_timeout.as_millis()).unwrap_or(i32::MAX);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let p = match producer.as_mut() {
            Some(p) => p,
            // The producer reconnects by itself once it exists; only the first connect is here.
            None => match Client::connect(&w.bootstrap).await {
                Ok(c) => producer.insert(
                    IdempotentProducer::new(c, w.acks)?
                        .with_delivery_timeout(w.request_timeout)
                        .with_request_timeout_ms(timeout_ms),
                ),
                Err(e) => {
                    tracing::debug!(writer, error = %e, "producer cannot connect");
                    tokio::time::sleep(RECONNECT_BACKOFF).await;
                    continue;
                }
            },
        };
        let value = make_value(writer, seq).context("writer or sequence out of range")?;
        let partition =
            i32::try_from(seq % u64::try_from(w.partitions.max(1)).unwrap_or(1)).unwrap_or(0);
        let record = ProducerRecord {
            value: Some(Bytes::from(encode_payload(value, w.filler))),
            timestamp: now_ms(),
            ..ProducerRecord::default()
        };
        // Stamping may start a producer session (InitProducerId); nothing is sent yet, so a
        // failure here is not a send: the same value is tried again at the next tick.
        let batch = match p.prepare(&w.topic, partition, &[record]).await {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(writer, error = %e, "no producer session");
                continue;
            }
        };
        seq += 1;
        let id = SendId {
            process: u64::from(writer),
            session: p.sessions(),
            partition,
            value,
        };
        rec.record(Event::send_invoke(rec.now_ns(), id));
        // Bounded by the producer's delivery timeout (--request-timeout).
        let event = match p.deliver(&batch).await {
            Ok(done) => Event::send_ok(rec.now_ns(), id, done.base_offset),
            Err(e) => {
                let code = e.kafka_code().map(i32::from);
                let kind = classify_send_error(code.unwrap_or(-1), Attempts::MayHaveRetried);
                Event::send_error(rec.now_ns(), id, kind, code, e.to_string())
            }
        };
        rec.record(event);
    }
}

/// A live reader: every partition from the beginning, round-robin, until `stop`.
pub(crate) async fn read(
    w: Arc<Workload>,
    reader: u32,
    rec: Arc<Recorder>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let process = READER_BASE + u64::from(reader);
    let mut session = 0u64;
    let mut next = vec![0i64; usize::try_from(w.partitions.max(0)).unwrap_or(0)];
    let mut client: Option<Client> = None;
    while !stop.is_cancelled() {
        for partition in 0..w.partitions {
            if stop.is_cancelled() {
                break;
            }
            let c = match client.as_mut() {
                Some(c) => c,
                None => match Client::connect(&w.bootstrap).await {
                    Ok(c) => client.insert(c),
                    Err(_) => {
                        tokio::time::sleep(RECONNECT_BACKOFF).await;
                        continue;
                    }
                },
            };
            let slot = usize::try_from(partition).unwrap_or(0);
            let fetched = tokio::time::timeout(
                w.request_timeout,
                c.fetch(
                    &w.topic,
                    partition,
                    next[slot],
                    FETCH_WAIT_MS,
                    FETCH_MAX_BYTES,
                ),
            )
            .await;
            match fetched {
                Ok(Ok(f)) => {
                    for r in decode_records(&f.records).unwrap_or_default() {
                        if r.offset < next[slot] {
                            continue;
                        }
                        rec.record(poll_event(&rec, process, session, partition, &r));
                        next[slot] = r.offset + 1;
                    }
                }
                Ok(Err(e)) if e.kafka_code() == Some(1) => {
                    // OFFSET_OUT_OF_RANGE: the log was truncated under us (acks=1 loss); a
                    // new session starts over from the beginning.
                    next[slot] = 0;
                    session += 1;
                }
                Ok(Err(_)) | Err(_) => {
                    client = None;
                    tokio::time::sleep(RECONNECT_BACKOFF).await;
                }
            }
        }
    }
    Ok(())
}

/// Reads every partition from its log start to its high watermark, recorded as the final read.
/// Retries (a new connection each time) until `deadline`.
pub(crate) async fn final_read(
    w: &Workload,
    rec: &Recorder,
    deadline: tokio::time::Instant,
) -> anyhow::Result<()> {
    for partition in 0..w.partitions {
        let session = u64::try_from(partition).unwrap_or(0);
        rec.record(
            Event::poll_invoke(rec.now_ns(), FINAL_READER, session, partition).in_final_read(),
        );
        let mut next: Option<i64> = None;
        let mut high: Option<i64> = None;
        let mut client: Option<Client> = None;
        loop {
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "final read of {}-{partition}: at offset {next:?} of {high:?} at the deadline",
                    w.topic
                );
            }
            let c = match client.as_mut() {
                Some(c) => c,
                None => match Client::connect(&w.bootstrap).await {
                    Ok(c) => client.insert(c),
                    Err(_) => {
                        tokio::time::sleep(RECONNECT_BACKOFF).await;
                        continue;
                    }
                },
            };
            let from = match next {
                Some(n) => n,
                None => match c.list_offset(&w.topic, partition, -2).await {
                    Ok((start, _)) => *next.insert(start),
                    Err(_) => {
                        client = None;
                        tokio::time::sleep(RECONNECT_BACKOFF).await;
                        continue;
                    }
                },
            };
            match c
                .fetch(&w.topic, partition, from, FETCH_WAIT_MS, FETCH_MAX_BYTES)
                .await
            {
                Ok(f) => {
                    // The end is the high watermark when the read started (Jepsen's final read).
                    let end = *high.get_or_insert(f.high_watermark);
                    let mut at = from;
                    for r in decode_records(&f.records).unwrap_or_default() {
                        if r.offset < from || r.offset >= end {
                            continue;
                        }
                        rec.record(
                            poll_event(rec, FINAL_READER, session, partition, &r).in_final_read(),
                        );
                        at = r.offset + 1;
                    }
                    next = Some(at);
                    if at >= end {
                        break;
                    }
                }
                Err(_) => {
                    client = None;
                    tokio::time::sleep(RECONNECT_BACKOFF).await;
                }
            }
        }
    }
    Ok(())
}

fn poll_event(
    rec: &Recorder,
    process: u64,
    session: u64,
    partition: i32,
    r: &gregor_client::records::ConsumedRecord,
) -> Event {
    let t = rec.now_ns();
    match r.value.as_deref().map(decode_payload) {
        Some(Ok(value)) => Event::poll_ok(t, process, session, partition, r.offset, value),
        Some(Err(e)) => {
            Event::poll_corrupt(t, process, session, partition, r.offset, e.to_string())
        }
        None => Event::poll_corrupt(t, process, session, partition, r.offset, "null value"),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
