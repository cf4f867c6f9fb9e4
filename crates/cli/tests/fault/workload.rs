//! The workload driver: K librdkafka producers writing unique self-checking values to every
//! partition of a topic, recording each send's invoke and completion into a
//! [`gregor_verify::Recorder`], and the final `assign` read of every partition up to its high
//! watermark.
//!
//! Producers send at a fixed pace (a token of load, not synchronization) with a bounded number
//! of deliveries outstanding. A producer whose librdkafka instance hits a fatal error (e.g. an
//! idempotence sequence error) is replaced by a new instance: a new producer *session*, as
//! Jepsen models a crashed client. Acknowledgements are also published on a watch channel so
//! tests can wait for progress ("n more acks") instead of sleeping.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use gregor_verify::{
    Attempts, Event, OpFn, OpType, Recorder, SendId, classify_send_error, decode_payload,
    encode_payload, make_value,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What the producers do.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// The topic written.
    pub topic: String,
    /// Its partition count; producers write round-robin over all of them.
    pub partitions: i32,
    /// How many producers (writer ids 0..producers).
    pub producers: u32,
    /// `acks`: `all`, `1` or `0`.
    pub acks: &'static str,
    /// `enable.idempotence`.
    pub idempotent: bool,
    /// Sends per second per producer.
    pub rate: u32,
    /// `message.timeout.ms` (librdkafka's delivery timeout: every send completes within it).
    pub message_timeout_ms: u32,
    /// `request.timeout.ms`.
    pub request_timeout_ms: u32,
    /// `retries` (`None`: librdkafka's default). `Some(0)` makes pre-append errors definite.
    pub retries: Option<u32>,
    /// Deliveries outstanding per producer before it stops sending.
    pub max_outstanding: usize,
    /// Extra payload bytes per record.
    pub filler: u16,
    /// Live `assign` consumers reading every partition from the beginning while the producers
    /// run (the subject of the poll-skip, nonmonotonic-poll and stale-read analyses).
    pub consumers: u32,
}

impl WorkloadConfig {
    /// One idempotent acks=all producer at 200 sends/s: the reference workload (W-Q, scaled to
    /// the 2-core machine).
    pub fn new(topic: &str, partitions: i32) -> Self {
        WorkloadConfig {
            topic: topic.to_string(),
            partitions,
            producers: 1,
            acks: "all",
            idempotent: true,
            rate: 200,
            message_timeout_ms: 15_000,
            request_timeout_ms: 3_000,
            retries: None,
            max_outstanding: 500,
            filler: 64,
            consumers: 1,
        }
    }

    fn attempts(&self) -> Attempts {
        if self.retries == Some(0) {
            Attempts::Single
        } else {
            Attempts::MayHaveRetried
        }
    }
}

/// Acknowledgement progress, published on every ack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AckProgress {
    /// Acks so far (all producers).
    pub count: u64,
    /// Completion time of the latest ack (history clock).
    pub last_ns: u64,
    /// The same per partition, for the first [`TRACKED_PARTITIONS`] partitions.
    pub last_ns_by_partition: [u64; TRACKED_PARTITIONS],
}

/// Partitions whose latest ack time [`AckProgress`] tracks separately.
pub const TRACKED_PARTITIONS: usize = 16;

