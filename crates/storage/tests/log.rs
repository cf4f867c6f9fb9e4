#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failed unwrap is a failed test
//! Behaviour of `PartitionLog`: append/read, lookups, roll, retention, truncation, recovery,
//! checkpoints and validation errors.

mod common;

use bytes::Bytes;
use common::{base_offsets, batch, compressed_batch, small_config, variant};
use gregor_storage::batch::{self, BatchHeader, ValidationMode};
use gregor_storage::checkpoint::{CHECKPOINT_FILE, PartitionCheckpoint};
use gregor_storage::{
    BatchIter, EpochEntry, LogConfig, PartitionLog, StorageError, TimestampOffset, TimestampType,
};
use std::fs;

const NOW: i64 = 1_700_000_000_000;

fn open(dir: &std::path::Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(dir, config, NOW).unwrap()
}

#[test]
fn append_assigns_offsets_and_reads_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), LogConfig::default());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    let b1 = batch(3, NOW, "a", 10);
    let b2 = batch(5, NOW + 10, "b", 10);
    let i1 = log.append_as_leader(b1.clone(), 7, NOW).unwrap();
    assert_eq!(
        (i1.base_offset, i1.last_offset, i1.log_end_offset),
        (0, 2, 3)
    );
    assert_eq!(
        (i1.log_append_time_ms, i1.record_count, i1.max_timestamp),
        (-1, 3, NOW + 2)
    );
    let i2 = log.append_as_leader(b2.clone(), 7, NOW).unwrap();
    assert_eq!(
        (i2.base_offset, i2.last_offset, i2.log_end_offset),
        (3, 7, 8)
    );

    let r = log.read(0, 1 << 20, i64::MAX, false).unwrap();
    assert_eq!(base_offsets(&r.records), vec![0, 3]);
    assert_eq!((r.log_start_offset, r.log_end_offset), (0, 8));
    // Stored bytes equal the producer's except base offset and leader epoch.
    let stored: Vec<(BatchHeader, Bytes)> = BatchIter::new(r.records.clone())
        .map(Result::unwrap)
        .collect();
    for ((h, bytes), original) in stored.iter().zip([&b1, &b2]) {
        assert_eq!(bytes[8..12], original[8..12]);
        assert_eq!(bytes[16..], original[16..]);
        assert_eq!(h.partition_leader_epoch, 7);
        batch::validate(bytes, ValidationMode::Replica).unwrap();
    }
    assert_eq!(log.latest_epoch(), Some(7));
    assert_eq!(
        log.epoch_entries(),
        vec![EpochEntry {
            epoch: 7,
            start_offset: 0
        }]
    );
}

#[test]
fn reads_start_at_the_batch_containing_a_mid_batch_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), small_config());
    for i in 0..40 {
        log.append_as_leader(batch(10, NOW + i, "m", 20), 0, NOW)
            .unwrap();
    }
    assert!(
        log.segments().len() > 1,
        "small segments should have rolled"
    );
    for offset in [0, 1, 9, 10, 15, 199, 255, 399] {
        let r = log.read(offset, 1, i64::MAX, true).unwrap();
        let bases = base_offsets(&r.records);
        assert_eq!(bases, vec![offset / 10 * 10], "offset {offset}");
    }
    // Without min_one_batch a too-small max_bytes returns nothing.
    assert!(
        log.read(15, 10, i64::MAX, false)
            .unwrap()
            .records
            .is_empty()
    );
    // max_bytes bounds the number of whole batches.
    let one = log.read(0, 1, i64::MAX, true).unwrap().records.len();
    let r = log.read(0, one * 3 + one / 2, i64::MAX, false).unwrap();
    assert_eq!(base_offsets(&r.records), vec![0, 10, 20]);
    // max_offset is exclusive on the batch's last offset.
    let r = log.read(0, 1 << 20, 20, false).unwrap();
    assert_eq!(base_offsets(&r.records), vec![0, 10]);
    let r = log.read(0, 1 << 20, 19, false).unwrap();
    assert_eq!(base_offsets(&r.records), vec![0]);
    assert!(log.read(0, 1 << 20, 9, true).unwrap().records.is_empty());
    // The end of the log reads empty; past it is out of range.
    assert!(
        log.read(400, 100, i64::MAX, true)
            .unwrap()
            .records
            .is_empty()
    );
    assert!(matches!(
        log.read(401, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { offset: 401, .. })
    ));
    log.verify().unwrap();
}

