//! Partition-log storage engine for Gregor.
//!
//! A partition is a directory `<data>/<topic>-<partition>/` of segment files
//! `<base_offset:020>.log` that hold Kafka RecordBatch v2 bytes exactly as the producer sent them;
//! only the base offset and the partition leader epoch (both outside the CRC) are rewritten, plus
//! the max timestamp and timestamp-type bit for LogAppendTime topics. Each segment has a sparse
//! offset index and a time index. Durability follows Kafka: by default nothing is fsynced on the
//! append path (see `docs/durability.md`), segments are fsynced when rolled, and after a crash
//! the active segment's tail is CRC-checked and cut at the first torn or corrupt batch.
//!
//! All file I/O is synchronous; the broker decides which threads run it.
//!
//! # Layout
//!
//! - [`batch`]: RecordBatch v2 header parsing, validation, record walking, iteration.
//! - [`segment`]: one segment file: vectored appends, positional reads, scans and recovery.
//! - [`index`]: the sparse offset and time indexes and their files.
//! - [`checkpoint`]: sealed state files (checkpoint, clean-shutdown marker), atomic writes.
//! - [`epoch`]: the leader-epoch cache.
//! - [`log`]: [`PartitionLog`], one partition: append, read, lookups, truncation, retention.
//! - [`manager`]: [`LogManager`], a data directory of partitions and its background tasks, and
//!   [`DirLock`], the data directory's lock file (one owner at a time).
//! - [`producer_state`]: idempotent-producer state per partition (dedupe window, sequence and
//!   epoch checks), its snapshot file and its rebuild from batch headers.
//! - [`config`]: [`LogConfig`], Kafka's topic configs and defaults.
//! - [`error`]: [`StorageError`], one variant per class of failure.
//! - [`dump`]: human-readable listing of on-disk state for `gregor tools dump-log`.

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod dump;
pub mod epoch;
pub mod error;
pub mod index;
pub mod log;
pub mod manager;
pub mod producer_state;
pub mod segment;

pub use batch::{BatchHeader, BatchIter, Compression};
pub use checkpoint::EpochEntry;
pub use config::{LogConfig, TimestampType};
pub use dump::dump_log;
pub use error::StorageError;
pub use log::{
    AppendInfo, PartitionLog, ReadResult, RecoveryInfo, RetentionOutcome, SegmentInfo,
    TimestampOffset,
};
pub use manager::{DirLock, LOCK_FILE, LogManager, SharedLog, TopicPartition};
pub use producer_state::{BatchMetadata, ProducerCheck, ProducerSnapshot, ProducerStateManager};