/// Running producers. [`Workload::stop`] ends them; dropping it cancels them too.
#[derive(Debug)]
pub struct Workload {
    recorder: Recorder,
    acks: watch::Receiver<AckProgress>,
    stop: CancellationToken,
    tasks: JoinSet<anyhow::Result<()>>,
    drain: Duration,
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Workload {
    /// Starts `cfg.producers` producers on `client` (bootstrap etc.) recording into `recorder`.
    pub fn start(client: &ClientConfig, cfg: WorkloadConfig, recorder: &Recorder) -> Self {
        let (tx, rx) = watch::channel(AckProgress::default());
        let tx = Arc::new(tx);
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let drain = Duration::from_millis(u64::from(cfg.message_timeout_ms)) + DRAIN_SLACK;
        let cfg = Arc::new(cfg);
        for reader in 0..cfg.consumers {
            let (client, cfg, rec, stop) =
                (client.clone(), cfg.clone(), recorder.clone(), stop.clone());
            tasks.spawn_blocking(move || consume(reader, &client, &cfg, &rec, &stop));
        }
        for writer in 0..cfg.producers {
            tasks.spawn(produce(
                writer,
                client.clone(),
                cfg.clone(),
                recorder.clone(),
                tx.clone(),
                stop.clone(),
            ));
        }
        Workload {
            recorder: recorder.clone(),
            acks: rx,
            stop,
            tasks,
            drain,
        }
    }

    /// Acks so far.
    pub fn progress(&self) -> AckProgress {
        *self.acks.borrow()
    }

    /// Waits (bounded) until at least `count` sends were acknowledged in total.
    pub async fn wait_acks(&self, count: u64, deadline: Duration) -> anyhow::Result<AckProgress> {
        let mut rx = self.acks.clone();
        match tokio::time::timeout(deadline, rx.wait_for(|p| p.count >= count)).await {
            Ok(Ok(p)) => Ok(*p),
            Ok(Err(_)) => bail!("producers stopped before {count} acks"),
            Err(_) => bail!(
                "only {} of {count} acks within {deadline:?}",
                self.progress().count
            ),
        }
    }

    /// Waits (bounded) for the first ack completing after `t_ns`; returns its completion time.
    pub async fn first_ack_after(&self, t_ns: u64, deadline: Duration) -> anyhow::Result<u64> {
        let mut rx = self.acks.clone();
        match tokio::time::timeout(deadline, rx.wait_for(|p| p.last_ns > t_ns)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => bail!("producers stopped"),
            Err(_) => bail!("no ack within {deadline:?}"),
        }
        // The latest ack is after t_ns; the first one after it is in the history.
        self.recorder
            .snapshot()
            .iter()
            .filter(|e| e.f == OpFn::Send && e.kind == OpType::Ok && e.t_ns > t_ns)
            .map(|e| e.t_ns)
            .min()
            .context("ack published but not recorded")
    }

    /// The completion time of the first ack on `partition` of a send invoked after `t_ns`
    /// (waiting, bounded). Sends invoked earlier do not count: the delivery report of one the
    /// (now dead) leader answered before `t_ns` can still be handed over after it.
    pub async fn first_ack_after_on(
        &self,
        partition: i32,
        t_ns: u64,
        deadline: Duration,
    ) -> anyhow::Result<u64> {
        let i = usize::try_from(partition)
            .ok()
            .filter(|i| *i < TRACKED_PARTITIONS)
            .context("partition not tracked")?;
        let until = tokio::time::Instant::now() + deadline;
        let mut rx = self.acks.clone();
        let mut checked = 0;
        loop {
            let last = rx.borrow_and_update().last_ns_by_partition[i];
            // Look at the history only when this partition got a new ack since the last look.
            if last > t_ns && last != checked {
                checked = last;
                let events = self.recorder.snapshot();
                let invoked_after: std::collections::HashSet<u64> = events
                    .iter()
                    .filter(|e| {
                        e.f == OpFn::Send
                            && e.kind == OpType::Invoke
                            && e.partition == partition
                            && e.t_ns > t_ns
                    })
                    .filter_map(|e| e.value)
                    .collect();
                let first = events
                    .iter()
                    .filter(|e| {
                        e.f == OpFn::Send
                            && e.kind == OpType::Ok
                            && e.partition == partition
                            && e.value.is_some_and(|v| invoked_after.contains(&v))
                    })
                    .map(|e| e.t_ns)
                    .min();
                if let Some(t) = first {
                    return Ok(t);
                }
            }
            match tokio::time::timeout_at(until, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => bail!("producers stopped"),
                Err(_) => bail!("no ack on partition {partition} within {deadline:?}"),
            }
        }
    }

    /// Stops sending and waits (bounded by the delivery timeout) for every outstanding send to
    /// complete; sends still open then stay without completion (the checker counts them `info`).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        let all = async {
            while let Some(r) = self.tasks.join_next().await {
                r??;
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(self.drain + DRAIN_SLACK, all)
            .await
            .context("producers did not drain")?
    }
}

/// Beyond `message.timeout.ms`, how long a delivery report may take to arrive.
const DRAIN_SLACK: Duration = Duration::from_secs(5);

fn producer(client: &ClientConfig, cfg: &WorkloadConfig) -> anyhow::Result<FutureProducer> {
    let mut c = client.clone();
    c.set("acks", cfg.acks)
        .set("enable.idempotence", cfg.idempotent.to_string())
        .set("message.timeout.ms", cfg.message_timeout_ms.to_string())
        .set("request.timeout.ms", cfg.request_timeout_ms.to_string())
        .set("retry.backoff.ms", "50")
        .set("retry.backoff.max.ms", "500")
        .set("linger.ms", "2");
    if cfg.idempotent {
        // Kafka's upper bound with idempotence (and librdkafka's cap): five batches in flight,
        // the window the broker's duplicate detection covers.
        c.set("max.in.flight.requests.per.connection", "5");
    }
    if let Some(r) = cfg.retries {
        c.set("retries", r.to_string());
    }
    Ok(c.create()?)
}

type Delivery = (
    SendId,
    <rdkafka::producer::DeliveryFuture as Future>::Output,
);

async fn produce(
    writer: u32,
    client: ClientConfig,
    cfg: Arc<WorkloadConfig>,
    rec: Recorder,
    acks: Arc<watch::Sender<AckProgress>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let process = u64::from(writer);
    let mut session = 0u64;
    let mut current = producer(&client, &cfg)?;
    // Replaced instances stay alive until their deliveries are reported.
    let mut retired = Vec::new();
    let mut inflight = FuturesUnordered::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / cfg.rate.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let attempts = cfg.attempts();
    let payload_topic = cfg.topic.clone();
    let mut seq = 0u64;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            Some(done) = inflight.next(), if !inflight.is_empty() => {
                complete(&rec, &acks, attempts, done);
            }
            _ = tick.tick(), if inflight.len() < cfg.max_outstanding => {
                let value = make_value(writer, seq).context("sequence space exhausted")?;
                let partition = (seq % cfg.partitions as u64) as i32;
                seq += 1;
                let id = SendId { process, session, partition, value };
                let payload = encode_payload(value, cfg.filler);
                rec.record(Event::send_invoke(rec.now_ns(), id));
                let record = FutureRecord::<(), _>::to(&payload_topic)
                    .partition(partition)
                    .payload(&payload);
                match current.send_result(record) {
                    Ok(delivery) => inflight.push(deliver(id, delivery)),
                    // Never handed to librdkafka (e.g. its queue is full): definitely not sent.
                    Err((e, _)) => rec.record(Event::send_error(
                        rec.now_ns(), id, OpType::Fail, None, format!("enqueue: {e}"),
                    )),
                }
            }
        }
        if let Some((code, reason)) = current.client().fatal_error() {
            // A fatal idempotence error poisons the instance: start a new session, as a real
            // application would restart its producer. Its open sends complete as errors.
            eprintln!("producer {writer} session {session}: fatal {code:?}: {reason}");
            session += 1;
            retired.push(std::mem::replace(&mut current, producer(&client, &cfg)?));
        }
    }
    // Every queued message gets a delivery report within message.timeout.ms.
    while let Some(done) = inflight.next().await {
        complete(&rec, &acks, attempts, done);
    }
    drop(retired);
    Ok(())
}

