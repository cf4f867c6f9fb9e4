//! `gregor perf produce|consume|disk`: load generators in the spirit of kafka-producer-perf-test,
//! kafka-consumer-perf-test and rdkafka_performance, with their flag names, and the raw
//! sequential-write bandwidth a broker's appends compare with.
//!
//! A producer keeps one connection per partition leader with up to `--max-in-flight` produce
//! requests pipelined on it (Kafka's `max.in.flight.requests.per.connection`). Without a cap
//! every batch fills at once, so (as librdkafka does under load) a request carries a full batch
//! for each partition its broker leads, and the producer takes the brokers in turn. With
//! `--throughput`, the records due within one `--linger-ms` form one batch, and consecutive
//! batches go to consecutive partitions (like the sticky partitioner for records without keys). Latency is per record, up to its
//! acknowledgement: with `--throughput` it starts when the record was due by the schedule (so
//! linger and any lag behind the schedule count, as in a client's send → callback time); without
//! a cap every record is due at once, so it starts when its batch was written. With `--acks 0`
//! there is no acknowledgement, so no latency.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use clap::{Args, Subcommand};
use gregor_client::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use gregor_client::kafka_protocol::messages::{ProduceRequest, TopicName};
use gregor_client::kafka_protocol::protocol::StrBytes;
use gregor_client::records::{
    ProducerRecord, decode_records, encode_batch, parse_compression, restamp_batch,
};
use gregor_client::{Client, ClientError, Connection, RequestWriter, ResponseReader};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::DEFAULT_BOOTSTRAP;
use crate::produce::{now_ms, parse_acks};

/// Per-record framing overhead assumed when sizing batches (attributes, deltas, lengths).
const RECORD_OVERHEAD: usize = 8;
/// Highest latency the histogram tracks, in µs (larger values are clamped).
const MAX_LATENCY_US: u64 = 600_000_000;

#[derive(Debug, Args)]
pub(crate) struct PerfArgs {
    #[command(subcommand)]
    command: PerfCommand,
}

#[derive(Debug, Subcommand)]
enum PerfCommand {
    /// Produce generated records as fast as allowed and report throughput and latency.
    Produce(ProducePerfArgs),
    /// Consume records from the earliest offsets and report throughput.
    Consume(ConsumePerfArgs),
    /// Write a file sequentially through the page cache and report the bandwidth: the raw
    /// figure a broker's appends compare with.
    Disk(DiskPerfArgs),
}