#[test]
fn rolls_by_size_and_time() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), small_config());
    for i in 0..20 {
        log.append_as_leader(batch(5, NOW + i, "r", 40), 0, NOW)
            .unwrap();
    }
    let segs = log.segments();
    assert!(segs.len() >= 2, "{segs:?}");
    for w in segs.windows(2) {
        assert_eq!(w[0].next_offset, w[1].base_offset);
        assert!(w[0].size <= 4096);
    }
    // Sealed segments have index files on disk.
    let sealed = segs[0].base_offset;
    assert!(tmp.path().join(format!("{sealed:020}.index")).exists());
    assert!(tmp.path().join(format!("{sealed:020}.timeindex")).exists());

    let tmp = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_ms: 1000,
        ..LogConfig::default()
    };
    let mut log = open(tmp.path(), cfg);
    log.append_as_leader(batch(1, NOW, "t", 1), 0, NOW).unwrap();
    log.append_as_leader(batch(1, NOW + 1000, "t", 1), 0, NOW)
        .unwrap();
    assert_eq!(log.segments().len(), 1, "exactly segment.ms does not roll");
    log.append_as_leader(batch(1, NOW + 1001, "t", 1), 0, NOW)
        .unwrap();
    assert_eq!(log.segments().len(), 2);
    assert_eq!(log.segments()[1].base_offset, 2);
}

#[test]
fn offset_for_timestamp_finds_exact_records_including_compressed() {
    use kafka_protocol::records::Compression as C;
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), small_config());
    // Uncompressed batches: timestamps NOW + 100*i + j.
    for i in 0..10 {
        log.append_as_leader(batch(5, NOW + 100 * i, "u", 200), 0, NOW)
            .unwrap();
    }
    // Compressed batches with out-of-order timestamps inside.
    let base = log.log_end_offset();
    for (k, c) in [C::Gzip, C::Snappy, C::Lz4, C::Zstd]
        .into_iter()
        .enumerate()
    {
        let t = NOW + 10_000 + 100 * k as i64;
        log.append_as_leader(compressed_batch(&[t + 50, t + 10, t + 60], c), 0, NOW)
            .unwrap();
    }
    assert_eq!(
        log.offset_for_timestamp(NOW + 302).unwrap(),
        Some(TimestampOffset {
            timestamp: NOW + 302,
            offset: 17
        })
    );
    assert_eq!(
        log.offset_for_timestamp(NOW + 305).unwrap(),
        Some(TimestampOffset {
            timestamp: NOW + 400,
            offset: 20
        })
    );
    assert_eq!(log.offset_for_timestamp(0).unwrap().unwrap().offset, 0);
    // Inside the gzip batch the first record with ts >= t+20 is the first one (t+50).
    let r = log.offset_for_timestamp(NOW + 10_020).unwrap().unwrap();
    assert_eq!((r.offset, r.timestamp), (base, NOW + 10_050));
    let r = log.offset_for_timestamp(NOW + 10_055).unwrap().unwrap();
    assert_eq!((r.offset, r.timestamp), (base + 2, NOW + 10_060));
    // zstd batch is the last; nothing is later than its max.
    assert_eq!(log.offset_for_timestamp(NOW + 10_361).unwrap(), None);
    let max = log.max_timestamp_offset().unwrap().unwrap();
    assert_eq!((max.timestamp, max.offset), (NOW + 10_360, base + 11));
    log.verify().unwrap();
}

#[test]
fn log_append_time_rewrites_timestamp_and_crc() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        message_timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let mut log = open(tmp.path(), cfg);
    let info = log.append_as_leader(batch(4, 5, "l", 8), 1, NOW).unwrap();
    assert_eq!((info.log_append_time_ms, info.max_timestamp), (NOW, NOW));
    let r = log.read(0, 1 << 20, i64::MAX, false).unwrap();
    let h = batch::validate(&r.records, ValidationMode::Client).unwrap();
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, NOW);
    assert_eq!(
        log.offset_for_timestamp(NOW).unwrap(),
        Some(TimestampOffset {
            timestamp: NOW,
            offset: 0
        })
    );
    assert_eq!(log.max_timestamp_offset().unwrap().unwrap().offset, 0);
}

