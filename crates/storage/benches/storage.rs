//! Storage throughput against plain `std::fs` on the same bytes.
//!
//! Run: `cargo bench -p gregor-storage --bench storage -- --measurement-time 3 --warm-up-time 1`
//! (see docs/benchmarks.md). Files live in a temp dir on the default temp filesystem.
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark harness: a failure aborts the run

use std::fs::File;
use std::hint::black_box;
use std::io::{BufWriter, Read, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use gregor_storage::batch::build_batch;
use gregor_storage::{LogConfig, PartitionLog};

const NOW: i64 = 1_700_000_000_000;
const RECORD: usize = 1024;

fn client_batch(records: usize) -> Bytes {
    let value = vec![0x5Au8; RECORD];
    let recs: Vec<(i64, &[u8])> = (0..records)
        .map(|i| (NOW + i as i64, value.as_slice()))
        .collect();
    build_batch(0, &recs)
}

fn config() -> LogConfig {
    LogConfig {
        max_message_bytes: 2 << 20,
        ..LogConfig::default()
    }
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    for (label, records) in [("16KiB", 16usize), ("1MiB", 1024)] {
        let batch = client_batch(records);
        group.throughput(Throughput::Bytes(batch.len() as u64));
        for fsync in [false, true] {
            let suffix = if fsync { "fsync" } else { "nofsync" };
            group.bench_with_input(
                BenchmarkId::new(format!("storage_{suffix}"), label),
                &batch,
                |b, batch| {
                    b.iter_custom(|iters| {
                        let tmp = tempfile::tempdir().unwrap();
                        let mut log = PartitionLog::open(tmp.path(), config(), NOW).unwrap();
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(log.append_as_leader(batch.clone(), 0, NOW).unwrap());
                            if fsync {
                                log.flush().unwrap();
                            }
                        }
                        let elapsed = start.elapsed();
                        drop(log);
                        elapsed
                    });
                },
            );
            group.bench_with_input(
                BenchmarkId::new(format!("raw_{suffix}"), label),
                &batch,
                |b, batch| {
                    b.iter_custom(|iters| {
                        let tmp = tempfile::tempdir().unwrap();
                        let file = File::create(tmp.path().join("raw.log")).unwrap();
                        let mut w = BufWriter::new(file);
                        let start = Instant::now();
                        for _ in 0..iters {
                            w.write_all(batch).unwrap();
                            if fsync {
                                w.flush().unwrap();
                                w.get_ref().sync_data().unwrap();
                            }
                        }
                        w.flush().unwrap();
                        start.elapsed()
                    });
                },
            );
        }
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    const TOTAL: usize = 64 << 20;
    const CHUNK: usize = 1 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(tmp.path(), config(), NOW).unwrap();
    let batch = client_batch(16);
    while (log.size_bytes() as usize) < TOTAL {
        log.append_as_leader(batch.clone(), 0, NOW).unwrap();
    }
    log.flush().unwrap();
    let leo = log.log_end_offset();
    let size = log.size_bytes();
    let segment = tmp.path().join(format!("{:020}.log", 0));

    let mut group = c.benchmark_group("read");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    group.throughput(Throughput::Bytes(size));
    group.bench_function("storage_sequential/1MiB", |b| {
        b.iter(|| {
            let mut offset = 0;
            let mut bytes = 0;
            while offset < leo {
                let r = log.read(offset, CHUNK, i64::MAX, true).unwrap();
                let last = gregor_storage::BatchIter::new(r.records.clone())
                    .last()
                    .unwrap()
                    .unwrap()
                    .0;
                offset = last.next_offset();
                bytes += r.records.len();
                black_box(r.records);
            }
            assert_eq!(bytes as u64, size);
        });
    });
    group.bench_function("raw_sequential/1MiB", |b| {
        b.iter(|| {
            let mut f = File::open(&segment).unwrap();
            let mut buf = vec![0u8; CHUNK];
            let mut bytes = 0;
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                bytes += n;
                black_box(&buf[..n]);
            }
            assert_eq!(bytes as u64, size);
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = append, read
}
criterion_main!(benches);