#[derive(Debug, Args)]
struct ProducePerfArgs {
    /// The topic.
    #[arg(long)]
    topic: String,
    /// How many records to produce in total.
    #[arg(long)]
    num_records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Records per second across all producers, at most; -1 (or any value ≤ 0) for no cap.
    #[arg(long, default_value_t = -1.0, allow_negative_numbers = true)]
    throughput: f64,
    /// Acknowledgements: 0 (none), 1 (leader), all (every in-sync replica; also -1).
    #[arg(long, default_value = "all", allow_hyphen_values = true)]
    acks: String,
    /// Comma-separated broker addresses.
    #[arg(long, default_value = DEFAULT_BOOTSTRAP, env = "GREGOR_BOOTSTRAP", visible_alias = "bootstrap-server")]
    bootstrap: String,
    /// Concurrent producers, each with its own connection to every partition leader.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    producers: u32,
    /// Produce requests in flight per connection, at most (Kafka's
    /// `max.in.flight.requests.per.connection`).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_in_flight: u32,
    /// Partitions to spread batches over, round-robin; a missing topic is created with this many.
    /// Defaults to all of the topic's partitions.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    partitions: Option<i32>,
    /// Compression codec: none, gzip, snappy, lz4, zstd.
    #[arg(long, visible_alias = "compression-codec", default_value = "none")]
    compression: String,
    /// Batch size in bytes: a batch is sent once the next record would not fit (Kafka's
    /// `batch.size`; librdkafka's default is 1000000).
    #[arg(long, default_value_t = 16_384)]
    batch_size: usize,
    /// How long a batch waits for more records when throttled (ms; `linger.ms`).
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Request timeout in ms.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: i32,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ConsumePerfArgs {
    /// The topic.
    #[arg(long)]
    topic: String,
    /// Stop after this many records.
    #[arg(long)]
    num_records: u64,
    /// Comma-separated broker addresses.
    #[arg(long, default_value = DEFAULT_BOOTSTRAP, env = "GREGOR_BOOTSTRAP", visible_alias = "bootstrap-server")]
    bootstrap: String,
    /// Give up when no record arrived for this long (ms).
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Bytes per fetch request, at most.
    #[arg(long, default_value_t = 1024 * 1024)]
    fetch_max_bytes: i32,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct DiskPerfArgs {
    /// Directory to write the file in (it is deleted afterwards).
    #[arg(long)]
    dir: PathBuf,
    /// Bytes to write.
    #[arg(long, default_value_t = 1 << 30)]
    bytes: u64,
    /// Bytes per `write` call.
    #[arg(long, default_value_t = 1 << 20)]
    block_size: usize,
    /// fsync once at the end, inside the timed part (fio's `end_fsync=1`).
    #[arg(long)]
    fsync: bool,
    /// Write the bytes this many times, to as many files, one after another (an RF=3 cluster
    /// writes every byte three times); MB/s is over all of them.
    #[arg(long, default_value_t = 1)]
    copies: u32,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: PerfArgs) -> anyhow::Result<()> {
    match args.command {
        PerfCommand::Produce(a) => produce(a).await,
        PerfCommand::Consume(a) => consume(a).await,
        PerfCommand::Disk(a) => disk(a).await,
    }
}

/// Records per batch: as many as fit in `batch_size` bytes, at least one.
fn records_per_batch(batch_size: usize, record_size: usize) -> u64 {
    (batch_size / (record_size + RECORD_OVERHEAD)).max(1) as u64
}

/// The next batch of one producer: how many records it holds and when to send it, relative to
/// the producer's start. Record `i` is due at `i * interval` (no cap: every record is due now).
/// A batch closes when full, when the producer runs out, or `linger` after its first record.
fn plan_batch(
    next: u64,
    remaining: u64,
    cap: u64,
    interval: Option<Duration>,
    linger: Duration,
) -> (u64, Duration) {
    let Some(interval) = interval else {
        return (cap.min(remaining), Duration::ZERO);
    };
    let due = |i: u64| interval.mul_f64(i as f64);
    let first = due(next);
    // Records due within the linger window of the first one.
    let in_window = (linger.as_secs_f64() / interval.as_secs_f64()).floor() as u64 + 1;
    let n = cap.min(remaining).min(in_window);
    if n == cap || n == remaining {
        (n, due(next + n - 1))
    } else {
        (n, first + linger)
    }
}

/// A value of `size` pseudo-random letters (so compression has something to do, like Kafka's tool).
fn payload(size: usize) -> Bytes {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

fn progress(total: u64) -> ProgressBar {
    // ProgressBar::new draws to stderr and stays hidden when stderr is not a terminal.
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} records ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Makes sure the topic exists (creating it with `partitions` if not) and returns how many of its
/// partitions to use.
async fn prepare_topic(
    client: &mut Client,
    topic: &str,
    partitions: Option<i32>,
) -> anyhow::Result<i32> {
    let meta = client.metadata(Some(&[topic.to_string()]), false).await?;
    let exists = meta.topics.iter().any(|t| {
        t.name.as_ref().is_some_and(|n| n.0.as_str() == topic)
            && t.error_code == 0
            && !t.partitions.is_empty()
    });
    if !exists {
        match client
            .create_topic(topic, partitions.unwrap_or(-1), -1, &[])
            .await
        {
            Ok(()) => {}
            // Someone else created it meanwhile (code 36, TOPIC_ALREADY_EXISTS): use theirs.
            Err(gregor_client::ClientError::Kafka {
                code: gregor_client::kafka_protocol::ResponseError::TopicAlreadyExists,
                ..
            }) => {}
            Err(e) => return Err(e).with_context(|| format!("creating topic {topic}")),
        }
    }
    let count = client.partition_count(topic).await?;
    match partitions {
        Some(p) if p > count => {
            tracing::warn!("{topic} has {count} partitions, not {p}; using {count}");
            Ok(count)
        }
        Some(p) => Ok(p),
        None => Ok(count),
    }
}

struct ProducerConfig {
    topic: String,
    records: u64,
    first_partition: i32,
    /// Leader address of every partition in use, by partition index.
    leaders: Arc<Vec<String>>,
    cap: u64,
    interval: Option<Duration>,
    linger: Duration,
    acks: i16,
    max_in_flight: u32,
    compression: gregor_client::kafka_protocol::records::Compression,
    timeout_ms: i32,
    value: Bytes,
}

/// A produce request written and not yet acknowledged.
struct InFlight {
    correlation: i32,
    version: i16,
    records: u64,
    /// When the first record was due (throttled) or the request was written (no cap).
    first_due: Instant,
    /// Between the due times of consecutive records; zero without a cap.
    step: Duration,
    /// Frees a slot of the connection's in-flight window once the response is read.
    _slot: OwnedSemaphorePermit,
}

/// One pipelined connection to one leader.
struct Lane {
    writer: RequestWriter,
    version: i16,
    slots: Arc<Semaphore>,
    acks: Option<mpsc::UnboundedSender<InFlight>>,
    /// The partitions this broker leads, and which of them gets the next batch.
    partitions: Vec<i32>,
    next: usize,
}

/// Reads the acknowledgements of one connection in order and records each record's latency.
async fn read_acks(
    mut reader: ResponseReader,
    mut pending: mpsc::UnboundedReceiver<InFlight>,
    timeout: Duration,
) -> anyhow::Result<Histogram<u64>> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)?;
    while let Some(req) = pending.recv().await {
        let resp = tokio::time::timeout(
            timeout,
            reader.read_response::<ProduceRequest>(req.version, req.correlation),
        )
        .await
        .context("no produce response within the request timeout")??;
        let acked = Instant::now();
        for p in resp.responses.iter().flat_map(|t| &t.partition_responses) {
            if let Some(e) = ClientError::from_code(
                p.error_code,
                p.error_message.as_ref().map(|m| m.to_string()),
            ) {
                return Err(e).context(format!("produce to partition {}", p.index));
            }
        }
        let us = |since: Instant| {
            (acked.saturating_duration_since(since).as_micros() as u64).clamp(1, MAX_LATENCY_US)
        };
        if req.step.is_zero() {
            hist.record_n(us(req.first_due), req.records)?;
        } else {
            for k in 0..req.records {
                hist.record(us(req.first_due + req.step.mul_f64(k as f64)))?;
            }
        }
    }
    Ok(hist)
}

/// One produce request carrying one batch for each of `batches`' partitions.
fn produce_request(
    topic: &str,
    batches: Vec<(i32, Bytes)>,
    acks: i16,
    timeout_ms: i32,
) -> ProduceRequest {
    let partition_data = batches
        .into_iter()
        .map(|(partition, batch)| {
            PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))
        })
        .collect();
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(partition_data),
        ])
}