#[test]
fn invalid_batches_are_rejected_with_typed_errors_and_nothing_is_appended() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(
        tmp.path(),
        LogConfig {
            max_message_bytes: 2000,
            ..LogConfig::default()
        },
    );
    let good = batch(2, NOW, "v", 10);
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    let mut crc = good.to_vec();
    let last = crc.len() - 1;
    crc[last] ^= 1;
    cases.push(("bad crc", crc, "CorruptMessage"));
    let mut magic = good.to_vec();
    magic[16] = 1;
    cases.push(("magic 1", magic, "InvalidRecord"));
    let mut base = good.to_vec();
    base[7] = 5;
    cases.push(("base offset 5", base, "InvalidRecord"));
    let mut two = good.to_vec();
    two.extend_from_slice(&good);
    cases.push(("two batches", two, "InvalidRecord"));
    cases.push(("short", good[..40].to_vec(), "CorruptMessage"));
    let mut long_len = good.to_vec();
    long_len[11] += 1;
    cases.push(("batchLength too large", long_len, "CorruptMessage"));
    let mut codec = good.to_vec();
    codec[22] |= 5;
    let c = batch::compute_crc(&codec);
    codec[17..21].copy_from_slice(&c.to_be_bytes());
    cases.push(("codec 5", codec, "UnsupportedCompression"));
    let mut count = good.to_vec();
    count[60] = 3;
    let c = batch::compute_crc(&count);
    count[17..21].copy_from_slice(&c.to_be_bytes());
    cases.push(("count vs last offset delta", count, "InvalidRecord"));
    let mut delta = good.to_vec();
    delta[26] = 2; // lastOffsetDelta 2 with count 2
    delta[60] = 3; // count 3 to match, but only 2 records are present
    let c = batch::compute_crc(&delta);
    delta[17..21].copy_from_slice(&c.to_be_bytes());
    cases.push(("records fewer than count", delta, "CorruptMessage"));
    cases.push((
        "too large",
        batch(1, NOW, "x", 3000).to_vec(),
        "MessageTooLarge",
    ));
    for (name, bytes, code) in cases {
        let err = log
            .append_as_leader(Bytes::from(bytes), 0, NOW)
            .expect_err(name);
        assert_eq!(variant(&err), code, "{name}: {err}");
        assert_eq!(log.log_end_offset(), 0, "{name}");
    }
    let err = log
        .append_as_leader(batch(1, NOW, "x", 10), 0, NOW)
        .map(|_| ())
        .and_then(|()| {
            log.append_as_leader(batch(1, NOW, "x", 10), -1, NOW)
                .map(|_| ())
        });
    assert!(matches!(err, Err(StorageError::InvalidArgument { .. })));
    assert_eq!(
        log.size_bytes(),
        fs::metadata(tmp.path().join(format!("{:020}.log", 0)))
            .unwrap()
            .len()
    );
}

