#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test
//! Producer state inside `PartitionLog`: recorded on append, snapshotted at roll and close,
//! rebuilt at open (snapshot + header replay, or full replay after a crash or a damaged
//! snapshot), rebuilt on truncation, evicted by retention; and the snapshot decoder fuzzed.

mod common;

use bytes::Bytes;
use common::batch;
use gregor_storage::batch::{BatchHeader, compute_crc};
use gregor_storage::producer_state::SNAPSHOT_FILE;
use gregor_storage::{LogConfig, PartitionLog, ProducerCheck, ProducerSnapshot, StorageError};
use proptest::prelude::*;
use std::fs;
use std::path::Path;

const NOW: i64 = 1_700_000_000_000;

/// A `n`-record client batch of producer `pid`/`epoch` starting at sequence `seq`.
fn idem(pid: i64, epoch: i16, seq: i32, n: usize) -> Bytes {
    let mut b = batch(n, NOW, "v", 8).to_vec();
    b[43..51].copy_from_slice(&pid.to_be_bytes());
    b[51..53].copy_from_slice(&epoch.to_be_bytes());
    b[53..57].copy_from_slice(&seq.to_be_bytes());
    let crc = compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

fn check(log: &PartitionLog, b: &Bytes) -> gregor_storage::error::Result<ProducerCheck> {
    log.check_producer(&BatchHeader::parse(b).unwrap())
}

/// Check-then-append as the broker does; returns the base offset (original for a duplicate).
fn produce(log: &mut PartitionLog, b: Bytes) -> gregor_storage::error::Result<i64> {
    match check(log, &b)? {
        ProducerCheck::Duplicate(m) => Ok(m.first_offset),
        ProducerCheck::Append => Ok(log.append_as_leader(b, 0, NOW)?.base_offset),
    }
}

fn open(dir: &Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(dir, config, NOW).unwrap()
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        ..LogConfig::default()
    }
}

#[test]
fn duplicates_survive_clean_and_unclean_restarts_and_rolls() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), small_segments());
    let mut offsets = Vec::new();
    for i in 0..12 {
        offsets.push(produce(&mut log, idem(9, 1, i * 2, 2)).unwrap());
    }
    assert!(log.segments().len() > 2, "rolled: {:?}", log.segments());
    let leo = log.log_end_offset();
    let state = log.producer_state().clone();
    log.close().unwrap();
    // Clean: the snapshot at the log end is the whole state.
    let snap = ProducerSnapshot::read(tmp.path()).unwrap().unwrap();
    assert_eq!((snap.offset, &snap.state), (leo, &state));
    let mut log = open(tmp.path(), small_segments());
    assert_eq!(log.producer_state(), &state);
    assert_eq!(produce(&mut log, idem(9, 1, 22, 2)).unwrap(), offsets[11]);
    assert_eq!(log.log_end_offset(), leo);
    // Unclean: drop without close; the roll-time snapshot plus replay rebuild the same state.
    produce(&mut log, idem(9, 1, 24, 2)).unwrap();
    let state = log.producer_state().clone();
    drop(log);
    let mut log = open(tmp.path(), small_segments());
    assert!(!log.recovery_info().clean);
    assert_eq!(log.producer_state(), &state);
    assert_eq!(produce(&mut log, idem(9, 1, 20, 2)).unwrap(), offsets[10]);
    assert!(matches!(
        produce(&mut log, idem(9, 0, 26, 1)),
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
    assert!(matches!(
        produce(&mut log, idem(9, 1, 27, 1)),
        Err(StorageError::OutOfOrderSequence { .. })
    ));
}

#[test]
fn damaged_or_missing_snapshot_rebuilds_from_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), small_segments());
    for i in 0..10 {
        produce(&mut log, idem(3, 0, i, 1)).unwrap();
        produce(&mut log, idem(4, 2, i, 1)).unwrap();
    }
    let state = log.producer_state().clone();
    log.close().unwrap();
    let path = tmp.path().join(SNAPSHOT_FILE);
    let mut bytes = fs::read(&path).unwrap();
    bytes[12] ^= 0xff;
    fs::write(&path, bytes).unwrap();
    let log = open(tmp.path(), small_segments());
    assert_eq!(log.producer_state(), &state);
    log.close().unwrap();
    fs::remove_file(&path).unwrap();
    let log = open(tmp.path(), small_segments());
    assert_eq!(log.producer_state(), &state);
}

