//! Bounded load test (a benchmark, not a timed test): N concurrent connections producing and
//! fetching for S seconds against one broker, with no errors and flat memory.
//!
//! ```text
//! cargo bench -p gregor-broker --bench load -- --seconds 60 --connections 100
//! ```
//!
//! The broker runs in a **child process** (this same binary re-executed with `--serve-broker`),
//! so the RSS sampled from `/proc/<pid>/status` (`VmRSS`, once a second) is the broker's alone,
//! not the load generator's. Each of the N tokio tasks owns one connection (`gregor-client`'s raw
//! [`Connection`], no retries, so every failure is counted) and loops: produce a 10-record batch
//! (alternating acks=1 and acks=all) to its topic-partition, then fetch from the offset it just
//! got back and check the batch is there. Topics are small-segment, retention-bounded
//! (`segment.bytes` 1 MiB, `retention.bytes` 8 MiB per partition, checked every second) so disk and
//! index state reach a steady state too.
//!
//! Exit status is non-zero on any error (request error, error code, short fetch) or when the
//! broker's RSS at the end exceeds the RSS after warm-up by more than `--max-rss-growth` percent
//! (default 20). Options: `--seconds` (60), `--connections` (100), `--warmup` (10 s, capped at a
//! third of the run), `--max-rss-growth` (20).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use gregor_client::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use gregor_client::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use gregor_client::kafka_protocol::messages::{BrokerId, FetchRequest, ProduceRequest, TopicName};
use gregor_client::kafka_protocol::protocol::StrBytes;
use gregor_client::kafka_protocol::records::Compression;
use gregor_client::records::{ProducerRecord, encode_batch};
use gregor_client::{Client, Connection};

const TOPICS: usize = 4;
const PARTITIONS: i32 = 8;
const RECORDS_PER_BATCH: usize = 10;
const VALUE_BYTES: usize = 100;

struct Args {
    seconds: u64,
    connections: usize,
    warmup: u64,
    max_rss_growth_pct: f64,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        seconds: 60,
        connections: 100,
        warmup: 10,
        max_rss_growth_pct: 20.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--seconds" => a.seconds = value("--seconds")?.parse()?,
            "--connections" => a.connections = value("--connections")?.parse()?,
            "--warmup" => a.warmup = value("--warmup")?.parse()?,
            "--max-rss-growth" => a.max_rss_growth_pct = value("--max-rss-growth")?.parse()?,
            // `cargo bench` passes `--bench`; libtest-style filters are ignored too.
            _ => {}
        }
    }
    if a.seconds == 0 || a.connections == 0 {
        bail!("--seconds and --connections must be at least 1");
    }
    a.warmup = a.warmup.min(a.seconds / 3).max(1);
    Ok(a)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve-broker") {
        let dir = args
            .get(i + 1)
            .context("--serve-broker needs a directory")?;
        return serve_broker(dir);
    }
    let args = parse_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let mut broker = BrokerChild::spawn(dir.path())?;
    let outcome = runtime.block_on(run_load(&args, &broker));
    broker.stop();
    outcome
}

/// Child mode: a broker on 127.0.0.1:0 in `dir`; prints `LISTENING <addr>` and serves until its
/// stdin closes (the parent exiting or dropping the pipe), then shuts down cleanly.
fn serve_broker(dir: &str) -> Result<()> {
    use gregor_broker::{Broker, BrokerConfig};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut config = BrokerConfig {
            log_dir: dir.into(),
            log_retention_check_interval_ms: 1000,
            ..BrokerConfig::default()
        };
        config.listener = gregor_broker::config::Endpoint {
            host: "127.0.0.1".into(),
            port: 0,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let bound = listener.local_addr()?;
        let broker = Arc::new(Broker::open(config, bound)?);
        let shutdown = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(gregor_broker::run(
            listener,
            Arc::clone(&broker),
            shutdown.clone(),
        ));
        println!("LISTENING {bound}");
        // Wait for the parent to close our stdin.
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await?;
        shutdown.cancel();
        server.await??;
        anyhow::Ok(())
    })
}

struct BrokerChild {
    child: Option<Child>,
    pid: u32,
    addr: String,
}

impl BrokerChild {
    fn spawn(dir: &std::path::Path) -> Result<BrokerChild> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--serve-broker")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().context("child stdout")?;
        // Read the address line on a thread so the wait can have a deadline.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the broker child did not report its address within 30 s");
            }
        };
        let Some(addr) = line.trim().strip_prefix("LISTENING ") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("unexpected first line from the broker child: {line:?}");
        };
        Ok(BrokerChild {
            addr: addr.to_string(),
            pid: child.id(),
            child: Some(child),
        })
    }

    fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in /proc/<pid>/status")
    }

    /// Closes the child's stdin (clean shutdown) and waits for its exit, at most 20 s; then
    /// kills it.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        drop(child.stdin.take());
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send(status);
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(status)) if status.success() => {}
            Ok(status) => eprintln!("broker child exited badly: {status:?}"),
            Err(_) => {
                eprintln!("broker child did not exit within 20 s; killing it");
                // The waiter thread still owns the Child; signal it by pid.
                let _ = Command::new("kill")
                    .arg("-9")
                    .arg(self.pid.to_string())
                    .status();
            }
        }
        let _ = waiter.join();
    }
}

impl Drop for BrokerChild {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Default)]
struct Counters {
    produces: AtomicU64,
    fetches: AtomicU64,
    errors: AtomicU64,
}

fn topic_name(t: usize) -> String {
    format!("load-{t}")
}