#[test]
fn follower_append_checks_contiguity_and_tracks_epochs() {
    let leader_dir = tempfile::tempdir().unwrap();
    let mut leader = open(leader_dir.path(), LogConfig::default());
    for e in [1, 1, 3, 3, 5] {
        leader
            .append_as_leader(batch(4, NOW, "f", 10), e, NOW)
            .unwrap();
    }
    let all = leader.read(0, 1 << 20, i64::MAX, false).unwrap().records;
    let batches: Vec<Bytes> = BatchIter::new(all.clone()).map(|b| b.unwrap().1).collect();

    let dir = tempfile::tempdir().unwrap();
    let mut f = open(dir.path(), LogConfig::default());
    assert!(matches!(
        f.append_as_follower(batches[1].clone()),
        Err(StorageError::NonContiguousAppend {
            expected: 0,
            actual: 4
        })
    ));
    let mut gap = batches[0].to_vec();
    gap.extend_from_slice(&batches[2]);
    assert!(matches!(
        f.append_as_follower(Bytes::from(gap)),
        Err(StorageError::NonContiguousAppend { .. })
    ));
    let mut corrupt = all.to_vec();
    corrupt[100] ^= 0xff;
    assert_eq!(
        variant(&f.append_as_follower(Bytes::from(corrupt)).unwrap_err()),
        "CorruptMessage"
    );
    assert_eq!(f.log_end_offset(), 0);
    let info = f.append_as_follower(all.clone()).unwrap();
    assert_eq!(
        (info.base_offset, info.last_offset, info.log_end_offset),
        (0, 19, 20)
    );
    assert_eq!(f.epoch_entries(), leader.epoch_entries());
    assert_eq!(
        f.epoch_entries(),
        vec![
            EpochEntry {
                epoch: 1,
                start_offset: 0
            },
            EpochEntry {
                epoch: 3,
                start_offset: 8
            },
            EpochEntry {
                epoch: 5,
                start_offset: 16
            },
        ]
    );
    assert_eq!(f.read(0, 1 << 20, i64::MAX, false).unwrap().records, all);
    // Epochs may not go backwards.
    let mut stale = batches[0].to_vec();
    stale[0..8].copy_from_slice(&20i64.to_be_bytes());
    assert!(matches!(
        f.append_as_follower(Bytes::from(stale)),
        Err(StorageError::InvalidRecord { .. })
    ));
    // OffsetForLeaderEpoch (Kafka's LeaderEpochFileCache.endOffsetFor).
    assert_eq!(f.end_offset_for_epoch(5), Some((5, 20)));
    assert_eq!(f.end_offset_for_epoch(3), Some((3, 16)));
    assert_eq!(f.end_offset_for_epoch(4), Some((3, 16)));
    assert_eq!(f.end_offset_for_epoch(0), Some((0, 0)));
    assert_eq!(f.end_offset_for_epoch(6), None);
    assert_eq!(f.end_offset_for_epoch(-1), None);
}

#[test]
fn truncate_to_removes_batches_segments_and_epochs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), small_config());
    for i in 0..30 {
        log.append_as_leader(batch(5, NOW + i, "t", 40), (i / 10) as i32, NOW)
            .unwrap();
    }
    log.set_high_watermark(150);
    let segs_before = log.segments().len();
    log.truncate_to(72).unwrap();
    // The batch [70, 74] spans 72 and goes whole.
    assert_eq!(log.log_end_offset(), 70);
    assert!(log.segments().len() < segs_before);
    assert_eq!(log.high_watermark(), 70);
    assert_eq!(log.latest_epoch(), Some(1));
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 70)));
    log.verify().unwrap();
    // Appending continues at the new end, and survives a reopen.
    let info = log.append_as_leader(batch(2, NOW, "n", 4), 4, NOW).unwrap();
    assert_eq!(info.base_offset, 70);
    log.close().unwrap();
    let log = open(tmp.path(), small_config());
    assert_eq!(log.log_end_offset(), 72);
    assert_eq!(log.latest_epoch(), Some(4));
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 70)));
    log.verify().unwrap();
    drop(log);

    // Truncating below the first segment empties the log and restarts it there.
    let mut log = open(tmp.path(), small_config());
    log.truncate_to(0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert!(log.epoch_entries().is_empty());
    assert_eq!(log.segments().len(), 1);
}

