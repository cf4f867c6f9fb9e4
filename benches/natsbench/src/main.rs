//! JetStream publish bench: the replicated peer of `benches/suite.py`.
//!
//! Creates a file-storage stream with N replicas, warms up with 1,000 acknowledged publishes,
//! then publishes `msgs` messages of `size` bytes either synchronously (await every PubAck) or
//! asynchronously with at most `window` PubAcks outstanding, and prints one JSON object.
//! The method is the one in shared/reference/perf.md §C.2, so the figures compare with it.
//!
//! usage: natsbench <url> <stream> <replicas> <msgs> <size> <sync|async> [window]

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Result<T, Error> {
    args.get(i)
        .ok_or_else(|| format!("missing argument {i} ({what})"))?
        .parse()
        .map_err(|_| format!("argument {i} ({what}) is not valid").into())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let url: String = arg(&args, 1, "url")?;
    let name: String = arg(&args, 2, "stream")?;
    let replicas: usize = arg(&args, 3, "replicas")?;
    let msgs: usize = arg(&args, 4, "msgs")?;
    let size: usize = arg(&args, 5, "size")?;
    let mode: String = arg(&args, 6, "mode")?;
    let window: usize = if args.len() > 7 {
        arg(&args, 7, "window")?
    } else {
        256
    };
    if mode != "sync" && mode != "async" {
        return Err(format!("mode must be sync or async, not {mode}").into());
    }

    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(url.as_str())
        .await?;
    let js = jetstream::new(client);
    let subject = format!("{}.x", name.to_lowercase());
    // A stream left by an earlier, interrupted run would skew the byte counts.
    let _ = js.delete_stream(&name).await;
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("{}.>", name.to_lowercase())],
        num_replicas: replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let payload = Bytes::from(vec![b'x'; size]);
    for _ in 0..1000 {
        js.publish(subject.clone(), payload.clone()).await?.await?;
    }

    let started = Instant::now();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    if mode == "sync" {
        for _ in 0..msgs {
            let t = Instant::now();
            js.publish(subject.clone(), payload.clone()).await?.await?;
            hist.saturating_record(t.elapsed().as_micros() as u64);
        }
    } else {
        let mut inflight = FuturesUnordered::new();
        let mut sent = 0usize;
        while sent < msgs || !inflight.is_empty() {
            while sent < msgs && inflight.len() < window {
                let ack = js.publish(subject.clone(), payload.clone()).await?;
                inflight.push(ack.into_future());
                sent += 1;
            }
            if let Some(acked) = inflight.next().await {
                acked?;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let info = js.get_stream(&name).await?.info().await?.clone();
    // The warm-up messages are in the stream too.
    if info.state.messages < msgs as u64 {
        return Err(format!(
            "stream holds {} messages, expected {msgs}",
            info.state.messages
        )
        .into());
    }
    let _ = js.delete_stream(&name).await;

    let rate = msgs as f64 / secs;
    let mut out = serde_json::json!({
        "mode": mode,
        "replicas": replicas,
        "records": msgs,
        "record_size": size,
        "window": if mode == "sync" { 1 } else { window },
        "elapsed_ms": secs * 1000.0,
        "records_per_sec": rate,
        "mb_per_sec": rate * size as f64 / (1024.0 * 1024.0),
        "stream_messages": info.state.messages,
    });
    if !hist.is_empty() {
        let ms = |us: u64| us as f64 / 1000.0;
        out["latency_avg_ms"] = (hist.mean() / 1000.0).into();
        out["latency_p50_ms"] = ms(hist.value_at_quantile(0.5)).into();
        out["latency_p99_ms"] = ms(hist.value_at_quantile(0.99)).into();
        out["latency_p999_ms"] = ms(hist.value_at_quantile(0.999)).into();
        out["latency_max_ms"] = ms(hist.max()).into();
    }
    println!("{out}");
    Ok(())
}
