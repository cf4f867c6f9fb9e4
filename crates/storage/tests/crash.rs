#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test
//! Crash test: a child process (this test binary re-executed with `crash_child_writer --exact`)
//! appends deterministic batches and reports each completed flush; the parent SIGKILLs it while it
//! is still writing after a seed-chosen number of flushes, optionally damages the unflushed tail
//! (torn write, garbage, bit flip), reopens the log and checks that every flushed batch is present
//! and intact, that nothing damaged is served and that the indexes agree with the data.
//!
//! `GREGOR_CRASH_SEED=<n>` pins the base seed and `GREGOR_CRASH_ITERATIONS=<n>` changes the count;
//! a failure message names the seed to reproduce it with `GREGOR_CRASH_ITERATIONS=1`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gregor_storage::batch::{BatchIter, build_batch};
use gregor_storage::{EpochEntry, LogConfig, PartitionLog};

const CHILD_ENV: &str = "GREGOR_CRASH_CHILD";
const CHILD_TEST: &str = "crash_child_writer";
const NOW: i64 = 1_700_000_000_000;
const DEFAULT_SEED: u64 = 0x5EED_0001;
const DEFAULT_ITERATIONS: u64 = 200;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn config(seed: u64) -> LogConfig {
    LogConfig {
        segment_bytes: 4096 << (seed % 4),
        index_interval_bytes: 128 << (seed % 3),
        ..LogConfig::default()
    }
}

/// The batch the writer appends at `offset`: record `j` has timestamp `NOW + offset + j`.
fn batch_at(seed: u64, offset: i64) -> Bytes {
    let h = splitmix(seed ^ (offset as u64).wrapping_mul(0x1000_0000_01B3));
    let count = 1 + (h % 6) as usize;
    let values: Vec<Vec<u8>> = (0..count)
        .map(|j| {
            let len = 1 + (splitmix(h ^ j as u64) % 300) as usize;
            (0..len).map(|k| (h as usize + j * 31 + k) as u8).collect()
        })
        .collect();
    let recs: Vec<(i64, &[u8])> = values
        .iter()
        .enumerate()
        .map(|(j, v)| (NOW + offset + j as i64, v.as_slice()))
        .collect();
    build_batch(0, &recs).unwrap()
}

fn epoch_at(offset: i64) -> i32 {
    (offset / 200) as i32
}

/// The child writer. A no-op unless the parent set `GREGOR_CRASH_CHILD=<seed>:<dir>`.
#[test]
fn crash_child_writer() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (seed, dir) = spec.split_once(':').unwrap();
    let seed: u64 = seed.parse().unwrap();
    let mut log = PartitionLog::open(dir, config(seed), NOW).unwrap();
    let flush_every = 1 + splitmix(seed ^ 0xF1) % 4;
    let checkpoint_every = 8 + splitmix(seed ^ 0xC4) % 8;
    // Bounded so a child whose parent vanished cannot run forever.
    for n in 1..=200_000u64 {
        let offset = log.log_end_offset();
        log.append_as_leader(batch_at(seed, offset), epoch_at(offset), NOW + offset)
            .unwrap();
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            if writeln!(out, "appended {}", log.log_end_offset())
                .and_then(|()| out.flush())
                .is_err()
            {
                return;
            }
        }
        if n % checkpoint_every == 0 {
            log.set_high_watermark(offset);
            log.write_checkpoint().unwrap();
        }
        if n % flush_every == 0 {
            log.flush().unwrap();
            let active = *log.segments().last().unwrap();
            // A write error means the parent is gone: stop.
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            if writeln!(
                out,
                "flushed {} {} {}",
                log.log_end_offset(),
                active.base_offset,
                active.size
            )
            .and_then(|()| out.flush())
            .is_err()
            {
                return;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Flushed {
    leo: i64,
    active_base: i64,
    active_size: u64,
}

#[derive(Debug, Default)]
struct Stats {
    kills: u64,
    torn: u64,
    garbage: u64,
    flips: u64,
    bytes_cut: u64,
    batches_checked: u64,
}

/// Runs the child until it has reported `flushes` flushes and then `appends` more appends, then
/// SIGKILLs it (it is still writing: it never stops on its own before 200 000 batches).
fn run_child_and_kill(
    seed: u64,
    dir: &Path,
    flushes: usize,
    appends: usize,
    deadline: Instant,
) -> Flushed {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{seed}:{}", dir.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut last = None;
    let mut seen = 0;
    let mut appended_after = 0;
    let outcome = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix("flushed ") {
                    // Every flush line counts, also one between the target and the kill.
                    let f: Vec<i64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
                    last = Some(Flushed {
                        leo: f[0],
                        active_base: f[1],
                        active_size: f[2] as u64,
                    });
                    seen += 1;
                } else if line.starts_with("appended ") && seen >= flushes {
                    appended_after += 1;
                }
                if seen >= flushes && appended_after >= appends {
                    break Ok(());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => break Err("deadline passed"),
            Err(mpsc::RecvTimeoutError::Disconnected) => break Err("child exited early"),
        }
    };
    // SIGKILL by PID, also on the error paths, so no child outlives the test.
    let _ = child.kill();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    if let Err(why) = outcome {
        panic!("seed {seed}: {why} after {seen} flushes (child status {status})");
    }
    last.unwrap()
}

fn active_segment(dir: &Path) -> (i64, PathBuf) {
    let mut segs: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let name = p
                .file_name()?
                .to_str()?
                .strip_suffix(".log")?
                .parse()
                .ok()?;
            Some((name, p))
        })
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