/// Batches of `n` records, encoded once per `n` and re-stamped with the current time for every
/// send, so the generator spends its CPU on the wire and not on re-encoding identical records.
struct Batches {
    value: Bytes,
    compression: gregor_client::kafka_protocol::records::Compression,
    encoded: HashMap<u64, Bytes>,
}

impl Batches {
    fn get(&mut self, n: u64) -> anyhow::Result<Bytes> {
        let template = match self.encoded.get(&n) {
            Some(b) => b.clone(),
            None => {
                let records: Vec<ProducerRecord> = (0..n)
                    .map(|_| ProducerRecord {
                        key: None,
                        value: Some(self.value.clone()),
                        headers: Vec::new(),
                        timestamp: 0,
                    })
                    .collect();
                let b = encode_batch(&records, self.compression)?;
                self.encoded.insert(n, b.clone());
                b
            }
        };
        let mut batch = BytesMut::from(&template[..]);
        restamp_batch(&mut batch, now_ms())?;
        Ok(batch.freeze())
    }
}

/// One producer task: a pipelined connection per leader, its share of the records.
async fn producer(cfg: ProducerConfig, bar: ProgressBar) -> anyhow::Result<(Histogram<u64>, u64)> {
    let timeout = Duration::from_millis(u64::try_from(cfg.timeout_ms.max(0)).unwrap_or(0))
        + Duration::from_secs(5);
    let mut lanes: Vec<Lane> = Vec::new();
    let mut lane_of_addr: HashMap<&str, usize> = HashMap::new();
    let mut lane_of_partition = Vec::with_capacity(cfg.leaders.len());
    let mut readers = JoinSet::new();
    for addr in cfg.leaders.iter() {
        let partition = lane_of_partition.len() as i32;
        if let Some(&l) = lane_of_addr.get(addr.as_str()) {
            lane_of_partition.push(l);
            lanes[l].partitions.push(partition);
            continue;
        }
        let (writer, reader) = Connection::connect(addr).await?.into_split();
        let version = writer.version_for::<ProduceRequest>()?;
        let acks = (cfg.acks != 0).then(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            readers.spawn(read_acks(reader, rx, timeout));
            tx
        });
        lane_of_addr.insert(addr, lanes.len());
        lane_of_partition.push(lanes.len());
        lanes.push(Lane {
            writer,
            version,
            slots: Arc::new(Semaphore::new(cfg.max_in_flight as usize)),
            acks,
            partitions: vec![partition],
            next: 0,
        });
    }
    let partitions = cfg.leaders.len() as i32;
    let mut batches = Batches {
        value: cfg.value.clone(),
        compression: cfg.compression,
        encoded: HashMap::new(),
    };
    let mut partition = cfg.first_partition;
    let mut sent = 0u64;
    let mut requests = 0u64;
    let start = Instant::now();
    let step = cfg.interval.unwrap_or(Duration::ZERO);
    let mut next_lane = lane_of_partition[cfg.first_partition as usize];
    let written = async {
        while sent < cfg.records {
            // The lane, the (partition, records) of the request's batches, when its first
            // record was due.
            let (lane, parts, first_due) = match cfg.interval {
                // Throttled: the records due within one linger form one batch.
                Some(interval) => {
                    let (n, send_at) = plan_batch(
                        sent,
                        cfg.records - sent,
                        cfg.cap,
                        Some(interval),
                        cfg.linger,
                    );
                    tokio::time::sleep_until((start + send_at).into()).await;
                    let lane = lane_of_partition[partition as usize];
                    let parts = vec![(partition, n)];
                    partition = (partition + 1) % partitions;
                    (lane, parts, Some(start + interval.mul_f64(sent as f64)))
                }
                // No cap: every partition's batch fills at once, so (like librdkafka) a request
                // carries a full batch for each partition its broker leads.
                None => {
                    let lane = next_lane;
                    next_lane = (next_lane + 1) % lanes.len();
                    let l = &mut lanes[lane];
                    let mut left = cfg.records - sent;
                    let mut parts = Vec::with_capacity(l.partitions.len());
                    for _ in 0..l.partitions.len() {
                        if left == 0 {
                            break;
                        }
                        let n = cfg.cap.min(left);
                        left -= n;
                        parts.push((l.partitions[l.next % l.partitions.len()], n));
                        l.next += 1;
                    }
                    (lane, parts, None)
                }
            };
            let lane = &mut lanes[lane];
            let slot = Arc::clone(&lane.slots).acquire_owned().await?;
            let n: u64 = parts.iter().map(|&(_, n)| n).sum();
            let mut data = Vec::with_capacity(parts.len());
            for &(p, records) in &parts {
                data.push((p, batches.get(records)?));
            }
            let req = produce_request(&cfg.topic, data, cfg.acks, cfg.timeout_ms);
            let first_due = first_due.unwrap_or_else(Instant::now);
            let correlation = lane.writer.write_request(&req, lane.version).await?;
            if let Some(acks) = &lane.acks {
                let pending = InFlight {
                    correlation,
                    version: lane.version,
                    records: n,
                    first_due,
                    step,
                    _slot: slot,
                };
                // A closed channel means the reader failed; its error is reported below.
                if acks.send(pending).is_err() {
                    break;
                }
            }
            sent += n;
            requests += 1;
            bar.inc(n);
        }
        anyhow::Ok(())
    }
    .await;
    // Closing the channels lets the readers finish the acknowledgements still in flight.
    drop(lanes);
    let mut hist = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)?;
    while let Some(done) = readers.join_next().await {
        hist.add(done??)?;
    }
    written?;
    if sent < cfg.records {
        bail!("stopped after {sent} of {} records", cfg.records);
    }
    Ok((hist, requests))
}