async fn deliver(id: SendId, delivery: rdkafka::producer::DeliveryFuture) -> Delivery {
    (id, delivery.await)
}

fn complete(rec: &Recorder, acks: &watch::Sender<AckProgress>, attempts: Attempts, done: Delivery) {
    let (id, result) = done;
    let t = rec.now_ns();
    match result {
        Ok(Ok(delivery)) => {
            rec.record(Event::send_ok(t, id, delivery.offset));
            acks.send_modify(|p| {
                p.count += 1;
                p.last_ns = p.last_ns.max(t);
                if let Some(last) = usize::try_from(id.partition)
                    .ok()
                    .and_then(|i| p.last_ns_by_partition.get_mut(i))
                {
                    *last = (*last).max(t);
                }
            });
        }
        Ok(Err((e, _))) => {
            let code = match &e {
                KafkaError::MessageProduction(c) => Some(*c as i32),
                _ => None,
            };
            let kind = code.map_or(OpType::Info, |c| classify_send_error(c, attempts));
            rec.record(Event::send_error(t, id, kind, code, e.to_string()));
        }
        Err(_canceled) => rec.record(Event::send_error(
            t,
            id,
            OpType::Info,
            None,
            "delivery report dropped",
        )),
    }
}

/// The process id of live consumer `reader` (distinct from writers' and the final read's).
fn consumer_process(reader: u32) -> u64 {
    500_000 + u64::from(reader)
}