/// Damages the active segment past the last flushed position, as a power loss or a torn write
/// could. Returns a description.
fn damage(seed: u64, dir: &Path, flushed: Flushed, stats: &mut Stats) -> String {
    let (base, path) = active_segment(dir);
    let durable = if base == flushed.active_base {
        flushed.active_size
    } else {
        // The segment flushed into was sealed (fsynced) by the roll since.
        0
    };
    let len = std::fs::metadata(&path).unwrap().len();
    let r = splitmix(seed ^ 0xDA);
    let mode = if len > durable { r % 3 } else { 1 };
    let mut bytes = std::fs::read(&path).unwrap();
    let at = durable + (splitmix(r) % (len - durable).max(1));
    let what = match mode {
        0 => {
            stats.torn += 1;
            bytes.truncate(at as usize);
            format!(
                "truncated {} at {at} (durable {durable}, len {len})",
                path.display()
            )
        }
        1 => {
            stats.garbage += 1;
            let n = 1 + splitmix(r ^ 1) % 200;
            bytes.extend((0..n).map(|i| splitmix(r ^ i) as u8));
            format!("appended {n} garbage bytes to {}", path.display())
        }
        _ => {
            stats.flips += 1;
            bytes[at as usize] ^= 1 << (r % 8);
            format!(
                "flipped a bit at {at} of {} (durable {durable})",
                path.display()
            )
        }
    };
    std::fs::write(&path, &bytes).unwrap();
    what
}

/// Every check the crash test makes on a reopened log.
fn check(
    seed: u64,
    dir: &Path,
    flushed: Option<Flushed>,
    stats: &mut Stats,
    what: &str,
) -> PartitionLog {
    let ctx = format!("seed {seed} ({what})");
    let log =
        PartitionLog::open(dir, config(seed), NOW).unwrap_or_else(|e| panic!("{ctx}: open: {e}"));
    let leo = log.log_end_offset();
    if let Some(f) = flushed {
        assert!(
            leo >= f.leo,
            "{ctx}: lost flushed data: log end {leo} < flushed {}",
            f.leo
        );
    }
    log.verify()
        .unwrap_or_else(|e| panic!("{ctx}: verify: {e}"));
    // Read everything back: contiguous, each batch exactly what the writer appended.
    let mut offset = log.log_start_offset();
    let mut epochs: Vec<EpochEntry> = Vec::new();
    while offset < leo {
        let r = log.read(offset, 64 * 1024, i64::MAX, true).unwrap();
        assert!(
            !r.records.is_empty(),
            "{ctx}: empty read at {offset} < {leo}"
        );
        for item in BatchIter::new(r.records) {
            let (h, bytes) = item.unwrap_or_else(|e| panic!("{ctx}: framing at {offset}: {e}"));
            assert_eq!(h.base_offset, offset, "{ctx}: gap");
            let expected = batch_at(seed, offset);
            assert!(
                bytes[8..12] == expected[8..12] && bytes[16..] == expected[16..],
                "{ctx}: batch at {offset} differs from what was written"
            );
            assert_eq!(h.partition_leader_epoch, epoch_at(offset), "{ctx}");
            if epochs
                .last()
                .is_none_or(|e| e.epoch != h.partition_leader_epoch)
            {
                epochs.push(EpochEntry {
                    epoch: h.partition_leader_epoch,
                    start_offset: offset,
                });
            }
            offset = h.next_offset();
            stats.batches_checked += 1;
        }
    }
    assert_eq!(offset, leo, "{ctx}");
    assert_eq!(
        log.epoch_entries(),
        epochs,
        "{ctx}: epoch cache disagrees with the log"
    );
    // The time index agrees: record at offset o has timestamp NOW + o.
    for k in 0..8u64 {
        if leo == 0 {
            break;
        }
        let o = (splitmix(seed ^ k) % leo as u64) as i64;
        let found = log.offset_for_timestamp(NOW + o).unwrap().unwrap();
        assert_eq!(
            (found.offset, found.timestamp),
            (o, NOW + o),
            "{ctx}: time lookup"
        );
        let r = log.read(o, 1, i64::MAX, true).unwrap();
        let (h, _) = BatchIter::new(r.records).next().unwrap().unwrap();
        assert!(
            h.base_offset <= o && o <= h.last_offset(),
            "{ctx}: offset lookup {o}"
        );
    }
    stats.bytes_cut += log.recovery_info().truncated_bytes;
    log
}