fn produce_request(topic: &str, partition: i32, acks: i16, batch: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(batch)),
                ]),
        ])
}

fn fetch_request(topic: &str, partition: i32, offset: i64) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1024 * 1024)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(64 * 1024),
                ]),
        ])
}

/// One connection's loop: produce, then fetch what was just produced, until `until`.
async fn worker(id: usize, addr: String, until: Instant, counters: Arc<Counters>) {
    let fail = |what: String| {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        eprintln!("connection {id}: {what}");
    };
    let mut conn = match Connection::connect(&addr).await {
        Ok(c) => c,
        Err(e) => return fail(format!("connect: {e}")),
    };
    let topic = topic_name(id % TOPICS);
    let partition = ((id / TOPICS) as i32) % PARTITIONS;
    let value = Bytes::from(vec![b'x'; VALUE_BYTES]);
    let mut round: u64 = 0;
    while Instant::now() < until {
        round += 1;
        let acks = if round.is_multiple_of(2) { 1 } else { -1 };
        let records: Vec<ProducerRecord> = (0..RECORDS_PER_BATCH)
            .map(|i| ProducerRecord {
                key: Some(Bytes::from(format!("{id}-{round}-{i}"))),
                value: Some(value.clone()),
                headers: vec![],
                timestamp: now_ms(),
            })
            .collect();
        let batch = encode_batch(&records, Compression::None).expect("encode");
        let base_offset = match conn
            .send(&produce_request(&topic, partition, acks, batch))
            .await
        {
            Ok(resp) => {
                counters.produces.fetch_add(1, Ordering::Relaxed);
                let p = &resp.responses[0].partition_responses[0];
                if p.error_code != 0 {
                    fail(format!("produce error code {}", p.error_code));
                    continue;
                }
                p.base_offset
            }
            Err(e) => return fail(format!("produce: {e}")),
        };
        match conn
            .send(&fetch_request(&topic, partition, base_offset))
            .await
        {
            Ok(resp) => {
                counters.fetches.fetch_add(1, Ordering::Relaxed);
                let p = &resp.responses[0].partitions[0];
                let got = p.records.as_ref().map_or(0, |r| r.len());
                if resp.error_code != 0 || p.error_code != 0 || got == 0 {
                    fail(format!(
                        "fetch at {base_offset}: error {}/{}, {got} bytes",
                        resp.error_code, p.error_code
                    ));
                }
            }
            Err(e) => return fail(format!("fetch: {e}")),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn run_load(args: &Args, broker: &BrokerChild) -> Result<()> {
    let mut admin = Client::connect(&broker.addr).await?;
    for t in 0..TOPICS {
        admin
            .create_topic(
                &topic_name(t),
                PARTITIONS,
                1,
                &[
                    ("segment.bytes".into(), (1024 * 1024).to_string()),
                    ("retention.bytes".into(), (8 * 1024 * 1024).to_string()),
                ],
            )
            .await?;
    }
    let rss_start = broker.rss_kib()?;
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let tasks: Vec<_> = (0..args.connections)
        .map(|id| {
            tokio::spawn(worker(
                id,
                broker.addr.clone(),
                until,
                Arc::clone(&counters),
            ))
        })
        .collect();

    // Sample the broker's RSS once a second until the run ends.
    let mut samples: Vec<(u64, u64)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    for s in 1..=args.seconds {
        tick.tick().await;
        let rss = broker.rss_kib()?;
        samples.push((s, rss));
        println!(
            "t={s:>3}s rss={:>7.1} MiB requests={} errors={}",
            rss as f64 / 1024.0,
            counters.produces.load(Ordering::Relaxed) + counters.fetches.load(Ordering::Relaxed),
            counters.errors.load(Ordering::Relaxed)
        );
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .context("a connection did not finish within 30 s of the end")??;
    }
    let elapsed = started.elapsed().as_secs_f64();

    let produces = counters.produces.load(Ordering::Relaxed);
    let fetches = counters.fetches.load(Ordering::Relaxed);
    let errors = counters.errors.load(Ordering::Relaxed);
    let rss_warm = samples
        .iter()
        .find(|(s, _)| *s == args.warmup)
        .map_or(rss_start, |(_, r)| *r);
    let rss_end = samples.last().map_or(rss_start, |(_, r)| *r);
    let rss_max = samples.iter().map(|(_, r)| *r).max().unwrap_or(rss_start);
    let growth = (rss_end as f64 / rss_warm as f64 - 1.0) * 100.0;
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "--- broker load: {} connections, {elapsed:.1} s ---",
        args.connections
    );
    println!(
        "requests: {} ({produces} produce, {fetches} fetch) = {:.0} req/s; records produced {}",
        produces + fetches,
        (produces + fetches) as f64 / elapsed,
        produces * RECORDS_PER_BATCH as u64
    );
    println!("errors: {errors}");
    println!(
        "broker RSS: start {:.1} MiB, after warm-up ({}s) {:.1} MiB, end {:.1} MiB, max {:.1} MiB; growth after warm-up {growth:+.1}% (bound +{}%)",
        mib(rss_start),
        args.warmup,
        mib(rss_warm),
        mib(rss_end),
        mib(rss_max),
        args.max_rss_growth_pct
    );
    if errors > 0 {
        bail!("{errors} errors under load");
    }
    if growth > args.max_rss_growth_pct {
        bail!(
            "broker RSS grew {growth:.1}% after warm-up (bound {}%)",
            args.max_rss_growth_pct
        );
    }
    println!("ok");
    Ok(())
}