/// A consumer's client config: `assign` only, nothing committed. A `group.id` is set because
/// librdkafka wants one for its consumer; no group is joined without `subscribe`.
fn consumer_config(client: &ClientConfig, group: &str) -> ClientConfig {
    let mut c = client.clone();
    c.set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("group.id", group);
    c
}

/// Records one polled record (payload checked) and returns its offset.
fn record_poll(
    rec: &Recorder,
    process: u64,
    session: u64,
    m: &rdkafka::message::BorrowedMessage<'_>,
    final_read: bool,
) -> i64 {
    let (t, partition, offset) = (rec.now_ns(), m.partition(), m.offset());
    let mut event = match m.payload().map(decode_payload) {
        Some(Ok(value)) => Event::poll_ok(t, process, session, partition, offset, value),
        Some(Err(e)) => Event::poll_corrupt(t, process, session, partition, offset, e.to_string()),
        None => Event::poll_corrupt(t, process, session, partition, offset, "null payload"),
    };
    event.final_read = final_read;
    rec.record(event);
    offset
}

/// A live consumer: one assignment (session 0) of every partition from the beginning, polled
/// until `stop`. Poll errors (a broker down, a leader moving) are expected under faults; the
/// client recovers on its own and the history shows what it returned.
fn consume(
    reader: u32,
    client: &ClientConfig,
    cfg: &WorkloadConfig,
    rec: &Recorder,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let process = consumer_process(reader);
    let consumer: BaseConsumer = consumer_config(client, "gregor-durability-live").create()?;
    let mut tpl = TopicPartitionList::new();
    for partition in 0..cfg.partitions {
        tpl.add_partition_offset(&cfg.topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    while !stop.is_cancelled() {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                record_poll(rec, process, 0, &m, false);
            }
            Some(Err(e)) => eprintln!("live consumer {reader}: {e}"),
        }
    }
    Ok(())
}