#[test]
fn advance_log_start_offset_deletes_wholly_covered_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), small_config());
    for i in 0..30 {
        log.append_as_leader(batch(5, NOW + i, "d", 40), 0, NOW)
            .unwrap();
    }
    assert!(matches!(
        log.advance_log_start_offset(10),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    log.set_high_watermark(150);
    let segs = log.segments();
    let target = segs[2].base_offset + 1;
    log.advance_log_start_offset(target).unwrap();
    assert_eq!(log.log_start_offset(), target);
    assert_eq!(log.segments()[0].base_offset, segs[2].base_offset);
    assert!(matches!(
        log.read(target - 1, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let r = log.read(target, 100, i64::MAX, true).unwrap();
    assert_eq!(base_offsets(&r.records), vec![segs[2].base_offset]);
    log.close().unwrap();
    let log = open(tmp.path(), small_config());
    assert_eq!(log.log_start_offset(), target);
    assert_eq!(log.high_watermark(), 150);
}

#[test]
fn retention_by_time_and_bytes_deletes_only_sealed_segments_below_the_high_watermark() {
    let tmp = tempfile::tempdir().unwrap();
    let day = 24 * 3600 * 1000;
    let cfg = LogConfig {
        retention_ms: day,
        ..small_config()
    };
    let mut log = open(tmp.path(), cfg.clone());
    // Old data, then fresh data.
    for i in 0..20 {
        log.append_as_leader(batch(5, NOW - 3 * day + i, "old", 40), 0, NOW)
            .unwrap();
    }
    let old_end = log.log_end_offset();
    for i in 0..20 {
        log.append_as_leader(batch(5, NOW + i, "new", 40), 0, NOW)
            .unwrap();
    }
    let before = log.segments();
    // Nothing is below the high watermark yet.
    let out = log.apply_retention(NOW).unwrap();
    assert_eq!(out.segments_deleted, 0);
    log.set_high_watermark(log.log_end_offset());
    let out = log.apply_retention(NOW).unwrap();
    let old_segments = before
        .iter()
        .filter(|s| s.next_offset <= old_end && s.max_timestamp < NOW - day)
        .count();
    assert!(old_segments > 0);
    assert_eq!(out.segments_deleted, old_segments);
    assert_eq!(out.log_start_offset, log.segments()[0].base_offset);
    assert!(
        log.segments()
            .iter()
            .all(|s| s.max_timestamp >= NOW - day || s.max_timestamp < 0)
    );

    // Far in the future everything but the active segment goes.
    let out = log.apply_retention(NOW + 10 * day).unwrap();
    assert_eq!(log.segments().len(), 1);
    assert!(out.segments_deleted > 0);
    assert_eq!(log.log_start_offset(), log.segments()[0].base_offset);

    // By bytes.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_bytes: 8192,
        ..small_config()
    };
    let mut log = open(tmp.path(), cfg);
    for i in 0..60 {
        log.append_as_leader(batch(5, NOW + i, "b", 40), 0, NOW)
            .unwrap();
    }
    log.set_high_watermark(log.log_end_offset());
    let out = log.apply_retention(NOW).unwrap();
    assert!(out.segments_deleted > 0);
    assert!(log.size_bytes() <= 8192 + 4096, "{}", log.size_bytes());
    assert!(log.size_bytes() > 8192 - 4096);
    log.verify().unwrap();
}

#[test]
fn clean_shutdown_skips_the_scan_and_unclean_recovery_cuts_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), small_config());
    for i in 0..9 {
        log.append_as_leader(batch(3, NOW + i, "c", 30), 0, NOW)
            .unwrap();
    }
    let leo = log.log_end_offset();
    let active = log.segments().last().copied().unwrap();
    log.close().unwrap();
    let log = open(tmp.path(), small_config());
    assert!(log.recovery_info().clean);
    assert_eq!(log.log_end_offset(), leo);
    assert!(
        !tmp.path().join("clean-shutdown").exists(),
        "marker is removed at open"
    );
    log.verify().unwrap();
    drop(log); // unclean: no marker

    let path = tmp.path().join(format!("{:020}.log", active.base_offset));
    let len = fs::metadata(&path).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 7).unwrap();
    let log = open(tmp.path(), small_config());
    assert!(!log.recovery_info().clean);
    assert_eq!(log.log_end_offset(), leo - 3);
    assert!(log.recovery_info().truncated_bytes > 0);
    log.verify().unwrap();
    log.close().unwrap();

    // The leader epoch is outside the CRC; recovery checks it against the epoch cache.
    let mut log = open(tmp.path(), small_config());
    log.append_as_leader(batch(3, NOW, "e", 30), 0, NOW)
        .unwrap();
    let before = log.log_end_offset();
    let pos = log.segments().last().unwrap().size;
    log.append_as_leader(batch(3, NOW, "e", 30), 0, NOW)
        .unwrap();
    drop(log);
    let active = log_path(tmp.path());
    let mut bytes = fs::read(&active).unwrap();
    bytes[pos as usize + 13] ^= 0x20;
    fs::write(&active, &bytes).unwrap();
    let log = open(tmp.path(), small_config());
    assert_eq!(
        log.log_end_offset(),
        before,
        "a batch with a damaged epoch must be cut"
    );
    log.verify().unwrap();
    log.close().unwrap();
    let path = log_path(tmp.path());

    // A marker that disagrees with the file size forces a scan.
    let len = fs::metadata(&path).unwrap().len();
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0xAB; 100]);
    fs::write(&path, &bytes).unwrap();
    let log = open(tmp.path(), small_config());
    assert!(!log.recovery_info().clean);
    assert_eq!(fs::metadata(&path).unwrap().len(), len);
    log.verify().unwrap();
}

