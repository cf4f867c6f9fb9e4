//! Helpers shared by the integration tests (included with `mod common;`).
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use gregor_storage::batch::build_batch;
use gregor_storage::{BatchIter, LogConfig};

/// A batch of `n` records with timestamps `ts, ts+1, ...` and values `"<tag>-<i>"` padded to
/// `value_len`.
pub fn batch(n: usize, ts: i64, tag: &str, value_len: usize) -> Bytes {
    let values: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut v = format!("{tag}-{i}").into_bytes();
            v.resize(value_len.max(v.len()), b'.');
            v
        })
        .collect();
    let recs: Vec<(i64, &[u8])> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (ts + i as i64, v.as_slice()))
        .collect();
    build_batch(0, &recs).unwrap()
}

/// A compressed batch encoded by kafka-protocol with the given record timestamps.
pub fn compressed_batch(
    timestamps: &[i64],
    compression: kafka_protocol::records::Compression,
) -> Bytes {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = timestamps
        .iter()
        .enumerate()
        .map(|(i, &ts)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // Keeps offset - sequence constant so the encoder emits one batch.
            sequence: i as i32 - 1,
            timestamp: ts,
            key: None,
            value: Some(Bytes::from(vec![b'x'; 100])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

/// Base offsets of the batches in `records`.
pub fn base_offsets(records: &Bytes) -> Vec<i64> {
    BatchIter::new(records.clone())
        .map(|b| b.unwrap().0.base_offset)
        .collect()
}

/// A config with small segments and dense indexes for tests.
pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

/// A scratch directory, on tmpfs when available: these tests exercise logic, not the disk, and
/// fsync on tmpfs is free.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().unwrap()
}

/// Every batch from the log start to the log end (reads return one segment at a time).
pub fn read_all(log: &gregor_storage::PartitionLog) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let r = log.read(offset, usize::MAX, i64::MAX, true).unwrap();
        assert!(!r.records.is_empty(), "empty read at {offset}");
        for item in BatchIter::new(r.records) {
            let (h, b) = item.unwrap();
            offset = h.next_offset();
            out.push(b);
        }
    }
    out
}

/// The name of an error's variant (`"CorruptMessage"`, `"Io"`, ...): what the broker's one
/// Kafka-error-code mapping switches on, so tests can assert the class without a second mapping.
pub fn variant(e: &gregor_storage::StorageError) -> String {
    let debug = format!("{e:?}");
    debug
        .split([' ', '{', '('])
        .next()
        .unwrap_or_default()
        .to_string()
}