fn mb_per_sec(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / secs
}

async fn produce(args: ProducePerfArgs) -> anyhow::Result<()> {
    let acks = parse_acks(&args.acks)?;
    let compression = parse_compression(&args.compression)?;
    if args.num_records == 0 {
        bail!("--num-records must be positive");
    }
    let mut client = Client::connect(&args.bootstrap).await?;
    let partitions = prepare_topic(&mut client, &args.topic, args.partitions).await?;
    let mut leaders = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        // A fresh topic's leaders may not serve it yet; the pipelined producers do not retry,
        // so wait until every leader answers for its partition (ListOffsets retries).
        client.list_offset(&args.topic, p, -1).await?;
        leaders.push(client.leader_addr(&args.topic, p).await?);
    }
    let leaders = Arc::new(leaders);
    drop(client);

    let producers = u64::from(args.producers).min(args.num_records);
    let interval = (args.throughput > 0.0)
        .then(|| Duration::from_secs_f64(producers as f64 / args.throughput));
    let cap = records_per_batch(args.batch_size, args.record_size);
    let value = payload(args.record_size);
    let bar = progress(args.num_records);

    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for j in 0..producers {
        let records = args.num_records / producers + u64::from(j < args.num_records % producers);
        let cfg = ProducerConfig {
            topic: args.topic.clone(),
            records,
            first_partition: (j % partitions as u64) as i32,
            leaders: Arc::clone(&leaders),
            cap,
            interval,
            linger: Duration::from_millis(args.linger_ms),
            acks,
            max_in_flight: args.max_in_flight,
            compression,
            timeout_ms: args.timeout_ms,
            value: value.clone(),
        };
        tasks.spawn(producer(cfg, bar.clone()));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)?;
    let mut batches = 0u64;
    while let Some(done) = tasks.join_next().await {
        let (h, b) = done??;
        hist.add(h)?;
        batches += b;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    bar.finish_and_clear();

    let records = args.num_records;
    let rps = records as f64 / secs;
    let mbps = mb_per_sec(records * args.record_size as u64, secs);
    let ms = |us: u64| us as f64 / 1000.0;
    let latency = (acks != 0 && !hist.is_empty()).then(|| {
        (
            hist.mean() / 1000.0,
            ms(hist.value_at_quantile(0.5)),
            ms(hist.value_at_quantile(0.99)),
            ms(hist.value_at_quantile(0.999)),
            ms(hist.max()),
        )
    });
    if args.json {
        let l = |f: fn(&(f64, f64, f64, f64, f64)) -> f64| latency.as_ref().map(f);
        let out = json!({
            "records": records,
            "batches": batches,
            "elapsed_ms": secs * 1000.0,
            "records_per_sec": rps,
            "mb_per_sec": mbps,
            "latency_avg_ms": l(|t| t.0),
            "latency_p50_ms": l(|t| t.1),
            "latency_p99_ms": l(|t| t.2),
            "latency_p999_ms": l(|t| t.3),
            "latency_max_ms": l(|t| t.4),
            "acks": acks,
            "producers": producers,
            "max_in_flight": args.max_in_flight,
            "batch_size": args.batch_size,
            "linger_ms": args.linger_ms,
            "throughput_cap": (args.throughput > 0.0).then_some(args.throughput),
            "partitions": partitions,
            "record_size": args.record_size,
            "compression": args.compression,
        });
        println!("{out}");
    } else {
        let lat = match latency {
            Some((avg, p50, p99, p999, max)) => format!(
                "latency avg {avg:.2} ms, p50 {p50:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.2} ms, max {max:.2} ms"
            ),
            None => "latency n/a (acks=0)".to_string(),
        };
        println!(
            "{records} records sent in {batches} batches, {rps:.1} records/sec ({mbps:.2} MB/sec), {lat}"
        );
    }
    Ok(())
}