/// The newest segment file in `dir`.
fn log_path(dir: &std::path::Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

#[test]
fn corrupt_checkpoint_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), LogConfig::default());
    log.append_as_leader(batch(3, NOW, "k", 10), 2, NOW)
        .unwrap();
    log.set_high_watermark(3);
    log.close().unwrap();
    let path = tmp.path().join(CHECKPOINT_FILE);
    let good = fs::read(&path).unwrap();
    let ck = PartitionCheckpoint::decode(&path, &good).unwrap();
    assert_eq!((ck.high_watermark, ck.log_start_offset), (3, 0));
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x10;
        assert!(
            matches!(
                PartitionCheckpoint::decode(&path, &bad),
                Err(StorageError::CorruptCheckpoint { .. })
            ),
            "flip at byte {i} not detected"
        );
    }
    let mut bad = good.clone();
    bad[12] ^= 1;
    fs::write(&path, &bad).unwrap();
    let err = PartitionLog::open(tmp.path(), LogConfig::default(), NOW).unwrap_err();
    assert!(
        matches!(err, StorageError::CorruptCheckpoint { .. }),
        "{err}"
    );
}

#[test]
fn damaged_index_files_are_rebuilt_and_damaged_sealed_segments_refuse_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), small_config());
    for i in 0..20 {
        log.append_as_leader(batch(5, NOW + i, "i", 40), 0, NOW)
            .unwrap();
    }
    let expected = log.read(0, 1 << 20, i64::MAX, false).unwrap().records;
    let first = log.segments()[0];
    log.close().unwrap();
    let idx = tmp.path().join(format!("{:020}.index", first.base_offset));
    let mut b = fs::read(&idx).unwrap();
    b[20] ^= 0xff;
    fs::write(&idx, &b).unwrap();
    fs::remove_file(
        tmp.path()
            .join(format!("{:020}.timeindex", first.base_offset)),
    )
    .unwrap();
    let log = open(tmp.path(), small_config());
    log.verify().unwrap();
    assert_eq!(
        log.read(0, 1 << 20, i64::MAX, false).unwrap().records,
        expected
    );
    assert_eq!(log.segments()[0], first);
    drop(log);

    let seg = tmp.path().join(format!("{:020}.log", first.base_offset));
    let mut b = fs::read(&seg).unwrap();
    b[100] ^= 0xff;
    fs::write(&seg, &b).unwrap();
    fs::remove_file(&idx).unwrap();
    let err = PartitionLog::open(tmp.path(), small_config(), NOW).unwrap_err();
    assert!(matches!(err, StorageError::CorruptSegment { .. }), "{err}");
}

#[test]
fn flush_messages_policy_and_flush_ms() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        flush_messages: 10,
        flush_ms: 1000,
        ..LogConfig::default()
    };
    let mut log = open(tmp.path(), cfg);
    log.append_as_leader(batch(6, NOW, "f", 1), 0, NOW).unwrap();
    assert_eq!(log.flushed_offset(), 0);
    log.append_as_leader(batch(6, NOW, "f", 1), 0, NOW).unwrap();
    assert_eq!(log.flushed_offset(), 12);
    log.append_as_leader(batch(1, NOW, "f", 1), 0, NOW + 5)
        .unwrap();
    log.maybe_flush(NOW + 1004).unwrap();
    assert_eq!(log.flushed_offset(), 12);
    log.maybe_flush(NOW + 1005).unwrap();
    assert_eq!(log.flushed_offset(), 13);
}

