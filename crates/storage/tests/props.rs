#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test
//! Property tests: round trips against a model, and the stable-toolchain fuzz fallback that feeds
//! random and mutated batches to the validator, the append path and segment recovery.

mod common;

use bytes::Bytes;
use common::{read_all, scratch_dir};
use gregor_storage::batch::{self, BatchHeader, BatchIter, ValidationMode, build_batch};
use gregor_storage::{LogConfig, PartitionLog, StorageError};
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000_000;

/// One batch of the model: record timestamps and value lengths.
#[derive(Debug, Clone)]
struct Spec {
    timestamps: Vec<i64>,
    value_len: usize,
}

fn spec() -> impl Strategy<Value = Spec> {
    (prop::collection::vec(0i64..1000, 1..8), 0usize..200).prop_map(|(ts, value_len)| Spec {
        timestamps: ts.into_iter().map(|t| NOW + t).collect(),
        value_len,
    })
}

fn encode(s: &Spec, tag: u64) -> Bytes {
    let values: Vec<Vec<u8>> = (0..s.timestamps.len())
        .map(|i| vec![(tag as u8).wrapping_add(i as u8); s.value_len])
        .collect();
    let recs: Vec<(i64, &[u8])> = s
        .timestamps
        .iter()
        .zip(&values)
        .map(|(&t, v)| (t, v.as_slice()))
        .collect();
    build_batch(0, &recs).unwrap()
}

fn config(segment_bytes: u64, interval: u32) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: interval,
        ..LogConfig::default()
    }
}

/// Checks every lookup of `log` against the model `records` (offset → timestamp).
fn check_against_model(log: &PartitionLog, records: &[i64], originals: &[Bytes]) {
    let leo = records.len() as i64;
    assert_eq!(log.log_end_offset(), leo);
    log.verify().unwrap();
    // Every offset reads from the batch containing it.
    let stored: Vec<(BatchHeader, Bytes)> = read_all(log)
        .into_iter()
        .map(|b| (BatchHeader::parse(&b).unwrap(), b))
        .collect();
    assert_eq!(stored.len(), originals.len());
    for ((h, bytes), orig) in stored.iter().zip(originals) {
        assert_eq!(bytes[16..], orig[16..]);
        for o in [h.base_offset, h.last_offset()] {
            let r = log.read(o, 1, i64::MAX, true).unwrap();
            let (first, _) = BatchIter::new(r.records).next().unwrap().unwrap();
            assert_eq!(first.base_offset, h.base_offset);
        }
    }
    // Time lookups: the smallest offset whose timestamp is >= the target.
    for target in [
        NOW - 1,
        NOW,
        NOW + 1,
        NOW + 250,
        NOW + 500,
        NOW + 999,
        NOW + 1000,
    ] {
        let expected = records
            .iter()
            .enumerate()
            .find(|&(_, &t)| t >= target)
            .map(|(o, &t)| (o as i64, t));
        let got = log
            .offset_for_timestamp(target)
            .unwrap()
            .map(|r| (r.offset, r.timestamp));
        assert_eq!(got, expected, "target {target}");
    }
    let max = records.iter().copied().max();
    let expected_max = max.map(|m| (records.iter().position(|&t| t == m).unwrap() as i64, m));
    let got = log
        .max_timestamp_offset()
        .unwrap()
        .map(|r| (r.offset, r.timestamp));
    assert_eq!(got, expected_max);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn append_read_and_lookups_match_a_model(
        specs in prop::collection::vec(spec(), 1..40),
        segment_bytes in 2048u64..8192,
        interval in 1u32..2048,
        truncate_at in any::<prop::sample::Index>(),
    ) {
        let tmp = scratch_dir();
        let mut log = PartitionLog::open(tmp.path(), config(segment_bytes, interval), NOW).unwrap();
        let mut records = Vec::new();
        let mut originals = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            let b = encode(s, i as u64);
            let info = log.append_as_leader(b.clone(), 0, NOW).unwrap();
            prop_assert_eq!(info.base_offset, records.len() as i64);
            records.extend_from_slice(&s.timestamps);
            originals.push(b);
        }
        check_against_model(&log, &records, &originals);
        log.close().unwrap();
        let mut log = PartitionLog::open(tmp.path(), config(segment_bytes, interval), NOW).unwrap();
        prop_assert!(log.recovery_info().clean);
        check_against_model(&log, &records, &originals);

        // Truncate at a batch boundary, reopen uncleanly, and check again.
        let keep = truncate_at.index(originals.len());
        let boundary: usize = specs[..keep].iter().map(|s| s.timestamps.len()).sum();
        log.truncate_to(boundary as i64).unwrap();
        records.truncate(boundary);
        originals.truncate(keep);
        check_against_model(&log, &records, &originals);
        drop(log);
        let log = PartitionLog::open(tmp.path(), config(segment_bytes, interval), NOW).unwrap();
        check_against_model(&log, &records, &originals);
    }
}