/// Reads every partition of `topic` from the beginning up to the high watermark it has when the
/// read starts, as the final read (`final_read` events, one consumer session per partition),
/// checking every payload. Call it after the producers stopped and the cluster healed. Returns
/// the number of records read.
pub async fn final_read(
    client: &ClientConfig,
    topic: &str,
    partitions: i32,
    rec: &Recorder,
    deadline: Duration,
) -> anyhow::Result<u64> {
    let c = consumer_config(client, "gregor-durability-final-read");
    let topic = topic.to_string();
    let rec = rec.clone();
    let until = Instant::now() + deadline;
    let marks = watermarks(&c, &topic, partitions, until).await?;
    tokio::task::spawn_blocking(move || {
        let process = 1_000_000;
        let mut total = 0u64;
        for (partition, (low, high)) in (0..partitions).zip(marks) {
            let consumer: BaseConsumer = c.create()?;
            let session = partition as u64;
            rec.record(
                Event::poll_invoke(rec.now_ns(), process, session, partition).in_final_read(),
            );
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, partition, Offset::Offset(low))?;
            consumer.assign(&tpl)?;
            let mut next = low;
            while next < high {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    bail!("final read of {topic}-{partition}: at {next} of {high} at the deadline");
                }
                let Some(m) = consumer.poll(left.min(Duration::from_millis(500))) else {
                    continue;
                };
                let m = m.with_context(|| format!("final read of {topic}-{partition}"))?;
                next = record_poll(&rec, process, session, &m, true) + 1;
                total += 1;
            }
        }
        Ok(total)
    })
    .await?
}

/// Every partition's watermarks, asked again (at the harness's polling pace, until `until`)
/// while the answer is a retriable Kafka error: right after a leader change the new leader
/// answers OFFSET_NOT_AVAILABLE until its high watermark caught up (KIP-207), and metadata may
/// still name the old leader.
async fn watermarks(
    c: &ClientConfig,
    topic: &str,
    partitions: i32,
    until: Instant,
) -> anyhow::Result<Vec<(i64, i64)>> {
    use rdkafka::types::RDKafkaErrorCode as Code;
    let consumer: Arc<BaseConsumer> = Arc::new(c.create()?);
    let mut tick = tokio::time::interval(super::POLL_EVERY);
    let mut out = Vec::new();
    for partition in 0..partitions {
        loop {
            tick.tick().await;
            let (consumer, t) = (Arc::clone(&consumer), topic.to_string());
            let answer = tokio::task::spawn_blocking(move || {
                consumer.fetch_watermarks(&t, partition, Duration::from_secs(10))
            })
            .await?;
            match answer {
                Ok(w) => {
                    out.push(w);
                    break;
                }
                Err(KafkaError::MetadataFetch(
                    Code::OffsetNotAvailable
                    | Code::NotLeaderForPartition
                    | Code::LeaderNotAvailable,
                )) if Instant::now() < until => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("watermarks of {topic}-{partition}"));
                }
            }
        }
    }
    Ok(out)
}

/// Sends `n` records one at a time from a fresh producer (`writer`), each awaited (bounded by
/// `cfg.message_timeout_ms`) before the next, recording everything; returns the completions.
pub async fn send_each(
    client: &ClientConfig,
    cfg: &WorkloadConfig,
    writer: u32,
    n: u64,
    rec: &Recorder,
) -> anyhow::Result<Vec<Event>> {
    let p = producer(client, cfg)?;
    let (acks, _) = watch::channel(AckProgress::default());
    let attempts = cfg.attempts();
    let bound = Duration::from_millis(u64::from(cfg.message_timeout_ms)) + DRAIN_SLACK;
    let first = rec.len();
    for seq in 0..n {
        let value = make_value(writer, seq).context("sequence space")?;
        let partition = (seq % cfg.partitions as u64) as i32;
        let id = SendId {
            process: u64::from(writer),
            session: 0,
            partition,
            value,
        };
        let payload = encode_payload(value, cfg.filler);
        rec.record(Event::send_invoke(rec.now_ns(), id));
        let record = FutureRecord::<(), _>::to(&cfg.topic)
            .partition(partition)
            .payload(&payload);
        let delivery = p.send_result(record).map_err(|(e, _)| e)?;
        let done = tokio::time::timeout(bound, deliver(id, delivery))
            .await
            .context("no delivery report within the delivery timeout")?;
        complete(rec, &acks, attempts, done);
    }
    Ok(rec.snapshot()[first..]
        .iter()
        .filter(|e| e.f == OpFn::Send && e.kind != OpType::Invoke)
        .cloned()
        .collect())
}