#[test]
fn dump_lists_segments_batches_and_indexes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("orders-3");
    let mut log = open(&dir, small_config());
    for i in 0..12 {
        log.append_as_leader(batch(5, NOW + i, "x", 40), 2, NOW)
            .unwrap();
    }
    log.close().unwrap();
    let seg = dir.join(format!("{:020}.log", 0));
    let mut b = fs::read(&seg).unwrap();
    let n = b.len();
    b[n - 3] ^= 1;
    fs::write(&seg, &b).unwrap();
    let mut out = Vec::new();
    gregor_storage::dump_log(tmp.path(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("partition "), "{text}");
    assert!(
        text.contains("base_offset=0 last_offset=4 count=5 epoch=2"),
        "{text}"
    );
    assert!(text.contains("compression=none"), "{text}");
    assert!(text.contains("CRC mismatch"), "{text}");
    assert!(text.contains("offset index:"), "{text}");
    assert!(text.contains("time index:"), "{text}");
    assert!(
        text.contains("checkpoint: high_watermark=0 log_start_offset=0 epochs=[2@0]"),
        "{text}"
    );
}

#[test]
fn header_parse_and_iteration() {
    let b = batch(3, 42, "h", 5);
    let h = BatchHeader::parse(&b).unwrap();
    assert_eq!(
        (
            h.record_count,
            h.last_offset_delta,
            h.base_timestamp,
            h.max_timestamp
        ),
        (3, 2, 42, 44)
    );
    assert_eq!(h.total_size(), b.len());
    assert_eq!(h.compression().unwrap(), gregor_storage::Compression::None);
    let mut two = b.to_vec();
    two.extend_from_slice(&b);
    two.extend_from_slice(&b[..30]);
    let items: Vec<_> = BatchIter::new(Bytes::from(two)).collect();
    assert_eq!(items.len(), 3);
    assert!(items[0].is_ok() && items[1].is_ok() && items[2].is_err());
    // kafka-protocol's decoder agrees with our encoder.
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut b.clone()).unwrap();
    assert_eq!(set.records.len(), 3);
    assert_eq!(set.records[2].timestamp, 44);
}

#[test]
fn topic_partition_dir_names() {
    use gregor_storage::TopicPartition;
    let tp = TopicPartition::new("orders-eu", 12);
    assert_eq!(tp.dir_name(), "orders-eu-12");
    assert_eq!(TopicPartition::from_dir_name("orders-eu-12"), Some(tp));
    assert_eq!(TopicPartition::from_dir_name("orders"), None);
    assert_eq!(TopicPartition::from_dir_name("orders-"), None);
    assert_eq!(TopicPartition::from_dir_name("-3"), None);
    assert_eq!(
        TopicPartition::from_dir_name("t--3"),
        Some(TopicPartition::new("t-", 3))
    );
}