#[test]
fn truncation_rebuilds_the_producer_state() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), LogConfig::default());
    for i in 0..8 {
        produce(&mut log, idem(5, 0, i, 1)).unwrap();
    }
    produce(&mut log, batch(2, NOW, "plain", 4)).unwrap();
    // Truncate the last three batches of producer 5: seq 5..7 are gone, 0..4 are the window.
    log.truncate_to(5).unwrap();
    assert_eq!(log.log_end_offset(), 5);
    let e = log.producer_state().get(5).unwrap();
    assert_eq!(e.last_seq(), 4);
    assert_eq!(e.batches.len(), 5);
    // Seq 0 is back in the window (it had fallen out before the truncation).
    assert_eq!(produce(&mut log, idem(5, 0, 0, 1)).unwrap(), 0);
    assert_eq!(produce(&mut log, idem(5, 0, 5, 1)).unwrap(), 5);
    let snap = ProducerSnapshot::read(tmp.path()).unwrap().unwrap();
    assert_eq!(snap.offset, 5);
    // Truncating everything forgets every producer: any sequence is accepted again.
    log.truncate_to(0).unwrap();
    assert!(log.producer_state().is_empty());
    assert_eq!(produce(&mut log, idem(5, 0, 77, 1)).unwrap(), 0);
}

#[test]
fn follower_appends_update_the_state() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let mut leader = open(leader_dir.path(), LogConfig::default());
    let mut follower = open(follower_dir.path(), LogConfig::default());
    for i in 0..3 {
        produce(&mut leader, idem(8, 0, i * 3, 3)).unwrap();
    }
    let read = leader.read(0, 1 << 20, i64::MAX, true).unwrap();
    follower.append_as_follower(read.records).unwrap();
    assert_eq!(follower.producer_state(), leader.producer_state());
}

#[test]
fn retention_evicts_producers_below_the_log_start() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), small_segments());
    produce(&mut log, idem(1, 0, 0, 1)).unwrap();
    for i in 0..10 {
        produce(&mut log, idem(2, 0, i, 1)).unwrap();
    }
    let hw = log.log_end_offset();
    log.set_high_watermark(hw);
    log.advance_log_start_offset(3).unwrap();
    assert!(log.producer_state().get(1).is_none());
    // Evicted: any sequence is accepted (KIP-360).
    produce(&mut log, idem(1, 0, 50, 1)).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// The snapshot decoder never panics on garbage: it returns a typed error or a snapshot
    /// that re-encodes to the same bytes.
    #[test]
    fn fuzz_snapshot_decoder(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        match ProducerSnapshot::decode(Path::new("f"), &bytes) {
            Ok(s) => prop_assert_eq!(s.encode(), bytes),
            Err(e) => prop_assert!(matches!(e, StorageError::CorruptCheckpoint { .. }), "untyped error {}", e),
        }
    }

    /// Mutated valid snapshots (flips, truncation) are rejected or decode consistently.
    #[test]
    fn fuzz_snapshot_decoder_mutations(
        n in 1usize..20,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let tmp = common::scratch_dir();
        let mut log = open(tmp.path(), LogConfig::default());
        for i in 0..n {
            produce(&mut log, idem((i % 4) as i64, 0, (i / 4) as i32, 1)).unwrap();
        }
        log.write_producer_snapshot().unwrap();
        let mut bytes = fs::read(tmp.path().join(SNAPSHOT_FILE)).unwrap();
        for (at, x) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        let len = if flips.is_empty() { cut.index(bytes.len() + 1) } else { bytes.len() };
        bytes.truncate(len);
        match ProducerSnapshot::decode(Path::new("f"), &bytes) {
            Ok(s) => prop_assert_eq!(s.encode(), bytes),
            Err(e) => prop_assert!(matches!(e, StorageError::CorruptCheckpoint { .. }), "untyped error {}", e),
        }
    }
}
