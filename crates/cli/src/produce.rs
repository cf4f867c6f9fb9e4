//! `gregor produce TOPIC`: one record per stdin line.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use bytes::Bytes;
use clap::Args;
use gregor_client::partitioner::partition_for_key;
use gregor_client::records::{ProducerRecord, encode_batch, parse_compression};
use gregor_client::{Client, IdempotentProducer};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::DEFAULT_BOOTSTRAP;

/// Records per batch, at most (librdkafka's batch.num.messages is 10000; lines are small).
const MAX_BATCH_RECORDS: usize = 1000;
/// Bytes per batch, at most (below the default max.message.bytes of 1048588).
const MAX_BATCH_BYTES: usize = 900 * 1024;
/// How long to wait for more lines before sending what we have (librdkafka's linger.ms is 5).
const LINGER: Duration = Duration::from_millis(5);

#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    /// The topic.
    topic: String,
    /// Comma-separated broker addresses.
    #[arg(long, default_value = DEFAULT_BOOTSTRAP, env = "GREGOR_BOOTSTRAP", visible_alias = "bootstrap-server")]
    bootstrap: String,
    /// Acknowledgements: 0 (none), 1 (leader), all (every in-sync replica; also -1).
    #[arg(long, default_value = "all")]
    acks: String,
    /// Key for every record; keyed records go to murmur2(key) % partitions like Kafka's producer.
    #[arg(long)]
    key: Option<String>,
    /// Send everything to this partition instead.
    #[arg(long)]
    partition: Option<i32>,
    /// Compression codec: none, gzip, snappy, lz4, zstd.
    #[arg(
        long = "compression",
        visible_alias = "compression-codec",
        default_value = "none"
    )]
    compression: String,
    /// Request timeout in ms.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: i32,
    /// Idempotent producer (Kafka's `enable.idempotence=true`; needs acks all): retries re-send
    /// the same batch, which the broker never appends twice.
    #[arg(long)]
    idempotent: bool,
}

pub(crate) fn parse_acks(s: &str) -> anyhow::Result<i16> {
    Ok(match s {
        "0" => 0,
        "1" => 1,
        "all" | "-1" => -1,
        other => bail!("--acks must be 0, 1 or all, not '{other}'"),
    })
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let acks = parse_acks(&args.acks)?;
    let compression = parse_compression(&args.compression)?;
    if args.idempotent {
        gregor_client::idempotent::require_acks_all(acks)?;
    }
    let mut client = Client::connect(&args.bootstrap).await?;
    let partitions = client.partition_count(&args.topic).await?;
    if let Some(p) = args.partition
        && (p < 0 || p >= partitions)
    {
        bail!(
            "partition {p} does not exist ({} has {partitions})",
            args.topic
        );
    }
    let key = args.key.map(Bytes::from);
    let fixed = args
        .partition
        .or_else(|| key.as_ref().map(|k| partition_for_key(k, partitions)));
    // Unkeyed records stick to one partition per batch and move on (Kafka's sticky partitioner).
    let mut sticky = 0i32;
    let mut client = if args.idempotent {
        Sink::Idempotent(
            IdempotentProducer::new(client, acks)?
                .with_compression(compression)
                .with_request_timeout_ms(args.timeout_ms),
        )
    } else {
        Sink::Plain(client)
    };

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut pending: BTreeMap<i32, (Vec<ProducerRecord>, usize)> = BTreeMap::new();
    let mut eof = false;
    let mut sent = 0u64;
    while !eof {
        // Collect what is ready, waiting at most LINGER for each further line.
        let first = lines.next_line().await?;
        let mut next = first;
        loop {
            let Some(line) = next else {
                eof = true;
                break;
            };
            let partition = fixed.unwrap_or(sticky);
            let entry = pending.entry(partition).or_default();
            entry.1 += line.len() + 32;
            entry.0.push(ProducerRecord {
                key: key.clone(),
                value: Some(Bytes::from(line)),
                headers: Vec::new(),
                timestamp: now_ms(),
            });
            if entry.0.len() >= MAX_BATCH_RECORDS || entry.1 >= MAX_BATCH_BYTES {
                break;
            }
            next = match tokio::time::timeout(LINGER, lines.next_line()).await {
                Ok(line) => line?,
                Err(_) => break,
            };
        }
        for (partition, (records, _)) in std::mem::take(&mut pending) {
            if records.is_empty() {
                continue;
            }
            match &mut client {
                Sink::Plain(c) => {
                    let batch = encode_batch(&records, compression)?;
                    let _ = c
                        .produce(&args.topic, partition, batch, acks, args.timeout_ms)
                        .await?;
                }
                Sink::Idempotent(p) => {
                    let _ = p.send(&args.topic, partition, &records).await?;
                }
            }
            sent += records.len() as u64;
        }
        if fixed.is_none() {
            sticky = (sticky + 1) % partitions;
        }
    }
    tracing::info!(records = sent, "produced");
    Ok(())
}

/// Where batches go: the plain client or an idempotent producer over it.
enum Sink {
    Plain(Client),
    Idempotent(IdempotentProducer),
}