#[test]
fn log_manager_lifecycle_and_background_retention() {
    use gregor_storage::{LogManager, TopicPartition};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let mgr = Arc::new(LogManager::open(tmp.path(), LogConfig::default(), NOW).unwrap());
    assert!(mgr.partitions().is_empty());
    let tp = TopicPartition::new("my-topic", 3);
    let other = TopicPartition::new("other", 0);
    let cfg = LogConfig {
        retention_ms: 60_000,
        ..small_config()
    };
    let log = mgr.get_or_create(&tp, cfg.clone(), NOW).unwrap();
    mgr.get_or_create(&other, LogConfig::default(), NOW)
        .unwrap();
    assert!(Arc::ptr_eq(
        &log,
        &mgr.get_or_create(&tp, cfg, NOW).unwrap()
    ));
    {
        let mut l = log.write();
        for i in 0..30 {
            // Timestamps from 2023: far beyond retention.ms by the wall clock.
            l.append_as_leader(batch(5, NOW + i, "bg", 40), 0, NOW)
                .unwrap();
        }
        let leo = l.log_end_offset();
        l.set_high_watermark(leo);
        assert!(l.segments().len() > 2);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cancel = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(
            mgr.clone()
                .run_background(cancel.clone(), Duration::from_millis(10)),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        // Wait on observable state: retention leaves only the active segment.
        while log.read().segments().len() > 1 {
            assert!(
                Instant::now() < deadline,
                "background retention did not run"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cancel.cancel();
        task.await.unwrap();
    });
    let (leo, start) = {
        let l = log.read();
        (l.log_end_offset(), l.log_start_offset())
    };
    assert_eq!(start, log.read().segments()[0].base_offset);
    mgr.shutdown().unwrap();
    assert!(
        tmp.path()
            .join("my-topic-3")
            .join("clean-shutdown")
            .exists()
    );
    assert!(matches!(
        log.write().append_as_leader(batch(1, NOW, "x", 1), 0, NOW),
        Err(StorageError::Closed { .. })
    ));
    drop(log);
    drop(mgr);

    let mgr = LogManager::open(tmp.path(), LogConfig::default(), NOW).unwrap();
    let names: Vec<TopicPartition> = mgr.partitions().into_iter().map(|(tp, _)| tp).collect();
    assert_eq!(names, vec![tp.clone(), other.clone()]);
    let log = mgr.get(&tp).unwrap();
    assert!(log.read().recovery_info().clean);
    assert_eq!(log.read().log_end_offset(), leo);
    assert_eq!(log.read().log_start_offset(), start);
    assert_eq!(log.read().high_watermark(), leo);
    drop(log);
    mgr.delete(&tp).unwrap();
    assert!(mgr.get(&tp).is_none());
    assert!(!tmp.path().join("my-topic-3").exists());
    assert!(mgr.get(&other).is_some());
}

#[test]
fn a_new_leaders_epoch_starts_at_the_log_end_and_a_follower_drops_empty_terms() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), LogConfig::default());
    log.append_as_leader(batch(3, NOW, "a", 10), 1, NOW)
        .unwrap();
    // Elected in epoch 4 before writing anything: epoch 1 ends at 3 for followers asking.
    assert!(log.assign_epoch_at_end(4).unwrap());
    assert!(!log.assign_epoch_at_end(4).unwrap(), "idempotent");
    assert!(
        !log.assign_epoch_at_end(2).unwrap(),
        "older epochs are ignored"
    );
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 3)));
    assert_eq!(log.end_offset_for_epoch(3), Some((1, 3)));
    assert_eq!(log.end_offset_for_epoch(4), Some((4, 3)));
    // Persisted with the checkpoint.
    let cp = PartitionCheckpoint::read(tmp.path()).unwrap().unwrap();
    assert_eq!(
        cp.epochs.last(),
        Some(&EpochEntry {
            epoch: 4,
            start_offset: 3
        })
    );
    // Becoming a follower: the empty term goes, so the new leader's epoch-2 batches fit.
    assert!(log.drop_epochs_past_end().unwrap());
    assert_eq!(log.latest_epoch(), Some(1));
    assert!(!log.drop_epochs_past_end().unwrap());
    let leader_dir = tempfile::tempdir().unwrap();
    let mut leader = open(leader_dir.path(), LogConfig::default());
    leader
        .append_as_leader(batch(3, NOW, "a", 10), 1, NOW)
        .unwrap();
    leader
        .append_as_leader(batch(2, NOW, "b", 10), 2, NOW)
        .unwrap();
    let read = leader.read(3, 1 << 20, i64::MAX, true).unwrap();
    log.append_as_follower(read.records).unwrap();
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(log.latest_epoch(), Some(2));
}

#[test]
fn a_data_directory_has_one_owner_at_a_time() {
    use gregor_storage::{LogManager, TopicPartition};
    let tmp = tempfile::tempdir().unwrap();
    let first = LogManager::open(tmp.path(), LogConfig::default(), NOW).unwrap();
    let tp = TopicPartition::new("t", 0);
    let log = first.get_or_create(&tp, LogConfig::default(), NOW).unwrap();
    log.write()
        .append_as_leader(batch(2, NOW, "a", 8), 0, NOW)
        .unwrap();
    // A second owner (another process started before the first one died) is refused before it
    // recovers, checkpoints or deletes anything.
    let err = LogManager::open(tmp.path(), LogConfig::default(), NOW).unwrap_err();
    assert!(
        matches!(&err, StorageError::DirectoryLocked { path, .. } if path.ends_with(gregor_storage::LOCK_FILE)),
        "{err:?}"
    );
    assert!(!tmp.path().join("t-0").join("clean-shutdown").exists());
    assert_eq!(log.read().log_end_offset(), 2);
    first.shutdown().unwrap();
    drop(log);
    drop(first);
    // Dropping the owner releases the lock; the lock file itself stays and does not block.
    assert!(tmp.path().join(gregor_storage::LOCK_FILE).exists());
    let second = LogManager::open(tmp.path(), LogConfig::default(), NOW).unwrap();
    assert_eq!(second.get(&tp).unwrap().read().log_end_offset(), 2);
}