/// A mutation of a valid byte string, as a fuzzer would make.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit {
        at: prop::sample::Index,
        bit: u8,
    },
    Truncate {
        at: prop::sample::Index,
    },
    SetByte {
        at: prop::sample::Index,
        value: u8,
    },
    /// Overwrite the batchLength field (bytes 8..12) of the first batch.
    BatchLength(i32),
    /// Overwrite recordCount (57..61) without fixing the CRC.
    RecordCount(i32),
    AppendGarbage(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        any::<prop::sample::Index>().prop_map(|at| Mutation::Truncate { at }),
        (any::<prop::sample::Index>(), any::<u8>())
            .prop_map(|(at, value)| Mutation::SetByte { at, value }),
        prop_oneof![
            Just(i32::MIN),
            Just(-1),
            Just(0),
            Just(48),
            Just(49),
            Just(i32::MAX),
            any::<i32>()
        ]
        .prop_map(Mutation::BatchLength),
        prop_oneof![Just(-1), Just(0), Just(i32::MAX), any::<i32>()]
            .prop_map(Mutation::RecordCount),
        prop::collection::vec(any::<u8>(), 1..100).prop_map(Mutation::AppendGarbage),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match m {
        Mutation::FlipBit { at, bit } => {
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        Mutation::Truncate { at } => bytes.truncate(at.index(bytes.len())),
        Mutation::SetByte { at, value } => {
            let i = at.index(bytes.len());
            bytes[i] = *value;
        }
        Mutation::BatchLength(v) if bytes.len() >= 12 => {
            bytes[8..12].copy_from_slice(&v.to_be_bytes())
        }
        Mutation::RecordCount(v) if bytes.len() >= 61 => {
            bytes[57..61].copy_from_slice(&v.to_be_bytes())
        }
        Mutation::AppendGarbage(g) => bytes.extend_from_slice(g),
        _ => {}
    }
}

fn typed(e: &StorageError) -> bool {
    matches!(
        e,
        StorageError::CorruptMessage { .. }
            | StorageError::InvalidRecord { .. }
            | StorageError::UnsupportedCompression { .. }
            | StorageError::MessageTooLarge { .. }
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, failure_persistence: None, ..ProptestConfig::default() })]

    /// Fuzz fallback: arbitrary bytes never panic the validator, iterator or record walker.
    #[test]
    fn fuzz_validate_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400), magic2 in any::<bool>()) {
        let mut bytes = bytes;
        if magic2 && bytes.len() > 16 {
            bytes[16] = 2;
        }
        for mode in [ValidationMode::Client, ValidationMode::Replica] {
            if let Err(e) = batch::validate(&bytes, mode) {
                prop_assert!(typed(&e), "{e}");
            }
        }
        let b = Bytes::from(bytes);
        for (_, one) in BatchIter::new(b.clone()).flatten() {
            let _ = batch::record_timestamps(&one);
        }
    }

    /// Fuzz fallback: mutated valid batches are either still valid or rejected with a typed
    /// error, and a rejected append leaves the log unchanged.
    #[test]
    fn fuzz_validate_and_append_mutated_batches(s in spec(), mutations in prop::collection::vec(mutation(), 1..4)) {
        let good = encode(&s, 7);
        let mut bytes = good.to_vec();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        for mode in [ValidationMode::Client, ValidationMode::Replica] {
            match batch::validate(&bytes, mode) {
                Ok(h) => {
                    // Only fields outside the CRC can differ from the original.
                    prop_assert_eq!(bytes.len(), good.len());
                    prop_assert_eq!(&bytes[16..], &good[16..]);
                    prop_assert_eq!(h.total_size(), bytes.len());
                }
                Err(e) => prop_assert!(typed(&e), "{e}"),
            }
        }
        let tmp = scratch_dir();
        let mut log = PartitionLog::open(tmp.path(), LogConfig::default(), NOW).unwrap();
        match log.append_as_leader(Bytes::from(bytes), 0, NOW) {
            Ok(info) => prop_assert_eq!(info.record_count as usize, s.timestamps.len()),
            Err(e) => {
                prop_assert!(typed(&e), "{e}");
                prop_assert_eq!(log.log_end_offset(), 0);
                prop_assert_eq!(log.size_bytes(), 0);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

    /// Fuzz fallback for recovery: a damaged active segment always opens, and every batch it
    /// serves is one of the originals, byte for byte (the leader epoch, outside the CRC, is
    /// checked against the epoch cache).
    #[test]
    fn fuzz_segment_recovery_never_serves_corrupt_batches(
        specs in prop::collection::vec(spec(), 1..12),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let tmp = scratch_dir();
        let cfg = config(1 << 20, 64);
        let mut log = PartitionLog::open(tmp.path(), cfg.clone(), NOW).unwrap();
        let mut originals = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            log.append_as_leader(encode(s, i as u64), 0, NOW).unwrap();
        }
        originals.extend(read_all(&log));
        drop(log);
        let path = tmp.path().join(format!("{:020}.log", 0));
        let mut bytes = std::fs::read(&path).unwrap();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        std::fs::write(&path, &bytes).unwrap();

        let log = PartitionLog::open(tmp.path(), cfg, NOW).unwrap();
        log.verify().unwrap();
        let served = read_all(&log);
        prop_assert!(served.len() <= originals.len());
        for (s, o) in served.iter().zip(&originals) {
            prop_assert_eq!(s, o);
        }
        prop_assert_eq!(
            log.log_end_offset(),
            served.last().map_or(0, |b| BatchHeader::parse(b).unwrap().next_offset())
        );
    }
}
