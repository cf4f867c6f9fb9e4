//! `gregor consume TOPIC`: print record values, one per line.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use gregor_client::Client;
use gregor_client::records::decode_records;

use crate::DEFAULT_BOOTSTRAP;

#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    /// The topic.
    topic: String,
    /// Comma-separated broker addresses.
    #[arg(long, default_value = DEFAULT_BOOTSTRAP, env = "GREGOR_BOOTSTRAP", visible_alias = "bootstrap-server")]
    bootstrap: String,
    /// Start at the earliest offset instead of the end.
    #[arg(long)]
    from_beginning: bool,
    /// Only this partition.
    #[arg(long)]
    partition: Option<i32>,
    /// Start at this offset (needs --partition).
    #[arg(long, requires = "partition")]
    offset: Option<i64>,
    /// Exit after this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Exit when no record arrived for this long (ms); runs until Ctrl-C otherwise.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Print `key<TAB>value` instead of the value only.
    #[arg(long)]
    print_key: bool,
    /// Print `partition:offset` before each record.
    #[arg(long)]
    print_offset: bool,
}

pub(crate) async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let mut client = Client::connect(&args.bootstrap).await?;
    let count = client.partition_count(&args.topic).await?;
    let partitions: Vec<i32> = match args.partition {
        Some(p) if p < 0 || p >= count => {
            bail!("partition {p} does not exist ({} has {count})", args.topic)
        }
        Some(p) => vec![p],
        None => (0..count).collect(),
    };
    let mut positions = Vec::with_capacity(partitions.len());
    for &p in &partitions {
        let start = match args.offset {
            Some(o) => o,
            None => {
                let ts = if args.from_beginning { -2 } else { -1 };
                client.list_offset(&args.topic, p, ts).await?.0
            }
        };
        positions.push((p, start));
    }

    let stdout = std::io::stdout();
    let mut printed = 0u64;
    let mut last_record = Instant::now();
    // One partition at a time keeps the code simple; the long poll is short when there are
    // several partitions so none of them starves.
    let max_wait = if positions.len() > 1 { 100 } else { 500 };
    loop {
        for (partition, offset) in positions.iter_mut() {
            let fetched = client
                .fetch(&args.topic, *partition, *offset, max_wait, 1024 * 1024)
                .await?;
            let mut out = stdout.lock();
            for r in decode_records(&fetched.records)? {
                if r.offset < *offset {
                    continue; // a batch is returned whole; skip what precedes the position
                }
                *offset = r.offset + 1;
                if args.print_offset {
                    write!(out, "{partition}:{}\t", r.offset)?;
                }
                if args.print_key {
                    let k = r
                        .key
                        .as_deref()
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default();
                    write!(out, "{k}\t")?;
                }
                let v = r
                    .value
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                writeln!(out, "{v}")?;
                printed += 1;
                last_record = Instant::now();
                if args.max_messages.is_some_and(|m| printed >= m) {
                    out.flush()?;
                    return Ok(());
                }
            }
            out.flush()?;
        }
        if let Some(t) = args.timeout_ms
            && last_record.elapsed() >= Duration::from_millis(t)
        {
            return Ok(());
        }
    }
}