async fn consume(args: ConsumePerfArgs) -> anyhow::Result<()> {
    let mut client = Client::connect(&args.bootstrap).await?;
    let count = client.partition_count(&args.topic).await?;
    let mut positions = Vec::with_capacity(count as usize);
    for p in 0..count {
        positions.push((p, client.list_offset(&args.topic, p, -2).await?.0));
    }
    let bar = progress(args.num_records);
    let started = Instant::now();
    let mut last_record = Instant::now();
    let (mut records, mut bytes, mut fetches) = (0u64, 0u64, 0u64);
    // While some partition has data, fetches do not wait (a drained partition would otherwise
    // hold up the others for max_wait each round); once a whole round came back empty, wait.
    let idle_wait = if positions.len() > 1 { 100 } else { 500 };
    let mut max_wait = 0;
    'outer: loop {
        let round_start = records;
        for (partition, offset) in positions.iter_mut() {
            let fetched = client
                .fetch(
                    &args.topic,
                    *partition,
                    *offset,
                    max_wait,
                    args.fetch_max_bytes,
                )
                .await?;
            fetches += 1;
            let before = records;
            for r in decode_records(&fetched.records)? {
                if r.offset < *offset {
                    continue; // a batch is returned whole; skip what precedes the position
                }
                *offset = r.offset + 1;
                records += 1;
                bytes += r.value.as_ref().map_or(0, |v| v.len() as u64);
                if records >= args.num_records {
                    bar.inc(records - before);
                    break 'outer;
                }
            }
            if records > before {
                bar.inc(records - before);
                last_record = Instant::now();
            }
        }
        max_wait = if records > round_start { 0 } else { idle_wait };
        if last_record.elapsed() >= Duration::from_millis(args.timeout_ms) {
            tracing::warn!(
                "no record for {} ms; stopping after {records} of {}",
                args.timeout_ms,
                args.num_records
            );
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    bar.finish_and_clear();
    let rps = records as f64 / secs;
    let mbps = mb_per_sec(bytes, secs);
    if args.json {
        let out = json!({
            "records": records,
            "bytes": bytes,
            "fetches": fetches,
            "elapsed_ms": secs * 1000.0,
            "records_per_sec": rps,
            "mb_per_sec": mbps,
        });
        println!("{out}");
    } else {
        println!(
            "{records} records consumed ({bytes} bytes) in {fetches} fetches, {rps:.1} records/sec ({mbps:.2} MB/sec)"
        );
    }
    if records < args.num_records {
        bail!("timed out after {records} of {} records", args.num_records);
    }
    Ok(())
}

async fn disk(args: DiskPerfArgs) -> anyhow::Result<()> {
    if args.block_size == 0 || args.bytes == 0 || args.copies == 0 {
        bail!("--bytes, --block-size and --copies must be positive");
    }
    let paths: Vec<PathBuf> = (0..args.copies)
        .map(|i| {
            args.dir
                .join(format!("gregor-perf-disk-{}-{i}.dat", std::process::id()))
        })
        .collect();
    let block = payload(args.block_size);
    let (bytes, fsync) = (args.bytes, args.fsync);
    let files = paths.clone();
    let timed = tokio::task::spawn_blocking(move || -> anyhow::Result<Duration> {
        let started = Instant::now();
        for file in &files {
            let mut f = std::fs::File::create(file)
                .with_context(|| format!("create {}", file.display()))?;
            let mut left = bytes;
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                f.write_all(&block[..n])?;
                left -= n as u64;
            }
            if fsync {
                f.sync_all()?;
            }
        }
        Ok(started.elapsed())
    })
    .await;
    let removed: Vec<_> = paths.iter().map(|p| (p, std::fs::remove_file(p))).collect();
    let secs = timed
        .context("the writer thread panicked")??
        .as_secs_f64()
        .max(1e-9);
    for (path, r) in removed {
        r.with_context(|| format!("remove {}", path.display()))?;
    }
    let total = bytes * u64::from(args.copies);
    let mbps = mb_per_sec(total, secs);
    if args.json {
        let out = json!({
            "bytes": total,
            "copies": args.copies,
            "block_size": args.block_size,
            "fsync": fsync,
            "elapsed_ms": secs * 1000.0,
            "mb_per_sec": mbps,
        });
        println!("{out}");
    } else {
        let how = if fsync {
            "buffered + fsync"
        } else {
            "buffered"
        };
        println!(
            "{total} bytes written ({how}, {} file(s)) in {secs:.3} s, {mbps:.2} MB/sec",
            args.copies
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(subcommand)]
        c: PerfCommand,
    }

    #[test]
    fn batch_sizing() {
        assert_eq!(records_per_batch(16_384, 100), 151);
        assert_eq!(records_per_batch(100, 1_000_000), 1);
    }

    #[test]
    fn unthrottled_batches_are_full_and_immediate() {
        assert_eq!(
            plan_batch(0, 1000, 151, None, Duration::from_millis(5)),
            (151, Duration::ZERO)
        );
        assert_eq!(
            plan_batch(990, 10, 151, None, Duration::from_millis(5)),
            (10, Duration::ZERO)
        );
    }

    #[test]
    fn throttled_batches_follow_the_schedule() {
        // 1000 records/s: one per ms; linger 5 ms holds records 0..=5 and sends at 5 ms.
        let ms = Duration::from_millis;
        assert_eq!(plan_batch(0, 100, 151, Some(ms(1)), ms(5)), (6, ms(5)));
        assert_eq!(plan_batch(6, 94, 151, Some(ms(1)), ms(5)), (6, ms(11)));
        // A full batch goes as soon as its last record is due.
        assert_eq!(plan_batch(0, 100, 3, Some(ms(1)), ms(5)), (3, ms(2)));
        // The tail goes when its last record is due.
        assert_eq!(plan_batch(98, 2, 151, Some(ms(1)), ms(5)), (2, ms(99)));
    }

    #[test]
    fn flags_parse_like_kafkas_tools() {
        let t = T::try_parse_from([
            "t",
            "produce",
            "--topic",
            "x",
            "--num-records",
            "10",
            "--throughput",
            "-1",
            "--acks",
            "-1",
            "--partitions",
            "3",
        ])
        .map_err(|e| e.to_string());
        let Ok(T {
            c: PerfCommand::Produce(a),
        }) = t
        else {
            panic!("{t:?}");
        };
        assert_eq!(a.throughput, -1.0);
        assert_eq!(parse_acks(&a.acks).ok(), Some(-1));
        assert_eq!((a.batch_size, a.linger_ms, a.producers), (16_384, 5, 1));
        assert_eq!(a.max_in_flight, 5);
        assert_eq!(a.partitions, Some(3));
        assert!(
            T::try_parse_from([
                "t",
                "produce",
                "--topic",
                "x",
                "--num-records",
                "1",
                "--producers",
                "0"
            ])
            .is_err()
        );
    }
}
