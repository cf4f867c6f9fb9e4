//! Storage throughput against plain `std::fs` on the same bytes.
//!
//! Run: `cargo bench -p gregor-storage --bench storage -- --measurement-time 3 --warm-up-time 1`
//! (see docs/benchmarks.md).
//!
//! Benchmarks without fsync write and read in a temp dir on tmpfs (`/dev/shm`, or
//! `GREGOR_BENCH_DIR`): both sides then measure the same page-cache copy, without interference
//! from disk writeback and journal commits of whatever else runs on the machine, which made
//! disk-backed runs here vary by 2x between identical runs. fsync benchmarks use the default
//! temp dir, which is on the disk.
//!
//! Groups ending in `_cpu` time the same work by the benchmark thread's on-CPU time
//! (`/proc/thread-self/schedstat`) instead of the wall clock: on a machine shared with other
//! builders the wall clock mostly measures the scheduler, while on-CPU time (which includes the
//! kernel's copy into the page cache, done in the write syscall on this thread) measures the
//! work. fsync benchmarks only use the wall clock, since waiting for the disk is their point.
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

/// Which clock a benchmark reports.
#[derive(Clone, Copy)]
enum Clock {
    Wall,
    ThreadCpu,
}

/// On-CPU time of the calling thread (first field of `/proc/thread-self/schedstat`, ns).
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    Duration::from_nanos(s.split_whitespace().next().unwrap().parse().unwrap())
}

/// Measures `work` with `clock`.
fn timed(clock: Clock, work: impl FnOnce()) -> Duration {
    match clock {
        Clock::Wall => {
            let start = Instant::now();
            work();
            start.elapsed()
        }
        Clock::ThreadCpu => {
            let start = thread_cpu();
            work();
            thread_cpu() - start
        }
    }
}

/// Scratch directory: on the disk for fsync benchmarks, on tmpfs otherwise (see the module doc).
fn scratch(fsync: bool) -> tempfile::TempDir {
    if fsync {
        return tempfile::tempdir().unwrap();
    }
    let dir = std::env::var_os("GREGOR_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| Some(std::path::PathBuf::from("/dev/shm")).filter(|p| p.is_dir()))
        .unwrap_or_else(std::env::temp_dir);
    tempfile::tempdir_in(dir).unwrap()
}

fn client_batch(records: usize) -> Bytes {
    let value = vec![0x5Au8; RECORD];
    let recs: Vec<(i64, &[u8])> = (0..records)
        .map(|i| (NOW + i as i64, value.as_slice()))
        .collect();
    build_batch(0, &recs).unwrap()
}

fn config() -> LogConfig {
    LogConfig {
        max_message_bytes: 2 << 20,
        ..LogConfig::default()
    }
}

fn append(c: &mut Criterion) {
    append_group(c, "append", Clock::Wall, &[false, true]);
    append_group(c, "append_cpu", Clock::ThreadCpu, &[false]);
}

fn append_group(c: &mut Criterion, name: &str, clock: Clock, fsyncs: &[bool]) {
    let mut group = c.benchmark_group(name);
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(
        std::env::var("GREGOR_BENCH_SAMPLES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20),
    );
    for (label, records) in [("16KiB", 16usize), ("1MiB", 1024)] {
        let batch = client_batch(records);
        group.throughput(Throughput::Bytes(batch.len() as u64));
        for &fsync in fsyncs {
            let suffix = if fsync { "fsync" } else { "nofsync" };
            group.bench_with_input(
                BenchmarkId::new(format!("storage_{suffix}"), label),
                &batch,
                |b, batch| {
                    b.iter_custom(|iters| {
                        let tmp = scratch(fsync);
                        let mut log = PartitionLog::open(tmp.path(), config(), NOW).unwrap();
                        timed(clock, || {
                            for _ in 0..iters {
                                black_box(log.append_as_leader(batch.clone(), 0, NOW).unwrap());
                                if fsync {
                                    log.flush().unwrap();
                                }
                            }
                        })
                    });
                },
            );
            group.bench_with_input(
                BenchmarkId::new(format!("raw_{suffix}"), label),
                &batch,
                |b, batch| {
                    b.iter_custom(|iters| {
                        let tmp = scratch(fsync);
                        let file = File::create(tmp.path().join("raw.log")).unwrap();
                        let mut w = BufWriter::new(file);
                        timed(clock, || {
                            for _ in 0..iters {
                                w.write_all(batch).unwrap();
                                if fsync {
                                    w.flush().unwrap();
                                    w.get_ref().sync_data().unwrap();
                                }
                            }
                            w.flush().unwrap();
                        })
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
    let tmp = scratch(false);
    let mut log = PartitionLog::open(tmp.path(), config(), NOW).unwrap();
    let batch = client_batch(16);
    while (log.size_bytes() as usize) < TOTAL {
        log.append_as_leader(batch.clone(), 0, NOW).unwrap();
    }
    log.flush().unwrap();
    let leo = log.log_end_offset();
    let size = log.size_bytes();
    let segment = tmp.path().join(format!("{:020}.log", 0));

    for (name, clock) in [("read", Clock::Wall), ("read_cpu", Clock::ThreadCpu)] {
        let mut group = c.benchmark_group(name);
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(20);
        group.throughput(Throughput::Bytes(size));
        group.bench_function(BenchmarkId::new("storage_sequential", "1MiB"), |b| {
            b.iter_custom(|iters| {
                timed(clock, || {
                    for _ in 0..iters {
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
                    }
                })
            });
        });
        group.bench_function(BenchmarkId::new("raw_sequential", "1MiB"), |b| {
            b.iter_custom(|iters| {
                timed(clock, || {
                    for _ in 0..iters {
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
                    }
                })
            });
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = append, read
}
criterion_main!(benches);