/// A kill -9 leaves the page cache intact, so tmpfs exercises exactly the same recovery paths as a
/// disk while making fsync free; `GREGOR_CRASH_DIR` picks another parent directory.
fn scratch_dir() -> tempfile::TempDir {
    let parent = std::env::var_os("GREGOR_CRASH_DIR")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|p| p.is_dir()))
        .unwrap_or_else(std::env::temp_dir);
    tempfile::tempdir_in(parent).unwrap()
}

#[test]
fn crash_recovery_keeps_flushed_batches() {
    let base_seed = std::env::var("GREGOR_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let iterations = std::env::var("GREGOR_CRASH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_ITERATIONS);
    println!("crash test: base seed {base_seed}, {iterations} iterations");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(240);
    let mut stats = Stats::default();
    for i in 0..iterations {
        let seed = base_seed.wrapping_add(i);
        let tmp = scratch_dir();
        let dir = tmp.path().join("t-0");
        let rounds = 1 + splitmix(seed ^ 0x20) % 2;
        for round in 0..rounds {
            let round_seed = seed; // content depends on offsets only, so rounds continue the log
            let flushes = 1 + (splitmix(seed ^ round ^ 0xF0) % 12) as usize;
            let appends = (splitmix(seed ^ round ^ 0xA0) % 4) as usize;
            let flushed = run_child_and_kill(round_seed, &dir, flushes, appends, deadline);
            stats.kills += 1;
            let what = if splitmix(seed ^ round ^ 0xD0).is_multiple_of(2) {
                damage(seed ^ round, &dir, flushed, &mut stats)
            } else {
                "kill only".to_string()
            };
            let log = check(seed, &dir, Some(flushed), &mut stats, &what);
            if round % 2 == 0 {
                log.close().unwrap();
            } else {
                drop(log);
            }
        }
        // A last reopen after everything must agree too (clean or not).
        let log = check(seed, &dir, None, &mut stats, "final reopen");
        drop(log);
    }
    println!(
        "crash test: {} kills, {} torn tails, {} garbage tails, {} bit flips, {} bytes cut by recovery, {} batches checked, {:.1?}",
        stats.kills,
        stats.torn,
        stats.garbage,
        stats.flips,
        stats.bytes_cut,
        stats.batches_checked,
        started.elapsed()
    );
    assert!(stats.kills >= iterations);
}

const DISK_FULL_ENV: &str = "GREGOR_DISK_FULL_CHILD";

/// Child for `disk_full_is_a_typed_error`: runs under `ulimit -f` with SIGXFSZ ignored, so a write
/// past the limit is cut short and then fails with EFBIG, like a full disk.
#[test]
fn disk_full_child() {
    let Ok(dir) = std::env::var(DISK_FULL_ENV) else {
        return;
    };
    let config = LogConfig {
        index_interval_bytes: 512,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(&dir, config.clone(), NOW).unwrap();
    let big = build_batch(0, &[(NOW, &[7u8; 3000][..])]).unwrap();
    let mut failures = 0;
    for _ in 0..10_000 {
        let (leo, size) = (log.log_end_offset(), log.size_bytes());
        match log.append_as_leader(big.clone(), 0, NOW) {
            Ok(_) => continue,
            Err(e) => {
                let gregor_storage::StorageError::Io { source, .. } = &e else {
                    panic!("expected an I/O error, got {e:?}");
                };
                assert_eq!(source.raw_os_error(), Some(27), "EFBIG expected: {e}");
                // Nothing half-written stays behind.
                assert_eq!((log.log_end_offset(), log.size_bytes()), (leo, size));
                failures += 1;
                if failures == 3 {
                    break;
                }
            }
        }
    }
    assert_eq!(failures, 3, "the file size limit was never hit");
    // A small batch still fits below the limit: the log keeps working after the failures.
    let small = build_batch(0, &[(NOW, &b"x"[..])]).unwrap();
    log.append_as_leader(small, 0, NOW).unwrap();
    log.verify().unwrap();
    let leo = log.log_end_offset();
    log.close().unwrap();
    let log = PartitionLog::open(&dir, config, NOW).unwrap();
    assert!(log.recovery_info().clean);
    assert_eq!(log.log_end_offset(), leo);
    log.verify().unwrap();
    println!("disk-full child ok: log end {leo}");
}

#[test]
fn disk_full_is_a_typed_error() {
    let tmp = scratch_dir();
    let exe = std::env::current_exe().unwrap();
    // `trap '' XFSZ` makes SIGXFSZ ignored, which survives exec; `ulimit -f 64` caps any file
    // the child writes at 64 blocks (32 or 64 KiB depending on the shell).
    let out = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 64 && exec \"$0\" disk_full_child --exact --nocapture --test-threads=1")
        .arg(exe)
        .env(DISK_FULL_ENV, tmp.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("disk-full child ok"),
        "child failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
